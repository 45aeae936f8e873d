//! Decodes every frame of each file with each parser, one thread, best of 3, and prints trades/s:
//!
//! - `fast+serde`: what tickflow does (the fast path, serde_json where it gives up);
//! - `serde_json`, `sonic-rs`, `simd-json`: tickflow's general parser (its serde visitors, which
//!   validate every trade) driven by each library's serde deserializer;
//! - `simd-json tape`, `sonic-rs lazy`: each library's own fastest API, extracting `s`, `p`, `t`,
//!   `v` without any validation (an upper bound: what a general path built on it could reach).
//!
//! tickflow's `fast.rs` and `protocol.rs` are included by path, with stand-ins for the few
//! runtime helpers they name.

use std::time::Instant;

mod base {
    pub mod reject {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum RejectReason {
            MalformedRecord,
            InvalidType,
            MissingField,
            InvalidSymbol,
            InvalidPrice,
            InvalidVolume,
            InvalidTimestamp,
        }
    }
    pub mod time {
        pub fn now_ms() -> i64 {
            0
        }
    }
    pub mod record {
        pub fn format_ts(t: i64) -> String {
            t.to_string()
        }
    }
    pub mod text {
        pub fn quote(s: &str, _n: usize) -> String {
            s.to_string()
        }
    }
}

#[allow(dead_code)]
mod finnhub;

use finnhub::{fast, protocol};

fn via_sonic(text: &str, on: impl FnMut(usize, protocol::ValidTrade)) -> bool {
    let mut bad = Vec::new();
    match sonic_rs::from_str::<protocol::RawFrame>(text) {
        Ok(frame) => protocol::frame_kind(frame, on, &mut bad).is_ok(),
        Err(_) => false,
    }
}

fn via_simd(buf: &mut [u8], on: impl FnMut(usize, protocol::ValidTrade)) -> bool {
    let mut bad = Vec::new();
    match simd_json::serde::from_slice::<protocol::RawFrame>(buf) {
        Ok(frame) => protocol::frame_kind(frame, on, &mut bad).is_ok(),
        Err(_) => false,
    }
}

fn simd_tape(
    buf: &mut [u8],
    buffers: &mut simd_json::Buffers,
    out: &mut impl FnMut(&str),
) -> Option<()> {
    use simd_json::prelude::*;
    let tape = simd_json::to_tape_with_buffers(buf, buffers).ok()?;
    let value = tape.as_value();
    for t in value.as_object()?.get("data")?.as_array()?.iter() {
        let (mut p, mut ts, mut v) = (0.0, 0i64, 0.0);
        let mut s = compact_str::CompactString::default();
        for (k, val) in t.as_object()?.iter() {
            match k {
                "p" => p = val.cast_f64()?,
                "s" => s = val.as_str()?.into(),
                "t" => ts = val.as_i64()?,
                "v" => v = val.cast_f64()?,
                _ => {}
            }
        }
        std::hint::black_box((p, ts, v));
        out(&s);
    }
    Some(())
}

fn sonic_lazy(text: &str, out: &mut impl FnMut(&str)) -> Option<()> {
    use sonic_rs::JsonValueTrait;
    for kv in sonic_rs::to_object_iter(text) {
        let (k, data) = kv.ok()?;
        if k.as_ref() != "data" {
            continue;
        }
        for t in sonic_rs::to_array_iter(data.as_raw_str()) {
            let t = t.ok()?;
            let (mut p, mut ts, mut v) = (0.0, 0i64, 0.0);
            let mut s = compact_str::CompactString::default();
            for kv in sonic_rs::to_object_iter(t.as_raw_str()) {
                let (k, val) = kv.ok()?;
                match k.as_ref() {
                    "p" => p = val.as_f64()?,
                    "s" => s = val.as_str()?.into(),
                    "t" => ts = val.as_i64()?,
                    "v" => v = val.as_f64()?,
                    _ => {}
                }
            }
            std::hint::black_box((p, ts, v));
            out(&s);
        }
    }
    Some(())
}

fn main() {
    let parsers = [
        "fast+serde",
        "serde_json",
        "sonic-rs",
        "simd-json",
        "simd-json tape",
        "sonic-rs lazy",
    ];
    for path in std::env::args().skip(1) {
        let data = std::fs::read_to_string(&path).expect("a JSONL file");
        let lines: Vec<&str> = data.lines().collect();
        // `PARSERS=fast+serde,sonic-rs` measures only those.
        let only = std::env::var("PARSERS").ok();
        for which in parsers {
            if only.as_ref().is_some_and(|o| !o.split(',').any(|p| p == which)) {
                continue;
            }
            let (mut best, mut count) = (f64::MAX, 0usize);
            for _ in 0..3 {
                let started = Instant::now();
                let mut n = 0usize;
                let (mut buf, mut buffers) = (Vec::new(), simd_json::Buffers::default());
                let mut fast_trades = Vec::new();
                for line in &lines {
                    let mut on = |_, t: protocol::ValidTrade| {
                        std::hint::black_box(&t);
                        n += 1
                    };
                    match which {
                        "fast+serde" => {
                            if fast::parse_trade_frame(line.as_bytes(), &mut fast_trades).is_some() {
                                for (i, t) in fast_trades.drain(..).enumerate() {
                                    on(i, t);
                                }
                            } else {
                                let _ = protocol::parse_frame(line, on, &mut Vec::new());
                            }
                        }
                        "serde_json" => {
                            let _ = protocol::parse_frame(line, on, &mut Vec::new());
                        }
                        "sonic-rs" => {
                            via_sonic(line, on);
                        }
                        "simd-json" => {
                            buf.clear();
                            buf.extend_from_slice(line.as_bytes());
                            via_simd(&mut buf, on);
                        }
                        "simd-json tape" => {
                            buf.clear();
                            buf.extend_from_slice(line.as_bytes());
                            simd_tape(&mut buf, &mut buffers, &mut |s| {
                                std::hint::black_box(s);
                                n += 1
                            });
                        }
                        _ => {
                            sonic_lazy(line, &mut |s| {
                                std::hint::black_box(s);
                                n += 1
                            });
                        }
                    }
                }
                best = best.min(started.elapsed().as_secs_f64());
                count = n;
            }
            println!(
                "{:<24} {which:<15} {best:.3} s  {:>5.2} M trades/s  ({count} trades)",
                std::path::Path::new(&path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy(),
                count as f64 / best / 1e6
            );
        }
    }
}
