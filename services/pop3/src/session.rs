//! One POP3 session: the AUTHORIZATION, TRANSACTION and UPDATE states of RFC 1939 §3.
//!
//! The session reads one capped line at a time, parses it with [`crate::codec`], and hands
//! it to the handler of the current state: `Session::authorization` for logins, STLS and
//! CAPA, `Session::transaction` for the maildrop commands. The maildrop is fixed at login
//! (RFC 1939 §5: message numbers do not change during a session); DELE only marks, and only
//! QUIT in the TRANSACTION state removes (RFC 1939 §6). A session that ends any other way
//! (dropped connection, timeout, server shutdown) removes nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfold_directory::{LoginFailure, Mailbox, Service};
use mailfold_net::stream::{Line, LineReader, MaybeTls};
use mailfold_store::{Maildir, MessageInfo, QuotaLimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Services;
use crate::codec::{self, Code, Command, ParseError};
use crate::lock::{HEARTBEAT, LockError, MaildropLock};
use crate::transfer::Stuffer;

/// Longest command line, CRLF included (RFC 2449 §4 says 255; AUTH responses need more).
pub const MAX_LINE: usize = 1024;
/// Protocol errors after which the session is closed.
pub const MAX_ERRORS: usize = 10;
/// Chunk size for RETR and TOP.
const CHUNK: usize = 64 * 1024;

/// What the session knows about its connection.
pub struct Peer {
    /// The client's address (from the PROXY header when a balancer sent one).
    pub address: SocketAddr,
}

/// A message of the maildrop, as fixed at login.
struct Entry {
    info: MessageInfo,
    /// The size announced to the client.
    size: u64,
    deleted: bool,
}

/// The TRANSACTION state's maildrop.
struct Maildrop {
    mailbox: Mailbox,
    maildir: Maildir,
    entries: Vec<Entry>,
    _lock: Arc<MaildropLock>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Maildrop {
    /// Stops the heartbeat and waits for it, so that its share of the lock is gone and the
    /// lock file goes when the maildrop does.
    async fn stop_heartbeat(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
            let _ = heartbeat.await;
        }
    }
}

impl Drop for Maildrop {
    fn drop(&mut self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
    }
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Box<Maildrop>),
}

/// What a handler tells the loop.
enum Next {
    Continue,
    Close,
    StartTls,
}

/// One session on one connection.
pub struct Session {
    services: Arc<Services>,
    peer: Peer,
    /// The connection; `None` only while STLS swaps it for its TLS form.
    reader: Option<LineReader<MaybeTls>>,
    state: State,
    errors: usize,
}

