//! The outbound queue: mail that leaves the platform, held durably on disk until the next hop
//! takes it, retried on a schedule, bounced with a delivery status notification when it
//! cannot be delivered.
//!
//! # Layout
//!
//! - [`envelope`]: the envelope of a queued message, with one state per recipient.
//! - [`folder`]: the queue folder on disk: message files, envelopes, the delivery lock, the
//!   requests of `mailfold queue`.
//! - [`worker`]: the `queue` role: scanning, scheduling, per-destination connections,
//!   outcomes, bounces.
//! - [`route`]: static routes, the smarthost, MX lookups (RFC 5321 §5.1) with A/AAAA fallback.
//! - [`client`]: the SMTP client: STARTTLS, AUTH, PIPELINING, SIZE, 8BITMIME, SMTPUTF8.
//! - [`reply`]: remote replies and EHLO extensions as values, no I/O.
//! - [`dsn`]: RFC 3464 delivery status notifications.
//! - [`srs`]: the Sender Rewriting Scheme for forwarded mail.
//! - [`dkim`]: DKIM signing with per-domain keys, and key generation.
//! - [`headers`]: hop count, `Delivered-To` and `From` read from a header section.
//! - [`metrics`]: the queue's Prometheus series.
//!
//! The SMTP client is written here rather than taken from a crate because the crates of the
//! field hold the whole message in memory, which invariant 3 forbids; the reply parser it
//! needs is small. DNS, DKIM and TLS come from hickory-resolver, mail-auth and rustls.
//!
//! # Invariants
//!
//! - [`Queue::enqueue`] returns only once the message file and its envelope are fsync'd and
//!   renamed into place, their folders fsync'd: the SMTP role answers `250` after it.
//! - A delivery in progress when the process dies is tried again at the next start: the
//!   envelope on disk changes only after an attempt, so a crash can duplicate a message but
//!   never lose one.
//! - One process delivers from a folder at a time (an exclusive lock on `<folder>/lock`).
//! - A recipient is failed for good only on a 5xx or at the end of the lifetime; a bounce
//!   never goes to the null sender, and a bounce is never answered by a bounce.

// TODO: a handover from another process goes through a queue folder both mount (`[queue]
// handover`); a handover over the network, for front-ends that share no volume with the queue
// replicas, is not built yet.

pub mod client;
pub mod dkim;
pub mod dsn;
pub mod envelope;
pub mod error;
pub mod folder;
pub mod headers;
pub mod metrics;
pub mod reply;
pub mod route;
pub mod srs;
pub mod worker;

use std::path::Path;

pub use envelope::{Envelope, Kind, Recipient, State};
pub use error::{QueueError, Result};
pub use folder::{QueueFolder, Request};
pub use metrics::QueueMetrics;
pub use srs::Srs;
pub use worker::{Deliverer, DeliveryOptions, Schedule};

/// What the SMTP role hands to the queue.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// The envelope sender (empty for `<>`).
    pub sender: &'a str,
    /// The recipients, outside the platform.
    pub recipients: Vec<String>,
    /// The tenant counted for it.
    pub tenant: &'a str,
    /// The local address that forwards the message (an alias or a mailbox with forward
    /// addresses): the sender is then rewritten with SRS and a `Delivered-To` is added.
    pub forwarded_by: Option<&'a str>,
    /// An address needs SMTPUTF8.
    pub smtputf8: bool,
    /// The body was declared 8-bit.
    pub eight_bit: bool,
}

/// The queue as the SMTP role and the worker share it: the folder, SRS and DKIM.
pub struct Queue {
    folder: QueueFolder,
    srs: Option<Srs>,
    dkim: dkim::DkimSigning,
    wake: tokio::sync::Notify,
    /// Ids queued by this process since the worker last looked, with their first attempt:
    /// the worker takes them without listing the folder.
    recent: std::sync::Mutex<Vec<(String, u64)>>,
    /// Whether a worker of this process delivers from the folder. Without one (a handover
    /// process) nothing is announced: the other process's worker finds the files by listing.
    delivering: std::sync::atomic::AtomicBool,
}

