//! Solver-found edge values for adversarial tests (language.md §5).
//!
//! For one string argument of a test case (or one element of a list argument), and each rule
//! that names the case's tool and reads that argument: the smallest change that keeps the
//! original text inside the new value (something prepended, appended or wrapped around it, at
//! most [`MAX_EXTRA`] characters) and flips whether the rule matches, with every other field
//! of the request as the case has it. `eve@evil.example` against `every args.to ends with
//! "@acme.example"` gives `eve@evil.example@acme.example`: the edge of the rule's condition,
//! found rather than guessed. Values built from the rule's own string tests (its prefixes,
//! suffixes, substrings and samples of its regexes around the original) are tried first; Z3
//! answers the rest (`not ... ends with`, comparisons between several tests), except for rules
//! that test the value with a regex: Z3 4.8.12 gives up on regex membership around a fixed
//! text, so those values are chosen on the rule's DFAs (`realize.rs`), such as
//! `ops-0-drop-tables-ok` for `matches "^ops-[0-9]+-" and ends with "-ok"`. The evaluator
//! confirms the flip before a value is returned.

use crate::candidates::FieldsRead;
use crate::encode::{load_tests, Encoding, LanguageTest, Term, TextTest};
use crate::realize::{self, Realized};
use crate::strings::{escape, literal, unescape};
use polctl_lang::eval::generate::Rng;
use polctl_lang::eval::{sample_matching, Evaluator, Outcome, Request, Value};
use polctl_lang::ir::{Cond, Effect, Path, TextOp};
use std::time::{Duration, Instant};
use z3::ast::{Bool, Int, String as Z3String};
use z3::{Params, SatResult};

/// The most characters an edge value adds around the original.
pub const MAX_EXTRA: i64 = 24;

/// The most time one edge query gets. Queries take milliseconds (those on rules that test the
/// argument with a regex are decided on DFAs, not by Z3's string solver), so this limit only
/// guards against the unexpected and, being generous, keeps the results the same on a loaded
/// machine.
pub const MAX_QUERY_MS: u32 = 5_000;

/// A value at the edge of a rule's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeValue {
    pub value: String,
    /// How it was found, for the report: "solver: crosses `RULE`".
    pub how: String,
}

/// Which value of the request to vary, and the decision the variants must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub arg: &'a str,
    /// For a list argument, the element.
    pub element: Option<usize>,
    /// Only edges that could change this decision are searched: for a deny, escaping a
    /// matching deny or reaching an allow; for an allow, reaching a deny or an approval or
    /// escaping a matching allow; for an approval, escaping it or reaching a deny.
    pub keep: Outcome,
}

fn could_change(effect: &Effect, matched: bool, keep: Outcome) -> bool {
    matches!(
        (keep, effect, matched),
        (Outcome::Deny, Effect::Deny { .. }, true)
            | (Outcome::Deny, Effect::Allow { .. }, false)
            | (
                Outcome::Allow,
                Effect::Deny { .. } | Effect::RequireApproval { .. } | Effect::Limit(_),
                false
            )
            | (Outcome::Allow, Effect::Allow { .. }, true)
            | (
                Outcome::RequireApproval,
                Effect::RequireApproval { .. },
                true
            )
            | (Outcome::RequireApproval, Effect::Deny { .. }, false)
    )
}

fn matches_rule(evaluator: &Evaluator, request: &Request, rule: usize) -> bool {
    evaluator
        .rule_states(request)
        .iter()
        .any(|s| s.rule == rule && s.in_scope && s.condition)
}

fn with_value(request: &Request, position: usize, element: Option<usize>, value: &str) -> Request {
    let mut changed = request.clone();
    match (element, changed.args.get_mut(position)) {
        (None, Some(slot)) => *slot = Some(Value::Str(value.to_owned())),
        (Some(i), Some(Some(Value::List(items)))) if i < items.len() => items[i] = value.to_owned(),
        _ => {}
    }
    changed
}

