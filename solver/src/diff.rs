//! The semantic diff of two versions of a policy set: every class of requests whose decision
//! changes, with one witness each, confirmed by evaluating it against both versions.
//!
//! Only tools whose rules changed are analysed (a rule changed when its text or its policy's
//! scope did; moving it between files or lines does not count). Per tool, the old and the new
//! encoding share the request variables (same names, same declarations) in one solver; the
//! old version's tool variable is fixed by substitution, because the two schemas may number the
//! tools differently. For each pair of different decisions, classes are enumerated: a witness,
//! its deciding rules in each version, then a constraint that excludes that pair of deciding
//! rule sets, until no witness is left (or [`MAX_CLASSES`] per pair).

use crate::encode::{any, Encoding};
use crate::findings::AnalysisError;
use crate::witness::{compact, decide_own, simplify};
use polctl_lang::display::rule_text;
use polctl_lang::eval::{DecisionJson, Evaluator, Outcome};
use polctl_lang::ir::{Effect, PolicySet};
use serde::Serialize;
use serde_json::Value as Json;
use z3::ast::{Ast, Bool, Dynamic, Int};
use z3::{Params, SatResult};

/// Classes enumerated per tool and pair of decisions at most.
pub const MAX_CLASSES: usize = 16;

/// What a change does to access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Deny or require_approval → allow (including a raised or removed limit).
    Widen,
    /// Allow → deny or require_approval.
    Narrow,
    /// Who must approve changes (deny ↔ require_approval, or other groups).
    Approval,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Widen => "widen",
            ChangeKind::Narrow => "narrow",
            ChangeKind::Approval => "approval",
        }
    }
}

/// One class of requests whose decision changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub tool: String,
    pub from: Outcome,
    pub to: Outcome,
    pub old_rules: Vec<String>,
    pub new_rules: Vec<String>,
    /// For approval changes, the groups still missing in each version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<(Vec<String>, Vec<String>)>,
    pub witness: Json,
}

/// The semantic diff.
#[derive(Debug, Clone, Default)]
pub struct SemanticDiff {
    pub changes: Vec<Change>,
    /// Tools whose rules changed and were analysed.
    pub tools_compared: Vec<String>,
    /// Tools that could not be compared, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Pairs the solver gave up on: (tool, from → to, reason).
    pub unknown: Vec<(String, String, String)>,
    pub queries: usize,
}

fn rules_text(set: &PolicySet, tool: usize) -> Vec<String> {
    let mut texts: Vec<String> = set
        .rules
        .iter()
        .filter(|r| r.tools.contains(&tool))
        .map(|r| format!("{}\n{}", r.id, rule_text(set, r)))
        .collect();
    texts.sort();
    texts
}

/// The decision terms of one version for one tool.
struct Side<'a> {
    encoding: Encoding<'a>,
    /// The tool index substituted for the tool variable (the old version's), if any.
    fixed_tool: Option<i64>,
    allow: Bool,
    deny: Bool,
    require_approval: Bool,
}

impl Side<'_> {
    /// A term of this version with its tool fixed.
    fn fix(&self, term: &Bool) -> Bool {
        let Some(tool) = self.fixed_tool else {
            return term.clone();
        };
        let pair = (
            Dynamic::from_ast(&self.encoding.tool),
            Dynamic::from_ast(&Int::from_i64(tool)),
        );
        term.substitute(&[(&pair.0, &pair.1)]).simplify()
    }

    fn term(&self, outcome: Outcome) -> Bool {
        match outcome {
            Outcome::Allow => self.allow.clone(),
            Outcome::Deny => self.deny.clone(),
            Outcome::RequireApproval => self.require_approval.clone(),
        }
    }
}

fn side<'a>(
    set: &'a PolicySet,
    namespace: &str,
    tool: usize,
    fix_tool: bool,
) -> Result<Side<'a>, AnalysisError> {
    let encoding = Encoding::in_namespace(set, namespace).map_err(AnalysisError::Encode)?;
    // Only the rules that name this tool can decide its requests.
    let naming: Vec<usize> = (0..set.rules.len())
        .filter(|&r| set.rules[r].tools.contains(&tool))
        .collect();
    let decision = encoding.decision_over(&naming);
    let mut side = Side {
        fixed_tool: fix_tool.then_some(tool as i64),
        allow: decision.allow,
        deny: decision.deny,
        require_approval: decision.require_approval,
        encoding,
    };
    side.allow = side.fix(&side.allow);
    side.deny = side.fix(&side.deny);
    side.require_approval = side.fix(&side.require_approval);
    Ok(side)
}

