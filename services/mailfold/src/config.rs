//! The configuration file: TOML, read in two phases.
//!
//! Phase one is TOML syntax: the file becomes a table, or one syntax error is reported. Phase
//! two walks that table key by key into the validated [`Config`], collecting every problem (an
//! unknown key, a value of the wrong type, a port that does not parse, a missing CA file) with
//! its key path, so that `mailfold check-config` reports them all at once. A raw serde struct
//! would stop at the first type error, which is why phase two is written out by hand.
//!
//! Relative paths are relative to the folder of the configuration file, not to the working
//! directory of whoever starts the process. Every option and its default is documented in
//! docs/configuration.md.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailfold_directory::dn::Dn;
use mailfold_directory::{BackendConfig, CacheConfig, DirectoryConfig, LdapConfig, LdifConfig};
use mailfold_telemetry::LogFormat;

pub use crate::queue_config::QueueConfig;

/// A role the process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP: health, readiness, metrics.
    Api,
    /// POP3 mailbox access.
    Pop3,
    /// SMTP: MX and submission.
    Smtp,
    /// LMTP from an edge MTA.
    Lmtp,
    /// The outbound queue: delivery to other hosts.
    Queue,
}

impl Role {
    fn parse(name: &str) -> Option<Role> {
        match name {
            "api" => Some(Role::Api),
            "pop3" => Some(Role::Pop3),
            "smtp" => Some(Role::Smtp),
            "lmtp" => Some(Role::Lmtp),
            "queue" => Some(Role::Queue),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Api => "api",
            Role::Pop3 => "pop3",
            Role::Smtp => "smtp",
            Role::Lmtp => "lmtp",
            Role::Queue => "queue",
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Roles to run.
    pub roles: Vec<Role>,
    /// Where the process keeps state (LDIF directory, generated certificates, spool).
    pub state_dir: PathBuf,
    /// Logging.
    pub log: LogConfig,
    /// The directory.
    pub directory: DirectoryConfig,
    /// The HTTP role.
    pub api: ApiConfig,
    /// `[shards]`: shard id to root folder.
    pub shards: BTreeMap<String, PathBuf>,
    /// `[tls]`: the server certificate; `None` means a self-signed one in the state folder.
    pub tls: Option<TlsFiles>,
    /// `[auth]`: login failure limits shared by the front-ends.
    pub auth: AuthConfig,
    /// The POP3 role.
    pub pop3: Pop3Config,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[smtp]`: the SMTP and LMTP roles.
    pub smtp: SmtpConfig,
    /// `[queue]`: the outbound queue.
    pub queue: QueueConfig,
}

/// `[smtp]`.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// MX listeners.
    pub mx: Vec<SocketAddr>,
    /// Submission listeners with STARTTLS.
    pub submission: Vec<SocketAddr>,
    /// Submission listeners with implicit TLS.
    pub submissions: Vec<SocketAddr>,
    /// LMTP listeners.
    pub lmtp: Vec<SocketAddr>,
    /// An LMTP unix socket.
    pub lmtp_socket: Option<PathBuf>,
    /// Largest message, in bytes (0: unlimited).
    pub max_message_size: u64,
    /// Bare CR/LF in DATA.
    pub bare_line_endings: mailfold_smtp::BareLineEndings,
    /// AUTH without TLS on submission.
    pub plaintext: mailfold_net::Plaintext,
    /// PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Most connections in all.
    pub max_connections: usize,
    /// Most connections from one address.
    pub max_connections_per_ip: usize,
    /// Where `RCPT TO:<postmaster>` goes.
    pub postmaster: String,
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub certificate: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Failed logins from one address allowed in `failure_window`.
    pub max_failures_per_ip: u32,
    /// Failed logins for one account allowed in `failure_window`.
    pub max_failures_per_account: u32,
    /// The window the two counts above cover.
    pub failure_window: Duration,
    /// Pause before the reply to a failed login.
    pub failure_delay: Duration,
}

/// `[pop3]`.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// Plain listeners, with STLS.
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS listeners.
    pub listen_tls: Vec<SocketAddr>,
    /// `never`, `loopback` or `always`.
    pub plaintext: mailfold_net::Plaintext,
    /// Idle time before autologout.
    pub idle_timeout: Duration,
    /// Read a PROXY protocol header first.
    pub proxy_protocol: bool,
    /// Most connections in all.
    pub max_connections: usize,
    /// Most connections from one address.
    pub max_connections_per_ip: usize,
}

/// `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Distinct tenant labels before the rest fold into `other`.
    pub max_tenants: usize,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing filter directive (`info`, `mailfold_directory=debug,info`).
    pub filter: String,
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Serve HTTPS with the `[tls]` certificate instead of plain HTTP.
    pub tls: bool,
    /// The operator's bearer token, read from `operator_token_file`; `None` closes the
    /// operator API.
    pub operator_token: Option<String>,
    /// How long a tenant token lives.
    pub token_lifetime: Duration,
    /// Largest request body, in bytes.
    pub max_body_size: usize,
    /// Longest time to answer one request.
    pub request_timeout: Duration,
    /// Placement of new mailboxes that no request, domain or tenant pins to a shard.
    pub shard_placement: mailfold_api::ShardPolicy,
    /// Most open connections, and most from one client network.
    pub max_connections: usize,
    /// Most open connections from one client network.
    pub max_connections_per_ip: usize,
    /// Expect a PROXY protocol header first, from a load balancer.
    pub proxy_protocol: bool,
}

/// The shortest operator token accepted: it is the key to the whole platform.
pub const MIN_OPERATOR_TOKEN: usize = 32;

/// One problem in the file, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`directory.ldap.url`), empty for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let whole = |message: String| {
        vec![ConfigError {
            key: String::new(),
            message,
        }]
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| whole(format!("reading {}: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base)
}

/// Validates configuration text; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    // Phase one: TOML syntax.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        vec![ConfigError {
            key: String::new(),
            message: format!("invalid toml: {}", e.message()),
        }]
    })?;

    // Phase two: every key, every error.
    let mut errors = Errors {
        base: base.to_path_buf(),
        list: Vec::new(),
    };
    let mut root = Section {
        path: String::new(),
        table,
    };
    let config = read_config(&mut root, &mut errors);
    root.finish(&mut errors);
    match config {
        Some(config) if errors.list.is_empty() => Ok(config),
        _ => Err(errors.list),
    }
}

