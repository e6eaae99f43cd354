//! `[queue]` of the configuration file: the outbound queue, its routes, SRS and DKIM.
//!
//! Kept apart from `config.rs` so that the queue's options, which are many, read as one
//! piece; it uses the same two-phase walk ([`Section`], [`Errors`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Errors, Section};

/// `[queue]`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The queue folder.
    pub folder: PathBuf,
    /// Queue into `folder` without delivering from it: the queue role of another process,
    /// which owns the folder, delivers.
    pub handover: bool,
    /// The name in EHLO and in bounces.
    pub hostname: String,
    /// Waits between attempts; the last repeats.
    pub retry_intervals: Vec<Duration>,
    /// How long a message may stay queued.
    pub lifetime: Duration,
    /// When the sender is warned of a delay; `None`: never.
    pub delay_warning: Option<Duration>,
    /// How often the folder is rescanned.
    pub scan_interval: Duration,
    /// Most connections per destination domain.
    pub per_destination: usize,
    /// STARTTLS required for every delivery.
    pub require_tls: bool,
    /// CA bundle to check certificates against; `None`: certificates are not checked.
    pub tls_ca_file: Option<PathBuf>,
    /// The port of MX hosts.
    pub mx_port: u16,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// DNS servers; empty: /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// All mail not routed statically goes here.
    pub smarthost: Option<RelayConfig>,
    /// `[queue.routes]`: domain to `host:port`.
    pub routes: BTreeMap<String, RelayConfig>,
    /// `[smtp]`-side loop limit: most `Received:` fields.
    pub max_hops: usize,
    /// `[queue.srs]`.
    pub srs: Option<SrsConfig>,
    /// `[queue.dkim]`.
    pub dkim: mailfold_queue::dkim::DkimConfig,
}

/// A fixed next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// AUTH PLAIN credentials.
    pub auth: Option<(String, String)>,
}

/// `[queue.srs]`.
#[derive(Debug, Clone)]
pub struct SrsConfig {
    /// The domain of rewritten senders.
    pub domain: String,
    /// The HMAC secret.
    pub secret: String,
    /// Oldest SRS address accepted back, in days.
    pub max_age_days: u64,
}

