//! One SMTP, submission or LMTP session: greeting, EHLO, the mail transaction, STARTTLS and
//! AUTH, each command in a handler of its own.
//!
//! The session reads one capped line at a time (RFC 5321 §4.5.3.1.4: 512 octets), parses it
//! with [`crate::codec`] and dispatches it. A transaction is MAIL, one or more RCPT, then DATA
//! or BDAT; only when every accepted recipient's copy is durable in its mailbox does the
//! client get `250` (LMTP: one reply per recipient, RFC 2033 §4.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailfold_directory::{LoginFailure, Mailbox, Resolution, Service};
use mailfold_net::stream::{Line, LineReader, MaybeTls};
use mailfold_store::{QuotaLimit, Recipient, StoreError};
use tokio::io::AsyncWriteExt;

use crate::codec::{self, Command, ForwardPath, MailParameters, Reply, ReversePath};
use crate::data::{self, Received, Refusal};
use crate::received::{Protocol, Trace};
use crate::spool::Spool;
use crate::{Mode, Services};

/// Protocol errors after which the connection is closed (RFC 5321 §4.5.3.2 lets a server end
/// a session that misbehaves).
pub const MAX_ERRORS: usize = 10;
/// Most recipients of one transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
pub const MAX_RECIPIENTS: usize = 100;
/// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 5321 §4.5.3.2.6: and 10 minutes for the end of the data.
const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// An accepted recipient: who was named, and the mailbox that receives the copy.
struct Accepted {
    address: String,
    mailbox: Mailbox,
}

/// The transaction in progress.
#[derive(Default)]
struct Transaction {
    from: Option<ReversePath>,
    parameters: Option<MailParameters>,
    recipients: Vec<Accepted>,
    /// LMTP wants one reply per RCPT that succeeded, even when two name one mailbox.
    replies_owed: usize,
    /// BDAT chunks received so far.
    spool: Option<Spool>,
    bdat_refusal: Option<Refusal>,
}

/// One session.
pub struct Session {
    services: Arc<Services>,
    mode: Mode,
    peer: SocketAddr,
    reader: Option<LineReader<MaybeTls>>,
    helo: Option<String>,
    esmtp: bool,
    user: Option<Mailbox>,
    transaction: Transaction,
    errors: usize,
}

enum Next {
    Continue,
    Close,
    StartTls,
}

impl Session {
    /// A session on `stream` from `peer`.
    pub fn new(services: Arc<Services>, mode: Mode, peer: SocketAddr, stream: MaybeTls) -> Session {
        Session {
            services,
            mode,
            peer,
            reader: Some(LineReader::new(stream)),
            helo: None,
            esmtp: false,
            user: None,
            transaction: Transaction::default(),
            errors: 0,
        }
    }

    /// The connection; absent only inside [`Session::start_tls`], which restores it or ends
    /// the session with an error.
    fn io(&mut self) -> &mut LineReader<MaybeTls> {
        self.reader
            .as_mut()
            .expect("connection present outside start_tls")
    }

