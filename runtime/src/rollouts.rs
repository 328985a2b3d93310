//! Rollouts on the server (runtime.md §3.4, §4): the `polctl-rollout` controller, the same one
//! `polctl simulate` runs, fed with live decisions and the wall clock.
//!
//! Decisions add their verdicts to the controller's figures ([`Engine::decide`]); a ticker
//! calls [`Engine::tick_rollout`] every second, and operators promote, pause, resume and abort.
//! Every change of the controller goes through one path, [`Engine::settle`]: its new events are
//! written to the audit log with the controller's state (so a restart resumes the same stage),
//! and only then does the route change: a new stage's traffic, all traffic back to stable on
//! an abort, or the candidate made stable on completion (with the state migration of §3.8).

use crate::audit::PendingEntry;
use crate::engine::{wait, Active, Engine, LiveRollout};
use crate::error::RuntimeError;
use crate::loaded::LoadedBundle;
use crate::store::Job;
use polctl_rollout::controller::{Controller, ControllerState, Phase};
use polctl_rollout::migration::CounterMigration;
use polctl_rollout::plan::Plan;
use polctl_rollout::simulate::Prediction;
use serde_json::{json, Value as Json};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The rollout the engine drives: the controller and what the route needs to rebuild.
pub struct RolloutSlot {
    pub controller: Controller,
    pub candidate: Arc<LoadedBundle>,
    pub migration: Arc<CounterMigration>,
    pub prediction: Option<Arc<Prediction>>,
    pub started_ms: i64,
    pub by: String,
    /// Events already written to the audit log.
    pub persisted: usize,
    /// The cohort of each recent session, for the outcomes agents report.
    pub sessions: std::collections::HashMap<String, polctl_rollout::cohort::Cohort>,
}

/// Sessions remembered at most (then forgotten all at once: an outcome for a forgotten session
/// is not counted, which only makes the completion criterion see less data).
const MAX_SESSIONS: usize = 100_000;

impl RolloutSlot {
    pub fn remember_session(&mut self, session: &str, cohort: polctl_rollout::cohort::Cohort) {
        if self.sessions.get(session) == Some(&cohort) {
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.clear();
        }
        self.sessions.insert(session.to_owned(), cohort);
    }
}

/// What the server persists of a rollout (the `rollout` row).
#[derive(serde::Serialize, serde::Deserialize)]
struct Persisted {
    sequence: u64,
    revision: String,
    started_ms: i64,
    by: String,
    controller: ControllerState,
    /// What the semantic diff predicted when the rollout started, so a restart does not run
    /// the diff again (it can take the predictor's whole time limit) before serving. Absent in
    /// rows written before it was kept, and when the diff gave no prediction: then a restart
    /// runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prediction: Option<polctl_rollout::simulate::Prediction>,
}

/// An operator's action on the current rollout.
#[derive(Debug, Clone)]
pub enum RolloutAction {
    Promote { full: bool },
    Pause,
    Resume,
    Abort { reason: Option<String> },
}

