//! Loading corpus entries: a `.pol` file (with the shared corpus schema unless it declares its
//! own) or a directory holding a multi-file set.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora and print
#![allow(dead_code)] // each test binary uses a different part of this module

use polctl_lang::SourceSet;
use std::path::{Path, PathBuf};

pub const SHARED_SCHEMA: &str = "corpus-schema.pol";

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

#[allow(unused_imports)] // not every test binary needs it
pub use polctl_testsupport::workspace_dir;

/// Every corpus entry: `(name relative to the corpus, path)`, sorted.
pub fn entries() -> Vec<(String, PathBuf)> {
    let mut entries = Vec::new();
    for group in ["valid", "invalid"] {
        for entry in std::fs::read_dir(corpus_dir().join(group)).expect("corpus group") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "pol") {
                let stem = path
                    .file_stem()
                    .expect("stem")
                    .to_string_lossy()
                    .into_owned();
                entries.push((format!("{group}/{stem}"), path));
            }
        }
    }
    for entry in std::fs::read_dir(corpus_dir().join("sets")).expect("sets") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            entries.push((format!("sets/{name}"), path));
        }
    }
    entries.sort();
    entries
}

/// All `.pol` files under a directory as `(relative path, text)`, sorted.
pub fn read_tree(root: &Path) -> Vec<(String, String)> {
    polctl_testsupport::read_tree(root, "pol")
}

/// The files of one entry, ready to compile.
pub fn entry_files(path: &Path) -> Vec<(String, String)> {
    if path.is_dir() {
        return read_tree(path);
    }
    let text = std::fs::read_to_string(path).expect("utf-8");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut files = vec![(name, text.clone())];
    if !text.contains("schema {") {
        let schema = std::fs::read_to_string(corpus_dir().join("schema.pol")).expect("schema");
        files.push((SHARED_SCHEMA.to_owned(), schema));
    }
    files
}

pub fn source_set(files: &[(String, String)]) -> SourceSet {
    SourceSet::from_files(files.iter().cloned())
}