    fn is_tls(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| r.inner().is_tls())
    }

    async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        let wire = reply.to_wire();
        let stream = self.io().inner_mut();
        stream.write_all(wire.as_bytes()).await?;
        stream.flush().await
    }

    /// Runs the session to its end.
    pub async fn run(mut self) -> std::io::Result<()> {
        let host = self.services.hostname.clone();
        let greeting = match self.mode {
            Mode::Lmtp => format!("{host} LMTP ready"),
            _ => format!("{host} ESMTP ready"),
        };
        // RFC 5321 §4.3.1: the greeting; no software name or version.
        self.send(&Reply::new(220, None, &greeting)).await?;

        loop {
            let line = tokio::time::timeout(
                COMMAND_TIMEOUT,
                self.io().read_line(codec::MAX_MAIL_COMMAND_LINE - 2),
            )
            .await;
            let bytes = match line {
                Err(_) => {
                    let _ = self
                        .send(&Reply::new(
                            421,
                            Some((4, 4, 2)),
                            "idle for too long, closing",
                        ))
                        .await;
                    return Ok(());
                }
                Ok(Err(error)) => return Err(error),
                Ok(Ok(Line::Eof)) => return Ok(()),
                Ok(Ok(Line::TooLong)) => {
                    // RFC 5321 §4.5.3.1.4 and §4.2.2: 500 for a line too long.
                    self.error(Reply::new(500, Some((5, 5, 2)), "line too long"))
                        .await?;
                    if self.errors >= MAX_ERRORS {
                        return self.close_for_errors().await;
                    }
                    continue;
                }
                Ok(Ok(Line::Complete(bytes))) => bytes,
            };

            let utf8 = self
                .transaction
                .parameters
                .as_ref()
                .is_some_and(|p| p.smtputf8);
            let next = match codec::parse(&bytes, utf8) {
                Ok(command) => {
                    let verb = command.verb();
                    let errors = self.errors;
                    let next = self.dispatch(command).await?;
                    self.services.metrics.command(verb, self.errors == errors);
                    next
                }
                Err(error) => {
                    self.error(error.reply()).await?;
                    Next::Continue
                }
            };
            match next {
                Next::Continue => {}
                Next::Close => return Ok(()),
                Next::StartTls => self.start_tls().await?,
            }
            if self.errors >= MAX_ERRORS {
                return self.close_for_errors().await;
            }
        }
    }

    async fn close_for_errors(&mut self) -> std::io::Result<()> {
        let _ = self
            .send(&Reply::new(
                421,
                Some((4, 7, 0)),
                "too many errors, closing",
            ))
            .await;
        Ok(())
    }

    async fn error(&mut self, reply: Reply) -> std::io::Result<()> {
        self.errors += 1;
        self.send(&reply).await
    }

    async fn dispatch(&mut self, command: Command) -> std::io::Result<Next> {
        let lmtp = self.mode == Mode::Lmtp;
        match command {
            Command::Ehlo(name) | Command::Helo(name) if lmtp => {
                let _ = name;
                // RFC 2033 §4.1: LMTP has LHLO, and HELO/EHLO are refused.
                self.error(Reply::new(500, Some((5, 5, 1)), "use LHLO"))
                    .await?;
            }
            Command::Lhlo(_) if !lmtp => {
                self.error(Reply::new(500, Some((5, 5, 1)), "unknown command"))
                    .await?;
            }
            Command::Ehlo(name) | Command::Lhlo(name) => self.ehlo(name, true).await?,
            Command::Helo(name) => self.ehlo(name, false).await?,
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
            Command::Mail { from, parameters } => self.mail(from, parameters).await?,
            Command::Rcpt { to, .. } => self.rcpt(to).await?,
            Command::Data => self.data().await?,
            Command::Bdat { size, last } => self.bdat(size, last).await?,
            Command::Rset => {
                // RFC 5321 §4.1.1.5: the transaction is abandoned, the session stays.
                self.transaction = Transaction::default();
                self.send(&Reply::ok((2, 0, 0), "reset")).await?;
            }
            Command::Noop => self.send(&Reply::ok((2, 0, 0), "ok")).await?,
            // RFC 5321 §3.5.3: 252 when the server will not verify; no user enumeration.
            Command::Vrfy(_) => {
                self.send(&Reply::new(
                    252,
                    Some((2, 5, 0)),
                    "cannot verify, try sending",
                ))
                .await?
            }
            Command::Help => {
                self.send(&Reply::new(214, Some((2, 0, 0)), "see RFC 5321"))
                    .await?
            }
            Command::Quit => {
                self.send(&Reply::new(221, Some((2, 0, 0)), "bye")).await?;
                return Ok(Next::Close);
            }
        }
        Ok(Next::Continue)
    }

    async fn ehlo(&mut self, name: String, extended: bool) -> std::io::Result<()> {
        // RFC 5321 §4.1.4: EHLO resets the transaction and begins afresh.
        self.transaction = Transaction::default();
        self.helo = Some(name);
        self.esmtp = extended;
        if !extended {
            let host = self.services.hostname.clone();
            return self.send(&Reply::ok_plain(&host)).await;
        }
        let mut lines = vec![self.services.hostname.clone()];
        lines.push("PIPELINING".into()); // RFC 2920
        lines.push(format!("SIZE {}", self.services.policy.max_message_size)); // RFC 1870
        lines.push("8BITMIME".into()); // RFC 6152
        lines.push("ENHANCEDSTATUSCODES".into()); // RFC 2034
        lines.push("SMTPUTF8".into()); // RFC 6531
        lines.push("CHUNKING".into()); // RFC 3030
        if self.services.tls.is_some() && !self.is_tls() {
            lines.push("STARTTLS".into()); // RFC 3207
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into()); // RFC 4954, RFC 4616
        }
        self.send(&Reply::multiline(250, lines)).await
    }

    /// AUTH is offered on submission only, and there only over TLS unless the policy allows
    /// plaintext for this client.
    fn auth_offered(&self) -> bool {
        self.mode == Mode::Submission
            && self.user.is_none()
            && (self.is_tls() || self.services.policy.plaintext_allowed(self.peer.ip()))
    }

    async fn starttls(&mut self) -> std::io::Result<Next> {
        if self.services.tls.is_none() || self.is_tls() {
            self.error(Reply::new(502, Some((5, 5, 1)), "STARTTLS not available"))
                .await?;
            return Ok(Next::Continue);
        }
        self.send(&Reply::new(220, Some((2, 0, 0)), "ready to start TLS"))
            .await?;
        Ok(Next::StartTls)
    }

    /// RFC 3207 §4.2: after the handshake every state is forgotten, and anything the client
    /// pipelined after STARTTLS is discarded, never run as a command under TLS.
    async fn start_tls(&mut self) -> std::io::Result<()> {
        let Some(acceptor) = self.services.tls.clone() else {
            return Ok(());
        };
        let Some(reader) = self.reader.take() else {
            return Ok(());
        };
        let (stream, leftovers) = reader.into_inner();
        if !leftovers.is_empty() {
            tracing::warn!(
                bytes = leftovers.len(),
                "discarding data pipelined after STARTTLS"
            );
        }
        let stream = tokio::time::timeout(Duration::from_secs(30), stream.upgrade(&acceptor))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake timed out")
            })??;
        self.reader = Some(LineReader::new(stream));
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.transaction = Transaction::default();
        Ok(())
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<()> {
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
    async fn sasl_response(
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

    async fn login(&mut self, login: &str, password: &str) -> std::io::Result<()> {
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

    async fn mail(&mut self, from: ReversePath, parameters: MailParameters) -> std::io::Result<()> {
        if self.helo.is_none() {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "send EHLO first"))
                .await;
        }
        if self.transaction.from.is_some() {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "nested MAIL command"))
                .await;
        }
        if self.mode == Mode::Submission {
            let Some(user) = &self.user else {
                return self
                    .error(Reply::new(530, Some((5, 7, 0)), "authentication required"))
                    .await;
            };
            // The sender must be one of the mailbox's own addresses.
            let owned = match &from {
                ReversePath::Null => false,
                ReversePath::Address(address) => {
                    user.addresses.iter().any(|a| a == address.as_str())
                }
            };
            if !owned {
                return self
                    .error(Reply::new(
                        553,
                        Some((5, 7, 1)),
                        "sender address not owned by the login",
                    ))
                    .await;
            }
        }
        // RFC 1870 §6: a declared size over the limit is refused at once.
        let limit = self.services.policy.max_message_size;
        if parameters
            .size
            .is_some_and(|size| limit > 0 && size > limit)
        {
            return self
                .error(Reply::new(552, Some((5, 3, 4)), "message too big"))
                .await;
        }
        self.transaction = Transaction {
            from: Some(from),
            parameters: Some(parameters),
            ..Transaction::default()
        };
        self.send(&Reply::ok((2, 1, 0), "sender ok")).await
    }

    async fn rcpt(&mut self, to: ForwardPath) -> std::io::Result<()> {
        if self.transaction.from.is_none() {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "send MAIL first"))
                .await;
        }
        if self.transaction.replies_owed >= MAX_RECIPIENTS {
            return self
                .send(&Reply::new(452, Some((4, 5, 3)), "too many recipients"))
                .await;
        }
        let address = match to {
            ForwardPath::Postmaster => self.services.policy.postmaster.clone(),
            ForwardPath::Address(address) => address.to_string(),
        };
        let size = self
            .transaction
            .parameters
            .as_ref()
            .and_then(|p| p.size)
            .unwrap_or(0);
        match self.check_recipient(&address, size).await {
            Ok(mailboxes) => {
                for mailbox in mailboxes {
                    let duplicate = self
                        .transaction
                        .recipients
                        .iter()
                        .any(|r| r.mailbox.id == mailbox.id);
                    if !duplicate || self.mode == Mode::Lmtp {
                        self.transaction.recipients.push(Accepted {
                            address: address.clone(),
                            mailbox,
                        });
                    }
                }
                self.transaction.replies_owed += 1;
                self.send(&Reply::ok((2, 1, 5), "recipient ok")).await
            }
            Err(reply) => {
                self.services.metrics.rejected(reject_reason(&reply));
                self.send(&reply).await
            }
        }
    }

    /// The mailboxes a recipient address delivers to, or the reply that refuses it.
    async fn check_recipient(&self, address: &str, size: u64) -> Result<Vec<Mailbox>, Reply> {
        let temporary = || Reply::new(451, Some((4, 3, 0)), "temporary failure, try again later");
        let resolution = match self.services.directory.resolve_recipient(address).await {
            Ok(resolution) => resolution,
            Err(error) if error.is_temporary() => return Err(temporary()),
            Err(_) => {
                return Err(Reply::new(
                    501,
                    Some((5, 1, 3)),
                    "bad recipient address syntax",
                ));
            }
        };
        let mailboxes = match resolution {
            // RFC 5321 §3.6.2: only local domains; no relaying without authentication.
            Resolution::NotLocal => {
                return Err(Reply::new(550, Some((5, 7, 1)), "relay access denied"));
            }
            Resolution::Unknown => return Err(Reply::new(550, Some((5, 1, 1)), "no such user")),
            Resolution::Inactive { .. } => {
                return Err(Reply::new(550, Some((5, 2, 1)), "mailbox disabled"));
            }
            Resolution::Mailbox(mailbox) => {
                if !mailbox.allows(Service::Deliver) {
                    return Err(Reply::new(550, Some((5, 2, 1)), "mailbox disabled"));
                }
                vec![mailbox]
            }
            Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion } => {
                if expansion.mailboxes.is_empty() && expansion.external.is_empty() {
                    return Err(Reply::new(550, Some((5, 1, 1)), "no such user"));
                }
                expansion.mailboxes
            }
        };
        // TODO: forwarding to other hosts needs the outbound queue (its own issue); until then
        // a recipient that would forward waits (4xx) rather than losing the forwarded copy.
        if mailboxes.iter().any(|m| !m.forward.is_empty()) || self.expands_outside(address).await {
            return Err(Reply::new(
                451,
                Some((4, 3, 2)),
                "forwarding to other hosts is not available yet",
            ));
        }

        for mailbox in &mailboxes {
            // RFC 1870: the recipient's own limit, before the body is sent.
            if mailbox.max_message_size > 0 && size > mailbox.max_message_size {
                return Err(Reply::new(
                    552,
                    Some((5, 3, 4)),
                    "message too big for the recipient",
                ));
            }
            let quota = QuotaLimit {
                bytes: mailbox.quota_bytes,
                messages: mailbox.quota_messages,
            };
            let check = self
                .services
                .store
                .mailbox(&mailbox.shard, &mailbox.store, quota)
                .and_then(|m| m.check_fits(size));
            match check {
                Ok(()) => {}
                Err(StoreError::OverQuota { permanent: true }) => {
                    return Err(Reply::new(552, Some((5, 2, 2)), "mailbox full"));
                }
                // RFC 3463 X.2.2: mailbox full, temporarily.
                Err(StoreError::OverQuota { permanent: false }) => {
                    return Err(Reply::new(452, Some((4, 2, 2)), "mailbox full"));
                }
                Err(error) => {
                    tracing::warn!(cause = %error, "checking a recipient's mailbox");
                    return Err(temporary());
                }
            }
        }
        Ok(mailboxes)
    }

    /// Whether the address's expansion reaches addresses outside the platform.
    async fn expands_outside(&self, address: &str) -> bool {
        match self.services.directory.resolve_recipient(address).await {
            Ok(Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion }) => {
                !expansion.external.is_empty()
            }
            _ => false,
        }
    }

    async fn data(&mut self) -> std::io::Result<()> {
        if self.transaction.from.is_none() || self.transaction.replies_owed == 0 {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "no valid recipients"))
                .await;
        }
        if self.transaction.spool.is_some() {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "DATA after BDAT"))
                .await;
        }
        let mut spool = match self.new_spool().await {
            Ok(spool) => spool,
            Err(reply) => return self.send(&reply).await,
        };
        self.send(&Reply::new(354, None, "end data with <CR><LF>.<CR><LF>"))
            .await?;

        let limit = self.message_limit();
        let endings = self.services.policy.bare_line_endings;
        let reader = self.io();
        let received = tokio::time::timeout(
            DATA_TIMEOUT,
            data::receive_data(reader, &mut spool, limit, endings),
        )
        .await;
        let received = match received {
            Err(_) => {
                let _ = self
                    .send(&Reply::new(
                        421,
                        Some((4, 4, 2)),
                        "timeout waiting for data",
                    ))
                    .await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "data timeout",
                ));
            }
            Ok(received) => received?,
        };
        match received {
            Received::Truncated => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed in DATA",
            )),
            Received::Refused(refusal) => {
                self.transaction = Transaction::default();
                let reply = refusal_reply(refusal);
                self.services.metrics.rejected(reject_reason(&reply));
                self.send(&reply).await
            }
            Received::Complete(_) => self.deliver(spool).await,
        }
    }

    async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<()> {
        // RFC 3030 §2: the chunk is read even when the command is refused, to stay in step.
        let ready = self.transaction.from.is_some() && self.transaction.replies_owed > 0;
        if ready && self.transaction.spool.is_none() {
            match self.new_spool().await {
                Ok(spool) => self.transaction.spool = Some(spool),
                Err(reply) => {
                    let mut discard = None;
                    self.read_chunk(&mut discard, size).await?;
                    return self.send(&reply).await;
                }
            }
        }
        let mut spool = if ready {
            self.transaction.spool.take()
        } else {
            None
        };
        let refused = self.read_chunk(&mut spool, size).await?;
        if !ready {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "no valid recipients"))
                .await;
        }
        if let Some(refusal) = refused {
            self.transaction.bdat_refusal.get_or_insert(refusal);
        }
        if !last {
            self.transaction.spool = spool;
            return self
                .send(&Reply::ok((2, 0, 0), &format!("{size} octets received")))
                .await;
        }
        if let Some(refusal) = self.transaction.bdat_refusal.take() {
            self.transaction = Transaction::default();
            return self.send(&refusal_reply(refusal)).await;
        }
        match spool {
            Some(spool) => self.deliver(spool).await,
            None => {
                self.send(&Reply::new(451, Some((4, 3, 0)), "temporary failure"))
                    .await
            }
        }
    }

    async fn read_chunk(
        &mut self,
        spool: &mut Option<Spool>,
        size: u64,
    ) -> std::io::Result<Option<Refusal>> {
        let limit = self.message_limit();
        match spool {
            Some(spool) => Ok(data::receive_chunk(self.io(), spool, size, limit, true)
                .await?
                .err()),
            None => {
                let folder = self.services.spool_dir.clone();
                let mut scratch = Spool::create(&folder).await?;
                let _ = data::receive_chunk(self.io(), &mut scratch, size, limit, false).await?;
                Ok(None)
            }
        }
    }

    /// The strictest limit among the configured one and the recipients' own.
    fn message_limit(&self) -> u64 {
        let own = self
            .transaction
            .recipients
            .iter()
            .map(|r| r.mailbox.max_message_size);
        std::iter::once(self.services.policy.max_message_size)
            .chain(own)
            .filter(|l| *l > 0)
            .min()
            .unwrap_or(0)
    }

    /// A spool file that starts with this server's `Received:` header.
    async fn new_spool(&self) -> Result<Spool, Reply> {
        let temporary = |error: std::io::Error| {
            tracing::warn!(cause = %error, "creating a spool file");
            Reply::new(451, Some((4, 3, 0)), "temporary failure, try again later")
        };
        let mut spool = Spool::create(&self.services.spool_dir)
            .await
            .map_err(temporary)?;
        // The spool file's unique name, without its size field, is the transaction id.
        let stem = spool
            .path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        let id = stem
            .unwrap_or_default()
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        let single = match self.transaction.recipients.as_slice() {
            [only] => Some(only.address.as_str()),
            _ => None,
        };
        let protocol = match self.mode {
            Mode::Lmtp => Protocol::Lmtp { tls: self.is_tls() },
            _ if !self.esmtp => Protocol::Smtp,
            _ => Protocol::Esmtp {
                tls: self.is_tls(),
                authenticated: self.user.is_some(),
            },
        };
        let trace = Trace {
            helo: self.helo.as_deref().unwrap_or(""),
            peer: self.peer.ip(),
            server: &self.services.hostname,
            protocol,
            id: &id,
            recipient: single,
        };
        let header = crate::received::received(&trace, SystemTime::now());
        spool
            .write_all(header.as_bytes())
            .await
            .map_err(temporary)?;
        Ok(spool)
    }

    /// Delivers the received message to every accepted recipient; replies once (SMTP) or per
    /// recipient (LMTP). Invariant 1: `250` only once each copy is durable.
    async fn deliver(&mut self, mut spool: Spool) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let size = spool.size();
        let transaction = std::mem::take(&mut self.transaction);
        if let Err(error) = spool.finish().await {
            tracing::warn!(cause = %error, "writing the spool file");
            return self
                .send(&Reply::new(
                    451,
                    Some((4, 3, 0)),
                    "temporary failure, try again later",
                ))
                .await;
        }
        let sender = match &transaction.from {
            Some(ReversePath::Address(address)) => address.to_string(),
            _ => String::new(),
        };

        let store = self.services.store.clone();
        let path = spool.path().to_path_buf();
        let targets: Vec<(String, Mailbox)> = transaction
            .recipients
            .iter()
            .map(|r| (r.address.clone(), r.mailbox.clone()))
            .collect();
        let results = tokio::task::spawn_blocking(move || {
            let mut maildirs = Vec::new();
            let mut prefixes = Vec::new();
            for (address, mailbox) in &targets {
                let quota = QuotaLimit {
                    bytes: mailbox.quota_bytes,
                    messages: mailbox.quota_messages,
                };
                maildirs.push(store.mailbox(&mailbox.shard, &mailbox.store, quota));
                // RFC 5321 §4.4: Return-Path at final delivery; Delivered-To names the mailbox.
                prefixes.push(format!(
                    "Return-Path: <{sender}>\r\nDelivered-To: {address}\r\n"
                ));
            }
            let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(targets.len());
            for (maildir, prefix) in maildirs.iter().zip(&prefixes) {
                let result = match maildir {
                    Ok(maildir) => mailfold_store::deliver(
                        &path,
                        &[Recipient {
                            maildir,
                            prefix: Some(prefix.as_bytes()),
                        }],
                    )
                    .remove(0)
                    .map(|_| ()),
                    Err(error) => Err(StoreError::Unavailable(error.to_string())),
                };
                results.push(result);
            }
            results
        })
        .await
        .unwrap_or_default();
        drop(spool);
        self.services
            .metrics
            .delivered_in(started.elapsed().as_secs_f64());

        let outcome: Vec<Result<(), String>> = transaction
            .recipients
            .iter()
            .enumerate()
            .map(|(index, _)| match results.get(index) {
                Some(Ok(())) => Ok(()),
                Some(Err(error)) => Err(error.to_string()),
                None => Err("delivery task failed".to_string()),
            })
            .collect();
        for (recipient, result) in transaction.recipients.iter().zip(&outcome) {
            match result {
                Ok(()) => {
                    tracing::info!(recipient = %recipient.mailbox.address, "delivered");
                    self.services
                        .metrics
                        .received(&recipient.mailbox.tenant, size);
                }
                Err(cause) => {
                    tracing::warn!(recipient = %recipient.mailbox.address, %cause, "delivery failed")
                }
            }
        }

        if self.mode == Mode::Lmtp {
            // RFC 2033 §4.2: one reply per recipient accepted at RCPT, in order.
            for result in &outcome {
                let reply = match result {
                    Ok(()) => Reply::ok((2, 0, 0), "delivered"),
                    Err(_) => {
                        Reply::new(451, Some((4, 3, 0)), "temporary failure, try again later")
                    }
                };
                self.send(&reply).await?;
            }
            return Ok(());
        }
        // One reply for all: any failure makes the client retry the whole message. A copy
        // already delivered may then arrive twice, which is better than losing one.
        if outcome.iter().all(Result::is_ok) {
            self.send(&Reply::ok((2, 0, 0), "message accepted")).await
        } else {
            self.send(&Reply::new(
                451,
                Some((4, 3, 0)),
                "temporary failure, try again later",
            ))
            .await
        }
    }
}

fn refusal_reply(refusal: Refusal) -> Reply {
    match refusal {
        Refusal::TooBig => Reply::new(552, Some((5, 3, 4)), "message too big"),
        // RFC 5321 §2.3.8: CR and LF only together.
        Refusal::BareLineEnding => Reply::new(550, Some((5, 6, 0)), "bare CR or LF not allowed"),
        Refusal::LineTooLong => Reply::new(500, Some((5, 5, 2)), "line too long"),
    }
}

/// The `reason` label of a rejection.
fn reject_reason(reply: &Reply) -> &'static str {
    match (reply.code, reply.status) {
        (550, Some((5, 7, 1))) => "relay",
        (550, Some((5, 1, 1))) => "unknown_user",
        (550, Some((5, 2, 1))) => "disabled",
        (_, Some((_, 2, 2))) => "quota",
        (552, _) => "size",
        (550, Some((5, 6, 0))) => "bare_line_ending",
        (code, _) if code >= 500 => "other",
        _ => "temporary",
    }
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}