fn read_config(root: &mut Section, errors: &mut Errors) -> Option<Config> {
    let roles = read_roles(root, errors);
    let state_dir = root
        .path("state_dir", errors)
        .unwrap_or_else(|| errors.base.join("var"));

    let mut log = root.section("log", errors);
    let filter = log
        .string("level", errors)
        .unwrap_or_else(|| "info".to_string());
    if let Err(e) = mailfold_telemetry::parse_filter(&filter) {
        errors.add(&log.key("level"), e.to_string());
    }
    let format = match log.string("format", errors).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            errors.add(
                &log.key("format"),
                format!("unknown format {other:?}: text or json"),
            );
            LogFormat::Text
        }
    };
    log.finish(errors);

    let directory = read_directory(root, errors);
    let shards = read_shards(root, errors);
    let tls = read_tls(root, errors);
    let auth = read_auth(root, errors);
    let pop3 = read_pop3(root, errors, roles.contains(&Role::Pop3));
    let smtp = read_smtp(root, errors);
    let queue = crate::queue_config::read_queue(root, errors, &state_dir, &smtp.hostname);
    if queue.handover && roles.contains(&Role::Queue) {
        errors.add(
            "queue.handover",
            "a process with the queue role delivers from its folder itself; handover is for \
             smtp processes without it"
                .into(),
        );
    }
    let mut metrics = root.section("metrics", errors);
    let max_tenants = metrics
        .integer("max_tenants", 1, 1_000_000, errors)
        .unwrap_or(1000) as usize;
    metrics.finish(errors);

    let api = read_api(root, errors, roles.contains(&Role::Api));

    Some(Config {
        roles,
        state_dir,
        log: LogConfig { filter, format },
        directory: directory?,
        api,
        shards,
        tls,
        auth,
        pop3,
        metrics: MetricsConfig { max_tenants },
        smtp,
        queue,
    })
}

fn read_roles(root: &mut Section, errors: &mut Errors) -> Vec<Role> {
    let names = root
        .strings("roles", errors)
        .unwrap_or_else(|| vec!["api".into()]);
    let mut roles = Vec::new();
    for name in names {
        match Role::parse(&name) {
            Some(role) if !roles.contains(&role) => roles.push(role),
            Some(_) => {}
            None => errors.add(
                "roles",
                format!("unknown role {name:?}; available: api, pop3, smtp, lmtp, queue"),
            ),
        }
    }
    roles
}

