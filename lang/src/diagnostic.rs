//! The one diagnostic type of polctl and its two renderings: ariadne for humans, JSON for CI.
//!
//! Every error the front end finds (syntax, schema, type) becomes a [`Diagnostic`]. Messages follow
//! Cedar's style guide: lowercase, no final period, user names in backticks; anything longer goes in
//! `help`, which says how to fix the problem.

use crate::source::{SourceSet, Span};
use serde::Serialize;

/// What kind of problem a diagnostic reports; the `kind` field of the JSON shape (language.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticKind {
    /// The text does not parse.
    Syntax,
    /// The schema is malformed, or a policy names something the schema does not declare.
    Schema,
    /// Everything else the checker rejects: type mismatches, duplicates, ranges, regexes.
    Type,
    // The solver's findings (language.md §4).
    DeadRule,
    Shadowed,
    Conflict,
    Redundant,
    DeadLimit,
    ZeroLimit,
    ApprovalDeadEnd,
    LayerViolation,
    Vacuous,
    Unknown,
}

impl DiagnosticKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiagnosticKind::Syntax => "syntax",
            DiagnosticKind::Schema => "schema",
            DiagnosticKind::Type => "type",
            DiagnosticKind::DeadRule => "dead_rule",
            DiagnosticKind::Shadowed => "shadowed",
            DiagnosticKind::Conflict => "conflict",
            DiagnosticKind::Redundant => "redundant",
            DiagnosticKind::DeadLimit => "dead_limit",
            DiagnosticKind::ZeroLimit => "zero_limit",
            DiagnosticKind::ApprovalDeadEnd => "approval_dead_end",
            DiagnosticKind::LayerViolation => "layer_violation",
            DiagnosticKind::Vacuous => "vacuous",
            DiagnosticKind::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// A span with an optional message, drawn under the source excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code, documented in docs/language.md (`E1xx` syntax, `E2xx` schema, `E3xx` type,
    /// `W3xx` warnings).
    pub code: &'static str,
    pub kind: DiagnosticKind,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    /// The rule (`policy.rule`) the problem is in, when it is inside one.
    pub rule: Option<String>,
    /// Further rules a finding involves (the other side of a conflict, a redundant rule's twin).
    pub related_rules: Vec<String>,
    /// For `shadowed`, `layer_violation` and `dead_limit`: the rules that block this one.
    pub blocking: Vec<String>,
    /// A concrete request that shows the problem, replayed through the evaluator.
    pub witness: Option<serde_json::Value>,
}

impl Diagnostic {
    pub fn error(
        kind: DiagnosticKind,
        code: &'static str,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            kind,
            severity: Severity::Error,
            message: message.into(),
            primary: Label {
                span,
                message: None,
            },
            secondary: Vec::new(),
            help: None,
            rule: None,
            related_rules: Vec::new(),
            blocking: Vec::new(),
            witness: None,
        }
    }

    pub fn warning(
        kind: DiagnosticKind,
        code: &'static str,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(kind, code, span, message)
        }
    }

    /// Sets the message drawn under the primary span.
    pub fn with_label(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = Some(message.into());
        self
    }

    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            message: Some(message.into()),
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn in_rule(mut self, rule: Option<&str>) -> Diagnostic {
        self.rule = rule.map(str::to_owned);
        self
    }

    /// The order diagnostics are reported in: by file, then position, then code.
    pub fn sort_key(&self) -> (u32, u32, u32, &'static str) {
        (
            self.primary.span.file.0,
            self.primary.span.start,
            self.primary.span.end,
            self.code,
        )
    }
}

/// Sorts diagnostics into reporting order and drops exact duplicates (recovery can report the same
/// error twice).
pub fn sort_diagnostics(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diagnostics.dedup();
}

