//! Requests: the JSON shape of language.md §1, decoded strictly against the schema.
//!
//! Decoding happens once per request, before evaluation; a request that does not fit the
//! schema (unknown tool, missing required argument, wrong type, unknown enum member, a value
//! outside a declared range, an unknown attribute) gets a precise error naming the path, never
//! a guess. After decoding, evaluation cannot meet a value of the wrong type.

use super::json::JsonRef;
use crate::decimal::Decimal;
use crate::ir::{Attribute, Effect, PolicySet, Type};
use crate::suggest::help_did_you_mean;
use std::collections::HashMap;
use std::fmt;

/// A decoded value. Enum members are indexes into their declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Decimal(Decimal),
    Bool(bool),
    Enum(u32),
    List(Vec<String>),
}

/// A request decoded against a schema: attributes and arguments by declaration index.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub agent: Vec<Value>,
    pub context: Vec<Value>,
    /// Index into `Schema::tools`.
    pub tool: usize,
    /// By the tool's argument index; `None` for an absent optional argument.
    pub args: Vec<Option<Value>>,
    pub session: String,
    /// By approver group index: whether the group already approved this action.
    pub approvals: Vec<bool>,
    /// `(limit rule index, current count in its window for this request's key)`.
    pub counters: Vec<(usize, u64)>,
    /// When the action happens (`"time"`, RFC 3339), as Unix seconds: which limit window it
    /// counts in. Optional outside the runtime.
    pub time: Option<i64>,
}

impl Request {
    /// The count of limit rule `rule`'s counter for this request (0 when not given).
    pub fn counter(&self, rule: usize) -> u64 {
        self.counters
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or(0, |(_, count)| *count)
    }
}

/// Why a request does not fit the schema: the path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "`{}`: {}", self.path, self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RequestError {}

fn error(path: impl Into<String>, message: impl Into<String>) -> RequestError {
    RequestError {
        path: path.into(),
        message: message.into(),
        help: None,
    }
}

fn describe(json: &JsonRef) -> String {
    json.describe()
}

/// Text printed into a fixed buffer (a JSON number's shortest form fits); longer output is an
/// error, not a truncation.
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    length: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `str`s are written.
        std::str::from_utf8(&self.bytes[..self.length]).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.length + text.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.length..end].copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

/// Decodes one value of a declared type.
pub fn decode_value(path: &str, ty: &Type, json: &JsonRef) -> Result<Value, RequestError> {
    let mismatch = |expected: &str| {
        error(
            path,
            format!("expected {expected}, found {}", describe(json)),
        )
    };
    match ty {
        Type::String => json
            .as_str()
            .map(|s| Value::Str(s.to_owned()))
            .ok_or_else(|| mismatch("a string")),
        Type::Bool => json
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| mismatch("true or false")),
        Type::Int { range } => {
            let value = json.as_i64().ok_or_else(|| mismatch("an integer"))?;
            if let Some((low, high)) = crate::ir::outside_range(range, value) {
                return Err(error(
                    path,
                    format!("{value} is outside the declared range {low}..{high}"),
                ));
            }
            Ok(Value::Int(value))
        }
        Type::Decimal { range } => {
            // A number is printed on the stack (no allocation on the hot path).
            let mut printed = StackText::default();
            let long;
            let text: &str = match json {
                JsonRef::Number(n) => {
                    use std::fmt::Write;
                    if write!(printed, "{n}").is_ok() {
                        printed.as_str()
                    } else {
                        long = n.to_string();
                        &long
                    }
                }
                JsonRef::String(s) => s,
                _ => return Err(mismatch("a decimal number")),
            };
            let value = Decimal::parse(text)
                .or_else(|_| {
                    // serde_json prints floats like `1e-7`; read them exactly through f64 text.
                    text.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| {
                            format!("{f:.7}")
                                .trim_end_matches('0')
                                .trim_end_matches('.')
                                .to_owned()
                        })
                        .ok_or(())
                        .and_then(|t| Decimal::parse(&t).map_err(|_| ()))
                })
                .map_err(|()| {
                    error(
                        path,
                        format!("{text} is not a decimal with at most 6 fractional digits"),
                    )
                })?;
            if let Some((low, high)) = crate::ir::outside_range(range, value) {
                return Err(error(
                    path,
                    format!("{text} is outside the declared range {low}..{high}"),
                ));
            }
            Ok(Value::Decimal(value))
        }
        Type::Enum { members } => {
            let text = json
                .as_str()
                .ok_or_else(|| mismatch("an enum member as a string"))?;
            match members.iter().position(|m| m == text) {
                Some(index) => Ok(Value::Enum(index as u32)),
                None => Err(RequestError {
                    path: path.to_owned(),
                    message: format!("`{text}` is not one of {}", members.join(", ")),
                    help: help_did_you_mean(text, members.iter().map(String::as_str)),
                }),
            }
        }
        Type::StringList => {
            let items = json
                .as_array()
                .ok_or_else(|| mismatch("a list of strings"))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        error(
                            format!("{path}[{i}]"),
                            format!("expected a string, found {}", describe(item)),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::List)
        }
    }
}

