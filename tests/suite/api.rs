//! The JSON API end to end: `mailfold serve` on a temporary copy of the quick start (LDIF) or
//! on a private slapd, driven by Python's http.client (tests/clients/api_session.py walks every
//! endpoint and error status, another tenant's attempts, injection attempts, limits and the
//! login throttle) and by curl where a raw detail matters. The Rust side then checks what only
//! it can see: mail to an alias made through the API reached the mailbox, the audit log has an
//! event for every change, and a directory outage is a 503.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailfold_tests::binary::{Server, curl, free_ports};
use mailfold_tests::fixture::{self, API_ACCOUNT, SUFFIX};
use mailfold_tests::repo_root;
use mailfold_tests::slapd::{Slapd, SlapdOptions};

/// A 40-character operator token for the tests.
const OPERATOR_TOKEN: &str = "test-operator-token-0123456789abcdefghij";

struct Mailfold {
    server: Server,
    folder: tempfile::TempDir,
    api: u16,
    mx: u16,
    _slapd: Option<Slapd>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Ldif,
    Ldap,
}

impl Mailfold {
    fn start(backend: Backend, tls: bool) -> Mailfold {
        let folder = tempfile::tempdir().unwrap();
        let slapd = match backend {
            Backend::Ldif => None,
            Backend::Ldap => {
                let mut options = SlapdOptions::sample();
                options.data = fixture::data_files();
                Some(Slapd::start(options).expect("starting slapd"))
            }
        };
        let ports: [u16; 6] = free_ports();
        let config = write_config(folder.path(), &ports, slapd.as_ref(), tls);
        let log = folder.path().join("server.log");
        let server = if tls {
            // The certificate is made at start; readiness is an HTTPS answer verified by it.
            let certificate = folder.path().join("var/tls/selfsigned.crt");
            let url = format!("https://127.0.0.1:{}/healthz", ports[0]);
            Server::start_when(&config, log, || {
                Command::new("curl")
                    .args(["--silent", "--fail", "--max-time", "5", "--cacert"])
                    .arg(&certificate)
                    .arg(&url)
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
        } else {
            let url = format!("http://127.0.0.1:{}/healthz", ports[0]);
            Server::start(&config, log, &url)
        };
        Mailfold {
            server,
            api: ports[0],
            mx: ports[1],
            folder,
            _slapd: slapd,
        }
    }

    fn certificate(&self) -> PathBuf {
        self.folder.path().join("var/tls/selfsigned.crt")
    }

    /// Runs tests/clients/api_session.py; its JSON summary.
    fn session(&self, extra: &[&str]) -> serde_json::Value {
        let output = Command::new("python3")
            .arg(repo_root().join("tests/clients/api_session.py"))
            .args(["--port", &self.api.to_string()])
            .args(["--operator-token", OPERATOR_TOKEN])
            .args(extra)
            .output()
            .expect("running python3");
        assert!(
            output.status.success(),
            "api_session.py: {}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.server.log_text()
        );
        serde_json::from_slice(&output.stdout).expect("api_session.py prints JSON")
    }

    /// The messages in bob's `new/`, as text.
    fn bobs_new_mail(&self) -> Vec<String> {
        let new = self
            .folder
            .path()
            .join("var/mail")
            .join(fixture::BOB.store)
            .join("new");
        let Ok(entries) = fs::read_dir(new) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    /// The audit events in the log.
    fn audit_events(&self) -> Vec<String> {
        self.server
            .log_text()
            .lines()
            .filter(|line| line.contains("mailfold::audit"))
            .map(str::to_string)
            .collect()
    }
}

/// examples/quickstart.toml moved into `folder` on `ports` (api, mx, submission,
/// submissions, lmtp, pop3), with the api and smtp roles, the operator token, no login delay,
/// and the directory on `slapd` (as the read-write API account) when given.
fn write_config(folder: &Path, ports: &[u16], slapd: Option<&Slapd>, tls: bool) -> PathBuf {
    let seed = fixture::write_seed(folder, None);
    let token = folder.join("operator-token");
    fs::write(&token, format!("{OPERATOR_TOKEN}\n")).unwrap();

    let text = fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    let api_section = format!(
        "listen = [\"127.0.0.1:{}\"]\noperator_token_file = {:?}\ntls = {tls}\n",
        ports[0],
        token.display().to_string()
    );
    let mut swaps = fixture::state_swaps(&seed);
    swaps.extend([
        (
            "roles = [\"api\", \"pop3\", \"smtp\", \"lmtp\", \"queue\"]".into(),
            "roles = [\"api\", \"smtp\"]".into(),
        ),
        ("listen = [\"127.0.0.1:8080\"]\n".into(), api_section),
        ("127.0.0.1:2525".into(), format!("127.0.0.1:{}", ports[1])),
        ("127.0.0.1:2587".into(), format!("127.0.0.1:{}", ports[2])),
        ("127.0.0.1:2465".into(), format!("127.0.0.1:{}", ports[3])),
        ("127.0.0.1:2424".into(), format!("127.0.0.1:{}", ports[4])),
        ("127.0.0.1:1110".into(), format!("127.0.0.1:{}", ports[5])),
        (
            "failure_delay = \"1s\"\n".into(),
            "failure_delay = \"0ms\"\n".into(),
        ),
    ]);
    if let Some(slapd) = slapd {
        // The API writes: it needs the read-write account (docs/directory.md).
        let section = format!(
            "[directory.ldap]\nurl = \"{}\"\nbind_dn = \"{}\"\nbind_password = \"{}\"\n\
             timeout = \"2s\"\n\n[shards]",
            slapd.url(),
            API_ACCOUNT.0,
            API_ACCOUNT.1
        );
        swaps.push(("backend = \"ldif\"".into(), "backend = \"ldap\"".into()));
        swaps.push(("[shards]".into(), section));
    }
    let text = fixture::apply_swaps(text, &swaps);
    let path = folder.join("quickstart.toml");
    fs::write(&path, text).unwrap();
    path
}

/// The whole scenario, then the checks only the Rust side can make.
fn every_endpoint_and_rule_holds(backend: Backend) {
    let mailfold = Mailfold::start(backend, false);
    let summary = mailfold.session(&["--mx", &mailfold.mx.to_string()]);

    // Mail to the alias the API made was delivered to its target at once.
    let subject = summary["subject"].as_str().unwrap();
    let delivered = mailfold.bobs_new_mail();
    assert!(
        delivered
            .iter()
            .any(|m| m.contains(&format!("Subject: {subject}"))),
        "bob did not get the mail sent to helpdesk@: {delivered:?}\n{}",
        mailfold.server.log_text()
    );

    // One audit event per successful change, naming who did what.
    let changes = summary["changes"].as_u64().unwrap() as usize;
    let events = mailfold.audit_events();
    assert_eq!(events.len(), changes, "{events:#?}");
    let created = events
        .iter()
        .find(|e| e.contains("action=\"alias.create\"") && e.contains("helpdesk@acme.test"))
        .unwrap_or_else(|| panic!("no audit event for helpdesk@: {events:#?}"));
    assert!(created.contains("actor=admin:jane@acme"), "{created}");
    assert!(created.contains("before=null"), "{created}");
    let log = mailfold.server.log_text();
    for secret in ["jane-pw", "gavin-pw", "boss-pw", OPERATOR_TOKEN] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}

#[test]
fn every_endpoint_and_rule_holds_on_the_ldif_quick_start() {
    every_endpoint_and_rule_holds(Backend::Ldif);
}

#[test]
fn every_endpoint_and_rule_holds_on_slapd() {
    every_endpoint_and_rule_holds(Backend::Ldap);
}

#[test]
fn a_directory_outage_is_a_503_and_recovery_needs_no_restart() {
    let mut mailfold = Mailfold::start(Backend::Ldap, false);
    let url = format!("http://127.0.0.1:{}/v1/admin/tenants", mailfold.api);
    let bearer = format!("Authorization: Bearer {OPERATOR_TOKEN}");
    let call = |url: &str| {
        let output = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-H", &bearer, url])
            .output()
            .expect("running curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(call(&url).ends_with("\n200"), "{}", call(&url));

    mailfold._slapd.as_mut().unwrap().stop();
    let down = call(&url);
    assert!(down.ends_with("\n503"), "{down}");
    assert!(down.contains("\"code\":\"unavailable\""), "{down}");
    assert!(
        !down.contains(SUFFIX) && !down.contains("ldap://"),
        "{down}"
    );

    mailfold
        ._slapd
        .as_mut()
        .unwrap()
        .restart()
        .expect("restarting slapd");
    let up = call(&url);
    assert!(up.ends_with("\n200"), "{up}");
}

#[test]
fn the_api_serves_https_with_the_tls_certificate() {
    let mailfold = Mailfold::start(Backend::Ldif, true);
    let certificate = mailfold.certificate();
    mailfold.session(&[
        "--only",
        "logins",
        "--cafile",
        certificate.to_str().unwrap(),
    ]);

    // Plain HTTP on the TLS port gets nowhere.
    let plain = curl(&format!("http://127.0.0.1:{}/healthz", mailfold.api));
    assert!(plain.is_none() || plain.is_some_and(|(status, _)| status != 200));
}

#[test]
fn the_openapi_document_is_served_and_the_operator_api_is_closed_without_a_token() {
    let folder = tempfile::tempdir().unwrap();
    let ports: [u16; 6] = free_ports();
    let config = write_config(folder.path(), &ports, None, false);
    // The same configuration without the token file.
    let text = fs::read_to_string(&config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("operator_token_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&config, text).unwrap();
    let ready = format!("http://127.0.0.1:{}/healthz", ports[0]);
    let server = Server::start(&config, folder.path().join("server.log"), &ready);

    let (status, body) = curl(&format!("http://127.0.0.1:{}/v1/openapi.json", ports[0])).unwrap();
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        document,
        serde_json::from_str::<serde_json::Value>(mailfold_api::openapi::DOCUMENT).unwrap()
    );

    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {OPERATOR_TOKEN}")])
        .arg(format!("http://127.0.0.1:{}/v1/admin/tenants", ports[0]))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "401");
    assert!(server.log_text().contains("the operator api is closed"));
}

/// One HTTP/1.1 request on a fresh connection that starts with `proxy` (a PROXY protocol
/// line, or nothing); the status and body, or `None` when the server closed without answering.
fn raw_call(port: u16, proxy: &str, method: &str, path: &str, auth: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let request = format!(
        "{proxy}{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: {auth}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// `GET /v1/domains` with Basic `login`; the status.
fn raw_request(port: u16, proxy: &str, login: &str) -> Option<u16> {
    let basic = format!("Basic {}", mailfold_tests::base64(login.as_bytes()));
    raw_call(port, proxy, "GET", "/v1/domains", &basic).map(|(status, _)| status)
}

#[test]
fn behind_a_balancer_the_proxy_header_names_the_client_the_throttle_counts() {
    let folder = tempfile::tempdir().unwrap();
    let ports: [u16; 6] = free_ports();
    let config = write_config(folder.path(), &ports, None, false);
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("tls = false\n", "tls = false\nproxy_protocol = true\n");
    fs::write(&config, text).unwrap();
    let api = ports[0];
    let from = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 40000 {api}\r\n");
    let _server = Server::start_when(&config, folder.path().join("server.log"), || {
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
    });

    // Ten wrong logins, each for another account, from one client behind the balancer: the
    // next attempt from that client is throttled.
    for attempt in 0..10 {
        let status = raw_request(
            api,
            &from("198.51.100.7"),
            &format!("x{attempt}@acme:wrong"),
        );
        assert_eq!(status, Some(401), "attempt {attempt}");
    }
    assert_eq!(
        raw_request(api, &from("198.51.100.7"), "jane@acme:jane-pw"),
        Some(429)
    );

    // Another client behind the same balancer (the same TCP peer) is not.
    assert_eq!(
        raw_request(api, &from("203.0.113.9"), "jane@acme:jane-pw"),
        Some(200)
    );

    // Wrong bearer tokens count against the client that sends them, not against every token
    // user: after one client's failures, another client's good token still works.
    let basic = format!("Basic {}", mailfold_tests::base64(b"gina@globex:gina-pw"));
    let (status, body) = raw_call(api, &from("192.0.2.1"), "POST", "/v1/tokens", &basic).unwrap();
    assert_eq!(status, 201, "{body}");
    let issued: serde_json::Value = serde_json::from_str(&body).unwrap();
    let good = format!("Bearer {}", issued["token"].as_str().unwrap());
    let mut wrong = Vec::new();
    for _ in 0..8 {
        let answer = raw_call(
            api,
            &from("198.51.100.8"),
            "GET",
            "/v1/domains",
            "Bearer mf1.x",
        );
        wrong.push(answer.map(|(status, _)| status));
    }
    assert_eq!(wrong.last(), Some(&Some(429)), "{wrong:?}");
    let answer = raw_call(api, &from("192.0.2.2"), "GET", "/v1/domains", &good);
    assert_eq!(answer.map(|(status, _)| status), Some(200));

    // Without the header the connection is closed unanswered.
    assert_eq!(raw_request(api, "", "jane@acme:jane-pw"), None);
}
