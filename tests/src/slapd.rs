//! A private OpenLDAP server (slapd) for one test.
//!
//! [`Slapd::start`] builds a cn=config from `tests/data/slapd-config.ldif.in` in a fresh
//! temporary directory, loads the Mailfold schema and the test's LDIF files with slapadd, and runs
//! slapd in the foreground on free loopback ports until the [`Slapd`] is dropped. Every test gets
//! its own server, so tests run in parallel and never see each other's changes.
//!
//! The server is configured as docs/directory.md tells operators to configure theirs: the same
//! schema, indexes, slapo-unique on `mailfoldAddress`, password modules and ACLs. Nothing is
//! simulated; a test that passes here has talked to a real slapd.
//!
//! Only std and `tempfile` are used. The OpenLDAP and OpenSSL programs are called by full path
//! (`/usr/sbin` is not on every PATH), and every client runs with `LDAPCONF=/dev/null` and
//! `LDAPRC=/dev/null` so the machine's `ldap.conf` cannot change what a test sees.

use crate::repo_root;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const LDAPWHOAMI: &str = "/usr/bin/ldapwhoami";
const LDAPMODIFY: &str = "/usr/bin/ldapmodify";
const LDAPSEARCH: &str = "/usr/bin/ldapsearch";
const OPENSSL: &str = "/usr/bin/openssl";
/// The `openssl req` arguments for a fresh P-256 key.
const NEW_EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// How long slapd may take from spawn to the first successful bind (~1 s on a loaded machine).
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two readiness probes.
const READY_POLL: Duration = Duration::from_millis(10);
/// Port races are rare; a few fresh attempts are plenty.
const PORT_ATTEMPTS: usize = 4;
/// Pause before trying a port again at restart.
const PORT_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// slapd's log line when a listener's port is taken.
const PORT_TAKEN: &str = "errno=98";
/// Lines of the slapd log quoted in a start-up error.
const LOG_TAIL_LINES: usize = 15;

/// The suffix of `schema/sample.ldif`.
pub const SAMPLE_SUFFIX: &str = "dc=example,dc=test";
/// The read-only service account of the sample directory.
pub const SAMPLE_READER_DN: &str = "cn=reader,ou=system,dc=example,dc=test";
/// The password of [`SAMPLE_READER_DN`] (stored as `{SSHA}`).
pub const SAMPLE_READER_PASSWORD: &str = "reader-secret";
/// The read-write service account of the sample directory.
pub const SAMPLE_API_DN: &str = "cn=api,ou=system,dc=example,dc=test";
/// The password of [`SAMPLE_API_DN`] (stored as `{SSHA}`).
pub const SAMPLE_API_PASSWORD: &str = "api-secret";

/// Why the harness could not do what a test asked; the message names the step that failed and,
/// for start-up failures, quotes the end of the slapd log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessError {
    message: String,
}

impl HarnessError {
    fn new(doing: &str, cause: impl fmt::Display) -> HarnessError {
        HarnessError {
            message: format!("{doing}: {cause}"),
        }
    }

    /// The whole message, as `Display` prints it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HarnessError {}

/// What the server holds and how it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlapdOptions {
    /// The database suffix in normalised form, e.g. `dc=example,dc=test`: lowercase attribute
    /// types and no spaces, because the ACLs match DNs with regular expressions.
    pub suffix: String,
    /// LDIF files loaded with `slapadd -q -n1` before start, in order.
    pub data: Vec<PathBuf>,
    /// Also listen on `ldaps://` and offer StartTLS, with a certificate from a fresh CA.
    pub tls: bool,
}

impl SlapdOptions {
    /// The sample directory of `schema/sample.ldif`, without TLS.
    pub fn sample() -> SlapdOptions {
        SlapdOptions {
            suffix: SAMPLE_SUFFIX.to_string(),
            data: vec![sample_ldif()],
            tls: false,
        }
    }
}

/// A running private slapd; killed when dropped, together with its temporary directory.
#[derive(Debug)]
pub struct Slapd {
    dir: TempDir,
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    suffix: String,
    root_password: String,
    ca_file: Option<PathBuf>,
}

