//! MAIL and RCPT: the sender's rules and each recipient's check through the directory and
//! the store.

use mailfold_directory::{Mailbox, Resolution, Service};
use mailfold_store::{QuotaLimit, StoreError};
use mailfold_telemetry::Rejection;

use super::{Accepted, External, MAX_RECIPIENTS, QUEUED, Session, Transaction};
use crate::Mode;
use crate::codec::{ForwardPath, MailParameters, Reply, ReversePath};

impl Session {
    pub(super) async fn mail(
        &mut self,
        from: ReversePath,
        parameters: MailParameters,
    ) -> std::io::Result<()> {
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
                self.services.metrics.rejected(None, Rejection::Policy);
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
                let tenant = Some(user.tenant.as_str());
                self.services.metrics.rejected(tenant, Rejection::Policy);
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
            let tenant = self.user.as_ref().map(|u| u.tenant.as_str());
            self.services.metrics.rejected(tenant, Rejection::Size);
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

    pub(super) async fn rcpt(&mut self, to: ForwardPath) -> std::io::Result<()> {
        if self.transaction.from.is_none() {
            return self
                .error(Reply::new(503, Some((5, 5, 1)), "send MAIL first"))
                .await;
        }
        if self.transaction.rcpts.len() >= MAX_RECIPIENTS {
            self.services.metrics.rejected(None, Rejection::Temporary);
            return self
                .send(&Reply::new(452, Some((4, 5, 3)), "too many recipients"))
                .await;
        }
        let postmaster = matches!(to, ForwardPath::Postmaster);
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
            Ok(Routed {
                mailboxes,
                external,
            }) => {
                // Each mailbox once per transaction; the RCPT remembers which it reaches, so
                // LMTP can answer it (RFC 2033 §4.2: one reply per successful RCPT).
                let mut ids: Vec<String> = mailboxes.iter().map(|m| m.id.clone()).collect();
                if !external.is_empty() {
                    ids.push(QUEUED.to_string());
                }
                for outside in external {
                    if !self.transaction.external.contains(&outside) {
                        self.transaction.external.push(outside);
                    }
                }
                for mailbox in mailboxes {
                    let duplicate = self
                        .transaction
                        .recipients
                        .iter()
                        .any(|r| r.mailbox.id == mailbox.id);
                    if !duplicate {
                        self.transaction.recipients.push(Accepted {
                            address: address.clone(),
                            mailbox,
                        });
                    }
                }
                self.transaction.rcpts.push(ids);
                self.send(&Reply::ok((2, 1, 5), "recipient ok")).await
            }
            // RFC 5321 §4.5.1: <Postmaster> must be accepted. A postmaster address that is not
            // local is a configuration mistake: mail for it waits while an operator fixes it.
            Err(Refused { reply, .. }) if postmaster && reply.code >= 500 => {
                tracing::error!(postmaster = %address, "[smtp] postmaster does not reach a local mailbox");
                self.send(&Reply::new(
                    451,
                    Some((4, 3, 0)),
                    "temporary failure, try again later",
                ))
                .await
            }
            Err(Refused { reply, tenant }) => {
                let reason = reject_reason(&reply);
                self.services.metrics.rejected(tenant.as_deref(), reason);
                self.send(&reply).await
            }
        }
    }

