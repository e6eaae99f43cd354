//! The directory the suites test against, behind either backend.
//!
//! The data is `examples/quickstart.ldif` followed by `tests/data/conformance.ldif`: the quick
//! start is tested as shipped, and the extra file adds the awkward cases. The LDAP form loads
//! both files into a private slapd; the LDIF form concatenates them into one file in a
//! temporary folder, which the backend then owns and rewrites.

use std::path::PathBuf;
use std::time::Duration;

use mailfold_directory::{
    BackendConfig, CacheConfig, Directory, DirectoryConfig, LdapConfig, LdifConfig,
};

use crate::repo_root;
use crate::slapd::{Slapd, SlapdOptions};

/// The suffix of the test data.
pub const SUFFIX: &str = "dc=example,dc=test";
/// The read-write service account of the test data, and its password.
pub const API_ACCOUNT: (&str, &str) = ("cn=api,ou=system,dc=example,dc=test", "api-pw");
/// The read-only service account of the test data, and its password.
pub const READER_ACCOUNT: (&str, &str) = ("cn=reader,ou=system,dc=example,dc=test", "reader-pw");

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A private slapd.
    Ldap,
    /// An LDIF file.
    Ldif,
}

/// The data files, in load order.
pub fn data_files() -> Vec<PathBuf> {
    let root = repo_root();
    vec![
        root.join("examples/quickstart.ldif"),
        root.join("tests/data/conformance.ldif"),
    ]
}

/// A running test directory: the backend's resources and a [`Directory`] over them.
pub struct TestDirectory {
    /// The directory under test.
    pub directory: Directory,
    /// The slapd behind it, for the LDAP kind.
    pub slapd: Option<Slapd>,
    /// The registry the directory's metrics are in.
    pub registry: prometheus::Registry,
    /// The validated settings it was opened with.
    pub config: DirectoryConfig,
    _folder: tempfile::TempDir,
}

/// Options for [`TestDirectory::start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Backend kind.
    pub kind: Kind,
    /// Cache settings; the default turns caching off so each test sees the backend.
    pub cache: CacheConfig,
    /// Per-operation timeout of the LDAP backend.
    pub timeout: Duration,
    /// Service account `(dn, password)` of the LDAP backend.
    pub account: (&'static str, &'static str),
    /// Serve LDAP over TLS: `Some(false)` StartTLS, `Some(true)` LDAPS.
    pub tls: Option<bool>,
    /// More entries, as LDIF text, loaded after the standard data.
    pub extra: Option<String>,
}

impl Options {
    /// Defaults for `kind`: no cache, 2 s timeout, the read-write account, plain LDAP.
    pub fn new(kind: Kind) -> Options {
        let cache = CacheConfig {
            ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            max_entries: 0,
        };
        Options {
            kind,
            cache,
            timeout: Duration::from_secs(2),
            account: API_ACCOUNT,
            tls: None,
            extra: None,
        }
    }
}

impl TestDirectory {
    /// Starts the backend with the test data and opens a directory on it.
    pub fn start(options: Options) -> TestDirectory {
        TestDirectory::try_start(options).unwrap_or_else(|e| panic!("opening the directory: {e}"))
    }

