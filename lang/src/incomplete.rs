//! Incomplete and misshapen conditions, found on the tokens before the parser runs.
//!
//! Keywords are not reserved (language.md §2.2), so to the parser `when rule next:` is a path
//! `rule` followed by a stray `next`: the error lands on the next rule's name, one rule late,
//! saying "expected operator". This pass walks each `when`/`unless` condition up to the next
//! clause (`rule NAME:`, `because`, `with`, `overrides`, `}`, ...) and reports, where it
//! happens and saying what is missing: an empty condition, a trailing `and`/`or`/`not`, an
//! operator with no value, a field on its own (a bare bool), and a right-hand side that is
//! another request field. The parser's errors inside the same stretch say nothing more and are
//! dropped by the caller ([`ConditionProblem::quiet`]).

use crate::lexer::{Spanned, Token};
use std::ops::Range;

/// One problem and the byte range in which parser errors only repeat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionProblem {
    pub span: Range<usize>,
    pub message: String,
    pub help: String,
    pub quiet: Range<usize>,
}

const OPERATOR_WORDS: [&str; 6] = ["in", "not", "starts", "ends", "contains", "matches"];

/// Every incomplete or misshapen condition in a file's tokens.
pub fn condition_problems(tokens: &[Spanned<Token<'_>>]) -> Vec<ConditionProblem> {
    let mut problems = Vec::new();
    for (at, (token, _)) in tokens.iter().enumerate() {
        let starts_condition = matches!(token, Token::Word("when" | "unless"))
            && !follows_dot(tokens, at)
            // `limit ... when` and `rule ...: deny x when` both start a condition; a `when`
            // right after `starts`/`ends` is not a clause (`starts with` is).
            && at > 0;
        if !starts_condition {
            continue;
        }
        let end = clause_end(tokens, at + 1);
        if let Some(mut problem) = check_condition(tokens, at, end) {
            // Up to the end of the clause that follows (`rule NAME:` is three tokens), the
            // parser only trips over what was already reported.
            let quiet_end = tokens
                .get((end + 2).min(tokens.len().saturating_sub(1)))
                .map_or(usize::MAX, |(_, span)| span.end);
            problem.quiet = tokens[at].1.start..quiet_end.max(problem.span.end);
            problems.push(problem);
        }
    }
    problems
}

fn follows_dot(tokens: &[Spanned<Token<'_>>], at: usize) -> bool {
    at > 0 && matches!(tokens[at - 1].0, Token::Ctrl('.'))
}

fn word<'a>(tokens: &'a [Spanned<Token<'_>>], at: usize) -> Option<&'a str> {
    match tokens.get(at) {
        Some((Token::Word(w), _)) if !follows_dot(tokens, at) => Some(w),
        _ => None,
    }
}

/// The index of the first token after the condition that starts at `from`.
fn clause_end(tokens: &[Spanned<Token<'_>>], from: usize) -> usize {
    let mut at = from;
    while at < tokens.len() {
        let next_is =
            |offset: usize, wanted: &Token| tokens.get(at + offset).map(|t| &t.0) == Some(wanted);
        let next_is_name = matches!(
            tokens.get(at + 1).map(|t| &t.0),
            Some(Token::Word(_) | Token::Quoted(_))
        );
        match (&tokens[at].0, word(tokens, at)) {
            (Token::Ctrl('}'), _) => return at,
            (_, Some("because" | "overrides" | "when" | "unless")) => return at,
            (_, Some("with"))
                if !matches!(word(tokens, at.wrapping_sub(1)), Some("starts" | "ends")) =>
            {
                return at
            }
            (_, Some("rule")) if next_is_name && next_is(2, &Token::Ctrl(':')) => return at,
            (_, Some("let")) if next_is_name && next_is(2, &Token::Op("=")) => return at,
            _ => at += 1,
        }
    }
    at
}

fn problem(span: Range<usize>, message: String, help: String) -> ConditionProblem {
    ConditionProblem {
        span,
        message,
        help,
        quiet: 0..0,
    }
}

/// The text of a token as written (names without their backticks).
fn text_of(tokens: &[Spanned<Token<'_>>], range: Range<usize>, separator: &str) -> String {
    tokens[range]
        .iter()
        .map(|(token, _)| match token {
            Token::Word(w) | Token::Quoted(w) => (*w).to_owned(),
            Token::Op(op) => (*op).to_owned(),
            Token::Ctrl(c) => c.to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(separator)
}

fn span_of(tokens: &[Spanned<Token<'_>>], range: Range<usize>) -> Range<usize> {
    tokens[range.start].1.start..tokens[range.end - 1].1.end
}

/// What the condition between `keyword` (the `when`/`unless` token) and `end` lacks, if it
/// is one of the shapes this pass knows; anything else is left to the parser.
fn check_condition(
    tokens: &[Spanned<Token<'_>>],
    keyword: usize,
    end: usize,
) -> Option<ConditionProblem> {
    let mut at = keyword + 1;
    // The token that asked for what comes next: `when`, `and`, `or`, `not`, `(`.
    let mut asked_by = keyword;
    loop {
        // An atom: `not ...`, `( ...`, `has PATH`, `every|some|count PATH op value`, `PATH op value`.
        if at >= end {
            let what = text_of(tokens, asked_by..asked_by + 1, "");
            let help = if matches!(what.as_str(), "when" | "unless") {
                format!("write the condition, e.g. `{what} args.amount > 100`, or remove `{what}`")
            } else {
                format!("complete the condition after `{what}`, or remove it")
            };
            return Some(problem(
                span_of(tokens, asked_by..asked_by + 1),
                format!("`{what}` needs a condition after it"),
                help,
            ));
        }
        let next = match (word(tokens, at), &tokens[at].0) {
            (Some("not"), _) | (None, Token::Ctrl('(')) => {
                asked_by = at;
                at += 1;
                continue;
            }
            (Some("has"), _) => path_end(tokens, at + 1, end)?,
            (Some("every" | "some" | "count"), _) => {
                let path_end = path_end(tokens, at + 1, end)?;
                match comparison(tokens, at + 1..path_end, end) {
                    Ok(next) => next?,
                    Err(problem) => return Some(problem),
                }
            }
            (Some(_), _) => {
                let path_end = path_end(tokens, at, end)?;
                match comparison(tokens, at..path_end, end) {
                    Ok(next) => next?,
                    Err(problem) => return Some(problem),
                }
            }
            _ => return None,
        };
        at = next;
        // After an atom: `)`, `and`, `or`, or the end.
        while at < end && matches!(tokens[at].0, Token::Ctrl(')')) {
            at += 1;
        }
        if at >= end {
            return None;
        }
        match word(tokens, at) {
            Some("and" | "or") => {
                asked_by = at;
                at += 1;
            }
            _ => return None,
        }
    }
}

/// The index after a path `a.b.c` starting at `at` (None if there is none).
fn path_end(tokens: &[Spanned<Token<'_>>], mut at: usize, end: usize) -> Option<usize> {
    if at >= end || !matches!(tokens[at].0, Token::Word(_) | Token::Quoted(_)) {
        return None;
    }
    at += 1;
    while at + 1 < end
        && matches!(tokens[at].0, Token::Ctrl('.'))
        && matches!(tokens[at + 1].0, Token::Word(_) | Token::Quoted(_))
    {
        at += 2;
    }
    Some(at)
}

/// The operator and value after the path `path`: `Ok(Some(next))` when they are there,
/// `Ok(None)` for a shape this pass does not know, `Err` for a known mistake.
fn comparison(
    tokens: &[Spanned<Token<'_>>],
    path: Range<usize>,
    end: usize,
) -> Result<Option<usize>, ConditionProblem> {
    let at = path.end;
    let path_text = text_of(tokens, path.clone(), "");
    let operator_len = if at >= end {
        0
    } else {
        match (&tokens[at].0, word(tokens, at)) {
            (Token::Op(_), _) => 1,
            (_, Some("not" | "starts" | "ends")) => 2,
            (_, Some("contains")) if word(tokens, at + 1) == Some("any") => 2,
            (_, Some(w)) if OPERATOR_WORDS.contains(&w) => 1,
            _ => 0,
        }
    };
    if operator_len == 0 {
        let joint_follows = at >= end
            || matches!(word(tokens, at), Some("and" | "or"))
            || matches!(tokens[at].0, Token::Ctrl(')'));
        if !joint_follows {
            return Ok(None);
        }
        return Err(problem(
            span_of(tokens, path),
            format!("`{path_text}` is not a condition on its own"),
            format!(
                "compare it with a value: `{path_text} == true` (or `has {path_text}` to test that an optional field is present)"
            ),
        ));
    }
    let value = (at + operator_len).min(end);
    let operator = text_of(tokens, at..value, " ");
    if value >= end || matches!(word(tokens, value), Some("and" | "or")) {
        return Err(problem(
            span_of(tokens, at..value),
            format!("`{operator}` needs a value after it"),
            format!("write the value to compare with, e.g. `{path_text} {operator} \"...\"`"),
        ));
    }
    match &tokens[value].0 {
        Token::Word(_) | Token::Quoted(_)
            if matches!(tokens.get(value + 1).map(|t| &t.0), Some(Token::Ctrl('.'))) =>
        {
            let other_end = path_end(tokens, value, end).unwrap_or(value + 1);
            let other = text_of(tokens, value..other_end, "");
            Err(problem(
                span_of(tokens, value..other_end),
                format!(
                    "the right-hand side of `{operator}` must be a literal or a `let` name, not the request field `{other}`"
                ),
                "comparing two request fields is not supported yet: compare each with literals, or name a fixed value with `let`".to_owned(),
            ))
        }
        Token::Ctrl('[') => {
            let mut depth = 0usize;
            for (at, (token, _)) in tokens.iter().enumerate().take(end).skip(value) {
                match token {
                    Token::Ctrl('[') => depth += 1,
                    Token::Ctrl(']') => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(Some(at + 1));
                        }
                    }
                    _ => {}
                }
            }
            Ok(None)
        }
        _ => Ok(Some(value + 1)),
    }
}