    /// The mailboxes and outside addresses a recipient address delivers to, or the reply
    /// that refuses it.
    pub(super) async fn check_recipient(
        &self,
        address: &str,
        size: u64,
    ) -> Result<Routed, Refused> {
        let temporary = || Reply::new(451, Some((4, 3, 0)), "temporary failure, try again later");
        let refuse = |reply: Reply, tenant: Option<String>| Err(Refused::new(reply, tenant));
        let queue = self.services.queue.as_ref();

        // A bounce to one of this server's SRS addresses goes back to the original sender.
        if let Some(srs) = queue.and_then(|q| q.srs())
            && srs.is_srs(address)
        {
            return match srs.reverse(address) {
                Ok(original) => Ok(Routed {
                    mailboxes: Vec::new(),
                    external: vec![External {
                        address: original,
                        forwarded_by: None,
                        tenant: "-".to_string(),
                    }],
                }),
                Err(error) => {
                    tracing::info!(%address, cause = %error, "[smtp] srs address refused");
                    refuse(Reply::new(550, Some((5, 1, 1)), "no such user"), None)
                }
            };
        }

        let resolution = match self.services.directory.resolve_recipient(address).await {
            Ok(resolution) => resolution,
            Err(error) if error.is_temporary() => return refuse(temporary(), None),
            Err(_) => {
                let reply = Reply::new(501, Some((5, 1, 3)), "bad recipient address syntax");
                return refuse(reply, None);
            }
        };
        let (mut mailboxes, mut external) = match resolution {
            // A logged-in user may send anywhere, through the queue.
            Resolution::NotLocal if self.mode == Mode::Submission && queue.is_some() => {
                let tenant = self
                    .user
                    .as_ref()
                    .map(|u| u.tenant.clone())
                    .unwrap_or_default();
                let outside = External {
                    address: address.to_string(),
                    forwarded_by: None,
                    tenant,
                };
                (Vec::new(), vec![outside])
            }
            // RFC 5321 §3.6.2: only local domains; no relaying without authentication.
            Resolution::NotLocal => {
                let reply = Reply::new(550, Some((5, 7, 1)), "relay access denied");
                return refuse(reply, None);
            }
            Resolution::Unknown => {
                let reply = Reply::new(550, Some((5, 1, 1)), "no such user");
                return refuse(reply, self.domain_tenant(address).await);
            }
            Resolution::Inactive { .. } => {
                let reply = Reply::new(550, Some((5, 2, 1)), "mailbox disabled");
                return refuse(reply, self.domain_tenant(address).await);
            }
            Resolution::Mailbox(mailbox) => {
                if !mailbox.allows(Service::Deliver) {
                    let reply = Reply::new(550, Some((5, 2, 1)), "mailbox disabled");
                    return refuse(reply, Some(mailbox.tenant));
                }
                (vec![mailbox], Vec::new())
            }
            Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion } => {
                if expansion.mailboxes.is_empty() && expansion.external.is_empty() {
                    let reply = Reply::new(550, Some((5, 1, 1)), "no such user");
                    return refuse(reply, self.domain_tenant(address).await);
                }
                let tenant = expansion
                    .mailboxes
                    .first()
                    .map(|m| m.tenant.clone())
                    .unwrap_or_else(|| "-".to_string());
                let external = expansion
                    .external
                    .iter()
                    .map(|target| External {
                        address: target.to_string(),
                        forwarded_by: Some(address.to_string()),
                        tenant: tenant.clone(),
                    })
                    .collect();
                (expansion.mailboxes, external)
            }
        };
        // Forward addresses of the mailboxes reached, one level deep: a local target gets its
        // copy in its own mailbox, an outside one through the queue.
        let forwarding: Vec<(String, String, String)> = mailboxes
            .iter()
            .flat_map(|m| {
                m.forward
                    .iter()
                    .map(|f| (f.clone(), m.address.to_string(), m.tenant.clone()))
            })
            .collect();
        for (target, owner, tenant) in forwarding {
            match self.services.directory.resolve_recipient(&target).await {
                Ok(Resolution::NotLocal) => external.push(External {
                    address: target,
                    forwarded_by: Some(owner),
                    tenant,
                }),
                Ok(Resolution::Mailbox(mailbox)) if mailbox.allows(Service::Deliver) => {
                    if !mailboxes.iter().any(|m| m.id == mailbox.id) {
                        mailboxes.push(mailbox);
                    }
                }
                Ok(Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion }) => {
                    for mailbox in expansion.mailboxes {
                        if !mailboxes.iter().any(|m| m.id == mailbox.id) {
                            mailboxes.push(mailbox);
                        }
                    }
                }
                Ok(_) => tracing::warn!(%owner, %target, "[smtp] forward address reaches nobody"),
                Err(error) if error.is_temporary() => return refuse(temporary(), None),
                Err(_) => tracing::warn!(%owner, %target, "[smtp] forward address is invalid"),
            }
        }
        let tenant = |mailbox: &Mailbox| Some(mailbox.tenant.clone());
        if !external.is_empty() && queue.is_none() {
            // No queue in this process: forwarding to other hosts waits (4xx) rather than
            // losing the forwarded copy.
            let reply = Reply::new(
                451,
                Some((4, 3, 2)),
                "forwarding to other hosts is not available",
            );
            return refuse(reply, mailboxes.first().and_then(tenant));
        }

        for mailbox in &mailboxes {
            // RFC 1870: the recipient's own limit, before the body is sent.
            if mailbox.max_message_size > 0 && size > mailbox.max_message_size {
                let reply = Reply::new(552, Some((5, 3, 4)), "message too big for the recipient");
                return refuse(reply, tenant(mailbox));
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
            let reply = match check {
                Ok(()) => continue,
                Err(StoreError::OverQuota { permanent: true }) => {
                    Reply::new(552, Some((5, 2, 2)), "mailbox full")
                }
                // RFC 3463 X.2.2: mailbox full, temporarily.
                Err(StoreError::OverQuota { permanent: false }) => {
                    Reply::new(452, Some((4, 2, 2)), "mailbox full")
                }
                Err(error) => {
                    tracing::warn!(cause = %error, "checking a recipient's mailbox");
                    temporary()
                }
            };
            return refuse(reply, tenant(mailbox));
        }
        Ok(Routed {
            mailboxes,
            external,
        })
    }

    /// The tenant of the local domain of `address`, for a refusal that found no entry. The
    /// domain was just resolved, so this is normally a cache hit; `None` when it cannot say.
    async fn domain_tenant(&self, address: &str) -> Option<String> {
        let (_, domain) = address.rsplit_once('@')?;
        let resolution = self.services.directory.resolve_domain(domain).await.ok()?;
        resolution.local().map(|local| local.tenant.id.clone())
    }
}

