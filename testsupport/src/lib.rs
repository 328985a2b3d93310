//! Test helpers shared by the crates' test suites (a dev-dependency only, never linked into
//! polctl): reading corpora and fixtures from disk, numbering source lines, and the one snapshot
//! harness every snapshot corpus uses, with its orphan check.
//!
//! The pure crates may not touch files (their `clippy.toml`), but their tests read corpora;
//! keeping that IO here means one copy of it instead of one per crate.

use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The workspace root (this crate sits directly under it).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate has a parent directory")
        .to_path_buf()
}

/// A file under the workspace, read as UTF-8 (panics with the path when it cannot be).
pub fn read(relative: impl AsRef<Path>) -> String {
    let path = workspace_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// All files with extension `extension` under `root` as `(path relative to root, text)`, with
/// `/` separators, sorted.
pub fn read_tree(root: &Path, extension: &str) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, extension: &str, out: &mut Vec<(String, String)>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, extension, out);
            } else if path.extension().is_some_and(|e| e == extension) {
                let relative = path
                    .strip_prefix(root)
                    .expect("under the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((relative, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, extension, &mut out);
    out.sort();
    out
}

/// The paths in `dir` (not recursive) that `keep` accepts, sorted.
pub fn list(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| keep(p))
        .collect();
    paths.sort();
    paths
}

/// The final component of a path as text.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Source text with right-aligned line numbers, as the snapshots show inputs.
pub fn numbered(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(out, "{:>3} | {line}", i + 1);
    }
    out
}

/// One run over a snapshot corpus: every case is compared with its snapshot, and every failure
/// (snapshot or not) is collected so that one run reports all of them rather than the first.
#[derive(Default)]
pub struct Corpus {
    failures: Vec<String>,
    cases: usize,
}

impl Corpus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Compares `rendered` with `dir/<snapshot>.snap`; `case` names the input in the snapshot
    /// header and in failures.
    pub fn snapshot(&mut self, dir: &Path, snapshot: &str, case: &str, rendered: &str) {
        self.cases += 1;
        let result = catch_unwind(AssertUnwindSafe(|| {
            insta::with_settings!({
                snapshot_path => dir,
                prepend_module_to_snapshot => false,
                omit_expression => true,
                description => case.to_owned(),
            }, {
                insta::assert_snapshot!(snapshot.to_owned(), rendered);
            });
        }));
        if result.is_err() {
            self.failures.push(format!("{case}: snapshot differs"));
        }
    }

    /// Records a failure of `case` other than its snapshot.
    pub fn fail(&mut self, case: &str, why: impl std::fmt::Display) {
        self.failures.push(format!("{case}: {why}"));
    }

    /// Panics with every failure, or when fewer than `minimum` cases ran (a corpus that went
    /// missing must not pass as an empty one).
    pub fn finish(self, minimum: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n")
        );
        assert!(
            self.cases >= minimum,
            "only {} cases ran, expected at least {minimum}",
            self.cases
        );
    }
}

/// Panics naming every `.snap` under `root` (recursively) whose input `has_input` does not find,
/// and every unreviewed snapshot (`.snap.new`, `.pending-snap`): deleted or renamed inputs must
/// not leave stale expectations behind.
pub fn assert_no_orphaned_snapshots(root: &Path, has_input: impl Fn(&Path) -> bool) {
    fn walk(dir: &Path, has_input: &dyn Fn(&Path) -> bool, orphans: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, has_input, orphans);
                continue;
            }
            let name = path.to_string_lossy().into_owned();
            if name.ends_with(".snap.new") || name.ends_with(".pending-snap") {
                orphans.push(format!("{name} (unreviewed snapshot)"));
            } else if name.ends_with(".snap") && !has_input(&path) {
                orphans.push(name);
            }
        }
    }
    let mut orphans = Vec::new();
    walk(root, &has_input, &mut orphans);
    assert!(orphans.is_empty(), "orphaned snapshots: {orphans:#?}");
}
