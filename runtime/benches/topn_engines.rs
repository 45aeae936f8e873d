//! Why `top_n` is a timely operator and not a differential-dataflow reduce (issue 21): the same
//! rankings computed both ways, in one invocation, on the same rows.
//!
//! The input is what `cargo bench --bench pipeline -- --topn` ranks: one row per key and window
//! (1-minute bars of `--keys` symbols over `--windows` minutes), a value per row (the return),
//! and a fraction `--revise` of the rows revised once in the next window (a late trade changed
//! the bar). Both engines produce, per window, the `--n` keys with the largest value (ties by
//! key), again whenever a revision changes it; windows are forgotten two windows later (the
//! allowed lateness).
//!
//! - `dd`: rows are updates of a collection `(window, (−value, key))` at the window's time (a
//!   revision retracts the old value and inserts the new one; the forgetting is a retraction two
//!   windows later); `reduce` keeps the first `n` of each window — an arrangement per window.
//! - `stash`: what `steps/top_n` does — rows exchanged by window, kept per window in a map, each
//!   window ranked once the frontier passes it and re-ranked when a revision comes.
//!
//! Both count the ranked rows they emit (and check they agree on the final rankings' checksum).
//!
//!     cargo bench --bench topn_engines -- [--keys 10000] [--windows 64] [--n 10] [--revise 0.05] [--workers 2]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use differential_dataflow::input::Input;
use timely::dataflow::InputHandle;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Input as _, Inspect, Operator, Probe};

#[derive(Clone, Copy)]
struct Args {
    keys: u64,
    windows: u64,
    n: usize,
    revise: f64,
    workers: usize,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic value per (window, key, version): a return in about ±5%, as an integer so
/// that both engines order it alike (millionths).
fn value(w: u64, k: u64, version: u64) -> i64 {
    let mut x = w.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ k.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ version.wrapping_mul(0x1656_67B1_9E37_79F9);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x % 100_001) as i64 - 50_000
}

/// Whether (w, k) is revised in window w + 1.
fn revised(a: &Args, w: u64, k: u64) -> bool {
    (value(w, k, 7).unsigned_abs() as f64) < a.revise * 50_000.0
}

/// The rows worker `index` of `peers` feeds at window `w`: (window, key, value, old value).
fn rows_at(
    a: &Args,
    w: u64,
    index: u64,
    peers: u64,
) -> impl Iterator<Item = (u64, u64, i64, Option<i64>)> + '_ {
    let fresh = (w < a.windows).then_some(w).into_iter().flat_map(move |w| {
        (index..a.keys)
            .step_by(peers as usize)
            .map(move |k| (w, k, value(w, k, 0), None))
    });
    let late = w
        .checked_sub(1)
        .filter(|p| *p < a.windows)
        .into_iter()
        .flat_map(move |p| {
            (index..a.keys)
                .step_by(peers as usize)
                .filter(move |&k| revised(a, p, k))
                .map(move |k| (p, k, value(p, k, 1), Some(value(p, k, 0))))
        });
    fresh.chain(late)
}

