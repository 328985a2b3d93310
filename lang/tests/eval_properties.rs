//! Property tests of the evaluator: it never panics on any request, and decisions do not depend
//! on how the policies are spread over files or in which order the files come.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

mod common;

use common::{read_tree, workspace_dir};
use polctl_lang::eval::generate::{request_to_json, RequestGenerator, Rng};
use polctl_lang::eval::{DecisionJson, Evaluator};
use polctl_lang::{compile, SourceSet};
use proptest::prelude::*;
use serde_json::{json, Value};

fn evaluator(files: Vec<(String, String)>) -> Evaluator {
    let compilation = compile(&SourceSet::from_files(files));
    let set = compilation.set.expect("the set compiles");
    Evaluator::new(set, "same").expect("plan")
}

fn example() -> Vec<(String, String)> {
    read_tree(&workspace_dir().join("examples/support-fleet"))
}

/// The example with every top-level item in a file of its own, named so that the files sort in
/// a shuffled order.
fn split_and_shuffled(files: &[(String, String)], seed: u64) -> Vec<(String, String)> {
    let mut items = Vec::new();
    for (_, text) in files {
        // Top-level items start at column 0 with `schema`, `policy` or `let`.
        let mut current = String::new();
        for line in text.lines() {
            let starts_item = ["schema ", "policy ", "let "]
                .iter()
                .any(|k| line.starts_with(k));
            if starts_item
                && current.lines().any(|l| {
                    ["schema ", "policy ", "let "]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
            {
                items.push(std::mem::take(&mut current));
            }
            current.push_str(line);
            current.push('\n');
        }
        items.push(current);
    }
    let mut rng = Rng::new(seed);
    let mut named: Vec<(String, String)> = items
        .into_iter()
        .map(|text| (format!("{:016x}.pol", rng.next_u64()), text))
        .collect();
    named.sort();
    named
}

fn merged(files: &[(String, String)]) -> Vec<(String, String)> {
    let text: String = files.iter().rev().map(|(_, t)| format!("{t}\n")).collect();
    vec![("all.pol".to_owned(), text)]
}

/// The example's evaluator, compiled once for all property cases.
fn shared_example() -> &'static Evaluator {
    static EXAMPLE: std::sync::OnceLock<Evaluator> = std::sync::OnceLock::new();
    EXAMPLE.get_or_init(|| evaluator(example()))
}

fn decide(evaluator: &Evaluator, request: &Value) -> DecisionJson {
    let decoded = evaluator
        .decode(request)
        .expect("generated requests fit the schema");
    evaluator.render(&decoded, &evaluator.decide(&decoded))
}

#[test]
fn decisions_do_not_depend_on_file_layout() {
    let files = example();
    let original = evaluator(files.clone());
    let layouts = [
        merged(&files),
        split_and_shuffled(&files, 7),
        split_and_shuffled(&files, 99),
    ];
    let others: Vec<Evaluator> = layouts.into_iter().map(evaluator).collect();
    let mut generator = RequestGenerator::new(original.set(), 42);
    let mut by_outcome = std::collections::HashMap::new();
    for _ in 0..5_000 {
        let request = request_to_json(original.set(), &generator.next_request());
        let expected = decide(&original, &request);
        *by_outcome.entry(expected.decision).or_insert(0) += 1;
        for other in &others {
            assert_eq!(decide(other, &request), expected, "request: {request}");
        }
    }
    // The generated requests exercise every decision.
    assert_eq!(by_outcome.len(), 3, "{by_outcome:?}");
}

#[test]
fn generated_requests_round_trip_through_json() {
    let original = evaluator(example());
    let mut generator = RequestGenerator::new(original.set(), 3);
    for _ in 0..2_000 {
        let request = generator.next_request();
        let json = request_to_json(original.set(), &request);
        assert_eq!(original.decode(&json).expect("decodes"), request);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_@. ]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "send_email",
            "issue_refund",
            "acme",
            "support",
            "eu",
            "eur",
            "production"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "agent",
                    "context",
                    "tool",
                    "args",
                    "session",
                    "approvals",
                    "counters",
                    "id",
                    "role",
                    "tenant",
                    "tier",
                    "mode",
                    "region",
                    "hour",
                    "to",
                    "amount",
                    "currency",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Arbitrary JSON is either rejected with an error or decided; nothing panics.
    #[test]
    fn arbitrary_requests_never_panic(request in arbitrary_json()) {
        let evaluator = shared_example();
        if let Ok(decoded) = evaluator.decode(&request) {
            evaluator.explain(&decoded);
            evaluator.render(&decoded, &evaluator.decide(&decoded));
        }
    }

    /// Generated requests with mutated strings are always decided.
    #[test]
    fn mutated_generated_requests_are_decided(seed in any::<u64>(), text in "\\PC{0,20}") {
        let evaluator = shared_example();
        let mut generator = RequestGenerator::new(evaluator.set(), seed);
        let mut request = request_to_json(evaluator.set(), &generator.next_request());
        if let Some(args) = request["args"].as_object_mut() {
            for value in args.values_mut() {
                if value.is_string() {
                    *value = json!(text.clone());
                }
            }
        }
        let decoded = evaluator.decode(&request).expect("strings fit any string argument");
        evaluator.render(&decoded, &evaluator.decide(&decoded));
        evaluator.explain(&decoded);
    }
}

/// Any JSON value, with keys and strings that need escapes and repeated keys.
fn any_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (-1e9f64..1e9).prop_map(|f| f.to_string()),
        "[a-z\"\\\\\u{e9}\u{1f600}\n ]{0,6}".prop_map(|s| json!(s).to_string()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec(("[ab\"\u{e9}]{0,2}", inner), 0..5).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", json!(k)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The borrowed tree that hot paths decode from reads any text exactly as `Value` does,
    /// so deciding from text and from a `Value` cannot differ.
    #[test]
    fn borrowed_json_reads_like_value(text in any_json()) {
        use polctl_lang::eval::json::JsonRef;
        let value: Value = serde_json::from_str(&text).expect("valid JSON");
        let borrowed = JsonRef::parse(&text).expect("valid JSON");
        prop_assert_eq!(borrowed.to_value(), value.clone());
        prop_assert_eq!(JsonRef::from_value(&value).to_value(), value);
    }
}

/// Decoding from text (the traffic path) and from a `Value` (every other path) give the same
/// request or the same error, also for requests that break the schema in the ways text allows
/// and a `Value` hides: repeated keys, undeclared keys, wrong types.
#[test]
fn decoding_text_and_value_agree() {
    use polctl_lang::eval::json::JsonRef;
    let evaluator = evaluator(example());
    let mut generator = RequestGenerator::new(evaluator.set(), 11);
    let mut rng = Rng::new(5);
    let mut errors = 0;
    for _ in 0..3000 {
        let request = generator.next_request();
        let mut text = request_to_json(evaluator.set(), &request).to_string();
        // Mutations at the text level: the first `{` of a nested object gets a member.
        let nested = ["\"agent\":{", "\"args\":{", "\"context\":{"][rng.below(3)];
        let inserted = [
            "\"zzz\":1,",
            "\"aaa\":true,\"bbb\":2,",
            "\"tenant\":7,",
            "\"role\":\"nobody\",",
            "\"tier\":null,",
        ][rng.below(5)];
        match rng.below(4) {
            0 => {}
            1 => text = text.replacen(nested, &format!("{nested}{inserted}"), 1),
            2 => text = text.replacen('{', "{\"time\":5,\"session\":\"s\",", 1),
            _ => text = text.replacen('{', "{\"extra\":1,\"counters\":{\"x\":1},", 1),
        }
        let value: Value = serde_json::from_str(&text).expect("still JSON");
        let from_value = evaluator.decode(&value);
        let from_text = evaluator.decode_ref(&JsonRef::parse(&text).expect("still JSON"));
        errors += usize::from(from_value.is_err());
        assert_eq!(from_text, from_value, "{text}");
    }
    assert!(errors > 500, "the mutations must break requests: {errors}");
}
