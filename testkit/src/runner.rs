//! Runs test files against an evaluator, in parallel.

use crate::adversarial::{variants, Variant};
use crate::file::{Case, TestFile};
use polctl_lang::compile_condition;
use polctl_lang::eval::{DecisionJson, Evaluator, Outcome as DecisionOutcome};
use polctl_lang::ir::{Cond, Path, PolicySet, Value as IrValue};
use polctl_solver::edges::{edge_values, Target as EdgeTarget};
use polctl_solver::property::{prove, Claim, Verdict};
use rayon::prelude::*;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only entries whose name contains this text.
    pub filter: Option<String>,
    /// Time limit of one property proof (milliseconds); 0 means the default, 10,000.
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Not checked (kept for report formats; every property is now proven or failed).
    NotYetChecked(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Case,
    Adversarial,
    Property,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Case => "case",
            Kind::Adversarial => "adversarial",
            Kind::Property => "property",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: String,
    pub line: usize,
    pub kind: Kind,
    pub name: String,
    pub outcome: Outcome,
    /// For a case: the decision it got.
    pub decision: Option<DecisionJson>,
    /// For an adversarial entry: how many variants were decided.
    pub variants: usize,
    /// For an adversarial entry: every variant that changed the decision (all of them; the
    /// human message shows the first ten).
    pub failing_variants: Vec<FailingVariant>,
    /// How long the entry took to run.
    pub seconds: f64,
}

/// One adversarial variant that did not keep its case's decision.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailingVariant {
    /// The mutated argument: `args.to`, `args.to[1]`.
    pub arg: String,
    pub value: String,
    /// How the value was made: "policy literal \"@acme.example\" appended", ...
    pub how: String,
    /// The decision it got instead, or `null` when it did not fit the schema.
    pub decision: Option<String>,
    pub rules: Vec<String>,
    /// Why it did not fit the schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    /// Sorted by file and line.
    pub results: Vec<CaseResult>,
    /// Rules (indexes) that decided at least one case.
    pub covered: BTreeSet<usize>,
}

impl RunReport {
    pub fn count(&self, predicate: impl Fn(&Outcome) -> bool) -> usize {
        self.results
            .iter()
            .filter(|r| predicate(&r.outcome))
            .count()
    }

    pub fn passed(&self) -> usize {
        self.count(|o| *o == Outcome::Passed)
    }

    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    pub fn not_yet_checked(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotYetChecked(_)))
    }
}

fn table_json(table: &toml::Table) -> Value {
    serde_json::to_value(table).unwrap_or(Value::Null)
}

/// `defaults` overlaid with `overrides`, key by key.
fn merged(defaults: Option<&toml::Table>, overrides: Option<&toml::Table>) -> Value {
    let mut object = Map::new();
    for table in [defaults, overrides].into_iter().flatten() {
        if let Value::Object(entries) = table_json(table) {
            object.extend(entries);
        }
    }
    Value::Object(object)
}

