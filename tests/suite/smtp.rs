//! The SMTP roles end to end: MX, submission (STARTTLS and implicit TLS) and LMTP of
//! `mailfold serve` on a temporary copy of the quick start (or on a private slapd), driven by
//! real clients — Python's smtplib and swaks — and, where the exact bytes matter, by raw
//! protocol lines over a socket.
//!
//! Every test starts its own server on free ports with its state in a temporary folder, and
//! counts what arrived in the mailboxes' Maildirs (`var/mail/<store>/new`). TLS clients verify
//! the certificate the server wrote to `<state_dir>/tls/selfsigned.crt`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailfold_tests::binary::{Server, free_ports};
use mailfold_tests::fixture::{self, ALICE, Account, BOB, CAROL, INFO, SUFFIX};
use mailfold_tests::slapd::{Slapd, SlapdOptions};
use mailfold_tests::{base64, repo_root};

/// A mailbox this suite adds, with room for 200 bytes only.
const TINY: Account = Account {
    login: "tiny@acme.test",
    password: "tiny-pw",
    store: "99/99/u-0999",
};

const TINY_LDIF: &str = "dn: uid=u-0999,ou=mailboxes,mailfoldDomainName=acme.test,ou=domains,\
 mailfoldTenantId=acme,o=tenants,dc=example,dc=test\nobjectClass: inetOrgPerson\n\
objectClass: mailfoldMailbox\nuid: u-0999\ncn: Tiny Tim\nsn: Tim\nmail: tiny@acme.test\n\
mailfoldAddress: tiny@acme.test\nmailfoldMailShard: local\nmailfoldMailStore: 99/99/u-0999\n\
mailfoldQuotaBytes: 200\n";

/// The largest message the test servers take (`[smtp] max_message_size`).
const MAX_MESSAGE: usize = 20_000;

/// How long a client waits for any reply before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

// --- MX ---

#[test]
fn swaks_delivers_one_copy_with_trace_headers_and_the_body_intact() {
    let server = TestServer::start(Setup::quick_start());
    let body = "Subject: hello alice\r\n\r\nfirst line\r\n.a line with a dot\r\nlast line\r\n";
    // swaks ends the data with CRLF . CRLF itself: the file leaves out the last line end.
    let file = server.write_file("hello.eml", body.trim_end().as_bytes());
    let output = server.swaks(&[
        "--port",
        &server.mx.to_string(),
        "--from",
        "sender@example.org",
        "--to",
        ALICE.login,
        "--data",
        path_text(&file),
    ]);
    assert!(
        output.contains("<~  250") || output.contains("<-  250 2.0.0"),
        "{output}"
    );

    let stored = server.messages(ALICE);
    assert_eq!(stored.len(), 1, "{}", server.log_text());
    let text = String::from_utf8_lossy(&stored[0]);
    assert!(
        text.starts_with("Return-Path: <sender@example.org>\r\n"),
        "{text}"
    );
    assert!(text.contains("Delivered-To: alice@acme.test\r\n"), "{text}");
    assert!(text.contains("Received: from "), "{text}");
    assert!(text.ends_with(body), "body changed:\n{text}");
}

#[test]
fn an_alias_delivers_once_per_mailbox_even_when_nested_and_repeated() {
    let server = TestServer::start(Setup::quick_start());
    // team -> sales (alice, bob), carol, alice: three mailboxes, alice only once.
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<team@acme.test>", "250");
    client.send_message(b"Subject: team\r\n\r\nfor the team\r\n");
    client.expect_reply("250");
    for account in [ALICE, BOB, CAROL] {
        assert_eq!(server.messages(account).len(), 1, "{}", account.login);
    }
}

#[test]
fn unknown_foreign_and_disabled_recipients_get_their_own_codes_and_nothing_is_stored() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    let unknown = client.command("RCPT TO:<nobody@acme.test>");
    assert!(unknown.starts_with("550 5.1.1 "), "{unknown}");
    let foreign = client.command("RCPT TO:<someone@elsewhere.example>");
    assert!(foreign.starts_with("550 5.7.1 "), "{foreign}");
    let disabled = client.command("RCPT TO:<ivan@acme.test>");
    assert!(disabled.starts_with("550 5.2.1 "), "{disabled}");
    let data = client.command("DATA");
    assert!(data.starts_with("503 "), "DATA without recipients: {data}");
    assert_eq!(server.messages(ALICE).len(), 0);
}

