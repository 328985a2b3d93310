//! The evaluation plan: the IR compiled once into a form that decides fast.
//!
//! Rules are indexed by tool and split by effect, so a decision only looks at the rules that
//! can match its tool, denies first. Conditions are compiled per (rule, tool): paths become
//! declaration indexes, `tool.name` and `tool.kind` tests fold to constants, enum members become
//! indexes, string sets of more than a few elements are hashed, and regexes are compiled once.
//! Scope strings are interned so that a scope test is an integer comparison.

use super::request::{Request, Value};
use crate::check::compile_regex;
use crate::ir::{self, CmpOp, Cond, Path, PolicySet, TextOp, Tool, Type};
use std::collections::HashSet;

/// Where a compiled condition reads its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    Agent(usize),
    Context(usize),
    Arg(usize),
    Session,
    /// The list element under `every` / `some`.
    Element,
}

/// Up to this many strings are compared one by one; more are hashed.
const LINEAR_SET_LIMIT: usize = 8;

#[derive(Debug, Clone)]
pub(crate) enum StrSet {
    Few(Box<[Box<str>]>),
    Many(HashSet<Box<str>>),
}

impl StrSet {
    fn new(values: impl IntoIterator<Item = String>) -> StrSet {
        let values: Vec<Box<str>> = values.into_iter().map(String::into_boxed_str).collect();
        if values.len() <= LINEAR_SET_LIMIT {
            StrSet::Few(values.into_boxed_slice())
        } else {
            StrSet::Many(values.into_iter().collect())
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            StrSet::Few(values) => values.iter().any(|v| &**v == value),
            StrSet::Many(values) => values.contains(value),
        }
    }
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum C {
    Const(bool),
    And(Box<[C]>),
    Or(Box<[C]>),
    Not(Box<C>),
    Has(usize),
    StrEq {
        src: Src,
        value: Box<str>,
        equal: bool,
    },
    StrIn {
        src: Src,
        set: StrSet,
    },
    /// Ints, and decimals as millionths: each path has one type, so they never meet.
    Num {
        src: Src,
        op: CmpOp,
        value: i64,
    },
    NumIn {
        src: Src,
        values: Box<[i64]>,
    },
    Bool {
        src: Src,
        value: bool,
        equal: bool,
    },
    EnumEq {
        src: Src,
        member: u32,
        equal: bool,
    },
    EnumIn {
        src: Src,
        members: Box<[bool]>,
    },
    Text {
        src: Src,
        op: TextOp,
        pattern: Box<str>,
    },
    Regex {
        src: Src,
        regex: Box<regex::Regex>,
    },
    ContainsAny {
        src: Src,
        needles: Box<[Box<str>]>,
    },
    ListContains {
        src: Src,
        value: Box<str>,
    },
    ListContainsAny {
        src: Src,
        set: StrSet,
    },
    Every {
        src: Src,
        inner: Box<C>,
    },
    Some {
        src: Src,
        inner: Box<C>,
    },
    Count {
        src: Src,
        op: CmpOp,
        value: i64,
    },
    Length {
        src: Src,
        op: CmpOp,
        value: i64,
    },
}

fn compare<T: Ord>(left: T, op: CmpOp, right: T) -> bool {
    match op {
        CmpOp::Eq => left == right,
        CmpOp::Ne => left != right,
        CmpOp::Lt => left < right,
        CmpOp::Le => left <= right,
        CmpOp::Gt => left > right,
        CmpOp::Ge => left >= right,
    }
}

fn value(request: &Request, src: Src) -> Option<&Value> {
    match src {
        Src::Agent(i) => request.agent.get(i),
        Src::Context(i) => request.context.get(i),
        Src::Arg(i) => request.args.get(i).and_then(Option::as_ref),
        Src::Session | Src::Element => None,
    }
}

fn string<'r>(request: &'r Request, src: Src, element: Option<&'r str>) -> Option<&'r str> {
    match src {
        Src::Session => Some(&request.session),
        Src::Element => element,
        _ => match value(request, src)? {
            Value::Str(s) => Some(s),
            _ => None,
        },
    }
}

fn number(request: &Request, src: Src) -> Option<i64> {
    match value(request, src)? {
        Value::Int(i) => Some(*i),
        Value::Decimal(d) => Some(d.millionths()),
        _ => None,
    }
}

fn list(request: &Request, src: Src) -> Option<&[String]> {
    match value(request, src)? {
        Value::List(items) => Some(items),
        _ => None,
    }
}

impl C {
    /// Evaluates the condition. Never panics: a value of an unexpected shape (which decoding
    /// rules out) makes the test false.
    pub(crate) fn eval<'r>(&self, request: &'r Request, element: Option<&'r str>) -> bool {
        match self {
            C::Const(b) => *b,
            C::And(items) => items.iter().all(|c| c.eval(request, element)),
            C::Or(items) => items.iter().any(|c| c.eval(request, element)),
            C::Not(inner) => !inner.eval(request, element),
            C::Has(i) => matches!(request.args.get(*i), Some(Some(_))),
            C::StrEq { src, value, equal } => {
                string(request, *src, element).is_some_and(|s| (s == &**value) == *equal)
            }
            C::StrIn { src, set } => {
                string(request, *src, element).is_some_and(|s| set.contains(s))
            }
            C::Num { src, op, value } => {
                number(request, *src).is_some_and(|n| compare(n, *op, *value))
            }
            C::NumIn { src, values } => number(request, *src).is_some_and(|n| values.contains(&n)),
            C::Bool { src, value, equal } => {
                matches!(self::value(request, *src), Some(Value::Bool(b)) if (b == value) == *equal)
            }
            C::EnumEq { src, member, equal } => {
                matches!(value(request, *src), Some(Value::Enum(m)) if (m == member) == *equal)
            }
            C::EnumIn { src, members } => match value(request, *src) {
                Some(Value::Enum(m)) => members.get(*m as usize).copied().unwrap_or(false),
                _ => false,
            },
            C::Text { src, op, pattern } => {
                string(request, *src, element).is_some_and(|s| match op {
                    TextOp::StartsWith => s.starts_with(&**pattern),
                    TextOp::EndsWith => s.ends_with(&**pattern),
                    TextOp::Contains => s.contains(&**pattern),
                    TextOp::Matches => false,
                })
            }
            C::Regex { src, regex } => {
                string(request, *src, element).is_some_and(|s| regex.is_match(s))
            }
            C::ContainsAny { src, needles } => string(request, *src, element)
                .is_some_and(|s| needles.iter().any(|n| s.contains(&**n))),
            C::ListContains { src, value } => {
                list(request, *src).is_some_and(|items| items.iter().any(|i| i == &**value))
            }
            C::ListContainsAny { src, set } => {
                list(request, *src).is_some_and(|items| items.iter().any(|i| set.contains(i)))
            }
            C::Every { src, inner } => list(request, *src)
                .is_some_and(|items| items.iter().all(|i| inner.eval(request, Some(i)))),
            C::Some { src, inner } => list(request, *src)
                .is_some_and(|items| items.iter().any(|i| inner.eval(request, Some(i)))),
            C::Count { src, op, value } => {
                list(request, *src).is_some_and(|items| compare(items.len() as i64, *op, *value))
            }
            C::Length { src, op, value } => string(request, *src, element)
                .is_some_and(|s| compare(s.chars().count() as i64, *op, *value)),
        }
    }
}

