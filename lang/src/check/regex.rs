//! The regex subset accepted by `matches` (language.md §2.2).
//!
//! Only what both the evaluator (Rust's `regex`) and the solver (Z3 regular expressions) can
//! encode exactly: literals, escapes, classes, `.`, `|`, groups, `* + ? {m,n}`, `^`/`$` opening or
//! closing the pattern or a top-level alternative, and a leading `(?i)`. Everything else is
//! rejected with a message that names the construct.

use regex_syntax::ast::{self, Assertion, AssertionKind, Ast, ClassSet, ClassSetItem, GroupKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexProblem {
    pub message: String,
    pub help: String,
}

fn problem(message: impl Into<String>, help: impl Into<String>) -> RegexProblem {
    RegexProblem {
        message: message.into(),
        help: help.into(),
    }
}

/// Checks that `pattern` is in the accepted subset.
pub fn validate_regex(pattern: &str) -> Result<(), RegexProblem> {
    let body = pattern.strip_prefix("(?i)").unwrap_or(pattern);
    let parsed = ast::parse::Parser::new().parse(body).map_err(|error| {
        let help = match error.kind() {
            ast::ErrorKind::UnsupportedLookAround => {
                "look-around cannot be encoded for the solver; split the test into two \
                 conditions joined with `and not`"
            }
            ast::ErrorKind::UnsupportedBackreference => {
                "back-references are not regular and cannot be checked"
            }
            _ => "regexes use Rust's syntax; in a string, write a backslash twice: `\"\\\\d+\"`",
        };
        problem(error.kind().to_string(), help)
    })?;
    // The full parser also catches errors the AST parser lets through (e.g. bad class ranges).
    regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|error| problem(first_line(&error.to_string()), "fix the pattern"))?;
    check_top(&parsed)?;
    // The evaluator compiles the pattern with the regex crate's default size limit; a pattern
    // over it would pass here and fail in every command that decides, so it is compiled now.
    match compile_regex(pattern) {
        Ok(_) => Ok(()),
        Err(regex::Error::CompiledTooBig(limit)) => Err(problem(
            format!(
                "too large to run: compiled, it would exceed the engine's limit of {} MiB",
                limit / (1024 * 1024)
            ),
            "nested or large counted repetitions multiply (`a{1000}{1000}` is a million `a`s); \
             use `+` or `*`, or a smaller count",
        )),
        Err(error) => Err(problem(first_line(&error.to_string()), "fix the pattern")),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_owned())
        .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_owned())
}

fn check_top(node: &Ast) -> Result<(), RegexProblem> {
    match node {
        Ast::Alternation(alternation) => alternation.asts.iter().try_for_each(check_alternative),
        other => check_alternative(other),
    }
}

/// A top-level alternative may open with `^` and close with `$`.
fn check_alternative(node: &Ast) -> Result<(), RegexProblem> {
    match node {
        Ast::Concat(concat) => {
            let last = concat.asts.len().saturating_sub(1);
            for (i, item) in concat.asts.iter().enumerate() {
                match item {
                    Ast::Assertion(assertion) => {
                        check_anchor(assertion, i == 0, i == last)?;
                    }
                    other => check_inner(other)?,
                }
            }
            Ok(())
        }
        Ast::Assertion(assertion) => check_anchor(assertion, true, true),
        other => check_inner(other),
    }
}

fn check_anchor(assertion: &Assertion, first: bool, last: bool) -> Result<(), RegexProblem> {
    match assertion.kind {
        AssertionKind::StartLine if first => Ok(()),
        AssertionKind::EndLine if last => Ok(()),
        AssertionKind::StartLine | AssertionKind::EndLine => Err(inner_anchor()),
        _ => Err(unsupported_assertion(assertion.kind.clone())),
    }
}

fn inner_anchor() -> RegexProblem {
    problem(
        "`^` and `$` may only open or close the pattern or a top-level alternative",
        "move the anchor to the start or end, e.g. `\"^(a|b)$\"` instead of `\"(^a|b$)\"`",
    )
}

