//! The outbound queue end to end: `mailfold serve` (api, smtp and queue roles) on a copy of the
//! quick start, with a real remote MTA — aiosmtpd, through tests/clients/smtp_peer.py — as the
//! static route for the outside domains. Mail is submitted with Python's smtplib or raw SMTP
//! lines; what the peer stored, what landed in local Maildirs, and what `mailfold queue` shows
//! are checked. DKIM signatures are verified with dkimpy.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailfold_tests::binary::{Server, free_port, free_ports, mailfold_binary};
use mailfold_tests::fixture;
use mailfold_tests::{base64, repo_root};

/// mallory@acme.test's, who forwards to mallory@elsewhere.example and alice.
const MALLORY_STORE: &str = "67/dc/u-0011";
const SRS_DOMAIN: &str = "fwd.example.test";
/// How long a test waits for something to arrive.
const PATIENCE: Duration = Duration::from_secs(30);

// --- delivery ---

#[test]
fn submitted_mail_reaches_the_remote_byte_for_byte_with_a_dkim_signature_that_verifies() {
    let peer = Peer::start();
    let mut mailfold = Mailfold::new(&peer, "");
    let record = mailfold.generate_dkim("acme.test");
    mailfold.start();

    let body = "From: Alice <alice@acme.test>\r\nTo: <friend@example.org>\r\n\
                Subject: hello outside\r\n\r\nfirst line\r\n.a line with a dot\r\nlast line\r\n";
    let message = mailfold.write_file("hello.eml", body.as_bytes());
    let output = mailfold.smtplib(&message, "alice@acme.test", &["friend@example.org"]);
    assert!(
        output.contains("\"data\": [250"),
        "{output}\n{}",
        mailfold.log_text()
    );

    let received = peer.wait_for(1);
    let (meta, content) = &received[0];
    assert!(
        meta.contains("\"mail_from\": \"alice@acme.test\""),
        "{meta}"
    );
    assert!(
        meta.contains("\"rcpt_tos\": [\"friend@example.org\"]"),
        "{meta}"
    );
    let text = String::from_utf8_lossy(content);
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    assert!(text.contains("\r\nReceived: from "), "{text}");
    assert!(
        text.ends_with(body),
        "the message changed on the way:\n{text}"
    );

    // dkimpy checks the signature against the record `mailfold dkim generate` printed.
    let copy = mailfold.write_file("received.eml", content);
    let verified = Command::new("python3")
        .arg(repo_root().join("tests/clients/dkim_verify.py"))
        .arg(&copy)
        .arg("mailfold._domainkey.acme.test.")
        .arg(&record)
        .output()
        .expect("running dkim_verify.py");
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    mailfold.wait_until_empty();
}

#[test]
fn a_temporary_failure_is_retried_until_the_remote_accepts() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"*": "451 4.3.0 greylisted, come back later"}}"#);
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["later@example.org"],
        "Subject: retried\r\n\r\nx\r\n",
    );

    // Deferred with the remote's reply recorded, and listed so.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = mailfold.cli(&["queue", "list"]);
        let text = String::from_utf8_lossy(&list.stdout).into_owned();
        if text.contains("deferred") && text.contains("451 4.3.0 greylisted") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never deferred:\n{text}\n{}",
            mailfold.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(peer.messages().is_empty());

    peer.set("{}");
    let received = peer.wait_for(1);
    assert!(received[0].0.contains("later@example.org"));
    mailfold.wait_until_empty();
    assert!(
        mailfold.messages(fixture::ALICE.store).is_empty(),
        "no bounce for a delivered message"
    );
}

#[test]
fn a_permanent_failure_bounces_to_the_sender_and_does_not_hold_the_other_recipient() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"gone@example.org": "550 5.1.1 no such user here"}}"#);
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["gone@example.org", "here@example.org"],
        "Subject: to two\r\n\r\nfor both\r\n",
    );

    let received = peer.wait_for(1);
    assert!(
        received[0]
            .0
            .contains("\"rcpt_tos\": [\"here@example.org\"]"),
        "{}",
        received[0].0
    );

    // The report lands in alice's own mailbox (she is local): RFC 3464 multipart/report.
    let reports = mailfold.wait_for_messages(fixture::ALICE.store, 1);
    let report = String::from_utf8_lossy(&reports[0]);
    for expected in [
        "Return-Path: <>\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Diagnostic-Code: smtp; RCPT: 550 5.1.1 no such user here\r\n",
        "Content-Type: text/rfc822-headers\r\n",
        "Subject: to two\r\n",
    ] {
        assert!(report.contains(expected), "{expected:?} not in\n{report}");
    }
    assert!(
        !report.contains("here@example.org"),
        "only the failed recipient is reported"
    );
    mailfold.wait_until_empty();
}

