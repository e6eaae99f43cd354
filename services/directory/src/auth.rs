//! Logging a user in for a service: search for the login, bind as the entry found, then check
//! status and services.
//!
//! Every way a login can fail for the user's own reasons (bad syntax, empty password, unknown
//! login, wrong password, inactive account, service not enabled) is one
//! [`LoginFailure::Refused`] to the front-end, which shows one generic answer; the
//! [`Refusal`] inside says why, for the log only. A directory that cannot answer is
//! [`LoginFailure::Unavailable`], which the front-end reports as a temporary failure.
//!
//! The password is checked before the account's status, so that the log tells an operator
//! "disabled account, right password" apart from guessing.

use std::fmt;

use crate::Directory;
use crate::address::Address;
use crate::backend::BindOutcome;
use crate::error::DirectoryError;
use crate::model::{Mailbox, Service, Status};
use crate::resolve::Found;

/// Why a login was refused. For logs: never show it to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The login is not a valid address.
    InvalidLogin,
    /// An empty password: refused before any bind, because some servers treat a bind with a
    /// DN and no password as an anonymous success (RFC 4513 §5.1.2).
    EmptyPassword,
    /// No mailbox has that login.
    UnknownLogin,
    /// The login matches an entry that is not a mailbox, or more than one entry.
    Ambiguous,
    /// The password did not match.
    WrongPassword,
    /// The mailbox, its domain or its tenant is not active.
    Inactive(Status),
    /// The service is not among the mailbox's enabled services.
    ServiceNotEnabled(Service),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InvalidLogin => f.write_str("invalid login syntax"),
            Refusal::EmptyPassword => f.write_str("empty password"),
            Refusal::UnknownLogin => f.write_str("unknown login"),
            Refusal::Ambiguous => f.write_str("login matches no single mailbox"),
            Refusal::WrongPassword => f.write_str("wrong password"),
            Refusal::Inactive(status) => write!(f, "account {status}"),
            Refusal::ServiceNotEnabled(service) => write!(f, "service {service} not enabled"),
        }
    }
}

/// A failed login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginFailure {
    /// The user's credentials or account do not allow the login.
    #[error("login refused: {0}")]
    Refused(Refusal),
    /// The directory could not answer; try again later.
    #[error("login not checked: {0}")]
    Unavailable(DirectoryError),
}

impl Directory {
    /// Logs `login` in for `service`. On success, the mailbox.
    pub async fn authenticate(
        &self,
        login: &str,
        password: &str,
        service: Service,
    ) -> Result<Mailbox, LoginFailure> {
        let result = self.check_login(login, password, service).await;
        match &result {
            Ok(mailbox) => {
                tracing::info!(login = %mailbox.address, %service, "login accepted");
            }
            Err(LoginFailure::Refused(reason)) => {
                // The login is logged as typed only when it is a valid address: arbitrary
                // client bytes do not belong in logs.
                let login = Address::parse(login)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!(%login, %service, %reason, "login refused");
            }
            Err(LoginFailure::Unavailable(cause)) => {
                tracing::warn!(%service, %cause, "login could not be checked");
            }
        }
        self.metrics.login(service.as_str(), result.is_ok());
        result
    }

    async fn check_login(
        &self,
        login: &str,
        password: &str,
        service: Service,
    ) -> Result<Mailbox, LoginFailure> {
        let refused = LoginFailure::Refused;
        let Ok(address) = Address::parse(login) else {
            return Err(refused(Refusal::InvalidLogin));
        };
        if password.is_empty() {
            return Err(refused(Refusal::EmptyPassword));
        }

        let mailbox = self.login_mailbox(&address).await?;
        let outcome = self
            .timed("bind", self.backend.bind(&mailbox.dn, password))
            .await
            .map_err(LoginFailure::Unavailable)?;
        if outcome == BindOutcome::Refused {
            return Err(refused(Refusal::WrongPassword));
        }

        if mailbox.status != Status::Active {
            return Err(refused(Refusal::Inactive(mailbox.status)));
        }
        if !mailbox.services.contains(service) {
            return Err(refused(Refusal::ServiceNotEnabled(service)));
        }
        Ok(mailbox)
    }

    /// The one mailbox whose `mailfoldAddress` is the login (an alias domain name counts).
    async fn login_mailbox(&self, address: &Address) -> Result<Mailbox, LoginFailure> {
        let unavailable = LoginFailure::Unavailable;
        let resolution = self
            .resolve_domain(address.domain())
            .await
            .map_err(unavailable)?;
        let Some(domain) = resolution.local().cloned() else {
            return Err(LoginFailure::Refused(Refusal::UnknownLogin));
        };

        let mut candidates = vec![address.clone()];
        if address.domain() != domain.name.as_str() {
            candidates.push(address.with_domain(&domain.name));
        }
        for candidate in candidates {
            match self.find_address(&candidate, &domain).await {
                Ok(Some(Found::Mailbox(mailbox))) => return Ok(mailbox),
                Ok(Some(Found::Alias(..))) => {
                    return Err(LoginFailure::Refused(Refusal::Ambiguous));
                }
                Ok(None) => continue,
                // Two entries for one login, or a broken entry: refused, never "take the
                // first", and loud in the log because an operator has to repair the data.
                Err(DirectoryError::Inconsistent(cause)) => {
                    tracing::error!(login = %address, %cause, "login matches no single mailbox");
                    return Err(LoginFailure::Refused(Refusal::Ambiguous));
                }
                Err(error) if error.is_temporary() => return Err(unavailable(error)),
                Err(_) => return Err(LoginFailure::Refused(Refusal::UnknownLogin)),
            }
        }
        Err(LoginFailure::Refused(Refusal::UnknownLogin))
    }
}