    /// Like [`TestDirectory::start`], but a directory that refuses to open is an error.
    pub fn try_start(
        options: Options,
    ) -> Result<TestDirectory, mailfold_directory::DirectoryError> {
        let folder = tempfile::tempdir().expect("temporary folder");
        let mut data = data_files();
        if let Some(extra) = &options.extra {
            let path = folder.path().join("extra.ldif");
            std::fs::write(&path, extra).expect("writing extra test data");
            data.push(path);
        }
        let (backend, slapd) = match options.kind {
            Kind::Ldif => {
                let path = folder.path().join("directory.ldif");
                let mut text = String::new();
                for file in &data {
                    text.push_str(&std::fs::read_to_string(file).expect("test data"));
                    text.push('\n');
                }
                std::fs::write(&path, text).expect("writing test ldif");
                (BackendConfig::Ldif(LdifConfig { path, seed: None }), None)
            }
            Kind::Ldap => {
                let slapd = Slapd::start(SlapdOptions {
                    suffix: SUFFIX.to_string(),
                    data,
                    tls: options.tls.is_some(),
                })
                .unwrap_or_else(|e| panic!("starting slapd: {e}"));
                let url = match options.tls {
                    Some(true) => slapd.ldaps_url().expect("ldaps url"),
                    _ => slapd.url(),
                };
                let config = LdapConfig {
                    url,
                    starttls: options.tls == Some(false),
                    ca_file: slapd.ca_file().map(PathBuf::from),
                    bind_dn: options.account.0.to_string(),
                    bind_password: options.account.1.to_string(),
                    pool_size: 4,
                    timeout: options.timeout,
                };
                (BackendConfig::Ldap(config), Some(slapd))
            }
        };
        let config = DirectoryConfig {
            base_dn: SUFFIX.to_string(),
            backend,
            cache: options.cache,
            max_alias_depth: 8,
            recipient_delimiter: Some('+'),
        };
        mailfold_net::install_crypto_provider();
        let registry = prometheus::Registry::new();
        let directory = Directory::open(&config, &registry)?;
        Ok(TestDirectory {
            directory,
            slapd,
            registry,
            config,
            _folder: folder,
        })
    }

    /// The value of a counter series in the directory's registry, 0 when absent.
    pub fn counter(&self, name: &str, label: (&str, &str)) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|family| family.name() == name)
            .flat_map(|family| family.get_metric().iter())
            .filter(|metric| {
                metric
                    .get_label()
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
            })
            .map(|metric| metric.get_counter().get_value() as u64)
            .sum()
    }
}

/// The password of every generated bench mailbox (`frank-pw`, `{SSHA}` so that hashing stays
/// out of the figures).
pub const BENCH_PASSWORD_HASH: &str = "{SSHA}pgTFI+0Sv83s8NI7N9bxTDLvTjfOt7Uz";

/// The address of generated mailbox `index`: `m00000@bench.test` and up.
pub fn bench_address(index: usize) -> String {
    format!("m{index:05}@bench.test")
}

/// The store path of generated mailbox `index`, spread over 100 folders.
pub fn bench_store_path(index: usize) -> String {
    format!("bench/{:02}/b-{index:05}", index % 100)
}

/// A directory for the benchmarks: the quick start, plus a tenant `bench` with a domain
/// `bench.test` holding `mailboxes` mailboxes ([`bench_address`], [`bench_store_path`],
/// [`BENCH_PASSWORD_HASH`]).
pub fn bench_directory(mailboxes: usize) -> String {
    let mut text = std::fs::read_to_string(repo_root().join("examples/quickstart.ldif"))
        .expect("the quick-start directory");
    let tenant = format!("mailfoldTenantId=bench,o=tenants,{SUFFIX}");
    let domain = format!("mailfoldDomainName=bench.test,ou=domains,{tenant}");
    text.push_str(&format!(
        "\ndn: {tenant}\nobjectClass: mailfoldTenant\nmailfoldTenantId: bench\n\
         mailfoldMailShard: local\n\n\
         dn: ou=domains,{tenant}\nobjectClass: organizationalUnit\nou: domains\n\n\
         dn: {domain}\nobjectClass: mailfoldDomain\nmailfoldDomainName: bench.test\n\n\
         dn: ou=mailboxes,{domain}\nobjectClass: organizationalUnit\nou: mailboxes\n\n\
         dn: ou=aliases,{domain}\nobjectClass: organizationalUnit\nou: aliases\n"
    ));
    for index in 0..mailboxes {
        let address = bench_address(index);
        text.push_str(&format!(
            "\ndn: uid=b-{index:05},ou=mailboxes,{domain}\nobjectClass: inetOrgPerson\n\
             objectClass: mailfoldMailbox\nuid: b-{index:05}\ncn: Bench {index}\nsn: {index}\n\
             mail: {address}\nmailfoldAddress: {address}\nmailfoldMailShard: local\n\
             mailfoldMailStore: {}\nuserPassword: {BENCH_PASSWORD_HASH}\n",
            bench_store_path(index)
        ));
    }
    text
}