/// A refused recipient: the reply, and the tenant it would have belonged to, when known.
pub(super) struct Refused {
    reply: Reply,
    tenant: Option<String>,
}

impl Refused {
    fn new(reply: Reply, tenant: Option<String>) -> Refused {
        Refused { reply, tenant }
    }
}

/// Where a recipient's copies go.
pub(super) struct Routed {
    /// Local mailboxes.
    pub mailboxes: Vec<Mailbox>,
    /// Outside addresses, through the queue.
    pub external: Vec<External>,
}

/// The `reason` label of a refusal, from the reply that carries it.
pub(super) fn reject_reason(reply: &Reply) -> Rejection {
    match (reply.code, reply.status) {
        (550, Some((5, 7, 1))) => Rejection::Relay,
        (550, Some((5, 1, 1))) => Rejection::UnknownUser,
        (550, Some((5, 2, 1))) => Rejection::Disabled,
        (_, Some((_, 2, 2))) => Rejection::Quota,
        (552, _) => Rejection::Size,
        (550, Some((5, 6, 0))) => Rejection::BareLineEnding,
        (530, _) | (553, Some((5, 7, 1))) => Rejection::Policy,
        (554, Some((5, 4, 6))) => Rejection::Loop,
        (code, _) if code >= 500 => Rejection::Other,
        _ => Rejection::Temporary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_reply_maps_to_its_documented_reason() {
        let reason = |code, status| reject_reason(&Reply::new(code, Some(status), "x"));
        assert_eq!(reason(550, (5, 7, 1)), Rejection::Relay);
        assert_eq!(reason(550, (5, 1, 1)), Rejection::UnknownUser);
        assert_eq!(reason(550, (5, 2, 1)), Rejection::Disabled);
        assert_eq!(reason(452, (4, 2, 2)), Rejection::Quota);
        assert_eq!(reason(552, (5, 2, 2)), Rejection::Quota);
        assert_eq!(reason(552, (5, 3, 4)), Rejection::Size);
        assert_eq!(reason(550, (5, 6, 0)), Rejection::BareLineEnding);
        assert_eq!(reason(553, (5, 7, 1)), Rejection::Policy);
        assert_eq!(reason(554, (5, 4, 6)), Rejection::Loop);
        assert_eq!(reason(501, (5, 1, 3)), Rejection::Other);
        assert_eq!(reason(451, (4, 3, 0)), Rejection::Temporary);
    }
}
