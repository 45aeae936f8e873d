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
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
