//! Writes IR back in the language's own syntax, and dumps a whole [`PolicySet`] readably.
//!
//! Conditions print as valid `.pol` conditions, so explanations and findings can quote them.
//! The dump is what the corpus snapshots show for valid input: everything semantic, no spans.

use crate::ir::*;
use std::fmt::{self, Write};

/// A name as it must be written: bare if it is an identifier, else in backticks.
pub fn name(text: &str) -> String {
    let mut chars = text.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        text.to_owned()
    } else {
        format!("`{text}`")
    }
}

/// A string literal with JSON-style escapes.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_invisible(c) => {
                let _ = write!(out, "\\u{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters that would be invisible in a policy file (zero-width, bidi controls): written as
/// escapes so that a reviewer sees them.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Path::Agent(a) => write!(f, "agent.{}", name(a)),
            Path::Context(c) => write!(f, "context.{}", name(c)),
            Path::Arg(a) => write!(f, "args.{}", name(a)),
            Path::ToolName => f.write_str("tool.name"),
            Path::ToolKind => f.write_str("tool.kind"),
            Path::Session => f.write_str("session"),
            Path::Element => f.write_str("element"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Value::Str(s) | Value::Tool(s) => f.write_str(&string(s)),
            Value::Int(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Enum(member) => f.write_str(&name(member)),
            Value::Kind(kind) => f.write_str(kind.as_str()),
        }
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

fn string_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| string(i)).collect();
    format!("[{}]", items.join(", "))
}

/// Named values (`let`) by the text of their value as a condition shows it: a condition
/// written with a name is shown with it (`args.body matches secret_markers`), not expanded.
pub type Names = std::collections::BTreeMap<String, String>;

/// A condition shown with the set's named values (see [`Names`]).
pub struct WithNames<'a> {
    pub cond: &'a Cond,
    pub names: &'a Names,
}

impl fmt::Display for WithNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write_cond(self.cond, f, "element", false, Some(self.names))
    }
}

/// The text a `let`'s value has inside a displayed condition, for [`Names`]: a string or a
/// list of strings (the values conditions compare text with).
pub fn named_value_text(value: &crate::ast::ValueKind) -> Option<String> {
    use crate::ast::ValueKind;
    match value {
        ValueKind::Str(text) => Some(string(text)),
        ValueKind::List(items) => {
            let texts: Option<Vec<String>> = items
                .iter()
                .map(|item| match &item.kind {
                    ValueKind::Str(text) => Some(text.clone()),
                    _ => None,
                })
                .collect();
            texts.map(|texts| string_list(&texts))
        }
        _ => None,
    }
}

/// Writes a condition; `subject` is how `Path::Element` reads (`every args.to ...`).
fn write_cond(
    cond: &Cond,
    f: &mut fmt::Formatter,
    subject: &str,
    nested: bool,
    names: Option<&Names>,
) -> fmt::Result {
    let path = |p: &Path| match p {
        Path::Element => subject.to_owned(),
        other => other.to_string(),
    };
    // A literal written as a named value reads as its name.
    let literal = |text: String| -> String {
        names
            .and_then(|names| names.get(&text).cloned())
            .unwrap_or(text)
    };
    match cond {
        Cond::And(items) | Cond::Or(items) => {
            let joiner = if matches!(cond, Cond::And(_)) {
                " and "
            } else {
                " or "
            };
            if nested {
                f.write_str("(")?;
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(joiner)?;
                }
                let child_nested = matches!(item, Cond::And(_) | Cond::Or(_));
                write_cond(item, f, subject, child_nested, names)?;
            }
            if nested {
                f.write_str(")")?;
            }
            Ok(())
        }
        Cond::Not(inner) => match inner.as_ref() {
            Cond::In { path: p, values } => {
                write!(f, "{} not in {}", path(p), literal(list(values)))
            }
            other => {
                f.write_str("not ")?;
                let needs_parens = matches!(other, Cond::And(_) | Cond::Or(_));
                write_cond(other, f, subject, needs_parens, names)
            }
        },
        Cond::Has(arg) => write!(f, "has args.{}", name(arg)),
        Cond::Compare { path: p, op, value } => {
            write!(
                f,
                "{} {} {}",
                path(p),
                op.as_str(),
                literal(value.to_string())
            )
        }
        Cond::In { path: p, values } => write!(f, "{} in {}", path(p), literal(list(values))),
        Cond::Text {
            path: p,
            op,
            pattern,
        } => write!(
            f,
            "{} {} {}",
            path(p),
            op.as_str(),
            literal(string(pattern))
        ),
        Cond::ContainsAny { path: p, needles } => {
            write!(
                f,
                "{} contains any {}",
                path(p),
                literal(string_list(needles))
            )
        }
        Cond::ListContains { path: p, value } => {
            write!(f, "{} contains {}", path(p), literal(string(value)))
        }
        Cond::ListContainsAny { path: p, values } => {
            write!(
                f,
                "{} contains any {}",
                path(p),
                literal(string_list(values))
            )
        }
        Cond::Every { path: p, cond } => {
            write_cond(cond, f, &format!("every {}", path(p)), false, names)
        }
        Cond::Some { path: p, cond } => {
            write_cond(cond, f, &format!("some {}", path(p)), false, names)
        }
        Cond::Count { path: p, op, value } => {
            write!(f, "count {} {} {value}", path(p), op.as_str())
        }
        Cond::Length { path: p, op, value } => {
            write!(f, "length {} {} {value}", path(p), op.as_str())
        }
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write_cond(self, f, "element", false, None)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Type::String => f.write_str("string"),
            Type::Int { range: None } => f.write_str("int"),
            Type::Int {
                range: Some((low, high)),
            } => write!(f, "int in {low}..{high}"),
            Type::Decimal { range: None } => f.write_str("decimal"),
            Type::Decimal {
                range: Some((low, high)),
            } => write!(f, "decimal in {low}..{high}"),
            Type::Bool => f.write_str("bool"),
            Type::Enum { members } => {
                let members: Vec<String> = members.iter().map(|m| name(m)).collect();
                write!(f, "enum {{ {} }}", members.join(", "))
            }
            Type::StringList => f.write_str("[string]"),
        }
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Actions::Tools(tools) if tools.len() == 1 => f.write_str(&name(&tools[0])),
            Actions::Tools(tools) => {
                let tools: Vec<String> = tools.iter().map(|t| name(t)).collect();
                write!(f, "[{}]", tools.join(", "))
            }
            Actions::AnyTool => f.write_str("any tool"),
            Actions::AnyKind(kind) => write!(f, "any {} tool", kind.as_str()),
        }
    }
}

