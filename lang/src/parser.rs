//! The parser: tokens to the AST of one file, with error recovery.
//!
//! Parsing never fails. A broken policy member, schema field or top-level item is skipped up to
//! the next place where parsing can resume (the next `rule NAME:`, field, `policy`, ...), and the
//! error is reported, so one run lists every syntax error in every file. chumsky's `Rich` errors
//! are converted to [`Diagnostic`]s here and never leave this module.

use crate::ast::*;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::incomplete::condition_problems;
use crate::lexer::{self, Comment, Token};
use crate::source::{FileId, Span};
use chumsky::error::{RichPattern, RichReason};
use chumsky::{input::ValueInput, prelude::*};

type Extra<'t, 's> = extra::Err<Rich<'t, Token<'s>, SimpleSpan>>;

/// The result of parsing one file: the (possibly partial) tree, its comments and its errors.
pub struct Parsed {
    pub file: File,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
    /// Stretches around a misshapen condition already reported: what the checker says about
    /// the partial tree there (an unknown name `context` in `== context.repo`) only repeats it.
    pub quiet: Vec<Span>,
}

/// Lexes and parses one file.
pub fn parse_file(file: FileId, source: &str) -> Parsed {
    let lexed = lexer::lex(source);
    let mut diagnostics = lexical_diagnostics(file, &lexed.errors);
    let eoi = SimpleSpan::from(source.len()..source.len());
    let (ast, errors) = file_parser(file)
        .parse(
            lexed
                .tokens
                .as_slice()
                .map(eoi, |(token, span)| (token, span)),
        )
        .into_output_errors();
    // A lexical error (an unterminated string, a stray character) usually derails the parser
    // on the same line; that second error says nothing new, so it is dropped.
    let line_of = |offset: usize| source[..offset.min(source.len())].matches('\n').count();
    let lexed_lines: Vec<usize> = lexed.errors.iter().map(|e| line_of(e.start)).collect();
    // Incomplete conditions are reported where they are incomplete; the parser's errors in
    // the same stretch (usually on the next rule's name) only repeat them.
    let conditions = condition_problems(&lexed.tokens);
    for problem in &conditions {
        if lexed_lines.contains(&line_of(problem.span.start)) {
            continue;
        }
        diagnostics.push(
            Diagnostic::error(
                DiagnosticKind::Syntax,
                crate::check::codes::SYNTAX,
                Span::new(file, problem.span.start, problem.span.end),
                problem.message.clone(),
            )
            .with_help(problem.help.clone()),
        );
    }
    diagnostics.extend(
        errors
            .into_iter()
            .filter(|error| !lexed_lines.contains(&line_of(error.span().start)))
            .filter(|error| {
                !conditions
                    .iter()
                    .any(|problem| problem.quiet.contains(&error.span().start))
            })
            .map(|error| convert_error(file, source, error)),
    );
    Parsed {
        file: ast.unwrap_or(File { items: Vec::new() }),
        comments: lexed.comments,
        diagnostics,
        quiet: conditions
            .iter()
            .map(|problem| {
                Span::new(
                    file,
                    problem.quiet.start,
                    problem.quiet.end.min(source.len()),
                )
            })
            .collect(),
    }
}

/// Parses one standalone condition (a test file's `forall`), reporting every error.
pub fn parse_condition(file: FileId, source: &str) -> (Option<Expr>, Vec<Diagnostic>) {
    let lexed = lexer::lex(source);
    let mut diagnostics = lexical_diagnostics(file, &lexed.errors);
    let eoi = SimpleSpan::from(source.len()..source.len());
    let (expr, errors) = condition(file)
        .then_ignore(end())
        .parse(
            lexed
                .tokens
                .as_slice()
                .map(eoi, |(token, span)| (token, span)),
        )
        .into_output_errors();
    diagnostics.extend(errors.into_iter().map(|e| convert_error(file, source, e)));
    (expr, diagnostics)
}