/// Reads `[queue]`; `state_dir` and `hostname` give the defaults.
pub(crate) fn read_queue(
    root: &mut Section,
    errors: &mut Errors,
    state_dir: &Path,
    hostname: &str,
) -> QueueConfig {
    let mut section = root.section("queue", errors);
    let folder = section
        .path("folder", errors)
        .unwrap_or_else(|| state_dir.join("queue"));
    let handover = section.boolean("handover", errors).unwrap_or(false);
    let hostname = section
        .string("hostname", errors)
        .unwrap_or_else(|| hostname.to_string());
    let retry_intervals = read_intervals(&mut section, errors);
    let lifetime = section
        .duration("lifetime", errors)
        .unwrap_or(Duration::from_secs(5 * 86_400));
    let delay_warning = section
        .duration("delay_warning", errors)
        .filter(|d| !d.is_zero());
    let scan_interval = section
        .duration("scan_interval", errors)
        .unwrap_or(Duration::from_secs(1));
    if scan_interval.is_zero() {
        errors.add(&section.key("scan_interval"), "must be more than 0".into());
    }
    let per_destination = section
        .integer("per_destination", 1, 1000, errors)
        .unwrap_or(4) as usize;
    let require_tls = match section.string("tls", errors).as_deref() {
        None | Some("opportunistic") => false,
        Some("require") => true,
        Some(other) => {
            errors.add(
                &section.key("tls"),
                format!("{other:?}: opportunistic or require"),
            );
            false
        }
    };
    let tls_ca_file = section.path("tls_ca_file", errors);
    if let Some(file) = &tls_ca_file
        && !file.is_file()
    {
        errors.add(
            &section.key("tls_ca_file"),
            format!("{} is not a readable file", file.display()),
        );
    }
    let mx_port = section.integer("mx_port", 1, 65_535, errors).unwrap_or(25) as u16;
    let connect_timeout = section
        .duration("connect_timeout", errors)
        .unwrap_or(Duration::from_secs(30));
    let nameservers = section.addresses("nameservers", errors).unwrap_or_default();
    let max_hops = section.integer("max_hops", 1, 1000, errors).unwrap_or(100) as usize;

    let smarthost = section.string("smarthost", errors).and_then(|text| {
        let user = section.string("smarthost_user", errors);
        let password = secret(&mut section, errors, "smarthost_password");
        let auth = match (user, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                errors.add(
                    &section.key("smarthost_user"),
                    "smarthost_user and smarthost_password go together".into(),
                );
                None
            }
        };
        let relay = relay(&text, 587);
        if relay.is_none() {
            errors.add(
                &section.key("smarthost"),
                format!("{text:?} is not host:port"),
            );
        }
        relay.map(|(host, port)| RelayConfig { host, port, auth })
    });

    let mut routes_section = section.section("routes", errors);
    let mut routes = BTreeMap::new();
    let domains: Vec<String> = routes_section.table.keys().cloned().collect();
    for domain in domains {
        let Some(text) = routes_section.string(&domain, errors) else {
            continue;
        };
        match relay(&text, 25) {
            Some((host, port)) => {
                let relay = RelayConfig {
                    host,
                    port,
                    auth: None,
                };
                routes.insert(domain.to_ascii_lowercase(), relay);
            }
            None => errors.add(
                &routes_section.key(&domain),
                format!("{text:?} is not host:port"),
            ),
        }
    }
    routes_section.finish(errors);

    let srs = read_srs(&mut section, errors);
    let dkim = read_dkim(&mut section, errors, state_dir);
    section.finish(errors);
    QueueConfig {
        folder,
        handover,
        hostname,
        retry_intervals,
        lifetime,
        delay_warning,
        scan_interval,
        per_destination,
        require_tls,
        tls_ca_file,
        mx_port,
        connect_timeout,
        nameservers,
        smarthost,
        routes,
        max_hops,
        srs,
        dkim,
    }
}

fn read_intervals(section: &mut Section, errors: &mut Errors) -> Vec<Duration> {
    let default = ["1m", "5m", "15m", "30m", "1h", "2h", "4h"];
    let Some(texts) = section.strings("retry_intervals", errors) else {
        return default
            .iter()
            .filter_map(|t| crate::config::parse_duration(t))
            .collect();
    };
    let mut intervals = Vec::new();
    for text in texts {
        match crate::config::parse_duration(&text) {
            Some(d) if !d.is_zero() => intervals.push(d),
            _ => errors.add(
                &section.key("retry_intervals"),
                format!("{text:?} is not a duration like 30s, 5m, 1h"),
            ),
        }
    }
    if intervals.is_empty() {
        errors.add(
            &section.key("retry_intervals"),
            "needs at least one interval".into(),
        );
    }
    intervals
}

fn read_srs(queue: &mut Section, errors: &mut Errors) -> Option<SrsConfig> {
    let mut section = queue.section("srs", errors);
    if section.table.is_empty() {
        return None;
    }
    let domain = section.string("domain", errors);
    let secret = secret(&mut section, errors, "secret");
    let max_age = section
        .duration("max_age", errors)
        .unwrap_or(Duration::from_secs(21 * 86_400));
    if domain.is_none() {
        errors.add(&section.key("domain"), "required for srs".into());
    }
    match &secret {
        None => errors.add(&section.key("secret"), "required (or secret_file)".into()),
        Some(secret) if secret.len() < 16 => {
            errors.add(&section.key("secret"), "at least 16 characters".into())
        }
        Some(_) => {}
    }
    section.finish(errors);
    Some(SrsConfig {
        domain: domain?.to_ascii_lowercase(),
        secret: secret?,
        max_age_days: (max_age.as_secs() / 86_400).max(1),
    })
}

