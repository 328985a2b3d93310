//! `polctl fmt`: one canonical layout for `.pol` files.
//!
//! The layout is computed from the syntax tree, so formatting never changes meaning (the corpus
//! tests check that the IR is the same before and after). Comments are kept: a comment on its
//! own line stays before the node that follows it, a comment at the end of a line stays there,
//! and a comment inside a rule moves to just above the rule. Single blank lines between members
//! are kept; runs of blank lines collapse to one. Files with syntax errors are not formatted.

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Severity};
use crate::display::string;
use crate::lexer::Comment;
use crate::parser::parse_file;
use crate::source::{FileId, Span};

/// Lines longer than this are broken at clause boundaries, then at top-level `and`/`or`.
const MAX_WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Formats one file; returns its syntax errors instead when it does not parse.
pub fn format_source(source: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = parse_file(FileId(0), source);
    let errors: Vec<Diagnostic> = parsed
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut formatter = Formatter {
        source,
        comments: parsed.comments,
        next_comment: 0,
        out: String::new(),
        last_end: 0,
        block_empty: true,
    };
    formatter.file(&parsed.file);
    Ok(formatter.out)
}

struct Formatter<'s> {
    source: &'s str,
    comments: Vec<Comment>,
    next_comment: usize,
    out: String,
    /// Source offset of the end of the last node or comment written.
    last_end: usize,
    /// Nothing has been written in the current block yet (no blank line may open a block).
    block_empty: bool,
}

fn indent(level: usize) -> String {
    INDENT.repeat(level)
}

