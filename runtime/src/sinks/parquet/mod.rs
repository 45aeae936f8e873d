//! The Parquet sink operator: each worker writes the rows it holds into rolling, partitioned
//! files and publishes them atomically; at the end of the input everything is published.

pub mod config;
pub mod encode;
mod kind;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;

use super::rolling::{Format, Partition, RollingWriter};
use crate::base::storage::Storage;
use crate::checkpoint::Role;
use crate::sinks::SinkBuildCx;
use crate::base::record::Row;

fn parquet_sink<'scope>(
    stream: StreamVec<'scope, u64, Row>,
    cx: &SinkBuildCx<'_>,
    node: &kind::ParquetSink,
) {
    let (index, worker) = (cx.index, cx.worker);
    let config = node.config.clone();
    let ctx = Arc::clone(cx.ctx);
    let scope = stream.scope();
    let mut cp = ctx
        .checkpoint
        .as_ref()
        .map(|c| c.participant(Role::Sink, index, worker, Some(cx.input_node)));
    let (name, schema) = (node.name.clone(), node.schema.clone());
    let mut writer = match Storage::open(&config.path, ctx.rt.clone()) {
        Ok(storage) => Some(RollingWriter::new(
            storage,
            schema.clone(),
            Format::Parquet {
                zstd_level: config.zstd_level,
            },
            config.rolling.clone(),
            Partition::resolve(
                &config.partition_by,
                &schema,
                node.partition_time_index,
            ),
            ctx.file_prefix(worker),
            Arc::clone(&ctx.metrics),
            true,
        ))
        .map(|w| match cp {
            // Exactly-once: files stay pending until the checkpoint covering them completes.
            Some(_) => w.two_phase(&config.path),
            None => w,
        }),
        Err(e) => {
            ctx.fail(format!("sink `{name}`: {e:#}"));
            None
        }
    };
    let _: StreamVec<'scope, u64, ()> = stream
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            &format!("Parquet({name})"),
            move |_cap, info| {
                let activator = scope.activator_for(info.address);
                let stats = ctx.metrics.step(&name, "sink");
                let mut done = false;
                move |(input, frontier), _output| {
                    let mut result = Ok(());
                    input.for_each(|_cap, data| {
                        if let Some(cp) = cp.as_ref() {
                            cp.received(data.len());
                        }
                        stats.records_in.fetch_add(data.len() as u64, Relaxed);
                        if let Some(w) = writer.as_mut() {
                            for row in data.iter() {
                                if result.is_ok() {
                                    result = w.push(row);
                                }
                            }
                        }
                    });
                    if done {
                        return;
                    }
                    let Some(w) = writer.as_mut() else { return };
                    if result.is_ok() {
                        result = w.roll_aged();
                    }
                    if frontier.is_empty() {
                        done = true;
                        match cp.as_mut() {
                            // Exactly-once: what is left joins the final checkpoint.
                            Some(cp) => {
                                if result.is_ok() {
                                    result = w.precommit().map(|files| cp.record_pending(files));
                                }
                                cp.finish();
                            }
                            None => {
                                if result.is_ok() {
                                    result = w.flush_all();
                                }
                            }
                        }
                    } else {
                        if let Some(cp) = cp.as_mut() {
                            if let Some(epoch) = cp.in_progress()
                                && cp.due(epoch)
                                && result.is_ok()
                            {
                                result = w.precommit().map(|files| cp.record_pending(files));
                                cp.ack(epoch);
                            }
                            activator.activate_after(match cp.in_progress() {
                                Some(_) => crate::checkpoint::FROZEN_POLL,
                                None => crate::checkpoint::IDLE_POLL,
                            });
                        }
                        if let Some(deadline) = w.next_deadline() {
                            activator
                                .activate_after(deadline.saturating_duration_since(Instant::now()));
                        }
                    }
                    if let Err(e) = result {
                        ctx.fail(format!("sink `{name}`: {e:#}"));
                        writer = None;
                        if let Some(cp) = cp.as_mut() {
                            // The run fails; do not hold the checkpoint back.
                            cp.finish();
                        }
                    }
                }
            },
        );
}
