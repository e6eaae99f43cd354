//! The `pop3` role: mailbox access for the clients and fetchers that still speak POP3
//! (RFC 1939), logging in through the directory and reading the store.
//!
//! # Layout
//!
//! - [`codec`]: commands and replies as values, no I/O.
//! - [`transfer`]: dot-stuffing and CRLF normalisation of RETR and TOP, chunk by chunk.
//! - [`lock`]: the exclusive maildrop lock, safe across processes on a shared shard.
//! - [`session`]: one session's states: AUTHORIZATION, TRANSACTION, UPDATE.
//! - [`server`]: listeners (plain with STLS, implicit TLS), PROXY headers, connection limits.
//! - [`metrics`]: the role's Prometheus series.
//!
//! # Capabilities (RFC 2449 CAPA)
//!
//! TOP, UIDL, RESP-CODES, AUTH-RESP-CODE, PIPELINING (RFC 2449 §6), USER and SASL PLAIN
//! (RFC 1939, RFC 5034; only where plaintext logins are allowed), STLS (RFC 2595). APOP is
//! refused: it needs the password in clear on the server, and the directory only has hashes.
//! EXPIRE and LOGIN-DELAY are not advertised because they are not enforced.
//!
//! # Invariants
//!
//! - Only QUIT from the TRANSACTION state removes messages; a dropped connection removes none.
//! - Two sessions never hold one maildrop, in one process or across replicas.
//! - Reads from the network are capped at [`session::MAX_LINE`] per line.
//! - Login failures for any reason get the same `-ERR [AUTH]` reply.

pub mod codec;
pub mod lock;
pub mod metrics;
pub mod server;
pub mod session;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use mailfold_directory::Directory;
use mailfold_net::limits::{ConnectionLimits, LoginThrottle};
use mailfold_store::Store;

pub use metrics::Pop3Metrics;

/// When USER/PASS and AUTH PLAIN are allowed without TLS.
pub use mailfold_net::limits::Plaintext;

/// Session rules.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Plaintext login rule.
    pub plaintext: Plaintext,
    /// Idle time after which a session is closed (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout: Duration,
    /// Accept a PROXY protocol header before the session (from a load balancer).
    pub proxy_protocol: bool,
}

/// Everything the sessions share.
pub struct Services {
    /// Logins.
    pub directory: Arc<Directory>,
    /// Mailboxes.
    pub store: Arc<Store>,
    /// The role's metrics.
    pub metrics: Pop3Metrics,
    /// Failed-login rate limits.
    pub throttle: Arc<LoginThrottle>,
    /// Connection limits.
    pub limits: Arc<ConnectionLimits>,
    /// TLS for STLS and implicit-TLS listeners; `None` when not configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Session rules.
    pub policy: Policy,
}
