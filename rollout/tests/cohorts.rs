//! Cohorts (runtime.md §4.2): the published vectors, monotonicity as traffic rises, and
//! uniformity of the buckets.

use polctl_rollout::cohort::{bucket, cohort, threshold, Cohort, BUCKETS};
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = polctl_testsupport::read("rollout/tests/cohort_vectors.json");
    let document: Value = serde_json::from_str(&text).expect("JSON");
    document["vectors"].as_array().expect("vectors").clone()
}

/// Other implementations (fleet servers, client libraries) must reproduce these; a change to
/// the bucket function fails here before it moves anyone's cohort.
#[test]
fn the_published_vectors_hold() {
    let vectors = vectors();
    assert!(vectors.len() >= 20);
    for vector in vectors {
        let rollout = vector["rollout_id"].as_str().expect("rollout_id");
        let key = vector["key"].as_str().expect("key");
        let expected = vector["bucket"].as_u64().expect("bucket");
        assert_eq!(bucket(rollout, key), expected, "{vector}");
        for (traffic, expected) in vector["cohorts"].as_object().expect("cohorts") {
            let traffic: f64 = traffic.parse().expect("a percentage");
            let expected = match expected.as_str() {
                Some("candidate") => Cohort::Candidate,
                _ => Cohort::Stable,
            };
            assert_eq!(
                cohort(rollout, Some(key), traffic),
                expected,
                "{vector} at {traffic}%"
            );
        }
    }
}

#[test]
fn a_request_without_the_key_is_stable() {
    assert_eq!(cohort("r", None, 100.0), Cohort::Stable);
    assert_eq!(threshold(100.0), BUCKETS);
    assert_eq!(threshold(0.0), 0);
    assert_eq!(threshold(5.0), 50_000);
}

/// Within ±0.2 percentage points of the traffic over a million keys, at several percentages.
#[test]
fn buckets_are_uniform() {
    let keys = 1_000_000u64;
    let mut histogram = vec![0u64; 100];
    for i in 0..keys {
        let b = bucket("uniformity", &format!("session-{i}"));
        histogram[(b / 10_000) as usize] += 1;
    }
    let mut cumulative = 0;
    for (percent, count) in histogram.iter().enumerate() {
        cumulative += count;
        let share = cumulative as f64 / keys as f64 * 100.0;
        let expected = (percent + 1) as f64;
        assert!(
            (share - expected).abs() <= 0.2,
            "{share:.3}% of keys below {expected}% of buckets"
        );
    }
}

proptest! {
    /// Raising the traffic keeps every candidate key in the candidate cohort.
    #[test]
    fn cohorts_are_monotone(key in ".{0,40}", rollout in "[a-z0-9-]{1,20}", low in 0.0f64..100.0, raise in 0.0f64..100.0) {
        let low = (low * 10_000.0).round() / 10_000.0;
        let high = (low + raise).min(100.0);
        if cohort(&rollout, Some(&key), low) == Cohort::Candidate {
            prop_assert_eq!(cohort(&rollout, Some(&key), high), Cohort::Candidate);
        }
    }
}
