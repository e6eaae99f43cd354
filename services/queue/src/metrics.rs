//! The queue's Prometheus series.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Series of the `queue` role.
#[derive(Clone)]
pub struct QueueMetrics {
    messages: IntGaugeVec,
    deliveries: IntCounterVec,
    duration: Histogram,
}

impl QueueMetrics {
    /// Registers the series in `registry`.
    pub fn new(registry: &Registry) -> QueueMetrics {
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
        let _ = registry.register(Box::new(messages.clone()));
        let _ = registry.register(Box::new(deliveries.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        QueueMetrics {
            messages,
            deliveries,
            duration,
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
