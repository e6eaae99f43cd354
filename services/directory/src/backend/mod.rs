//! The storage behind the directory: an LDAP server or an LDIF file.
//!
//! Both backends offer the same few primitives (search, read, bind, add, modify, delete) over
//! [`Entry`] values, and the directory logic in `resolve`, `auth` and `aliases` is written once
//! above them. That is how the two stay identical: the LDIF backend evaluates the same
//! [`Filter`] trees that the LDAP backend sends, and reports the same errors a server would
//! (no such object, already exists, constraint violation).

pub mod ldap;
pub mod ldif;

use crate::entry::Entry;
use crate::error::Result;
use crate::filter::Filter;

/// How far below the base a search looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base entry only.
    Base,
    /// The base entry and everything below it.
    Subtree,
}

/// One change to an entry's attributes (RFC 4511 §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set the attribute to exactly these values; no values removes it.
    Replace(String, Vec<String>),
    /// Add these values, keeping the others.
    Add(String, Vec<String>),
    /// Remove these values, keeping the others; a value that is not there is `NotFound`.
    Remove(String, Vec<String>),
}

/// Whose authority a write is made with.
///
/// Tenant-scoped writes of the JSON API are made as the tenant administrator, so that the
/// directory's own access rules confine them to that tenant: an authorisation mistake in
/// Mailfold still cannot reach another tenant's entries. Everything else is made as the
/// service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// The configured service account.
    Service,
    /// A tenant administrator, by the DN of its entry. The LDAP backend sends the write with
    /// the proxied authorization control (RFC 4370) naming this DN; the LDIF backend applies
    /// the same rule as the recommended ACLs ([`ldif::admin_may_write`]).
    Admin(&'a str),
}

/// The result of checking a password by binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// The directory accepted the credentials.
    Accepted,
    /// Wrong password, no password stored, or a scheme the backend cannot verify.
    Refused,
}

/// Either backend.
pub(crate) enum Backend {
    Ldap(ldap::LdapBackend),
    Ldif(Box<ldif::LdifBackend>),
}

impl Backend {
    /// Entries at or below `base` that match `filter`.
    pub(crate) async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
    ) -> Result<Vec<Entry>> {
        match self {
            Backend::Ldap(ldap) => ldap.search(base, scope, filter).await,
            Backend::Ldif(ldif) => ldif.search(base, scope, filter),
        }
    }

    /// The entry named `dn`, if it exists.
    pub(crate) async fn read(&self, dn: &str) -> Result<Option<Entry>> {
        match self {
            Backend::Ldap(ldap) => ldap.read(dn).await,
            Backend::Ldif(ldif) => ldif.read(dn),
        }
    }

    /// Checks `password` for the entry `dn`. The caller has already refused empty passwords.
    pub(crate) async fn bind(&self, dn: &str, password: &str) -> Result<BindOutcome> {
        match self {
            Backend::Ldap(ldap) => ldap.bind(dn, password).await,
            Backend::Ldif(ldif) => ldif.bind(dn, password).await,
        }
    }

    /// Adds a new entry; its parent must exist.
    pub(crate) async fn add(&self, actor: Actor<'_>, entry: Entry) -> Result<()> {
        match self {
            Backend::Ldap(ldap) => ldap.add(actor, entry).await,
            Backend::Ldif(ldif) => ldif.add(actor, entry).await,
        }
    }

    /// Changes attributes of an existing entry.
    pub(crate) async fn modify(
        &self,
        actor: Actor<'_>,
        dn: &str,
        changes: Vec<Change>,
    ) -> Result<()> {
        match self {
            Backend::Ldap(ldap) => ldap.modify(actor, dn, changes).await,
            Backend::Ldif(ldif) => ldif.modify(actor, dn, changes).await,
        }
    }

    /// Deletes a leaf entry.
    pub(crate) async fn delete(&self, actor: Actor<'_>, dn: &str) -> Result<()> {
        match self {
            Backend::Ldap(ldap) => ldap.delete(actor, dn).await,
            Backend::Ldif(ldif) => ldif.delete(actor, dn).await,
        }
    }

    /// Whether the backend can answer now (readiness).
    pub(crate) async fn ping(&self, base: &str) -> Result<()> {
        self.read(base).await.map(|_| ())
    }

    /// A short name for logs and metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Ldap(_) => "ldap",
            Backend::Ldif(_) => "ldif",
        }
    }
}