/// A regex that Rust's `regex` rejected (for example, one over its size limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub rule: String,
    pub message: String,
}

/// What a condition is compiled against: the schema and the one tool it is evaluated for.
pub(crate) struct Target<'s> {
    pub set: &'s PolicySet,
    pub tool: &'s Tool,
}

fn enum_members<'s>(target: &Target<'s>, path: &Path) -> Option<&'s [String]> {
    let ty = match path {
        Path::Agent(name) => &target.set.schema.agent.iter().find(|a| &a.name == name)?.ty,
        Path::Context(name) => {
            &target
                .set
                .schema
                .context
                .iter()
                .find(|a| &a.name == name)?
                .ty
        }
        Path::Arg(name) => &target.tool.arg(name)?.ty,
        _ => return None,
    };
    match ty {
        Type::Enum { members } => Some(members),
        _ => None,
    }
}

fn source(target: &Target<'_>, path: &Path) -> Option<Src> {
    Some(match path {
        Path::Agent(name) => Src::Agent(
            target
                .set
                .schema
                .agent
                .iter()
                .position(|a| &a.name == name)?,
        ),
        Path::Context(name) => Src::Context(
            target
                .set
                .schema
                .context
                .iter()
                .position(|a| &a.name == name)?,
        ),
        Path::Arg(name) => Src::Arg(target.tool.args.iter().position(|a| &a.name == name)?),
        Path::Session => Src::Session,
        Path::Element => Src::Element,
        Path::ToolName | Path::ToolKind => return None,
    })
}

fn literal_number(value: &ir::Value) -> Option<i64> {
    match value {
        ir::Value::Int(i) => Some(*i),
        ir::Value::Decimal(d) => Some(d.millionths()),
        _ => None,
    }
}

/// The constant value of `tool.name` / `tool.kind` tests for this tool.
fn tool_constant(target: &Target<'_>, path: &Path, value: &ir::Value) -> Option<bool> {
    match (path, value) {
        (Path::ToolName, ir::Value::Tool(name)) => Some(&target.tool.name == name),
        (Path::ToolKind, ir::Value::Kind(kind)) => Some(target.tool.kind == *kind),
        _ => None,
    }
}

fn fold_and(items: Vec<C>) -> C {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        match item {
            C::Const(true) => {}
            C::Const(false) => return C::Const(false),
            other => kept.push(other),
        }
    }
    match kept.len() {
        0 => C::Const(true),
        1 => kept.pop().unwrap_or(C::Const(true)),
        _ => C::And(kept.into_boxed_slice()),
    }
}

