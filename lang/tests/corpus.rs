//! The parser, checker and diagnostics corpus.
//!
//! Each input under `tests/corpus/{valid,invalid,sets}` has an insta snapshot beside it showing
//! the source next to the rendered diagnostics (human, no colour) and, when the set compiles,
//! the IR dump. Valid inputs must compile without any diagnostic; invalid ones must report at
//! least one. Snapshots without an input fail the build.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print

mod common;

use common::{corpus_dir, entries, entry_files, source_set, SHARED_SCHEMA};
use polctl_lang::diagnostic::render_human;
use polctl_lang::display::dump;
use polctl_lang::{compile, Severity};
use polctl_testsupport::{assert_no_orphaned_snapshots, numbered, Corpus};
use std::fmt::Write;

/// What the snapshot of one entry shows.
fn render_entry(files: &[(String, String)]) -> (String, usize, usize) {
    let sources = source_set(files);
    let compilation = compile(&sources);
    let mut out = String::new();
    for (path, text) in files {
        if path == SHARED_SCHEMA {
            continue;
        }
        let _ = writeln!(out, "--- {path}");
        out.push_str(&numbered(text));
    }
    out.push_str("\n--- diagnostics\n");
    if compilation.diagnostics.is_empty() {
        out.push_str("(none)\n");
    }
    for diagnostic in &compilation.diagnostics {
        out.push_str(&render_human(diagnostic, &sources, false));
    }
    if let Some(set) = &compilation.set {
        out.push_str("\n--- ir\n");
        out.push_str(&dump(set));
    }
    (out, compilation.errors(), compilation.warnings())
}

#[test]
fn corpus_snapshots() {
    let mut corpus = Corpus::new();
    for (name, path) in &entries() {
        let files = entry_files(path);
        let (rendered, errors, warnings) = render_entry(&files);
        if name.starts_with("valid/") || name == "sets/multi_file_valid" {
            if errors + warnings > 0 {
                corpus.fail(
                    name,
                    format!("a valid entry reported diagnostics:\n{rendered}"),
                );
                continue;
            }
        } else if errors + warnings == 0 {
            corpus.fail(name, "an invalid entry reported nothing");
            continue;
        }
        // A file's snapshot sits beside it; a set's inside its directory, as `set.snap`.
        let (directory, snapshot) = match name.rsplit_once('/') {
            Some((group, stem)) if !path.is_dir() => (corpus_dir().join(group), stem.to_owned()),
            _ => (path.clone(), "set".to_owned()),
        };
        corpus.snapshot(&directory, &snapshot, name, &rendered);
    }
    // The corpus should cover every construct and error.
    corpus.finish(50);
}

/// Every `.snap` in the corpus belongs to an input.
#[test]
fn no_orphaned_snapshots() {
    assert_no_orphaned_snapshots(&corpus_dir(), |snap| {
        let set_snapshot = snap.file_stem().is_some_and(|s| s == "set");
        let set_dir = snap.parent().expect("a directory");
        snap.with_extension("pol").exists()
            || (set_snapshot && !common::read_tree(set_dir).is_empty())
    });
}

#[test]
fn every_error_code_is_exercised() {
    let mut seen = std::collections::BTreeSet::new();
    for (_, path) in entries() {
        let files = entry_files(&path);
        let compilation = compile(&source_set(&files));
        seen.extend(compilation.diagnostics.iter().map(|d| d.code));
        // Every diagnostic is an error or a warning with a message in Cedar's style.
        for diagnostic in &compilation.diagnostics {
            let first = diagnostic.message.chars().next().unwrap_or('a');
            assert!(
                !first.is_uppercase() && !diagnostic.message.ends_with('.'),
                "message style: {:?}",
                diagnostic.message
            );
            assert!(matches!(
                diagnostic.severity,
                Severity::Error | Severity::Warning
            ));
        }
    }
    let documented = std::fs::read_to_string(common::workspace_dir().join("docs/language.md"))
        .expect("docs/language.md");
    for code in polctl_lang::check::codes::ALL {
        assert!(seen.contains(code), "no corpus entry produces {code}");
        assert!(
            documented.contains(code),
            "docs/language.md does not document {code}"
        );
    }
}