/// The request a case describes, in the JSON shape of language.md §1.
pub fn case_request(file: &TestFile, case: &Case) -> Value {
    let raw = &case.raw;
    let defaults = &file.defaults;
    let mut request = Map::new();
    request.insert(
        "agent".into(),
        merged(defaults.agent.as_ref(), raw.agent.as_ref()),
    );
    request.insert(
        "context".into(),
        merged(defaults.context.as_ref(), raw.context.as_ref()),
    );
    request.insert("tool".into(), Value::String(raw.tool.clone()));
    request.insert("args".into(), table_json(&raw.args));
    if let Some(session) = raw.session.as_ref().or(defaults.session.as_ref()) {
        request.insert("session".into(), Value::String(session.clone()));
    }
    if let Some(approvals) = raw.approvals.as_ref().or(defaults.approvals.as_ref()) {
        request.insert("approvals".into(), serde_json::json!(approvals));
    }
    if let Some(counters) = &raw.counters {
        request.insert("counters".into(), table_json(counters));
    }
    Value::Object(request)
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn describe(decision: &DecisionJson) -> String {
    let mut text = format!(
        "{} by {}",
        decision.decision.as_str(),
        decision.rules.join(", ")
    );
    if !decision.approvers.is_empty() {
        text.push_str(&format!(" (waiting for {})", decision.approvers.join(", ")));
    }
    text
}

fn run_case(evaluator: &Evaluator, file: &TestFile, case: &Case) -> (CaseResult, Vec<usize>) {
    let raw = &case.raw;
    let mut result = CaseResult {
        file: file.path.clone(),
        line: case.line,
        kind: Kind::Case,
        name: raw.name.clone(),
        outcome: Outcome::Passed,
        decision: None,
        variants: 0,
        failing_variants: Vec::new(),
        seconds: 0.0,
    };
    let request = match evaluator.decode(&case_request(file, case)) {
        Ok(request) => request,
        Err(error) => {
            result.outcome =
                Outcome::Failed(format!("the request does not fit the schema: {error}"));
            return (result, Vec::new());
        }
    };
    let decision = evaluator.decide(&request);
    let json = evaluator.render(&request, &decision);
    let mut problems = Vec::new();
    if json.decision.as_str() != raw.expect {
        problems.push(format!("expected {}, got {}", raw.expect, describe(&json)));
    }
    if let Some(expected) = &raw.expect_rules {
        if sorted(expected.clone()) != sorted(json.rules.clone()) {
            problems.push(format!(
                "expected rules [{}], got [{}]",
                expected.join(", "),
                json.rules.join(", ")
            ));
        }
    }
    if let Some(expected) = &raw.expect_approvers {
        if sorted(expected.clone()) != sorted(json.approvers.clone()) {
            problems.push(format!(
                "expected approvers [{}], got [{}]",
                expected.join(", "),
                json.approvers.join(", ")
            ));
        }
    }
    if let Some(expected) = &raw.expect_obligations {
        let got: Vec<String> = json.obligations.iter().map(|o| o.name.clone()).collect();
        if sorted(expected.clone()) != sorted(got.clone()) {
            problems.push(format!(
                "expected obligations [{}], got [{}]",
                expected.join(", "),
                got.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        result.outcome = Outcome::Failed(problems.join("\n"));
    }
    result.decision = Some(json);
    (result, decision.rules)
}

/// String literals the policy compares `args.<arg>` of `tool` with.
fn literals_for(set: &PolicySet, tool: usize, arg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut collect = |path: &Path, leaf: &Cond| {
        if !matches!(path, Path::Arg(name) if name == arg) {
            return;
        }
        match leaf {
            Cond::Compare {
                value: IrValue::Str(s),
                ..
            } => out.push(s.clone()),
            Cond::In { values, .. } => out.extend(values.iter().filter_map(|v| match v {
                IrValue::Str(s) => Some(s.clone()),
                _ => None,
            })),
            Cond::Text { op, pattern, .. } if *op != polctl_lang::ir::TextOp::Matches => {
                out.push(pattern.clone())
            }
            Cond::ContainsAny { needles, .. } => out.extend(needles.iter().cloned()),
            Cond::ListContains { value, .. } => out.push(value.clone()),
            Cond::ListContainsAny { values, .. } => out.extend(values.iter().cloned()),
            _ => {}
        }
    };
    for rule in set.rules_naming(tool).map(|r| &set.rules[r]) {
        for cond in rule.when.iter().chain(rule.unless.iter()) {
            cond.for_each_leaf(&mut collect);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn run_adversarial(
    evaluator: &Evaluator,
    file: &TestFile,
    entry: &crate::file::Adversarial,
    timeout_ms: u32,
) -> CaseResult {
    let mut result = CaseResult {
        file: file.path.clone(),
        line: entry.line,
        kind: Kind::Adversarial,
        name: format!("adversarial variants of `{}`", entry.raw.from),
        outcome: Outcome::Passed,
        decision: None,
        variants: 0,
        failing_variants: Vec::new(),
        seconds: 0.0,
    };
    let Some(case) = file.cases.iter().find(|c| c.raw.name == entry.raw.from) else {
        result.outcome = Outcome::Failed(format!("no case named `{}`", entry.raw.from));
        return result;
    };
    let expect = entry
        .raw
        .expect
        .clone()
        .unwrap_or_else(|| case.raw.expect.clone());
    let base = case_request(file, case);
    let set = evaluator.set();
    let Some(tool) = set.schema.tool_index(&case.raw.tool) else {
        result.outcome = Outcome::Failed(format!("unknown tool `{}`", case.raw.tool));
        return result;
    };
    let mut failures = Vec::new();
    let args = base["args"].as_object().cloned().unwrap_or_default();
    let mut mutated_any = false;
    for (name, value) in &args {
        if entry
            .raw
            .args
            .as_ref()
            .is_some_and(|only| !only.contains(name))
        {
            continue;
        }
        // (path shown, JSON pointer into the request, the original string)
        let targets: Vec<(String, Vec<usize>, String)> = match value {
            Value::String(s) => vec![(format!("args.{name}"), Vec::new(), s.clone())],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    item.as_str()
                        .map(|s| (format!("args.{name}[{i}]"), vec![i], s.to_owned()))
                })
                .collect(),
            _ => Vec::new(),
        };
        // Only string arguments (not enums) are mutated.
        let is_string = set.schema.tools[tool].arg(name).is_some_and(|a| {
            matches!(
                a.ty,
                polctl_lang::ir::Type::String | polctl_lang::ir::Type::StringList
            )
        });
        if !is_string {
            continue;
        }
        let literals = literals_for(set, tool, name);
        let decoded = evaluator.decode(&base).ok();
        for (shown, index, original) in targets {
            mutated_any = true;
            let mut all = variants(&original, &literals);
            // Values at the edges of the rules' conditions, found by the solver.
            if let (Some(request), Some(keep)) = (&decoded, DecisionOutcome::parse(&expect)) {
                let target = EdgeTarget {
                    arg: name,
                    element: index.first().copied(),
                    keep,
                };
                for edge in edge_values(evaluator, request, target, timeout_ms) {
                    if edge.value != original && !all.iter().any(|v| v.value == edge.value) {
                        all.push(Variant {
                            how: edge.how,
                            value: edge.value,
                        });
                    }
                }
            }
            for variant in all {
                let mut request = base.clone();
                match index.first() {
                    None => request["args"][name] = Value::String(variant.value.clone()),
                    Some(&i) => request["args"][name][i] = Value::String(variant.value.clone()),
                }
                result.variants += 1;
                let decided = evaluator
                    .decode(&request)
                    .map(|r| evaluator.render(&r, &evaluator.decide(&r)));
                match decided {
                    Ok(json) if json.decision.as_str() == expect => {}
                    Ok(json) => {
                        failures.push(format!(
                            "{shown} = {:?} ({}): {}",
                            variant.value,
                            variant.how,
                            describe(&json)
                        ));
                        result.failing_variants.push(FailingVariant {
                            arg: shown.clone(),
                            value: variant.value.clone(),
                            how: variant.how.clone(),
                            decision: Some(json.decision.as_str().to_owned()),
                            rules: json.rules.clone(),
                            error: None,
                        });
                    }
                    Err(error) => {
                        failures.push(format!(
                            "{shown} = {:?} ({}): {error}",
                            variant.value, variant.how
                        ));
                        result.failing_variants.push(FailingVariant {
                            arg: shown.clone(),
                            value: variant.value.clone(),
                            how: variant.how.clone(),
                            decision: None,
                            rules: Vec::new(),
                            error: Some(error.to_string()),
                        });
                    }
                }
            }
        }
    }
    if !mutated_any {
        result.outcome = Outcome::Failed(format!(
            "case `{}` has no string argument to mutate",
            case.raw.name
        ));
    } else if !failures.is_empty() {
        let shown: Vec<String> = failures.iter().take(10).cloned().collect();
        let more = failures.len().saturating_sub(10);
        result.outcome = Outcome::Failed(format!(
            "{} of {} variants change the decision from {expect}:\n{}{}",
            failures.len(),
            result.variants,
            shown.join("\n"),
            if more > 0 {
                format!("\n... and {more} more")
            } else {
                String::new()
            }
        ));
    }
    result
}

fn run_property(
    evaluator: &Evaluator,
    file: &TestFile,
    property: &crate::file::Property,
    timeout_ms: u32,
) -> CaseResult {
    let outcome = match compile_condition(evaluator.set(), &property.raw.forall) {
        Ok(forall) => prove_property(evaluator, &forall, property, timeout_ms),
        Err(diagnostics) => Outcome::Failed(format!(
            "`forall` is not a valid condition: {}",
            diagnostics
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )),
    };
    CaseResult {
        file: file.path.clone(),
        line: property.line,
        kind: Kind::Property,
        name: property.raw.name.clone(),
        outcome,
        decision: None,
        variants: 0,
        failing_variants: Vec::new(),
        seconds: 0.0,
    }
}

/// Asks the solver; a counterexample or a timeout fails the property.
fn prove_property(
    evaluator: &Evaluator,
    forall: &Cond,
    property: &crate::file::Property,
    timeout_ms: u32,
) -> Outcome {
    let parse = |text: &Option<String>| text.as_deref().and_then(DecisionOutcome::parse);
    let claim = match (parse(&property.raw.never), parse(&property.raw.always)) {
        (Some(never), _) => Claim::Never(never),
        (_, Some(always)) => Claim::Always(always),
        // The file loader accepts only one valid decision.
        _ => return Outcome::Failed("needs exactly one of `never` and `always`".to_owned()),
    };
    match prove(evaluator.set(), evaluator, forall, claim, timeout_ms) {
        Verdict::Proven => Outcome::Passed,
        Verdict::Counterexample { request, decision } => Outcome::Failed(format!(
            "counterexample: this request satisfies `forall` and is decided {}:\n{}",
            decision.as_str(),
            serde_json::to_string_pretty(&request).unwrap_or_default()
        )),
        Verdict::Unknown(reason) => Outcome::Failed(format!(
            "not proven: the solver gave up after {timeout_ms} ms ({reason}); narrow `forall`, or raise --timeout-ms"
        )),
        Verdict::Internal(message) => Outcome::Failed(format!(
            "internal error: {message}; please report this"
        )),
    }
}

enum Work<'f> {
    Case(&'f TestFile, &'f Case),
    Adversarial(&'f TestFile, &'f crate::file::Adversarial),
    Property(&'f TestFile, &'f crate::file::Property),
}

/// Runs every case, adversarial entry and property of `files` (filtered by name), in parallel.
pub fn run(evaluator: &Evaluator, files: &[TestFile], options: &RunOptions) -> RunReport {
    let wanted = |name: &str| {
        options
            .filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    };
    let timeout_ms = match options.timeout_ms {
        0 => 10_000,
        ms => ms,
    };
    let mut work = Vec::new();
    for file in files {
        work.extend(
            file.cases
                .iter()
                .filter(|c| wanted(&c.raw.name))
                .map(|c| Work::Case(file, c)),
        );
        work.extend(
            file.adversarial
                .iter()
                .filter(|a| wanted(&a.raw.from))
                .map(|a| Work::Adversarial(file, a)),
        );
        work.extend(
            file.properties
                .iter()
                .filter(|p| wanted(&p.raw.name))
                .map(|p| Work::Property(file, p)),
        );
    }
    let outcomes: Vec<(CaseResult, Vec<usize>)> = work
        .par_iter()
        .map(|item| {
            let started = std::time::Instant::now();
            let (mut result, rules) = run_one(evaluator, item, timeout_ms);
            result.seconds = started.elapsed().as_secs_f64();
            (result, rules)
        })
        .collect();
    let mut covered = BTreeSet::new();
    let mut results = Vec::with_capacity(outcomes.len());
    for (result, rules) in outcomes {
        covered.extend(rules);
        results.push(result);
    }
    results.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    RunReport { results, covered }
}

fn run_one(evaluator: &Evaluator, item: &Work, timeout_ms: u32) -> (CaseResult, Vec<usize>) {
    match item {
        Work::Case(file, case) => run_case(evaluator, file, case),
        Work::Adversarial(file, entry) => (
            run_adversarial(evaluator, file, entry, timeout_ms),
            Vec::new(),
        ),
        Work::Property(file, property) => (
            run_property(evaluator, file, property, timeout_ms),
            Vec::new(),
        ),
    }
}
