//! The mailgraph series: what happened to mail, per tenant.
//!
//! One [`MailMetrics`] per process (inside [`crate::Metrics`]) counts every message the
//! platform received, delivered, sent, bounced, rejected, or found to be spam or a virus,
//! labelled by tenant through the process's one [`TenantLabels`], so a tenant past the cap is
//! `other` in every series alike. Each role calls it where the event happens: the SMTP roles
//! for received, delivered and rejected, the outbound queue for sent and bounced.
//!
//! A tenant's series all appear at zero the first time the tenant is seen, and the
//! `tenant="none"` rejections at start, so `rate()` has a series to work on before the first
//! event of its kind.
//!
//! A role keeps a clone and counts with the tenant of the mailbox concerned (for sent and
//! bounced mail, the sender's):
//!
//! ```
//! let metrics = mailfold_telemetry::Metrics::with_max_tenants(100);
//! let mail = metrics.mail().clone();
//! mail.sent("acme"); // the next hop answered 250 for the message
//! mail.bounced("acme"); // the queue gave up and bounced it to its sender
//! assert!(metrics.render().contains("mailfold_messages_sent_total{tenant=\"acme\"} 1"));
//! ```

// TODO: quota usage is not exported (per mailbox it would put an address in a label); a
// per-tenant gauge can come once the store keeps a running total per tenant.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::{IntCounterVec, Opts, Registry};

use crate::TenantLabels;

/// The `tenant` label of a rejection made before any recipient's tenant is known: a relay
/// attempt, a refusal at MAIL, a recipient whose domain is not hosted here.
pub const NO_TENANT: &str = "none";

/// Why a recipient or a message was refused: the `reason` label of
/// `mailfold_messages_rejected_total`, a fixed set so the label stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// A recipient outside the platform's domains without a login (`550 5.7.1`).
    Relay,
    /// A local domain, but no such address (`550 5.1.1`).
    UnknownUser,
    /// The mailbox, or its domain or tenant, is not active or may not receive (`550 5.2.1`).
    Disabled,
    /// The mailbox is full (`452 4.2.2`, `552 5.2.2`).
    Quota,
    /// The message is larger than a limit (`552 5.3.4`).
    Size,
    /// The data had a bare CR or LF (`550 5.6.0`).
    BareLineEnding,
    /// The sender is not allowed: no login on submission, or an address the login does not own.
    Policy,
    /// A temporary refusal: the directory or the store could not answer, a limit of the
    /// transaction, a feature not available yet (`4xx`).
    Temporary,
    /// Too many hops, or a message coming back to the address that forwards it (`554 5.4.6`).
    Loop,
    /// Any other permanent refusal (`5xx`).
    Other,
}

impl Rejection {
    /// Every reason, in the order the documentation lists them.
    pub const ALL: [Rejection; 10] = [
        Rejection::Relay,
        Rejection::UnknownUser,
        Rejection::Disabled,
        Rejection::Quota,
        Rejection::Size,
        Rejection::BareLineEnding,
        Rejection::Policy,
        Rejection::Temporary,
        Rejection::Loop,
        Rejection::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Relay => "relay",
            Rejection::UnknownUser => "unknown_user",
            Rejection::Disabled => "disabled",
            Rejection::Quota => "quota",
            Rejection::Size => "size",
            Rejection::BareLineEnding => "bare_line_ending",
            Rejection::Policy => "policy",
            Rejection::Temporary => "temporary",
            Rejection::Loop => "loop",
            Rejection::Other => "other",
        }
    }
}

/// The mailgraph counters. Cheap to clone: every clone counts into the same series.
#[derive(Clone)]
pub struct MailMetrics {
    received: IntCounterVec,
    delivered: IntCounterVec,
    delivered_bytes: IntCounterVec,
    sent: IntCounterVec,
    bounced: IntCounterVec,
    rejected: IntCounterVec,
    spam: IntCounterVec,
    virus: IntCounterVec,
    tenants: TenantLabels,
    /// Labels whose series have been created at zero.
    seeded: Arc<Mutex<HashSet<String>>>,
}

