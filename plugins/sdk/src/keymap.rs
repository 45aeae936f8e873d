//! Per-key state: a hash map with a small, fast hash.
//!
//! Models keep state per key (per symbol). In WebAssembly, comparing strings is a byte-by-byte
//! loop (there is no vectorized `memcmp`), so a `BTreeMap<String, _>`, which compares a key
//! about log2(n) times per lookup, costs much more than in native code; hashing a short key
//! once is cheap. [`KeyMap`] is a `HashMap` with FxHash (the hash rustc uses): fast, not
//! DoS-resistant, which is fine for a plugin's own state.

use std::hash::{BuildHasherDefault, Hasher};

/// A map from key to state with a fast hash. Iteration order is unspecified: sort when the
/// order matters (e.g. in `snapshot`).
pub type KeyMap<V> = std::collections::HashMap<String, V, BuildHasherDefault<FxHasher>>;

/// FxHash: a multiply-rotate hash over 8-byte words.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_and_distinct_keys_stay_apart() {
        let mut m: KeyMap<usize> = KeyMap::default();
        for i in 0..1000 {
            m.insert(format!("SYM{i}"), i);
        }
        assert_eq!(m.len(), 1000);
        assert!((0..1000).all(|i| m[&format!("SYM{i}")] == i));
        assert!(!m.contains_key("SYM1000"));
    }
}
