//! The HTTP front end of runtime.md §3 over the engine: JSON in and out, every error as
//! `{"error": {"code", "message"}}`, request bodies bounded. Handlers parse, call the engine,
//! and wait for the journal before answering, so a response a client has seen is durable.

use crate::approvals::ApprovalState;
use crate::engine::Engine;
use crate::error::RuntimeError;
use crate::rollouts::RolloutAction;
use crate::tokens::{Access, Caller, Need};
use axum::body::Bytes;
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use polctl_rollout::plan::{parse_plan, Plan};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Server settings of the `[http]` section.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (1 MiB by default).
    pub body_limit: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_limit: 1024 * 1024,
        }
    }
}

/// What the handlers share.
pub struct App {
    pub engine: Arc<Engine>,
    pub access: Access,
    pub settings: HttpSettings,
}

type Shared = State<Arc<App>>;

/// The caller, if its token allows `need`; a refusal is written to the audit log (kind
/// `access`) before it is answered.
async fn authorize(
    app: &App,
    headers: &HeaderMap,
    need: Need,
    endpoint: &str,
) -> Result<Caller, RuntimeError> {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    match app.access.check(authorization, &need) {
        Ok(caller) => Ok(caller),
        Err(error) => {
            counted(app, &error);
            refused(app, &error, endpoint, None).await;
            Err(error)
        }
    }
}

/// Counts an error in the metrics.
fn counted(app: &App, error: &RuntimeError) {
    app.engine
        .metrics()
        .errors
        .get_or_create(&crate::metrics::ErrorLabels {
            code: error.code.to_owned(),
        })
        .inc();
}

/// Audits a refused caller (401, 403). If the log cannot be written the refusal stands.
async fn refused(app: &App, error: &RuntimeError, endpoint: &str, caller: Option<&str>) {
    let _ = app
        .engine
        .record(
            "access",
            json!({ "endpoint": endpoint, "status": error.status, "code": error.code, "token": caller }),
            now_ms(),
        )
        .await;
}

/// Requests in one batch at most.
const MAX_BATCH: usize = 1000;

impl IntoResponse for RuntimeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.to_json())).into_response()
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/decide/batch", post(decide_batch))
        .route("/v1/status", get(status))
        .route("/v1/bundles", axum::routing::put(upload_bundle))
        .route("/v1/rollouts", post(start_rollout))
        .route("/v1/rollouts/current", get(current_rollout))
        .route("/v1/rollouts/current/{action}", post(rollout_action))
        .route("/v1/outcomes", post(outcome))
        .route("/v1/tools", post(tools))
        .route("/v1/audit", get(audit_query))
        .route("/v1/breakers", get(list_breakers))
        .route("/v1/breakers/{policy}/{action}", post(force_breaker))
        .route("/v1/audit/at", get(audit_at))
        .route("/v1/rollback", post(rollback))
        .route("/v1/approvals", get(list_approvals))
        .route("/v1/approvals/{id}", get(show_approval))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/reject", post(reject))
        .route("/v1/context", get(show_context).put(set_context))
        .route("/v1/context/{name}", axum::routing::delete(unset_context))
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// Bundles are larger than decisions: uploads take up to 64 MiB.
const BUNDLE_LIMIT: usize = 64 * 1024 * 1024;

/// An oversized body is still read, and dropped, up to this many bytes, so that a client that
/// is still sending gets the 413 instead of a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a body of at most `limit` bytes.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, RuntimeError> {
    let mut collected = Vec::new();
    let mut total = 0usize;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| {
            RuntimeError::bad_request("bad_body", format!("cannot read the body: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= limit {
                collected.extend_from_slice(&data);
            } else if total > DRAIN_LIMIT {
                break;
            }
        }
    }
    if total > limit {
        return Err(RuntimeError::new(
            413,
            "body_too_large",
            format!("the request body is over the server's limit of {limit} bytes ([http] body_limit, 1 MiB by default)"),
        ));
    }
    Ok(Bytes::from(collected))
}

/// The body as JSON, or the error a client can act on.
/// A JSON body that may be left out (`{}` then).
async fn optional_body(app: &App, body: Body) -> Result<Value, RuntimeError> {
    let bytes = read_body(body, app.settings.body_limit).await?;
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::bad_request("bad_json", format!("the body is not JSON: {e}")))
}

