//! Strings that match a regex, for generated requests: a walk over the regex's HIR that
//! picks a branch and a repetition count at each choice.

use super::generate::Rng;
use crate::check::regex::executable_regex;
use regex_syntax::hir::{Class, Hir, HirKind};

/// A string the pattern matches (as `matches` does: anywhere, unless anchored), or `None` for
/// a pattern the sampler cannot handle.
pub fn sample_matching(pattern: &str, rng: &mut Rng) -> Option<String> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(&executable_regex(pattern))
        .ok()?;
    let mut out = String::new();
    walk(&hir, rng, &mut out)?;
    Some(out)
}

fn walk(hir: &Hir, rng: &mut Rng, out: &mut String) -> Option<()> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(literal) => out.push_str(std::str::from_utf8(&literal.0).ok()?),
        HirKind::Class(Class::Unicode(class)) => {
            let ranges = class.ranges();
            let range = ranges.get(rng.below(ranges.len()))?;
            // Prefer the start of a range: `[a-z]` gives `a`, which reads well in a witness.
            let span = u32::from(range.end()) - u32::from(range.start());
            let offset = if rng.chance(70) {
                0
            } else {
                rng.below(span as usize + 1) as u32
            };
            out.push(char::from_u32(u32::from(range.start()) + offset).unwrap_or(range.start()));
        }
        HirKind::Class(Class::Bytes(class)) => {
            let range = class.ranges().first()?;
            out.push(
                char::from(range.start())
                    .is_ascii()
                    .then(|| char::from(range.start()))?,
            );
        }
        HirKind::Repetition(repetition) => {
            let extra = usize::from(rng.chance(30));
            let count = (repetition.min as usize + extra)
                .min(repetition.max.map_or(usize::MAX, |m| m as usize))
                .min(64);
            for _ in 0..count {
                walk(&repetition.sub, rng, out)?;
            }
        }
        HirKind::Capture(capture) => walk(&capture.sub, rng, out)?,
        HirKind::Concat(items) => {
            for item in items {
                walk(item, rng, out)?;
            }
        }
        HirKind::Alternation(branches) => walk(branches.get(rng.below(branches.len()))?, rng, out)?,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::regex::compile_regex;

    #[test]
    fn samples_match_their_pattern() {
        let patterns = [
            "(?i)@(gmail|outlook|yahoo)\\.com$",
            "^[a-z0-9._+-]+@(acme|acme-corp|globex|initech)\\.example$",
            "(%[0-9A-Fa-f]{2}){6,}",
            "[A-Za-z][\u{0370}-\u{03FF}]|[\u{0400}-\u{04FF}][A-Za-z]",
            "\\d{3}-\\d{4}",
            "^$",
        ];
        for pattern in patterns {
            let regex = compile_regex(pattern).unwrap();
            for seed in 0..50 {
                let sample = sample_matching(pattern, &mut Rng::new(seed)).unwrap();
                assert!(regex.is_match(&sample), "{pattern} sampled {sample:?}");
            }
        }
    }
}
