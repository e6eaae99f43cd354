//! The directory's objects in the domain's own words, read from entries.
//!
//! Entries carry raw attributes; these types carry decisions. The inheritance rules live here,
//! in one place:
//!
//! - `mailfoldStatus` is checked tenant → domain → mailbox (or alias); the first level that is
//!   not `active` decides. Absent means `active`. An unknown value counts as `disabled`, the
//!   safe reading of data Mailfold does not understand.
//! - `mailfoldEnabledService` is a positive list at each level; absent means "every service".
//!   The effective set is the intersection of the levels that have one.
//! - Limits are bytes or counts, `0` unlimited, absent "inherit". A mailbox's quota is its own
//!   `mailfoldQuotaBytes`, else the domain's `mailfoldDefaultQuotaBytes`, else the tenant's;
//!   the largest message is the strictest non-zero `mailfoldMaxMessageSize` of the three.

use std::fmt;
use std::sync::Arc;

use crate::address::{Address, Domain};
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};

/// An account or object state (`mailfoldStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// In service.
    Active,
    /// Temporarily out of service (for example unpaid); data kept.
    Suspended,
    /// Out of service.
    Disabled,
    /// Being removed; its mail stays on the shard until purged.
    Deleting,
}

impl Status {
    /// Reads `mailfoldStatus`; absent is `Active`, unknown is `Disabled`.
    pub fn of(entry: &Entry) -> Status {
        match entry
            .first("mailfoldStatus")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("active") => Status::Active,
            Some("suspended") => Status::Suspended,
            Some("deleting") => Status::Deleting,
            Some(_) => Status::Disabled,
        }
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Disabled => "disabled",
            Status::Deleting => "deleting",
        }
    }

    /// The first status in `levels` (outermost first) that is not active, else active.
    pub(crate) fn effective(levels: &[Status]) -> Status {
        levels
            .iter()
            .copied()
            .find(|s| *s != Status::Active)
            .unwrap_or(Status::Active)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service a mailbox can be allowed (`mailfoldEnabledService`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Receiving mail.
    Deliver,
    /// Submitting mail (SMTP AUTH).
    Smtp,
    /// IMAP access.
    Imap,
    /// POP3 access.
    Pop3,
    /// Managing Sieve filters.
    Sieve,
    /// The JSON API.
    Api,
}

impl Service {
    /// Every service, in attribute order.
    pub const ALL: [Service; 6] = [
        Service::Deliver,
        Service::Smtp,
        Service::Imap,
        Service::Pop3,
        Service::Sieve,
        Service::Api,
    ];

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Deliver => "deliver",
            Service::Smtp => "smtp",
            Service::Imap => "imap",
            Service::Pop3 => "pop3",
            Service::Sieve => "sieve",
            Service::Api => "api",
        }
    }

    /// Parses an attribute value, ignoring case.
    pub fn parse(value: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services(u8);

impl Services {
    /// Every service.
    pub fn all() -> Services {
        Services(Service::ALL.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// The level's list, or `None` when the entry has none (inherit).
    fn of(entry: &Entry) -> Option<Services> {
        let values = entry.values("mailfoldEnabledService");
        // Unknown names are ignored: a positive list can only lose by them.
        (!values.is_empty()).then(|| {
            Services(
                values
                    .iter()
                    .filter_map(|v| Service::parse(v))
                    .fold(0, |b, s| b | s.bit()),
            )
        })
    }

    /// Whether `service` is in the set.
    pub fn contains(self, service: Service) -> bool {
        self.0 & service.bit() != 0
    }

    /// The services in the set.
    pub fn iter(self) -> impl Iterator<Item = Service> {
        Service::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub(crate) fn effective(levels: &[Option<Services>]) -> Services {
        levels
            .iter()
            .flatten()
            .fold(Services::all(), |acc, s| Services(acc.0 & s.0))
    }
}

/// The limit attributes a tenant or domain may carry. `None` is absent (inherit), `Some(0)`
/// unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// `mailfoldMaxDomains`.
    pub max_domains: Option<u64>,
    /// `mailfoldMaxMailboxes`.
    pub max_mailboxes: Option<u64>,
    /// `mailfoldMaxAliases`.
    pub max_aliases: Option<u64>,
    /// `mailfoldMaxQuotaBytes`: the largest quota a mailbox below may be given.
    pub max_quota_bytes: Option<u64>,
    /// `mailfoldDefaultQuotaBytes`: quota of a mailbox that sets none.
    pub default_quota_bytes: Option<u64>,
    /// `mailfoldMaxMessageSize`.
    pub max_message_size: Option<u64>,
}

impl Limits {
    fn of(entry: &Entry) -> Result<Limits> {
        Ok(Limits {
            max_domains: number(entry, "mailfoldMaxDomains")?,
            max_mailboxes: number(entry, "mailfoldMaxMailboxes")?,
            max_aliases: number(entry, "mailfoldMaxAliases")?,
            max_quota_bytes: number(entry, "mailfoldMaxQuotaBytes")?,
            default_quota_bytes: number(entry, "mailfoldDefaultQuotaBytes")?,
            max_message_size: number(entry, "mailfoldMaxMessageSize")?,
        })
    }
}

/// The strictest of several optional limits where `0` is unlimited: the smallest non-zero
/// value, `0` when none is set.
pub fn strictest(limits: &[Option<u64>]) -> u64 {
    limits
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0)
        .min()
        .unwrap_or(0)
}

/// A tenant: a customer of the hosting provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// `mailfoldTenantId`.
    pub id: String,
    /// `o`: the customer's name, if recorded.
    pub name: Option<String>,
    /// The entry's DN.
    pub dn: String,
    /// Its own status.
    pub status: Status,
    /// Its own service list, if any.
    pub services: Option<Services>,
    /// Its limits.
    pub limits: Limits,
    /// Default shard for new mailboxes.
    pub shard: Option<String>,
}

impl Tenant {
    /// Reads a `mailfoldTenant` entry.
    pub fn from_entry(entry: &Entry) -> Result<Tenant> {
        let id = required(entry, "mailfoldTenantId")?.to_string();
        Ok(Tenant {
            id,
            name: entry.first("o").map(str::to_string),
            dn: entry.dn.clone(),
            status: Status::of(entry),
            services: Services::of(entry),
            limits: Limits::of(entry)?,
            shard: entry.first("mailfoldMailShard").map(str::to_string),
        })
    }
}

/// A virtual domain hosted by the platform, with its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDomain {
    /// The primary name.
    pub name: Domain,
    /// The entry's DN.
    pub dn: String,
    /// The tenant that owns it.
    pub tenant: Arc<Tenant>,
    /// Its own status.
    pub status: Status,
    /// Its own service list, if any.
    pub services: Option<Services>,
    /// Its limits.
    pub limits: Limits,
    /// `mailfoldDomainAliasName`: other names that deliver here.
    pub alias_names: Vec<Domain>,
    /// `mailfoldCatchAllTarget`: where mail for unknown local parts goes.
    pub catch_all: Vec<String>,
    /// Default shard for new mailboxes.
    pub shard: Option<String>,
}