#[test]
fn the_alias_domain_and_the_catch_all_route_to_their_mailboxes() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<bob@acme-mail.test>", "250");
    client.expect("RCPT TO:<anything@globex.test>", "250");
    client.send_message(b"Subject: routes\r\n\r\nrouted\r\n");
    client.expect_reply("250");
    assert_eq!(server.messages(BOB).len(), 1);
    assert_eq!(server.messages(INFO).len(), 1);
}

#[test]
fn postmaster_without_a_domain_is_accepted_and_delivered() {
    // RFC 5321 §4.5.1: a server must accept RCPT TO:<Postmaster> (any case).
    let server = TestServer::start(Setup {
        postmaster: Some(ALICE.login),
        ..Setup::quick_start()
    });
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<Postmaster>", "250");
    client.send_message(b"Subject: abuse report\r\n\r\nreport\r\n");
    client.expect_reply("250");
    assert_eq!(server.messages(ALICE).len(), 1);
}

#[test]
fn postmaster_of_the_default_configuration_is_not_refused() {
    // The quick start as shipped must take RCPT TO:<Postmaster> (RFC 5321 §4.5.1), not treat
    // it as relaying.
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    let reply = client.command("RCPT TO:<Postmaster>");
    assert!(
        !reply.starts_with("550 5.7.1"),
        "postmaster refused as relaying: {reply}"
    );
}

// --- submission ---

#[test]
fn submission_needs_auth_before_mail() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.client(server.submission);
    client.ehlo();
    let reply = client.command(&format!("MAIL FROM:<{}>", ALICE.login));
    assert!(reply.starts_with("530 5.7.0 "), "{reply}");
}

#[test]
fn auth_plain_and_login_submit_after_starttls_and_over_implicit_tls() {
    let server = TestServer::start(Setup::quick_start());
    let message = server.write_file("note.eml", b"Subject: note\r\n\r\nfrom alice\r\n");
    let cases = [
        ("starttls", server.submission, "PLAIN"),
        ("starttls", server.submission, "LOGIN"),
        ("implicit", server.submissions, "PLAIN"),
        ("implicit", server.submissions, "LOGIN"),
    ];
    for (count, (transport, port, mechanism)) in cases.into_iter().enumerate() {
        let result = server.smtplib(transport, port, Some((ALICE, mechanism)), &message, |s| {
            s.args(["--sender", ALICE.login, "--rcpt", BOB.login])
        });
        let what = format!("{mechanism} over {transport}: {result}");
        assert!(result.contains("\"tls\": true"), "{what}");
        assert!(result.contains("\"auth\": [235, \"2.7.0 "), "{what}");
        assert!(result.contains("\"data\": [250, "), "{what}");
        assert_eq!(server.messages(BOB).len(), count + 1, "{what}");
    }
}

#[test]
fn a_wrong_password_gets_535_5_7_8() {
    let server = TestServer::start(Setup::quick_start());
    let message = server.write_file("note.eml", b"Subject: note\r\n\r\nx\r\n");
    let wrong = Account {
        password: "not-alice-pw",
        ..ALICE
    };
    let result = server.smtplib(
        "starttls",
        server.submission,
        Some((wrong, "PLAIN")),
        &message,
        |s| s.args(["--sender", ALICE.login, "--rcpt", BOB.login]),
    );
    assert!(result.contains("\"auth\": [535, \"5.7.8 "), "{result}");
    assert_eq!(server.messages(BOB).len(), 0);
}

