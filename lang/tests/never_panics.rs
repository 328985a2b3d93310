//! Property tests: the front end never panics, whatever it is fed, and every diagnostic points
//! inside its file (so rendering it cannot fail either).
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

mod common;

use common::{entries, entry_files, source_set};
use polctl_lang::diagnostic::{render_human, JsonFinding};
use polctl_lang::format::format_source;
use polctl_lang::{compile, SourceSet};
use proptest::prelude::*;

fn check_everything(sources: &SourceSet) {
    let compilation = compile(sources);
    for diagnostic in &compilation.diagnostics {
        for label in std::iter::once(&diagnostic.primary).chain(&diagnostic.secondary) {
            let text = &sources.file(label.span.file).text;
            assert!(
                label.span.start <= label.span.end && label.span.end as usize <= text.len(),
                "span {:?} outside a file of {} bytes: {}",
                label.span,
                text.len(),
                diagnostic.message
            );
            assert!(text.is_char_boundary(label.span.start as usize));
            assert!(text.is_char_boundary(label.span.end as usize));
        }
        let rendered = std::panic::catch_unwind(|| render_human(diagnostic, sources, false));
        assert!(
            rendered.is_ok(),
            "rendering panicked for {diagnostic:?} in {:?}",
            sources
                .files()
                .map(|(_, f)| f.text.clone())
                .collect::<Vec<_>>()
        );
        let json = serde_json::to_string(&JsonFinding::from_diagnostic(diagnostic, sources));
        assert!(json.is_ok(), "JSON rendering failed for {diagnostic:?}");
    }
    for (_, file) in sources.files() {
        if let Ok(formatted) = format_source(&file.text) {
            assert!(
                format_source(&formatted).is_ok(),
                "formatted output does not parse"
            );
        }
    }
}

fn corpus_texts() -> Vec<String> {
    entries()
        .into_iter()
        .flat_map(|(_, path)| entry_files(&path))
        .map(|(_, text)| text)
        .collect()
}

/// Tokens that make mutations likely to reach deep into the grammar.
const FRAGMENTS: &[&str] = &[
    "rule",
    "policy",
    "schema",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    ".",
    "..",
    "?",
    "\"",
    "\"x\"",
    "==",
    "!=",
    "<",
    "in",
    "not",
    "and",
    "or",
    "has",
    "every",
    "some",
    "count",
    "when",
    "unless",
    "with",
    "because",
    "overrides",
    "allow",
    "deny",
    "limit",
    "require approval from",
    "args.",
    "agent.",
    "context.",
    "tool.name",
    "session",
    "1d",
    "-5",
    "1.5",
    "`",
    "\\",
    "\u{e9}",
    "\u{1F600}",
    "#",
    "\n",
    "let x = ",
    "any tool",
    "matches \"(a\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..FRAGMENTS.len())
            .prop_map(|(at, fragment)| Mutation::Insert { at, fragment }),
        (any::<usize>(), 1usize..80).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    if text.is_empty() {
        return text.to_owned();
    }
    match mutation {
        Mutation::Delete { at, len } => {
            let start = floor_boundary(text, at % text.len());
            let end = floor_boundary(text, start + len);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Insert { at, fragment } => {
            let at = floor_boundary(text, at % text.len());
            format!("{}{}{}", &text[..at], FRAGMENTS[*fragment], &text[at..])
        }
        Mutation::Duplicate { at, len } => {
            let start = floor_boundary(text, at % text.len());
            let end = floor_boundary(text, start + len);
            format!("{}{}{}", &text[..end], &text[start..end], &text[end..])
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        check_everything(&SourceSet::from_files([("random.pol".to_owned(), text)]));
    }

    #[test]
    fn mutated_corpus_files_never_panic(
        file in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let texts = corpus_texts();
        let mut text = file.get(&texts).clone();
        for mutation in &mutations {
            text = apply(&text, mutation);
        }
        let schema = std::fs::read_to_string(common::corpus_dir().join("schema.pol")).expect("schema");
        check_everything(&SourceSet::from_files([
            ("mutated.pol".to_owned(), text),
            ("schema.pol".to_owned(), schema),
        ]));
    }
}

#[test]
fn every_corpus_entry_is_safe_to_render() {
    for (_, path) in entries() {
        check_everything(&source_set(&entry_files(&path)));
    }
}

/// A file that stops anywhere: every corpus file, each line ending in a comment of multi-byte
/// text, cut at every character boundary with no final newline. A cut inside a line's original
/// text is a prefix of the original file; a cut in the comment ends the file right after a
/// multi-byte character, where an end-of-file error once made the renderer panic. Each result
/// is checked, rendered for humans and as JSON, and formatted.
#[test]
fn every_corpus_file_cut_at_every_character_boundary_is_safe() {
    let schema = std::fs::read_to_string(common::corpus_dir().join("schema.pol")).expect("schema");
    let texts: Vec<String> = corpus_texts()
        .iter()
        .map(|text| {
            text.lines()
                .map(|line| format!("{line} # é€😀\n"))
                .collect()
        })
        .collect();
    // Two threads: this is about 40,000 compilations.
    let cuts: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = texts
            .chunks(texts.len().div_ceil(2))
            .map(|chunk| {
                let schema = &schema;
                scope.spawn(move || {
                    let mut cuts = 0;
                    for text in chunk {
                        for (at, _) in text.char_indices().chain([(text.len(), ' ')]) {
                            check_everything(&SourceSet::from_files([
                                ("cut.pol".to_owned(), text[..at].to_owned()),
                                ("schema.pol".to_owned(), schema.clone()),
                            ]));
                            cuts += 1;
                        }
                    }
                    cuts
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    assert!(cuts > 10_000, "only {cuts} cuts: the corpus went missing");
}
