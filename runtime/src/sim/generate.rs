//! Deterministic synthetic trades as Finnhub websocket frames (JSONL): several trades per frame,
//! mixed symbols, random-walk prices, fractional crypto volumes, zero-volume forex updates, pings,
//! and — on request — out-of-order timestamps, invalid trades and malformed lines. The same seed
//! always gives the same bytes.

use std::io::Write;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub trades: u64,
    pub symbols: usize,
    pub seed: u64,
    /// Event time of the first trade (ms since epoch).
    pub start_ms: i64,
    /// Mean event-time distance between consecutive trades (ms, may be fractional).
    pub mean_gap_ms: f64,
    /// Largest backwards jump of a disordered trade (ms); 0 = in order.
    pub disorder_ms: i64,
    /// Fraction of trades that are disordered.
    pub disorder_rate: f64,
    /// Fraction of trades that are invalid (bad price, missing field, ...).
    pub invalid_rate: f64,
    /// Fraction of lines that are malformed JSON.
    pub malformed_rate: f64,
    /// A ping frame every this many frames (0 = none).
    pub ping_every: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            trades: 100_000,
            symbols: 20,
            seed: 42,
            start_ms: 1_764_236_400_000, // 2025-11-27T09:40:00Z
            mean_gap_ms: 5.0,
            disorder_ms: 0,
            disorder_rate: 0.0,
            invalid_rate: 0.0,
            malformed_rate: 0.0,
            ping_every: 1000,
        }
    }
}

const EQUITIES: &[&str] = &[
    "AAPL", "MSFT", "AMZN", "NVDA", "GOOGL", "META", "TSLA", "AMD", "NFLX", "INTC", "JPM", "V",
    "KO", "DIS", "IBM",
];
const CRYPTO: &[&str] = &["BINANCE:BTCUSDT", "BINANCE:ETHUSDT", "BINANCE:SOLUSDT"];
const FOREX: &[&str] = &["OANDA:EUR_USD", "OANDA:GBP_USD"];

/// The symbol universe for `n` symbols: well-known names first, then `SYM0042`-style fillers.
pub fn symbols(n: usize) -> Vec<String> {
    let mut out: Vec<String> = EQUITIES
        .iter()
        .chain(CRYPTO)
        .chain(FOREX)
        .map(|s| s.to_string())
        .collect();
    out.truncate(n);
    let mut i = 0;
    while out.len() < n {
        out.push(format!("SYM{i:04}"));
        i += 1;
    }
    out
}

/// Writes the frames to `out`. Returns the number of lines written.
pub fn generate(opts: &GenOptions, out: &mut impl Write) -> std::io::Result<u64> {
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let syms = symbols(opts.symbols.max(1));
    let mut prices: Vec<f64> = syms
        .iter()
        .map(|s| match s.as_str() {
            "BINANCE:BTCUSDT" => 91_000.0,
            "BINANCE:ETHUSDT" => 3_000.0,
            "BINANCE:SOLUSDT" => 140.0,
            s if s.starts_with("OANDA:") => 1.1,
            _ => 20.0 + rng.random::<f64>() * 400.0,
        })
        .collect();
    let mut clock = opts.start_ms as f64;
    let mut written = 0u64;
    let mut lines = 0u64;
    let mut frames = 0u64;
    let mut line = String::with_capacity(512);
    while written < opts.trades {
        frames += 1;
        if opts.ping_every > 0 && frames % opts.ping_every == 0 {
            out.write_all(b"{\"type\":\"ping\"}\n")?;
            lines += 1;
        }
        if opts.malformed_rate > 0.0 && rng.random::<f64>() < opts.malformed_rate {
            out.write_all(b"{\"data\":[{\"p\":1.0,\"s\":\"AAPL\",\"t\":17\n")?;
            lines += 1;
            continue;
        }
        let n = (1 + rng.random_range(0..5u64)).min(opts.trades - written);
        line.clear();
        line.push_str("{\"data\":[");
        for k in 0..n {
            // Exponential inter-arrival times (a Poisson process).
            clock += -opts.mean_gap_ms * (1.0 - rng.random::<f64>()).ln();
            let i = rng.random_range(0..syms.len());
            let sym = &syms[i];
            let step = 1.0 + (rng.random::<f64>() - 0.5) * 0.002;
            prices[i] = (prices[i] * step).max(0.0001);
            let mut t = clock as i64;
            if opts.disorder_ms > 0 && rng.random::<f64>() < opts.disorder_rate {
                t -= rng.random_range(1..=opts.disorder_ms);
            }
            let (price, volume) = if sym.starts_with("OANDA:") {
                (round(prices[i], 5), "0".to_string())
            } else if sym.starts_with("BINANCE:") {
                (
                    round(prices[i], 2),
                    format!("{}", round(rng.random::<f64>() * 0.5, 6)),
                )
            } else {
                (
                    round(prices[i], 2),
                    format!("{}", rng.random_range(1..500u32)),
                )
            };
            if k > 0 {
                line.push(',');
            }
            if opts.invalid_rate > 0.0 && rng.random::<f64>() < opts.invalid_rate {
                match rng.random_range(0..4u32) {
                    0 => line.push_str(&format!(
                        "{{\"p\":-{price},\"s\":\"{sym}\",\"t\":{t},\"v\":{volume}}}"
                    )),
                    1 => line.push_str(&format!("{{\"p\":{price},\"t\":{t},\"v\":{volume}}}")),
                    2 => line.push_str(&format!(
                        "{{\"p\":\"{price}\",\"s\":\"{sym}\",\"t\":{t},\"v\":{volume}}}"
                    )),
                    _ => line.push_str(&format!(
                        "{{\"p\":{price},\"s\":\"{sym}\",\"t\":{t},\"v\":-1}}"
                    )),
                }
            } else {
                let c = match rng.random_range(0..4u32) {
                    0 => "",
                    1 => "\"c\":null,",
                    2 => "\"c\":[],",
                    _ => "\"c\":[\"1\",\"12\"],",
                };
                line.push_str(&format!(
                    "{{{c}\"p\":{price},\"s\":\"{sym}\",\"t\":{t},\"v\":{volume}}}"
                ));
            }
            written += 1;
        }
        line.push_str("],\"type\":\"trade\"}\n");
        out.write_all(line.as_bytes())?;
        lines += 1;
    }
    Ok(lines)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
