//! `matches` patterns as Z3 regular expressions, with the evaluator's semantics.
//!
//! The pattern first goes through `executable_regex` (so `\d \w \s` are the ASCII classes the
//! evaluator uses); a match may start and end anywhere unless `^`/`$` anchor a top-level
//! alternative; `.` is any character but a newline; `(?i)` folds case as Rust's `regex` does
//! (simple case folding, including the Kelvin sign and the long s).

use crate::strings::escape;
use polctl_lang::check::executable_regex;
use polctl_lang::ir::TextOp;
use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassAsciiKind, ClassPerlKind, ClassSet, ClassSetItem,
    RepetitionKind, RepetitionRange,
};

/// An SMT-LIB regular expression term. Text rather than `z3::ast::Regexp`: Z3 4.8.12 has no
/// `Z3_mk_re_allchar`, and `Regexp::range` would hand it raw UTF-8.
type Regexp = String;

fn regex_literal(text: &str) -> Regexp {
    format!("(str.to_re \"{}\")", escape(text))
}

fn re_concat(parts: &[Regexp]) -> Regexp {
    format!("(re.++ {})", parts.join(" "))
}

fn re_union(parts: &[Regexp]) -> Regexp {
    format!("(re.union {})", parts.join(" "))
}

fn char_range(lo: char, hi: char) -> Option<Regexp> {
    if lo > hi {
        return Some("re.nostr".to_owned());
    }
    let (lo, hi) = (lo.to_string(), hi.to_string());
    Some(format!(
        "(re.range \"{}\" \"{}\")",
        escape(&lo),
        escape(&hi)
    ))
}

/// A pattern the encoding cannot represent exactly (the checker rejects almost all of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexUnsupported(pub String);

/// The language of strings that `pattern` matches (anywhere in them, like `Regex::is_match`),
/// as an SMT-LIB term.
pub fn matching_language(pattern: &str) -> Result<Regexp, RegexUnsupported> {
    let executable = executable_regex(pattern);
    let (case_insensitive, body) = match executable.strip_prefix("(?i)") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, executable.clone()),
    };
    let parsed = ast::parse::Parser::new()
        .parse(&body)
        .map_err(|e| RegexUnsupported(e.to_string()))?;
    let alternatives: Vec<&Ast> = match &parsed {
        Ast::Alternation(alternation) => alternation.asts.iter().collect(),
        other => vec![other],
    };
    let translator = Translator { case_insensitive };
    let mut languages = Vec::new();
    for alternative in alternatives {
        let items: Vec<&Ast> = match alternative {
            Ast::Concat(concat) => concat.asts.iter().collect(),
            other => vec![other],
        };
        let anchored_start =
            matches!(items.first(), Some(Ast::Assertion(a)) if a.kind == AssertionKind::StartLine);
        let anchored_end = items.len() > usize::from(anchored_start)
            && matches!(items.last(), Some(Ast::Assertion(a)) if a.kind == AssertionKind::EndLine);
        let core_items =
            &items[usize::from(anchored_start)..items.len() - usize::from(anchored_end)];
        let mut parts = Vec::new();
        if !anchored_start {
            parts.push("re.all".to_owned());
        }
        for item in core_items {
            parts.push(translator.node(item)?);
        }
        if !anchored_end {
            parts.push("re.all".to_owned());
        }
        languages.push(match parts.len() {
            0 => regex_literal(""),
            1 => parts.remove(0),
            _ => re_concat(&parts),
        });
    }
    Ok(if languages.len() == 1 {
        languages.remove(0)
    } else {
        re_union(&languages)
    })
}

/// The language of strings that a text test accepts: `starts with` / `ends with` the text, or
/// `contains` one of the texts (`contains any`). Z3 4.8.12's string solver decides these as
/// regex memberships far faster than as word equations (`str.prefixof` and friends) when
/// several of them, negated, constrain one field.
pub fn text_language(op: TextOp, texts: &[String]) -> Regexp {
    let literals: Vec<Regexp> = texts.iter().map(|t| regex_literal(t)).collect();
    let body = match literals.len() {
        0 => return "re.nostr".to_owned(),
        1 => literals[0].clone(),
        _ => re_union(&literals),
    };
    let all = "re.all".to_owned();
    match op {
        TextOp::StartsWith => re_concat(&[body, all]),
        TextOp::EndsWith => re_concat(&[all, body]),
        TextOp::Contains | TextOp::Matches => re_concat(&[all.clone(), body, all]),
    }
}