impl LocalDomain {
    /// Reads a `mailfoldDomain` entry owned by `tenant`.
    pub fn from_entry(entry: &Entry, tenant: Arc<Tenant>) -> Result<LocalDomain> {
        let name = required(entry, "mailfoldDomainName")?;
        let name = Domain::parse(name).map_err(|_| bad_value(entry, "mailfoldDomainName"))?;
        let alias_names = entry
            .values("mailfoldDomainAliasName")
            .iter()
            .map(|v| Domain::parse(v).map_err(|_| bad_value(entry, "mailfoldDomainAliasName")))
            .collect::<Result<Vec<_>>>()?;
        Ok(LocalDomain {
            name,
            dn: entry.dn.clone(),
            tenant,
            status: Status::of(entry),
            services: Services::of(entry),
            limits: Limits::of(entry)?,
            alias_names,
            catch_all: entry.values("mailfoldCatchAllTarget").to_vec(),
            shard: entry.first("mailfoldMailShard").map(str::to_string),
        })
    }

    /// Status after the tenant's: the domain is only active when both are.
    pub fn effective_status(&self) -> Status {
        Status::effective(&[self.tenant.status, self.status])
    }

    /// The most aliases the domain may hold, from the domain's and tenant's limits (0: none).
    pub fn max_aliases(&self) -> u64 {
        strictest(&[self.limits.max_aliases, self.tenant.limits.max_aliases])
    }

