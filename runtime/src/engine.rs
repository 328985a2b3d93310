//! The decision engine: the active bundle behind one atomic route, the counters, and the
//! journal that makes every decision durable before it is answered. The HTTP server (and
//! later the MCP gateway) call it; it knows nothing of HTTP.
//!
//! A decision is made entirely by the bundle it loaded from the route when it started: a swap
//! replaces the route's pointer, and a decision in flight finishes on the bundle it holds
//! (runtime.md §3.4). Checking a request's limits and counting an allowed action happen under
//! one lock, so concurrent requests never admit more than a limit allows.

use crate::approvals::{
    check_presented, decide_approval, request_hash, Approval, ApprovalBook, ApprovalState,
};
use crate::audit::PendingEntry;
use crate::error::RuntimeError;
use crate::loaded::{load_bundle, LoadedBundle, Trust};
use crate::metrics::{DecisionLabels, Metrics};
use crate::store::{Job, Journal};
use crate::swap::{migrate_pending, ApprovalMigration, Recording, SeedSource};
use arc_swap::ArcSwapOption;
use polctl_lang::eval::json::JsonRef;
use polctl_lang::eval::Request;
use polctl_lang::eval::{DecisionJson, Outcome};
use polctl_rollout::cohort::Cohort;
use polctl_rollout::controller::Observation;
use polctl_rollout::counters::{
    count_allowed, limit_uses, load_counters, CounterStore, LimitUse, MemoryCounters,
};
use polctl_rollout::migration::CounterMigration;
use polctl_rollout::plan::{AttributeScope, Stickiness};
use polctl_rollout::simulate::Prediction;
use polctl_rollout::window::{cluster_of, Verdict};
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What the route points at: the stable bundle, when it became active, and the rollout in
/// progress if any. A decision loads it once and is made entirely from it.
pub struct Active {
    pub bundle: Arc<LoadedBundle>,
    pub activated_ms: i64,
    /// A rollout in progress: the candidate and how requests reach it.
    pub rollout: Option<Arc<LiveRollout>>,
    /// After a swap: where counters of limits whose window or key changed are seeded from.
    pub seed_from: Option<Arc<SeedSource>>,
}

/// The rollout as the data plane sees it: which requests the candidate decides, at the
/// current stage. A stage change installs a new one on the route.
pub struct LiveRollout {
    pub candidate: Arc<LoadedBundle>,
    pub rollout_id: String,
    pub stickiness: Stickiness,
    pub stage: String,
    pub traffic: f64,
    pub migration: Arc<CounterMigration>,
    /// What the semantic diff predicts (`None`: no divergence is called unexpected).
    pub prediction: Option<Arc<Prediction>>,
}

impl LiveRollout {
    /// The request's stickiness key (runtime.md §4.2): its session, or an agent or context
    /// attribute; `None` sends it to stable.
    pub fn key(&self, request: &serde_json::Map<String, Json>) -> Option<String> {
        let value = match &self.stickiness {
            Stickiness::Session => request.get("session")?,
            Stickiness::Attribute { scope, name } => {
                let object = match scope {
                    AttributeScope::Agent => "agent",
                    AttributeScope::Context => "context",
                };
                request.get(object)?.get(name)?
            }
        };
        match value {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// A tool as `POST /v1/tools` shows it: its name and what calling it gets.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ShownTool {
    pub name: String,
    /// `allow`, `require_approval` or `depends_on_args`.
    pub decision: &'static str,
}

/// Works out the tools an agent may be shown (the CLI answers with the solver): given the
/// bundle, the agent, the operator-resolved context and the session.
pub type ToolPresenter =
    Arc<dyn Fn(&LoadedBundle, &Json, &Json, Option<&str>) -> Vec<ShownTool> + Send + Sync>;

/// `POST /v1/tools` answers by (bundle revision, canonical request).
type ShownToolsCache = std::collections::HashMap<(String, String), Arc<Vec<ShownTool>>>;

/// Answers of `POST /v1/tools` kept at most (by bundle and request); cleared when full.
const TOOLS_CACHE: usize = 4096;

/// Runs the semantic diff of two bundles (the CLI owns the solver), for the rollout's
/// `unexpected_divergence` trigger.
pub type Predictor = Arc<dyn Fn(&LoadedBundle, &LoadedBundle) -> Option<Prediction> + Send + Sync>;

/// What `PUT /v1/bundles` answers (runtime.md §3.4).
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    pub sequence: u64,
    pub revision: String,
    pub rules: usize,
    pub compile_ms: u64,
    pub tests: TestSummary,
}

/// A bundle's own tests, run before it can take traffic.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TestSummary {
    pub passed: usize,
    pub failed: usize,
    /// The names of the first failing cases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// Runs a bundle's test files against its evaluator. The server is given one by its driver
/// (the CLI owns the test runner), so the engine does not depend on it.
pub type BundleTester = Arc<dyn Fn(&LoadedBundle) -> Result<TestSummary, String> + Send + Sync>;

/// A decision as the server answers it (runtime.md §3.1): language.md §1's decision and the
/// runtime's fields.
#[derive(Debug, Clone, Serialize)]
pub struct DecideResponse {
    #[serde(flatten)]
    pub decision: DecisionJson,
    pub decision_id: String,
    pub sequence: u64,
    pub cohort: &'static str,
    /// For `require_approval`: the pending approval to wait for and then present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Fail-open policies whose breaker is open: their limit and approval rules were skipped
    /// (runtime.md §3.6).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failsafe: Vec<String>,
}

/// What an engine is made of besides its state: where the state lives, whom it trusts, how
/// it tests bundles, its settings and its metrics.
pub struct EngineParts {
    pub data: PathBuf,
    pub trust: Trust,
    pub tester: BundleTester,
    pub predictor: Predictor,
    pub presenter: ToolPresenter,
    pub settings: EngineSettings,
    pub metrics: Metrics,
}

/// Settings of the engine (the `[approvals]` section of `--config`).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long an approval stays valid (24 h by default).
    pub approval_expiry_ms: i64,
    /// Circuit breakers (the `[breakers]` section; runtime.md §3.6's defaults).
    pub breakers: polctl_rollout::breaker::BreakerSettings,
    /// `[audit] arguments = "hash"`: decision entries hold each argument's SHA-256 instead of
    /// its value ([`crate::audit::hash_arguments`]).
    pub hash_arguments: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            approval_expiry_ms: 24 * 3600 * 1000,
            breakers: Default::default(),
            hash_arguments: false,
        }
    }
}

