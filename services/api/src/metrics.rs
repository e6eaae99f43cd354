//! The API role's Prometheus series: requests by route and status, their duration, and logins.
//!
//! The `route` label is the route's template (`/v1/domains/{domain}/aliases`), never the path
//! as sent, so the number of series stays fixed whatever clients ask for.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::ApiState;

/// The series of the API role.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    logins: IntCounterVec,
}

impl ApiMetrics {
    /// Registers the series.
    pub fn new(registry: &Registry) -> ApiMetrics {
        // Constant names, labels and buckets: the definitions cannot be invalid.
        let requests = IntCounterVec::new(
            Opts::new(
                "mailfold_api_requests_total",
                "HTTP requests by route template, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid counter definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mailfold_api_request_duration_seconds",
                "Time to answer an HTTP request, by route template.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("valid histogram definition");
        let logins = IntCounterVec::new(
            Opts::new(
                "mailfold_api_logins_total",
                "API credential checks by method (basic, bearer, operator, malformed) and result.",
            ),
            &["method", "result"],
        )
        .expect("valid counter definition");
        // Every login outcome is on the page from the start, at 0, so that rates and alerts
        // on it work before the first failure.
        for method in ["basic", "bearer", "operator", "malformed"] {
            for result in ["accepted", "refused", "throttled", "unavailable"] {
                logins.with_label_values(&[method, result]);
            }
        }
        let metrics = ApiMetrics {
            requests,
            duration,
            logins,
        };
        // A second registration (two listeners share one registry) keeps the first.
        let _ = registry.register(Box::new(metrics.requests.clone()));
        let _ = registry.register(Box::new(metrics.duration.clone()));
        let _ = registry.register(Box::new(metrics.logins.clone()));
        metrics
    }

    /// Counts a credential check.
    pub fn login(&self, method: &str, result: &str) {
        self.logins.with_label_values(&[method, result]).inc();
    }
}

/// Middleware: times each request and counts it by route, method and status.
pub async fn track(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // Only the methods the API knows become label values; anything else is "other".
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => {
            known.to_string()
        }
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.api_metrics();
    metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    metrics
        .duration
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}
