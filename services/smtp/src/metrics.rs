//! The SMTP roles' Prometheus series, and their share of the mailgraph ones (received,
//! delivered, rejected) through the process's [`MailMetrics`].

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

use mailfold_store::StoreError;
use mailfold_telemetry::{MailMetrics, Metrics, Rejection};

use crate::Mode;

/// The `reason` values of `mailfold_delivery_failures_total`.
const FAILURE_REASONS: [&str; 3] = ["quota", "unavailable", "other"];

/// Counters of the SMTP roles.
#[derive(Clone)]
pub struct SmtpMetrics {
    connections: IntGaugeVec,
    sessions: IntCounterVec,
    commands: IntCounterVec,
    logins: IntCounterVec,
    delivery: Histogram,
    delivery_failures: IntCounterVec,
    mail: MailMetrics,
}

impl SmtpMetrics {
    /// Registers the series in `metrics`' registry; received, delivered and rejected mail is
    /// counted in its mailgraph series.
    pub fn new(metrics: &Metrics) -> SmtpMetrics {
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
        let connections = Opts::new(
            "mailfold_smtp_connections",
            "Open SMTP, submission and LMTP connections, by role.",
        );
        let smtp = SmtpMetrics {
            connections: IntGaugeVec::new(connections, &["role"]).expect("valid gauge definition"),
            sessions: vec(
                "mailfold_smtp_sessions_total",
                "SMTP, submission and LMTP sessions started, by role.",
                &["role"],
            ),
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
            delivery: Histogram::with_opts(delivery).expect("valid histogram definition"),
            delivery_failures: vec(
                "mailfold_delivery_failures_total",
                "Copies that could not be written into a mailbox, by reason.",
                &["reason"],
            ),
            mail: metrics.mail().clone(),
        };
        let registry: &Registry = metrics.registry();
        let _ = registry.register(Box::new(smtp.connections.clone()));
        let _ = registry.register(Box::new(smtp.delivery.clone()));
        for counter in [
            &smtp.sessions,
            &smtp.commands,
            &smtp.logins,
            &smtp.delivery_failures,
        ] {
            let _ = registry.register(Box::new(counter.clone()));
        }
        // Every role's and failure reason's series exist from the start, at zero.
        for mode in [Mode::Mx, Mode::Submission, Mode::Lmtp] {
            let _ = smtp.connections.with_label_values(&[role(mode)]);
            let _ = smtp.sessions.with_label_values(&[role(mode)]);
        }
        for reason in FAILURE_REASONS {
            let _ = smtp.delivery_failures.with_label_values(&[reason]);
        }
        smtp
    }

    pub(crate) fn connection_opened(&self, mode: Mode) {
        self.sessions.with_label_values(&[role(mode)]).inc();
        self.connections.with_label_values(&[role(mode)]).inc();
    }

    pub(crate) fn connection_closed(&self, mode: Mode) {
        self.connections.with_label_values(&[role(mode)]).dec();
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

    /// A message acknowledged for mailboxes of `tenant` (once per message and tenant).
    pub(crate) fn received(&self, tenant: &str) {
        self.mail.received(tenant);
    }

    /// A copy of `bytes` durable in a mailbox of `tenant`.
    pub(crate) fn delivered(&self, tenant: &str, bytes: u64) {
        self.mail.delivered(tenant, bytes);
    }

    /// A copy that could not be written, with the store's answer (`None`: the delivery task
    /// itself failed).
    pub(crate) fn delivery_failed(&self, result: Option<&Result<(), StoreError>>) {
        let [quota, unavailable, other] = FAILURE_REASONS;
        let reason = match result {
            Some(Err(StoreError::OverQuota { .. })) => quota,
            Some(Err(StoreError::Unavailable(_) | StoreError::UnknownShard(_))) => unavailable,
            _ => other,
        };
        self.delivery_failures.with_label_values(&[reason]).inc();
    }

    pub(crate) fn delivered_in(&self, seconds: f64) {
        self.delivery.observe(seconds);
    }

    /// A refusal; `tenant` is the recipient's (or the login's), when known.
    pub(crate) fn rejected(&self, tenant: Option<&str>, reason: Rejection) {
        self.mail.rejected(tenant, reason);
    }
}

/// The `role` label of a listener mode, the names the listeners log with.
fn role(mode: Mode) -> &'static str {
    match mode {
        Mode::Mx => "smtp",
        Mode::Submission => "submission",
        Mode::Lmtp => "lmtp",
    }
}
