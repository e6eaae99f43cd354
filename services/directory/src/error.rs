//! The directory's error type, split by what a front-end must do about it.
//!
//! SMTP needs to tell a temporary failure (answer `4xx`, the sender retries) from a permanent
//! one, so [`DirectoryError::is_temporary`] is the question every caller asks first. The
//! messages name internal causes for the log; front-ends put their own generic text on the wire.

use crate::address::AddressError;

/// A failed directory operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The directory could not answer: server down, timeout, pool exhausted, I/O failure.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The directory answered with data Mailfold cannot use: two entries for one address, an
    /// entry outside the expected tree, a limit that is not a number. Temporary for clients
    /// (mail waits while an operator repairs the data), logged as an error.
    #[error("directory data inconsistent: {0}")]
    Inconsistent(String),
    /// The caller's input is not acceptable (an address that fails validation).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// The object, or an address it would claim, exists already. The text is fit for the
    /// client: it names what the client sent, never a DN or a server's message.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The change would make an alias lead back to itself.
    #[error("loop: {0}")]
    Loop(String),
    /// A configured limit (aliases per domain, ...) would be exceeded.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The directory refused the operation for the identity used.
    #[error("not permitted: {0}")]
    Forbidden(String),
}

impl DirectoryError {
    /// Whether the caller should try again later (`4xx` in SMTP, `503` in HTTP).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            DirectoryError::Unavailable(_) | DirectoryError::Inconsistent(_)
        )
    }
}

impl From<AddressError> for DirectoryError {
    fn from(error: AddressError) -> DirectoryError {
        DirectoryError::Invalid(error.to_string())
    }
}

/// Result of a directory operation.
pub type Result<T, E = DirectoryError> = std::result::Result<T, E>;