impl Formatter<'_> {
    fn line(&mut self, level: usize, text: &str) {
        self.out.push_str(&indent(level));
        self.out.push_str(text);
        self.out.push('\n');
        self.block_empty = false;
    }

    fn blank_line(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn blank_between(&self, from: usize, to: usize) -> bool {
        let text = self.source.get(from..to).unwrap_or("");
        let mut newlines = 0;
        for c in text.chars() {
            if c == '\n' {
                newlines += 1;
                if newlines >= 2 {
                    return true;
                }
            } else if !c.is_whitespace() {
                newlines = 0;
            }
        }
        false
    }

    fn peek_comment(&self) -> Option<&Comment> {
        self.comments.get(self.next_comment)
    }

    /// Writes the comments that come before `start`, with the blank lines around them kept, and
    /// a blank line before the node when `force_blank` or the source had one.
    fn leading(&mut self, start: usize, level: usize, force_blank: bool) {
        let mut need_blank = force_blank;
        while let Some(comment) = self.peek_comment().filter(|c| c.start < start).cloned() {
            if !self.block_empty && (need_blank || self.blank_between(self.last_end, comment.start))
            {
                self.blank_line();
            }
            need_blank = false;
            self.line(level, &comment.text);
            self.last_end = comment.end;
            self.next_comment += 1;
        }
        if !self.block_empty && (need_blank || self.blank_between(self.last_end, start)) {
            self.blank_line();
        }
    }

    /// Writes the comments inside a node that is printed as one unit, just above it.
    fn hoist_inner(&mut self, span: Span, level: usize) {
        while let Some(comment) = self
            .peek_comment()
            .filter(|c| c.start < span.end as usize)
            .cloned()
        {
            self.line(level, &comment.text);
            self.next_comment += 1;
        }
    }

    fn has_comment_inside(&self, span: Span) -> bool {
        self.comments[self.next_comment..]
            .iter()
            .any(|c| c.start >= span.start as usize && c.start < span.end as usize)
    }

    /// Appends the comment that follows `end` on the same source line, if any.
    fn trailing(&mut self, end: usize) {
        let Some(comment) = self.peek_comment().cloned() else {
            self.last_end = end;
            return;
        };
        let between = self.source.get(end..comment.start).unwrap_or("\n");
        if comment.start >= end && !between.contains('\n') {
            if self.out.ends_with('\n') {
                self.out.pop();
            }
            self.out.push_str("  ");
            self.out.push_str(&comment.text);
            self.out.push('\n');
            self.next_comment += 1;
            self.last_end = comment.end;
        } else {
            self.last_end = end;
        }
    }

    /// The comments left before the closing `}` of a block (or the end of the file).
    fn closing(&mut self, end: usize, level: usize) {
        self.leading(end, level, false);
    }

    fn file(&mut self, file: &File) {
        for item in &file.items {
            let span = item.span();
            self.leading(span.start as usize, 0, true);
            match item {
                Item::Schema(schema) => self.schema(schema),
                Item::Policy(policy) => self.policy(policy),
                Item::Let(decl) => {
                    self.hoist_inner(decl.span, 0);
                    let value = value(self.source, &decl.value);
                    let text = format!("let {} = {value}", name(&decl.name));
                    if text.len() > MAX_WIDTH {
                        if let ValueKind::List(items) = &decl.value.kind {
                            self.line(0, &format!("let {} = [", name(&decl.name)));
                            for item in items {
                                self.line(1, &format!("{},", self::value(self.source, item)));
                            }
                            self.line(0, "]");
                        } else {
                            self.line(0, &text);
                        }
                    } else {
                        self.line(0, &text);
                    }
                    self.trailing(decl.span.end as usize);
                }
                // Unreachable: files with syntax errors are not formatted.
                Item::Error(_) => {}
            }
        }
        self.closing(self.source.len(), 0);
    }

    fn open_block(&mut self, level: usize, header: &str) {
        self.line(level, header);
        self.block_empty = true;
    }

    fn close_block(&mut self, level: usize, end: usize) {
        // The `}` itself is the last byte of the span.
        self.closing(end.saturating_sub(1), level + 1);
        self.line(level, "}");
        self.trailing(end);
    }

    fn schema(&mut self, schema: &SchemaBlock) {
        self.open_block(0, "schema {");
        for section in &schema.sections {
            let span = section.span();
            self.leading(span.start as usize, 1, false);
            match section {
                SchemaSection::Attributes {
                    keyword, fields, ..
                } => {
                    self.open_block(1, &format!("{} {{", keyword.text));
                    self.fields(fields, 2);
                    self.close_block(1, span.end as usize);
                }
                SchemaSection::Approvers { groups, .. } => {
                    self.hoist_inner(span, 1);
                    let groups: Vec<String> = groups.iter().map(name).collect();
                    self.line(1, &format!("approvers {{ {} }}", groups.join(", ")));
                    self.trailing(span.end as usize);
                }
                SchemaSection::Tool(tool) => self.tool(tool),
                SchemaSection::Error(_) => {}
            }
        }
        self.close_block(0, schema.span.end as usize);
    }

    fn fields(&mut self, fields: &[Field], level: usize) {
        for field in fields {
            self.leading(field.span.start as usize, level, false);
            self.hoist_inner(field.span, level);
            self.line(level, &field_text(field));
            self.trailing(field.span.end as usize);
        }
    }

    fn tool(&mut self, tool: &ToolDecl) {
        let header = format!("tool {}: {}", name(&tool.name), name(&tool.kind));
        if tool.args.is_empty() {
            self.hoist_inner(tool.span, 1);
            self.line(1, &header);
            self.trailing(tool.span.end as usize);
            return;
        }
        let args: Vec<String> = tool.args.iter().map(field_text).collect();
        let one_line = format!("{header} {{ {} }}", args.join(", "));
        if !self.has_comment_inside(tool.span) && indent(1).len() + one_line.len() <= MAX_WIDTH {
            self.line(1, &one_line);
            self.trailing(tool.span.end as usize);
            return;
        }
        self.open_block(1, &format!("{header} {{"));
        self.fields(&tool.args, 2);
        self.close_block(1, tool.span.end as usize);
    }

    fn policy(&mut self, policy: &PolicyBlock) {
        self.open_block(0, &format!("policy {} {{", dotted(&policy.name)));
        for member in &policy.members {
            let span = member.span();
            let is_rule = matches!(member, PolicyMember::Rule(_));
            self.leading(span.start as usize, 1, is_rule);
            self.hoist_inner(span, 1);
            match member {
                PolicyMember::Owner(text, _) => {
                    self.line(1, &format!("owner {}", string(&text.value)))
                }
                PolicyMember::Description(text, _) => {
                    self.line(1, &format!("description {}", literal(self.source, text)))
                }
                PolicyMember::AppliesTo(scopes, _) => {
                    let scopes: Vec<String> =
                        scopes.iter().map(|s| scope(self.source, s)).collect();
                    self.line(1, &format!("applies to {}", scopes.join(" or ")));
                }
                PolicyMember::OnFailure(mode, _) => {
                    self.line(1, &format!("on failure {}", name(mode)))
                }
                PolicyMember::Rule(rule) => self.rule(rule),
                PolicyMember::Error(_) => {}
            }
            self.trailing(span.end as usize);
        }
        self.close_block(0, policy.span.end as usize);
    }

    fn rule(&mut self, rule: &RuleDecl) {
        self.line(1, &format!("rule {}:", name(&rule.name)));
        let head = head(&rule.head);
        let find =
            |keyword: &'static str| rule.clauses.iter().filter(move |c| c.keyword() == keyword);
        let conditions: Vec<(&str, &Expr)> = rule
            .clauses
            .iter()
            .filter_map(|c| match c {
                Clause::When(e, _) => Some(("when", e)),
                _ => None,
            })
            .chain(rule.clauses.iter().filter_map(|c| match c {
                Clause::Unless(e, _) => Some(("unless", e)),
                _ => None,
            }))
            .collect();
        let mut first = head.clone();
        for (keyword, condition) in &conditions {
            first.push_str(&format!(" {keyword} {}", expr(self.source, condition)));
        }
        if indent(2).len() + first.len() <= MAX_WIDTH {
            self.line(2, &first);
        } else {
            self.line(2, &head);
            for (keyword, condition) in &conditions {
                self.condition_lines(keyword, condition);
            }
        }
        for clause in find("with") {
            if let Clause::With { name: n, text, .. } = clause {
                self.line(
                    2,
                    &format!("with {} {}", name(n), literal(self.source, text)),
                );
            }
        }
        for clause in find("overrides") {
            if let Clause::Overrides(ids, _) = clause {
                let ids: Vec<String> = ids.iter().map(dotted).collect();
                self.line(2, &format!("overrides {}", ids.join(", ")));
            }
        }
        for clause in find("because") {
            if let Clause::Because(text, _) = clause {
                self.line(2, &format!("because {}", literal(self.source, text)));
            }
        }
    }

    /// `when COND` on its own line, broken at top-level `and`/`or` when it is still too long.
    fn condition_lines(&mut self, keyword: &str, condition: &Expr) {
        let one_line = format!("{keyword} {}", expr(self.source, condition));
        let (joiner, items) = match &condition.kind {
            ExprKind::And(items) => ("and", items),
            ExprKind::Or(items) => ("or", items),
            _ => {
                self.line(3, &one_line);
                return;
            }
        };
        if indent(3).len() + one_line.len() <= MAX_WIDTH {
            self.line(3, &one_line);
            return;
        }
        self.line(3, &format!("{keyword} {}", expr(self.source, &items[0])));
        for item in &items[1..] {
            self.line(4, &format!("{joiner} {}", expr(self.source, item)));
        }
    }
}

