//! The lexer: `.pol` text to tokens, with every lexical error reported and skipped.
//!
//! Keywords are not tokens of their own: the language reserves a word only where it starts a
//! clause (language.md §2.2), so every identifier is a [`Token::Word`] and the parser decides.
//! Comments are returned beside the tokens so that the formatter can keep them.

use crate::source::{FileId, Span};
use chumsky::prelude::*;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Token<'src> {
    /// An identifier or keyword: `allow`, `send_email`, `agent`.
    Word(&'src str),
    /// A name in backticks, for names that are not identifiers: `` `create-issue` ``.
    Quoted(&'src str),
    /// A string literal, escapes already decoded.
    Str(String),
    Int(&'src str),
    Decimal(&'src str),
    /// `30s`, `15m`, `1h`, `1d`.
    Duration(&'src str),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `=`.
    Op(&'src str),
    /// `{ } [ ] ( ) : , . ?`
    Ctrl(char),
    DotDot,
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "`{w}`"),
            Token::Quoted(q) => write!(f, "`{q}`"),
            Token::Str(s) => write!(f, "string {s:?}"),
            Token::Int(n) | Token::Decimal(n) => write!(f, "number `{n}`"),
            Token::Duration(d) => write!(f, "duration `{d}`"),
            Token::Op(op) => write!(f, "`{op}`"),
            Token::Ctrl(c) => write!(f, "`{c}`"),
            Token::DotDot => write!(f, "`..`"),
        }
    }
}

/// A `# ...` comment: its byte range and text (including the `#`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

pub type Spanned<T> = (T, SimpleSpan);

/// What the lexer produces per item; comments are split out afterwards.
#[derive(Debug, Clone, PartialEq)]
enum Lexeme<'src> {
    Token(Token<'src>),
    Comment(&'src str),
}

/// A lexical error: byte range and a message in polctl's style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub start: usize,
    pub end: usize,
    pub message: String,
    pub help: Option<String>,
}

pub struct Lexed<'src> {
    pub tokens: Vec<Spanned<Token<'src>>>,
    pub comments: Vec<Comment>,
    pub errors: Vec<LexError>,
}

fn lexer<'src>(
) -> impl Parser<'src, &'src str, Vec<Spanned<Lexeme<'src>>>, extra::Err<Rich<'src, char>>> {
    let unicode_escape = text::digits(16)
        .at_least(1)
        .at_most(6)
        .to_slice()
        .delimited_by(just('{'), just('}'))
        .or(text::digits(16).exactly(4).to_slice())
        .validate(|digits: &str, e, emitter| {
            match u32::from_str_radix(digits, 16)
                .ok()
                .and_then(char::from_u32)
            {
                Some(c) => c,
                None => {
                    emitter.emit(Rich::custom(
                        e.span(),
                        format!("`\\u{{{digits}}}` is not a unicode scalar value"),
                    ));
                    '\u{FFFD}'
                }
            }
        });
    let escape = just('\\').ignore_then(choice((
        just('\\'),
        just('"'),
        just('/'),
        just('n').to('\n'),
        just('t').to('\t'),
        just('r').to('\r'),
        just('u').ignore_then(unicode_escape),
        // Anything else is an invalid escape: report it and keep the character, so the rest of
        // the string still lexes.
        none_of("\n").validate(|c: char, e, emitter| {
            emitter.emit(Rich::custom(
                e.span(),
                format!("invalid escape `\\{c}` in a string"),
            ));
            c
        }),
    )));
    let string = just('"')
        .ignore_then(none_of("\\\"\n").or(escape).repeated().collect::<String>())
        .then_ignore(just('"'))
        .map(|s| Lexeme::Token(Token::Str(s)));

    let number = just('-')
        .or_not()
        .then(text::digits(10))
        .then(just('.').then(text::digits(10)).or_not())
        .then(text::ascii::ident().or_not())
        .to_slice()
        .validate(|text: &'src str, e, emitter| {
            let token = classify_number(text).unwrap_or_else(|message| {
                emitter.emit(Rich::custom(e.span(), message));
                Token::Int("0")
            });
            Lexeme::Token(token)
        });

    let word = text::ascii::ident().map(|w| Lexeme::Token(Token::Word(w)));
    let quoted = just('`')
        .ignore_then(none_of("`\n").repeated().at_least(1).to_slice())
        .then_ignore(just('`'))
        .map(|q| Lexeme::Token(Token::Quoted(q)));
    let op = choice((
        just("=="),
        just("!="),
        just("<="),
        just(">="),
        just("<"),
        just(">"),
        just("="),
    ))
    .map(|op| Lexeme::Token(Token::Op(op)));
    let dotdot = just("..").to(Lexeme::Token(Token::DotDot));
    let ctrl = one_of("{}[]():,.?").map(|c| Lexeme::Token(Token::Ctrl(c)));
    let comment = just('#')
        .then(none_of("\n").repeated())
        .to_slice()
        .map(Lexeme::Comment);

    let lexeme = choice((comment, string, number, word, quoted, op, dotdot, ctrl));
    lexeme
        .map_with(|lexeme, e| (lexeme, e.span()))
        .padded()
        .recover_with(skip_then_retry_until(any().ignored(), end()))
        .repeated()
        .collect()
        .then_ignore(text::whitespace())
}

/// Splits a number-like lexeme (`12`, `-3`, `98.70`, `30s`) into the token it is.
fn classify_number(text: &str) -> Result<Token<'_>, String> {
    let suffix_at = text.find(|c: char| c.is_ascii_alphabetic() || c == '_');
    match suffix_at {
        None if text.contains('.') => Ok(Token::Decimal(text)),
        None => Ok(Token::Int(text)),
        Some(at) => {
            let (digits, unit) = text.split_at(at);
            if matches!(unit, "s" | "m" | "h" | "d") && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(Token::Duration(text))
            } else {
                Err(format!(
                    "`{text}` is not a number or a duration; write a duration as a whole number \
                     followed by `s`, `m`, `h` or `d`"
                ))
            }
        }
    }
}