/// Objects with at most this many declared attributes find their members without allocating.
const STACK_SLOTS: usize = 16;

/// Decodes an object of attributes (agent, context or a tool's arguments) by declaration:
/// `decode` turns each declared attribute's member (`None` when absent or null) into what the
/// caller keeps, in declaration order.
fn decode_object<T>(
    prefix: &str,
    declared: &[Attribute],
    json: Option<&JsonRef>,
    mut decode: impl FnMut(&Attribute, Option<&JsonRef>) -> Result<T, RequestError>,
) -> Result<Vec<T>, RequestError> {
    let members: &[_] = match json {
        None | Some(JsonRef::Null) => &[],
        Some(JsonRef::Object(members)) => members,
        Some(other) => {
            return Err(error(
                prefix,
                format!("expected an object, found {}", describe(other)),
            ))
        }
    };
    // Each member's declaration, found in one pass (the last of repeated keys wins, as in
    // a `Value`'s map). Decoding is on every request's hot path: small objects keep their
    // slots on the stack.
    let mut stack = [None; STACK_SLOTS];
    let mut heap = Vec::new();
    let slots: &mut [Option<&JsonRef>] = if declared.len() <= STACK_SLOTS {
        &mut stack[..declared.len()]
    } else {
        heap.resize(declared.len(), None);
        &mut heap
    };
    for (key, value) in members {
        match declared.iter().position(|a| a.name == *key) {
            Some(index) => slots[index] = Some(value),
            None => {
                // The first undeclared key in sorted order, as a `Value`'s map would list it.
                let key = members
                    .iter()
                    .map(|(key, _)| key.as_ref())
                    .filter(|key| !declared.iter().any(|a| a.name == *key))
                    .min()
                    .unwrap_or_default();
                return Err(RequestError {
                    path: format!("{prefix}.{key}"),
                    message: "not declared in the schema".to_owned(),
                    help: help_did_you_mean(key, declared.iter().map(|a| a.name.as_str())),
                });
            }
        }
    }
    let mut values = Vec::with_capacity(declared.len());
    for (attribute, slot) in declared.iter().zip(slots.iter()) {
        let slot = slot.filter(|json| !matches!(json, JsonRef::Null));
        // The path is only built for an error.
        values.push(decode(attribute, slot).map_err(|mut e| {
            e.path = format!("{prefix}.{}{}", attribute.name, e.path);
            e
        })?);
    }
    Ok(values)
}

/// A tool's arguments: an optional argument may be absent.
fn decode_arguments(
    declared: &[Attribute],
    json: Option<&JsonRef>,
) -> Result<Vec<Option<Value>>, RequestError> {
    decode_object("args", declared, json, |attribute, json| match json {
        None if attribute.optional => Ok(None),
        None => Err(error("", "is required but missing")),
        Some(json) => decode_value("", &attribute.ty, json).map(Some),
    })
}

/// Agent and context attributes are never optional; every one must be present.
fn decode_attributes(
    prefix: &str,
    declared: &[Attribute],
    json: Option<&JsonRef>,
) -> Result<Vec<Value>, RequestError> {
    decode_object(prefix, declared, json, |attribute, json| match json {
        None => Err(error("", "is required but missing")),
        Some(json) => decode_value("", &attribute.ty, json),
    })
}

/// Rule ids of limit rules, for decoding `counters`.
pub struct CounterIndex {
    limits: HashMap<String, usize>,
    others: HashMap<String, usize>,
}

impl CounterIndex {
    pub fn new(set: &PolicySet) -> CounterIndex {
        let mut limits = HashMap::new();
        let mut others = HashMap::new();
        for (index, rule) in set.rules.iter().enumerate() {
            if matches!(rule.effect, Effect::Limit(_)) {
                limits.insert(rule.id.clone(), index);
            } else {
                others.insert(rule.id.clone(), index);
            }
        }
        CounterIndex { limits, others }
    }
}

