//! The LDIF backend: the directory as one LDIF file, held in memory.
//!
//! The file is read once at start. Searches evaluate [`Filter`] trees over the entries, with an
//! index on `mailfoldAddress` and `mailfoldDomainName` (alias names included) for the lookups
//! that every message makes. Changes are written back as a whole new file: written beside the
//! old one, fsync'd, renamed over it, and the folder fsync'd, so a crash leaves either the old
//! file or the new one, never half of either. Only then does memory change.
//!
//! It behaves as OpenLDAP with the Mailfold schema does for the operations Mailfold uses: an
//! entry's parent must exist, DNs are unique, `mailfoldAddress` values are unique across the
//! tree (slapo-unique), and binds verify the `userPassword` hash. It does not check entries
//! against the schema; the directory code builds only valid ones. Cleartext `userPassword`
//! values are refused on purpose, though slapd would compare them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::{Actor, BindOutcome, Change, Scope};
use crate::dn::Dn;
use crate::entry::Entry;
use crate::error::{DirectoryError, Result};
use crate::filter::Filter;
use crate::ldif_format;
use crate::password::{self, Verification};

/// Where the LDIF file is.
#[derive(Debug, Clone)]
pub struct LdifConfig {
    /// The file Mailfold reads and rewrites.
    pub path: PathBuf,
    /// A file copied to `path` when `path` does not exist yet (the quick start's sample data).
    pub seed: Option<PathBuf>,
}

/// The LDIF backend.
pub struct LdifBackend {
    path: PathBuf,
    base: Dn,
    store: RwLock<Store>,
    /// Serialises writers: validate, write the file, apply, one change at a time.
    writer: tokio::sync::Mutex<()>,
}

/// The entries, in file order, with the lookup indexes.
#[derive(Default)]
struct Store {
    entries: HashMap<Dn, (u64, Entry)>,
    next_sequence: u64,
    by_address: HashMap<String, Dn>,
    by_domain: HashMap<String, Dn>,
}

