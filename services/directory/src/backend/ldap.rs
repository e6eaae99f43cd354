//! The LDAP backend: ldap3 on tokio, rustls for StartTLS and LDAPS, a deadpool pool.
//!
//! Searches run on pooled connections bound as the service account. A user's password is
//! checked on a connection of its own, opened for that one bind and closed after it: bind state
//! belongs to a connection, so a user bind on a pooled connection would change the identity of
//! every later search on it.
//!
//! Every operation has a timeout, and ldap3 reports LDAP result codes inside `Ok`, so each
//! result has its code checked (`check`, `code_error`). A pooled connection that failed at the transport level is
//! detached from the pool rather than returned to it, and the operation is tried once more on
//! a fresh connection: after a server restart every pooled connection is dead, and the first
//! request should not be the one that pays for it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Mod, ResultEntry, SearchEntry,
};

use super::{Actor, BindOutcome, Change, Scope};
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};
use crate::filter::Filter;

/// How to reach the LDAP server.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade `ldap://` connections with StartTLS (RFC 4513 §3).
    pub starttls: bool,
    /// PEM file of the CA that signed the server's certificate; required for TLS.
    pub ca_file: Option<PathBuf>,
    /// The service account searches run as (read-only is enough unless the API writes).
    pub bind_dn: String,
    /// Its password.
    pub bind_password: String,
    /// Most pooled service connections.
    pub pool_size: usize,
    /// Limit for connecting, and for each operation.
    pub timeout: Duration,
}

/// Opens connections with the configured URL, TLS and timeouts.
struct Connector {
    url: String,
    settings: LdapConnSettings,
    timeout: Duration,
}

impl Connector {
    async fn connect(&self) -> Result<Ldap> {
        let (connection, ldap) = LdapConnAsync::with_settings(self.settings.clone(), &self.url)
            .await
            .map_err(|e| unavailable("connecting", e))?;
        ldap3::drive!(connection);
        Ok(ldap)
    }

    /// A simple bind, with the timeout. `Ok(false)` is invalid credentials (RFC 4511 §4.2.2).
    async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<bool> {
        let result = ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, password)
            .await;
        match result {
            Ok(result) if result.rc == 49 => Ok(false),
            result => check("binding", result).map(|_| true),
        }
    }
}

/// The pool's manager: a new object is a connection bound as the service account.
struct ServiceConnections {
    connector: Arc<Connector>,
    bind_dn: String,
    bind_password: String,
}

impl managed::Manager for ServiceConnections {
    type Type = Ldap;
    type Error = DirectoryError;

    async fn create(&self) -> Result<Ldap> {
        let mut ldap = self.connector.connect().await?;
        if !self
            .connector
            .bind(&mut ldap, &self.bind_dn, &self.bind_password)
            .await?
        {
            // A wrong service password is an operator's problem, and mail must wait for it.
            return Err(DirectoryError::Unavailable(
                "binding as the service account: invalid credentials".to_string(),
            ));
        }
        Ok(ldap)
    }

