//! Name resolution, type checking and lowering to the IR.
//!
//! [`compile`] runs the whole front end over a [`SourceSet`]: every file is parsed (with
//! recovery), the schema is built, every policy and rule is checked against it, and when nothing
//! is wrong the result is a [`PolicySet`]. All problems are collected; none stops the others from
//! being found.

mod conditions;
mod policies;
pub(crate) mod regex;
mod schema;

use crate::ast;
use crate::diagnostic::{sort_diagnostics, Diagnostic, DiagnosticKind, Severity};
use crate::ir::{PolicySet, Schema};
use crate::parser::parse_file;
use crate::source::{FileId, SourceSet, Span};
use std::cell::Cell;
use std::collections::HashMap;

pub use self::regex::{compile_regex, executable_regex, validate_regex};

/// Stable diagnostic codes; docs/language.md has a section for each.
pub mod codes {
    pub const LEXICAL: &str = "E101";
    pub const SYNTAX: &str = "E102";
    pub const MISSING_SCHEMA: &str = "E201";
    pub const DUPLICATE_SCHEMA: &str = "E202";
    pub const UNKNOWN_TYPE: &str = "E203";
    pub const DUPLICATE_DECLARATION: &str = "E204";
    pub const INVALID_RANGE: &str = "E205";
    pub const UNKNOWN_TOOL_KIND: &str = "E206";
    pub const OPTIONAL_NOT_ALLOWED: &str = "E207";
    pub const UNSUPPORTED_LIST: &str = "E208";
    pub const KNOWN_NOT_ALLOWED: &str = "E209";
    pub const UNKNOWN_TOOL: &str = "E210";
    pub const UNKNOWN_ATTRIBUTE: &str = "E211";
    pub const UNKNOWN_ARGUMENT: &str = "E212";
    pub const UNKNOWN_APPROVER: &str = "E213";
    pub const UNKNOWN_ENUM_MEMBER: &str = "E214";
    pub const UNKNOWN_PATH: &str = "E215";
    pub const NOT_A_KNOWN_VALUE: &str = "E216";
    pub const OPERATOR_TYPE: &str = "E301";
    pub const VALUE_TYPE: &str = "E302";
    pub const ARGUMENT_NOT_ON_EVERY_TOOL: &str = "E303";
    pub const OPTIONAL_WITHOUT_HAS: &str = "E304";
    pub const HAS_ON_REQUIRED: &str = "E305";
    pub const DUPLICATE_POLICY: &str = "E306";
    pub const DUPLICATE_RULE: &str = "E307";
    pub const UNKNOWN_OVERRIDE: &str = "E308";
    pub const OUT_OF_RANGE: &str = "E309";
    pub const INVALID_REGEX: &str = "E310";
    pub const INVALID_NUMBER: &str = "E311";
    pub const CLAUSE_NOT_ALLOWED: &str = "E312";
    pub const DUPLICATE_CLAUSE: &str = "E313";
    pub const DUPLICATE_METADATA: &str = "E314";
    pub const UNKNOWN_NAME: &str = "E315";
    pub const DUPLICATE_LET: &str = "E316";
    pub const INVALID_LIMIT: &str = "E318";
    pub const INVALID_LIMIT_KEY: &str = "E319";
    pub const INVALID_FAILURE_MODE: &str = "E320";
    pub const INVALID_LET: &str = "E321";
    pub const UNUSED_LET: &str = "W301";
    pub const EMPTY_POLICY: &str = "W302";
    pub const OVERRIDES_NON_ALLOW: &str = "W303";
    pub const REDUNDANT_SCOPE: &str = "W304";

    // The analysis's findings (polctl-solver, docs/findings.md), with their severities in
    // [`finding`].
    pub const DEAD_RULE: &str = "A01";
    pub const SHADOWED: &str = "A02";
    pub const CONFLICT: &str = "A03";
    pub const REDUNDANT: &str = "A04";
    pub const DEAD_LIMIT: &str = "A05";
    pub const ZERO_LIMIT: &str = "A06";
    pub const APPROVAL_DEAD_END: &str = "A07";
    pub const LAYER_VIOLATION: &str = "A08";
    pub const VACUOUS: &str = "A09";
    pub const UNKNOWN: &str = "A10";