impl LdifBackend {
    /// Loads the file (copying the seed first if the file is missing). `base` is the suffix:
    /// every entry must be at or below it, and only the suffix entry may lack a parent.
    pub fn open(config: &LdifConfig, base: &str) -> Result<LdifBackend> {
        let base = Dn::parse(base).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        if !config.path.exists() {
            let Some(seed) = &config.seed else {
                return Err(file_error(
                    "opening",
                    &config.path,
                    "no such file and no seed",
                ));
            };
            let text = std::fs::read(seed).map_err(|e| file_error("reading seed", seed, e))?;
            write_atomically(&config.path, &text)?;
        }

        let text = std::fs::read_to_string(&config.path)
            .map_err(|e| file_error("reading", &config.path, e))?;
        let entries =
            ldif_format::parse(&text).map_err(|e| file_error("parsing", &config.path, e))?;
        let mut store = Store::default();
        for entry in entries {
            // The operator reads this one: name the entry.
            store
                .check_add(&entry, &base)
                .map_err(|e| file_error("loading", &config.path, format!("{}: {e}", entry.dn)))?;
            store.insert(entry);
        }
        Ok(LdifBackend {
            path: config.path.clone(),
            base,
            store: RwLock::new(store),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn search(&self, base: &str, scope: Scope, filter: &Filter) -> Result<Vec<Entry>> {
        let base = parse_dn(base)?;
        let store = self.store.read().map_err(|_| poisoned())?;
        let in_scope = |dn: &Dn| match scope {
            Scope::Base => *dn == base,
            Scope::Subtree => dn.is_within(&base),
        };
        let mut found: Vec<(&Dn, &(u64, Entry))> = match store.indexed_candidates(filter) {
            Some(candidates) => candidates
                .iter()
                .filter_map(|dn| store.entries.get_key_value(dn))
                .collect(),
            None => store.entries.iter().collect(),
        };
        found.retain(|(dn, (_, entry))| in_scope(dn) && filter.matches(entry));
        // File order, as a server returning entries in insertion order would.
        found.sort_by_key(|(_, (sequence, _))| *sequence);
        Ok(found
            .into_iter()
            .map(|(_, (_, entry))| entry.clone())
            .collect())
    }

    pub(crate) fn read(&self, dn: &str) -> Result<Option<Entry>> {
        let dn = parse_dn(dn)?;
        let store = self.store.read().map_err(|_| poisoned())?;
        Ok(store.entries.get(&dn).map(|(_, entry)| entry.clone()))
    }

    pub(crate) async fn bind(&self, dn: &str, password: &str) -> Result<BindOutcome> {
        let hashes = self
            .read(dn)?
            .map(|e| e.values("userPassword").to_vec())
            .unwrap_or_default();
        let password = password.to_string();
        let dn = dn.to_string();

        // Hash verification costs tens of milliseconds of CPU: keep it off the async workers.
        let accepted = tokio::task::spawn_blocking(move || {
            hashes.iter().any(|stored| match password::verify(&password, stored) {
                Verification::Match => true,
                Verification::Mismatch => false,
                Verification::Unsupported(scheme) => {
                    tracing::warn!(%dn, %scheme, "password scheme not supported by the ldif backend");
                    false
                }
            })
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("verifying password: {e}")))?;
        Ok(if accepted {
            BindOutcome::Accepted
        } else {
            BindOutcome::Refused
        })
    }

    pub(crate) async fn add(&self, actor: Actor<'_>, entry: Entry) -> Result<()> {
        self.authorise(actor, &entry.dn)?;
        let _writer = self.writer.lock().await;
        let text = {
            let store = self.store.read().map_err(|_| poisoned())?;
            store.check_add(&entry, &self.base)?;
            store.render_with(Some(&entry), None)
        };
        self.persist(text).await?;
        self.store.write().map_err(|_| poisoned())?.insert(entry);
        Ok(())
    }

    pub(crate) async fn modify(
        &self,
        actor: Actor<'_>,
        dn: &str,
        changes: Vec<Change>,
    ) -> Result<()> {
        self.authorise(actor, dn)?;
        let _writer = self.writer.lock().await;
        let key = parse_dn(dn)?;
        let (text, changed) = {
            let store = self.store.read().map_err(|_| poisoned())?;
            let (_, current) = store.entries.get(&key).ok_or(DirectoryError::NotFound)?;
            let mut changed = current.clone();
            for change in changes {
                apply(&mut changed, change)?;
            }
            store.check_addresses(&changed, Some(&key))?;
            (
                store.render_with(None, Some((&key, Some(&changed)))),
                changed,
            )
        };
        self.persist(text).await?;
        self.store
            .write()
            .map_err(|_| poisoned())?
            .replace(&key, changed);
        Ok(())
    }

    pub(crate) async fn delete(&self, actor: Actor<'_>, dn: &str) -> Result<()> {
        self.authorise(actor, dn)?;
        let _writer = self.writer.lock().await;
        let key = parse_dn(dn)?;
        let text = {
            let store = self.store.read().map_err(|_| poisoned())?;
            if !store.entries.contains_key(&key) {
                return Err(DirectoryError::NotFound);
            }
            // RFC 4511 §4.8: only leaf entries can be deleted (notAllowedOnNonLeaf).
            if store.entries.keys().any(|other| other.is_child_of(&key)) {
                return Err(DirectoryError::Conflict(
                    "the entry still has entries below it".into(),
                ));
            }
            store.render_with(None, Some((&key, None)))
        };
        self.persist(text).await?;
        self.store.write().map_err(|_| poisoned())?.remove(&key);
        Ok(())
    }

    /// Refuses a write that the recommended ACLs would refuse to `actor`.
    fn authorise(&self, actor: Actor<'_>, target: &str) -> Result<()> {
        match actor {
            Actor::Service => Ok(()),
            Actor::Admin(admin) => {
                let (admin, target) = (parse_dn(admin)?, parse_dn(target)?);
                if admin_may_write(&admin, &target, &self.base) {
                    Ok(())
                } else {
                    Err(DirectoryError::Forbidden(format!(
                        "{admin} may not write {target}"
                    )))
                }
            }
        }
    }

    async fn persist(&self, text: String) -> Result<()> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, text.as_bytes()))
            .await
            .map_err(|e| DirectoryError::Unavailable(format!("writing directory file: {e}")))?
    }
}