fn lexical_diagnostics(file: FileId, errors: &[lexer::LexError]) -> Vec<Diagnostic> {
    errors
        .iter()
        .map(|error| {
            let mut diagnostic = Diagnostic::error(
                DiagnosticKind::Syntax,
                crate::check::codes::LEXICAL,
                Span::new(file, error.start, error.end),
                error.message.clone(),
            );
            diagnostic.help = error.help.clone();
            diagnostic
        })
        .collect()
}

fn to_span(file: FileId, span: SimpleSpan) -> Span {
    Span::new(file, span.start, span.end)
}

fn keyword<'t, 's: 't, I>(word: &'static str) -> impl Parser<'t, I, (), Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    just(Token::Word(word)).ignored()
}

fn ctrl<'t, 's: 't, I>(c: char) -> impl Parser<'t, I, (), Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    just(Token::Ctrl(c)).ignored()
}

fn name<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, Name, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    select! {
        Token::Word(word) => (word, false),
        Token::Quoted(quoted) => (quoted, true),
    }
    .map_with(move |(text, quoted), e| Name {
        text: text.to_owned(),
        quoted,
        span: to_span(file, e.span()),
    })
    .labelled("name")
}

fn string<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, StrLit, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    select! { Token::Str(value) => value }
        .map_with(move |value, e| StrLit {
            value,
            span: to_span(file, e.span()),
        })
        .labelled("string")
}

/// A custom parser error with a help line: `convert_error` splits them again.
fn with_help(message: &str, help: &str) -> String {
    format!("{message}{HELP_SEPARATOR}{help}")
}

const HELP_SEPARATOR: &str = "\u{0}help: ";

/// The quoted name of a `tenant` or `agent` scope; a bare name is reported ("tenant names are
/// quoted") and read as if it were quoted, so the policy still checks.
fn scope_string<'t, 's: 't, I>(
    file: FileId,
    what: &'static str,
) -> impl Parser<'t, I, StrLit, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    string(file).or(name(file)
        .and_is(keyword("rule").then(name(file)).then(ctrl(':')).not())
        .validate(move |name, e, emitter| {
            emitter.emit(Rich::custom(
                e.span(),
                with_help(
                    &format!("{what} names are quoted"),
                    &format!("write `{what} \"{}\"`", name.text),
                ),
            ));
            StrLit {
                value: name.text,
                span: to_span(file, e.span()),
            }
        }))
}

fn number<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, NumberLit, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    select! {
        Token::Int(text) => (text, false),
        Token::Decimal(text) => (text, true),
    }
    .map_with(move |(text, is_decimal), e| NumberLit {
        text: text.to_owned(),
        is_decimal,
        span: to_span(file, e.span()),
    })
    .labelled("number")
}

fn dotted_name<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, DottedName, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    name(file)
        .separated_by(ctrl('.'))
        .at_least(1)
        .collect::<Vec<_>>()
        .map_with(move |parts, e| DottedName {
            parts,
            span: to_span(file, e.span()),
        })
}

fn path<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, Path, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    name(file)
        .then(ctrl('.').ignore_then(name(file)).or_not())
        .map_with(move |(root, field), e| Path {
            root,
            field,
            span: to_span(file, e.span()),
        })
        .labelled("path such as `args.to` or `agent.tier`")
}

fn value<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, ValueExpr, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    recursive(move |value| {
        let boolean = select! {
            Token::Word("true") => ValueKind::Bool(true),
            Token::Word("false") => ValueKind::Bool(false),
        };
        let list = value
            .separated_by(ctrl(','))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(ctrl('['), ctrl(']'))
            .map(ValueKind::List);
        choice((
            string(file).map(|s| ValueKind::Str(s.value)),
            number(file).map(ValueKind::Number),
            boolean,
            // A bare name followed by `NAME:` is the next rule's `rule` keyword, not a value.
            name(file)
                .and_is(keyword("rule").then(name(file)).then(ctrl(':')).not())
                .map(ValueKind::Name),
            list,
        ))
        .map_with(move |kind, e| ValueExpr {
            kind,
            span: to_span(file, e.span()),
        })
        .labelled("value")
    })
}

