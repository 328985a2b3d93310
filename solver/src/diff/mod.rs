//! The semantic diff of two versions of a policy set: every class of requests whose decision
//! changes, with one witness each, confirmed by evaluating it against both versions.
//!
//! Only tools whose rules changed are analysed (a rule changed when its text or its policy's
//! scope did; moving it between files or lines does not count), each in a Z3 context of its
//! own. Per tool, the old and the new encoding share the request variables (same names, same
//! types) in one solver, each with its own tool index substituted (the two schemas may number
//! the tools differently) and the old one reading enum attributes in the new numbering; only
//! requests both versions accept are compared. Classes are found by a concrete search first
//! (`concrete.rs`), then enumerated lazily for each pair of decisions (see [`enumerate`]). A
//! pair with more than [`MAX_CLASSES`] classes found by the solver is listed up to that many
//! and reported as truncated.

use crate::check::{decide, Decided};
use crate::encode::{any, type_key, Encoding, Term};
use crate::findings::AnalysisError;

mod concrete;

use crate::realize::{self, Realized};
use concrete::{Class, ClassSearch, Offer};
use polctl_lang::display::rule_text;
use polctl_lang::eval::{DecisionJson, Evaluator, Outcome};
use polctl_lang::ir::{Attribute, Effect, PolicySet, Tool, Type};
use serde::Serialize;
use serde_json::Value as Json;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use z3::ast::{Ast, Bool, Dynamic, Int};
use z3::{Model, SatResult, Solver};

/// Time for the first try at one proposal; the query limit applies to the second, after the
/// tool's language lemmas are loaded.
const FIRST_TRY_MS: u32 = 1_000;

/// Classes the solver enumerates per tool and pair of decisions at most (those the concrete
/// search found come on top).
pub const MAX_CLASSES: usize = 16;

/// What a change does to access (shared with `polctl replay`, hence in `lang`).
pub use polctl_lang::eval::ChangeKind;

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

/// A (tool, old → new) pair the diff did not finish, and why (the solver's reason, or that
/// the listing was cut at [`MAX_CLASSES`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    pub tool: String,
    pub from: Outcome,
    pub to: Outcome,
    pub reason: String,
}

impl Unfinished {
    /// `allow → deny`.
    pub fn change(&self) -> String {
        format!("{} → {}", self.from.as_str(), self.to.as_str())
    }
}

/// The semantic diff.
#[derive(Debug, Clone, Default)]
pub struct SemanticDiff {
    pub changes: Vec<Change>,
    /// Tools whose rules changed and were analysed.
    pub tools_compared: Vec<String>,
    /// Tools that could not be compared, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Requests only one version accepts (an enum member only one of them has), which are
    /// not compared: what they are.
    pub one_sided: Vec<String>,
    /// Pairs the solver gave up on.
    pub unknown: Vec<Unfinished>,
    /// Pairs with more classes than [`MAX_CLASSES`] found by the solver.
    pub truncated: Vec<Unfinished>,
    pub queries: usize,
}

fn rules_text(set: &PolicySet, tool: usize) -> Vec<String> {
    let mut texts: Vec<String> = set
        .rules_naming(tool)
        .map(|r| &set.rules[r])
        .map(|r| format!("{}\n{}", r.id, rule_text(set, r)))
        .collect();
    texts.sort();
    texts
}

/// The decision terms of one version for one tool.
///
/// Each rule naming the tool gets a Boolean that stands for "the rule matches", named after
/// the rule's (tool-fixed) match term, and the decision terms and class signatures are written
/// over those Booleans. A rule both versions have gets the same Boolean in both; a class
/// exclusion is a short clause of such Booleans instead of the rules' conditions flattened
/// into one long disjunction, which is what keeps Z3's proof that no class is left cheap.
struct Side<'a> {
    encoding: Encoding<'a>,
    /// The tool index substituted for the tool variable: the two schemas may number the tools
    /// differently, and with the tool fixed a rule both versions have is the same term in both.
    tool: i64,
    /// Further substitutions: an enum attribute whose members changed is read through the
    /// other version's numbering (see [`enum_renumbering`]).
    renumbered: Vec<(Dynamic, Dynamic)>,
    /// Per rule naming the tool: its match Boolean.
    matched: HashMap<usize, Bool>,
    /// The names of the match Booleans, to merge both versions' without asking Z3.
    names: HashMap<usize, String>,
    /// `matched ⇔ match term`, for every rule naming the tool.
    definitions: Vec<Bool>,
    allow: Bool,
    deny: Bool,
    require_approval: Bool,
}

