//! The POP3 role end to end: `mailfold serve` on a temporary copy of the quick start (or on a
//! private slapd), driven by real clients — Python's poplib, curl and fetchmail — and, where
//! the exact bytes matter, by raw protocol lines over a socket.
//!
//! Every test starts its own server on free ports, with its state (directory copy, shard,
//! self-signed certificate) in a temporary folder, and puts its messages in place with the
//! store crate, as a delivery would. TLS clients verify the certificate the server wrote to
//! `<state_dir>/tls/selfsigned.crt`; none of them turns verification off.
//!
//! The idle timeout (10 minutes at least, RFC 1939 §3) is not tested: it would take too long.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use mailfold_pop3::lock::{LOCK_FILE, STALE_AFTER};
use mailfold_store::{Maildir, MessageInfo, QuotaLimit, Recipient, Store, deliver};
use mailfold_tests::binary::{Server, free_ports};
use mailfold_tests::fixture::{self, ALICE, Account, FRANK, SUFFIX};
use mailfold_tests::slapd::{Slapd, SlapdOptions};
use mailfold_tests::{base64, repo_root};

/// How long a client waits for any reply before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

// --- real clients: poplib, curl, fetchmail ---

#[test]
fn poplib_over_stls_verifies_the_certificate_and_answers_every_transaction_command() {
    let server = TestServer::start(Setup::quick_start());
    let expected = server.deliver_samples(ALICE, 3);
    let output = server.poplib(&[
        "session",
        "--transport",
        "stls",
        "--port",
        &server.pop3.to_string(),
        "--expect",
        path_text(&expected),
    ]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("\"uidl\": ["),
        "{output:?}"
    );
    assert_eq!(
        server.messages(ALICE).len(),
        3,
        "RSET kept the DELE'd message"
    );
}

#[test]
fn poplib_over_implicit_tls_verifies_the_certificate_and_answers_every_transaction_command() {
    let server = TestServer::start(Setup::quick_start());
    let expected = server.deliver_samples(ALICE, 3);
    server.poplib(&[
        "session",
        "--transport",
        "implicit",
        "--port",
        &server.pop3s.to_string(),
        "--expect",
        path_text(&expected),
    ]);
    assert_eq!(server.messages(ALICE).len(), 3);
}

#[test]
fn curl_lists_and_retrieves_over_stls_and_pop3s_against_the_server_certificate() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 2);
    let stored: Vec<Vec<u8>> = server.messages(ALICE).iter().map(content).collect();
    let listing = format!("1 {}\r\n2 {}\r\n", stored[0].len(), stored[1].len());

    let stls = format!("pop3://127.0.0.1:{}", server.pop3);
    let pop3s = format!("pop3s://127.0.0.1:{}", server.pop3s);
    for base in [&stls, &pop3s] {
        let (list, _) = server.curl(&[&format!("{base}/")]);
        assert_eq!(
            String::from_utf8_lossy(&list),
            listing,
            "LIST through {base}"
        );
        for (number, message) in stored.iter().enumerate() {
            let (body, _) = server.curl(&[&format!("{base}/{}", number + 1)]);
            assert!(body == *message, "RETR {} through {base}", number + 1);
        }
    }

    // curl sends AUTH PLAIN and the response after the `+` continuation, or inline with
    // --sasl-ir (RFC 5034 §4).
    let (_, trace) = server.curl(&["--verbose", &format!("{pop3s}/1")]);
    assert!(
        trace.contains("> AUTH PLAIN\r\n") || trace.contains("> AUTH PLAIN\n"),
        "{trace}"
    );
    assert!(trace.contains("< + "), "{trace}");
    let (body, trace) = server.curl(&["--verbose", "--sasl-ir", &format!("{stls}/2")]);
    assert!(trace.contains("> AUTH PLAIN A"), "{trace}");
    assert!(body == stored[1]);

    // Without the server's certificate as trust anchor, curl refuses to go on (exit 60).
    let refused = Command::new("curl")
        .args(["--silent", "--max-time", "10", "--ssl-reqd", "-u"])
        .arg(format!("{}:{}", ALICE.login, ALICE.password))
        .arg(format!("{pop3s}/"))
        .output()
        .expect("running curl");
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");
}

#[test]
fn fetchmail_fetches_and_deletes_every_message_over_stls_and_implicit_tls() {
    let server = TestServer::start(Setup::quick_start());
    for (round, implicit) in [(1, false), (2, true)] {
        server.deliver_samples(ALICE, 3);
        let subjects: Vec<String> = server
            .messages(ALICE)
            .iter()
            .map(|m| format!("Subject: {}", marker_of(&content(m))))
            .collect();
        let (log, delivered) = server.fetchmail(ALICE, implicit, round);
        for marker in &subjects {
            let count = delivered.matches(marker.as_str()).count();
            assert_eq!(count, 1, "{marker} fetched {count} times:\n{log}");
        }
        assert!(log.contains("flushed"), "{log}");
        assert_eq!(
            server.messages(ALICE).len(),
            0,
            "--nokeep deleted all:\n{log}"
        );
    }
}

// --- CAPA, STLS, logins ---