/// Renders one diagnostic for a terminal; `color` only when stdout is a terminal.
pub fn render_human(diagnostic: &Diagnostic, sources: &SourceSet, color: bool) -> String {
    use ariadne::{Color, Config, IndexType, Label as AriadneLabel, Report, ReportKind};

    let path_of = |span: Span| sources.display_path(span.file);
    let kind = match diagnostic.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let primary_color = match diagnostic.severity {
        Severity::Error => Color::Red,
        Severity::Warning => Color::Yellow,
    };
    let primary = diagnostic.primary.span;
    let mut primary_label = AriadneLabel::new((path_of(primary), primary.range()))
        .with_color(primary_color)
        .with_order(0);
    // ariadne underlines only labelled spans, so an unlabelled primary span repeats the message.
    primary_label = primary_label.with_message(
        diagnostic
            .primary
            .message
            .as_deref()
            .unwrap_or(&diagnostic.message),
    );
    let mut report = Report::build(kind, (path_of(primary), primary.range()))
        .with_config(
            Config::default()
                .with_color(color)
                .with_index_type(IndexType::Byte),
        )
        .with_code(diagnostic.code)
        .with_message(&diagnostic.message)
        .with_label(primary_label);
    for (order, label) in diagnostic.secondary.iter().enumerate() {
        if label.span.file != primary.file {
            // ariadne 0.6 mixes char and byte offsets when it heads a group of labels from a
            // second file (write.rs, `labels[0].char_span.start` read as a byte offset), which
            // panics on lines with multi-byte characters. Labels in other files are therefore
            // written as notes with their location.
            let file = sources.file(label.span.file);
            let (line, column) = file.line_column(label.span.start as usize);
            report = report.with_note(format!(
                "{}: {}:{line}:{column}",
                label.message.as_deref().unwrap_or("see"),
                sources.display_path(label.span.file)
            ));
            continue;
        }
        let mut secondary = AriadneLabel::new((path_of(label.span), label.span.range()))
            .with_color(Color::Blue)
            .with_order(order as i32 + 1);
        if let Some(message) = &label.message {
            secondary = secondary.with_message(message);
        }
        report = report.with_label(secondary);
    }
    if !diagnostic.blocking.is_empty() {
        report = report.with_note(format!("blocked by: {}", diagnostic.blocking.join(", ")));
    }
    if let Some(witness) = &diagnostic.witness {
        report = report.with_note(format!(
            "witness request:\n{}",
            serde_json::to_string_pretty(witness).unwrap_or_default()
        ));
    }
    if let Some(help) = &diagnostic.help {
        report = report.with_help(help);
    }
    let mut files: Vec<_> = std::iter::once(primary.file)
        .chain(diagnostic.secondary.iter().map(|l| l.span.file))
        .collect();
    files.sort();
    files.dedup();
    let cache = ariadne::sources(
        files
            .into_iter()
            .map(|id| (sources.display_path(id), sources.file(id).text.clone())),
    );
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; a failure here would be a bug in ariadne, so fall back to a
    // plain one-line rendering rather than losing the diagnostic.
    if report.finish().write(cache, &mut out).is_err() {
        return render_one_line(diagnostic, sources);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path:line:col: error[E301]: message`, for logs and editors.
pub fn render_one_line(diagnostic: &Diagnostic, sources: &SourceSet) -> String {
    let span = diagnostic.primary.span;
    let file = sources.file(span.file);
    let (line, column) = file.line_column(span.start as usize);
    let severity = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!(
        "{}:{line}:{column}: {severity}[{}]: {}",
        sources.display_path(span.file),
        diagnostic.code,
        diagnostic.message
    )
}

/// A span in the JSON shape of language.md §4, extended with end positions and the label.
#[derive(Debug, Clone, Serialize)]
pub struct JsonSpan {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl JsonSpan {
    pub fn new(span: Span, label: Option<String>, sources: &SourceSet) -> JsonSpan {
        let file = sources.file(span.file);
        let (line, column) = file.line_column(span.start as usize);
        let (end_line, end_column) = file.line_column(span.end as usize);
        JsonSpan {
            file: file.path.clone(),
            line,
            column,
            end_line,
            end_column,
            label,
        }
    }
}

/// One entry of the `findings` array of `polctl check --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct JsonFinding {
    pub kind: &'static str,
    pub code: &'static str,
    pub severity: Severity,
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocking: Vec<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    pub spans: Vec<JsonSpan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<serde_json::Value>,
}

impl JsonFinding {
    pub fn from_diagnostic(diagnostic: &Diagnostic, sources: &SourceSet) -> JsonFinding {
        let spans = std::iter::once(&diagnostic.primary)
            .chain(&diagnostic.secondary)
            .map(|label| JsonSpan::new(label.span, label.message.clone(), sources))
            .collect();
        JsonFinding {
            kind: diagnostic.kind.as_str(),
            code: diagnostic.code,
            severity: diagnostic.severity,
            rules: diagnostic
                .rule
                .iter()
                .chain(&diagnostic.related_rules)
                .cloned()
                .collect(),
            blocking: diagnostic.blocking.clone(),
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            spans,
            witness: diagnostic.witness.clone(),
        }
    }
}
