//! `polctl eval DIR --request FILE`: decides requests and explains the decisions.

use crate::exit::{CliError, Exit};
use crate::load::{compile_or_report, read_text};
use crate::output::{ColorChoice, Format};
use clap::Args;
use polctl_lang::eval::{Evaluator, Outcome, RuleStatus};
use polctl_lang::ir::Effect;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

/// Decide requests against a policy set and explain each decision.
///
/// FILE holds one JSON request or JSON Lines (one request per line); `-` reads stdin. Requests
/// may carry `counters` (limit rule id to the current count) and `approvals`. Exits 1 if a
/// request does not fit the schema, 2 if the set does not compile.
#[derive(Args)]
pub struct EvalArgs {
    /// The policy set: a directory of `.pol` files, or one `.pol` file.
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

/// One request read from the input, with the line it starts on.
struct Input {
    line: usize,
    json: Result<Value, String>,
}

/// One JSON document (possibly spread over lines) is one request; anything else is JSON Lines,
/// each non-empty line a request on its own, so output lines align with input lines.
fn read_requests(text: &str) -> Vec<Input> {
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        let line = text.len() - text.trim_start().len();
        return vec![Input {
            line: text[..line].matches('\n').count() + 1,
            json: Ok(json),
        }];
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| Input {
            line: index + 1,
            json: serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}")),
        })
        .collect()
}

pub fn run(args: EvalArgs) -> Result<Exit, CliError> {
    let Some((sources, set)) = compile_or_report(&args.path, args.color)? else {
        return Ok(Exit::Findings);
    };
    let evaluator = Evaluator::new(set, sources.revision())
        .map_err(|e| CliError::new(format!("rule `{}`: {}", e.rule, e.message)))?;
    let text = if args.request.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::new(format!("cannot read stdin: {e}")))?;
        text
    } else {
        read_text(&args.request)?
    };
    let inputs = read_requests(&text);
    if inputs.is_empty() {
        return Err(
            CliError::new(format!("`{}` holds no request", args.request.display()))
                .with_help("write one JSON request, or one request per line (JSON Lines)"),
        );
    }
    let mut failed = 0;
    for (index, input) in inputs.iter().enumerate() {
        let decoded = input
            .json
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|json| evaluator.decode(json).map_err(|e| e.to_string()));
        match (decoded, args.format) {
            (Ok(request), Format::Json) => {
                let decision = evaluator.render(&evaluator.decide(&request));
                println!("{}", serde_json::to_string(&decision).unwrap_or_default());
            }
            (Ok(request), Format::Human) => {
                print_explained(&evaluator, &request, index + 1, input.line)
            }
            (Err(message), Format::Json) => {
                failed += 1;
                println!(
                    "{}",
                    serde_json::json!({ "error": message, "line": input.line })
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
        eprintln!(
            "error: {failed} of {} requests do not fit the schema",
            inputs.len()
        );
        return Ok(Exit::Usage);
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
    let json = evaluator.render(&decision);
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
