//! Event time in the dataflow. Records carry their exact read-watermark; the timely timestamp is
//! that watermark rounded down to the source's quantum, so the frontier moves in steps that line
//! up with window boundaries (few distinct timestamps, yet every window fires exactly when the
//! watermark passes its end). Timestamps are ms since the Unix epoch; negative watermarks
//! (before the first trade) map to 0.

/// The timely timestamp for a record read at watermark `wm`.
#[inline]
pub fn quantize(wm: i64, quantum: u64) -> u64 {
    if wm <= 0 {
        0
    } else {
        (wm as u64 / quantum) * quantum
    }
}

/// The watermarks that [`quantize`] maps to `t` (a quantized time): `lo..hi`. Time 0 also
/// holds every watermark at or below 0.
#[inline]
pub fn quantum_bounds(t: u64, quantum: u64) -> (i64, i64) {
    let hi = t.saturating_add(quantum).min(i64::MAX as u64) as i64;
    if t == 0 {
        (i64::MIN, hi)
    } else {
        (t as i64, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_down_to_the_quantum() {
        assert_eq!(quantize(i64::MIN, 60_000), 0);
        assert_eq!(quantize(59_999, 60_000), 0);
        assert_eq!(quantize(60_000, 60_000), 60_000);
        assert_eq!(quantize(1_700_000_012_345, 1000), 1_700_000_012_000);
    }

    #[test]
    fn bounds_hold_exactly_the_watermarks_that_round_to_a_time() {
        for quantum in [1u64, 7, 1000, 60_000] {
            for wm in [i64::MIN, -5, 0, 1, 6, 7, 59_999, 60_000, 1_700_000_012_345] {
                let t = quantize(wm, quantum);
                let (lo, hi) = quantum_bounds(t, quantum);
                assert!(
                    (lo..hi).contains(&wm),
                    "{wm} in bounds of {t} (quantum {quantum})"
                );
                for other in [
                    wm.saturating_sub(quantum as i64),
                    wm.saturating_add(quantum as i64),
                    lo.saturating_sub(1),
                    hi,
                ] {
                    assert_eq!(
                        (lo..hi).contains(&other),
                        quantize(other, quantum) == t,
                        "{other} against time {t} (quantum {quantum})"
                    );
                }
            }
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