async fn parse_body(app: &App, body: Body) -> Result<Value, RuntimeError> {
    let bytes = read_body(body, app.settings.body_limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::bad_request("bad_json", format!("the body is not JSON: {e}")))
}

async fn decide(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RuntimeError> {
    let started = std::time::Instant::now();
    let result = decide_one(&app, &headers, body).await;
    match &result {
        Ok(_) => app
            .engine
            .metrics()
            .response_seconds
            .observe(started.elapsed().as_secs_f64()),
        Err(error) => counted(&app, error),
    }
    result
}

async fn decide_one(app: &App, headers: &HeaderMap, body: Body) -> Result<Response, RuntimeError> {
    let caller = authorize(app, headers, Need::Decide, "/v1/decide").await?;
    let mut request = parse_body(app, body).await?;
    if let Err(error) = caller.pin(&mut request) {
        refused(app, &error, "/v1/decide", Some(&caller.name)).await;
        return Err(error);
    }
    let decided = app.engine.decide(&request, now_ms())?;
    app.engine
        .finish(decided.committed, &decided.stateful, now_ms())
        .await?;
    Ok(Json(decided.response).into_response())
}

async fn decide_batch(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Decide, "/v1/decide/batch").await?;
    let body = parse_body(&app, body).await?;
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "a batch is {\"requests\": [...]}",
        ));
    };
    // 400, not 413: the body may be small; what is wrong is the number of requests in it.
    if requests.len() > MAX_BATCH {
        return Err(RuntimeError::new(
            400,
            "batch_too_large",
            format!("a batch holds at most {MAX_BATCH} requests; split it"),
        ));
    }
    // In order, as if one after another: each decision sees the counters of those before it.
    let mut decisions = Vec::with_capacity(requests.len());
    let mut pending = Vec::new();
    for request in requests {
        let mut request = request.clone();
        if let Err(error) = caller.pin(&mut request) {
            refused(&app, &error, "/v1/decide/batch", Some(&caller.name)).await;
            decisions.push(error.to_json());
            continue;
        }
        match app.engine.decide(&request, now_ms()) {
            Ok(decided) => {
                pending.push((decided.committed, decided.stateful));
                decisions.push(serde_json::to_value(decided.response).unwrap_or(Value::Null));
            }
            Err(error) => decisions.push(error.to_json()),
        }
    }
    for (committed, stateful) in pending {
        app.engine.finish(committed, &stateful, now_ms()).await?;
    }
    Ok(Json(json!({ "decisions": decisions })).into_response())
}

async fn status(State(app): Shared, headers: HeaderMap) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Auditor, "/v1/status").await?;
    let engine = &app.engine;
    let candidate = engine.candidate().map(|bundle| {
        json!({ "sequence": bundle.sequence, "revision": bundle.revision, "name": bundle.name, "rules": bundle.rules })
    });
    let stable = engine.active().map(|active| {
        json!({
            "sequence": active.bundle.sequence,
            "revision": active.bundle.revision,
            "name": active.bundle.name,
            "rules": active.bundle.rules,
            "verified": active.bundle.verified,
            "activated_at": crate::audit::format_time(active.activated_ms),
        })
    });
    let data = engine.data().to_owned();
    let kept: Vec<Value> = tokio::task::spawn_blocking(move || crate::store::kept_bundles(&data))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .map(|k| {
            json!({
                "sequence": k.sequence,
                "revision": k.revision,
                "activated_at": crate::audit::format_time(k.activated_ms),
            })
        })
        .collect();
    Ok(Json(json!({
        "stable": stable,
        "candidate": candidate,
        "kept": kept,
        "rollout": rollout_summary(&engine.rollout_document(now_ms())),
        "last_migration": engine.last_migration(),
        "breakers": engine.breakers_document(),
        "state_backend": "sqlite",
        "decisions_since_start": engine.decisions(),
    })))
}

