//! The operator's side of the directory: creating, changing and removing tenants, domains,
//! mailboxes and tenant administrators.
//!
//! Every write here is made as the service account: operators are trusted with the whole tree.
//! Each operation checks what the directory cannot: syntax of ids, names and addresses, that
//! no entry anywhere claims an address or domain name already (slapo-unique stays the backstop
//! for two writers racing), and the tenant's and domain's limits. Containers (`ou=domains`,
//! `ou=admins`, `ou=mailboxes`, `ou=aliases`) are created with their parent.
//!
//! Removing a mailbox only marks it `deleting`: the front-ends refuse it from then on, its
//! addresses stay claimed, and its Maildir stays on the shard until an operator purges both
//! (docs/api.md says how). A tenant or domain can be removed once it holds no domains, or no
//! mailboxes and aliases.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::Directory;
use crate::address::{Address, Domain};
use crate::admin::Admin;
use crate::backend::{Actor, Change, Scope};
use crate::dn::rdn;
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};
use crate::filter::Filter;
use crate::model::{Limits, LocalDomain, Mailbox, Service, Status, Tenant, strictest};

/// The longest id (tenant, administrator login) accepted.
pub const MAX_ID_LENGTH: usize = 64;

/// Most values of a list attribute set through the API (alias names, forward addresses, extra
/// addresses, managed domains).
pub const MAX_LIST: usize = 100;

/// A change to an optional value: `None` leaves it, `Some(None)` removes it.
pub type Edit<T> = Option<Option<T>>;

/// Changes to a tenant's or domain's limits; each `Some(None)` removes the limit (inherit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    /// `mailfoldMaxDomains` (tenants only).
    pub max_domains: Edit<u64>,
    /// `mailfoldMaxMailboxes`.
    pub max_mailboxes: Edit<u64>,
    /// `mailfoldMaxAliases`.
    pub max_aliases: Edit<u64>,
    /// `mailfoldMaxQuotaBytes`.
    pub max_quota_bytes: Edit<u64>,
    /// `mailfoldDefaultQuotaBytes`.
    pub default_quota_bytes: Edit<u64>,
    /// `mailfoldMaxMessageSize`.
    pub max_message_size: Edit<u64>,
}

/// Settings a tenant and a domain share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `description`.
    pub description: Edit<String>,
    /// `mailfoldStatus`.
    pub status: Option<Status>,
    /// `mailfoldEnabledService`; `Some(None)` removes the list (every service).
    pub services: Edit<Vec<Service>>,
    /// The limits.
    pub limits: LimitsUpdate,
    /// `mailfoldMailShard`: default shard of new mailboxes.
    pub shard: Edit<String>,
}

/// A new tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTenant {
    /// `mailfoldTenantId`.
    pub id: String,
    /// `o`: the customer's name.
    pub name: Option<String>,
    /// Everything else.
    pub settings: Settings,
}

/// A change to a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantUpdate {
    /// `o`.
    pub name: Edit<String>,
    /// Everything else.
    pub settings: Settings,
}

/// A new domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDomain {
    /// Its primary name.
    pub name: String,
    /// `mailfoldDomainAliasName`: other names that deliver here.
    pub alias_names: Vec<String>,
    /// `mailfoldCatchAllTarget`.
    pub catch_all: Vec<String>,
    /// Everything else.
    pub settings: Settings,
}

/// A change to a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainUpdate {
    /// New alias names (replacing the old).
    pub alias_names: Option<Vec<String>>,
    /// New catch-all targets; an empty list removes the catch-all.
    pub catch_all: Option<Vec<String>>,
    /// Everything else.
    pub settings: Settings,
}

/// A new mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMailbox {
    /// The primary address.
    pub address: String,
    /// More addresses in the same domain (or its alias names) that reach it.
    pub aliases: Vec<String>,
    /// The password, stored as `{ARGON2}`; none leaves the mailbox unable to log in.
    pub password: Option<String>,
    /// `cn`: the person's name (the local part when absent).
    pub name: Option<String>,
    /// `mailfoldQuotaBytes`; absent inherits the default quota.
    pub quota_bytes: Option<u64>,
    /// `mailfoldQuotaMessages`.
    pub quota_messages: Option<u64>,
    /// `mailfoldMaxMessageSize`.
    pub max_message_size: Option<u64>,
    /// `mailfoldStatus`.
    pub status: Option<Status>,
    /// `mailfoldEnabledService`; absent inherits.
    pub services: Option<Vec<Service>>,
    /// `mailfoldForwardAddress`.
    pub forward: Vec<String>,
}