/// Edge values for one target of a request; empty when the target is not a string, no rule
/// reads it, or the solver finds nothing within `timeout_ms` per rule.
pub fn edge_values(
    evaluator: &Evaluator,
    request: &Request,
    target: Target,
    timeout_ms: u32,
) -> Vec<EdgeValue> {
    let set = evaluator.set();
    let Some(tool) = set.schema.tools.get(request.tool) else {
        return Vec::new();
    };
    let Some(position) = tool.args.iter().position(|a| a.name == target.arg) else {
        return Vec::new();
    };
    let original = match (&request.args[position], target.element) {
        (Some(Value::Str(s)), None) => s.clone(),
        (Some(Value::List(items)), Some(i)) if i < items.len() => items[i].clone(),
        _ => return Vec::new(),
    };
    let Ok(encoding) = Encoding::new(set) else {
        return Vec::new();
    };
    let Some(variable) = encoding.arg_variable(target.arg, &tool.args[position].ty) else {
        return Vec::new();
    };
    let free: Z3String = match (&variable.value, target.element) {
        (Term::Str(s), None) => s.clone(),
        (Term::List { items, .. }, Some(i)) if i < items.len() => items[i].clone(),
        _ => return Vec::new(),
    };
    let fields = FieldsRead::new(set);
    let path = Path::Arg(target.arg.to_owned());
    let mut found: Vec<EdgeValue> = Vec::new();
    for (rule, rule_ir) in set.rules.iter().enumerate() {
        if !rule_ir.tools.contains(&request.tool) || !fields.of(rule).contains(&path) {
            continue;
        }
        let matched = matches_rule(evaluator, request, rule);
        if !could_change(&rule_ir.effect, matched, target.keep) {
            continue;
        }
        let Some(condition) = encoding
            .pinned_except(request, &free, &[&encoding.matches[rule]])
            .into_iter()
            .next()
        else {
            continue;
        };
        let flips = |value: &str| {
            value != original
                && matches_rule(
                    evaluator,
                    &with_value(request, position, target.element, value),
                    rule,
                ) != matched
        };
        let direction = if matched { "escapes" } else { "reaches" };
        let flipped = if matched { condition.not() } else { condition };
        // Values built from the rule's own tests are tried first; then Z3, or the rule's DFAs
        // when it tests the value with a regex (Z3 4.8.12 gives up on regex membership around
        // a fixed text, even in seconds).
        let built = around(&original, rule_ir)
            .into_iter()
            .find(|value| flips(value));
        let (value, how) = match built {
            Some(value) => (value, format!("edge of `{}`: {direction} it", rule_ir.id)),
            None if reads_with_regex(rule_ir, &path) => {
                let edge = Edge {
                    encoding: &encoding,
                    rule,
                    tool: request.tool,
                    free: &free,
                    flipped: &flipped,
                };
                match edge.chosen(&original, timeout_ms.min(MAX_QUERY_MS)) {
                    Some(value) if flips(&value) => {
                        (value, format!("solver: {direction} `{}`", rule_ir.id))
                    }
                    _ => continue,
                }
            }
            None => {
                let solver = encoding.solver_for(&[rule], Some(&[request.tool]));
                let mut params = Params::new();
                params.set_u32("timeout", timeout_ms.min(MAX_QUERY_MS));
                solver.set_params(&params);
                solver.assert(&flipped);
                // The new value is the original with at most MAX_EXTRA characters around it.
                let (before, after) = (
                    Z3String::fresh_const("edge_before"),
                    Z3String::fresh_const("edge_after"),
                );
                solver.assert(free.eq(Z3String::concat(&[
                    before.clone(),
                    literal(&original),
                    after.clone(),
                ])));
                let extra = Int::add(&[before.length(), after.length()]);
                solver.assert(extra.le(Int::from_i64(MAX_EXTRA)));
                if solver.check() != SatResult::Sat {
                    continue;
                }
                let Some(value) = solver
                    .get_model()
                    .and_then(|m| m.eval(&free, true))
                    .and_then(|v| v.as_string())
                    .map(|s| unescape(&s))
                else {
                    continue;
                };
                // The evaluator must agree that the rule's verdict flips.
                if !flips(&value) {
                    continue;
                }
                (value, format!("solver: {direction} `{}`", rule_ir.id))
            }
        };
        if !found.iter().any(|f| f.value == value) {
            found.push(EdgeValue { value, how });
        }
    }
    found
}

/// An edge query on a rule that tests the value with a regex.
struct Edge<'e> {
    encoding: &'e Encoding<'e>,
    rule: usize,
    tool: usize,
    /// The value's variable; the request's other fields are pinned in `flipped`.
    free: &'e Z3String,
    /// The rule's match, negated when it matched.
    flipped: &'e Bool,
}

