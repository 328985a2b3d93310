//! `polctl serve --data DIR`: the decision server (runtime.md §3). This module is the driver:
//! it reads the files the flags name, opens the state, starts tokio and the HTTP front end,
//! and on SIGTERM or Ctrl-C stops taking connections, lets decisions in flight finish and
//! flushes the journal before exiting.

use crate::exit::{CliError, Exit};
use crate::load::{read_bytes, read_text};
use clap::Args;
use polctl_bundle::parse_public_key;
use polctl_runtime::config::ServerConfig;
use polctl_runtime::engine::{BundleTester, Engine, EngineParts, TestSummary};
use polctl_runtime::error::RuntimeError;
use polctl_runtime::http::{now_ms, router, App};
use polctl_runtime::loaded::{load_bundle, LoadedBundle, Trust};
use polctl_runtime::tokens::{hash_secret, secret_from, Access};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Serve decisions over HTTP: agents (or their gateways) ask before every tool call.
///
/// State (the active bundle, counters, the audit log) lives in DIR and survives restarts. With
/// --bundle the bundle becomes active at start (unless it already is); without it the server
/// serves the bundle that was active when it stopped. The first line on stdout says where it
/// listens.
#[derive(Args)]
pub struct ServeArgs {
    /// The state directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Address to listen on (port 0: any free port; the first line printed names it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8181")]
    listen: String,
    /// A bundle (`polctl build`, optionally `polctl sign`) to activate at start.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// A trusted public key (`polctl keygen`); repeatable. With keys, only bundles signed by
    /// at least --threshold of them are served; without, bundles are served unverified.
    #[arg(long, value_name = "KEY.pub")]
    trust: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed a bundle.
    #[arg(long, default_value_t = 1)]
    threshold: usize,
    /// The tokens file (`polctl token new` prints its lines). Without it the server writes an
    /// admin token to DIR/admin.token and serves decisions without a token, on loopback only.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Server settings (TOML: [approvals] expiry, [http] body_limit; docs/runtime.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Runs a bundle's own test files (the cases; adversarial variants and properties too) with
/// the test runner `polctl test` uses.
fn bundle_tester() -> BundleTester {
    std::sync::Arc::new(|bundle: &LoadedBundle| {
        let opened = polctl_bundle::open(&bundle.bytes).map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        for (path, text) in opened.sources() {
            if !path.ends_with(".test.toml") {
                continue;
            }
            let file = polctl_testkit::parse_test_file(&path, &text).map_err(|errors| {
                let first = errors
                    .first()
                    .map(|e| format!("line {}: {}", e.line, e.message))
                    .unwrap_or_default();
                format!("`{path}` is malformed ({first})")
            })?;
            files.push(file);
        }
        let report = polctl_testkit::run(
            &bundle.evaluator,
            &files,
            &polctl_testkit::RunOptions {
                filter: None,
                timeout_ms: 10_000,
            },
        );
        Ok(TestSummary {
            passed: report.passed(),
            failed: report.failed(),
            failures: report
                .results
                .iter()
                .filter(|r| matches!(r.outcome, polctl_testkit::CaseOutcome::Failed(_)))
                .take(5)
                .map(|r| r.name.clone())
                .collect(),
        })
    })
}

/// Who may call: the tokens file, or the admin token under DIR (created on first start).
fn access(args: &ServeArgs) -> Result<Access, CliError> {
    if let Some(path) = &args.tokens {
        return Access::parse(&read_text(path)?).map_err(|message| {
            CliError::new(format!("`{}`: {message}", path.display()))
                .with_help("each token is [[token]] with name, sha256 and roles; `polctl token new` prints one")
        });
    }
    let loopback = args
        .listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| args.listen.starts_with("localhost:"));
    if !loopback {
        return Err(CliError::new(format!(
            "refusing to serve decisions on `{}` without tokens",
            args.listen
        ))
        .with_help("without --tokens the data plane is open, so only a loopback address is allowed; create tokens with `polctl token new` and pass --tokens FILE"));
    }
    std::fs::create_dir_all(&args.data).map_err(|e| CliError::write(&args.data, &e))?;
    let path = args.data.join("admin.token");
    let secret = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut random = [0u8; 32];
            getrandom::getrandom(&mut random)
                .map_err(|e| CliError::new(format!("no randomness for the admin token: {e}")))?;
            let secret = secret_from(random);
            write_private(&path, &secret)?;
            eprintln!(
                "polctl serve: wrote an admin token to `{}` (POLCTL_TOKEN or --token-file for push, rollback and status)",
                path.display()
            );
            secret
        }
        Err(error) => return Err(CliError::read(&path, &error)),
    };
    Ok(Access::Local {
        admin_sha256: hash_secret(&secret),
    })
}

