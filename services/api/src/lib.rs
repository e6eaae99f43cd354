//! The `api` role: Mailfold's HTTP listener, the JSON API for tenants and operators.
//!
//! # Endpoints
//!
//! - `GET /healthz`: the process is up and serving HTTP (liveness). Always `200`.
//! - `GET /readyz`: the directory answers (readiness). `200`, or `503` while it does not.
//! - `GET /metrics`: every registered series in the Prometheus text format.
//! - `GET /v1/openapi.json`: the OpenAPI 3 document of everything under `/v1`.
//! - `/v1/tokens`, `/v1/domains/...`: the tenant API ([`tenant`]).
//! - `/v1/admin/...`: the operator API ([`operator`]).
//!
//! Every error, unknown paths included, is JSON: `{"error": {"code": "...", "message": "..."}}`
//! ([`error`]).
//!
//! # Layout
//!
//! - [`server`]: the accept loop on hyper: TLS, connection limits, header and request timeouts.
//! - [`auth`]: who is calling (Basic, tenant bearer tokens, the operator token) and the throttle.
//! - [`input`]: the capped JSON body read field by field, and paging.
//! - [`tenant`], [`operator`]: the handlers; [`views`]: the JSON shapes they return.
//! - [`audit`]: the audit event every change writes; [`metrics`]: requests, durations, logins.
//! - [`openapi`]: the OpenAPI document and its Markdown rendering in docs/api.md.
//!
//! # Invariants
//!
//! - A tenant administrator never reads or changes another tenant's objects: paths are checked
//!   against the caller's tenant first (another tenant's domain is `404`, as a missing one),
//!   and alias writes carry the administrator's own directory identity, which the directory's
//!   access rules confine again.
//! - Every body is read with a size cap, every request head and request with a time limit.
//! - Answers never carry DNs, paths, password hashes or internal errors; those go to the log.

pub mod audit;
pub mod auth;
pub mod error;
pub mod input;
pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod server;
pub mod tenant;
pub mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mailfold_directory::{Directory, Mailbox};
use mailfold_net::LoginThrottle;
use mailfold_store::{QuotaLimit, Store, Usage};
use mailfold_telemetry::Metrics;
use serde_json::json;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use metrics::ApiMetrics;
pub use server::ServerOptions;

/// How a new mailbox's shard is chosen when neither the request, its domain nor its tenant
/// names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardPolicy {
    /// The first configured shard, by name.
    #[default]
    First,
    /// Spread over every configured shard by a hash of the address.
    Spread,
}

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The operator's bearer token; `None` closes the operator API.
    pub operator_token: Option<String>,
    /// How long a tenant token lives.
    pub token_lifetime: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// The configured shard ids, sorted.
    pub shards: Vec<String>,
    /// Placement of new mailboxes.
    pub shard_policy: ShardPolicy,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    shared: Arc<Shared>,
}

struct Shared {
    directory: Arc<Directory>,
    metrics: Metrics,
    store: Store,
    settings: ApiSettings,
    throttle: LoginThrottle,
    api_metrics: ApiMetrics,
}

impl ApiState {
    /// The state of the API role; registers its series in `metrics`.
    pub fn new(
        directory: Arc<Directory>,
        metrics: Metrics,
        store: Store,
        settings: ApiSettings,
        throttle: LoginThrottle,
    ) -> ApiState {
        let api_metrics = ApiMetrics::new(metrics.registry());
        ApiState {
            shared: Arc::new(Shared {
                directory,
                metrics,
                store,
                settings,
                throttle,
                api_metrics,
            }),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.shared.directory
    }

    /// The settings.
    pub fn settings(&self) -> &ApiSettings {
        &self.shared.settings
    }

    /// The failed-login throttle.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.shared.throttle
    }

    /// The API's series.
    pub fn api_metrics(&self) -> &ApiMetrics {
        &self.shared.api_metrics
    }

    /// Counts a credential check.
    pub fn record_login(&self, method: &str, result: &str) {
        self.shared.api_metrics.login(method, result);
    }

