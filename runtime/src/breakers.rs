//! Per-policy circuit breakers on the server (runtime.md §3.6), by policy name (so a breaker
//! and an operator's forcing outlive a swap to a version that keeps the policy).
//!
//! A policy's failures are those of the state its rules need: a decision whose limits or
//! approvals belong to the policy succeeds or fails with the commit of that state (the
//! journal). The breaker itself is `polctl-rollout`'s state machine. While a policy's breaker
//! is open its `on failure` applies:
//! - `deny` (fail closed): a request one of its rules would evaluate is denied, rule `<policy>`,
//!   reason "circuit open";
//! - `allow` (fail open): its limit and approval rules are skipped (the evaluator's
//!   [`decide_skipping`](polctl_lang::eval::Evaluator::decide_skipping)), its allows and denies
//!   still apply, and the decision carries `"failsafe": ["<policy>"]`.
//!
//! Decisions look at breakers only while one is open, half-open or forced (one atomic flag),
//! so the common path pays nothing.

use crate::loaded::LoadedBundle;
use polctl_lang::ir::FailureMode;
use polctl_rollout::breaker::{
    Admission, Breaker, BreakerSettings, BreakerState, Forced, Transition,
};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub struct Breakers {
    settings: BreakerSettings,
    by_policy: Mutex<BTreeMap<String, Breaker>>,
    /// Some breaker is open, half-open or forced.
    active: AtomicBool,
}

/// What the breakers say about one decision.
#[derive(Debug, Default)]
pub struct Admitted {
    /// A fail-closed policy in play is open: the request is denied by it.
    pub deny: Option<String>,
    /// Fail-open policies in play that are open (indexes into the set's policies).
    pub skipped: Vec<usize>,
}

impl Breakers {
    pub fn new(settings: BreakerSettings, forced: Vec<(String, Forced)>) -> Breakers {
        let breakers = Breakers {
            settings,
            by_policy: Mutex::new(BTreeMap::new()),
            active: AtomicBool::new(false),
        };
        if let Ok(mut map) = breakers.by_policy.lock() {
            for (policy, forced) in forced {
                let mut breaker = Breaker::new(breakers.settings.clone());
                breaker.force(Some(forced));
                map.insert(policy, breaker);
            }
            breakers.refresh(&map);
        }
        breakers
    }

    fn refresh(&self, map: &BTreeMap<String, Breaker>) {
        let active = map
            .values()
            .any(|b| b.forced().is_some() || b.state() != BreakerState::Closed);
        self.active.store(active, Ordering::Release);
    }

    /// The breakers of the policies a request brings into play (`in_play`: its rules, computed
    /// only when some breaker is active). Returns the transitions it caused (open → half-open).
    pub fn admit(
        &self,
        bundle: &LoadedBundle,
        in_play: impl FnOnce() -> Vec<usize>,
        now_ms: i64,
    ) -> (Admitted, Vec<(String, Transition)>) {
        let mut admitted = Admitted::default();
        let mut transitions = Vec::new();
        if !self.active.load(Ordering::Acquire) {
            return (admitted, transitions);
        }
        let set = bundle.evaluator.set();
        let mut policies: Vec<usize> = in_play()
            .into_iter()
            .filter_map(|rule| bundle.rule_policy.get(rule).copied().flatten())
            .collect();
        policies.sort_unstable();
        policies.dedup();
        let Ok(mut map) = self.by_policy.lock() else {
            return (admitted, transitions);
        };
        for policy in policies {
            let name = &set.policies[policy].name;
            let Some(breaker) = map.get_mut(name) else {
                continue;
            };
            let (admission, transition) = breaker.admit(now_ms);
            if let Some(transition) = transition {
                transitions.push((name.clone(), transition));
            }
            if admission == Admission::Open {
                match set.policies[policy].on_failure {
                    FailureMode::Deny => {
                        admitted.deny.get_or_insert_with(|| name.clone());
                    }
                    FailureMode::Allow => admitted.skipped.push(policy),
                }
            }
        }
        self.refresh(&map);
        (admitted, transitions)
    }

    /// The outcome of the state a decision used, for each policy it belongs to.
    pub fn record(&self, policies: &[String], ok: bool, now_ms: i64) -> Vec<(String, Transition)> {
        let mut transitions = Vec::new();
        let Ok(mut map) = self.by_policy.lock() else {
            return transitions;
        };
        for policy in policies {
            let breaker = map
                .entry(policy.clone())
                .or_insert_with(|| Breaker::new(self.settings.clone()));
            let admission = match breaker.state() {
                BreakerState::HalfOpen => Admission::Trial,
                BreakerState::Closed => Admission::Normal,
                BreakerState::Open => continue,
            };
            if let Some(transition) = breaker.record(now_ms, !ok, admission) {
                transitions.push((policy.clone(), transition));
            }
        }
        self.refresh(&map);
        transitions
    }

    /// Forces a policy's breaker open or closed, or releases it (`None`).
    pub fn force(&self, policy: &str, forced: Option<Forced>) {
        if let Ok(mut map) = self.by_policy.lock() {
            map.entry(policy.to_owned())
                .or_insert_with(|| Breaker::new(self.settings.clone()))
                .force(forced);
            self.refresh(&map);
        }
    }

    /// Every breaker that has seen a call or been forced: its state and whether it is forced.
    pub fn document(&self) -> Json {
        let Ok(map) = self.by_policy.lock() else {
            return Json::Null;
        };
        map.iter()
            .map(|(policy, breaker)| {
                (
                    policy.clone(),
                    json!({ "state": breaker.state(), "forced": breaker.forced() }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// States for the metrics: 0 closed, 1 open, 2 half-open.
    pub fn states(&self) -> Vec<(String, i64)> {
        let Ok(map) = self.by_policy.lock() else {
            return Vec::new();
        };
        map.iter()
            .map(|(policy, breaker)| {
                let state = match breaker.state() {
                    BreakerState::Closed => 0,
                    BreakerState::Open => 1,
                    BreakerState::HalfOpen => 2,
                };
                (policy.clone(), state)
            })
            .collect()
    }
}
