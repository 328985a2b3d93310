//! Reports for CI systems: SARIF 2.1.0 (GitHub code scanning and other SARIF consumers) for
//! `check` and `diff`, and Markdown for a pull-request comment from `diff`.
//!
//! Locations are written as the paths a person gave on the command line (`policies/a.pol`),
//! which in CI are relative to the repository root, the base code scanning resolves against.

use polctl_bundle::textdiff::FileDiff;
use polctl_lang::diagnostic::{Diagnostic, Severity};
use polctl_lang::SourceSet;
use polctl_solver::diff::{Change, ChangeKind, RuleChanges, SemanticDiff};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://example.invalid/polctl/docs/findings.md";

/// A location in a SARIF result: a file (as given on the command line) and a 1-based region.
pub struct SarifLocation {
    pub uri: String,
    pub start_line: usize,
    pub start_column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl SarifLocation {
    fn json(&self, message: Option<&str>) -> Json {
        let mut location = json!({
            "physicalLocation": {
                "artifactLocation": { "uri": self.uri, "uriBaseId": "%SRCROOT%" },
                "region": {
                    "startLine": self.start_line,
                    "startColumn": self.start_column,
                    "endLine": self.end_line,
                    "endColumn": self.end_column,
                }
            }
        });
        if let Some(message) = message {
            location["message"] = json!({ "text": message });
        }
        location
    }

    fn of_span(span: polctl_lang::Span, sources: &SourceSet) -> SarifLocation {
        let file = sources.file(span.file);
        let (start_line, start_column) = file.line_column(span.start as usize);
        let (end_line, end_column) = file.line_column(span.end as usize);
        SarifLocation {
            uri: sources.display_path(span.file),
            start_line,
            start_column,
            end_line,
            end_column,
        }
    }
}

/// One SARIF document with one run of polctl.
fn document(rules: Vec<Json>, results: Vec<Json>) -> Json {
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "polctl",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// `polctl check --format sarif`: every diagnostic and finding, one result each, with its
/// code as the rule, its span as the location, the other spans as related locations, and
/// the help and witness in the message.
pub fn check_sarif(diagnostics: &[Diagnostic], sources: &SourceSet) -> Json {
    let mut rules: BTreeMap<&str, Json> = BTreeMap::new();
    let mut results = Vec::new();
    for diagnostic in diagnostics {
        rules.entry(diagnostic.code).or_insert_with(|| {
            json!({
                "id": diagnostic.code,
                "name": diagnostic.kind.as_str(),
                "shortDescription": { "text": format!("polctl {} ({})", diagnostic.kind.as_str(), diagnostic.code) },
                "helpUri": INFORMATION_URI,
                "defaultConfiguration": { "level": level(diagnostic.severity) },
            })
        });
        let mut text = diagnostic.message.clone();
        if let Some(help) = &diagnostic.help {
            text.push_str(&format!("\nhelp: {help}"));
        }
        if let Some(witness) = &diagnostic.witness {
            text.push_str(&format!("\nwitness request: {witness}"));
        }
        let related: Vec<Json> = diagnostic
            .secondary
            .iter()
            .enumerate()
            .map(|(id, label)| {
                let mut location =
                    SarifLocation::of_span(label.span, sources).json(label.message.as_deref());
                location["id"] = json!(id);
                location
            })
            .collect();
        let mut result = json!({
            "ruleId": diagnostic.code,
            "level": level(diagnostic.severity),
            "message": { "text": text },
            "locations": [SarifLocation::of_span(diagnostic.primary.span, sources).json(None)],
            "partialFingerprints": {
                // Stable across unrelated edits: the finding's kind, rule and message.
                "polctlFinding/v1": format!(
                    "{}:{}:{}",
                    diagnostic.code,
                    diagnostic.rule.as_deref().unwrap_or(""),
                    diagnostic.message
                ),
            },
        });
        if !related.is_empty() {
            result["relatedLocations"] = json!(related);
        }
        if let Some(rule) = &diagnostic.rule {
            result["properties"] =
                json!({ "rule": rule, "related_rules": diagnostic.related_rules });
        }
        results.push(result);
    }
    document(rules.into_values().collect(), results)
}

fn change_kind_level(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Widen => "warning",
        ChangeKind::Approval => "warning",
        ChangeKind::Narrow => "note",
    }
}

fn rules_text(ids: &[String]) -> String {
    if ids.is_empty() {
        "default".to_owned()
    } else {
        ids.join(", ")
    }
}

/// `polctl diff --format sarif`: one result per class of requests whose decision changes,
/// located at the new version's deciding rule (the old version's when the new one decides by
/// default), and one per item that was not compared.
pub fn diff_sarif(semantic: &SemanticDiff, locate: &dyn Fn(&str) -> Option<SarifLocation>) -> Json {
    let rules = vec![
        json!({ "id": "widen", "shortDescription": { "text": "requests the old version did not allow are allowed" }, "defaultConfiguration": { "level": "warning" } }),
        json!({ "id": "narrow", "shortDescription": { "text": "requests the old version allowed are no longer allowed" }, "defaultConfiguration": { "level": "note" } }),
        json!({ "id": "approval", "shortDescription": { "text": "who must approve changes" }, "defaultConfiguration": { "level": "warning" } }),
        json!({ "id": "not_compared", "shortDescription": { "text": "requests the diff could not compare" }, "defaultConfiguration": { "level": "warning" } }),
    ];
    let mut results = Vec::new();
    for change in &semantic.changes {
        let location = change
            .new_rules
            .iter()
            .chain(&change.old_rules)
            .find_map(|id| locate(id));
        let mut result = json!({
            "ruleId": change.kind.as_str(),
            "level": change_kind_level(change.kind),
            "message": { "text": change_sentence(change) },
            "properties": { "tool": change.tool, "witness": change.witness },
        });
        if let Some(location) = location {
            result["locations"] = json!([location.json(None)]);
        }
        results.push(result);
    }
    let not_compared = semantic
        .skipped
        .iter()
        .map(|(tool, reason)| format!("`{tool}` was not compared: {reason}"))
        .chain(
            semantic
                .one_sided
                .iter()
                .map(|r| format!("not compared: {r}")),
        )
        .chain(semantic.unknown.iter().map(|u| {
            format!(
                "`{}` {}: the solver gave up ({})",
                u.tool,
                u.change(),
                u.reason
            )
        }));
    for text in not_compared {
        results.push(json!({
            "ruleId": "not_compared",
            "level": "warning",
            "message": { "text": text },
        }));
    }
    document(rules, results)
}

/// "widen `send_email`: deny → allow (default → acme.mail.internal)": a class of requests in one
/// line, as every output format names it.
pub fn change_headline(change: &Change) -> String {
    format!(
        "{} `{}`: {} → {} ({} → {})",
        change.kind.as_str(),
        change.tool,
        change.from.as_str(),
        change.to.as_str(),
        rules_text(&change.old_rules),
        rules_text(&change.new_rules)
    )
}

/// The headline, the approvers' change and the witness.
fn change_sentence(change: &Change) -> String {
    let mut text = change_headline(change);
    if let Some((before, after)) = &change.approvers {
        text.push_str(&format!(
            "; approvers [{}] → [{}]",
            before.join(", "),
            after.join(", ")
        ));
    }
    text.push_str(&format!("\nwitness request: {}", change.witness));
    text
}

/// What the Markdown report needs besides the semantic diff.
pub struct DiffSummary<'a> {
    pub old: &'a str,
    pub new: &'a str,
    pub files: &'a [FileDiff],
    pub rules: &'a RuleChanges,
    pub without_effect: &'a [String],
}