fn read_directory(root: &mut Section, errors: &mut Errors) -> Option<DirectoryConfig> {
    let mut section = root.section("directory", errors);
    let base_dn = section.string("base_dn", errors);
    match &base_dn {
        None => errors.add(&section.key("base_dn"), "required".into()),
        Some(dn) if Dn::parse(dn).map(|d| d.depth() == 0).unwrap_or(true) => {
            errors.add(&section.key("base_dn"), format!("{dn:?} is not a valid dn"));
        }
        Some(_) => {}
    }
    let max_alias_depth = section
        .integer("max_alias_depth", 1, 64, errors)
        .unwrap_or(8) as usize;
    let recipient_delimiter = match section.string("recipient_delimiter", errors) {
        None => Some('+'),
        Some(text) if text.is_empty() => None,
        Some(text) => {
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if "+-_=".contains(c) => Some(c),
                _ => {
                    errors.add(
                        &section.key("recipient_delimiter"),
                        "one of + - _ = or \"\"".into(),
                    );
                    None
                }
            }
        }
    };

    let cache = read_cache(&mut section, errors);
    let kind = section.string("backend", errors);
    let mut ldif = section.section("ldif", errors);
    let mut ldap = section.section("ldap", errors);
    let backend = match kind.as_deref() {
        Some("ldif") => read_ldif(&mut ldif, errors).map(BackendConfig::Ldif),
        Some("ldap") => read_ldap(&mut ldap, errors).map(BackendConfig::Ldap),
        Some(other) => {
            errors.add(
                &section.key("backend"),
                format!("unknown backend {other:?}: ldap or ldif"),
            );
            None
        }
        None => {
            errors.add(&section.key("backend"), "required: ldap or ldif".into());
            None
        }
    };
    // The unused backend's section may stay in the file, for switching back and forth.
    // Its keys are consumed so that they are not reported as unknown; what it lacks is not an
    // error, since it is not used.
    let mut unused = Errors {
        base: errors.base.clone(),
        list: Vec::new(),
    };
    if kind.as_deref() != Some("ldif") && !ldif.table.is_empty() {
        let _ = read_ldif(&mut ldif, &mut unused);
    }
    if kind.as_deref() != Some("ldap") && !ldap.table.is_empty() {
        let _ = read_ldap(&mut ldap, &mut unused);
    }
    ldif.finish(errors);
    ldap.finish(errors);
    section.finish(errors);

    Some(DirectoryConfig {
        base_dn: base_dn?,
        backend: backend?,
        cache,
        max_alias_depth,
        recipient_delimiter,
    })
}

fn read_tls(root: &mut Section, errors: &mut Errors) -> Option<TlsFiles> {
    let mut section = root.section("tls", errors);
    let certificate = section.path("certificate", errors);
    let key = section.path("key", errors);
    let files = match (certificate, key) {
        (Some(certificate), Some(key)) => {
            for (name, file) in [("certificate", &certificate), ("key", &key)] {
                if !file.is_file() {
                    errors.add(
                        &section.key(name),
                        format!("{} is not a readable file", file.display()),
                    );
                }
            }
            Some(TlsFiles { certificate, key })
        }
        (None, None) => None,
        _ => {
            errors.add(
                &section.key("key"),
                "certificate and key go together".into(),
            );
            None
        }
    };
    section.finish(errors);
    files
}

fn read_auth(root: &mut Section, errors: &mut Errors) -> AuthConfig {
    let mut section = root.section("auth", errors);
    let config = AuthConfig {
        max_failures_per_ip: section
            .integer("max_failures_per_ip", 1, 1_000_000, errors)
            .unwrap_or(10) as u32,
        max_failures_per_account: section
            .integer("max_failures_per_account", 1, 1_000_000, errors)
            .unwrap_or(5) as u32,
        failure_window: section
            .duration("failure_window", errors)
            .unwrap_or(Duration::from_secs(300)),
        failure_delay: section
            .duration("failure_delay", errors)
            .unwrap_or(Duration::from_secs(1)),
    };
    section.finish(errors);
    config
}