fn run(a: Args, engine: &'static str) -> (f64, u64, u64) {
    let emitted = Arc::new(AtomicU64::new(0));
    let checksum = Arc::new(AtomicU64::new(0));
    let (e, c) = (Arc::clone(&emitted), Arc::clone(&checksum));
    let started = Instant::now();
    timely::execute(timely::Config::process(a.workers), move |worker| {
        let (index, peers) = (worker.index() as u64, worker.peers() as u64);
        let (e, c) = (Arc::clone(&e), Arc::clone(&c));
        let n = a.n;
        match engine {
            "dd" => {
                let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, rows) = scope.new_collection::<(u64, (i64, u64)), isize>();
                    let top = rows.reduce(
                        move |_w,
                              vals: &[(&(i64, u64), isize)],
                              out: &mut Vec<((i64, u64), isize)>| {
                            // Values are sorted: (−value, key) ascending is the ranking.
                            for (v, _) in vals.iter().take(n) {
                                out.push((**v, 1));
                            }
                        },
                    );
                    let probe = top
                        .inner
                        .inspect(move |((w, (v, k)), t, d)| {
                            if *d > 0 {
                                e.fetch_add(1, Relaxed);
                            }
                            // The final rankings: what is still there after the last revision.
                            if *t == w + 1 || *t == *w {
                                let h =
                                    (w.wrapping_mul(31) ^ (*v as u64).wrapping_mul(17) ^ k) as i64;
                                c.fetch_add((h.wrapping_mul(*d as i64)) as u64, Relaxed);
                            }
                        })
                        .probe()
                        .0;
                    (input, probe)
                });
                for w in 0..=a.windows + 2 {
                    input.advance_to(w);
                    for (win, k, v, old) in rows_at(&a, w, index, peers) {
                        if let Some(old) = old {
                            input.remove((win, (-old, k)));
                        }
                        input.insert((win, (-v, k)));
                    }
                    // Windows two behind are forgotten.
                    if let Some(gone) = w.checked_sub(2) {
                        for (win, k, v, _) in
                            rows_at(&a, gone, index, peers).filter(|r| r.3.is_none())
                        {
                            let v = if revised(&a, win, k) {
                                value(win, k, 1)
                            } else {
                                v
                            };
                            input.remove((win, (-v, k)));
                        }
                    }
                    input.advance_to(w + 1);
                    input.flush();
                    worker.step_while(|| probe.less_than(input.time()));
                }
            }
            _ => {
                let mut input = InputHandle::<u64, timely::container::CapacityContainerBuilder<Vec<(u64, u64, i64)>>>::new();
                let probe = worker.dataflow::<u64, _, _>(|scope| {
                    scope
                        .input_from(&mut input)
                        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<(u64, u64, i64)>>, _, _, _>(
                            Exchange::new(|r: &(u64, u64, i64)| r.0),
                            "TopN",
                            move |_, _| {
                                let mut windows: BTreeMap<
                                    u64,
                                    (HashMap<u64, i64>, Option<Vec<(i64, u64)>>),
                                > = BTreeMap::new();
                                let mut stash: BTreeMap<
                                    u64,
                                    (
                                        timely::dataflow::operators::Capability<u64>,
                                        Vec<(u64, u64, i64)>,
                                    ),
                                > = BTreeMap::new();
                                move |(input, frontier), output| {
                                    input.for_each(|cap, data| {
                                        stash
                                            .entry(*cap.least().expect("a time"))
                                            .or_insert_with(|| (cap.retain_least(0).expect("a time"), Vec::new()))
                                            .1
                                            .append(data);
                                    });
                                    let upper =
                                        frontier.frontier().first().copied().unwrap_or(u64::MAX);
                                    let rank = |rows: &HashMap<u64, i64>| {
                                        let mut all: Vec<(i64, u64)> =
                                            rows.iter().map(|(k, v)| (-v, *k)).collect();
                                        let n = n.min(all.len());
                                        if n > 0 {
                                            all.select_nth_unstable(n - 1);
                                        }
                                        all.truncate(n);
                                        all.sort_unstable();
                                        all
                                    };
                                    while let Some((&t, _)) = stash.first_key_value() {
                                        if t >= upper {
                                            break;
                                        }
                                        let (_, (cap, rows)) =
                                            stash.pop_first().expect("non-empty");
                                        let mut touched = Vec::new();
                                        for (w, k, v) in rows {
                                            windows.entry(w).or_default().0.insert(k, v);
                                            if w < t {
                                                touched.push(w);
                                            }
                                        }
                                        touched.dedup();
                                        let mut session = output.session(&cap);
                                        // Revised windows: ranked again, out again if changed.
                                        for w in touched {
                                            let (rows, emitted) =
                                                windows.get_mut(&w).expect("inserted");
                                            let ranking = rank(rows);
                                            if emitted.as_ref() != Some(&ranking) {
                                                session.give_iterator(
                                                    ranking.iter().map(|&(v, k)| (w, k, v)),
                                                );
                                                *emitted = Some(ranking);
                                            }
                                        }
                                        // The window of this time is complete: ranked.
                                        if let Some((rows, emitted)) = windows.get_mut(&t) {
                                            let ranking = rank(rows);
                                            session.give_iterator(
                                                ranking.iter().map(|&(v, k)| (t, k, v)),
                                            );
                                            *emitted = Some(ranking);
                                        }
                                    }
                                    // Windows two behind the frontier are forgotten, their final
                                    // rankings counted.
                                    while let Some(entry) = windows.first_entry() {
                                        if entry.key().saturating_add(2) >= upper {
                                            break;
                                        }
                                        let (w, (_, emitted)) = entry.remove_entry();
                                        for (v, k) in emitted.unwrap_or_default() {
                                            let h = (w.wrapping_mul(31)
                                                ^ (v as u64).wrapping_mul(17)
                                                ^ k) as i64;
                                            c.fetch_add(h as u64, Relaxed);
                                        }
                                    }
                                }
                            },
                        )
                        .inspect(move |_| {
                            e.fetch_add(1, Relaxed);
                        })
                        .probe()
                        .0
                });
                for w in 0..=a.windows + 2 {
                    input.advance_to(w);
                    for (win, k, v, _) in rows_at(&a, w, index, peers) {
                        input.send((win, k, v));
                    }
                    input.advance_to(w + 1);
                    worker.step_while(|| probe.less_than(input.time()));
                }
            }
        }
    })
    .expect("timely runs");
    (
        started.elapsed().as_secs_f64(),
        emitted.load(Relaxed),
        checksum.load(Relaxed),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let a = Args {
        keys: arg(&args, "--keys", 10_000),
        windows: arg(&args, "--windows", 64),
        n: arg(&args, "--n", 10),
        revise: arg(&args, "--revise", 0.05),
        workers: arg(&args, "--workers", 2),
    };
    let rows: u64 = (0..=a.windows + 2)
        .map(|w| rows_at(&a, w, 0, 1).count() as u64)
        .sum();
    println!(
        "top {} of {} keys per window, {} windows, {:.0}% revised: {rows} rows in, {} workers",
        a.n,
        a.keys,
        a.windows,
        a.revise * 100.0,
        a.workers
    );
    println!("| engine | time | rows ranked/s | ranked rows out | checksum |");
    println!("|---|---:|---:|---:|---|");
    for engine in ["stash", "dd", "stash", "dd"] {
        let (secs, out, sum) = run(a, engine);
        println!(
            "| {engine} | {secs:.3} s | {:.0} | {out} | {sum:x} |",
            rows as f64 / secs
        );
    }
}