/// A decision made and queued for the journal: answer it once `committed` says so.
pub struct Decided {
    pub response: DecideResponse,
    /// The policies whose state (limits, approvals) the decision used: their breakers learn
    /// whether it was committed ([`Engine::finish`]).
    pub stateful: Vec<String>,
    pub committed: oneshot::Receiver<Result<(), RuntimeError>>,
}

/// Fields of language.md §1 that only a pure evaluation may carry: the runtime keeps the
/// counters and the approvals, and an agent cannot assert either.
const FORBIDDEN_FIELDS: [&str; 2] = ["counters", "approvals"];

pub struct Engine {
    pub(crate) route: ArcSwapOption<Active>,
    /// The bundle active before the current one, compiled: rollback to it is a route change.
    previous: Mutex<Option<Arc<LoadedBundle>>>,
    /// The uploaded bundle waiting to be rolled out.
    pub(crate) candidate: Mutex<Option<Arc<LoadedBundle>>>,
    /// The highest sequence ever activated: a push must be above it (anti-rollback).
    highest_sequence: AtomicU64,
    pub(crate) approvals: Mutex<ApprovalBook>,
    settings: EngineSettings,
    metrics: Metrics,
    /// Operator context values (runtime.md §3.5): by tenant (`""`: every tenant), by name.
    context: Mutex<BTreeMap<String, BTreeMap<String, Json>>>,
    /// Control-plane operations happen one at a time.
    pub(crate) control: tokio::sync::Mutex<()>,
    pub(crate) trust: Trust,
    tester: BundleTester,
    pub(crate) predictor: Predictor,
    presenter: ToolPresenter,
    /// `POST /v1/tools` answers by (bundle revision, canonical request).
    shown_tools: Mutex<ShownToolsCache>,
    data: PathBuf,
    pub(crate) counters: Mutex<MemoryCounters>,
    /// The rollout's controller (the current one, or the last finished), driven by decisions,
    /// the clock and operators.
    pub(crate) rollout: Mutex<Option<crate::rollouts::RolloutSlot>>,
    /// The last swap's migration report.
    pub(crate) last_migration: Mutex<Option<Json>>,
    /// Per-policy circuit breakers.
    pub(crate) breakers: crate::breakers::Breakers,
    pub(crate) journal: Journal,
    /// Decision ids: this start's time and a sequence, unique across restarts.
    started_ms: i64,
    decisions: AtomicU64,
}

impl Engine {
    pub fn new(
        journal: Journal,
        recovered: &mut crate::store::Recovered,
        parts: EngineParts,
        now_ms: i64,
    ) -> Engine {
        let EngineParts {
            data,
            trust,
            tester,
            predictor,
            presenter,
            settings,
            metrics,
        } = parts;
        let mut store = MemoryCounters::default();
        for (key, count) in std::mem::take(&mut recovered.counters) {
            store.add(&key, count);
        }
        let mut context: BTreeMap<String, BTreeMap<String, Json>> = BTreeMap::new();
        for (tenant, name, value) in std::mem::take(&mut recovered.context) {
            context.entry(tenant).or_default().insert(name, value);
        }
        let breakers = crate::breakers::Breakers::new(
            settings.breakers.clone(),
            std::mem::take(&mut recovered.breakers),
        );
        Engine {
            approvals: Mutex::new(ApprovalBook::load(std::mem::take(&mut recovered.approvals))),
            settings,
            metrics,
            context: Mutex::new(context),
            route: ArcSwapOption::empty(),
            previous: Mutex::new(None),
            candidate: Mutex::new(None),
            highest_sequence: AtomicU64::new(recovered.highest_sequence),
            control: tokio::sync::Mutex::new(()),
            trust,
            tester,
            predictor,
            presenter,
            shown_tools: Mutex::new(std::collections::HashMap::new()),
            data,
            counters: Mutex::new(store),
            rollout: Mutex::new(None),
            last_migration: Mutex::new(None),
            breakers,
            journal,
            started_ms: now_ms,
            decisions: AtomicU64::new(0),
        }
    }

    /// The active bundle, if any.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.route.load_full()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The state directory.
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The server's trusted keys (to load bundles the same way everywhere).
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Makes a bundle active at once, durably: the route changes only after the bundle and
    /// its audit entry (`kind`: `activate` or `rollback`) are committed, so a restart comes
    /// back to it. Decisions in flight finish on the bundle they loaded.
    ///
    /// The swap migrates state (runtime.md §3.8): counters when `counters` is `None` (a
    /// rollout prepared them when it started), and pending approvals, with a `migration`
    /// entry in the audit log.
    pub async fn activate(
        &self,
        bundle: Arc<LoadedBundle>,
        now_ms: i64,
        kind: &'static str,
        by: &str,
        counters: Option<Arc<CounterMigration>>,
    ) -> Result<(), RuntimeError> {
        let (done, committed) = oneshot::channel();
        let previous = self.active();
        let from = previous.as_ref().map(|a| a.bundle.clone());
        let mut drops = Vec::new();
        let counters = match (counters, &from) {
            (Some(prepared), _) => Some(prepared),
            (None, Some(from)) => {
                let (migration, dropped) = self.migrate_counters(from, &bundle, now_ms)?;
                drops = dropped;
                Some(Arc::new(migration))
            }
            (None, None) => None,
        };
        let (pending, approvals) = match &from {
            Some(_) => {
                let pending = self.approvals(Some(ApprovalState::Pending), now_ms);
                let migrated = migrate_pending(&pending, &bundle, |request| {
                    self.effective_request(&bundle, request)
                });
                (pending, migrated)
            }
            None => (
                Vec::new(),
                ApprovalMigration {
                    changed: Vec::new(),
                    rows: Vec::new(),
                },
            ),
        };
        let report = from
            .as_ref()
            .map(|from| crate::swap::report(Some(from), &bundle, counters.as_deref(), &approvals));
        self.journal.submit(Job::Activate {
            sequence: bundle.sequence,
            revision: bundle.revision.clone(),
            bytes: bundle.bytes.clone(),
            approvals: approvals.changed.clone(),
            drops,
            migration: report.as_ref().map(|report| PendingEntry {
                time_ms: now_ms,
                kind: "migration",
                body: report.clone(),
            }),
            entry: PendingEntry {
                time_ms: now_ms,
                kind,
                body: json!({
                    "sequence": bundle.sequence,
                    "revision": bundle.revision,
                    "name": bundle.name,
                    "verified": bundle.verified,
                    "previous_sequence": previous.as_ref().map(|a| a.bundle.sequence),
                    "by": by,
                }),
            },
            done,
        })?;
        wait(committed).await?;
        self.highest_sequence
            .fetch_max(bundle.sequence, Ordering::SeqCst);
        self.metrics
            .active_sequence
            .set(bundle.sequence.min(i64::MAX as u64) as i64);
        let seed_from = match (&from, &counters) {
            (Some(from), Some(migration)) => Some(Arc::new(SeedSource {
                bundle: from.clone(),
                migration: migration.clone(),
            }))
            .filter(|seed| seed.active(now_ms.div_euclid(1000))),
            _ => None,
        };
        self.route.store(Some(Arc::new(Active {
            bundle,
            activated_ms: now_ms,
            rollout: None,
            seed_from,
        })));
        if let Ok(mut kept) = self.previous.lock() {
            *kept = from;
        }
        // Approvals an approver changed meanwhile keep the approver's change.
        if !approvals.changed.is_empty() {
            if let Ok(mut book) = self.approvals.lock() {
                for next in approvals.changed {
                    let unchanged = pending.iter().find(|p| p.id == next.id).is_some_and(|p| {
                        book.get(&p.id)
                            .is_some_and(|now| now.state == p.state && now.granted == p.granted)
                    });
                    if unchanged {
                        book.record(next);
                    }
                }
            }
        }
        if let (Some(report), Ok(mut last)) = (report, self.last_migration.lock()) {
            *last = Some(report);
        }
        Ok(())
    }