impl Session {
    /// A session on `stream`; nothing is sent until [`Session::run`].
    pub fn new(services: Arc<Services>, peer: Peer, stream: MaybeTls) -> Session {
        Session {
            services,
            peer,
            reader: Some(LineReader::new(stream)),
            state: State::Authorization { user: None },
            errors: 0,
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) -> std::io::Result<()> {
        // RFC 1939 §4: the greeting. No version or host name: nothing to fingerprint.
        self.send(&codec::ok("Mailfold POP3 ready")).await?;
        loop {
            let line = tokio::time::timeout(
                self.services.policy.idle_timeout,
                self.io().read_line(MAX_LINE),
            )
            .await;
            let line = match line {
                Err(_) => {
                    // RFC 1939 §3: the autologout timer; nothing is removed.
                    let _ = self
                        .send(&codec::err(None, "autologout: idle for too long"))
                        .await;
                    return Ok(());
                }
                Ok(line) => line?,
            };
            let bytes = match line {
                Line::Eof => return Ok(()),
                Line::TooLong => {
                    self.protocol_error("line too long").await?;
                    if self.errors >= MAX_ERRORS {
                        return Ok(());
                    }
                    continue;
                }
                Line::Complete(bytes) => bytes,
            };

            let command = match codec::parse(&bytes) {
                Ok(command) => command,
                Err(error) => {
                    self.services.metrics.command("unknown", false);
                    self.protocol_error(match error {
                        ParseError::Unknown => "unknown command",
                        ParseError::Arguments => "syntax error in arguments",
                        ParseError::Characters => "invalid characters",
                    })
                    .await?;
                    if self.errors >= MAX_ERRORS {
                        let _ = self
                            .send(&codec::err(None, "too many errors, closing"))
                            .await;
                        return Ok(());
                    }
                    continue;
                }
            };
            tracing::trace!(command = command.verb(), "command");
            let next = match &self.state {
                State::Authorization { .. } => self.authorization(command).await?,
                State::Transaction(_) => self.transaction(command).await?,
            };
            match next {
                Next::Continue => {}
                Next::Close => return Ok(()),
                Next::StartTls => self.start_tls().await?,
            }
            // Errors from the handlers (a command in the wrong state) count too.
            if self.errors >= MAX_ERRORS {
                let _ = self
                    .send(&codec::err(None, "too many errors, closing"))
                    .await;
                return Ok(());
            }
        }
    }

    /// The connection. It is only absent inside [`Session::start_tls`], which puts it back
    /// before returning, or returns an error that ends the session.
    fn io(&mut self) -> &mut LineReader<MaybeTls> {
        self.reader
            .as_mut()
            .expect("connection present outside start_tls")
    }

    fn io_ref(&self) -> &LineReader<MaybeTls> {
        self.reader
            .as_ref()
            .expect("connection present outside start_tls")
    }

    async fn send(&mut self, text: &str) -> std::io::Result<()> {
        let stream = self.io().inner_mut();
        stream.write_all(text.as_bytes()).await?;
        stream.flush().await
    }

    async fn protocol_error(&mut self, text: &str) -> std::io::Result<()> {
        self.errors += 1;
        self.send(&codec::err(None, text)).await
    }

    /// Whether USER/PASS and AUTH PLAIN may be used now (RFC 2595 §2.2 advises against
    /// plaintext passwords over unprotected connections).
    fn plaintext_allowed(&self) -> bool {
        self.io_ref().inner().is_tls()
            || self
                .services
                .policy
                .plaintext
                .allows(self.peer.address.ip())
    }

    fn stls_available(&self) -> bool {
        self.services.tls.is_some() && !self.io_ref().inner().is_tls()
    }

    async fn authorization(&mut self, command: Command) -> std::io::Result<Next> {
        let verb = command.verb();
        match command {
            Command::Capa => {
                self.send(&self.capabilities()).await?;
            }
            Command::Stls if self.stls_available() => {
                self.services.metrics.command(verb, true);
                self.send(&codec::ok("begin TLS negotiation")).await?;
                return Ok(Next::StartTls);
            }
            Command::Stls => self.send(&codec::err(None, "STLS not available")).await?,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. }
                if !self.plaintext_allowed() =>
            {
                let text = if self.stls_available() {
                    "use STLS first"
                } else {
                    "plaintext login not allowed"
                };
                self.send(&codec::err(Some(Code::Auth), text)).await?;
            }
            Command::User(name) => {
                self.state = State::Authorization { user: Some(name) };
                self.send(&codec::ok("send PASS")).await?;
            }
            Command::Pass(password) => {
                let State::Authorization { user: Some(user) } = &self.state else {
                    self.services.metrics.command(verb, false);
                    return self
                        .protocol_error("USER first")
                        .await
                        .map(|()| Next::Continue);
                };
                let user = user.clone();
                return self.login(&user, &password).await;
            }
            Command::Auth {
                mechanism: None, ..
            } => {
                // The mechanism list of RFC 1734 clients.
                self.send("+OK\r\nPLAIN\r\n.\r\n").await?;
            }
            Command::Auth {
                mechanism: Some(mechanism),
                initial,
            } => {
                if mechanism != "PLAIN" {
                    self.send(&codec::err(None, "unsupported mechanism"))
                        .await?;
                    return Ok(Next::Continue);
                }
                return self.auth_plain(initial).await;
            }
            Command::Apop => self.send(&codec::err(None, "APOP not supported")).await?,
            Command::Quit => {
                self.send(&codec::ok("bye")).await?;
                return Ok(Next::Close);
            }
            Command::Noop
            | Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Rset
            | Command::Top(..)
            | Command::Uidl(_) => {
                self.services.metrics.command(verb, false);
                return self
                    .protocol_error("not logged in")
                    .await
                    .map(|()| Next::Continue);
            }
        }
        self.services.metrics.command(verb, true);
        Ok(Next::Continue)
    }