/// A change to a mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxUpdate {
    /// A new password.
    pub password: Option<String>,
    /// `cn`.
    pub name: Option<String>,
    /// `mailfoldQuotaBytes`.
    pub quota_bytes: Edit<u64>,
    /// `mailfoldQuotaMessages`.
    pub quota_messages: Edit<u64>,
    /// `mailfoldMaxMessageSize`.
    pub max_message_size: Edit<u64>,
    /// `mailfoldStatus`.
    pub status: Option<Status>,
    /// `mailfoldEnabledService`.
    pub services: Edit<Vec<Service>>,
    /// `mailfoldForwardAddress`; an empty list stops forwarding.
    pub forward: Option<Vec<String>>,
}

/// A new tenant administrator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAdmin {
    /// `uid`: its login within the tenant.
    pub login: String,
    /// Its password, stored as `{ARGON2}`.
    pub password: String,
    /// `mail`: a second login name.
    pub mail: Option<String>,
    /// `cn`.
    pub name: Option<String>,
    /// `mailfoldAdminRole`: `owner` or `domain-admin`.
    pub role: String,
    /// `mailfoldManagedDomain`: the domains a `domain-admin` manages.
    pub managed_domains: Vec<String>,
}

/// A change to a tenant administrator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminUpdate {
    /// A new password.
    pub password: Option<String>,
    /// `mail`.
    pub mail: Edit<String>,
    /// `cn`.
    pub name: Option<String>,
    /// `mailfoldAdminRole`.
    pub role: Option<String>,
    /// `mailfoldManagedDomain`.
    pub managed_domains: Option<Vec<String>>,
    /// `mailfoldStatus`.
    pub status: Option<Status>,
}

/// How full a domain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainUsage {
    /// Mailbox entries (those being deleted included).
    pub mailboxes: u64,
    /// Alias entries.
    pub aliases: u64,
}

/// The roles an administrator entry may have.
pub const ADMIN_ROLES: [&str; 2] = ["owner", "domain-admin"];