impl Edge<'_> {
    /// The value chosen outside Z3 (`realize.rs`, on the rule's DFAs), which Z3 4.8.12 cannot
    /// find itself: the shortest one that keeps `original` with at most [`MAX_EXTRA`]
    /// characters before it, after it, or up to half of them on each side.
    fn chosen(&self, original: &str, timeout_ms: u32) -> Option<String> {
        let subject = self.free.to_string();
        let (half, literal_re) = (MAX_EXTRA / 2, regex_syntax::escape(original));
        let pattern = format!(
            "^(?:(?s:.){{0,{MAX_EXTRA}}}{literal_re}|{literal_re}(?s:.){{0,{MAX_EXTRA}}}|(?s:.){{1,{half}}}{literal_re}(?s:.){{1,{half}}})$"
        );
        let text = format!("(str.to_re \"{}\")", escape(original));
        let any = |lo: i64, hi: i64| format!("((_ re.loop {lo} {hi}) re.allchar)");
        let language = format!(
            "(re.union (re.++ {all} {text}) (re.++ {text} {all}) (re.++ {some} {text} {some}))",
            all = any(0, MAX_EXTRA),
            some = any(1, half),
        );
        let around = LanguageTest {
            member: Bool::fresh_const("edge_around"),
            variable: self.free.clone(),
            subject: subject.clone(),
            language,
            test: TextTest::Regex(pattern),
        };
        let mut memberships: Vec<LanguageTest> = self
            .encoding
            .memberships_of(&[self.rule])
            .into_iter()
            .filter(|m| m.subject == subject)
            .collect();
        memberships.push(around.clone());
        let solver = |with_memberships: bool| {
            if with_memberships {
                let solver = self.encoding.solver_for(&[self.rule], Some(&[self.tool]));
                load_tests(&solver, std::slice::from_ref(&around));
                solver
            } else {
                self.encoding.domain_solver(Some(&[self.tool]))
            }
        };
        let facts = [self.flipped.clone(), around.member.clone()];
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        let literals_of = |subject: &str| self.encoding.literals_of(subject);
        match realize::decide(&solver, &facts, &memberships, &literals_of, deadline) {
            Realized::Sat(model) => model
                .eval(self.free, true)
                .and_then(|v| v.as_string())
                .map(|v| unescape(&v)),
            Realized::Unsat | Realized::Unknown(_) => None,
        }
    }
}

/// Whether one of the rule's regexes reads the path.
fn reads_with_regex(rule: &polctl_lang::ir::Rule, path: &Path) -> bool {
    let mut found = false;
    for cond in rule.when.iter().chain(rule.unless.iter()) {
        cond.for_each_leaf(&mut |leaf_path, leaf| {
            found |= leaf_path == path
                && matches!(
                    leaf,
                    Cond::Text {
                        op: TextOp::Matches,
                        ..
                    }
                );
        });
    }
    found
}

/// The original with text from the rule's string tests before or after it: prefixes before,
/// suffixes and substrings after, and strings sampled from its regexes on either side.
fn around(original: &str, rule: &polctl_lang::ir::Rule) -> Vec<String> {
    // One character either side escapes most `starts with`, `ends with`, `==` and anchored
    // patterns.
    let mut out = vec![format!("{original}x"), format!("x{original}")];
    for cond in rule.when.iter().chain(rule.unless.iter()) {
        cond.for_each_leaf(&mut |_, leaf| match leaf {
            Cond::Text { op, pattern, .. } => match op {
                TextOp::StartsWith => out.push(format!("{pattern}{original}")),
                TextOp::EndsWith | TextOp::Contains => out.push(format!("{original}{pattern}")),
                TextOp::Matches => {
                    for seed in 0..3 {
                        if let Some(sample) = sample_matching(pattern, &mut Rng::new(seed)) {
                            out.push(format!("{sample}{original}"));
                            out.push(format!("{original}{sample}"));
                        }
                    }
                }
            },
            Cond::ContainsAny { needles, .. } => {
                out.extend(needles.iter().map(|n| format!("{original}{n}")))
            }
            _ => {}
        });
    }
    out
}