/// Seconds as the shortest duration literal that denotes them exactly.
pub fn duration(seconds: u64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Any(terms) => {
                fn term(scope_term: &ScopeTerm) -> String {
                    match scope_term {
                        ScopeTerm::Tenant(t) => format!("tenant {}", string(t)),
                        ScopeTerm::Agent(a) => format!("agent {}", string(a)),
                        ScopeTerm::Role(r) => format!("role {}", name(r)),
                        ScopeTerm::Both(parts) => {
                            parts.iter().map(term).collect::<Vec<_>>().join(" and ")
                        }
                    }
                }
                let terms: Vec<String> = terms.iter().map(term).collect();
                f.write_str(&terms.join(" or "))
            }
        }
    }
}

fn attribute(attribute: &Attribute) -> String {
    let known = match &attribute.known {
        Some(values) => {
            let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            format!(" known {{ {} }}", values.join(", "))
        }
        None => String::new(),
    };
    format!(
        "{}: {}{known}{}",
        name(&attribute.name),
        attribute.ty,
        if attribute.optional { "?" } else { "" }
    )
}

/// A readable, span-free dump of a whole policy set.
pub fn dump(set: &PolicySet) -> String {
    let mut out = String::new();
    let schema = &set.schema;
    out.push_str("schema\n");
    for a in &schema.agent {
        let _ = writeln!(out, "  agent.{}", attribute(a));
    }
    for a in &schema.context {
        let _ = writeln!(out, "  context.{}", attribute(a));
    }
    if !schema.approvers.is_empty() {
        let _ = writeln!(out, "  approvers: {}", schema.approvers.join(", "));
    }
    for tool in &schema.tools {
        let args: Vec<String> = tool.args.iter().map(attribute).collect();
        let _ = writeln!(
            out,
            "  tool {} ({}): {}",
            name(&tool.name),
            tool.kind.as_str(),
            if args.is_empty() {
                "no arguments".to_owned()
            } else {
                args.join(", ")
            }
        );
    }
    for policy in &set.policies {
        let on_failure = match policy.on_failure {
            FailureMode::Deny => "deny",
            FailureMode::Allow => "allow",
        };
        let _ = writeln!(
            out,
            "policy {} applies to {} on failure {on_failure}",
            policy.name, policy.scope
        );
        if let Some(owner) = &policy.owner {
            let _ = writeln!(out, "  owner {}", string(owner));
        }
        if let Some(description) = &policy.description {
            let _ = writeln!(out, "  description {}", string(description));
        }
        for &index in &policy.rules {
            dump_rule(&mut out, set, &set.rules[index]);
        }
    }
    out
}

/// One rule as the dump shows it, with its policy's scope: span-free, so two versions of a
/// set compare equal when a rule only moved.
pub fn rule_text(set: &PolicySet, rule: &Rule) -> String {
    let mut out = String::new();
    if let Some(policy) = set.policies.get(rule.policy) {
        let _ = writeln!(out, "applies to {}", policy.scope);
    }
    dump_rule(&mut out, set, rule);
    out
}

fn dump_rule(out: &mut String, set: &PolicySet, rule: &Rule) {
    let tools: Vec<&str> = rule
        .tools
        .iter()
        .map(|&t| set.schema.tools[t].name.as_str())
        .collect();
    let head = match &rule.effect {
        Effect::Allow { .. } => format!("allow {}", rule.actions),
        Effect::Deny { .. } => format!("deny {}", rule.actions),
        Effect::RequireApproval { groups } => {
            format!(
                "require approval from {} for {}",
                groups.join(", "),
                rule.actions
            )
        }
        Effect::Limit(limit) => format!(
            "limit {} to {} per {}{}",
            rule.actions,
            limit.max,
            duration(limit.window_seconds),
            limit
                .key
                .as_ref()
                .map(|k| format!(" per {k}"))
                .unwrap_or_default()
        ),
    };
    let _ = writeln!(out, "  rule {}: {head}", rule.id);
    let _ = writeln!(out, "    tools: [{}]", tools.join(", "));
    if let Some(when) = &rule.when {
        let _ = writeln!(out, "    when: {when}");
    }
    if let Some(unless) = &rule.unless {
        let _ = writeln!(out, "    unless: {unless}");
    }
    match &rule.effect {
        Effect::Allow { obligations } => {
            for obligation in obligations {
                let _ = writeln!(
                    out,
                    "    with {} {}",
                    name(&obligation.name),
                    string(&obligation.text)
                );
            }
        }
        Effect::Deny { overrides } if !overrides.is_empty() => {
            let _ = writeln!(out, "    overrides: {}", overrides.join(", "));
        }
        _ => {}
    }
    if let Some(because) = &rule.because {
        let _ = writeln!(out, "    because: {}", string(because));
    }
}