/// A string literal as the author wrote it (escapes kept), or re-escaped if the span does not
/// hold a string (which the parser rules out).
fn source_string(src: &str, span: Span, value: &str) -> String {
    match src.get(span.range()) {
        Some(text) if text.starts_with('"') && text.ends_with('"') && text.len() >= 2 => {
            text.to_owned()
        }
        _ => string(value),
    }
}

fn literal(src: &str, text: &StrLit) -> String {
    source_string(src, text.span, &text.value)
}

fn name(name: &Name) -> String {
    let display = crate::display::name(&name.text);
    if name.quoted && !display.starts_with('`') {
        format!("`{}`", name.text)
    } else {
        display
    }
}

fn dotted(name: &DottedName) -> String {
    name.parts
        .iter()
        .map(self::name)
        .collect::<Vec<_>>()
        .join(".")
}

fn field_text(field: &Field) -> String {
    format!(
        "{}: {}{}",
        name(&field.name),
        type_expr(&field.ty),
        if field.optional { "?" } else { "" }
    )
}

fn type_expr(ty: &TypeExpr) -> String {
    match &ty.kind {
        TypeExprKind::Named(n) => name(n),
        TypeExprKind::Ranged { base, low, high } => {
            format!("{} in {}..{}", name(base), low.text, high.text)
        }
        TypeExprKind::Enum(members) => {
            let members: Vec<String> = members.iter().map(name).collect();
            format!("enum {{ {} }}", members.join(", "))
        }
        TypeExprKind::List(inner) => format!("[{}]", type_expr(inner)),
        TypeExprKind::Known { base, values } => {
            let values: Vec<String> = values.iter().map(|v| string(&v.value)).collect();
            format!("{} known {{ {} }}", name(base), values.join(", "))
        }
    }
}