#[test]
fn with_plaintext_never_auth_is_refused_before_starttls_and_works_after() {
    let server = TestServer::start(Setup {
        plaintext: "never",
        ..Setup::quick_start()
    });
    let mut client = server.client(server.submission);
    let ehlo = client.command("EHLO client.example.test");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered without TLS: {ehlo}");
    let plain = base64(format!("\0{}\0{}", ALICE.login, ALICE.password).as_bytes());
    let reply = client.command(&format!("AUTH PLAIN {plain}"));
    assert!(
        reply.starts_with('5') && !reply.starts_with("535"),
        "{reply}"
    );

    let message = server.write_file("note.eml", b"Subject: note\r\n\r\nx\r\n");
    let result = server.smtplib(
        "starttls",
        server.submission,
        Some((ALICE, "PLAIN")),
        &message,
        |s| s.args(["--sender", ALICE.login, "--rcpt", BOB.login]),
    );
    assert!(result.contains("\"data\": [250, "), "{result}");
}

#[test]
fn bob_may_send_as_robert_but_not_as_alice() {
    let server = TestServer::start(Setup::quick_start());
    let message = server.write_file("note.eml", b"Subject: note\r\n\r\nx\r\n");
    let own = server.smtplib(
        "implicit",
        server.submissions,
        Some((BOB, "PLAIN")),
        &message,
        |s| s.args(["--sender", "robert@acme.test", "--rcpt", ALICE.login]),
    );
    assert!(own.contains("\"data\": [250, "), "{own}");
    let other = server.smtplib(
        "implicit",
        server.submissions,
        Some((BOB, "PLAIN")),
        &message,
        |s| s.args(["--sender", ALICE.login, "--rcpt", ALICE.login]),
    );
    assert!(other.contains("\"mail\": [553, \"5.7.1 "), "{other}");
    assert_eq!(server.messages(ALICE).len(), 1);
}

#[test]
fn carol_without_the_smtp_service_cannot_log_in() {
    let server = TestServer::start(Setup::quick_start());
    let message = server.write_file("note.eml", b"Subject: note\r\n\r\nx\r\n");
    let result = server.smtplib(
        "starttls",
        server.submission,
        Some((CAROL, "LOGIN")),
        &message,
        |s| s.args(["--sender", CAROL.login, "--rcpt", ALICE.login]),
    );
    assert!(result.contains("\"auth\": [535, "), "{result}");
    assert_eq!(server.messages(ALICE).len(), 0);
}

// --- protocol edge cases ---

#[test]
fn smuggled_transactions_behind_bare_line_ends_are_never_delivered() {
    let server = TestServer::start(Setup::quick_start());
    let variants: [&[u8]; 4] = [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n"];
    for ending in variants {
        let mut client = server.mx_client();
        client.ehlo();
        client.expect("MAIL FROM:<sender@example.org>", "250");
        client.expect(&format!("RCPT TO:<{}>", ALICE.login), "250");
        client.expect("DATA", "354");
        let mut data = b"Subject: carrier\r\n\r\ncarrier".to_vec();
        data.extend_from_slice(ending);
        data.extend_from_slice(
            b"MAIL FROM:<ceo@acme.test>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n\
              Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n",
        );
        client.send_bytes(&data);
        let reply = client.reply();
        assert!(reply.starts_with("550 5.6.0 "), "{ending:?}: {reply}");
        // Whatever follows is answered as commands of this session, not as a second message.
        let next = client.command("NOOP");
        assert!(next.starts_with("250"), "{ending:?}: {next}");
        assert_eq!(client.command("QUIT").get(..3), Some("221"));
    }
    assert_eq!(server.messages(ALICE).len(), 0);
    assert_eq!(
        server.messages(BOB).len(),
        0,
        "a smuggled message reached bob"
    );
}

#[test]
fn commands_pipelined_behind_starttls_are_discarded() {
    let server = TestServer::start(Setup::quick_start());
    let output = Command::new("python3")
        .arg(repo_root().join("tests/clients/smtp_starttls_injection.py"))
        .args(["--port", &server.submission.to_string(), "--cafile"])
        .arg(server.certificate())
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The first reply after the handshake answers NOOP ("ok"), not the injected RSET.
    assert!(stdout.contains("after tls: 250 2.0.0 ok"), "{stdout}");
    assert!(
        !stdout.contains("reset"),
        "the injected RSET was answered: {stdout}"
    );
}

#[test]
fn mail_rcpt_and_data_pipelined_in_one_write_are_answered_in_order() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    let ehlo = client.command("EHLO client.example.test");
    assert!(ehlo.contains("PIPELINING"), "{ehlo}");
    client.send_bytes(
        b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@acme.test>\r\n\
          RCPT TO:<nobody@acme.test>\r\nRCPT TO:<bob@acme.test>\r\nDATA\r\n",
    );
    let replies: Vec<String> = (0..5).map(|_| client.reply()).collect();
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "550", "250", "354"], "{replies:?}");
    client.send_bytes(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    client.expect_reply("250");
    client.expect_reply("221");
    assert_eq!(server.messages(ALICE).len(), 1);
    assert_eq!(server.messages(BOB).len(), 1);
}

