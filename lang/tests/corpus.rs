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
use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn numbered(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(out, "{:>3} | {line}", i + 1);
    }
    out
}

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
    let mut failures = Vec::new();
    let entries = entries();
    assert!(
        entries.len() >= 50,
        "the corpus should cover every construct and error"
    );
    for (name, path) in &entries {
        let files = entry_files(path);
        let (rendered, errors, warnings) = render_entry(&files);
        if name.starts_with("valid/") || name == "sets/multi_file_valid" {
            if errors + warnings > 0 {
                failures.push(format!(
                    "{name}: a valid entry reported diagnostics:\n{rendered}"
                ));
                continue;
            }
        } else if errors + warnings == 0 {
            failures.push(format!("{name}: an invalid entry reported nothing"));
            continue;
        }
        let (directory, snapshot) = match name.rsplit_once('/') {
            Some((group, stem)) if !path.is_dir() => (corpus_dir().join(group), stem.to_owned()),
            _ => (path.clone(), "set".to_owned()),
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            insta::with_settings!({
                snapshot_path => directory,
                prepend_module_to_snapshot => false,
                omit_expression => true,
                description => name.clone(),
            }, {
                insta::assert_snapshot!(snapshot, rendered);
            });
        }));
        if result.is_err() {
            failures.push(format!("{name}: snapshot differs"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `.snap` in the corpus belongs to an input, so deleted inputs cannot leave stale
/// expectations behind.
#[test]
fn no_orphaned_snapshots() {
    fn walk(dir: &Path, orphans: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, orphans);
                continue;
            }
            let name = path.to_string_lossy().into_owned();
            if name.ends_with(".snap.new") || name.ends_with(".pending-snap") {
                orphans.push(format!("{name} (unreviewed snapshot)"));
            } else if name.ends_with(".snap") {
                let owner_file = path.with_extension("pol");
                let owner_set = path.file_stem().is_some_and(|s| s == "set");
                if !owner_file.exists() && !owner_set {
                    orphans.push(name);
                }
            }
        }
    }
    let mut orphans = Vec::new();
    walk(&corpus_dir(), &mut orphans);
    assert!(orphans.is_empty(), "orphaned snapshots: {orphans:#?}");
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
