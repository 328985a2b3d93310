//! State migration on a swap (runtime.md §3.8): one test per row of the table, and 1,000
//! consecutive swaps of an identical set that never refill or lose a counter.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their fixtures

use polctl_lang::eval::{Evaluator, Outcome, Request};
use polctl_lang::{compile, SourceSet};
use polctl_rollout::counters::{
    count_allowed, limit_uses, load_counters, CounterStore, LimitUse, MemoryCounters,
};
use polctl_rollout::migration::{
    migrate_approvals, ApprovalRow, CounterMigration, CounterRow, PendingApproval,
};
use serde_json::{json, Value};

fn evaluator(policies: &str) -> Evaluator {
    let read =
        |name: &str| polctl_testsupport::read(format!("rollout/tests/fixtures/migration/{name}"));
    let sources = SourceSet::from_files([
        ("schema.pol".to_owned(), read("schema.pol")),
        ("policies.pol".to_owned(), read(policies)),
    ]);
    let set = compile(&sources).set.expect("the fixture compiles");
    Evaluator::new(set, policies).expect("plan")
}

/// 2026-12-01T10:00:00Z
const NOON_ISH: i64 = 1_796_119_200;

fn mail(agent: &str, tenant: &str) -> Value {
    json!({
        "agent": { "id": agent, "role": "support", "tenant": tenant },
        "context": { "mode": "normal" },
        "tool": "send_email",
        "args": { "to": "bob@example.com", "subject": "hi" },
        "session": "s-1",
    })
}

fn refund(amount: i64) -> Value {
    json!({
        "agent": { "id": "bot-1", "role": "billing", "tenant": "acme" },
        "context": { "mode": "normal" },
        "tool": "issue_refund",
        "args": { "order_id": "o-1", "amount": amount },
        "session": "s-1",
    })
}

/// Decides `json` with `evaluator` at `now` against the store, the way the server does:
/// counters looked up, decided, and an allow counted against `also`'s limits too.
fn decide(
    evaluator: &Evaluator,
    json: &Value,
    now: i64,
    store: &mut MemoryCounters,
    migration: Option<(&CounterMigration, &Evaluator)>,
) -> (Outcome, Vec<LimitUse>, Request) {
    let mut request = evaluator.decode(json).expect("fits");
    let uses = limit_uses(evaluator, &request, now);
    if let Some((migration, stable)) = migration {
        let stable_request = stable.decode(json).expect("fits");
        let stable_uses = limit_uses(stable, &stable_request, now);
        migration.seed(store, &uses, &stable_uses);
    }
    load_counters(&mut request, &uses, store);
    (evaluator.decide(&request).outcome, uses, request)
}

/// Sends `n` allowed mails by `agent` with stable alone.
fn send(stable: &Evaluator, store: &mut MemoryCounters, agent: &str, n: usize, now: i64) {
    for _ in 0..n {
        let (outcome, uses, _) = decide(stable, &mail(agent, "acme"), now, store, None);
        assert_eq!(outcome, Outcome::Allow);
        count_allowed(store, &[&uses]);
    }
}

#[test]
fn same_limit_is_carried_and_a_lowered_n_applies_at_once() {
    let (stable, candidate) = (evaluator("stable.pol"), evaluator("candidate.pol"));
    let mut store = MemoryCounters::default();
    send(&stable, &mut store, "bot-1", 5, NOON_ISH);
    let migration = CounterMigration::prepare(stable.set(), candidate.set(), NOON_ISH, &mut store);
    assert!(migration.rows.iter().any(|r| matches!(r,
        CounterRow::Carried { limit, max_changed: Some((10, 3)) } if limit.rule == "p.hourly_mail")));
    // 5 already sent this hour; the candidate allows 3: over the limit until the window ends.
    let (outcome, _, _) = decide(
        &candidate,
        &mail("bot-1", "acme"),
        NOON_ISH + 60,
        &mut store,
        Some((&migration, &stable)),
    );
    assert_eq!(outcome, Outcome::Deny);
    // The next hour's window is fresh.
    let (outcome, _, _) = decide(
        &candidate,
        &mail("bot-1", "acme"),
        NOON_ISH + 3_600,
        &mut store,
        Some((&migration, &stable)),
    );
    assert_eq!(outcome, Outcome::Allow);
}

