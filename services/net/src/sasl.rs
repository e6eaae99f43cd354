//! SASL PLAIN (RFC 4616), decoded once for every front-end that offers AUTH.
//!
//! The client sends base64 of `authzid NUL authcid NUL passwd`. Mailfold logs users in as
//! themselves only: an authorisation identity is accepted when it is empty or the same as
//! the authentication identity, so no one can act as another user through PLAIN.

use base64::Engine;

/// Longest decoded PLAIN message accepted (RFC 4616 §2 allows 255 octets per part).
pub const MAX_PLAIN: usize = 3 * 255 + 2;

/// The credentials in a PLAIN response.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The login (authentication identity).
    pub login: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    /// The password never reaches a log, even through a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// Why a PLAIN response was refused. The text is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Not three NUL-separated UTF-8 parts, or too long.
    #[error("malformed PLAIN response")]
    Malformed,
    /// An authorisation identity other than the login.
    #[error("authorization identity not permitted")]
    OtherIdentity,
}

/// Decodes a PLAIN client response; `=` (RFC 4954 §4, RFC 5034 §4) is the empty response.
pub fn decode_plain(response: &str) -> Result<PlainCredentials, SaslError> {
    let response = response.trim();
    if response.len() > MAX_PLAIN * 4 / 3 + 4 {
        return Err(SaslError::Malformed);
    }
    let bytes = if response == "=" {
        Vec::new()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(response)
            .map_err(|_| SaslError::Base64)?
    };
    let text = String::from_utf8(bytes).map_err(|_| SaslError::Malformed)?;

    // RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    let mut parts = text.split('\0');
    let (Some(authzid), Some(login), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    // RFC 4616 §2 wants a non-empty password, but an empty one is let through: the
    // directory refuses it like any wrong password, so the client cannot tell the two apart.
    if login.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != login {
        return Err(SaslError::OtherIdentity);
    }
    Ok(PlainCredentials {
        login: login.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn rfc_4616_examples_decode() {
        // RFC 4616 §4: "\0tim\0tanstaaftanstaaf" and an authzid equal to the login.
        let plain = decode_plain(&encode("\0tim\0tanstaaftanstaaf")).unwrap();
        assert_eq!(
            (plain.login.as_str(), plain.password.as_str()),
            ("tim", "tanstaaftanstaaf")
        );
        assert!(decode_plain(&encode("tim\0tim\0pw")).is_ok());
    }

    #[test]
    fn acting_as_someone_else_is_refused() {
        assert_eq!(
            decode_plain(&encode("Ursel\0Kurt\0xipj3plmq")),
            Err(SaslError::OtherIdentity)
        );
    }

    #[test]
    fn malformed_responses_are_refused() {
        for text in ["", "\0\0", "a\0b", "\0\0pw", "a\0b\0c\0d"] {
            assert!(decode_plain(&encode(text)).is_err(), "{text:?}");
        }
        assert_eq!(decode_plain("not base64!"), Err(SaslError::Base64));
        assert_eq!(decode_plain("="), Err(SaslError::Malformed));
        assert!(decode_plain(&"A".repeat(5000)).is_err());
    }

    #[test]
    fn an_empty_password_is_passed_on_for_the_directory_to_refuse() {
        let plain = decode_plain(&encode("\0user\0")).unwrap();
        assert_eq!(
            (plain.login.as_str(), plain.password.as_str()),
            ("user", "")
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let plain = decode_plain(&encode("\0u\0secret")).unwrap();
        assert!(!format!("{plain:?}").contains("secret"));
    }
}