/// The server's own Ed25519 key, which signs the audit log's checkpoints: `DIR/audit.key`
/// (mode 0600), made on first start with its public half `DIR/audit.pub`. Give a copy of the
/// public key to auditors: `polctl audit verify --key` then trusts nothing under DIR.
fn audit_key(data: &std::path::Path) -> Result<polctl_bundle::PrivateKey, CliError> {
    std::fs::create_dir_all(data).map_err(|e| CliError::write(data, &e))?;
    let path = data.join("audit.key");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed)
                .map_err(|e| CliError::new(format!("no randomness for the audit key: {e}")))?;
            let (private, public, _) =
                polctl_bundle::generate_key(seed).map_err(|e| CliError::new(e.to_string()))?;
            let private = String::from_utf8_lossy(&private).trim().to_owned();
            write_private(&path, &private)?;
            std::fs::write(data.join("audit.pub"), public)
                .map_err(|e| CliError::write(&data.join("audit.pub"), &e))?;
            format!("{private}\n")
        }
        Err(error) => return Err(CliError::read(&path, &error)),
    };
    polctl_bundle::parse_private_key(&text).map_err(|e| {
        CliError::new(format!("`{}`: {e}", path.display())).with_help(
            "the server's audit key signs the log's checkpoints; restore it from a backup",
        )
    })
}

/// Writes a secret readable by its owner only (mode 0600).
fn write_private(path: &std::path::Path, secret: &str) -> Result<(), CliError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| CliError::write(path, &e))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .map_err(|e| CliError::write(path, &e))
}

fn runtime_error(error: RuntimeError) -> CliError {
    CliError::new(error.message)
}

/// How long the semantic diff of a rollout's two bundles may take (for
/// `unexpected_divergence`); past it, divergences the diff did not finish are not called
/// unexpected.
const PREDICTION_TIMEOUT_MS: u32 = 10_000;