fn operator<'t, 's: 't, I>(
    file: FileId,
) -> impl Parser<'t, I, (Operator, Span), Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    choice((
        just(Token::Op("==")).to(Operator::Eq),
        just(Token::Op("!=")).to(Operator::Ne),
        just(Token::Op("<=")).to(Operator::Le),
        just(Token::Op(">=")).to(Operator::Ge),
        just(Token::Op("<")).to(Operator::Lt),
        just(Token::Op(">")).to(Operator::Gt),
        keyword("not").then(keyword("in")).to(Operator::NotIn),
        keyword("in").to(Operator::In),
        keyword("starts")
            .then(keyword("with"))
            .to(Operator::StartsWith),
        keyword("ends").then(keyword("with")).to(Operator::EndsWith),
        keyword("contains")
            .then(keyword("any"))
            .to(Operator::ContainsAny),
        keyword("contains").to(Operator::Contains),
        keyword("matches").to(Operator::Matches),
    ))
    .map_with(move |op, e| (op, to_span(file, e.span())))
    .labelled("operator")
}

fn condition<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, Expr, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    let spanned = move |kind, span: SimpleSpan| Expr {
        kind,
        span: to_span(file, span),
    };
    recursive(move |expr| {
        let paren = expr
            .delimited_by(ctrl('('), ctrl(')'))
            .map_with(move |inner, e| spanned(ExprKind::Paren(Box::new(inner)), e.span()));
        let has = keyword("has")
            .ignore_then(path(file))
            .map_with(move |path, e| spanned(ExprKind::Has(path), e.span()));
        let quantified = choice((
            keyword("every").to(Quantifier::Every),
            keyword("some").to(Quantifier::Some),
        ))
        .then(path(file))
        .then(operator(file))
        .then(value(file))
        .map_with(move |(((quantifier, path), (op, op_span)), value), e| {
            spanned(
                ExprKind::Quantified {
                    quantifier,
                    path,
                    op,
                    op_span,
                    value,
                },
                e.span(),
            )
        });
        let count = keyword("count")
            .ignore_then(path(file))
            .then(operator(file))
            .then(value(file))
            .map_with(move |((path, (op, op_span)), value), e| {
                spanned(
                    ExprKind::Count {
                        path,
                        op,
                        op_span,
                        value,
                    },
                    e.span(),
                )
            });
        let length = keyword("length")
            .ignore_then(path(file))
            .then(operator(file))
            .then(value(file))
            .map_with(move |((path, (op, op_span)), value), e| {
                spanned(
                    ExprKind::Length {
                        path,
                        op,
                        op_span,
                        value,
                    },
                    e.span(),
                )
            });
        let compare = path(file).then(operator(file)).then(value(file)).map_with(
            move |((path, (op, op_span)), value), e| {
                spanned(
                    ExprKind::Compare {
                        path,
                        op,
                        op_span,
                        value,
                    },
                    e.span(),
                )
            },
        );
        let atom = choice((paren, has, quantified, count, length, compare)).labelled("condition");
        let negation = recursive(move |negation| {
            keyword("not")
                .ignore_then(negation)
                .map_with(move |inner, e| spanned(ExprKind::Not(Box::new(inner)), e.span()))
                .or(atom)
        });
        let conjunction = negation
            .separated_by(keyword("and"))
            .at_least(1)
            .collect::<Vec<_>>()
            .map_with(move |mut items, e| {
                if items.len() == 1 {
                    items.remove(0)
                } else {
                    spanned(ExprKind::And(items), e.span())
                }
            });
        conjunction
            .separated_by(keyword("or"))
            .at_least(1)
            .collect::<Vec<_>>()
            .map_with(move |mut items, e| {
                if items.len() == 1 {
                    items.remove(0)
                } else {
                    spanned(ExprKind::Or(items), e.span())
                }
            })
    })
}

