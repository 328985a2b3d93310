//! The policy set as Z3 terms: one symbolic request, each rule's match condition, and the
//! decision of language.md §3.
//!
//! Variables: the tool (an integer index); each agent and context attribute; each argument
//! name and type shared by the tools that declare it, with a presence flag; the session; one
//! flag per approver group; one counter per limit rule. Strings are Z3 strings, enums and tools
//! are integers, decimals are integers in millionths, lists of strings are a length and
//! [`LIST_BOUND`] element strings.

//!
//! Split by job: this module builds the variables, the domain and each rule's scope and match
//! terms; `conditions.rs` encodes conditions; `solvers.rs` makes the solver for a query with
//! only the definitions it needs; `decision.rs` is the decision procedure over match terms;
//! `model.rs` reads models back as JSON requests; `concrete.rs` decides terms on concrete
//! values (witness search and edge values).
mod concrete;
mod conditions;
mod decision;
mod model;
mod solvers;

pub use decision::Decision;

use crate::regex::{matching_language, text_language};
use crate::strings::{literal, unescape};
use polctl_lang::ir::{
    Attribute, CmpOp, Cond, Effect, Path, PolicySet, Scope, ScopeTerm, TextOp, Type, Value,
};
use serde_json::{json, Map, Value as Json};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use z3::ast::{Ast, Bool, Dynamic, Int, String as Z3String};
use z3::{Model, Solver};

/// Lists are reasoned about up to this many elements; proofs about lists hold up to it.
pub const LIST_BOUND: usize = 4;

/// Why a rule could not be encoded exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum Term {
    Str(Z3String),
    Int(Int),
    Bool(Bool),
    List { len: Int, items: Vec<Z3String> },
}

/// An argument variable: one per (name, type) across the tools that declare it.
#[derive(Debug, Clone)]
pub struct ArgVar {
    pub value: Term,
    pub present: Bool,
}

/// The key that names a variable's type: two versions share a variable when its name and
/// this key are the same (ranges may differ; enum members may not).
pub fn type_key(ty: &Type) -> String {
    match ty {
        Type::String => "string".into(),
        Type::Int { .. } => "int".into(),
        Type::Decimal { .. } => "decimal".into(),
        Type::Bool => "bool".into(),
        Type::Enum { members } => format!("enum:{}", members.join(",")),
        Type::StringList => "list".into(),
    }
}

fn new_term(name: &str, ty: &Type) -> Term {
    match ty {
        Type::String => Term::Str(Z3String::new_const(name)),
        Type::Int { .. } | Type::Decimal { .. } | Type::Enum { .. } => {
            Term::Int(Int::new_const(name))
        }
        Type::Bool => Term::Bool(Bool::new_const(name)),
        Type::StringList => Term::List {
            len: Int::new_const(format!("{name}#len")),
            items: (0..LIST_BOUND)
                .map(|i| Z3String::new_const(format!("{name}#{i}")))
                .collect(),
        },
    }
}

/// What values of a type a request may carry.
fn domain(term: &Term, ty: &Type) -> Bool {
    match (term, ty) {
        (
            Term::Int(v),
            Type::Int {
                range: Some((lo, hi)),
            },
        ) => Bool::and(&[v.ge(Int::from_i64(*lo)), v.le(Int::from_i64(*hi))]),
        (
            Term::Int(v),
            Type::Decimal {
                range: Some((lo, hi)),
            },
        ) => Bool::and(&[
            v.ge(Int::from_i64(lo.millionths())),
            v.le(Int::from_i64(hi.millionths())),
        ]),
        (Term::Int(v), Type::Enum { members }) => Bool::and(&[
            v.ge(Int::from_i64(0)),
            v.lt(Int::from_i64(members.len() as i64)),
        ]),
        (Term::List { len, .. }, _) => Bool::and(&[
            len.ge(Int::from_i64(0)),
            len.le(Int::from_i64(LIST_BOUND as i64)),
        ]),
        _ => Bool::from_bool(true),
    }
}

fn bool_of(items: Vec<Bool>, and: bool) -> Bool {
    match (items.len(), and) {
        (0, true) => Bool::from_bool(true),
        (0, false) => Bool::from_bool(false),
        (1, _) => items
            .into_iter()
            .next()
            .unwrap_or_else(|| Bool::from_bool(and)),
        (_, true) => Bool::and(&items),
        (_, false) => Bool::or(&items),
    }
}