/// The rules whose matching decides `decision`, as rule indexes of `set` naming `tool`: the
/// rules of the deciding kind (for a default deny, the allow rules, none of which match).
fn deciding_kind(set: &PolicySet, tool: usize, decision: &DecisionJson) -> Vec<usize> {
    let wanted = |effect: &Effect| match decision.decision {
        Outcome::Allow => matches!(effect, Effect::Allow { .. }),
        Outcome::RequireApproval => matches!(effect, Effect::RequireApproval { .. }),
        Outcome::Deny if decision.rules.is_empty() => matches!(effect, Effect::Allow { .. }),
        Outcome::Deny => {
            let by_limit = decision.rules.iter().any(|id| {
                set.rules
                    .iter()
                    .any(|r| &r.id == id && matches!(r.effect, Effect::Limit(_)))
            });
            if by_limit {
                matches!(effect, Effect::Limit(_))
            } else {
                matches!(effect, Effect::Deny { .. })
            }
        }
    };
    (0..set.rules.len())
        .filter(|&r| set.rules[r].tools.contains(&tool) && wanted(&set.rules[r].effect))
        .collect()
}

/// "Exactly these rules of the deciding kind match" in one version.
fn signature(side: &Side, set: &PolicySet, kind: &[usize], deciding: &[String]) -> Bool {
    let parts: Vec<Bool> = kind
        .iter()
        .map(|&r| {
            let matches = side.fix(&side.encoding.matches[r]);
            if deciding.contains(&set.rules[r].id) {
                matches
            } else {
                matches.not()
            }
        })
        .collect();
    crate::encode::all(parts)
}

fn kind_of(from: Outcome, to: Outcome) -> ChangeKind {
    match (from, to) {
        (_, Outcome::Allow) if from != Outcome::Allow => ChangeKind::Widen,
        (Outcome::Allow, _) => ChangeKind::Narrow,
        _ => ChangeKind::Approval,
    }
}

/// Compares two compiled versions of a set.
pub fn semantic_diff(
    old: &Evaluator,
    new: &Evaluator,
    timeout_ms: u32,
) -> Result<SemanticDiff, AnalysisError> {
    let (old_set, new_set) = (old.set(), new.set());
    let mut diff = SemanticDiff::default();
    let mut jobs: Vec<(usize, usize)> = Vec::new();
    let same_attributes = old_set.schema.agent == new_set.schema.agent
        && old_set.schema.context == new_set.schema.context
        && old_set.schema.approvers == new_set.schema.approvers;
    for (new_tool, declared) in new_set.schema.tools.iter().enumerate() {
        let Some(old_tool) = old_set.schema.tool_index(&declared.name) else {
            continue;
        };
        if rules_text(old_set, old_tool) == rules_text(new_set, new_tool) {
            continue;
        }
        if !same_attributes {
            diff.skipped.push((
                declared.name.clone(),
                "the agent or context attributes or the approver groups changed".to_owned(),
            ));
            continue;
        }
        if old_set.schema.tools[old_tool] != *declared {
            diff.skipped.push((
                declared.name.clone(),
                "the tool's declaration changed".to_owned(),
            ));
            continue;
        }
        diff.tools_compared.push(declared.name.clone());
        jobs.push((old_tool, new_tool));
    }
    // Tools are independent: each is compared on a rayon worker, with that worker's Z3
    // context (the encodings are built inside the job).
    use rayon::prelude::*;
    let results: Vec<Result<SemanticDiff, AnalysisError>> = jobs
        .par_iter()
        .map(|&(old_tool, new_tool)| {
            let mut part = SemanticDiff::default();
            compare_tool(old, new, old_tool, new_tool, timeout_ms, &mut part).map(|()| part)
        })
        .collect();
    for result in results {
        let part = result?;
        diff.changes.extend(part.changes);
        diff.unknown.extend(part.unknown);
        diff.queries += part.queries;
    }
    diff.changes.sort_by(|a, b| {
        (&a.tool, a.kind, &a.old_rules, &a.new_rules).cmp(&(
            &b.tool,
            b.kind,
            &b.old_rules,
            &b.new_rules,
        ))
    });
    Ok(diff)
}