#[test]
fn with_plaintext_never_capa_before_stls_lacks_user_and_logins_get_err_auth() {
    let server = TestServer::start(Setup {
        plaintext: "never",
        ..Setup::quick_start()
    });
    let expected = server.deliver_samples(ALICE, 2);

    let mut client = server.client();
    let capa = client.multiline_after("CAPA");
    let capa = String::from_utf8_lossy(&capa);
    assert!(capa.contains("STLS\r\n"), "{capa}");
    assert!(!capa.contains("USER\r\n"), "{capa}");
    assert!(!capa.contains("SASL"), "{capa}");
    // RFC 2595 §2.2: no password in clear; RFC 3206 §4: [AUTH].
    let user = client.command(&format!("USER {}", ALICE.login));
    assert!(user.starts_with("-ERR [AUTH] "), "{user}");
    let plain = plain_response(ALICE.login, ALICE.password);
    let auth = client.command(&format!("AUTH PLAIN {plain}"));
    assert!(auth.starts_with("-ERR [AUTH] "), "{auth}");
    assert!(client.command("QUIT").starts_with("+OK"));

    // After STLS the logins are offered and work (checked by poplib, verifying the server).
    server.poplib(&[
        "session",
        "--transport",
        "stls",
        "--plaintext",
        "refused",
        "--port",
        &server.pop3.to_string(),
        "--expect",
        path_text(&expected),
    ]);
}

#[test]
fn auth_plain_logs_in_with_and_without_an_initial_response() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 1);
    let plain = plain_response(ALICE.login, ALICE.password);

    let mut client = server.client();
    assert_eq!(client.multiline_after("AUTH"), b"PLAIN\r\n.\r\n");
    let reply = client.command(&format!("AUTH PLAIN {plain}"));
    assert!(reply.starts_with("+OK "), "{reply}");
    assert!(client.command("STAT").starts_with("+OK 1 "));
    assert_eq!(client.command("QUIT"), "+OK bye");

    let mut client = server.client();
    assert_eq!(client.command("AUTH PLAIN"), "+ ");
    let reply = client.command(&plain);
    assert!(reply.starts_with("+OK "), "{reply}");
    assert_eq!(client.command("QUIT"), "+OK bye");

    // RFC 5034 §4: `*` cancels the exchange, and the session can still log in.
    let mut client = server.client();
    assert_eq!(client.command("AUTH PLAIN"), "+ ");
    assert!(client.command("*").starts_with("-ERR"));
    assert!(client.command("AUTH CRAM-MD5").starts_with("-ERR"));
    let reply = client.command(&format!("auth plain {plain}"));
    assert!(reply.starts_with("+OK "), "{reply}");
    assert_eq!(client.command("QUIT"), "+OK bye");
}

#[test]
fn login_failures_for_every_reason_get_byte_identical_replies_on_the_ldif_quick_start() {
    let server = TestServer::start(Setup::quick_start());
    check_login_failures_are_identical(&server);
}

#[test]
fn login_failures_for_every_reason_get_byte_identical_replies_on_slapd() {
    let server = TestServer::start(Setup {
        backend: Backend::Slapd,
        ..Setup::quick_start()
    });
    check_login_failures_are_identical(&server);
}

#[test]
fn an_empty_password_gets_the_same_reply_as_a_wrong_one_on_the_ldif_quick_start() {
    let server = TestServer::start(Setup::quick_start());
    check_empty_password_reply(&server);
}

#[test]
fn an_empty_password_gets_the_same_reply_as_a_wrong_one_on_slapd() {
    let server = TestServer::start(Setup {
        backend: Backend::Slapd,
        ..Setup::quick_start()
    });
    check_empty_password_reply(&server);
}

/// Wrong password, unknown user, disabled mailbox, a tenant without the pop3 service: one
/// reply, byte for byte, through USER/PASS and through AUTH PLAIN with and without an initial
/// response, so the replies tell an attacker nothing about the account.
fn check_login_failures_are_identical(server: &TestServer) {
    let reasons = [
        ("wrong password", ALICE.login, "not-alice-pw"),
        ("unknown user", "nobody@acme.test", "nobody-pw"),
        ("disabled mailbox", "ivan@acme.test", "ivan-pw"),
        ("no pop3 service", "rita@readonly.test", "rita-pw"),
    ];
    let mut replies: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (reason, login, password) in reasons {
        for reply in failure_replies(server, login, password) {
            replies.entry(reply).or_default().push(reason);
        }
    }
    assert_eq!(replies.len(), 1, "replies differ by reason: {replies:#?}");
    let reply = replies.keys().next().expect("one reply");
    assert!(reply.starts_with("-ERR [AUTH] "), "{reply}");

    // The server does log in with the right password, so the failures were about the reasons.
    let mut client = server.client();
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    assert_eq!(client.command("QUIT"), "+OK bye");
    assert!(
        server.log_text().contains("login refused"),
        "{}",
        server.log_text()
    );
}

/// An empty password is a failed login like any other (RFC 1939 §7: PASS takes a string;
/// RFC 4616 §2: PLAIN allows an empty one), with the same reply.
fn check_empty_password_reply(server: &TestServer) {
    let wrong = failure_replies(server, ALICE.login, "not-alice-pw");
    let mut client = server.client();
    assert_eq!(
        client.command(&format!("USER {}", ALICE.login)),
        "+OK send PASS"
    );
    let pass = client.command("PASS ");
    let plain = client.command(&format!("AUTH PLAIN {}", plain_response(ALICE.login, "")));
    assert_eq!(pass, wrong[0], "PASS with an empty password");
    assert_eq!(plain, wrong[1], "AUTH PLAIN with an empty password");
}

/// The replies to a failed login through USER/PASS, AUTH PLAIN with an initial response and
/// AUTH PLAIN after a continuation, each on a new connection.
fn failure_replies(server: &TestServer, login: &str, password: &str) -> Vec<String> {
    let plain = plain_response(login, password);
    let mut client = server.client();
    let user = client.command(&format!("USER {login}"));
    assert_eq!(user, "+OK send PASS", "USER {login}");
    let pass = client.command(&format!("PASS {password}"));

    let mut client = server.client();
    let inline = client.command(&format!("AUTH PLAIN {plain}"));

    let mut client = server.client();
    assert_eq!(client.command("AUTH PLAIN"), "+ ");
    let continued = client.command(&plain);
    vec![pass, inline, continued]
}

