//! Tenant administrators: who may use the JSON API for a tenant, and the tokens they log in with.
//!
//! An administrator is a `mailfoldAdmin` entry at `uid=<login>,ou=admins,<tenant entry>`. It
//! logs in with `<uid>@<tenant id>` or with its `mail` (tried in that order) and its password, checked by binding as
//! the entry (the hash stays in the directory), or with a bearer token issued after such a
//! login.
//!
//! # Tokens
//!
//! A token is `mf1.<tenant>.<login>.<secret>`, each part base64url, the secret 32 random
//! bytes. The directory keeps only `SHA-256(token)` and the expiry, as a `mailfoldApiToken`
//! value `<hex digest> <expiry, Unix seconds>` on the administrator's entry. That keeps the
//! API front-ends stateless (any replica can check any token, and a revocation is seen by all
//! at once), and a copy of the directory does not hold usable tokens. Expired values are
//! removed when the administrator next gets a token.
//!
//! # Roles
//!
//! `mailfoldAdminRole: owner` manages every domain of the tenant. Any other role (the API
//! writes `domain-admin`) manages only the domains named in `mailfoldManagedDomain`. An entry
//! without a role follows the schema's description of `mailfoldManagedDomain`: limited to the
//! domains named there, or every domain when none is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::Directory;
use crate::address::{Address, Domain};
use crate::auth::{LoginFailure, Refusal};
use crate::backend::{Actor, BindOutcome, Change, Scope};
use crate::dn::{Dn, rdn};
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};
use crate::filter::Filter;
use crate::model::{Service, Services, Status, Tenant};

/// The longest token accepted for checking; longer input is refused unread.
pub const MAX_TOKEN_LENGTH: usize = 512;

/// What an administrator may manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    /// Every domain of the tenant.
    AllDomains,
    /// Only these domains.
    Domains(Vec<Domain>),
}

/// A tenant administrator, logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The entry's DN: the identity its writes are made with.
    pub dn: String,
    /// Its `uid`.
    pub login: String,
    /// Its `mail`, if any.
    pub mail: Option<String>,
    /// `mailfoldAdminRole`, if any.
    pub role: Option<String>,
    /// The domains it may manage.
    pub scope: AdminScope,
    /// The tenant's id.
    pub tenant: String,
    /// The tenant entry's DN.
    pub tenant_dn: String,
}

impl Admin {
    /// Reads a `mailfoldAdmin` entry of `tenant`.
    pub fn from_entry(entry: &Entry, tenant: &Tenant) -> Result<Admin> {
        let login = match entry.first("uid") {
            Some(uid) => uid.to_string(),
            None => Dn::parse(&entry.dn)
                .ok()
                .and_then(|dn| dn.leaf_value().map(str::to_string))
                .ok_or_else(|| DirectoryError::Inconsistent(format!("{} has no uid", entry.dn)))?,
        };
        let role = entry.first("mailfoldAdminRole").map(str::to_lowercase);
        let managed = entry
            .values("mailfoldManagedDomain")
            .iter()
            .map(|d| Domain::parse(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| {
                DirectoryError::Inconsistent(format!("{} has an invalid managed domain", entry.dn))
            })?;
        let scope = match role.as_deref() {
            Some("owner") => AdminScope::AllDomains,
            None if managed.is_empty() => AdminScope::AllDomains,
            _ => AdminScope::Domains(managed),
        };
        Ok(Admin {
            dn: entry.dn.clone(),
            login,
            mail: entry.first("mail").map(str::to_string),
            role,
            scope,
            tenant: tenant.id.clone(),
            tenant_dn: tenant.dn.clone(),
        })
    }

    /// Whether the administrator may manage `domain` (a primary name of its tenant).
    pub fn manages(&self, domain: &Domain) -> bool {
        match &self.scope {
            AdminScope::AllDomains => true,
            AdminScope::Domains(domains) => domains.contains(domain),
        }
    }

    /// The identity its writes are made with.
    pub fn actor(&self) -> Actor<'_> {
        Actor::Admin(&self.dn)
    }
}

