//! The state migration of a swap (runtime.md §3.8) as the server applies it, and the counter
//! store wrapper that records what a decision or a migration changed so that the journal can
//! write exactly that.
//!
//! The rules themselves are `polctl-rollout`'s (`migration.rs`), the same code `polctl
//! simulate` runs: counters migrate when the candidate is first evaluated (a rollout's start,
//! or a blue-green switch), approvals when it becomes stable.

use crate::approvals::{Approval, ApprovalState};
use crate::loaded::LoadedBundle;
use polctl_rollout::counters::{CounterKey, CounterStore, LimitIdentity, MemoryCounters};
use polctl_rollout::migration::{
    approval_counts, migrate_approvals, ApprovalRow, CounterMigration, PendingApproval,
};
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// A counter store that passes everything to the server's counters and remembers what it
/// added and dropped, for the journal.
pub struct Recording<'a> {
    pub inner: &'a mut MemoryCounters,
    pub added: Vec<(CounterKey, u64)>,
    pub dropped: Vec<LimitIdentity>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a mut MemoryCounters) -> Recording<'a> {
        Recording {
            inner,
            added: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

impl CounterStore for Recording<'_> {
    fn get(&self, key: &CounterKey) -> Option<u64> {
        self.inner.get(key)
    }

    fn add(&mut self, key: &CounterKey, count: u64) {
        self.inner.add(key, count);
        self.added.push((key.clone(), count));
    }

    fn seed(&mut self, key: &CounterKey, count: u64) {
        if self.inner.get(key).is_none() {
            self.add(key, count);
        }
    }

    fn of_limit(&self, limit: &LimitIdentity) -> Vec<(CounterKey, u64)> {
        self.inner.of_limit(limit)
    }

    fn drop_limit(&mut self, limit: &LimitIdentity) {
        self.inner.drop_limit(limit);
        self.dropped.push(limit.clone());
    }

    fn expire(&mut self, now_seconds: i64) {
        self.inner.expire(now_seconds);
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// After a swap, the bundle that was stable before: counters of limits whose window or key
/// changed are seeded from its counters for the same request, while its windows still run.
pub struct SeedSource {
    pub bundle: Arc<LoadedBundle>,
    pub migration: Arc<CounterMigration>,
}

impl SeedSource {
    /// Whether a decision at `now_seconds` may still need a seed.
    pub fn active(&self, now_seconds: i64) -> bool {
        now_seconds < self.migration.seeding_until()
    }
}

/// Pending approvals migrated to the bundle becoming stable: the approvals that change, and
/// the rows of the report.
pub struct ApprovalMigration {
    pub changed: Vec<Approval>,
    pub rows: Vec<ApprovalRow>,
}

/// Decides every pending approval's request again with the bundle becoming stable (with the
/// groups already granted) and applies the row of §3.8 that fits.
pub fn migrate_pending(
    pending: &[Approval],
    to: &LoadedBundle,
    effective_request: impl Fn(&Json) -> Json,
) -> ApprovalMigration {
    let inputs: Vec<PendingApproval> = pending
        .iter()
        .map(|a| PendingApproval {
            id: a.id.clone(),
            request: effective_request(&a.request),
            rules: a.rules.clone(),
            missing: a.missing.clone(),
            granted: a.granted.clone(),
        })
        .collect();
    let rows = migrate_approvals(&to.evaluator, &inputs, to.sequence);
    let mut changed = Vec::new();
    for (approval, row) in pending.iter().zip(&rows) {
        let next = match row {
            ApprovalRow::Kept { .. } => continue,
            ApprovalRow::Regrouped {
                rules,
                missing,
                granted,
                ..
            } => Approval {
                rules: rules.clone(),
                missing: missing.clone(),
                granted: granted.clone(),
                sequence: to.sequence,
                ..approval.clone()
            },
            ApprovalRow::Resolved { reason, .. } => Approval {
                state: ApprovalState::Approved,
                missing: Vec::new(),
                reason: Some(reason.clone()),
                sequence: to.sequence,
                ..approval.clone()
            },
            ApprovalRow::Cancelled { reasons, .. } => Approval {
                state: ApprovalState::Rejected,
                reason: Some(reasons.join("; ")),
                sequence: to.sequence,
                ..approval.clone()
            },
        };
        changed.push(next);
    }
    ApprovalMigration { changed, rows }
}

/// The migration report of a swap, as the audit log and the status show it.
pub fn report(
    from: Option<&LoadedBundle>,
    to: &LoadedBundle,
    counters: Option<&CounterMigration>,
    approvals: &ApprovalMigration,
) -> Json {
    json!({
        "from_sequence": from.map(|b| b.sequence),
        "to_sequence": to.sequence,
        "counters": counters.map(|m| json!({"counts": m.counts(), "rows": m.rows})),
        "approvals": {
            "counts": approval_counts(&approvals.rows),
            "rows": approvals.rows,
        },
    })
}