    async fn recycle(&self, ldap: &mut Ldap, _: &Metrics) -> RecycleResult<DirectoryError> {
        if ldap.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

/// The LDAP backend.
pub struct LdapBackend {
    connector: Arc<Connector>,
    pool: Pool<ServiceConnections>,
}

impl LdapBackend {
    /// Builds the backend. Connections are opened on first use, so a server that is down at
    /// start-up delays readiness instead of failing the start.
    pub fn new(config: &LdapConfig) -> Result<LdapBackend> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(config.timeout)
            .set_starttls(config.starttls);
        let wants_tls = config.starttls || config.url.starts_with("ldaps:");
        match (&config.ca_file, wants_tls) {
            (Some(ca_file), _) => {
                let tls = mailfold_net::client_config(ca_file)
                    .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
                settings = settings.set_config(tls);
            }
            (None, true) => {
                return Err(DirectoryError::Unavailable(
                    "tls to the directory needs a ca_file".to_string(),
                ));
            }
            (None, false) => {}
        }

        let connector = Arc::new(Connector {
            url: config.url.clone(),
            settings,
            timeout: config.timeout,
        });
        let manager = ServiceConnections {
            connector: connector.clone(),
            bind_dn: config.bind_dn.clone(),
            bind_password: config.bind_password.clone(),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .build()
            .map_err(|e| DirectoryError::Unavailable(format!("building ldap pool: {e}")))?;
        Ok(LdapBackend { connector, pool })
    }

    /// Runs `operation` on a pooled connection, once more on a fresh one after a transport
    /// failure. Result codes are not retried: the server answered.
    async fn perform(&self, operation: &Operation<'_>) -> Result<Answer> {
        self.perform_as(Actor::Service, operation).await
    }

    /// [`perform`](Self::perform) with the authority of `actor`: for an administrator, the
    /// request carries the proxied authorization control (RFC 4370 §3), marked critical, so
    /// the server evaluates its access rules for that DN or refuses the request outright.
    async fn perform_as(&self, actor: Actor<'_>, operation: &Operation<'_>) -> Result<Answer> {
        let mut last_error = None;
        for _attempt in 0..2 {
            let mut ldap = self.pool.get().await.map_err(pool_error)?;
            if let Actor::Admin(dn) = actor {
                // RFC 4370 §3: the authzId form is "dn:" followed by the DN.
                let control = ldap3::controls::ProxyAuth {
                    authzid: format!("dn:{dn}"),
                };
                ldap.with_controls(control);
            }
            match operation.run(&mut ldap, self.connector.timeout).await {
                Err(error) if is_transport(&error) => {
                    // A dead connection: drop it instead of handing it to the next caller.
                    let _ = Object::take(ldap);
                    last_error = Some(unavailable("talking to the directory", error));
                }
                result => return result.map_err(|e| result_error("ldap operation", e)),
            }
        }
        Err(last_error.unwrap_or_else(|| DirectoryError::Unavailable("no attempt".to_string())))
    }

    pub(crate) async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &Filter,
    ) -> Result<Vec<Entry>> {
        let scope = match scope {
            Scope::Base => ldap3::Scope::Base,
            Scope::Subtree => ldap3::Scope::Subtree,
        };
        let filter = filter.to_ldap();
        let answer = self
            .perform(&Operation::Search {
                base,
                scope,
                filter: &filter,
            })
            .await?;
        let Answer::Entries(found) = answer else {
            return Err(DirectoryError::Unavailable(
                "search answered without entries".into(),
            ));
        };
        Ok(found
            .into_iter()
            .map(|raw| to_entry(SearchEntry::construct(raw)))
            .collect())
    }

    pub(crate) async fn read(&self, dn: &str) -> Result<Option<Entry>> {
        let mut found = self
            .search(dn, Scope::Base, &Filter::Present("objectClass"))
            .await?;
        Ok(found.pop())
    }

    pub(crate) async fn bind(&self, dn: &str, password: &str) -> Result<BindOutcome> {
        let mut ldap = self.connector.connect().await?;
        let accepted = self.connector.bind(&mut ldap, dn, password).await;
        // Closing is best effort: the connection is not reused either way.
        let _ = ldap.unbind().await;
        Ok(if accepted? {
            BindOutcome::Accepted
        } else {
            BindOutcome::Refused
        })
    }

    pub(crate) async fn add(&self, actor: Actor<'_>, entry: Entry) -> Result<()> {
        let attributes = entry
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.values.iter().cloned().collect()))
            .collect();
        let operation = Operation::Add {
            dn: &entry.dn,
            attributes,
        };
        self.write(actor, "adding entry", operation).await
    }

    pub(crate) async fn modify(
        &self,
        actor: Actor<'_>,
        dn: &str,
        changes: Vec<Change>,
    ) -> Result<()> {
        let mods = changes
            .into_iter()
            .map(|change| match change {
                Change::Replace(name, values) => Mod::Replace(name, values.into_iter().collect()),
                Change::Add(name, values) => Mod::Add(name, values.into_iter().collect()),
                Change::Remove(name, values) => Mod::Delete(name, values.into_iter().collect()),
            })
            .collect();
        self.write(actor, "modifying entry", Operation::Modify { dn, mods })
            .await
    }

    pub(crate) async fn delete(&self, actor: Actor<'_>, dn: &str) -> Result<()> {
        self.write(actor, "deleting entry", Operation::Delete { dn })
            .await
    }

    /// Runs a write and maps its result code to the directory's errors.
    async fn write(&self, actor: Actor<'_>, doing: &str, operation: Operation<'_>) -> Result<()> {
        match self.perform_as(actor, &operation).await? {
            Answer::Done(result) => code_error(doing, &result),
            Answer::Entries(_) => Ok(()),
        }
    }
}

