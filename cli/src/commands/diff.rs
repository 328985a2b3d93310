//! `polctl diff OLD NEW`: what a change does, as text and as meaning.
//!
//! Each side is a directory, a bundle, or `git:REV[:PATH]`. The text diff lists the files and
//! rules that changed; the semantic diff (the solver) lists every class of requests whose
//! decision changes, with a witness confirmed against both versions.

use crate::exit::{CliError, Exit};
use crate::load::{
    bundle_sources, find_files_with_suffix, find_policy_files, is_bundle, read_text,
};
use crate::output::{plural, ColorChoice};
use crate::reports::{diff_markdown, diff_sarif, DiffSummary, SarifLocation};
use clap::{Args, ValueEnum};
use polctl_bundle::textdiff::{text_diff, FileDiff};
use polctl_lang::diagnostic::render_human;
use polctl_lang::eval::Evaluator;
use polctl_lang::ir::PolicySet;
use polctl_lang::{compile, SourceSet};
use polctl_solver::diff::{rule_changes, semantic_diff, Change, ChangeKind, RuleChanges};
use serde_json::json;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DiffFormat {
    /// The text diff, the rule changes and every class with its witness, for people.
    #[default]
    Human,
    /// One JSON document, for CI.
    Json,
    /// SARIF 2.1.0: each class at the rule that decides it, for code scanning.
    Sarif,
    /// A pull-request comment: the verdict, a table of classes, witnesses folded.
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any request that was not allowed becomes allowed.
    Widen,
    /// Any request that was allowed is no longer.
    Narrow,
    /// Any semantic change.
    Any,
}

/// Compare two versions of a policy set: changed files and rules, and every class of requests
/// whose decision changes (widen, narrow, approval), each with a witness request.
///
/// Exits 2 when --fail-on names a kind of change that exists (the "no new access" gate for
/// pull requests: `polctl diff git:origin/main . --fail-on widen`), and also when such a
/// change could hide in what was not compared (a tool skipped, a pair the solver gave up on,
/// requests only one version accepts) unless --allow-incomplete.
#[derive(Args)]
pub struct DiffArgs {
    /// The old version: a directory, a bundle, or `git:REV[:PATH]`.
    old: String,
    /// The new version: a directory, a bundle, or `git:REV[:PATH]`.
    new: String,
    /// Exit 2 when a change of this kind exists, or could hide in what was not compared.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// With --fail-on, gate only on what was compared: pass when a change of the kind could
    /// only hide in a tool that was skipped, a pair the solver gave up on, or requests only
    /// one version accepts.
    #[arg(long, requires = "fail_on")]
    allow_incomplete: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: DiffFormat,
    /// Time limit of one solver query.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u32,
    /// When to colour the text diff.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

/// A side's files (`.pol` and `*.test.toml`), by path within the set.
pub(crate) fn load_side(spec: &str) -> Result<Vec<(String, String)>, CliError> {
    if let Some(rest) = spec.strip_prefix("git:") {
        return load_git(rest);
    }
    let path = Path::new(spec);
    if is_bundle(path) {
        return bundle_sources(path);
    }
    let found = find_policy_files(path)?;
    let mut files = Vec::new();
    for (disk, relative) in &found.files {
        files.push((relative.clone(), read_text(disk)?));
    }
    if path.is_dir() {
        for (disk, relative) in find_files_with_suffix(path, ".test.toml")? {
            files.push((relative, read_text(&disk)?));
        }
    }
    Ok(files)
}

fn git(args: &[&str]) -> Result<Vec<u8>, CliError> {
    let output = Command::new("git").args(args).output().map_err(|e| {
        CliError::new(format!("cannot run git: {e}"))
            .with_help("install git, or compare directories or bundles instead of `git:` sides")
    })?;
    if !output.status.success() {
        return Err(CliError::new(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
        .with_help(
            "a side `git:REV:PATH` reads PATH at revision REV of the repository in the working \
             directory; check REV with `git rev-parse REV` and PATH with `git ls-tree REV`",
        ));
    }
    Ok(output.stdout)
}

/// `REV[:PATH]`: the set's files at a revision of the repository in the working directory.
fn load_git(spec: &str) -> Result<Vec<(String, String)>, CliError> {
    let (rev, path) = spec.split_once(':').unwrap_or((spec, ""));
    let prefix = path.trim_matches('/');
    let listing = git(&["ls-tree", "-r", "--name-only", "--full-tree", rev])?;
    let mut files = Vec::new();
    for name in String::from_utf8_lossy(&listing).lines() {
        let relative = if prefix.is_empty() {
            name
        } else {
            match name.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                Some(relative) => relative,
                None => continue,
            }
        };
        if !(relative.ends_with(".pol") || relative.ends_with(".test.toml")) {
            continue;
        }
        let text = git(&["show", &format!("{rev}:{name}")])?;
        let text = String::from_utf8(text)
            .map_err(|_| CliError::new(format!("`{rev}:{name}` is not UTF-8")))?;
        files.push((relative.to_owned(), text));
    }
    if !files.iter().any(|(p, _)| p.ends_with(".pol")) {
        return Err(CliError::new(format!("no `.pol` files in `git:{spec}`"))
            .with_help("write `git:REV:PATH` with PATH the set's directory in the repository"));
    }
    Ok(files)
}

pub(crate) fn compile_side(
    spec: &str,
    files: &[(String, String)],
) -> Result<Option<(Evaluator, SourceSet)>, CliError> {
    let sources = SourceSet::from_files(files.iter().filter(|(p, _)| p.ends_with(".pol")).cloned());
    let compilation = compile(&sources);
    match compilation.set {
        Some(set) => Evaluator::new(set, sources.revision())
            .map(|evaluator| Some((evaluator, sources)))
            .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message))),
        None => {
            for diagnostic in &compilation.diagnostics {
                println!("{}", render_human(diagnostic, &sources, false));
            }
            Err(CliError::new(format!("`{spec}` does not compile"))
                .with_help(format!(
                    "run `polctl check {spec}` to see its errors and their fixes"
                ))
                .with_exit(Exit::Findings))
        }
    }
}