struct Translator {
    case_insensitive: bool,
}

/// Every spelling of `c` under Rust's simple case folding.
fn case_variants(c: char) -> Vec<char> {
    let mut variants = vec![c];
    let mut push = |x: char| {
        if !variants.contains(&x) {
            variants.push(x);
        }
    };
    let mut lower = c.to_lowercase();
    if let (Some(l), None) = (lower.next(), lower.next()) {
        push(l);
    }
    let mut upper = c.to_uppercase();
    if let (Some(u), None) = (upper.next(), upper.next()) {
        push(u);
    }
    match c.to_ascii_lowercase() {
        'k' => push('\u{212A}'),
        's' => push('\u{017F}'),
        _ => {}
    }
    match c {
        '\u{212A}' => {
            push('k');
            push('K');
        }
        '\u{017F}' => {
            push('s');
            push('S');
        }
        _ => {}
    }
    variants
}

fn union(mut parts: Vec<Regexp>) -> Regexp {
    match parts.len() {
        0 => "re.nostr".to_owned(),
        1 => parts.remove(0),
        _ => re_union(&parts),
    }
}

/// Any one character except those of `class`.
fn negate(class: Regexp) -> Regexp {
    format!("(re.inter re.allchar (re.comp {class}))")
}

impl Translator {
    fn char(&self, c: char) -> Regexp {
        if self.case_insensitive {
            union(
                case_variants(c)
                    .into_iter()
                    .map(|v| regex_literal(&v.to_string()))
                    .collect(),
            )
        } else {
            regex_literal(&c.to_string())
        }
    }

    fn range(&self, lo: char, hi: char) -> Result<Regexp, RegexUnsupported> {
        let plain = char_range(lo, hi).ok_or_else(|| {
            RegexUnsupported(format!("the class range {lo:?}-{hi:?} is too wide"))
        })?;
        if !self.case_insensitive {
            return Ok(plain);
        }
        let (lo_code, hi_code) = (lo as u32, hi as u32);
        if hi_code.saturating_sub(lo_code) > 512 {
            return Ok(plain);
        }
        let mut extra = Vec::new();
        for code in lo_code..=hi_code {
            if let Some(c) = char::from_u32(code) {
                for variant in case_variants(c).into_iter().skip(1) {
                    if (variant as u32) < lo_code || (variant as u32) > hi_code {
                        extra.push(regex_literal(&variant.to_string()));
                    }
                }
            }
        }
        extra.insert(0, plain);
        Ok(union(extra))
    }

    fn perl(&self, kind: &ClassPerlKind, negated: bool) -> Result<Regexp, RegexUnsupported> {
        let class = match kind {
            ClassPerlKind::Digit => self.range('0', '9')?,
            ClassPerlKind::Space => union(vec![self.range('\t', '\r')?, self.char(' ')]),
            ClassPerlKind::Word => union(vec![
                self.range('0', '9')?,
                self.range('A', 'Z')?,
                self.range('a', 'z')?,
                self.char('_'),
            ]),
        };
        Ok(if negated { negate(class) } else { class })
    }

    fn ascii(&self, kind: &ClassAsciiKind, negated: bool) -> Result<Regexp, RegexUnsupported> {
        let ranges: &[(char, char)] = match kind {
            ClassAsciiKind::Alnum => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
            ClassAsciiKind::Alpha => &[('A', 'Z'), ('a', 'z')],
            ClassAsciiKind::Ascii => &[('\0', '\x7F')],
            ClassAsciiKind::Blank => &[('\t', '\t'), (' ', ' ')],
            ClassAsciiKind::Cntrl => &[('\0', '\x1F'), ('\x7F', '\x7F')],
            ClassAsciiKind::Digit => &[('0', '9')],
            ClassAsciiKind::Graph => &[('!', '~')],
            ClassAsciiKind::Lower => &[('a', 'z')],
            ClassAsciiKind::Print => &[(' ', '~')],
            ClassAsciiKind::Punct => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
            ClassAsciiKind::Space => &[('\t', '\r'), (' ', ' ')],
            ClassAsciiKind::Upper => &[('A', 'Z')],
            ClassAsciiKind::Word => &[('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')],
            ClassAsciiKind::Xdigit => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        };
        let class = union(
            ranges
                .iter()
                .map(|(lo, hi)| self.range(*lo, *hi))
                .collect::<Result<_, _>>()?,
        );
        Ok(if negated { negate(class) } else { class })
    }