    /// The most mailboxes the domain may hold (0: unlimited).
    pub fn max_mailboxes(&self) -> u64 {
        strictest(&[self.limits.max_mailboxes, self.tenant.limits.max_mailboxes])
    }
}

/// How a domain name is hosted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainResolution {
    /// One of the platform's domains, by its primary name.
    Local(Arc<LocalDomain>),
    /// Another name of a local domain (`mailfoldDomainAliasName`).
    Alias {
        /// The name asked for.
        alias: Domain,
        /// The domain it belongs to.
        domain: Arc<LocalDomain>,
    },
    /// Not hosted here.
    NotLocal,
}

impl DomainResolution {
    /// The local domain behind either form.
    pub fn local(&self) -> Option<&Arc<LocalDomain>> {
        match self {
            DomainResolution::Local(domain) | DomainResolution::Alias { domain, .. } => {
                Some(domain)
            }
            DomainResolution::NotLocal => None,
        }
    }
}

/// A mailbox with everything a front-end needs, inherited values already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The immutable id (`uid`), which the store path derives from.
    pub id: String,
    /// The entry's DN (for binds).
    pub dn: String,
    /// The primary address (`mail`).
    pub address: Address,
    /// Every address that reaches it (`mailfoldAddress`), the primary included: what the
    /// mailbox may send as.
    pub addresses: Vec<String>,
    /// The owning tenant's id (metrics label, API scope).
    pub tenant: String,
    /// The domain whose subtree holds the entry.
    pub domain: Domain,
    /// `mailfoldMailShard`.
    pub shard: String,
    /// `mailfoldMailStore`, relative to the shard root; validated by the store before use.
    pub store: String,
    /// Quota in bytes (0: unlimited).
    pub quota_bytes: u64,
    /// Quota in messages (0: unlimited).
    pub quota_messages: u64,
    /// Largest message accepted for it (0: unlimited).
    pub max_message_size: u64,
    /// Status after tenant and domain.
    pub status: Status,
    /// Services after tenant and domain.
    pub services: Services,
    /// `mailfoldForwardAddress` values.
    pub forward: Vec<String>,
}

impl Mailbox {
    /// Reads a mailbox entry in `domain`.
    pub fn from_entry(entry: &Entry, domain: &LocalDomain) -> Result<Mailbox> {
        let address = required(entry, "mail")?;
        let address = Address::parse(address).map_err(|_| bad_value(entry, "mail"))?;
        let id = match entry.first("uid") {
            Some(uid) => uid.to_string(),
            None => crate::dn::Dn::parse(&entry.dn)
                .ok()
                .and_then(|dn| dn.leaf_value().map(str::to_string))
                .ok_or_else(|| bad_value(entry, "uid"))?,
        };
        let tenant = &domain.tenant;
        let quota_bytes = number(entry, "mailfoldQuotaBytes")?
            .or(domain.limits.default_quota_bytes)
            .or(tenant.limits.default_quota_bytes)
            .unwrap_or(0);
        let own_size = number(entry, "mailfoldMaxMessageSize")?;

        Ok(Mailbox {
            id,
            dn: entry.dn.clone(),
            address,
            addresses: entry
                .values("mailfoldAddress")
                .iter()
                .map(|a| a.to_lowercase())
                .collect(),
            tenant: tenant.id.clone(),
            domain: domain.name.clone(),
            shard: required(entry, "mailfoldMailShard")?.to_string(),
            store: required(entry, "mailfoldMailStore")?.to_string(),
            quota_bytes,
            quota_messages: number(entry, "mailfoldQuotaMessages")?.unwrap_or(0),
            max_message_size: strictest(&[
                own_size,
                domain.limits.max_message_size,
                tenant.limits.max_message_size,
            ]),
            status: Status::effective(&[tenant.status, domain.status, Status::of(entry)]),
            services: Services::effective(&[tenant.services, domain.services, Services::of(entry)]),
            forward: entry.values("mailfoldForwardAddress").to_vec(),
        })
    }