fn actions<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, Actions, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    choice((
        keyword("any")
            .ignore_then(keyword("tool"))
            .to(ActionsKind::AnyTool),
        keyword("any")
            .ignore_then(name(file))
            .then_ignore(keyword("tool"))
            .map(ActionsKind::AnyKind),
        name(file)
            .separated_by(ctrl(','))
            .allow_trailing()
            .at_least(1)
            .collect::<Vec<_>>()
            .delimited_by(ctrl('['), ctrl(']'))
            .map(ActionsKind::List),
        name(file).map(ActionsKind::Tool),
    ))
    .map_with(move |kind, e| Actions {
        kind,
        span: to_span(file, e.span()),
    })
    .labelled("tool name, `[tools]`, `any tool` or `any <kind> tool`")
}

fn rule<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, RuleDecl, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    let allow = keyword("allow")
        .ignore_then(actions(file))
        .map(RuleHead::Allow);
    let deny = keyword("deny")
        .ignore_then(actions(file))
        .map(RuleHead::Deny);
    let approval = keyword("require")
        .ignore_then(keyword("approval"))
        .ignore_then(keyword("from"))
        .ignore_then(
            name(file)
                .separated_by(ctrl(','))
                .at_least(1)
                .collect::<Vec<_>>(),
        )
        .then_ignore(keyword("for"))
        .then(actions(file))
        .map(|(groups, actions)| RuleHead::RequireApproval { groups, actions });
    let duration = select! { Token::Duration(text) => text }
        .map_with(move |text, e| DurationLit {
            text: text.to_owned(),
            span: to_span(file, e.span()),
        })
        .labelled("duration such as `1h` or `1d`");
    let limit = keyword("limit")
        .ignore_then(actions(file))
        .then_ignore(keyword("to"))
        .then(number(file))
        .then_ignore(keyword("per"))
        .then(duration)
        .then(keyword("per").ignore_then(path(file)).or_not())
        .map(|(((actions, count), window), key)| RuleHead::Limit {
            actions,
            count,
            window,
            key,
        });
    let head = choice((allow, deny, approval, limit))
        .labelled("`allow`, `deny`, `require approval from` or `limit`");

    let clause = choice((
        keyword("when")
            .ignore_then(condition(file))
            .map_with(move |c, e| Clause::When(c, to_span(file, e.span()))),
        keyword("unless")
            .ignore_then(condition(file))
            .map_with(move |c, e| Clause::Unless(c, to_span(file, e.span()))),
        keyword("with")
            .ignore_then(name(file))
            .then(string(file))
            .map_with(move |(name, text), e| Clause::With {
                name,
                text,
                span: to_span(file, e.span()),
            }),
        keyword("because")
            .ignore_then(string(file))
            .map_with(move |text, e| Clause::Because(text, to_span(file, e.span()))),
        keyword("overrides")
            .ignore_then(
                dotted_name(file)
                    .separated_by(ctrl(','))
                    .at_least(1)
                    .collect::<Vec<_>>(),
            )
            .map_with(move |ids, e| Clause::Overrides(ids, to_span(file, e.span()))),
    ));

    keyword("rule")
        .ignore_then(name(file))
        .then_ignore(ctrl(':'))
        .then(head)
        .then(clause.repeated().collect::<Vec<_>>())
        .map_with(move |((name, head), clauses), e| RuleDecl {
            name,
            head,
            clauses,
            span: to_span(file, e.span()),
        })
        .labelled("rule")
}

/// Where a top-level item starts: parsing resumes here after a broken item.
fn top_level_start<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, (), Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    choice((
        keyword("policy")
            .then(dotted_name(file))
            .then(ctrl('{'))
            .ignored(),
        keyword("schema").then(ctrl('{')).ignored(),
        keyword("let")
            .then(name(file))
            .then(just(Token::Op("=")))
            .ignored(),
    ))
}

