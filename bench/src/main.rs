//! `polctl-bench`: benchmarks that write their results for docs/benchmarks.md.
//!
//! `polctl-bench compile [--rules N] [--files N] [--tools N] [--tenants N] [--runs N]` generates
//! a synthetic set into a temporary directory, then runs `polctl-bench measure-compile DIR` in a
//! fresh process per run (so peak memory is the compile's alone) and prints a Markdown row.
//! `polctl-bench generate DIR [...]` writes a set for use with `polctl` directly.
//! `polctl-bench analyze [--rules N] [--tools N] [--tenants N]` generates a set with planted
//! mistakes of every kind, runs the full analysis and prints a Markdown row: time, queries,
//! queries that went to Z3 and their mean time, and whether exactly the planted findings were
//! reported (it fails otherwise). `polctl-bench generate-planted DIR [...]` writes such a set.
//! `polctl-bench bundle [--rules N]` times building, signing and verifying a bundle.
//! `polctl-bench diff [--rules N] [--changes K] [--seed S]` times the semantic diff of a generated set
//! against a copy with K new rules.
//! `polctl-bench rollout [--rules N] [--lines N]` generates a set and a changed copy, writes
//! about N lines of traffic with `polctl traffic generate`, and times `polctl simulate` (both
//! versions decide every line: the plan holds the shadow stage) and `polctl replay` on it,
//! with their peak memory (GNU time), through the release binary beside this one.
//! `polctl-bench server [--rules N] [--entries N]` times the decision server's engine in
//! process: bundle upload, switch and rollback, audit appends, `audit verify` and `audit at`.
//! `polctl-bench load --url URL [--bodies FILE] [--rates 1000,5000,max]` sends HTTP requests at
//! fixed rates (open loop) to a running server on loopback and prints the latency percentiles;
//! `polctl-bench serve-inputs --rules N --dir DIR` writes a generated set's bundle and request
//! bodies for it.

mod load;
mod server_bench;

use polctl_bench::{compare, generate, generate_planted, PlantedConfig, SynthConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("compile") => compile_benchmark(&args[1..]),
        Some("measure-compile") => measure_compile(&args[1..]),
        Some("generate") => generate_command(&args[1..]),
        Some("analyze") => analyze_benchmark(&args[1..]),
        Some("generate-planted") => generate_planted_command(&args[1..]),
        Some("bundle") => bundle_benchmark(&args[1..]),
        Some("diff") => diff_benchmark(&args[1..]),
        Some("rollout") => rollout_benchmark(&args[1..]),
        Some("load") => load::load_command(&args[1..]),
        Some("serve-inputs") => option(&args[1..], "--rules", 1_000).and_then(|rules| {
            let dir = args
                .iter()
                .position(|a| a == "--dir")
                .and_then(|i| args.get(i + 1))
                .ok_or("--dir DIR is required")?;
            server_bench::serve_inputs(
                rules,
                option(&args[1..], "--requests", 10_000)?,
                Path::new(dir),
            )
        }),
        Some("server") => option(&args[1..], "--rules", 1_000).and_then(|rules| {
            server_bench::server_benchmark(rules, option(&args[1..], "--entries", 1_000_000)?)
        }),
        _ => Err(
            "usage: polctl-bench compile|generate|measure-compile|analyze|generate-planted|bundle|diff|rollout|server|serve-inputs|load [options]"
                .to_owned(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn option(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} takes a number")),
    }
}

fn config(args: &[String]) -> Result<SynthConfig, String> {
    Ok(SynthConfig {
        rules: option(args, "--rules", 10_000)?,
        files: option(args, "--files", 1_000)?,
        tools: option(args, "--tools", 60)?,
        tenants: option(args, "--tenants", 40)?,
        seed: option(args, "--seed", 1)? as u64,
    })
}

fn write_set(dir: &Path, config: &SynthConfig) -> Result<usize, String> {
    let files = generate(config);
    let mut bytes = 0;
    for (path, text) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&target, text).map_err(|e| e.to_string())?;
        bytes += text.len();
    }
    Ok(bytes)
}

