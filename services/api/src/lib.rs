//! The `api` role: Mailfold's HTTP listener.
//!
//! # Endpoints
//!
//! - `GET /healthz`: the process is up and serving HTTP (liveness). Always `200`.
//! - `GET /readyz`: the directory answers (readiness). `200`, or `503` while it does not, so
//!   a load balancer stops sending work to a replica that could only answer "try later".
//! - `GET /metrics`: every registered series in the Prometheus text format.
//!
//! Every other path is a `404` with the JSON error body all Mailfold HTTP errors share:
//! `{"error": {"code": "...", "message": "..."}}`. The tenant and operator JSON API under
//! `/v1` arrives with its own issue; this crate is where it will live.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mailfold_directory::Directory;
use mailfold_telemetry::Metrics;
use serde_json::json;
use tokio::net::TcpListener;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The directory, for readiness.
    pub directory: Arc<Directory>,
    /// The process's metrics.
    pub metrics: Metrics,
}

/// The router with every endpoint.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Serves HTTP on `listener` until `shutdown` completes, then lets requests in flight finish.
// TODO: no request-header or body timeouts yet; they come with the /v1 JSON API (its issue),
// and until then docs/configuration.md says to keep this listener on a private network.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<ApiState>) -> Response {
    match state.directory.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        // The cause is logged by the directory; the body stays generic.
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "directory unavailable",
        ),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// The JSON error body every Mailfold HTTP error uses.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}
