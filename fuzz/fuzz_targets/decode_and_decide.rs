//! Request decoding and evaluation on arbitrary JSON, against the bundled example set: a
//! request either fails to decode with an error, or is decided and explained without panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, SourceSet};
use std::sync::OnceLock;

fn evaluator() -> &'static Evaluator {
    static EVALUATOR: OnceLock<Evaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/support-fleet");
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(root)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("example set") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "pol") {
                    let relative = path.strip_prefix(root).expect("under root");
                    let text = std::fs::read_to_string(&path).expect("UTF-8");
                    files.push((relative.to_string_lossy().into_owned(), text));
                }
            }
        }
        let sources = SourceSet::from_files(files);
        let set = compile(&sources).set.expect("the example compiles");
        Evaluator::new(set, sources.revision()).expect("plan")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let evaluator = evaluator();
    if let Ok(request) = evaluator.decode(&json) {
        let decision = evaluator.decide(&request);
        evaluator.explain(&request);
        serde_json::to_string(&evaluator.render(&request, &decision)).expect("JSON");
    }
});
