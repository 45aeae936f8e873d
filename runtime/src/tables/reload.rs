//! Tables that change while the pipeline runs (`reload:`): a thread polls the file, and a feed
//! operator puts each new version into the dataflow at a time of its own, broadcast to every
//! worker. Lookups join a record of time `t` with the latest version stamped at or before `t`,
//! once no version before `t` can still come, so all workers (and processes) apply a change
//! from the same point of the stream.
//!
//! The feed runs on global worker 0 (the other workers build it and let go of its capability at
//! once). It follows the progress of the lookup's input (the frontier the lookup on worker 0
//! sees), so a version is stamped with the time the input had reached when the change was seen.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::Activator;

use super::{Table, TableData};
use crate::metrics::StepStats;

/// The polling thread's latest good version, taken by the feed.
struct Polled {
    latest: Mutex<Option<TableData>>,
    done: AtomicBool,
}

/// Polls `table`'s file every `every`; a file whose bytes differ from the last version read
/// (`known`) and parse is offered to the feed; a failure is logged (once per distinct error),
/// counted, and the last good table kept.
fn poll(
    table: Arc<Table>,
    every: Duration,
    known: u64,
    stats: Arc<StepStats>,
    step: String,
) -> Arc<Polled> {
    let polled = Arc::new(Polled {
        latest: Mutex::new(None),
        done: AtomicBool::new(false),
    });
    let shared = Arc::clone(&polled);
    let spawned = std::thread::Builder::new().name(format!("table-{}", table.name)).spawn(move || {
        let mut last = known;
        let mut last_error = String::new();
        let mut next = Instant::now() + every;
        while !shared.done.load(Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(100)));
                continue;
            }
            next = now + every;
            let read = super::load::read_if_changed(&table.config, Some(last));
            match read {
                Ok(None) => {}
                Ok(Some(data)) => {
                    last = data.fingerprint;
                    last_error.clear();
                    tracing::info!(step = %step, table = %table.name, rows = data.rows.len(), "table changed: the new version applies from here on");
                    *shared.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(data);
                }
                Err(e) => {
                    stats.table_reload_errors.fetch_add(1, Relaxed);
                    if e != last_error {
                        tracing::warn!(step = %step, table = %table.name, path = %table.config.path, error = %e, "table reload failed: keeping the last good table");
                        last_error = e;
                    }
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a table's polling thread: the table stays as read at start");
    }
    polled
}

/// The versions of `table` after the one with fingerprint `known`, each stamped with the time
/// `input` (the frontier of the lookup's input, which the lookup on this worker writes; `None`
/// once it is empty) had reached when it was seen. `kick` lets the lookup wake the feed when
/// its input advances.
pub fn feed<'s>(
    scope: Scope<'s, u64>,
    step: &str,
    table: Arc<Table>,
    known: u64,
    input: Rc<std::cell::Cell<Option<u64>>>,
    stats: Arc<StepStats>,
    kick: Rc<RefCell<Option<Activator>>>,
) -> StreamVec<'s, u64, TableData> {
    let every = table.config.reload.map_or(Duration::from_secs(30), |d| {
        Duration::from_millis(d.as_millis().max(1000) as u64)
    });
    let leader = scope.index() == 0;
    let step = step.to_string();
    source(
        scope,
        &format!("TableFeed({step})"),
        move |capability: Capability<u64>, info| {
            let activator = scope.activator_for(info.address);
            *kick.borrow_mut() = Some(activator.clone());
            let mut cap = leader.then_some(capability);
            let polled = leader.then(|| {
                poll(
                    Arc::clone(&table),
                    every,
                    known,
                    Arc::clone(&stats),
                    step.clone(),
                )
            });
            move |output| {
                let Some(c) = cap.as_mut() else { return };
                let Some(polled) = polled.as_ref() else {
                    return;
                };
                let changed = polled
                    .latest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(data) = changed {
                    stats.table_reloads.fetch_add(1, Relaxed);
                    output.session(&*c).give(data);
                }
                match input.get() {
                    None => {
                        cap = None;
                        polled.done.store(true, Relaxed);
                        return;
                    }
                    Some(t) if t > *c.time() => c.downgrade(&t),
                    Some(_) => {}
                }
                activator.activate_after(Duration::from_millis(200));
            }
        },
    )
}
