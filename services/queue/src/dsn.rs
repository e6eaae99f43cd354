//! Delivery status notifications (RFC 3464): the `multipart/report` a sender gets when a
//! recipient failed for good, or when delivery is taking long.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailfold_net::rfc5322_date;

use crate::envelope::{Envelope, Recipient};

/// At most this much of the original header section is quoted in the report.
const MAX_QUOTED_HEADERS: u64 = 64 * 1024;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// RFC 3464 §2.3.3 `failed`.
    Failed,
    /// RFC 3464 §2.3.3 `delayed`: still being retried.
    Delayed,
}

/// The report about `recipients` of `envelope`, sent by `hostname`, quoting the header
/// section of the message at `message`.
pub fn report(
    envelope: &Envelope,
    recipients: &[&Recipient],
    action: Action,
    hostname: &str,
    message: &Path,
) -> Vec<u8> {
    let now = SystemTime::now();
    let boundary = format!("{}/{hostname}", envelope.id);
    let date = rfc5322_date(now);
    let (subject, summary) = match action {
        Action::Failed => (
            "Undelivered Mail Returned to Sender",
            "could not be delivered to one or more recipients. It has been given up on.",
        ),
        Action::Delayed => (
            "Delayed Mail (still being retried)",
            "has not been delivered to one or more recipients yet. Delivery is still being \
             retried; you do not need to send it again.",
        ),
    };
    let mut out = String::new();
    // RFC 3834 §5: an automatic reply; RFC 3464 §2: multipart/report, report-type
    // delivery-status.
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.{kind}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at {hostname}.\r\n\
         \r\n\
         Your message {summary}\r\n\
         \r\n",
        sender = envelope.sender,
        id = envelope.id,
        kind = if action == Action::Failed {
            "failed"
        } else {
            "delayed"
        },
    ));
    for recipient in recipients {
        out.push_str(&format!(
            "<{}>: {}\r\n",
            recipient.address,
            recipient.last_reply.as_deref().unwrap_or("no reply")
        ));
    }

    // RFC 3464 §2.2: the per-message fields.
    let arrival = UNIX_EPOCH + Duration::from_secs(envelope.created);
    out.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         Arrival-Date: {}\r\n",
        rfc5322_date(arrival)
    ));
    // RFC 3464 §2.3: one block per recipient.
    for recipient in recipients {
        let (action_name, default_status) = match action {
            Action::Failed => ("failed", "5.0.0"),
            Action::Delayed => ("delayed", "4.0.0"),
        };
        let status = recipient
            .last_reply
            .as_deref()
            .and_then(status_of)
            .unwrap_or_else(|| default_status.to_string());
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action_name}\r\nStatus: {status}\r\n",
            recipient.address
        ));
        if let Some(host) = &recipient.remote_host {
            out.push_str(&format!("Remote-MTA: dns; {host}\r\n"));
        }
        if let Some(reply) = &recipient.last_reply {
            out.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(reply)));
        }
        out.push_str(&format!("Last-Attempt-Date: {date}\r\n"));
    }

    // RFC 3462 §3 (text/rfc822-headers): the original header section only, never the body.
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(envelope.prefix.as_bytes());
    bytes.extend_from_slice(&header_section(message));
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// The enhanced status code in a reply such as `550 5.1.1 no such user`, or the class of its
/// basic code.
fn status_of(reply: &str) -> Option<String> {
    let mut words = reply.split_whitespace();
    // Replies are kept as "<step>: <code> <text>" or "<code> <text>".
    let mut word = words.next()?;
    if word.ends_with(':') {
        word = words.next()?;
    }
    let code = word;
    let enhanced = words.next().filter(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match (enhanced, code.chars().next()) {
        (Some(status), _) => Some(status.to_string()),
        (None, Some(class @ ('4' | '5'))) => Some(format!("{class}.0.0")),
        _ => None,
    }
}

/// Control characters out, so the text stays one header line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The message's header section, up to [`MAX_QUOTED_HEADERS`] bytes.
fn header_section(message: &Path) -> Vec<u8> {
    let Ok(file) = std::fs::File::open(message) else {
        return Vec::new();
    };
    let mut reader = BufReader::new(file.take(MAX_QUOTED_HEADERS));
    let mut out = Vec::new();
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        out.extend_from_slice(&line);
        line.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Kind, State};

    #[test]
    fn a_failure_report_is_multipart_report_with_one_block_per_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let message = dir.path().join("m");
        std::fs::write(
            &message,
            b"Subject: hi\r\nFrom: a@acme.test\r\n\r\nsecret body\r\n",
        )
        .unwrap();
        let mut failed = crate::envelope::Recipient::pending("x@example.org");
        failed.state = State::Failed;
        failed.last_reply = Some("RCPT: 550 5.1.1 no such user".into());
        failed.remote_host = Some("mx.example.org".into());
        let envelope = Envelope {
            id: "q1".into(),
            kind: Kind::Message,
            sender: "a@acme.test".into(),
            tenant: "acme".into(),
            recipients: vec![failed.clone()],
            prefix: String::new(),
            size: 0,
            smtputf8: false,
            eight_bit: false,
            created: 0,
            next_attempt: 0,
            attempts: 1,
            delay_warned: false,
        };
        let text = String::from_utf8(report(
            &envelope,
            &[&failed],
            Action::Failed,
            "mx.test",
            &message,
        ))
        .unwrap();
        for expected in [
            "To: <a@acme.test>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n",
            "Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.example.org\r\n",
            "Diagnostic-Code: smtp; RCPT: 550 5.1.1 no such user\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\nFrom: a@acme.test\r\n",
            "\r\n--q1/mx.test--\r\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        assert!(!text.contains("secret body"), "the body is not quoted");
    }

    #[test]
    fn statuses_come_from_the_enhanced_code_or_the_basic_class() {
        assert_eq!(status_of("RCPT: 550 5.1.1 no").as_deref(), Some("5.1.1"));
        assert_eq!(status_of("452 too many").as_deref(), Some("4.0.0"));
        assert_eq!(status_of("connecting: refused"), None);
    }
}