    /// RFC 2449 §5: only what is offered now, in this state.
    fn capabilities(&self) -> String {
        let mut lines = vec!["+OK capability list follows"];
        // RFC 2449 §6.
        lines.extend(["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]);
        if self.plaintext_allowed() {
            lines.extend(["USER", "SASL PLAIN"]);
        }
        if self.stls_available() {
            lines.push("STLS"); // RFC 2595 §4
        }
        lines.push(".");
        let mut text = lines.join("\r\n");
        text.push_str("\r\n");
        text
    }

    /// RFC 5034 §4: AUTH PLAIN with the response inline or after a `+ ` continuation.
    async fn auth_plain(&mut self, initial: Option<String>) -> std::io::Result<Next> {
        let response = match initial {
            Some(initial) => initial,
            None => {
                self.send("+ \r\n").await?;
                match self.io().read_line(MAX_LINE).await? {
                    Line::Complete(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Line::TooLong => {
                        return self
                            .protocol_error("response too long")
                            .await
                            .map(|()| Next::Continue);
                    }
                    Line::Eof => return Ok(Next::Close),
                }
            }
        };
        if response.trim() == "*" {
            self.send(&codec::err(None, "authentication cancelled"))
                .await?;
            return Ok(Next::Continue);
        }
        match mailfold_net::sasl::decode_plain(&response) {
            Ok(credentials) => self.login(&credentials.login, &credentials.password).await,
            Err(error) => {
                self.services.metrics.command("AUTH", false);
                self.protocol_error(&error.to_string())
                    .await
                    .map(|()| Next::Continue)
            }
        }
    }

    /// Checks the credentials, then opens and locks the maildrop.
    async fn login(&mut self, user: &str, password: &str) -> std::io::Result<Next> {
        let services = self.services.clone();
        let ip = self.peer.address.ip();
        if let Err(retry) = services.throttle.check(ip, user) {
            tracing::warn!(%ip, retry_after = ?retry, "login throttled");
            services.metrics.login(false);
            self.send(&codec::err(
                Some(Code::Auth),
                "too many failed logins, try again later",
            ))
            .await?;
            return Ok(Next::Continue);
        }

        // Boxed: the login future is large, and inlined it would weigh on every idle session.
        let login = Box::pin(
            services
                .directory
                .authenticate(user, password, Service::Pop3),
        );
        let mailbox = match login.await {
            Ok(mailbox) => mailbox,
            Err(LoginFailure::Refused(_)) => {
                // The reason is in the directory's log line; the client sees one answer.
                services.throttle.failed(ip, user);
                services.metrics.login(false);
                tokio::time::sleep(services.throttle.failure_delay()).await;
                self.state = State::Authorization { user: None };
                self.send(&codec::err(Some(Code::Auth), "authentication failed"))
                    .await?;
                return Ok(Next::Continue);
            }
            Err(LoginFailure::Unavailable(_)) => {
                services.metrics.login(false);
                self.send(&codec::err(
                    Some(Code::SysTemp),
                    "temporary failure, try again later",
                ))
                .await?;
                return Ok(Next::Continue);
            }
        };
        services.throttle.succeeded(ip, user);

        match self.open_maildrop(mailbox).await {
            Ok(maildrop) => {
                services.metrics.login(true);
                services.metrics.session_opened();
                let count = maildrop.entries.len();
                tracing::info!(user = %maildrop.mailbox.address, messages = count, "maildrop opened");
                self.state = State::Transaction(Box::new(maildrop));
                self.send(&codec::ok(&format!("logged in, {count} messages")))
                    .await?;
            }
            Err(reply) => {
                services.metrics.login(false);
                self.state = State::Authorization { user: None };
                self.send(&reply).await?;
            }
        }
        Ok(Next::Continue)
    }

    /// The mailbox's INBOX, locked and listed; on failure the reply to send.
    async fn open_maildrop(&self, mailbox: Mailbox) -> Result<Maildrop, String> {
        let quota = QuotaLimit {
            bytes: mailbox.quota_bytes,
            messages: mailbox.quota_messages,
        };
        let temporary = || codec::err(Some(Code::SysTemp), "temporary failure, try again later");
        let maildir = self
            .services
            .store
            .mailbox(&mailbox.shard, &mailbox.store, quota)
            .map_err(|error| {
                tracing::warn!(cause = %error, "opening maildrop");
                temporary()
            })?;

        let opened = {
            let maildir = maildir.clone();
            tokio::task::spawn_blocking(move || {
                maildir.create().map_err(|e| Err(e.to_string()))?;
                let lock = MaildropLock::acquire(maildir.root()).map_err(|e| match e {
                    LockError::InUse => Ok(()),
                    other => Err(other.to_string()),
                })?;
                let messages = maildir.list(None).map_err(|e| Err(e.to_string()))?;
                // RFC 1939 §11: sizes count CRLF line ends, as the message is sent.
                let messages: Vec<(MessageInfo, u64)> = messages
                    .into_iter()
                    .filter_map(|info| {
                        let size = maildir.crlf_size(None, &info).ok()?;
                        Some((info, size))
                    })
                    .collect();
                Ok((lock, messages))
            })
            .await
        };
        let (lock, messages) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(Ok(()))) => {
                return Err(codec::err(
                    Some(Code::InUse),
                    "mailbox in use by another session",
                ));
            }
            Ok(Err(Err(cause))) => {
                tracing::warn!(%cause, "opening maildrop");
                return Err(temporary());
            }
            Err(cause) => {
                tracing::error!(%cause, "maildrop task failed");
                return Err(temporary());
            }
        };

        let lock = Arc::new(lock);
        let heartbeat = {
            let lock = lock.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let lock = lock.clone();
                    let _ = tokio::task::spawn_blocking(move || lock.refresh()).await;
                }
            })
        };
        let entries = messages
            .into_iter()
            .map(|(info, size)| Entry {
                size,
                info,
                deleted: false,
            })
            .collect();
        Ok(Maildrop {
            mailbox,
            maildir,
            entries,
            _lock: lock,
            heartbeat: Some(heartbeat),
        })
    }

    async fn transaction(&mut self, command: Command) -> std::io::Result<Next> {
        let verb = command.verb();
        let State::Transaction(maildrop) = &mut self.state else {
            return Ok(Next::Continue);
        };
        let reply = match command {
            Command::Stat => {
                let (count, size) = maildrop
                    .entries
                    .iter()
                    .filter(|e| !e.deleted)
                    .fold((0, 0), |(n, s), e| (n + 1, s + e.size));
                codec::ok(&format!("{count} {size}"))
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(command, Command::Uidl(_));
                let mut text = codec::ok("listing follows");
                for (index, entry) in maildrop
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !e.deleted)
                {
                    let value = if uidl {
                        codec::unique_id(&entry.info.id)
                    } else {
                        entry.size.to_string()
                    };
                    text.push_str(&format!("{} {value}\r\n", index + 1));
                }
                text.push_str(".\r\n");
                text
            }
            Command::List(Some(number)) | Command::Uidl(Some(number)) => {
                match live(maildrop, number) {
                    Some(entry) if matches!(command, Command::Uidl(_)) => {
                        codec::ok(&format!("{number} {}", codec::unique_id(&entry.info.id)))
                    }
                    Some(entry) => codec::ok(&format!("{number} {}", entry.size)),
                    None => codec::err(None, "no such message"),
                }
            }
            Command::Dele(number) => {
                match maildrop.entries.get_mut(number - 1).filter(|e| !e.deleted) {
                    Some(entry) => {
                        entry.deleted = true;
                        codec::ok(&format!("message {number} deleted"))
                    }
                    None => codec::err(None, "no such message"),
                }
            }
            Command::Rset => {
                maildrop.entries.iter_mut().for_each(|e| e.deleted = false);
                codec::ok("")
            }
            Command::Noop => codec::ok(""),
            Command::Retr(number) => return self.retrieve(number, Stuffer::whole(), verb).await,
            Command::Top(number, lines) => {
                return self.retrieve(number, Stuffer::top(lines), verb).await;
            }
            Command::Quit => return self.update().await,
            Command::Capa => self.capabilities(),
            Command::User(_)
            | Command::Pass(_)
            | Command::Auth { .. }
            | Command::Apop
            | Command::Stls => {
                self.services.metrics.command(verb, false);
                return self
                    .protocol_error("already logged in")
                    .await
                    .map(|()| Next::Continue);
            }
        };
        let ok = reply.starts_with("+OK");
        self.services.metrics.command(verb, ok);
        self.send(&reply).await?;
        Ok(Next::Continue)
    }

    /// RETR and TOP: the message streamed through the stuffer, one chunk at a time.
    async fn retrieve(
        &mut self,
        number: usize,
        mut stuffer: Stuffer,
        verb: &str,
    ) -> std::io::Result<Next> {
        let State::Transaction(maildrop) = &self.state else {
            return Ok(Next::Continue);
        };
        let Some(entry) = live(maildrop, number) else {
            self.services.metrics.command(verb, false);
            self.send(&codec::err(None, "no such message")).await?;
            return Ok(Next::Continue);
        };
        let (maildir, info, size) = (maildrop.maildir.clone(), entry.info.clone(), entry.size);
        let tenant = maildrop.mailbox.tenant.clone();

        let file = tokio::task::spawn_blocking(move || maildir.open(None, &info)).await;
        let mut file = match file {
            Ok(Ok(file)) => tokio::fs::File::from_std(file),
            _ => {
                // Gone since login (another client of the same mailbox through IMAP).
                self.services.metrics.command(verb, false);
                self.send(&codec::err(None, "message is no longer available"))
                    .await?;
                return Ok(Next::Continue);
            }
        };

        // The status line goes out with the first chunk: one write, no wait for an ACK.
        let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
        out.extend_from_slice(codec::ok(&format!("{size} octets")).as_bytes());
        let mut buffer = vec![0u8; CHUNK];
        let mut sent: u64 = 0;
        loop {
            let read = file.read(&mut buffer).await?;
            if read == 0 || stuffer.is_done() {
                break;
            }
            stuffer.push(&buffer[..read], &mut out);
            sent += out.len() as u64;
            self.io().inner_mut().write_all(&out).await?;
            out.clear();
        }
        stuffer.finish(&mut out);
        let stream = self.io().inner_mut();
        stream.write_all(&out).await?;
        stream.flush().await?;

        self.services.metrics.command(verb, true);
        if verb == "RETR" {
            self.services.metrics.retrieved(&tenant, sent);
        }
        Ok(Next::Continue)
    }

    /// RFC 1939 §6: the UPDATE state. Marked messages are removed, then the session ends.
    async fn update(&mut self) -> std::io::Result<Next> {
        let State::Transaction(mut maildrop) =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return Ok(Next::Close);
        };
        maildrop.stop_heartbeat().await;
        let deleted: Vec<String> = maildrop
            .entries
            .iter()
            .filter(|e| e.deleted)
            .map(|e| e.info.id.clone())
            .collect();
        let count = deleted.len();
        let maildir = maildrop.maildir.clone();
        let failures = tokio::task::spawn_blocking(move || {
            deleted
                .iter()
                .filter(|id| maildir.expunge(None, id).is_err())
                .count()
        })
        .await
        .unwrap_or(count);

        self.services
            .metrics
            .deleted(&maildrop.mailbox.tenant, (count - failures) as u64);
        self.services.metrics.command("QUIT", failures == 0);
        tracing::info!(user = %maildrop.mailbox.address, deleted = count - failures, failures, "maildrop updated");
        drop(maildrop);
        if failures > 0 {
            // RFC 1939 §6: -ERR when some deleted messages could not be removed.
            self.send(&codec::err(
                Some(Code::SysTemp),
                "some deleted messages not removed",
            ))
            .await?;
        } else {
            self.send(&codec::ok("bye")).await?;
        }
        Ok(Next::Close)
    }

    /// RFC 2595 §4: after `+OK` to STLS, the TLS handshake; bytes the client pipelined after
    /// STLS are discarded, and the session starts over as if newly connected.
    async fn start_tls(&mut self) -> std::io::Result<()> {
        let (Some(acceptor), Some(reader)) = (self.services.tls.clone(), self.reader.take()) else {
            return Ok(());
        };
        self.reader = Some(
            reader
                .start_tls(&acceptor, Duration::from_secs(30), "STLS")
                .await?,
        );
        self.state = State::Authorization { user: None };
        Ok(())
    }
}

/// The entry for a message number that is not marked deleted.
fn live(maildrop: &Maildrop, number: usize) -> Option<&Entry> {
    maildrop
        .entries
        .get(number.checked_sub(1)?)
        .filter(|e| !e.deleted)
}