    /// The code and severity of a finding kind: the one table the analysis reads.
    pub fn finding(kind: crate::DiagnosticKind) -> (&'static str, crate::Severity) {
        use crate::{DiagnosticKind as K, Severity as S};
        match kind {
            K::DeadRule => (DEAD_RULE, S::Error),
            K::Shadowed => (SHADOWED, S::Error),
            K::Conflict => (CONFLICT, S::Warning),
            K::Redundant => (REDUNDANT, S::Warning),
            K::DeadLimit => (DEAD_LIMIT, S::Warning),
            K::ZeroLimit => (ZERO_LIMIT, S::Warning),
            K::ApprovalDeadEnd => (APPROVAL_DEAD_END, S::Error),
            K::LayerViolation => (LAYER_VIOLATION, S::Error),
            K::Vacuous => (VACUOUS, S::Warning),
            K::Unknown | K::Syntax | K::Schema | K::Type => (UNKNOWN, S::Warning),
        }
    }

    /// Every code, for tests that check each one is exercised and documented.
    pub const ALL: &[&str] = &[
        LEXICAL,
        SYNTAX,
        MISSING_SCHEMA,
        DUPLICATE_SCHEMA,
        UNKNOWN_TYPE,
        DUPLICATE_DECLARATION,
        INVALID_RANGE,
        UNKNOWN_TOOL_KIND,
        OPTIONAL_NOT_ALLOWED,
        UNSUPPORTED_LIST,
        KNOWN_NOT_ALLOWED,
        UNKNOWN_TOOL,
        UNKNOWN_ATTRIBUTE,
        UNKNOWN_ARGUMENT,
        UNKNOWN_APPROVER,
        UNKNOWN_ENUM_MEMBER,
        UNKNOWN_PATH,
        NOT_A_KNOWN_VALUE,
        OPERATOR_TYPE,
        VALUE_TYPE,
        ARGUMENT_NOT_ON_EVERY_TOOL,
        OPTIONAL_WITHOUT_HAS,
        HAS_ON_REQUIRED,
        DUPLICATE_POLICY,
        DUPLICATE_RULE,
        UNKNOWN_OVERRIDE,
        OUT_OF_RANGE,
        INVALID_REGEX,
        INVALID_NUMBER,
        CLAUSE_NOT_ALLOWED,
        DUPLICATE_CLAUSE,
        DUPLICATE_METADATA,
        UNKNOWN_NAME,
        DUPLICATE_LET,
        INVALID_LIMIT,
        INVALID_LIMIT_KEY,
        INVALID_FAILURE_MODE,
        INVALID_LET,
        UNUSED_LET,
        EMPTY_POLICY,
        OVERRIDES_NON_ALLOW,
        REDUNDANT_SCOPE,
    ];
}

/// Counts for the summary line, available even when the set does not compile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: usize,
    pub policies: usize,
    pub rules: usize,
}

/// Everything the front end found out about a policy set.
pub struct Compilation {
    /// Errors first by file and position, then warnings interleaved in the same order.
    pub diagnostics: Vec<Diagnostic>,
    /// The checked IR, present only when there is no error (warnings allowed).
    pub set: Option<PolicySet>,
    pub stats: Stats,
}

impl Compilation {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

struct LetEntry<'a> {
    decl: &'a ast::LetDecl,
    used: Cell<bool>,
}

/// State shared by the checking passes.
pub(crate) struct Checker<'a> {
    diagnostics: Vec<Diagnostic>,
    /// Set when the schema has syntax errors: unknown-name errors are then suppressed, because
    /// the name may well be in the part of the schema that did not parse.
    schema_incomplete: bool,
    schema: Schema,
    lets: HashMap<&'a str, LetEntry<'a>>,
    /// The rule being checked, attached to every diagnostic reported meanwhile.
    current_rule: Option<String>,
}

impl<'a> Checker<'a> {
    fn error(&mut self, diagnostic: Diagnostic) {
        let rule = self.current_rule.clone();
        self.diagnostics.push(diagnostic.in_rule(rule.as_deref()));
    }

    /// Reports a name the schema does not declare (suppressed while the schema is incomplete).
    fn unknown(&mut self, diagnostic: Diagnostic) {
        if !self.schema_incomplete {
            self.error(diagnostic);
        }
    }
}

/// Parses and checks a whole policy set.
pub fn compile(sources: &SourceSet) -> Compilation {
    compile_against(sources, &|_| false)
}

