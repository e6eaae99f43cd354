//! Routing: which domain a name is, and where mail for an address goes.
//!
//! The order of the questions, for `local@domain`:
//!
//! 1. Is the domain ours? A primary name, or an alias name (`mailfoldDomainAliasName`) that
//!    stands for `local@primary`. If not ours: [`Resolution::NotLocal`].
//! 2. Is the tenant and domain active? If not: [`Resolution::Inactive`].
//! 3. Which entry has the address in `mailfoldAddress`, tried as given and then in the primary
//!    domain: a mailbox, or an alias to expand.
//! 4. If none and the local part has the sub-address delimiter (`bob+tag`), step 3 again for
//!    the part before it.
//! 5. If still none, the domain's catch-all, else [`Resolution::Unknown`].
//!
//! Alias expansion walks the targets depth first, each final mailbox and external address
//! once. A target already on the path from the alias is a loop and is skipped; so is one past
//! the depth limit, an inactive one, or an unknown local one. Catch-alls are not applied to
//! alias targets: an alias pointing at a missing address is a mistake to show, not to hide.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::Directory;
use crate::address::{Address, Domain};
use crate::backend::Scope;
use crate::dn::Dn;
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};
use crate::filter::Filter;
use crate::model::{
    Alias, DomainResolution, Expansion, LocalDomain, Mailbox, Resolution, Service, Skip, Status,
    Tenant,
};

/// An entry found by address, with the domain whose subtree holds it.
pub(crate) enum Found {
    Mailbox(Mailbox),
    Alias(Alias, Arc<LocalDomain>),
}

impl Directory {
    /// How the platform hosts `name`.
    pub async fn resolve_domain(&self, name: &str) -> Result<DomainResolution> {
        let domain = Domain::parse(name)?;
        if let Some(cached) = self.domains.get(&domain) {
            self.metrics.cache("domain", true);
            return Ok(cached);
        }
        self.metrics.cache("domain", false);

        let filter = Filter::And(vec![
            Filter::class("mailfoldDomain"),
            Filter::equal("mailfoldDomainName", domain.as_str()),
        ]);
        let mut found = self.search_tenants(&filter).await?;
        let resolution = match found.len() {
            0 => DomainResolution::NotLocal,
            1 => {
                let local = Arc::new(self.load_domain(found.remove(0)).await?);
                if local.name == domain {
                    DomainResolution::Local(local)
                } else {
                    DomainResolution::Alias {
                        alias: domain.clone(),
                        domain: local,
                    }
                }
            }
            n => {
                return Err(DirectoryError::Inconsistent(format!(
                    "{n} domain entries are named {domain}"
                )));
            }
        };
        let negative = resolution == DomainResolution::NotLocal;
        self.domains.put(domain, resolution.clone(), negative);
        Ok(resolution)
    }

    /// Where mail for `address` goes. Errors are only for invalid input and for a directory
    /// that cannot answer; every routing outcome is a [`Resolution`].
    pub async fn resolve_recipient(&self, address: &str) -> Result<Resolution> {
        let address = Address::parse(address)?;
        if let Some(cached) = self.recipients.get(&address) {
            self.metrics.cache("recipient", true);
            return Ok(cached);
        }
        self.metrics.cache("recipient", false);

        let resolution = self.route(&address).await?;
        let negative = matches!(resolution, Resolution::Unknown | Resolution::NotLocal);
        self.recipients.put(address, resolution.clone(), negative);
        Ok(resolution)
    }

