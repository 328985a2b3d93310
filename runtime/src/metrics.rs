//! `GET /metrics` (runtime.md §3.1): Prometheus text with decisions by decision, cohort and
//! sequence, the evaluation latency, errors by code, the active sequence, the audit
//! entries written and waiting for the journal, and the rollout's stage and traffic.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
    pub cohort: String,
    pub sequence: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub code: String,
}

/// The server's metrics; cheap to clone (each metric is shared).
#[derive(Clone)]
pub struct Metrics {
    pub decisions: Family<DecisionLabels, Counter>,
    /// Seconds from a request's arrival in the engine to its decision (before durability).
    pub evaluation_seconds: Histogram,
    /// Seconds from arrival to the response being sent (including the journal's commit).
    pub response_seconds: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
    pub active_sequence: Gauge,
    pub audit_written: Counter,
    pub audit_pending: Gauge,
    /// Journal transactions committed: entries written over commits is the group-commit size.
    pub audit_commits: Counter,
    /// The percent of requests the rollout's candidate decides (0 without a rollout).
    pub rollout_traffic: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The rollout's stage index (-1 without a rollout in progress).
    pub rollout_stage: Gauge,
    /// Each policy's breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Family<PolicyLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            decisions: Family::default(),
            // 1 µs to about 33 ms.
            evaluation_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 16)),
            // 10 µs to about 0.3 s.
            response_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            errors: Family::default(),
            active_sequence: Gauge::default(),
            audit_written: Counter::default(),
            audit_pending: Gauge::default(),
            audit_commits: Counter::default(),
            rollout_traffic: Gauge::default(),
            rollout_stage: Gauge::default(),
            breaker_state: Family::default(),
        }
    }
}

impl Metrics {
    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("polctl");
        registry.register(
            "decisions",
            "Decisions by decision, cohort and bundle sequence",
            self.decisions.clone(),
        );
        registry.register(
            "evaluation_seconds",
            "Time to decide a request, before it is made durable",
            self.evaluation_seconds.clone(),
        );
        registry.register(
            "response_seconds",
            "Time to answer a decide request, including the journal's commit",
            self.response_seconds.clone(),
        );
        registry.register(
            "errors",
            "Refused or failed requests by error code",
            self.errors.clone(),
        );
        registry.register(
            "active_sequence",
            "Sequence of the bundle serving traffic",
            self.active_sequence.clone(),
        );
        registry.register(
            "audit_entries_written",
            "Audit entries committed",
            self.audit_written.clone(),
        );
        registry.register(
            "audit_entries_pending",
            "Audit entries queued for the journal",
            self.audit_pending.clone(),
        );
        registry.register(
            "audit_commits",
            "Journal transactions committed (entries written / commits = entries per group commit)",
            self.audit_commits.clone(),
        );
        registry.register(
            "rollout_traffic_percent",
            "Percent of requests the rollout's candidate decides",
            self.rollout_traffic.clone(),
        );
        registry.register(
            "rollout_stage",
            "Index of the rollout's current stage (-1: no rollout in progress)",
            self.rollout_stage.clone(),
        );
        registry.register(
            "breaker_state",
            "Each policy's circuit breaker: 0 closed, 1 open, 2 half-open",
            self.breaker_state.clone(),
        );
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