fn generate_command(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(args.first().ok_or("generate needs a directory")?);
    let config = config(&args[1..])?;
    let bytes = write_set(&dir, &config)?;
    println!(
        "wrote {} rules in {} files ({bytes} bytes) to {}",
        config.rules,
        config.files + 1,
        dir.display()
    );
    Ok(())
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Loads every `.pol` file under `dir` and compiles the set, as `polctl check --compile-only`.
fn measure_compile(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(args.first().ok_or("measure-compile needs a directory")?);
    let started = Instant::now();
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "pol") {
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                let relative = path.strip_prefix(&dir).map_err(|e| e.to_string())?;
                files.push((relative.to_string_lossy().into_owned(), text));
            }
        }
    }
    let sources = polctl_lang::SourceSet::from_files(files);
    let compilation = polctl_lang::compile(&sources);
    let seconds = started.elapsed().as_secs_f64();
    if compilation.errors() > 0 {
        return Err(format!(
            "the generated set has {} errors",
            compilation.errors()
        ));
    }
    println!(
        "{} {} {} {seconds:.4} {}",
        compilation.stats.files,
        compilation.stats.rules,
        sources.files().map(|(_, f)| f.text.len()).sum::<usize>(),
        peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}

fn compile_benchmark(args: &[String]) -> Result<(), String> {
    let config = config(args)?;
    let runs = option(args, "--runs", 5)?;
    let dir = std::env::temp_dir().join(format!(
        "polctl-bench-{}-{}",
        config.rules,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    write_set(&dir, &config)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..runs {
        let output = std::process::Command::new(&exe)
            .arg("measure-compile")
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        last = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let seconds: f64 = last
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse().ok())
            .ok_or("unexpected measure output")?;
        times.push(seconds);
    }
    let _ = std::fs::remove_dir_all(&dir);
    times.sort_by(f64::total_cmp);
    let fields: Vec<&str> = last.split_whitespace().collect();
    let (files, rules, bytes, peak) = (fields[0], fields[1], fields[2], fields[4]);
    let median = times[times.len() / 2];
    println!("| files | rules | source size | median s | min s | max s | peak RSS |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {files} | {rules} | {:.1} MiB | {median:.3} | {:.3} | {:.3} | {:.1} MiB |",
        bytes.parse::<f64>().unwrap_or(0.0) / 1_048_576.0,
        times[0],
        times[times.len() - 1],
        peak.parse::<f64>().unwrap_or(0.0) / 1024.0
    );
    Ok(())
}

fn planted_config(args: &[String]) -> Result<PlantedConfig, String> {
    Ok(PlantedConfig {
        rules: option(args, "--rules", 1_000)?,
        tools: option(args, "--tools", 60)?,
        tenants: option(args, "--tenants", 40)?,
        seed: option(args, "--seed", 1)? as u64,
    })
}

fn generate_planted_command(args: &[String]) -> Result<(), String> {
    let dir = PathBuf::from(args.first().ok_or("generate-planted needs a directory")?);
    let set = generate_planted(&planted_config(&args[1..])?);
    for (path, text) in &set.files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&target, text).map_err(|e| e.to_string())?;
    }
    println!(
        "wrote {} rules in {} files to {} with {} planted mistakes:",
        set.rule_count,
        set.files.len(),
        dir.display(),
        set.planted.len()
    );
    for planted in &set.planted {
        println!("  {} {}", planted.kind, planted.rule);
    }
    Ok(())
}

/// Generates a planted set, analyses it in-process and compares the findings with the plants.
fn analyze_benchmark(args: &[String]) -> Result<(), String> {
    let config = planted_config(args)?;
    let set = generate_planted(&config);
    let sources = polctl_lang::SourceSet::from_files(set.files.clone());
    let started = Instant::now();
    let compilation = polctl_lang::compile(&sources);
    let Some(compiled) = compilation.set.clone() else {
        return Err(format!(
            "the generated set has {} errors",
            compilation.errors()
        ));
    };
    let evaluator =
        polctl_lang::eval::Evaluator::new(compiled.clone(), "bench").map_err(|e| e.message)?;
    let analysis = polctl_solver::analyze(&compiled, &evaluator, polctl_solver::Options::default())
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let comparison = compare(&set, &analysis.findings);
    let mean_ms = if analysis.solver_queries == 0 {
        0.0
    } else {
        analysis.solver_seconds * 1000.0 / analysis.solver_queries as f64
    };
    println!(
        "| {} | {} | {seconds:.2} s | {} | {} | {mean_ms:.1} ms | {}/{} found, {} other |",
        set.rule_count,
        config.tools,
        analysis.queries,
        analysis.solver_queries,
        comparison.expected - comparison.missed.len(),
        comparison.expected,
        comparison.extra.len()
    );
    if !comparison.missed.is_empty()
        || !comparison.extra.is_empty()
        || comparison.reported != comparison.expected
    {
        return Err(format!(
            "missed {:?}; reported besides the plants {:?}; {} findings for {} plants",
            comparison.missed, comparison.extra, comparison.reported, comparison.expected
        ));
    }
    Ok(())
}