impl Side<'_> {
    /// A term of this version with its tool fixed.
    fn fix(&self, term: &Bool) -> Bool {
        let pair = (
            Dynamic::from_ast(&self.encoding.tool),
            Dynamic::from_ast(&Int::from_i64(self.tool)),
        );
        let mut pairs = vec![(&pair.0, &pair.1)];
        pairs.extend(self.renumbered.iter().map(|(a, b)| (a, b)));
        term.substitute(&pairs).simplify()
    }

    /// A term of this version over the rules' match Booleans, with its tool fixed.
    fn over_matches(&self, term: &Bool) -> Bool {
        let pairs: Vec<(Dynamic, Dynamic)> = self
            .matched
            .iter()
            .map(|(&r, b)| {
                (
                    Dynamic::from_ast(&self.encoding.matches[r]),
                    Dynamic::from_ast(b),
                )
            })
            .collect();
        let references: Vec<(&Dynamic, &Dynamic)> = pairs.iter().map(|(a, b)| (a, b)).collect();
        self.fix(&term.substitute(&references))
    }

    fn term(&self, outcome: Outcome) -> Bool {
        match outcome {
            Outcome::Allow => self.allow.clone(),
            Outcome::Deny => self.deny.clone(),
            Outcome::RequireApproval => self.require_approval.clone(),
        }
    }
}

/// For each enum attribute whose members differ between `set` and `other`, the substitution
/// that makes `set`'s terms read the variable in `other`'s numbering: member `m`, number `j`
/// in `other` and `i` in `set`, maps `j` to `i`; a member `set` does not have maps to -1,
/// outside `set`'s domain, so such requests are not compared.
fn enum_renumbering(
    set: &PolicySet,
    other: &PolicySet,
    encoding: &Encoding,
) -> Vec<(Dynamic, Dynamic)> {
    let mut pairs = Vec::new();
    let declared = [
        (&set.schema.agent, &other.schema.agent, &encoding.agent),
        (
            &set.schema.context,
            &other.schema.context,
            &encoding.context,
        ),
    ];
    for (mine, theirs, terms) in declared {
        for (attribute, term) in mine.iter().zip(terms) {
            let (Type::Enum { members }, Term::Int(variable)) = (&attribute.ty, term) else {
                continue;
            };
            let Some(Type::Enum {
                members: other_members,
            }) = theirs
                .iter()
                .find(|a| a.name == attribute.name)
                .map(|a| &a.ty)
            else {
                continue;
            };
            if members == other_members {
                continue;
            }
            let mut read = Int::from_i64(-1);
            for (j, member) in other_members.iter().enumerate().rev() {
                if let Some(i) = members.iter().position(|m| m == member) {
                    read = variable
                        .eq(Int::from_i64(j as i64))
                        .ite(&Int::from_i64(i as i64), &read);
                }
            }
            pairs.push((Dynamic::from_ast(variable), Dynamic::from_ast(&read)));
        }
    }
    pairs
}