fn scope(src: &str, scope: &ScopeExpr) -> String {
    match scope {
        ScopeExpr::All(_) => "all".to_owned(),
        ScopeExpr::Tenant(t, _) => format!("tenant {}", literal(src, t)),
        ScopeExpr::Agent(a, _) => format!("agent {}", literal(src, a)),
        ScopeExpr::Role(r, _) => format!("role {}", name(r)),
        ScopeExpr::Both(parts, _) => parts
            .iter()
            .map(|part| self::scope(src, part))
            .collect::<Vec<_>>()
            .join(" and "),
    }
}

fn actions(actions: &Actions) -> String {
    match &actions.kind {
        ActionsKind::Tool(tool) => name(tool),
        ActionsKind::List(tools) => {
            let tools: Vec<String> = tools.iter().map(name).collect();
            format!("[{}]", tools.join(", "))
        }
        ActionsKind::AnyTool => "any tool".to_owned(),
        ActionsKind::AnyKind(kind) => format!("any {} tool", name(kind)),
    }
}

fn head(head: &RuleHead) -> String {
    match head {
        RuleHead::Allow(a) => format!("allow {}", actions(a)),
        RuleHead::Deny(a) => format!("deny {}", actions(a)),
        RuleHead::RequireApproval { groups, actions: a } => {
            let groups: Vec<String> = groups.iter().map(name).collect();
            format!(
                "require approval from {} for {}",
                groups.join(", "),
                actions(a)
            )
        }
        RuleHead::Limit {
            actions: a,
            count,
            window,
            key,
        } => format!(
            "limit {} to {} per {}{}",
            actions(a),
            count.text,
            window.text,
            key.as_ref()
                .map(|k| format!(" per {}", path(k)))
                .unwrap_or_default()
        ),
    }
}

fn path(path: &Path) -> String {
    match &path.field {
        Some(field) => format!("{}.{}", name(&path.root), name(field)),
        None => name(&path.root),
    }
}

fn value(src: &str, value: &ValueExpr) -> String {
    match &value.kind {
        ValueKind::Str(s) => source_string(src, value.span, s),
        ValueKind::Number(n) => n.text.clone(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Name(n) => name(n),
        ValueKind::List(items) => {
            let items: Vec<String> = items.iter().map(|i| self::value(src, i)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

fn expr(src: &str, e: &Expr) -> String {
    match &e.kind {
        ExprKind::And(items) => items
            .iter()
            .map(|i| expr(src, i))
            .collect::<Vec<_>>()
            .join(" and "),
        ExprKind::Or(items) => items
            .iter()
            .map(|i| expr(src, i))
            .collect::<Vec<_>>()
            .join(" or "),
        ExprKind::Not(inner) => format!("not {}", expr(src, inner)),
        ExprKind::Paren(inner) => format!("({})", expr(src, inner)),
        ExprKind::Has(p) => format!("has {}", path(p)),
        ExprKind::Compare {
            path: p,
            op,
            value: v,
            ..
        } => {
            format!("{} {} {}", path(p), op.as_str(), value(src, v))
        }
        ExprKind::Quantified {
            quantifier,
            path: p,
            op,
            value: v,
            ..
        } => format!(
            "{} {} {} {}",
            match quantifier {
                Quantifier::Every => "every",
                Quantifier::Some => "some",
            },
            path(p),
            op.as_str(),
            value(src, v)
        ),
        ExprKind::Count {
            path: p,
            op,
            value: v,
            ..
        } => {
            format!("count {} {} {}", path(p), op.as_str(), value(src, v))
        }
        ExprKind::Length {
            path: p,
            op,
            value: v,
            ..
        } => {
            format!("length {} {} {}", path(p), op.as_str(), value(src, v))
        }
    }
}