impl Directory {
    /// Every tenant, sorted by id.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let found = self
            .search_tenants(&Filter::class("mailfoldTenant"))
            .await?;
        let mut tenants = found
            .iter()
            .map(Tenant::from_entry)
            .collect::<Result<Vec<_>>>()?;
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tenants)
    }

    /// The tenant with this id.
    pub async fn tenant(&self, id: &str) -> Result<Tenant> {
        // No tenant can have an id that is not one: not found, like any other missing id.
        let id = check_id("id", id).map_err(|_| DirectoryError::NotFound)?;
        let entry = self
            .timed("read", self.backend.read(&self.tenant_dn(&id)))
            .await?
            .filter(|e| e.has_class("mailfoldTenant"))
            .ok_or(DirectoryError::NotFound)?;
        Tenant::from_entry(&entry)
    }

    /// Creates a tenant with its `ou=domains` and `ou=admins`.
    pub async fn create_tenant(&self, new: NewTenant) -> Result<Tenant> {
        let id = check_id("id", &new.id)?;
        let dn = self.tenant_dn(&id);
        let mut entry = Entry::new(dn.clone());
        entry.push("objectClass", "mailfoldTenant");
        entry.push("mailfoldTenantId", id.as_str());
        if let Some(name) = new.name.filter(|n| !n.is_empty()) {
            entry.push("o", check_text("name", &name)?);
        }
        apply_settings_to_new(&mut entry, &new.settings)?;

        self.add(entry).await?;
        for unit in ["domains", "admins"] {
            self.add(container(&dn, unit)).await?;
        }
        self.changed();
        self.tenant(&id).await
    }

    /// Changes a tenant.
    pub async fn update_tenant(&self, id: &str, update: TenantUpdate) -> Result<Tenant> {
        let tenant = self.tenant(id).await?;
        let mut changes = settings_changes(&update.settings)?;
        if let Some(name) = update.name {
            let name = name.filter(|n| !n.is_empty());
            let values = name.map(|n| check_text("name", &n)).transpose()?;
            changes.push(replace("o", values.into_iter().collect()));
        }
        self.modify(&tenant.dn, changes).await?;
        self.tenant(id).await
    }

    /// Removes a tenant that has no domains left, with its administrators.
    pub async fn delete_tenant(&self, id: &str) -> Result<()> {
        let tenant = self.tenant(id).await?;
        if !self.domains_of(&tenant).await?.is_empty() {
            return Err(DirectoryError::Conflict(format!(
                "tenant {} still has domains",
                tenant.id
            )));
        }
        for admin in self.admins(&tenant).await? {
            self.delete(&admin.dn).await?;
        }
        for unit in ["admins", "domains"] {
            self.delete_if_present(&format!("ou={unit},{}", tenant.dn))
                .await?;
        }
        self.delete(&tenant.dn).await?;
        self.changed();
        Ok(())
    }

    /// The domains of a tenant, sorted by name, read fresh (not from the cache).
    pub async fn domains_of(&self, tenant: &Tenant) -> Result<Vec<Arc<LocalDomain>>> {
        let base = format!("ou=domains,{}", tenant.dn);
        let filter = Filter::class("mailfoldDomain");
        let search = self.backend.search(&base, Scope::Subtree, &filter);
        let shared = Arc::new(tenant.clone());
        let mut domains = self
            .timed("search", search)
            .await?
            .iter()
            .map(|entry| LocalDomain::from_entry(entry, shared.clone()).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        domains.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(domains)
    }

    /// A local domain by its primary name, read fresh; alias names are not found.
    pub async fn local_domain(&self, name: &str) -> Result<Arc<LocalDomain>> {
        let name = Domain::parse(name)?;
        let filter = Filter::And(vec![
            Filter::class("mailfoldDomain"),
            Filter::equal("mailfoldDomainName", name.as_str()),
        ]);
        let mut found = self.search_tenants(&filter).await?;
        if found.len() > 1 {
            return Err(DirectoryError::Inconsistent(format!(
                "{} domain entries are named {name}",
                found.len()
            )));
        }
        let entry = found.pop().ok_or(DirectoryError::NotFound)?;
        let domain = self.load_domain(entry).await?;
        if domain.name != name {
            return Err(DirectoryError::NotFound);
        }
        Ok(Arc::new(domain))
    }

    /// How many mailboxes and aliases a domain holds.
    pub async fn domain_usage(&self, domain: &LocalDomain) -> Result<DomainUsage> {
        Ok(DomainUsage {
            mailboxes: self.count_below(&domain.dn, "mailfoldMailbox").await?,
            aliases: self.count_below(&domain.dn, "mailfoldAlias").await?,
        })
    }

    /// Creates a domain of `tenant` with its `ou=mailboxes` and `ou=aliases`.
    pub async fn create_domain(&self, tenant: &str, new: NewDomain) -> Result<Arc<LocalDomain>> {
        let tenant = self.tenant(tenant).await?;
        let name = Domain::parse(&new.name)?;
        let alias_names = domain_list("alias_names", &new.alias_names)?;
        if alias_names.contains(&name) {
            return Err(invalid(
                "alias_names",
                "must not repeat the domain's own name",
            ));
        }
        for claimed in std::iter::once(&name).chain(&alias_names) {
            self.domain_name_free(claimed, None).await?;
        }
        let catch_all = address_list("catch_all", &new.catch_all, MAX_LIST)?;

        let max = strictest(&[tenant.limits.max_domains]);
        if max > 0 && self.domains_of(&tenant).await?.len() as u64 >= max {
            return Err(DirectoryError::LimitReached(format!(
                "tenant {} may have at most {max} domains",
                tenant.id
            )));
        }

        let dn = format!(
            "{},ou=domains,{}",
            rdn("mailfoldDomainName", name.as_str()),
            tenant.dn
        );
        let mut entry = Entry::new(dn.clone());
        entry.push("objectClass", "mailfoldDomain");
        entry.push("mailfoldDomainName", name.as_str());
        entry.set(
            "mailfoldDomainAliasName",
            alias_names.iter().map(|d| d.to_string()).collect(),
        );
        entry.set("mailfoldCatchAllTarget", catch_all);
        apply_settings_to_new(&mut entry, &new.settings)?;

        self.add(entry).await?;
        for unit in ["mailboxes", "aliases"] {
            self.add(container(&dn, unit)).await?;
        }
        self.changed();
        self.local_domain(name.as_str()).await
    }

    /// Changes a domain.
    pub async fn update_domain(
        &self,
        name: &str,
        update: DomainUpdate,
    ) -> Result<Arc<LocalDomain>> {
        let domain = self.local_domain(name).await?;
        let mut changes = settings_changes(&update.settings)?;
        if let Some(names) = &update.alias_names {
            let names = domain_list("alias_names", names)?;
            if names.contains(&domain.name) {
                return Err(invalid(
                    "alias_names",
                    "must not repeat the domain's own name",
                ));
            }
            for claimed in &names {
                self.domain_name_free(claimed, Some(&domain.dn)).await?;
            }
            let values = names.iter().map(|d| d.to_string()).collect();
            changes.push(replace("mailfoldDomainAliasName", values));
        }
        if let Some(targets) = &update.catch_all {
            let targets = address_list("catch_all", targets, MAX_LIST)?;
            changes.push(replace("mailfoldCatchAllTarget", targets));
        }
        self.modify(&domain.dn, changes).await?;
        self.local_domain(name).await
    }

    /// Removes a domain that holds no mailboxes and no aliases.
    pub async fn delete_domain(&self, name: &str) -> Result<()> {
        let domain = self.local_domain(name).await?;
        let usage = self.domain_usage(&domain).await?;
        if usage.mailboxes > 0 || usage.aliases > 0 {
            return Err(DirectoryError::Conflict(format!(
                "{} still has mailboxes or aliases",
                domain.name
            )));
        }
        for unit in ["mailboxes", "aliases"] {
            self.delete_if_present(&format!("ou={unit},{}", domain.dn))
                .await?;
        }
        self.delete(&domain.dn).await?;
        self.changed();
        Ok(())
    }

    /// The mailboxes of a domain, sorted by address, read fresh.
    pub async fn mailboxes(&self, domain: &LocalDomain) -> Result<Vec<Mailbox>> {
        let filter = Filter::class("mailfoldMailbox");
        let search = self.backend.search(&domain.dn, Scope::Subtree, &filter);
        let mut mailboxes = self
            .timed("search", search)
            .await?
            .iter()
            .map(|entry| Mailbox::from_entry(entry, domain))
            .collect::<Result<Vec<_>>>()?;
        mailboxes.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(mailboxes)
    }

    /// The mailbox whose primary address is `address`, in `domain`.
    pub async fn mailbox_in(&self, domain: &LocalDomain, address: &str) -> Result<Mailbox> {
        let address = Address::parse(address)?;
        let filter = Filter::And(vec![
            Filter::class("mailfoldMailbox"),
            Filter::equal("mail", address.as_str()),
        ]);
        let search = self.backend.search(&domain.dn, Scope::Subtree, &filter);
        let found = self.timed("search", search).await?;
        match found.as_slice() {
            [entry] => Mailbox::from_entry(entry, domain),
            [] => Err(DirectoryError::NotFound),
            _ => Err(DirectoryError::Inconsistent(format!(
                "two mailboxes are {address}"
            ))),
        }
    }

    /// Creates a mailbox in `domain` on `shard` (the caller applies the placement policy).
    pub async fn create_mailbox(
        &self,
        domain: &LocalDomain,
        new: NewMailbox,
        shard: &str,
    ) -> Result<Mailbox> {
        let address = Address::parse(&new.address).map_err(|e| invalid("address", e))?;
        if address.domain() != domain.name.as_str() {
            return Err(invalid("address", format!("must be in {}", domain.name)));
        }
        let mut addresses = vec![address.clone()];
        for extra in address_list("aliases", &new.aliases, MAX_LIST)? {
            let extra = Address::parse(&extra).map_err(|e| invalid("aliases", e))?;
            let domain_of = Domain::parse(extra.domain())?;
            if domain_of != domain.name && !domain.alias_names.contains(&domain_of) {
                return Err(invalid(
                    "aliases",
                    format!("{extra} is not in {}", domain.name),
                ));
            }
            if !addresses.contains(&extra) {
                addresses.push(extra);
            }
        }
        for claimed in &addresses {
            if self.address_in_use(claimed).await? {
                return Err(DirectoryError::Conflict(format!(
                    "{claimed} is already in use"
                )));
            }
        }
        let forward = address_list("forward", &new.forward, MAX_LIST)?;
        check_quota(domain, new.quota_bytes)?;
        self.check_mailbox_limits(domain).await?;

        // The uid is random and immutable; the store path hangs off it (docs/directory.md).
        let uid = new_uid()?;
        let digest = Sha256::digest(uid.as_bytes());
        let store = format!("{:02x}/{:02x}/{uid}", digest[0], digest[1]);
        let dn = format!("{},ou=mailboxes,{}", rdn("uid", &uid), domain.dn);
        let name = match new.name.filter(|n| !n.is_empty()) {
            Some(name) => check_text("name", &name)?,
            None => address.local_part().to_string(),
        };

        let mut entry = Entry::new(dn.clone());
        for class in ["inetOrgPerson", "mailfoldMailbox"] {
            entry.push("objectClass", class);
        }
        entry.push("uid", uid.as_str());
        entry.push("cn", name.as_str());
        entry.push("sn", name.as_str());
        entry.push("mail", address.as_str());
        entry.set(
            "mailfoldAddress",
            addresses.iter().map(|a| a.to_string()).collect(),
        );
        entry.push("mailfoldMailShard", shard);
        entry.push("mailfoldMailStore", store);
        entry.push(
            "mailfoldStatus",
            new.status.unwrap_or(Status::Active).as_str(),
        );
        for (attribute, value) in [
            ("mailfoldQuotaBytes", new.quota_bytes),
            ("mailfoldQuotaMessages", new.quota_messages),
            ("mailfoldMaxMessageSize", new.max_message_size),
        ] {
            if let Some(value) = value {
                entry.push(attribute, value.to_string());
            }
        }
        if let Some(services) = &new.services {
            entry.set("mailfoldEnabledService", service_values(services));
        }
        entry.set("mailfoldForwardAddress", forward);
        if let Some(password) = &new.password {
            entry.push("userPassword", hash(password).await?);
        }

        // The domain may predate the API and lack ou=mailboxes.
        self.add_with_container(entry, &domain.dn, "mailboxes")
            .await?;
        self.changed();
        self.mailbox_in(domain, address.as_str()).await
    }

    /// Changes a mailbox.
    pub async fn update_mailbox(
        &self,
        domain: &LocalDomain,
        address: &str,
        update: MailboxUpdate,
    ) -> Result<Mailbox> {
        let mailbox = self.mailbox_in(domain, address).await?;
        let mut changes = Vec::new();
        if let Some(password) = &update.password {
            changes.push(replace("userPassword", vec![hash(password).await?]));
        }
        if let Some(name) = &update.name {
            let name = check_text("name", name)?;
            changes.push(replace("cn", vec![name]));
        }
        if let Some(quota) = update.quota_bytes {
            check_quota(domain, quota)?;
            changes.push(replace_number("mailfoldQuotaBytes", quota));
        }
        if let Some(value) = update.quota_messages {
            changes.push(replace_number("mailfoldQuotaMessages", value));
        }
        if let Some(value) = update.max_message_size {
            changes.push(replace_number("mailfoldMaxMessageSize", value));
        }
        if let Some(status) = update.status {
            changes.push(replace("mailfoldStatus", vec![status.as_str().into()]));
        }
        if let Some(services) = &update.services {
            let values = services.as_deref().map(service_values).unwrap_or_default();
            changes.push(replace("mailfoldEnabledService", values));
        }
        if let Some(forward) = &update.forward {
            let forward = address_list("forward", forward, MAX_LIST)?;
            changes.push(replace("mailfoldForwardAddress", forward));
        }
        self.modify(&mailbox.dn, changes).await?;
        self.mailbox_in(domain, address).await
    }

    /// Marks a mailbox `deleting`: refused by every front-end from now on, its Maildir left
    /// on the shard for the operator to purge.
    pub async fn delete_mailbox(&self, domain: &LocalDomain, address: &str) -> Result<Mailbox> {
        let update = MailboxUpdate {
            status: Some(Status::Deleting),
            ..MailboxUpdate::default()
        };
        self.update_mailbox(domain, address, update).await
    }

    /// The administrator `login` of `tenant`.
    pub async fn admin(&self, tenant: &Tenant, login: &str) -> Result<Admin> {
        let login = check_id("login", login).map_err(|_| DirectoryError::NotFound)?;
        let entry = self
            .timed(
                "read",
                self.backend.read(&self.admin_dn(&tenant.id, &login)),
            )
            .await?
            .filter(|e| e.has_class("mailfoldAdmin"))
            .ok_or(DirectoryError::NotFound)?;
        Admin::from_entry(&entry, tenant)
    }

    /// Creates an administrator of `tenant`.
    pub async fn create_admin(&self, tenant: &str, new: NewAdmin) -> Result<Admin> {
        let tenant = self.tenant(tenant).await?;
        let login = check_id("login", &new.login)?;
        check_role(&new.role)?;
        let managed = self.managed_domains(&tenant, &new.managed_domains).await?;
        if new.password.is_empty() {
            return Err(invalid("password", "must not be empty"));
        }

        let mut entry = Entry::new(self.admin_dn(&tenant.id, &login));
        for class in ["account", "simpleSecurityObject", "mailfoldAdmin"] {
            entry.push("objectClass", class);
        }
        entry.push("uid", login.as_str());
        if let Some(name) = new.name.filter(|n| !n.is_empty()) {
            entry.push("cn", check_text("name", &name)?);
        }
        if let Some(mail) = new.mail.filter(|m| !m.is_empty()) {
            let mail = Address::parse(&mail).map_err(|e| invalid("mail", e))?;
            entry.push("mail", mail.as_str());
        }
        entry.push("mailfoldStatus", "active");
        entry.push("mailfoldAdminRole", new.role.as_str());
        entry.set("mailfoldManagedDomain", managed);
        entry.push("userPassword", hash(&new.password).await?);

        self.add_with_container(entry, &tenant.dn, "admins").await?;
        self.admin(&tenant, &login).await
    }

    /// Changes an administrator of `tenant`.
    pub async fn update_admin(
        &self,
        tenant: &str,
        login: &str,
        update: AdminUpdate,
    ) -> Result<Admin> {
        let tenant = self.tenant(tenant).await?;
        let admin = self.admin(&tenant, login).await?;
        let mut changes = Vec::new();
        if let Some(password) = &update.password {
            if password.is_empty() {
                return Err(invalid("password", "must not be empty"));
            }
            changes.push(replace("userPassword", vec![hash(password).await?]));
        }
        if let Some(mail) = update.mail {
            let mail = mail.filter(|m| !m.is_empty());
            let mail = mail
                .map(|m| Address::parse(&m).map_err(|e| invalid("mail", e)))
                .transpose()?;
            changes.push(replace(
                "mail",
                mail.map(|m| m.to_string()).into_iter().collect(),
            ));
        }
        if let Some(name) = &update.name {
            changes.push(replace("cn", vec![check_text("name", name)?]));
        }
        if let Some(role) = &update.role {
            check_role(role)?;
            changes.push(replace("mailfoldAdminRole", vec![role.clone()]));
        }
        if let Some(domains) = &update.managed_domains {
            let managed = self.managed_domains(&tenant, domains).await?;
            changes.push(replace("mailfoldManagedDomain", managed));
        }
        if let Some(status) = update.status {
            changes.push(replace("mailfoldStatus", vec![status.as_str().into()]));
        }
        self.modify(&admin.dn, changes).await?;
        self.admin(&tenant, login).await
    }

    /// Removes an administrator of `tenant`.
    pub async fn delete_admin(&self, tenant: &str, login: &str) -> Result<()> {
        let tenant = self.tenant(tenant).await?;
        let admin = self.admin(&tenant, login).await?;
        self.delete(&admin.dn).await
    }

    /// Every name in `names` must be a domain of `tenant`.
    async fn managed_domains(&self, tenant: &Tenant, names: &[String]) -> Result<Vec<String>> {
        let names = domain_list("managed_domains", names)?;
        let owned = self.domains_of(tenant).await?;
        for name in &names {
            if !owned.iter().any(|d| &d.name == name) {
                return Err(invalid(
                    "managed_domains",
                    format!("{name} is not a domain of tenant {}", tenant.id),
                ));
            }
        }
        Ok(names.iter().map(|d| d.to_string()).collect())
    }

    /// Refuses a domain name some other domain entry has (as name or alias name).
    async fn domain_name_free(&self, name: &Domain, own: Option<&str>) -> Result<()> {
        let filter = Filter::And(vec![
            Filter::class("mailfoldDomain"),
            Filter::equal("mailfoldDomainName", name.as_str()),
        ]);
        let found = self.search_tenants(&filter).await?;
        let own = own.and_then(|dn| crate::dn::Dn::parse(dn).ok());
        let others = found
            .iter()
            .filter(|e| crate::dn::Dn::parse(&e.dn).ok() != own)
            .count();
        if others > 0 {
            return Err(DirectoryError::Conflict(format!(
                "{name} is already hosted"
            )));
        }
        Ok(())
    }

    async fn check_mailbox_limits(&self, domain: &LocalDomain) -> Result<()> {
        let own = strictest(&[domain.limits.max_mailboxes]);
        if own > 0 && self.count_below(&domain.dn, "mailfoldMailbox").await? >= own {
            return Err(DirectoryError::LimitReached(format!(
                "{} may have at most {own} mailboxes",
                domain.name
            )));
        }
        let tenant = strictest(&[domain.tenant.limits.max_mailboxes]);
        if tenant > 0
            && self
                .count_below(&domain.tenant.dn, "mailfoldMailbox")
                .await?
                >= tenant
        {
            return Err(DirectoryError::LimitReached(format!(
                "tenant {} may have at most {tenant} mailboxes",
                domain.tenant.id
            )));
        }
        Ok(())
    }

    /// Adds `entry` below `ou=<unit>,<parent>`, creating that container if it is missing.
    async fn add_with_container(&self, entry: Entry, parent: &str, unit: &str) -> Result<()> {
        match self.add(entry.clone()).await {
            Err(DirectoryError::NotFound) => {
                match self.add(container(parent, unit)).await {
                    Ok(()) | Err(DirectoryError::Conflict(_)) => {}
                    Err(error) => return Err(error),
                }
                self.add(entry).await
            }
            other => other,
        }
    }

    async fn add(&self, entry: Entry) -> Result<()> {
        self.timed("add", self.backend.add(Actor::Service, entry))
            .await
    }

    async fn modify(&self, dn: &str, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.timed("modify", self.backend.modify(Actor::Service, dn, changes))
            .await?;
        self.changed();
        Ok(())
    }

    async fn delete(&self, dn: &str) -> Result<()> {
        self.timed("delete", self.backend.delete(Actor::Service, dn))
            .await?;
        self.changed();
        Ok(())
    }

    async fn delete_if_present(&self, dn: &str) -> Result<()> {
        match self.delete(dn).await {
            Ok(()) | Err(DirectoryError::NotFound) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// `ou=<unit>,<parent>`.
fn container(parent: &str, unit: &str) -> Entry {
    let mut entry = Entry::new(format!("ou={unit},{parent}"));
    entry.push("objectClass", "organizationalUnit");
    entry.push("ou", unit);
    entry
}

/// An id: 1 to 64 of lowercase letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit. Ids end up in DNs and paths; keeping them plain keeps both readable.
pub fn check_id(field: &str, id: &str) -> Result<String> {
    let id = id.trim().to_ascii_lowercase();
    let plain = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let starts_well = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if id.is_empty() || id.len() > MAX_ID_LENGTH || !plain || !starts_well {
        return Err(invalid(
            field,
            "1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
        ));
    }
    Ok(id)
}

/// Free text: at most 256 characters, no control characters.
pub(crate) fn check_text(field: &str, text: &str) -> Result<String> {
    if text.chars().count() > 256 || text.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "at most 256 characters, no control characters",
        ));
    }
    Ok(text.trim().to_string())
}

