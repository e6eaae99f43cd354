//! Managing a domain's aliases, and counting what limits count.
//!
//! An alias lives at `mail=<address>,ou=aliases,<domain entry>`. Creating or changing one
//! checks, in order: the address and every target are valid addresses, the address is in the
//! domain, no entry anywhere already has the address (the directory's slapo-unique constraint is
//! the backstop for a race between two writers), the domain's and tenant's `mailfoldMaxAliases`
//! allow one more, and the targets do not lead back to the alias.
//!
//! Reads and checks run as the service account (a collision must be found in every tenant,
//! which no tenant administrator may read). The write itself is made as the given [`Actor`]:
//! the JSON API passes the tenant administrator, so the directory's access rules confine the
//! change to that administrator's tenant whatever Mailfold itself decided. The `ou=aliases`
//! container a domain may lack is created as the service account: it is structure, not data.

use crate::Directory;
use crate::address::Address;
use crate::backend::{Actor, Change, Scope};
use crate::dn::rdn;
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};
use crate::filter::Filter;
use crate::model::{Alias, LocalDomain, Skip, Status, strictest};
use crate::provision::{address_list, check_text};
use crate::resolve::Found;

/// Most targets one alias may have: beyond this it is a mailing list, not an alias.
pub const MAX_TARGETS: usize = 1000;

/// A new alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlias {
    /// Its address, in the domain it is created in.
    pub address: String,
    /// Where mail goes: local or external addresses.
    pub targets: Vec<String>,
    /// Free text for the tenant's own use.
    pub description: Option<String>,
}

/// A change to an alias; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasUpdate {
    /// New targets.
    pub targets: Option<Vec<String>>,
    /// New description; `Some(None)` removes it.
    pub description: Option<Option<String>>,
    /// New status.
    pub status: Option<Status>,
}

impl Directory {
    /// The aliases of a local domain, sorted by address.
    pub async fn aliases(&self, domain: &str) -> Result<Vec<Alias>> {
        let domain = self.primary_domain(domain).await?;
        let mut aliases = self
            .entries_below(&format!("ou=aliases,{}", domain.dn), "mailfoldAlias")
            .await?
            .iter()
            .map(Alias::from_entry)
            .collect::<Result<Vec<_>>>()?;
        aliases.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(aliases)
    }

    /// The alias with this address.
    pub async fn alias(&self, address: &str) -> Result<Alias> {
        let address = Address::parse(address)?;
        let domain = self.primary_domain(address.domain()).await?;
        match self.find_address(&address, &domain).await? {
            Some(Found::Alias(alias, _)) => Ok(alias),
            _ => Err(DirectoryError::NotFound),
        }
    }

    /// How many mailboxes a local domain has.
    pub async fn count_mailboxes(&self, domain: &str) -> Result<u64> {
        let domain = self.primary_domain(domain).await?;
        self.count_below(&domain.dn, "mailfoldMailbox").await
    }

    /// How many aliases a local domain has.
    pub async fn count_aliases(&self, domain: &str) -> Result<u64> {
        let domain = self.primary_domain(domain).await?;
        self.count_below(&domain.dn, "mailfoldAlias").await
    }

