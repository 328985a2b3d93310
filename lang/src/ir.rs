//! The typed intermediate representation: the one thing that crosses crate lines.
//!
//! The evaluator, the solver encoding, bundles and the runtime all read this. It is fully
//! resolved: tools are schema indexes, `let` values are inlined, enum members are checked,
//! decimals are exact, `not in` is `not (.. in ..)`, and nested `and`/`or` are flattened. Spans
//! are kept only for reporting.

use crate::decimal::Decimal;
use crate::source::Span;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySet {
    pub schema: Schema,
    pub policies: Vec<Policy>,
    /// Every rule of every policy, in file order; `Policy::rules` indexes into this.
    pub rules: Vec<Rule>,
    /// The named values (`let`) whose value is text or a list of text, by that value as a
    /// displayed condition shows it: explanations show the name, not the expansion.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub named_values: crate::display::Names,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub agent: Vec<Attribute>,
    pub context: Vec<Attribute>,
    pub approvers: Vec<String>,
    pub tools: Vec<Tool>,
}

/// The declared range `value` is outside of, if any: the one range check of `int in A..B` and
/// `decimal in A..B`, shared by the checker (literals) and the request decoder (values).
pub fn outside_range<T: PartialOrd + Copy>(range: &Option<(T, T)>, value: T) -> Option<(T, T)> {
    range.filter(|(low, high)| value < *low || value > *high)
}

impl PolicySet {
    /// The rules that name tool `tool` (by index), in file order: the only rules that can
    /// decide its requests.
    pub fn rules_naming(&self, tool: usize) -> impl Iterator<Item = usize> + '_ {
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, rule)| rule.tools.contains(&tool))
            .map(|(index, _)| index)
    }
}

impl Schema {
    /// The type of a path as declared: attributes by name, an argument as the first of
    /// `tools` that declares it; `None` for tool paths and undeclared names.
    pub fn path_type(&self, path: &Path, tools: &[usize]) -> Option<Type> {
        match path {
            Path::Agent(name) => self
                .agent
                .iter()
                .find(|a| &a.name == name)
                .map(|a| a.ty.clone()),
            Path::Context(name) => self
                .context
                .iter()
                .find(|a| &a.name == name)
                .map(|a| a.ty.clone()),
            Path::Arg(name) => tools
                .iter()
                .find_map(|&t| self.tools.get(t)?.arg(name))
                .map(|a| a.ty.clone()),
            Path::Session | Path::Element => Some(Type::String),
            Path::ToolName | Path::ToolKind => None,
        }
    }

