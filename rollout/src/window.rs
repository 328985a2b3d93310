//! The figures of one stage: per version, what it decided for the requests it enforced and
//! what it decided in shadow; divergences between the two; session outcomes per cohort.

use crate::cohort::Cohort;
use serde::Serialize;
use std::collections::HashMap;

/// A request's cluster: the hash of its stickiness key. Requests of one session (or agent)
/// are not independent (an agent denied once is often denied again), and cohorts are drawn by
/// key, so the statistics treat each key as one unit (docs/rollouts.md). `None`: a request
/// without the key, its own cluster.
pub fn cluster_of(key: Option<&str>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    key.map(|key| {
        // `DefaultHasher::new()` has fixed keys: the same key hashes the same in every run.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish()
    })
}

/// Keys of [`Recent`] are hashes already ([`cluster_of`]): a map of them uses each key as its
/// own hash instead of hashing it again (a request adds to several windows).
#[derive(Debug, Clone, Copy, Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u64` keys; kept correct for any other use.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

type PrehashedMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<Prehashed>>;

/// Keys kept per generation of [`Recent`].
const RECENT_KEYS: usize = 65_536;

/// Per-key state with bounded memory: two generations of at most [`RECENT_KEYS`] keys each. A
/// key seen again moves to the current generation; when that fills, the previous one is
/// forgotten. Sessions are local in time, so a forgotten key is one that went quiet: if it
/// comes back it counts as a new cluster, which splits one cluster in two (a slightly smaller
/// variance) instead of letting a stage that sees millions of sessions grow without end.
#[derive(Debug, Clone)]
struct Recent<V> {
    current: PrehashedMap<V>,
    previous: PrehashedMap<V>,
}

impl<V> Default for Recent<V> {
    fn default() -> Recent<V> {
        Recent {
            current: PrehashedMap::default(),
            previous: PrehashedMap::default(),
        }
    }
}

impl<V: Default> Recent<V> {
    /// The key's state, and whether the key is new (or forgotten).
    fn entry(&mut self, key: u64) -> (&mut V, bool) {
        use std::collections::hash_map::Entry;
        // The common case, a key of the current generation, looks the key up once.
        if self.current.len() < RECENT_KEYS || self.current.contains_key(&key) {
            return match self.current.entry(key) {
                Entry::Occupied(entry) => (entry.into_mut(), false),
                Entry::Vacant(entry) => match self.previous.remove(&key) {
                    Some(value) => (entry.insert(value), false),
                    None => (entry.insert(V::default()), true),
                },
            };
        }
        // The current generation is full: it becomes the previous one, and the old previous
        // one's table, emptied, the current one (no new allocation, no fresh pages).
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        let (value, new) = match self.previous.remove(&key) {
            Some(value) => (value, false),
            None => (V::default(), true),
        };
        (self.current.entry(key).or_insert(value), new)
    }
}

/// Per-cluster sums of a count and two kinds of hits, enough for the cluster-robust variance
/// of each hit rate: `Var(p) = k/(k-1) · Σ(h_i - p·n_i)² / N²` over the `k` clusters.
#[derive(Debug, Clone, Default)]
pub struct Clusters {
    /// Per cluster key: `(n, first hits, second hits)` so far.
    per_key: Recent<(u64, u64, u64)>,
    count: u64,
    sum_nn: f64,
    sum_aa: f64,
    sum_an: f64,
    sum_bb: f64,
    sum_bn: f64,
}

/// Which hits of a [`Clusters`].
#[derive(Debug, Clone, Copy)]
pub enum Hits {
    First,
    Second,
}

impl Clusters {
    pub fn add(&mut self, cluster: Option<u64>, a: bool, b: bool) {
        let (n, ha, hb) = match cluster {
            Some(key) => {
                let (entry, new) = self.per_key.entry(key);
                let before = *entry;
                entry.0 += 1;
                entry.1 += a as u64;
                entry.2 += b as u64;
                if new {
                    self.count += 1;
                }
                let (n0, a0, b0) = (before.0 as f64, before.1 as f64, before.2 as f64);
                let (n1, a1, b1) = (entry.0 as f64, entry.1 as f64, entry.2 as f64);
                self.sum_nn += n1 * n1 - n0 * n0;
                self.sum_aa += a1 * a1 - a0 * a0;
                self.sum_an += a1 * n1 - a0 * n0;
                self.sum_bb += b1 * b1 - b0 * b0;
                self.sum_bn += b1 * n1 - b0 * n0;
                return;
            }
            None => (1.0, a as u64 as f64, b as u64 as f64),
        };
        self.count += 1;
        self.sum_nn += n * n;
        self.sum_aa += ha * ha;
        self.sum_an += ha * n;
        self.sum_bb += hb * hb;
        self.sum_bn += hb * n;
    }