fn read_pop3(root: &mut Section, errors: &mut Errors, enabled: bool) -> Pop3Config {
    let mut section = root.section("pop3", errors);
    let listen = section
        .addresses("listen", errors)
        .unwrap_or_else(|| vec![local(1110)]);
    let listen_tls = section
        .addresses("listen_tls", errors)
        .unwrap_or_else(|| vec![local(1995)]);
    let plaintext = section.plaintext(errors);
    let idle_timeout = section
        .duration("idle_timeout", errors)
        .unwrap_or(Duration::from_secs(600));
    // RFC 1939 §3: the autologout timer is at least 10 minutes.
    if idle_timeout < Duration::from_secs(600) {
        errors.add(
            &section.key("idle_timeout"),
            "at least 10m (RFC 1939)".into(),
        );
    }
    if enabled && listen.is_empty() && listen_tls.is_empty() {
        errors.add(
            &section.key("listen"),
            "the pop3 role needs at least one address".into(),
        );
    }
    let config = Pop3Config {
        listen,
        listen_tls,
        plaintext,
        idle_timeout,
        proxy_protocol: section.boolean("proxy_protocol", errors).unwrap_or(false),
        max_connections: section
            .integer("max_connections", 1, 1_000_000, errors)
            .unwrap_or(10_000) as usize,
        max_connections_per_ip: section
            .integer("max_connections_per_ip", 1, 1_000_000, errors)
            .unwrap_or(50) as usize,
    };
    section.finish(errors);
    config
}

fn read_smtp(root: &mut Section, errors: &mut Errors) -> SmtpConfig {
    use mailfold_smtp::BareLineEndings;
    let mut section = root.section("smtp", errors);
    let hostname = section
        .string("hostname", errors)
        .unwrap_or_else(system_hostname);
    if mailfold_directory::Domain::parse(&hostname).is_err() {
        errors.add(
            &section.key("hostname"),
            format!("{hostname:?} is not a host name"),
        );
    }
    let bare_line_endings = match section.string("bare_line_endings", errors).as_deref() {
        None | Some("reject") => BareLineEndings::Reject,
        Some("normalise") => BareLineEndings::Normalise,
        Some(other) => {
            errors.add(
                &section.key("bare_line_endings"),
                format!("{other:?}: reject or normalise"),
            );
            BareLineEndings::Reject
        }
    };
    let plaintext = section.plaintext(errors);
    let postmaster = section
        .string("postmaster", errors)
        .unwrap_or_else(|| format!("postmaster@{hostname}"));
    let config = SmtpConfig {
        mx: section
            .addresses("mx", errors)
            .unwrap_or_else(|| vec![local(2525)]),
        submission: section
            .addresses("submission", errors)
            .unwrap_or_else(|| vec![local(2587)]),
        submissions: section
            .addresses("submissions", errors)
            .unwrap_or_else(|| vec![local(2465)]),
        lmtp: section
            .addresses("lmtp", errors)
            .unwrap_or_else(|| vec![local(2424)]),
        lmtp_socket: section.path("lmtp_socket", errors),
        max_message_size: section
            .integer("max_message_size", 0, i64::MAX, errors)
            .unwrap_or(50 << 20) as u64,
        bare_line_endings,
        plaintext,
        proxy_protocol: section.boolean("proxy_protocol", errors).unwrap_or(false),
        max_connections: section
            .integer("max_connections", 1, 1_000_000, errors)
            .unwrap_or(10_000) as usize,
        max_connections_per_ip: section
            .integer("max_connections_per_ip", 1, 1_000_000, errors)
            .unwrap_or(50) as usize,
        postmaster,
        hostname,
    };
    section.finish(errors);
    config
}

/// The machine's host name, or `localhost`.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `[shards]`: `id = "root folder"`. Ids are what `mailfoldMailShard` holds.
fn read_shards(root: &mut Section, errors: &mut Errors) -> BTreeMap<String, PathBuf> {
    let mut section = root.section("shards", errors);
    let mut shards = BTreeMap::new();
    let ids: Vec<String> = section.table.keys().cloned().collect();
    for id in ids {
        let valid_id = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let Some(path) = section.path(&id, errors) else {
            continue;
        };
        if valid_id {
            shards.insert(id, path);
        } else {
            errors.add(
                &section.key(&id),
                "shard ids are letters, digits, - and _".into(),
            );
        }
    }
    section.finish(errors);
    shards
}