#[test]
fn a_message_split_across_many_writes_arrives_whole() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    client.ehlo();
    let mut session =
        b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@acme.test>\r\nDATA\r\n".to_vec();
    let body = b"Subject: slow\r\n\r\none\r\n..dot\r\ntwo\r\n".to_vec();
    session.extend_from_slice(&body);
    session.extend_from_slice(b".\r\n");
    // Three bytes at a time, so CRLF and the final dot are split between writes.
    for piece in session.chunks(3) {
        client.send_bytes(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    for code in ["250", "250", "354", "250"] {
        client.expect_reply(code);
    }
    let stored = server.messages(ALICE);
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].ends_with(b"Subject: slow\r\n\r\none\r\n.dot\r\ntwo\r\n"),
        "{}",
        String::from_utf8_lossy(&stored[0])
    );
}

#[test]
fn bdat_chunks_with_last_deliver_the_bytes_as_sent() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    let ehlo = client.command("EHLO client.example.test");
    assert!(ehlo.contains("CHUNKING"), "{ehlo}");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<alice@acme.test>", "250");
    let first = b"Subject: chunks\r\n\r\n.not stuffed\r\n";
    let second = b"second chunk\r\n";
    client.send_bytes(format!("BDAT {}\r\n", first.len()).as_bytes());
    client.send_bytes(first);
    client.expect_reply("250");
    client.send_bytes(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
    client.send_bytes(second);
    client.expect_reply("250");
    let stored = server.messages(ALICE);
    assert_eq!(stored.len(), 1);
    let mut expected = first.to_vec();
    expected.extend_from_slice(second);
    assert!(
        stored[0].ends_with(&expected),
        "{}",
        String::from_utf8_lossy(&stored[0])
    );
}

#[test]
fn a_message_over_the_size_limit_is_refused_at_mail_and_after_data() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    let ehlo = client.command("EHLO client.example.test");
    assert!(ehlo.contains(&format!("SIZE {MAX_MESSAGE}")), "{ehlo}");
    let declared = client.command(&format!(
        "MAIL FROM:<sender@example.org> SIZE={}",
        MAX_MESSAGE + 1
    ));
    assert!(declared.starts_with("552 5.3.4 "), "{declared}");

    // Undeclared, the size shows only in the data: refused after the final dot.
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<alice@acme.test>", "250");
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    while body.len() <= MAX_MESSAGE {
        body.extend_from_slice(&[b'x'; 78]);
        body.extend_from_slice(b"\r\n");
    }
    client.send_message(&body);
    let reply = client.reply();
    assert!(reply.starts_with("552 5.3.4 "), "{reply}");
    assert_eq!(server.messages(ALICE).len(), 0);
}

#[test]
fn an_eight_bit_body_with_body_8bitmime_is_stored_byte_for_byte() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    let ehlo = client.command("EHLO client.example.test");
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    client.expect("MAIL FROM:<sender@example.org> BODY=8BITMIME", "250");
    client.expect("RCPT TO:<alice@acme.test>", "250");
    let body = "Subject: caf\u{e9}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                Content-Transfer-Encoding: 8bit\r\n\r\nna\u{ef}ve \u{2603} \u{fc}ber\r\n";
    client.send_message(body.as_bytes());
    client.expect_reply("250");
    let stored = server.messages(ALICE);
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].ends_with(body.as_bytes()),
        "{}",
        String::from_utf8_lossy(&stored[0])
    );
}