impl Store {
    /// Whether `entry` may be added: inside the base, new, parent present, addresses unused.
    fn check_add(&self, entry: &Entry, base: &Dn) -> Result<()> {
        let dn = parse_dn(&entry.dn)?;
        if !dn.is_within(base) {
            return Err(DirectoryError::Invalid(format!(
                "{} is outside the suffix",
                entry.dn
            )));
        }
        if self.entries.contains_key(&dn) {
            // As the LDAP backend says it: the message may reach a client, a DN may not.
            return Err(DirectoryError::Conflict(
                "an entry of that name or one of its addresses exists already".into(),
            ));
        }
        let parent_present = dn.parent().is_some_and(|p| self.entries.contains_key(&p));
        if dn != *base && !parent_present {
            // LDAP's noSuchObject for the parent of an add (RFC 4511 §4.7).
            return Err(DirectoryError::NotFound);
        }
        self.check_addresses(entry, None)
    }

    /// slapo-unique for `mailfoldAddress`: no value may belong to another entry.
    fn check_addresses(&self, entry: &Entry, own: Option<&Dn>) -> Result<()> {
        for address in entry.values("mailfoldAddress") {
            match self.by_address.get(&address.to_lowercase()) {
                Some(holder) if Some(holder) != own => {
                    return Err(DirectoryError::Conflict(format!(
                        "{address} is already in use"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn insert(&mut self, entry: Entry) {
        let Ok(dn) = Dn::parse(&entry.dn) else { return };
        self.index(&dn, &entry);
        self.entries.insert(dn, (self.next_sequence, entry));
        self.next_sequence += 1;
    }

    fn replace(&mut self, dn: &Dn, entry: Entry) {
        if let Some((sequence, old)) = self.entries.remove(dn) {
            self.unindex(&old);
            self.index(dn, &entry);
            self.entries.insert(dn.clone(), (sequence, entry));
        }
    }

    fn remove(&mut self, dn: &Dn) {
        if let Some((_, old)) = self.entries.remove(dn) {
            self.unindex(&old);
        }
    }

    fn index(&mut self, dn: &Dn, entry: &Entry) {
        for address in entry.values("mailfoldAddress") {
            self.by_address.insert(address.to_lowercase(), dn.clone());
        }
        if entry.has_class("mailfoldDomain") {
            let names = entry.values("mailfoldDomainName").iter();
            for name in names.chain(entry.values("mailfoldDomainAliasName")) {
                self.by_domain.insert(name.to_lowercase(), dn.clone());
            }
        }
    }

    fn unindex(&mut self, entry: &Entry) {
        for address in entry.values("mailfoldAddress") {
            self.by_address.remove(&address.to_lowercase());
        }
        let names = entry.values("mailfoldDomainName").iter();
        for name in names.chain(entry.values("mailfoldDomainAliasName")) {
            self.by_domain.remove(&name.to_lowercase());
        }
    }

    /// The entries an indexed equality in `filter` allows, or `None` to scan everything.
    /// The filter is still evaluated on each candidate, so the index only has to be a superset.
    fn indexed_candidates(&self, filter: &Filter) -> Option<Vec<Dn>> {
        let lookup = |filter: &Filter| match filter {
            Filter::Equal(attribute, value)
                if attribute.eq_ignore_ascii_case("mailfoldAddress") =>
            {
                Some(
                    self.by_address
                        .get(&value.to_lowercase())
                        .into_iter()
                        .cloned()
                        .collect(),
                )
            }
            Filter::Equal(attribute, value)
                if attribute.eq_ignore_ascii_case("mailfoldDomainName") =>
            {
                Some(
                    self.by_domain
                        .get(&value.to_lowercase())
                        .into_iter()
                        .cloned()
                        .collect(),
                )
            }
            _ => None,
        };
        match filter {
            Filter::And(parts) => parts.iter().find_map(lookup),
            other => lookup(other),
        }
    }

    /// The file text after one pending change: an added entry, or a replaced (`Some`) or
    /// deleted (`None`) one.
    fn render_with(&self, added: Option<&Entry>, changed: Option<(&Dn, Option<&Entry>)>) -> String {
        let mut ordered: BTreeMap<u64, &Entry> = BTreeMap::new();
        for (dn, (sequence, entry)) in &self.entries {
            match changed {
                Some((target, replacement)) if target == dn => {
                    if let Some(replacement) = replacement {
                        ordered.insert(*sequence, replacement);
                    }
                }
                _ => {
                    ordered.insert(*sequence, entry);
                }
            }
        }
        if let Some(added) = added {
            ordered.insert(self.next_sequence, added);
        }
        // Rendered from references: a write must not copy the whole tree first.
        ldif_format::write(ordered.into_values())
    }
}

/// Replaces `path` with `contents` so that readers see the old file or the new, never a mix.
/// Whether a tenant administrator may write `target`: the rule of the ACLs docs/directory.md
/// recommends, written out for the backend that has no ACLs. The administrator
/// (`uid=<login>,ou=admins,<tenant>`) may write the `ou=aliases` container of any domain of
/// its own tenant and the entries below it, and nothing else.
pub fn admin_may_write(admin: &Dn, target: &Dn, base: &Dn) -> bool {
    let Ok(tenants) = Dn::parse(&format!("o=tenants,{base}")) else {
        return false;
    };

    // The administrator's tenant: two levels up from its entry, directly under o=tenants.
    let admins = admin.parent();
    let tenant = admins.as_ref().and_then(Dn::parent);
    let (Some(admins), Some(tenant)) = (admins, tenant) else {
        return false;
    };
    if !admins.leaf_is("ou", "admins")
        || tenant.value_of("mailfoldTenantId").is_none()
        || tenant.parent().as_ref() != Some(&tenants)
    {
        return false;
    }

    // The target: ou=aliases,mailfoldDomainName=<d>,ou=domains,<that tenant>, or below it.
    let mut node = Some(target.clone());
    while let Some(current) = node {
        let domain = current.parent();
        let domains = domain.as_ref().and_then(Dn::parent);
        if current.leaf_is("ou", "aliases")
            && let (Some(domain), Some(domains)) = (domain, domains)
        {
            return domain.leaf_kind() == Some("mailfolddomainname")
                && domains.leaf_is("ou", "domains")
                && domains.parent().as_ref() == Some(&tenant);
        }
        node = current.parent();
    }
    false
}

/// Applies one change to a copy of an entry, as a server would (RFC 4511 §4.6).
fn apply(entry: &mut Entry, change: Change) -> Result<()> {
    match change {
        Change::Replace(name, values) => entry.set(&name, values),
        Change::Add(name, values) => {
            let mut all = entry.values(&name).to_vec();
            for value in values {
                if all.contains(&value) {
                    // attributeOrValueExists.
                    return Err(DirectoryError::Conflict(format!(
                        "{name} already has {value}"
                    )));
                }
                all.push(value);
            }
            entry.set(&name, all);
        }
        Change::Remove(name, values) => {
            let mut all = entry.values(&name).to_vec();
            for value in values {
                let before = all.len();
                all.retain(|v| v != &value);
                if all.len() == before {
                    // noSuchAttribute.
                    return Err(DirectoryError::NotFound);
                }
            }
            entry.set(&name, all);
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&folder).map_err(|e| file_error("creating folder", &folder, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = folder.join(format!(".{name}.tmp-{}", std::process::id()));

    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename is only durable once the folder itself is on disk.
        std::fs::File::open(&folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(|e| file_error("writing", path, e))
}

fn parse_dn(dn: &str) -> Result<Dn> {
    Dn::parse(dn).map_err(|e| DirectoryError::Invalid(e.to_string()))
}

fn file_error(doing: &str, path: &Path, cause: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("{doing} {}: {cause}", path.display()))
}

fn poisoned() -> DirectoryError {
    DirectoryError::Unavailable("directory store lock poisoned".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "dc=example,dc=test";

    fn sample(dir: &Path) -> LdifConfig {
        let path = dir.join("directory.ldif");
        std::fs::write(
            &path,
            "dn: dc=example,dc=test\nobjectClass: domain\ndc: example\n\n\
             dn: o=tenants,dc=example,dc=test\nobjectClass: organization\no: tenants\n\n\
             dn: mail=a@x.test,o=tenants,dc=example,dc=test\nobjectClass: mailfoldAlias\n\
             mail: a@x.test\nmailfoldAddress: a@x.test\nmailfoldAliasTarget: b@x.test\n",
        )
        .unwrap();
        LdifConfig { path, seed: None }
    }

    fn alias(address: &str) -> Entry {
        let mut entry = Entry::new(format!("mail={address},o=tenants,{BASE}"));
        entry.push("objectClass", "mailfoldAlias");
        entry.push("mail", address);
        entry.push("mailfoldAddress", address);
        entry.push("mailfoldAliasTarget", "b@x.test");
        entry
    }

    #[tokio::test]
    async fn an_added_entry_is_in_the_file_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let config = sample(dir.path());
        let backend = LdifBackend::open(&config, BASE).unwrap();
        backend
            .add(Actor::Service, alias("c@x.test"))
            .await
            .unwrap();

        let reloaded = LdifBackend::open(&config, BASE).unwrap();
        let found = reloaded
            .search(
                BASE,
                Scope::Subtree,
                &Filter::equal("mailfoldAddress", "C@X.test"),
            )
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first("mail"), Some("c@x.test"));
        // No temporary file is left beside the real one.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_taken_address_or_a_missing_parent_is_refused_like_slapd_does() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LdifBackend::open(&sample(dir.path()), BASE).unwrap();
        let taken = backend
            .add(Actor::Service, alias("a@x.test"))
            .await
            .unwrap_err();
        assert!(matches!(taken, DirectoryError::Conflict(_)), "{taken}");

        let mut orphan = alias("d@x.test");
        orphan.dn = format!("mail=d@x.test,ou=nowhere,{BASE}");
        assert_eq!(
            backend.add(Actor::Service, orphan).await.unwrap_err(),
            DirectoryError::NotFound
        );
    }

    #[tokio::test]
    async fn modify_and_delete_update_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LdifBackend::open(&sample(dir.path()), BASE).unwrap();
        let dn = format!("mail=a@x.test,o=tenants,{BASE}");
        let changes = vec![Change::Replace(
            "mailfoldAddress".into(),
            vec!["z@x.test".into()],
        )];
        backend.modify(Actor::Service, &dn, changes).await.unwrap();
        let by =
            |a: &str| backend.search(BASE, Scope::Subtree, &Filter::equal("mailfoldAddress", a));
        assert!(by("a@x.test").unwrap().is_empty());
        assert_eq!(by("z@x.test").unwrap().len(), 1);

        backend.delete(Actor::Service, &dn).await.unwrap();
        assert!(by("z@x.test").unwrap().is_empty());
        let parent = format!("o=tenants,{BASE}");
        assert_eq!(
            backend.delete(Actor::Service, &dn).await.unwrap_err(),
            DirectoryError::NotFound
        );
        backend
            .add(Actor::Service, alias("e@x.test"))
            .await
            .unwrap();
        assert!(matches!(
            backend.delete(Actor::Service, &parent).await,
            Err(DirectoryError::Conflict(_))
        ));
    }

    #[test]
    fn a_missing_file_is_seeded_and_a_missing_seed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let seed = sample(dir.path()).path;
        let config = LdifConfig {
            path: dir.path().join("var/live.ldif"),
            seed: Some(seed),
        };
        LdifBackend::open(&config, BASE).unwrap();
        assert!(config.path.exists());

        let none = LdifConfig {
            path: dir.path().join("absent.ldif"),
            seed: None,
        };
        assert!(LdifBackend::open(&none, BASE).err().unwrap().is_temporary());
    }

    #[test]
    fn entries_outside_the_suffix_or_duplicated_fail_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.ldif");
        std::fs::write(&path, "dn: dc=other\nobjectClass: domain\n").unwrap();
        let config = LdifConfig {
            path: path.clone(),
            seed: None,
        };
        assert!(LdifBackend::open(&config, BASE).is_err());

        std::fs::write(
            &path,
            "dn: dc=example,dc=test\ndc: a\n\ndn: DC=example,dc=test\ndc: b\n",
        )
        .unwrap();
        let error = LdifBackend::open(&config, BASE).err().unwrap().to_string();
        assert!(error.contains("DC=example,dc=test: conflict"), "{error}");
    }
}