/// Decodes a JSON request against a compiled set.
pub fn decode_request(
    set: &PolicySet,
    counters: &CounterIndex,
    object: &JsonRef,
) -> Result<Request, RequestError> {
    let JsonRef::Object(members) = object else {
        return Err(error(
            "",
            format!("a request is a JSON object, found {}", describe(object)),
        ));
    };
    const FIELDS: [&str; 8] = [
        "agent",
        "tool",
        "args",
        "context",
        "session",
        "approvals",
        "counters",
        "time",
    ];
    // Every field found in one pass (the last of repeated keys wins, as in a `Value`'s map).
    let mut fields: [Option<&JsonRef>; FIELDS.len()] = [None; FIELDS.len()];
    let mut unknown = false;
    for (key, value) in members {
        match FIELDS.iter().position(|field| *field == key.as_ref()) {
            Some(index) => fields[index] = Some(value),
            None => unknown = true,
        }
    }
    let [agent, tool, args, context, session, approval_groups, counter_values, time] = fields;
    if unknown {
        // The first unknown field in sorted order, as a `Value`'s map would list it.
        let key = members
            .iter()
            .map(|(key, _)| key.as_ref())
            .filter(|key| !FIELDS.contains(key))
            .min()
            .unwrap_or_default();
        return Err(RequestError {
            path: key.to_owned(),
            message: "is not a request field".to_owned(),
            help: help_did_you_mean(key, FIELDS)
                .or_else(|| Some(format!("the fields are {}", FIELDS.join(", ")))),
        });
    }
    let schema = &set.schema;
    let tool_name = tool
        .ok_or_else(|| error("tool", "is required but missing"))?
        .as_str()
        .ok_or_else(|| error("tool", "expected a tool name as a string"))?;
    let tool = schema.tool_index(tool_name).ok_or_else(|| RequestError {
        path: "tool".to_owned(),
        message: format!("unknown tool `{tool_name}`"),
        help: help_did_you_mean(tool_name, schema.tools.iter().map(|t| t.name.as_str())),
    })?;
    let agent = decode_attributes("agent", &schema.agent, agent)?;
    let context = decode_attributes("context", &schema.context, context)?;
    let args = decode_arguments(&schema.tools[tool].args, args)?;
    let session = match session {
        None | Some(JsonRef::Null) => String::new(),
        Some(JsonRef::String(s)) => s.to_string(),
        Some(other) => {
            return Err(error(
                "session",
                format!("expected a string, found {}", describe(other)),
            ))
        }
    };
    let time =
        match time {
            None | Some(JsonRef::Null) => None,
            Some(JsonRef::String(text)) => Some(super::time::parse_rfc3339(text).ok_or_else(
                || RequestError {
                    path: "time".to_owned(),
                    message: format!("`{text}` is not an RFC 3339 date-time"),
                    help: Some("write e.g. \"2026-12-01T14:03:00Z\"".to_owned()),
                },
            )?),
            Some(other) => {
                return Err(error(
                    "time",
                    format!(
                        "expected an RFC 3339 date-time string, found {}",
                        describe(other)
                    ),
                ))
            }
        };
    let mut approvals = vec![false; schema.approvers.len()];
    match approval_groups {
        None | Some(JsonRef::Null) => {}
        Some(JsonRef::Array(groups)) => {
            for (i, group) in groups.iter().enumerate() {
                let name = group.as_str().ok_or_else(|| {
                    error(format!("approvals[{i}]"), "expected an approver group name")
                })?;
                let index = schema
                    .approvers
                    .iter()
                    .position(|g| g == name)
                    .ok_or_else(|| RequestError {
                        path: format!("approvals[{i}]"),
                        message: format!("unknown approver group `{name}`"),
                        help: help_did_you_mean(name, schema.approvers.iter().map(String::as_str)),
                    })?;
                approvals[index] = true;
            }
        }
        Some(other) => {
            return Err(error(
                "approvals",
                format!("expected a list of group names, found {}", describe(other)),
            ))
        }
    }
    let mut decoded_counters = Vec::new();
    match counter_values {
        None | Some(JsonRef::Null) => {}
        Some(entries @ JsonRef::Object(_)) => {
            for (id, count) in entries.sorted_members() {
                let path = format!("counters.{id}");
                let rule = match counters.limits.get(id) {
                    Some(&rule) => rule,
                    None if counters.others.contains_key(id) => {
                        return Err(error(path, "is not a `limit` rule, so it has no counter"))
                    }
                    None => {
                        return Err(RequestError {
                            path,
                            message: "names no limit rule".to_owned(),
                            help: help_did_you_mean(id, counters.limits.keys().map(String::as_str)),
                        })
                    }
                };
                let count = count.as_u64().ok_or_else(|| {
                    error(
                        format!("counters.{id}"),
                        "expected a count (a whole number, 0 or more)",
                    )
                })?;
                decoded_counters.push((rule, count));
            }
        }
        Some(other) => {
            return Err(error(
                "counters",
                format!(
                    "expected an object of rule id to count, found {}",
                    describe(other)
                ),
            ))
        }
    }
    decoded_counters.sort_unstable();
    Ok(Request {
        agent,
        context,
        tool,
        args,
        session,
        approvals,
        counters: decoded_counters,
        time,
    })
}
