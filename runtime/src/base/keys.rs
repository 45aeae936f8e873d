//! Keys: a stable hash and key groups, the unit that exchanges route by, checkpoints store
//! state by, and workers own (`group mod workers`).

/// The key group of `key`: what checkpoints store state by and the exchange routes by.
pub fn key_group(key: &str, key_groups: u64) -> u64 {
    key_hash(key) % key_groups
}

/// A stable hash of a key, identical in every process and every run (records are routed by it,
/// checkpoints store state by it).
pub fn key_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}