fn read_cache(directory: &mut Section, errors: &mut Errors) -> CacheConfig {
    let defaults = CacheConfig::default();
    let mut section = directory.section("cache", errors);
    let config = CacheConfig {
        ttl: section.duration("ttl", errors).unwrap_or(defaults.ttl),
        negative_ttl: section
            .duration("negative_ttl", errors)
            .unwrap_or(defaults.negative_ttl),
        max_entries: section
            .integer("max_entries", 0, 10_000_000, errors)
            .map(|n| n as usize)
            .unwrap_or(defaults.max_entries),
    };
    section.finish(errors);
    config
}

fn read_ldif(section: &mut Section, errors: &mut Errors) -> Option<LdifConfig> {
    let path = section.path("path", errors);
    let seed = section.path("seed", errors);
    if path.is_none() {
        errors.add(
            &section.key("path"),
            "required with backend = \"ldif\"".into(),
        );
    }
    if let Some(seed) = &seed
        && !seed.is_file()
    {
        let message = format!("{} is not a readable file", seed.display());
        errors.add(&section.key("seed"), message);
    }
    Some(LdifConfig { path: path?, seed })
}

fn read_ldap(section: &mut Section, errors: &mut Errors) -> Option<LdapConfig> {
    let url = section.string("url", errors);
    let starttls = section.boolean("starttls", errors).unwrap_or(false);
    let ca_file = section.path("ca_file", errors);
    let bind_dn = section.string("bind_dn", errors);
    let password = section.string("bind_password", errors);
    let password_file = section.path("bind_password_file", errors);
    let pool_size = section.integer("pool_size", 1, 1024, errors).unwrap_or(8) as usize;
    let timeout = section
        .duration("timeout", errors)
        .unwrap_or(Duration::from_secs(5));

    match url.as_deref() {
        None => errors.add(
            &section.key("url"),
            "required with backend = \"ldap\"".into(),
        ),
        Some(url) if url.starts_with("ldaps://") && starttls => {
            errors.add(
                &section.key("starttls"),
                "starttls cannot be used with ldaps://".into(),
            );
        }
        Some(url) if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) => {
            errors.add(
                &section.key("url"),
                format!("{url:?} must start with ldap:// or ldaps://"),
            );
        }
        Some(_) => {}
    }
    let tls = starttls || url.as_deref().is_some_and(|u| u.starts_with("ldaps://"));
    match &ca_file {
        None if tls => errors.add(
            &section.key("ca_file"),
            "required for ldaps:// or starttls".into(),
        ),
        Some(file) if !file.is_file() => {
            errors.add(
                &section.key("ca_file"),
                format!("{} is not a readable file", file.display()),
            );
        }
        _ => {}
    }
    if bind_dn.as_deref().is_none_or(|dn| Dn::parse(dn).is_err()) {
        errors.add(
            &section.key("bind_dn"),
            "required: the service account's dn".into(),
        );
    }
    let bind_password = match (password, password_file) {
        (Some(_), Some(_)) => {
            errors.add(
                &section.key("bind_password_file"),
                "set bind_password or this, not both".into(),
            );
            None
        }
        (Some(password), None) => Some(password),
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            // A secret file usually ends in a newline that is not part of the secret.
            Ok(secret) => Some(secret.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                errors.add(
                    &section.key("bind_password_file"),
                    format!("reading {}: {e}", file.display()),
                );
                None
            }
        },
        (None, None) => {
            errors.add(
                &section.key("bind_password"),
                "required (or bind_password_file)".into(),
            );
            None
        }
    };

    Some(LdapConfig {
        url: url?,
        starttls,
        ca_file,
        bind_dn: bind_dn?,
        bind_password: bind_password?,
        pool_size,
        timeout,
    })
}

/// The problems found so far, and the folder relative paths start from.
pub(crate) struct Errors {
    pub(crate) base: PathBuf,
    list: Vec<ConfigError>,
}

impl Errors {
    pub(crate) fn add(&mut self, key: &str, message: String) {
        self.list.push(ConfigError {
            key: key.to_string(),
            message,
        });
    }
}

/// One table of the file; keys are removed as they are read, and what is left is unknown.
pub(crate) struct Section {
    path: String,
    pub(crate) table: toml::Table,
}