fn check_role(role: &str) -> Result<()> {
    if ADMIN_ROLES.contains(&role) {
        Ok(())
    } else {
        Err(invalid("role", "owner or domain-admin"))
    }
}

fn check_quota(domain: &LocalDomain, quota: Option<u64>) -> Result<()> {
    let max = strictest(&[
        domain.limits.max_quota_bytes,
        domain.tenant.limits.max_quota_bytes,
    ]);
    match quota {
        // 0 is "unlimited", which a capped domain cannot grant.
        Some(quota) if max > 0 && (quota == 0 || quota > max) => Err(DirectoryError::LimitReached(
            format!("quota_bytes may be at most {max} in {}", domain.name),
        )),
        _ => Ok(()),
    }
}

fn domain_list(field: &str, names: &[String]) -> Result<Vec<Domain>> {
    if names.len() > MAX_LIST {
        return Err(invalid(field, format!("at most {MAX_LIST} names")));
    }
    let mut domains: Vec<Domain> = Vec::new();
    for name in names {
        let domain = Domain::parse(name).map_err(|e| invalid(field, e))?;
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    Ok(domains)
}

/// Every address of a list field validated and normalised, duplicates dropped; more than `max`
/// is invalid.
pub(crate) fn address_list(field: &str, addresses: &[String], max: usize) -> Result<Vec<String>> {
    if addresses.len() > max {
        return Err(invalid(field, format!("at most {max} addresses")));
    }
    let mut valid: Vec<String> = Vec::with_capacity(addresses.len());
    for text in addresses {
        let address =
            Address::parse(text.trim()).map_err(|e| invalid(field, format!("{text:?}: {e}")))?;
        if !valid.iter().any(|v| v == address.as_str()) {
            valid.push(address.to_string());
        }
    }
    Ok(valid)
}

fn service_values(services: &[Service]) -> Vec<String> {
    let mut values: Vec<String> = services.iter().map(|s| s.as_str().to_string()).collect();
    values.sort();
    values.dedup();
    values
}

fn replace(attribute: &str, values: Vec<String>) -> Change {
    Change::Replace(attribute.into(), values)
}

fn replace_number(attribute: &str, value: Option<u64>) -> Change {
    replace(
        attribute,
        value.map(|v| v.to_string()).into_iter().collect(),
    )
}

/// Settings of a new tenant or domain as attributes.
fn apply_settings_to_new(entry: &mut Entry, settings: &Settings) -> Result<()> {
    for change in settings_changes(settings)? {
        if let Change::Replace(name, values) = change {
            entry.set(&name, values);
        }
    }
    Ok(())
}

/// Settings as replacements of their attributes.
fn settings_changes(settings: &Settings) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if let Some(description) = &settings.description {
        let text = description
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(|d| check_text("description", d))
            .transpose()?;
        changes.push(replace("description", text.into_iter().collect()));
    }
    if let Some(status) = settings.status {
        changes.push(replace("mailfoldStatus", vec![status.as_str().into()]));
    }
    if let Some(services) = &settings.services {
        let values = services.as_deref().map(service_values).unwrap_or_default();
        changes.push(replace("mailfoldEnabledService", values));
    }
    if let Some(shard) = &settings.shard {
        let shard = shard.as_deref().map(|s| check_id("shard", s)).transpose()?;
        changes.push(replace("mailfoldMailShard", shard.into_iter().collect()));
    }
    let limits = &settings.limits;
    for (attribute, value) in [
        ("mailfoldMaxDomains", limits.max_domains),
        ("mailfoldMaxMailboxes", limits.max_mailboxes),
        ("mailfoldMaxAliases", limits.max_aliases),
        ("mailfoldMaxQuotaBytes", limits.max_quota_bytes),
        ("mailfoldDefaultQuotaBytes", limits.default_quota_bytes),
        ("mailfoldMaxMessageSize", limits.max_message_size),
    ] {
        if let Some(value) = value {
            changes.push(replace_number(attribute, value));
        }
    }
    Ok(changes)
}