/// The rollout in `GET /v1/status`: where it is, without its events and figures.
fn rollout_summary(document: &Value) -> Value {
    if document.is_null() {
        return Value::Null;
    }
    let keys = [
        "rollout_id",
        "sequence",
        "phase",
        "stage",
        "traffic",
        "stage_elapsed_ms",
        "aborted",
    ];
    keys.iter()
        .map(|k| {
            (
                k.to_string(),
                document.get(*k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn upload_bundle(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/bundles").await?;
    let bytes = read_body(body, BUNDLE_LIMIT).await?;
    let report = app
        .engine
        .upload(bytes.to_vec(), &caller.name, now_ms())
        .await?;
    Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null)))
}

async fn start_rollout(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/rollouts").await?;
    let body = parse_body(&app, body).await?;
    let Some(sequence) = body.get("sequence").and_then(Value::as_u64) else {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "a rollout is {\"sequence\": N, \"plan\": {...}} (the candidate's sequence)",
        ));
    };
    if let Some(plan) = body.get("plan").filter(|plan| !plan.is_null()) {
        let plan = plan_of(plan)?;
        let rollout = app
            .engine
            .start_rollout(sequence, plan, &caller.name, now_ms())
            .await?;
        return Ok(Json(rollout));
    }
    app.engine.switch(sequence, &caller.name, now_ms()).await?;
    Ok(Json(
        json!({ "sequence": sequence, "state": "completed", "plan": null }),
    ))
}

/// A plan as `POST /v1/rollouts` carries it: the keys of `rollout.toml` as a JSON object, or
/// the file's text as a string.
fn plan_of(plan: &Value) -> Result<Plan, RuntimeError> {
    let invalid = |message: String| RuntimeError::bad_request("invalid_plan", message);
    match plan {
        Value::String(text) => parse_plan(text).map_err(|e| {
            invalid(format!(
                "the plan, line {}, column {}: {} ({})",
                e.line, e.column, e.message, e.help
            ))
        }),
        Value::Object(_) => {
            let text = toml::to_string(plan).map_err(|e| {
                invalid(format!("the plan cannot be read as rollout.toml keys: {e}"))
            })?;
            parse_plan(&text).map_err(|e| invalid(format!("the plan: {} ({})", e.message, e.help)))
        }
        _ => Err(invalid(
            "`plan` is the rollout plan: the keys of rollout.toml as an object (runtime.md §4.1)"
                .to_owned(),
        )),
    }
}

async fn current_rollout(
    State(app): Shared,
    headers: HeaderMap,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Auditor, "/v1/rollouts/current").await?;
    match app.engine.rollout_document(now_ms()) {
        Value::Null => Err(RuntimeError::new(
            404,
            "no_rollout",
            "no rollout has been started on this server; start one with `polctl push BUNDLE --plan PLAN.toml`",
        )),
        document => Ok(Json(document)),
    }
}

async fn rollout_action(
    State(app): Shared,
    headers: HeaderMap,
    Segments(action): Segments<String>,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/rollouts/current").await?;
    let body = optional_body(&app, body).await?;
    let action = match action.as_str() {
        "promote" => RolloutAction::Promote {
            full: body.get("full").and_then(Value::as_bool).unwrap_or(false),
        },
        "pause" => RolloutAction::Pause,
        "resume" => RolloutAction::Resume,
        "abort" => RolloutAction::Abort {
            reason: body
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        other => {
            return Err(RuntimeError::new(
                404,
                "not_found",
                format!(
                    "no rollout action `{other}`; the actions are promote, pause, resume and abort"
                ),
            ))
        }
    };
    let document = app
        .engine
        .rollout_action(action, &caller.name, now_ms())
        .await?;
    Ok(Json(document))
}

/// `POST /v1/tools`: the tools this agent may be shown.
async fn tools(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Decide, "/v1/tools").await?;
    let mut request = parse_body(&app, body).await?;
    if let Err(error) = caller.pin(&mut request) {
        refused(&app, &error, "/v1/tools", Some(&caller.name)).await;
        return Err(error);
    }
    Ok(Json(app.engine.tools(&request).await?))
}

