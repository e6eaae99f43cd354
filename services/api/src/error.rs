//! The one error type of the HTTP API and its wire form.
//!
//! Every error answer is `{"error": {"code": "...", "message": "..."}}`, plus `"field"` when one
//! input field is at fault, with the status that says what the client should do. A directory
//! error is mapped here once: what the client caused (invalid input, conflicts, limits) keeps its
//! message, which names only what the client sent; what the platform caused (the directory down,
//! inconsistent data, a refusal by the directory's own access rules) gets a generic message and
//! the cause goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailfold_directory::DirectoryError;
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// Text for a person.
    pub message: String,
    /// The input field at fault, if one is.
    pub field: Option<String>,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<&'static str>,
    /// Seconds for `Retry-After`.
    retry_after: Option<u64>,
}

/// The challenge of the tenant API: Basic or a bearer token (RFC 7617, RFC 6750 §3).
pub const TENANT_CHALLENGE: &str = "Basic realm=\"mailfold\", Bearer realm=\"mailfold\"";
/// The challenge of the operator API.
pub const OPERATOR_CHALLENGE: &str = "Bearer realm=\"mailfold-operator\"";

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            challenge: None,
            retry_after: None,
        }
    }

    /// 400: the request cannot be read (malformed JSON, bad query).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 with a challenge: credentials missing or wrong.
    pub fn unauthorized(challenge: &'static str) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid credentials",
        );
        error.challenge = Some(challenge);
        error
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such resource (or one the caller may not know about).
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 405: the resource exists but not with this method.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this resource",
        )
    }

    /// 409: the change conflicts with what exists.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 413: the body is over the configured cap.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is over {limit} bytes"),
        )
    }

    /// 415: the body is not JSON.
    pub fn unsupported_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        )
    }

    /// 422: a field's value is not acceptable.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
        error.field = Some(field.to_string());
        error
    }

    /// 429: too many failed logins; try again after `seconds`.
    pub fn throttled(seconds: u64) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "too many failed logins; try again later",
        );
        error.retry_after = Some(seconds.max(1));
        error
    }

    /// 503: a dependency cannot answer now; try again.
    pub fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the directory is unavailable; try again later",
        )
    }

    /// 503: the request took longer than the configured limit.
    pub fn timeout() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long; try again later",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, axum::Json(json!({ "error": body }))).into_response();
        let headers = response.headers_mut();
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<DirectoryError> for ApiError {
    fn from(error: DirectoryError) -> ApiError {
        match error {
            DirectoryError::NotFound => ApiError::not_found(),
            DirectoryError::Invalid(message) => {
                // The directory's validation messages start with the field: "targets: ...".
                let field = message.split_once(": ").map(|(f, _)| f).filter(|f| {
                    !f.is_empty() && f.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
                match field {
                    Some(field) => ApiError::invalid(field, message.clone()),
                    None => {
                        let mut error = ApiError::invalid("", message);
                        error.field = None;
                        error
                    }
                }
            }
            DirectoryError::Conflict(message) => ApiError::conflict("conflict", message),
            DirectoryError::Loop(message) => {
                let mut error = ApiError::conflict("loop", message);
                error.field = Some("targets".into());
                error
            }
            DirectoryError::LimitReached(message) => ApiError::conflict("limit_reached", message),
            DirectoryError::Forbidden(cause) => {
                // The directory's own access rules refused a write Mailfold let through: an
                // authorisation bug or a tampered entry, which an operator must look at.
                tracing::warn!(%cause, "the directory refused a write");
                ApiError::forbidden("not permitted")
            }
            DirectoryError::Unavailable(_) | DirectoryError::Inconsistent(_) => {
                // The directory logged the cause; the client learns only to retry.
                ApiError::unavailable()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_name_their_field() {
        let error = ApiError::from(DirectoryError::Invalid("targets: \"x\": bad".into()));
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.field.as_deref(), Some("targets"));
        let unnamed = ApiError::from(DirectoryError::Invalid("Bad thing: x".into()));
        assert_eq!(unnamed.field, None);
    }

    #[test]
    fn platform_failures_say_nothing_of_their_cause() {
        for error in [
            DirectoryError::Unavailable("ldap://10.0.0.1 refused".into()),
            DirectoryError::Inconsistent("uid=x,ou=mailboxes has no mail".into()),
            DirectoryError::Forbidden("uid=jane may not write mail=x".into()),
        ] {
            let api = ApiError::from(error);
            assert!(!api.message.contains('='), "{}", api.message);
            assert!(
                api.status == StatusCode::SERVICE_UNAVAILABLE
                    || api.status == StatusCode::FORBIDDEN
            );
        }
    }
}