pub fn run(args: ServeArgs) -> Result<Exit, CliError> {
    let config = match &args.config {
        Some(path) => ServerConfig::parse(&read_text(path)?).map_err(|message| {
            CliError::new(format!("`{}`: {message}", path.display())).with_help(
                "the sections are [approvals], [http], [audit] and [breakers]; see docs/runtime.md",
            )
        })?,
        None => ServerConfig::default(),
    };
    for setting in &config.not_applied {
        eprintln!("polctl serve: warning: {setting} is not applied yet by this version");
    }
    let access = access(&args)?;
    let mut trust = Trust {
        keys: Vec::new(),
        threshold: args.threshold,
    };
    for path in &args.trust {
        trust.keys.push(
            parse_public_key(&read_text(path)?)
                .map_err(|e| CliError::new(format!("`{}`: {e}", path.display())))?,
        );
    }
    let start_bundle = match &args.bundle {
        Some(path) => Some(load_bundle(read_bytes(path)?, &trust).map_err(|e| {
            CliError::new(format!("`{}`: {}", path.display(), e.message)).with_exit(Exit::Refused)
        })?),
        None => None,
    };
    let started = now_ms();
    let metrics = polctl_runtime::metrics::Metrics::default();
    let checkpoint_key = audit_key(&args.data)?;
    let (journal, mut recovered, journal_thread) = polctl_runtime::store::open(
        &args.data,
        started / 1000,
        &metrics,
        Some(checkpoint_key),
        config.retain_ms,
    )
    .map_err(runtime_error)?;
    let engine = Arc::new(Engine::new(
        journal,
        &mut recovered,
        EngineParts {
            data: args.data.clone(),
            trust: trust.clone(),
            tester: bundle_tester(),
            predictor: Arc::new(|stable: &LoadedBundle, candidate: &LoadedBundle| {
                crate::commands::simulate::predict(
                    &stable.evaluator,
                    &candidate.evaluator,
                    PREDICTION_TIMEOUT_MS,
                )
                .ok()
            }),
            presenter: Arc::new(crate::tool_presenter::present),
            settings: config.engine.clone(),
            metrics,
        },
        started,
    ));
    if let Some(bytes) = recovered.candidate.take() {
        // A candidate that no longer loads (keys changed) is simply not restored.
        if let Ok(candidate) = load_bundle(bytes, &trust) {
            engine.restore_candidate(candidate);
        }
    }
    // The bundle that was active, back on the route before anything else can happen.
    let recovered_bundle = match recovered.active_bundle {
        Some(bytes) => Some(load_bundle(bytes, &trust).map_err(|e| {
            CliError::new(format!(
                "the bundle that was active in `{}` cannot be served: {}",
                args.data.display(),
                e.message
            ))
            .with_help("start with --bundle FILE to activate another one, or pass the --trust keys it was served with")
        })?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(async {
        if let Some(bundle) = recovered_bundle {
            let same = start_bundle
                .as_ref()
                .is_some_and(|b| b.bytes == bundle.bytes);
            engine.restore(bundle, recovered.activated_ms);
            // The rollout that was running resumes at its stage (its figures start again).
            if let Some(state) = &recovered.rollout {
                if let Err(error) = engine.restore_rollout(state) {
                    eprintln!(
                        "polctl serve: warning: the rollout in progress cannot be resumed ({}); all traffic goes to stable",
                        error.message
                    );
                }
            }
            if same {
                // Already active: nothing to record.
                return serve(&args, &config, engine.clone(), access, None).await;
            }
        }
        serve(&args, &config, engine.clone(), access, start_bundle).await
    });
    drop(engine);
    let _ = journal_thread.join();
    result
}

async fn serve(
    args: &ServeArgs,
    config: &ServerConfig,
    engine: Arc<Engine>,
    access: Access,
    start_bundle: Option<LoadedBundle>,
) -> Result<Exit, CliError> {
    if let Some(bundle) = start_bundle {
        engine
            .activate(
                Arc::new(bundle),
                now_ms(),
                "activate",
                "serve --bundle",
                None,
            )
            .await
            .map_err(runtime_error)?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| {
            CliError::new(format!("cannot listen on `{}`: {e}", args.listen))
                .with_help("pick another address with --listen (port 0 picks a free one)")
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot read the listening address: {e}")))?;
    let serving = match engine.active() {
        Some(active) => format!(
            "sequence {}, revision {}{}",
            active.bundle.sequence,
            active.bundle.revision,
            if active.bundle.verified {
                ""
            } else {
                ", unverified: no --trust keys"
            }
        ),
        None => "no bundle yet: /readyz answers 503 until one is pushed".to_owned(),
    };
    // The rollout controller judges on the wall clock, every second. The ticker holds the
    // engine weakly: shutting down drops the engine and with it the journal.
    let ticker = {
        let engine = Arc::downgrade(&engine);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if let Err(error) = engine.tick_rollout(now_ms()).await {
                    eprintln!("polctl serve: rollout: {}", error.message);
                }
            }
        })
    };
    println!("polctl serve: listening on http://{address} ({serving})");
    let _ = std::io::stdout().flush();
    let app = router(Arc::new(App {
        engine: engine.clone(),
        access,
        settings: config.http.clone(),
    }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| CliError::new(format!("the server stopped: {e}")))?;
    ticker.abort();
    engine.flush().await.map_err(runtime_error)?;
    eprintln!("polctl serve: stopped; every decision answered is in the audit log");
    Ok(Exit::Success)
}

/// SIGTERM (what service managers send) or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