/// Compiles the set that would be live after a swap (`polctl check --against`): `is_live`
/// marks the files of the running set; the other files are the new set. The new set's
/// schema, named values and policies replace the live set's of the same name; the live set's
/// other policies stay, so conflicts with policies the author never saw are found.
pub fn compile_against(sources: &SourceSet, is_live: &dyn Fn(FileId) -> bool) -> Compilation {
    let mut diagnostics = Vec::new();
    let mut files: Vec<ast::File> = Vec::with_capacity(sources.len());
    let mut quiet = Vec::new();
    for (id, file) in sources.files() {
        let parsed = parse_file(id, &file.text);
        diagnostics.extend(parsed.diagnostics);
        quiet.extend(parsed.quiet);
        files.push(parsed.file);
    }
    replace_live_items(sources, &mut files, is_live);
    let stats = Stats {
        files: sources.len(),
        policies: files
            .iter()
            .flat_map(|f| &f.items)
            .filter(|i| matches!(i, ast::Item::Policy(_)))
            .count(),
        rules: files
            .iter()
            .flat_map(|f| &f.items)
            .filter_map(|i| match i {
                ast::Item::Policy(p) => Some(&p.members),
                _ => None,
            })
            .flatten()
            .filter(|m| matches!(m, ast::PolicyMember::Rule(_)))
            .count(),
    };

    let schemas: Vec<&ast::SchemaBlock> = files
        .iter()
        .flat_map(|f| &f.items)
        .filter_map(|i| match i {
            ast::Item::Schema(s) => Some(s),
            _ => None,
        })
        .collect();
    let schema_has_syntax_errors = diagnostics.iter().any(|d: &Diagnostic| {
        schemas.iter().any(|s| {
            s.span.file == d.primary.span.file
                && s.span.start <= d.primary.span.start
                && d.primary.span.start <= s.span.end
        })
    });
    let any_syntax_error = diagnostics
        .iter()
        .any(|d: &Diagnostic| d.kind == DiagnosticKind::Syntax);
    let mut checker = Checker {
        diagnostics,
        schema_incomplete: schema_has_syntax_errors,
        schema: Schema {
            agent: Vec::new(),
            context: Vec::new(),
            approvers: Vec::new(),
            tools: Vec::new(),
        },
        lets: HashMap::new(),
        current_rule: None,
    };

    match schemas.as_slice() {
        [] => {
            if !sources.is_empty() && !schema_has_syntax_errors && !any_syntax_error {
                let span = Span::new(crate::source::FileId(0), 0, 0);
                checker.diagnostics.push(
                    Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::MISSING_SCHEMA,
                        span,
                        "the policy set has no schema",
                    )
                    .with_help(
                        "add a `schema { .. }` block to one file, declaring the `agent` and \
                         `context` attributes, the `approvers` and every `tool`",
                    ),
                );
            }
            // Without a schema every name would be unknown; report only the syntax errors.
            checker.schema_incomplete = true;
        }
        [first, rest @ ..] => {
            for extra in rest {
                checker.diagnostics.push(
                    Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::DUPLICATE_SCHEMA,
                        Span::new(
                            extra.span.file,
                            extra.span.start as usize,
                            extra.span.start as usize + 6,
                        ),
                        "the policy set has more than one schema",
                    )
                    .with_secondary(
                        Span::new(
                            first.span.file,
                            first.span.start as usize,
                            first.span.start as usize + 6,
                        ),
                        "the first schema is here",
                    )
                    .with_help("a policy set has exactly one schema: merge the blocks into one"),
                );
            }
            checker.schema = checker.build_schema(first);
        }
    }

    checker.collect_lets(&files);
    let (policies, rules) = checker.check_policies(&files);
    checker.report_unused_lets();

    // Sorted by name, so that of two names with one value the first is shown, on every run.
    let mut lets: Vec<(&str, &LetEntry)> = checker.lets.iter().map(|(n, e)| (*n, e)).collect();
    lets.sort_by_key(|(name, _)| *name);
    let mut named_values = crate::display::Names::new();
    for (name, entry) in lets {
        if let Some(text) = crate::display::named_value_text(&entry.decl.value.kind) {
            named_values.entry(text).or_insert_with(|| name.to_owned());
        }
    }
    let mut diagnostics = checker.diagnostics;
    diagnostics.retain(|d| {
        d.kind == DiagnosticKind::Syntax
            || !quiet.iter().any(|q| {
                q.file == d.primary.span.file
                    && q.start <= d.primary.span.start
                    && d.primary.span.start < q.end
            })
    });
    sort_diagnostics(&mut diagnostics);
    let has_errors = diagnostics.iter().any(|d| d.severity == Severity::Error);
    let set = (!has_errors).then_some(PolicySet {
        schema: checker.schema,
        policies,
        rules,
        named_values,
    });
    Compilation {
        diagnostics,
        set,
        stats,
    }
}

