//! The queue's Prometheus series.

use mailfold_telemetry::{MailMetrics, Metrics, NO_TENANT};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts};

/// Series of the `queue` role, and the process's mailgraph counters it counts sent and
/// bounced mail into.
#[derive(Clone)]
pub struct QueueMetrics {
    messages: IntGaugeVec,
    deliveries: IntCounterVec,
    duration: Histogram,
    mail: MailMetrics,
}

impl QueueMetrics {
    /// Registers the series in the process's registry.
    pub fn new(metrics: &Metrics) -> QueueMetrics {
        let registry = metrics.registry();
        // Constant names, labels and buckets: the definitions cannot be invalid.
        let messages = IntGaugeVec::new(
            Opts::new(
                "mailfold_queue_messages",
                "Messages in the outbound queue, by state.",
            ),
            &["state"],
        )
        .expect("valid gauge definition");
        let deliveries = IntCounterVec::new(
            Opts::new(
                "mailfold_queue_deliveries_total",
                "Delivery attempts per recipient, by result (sent, deferred, bounced).",
            ),
            &["result"],
        )
        .expect("valid counter definition");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "mailfold_queue_delivery_duration_seconds",
                "Time from queueing to the next hop's acceptance, per recipient.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, 86_400.0,
            ]),
        )
        .expect("valid histogram definition");
        // Every result is on the page from the start, at 0, so rates work before the first.
        for result in ["sent", "deferred", "bounced"] {
            deliveries.with_label_values(&[result]);
        }
        let _ = registry.register(Box::new(messages.clone()));
        let _ = registry.register(Box::new(deliveries.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        QueueMetrics {
            messages,
            deliveries,
            duration,
            mail: metrics.mail().clone(),
        }
    }

    /// A copy the queue delivered into a local mailbox of `tenant` (a bounce to a local
    /// sender, a reversed SRS address).
    pub(crate) fn delivered(&self, tenant: &str, bytes: u64) {
        self.mail.delivered(tenant, bytes);
    }

    /// The mailgraph counts of one round of a message from a sender of `tenant`: copies the
    /// next hops accepted, and recipients reported back to the sender as failed. A returned
    /// bounce (tenant `-`) belongs to no tenant.
    pub(crate) fn outcomes(&self, tenant: &str, sent: usize, bounced: usize) {
        let tenant = if tenant == "-" { NO_TENANT } else { tenant };
        for _ in 0..sent {
            self.mail.sent(tenant);
        }
        for _ in 0..bounced {
            self.mail.bounced(tenant);
        }
    }

    pub(crate) fn depth(&self, active: usize, deferred: usize) {
        self.messages
            .with_label_values(&["active"])
            .set(active as i64);
        self.messages
            .with_label_values(&["deferred"])
            .set(deferred as i64);
    }

    pub(crate) fn delivery(&self, result: &str) {
        self.deliveries.with_label_values(&[result]).inc();
    }

    pub(crate) fn delivered_after(&self, seconds: f64) {
        self.duration.observe(seconds);
    }
}