pub fn run(args: DiffArgs) -> Result<Exit, CliError> {
    let (old_files, new_files) = (load_side(&args.old)?, load_side(&args.new)?);
    let (Some((old, _)), Some((new, new_sources))) = (
        compile_side(&args.old, &old_files)?,
        compile_side(&args.new, &new_files)?,
    ) else {
        return Ok(Exit::Findings);
    };
    let files = text_diff(&old_files, &new_files);
    let rules = rule_changes(old.set(), new.set());
    let semantic =
        semantic_diff(&old, &new, args.timeout_ms).map_err(|e| CliError::new(e.to_string()))?;
    let unchanged = tools_changed_without_effect(old.set(), new.set(), &rules, &semantic);
    match args.format {
        DiffFormat::Sarif => {
            // A directory side's files are shown under the path given; a bundle's or a git
            // revision's under their path in the set.
            let root = Path::new(&args.new)
                .is_dir()
                .then(|| args.new.trim_end_matches('/').to_owned());
            let locate = |id: &str| -> Option<SarifLocation> {
                let rule = new.set().rules.iter().find(|r| r.id == id)?;
                let file = new_sources.file(rule.name_span.file);
                let (start_line, start_column) = file.line_column(rule.name_span.start as usize);
                let (end_line, end_column) = file.line_column(rule.name_span.end as usize);
                let uri = match &root {
                    Some(root) if root != "." => format!("{root}/{}", file.path),
                    _ => file.path.clone(),
                };
                Some(SarifLocation {
                    uri,
                    start_line,
                    start_column,
                    end_line,
                    end_column,
                })
            };
            crate::output::print_document(
                &serde_json::to_string_pretty(&diff_sarif(&semantic, &locate)).unwrap_or_default(),
            );
        }
        DiffFormat::Markdown => {
            let summary = DiffSummary {
                old: &args.old,
                new: &args.new,
                files: &files,
                rules: &rules,
                without_effect: &unchanged,
            };
            crate::output::print_document(diff_markdown(&semantic, &summary).trim_end());
        }
        DiffFormat::Json => {
            let report = json!({
                "files": files.iter().map(|f| json!({"path": f.path, "status": f.status, "diff": f.diff})).collect::<Vec<_>>(),
                "rules": rules,
                "changes": semantic.changes,
                "skipped": semantic.skipped.iter().map(|(t, r)| json!({"tool": t, "reason": r})).collect::<Vec<_>>(),
                "one_sided": semantic.one_sided,
                "unknown": semantic.unknown.iter().map(|u| json!({"tool": u.tool, "change": u.change(), "reason": u.reason})).collect::<Vec<_>>(),
                "truncated": semantic.truncated.iter().map(|u| json!({"tool": u.tool, "change": u.change()})).collect::<Vec<_>>(),
                "rules_changed_without_effect": unchanged,
            });
            crate::output::print_document(
                &serde_json::to_string_pretty(&report).unwrap_or_default(),
            );
        }
        DiffFormat::Human => {
            print_human(&files, &rules, &semantic, args.color.enabled_for_stdout());
            for tool in &unchanged {
                println!(
                    "no change: `{tool}`: its rules changed, but every request gets the same decision"
                );
            }
        }
    }
    let Some(wanted) = args.fail_on else {
        return Ok(Exit::Success);
    };
    let counts = |kind: ChangeKind| match wanted {
        FailOn::Widen => kind == ChangeKind::Widen,
        FailOn::Narrow => kind == ChangeKind::Narrow,
        FailOn::Any => true,
    };
    let failing_changes = semantic.changes.iter().filter(|c| counts(c.kind)).count();
    let failing = failing_changes > 0;
    if failing {
        let (what, flag) = match wanted {
            FailOn::Widen => ("widening change", "widen"),
            FailOn::Narrow => ("narrowing change", "narrow"),
            FailOn::Any => ("change", "any"),
        };
        return Err(CliError::new(format!(
            "{} (--fail-on {flag})",
            plural(failing_changes, what)
        ))
        .with_help("review the changes listed above; each has a witness request")
        .with_exit(Exit::Findings));
    }
    // What the gate cannot vouch for: a pair's kind is known from its decisions, a skipped
    // tool's or a one-sided request's is not.
    let unknown_pairs = semantic
        .unknown
        .iter()
        .filter(|u| counts(ChangeKind::of(u.from, u.to)));
    let incomplete = unknown_pairs.count() + semantic.skipped.len() + semantic.one_sided.len();
    if !failing && incomplete > 0 && !args.allow_incomplete {
        return Err(CliError::new(format!(
            "--fail-on cannot vouch for what was not compared ({} listed above)",
            plural(incomplete, "item")
        ))
        .with_help("pass --allow-incomplete to gate only on what was compared")
        .with_exit(Exit::Findings));
    }
    Ok(Exit::Success)
}