fn read_dkim(
    queue: &mut Section,
    errors: &mut Errors,
    state_dir: &Path,
) -> mailfold_queue::dkim::DkimConfig {
    let mut section = queue.section("dkim", errors);
    let selector = section
        .string("selector", errors)
        .unwrap_or_else(|| "mailfold".to_string());
    let key_folder = section
        .path("key_folder", errors)
        .unwrap_or_else(|| state_dir.join("dkim"));
    let mut keys_section = section.section("keys", errors);
    let mut keys = BTreeMap::new();
    let domains: Vec<String> = keys_section.table.keys().cloned().collect();
    for domain in domains {
        if let Some(path) = keys_section.path(&domain, errors) {
            if !path.is_file() {
                errors.add(
                    &keys_section.key(&domain),
                    format!("{} is not a readable file", path.display()),
                );
            }
            keys.insert(domain.to_ascii_lowercase(), path);
        }
    }
    keys_section.finish(errors);
    section.finish(errors);
    mailfold_queue::dkim::DkimConfig {
        selector,
        keys,
        key_folder: Some(key_folder),
    }
}

/// `name` or `name_file` (whose trailing newline is not part of the secret).
fn secret(section: &mut Section, errors: &mut Errors, name: &str) -> Option<String> {
    let value = section.string(name, errors);
    let file_key = format!("{name}_file");
    let file = section.path(&file_key, errors);
    match (value, file) {
        (Some(_), Some(_)) => {
            errors.add(
                &section.key(&file_key),
                format!("set {name} or this, not both"),
            );
            None
        }
        (Some(value), None) => Some(value),
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => {
                errors.add(
                    &section.key(&file_key),
                    format!("reading {}: {e}", file.display()),
                );
                None
            }
        },
        (None, None) => None,
    }
}

/// `host:port`, or `host` with `default_port`; `[v6]:port` for IPv6.
fn relay(text: &str, default_port: u16) -> Option<(String, u16)> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some((address.ip().to_string(), address.port()));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (text, default_port),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use std::path::Path;
    use std::time::Duration;

    const LDIF: &str = "[directory]\nbackend = \"ldif\"\nbase_dn = \"dc=example,dc=test\"\n\
                        [directory.ldif]\npath = \"dir.ldif\"\n";

    #[test]
    fn the_queue_has_defaults_for_every_option() {
        let config = parse(LDIF, Path::new("/etc/mailfold")).unwrap();
        let queue = &config.queue;
        assert_eq!(queue.folder, Path::new("/etc/mailfold/var/queue"));
        assert_eq!(queue.lifetime, Duration::from_secs(5 * 86_400));
        assert_eq!(queue.retry_intervals.len(), 7);
        assert_eq!(queue.delay_warning, None);
        assert_eq!(
            (queue.mx_port, queue.per_destination, queue.max_hops),
            (25, 4, 100)
        );
        assert!(queue.srs.is_none() && !queue.require_tls && queue.smarthost.is_none());
    }

    #[test]
    fn routes_srs_and_the_smarthost_are_checked_with_their_keys() {
        let text = format!(
            "{LDIF}[queue]\nlifetime = \"2d\"\ntls = \"sometimes\"\nsmarthost = \"relay.example:x\"\n\
             [queue.routes]\n\"Example.org\" = \"127.0.0.1:2526\"\n\"bad.test\" = \"a b\"\n\
             [queue.srs]\ndomain = \"fwd.test\"\nsecret = \"short\"\n"
        );
        let errors: Vec<String> = parse(&text, Path::new("/etc/mailfold"))
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        for expected in [
            "queue.tls: \"sometimes\"",
            "queue.smarthost: \"relay.example:x\" is not host:port",
            "queue.routes.bad.test: \"a b\" is not host:port",
            "queue.srs.secret: at least 16 characters",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected} not in {errors:#?}"
            );
        }
        let good = format!("{LDIF}[queue]\n[queue.routes]\n\"Example.org\" = \"127.0.0.1:2526\"\n");
        let config = parse(&good, Path::new("/etc/mailfold")).unwrap();
        assert_eq!(config.queue.routes["example.org"].port, 2526);
    }
}