/// One version's side of the comparison; `other` is the version whose enum numbering the
/// request variables follow (the new one), if this is not it.
fn side<'a>(
    set: &'a PolicySet,
    tool: usize,
    other: Option<&PolicySet>,
) -> Result<Side<'a>, AnalysisError> {
    use sha2::{Digest, Sha256};
    let encoding = Encoding::for_tools(set, &[tool]).map_err(AnalysisError::Encode)?;
    let renumbered = other.map_or_else(Vec::new, |other| enum_renumbering(set, other, &encoding));
    // Only the rules that name this tool can decide its requests.
    let naming: Vec<usize> = set.rules_naming(tool).collect();
    let decision = encoding.decision_over(&naming);
    let mut side = Side {
        tool: tool as i64,
        renumbered,
        matched: HashMap::new(),
        names: HashMap::new(),
        definitions: Vec::new(),
        allow: decision.allow.clone(),
        deny: decision.deny.clone(),
        require_approval: decision.require_approval.clone(),
        encoding,
    };
    for &r in &naming {
        let term = side.fix(&side.encoding.matches[r]);
        let digest = Sha256::digest(term.to_string().as_bytes());
        let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("match#{name}");
        let matched = Bool::new_const(name.as_str());
        side.definitions.push(matched.iff(&term));
        side.matched.insert(r, matched);
        side.names.insert(r, name);
    }
    side.allow = side.over_matches(&decision.allow);
    side.deny = side.over_matches(&decision.deny);
    side.require_approval = side.over_matches(&decision.require_approval);
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
    set.rules_naming(tool)
        .filter(|&r| wanted(&set.rules[r].effect))
        .collect()
}

/// "Exactly these rules of the deciding kind decide" in one version, as the evaluator reports
/// them: matching allow and deny rules, approval rules still waiting for a group, limits
/// whose counter is reached.
fn signature(side: &Side, set: &PolicySet, kind: &[usize], deciding: &[String]) -> Bool {
    let parts: Vec<Bool> = kind
        .iter()
        .map(|&r| {
            let decides = match set.rules[r].effect {
                Effect::RequireApproval { .. } => side.over_matches(&side.encoding.waiting(r)),
                Effect::Limit(_) => side.over_matches(&side.encoding.limit_reached(r)),
                Effect::Allow { .. } | Effect::Deny { .. } => side.matched[&r].clone(),
            };
            if deciding.contains(&set.rules[r].id) {
                decides
            } else {
                decides.not()
            }
        })
        .collect();
    crate::encode::all(parts)
}

/// The agent and context attributes both versions declare: `(prefix, old, new)`.
fn shared_attributes<'s>(
    old: &'s PolicySet,
    new: &'s PolicySet,
) -> Vec<(&'static str, &'s Attribute, &'s Attribute)> {
    let pairs = [
        ("agent", &old.schema.agent, &new.schema.agent),
        ("context", &old.schema.context, &new.schema.context),
    ];
    pairs
        .into_iter()
        .flat_map(|(prefix, before, after)| {
            before.iter().filter_map(move |a| {
                let b = after.iter().find(|b| b.name == a.name)?;
                Some((prefix, a, b))
            })
        })
        .collect()
}

/// Why the two schemas' agent or context attributes cannot be compared, if they cannot: an
/// attribute both declare with different types (other than an enum whose members changed,
/// which is compared member by member).
fn incomparable_attributes(old: &PolicySet, new: &PolicySet) -> Option<String> {
    shared_attributes(old, new)
        .into_iter()
        .find_map(|(prefix, a, b)| {
            let enums = matches!((&a.ty, &b.ty), (Type::Enum { .. }, Type::Enum { .. }));
            (!enums && type_key(&a.ty) != type_key(&b.ty)).then(|| {
                format!(
                    "`{prefix}.{}` changed its type, so no request is the same for both versions",
                    a.name
                )
            })
        })
}

/// Enum members of an agent or context attribute that only one version has: requests that
/// carry them are valid in that version only, so they are not compared.
fn one_sided_members(old: &PolicySet, new: &PolicySet) -> Vec<String> {
    let mut notes = Vec::new();
    for (prefix, a, b) in shared_attributes(old, new) {
        let (Type::Enum { members: was }, Type::Enum { members: is }) = (&a.ty, &b.ty) else {
            continue;
        };
        for (members, others, version) in [(is, was, "new"), (was, is, "old")] {
            for member in members.iter().filter(|m| !others.contains(m)) {
                notes.push(format!(
                    "requests with `{prefix}.{}` = {member} (only the {version} version has it)",
                    b.name
                ));
            }
        }
    }
    notes
}

