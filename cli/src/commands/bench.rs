//! `polctl bench DIR`: measures decision latency and throughput in-process.

use crate::exit::{CliError, Exit};
use crate::load::compile_or_report;
use crate::output::{ColorChoice, Format};
use crate::requests::read_request_input;
use clap::Args;
use polctl_lang::eval::generate::RequestGenerator;
use polctl_lang::eval::{Evaluator, Request};
use rayon::prelude::*;
use serde::Serialize;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Measure decision latency (p50/p90/p99/max) and throughput for a policy set.
///
/// Without --requests, realistic requests are generated from the schema and the policies'
/// own literals, covering every tool. After a warm-up, every decision is timed
/// single-threaded; then throughput is measured on all cores.
#[derive(Args)]
pub struct BenchArgs {
    /// The policy set: a directory of `.pol` files, one `.pol` file, or a bundle (`polctl build`).
    path: PathBuf,
    /// Requests to replay (JSON or JSON Lines, `-` for stdin) instead of generated ones.
    #[arg(long)]
    requests: Option<PathBuf>,
    /// Timed decisions (at least 100,000).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(100_000..))]
    decisions: u64,
    /// Seed for generated requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output format: human, or one JSON object.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

#[derive(Serialize)]
struct Results {
    p50_ns: u64,
    p90_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    decisions_per_sec: f64,
    rules: usize,
    tools: usize,
    requests: usize,
    decisions: u64,
    threads: usize,
    parallel_decisions_per_sec: f64,
    allow_percent: f64,
}

/// How many distinct generated requests are cycled through.
const GENERATED_REQUESTS: usize = 10_000;

pub fn run(args: BenchArgs) -> Result<Exit, CliError> {
    let Some((sources, set)) =
        compile_or_report(&args.path, args.color, args.format == Format::Json)?
    else {
        return Ok(Exit::Findings);
    };
    let rules = set.rules.len();
    let tools = set.schema.tools.len();
    let evaluator = Evaluator::new(set, sources.revision())
        .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
    let requests: Vec<Request> = match &args.requests {
        Some(path) => {
            let mut decoded = Vec::new();
            for input in read_request_input(path)? {
                let json = input.json.map_err(|e| {
                    CliError::new(format!("{}:{}: {e}", path.display(), input.line))
                })?;
                decoded.push(evaluator.decode(&json).map_err(|e| {
                    CliError::new(format!("{}:{}: {e}", path.display(), input.line))
                })?);
            }
            decoded
        }
        None => {
            if tools == 0 {
                return Err(CliError::new(
                    "the schema declares no tools, so there is nothing to decide",
                ));
            }
            let mut generator = RequestGenerator::new(evaluator.set(), args.seed);
            (0..GENERATED_REQUESTS)
                .map(|_| generator.next_request())
                .collect()
        }
    };

    // Warm up caches and the branch predictor.
    for request in requests.iter().cycle().take(20_000) {
        black_box(evaluator.decide(black_box(request)));
    }

    let total = args.decisions as usize;
    let mut samples = Vec::with_capacity(total);
    let mut allowed = 0usize;
    for request in requests.iter().cycle().take(total) {
        let started = Instant::now();
        let decision = evaluator.decide(black_box(request));
        samples.push(started.elapsed().as_nanos() as u64);
        allowed += usize::from(decision.outcome == polctl_lang::eval::Outcome::Allow);
        black_box(decision);
    }
    samples.sort_unstable();
    let percentile = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];

    // Throughput without per-decision timers.
    let started = Instant::now();
    for request in requests.iter().cycle().take(total) {
        black_box(evaluator.decide(black_box(request)));
    }
    let single = total as f64 / started.elapsed().as_secs_f64();

    let threads = rayon::current_num_threads();
    let started = Instant::now();
    (0..total).into_par_iter().for_each(|i| {
        black_box(evaluator.decide(black_box(&requests[i % requests.len()])));
    });
    let parallel = total as f64 / started.elapsed().as_secs_f64();

    let results = Results {
        p50_ns: percentile(0.50),
        p90_ns: percentile(0.90),
        p99_ns: percentile(0.99),
        max_ns: *samples.last().unwrap_or(&0),
        decisions_per_sec: single.round(),
        rules,
        tools,
        requests: requests.len(),
        decisions: args.decisions,
        threads,
        parallel_decisions_per_sec: parallel.round(),
        allow_percent: (allowed as f64 * 1000.0 / total as f64).round() / 10.0,
    };
    match args.format {
        Format::Json => {
            crate::output::print_document(&serde_json::to_string(&results).unwrap_or_default())
        }
        Format::Human => {
            println!(
                "{} rules, {} tools, {} distinct requests ({}% allowed), {} timed decisions",
                results.rules,
                results.tools,
                results.requests,
                results.allow_percent,
                results.decisions
            );
            println!(
                "latency (1 thread): p50 {} ns, p90 {} ns, p99 {} ns, max {} ns",
                results.p50_ns, results.p90_ns, results.p99_ns, results.max_ns
            );
            println!(
                "throughput: {:.0} decisions/s on 1 thread, {:.0} decisions/s on {} threads",
                results.decisions_per_sec, results.parallel_decisions_per_sec, results.threads
            );
        }
    }
    Ok(Exit::Success)
}