impl MailMetrics {
    /// Creates the series in `registry`, labelling tenants through `tenants`. A second set on
    /// the same registry is not registered (its counts are not scraped): make one per process,
    /// as [`crate::Metrics`] does, and clone it.
    pub fn new(registry: &Registry, tenants: TenantLabels) -> MailMetrics {
        // Constant names and labels: the definitions cannot be invalid.
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter definition")
        };
        let by_tenant = |name: &str, help: &str| vec(name, help, &["tenant"]);
        let metrics = MailMetrics {
            received: by_tenant(
                "mailfold_messages_received_total",
                "Messages accepted from outside (MX, submission, LMTP), once per recipient tenant.",
            ),
            delivered: by_tenant(
                "mailfold_messages_delivered_total",
                "Copies written into local mailboxes, one per mailbox.",
            ),
            delivered_bytes: by_tenant(
                "mailfold_messages_delivered_bytes_total",
                "Bytes of the copies written into local mailboxes.",
            ),
            sent: by_tenant(
                "mailfold_messages_sent_total",
                "Copies relayed to other hosts by the outbound queue, one per recipient.",
            ),
            bounced: by_tenant(
                "mailfold_messages_bounced_total",
                "Recipients the outbound queue gave up on and reported to their sender.",
            ),
            rejected: vec(
                "mailfold_messages_rejected_total",
                "Recipients or messages refused, by reason.",
                &["tenant", "reason"],
            ),
            spam: by_tenant(
                "mailfold_messages_spam_total",
                "Messages found to be spam (no scanner yet: stays 0).",
            ),
            virus: by_tenant(
                "mailfold_messages_virus_total",
                "Messages found to carry a virus (no scanner yet: stays 0).",
            ),
            tenants,
            seeded: Default::default(),
        };
        for counter in metrics.tenant_series() {
            let _ = registry.register(Box::new(counter.clone()));
        }
        let _ = registry.register(Box::new(metrics.rejected.clone()));
        for reason in Rejection::ALL {
            let _ = metrics
                .rejected
                .with_label_values(&[NO_TENANT, reason.as_str()]);
        }
        metrics
    }

    /// The process's tenant labels, for other tenant-labelled series to share the cap.
    pub fn tenants(&self) -> &TenantLabels {
        &self.tenants
    }

    /// A message accepted for at least one mailbox of `tenant`: call once per message and
    /// recipient tenant, after the acknowledgement was earned.
    pub fn received(&self, tenant: &str) {
        let label = self.label(tenant);
        self.received.with_label_values(&[&label]).inc();
    }

    /// One copy of `bytes` made durable in a mailbox of `tenant`.
    pub fn delivered(&self, tenant: &str, bytes: u64) {
        let label = self.label(tenant);
        self.delivered.with_label_values(&[&label]).inc();
        self.delivered_bytes
            .with_label_values(&[&label])
            .inc_by(bytes);
    }

    /// A copy for one recipient, from a sender of `tenant`, accepted by the next hop.
    pub fn sent(&self, tenant: &str) {
        let label = self.label(tenant);
        self.sent.with_label_values(&[&label]).inc();
    }

    /// A recipient the queue gave up on and reported to the sender (of `tenant`).
    pub fn bounced(&self, tenant: &str) {
        let label = self.label(tenant);
        self.bounced.with_label_values(&[&label]).inc();
    }

    /// A recipient or message refused for `reason`; `tenant` is `None` before one is known.
    pub fn rejected(&self, tenant: Option<&str>, reason: Rejection) {
        let label = match tenant {
            Some(tenant) => self.label(tenant),
            None => NO_TENANT.to_string(),
        };
        self.rejected
            .with_label_values(&[&label, reason.as_str()])
            .inc();
    }

    /// A message of `tenant` found to be spam.
    // TODO: nothing calls this until content filtering (spamd/rspamd clients) exists; the
    // series is registered now so dashboards have it.
    pub fn spam(&self, tenant: &str) {
        let label = self.label(tenant);
        self.spam.with_label_values(&[&label]).inc();
    }

    /// A message of `tenant` found to carry a virus.
    // TODO: nothing calls this until content filtering (a clamd client) exists; the series is
    // registered now so dashboards have it.
    pub fn virus(&self, tenant: &str) {
        let label = self.label(tenant);
        self.virus.with_label_values(&[&label]).inc();
    }

    /// The series labelled by tenant alone.
    fn tenant_series(&self) -> [&IntCounterVec; 7] {
        [
            &self.received,
            &self.delivered,
            &self.delivered_bytes,
            &self.sent,
            &self.bounced,
            &self.spam,
            &self.virus,
        ]
    }

    /// The capped label of `tenant`, its per-tenant series created at zero on first sight.
    fn label(&self, tenant: &str) -> String {
        let label = self.tenants.label(tenant);
        let Ok(mut seeded) = self.seeded.lock() else {
            return label;
        };
        if seeded.insert(label.clone()) {
            for counter in self.tenant_series() {
                let _ = counter.with_label_values(&[&label]);
            }
        }
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter())
            .find(|metric| {
                labels.iter().all(|(key, value)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|l| l.name() == *key && l.value() == *value)
                })
            })
            .map(|metric| metric.get_counter().get_value() as u64)
    }

    #[test]
    fn tenants_over_the_cap_are_counted_together_as_other_in_every_series() {
        let registry = Registry::new();
        let mail = MailMetrics::new(&registry, TenantLabels::new(2));
        for tenant in ["acme", "globex", "initech", "umbrella", "acme"] {
            mail.received(tenant);
        }
        mail.delivered("initech", 10);
        mail.rejected(Some("umbrella"), Rejection::Quota);

        let received = |t| {
            value(
                &registry,
                "mailfold_messages_received_total",
                &[("tenant", t)],
            )
        };
        assert_eq!(received("acme"), Some(2));
        assert_eq!(received("globex"), Some(1));
        assert_eq!(received("other"), Some(2));
        assert_eq!(received("initech"), None);
        let bytes = ("tenant", "other");
        assert_eq!(
            value(
                &registry,
                "mailfold_messages_delivered_bytes_total",
                &[bytes]
            ),
            Some(10)
        );
        let quota = [("tenant", "other"), ("reason", "quota")];
        assert_eq!(
            value(&registry, "mailfold_messages_rejected_total", &quota),
            Some(1)
        );
    }

    #[test]
    fn a_tenant_seen_once_has_every_series_at_zero() {
        let registry = Registry::new();
        let mail = MailMetrics::new(&registry, TenantLabels::new(10));
        mail.received("acme");
        for name in [
            "mailfold_messages_delivered_total",
            "mailfold_messages_sent_total",
            "mailfold_messages_bounced_total",
            "mailfold_messages_spam_total",
            "mailfold_messages_virus_total",
        ] {
            assert_eq!(
                value(&registry, name, &[("tenant", "acme")]),
                Some(0),
                "{name}"
            );
        }
    }

    #[test]
    fn rejections_without_a_tenant_are_none_and_every_reason_starts_at_zero() {
        let registry = Registry::new();
        let mail = MailMetrics::new(&registry, TenantLabels::new(10));
        for reason in Rejection::ALL {
            let labels = [("tenant", NO_TENANT), ("reason", reason.as_str())];
            let counted = value(&registry, "mailfold_messages_rejected_total", &labels);
            assert_eq!(counted, Some(0), "{reason:?}");
        }
        mail.rejected(None, Rejection::Relay);
        let relay = [("tenant", "none"), ("reason", "relay")];
        assert_eq!(
            value(&registry, "mailfold_messages_rejected_total", &relay),
            Some(1)
        );
    }

    #[test]
    fn clones_count_into_the_same_series() {
        let registry = Registry::new();
        let mail = MailMetrics::new(&registry, TenantLabels::new(10));
        let queue = mail.clone();
        mail.sent("acme");
        queue.sent("acme");
        queue.bounced("acme");
        let acme = [("tenant", "acme")];
        assert_eq!(
            value(&registry, "mailfold_messages_sent_total", &acme),
            Some(2)
        );
        assert_eq!(
            value(&registry, "mailfold_messages_bounced_total", &acme),
            Some(1)
        );
    }
}