/// Bundle creation and verification of a generated set (the analysis and tests that
/// `polctl build` runs first are measured by `analyze`).
fn bundle_benchmark(args: &[String]) -> Result<(), String> {
    let config = SynthConfig {
        rules: option(args, "--rules", 10_000)?,
        files: option(args, "--files", 1_000)?,
        ..SynthConfig::default()
    };
    let files = generate(&config);
    let sources = polctl_lang::SourceSet::from_files(files.clone());
    let compiled = polctl_lang::compile(&sources)
        .set
        .ok_or("the generated set does not compile")?;
    let summary = polctl_bundle::CheckSummary {
        errors: 0,
        warnings: 0,
        digest: "sha256:-".to_owned(),
    };
    let started = Instant::now();
    let bytes = polctl_bundle::build(&polctl_bundle::BuildInput {
        name: "bench".to_owned(),
        files,
        set: &compiled,
        check: summary,
        tests: None,
        parent: None,
    })
    .map_err(|e| e.to_string())?;
    let built = started.elapsed().as_secs_f64();
    let (private, public, _) = polctl_bundle::generate_key([7; 32]).map_err(|e| e.to_string())?;
    let private = polctl_bundle::parse_private_key(std::str::from_utf8(&private).unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let public = polctl_bundle::parse_public_key(std::str::from_utf8(&public).unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let signed = polctl_bundle::sign(&bytes, &private, 1, "2026-01-01T00:00:00Z")
        .map_err(|e| e.to_string())?;
    let signing = started.elapsed().as_secs_f64();
    let started = Instant::now();
    polctl_bundle::verify(&signed, &[public], &polctl_bundle::Policy::default())
        .map_err(|e| e.to_string())?;
    let verifying = started.elapsed().as_secs_f64();
    println!(
        "| {} | {} | {:.1} MiB | {built:.3} s | {signing:.3} s | {verifying:.3} s |",
        compiled.rules.len(),
        config.files,
        bytes.len() as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}

/// Semantic diff of a generated set against a copy with new deny rules on `--changes` tools.
/// A copy of a generated set with `changes` new deny rules (one per file, on different tools).
fn with_changes(old_files: &[(String, String)], changes: usize) -> Vec<(String, String)> {
    let tools: Vec<String> = old_files
        .iter()
        .find(|(p, _)| p == "schema.pol")
        .map(|(_, text)| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("tool "))
                .filter_map(|l| l.split(':').next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut new_files = old_files.to_vec();
    let mut changed = 0;
    for (path, text) in new_files.iter_mut() {
        if changed == changes || path == "schema.pol" {
            continue;
        }
        let Some(end) = text.rfind('}') else { continue };
        let tool = &tools[changed * 5 % tools.len().max(1)];
        text.insert_str(
            end,
            &format!("\n  rule bench_change_{changed}:\n    deny {tool} when context.hour == 23\n"),
        );
        changed += 1;
    }
    new_files
}

fn diff_benchmark(args: &[String]) -> Result<(), String> {
    let config = SynthConfig {
        rules: option(args, "--rules", 1_000)?,
        files: option(args, "--files", 100)?,
        seed: option(args, "--seed", 1)? as u64,
        ..SynthConfig::default()
    };
    let changes = option(args, "--changes", 10)?;
    let old_files = generate(&config);
    let new_files = with_changes(&old_files, changes);
    let changed = new_files
        .iter()
        .filter(|(_, text)| text.contains("rule bench_change_"))
        .count();
    let evaluator = |files: Vec<(String, String)>| -> Result<polctl_lang::eval::Evaluator, String> {
        let set = polctl_lang::compile(&polctl_lang::SourceSet::from_files(files))
            .set
            .ok_or("a generated set does not compile")?;
        polctl_lang::eval::Evaluator::new(set, "bench").map_err(|e| e.message)
    };
    let (old, new) = (evaluator(old_files)?, evaluator(new_files)?);
    let started = Instant::now();
    let diff = polctl_solver::diff::semantic_diff(&old, &new, 10_000).map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "| {} | {changed} | {} of {} | {} | {} | {} | {} | {seconds:.2} s |",
        old.set().rules.len(),
        diff.tools_compared.len(),
        old.set().schema.tools.len(),
        diff.queries,
        diff.changes.len(),
        diff.unknown.len(),
        diff.truncated.len()
    );
    for unknown in &diff.unknown {
        let (tool, pair, reason) = (&unknown.tool, unknown.change(), &unknown.reason);
        eprintln!("unknown: {tool} {pair}: {reason}");
    }
    Ok(())
}

/// The plan of the rollout benchmark: a shadow stage that outlasts any traffic, so both
/// versions decide every line, and no criterion that could end it.
const HELD_SHADOW_PLAN: &str = "[[stage]]\nname = \"shadow\"\ntraffic = 0\nmin_duration = \"3650d\"\n\n[[stage]]\nname = \"full\"\ntraffic = 100\n";

/// Runs `polctl ARGS` under GNU time: `(seconds, peak RSS in MB, stdout)`.
fn timed_polctl(polctl: &Path, args: &[&str]) -> Result<(f64, f64, String), String> {
    let started = Instant::now();
    let output = std::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("maxrss_kb=%M")
        .arg(polctl)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run /usr/bin/time (Debian package `time`): {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let rss_kb: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("polctl {args:?} failed: {stderr}"))?;
    Ok((
        seconds,
        rss_kb / 1024.0,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

fn rollout_benchmark(args: &[String]) -> Result<(), String> {
    let config = SynthConfig {
        rules: option(args, "--rules", 1_000)?,
        files: option(args, "--files", 100)?,
        seed: option(args, "--seed", 1)? as u64,
        ..SynthConfig::default()
    };
    let lines = option(args, "--lines", 1_000_000)?;
    let polctl = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("polctl");
    if !polctl.exists() {
        return Err(format!(
            "`{}` is missing; build it first: cargo build --release -p polctl",
            polctl.display()
        ));
    }
    // `--dir DIR` keeps the sets, plan and traffic there (for profiling one step by hand).
    let kept = args
        .iter()
        .position(|a| a == "--dir")
        .map(|i| args.get(i + 1).cloned().ok_or("--dir takes a directory"))
        .transpose()?;
    let dir = match &kept {
        Some(dir) => std::path::Path::new(dir).join("polctl-bench-rollout"),
        None => std::env::temp_dir().join(format!("polctl-bench-rollout-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let old_files = generate(&config);
    let new_files = with_changes(&old_files, 10);
    for (side, files) in [("old", &old_files), ("new", &new_files)] {
        for (path, text) in files {
            let target = dir.join(side).join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(&target, text).map_err(|e| e.to_string())?;
        }
    }
    std::fs::write(dir.join("plan.toml"), HELD_SHADOW_PLAN).map_err(|e| e.to_string())?;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    // About 8 lines per session (7 calls and an outcome). `--traffic FILE` reuses a file written
    // before by `polctl traffic generate` on the same generated set.
    let reused = args
        .iter()
        .position(|a| a == "--traffic")
        .map(|i| args.get(i + 1).cloned().ok_or("--traffic takes a file"))
        .transpose()?;
    let traffic_text = reused.clone().unwrap_or_else(|| path("traffic.jsonl"));
    let generate_s = match reused {
        Some(_) => 0.0,
        None => {
            let sessions = (lines / 8).max(1).to_string();
            let args = [
                "traffic",
                "generate",
                &path("old"),
                "-o",
                &traffic_text,
                "--sessions",
                &sessions,
                "--duration",
                "7d",
            ];
            timed_polctl(&polctl, &args)?.0
        }
    };
    let written = std::fs::read(&traffic_text)
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    let bytes = std::fs::metadata(&traffic_text)
        .map_err(|e| e.to_string())?
        .len();
    let (simulate_s, simulate_mb, report) = timed_polctl(
        &polctl,
        &[
            "simulate",
            "--from",
            &path("old"),
            "--to",
            &path("new"),
            "--traffic",
            &traffic_text,
            "--plan",
            &path("plan.toml"),
            "--format",
            "json",
        ],
    )?;
    let report: serde_json::Value =
        serde_json::from_str(&report).map_err(|e| format!("simulate: {e}"))?;
    let both = report["stages"][0]["requests"].as_u64().unwrap_or(0);
    let requests = report["traffic"]["requests"].as_u64().unwrap_or(0);
    if both != requests {
        return Err(format!(
            "only {both} of {requests} requests were decided by both versions"
        ));
    }
    let (replay_s, replay_mb, _) = timed_polctl(
        &polctl,
        &[
            "replay",
            "--traffic",
            &traffic_text,
            "--against",
            &path("new"),
            "--from",
            &path("old"),
            "--format",
            "json",
        ],
    )?;
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "| {} | {written} ({:.0} MB) | {generate_s:.1} s | {simulate_s:.2} s, {:.0} lines/s, {simulate_mb:.0} MB | {replay_s:.2} s, {:.0} lines/s, {replay_mb:.0} MB |",
        config.rules,
        bytes as f64 / 1e6,
        written as f64 / simulate_s,
        written as f64 / replay_s,
    );
    Ok(())
}
