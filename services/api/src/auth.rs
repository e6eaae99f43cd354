//! Who is calling: a tenant administrator (HTTP Basic or a bearer token) or the operator.
//!
//! - Tenant API: `Authorization: Basic` with the administrator's `mail` or `<uid>@<tenant>` and
//!   password (RFC 7617), checked by the directory with a bind; or `Authorization: Bearer` with
//!   a token from `POST /v1/tokens` (RFC 6750), checked against its digest in the directory.
//! - Operator API: `Authorization: Bearer` with the operator token configured from a file,
//!   compared in constant time.
//!
//! Failed attempts count against the login throttle shared with the mail front-ends: per
//! client network, and per account for Basic logins (wrong tokens and operator tokens count
//! per client, so no client can lock others out of them); past the budget the answer is `429` with `Retry-After`
//! until the window has moved on, and every failure waits the configured delay before it is
//! answered. A missing, malformed or wrong credential is one `401` with a `WWW-Authenticate`
//! challenge; the log says which it was.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailfold_directory::{Admin, LoginFailure};

use crate::ApiState;
use crate::error::{ApiError, OPERATOR_CHALLENGE, TENANT_CHALLENGE};

/// The longest `Authorization` header read, in bytes.
pub const MAX_AUTHORIZATION: usize = 2048;

/// The client's address, put on each request by the server loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Credentials as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Basic base64(login:password)`.
    Basic {
        /// The login.
        login: String,
        /// The password.
        password: String,
    },
    /// `Bearer <token>`.
    Bearer(String),
}

/// An `Authorization` header that is not one of the accepted forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Reads the `Authorization` header; `None` when there is none, `Err` when it is malformed.
pub fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, Malformed> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    if value.len() > MAX_AUTHORIZATION {
        return Err(Malformed);
    }
    let value = value.to_str().map_err(|_| Malformed)?;
    let (scheme, rest) = value.trim().split_once(' ').ok_or(Malformed)?;
    let rest = rest.trim();
    // RFC 7235 §2.1: the scheme is case-insensitive.
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).map_err(|_| Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Malformed)?;
        // RFC 7617 §2: the user-id cannot contain a colon; the password may.
        let (login, password) = decoded.split_once(':').ok_or(Malformed)?;
        Ok(Some(Credentials::Basic {
            login: login.to_string(),
            password: password.to_string(),
        }))
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Ok(Some(Credentials::Bearer(rest.to_string())))
    } else {
        Err(Malformed)
    }
}

/// A tenant administrator who proved who it is, and the token it used, if any.
#[derive(Debug, Clone)]
pub struct TenantAdmin {
    /// The administrator.
    pub admin: Admin,
    /// The bearer token of this request, when it came with one.
    pub token: Option<String>,
}

impl FromRequestParts<ApiState> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let ip = peer_ip(parts);
        let refuse = || ApiError::unauthorized(TENANT_CHALLENGE);
        let credentials = match credentials(&parts.headers) {
            Ok(Some(credentials)) => credentials,
            Ok(None) => return Err(refuse()),
            Err(Malformed) => {
                state.record_login("malformed", "refused");
                return Err(refuse());
            }
        };

        // A token names no account worth guarding (its secret is 256 random bits), and one
        // key for every token would let any client lock all token users out: wrong tokens
        // count per client only.
        let (method, account) = match &credentials {
            Credentials::Basic { login, .. } => ("basic", login.to_lowercase()),
            Credentials::Bearer(_) => ("bearer", format!("bearer@{ip}")),
        };
        if let Err(wait) = state.throttle().check(ip, &account) {
            state.record_login(method, "throttled");
            return Err(ApiError::throttled(wait.as_secs()));
        }

        let outcome = match &credentials {
            Credentials::Basic { login, password } => {
                state.directory().authenticate_admin(login, password).await
            }
            Credentials::Bearer(token) => state.directory().authenticate_token(token).await,
        };
        match outcome {
            Ok(admin) => {
                state.throttle().succeeded(ip, &account);
                state.record_login(method, "accepted");
                let token = match credentials {
                    Credentials::Bearer(token) => Some(token),
                    Credentials::Basic { .. } => None,
                };
                Ok(TenantAdmin { admin, token })
            }
            Err(LoginFailure::Refused(reason)) => {
                tracing::info!(method, %ip, %reason, "api credentials refused");
                state.record_login(method, "refused");
                state.throttle().failed(ip, &account);
                tokio::time::sleep(state.throttle().failure_delay()).await;
                Err(refuse())
            }
            Err(LoginFailure::Unavailable(_)) => {
                state.record_login(method, "unavailable");
                Err(ApiError::unavailable())
            }
        }
    }
}

/// The platform operator, authenticated by the configured token.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let ip = peer_ip(parts);
        let refuse = || ApiError::unauthorized(OPERATOR_CHALLENGE);
        // Counted per client, like tokens: a shared key would let anyone lock the operator out.
        let account = format!("operator@{ip}");
        if let Err(wait) = state.throttle().check(ip, &account) {
            state.record_login("operator", "throttled");
            return Err(ApiError::throttled(wait.as_secs()));
        }
        let given = match credentials(&parts.headers) {
            Ok(Some(Credentials::Bearer(token))) => Some(token),
            Ok(None) => return Err(refuse()),
            _ => None,
        };
        // No token configured: the operator API is closed, whatever is sent.
        let expected = state.settings().operator_token.as_deref();
        let accepted = matches!((given.as_deref(), expected), (Some(g), Some(e)) if same(g, e));
        if accepted {
            state.throttle().succeeded(ip, &account);
            state.record_login("operator", "accepted");
            return Ok(Operator);
        }
        tracing::warn!(%ip, "operator credentials refused");
        state.record_login("operator", "refused");
        state.throttle().failed(ip, &account);
        tokio::time::sleep(state.throttle().failure_delay()).await;
        Err(refuse())
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let encoded = STANDARD.encode("jane@acme:pass:word");
        assert_eq!(
            credentials(&header(&format!("basic {encoded}"))),
            Ok(Some(Credentials::Basic {
                login: "jane@acme".into(),
                password: "pass:word".into()
            }))
        );
    }

    #[test]
    fn malformed_authorization_headers_are_errors() {
        for bad in [
            "Basic",
            "Basic !!!",
            "Digest abc",
            "Bearer ",
            "Basic bm9jb2xvbg==",
        ] {
            assert_eq!(credentials(&header(bad)), Err(Malformed), "{bad}");
        }
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION));
        assert_eq!(credentials(&header(&long)), Err(Malformed));
        assert_eq!(credentials(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab") && !same("", "a"));
    }
}