async fn outcome(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Decide, "/v1/outcomes").await?;
    let body = parse_body(&app, body).await?;
    let (Some(session), Some(outcome)) = (
        body.get("session").and_then(Value::as_str),
        body.get("outcome").and_then(Value::as_str),
    ) else {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "an outcome is {\"session\": \"...\", \"outcome\": \"completed\" | \"failed\"}",
        ));
    };
    let completed = match outcome {
        "completed" => true,
        "failed" => false,
        other => {
            return Err(RuntimeError::bad_request(
                "invalid_request",
                format!("`outcome` is \"completed\" or \"failed\", not {other:?}"),
            ))
        }
    };
    let cohort = app.engine.report_outcome(session, completed);
    Ok(Json(
        json!({ "counted": cohort.is_some(), "cohort": cohort }),
    ))
}

async fn rollback(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/rollback").await?;
    let body = optional_body(&app, body).await?;
    let to_sequence = match body.get("to_sequence") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            RuntimeError::bad_request("invalid_request", "`to_sequence` is a sequence number")
        })?),
    };
    let bundle = app
        .engine
        .rollback(to_sequence, &caller.name, now_ms())
        .await?;
    Ok(Json(
        json!({ "sequence": bundle.sequence, "revision": bundle.revision }),
    ))
}

/// A request's query parameters; a query that does not parse is a JSON 400 like every error.
struct QueryMap(std::collections::HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryMap {
    type Rejection = RuntimeError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<std::collections::HashMap<String, String>>::from_request_parts(
            parts, state,
        )
        .await
        .map(|axum::extract::Query(map)| QueryMap(map))
        .map_err(|e| RuntimeError::bad_request("invalid_query", format!("the query string: {e}")))
    }
}

/// Path segments; one that does not decode is a JSON 400 like every error.
struct Segments<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Segments<T>
{
    type Rejection = RuntimeError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Segments(value))
            .map_err(|e| RuntimeError::bad_request("invalid_path", format!("the path: {e}")))
    }
}

/// `GET /v1/openapi.json`: the API as an OpenAPI 3.1 document.
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// The OpenAPI 3.1 document of this API (kept true by a test and by schemathesis in CI).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /v1/breakers`: every breaker that has seen a call or was forced.
async fn list_breakers(
    State(app): Shared,
    headers: HeaderMap,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Auditor, "/v1/breakers").await?;
    Ok(Json(json!({ "breakers": app.engine.breakers_document() })))
}

/// `POST /v1/breakers/{policy}/{open,close,release}`.
async fn force_breaker(
    State(app): Shared,
    headers: HeaderMap,
    Segments((policy, action)): Segments<(String, String)>,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/breakers").await?;
    use polctl_rollout::breaker::Forced;
    let forced = match action.as_str() {
        "open" => Some(Forced::Open),
        "close" => Some(Forced::Closed),
        "release" => None,
        other => {
            return Err(RuntimeError::new(
                404,
                "not_found",
                format!("no breaker action `{other}`; the actions are open, close and release"),
            ))
        }
    };
    let breakers = app
        .engine
        .force_breaker(&policy, forced, &caller.name, now_ms())
        .await?;
    Ok(Json(json!({ "breakers": breakers })))
}

/// A time parameter of the audit endpoints (RFC 3339).
fn time_param(
    query: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<Option<i64>, RuntimeError> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => crate::audit::parse_time_ms(text).map(Some).ok_or_else(|| {
            RuntimeError::bad_request(
                "invalid_time",
                format!("`{name}` is an RFC 3339 time like 2026-12-01T14:03:00Z, not {text:?}"),
            )
        }),
    }
}

/// Audit entries per page at most.
const AUDIT_PAGE: usize = 10_000;

