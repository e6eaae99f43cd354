//! The SMTP roles' Prometheus series, the mailgraph "received" and "rejected" among them.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use mailfold_telemetry::TenantLabels;

/// Counters of the SMTP roles.
#[derive(Clone)]
pub struct SmtpMetrics {
    connections: IntGauge,
    commands: IntCounterVec,
    logins: IntCounterVec,
    received: IntCounterVec,
    rejected: IntCounterVec,
    tenants: TenantLabels,
}

impl SmtpMetrics {
    /// Registers the series; tenants beyond `max_tenants` are labelled `other`.
    pub fn new(registry: &Registry, max_tenants: usize) -> SmtpMetrics {
        // Constant names and labels: the definitions cannot be invalid.
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
        };
        let metrics = SmtpMetrics {
            connections: IntGauge::new(
                "mailfold_smtp_connections",
                "Open SMTP and LMTP connections.",
            )
            .expect("valid gauge definition"),
            commands: vec(
                "mailfold_smtp_commands_total",
                "SMTP commands by verb.",
                &["command"],
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
            rejected: vec(
                "mailfold_messages_rejected_total",
                "Recipients or messages refused, by reason.",
                &["reason"],
            ),
            tenants: TenantLabels::new(max_tenants),
        };
        let _ = registry.register(Box::new(metrics.connections.clone()));
        for counter in [
            &metrics.commands,
            &metrics.logins,
            &metrics.received,
            &metrics.rejected,
        ] {
            let _ = registry.register(Box::new(counter.clone()));
        }
        metrics
    }

    pub(crate) fn connection(&self, opened: bool) {
        if opened {
            self.connections.inc()
        } else {
            self.connections.dec()
        }
    }

    pub(crate) fn command(&self, verb: &str) {
        self.commands.with_label_values(&[verb]).inc();
    }

    pub(crate) fn login(&self, ok: bool) {
        self.logins
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub(crate) fn received(&self, tenant: &str) {
        let tenant = self.tenants.label(tenant);
        self.received.with_label_values(&[&tenant]).inc();
    }

    pub(crate) fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }
}
