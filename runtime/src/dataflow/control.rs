//! The control dataflow: what the processes of a cluster tell each other besides records.
//!
//! Within one process, workers share replay block carries, Kafka watermarks and the stop flag
//! through memory. Across processes the same facts travel as [`ControlMsg`]s: each process's
//! first worker drains an outbox every activation (and at least each [`crate::cluster::HEARTBEAT`]) and
//! broadcasts it; every process's first worker applies what arrives to its own copy of the shared
//! state. Every message is idempotent (a value set, a maximum raised), so order between
//! processes does not matter.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::{Operator, source};
use timely::dataflow::operators::vec::Broadcast;

use crate::cluster::ControlMsg;
use crate::worker::context::RunContext;

/// Builds the control dataflow on one worker. It ends once `main_done` is set (this worker's
/// main dataflow has finished) on every worker of the cluster.
pub fn build(
    worker: &mut timely::worker::Worker,
    ctx: &Arc<RunContext>,
    main_done: Rc<Cell<bool>>,
) {
    let Some(control) = ctx.control.clone() else {
        return;
    };
    let index = worker.index();
    let first = control.is_first(index);
    let apply_ctx = Arc::clone(ctx);
    let ctx = Arc::clone(ctx);
    worker.dataflow::<u64, _, _>(|scope| {
        source(scope, "ControlOut", move |capability, info| {
            let activator = scope.activator_for(info.address.clone());
            if first {
                *control.activator.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(scope.worker().sync_activator_for(info.address.to_vec()));
            }
            let mut cap = Some(capability);
            let mut last_beat: Option<Instant> = None;
            move |output| {
                let Some(c) = cap.as_ref() else {
                    return;
                };
                let mut again = Duration::from_millis(100);
                // Every local worker is done: a follower sends what is left for the leader's
                // final commit, then the control dataflow may end.
                let ending = main_done.get()
                    && (!first || control.tails_done.load(Ordering::Acquire) >= control.threads);
                if first {
                    if ctx.stop.load(Ordering::Acquire) {
                        control.send_stop(None, None);
                    }
                    let cp = ctx.checkpoint.as_ref();
                    // During a checkpoint, counts travel as they change: consumers in other
                    // processes wait for them to match.
                    if let Some(cp) = cp.filter(|cp| cp.in_progress().is_some()) {
                        if let Some(m) = cp.counts_message(false) {
                            control.send(m);
                        }
                        again = crate::checkpoint::FROZEN_POLL;
                    }
                    if ending && let Some(m) = cp.and_then(|cp| cp.final_contribution()) {
                        control.send(m);
                    }
                    let mut msgs = control.take();
                    if last_beat.is_none_or(|t| t.elapsed() >= crate::cluster::HEARTBEAT) {
                        msgs.extend(ctx.unsent_watermarks());
                        msgs.push(ControlMsg::Heartbeat {
                            process: control.process as u32,
                        });
                        last_beat = Some(Instant::now());
                    }
                    output.session(c).give_container(&mut msgs);
                }
                if ending {
                    cap = None;
                    return;
                }
                activator.activate_after(again);
            }
        })
        .broadcast()
        .sink(Pipeline, "ControlIn", move |(input, _frontier)| {
            input.for_each(|_time, data| {
                if first {
                    for m in data.drain(..) {
                        apply_ctx.apply_control(m);
                    }
                }
            });
        });
    });
}