// --- the maildrop: UIDL, DELE, RSET, QUIT, locks ---

#[test]
fn uidl_is_stable_across_sessions_and_a_server_restart() {
    let mut server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 3);
    let first = uidl(&server, ALICE);
    assert_eq!(first.len(), 3);
    assert_eq!(uidl(&server, ALICE), first, "second session");

    server.restart();
    assert_eq!(uidl(&server, ALICE), first, "after a restart");

    // A new message gets a new id; the others keep theirs.
    server.deliver_samples(ALICE, 1);
    let later = uidl(&server, ALICE);
    assert_eq!(later.len(), 4);
    let old: BTreeSet<&String> = first.values().collect();
    let now: BTreeSet<&String> = later.values().collect();
    assert!(old.is_subset(&now), "{first:?} vs {later:?}");
}

#[test]
fn dele_then_rset_keeps_every_message() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 3);
    let before = uidl(&server, ALICE);

    let mut client = server.client();
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    for number in 1..=3 {
        assert_eq!(
            client.command(&format!("DELE {number}")),
            format!("+OK message {number} deleted")
        );
    }
    assert!(client.command("STAT").starts_with("+OK 0 0"));
    assert_eq!(client.command("RSET"), "+OK");
    assert!(client.command("STAT").starts_with("+OK 3 "));
    assert_eq!(client.command("QUIT"), "+OK bye");

    assert_eq!(server.messages(ALICE).len(), 3);
    assert_eq!(uidl(&server, ALICE), before);
}

#[test]
fn dele_then_a_dropped_connection_removes_nothing() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 3);
    let before = uidl(&server, ALICE);

    let mut client = server.client();
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    assert!(client.command("DELE 1").starts_with("+OK"));
    assert!(client.command("DELE 3").starts_with("+OK"));
    // The socket closes without QUIT: RFC 1939 §6, no UPDATE state.
    drop(client);

    let mut client = server.client_logged_in(ALICE);
    assert!(client.command("STAT").starts_with("+OK 3 "));
    assert_eq!(client.command("QUIT"), "+OK bye");
    assert_eq!(server.messages(ALICE).len(), 3);
    assert_eq!(uidl(&server, ALICE), before);
}

#[test]
fn dele_then_quit_removes_exactly_the_marked_messages() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 4);
    let listed = server.messages(ALICE);
    let before = uidl(&server, ALICE);

    let mut client = server.client();
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    assert!(client.command("DELE 2").starts_with("+OK"));
    assert!(client.command("DELE 4").starts_with("+OK"));
    assert_eq!(client.command("QUIT"), "+OK bye");

    let left: Vec<String> = server.messages(ALICE).into_iter().map(|m| m.id).collect();
    assert_eq!(left, vec![listed[0].id.clone(), listed[2].id.clone()]);
    let after = uidl(&server, ALICE);
    assert_eq!(after.len(), 2);
    assert_eq!(after[&1], before[&1]);
    assert_eq!(after[&2], before[&3]);
}

#[test]
fn a_second_concurrent_session_gets_in_use_until_the_first_quits() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 1);
    let mut first = server.client();
    assert!(first.login(ALICE.login, ALICE.password).starts_with("+OK"));

    // RFC 2449 §8.1.1: [IN-USE] while another session holds the maildrop.
    let mut second = server.client();
    let reply = second.login(ALICE.login, ALICE.password);
    assert!(reply.starts_with("-ERR [IN-USE] "), "{reply}");
    assert!(
        first.command("STAT").starts_with("+OK 1 "),
        "the first goes on"
    );
    let reply = second.login(ALICE.login, ALICE.password);
    assert!(reply.starts_with("-ERR [IN-USE] "), "{reply}");

    assert_eq!(first.command("QUIT"), "+OK bye");
    assert!(released(&server.maildir(ALICE).root().join(LOCK_FILE)));
    let reply = second.login(ALICE.login, ALICE.password);
    assert!(reply.starts_with("+OK "), "{reply}");
    assert_eq!(second.command("QUIT"), "+OK bye");
}

#[test]
fn a_stale_lock_left_by_a_killed_server_is_taken_over_and_a_fresh_one_is_respected() {
    let mut server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 2);
    let lock = server.maildir(ALICE).root().join(LOCK_FILE);

    let mut client = server.client();
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    assert!(client.command("DELE 1").starts_with("+OK"));
    server.kill();
    drop(client);
    assert!(lock.is_file(), "SIGKILL leaves the lock file behind");

    // A lock as fresh as this one could belong to a live session on another replica.
    server.start_again();
    let mut client = server.client();
    let reply = client.login(ALICE.login, ALICE.password);
    assert!(reply.starts_with("-ERR [IN-USE] "), "{reply}");

    // Once it is older than STALE_AFTER its holder is taken for dead.
    age(&lock, STALE_AFTER + Duration::from_secs(10));
    let reply = client.login(ALICE.login, ALICE.password);
    assert_eq!(
        reply, "+OK logged in, 2 messages",
        "the killed session's DELE is void"
    );
    assert_eq!(client.command("QUIT"), "+OK bye");
    assert!(released(&lock), "QUIT released the lock");

    // The same with a lock file as a process killed elsewhere leaves it: old, a foreign token.
    fs::write(&lock, "4242-00000000deadbeef\n").unwrap();
    let mut client = server.client();
    let reply = client.login(ALICE.login, ALICE.password);
    assert!(
        reply.starts_with("-ERR [IN-USE] "),
        "fresh foreign lock: {reply}"
    );
    age(&lock, STALE_AFTER + Duration::from_secs(1));
    let reply = client.login(ALICE.login, ALICE.password);
    assert!(reply.starts_with("+OK "), "stale foreign lock: {reply}");
    let leftovers: Vec<_> = fs::read_dir(server.maildir(ALICE).root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("mailfold-pop3"))
        .collect();
    assert_eq!(leftovers, vec![LOCK_FILE.to_string()], "only the new lock");
    assert_eq!(client.command("QUIT"), "+OK bye");
}