impl Engine {
    /// `POST /v1/rollouts` with a plan: starts rolling the candidate `sequence` out.
    pub async fn start_rollout(
        &self,
        sequence: u64,
        plan: Plan,
        by: &str,
        now_ms: i64,
    ) -> Result<Json, RuntimeError> {
        let _control = self.control.lock().await;
        let Some(active) = self.active() else {
            return Err(RuntimeError::new(
                409,
                "no_stable",
                "a staged rollout needs a stable bundle to compare with; activate the first bundle without a plan (`polctl push BUNDLE`)",
            ));
        };
        self.refuse_if_rolling_out()?;
        let candidate = self.candidate_with(sequence)?;
        let stable = active.bundle.clone();
        let predictor = self.predictor.clone();
        let (left, right) = (stable.clone(), candidate.clone());
        let prediction = tokio::task::spawn_blocking(move || predictor(&left, &right))
            .await
            .ok()
            .flatten()
            .map(Arc::new);
        let rollout_id = format!("r-{now_ms:x}-{sequence}");
        let controller = Controller::new(plan, rollout_id, now_ms);
        // Counters migrate when the candidate is first evaluated: now, in shadow.
        let (migration, drops) = self.migrate_counters(&stable, &candidate, now_ms)?;
        let migration = Arc::new(migration);
        let slot = RolloutSlot {
            controller,
            candidate,
            migration,
            prediction,
            started_ms: now_ms,
            by: by.to_owned(),
            persisted: 0,
            sessions: Default::default(),
        };
        let body = json!({
            "rollout_id": slot.controller.rollout_id(),
            "action": "start",
            "stable_sequence": stable.sequence,
            "sequence": sequence,
            "plan": slot.controller.plan().to_toml(),
            "counters": {"counts": slot.migration.counts(), "rows": slot.migration.rows},
            "predicted": slot.prediction.is_some(),
            "phase": slot.controller.phase().as_str(),
            "events": slot.controller.events(),
            "by": by,
        });
        if let Ok(mut current) = self.rollout.lock() {
            *current = Some(slot);
        }
        self.persist_and_route(now_ms, body, drops).await?;
        Ok(self.rollout_document(now_ms))
    }

    /// `POST /v1/rollouts/current/{promote,pause,resume,abort}`.
    pub async fn rollout_action(
        &self,
        action: RolloutAction,
        by: &str,
        now_ms: i64,
    ) -> Result<Json, RuntimeError> {
        let _control = self.control.lock().await;
        {
            let mut slot = self
                .rollout
                .lock()
                .map_err(|_| RuntimeError::state("the rollout's lock was poisoned"))?;
            let Some(slot) = slot.as_mut() else {
                return Err(no_rollout());
            };
            let controller = &mut slot.controller;
            let result = match &action {
                RolloutAction::Promote { full } => controller.promote(now_ms, *full),
                RolloutAction::Pause => controller.pause(now_ms),
                RolloutAction::Resume => controller.resume(now_ms),
                RolloutAction::Abort { reason } => controller.abort(now_ms, reason.clone()),
            };
            result.map_err(|message| {
                RuntimeError::new(409, "rollout_state", format!("cannot do that: {message}"))
            })?;
        }
        self.settle(now_ms, by).await?;
        Ok(self.rollout_document(now_ms))
    }

    /// Judges the rollout at `now_ms` (the server's ticker calls this every second).
    pub async fn tick_rollout(&self, now_ms: i64) -> Result<(), RuntimeError> {
        let _control = self.control.lock().await;
        let changed = {
            let mut slot = self
                .rollout
                .lock()
                .map_err(|_| RuntimeError::state("the rollout's lock was poisoned"))?;
            match slot.as_mut() {
                Some(slot) if !slot.controller.phase().is_final() => {
                    slot.controller.tick(now_ms);
                    slot.controller.events().len() > slot.persisted
                }
                _ => false,
            }
        };
        if changed {
            self.settle(now_ms, "rollout").await?;
        }
        Ok(())
    }