    pub fn tool_index(&self, name: &str) -> Option<usize> {
        self.tools.iter().position(|t| t.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub ty: Type,
    /// Only tool arguments can be optional (`cc: string?`).
    pub optional: bool,
    /// `string known { .. }`: the values literals compared with this agent or context
    /// attribute must be one of (requests may carry others). Checking only: no decision reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<Vec<String>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Type {
    String,
    Int { range: Option<(i64, i64)> },
    Decimal { range: Option<(Decimal, Decimal)> },
    Bool,
    Enum { members: Vec<String> },
    StringList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    Read,
    Write,
    Send,
    Execute,
}

impl ToolKind {
    pub const ALL: [ToolKind; 4] = [
        ToolKind::Read,
        ToolKind::Write,
        ToolKind::Send,
        ToolKind::Execute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Read => "read",
            ToolKind::Write => "write",
            ToolKind::Send => "send",
            ToolKind::Execute => "execute",
        }
    }

    pub fn parse(text: &str) -> Option<ToolKind> {
        ToolKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub kind: ToolKind,
    pub args: Vec<Attribute>,
    pub span: Span,
}

impl Tool {
    pub fn arg(&self, name: &str) -> Option<&Attribute> {
        self.args.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Fail closed: the policy's rules deny while its circuit breaker is open.
    Deny,
    /// Fail open with audit.
    Allow,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub scope: Scope,
    pub on_failure: FailureMode,
    /// Indexes into `PolicySet::rules`.
    pub rules: Vec<usize>,
    pub span: Span,
}

/// Which requests a policy applies to. `Any` holds when one of its terms does (a `Both` term
/// when all of its parts do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    All,
    Any(Vec<ScopeTerm>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeTerm {
    /// `agent.tenant == value`
    Tenant(String),
    /// `agent.id == value`
    Agent(String),
    /// `agent.role == member`
    Role(String),
    /// Every one of these terms (none of them `Both`): `tenant "payments" and role coder`.
    Both(Vec<ScopeTerm>),
}

impl ScopeTerm {
    /// The simple terms a request must meet for this one to hold.
    pub fn parts(&self) -> &[ScopeTerm] {
        match self {
            ScopeTerm::Both(parts) => parts,
            simple => std::slice::from_ref(simple),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// `<policy>.<rule>`
    pub id: String,
    /// Index into `PolicySet::policies`.
    pub policy: usize,
    pub effect: Effect,
    /// The actions as written, for display.
    pub actions: Actions,
    /// The tools the rule can match, as sorted indexes into `Schema::tools`.
    pub tools: Vec<usize>,
    pub when: Option<Cond>,
    pub unless: Option<Cond>,
    pub because: Option<String>,
    pub span: Span,
    pub name_span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actions {
    Tools(Vec<String>),
    AnyTool,
    AnyKind(ToolKind),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow {
        obligations: Vec<Obligation>,
    },
    /// `overrides` holds full rule ids.
    Deny {
        overrides: Vec<String>,
    },
    RequireApproval {
        groups: Vec<String>,
    },
    Limit(Limit),
}

impl Effect {
    pub fn keyword(&self) -> &'static str {
        match self {
            Effect::Allow { .. } => "allow",
            Effect::Deny { .. } => "deny",
            Effect::RequireApproval { .. } => "require approval",
            Effect::Limit(_) => "limit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligation {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub max: u64,
    pub window_seconds: u64,
    /// `None`: one global counter per window.
    pub key: Option<Path>,
}

/// A value a condition reads from the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    Agent(String),
    Context(String),
    Arg(String),
    ToolName,
    ToolKind,
    Session,
    /// The list element under `every` / `some`.
    Element,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Str(String),
    Int(i64),
    Decimal(Decimal),
    Bool(bool),
    Enum(String),
    Tool(String),
    Kind(ToolKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextOp {
    StartsWith,
    EndsWith,
    Contains,
    /// The pattern is a regex in the subset of language.md §2.2, already validated.
    Matches,
}

impl TextOp {
    pub fn as_str(self) -> &'static str {
        match self {
            TextOp::StartsWith => "starts with",
            TextOp::EndsWith => "ends with",
            TextOp::Contains => "contains",
            TextOp::Matches => "matches",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    /// `has args.NAME`: the optional argument is present.
    Has(String),
    Compare {
        path: Path,
        op: CmpOp,
        value: Value,
    },
    In {
        path: Path,
        values: Vec<Value>,
    },
    Text {
        path: Path,
        op: TextOp,
        pattern: String,
    },
    /// A string contains at least one of these substrings.
    ContainsAny {
        path: Path,
        needles: Vec<String>,
    },
    /// A list of strings has this element.
    ListContains {
        path: Path,
        value: String,
    },
    /// A list of strings has at least one of these elements.
    ListContainsAny {
        path: Path,
        values: Vec<String>,
    },
    /// Every element satisfies `cond` (which reads `Path::Element`); true on an empty list.
    Every {
        path: Path,
        cond: Box<Cond>,
    },
    Some {
        path: Path,
        cond: Box<Cond>,
    },
    Count {
        path: Path,
        op: CmpOp,
        value: i64,
    },
    /// A string's length in characters (Unicode scalar values).
    Length {
        path: Path,
        op: CmpOp,
        value: i64,
    },
}

impl Cond {
    /// Calls `visit` on every leaf test with the path it reads; under `every`/`some` the
    /// element is reported as the list's path. Shared by everything that needs to know which
    /// request fields (and literals) a condition looks at.
    pub fn for_each_leaf(&self, visit: &mut dyn FnMut(&Path, &Cond)) {
        self.leaves(None, visit);
    }

    fn leaves(&self, list: Option<&Path>, visit: &mut dyn FnMut(&Path, &Cond)) {
        let resolve = |path: &Path| match (path, list) {
            (Path::Element, Some(list)) => list.clone(),
            (other, _) => other.clone(),
        };
        match self {
            Cond::And(items) | Cond::Or(items) => items.iter().for_each(|c| c.leaves(list, visit)),
            Cond::Not(inner) => inner.leaves(list, visit),
            Cond::Every { path, cond } | Cond::Some { path, cond } => {
                visit(path, self);
                cond.leaves(Some(path), visit)
            }
            Cond::Has(name) => visit(&Path::Arg(name.clone()), self),
            Cond::Compare { path, .. }
            | Cond::In { path, .. }
            | Cond::Text { path, .. }
            | Cond::ContainsAny { path, .. }
            | Cond::ListContains { path, .. }
            | Cond::ListContainsAny { path, .. }
            | Cond::Count { path, .. }
            | Cond::Length { path, .. } => visit(&resolve(path), self),
        }
    }
}