/// The certificate files of a TLS-enabled server.
struct TlsFiles {
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

/// Why one attempt to run slapd failed: a port race is retried, anything else is reported.
enum LaunchFailure {
    PortTaken,
    Failed(HarnessError),
}

/// `schema/sample.ldif` of this repository.
pub fn sample_ldif() -> PathBuf {
    repo_root().join("schema").join("sample.ldif")
}

impl Slapd {
    /// Configures, loads and starts a server, and returns once the root DN can bind.
    pub fn start(options: SlapdOptions) -> Result<Slapd, HarnessError> {
        check_suffix(&options.suffix)?;
        let dir = tempfile::Builder::new()
            .prefix("mailfold-slapd-")
            .tempdir()
            .map_err(|err| HarnessError::new("creating the slapd directory", err))?;
        let mut slapd = Slapd {
            dir,
            child: None,
            port: 0,
            tls_port: None,
            suffix: options.suffix.clone(),
            root_password: fresh_password(),
            ca_file: None,
        };

        let tls = match options.tls {
            true => Some(make_certificates(&slapd.dir.path().join("tls"))?),
            false => None,
        };
        slapd.ca_file = tls.as_ref().map(|files| files.ca.clone());
        slapd.load_config(tls.as_ref())?;
        for file in &options.data {
            slapd.load_data(file)?;
        }

        // A port picked free can be taken before slapd binds it: pick again and retry.
        for _ in 0..PORT_ATTEMPTS {
            let ports = free_ports(if options.tls { 2 } else { 1 })?;
            // Indexing is safe: free_ports returns exactly the one or two ports asked for.
            slapd.port = ports[0];
            slapd.tls_port = ports.get(1).copied();
            match slapd.launch() {
                Ok(()) => return Ok(slapd),
                Err(LaunchFailure::PortTaken) => continue,
                Err(LaunchFailure::Failed(err)) => return Err(err),
            }
        }
        Err(HarnessError::new(
            "starting slapd",
            "every free port picked was taken at bind time",
        ))
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT` when the server was started with TLS.
    pub fn ldaps_url(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("ldaps://127.0.0.1:{port}"))
    }

    /// The PEM file of the CA that signed the server certificate, when TLS is on.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// `cn=admin,<suffix>`: the root DN, which no ACL restricts.
    pub fn root_dn(&self) -> String {
        format!("cn=admin,{}", self.suffix)
    }

    /// The root DN's password, fresh for each server.
    pub fn root_password(&self) -> &str {
        &self.root_password
    }

    /// Kills slapd (SIGKILL) and waits for it; the database stays for [`Slapd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts slapd again on the same ports with the same database.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();

        // The old listeners are gone with the process, but another program may hold the port
        // for a moment: wait a little rather than give up at once.
        for _ in 0..PORT_ATTEMPTS {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(LaunchFailure::PortTaken) => thread::sleep(PORT_RETRY_PAUSE),
                Err(LaunchFailure::Failed(err)) => return Err(err),
            }
        }
        Err(HarnessError::new(
            "restarting slapd",
            format!("port {} stays taken", self.port),
        ))
    }

    /// Applies LDIF change records (RFC 2849 `changetype: add` and friends) as the root DN.
    pub fn ldap_modify(&self, ldif: &str) -> Result<(), HarnessError> {
        self.ldap_modify_as(&self.root_dn(), &self.root_password, ldif)
    }

    /// Applies LDIF change records bound as `dn`, so ACLs apply; an LDAP error is an `Err`
    /// whose message quotes ldapmodify (`Insufficient access (50)`).
    pub fn ldap_modify_as(&self, dn: &str, password: &str, ldif: &str) -> Result<(), HarnessError> {
        let mut command = self.bound_tool(LDAPMODIFY, dn, password);
        let doing = format!("modifying the directory as {dn}");
        run(&mut command, Some(ldif), &doing)?;
        Ok(())
    }

    /// Searches the subtree at `base` bound as `dn` and returns the entries as unwrapped LDIF
    /// (`ldapsearch -LLL -o ldif-wrap=no`); an empty `attributes` asks for all user attributes.
    pub fn ldap_search_as(
        &self,
        dn: &str,
        password: &str,
        base: &str,
        filter: &str,
        attributes: &[&str],
    ) -> Result<String, HarnessError> {
        let mut command = self.bound_tool(LDAPSEARCH, dn, password);
        command.args(["-LLL", "-o", "ldif-wrap=no", "-b", base, filter]);
        command.args(attributes);
        let output = run(&mut command, None, &format!("searching {base} as {dn}"))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A command for an OpenLDAP client (`/usr/bin/ldapsearch`, ...) that ignores the machine's
    /// ldap.conf and, with TLS on, trusts this server's CA.
    pub fn ldap_tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("LDAPCONF", "/dev/null")
            .env("LDAPRC", "/dev/null");
        if let Some(ca) = &self.ca_file {
            command.env("LDAPTLS_CACERT", ca);
        }
        command
    }

    /// A client command with a simple bind (RFC 4513 §5.1.3) as `dn` to the plain-LDAP url.
    fn bound_tool(&self, program: &str, dn: &str, password: &str) -> Command {
        let mut command = self.ldap_tool(program);
        command.args(["-x", "-H", &self.url(), "-D", dn, "-w", password]);
        command
    }

