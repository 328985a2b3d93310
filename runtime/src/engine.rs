//! The decision engine: the active bundle behind one atomic route, the counters, and the
//! journal that makes every decision durable before it is answered. The HTTP server (and
//! later the MCP gateway) call it; it knows nothing of HTTP.
//!
//! A decision is made entirely by the bundle it loaded from the route when it started: a swap
//! replaces the route's pointer, and a decision in flight finishes on the bundle it holds
//! (runtime.md §3.4). Checking a request's limits and counting an allowed action happen under
//! one lock, so concurrent requests never admit more than a limit allows.

use crate::audit::PendingEntry;
use crate::error::RuntimeError;
use crate::loaded::LoadedBundle;
use crate::store::{Job, Journal};
use arc_swap::ArcSwapOption;
use polctl_lang::eval::json::JsonRef;
use polctl_lang::eval::{DecisionJson, Outcome};
use polctl_rollout::counters::{
    count_allowed, limit_uses, load_counters, CounterKey, CounterStore, MemoryCounters,
};
use serde::Serialize;
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The bundle serving traffic and when it became active.
pub struct Active {
    pub bundle: LoadedBundle,
    pub activated_ms: i64,
}

/// A decision as the server answers it (runtime.md §3.1): language.md §1's decision and the
/// runtime's fields.
#[derive(Debug, Clone, Serialize)]
pub struct DecideResponse {
    #[serde(flatten)]
    pub decision: DecisionJson,
    pub decision_id: String,
    pub sequence: u64,
    pub cohort: &'static str,
}

/// A decision made and queued for the journal: answer it once `committed` says so.
pub struct Decided {
    pub response: DecideResponse,
    pub committed: oneshot::Receiver<Result<(), RuntimeError>>,
}

/// Fields of language.md §1 that only a pure evaluation may carry: the runtime keeps the
/// counters and the approvals, and an agent cannot assert either.
const FORBIDDEN_FIELDS: [&str; 2] = ["counters", "approvals"];

pub struct Engine {
    route: ArcSwapOption<Active>,
    counters: Mutex<MemoryCounters>,
    journal: Journal,
    /// Decision ids: this start's time and a sequence, unique across restarts.
    started_ms: i64,
    decisions: AtomicU64,
}

impl Engine {
    pub fn new(journal: Journal, counters: Vec<(CounterKey, u64)>, now_ms: i64) -> Engine {
        let mut store = MemoryCounters::default();
        for (key, count) in counters {
            store.add(&key, count);
        }
        Engine {
            route: ArcSwapOption::empty(),
            counters: Mutex::new(store),
            journal,
            started_ms: now_ms,
            decisions: AtomicU64::new(0),
        }
    }

    /// The active bundle, if any.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.route.load_full()
    }

    /// Makes a bundle active at once, durably: the route changes only after the bundle and
    /// its `activate` audit entry are committed, so a restart comes back to it.
    pub async fn activate(
        &self,
        bundle: LoadedBundle,
        now_ms: i64,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        let (done, committed) = oneshot::channel();
        let previous = self.active().map(|a| a.bundle.sequence);
        self.journal.submit(Job::Activate {
            sequence: bundle.sequence,
            revision: bundle.revision.clone(),
            bytes: bundle.bytes.clone(),
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "activate",
                body: json!({
                    "sequence": bundle.sequence,
                    "revision": bundle.revision,
                    "name": bundle.name,
                    "verified": bundle.verified,
                    "previous_sequence": previous,
                    "reason": reason,
                }),
            },
            done,
        })?;
        wait(committed).await?;
        self.route.store(Some(Arc::new(Active {
            bundle,
            activated_ms: now_ms,
        })));
        Ok(())
    }

    /// Puts a recovered bundle back on the route (it is already in the state store).
    pub fn restore(&self, bundle: LoadedBundle, activated_ms: i64) {
        self.route.store(Some(Arc::new(Active {
            bundle,
            activated_ms,
        })));
    }

    /// Decides one request (the JSON of runtime.md §3.1) at `now_ms`.
    pub fn decide(&self, request: &Json, now_ms: i64) -> Result<Decided, RuntimeError> {
        let Some(active) = self.route.load_full() else {
            return Err(RuntimeError::new(
                503,
                "no_bundle",
                "no bundle is active yet; push one (`polctl push`) or start the server with --bundle",
            ));
        };
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
        if object.contains_key("approval_id") {
            return Err(RuntimeError::new(
                404,
                "unknown_approval",
                "this server holds no approvals yet: `approval_id` names none",
            ));
        }
        // The server's clock places the action in its limit windows, never the request's.
        let now_seconds = now_ms.div_euclid(1000);
        let tree = JsonRef::Object(
            object
                .iter()
                .filter(|(key, _)| !["time", "counters", "approvals"].contains(&key.as_str()))
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), JsonRef::from_value(value)))
                .collect(),
        );
        let evaluator = &active.bundle.evaluator;
        let mut decoded = evaluator.decode_ref(&tree).map_err(|e| {
            RuntimeError::bad_request(
                "invalid_request",
                format!("the request does not fit the schema: {e}"),
            )
        })?;
        decoded.time = Some(now_seconds);
        let (decision, increments) = {
            let mut counters = self
                .counters
                .lock()
                .map_err(|_| RuntimeError::state("the counters' lock was poisoned"))?;
            counters.expire(now_seconds);
            let uses = limit_uses(evaluator, &decoded, now_seconds);
            load_counters(&mut decoded, &uses, &*counters);
            let decision = evaluator.decide(&decoded);
            let increments: Vec<CounterKey> = if decision.outcome == Outcome::Allow {
                count_allowed(&mut *counters, &[&uses]);
                uses.into_iter().map(|u| u.counter).collect()
            } else {
                Vec::new()
            };
            (decision, increments)
        };
        let rendered = evaluator.render(&decoded, &decision);
        let number = self.decisions.fetch_add(1, Ordering::Relaxed);
        let decision_id = format!("d-{:011x}-{number:08x}", self.started_ms);
        let response = DecideResponse {
            decision: rendered,
            decision_id,
            sequence: active.bundle.sequence,
            cohort: "stable",
        };
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Decision {
            increments,
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "decision",
                body: json!({
                    "decision_id": response.decision_id,
                    "request": request,
                    "decision": response.decision,
                    "sequence": response.sequence,
                    "cohort": response.cohort,
                }),
            },
            done,
        })?;
        Ok(Decided {
            response,
            committed,
        })
    }

    /// Waits until everything queued so far is durable (shutdown).
    pub async fn flush(&self) -> Result<(), RuntimeError> {
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Flush(done))?;
        wait(committed).await
    }

    /// Decisions made since this start.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }
}

/// Waits for the journal's answer.
pub async fn wait(
    committed: oneshot::Receiver<Result<(), RuntimeError>>,
) -> Result<(), RuntimeError> {
    committed
        .await
        .map_err(|_| RuntimeError::state("the journal stopped before committing"))?
}