/// `GET /v1/audit?kind=&agent=&tool=&decision=&since=&until=&after=&limit=`: matching entries
/// in log order, a page at a time (`next_after` continues).
async fn audit_query(
    State(app): Shared,
    headers: HeaderMap,
    QueryMap(query): QueryMap,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Auditor, "/v1/audit").await?;
    let number = |name: &str| -> Result<Option<u64>, RuntimeError> {
        query
            .get(name)
            .map(|text| {
                text.parse::<u64>().map_err(|_| {
                    RuntimeError::bad_request(
                        "invalid_request",
                        format!("`{name}` is a whole number"),
                    )
                })
            })
            .transpose()
    };
    let selection = crate::audit_log::Query {
        kind: query.get("kind").cloned(),
        agent: query.get("agent").cloned(),
        tool: query.get("tool").cloned(),
        decision: query.get("decision").cloned(),
        since_ms: time_param(&query, "since")?,
        until_ms: time_param(&query, "until")?,
        after: number("after")?,
        limit: number("limit")?
            .map_or(1000, |l| l as usize)
            .min(AUDIT_PAGE),
    };
    let data = app.engine.data().to_owned();
    let limit = selection.limit;
    let entries = tokio::task::spawn_blocking(move || crate::audit_log::query(&data, &selection))
        .await
        .map_err(|e| RuntimeError::new(500, "internal", format!("the query failed: {e}")))??;
    let next_after = (entries.len() == limit)
        .then(|| entries.last().and_then(|e| e["index"].as_u64()))
        .flatten();
    Ok(Json(
        json!({ "entries": entries, "next_after": next_after }),
    ))
}

/// `GET /v1/audit/at?time=T`: what was in effect at T.
async fn audit_at(
    State(app): Shared,
    headers: HeaderMap,
    QueryMap(query): QueryMap,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Auditor, "/v1/audit/at").await?;
    let Some(time_ms) = time_param(&query, "time")? else {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "`time` is required: GET /v1/audit/at?time=2026-12-01T14:03:00Z",
        ));
    };
    let data = app.engine.data().to_owned();
    let answer = tokio::task::spawn_blocking(move || crate::audit_log::at(&data, time_ms))
        .await
        .map_err(|e| RuntimeError::new(500, "internal", format!("the query failed: {e}")))??;
    Ok(Json(answer))
}

/// `GET /v1/approvals?state=pending`.
async fn list_approvals(
    State(app): Shared,
    headers: HeaderMap,
    QueryMap(query): QueryMap,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::ReadApprovals, "/v1/approvals").await?;
    let state = match query.get("state") {
        None => None,
        Some(text) => Some(ApprovalState::parse(text).ok_or_else(|| {
            RuntimeError::bad_request(
                "invalid_request",
                format!("`state={text}`: the states are pending, approved, rejected, expired and consumed"),
            )
        })?),
    };
    let approvals: Vec<Value> = app
        .engine
        .approvals(state, now_ms())
        .iter()
        .map(|a| a.to_json())
        .collect();
    Ok(Json(json!({ "approvals": approvals })))
}

async fn show_approval(
    State(app): Shared,
    headers: HeaderMap,
    Segments(id): Segments<String>,
) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::ReadApprovals, "/v1/approvals").await?;
    match app.engine.approval(&id, now_ms()) {
        Some(approval) => Ok(Json(approval.to_json())),
        None => Err(RuntimeError::new(
            404,
            "unknown_approval",
            format!("no approval `{id}`"),
        )),
    }
}

/// The `group` (and for a rejection the `reason`) of an approver's body.
async fn approver_body(
    app: &App,
    body: Body,
    rejecting: bool,
) -> Result<(String, Option<String>), RuntimeError> {
    let body = parse_body(app, body).await?;
    let group = body.get("group").and_then(Value::as_str).ok_or_else(|| {
        RuntimeError::bad_request("invalid_request", "the body names the approver `group`")
    })?;
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if rejecting && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "a rejection gives a `reason` (the agent and the audit log show it)",
        ));
    }
    Ok((group.to_owned(), reason))
}

async fn approve(
    State(app): Shared,
    headers: HeaderMap,
    Segments(id): Segments<String>,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    approver_action(&app, &headers, &id, body, false).await
}

async fn reject(
    State(app): Shared,
    headers: HeaderMap,
    Segments(id): Segments<String>,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    approver_action(&app, &headers, &id, body, true).await
}

/// Approve or reject for the group the body names; the token must be that group's approver.
async fn approver_action(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    body: Body,
    rejecting: bool,
) -> Result<Json<Value>, RuntimeError> {
    let (group, reason) = approver_body(app, body, rejecting).await?;
    let need = Need::Approver(group.clone());
    let caller = authorize(app, headers, need, "/v1/approvals").await?;
    let reason = if rejecting { reason.as_deref() } else { None };
    let approval = app
        .engine
        .decide_approval(id, &group, reason, &caller.name, now_ms())
        .await?;
    Ok(Json(approval.to_json()))
}

