//! Logging and metrics set-up shared by every Mailfold role.
//!
//! # Layout
//!
//! - [`init_logging`]: the tracing subscriber, text or JSON lines on standard error, filtered by
//!   a level or an `EnvFilter` directive (`RUST_LOG` overrides the configuration).
//! - [`Metrics`]: the process's Prometheus registry, which each role registers its series in,
//!   and [`Metrics::render`] for `/metrics`.
//! - [`mail`]: [`MailMetrics`], the mailgraph series (received, delivered, sent, bounced,
//!   rejected, spam, virus by tenant) that every role counts into, one set per process.
//! - [`TenantLabels`]: the capped `tenant` label values.
//!
//! # Invariants
//!
//! - Series are named `mailfold_<area>_<what>_<unit>` in base units, counters end in
//!   `_total`; docs/metrics.md lists every one.
//! - No label value comes from what a client sends unchecked: tenants are capped, every other
//!   label is a fixed set (no user names, addresses or IPs).

pub mod mail;

use prometheus::{Encoder, IntGauge, Opts, Registry, TextEncoder};
use tracing_subscriber::EnvFilter;

pub use mail::{MailMetrics, NO_TENANT, Rejection};

/// Distinct tenant labels when nothing else is configured (`[metrics] max_tenants`).
pub const DEFAULT_MAX_TENANTS: usize = 1000;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// A logging set-up that could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The level or filter directive does not parse.
    #[error("invalid log filter {filter:?}: {reason}")]
    Filter {
        /// The directive.
        filter: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Checks a filter directive (`info`, `mailfold_directory=debug,warn`) without installing it.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter {
        filter: filter.to_string(),
        reason: e.to_string(),
    })
}

/// Installs the global subscriber. `RUST_LOG`, when set, replaces `filter`. A second call
/// (tests starting several servers) leaves the first subscriber in place.
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => parse_filter(&from_env)?,
        _ => parse_filter(filter)?,
    };
    // Colour codes only for a person at a terminal, not for a log file or a collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// The process's metrics registry, with its one set of mailgraph series.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    mail: MailMetrics,
}

impl Metrics {
    /// A registry with `mailfold_up` set to 1, so a scrape always has a series to see, and the
    /// mailgraph series capped at [`DEFAULT_MAX_TENANTS`].
    pub fn new() -> Metrics {
        Metrics::with_max_tenants(DEFAULT_MAX_TENANTS)
    }

    /// Like [`Metrics::new`], with at most `max_tenants` distinct tenant labels.
    pub fn with_max_tenants(max_tenants: usize) -> Metrics {
        let registry = Registry::new();
        // A constant name and help text: the definition cannot be invalid.
        let up = IntGauge::with_opts(Opts::new("mailfold_up", "1 while the process runs."))
            .expect("valid gauge definition");
        up.set(1);
        let _ = registry.register(Box::new(up));
        let mail = MailMetrics::new(&registry, TenantLabels::new(max_tenants));
        Metrics { registry, mail }
    }

    /// The registry, for roles to register their series in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The mailgraph series; clone it into whatever counts mail.
    pub fn mail(&self) -> &MailMetrics {
        &self.mail
    }

    /// The tenant labels every tenant-labelled series shares, so one cap holds for all.
    pub fn tenants(&self) -> &TenantLabels {
        self.mail.tenants()
    }

    /// Every series in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec only fails for malformed metric families, which the typed
        // constructors cannot produce; an empty answer is then the honest fallback.
        if encoder
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Tenant label values with a cardinality cap: the first `max` tenants seen keep their own
/// label, every later one is counted as `other`, so a provider with many tenants does not
/// overwhelm its Prometheus.
#[derive(Clone)]
pub struct TenantLabels {
    max: usize,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl TenantLabels {
    /// A cap of `max` distinct tenant labels.
    pub fn new(max: usize) -> TenantLabels {
        TenantLabels {
            max,
            seen: Default::default(),
        }
    }

    /// The label to use for `tenant`.
    pub fn label(&self, tenant: &str) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return "other".to_string();
        };
        if seen.contains(tenant) {
            return tenant.to_string();
        }
        if seen.len() < self.max {
            seen.insert(tenant.to_string());
            return tenant.to_string();
        }
        "other".to_string()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_renders_the_text_format() {
        let metrics = Metrics::new();
        let counter = prometheus::IntCounter::new("mailfold_test_things_total", "Things.").unwrap();
        counter.inc_by(3);
        metrics.registry().register(Box::new(counter)).unwrap();

        let text = metrics.render();
        assert!(
            text.contains("# TYPE mailfold_test_things_total counter"),
            "{text}"
        );
        assert!(text.contains("mailfold_test_things_total 3"), "{text}");
        assert!(text.contains("mailfold_up 1"), "{text}");
    }

    #[test]
    fn tenants_past_the_cap_fold_into_other() {
        let labels = TenantLabels::new(2);
        assert_eq!(labels.label("a"), "a");
        assert_eq!(labels.label("b"), "b");
        assert_eq!(labels.label("c"), "other");
        assert_eq!(labels.label("a"), "a");
    }

    #[test]
    fn a_bad_filter_is_reported_with_its_text() {
        let error = parse_filter("mailfold=notalevel=x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("mailfold=notalevel=x"), "{error}");
        assert!(parse_filter("info,mailfold_directory=debug").is_ok());
    }
}