    async fn route(&self, address: &Address) -> Result<Resolution> {
        let resolution = self.resolve_domain(address.domain()).await?;
        let Some(domain) = resolution.local() else {
            return Ok(Resolution::NotLocal);
        };
        let status = domain.effective_status();
        if status != Status::Active {
            return Ok(Resolution::Inactive { status });
        }

        let mut found = self.find_in(address, domain).await?;
        if found.is_none()
            && let Some(base) = self.without_subaddress(address)
        {
            found = self.find_in(&base, domain).await?;
        }
        match found {
            Some(Found::Mailbox(mailbox)) => Ok(Resolution::Mailbox(mailbox)),
            Some(Found::Alias(alias, container)) => {
                let status = alias_status(&alias, &container);
                if status != Status::Active {
                    return Ok(Resolution::Inactive { status });
                }
                let expansion = self.expand(&alias.targets, alias.address.clone()).await?;
                Ok(Resolution::Alias { alias, expansion })
            }
            None if !domain.catch_all.is_empty() => {
                let expansion = self.expand(&domain.catch_all, address.clone()).await?;
                Ok(Resolution::CatchAll { expansion })
            }
            None => Ok(Resolution::Unknown),
        }
    }

    /// `bob@x` for `bob+tag@x`, when a delimiter is configured and present.
    fn without_subaddress(&self, address: &Address) -> Option<Address> {
        let delimiter = self.recipient_delimiter?;
        let (base, _) = address.local_part().split_once(delimiter)?;
        Address::parse(&format!("{base}@{}", address.domain())).ok()
    }

    /// Entries under `o=tenants` that match `filter`.
    pub(crate) async fn search_tenants(&self, filter: &Filter) -> Result<Vec<Entry>> {
        let search = self
            .backend
            .search(&self.tenants_dn, Scope::Subtree, filter);
        self.timed("search", search).await
    }

    /// The entry for `address` in a domain already resolved: as given, then with the domain's
    /// primary name when the address used an alias name.
    async fn find_in(&self, address: &Address, domain: &Arc<LocalDomain>) -> Result<Option<Found>> {
        if let Some(found) = self.find_address(address, domain).await? {
            return Ok(Some(found));
        }
        if address.domain() != domain.name.as_str() {
            return self
                .find_address(&address.with_domain(&domain.name), domain)
                .await;
        }
        Ok(None)
    }

    /// The mailbox or alias that has `address` in its `mailfoldAddress`. `hint` is the domain
    /// the address is in, reused when the entry lives in that domain's subtree.
    pub(crate) async fn find_address(
        &self,
        address: &Address,
        hint: &Arc<LocalDomain>,
    ) -> Result<Option<Found>> {
        let filter = Filter::And(vec![
            Filter::Or(vec![
                Filter::class("mailfoldMailbox"),
                Filter::class("mailfoldAlias"),
            ]),
            Filter::equal("mailfoldAddress", address.as_str()),
        ]);
        let mut found = self.search_tenants(&filter).await?;
        if found.len() > 1 {
            return Err(DirectoryError::Inconsistent(format!(
                "{} entries have the address {address}",
                found.len()
            )));
        }
        let Some(entry) = found.pop() else {
            return Ok(None);
        };

        let container = self.container_of(&entry, hint).await?;
        if entry.has_class("mailfoldMailbox") {
            Ok(Some(Found::Mailbox(Mailbox::from_entry(
                &entry, &container,
            )?)))
        } else {
            Ok(Some(Found::Alias(Alias::from_entry(&entry)?, container)))
        }
    }

    /// The domain whose subtree holds `entry` (`<rdn>,ou=<kind>,<domain dn>`).
    async fn container_of(
        &self,
        entry: &Entry,
        hint: &Arc<LocalDomain>,
    ) -> Result<Arc<LocalDomain>> {
        let outside = || DirectoryError::Inconsistent(format!("{} is outside a domain", entry.dn));
        let dn = Dn::parse(&entry.dn).map_err(|_| outside())?;
        let domain_dn = dn.parent().and_then(|p| p.parent()).ok_or_else(outside)?;
        if domain_dn.value_of("mailfoldDomainName").is_none() {
            return Err(outside());
        }
        if Dn::parse(&hint.dn).is_ok_and(|h| h == domain_dn) {
            return Ok(hint.clone());
        }
        let domain_entry = self
            .timed("read", self.backend.read(&domain_dn.to_string()))
            .await?
            .ok_or_else(outside)?;
        Ok(Arc::new(self.load_domain(domain_entry).await?))
    }

