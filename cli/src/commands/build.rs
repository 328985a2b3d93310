//! `polctl build DIR -o FILE` and `polctl inspect FILE`.
//!
//! A build compiles the set, runs the full analysis and the tests, and refuses to write a
//! bundle when there are error findings or failing tests. The bundle's bytes are a pure
//! function of the sources (docs/bundle-format.md).

use crate::exit::{CliError, Exit};
use crate::load::{
    find_files_with_suffix, load_policy_set, read_bytes, read_text, write_atomically,
};
use crate::output::{plural, Format};
use clap::Args;
use polctl_bundle::manifest::sha256_hex;
use polctl_bundle::{build, BuildInput, CheckSummary, TestSummary};
use polctl_lang::diagnostic::{render_human, JsonFinding};
use polctl_lang::eval::Evaluator;
use polctl_lang::{compile, Severity};
use polctl_testkit::{parse_test_file, report, run, CaseOutcome, RunOptions};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Build a bundle: compile, analyse and test the set, then write its sources, compiled IR and
/// a manifest into one file whose bytes depend only on the sources.
///
/// Refuses (exit 2) when the set does not compile or has error findings, and (exit 3) when a
/// test fails; nothing is written then.
#[derive(Args)]
pub struct BuildArgs {
    /// The policy set directory (its `*.test.toml` files are run and bundled too).
    path: PathBuf,
    /// The bundle file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The set's name in the manifest (default: the directory's name).
    #[arg(long)]
    name: Option<String>,
    /// The revision this release follows (`sha256:...`), recorded in the manifest.
    #[arg(long, value_name = "REVISION")]
    parent: Option<String>,
    /// Time limit of one solver query.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u32,
}

pub fn run_build(args: BuildArgs) -> Result<Exit, CliError> {
    let sources = load_policy_set(&args.path)?;
    let compilation = compile(&sources);
    let Some(set) = compilation.set.clone() else {
        for diagnostic in &compilation.diagnostics {
            println!("{}", render_human(diagnostic, &sources, false));
        }
        return Err(CliError::new(format!(
            "refusing to build: `{}` does not compile ({})",
            args.path.display(),
            plural(compilation.errors(), "error")
        ))
        .with_help("fix the errors above; `polctl check` lists them with their fixes")
        .with_exit(Exit::Findings));
    };
    let evaluator = Evaluator::new(set.clone(), sources.revision())
        .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
    let analysis = polctl_solver::analyze(
        &set,
        &evaluator,
        polctl_solver::Options {
            timeout_ms: args.timeout_ms,
        },
    )
    .map_err(|e| CliError::new(e.to_string()))?;
    let mut findings = compilation.diagnostics.clone();
    findings.extend(analysis.findings);
    polctl_lang::diagnostic::sort_diagnostics(&mut findings);
    let errors = findings
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        for diagnostic in findings.iter().filter(|d| d.severity == Severity::Error) {
            println!("{}", render_human(diagnostic, &sources, false));
        }
        return Err(CliError::new(format!(
            "refusing to build: `polctl check` reports {}",
            plural(errors, "error")
        ))
        .with_help(
            "fix the findings above; a bundle is built only from a set that checks clean of errors",
        )
        .with_exit(Exit::Findings));
    }
    let json_findings: Vec<JsonFinding> = findings
        .iter()
        .map(|d| JsonFinding::from_diagnostic(d, &sources))
        .collect();
    let check = CheckSummary {
        errors,
        warnings: findings.len() - errors,
        digest: sha256_hex(&serde_json::to_vec(&json_findings).unwrap_or_default()),
    };

    // The tests, when the set has any.
    let test_files = if args.path.is_dir() {
        find_files_with_suffix(&args.path, ".test.toml")?
    } else {
        Vec::new()
    };
    let mut bundled: Vec<(String, String)> = sources
        .files()
        .map(|(_, f)| (f.path.clone(), f.text.clone()))
        .collect();
    let mut parsed = Vec::new();
    for (disk_path, relative) in &test_files {
        let text = read_text(disk_path)?;
        let file = parse_test_file(relative, &text).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("{}:{}: {}", disk_path.display(), e.line, e.message))
                .collect();
            CliError::new(lines.join("\nerror: "))
                .with_help("fix the test file; `polctl test` reports every problem in every file")
        })?;
        parsed.push(file);
        bundled.push((relative.clone(), text));
    }
    // The set's settings (runtime.md §3.5) travel in the bundle, checked against its schema.
    let project_file = args.path.join(polctl_lang::project::PROJECT_FILE);
    if args.path.is_dir() && project_file.is_file() {
        let text = read_text(&project_file)?;
        polctl_lang::project::ProjectConfig::parse(&text, &set.schema).map_err(|message| {
            CliError::new(format!("`{}`: {message}", project_file.display()))
                .with_help("see docs/runtime.md (operator context) for the file's sections")
        })?;
        bundled.push((polctl_lang::project::PROJECT_FILE.to_owned(), text));
    }
    let tests = if parsed.is_empty() {
        None
    } else {
        let outcome = run(
            &evaluator,
            &parsed,
            &RunOptions {
                filter: None,
                timeout_ms: args.timeout_ms,
            },
        );
        if outcome.failed() > 0 {
            print!("{}", report::human(&outcome, parsed.len(), &[], 0.0, None));
            return Err(CliError::new(format!(
                "refusing to build: {} failed",
                plural(outcome.failed(), "test")
            ))
            .with_help("fix the policy or the test; `polctl test` runs them alone")
            .with_exit(Exit::TestFailures));
        }
        let results: Vec<_> = outcome
            .results
            .iter()
            .map(|r| {
                json!({
                    "file": r.file, "line": r.line, "kind": r.kind.as_str(), "name": r.name,
                    "passed": r.outcome == CaseOutcome::Passed,
                })
            })
            .collect();
        Some(TestSummary {
            passed: outcome.passed(),
            failed: outcome.failed(),
            digest: sha256_hex(&serde_json::to_vec(&results).unwrap_or_default()),
        })
    };

    let name = match &args.name {
        Some(name) => name.clone(),
        None => directory_name(&args.path)?,
    };
    let bytes = build(&BuildInput {
        name: name.clone(),
        files: bundled,
        set: &set,
        check,
        tests,
        parent: args.parent.clone(),
    })
    .map_err(|e| CliError::new(e.to_string()))?;
    write_atomically(&args.output, &bytes)?;
    let bundle = polctl_bundle::open(&bytes).map_err(|e| CliError::new(e.to_string()))?;
    println!(
        "built `{}`: {} {}, {}, {}, {} ({})",
        args.output.display(),
        name,
        bundle.manifest.revision,
        plural(bundle.manifest.files.len(), "file"),
        plural(bundle.manifest.rules, "rule"),
        plural(bytes.len(), "byte"),
        sha256_hex(&bytes)
    );
    Ok(Exit::Success)
}