fn unsupported_assertion(kind: AssertionKind) -> RegexProblem {
    match kind {
        AssertionKind::WordBoundary
        | AssertionKind::NotWordBoundary
        | AssertionKind::WordBoundaryStart
        | AssertionKind::WordBoundaryEnd
        | AssertionKind::WordBoundaryStartAngle
        | AssertionKind::WordBoundaryEndAngle
        | AssertionKind::WordBoundaryStartHalf
        | AssertionKind::WordBoundaryEndHalf => problem(
            "word boundaries (`\\b`) are not supported",
            "to find a word inside text, name the characters around it, one top-level \
             alternative per place: `\"^drop$|^drop[^A-Za-z0-9_]|[^A-Za-z0-9_]drop$|[^A-Za-z0-9_]drop[^A-Za-z0-9_]\"`",
        ),
        _ => problem(
            "`\\A` and `\\z` are not supported",
            "use `^` and `$` to anchor the pattern",
        ),
    }
}

/// Anything below the top level: no anchors, no flags, no Unicode classes.
fn check_inner(node: &Ast) -> Result<(), RegexProblem> {
    match node {
        Ast::Empty(_) | Ast::Literal(_) | Ast::Dot(_) | Ast::ClassPerl(_) => Ok(()),
        Ast::Flags(_) => Err(problem(
            "inline flags are not supported",
            "only a leading `(?i)` (case-insensitive) is accepted",
        )),
        Ast::Assertion(assertion) => match assertion.kind {
            AssertionKind::StartLine | AssertionKind::EndLine => Err(inner_anchor()),
            _ => Err(unsupported_assertion(assertion.kind.clone())),
        },
        Ast::ClassUnicode(_) => Err(unicode_class()),
        Ast::ClassBracketed(class) => check_class(&class.kind),
        Ast::Repetition(repetition) => check_inner(&repetition.ast),
        Ast::Group(group) => {
            if let GroupKind::NonCapturing(flags) = &group.kind {
                if !flags.items.is_empty() {
                    return Err(problem(
                        "inline flags are not supported",
                        "only a leading `(?i)` (case-insensitive) is accepted",
                    ));
                }
            }
            check_inner(&group.ast)
        }
        Ast::Alternation(alternation) => alternation.asts.iter().try_for_each(check_inner),
        Ast::Concat(concat) => concat.asts.iter().try_for_each(check_inner),
    }
}

fn unicode_class() -> RegexProblem {
    problem(
        "Unicode classes (`\\p{..}`) are not supported",
        "list the characters in a bracket class, e.g. `[a-zA-Z]`",
    )
}

fn check_class(set: &ClassSet) -> Result<(), RegexProblem> {
    match set {
        ClassSet::BinaryOp(_) => Err(problem(
            "class set operations (`&&`, `--`, `~~`) are not supported",
            "write the resulting characters as one bracket class",
        )),
        ClassSet::Item(item) => check_class_item(item),
    }
}

