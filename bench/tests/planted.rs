//! The analysis finds every planted mistake in a generated set, and nothing else; the
//! generator is deterministic.

use polctl_bench::{compare, generate_planted, PlantedConfig};

#[test]
fn every_planted_mistake_is_found_and_nothing_else() {
    let config = PlantedConfig {
        rules: 400,
        tools: 60,
        tenants: 40,
        seed: 7,
    };
    let set = generate_planted(&config);
    let sources = polctl_lang::SourceSet::from_files(set.files.clone());
    let compilation = polctl_lang::compile(&sources);
    let compiled = compilation.set.clone().expect("the generated set compiles");
    assert_eq!(compilation.errors() + compilation.warnings(), 0);
    let evaluator = polctl_lang::eval::Evaluator::new(compiled.clone(), "test").expect("plan");
    let analysis = polctl_solver::analyze(&compiled, &evaluator, polctl_solver::Options::default())
        .expect("analysis");
    let comparison = compare(&set, &analysis.findings);
    assert!(
        comparison.missed.is_empty(),
        "missed {:?}",
        comparison.missed
    );
    assert!(
        comparison.extra.is_empty(),
        "also reported {:?}",
        comparison.extra
    );
    assert_eq!(comparison.reported, comparison.expected);
    // Nine kinds are planted (all but `unknown`, which needs a solver timeout).
    let mut kinds: Vec<&str> = set.planted.iter().map(|p| p.kind).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 9);
}

#[test]
fn the_generator_is_deterministic() {
    let config = PlantedConfig {
        rules: 300,
        tools: 60,
        tenants: 40,
        seed: 3,
    };
    assert_eq!(
        generate_planted(&config).files,
        generate_planted(&config).files
    );
}
