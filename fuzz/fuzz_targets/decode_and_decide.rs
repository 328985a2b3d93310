//! Request decoding and evaluation on arbitrary JSON, against the bundled example set: a
//! request either fails to decode with an error, or is decided and explained without panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polctl_lang::eval::Evaluator;
use std::sync::OnceLock;

fn evaluator() -> &'static Evaluator {
    static EVALUATOR: OnceLock<Evaluator> = OnceLock::new();
    EVALUATOR.get_or_init(|| polctl_fuzz::evaluator_of("examples/support-fleet"))
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