    /// Prepares the counters for `to` being evaluated beside (or after) `from` (runtime.md
    /// §3.8); the limits whose counters were dropped, for the journal.
    pub(crate) fn migrate_counters(
        &self,
        from: &LoadedBundle,
        to: &LoadedBundle,
        now_ms: i64,
    ) -> Result<
        (
            CounterMigration,
            Vec<polctl_rollout::counters::LimitIdentity>,
        ),
        RuntimeError,
    > {
        let mut store = self
            .counters
            .lock()
            .map_err(|_| RuntimeError::state("the counters' lock was poisoned"))?;
        let mut recording = Recording::new(&mut store);
        let migration = CounterMigration::prepare(
            from.evaluator.set(),
            to.evaluator.set(),
            now_ms.div_euclid(1000),
            &mut recording,
        );
        Ok((migration, recording.dropped))
    }

    /// The route, or the error of a server with no bundle yet.
    fn routed(&self) -> Result<Arc<Active>, RuntimeError> {
        self.route.load_full().ok_or_else(|| {
            RuntimeError::new(
                503,
                "no_bundle",
                "no bundle is active yet; push one (`polctl push`) or start the server with --bundle",
            )
        })
    }

    /// A stored request as a bundle would decide it: the operator context applied.
    pub(crate) fn effective_request(&self, bundle: &LoadedBundle, request: &Json) -> Json {
        let mut request = request.clone();
        if let Some(object) = request.as_object_mut() {
            if let Ok(Some(context)) = self.effective_context(bundle, object) {
                object.insert("context".to_owned(), context);
            }
        }
        request
    }

    /// Puts a recovered bundle back on the route (it is already in the state store).
    pub fn restore(&self, bundle: LoadedBundle, activated_ms: i64) {
        self.metrics
            .active_sequence
            .set(bundle.sequence.min(i64::MAX as u64) as i64);
        self.route.store(Some(Arc::new(Active {
            bundle: Arc::new(bundle),
            activated_ms,
            rollout: None,
            seed_from: None,
        })));
    }

    /// Puts a recovered candidate back (it is already in the state store).
    pub fn restore_candidate(&self, bundle: LoadedBundle) {
        if let Ok(mut candidate) = self.candidate.lock() {
            *candidate = Some(Arc::new(bundle));
        }
    }

    /// The uploaded bundle waiting to be rolled out.
    pub fn candidate(&self) -> Option<Arc<LoadedBundle>> {
        self.candidate.lock().ok().and_then(|c| c.clone())
    }

