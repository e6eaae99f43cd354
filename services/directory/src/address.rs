//! Mail addresses as the directory accepts them: validated, normalised, split.
//!
//! Every address reaches the directory through [`Address::parse`] before it is put in a filter
//! or a DN, so the escaping helpers in [`crate::filter`] and [`crate::dn`] only ever see text
//! that is already a plausible address. The rules are RFC 5321 §4.1.2 (dot-atom local parts,
//! LDH domains) widened by RFC 6531 §3.3 to UTF-8, and narrowed on purpose:
//!
//! - quoted local parts are refused: no hosting tenant needs one, and they are the classic way
//!   to smuggle `@`, `%` or `!` past a relay check;
//! - `%` and `!` (old relay syntaxes) and source routes (`@a,@b:user@c`) are refused;
//! - control characters, NUL, spaces and `/`-free but path-like tricks never pass, because only
//!   `atext` characters are allowed in the local part;
//! - domain literals (`user@[192.0.2.1]`) are refused: the directory routes names only.
//!
//! Normalisation lowercases the domain and the local part. Mailfold treats local parts
//! case-insensitively, as every hosting provider does in practice, although RFC 5321 §2.4 lets
//! a server tell them apart. Internationalised domains are compared in the form they arrive in;
//! there is no IDNA mapping between A-labels and U-labels yet (see docs/directory.md).

use std::fmt;

/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
pub const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3 caps a path at 256 octets including the brackets.
pub const MAX_ADDRESS: usize = 254;

/// Why an address was refused. The text is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing, or nothing but an `@`.
    #[error("empty address")]
    Empty,
    /// Longer than RFC 5321 allows for the part named.
    #[error("address too long")]
    TooLong,
    /// No `@`, or more than one outside a quoted string.
    #[error("address must have exactly one @")]
    NotOneAt,
    /// A character or construct the local part may not contain.
    #[error("invalid local part")]
    InvalidLocalPart,
    /// A domain that is not a sequence of valid labels.
    #[error("invalid domain")]
    InvalidDomain,
}

/// A validated, normalised mail address (`local@domain`, both lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    text: String,
    at: usize,
}