// --- message content: TOP, line ends, dot-stuffing, size ---

#[test]
fn top_sends_the_header_and_zero_or_n_body_lines_dot_stuffed() {
    let server = TestServer::start(Setup::quick_start());
    let message = b"From: a@acme.test\r\nSubject: top\r\n\r\nfirst\r\n.second\r\nthird\r\n";
    server.deliver(ALICE, message);
    let header = "From: a@acme.test\r\nSubject: top\r\n\r\n";

    let mut client = server.client_logged_in(ALICE);
    let cases = [
        (0, format!("{header}.\r\n")),
        (2, format!("{header}first\r\n..second\r\n.\r\n")),
        (3, format!("{header}first\r\n..second\r\nthird\r\n.\r\n")),
        (99, format!("{header}first\r\n..second\r\nthird\r\n.\r\n")),
    ];
    for (lines, expected) in cases {
        let body = client.multiline_after(&format!("TOP 1 {lines}"));
        assert_eq!(String::from_utf8_lossy(&body), expected, "TOP 1 {lines}");
    }
    assert!(client.command("TOP 2 0").starts_with("-ERR"));
    assert!(client.command("TOP 1").starts_with("-ERR"));
    assert!(
        client.command("NOOP").starts_with("+OK"),
        "the session goes on"
    );
    assert_eq!(client.command("QUIT"), "+OK bye");
}

/// Lines that start with a dot, one that is only a dot, bare LF line ends, no final newline.
const DOTTED_BARE_LF: &[u8] = b"From: dots@example.test\nTo: alice@acme.test\nSubject: dots\n\n\
.leading dot\n..two dots\n.\nplain line\n. space after\nlast line without newline";

#[test]
fn bare_lf_and_leading_dots_come_out_as_crlf_with_dot_stuffing() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver(ALICE, DOTTED_BARE_LF);

    // The exact wire form (RFC 1939 §3): CRLF everywhere, a dot before each leading dot.
    let wire = "From: dots@example.test\r\nTo: alice@acme.test\r\nSubject: dots\r\n\r\n\
                ..leading dot\r\n...two dots\r\n..\r\nplain line\r\n.. space after\r\n\
                last line without newline\r\n.\r\n";
    let mut client = server.client_logged_in(ALICE);
    let body = client.multiline_after("RETR 1");
    assert_eq!(String::from_utf8_lossy(&body), wire);
    assert_eq!(client.command("QUIT"), "+OK bye");

    // poplib removes the stuffing: its lines are the stored lines.
    let expected = server.expect_folder(ALICE);
    server.poplib(&[
        "retrieve",
        "--transport",
        "implicit",
        "--port",
        &server.pop3s.to_string(),
        "--expect",
        path_text(&expected),
    ]);
}

#[test]
fn list_and_stat_give_a_bare_lf_message_its_size_in_crlf_form() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver(ALICE, DOTTED_BARE_LF);

    // RFC 1939 §11 ("Message Format"): the size counts CRLF line ends, whatever the local
    // convention for end-of-line; dot-stuffing and the final "." are not counted.
    let crlf = String::from_utf8_lossy(DOTTED_BARE_LF).replace('\n', "\r\n") + "\r\n";
    let crlf_size = crlf.len();
    let mut client = server.client_logged_in(ALICE);
    assert_eq!(client.command("LIST 1"), format!("+OK 1 {crlf_size}"));
    assert_eq!(client.command("STAT"), format!("+OK 1 {crlf_size}"));
    assert_eq!(client.command("QUIT"), "+OK bye");
}

#[test]
fn a_100_mib_message_is_retrieved_while_server_peak_memory_grows_under_32_mib() {
    const SIZE: usize = 100 << 20;
    let server = TestServer::start(Setup::quick_start());
    let spool = server.folder.path().join("big.eml");
    {
        let mut file = std::io::BufWriter::new(fs::File::create(&spool).unwrap());
        let header = b"From: big@example.test\r\nSubject: 100 MiB\r\n\r\n";
        file.write_all(header).unwrap();
        let mut written = header.len();
        let mut line = 0usize;
        while written < SIZE {
            let text = format!("{line:08} {}\r\n", "x".repeat(88));
            file.write_all(text.as_bytes()).unwrap();
            written += text.len();
            line += 1;
        }
        file.flush().unwrap();
    }
    let size = fs::metadata(&spool).unwrap().len();
    server.deliver_file(FRANK, &spool);

    // A session first, so start-up costs are in the baseline, not in the growth.
    let mut client = server.client_logged_in(FRANK);
    assert_eq!(client.command("LIST 1"), format!("+OK 1 {size}"));
    assert_eq!(client.command("QUIT"), "+OK bye");
    let pid = server.pid();
    let before = peak_rss(pid);

    let out = server.folder.path().join("big.out");
    let started = Instant::now();
    let status = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "300", "-u"])
        .arg(format!("{}:{}", FRANK.login, FRANK.password))
        .arg(format!("pop3://127.0.0.1:{}/1", server.pop3))
        .arg("--output")
        .arg(&out)
        .status()
        .expect("running curl");
    assert!(status.success(), "curl: {status}\n{}", server.log_text());
    let elapsed = started.elapsed();
    let after = peak_rss(pid);

    assert!(same_content(&spool, &out), "the retrieved message differs");
    let growth = after.saturating_sub(before);
    eprintln!(
        "RETR of {size} bytes in {elapsed:?}: peak RSS {} KiB -> {} KiB",
        before >> 10,
        after >> 10
    );
    assert!(
        growth < 32 << 20,
        "peak RSS grew by {} KiB (from {} KiB to {} KiB) in {elapsed:?}",
        growth >> 10,
        before >> 10,
        after >> 10
    );
}