    /// Whether the mailbox is active and has `service`.
    pub fn allows(&self, service: Service) -> bool {
        self.status == Status::Active && self.services.contains(service)
    }
}

/// An alias: an address that expands to other addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The entry's DN.
    pub dn: String,
    /// The primary address (`mail`).
    pub address: Address,
    /// Every address that reaches it (`mailfoldAddress`, the primary included).
    pub addresses: Vec<String>,
    /// `mailfoldAliasTarget`, as stored.
    pub targets: Vec<String>,
    /// `description`.
    pub description: Option<String>,
    /// Its own status.
    pub status: Status,
}

impl Alias {
    /// Reads a `mailfoldAlias` entry.
    pub fn from_entry(entry: &Entry) -> Result<Alias> {
        let address = required(entry, "mail")?;
        let address = Address::parse(address).map_err(|_| bad_value(entry, "mail"))?;
        Ok(Alias {
            dn: entry.dn.clone(),
            address,
            addresses: entry.values("mailfoldAddress").to_vec(),
            targets: entry.values("mailfoldAliasTarget").to_vec(),
            description: entry.first("description").map(str::to_string),
            status: Status::of(entry),
        })
    }
}

/// Why an alias target did not become a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The target is not a valid address.
    Invalid,
    /// The target is in a local domain but nothing has that address.
    Unknown,
    /// The target mailbox or alias is not active, or does not receive mail.
    Inactive,
    /// The target is an alias already being expanded on this path.
    Loop,
    /// Expanding the target would pass the configured depth limit.
    TooDeep,
}

impl Skip {
    /// A short name for logs and the lookup command.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Invalid => "invalid address",
            Skip::Unknown => "unknown local address",
            Skip::Inactive => "not active",
            Skip::Loop => "alias loop",
            Skip::TooDeep => "too deeply nested",
        }
    }
}

/// The final recipients of an alias or catch-all, each once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Local mailboxes, each at most once, in the order first reached.
    pub mailboxes: Vec<Mailbox>,
    /// Addresses outside the platform, each at most once.
    pub external: Vec<Address>,
    /// Targets that were left out, and why.
    pub skipped: Vec<(String, Skip)>,
}

impl Expansion {
    /// Whether the expansion reaches anyone at all.
    pub fn is_empty(&self) -> bool {
        self.mailboxes.is_empty() && self.external.is_empty()
    }
}

/// Where mail for an address goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A mailbox. Its `status` and `services` still have to be checked by the caller.
    Mailbox(Mailbox),
    /// An alias and its expansion.
    Alias {
        /// The alias.
        alias: Alias,
        /// Its final recipients.
        expansion: Expansion,
    },
    /// No such address; the domain's catch-all took it.
    CatchAll {
        /// The catch-all's final recipients.
        expansion: Expansion,
    },
    /// An alias, or its domain or tenant, that is not active.
    Inactive {
        /// The status that decided.
        status: Status,
    },
    /// A local domain, but no such address and no catch-all.
    Unknown,
    /// The domain is not hosted here.
    NotLocal,
}

/// The first value of a MUST attribute, or an inconsistency error naming the entry.
pub(crate) fn required<'e>(entry: &'e Entry, attribute: &str) -> Result<&'e str> {
    entry.first(attribute).ok_or_else(|| {
        DirectoryError::Inconsistent(format!("entry {} has no {attribute}", entry.dn))
    })
}

fn bad_value(entry: &Entry, attribute: &str) -> DirectoryError {
    DirectoryError::Inconsistent(format!("entry {} has an invalid {attribute}", entry.dn))
}

