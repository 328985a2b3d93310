//! Conditions: path resolution, operator and literal typing, `has` tracking, lowering to
//! [`Cond`].

use super::policies::list_names;
use super::{codes, validate_regex, Checker};
use crate::ast::{self, ExprKind, Operator, Quantifier, ValueKind};
use crate::decimal::Decimal;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::ir::{Attribute, CmpOp, Cond, Path, TextOp, ToolKind, Type, Value};
use crate::source::Span;
use crate::suggest::{did_you_mean, help_did_you_mean};

/// What a condition may read: the rule's tools, and the optional arguments known to be present.
pub(super) struct Env<'t> {
    pub tools: &'t [usize],
    pub known_present: Vec<String>,
}

/// The type of a path, as the checker sees it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ty {
    String,
    Int(Option<(i64, i64)>),
    Decimal(Option<(Decimal, Decimal)>),
    Bool,
    Enum(Vec<String>),
    StringList,
    ToolName,
    ToolKind,
}

impl Ty {
    fn from_type(ty: &Type) -> Ty {
        match ty {
            Type::String => Ty::String,
            Type::Int { range } => Ty::Int(*range),
            Type::Decimal { range } => Ty::Decimal(*range),
            Type::Bool => Ty::Bool,
            Type::Enum { members } => Ty::Enum(members.clone()),
            Type::StringList => Ty::StringList,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Ty::String => "a string",
            Ty::Int(_) => "an int",
            Ty::Decimal(_) => "a decimal",
            Ty::Bool => "a bool",
            Ty::Enum(_) => "an enum",
            Ty::StringList => "a list of strings",
            Ty::ToolName => "a tool name",
            Ty::ToolKind => "a tool kind",
        }
    }

    /// Whether two argument types of the same name on different tools can be read as one.
    fn same_base(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Enum(a), Ty::Enum(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// A path resolved against the schema.
pub(super) struct Resolved {
    pub path: Path,
    pub ty: Ty,
    pub optional: bool,
    /// Where the attribute or argument is declared.
    pub declared: Option<Span>,
    /// Its `known` values, for a `string known { .. }` attribute.
    pub known: Option<Vec<String>>,
}

/// The optional arguments a condition proves present when it holds: the `has args.X` of its
/// top-level conjunction.
pub(super) fn has_facts(expr: &ast::Expr) -> Vec<String> {
    match &expr.kind {
        ExprKind::Has(path) if path.root.text == "args" => {
            path.field.iter().map(|f| f.text.clone()).collect()
        }
        ExprKind::And(items) => items.iter().flat_map(has_facts).collect(),
        ExprKind::Paren(inner) => has_facts(inner),
        _ => Vec::new(),
    }
}

/// The tools a standalone condition is about: those named by `tool.name == "x"` or
/// `tool.name in [..]` in its top-level conjunction, or every tool.
pub(super) fn tools_named(expr: &ast::Expr, schema: &crate::ir::Schema) -> Vec<usize> {
    fn names(expr: &ast::Expr, out: &mut Option<Vec<String>>) {
        match &expr.kind {
            ExprKind::And(items) => items.iter().for_each(|i| names(i, out)),
            ExprKind::Paren(inner) => names(inner, out),
            ExprKind::Compare {
                path, op, value, ..
            } if path.root.text == "tool"
                && path.field.as_ref().is_some_and(|f| f.text == "name")
                && matches!(op, Operator::Eq | Operator::In) =>
            {
                let mut named = Vec::new();
                let mut push = |v: &ast::ValueExpr| match &v.kind {
                    ValueKind::Str(s) => named.push(s.clone()),
                    ValueKind::Name(n) => named.push(n.text.clone()),
                    _ => {}
                };
                match &value.kind {
                    ValueKind::List(items) => items.iter().for_each(&mut push),
                    _ => push(value),
                }
                // Several `tool.name` tests in one conjunction: the tools named by all of them.
                *out = Some(match out.take() {
                    None => named,
                    Some(previous) => previous.into_iter().filter(|n| named.contains(n)).collect(),
                });
            }
            _ => {}
        }
    }
    let mut named = None;
    names(expr, &mut named);
    match named {
        Some(named) => schema
            .tools
            .iter()
            .enumerate()
            .filter(|(_, t)| named.contains(&t.name))
            .map(|(i, _)| i)
            .collect(),
        None => (0..schema.tools.len()).collect(),
    }
}

fn cmp_op(op: Operator) -> Option<CmpOp> {
    Some(match op {
        Operator::Eq => CmpOp::Eq,
        Operator::Ne => CmpOp::Ne,
        Operator::Lt => CmpOp::Lt,
        Operator::Le => CmpOp::Le,
        Operator::Gt => CmpOp::Gt,
        Operator::Ge => CmpOp::Ge,
        _ => return None,
    })
}

fn flatten(items: Vec<Cond>, and: bool) -> Cond {
    let mut flat = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Cond::And(inner) if and => flat.extend(inner),
            Cond::Or(inner) if !and => flat.extend(inner),
            other => flat.push(other),
        }
    }
    if and {
        Cond::And(flat)
    } else {
        Cond::Or(flat)
    }
}

/// How a path was spelt, for messages.
/// What `count` and `length` measure.
#[derive(Clone, Copy)]
enum Measure {
    Count,
    Length,
}

struct Site<'e> {
    text: String,
    span: Span,
    declared: Option<Span>,
    /// The `known` values of the attribute compared with.
    known: Option<&'e [String]>,
    op: Operator,
    op_span: Span,
    value: &'e ast::ValueExpr,
}