#[test]
fn a_changed_key_starts_from_the_stable_count_never_from_zero() {
    let (stable, candidate) = (evaluator("stable.pol"), evaluator("candidate.pol"));
    let mut store = MemoryCounters::default();
    // 9 mails by bot-1 (acme) in stable's daily window, keyed by tenant.
    send(&stable, &mut store, "bot-1", 9, NOON_ISH);
    let migration = CounterMigration::prepare(stable.set(), candidate.set(), NOON_ISH, &mut store);
    let changed = migration.rows.iter().find_map(|r| match r {
        CounterRow::Changed { from, to } if to.rule == "p.daily_mail" => {
            Some((from.clone(), to.clone()))
        }
        _ => None,
    });
    let (from, to) = changed.expect("daily_mail is a changed limit");
    assert_eq!(from.key.as_deref(), Some("agent.tenant"));
    assert_eq!(to.key.as_deref(), Some("agent.id"));
    let (_, uses, request) = decide(
        &candidate,
        &mail("bot-1", "acme"),
        NOON_ISH + 60,
        &mut store,
        Some((&migration, &stable)),
    );
    let daily = uses
        .iter()
        .find(|u| u.counter.limit.rule == "p.daily_mail")
        .expect("matches");
    // Seeded from the 9 the stable counter of the same rule held for this request.
    assert_eq!(request.counter(daily.rule), 9);
    // A window that begins after the candidate was first evaluated starts empty (the dual
    // counting has counted everything in it).
    let next_day = NOON_ISH + 86_400;
    let (_, uses, request) = decide(
        &candidate,
        &mail("bot-1", "acme"),
        next_day,
        &mut store,
        Some((&migration, &stable)),
    );
    let daily = uses
        .iter()
        .find(|u| u.counter.limit.rule == "p.daily_mail")
        .expect("matches");
    assert_eq!(request.counter(daily.rule), 0);
}

#[test]
fn a_removed_limit_stays_until_its_window_ends_and_is_never_resurrected() {
    let (stable, candidate) = (evaluator("stable.pol"), evaluator("candidate.pol"));
    let mut store = MemoryCounters::default();
    for _ in 0..4 {
        let (outcome, uses, _) = decide(&stable, &refund(100), NOON_ISH, &mut store, None);
        assert_eq!(outcome, Outcome::Allow);
        count_allowed(&mut store, &[&uses]);
    }
    let migration = CounterMigration::prepare(stable.set(), candidate.set(), NOON_ISH, &mut store);
    let removed = migration.rows.iter().find_map(|r| match r {
        CounterRow::Removed { limit } => Some(limit.clone()),
        _ => None,
    });
    let removed = removed.expect("refund_budget was removed");
    assert_eq!(removed.rule, "p.refund_budget");
    // Kept until the window ends (a rollback within the day still sees 4)...
    assert_eq!(
        store.of_limit(&removed).iter().map(|(_, n)| n).sum::<u64>(),
        4
    );
    store.expire(NOON_ISH + 86_400);
    assert!(store.of_limit(&removed).is_empty());
    // ... and a later version that adds it again does not find old counts: re-add after a
    // store that still held them (no expiry yet).
    let mut store = MemoryCounters::default();
    for _ in 0..4 {
        let (_, uses, _) = decide(&stable, &refund(100), NOON_ISH, &mut store, None);
        count_allowed(&mut store, &[&uses]);
    }
    let _ = CounterMigration::prepare(stable.set(), candidate.set(), NOON_ISH, &mut store);
    let readded =
        CounterMigration::prepare(candidate.set(), stable.set(), NOON_ISH + 60, &mut store);
    assert!(readded
        .rows
        .iter()
        .any(|r| matches!(r, CounterRow::Added { limit } if limit.rule == "p.refund_budget")));
    let (_, uses, request) = decide(&stable, &refund(100), NOON_ISH + 120, &mut store, None);
    let budget = uses
        .iter()
        .find(|u| u.counter.limit.rule == "p.refund_budget")
        .expect("matches");
    assert_eq!(
        request.counter(budget.rule),
        0,
        "a re-added limit starts from its addition"
    );
}

#[test]
fn an_added_limit_has_counted_since_the_candidate_was_first_evaluated() {
    let (stable, candidate) = (evaluator("stable.pol"), evaluator("candidate.pol"));
    let mut store = MemoryCounters::default();
    let migration = CounterMigration::prepare(stable.set(), candidate.set(), NOON_ISH, &mut store);
    assert!(migration
        .rows
        .iter()
        .any(|r| matches!(r, CounterRow::Added { limit } if limit.rule == "p.tenant_mail")));
    // During the rollout stable enforces; each allowed mail counts against both versions.
    for _ in 0..7 {
        let (outcome, stable_uses, _) = decide(
            &stable,
            &mail("bot-2", "globex"),
            NOON_ISH + 10,
            &mut store,
            None,
        );
        let (_, candidate_uses, _) = decide(
            &candidate,
            &mail("bot-2", "globex"),
            NOON_ISH + 10,
            &mut store,
            Some((&migration, &stable)),
        );
        assert_eq!(outcome, Outcome::Allow);
        count_allowed(&mut store, &[&stable_uses, &candidate_uses]);
    }
    let (_, uses, request) = decide(
        &candidate,
        &mail("bot-9", "globex"),
        NOON_ISH + 20,
        &mut store,
        Some((&migration, &stable)),
    );
    let tenant = uses
        .iter()
        .find(|u| u.counter.limit.rule == "p.tenant_mail")
        .expect("matches");
    assert_eq!(request.counter(tenant.rule), 7);
}

