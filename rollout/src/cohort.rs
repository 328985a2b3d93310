//! Cohorts (runtime.md §4.2): which version decides a request, by consistent hashing.
//!
//! `bucket = first 8 bytes (big-endian) of SHA-256(rollout_id ‖ 0x00 ‖ key) mod 1,000,000`;
//! the request is the candidate's when `bucket < traffic × 10,000`. A key's bucket never
//! changes during a rollout, so raising the traffic only adds keys to the candidate cohort.
//! `rollout/tests/cohort_vectors.json` holds vectors other implementations must reproduce.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Buckets per rollout: traffic is routed in steps of 0.0001 percent.
pub const BUCKETS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cohort {
    Stable,
    Candidate,
}

impl Cohort {
    pub fn as_str(self) -> &'static str {
        match self {
            Cohort::Stable => "stable",
            Cohort::Candidate => "candidate",
        }
    }

    pub fn other(self) -> Cohort {
        match self {
            Cohort::Stable => Cohort::Candidate,
            Cohort::Candidate => Cohort::Stable,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The bucket of a stickiness key in a rollout.
pub fn bucket(rollout_id: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(rollout_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// The number of buckets (of [`BUCKETS`]) a traffic percentage sends to the candidate.
pub fn threshold(traffic_percent: f64) -> u64 {
    ((traffic_percent * 10_000.0)
        .round()
        .clamp(0.0, BUCKETS as f64)) as u64
}

/// The cohort of a request: a request without the stickiness key goes to stable.
pub fn cohort(rollout_id: &str, key: Option<&str>, traffic_percent: f64) -> Cohort {
    match key {
        Some(key) if bucket(rollout_id, key) < threshold(traffic_percent) => Cohort::Candidate,
        _ => Cohort::Stable,
    }
}