/// A fresh mailbox uid: `m` and 24 random hex digits.
fn new_uid() -> Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| DirectoryError::Unavailable(format!("drawing a uid: {e}")))?;
    Ok(std::iter::once("m".to_string())
        .chain(bytes.iter().map(|b| format!("{b:02x}")))
        .collect())
}

/// `{ARGON2}` of a password, on a blocking thread (it takes tens of milliseconds).
async fn hash(password: &str) -> Result<String> {
    if password.is_empty() || password.len() > 1024 {
        return Err(invalid("password", "1 to 1024 bytes"));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || crate::password::hash_argon2(&password))
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("hashing a password: {e}")))
}

/// An invalid-input error naming its field: `field: reason`.
fn invalid(field: &str, reason: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Invalid(format!("{field}: {reason}"))
}

/// The limits in force in a domain: the stricter of its own and its tenant's (`Some(0)` is
/// unlimited), for callers that show usage against them.
pub fn effective_limits(domain: &LocalDomain) -> Limits {
    let both = |own: Option<u64>, tenant: Option<u64>| Some(strictest(&[own, tenant]));
    Limits {
        max_domains: domain.tenant.limits.max_domains,
        max_mailboxes: Some(domain.max_mailboxes()),
        max_aliases: Some(domain.max_aliases()),
        max_quota_bytes: both(
            domain.limits.max_quota_bytes,
            domain.tenant.limits.max_quota_bytes,
        ),
        default_quota_bytes: domain
            .limits
            .default_quota_bytes
            .or(domain.tenant.limits.default_quota_bytes),
        max_message_size: both(
            domain.limits.max_message_size,
            domain.tenant.limits.max_message_size,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_lowercase_words() {
        assert_eq!(check_id("id", " Acme-2 ").unwrap(), "acme-2");
        for bad in [
            "",
            "-x",
            "a,b",
            "a=b",
            "a b",
            "ü",
            &"x".repeat(65),
            "a*",
            "a\0",
        ] {
            assert!(check_id("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        let error = address_list("forward", &["not an address".into()], MAX_LIST).unwrap_err();
        assert!(error.to_string().contains("forward:"), "{error}");
    }

    #[test]
    fn uids_are_fresh_and_path_safe() {
        let (a, b) = (new_uid().unwrap(), new_uid().unwrap());
        assert_ne!(a, b);
        assert!(a.len() == 25 && a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
