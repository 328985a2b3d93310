//! The policy set as Z3 terms: one symbolic request, each rule's match condition, and the
//! decision of language.md §3.
//!
//! Variables: the tool (an integer index); each agent and context attribute; each argument
//! name and type shared by the tools that declare it, with a presence flag; the session; one
//! flag per approver group; one counter per limit rule. Strings are Z3 strings, enums and tools
//! are integers, decimals are integers in millionths, lists of strings are a length and
//! [`LIST_BOUND`] element strings.

use crate::regex::{matching_language, text_language};
use crate::strings::{literal, unescape};
use polctl_lang::ir::{
    Attribute, CmpOp, Cond, Effect, Path, PolicySet, Scope, ScopeTerm, TextOp, Type, Value,
};
use serde_json::{json, Map, Value as Json};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
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
    pub args: HashMap<(String, String), ArgVar>,
    pub session: Z3String,
    pub approvals: Vec<Bool>,
    /// Per rule index, for limit rules.
    pub counters: HashMap<usize, Int>,
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
    /// assertions every solver over this encoding must load (`Encoding::solver_for`).
    definitions: RefCell<Definitions>,
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
    /// The memberships used since the last rule was encoded.
    used: Vec<usize>,
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
        let mut args: HashMap<(String, String), ArgVar> = HashMap::new();
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
        let mut counters = HashMap::new();
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
            let (reach, condition) = if encoded(rule) {
                encoding.rule_parts(rule)?
            } else {
                (Bool::from_bool(false), Bool::from_bool(false))
            };
            let used = std::mem::take(&mut encoding.definitions.borrow_mut().used);
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
        any(terms
            .iter()
            .map(|term| match term {
                ScopeTerm::Tenant(t) => attribute_is("tenant", t),
                ScopeTerm::Agent(a) => attribute_is("id", a),
                ScopeTerm::Role(r) => attribute_is("role", r),
            })
            .collect())
    }

    /// `(reach, condition)` of a rule: scope and tool, then `when` and not `unless`.
    fn rule_parts(&self, rule: &polctl_lang::ir::Rule) -> Result<(Bool, Bool), EncodeError> {
        let error = |message: String| EncodeError {
            rule: rule.id.clone(),
            message,
        };
        let reach = all(vec![
            self.scope(rule.policy),
            any(rule.tools.iter().map(|&t| self.is_tool(t)).collect()),
        ]);
        let mut parts = Vec::new();
        if let Some(when) = &rule.when {
            parts.push(self.cond(when, &rule.tools, None).map_err(error)?);
        }
        if let Some(unless) = &rule.unless {
            parts.push(self.cond(unless, &rule.tools, None).map_err(error)?.not());
        }
        Ok((reach, all(parts)))
    }

    fn term(
        &self,
        path: &Path,
        tools: &[usize],
        element: Option<&Z3String>,
    ) -> Result<Term, String> {
        let schema = &self.set.schema;
        let missing = || format!("`{path}` is not declared");
        match path {
            Path::Agent(name) => schema
                .agent
                .iter()
                .position(|a| &a.name == name)
                .map(|i| self.agent[i].clone())
                .ok_or_else(missing),
            Path::Context(name) => schema
                .context
                .iter()
                .position(|a| &a.name == name)
                .map(|i| self.context[i].clone())
                .ok_or_else(missing),
            Path::Arg(name) => {
                let ty = self.set.schema.path_type(path, tools).ok_or_else(missing)?;
                self.args
                    .get(&(name.clone(), type_key(&ty)))
                    .map(|v| v.value.clone())
                    .ok_or_else(missing)
            }
            Path::Session => Ok(Term::Str(self.session.clone())),
            Path::Element => element
                .cloned()
                .map(Term::Str)
                .ok_or_else(|| "an element outside `every`/`some`".to_owned()),
            Path::ToolName | Path::ToolKind => Err("tool paths have no term".to_owned()),
        }
    }

    fn string_term(
        &self,
        path: &Path,
        tools: &[usize],
        element: Option<&Z3String>,
    ) -> Result<Z3String, String> {
        match self.term(path, tools, element)? {
            Term::Str(s) => Ok(s),
            _ => Err(format!("`{path}` is not a string")),
        }
    }

    fn value_equals(
        &self,
        path: &Path,
        tools: &[usize],
        element: Option<&Z3String>,
        value: &Value,
    ) -> Result<Bool, String> {
        let schema = &self.set.schema;
        match value {
            Value::Tool(name) => Ok(match schema.tool_index(name) {
                Some(index) => self.is_tool(index),
                None => Bool::from_bool(false),
            }),
            Value::Kind(kind) => Ok(any(schema
                .tools
                .iter()
                .enumerate()
                .filter(|(_, t)| t.kind == *kind)
                .map(|(i, _)| self.is_tool(i))
                .collect())),
            Value::Str(s) => Ok(self.text_is(&self.string_term(path, tools, element)?, s)),
            Value::Bool(b) => match self.term(path, tools, element)? {
                Term::Bool(v) => Ok(v.eq(Bool::from_bool(*b))),
                _ => Err(format!("`{path}` is not a bool")),
            },
            Value::Int(i) => match self.term(path, tools, element)? {
                Term::Int(v) => Ok(v.eq(Int::from_i64(*i))),
                _ => Err(format!("`{path}` is not a number")),
            },
            Value::Decimal(d) => match self.term(path, tools, element)? {
                Term::Int(v) => Ok(v.eq(Int::from_i64(d.millionths()))),
                _ => Err(format!("`{path}` is not a number")),
            },
            Value::Enum(member) => {
                let Some(Type::Enum { members }) = self.set.schema.path_type(path, tools) else {
                    return Err(format!("`{path}` is not an enum"));
                };
                match (
                    self.term(path, tools, element)?,
                    members.iter().position(|m| m == member),
                ) {
                    (Term::Int(v), Some(index)) => Ok(v.eq(Int::from_i64(index as i64))),
                    _ => Ok(Bool::from_bool(false)),
                }
            }
        }
    }

    fn list(&self, path: &Path, tools: &[usize]) -> Result<(Int, Vec<Z3String>), String> {
        match self.term(path, tools, None)? {
            Term::List { len, items } => Ok((len, items)),
            _ => Err(format!("`{path}` is not a list")),
        }
    }

    /// Encodes a condition; `element` is the list element under `every`/`some`.
    pub fn cond(
        &self,
        cond: &Cond,
        tools: &[usize],
        element: Option<&Z3String>,
    ) -> Result<Bool, String> {
        Ok(match cond {
            Cond::And(items) => all(items
                .iter()
                .map(|c| self.cond(c, tools, element))
                .collect::<Result<_, _>>()?),
            Cond::Or(items) => any(items
                .iter()
                .map(|c| self.cond(c, tools, element))
                .collect::<Result<_, _>>()?),
            Cond::Not(inner) => self.cond(inner, tools, element)?.not(),
            Cond::Has(name) => {
                let ty = self
                    .set
                    .schema
                    .path_type(&Path::Arg(name.clone()), tools)
                    .ok_or_else(|| format!("`args.{name}` is not declared"))?;
                self.args
                    .get(&(name.clone(), type_key(&ty)))
                    .map(|v| v.present.clone())
                    .ok_or_else(|| format!("`args.{name}` is not declared"))?
            }
            Cond::Compare { path, op, value } => match (op, value) {
                (CmpOp::Eq, _) => self.value_equals(path, tools, element, value)?,
                (CmpOp::Ne, _) => self.value_equals(path, tools, element, value)?.not(),
                (_, Value::Int(_) | Value::Decimal(_)) => {
                    let Term::Int(left) = self.term(path, tools, element)? else {
                        return Err(format!("`{path}` is not a number"));
                    };
                    let right = match value {
                        Value::Int(i) => *i,
                        Value::Decimal(d) => d.millionths(),
                        _ => 0,
                    };
                    compare(&left, *op, Int::from_i64(right))
                }
                _ => return Err(format!("`{}` does not order `{path}`", op.as_str())),
            },
            Cond::In { path, values } => any(values
                .iter()
                .map(|v| self.value_equals(path, tools, element, v))
                .collect::<Result<_, _>>()?),
            Cond::Text { path, op, pattern } => {
                let subject = self.string_term(path, tools, element)?;
                match op {
                    TextOp::Matches => {
                        let language = matching_language(pattern)
                            .map_err(|e| format!("regex `{pattern}`: {}", e.0))?;
                        self.regex_member(&subject, language, TextTest::Regex(pattern.clone()))
                    }
                    _ => {
                        let texts = vec![pattern.clone()];
                        let language = text_language(*op, &texts);
                        self.regex_member(&subject, language, TextTest::Text(*op, texts))
                    }
                }
            }
            Cond::ContainsAny { path, needles } => {
                let subject = self.string_term(path, tools, element)?;
                let language = text_language(TextOp::Contains, needles);
                self.regex_member(
                    &subject,
                    language,
                    TextTest::Text(TextOp::Contains, needles.clone()),
                )
            }
            Cond::ListContains { path, value } => {
                let (len, items) = self.list(path, tools)?;
                any(items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Bool::and(&[len.gt(Int::from_i64(i as i64)), self.text_is(item, value)])
                    })
                    .collect())
            }
            Cond::ListContainsAny { path, values } => {
                let (len, items) = self.list(path, tools)?;
                any(items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        Bool::and(&[
                            len.gt(Int::from_i64(i as i64)),
                            any(values.iter().map(|v| self.text_is(item, v)).collect()),
                        ])
                    })
                    .collect())
            }
            Cond::Every { path, cond } => {
                let (len, items) = self.list(path, tools)?;
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    parts.push(len.gt(Int::from_i64(i as i64)).implies(self.cond(
                        cond,
                        tools,
                        Some(item),
                    )?));
                }
                all(parts)
            }
            Cond::Some { path, cond } => {
                let (len, items) = self.list(path, tools)?;
                let mut parts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    parts.push(Bool::and(&[
                        len.gt(Int::from_i64(i as i64)),
                        self.cond(cond, tools, Some(item))?,
                    ]));
                }
                any(parts)
            }
            Cond::Count { path, op, value } => {
                let (len, _) = self.list(path, tools)?;
                compare(&len, *op, Int::from_i64(*value))
            }
        })
    }

    /// `subject == text`, remembered as a literal of `subject`.
    fn text_is(&self, subject: &Z3String, text: &str) -> Bool {
        self.definitions
            .borrow_mut()
            .literals
            .entry(subject.to_string())
            .or_default()
            .insert(text.to_owned());
        subject.eq(literal(text))
    }

    /// The texts a string variable (by its Z3 name) is compared with anywhere in the encoding.
    pub(crate) fn literals_of(&self, subject: &str) -> Vec<String> {
        self.definitions
            .borrow()
            .literals
            .get(subject)
            .map(|texts| texts.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A Boolean defined as `subject` being in `language` (an SMT-LIB regex term). Its name is
    /// a digest of both, so the same test gets the same Boolean in every encoding: the solver
    /// then reasons once about a regex that the old and the new version share.
    fn regex_member(&self, subject: &Z3String, language: String, test: TextTest) -> Bool {
        use sha2::{Digest, Sha256};
        let mut definitions = self.definitions.borrow_mut();
        let key = (subject.to_string(), language);
        let index = match definitions.index.get(&key) {
            Some(&index) => index,
            None => {
                let digest = Sha256::new()
                    .chain_update(key.0.as_bytes())
                    .chain_update([0])
                    .chain_update(key.1.as_bytes())
                    .finalize();
                let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                let member = Bool::new_const(format!("matches#{name}"));
                definitions.members.push(Membership {
                    member,
                    subject: subject.clone(),
                    language: key.1.clone(),
                    test,
                });
                let index = definitions.members.len() - 1;
                definitions.index.insert(key, index);
                index
            }
        };
        definitions.used.push(index);
        definitions.members[index].member.clone()
    }

    /// A solver with the domain and the regex definitions that `rules` use. Loading only
    /// those keeps Z3's string solver away from regexes a query cannot involve. When `tools`
    /// is given, the request's tool is one of them and only their argument domains are loaded
    /// (a query whose subject rule names those tools loses nothing by it).
    pub fn solver_for(&self, rules: &[usize], tools: Option<&[usize]>) -> Solver {
        let solver = self.domain_solver(tools);
        self.load_definitions(&solver, rules);
        solver
    }

    /// [`Encoding::solver_for`] without the regex membership definitions: their Booleans are
    /// free (the abstraction of `realize.rs`).
    pub(crate) fn domain_solver(&self, tools: Option<&[usize]>) -> Solver {
        let solver = Solver::new();
        solver.assert(&self.domain);
        match tools {
            Some(tools) => {
                solver.assert(any(tools.iter().map(|&t| self.is_tool(t)).collect()));
                for &t in tools {
                    if let Some(facts) = self.tool_domains.get(t) {
                        solver.assert(facts);
                    }
                }
            }
            None => self.tool_domains.iter().for_each(|d| solver.assert(d)),
        }
        solver
    }

    /// Loads the regex membership definitions that `rules` use into a solver.
    pub fn load_definitions(&self, solver: &Solver, rules: &[usize]) {
        self.load_memberships(solver, self.membership_indexes(rules));
    }

    /// The indexes of the regex memberships that `rules` use (unsorted, maybe repeated).
    fn membership_indexes(&self, rules: &[usize]) -> Vec<usize> {
        rules
            .iter()
            .flat_map(|&r| self.regexes_of_rule.get(r).cloned().unwrap_or_default())
            .collect()
    }

    /// Loads the regex membership definitions of conditions encoded with [`Encoding::cond`]
    /// since the rules were (a property's `forall`), and returns them.
    pub(crate) fn load_condition_definitions(&self, solver: &Solver) -> Vec<LanguageTest> {
        let used = std::mem::take(&mut self.definitions.borrow_mut().used);
        self.load_memberships(solver, used.clone());
        self.language_tests(used)
    }

    /// The regex memberships that `rules` use.
    pub(crate) fn memberships_of(&self, rules: &[usize]) -> Vec<LanguageTest> {
        self.language_tests(self.membership_indexes(rules))
    }

    fn language_tests(&self, mut indexes: Vec<usize>) -> Vec<LanguageTest> {
        let definitions = self.definitions.borrow();
        indexes.sort_unstable();
        indexes.dedup();
        indexes
            .into_iter()
            .map(|i| {
                let m = &definitions.members[i];
                LanguageTest {
                    member: m.member.clone(),
                    variable: m.subject.clone(),
                    subject: m.subject.to_string(),
                    language: m.language.clone(),
                    test: m.test.clone(),
                }
            })
            .collect()
    }

    fn load_memberships(&self, solver: &Solver, indexes: Vec<usize>) {
        load_tests(solver, &self.language_tests(indexes));
    }

    /// What `tool`'s declaration says of its arguments: the required ones are present, and a
    /// present one is in its type's range. Unlike the tool's domain in [`Encoding::solver_for`],
    /// nothing about the arguments it does not declare (which another version of the set may).
    pub fn declared_facts(&self, tool: usize) -> Bool {
        let mut facts = Vec::new();
        for arg in self.set.schema.tools.get(tool).map_or(&[][..], |t| &t.args) {
            let Some(var) = self.args.get(&(arg.name.clone(), type_key(&arg.ty))) else {
                continue;
            };
            if !arg.optional {
                facts.push(var.present.clone());
            }
            facts.push(var.present.implies(domain(&var.value, &arg.ty)));
        }
        all(facts)
    }

    /// A matching approval rule still waits for one of its groups.
    pub fn waiting(&self, rule: usize) -> Bool {
        let schema = &self.set.schema;
        let Effect::RequireApproval { groups } = &self.set.rules[rule].effect else {
            return Bool::from_bool(false);
        };
        let missing = any(groups
            .iter()
            .filter_map(|g| schema.approvers.iter().position(|a| a == g))
            .map(|i| self.approvals[i].not())
            .collect());
        Bool::and(&[self.matches[rule].clone(), missing])
    }

    /// A matching limit whose counter already holds its maximum.
    pub fn limit_reached(&self, rule: usize) -> Bool {
        match (&self.set.rules[rule].effect, self.counters.get(&rule)) {
            (Effect::Limit(limit), Some(counter)) => Bool::and(&[
                self.matches[rule].clone(),
                counter.ge(Int::from_i64(limit.max.min(i64::MAX as u64) as i64)),
            ]),
            _ => Bool::from_bool(false),
        }
    }

    fn of_effect(&self, wanted: fn(&Effect) -> bool) -> Vec<usize> {
        self.set
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| wanted(&r.effect))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn deny_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::Deny { .. }))
    }

    pub fn approval_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::RequireApproval { .. }))
    }

    pub fn allow_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::Allow { .. }))
    }

    pub fn limit_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::Limit(_)))
    }

    /// The three decisions, as terms over the request (language.md §3).
    pub fn decision(&self) -> Decision {
        let every: Vec<usize> = (0..self.set.rules.len()).collect();
        self.decision_over(&every)
    }

    /// The decision terms over some rules only: for a request whose tool only these rules
    /// name, the same decision as [`Encoding::decision`], with much smaller terms.
    pub fn decision_over(&self, rules: &[usize]) -> Decision {
        let of = |wanted: fn(&Effect) -> bool| -> Vec<usize> {
            rules
                .iter()
                .copied()
                .filter(|&r| wanted(&self.set.rules[r].effect))
                .collect()
        };
        let denied = any(of(|e| matches!(e, Effect::Deny { .. }))
            .iter()
            .map(|&r| self.matches[r].clone())
            .collect());
        let waiting = any(of(|e| matches!(e, Effect::RequireApproval { .. }))
            .iter()
            .map(|&r| self.waiting(r))
            .collect());
        let allowed = any(of(|e| matches!(e, Effect::Allow { .. }))
            .iter()
            .map(|&r| self.matches[r].clone())
            .collect());
        let limited = any(of(|e| matches!(e, Effect::Limit(_)))
            .iter()
            .map(|&r| self.limit_reached(r))
            .collect());
        let require_approval = Bool::and(&[denied.not(), waiting.clone()]);
        let allow = Bool::and(&[denied.not(), waiting.not(), allowed.clone(), limited.not()]);
        let deny = Bool::or(&[
            denied.clone(),
            Bool::and(&[waiting.not(), Bool::or(&[allowed.not(), limited])]),
        ]);
        Decision {
            allow,
            deny,
            require_approval,
        }
    }

    fn value_json(model: &Model, term: &Term, ty: &Type) -> Json {
        let int = |i: &Int| model.eval(i, true).and_then(|v| v.as_i64()).unwrap_or(0);
        let string = |s: &Z3String| {
            model
                .eval(s, true)
                .and_then(|v| v.as_string())
                .map(|s| unescape(&s))
                .unwrap_or_default()
        };
        match (term, ty) {
            (Term::Str(s), _) => json!(string(s)),
            (Term::Bool(b), _) => json!(model
                .eval(b, true)
                .and_then(|v| v.as_bool())
                .unwrap_or(false)),
            (Term::Int(i), Type::Enum { members }) => {
                json!(members
                    .get(int(i).max(0) as usize)
                    .cloned()
                    .unwrap_or_default())
            }
            (Term::Int(i), Type::Decimal { .. }) => {
                let text = polctl_lang::decimal::Decimal::from_millionths(int(i)).to_string();
                serde_json::from_str(&text).unwrap_or(Json::Null)
            }
            (Term::Int(i), _) => json!(int(i)),
            (Term::List { len, items }, _) => {
                let len = int(len).clamp(0, items.len() as i64) as usize;
                json!(items[..len].iter().map(string).collect::<Vec<_>>())
            }
        }
    }

    /// A model of the request variables as a JSON request (language.md §1).
    pub fn request_from_model(&self, model: &Model) -> Json {
        let tool = model
            .eval(&self.tool, true)
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            .clamp(0, self.set.schema.tools.len().saturating_sub(1) as i64)
            as usize;
        self.request_from_model_as(model, tool)
    }

    /// The request of a model as a request of `tool` (this schema's index), whatever the
    /// model's tool variable says: in `polctl diff` the model's tool is the new version's.
    pub fn request_from_model_as(&self, model: &Model, tool: usize) -> Json {
        let schema = &self.set.schema;
        let object = |declared: &[Attribute], terms: &[Term]| -> Json {
            Json::Object(
                declared
                    .iter()
                    .zip(terms)
                    .map(|(a, t)| (a.name.clone(), Self::value_json(model, t, &a.ty)))
                    .collect::<Map<_, _>>(),
            )
        };
        let mut args = Map::new();
        if let Some(tool_decl) = schema.tools.get(tool) {
            for arg in &tool_decl.args {
                let Some(var) = self.args.get(&(arg.name.clone(), type_key(&arg.ty))) else {
                    continue;
                };
                let present = model
                    .eval(&var.present, true)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                if present || !arg.optional {
                    args.insert(
                        arg.name.clone(),
                        Self::value_json(model, &var.value, &arg.ty),
                    );
                }
            }
        }
        let approvals: Vec<&String> = schema
            .approvers
            .iter()
            .zip(&self.approvals)
            .filter(|(_, b)| {
                model
                    .eval(*b, true)
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false)
            })
            .map(|(g, _)| g)
            .collect();
        let counters: Map<String, Json> = self
            .counters
            .iter()
            .filter(|(rule, _)| self.set.rules[**rule].tools.contains(&tool))
            .filter_map(|(rule, counter)| {
                let value = model
                    .eval(counter, true)
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                (value > 0).then(|| (self.set.rules[*rule].id.clone(), json!(value)))
            })
            .collect();
        let mut request = Map::new();
        request.insert("agent".into(), object(&schema.agent, &self.agent));
        request.insert("context".into(), object(&schema.context, &self.context));
        request.insert(
            "tool".into(),
            json!(schema
                .tools
                .get(tool)
                .map(|t| t.name.clone())
                .unwrap_or_default()),
        );
        request.insert("args".into(), Json::Object(args));
        let session = model
            .eval(&self.session, true)
            .and_then(|v| v.as_string())
            .map(|s| unescape(&s))
            .unwrap_or_default();
        if !session.is_empty() {
            request.insert("session".into(), json!(session));
        }
        if !approvals.is_empty() {
            request.insert("approvals".into(), json!(approvals));
        }
        if !counters.is_empty() {
            request.insert("counters".into(), Json::Object(counters));
        }
        Json::Object(request)
    }
}