fn policy<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, PolicyBlock, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    let scope = choice((
        keyword("all").map_with(move |_, e| ScopeExpr::All(to_span(file, e.span()))),
        keyword("tenant")
            .ignore_then(scope_string(file, "tenant"))
            .map_with(move |s, e| ScopeExpr::Tenant(s, to_span(file, e.span()))),
        keyword("agent")
            .ignore_then(scope_string(file, "agent"))
            .map_with(move |s, e| ScopeExpr::Agent(s, to_span(file, e.span()))),
        keyword("role")
            .ignore_then(name(file))
            .map_with(move |n, e| ScopeExpr::Role(n, to_span(file, e.span()))),
    ))
    .labelled("`all`, `tenant \"..\"`, `agent \"..\"` or `role ..`");
    // `and` binds tighter than `or`: `tenant "a" and role x or tenant "b"`.
    let scope = scope
        .separated_by(keyword("and"))
        .at_least(1)
        .collect::<Vec<_>>()
        .map_with(move |mut parts, e| {
            if parts.len() == 1 {
                parts.remove(0)
            } else {
                ScopeExpr::Both(parts, to_span(file, e.span()))
            }
        });
    let member = choice((
        keyword("owner")
            .ignore_then(string(file))
            .map_with(move |s, e| PolicyMember::Owner(s, to_span(file, e.span()))),
        keyword("description")
            .ignore_then(string(file))
            .map_with(move |s, e| PolicyMember::Description(s, to_span(file, e.span()))),
        keyword("applies")
            .ignore_then(keyword("to"))
            .ignore_then(
                scope
                    .separated_by(keyword("or"))
                    .at_least(1)
                    .collect::<Vec<_>>(),
            )
            .map_with(move |scopes, e| PolicyMember::AppliesTo(scopes, to_span(file, e.span()))),
        keyword("on")
            .ignore_then(keyword("failure"))
            .ignore_then(name(file))
            .map_with(move |mode, e| PolicyMember::OnFailure(mode, to_span(file, e.span()))),
        rule(file).map(|rule| PolicyMember::Rule(Box::new(rule))),
    ))
    .labelled("`rule`, `owner`, `description`, `applies to` or `on failure`");

    let member_stop = ctrl('}').or(top_level_start(file));
    let member_start = choice((
        keyword("rule").then(name(file)).then(ctrl(':')).ignored(),
        keyword("owner").then(string(file)).ignored(),
        keyword("description").then(string(file)).ignored(),
        keyword("applies").then(keyword("to")).ignored(),
        keyword("on").then(keyword("failure")).ignored(),
        member_stop.clone(),
    ));
    // Skip a broken member up to the next member (or the end of the policy), consuming at least
    // one token so recovery always makes progress.
    let skip_member = any()
        .and_is(member_stop.not())
        .then(any().and_is(member_start.not()).repeated())
        .map_with(move |_, e| PolicyMember::Error(to_span(file, e.span())));
    let member = member.recover_with(via_parser(skip_member));

    keyword("policy")
        .ignore_then(dotted_name(file))
        .then(
            member
                .repeated()
                .collect::<Vec<_>>()
                .delimited_by(ctrl('{'), ctrl('}')),
        )
        .map_with(move |(name, members), e| PolicyBlock {
            name,
            members,
            span: to_span(file, e.span()),
        })
        .labelled("policy")
}