    /// Renders the config template and loads it into `slapd.d` with `slapadd -n0`.
    fn load_config(&self, tls: Option<&TlsFiles>) -> Result<(), HarnessError> {
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("slapd-config.ldif.in");
        let template = fs::read_to_string(&template_path).map_err(|err| {
            HarnessError::new(&format!("reading {}", template_path.display()), err)
        })?;
        let schema = repo_root().join("schema").join("mailfold.ldif");
        let config = render_config(
            &template,
            self.dir.path(),
            &self.suffix,
            &self.root_password,
            &schema,
            tls,
        )?;

        let config_path = self.dir.path().join("config.ldif");
        fs::write(&config_path, config)
            .map_err(|err| HarnessError::new("writing config.ldif", err))?;
        for sub in ["slapd.d", "data"] {
            fs::create_dir(self.dir.path().join(sub))
                .map_err(|err| HarnessError::new(&format!("creating {sub}"), err))?;
        }
        let mut command = Command::new(SLAPADD);
        command
            .arg("-n0")
            .arg("-F")
            .arg(self.config_dir())
            .arg("-l")
            .arg(&config_path);
        run(&mut command, None, "loading the slapd configuration")?;
        Ok(())
    }

    /// Loads one LDIF file into the database with `slapadd -q -n1` (schema checks stay on).
    fn load_data(&self, file: &Path) -> Result<(), HarnessError> {
        let mut command = Command::new(SLAPADD);
        command
            .args(["-q", "-n1", "-F"])
            .arg(self.config_dir())
            .arg("-l")
            .arg(file);
        run(&mut command, None, &format!("loading {}", file.display()))?;
        Ok(())
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("slapd.d")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// Spawns slapd on the current ports and waits for a root bind to succeed.
    fn launch(&mut self) -> Result<(), LaunchFailure> {
        let failed =
            |doing: &str, err: std::io::Error| LaunchFailure::Failed(HarnessError::new(doing, err));

        // The log is shared by every run of this server; remember where this run starts.
        let log_path = self.log_path();
        let log_start = fs::metadata(&log_path).map(|meta| meta.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| failed("opening slapd.log", err))?;

        let mut listeners = format!("{}/", self.url());
        if let Some(ldaps) = self.ldaps_url() {
            listeners.push_str(&format!(" {ldaps}/"));
        }
        let child = Command::new(SLAPD)
            .args(["-d", "none", "-F"])
            .arg(self.config_dir())
            .args(["-h", &listeners])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|err| failed("spawning slapd", err))?;
        self.child = Some(child);

        let cause = match self.wait_until_ready() {
            Ok(()) => return Ok(()),
            Err(cause) => cause,
        };
        self.stop();
        let this_run = read_from(&log_path, log_start);
        if this_run.contains(PORT_TAKEN) {
            return Err(LaunchFailure::PortTaken);
        }
        let tail = tail_lines(&this_run, LOG_TAIL_LINES);
        Err(LaunchFailure::Failed(HarnessError::new(
            "starting slapd",
            format!("{cause}; slapd log:\n{tail}"),
        )))
    }

    /// Polls a root bind until it succeeds, slapd exits, or the deadline passes.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        // A bind proves the database is open, which an accepting port does not.
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let mut probe = self.bound_tool(LDAPWHOAMI, &self.root_dn(), &self.root_password);
            probe
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut probe = probe
                .spawn()
                .map_err(|err| format!("running {LDAPWHOAMI}: {err}"))?;

            // Whatever else holds the port may accept and never answer, so the probe is
            // abandoned as soon as slapd is known to have stopped.
            let bound = loop {
                if let Some(status) = self.exit_status()? {
                    stop_child(&mut probe);
                    return Err(format!("slapd stopped ({status})"));
                }
                if let Ok(Some(status)) = probe.try_wait() {
                    break status.success();
                }
                if Instant::now() >= deadline {
                    stop_child(&mut probe);
                    return Err(format!("no root bind within {READY_DEADLINE:?}"));
                }
                thread::sleep(READY_POLL);
            };
            if bound {
                return Ok(());
            }
            thread::sleep(READY_POLL);
        }
    }

    /// How slapd ended, or `None` while it runs.
    fn exit_status(&mut self) -> Result<Option<ExitStatus>, String> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .map_err(|err| format!("waiting for slapd: {err}")),
            None => Err("slapd is not running".to_string()),
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGKILLs `child` and reaps it.
fn stop_child(child: &mut Child) {
    // An error means it has already exited, which is what stopping wants anyway.
    let _ = child.kill();
    let _ = child.wait();
}

/// Rejects a suffix that could break the LDIF template or the ACL regular expressions.
fn check_suffix(suffix: &str) -> Result<(), HarnessError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '=' | ',' | '-' | '.');
    if suffix.is_empty() || !suffix.contains('=') || !suffix.chars().all(allowed) {
        return Err(HarnessError::new(
            "checking the suffix",
            format!("{suffix:?} is not a normalised DN of letters, digits, '=', ',', '-', '.'"),
        ));
    }
    Ok(())
}