/// `text` (a copy of examples/quickstart.toml) with each `(from, to)` applied once. A `from`
/// that is not there fails the test: the quick start changed under it.
pub fn apply_swaps(mut text: String, swaps: &[(String, String)]) -> String {
    for (from, to) in swaps {
        assert!(
            text.contains(from.as_str()),
            "examples/quickstart.toml no longer has {from:?}"
        );
        text = text.replacen(from.as_str(), to, 1);
    }
    text
}

/// Writes the quick start, the conformance entries and `extra` into `folder/seed.ldif`: the
/// seed of a test server's LDIF directory.
pub fn write_seed(folder: &std::path::Path, extra: Option<&str>) -> std::path::PathBuf {
    let seed = folder.join("seed.ldif");
    let mut data = String::new();
    for file in data_files() {
        data.push_str(&std::fs::read_to_string(file).expect("test data"));
        data.push('\n');
    }
    if let Some(extra) = extra {
        data.push('\n');
        data.push_str(extra);
    }
    std::fs::write(&seed, data).expect("writing the seed");
    seed
}

/// The swaps that keep a quick-start copy's state (`var/`, its LDIF file and mail) in the
/// copy's own folder, seeded from `seed`.
pub fn state_swaps(seed: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("\"../var\"".to_string(), "\"var\"".to_string()),
        (
            "\"../var/directory.ldif\"".into(),
            "\"var/directory.ldif\"".into(),
        ),
        ("\"../var/mail\"".into(), "\"var/mail\"".into()),
        (
            "\"quickstart.ldif\"".into(),
            format!("{:?}", seed.display().to_string()),
        ),
    ]
}

/// A mailbox of the quick start: login, password, store path on the `local` shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// The login, its primary address.
    pub login: &'static str,
    /// The password (the quick start's `<local part>-pw`).
    pub password: &'static str,
    /// `mailfoldMailStore`.
    pub store: &'static str,
}

/// `{ARGON2}`, the scheme Mailfold writes.
pub const ALICE: Account = Account {
    login: "alice@acme.test",
    password: "alice-pw",
    store: "2a/4c/u-0001",
};

/// `{CRYPT}` `$6$`.
pub const BOB: Account = Account {
    login: "bob@acme.test",
    password: "bob-pw",
    store: "46/90/u-0002",
};

/// Has deliver, imap and pop3 but not smtp.
pub const CAROL: Account = Account {
    login: "carol@acme.test",
    password: "carol-pw",
    store: "73/53/u-0003",
};

/// `{SSHA}`: cheap to verify, so logins add no hashing memory to a memory measurement.
pub const FRANK: Account = Account {
    login: "frank@acme.test",
    password: "frank-pw",
    store: "48/71/u-0006",
};

/// The catch-all target of globex.test.
pub const INFO: Account = Account {
    login: "info@globex.test",
    password: "info-pw",
    store: "e9/24/u-0101",
};

/// The swaps that point a quick-start configuration at `slapd` instead of the LDIF file,
/// reading with the read-only service account.
pub fn ldap_swaps(slapd: &Slapd, timeout: &str) -> Vec<(String, String)> {
    let section = format!(
        "[directory.ldap]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n\
         timeout = \"{timeout}\"\n\n[shards]",
        slapd.url(),
        READER_ACCOUNT.0,
        READER_ACCOUNT.1
    );
    vec![
        ("backend = \"ldif\"".into(), "backend = \"ldap\"".into()),
        ("[shards]".into(), section),
    ]
}