fn pending(id: &str, amount: i64, stable: &Evaluator) -> PendingApproval {
    let json = refund(amount);
    let request = stable.decode(&json).expect("fits");
    let decision = stable.decide(&request);
    let rendered = stable.render(&request, &decision);
    assert_eq!(rendered.decision, Outcome::RequireApproval);
    PendingApproval {
        id: id.to_owned(),
        request: json,
        rules: rendered.rules,
        missing: rendered.approvers,
        granted: Vec::new(),
    }
}

#[test]
fn approvals_kept_resolved_cancelled_and_regrouped() {
    let (stable, candidate) = (evaluator("stable.pol"), evaluator("candidate.pol"));
    let mut regrouped = pending("a-regroup", 6_000, &stable);
    regrouped.granted = vec!["finance".to_owned()];
    let approvals = vec![
        pending("a-kept", 2_000, &stable),
        pending("a-resolved", 800, &stable),
        pending("a-cancelled", 60_000, &stable),
        regrouped,
    ];
    let rows = migrate_approvals(&candidate, &approvals, 7);
    assert_eq!(
        rows[0],
        ApprovalRow::Kept {
            id: "a-kept".to_owned()
        }
    );
    assert_eq!(
        rows[1],
        ApprovalRow::Resolved {
            id: "a-resolved".to_owned(),
            reason: "no longer requires approval (sequence 7)".to_owned()
        }
    );
    assert!(
        matches!(&rows[2], ApprovalRow::Cancelled { id, rules, reasons } if id == "a-cancelled" && rules == &["p.no_giant_refunds"] && !reasons.is_empty())
    );
    match &rows[3] {
        ApprovalRow::Regrouped {
            id,
            missing,
            granted,
            rules,
        } => {
            assert_eq!(id, "a-regroup");
            // finance already approved and is kept; security is what is missing now.
            assert_eq!(granted, &["finance"]);
            assert_eq!(missing, &["security"]);
            assert!(rules.contains(&"p.huge_refunds".to_owned()));
        }
        other => panic!("expected regrouped, got {other:?}"),
    }
}

#[test]
fn a_thousand_swaps_of_an_identical_set_never_refill_or_lose_a_counter() {
    let stable = evaluator("stable.pol");
    let mut store = MemoryCounters::default();
    let mut now = NOON_ISH - NOON_ISH % 86_400; // midnight: every swap stays in one day
    for swap in 0..1_000 {
        let migration = CounterMigration::prepare(stable.set(), stable.set(), now, &mut store);
        assert!(migration.rows.iter().all(|r| matches!(
            r,
            CounterRow::Carried {
                max_changed: None,
                ..
            }
        )));
        // One allowed mail per swap, by one of 20 agents, every 80 s (1,000 swaps in a day).
        let agent = format!("bot-{}", swap % 20);
        let (outcome, uses, request) = decide(
            &stable,
            &mail(&agent, "acme"),
            now,
            &mut store,
            Some((&migration, &stable)),
        );
        let hourly = uses
            .iter()
            .find(|u| u.counter.limit.rule == "p.hourly_mail")
            .expect("matches");
        let window = hourly.counter.window_start;
        let counted_before: u64 = store
            .of_limit(&hourly.counter.limit)
            .iter()
            .filter(|(key, _)| key.window_start == window)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            request.counter(hourly.rule),
            store.get(&hourly.counter).unwrap_or(0)
        );
        let expected_hourly = if outcome == Outcome::Allow {
            count_allowed(&mut store, &[&uses]);
            counted_before + 1
        } else {
            counted_before
        };
        let counted_after: u64 = store
            .of_limit(&hourly.counter.limit)
            .iter()
            .filter(|(key, _)| key.window_start == window)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(counted_after, expected_hourly, "swap {swap}");
        now += 80;
    }
    // The daily tenant counter holds every allowed mail of the day: none lost, none added.
    let (_, uses, request) = decide(&stable, &mail("bot-0", "acme"), now, &mut store, None);
    let daily = uses
        .iter()
        .find(|u| u.counter.limit.rule == "p.daily_mail")
        .expect("matches");
    assert_eq!(
        request.counter(daily.rule),
        100,
        "the tenant's 100 a day, reached and held"
    );
}