/// Tools some added, removed or changed rule names, compared to the end, whose requests all
/// keep their decision: a refactoring, said so rather than left to be inferred from silence.
fn tools_changed_without_effect(
    old: &PolicySet,
    new: &PolicySet,
    rules: &RuleChanges,
    semantic: &polctl_solver::diff::SemanticDiff,
) -> Vec<String> {
    let mut tools: Vec<String> = Vec::new();
    let ids: Vec<&String> = rules
        .added
        .iter()
        .chain(&rules.removed)
        .chain(&rules.changed)
        .collect();
    for set in [old, new] {
        for rule in set.rules.iter().filter(|r| ids.contains(&&r.id)) {
            tools.extend(rule.tools.iter().map(|&t| set.schema.tools[t].name.clone()));
        }
    }
    tools.sort();
    tools.dedup();
    tools.retain(|tool| {
        !semantic.changes.iter().any(|c| &c.tool == tool)
            && !semantic.skipped.iter().any(|(t, _)| t == tool)
            && !semantic.unknown.iter().any(|u| &u.tool == tool)
            && !semantic.truncated.iter().any(|u| &u.tool == tool)
    });
    tools
}

fn print_human(
    files: &[FileDiff],
    rules: &RuleChanges,
    semantic: &polctl_solver::diff::SemanticDiff,
    color: bool,
) {
    let paint = |line: &str| -> String {
        if !color {
            return line.to_owned();
        }
        match line.as_bytes().first() {
            Some(b'+') if !line.starts_with("+++") => format!("\x1b[32m{line}\x1b[0m"),
            Some(b'-') if !line.starts_with("---") => format!("\x1b[31m{line}\x1b[0m"),
            Some(b'@') => format!("\x1b[36m{line}\x1b[0m"),
            _ => line.to_owned(),
        }
    };
    if files.is_empty() {
        println!("files: no changes");
    }
    for file in files {
        println!("{} {}", file.status.as_str(), file.path);
        for line in file.diff.lines() {
            println!("{}", paint(line));
        }
    }
    let list = |what: &str, ids: &[String]| {
        for id in ids {
            println!("rule {what} {id}");
        }
    };
    list("added  ", &rules.added);
    list("removed", &rules.removed);
    list("changed", &rules.changed);
    println!();
    if semantic.changes.is_empty() {
        if semantic.skipped.is_empty()
            && semantic.unknown.is_empty()
            && semantic.one_sided.is_empty()
        {
            println!("semantic changes: none (every request gets the same decision)");
        } else {
            // Not a proof: some tools were not compared, or not to the end.
            println!("semantic changes: none found (see below for what was not compared)");
        }
    }
    for change in &semantic.changes {
        print_change(change);
    }
    for (tool, reason) in &semantic.skipped {
        println!("not compared: `{tool}`: {reason}");
    }
    for requests in &semantic.one_sided {
        println!("not compared: {requests}");
    }
    for unknown in &semantic.unknown {
        let (tool, pair, reason) = (&unknown.tool, unknown.change(), &unknown.reason);
        println!("unknown: `{tool}` {pair}: the solver gave up ({reason})");
    }
    for truncated in &semantic.truncated {
        let (tool, pair) = (&truncated.tool, truncated.change());
        println!(
            "more: `{tool}` {pair} has more classes than listed (the listing stops after {} from the solver)",
            polctl_solver::diff::MAX_CLASSES
        );
    }
    let mut tools: Vec<&String> = semantic.changes.iter().map(|c| &c.tool).collect();
    tools.dedup();
    for tool in tools {
        let count = |kind: ChangeKind| {
            semantic
                .changes
                .iter()
                .filter(|c| &c.tool == tool && c.kind == kind)
                .count()
        };
        println!(
            "summary `{tool}`: {} widen, {} narrow, {} approval",
            count(ChangeKind::Widen),
            count(ChangeKind::Narrow),
            count(ChangeKind::Approval)
        );
    }
}

fn print_change(change: &Change) {
    println!("{}", crate::reports::change_headline(change));
    if let Some((before, after)) = &change.approvers {
        println!(
            "  approvers: [{}] → [{}]",
            before.join(", "),
            after.join(", ")
        );
    }
    println!(
        "  witness: {}",
        serde_json::to_string(&change.witness).unwrap_or_default()
    );
}
