//! The oracle: read the file line by line with `serde_json::Value`, validate each trade by the
//! documented rules, track `watermark = max event time − max_out_of_orderness` in file order, and
//! compute windows by brute force (a list of trades per window, aggregated from scratch).

use std::collections::BTreeMap;

pub const MAX_TS: i64 = 253_402_300_799_999;

#[derive(Debug, Clone)]
pub struct T {
    pub sym: String,
    pub p: f64,
    pub v: f64,
    pub ts: i64,
    /// (line, index in frame): arrival order.
    pub seq: (u64, u64),
    /// Watermark right after this trade was read.
    pub wm: i64,
}

#[derive(Debug, Default)]
pub struct Input {
    pub trades: Vec<T>,
    /// Rejected trades and frames by reason code, with their line numbers.
    pub rejected: BTreeMap<String, Vec<u64>>,
}

fn valid_trade(v: &serde_json::Value) -> Result<(String, f64, f64, i64), &'static str> {
    let o = v.as_object().ok_or("invalid_type")?;
    let s = match o.get("s") {
        None => return Err("missing_field"),
        Some(serde_json::Value::String(s)) if s.is_empty() => return Err("missing_field"),
        Some(serde_json::Value::String(s)) if s.len() > 64 || s.chars().any(char::is_control) => {
            return Err("invalid_symbol");
        }
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err("invalid_type"),
    };
    let num = |k: &str| -> Result<f64, &'static str> {
        match o.get(k) {
            None => Err("missing_field"),
            Some(serde_json::Value::Number(n)) => Ok(n.as_f64().unwrap()),
            Some(_) => Err("invalid_type"),
        }
    };
    let p = num("p")?;
    if !(p.is_finite() && p > 0.0 && p <= 1e15) {
        return Err("invalid_price");
    }
    let vol = num("v")?;
    if !(vol.is_finite() && (0.0..=1e15).contains(&vol)) {
        return Err("invalid_volume");
    }
    let t = match o.get("t") {
        None => return Err("missing_field"),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(t) if (0..=MAX_TS).contains(&t) => t,
            _ => return Err("invalid_timestamp"),
        },
        Some(_) => return Err("invalid_type"),
    };
    match o.get("c") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items))
            if items.iter().all(|i| i.is_string() || i.is_i64()) => {}
        Some(_) => return Err("invalid_type"),
    }
    // `max_future` (1h by default): nothing more than an hour ahead of the wall clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    if t > now + 3_600_000 {
        return Err("future_timestamp");
    }
    Ok((s, p, vol, t))
}

/// Reads a replay file the way the documentation says the replay source does.
pub fn read(text: &str, ooo: i64) -> Input {
    let mut input = Input::default();
    let mut max = i64::MIN;
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut reject = |r: &str| {
            input
                .rejected
                .entry(r.to_string())
                .or_default()
                .push(line_no)
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            reject("malformed_frame");
            continue;
        };
        let Some(kind) = v.get("type").and_then(|t| t.as_str()) else {
            reject("malformed_frame");
            continue;
        };
        if kind != "trade" {
            continue;
        }
        let Some(data) = v.get("data").and_then(|d| d.as_array()) else {
            reject("malformed_frame");
            continue;
        };
        for (idx, item) in data.iter().enumerate() {
            match valid_trade(item) {
                Ok((sym, p, vol, ts)) => {
                    max = max.max(ts);
                    input.trades.push(T {
                        sym,
                        p,
                        v: vol,
                        ts,
                        seq: (line_no, idx as u64),
                        wm: max - ooo,
                    });
                }
                Err(r) => reject(r),
            }
        }
    }
    input
}

/// One expected window row: key, start, end, then open, high, low, close, volume, vwap, avg,
/// stddev (None = null), count.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub sym: String,
    pub start: i64,
    pub end: i64,
    pub values: Vec<Option<f64>>,
    pub count: i64,
}

/// Aggregates a window's trades (given in arrival order) from scratch.
pub fn bar(sym: &str, start: i64, end: i64, trades: &[&T]) -> Bar {
    let first = trades.iter().min_by_key(|t| (t.ts, t.seq)).unwrap();
    let last = trades.iter().max_by_key(|t| (t.ts, t.seq)).unwrap();
    let high = trades.iter().map(|t| t.p).fold(f64::MIN, f64::max);
    let low = trades.iter().map(|t| t.p).fold(f64::MAX, f64::min);
    let volume: f64 = trades.iter().map(|t| t.v).sum();
    let pv: f64 = trades.iter().map(|t| t.p * t.v).sum();
    let n = trades.len() as f64;
    let mean = trades.iter().map(|t| t.p).sum::<f64>() / n;
    let stddev = if trades.len() >= 2 {
        Some((trades.iter().map(|t| (t.p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
    } else {
        None
    };
    Bar {
        sym: sym.to_string(),
        start,
        end,
        values: vec![
            Some(first.p),
            Some(high),
            Some(low),
            Some(last.p),
            Some(volume),
            (volume > 0.0).then(|| pv / volume),
            Some(mean),
            stddev,
        ],
        count: trades.len() as i64,
    }
}

/// Fixed windows (tumbling: slide = size). `threshold(end)` is the watermark at or beyond which a
/// trade no longer counts for a window (end for strict windows, end + allowed lateness).
pub fn fixed_windows(input: &Input, size: i64, slide: i64, extra: i64) -> (Vec<Bar>, usize) {
    let mut windows: BTreeMap<(String, i64), Vec<&T>> = BTreeMap::new();
    let mut dropped = 0;
    for t in &input.trades {
        let mut kept = false;
        let mut start = t.ts.div_euclid(slide) * slide;
        while start > t.ts - size {
            if t.wm < start + size + extra {
                windows.entry((t.sym.clone(), start)).or_default().push(t);
                kept = true;
            }
            start -= slide;
        }
        if !kept {
            dropped += 1;
        }
    }
    let bars = windows
        .iter()
        .map(|((s, start), ts)| bar(s, *start, start + size, ts))
        .collect();
    (bars, dropped)
}

/// Session windows: per key in arrival order; a session is closed once the watermark reaches its
/// end; a trade touching open sessions merges them.
pub fn sessions(input: &Input, gap: i64) -> (Vec<Bar>, usize) {
    struct S<'a> {
        start: i64,
        end: i64,
        trades: Vec<&'a T>,
    }
    let mut per_key: BTreeMap<String, Vec<S>> = BTreeMap::new();
    let mut dropped = 0;
    for t in &input.trades {
        if t.ts + gap <= t.wm {
            dropped += 1;
            continue;
        }
        let list = per_key.entry(t.sym.clone()).or_default();
        let (mut start, mut end, mut trades) = (t.ts, t.ts + gap, vec![t]);
        let mut keep = Vec::new();
        for s in list.drain(..) {
            let open = s.end > t.wm;
            if open && s.start <= t.ts + gap && t.ts <= s.end {
                start = start.min(s.start);
                end = end.max(s.end);
                trades.extend(s.trades);
            } else {
                keep.push(s);
            }
        }
        keep.push(S { start, end, trades });
        *list = keep;
    }
    let mut bars = Vec::new();
    for (sym, list) in &per_key {
        for s in list {
            let mut trades = s.trades.clone();
            trades.sort_by_key(|t| t.seq);
            bars.push(bar(sym, s.start, s.end, &trades));
        }
    }
    bars.sort_by(|a, b| (&a.sym, a.start).cmp(&(&b.sym, b.start)));
    (bars, dropped)
}
