//! The formatter keeps meaning and is idempotent: for every corpus entry, example and library
//! policy, formatting each file gives the same IR (or, for sets that do not type-check, the
//! same diagnostics), and formatting the result again changes nothing.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

mod common;

use common::{entries, entry_files, read_tree, source_set, workspace_dir};
use polctl_lang::display::dump;
use polctl_lang::format::format_source;
use polctl_lang::{compile, Compilation};

fn meaning(compilation: &Compilation) -> String {
    match &compilation.set {
        Some(set) => dump(set),
        None => {
            let mut codes: Vec<_> = compilation
                .diagnostics
                .iter()
                .map(|d| (d.code, d.message.clone()))
                .collect();
            codes.sort();
            format!("{codes:?}")
        }
    }
}

fn check_round_trip(name: &str, files: &[(String, String)]) -> usize {
    let before = compile(&source_set(files));
    let mut formatted_files = Vec::new();
    for (path, text) in files {
        match format_source(text) {
            Ok(once) => {
                let twice = format_source(&once).unwrap_or_else(|e| {
                    panic!("{name}/{path}: formatted output does not parse: {e:?}\n{once}")
                });
                assert_eq!(once, twice, "{name}/{path}: formatting is not idempotent");
                formatted_files.push((path.clone(), once));
            }
            // Files with syntax errors are left alone by `polctl fmt`.
            Err(_) => return 0,
        }
    }
    let after = compile(&source_set(&formatted_files));
    assert_eq!(
        meaning(&before),
        meaning(&after),
        "{name}: formatting changed the meaning"
    );
    for ((path, original), (_, formatted)) in files.iter().zip(&formatted_files) {
        let comments = |text: &str| text.matches('#').count();
        assert!(
            comments(formatted) >= comments(original),
            "{name}/{path}: a comment was lost"
        );
    }
    formatted_files.len()
}

#[test]
fn corpus_entries_round_trip() {
    let mut formatted = 0;
    for (name, path) in entries() {
        formatted += check_round_trip(&name, &entry_files(&path));
    }
    assert!(
        formatted > 60,
        "only {formatted} corpus files were formatted"
    );
}

#[test]
fn examples_and_library_round_trip_and_are_formatted() {
    for dir in ["examples/support-fleet", "policies"] {
        let files = read_tree(&workspace_dir().join(dir));
        assert!(!files.is_empty(), "{dir} has no files");
        check_round_trip(dir, &files);
        for (path, text) in &files {
            let formatted = format_source(text).expect("examples parse");
            assert_eq!(
                &formatted, text,
                "{dir}/{path} is not formatted: run `polctl fmt {dir}`"
            );
        }
    }
}

#[test]
fn long_conditions_are_broken_at_top_level_operators() {
    let source = polctl_testsupport::read("lang/tests/fixtures/format/long_condition.pol");
    let formatted = format_source(&source).expect("parses");
    assert_eq!(
        formatted,
        polctl_testsupport::read("lang/tests/fixtures/format/long_condition.formatted.pol")
    );
}
