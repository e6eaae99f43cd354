//! Trace headers: the `Received:` line a server adds when it accepts a message (RFC 5321
//! §4.4), and the date format it needs (RFC 5322 §3.3).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// An RFC 5322 §3.3 date in UTC: `Thu, 03 Dec 2026 10:50:26 +0000`.
pub fn rfc5322_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (seconds / 86_400) as i64;
    let (hour, minute, second) = (
        (seconds % 86_400) / 3600,
        (seconds % 3600) / 60,
        seconds % 60,
    );
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {hour:02}:{minute:02}:{second:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

/// Year, month, day of a count of days since 1970-01-01, in the proleptic Gregorian calendar
/// (the well-known algorithm over 400-year eras).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_rfc_5322_in_utc() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
        let later = UNIX_EPOCH + Duration::from_secs(1_796_295_026); // 2026-12-03 10:50:26
        assert_eq!(rfc5322_date(later), "Thu, 03 Dec 2026 10:50:26 +0000");
    }

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