// --- protocol errors, limits, PROXY ---

#[test]
fn an_overlong_line_gets_err_and_the_session_continues() {
    let server = TestServer::start(Setup::quick_start());
    server.deliver_samples(ALICE, 1);
    let long = format!("NOOP {}", "x".repeat(5000));

    let mut client = server.client();
    assert!(client.command(&long).starts_with("-ERR"));
    assert!(client.command("CAPA").starts_with("+OK"));
    client.read_until_terminator();
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    let long_user = format!("USER {}", "y".repeat(2000));
    assert!(client.command(&long_user).starts_with("-ERR"));
    assert!(client.command("STAT").starts_with("+OK 1 "));
    assert_eq!(client.command("QUIT"), "+OK bye");
}

#[test]
fn ten_unknown_commands_close_the_connection() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.client();
    for _ in 0..9 {
        assert!(client.command("XYZZY").starts_with("-ERR"));
    }
    assert!(
        client.command("CAPA").starts_with("+OK"),
        "nine errors are tolerated"
    );
    client.read_until_terminator();
    assert!(client.command("XYZZY").starts_with("-ERR"));
    assert!(client.closes(), "still open after ten errors");
}

#[test]
fn protocol_errors_of_every_kind_count_toward_the_limit_of_ten() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.client();
    let long = format!("NOOP {}", "x".repeat(3000));
    // Unknown words, over-long lines, then commands the AUTHORIZATION state does not take.
    let errors = [
        "XYZZY", "HELO x", &long, &long, "STAT", "RETR 1", "LIST", "PASS x", "DELE 1", "UIDL",
    ];
    for line in errors {
        let reply = client.command(line);
        assert!(reply.starts_with("-ERR"), "{line:.20}: {reply}");
    }
    assert!(client.closes(), "still open after ten protocol errors");
}

#[test]
fn a_proxy_v2_header_sets_the_client_address_for_policy_and_the_connection_log() {
    let server = TestServer::start(Setup {
        proxy_protocol: true,
        ..Setup::quick_start()
    });
    server.deliver_samples(ALICE, 1);

    // From a public address, plaintext = "loopback" refuses logins in clear.
    let remote = proxy_v2_header([203, 0, 113, 7], 4242, server.pop3);
    let mut client = Client::connect_after(server.pop3, &remote);
    let capa = client.multiline_after("CAPA");
    assert!(
        !String::from_utf8_lossy(&capa).contains("USER"),
        "not loopback"
    );
    let user = client.command(&format!("USER {}", ALICE.login));
    assert!(user.starts_with("-ERR [AUTH] "), "{user}");
    assert_eq!(client.command("QUIT"), "+OK bye");

    // From a loopback address the session logs in and works.
    let local = proxy_v2_header([127, 0, 0, 2], 4343, server.pop3);
    let mut client = Client::connect_after(server.pop3, &local);
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    assert!(client.command("STAT").starts_with("+OK 1 "));
    assert_eq!(client.command("QUIT"), "+OK bye");

    // PROXY §2: a listener that expects the header does not serve a client without one: no
    // greeting, and a first line that is not a header ends the connection.
    let mut bare = Client::raw(server.pop3);
    assert!(
        !bare.greeted_within(Duration::from_secs(1)),
        "greeted without a header"
    );
    bare.send(&format!("USER {}", ALICE.login));
    assert!(bare.closes(), "served a connection without a PROXY header");

    let log = server.wait_for_log("peer=127.0.0.2:4343");
    assert!(
        log.contains("pop3 connection peer=203.0.113.7:4242"),
        "{log}"
    );
    assert!(log.contains("pop3 connection peer=127.0.0.2:4343"), "{log}");
}

#[test]
fn every_log_line_of_a_proxied_session_names_the_client_from_the_header() {
    let server = TestServer::start(Setup {
        proxy_protocol: true,
        ..Setup::quick_start()
    });
    let local = proxy_v2_header([127, 0, 0, 2], 4444, server.pop3);
    let mut client = Client::connect_after(server.pop3, &local);
    assert!(client.login(ALICE.login, ALICE.password).starts_with("+OK"));
    assert_eq!(client.command("QUIT"), "+OK bye");

    let log = server.wait_for_log("maildrop updated");
    let session: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("login accepted") || l.contains("maildrop"))
        .collect();
    assert!(!session.is_empty(), "{log}");
    for line in session {
        assert!(
            line.contains("peer=127.0.0.2:4444") && !line.contains("peer=127.0.0.1:"),
            "the line names the balancer, not the client: {line}"
        );
    }
}

// --- the test server ---

