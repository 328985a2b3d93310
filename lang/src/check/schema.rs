//! Builds the checked [`Schema`] from the `schema { ... }` block.

use super::{codes, Checker};
use crate::ast::{self, SchemaSection, TypeExpr, TypeExprKind};
use crate::decimal::{Decimal, DecimalError};
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::ir::{Attribute, Schema, Tool, ToolKind, Type};
use crate::source::Span;
use crate::suggest::help_did_you_mean;
use std::collections::HashMap;

const TYPE_NAMES: [&str; 4] = ["string", "int", "decimal", "bool"];

impl Checker<'_> {
    pub(super) fn build_schema(&mut self, block: &ast::SchemaBlock) -> Schema {
        let mut schema = Schema {
            agent: Vec::new(),
            context: Vec::new(),
            approvers: Vec::new(),
            tools: Vec::new(),
        };
        let mut seen_sections: HashMap<&str, Span> = HashMap::new();
        let mut tool_spans: HashMap<String, Span> = HashMap::new();
        let mut approver_spans: HashMap<String, Span> = HashMap::new();
        for section in &block.sections {
            match section {
                SchemaSection::Attributes {
                    keyword,
                    fields,
                    span,
                } => {
                    if let Some(first) = seen_sections.insert(keyword.text.as_str(), *span) {
                        self.error(
                            Diagnostic::error(
                                DiagnosticKind::Schema,
                                codes::DUPLICATE_DECLARATION,
                                keyword.span,
                                format!("the schema declares `{}` twice", keyword.text),
                            )
                            .with_secondary(first, "first declared here")
                            .with_help(format!("merge both `{}` blocks into one", keyword.text)),
                        );
                        continue;
                    }
                    let attributes = self.build_fields(fields, &keyword.text, false);
                    if keyword.text == "agent" {
                        schema.agent = attributes;
                    } else {
                        schema.context = attributes;
                    }
                }
                SchemaSection::Approvers { groups, span } => {
                    if let Some(first) = seen_sections.insert("approvers", *span) {
                        self.error(
                            Diagnostic::error(
                                DiagnosticKind::Schema,
                                codes::DUPLICATE_DECLARATION,
                                *span,
                                "the schema declares `approvers` twice",
                            )
                            .with_secondary(first, "first declared here")
                            .with_help("list every approver group in one `approvers { .. }` block"),
                        );
                        continue;
                    }
                    for group in groups {
                        if let Some(first) = approver_spans.insert(group.text.clone(), group.span) {
                            self.error(duplicate(group, first, "approver group"));
                        } else {
                            schema.approvers.push(group.text.clone());
                        }
                    }
                }
                SchemaSection::Tool(tool) => {
                    if let Some(first) = tool_spans.insert(tool.name.text.clone(), tool.name.span) {
                        self.error(duplicate(&tool.name, first, "tool"));
                        continue;
                    }
                    let kind = match ToolKind::parse(&tool.kind.text) {
                        Some(kind) => kind,
                        None => {
                            let mut diagnostic = Diagnostic::error(
                                DiagnosticKind::Schema,
                                codes::UNKNOWN_TOOL_KIND,
                                tool.kind.span,
                                format!("unknown tool kind `{}`", tool.kind.text),
                            )
                            .with_label("expected `read`, `write`, `send` or `execute`");
                            diagnostic.help = help_did_you_mean(
                                &tool.kind.text,
                                ToolKind::ALL.iter().map(|k| k.as_str()),
                            );
                            self.error(diagnostic);
                            ToolKind::Execute
                        }
                    };
                    let args = self.build_fields(&tool.args, "tool", true);
                    schema.tools.push(Tool {
                        name: tool.name.text.clone(),
                        kind,
                        args,
                        span: tool.name.span,
                    });
                }
                SchemaSection::Error(_) => {}
            }
        }
        schema
    }

    fn build_fields(
        &mut self,
        fields: &[ast::Field],
        owner: &str,
        optional_allowed: bool,
    ) -> Vec<Attribute> {
        let mut attributes: Vec<Attribute> = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for field in fields {
            if let Some(first) = seen.insert(field.name.text.as_str(), field.name.span) {
                let what = if owner == "tool" {
                    "argument"
                } else {
                    "attribute"
                };
                self.error(duplicate(&field.name, first, what));
                continue;
            }
            if field.optional && !optional_allowed {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::OPTIONAL_NOT_ALLOWED,
                        field.span,
                        format!("`{owner}` attributes cannot be optional"),
                    )
                    .with_help(format!(
                        "every request carries every `{owner}` attribute; only tool arguments can \
                         be optional (`cc: string?`)"
                    )),
                );
            }
            let known = match &field.ty.kind {
                TypeExprKind::Known { values, .. } => self.build_known(values, owner, field),
                _ => None,
            };
            let Some(ty) = self.build_type(&field.ty) else {
                continue;
            };
            attributes.push(Attribute {
                name: field.name.text.clone(),
                ty,
                optional: field.optional && optional_allowed,
                known,
                span: field.name.span,
            });
        }
        attributes
    }

    /// The values of `string known { .. }`, declared on an agent or context attribute.
    fn build_known(
        &mut self,
        values: &[ast::StrLit],
        owner: &str,
        field: &ast::Field,
    ) -> Option<Vec<String>> {
        if owner != "agent" && owner != "context" {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Schema,
                    codes::KNOWN_NOT_ALLOWED,
                    field.ty.span,
                    "`known` values are declared on `agent` and `context` attributes",
                )
                .with_help(format!(
                    "declare `{}: string` here; to restrict the values a tool accepts, use an \
                     `enum {{ .. }}` or a rule",
                    field.name.text
                )),
            );
            return None;
        }
        // `known { }` was reported by the parser; nothing is checked against it.
        if values.is_empty() {
            return None;
        }
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut known = Vec::new();
        for value in values {
            if let Some(first) = seen.insert(value.value.as_str(), value.span) {
                let name = ast::Name {
                    text: value.value.clone(),
                    quoted: true,
                    span: value.span,
                };
                self.error(duplicate(&name, first, "known value"));
            } else {
                known.push(value.value.clone());
            }
        }
        Some(known)
    }

    fn build_type(&mut self, ty: &TypeExpr) -> Option<Type> {
        match &ty.kind {
            TypeExprKind::Known { base, .. } if base.text == "string" => Some(Type::String),
            TypeExprKind::Known { base, .. } => {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::KNOWN_NOT_ALLOWED,
                        base.span,
                        format!(
                            "`known` values are declared on `string`, not `{}`",
                            base.text
                        ),
                    )
                    .with_help(
                        "for a closed set of values use `enum { .. }`; `known` is for strings \
                         whose usual values are listed but others may come (tenants)",
                    ),
                );
                None
            }
            TypeExprKind::Named(name) => match name.text.as_str() {
                "string" => Some(Type::String),
                "int" => Some(Type::Int { range: None }),
                "decimal" => Some(Type::Decimal { range: None }),
                "bool" => Some(Type::Bool),
                other => {
                    let help = help_did_you_mean(other, TYPE_NAMES).unwrap_or_else(|| {
                        "the types are `string`, `int`, `decimal`, `bool`, `enum { .. }` and \
                         `[string]`"
                            .to_owned()
                    });
                    self.error(
                        Diagnostic::error(
                            DiagnosticKind::Schema,
                            codes::UNKNOWN_TYPE,
                            name.span,
                            format!("unknown type `{other}`"),
                        )
                        .with_help(help),
                    );
                    None
                }
            },
            TypeExprKind::Ranged { base, low, high } => self.build_ranged(ty.span, base, low, high),
            TypeExprKind::Enum(members) => {
                let mut seen: HashMap<&str, Span> = HashMap::new();
                let mut names = Vec::new();
                for member in members {
                    if let Some(first) = seen.insert(member.text.as_str(), member.span) {
                        self.error(duplicate(member, first, "enum member"));
                    } else {
                        names.push(member.text.clone());
                    }
                }
                Some(Type::Enum { members: names })
            }
            TypeExprKind::List(inner) => match &inner.kind {
                TypeExprKind::Named(name) if name.text == "string" => Some(Type::StringList),
                _ => {
                    self.error(
                        Diagnostic::error(
                            DiagnosticKind::Schema,
                            codes::UNSUPPORTED_LIST,
                            ty.span,
                            "only lists of strings are supported",
                        )
                        .with_help("declare the argument as `[string]`"),
                    );
                    None
                }
            },
        }
    }

    fn build_ranged(
        &mut self,
        span: Span,
        base: &ast::Name,
        low: &ast::NumberLit,
        high: &ast::NumberLit,
    ) -> Option<Type> {
        match base.text.as_str() {
            "int" => {
                let low_value = self.parse_int_literal(low)?;
                let high_value = self.parse_int_literal(high)?;
                if low_value > high_value {
                    self.error(empty_range(span, &low.text, &high.text));
                    return None;
                }
                Some(Type::Int {
                    range: Some((low_value, high_value)),
                })
            }
            "decimal" => {
                let low_value = self.parse_decimal_literal(low)?;
                let high_value = self.parse_decimal_literal(high)?;
                if low_value > high_value {
                    self.error(empty_range(span, &low.text, &high.text));
                    return None;
                }
                Some(Type::Decimal {
                    range: Some((low_value, high_value)),
                })
            }
            other => {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::INVALID_RANGE,
                        base.span,
                        format!("`{other}` cannot have a range"),
                    )
                    .with_help("only `int` and `decimal` take a range: `int in 0..23`"),
                );
                None
            }
        }
    }

    /// Parses an integer literal, reporting decimals and overflow.
    pub(super) fn parse_int_literal(&mut self, literal: &ast::NumberLit) -> Option<i64> {
        if literal.is_decimal {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::INVALID_NUMBER,
                    literal.span,
                    format!("expected a whole number, found `{}`", literal.text),
                )
                .with_help("declare the value as `decimal` to use fractions"),
            );
            return None;
        }
        match literal.text.parse::<i64>() {
            Ok(value) => Some(value),
            Err(_) => {
                self.error(Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::INVALID_NUMBER,
                    literal.span,
                    format!("`{}` does not fit in a 64-bit integer", literal.text),
                ));
                None
            }
        }
    }

    pub(super) fn parse_decimal_literal(&mut self, literal: &ast::NumberLit) -> Option<Decimal> {
        match Decimal::parse(&literal.text) {
            Ok(value) => Some(value),
            Err(error) => {
                let message = match error {
                    DecimalError::TooManyFractionDigits => {
                        format!("`{}` has more than 6 fractional digits", literal.text)
                    }
                    DecimalError::OutOfRange | DecimalError::Malformed => {
                        format!("`{}` is not a valid decimal", literal.text)
                    }
                };
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::INVALID_NUMBER,
                        literal.span,
                        message,
                    )
                    .with_help("decimals are exact to 6 fractional digits: `98.70`, `0.000001`"),
                );
                None
            }
        }
    }
}

fn duplicate(name: &ast::Name, first: Span, what: &str) -> Diagnostic {
    Diagnostic::error(
        DiagnosticKind::Schema,
        codes::DUPLICATE_DECLARATION,
        name.span,
        format!("{what} `{}` is declared twice", name.text),
    )
    .with_secondary(first, "first declared here")
    .with_help(format!(
        "remove one of the declarations or rename this {what}"
    ))
}

fn empty_range(span: Span, low: &str, high: &str) -> Diagnostic {
    Diagnostic::error(
        DiagnosticKind::Schema,
        codes::INVALID_RANGE,
        span,
        format!("the range `{low}..{high}` is empty"),
    )
    .with_help("ranges are inclusive and written low to high: `in 0..23`")
}
