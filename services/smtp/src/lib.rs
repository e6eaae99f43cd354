//! The `smtp` and `lmtp` roles: how mail gets into the platform.
//!
//! # Layout
//!
//! - [`codec`]: commands and replies as values, no I/O.
//! - [`data`]: the DATA section and BDAT chunks, streamed into the spool, with the strict
//!   end-of-data rule that closes SMTP smuggling.
//! - [`spool`]: the per-transaction spool file.
//! - [`received`]: the `Received:` trace header and RFC 5322 dates.
//! - [`session`]: one session: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA/BDAT, delivery.
//! - [`server`]: listeners, through the shared accept loop.
//! - [`metrics`]: the roles' Prometheus series.
//!
//! # Modes
//!
//! - MX (port 25): mail for the platform's domains from anyone, no AUTH; anything else is
//!   relaying and refused (`550 5.7.1`). Bounces to this server's SRS addresses are taken and
//!   routed back to the original sender through the outbound queue.
//! - Submission (587 with STARTTLS, 465 with implicit TLS): AUTH first, over TLS, and the
//!   sender must be one of the login's own addresses; outside recipients go to the outbound
//!   queue.
//! - LMTP (RFC 2033): for an edge MTA that hands mail over; one reply per recipient.
//!
//! # Capabilities (EHLO)
//!
//! PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034),
//! SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030), STARTTLS (RFC 3207), AUTH PLAIN LOGIN (RFC 4954,
//! submission only). DSN (RFC 3461) is not offered.
//!
//! # Invariants
//!
//! - `250` after the data only once every recipient's copy is durable in its mailbox, and
//!   every outside recipient's copy durable in the outbound queue.
//! - A directory or storage failure answers `4xx`, never `5xx`.
//! - Only `CRLF . CRLF` ends the data; commands pipelined after STARTTLS are discarded.
//! - No relaying: MX accepts only local recipients; submission needs a login.

pub mod codec;
pub mod data;
pub mod metrics;
pub mod received;
pub mod server;
pub mod session;
pub mod spool;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mailfold_directory::Directory;
use mailfold_net::limits::{ConnectionLimits, LoginThrottle};
use mailfold_store::Store;

pub use data::BareLineEndings;
pub use metrics::SmtpMetrics;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inbound mail for local domains.
    Mx,
    /// Authenticated submission.
    Submission,
    /// LMTP from an edge MTA.
    Lmtp,
}

/// When AUTH is allowed without TLS (submission).
pub use mailfold_net::limits::Plaintext;

/// Session rules.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest message accepted, in bytes (0: unlimited; the recipients' limits still apply).
    pub max_message_size: u64,
    /// What to do with bare CR or LF in DATA.
    pub bare_line_endings: BareLineEndings,
    /// AUTH without TLS on submission.
    pub plaintext: Plaintext,
    /// Accept a PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Where `RCPT TO:<postmaster>` goes (RFC 5321 §4.5.1).
    pub postmaster: String,
    /// A message with more `Received:` fields than this is refused as a loop (RFC 5321 §6.3).
    pub max_hops: usize,
}

impl Policy {
    /// Whether plaintext AUTH is allowed for a client at `ip`.
    pub fn plaintext_allowed(&self, ip: IpAddr) -> bool {
        self.plaintext.allows(ip)
    }
}

/// Everything the sessions share.
pub struct Services {
    /// Routing and logins.
    pub directory: Arc<Directory>,
    /// Mailboxes.
    pub store: Arc<Store>,
    /// Where spool files go.
    pub spool_dir: PathBuf,
    /// This server's name, for the greeting, EHLO and Received headers.
    pub hostname: String,
    /// The roles' metrics.
    pub metrics: SmtpMetrics,
    /// Failed-login limits.
    pub throttle: Arc<LoginThrottle>,
    /// Connection limits.
    pub limits: Arc<ConnectionLimits>,
    /// TLS for STARTTLS and implicit TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Session rules.
    pub policy: Policy,
    /// The outbound queue, for outside recipients and forwarding; without it they are
    /// deferred with `451 4.3.2`.
    pub queue: Option<Arc<mailfold_queue::Queue>>,
}
