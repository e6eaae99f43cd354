//! The JSON form of the directory's objects, as the API returns them.
//!
//! Shapes are documented in the OpenAPI document (`openapi.json`); DNs, store paths and
//! password hashes never appear in them. Lists of values are sorted (a mailbox's primary
//! address first): an LDAP server keeps no order among an attribute's values, and the same
//! object must read the same on every backend.

use mailfold_directory::model::Limits;
use mailfold_directory::provision::DomainUsage;
use mailfold_directory::{Admin, AdminScope, Alias, LocalDomain, Mailbox, Services, Tenant};
use mailfold_store::Usage;
use serde_json::{Value, json};

// TODO: a tenant's or domain's description and a mailbox's cn are written but not shown: the
// directory model does not read them yet; show them once Tenant, LocalDomain and Mailbox do.

/// A tenant, for the operator.
pub fn tenant(tenant: &Tenant) -> Value {
    json!({
        "id": tenant.id,
        "name": tenant.name,
        "status": tenant.status.as_str(),
        "services": tenant.services.map(services),
        "limits": limits(&tenant.limits),
        "shard": tenant.shard,
    })
}

/// A domain with its usage against the limits in force.
pub fn domain(domain: &LocalDomain, usage: DomainUsage, in_force: &Limits) -> Value {
    json!({
        "name": domain.name.as_str(),
        "tenant": domain.tenant.id,
        "alias_names": sorted(domain.alias_names.iter().map(|d| d.to_string())),
        "catch_all": sorted(domain.catch_all.iter().cloned()),
        "status": domain.status.as_str(),
        "effective_status": domain.effective_status().as_str(),
        "services": domain.services.map(services),
        "limits": limits(&domain.limits),
        "shard": domain.shard,
        "usage": {
            "mailboxes": usage.mailboxes,
            "max_mailboxes": in_force.max_mailboxes.unwrap_or(0),
            "aliases": usage.aliases,
            "max_aliases": in_force.max_aliases.unwrap_or(0),
        },
    })
}

/// An alias.
pub fn alias(alias: &Alias) -> Value {
    json!({
        "address": alias.address.as_str(),
        "targets": sorted(alias.targets.iter().cloned()),
        "description": alias.description,
        "status": alias.status.as_str(),
    })
}

/// A mailbox as a tenant sees it; `usage` is `None` when its Maildir could not be read.
pub fn mailbox(mailbox: &Mailbox, usage: Option<Usage>) -> Value {
    json!({
        "address": mailbox.address.as_str(),
        "addresses": addresses(mailbox),
        "status": mailbox.status.as_str(),
        "services": services(mailbox.services),
        "quota_bytes": mailbox.quota_bytes,
        "quota_messages": mailbox.quota_messages,
        "max_message_size": mailbox.max_message_size,
        "forward": sorted(mailbox.forward.iter().cloned()),
        "usage": usage.map(|u| json!({"bytes": u.bytes, "messages": u.messages})),
    })
}

/// A mailbox as the operator sees it: also where it is stored.
pub fn mailbox_for_operator(mailbox: &Mailbox, usage: Option<Usage>) -> Value {
    let mut value = self::mailbox(mailbox, usage);
    value["id"] = json!(mailbox.id);
    value["shard"] = json!(mailbox.shard);
    value
}

/// A tenant administrator.
pub fn admin(admin: &Admin) -> Value {
    let managed = match &admin.scope {
        AdminScope::AllDomains => Value::Null,
        AdminScope::Domains(domains) => json!(sorted(domains.iter().map(|d| d.to_string()))),
    };
    json!({
        "login": admin.login,
        "tenant": admin.tenant,
        "mail": admin.mail,
        "role": admin.role,
        "managed_domains": managed,
    })
}

fn sorted(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut values: Vec<String> = values.collect();
    values.sort();
    values
}

/// The primary address, then the others in order.
fn addresses(mailbox: &Mailbox) -> Vec<String> {
    let primary = mailbox.address.to_string();
    let others = mailbox.addresses.iter().filter(|a| **a != primary).cloned();
    std::iter::once(primary.clone())
        .chain(sorted(others))
        .collect()
}

fn services(services: Services) -> Vec<&'static str> {
    services.iter().map(|s| s.as_str()).collect()
}

fn limits(limits: &Limits) -> Value {
    json!({
        "max_domains": limits.max_domains,
        "max_mailboxes": limits.max_mailboxes,
        "max_aliases": limits.max_aliases,
        "max_quota_bytes": limits.max_quota_bytes,
        "default_quota_bytes": limits.default_quota_bytes,
        "max_message_size": limits.max_message_size,
    })
}