/// A token just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The bearer token; shown once, never stored.
    pub token: String,
    /// When it stops working.
    pub expires: SystemTime,
}

impl Directory {
    /// Logs an administrator in with its `mail` or `<uid>@<tenant>` and its password.
    pub async fn authenticate_admin(
        &self,
        login: &str,
        password: &str,
    ) -> std::result::Result<Admin, LoginFailure> {
        let result = self.check_admin_login(login, password).await;
        match &result {
            Ok(admin) => tracing::info!(admin = %admin.dn, "api login accepted"),
            Err(LoginFailure::Refused(reason)) => {
                // The login is logged only when it has the shape of one.
                let login = Address::parse(login)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!(%login, %reason, "api login refused");
            }
            Err(LoginFailure::Unavailable(cause)) => {
                tracing::warn!(%cause, "api login could not be checked");
            }
        }
        self.metrics.login("api", result.is_ok());
        result
    }

    async fn check_admin_login(
        &self,
        login: &str,
        password: &str,
    ) -> std::result::Result<Admin, LoginFailure> {
        let refused = LoginFailure::Refused;
        let Ok(address) = Address::parse(login) else {
            return Err(refused(Refusal::InvalidLogin));
        };
        if password.is_empty() {
            return Err(refused(Refusal::EmptyPassword));
        }

        let entry = self.admin_entry(&address).await?;
        let outcome = self
            .timed("bind", self.backend.bind(&entry.dn, password))
            .await
            .map_err(LoginFailure::Unavailable)?;
        if outcome == BindOutcome::Refused {
            return Err(refused(Refusal::WrongPassword));
        }
        self.admin_of(&entry).await
    }

    /// The administrator entry a login names: as `<uid>@<tenant>` first (one read of a known
    /// DN), then by `mail` (a search).
    async fn admin_entry(&self, login: &Address) -> std::result::Result<Entry, LoginFailure> {
        let unavailable = LoginFailure::Unavailable;
        let dn = self.admin_dn(login.domain(), login.local_part());
        match self.timed("read", self.backend.read(&dn)).await {
            Ok(Some(entry)) if entry.has_class("mailfoldAdmin") => return Ok(entry),
            Ok(_) => {}
            Err(error) => return Err(unavailable(error)),
        }

        let filter = Filter::And(vec![
            Filter::class("mailfoldAdmin"),
            Filter::equal("mail", login.as_str()),
        ]);
        let mut found = self.search_tenants(&filter).await.map_err(unavailable)?;
        match found.len() {
            0 => Err(LoginFailure::Refused(Refusal::UnknownLogin)),
            1 => Ok(found.remove(0)),
            _ => {
                tracing::error!(login = %login, "two administrators have one mail");
                Err(LoginFailure::Refused(Refusal::Ambiguous))
            }
        }
    }

    /// `uid=<login>,ou=admins,mailfoldTenantId=<tenant>,o=tenants,<base>`.
    pub(crate) fn admin_dn(&self, tenant: &str, login: &str) -> String {
        format!("{},ou=admins,{}", rdn("uid", login), self.tenant_dn(tenant))
    }

    /// `mailfoldTenantId=<tenant>,o=tenants,<base>`.
    pub(crate) fn tenant_dn(&self, tenant: &str) -> String {
        format!("{},{}", rdn("mailfoldTenantId", tenant), self.tenants_dn)
    }

