//! The Sender Rewriting Scheme, in the classic form of Shevek's "SRS" paper and libsrs2:
//! mail forwarded to another host is sent with an envelope sender in this server's own
//! domain, so SPF passes at the destination, and a bounce to that address can be routed back
//! to the original sender.
//!
//! - `alice@example.org` becomes `SRS0=HHHH=TT=example.org=alice@<srs domain>`, where `TT` is
//!   the day (mod 1024, two base32 characters) and `HHHH` the first four base64 characters of
//!   an HMAC-SHA1 over `TT`, the domain and the local part, lowercased.
//! - An address that is already `SRS0` at another forwarder becomes `SRS1=HHHH=<forwarder>==
//!   <rest of the SRS0 local part>@<srs domain>`, so the chain does not grow with each hop;
//!   an `SRS1` address keeps its first forwarder and gets a new hash.
//! - Reversal checks the hash (case-insensitively, as libsrs2 does, since some MTAs change
//!   case) and, for `SRS0`, the age; a forged or expired address is refused.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::hmac;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Timestamps count days modulo this.
const TIME_SLOTS: u64 = 1024;
/// Characters of the hash kept in an address.
const HASH_LENGTH: usize = 4;

/// SRS with one secret and one domain.
#[derive(Clone)]
pub struct Srs {
    key: hmac::Key,
    domain: String,
    max_age_days: u64,
}

/// Why an address could not be reversed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not an SRS address of this domain.
    #[error("not an srs address")]
    NotSrs,
    /// The hash does not match: forged or from another secret.
    #[error("srs hash does not match")]
    BadHash,
    /// Older than the maximum age.
    #[error("srs address expired")]
    Expired,
}

impl Srs {
    /// SRS for `domain` with `secret`; reversed addresses older than `max_age_days` are
    /// refused.
    pub fn new(secret: &[u8], domain: &str, max_age_days: u64) -> Srs {
        Srs {
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret),
            domain: domain.to_ascii_lowercase(),
            max_age_days,
        }
    }

    /// The SRS domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The envelope sender to forward with. The null sender and addresses of the SRS domain
    /// stay as they are.
    pub fn forward(&self, sender: &str) -> String {
        self.forward_at(sender, today())
    }

    fn forward_at(&self, sender: &str, day: u64) -> String {
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return sender.to_string();
        };
        if domain.eq_ignore_ascii_case(&self.domain) {
            return sender.to_string();
        }
        let upper = local.to_ascii_uppercase();
        if upper.starts_with("SRS0") && is_separator(local.as_bytes().get(4)) {
            // SRS0 of another forwarder: SRS1=HASH=forwarder==<rest after "SRS0=">.
            let rest = &local[5..];
            let hash = self.hash(&[domain, rest]);
            return format!("SRS1={hash}={domain}=={rest}@{}", self.domain);
        }
        if upper.starts_with("SRS1") && is_separator(local.as_bytes().get(4)) {
            // SRS1 already: keep its first forwarder, sign it again.
            let rest = &local[5..];
            if let Some((_, tail)) = rest.split_once('=')
                && let Some((first, original)) = tail.split_once("==")
            {
                let hash = self.hash(&[first, original]);
                return format!("SRS1={hash}={first}=={original}@{}", self.domain);
            }
        }
        let stamp = timestamp(day);
        let hash = self.hash(&[&stamp, domain, local]);
        format!("SRS0={hash}={stamp}={domain}={local}@{}", self.domain)
    }

    /// Whether `address` looks like an SRS address of this domain (before checking it).
    pub fn is_srs(&self, address: &str) -> bool {
        let Some((local, domain)) = address.rsplit_once('@') else {
            return false;
        };
        let upper = local.to_ascii_uppercase();
        domain.eq_ignore_ascii_case(&self.domain)
            && (upper.starts_with("SRS0") || upper.starts_with("SRS1"))
            && is_separator(local.as_bytes().get(4))
    }

    /// The address a bounce to `address` goes to.
    pub fn reverse(&self, address: &str) -> Result<String, SrsError> {
        self.reverse_at(address, today())
    }

    fn reverse_at(&self, address: &str, day: u64) -> Result<String, SrsError> {
        if !self.is_srs(address) {
            return Err(SrsError::NotSrs);
        }
        let (local, _) = address.rsplit_once('@').ok_or(SrsError::NotSrs)?;
        let kind = local[..4].to_ascii_uppercase();
        let rest = &local[5..];
        if kind == "SRS1" {
            // HASH=forwarder==rest
            let (hash, tail) = rest.split_once('=').ok_or(SrsError::NotSrs)?;
            let (first, original) = tail.split_once("==").ok_or(SrsError::NotSrs)?;
            self.check(hash, &[first, original])?;
            return Ok(format!("SRS0={original}@{first}"));
        }
        // HASH=TT=domain=local
        let mut parts = rest.splitn(4, '=');
        let (Some(hash), Some(stamp), Some(domain), Some(original)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::NotSrs);
        };
        self.check(hash, &[stamp, domain, original])?;
        let then = decode_timestamp(stamp).ok_or(SrsError::NotSrs)?;
        let age = (day % TIME_SLOTS + TIME_SLOTS - then) % TIME_SLOTS;
        if age > self.max_age_days {
            return Err(SrsError::Expired);
        }
        Ok(format!("{original}@{domain}"))
    }

    fn hash(&self, parts: &[&str]) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        for part in parts {
            context.update(part.to_ascii_lowercase().as_bytes());
        }
        let tag = context.sign();
        let text = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        text[..HASH_LENGTH].to_string()
    }

    fn check(&self, hash: &str, parts: &[&str]) -> Result<(), SrsError> {
        if hash.eq_ignore_ascii_case(&self.hash(parts)) {
            Ok(())
        } else {
            Err(SrsError::BadHash)
        }
    }
}

