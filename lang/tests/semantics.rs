//! Unit tests for every clause of the decision semantics (language.md §3), through the
//! evaluator.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

use polctl_lang::eval::{Evaluator, Outcome};
use polctl_lang::{compile, SourceSet};
use serde_json::{json, Value};

/// A fixture of `tests/fixtures/semantics` (the policies of one test).
fn fixture(name: &str) -> String {
    polctl_testsupport::read(format!("lang/tests/fixtures/semantics/{name}.pol"))
}

/// The evaluator of `policies` over the suite's schema (`fixtures/semantics/schema.pol`).
fn evaluator(policies: &str) -> Evaluator {
    let sources = SourceSet::from_files([
        ("schema.pol".to_owned(), fixture("schema")),
        ("policies.pol".to_owned(), policies.to_owned()),
    ]);
    let compilation = compile(&sources);
    let messages: Vec<_> = compilation
        .diagnostics
        .iter()
        .map(|d| d.message.clone())
        .collect();
    let set = compilation
        .set
        .unwrap_or_else(|| panic!("does not compile: {messages:?}"));
    Evaluator::new(set, "test").expect("plan")
}

fn request(tool: &str, args: Value) -> Value {
    json!({
        "agent": { "id": "bot-1", "role": "support", "tenant": "acme", "tier": "pro" },
        "context": { "mode": "normal", "hour": 10 },
        "tool": tool,
        "args": args,
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

/// `(decision, rules, approvers)` for a request.
fn decide(evaluator: &Evaluator, request: &Value) -> (Outcome, Vec<String>, Vec<String>) {
    let decoded = evaluator.decode(request).expect("request fits the schema");
    let json = evaluator.render(&decoded, &evaluator.decide(&decoded));
    (json.decision, json.rules, json.approvers)
}

const MAIL: fn() -> Value = || json!({ "to": "bob@acme.example", "subject": "hi" });

#[test]
fn default_deny_when_nothing_allows() {
    let e = evaluator(&fixture("default_deny_when_nothing_allows"));
    let (outcome, rules, _) = decide(&e, &request("send_email", MAIL()));
    assert_eq!(outcome, Outcome::Deny);
    assert_eq!(rules, ["default"]);
}

#[test]
fn deny_beats_allow_and_reports_every_matching_deny() {
    let e = evaluator(&fixture("deny_beats_allow_and_reports_every_matching_deny"));
    let (outcome, rules, _) = decide(&e, &request("send_email", MAIL()));
    assert_eq!(outcome, Outcome::Deny);
    assert_eq!(rules, ["p.d1", "p.d2"]);
}

#[test]
fn deny_beats_approval() {
    let e = evaluator(&fixture("deny_beats_approval"));
    let (outcome, rules, _) = decide(
        &e,
        &request("refund", json!({ "order_id": "o", "amount": 50 })),
    );
    assert_eq!((outcome, rules), (Outcome::Deny, vec!["p.d".to_owned()]));
}

#[test]
fn approval_then_allow() {
    let e = evaluator(&fixture("approval_then_allow"));
    let big = request("refund", json!({ "order_id": "o", "amount": 900 }));
    let (outcome, rules, approvers) = decide(&e, &big);
    assert_eq!(outcome, Outcome::RequireApproval);
    assert_eq!(rules, ["p.big"]);
    assert_eq!(approvers, ["finance", "security"]);
    // One group approved: the other is still missing.
    let (outcome, _, approvers) = decide(&e, &with(big.clone(), "approvals", json!(["finance"])));
    assert_eq!(
        (outcome, approvers),
        (Outcome::RequireApproval, vec!["security".to_owned()])
    );
    // Both approved: the allow decides.
    let (outcome, rules, _) = decide(&e, &with(big, "approvals", json!(["security", "finance"])));
    assert_eq!((outcome, rules), (Outcome::Allow, vec!["p.a".to_owned()]));
    // Below the threshold no approval is needed.
    let (outcome, _, _) = decide(
        &e,
        &request("refund", json!({ "order_id": "o", "amount": 100 })),
    );
    assert_eq!(outcome, Outcome::Allow);
}

#[test]
fn approval_alone_does_not_allow() {
    let e = evaluator(&fixture("approval_alone_does_not_allow"));
    let approved = with(
        request("refund", json!({ "order_id": "o", "amount": 900 })),
        "approvals",
        json!(["finance"]),
    );
    let (outcome, rules, _) = decide(&e, &approved);
    assert_eq!(
        (outcome, rules),
        (Outcome::Deny, vec!["default".to_owned()])
    );
}

#[test]
fn limits_admit_n_actions_per_window() {
    let e = evaluator(&fixture("limits_admit_n_actions_per_window"));
    let at = |n: u64| {
        with(
            request("send_email", MAIL()),
            "counters",
            json!({ "p.budget": n }),
        )
    };
    assert_eq!(
        decide(&e, &at(99)).0,
        Outcome::Allow,
        "the 100th action is admitted"
    );
    let (outcome, rules, _) = decide(&e, &at(100));
    assert_eq!(
        (outcome, rules),
        (Outcome::Deny, vec!["p.budget".to_owned()])
    );
    assert_eq!(
        decide(&e, &request("send_email", MAIL())).0,
        Outcome::Allow,
        "no counter is 0"
    );
}

#[test]
fn limits_only_bind_allowed_actions_and_their_conditions() {
    let e = evaluator(&fixture("limit_with_condition"));
    let full = json!({ "p.budget": 5 });
    let bulk = with(
        request("send_email", json!({ "to": "b", "subject": "bulk" })),
        "counters",
        full.clone(),
    );
    let other = with(request("send_email", MAIL()), "counters", full);
    assert_eq!(decide(&e, &bulk).0, Outcome::Deny);
    assert_eq!(decide(&e, &other).0, Outcome::Allow);
    // Without an allow the request is a default deny, not a limit deny.
    let e = evaluator(&fixture("limit_without_allow"));
    assert_eq!(decide(&e, &request("send_email", MAIL())).1, ["default"]);
}

#[test]
fn scopes_by_tenant_agent_and_role() {
    let e = evaluator(&fixture("scopes_by_tenant_agent_and_role"));
    let kb = request("search_kb", json!({ "query": "q" }));
    assert_eq!(decide(&e, &kb).0, Outcome::Allow);
    let mut other_tenant = kb.clone();
    other_tenant["agent"]["tenant"] = json!("globex");
    assert_eq!(decide(&e, &other_tenant).0, Outcome::Deny);

    let refund = request("refund", json!({ "order_id": "o", "amount": 1 }));
    assert_eq!(decide(&e, &refund).0, Outcome::Deny);
    let mut by_agent = refund.clone();
    by_agent["agent"]["id"] = json!("bot-9");
    assert_eq!(decide(&e, &by_agent).0, Outcome::Allow);
    let mut by_role = refund;
    by_role["agent"]["role"] = json!("ops");
    assert_eq!(decide(&e, &by_role).0, Outcome::Allow);
}

#[test]
fn scopes_joined_with_and() {
    let e = evaluator(&fixture("scopes_joined_with_and"));
    let kb = request("search_kb", json!({ "query": "q" }));
    let case = |tenant: &str, role: &str, id: &str| {
        let mut request = kb.clone();
        request["agent"]["tenant"] = json!(tenant);
        request["agent"]["role"] = json!(role);
        request["agent"]["id"] = json!(id);
        decide(&e, &request).0
    };
    assert_eq!(case("acme", "support", "bot-1"), Outcome::Allow);
    assert_eq!(
        case("acme", "ops", "bot-1"),
        Outcome::Deny,
        "only one part holds"
    );
    assert_eq!(
        case("globex", "support", "bot-1"),
        Outcome::Deny,
        "only one part holds"
    );
    assert_eq!(
        case("globex", "ops", "bot-9"),
        Outcome::Allow,
        "the other term"
    );
}

#[test]
fn length_counts_characters() {
    let e = evaluator(&fixture("length_counts_characters"));
    let query = |q: &str| decide(&e, &request("search_kb", json!({ "query": q }))).0;
    assert_eq!(query(""), Outcome::Allow);
    assert_eq!(query("abc"), Outcome::Allow);
    assert_eq!(query("abcd"), Outcome::Deny);
    // Characters, not bytes: three 3-byte characters and one 4-byte one are short enough.
    assert_eq!(query("日本語"), Outcome::Allow);
    assert_eq!(query("😀"), Outcome::Allow);
    assert_eq!(query("日本語😀"), Outcome::Deny);
}

#[test]
fn optional_arguments_and_has() {
    let e = evaluator(&fixture("optional_arguments_and_has"));
    assert_eq!(
        decide(&e, &request("send_email", MAIL())).0,
        Outcome::Allow,
        "missing cc: `has` is false"
    );
    let evil = json!({ "to": "b@acme.example", "subject": "s", "cc": "x@evil.example" });
    assert_eq!(decide(&e, &request("send_email", evil)).0, Outcome::Deny);
    let fine = json!({ "to": "b@acme.example", "subject": "s", "cc": null });
    assert_eq!(
        decide(&e, &request("send_email", fine)).0,
        Outcome::Allow,
        "null is absent"
    );
}

#[test]
fn obligations_of_every_matching_allow_are_merged() {
    let e = evaluator(&fixture("obligations_of_every_matching_allow_are_merged"));
    let decoded = e
        .decode(&request("search_kb", json!({ "query": "q" })))
        .expect("fits");
    let json = e.render(&decoded, &e.decide(&decoded));
    let names: Vec<_> = json
        .obligations
        .iter()
        .map(|o| (o.rule.as_str(), o.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [("p.a", "disclaimer"), ("p.b", "audit"), ("p.b", "banner")]
    );
    assert_eq!(json.rules, ["p.a", "p.b"]);
}

#[test]
fn when_and_unless() {
    let e = evaluator(&fixture("when_and_unless"));
    assert_eq!(decide(&e, &request("send_email", MAIL())).0, Outcome::Allow);
    let spam = json!({ "to": "b@acme.example", "subject": "spam" });
    assert_eq!(decide(&e, &request("send_email", spam)).0, Outcome::Deny);
    let evil = json!({ "to": "e@evil.example", "subject": "hi" });
    assert_eq!(decide(&e, &request("send_email", evil)).0, Outcome::Deny);
}

#[test]
fn every_operator_evaluates_as_documented() {
    let e = evaluator(&fixture("every_operator_evaluates_as_documented"));
    let share = |list: Value| request("share_doc", json!({ "shared_with": list }));
    assert_eq!(
        decide(&e, &share(json!([]))).0,
        Outcome::Allow,
        "every over an empty list is true"
    );
    assert_eq!(
        decide(&e, &share(json!(["a@acme.example", "b@acme.example"]))).0,
        Outcome::Allow
    );
    assert_eq!(
        decide(
            &e,
            &share(json!([
                "a@acme.example",
                "b@acme.example",
                "c@acme.example"
            ]))
        )
        .0,
        Outcome::Deny
    );
    assert_eq!(
        decide(&e, &share(json!(["a@acme.example", "x@gmail.com"]))).1,
        ["p.some_external"]
    );

    let transfer = |amount: Value| request("transfer", json!({ "amount": amount }));
    assert_eq!(decide(&e, &transfer(json!(99.99))).0, Outcome::Allow);
    assert_eq!(decide(&e, &transfer(json!(99.991))).0, Outcome::Deny);
    assert_eq!(
        decide(&e, &transfer(json!(5))).0,
        Outcome::Allow,
        "an integer for a decimal"
    );

    let mail =
        |to: &str, subject: &str| request("send_email", json!({ "to": to, "subject": subject }));
    assert_eq!(
        decide(&e, &mail("bob@partner.example", "hi")).0,
        Outcome::Allow
    );
    assert_eq!(
        decide(&e, &mail("bob@partner.example", "spam")).0,
        Outcome::Deny
    );
    assert_eq!(
        decide(&e, &mail("Bob@partner.example", "hi")).0,
        Outcome::Deny,
        "regex is case-sensitive"
    );

    let refund =
        |id: &str, amount: i64| request("refund", json!({ "order_id": id, "amount": amount }));
    assert_eq!(decide(&e, &refund("o-1", 2)).0, Outcome::Allow);
    assert_eq!(decide(&e, &refund("o-1", 4)).0, Outcome::Deny);
    assert_eq!(decide(&e, &refund("o-1", 1000)).0, Outcome::Allow);
    assert_eq!(decide(&e, &refund("123", 2)).1, ["p.digits"]);
    // `\d` is ASCII: Arabic-Indic digits are not digits in policies.
    assert_eq!(decide(&e, &refund("\u{0661}\u{0662}", 2)).0, Outcome::Allow);
    let mut read_only = refund("o-1", 2);
    read_only["context"]["mode"] = json!("read_only");
    assert_eq!(decide(&e, &read_only).1, ["p.kinds"]);
}

#[test]
fn requests_that_do_not_fit_the_schema_get_precise_errors() {
    let e = evaluator(&fixture(
        "requests_that_do_not_fit_the_schema_get_precise_errors",
    ));
    let cases = [
        (
            request("serch_kb", json!({ "query": "q" })),
            "`tool`: unknown tool `serch_kb` (did you mean `search_kb`?)",
        ),
        (
            request("refund", json!({ "order_id": "o" })),
            "`args.amount`: is required but missing",
        ),
        (
            request("refund", json!({ "order_id": "o", "amount": "5" })),
            "`args.amount`: expected an integer, found \"5\"",
        ),
        (
            request("refund", json!({ "order_id": "o", "amount": 2000000 })),
            "`args.amount`: 2000000 is outside the declared range 0..1000000",
        ),
        (
            request("transfer", json!({ "amount": 1.1234567 })),
            "`args.amount`: 1.1234567 is not a decimal with at most 6 fractional digits",
        ),
        (
            request("search_kb", json!({ "query": "q", "qeury": "x" })),
            "`args.qeury`: not declared in the schema (did you mean `query`?)",
        ),
        (
            with(
                request("search_kb", json!({ "query": "q" })),
                "approvals",
                json!(["finanse"]),
            ),
            "`approvals[0]`: unknown approver group `finanse` (did you mean `finance`?)",
        ),
        (
            with(
                request("search_kb", json!({ "query": "q" })),
                "counters",
                json!({ "p.kb": 1 }),
            ),
            "`counters.p.kb`: is not a `limit` rule, so it has no counter",
        ),
        (
            json!({ "tool": "search_kb", "args": { "query": "q" } }),
            "`agent.id`: is required but missing",
        ),
    ];
    for (request, expected) in cases {
        let error = e.decode(&request).expect_err("does not fit");
        assert_eq!(error.to_string(), expected);
    }
    let mut bad_enum = request("search_kb", json!({ "query": "q" }));
    bad_enum["context"]["mode"] = json!("readonly");
    let error = e.decode(&bad_enum).expect_err("bad enum").to_string();
    assert!(
        error.starts_with("`context.mode`: `readonly` is not one of normal, read_only"),
        "{error}"
    );
}

#[test]
fn explanations_name_the_first_failing_condition() {
    let e = evaluator(&fixture("explanations_name_the_first_failing_condition"));
    let decoded = e
        .decode(&request(
            "refund",
            json!({ "order_id": "o", "amount": 500 }),
        ))
        .expect("fits");
    let traces = e.explain(&decoded);
    let described: Vec<String> = traces
        .iter()
        .map(|t| format!("{}: {:?}", e.set().rules[t.rule].id, t.status))
        .collect();
    assert_eq!(
        described,
        [
            "p.a: WhenFailed(\"args.amount < 100\")",
            "p.d: UnlessHeld(\"agent.tier == pro\")",
        ]
    );
}