    /// Aborts a rollout in progress for a rollback (the caller holds the control lock).
    /// Returns whether there was one.
    pub(crate) async fn abort_for_rollback(
        &self,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, RuntimeError> {
        let aborted = {
            let mut slot = self
                .rollout
                .lock()
                .map_err(|_| RuntimeError::state("the rollout's lock was poisoned"))?;
            match slot.as_mut() {
                Some(slot) if !slot.controller.phase().is_final() => slot
                    .controller
                    .abort(now_ms, Some(format!("rolled back by {by}")))
                    .is_ok(),
                _ => false,
            }
        };
        if aborted {
            self.settle(now_ms, by).await?;
        }
        Ok(aborted)
    }

    /// Writes the controller's new events and state, then changes the route to match: the
    /// one path every rollout change takes (the caller holds the control lock).
    async fn settle(&self, now_ms: i64, by: &str) -> Result<(), RuntimeError> {
        let (phase, events, rollout_id, candidate, migration) = {
            let slot = self
                .rollout
                .lock()
                .map_err(|_| RuntimeError::state("the rollout's lock was poisoned"))?;
            let Some(slot) = slot.as_ref() else {
                return Ok(());
            };
            let events = slot.controller.events()[slot.persisted..].to_vec();
            (
                slot.controller.phase(),
                events,
                slot.controller.rollout_id().to_owned(),
                slot.candidate.clone(),
                slot.migration.clone(),
            )
        };
        let body = json!({
            "rollout_id": rollout_id,
            "sequence": candidate.sequence,
            "phase": phase.as_str(),
            "events": events,
            "by": by,
        });
        if phase == Phase::Completed {
            // The events are recorded first, then the candidate becomes stable.
            self.record("rollout", body, now_ms).await?;
            self.mark_persisted();
            self.activate(candidate, now_ms, "activate", by, Some(migration))
                .await?;
            if let Ok(mut slot) = self.candidate.lock() {
                *slot = None;
            }
            return Ok(());
        }
        self.persist_and_route(now_ms, body, Vec::new()).await
    }

    /// Persists the rollout's state with an audit entry, then installs its route.
    async fn persist_and_route(
        &self,
        now_ms: i64,
        body: Json,
        drops: Vec<polctl_rollout::counters::LimitIdentity>,
    ) -> Result<(), RuntimeError> {
        let state = self.persisted_state()?;
        let (done, committed) = oneshot::channel();
        self.journal.submit(Job::Rollout {
            state: Some(state),
            drops,
            entry: PendingEntry {
                time_ms: now_ms,
                kind: "rollout",
                body,
            },
            done,
        })?;
        wait(committed).await?;
        self.mark_persisted();
        self.install_route();
        Ok(())
    }

    fn persisted_state(&self) -> Result<String, RuntimeError> {
        let slot = self
            .rollout
            .lock()
            .map_err(|_| RuntimeError::state("the rollout's lock was poisoned"))?;
        let Some(slot) = slot.as_ref() else {
            return Err(no_rollout());
        };
        let persisted = Persisted {
            sequence: slot.candidate.sequence,
            revision: slot.candidate.revision.clone(),
            started_ms: slot.started_ms,
            by: slot.by.clone(),
            controller: slot.controller.state(),
            prediction: slot.prediction.as_deref().cloned(),
        };
        serde_json::to_string(&persisted)
            .map_err(|e| RuntimeError::state(format!("cannot write the rollout's state: {e}")))
    }

    fn mark_persisted(&self) {
        if let Ok(mut slot) = self.rollout.lock() {
            if let Some(slot) = slot.as_mut() {
                slot.persisted = slot.controller.events().len();
            }
        }
    }

    /// Puts the route in line with the controller: the current stage's traffic, or stable
    /// alone once the rollout is over.
    fn install_route(&self) {
        let Some(active) = self.active() else {
            return;
        };
        let live = self.rollout.lock().ok().and_then(|slot| {
            let slot = slot.as_ref()?;
            let controller = &slot.controller;
            if controller.phase().is_final() {
                return None;
            }
            Some(Arc::new(LiveRollout {
                candidate: slot.candidate.clone(),
                rollout_id: controller.rollout_id().to_owned(),
                stickiness: controller.plan().stickiness.clone(),
                stage: controller.current().name.clone(),
                traffic: controller.traffic(),
                migration: slot.migration.clone(),
                prediction: slot.prediction.clone(),
            }))
        });
        self.metrics()
            .rollout_traffic
            .set(live.as_ref().map_or(0.0, |l| l.traffic));
        let stage = self.rollout.lock().ok().and_then(|slot| {
            let slot = slot.as_ref()?;
            (!slot.controller.phase().is_final()).then(|| slot.controller.stage_index() as i64)
        });
        self.metrics().rollout_stage.set(stage.unwrap_or(-1));
        self.route.store(Some(Arc::new(Active {
            bundle: active.bundle.clone(),
            activated_ms: active.activated_ms,
            rollout: live,
            seed_from: active.seed_from.clone(),
        })));
    }

    /// Puts a persisted rollout back after a restart: at its stage and phase, with the
    /// candidate it was rolling out (already restored), figures starting again.
    pub fn restore_rollout(&self, state: &str) -> Result<(), RuntimeError> {
        let persisted: Persisted = serde_json::from_str(state).map_err(|e| {
            RuntimeError::state(format!("the persisted rollout is unreadable: {e}"))
        })?;
        let candidate = self
            .candidate()
            .filter(|c| c.revision == persisted.revision)
            .ok_or_else(|| {
                RuntimeError::state("the persisted rollout's candidate bundle is not restored")
            })?;
        let stable = self
            .active()
            .ok_or_else(|| RuntimeError::state("the persisted rollout has no stable bundle"))?;
        let controller = Controller::restore(persisted.controller).map_err(RuntimeError::state)?;
        let migration = {
            // The counters were migrated when the rollout started; this only rebuilds the
            // seeds (nothing is dropped again).
            let mut scratch = polctl_rollout::counters::MemoryCounters::default();
            CounterMigration::prepare(
                stable.bundle.evaluator.set(),
                candidate.evaluator.set(),
                persisted.started_ms.div_euclid(1000),
                &mut scratch,
            )
        };
        let prediction = match persisted.prediction {
            Some(prediction) => Some(Arc::new(prediction)),
            None => (self.predictor)(&stable.bundle, &candidate).map(Arc::new),
        };
        let events = controller.events().len();
        if let Ok(mut slot) = self.rollout.lock() {
            *slot = Some(RolloutSlot {
                controller,
                candidate,
                migration: Arc::new(migration),
                prediction,
                started_ms: persisted.started_ms,
                by: persisted.by,
                persisted: events,
                sessions: Default::default(),
            });
        }
        self.install_route();
        Ok(())
    }

    /// `POST /v1/outcomes`: a session reports how its task ended (runtime.md §4.3). Returns
    /// the session's cohort, or `None` when no rollout knows the session.
    pub fn report_outcome(&self, session: &str, completed: bool) -> Option<&'static str> {
        let mut slot = self.rollout.lock().ok()?;
        let slot = slot.as_mut()?;
        if slot.controller.phase().is_final() {
            return None;
        }
        let cohort = *slot.sessions.get(session)?;
        slot.controller.observe_outcome(cohort, completed);
        Some(cohort.as_str())
    }