/// Where the directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// The quick start's LDIF file (plus the conformance entries).
    Ldif,
    /// A private slapd with the same entries.
    Slapd,
}

/// How a test server is configured.
#[derive(Debug, Clone, Copy)]
struct Setup {
    backend: Backend,
    /// `[pop3] plaintext`.
    plaintext: &'static str,
    /// `[pop3] proxy_protocol`.
    proxy_protocol: bool,
}

impl Setup {
    /// The quick start as shipped: LDIF directory, plaintext from loopback, no PROXY.
    fn quick_start() -> Setup {
        Setup {
            backend: Backend::Ldif,
            plaintext: "loopback",
            proxy_protocol: false,
        }
    }
}

/// `mailfold serve` (pop3 and api roles) on a temporary copy of the quick start.
struct TestServer {
    folder: tempfile::TempDir,
    config: PathBuf,
    api: u16,
    pop3: u16,
    pop3s: u16,
    proxy_protocol: bool,
    server: Option<Server>,
    starts: usize,
    _slapd: Option<Slapd>,
}

impl TestServer {
    fn start(setup: Setup) -> TestServer {
        let folder = tempfile::tempdir().unwrap();
        let [api, pop3, pop3s] = free_ports();
        let slapd = (setup.backend == Backend::Slapd).then(|| {
            Slapd::start(SlapdOptions {
                suffix: SUFFIX.to_string(),
                data: fixture::data_files(),
                tls: false,
            })
            .unwrap_or_else(|e| panic!("starting slapd: {e}"))
        });
        let config = write_config(folder.path(), setup, (api, pop3, pop3s), slapd.as_ref());
        let mut server = TestServer {
            folder,
            config,
            api,
            pop3,
            pop3s,
            proxy_protocol: setup.proxy_protocol,
            server: None,
            starts: 0,
            _slapd: slapd,
        };
        server.start_again();
        server
    }

