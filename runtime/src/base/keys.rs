//! Keys: a stable hash and key groups, the unit that exchanges route by, checkpoints store
//! state by, and workers own (`group mod workers`).

/// The key group of `key`: what checkpoints store state by and the exchange routes by.
#[inline]
pub fn key_group(key: &str, key_groups: u64) -> u64 {
    let h = key_hash(key);
    // The same value as `h % key_groups`; a mask for the usual power of two (the default 128),
    // as the exchange computes this for every record.
    if key_groups.is_power_of_two() {
        h & (key_groups - 1)
    } else {
        h % key_groups
    }
}

/// A stable hash of a key, identical in every process and every run (records are routed by it,
/// checkpoints store state by it).
#[inline]
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_the_hash_modulo_the_group_count() {
        for key in [
            "",
            "AAPL",
            "BINANCE:BTCUSDT",
            "SYM0042",
            "Ünï",
            "x".repeat(100).as_str(),
        ] {
            for groups in [1u64, 2, 3, 100, 128, 1000, 1024, 32_768] {
                assert_eq!(
                    key_group(key, groups),
                    key_hash(key) % groups,
                    "{key} in {groups}"
                );
            }
        }
    }
}