/// One LDAP operation, kept as data so that it can be tried a second time.
enum Operation<'a> {
    Search {
        base: &'a str,
        scope: ldap3::Scope,
        filter: &'a str,
    },
    Add {
        dn: &'a str,
        attributes: Vec<(String, HashSet<String>)>,
    },
    Modify {
        dn: &'a str,
        mods: Vec<Mod<String>>,
    },
    Delete {
        dn: &'a str,
    },
}

/// What an operation returned when the transport worked.
enum Answer {
    Entries(Vec<ResultEntry>),
    Done(LdapResult),
}

impl Operation<'_> {
    async fn run(
        &self,
        ldap: &mut Ldap,
        timeout: Duration,
    ) -> std::result::Result<Answer, LdapError> {
        let ldap = ldap.with_timeout(timeout);
        match self {
            Operation::Search {
                base,
                scope,
                filter,
            } => {
                let result = ldap.search(base, *scope, filter, vec!["*"]).await?;
                // noSuchObject for the base is an empty answer, not a failure.
                if result.1.rc == 32 {
                    return Ok(Answer::Entries(Vec::new()));
                }
                let (entries, _) = result.success()?;
                Ok(Answer::Entries(entries))
            }
            Operation::Add { dn, attributes } => {
                ldap.add(dn, attributes.clone()).await.map(Answer::Done)
            }
            Operation::Modify { dn, mods } => ldap.modify(dn, mods.clone()).await.map(Answer::Done),
            Operation::Delete { dn } => ldap.delete(dn).await.map(Answer::Done),
        }
    }
}

/// Converts ldap3's entry; binary values are dropped (Mailfold reads none).
fn to_entry(raw: SearchEntry) -> Entry {
    let mut entry = Entry::new(raw.dn);
    let mut names: Vec<_> = raw.attrs.into_iter().collect();
    // HashMap order is random: sort so that entries compare equal across runs.
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, values) in names {
        entry.set(&name, values);
    }
    entry
}

/// Whether the error means the connection is gone (as opposed to an LDAP result code).
fn is_transport(error: &LdapError) -> bool {
    !matches!(
        error,
        LdapError::LdapResult { .. } | LdapError::FilterParsing
    )
}

/// Maps a result to `Ok` or the directory error of its code.
fn check(doing: &str, result: std::result::Result<LdapResult, LdapError>) -> Result<LdapResult> {
    let result = result.map_err(|e| result_error(doing, e))?;
    code_error(doing, &result)?;
    Ok(result)
}

fn result_error(doing: &str, error: LdapError) -> DirectoryError {
    match error {
        LdapError::LdapResult { result } => match code_error(doing, &result) {
            Err(error) => error,
            Ok(()) => DirectoryError::Unavailable(format!("{doing}: unexpected success")),
        },
        other => unavailable(doing, other),
    }
}

/// RFC 4511 Appendix A result codes, sorted by what the caller has to do.
fn code_error(doing: &str, result: &LdapResult) -> Result<()> {
    let text = || format!("{doing}: ldap result {} {}", result.rc, result.text);
    match result.rc {
        0 => Ok(()),
        // noSuchObject, and noSuchAttribute for a value removal of a value that is not there.
        32 | 16 => Err(DirectoryError::NotFound),
        // entryAlreadyExists, and constraintViolation from slapo-unique. The server's text
        // names DNs, which the message must not carry to a client.
        68 | 19 => {
            tracing::debug!(cause = %text(), "directory refused a duplicate");
            Err(DirectoryError::Conflict(
                "an entry of that name or one of its addresses exists already".into(),
            ))
        }
        // insufficientAccessRights, and authorizationDenied for a refused proxy (RFC 4370 §6).
        50 | 123 => Err(DirectoryError::Forbidden(text())),
        // Schema refusals: the directory and Mailfold disagree about the schema.
        17 | 21 | 64 | 65 | 67 | 69 => Err(DirectoryError::Inconsistent(text())),
        _ => Err(DirectoryError::Unavailable(text())),
    }
}

fn unavailable(doing: &str, error: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("{doing}: {error}"))
}

fn pool_error(error: PoolError<DirectoryError>) -> DirectoryError {
    match error {
        PoolError::Backend(error) => error,
        other => DirectoryError::Unavailable(format!("ldap pool: {other}")),
    }
}