impl Section {
    pub(crate) fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn take(&mut self, name: &str) -> Option<toml::Value> {
        self.table.remove(name)
    }

    fn wrong_type(&self, name: &str, expected: &str, errors: &mut Errors) {
        errors.add(&self.key(name), format!("expected {expected}"));
    }

    pub(crate) fn section(&mut self, name: &str, errors: &mut Errors) -> Section {
        let path = self.key(name);
        match self.take(name) {
            Some(toml::Value::Table(table)) => Section { path, table },
            Some(_) => {
                self.wrong_type(name, "a table", errors);
                Section {
                    path,
                    table: toml::Table::new(),
                }
            }
            None => Section {
                path,
                table: toml::Table::new(),
            },
        }
    }

    pub(crate) fn string(&mut self, name: &str, errors: &mut Errors) -> Option<String> {
        match self.take(name)? {
            toml::Value::String(text) => Some(text),
            _ => {
                self.wrong_type(name, "a string", errors);
                None
            }
        }
    }

    pub(crate) fn strings(&mut self, name: &str, errors: &mut Errors) -> Option<Vec<String>> {
        match self.take(name)? {
            toml::Value::Array(items) => {
                let texts: Option<Vec<String>> = items
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                if texts.is_none() {
                    self.wrong_type(name, "a list of strings", errors);
                }
                texts
            }
            _ => {
                self.wrong_type(name, "a list of strings", errors);
                None
            }
        }
    }

    /// `plaintext`: `never` (the default), `loopback` or `always`.
    fn plaintext(&mut self, errors: &mut Errors) -> mailfold_net::Plaintext {
        use mailfold_net::Plaintext;
        match self.string("plaintext", errors).as_deref() {
            None | Some("never") => Plaintext::Never,
            Some("loopback") => Plaintext::Loopback,
            Some("always") => Plaintext::Always,
            Some(other) => {
                let message = format!("{other:?}: never, loopback or always");
                errors.add(&self.key("plaintext"), message);
                Plaintext::Never
            }
        }
    }

    /// A list of `ip:port` addresses; each bad one is reported.
    pub(crate) fn addresses(&mut self, name: &str, errors: &mut Errors) -> Option<Vec<SocketAddr>> {
        let texts = self.strings(name, errors)?;
        let mut addresses = Vec::new();
        for text in texts {
            match text.parse() {
                Ok(address) => addresses.push(address),
                Err(_) => errors.add(
                    &self.key(name),
                    format!("{text:?} is not an ip:port address"),
                ),
            }
        }
        Some(addresses)
    }

    pub(crate) fn boolean(&mut self, name: &str, errors: &mut Errors) -> Option<bool> {
        match self.take(name)? {
            toml::Value::Boolean(value) => Some(value),
            _ => {
                self.wrong_type(name, "true or false", errors);
                None
            }
        }
    }

    pub(crate) fn integer(
        &mut self,
        name: &str,
        min: i64,
        max: i64,
        errors: &mut Errors,
    ) -> Option<i64> {
        match self.take(name)? {
            toml::Value::Integer(value) if (min..=max).contains(&value) => Some(value),
            toml::Value::Integer(_) => {
                errors.add(&self.key(name), format!("must be between {min} and {max}"));
                None
            }
            _ => {
                self.wrong_type(name, "an integer", errors);
                None
            }
        }
    }

    /// A path; relative ones are taken from the configuration file's folder.
    pub(crate) fn path(&mut self, name: &str, errors: &mut Errors) -> Option<PathBuf> {
        let text = self.string(name, errors)?;
        if text.is_empty() {
            errors.add(&self.key(name), "empty path".into());
            return None;
        }
        Some(errors.base.join(text))
    }

    /// A duration written with a unit: `250ms`, `5s`, `2m`, `1h`, `5d`.
    pub(crate) fn duration(&mut self, name: &str, errors: &mut Errors) -> Option<Duration> {
        let text = self.string(name, errors)?;
        let parsed = parse_duration(&text);
        if parsed.is_none() {
            errors.add(
                &self.key(name),
                format!("{text:?} is not a duration like 250ms, 5s, 2m, 1h, 5d"),
            );
        }
        parsed
    }