#[test]
fn a_message_past_its_lifetime_bounces_with_an_expiry_report() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"*": "421 4.4.5 busy"}}"#);
    let mut mailfold = Mailfold::new(&peer, "lifetime = \"2s\"\n");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["slow@example.org"],
        "Subject: old\r\n\r\nx\r\n",
    );

    let reports = mailfold.wait_for_messages(fixture::ALICE.store, 1);
    let report = String::from_utf8_lossy(&reports[0]);
    assert!(
        report.contains("Action: failed\r\nStatus: 4.4.7\r\n"),
        "{report}"
    );
    assert!(
        report.contains("last reply: RCPT: 421 4.4.5 busy"),
        "{report}"
    );
    assert!(report.contains("expired after 2 seconds"), "{report}");
    mailfold.wait_until_empty();
}

#[test]
fn a_bounce_that_cannot_be_delivered_is_dropped_not_bounced_again() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"*": "550 5.1.1 nobody"}}"#);
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    // A null sender (a bounce from elsewhere, forwarded out by an alias) gets no report.
    let mut client = mailfold.mx_client();
    client.expect("EHLO client.example.test", "250");
    client.expect("MAIL FROM:<>", "250");
    client.expect("RCPT TO:<partners@acme.test>", "250");
    client.send_message(b"Subject: a bounce\r\n\r\nreport\r\n");
    client.expect_reply("250");
    mailfold.wait_until_empty();
    // alice has the local copy only: nothing came back about the refused outside copy.
    assert_eq!(mailfold.messages(fixture::ALICE.store).len(), 1);
    assert!(mailfold.log_text().contains("undeliverable bounce dropped"));
}

#[test]
fn starttls_is_used_when_offered_and_a_policy_can_require_it() {
    // A peer with a certificate offers STARTTLS: the delivery goes over TLS.
    let (_certificate, cert, key) = certificate();
    let secure = Peer::start_with(&["--cert", path_text(&cert), "--key", path_text(&key)]);
    let mut mailfold = Mailfold::new(&secure, "tls = \"require\"\n");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["tls@example.org"],
        "Subject: tls\r\n\r\nx\r\n",
    );
    let received = secure.wait_for(1);
    assert!(received[0].0.contains("\"tls\": true"), "{}", received[0].0);
    mailfold.wait_until_empty();

    // A peer without it is not used when TLS is required: the message waits.
    let plain = Peer::start();
    let mut mailfold = Mailfold::new(&plain, "tls = \"require\"\n");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["tls@example.org"],
        "Subject: tls\r\n\r\nx\r\n",
    );
    let ids = mailfold.wait_for_deferred(1);
    let show = mailfold.cli(&["queue", "show", &ids[0]]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("does not offer STARTTLS"), "{text}");
    assert!(plain.messages().is_empty());
}