impl Queue {
    /// The queue in the folder at `root`.
    pub fn open(root: &Path, srs: Option<Srs>, dkim: dkim::DkimSigning) -> Result<Queue> {
        Ok(Queue {
            folder: QueueFolder::open(root)?,
            srs,
            dkim,
            wake: tokio::sync::Notify::new(),
            recent: std::sync::Mutex::new(Vec::new()),
            delivering: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The folder.
    pub fn folder(&self) -> &QueueFolder {
        &self.folder
    }

    /// SRS, when configured.
    pub fn srs(&self) -> Option<&Srs> {
        self.srs.as_ref()
    }

    /// Queues the message in `source` durably (blocking file I/O: call it on a blocking
    /// thread). Submitted mail is DKIM-signed when its `From` domain has a key; forwarded
    /// mail gets an SRS sender and a `Delivered-To`. Returns the queue id.
    pub fn enqueue(&self, source: &Path, submission: &Submission<'_>) -> Result<String> {
        let mut sender = submission.sender.to_string();
        let mut prefix = String::new();
        match submission.forwarded_by {
            Some(forwarder) => {
                if let Some(srs) = &self.srs {
                    sender = srs.forward(&sender);
                }
                // Loop detection at the next hops, and here if the message comes back.
                prefix.push_str(&format!("Delivered-To: {forwarder}\r\n"));
            }
            None => {
                let facts = headers::scan(source)
                    .map_err(|e| QueueError::io("reading the headers of", source, e))?;
                let domain = facts
                    .from_domain
                    .unwrap_or_else(|| envelope::domain_of(&sender));
                match self.dkim.sign(&domain, source) {
                    Some(Ok(signature)) => prefix.push_str(&signature),
                    Some(Err(error)) => {
                        tracing::error!(%domain, cause = %error, "[queue] dkim signing failed; sending unsigned")
                    }
                    None => {}
                }
            }
        }
        let envelope = Envelope {
            id: String::new(),
            kind: Kind::Message,
            sender,
            tenant: submission.tenant.to_string(),
            recipients: submission
                .recipients
                .iter()
                .map(|r| Recipient::pending(r))
                .collect(),
            prefix,
            size: 0,
            smtputf8: submission.smtputf8,
            eight_bit: submission.eight_bit,
            created: 0,
            next_attempt: 0,
            attempts: 0,
            delay_warned: false,
        };
        let queued = self.folder.enqueue(source, envelope)?;
        self.announce(&queued);
        Ok(queued.id)
    }

    /// Tells the worker of a message queued by this process, when there is one.
    fn announce(&self, queued: &Envelope) {
        if !self.delivering.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        // A poisoned list is still a list of ids.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push((queued.id.clone(), queued.next_attempt));
        drop(recent);
        self.wake.notify_one();
    }

    /// Marks the folder as delivered from by this process's worker.
    pub(crate) fn attach_worker(&self) {
        self.delivering
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The ids announced since the last call.
    pub(crate) fn take_recent(&self) -> Vec<(String, u64)> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *recent)
    }

    /// Queues a bounce (`<>` sender) with content `report` to `recipient`.
    pub(crate) fn enqueue_bounce(
        &self,
        report: &[u8],
        recipient: &str,
        tenant: &str,
    ) -> Result<String> {
        let source = self
            .folder
            .root()
            .join("tmp")
            .join(format!("{}.dsn", folder::new_id()));
        std::fs::write(&source, report).map_err(|e| QueueError::io("writing", &source, e))?;
        let envelope = Envelope {
            id: String::new(),
            kind: Kind::Bounce,
            sender: String::new(),
            tenant: tenant.to_string(),
            recipients: vec![Recipient::pending(recipient)],
            prefix: String::new(),
            size: 0,
            smtputf8: !recipient.is_ascii(),
            eight_bit: false,
            created: 0,
            next_attempt: 0,
            attempts: 0,
            delay_warned: false,
        };
        let queued = self.folder.enqueue(&source, envelope);
        let _ = std::fs::remove_file(&source);
        let queued = queued?;
        self.announce(&queued);
        Ok(queued.id)
    }

    /// Wakes the worker (after a request from the command line, say).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}
