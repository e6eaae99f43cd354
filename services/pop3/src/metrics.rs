//! The POP3 role's Prometheus series.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use mailfold_telemetry::{Metrics, TenantLabels};

/// Counters of the POP3 role.
#[derive(Clone)]
pub struct Pop3Metrics {
    connections: IntGauge,
    sessions: IntCounter,
    logins: IntCounterVec,
    commands: IntCounterVec,
    retrieved_messages: IntCounterVec,
    retrieved_bytes: IntCounterVec,
    deleted: IntCounterVec,
    tenants: TenantLabels,
}

impl Pop3Metrics {
    /// Registers the series in `metrics`' registry, with its tenant labels (and their cap).
    pub fn new(metrics: &Metrics) -> Pop3Metrics {
        let registry = metrics.registry();
        // Constant names and labels: the definitions cannot be invalid.
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
        };
        let pop3 = Pop3Metrics {
            connections: IntGauge::new("mailfold_pop3_connections", "Open POP3 connections.")
                .expect("valid gauge definition"),
            sessions: IntCounter::new(
                "mailfold_pop3_sessions_total",
                "POP3 sessions that opened a maildrop.",
            )
            .expect("valid counter definition"),
            logins: vec(
                "mailfold_pop3_logins_total",
                "POP3 logins by result.",
                &["result"],
            ),
            commands: vec(
                "mailfold_pop3_commands_total",
                "POP3 commands by verb and result.",
                &["command", "result"],
            ),
            retrieved_messages: vec(
                "mailfold_pop3_retrieved_messages_total",
                "Messages retrieved with RETR.",
                &["tenant"],
            ),
            retrieved_bytes: vec(
                "mailfold_pop3_retrieved_bytes_total",
                "Bytes sent for RETR.",
                &["tenant"],
            ),
            deleted: vec(
                "mailfold_pop3_deleted_messages_total",
                "Messages removed at QUIT.",
                &["tenant"],
            ),
            tenants: metrics.tenants().clone(),
        };
        let _ = registry.register(Box::new(pop3.connections.clone()));
        let _ = registry.register(Box::new(pop3.sessions.clone()));
        for counter in [
            &pop3.logins,
            &pop3.commands,
            &pop3.retrieved_messages,
            &pop3.retrieved_bytes,
            &pop3.deleted,
        ] {
            let _ = registry.register(Box::new(counter.clone()));
        }
        pop3
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.dec();
    }

    pub(crate) fn session_opened(&self) {
        self.sessions.inc();
    }

    pub(crate) fn login(&self, ok: bool) {
        self.logins
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }

    pub(crate) fn command(&self, verb: &str, ok: bool) {
        self.commands
            .with_label_values(&[verb, if ok { "ok" } else { "error" }])
            .inc();
    }

    pub(crate) fn retrieved(&self, tenant: &str, bytes: u64) {
        let tenant = self.tenants.label(tenant);
        self.retrieved_messages.with_label_values(&[&tenant]).inc();
        self.retrieved_bytes
            .with_label_values(&[&tenant])
            .inc_by(bytes);
    }

    pub(crate) fn deleted(&self, tenant: &str, count: u64) {
        let tenant = self.tenants.label(tenant);
        self.deleted.with_label_values(&[&tenant]).inc_by(count);
    }
}
