//! `polctl eval DIR --request FILE`: decides requests and explains the decisions.

use crate::exit::{CliError, Exit};
use crate::load::compile_or_report;
use crate::output::{ColorChoice, Format};
use crate::requests::read_request_input;
use clap::Args;
use polctl_lang::eval::{Evaluator, Outcome, RuleStatus};
use polctl_lang::ir::Effect;
use std::path::PathBuf;

/// Decide requests against a policy set and explain each decision.
///
/// FILE holds one JSON request or JSON Lines (one request per line); `-` reads stdin. Requests
/// may carry `counters` (limit rule id to the current count) and `approvals`. Exits 1 if a
/// request does not fit the schema, 2 if the set does not compile.
#[derive(Args)]
pub struct EvalArgs {
    /// The policy set: a directory of `.pol` files, one `.pol` file, or a bundle (`polctl build`).
    path: PathBuf,
    /// The request file (JSON or JSON Lines), or `-` for stdin.
    #[arg(long, short)]
    request: PathBuf,
    /// human: each decision with the rules that decided it and why others did not match;
    /// json: one decision per line (language.md §1), in input order.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

pub fn run(args: EvalArgs) -> Result<Exit, CliError> {
    let Some((sources, set)) =
        compile_or_report(&args.path, args.color, args.format == Format::Json)?
    else {
        return Ok(Exit::Findings);
    };
    let evaluator = Evaluator::new(set, sources.revision())
        .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
    let inputs = read_request_input(&args.request)?;
    let mut failed = 0;
    for (index, input) in inputs.iter().enumerate() {
        let decoded = input
            .json
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|json| evaluator.decode(json).map_err(|e| e.to_string()));
        match (decoded, args.format) {
            (Ok(request), Format::Json) => {
                let decision = evaluator.render(&request, &evaluator.decide(&request));
                // JSON Lines: every line is a document of its own.
                crate::output::print_document(
                    &serde_json::to_string(&decision).unwrap_or_default(),
                );
            }
            (Ok(request), Format::Human) => {
                print_explained(&evaluator, &request, index + 1, input.line)
            }
            (Err(message), Format::Json) => {
                failed += 1;
                crate::output::print_document(
                    &serde_json::json!({ "error": message, "line": input.line }).to_string(),
                );
            }
            (Err(message), Format::Human) => {
                failed += 1;
                println!(
                    "request {} (line {}): error: {message}\n",
                    index + 1,
                    input.line
                );
            }
        }
    }
    if failed > 0 {
        return Err(CliError::new(format!(
            "{failed} of {} requests do not fit the schema",
            inputs.len()
        ))
        .with_help("each error above names the field and what the schema expects there"));
    }
    Ok(Exit::Success)
}

fn print_explained(
    evaluator: &Evaluator,
    request: &polctl_lang::eval::Request,
    number: usize,
    line: usize,
) {
    let set = evaluator.set();
    let decision = evaluator.decide(request);
    let json = evaluator.render(request, &decision);
    let tool = &set.schema.tools[request.tool].name;
    println!(
        "request {number} (line {line}): {tool}: {}",
        json.decision.as_str()
    );
    match json.decision {
        Outcome::RequireApproval => println!("  waiting for: {}", json.approvers.join(", ")),
        Outcome::Deny if json.rules == ["default"] => {
            println!("  no rule allows this request (default deny)")
        }
        _ => {}
    }
    for (rule, reason) in json
        .rules
        .iter()
        .zip(json.reasons.iter().map(Some).chain(std::iter::repeat(None)))
    {
        if rule == "default" {
            continue;
        }
        match reason {
            Some(reason) if json.rules.len() == json.reasons.len() => {
                println!("  decided by {rule}: {reason}")
            }
            _ => println!("  decided by {rule}"),
        }
    }
    for obligation in &json.obligations {
        println!(
            "  obligation {} ({}): {}",
            obligation.name, obligation.rule, obligation.text
        );
    }
    let traces = evaluator.explain(request);
    if !traces.is_empty() {
        println!("  rules for `{tool}`:");
    }
    for trace in traces {
        let rule = &set.rules[trace.rule];
        let effect = rule.effect.keyword();
        let line = match trace.status {
            RuleStatus::OutOfScope => format!("- {} ({effect}): policy does not apply", rule.id),
            RuleStatus::WhenFailed(cond) => {
                format!("- {} ({effect}): `when` does not hold: {cond}", rule.id)
            }
            RuleStatus::UnlessHeld(cond) => {
                format!("- {} ({effect}): `unless` holds: {cond}", rule.id)
            }
            RuleStatus::Matched => {
                let granted = match &rule.effect {
                    Effect::RequireApproval { groups }
                        if groups.iter().all(|g| {
                            set.schema
                                .approvers
                                .iter()
                                .position(|a| a == g)
                                .is_some_and(|i| request.approvals[i])
                        }) =>
                    {
                        " (approved)"
                    }
                    _ => "",
                };
                format!("+ {} ({effect}): matches{granted}", rule.id)
            }
            RuleStatus::Limit { count, max } if count >= max => {
                format!("+ {} (limit): reached, {count} of {max} used", rule.id)
            }
            RuleStatus::Limit { count, max } => {
                format!("+ {} (limit): {count} of {max} used", rule.id)
            }
        };
        println!("    {line}");
    }
    println!();
}