fn check_class_item(item: &ClassSetItem) -> Result<(), RegexProblem> {
    match item {
        ClassSetItem::Unicode(_) => Err(unicode_class()),
        ClassSetItem::Bracketed(inner) => check_class(&inner.kind),
        ClassSetItem::Union(union) => union.items.iter().try_for_each(check_class_item),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_subset() {
        for ok in [
            "^[a-z]+\\.example$",
            "(?i)^sk-[A-Za-z0-9]{20,}",
            "^a|^b$",
            "(ab)+c?d*",
            "\\d{3}-\\d{4}",
            "[^@]+@[^@]+",
        ] {
            assert_eq!(validate_regex(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_encoded() {
        for bad in [
            "a(?=b)",
            "(a)\\1",
            "a^b",
            "(^a)",
            "\\bword",
            "(?s:a.)",
            "\\p{Greek}",
            "[a",
        ] {
            assert!(validate_regex(bad).is_err(), "{bad}");
        }
    }
}

/// The one way a `matches` pattern becomes a runnable regex, for the checker (which rejects
/// patterns over the engine's size limit as E310) and the evaluator alike.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&executable_regex(pattern))
}

/// The pattern to hand to Rust's `regex`: the same pattern with `\d`, `\w`, `\s` (and their
/// negations) spelt as ASCII classes, which is what they mean in policies (docs/language.md).
/// The solver encodes the same classes, so both sides agree on non-ASCII input.
pub fn executable_regex(pattern: &str) -> String {
    let prefix = if pattern.starts_with("(?i)") { 4 } else { 0 };
    let Ok(parsed) = ast::parse::Parser::new().parse(&pattern[prefix..]) else {
        return pattern.to_owned();
    };
    let mut classes = Vec::new();
    collect_perl_classes(&parsed, &mut classes);
    classes.sort_by_key(|(start, _, _)| *start);
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut copied = 0;
    for (start, end, replacement) in classes {
        out.push_str(&pattern[copied..prefix + start]);
        out.push_str(replacement);
        copied = prefix + end;
    }
    out.push_str(&pattern[copied..]);
    out
}

fn ascii_class(class: &ast::ClassPerl) -> &'static str {
    match (&class.kind, class.negated) {
        (ast::ClassPerlKind::Digit, false) => "[0-9]",
        (ast::ClassPerlKind::Digit, true) => "[^0-9]",
        (ast::ClassPerlKind::Space, false) => "[\\t\\n\\x0B\\x0C\\r ]",
        (ast::ClassPerlKind::Space, true) => "[^\\t\\n\\x0B\\x0C\\r ]",
        (ast::ClassPerlKind::Word, false) => "[0-9A-Za-z_]",
        (ast::ClassPerlKind::Word, true) => "[^0-9A-Za-z_]",
    }
}

fn collect_perl_classes(node: &Ast, out: &mut Vec<(usize, usize, &'static str)>) {
    match node {
        Ast::ClassPerl(class) => out.push((
            class.span.start.offset,
            class.span.end.offset,
            ascii_class(class),
        )),
        Ast::ClassBracketed(class) => collect_in_set(&class.kind, out),
        Ast::Repetition(repetition) => collect_perl_classes(&repetition.ast, out),
        Ast::Group(group) => collect_perl_classes(&group.ast, out),
        Ast::Alternation(alternation) => alternation
            .asts
            .iter()
            .for_each(|a| collect_perl_classes(a, out)),
        Ast::Concat(concat) => concat
            .asts
            .iter()
            .for_each(|a| collect_perl_classes(a, out)),
        _ => {}
    }
}

fn collect_in_set(set: &ClassSet, out: &mut Vec<(usize, usize, &'static str)>) {
    match set {
        ClassSet::Item(item) => collect_in_item(item, out),
        ClassSet::BinaryOp(op) => {
            collect_in_set(&op.lhs, out);
            collect_in_set(&op.rhs, out);
        }
    }
}

fn collect_in_item(item: &ClassSetItem, out: &mut Vec<(usize, usize, &'static str)>) {
    match item {
        ClassSetItem::Perl(class) => out.push((
            class.span.start.offset,
            class.span.end.offset,
            ascii_class(class),
        )),
        ClassSetItem::Bracketed(inner) => collect_in_set(&inner.kind, out),
        ClassSetItem::Union(union) => union.items.iter().for_each(|i| collect_in_item(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod executable_tests {
    use super::executable_regex;

    #[test]
    fn perl_classes_become_ascii_classes() {
        assert_eq!(executable_regex("^\\d{3}$"), "^[0-9]{3}$");
        assert_eq!(executable_regex("(?i)[\\w.]+@"), "(?i)[[0-9A-Za-z_].]+@");
        assert_eq!(executable_regex("a\\\\d"), "a\\\\d");
        assert_eq!(executable_regex("\\S+"), "[^\\t\\n\\x0B\\x0C\\r ]+");
    }
}