#[test]
fn an_smtputf8_address_is_parsed_and_answered_as_an_unknown_user() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    let ehlo = client.command("EHLO client.example.test");
    assert!(ehlo.contains("SMTPUTF8"), "{ehlo}");
    client.expect("MAIL FROM:<s\u{e9}nder@example.org> SMTPUTF8", "250");
    let reply = client.command("RCPT TO:<j\u{f6}rg@acme.test>");
    assert!(reply.starts_with("550 5.1.1 "), "{reply}");
}

// --- LMTP ---

#[test]
fn lmtp_answers_each_recipient_after_data_and_a_full_mailbox_fails_alone() {
    let server = TestServer::start(Setup {
        extra: Some(TINY_LDIF),
        ..Setup::quick_start()
    });
    let mut client = server.client(server.lmtp);
    client.expect("LHLO edge.example.test", "250");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect(&format!("RCPT TO:<{}>", ALICE.login), "250");
    let tiny = client.command(&format!("RCPT TO:<{}>", TINY.login));
    let mut body = b"Subject: larger than tiny's quota\r\n\r\n".to_vec();
    body.extend_from_slice(&[b'y'; 400]);
    body.extend_from_slice(b"\r\n");
    client.send_message(&body);
    let alice = client.reply();
    assert!(alice.starts_with("250"), "alice: {alice}");
    if tiny.starts_with("250") {
        // RFC 2033 §4.2: its own reply after the data, a temporary one for a full mailbox.
        let reply = client.reply();
        assert!(reply.starts_with('4'), "tiny: {reply}");
    } else {
        assert!(
            tiny.starts_with("452") || tiny.starts_with("552"),
            "tiny at RCPT: {tiny}"
        );
    }
    assert_eq!(
        client.command("NOOP").get(..3),
        Some("250"),
        "one reply per recipient"
    );
    assert_eq!(server.messages(ALICE).len(), 1);
    assert_eq!(server.messages(TINY).len(), 0);
}

#[test]
fn lmtp_gives_one_reply_per_accepted_rcpt_even_for_an_alias() {
    // RFC 2033 §4.2: one reply for each successful RCPT, not one per mailbox behind it.
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.client(server.lmtp);
    client.expect("LHLO edge.example.test", "250");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<sales@acme.test>", "250");
    client.send_message(b"Subject: sales\r\n\r\nfor sales\r\n");
    client.expect_reply("250");
    let next = client.command("NOOP");
    assert_eq!(next, "250 2.0.0 ok", "a second data reply for one RCPT");
    assert_eq!(server.messages(ALICE).len(), 1);
    assert_eq!(server.messages(BOB).len(), 1);
}

// --- directory down ---

