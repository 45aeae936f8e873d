//! The Parquet sink operator: each worker writes the rows it holds into rolling, partitioned
//! files and publishes them atomically; at the end of the input everything is published.

pub mod config;
pub mod encode;

use std::sync::Arc;
use std::time::Instant;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;

use super::rolling::{Format, Partition, RollingWriter};
use super::storage::Storage;
use crate::dataflow::context::RunContext;
use crate::record::Row;

pub fn parquet_sink<'scope>(
    stream: StreamVec<'scope, u64, Row>,
    ctx: &Arc<RunContext>,
    index: usize,
    worker: usize,
) {
    let node = ctx.plan.sinks[index].clone();
    let crate::sinks::SinkSpec::Parquet(config) = &node.config else {
        unreachable!("a parquet sink")
    };
    let config = config.clone();
    let ctx = Arc::clone(ctx);
    let scope = stream.scope();
    let mut writer = match Storage::open(&config.path, ctx.rt.clone()) {
        Ok(storage) => Some(RollingWriter::new(
            storage,
            node.schema.clone(),
            Format::Parquet {
                zstd_level: config.zstd_level,
            },
            config.rolling.clone(),
            Partition::resolve(
                &config.partition_by,
                &node.schema,
                node.partition_time_index,
            ),
            ctx.file_prefix(worker),
            Arc::clone(&ctx.metrics),
            true,
        )),
        Err(e) => {
            ctx.fail(format!("sink `{}`: {e:#}", node.name));
            None
        }
    };
    let _: StreamVec<'scope, u64, ()> = stream
        .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            &format!("Parquet({})", node.name),
            move |_cap, info| {
                let activator = scope.activator_for(info.address);
                let mut done = false;
                move |(input, frontier), _output| {
                    let mut result = Ok(());
                    input.for_each(|_cap, data| {
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
                    if let Some(w) = writer.as_mut() {
                        if result.is_ok() {
                            result = w.roll_aged();
                        }
                        if frontier.is_empty() {
                            if result.is_ok() {
                                result = w.flush_all();
                            }
                            done = true;
                        } else if let Some(deadline) = w.next_deadline() {
                            activator
                                .activate_after(deadline.saturating_duration_since(Instant::now()));
                        }
                    }
                    if let Err(e) = result {
                        ctx.fail(format!("sink `{}`: {e:#}", node.name));
                        writer = None;
                    }
                }
            },
        );
}
