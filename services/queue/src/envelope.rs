//! The envelope of a queued message: sender, recipients with their own state, timing.
//!
//! It is stored as JSON beside the message file (`q/<id>.json`) and rewritten atomically
//! after every delivery attempt, so what is on disk is always one consistent envelope: the
//! one before the attempt or the one after it.

use serde::{Deserialize, Serialize};

/// What a queued message is for; a bounce is never answered with another bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Mail submitted by a user, or forwarded by an alias or a forward address.
    Message,
    /// A delivery status notification this server wrote (its sender is `<>`).
    Bounce,
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not delivered yet; tried again at the envelope's next attempt.
    Pending,
    /// Accepted by the next hop (or delivered into a local mailbox).
    Sent,
    /// Refused for good (5xx) or expired; the sender is told once.
    Failed,
}

/// One recipient and its outcome so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address the message goes to.
    pub address: String,
    /// Its state.
    pub state: State,
    /// Attempts made for this recipient.
    #[serde(default)]
    pub attempts: u32,
    /// The last reply of the remote server, or what went wrong before there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// The host that gave the last reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// Whether the sender was already told of this recipient's failure.
    #[serde(default)]
    pub notified: bool,
}

impl Recipient {
    /// A recipient not tried yet.
    pub fn pending(address: &str) -> Recipient {
        Recipient {
            address: address.to_string(),
            state: State::Pending,
            attempts: 0,
            last_reply: None,
            remote_host: None,
            notified: false,
        }
    }

    /// The domain part of the address, lowercased: what routing looks at.
    pub fn domain(&self) -> String {
        domain_of(&self.address)
    }
}

/// The domain of `address`, lowercased; empty when it has none.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default()
}

/// A queued message's envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The queue id, also the name of the message file.
    pub id: String,
    /// Message or bounce.
    pub kind: Kind,
    /// The envelope sender as sent in `MAIL FROM` (SRS-rewritten for forwarded mail); empty
    /// for the null sender `<>`.
    pub sender: String,
    /// The tenant the message is counted for (metrics).
    pub tenant: String,
    /// The recipients.
    pub recipients: Vec<Recipient>,
    /// Header lines sent before the message file (a DKIM signature, a `Delivered-To`), each
    /// ending in CRLF.
    #[serde(default)]
    pub prefix: String,
    /// Size of the message file in bytes.
    pub size: u64,
    /// The message needs SMTPUTF8 (RFC 6531): UTF-8 in an address.
    #[serde(default)]
    pub smtputf8: bool,
    /// The body holds 8-bit data (RFC 6152 `BODY=8BITMIME`).
    #[serde(default)]
    pub eight_bit: bool,
    /// When it was queued, in seconds since the Unix epoch.
    pub created: u64,
    /// When the next attempt is due, in seconds since the Unix epoch.
    pub next_attempt: u64,
    /// Attempts made so far (rounds over all pending recipients).
    #[serde(default)]
    pub attempts: u32,
    /// Whether the sender was warned of the delay already.
    #[serde(default)]
    pub delay_warned: bool,
}

impl Envelope {
    /// Recipients still to be delivered.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.state == State::Pending)
    }

    /// Whether every recipient has a final outcome.
    pub fn is_done(&self) -> bool {
        self.pending().next().is_none()
    }

    /// The state shown by `mailfold queue list` and the depth gauge: `active` while some
    /// recipient has not been tried, `deferred` once an attempt failed temporarily.
    pub fn display_state(&self) -> &'static str {
        if self.is_done() {
            "done"
        } else if self.attempts == 0 {
            "active"
        } else {
            "deferred"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_a_json_round_trip() {
        let envelope = Envelope {
            id: "abc".into(),
            kind: Kind::Message,
            sender: "alice@acme.test".into(),
            tenant: "acme".into(),
            recipients: vec![Recipient::pending("bob@example.org")],
            prefix: "Delivered-To: x@acme.test\r\n".into(),
            size: 12,
            smtputf8: false,
            eight_bit: true,
            created: 1,
            next_attempt: 2,
            attempts: 0,
            delay_warned: false,
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&text).unwrap(), envelope);
        assert_eq!(envelope.display_state(), "active");
    }

    #[test]
    fn domains_are_lowercased_and_missing_ones_are_empty() {
        assert_eq!(domain_of("Bob@Example.ORG"), "example.org");
        assert_eq!(domain_of("postmaster"), "");
    }
}
