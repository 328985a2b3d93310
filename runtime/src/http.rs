//! The HTTP front end of runtime.md §3 over the engine: JSON in and out, every error as
//! `{"error": {"code", "message"}}`, request bodies bounded. Handlers parse, call the engine,
//! and wait for the journal before answering, so a response a client has seen is durable.

use crate::engine::{wait, Engine};
use crate::error::RuntimeError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
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

pub fn router(engine: Arc<Engine>, settings: &HttpSettings) -> Router {
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/decide/batch", post(decide_batch))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .with_state(engine)
}

/// The body as JSON, or the error a client can act on.
fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, RuntimeError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RuntimeError::new(
                413,
                "body_too_large",
                "the request body is over the server's limit ([http] body_limit, 1 MiB by default)",
            )
        } else {
            RuntimeError::bad_request("bad_body", format!("cannot read the body: {rejection}"))
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RuntimeError::bad_request("bad_json", format!("the body is not JSON: {e}")))
}

async fn decide(
    State(engine): State<Arc<Engine>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RuntimeError> {
    let request = parse_body(body)?;
    let decided = engine.decide(&request, now_ms())?;
    wait(decided.committed).await?;
    Ok(Json(decided.response).into_response())
}

async fn decide_batch(
    State(engine): State<Arc<Engine>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RuntimeError> {
    let body = parse_body(body)?;
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return Err(RuntimeError::bad_request(
            "invalid_request",
            "a batch is {\"requests\": [...]}",
        ));
    };
    if requests.len() > MAX_BATCH {
        return Err(RuntimeError::new(
            413,
            "batch_too_large",
            format!("a batch holds at most {MAX_BATCH} requests; split it"),
        ));
    }
    // In order, as if one after another: each decision sees the counters of those before it.
    let mut decisions = Vec::with_capacity(requests.len());
    let mut pending = Vec::new();
    for request in requests {
        match engine.decide(request, now_ms()) {
            Ok(decided) => {
                pending.push(decided.committed);
                decisions.push(serde_json::to_value(decided.response).unwrap_or(Value::Null));
            }
            Err(error) => decisions.push(error.to_json()),
        }
    }
    for committed in pending {
        wait(committed).await?;
    }
    Ok(Json(json!({ "decisions": decisions })).into_response())
}

async fn status(State(engine): State<Arc<Engine>>) -> Json<Value> {
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
    Json(json!({
        "stable": stable,
        "candidate": null,
        "rollout": null,
        "state_backend": "sqlite",
        "decisions_since_start": engine.decisions(),
    }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(engine): State<Arc<Engine>>) -> Result<Json<Value>, RuntimeError> {
    match engine.active() {
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