fn fold_or(items: Vec<C>) -> C {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        match item {
            C::Const(false) => {}
            C::Const(true) => return C::Const(true),
            other => kept.push(other),
        }
    }
    match kept.len() {
        0 => C::Const(false),
        1 => kept.pop().unwrap_or(C::Const(false)),
        _ => C::Or(kept.into_boxed_slice()),
    }
}

/// Compiles one IR condition for one tool.
pub(crate) fn compile(cond: &Cond, target: &Target<'_>) -> Result<C, String> {
    // A path the tool does not have cannot be read; the checker rules this out, and the
    // condition is then false rather than a panic.
    let missing = C::Const(false);
    Ok(match cond {
        Cond::And(items) => fold_and(
            items
                .iter()
                .map(|c| compile(c, target))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Or(items) => fold_or(
            items
                .iter()
                .map(|c| compile(c, target))
                .collect::<Result<_, _>>()?,
        ),
        Cond::Not(inner) => match compile(inner, target)? {
            C::Const(b) => C::Const(!b),
            other => C::Not(Box::new(other)),
        },
        Cond::Has(name) => match target.tool.args.iter().position(|a| &a.name == name) {
            Some(i) => C::Has(i),
            None => missing,
        },
        Cond::Compare { path, op, value } => {
            if let Some(constant) = tool_constant(target, path, value) {
                return Ok(C::Const(if *op == CmpOp::Eq {
                    constant
                } else {
                    !constant
                }));
            }
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            let equal = *op == CmpOp::Eq;
            match value {
                ir::Value::Str(s) => C::StrEq {
                    src,
                    value: s.clone().into_boxed_str(),
                    equal,
                },
                ir::Value::Bool(b) => C::Bool {
                    src,
                    value: *b,
                    equal,
                },
                ir::Value::Enum(member) => {
                    let Some(index) =
                        enum_members(target, path).and_then(|m| m.iter().position(|x| x == member))
                    else {
                        return Ok(missing);
                    };
                    C::EnumEq {
                        src,
                        member: index as u32,
                        equal,
                    }
                }
                other => match literal_number(other) {
                    Some(n) => C::Num {
                        src,
                        op: *op,
                        value: n,
                    },
                    None => missing,
                },
            }
        }
        Cond::In { path, values } => {
            if matches!(path, Path::ToolName | Path::ToolKind) {
                let any = values
                    .iter()
                    .any(|v| tool_constant(target, path, v) == Some(true));
                return Ok(C::Const(any));
            }
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            match values.first() {
                None => C::Const(false),
                Some(ir::Value::Str(_)) => C::StrIn {
                    src,
                    set: StrSet::new(values.iter().filter_map(|v| match v {
                        ir::Value::Str(s) => Some(s.clone()),
                        _ => None,
                    })),
                },
                Some(ir::Value::Enum(_)) => {
                    let Some(members) = enum_members(target, path) else {
                        return Ok(missing);
                    };
                    let mut mask = vec![false; members.len()];
                    for value in values {
                        if let ir::Value::Enum(member) = value {
                            if let Some(i) = members.iter().position(|m| m == member) {
                                mask[i] = true;
                            }
                        }
                    }
                    C::EnumIn {
                        src,
                        members: mask.into_boxed_slice(),
                    }
                }
                Some(_) => C::NumIn {
                    src,
                    values: values.iter().filter_map(literal_number).collect(),
                },
            }
        }
        Cond::Text { path, op, pattern } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            if *op == TextOp::Matches {
                let regex = compile_regex(pattern)
                    .map_err(|e| format!("regex `{pattern}` cannot be compiled: {e}"))?;
                C::Regex {
                    src,
                    regex: Box::new(regex),
                }
            } else {
                C::Text {
                    src,
                    op: *op,
                    pattern: pattern.clone().into_boxed_str(),
                }
            }
        }
        Cond::ContainsAny { path, needles } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::ContainsAny {
                src,
                needles: needles.iter().map(|n| n.clone().into_boxed_str()).collect(),
            }
        }
        Cond::ListContains { path, value } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::ListContains {
                src,
                value: value.clone().into_boxed_str(),
            }
        }
        Cond::ListContainsAny { path, values } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::ListContainsAny {
                src,
                set: StrSet::new(values.iter().cloned()),
            }
        }
        Cond::Every { path, cond } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::Every {
                src,
                inner: Box::new(compile(cond, target)?),
            }
        }
        Cond::Some { path, cond } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::Some {
                src,
                inner: Box::new(compile(cond, target)?),
            }
        }
        Cond::Count { path, op, value } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::Count {
                src,
                op: *op,
                value: *value,
            }
        }
        Cond::Length { path, op, value } => {
            let Some(src) = source(target, path) else {
                return Ok(missing);
            };
            C::Length {
                src,
                op: *op,
                value: *value,
            }
        }
    })
}