    /// The cluster-robust variance of `hits / n`, when there are at least two clusters.
    pub fn variance(&self, which: Hits, hits: u64, n: u64) -> Option<f64> {
        if self.count < 2 || n == 0 {
            return None;
        }
        let p = hits as f64 / n as f64;
        let (hh, hn) = match which {
            Hits::First => (self.sum_aa, self.sum_an),
            Hits::Second => (self.sum_bb, self.sum_bn),
        };
        let squares = (hh - 2.0 * p * hn + p * p * self.sum_nn).max(0.0);
        let k = self.count as f64;
        Some(k / (k - 1.0) * squares / (n as f64 * n as f64))
    }
}

/// What a version made of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    RequireApproval,
    /// The version could not decide: the request does not fit its schema, a breaker's
    /// failsafe, an internal error (runtime.md §4.3).
    Error,
}

/// Decision-time histogram: sixteen buckets per power of two of microseconds, up to about
/// 2^32 µs; a percentile is reported as its bucket's geometric middle, within 2.2 %.
const PER_OCTAVE: f64 = 16.0;
const LATENCY_BUCKETS: usize = 32 * 16 + 2;

fn latency_bucket(us: u64) -> usize {
    if us == 0 {
        return 0;
    }
    let log = (us as f64).log2() * PER_OCTAVE;
    (log.floor() as usize + 1).min(LATENCY_BUCKETS - 1)
}

fn bucket_middle(index: usize) -> u64 {
    if index == 0 {
        0
    } else {
        2f64.powf((index as f64 - 0.5) / PER_OCTAVE).round() as u64
    }
}

/// Denies of both versions on the requests both decided, per cluster too: the paired test
/// of a deny-rate change ([`crate::stats::paired_relative_change_above`]).
#[derive(Debug, Clone, Default)]
pub struct PairedTally {
    pub n: u64,
    pub candidate: u64,
    pub stable: u64,
    pub both: u64,
    per_key: Recent<(u64, u64, u64)>,
    clusters: u64,
    /// Σn², Σc², Σs², Σcs, Σcn, Σsn over clusters.
    sums: [f64; 6],
}

impl PairedTally {
    pub fn add(&mut self, cluster: Option<u64>, candidate_denied: bool, stable_denied: bool) {
        self.n += 1;
        self.candidate += candidate_denied as u64;
        self.stable += stable_denied as u64;
        self.both += (candidate_denied && stable_denied) as u64;
        let (before, after, new) = match cluster {
            Some(key) => {
                let (entry, new) = self.per_key.entry(key);
                let before = *entry;
                entry.0 += 1;
                entry.1 += candidate_denied as u64;
                entry.2 += stable_denied as u64;
                (before, *entry, new)
            }
            None => (
                (0, 0, 0),
                (1, candidate_denied as u64, stable_denied as u64),
                true,
            ),
        };
        if new {
            self.clusters += 1;
        }
        let term = |(n, c, s): (u64, u64, u64)| {
            let (n, c, s) = (n as f64, c as f64, s as f64);
            [n * n, c * c, s * s, c * s, c * n, s * n]
        };
        let (old, new) = (term(before), term(after));
        for i in 0..6 {
            self.sums[i] += new[i] - old[i];
        }
    }

    pub fn sample(&self) -> crate::stats::Paired {
        crate::stats::Paired {
            n: self.n,
            candidate: self.candidate,
            stable: self.stable,
            both: self.both,
            sums: Some(self.sums),
            clusters: self.clusters,
        }
    }
}

/// Counts of one version's decisions in one role (enforced or shadow).
#[derive(Debug, Clone)]
pub struct Tally {
    pub decisions: u64,
    pub denies: u64,
    pub errors: u64,
    /// Decisions with a measured time.
    pub timed: u64,
    /// Timed decisions slower than the stage's and the rollback's latency limits.
    pub over_stage_latency: u64,
    pub over_rollback_latency: u64,
    latency: Vec<u64>,
    /// Denies (first) and errors (second) per cluster.
    pub clusters: Clusters,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            decisions: 0,
            denies: 0,
            errors: 0,
            timed: 0,
            over_stage_latency: 0,
            over_rollback_latency: 0,
            latency: vec![0; LATENCY_BUCKETS],
            clusters: Clusters::default(),
        }
    }
}