    /// The administrator of an entry that passed its password check: its tenant read, and
    /// both active with the `api` service.
    async fn admin_of(&self, entry: &Entry) -> std::result::Result<Admin, LoginFailure> {
        let unavailable = LoginFailure::Unavailable;
        let misplaced = || {
            LoginFailure::Unavailable(DirectoryError::Inconsistent(format!(
                "{} is not below a tenant's ou=admins",
                entry.dn
            )))
        };
        let dn = Dn::parse(&entry.dn).map_err(|_| misplaced())?;
        let tenant_dn = dn.parent().and_then(|p| p.parent()).ok_or_else(misplaced)?;
        let tenant_entry = self
            .timed("read", self.backend.read(&tenant_dn.to_string()))
            .await
            .map_err(unavailable)?
            .ok_or_else(misplaced)?;
        if !tenant_entry.has_class("mailfoldTenant") {
            return Err(misplaced());
        }
        let tenant = Tenant::from_entry(&tenant_entry).map_err(unavailable)?;

        let status = Status::effective(&[tenant.status, Status::of(entry)]);
        if status != Status::Active {
            return Err(LoginFailure::Refused(Refusal::Inactive(status)));
        }
        if !Services::effective(&[tenant.services]).contains(Service::Api) {
            return Err(LoginFailure::Refused(Refusal::ServiceNotEnabled(
                Service::Api,
            )));
        }
        Admin::from_entry(entry, &tenant).map_err(unavailable)
    }

    /// Issues a bearer token for `admin`, valid for `lifetime`.
    pub async fn issue_token(&self, admin: &Admin, lifetime: Duration) -> Result<IssuedToken> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| DirectoryError::Unavailable(format!("drawing a token: {e}")))?;
        let token = format!(
            "mf1.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&admin.tenant),
            URL_SAFE_NO_PAD.encode(&admin.login),
            URL_SAFE_NO_PAD.encode(secret)
        );
        let expires = SystemTime::now() + lifetime;

        // Drop the expired values first, so that the entry does not grow without end.
        let now = unix_seconds(SystemTime::now());
        let entry = self
            .timed("read", self.backend.read(&admin.dn))
            .await?
            .ok_or(DirectoryError::NotFound)?;
        let expired: Vec<String> = entry
            .values("mailfoldApiToken")
            .iter()
            .filter(|v| stored_expiry(v).is_none_or(|at| at <= now))
            .cloned()
            .collect();
        let mut changes = vec![Change::Add(
            "mailfoldApiToken".into(),
            vec![format!("{} {}", digest(&token), unix_seconds(expires))],
        )];
        if !expired.is_empty() {
            changes.insert(0, Change::Remove("mailfoldApiToken".into(), expired));
        }
        let write = self.backend.modify(Actor::Service, &admin.dn, changes);
        self.timed("modify", write).await?;
        Ok(IssuedToken { token, expires })
    }

    /// The administrator a bearer token belongs to, if the token is current.
    pub async fn authenticate_token(
        &self,
        token: &str,
    ) -> std::result::Result<Admin, LoginFailure> {
        let refused = || LoginFailure::Refused(Refusal::WrongPassword);
        let Some((tenant, login)) = parse_token(token) else {
            return Err(LoginFailure::Refused(Refusal::InvalidLogin));
        };
        let dn = self.admin_dn(&tenant, &login);
        let entry = self
            .timed("read", self.backend.read(&dn))
            .await
            .map_err(LoginFailure::Unavailable)?
            .filter(|e| e.has_class("mailfoldAdmin"))
            .ok_or(LoginFailure::Refused(Refusal::UnknownLogin))?;

        let wanted = digest(token);
        let now = unix_seconds(SystemTime::now());
        let current = entry.values("mailfoldApiToken").iter().any(|value| {
            value
                .split_once(' ')
                .is_some_and(|(hash, _)| hash == wanted)
                && stored_expiry(value).is_some_and(|at| at > now)
        });
        if !current {
            return Err(refused());
        }
        self.admin_of(&entry).await
    }

    /// Revokes a token at once, for every replica.
    pub async fn revoke_token(&self, admin: &Admin, token: &str) -> Result<()> {
        let wanted = digest(token);
        let entry = self
            .timed("read", self.backend.read(&admin.dn))
            .await?
            .ok_or(DirectoryError::NotFound)?;
        let values: Vec<String> = entry
            .values("mailfoldApiToken")
            .iter()
            .filter(|v| v.split_once(' ').is_some_and(|(hash, _)| hash == wanted))
            .cloned()
            .collect();
        if values.is_empty() {
            return Err(DirectoryError::NotFound);
        }
        let change = vec![Change::Remove("mailfoldApiToken".into(), values)];
        let write = self.backend.modify(Actor::Service, &admin.dn, change);
        self.timed("modify", write).await
    }

    /// Administrators of a tenant, sorted by login.
    pub async fn admins(&self, tenant: &Tenant) -> Result<Vec<Admin>> {
        let base = format!("ou=admins,{}", tenant.dn);
        let filter = Filter::class("mailfoldAdmin");
        let search = self.backend.search(&base, Scope::Subtree, &filter);
        let mut admins = self
            .timed("search", search)
            .await?
            .iter()
            .map(|entry| Admin::from_entry(entry, tenant))
            .collect::<Result<Vec<_>>>()?;
        admins.sort_by(|a, b| a.login.cmp(&b.login));
        Ok(admins)
    }
}