    fn set_item(&self, item: &ClassSetItem) -> Result<Regexp, RegexUnsupported> {
        match item {
            ClassSetItem::Empty(_) => Ok("re.nostr".to_owned()),
            ClassSetItem::Literal(literal) => Ok(self.char(literal.c)),
            ClassSetItem::Range(range) => self.range(range.start.c, range.end.c),
            ClassSetItem::Ascii(class) => self.ascii(&class.kind, class.negated),
            ClassSetItem::Perl(class) => self.perl(&class.kind, class.negated),
            ClassSetItem::Unicode(_) => Err(RegexUnsupported("Unicode classes".to_owned())),
            ClassSetItem::Bracketed(inner) => self.set(&inner.kind, inner.negated),
            ClassSetItem::Union(items) => Ok(union(
                items
                    .items
                    .iter()
                    .map(|i| self.set_item(i))
                    .collect::<Result<_, _>>()?,
            )),
        }
    }

    fn set(&self, set: &ClassSet, negated: bool) -> Result<Regexp, RegexUnsupported> {
        let class = match set {
            ClassSet::Item(item) => self.set_item(item)?,
            ClassSet::BinaryOp(_) => {
                return Err(RegexUnsupported("class set operations".to_owned()))
            }
        };
        Ok(if negated { negate(class) } else { class })
    }

    fn node(&self, node: &Ast) -> Result<Regexp, RegexUnsupported> {
        match node {
            Ast::Empty(_) => Ok(regex_literal("")),
            Ast::Literal(literal) => Ok(self.char(literal.c)),
            Ast::Dot(_) => Ok(negate(regex_literal("\n"))),
            Ast::ClassPerl(class) => self.perl(&class.kind, class.negated),
            Ast::ClassBracketed(class) => self.set(&class.kind, class.negated),
            Ast::ClassUnicode(_) => Err(RegexUnsupported("Unicode classes".to_owned())),
            Ast::Repetition(repetition) => {
                let inner = self.node(&repetition.ast)?;
                let repeat = |m: u32, n: u32| format!("((_ re.loop {m} {n}) {inner})");
                Ok(match &repetition.op.kind {
                    RepetitionKind::ZeroOrOne => format!("(re.opt {inner})"),
                    RepetitionKind::ZeroOrMore => format!("(re.* {inner})"),
                    RepetitionKind::OneOrMore => format!("(re.+ {inner})"),
                    RepetitionKind::Range(RepetitionRange::Exactly(n)) => repeat(*n, *n),
                    RepetitionKind::Range(RepetitionRange::AtLeast(n)) => {
                        re_concat(&[repeat(*n, *n), format!("(re.* {inner})")])
                    }
                    RepetitionKind::Range(RepetitionRange::Bounded(m, n)) => repeat(*m, *n),
                })
            }
            Ast::Group(group) => self.node(&group.ast),
            Ast::Alternation(alternation) => Ok(union(
                alternation
                    .asts
                    .iter()
                    .map(|a| self.node(a))
                    .collect::<Result<_, _>>()?,
            )),
            Ast::Concat(concat) => {
                let parts: Vec<Regexp> = concat
                    .asts
                    .iter()
                    .map(|a| self.node(a))
                    .collect::<Result<_, _>>()?;
                Ok(match parts.len() {
                    0 => regex_literal(""),
                    1 => parts
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| regex_literal("")),
                    _ => re_concat(&parts),
                })
            }
            Ast::Assertion(_) | Ast::Flags(_) => Err(RegexUnsupported(
                "anchors and flags inside the pattern".to_owned(),
            )),
        }
    }
}