#[test]
fn with_the_directory_down_rcpt_is_deferred_and_succeeds_once_it_is_back() {
    let mut server = TestServer::start(Setup {
        backend: Backend::Slapd,
        ..Setup::quick_start()
    });
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    server.slapd.as_mut().expect("slapd").stop();
    let reply = client.command(&format!("RCPT TO:<{}>", BOB.login));
    assert!(reply.starts_with("451 4.3.0 "), "{reply}");

    server
        .slapd
        .as_mut()
        .expect("slapd")
        .restart()
        .unwrap_or_else(|e| panic!("restarting slapd: {e}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = client.command(&format!("RCPT TO:<{}>", BOB.login));
        if reply.starts_with("250") {
            break;
        }
        assert!(reply.starts_with("451"), "{reply}");
        assert!(
            Instant::now() < deadline,
            "still {reply}:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    client.send_message(b"Subject: retried\r\n\r\nafter the outage\r\n");
    client.expect_reply("250");
    assert_eq!(server.messages(BOB).len(), 1);
}

// --- the test server ---

/// Where the directory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Ldif,
    Slapd,
}

/// How a test server is configured.
#[derive(Debug, Clone, Copy)]
struct Setup {
    backend: Backend,
    /// `[smtp] plaintext`.
    plaintext: &'static str,
    /// `[smtp] postmaster`, when set.
    postmaster: Option<&'static str>,
    /// More entries, loaded after the quick start and the conformance data.
    extra: Option<&'static str>,
}

impl Setup {
    fn quick_start() -> Setup {
        Setup {
            backend: Backend::Ldif,
            plaintext: "loopback",
            postmaster: None,
            extra: None,
        }
    }
}

/// `mailfold serve` (api, smtp and lmtp roles) on a temporary copy of the quick start.
struct TestServer {
    folder: tempfile::TempDir,
    mx: u16,
    submission: u16,
    submissions: u16,
    lmtp: u16,
    server: Server,
    slapd: Option<Slapd>,
}

impl TestServer {
    fn start(setup: Setup) -> TestServer {
        let folder = tempfile::tempdir().unwrap();
        let ports = free_ports();
        let seed = fixture::write_seed(folder.path(), setup.extra);
        let slapd = (setup.backend == Backend::Slapd).then(|| {
            Slapd::start(SlapdOptions {
                suffix: SUFFIX.to_string(),
                data: vec![seed.clone()],
                tls: false,
            })
            .unwrap_or_else(|e| panic!("starting slapd: {e}"))
        });
        let config = write_config(folder.path(), &seed, setup, ports, slapd.as_ref());
        let log = folder.path().join("serve.log");
        let ready = format!("http://127.0.0.1:{}/readyz", ports[0]);
        let server = Server::start(&config, log, &ready);
        let server = TestServer {
            folder,
            mx: ports[1],
            submission: ports[2],
            submissions: ports[3],
            lmtp: ports[4],
            server,
            slapd,
        };
        // The api role answers before the SMTP listeners are bound: wait for each greeting.
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [server.mx, server.submission, server.lmtp] {
            while !greets(port) {
                assert!(
                    Instant::now() < deadline,
                    "no greeting on {port}:\n{}",
                    server.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        while TcpStream::connect(("127.0.0.1", server.submissions)).is_err() {
            assert!(
                Instant::now() < deadline,
                "no submissions listener:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log_text(&self) -> String {
        self.server.log_text()
    }

    fn certificate(&self) -> PathBuf {
        self.folder.path().join("var/tls/selfsigned.crt")
    }

    fn write_file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.folder.path().join(name);
        fs::write(&path, content).unwrap();
        path
    }

    /// The contents of the messages delivered to `account`, oldest first by file name.
    fn messages(&self, account: Account) -> Vec<Vec<u8>> {
        let new = self
            .folder
            .path()
            .join("var/mail")
            .join(account.store)
            .join("new");
        let Ok(entries) = fs::read_dir(&new) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths.iter().map(|p| fs::read(p).unwrap()).collect()
    }

    /// A connection to `port` past its 220 greeting.
    fn client(&self, port: u16) -> Client {
        let mut client = Client::connect(port);
        client.expect_reply("220");
        client
    }

    fn mx_client(&self) -> Client {
        self.client(self.mx)
    }

    /// swaks against 127.0.0.1 with `arguments`; its transcript.
    fn swaks(&self, arguments: &[&str]) -> String {
        let output = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--ehlo", "client.example.test"])
            .args(["--timeout", "20"])
            .args(arguments)
            .output()
            .expect("running swaks");
        let transcript = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "swaks {arguments:?}: {}\n{transcript}\nserver log:\n{}",
            output.status,
            self.log_text()
        );
        transcript
    }

    /// Runs tests/clients/smtp_session.py; the JSON line it prints.
    fn smtplib(
        &self,
        transport: &str,
        port: u16,
        login: Option<(Account, &str)>,
        message: &Path,
        more: impl FnOnce(&mut Command) -> &mut Command,
    ) -> String {
        let mut command = Command::new("python3");
        command
            .arg(repo_root().join("tests/clients/smtp_session.py"))
            .args(["--transport", transport, "--port", &port.to_string()])
            .arg("--cafile")
            .arg(self.certificate())
            .arg("--message")
            .arg(message);
        if let Some((account, mechanism)) = login {
            command.args(["--user", account.login, "--password", account.password]);
            command.args(["--mechanism", mechanism]);
        }
        let output = more(&mut command).output().expect("running python3");
        assert!(
            output.status.success(),
            "smtp_session.py: {}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
}

/// examples/quickstart.toml with ports, state and directory moved into the test's folder, the
/// pop3 role left out, and the test's options.
fn write_config(
    folder: &Path,
    seed: &Path,
    setup: Setup,
    [api, mx, submission, submissions, lmtp]: [u16; 5],
    slapd: Option<&Slapd>,
) -> PathBuf {
    let mut text = fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
    let mut smtp_options = format!(
        "plaintext = \"{}\"\nmax_message_size = {MAX_MESSAGE}\n",
        setup.plaintext
    );
    if let Some(postmaster) = setup.postmaster {
        // The quick start names a postmaster of its own: the test's replaces it.
        text = text.replace("postmaster = \"alice@acme.test\"\n", "");
        smtp_options.push_str(&format!("postmaster = \"{postmaster}\"\n"));
    }
    let mut swaps = fixture::state_swaps(seed);
    swaps.extend([
        (
            "roles = [\"api\", \"pop3\", \"smtp\", \"lmtp\", \"queue\"]".into(),
            "roles = [\"api\", \"smtp\", \"lmtp\"]".into(),
        ),
        ("127.0.0.1:8080".into(), format!("127.0.0.1:{api}")),
        ("127.0.0.1:2525".into(), format!("127.0.0.1:{mx}")),
        ("127.0.0.1:2587".into(), format!("127.0.0.1:{submission}")),
        ("127.0.0.1:2465".into(), format!("127.0.0.1:{submissions}")),
        ("127.0.0.1:2424".into(), format!("127.0.0.1:{lmtp}")),
        (
            "failure_delay = \"1s\"\n".into(),
            "failure_delay = \"0ms\"\n".into(),
        ),
    ]);
    // The second `plaintext = "loopback"` is the [smtp] one.
    let smtp_plaintext = text
        .rfind("plaintext = \"loopback\"\n")
        .expect("[smtp] plaintext");
    text.replace_range(
        smtp_plaintext..smtp_plaintext + "plaintext = \"loopback\"\n".len(),
        &smtp_options,
    );
    if let Some(slapd) = slapd {
        swaps.extend(fixture::ldap_swaps(slapd, "2s"));
    }
    let text = fixture::apply_swaps(text, &swaps);
    let path = folder.join("quickstart.toml");
    fs::write(&path, text).unwrap();
    path
}

// --- a raw SMTP client ---

/// One connection, speaking SMTP lines.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("sending");
    }

    /// One whole reply, its lines joined by `\n`, without the final CRLF.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = self
                .reader
                .read_until(b'\n', &mut line)
                .expect("reading a reply");
            assert!(read > 0, "connection closed; replies so far: {lines:?}");
            assert!(line.ends_with(b"\r\n"), "reply not ended by CRLF: {line:?}");
            line.truncate(line.len() - 2);
            let text = String::from_utf8_lossy(&line).into_owned();
            // RFC 5321 §4.2.1: `code-` continues, `code ` ends the reply.
            let last = text.as_bytes().get(3) != Some(&b'-');
            lines.push(text);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn command(&mut self, line: &str) -> String {
        self.send_bytes(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn expect_reply(&mut self, code: &str) {
        let reply = self.reply();
        assert!(reply.starts_with(code), "expected {code}, got {reply}");
    }

    fn expect(&mut self, line: &str, code: &str) {
        let reply = self.command(line);
        assert!(
            reply.starts_with(code),
            "{line}: expected {code}, got {reply}"
        );
    }

    fn ehlo(&mut self) {
        self.expect("EHLO client.example.test", "250");
    }

    /// DATA, then `message` (CRLF lines, dot-stuffed here) and the final dot; the reply to
    /// the data is left for the caller.
    fn send_message(&mut self, message: &[u8]) {
        self.expect("DATA", "354");
        let mut data = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            // RFC 5321 §4.5.2: a line starting with a dot gets another.
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        self.send_bytes(&data);
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 temporary path")
}

#[test]
fn a_shard_that_is_not_there_defers_and_loses_nothing() {
    let server = TestServer::start(Setup::quick_start());
    let shard = server.folder.path().join("var/mail");
    let away = server.folder.path().join("var/mail.away");
    fs::rename(&shard, &away).unwrap();

    // Invariant 2: a storage failure is a 4xx, never a bounce.
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    let reply = client.command(&format!("RCPT TO:<{}>", ALICE.login));
    assert!(
        reply.starts_with("451 4.3.0 "),
        "{reply}\n{}",
        server.log_text()
    );
    client.expect("RSET", "250");

    // The volume is back: the retried message is delivered, once.
    fs::rename(&away, &shard).unwrap();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect(&format!("RCPT TO:<{}>", ALICE.login), "250");
    client.send_message(b"Subject: retried\r\n\r\nonce\r\n");
    client.expect_reply("250");
    let delivered = server.messages(ALICE);
    assert_eq!(delivered.len(), 1);
    assert!(String::from_utf8_lossy(&delivered[0]).ends_with("\r\nonce\r\n"));
}

#[test]
fn postfix_smtp_source_delivers_every_message_of_a_parallel_load() {
    let server = TestServer::start(Setup::quick_start());
    // smtp-source (Debian's postfix package): 5 parallel sessions, 100 messages of 2 KiB.
    let output = std::process::Command::new("/usr/sbin/smtp-source")
        .args([
            "-s",
            "5",
            "-m",
            "100",
            "-l",
            "2048",
            "-f",
            "load@example.org",
            "-t",
        ])
        .arg(ALICE.login)
        .arg(format!("127.0.0.1:{}", server.mx))
        .output()
        .expect("smtp-source runs (tests/install-deps.sh installs postfix)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let delivered = server.messages(ALICE);
    assert_eq!(delivered.len(), 100, "{}", server.log_text());
    assert!(
        delivered
            .iter()
            .all(|m| m.starts_with(b"Return-Path: <load@example.org>\r\n"))
    );
}

#[test]
fn the_classic_open_relay_tricks_are_refused_and_nothing_is_stored() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.mx_client();
    client.ehlo();
    client.expect("MAIL FROM:<sender@example.org>", "250");
    for trick in [
        "RCPT TO:<victim%elsewhere.example@acme.test>",
        "RCPT TO:<elsewhere.example!victim@acme.test>",
        "RCPT TO:<\"victim@elsewhere.example\"@acme.test>",
        "RCPT TO:<@acme.test:victim@elsewhere.example>",
        "RCPT TO:<victim@elsewhere.example>",
        "RCPT TO:victim@elsewhere.example",
    ] {
        let reply = client.command(trick);
        assert!(reply.starts_with('5'), "{trick}: {reply}");
    }
    // Nothing was accepted, so there is nothing to send.
    client.expect("DATA", "503");
    for account in [ALICE, BOB] {
        assert!(server.messages(account).is_empty());
    }
}

#[test]
fn too_many_failed_logins_are_throttled_even_with_the_right_password() {
    let server = TestServer::start(Setup::quick_start());
    let mut client = server.client(server.submission);
    client.ehlo();
    let attempt = |client: &mut Client, password: &str| {
        let plain = base64(format!("\0{}\0{password}", BOB.login).as_bytes());
        client.command(&format!("AUTH PLAIN {plain}"))
    };
    // [auth] max_failures_per_account is 5 by default.
    for _ in 0..5 {
        let reply = attempt(&mut client, "wrong");
        assert!(reply.starts_with("535 5.7.8 "), "{reply}");
    }
    let throttled = attempt(&mut client, BOB.password);
    assert!(throttled.starts_with("454 4.7.0 "), "{throttled}");
}