/// Escapes text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// `polctl diff --format markdown`: a pull-request comment. The verdict first (how many
/// requests classes widen, narrow or change approvers), then a table of the classes, each
/// witness in a collapsed block, then what was not compared and the changed files and rules.
pub fn diff_markdown(semantic: &SemanticDiff, summary: &DiffSummary) -> String {
    let count = |kind: ChangeKind| semantic.changes.iter().filter(|c| c.kind == kind).count();
    let (widen, narrow, approval) = (
        count(ChangeKind::Widen),
        count(ChangeKind::Narrow),
        count(ChangeKind::Approval),
    );
    let mut out = format!("## polctl diff: `{}` → `{}`\n\n", summary.old, summary.new);
    let complete =
        semantic.skipped.is_empty() && semantic.unknown.is_empty() && semantic.one_sided.is_empty();
    if semantic.changes.is_empty() {
        out.push_str(if complete {
            "**No semantic change**: every request gets the same decision.\n"
        } else {
            "**No semantic change found** in what was compared (see *Not compared*).\n"
        });
    } else {
        let marker = if widen > 0 { "⚠️ " } else { "" };
        out.push_str(&format!(
            "{marker}**{widen} widening**, **{narrow} narrowing**, **{approval} approval** \
             change{} in the decisions of requests.\n",
            if widen + narrow + approval == 1 {
                ""
            } else {
                "s"
            }
        ));
    }
    if !semantic.changes.is_empty() {
        out.push_str("\n| change | tool | decision | old rules → new rules |\n|---|---|---|---|\n");
        for change in &semantic.changes {
            out.push_str(&format!(
                "| {} | `{}` | {} → {} | {} → {} |\n",
                change.kind.as_str(),
                cell(&change.tool),
                change.from.as_str(),
                change.to.as_str(),
                cell(&rules_text(&change.old_rules)),
                cell(&rules_text(&change.new_rules))
            ));
        }
        out.push_str("\n<details><summary>Witness requests</summary>\n\n");
        for change in &semantic.changes {
            out.push_str(&format!(
                "{} `{}` {} → {}:\n\n```json\n{}\n```\n\n",
                change.kind.as_str(),
                change.tool,
                change.from.as_str(),
                change.to.as_str(),
                serde_json::to_string_pretty(&change.witness).unwrap_or_default()
            ));
        }
        out.push_str("</details>\n");
    }
    if !complete || !semantic.truncated.is_empty() {
        out.push_str("\n### Not compared\n\n");
        for (tool, reason) in &semantic.skipped {
            out.push_str(&format!("- `{tool}`: {reason}\n"));
        }
        for requests in &semantic.one_sided {
            out.push_str(&format!("- {requests}\n"));
        }
        for unknown in &semantic.unknown {
            out.push_str(&format!(
                "- `{}` {}: the solver gave up ({})\n",
                unknown.tool,
                unknown.change(),
                unknown.reason
            ));
        }
        for truncated in &semantic.truncated {
            out.push_str(&format!(
                "- `{}` {}: more classes than listed\n",
                truncated.tool,
                truncated.change()
            ));
        }
    }
    for tool in summary.without_effect {
        out.push_str(&format!(
            "\n`{tool}`: its rules changed, but every request gets the same decision.\n"
        ));
    }
    let rules = summary.rules;
    if !summary.files.is_empty()
        || !rules.added.is_empty()
        || !rules.removed.is_empty()
        || !rules.changed.is_empty()
    {
        out.push_str("\n<details><summary>Files and rules</summary>\n\n");
        for file in summary.files {
            out.push_str(&format!("- {} `{}`\n", file.status.as_str(), file.path));
        }
        for (what, ids) in [
            ("added", &rules.added),
            ("removed", &rules.removed),
            ("changed", &rules.changed),
        ] {
            for id in ids {
                out.push_str(&format!("- rule {what} `{id}`\n"));
            }
        }
        out.push_str("\n</details>\n");
    }
    out
}
