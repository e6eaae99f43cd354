//! `/metrics` end to end: `mailfold serve` on a temporary copy of the quick start (or on a
//! private slapd) gets real mail from Python's smtplib and raw LMTP lines, then its page is
//! fetched with curl, linted by Prometheus's own `promtool check metrics`, and read back: the
//! mailgraph counters must have moved by exactly the mail that was sent, refused by reason.
//!
//! Every count is a difference between a scrape before and one after, so connections the
//! harness makes while waiting for the listeners do not matter.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailfold_tests::binary::{Server, curl, free_ports};
use mailfold_tests::fixture::{self, SUFFIX};
use mailfold_tests::repo_root;
use mailfold_tests::slapd::{Slapd, SlapdOptions};

#[test]
fn mailgraph_counters_move_by_exactly_the_mail_sent_and_promtool_accepts_the_page() {
    let server = Mailfold::start(Backend::Ldif);
    let before = server.scrape();

    // Two acme mailboxes, an unknown acme address and a relay attempt, in one transaction.
    let output = server.smtplib(
        "plain",
        server.mx,
        None,
        "sender@example.org",
        &[
            "alice@acme.test",
            "bob@acme.test",
            "nobody@acme.test",
            "someone@elsewhere.example",
        ],
    );
    assert!(output.contains(r#"[550, "5.1.1"#), "{output}");
    assert!(output.contains(r#"[550, "5.7.1"#), "{output}");
    assert!(output.contains(r#""data": [250"#), "{output}");
    // globex alone (its catch-all), then one message for both tenants.
    let output = server.smtplib(
        "plain",
        server.mx,
        None,
        "sender@example.org",
        &["anything@globex.test"],
    );
    assert!(output.contains(r#""data": [250"#), "{output}");
    let output = server.smtplib(
        "plain",
        server.mx,
        None,
        "sender@example.org",
        &["alice@acme.test", "info@globex.test"],
    );
    assert!(output.contains(r#""data": [250"#), "{output}");
    // Submission: bob may not send as alice (policy), nor submit without a login.
    let output = server.smtplib(
        "starttls",
        server.submission,
        Some(("bob@acme.test", "bob-pw")),
        "alice@acme.test",
        &["carol@acme.test"],
    );
    assert!(output.contains(r#""mail": [553"#), "{output}");
    let mut client = Client::connect(server.submission);
    client.expect("EHLO client.example.test", "250");
    client.expect("MAIL FROM:<bob@acme.test>", "530");
    client.expect("QUIT", "221");
    // LMTP hands one message to bob.
    let mut client = Client::connect(server.lmtp);
    client.expect("LHLO edge.example.test", "250");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<bob@acme.test>", "250");
    client.expect("DATA", "354");
    client.expect("Subject: over lmtp\r\n\r\nhanded over\r\n.", "250");
    // The session counts a command once its reply is out: QUIT waits for the count.
    client.expect("QUIT", "221");

    // POP3 with curl: alice fetches her first message, then deletes it.
    let mailbox = format!("pop3://127.0.0.1:{}/", server.pop3);
    let login = [
        "--silent",
        "--show-error",
        "--user",
        "alice@acme.test:alice-pw",
    ];
    let fetched = Command::new("curl")
        .args(login)
        .arg(format!("{mailbox}1"))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&fetched.stdout);
    assert!(text.contains("Subject: counted"), "RETR 1 gave {text}");
    let deleted = Command::new("curl")
        .args(login)
        .args(["--request", "DELE 1", "--head"])
        .arg(&mailbox)
        .status()
        .expect("running curl");
    assert!(deleted.success(), "DELE 1: {deleted}");

    server.promtool_check();
    let after = server.scrape();
    let moved = |name: &str, labels: &[(&str, &str)]| after.delta(&before, name, labels);
    let acme = [("tenant", "acme")];
    let globex = [("tenant", "globex")];
    assert_eq!(moved("mailfold_messages_received_total", &acme), 3.0);
    assert_eq!(moved("mailfold_messages_received_total", &globex), 2.0);
    assert_eq!(moved("mailfold_messages_delivered_total", &acme), 4.0);
    assert_eq!(moved("mailfold_messages_delivered_total", &globex), 2.0);
    assert!(moved("mailfold_messages_delivered_bytes_total", &acme) > 4.0 * 100.0);
    let rejected = |tenant, reason| {
        moved(
            "mailfold_messages_rejected_total",
            &[("tenant", tenant), ("reason", reason)],
        )
    };
    assert_eq!(rejected("acme", "unknown_user"), 1.0);
    assert_eq!(rejected("none", "relay"), 1.0);
    assert_eq!(rejected("acme", "policy"), 1.0);
    assert_eq!(rejected("none", "policy"), 1.0);
    assert_eq!(
        after.sum("mailfold_messages_rejected_total")
            - before.sum("mailfold_messages_rejected_total"),
        4.0
    );
    // Nothing sends, bounces or scans yet: the series are there, at zero, for both tenants.
    for name in [
        "mailfold_messages_sent_total",
        "mailfold_messages_bounced_total",
        "mailfold_messages_spam_total",
        "mailfold_messages_virus_total",
    ] {
        assert_eq!(after.value(name, &acme), Some(0.0), "{name}");
        assert_eq!(after.value(name, &globex), Some(0.0), "{name}");
    }

    // What the front-ends record alongside.
    let histogram = "mailfold_delivery_duration_seconds_count";
    assert_eq!(moved(histogram, &[]), 4.0);
    assert_eq!(
        moved("mailfold_smtp_sessions_total", &[("role", "smtp")]),
        3.0
    );
    assert_eq!(
        moved("mailfold_smtp_sessions_total", &[("role", "submission")]),
        2.0
    );
    assert_eq!(
        moved("mailfold_smtp_sessions_total", &[("role", "lmtp")]),
        1.0
    );
    let logins = [("result", "success")];
    assert_eq!(moved("mailfold_smtp_logins_total", &logins), 1.0);
    let command = |verb, result| {
        moved(
            "mailfold_smtp_commands_total",
            &[("command", verb), ("result", result)],
        )
    };
    assert_eq!(command("DATA", "ok"), 4.0);
    assert_eq!(command("RCPT", "ok"), 6.0);
    assert_eq!(command("RCPT", "error"), 2.0);
    assert_eq!(command("MAIL", "error"), 2.0);
    for labels in [
        [("reason", "quota")],
        [("reason", "unavailable")],
        [("reason", "other")],
    ] {
        assert_eq!(moved("mailfold_delivery_failures_total", &labels), 0.0);
    }
    assert_eq!(moved("mailfold_pop3_sessions_total", &[]), 2.0);
    assert_eq!(moved("mailfold_pop3_logins_total", &logins), 2.0);
    assert_eq!(moved("mailfold_pop3_retrieved_messages_total", &acme), 1.0);
    assert!(moved("mailfold_pop3_retrieved_bytes_total", &acme) > 100.0);
    assert_eq!(moved("mailfold_pop3_deleted_messages_total", &acme), 1.0);
    let retr = [("command", "RETR"), ("result", "ok")];
    assert_eq!(moved("mailfold_pop3_commands_total", &retr), 1.0);
    let pop3_logins = [("service", "pop3"), ("result", "success")];
    assert_eq!(moved("mailfold_auth_attempts_total", &pop3_logins), 2.0);
    assert_eq!(after.value("mailfold_up", &[]), Some(1.0));

    // With mail counted every family is on the page: docs/metrics.md must describe each.
    docs_describe_the_page(&after);
}

/// Every family on the page is named in docs/metrics.md, and every PromQL line there parses
/// (`promtool check rules`) and reads only families the page has.
fn docs_describe_the_page(page: &Scrape) {
    let docs = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    for family in &page.families {
        assert!(
            docs.contains(&format!("`{family}`")),
            "docs/metrics.md does not describe {family}"
        );
    }

    let mut queries = Vec::new();
    let mut in_promql = false;
    for line in docs.lines() {
        match line.trim() {
            "```promql" => in_promql = true,
            "```" => in_promql = false,
            query if in_promql && !query.is_empty() => queries.push(query.to_string()),
            _ => {}
        }
    }
    assert!(
        queries.len() >= 6,
        "the mailgraph queries are gone: {queries:?}"
    );
    for query in &queries {
        for name in query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("mailfold_"))
        {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| page.families.contains(*base))
                .unwrap_or(name);
            assert!(
                page.families.contains(family),
                "docs/metrics.md queries {name}, which the page does not have: {query}"
            );
        }
    }

    // One recording rule per query: promtool parses each expression as Prometheus would.
    let folder = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: docs\n    rules:\n");
    for (index, query) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: mailfold:docs_query_{index}\n        expr: {query:?}\n"
        ));
    }
    let file = folder.path().join("docs-rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("running promtool (tests/install-deps.sh installs prometheus)");
    assert!(
        output.status.success(),
        "a docs/metrics.md query does not parse:\n{}{}\n{rules}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn on_ldap_the_directory_series_count_lookups_cache_hits_and_misses_and_logins() {
    let server = Mailfold::start(Backend::Slapd);
    let before = server.scrape();

    // The first RCPT asks slapd, the second is answered from the cache.
    for _ in 0..2 {
        let output = server.smtplib(
            "plain",
            server.mx,
            None,
            "sender@example.org",
            &["alice@acme.test"],
        );
        assert!(output.contains(r#""data": [250"#), "{output}");
    }
    let output = server.smtplib(
        "starttls",
        server.submission,
        Some(("bob@acme.test", "bob-pw")),
        "bob@acme.test",
        &["alice@acme.test"],
    );
    assert!(output.contains(r#""data": [250"#), "{output}");

    server.promtool_check();
    let after = server.scrape();
    let moved = |name: &str, labels: &[(&str, &str)]| after.delta(&before, name, labels);
    let recipient = [("kind", "recipient")];
    assert_eq!(
        moved("mailfold_directory_cache_misses_total", &recipient),
        1.0
    );
    assert_eq!(
        moved("mailfold_directory_cache_hits_total", &recipient),
        2.0
    );
    let search = [
        ("backend", "ldap"),
        ("operation", "search"),
        ("result", "ok"),
    ];
    assert!(moved("mailfold_directory_requests_total", &search) >= 2.0);
    let searched = [("backend", "ldap"), ("operation", "search")];
    let timed = moved(
        "mailfold_directory_request_duration_seconds_count",
        &searched,
    );
    let failed = [
        ("backend", "ldap"),
        ("operation", "search"),
        ("result", "error"),
    ];
    let searches = moved("mailfold_directory_requests_total", &search)
        + moved("mailfold_directory_requests_total", &failed);
    assert_eq!(timed, searches);
    let bind = [("backend", "ldap"), ("operation", "bind"), ("result", "ok")];
    assert_eq!(moved("mailfold_directory_requests_total", &bind), 1.0);
    let login = [("service", "smtp"), ("result", "success")];
    assert_eq!(moved("mailfold_auth_attempts_total", &login), 1.0);
    assert_eq!(
        moved("mailfold_messages_received_total", &[("tenant", "acme")]),
        3.0
    );
}

// --- the server under test ---

/// Where the directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Ldif,
    Slapd,
}

/// `mailfold serve`, every role of the quick start, on free ports in a temporary folder.
struct Mailfold {
    folder: tempfile::TempDir,
    api: u16,
    mx: u16,
    submission: u16,
    lmtp: u16,
    pop3: u16,
    server: Server,
    _slapd: Option<Slapd>,
}

impl Mailfold {
    fn start(backend: Backend) -> Mailfold {
        let folder = tempfile::tempdir().unwrap();
        let ports = free_ports();
        let slapd = (backend == Backend::Slapd).then(|| {
            Slapd::start(SlapdOptions {
                suffix: SUFFIX.to_string(),
                data: fixture::data_files(),
                tls: false,
            })
            .unwrap_or_else(|e| panic!("starting slapd: {e}"))
        });
        let config = write_config(folder.path(), ports, slapd.as_ref());
        let ready = format!("http://127.0.0.1:{}/readyz", ports[0]);
        let server = Server::start(&config, folder.path().join("serve.log"), &ready);
        let server = Mailfold {
            folder,
            api: ports[0],
            mx: ports[1],
            submission: ports[2],
            lmtp: ports[4],
            pop3: ports[5],
            server,
            _slapd: slapd,
        };
        // The api role answers before the mail listeners are bound: wait for each greeting.
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [server.mx, server.submission, server.lmtp, server.pop3] {
            while !greets(port) {
                assert!(
                    Instant::now() < deadline,
                    "no greeting on {port}:\n{}",
                    server.server.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        server
    }

    fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.api)
    }

    /// The page as curl fetches it, parsed.
    fn scrape(&self) -> Scrape {
        let (status, body) = curl(&self.metrics_url()).expect("curl reaches /metrics");
        assert_eq!(status, 200, "{body}");
        Scrape::parse(&body)
    }

    /// `curl /metrics | promtool check metrics`: exit 0 and not one complaint.
    fn promtool_check(&self) {
        let pipeline = format!(
            "set -o pipefail; curl --silent --show-error --fail {} | promtool check metrics",
            self.metrics_url()
        );
        let output = Command::new("bash")
            .args(["-c", &pipeline])
            .output()
            .expect("running curl and promtool (tests/install-deps.sh installs prometheus)");
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && complaints.trim().is_empty(),
            "promtool check metrics: {}\n{complaints}\n{}",
            output.status,
            curl(&self.metrics_url())
                .map(|(_, body)| body)
                .unwrap_or_default()
        );
    }

    /// One transaction through tests/clients/smtp_session.py; the JSON line it prints.
    fn smtplib(
        &self,
        transport: &str,
        port: u16,
        login: Option<(&str, &str)>,
        sender: &str,
        recipients: &[&str],
    ) -> String {
        let message = self.folder.path().join("message.eml");
        let body = "From: <sender@example.org>\r\nSubject: counted\r\n\r\n".to_string()
            + &"a line to give the message some weight\r\n".repeat(4);
        std::fs::write(&message, body).unwrap();
        let mut command = Command::new("python3");
        command
            .arg(repo_root().join("tests/clients/smtp_session.py"))
            .args(["--transport", transport, "--port", &port.to_string()])
            .arg("--cafile")
            .arg(self.folder.path().join("var/tls/selfsigned.crt"))
            .arg("--message")
            .arg(&message)
            .args(["--sender", sender]);
        for recipient in recipients {
            command.args(["--rcpt", recipient]);
        }
        if let Some((user, password)) = login {
            command.args(["--user", user, "--password", password]);
        }
        let output = command.output().expect("running python3");
        assert!(
            output.status.success(),
            "smtp_session.py: {}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.server.log_text()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Whether `port` greets like an SMTP (`220`) or POP3 (`+OK`) server.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok()
        && (line.starts_with("220") || line.starts_with("+OK"))
}

/// examples/quickstart.toml with every fixed port swapped, state and seed in the test's
/// folder, and the directory on `slapd` when given.
fn write_config(
    folder: &Path,
    [api, mx, submission, submissions, lmtp, pop3, pop3s]: [u16; 7],
    slapd: Option<&Slapd>,
) -> PathBuf {
    let seed = fixture::write_seed(folder, None);

    let text = std::fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    let port = |port: u16| format!("127.0.0.1:{port}");
    let mut swaps = fixture::state_swaps(&seed);
    swaps.extend([
        ("127.0.0.1:8080".into(), port(api)),
        ("127.0.0.1:1110".into(), port(pop3)),
        ("127.0.0.1:1995".into(), port(pop3s)),
        ("127.0.0.1:2525".into(), port(mx)),
        ("127.0.0.1:2587".into(), port(submission)),
        ("127.0.0.1:2465".into(), port(submissions)),
        ("127.0.0.1:2424".into(), port(lmtp)),
    ]);
    if let Some(slapd) = slapd {
        swaps.extend(fixture::ldap_swaps(slapd, "2s"));
    }
    let path = folder.join("quickstart.toml");
    std::fs::write(&path, fixture::apply_swaps(text, &swaps)).unwrap();
    path
}

// --- the exposition format, read back ---

/// One scrape: each sample by name and its sorted labels, and the families' names.
struct Scrape {
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
    families: BTreeSet<String>,
}

impl Scrape {
    /// The samples and `# TYPE` lines of a text-format page.
    fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        let mut families = BTreeSet::new();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let name = declared.split(' ').next().unwrap_or_default();
                families.insert(name.to_string());
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.insert((name.to_string(), labels), value);
        }
        Scrape { samples, families }
    }

    /// The sample with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.samples.get(&(name.to_string(), key)).copied()
    }

    /// Every sample of `name`, added up.
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|((series, _), _)| series == name)
            .map(|(_, value)| value)
            .sum()
    }

    /// How far a sample moved since `before` (absent counts as 0).
    fn delta(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let now = self.value(name, labels).unwrap_or(0.0);
        now - before.value(name, labels).unwrap_or(0.0)
    }
}

/// `a="1",b="x\"y"` as sorted pairs, escapes undone.
fn labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = index + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        pairs.push((name.trim_start_matches(',').to_string(), value));
        rest = &after[end..];
    }
    pairs.sort();
    pairs
}

// --- a raw SMTP / LMTP client ---

/// One connection, speaking lines; replies are read whole (RFC 5321 §4.2.1).
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut client = Client {
            reader: BufReader::new(stream),
        };
        let greeting = client.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        client
    }

    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("reading a reply");
            assert!(read > 0, "connection closed; replies so far: {lines:?}");
            // `code-` continues a reply, `code ` ends it.
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.trim_end().to_string());
            if last {
                return lines.join("\n");
            }
        }
    }

    fn expect(&mut self, line: &str, code: &str) {
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("sending");
        let reply = self.reply();
        assert!(
            reply.starts_with(code),
            "{line:?}: expected {code}, got {reply}"
        );
    }
}
