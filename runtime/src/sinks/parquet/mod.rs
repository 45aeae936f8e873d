//! The Parquet sink operator: each worker writes the rows it holds into rolling, partitioned
//! files and publishes them atomically; at the end of the input everything is published.

pub mod config;
mod kind;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;

use crate::output::rolling::{Format, Partition, RollingWriter};
use crate::base::storage::Storage;
use crate::checkpoint::Role;
use crate::checkpoint::output::OutputProtocol;
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
    let mut cp = OutputProtocol::new(
        ctx.checkpoint
            .as_ref()
            .map(|c| c.participant(Role::Sink, index, worker, Some(cx.input_node))),
    );
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
                node.market_dates.as_ref(),
            ),
            ctx.file_prefix(worker),
            Arc::clone(&ctx.metrics),
            true,
        ))
        .map(|w| {
            // Exactly-once: files stay pending until the checkpoint covering them completes.
            if cp.checkpointed() {
                w.two_phase(&config.path)
            } else {
                w
            }
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
                        cp.received(data.len());
                        stats.records_in.fetch_add(data.len() as u64, Relaxed);
                        if let Some(w) = writer.as_mut()
                            && result.is_ok()
                        {
                            result = w.push_all(data);
                        }
                    });
                    if done {
                        return;
                    }
                    let Some(w) = writer.as_mut() else { return };
                    result = result.and_then(|()| w.roll_aged());
                    if frontier.is_empty() {
                        done = true;
                        result = result.and_then(|()| cp.end(w));
                    } else {
                        match result.and_then(|()| cp.turn(w)) {
                            Ok(Some(poll)) => {
                                activator.activate_after(poll);
                                result = Ok(());
                            }
                            Ok(None) => result = Ok(()),
                            Err(e) => result = Err(e),
                        }
                        if let Some(deadline) = w.next_deadline() {
                            activator
                                .activate_after(deadline.saturating_duration_since(Instant::now()));
                        }
                    }
                    if let Err(e) = result {
                        ctx.fail(format!("sink `{name}`: {e:#}"));
                        writer = None;
                        // The run fails; do not hold the checkpoint back.
                        cp.abandon();
                    }
                }
            },
        );
}
