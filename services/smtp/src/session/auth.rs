//! AUTH PLAIN and LOGIN on submission (RFC 4954), with the login throttle.

use mailfold_directory::{LoginFailure, Service};
use mailfold_net::stream::Line;

use super::Session;
use crate::Mode;
use crate::codec::{self, Reply};

impl Session {
    pub(super) async fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
    ) -> std::io::Result<()> {
        if self.mode != Mode::Submission || self.helo.is_none() || !self.esmtp {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "AUTH not available here"))
                .await;
        }
        if self.user.is_some() {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "already authenticated"))
                .await;
        }
        if !self.auth_offered() {
            // RFC 4954 §4 and RFC 3207: refuse plaintext credentials before TLS.
            return self
                .error(Reply::new(
                    538,
                    Some((5, 7, 11)),
                    "encryption required for AUTH",
                ))
                .await;
        }
        if self.transaction.from.is_some() {
            return self
                .error(Reply::new(
                    503,
                    Some((5, 5, 1)),
                    "AUTH not allowed in a transaction",
                ))
                .await;
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let Some(response) = self.sasl_response(initial, "").await? else {
                    return Ok(());
                };
                match mailfold_net::sasl::decode_plain(&response) {
                    Ok(credentials) => (credentials.login, credentials.password),
                    Err(_) => {
                        return self
                            .error(Reply::new(501, Some((5, 5, 2)), "malformed PLAIN response"))
                            .await;
                    }
                }
            }
            // The LOGIN mechanism (draft-murchison-sasl-login): "Username:" then "Password:".
            "LOGIN" => {
                let Some(login) = self.sasl_response(initial, "VXNlcm5hbWU6").await? else {
                    return Ok(());
                };
                let Some(password) = self.sasl_response(None, "UGFzc3dvcmQ6").await? else {
                    return Ok(());
                };
                match (decode_base64(&login), decode_base64(&password)) {
                    (Some(login), Some(password)) => (login, password),
                    _ => {
                        return self
                            .error(Reply::new(501, Some((5, 5, 2)), "malformed LOGIN response"))
                            .await;
                    }
                }
            }
            _ => {
                return self
                    .error(Reply::new(504, Some((5, 5, 4)), "unsupported mechanism"))
                    .await;
            }
        };
        self.login(&credentials.0, &credentials.1).await
    }

    /// The client's response to a `334` challenge (or the initial response); `None` when the
    /// exchange is over (cancelled or broken), after the reply was sent.
    pub(super) async fn sasl_response(
        &mut self,
        initial: Option<String>,
        challenge: &str,
    ) -> std::io::Result<Option<String>> {
        if let Some(initial) = initial {
            return Ok(Some(initial));
        }
        self.send(&Reply::new(334, None, challenge)).await?;
        match self.io().read_line(codec::MAX_COMMAND_LINE * 2).await? {
            Line::Complete(bytes) if bytes == b"*" => {
                // RFC 4954 §4: the client cancelled.
                self.error(Reply::new(501, Some((5, 0, 0)), "authentication cancelled"))
                    .await?;
                Ok(None)
            }
            Line::Complete(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Line::TooLong => {
                self.error(Reply::new(500, Some((5, 5, 6)), "response too long"))
                    .await?;
                Ok(None)
            }
            Line::Eof => Ok(None),
        }
    }

    pub(super) async fn login(&mut self, login: &str, password: &str) -> std::io::Result<()> {
        let services = self.services.clone();
        let ip = self.peer.ip();
        if services.throttle.check(ip, login).is_err() {
            services.metrics.login(false);
            return self
                .error(Reply::new(
                    454,
                    Some((4, 7, 0)),
                    "too many failed logins, try later",
                ))
                .await;
        }
        let attempt = Box::pin(
            services
                .directory
                .authenticate(login, password, Service::Smtp),
        );
        match attempt.await {
            Ok(mailbox) => {
                services.throttle.succeeded(ip, login);
                services.metrics.login(true);
                self.user = Some(mailbox);
                self.send(&Reply::new(235, Some((2, 7, 0)), "authenticated"))
                    .await
            }
            Err(LoginFailure::Refused(_)) => {
                services.throttle.failed(ip, login);
                services.metrics.login(false);
                tokio::time::sleep(services.throttle.failure_delay()).await;
                // RFC 4954 §6: 535 5.7.8, the same for every reason.
                self.error(Reply::new(535, Some((5, 7, 8)), "authentication failed"))
                    .await
            }
            Err(LoginFailure::Unavailable(_)) => {
                services.metrics.login(false);
                self.send(&Reply::new(
                    454,
                    Some((4, 7, 0)),
                    "temporary authentication failure",
                ))
                .await
            }
        }
    }
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}
