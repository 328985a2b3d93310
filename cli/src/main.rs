//! `polctl`: check, format, test, bundle and sign AI-agent policies.
//!
//! This file only parses the command line and maps results to exit codes; each subcommand
//! lives in its own module under `commands/`.

mod commands;

/// mimalloc: traffic files make `simulate` and `replay` allocation-bound (Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod exit;
mod load;
mod output;
mod reports;
mod requests;
mod rollout_report;
mod server_client;
mod tool_presenter;
mod traffic_file;

use clap::{Parser, Subcommand};
use exit::Exit;

/// Policies for AI agents, checked like code.
///
/// Write the rules your agents follow (which tools they may call, with which arguments, what
/// needs a human's approval, rate limits) in `.pol` files, then check them before they ship.
#[derive(Parser)]
#[command(name = "polctl", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    polctl check examples/support-fleet\n  \
    polctl check policies/ --format json\n  \
    polctl fmt --check policies/\n  \
    polctl build examples/support-fleet -o fleet.polb\n  \
    polctl sign fleet.polb --key release && polctl verify fleet.polb --key release.pub\n  \
    polctl traffic generate examples/support-fleet -o traffic.jsonl\n  \
    polctl simulate --from examples/support-fleet --to examples/releases/tighten-exports \\\n    \
    --traffic traffic.jsonl --plan examples/support-fleet/rollout.toml\n\n\
    Exit codes: 0 success, 1 usage or I/O error, 2 findings at the failing severity,\n\
    3 test failures, 4 signature or bundle verification failure, 5 the rollout did not complete.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Check(commands::check::CheckArgs),
    Fmt(commands::fmt::FmtArgs),
    Eval(commands::eval::EvalArgs),
    Test(commands::test::TestArgs),
    Bench(commands::bench::BenchArgs),
    Diff(commands::diff::DiffArgs),
    Build(commands::build::BuildArgs),
    Inspect(commands::build::InspectArgs),
    Keygen(commands::keys::KeygenArgs),
    Sign(commands::keys::SignArgs),
    Verify(commands::keys::VerifyArgs),
    Simulate(commands::simulate::SimulateArgs),
    Replay(commands::replay::ReplayArgs),
    Traffic(commands::traffic::TrafficArgs),
    Serve(commands::serve::ServeArgs),
    Push(commands::release::PushArgs),
    Rollback(commands::release::RollbackArgs),
    Rollout(commands::rollout::RolloutArgs),
    Token(commands::token::TokenArgs),
    Context(commands::context::ContextArgs),
    Approvals(commands::approvals::ApprovalsArgs),
    Audit(commands::audit::AuditArgs),
    Breakers(commands::breakers::BreakersArgs),
    Completions(commands::completions::CompletionsArgs),
}

fn main() -> std::process::ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap exits 2 on usage errors; polctl reserves 2 for findings (language.md §4).
            let _ = error.print();
            return if error.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Success.into()
            };
        }
    };
    let result = match cli.command {
        Command::Check(args) => commands::check::run(args),
        Command::Fmt(args) => commands::fmt::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Test(args) => commands::test::run_tests(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Diff(args) => commands::diff::run(args),
        Command::Build(args) => commands::build::run_build(args),
        Command::Inspect(args) => commands::build::run_inspect(args),
        Command::Keygen(args) => commands::keys::run_keygen(args),
        Command::Sign(args) => commands::keys::run_sign(args),
        Command::Verify(args) => commands::keys::run_verify(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Replay(args) => commands::replay::run(args),
        Command::Traffic(args) => commands::traffic::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Push(args) => commands::release::run_push(args),
        Command::Rollback(args) => commands::release::run_rollback(args),
        Command::Rollout(args) => commands::rollout::run(args),
        Command::Token(args) => commands::token::run(args),
        Command::Context(args) => commands::context::run(args),
        Command::Approvals(args) => commands::approvals::run(args),
        Command::Audit(args) => commands::audit::run(args),
        Command::Breakers(args) => commands::breakers::run(args),
        Command::Completions(args) => commands::completions::run::<Cli>(args),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            let args: Vec<String> = std::env::args().collect();
            output::print_error(&error, output::wants_json(&args));
            error.exit.into()
        }
    }
}

/// `polctl eval ... | head` closes the pipe early; `println!` then panics. A reader that went
/// away is not an error of ours: exit quietly, as `cat` and `grep` do, instead of printing a
/// panic. (Resetting SIGPIPE would need `unsafe`, which the workspace forbids.)
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