fn schema<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, SchemaBlock, Extra<'t, 's>> + Clone
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    let type_expr = recursive(move |type_expr| {
        // `enum { }` is an error, reported here and read as an empty enum so that the rest of
        // the schema still parses.
        let members = name(file)
            .then_ignore(ctrl(',').or_not())
            .repeated()
            .collect::<Vec<_>>()
            .delimited_by(ctrl('{'), ctrl('}'))
            .validate(|members, e, emitter| {
                if members.is_empty() {
                    emitter.emit(Rich::custom(
                        e.span(),
                        with_help(
                            "an enum needs at least one member",
                            "list its values: `enum { normal, read_only }`",
                        ),
                    ));
                }
                members
            });
        choice((
            keyword("enum").ignore_then(members).map(TypeExprKind::Enum),
            type_expr
                .delimited_by(ctrl('['), ctrl(']'))
                .map(|inner| TypeExprKind::List(Box::new(inner))),
            name(file)
                .then_ignore(keyword("known"))
                .then(
                    string(file)
                        .then_ignore(ctrl(',').or_not())
                        .repeated()
                        .collect::<Vec<_>>()
                        .delimited_by(ctrl('{'), ctrl('}')),
                )
                .validate(|(base, values), e, emitter| {
                    if values.is_empty() {
                        emitter.emit(Rich::custom(
                            e.span(),
                            with_help(
                                "`known` needs at least one value",
                                "list the values: `string known { \"acme\", \"globex\" }`",
                            ),
                        ));
                    }
                    TypeExprKind::Known { base, values }
                }),
            name(file)
                .then_ignore(keyword("in"))
                .then(number(file))
                .then_ignore(just(Token::DotDot))
                .then(number(file))
                .map(|((base, low), high)| TypeExprKind::Ranged { base, low, high }),
            name(file).map(TypeExprKind::Named),
        ))
        .map_with(move |kind, e| TypeExpr {
            kind,
            span: to_span(file, e.span()),
        })
        .labelled("type")
    });
    let field_start = name(file)
        .then(ctrl(':'))
        .ignored()
        .or(ctrl('}'))
        .or(top_level_start(file));
    let field = name(file)
        .then_ignore(ctrl(':'))
        .then(type_expr)
        .then(ctrl('?').or_not())
        .then_ignore(ctrl(',').or_not())
        .map_with(move |((name, ty), optional), e| {
            Some(Field {
                name,
                ty,
                optional: optional.is_some(),
                span: to_span(file, e.span()),
            })
        })
        .labelled("field `name: type`")
        .recover_with(via_parser(
            any()
                .and_is(ctrl('}').not())
                .then(any().and_is(field_start.not()).repeated())
                .to(None),
        ));
    let fields = field
        .repeated()
        .collect::<Vec<_>>()
        .delimited_by(ctrl('{'), ctrl('}'))
        .map(|fields| fields.into_iter().flatten().collect::<Vec<_>>());

    let attributes = name(file)
        .filter(|n: &Name| !n.quoted && (n.text == "agent" || n.text == "context"))
        .then(fields.clone())
        .map_with(move |(keyword, fields), e| SchemaSection::Attributes {
            keyword,
            fields,
            span: to_span(file, e.span()),
        });
    let approvers = keyword("approvers")
        .ignore_then(
            name(file)
                .then_ignore(ctrl(',').or_not())
                .repeated()
                .collect::<Vec<_>>()
                .delimited_by(ctrl('{'), ctrl('}')),
        )
        .map_with(move |groups, e| SchemaSection::Approvers {
            groups,
            span: to_span(file, e.span()),
        });
    let tool = keyword("tool")
        .ignore_then(name(file))
        .then_ignore(ctrl(':'))
        .then(name(file))
        .then(fields.or_not())
        .map_with(move |((name, kind), args), e| {
            SchemaSection::Tool(ToolDecl {
                name,
                kind,
                args: args.unwrap_or_default(),
                span: to_span(file, e.span()),
            })
        })
        .labelled("tool");
    let section_stop = ctrl('}').or(top_level_start(file));
    let section_start = choice((
        keyword("tool").then(name(file)).then(ctrl(':')).ignored(),
        keyword("agent").then(ctrl('{')).ignored(),
        keyword("context").then(ctrl('{')).ignored(),
        keyword("approvers").then(ctrl('{')).ignored(),
        section_stop.clone(),
    ));
    let section = choice((attributes, approvers, tool))
        .labelled("`agent {`, `context {`, `approvers {` or `tool NAME: KIND`")
        .recover_with(via_parser(
            any()
                .and_is(section_stop.not())
                .then(any().and_is(section_start.not()).repeated())
                .map_with(move |_, e| SchemaSection::Error(to_span(file, e.span()))),
        ));
    keyword("schema")
        .ignore_then(
            section
                .repeated()
                .collect::<Vec<_>>()
                .delimited_by(ctrl('{'), ctrl('}')),
        )
        .map_with(move |sections, e| SchemaBlock {
            sections,
            span: to_span(file, e.span()),
        })
        .labelled("schema")
}

