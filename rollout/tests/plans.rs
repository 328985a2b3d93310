//! Plan files (`tests/plans/*.toml`): valid plans are snapshotted as the plan they parse to
//! (written back as TOML, which must parse to the same plan); invalid ones (`bad_*`) as the
//! error with its line, column and help. The default plan is valid and round-trips too.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)] // tests read their corpora

use polctl_rollout::plan::{parse_plan, Plan};
use polctl_testsupport::{assert_no_orphaned_snapshots, list, numbered, workspace_dir, Corpus};
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    workspace_dir().join("rollout/tests/plans")
}

#[test]
fn plan_corpus() {
    let mut corpus = Corpus::new();
    for path in list(&corpus_dir(), |p| {
        p.extension().is_some_and(|e| e == "toml")
    }) {
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("read");
        let mut rendered = format!("--- {name}.toml\n{}\n", numbered(&text));
        match parse_plan(&text) {
            Ok(plan) => {
                if name.starts_with("bad_") {
                    corpus.fail(&name, "an invalid plan parsed");
                }
                let written = plan.to_toml();
                match parse_plan(&written) {
                    Ok(again) if again == plan => {}
                    other => corpus.fail(&name, format!("does not round-trip: {other:?}")),
                }
                rendered.push_str(&format!("--- parsed, written back\n{written}"));
            }
            Err(error) => {
                if !name.starts_with("bad_") {
                    corpus.fail(&name, format!("a valid plan failed: {error}"));
                }
                let line = text.lines().nth(error.line.saturating_sub(1)).unwrap_or("");
                rendered.push_str(&format!(
                    "--- error\n{}:{}: {}\n  | {line}\n  help: {}\n",
                    error.line, error.column, error.message, error.help
                ));
            }
        }
        corpus.snapshot(&corpus_dir(), &name, &name, &rendered);
    }
    corpus.finish(12);
}

#[test]
fn no_orphaned_snapshots() {
    assert_no_orphaned_snapshots(&corpus_dir(), |snap| snap.with_extension("toml").exists());
}

#[test]
fn the_default_plan_is_valid_and_round_trips() {
    let plan = Plan::default();
    assert_eq!(parse_plan(&plan.to_toml()), Ok(plan.clone()));
    assert!(plan.stages.first().is_some_and(|s| s.is_shadow()));
    assert_eq!(plan.stages.last().map(|s| s.traffic), Some(100.0));
}
