//! The `queue` role: finds due messages, hands them to the next hop, records each
//! recipient's outcome, schedules retries and writes bounces.
//!
//! The worker keeps an index of the queue folder in memory (id, next attempt) and rescans the
//! folder's names every `scan_interval`, so messages queued by another process sharing the
//! folder are found too. A due message becomes one job per destination domain; each domain
//! has at most `per_destination` connections, and a connection takes the domain's jobs one
//! after another (connection reuse) until none is left. When a message's last job ends, its
//! envelope is rewritten once (or removed when every recipient is final).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailfold_directory::{Directory, Resolution, Service};
use mailfold_store::{QuotaLimit, Store, StoreError};
use tokio::sync::watch;

use crate::client::{ClientOptions, Connection, OpenError, Outcome};
use crate::dsn::{self, Action};
use crate::envelope::{Envelope, Kind, State};
use crate::folder::{FolderLock, Request, now};
use crate::metrics::QueueMetrics;
use crate::route::{RouteError, Routes};
use crate::{Queue, QueueError};

/// When to try again, and when to give up.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Waits after the first, second, … failed attempt; the last one repeats.
    pub intervals: Vec<Duration>,
    /// How long a message may stay queued before its pending recipients fail.
    pub lifetime: Duration,
    /// After this long queued, the sender is warned once (RFC 3464 `delayed`); `None` for
    /// never.
    pub delay_warning: Option<Duration>,
    /// How often the folder is rescanned for messages queued by other processes.
    pub scan_interval: Duration,
}

impl Schedule {
    /// The wait after `attempts` failed attempts.
    pub fn interval(&self, attempts: u32) -> Duration {
        let index = (attempts.max(1) as usize - 1).min(self.intervals.len().saturating_sub(1));
        self.intervals
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }
}

/// How the worker delivers.
pub struct DeliveryOptions {
    /// Where each domain's mail goes.
    pub routes: Routes,
    /// The SMTP client's settings.
    pub client: ClientOptions,
    /// Retries and lifetime.
    pub schedule: Schedule,
    /// Most connections to one destination domain at a time.
    pub per_destination: usize,
    /// This server's name, for bounces.
    pub hostname: String,
}

/// The queue role, ready to run.
pub struct Deliverer {
    shared: Arc<Shared>,
    _lock: FolderLock,
}

struct Shared {
    queue: Arc<Queue>,
    options: DeliveryOptions,
    directory: Arc<Directory>,
    store: Arc<Store>,
    metrics: QueueMetrics,
    state: Mutex<WorkState>,
}

#[derive(Default)]
struct WorkState {
    /// Every queued id: its next attempt and whether it was tried before.
    index: HashMap<String, (u64, bool)>,
    /// Messages being delivered.
    flights: HashMap<String, Flight>,
    /// Messages whose round is being concluded (envelope not saved yet): not due, whatever the
    /// index says, or a second round would start from the envelope before this one.
    finishing: std::collections::HashSet<String>,
    /// Jobs waiting per destination domain, and the connections serving each.
    destinations: HashMap<String, Destination>,
}

struct Flight {
    envelope: Envelope,
    jobs_left: usize,
    deleted: bool,
    /// Recipients that reached a final state during this round, for the tenant counters.
    sent: usize,
}

#[derive(Default)]
struct Destination {
    jobs: VecDeque<Job>,
    connections: usize,
}

struct Job {
    id: String,
    recipients: Vec<String>,
}

impl Deliverer {
    /// Takes the folder's delivery lock; fails when another process holds it.
    pub fn new(
        queue: Arc<Queue>,
        options: DeliveryOptions,
        directory: Arc<Directory>,
        store: Arc<Store>,
        metrics: QueueMetrics,
    ) -> Result<Deliverer, QueueError> {
        let lock = queue.folder().lock()?;
        queue.attach_worker();
        let removed = queue.folder().remove_debris();
        if removed > 0 {
            tracing::info!(removed, "[queue] removed files left by a crash");
        }
        Ok(Deliverer {
            shared: Arc::new(Shared {
                queue,
                options,
                directory,
                store,
                metrics,
                state: Mutex::new(WorkState::default()),
            }),
            _lock: lock,
        })
    }