fn directory_name(path: &Path) -> Result<String, CliError> {
    let absolute = std::fs::canonicalize(path).map_err(|e| CliError::read(path, &e))?;
    absolute
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            CliError::new(format!("`{}` has no name", path.display()))
                .with_help("name the set with `--name`")
        })
}

/// Print a bundle's manifest and signatures (checking its integrity, not its signatures).
#[derive(Args)]
pub struct InspectArgs {
    /// The bundle file.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run_inspect(args: InspectArgs) -> Result<Exit, CliError> {
    let bytes = read_bytes(&args.file)?;
    let bundle = match polctl_bundle::open(&bytes) {
        Ok(bundle) => bundle,
        Err(error) => {
            return Err(CliError::new(format!("`{}`: {error}", args.file.display()))
                .with_help("the file is not an intact bundle: rebuild it with `polctl build`")
                .with_exit(Exit::Verification));
        }
    };
    let manifest = &bundle.manifest;
    match args.format {
        Format::Json => crate::output::print_document(
            &serde_json::to_string_pretty(&json!({
                "manifest": manifest,
                "signatures": bundle.container.signatures,
                "sha256": sha256_hex(&bytes),
            }))
            .unwrap_or_default(),
        ),
        Format::Human => {
            println!("bundle    {}", args.file.display());
            println!("sha256    {}", sha256_hex(&bytes));
            println!("name      {}", manifest.name);
            println!("revision  {}", manifest.revision);
            if let Some(parent) = &manifest.parent {
                println!("parent    {parent}");
            }
            println!(
                "polctl    {} (format {})",
                manifest.polctl_version, manifest.format
            );
            println!(
                "content   {}, {} in {}",
                plural(manifest.files.len(), "file"),
                plural(manifest.rules, "rule"),
                plural(manifest.policies, "policy")
            );
            println!(
                "check     {}, {}",
                plural(manifest.check.errors, "error"),
                plural(manifest.check.warnings, "warning")
            );
            match &manifest.tests {
                Some(tests) => {
                    println!("tests     {} passed, {} failed", tests.passed, tests.failed)
                }
                None => println!("tests     none"),
            }
            println!("files");
            for file in &manifest.files {
                println!("  {}  {:>8} bytes  {}", file.sha256, file.bytes, file.path);
            }
            if bundle.container.signatures.is_empty() {
                println!("signatures  none (sign with `polctl sign`)");
            } else {
                println!("signatures");
                for record in &bundle.container.signatures {
                    println!(
                        "  key {}  sequence {}  signed {}",
                        record["key_id"].as_str().unwrap_or("?"),
                        record["sequence"],
                        record["signed_at"].as_str().unwrap_or("?")
                    );
                }
            }
        }
    }
    Ok(Exit::Success)
}