/// Parses and type-checks a standalone condition against a compiled set's schema (a test file's
/// `[[property]] forall`). `args.X` may be read when every tool the condition can be about
/// declares it: the tools named by top-level `tool.name == ..`/`in [..]` tests, or all tools.
/// `let` names are not available here (they are inlined in the IR).
pub fn compile_condition(
    set: &PolicySet,
    source: &str,
) -> Result<crate::ir::Cond, Vec<Diagnostic>> {
    let file = crate::source::FileId(0);
    let (expr, diagnostics) = crate::parser::parse_condition(file, source);
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    let Some(expr) = expr else {
        return Err(Vec::new());
    };
    let tools = conditions::tools_named(&expr, &set.schema);
    let mut checker = Checker {
        diagnostics: Vec::new(),
        schema_incomplete: false,
        schema: set.schema.clone(),
        lets: HashMap::new(),
        current_rule: None,
    };
    let env = conditions::Env {
        tools: &tools,
        known_present: conditions::has_facts(&expr),
    };
    let cond = checker.lower_condition(&expr, &env);
    match cond {
        Some(cond) if checker.diagnostics.is_empty() => Ok(cond),
        _ => Err(checker.diagnostics),
    }
}

impl<'a> Checker<'a> {
    fn collect_lets(&mut self, files: &'a [ast::File]) {
        for decl in files.iter().flat_map(|f| &f.items).filter_map(|i| match i {
            ast::Item::Let(decl) => Some(decl),
            _ => None,
        }) {
            if let Some(first) = self.lets.get(decl.name.text.as_str()) {
                let first_span = first.decl.name.span;
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::DUPLICATE_LET,
                        decl.name.span,
                        format!("`{}` is defined twice", decl.name.text),
                    )
                    .with_secondary(first_span, "first defined here")
                    .with_help("named values are global to the policy set: rename one of them"),
                );
                continue;
            }
            let nested = match &decl.value.kind {
                ast::ValueKind::List(items) => items
                    .iter()
                    .find(|item| matches!(item.kind, ast::ValueKind::List(_))),
                _ => None,
            };
            if let Some(nested) = nested {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::INVALID_LET,
                        nested.span,
                        "a named value cannot hold nested lists",
                    )
                    .with_help("a `let` holds one literal or a flat list of literals"),
                );
                continue;
            }
            self.lets.insert(
                decl.name.text.as_str(),
                LetEntry {
                    decl,
                    used: Cell::new(false),
                },
            );
        }
    }

    fn report_unused_lets(&mut self) {
        let mut unused: Vec<&ast::LetDecl> = self
            .lets
            .values()
            .filter(|entry| !entry.used.get())
            .map(|entry| entry.decl)
            .collect();
        unused.sort_by_key(|decl| (decl.span.file, decl.span.start));
        let warnings: Vec<Diagnostic> = unused
            .into_iter()
            .map(|decl| {
                Diagnostic::warning(
                    DiagnosticKind::Type,
                    codes::UNUSED_LET,
                    decl.name.span,
                    format!("`{}` is never used", decl.name.text),
                )
                .with_help("remove it, or use it in a condition")
            })
            .collect();
        self.diagnostics.extend(warnings);
    }
}

/// Drops from the live files what the new files redefine: the schema (if the new files have
/// one), and named values and policies with a name the new files use.
fn replace_live_items(
    sources: &SourceSet,
    files: &mut [ast::File],
    is_live: &dyn Fn(FileId) -> bool,
) {
    let ids: Vec<FileId> = sources.files().map(|(id, _)| id).collect();
    if !ids.iter().any(|&id| is_live(id)) {
        return;
    }
    let mut new_policies = std::collections::HashSet::new();
    let mut new_lets = std::collections::HashSet::new();
    let mut new_schema = false;
    for (file, &id) in files.iter().zip(&ids) {
        if is_live(id) {
            continue;
        }
        for item in &file.items {
            match item {
                ast::Item::Policy(p) => {
                    new_policies.insert(p.name.text());
                }
                ast::Item::Let(l) => {
                    new_lets.insert(l.name.text.clone());
                }
                ast::Item::Schema(_) => new_schema = true,
                ast::Item::Error(_) => {}
            }
        }
    }
    for (file, &id) in files.iter_mut().zip(&ids) {
        if !is_live(id) {
            continue;
        }
        file.items.retain(|item| match item {
            ast::Item::Schema(_) => !new_schema,
            ast::Item::Policy(p) => !new_policies.contains(&p.name.text()),
            ast::Item::Let(l) => !new_lets.contains(&l.name.text),
            ast::Item::Error(_) => true,
        });
    }
}
