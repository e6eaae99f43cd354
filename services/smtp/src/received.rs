//! Trace headers: the `Received:` line a server adds when it accepts a message (RFC 5321
//! §4.4), and the date format it needs (RFC 5322 §3.3).

use std::net::IpAddr;
use std::time::SystemTime;

use mailfold_net::rfc5322_date;

/// What the `with` clause says (RFC 3848 protocol types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `SMTP`, after HELO.
    Smtp,
    /// `ESMTP`, after EHLO; with `S` over TLS and `A` when authenticated (RFC 3848 §2).
    Esmtp {
        /// Over TLS.
        tls: bool,
        /// Authenticated.
        authenticated: bool,
    },
    /// `LMTP` (RFC 3848 §2), with the same suffixes.
    Lmtp {
        /// Over TLS.
        tls: bool,
    },
}

impl Protocol {
    fn keyword(self) -> &'static str {
        match self {
            Protocol::Smtp => "SMTP",
            Protocol::Esmtp {
                tls: false,
                authenticated: false,
            } => "ESMTP",
            Protocol::Esmtp {
                tls: true,
                authenticated: false,
            } => "ESMTPS",
            Protocol::Esmtp {
                tls: false,
                authenticated: true,
            } => "ESMTPA",
            Protocol::Esmtp {
                tls: true,
                authenticated: true,
            } => "ESMTPSA",
            Protocol::Lmtp { tls: false } => "LMTP",
            Protocol::Lmtp { tls: true } => "LMTPS",
        }
    }
}

/// The facts a `Received:` header records.
#[derive(Debug, Clone)]
pub struct Trace<'a> {
    /// What the client said in EHLO/HELO/LHLO.
    pub helo: &'a str,
    /// The client's address.
    pub peer: IpAddr,
    /// This server's name.
    pub server: &'a str,
    /// The protocol.
    pub protocol: Protocol,
    /// The transaction id, as logged.
    pub id: &'a str,
    /// The recipient, when there is exactly one (RFC 5321 §4.4 `for` clause).
    pub recipient: Option<&'a str>,
}

/// `Received: from <helo> ([<ip>]) by <server> with <protocol> id <id> [for <rcpt>]; <date>`,
/// folded onto continuation lines, ending in CRLF.
pub fn received(trace: &Trace<'_>, now: SystemTime) -> String {
    // The HELO text is the client's: keep only characters that cannot break the header.
    let helo: String = trace
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | ';'))
        .take(255)
        .collect();
    let peer = match trace.peer {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    };
    let mut header = format!(
        "Received: from {} ({peer})\r\n\tby {} with {} id {}",
        if helo.is_empty() { "unknown" } else { &helo },
        trace.server,
        trace.protocol.keyword(),
        trace.id
    );
    if let Some(recipient) = trace.recipient {
        header.push_str(&format!("\r\n\tfor <{recipient}>"));
    }
    header.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(now)));
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_received_header_names_client_server_protocol_and_recipient() {
        let trace = Trace {
            helo: "client.example (evil)\r\nX-Injected: 1",
            peer: "192.0.2.7".parse().unwrap(),
            server: "mx.mailfold.test",
            protocol: Protocol::Esmtp {
                tls: true,
                authenticated: false,
            },
            id: "abc123",
            recipient: Some("alice@acme.test"),
        };
        let header = received(&trace, UNIX_EPOCH);
        assert_eq!(
            header,
            "Received: from client.exampleevilX-Injected:1 ([192.0.2.7])\r\n\tby mx.mailfold.test \
             with ESMTPS id abc123\r\n\tfor <alice@acme.test>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
