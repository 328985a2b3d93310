//! What the fuzz targets share: the evaluator of a policy set in this repository, loaded once.

use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, SourceSet};
use std::path::{Path, PathBuf};

/// The evaluator of the set under `relative` (from the repository root): every `.pol` file
/// below it. Panics if the set does not compile: a fuzz target needs a working set.
pub fn evaluator_of(relative: &str) -> Evaluator {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the set's directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "pol") {
                let name = path.strip_prefix(&root).expect("under root");
                let text = std::fs::read_to_string(&path).expect("UTF-8");
                files.push((name.to_string_lossy().into_owned(), text));
            }
        }
    }
    let sources = SourceSet::from_files(files);
    let set = compile(&sources).set.expect("the set compiles");
    Evaluator::new(set, sources.revision()).expect("plan")
}
