//! One SMTP, submission or LMTP session: greeting, EHLO, the mail transaction, STARTTLS and
//! AUTH, each command in a handler of its own.
//!
//! The session reads one capped line at a time (RFC 5321 §4.5.3.1.4: 512 octets), parses it
//! with [`crate::codec`] and dispatches it. A transaction is MAIL, one or more RCPT, then DATA
//! or BDAT; only when every accepted recipient's copy is durable in its mailbox does the
//! client get `250` (LMTP: one reply per recipient, RFC 2033 §4.2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfold_directory::Mailbox;
use mailfold_net::stream::{Line, LineReader, MaybeTls};
use tokio::io::AsyncWriteExt;

use crate::codec::{self, Command, MailParameters, Reply, ReversePath};
use crate::data::Refusal;
use crate::spool::Spool;
use crate::{Mode, Services};

mod auth;
mod message;
mod transaction;

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

/// A recipient outside the platform, for the outbound queue.
#[derive(Debug, Clone, PartialEq, Eq)]
struct External {
    /// The outside address.
    address: String,
    /// The local address that forwards to it (alias or forward address), if any.
    forwarded_by: Option<String>,
    /// The tenant counted for it.
    tenant: String,
}

/// The id LMTP's per-RCPT bookkeeping uses for "the outbound queue" (no mailbox id has it).
const QUEUED: &str = "\0queue";

/// The transaction in progress.
#[derive(Default)]
struct Transaction {
    from: Option<ReversePath>,
    parameters: Option<MailParameters>,
    recipients: Vec<Accepted>,
    /// Recipients for the outbound queue, each once.
    external: Vec<External>,
    /// Each successful RCPT, in order, with the ids of the mailboxes it reaches: LMTP answers
    /// once per RCPT even when two name one mailbox or an alias names several.
    rcpts: Vec<Vec<String>>,
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
    /// The highest reply code sent for the command being handled: its `result` label.
    worst_reply: u16,
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
            worst_reply: 0,
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
        self.worst_reply = self.worst_reply.max(reply.code);
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
                    self.services.metrics.command("unknown", false);
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
                    self.worst_reply = 0;
                    let next = self.dispatch(command).await?;
                    // A command succeeded when none of its replies was a 4xx or 5xx (an LMTP
                    // DATA has one per recipient).
                    self.services.metrics.command(verb, self.worst_reply < 400);
                    next
                }
                Err(error) => {
                    self.services.metrics.command("unknown", false);
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
        let (Some(acceptor), Some(reader)) = (self.services.tls.clone(), self.reader.take()) else {
            return Ok(());
        };
        let reader = reader
            .start_tls(&acceptor, Duration::from_secs(30), "STARTTLS")
            .await?;
        self.reader = Some(reader);
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.transaction = Transaction::default();
        Ok(())
    }
}
