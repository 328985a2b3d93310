//! Test reports: human (like `cargo test`), JSON and JUnit XML.

use crate::runner::{Kind, Outcome, RunReport};
use polctl_lang::ir::PolicySet;
use polctl_lang::SourceSet;
use serde::Serialize;
use std::fmt::Write;

/// Rule coverage: which rules decided at least one case.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub covered: usize,
    pub total: usize,
    pub percent: f64,
    /// `(rule id, file:line)` of the rules no case exercised.
    pub uncovered: Vec<UncoveredRule>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UncoveredRule {
    pub rule: String,
    pub location: String,
}

pub fn coverage(report: &RunReport, set: &PolicySet, sources: &SourceSet) -> Coverage {
    let total = set.rules.len();
    let uncovered: Vec<UncoveredRule> = set
        .rules
        .iter()
        .enumerate()
        .filter(|(i, _)| !report.covered.contains(i))
        .map(|(_, rule)| {
            let file = sources.file(rule.name_span.file);
            let (line, _) = file.line_column(rule.name_span.start as usize);
            UncoveredRule {
                rule: rule.id.clone(),
                location: format!("{}:{line}", sources.display_path(rule.name_span.file)),
            }
        })
        .collect();
    let covered = total - uncovered.len();
    Coverage {
        covered,
        total,
        percent: if total == 0 {
            100.0
        } else {
            covered as f64 * 100.0 / total as f64
        },
        uncovered,
    }
}

fn title(result: &crate::runner::CaseResult) -> String {
    format!("{}:{} {}", result.file, result.line, result.name)
}

pub fn human(
    report: &RunReport,
    files: usize,
    malformed: &[String],
    seconds: f64,
    coverage: Option<&Coverage>,
) -> String {
    let mut out = String::new();
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    let _ = writeln!(
        out,
        "running {} from {}",
        plural(report.results.len(), "test"),
        plural(files, "file")
    );
    for result in &report.results {
        let status = match &result.outcome {
            Outcome::Passed if result.kind == Kind::Adversarial => {
                format!("ok ({} variants)", result.variants)
            }
            Outcome::Passed => "ok".to_owned(),
            Outcome::Failed(_) => "FAILED".to_owned(),
            Outcome::NotYetChecked(_) => "not yet checked".to_owned(),
        };
        let _ = writeln!(out, "test {} ... {status}", title(result));
    }
    let failures: Vec<_> = report
        .results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(message) => Some((r, message)),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nfailures:\n");
        for (result, message) in &failures {
            let _ = writeln!(out, "\n---- {} ----\n{message}", title(result));
        }
        out.push_str("\nfailures:\n");
        for (result, _) in &failures {
            let _ = writeln!(out, "    {}", title(result));
        }
    }
    // "ok" only when every file ran and every test passed.
    let status = if failures.is_empty() && malformed.is_empty() {
        "ok"
    } else {
        "FAILED"
    };
    let not_run = if malformed.is_empty() {
        String::new()
    } else {
        format!("; {} not run (malformed)", plural(malformed.len(), "file"))
    };
    let _ = writeln!(
        out,
        "\ntest result: {status}. {} passed; {} failed; {} not yet checked{not_run}; finished in {seconds:.2}s",
        report.passed(),
        report.failed(),
        report.not_yet_checked()
    );
    if let Some(coverage) = coverage {
        let _ = writeln!(
            out,
            "coverage: {} of {} rules decided at least one case ({:.1}%)",
            coverage.covered, coverage.total, coverage.percent
        );
        for rule in &coverage.uncovered {
            let _ = writeln!(out, "  not covered: {} ({})", rule.rule, rule.location);
        }
    }
    out
}

#[derive(Serialize)]
struct JsonResult<'r> {
    file: &'r str,
    line: usize,
    kind: &'static str,
    name: &'r str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'r polctl_lang::eval::DecisionJson>,
    #[serde(skip_serializing_if = "is_zero")]
    variants: usize,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    failing_variants: &'r [crate::runner::FailingVariant],
    seconds: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct JsonSummary {
    passed: usize,
    failed: usize,
    not_yet_checked: usize,
    seconds: f64,
}

#[derive(Serialize)]
struct JsonReport<'r> {
    results: Vec<JsonResult<'r>>,
    summary: JsonSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<&'r Coverage>,
}

pub fn json(report: &RunReport, seconds: f64, coverage: Option<&Coverage>) -> String {
    let results = report
        .results
        .iter()
        .map(|r| {
            let (status, message) = match &r.outcome {
                Outcome::Passed => ("passed", None),
                Outcome::Failed(m) => ("failed", Some(m.as_str())),
                Outcome::NotYetChecked(m) => ("not_yet_checked", Some(m.as_str())),
            };
            JsonResult {
                file: &r.file,
                line: r.line,
                kind: r.kind.as_str(),
                name: &r.name,
                status,
                message,
                decision: r.decision.as_ref(),
                variants: r.variants,
                failing_variants: &r.failing_variants,
                seconds: (r.seconds * 1e6).round() / 1e6,
            }
        })
        .collect();
    let document = JsonReport {
        results,
        summary: JsonSummary {
            passed: report.passed(),
            failed: report.failed(),
            not_yet_checked: report.not_yet_checked(),
            seconds: (seconds * 1000.0).round() / 1000.0,
        },
        coverage,
    };
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` per test file; properties not yet checked are `<skipped>`.
pub fn junit(report: &RunReport, seconds: f64) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"polctl\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
        report.results.len(),
        report.failed(),
        report.not_yet_checked()
    );
    let mut files: Vec<&str> = report.results.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let results: Vec<_> = report.results.iter().filter(|r| r.file == file).collect();
        let failures = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .count();
        let skipped = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::NotYetChecked(_)))
            .count();
        let time: f64 = results.iter().map(|r| r.seconds).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.6}\">",
            xml(file),
            results.len()
        );
        for result in results {
            let name = xml(&format!("{} (line {})", result.name, result.line));
            let time = format!("{:.6}", result.seconds);
            // Failing adversarial variants as data: one property each, the variant as JSON.
            let properties: String = if result.failing_variants.is_empty() {
                String::new()
            } else {
                let mut block = String::from("\n      <properties>");
                for variant in &result.failing_variants {
                    let _ = write!(
                        block,
                        "\n        <property name=\"failing_variant\" value=\"{}\"/>",
                        xml(&serde_json::to_string(variant).unwrap_or_default())
                    );
                }
                block.push_str("\n      </properties>");
                block
            };
            match &result.outcome {
                Outcome::Passed => {
                    let _ = writeln!(
                        out,
                        "    <testcase classname=\"{}\" name=\"{name}\" time=\"{time}\"/>",
                        xml(file)
                    );
                }
                Outcome::Failed(message) => {
                    let first = message.lines().next().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "    <testcase classname=\"{}\" name=\"{name}\" time=\"{time}\">{properties}\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(file),
                        xml(first),
                        xml(message)
                    );
                }
                Outcome::NotYetChecked(message) => {
                    let _ = writeln!(
                        out,
                        "    <testcase classname=\"{}\" name=\"{name}\" time=\"{time}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(file),
                        xml(message)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