/// Fills the placeholders of the config template; comment lines are dropped.
fn render_config(
    template: &str,
    dir: &Path,
    suffix: &str,
    root_password: &str,
    schema: &Path,
    tls: Option<&TlsFiles>,
) -> Result<String, HarnessError> {
    let tls_lines = match tls {
        Some(files) => format!(
            "olcTLSCACertificateFile: {}\nolcTLSCertificateFile: {}\nolcTLSCertificateKeyFile: {}",
            files.ca.display(),
            files.certificate.display(),
            files.key.display(),
        ),
        None => String::new(),
    };

    let mut rendered = String::new();
    for line in template.lines().filter(|line| !line.starts_with('#')) {
        // An empty @TLS@ must vanish with its line: a blank line would end the entry.
        if line == "@TLS@" {
            if !tls_lines.is_empty() {
                rendered.push_str(&tls_lines);
                rendered.push('\n');
            }
            continue;
        }
        let line = line
            .replace("@DIR@", &dir.display().to_string())
            .replace("@SUFFIX@", suffix)
            .replace("@ROOT_PASSWORD@", root_password)
            .replace("@MAILFOLD_SCHEMA@", &schema.display().to_string());
        rendered.push_str(&line);
        rendered.push('\n');
    }

    if let Some(line) = rendered.lines().find(|line| has_placeholder(line)) {
        return Err(HarnessError::new(
            "rendering the slapd configuration",
            format!("placeholder left in {line:?}"),
        ));
    }
    Ok(rendered.trim_start().to_string())
}

/// Whether `line` still holds an `@NAME@` placeholder (uppercase letters and `_`).
fn has_placeholder(line: &str) -> bool {
    // Only a part with an `@` on both sides can be a name.
    let parts: Vec<&str> = line.split('@').collect();
    let between = &parts[1..parts.len().saturating_sub(1).max(1)];
    between
        .iter()
        .any(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
}

/// Loopback ports free at the time of asking, all different.
fn free_ports(count: usize) -> Result<Vec<u16>, HarnessError> {
    // Hold every listener until all are bound so the kernel cannot hand out one port twice.
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|err| HarnessError::new("finding a free port", err))?;
        listeners.push(listener);
    }
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.port()))
        .collect::<Result<Vec<u16>, _>>()
        .map_err(|err| HarnessError::new("finding a free port", err))
}

/// A password for the root DN that no other test instance shares.
fn fresh_password() -> String {
    // RandomState keys come from the OS once per thread and change with every instance.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut words = [0u64; 2];
    for word in &mut words {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(now.as_nanos());
        hasher.write_u32(std::process::id());
        *word = hasher.finish();
    }
    format!("root-{:016x}{:016x}", words[0], words[1])
}