    /// Creates an alias in `domain`, written with the authority of `actor`.
    pub async fn create_alias(
        &self,
        actor: Actor<'_>,
        domain: &str,
        new: NewAlias,
    ) -> Result<Alias> {
        let domain = self.primary_domain(domain).await?;
        let address = Address::parse(&new.address)
            .map_err(|e| DirectoryError::Invalid(format!("address: {e}")))?;
        if address.domain() != domain.name.as_str() {
            return Err(DirectoryError::Invalid(format!(
                "address: {address} is not in {}",
                domain.name
            )));
        }
        let targets = valid_targets(&new.targets)?;

        if self.address_in_use(&address).await? {
            return Err(DirectoryError::Conflict(format!(
                "{address} is already in use"
            )));
        }
        self.check_alias_limits(&domain).await?;
        self.check_no_loop(&address, &targets).await?;

        let mut entry = Entry::new(format!(
            "{},ou=aliases,{}",
            rdn("mail", address.as_str()),
            domain.dn
        ));
        entry.push("objectClass", "mailfoldAlias");
        entry.push("mail", address.as_str());
        entry.push("mailfoldAddress", address.as_str());
        entry.set("mailfoldAliasTarget", targets);
        if let Some(description) = new.description.filter(|d| !d.is_empty()) {
            entry.push("description", check_text("description", &description)?);
        }

        let added = self
            .timed("add", self.backend.add(actor, entry.clone()))
            .await;
        if added == Err(DirectoryError::NotFound) {
            // The domain has no ou=aliases yet: make it, then add again.
            let mut container = Entry::new(format!("ou=aliases,{}", domain.dn));
            container.push("objectClass", "organizationalUnit");
            container.push("ou", "aliases");
            let create = self.backend.add(Actor::Service, container);
            match self.timed("add", create).await {
                Ok(()) | Err(DirectoryError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
            self.timed("add", self.backend.add(actor, entry.clone()))
                .await?;
        } else {
            added?;
        }
        self.changed();
        Alias::from_entry(&entry)
    }

    /// Changes an alias, with the authority of `actor`.
    pub async fn update_alias(
        &self,
        actor: Actor<'_>,
        address: &str,
        update: AliasUpdate,
    ) -> Result<Alias> {
        let current = self.alias(address).await?;
        let mut changes = Vec::new();
        if let Some(targets) = &update.targets {
            let targets = valid_targets(targets)?;
            self.check_no_loop(&current.address, &targets).await?;
            changes.push(Change::Replace("mailfoldAliasTarget".into(), targets));
        }
        if let Some(description) = update.description {
            let text = description.filter(|d| !d.is_empty());
            let values = text.map(|d| check_text("description", &d)).transpose()?;
            changes.push(Change::Replace(
                "description".into(),
                values.into_iter().collect(),
            ));
        }
        if let Some(status) = update.status {
            changes.push(Change::Replace(
                "mailfoldStatus".into(),
                vec![status.as_str().into()],
            ));
        }
        if !changes.is_empty() {
            self.timed("modify", self.backend.modify(actor, &current.dn, changes))
                .await?;
            self.changed();
        }
        self.alias(address).await
    }

    /// Deletes an alias, with the authority of `actor`.
    pub async fn delete_alias(&self, actor: Actor<'_>, address: &str) -> Result<()> {
        let current = self.alias(address).await?;
        self.timed("delete", self.backend.delete(actor, &current.dn))
            .await?;
        self.changed();
        Ok(())
    }

    /// The local domain by its primary name, read fresh: limits and ownership are checked
    /// against the directory as it is, not as cached. Alias names and foreign domains are not
    /// found.
    async fn primary_domain(&self, name: &str) -> Result<std::sync::Arc<LocalDomain>> {
        self.local_domain(name).await
    }

    async fn entries_below(&self, base: &str, class: &'static str) -> Result<Vec<Entry>> {
        self.timed(
            "search",
            self.backend
                .search(base, Scope::Subtree, &Filter::class(class)),
        )
        .await
    }

    /// How many entries of `class` are at or below `base`.
    pub(crate) async fn count_below(&self, base: &str, class: &'static str) -> Result<u64> {
        Ok(self.entries_below(base, class).await?.len() as u64)
    }

    /// Whether any entry claims `address`: a mailbox, an alias, or a mailbox being deleted
    /// and not yet purged.
    pub(crate) async fn address_in_use(&self, address: &Address) -> Result<bool> {
        let filter = Filter::equal("mailfoldAddress", address.as_str());
        let found = self
            .timed(
                "search",
                self.backend.search(&self.base_dn, Scope::Subtree, &filter),
            )
            .await?;
        Ok(!found.is_empty())
    }

    /// `mailfoldMaxAliases` of the domain counts its aliases; the tenant's counts all of the
    /// tenant's.
    async fn check_alias_limits(&self, domain: &LocalDomain) -> Result<()> {
        let domain_limit = strictest(&[domain.limits.max_aliases]);
        if domain_limit > 0 && self.count_below(&domain.dn, "mailfoldAlias").await? >= domain_limit
        {
            return Err(DirectoryError::LimitReached(format!(
                "{} may have at most {domain_limit} aliases",
                domain.name
            )));
        }
        let tenant_limit = strictest(&[domain.tenant.limits.max_aliases]);
        if tenant_limit > 0
            && self.count_below(&domain.tenant.dn, "mailfoldAlias").await? >= tenant_limit
        {
            return Err(DirectoryError::LimitReached(format!(
                "tenant {} may have at most {tenant_limit} aliases",
                domain.tenant.id
            )));
        }
        Ok(())
    }

    /// Refuses targets whose expansion leads back to `address`.
    async fn check_no_loop(&self, address: &Address, targets: &[String]) -> Result<()> {
        let expansion = self.expand(targets, address.clone()).await?;
        let loops_back = expansion.skipped.iter().any(|(target, skip)| {
            *skip == Skip::Loop && Address::parse(target).as_ref() == Ok(address)
        });
        if loops_back {
            return Err(DirectoryError::Loop(format!(
                "targets: they lead back to {address}"
            )));
        }
        Ok(())
    }
}

/// Every target validated and normalised, duplicates dropped; none at all is invalid.
fn valid_targets(targets: &[String]) -> Result<Vec<String>> {
    if targets.is_empty() {
        return Err(DirectoryError::Invalid(format!(
            "targets: an alias needs 1 to {MAX_TARGETS} targets"
        )));
    }
    address_list("targets", targets, MAX_TARGETS)
}