impl Address {
    /// Validates `input` and returns its normalised form.
    pub fn parse(input: &str) -> Result<Address, AddressError> {
        if input.is_empty() || input == "@" {
            return Err(AddressError::Empty);
        }
        if input.len() > MAX_ADDRESS {
            return Err(AddressError::TooLong);
        }

        // Exactly one `@`: quoted local parts, the only place a second one may legally hide,
        // are refused anyway.
        let mut parts = input.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AddressError::NotOneAt);
        };
        validate_local_part(local)?;
        let domain = Domain::parse(domain).map_err(|_| AddressError::InvalidDomain)?;

        let text = format!("{}@{}", local.to_lowercase(), domain.as_str());
        let at = text.rfind('@').unwrap_or(0);
        Ok(Address { text, at })
    }

    /// The local part (before the `@`), lowercased.
    pub fn local_part(&self) -> &str {
        &self.text[..self.at]
    }

    /// The domain (after the `@`), lowercased.
    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// The whole address.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The same local part in another domain (used to follow alias domains).
    pub fn with_domain(&self, domain: &Domain) -> Address {
        let text = format!("{}@{}", self.local_part(), domain.as_str());
        Address { at: self.at, text }
    }

    /// Whether any character is outside ASCII, which needs SMTPUTF8 (RFC 6531) on the wire.
    pub fn is_international(&self) -> bool {
        !self.text.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A validated, lowercased domain name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Validates a domain: dot-separated labels of letters, digits and inner hyphens (RFC 1035
    /// §2.3.1, RFC 5321 §4.1.2), UTF-8 letters allowed (RFC 6531 §3.3), at most 63 octets a
    /// label. A trailing dot is not accepted: addresses never carry one.
    pub fn parse(input: &str) -> Result<Domain, AddressError> {
        if input.is_empty() || input.len() > MAX_DOMAIN {
            return Err(AddressError::InvalidDomain);
        }
        for label in input.split('.') {
            let valid_chars = label.chars().all(|c| c.is_alphanumeric() || c == '-');
            let hyphen_edge = label.starts_with('-') || label.ends_with('-');
            if label.is_empty() || label.len() > 63 || !valid_chars || hyphen_edge {
                return Err(AddressError::InvalidDomain);
            }
        }
        Ok(Domain(input.to_lowercase()))
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 5321 §4.1.2 `Dot-string`: atoms of `atext` joined by single dots; RFC 6531 §3.3 adds
/// UTF-8 to `atext`. `%` and `!` are `atext` in the RFC but refused here (old relay syntaxes).
fn validate_local_part(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return Err(AddressError::Empty);
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError::TooLong);
    }
    for atom in local.split('.') {
        if atom.is_empty() || !atom.chars().all(is_local_char) {
            return Err(AddressError::InvalidLocalPart);
        }
    }
    Ok(())
}

/// `atext` of RFC 5322 §3.2.3 less `%` and `!`, plus non-ASCII (RFC 6531 §3.3).
fn is_local_char(c: char) -> bool {
    match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' => true,
        '#' | '$' | '&' | '\'' | '*' | '+' | '-' | '/' | '=' | '?' | '^' | '_' | '`' | '{'
        | '|' | '}' | '~' => true,
        c => !c.is_ascii() && !c.is_control() && !c.is_whitespace(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_are_lowercased() {
        let address = Address::parse("Alice.Smith+Tag@Example.TEST").unwrap();
        assert_eq!(address.as_str(), "alice.smith+tag@example.test");
        assert_eq!(address.local_part(), "alice.smith+tag");
        assert_eq!(address.domain(), "example.test");
    }

    #[test]
    fn utf8_addresses_are_accepted_and_flagged() {
        let address = Address::parse("Jörg@bücher.test").unwrap();
        assert_eq!(address.as_str(), "jörg@bücher.test");
        assert!(address.is_international());
    }

    #[test]
    fn relay_syntaxes_and_quoted_parts_are_refused() {
        for input in [
            "a%b@example.test",
            "a!b@example.test",
            "\"a@b\"@example.test",
            "@relay.test:user@example.test",
            "user@[192.0.2.1]",
            "a@b@example.test",
        ] {
            assert!(Address::parse(input).is_err(), "{input} was accepted");
        }
    }

    #[test]
    fn filter_and_path_metacharacters_are_refused() {
        for input in [
            "a)(mail=*@example.test",
            "a\\2a@example.test",
            "a\0b@example.test",
            "../x@example.test",
            "a b@example.test",
            "a,b@example.test",
            "user@exa*mple.test",
            "user@example..test",
            "user@-example.test",
            ".user@example.test",
        ] {
            assert!(Address::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn a_star_is_ordinary_atext_and_stays_literal() {
        // RFC 5322 §3.2.3 lists `*` in atext; the filter layer escapes it, so it never acts
        // as a wildcard.
        assert_eq!(Address::parse("*@example.test").unwrap().local_part(), "*");
    }

    #[test]
    fn length_limits_follow_rfc_5321() {
        let long_local = format!("{}@example.test", "a".repeat(65));
        assert_eq!(Address::parse(&long_local), Err(AddressError::TooLong));
        let long_label = format!("a@{}.test", "b".repeat(64));
        assert_eq!(
            Address::parse(&long_label),
            Err(AddressError::InvalidDomain)
        );
        let huge = "a".repeat(10_000);
        assert_eq!(Address::parse(&huge), Err(AddressError::TooLong));
    }

    #[test]
    fn with_domain_keeps_the_local_part() {
        let address = Address::parse("bob@alias.test").unwrap();
        let moved = address.with_domain(&Domain::parse("example.test").unwrap());
        assert_eq!(moved.as_str(), "bob@example.test");
        assert_eq!(moved.local_part(), "bob");
    }
}