async fn show_context(State(app): Shared, headers: HeaderMap) -> Result<Json<Value>, RuntimeError> {
    authorize(&app, &headers, Need::Auditor, "/v1/context").await?;
    Ok(Json(app.engine.context_document()))
}

/// `PUT /v1/context` `{"tenant": "acme"?, "values": {"mode": "incident"}}`.
async fn set_context(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/context").await?;
    let body = parse_body(&app, body).await?;
    let tenant = match body.get("tenant") {
        None | Some(Value::Null) => None,
        Some(Value::String(tenant)) => Some(tenant.clone()),
        Some(_) => {
            return Err(RuntimeError::bad_request(
                "invalid_request",
                "`tenant` is a string",
            ))
        }
    };
    let Some(values) = body
        .get("values")
        .and_then(Value::as_object)
        .filter(|v| !v.is_empty())
    else {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "the body is {\"values\": {\"NAME\": VALUE, ...}, \"tenant\": \"T\" (optional)}",
        ));
    };
    let changes = values
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let document = app
        .engine
        .change_context(tenant.as_deref(), changes, &caller.name, now_ms())
        .await?;
    Ok(Json(document))
}

/// `DELETE /v1/context/{name}?tenant=T`.
async fn unset_context(
    State(app): Shared,
    headers: HeaderMap,
    Segments(name): Segments<String>,
    QueryMap(query): QueryMap,
) -> Result<Json<Value>, RuntimeError> {
    let caller = authorize(&app, &headers, Need::Admin, "/v1/context").await?;
    let document = app
        .engine
        .change_context(
            query.get("tenant").map(String::as_str),
            vec![(name, None)],
            &caller.name,
            now_ms(),
        )
        .await?;
    Ok(Json(document))
}

async fn metrics(State(app): Shared) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.engine.metrics().encode(),
    )
        .into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): Shared) -> Result<Json<Value>, RuntimeError> {
    match app.engine.active() {
        Some(active) => Ok(Json(
            json!({ "status": "ready", "sequence": active.bundle.sequence }),
        )),
        None => Err(RuntimeError::new(
            503,
            "no_bundle",
            "no bundle is active yet",
        )),
    }
}

async fn not_found() -> RuntimeError {
    RuntimeError::new(404, "not_found", "no such endpoint; see docs/http-api.md")
}

async fn method_not_allowed() -> RuntimeError {
    RuntimeError::new(
        405,
        "method_not_allowed",
        "this endpoint does not take that method; see docs/http-api.md",
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The routes `router` declares, as (path, method), read from this file's source.
    fn routes() -> BTreeSet<(String, String)> {
        let source = include_str!("http.rs");
        let start = source.find("pub fn router").expect("router");
        let end = start + source[start..].find(".fallback(").expect("fallback");
        let mut routes = BTreeSet::new();
        for line in source[start..end].lines() {
            let Some(rest) = line.trim().strip_prefix(".route(\"") else {
                continue;
            };
            let (path, handlers) = rest.split_once('"').expect("a quoted path");
            for method in ["get", "post", "put", "delete"] {
                if handlers.contains(&format!("{method}(")) {
                    routes.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
        routes
    }

    #[test]
    fn the_openapi_document_lists_every_route_and_only_those() {
        let document: serde_json::Value =
            serde_json::from_str(super::OPENAPI).expect("the document is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                assert!(
                    operation["responses"]["default"].is_object(),
                    "{method} {path} documents its errors"
                );
                documented.insert((path.clone(), method.clone()));
            }
        }
        assert_eq!(routes(), documented);
        // Every schema a document refers to is defined.
        let text = super::OPENAPI;
        for reference in text.split("\"$ref\": \"#/components/").skip(1) {
            let name = reference.split('"').next().expect("a reference");
            let (kind, name) = name.split_once('/').expect("kind/name");
            assert!(
                document["components"][kind][name].is_object(),
                "{kind}/{name} is defined"
            );
        }
    }
}