impl Tally {
    pub fn record(
        &mut self,
        verdict: Verdict,
        latency_us: Option<u64>,
        limits: (Option<u64>, Option<u64>),
        cluster: Option<u64>,
    ) {
        self.decisions += 1;
        self.clusters
            .add(cluster, verdict == Verdict::Deny, verdict == Verdict::Error);
        match verdict {
            Verdict::Deny => self.denies += 1,
            Verdict::Error => self.errors += 1,
            Verdict::Allow | Verdict::RequireApproval => {}
        }
        if let Some(us) = latency_us {
            self.timed += 1;
            self.latency[latency_bucket(us)] += 1;
            if limits.0.is_some_and(|limit| us > limit) {
                self.over_stage_latency += 1;
            }
            if limits.1.is_some_and(|limit| us > limit) {
                self.over_rollback_latency += 1;
            }
        }
    }

    pub fn deny_rate(&self) -> f64 {
        ratio(self.denies, self.decisions)
    }

    /// Denies as a sample for the statistics.
    pub fn deny_sample(&self) -> crate::stats::Sample {
        crate::stats::Sample {
            hits: self.denies,
            n: self.decisions,
            cluster_variance: self
                .clusters
                .variance(Hits::First, self.denies, self.decisions),
        }
    }

    /// Errors as a sample for the statistics.
    pub fn error_sample(&self) -> crate::stats::Sample {
        crate::stats::Sample {
            hits: self.errors,
            n: self.decisions,
            cluster_variance: self
                .clusters
                .variance(Hits::Second, self.errors, self.decisions),
        }
    }

    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.decisions)
    }

    /// The 99th percentile decision time (the middle of its histogram bucket), if any
    /// decision was timed.
    pub fn p99_us(&self) -> Option<u64> {
        if self.timed == 0 {
            return None;
        }
        let rank = (self.timed as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        for (index, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_middle(index));
            }
        }
        None
    }

    pub fn summary(&self) -> CohortFigures {
        CohortFigures {
            decisions: self.decisions,
            deny_rate: round6(self.deny_rate()),
            error_rate: round6(self.error_rate()),
            p99_us: self.p99_us(),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Rates are printed with six decimals, so reports are identical on every machine.
pub fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// One cohort's figures as reports show them (runtime.md §5.2).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CohortFigures {
    pub decisions: u64,
    pub deny_rate: f64,
    pub error_rate: f64,
    /// `null` when no decision was timed (offline, without recorded times).
    pub p99_us: Option<u64>,
}

/// Sessions that reported an outcome, per cohort.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcomes {
    pub completed: u64,
    pub reported: u64,
}

/// The figures of the current stage.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Per version (`Cohort::index`): decisions it enforced.
    pub enforced: [Tally; 2],
    /// Per version: decisions it made in shadow.
    pub shadow: [Tally; 2],
    /// Requests both versions decided, and those where they differ.
    pub compared: u64,
    pub diverged: u64,
    /// Divergences per cluster.
    pub divergence_clusters: Clusters,
    /// Both versions' denies on the requests both decided.
    pub paired: PairedTally,
    /// Divergences outside the classes `polctl diff` predicted.
    pub unexpected: u64,
    /// Per cohort: session outcomes.
    pub outcomes: [Outcomes; 2],
    /// Requests seen in the stage (whatever decided them), and those without the stickiness
    /// key (which go to stable).
    pub requests: u64,
    pub keyless: u64,
}

impl Window {
    /// A version's figures in a stage with this traffic: what it enforced, or, when the
    /// stage gives it nothing to enforce (the candidate in a shadow stage, stable at 100 %),
    /// what it decided in shadow.
    pub fn tally(&self, version: Cohort, traffic: f64) -> &Tally {
        let shadow_only = match version {
            Cohort::Candidate => traffic == 0.0,
            Cohort::Stable => traffic >= 100.0,
        };
        if shadow_only {
            &self.shadow[version.index()]
        } else {
            &self.enforced[version.index()]
        }
    }

    pub fn divergence(&self) -> f64 {
        ratio(self.diverged, self.compared)
    }

    pub fn divergence_sample(&self) -> crate::stats::Sample {
        crate::stats::Sample {
            hits: self.diverged,
            n: self.compared,
            cluster_variance: self.divergence_clusters.variance(
                Hits::First,
                self.diverged,
                self.compared,
            ),
        }
    }
}