    /// Whether a rollout is in progress (not completed or aborted).
    pub fn rolling_out(&self) -> bool {
        self.rollout.lock().is_ok_and(|slot| {
            slot.as_ref()
                .is_some_and(|slot| !slot.controller.phase().is_final())
        })
    }

    pub(crate) fn refuse_if_rolling_out(&self) -> Result<(), RuntimeError> {
        if self.rolling_out() {
            return Err(RuntimeError::new(
                409,
                "rollout_in_progress",
                "a rollout is in progress: promote it, abort it (`polctl rollout abort`) or roll back first",
            ));
        }
        Ok(())
    }

    /// The candidate, if it has this sequence.
    pub(crate) fn candidate_with(&self, sequence: u64) -> Result<Arc<LoadedBundle>, RuntimeError> {
        let Some(candidate) = self.candidate() else {
            return Err(RuntimeError::new(
                409,
                "no_candidate",
                "no bundle is waiting to be rolled out; upload one first (`polctl push BUNDLE`)",
            ));
        };
        if candidate.sequence != sequence {
            return Err(RuntimeError::new(
                409,
                "wrong_candidate",
                format!(
                    "the candidate is sequence {}, not {sequence}",
                    candidate.sequence
                ),
            ));
        }
        Ok(candidate)
    }