/// Why two declarations of a tool cannot be compared, if they cannot: an argument both declare
/// with different types (ranges may differ: requests in both are compared).
fn incomparable_arguments(old: &Tool, new: &Tool) -> Option<String> {
    old.args.iter().find_map(|a| {
        let b = new.args.iter().find(|b| b.name == a.name)?;
        (type_key(&a.ty) != type_key(&b.ty)).then(|| {
            format!(
                "argument `{}` changed its type, so no request is the same for both versions",
                a.name
            )
        })
    })
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
    let attributes = incomparable_attributes(old_set, new_set);
    diff.one_sided = one_sided_members(old_set, new_set);
    for (new_tool, declared) in new_set.schema.tools.iter().enumerate() {
        let Some(old_tool) = old_set.schema.tool_index(&declared.name) else {
            continue;
        };
        if rules_text(old_set, old_tool) == rules_text(new_set, new_tool) {
            continue;
        }
        let arguments = incomparable_arguments(&old_set.schema.tools[old_tool], declared);
        if let Some(reason) = attributes.clone().or(arguments) {
            diff.skipped.push((declared.name.clone(), reason));
            continue;
        }
        diff.tools_compared.push(declared.name.clone());
        jobs.push((old_tool, new_tool));
    }
    // Tools are independent: each is compared on a rayon worker, in a Z3 context of its own
    // (the encodings are built inside the job). A fresh context per tool, rather than the
    // worker's, makes the result independent of which tools a worker compared before: Z3's
    // search depends on the order in which a context created its terms.
    use rayon::prelude::*;
    let results: Vec<Result<SemanticDiff, AnalysisError>> = jobs
        .par_iter()
        .map(|&(old_tool, new_tool)| {
            z3::with_z3_config(&z3::Config::new(), || {
                let mut part = SemanticDiff::default();
                compare_tool(old, new, old_tool, new_tool, timeout_ms, &mut part).map(|()| part)
            })
        })
        .collect();
    for result in results {
        let part = result?;
        diff.changes.extend(part.changes);
        diff.unknown.extend(part.unknown);
        diff.truncated.extend(part.truncated);
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
    let before = side(old_set, old_tool, Some(new_set))?;
    let after = side(new_set, new_tool, None)?;
    let old_rules: Vec<usize> = old_set.rules_naming(old_tool).collect();
    let new_rules: Vec<usize> = new_set.rules_naming(new_tool).collect();
    let mut atoms: BTreeMap<&String, &Bool> = BTreeMap::new();
    for side in [&before, &after] {
        for (rule, name) in &side.names {
            atoms.insert(name, &side.matched[rule]);
        }
    }
    let atoms: Vec<Bool> = atoms.into_values().cloned().collect();
    let language_lemmas = OnceCell::new();
    let mut search = ClassSearch::new(old, new, old_tool, new_tool);
    search.seed();
    let outcomes = [Outcome::Allow, Outcome::Deny, Outcome::RequireApproval];
    for from in outcomes {
        for to in outcomes {
            // Same decision: only approval changes (other groups) count.
            if from != to || from == Outcome::RequireApproval {
                let pair = Pair {
                    before: &before,
                    after: &after,
                    old_rules: &old_rules,
                    new_rules: &new_rules,
                    atoms: &atoms,
                    language_lemmas: &language_lemmas,
                    from,
                    to,
                };
                enumerate(&pair, &mut search, timeout_ms, diff)?;
            }
        }
    }
    for class in search.found {
        let (from, to) = (class.was.decision, class.is.decision);
        diff.changes.push(Change {
            kind: ChangeKind::of(from, to),
            tool: tool_name.clone(),
            from,
            to,
            approvers: (from == to)
                .then(|| (class.was.approvers.clone(), class.is.approvers.clone())),
            old_rules: class.was.rules,
            new_rules: class.is.rules,
            witness: class.witness,
        });
    }
    Ok(())
}

/// A model as a request that both versions can read: the new version's fields, plus the
/// attributes, arguments and approver groups only the old version declares.
fn merged_request(before: &Side, after: &Side, model: &Model) -> Json {
    let mut request = after
        .encoding
        .request_from_model_as(model, after.tool as usize);
    let old = before
        .encoding
        .request_from_model_as(model, before.tool as usize);
    for key in ["agent", "context", "args"] {
        if let (Some(into), Some(from)) = (
            request.get_mut(key).and_then(Json::as_object_mut),
            old.get(key).and_then(Json::as_object),
        ) {
            for (name, value) in from {
                into.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    let mut groups: Vec<Json> = [&request, &old]
        .iter()
        .filter_map(|r| r.get("approvals").and_then(Json::as_array))
        .flatten()
        .cloned()
        .collect();
    groups.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    groups.dedup();
    if !groups.is_empty() {
        request["approvals"] = Json::Array(groups);
    }
    request
}

/// One pair of decisions of one tool, old → new, and the two versions' terms for it.
struct Pair<'p, 'a> {
    before: &'p Side<'a>,
    after: &'p Side<'a>,
    old_rules: &'p [usize],
    new_rules: &'p [usize],
    /// The match Booleans of both versions (a rule both have is one Boolean).
    atoms: &'p [Bool],
    /// Lemmas about the languages of the tool's regex memberships (`languages.rs`), computed
    /// the first time Z3 gives up on one of the tool's pairs.
    language_lemmas: &'p OnceCell<Vec<Bool>>,
    from: Outcome,
    to: Outcome,
}

impl Pair<'_, '_> {
    fn name(&self) -> String {
        format!("{} → {}", self.from.as_str(), self.to.as_str())
    }

    fn unfinished(&self, reason: String) -> Unfinished {
        Unfinished {
            tool: self.after.encoding.set.schema.tools[self.after.tool as usize]
                .name
                .clone(),
            from: self.from,
            to: self.to,
            reason,
        }
    }

    /// The class of a witness as a term: the same deciding rules in both versions.
    fn class(&self, class: &Class) -> Bool {
        let (before, after) = (self.before, self.after);
        let (old_set, new_set) = (before.encoding.set, after.encoding.set);
        let old_kind = deciding_kind(old_set, before.tool as usize, &class.was);
        let new_kind = deciding_kind(new_set, after.tool as usize, &class.is);
        Bool::and(&[
            signature(before, old_set, &old_kind, &class.was.rules),
            signature(after, new_set, &new_kind, &class.is.rules),
        ])
    }

    fn holds_for(&self, class: &Class) -> bool {
        class.was.decision == self.from && class.is.decision == self.to
    }

    /// For a pair with the same decision in both versions: some approver group is needed in
    /// one version and not in the other.
    fn approvers_differ(&self) -> Bool {
        let needs = |side: &Side, group: &str| -> Bool {
            let set = side.encoding.set;
            any(set
                .rules_naming(side.tool as usize)
                .filter(|&r| matches!(&set.rules[r].effect, Effect::RequireApproval { groups } if groups.iter().any(|g| g == group)))
                .map(|r| side.over_matches(&side.encoding.waiting(r)))
                .collect())
        };
        let differs: Vec<Bool> = self
            .after
            .encoding
            .set
            .schema
            .approvers
            .iter()
            .map(|g| {
                let (a, b) = (needs(self.before, g), needs(self.after, g));
                Bool::or(&[Bool::and(&[a.clone(), b.not()]), Bool::and(&[a.not(), b])])
            })
            .collect();
        any(differs)
    }

    /// A proposal Z3 did not decide in its first try: with the language lemmas (computed once
    /// per tool), by strings chosen outside Z3 (exact, and usually quick), and only when that
    /// gives up, by Z3 with the whole limit.
    fn decide_undecided(
        &self,
        incremental: &mut Solver,
        build: &dyn Fn(bool) -> Solver,
        cube: &[Bool],
        timeout_ms: u32,
    ) -> Decided {
        let (before, after) = (self.before, self.after);
        let theory = || build(true);
        let mut memberships = before.encoding.memberships_of(self.old_rules);
        memberships.extend(after.encoding.memberships_of(self.new_rules));
        memberships.sort_by(|a, b| (&a.subject, &a.language).cmp(&(&b.subject, &b.language)));
        memberships.dedup_by(|a, b| a.subject == b.subject && a.language == b.language);
        if self.language_lemmas.get().is_none() {
            // Worth computing once per tool, and only when needed: what Z3 cannot refute is
            // most often two tests on one field whose languages do not meet.
            let _ = self
                .language_lemmas
                .set(crate::languages::lemmas(&memberships));
            *incremental = theory();
        }
        let literals_of = |subject: &str| {
            let mut texts = before.encoding.literals_of(subject);
            texts.extend(after.encoding.literals_of(subject));
            texts.sort();
            texts.dedup();
            texts
        };
        let deadline = Instant::now() + Duration::from_millis((timeout_ms / 2).into());
        match realize::decide(build, cube, &memberships, &literals_of, deadline) {
            Realized::Sat(model) => Decided::Sat(model),
            Realized::Unsat => Decided::Unsat(cube.to_vec()),
            Realized::Unknown(_) => decide(incremental, &theory, cube, timeout_ms),
        }
    }

    /// The witness of a class: the request's fields from the theory's model; its approvals
    /// and counters from the proposal. Rules match on the fields alone, so the two agree on
    /// every match, and only the proposal's approvals and counters are sure to give the class
    /// it proposed (the theory was free to choose others with the same decisions).
    fn witness(&self, model: &Model, proposal: &Model) -> Json {
        let (before, after) = (self.before, self.after);
        let mut witness = merged_request(before, after, model);
        let proposed = merged_request(before, after, proposal);
        for key in ["approvals", "counters"] {
            match proposed.get(key) {
                Some(value) => witness[key] = value.clone(),
                None => {
                    if let Some(map) = witness.as_object_mut() {
                        map.remove(key);
                    }
                }
            }
        }
        // Counters of limits only the old version has.
        let old_set = before.encoding.set;
        for (&rule, counter) in &before.encoding.counters {
            if !old_set.rules[rule].tools.contains(&(before.tool as usize)) {
                continue;
            }
            let value = proposal
                .eval(counter, true)
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            if value > 0 {
                witness["counters"][old_set.rules[rule].id.as_str()] = serde_json::json!(value);
            }
        }
        witness
    }

    /// Gives the class search a solver witness, which must be a new class of this pair (else
    /// the encoding and the evaluator disagree), then walks from it to its neighbours.
    fn offer(&self, search: &mut ClassSearch, witness: &Json) -> Result<(), AnalysisError> {
        let tool_name = &self.after.encoding.set.schema.tools[self.after.tool as usize].name;
        let start = search.found.len();
        match search.offer(witness) {
            Offer::New if self.holds_for(&search.found[start]) => {}
            Offer::Invalid(message) => {
                return Err(AnalysisError::Witness {
                    finding: format!("a change of `{tool_name}`"),
                    message: format!("the witness does not fit the schema: {message}: {witness}"),
                })
            }
            _ => {
                // The solver's witness is outside this pair, or in a class it was told to
                // exclude: the encoding and the evaluator disagree.
                return Err(AnalysisError::Witness {
                    finding: format!("a change of `{tool_name}` {}", self.name()),
                    message: format!(
                        "the evaluator does not decide the witness as a new class of this change: {witness}"
                    ),
                });
            }
        }
        search.walk(start);
        Ok(())
    }
}

/// Enumerates the classes of one pair with Z3, lazily: an abstraction holds only the two
/// decisions over the rules' match Booleans (and approvals and counters), so it proposes which
/// rules match; the theory solver (every rule's condition, regexes and domains) checks that
/// one proposal with the Booleans as assumptions. An impossible proposal comes back with an
/// unsat core, which the abstraction learns; a possible one comes back with a witness, a class
/// the search has not found. The concrete search then walks from it to its neighbours, and
/// every class found is excluded from the abstraction, until it has nothing left to propose.
///
/// Asked all at once (the decisions, every condition and the excluded classes in one solver),
/// the last question, whether any class is left, took Z3 4.8.12's string solver past its time
/// limit on a third of the 1,000-rule benchmark's changed tools; asked this way, each theory
/// check is a conjunction it decides in milliseconds.
fn enumerate(
    pair: &Pair,
    search: &mut ClassSearch,
    timeout_ms: u32,
    diff: &mut SemanticDiff,
) -> Result<(), AnalysisError> {
    let (before, after) = (pair.before, pair.after);
    let (old_tool, new_tool) = (before.tool as usize, after.tool as usize);
    // The old version's ranges and counters (its argument domains are the new one's), with
    // its own tool index: a tool added before this one numbers it differently.
    let mut skeleton = vec![
        before.fix(&before.encoding.domain),
        after.fix(&after.encoding.domain),
        before.term(pair.from),
        after.term(pair.to),
    ];
    if pair.from == pair.to {
        skeleton.push(pair.approvers_differ());
    }
    let abstraction = Solver::new();
    for term in &skeleton {
        abstraction.assert(term);
    }
    // Requests of this tool that both versions accept: each version's declaration of its
    // arguments holds (an argument only one declares is ignored by the other).
    skeleton.push(after.encoding.is_tool(new_tool));
    skeleton.push(after.fix(&after.encoding.declared_facts(new_tool)));
    skeleton.push(before.fix(&before.encoding.declared_facts(old_tool)));
    // The theory; without the regex membership definitions, the abstraction over strings
    // of `realize.rs`.
    let build = |with_memberships: bool| {
        let solver = Solver::new();
        if with_memberships {
            after.encoding.load_definitions(&solver, pair.new_rules);
            before.encoding.load_definitions(&solver, pair.old_rules);
        }
        for term in skeleton
            .iter()
            .chain(&before.definitions)
            .chain(&after.definitions)
        {
            solver.assert(term);
        }
        for lemma in pair.language_lemmas.get().into_iter().flatten() {
            solver.assert(lemma);
        }
        solver
    };
    let theory = || build(true);
    let mut incremental = theory();
    let mut excluded = 0;
    let mut listed = 0;
    let mut gave_up: Option<String> = None;
    loop {
        // Classes found since the last proposal (by the concrete search, or walking from a
        // witness) are excluded too.
        for class in &search.found[excluded..] {
            if pair.holds_for(class) {
                abstraction.assert(pair.class(class).not());
            }
        }
        excluded = search.found.len();
        match abstraction.check() {
            SatResult::Unsat => break,
            SatResult::Unknown => {
                gave_up = abstraction
                    .get_reason_unknown()
                    .or(Some("unknown".to_owned()));
                break;
            }
            SatResult::Sat => {}
        }
        let Some(proposal) = abstraction.get_model() else {
            gave_up = Some("no model".to_owned());
            break;
        };
        let cube: Vec<Bool> = pair
            .atoms
            .iter()
            .map(|b| match proposal.eval(b, true).and_then(|v| v.as_bool()) {
                Some(true) => b.clone(),
                _ => b.not(),
            })
            .collect();
        diff.queries += 1;
        let mut decided = decide(
            &mut incremental,
            &theory,
            &cube,
            timeout_ms.min(FIRST_TRY_MS),
        );
        if matches!(decided, Decided::Unknown(_)) {
            decided = pair.decide_undecided(&mut incremental, &build, &cube, timeout_ms);
        }
        let model = match decided {
            Decided::Unsat(core) => {
                // These rules cannot match (or fail to) together: never propose it again.
                abstraction.assert(crate::encode::all(core).not());
                continue;
            }
            Decided::Unknown(reason) => {
                // Undecided: set this proposal aside, go on with the others, and say so.
                gave_up = Some(reason);
                abstraction.assert(crate::encode::all(cube).not());
                continue;
            }
            Decided::Sat(_) if listed == MAX_CLASSES => {
                diff.truncated
                    .push(pair.unfinished(format!("more than {MAX_CLASSES} classes")));
                break;
            }
            Decided::Sat(model) => model,
        };
        listed += 1;
        // The request's fields from the theory's model; its approvals and counters from the
        // proposal. Rules match on the fields alone, so the two agree on every match, and
        // only the proposal's approvals and counters are sure to give the class it proposed
        // (the theory was free to choose others with the same decisions).
        let witness = pair.witness(&model, &proposal);
        pair.offer(search, &witness)?;
    }
    if let Some(reason) = gave_up {
        diff.unknown.push(pair.unfinished(reason));
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