fn compare_tool(
    old: &Evaluator,
    new: &Evaluator,
    old_tool: usize,
    new_tool: usize,
    timeout_ms: u32,
    diff: &mut SemanticDiff,
) -> Result<(), AnalysisError> {
    let (old_set, new_set) = (old.set(), new.set());
    let tool_name = new_set.schema.tools[new_tool].name.clone();
    let before = side(old_set, "old:", old_tool, true)?;
    let after = side(new_set, "new:", new_tool, false)?;
    let old_rules: Vec<usize> = (0..old_set.rules.len())
        .filter(|&r| old_set.rules[r].tools.contains(&old_tool))
        .collect();
    let new_rules: Vec<usize> = (0..new_set.rules.len())
        .filter(|&r| new_set.rules[r].tools.contains(&new_tool))
        .collect();
    let found = concrete_classes(old, new, old_tool, new_tool);
    let outcomes = [Outcome::Allow, Outcome::Deny, Outcome::RequireApproval];
    let mut pairs: Vec<(Outcome, Outcome)> = Vec::new();
    for from in outcomes {
        for to in outcomes {
            pairs.push((from, to));
        }
    }
    for (from, to) in pairs {
        // Same decision: only approval changes (other groups) count.
        if from == to && from != Outcome::RequireApproval {
            continue;
        }
        let solver = after.encoding.solver_for(&new_rules, Some(&[new_tool]));
        before.encoding.load_definitions(&solver, &old_rules);
        let mut params = Params::new();
        params.set_u32("timeout", timeout_ms);
        solver.set_params(&params);
        // The old version's ranges and counters (its argument domains are the new one's).
        solver.assert(&before.encoding.domain);
        solver.assert(before.term(from));
        solver.assert(after.term(to));
        if from == to {
            // Some group is needed in one version and not in the other.
            let needs = |side: &Side, set: &PolicySet, tool: usize, group: &str| -> Bool {
                any(set
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.tools.contains(&tool))
                    .filter(|(_, r)| matches!(&r.effect, Effect::RequireApproval { groups } if groups.iter().any(|g| g == group)))
                    .map(|(i, _)| side.fix(&side.encoding.waiting(i)))
                    .collect())
            };
            let differs: Vec<Bool> = new_set
                .schema
                .approvers
                .iter()
                .map(|g| {
                    let (a, b) = (
                        needs(&before, old_set, old_tool, g),
                        needs(&after, new_set, new_tool, g),
                    );
                    Bool::or(&[Bool::and(&[a.clone(), b.not()]), Bool::and(&[a.not(), b])])
                })
                .collect();
            solver.assert(any(differs));
        }
        // Classes already found with concrete requests: recorded, and excluded from the search.
        for (was, is, witness) in found
            .iter()
            .filter(|(was, is, _)| was.decision == from && is.decision == to)
        {
            let old_kind = deciding_kind(old_set, old_tool, was);
            let new_kind = deciding_kind(new_set, new_tool, is);
            solver.assert(
                Bool::and(&[
                    signature(&before, old_set, &old_kind, &was.rules),
                    signature(&after, new_set, &new_kind, &is.rules),
                ])
                .not(),
            );
            diff.changes.push(Change {
                kind: kind_of(from, to),
                tool: tool_name.clone(),
                from,
                to,
                old_rules: was.rules.clone(),
                new_rules: is.rules.clone(),
                approvers: (from == to).then(|| (was.approvers.clone(), is.approvers.clone())),
                witness: witness.clone(),
            });
        }
        for _ in 0..MAX_CLASSES {
            diff.queries += 1;
            match solver.check() {
                SatResult::Unsat => break,
                SatResult::Unknown => {
                    diff.unknown.push((
                        tool_name.clone(),
                        format!("{} → {}", from.as_str(), to.as_str()),
                        solver
                            .get_reason_unknown()
                            .unwrap_or_else(|| "unknown".to_owned()),
                    ));
                    break;
                }
                SatResult::Sat => {}
            }
            let Some(model) = solver.get_model() else {
                break;
            };
            let mut witness = after.encoding.request_from_model(&model);
            // Counters of limits only the old version has.
            for (&rule, counter) in &before.encoding.counters {
                if !old_set.rules[rule].tools.contains(&old_tool) {
                    continue;
                }
                let value = model
                    .eval(counter, true)
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                if value > 0 {
                    witness["counters"][old_set.rules[rule].id.as_str()] = serde_json::json!(value);
                }
            }
            let decide = |evaluator: &Evaluator| -> Result<DecisionJson, AnalysisError> {
                decide_own(evaluator, &witness).map_err(|e| AnalysisError::Witness {
                    finding: format!("a change of `{tool_name}`"),
                    message: format!("the witness does not fit the schema: {e}: {witness}"),
                })
            };
            let (was, is) = (decide(old)?, decide(new)?);
            if was.decision != from || is.decision != to {
                return Err(AnalysisError::Witness {
                    finding: format!(
                        "a change of `{tool_name}` from {} to {}",
                        from.as_str(),
                        to.as_str()
                    ),
                    message: format!(
                        "the evaluator decides {} then {}; witness {witness}",
                        was.decision.as_str(),
                        is.decision.as_str()
                    ),
                });
            }
            let approvers = (from == to).then(|| (was.approvers.clone(), is.approvers.clone()));
            // Exclude this class: the same deciding rules in both versions.
            let old_kind = deciding_kind(old_set, old_tool, &was);
            let new_kind = deciding_kind(new_set, new_tool, &is);
            let class = Bool::and(&[
                signature(&before, old_set, &old_kind, &was.rules),
                signature(&after, new_set, &new_kind, &is.rules),
            ]);
            solver.assert(class.not());
            diff.changes.push(Change {
                kind: kind_of(from, to),
                tool: tool_name.clone(),
                from,
                to,
                old_rules: was.rules,
                new_rules: is.rules,
                approvers,
                witness,
            });
        }
    }
    Ok(())
}