/// The `-` of a hyphenated name (`release-manager`) the lexer stopped at: at `at` itself, or
/// just before it (`-m` is tried as a negative number and fails on the `m`).
fn hyphen_in_name(source: &str, at: usize) -> Option<usize> {
    let is_hyphen_between = |hyphen: usize| {
        source.as_bytes().get(hyphen) == Some(&b'-')
            && source[..hyphen].ends_with(|c: char| c.is_ascii_alphanumeric())
            && source[hyphen + 1..].starts_with(|c: char| c.is_ascii_alphabetic())
    };
    [Some(at), at.checked_sub(1)]
        .into_iter()
        .flatten()
        .find(|&hyphen| is_hyphen_between(hyphen))
}

/// Lexes one file. Never fails: errors are returned beside whatever tokens could be read.
pub fn lex(source: &str) -> Lexed<'_> {
    let (lexemes, errors) = lexer().parse(source).into_output_errors();
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    for (lexeme, span) in lexemes.unwrap_or_default() {
        match lexeme {
            Lexeme::Token(token) => tokens.push((token, span)),
            Lexeme::Comment(text) => comments.push(Comment {
                start: span.start,
                end: span.end,
                text: text.trim_end().to_owned(),
            }),
        }
    }
    let errors = errors
        .into_iter()
        .map(|error| convert_error(source, error))
        .collect();
    Lexed {
        tokens,
        comments,
        errors,
    }
}

fn convert_error(source: &str, error: Rich<'_, char>) -> LexError {
    let span = *error.span();
    let (message, help) = match error.reason() {
        chumsky::error::RichReason::Custom(message) => {
            let help = message.starts_with("invalid escape").then(|| {
                "strings use JSON escapes (`\\\"`, `\\\\`, `\\n`, `\\t`, `\\u{..}`); in a regex, \
                     write a backslash twice: `\"\\\\d+\"`"
                    .to_owned()
            });
            (message.clone(), help)
        }
        chumsky::error::RichReason::ExpectedFound { found, .. } => {
            let hyphen = hyphen_in_name(source, span.start);
            let in_string = source[..span.start.min(source.len())]
                .rsplit('\n')
                .next()
                .is_some_and(|line| line.matches('"').count() % 2 == 1);
            match found.as_deref() {
                _ if in_string => (
                    "unterminated string".to_owned(),
                    Some(
                        "close the string with `\"` on the same line; write `\\n` for a line break"
                            .to_owned(),
                    ),
                ),
                Some('&') | Some('|') => {
                    let (written, word) = if found.as_deref() == Some(&'&') {
                        ("&&", "and")
                    } else {
                        ("||", "or")
                    };
                    (
                        format!("`{written}` is not an operator in `.pol`"),
                        Some(format!("join conditions with `{word}`")),
                    )
                }
                Some(_) if hyphen.is_some() => {
                    let hyphen = hyphen.unwrap_or(span.start);
                    let start = source[..hyphen]
                        .char_indices()
                        .rev()
                        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                        .map_or(0, |(at, c)| at + c.len_utf8());
                    let end = source[hyphen..]
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                        .map_or(source.len(), |at| hyphen + at);
                    let written = &source[start..end];
                    (
                        format!("names use `_`, not `-`: `{written}`"),
                        Some(format!(
                            "did you mean `{}`? A name that must keep its `-` (a tool's) is written in backticks: `` `{written}` ``",
                            written.replace('-', "_")
                        )),
                    )
                }
                Some(c) => (
                    format!("unexpected character `{}`", c.escape_debug()),
                    Some(
                        "names that are not identifiers are written in backticks: `create-issue`"
                            .to_owned(),
                    )
                    .filter(|_| matches!(c, '-' | '/' | '@' | '$' | '*')),
                ),
                None => ("unexpected end of file".to_owned(), None),
            }
        }
    };
    // At least one character wide, so that the error shows; widened to whole characters, since
    // `start + 1` is inside a multi-byte character.
    let span =
        Span::on_char_boundaries(FileId(0), source, span.start, span.end.max(span.start + 1));
    LexError {
        start: span.start as usize,
        end: span.end as usize,
        message,
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<Token<'_>> {
        let lexed = lex(source);
        assert!(lexed.errors.is_empty(), "{:?}", lexed.errors);
        lexed.tokens.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn ranges_durations_and_decimals_are_told_apart() {
        assert_eq!(
            kinds("0..23 1d 98.70 -5"),
            vec![
                Token::Int("0"),
                Token::DotDot,
                Token::Int("23"),
                Token::Duration("1d"),
                Token::Decimal("98.70"),
                Token::Int("-5"),
            ]
        );
    }

    #[test]
    fn strings_decode_json_escapes() {
        assert_eq!(
            kinds(r#""a\"b\\c\n\u{1F600}\u00e9""#),
            vec![Token::Str("a\"b\\c\n\u{1F600}\u{e9}".into())]
        );
    }

    #[test]
    fn comments_are_kept_aside() {
        let lexed = lex("rule # note\nx");
        assert_eq!(lexed.tokens.len(), 2);
        assert_eq!(lexed.comments[0].text, "# note");
    }

    #[test]
    fn bad_characters_are_reported_and_skipped() {
        let lexed = lex("a $ b");
        assert_eq!(lexed.tokens.len(), 2);
        assert_eq!(lexed.errors.len(), 1);
        assert_eq!(lexed.errors[0].message, "unexpected character `$`");
    }
}