/// The tenant and login a token names, if it has the token's shape.
fn parse_token(token: &str) -> Option<(String, String)> {
    if token.len() > MAX_TOKEN_LENGTH {
        return None;
    }
    let mut parts = token.split('.');
    let (Some("mf1"), Some(tenant), Some(login), Some(secret), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let text = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let secret_length = URL_SAFE_NO_PAD.decode(secret).ok()?.len();
    (secret_length == 32).then_some((text(tenant)?, text(login)?))
}

/// The hex SHA-256 of a token: what the directory keeps.
fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The expiry of a stored token value, `None` when the value is malformed.
fn stored_expiry(value: &str) -> Option<u64> {
    value.split_once(' ')?.1.trim().parse().ok()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_tenant_and_login() {
        let secret = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let token = format!(
            "mf1.{}.{}.{secret}",
            URL_SAFE_NO_PAD.encode("acme"),
            URL_SAFE_NO_PAD.encode("jane")
        );
        assert_eq!(parse_token(&token), Some(("acme".into(), "jane".into())));
    }

    #[test]
    fn malformed_or_oversized_tokens_are_not_parsed() {
        let secret = URL_SAFE_NO_PAD.encode([7u8; 32]);
        for bad in [
            String::new(),
            "mf1".into(),
            format!("mf2.YQ.YQ.{secret}"),
            "mf1.YQ.YQ.c2hvcnQ".into(),
            format!("mf1.YQ.YQ.{secret}.extra"),
            format!("mf1.*.YQ.{secret}"),
            format!("mf1.YQ.YQ.{secret}{}", "A".repeat(MAX_TOKEN_LENGTH)),
        ] {
            assert_eq!(parse_token(&bad), None, "{bad}");
        }
    }

    #[test]
    fn stored_values_carry_digest_and_expiry() {
        assert_eq!(digest("abc").len(), 64);
        assert_eq!(stored_expiry("ab12 1700000000"), Some(1_700_000_000));
        assert_eq!(stored_expiry("ab12"), None);
        assert_eq!(stored_expiry("ab12 soon"), None);
    }

    #[test]
    fn owners_manage_every_domain_and_others_only_theirs() {
        let tenant = Tenant::from_entry(&{
            let mut e = Entry::new("mailfoldTenantId=t,o=tenants,dc=x");
            e.push("mailfoldTenantId", "t");
            e
        })
        .unwrap();
        let admin = |role: Option<&str>, managed: &[&str]| {
            let mut e = Entry::new("uid=a,ou=admins,mailfoldTenantId=t,o=tenants,dc=x");
            e.push("uid", "a");
            if let Some(role) = role {
                e.push("mailfoldAdminRole", role);
            }
            for d in managed {
                e.push("mailfoldManagedDomain", *d);
            }
            Admin::from_entry(&e, &tenant).unwrap()
        };
        let one = Domain::parse("one.test").unwrap();
        let two = Domain::parse("two.test").unwrap();

        assert!(admin(Some("owner"), &["one.test"]).manages(&two));
        assert!(admin(None, &[]).manages(&two));
        let limited = admin(Some("domain-admin"), &["one.test"]);
        assert!(limited.manages(&one) && !limited.manages(&two));
        assert!(!admin(Some("domain-admin"), &[]).manages(&one));
    }
}