/// The decision terms.
pub struct Decision {
    pub allow: Bool,
    pub deny: Bool,
    pub require_approval: Bool,
}

impl Encoding<'_> {
    /// Whether a concrete string is in an SMT-LIB regex language, decided by a one-constraint
    /// solver and cached.
    fn concrete_member(&self, membership: &Membership, value: &str) -> bool {
        if let Some(holds) = membership.test.holds(value) {
            return holds;
        }
        let language = &membership.language;
        let key = (language.to_owned(), value.to_owned());
        if let Some(known) = self.definitions.borrow().cache.get(&key) {
            return *known;
        }
        let solver = Solver::new();
        solver.from_string(format!(
            "(assert (str.in_re \"{}\" {language}))",
            crate::strings::escape(value)
        ));
        let result = solver.check() == z3::SatResult::Sat;
        self.definitions.borrow_mut().cache.insert(key, result);
        result
    }

    /// Evaluates terms on a concrete request by substituting its values and simplifying (much
    /// faster than solving). `None` when a term does not reduce to a constant.
    pub fn evaluate(
        &self,
        request: &polctl_lang::eval::Request,
        terms: &[&Bool],
    ) -> Vec<Option<bool>> {
        let pairs = self.substitutions(request, None);
        let references: Vec<(&Dynamic, &Dynamic)> = pairs.iter().map(|(a, b)| (a, b)).collect();
        terms
            .iter()
            .map(|term| term.substitute(&references).simplify().as_bool())
            .collect()
    }

    /// Terms with every request variable pinned to the request's value except `free` (a
    /// string variable, with its regex memberships), for questions about one field.
    pub fn pinned_except(
        &self,
        request: &polctl_lang::eval::Request,
        free: &Z3String,
        terms: &[&Bool],
    ) -> Vec<Bool> {
        let pairs = self.substitutions(request, Some(&free.to_string()));
        let references: Vec<(&Dynamic, &Dynamic)> = pairs.iter().map(|(a, b)| (a, b)).collect();
        terms
            .iter()
            .map(|term| term.substitute(&references).simplify())
            .collect()
    }

    /// `(variable, value)` pairs for a concrete request, skipping the variable named `free`.
    fn substitutions(
        &self,
        request: &polctl_lang::eval::Request,
        free: Option<&str>,
    ) -> Vec<(Dynamic, Dynamic)> {
        use polctl_lang::eval::Value as V;
        let mut pairs: Vec<(Dynamic, Dynamic)> = Vec::new();
        let mut strings: HashMap<String, String> = HashMap::new();
        let mut pin =
            |term: &Term, value: &V, pairs: &mut Vec<(Dynamic, Dynamic)>| match (term, value) {
                (Term::Str(s), V::Str(v)) => {
                    strings.insert(s.to_string(), v.clone());
                    pairs.push((Dynamic::from_ast(s), Dynamic::from_ast(&literal(v))));
                }
                (Term::Int(i), V::Int(v)) => {
                    pairs.push((Dynamic::from_ast(i), Dynamic::from_ast(&Int::from_i64(*v))))
                }
                (Term::Int(i), V::Decimal(d)) => pairs.push((
                    Dynamic::from_ast(i),
                    Dynamic::from_ast(&Int::from_i64(d.millionths())),
                )),
                (Term::Int(i), V::Enum(m)) => pairs.push((
                    Dynamic::from_ast(i),
                    Dynamic::from_ast(&Int::from_i64(i64::from(*m))),
                )),
                (Term::Bool(b), V::Bool(v)) => pairs.push((
                    Dynamic::from_ast(b),
                    Dynamic::from_ast(&Bool::from_bool(*v)),
                )),
                (Term::List { len, items }, V::List(values)) => {
                    pairs.push((
                        Dynamic::from_ast(len),
                        Dynamic::from_ast(&Int::from_i64(values.len() as i64)),
                    ));
                    for (item, value) in items.iter().zip(values) {
                        strings.insert(item.to_string(), value.clone());
                        pairs.push((Dynamic::from_ast(item), Dynamic::from_ast(&literal(value))));
                    }
                }
                _ => {}
            };
        let schema = &self.set.schema;
        pairs.push((
            Dynamic::from_ast(&self.tool),
            Dynamic::from_ast(&Int::from_i64(request.tool as i64)),
        ));
        pin(
            &Term::Str(self.session.clone()),
            &V::Str(request.session.clone()),
            &mut pairs,
        );
        for (term, value) in self.agent.iter().zip(&request.agent) {
            pin(term, value, &mut pairs);
        }
        for (term, value) in self.context.iter().zip(&request.context) {
            pin(term, value, &mut pairs);
        }
        let declared = schema.tools.get(request.tool);
        for ((name, key), var) in &self.args {
            let arg = declared.and_then(|t| {
                t.args
                    .iter()
                    .position(|a| &a.name == name && &type_key(&a.ty) == key)
            });
            match arg.and_then(|i| request.args.get(i)).map(Option::as_ref) {
                Some(Some(value)) => {
                    pairs.push((
                        Dynamic::from_ast(&var.present),
                        Dynamic::from_ast(&Bool::from_bool(true)),
                    ));
                    pin(&var.value, value, &mut pairs);
                }
                _ => pairs.push((
                    Dynamic::from_ast(&var.present),
                    Dynamic::from_ast(&Bool::from_bool(false)),
                )),
            }
        }
        for (flag, value) in self.approvals.iter().zip(&request.approvals) {
            pairs.push((
                Dynamic::from_ast(flag),
                Dynamic::from_ast(&Bool::from_bool(*value)),
            ));
        }
        for (rule, counter) in &self.counters {
            let value = request
                .counters
                .iter()
                .find(|(r, _)| r == rule)
                .map_or(0, |(_, c)| *c);
            pairs.push((
                Dynamic::from_ast(counter),
                Dynamic::from_ast(&Int::from_i64(value.min(i64::MAX as u64) as i64)),
            ));
        }
        let members: Vec<Membership> = self.definitions.borrow().members.clone();
        for membership in &members {
            let subject = membership.subject.to_string();
            if free == Some(subject.as_str()) {
                continue;
            }
            if let Some(value) = strings.get(&subject) {
                let result = self.concrete_member(membership, value);
                pairs.push((
                    Dynamic::from_ast(&membership.member),
                    Dynamic::from_ast(&Bool::from_bool(result)),
                ));
            }
        }
        if let Some(free) = free {
            pairs.retain(|(variable, _)| variable.to_string() != free);
        }
        pairs
    }
}