    /// Delivers until `stopping` turns true. Deliveries in flight then are cut off; their
    /// envelopes on disk still hold the state before the attempt, so they are retried at the
    /// next start.
    pub async fn run(self, mut stopping: watch::Receiver<bool>) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let mut last_scan: Option<std::time::Instant> = None;
        loop {
            shared.handle_requests();
            // Our own enqueues are announced; a full listing finds the other processes' ones.
            let recent = shared.queue.take_recent();
            shared
                .state()
                .index
                .extend(recent.into_iter().map(|(id, next)| (id, (next, false))));
            let interval = shared.options.schedule.scan_interval;
            if last_scan.is_none_or(|at| at.elapsed() >= interval) {
                shared.scan();
                last_scan = Some(std::time::Instant::now());
            }
            Shared::dispatch_due(&shared);
            shared.update_depth();
            tokio::select! {
                _ = shared.queue.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
                _ = stopping.wait_for(|stop| *stop) => break,
            }
        }
        Ok(())
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, WorkState> {
        // A panic while holding the lock would be a bug elsewhere; the state is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Requests left by `mailfold queue retry|delete` while this process held the lock.
    fn handle_requests(&self) {
        let folder = self.queue.folder();
        for request in folder.take_requests() {
            let mut state = self.state();
            match request {
                Request::RetryAll => {
                    for entry in state.index.values_mut() {
                        entry.0 = 0;
                    }
                }
                Request::Retry(id) => {
                    if let Some(entry) = state.index.get_mut(&id) {
                        entry.0 = 0;
                    }
                }
                Request::Delete(id) => {
                    if let Some(flight) = state.flights.get_mut(&id) {
                        // Removed when its delivery ends, instead of being saved.
                        flight.deleted = true;
                    } else {
                        state.index.remove(&id);
                        let _ = folder.remove(&id);
                    }
                    tracing::info!(queue_id = %id, "[queue] deleted on request");
                }
            }
        }
    }

    /// Adds new envelopes to the index and drops ids whose envelope is gone.
    fn scan(&self) {
        let folder = self.queue.folder();
        let Ok(ids) = folder.ids() else {
            tracing::warn!(folder = %folder.root().display(), "[queue] cannot list the queue folder");
            return;
        };
        let known: Vec<String> = {
            let state = self.state();
            ids.iter()
                .filter(|id| !state.index.contains_key(*id))
                .cloned()
                .collect()
        };
        let mut loaded = Vec::new();
        for id in known {
            match folder.load(&id) {
                Ok(envelope) => loaded.push((id, (envelope.next_attempt, envelope.attempts > 0))),
                Err(error) => {
                    tracing::error!(queue_id = %id, cause = %error, "[queue] unreadable envelope")
                }
            }
        }
        let mut state = self.state();
        state.index.extend(loaded);
        let present: std::collections::HashSet<&String> = ids.iter().collect();
        let busy: Vec<String> = state
            .flights
            .keys()
            .chain(state.finishing.iter())
            .cloned()
            .collect();
        state
            .index
            .retain(|id, _| present.contains(id) || busy.contains(id));
    }

    fn update_depth(&self) {
        let state = self.state();
        let deferred = state.index.values().filter(|(_, tried)| *tried).count();
        self.metrics.depth(state.index.len() - deferred, deferred);
    }

    /// Turns every due message into jobs and starts connections for them.
    fn dispatch_due(shared: &Arc<Shared>) {
        let now = now();
        let due: Vec<String> = {
            let state = shared.state();
            state
                .index
                .iter()
                .filter(|(id, (next, _))| {
                    *next <= now
                        && !state.flights.contains_key(*id)
                        && !state.finishing.contains(*id)
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in due {
            let envelope = match shared.queue.folder().load(&id) {
                Ok(envelope) => envelope,
                Err(QueueError::NotFound(_)) => {
                    shared.state().index.remove(&id);
                    continue;
                }
                Err(error) => {
                    tracing::error!(queue_id = %id, cause = %error, "[queue] unreadable envelope");
                    continue;
                }
            };
            let mut by_domain: Vec<(String, Vec<String>)> = Vec::new();
            for recipient in envelope.pending() {
                let domain = recipient.domain();
                match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                    Some((_, list)) => list.push(recipient.address.clone()),
                    None => by_domain.push((domain, vec![recipient.address.clone()])),
                }
            }
            let mut state = shared.state();
            state.flights.insert(
                id.clone(),
                Flight {
                    envelope,
                    jobs_left: by_domain.len(),
                    deleted: false,
                    sent: 0,
                },
            );
            if by_domain.is_empty() {
                // Nothing pending (a bounce still owed): finish it at once.
                drop(state);
                let shared = shared.clone();
                tokio::spawn(async move { shared.finish(&id).await });
                continue;
            }
            for (domain, recipients) in by_domain {
                let destination = state.destinations.entry(domain).or_default();
                destination.jobs.push_back(Job {
                    id: id.clone(),
                    recipients,
                });
            }
        }

        // Connections for destinations with waiting jobs, up to the limit each.
        let mut state = shared.state();
        let limit = shared.options.per_destination.max(1);
        let mut start = Vec::new();
        for (domain, destination) in state.destinations.iter_mut() {
            while destination.connections < limit
                && destination.connections < destination.jobs.len()
            {
                destination.connections += 1;
                start.push(domain.clone());
            }
        }
        drop(state);
        for domain in start {
            let shared = shared.clone();
            tokio::spawn(async move { shared.serve_destination(domain).await });
        }
    }

    fn next_job(&self, domain: &str) -> Option<Job> {
        let mut state = self.state();
        let destination = state.destinations.get_mut(domain)?;
        let job = destination.jobs.pop_front();
        if job.is_none() {
            destination.connections -= 1;
            if destination.connections == 0 {
                state.destinations.remove(domain);
            }
        }
        job
    }

    /// One connection's work: the destination's jobs, one after another.
    async fn serve_destination(self: Arc<Self>, domain: String) {
        let mut connection: Option<Connection> = None;
        let mut unreachable: Option<Outcome> = None;
        let mut local: Option<bool> = None;
        while let Some(job) = self.next_job(&domain) {
            let envelope = {
                let state = self.state();
                state.flights.get(&job.id).map(|f| f.envelope.clone())
            };
            let Some(envelope) = envelope else { continue };
            let message = self.queue.folder().message_path(&job.id);

            // Every recipient of a job has the job's domain, so the first one answers for all
            // (jobs are made only for domains with at least one pending recipient).
            if local.is_none() {
                local = self.is_local(&job.recipients[0]).await;
            }
            let (outcomes, host) = match local {
                None => (
                    vec![
                        Outcome::Temporary("451 4.3.0 directory unavailable".into());
                        job.recipients.len()
                    ],
                    None,
                ),
                Some(true) => (self.deliver_local(&envelope, &job.recipients).await, None),
                Some(false) => {
                    if connection.is_none() && unreachable.is_none() {
                        match self.connect(&domain).await {
                            Ok(open) => connection = Some(open),
                            Err(outcome) => unreachable = Some(outcome),
                        }
                    }
                    match (&mut connection, &unreachable) {
                        (Some(open), _) => {
                            let host = Some(open.host.clone());
                            match open.send(&envelope, &job.recipients, &message).await {
                                Ok(outcomes) => (outcomes, host),
                                Err(broken) => {
                                    connection = None;
                                    let outcome = Outcome::Temporary(broken.0);
                                    (vec![outcome; job.recipients.len()], host)
                                }
                            }
                        }
                        (None, Some(outcome)) => {
                            (vec![outcome.clone(); job.recipients.len()], None)
                        }
                        (None, None) => (
                            vec![Outcome::Temporary("no connection".into()); job.recipients.len()],
                            None,
                        ),
                    }
                }
            };
            self.record(&job, outcomes, host).await;
        }
        if let Some(connection) = connection {
            connection.quit().await;
        }
    }

    /// Whether mail for this recipient's domain stays on the platform (a bounce to a local
    /// sender, a reversed SRS address); `None` when the directory cannot say.
    async fn is_local(&self, recipient: &str) -> Option<bool> {
        match self.directory.resolve_recipient(recipient).await {
            Ok(Resolution::NotLocal) => Some(false),
            Ok(_) => Some(true),
            Err(error) if error.is_temporary() => None,
            // Not a valid address for the directory: only a remote server can judge it.
            Err(_) => Some(false),
        }
    }

    /// A connection to the first hop of `domain` that takes one, or the outcome for every
    /// recipient when none does.
    async fn connect(&self, domain: &str) -> Result<Connection, Outcome> {
        let hops = match self.options.routes.hops(domain).await {
            Ok(hops) => hops,
            Err(RouteError::Permanent(text)) => return Err(Outcome::Permanent(text)),
            Err(RouteError::Temporary(text)) => return Err(Outcome::Temporary(text)),
        };
        let mut last = Outcome::Temporary(format!("no host for {domain}"));
        // RFC 5321 §5.1: each MX in turn until one takes the session.
        for hop in &hops {
            match Connection::open(hop, &self.options.client).await {
                Ok(connection) => {
                    tracing::debug!(%domain, host = %hop.name, tls = connection.is_tls(), "[queue] connected");
                    return Ok(connection);
                }
                Err(OpenError::Permanent(text)) => last = Outcome::Permanent(text),
                Err(OpenError::Temporary(text)) => last = Outcome::Temporary(text),
            }
        }
        Err(last)
    }

    /// Local delivery: the directory routes each recipient, the store writes the copies.
    async fn deliver_local(&self, envelope: &Envelope, recipients: &[String]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for recipient in recipients {
            let mailboxes =
                match self.directory.resolve_recipient(recipient).await {
                    Ok(Resolution::Mailbox(mailbox)) if mailbox.allows(Service::Deliver) => {
                        vec![mailbox]
                    }
                    Ok(
                        Resolution::Alias { expansion, .. } | Resolution::CatchAll { expansion },
                    ) if !expansion.mailboxes.is_empty() => expansion.mailboxes,
                    Ok(Resolution::Inactive { .. } | Resolution::Mailbox(_)) => {
                        outcomes.push(Outcome::Permanent("550 5.2.1 mailbox disabled".into()));
                        continue;
                    }
                    Ok(Resolution::NotLocal) => {
                        outcomes.push(Outcome::Temporary("451 4.3.0 routing changed".into()));
                        continue;
                    }
                    Ok(_) => {
                        outcomes.push(Outcome::Permanent("550 5.1.1 no such user".into()));
                        continue;
                    }
                    Err(error) if error.is_temporary() => {
                        outcomes.push(Outcome::Temporary("451 4.3.0 directory unavailable".into()));
                        continue;
                    }
                    Err(_) => {
                        outcomes.push(Outcome::Permanent("550 5.1.3 bad recipient address".into()));
                        continue;
                    }
                };
            let store = self.store.clone();
            let path = self.queue.folder().message_path(&envelope.id);
            // RFC 5321 §4.4: Return-Path at final delivery.
            let prefix = format!(
                "Return-Path: <{}>\r\nDelivered-To: {recipient}\r\n{}",
                envelope.sender, envelope.prefix
            );
            let metrics = self.metrics.clone();
            let written = tokio::task::spawn_blocking(move || {
                for mailbox in &mailboxes {
                    let quota = QuotaLimit {
                        bytes: mailbox.quota_bytes,
                        messages: mailbox.quota_messages,
                    };
                    let maildir = store.mailbox(&mailbox.shard, &mailbox.store, quota)?;
                    let recipient = mailfold_store::Recipient {
                        maildir: &maildir,
                        prefix: Some(prefix.as_bytes()),
                    };
                    let delivered = mailfold_store::deliver(&path, &[recipient]).remove(0)?;
                    // A copy kept on the platform is delivered mail, not sent mail.
                    metrics.delivered(&mailbox.tenant, delivered.size);
                }
                Ok::<(), StoreError>(())
            })
            .await;
            outcomes.push(match written {
                Ok(Ok(())) => Outcome::Sent("250 2.0.0 delivered into the mailbox".into()),
                Ok(Err(StoreError::OverQuota { permanent: true })) => {
                    Outcome::Permanent("552 5.2.2 mailbox full".into())
                }
                Ok(Err(error)) => {
                    tracing::warn!(%recipient, cause = %error, "[queue] local delivery failed");
                    Outcome::Temporary("451 4.3.0 mailbox unavailable".into())
                }
                Err(_) => Outcome::Temporary("451 4.3.0 delivery task failed".into()),
            });
        }
        outcomes
    }

    /// Records the outcome of one job; the message's last job finishes it.
    async fn record(self: &Arc<Self>, job: &Job, outcomes: Vec<Outcome>, host: Option<String>) {
        let finished = {
            let mut state = self.state();
            let Some(flight) = state.flights.get_mut(&job.id) else {
                return;
            };
            let created = flight.envelope.created;
            for (address, outcome) in job.recipients.iter().zip(outcomes) {
                let Some(recipient) = flight
                    .envelope
                    .recipients
                    .iter_mut()
                    .find(|r| r.address == *address && r.state == State::Pending)
                else {
                    continue;
                };
                recipient.attempts += 1;
                recipient.remote_host = host.clone();
                let (result, reply) = match outcome {
                    Outcome::Sent(reply) => {
                        recipient.state = State::Sent;
                        // Only copies handed to another host count as sent (mailgraph).
                        if host.is_some() {
                            flight.sent += 1;
                        }
                        let waited = now().saturating_sub(created) as f64;
                        self.metrics.delivered_after(waited);
                        ("sent", reply)
                    }
                    Outcome::Permanent(reply) => {
                        recipient.state = State::Failed;
                        ("bounced", reply)
                    }
                    Outcome::Temporary(reply) => ("deferred", reply),
                };
                self.metrics.delivery(result);
                tracing::info!(
                    queue_id = %job.id,
                    recipient = %address,
                    host = host.as_deref().unwrap_or("-"),
                    result,
                    reply = %reply,
                    "[queue] delivery attempt"
                );
                recipient.last_reply = Some(reply);
            }
            flight.jobs_left = flight.jobs_left.saturating_sub(1);
            flight.jobs_left == 0
        };
        if finished {
            self.finish(&job.id).await;
        }
    }

    /// The end of a round for one message: bounces, then removal or the next attempt.
    async fn finish(self: &Arc<Self>, id: &str) {
        let flight = {
            let mut state = self.state();
            let Some(flight) = state.flights.remove(id) else {
                return;
            };
            state.finishing.insert(id.to_string());
            flight
        };
        let shared = self.clone();
        let id = id.to_string();
        let done = tokio::task::spawn_blocking(move || shared.conclude(flight)).await;
        let mut state = self.state();
        state.finishing.remove(&id);
        match done {
            Ok(Some((id, next))) => {
                state.index.insert(id, (next, true));
            }
            Ok(None) => {
                state.index.remove(&id);
            }
            Err(_) => tracing::error!(queue_id = %id, "[queue] finishing a message failed"),
        }
        drop(state);
        self.update_depth();
    }

    /// Blocking part of [`Shared::finish`]: `Some((id, next attempt))` while the message
    /// stays queued.
    fn conclude(&self, flight: Flight) -> Option<(String, u64)> {
        let folder = self.queue.folder();
        let mut envelope = flight.envelope;
        if flight.deleted || !folder.contains(&envelope.id) {
            let _ = folder.remove(&envelope.id);
            return None;
        }
        let schedule = &self.options.schedule;
        let now = now();
        envelope.attempts += 1;

        // The lifetime is over: what is still pending fails.
        if now >= envelope.created + schedule.lifetime.as_secs() {
            for recipient in envelope
                .recipients
                .iter_mut()
                .filter(|r| r.state == State::Pending)
            {
                recipient.state = State::Failed;
                let last = recipient.last_reply.take().unwrap_or_default();
                // RFC 3463 X.4.7: delivery time expired.
                recipient.last_reply = Some(format!(
                    "451 4.4.7 expired after {} without delivery; last reply: {last}",
                    human(schedule.lifetime)
                ));
                self.metrics.delivery("bounced");
            }
        }

        let bounced = self.bounce(&mut envelope, Action::Failed);
        if let Some(after) = schedule.delay_warning
            && !envelope.delay_warned
            && !envelope.is_done()
            && now >= envelope.created + after.as_secs()
        {
            envelope.delay_warned = self.bounce(&mut envelope, Action::Delayed).is_some();
        }
        self.metrics
            .outcomes(&envelope.tenant, flight.sent, bounced.unwrap_or(0));

        let owed = envelope
            .recipients
            .iter()
            .any(|r| r.state == State::Failed && !r.notified);
        if envelope.is_done() && !owed {
            if let Err(error) = folder.remove(&envelope.id) {
                tracing::error!(queue_id = %envelope.id, cause = %error, "[queue] removing a finished message");
            }
            return None;
        }
        envelope.next_attempt = now + schedule.interval(envelope.attempts).as_secs();
        if let Err(error) = folder.save(&envelope) {
            // The old envelope stays: the round is repeated, which may send a duplicate.
            tracing::error!(queue_id = %envelope.id, cause = %error, "[queue] saving an envelope");
        }
        Some((envelope.id.clone(), envelope.next_attempt))
    }

    /// Sends the sender a report on the recipients `action` is about (failed ones not told
    /// yet, or the pending ones for a delay warning). Returns how many it covered, `None` when
    /// the report could not be queued.
    fn bounce(&self, envelope: &mut Envelope, action: Action) -> Option<usize> {
        let wanted = |r: &crate::Recipient| match action {
            Action::Failed => r.state == State::Failed && !r.notified,
            Action::Delayed => r.state == State::Pending,
        };
        let count = envelope.recipients.iter().filter(|r| wanted(r)).count();
        if count == 0 {
            return Some(0);
        }
        // Never to the null sender, never about a bounce (RFC 3464 §2, RFC 5321 §4.5.5).
        if envelope.sender.is_empty() || envelope.kind == Kind::Bounce {
            tracing::warn!(queue_id = %envelope.id, "[queue] undeliverable bounce dropped");
            mark_notified(envelope, action);
            return Some(count);
        }
        let recipient = match self.queue.srs() {
            Some(srs) if srs.is_srs(&envelope.sender) => match srs.reverse(&envelope.sender) {
                Ok(original) => original,
                Err(error) => {
                    tracing::warn!(queue_id = %envelope.id, cause = %error, "[queue] bounce to a bad srs address dropped");
                    mark_notified(envelope, action);
                    return Some(count);
                }
            },
            _ => envelope.sender.clone(),
        };
        let message = self.queue.folder().message_path(&envelope.id);
        let concerned: Vec<&crate::Recipient> =
            envelope.recipients.iter().filter(|r| wanted(r)).collect();
        let report = dsn::report(
            envelope,
            &concerned,
            action,
            &self.options.hostname,
            &message,
        );
        match self
            .queue
            .enqueue_bounce(&report, &recipient, &envelope.tenant)
        {
            Ok(bounce) => {
                tracing::info!(queue_id = %envelope.id, %bounce, to = %recipient, ?action, "[queue] report queued");
                mark_notified(envelope, action);
                Some(count)
            }
            Err(error) => {
                tracing::error!(queue_id = %envelope.id, cause = %error, "[queue] queueing a report");
                None
            }
        }
    }
}

fn mark_notified(envelope: &mut Envelope, action: Action) {
    if action == Action::Failed {
        for recipient in envelope
            .recipients
            .iter_mut()
            .filter(|r| r.state == State::Failed)
        {
            recipient.notified = true;
        }
    }
}

fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s % 86_400 == 0 && s > 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_interval_repeats_once_the_schedule_runs_out() {
        let schedule = Schedule {
            intervals: vec![Duration::from_secs(60), Duration::from_secs(300)],
            lifetime: Duration::from_secs(5 * 86_400),
            delay_warning: None,
            scan_interval: Duration::from_secs(1),
        };
        assert_eq!(schedule.interval(1), Duration::from_secs(60));
        assert_eq!(schedule.interval(2), Duration::from_secs(300));
        assert_eq!(schedule.interval(9), Duration::from_secs(300));
        assert_eq!(human(schedule.lifetime), "5 days");
    }
}