pub fn all(items: Vec<Bool>) -> Bool {
    bool_of(items, true)
}

pub fn any(items: Vec<Bool>) -> Bool {
    bool_of(items, false)
}

fn compare(left: &Int, op: CmpOp, right: Int) -> Bool {
    match op {
        CmpOp::Eq => left.eq(&right),
        CmpOp::Ne => left.eq(&right).not(),
        CmpOp::Lt => left.lt(&right),
        CmpOp::Le => left.le(&right),
        CmpOp::Gt => left.gt(&right),
        CmpOp::Ge => left.ge(&right),
    }
}

/// The symbolic request and every rule's encoding over it.
pub struct Encoding<'s> {
    pub set: &'s PolicySet,
    pub tool: Int,
    pub agent: Vec<Term>,
    pub context: Vec<Term>,
    /// Ordered, so that terms built over every argument come out the same in every run.
    pub args: BTreeMap<(String, String), ArgVar>,
    pub session: Z3String,
    pub approvals: Vec<Bool>,
    /// Per rule index, for limit rules.
    pub counters: BTreeMap<usize, Int>,
    /// What every request satisfies: ranges and enum domains.
    pub domain: Bool,
    /// Per tool: if the request is for it, which arguments are present, with their domains.
    pub tool_domains: Vec<Bool>,
    /// Per rule: the request matches it (scope, tool, `when`, not `unless`).
    pub matches: Vec<Bool>,
    /// Per rule: its policy applies and the tool is one of its actions.
    pub reach: Vec<Bool>,
    /// Per rule: `when` holds and `unless` does not.
    pub condition: Vec<Bool>,
    /// Per rule: the regex definitions its conditions use (indexes into the definitions).
    regexes_of_rule: Vec<Vec<usize>>,
    /// Regex memberships, which are defined in SMT-LIB text (see `regex.rs`): declarations and
    /// assertions every solver over this encoding must load (`Encoding::solver_for`). Interned
    /// as conditions are encoded (a property's condition after the rules), hence the cell.
    definitions: RefCell<Definitions>,
}

/// A condition that is not a rule's, encoded: its term and the regex memberships the term
/// refers to ([`Encoding::load_condition_definitions`] loads them into a solver).
pub struct EncodedCondition {
    pub term: Bool,
    memberships: Vec<usize>,
}

/// A Boolean defined as a string being in a language.
#[derive(Clone)]
struct Membership {
    member: Bool,
    subject: Z3String,
    /// An SMT-LIB regex term.
    language: String,
    test: TextTest,
}

/// What a membership tests, to decide it on a concrete string.
#[derive(Clone)]
pub(crate) enum TextTest {
    /// A `matches` pattern: decided by Z3 on the constant (and cached).
    Regex(String),
    /// Starts with, ends with or contains one of the texts: decided directly.
    Text(TextOp, Vec<String>),
}

/// A regex membership as [`Encoding::memberships_of`] lists it.
#[derive(Clone)]
pub(crate) struct LanguageTest {
    pub member: Bool,
    /// The string variable tested, and its Z3 name.
    pub variable: Z3String,
    pub subject: String,
    /// The SMT-LIB regex term.
    pub language: String,
    pub test: TextTest,
}

/// Defines each membership's Boolean in `solver` as its variable being in its language.
pub(crate) fn load_tests(solver: &Solver, tests: &[LanguageTest]) {
    if tests.is_empty() {
        return;
    }
    let mut declarations = BTreeSet::new();
    let mut assertions = String::new();
    for LanguageTest {
        member,
        variable,
        language,
        ..
    } in tests
    {
        declarations.insert(format!("(declare-const {variable} String)"));
        declarations.insert(format!("(declare-const {member} Bool)"));
        assertions.push_str(&format!(
            "(assert (= {member} (str.in_re {variable} {language})))"
        ));
    }
    let text: String = declarations.into_iter().collect::<String>() + &assertions;
    solver.from_string(text);
}