#[test]
fn domains_without_a_route_go_to_their_mx_or_their_address_and_missing_ones_bounce() {
    let peer = Peer::start();
    let dns = Dns::start(
        r#"{"example.net.": {"MX": ["20 backup.example.net.", "10 mx1.example.net."]},
            "mx1.example.net.": {"A": ["127.0.0.1"]},
            "backup.example.net.": {"A": ["127.0.0.2"]},
            "implicit.example.": {"A": ["127.0.0.1"]},
            "nullmx.example.": {"MX": ["0 ."]}}"#,
    );
    let options = format!(
        "nameservers = [\"127.0.0.1:{}\"]\nmx_port = {}\n",
        dns.port, peer.port
    );
    let mut mailfold = Mailfold::new(&peer, &options);
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &[
            "a@example.net",
            "b@implicit.example",
            "c@missing.example",
            "d@nullmx.example",
        ],
        "Subject: by mx\r\n\r\nx\r\n",
    );
    // RFC 5321 §5.1: the best MX; with no MX, the domain's own address.
    let received = peer.wait_for(2);
    let all: String = received.iter().map(|(meta, _)| meta.clone()).collect();
    assert!(
        all.contains("a@example.net") && all.contains("b@implicit.example"),
        "{all}"
    );

    let deadline = Instant::now() + PATIENCE;
    loop {
        let reports: String = mailfold
            .messages(fixture::ALICE.store)
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        let missing = reports.contains(
            "Final-Recipient: rfc822; c@missing.example\r\nAction: failed\r\nStatus: 5.1.2",
        );
        let null = reports.contains(
            "Final-Recipient: rfc822; d@nullmx.example\r\nAction: failed\r\nStatus: 5.1.10",
        );
        if missing && null {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reports so far:\n{reports}\n{}",
            mailfold.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    mailfold.wait_until_empty();
}

#[test]
fn a_smarthost_takes_everything_after_auth_over_starttls() {
    let (_certificate, cert, key) = certificate();
    let smarthost = Peer::start_with(&[
        "--cert",
        path_text(&cert),
        "--key",
        path_text(&key),
        "--auth",
        "relay-user:relay-pw",
    ]);
    // No route for elsewhere.test and no DNS: only the smarthost can take it.
    let options = format!(
        "smarthost = \"127.0.0.1:{}\"\nsmarthost_user = \"relay-user\"\n\
         smarthost_password = \"relay-pw\"\nnameservers = [\"127.0.0.1:9\"]\n",
        smarthost.port
    );
    let mut mailfold = Mailfold::new(&smarthost, &options);
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["far@elsewhere.test"],
        "Subject: via relay\r\n\r\nx\r\n",
    );
    let received = smarthost.wait_for(1);
    let meta = &received[0].0;
    assert!(
        meta.contains("far@elsewhere.test") && meta.contains("\"authenticated\": true"),
        "{meta}"
    );
    assert!(meta.contains("\"tls\": true"), "{meta}");
    mailfold.wait_until_empty();
}

#[test]
fn a_delay_warning_tells_the_sender_once_and_the_message_is_still_delivered() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"*": "451 4.2.0 mailbox busy"}}"#);
    let mut mailfold = Mailfold::new(&peer, "delay_warning = \"1s\"\n");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["busy@example.org"],
        "Subject: patience\r\n\r\nx\r\n",
    );
    let reports = mailfold.wait_for_messages(fixture::ALICE.store, 1);
    let report = String::from_utf8_lossy(&reports[0]);
    assert!(
        report.contains("Subject: Delayed Mail (still being retried)\r\n"),
        "{report}"
    );
    assert!(
        report.contains("Action: delayed\r\nStatus: 4.2.0\r\n"),
        "{report}"
    );

    peer.set("{}");
    peer.wait_for(1);
    mailfold.wait_until_empty();
    assert_eq!(
        mailfold.messages(fixture::ALICE.store).len(),
        1,
        "one warning, no failure report"
    );
}

#[test]
fn messages_for_one_destination_share_one_connection() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"*": "451 4.3.0 later"}}"#);
    let mut mailfold = Mailfold::new(&peer, "per_destination = 1\nretry_intervals = [\"1h\"]\n");
    mailfold.start();
    for index in 0..3 {
        let body = format!("Subject: reuse {index}\r\n\r\nx\r\n");
        mailfold.submit(
            "alice@acme.test",
            &[&format!("r{index}@example.org")],
            &body,
        );
    }
    mailfold.wait_for_deferred(3);

    // All three due at once, one connection allowed: one session carries them all.
    peer.set("{}");
    let retry = mailfold.cli(&["queue", "retry", "--all"]);
    assert!(retry.status.success());
    let received = peer.wait_for(3);
    let sessions: Vec<String> = received
        .iter()
        .map(|(meta, _)| json_field(meta, "session"))
        .collect();
    assert!(sessions.iter().all(|s| *s == sessions[0]), "{sessions:?}");
}

#[test]
fn a_message_over_the_remote_size_limit_bounces_without_being_sent() {
    let peer = Peer::start_with(&["--size", "2000"]);
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    let big = format!("Subject: big\r\n\r\n{}", "0123456789abcdef\r\n".repeat(200));
    mailfold.submit("alice@acme.test", &["small@example.org"], &big);
    let reports = mailfold.wait_for_messages(fixture::ALICE.store, 1);
    let report = String::from_utf8_lossy(&reports[0]);
    assert!(
        report.contains("Action: failed\r\nStatus: 5.3.4\r\n"),
        "{report}"
    );
    assert!(peer.messages().is_empty());
}

// --- crash safety ---

