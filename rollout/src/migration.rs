//! State migration on a swap (runtime.md §3.8), one documented rule per row of the table:
//!
//! | change | rule here |
//! | --- | --- |
//! | same limit (id, window, key) | [`CounterRow::Carried`]: the candidate reads the same counters; its own N applies at once |
//! | window or key changed | [`CounterRow::Changed`]: the candidate's counter for a window already running when it was first evaluated starts from the stable counter of the same rule for the same request ([`CounterMigration::seed`]); never from zero, so a change never opens a burst |
//! | limit removed | [`CounterRow::Removed`]: its counters stay until their windows end |
//! | limit added | [`CounterRow::Added`]: old counters of that identity are dropped when the candidate is first evaluated (never resurrected); from then on every allowed action counts |
//! | approval rule unchanged for the request | [`ApprovalRow::Kept`] |
//! | candidate allows without approval | [`ApprovalRow::Resolved`]: approved, "no longer requires approval (sequence N)" |
//! | candidate denies | [`ApprovalRow::Cancelled`], with the deny's reasons |
//! | candidate requires other groups | [`ApprovalRow::Regrouped`]: groups recomputed, granted groups kept |
//!
//! Counters migrate when the candidate is first evaluated (shadow included); approvals when it
//! becomes stable (a pending approval belongs to the version that created it).

use crate::counters::{identity, CounterStore, LimitIdentity, LimitUse};
use polctl_lang::eval::{Evaluator, Outcome};
use polctl_lang::ir::PolicySet;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "row")]
pub enum CounterRow {
    Carried {
        limit: LimitIdentity,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_changed: Option<(u64, u64)>,
    },
    Changed {
        from: LimitIdentity,
        to: LimitIdentity,
    },
    Added {
        limit: LimitIdentity,
    },
    Removed {
        limit: LimitIdentity,
    },
}

/// How the candidate's counters relate to stable's, fixed when the candidate is first
/// evaluated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CounterMigration {
    pub rows: Vec<CounterRow>,
    /// Candidate identity → the stable identity of the same rule, for changed limits.
    #[serde(skip)]
    seeds: BTreeMap<LimitIdentity, LimitIdentity>,
    /// Unix seconds at which the candidate was first evaluated.
    pub since: i64,
}

fn limits(set: &PolicySet) -> BTreeMap<String, (LimitIdentity, u64)> {
    (0..set.rules.len())
        .filter_map(|rule| {
            let id = identity(set, rule)?;
            let max = match &set.rules[rule].effect {
                polctl_lang::ir::Effect::Limit(limit) => limit.max,
                _ => 0,
            };
            Some((id.rule.clone(), (id, max)))
        })
        .collect()
}

impl CounterMigration {
    /// Compares the limits of both versions and prepares the store: counters of an added
    /// limit's identity are dropped (left over from an older version that had it).
    pub fn prepare(
        stable: &PolicySet,
        candidate: &PolicySet,
        now_seconds: i64,
        store: &mut dyn CounterStore,
    ) -> CounterMigration {
        let (old, new) = (limits(stable), limits(candidate));
        let mut migration = CounterMigration {
            since: now_seconds,
            ..CounterMigration::default()
        };
        for (rule, (to, max)) in &new {
            match old.get(rule) {
                Some((from, old_max)) if from == to => migration.rows.push(CounterRow::Carried {
                    limit: to.clone(),
                    max_changed: (old_max != max).then_some((*old_max, *max)),
                }),
                Some((from, _)) => {
                    migration.seeds.insert(to.clone(), from.clone());
                    migration.rows.push(CounterRow::Changed {
                        from: from.clone(),
                        to: to.clone(),
                    });
                }
                None => {
                    store.drop_limit(to);
                    migration.rows.push(CounterRow::Added { limit: to.clone() });
                }
            }
        }
        for (rule, (from, _)) in &old {
            if !new.contains_key(rule) {
                migration.rows.push(CounterRow::Removed {
                    limit: from.clone(),
                });
            }
        }
        migration
    }

    /// Before the candidate reads its counters for a request: seeds each counter of a changed
    /// limit whose window was already running when the candidate was first evaluated, from
    /// the stable counter of the same rule for the same request.
    pub fn seed(&self, store: &mut dyn CounterStore, candidate: &[LimitUse], stable: &[LimitUse]) {
        if self.seeds.is_empty() {
            return;
        }
        for candidate_use in candidate {
            let Some(from) = self.seeds.get(&candidate_use.counter.limit) else {
                continue;
            };
            if candidate_use.counter.window_start > self.since
                || store.get(&candidate_use.counter).is_some()
            {
                continue;
            }
            let count = stable
                .iter()
                .find(|u| &u.counter.limit == from)
                .and_then(|u| store.get(&u.counter))
                .unwrap_or(0);
            store.seed(&candidate_use.counter, count);
        }
    }