/// libsrs2 accepts `=`, `-` and `+` after the tag; Mailfold writes `=`.
fn is_separator(byte: Option<&u8>) -> bool {
    matches!(byte, Some(b'=' | b'-' | b'+'))
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

fn timestamp(day: u64) -> String {
    let slot = day % TIME_SLOTS;
    let high = BASE32[(slot >> 5) as usize] as char;
    let low = BASE32[(slot & 31) as usize] as char;
    format!("{high}{low}")
}

fn decode_timestamp(text: &str) -> Option<u64> {
    let value = |c: u8| {
        BASE32
            .iter()
            .position(|&b| b == c.to_ascii_uppercase())
            .map(|p| p as u64)
    };
    match text.as_bytes() {
        [high, low] => Some(value(*high)? << 5 | value(*low)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srs() -> Srs {
        Srs::new(b"secret", "fwd.acme.test", 21)
    }

    #[test]
    fn a_forwarded_sender_is_rewritten_and_reverses_to_the_original() {
        let srs = srs();
        let rewritten = srs.forward_at("alice@example.org", 20_000);
        assert!(rewritten.starts_with("SRS0="), "{rewritten}");
        assert!(
            rewritten.ends_with("=example.org=alice@fwd.acme.test"),
            "{rewritten}"
        );
        assert_eq!(
            srs.reverse_at(&rewritten, 20_005).unwrap(),
            "alice@example.org"
        );
        // Some MTAs lowercase the address.
        assert_eq!(
            srs.reverse_at(&rewritten.to_lowercase(), 20_005).unwrap(),
            "alice@example.org"
        );
    }

    #[test]
    fn a_forged_or_expired_address_is_refused() {
        let srs = srs();
        let rewritten = srs.forward_at("alice@example.org", 20_000);
        let forged = rewritten.replace("alice", "mallory");
        assert_eq!(srs.reverse_at(&forged, 20_000), Err(SrsError::BadHash));
        assert_eq!(srs.reverse_at(&rewritten, 20_022), Err(SrsError::Expired));
        let other = Srs::new(b"other secret", "fwd.acme.test", 21);
        assert_eq!(other.reverse_at(&rewritten, 20_000), Err(SrsError::BadHash));
        assert_eq!(srs.reverse("bob@fwd.acme.test"), Err(SrsError::NotSrs));
    }

    #[test]
    fn an_srs0_address_of_another_forwarder_becomes_srs1_and_reverses_to_it() {
        let srs = srs();
        let theirs = "SRS0=abcd=TT=example.org=alice@other.example";
        let ours = srs.forward_at(theirs, 20_000);
        assert!(ours.starts_with("SRS1="), "{ours}");
        assert!(ours.ends_with("=other.example==abcd=TT=example.org=alice@fwd.acme.test"));
        assert_eq!(srs.reverse_at(&ours, 20_000).unwrap(), theirs);
        // Forwarded once more by us: still SRS1 with the same first forwarder.
        let again = srs.forward_at(&ours.replace("fwd.acme.test", "third.example"), 20_000);
        assert!(again.contains("=other.example=="), "{again}");
    }

    #[test]
    fn the_null_sender_and_our_own_domain_are_not_rewritten() {
        let srs = srs();
        assert_eq!(srs.forward(""), "");
        assert_eq!(srs.forward("bounce@fwd.acme.test"), "bounce@fwd.acme.test");
    }

    #[test]
    fn timestamps_round_trip_through_base32() {
        for day in [0, 31, 32, 1023, 20_000] {
            assert_eq!(decode_timestamp(&timestamp(day)), Some(day % TIME_SLOTS));
        }
    }
}