    /// The usage of each mailbox, `None` where its Maildir cannot be read; a mailbox that has
    /// never received mail has none yet and uses nothing.
    pub async fn usage(&self, mailboxes: &[Mailbox]) -> Vec<Option<Usage>> {
        let store = self.shared.store.clone();
        let wanted: Vec<(String, String, QuotaLimit)> = mailboxes
            .iter()
            .map(|m| {
                let limit = QuotaLimit {
                    bytes: m.quota_bytes,
                    messages: m.quota_messages,
                };
                (m.shard.clone(), m.store.clone(), limit)
            })
            .collect();
        let count = wanted.len();
        // Reading maildirsize is file I/O: off the async threads.
        tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(shard, path, limit)| {
                    let maildir = store.mailbox(&shard, &path, limit).ok()?;
                    if !maildir.root().join("cur").is_dir() {
                        return Some(Usage::default());
                    }
                    maildir.usage().ok()
                })
                .collect()
        })
        .await
        .unwrap_or_else(|_| vec![None; count])
    }
}

/// The router with every endpoint.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi::document))
        .merge(tenant::routes())
        .merge(operator::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(state), options, shutdown).await
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<ApiState>) -> Response {
    match state.directory().ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        // The cause is logged by the directory; the body stays generic.
        Err(_) => ApiError::unavailable().into_response(),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        state.shared.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::not_found().into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use mailfold_directory::{BackendConfig, CacheConfig, DirectoryConfig, LdifConfig};
    use serde_json::Value;
    use tower::ServiceExt;

    /// A router over an LDIF directory holding only the suffix: enough to route requests.
    fn bare_router() -> (Router, tempfile::TempDir) {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("directory.ldif");
        std::fs::write(&path, "dn: dc=x\nobjectClass: dcObject\ndc: x\n").unwrap();
        let config = DirectoryConfig {
            base_dn: "dc=x".into(),
            backend: BackendConfig::Ldif(LdifConfig { path, seed: None }),
            cache: CacheConfig::default(),
            max_alias_depth: 8,
            recipient_delimiter: None,
        };
        let metrics = Metrics::new();
        let directory = Arc::new(Directory::open(&config, metrics.registry()).unwrap());
        let settings = ApiSettings {
            operator_token: Some("t".repeat(40)),
            token_lifetime: Duration::from_secs(60),
            max_body_bytes: 1024,
            shards: vec!["local".into()],
            shard_policy: ShardPolicy::First,
        };
        let policy = mailfold_net::LoginPolicy {
            failure_delay: Duration::ZERO,
            ..mailfold_net::LoginPolicy::default()
        };
        let state = ApiState::new(
            directory,
            metrics,
            Store::new(Default::default()),
            settings,
            LoginThrottle::new(policy),
        );
        (router(state), folder)
    }

    async fn status(router: &Router, method: &Method, path: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The documented paths with their parameters filled in, and their documented methods.
    fn documented() -> Vec<(String, Vec<Method>)> {
        let document: Value = serde_json::from_str(openapi::DOCUMENT).unwrap();
        document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(path, item)| {
                let concrete = path
                    .replace("{domain}", "x.test")
                    .replace("{address}", "a@x.test")
                    .replace("{tenant}", "t")
                    .replace("{login}", "l");
                let methods = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|m| Method::from_bytes(m.to_uppercase().as_bytes()).unwrap())
                    .collect();
                (concrete, methods)
            })
            .collect()
    }

    #[tokio::test]
    async fn every_documented_operation_is_routed_and_asks_for_credentials() {
        let (router, _folder) = bare_router();
        for (path, methods) in documented() {
            for method in methods {
                let (status, body) = status(&router, &method, &path).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
                assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
            }
        }
    }

    #[tokio::test]
    async fn undocumented_methods_on_documented_paths_are_405() {
        let (router, _folder) = bare_router();
        for (path, methods) in documented() {
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ] {
                if methods.contains(&method) {
                    continue;
                }
                let (status, body) = status(&router, &method, &path).await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(
                    body["error"]["code"], "method_not_allowed",
                    "{method} {path}"
                );
            }
        }
    }

    #[tokio::test]
    async fn unknown_paths_are_json_404s() {
        let (router, _folder) = bare_router();
        for path in [
            "/",
            "/v2/domains",
            "/v1/domains/x.test/nothing",
            "/v1/admin",
        ] {
            let (status, body) = status(&router, &Method::GET, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body["error"]["code"], "not_found", "{path}");
        }
    }
}