/// Rules added, removed and changed (same id, different text or scope), by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

pub fn rule_changes(old: &PolicySet, new: &PolicySet) -> RuleChanges {
    let text = |set: &PolicySet, id: &str| {
        set.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| rule_text(set, r))
    };
    let mut changes = RuleChanges::default();
    for rule in &new.rules {
        match text(old, &rule.id) {
            None => changes.added.push(rule.id.clone()),
            Some(before) if before != rule_text(new, rule) => changes.changed.push(rule.id.clone()),
            Some(_) => {}
        }
    }
    for rule in &old.rules {
        if text(new, &rule.id).is_none() {
            changes.removed.push(rule.id.clone());
        }
    }
    changes.added.sort();
    changes.removed.sort();
    changes.changed.sort();
    changes
}

/// Generated requests tried per changed rule before the solver is asked.
const TRIED_PER_RULE: usize = 24;

/// Allow and approval rules paired with each changed rule, per version, and requests tried per
/// pair.
const MAX_PARTNERS: usize = 24;
const TRIED_PER_PAIR: usize = 4;

/// Classes of changed decisions found by evaluating requests built around the rules that
/// differ between the versions (in their scope, satisfying their conditions, with approvals
/// and limit counters varied) against both versions: `(old decision, new decision, witness)`,
/// one per pair of deciding rule sets. The solver then only has to look for the rest, and to
/// prove there is none.
fn concrete_classes(
    old: &Evaluator,
    new: &Evaluator,
    old_tool: usize,
    new_tool: usize,
) -> Vec<(DecisionJson, DecisionJson, Json)> {
    use crate::construct::{construct, place_in_scope, scoped_request};
    use polctl_lang::eval::generate::{request_to_json, RequestGenerator};
    let mut found: Vec<(DecisionJson, DecisionJson, Json)> = Vec::new();
    let differing = |set: &PolicySet, other: &PolicySet, tool: usize| -> Vec<usize> {
        (0..set.rules.len())
            .filter(|&r| set.rules[r].tools.contains(&tool))
            .filter(|&r| {
                let text = rule_text(set, &set.rules[r]);
                !other
                    .rules
                    .iter()
                    .any(|o| o.id == set.rules[r].id && rule_text(other, o) == text)
            })
            .collect()
    };
    for (evaluator, other, tool) in [(old, new, old_tool), (new, old, new_tool)] {
        let set = evaluator.set();
        let mut generator = RequestGenerator::new(set, 0xd1ff);
        // Rules that can make a request allowed (or pending) in either version: a change is
        // most often found where one of them meets a rule that differs.
        let partners = |of: &PolicySet, tool: usize| -> Vec<usize> {
            (0..of.rules.len())
                .filter(|&r| of.rules[r].tools.contains(&tool))
                .filter(|&r| {
                    matches!(
                        of.rules[r].effect,
                        Effect::Allow { .. } | Effect::RequireApproval { .. }
                    )
                })
                .take(MAX_PARTNERS)
                .collect()
        };
        let other_tool = if std::ptr::eq(evaluator, old) {
            new_tool
        } else {
            old_tool
        };
        let mut pairs: Vec<(usize, Option<(&PolicySet, usize)>)> = Vec::new();
        for rule in differing(set, other.set(), tool) {
            pairs.push((rule, None));
            for partner in partners(set, tool) {
                pairs.push((rule, Some((set, partner))));
            }
            for partner in partners(other.set(), other_tool) {
                pairs.push((rule, Some((other.set(), partner))));
            }
        }
        for (rule, partner) in pairs {
            let mut when: Vec<&polctl_lang::ir::Cond> = set.rules[rule].when.iter().collect();
            if let Some((partner_set, partner)) = partner {
                when.extend(partner_set.rules[partner].when.iter());
            }
            let attempts = if partner.is_some() {
                TRIED_PER_PAIR
            } else {
                TRIED_PER_RULE
            };
            for attempt in 0..attempts {
                let mut request = scoped_request(set, &mut generator, rule, attempt);
                request.tool = tool;
                if request.args.len() != set.schema.tools[tool].args.len() {
                    continue;
                }
                if let Some((partner_set, partner)) = partner {
                    // In the partner's scope too (the schemas' agent attributes are the same).
                    place_in_scope(partner_set, &mut request, partner, attempt);
                }
                if attempt % 4 != 3 {
                    request = construct(set, &request, &when, attempt);
                }
                if attempt % 2 == 1 {
                    request.approvals.iter_mut().for_each(|a| *a = true);
                }
                let mut witness = request_to_json(set, &request);
                if let Effect::Limit(limit) = &set.rules[rule].effect {
                    if attempt % 3 != 0 {
                        let count = limit.max.saturating_sub(u64::from(attempt % 3 == 2));
                        witness["counters"][set.rules[rule].id.as_str()] = serde_json::json!(count);
                    }
                }
                compact(&mut witness);
                let decide = |e: &Evaluator| decide_own(e, &witness).ok();
                let (Some(was), Some(is)) = (decide(old), decide(new)) else {
                    continue;
                };
                let changed = was.decision != is.decision
                    || (was.decision == Outcome::RequireApproval && was.approvers != is.approvers);
                let known = found.iter().any(|(w, i, _)| {
                    w.decision == was.decision
                        && i.decision == is.decision
                        && w.rules == was.rules
                        && i.rules == is.rules
                });
                if changed && !known {
                    let witness = plain_witness(old, new, &witness, &was, &is);
                    found.push((was, is, witness));
                }
            }
        }
    }
    found
}

/// A concrete witness with its fields made plain while both versions still decide it the same
/// way (same decisions, same deciding rules). Kept as it is when it needs counters of a limit
/// that only the old version has (the new schema's request cannot carry them).
fn plain_witness(
    old: &Evaluator,
    new: &Evaluator,
    witness: &Json,
    was: &DecisionJson,
    is: &DecisionJson,
) -> Json {
    use polctl_lang::eval::generate::request_to_json;
    let set = new.set();
    let as_json = |request: &polctl_lang::eval::Request| {
        let mut json = request_to_json(set, request);
        compact(&mut json);
        json
    };
    let same = |json: &Json| {
        let decided = |e: &Evaluator| decide_own(e, json).ok();
        decided(old).is_some_and(|d| d.decision == was.decision && d.rules == was.rules)
            && decided(new).is_some_and(|d| d.decision == is.decision && d.rules == is.rules)
    };
    let Ok(request) = new.decode(witness) else {
        return witness.clone();
    };
    if !same(&as_json(&request)) {
        return witness.clone();
    }
    as_json(&simplify(set, &request, |r| same(&as_json(r))))
}
