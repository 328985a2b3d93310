//! `polctl audit verify | query | at | export` (runtime.md §2, §3.9): a decision server's audit
//! log, read offline from its `--data` directory (read-only; the server may be running) or,
//! without `--data`, through the server (`GET /v1/audit`, `GET /v1/audit/at`, auditor role).
//! `verify` walks the hash chain and the signed checkpoints and names the first bad entry
//! (exit 4).

use crate::exit::{CliError, Exit};
use crate::output::Format;
use crate::server_client::{ServerArgs, ServerClient};
use clap::{Args, Subcommand};
use polctl_runtime::audit::{format_time, parse_time_ms};
use polctl_runtime::audit_log::{self, VerifyError};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Read and check a decision server's audit log.
#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

/// Where the log is read: a data directory, or the server.
#[derive(Args)]
struct Source {
    /// The server's --data directory, read offline (without it: ask the server).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of every entry and check the signed checkpoints; exit 4 naming the
    /// first bad entry.
    Verify {
        /// The server's --data directory (read only; the server may be running).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The server's checkpoint key (a copy of DIR/audit.pub kept elsewhere); default:
        /// DIR/audit.pub.
        #[arg(long, value_name = "KEY.pub")]
        key: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Entries matching every filter, oldest first (decisions unless --kind says otherwise).
    Query {
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        #[arg(long, value_name = "TOOL")]
        tool: Option<String>,
        /// allow, deny or require_approval.
        #[arg(long, value_name = "DECISION")]
        decision: Option<String>,
        /// decision, activate, rollback, rollout, migration, bundle, context, approval, access.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// From this time: RFC 3339, or a duration ago (`15m`, `24h`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Until this time (inclusive): RFC 3339, or a duration ago.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        source: Source,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Which policy was in effect at TIME: the stable bundle, the rollout and its stage, the
    /// operator context.
    At {
        /// RFC 3339, or a duration ago.
        time: String,
        #[command(flatten)]
        source: Source,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Decisions as a traffic file (runtime.md §5.1) for `polctl simulate` and `replay`.
    Export {
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        source: Source,
    },
}

pub fn run(args: AuditArgs) -> Result<Exit, CliError> {
    match args.command {
        AuditCommand::Verify { data, key, format } => verify(&data, key.as_deref(), format),
        AuditCommand::Query {
            agent,
            tool,
            decision,
            kind,
            since,
            until,
            limit,
            source,
            format,
        } => {
            let query = audit_log::Query {
                kind,
                agent,
                tool,
                decision,
                since_ms: since.as_deref().map(time_arg).transpose()?,
                until_ms: until.as_deref().map(time_arg).transpose()?,
                after: None,
                limit,
            };
            let entries = match &source.data {
                Some(data) => audit_log::query(data, &query).map_err(runtime_error)?,
                None => query_server(&ServerClient::new(&source.server)?, &query)?,
            };
            for entry in &entries {
                match format {
                    Format::Json => println!("{entry}"),
                    Format::Human => println!("{}", entry_line(entry)),
                }
            }
            if format == Format::Human {
                eprintln!("{} entries", entries.len());
            }
            Ok(Exit::Success)
        }
        AuditCommand::At {
            time,
            source,
            format,
        } => {
            let time_ms = time_arg(&time)?;
            let answer = match &source.data {
                Some(data) => audit_log::at(data, time_ms).map_err(runtime_error)?,
                None => ServerClient::new(&source.server)?
                    .get(&format!("/v1/audit/at?time={}", format_time(time_ms)))?,
            };
            match format {
                Format::Json => crate::output::print_document(
                    &serde_json::to_string_pretty(&answer).unwrap_or_default(),
                ),
                Format::Human => print!("{}", at_text(&answer)),
            }
            Ok(Exit::Success)
        }
        AuditCommand::Export {
            since,
            until,
            output,
            source,
        } => {
            let (since_ms, until_ms) = (
                since.as_deref().map(time_arg).transpose()?,
                until.as_deref().map(time_arg).transpose()?,
            );
            let file = std::fs::File::create(&output).map_err(|e| CliError::write(&output, &e))?;
            let mut out = std::io::BufWriter::new(file);
            let mut write = |line: &Value| writeln!(out, "{line}");
            let exported = match &source.data {
                Some(data) => audit_log::export(data, since_ms, until_ms, &mut write)
                    .map_err(runtime_error)?,
                None => {
                    // Through the server: every decision page by page, then in time order.
                    let client = ServerClient::new(&source.server)?;
                    let mut lines: Vec<(i64, Value)> = Vec::new();
                    let mut hashed = 0u64;
                    let mut query = audit_log::Query {
                        since_ms,
                        until_ms,
                        limit: 10_000,
                        ..audit_log::Query::default()
                    };
                    loop {
                        let page = query_page(&client, &query)?;
                        for entry in page["entries"].as_array().into_iter().flatten() {
                            let time = entry["time"].as_str().and_then(parse_time_ms);
                            if let (Some(time), Some(line)) = (time, audit_log::traffic_line(entry))
                            {
                                lines.push((time, line));
                            } else if audit_log::arguments_hashed(entry) {
                                hashed += 1;
                            }
                        }
                        match page["next_after"].as_u64() {
                            Some(after) => query.after = Some(after),
                            None => break,
                        }
                    }
                    lines.sort_by_key(|(time, _)| *time);
                    for (_, line) in &lines {
                        write(line).map_err(|e| CliError::write(&output, &e))?;
                    }
                    audit_log::Exported {
                        written: lines.len() as u64,
                        hashed,
                    }
                }
            };
            out.flush().map_err(|e| CliError::write(&output, &e))?;
            eprintln!(
                "wrote {} decisions to `{}` (a traffic file for `polctl simulate` and `polctl replay`)",
                exported.written,
                output.display()
            );
            if exported.hashed > 0 {
                eprintln!(
                    "left out {} decisions whose arguments the server hashed (`[audit] arguments = \"hash\"`): they cannot be decided again",
                    exported.hashed
                );
            }
            Ok(Exit::Success)
        }
    }
}

fn runtime_error(error: polctl_runtime::error::RuntimeError) -> CliError {
    CliError::new(error.message)
}

/// A time argument: RFC 3339, or a duration before now (`15m`, `24h`, `7d`).
fn time_arg(text: &str) -> Result<i64, CliError> {
    if let Some(time) = parse_time_ms(text) {
        return Ok(time);
    }
    match polctl_rollout::duration::parse_millis(text) {
        Ok(ago) => Ok(polctl_runtime::http::now_ms() - ago),
        Err(_) => Err(CliError::new(format!("`{text}` is not a time")).with_help(
            "give an RFC 3339 time (2026-12-01T14:03:00Z) or a duration ago (15m, 24h)",
        )),
    }
}

fn query_page(client: &ServerClient, query: &audit_log::Query) -> Result<Value, CliError> {
    let mut parameters = vec![format!("limit={}", query.limit)];
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            parameters.push(format!("{name}={}", encode(&value)));
        }
    };
    add("kind", query.kind.clone());
    add("agent", query.agent.clone());
    add("tool", query.tool.clone());
    add("decision", query.decision.clone());
    add("since", query.since_ms.map(format_time));
    add("until", query.until_ms.map(format_time));
    add("after", query.after.map(|a| a.to_string()));
    client.get(&format!("/v1/audit?{}", parameters.join("&")))
}

fn query_server(client: &ServerClient, query: &audit_log::Query) -> Result<Vec<Value>, CliError> {
    let mut entries = Vec::new();
    let mut query = query.clone();
    let wanted = query.limit;
    loop {
        query.limit = (wanted - entries.len()).min(10_000);
        let page = query_page(client, &query)?;
        entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_u64() {
            Some(after) if entries.len() < wanted => query.after = Some(after),
            _ => return Ok(entries),
        }
    }
}

/// Percent-encodes a query parameter's value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One entry on one line, for people.
fn entry_line(entry: &Value) -> String {
    let body = &entry["body"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    match entry["kind"].as_str() {
        Some("decision") => format!(
            "{:>7}  {}  {:<16} {:<16} {:<18} {:<30} seq {} {:<9} {}",
            entry["index"],
            text(&entry["time"]),
            text(&body["decision"]["decision"]),
            text(&body["request"]["agent"]["id"]),
            text(&body["request"]["tool"]),
            body["decision"]["rules"]
                .as_array()
                .map(|r| r
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default(),
            body["sequence"],
            text(&body["cohort"]),
            text(&body["decision_id"]),
        ),
        _ => format!(
            "{:>7}  {}  {:<16} {}",
            entry["index"],
            text(&entry["time"]),
            text(&entry["kind"]),
            body
        ),
    }
}

/// `audit at` for people.
fn at_text(answer: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut out = format!("At {}\n", text(&answer["time"]));
    let stable = &answer["stable"];
    if stable.is_null() {
        out.push_str("  no bundle was active\n");
    } else {
        out.push_str(&format!(
            "  stable    sequence {} ({}, {}), active since {} (by {})\n",
            stable["sequence"],
            text(&stable["name"]),
            text(&stable["revision"]),
            text(&stable["since"]),
            text(&stable["by"]),
        ));
    }
    let rollout = &answer["rollout"];
    if rollout.is_null() {
        out.push_str("  rollout   none: stable decided every request\n");
    } else {
        out.push_str(&format!(
            "  rollout   {}: sequence {} in stage `{}` ({}), the candidate deciding {}% of requests\n",
            text(&rollout["rollout_id"]),
            rollout["sequence"],
            text(&rollout["stage"]),
            text(&rollout["phase"]),
            rollout["traffic"].as_f64().map_or("?".to_owned(), |t| t.to_string()),
        ));
    }
    let context = &answer["context"];
    let all = context["all_tenants"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let tenants = context["tenants"].as_object().cloned().unwrap_or_default();
    if all.is_empty() && tenants.is_empty() {
        out.push_str("  operator context: the bundle's defaults\n");
    } else {
        out.push_str(&format!("  operator context: {}\n", json!(all)));
        for (tenant, values) in tenants {
            out.push_str(&format!("    tenant {tenant}: {values}\n"));
        }
    }
    out
}

fn verify(data: &Path, key: Option<&Path>, format: Format) -> Result<Exit, CliError> {
    let key_path = key
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data.join("audit.pub"));
    let key = match std::fs::read_to_string(&key_path) {
        Ok(text) => Some(polctl_bundle::parse_public_key(&text).map_err(|e| {
            CliError::new(format!("`{}`: {e}", key_path.display())).with_exit(Exit::Verification)
        })?),
        Err(_) if key.is_none() => None,
        Err(error) => return Err(CliError::read(&key_path, &error)),
    };
    match audit_log::verify(data, key.as_ref()) {
        Ok(report) => {
            match format {
                Format::Json => crate::output::print_document(
                    &serde_json::to_string_pretty(&report).unwrap_or_default(),
                ),
                Format::Human => {
                    println!(
                        "audit log of `{}`: {} entries, the chain is intact{}",
                        data.display(),
                        report.entries,
                        report
                            .head
                            .as_deref()
                            .map(|h| format!(" (head {})", audit_log::short(h)))
                            .unwrap_or_default()
                    );
                    let first = report.pruned_to.map_or(0, |to| to + 1);
                    if let Some(to) = report.pruned_to {
                        println!(
                            "the kept log begins at entry {first}: entries 0 to {to} were pruned by retention{} (the prune entry in the chain says so)",
                            report
                                .pruned_at
                                .as_deref()
                                .map(|at| format!(" at {at}"))
                                .unwrap_or_default()
                        );
                    }
                    match (&report.key_id, report.checkpointed_to) {
                        (Some(key), Some(to)) => println!(
                            "{} signed checkpoints verify with key {key}; the last covers entries {first} to {to}{}",
                            report.checkpoints,
                            if report.uncovered > 0 {
                                format!(" ({} later entries are not covered yet: a truncation of those could not be seen)", report.uncovered)
                            } else {
                                String::new()
                            }
                        ),
                        (None, Some(_)) => println!(
                            "{} checkpoints were not checked: no key (`{}` is missing; pass --key)",
                            report.checkpoints,
                            key_path.display()
                        ),
                        (_, None) => println!(
                            "no signed checkpoints: a truncated end of the log could not be seen"
                        ),
                    }
                }
            }
            Ok(Exit::Success)
        }
        Err(VerifyError::Broken(broken)) => Err(CliError::new(format!(
            "audit log of `{}`: entry {} {}",
            data.display(),
            broken.index,
            broken.message
        ))
        .with_help("the log was changed after it was written; keep this copy as evidence and restore the data directory from a backup")
        .with_exit(Exit::Verification)),
        Err(VerifyError::Unreadable(error)) => Err(CliError::new(format!(
            "audit log of `{}`: {}",
            data.display(),
            error.message
        ))),
    }
}