    /// Reports every key nobody read.
    pub(crate) fn finish(self, errors: &mut Errors) {
        for name in self.table.keys() {
            errors.add(&self.key(name), "unknown key".into());
        }
    }
}

/// `[api]`: the HTTP listener, the operator token and the API's limits.
fn read_api(root: &mut Section, errors: &mut Errors, enabled: bool) -> ApiConfig {
    let mut api = root.section("api", errors);
    let listen = api
        .addresses("listen", errors)
        .unwrap_or_else(|| vec![local(8080)]);
    if enabled && listen.is_empty() {
        errors.add(
            &api.key("listen"),
            "the api role needs at least one address".into(),
        );
    }
    let tls = api.boolean("tls", errors).unwrap_or(false);
    let operator_token = api.path("operator_token_file", errors).and_then(|file| {
        match std::fs::read_to_string(&file) {
            Ok(text) if text.trim().len() >= MIN_OPERATOR_TOKEN => Some(text.trim().to_string()),
            Ok(_) => {
                errors.add(
                    &api.key("operator_token_file"),
                    format!("the token must be at least {MIN_OPERATOR_TOKEN} characters"),
                );
                None
            }
            Err(e) => {
                errors.add(
                    &api.key("operator_token_file"),
                    format!("reading {}: {e}", file.display()),
                );
                None
            }
        }
    });
    let token_lifetime = api
        .duration("token_lifetime", errors)
        .unwrap_or(Duration::from_secs(3600));
    if !(Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600)).contains(&token_lifetime) {
        errors.add(&api.key("token_lifetime"), "must be from 1m to 168h".into());
    }
    let max_body_size = api
        .integer("max_body_size", 1024, 16 * 1024 * 1024, errors)
        .unwrap_or(64 * 1024) as usize;
    let request_timeout = api
        .duration("request_timeout", errors)
        .unwrap_or(Duration::from_secs(30));
    if request_timeout.is_zero() {
        errors.add(&api.key("request_timeout"), "must be more than 0".into());
    }
    let shard_placement = match api.string("shard_placement", errors).as_deref() {
        None | Some("first") => mailfold_api::ShardPolicy::First,
        Some("spread") => mailfold_api::ShardPolicy::Spread,
        Some(other) => {
            errors.add(
                &api.key("shard_placement"),
                format!("unknown policy {other:?}: first or spread"),
            );
            mailfold_api::ShardPolicy::First
        }
    };
    let max_connections = api
        .integer("max_connections", 1, 1_000_000, errors)
        .unwrap_or(256) as usize;
    let max_connections_per_ip = api
        .integer("max_connections_per_ip", 1, 1_000_000, errors)
        .unwrap_or(32) as usize;
    let proxy_protocol = api.boolean("proxy_protocol", errors).unwrap_or(false);
    api.finish(errors);
    ApiConfig {
        listen,
        tls,
        operator_token,
        token_lifetime,
        max_body_size,
        request_timeout,
        shard_placement,
        max_connections,
        max_connections_per_ip,
        proxy_protocol,
    }
}

pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => number,
        "s" => number.checked_mul(1000)?,
        "m" => number.checked_mul(60_000)?,
        "h" => number.checked_mul(3_600_000)?,
        "d" => number.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        parse(text, Path::new("/etc/mailfold"))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    const LDIF: &str = "[directory]\nbackend = \"ldif\"\nbase_dn = \"dc=example,dc=test\"\n\
                        [directory.ldif]\npath = \"dir.ldif\"\n";

    #[test]
    fn a_minimal_ldif_configuration_is_valid_with_defaults() {
        let config = parse(LDIF, Path::new("/etc/mailfold")).unwrap();
        assert_eq!(config.roles, vec![Role::Api]);
        assert_eq!(config.state_dir, PathBuf::from("/etc/mailfold/var"));
        assert_eq!(config.api.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        let BackendConfig::Ldif(ldif) = &config.directory.backend else {
            panic!("ldif")
        };
        assert_eq!(ldif.path, PathBuf::from("/etc/mailfold/dir.ldif"));
        assert_eq!(config.directory.recipient_delimiter, Some('+'));
        assert_eq!(config.directory.cache, CacheConfig::default());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = format!(
            "roles = [\"api\", \"smtpp\"]\ncolour = \"blue\"\n{LDIF}\
             [directory.cache]\nttl = \"soon\"\nmax_entries = \"many\"\n\
             [api]\nlisten = [\"localhost\"]\n[log]\nformat = \"xml\"\n"
        );
        let errors = errors_of(&text);
        for expected in [
            "roles: unknown role \"smtpp\"",
            "colour: unknown key",
            "directory.cache.ttl: \"soon\" is not a duration",
            "directory.cache.max_entries: expected an integer",
            "api.listen: \"localhost\" is not an ip:port address",
            "log.format: unknown format \"xml\"",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn api_options_have_safe_defaults_and_checked_values() {
        let config = parse(LDIF, Path::new("/etc/mailfold")).unwrap();
        assert_eq!(
            config.api.operator_token, None,
            "the operator api starts closed"
        );
        assert!(!config.api.tls);
        assert_eq!(config.api.token_lifetime, Duration::from_secs(3600));
        assert_eq!(config.api.max_body_size, 65536);

        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("short"), "tooshort\n").unwrap();
        std::fs::write(folder.path().join("good"), format!("{}\n", "k".repeat(40))).unwrap();
        let text =
            format!("{LDIF}[api]\noperator_token_file = \"good\"\nshard_placement = \"spread\"\n");
        let config = parse(&text, folder.path()).unwrap();
        assert_eq!(config.api.operator_token, Some("k".repeat(40)));
        assert_eq!(
            config.api.shard_placement,
            mailfold_api::ShardPolicy::Spread
        );

        let text = format!(
            "{LDIF}[api]\noperator_token_file = \"short\"\ntoken_lifetime = \"10s\"\n\
             shard_placement = \"random\"\nmax_body_size = 10\nrequest_timeout = \"0s\"\n"
        );
        let errors: Vec<String> = parse(&text, folder.path())
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        for expected in [
            "api.operator_token_file: the token must be at least 32 characters",
            "api.token_lifetime: must be from 1m to 168h",
            "api.shard_placement: unknown policy \"random\"",
            "api.max_body_size:",
            "api.request_timeout: must be more than 0",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected} not in {errors:#?}"
            );
        }
        let missing = format!("{LDIF}[api]\noperator_token_file = \"absent\"\n");
        assert!(parse(&missing, folder.path()).is_err());
    }

    #[test]
    fn ldap_needs_a_url_credentials_and_a_ca_for_tls() {
        let text = "[directory]\nbackend = \"ldap\"\nbase_dn = \"dc=x\"\n\
                    [directory.ldap]\nurl = \"ldaps://127.0.0.1:636\"\ntimeout = \"2s\"\n";
        let errors = errors_of(text);
        for expected in [
            "directory.ldap.ca_file",
            "directory.ldap.bind_dn",
            "directory.ldap.bind_password",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn the_bind_password_can_come_from_a_file_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let text = "[directory]\nbackend = \"ldap\"\nbase_dn = \"dc=x\"\n[directory.ldap]\n\
                    url = \"ldap://127.0.0.1:389\"\nbind_dn = \"cn=reader,dc=x\"\n\
                    bind_password_file = \"secret\"\n";
        let config = parse(text, dir.path()).unwrap();
        let BackendConfig::Ldap(ldap) = config.directory.backend else {
            panic!("ldap")
        };
        assert_eq!(ldap.bind_password, "s3cret");
    }

    #[test]
    fn shards_map_ids_to_folders_relative_to_the_file() {
        let text = format!("{LDIF}[shards]\nlocal = \"mail\"\nnfs-1 = \"/srv/mail\"\n");
        let config = parse(&text, Path::new("/etc/mailfold")).unwrap();
        assert_eq!(config.shards["local"], PathBuf::from("/etc/mailfold/mail"));
        assert_eq!(config.shards["nfs-1"], PathBuf::from("/srv/mail"));
        let bad = errors_of(&format!("{LDIF}[shards]\n\"a b\" = \"x\"\nc = 3\n"));
        assert!(bad.iter().any(|e| e.starts_with("shards.a b:")), "{bad:?}");
        assert!(
            bad.iter()
                .any(|e| e.starts_with("shards.c: expected a string")),
            "{bad:?}"
        );
    }

    #[test]
    fn invalid_toml_is_one_error_with_a_reason() {
        let errors = errors_of("[directory\nbackend=");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("invalid toml"), "{errors:?}");
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }
}