    /// Reads a domain's tenant (two levels up: `ou=domains,mailfoldTenantId=...`) and builds it.
    pub(crate) async fn load_domain(&self, entry: Entry) -> Result<LocalDomain> {
        let misplaced =
            || DirectoryError::Inconsistent(format!("{} is outside a tenant", entry.dn));
        let dn = Dn::parse(&entry.dn).map_err(|_| misplaced())?;
        let tenant_dn = dn.parent().and_then(|p| p.parent()).ok_or_else(misplaced)?;
        if tenant_dn.value_of("mailfoldTenantId").is_none() {
            return Err(misplaced());
        }
        let tenant = self
            .timed("read", self.backend.read(&tenant_dn.to_string()))
            .await?
            .ok_or_else(misplaced)?;
        LocalDomain::from_entry(&entry, Arc::new(Tenant::from_entry(&tenant)?))
    }

    /// The final recipients of `targets`, reached from `origin`.
    pub(crate) async fn expand(&self, targets: &[String], origin: Address) -> Result<Expansion> {
        let mut expansion = Expansion::default();
        let mut seen: HashSet<Address> = HashSet::new();
        let mut mailbox_ids: HashSet<String> = HashSet::new();
        let mut domains: HashMap<String, DomainResolution> = HashMap::new();
        // Depth first, in target order: the stack holds (target, path from the origin).
        let mut stack: Vec<(String, Vec<Address>)> = targets
            .iter()
            .rev()
            .map(|t| (t.clone(), vec![origin.clone()]))
            .collect();

        while let Some((target, path)) = stack.pop() {
            let Ok(address) = Address::parse(target.trim()) else {
                expansion.skipped.push((target, Skip::Invalid));
                continue;
            };
            if path.contains(&address) {
                expansion.skipped.push((target, Skip::Loop));
                continue;
            }
            if !seen.insert(address.clone()) {
                continue;
            }

            // One lookup per distinct domain in an expansion, cache or no cache.
            let resolution = match domains.get(address.domain()) {
                Some(known) => known.clone(),
                None => {
                    let resolved = self.resolve_domain(address.domain()).await?;
                    domains.insert(address.domain().to_string(), resolved.clone());
                    resolved
                }
            };
            let Some(domain) = resolution.local() else {
                expansion.external.push(address);
                continue;
            };
            if domain.effective_status() != Status::Active {
                expansion.skipped.push((target, Skip::Inactive));
                continue;
            }
            match self.find_in(&address, domain).await? {
                None => expansion.skipped.push((target, Skip::Unknown)),
                Some(Found::Mailbox(mailbox)) if !mailbox.allows(Service::Deliver) => {
                    expansion.skipped.push((target, Skip::Inactive));
                }
                Some(Found::Mailbox(mailbox)) => {
                    if mailbox_ids.insert(mailbox.id.clone()) {
                        expansion.mailboxes.push(mailbox);
                    }
                }
                Some(Found::Alias(alias, container)) => {
                    if alias_status(&alias, &container) != Status::Active {
                        expansion.skipped.push((target, Skip::Inactive));
                    } else if path.len() >= self.max_alias_depth {
                        expansion.skipped.push((target, Skip::TooDeep));
                    } else {
                        let mut deeper = path.clone();
                        deeper.push(address);
                        stack.extend(
                            alias
                                .targets
                                .iter()
                                .rev()
                                .map(|t| (t.clone(), deeper.clone())),
                        );
                    }
                }
            }
        }
        Ok(expansion)
    }
}

/// An alias's status after its tenant's and domain's.
fn alias_status(alias: &Alias, container: &LocalDomain) -> Status {
    match container.effective_status() {
        Status::Active => alias.status,
        inactive => inactive,
    }
}
