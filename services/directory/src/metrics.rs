//! The directory's Prometheus series, registered once per [`crate::Directory`].

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and histograms of directory traffic.
#[derive(Clone)]
pub(crate) struct DirectoryMetrics {
    /// `mailfold_directory_requests_total{backend, operation, result}`.
    requests: IntCounterVec,
    /// `mailfold_directory_request_duration_seconds{backend, operation}`.
    duration: HistogramVec,
    /// `mailfold_directory_cache_hits_total{kind}`.
    cache_hits: IntCounterVec,
    /// `mailfold_directory_cache_misses_total{kind}`.
    cache_misses: IntCounterVec,
    /// `mailfold_auth_attempts_total{service, result}`.
    logins: IntCounterVec,
}

impl DirectoryMetrics {
    /// Creates the series and registers them; a second registration of the same names (two
    /// directories on one registry, as in tests) keeps the series unregistered but working.
    pub(crate) fn new(registry: &Registry) -> DirectoryMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            // The names and labels are constants, valid by construction.
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
        };
        let metrics = DirectoryMetrics {
            requests: counter(
                "mailfold_directory_requests_total",
                "Requests sent to the directory backend, by operation and result.",
                &["backend", "operation", "result"],
            ),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "mailfold_directory_request_duration_seconds",
                    "Time the directory backend took to answer.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                ]),
                &["backend", "operation"],
            )
            .expect("valid histogram definition"),
            cache_hits: counter(
                "mailfold_directory_cache_hits_total",
                "Routing answers served from the cache.",
                &["kind"],
            ),
            cache_misses: counter(
                "mailfold_directory_cache_misses_total",
                "Routing answers that had to be asked of the backend.",
                &["kind"],
            ),
            logins: counter(
                "mailfold_auth_attempts_total",
                "Login attempts checked against the directory, by service and result.",
                &["service", "result"],
            ),
        };
        let _ = registry.register(Box::new(metrics.requests.clone()));
        let _ = registry.register(Box::new(metrics.duration.clone()));
        let _ = registry.register(Box::new(metrics.cache_hits.clone()));
        let _ = registry.register(Box::new(metrics.cache_misses.clone()));
        let _ = registry.register(Box::new(metrics.logins.clone()));
        metrics
    }

    pub(crate) fn request(&self, backend: &str, operation: &str, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "error" };
        self.requests
            .with_label_values(&[backend, operation, result])
            .inc();
        self.duration
            .with_label_values(&[backend, operation])
            .observe(seconds);
    }

    pub(crate) fn cache(&self, kind: &str, hit: bool) {
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.with_label_values(&[kind]).inc();
    }

    pub(crate) fn login(&self, service: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.logins.with_label_values(&[service, result]).inc();
    }
}
