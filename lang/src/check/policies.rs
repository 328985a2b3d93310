//! Policies and rules: metadata, scopes, rule forms, clauses, actions, limits and `overrides`.

use super::conditions::{has_facts, Env};
use super::{codes, Checker};
use crate::ast::{self, ActionsKind, Clause, PolicyMember, RuleHead, ScopeExpr};
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::ir::{
    Actions, Effect, FailureMode, Limit, Obligation, Path, Policy, Rule, Scope, ScopeTerm,
    ToolKind, Type,
};
use crate::source::Span;
use crate::suggest::help_did_you_mean;
use std::collections::HashMap;

/// A rule's `overrides` list, resolved once every rule id is known.
struct PendingOverrides {
    rule: usize,
    policy: String,
    names: Vec<ast::DottedName>,
}

impl<'a> Checker<'a> {
    pub(super) fn check_policies(&mut self, files: &'a [ast::File]) -> (Vec<Policy>, Vec<Rule>) {
        let mut policies = Vec::new();
        let mut rules = Vec::new();
        let mut policy_spans: HashMap<String, Span> = HashMap::new();
        let mut pending = Vec::new();
        for block in files.iter().flat_map(|f| &f.items).filter_map(|i| match i {
            ast::Item::Policy(p) => Some(p),
            _ => None,
        }) {
            let name = block.name.text();
            if let Some(first) = policy_spans.get(&name) {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::DUPLICATE_POLICY,
                        block.name.span,
                        format!("policy `{name}` is defined twice"),
                    )
                    .with_secondary(*first, "first defined here")
                    .with_help("policy names are unique across the whole set: rename one of them"),
                );
                continue;
            }
            policy_spans.insert(name.clone(), block.name.span);
            let policy = self.check_policy(block, policies.len(), &mut rules, &mut pending);
            policies.push(policy);
        }
        self.resolve_overrides(&mut rules, pending);
        (policies, rules)
    }

    fn check_policy(
        &mut self,
        block: &ast::PolicyBlock,
        index: usize,
        rules: &mut Vec<Rule>,
        pending: &mut Vec<PendingOverrides>,
    ) -> Policy {
        let name = block.name.text();
        let mut policy = Policy {
            name: name.clone(),
            owner: None,
            description: None,
            scope: Scope::All,
            on_failure: FailureMode::Deny,
            rules: Vec::new(),
            span: block.name.span,
        };
        let mut metadata_spans: HashMap<&'static str, Span> = HashMap::new();
        let mut rule_spans: HashMap<String, Span> = HashMap::new();
        for member in &block.members {
            let metadata = match member {
                PolicyMember::Owner(..) => Some("owner"),
                PolicyMember::Description(..) => Some("description"),
                PolicyMember::AppliesTo(..) => Some("applies to"),
                PolicyMember::OnFailure(..) => Some("on failure"),
                PolicyMember::Rule(_) | PolicyMember::Error(_) => None,
            };
            if let Some(keyword) = metadata {
                if let Some(first) = metadata_spans.insert(keyword, member.span()) {
                    self.error(
                        Diagnostic::error(
                            DiagnosticKind::Type,
                            codes::DUPLICATE_METADATA,
                            member.span(),
                            format!("policy `{name}` has `{keyword}` twice"),
                        )
                        .with_secondary(first, "first given here")
                        .with_help(if keyword == "applies to" {
                            "join scopes with `or`: `applies to tenant \"a\" or tenant \"b\"`"
                        } else {
                            "keep one of them"
                        }),
                    );
                    continue;
                }
            }
            match member {
                PolicyMember::Owner(text, _) => policy.owner = Some(text.value.clone()),
                PolicyMember::Description(text, _) => policy.description = Some(text.value.clone()),
                PolicyMember::AppliesTo(scopes, _) => policy.scope = self.check_scope(scopes),
                PolicyMember::OnFailure(mode, _) => {
                    policy.on_failure = match mode.text.as_str() {
                        "deny" => FailureMode::Deny,
                        "allow" => FailureMode::Allow,
                        other => {
                            self.error(
                                Diagnostic::error(
                                    DiagnosticKind::Type,
                                    codes::INVALID_FAILURE_MODE,
                                    mode.span,
                                    format!("unknown failure mode `{other}`"),
                                )
                                .with_help(
                                    "write `on failure deny` (fail closed, the default) or \
                                     `on failure allow` (fail open, with audit)",
                                ),
                            );
                            FailureMode::Deny
                        }
                    }
                }
                PolicyMember::Rule(rule) => {
                    if let Some(first) = rule_spans.get(&rule.name.text) {
                        self.error(
                            Diagnostic::error(
                                DiagnosticKind::Type,
                                codes::DUPLICATE_RULE,
                                rule.name.span,
                                format!(
                                    "rule `{}` is defined twice in policy `{name}`",
                                    rule.name.text
                                ),
                            )
                            .with_secondary(*first, "first defined here")
                            .with_help("rule ids `<policy>.<rule>` must be unique: rename one"),
                        );
                        continue;
                    }
                    rule_spans.insert(rule.name.text.clone(), rule.name.span);
                    let id = format!("{name}.{}", rule.name.text);
                    self.current_rule = Some(id.clone());
                    let checked = self.check_rule(rule, id, index);
                    self.current_rule = None;
                    if let Some((checked, overrides)) = checked {
                        if !overrides.is_empty() {
                            pending.push(PendingOverrides {
                                rule: rules.len(),
                                policy: name.clone(),
                                names: overrides,
                            });
                        }
                        policy.rules.push(rules.len());
                        rules.push(checked);
                    }
                }
                PolicyMember::Error(_) => {}
            }
        }
        let has_broken_member = block
            .members
            .iter()
            .any(|m| matches!(m, PolicyMember::Error(_)));
        if rule_spans.is_empty() && !has_broken_member {
            self.diagnostics.push(
                Diagnostic::warning(
                    DiagnosticKind::Type,
                    codes::EMPTY_POLICY,
                    block.name.span,
                    format!("policy `{name}` has no rules"),
                )
                .with_help("add a rule, or delete the policy"),
            );
        }
        policy
    }

    fn check_scope(&mut self, scopes: &[ScopeExpr]) -> Scope {
        let mut terms = Vec::new();
        let mut all = None;
        for scope in scopes {
            match scope {
                ScopeExpr::All(span) => all = Some(*span),
                ScopeExpr::Both(parts, _) => {
                    // A conjunction is usable when every part is; `all` in it adds nothing.
                    let mut usable = true;
                    let mut simple = Vec::new();
                    for part in parts {
                        match part {
                            ScopeExpr::All(span) => self.redundant_all(
                                *span,
                                "`all` in an `and` adds nothing",
                                "remove `all` from the conjunction",
                            ),
                            part => match self.check_scope_term(part) {
                                Some(term) => simple.push(term),
                                None => usable = false,
                            },
                        }
                    }
                    match simple.len() {
                        _ if !usable => {}
                        0 => all = Some(scope.span()),
                        1 => terms.extend(simple),
                        _ => terms.push(ScopeTerm::Both(simple)),
                    }
                }
                term => terms.extend(self.check_scope_term(term)),
            }
        }
        match all {
            Some(span) if scopes.len() > 1 => {
                self.redundant_all(
                    span,
                    "`all` already covers every request",
                    "write `applies to all` alone, or remove `all` to narrow the scope",
                );
                Scope::All
            }
            Some(_) => Scope::All,
            None => Scope::Any(terms),
        }
    }

    fn redundant_all(&mut self, span: Span, message: &str, help: &str) {
        self.diagnostics.push(
            Diagnostic::warning(DiagnosticKind::Type, codes::REDUNDANT_SCOPE, span, message)
                .with_help(help),
        );
    }

    /// One `tenant`, `agent` or `role` scope, checked against the schema.
    fn check_scope_term(&mut self, scope: &ScopeExpr) -> Option<ScopeTerm> {
        match scope {
            ScopeExpr::Tenant(value, span) => self
                .check_scope_attribute("tenant", &value.value, *span)
                .then(|| ScopeTerm::Tenant(value.value.clone())),
            ScopeExpr::Agent(value, span) => self
                .check_scope_attribute("id", &value.value, *span)
                .then(|| ScopeTerm::Agent(value.value.clone())),
            ScopeExpr::Role(member, span) => self
                .check_scope_attribute("role", &member.text, *span)
                .then(|| ScopeTerm::Role(member.text.clone())),
            // Not produced inside a conjunction by the parser (`and` binds tighter than `or`).
            ScopeExpr::All(_) | ScopeExpr::Both(..) => None,
        }
    }

    /// Checks that the schema declares the agent attribute a scope reads, and that the value fits
    /// its type. Returns whether the scope term is usable.
    fn check_scope_attribute(&mut self, attribute: &str, value: &str, span: Span) -> bool {
        let keyword = match attribute {
            "id" => "agent",
            other => other,
        };
        let Some(declared) = self.schema.agent.iter().find(|a| a.name == attribute) else {
            self.unknown(
                Diagnostic::error(
                    DiagnosticKind::Schema,
                    codes::UNKNOWN_ATTRIBUTE,
                    span,
                    format!("`applies to {keyword}` needs the agent attribute `{attribute}`"),
                )
                .with_help(format!(
                    "declare `{attribute}` in the schema's `agent {{ .. }}` block"
                )),
            );
            return false;
        };
        match &declared.ty {
            Type::Enum { members } if !members.iter().any(|m| m == value) => {
                let mut diagnostic = Diagnostic::error(
                    DiagnosticKind::Schema,
                    codes::UNKNOWN_ENUM_MEMBER,
                    span,
                    format!("`{value}` is not a member of `agent.{attribute}`"),
                )
                .with_secondary(declared.span, "declared here");
                diagnostic.help = help_did_you_mean(value, members.iter().map(String::as_str))
                    .or_else(|| Some(format!("the members are {}", list_names(members))));
                self.unknown(diagnostic);
                false
            }
            Type::String => match &declared.known {
                Some(known) if !known.iter().any(|k| k == value) => {
                    let mut diagnostic = Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::NOT_A_KNOWN_VALUE,
                        span,
                        format!("\"{value}\" is not a known value of `agent.{attribute}`"),
                    )
                    .with_secondary(declared.span, "known values declared here");
                    diagnostic.help = help_did_you_mean(value, known.iter().map(String::as_str))
                        .or_else(|| {
                            Some(format!(
                                "add \"{value}\" to the schema's `known {{ .. }}` if it is new"
                            ))
                        });
                    self.unknown(diagnostic);
                    false
                }
                _ => true,
            },
            Type::Enum { .. } => true,
            _ => {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::VALUE_TYPE,
                        span,
                        format!(
                            "`agent.{attribute}` must be a string or an enum to scope a policy"
                        ),
                    )
                    .with_secondary(declared.span, "declared here"),
                );
                false
            }
        }
    }

    /// Checks one rule and lowers it; `None` when it is too broken to lower. Also returns its
    /// `overrides` names, resolved later.
    fn check_rule(
        &mut self,
        rule: &ast::RuleDecl,
        id: String,
        policy: usize,
    ) -> Option<(Rule, Vec<ast::DottedName>)> {
        let actions_ast = rule.head.actions();
        let (actions, tools) = self.check_actions(actions_ast)?;

        let mut when = None;
        let mut unless = None;
        let mut because = None;
        let mut obligations: Vec<Obligation> = Vec::new();
        let mut obligation_spans: HashMap<&str, Span> = HashMap::new();
        let mut overrides = Vec::new();
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        for clause in &rule.clauses {
            let keyword = clause.keyword();
            let allowed = match clause {
                Clause::With { .. } => matches!(rule.head, RuleHead::Allow(_)),
                Clause::Overrides(..) => matches!(rule.head, RuleHead::Deny(_)),
                _ => true,
            };
            if !allowed {
                let help = match clause {
                    Clause::With { .. } => {
                        "obligations (`with NAME \"text\"`) are returned with an allow, so only \
                         `allow` rules can carry them"
                    }
                    _ => {
                        "`overrides` acknowledges a conflict with an allow rule, so only `deny` \
                          rules can carry it"
                    }
                };
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::CLAUSE_NOT_ALLOWED,
                        clause.span(),
                        format!(
                            "`{keyword}` is not allowed on {} `{}` rule",
                            if matches!(rule.head, RuleHead::Allow(_)) {
                                "an"
                            } else {
                                "a"
                            },
                            rule.head.keyword()
                        ),
                    )
                    .with_help(help),
                );
                continue;
            }
            if !matches!(clause, Clause::With { .. }) {
                if let Some(first) = seen.insert(keyword, clause.span()) {
                    self.error(
                        Diagnostic::error(
                            DiagnosticKind::Type,
                            codes::DUPLICATE_CLAUSE,
                            clause.span(),
                            format!("rule has `{keyword}` twice"),
                        )
                        .with_secondary(first, "first given here")
                        .with_help(match clause {
                            Clause::When(..) | Clause::Unless(..) => {
                                "join the conditions with `and` or `or` in one clause"
                            }
                            _ => "keep one of them",
                        }),
                    );
                    continue;
                }
            }
            match clause {
                Clause::When(..) | Clause::Unless(..) => {}
                Clause::With { name, text, .. } => {
                    if let Some(first) = obligation_spans.insert(name.text.as_str(), name.span) {
                        self.error(
                            Diagnostic::error(
                                DiagnosticKind::Type,
                                codes::DUPLICATE_CLAUSE,
                                name.span,
                                format!("obligation `{}` is given twice", name.text),
                            )
                            .with_secondary(first, "first given here"),
                        );
                    } else {
                        obligations.push(Obligation {
                            name: name.text.clone(),
                            text: text.value.clone(),
                        });
                    }
                }
                Clause::Because(text, _) => because = Some(text.value.clone()),
                Clause::Overrides(names, _) => overrides = names.clone(),
            }
        }

        // A `has` in the top-level conjunction of `when` guards the whole rule.
        let when_expr = rule.clauses.iter().find_map(|c| match c {
            Clause::When(expr, _) => Some(expr),
            _ => None,
        });
        let unless_expr = rule.clauses.iter().find_map(|c| match c {
            Clause::Unless(expr, _) => Some(expr),
            _ => None,
        });
        let guarded = when_expr.map(has_facts).unwrap_or_default();
        let env = Env {
            tools: &tools,
            known_present: guarded,
        };
        if let Some(expr) = when_expr {
            when = self.lower_condition(expr, &env);
        }
        if let Some(expr) = unless_expr {
            unless = self.lower_condition(expr, &env);
        }

        let effect = match &rule.head {
            RuleHead::Allow(_) => Effect::Allow { obligations },
            RuleHead::Deny(_) => Effect::Deny {
                overrides: Vec::new(),
            },
            RuleHead::RequireApproval { groups, .. } => Effect::RequireApproval {
                groups: self.check_groups(groups),
            },
            RuleHead::Limit {
                count, window, key, ..
            } => Effect::Limit(self.check_limit(count, window, key.as_ref(), &env)?),
        };
        Some((
            Rule {
                id,
                policy,
                effect,
                actions,
                tools,
                when,
                unless,
                because,
                span: rule.span,
                name_span: rule.name.span,
            },
            overrides,
        ))
    }

    fn check_actions(&mut self, actions: &ast::Actions) -> Option<(Actions, Vec<usize>)> {
        match &actions.kind {
            ActionsKind::AnyTool => {
                Some((Actions::AnyTool, (0..self.schema.tools.len()).collect()))
            }
            ActionsKind::AnyKind(kind) => {
                let Some(parsed) = ToolKind::parse(&kind.text) else {
                    let mut diagnostic = Diagnostic::error(
                        DiagnosticKind::Schema,
                        codes::UNKNOWN_TOOL_KIND,
                        kind.span,
                        format!("unknown tool kind `{}`", kind.text),
                    )
                    .with_label("expected `read`, `write`, `send` or `execute`");
                    diagnostic.help =
                        help_did_you_mean(&kind.text, ToolKind::ALL.iter().map(|k| k.as_str()));
                    self.error(diagnostic);
                    return None;
                };
                let tools = self
                    .schema
                    .tools
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.kind == parsed)
                    .map(|(i, _)| i)
                    .collect();
                Some((Actions::AnyKind(parsed), tools))
            }
            ActionsKind::Tool(name) => {
                let index = self.resolve_tool(name)?;
                Some((Actions::Tools(vec![name.text.clone()]), vec![index]))
            }
            ActionsKind::List(names) => {
                let mut tools = Vec::new();
                let mut ok = true;
                for name in names {
                    match self.resolve_tool(name) {
                        Some(index) => tools.push(index),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                tools.sort_unstable();
                tools.dedup();
                Some((
                    Actions::Tools(names.iter().map(|n| n.text.clone()).collect()),
                    tools,
                ))
            }
        }
    }

    pub(super) fn resolve_tool(&mut self, name: &ast::Name) -> Option<usize> {
        if let Some(index) = self.schema.tool_index(&name.text) {
            return Some(index);
        }
        let mut diagnostic = Diagnostic::error(
            DiagnosticKind::Schema,
            codes::UNKNOWN_TOOL,
            name.span,
            format!("unknown tool `{}`", name.text),
        )
        .with_label("not declared in the schema");
        diagnostic.help = help_did_you_mean(
            &name.text,
            self.schema.tools.iter().map(|t| t.name.as_str()),
        )
        .or_else(|| {
            Some(format!(
                "declare it in the schema: `tool {}: read {{ .. }}`",
                name.text
            ))
        });
        self.unknown(diagnostic);
        None
    }

    fn check_groups(&mut self, groups: &[ast::Name]) -> Vec<String> {
        let mut resolved = Vec::new();
        for group in groups {
            if self.schema.approvers.contains(&group.text) {
                if !resolved.contains(&group.text) {
                    resolved.push(group.text.clone());
                }
                continue;
            }
            let mut diagnostic = Diagnostic::error(
                DiagnosticKind::Schema,
                codes::UNKNOWN_APPROVER,
                group.span,
                format!("unknown approver group `{}`", group.text),
            );
            diagnostic.help = help_did_you_mean(
                &group.text,
                self.schema.approvers.iter().map(String::as_str),
            )
            .or_else(|| {
                Some(format!(
                    "declare it in the schema: `approvers {{ {} }}`",
                    group.text
                ))
            });
            self.unknown(diagnostic);
        }
        resolved
    }

    fn check_limit(
        &mut self,
        count: &ast::NumberLit,
        window: &ast::DurationLit,
        key: Option<&ast::Path>,
        env: &Env<'_>,
    ) -> Option<Limit> {
        // Counters are signed 64-bit in every store (SQLite, Redis), so a limit and a window
        // in seconds must fit in an i64.
        let all_digits = !count.text.is_empty() && count.text.bytes().all(|b| b.is_ascii_digit());
        let max = match count.text.parse::<u64>() {
            Ok(max) if !count.is_decimal && max <= i64::MAX as u64 => Some(max),
            _ if all_digits => {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::INVALID_LIMIT,
                        count.span,
                        format!("`{}` is too large for a limit", count.text),
                    )
                    .with_help(format!(
                        "a limit is at most {} actions per window; write a smaller number",
                        i64::MAX
                    )),
                );
                None
            }
            _ => {
                self.error(
                    Diagnostic::error(
                        DiagnosticKind::Type,
                        codes::INVALID_LIMIT,
                        count.span,
                        format!("a limit is a whole number of actions, not `{}`", count.text),
                    )
                    .with_help("write e.g. `limit send_email to 100 per 1d`"),
                );
                None
            }
        };
        let window_seconds = parse_duration(&window.text).filter(|s| *s <= i64::MAX as u64);
        let digits = window
            .text
            .trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if window_seconds.is_none() && digits.bytes().any(|b| b != b'0') {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::INVALID_LIMIT,
                    window.span,
                    format!("`{}` is too large for a window", window.text),
                )
                .with_help(
                    "a window fits in a signed 64-bit count of seconds; write e.g. `1d` or `30d`",
                ),
            );
        } else if window_seconds.is_none() {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::INVALID_LIMIT,
                    window.span,
                    format!("`{}` is not a usable window", window.text),
                )
                .with_help("a window is longer than zero: `30s`, `15m`, `1h`, `1d`"),
            );
        }
        let key = match key {
            None => None,
            Some(path) => Some(self.check_limit_key(path, env)?),
        };
        Some(Limit {
            max: max?,
            window_seconds: window_seconds?,
            key,
        })
    }

    fn check_limit_key(&mut self, path: &ast::Path, env: &Env<'_>) -> Option<Path> {
        let resolved = self.resolve_path(path, env)?;
        if resolved.optional || matches!(resolved.ty, super::conditions::Ty::StringList) {
            self.error(
                Diagnostic::error(
                    DiagnosticKind::Type,
                    codes::INVALID_LIMIT_KEY,
                    path.span,
                    format!("`{}` cannot key a limit", path.text()),
                )
                .with_help(
                    "a limit key is a value every request has: `agent.id`, `agent.tenant`, \
                     `session`, or a required scalar argument",
                ),
            );
            return None;
        }
        Some(resolved.path)
    }

    fn resolve_overrides(&mut self, rules: &mut [Rule], pending: Vec<PendingOverrides>) {
        let ids: HashMap<String, usize> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        for entry in pending {
            self.current_rule = Some(rules[entry.rule].id.clone());
            let mut resolved = Vec::new();
            for name in &entry.names {
                let text = name.text();
                let full = if name.parts.len() == 1 {
                    format!("{}.{text}", entry.policy)
                } else {
                    text.clone()
                };
                match ids.get(&full) {
                    Some(&target) => {
                        if !matches!(
                            rules[target].effect,
                            Effect::Allow { .. } | Effect::RequireApproval { .. }
                        ) {
                            self.diagnostics.push(
                                Diagnostic::warning(
                                    DiagnosticKind::Type,
                                    codes::OVERRIDES_NON_ALLOW,
                                    name.span,
                                    format!(
                                        "`{full}` is a `{}` rule; `overrides` names the allow or \
                                         approval rules a deny takes precedence over",
                                        rules[target].effect.keyword()
                                    ),
                                )
                                .with_secondary(rules[target].name_span, "defined here")
                                .in_rule(self.current_rule.as_deref()),
                            );
                        }
                        resolved.push(full);
                    }
                    None => {
                        let mut diagnostic = Diagnostic::error(
                            DiagnosticKind::Type,
                            codes::UNKNOWN_OVERRIDE,
                            name.span,
                            format!("`overrides` names no rule: `{text}`"),
                        );
                        diagnostic.help = help_did_you_mean(&full, ids.keys().map(String::as_str))
                            .or_else(|| {
                                Some(
                                    "name a rule by its id `<policy>.<rule>`, or by its name \
                                         alone within the same policy"
                                        .to_owned(),
                                )
                            });
                        self.error(diagnostic);
                    }
                }
            }
            if let Effect::Deny { overrides } = &mut rules[entry.rule].effect {
                *overrides = resolved;
            }
        }
        self.current_rule = None;
    }
}

/// `30s`, `15m`, `1h`, `1d` to seconds; `None` for a zero or overflowing window.
pub fn parse_duration(text: &str) -> Option<u64> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let count: u64 = digits.parse().ok()?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    count.checked_mul(unit_seconds).filter(|s| *s > 0)
}

pub(super) fn list_names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
