//! DATA and BDAT, the spool with its Received header, and delivery into the mailboxes.

use std::time::SystemTime;

use mailfold_directory::Mailbox;
use mailfold_store::{QuotaLimit, Recipient, StoreError};

use super::transaction::reject_reason;
use super::{DATA_TIMEOUT, QUEUED, Session, Transaction};
use crate::Mode;
use crate::codec::{Reply, ReversePath};
use crate::data::{self, Received, Refusal};
use crate::received::{Protocol, Trace};
use crate::spool::Spool;

impl Session {
    pub(super) async fn data(&mut self) -> std::io::Result<()> {
        if self.transaction.from.is_none() || self.transaction.rcpts.is_empty() {
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
            Received::Refused(refusal) => self.refuse_message(refusal).await,
            Received::Complete(_) => self.deliver(spool).await,
        }
    }

    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<()> {
        // RFC 3030 §2: the chunk is read even when the command is refused, to stay in step.
        let ready = self.transaction.from.is_some() && !self.transaction.rcpts.is_empty();
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
            return self.refuse_message(refusal).await;
        }
        match spool {
            Some(spool) => self.deliver(spool).await,
            None => {
                self.send(&Reply::new(451, Some((4, 3, 0)), "temporary failure"))
                    .await
            }
        }
    }

    /// Refuses the message of the transaction, counted once per recipient tenant, and ends
    /// the transaction.
    async fn refuse_message(&mut self, refusal: Refusal) -> std::io::Result<()> {
        let transaction = std::mem::take(&mut self.transaction);
        let reply = refusal_reply(refusal);
        let reason = reject_reason(&reply);
        for tenant in tenants(transaction.recipients.iter().map(|r| &r.mailbox)) {
            self.services.metrics.rejected(Some(tenant), reason);
        }
        self.send(&reply).await
    }

    pub(super) async fn read_chunk(
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
    pub(super) fn message_limit(&self) -> u64 {
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
    pub(super) async fn new_spool(&self) -> Result<Spool, Reply> {
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
    pub(super) async fn deliver(&mut self, mut spool: Spool) -> std::io::Result<()> {
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
        if let Some(reply) = self.check_loops(&transaction, spool.path()).await {
            // Counted for the tenants the message was for, as the other refusals of data are.
            let reason = reject_reason(&reply);
            let local = tenants(transaction.recipients.iter().map(|r| &r.mailbox));
            // "-" marks a returned bounce, which belongs to no tenant.
            let outside = transaction
                .external
                .iter()
                .map(|e| e.tenant.as_str())
                .filter(|t| *t != "-");
            let mut counted: Vec<&str> = Vec::new();
            for tenant in local.into_iter().chain(outside) {
                if !counted.contains(&tenant) {
                    counted.push(tenant);
                }
            }
            if counted.is_empty() {
                self.services.metrics.rejected(None, reason);
            }
            for tenant in counted {
                self.services.metrics.rejected(Some(tenant), reason);
            }
            return self.send(&reply).await;
        }

        let store = self.services.store.clone();
        let path = spool.path().to_path_buf();
        let return_path = sender.clone();
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
                    "Return-Path: <{return_path}>\r\nDelivered-To: {address}\r\n"
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
        let queued = self.enqueue(&transaction, &sender, spool.path()).await;
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
        for (index, (recipient, result)) in transaction.recipients.iter().zip(&outcome).enumerate()
        {
            match result {
                Ok(()) => {
                    tracing::info!(recipient = %recipient.mailbox.address, "delivered");
                    self.services
                        .metrics
                        .delivered(&recipient.mailbox.tenant, size);
                }
                Err(cause) => {
                    tracing::warn!(recipient = %recipient.mailbox.address, %cause, "delivery failed");
                    self.services.metrics.delivery_failed(results.get(index));
                }
            }
        }

        if self.mode == Mode::Lmtp {
            // RFC 2033 §4.2: one reply per RCPT that succeeded, in order; an RCPT succeeds
            // when every mailbox it reaches has its copy.
            let delivered = |id: &String| {
                if id == QUEUED {
                    return queued;
                }
                transaction
                    .recipients
                    .iter()
                    .zip(&outcome)
                    .any(|(recipient, result)| recipient.mailbox.id == *id && result.is_ok())
            };
            let accepted: Vec<&Vec<String>> = transaction
                .rcpts
                .iter()
                .filter(|ids| ids.iter().all(delivered))
                .collect();
            let mailboxes = transaction.recipients.iter().map(|r| &r.mailbox);
            let accepted_mailboxes =
                mailboxes.filter(|m| accepted.iter().any(|ids| ids.contains(&m.id)));
            for tenant in tenants(accepted_mailboxes) {
                self.services.metrics.received(tenant);
            }
            for ids in &transaction.rcpts {
                let reply = if ids.iter().all(delivered) {
                    Reply::ok((2, 0, 0), "delivered")
                } else {
                    Reply::new(451, Some((4, 3, 0)), "temporary failure, try again later")
                };
                self.send(&reply).await?;
            }
            return Ok(());
        }
        // One reply for all: any failure makes the client retry the whole message. A copy
        // already delivered may then arrive twice, which is better than losing one.
        if queued && outcome.iter().all(Result::is_ok) {
            for tenant in tenants(transaction.recipients.iter().map(|r| &r.mailbox)) {
                self.services.metrics.received(tenant);
            }
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

/// The distinct tenants of `mailboxes`, in first-seen order: the mailgraph counts a message
/// once per recipient tenant.
fn tenants<'m>(mailboxes: impl Iterator<Item = &'m Mailbox>) -> Vec<&'m str> {
    let mut seen: Vec<&str> = Vec::new();
    for mailbox in mailboxes {
        if !seen.contains(&mailbox.tenant.as_str()) {
            seen.push(&mailbox.tenant);
        }
    }
    seen
}

impl Session {
    /// RFC 5321 §6.3: a message with too many hops, or one coming back to an address that
    /// forwards it, is refused (`554 5.4.6`) rather than sent round again.
    async fn check_loops(
        &self,
        transaction: &Transaction,
        path: &std::path::Path,
    ) -> Option<Reply> {
        let path = path.to_path_buf();
        let scanned =
            tokio::task::spawn_blocking(move || mailfold_queue::headers::scan(&path)).await;
        let facts = match scanned {
            Ok(Ok(facts)) => facts,
            _ => {
                tracing::warn!("reading the headers of a spool file");
                return Some(Reply::new(
                    451,
                    Some((4, 3, 0)),
                    "temporary failure, try again later",
                ));
            }
        };
        if facts.received > self.services.policy.max_hops {
            tracing::warn!(
                hops = facts.received,
                "[smtp] message refused: too many hops"
            );
            return Some(Reply::new(
                554,
                Some((5, 4, 6)),
                "too many hops, routing loop",
            ));
        }
        let looping = transaction.external.iter().find(|e| {
            e.forwarded_by
                .as_ref()
                .is_some_and(|f| facts.delivered_to.contains(&f.to_ascii_lowercase()))
        });
        if let Some(outside) = looping {
            tracing::warn!(forwarder = ?outside.forwarded_by, "[smtp] message refused: forwarding loop");
            return Some(Reply::new(554, Some((5, 4, 6)), "mail forwarding loop"));
        }
        None
    }

    /// Queues the copies for outside recipients: one queue entry for the submitted ones and
    /// one per forwarding address (each has its own `Delivered-To`). `true` when every entry
    /// is durable (or there was nothing to queue).
    async fn enqueue(
        &self,
        transaction: &Transaction,
        sender: &str,
        path: &std::path::Path,
    ) -> bool {
        if transaction.external.is_empty() {
            return true;
        }
        let Some(queue) = self.services.queue.clone() else {
            return false;
        };
        let parameters = transaction.parameters.clone().unwrap_or_default();
        let mut groups: Vec<(Option<String>, String, Vec<String>)> = Vec::new();
        for outside in &transaction.external {
            match groups
                .iter_mut()
                .find(|(by, _, _)| *by == outside.forwarded_by)
            {
                Some((_, _, list)) => list.push(outside.address.clone()),
                None => groups.push((
                    outside.forwarded_by.clone(),
                    outside.tenant.clone(),
                    vec![outside.address.clone()],
                )),
            }
        }
        let path = path.to_path_buf();
        let sender = sender.to_string();
        let queued = tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            for (forwarded_by, tenant, recipients) in &groups {
                let submission = mailfold_queue::Submission {
                    sender: &sender,
                    smtputf8: parameters.smtputf8
                        || recipients.iter().any(|r| !r.is_ascii())
                        || !sender.is_ascii(),
                    eight_bit: parameters.body == crate::codec::Body::EightBitMime,
                    recipients: recipients.clone(),
                    tenant,
                    forwarded_by: forwarded_by.as_deref(),
                };
                ids.push(queue.enqueue(&path, &submission)?);
            }
            Ok::<Vec<String>, mailfold_queue::QueueError>(ids)
        })
        .await;
        match queued {
            Ok(Ok(ids)) => {
                tracing::info!(queue_ids = ?ids, "queued for outside recipients");
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(cause = %error, "queueing for outside recipients");
                false
            }
            Err(_) => false,
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