#[test]
fn a_crash_with_messages_queued_and_one_mid_delivery_loses_nothing() {
    let peer = Peer::start();
    // The remote takes its time over the data, so a delivery is in progress at the kill.
    peer.set(r#"{"data_delay": 30}"#);
    let mut mailfold = Mailfold::new(&peer, "per_destination = 1\n");
    mailfold.start();
    for index in 0..5 {
        let body = format!("Subject: crash {index}\r\n\r\nmessage {index}\r\n");
        mailfold.submit(
            "alice@acme.test",
            &[&format!("r{index}@example.org")],
            &body,
        );
    }
    let started = peer.dir.join("data-started");
    let deadline = Instant::now() + PATIENCE;
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "no delivery started:\n{}",
            mailfold.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    mailfold.kill();
    assert!(peer.messages().is_empty());

    // After the restart every message arrives (the interrupted one possibly twice).
    peer.set("{}");
    mailfold.start();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let received = peer.messages();
        let subjects: Vec<usize> = (0..5)
            .filter(|i| {
                received.iter().any(|(_, content)| {
                    String::from_utf8_lossy(content).contains(&format!("Subject: crash {i}\r\n"))
                })
            })
            .collect();
        if subjects.len() == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {subjects:?} arrived:\n{}",
            mailfold.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    mailfold.wait_until_empty();
}

// --- forwarding ---

#[test]
fn an_alias_forwards_outside_with_srs_and_a_bounce_to_the_srs_address_reaches_the_sender() {
    let peer = Peer::start();
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    // partners@acme.test: alice, and liaison@partner.example outside.
    let mut client = mailfold.mx_client();
    client.expect("EHLO client.example.test", "250");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<partners@acme.test>", "250");
    client.send_message(b"Subject: to the partners\r\n\r\nhello\r\n");
    client.expect_reply("250");
    assert_eq!(
        mailfold.messages(fixture::ALICE.store).len(),
        1,
        "the local copy"
    );

    let received = peer.wait_for(1);
    let (meta, content) = &received[0];
    assert!(
        meta.contains("\"rcpt_tos\": [\"liaison@partner.example\"]"),
        "{meta}"
    );
    let from = json_field(meta, "mail_from");
    assert!(from.starts_with("SRS0="), "{from}");
    assert!(
        from.ends_with(&format!("=example.org=sender@{SRS_DOMAIN}")),
        "{from}"
    );
    let text = String::from_utf8_lossy(content);
    assert!(
        text.starts_with("Delivered-To: partners@acme.test\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nhello\r\n"), "{text}");

    // The partner's server bounces to the SRS address; the bounce goes to the real sender.
    let mut client = mailfold.mx_client();
    client.expect("EHLO partner.example", "250");
    client.expect("MAIL FROM:<>", "250");
    client.expect(&format!("RCPT TO:<{from}>"), "250");
    client.send_message(b"Subject: Undelivered Mail\r\n\r\nliaison is gone\r\n");
    client.expect_reply("250");
    let received = peer.wait_for(2);
    let (meta, content) = &received[1];
    assert!(
        meta.contains("\"rcpt_tos\": [\"sender@example.org\"]"),
        "{meta}"
    );
    assert_eq!(
        json_field(meta, "mail_from"),
        "<>",
        "a bounce has the null sender"
    );
    assert!(String::from_utf8_lossy(content).contains("liaison is gone"));

    // A forged SRS address is refused.
    let forged = from.replacen("SRS0=", "SRS0=x", 1);
    let mut client = mailfold.mx_client();
    client.expect("EHLO partner.example", "250");
    client.expect("MAIL FROM:<>", "250");
    client.expect(&format!("RCPT TO:<{forged}>"), "550 5.1.1");
    mailfold.wait_until_empty();
}

#[test]
fn a_mailbox_forward_address_sends_a_copy_outside_and_keeps_the_local_ones() {
    let peer = Peer::start();
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    let mut client = mailfold.mx_client();
    client.expect("EHLO client.example.test", "250");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<mallory@acme.test>", "250");
    client.send_message(b"Subject: for mallory\r\n\r\nhi\r\n");
    client.expect_reply("250");
    // mallory keeps a copy, alice (a local forward address) gets one, and one goes outside.
    assert_eq!(mailfold.messages(MALLORY_STORE).len(), 1);
    assert_eq!(mailfold.messages(fixture::ALICE.store).len(), 1);
    let received = peer.wait_for(1);
    assert!(
        received[0].0.contains("mallory@elsewhere.example"),
        "{}",
        received[0].0
    );
    assert!(
        String::from_utf8_lossy(&received[0].1).starts_with("Delivered-To: mallory@acme.test\r\n")
    );
}

#[test]
fn a_message_coming_back_to_its_forwarder_or_with_too_many_hops_is_refused_as_a_loop() {
    let peer = Peer::start();
    let mut mailfold = Mailfold::new(&peer, "max_hops = 5\n");
    mailfold.start();
    let mut client = mailfold.mx_client();
    client.expect("EHLO client.example.test", "250");
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<partners@acme.test>", "250");
    client.send_message(b"Delivered-To: partners@acme.test\r\nSubject: again\r\n\r\nloop\r\n");
    client.expect_reply("554 5.4.6");

    let hops = "Received: from a by b\r\n".repeat(6);
    client.expect("MAIL FROM:<sender@example.org>", "250");
    client.expect("RCPT TO:<alice@acme.test>", "250");
    client.send_message(format!("{hops}Subject: hops\r\n\r\nx\r\n").as_bytes());
    client.expect_reply("554 5.4.6");
    assert!(mailfold.messages(fixture::ALICE.store).is_empty());
    assert!(peer.messages().is_empty());
}

// --- operations ---

#[test]
fn the_queue_commands_list_show_retry_and_delete_messages() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"*": "451 4.7.1 not now"}}"#);
    let mut mailfold = Mailfold::new(&peer, "retry_intervals = [\"1h\"]\n");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["one@example.org"],
        "Subject: one\r\n\r\n1\r\n",
    );
    mailfold.submit(
        "alice@acme.test",
        &["two@example.org"],
        "Subject: two\r\n\r\n2\r\n",
    );

    let ids = mailfold.wait_for_deferred(2);
    let show = mailfold.cli(&["queue", "show", &ids[0]]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{text}");
    assert!(text.contains("\"sender\": \"alice@acme.test\""), "{text}");
    assert!(text.contains("451 4.7.1 not now"), "{text}");
    let missing = mailfold.cli(&["queue", "show", "nosuchid"]);
    assert_eq!(missing.status.code(), Some(1));

    // The next attempt is an hour away; retry makes it now, and the remote takes it.
    peer.set("{}");
    let retry = mailfold.cli(&["queue", "retry", &ids[0]]);
    assert!(
        retry.status.success(),
        "{}",
        String::from_utf8_lossy(&retry.stderr)
    );
    let received = peer.wait_for(1);
    let one_or_two = if received[0].0.contains("one@example.org") {
        0
    } else {
        1
    };
    assert_eq!(
        one_or_two, 0,
        "the retried message went first: {}",
        received[0].0
    );

    let delete = mailfold.cli(&["queue", "delete", &ids[1]]);
    assert!(
        delete.status.success(),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    mailfold.wait_until_empty();
    assert_eq!(peer.messages().len(), 1, "the deleted message was not sent");

    // With the server stopped the commands change the folder themselves.
    peer.set(r#"{"rcpt": {"*": "451 4.7.1 not now"}}"#);
    mailfold.submit(
        "alice@acme.test",
        &["three@example.org"],
        "Subject: 3\r\n\r\n3\r\n",
    );
    let ids = mailfold.wait_for_deferred(1);
    mailfold.stop();
    let retry_all = mailfold.cli(&["queue", "retry", "--all"]);
    assert!(String::from_utf8_lossy(&retry_all.stdout).contains("1 message(s)"));
    let delete = mailfold.cli(&["queue", "delete", &ids[0]]);
    assert!(String::from_utf8_lossy(&delete.stdout).contains("deleted"));
    let list = mailfold.cli(&["queue", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("0 message(s) queued"));
}

#[test]
fn an_smtp_process_without_the_queue_role_hands_mail_over_through_a_shared_folder() {
    let peer = Peer::start();
    let shared = tempfile::tempdir().unwrap();
    let folder = format!(
        "folder = {:?}\n",
        shared.path().join("queue").display().to_string()
    );

    // The front-end queues into the shared folder and delivers nothing itself.
    let mut front = Mailfold::new(&peer, &format!("{folder}handover = true\n"));
    let text = fs::read_to_string(&front.config).unwrap().replace(
        "roles = [\"api\", \"smtp\", \"queue\"]",
        "roles = [\"api\", \"smtp\"]",
    );
    fs::write(&front.config, text).unwrap();
    let mut back = Mailfold::new(&peer, &folder);

    // With the owner of the folder down, the message is still taken, durably.
    front.start();
    front.submit(
        "alice@acme.test",
        &["early@example.org"],
        "Subject: early\r\n\r\nx\r\n",
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(peer.messages().is_empty(), "the front-end must not deliver");
    let listed = front.cli(&["queue", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("early@example.org"));

    // The queue process delivers it, and what the front-end queues later.
    back.start();
    peer.wait_for(1);
    front.submit(
        "alice@acme.test",
        &["later@example.org"],
        "Subject: later\r\n\r\ny\r\n",
    );
    let arrived = peer.wait_for(2);
    let recipients: Vec<&str> = arrived.iter().map(|(meta, _)| meta.as_str()).collect();
    assert!(
        recipients.iter().any(|m| m.contains("early@example.org"))
            && recipients.iter().any(|m| m.contains("later@example.org")),
        "{recipients:?}\n{}",
        back.log_text()
    );
    back.wait_until_empty();
    front.stop();
}

#[test]
fn handover_is_refused_in_a_process_that_has_the_queue_role() {
    let peer = Peer::start();
    let mailfold = Mailfold::new(&peer, "handover = true\n");
    let checked = mailfold.cli(&["check-config"]);
    assert!(!checked.status.success());
    let errors = String::from_utf8_lossy(&checked.stderr);
    assert!(errors.contains("queue.handover"), "{errors}");
}

#[test]
fn queue_metrics_count_deliveries_by_result() {
    let peer = Peer::start();
    peer.set(r#"{"rcpt": {"no@example.org": "550 5.1.1 no"}}"#);
    let mut mailfold = Mailfold::new(&peer, "");
    mailfold.start();
    mailfold.submit(
        "alice@acme.test",
        &["yes@example.org", "no@example.org"],
        "Subject: m\r\n\r\nx\r\n",
    );
    peer.wait_for(1);
    mailfold.wait_until_empty();
    let metrics =
        mailfold_tests::binary::curl(&format!("http://127.0.0.1:{}/metrics", mailfold.api))
            .expect("metrics")
            .1;
    for expected in [
        "mailfold_queue_deliveries_total{result=\"sent\"} ",
        "mailfold_queue_deliveries_total{result=\"bounced\"} 1",
        // The mailgraph view: alice's tenant sent one copy and had one recipient bounce; the
        // report to alice is delivered mail, not sent mail.
        "mailfold_messages_sent_total{tenant=\"acme\"} 1\n",
        "mailfold_messages_bounced_total{tenant=\"acme\"} 1\n",
        "mailfold_messages_delivered_total{tenant=\"acme\"} 1\n",
        "mailfold_queue_messages{state=\"deferred\"} 0",
        "mailfold_queue_delivery_duration_seconds_count",
    ] {
        assert!(metrics.contains(expected), "{expected} not in\n{metrics}");
    }
}

// --- the remote MTA ---

/// tests/clients/smtp_peer.py on a free port, storing into a temporary folder.
struct Peer {
    child: Child,
    _folder: tempfile::TempDir,
    dir: PathBuf,
    control: PathBuf,
    port: u16,
}

impl Peer {
    fn start() -> Peer {
        Peer::start_with(&[])
    }

    fn start_with(arguments: &[&str]) -> Peer {
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path().join("received");
        fs::create_dir_all(&dir).unwrap();
        let control = folder.path().join("control.json");
        fs::write(&control, "{}").unwrap();
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/clients/smtp_peer.py"))
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .arg("--control")
            .arg(&control)
            .args(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd (tests/install-deps.sh installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("peer stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "smtp_peer.py did not start");
        Peer {
            child,
            _folder: folder,
            dir,
            control,
            port,
        }
    }

    /// Replaces the peer's behaviour (see smtp_peer.py), atomically.
    fn set(&self, json: &str) {
        let temporary = self.control.with_extension("tmp");
        fs::write(&temporary, json).unwrap();
        fs::rename(&temporary, &self.control).unwrap();
    }

    /// Every stored message, oldest first: (metadata JSON, content).
    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        let mut metas: Vec<PathBuf> = fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        metas.sort();
        metas
            .iter()
            .map(|meta| {
                let text = fs::read_to_string(meta).unwrap();
                (text, fs::read(meta.with_extension("eml")).unwrap())
            })
            .collect()
    }

    fn wait_for(&self, count: usize) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "the peer got {} of {count}",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/clients/dns_peer.py on a free UDP port with `zone`.
struct Dns {
    child: Child,
    port: u16,
}

impl Dns {
    fn start(zone: &str) -> Dns {
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/clients/dns_peer.py"))
            .args(["--port", &port.to_string(), "--zone", zone])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with dnspython (tests/install-deps.sh installs it)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("dns stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "dns_peer.py did not start");
        Dns { child, port }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 made by openssl: (its folder, certificate, key).
fn certificate() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = (
        folder.path().join("peer.crt"),
        folder.path().join("peer.key"),
    );
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (folder, cert, key)
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("utf-8 temporary path")
}

/// A string field of the peer's metadata JSON (flat, written by json.dump).
fn json_field(meta: &str, name: &str) -> String {
    let key = format!("\"{name}\": \"");
    let start = meta
        .find(&key)
        .map(|i| i + key.len())
        .unwrap_or_else(|| panic!("{name} in {meta}"));
    let end = start + meta[start..].find('"').unwrap();
    meta[start..end].to_string()
}

// --- the server ---

/// `mailfold serve` with the api, smtp and queue roles, its state in a temporary folder.
struct Mailfold {
    folder: tempfile::TempDir,
    config: PathBuf,
    api: u16,
    mx: u16,
    submission: u16,
    server: Option<Server>,
}

impl Mailfold {
    /// The configuration, with the outside test domains routed to `peer` and `queue` added to
    /// the `[queue]` section; not started yet.
    fn new(peer: &Peer, queue: &str) -> Mailfold {
        let folder = tempfile::tempdir().unwrap();
        let seed = folder.path().join("seed.ldif");
        let mut data = String::new();
        for file in fixture::data_files() {
            data.push_str(&fs::read_to_string(file).unwrap());
            data.push('\n');
        }
        fs::write(&seed, data).unwrap();
        let ports: [u16; 5] = free_ports();
        let (api, mx, submission) = (ports[0], ports[1], ports[2]);

        let text = fs::read_to_string(repo_root().join("examples/quickstart.toml")).unwrap();
        let start = text
            .find("\n[queue]\n")
            .expect("the quick start has a [queue] section");
        let mut text = text[..start].to_string();
        let peer_address = format!("127.0.0.1:{}", peer.port);
        let retry = match queue.contains("retry_intervals") {
            true => "",
            false => "retry_intervals = [\"1s\"]\n",
        };
        text.push_str(&format!(
            "\n[queue]\n{retry}scan_interval = \"200ms\"\n\
             hostname = \"mx.example.test\"\n{queue}\
             [queue.routes]\n\"example.org\" = \"{peer_address}\"\n\
             \"partner.example\" = \"{peer_address}\"\n\"elsewhere.example\" = \"{peer_address}\"\n\
             [queue.srs]\ndomain = \"{SRS_DOMAIN}\"\nsecret = \"a test secret of some length\"\n"
        ));
        let mut swaps = fixture::state_swaps(&seed);
        swaps.extend([
            (
                "roles = [\"api\", \"pop3\", \"smtp\", \"lmtp\", \"queue\"]".into(),
                "roles = [\"api\", \"smtp\", \"queue\"]".into(),
            ),
            ("127.0.0.1:8080".into(), format!("127.0.0.1:{api}")),
            ("127.0.0.1:2525".into(), format!("127.0.0.1:{mx}")),
            ("127.0.0.1:2587".into(), format!("127.0.0.1:{submission}")),
            ("127.0.0.1:2465".into(), format!("127.0.0.1:{}", ports[3])),
            ("127.0.0.1:2424".into(), format!("127.0.0.1:{}", ports[4])),
        ]);
        let text = fixture::apply_swaps(text, &swaps);
        let config = folder.path().join("quickstart.toml");
        fs::write(&config, text).unwrap();
        Mailfold {
            folder,
            config,
            api,
            mx,
            submission,
            server: None,
        }
    }

    fn start(&mut self) {
        let log = self
            .folder
            .path()
            .join(format!("serve-{}.log", Instant::now().elapsed().as_nanos()));
        let ready = format!("http://127.0.0.1:{}/readyz", self.api);
        let server = Server::start(&self.config, log, &ready);
        self.server = Some(server);
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.mx, self.submission] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "no listener on {port}:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        drop(self.server.take());
    }

    /// SIGTERM and a clean exit.
    fn stop(&mut self) {
        let status = self.server.as_mut().expect("running").terminate();
        assert!(status.success());
        self.server = None;
    }

    fn log_text(&self) -> String {
        // Every run's log, oldest first.
        let mut logs: Vec<PathBuf> = fs::read_dir(self.folder.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("serve-"))
            })
            .collect();
        logs.sort();
        logs.iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    fn write_file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.folder.path().join(name);
        fs::write(&path, content).unwrap();
        path
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(mailfold_binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("running mailfold")
    }

    /// `mailfold dkim generate DOMAIN` (RSA); the TXT record's text.
    fn generate_dkim(&self, domain: &str) -> String {
        let output = self.cli(&["dkim", "generate", domain]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.starts_with(&format!(
                "mailfold._domainkey.{domain}. IN TXT \"v=DKIM1; k=rsa; p="
            )),
            "{text}"
        );
        // The quoted strings, joined.
        text.split('"').skip(1).step_by(2).collect()
    }

    /// Python's smtplib through submission (plaintext AUTH is allowed on loopback).
    fn smtplib(&self, message: &Path, sender: &str, recipients: &[&str]) -> String {
        let mut command = Command::new("python3");
        command
            .arg(repo_root().join("tests/clients/smtp_session.py"))
            .args([
                "--transport",
                "starttls",
                "--port",
                &self.submission.to_string(),
            ])
            .arg("--cafile")
            .arg(self.folder.path().join("var/tls/selfsigned.crt"))
            .arg("--message")
            .arg(message)
            .args(["--user", "alice@acme.test", "--password", "alice-pw"])
            .args(["--sender", sender]);
        for recipient in recipients {
            command.args(["--rcpt", recipient]);
        }
        let output = command.output().expect("running python3");
        assert!(
            output.status.success(),
            "smtp_session.py: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Raw SMTP submission as alice; `250` expected after the data.
    fn submit(&self, sender: &str, recipients: &[&str], message: &str) {
        let mut client = Client::connect(self.submission);
        client.expect_reply("220");
        client.expect("EHLO client.example.test", "250");
        let plain = base64(b"\0alice@acme.test\0alice-pw");
        client.expect(&format!("AUTH PLAIN {plain}"), "235");
        client.expect(&format!("MAIL FROM:<{sender}>"), "250");
        for recipient in recipients {
            client.expect(&format!("RCPT TO:<{recipient}>"), "250");
        }
        client.send_message(message.as_bytes());
        client.expect_reply("250");
        client.expect("QUIT", "221");
    }

    fn mx_client(&self) -> Client {
        let mut client = Client::connect(self.mx);
        client.expect_reply("220");
        client
    }

    fn messages(&self, store: &str) -> Vec<Vec<u8>> {
        let new = self.folder.path().join("var/mail").join(store).join("new");
        let Ok(entries) = fs::read_dir(&new) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        paths.iter().map(|p| fs::read(p).unwrap()).collect()
    }

    fn wait_for_messages(&self, store: &str, count: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let messages = self.messages(store);
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{store} has {} of {count}:\n{}",
                messages.len(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ids of the queued messages once `count` of them are deferred.
    fn wait_for_deferred(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let list = self.cli(&["queue", "list"]);
            let text = String::from_utf8_lossy(&list.stdout).into_owned();
            let ids: Vec<String> = text
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("deferred"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            if ids.len() >= count {
                return ids;
            }
            assert!(
                Instant::now() < deadline,
                "not deferred:\n{text}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_until_empty(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let list = self.cli(&["queue", "list"]);
            let text = String::from_utf8_lossy(&list.stdout).into_owned();
            if text.contains("\n0 message(s) queued") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the queue did not empty:\n{text}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// --- a raw SMTP client ---

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("reading a reply");
            assert!(read > 0, "connection closed; replies so far: {lines:?}");
            let line = line.trim_end().to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    fn expect_reply(&mut self, code: &str) {
        let reply = self.reply();
        assert!(reply.starts_with(code), "expected {code}, got {reply}");
    }

    fn expect(&mut self, line: &str, code: &str) {
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        let reply = self.reply();
        assert!(
            reply.starts_with(code),
            "{line}: expected {code}, got {reply}"
        );
    }

    /// DATA, the dot-stuffed message and the final dot; the reply is left for the caller.
    fn send_message(&mut self, message: &[u8]) {
        self.expect("DATA", "354");
        let mut data = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        self.reader.get_mut().write_all(&data).unwrap();
    }
}
