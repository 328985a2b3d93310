//! `polctl-bench server [--rules N] [--entries N]`: the decision server's engine in process, on
//! a scratch `--data` directory (SQLite as the server runs it):
//! - upload (verify, compile) of a generated N-rule bundle, a blue-green switch to it (commit
//!   and route change), and a rollback to the previous bundle (kept compiled);
//! - audit appends: N entries submitted to the journal as fast as it takes them, grouped
//!   commits, until durable;
//! - `audit verify` of those N entries (chain and signed checkpoints) and `audit at`.
//!
//! Each figure is the median of several runs where it is cheap to repeat; printed as Markdown.

use polctl_bench::{generate, SynthConfig};
use polctl_runtime::audit::PendingEntry;
use polctl_runtime::engine::{Engine, EngineParts, EngineSettings, TestSummary};
use polctl_runtime::loaded::Trust;
use polctl_runtime::store::Job;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn bundle_of(config: &SynthConfig, name: &str) -> Result<Vec<u8>, String> {
    let files = generate(config);
    let sources = polctl_lang::SourceSet::from_files(files.clone());
    let set = polctl_lang::compile(&sources)
        .set
        .ok_or("the generated set does not compile")?;
    polctl_bundle::build(&polctl_bundle::BuildInput {
        name: name.to_owned(),
        files,
        set: &set,
        check: polctl_bundle::CheckSummary {
            errors: 0,
            warnings: 0,
            digest: "sha256:-".to_owned(),
        },
        tests: None,
        parent: None,
    })
    .map_err(|e| e.to_string())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn server_benchmark(rules: usize, entries: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("polctl-bench-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = |seed| SynthConfig {
        rules,
        files: (rules / 10).max(1),
        seed,
        ..SynthConfig::default()
    };
    let first = bundle_of(&config(1), "bench-a")?;
    let second = bundle_of(&config(2), "bench-b")?;
    let (private, public_key, _) =
        polctl_bundle::generate_key([9; 32]).map_err(|e| e.to_string())?;
    let key = polctl_bundle::parse_private_key(std::str::from_utf8(&private).unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let metrics = polctl_runtime::metrics::Metrics::default();
    let (journal, mut recovered, thread) =
        polctl_runtime::store::open(&dir, now_ms() / 1000, &metrics, Some(key), None)
            .map_err(|e| e.message)?;
    let engine = Arc::new(Engine::new(
        journal.clone(),
        &mut recovered,
        EngineParts {
            data: dir.clone(),
            trust: Trust::default(),
            tester: Arc::new(|_| Ok(TestSummary::default())),
            predictor: Arc::new(|_, _| None),
            presenter: Arc::new(|_, _, _, _| Vec::new()),
            settings: EngineSettings::default(),
            metrics,
        },
        now_ms(),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (mut uploads, mut switches, mut rollbacks) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        for round in 0..5 {
            // Each round: the second set uploaded and switched to, then rolled back from.
            let bytes = &second;
            if round == 0 {
                engine
                    .upload(first.clone(), "bench", now_ms())
                    .await
                    .map_err(|e| e.message)?;
                engine
                    .switch(0, "bench", now_ms())
                    .await
                    .map_err(|e| e.message)?;
            }
            let started = Instant::now();
            engine
                .upload(bytes.clone(), "bench", now_ms())
                .await
                .map_err(|e| e.message)?;
            uploads.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            engine
                .switch(0, "bench", now_ms())
                .await
                .map_err(|e| e.message)?;
            switches.push(started.elapsed().as_secs_f64() * 1000.0);
            let started = Instant::now();
            engine
                .rollback(None, "bench", now_ms())
                .await
                .map_err(|e| e.message)?;
            rollbacks.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok::<(), String>(())
    })?;
    println!(
        "| {rules}-rule bundle | upload (verify, compile; no tests in it) {:.0} ms | blue-green switch {:.2} ms | rollback to the previous {:.2} ms |",
        median(uploads),
        median(switches),
        median(rollbacks)
    );

    // Audit appends: entries shaped like a decision's.
    let started = Instant::now();
    let body = json!({
        "decision_id": "d-0000000000-00000000",
        "request": {"agent": {"id": "billing-bot-1", "role": "billing", "tenant": "acme", "tier": "enterprise"},
                    "tool": "search_kb", "args": {"query": "refund policy"}, "context": {"mode": "normal", "region": "eu"},
                    "session": "s-1"},
        "decision": {"decision": "allow", "rules": ["acme.support.kb"], "reasons": [], "approvers": [],
                     "obligations": [], "limits": [], "policy_version": "sha256:4eacd25cfb566a63792fa944b6f0360107f3ab82e4e976a3eeb398b0e29d6fc9"},
        "sequence": 0,
        "cohort": "stable",
    });
    let base = now_ms();
    for index in 0..entries {
        let (done, _) = tokio::sync::oneshot::channel();
        journal
            .submit(Job::Entry {
                entry: PendingEntry {
                    time_ms: base + (index / 50) as i64,
                    kind: "decision",
                    body: body.clone(),
                },
                done,
            })
            .map_err(|e| e.message)?;
    }
    runtime.block_on(engine.flush()).map_err(|e| e.message)?;
    let appending = started.elapsed().as_secs_f64();
    println!(
        "| audit append | {entries} entries in {appending:.2} s: {:.0} entries/s (submitted from one thread, committed in groups, durable) |",
        entries as f64 / appending
    );
    drop(engine);
    drop(journal);
    let _ = thread.join();

    let public = Some(
        polctl_bundle::parse_public_key(std::str::from_utf8(&public_key).unwrap_or(""))
            .map_err(|e| e.to_string())?,
    );
    let started = Instant::now();
    let report =
        polctl_runtime::audit_log::verify(&dir, public.as_ref()).map_err(|e| format!("{e:?}"))?;
    let verifying = started.elapsed().as_secs_f64();
    let mut at = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        polctl_runtime::audit_log::at(&dir, base + (entries / 100) as i64)
            .map_err(|e| e.message)?;
        at.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "| audit verify | {} entries, {} checkpoints, in {verifying:.2} s ({:.0} entries/s) | audit at {:.2} ms |",
        report.entries,
        report.checkpoints,
        report.entries as f64 / verifying,
        median(at)
    );
    let _ = std::fs::remove_dir_all(&dir);
    retention_benchmark(entries, &body)
}

/// `[audit] retain`: N decision entries dated 100 days ago and one of today, then the journal
/// reopened with 90 days' retention and asked to prune: the time until the prune entry is
/// committed (with the first chunk of the deletion), and until the journal has deleted the
/// whole range, a chunk at a time.
fn retention_benchmark(entries: usize, body: &serde_json::Value) -> Result<(), String> {
    const DAY_MS: i64 = 86_400_000;
    let dir = std::env::temp_dir().join(format!("polctl-bench-retain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let metrics = polctl_runtime::metrics::Metrics::default();
    let (private, _, _) = polctl_bundle::generate_key([9; 32]).map_err(|e| e.to_string())?;
    let key = || {
        polctl_bundle::parse_private_key(std::str::from_utf8(&private).unwrap_or(""))
            .map_err(|e| e.to_string())
    };
    let submit = |journal: &polctl_runtime::store::Journal, time_ms: i64| {
        let (done, committed) = tokio::sync::oneshot::channel();
        journal
            .submit(Job::Entry {
                entry: PendingEntry {
                    time_ms,
                    kind: "decision",
                    body: body.clone(),
                },
                done,
            })
            .map(|()| committed)
            .map_err(|e| e.message)
    };
    let old = now_ms() - 100 * DAY_MS;
    let (journal, _, thread) =
        polctl_runtime::store::open(&dir, now_ms() / 1000, &metrics, Some(key()?), None)
            .map_err(|e| e.message)?;
    for index in 0..entries {
        submit(&journal, old + (index / 50) as i64)?;
    }
    let last = submit(&journal, now_ms())?;
    last.blocking_recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| e.message)?;
    drop(journal);
    let _ = thread.join();
    let (journal, _, thread) = polctl_runtime::store::open(
        &dir,
        now_ms() / 1000,
        &metrics,
        Some(key()?),
        Some(90 * DAY_MS),
    )
    .map_err(|e| e.message)?;
    let started = Instant::now();
    let (done, pruned) = tokio::sync::oneshot::channel();
    journal.submit(Job::Prune(done)).map_err(|e| e.message)?;
    pruned
        .blocking_recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| e.message)?;
    let pruning = started.elapsed().as_secs_f64();
    let report = polctl_runtime::audit_log::verify(&dir, None).map_err(|e| format!("{e:?}"))?;
    let last = report.pruned_to.ok_or("nothing was pruned")?;
    while polctl_runtime::audit_log::first_index(&dir)
        .map_err(|e| e.message)?
        .is_some_and(|first| first <= last)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let deleting = started.elapsed().as_secs_f64();
    drop(journal);
    let _ = thread.join();
    let report = polctl_runtime::audit_log::verify(&dir, None).map_err(|e| format!("{e:?}"))?;
    println!(
        "| audit retention | {entries} entries older than 90 days: the prune entry committed in {:.1} ms, the range deleted in {deleting:.2} s, a chunk of {} at a time (kept log begins at entry {}) |",
        pruning * 1000.0,
        2_000,
        report.pruned_to.map_or(0, |to| to + 1)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `polctl-bench serve-inputs --rules N --dir DIR [--requests K]`: what a load test of a
/// server on a generated set needs, written to DIR: `set.polb` (the generated N-rule set as a
/// bundle, seed 1) and `bodies.jsonl` (K decide request bodies from the evaluator's request
/// generator, without the `approvals` and `counters` a client may not send, each with a
/// session). For `polctl-bench load` (docs/benchmarks.md).
pub fn serve_inputs(rules: usize, requests: usize, dir: &std::path::Path) -> Result<(), String> {
    let config = SynthConfig {
        rules,
        files: (rules / 10).max(1),
        seed: 1,
        ..SynthConfig::default()
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bundle = bundle_of(&config, "bench-a")?;
    std::fs::write(dir.join("set.polb"), bundle).map_err(|e| e.to_string())?;
    let set = polctl_lang::compile(&polctl_lang::SourceSet::from_files(generate(&config)))
        .set
        .ok_or("the generated set does not compile")?;
    let mut generator = polctl_lang::eval::generate::RequestGenerator::new(&set, 7);
    let mut bodies = String::new();
    for i in 0..requests {
        let mut body =
            polctl_lang::eval::generate::request_to_json(&set, &generator.next_request());
        if let Some(object) = body.as_object_mut() {
            object.remove("approvals");
            object.remove("counters");
            object.insert("session".to_owned(), json!(format!("s-{}", i % 1000)));
        }
        bodies.push_str(&body.to_string());
        bodies.push('\n');
    }
    std::fs::write(dir.join("bodies.jsonl"), bodies).map_err(|e| e.to_string())?;
    println!(
        "wrote {} and {} ({requests} requests)",
        dir.join("set.polb").display(),
        dir.join("bodies.jsonl").display()
    );
    Ok(())
}
