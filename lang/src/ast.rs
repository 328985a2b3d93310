//! The syntax tree of one `.pol` file, exactly as written (nothing resolved yet).
//!
//! Every node has a span. Nodes the parser could not read are `Error` variants, so a partial tree
//! can still be checked and formatted around them.

use crate::source::Span;

/// A name as written: an identifier or a `` `quoted name` ``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub quoted: bool,
    pub span: Span,
}

/// A dotted name: `acme.email`, or a rule id `acme.email.internal_mail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DottedName {
    pub parts: Vec<Name>,
    pub span: Span,
}

impl DottedName {
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Schema(SchemaBlock),
    Policy(PolicyBlock),
    Let(LetDecl),
    Error(Span),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Schema(s) => s.span,
            Item::Policy(p) => p.span,
            Item::Let(l) => l.span,
            Item::Error(span) => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchemaBlock {
    pub sections: Vec<SchemaSection>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchemaSection {
    /// `agent { ... }` or `context { ... }`; the keyword is kept so errors can point at it.
    Attributes {
        keyword: Name,
        fields: Vec<Field>,
        span: Span,
    },
    Approvers {
        groups: Vec<Name>,
        span: Span,
    },
    Tool(ToolDecl),
    Error(Span),
}

impl SchemaSection {
    pub fn span(&self) -> Span {
        match self {
            SchemaSection::Attributes { span, .. } | SchemaSection::Approvers { span, .. } => *span,
            SchemaSection::Tool(tool) => tool.span,
            SchemaSection::Error(span) => *span,
        }
    }
}

/// `name: type` or `name: type?` in an attribute block or a tool's argument list.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: Name,
    pub ty: TypeExpr,
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExprKind {
    /// `string`, `int`, `decimal`, `bool`, or a misspelling the checker reports.
    Named(Name),
    /// `int in 0..23`, `decimal in 0.01..50000.00`.
    Ranged {
        base: Name,
        low: NumberLit,
        high: NumberLit,
    },
    Enum(Vec<Name>),
    List(Box<TypeExpr>),
    /// `string known { "acme", "globex" }`: a string whose expected values are declared, so
    /// that literals compared with it are checked; requests may still carry other values.
    Known {
        base: Name,
        values: Vec<StrLit>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    pub kind: TypeExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberLit {
    /// The literal as written, e.g. `-5` or `98.70`.
    pub text: String,
    pub is_decimal: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDecl {
    pub name: Name,
    pub kind: Name,
    pub args: Vec<Field>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LetDecl {
    pub name: Name,
    pub value: ValueExpr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyBlock {
    pub name: DottedName,
    pub members: Vec<PolicyMember>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrLit {
    pub value: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyMember {
    Owner(StrLit, Span),
    Description(StrLit, Span),
    AppliesTo(Vec<ScopeExpr>, Span),
    OnFailure(Name, Span),
    Rule(Box<RuleDecl>),
    Error(Span),
}

impl PolicyMember {
    pub fn span(&self) -> Span {
        match self {
            PolicyMember::Owner(_, span)
            | PolicyMember::Description(_, span)
            | PolicyMember::AppliesTo(_, span)
            | PolicyMember::OnFailure(_, span)
            | PolicyMember::Error(span) => *span,
            PolicyMember::Rule(rule) => rule.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScopeExpr {
    All(Span),
    Tenant(StrLit, Span),
    Agent(StrLit, Span),
    Role(Name, Span),
    /// `tenant "payments" and role coder`: requests in every one of the scopes.
    Both(Vec<ScopeExpr>, Span),
}

impl ScopeExpr {
    pub fn span(&self) -> Span {
        match self {
            ScopeExpr::All(span)
            | ScopeExpr::Tenant(_, span)
            | ScopeExpr::Agent(_, span)
            | ScopeExpr::Role(_, span)
            | ScopeExpr::Both(_, span) => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDecl {
    pub name: Name,
    pub head: RuleHead,
    pub clauses: Vec<Clause>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleHead {
    Allow(Actions),
    Deny(Actions),
    RequireApproval {
        groups: Vec<Name>,
        actions: Actions,
    },
    Limit {
        actions: Actions,
        count: NumberLit,
        window: DurationLit,
        key: Option<Path>,
    },
}

impl RuleHead {
    pub fn actions(&self) -> &Actions {
        match self {
            RuleHead::Allow(actions)
            | RuleHead::Deny(actions)
            | RuleHead::RequireApproval { actions, .. }
            | RuleHead::Limit { actions, .. } => actions,
        }
    }

    pub fn keyword(&self) -> &'static str {
        match self {
            RuleHead::Allow(_) => "allow",
            RuleHead::Deny(_) => "deny",
            RuleHead::RequireApproval { .. } => "require approval",
            RuleHead::Limit { .. } => "limit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationLit {
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionsKind {
    Tool(Name),
    List(Vec<Name>),
    AnyTool,
    /// `any write tool`: the kind as written.
    AnyKind(Name),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    pub kind: ActionsKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    When(Expr, Span),
    Unless(Expr, Span),
    With {
        name: Name,
        text: StrLit,
        span: Span,
    },
    Because(StrLit, Span),
    Overrides(Vec<DottedName>, Span),
}

impl Clause {
    pub fn span(&self) -> Span {
        match self {
            Clause::When(_, span)
            | Clause::Unless(_, span)
            | Clause::With { span, .. }
            | Clause::Because(_, span)
            | Clause::Overrides(_, span) => *span,
        }
    }

    pub fn keyword(&self) -> &'static str {
        match self {
            Clause::When(..) => "when",
            Clause::Unless(..) => "unless",
            Clause::With { .. } => "with",
            Clause::Because(..) => "because",
            Clause::Overrides(..) => "overrides",
        }
    }
}

/// A path read by a condition: `agent.tier`, `args.amount`, `tool.name`, `session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub root: Name,
    pub field: Option<Name>,
    pub span: Span,
}

impl Path {
    pub fn text(&self) -> String {
        match &self.field {
            Some(field) => format!("{}.{}", self.root.text, field.text),
            None => self.root.text.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    ContainsAny,
    Matches,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::In => "in",
            Operator::NotIn => "not in",
            Operator::StartsWith => "starts with",
            Operator::EndsWith => "ends with",
            Operator::Contains => "contains",
            Operator::ContainsAny => "contains any",
            Operator::Matches => "matches",
        }
    }

    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Every,
    Some,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `( expr )`, kept so the formatter can keep the author's grouping.
    Paren(Box<Expr>),
    Has(Path),
    Compare {
        path: Path,
        op: Operator,
        op_span: Span,
        value: ValueExpr,
    },
    Quantified {
        quantifier: Quantifier,
        path: Path,
        op: Operator,
        op_span: Span,
        value: ValueExpr,
    },
    Count {
        path: Path,
        op: Operator,
        op_span: Span,
        value: ValueExpr,
    },
    /// `length args.command <= 4096`: a string's length in characters.
    Length {
        path: Path,
        op: Operator,
        op_span: Span,
        value: ValueExpr,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    Str(String),
    Number(NumberLit),
    Bool(bool),
    /// A bare name: an enum member, a tool name or a `let` value, resolved by the checker.
    Name(Name),
    List(Vec<ValueExpr>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueExpr {
    pub kind: ValueKind,
    pub span: Span,
}