    /// Starts the process (again), and waits until POP3 answers on both listeners.
    fn start_again(&mut self) {
        assert!(self.server.is_none(), "already running");
        self.starts += 1;
        let log = self
            .folder
            .path()
            .join(format!("serve-{}.log", self.starts));
        let ready = format!("http://127.0.0.1:{}/readyz", self.api);
        self.server = Some(Server::start(&self.config, log, &ready));

        // The api role answers before the pop3 listeners are bound: wait for a greeting.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.greets(self.pop3) {
            assert!(
                Instant::now() < deadline,
                "no pop3 greeting:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        while TcpStream::connect(("127.0.0.1", self.pop3s)).is_err() {
            assert!(
                Instant::now() < deadline,
                "no pop3s listener:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn greets(&self, port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        if self.proxy_protocol {
            let _ = stream.write_all(&proxy_v2_local());
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut greeting = [0u8; 3];
        stream.read_exact(&mut greeting).is_ok() && &greeting == b"+OK"
    }

    /// SIGTERM, then a new process on the same configuration and state.
    fn restart(&mut self) {
        let mut server = self.server.take().expect("running");
        let status = server.terminate();
        assert!(status.success(), "{status}:\n{}", server.log_text());
        self.start_again();
    }

    /// SIGKILL, as a crash or the OOM killer would end it.
    fn kill(&mut self) {
        drop(self.server.take().expect("running"));
    }

    /// Everything every process of this test wrote to standard error.
    fn log_text(&self) -> String {
        (1..=self.starts)
            .map(|n| fs::read_to_string(self.folder.path().join(format!("serve-{n}.log"))))
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The log once it contains `text`, waiting up to 5 seconds.
    fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log_text();
            if log.contains(text) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of the running server, found by its unique configuration path.
    fn pid(&self) -> u32 {
        let config = self.config.to_string_lossy().into_owned();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let arguments: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if arguments.iter().any(|a| a == "serve") && arguments.contains(&config) {
                return pid;
            }
        }
        panic!("no mailfold serve process for {config}");
    }

    /// The self-signed certificate the server made in its state folder.
    fn certificate(&self) -> PathBuf {
        self.folder.path().join("var/tls/selfsigned.crt")
    }

    fn maildir(&self, account: Account) -> Maildir {
        let shards = BTreeMap::from([("local".to_string(), self.folder.path().join("var/mail"))]);
        Store::new(shards)
            .mailbox("local", account.store, QuotaLimit::default())
            .unwrap()
    }

    /// The mailbox's INBOX in the order the server numbers it.
    fn messages(&self, account: Account) -> Vec<MessageInfo> {
        self.maildir(account).list(None).unwrap()
    }

    /// Delivers `message` as the store's delivery path does.
    fn deliver(&self, account: Account, message: &[u8]) {
        let spool = tempfile::NamedTempFile::new_in(self.folder.path()).unwrap();
        fs::write(spool.path(), message).unwrap();
        self.deliver_file(account, spool.path());
    }

    fn deliver_file(&self, account: Account, spool: &Path) {
        let maildir = self.maildir(account);
        let recipient = Recipient {
            maildir: &maildir,
            prefix: None,
        };
        for result in deliver(spool, &[recipient]) {
            result.unwrap_or_else(|e| panic!("delivering to {}: {e}", account.login));
        }
    }

    /// Delivers `count` distinct CRLF messages, each with a unique marker line and a body
    /// line starting with a dot; returns the folder [`TestServer::expect_folder`] writes.
    fn deliver_samples(&self, account: Account, count: usize) -> PathBuf {
        for _ in 0..count {
            let marker = format!("marker-{:016x}", random());
            let message = format!(
                "From: sender@example.test\r\nTo: {}\r\nSubject: {marker}\r\n\r\n{marker}\r\n\
                 second line\r\n.a line starting with a dot\r\nlast line\r\n",
                account.login
            );
            self.deliver(account, message.as_bytes());
        }
        self.expect_folder(account)
    }

    /// The mailbox's messages as 1.eml, 2.eml, ... in maildrop order, for the poplib script.
    fn expect_folder(&self, account: Account) -> PathBuf {
        let folder = self
            .folder
            .path()
            .join(format!("expect-{:08x}", random() as u32));
        fs::create_dir(&folder).unwrap();
        for (index, message) in self.messages(account).iter().enumerate() {
            fs::write(folder.join(format!("{}.eml", index + 1)), content(message)).unwrap();
        }
        folder
    }

    /// A plain connection past the greeting.
    fn client(&self) -> Client {
        if self.proxy_protocol {
            return Client::connect_after(self.pop3, &proxy_v2_local());
        }
        Client::connect_after(self.pop3, &[])
    }

    /// A session logged in as `account`, waiting while an ending session still holds the lock.
    fn client_logged_in(&self, account: Account) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut client = self.client();
        loop {
            let reply = client.login(account.login, account.password);
            if reply.starts_with("+OK") {
                return client;
            }
            assert!(reply.starts_with("-ERR [IN-USE]"), "login: {reply}");
            assert!(Instant::now() < deadline, "maildrop still locked");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs tests/clients/poplib_session.py with the account and certificate filled in.
    fn poplib(&self, arguments: &[&str]) -> Output {
        let script = repo_root().join("tests/clients/poplib_session.py");
        let output = Command::new("python3")
            .arg(&script)
            .args(arguments)
            .args([
                "--user",
                ALICE.login,
                "--password",
                ALICE.password,
                "--cafile",
            ])
            .arg(self.certificate())
            .output()
            .expect("running python3");
        assert!(
            output.status.success(),
            "poplib_session.py {arguments:?}: {}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log_text()
        );
        output
    }

    /// curl with alice's credentials and the server's certificate; `(body, stderr)`.
    fn curl(&self, arguments: &[&str]) -> (Vec<u8>, String) {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30", "--ssl-reqd"])
            .arg("--cacert")
            .arg(self.certificate())
            .arg("-u")
            .arg(format!("{}:{}", ALICE.login, ALICE.password))
            .args(arguments)
            .output()
            .expect("running curl");
        let trace = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "curl {arguments:?}: {}\n{trace}\nserver log:\n{}",
            output.status,
            self.log_text()
        );
        (output.stdout, trace)
    }

    /// One fetchmail poll with a private rcfile (mode 0600) and home; `(-v log, delivered)`.
    fn fetchmail(&self, account: Account, implicit_tls: bool, round: usize) -> (String, String) {
        let home = self.folder.path().join(format!("fetchmail-{round}"));
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        let rcfile = home.join("fetchmailrc");
        let port = if implicit_tls { self.pop3s } else { self.pop3 };
        let rc = format!(
            "set no syslog\npoll 127.0.0.1 service {port} protocol POP3 auth password\n  \
             user \"{}\" there with password \"{}\"\n",
            account.login, account.password
        );
        fs::write(&rcfile, rc).unwrap();
        fs::set_permissions(&rcfile, fs::Permissions::from_mode(0o600)).unwrap();
        let mailbox = home.join("delivered");

        let mut command = Command::new("fetchmail");
        command
            .env("FETCHMAILHOME", &home)
            .env("HOME", &home)
            .arg("-f")
            .arg(&rcfile)
            .arg("--pidfile")
            .arg(home.join("fetchmail.pid"))
            .args(["-v", "--nosyslog", "--nodetach", "--nokeep"])
            .args([
                "--sslproto",
                "tls1.2+",
                "--sslcertck",
                "--sslcommonname",
                "localhost",
            ])
            .arg("--sslcertfile")
            .arg(self.certificate())
            .arg("--mda")
            .arg(format!("cat >> {}", mailbox.display()));
        if implicit_tls {
            command.arg("--ssl");
        }
        let output = command.output().expect("running fetchmail");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "fetchmail: {}\n{log}\nserver log:\n{}",
            output.status,
            self.log_text()
        );
        let delivered = fs::read_to_string(&mailbox).unwrap_or_default();
        (log, delivered)
    }
}

/// The configuration: examples/quickstart.toml with ports, state and directory moved into the
/// test's folder, failed-login limits out of the way, and the test's options.
fn write_config(
    folder: &Path,
    setup: Setup,
    (api, pop3, pop3s): (u16, u16, u16),
    slapd: Option<&Slapd>,
) -> PathBuf {
    // The seed: the quick start plus the conformance entries (rita's tenant lacks pop3).
    let seed = fixture::write_seed(folder, None);

    let text = fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    let auth = "failure_delay = \"0ms\"\nmax_failures_per_ip = 100000\n\
                max_failures_per_account = 100000\n";
    let mut pop3_options = format!("plaintext = \"{}\"\n", setup.plaintext);
    if setup.proxy_protocol {
        pop3_options.push_str("proxy_protocol = true\n");
    }
    let mut swaps = fixture::state_swaps(&seed);
    swaps.extend([
        // The SMTP roles of the quick start are not under test here; their fixed ports
        // would collide between tests running at once.
        (
            "roles = [\"api\", \"pop3\", \"smtp\", \"lmtp\", \"queue\"]".into(),
            "roles = [\"api\", \"pop3\"]".into(),
        ),
        ("127.0.0.1:8080".into(), format!("127.0.0.1:{api}")),
        ("127.0.0.1:1110".into(), format!("127.0.0.1:{pop3}")),
        ("127.0.0.1:1995".into(), format!("127.0.0.1:{pop3s}")),
        ("plaintext = \"loopback\"\n".into(), pop3_options),
        ("failure_delay = \"1s\"\n".into(), auth.into()),
    ]);
    if let Some(slapd) = slapd {
        swaps.extend(fixture::ldap_swaps(slapd, "5s"));
    }
    let text = fixture::apply_swaps(text, &swaps);
    let path = folder.join("quickstart.toml");
    fs::write(&path, text).unwrap();
    path
}

// --- a raw POP3 client ---

/// One connection, speaking POP3 lines.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects, sends `prefix` (a PROXY header), and reads the `+OK` greeting.
    fn connect_after(port: u16, prefix: &[u8]) -> Client {
        let mut client = Client::raw(port);
        client.send_bytes(prefix);
        let greeting = client.reply();
        assert!(greeting.starts_with("+OK"), "greeting: {greeting}");
        client
    }

