//! The Mailfold directory: who the tenants, domains, mailboxes and aliases are, and where mail
//! for an address goes.
//!
//! Every front-end asks the same [`Directory`]: SMTP resolves recipients, POP3 and IMAP log users
//! in, the JSON API manages aliases. LDAP is the source of truth; an LDIF file can stand in for
//! a server on a single machine and behaves the same.
//!
//! # Layout
//!
//! - [`address`]: address validation and normalisation, before anything reaches a filter or DN.
//! - [`filter`], [`dn`]: the one place filters and DNs are built and escaped (RFC 4515,
//!   RFC 4514), and how the LDIF backend matches and compares them.
//! - [`entry`]: the raw entry both backends return.
//! - [`model`]: tenants, domains, mailboxes, aliases, and the inheritance rules.
//! - `resolve`, `auth`, `aliases`: the directory's operations, written once over the backends.
//! - [`admin`]: tenant administrators of the JSON API, their logins and bearer tokens.
//! - [`provision`]: the operator's side: tenants, domains, mailboxes and administrators.
//! - [`backend`]: LDAP (ldap3 + deadpool) and LDIF (in memory, written back atomically).
//! - `cache`: positive and negative answers with TTLs and a size bound.
//! - [`password`], [`ldif_format`]: what the LDIF backend needs to stand in for a server.
//!
//! # Invariants
//!
//! - A value from a client reaches a filter only through [`filter::Filter`] and a DN only
//!   through [`dn::rdn`], after [`address::Address::parse`] accepted it.
//! - A failure to reach the directory is [`DirectoryError::Unavailable`], never "not found":
//!   SMTP turns the first into `4xx` and only the second into `5xx`.
//! - Login failures look alike to the client ([`auth::LoginFailure::Refused`]); the reason is
//!   logged.
//! - Passwords are never logged and never cached.

pub mod address;
pub mod admin;
mod aliases;
pub mod auth;
pub mod backend;
mod cache;
pub mod dn;
pub mod entry;
pub mod error;
pub mod filter;
pub mod ldif_format;
mod metrics;
pub mod model;
pub mod password;
pub mod provision;
mod resolve;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub use address::{Address, AddressError, Domain};
pub use admin::{Admin, AdminScope, IssuedToken};
pub use aliases::{AliasUpdate, NewAlias};
pub use auth::{LoginFailure, Refusal};
pub use backend::Actor;
pub use backend::ldap::LdapConfig;
pub use backend::ldif::LdifConfig;
pub use cache::CacheConfig;
pub use error::{DirectoryError, Result};
pub use model::{
    Alias, DomainResolution, Expansion, LocalDomain, Mailbox, Resolution, Service, Services, Skip,
    Status, Tenant,
};

use backend::Backend;
use cache::Cache;
use metrics::DirectoryMetrics;

/// Which backend to use, and its settings.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// An LDAP server.
    Ldap(LdapConfig),
    /// An LDIF file.
    Ldif(LdifConfig),
}

/// The directory's validated settings.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// The suffix of the tree (`dc=example,dc=test`).
    pub base_dn: String,
    /// The backend.
    pub backend: BackendConfig,
    /// Cache limits.
    pub cache: CacheConfig,
    /// How many aliases deep an expansion may go.
    pub max_alias_depth: usize,
    /// Sub-address separator (`+` in `bob+lists@example.test`), or none.
    pub recipient_delimiter: Option<char>,
}

/// The directory, shared by every front-end of the process.
pub struct Directory {
    backend: Backend,
    base_dn: String,
    tenants_dn: String,
    max_alias_depth: usize,
    recipient_delimiter: Option<char>,
    domains: Cache<Domain, DomainResolution>,
    recipients: Cache<Address, Resolution>,
    metrics: DirectoryMetrics,
}

impl Directory {
    /// Opens the backend (the LDIF file is read now; LDAP connects on first use) and registers
    /// the directory's metrics.
    pub fn open(config: &DirectoryConfig, registry: &prometheus::Registry) -> Result<Directory> {
        let backend = match &config.backend {
            BackendConfig::Ldap(ldap) => Backend::Ldap(backend::ldap::LdapBackend::new(ldap)?),
            BackendConfig::Ldif(ldif) => Backend::Ldif(Box::new(backend::ldif::LdifBackend::open(
                ldif,
                &config.base_dn,
            )?)),
        };
        Ok(Directory {
            backend,
            tenants_dn: format!("o=tenants,{}", config.base_dn),
            base_dn: config.base_dn.clone(),
            max_alias_depth: config.max_alias_depth.max(1),
            recipient_delimiter: config.recipient_delimiter,
            domains: Cache::new(config.cache),
            recipients: Cache::new(config.cache),
            metrics: DirectoryMetrics::new(registry),
        })
    }

    /// Whether the directory answers now (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        self.timed("ping", self.backend.ping(&self.base_dn)).await
    }

    /// The backend's name, `ldap` or `ldif`.
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Runs a backend call, recording its duration and outcome.
    async fn timed<T>(&self, operation: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        // "Not found" and conflicts are answers, not failures of the backend.
        let ok = !matches!(&result, Err(e) if e.is_temporary());
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .request(self.backend.kind(), operation, ok, seconds);
        if let Err(error) = &result
            && error.is_temporary()
        {
            tracing::warn!(operation, cause = %error, "directory request failed");
        }
        result
    }

    /// Forgets cached answers after a change made through this process.
    fn changed(&self) {
        self.domains.clear();
        self.recipients.clear();
    }
}

/// A shared directory handle.
pub type SharedDirectory = Arc<Directory>;