impl<'a> Checker<'a> {
    pub(super) fn lower_condition(&mut self, expr: &ast::Expr, env: &Env<'_>) -> Option<Cond> {
        self.lower(expr, env, &env.known_present)
    }

    fn lower(&mut self, expr: &ast::Expr, env: &Env<'_>, known: &[String]) -> Option<Cond> {
        match &expr.kind {
            ExprKind::And(items) => {
                let mut local = known.to_vec();
                let mut lowered = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.lower(item, env, &local) {
                        Some(cond) => lowered.push(cond),
                        None => ok = false,
                    }
                    local.extend(has_facts(item));
                }
                ok.then(|| flatten(lowered, true))
            }
            ExprKind::Or(items) => {
                let lowered: Vec<Option<Cond>> =
                    items.iter().map(|i| self.lower(i, env, known)).collect();
                let lowered: Option<Vec<Cond>> = lowered.into_iter().collect();
                lowered.map(|items| flatten(items, false))
            }
            ExprKind::Not(inner) => match self.lower(inner, env, known)? {
                Cond::Not(double) => Some(*double),
                cond => Some(Cond::Not(Box::new(cond))),
            },
            ExprKind::Paren(inner) => self.lower(inner, env, known),
            ExprKind::Has(path) => self.lower_has(path, env),
            ExprKind::Compare {
                path,
                op,
                op_span,
                value,
            } => {
                let resolved = self.resolve_path(path, env)?;
                self.check_present(path, &resolved, known)?;
                let site = Site {
                    text: path.text(),
                    span: path.span,
                    declared: resolved.declared,
                    known: resolved.known.as_deref(),
                    op: *op,
                    op_span: *op_span,
                    value,
                };
                self.lower_test(resolved.path, &resolved.ty, &site)
            }
            ExprKind::Quantified {
                quantifier,
                path,
                op,
                op_span,
                value,
            } => {
                let resolved = self.resolve_path(path, env)?;
                self.check_present(path, &resolved, known)?;
                let word = match quantifier {
                    Quantifier::Every => "every",
                    Quantifier::Some => "some",
                };
                if resolved.ty != Ty::StringList {
                    self.error(
                        Diagnostic::error(
                            DiagnosticKind::Type,
                            codes::OPERATOR_TYPE,
                            path.span,
                            format!(
                                "`{word}` needs a list, but `{}` is {}",
                                path.text(),
                                resolved.ty.describe()
                            ),
                        )
                        .with_help(format!("drop `{word}` to test `{}` itself", path.text())),
                    );
                    return None;
                }
                let site = Site {
                    text: format!("each element of `{}`", path.text()),
                    span: path.span,
                    declared: resolved.declared,
                    known: None,
                    op: *op,
                    op_span: *op_span,
                    value,
                };
                let cond = Box::new(self.lower_test(Path::Element, &Ty::String, &site)?);
                Some(match quantifier {
                    Quantifier::Every => Cond::Every {
                        path: resolved.path,
                        cond,
                    },
                    Quantifier::Some => Cond::Some {
                        path: resolved.path,
                        cond,
                    },
                })
            }
            ExprKind::Length {
                path,
                op,
                op_span,
                value,
            } => self.lower_measure(Measure::Length, path, *op, *op_span, value, env, known),
            ExprKind::Count {
                path,
                op,
                op_span,
                value,
            } => self.lower_measure(Measure::Count, path, *op, *op_span, value, env, known),
        }
    }

    /// `count PATH OP N` (a list's number of elements) and `length PATH OP N` (a string's
    /// number of characters): the path must be of the measured type, and N a whole number.
    #[allow(clippy::too_many_arguments)]
    fn lower_measure(
        &mut self,
        measure: Measure,
        path: &ast::Path,
        op: Operator,
        op_span: Span,
        value: &ast::ValueExpr,
        env: &Env<'_>,
        known: &[String],
    ) -> Option<Cond> {
        let resolved = self.resolve_path(path, env)?;
        self.check_present(path, &resolved, known)?;
        let (word, measured, needs, unit) = match measure {
            Measure::Count => ("count", Ty::StringList, "a list", "count"),
            Measure::Length => ("length", Ty::String, "a string", "length"),
        };
        if resolved.ty != measured {
            let help = match measure {
                Measure::Count => {
                    "`count` gives the number of elements of a `[string]` value".to_owned()
                }
                Measure::Length if resolved.ty == Ty::StringList => {
                    format!("for the number of elements write `count {}`", path.text())
                }
                Measure::Length => "`length` gives the number of characters of a string".to_owned(),
            };
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::OPERATOR_TYPE,
                    path.span,
                    format!(
                        "`{word}` needs {needs}, but `{}` is {}",
                        path.text(),
                        resolved.ty.describe()
                    ),
                )
                .with_help(help),
            );
            return None;
        }
        let Some(cmp) = cmp_op(op) else {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::OPERATOR_TYPE,
                    op_span,
                    format!("`{}` cannot compare a {unit}", op.as_str()),
                )
                .with_help(format!(
                    "compare a {unit} with `==`, `!=`, `<`, `<=`, `>` or `>=`"
                )),
            );
            return None;
        };
        let site = Site {
            text: format!("{word} {}", path.text()),
            span: path.span,
            declared: None,
            known: None,
            op: Operator::Eq,
            op_span,
            value,
        };
        let Value::Int(value) = self.lower_scalar(value, &Ty::Int(Some((0, i64::MAX))), &site)?
        else {
            return None;
        };
        let path = resolved.path;
        Some(match measure {
            Measure::Count => Cond::Count {
                path,
                op: cmp,
                value,
            },
            Measure::Length => Cond::Length {
                path,
                op: cmp,
                value,
            },
        })
    }

    fn lower_has(&mut self, path: &ast::Path, env: &Env<'_>) -> Option<Cond> {
        if path.root.text != "args" || path.field.is_none() {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::HAS_ON_REQUIRED,
                    path.span,
                    format!("`has` tests optional arguments, not `{}`", path.text()),
                )
                .with_help("write `has args.NAME` for an argument declared with `?`"),
            );
            return None;
        }
        let resolved = self.resolve_path(path, env)?;
        if !resolved.optional {
            let mut diagnostic = Diagnostic::error(
                DiagnosticKind::Type,
                codes::HAS_ON_REQUIRED,
                path.span,
                format!(
                    "`{}` is always present, so `has` is always true",
                    path.text()
                ),
            )
            .with_help("`has` applies to optional arguments only (declared `name: type?`)");
            if let Some(declared) = resolved.declared {
                diagnostic = diagnostic.with_secondary(declared, "declared without `?` here");
            }
            self.error(diagnostic);
            return None;
        }
        match resolved.path {
            Path::Arg(name) => Some(Cond::Has(name)),
            _ => None,
        }
    }

    /// Reading an optional argument needs a `has` that is known to hold here.
    fn check_present(
        &mut self,
        path: &ast::Path,
        resolved: &Resolved,
        known: &[String],
    ) -> Option<()> {
        let Path::Arg(name) = &resolved.path else {
            return Some(());
        };
        if !resolved.optional || known.iter().any(|k| k == name) {
            return Some(());
        }
        let mut diagnostic = Diagnostic::error(
            DiagnosticKind::Type,
            codes::OPTIONAL_WITHOUT_HAS,
            path.span,
            format!(
                "optional argument `{}` is read without `has args.{name}`",
                path.text()
            ),
        )
        .with_label("this argument may be missing from the request")
        .with_help(format!(
            "test it first: `has args.{name} and {} ..`, or add `has args.{name}` to the rule's \
             `when`",
            path.text()
        ));
        if let Some(declared) = resolved.declared {
            diagnostic = diagnostic.with_secondary(declared, "declared optional here");
        }
        self.error(diagnostic);
        None
    }

    pub(super) fn resolve_path(&mut self, path: &ast::Path, env: &Env<'_>) -> Option<Resolved> {
        let root = path.root.text.as_str();
        let field = path.field.as_ref();
        match (root, field) {
            ("agent" | "context", Some(field)) => {
                let attributes = if root == "agent" {
                    &self.schema.agent
                } else {
                    &self.schema.context
                };
                if let Some(attribute) = attributes.iter().find(|a| a.name == field.text) {
                    let path = if root == "agent" {
                        Path::Agent(field.text.clone())
                    } else {
                        Path::Context(field.text.clone())
                    };
                    return Some(Resolved {
                        path,
                        ty: Ty::from_type(&attribute.ty),
                        optional: false,
                        declared: Some(attribute.span),
                        known: attribute.known.clone(),
                    });
                }
                let mut diagnostic = Diagnostic::error(
                    DiagnosticKind::Schema,
                    codes::UNKNOWN_ATTRIBUTE,
                    field.span,
                    format!("unknown {root} attribute `{}`", field.text),
                );
                diagnostic.help =
                    help_did_you_mean(&field.text, attributes.iter().map(|a| a.name.as_str()))
                        .or_else(|| {
                            Some(format!(
                                "declare it in the schema's `{root} {{ .. }}` block"
                            ))
                        });
                self.unknown(diagnostic);
                None
            }
            ("args", Some(field)) => self.resolve_argument(field, env),
            ("tool", Some(field)) if field.text == "name" => Some(Resolved {
                path: Path::ToolName,
                ty: Ty::ToolName,
                optional: false,
                declared: None,
                known: None,
            }),
            ("tool", Some(field)) if field.text == "kind" => Some(Resolved {
                path: Path::ToolKind,
                ty: Ty::ToolKind,
                optional: false,
                declared: None,
                known: None,
            }),
            ("session", None) => Some(Resolved {
                path: Path::Session,
                ty: Ty::String,
                optional: false,
                declared: None,
                known: None,
            }),
            _ => {
                let suggestion = match field {
                    Some(_) => did_you_mean(root, ["agent", "context", "args", "tool"]).map(|r| {
                        format!(
                            "did you mean `{r}.{}`?",
                            path.field.as_ref().map_or("", |f| f.text.as_str())
                        )
                    }),
                    None => did_you_mean(root, ["session"]).map(|r| format!("did you mean `{r}`?")),
                };
                let help = suggestion.unwrap_or_else(|| {
                    "a condition reads `agent.NAME`, `context.NAME`, `args.NAME`, `tool.name`, \
                     `tool.kind` or `session`"
                        .to_owned()
                });
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::UNKNOWN_PATH,
                        path.span,
                        format!("unknown path `{}`", path.text()),
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    fn resolve_argument(&mut self, field: &ast::Name, env: &Env<'_>) -> Option<Resolved> {
        let tools: Vec<&crate::ir::Tool> =
            env.tools.iter().map(|&i| &self.schema.tools[i]).collect();
        let found: Vec<(&str, &Attribute)> = tools
            .iter()
            .filter_map(|t| t.arg(&field.text).map(|a| (t.name.as_str(), a)))
            .collect();
        let missing: Vec<&str> = tools
            .iter()
            .filter(|t| t.arg(&field.text).is_none())
            .map(|t| t.name.as_str())
            .collect();
        if found.is_empty() {
            let mut names: Vec<&str> = tools
                .iter()
                .flat_map(|t| t.args.iter().map(|a| a.name.as_str()))
                .collect();
            names.sort_unstable();
            names.dedup();
            let whose = match tools.as_slice() {
                [only] => format!("of `{}`", only.name),
                [] => "(the rule names no tool)".to_owned(),
                _ => "of the tools this rule names".to_owned(),
            };
            let mut diagnostic = Diagnostic::error(
                DiagnosticKind::Schema,
                codes::UNKNOWN_ARGUMENT,
                field.span,
                format!("unknown argument `{}` {whose}", field.text),
            );
            diagnostic.help = help_did_you_mean(&field.text, names.iter().copied()).or_else(|| {
                (!names.is_empty()).then(|| {
                    format!(
                        "the arguments are {}",
                        list_names(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    )
                })
            });
            if let [only] = tools.as_slice() {
                diagnostic = diagnostic.with_secondary(only.span, "tool declared here");
            }
            self.unknown(diagnostic);
            return None;
        }
        if !missing.is_empty() {
            let (first_tool, first_arg) = found[0];
            let shown: Vec<String> = missing.iter().take(3).map(|m| format!("`{m}`")).collect();
            let more = if missing.len() > 3 {
                format!(" and {} more", missing.len() - 3)
            } else {
                String::new()
            };
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::ARGUMENT_NOT_ON_EVERY_TOOL,
                    field.span,
                    format!(
                        "argument `{}` is not declared on every tool this rule names",
                        field.text
                    ),
                )
                .with_label(format!(
                    "{}{more} {} no `{}`",
                    shown.join(", "),
                    if missing.len() == 1 { "has" } else { "have" },
                    field.text
                ))
                .with_secondary(first_arg.span, format!("declared on `{first_tool}` here"))
                .with_help(format!(
                    "narrow the rule's actions to tools that take `{}`, or split the rule",
                    field.text
                )),
            );
            return None;
        }
        let mut ty = Ty::from_type(&found[0].1.ty);
        for (tool, attribute) in &found[1..] {
            let other = Ty::from_type(&attribute.ty);
            if !ty.same_base(&other) {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::OPERATOR_TYPE,
                        field.span,
                        format!(
                            "argument `{}` has different types on the tools this rule names",
                            field.text
                        ),
                    )
                    .with_secondary(
                        found[0].1.span,
                        format!("{} on `{}`", ty.describe(), found[0].0),
                    )
                    .with_secondary(attribute.span, format!("{} on `{tool}`", other.describe()))
                    .with_help("split the rule so that each part reads one type"),
                );
                return None;
            }
            // Different ranges on different tools: a literal is in range if some tool allows it.
            ty = match (ty, other) {
                (Ty::Int(Some(a)), Ty::Int(Some(b))) => Ty::Int(Some((a.0.min(b.0), a.1.max(b.1)))),
                (Ty::Decimal(Some(a)), Ty::Decimal(Some(b))) => {
                    Ty::Decimal(Some((a.0.min(b.0), a.1.max(b.1))))
                }
                (Ty::Int(_), Ty::Int(_)) => Ty::Int(None),
                (Ty::Decimal(_), Ty::Decimal(_)) => Ty::Decimal(None),
                (ty, _) => ty,
            };
        }
        Some(Resolved {
            path: Path::Arg(field.text.clone()),
            ty,
            optional: found.iter().any(|(_, a)| a.optional),
            declared: Some(found[0].1.span),
            known: None,
        })
    }

    fn operator_mismatch(&mut self, site: &Site<'_>, ty: &Ty, help: &str) -> Option<Cond> {
        self.error(
            Diagnostic::error(
                DiagnosticKind::Type,
                codes::OPERATOR_TYPE,
                site.op_span,
                format!(
                    "`{}` cannot be applied to `{}`, which is {}",
                    site.op.as_str(),
                    site.text.trim_start_matches("each element of "),
                    ty.describe()
                ),
            )
            .with_secondary(site.span, ty.describe().to_owned())
            .with_help(help.to_owned()),
        );
        None
    }

    /// Lowers `path OP value` once the path's type is known.
    fn lower_test(&mut self, path: Path, ty: &Ty, site: &Site<'_>) -> Option<Cond> {
        let op = site.op;
        match ty {
            Ty::StringList => match op {
                Operator::Contains => match self.lower_scalar(site.value, &Ty::String, site)? {
                    Value::Str(value) => Some(Cond::ListContains { path, value }),
                    _ => None,
                },
                Operator::ContainsAny => {
                    let values = self.lower_list(site.value, &Ty::String, site)?;
                    Some(Cond::ListContainsAny {
                        path,
                        values: strings(values),
                    })
                }
                _ => self.operator_mismatch(
                    site,
                    ty,
                    "test the elements with `every` or `some` (`every args.to ends with \"..\"`), \
                     or use `contains`, `contains any` or `count`",
                ),
            },
            Ty::String => match op {
                Operator::Eq | Operator::Ne => {
                    let value = self.lower_scalar(site.value, ty, site)?;
                    Some(Cond::Compare {
                        path,
                        op: cmp_op(op)?,
                        value,
                    })
                }
                Operator::In | Operator::NotIn => self.lower_in(path, ty, site),
                Operator::StartsWith
                | Operator::EndsWith
                | Operator::Contains
                | Operator::Matches => {
                    let Value::Str(pattern) = self.lower_scalar(site.value, ty, site)? else {
                        return None;
                    };
                    let text_op = match op {
                        Operator::StartsWith => TextOp::StartsWith,
                        Operator::EndsWith => TextOp::EndsWith,
                        Operator::Contains => TextOp::Contains,
                        _ => TextOp::Matches,
                    };
                    if text_op == TextOp::Matches {
                        if let Err(problem) = validate_regex(&pattern) {
                            self.error(
                                Diagnostic::error(
                                    DiagnosticKind::Type,
                                    codes::INVALID_REGEX,
                                    site.value.span,
                                    format!("invalid regex: {}", problem.message),
                                )
                                .with_help(problem.help),
                            );
                            return None;
                        }
                    }
                    Some(Cond::Text {
                        path,
                        op: text_op,
                        pattern,
                    })
                }
                Operator::ContainsAny => {
                    let values = self.lower_list(site.value, ty, site)?;
                    Some(Cond::ContainsAny {
                        path,
                        needles: strings(values),
                    })
                }
                _ => self.operator_mismatch(
                    site,
                    ty,
                    "strings compare with `==`, `!=`, `in`, `starts with`, `ends with`, \
                     `contains`, `contains any` and `matches`",
                ),
            },
            Ty::Int(_) | Ty::Decimal(_) => match op {
                Operator::In | Operator::NotIn => self.lower_in(path, ty, site),
                _ => match cmp_op(op) {
                    Some(cmp) => {
                        let value = self.lower_scalar(site.value, ty, site)?;
                        Some(Cond::Compare {
                            path,
                            op: cmp,
                            value,
                        })
                    }
                    None => self.operator_mismatch(
                        site,
                        ty,
                        "numbers compare with `==`, `!=`, `<`, `<=`, `>`, `>=` and `in`",
                    ),
                },
            },
            Ty::Bool | Ty::Enum(_) | Ty::ToolName | Ty::ToolKind => match op {
                Operator::Eq | Operator::Ne => {
                    let value = self.lower_scalar(site.value, ty, site)?;
                    Some(Cond::Compare {
                        path,
                        op: cmp_op(op)?,
                        value,
                    })
                }
                Operator::In | Operator::NotIn if *ty != Ty::Bool => self.lower_in(path, ty, site),
                _ => self.operator_mismatch(
                    site,
                    ty,
                    if *ty == Ty::Bool {
                        "bools compare with `==` and `!=`"
                    } else {
                        "enum members, tool names and tool kinds compare with `==`, `!=`, `in` \
                         and `not in`"
                    },
                ),
            },
        }
    }

    fn lower_in(&mut self, path: Path, ty: &Ty, site: &Site<'_>) -> Option<Cond> {
        let values = self.lower_list(site.value, ty, site)?;
        let cond = Cond::In { path, values };
        Some(if site.op == Operator::NotIn {
            Cond::Not(Box::new(cond))
        } else {
            cond
        })
    }

    /// A list literal, or a `let` name holding one.
    fn lower_list(
        &mut self,
        value: &ast::ValueExpr,
        ty: &Ty,
        site: &Site<'_>,
    ) -> Option<Vec<Value>> {
        match &value.kind {
            ValueKind::List(items) => {
                let lowered: Vec<Option<Value>> = items
                    .iter()
                    .map(|i| self.lower_scalar(i, ty, site))
                    .collect();
                lowered.into_iter().collect()
            }
            ValueKind::Name(name) if self.lets.contains_key(name.text.as_str()) => {
                let decl = self.use_let(name)?;
                if !matches!(decl.value.kind, ValueKind::List(_)) {
                    self.error(
                        Diagnostic::error(
                            DiagnosticKind::Type,
                            codes::VALUE_TYPE,
                            name.span,
                            format!(
                                "`{}` holds one value, but `{}` needs a list",
                                name.text,
                                site.op.as_str()
                            ),
                        )
                        .with_secondary(decl.value.span, "defined here")
                        .with_help(format!(
                            "compare with one value: `{} == {}`",
                            site.text, name.text
                        )),
                    );
                    return None;
                }
                self.with_use_site(name, |checker| checker.lower_list(&decl.value, ty, site))
            }
            ValueKind::Name(name) => {
                let fallback = format!("define the list with `let {} = [..]`", name.text);
                self.unknown_name(name, fallback);
                None
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::VALUE_TYPE,
                        value.span,
                        format!("`{}` needs a list of values", site.op.as_str()),
                    )
                    .with_help(format!(
                        "write the values in brackets: `{} {} [..]`",
                        site.text,
                        site.op.as_str()
                    )),
                );
                None
            }
        }
    }

    fn use_let(&mut self, name: &ast::Name) -> Option<&'a ast::LetDecl> {
        let entry = self.lets.get(name.text.as_str())?;
        entry.used.set(true);
        Some(entry.decl)
    }

    /// Runs `f` on a `let` value and labels any error it reports with the place of use.
    fn with_use_site<T>(
        &mut self,
        name: &ast::Name,
        f: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let before = self.diagnostics.len();
        let result = f(self);
        for diagnostic in &mut self.diagnostics[before..] {
            diagnostic.secondary.push(crate::diagnostic::Label {
                span: name.span,
                message: Some(format!("`{}` is used here", name.text)),
            });
        }
        result
    }

    fn value_mismatch(
        &mut self,
        value: &ast::ValueExpr,
        ty: &Ty,
        site: &Site<'_>,
        found: &str,
        help: Option<String>,
    ) -> Option<Value> {
        let mut diagnostic = Diagnostic::error(
            DiagnosticKind::Type,
            codes::VALUE_TYPE,
            value.span,
            format!("expected {}, found {found}", ty.describe()),
        )
        .with_secondary(site.span, format!("`{}` is {}", site.text, ty.describe()));
        diagnostic.help = help;
        self.error(diagnostic);
        None
    }

    /// A string compared for equality or membership with a `string known { .. }` attribute
    /// must be one of its known values (a misspelt tenant would never match).
    fn check_known(&mut self, text: &str, span: Span, site: &Site<'_>) {
        let Some(known) = site.known else {
            return;
        };
        let names_a_value = matches!(
            site.op,
            Operator::Eq | Operator::Ne | Operator::In | Operator::NotIn
        );
        if !names_a_value || known.iter().any(|k| k == text) {
            return;
        }
        let mut diagnostic = Diagnostic::error(
            DiagnosticKind::Schema,
            codes::NOT_A_KNOWN_VALUE,
            span,
            format!("\"{text}\" is not a known value of `{}`", site.text),
        );
        if let Some(declared) = site.declared {
            diagnostic = diagnostic.with_secondary(declared, "known values declared here");
        }
        diagnostic.help = help_did_you_mean(text, known.iter().map(String::as_str)).or_else(|| {
            Some(format!(
                "the known values are {}; add it to the schema's `known {{ .. }}` if it is new",
                known
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        });
        self.error(diagnostic);
    }

    /// One literal (or a `let` name holding one) checked against the type it is compared with.
    fn lower_scalar(&mut self, value: &ast::ValueExpr, ty: &Ty, site: &Site<'_>) -> Option<Value> {
        match &value.kind {
            ValueKind::Name(name) => self.lower_name(name, value, ty, site),
            ValueKind::Str(text) => match ty {
                Ty::String => {
                    self.check_known(text, value.span, site);
                    Some(Value::Str(text.clone()))
                }
                Ty::ToolName => {
                    let name = ast::Name {
                        text: text.clone(),
                        quoted: true,
                        span: value.span,
                    };
                    self.resolve_tool(&name)?;
                    Some(Value::Tool(text.clone()))
                }
                Ty::Enum(members) if members.contains(text) => self.value_mismatch(
                    value,
                    ty,
                    site,
                    "a string",
                    Some(format!("enum members are written without quotes: `{text}`")),
                ),
                Ty::Int(_) | Ty::Decimal(_) if text.trim().parse::<f64>().is_ok() => self
                    .value_mismatch(
                        value,
                        ty,
                        site,
                        "a string",
                        Some(format!(
                            "numbers are written without quotes: `{}`",
                            text.trim()
                        )),
                    ),
                Ty::ToolKind if ToolKind::parse(text).is_some() => self.value_mismatch(
                    value,
                    ty,
                    site,
                    "a string",
                    Some(format!("tool kinds are written without quotes: `{text}`")),
                ),
                _ => self.value_mismatch(value, ty, site, "a string", None),
            },
            ValueKind::Number(number) => match ty {
                Ty::Int(range) => {
                    let parsed = self.parse_int_literal(number)?;
                    self.in_range(value, site, &number.text, range, parsed)
                        .map(Value::Int)
                }
                Ty::Decimal(range) => {
                    let parsed = self.parse_decimal_literal(number)?;
                    self.in_range(value, site, &number.text, range, parsed)
                        .map(Value::Decimal)
                }
                Ty::String => self.value_mismatch(
                    value,
                    ty,
                    site,
                    "a number",
                    Some(format!("strings are quoted: `\"{}\"`", number.text)),
                ),
                _ => self.value_mismatch(value, ty, site, "a number", None),
            },
            ValueKind::Bool(b) => match ty {
                Ty::Bool => Some(Value::Bool(*b)),
                _ => self.value_mismatch(value, ty, site, "a bool", None),
            },
            ValueKind::List(_) => self.value_mismatch(
                value,
                ty,
                site,
                "a list",
                Some(format!(
                    "compare with several values using `in`: `{} in [..]`",
                    site.text
                )),
            ),
        }
    }

    /// The literal if it is inside the declared range; an out-of-range error otherwise.
    fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
        &mut self,
        value: &ast::ValueExpr,
        site: &Site<'_>,
        literal: &str,
        range: &Option<(T, T)>,
        parsed: T,
    ) -> Option<T> {
        match crate::ir::outside_range(range, parsed) {
            Some((low, high)) => {
                let _ = self.out_of_range(value, site, literal, &format!("{low}..{high}"));
                None
            }
            None => Some(parsed),
        }
    }

    fn out_of_range(
        &mut self,
        value: &ast::ValueExpr,
        site: &Site<'_>,
        literal: &str,
        range: &str,
    ) -> Option<Value> {
        let mut diagnostic = Diagnostic::error(
            DiagnosticKind::Type,
            codes::OUT_OF_RANGE,
            value.span,
            format!(
                "`{literal}` is outside the declared range {range} of `{}`",
                site.text
            ),
        )
        .with_help(format!(
            "no request can carry this value; compare with a value in {range}"
        ));
        if let Some(declared) = site.declared {
            diagnostic = diagnostic.with_secondary(declared, format!("declared as `{range}` here"));
        }
        self.error(diagnostic);
        None
    }

    fn lower_name(
        &mut self,
        name: &ast::Name,
        value: &ast::ValueExpr,
        ty: &Ty,
        site: &Site<'_>,
    ) -> Option<Value> {
        match ty {
            Ty::Enum(members) if members.contains(&name.text) => {
                return Some(Value::Enum(name.text.clone()))
            }
            Ty::ToolName if self.schema.tool_index(&name.text).is_some() => {
                return Some(Value::Tool(name.text.clone()))
            }
            Ty::ToolKind => {
                if let Some(kind) = ToolKind::parse(&name.text) {
                    return Some(Value::Kind(kind));
                }
            }
            _ => {}
        }
        if self.lets.contains_key(name.text.as_str()) {
            let decl = self.use_let(name)?;
            if matches!(decl.value.kind, ValueKind::List(_)) {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::VALUE_TYPE,
                        name.span,
                        format!(
                            "`{}` is a list, but `{}` compares with one value",
                            name.text,
                            site.op.as_str()
                        ),
                    )
                    .with_secondary(decl.value.span, "defined here")
                    .with_help(format!(
                        "to test membership write `{} in {}`",
                        site.text, name.text
                    )),
                );
                return None;
            }
            return self.with_use_site(name, |checker| checker.lower_scalar(&decl.value, ty, site));
        }
        match ty {
            Ty::Enum(members) => {
                let mut diagnostic = Diagnostic::error(
                    DiagnosticKind::Schema,
                    codes::UNKNOWN_ENUM_MEMBER,
                    name.span,
                    format!("`{}` is not a member of `{}`", name.text, site.text),
                );
                if let Some(declared) = site.declared {
                    diagnostic = diagnostic.with_secondary(declared, "declared here");
                }
                diagnostic.help = help_did_you_mean(&name.text, members.iter().map(String::as_str))
                    .or_else(|| Some(format!("the members are {}", list_names(members))));
                self.unknown(diagnostic);
                None
            }
            Ty::ToolName => {
                self.resolve_tool(name)?;
                None
            }
            Ty::ToolKind => {
                let mut diagnostic = Diagnostic::error(
                    DiagnosticKind::Schema,
                    codes::UNKNOWN_TOOL_KIND,
                    name.span,
                    format!("unknown tool kind `{}`", name.text),
                );
                diagnostic.help =
                    help_did_you_mean(&name.text, ToolKind::ALL.iter().map(|k| k.as_str()))
                        .or_else(|| {
                            Some("the kinds are `read`, `write`, `send` and `execute`".to_owned())
                        });
                self.error(diagnostic);
                None
            }
            _ => {
                let help = match ty {
                    Ty::String => {
                        format!("strings are written in double quotes: `\"{}\"`", name.text)
                    }
                    Ty::Bool => "bools are written `true` or `false`".to_owned(),
                    _ => format!("define it with `let {} = ..`", name.text),
                };
                let _ = value;
                self.unknown_name(name, help);
                None
            }
        }
    }

    /// A bare name that is no enum member, tool or `let`: suggests a close `let` name, else
    /// `fallback`.
    fn unknown_name(&mut self, name: &ast::Name, fallback: String) {
        let names: Vec<&str> = self.lets.keys().copied().collect();
        let help = help_did_you_mean(&name.text, names).unwrap_or(fallback);
        self.error(
            Diagnostic::error(
                DiagnosticKind::Type,
                codes::UNKNOWN_NAME,
                name.span,
                format!("unknown name `{}`", name.text),
            )
            .with_help(help),
        );
    }
}

fn strings(values: Vec<Value>) -> Vec<String> {
    values
        .into_iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(s),
            _ => None,
        })
        .collect()
}