impl TextTest {
    /// Whether a text test holds for `value`; `None` for a regex (which Z3 decides, so that
    /// the answer is the encoding's).
    pub(crate) fn holds(&self, value: &str) -> Option<bool> {
        let TextTest::Text(op, texts) = self else {
            return None;
        };
        Some(texts.iter().any(|t| match op {
            TextOp::StartsWith => value.starts_with(t.as_str()),
            TextOp::EndsWith => value.ends_with(t.as_str()),
            // (`matches` is a `Regex`, never a `Text`.)
            TextOp::Contains | TextOp::Matches => value.contains(t.as_str()),
        }))
    }
}

#[derive(Default)]
struct Definitions {
    /// Every regex membership.
    members: Vec<Membership>,
    /// `(subject, language)` to its index in `members`: one membership per distinct test.
    index: HashMap<(String, String), usize>,
    /// Concrete membership results, `(language, value)` to whether the value matches.
    cache: HashMap<(String, String), bool>,
    /// Per string variable (by its Z3 name), the texts it is compared with by `==`, `in` or a
    /// scope: what a string chosen for it outside Z3 (`realize.rs`) must respect.
    literals: HashMap<String, BTreeSet<String>>,
}

impl<'s> Encoding<'s> {
    /// The encoding of `set`. Its variables are named after the request fields and its regex
    /// memberships after their subject and language, so two encodings of schemas with the same
    /// declarations (the old and the new version of a set, in `polctl diff`) share them in one
    /// solver, and a rule both versions have encodes to the same term.
    pub fn new(set: &'s PolicySet) -> Result<Encoding<'s>, EncodeError> {
        Encoding::build(set, |_| true)
    }

    /// The encoding of the rules that name one of `tools` (the others never match, and have
    /// no counter): what a question about those tools needs, for a fraction of the cost on a
    /// large set.
    pub fn for_tools(set: &'s PolicySet, tools: &[usize]) -> Result<Encoding<'s>, EncodeError> {
        Encoding::build(set, |rule| rule.tools.iter().any(|t| tools.contains(t)))
    }

    fn build(
        set: &'s PolicySet,
        encoded: impl Fn(&polctl_lang::ir::Rule) -> bool,
    ) -> Result<Encoding<'s>, EncodeError> {
        let schema = &set.schema;
        let tool = Int::new_const("tool");
        let mut constraints = vec![
            tool.ge(Int::from_i64(0)),
            tool.lt(Int::from_i64(schema.tools.len() as i64)),
        ];
        let attributes =
            |prefix: &str, declared: &[Attribute], constraints: &mut Vec<Bool>| -> Vec<Term> {
                declared
                    .iter()
                    .map(|a| {
                        let term = new_term(&format!("{prefix}.{}", a.name), &a.ty);
                        constraints.push(domain(&term, &a.ty));
                        term
                    })
                    .collect()
            };
        let agent = attributes("agent", &schema.agent, &mut constraints);
        let context = attributes("context", &schema.context, &mut constraints);
        let mut args: BTreeMap<(String, String), ArgVar> = BTreeMap::new();
        for tool_decl in &schema.tools {
            for arg in &tool_decl.args {
                let key = (arg.name.clone(), type_key(&arg.ty));
                args.entry(key.clone()).or_insert_with(|| ArgVar {
                    value: new_term(&format!("args.{}:{}", key.0, key.1), &arg.ty),
                    present: Bool::new_const(format!("has args.{}:{}", key.0, key.1)),
                });
            }
        }
        // Per tool: which arguments it carries and their domains. Kept apart so that a query
        // about a few tools only loads theirs.
        let mut tool_domains = Vec::new();
        for (index, tool_decl) in schema.tools.iter().enumerate() {
            let is_tool = tool.eq(Int::from_i64(index as i64));
            let mut facts = Vec::new();
            for ((name, key), var) in &args {
                match tool_decl
                    .args
                    .iter()
                    .find(|a| &a.name == name && &type_key(&a.ty) == key)
                {
                    Some(arg) => {
                        if !arg.optional {
                            facts.push(var.present.clone());
                        }
                        facts.push(var.present.implies(domain(&var.value, &arg.ty)));
                    }
                    None => facts.push(var.present.not()),
                }
            }
            tool_domains.push(is_tool.implies(all(facts)));
        }
        let approvals = schema
            .approvers
            .iter()
            .map(|g| Bool::new_const(format!("approved {g}")))
            .collect();
        let mut counters = BTreeMap::new();
        for (index, rule) in set.rules.iter().enumerate() {
            if matches!(rule.effect, Effect::Limit(_)) && encoded(rule) {
                let counter = Int::new_const(format!("counter {}", rule.id));
                constraints.push(counter.ge(Int::from_i64(0)));
                counters.insert(index, counter);
            }
        }
        let mut encoding = Encoding {
            set,
            tool,
            agent,
            context,
            args,
            session: Z3String::new_const("session"),
            approvals,
            counters,
            domain: all(constraints),
            tool_domains,
            matches: Vec::new(),
            reach: Vec::new(),
            condition: Vec::new(),
            regexes_of_rule: Vec::new(),
            definitions: RefCell::new(Definitions::default()),
        };
        for rule in &set.rules {
            let (reach, condition, used) = if encoded(rule) {
                encoding.rule_parts(rule)?
            } else {
                (Bool::from_bool(false), Bool::from_bool(false), Vec::new())
            };
            encoding.regexes_of_rule.push(used);
            encoding
                .matches
                .push(Bool::and(&[reach.clone(), condition.clone()]));
            encoding.reach.push(reach);
            encoding.condition.push(condition);
        }
        Ok(encoding)
    }

    /// The variable of an argument with this name and declared type.
    pub fn arg_variable(&self, name: &str, ty: &Type) -> Option<&ArgVar> {
        self.args.get(&(name.to_owned(), type_key(ty)))
    }

    pub fn is_tool(&self, index: usize) -> Bool {
        self.tool.eq(Int::from_i64(index as i64))
    }

    fn scope(&self, policy: usize) -> Bool {
        let schema = &self.set.schema;
        let Some(policy) = self.set.policies.get(policy) else {
            return Bool::from_bool(false);
        };
        let terms = match &policy.scope {
            Scope::All => return Bool::from_bool(true),
            Scope::Any(terms) => terms,
        };
        let attribute_is = |name: &str, value: &str| -> Bool {
            let Some(index) = schema.agent.iter().position(|a| a.name == name) else {
                return Bool::from_bool(false);
            };
            match (&self.agent[index], &schema.agent[index].ty) {
                (Term::Str(s), _) => self.text_is(s, value),
                (Term::Int(i), Type::Enum { members }) => {
                    match members.iter().position(|m| m == value) {
                        Some(member) => i.eq(Int::from_i64(member as i64)),
                        None => Bool::from_bool(false),
                    }
                }
                _ => Bool::from_bool(false),
            }
        };
        let simple = |term: &ScopeTerm| match term {
            ScopeTerm::Tenant(t) => attribute_is("tenant", t),
            ScopeTerm::Agent(a) => attribute_is("id", a),
            ScopeTerm::Role(r) => attribute_is("role", r),
            ScopeTerm::Both(_) => Bool::from_bool(false),
        };
        any(terms
            .iter()
            .map(|term| match term {
                ScopeTerm::Both(parts) => {
                    let parts: Vec<Bool> = parts.iter().map(simple).collect();
                    Bool::and(&parts.iter().collect::<Vec<_>>())
                }
                term => simple(term),
            })
            .collect())
    }

    /// `(reach, condition, regex memberships used)` of a rule: scope and tool, then `when` and
    /// not `unless`.
    fn rule_parts(
        &self,
        rule: &polctl_lang::ir::Rule,
    ) -> Result<(Bool, Bool, Vec<usize>), EncodeError> {
        let error = |message: String| EncodeError {
            rule: rule.id.clone(),
            message,
        };
        let reach = all(vec![
            self.scope(rule.policy),
            any(rule.tools.iter().map(|&t| self.is_tool(t)).collect()),
        ]);
        let mut parts = Vec::new();
        let mut used = Vec::new();
        if let Some(when) = &rule.when {
            parts.push(
                self.cond(when, &rule.tools, None, &mut used)
                    .map_err(error)?,
            );
        }
        if let Some(unless) = &rule.unless {
            let unless = self.cond(unless, &rule.tools, None, &mut used);
            parts.push(unless.map_err(error)?.not());
        }
        Ok((reach, all(parts), used))
    }
}
