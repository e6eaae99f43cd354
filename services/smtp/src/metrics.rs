//! The SMTP roles' Prometheus series, the mailgraph "received" and "rejected" among them.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use mailfold_telemetry::TenantLabels;

/// Counters of the SMTP roles.
#[derive(Clone)]
pub struct SmtpMetrics {
    connections: IntGauge,
    sessions: IntCounter,
    commands: IntCounterVec,
    logins: IntCounterVec,
    received: IntCounterVec,
    received_bytes: IntCounterVec,
    rejected: IntCounterVec,
    delivery: Histogram,
    tenants: TenantLabels,
}

impl SmtpMetrics {
    /// Registers the series; tenants beyond `max_tenants` are labelled `other`.
    pub fn new(registry: &Registry, max_tenants: usize) -> SmtpMetrics {
        // Constant names, labels and buckets: the definitions cannot be invalid.
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
        };
        let delivery = HistogramOpts::new(
            "mailfold_delivery_duration_seconds",
            "Time from the end of the data to every copy being durable.",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
        ]);
        let metrics = SmtpMetrics {
            connections: IntGauge::new(
                "mailfold_smtp_connections",
                "Open SMTP and LMTP connections.",
            )
            .expect("valid gauge definition"),
            sessions: IntCounter::new(
                "mailfold_smtp_sessions_total",
                "SMTP and LMTP sessions started.",
            )
            .expect("valid counter definition"),
            commands: vec(
                "mailfold_smtp_commands_total",
                "SMTP commands by verb and result.",
                &["command", "result"],
            ),
            logins: vec(
                "mailfold_smtp_logins_total",
                "Submission logins by result.",
                &["result"],
            ),
            received: vec(
                "mailfold_messages_received_total",
                "Messages delivered into a local mailbox, per recipient mailbox.",
                &["tenant"],
            ),
            received_bytes: vec(
                "mailfold_messages_received_bytes_total",
                "Bytes of the messages delivered into local mailboxes.",
                &["tenant"],
            ),
            rejected: vec(
                "mailfold_messages_rejected_total",
                "Recipients or messages refused, by reason.",
                &["reason"],
            ),
            delivery: Histogram::with_opts(delivery).expect("valid histogram definition"),
            tenants: TenantLabels::new(max_tenants),
        };
        let _ = registry.register(Box::new(metrics.connections.clone()));
        let _ = registry.register(Box::new(metrics.sessions.clone()));
        let _ = registry.register(Box::new(metrics.delivery.clone()));
        for counter in [
            &metrics.commands,
            &metrics.logins,
            &metrics.received,
            &metrics.received_bytes,
            &metrics.rejected,
        ] {
            let _ = registry.register(Box::new(counter.clone()));
        }
        metrics
    }

    pub(crate) fn connection(&self, opened: bool) {
        if opened {
            self.sessions.inc();
            self.connections.inc()
        } else {
            self.connections.dec()
        }
    }

    pub(crate) fn command(&self, verb: &str, ok: bool) {
        self.commands
            .with_label_values(&[verb, if ok { "ok" } else { "error" }])
            .inc();
    }

    pub(crate) fn login(&self, ok: bool) {
        self.logins
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub(crate) fn received(&self, tenant: &str, bytes: u64) {
        let tenant = self.tenants.label(tenant);
        self.received.with_label_values(&[&tenant]).inc();
        self.received_bytes
            .with_label_values(&[&tenant])
            .inc_by(bytes);
    }

    pub(crate) fn delivered_in(&self, seconds: f64) {
        self.delivery.observe(seconds);
    }

    pub(crate) fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }
}