/// Makes a CA and a server certificate signed by it in `dir`, with OpenSSL.
fn make_certificates(dir: &Path) -> Result<TlsFiles, HarnessError> {
    fs::create_dir_all(dir).map_err(|err| HarnessError::new("creating the tls directory", err))?;
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        certificate: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let ca_key = dir.join("ca.key");
    let request = dir.join("server.csr");
    let extensions = dir.join("server.ext");

    // RFC 4513 §3.1.3: libldap checks the name it dialled against the SAN, and it also compares
    // localhost with the host name, so all three go in.
    let mut names = vec!["IP:127.0.0.1".to_string(), "DNS:localhost".to_string()];
    if let Some(host) = host_name() {
        names.push(format!("DNS:{host}"));
    }
    let extension_text = format!(
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = {}\n",
        names.join(", ")
    );
    fs::write(&extensions, extension_text)
        .map_err(|err| HarnessError::new("writing the certificate extensions", err))?;

    // P-256 keys are made in milliseconds, where RSA would slow every TLS test down.
    let mut ca = Command::new(OPENSSL);
    ca.args(["req", "-x509", "-nodes", "-days", "2"])
        .args(NEW_EC_KEY);
    ca.args(["-subj", "/CN=Mailfold test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    ca.arg("-keyout").arg(&ca_key).arg("-out").arg(&files.ca);
    run(&mut ca, None, "making the test CA")?;

    let mut csr = Command::new(OPENSSL);
    csr.args(["req", "-new", "-nodes", "-subj", "/CN=localhost"])
        .args(NEW_EC_KEY);
    csr.arg("-keyout").arg(&files.key).arg("-out").arg(&request);
    run(&mut csr, None, "making the server key")?;

    let mut sign = Command::new(OPENSSL);
    sign.args(["x509", "-req", "-days", "2", "-set_serial", "2", "-in"])
        .arg(&request)
        .arg("-CA")
        .arg(&files.ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&extensions)
        .arg("-out")
        .arg(&files.certificate);
    run(&mut sign, None, "signing the server certificate")?;
    Ok(files)
}

/// The machine's host name, when it is a plain DNS name.
fn host_name() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (plain && !name.is_empty() && name != "localhost").then(|| name.to_string())
}

/// Runs `command` to completion, feeding it `stdin`; a non-zero exit is an error quoting stderr.
fn run(command: &mut Command, stdin: Option<&str>, doing: &str) -> Result<Output, HarnessError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(stdin.map_or_else(Stdio::null, |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| HarnessError::new(doing, format!("running {program}: {err}")))?;

    // Feed stdin from a second thread so a chatty child cannot block on a full stdout pipe.
    let output = thread::scope(|scope| {
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            scope.spawn(move || {
                // A child that exits early closes the pipe; its exit status tells why.
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        child.wait_with_output()
    })
    .map_err(|err| HarnessError::new(doing, format!("waiting for {program}: {err}")))?;

    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = format!("{}\n{}", stderr.trim(), stdout.trim());
    let cause = format!("{program} failed ({}): {}", output.status, said.trim());
    Err(HarnessError::new(doing, cause))
}

/// The text of `path` from byte `start` on; empty when unreadable.
fn read_from(path: &Path, start: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        // A partial read still gives a useful tail; the log is only quoted in errors.
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The last `count` lines of `text`.
fn tail_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    const TENANT_ACME: &str = "mailfoldTenantId=acme,o=tenants,dc=example,dc=test";
    const ALICE_DN: &str = "uid=u-0001,ou=mailboxes,mailfoldDomainName=acme.test,ou=domains,\
                            mailfoldTenantId=acme,o=tenants,dc=example,dc=test";
    const BOB_DN: &str = "uid=u-0002,ou=mailboxes,mailfoldDomainName=acme.test,ou=domains,\
                          mailfoldTenantId=acme,o=tenants,dc=example,dc=test";
    const JANE_DN: &str = "uid=jane,ou=admins,mailfoldTenantId=acme,o=tenants,dc=example,dc=test";
    const ACME_ALIASES: &str = "ou=aliases,mailfoldDomainName=acme.test,ou=domains,\
                                mailfoldTenantId=acme,o=tenants,dc=example,dc=test";
    const MAX_DN: &str = "uid=max,ou=admins,mailfoldTenantId=globex,o=tenants,dc=example,dc=test";
    const CAROL_DN: &str = "uid=u-0101,ou=mailboxes,mailfoldDomainName=globex.test,ou=domains,\
                            mailfoldTenantId=globex,o=tenants,dc=example,dc=test";

    /// A second tenant beside the sample's acme: max (`{SSHA256}` max-secret) administers it
    /// and carol (`{ARGON2}` carol-secret) has its one mailbox. Long lines are folded (RFC 2849).
    const GLOBEX: &str = "\
dn: mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: mailfoldTenant
mailfoldTenantId: globex
mailfoldMailShard: shard1

dn: ou=admins,mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: organizationalUnit
ou: admins

dn: uid=max,ou=admins,mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: account
objectClass: simpleSecurityObject
objectClass: mailfoldAdmin
uid: max
userPassword: {SSHA256}A/LIL1H+OIF1NFtb6rR2tnICIY0fkKjLiXd2c2Ta+ei1A9KRrRGHFQ==

dn: ou=domains,mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: organizationalUnit
ou: domains

dn: mailfoldDomainName=globex.test,ou=domains,mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: mailfoldDomain
mailfoldDomainName: globex.test

dn: ou=mailboxes,mailfoldDomainName=globex.test,ou=domains,
 mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: organizationalUnit
ou: mailboxes

dn: uid=u-0101,ou=mailboxes,mailfoldDomainName=globex.test,ou=domains,
 mailfoldTenantId=globex,o=tenants,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: mailfoldMailbox
uid: u-0101
cn: Carol
sn: Carol
mail: carol@globex.test
mailfoldAddress: carol@globex.test
mailfoldMailShard: shard1
mailfoldMailStore: e9/24/u-0101
userPassword: {ARGON2}$argon2id$v=19$m=19456,t=2,p=1$YZIUlqSlKTargffoEwUYDg$
 NW4YkrHXmhUB5p/fYS5PeENQXTySRtYjRMHzwEsy5u4
";

    /// The sample plus globex, loaded from a file that lives as long as the returned guard.
    fn two_tenants() -> (Slapd, TempDir) {
        let fixtures = tempfile::tempdir().expect("fixture dir");
        let globex = fixtures.path().join("globex.ldif");
        fs::write(&globex, GLOBEX).expect("write globex.ldif");
        let mut options = SlapdOptions::sample();
        options.data.push(globex);
        (
            Slapd::start(options).expect("start slapd with two tenants"),
            fixtures,
        )
    }

    fn whoami(slapd: &Slapd, url: &str, dn: &str, password: &str, extra: &[&str]) -> Output {
        let mut command = slapd.ldap_tool(LDAPWHOAMI);
        command
            .args(["-x", "-H", url, "-D", dn, "-w", password])
            .args(extra);
        command
            .stdin(Stdio::null())
            .output()
            .expect("run ldapwhoami")
    }

    fn rename_cn(dn: &str, cn: &str) -> String {
        format!("dn: {dn}\nchangetype: modify\nreplace: cn\ncn: {cn}\n")
    }

    fn alias(local: &str, addresses: &[&str]) -> String {
        let mut ldif = format!(
            "dn: mail={local}@acme.test,{ACME_ALIASES}\nchangetype: add\n\
             objectClass: mailfoldAlias\nmail: {local}@acme.test\n\
             mailfoldAliasTarget: bob@acme.test\n"
        );
        for address in addresses {
            ldif.push_str(&format!("mailfoldAddress: {address}\n"));
        }
        ldif
    }

    #[test]
    fn template_without_tls_renders_with_no_placeholder_and_no_blank_line_in_cn_config() {
        let template =
            "# @TLS@ in a comment\ndn: cn=config\nolcPidFile: @DIR@/pid\n@TLS@\n\ndn: x\n";
        let dir = Path::new("/tmp/t");
        let rendered =
            render_config(template, dir, SAMPLE_SUFFIX, "pw", dir, None).expect("render");
        assert_eq!(rendered, "dn: cn=config\nolcPidFile: /tmp/t/pid\n\ndn: x\n");

        let unknown = render_config("olcX: @NOPE@\n", dir, SAMPLE_SUFFIX, "pw", dir, None);
        assert!(
            unknown
                .expect_err("unknown placeholder")
                .to_string()
                .contains("@NOPE@")
        );
        assert!(!has_placeholder("mail: alice@acme.test"));
    }

    #[test]
    fn sample_directory_starts_and_the_root_dn_binds() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");

        let bound = whoami(
            &slapd,
            &slapd.url(),
            &slapd.root_dn(),
            slapd.root_password(),
            &[],
        );
        assert!(
            bound.status.success(),
            "{}",
            String::from_utf8_lossy(&bound.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&bound.stdout).trim(),
            "dn:cn=admin,dc=example,dc=test"
        );

        let found = slapd
            .ldap_search_as(
                &slapd.root_dn(),
                slapd.root_password(),
                SAMPLE_SUFFIX,
                "(mailfoldAddress=A.Smith@ACME.test)",
                &["uid"],
            )
            .expect("search as root");
        assert!(found.contains("uid: u-0001"), "{found}");
    }

    #[test]
    fn every_password_scheme_of_the_fixtures_verifies_and_a_wrong_password_does_not() {
        let (slapd, _fixtures) = two_tenants();
        let accounts = [
            (SAMPLE_READER_DN, SAMPLE_READER_PASSWORD), // {SSHA}
            (SAMPLE_API_DN, SAMPLE_API_PASSWORD),       // {SSHA}
            (JANE_DN, "jane-secret"),                   // {SSHA512}
            (MAX_DN, "max-secret"),                     // {SSHA256}
            (ALICE_DN, "alice-secret"),                 // {ARGON2} argon2id
            (CAROL_DN, "carol-secret"),                 // {ARGON2} argon2id
            (BOB_DN, "bob-secret"),                     // {CRYPT} $6$
        ];
        for (dn, password) in accounts {
            let bound = whoami(&slapd, &slapd.url(), dn, password, &[]);
            assert!(
                bound.status.success(),
                "{dn}: {}",
                String::from_utf8_lossy(&bound.stderr)
            );
        }

        // RFC 4511 §A.2: a wrong password is invalidCredentials (49).
        let refused = whoami(&slapd, &slapd.url(), ALICE_DN, "bob-secret", &[]);
        assert_eq!(refused.status.code(), Some(49));
    }

    #[test]
    fn anonymous_bind_is_refused() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        let mut command = slapd.ldap_tool(LDAPWHOAMI);
        let anonymous = command
            .args(["-x", "-H", &slapd.url()])
            .output()
            .expect("run ldapwhoami");
        // RFC 4511 §A.2: inappropriateAuthentication (48).
        assert_eq!(anonymous.status.code(), Some(48));
    }

    #[test]
    fn entry_violating_the_schema_makes_start_fail_with_a_readable_error() {
        let fixtures = tempfile::tempdir().expect("fixture dir");
        let broken = fixtures.path().join("broken.ldif");
        let mailbox_without_store = "\
dn: uid=u-0003,ou=mailboxes,mailfoldDomainName=acme.test,ou=domains,
 mailfoldTenantId=acme,o=tenants,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: mailfoldMailbox
uid: u-0003
cn: Dave
sn: Dave
mail: dave@acme.test
mailfoldAddress: dave@acme.test
mailfoldMailShard: shard1
";
        fs::write(&broken, mailbox_without_store).expect("write broken.ldif");
        let mut options = SlapdOptions::sample();
        options.data.push(broken.clone());

        let err =
            Slapd::start(options).expect_err("a mailbox without mailfoldMailStore must not load");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("loading {}", broken.display())),
            "{message}"
        );
        assert!(message.contains("mailfoldMailStore"), "{message}");
    }

    #[test]
    fn stopped_server_refuses_connections_and_restart_serves_the_same_data() {
        let mut slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        slapd
            .ldap_modify(&alias("sales", &["sales@acme.test"]))
            .expect("add an alias");
        let url = slapd.url();

        slapd.stop();
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, slapd.port)).is_err());

        slapd.restart().expect("restart slapd");
        assert_eq!(slapd.url(), url);
        let found = slapd
            .ldap_search_as(
                SAMPLE_READER_DN,
                SAMPLE_READER_PASSWORD,
                SAMPLE_SUFFIX,
                "(mailfoldAddress=sales@acme.test)",
                &["mailfoldAliasTarget"],
            )
            .expect("search after restart");
        assert!(
            found.contains("mailfoldAliasTarget: bob@acme.test"),
            "{found}"
        );
    }

    #[test]
    fn restart_waits_for_a_taken_port_and_then_says_so() {
        let mut slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        slapd.stop();

        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, slapd.port)).expect("take the port");
        let err = slapd.restart().expect_err("the port is taken");
        assert_eq!(
            err.to_string(),
            format!("restarting slapd: port {} stays taken", slapd.port)
        );

        drop(squatter);
        slapd.restart().expect("restart once the port is free");
    }

    #[test]
    fn slapd_that_cannot_start_is_reported_with_its_log() {
        let mut options = SlapdOptions::sample();
        options.tls = true;
        let mut slapd = Slapd::start(options).expect("start slapd with tls");
        slapd.stop();

        // slapd reads its key only when it starts, so a spoilt key shows up at restart.
        fs::write(slapd.dir.path().join("tls/server.key"), "not a key\n").expect("spoil the key");
        let err = slapd
            .restart()
            .expect_err("slapd cannot start without its key");
        let message = err.to_string();
        assert!(
            message.starts_with("starting slapd: slapd stopped"),
            "{message}"
        );
        assert!(message.contains("slapd log:\n"), "{message}");
        assert!(message.contains("TLS"), "{message}");
    }

    #[test]
    fn tls_server_answers_ldaps_and_starttls_only_with_its_ca() {
        let mut options = SlapdOptions::sample();
        options.tls = true;
        let slapd = Slapd::start(options).expect("start slapd with tls");
        let ldaps = slapd.ldaps_url().expect("an ldaps url");
        let ca = slapd.ca_file().expect("a ca file");
        assert!(
            fs::read_to_string(ca)
                .expect("read ca")
                .contains("BEGIN CERTIFICATE")
        );

        let over_ldaps = whoami(
            &slapd,
            &ldaps,
            SAMPLE_READER_DN,
            SAMPLE_READER_PASSWORD,
            &[],
        );
        assert!(
            over_ldaps.status.success(),
            "{}",
            String::from_utf8_lossy(&over_ldaps.stderr)
        );
        // RFC 4513 §3: -ZZ insists on StartTLS before the bind.
        let start_tls = whoami(
            &slapd,
            &slapd.url(),
            SAMPLE_READER_DN,
            SAMPLE_READER_PASSWORD,
            &["-ZZ"],
        );
        assert!(
            start_tls.status.success(),
            "{}",
            String::from_utf8_lossy(&start_tls.stderr)
        );

        // Without the CA the certificate must not verify: the test above proves the CA matters.
        let mut untrusting = slapd.ldap_tool(LDAPWHOAMI);
        untrusting.env_remove("LDAPTLS_CACERT");
        untrusting.args([
            "-x",
            "-H",
            &ldaps,
            "-D",
            SAMPLE_READER_DN,
            "-w",
            SAMPLE_READER_PASSWORD,
        ]);
        let refused = untrusting.output().expect("run ldapwhoami");
        assert!(!refused.status.success());
    }

    #[test]
    fn unique_overlay_rejects_a_second_entry_with_an_existing_address() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        slapd
            .ldap_modify(&alias("sales", &["sales@acme.test"]))
            .expect("a fresh address is accepted");

        // alice@acme.test already belongs to a mailbox; case does not make it a new address.
        let err = slapd
            .ldap_modify(&alias("shop", &["shop@acme.test", "ALICE@acme.test"]))
            .expect_err("a taken address must be refused");
        assert!(
            err.to_string().contains("Constraint violation (19)"),
            "{err}"
        );
    }

    #[test]
    fn reader_reads_a_mailbox_but_not_its_password() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        let as_root = slapd
            .ldap_search_as(
                &slapd.root_dn(),
                slapd.root_password(),
                ALICE_DN,
                "(objectClass=*)",
                &[],
            )
            .expect("search as root");
        assert!(
            as_root.contains("userPassword:"),
            "the fixture must have a password: {as_root}"
        );

        let as_reader = slapd
            .ldap_search_as(
                SAMPLE_READER_DN,
                SAMPLE_READER_PASSWORD,
                ALICE_DN,
                "(objectClass=*)",
                &["mail", "userPassword"],
            )
            .expect("search as reader");
        assert!(as_reader.contains("mail: alice@acme.test"), "{as_reader}");
        assert!(!as_reader.contains("userPassword"), "{as_reader}");
    }

    #[test]
    fn tenant_admin_writes_its_own_aliases_and_nothing_else() {
        let (slapd, _fixtures) = two_tenants();
        slapd
            .ldap_modify_as(
                JANE_DN,
                "jane-secret",
                &alias("helpdesk", &["helpdesk@acme.test"]),
            )
            .expect("jane may add an alias in acme");
        let acme_alias = format!("mail=info@acme.test,{ACME_ALIASES}");
        slapd
            .ldap_modify_as(JANE_DN, "jane-secret", &rename_cn(&acme_alias, "Info desk"))
            .expect("jane may change acme's alias");

        // Mailboxes are the platform's, even in jane's own tenant; globex is out of reach.
        for (target, why) in [
            (ALICE_DN, "jane must not change acme's mailbox"),
            (CAROL_DN, "jane must not change globex's mailbox"),
        ] {
            let err = slapd
                .ldap_modify_as(JANE_DN, "jane-secret", &rename_cn(target, "Mallory"))
                .expect_err(why);
            assert!(
                err.to_string().contains("Insufficient access (50)"),
                "{err}"
            );
        }

        let carol = slapd
            .ldap_search_as(MAX_DN, "max-secret", CAROL_DN, "(objectClass=*)", &["cn"])
            .expect("max reads his own tenant");
        assert!(carol.contains("cn: Carol"), "{carol}");
    }

    #[test]
    fn tenant_admin_cannot_change_its_own_tenant_entry() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        let raise = format!(
            "dn: {TENANT_ACME}\nchangetype: modify\n\
             replace: mailfoldMaxMailboxes\nmailfoldMaxMailboxes: 0\n"
        );
        let err = slapd
            .ldap_modify_as(JANE_DN, "jane-secret", &raise)
            .expect_err("limits are the platform's");
        assert!(
            err.to_string().contains("Insufficient access (50)"),
            "{err}"
        );
        slapd
            .ldap_modify_as(SAMPLE_API_DN, SAMPLE_API_PASSWORD, &raise)
            .expect("cn=api may change limits");
    }

    #[test]
    fn a_search_on_the_domain_name_also_finds_alias_domains() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        let found = slapd
            .ldap_search_as(
                SAMPLE_READER_DN,
                SAMPLE_READER_PASSWORD,
                SAMPLE_SUFFIX,
                "(mailfoldDomainName=ACME-mail.test)",
                &["mailfoldDomainName"],
            )
            .expect("search by alias domain");
        assert!(
            found.contains("dn: mailfoldDomainName=acme.test,ou=domains"),
            "{found}"
        );
    }

    #[test]
    fn non_ascii_addresses_fit_mailfold_address_but_not_mail() {
        let slapd = Slapd::start(SlapdOptions::sample()).expect("start slapd");
        let add_address = |attribute: &str| {
            let ldif = format!(
                "dn: {BOB_DN}\nchangetype: modify\n\
                 add: {attribute}\n{attribute}: j\u{f6}rg@acme.test\n"
            );
            slapd.ldap_modify(&ldif)
        };
        add_address("mailfoldAddress").expect("a UTF-8 address is a Directory String");

        // RFC 4517 §3.3.15: IA5 String is ASCII only, and cosine's mail is one.
        let err = add_address("mail").expect_err("mail is an IA5 String");
        assert!(err.to_string().contains("Invalid syntax (21)"), "{err}");
    }

    #[test]
    fn documented_acls_are_the_ones_the_harness_installs() {
        let template_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/slapd-config.ldif.in");
        let template = fs::read_to_string(template_path).expect("read the template");
        let docs =
            fs::read_to_string(repo_root().join("docs/directory.md")).expect("read the docs");

        // The olcAccess values of the mdb database, continuation lines included.
        let database = template
            .split("olcDatabase: {1}mdb")
            .nth(1)
            .expect("an mdb database");
        let database = database.split("\n\n").next().unwrap_or_default();
        let mut acl = String::new();
        let mut inside = false;
        for line in database.lines() {
            inside = line.starts_with("olcAccess:") || (inside && line.starts_with(' '));
            if inside {
                acl.push_str(&line.replace("@SUFFIX@", SAMPLE_SUFFIX));
                acl.push('\n');
            }
        }
        assert!(acl.lines().count() > 10, "{acl}");
        assert!(
            docs.contains(&acl),
            "docs/directory.md must quote these ACLs:\n{acl}"
        );
    }

    #[test]
    fn schema_ldif_is_generated_from_the_schema_file() {
        let script = repo_root().join("schema/gen-ldif.sh");
        let mut command = Command::new("/bin/sh");
        command.arg(script).arg("--check");
        run(&mut command, None, "checking schema/mailfold.ldif").expect("mailfold.ldif is current");
    }

    #[test]
    fn a_suffix_that_could_break_the_acls_is_refused() {
        let mut options = SlapdOptions::sample();
        options.suffix = "dc=example, dc=test".to_string();
        let err = Slapd::start(options).expect_err("a suffix with a space");
        assert!(err.to_string().starts_with("checking the suffix"), "{err}");
    }
}