fn file_parser<'t, 's: 't, I>(file: FileId) -> impl Parser<'t, I, File, Extra<'t, 's>>
where
    I: ValueInput<'t, Token = Token<'s>, Span = SimpleSpan>,
{
    let let_decl = keyword("let")
        .ignore_then(name(file))
        .then_ignore(just(Token::Op("=")))
        .then(value(file))
        .map_with(move |(name, value), e| LetDecl {
            name,
            value,
            span: to_span(file, e.span()),
        });
    let item = choice((
        schema(file).map(Item::Schema),
        policy(file).map(Item::Policy),
        let_decl.map(Item::Let),
    ))
    .labelled("`schema`, `policy` or `let`")
    .recover_with(via_parser(
        any()
            .then(any().and_is(top_level_start(file).not()).repeated())
            .map_with(move |_, e| Item::Error(to_span(file, e.span()))),
    ));
    item.repeated()
        .collect::<Vec<_>>()
        .then_ignore(end())
        .map(|items| File { items })
}

fn describe_pattern(pattern: &RichPattern<'_, Token<'_>>) -> Option<String> {
    match pattern {
        RichPattern::Token(token) => Some(token.to_string()),
        RichPattern::Label(label) => Some(label.to_string()),
        RichPattern::Identifier(word) => Some(format!("`{word}`")),
        RichPattern::EndOfInput => Some("end of file".to_owned()),
        _ => None,
    }
}

/// A help line for the mistakes authors make most often.
fn help_for(found: Option<&Token<'_>>) -> Option<String> {
    let help = match found? {
        Token::Word("endswith") => "the operator is two words: `ends with`",
        Token::Word("startswith") => "the operator is two words: `starts with`",
        Token::Word("containsany") => "the operator is two words: `contains any`",
        Token::Word("notin") => "the operator is two words: `not in`",
        Token::Op("=") => "compare with `==`; a single `=` only defines a `let` value",
        Token::Word("if") => "conditions start with `when` or `unless`",
        Token::Word("policy" | "schema") => "is a `}` missing before this?",
        Token::Word("AND" | "OR" | "NOT") => "`and`, `or` and `not` are written in lowercase",
        Token::Word("deny" | "allow" | "limit" | "require") => {
            "every rule starts with `rule NAME:`, e.g. `rule block_exports: deny export_data`"
        }
        _ => return None,
    };
    Some(help.to_owned())
}

fn convert_error(file: FileId, source: &str, error: Rich<'_, Token<'_>, SimpleSpan>) -> Diagnostic {
    let span = *error.span();
    let span = if span.start >= source.len() {
        // Errors at the end of the file point at its last character, which is easier to see
        // (the whole character: the file may end inside a multi-byte one's last byte).
        Span::last_char(file, source)
    } else {
        Span::on_char_boundaries(file, source, span.start, span.end)
    };
    let (message, help) = match error.reason() {
        RichReason::Custom(message) => match message.split_once(HELP_SEPARATOR) {
            Some((message, help)) => (message.to_owned(), Some(help.to_owned())),
            None => (message.clone(), None),
        },
        RichReason::ExpectedFound { expected, found } => {
            let mut expected: Vec<String> = expected.iter().filter_map(describe_pattern).collect();
            expected.sort();
            expected.dedup();
            let found_text = match found.as_deref() {
                Some(token) => token.to_string(),
                None => "end of file".to_owned(),
            };
            let message = match expected.len() {
                0 => format!("unexpected {found_text}"),
                1 => format!("expected {}, found {found_text}", expected[0]),
                _ => format!(
                    "expected one of {}, found {found_text}",
                    expected.join(", ")
                ),
            };
            (message, help_for(found.as_deref()))
        }
    };
    let mut diagnostic = Diagnostic::error(
        DiagnosticKind::Syntax,
        crate::check::codes::SYNTAX,
        span,
        message,
    );
    diagnostic.help = help;
    diagnostic
}