fn number(entry: &Entry, attribute: &str) -> Result<Option<u64>> {
    entry
        .first(attribute)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| bad_value(entry, attribute))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(status: &str, services: &[&str], size: Option<&str>) -> Arc<Tenant> {
        let mut entry = Entry::new("mailfoldTenantId=t1,o=tenants,dc=x");
        entry.push("mailfoldTenantId", "t1");
        entry.push("mailfoldStatus", status);
        for s in services {
            entry.push("mailfoldEnabledService", *s);
        }
        if let Some(size) = size {
            entry.push("mailfoldMaxMessageSize", size);
        }
        entry.push("mailfoldDefaultQuotaBytes", "1000");
        Arc::new(Tenant::from_entry(&entry).unwrap())
    }

    fn domain(tenant: Arc<Tenant>, size: Option<&str>) -> LocalDomain {
        let mut entry = Entry::new("mailfoldDomainName=a.test,ou=domains,mailfoldTenantId=t1");
        entry.push("mailfoldDomainName", "a.test");
        if let Some(size) = size {
            entry.push("mailfoldMaxMessageSize", size);
        }
        LocalDomain::from_entry(&entry, tenant).unwrap()
    }

    fn mailbox_entry() -> Entry {
        let mut entry = Entry::new("uid=u1,ou=mailboxes,mailfoldDomainName=a.test");
        for (k, v) in [
            ("uid", "u1"),
            ("mail", "bob@a.test"),
            ("mailfoldMailShard", "s1"),
            ("mailfoldMailStore", "ab/cd/u1"),
        ] {
            entry.push(k, v);
        }
        entry
    }

    #[test]
    fn quota_is_inherited_from_the_tenant_when_absent() {
        let domain = domain(tenant("active", &[], None), None);
        let mailbox = Mailbox::from_entry(&mailbox_entry(), &domain).unwrap();
        assert_eq!(mailbox.quota_bytes, 1000);

        let mut own = mailbox_entry();
        own.push("mailfoldQuotaBytes", "0");
        assert_eq!(Mailbox::from_entry(&own, &domain).unwrap().quota_bytes, 0);
    }

    #[test]
    fn the_strictest_message_size_wins_and_zero_is_unlimited() {
        let domain = domain(tenant("active", &[], Some("5000")), Some("0"));
        let mut entry = mailbox_entry();
        entry.push("mailfoldMaxMessageSize", "9000");
        assert_eq!(
            Mailbox::from_entry(&entry, &domain)
                .unwrap()
                .max_message_size,
            5000
        );
        assert_eq!(strictest(&[None, Some(0)]), 0);
    }

    #[test]
    fn status_is_decided_by_the_outermost_inactive_level() {
        let domain = domain(tenant("suspended", &[], None), None);
        let mut entry = mailbox_entry();
        entry.push("mailfoldStatus", "disabled");
        let mailbox = Mailbox::from_entry(&entry, &domain).unwrap();
        assert_eq!(mailbox.status, Status::Suspended);
        assert!(!mailbox.allows(Service::Deliver));
    }

    #[test]
    fn unknown_status_values_count_as_disabled() {
        let mut entry = mailbox_entry();
        entry.push("mailfoldStatus", "on-holiday");
        assert_eq!(Status::of(&entry), Status::Disabled);
    }

    #[test]
    fn services_are_the_intersection_of_the_levels_that_list_any() {
        let domain = domain(tenant("active", &["deliver", "imap", "pop3"], None), None);
        let mut entry = mailbox_entry();
        entry.push("mailfoldEnabledService", "pop3");
        entry.push("mailfoldEnabledService", "smtp");
        let mailbox = Mailbox::from_entry(&entry, &domain).unwrap();
        assert_eq!(
            mailbox.services.iter().collect::<Vec<_>>(),
            vec![Service::Pop3]
        );
    }

    #[test]
    fn a_limit_that_is_not_a_number_is_an_inconsistency() {
        let domain = domain(tenant("active", &[], None), None);
        let mut entry = mailbox_entry();
        entry.push("mailfoldQuotaBytes", "lots");
        let error = Mailbox::from_entry(&entry, &domain).unwrap_err();
        assert!(error.is_temporary(), "{error}");
    }
}
