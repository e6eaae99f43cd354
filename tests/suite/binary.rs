//! The built `mailfold` binary, driven as an operator drives it: `serve` on the quick start
//! and on a real slapd, `check-config`, `hash-password` and `lookup`. HTTP is spoken by curl.

use std::path::{Path, PathBuf};

use mailfold_tests::binary::{Server, curl, free_port, free_ports, run};
use mailfold_tests::fixture::{self, SUFFIX};
use mailfold_tests::repo_root;
use mailfold_tests::slapd::{Slapd, SlapdOptions};

/// A copy of the quick-start configuration in a temporary folder, on a free port, with its
/// state there too, so tests neither touch the repository's var/ nor collide with each other.
fn quickstart_copy(folder: &Path, port: u16) -> PathBuf {
    // Every listener on its own port, none of them `port`.
    let others: [u16; 6] = loop {
        let ports: [u16; 6] = free_ports();
        if !ports.contains(&port) {
            break ports;
        }
    };
    let seed = repo_root().join("examples/quickstart.ldif");
    let text = std::fs::read_to_string(repo_root().join("examples/quickstart.toml"))
        .unwrap()
        .replace("\"../var\"", "\"var\"")
        .replace("\"../var/mail\"", "\"var/mail\"")
        .replace("\"../var/directory.ldif\"", "\"var/directory.ldif\"")
        .replace(
            "\"quickstart.ldif\"",
            &format!("{:?}", seed.display().to_string()),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:1110", &format!("127.0.0.1:{}", others[0]))
        .replace("127.0.0.1:1995", &format!("127.0.0.1:{}", others[1]))
        .replace("127.0.0.1:2525", &format!("127.0.0.1:{}", others[2]))
        .replace("127.0.0.1:2587", &format!("127.0.0.1:{}", others[3]))
        .replace("127.0.0.1:2465", &format!("127.0.0.1:{}", others[4]))
        .replace("127.0.0.1:2424", &format!("127.0.0.1:{}", others[5]));
    let path = folder.join("quickstart.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn serve_on_the_quick_start_answers_health_readiness_and_metrics_and_stops_on_sigterm() {
    let folder = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = quickstart_copy(folder.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server::start(
        &config,
        folder.path().join("serve.log"),
        &format!("{base}/healthz"),
    );

    let (status, body) = curl(&format!("{base}/healthz")).unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = curl(&format!("{base}/readyz")).unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, body) = curl(&format!("{base}/metrics")).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("mailfold_up 1"), "{body}");
    assert!(
        body.contains("mailfold_directory_requests_total{"),
        "readyz reached the directory:\n{body}"
    );
    let (status, body) = curl(&format!("{base}/nowhere")).unwrap();
    assert_eq!(status, 404);
    assert!(body.contains(r#""code":"not_found""#), "{body}");

    // The seed was copied into the state folder, not written in place.
    assert!(folder.path().join("var/directory.ldif").is_file());
    let status = server.terminate();
    assert!(status.success(), "exit {status}:\n{}", server.log_text());
    assert!(
        server.log_text().contains("stopped"),
        "{}",
        server.log_text()
    );
}

#[test]
fn serve_on_ldap_is_not_ready_until_the_server_is_and_recovers_without_a_restart() {
    let mut slapd = Slapd::start(SlapdOptions {
        suffix: SUFFIX.to_string(),
        data: fixture::data_files(),
        tls: false,
    })
    .unwrap();
    let folder = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(folder.path().join("reader.secret"), "reader-pw\n").unwrap();
    let config = folder.path().join("ldap.toml");
    std::fs::write(
        &config,
        format!(
            "[directory]\nbackend = \"ldap\"\nbase_dn = \"{SUFFIX}\"\n\
             [directory.ldap]\nurl = \"{}\"\nbind_dn = \"cn=reader,ou=system,{SUFFIX}\"\n\
             bind_password_file = \"reader.secret\"\ntimeout = \"1s\"\n\
             [api]\nlisten = [\"127.0.0.1:{port}\"]\n",
            slapd.url()
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server::start(
        &config,
        folder.path().join("serve.log"),
        &format!("{base}/readyz"),
    );

    let lookup = run(
        &[
            "lookup",
            "team@acme.test",
            "--config",
            config.to_str().unwrap(),
        ],
        "",
    );
    let text = String::from_utf8_lossy(&lookup.stdout);
    assert!(lookup.status.success(), "{text}");
    assert!(text.contains("-> mailbox carol@acme.test"), "{text}");

    slapd.stop();
    let (status, body) = curl(&format!("{base}/readyz")).unwrap();
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"error":{"code":"unavailable","message":"the directory is unavailable; try again later"}}"#
    );
    assert_eq!(
        curl(&format!("{base}/healthz")).unwrap().0,
        200,
        "alive while not ready"
    );

    slapd.restart().unwrap();
    assert_eq!(curl(&format!("{base}/readyz")).unwrap().0, 200);
}

#[test]
fn check_config_reports_every_broken_key_at_once() {
    let folder = tempfile::tempdir().unwrap();
    let config = folder.path().join("broken.toml");
    std::fs::write(
        &config,
        "roles = [\"api\", \"pop4\"]\nverbose = true\n\
         [directory]\nbackend = \"ldap\"\nbase_dn = \"not a dn\"\n\
         [directory.ldap]\nurl = \"http://example.test\"\npool_size = 0\n\
         [directory.cache]\nttl = \"forever\"\n\
         [api]\nlisten = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let output = run(&["check-config", "--config", config.to_str().unwrap()], "");
    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    for key in [
        "roles: unknown role \"pop4\"",
        "verbose: unknown key",
        "directory.base_dn:",
        "directory.ldap.url:",
        "directory.ldap.pool_size: must be between 1 and 1024",
        "directory.ldap.bind_dn:",
        "directory.cache.ttl:",
        "api.listen:",
    ] {
        assert!(errors.contains(key), "{key} missing from:\n{errors}");
    }
}

#[test]
fn check_config_accepts_the_quick_start() {
    let config = repo_root().join("examples/quickstart.toml");
    let output = run(&["check-config", "--config", config.to_str().unwrap()], "");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("ok (roles: api, pop3, smtp, lmtp, queue)"),
        "{text}"
    );
}

#[test]
fn hash_password_prints_an_argon2id_hash_that_verifies() {
    let output = run(&["hash-password"], "correct horse\n");
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    let hash = hash.trim_end();
    assert!(hash.starts_with("{ARGON2}$argon2id$"), "{hash}");
    use mailfold_directory::password::{Verification, verify};
    assert_eq!(verify("correct horse", hash), Verification::Match);
    assert_eq!(verify("correct horse\n", hash), Verification::Mismatch);

    let empty = run(&["hash-password"], "\n");
    assert!(!empty.status.success());
}

#[test]
fn lookup_on_the_quick_start_shows_routing_and_exit_codes() {
    let folder = tempfile::tempdir().unwrap();
    let config = quickstart_copy(folder.path(), free_port());
    let config = config.to_str().unwrap();
    let cases = [
        (
            "partners@acme.test",
            true,
            "-> external liaison@partner.example",
        ),
        ("bob@acme-mail.test", true, "id: u-0002"),
        ("anything@globex.test", true, ": catch-all"),
        ("nobody@acme.test", false, "unknown"),
        ("x@elsewhere.example", false, "not local"),
        ("a)(b@acme.test", false, "rejected"),
    ];
    for (address, reaches, expected) in cases {
        let output = run(&["lookup", address, "--config", config], "");
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.success(), reaches, "{address}: {text}");
        assert!(text.contains(expected), "{address}: {text}");
    }
}

#[test]
fn lmtp_on_a_unix_socket_answers_each_recipient_and_delivers() {
    let folder = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = quickstart_copy(folder.path(), port);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "plaintext = \"loopback\"\n\n[auth]",
        "plaintext = \"loopback\"\nlmtp_socket = \"lmtp.sock\"\n\n[auth]",
    );
    assert!(
        text.contains("lmtp_socket"),
        "the quick start's [smtp] section moved"
    );
    std::fs::write(&config, text).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server::start(
        &config,
        folder.path().join("serve.log"),
        &format!("{base}/healthz"),
    );

    // Python's smtplib.LMTP takes a path for a unix socket.
    let socket = folder.path().join("lmtp.sock");
    let script = format!(
        "import smtplib\n\
         c = smtplib.LMTP({:?})\n\
         refused = c.sendmail('sender@elsewhere.example', ['alice@acme.test', 'nobody@acme.test'], \
         b'Subject: over a socket\\r\\n\\r\\nhello\\r\\n')\n\
         print(sorted(refused.items()))\n\
         c.quit()\n",
        socket.display().to_string()
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("'nobody@acme.test', (550"), "{printed}");

    let inbox = folder.path().join("var/mail/2a/4c/u-0001/new");
    let delivered: Vec<_> = std::fs::read_dir(&inbox).unwrap().flatten().collect();
    assert_eq!(delivered.len(), 1);
    let message = std::fs::read_to_string(delivered[0].path()).unwrap();
    assert!(
        message.starts_with("Return-Path: <sender@elsewhere.example>\r\n"),
        "{message}"
    );
    assert!(message.contains("with LMTP id"), "{message}");
    assert!(message.ends_with("\r\nhello\r\n"), "{message}");
}