    /// Connects and reads nothing yet.
    fn raw(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to pop3");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("sending");
    }

    fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes());
    }

    /// The next line without its CRLF; `None` when the server closed the connection.
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with(b"\r\n"), "reply not ended by CRLF: {line:?}");
                line.truncate(line.len() - 2);
                Some(String::from_utf8_lossy(&line).into_owned())
            }
            Err(error) => panic!("reading a reply: {error}"),
        }
    }

    fn reply(&mut self) -> String {
        self.line().expect("a reply, not the end of the connection")
    }

    fn command(&mut self, line: &str) -> String {
        self.send(line);
        self.reply()
    }

    /// USER then PASS; the reply to PASS (or to USER when that failed).
    fn login(&mut self, login: &str, password: &str) -> String {
        let user = self.command(&format!("USER {login}"));
        if !user.starts_with("+OK") {
            return user;
        }
        self.command(&format!("PASS {password}"))
    }

    /// Sends `line`, expects `+OK`, returns the raw multi-line body up to and including the
    /// terminating `.` CRLF.
    fn multiline_after(&mut self, line: &str) -> Vec<u8> {
        let status = self.command(line);
        assert!(status.starts_with("+OK"), "{line}: {status}");
        self.read_until_terminator()
    }

    fn read_until_terminator(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let start = body.len();
            let read = self.reader.read_until(b'\n', &mut body).expect("reading");
            assert!(read > 0, "connection closed inside a multi-line reply");
            if &body[start..] == b".\r\n" {
                return body;
            }
        }
    }

    /// Whether anything arrives within `wait`.
    fn greeted_within(&mut self, wait: Duration) -> bool {
        self.reader.get_ref().set_read_timeout(Some(wait)).unwrap();
        let greeted = self.reader.fill_buf().is_ok_and(|bytes| !bytes.is_empty());
        self.reader
            .get_ref()
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .unwrap();
        greeted
    }

    /// Whether the server closes the connection within 5 seconds, after at most one more
    /// line (a parting `-ERR`).
    fn closes(&mut self) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        for _ in 0..2 {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return true,
                Ok(_) => continue,
                // Closing with unread input makes the kernel send a reset instead of a FIN.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// A PROXY protocol v2 header (PROXY §2.2): PROXY command, TCP over IPv4, from
/// `source:port` to 127.0.0.1:`destination`.
fn proxy_v2_header(source: [u8; 4], port: u16, destination: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&source);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&destination.to_be_bytes());
    header
}

/// A v2 LOCAL header: a balancer's own health check; the real peer address applies.
fn proxy_v2_local() -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    header
}

// --- small helpers ---

/// UIDL of a fresh session: message number to unique id.
fn uidl(server: &TestServer, account: Account) -> BTreeMap<usize, String> {
    let mut client = server.client_logged_in(account);
    let body = client.multiline_after("UIDL");
    assert_eq!(client.command("QUIT"), "+OK bye");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|line| *line != ".")
        .map(|line| {
            let (number, id) = line.split_once(' ').expect("number and id");
            (number.parse().unwrap(), id.to_string())
        })
        .collect()
}

/// The base64 SASL PLAIN response for `login` and `password` (RFC 4616 §2).
fn plain_response(login: &str, password: &str) -> String {
    base64(format!("\0{login}\0{password}").as_bytes())
}

fn content(message: &MessageInfo) -> Vec<u8> {
    fs::read(&message.path).unwrap()
}

/// The `marker-...` subject of a sample message.
fn marker_of(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let start = text.find("marker-").expect("a sample message");
    text[start..start + 23].to_string()
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 temporary path")
}

/// Sets a file's modification time `by` into the past.
fn age(path: &Path, by: Duration) {
    let file = fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

/// Whether the lock file goes within 5 seconds. RFC 1939 §6 has the lock released after the
/// reply to QUIT, and the session lets it go a moment later, when its heartbeat task ends.
fn released(lock: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The peak resident set of a process (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib << 10
}

/// Whether two files hold the same bytes, compared a chunk at a time.
fn same_content(a: &Path, b: &Path) -> bool {
    let (Ok(a), Ok(b)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    let (mut a, mut b) = (BufReader::new(a), BufReader::new(b));
    loop {
        let (left, right) = (a.fill_buf().unwrap(), b.fill_buf().unwrap());
        let n = left.len().min(right.len());
        if n == 0 {
            return left.is_empty() && right.is_empty();
        }
        if left[..n] != right[..n] {
            return false;
        }
        a.consume(n);
        b.consume(n);
    }
}

/// A random number from the standard library's per-process hasher seed.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish()
}