    /// `PUT /v1/bundles`: verifies, compiles and tests a bundle and keeps it as the candidate.
    /// Nothing that fails here touches the stable bundle.
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        by: &str,
        now_ms: i64,
    ) -> Result<UploadReport, RuntimeError> {
        let _control = self.control.lock().await;
        // The candidate of a rollout in progress is not replaced under it.
        self.refuse_if_rolling_out()?;
        let trust = self.trust.clone();
        let tester = self.tester.clone();
        let (bundle, tests) = tokio::task::spawn_blocking(move || {
            let bundle = load_bundle(bytes, &trust)?;
            let tests = tester(&bundle).map_err(|message| {
                RuntimeError::new(
                    422,
                    "bundle_tests",
                    format!("the bundle's tests cannot run: {message}"),
                )
            })?;
            Ok::<_, RuntimeError>((bundle, tests))
        })
        .await
        .map_err(|e| {
            RuntimeError::new(500, "internal", format!("loading the bundle failed: {e}"))
        })??;
        if tests.failed > 0 {
            return Err(RuntimeError::new(
                422,
                "bundle_tests",
                format!(
                    "{} of {} of the bundle's test cases fail ({}); run `polctl test` on the bundle",
                    tests.failed,
                    tests.passed + tests.failed,
                    tests.failures.join(", ")
                ),
            ));
        }
        let highest = self.highest_sequence.load(Ordering::SeqCst);
        // Unverified bundles (a server without --trust) all have sequence 0: there is no
        // signed release number to compare.
        if bundle.verified && bundle.sequence <= highest {
            return Err(RuntimeError::new(
                409,
                "anti_rollback",
                format!(
                    "sequence {} is not above {highest}, the highest this server has activated; sign the bundle with a higher --sequence, or use `polctl rollback` to return to a kept bundle",
                    bundle.sequence
                ),
            ));
        }
        let report = UploadReport {
            sequence: bundle.sequence,
            revision: bundle.revision.clone(),
            rules: bundle.rules,
            compile_ms: bundle.compile_ms,
            tests,
        };
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Candidate {
            sequence: bundle.sequence,
            revision: bundle.revision.clone(),
            bytes: bundle.bytes.clone(),
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "bundle",
                body: json!({
                    "sequence": report.sequence,
                    "revision": report.revision,
                    "name": bundle.name,
                    "rules": report.rules,
                    "tests": report.tests,
                    "by": by,
                }),
            },
            done,
        })?;
        wait(committed).await?;
        if let Ok(mut candidate) = self.candidate.lock() {
            *candidate = Some(Arc::new(bundle));
        }
        Ok(report)
    }

    /// `POST /v1/rollouts` without a plan: the candidate with `sequence` becomes stable at
    /// once (blue-green).
    pub async fn switch(&self, sequence: u64, by: &str, now_ms: i64) -> Result<(), RuntimeError> {
        let _control = self.control.lock().await;
        self.refuse_if_rolling_out()?;
        let candidate = self.candidate_with(sequence)?;
        self.activate(candidate, now_ms, "activate", by, None)
            .await?;
        if let Ok(mut slot) = self.candidate.lock() {
            *slot = None;
        }
        Ok(())
    }

    /// `POST /v1/rollback`: all traffic to the previous stable bundle, or to the kept bundle
    /// with `to_sequence`, at once.
    pub async fn rollback(
        &self,
        to_sequence: Option<u64>,
        by: &str,
        now_ms: i64,
    ) -> Result<Arc<LoadedBundle>, RuntimeError> {
        let _control = self.control.lock().await;
        // During a rollout, stable is what the previous version is: the rollout is aborted,
        // all traffic goes back to stable at once.
        if self.abort_for_rollback(by, now_ms).await? && to_sequence.is_none() {
            return self
                .active()
                .map(|a| a.bundle.clone())
                .ok_or_else(|| RuntimeError::state("no stable bundle after aborting the rollout"));
        }
        let current = self.active().map(|a| a.bundle.clone());
        let previous = self.previous.lock().ok().and_then(|p| p.clone());
        // The previous bundle is still compiled: a rollback to it is a route change.
        let hot = previous.filter(|p| to_sequence.is_none_or(|s| p.sequence == s));
        let target = match hot {
            Some(bundle) => bundle,
            None => {
                let data = self.data.clone();
                let trust = self.trust.clone();
                let current_revision = current.as_ref().map(|c| c.revision.clone());
                tokio::task::spawn_blocking(move || {
                    let kept = crate::store::kept_bundles(&data)?;
                    let found = match to_sequence {
                        Some(sequence) => kept.into_iter().find(|k| k.sequence == sequence),
                        None => kept
                            .into_iter()
                            .find(|k| Some(&k.revision) != current_revision.as_ref()),
                    };
                    let Some(found) = found else {
                        return Err(RuntimeError::new(
                            404,
                            "no_kept_bundle",
                            match to_sequence {
                                Some(sequence) => format!("no kept bundle has sequence {sequence}; `GET /v1/status` lists the kept ones"),
                                None => "there is no earlier bundle to roll back to".to_owned(),
                            },
                        ));
                    };
                    load_bundle(found.bytes, &trust).map(Arc::new)
                })
                .await
                .map_err(|e| RuntimeError::new(500, "internal", format!("rollback failed: {e}")))??
            }
        };
        if current.as_ref().is_some_and(|c| c.bytes == target.bytes) {
            return Err(RuntimeError::new(
                409,
                "already_active",
                format!("sequence {} is already active", target.sequence),
            ));
        }
        self.activate(target.clone(), now_ms, "rollback", by, None)
            .await?;
        Ok(target)
    }

    /// Decides one request (the JSON of runtime.md §3.1) at `now_ms`.
    ///
    /// During a rollout the request's cohort picks the version whose decision is enforced;
    /// the other version decides too (shadow), for the controller's figures and so that an
    /// allowed action counts against the limits of both (runtime.md §3.7).
    pub fn decide(&self, request: &Json, now_ms: i64) -> Result<Decided, RuntimeError> {
        let started = std::time::Instant::now();
        let active = self.routed()?;
        let Json::Object(object) = request else {
            return Err(RuntimeError::bad_request(
                "invalid_request",
                "a request is a JSON object (language.md §1)",
            ));
        };
        // An empty list or map asserts nothing (traffic files and `polctl eval` inputs carry
        // `"approvals": []`); anything in them is refused.
        let asserts = |value: &Json| match value {
            Json::Null => false,
            Json::Array(items) => !items.is_empty(),
            Json::Object(members) => !members.is_empty(),
            _ => true,
        };
        if let Some(field) = FORBIDDEN_FIELDS
            .iter()
            .find(|f| object.get(**f).is_some_and(asserts))
        {
            return Err(RuntimeError::bad_request(
                "forbidden_field",
                format!(
                    "`{field}` is not accepted by the server: it keeps the counters and the approvals itself; remove the field (to retry an approved action, send `approval_id`)"
                ),
            ));
        }
        let approval_id = match object.get("approval_id") {
            None | Some(Json::Null) => None,
            Some(Json::String(id)) => Some(id.as_str()),
            Some(_) => {
                return Err(RuntimeError::bad_request(
                    "invalid_request",
                    "`approval_id` is the id string a require_approval decision returned",
                ))
            }
        };
        // The request's canonical hash is needed only when an approval is presented or
        // created, not on every decision.
        let hash = std::cell::OnceCell::new();
        let hash = || hash.get_or_init(|| request_hash(request)).as_str();
        // The server's clock places the action in its limit windows, never the request's.
        let now_seconds = now_ms.div_euclid(1000);

        // Which version decides, and which shadows it.
        let live = active.rollout.as_deref();
        let key = live.and_then(|live| live.key(object));
        let cohort = match live {
            Some(live) => {
                polctl_rollout::cohort::cohort(&live.rollout_id, key.as_deref(), live.traffic)
            }
            None => Cohort::Stable,
        };
        let (enforcing, shadowing) = match (live, cohort) {
            (Some(live), Cohort::Candidate) => (&live.candidate, Some(&active.bundle)),
            (Some(live), Cohort::Stable) => (&active.bundle, Some(&live.candidate)),
            (None, _) => (&active.bundle, None),
        };
        let mut decoded = match self.decode_for(enforcing, object, now_seconds) {
            Ok(decoded) => decoded,
            Err(error) => {
                // A request the enforced version cannot decide is an error of its cohort.
                if live.is_some() {
                    let mut verdicts = [None, None];
                    verdicts[cohort.index()] = Some((Verdict::Error, None));
                    self.observe(
                        &Observation {
                            cohort,
                            verdicts,
                            unexpected: false,
                            cluster: cluster_of(key.as_deref()),
                        },
                        object.get("session"),
                    );
                }
                return Err(error);
            }
        };
        // `None` inside: the shadowing version cannot decode the request (its error).
        let mut shadow = shadowing.map(|bundle| self.decode_for(bundle, object, now_seconds).ok());
        // After a blue-green swap, the bundle before seeds counters of changed limits.
        let seed = active
            .seed_from
            .as_ref()
            .filter(|seed| live.is_none() && seed.active(now_seconds))
            .and_then(|seed| {
                let old = self.decode_for(&seed.bundle, object, now_seconds).ok()?;
                Some((seed, limit_uses(&seed.bundle.evaluator, &old, now_seconds)))
            });

        // A presented approval is checked, used and consumed under the book's lock, so two
        // requests cannot both act on it.
        let mut book = self
            .approvals
            .lock()
            .map_err(|_| RuntimeError::state("the approvals' lock was poisoned"))?;
        let presented = match approval_id {
            Some(id) => Some(check_presented(book.get(id), id, hash(), now_ms)?),
            None => None,
        };
        if let Some(approval) = &presented {
            grant(enforcing, &mut decoded, &approval.granted);
            if let (Some(bundle), Some(Some(request))) = (shadowing, shadow.as_mut()) {
                grant(bundle, request, &approval.granted);
            }
        }
        let evaluator = &enforcing.evaluator;
        // Open breakers of policies in play: fail closed denies, fail open skips the policy's
        // limit and approval rules.
        let (admitted, transitions) =
            self.breakers
                .admit(enforcing, || evaluator.rules_in_play(&decoded), now_ms);
        self.breaker_transitions(transitions, now_ms);
        let skipped = |rule: usize| {
            !admitted.skipped.is_empty()
                && enforcing
                    .rule_policy
                    .get(rule)
                    .copied()
                    .flatten()
                    .is_some_and(|p| admitted.skipped.contains(&p))
        };
        let (decision, shadow_decision, increments, timings, used) = {
            let mut counters = self
                .counters
                .lock()
                .map_err(|_| RuntimeError::state("the counters' lock was poisoned"))?;
            counters.expire(now_seconds);
            let mut store = Recording::new(&mut counters);
            let mut uses = limit_uses(evaluator, &decoded, now_seconds);
            if admitted.deny.is_some() {
                uses.clear();
            }
            uses.retain(|u| !skipped(u.rule));
            let shadow_uses = match (shadowing, &shadow) {
                (Some(bundle), Some(Some(request))) => {
                    Some(limit_uses(&bundle.evaluator, request, now_seconds))
                }
                _ => None,
            };
            // Counters of limits whose window or key changed start from stable's.
            if let Some(live) = live {
                let (candidate, stable) = match cohort {
                    Cohort::Candidate => (Some(&uses), shadow_uses.as_ref()),
                    Cohort::Stable => (shadow_uses.as_ref(), Some(&uses)),
                };
                if let Some(candidate) = candidate {
                    live.migration.seed(
                        &mut store,
                        candidate,
                        stable.map(Vec::as_slice).unwrap_or_default(),
                    );
                }
            } else if let Some((seed, old_uses)) = &seed {
                seed.migration.seed(&mut store, &uses, old_uses);
            }
            let clock = std::time::Instant::now();
            load_counters(&mut decoded, &uses, &store);
            let decision = match &admitted.deny {
                // Denied by an open fail-closed breaker: no rule of the set decides.
                Some(_) => polctl_lang::eval::Decision {
                    outcome: Outcome::Deny,
                    rules: Vec::new(),
                    approvers: Vec::new(),
                    cause: None,
                },
                None => evaluator.decide_skipping(&decoded, &skipped),
            };
            let enforced_us = clock.elapsed().as_micros() as u64;
            let shadow_decision = match (shadowing, shadow.as_mut(), &shadow_uses) {
                (Some(bundle), Some(Some(request)), Some(shadow_uses)) => {
                    let clock = std::time::Instant::now();
                    load_counters(request, shadow_uses, &store);
                    let decision = bundle.evaluator.decide(request);
                    Some((decision, clock.elapsed().as_micros() as u64))
                }
                _ => None,
            };
            if decision.outcome == Outcome::Allow {
                let mut all: Vec<&[LimitUse]> = vec![&uses];
                if let Some(shadow_uses) = &shadow_uses {
                    all.push(shadow_uses);
                }
                count_allowed(&mut store, &all);
            }
            let used: Vec<usize> = uses.iter().map(|u| u.rule).collect();
            (decision, shadow_decision, store.added, enforced_us, used)
        };
        let mut rendered = evaluator.render(&decoded, &decision);
        if let Some(policy) = &admitted.deny {
            rendered.rules = vec![policy.clone()];
            rendered.reasons = vec!["circuit open".to_owned()];
        }
        let failsafe: Vec<String> = admitted
            .skipped
            .iter()
            .map(|&p| evaluator.set().policies[p].name.clone())
            .collect();
        // The policies whose state this decision used: its limits, and its approval rules.
        let mut stateful_rules = used;
        if decision.outcome == Outcome::RequireApproval {
            stateful_rules.extend(&decision.rules);
        }
        if let Some(approval) = &presented {
            let rules = &evaluator.set().rules;
            stateful_rules.extend(
                approval
                    .rules
                    .iter()
                    .filter_map(|id| rules.iter().position(|r| &r.id == id)),
            );
        }
        let mut stateful: Vec<String> = stateful_rules
            .into_iter()
            .filter_map(|rule| enforcing.rule_policy.get(rule).copied().flatten())
            .map(|p| evaluator.set().policies[p].name.clone())
            .collect();
        stateful.sort_unstable();
        stateful.dedup();
        let number = self.decisions.fetch_add(1, Ordering::Relaxed);
        let decision_id = format!("d-{:011x}-{number:08x}", self.started_ms);
        // The approval this decision creates, reuses or consumes.
        let mut changed_approvals = Vec::new();
        let approval_id = match decision.outcome {
            Outcome::RequireApproval => {
                let existing = presented
                    .clone()
                    .or_else(|| book.pending_for(hash(), now_ms).cloned());
                let approval = match existing {
                    // The groups still missing are recomputed; granted groups are kept.
                    Some(approval) if approval.missing != rendered.approvers => {
                        let updated = Approval {
                            state: ApprovalState::Pending,
                            missing: rendered.approvers.clone(),
                            ..approval
                        };
                        changed_approvals.push(updated.clone());
                        updated
                    }
                    Some(approval) => approval,
                    None => {
                        let approval = Approval {
                            id: format!("a-{:011x}-{number:08x}", self.started_ms),
                            state: ApprovalState::Pending,
                            request_hash: hash().to_owned(),
                            request: request.clone(),
                            tool: evaluator.set().schema.tools[decoded.tool].name.clone(),
                            rules: rendered.rules.clone(),
                            missing: rendered.approvers.clone(),
                            granted: Vec::new(),
                            sequence: enforcing.sequence,
                            created_ms: now_ms,
                            expires_ms: now_ms.saturating_add(self.settings.approval_expiry_ms),
                            reason: None,
                            decided_by: None,
                        };
                        changed_approvals.push(approval.clone());
                        approval
                    }
                };
                Some(approval.id)
            }
            Outcome::Allow => {
                // One approval, one action.
                if let Some(approval) = &presented {
                    changed_approvals.push(Approval {
                        state: ApprovalState::Consumed,
                        decided_by: Some(decision_id.clone()),
                        ..approval.clone()
                    });
                }
                None
            }
            Outcome::Deny => None,
        };
        for approval in &changed_approvals {
            book.record(approval.clone());
        }
        drop(book);

        // The rollout's figures: both versions' verdicts, and whether a divergence is one
        // the semantic diff predicted.
        let mut shadow_entry = Json::Null;
        if let (Some(live), Some(shadowing)) = (live, shadowing) {
            let mut verdicts = [None, None];
            verdicts[cohort.index()] = Some((verdict_of(decision.outcome), Some(timings)));
            let other = cohort.other();
            let mut unexpected = false;
            match (&shadow_decision, shadow.as_ref().and_then(Option::as_ref)) {
                (Some((shadow_decision, us)), Some(shadow_request)) => {
                    verdicts[other.index()] =
                        Some((verdict_of(shadow_decision.outcome), Some(*us)));
                    let shadow_rendered =
                        shadowing.evaluator.render(shadow_request, shadow_decision);
                    if shadow_decision.outcome != decision.outcome {
                        let (stable, candidate) = match cohort {
                            Cohort::Stable => (&rendered, &shadow_rendered),
                            Cohort::Candidate => (&shadow_rendered, &rendered),
                        };
                        let tool = &live.candidate.evaluator.set().schema.tools[match cohort {
                            Cohort::Candidate => decoded.tool,
                            Cohort::Stable => shadow_request.tool,
                        }]
                        .name;
                        unexpected = live.prediction.as_ref().is_some_and(|p| {
                            !p.predicts(
                                tool,
                                outcome_of(stable),
                                outcome_of(candidate),
                                &stable.rules,
                                &candidate.rules,
                            )
                        });
                    }
                    shadow_entry = json!({
                        "sequence": shadowing.sequence,
                        "cohort": other.as_str(),
                        "decision": shadow_rendered.decision.as_str(),
                        "rules": shadow_rendered.rules,
                    });
                }
                _ => {
                    verdicts[other.index()] = Some((Verdict::Error, None));
                    shadow_entry = json!({
                        "sequence": shadowing.sequence,
                        "cohort": other.as_str(),
                        "decision": "error",
                    });
                }
            }
            self.observe(
                &Observation {
                    cohort,
                    verdicts,
                    unexpected,
                    cluster: cluster_of(key.as_deref()),
                },
                object.get("session"),
            );
        }
        let response = DecideResponse {
            decision: rendered,
            decision_id,
            sequence: enforcing.sequence,
            cohort: cohort.as_str(),
            approval_id,
            failsafe,
        };
        self.metrics
            .evaluation_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels {
                decision: response.decision.decision.as_str().to_owned(),
                cohort: response.cohort.to_owned(),
                sequence: response.sequence,
            })
            .inc();
        let mut body = json!({
            "decision_id": response.decision_id,
            "request": request,
            "decision": response.decision,
            "sequence": response.sequence,
            "cohort": response.cohort,
        });
        if self.settings.hash_arguments {
            crate::audit::hash_decision_arguments(&mut body);
        }
        if !response.failsafe.is_empty() {
            body["failsafe"] = json!(response.failsafe);
        }
        if let Some(live) = live {
            body["rollout"] = json!({
                "rollout_id": live.rollout_id,
                "stage": live.stage,
                "shadow": shadow_entry,
            });
        }
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Decision {
            increments,
            approvals: changed_approvals,
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "decision",
                body,
            },
            done,
        })?;
        Ok(Decided {
            response,
            stateful,
            committed,
        })
    }

    /// `POST /v1/tools`: the tools this agent may be shown (runtime.md §3.1), by the version its
    /// session's cohort would get. Counts nothing and writes nothing.
    pub async fn tools(&self, request: &Json) -> Result<Json, RuntimeError> {
        let active = self.routed()?;
        let Json::Object(object) = request else {
            return Err(RuntimeError::bad_request(
                "invalid_request",
                "the body is {\"agent\": {...}, \"context\": {...}, \"session\": \"...\"}",
            ));
        };
        for (field, ok) in [
            ("agent", object.get("agent").is_none_or(Json::is_object)),
            ("context", object.get("context").is_none_or(Json::is_object)),
            (
                "session",
                object
                    .get("session")
                    .is_none_or(|s| s.is_string() || s.is_null()),
            ),
        ] {
            if !ok {
                return Err(RuntimeError::bad_request(
                    "invalid_request",
                    format!(
                        "`{field}` is {}",
                        if field == "session" {
                            "a string"
                        } else {
                            "an object"
                        }
                    ),
                ));
            }
        }
        if let Some(field) = object
            .keys()
            .find(|k| !["agent", "context", "session"].contains(&k.as_str()))
        {
            return Err(RuntimeError::bad_request(
                "invalid_request",
                format!("`{field}` is not a field of a tools request (agent, context, session)"),
            ));
        }
        let bundle = match active.rollout.as_deref() {
            Some(live) => match polctl_rollout::cohort::cohort(
                &live.rollout_id,
                live.key(object).as_deref(),
                live.traffic,
            ) {
                Cohort::Candidate => live.candidate.clone(),
                Cohort::Stable => active.bundle.clone(),
            },
            None => active.bundle.clone(),
        };
        let agent = object.get("agent").cloned().unwrap_or_else(|| json!({}));
        let context = self
            .effective_context(&bundle, object)?
            .or_else(|| object.get("context").cloned())
            .unwrap_or_else(|| json!({}));
        let session = object
            .get("session")
            .and_then(Json::as_str)
            .map(str::to_owned);
        let key = (
            bundle.revision.clone(),
            json!({ "agent": agent, "context": context, "session": session }).to_string(),
        );
        let cached = self
            .shown_tools
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned());
        let tools = match cached {
            Some(tools) => tools,
            None => {
                let presenter = self.presenter.clone();
                let for_bundle = bundle.clone();
                let tools = tokio::task::spawn_blocking(move || {
                    presenter(&for_bundle, &agent, &context, session.as_deref())
                })
                .await
                .map_err(|e| {
                    RuntimeError::new(500, "internal", format!("listing the tools failed: {e}"))
                })?;
                let tools = Arc::new(tools);
                if let Ok(mut cache) = self.shown_tools.lock() {
                    if cache.len() >= TOOLS_CACHE {
                        cache.clear();
                    }
                    cache.insert(key, tools.clone());
                }
                tools
            }
        };
        Ok(json!({
            "tools": *tools,
            "sequence": bundle.sequence,
            "policy_version": bundle.revision,
        }))
    }

    /// Waits until a decision is durable, and tells the breakers of the policies whose state
    /// it used whether it was.
    pub async fn finish(
        &self,
        committed: oneshot::Receiver<Result<(), RuntimeError>>,
        stateful: &[String],
        now_ms: i64,
    ) -> Result<(), RuntimeError> {
        let result = wait(committed).await;
        if !stateful.is_empty() {
            let transitions = self.breakers.record(stateful, result.is_ok(), now_ms);
            self.breaker_transitions(transitions, now_ms);
        }
        result
    }

    /// Audits breaker transitions (without waiting: they describe what already happened) and
    /// updates the metrics.
    fn breaker_transitions(
        &self,
        transitions: Vec<(String, polctl_rollout::breaker::Transition)>,
        now_ms: i64,
    ) {
        if transitions.is_empty() {
            return;
        }
        for (policy, transition) in transitions {
            let (done, _) = oneshot::channel();
            let _ = self.journal.submit(Job::Entry {
                entry: PendingEntry {
                    time_ms: now_ms,
                    kind: "breaker",
                    body: json!({
                        "policy": policy,
                        "from": transition.from,
                        "to": transition.to,
                        "reason": transition.reason,
                    }),
                },
                done,
            });
        }
        self.update_breaker_metrics();
    }

    pub(crate) fn update_breaker_metrics(&self) {
        for (policy, state) in self.breakers.states() {
            self.metrics
                .breaker_state
                .get_or_create(&crate::metrics::PolicyLabels { policy })
                .set(state);
        }
    }

    /// `POST /v1/breakers/{policy}/{open,close,release}`: forces a policy's breaker open (a
    /// per-policy kill switch) or closed, or releases it; durable and audited.
    pub async fn force_breaker(
        &self,
        policy: &str,
        forced: Option<polctl_rollout::breaker::Forced>,
        by: &str,
        now_ms: i64,
    ) -> Result<Json, RuntimeError> {
        let _control = self.control.lock().await;
        let mut names: Vec<String> = Vec::new();
        for bundle in [self.active().map(|a| a.bundle.clone()), self.candidate()]
            .into_iter()
            .flatten()
        {
            names.extend(
                bundle
                    .evaluator
                    .set()
                    .policies
                    .iter()
                    .map(|p| p.name.clone()),
            );
        }
        if !names.iter().any(|n| n == policy) {
            let mut message = format!("no policy `{policy}` in the active or candidate bundle");
            if let Some(help) =
                polctl_lang::suggest::help_did_you_mean(policy, names.iter().map(String::as_str))
            {
                message.push_str(&format!(" ({help})"));
            }
            return Err(RuntimeError::new(404, "unknown_policy", message));
        }
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Breaker {
            policy: policy.to_owned(),
            forced,
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "breaker",
                body: json!({ "policy": policy, "forced": forced, "by": by }),
            },
            done,
        })?;
        wait(committed).await?;
        self.breakers.force(policy, forced);
        self.update_breaker_metrics();
        Ok(self.breakers.document())
    }

    /// Every breaker's state.
    pub fn breakers_document(&self) -> Json {
        self.breakers.document()
    }

    /// Decodes a request for one bundle: its operator context applied, the runtime's own
    /// fields left out.
    fn decode_for(
        &self,
        bundle: &LoadedBundle,
        object: &serde_json::Map<String, Json>,
        now_seconds: i64,
    ) -> Result<Request, RuntimeError> {
        let context = self.effective_context(bundle, object)?;
        let tree = JsonRef::Object(
            object
                .iter()
                .filter(|(key, _)| {
                    !["time", "counters", "approvals", "approval_id"].contains(&key.as_str())
                })
                .map(|(key, value)| {
                    let value = match (&context, key.as_str()) {
                        (Some(context), "context") => JsonRef::from_value(context),
                        _ => JsonRef::from_value(value),
                    };
                    (Cow::Borrowed(key.as_str()), value)
                })
                .collect(),
        );
        let mut decoded = bundle.evaluator.decode_ref(&tree).map_err(|e| {
            RuntimeError::bad_request(
                "invalid_request",
                format!("the request does not fit the schema: {e}"),
            )
        })?;
        decoded.time = Some(now_seconds);
        Ok(decoded)
    }

    /// Adds one request's verdicts to the rollout's figures (and remembers the session's
    /// cohort for its outcome).
    fn observe(&self, observation: &Observation, session: Option<&Json>) {
        if let Ok(mut slot) = self.rollout.lock() {
            if let Some(slot) = slot.as_mut() {
                slot.controller.observe(observation);
                if let Some(Json::String(session)) = session {
                    slot.remember_session(session, observation.cohort);
                }
            }
        }
    }

    /// The request's `context` with the operator attributes replaced by the server's values
    /// (the tenant's, else every tenant's, else the set's default); `None` when the set has
    /// no operator attributes (the request's context is used as sent).
    fn effective_context(
        &self,
        bundle: &LoadedBundle,
        request: &serde_json::Map<String, Json>,
    ) -> Result<Option<Json>, RuntimeError> {
        if bundle.project.operator_context.is_empty() {
            return Ok(None);
        }
        let mut context = match request.get("context") {
            Some(Json::Object(context)) => context.clone(),
            // Not an object: the decoder reports it.
            Some(_) => return Ok(None),
            None => serde_json::Map::new(),
        };
        let tenant = request
            .get("agent")
            .and_then(|agent| agent.get("tenant"))
            .and_then(Json::as_str)
            .unwrap_or("");
        let values = self
            .context
            .lock()
            .map_err(|_| RuntimeError::state("the operator context's lock was poisoned"))?;
        for attribute in &bundle.project.operator_context {
            let value = values
                .get(tenant)
                .and_then(|v| v.get(&attribute.name))
                .or_else(|| values.get("").and_then(|v| v.get(&attribute.name)))
                .unwrap_or(&attribute.default);
            context.insert(attribute.name.clone(), value.clone());
        }
        Ok(Some(Json::Object(context)))
    }

    /// Sets (`Some`) or removes (`None`) operator context values for a tenant (`None`: every
    /// tenant), durably and audited; they apply from the next decision. Names must be operator
    /// attributes of the active bundle and values of their type.
    pub async fn change_context(
        &self,
        tenant: Option<&str>,
        changes: Vec<(String, Option<Json>)>,
        by: &str,
        now_ms: i64,
    ) -> Result<Json, RuntimeError> {
        let _control = self.control.lock().await;
        let Some(active) = self.active() else {
            return Err(RuntimeError::new(
                409,
                "no_bundle",
                "operator context is checked against the active bundle's schema; activate one first",
            ));
        };
        let project = &active.bundle.project;
        if project.operator_context.is_empty() {
            return Err(RuntimeError::bad_request(
                "no_operator_context",
                "the active bundle names no operator context attributes; list them in its polctl.toml: [operator] context = [\"mode\", ...]",
            ));
        }
        let schema = &active.bundle.evaluator.set().schema;
        for (name, value) in &changes {
            let Some(attribute) = project.operator(name) else {
                let names: Vec<&str> = project
                    .operator_context
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect();
                let mut message = format!(
                    "`{name}` is not an operator context attribute; the active bundle's are {}",
                    names.join(", ")
                );
                if let Some(help) =
                    polctl_lang::suggest::help_did_you_mean(name, names.iter().copied())
                {
                    message.push_str(&format!(" ({help})"));
                }
                return Err(RuntimeError::bad_request("unknown_context", message));
            };
            if let Some(value) = value {
                polctl_lang::project::check_value(&schema.context[attribute.index].ty, value)
                    .map_err(|e| {
                        RuntimeError::bad_request("invalid_context", format!("`{name}`: {e}"))
                    })?;
            }
        }
        let tenant = tenant.unwrap_or("").to_owned();
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Context {
            tenant: tenant.clone(),
            changes: changes.clone(),
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "context",
                body: json!({
                    "tenant": if tenant.is_empty() { Json::Null } else { json!(tenant) },
                    "set": changes.iter().filter_map(|(n, v)| Some((n.clone(), v.clone()?))).collect::<serde_json::Map<_, _>>(),
                    "unset": changes.iter().filter(|(_, v)| v.is_none()).map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                    "by": by,
                }),
            },
            done,
        })?;
        wait(committed).await?;
        {
            let mut values = self
                .context
                .lock()
                .map_err(|_| RuntimeError::state("the operator context's lock was poisoned"))?;
            let slot = values.entry(tenant.clone()).or_default();
            for (name, value) in changes {
                match value {
                    Some(value) => {
                        slot.insert(name, value);
                    }
                    None => {
                        slot.remove(&name);
                    }
                }
            }
            if slot.is_empty() {
                values.remove(&tenant);
            }
        }
        Ok(self.context_document())
    }

    /// Approvals in a state (all with `None`), as of now.
    pub fn approvals(&self, state: Option<ApprovalState>, now_ms: i64) -> Vec<Approval> {
        self.approvals
            .lock()
            .map(|book| book.list(state, now_ms))
            .unwrap_or_default()
    }

    /// One approval, as of now.
    pub fn approval(&self, id: &str, now_ms: i64) -> Option<Approval> {
        self.approvals
            .lock()
            .ok()
            .and_then(|book| book.get(id).map(|a| a.as_of(now_ms)))
    }

    /// An approver approves (`reject: None`) or rejects for `group`; durable and audited.
    pub async fn decide_approval(
        &self,
        id: &str,
        group: &str,
        reject: Option<&str>,
        by: &str,
        now_ms: i64,
    ) -> Result<Approval, RuntimeError> {
        let (next, committed) = {
            let mut book = self
                .approvals
                .lock()
                .map_err(|_| RuntimeError::state("the approvals' lock was poisoned"))?;
            let Some(approval) = book.get(id) else {
                return Err(RuntimeError::new(
                    404,
                    "unknown_approval",
                    format!("no approval `{id}`"),
                ));
            };
            let next = decide_approval(approval, group, reject, by, now_ms)?;
            let (done, committed) = oneshot::channel();
            self.journal.submit(Job::Approvals {
                approvals: vec![next.clone()],
                entry: PendingEntry {
                    time_ms: now_ms,
                    kind: "approval",
                    body: json!({
                        "approval_id": id,
                        "group": group,
                        "action": if reject.is_some() { "reject" } else { "approve" },
                        "reason": reject,
                        "state": next.state,
                        "by": by,
                    }),
                },
                done,
            })?;
            book.record(next.clone());
            (next, committed)
        };
        wait(committed).await?;
        Ok(next)
    }

    /// The operator context as `GET /v1/context` shows it.
    pub fn context_document(&self) -> Json {
        let values = self.context.lock().map(|v| v.clone()).unwrap_or_default();
        let defaults: serde_json::Map<String, Json> = self
            .active()
            .map(|a| {
                a.bundle
                    .project
                    .operator_context
                    .iter()
                    .map(|o| (o.name.clone(), o.default.clone()))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "attributes": defaults.keys().collect::<Vec<_>>(),
            "defaults": defaults,
            "all_tenants": values.get("").cloned().unwrap_or_default(),
            "tenants": values.iter().filter(|(t, _)| !t.is_empty()).collect::<BTreeMap<_, _>>(),
        })
    }

    /// Writes an audit entry of its own and waits until it is durable.
    pub async fn record(
        &self,
        kind: &'static str,
        body: Json,
        now_ms: i64,
    ) -> Result<(), RuntimeError> {
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Entry {
            entry: PendingEntry {
                time_ms: now_ms,
                kind,
                body,
            },
            done,
        })?;
        wait(committed).await
    }

    /// Waits until everything queued so far is durable (shutdown).
    pub async fn flush(&self) -> Result<(), RuntimeError> {
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Flush(done))?;
        wait(committed).await
    }

    /// The last swap's migration report (since this start).
    pub fn last_migration(&self) -> Json {
        self.last_migration
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .unwrap_or(Json::Null)
    }

    /// Decisions made since this start.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }
}

/// Grants the approval's groups in a request decoded by `bundle` (by group name: versions may
/// number their groups differently).
fn grant(bundle: &LoadedBundle, request: &mut Request, granted: &[String]) {
    let groups = &bundle.evaluator.set().schema.approvers;
    for group in granted {
        if let Some(index) = groups.iter().position(|g| g == group) {
            request.approvals[index] = true;
        }
    }
}

fn verdict_of(outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Allow => Verdict::Allow,
        Outcome::Deny => Verdict::Deny,
        Outcome::RequireApproval => Verdict::RequireApproval,
    }
}

fn outcome_of(decision: &DecisionJson) -> Outcome {
    decision.decision
}

/// Waits for the journal's answer.
pub async fn wait(
    committed: oneshot::Receiver<Result<(), RuntimeError>>,
) -> Result<(), RuntimeError> {
    committed
        .await
        .map_err(|_| RuntimeError::state("the journal stopped before committing"))?
}