    /// `GET /v1/rollouts/current`: the rollout, its stages with their figures, its events.
    pub fn rollout_document(&self, now_ms: i64) -> Json {
        let Ok(slot) = self.rollout.lock() else {
            return Json::Null;
        };
        let Some(slot) = slot.as_ref() else {
            return Json::Null;
        };
        let controller = &slot.controller;
        let plan = controller.plan();
        let reports = controller.stage_reports();
        let stages: Vec<Json> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| {
                let state = match controller.phase() {
                    Phase::Completed => "done",
                    _ if index < controller.stage_index() => "done",
                    Phase::Aborted if index == controller.stage_index() => "aborted",
                    Phase::Paused if index == controller.stage_index() => "paused",
                    _ if index == controller.stage_index() => "current",
                    _ => "pending",
                };
                let report = reports.iter().find(|r| r.name == stage.name);
                json!({
                    "name": stage.name,
                    "traffic": stage.traffic,
                    "state": state,
                    "min_duration_ms": stage.min_duration_ms,
                    "min_decisions": stage.min_decisions,
                    "figures": report,
                })
            })
            .collect();
        json!({
            "rollout_id": controller.rollout_id(),
            "sequence": slot.candidate.sequence,
            "revision": slot.candidate.revision,
            "stable_sequence": self.active().map(|a| a.bundle.sequence),
            "phase": controller.phase().as_str(),
            "stage": controller.current().name,
            "stage_index": controller.stage_index(),
            "traffic": controller.traffic(),
            "stickiness": plan.stickiness.to_string(),
            "stage_entered_ms": controller.stage_entered(),
            "stage_elapsed_ms": now_ms - controller.stage_entered(),
            "started_ms": slot.started_ms,
            "started_by": slot.by,
            "stages": stages,
            "aborted": controller.aborted(),
            "events": controller.events(),
            "predicted": slot.prediction.is_some(),
        })
    }
}

fn no_rollout() -> RuntimeError {
    RuntimeError::new(
        404,
        "no_rollout",
        "no rollout has been started on this server; start one with `polctl push BUNDLE --plan PLAN.toml`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use polctl_lang::eval::Outcome;
    use polctl_rollout::simulate::{PredictedClass, Prediction};

    fn persisted(prediction: Option<Prediction>) -> Persisted {
        let plan = polctl_rollout::plan::parse_plan(
            "[[stage]]\nname = \"canary\"\ntraffic = 10\n\n[[stage]]\nname = \"full\"\ntraffic = 100\n",
        )
        .expect("plan");
        Persisted {
            sequence: 8,
            revision: "sha256:next".to_owned(),
            started_ms: 1_000,
            by: "release".to_owned(),
            controller: Controller::new(plan, "r-1", 1_000).state(),
            prediction,
        }
    }

    /// The prediction is kept with the rollout's row, so a restart reads it back instead of
    /// running the semantic diff again; rows written before it was kept still read.
    #[test]
    fn a_persisted_rollout_keeps_its_prediction() {
        let prediction = Prediction {
            classes: vec![PredictedClass {
                tool: "refund".to_owned(),
                from: Outcome::Allow,
                to: Outcome::Deny,
                old_rules: vec!["billing.refunds".to_owned()],
                new_rules: vec!["platform.freeze".to_owned()],
            }],
            unfinished: vec![(
                "export".to_owned(),
                Outcome::Allow,
                Outcome::RequireApproval,
            )],
        };
        let text = serde_json::to_string(&persisted(Some(prediction.clone()))).expect("JSON");
        let read: Persisted = serde_json::from_str(&text).expect("reads back");
        assert_eq!(read.prediction, Some(prediction));
        let mut legacy: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&persisted(None)).expect("JSON"))
                .expect("JSON");
        assert!(legacy.get("prediction").is_none());
        legacy["by"] = serde_json::json!("ops");
        let read: Persisted = serde_json::from_value(legacy).expect("a row without a prediction");
        assert_eq!(read.prediction, None);
    }
}
