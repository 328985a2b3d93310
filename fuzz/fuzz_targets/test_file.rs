//! Test files on arbitrary text: parsed (every problem reported, never a panic) and, when they
//! parse, their cases and adversarial variants run against the bundled example set.
//! Properties are dropped: each is a Z3 proof, too slow for a fuzzing loop, and the property
//! text is already fuzzed as a condition by `parse_and_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polctl_lang::eval::Evaluator;
use polctl_testkit::{parse_test_file, run, RunOptions};
use std::sync::OnceLock;

fn evaluator() -> &'static Evaluator {
    static EVALUATOR: OnceLock<Evaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| polctl_fuzz::evaluator_of("docs/examples/weak-mail-rule"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_test_file("fuzz.test.toml", &text) {
        Ok(mut file) => {
            file.properties.clear();
            let options = RunOptions {
                filter: None,
                timeout_ms: 100,
            };
            run(evaluator(), &[file], &options);
        }
        Err(errors) => assert!(!errors.is_empty()),
    }
});