    /// Unix seconds from which no seed can apply any more: every window of a changed limit
    /// that was running when the candidate was first evaluated has ended.
    pub fn seeding_until(&self) -> i64 {
        self.seeds
            .keys()
            .map(|limit| {
                self.since
                    .saturating_add(limit.window_seconds.min(i64::MAX as u64) as i64)
            })
            .max()
            .unwrap_or(i64::MIN)
    }

    /// Counts per row.
    pub fn counts(&self) -> CounterCounts {
        let mut counts = CounterCounts::default();
        for row in &self.rows {
            match row {
                CounterRow::Carried { .. } => counts.carried += 1,
                CounterRow::Changed { .. } => counts.changed += 1,
                CounterRow::Added { .. } => counts.added += 1,
                CounterRow::Removed { .. } => counts.removed += 1,
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CounterCounts {
    pub carried: u64,
    pub changed: u64,
    pub added: u64,
    pub removed: u64,
}

/// An approval waiting when the candidate becomes stable: bound to the exact request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    pub id: String,
    pub request: serde_json::Value,
    /// The approval rules waiting, and the groups still missing.
    pub rules: Vec<String>,
    pub missing: Vec<String>,
    /// Groups that have already approved.
    pub granted: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "row")]
pub enum ApprovalRow {
    Kept {
        id: String,
    },
    Regrouped {
        id: String,
        rules: Vec<String>,
        missing: Vec<String>,
        granted: Vec<String>,
    },
    Resolved {
        id: String,
        reason: String,
    },
    Cancelled {
        id: String,
        /// The deny's rules and reasons (the reasons written with `because`, or what the
        /// evaluator says for a rule without one).
        rules: Vec<String>,
        reasons: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApprovalCounts {
    pub kept: u64,
    pub regrouped: u64,
    pub resolved: u64,
    pub cancelled: u64,
}

/// Migrates pending approvals to the version becoming stable (`sequence`): each request is
/// decided again by it, with the groups already granted.
pub fn migrate_approvals(
    candidate: &Evaluator,
    pending: &[PendingApproval],
    sequence: u64,
) -> Vec<ApprovalRow> {
    pending
        .iter()
        .map(|approval| {
            let mut json = approval.request.clone();
            if let Some(object) = json.as_object_mut() {
                object.insert("approvals".to_owned(), serde_json::json!(approval.granted));
                object.remove("counters");
            }
            let request = match candidate.decode(&json) {
                Ok(request) => request,
                Err(error) => {
                    return ApprovalRow::Cancelled {
                        id: approval.id.clone(),
                        rules: Vec::new(),
                        reasons: vec![format!(
                            "the request does not fit the schema of sequence {sequence}: {}: {}",
                            error.path, error.message
                        )],
                    }
                }
            };
            let decision = candidate.decide(&request);
            let rendered = candidate.render(&request, &decision);
            match decision.outcome {
                Outcome::Allow => ApprovalRow::Resolved {
                    id: approval.id.clone(),
                    reason: format!("no longer requires approval (sequence {sequence})"),
                },
                Outcome::Deny => ApprovalRow::Cancelled {
                    id: approval.id.clone(),
                    reasons: if rendered.reasons.is_empty() {
                        vec![format!(
                            "denied by {} in sequence {sequence}",
                            rendered.rules.join(", ")
                        )]
                    } else {
                        rendered.reasons
                    },
                    rules: rendered.rules,
                },
                Outcome::RequireApproval
                    if rendered.rules == approval.rules
                        && rendered.approvers == approval.missing =>
                {
                    ApprovalRow::Kept {
                        id: approval.id.clone(),
                    }
                }
                Outcome::RequireApproval => ApprovalRow::Regrouped {
                    id: approval.id.clone(),
                    rules: rendered.rules,
                    missing: rendered.approvers,
                    granted: approval.granted.clone(),
                },
            }
        })
        .collect()
}

/// Counts per row of migrated approvals.
pub fn approval_counts(rows: &[ApprovalRow]) -> ApprovalCounts {
    let mut counts = ApprovalCounts::default();
    for row in rows {
        match row {
            ApprovalRow::Kept { .. } => counts.kept += 1,
            ApprovalRow::Regrouped { .. } => counts.regrouped += 1,
            ApprovalRow::Resolved { .. } => counts.resolved += 1,
            ApprovalRow::Cancelled { .. } => counts.cancelled += 1,
        }
    }
    counts
}

/// The migration report of a swap: counts per row, and the rows themselves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationReport {
    pub counters: CounterCounts,
    pub approvals: ApprovalCounts,
    pub counter_rows: Vec<CounterRow>,
    pub approval_rows: Vec<ApprovalRow>,
}

impl MigrationReport {
    pub fn new(counters: &CounterMigration, approvals: Vec<ApprovalRow>) -> MigrationReport {
        MigrationReport {
            counters: counters.counts(),
            approvals: approval_counts(&approvals),
            counter_rows: counters.rows.clone(),
            approval_rows: approvals,
        }
    }
}
