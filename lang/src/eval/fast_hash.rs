//! A fast hasher for maps on the decision path (scope buckets, interned strings, sessions).
//!
//! The standard `HashMap` hashes with SipHash-1-3 and random keys, a defence against
//! attackers who choose the keys a map holds. These maps hold keys from the policy set (the
//! evaluator's) or are private to an offline run (the simulator's sessions), and are hashed
//! several times for every request, so they use a folded multiply (the 128-bit product of the
//! state and a constant, high half XOR low half, as in wyhash and foldhash): a few cycles a
//! word, and the same hashes on every run.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The multiplier (rustc-hash 2's) and the seed (digits of pi).
const K: u64 = 0xf135_7aea_2e62_a9c5;
const SEED: u64 = 0x243f_6a88_85a3_08d3;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

#[derive(Debug, Clone, Copy)]
pub struct FastHasher(u64);

impl Default for FastHasher {
    fn default() -> FastHasher {
        FastHasher(SEED)
    }
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = folded_multiply(self.0 ^ word, K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buffer = [0u8; 8];
            buffer.copy_from_slice(word);
            self.add(u64::from_le_bytes(buffer));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buffer = [0u8; 8];
            buffer[..rest.len()].copy_from_slice(rest);
            // The length tells "ab" from "ab\0".
            self.add(u64::from_le_bytes(buffer) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // One more mix: hashbrown reads both the low bits (the bucket) and the top seven (the
        // tag), and short keys that differ in a few bits must differ in both.
        folded_multiply(self.0, SEED)
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers_spread() {
        let mut map: FastMap<String, usize> = FastMap::default();
        for i in 0..10_000 {
            map.insert(format!("tenant-{i}"), i);
        }
        for i in 0..10_000 {
            assert_eq!(map.get(&format!("tenant-{i}")), Some(&i));
        }
        let hash = |text: &str| {
            let mut hasher = FastHasher::default();
            hasher.write(text.as_bytes());
            hasher.finish()
        };
        assert_ne!(hash("ab"), hash("ab\0"));
        assert_ne!(hash(""), hash("\0"));
        // Low 12 bits (what a 4,096-bucket table uses) of sequential keys are well spread.
        let buckets: std::collections::HashSet<u64> = (0..4096u32)
            .map(|i| hash(&format!("agent-{i}")) & 0xfff)
            .collect();
        assert!(buckets.len() > 2_000, "{} buckets", buckets.len());
    }
}
