//! The embedded state store: one SQLite file, `DIR/state.sqlite`, in WAL mode.
//!
//! - `bundles`: every activated bundle's bytes, in activation order (the last is active);
//! - `candidate`: the uploaded bundle waiting to be rolled out;
//! - `rollout`: the rollout in progress (or the last one aborted), as the controller's state;
//! - `counters`: limit counters by (rule, window, key path, key value, window start);
//! - `audit`: the hash-chained audit log (runtime.md §3.9).
//!
//! One thread, the journal, owns the connection and writes everything. Decisions hand it
//! their counter increments and audit entry and wait for the commit before answering, and
//! the journal commits whatever has queued up in one transaction (group commit): one write
//! for many decisions, and a response the client has seen is never lost to a killed process.
//! `synchronous = NORMAL` in WAL mode survives the process being killed at any moment (the
//! committed pages are in the operating system's cache); surviving power loss as well needs
//! `FULL`, which costs an fsync per group.

use crate::audit::{seal_text, PendingEntry, GENESIS};
use crate::error::RuntimeError;
use crate::metrics::Metrics;
use polctl_bundle::PrivateKey;
use polctl_rollout::counters::{CounterKey, LimitIdentity};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Jobs queued at most before decisions wait for the journal (bounded: memory stays flat
/// under any load).
const QUEUE: usize = 16 * 1024;
/// Jobs committed in one transaction at most.
const GROUP: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bundles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence INTEGER NOT NULL,
    revision TEXT NOT NULL,
    bytes BLOB NOT NULL,
    activated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS candidate (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sequence INTEGER NOT NULL,
    revision TEXT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    rule TEXT NOT NULL,
    window_seconds INTEGER NOT NULL,
    key_path TEXT NOT NULL,
    key_value TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (rule, window_seconds, key_path, key_value, window_start)
);
CREATE TABLE IF NOT EXISTS context (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    idx INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS breakers (
    policy TEXT PRIMARY KEY,
    forced TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    idx INTEGER PRIMARY KEY,
    head TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
";

/// Columns added to `audit` after its first version, for queries: each entry's kind and time
/// (a data directory from before them is upgraded in place, its rows filled from the entries).
const AUDIT_COLUMNS: &str = "
ALTER TABLE audit ADD COLUMN kind TEXT;
ALTER TABLE audit ADD COLUMN time_ms INTEGER;
UPDATE audit SET kind = json_extract(entry, '$.kind'),
    time_ms = CAST(strftime('%s', substr(json_extract(entry, '$.time'), 1, 19)) AS INTEGER) * 1000
        + CAST(substr(json_extract(entry, '$.time'), 21, 3) AS INTEGER);
";

/// How often the journal signs a checkpoint while entries are written (runtime.md §3.9).
const CHECKPOINT_EVERY_MS: i64 = 1000;

/// What a restart finds under `--data`.
pub struct Recovered {
    /// The active bundle's bytes, if one was ever activated.
    pub active_bundle: Option<Vec<u8>>,
    /// When it was activated (Unix milliseconds).
    pub activated_ms: i64,
    /// The highest sequence ever activated (anti-rollback).
    pub highest_sequence: u64,
    /// A bundle uploaded and not yet activated.
    pub candidate: Option<Vec<u8>>,
    /// The rollout in progress or last aborted (the controller's state as JSON).
    pub rollout: Option<String>,
    /// Live counters (windows not yet ended at `now`).
    pub counters: Vec<(CounterKey, u64)>,
    /// Entries in the audit log.
    pub audit_entries: u64,
    /// Approvals (every state; finished ones are pruned a day after they expire).
    pub approvals: Vec<crate::approvals::Approval>,
    /// Operator context values: `(tenant, name, value)`, tenant `""` for every tenant.
    pub context: Vec<(String, String, serde_json::Value)>,
    /// Breakers an operator forced open or closed, by policy.
    pub breakers: Vec<(String, polctl_rollout::breaker::Forced)>,
}

/// A job as queued: its entries' bodies already serialized (in entry order).
pub struct Queued {
    job: Job,
    bodies: Vec<String>,
}

impl Job {
    /// The job's audit entries, in the order they are written.
    fn entries_mut(&mut self) -> Vec<&mut PendingEntry> {
        match self {
            Job::Activate {
                entry, migration, ..
            } => std::iter::once(entry).chain(migration.as_mut()).collect(),
            Job::Decision { entry, .. }
            | Job::Candidate { entry, .. }
            | Job::Context { entry, .. }
            | Job::Approvals { entry, .. }
            | Job::Rollout { entry, .. }
            | Job::Breaker { entry, .. }
            | Job::Entry { entry, .. } => vec![entry],
            Job::Flush(_) | Job::Prune(_) => Vec::new(),
        }
    }
}

/// One unit of work for the journal.
pub enum Job {
    /// A decision: what it added to counters (an allowed action's +1, and counters seeded by
    /// a migration), the approval it created or used, its audit entry.
    Decision {
        increments: Vec<(CounterKey, u64)>,
        approvals: Vec<crate::approvals::Approval>,
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// A bundle is uploaded: it becomes the candidate.
    Candidate {
        sequence: u64,
        revision: String,
        bytes: Vec<u8>,
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// A bundle becomes active (the candidate and the rollout, if any, are cleared), with the
    /// state migration of the swap: approvals changed, counters of added limits dropped, and
    /// the migration report's audit entry.
    Activate {
        sequence: u64,
        revision: String,
        bytes: Vec<u8>,
        approvals: Vec<crate::approvals::Approval>,
        drops: Vec<LimitIdentity>,
        entry: PendingEntry,
        migration: Option<PendingEntry>,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// A rollout's state changed (`None`: no rollout any more), with counters of limits the
    /// candidate adds dropped when it starts.
    Rollout {
        state: Option<String>,
        drops: Vec<LimitIdentity>,
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// A policy's breaker forced open or closed (`Some`), or released (`None`).
    Breaker {
        policy: String,
        forced: Option<polctl_rollout::breaker::Forced>,
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Operator context values set (`Some`) or removed (`None`) for a tenant (`""`: all).
    Context {
        tenant: String,
        changes: Vec<(String, Option<serde_json::Value>)>,
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Approvals changed by approvers, with the audit entry saying so.
    Approvals {
        approvals: Vec<crate::approvals::Approval>,
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// An audit entry of its own (an admin action, a refused caller).
    Entry {
        entry: PendingEntry,
        done: oneshot::Sender<Result<(), RuntimeError>>,
    },
    /// Answers once everything queued before it is committed.
    Flush(oneshot::Sender<Result<(), RuntimeError>>),
    /// Applies retention now (it also runs every minute by itself): answers once entries old
    /// enough were pruned, or there were none. A no-op without `[audit] retain`.
    Prune(oneshot::Sender<Result<(), RuntimeError>>),
}

/// The sending side of the journal.
#[derive(Clone)]
pub struct Journal {
    sender: mpsc::SyncSender<Queued>,
    metrics: Metrics,
}

impl Journal {
    /// Queues a job (blocks while the queue is full: back-pressure, never a dropped entry).
    pub fn submit(&self, job: Job) -> Result<(), RuntimeError> {
        let entries = i64::from(!matches!(job, Job::Flush(_) | Job::Prune(_)));
        self.metrics.audit_pending.inc_by(entries);
        // The entries' bodies are serialized here, on the submitting (deciding) thread, and
        // dropped here too: the journal's one thread only seals and writes.
        let mut job = job;
        let bodies = job
            .entries_mut()
            .into_iter()
            .map(|entry| std::mem::take(&mut entry.body).to_string())
            .collect();
        self.sender.send(Queued { job, bodies }).map_err(|_| {
            self.metrics.audit_pending.dec_by(entries);
            RuntimeError::state("the journal has stopped")
        })
    }
}

fn open_connection(path: &Path) -> Result<Connection, RuntimeError> {
    let connection = Connection::open(path)
        .map_err(|e| RuntimeError::state(format!("cannot open `{}`: {e}", path.display())))?;
    // A decision waits at most a second for the file's write lock (held by another process
    // only in odd setups); past it the group fails, its decisions are answered 503, and the
    // policies whose state they used count a failure (runtime.md §3.6).
    connection
        .busy_timeout(std::time::Duration::from_secs(1))
        .map_err(|e| RuntimeError::state(format!("cannot open `{}`: {e}", path.display())))?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .and_then(|()| connection.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|()| connection.execute_batch(SCHEMA))
        .and_then(|()| {
            let has_kind: bool = connection.query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('audit') WHERE name = 'kind'",
                [],
                |row| row.get(0),
            )?;
            if !has_kind {
                connection.execute_batch(&format!("BEGIN; {AUDIT_COLUMNS} COMMIT;"))?;
            }
            connection.execute_batch(
                "CREATE INDEX IF NOT EXISTS audit_kind_time ON audit (kind, time_ms)",
            )
        })
        .map_err(|e| {
            RuntimeError::state(format!(
                "`{}` is not a usable state database: {e}; move it aside to start empty, or restore it from a backup",
                path.display()
            ))
        })?;
    Ok(connection)
}

/// The state file under a data directory.
pub fn database_path(data: &Path) -> PathBuf {
    data.join("state.sqlite")
}

/// Opens (or creates) the state under `data`, reads what a restart needs, and starts the
/// journal thread. `now_seconds` drops counters whose window has ended.
///
/// `checkpoint_key` signs a checkpoint of the chain's head at least every second while entries
/// are written, when the journal goes idle, and at shutdown.
///
/// `retain_ms` (`[audit] retain`) prunes the audit log's whole UTC days that ended longer ago
/// than that, checked every minute ([`Job::Prune`] to check now).
pub fn open(
    data: &Path,
    now_seconds: i64,
    metrics: &Metrics,
    checkpoint_key: Option<PrivateKey>,
    retain_ms: Option<i64>,
) -> Result<(Journal, Recovered, std::thread::JoinHandle<()>), RuntimeError> {
    std::fs::create_dir_all(data)
        .map_err(|e| RuntimeError::state(format!("cannot create `{}`: {e}", data.display())))?;
    let path = database_path(data);
    let connection = open_connection(&path)?;
    connection.execute(
        "DELETE FROM counters WHERE window_start + window_seconds <= ?1",
        params![now_seconds],
    )?;
    let active: Option<(Vec<u8>, i64)> = connection
        .query_row(
            "SELECT bytes, activated_ms FROM bundles ORDER BY id DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let highest_sequence: i64 = connection.query_row(
        "SELECT COALESCE(MAX(sequence), 0) FROM bundles",
        [],
        |row| row.get(0),
    )?;
    let candidate: Option<Vec<u8>> = connection
        .query_row("SELECT bytes FROM candidate WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()?;
    let rollout: Option<String> = connection
        .query_row("SELECT state FROM rollout WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()?;
    let mut counters = Vec::new();
    {
        let mut statement = connection.prepare(
            "SELECT rule, window_seconds, key_path, key_value, window_start, count FROM counters",
        )?;
        let rows = statement.query_map([], |row| {
            let key_path: String = row.get(2)?;
            Ok((
                CounterKey {
                    limit: LimitIdentity {
                        rule: row.get(0)?,
                        window_seconds: row.get::<_, i64>(1)?.max(0) as u64,
                        key: (!key_path.is_empty()).then_some(key_path),
                    },
                    value: row.get(3)?,
                    window_start: row.get(4)?,
                },
                row.get::<_, i64>(5)?.max(0) as u64,
            ))
        })?;
        for row in rows {
            counters.push(row?);
        }
    }
    let head: Option<(u64, String)> = connection
        .query_row(
            "SELECT idx, hash FROM audit ORDER BY idx DESC LIMIT 1",
            [],
            |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
        )
        .optional()?;
    let (active_bundle, activated_ms) = match active {
        Some((bytes, at)) => (Some(bytes), at),
        None => (None, 0),
    };
    let mut context = Vec::new();
    {
        let mut statement = connection.prepare("SELECT tenant, name, value FROM context")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (tenant, name, value) = row?;
            if let Ok(value) = serde_json::from_str(&value) {
                context.push((tenant, name, value));
            }
        }
    }
    connection.execute(
        "DELETE FROM approvals WHERE json_extract(body, '$.expires_ms') < ?1",
        params![(now_seconds - 86_400).saturating_mul(1000)],
    )?;
    let mut breakers = Vec::new();
    {
        let mut statement = connection.prepare("SELECT policy, forced FROM breakers")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (policy, forced) = row?;
            if let Ok(forced) = serde_json::from_value(serde_json::Value::String(forced)) {
                breakers.push((policy, forced));
            }
        }
    }
    let mut approvals = Vec::new();
    {
        let mut statement = connection.prepare("SELECT body FROM approvals")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        for row in rows {
            if let Ok(approval) = serde_json::from_str(&row?) {
                approvals.push(approval);
            }
        }
    }
    let recovered = Recovered {
        breakers,
        approvals,
        context,
        active_bundle,
        activated_ms,
        highest_sequence: highest_sequence.max(0) as u64,
        candidate,
        rollout,
        counters,
        audit_entries: head.as_ref().map_or(0, |(i, _)| i + 1),
    };
    let (sender, receiver) = mpsc::sync_channel(QUEUE);
    let journal_metrics = metrics.clone();
    let thread = std::thread::Builder::new()
        .name("polctl-journal".to_owned())
        .spawn(move || {
            run_journal(
                connection,
                receiver,
                head,
                journal_metrics,
                checkpoint_key,
                retain_ms,
            )
        })
        .map_err(|e| RuntimeError::state(format!("cannot start the journal thread: {e}")))?;
    Ok((
        Journal {
            sender,
            metrics: metrics.clone(),
        },
        recovered,
        thread,
    ))
}

/// The journal thread: waits for a job, takes whatever else has queued (up to [`GROUP`]),
/// writes it all in one transaction, then answers every job.
fn run_journal(
    mut connection: Connection,
    receiver: mpsc::Receiver<Queued>,
    head: Option<(u64, String)>,
    metrics: Metrics,
    checkpoint_key: Option<PrivateKey>,
    retain_ms: Option<i64>,
) {
    let mut retention = Retention {
        retain_ms,
        last_prune_ms: 0,
        deleting: pending_deletion(&connection),
        last_chunk_ms: 0,
    };
    let mut next_index = head.as_ref().map_or(0, |(i, _)| i + 1);
    let mut prev = head.map_or_else(|| GENESIS.to_owned(), |(_, hash)| hash);
    let mut checkpointed = checkpointed_up_to(&connection);
    let mut last_checkpoint_ms = 0i64;
    // Signs a checkpoint of the head when entries were written since the last one (and, unless
    // `now`, a second has passed). A failed checkpoint is retried at the next chance.
    let mut checkpoint = |connection: &Connection, next_index: u64, prev: &str, now: bool| {
        let Some(key) = &checkpoint_key else {
            return;
        };
        let time_ms = wall_clock_ms();
        if next_index == 0
            || checkpointed == Some(next_index - 1)
            || (!now && time_ms - last_checkpoint_ms < CHECKPOINT_EVERY_MS)
        {
            return;
        }
        let index = next_index - 1;
        let signature = key.sign_message(
            crate::audit::CHECKPOINT_DOMAIN,
            &crate::audit::checkpoint_message(index, prev, time_ms),
        );
        let written = connection.execute(
            "INSERT OR REPLACE INTO checkpoints (idx, head, time_ms, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![index as i64, prev, time_ms, key.key_id, signature],
        );
        if written.is_ok() {
            checkpointed = Some(index);
            last_checkpoint_ms = time_ms;
        }
    };
    loop {
        let wait_ms = retention.wait_ms();
        let first = match receiver.recv_timeout(std::time::Duration::from_millis(wait_ms as u64)) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                checkpoint(&connection, next_index, &prev, true);
                // A failed prune is logged and tried again; nobody waits for this one.
                let _ = retention.run(
                    &mut connection,
                    &mut next_index,
                    &mut prev,
                    &metrics,
                    false,
                    &mut checkpoint,
                );
                retention.delete_chunk(&connection);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                checkpoint(&connection, next_index, &prev, true);
                return;
            }
        };
        let mut group = vec![first];
        while group.len() < GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (index_before, prev_before) = (next_index, prev.clone());
        let result = write_group(&mut connection, &group, &mut next_index, &mut prev);
        if result.is_err() {
            // Nothing of the group was committed: the chain continues from where it was.
            next_index = index_before;
            prev = prev_before;
        }
        let entries = group
            .iter()
            .filter(|q| !matches!(q.job, Job::Flush(_) | Job::Prune(_)))
            .count() as i64;
        metrics.audit_pending.dec_by(entries);
        if result.is_ok() {
            metrics.audit_written.inc_by(next_index - index_before);
            metrics.audit_commits.inc();
            // A flush (shutdown) leaves the whole log covered by a signed checkpoint.
            let flushing = group.iter().any(|q| matches!(q.job, Job::Flush(_)));
            checkpoint(&connection, next_index, &prev, flushing);
        }
        let asked = group.iter().any(|q| matches!(q.job, Job::Prune(_)));
        let pruned = retention.run(
            &mut connection,
            &mut next_index,
            &mut prev,
            &metrics,
            asked,
            &mut checkpoint,
        );
        retention.delete_chunk(&connection);
        for queued in group {
            let done = match queued.job {
                Job::Decision { done, .. }
                | Job::Candidate { done, .. }
                | Job::Context { done, .. }
                | Job::Approvals { done, .. }
                | Job::Activate { done, .. }
                | Job::Rollout { done, .. }
                | Job::Breaker { done, .. }
                | Job::Entry { done, .. }
                | Job::Flush(done) => done,
                Job::Prune(done) => {
                    let _ = done.send(result.clone().and(pruned.clone()));
                    continue;
                }
            };
            let _ = done.send(result.clone());
        }
    }
}

/// How often the journal checks whether audit entries are old enough to prune.
const PRUNE_EVERY_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// The journal's retention (`[audit] retain`): when to prune, and the pruned range still being
/// deleted a chunk at a time.
struct Retention {
    retain_ms: Option<i64>,
    last_prune_ms: i64,
    /// The last index of a prune's range not yet wholly deleted.
    deleting: Option<i64>,
    last_chunk_ms: i64,
}

impl Retention {
    /// How long the journal may wait for work: while a range is being deleted, until its next
    /// chunk is due.
    fn wait_ms(&self) -> i64 {
        if self.deleting.is_some() {
            PRUNE_CHUNK_EVERY_MS
        } else {
            CHECKPOINT_EVERY_MS
        }
    }

    /// [`prune`] when asked or once a minute, with failures logged (a failed prune changes
    /// nothing and is tried again). A prune is covered by a signed checkpoint at once (`audit
    /// verify` requires it), and its range is deleted from then on.
    fn run(
        &mut self,
        connection: &mut Connection,
        next_index: &mut u64,
        prev: &mut String,
        metrics: &Metrics,
        asked: bool,
        checkpoint: &mut dyn FnMut(&Connection, u64, &str, bool),
    ) -> Result<(), RuntimeError> {
        let Some(retain_ms) = self.retain_ms else {
            return Ok(());
        };
        if !asked && wall_clock_ms() - self.last_prune_ms < PRUNE_EVERY_MS {
            return Ok(());
        }
        self.last_prune_ms = wall_clock_ms();
        match prune(connection, next_index, prev, retain_ms, wall_clock_ms()) {
            Ok(Some(last)) => {
                metrics.audit_written.inc();
                checkpoint(connection, *next_index, prev, true);
                // Everything up to `last`, an earlier range still being deleted included.
                self.deleting = Some(last);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => {
                eprintln!(
                    "polctl serve: audit retention failed (tried again in a minute): {}",
                    error.message
                );
                Err(error)
            }
        }
    }

    /// Deletes a chunk of the pruned range when one is due.
    fn delete_chunk(&mut self, connection: &Connection) {
        let Some(to) = self.deleting else {
            return;
        };
        if wall_clock_ms() - self.last_chunk_ms < PRUNE_CHUNK_EVERY_MS {
            return;
        }
        self.last_chunk_ms = wall_clock_ms();
        // A failed chunk is tried again at the next chance.
        if let Ok(true) = delete_pruned_chunk(connection, to) {
            self.deleting = None;
        }
    }
}

/// Retention (`[audit] retain`, runtime.md §3.9): the log's segments are UTC days; every day
/// that ended more than `retain_ms` before `now_ms` is pruned whole: a `prune` entry appended
/// to the chain records the range (`first`, `last`), the hash of the last removed entry
/// (`head`, which the first kept entry's `prev` names), and what was in effect after it
/// (`in_effect`, for `audit at`); the journal then deletes the range a chunk at a time
/// ([`delete_pruned_chunk`]), so decisions never wait for all of it. The newest entry is
/// always kept. Returns the range's last index when there was something to prune.
fn prune(
    connection: &mut Connection,
    next_index: &mut u64,
    prev: &mut String,
    retain_ms: i64,
    now_ms: i64,
) -> Result<Option<i64>, RuntimeError> {
    let cutoff = (now_ms - retain_ms).div_euclid(DAY_MS) * DAY_MS;
    let newest = *next_index as i64 - 1;
    let (first, last, head) = {
        let time_of = |index: i64| -> Result<i64, rusqlite::Error> {
            connection.query_row(
                "SELECT time_ms FROM audit WHERE idx = ?1",
                params![index],
                |row| row.get(0),
            )
        };
        // After an earlier prune's range (which may still be being deleted).
        let after =
            crate::audit_log::pruned_last(crate::audit_log::latest_prune(connection)?.as_ref());
        let first: Option<i64> = connection.query_row(
            "SELECT MIN(idx) FROM audit WHERE idx > ?1",
            params![after],
            |row| row.get(0),
        )?;
        let Some(first) = first else {
            return Ok(None);
        };
        if first >= newest || time_of(first)? >= cutoff {
            return Ok(None);
        }
        // Entries are in time order (give or take a millisecond between the threads that made
        // them): the last one before the cutoff by bisection, a few key lookups.
        let (mut before, mut kept) = (first, newest);
        while kept - before > 1 {
            let middle = before + (kept - before) / 2;
            if time_of(middle)? < cutoff {
                before = middle;
            } else {
                kept = middle;
            }
        }
        let head: String = connection.query_row(
            "SELECT hash FROM audit WHERE idx = ?1",
            params![before],
            |row| row.get(0),
        )?;
        (first, before, head)
    };
    let in_effect = crate::audit_log::InEffect::through(connection, last as u64)?.snapshot();
    let entry = PendingEntry {
        time_ms: now_ms,
        kind: "prune",
        body: serde_json::json!({
            "first": first,
            "last": last,
            "head": head,
            "before": crate::audit::format_time(cutoff),
            "in_effect": in_effect,
        }),
    };
    let (text, hash) = seal_text(*next_index, prev, &entry, &entry.body.to_string());
    let transaction = connection.transaction()?;
    transaction.execute(
        "INSERT INTO audit (idx, entry, hash, kind, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![*next_index as i64, text, hash, entry.kind, entry.time_ms],
    )?;
    transaction.commit()?;
    *next_index += 1;
    *prev = hash;
    Ok(Some(last))
}

/// Entries of a prune's range deleted in one transaction: about 10 ms of the journal's time.
const PRUNE_CHUNK: i64 = 2_000;
/// How often a chunk is deleted while a prune's range is being removed (at most half the
/// journal's time: 100,000 entries a second).
const PRUNE_CHUNK_EVERY_MS: i64 = 20;

/// Deletes the next chunk of a prune's range (entries up to `to`); true once none is left
/// (then the checkpoints of the range go too).
fn delete_pruned_chunk(connection: &Connection, to: i64) -> Result<bool, RuntimeError> {
    let deleted = connection.execute(
        "DELETE FROM audit WHERE idx IN (SELECT idx FROM audit WHERE idx <= ?1 ORDER BY idx LIMIT ?2)",
        params![to, PRUNE_CHUNK],
    )?;
    if (deleted as i64) < PRUNE_CHUNK {
        connection.execute("DELETE FROM checkpoints WHERE idx <= ?1", params![to])?;
        return Ok(true);
    }
    Ok(false)
}

/// A prune's range still (partly) stored, after a restart: its deletion goes on.
fn pending_deletion(connection: &Connection) -> Option<i64> {
    let prune = crate::audit_log::latest_prune(connection).ok()??;
    let last = crate::audit_log::pruned_last(Some(&prune));
    let first: Option<i64> = connection
        .query_row("SELECT MIN(idx) FROM audit", [], |row| row.get(0))
        .ok()?;
    first.filter(|first| *first <= last).map(|_| last)
}

fn write_group(
    connection: &mut Connection,
    group: &[Queued],
    next_index: &mut u64,
    prev: &mut String,
) -> Result<(), RuntimeError> {
    let transaction = connection.transaction()?;
    {
        let mut add_counter = transaction.prepare_cached(
            "INSERT INTO counters (rule, window_seconds, key_path, key_value, window_start, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET count = count + ?6",
        )?;
        let mut add_entry = transaction.prepare_cached(
            "INSERT INTO audit (idx, entry, hash, kind, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut add_bundle = transaction.prepare_cached(
            "INSERT INTO bundles (sequence, revision, bytes, activated_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut set_candidate = transaction.prepare_cached(
            "INSERT OR REPLACE INTO candidate (id, sequence, revision, bytes) VALUES (1, ?1, ?2, ?3)",
        )?;
        let mut clear_candidate = transaction.prepare_cached("DELETE FROM candidate")?;
        let mut set_rollout = transaction
            .prepare_cached("INSERT OR REPLACE INTO rollout (id, state) VALUES (1, ?1)")?;
        let mut clear_rollout = transaction.prepare_cached("DELETE FROM rollout")?;
        let mut drop_limit = transaction.prepare_cached(
            "DELETE FROM counters WHERE rule = ?1 AND window_seconds = ?2 AND key_path = ?3",
        )?;
        let mut drop_limits = |drops: &[LimitIdentity]| -> Result<(), rusqlite::Error> {
            for limit in drops {
                drop_limit.execute(params![
                    limit.rule,
                    limit.window_seconds.min(i64::MAX as u64) as i64,
                    limit.key.as_deref().unwrap_or(""),
                ])?;
            }
            Ok(())
        };
        let mut set_context = transaction.prepare_cached(
            "INSERT OR REPLACE INTO context (tenant, name, value) VALUES (?1, ?2, ?3)",
        )?;
        let mut unset_context =
            transaction.prepare_cached("DELETE FROM context WHERE tenant = ?1 AND name = ?2")?;
        let mut set_breaker = transaction
            .prepare_cached("INSERT OR REPLACE INTO breakers (policy, forced) VALUES (?1, ?2)")?;
        let mut release_breaker =
            transaction.prepare_cached("DELETE FROM breakers WHERE policy = ?1")?;
        let mut put_approval = transaction
            .prepare_cached("INSERT OR REPLACE INTO approvals (id, body) VALUES (?1, ?2)")?;
        for Queued { job, bodies } in group {
            let (entry, second) = match job {
                Job::Decision {
                    increments,
                    approvals,
                    entry,
                    ..
                } => {
                    for approval in approvals {
                        put_approval.execute(approval_row(approval))?;
                    }
                    for (key, count) in increments {
                        add_counter.execute(params![
                            key.limit.rule,
                            key.limit.window_seconds.min(i64::MAX as u64) as i64,
                            key.limit.key.as_deref().unwrap_or(""),
                            key.value,
                            key.window_start,
                            (*count).min(i64::MAX as u64) as i64,
                        ])?;
                    }
                    (entry, None)
                }
                Job::Activate {
                    sequence,
                    revision,
                    bytes,
                    approvals,
                    drops,
                    entry,
                    migration,
                    ..
                } => {
                    add_bundle.execute(params![
                        (*sequence).min(i64::MAX as u64) as i64,
                        revision,
                        bytes,
                        entry.time_ms
                    ])?;
                    clear_candidate.execute([])?;
                    clear_rollout.execute([])?;
                    drop_limits(drops)?;
                    for approval in approvals {
                        put_approval.execute(approval_row(approval))?;
                    }
                    (entry, migration.as_ref())
                }
                Job::Rollout {
                    state,
                    drops,
                    entry,
                    ..
                } => {
                    match state {
                        Some(state) => set_rollout.execute(params![state])?,
                        None => clear_rollout.execute([])?,
                    };
                    drop_limits(drops)?;
                    (entry, None)
                }
                Job::Candidate {
                    sequence,
                    revision,
                    bytes,
                    entry,
                    ..
                } => {
                    set_candidate.execute(params![
                        (*sequence).min(i64::MAX as u64) as i64,
                        revision,
                        bytes
                    ])?;
                    (entry, None)
                }
                Job::Context {
                    tenant,
                    changes,
                    entry,
                    ..
                } => {
                    for (name, value) in changes {
                        match value {
                            Some(value) => {
                                set_context.execute(params![tenant, name, value.to_string()])?
                            }
                            None => unset_context.execute(params![tenant, name])?,
                        };
                    }
                    (entry, None)
                }
                Job::Approvals {
                    approvals, entry, ..
                } => {
                    for approval in approvals {
                        put_approval.execute(approval_row(approval))?;
                    }
                    (entry, None)
                }
                Job::Breaker {
                    policy,
                    forced,
                    entry,
                    ..
                } => {
                    match forced {
                        Some(forced) => set_breaker.execute(params![
                            policy,
                            serde_json::to_value(forced)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        ])?,
                        None => release_breaker.execute(params![policy])?,
                    };
                    (entry, None)
                }
                Job::Entry { entry, .. } => (entry, None),
                Job::Flush(_) | Job::Prune(_) => continue,
            };
            for (entry, body) in std::iter::once(entry).chain(second).zip(bodies) {
                let (text, hash) = seal_text(*next_index, prev, entry, body);
                add_entry.execute(params![
                    (*next_index) as i64,
                    text,
                    hash,
                    entry.kind,
                    entry.time_ms
                ])?;
                *next_index += 1;
                *prev = hash;
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

/// The index of the last entry a checkpoint covers.
fn checkpointed_up_to(connection: &Connection) -> Option<u64> {
    connection
        .query_row("SELECT MAX(idx) FROM checkpoints", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten()
        .map(|i| i.max(0) as u64)
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An approval as its row's parameters: its id and its JSON.
fn approval_row(approval: &crate::approvals::Approval) -> (String, String) {
    (
        approval.id.clone(),
        serde_json::to_string(approval).unwrap_or_default(),
    )
}

/// A bundle that was active once: kept for rollback.
pub struct KeptBundle {
    pub sequence: u64,
    pub revision: String,
    pub activated_ms: i64,
    pub bytes: Vec<u8>,
}

/// How many activated bundles are kept for rollback (runtime.md §3.4).
pub const KEPT_BUNDLES: usize = 10;

/// The last [`KEPT_BUNDLES`] activations, newest (the active one) first.
pub fn kept_bundles(data: &Path) -> Result<Vec<KeptBundle>, RuntimeError> {
    let connection = Connection::open_with_flags(
        database_path(data),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut statement = connection.prepare(
        "SELECT sequence, revision, activated_ms, bytes FROM bundles ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map(params![KEPT_BUNDLES as i64], |row| {
        Ok(KeptBundle {
            sequence: row.get::<_, i64>(0)?.max(0) as u64,
            revision: row.get(1)?,
            activated_ms: row.get(2)?,
            bytes: row.get(3)?,
        })
    })?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(RuntimeError::from)
}

/// Reads the audit log's entries `(index, text, hash)` in order (for `audit verify`).
pub fn read_audit(data: &Path) -> Result<Vec<(u64, String, String)>, RuntimeError> {
    let path = database_path(data);
    if !path.exists() {
        return Err(RuntimeError::state(format!(
            "`{}` does not exist; is `{}` a server's --data directory?",
            path.display(),
            data.display()
        )));
    }
    let connection =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement = connection.prepare("SELECT idx, entry, hash FROM audit ORDER BY idx")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, i64>(0)? as u64, row.get(1)?, row.get(2)?))
    })?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(RuntimeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DAY: i64 = DAY_MS;

    fn submit(journal: &Journal, time_ms: i64, kind: &'static str, body: serde_json::Value) {
        let (done, committed) = oneshot::channel();
        journal
            .submit(Job::Entry {
                entry: PendingEntry {
                    time_ms,
                    kind,
                    body,
                },
                done,
            })
            .expect("submit");
        committed
            .blocking_recv()
            .expect("answered")
            .expect("committed");
    }

    /// `[audit] retain`: whole days older than the retention are pruned with a `prune` entry
    /// in the chain, and deleted a chunk at a time; `verify` passes while the deletion is under
    /// way and after it, and says where the kept log begins; `at` still knows what was in
    /// effect (from the prune's record), a time before the kept log is refused, and deleting a
    /// kept entry or the prune's record is still caught.
    #[test]
    fn retention_prunes_old_days_and_the_log_still_verifies() {
        let data = std::env::temp_dir().join(format!("polctl-retain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let (private, public, _) = polctl_bundle::generate_key([3; 32]).expect("key");
        let private =
            polctl_bundle::parse_private_key(std::str::from_utf8(&private).expect("utf-8"))
                .expect("private key");
        let public = polctl_bundle::parse_public_key(std::str::from_utf8(&public).expect("utf-8"))
            .expect("public key");
        let metrics = Metrics::default();
        let (journal, _, thread) =
            open(&data, 0, &metrics, Some(private), Some(90 * DAY)).expect("open");
        let now = wall_clock_ms();
        submit(
            &journal,
            now - 120 * DAY,
            "activate",
            json!({ "sequence": 1, "revision": "sha256:one", "name": "fleet", "by": "ops" }),
        );
        submit(
            &journal,
            now - 95 * DAY,
            "context",
            json!({ "set": { "mode": "read_only" } }),
        );
        // Enough old entries for the deletion to take several chunks.
        let old = 3 * PRUNE_CHUNK as usize;
        for i in 0..old {
            let (done, _) = oneshot::channel();
            journal
                .submit(Job::Entry {
                    entry: PendingEntry {
                        time_ms: now - 94 * DAY + i as i64,
                        kind: "decision",
                        body: json!({ "decision_id": format!("d-{i}") }),
                    },
                    done,
                })
                .expect("submit");
        }
        submit(
            &journal,
            now - 10 * DAY,
            "decision",
            json!({ "decision_id": "d-recent" }),
        );
        submit(&journal, now, "decision", json!({ "decision_id": "d-now" }));
        let last = old as u64 + 1;
        let (done, pruned) = oneshot::channel();
        journal.submit(Job::Prune(done)).expect("prune");
        pruned.blocking_recv().expect("answered").expect("pruned");

        // Right after the prune, with part of the range still stored.
        let report = crate::audit_log::verify(&data, Some(&public)).expect("verifies");
        assert_eq!(report.pruned_to, Some(last));
        assert!(
            read_audit(&data).expect("audit")[0].0 <= last,
            "the whole range went in one transaction"
        );
        let at = crate::audit_log::at(&data, now).expect("at now");
        assert_eq!(at["stable"]["sequence"], 1, "{at}");
        // Then the journal deletes the rest, a chunk every 20 ms.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while read_audit(&data).expect("audit")[0].0 <= last {
            assert!(
                std::time::Instant::now() < deadline,
                "the range was not deleted"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(journal);
        thread.join().expect("journal");

        let report = crate::audit_log::verify(&data, Some(&public)).expect("verifies");
        assert_eq!(report.pruned_to, Some(last));
        assert_eq!(report.entries, 3, "two kept entries and the prune entry");
        let entries = read_audit(&data).expect("audit");
        assert_eq!(entries.first().map(|e| e.0), Some(last + 1));
        let prune: serde_json::Value =
            serde_json::from_str(&entries.last().expect("prune").1).expect("JSON");
        assert_eq!(
            (
                &prune["kind"],
                &prune["body"]["first"],
                &prune["body"]["last"]
            ),
            (&json!("prune"), &json!(0), &json!(last))
        );
        // What was in effect is known after the pruned range...
        let at = crate::audit_log::at(&data, now).expect("at now");
        assert_eq!(at["stable"]["sequence"], 1, "{at}");
        assert_eq!(at["context"]["all_tenants"]["mode"], "read_only", "{at}");
        // ...and a time before the kept log is refused, not answered wrongly.
        let error = crate::audit_log::at(&data, now - 50 * DAY).expect_err("pruned");
        assert_eq!(error.code, "pruned");

        // Tampering is still caught: a kept entry deleted, then the prune record itself.
        let connection = Connection::open(database_path(&data)).expect("open");
        connection
            .execute("DELETE FROM audit WHERE idx = ?1", [last as i64 + 1])
            .expect("delete");
        assert!(crate::audit_log::verify(&data, Some(&public)).is_err());
        connection
            .execute("DELETE FROM audit WHERE kind = 'prune'", [])
            .expect("delete");
        assert!(crate::audit_log::verify(&data, Some(&public)).is_err());
        let _ = std::fs::remove_dir_all(&data);
    }
}
