//! Connection and login limits shared by the front-ends.
//!
//! [`ConnectionLimits`] caps how many connections a listener serves at once, in total and per
//! client network; each accepted connection holds a [`ConnectionPermit`] that gives its place
//! back when dropped. [`LoginThrottle`] counts failed logins per client network and per account
//! in a sliding window and refuses further attempts once either budget is spent.
//!
//! Clients are grouped by network, not by address: an IPv6 host usually owns a whole /64 and can
//! pick a new address in it for every connection, so IPv6 addresses count per /64, IPv4
//! addresses (including IPv4-mapped IPv6 ones) per address.
//!
//! Both are per process: replicas behind a balancer each keep their own counts, which keeps the
//! front-ends stateless (a restart forgets them) at the price of a budget per replica.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The network a client address counts in: IPv4 addresses alone, IPv6 addresses by /64.
fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            // The upper 64 bits are the network prefix of an ordinary IPv6 subnet.
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Locks `mutex`, carrying on after a panic elsewhere.
///
/// Every critical section here leaves the state consistent at each step (counters are changed
/// by single statements), so a poisoned lock still guards valid data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many connections a listener (or several sharing the value) serves at once.
///
/// Cloning gives another handle on the same counts.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    shared: Arc<ConnectionCounts>,
}

/// The limits and the live counts behind a [`ConnectionLimits`].
#[derive(Debug)]
struct ConnectionCounts {
    /// Most connections at once, 0 for no limit.
    max_total: usize,
    /// Most connections at once from one client network, 0 for no limit.
    max_per_ip: usize,
    /// The connections now open.
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    /// Only networks with at least one open connection have an entry, so the map is never
    /// larger than the number of open connections.
    per_network: HashMap<IpAddr, usize>,
}

/// One connection's place under a [`ConnectionLimits`]; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionPermit {
    shared: Arc<ConnectionCounts>,
    network: IpAddr,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections at once and `max_per_ip` from one client network
    /// (one IPv4 address or one IPv6 /64); 0 means no limit.
    pub fn new(max_total: usize, max_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            shared: Arc::new(ConnectionCounts {
                max_total,
                max_per_ip,
                open: Mutex::new(OpenConnections::default()),
            }),
        }
    }

    /// A place for a new connection from `ip`, or `None` when a limit is reached.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<ConnectionPermit> {
        let network = client_network(ip);
        let limits = &self.shared;
        let mut open = lock(&limits.open);

        let from_network = open.per_network.get(&network).copied().unwrap_or(0);
        let total_full = limits.max_total != 0 && open.total >= limits.max_total;
        let network_full = limits.max_per_ip != 0 && from_network >= limits.max_per_ip;
        if total_full || network_full {
            return None;
        }

        open.total += 1;
        open.per_network.insert(network, from_network + 1);
        Some(ConnectionPermit {
            shared: Arc::clone(&self.shared),
            network,
        })
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        lock(&self.shared.open).total
    }

    /// How many connections are open now from the network of `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = lock(&self.shared.open);
        open.per_network
            .get(&client_network(ip))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = lock(&self.shared.open);
        open.total = open.total.saturating_sub(1);
        // An entry that reaches zero goes, so closed connections cost no memory.
        if let Some(count) = open.per_network.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                open.per_network.remove(&self.network);
            }
        }
    }
}

/// The rules of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Failed logins allowed from one client network within `window`; 0 for no limit.
    /// Default 10.
    pub failures_per_ip: usize,
    /// Failed logins allowed for one account within `window`, from anywhere; 0 for no limit.
    /// Default 5.
    pub failures_per_account: usize,
    /// How far back failures count. Default 5 minutes.
    pub window: Duration,
    /// How long a front-end waits before answering a failed login. Default 1 second; 0 is
    /// meant for tests.
    pub failure_delay: Duration,
    /// Most client networks tracked at once, and separately most accounts; past it the entries
    /// with the oldest failures are forgotten first. Default 10,000 each.
    pub max_tracked: usize,
}

impl Default for LoginPolicy {
    fn default() -> LoginPolicy {
        LoginPolicy {
            failures_per_ip: 10,
            failures_per_account: 5,
            window: Duration::from_secs(5 * 60),
            failure_delay: Duration::from_secs(1),
            max_tracked: 10_000,
        }
    }
}

/// Counts failed logins per client network and per account, and refuses logins past a budget.
///
/// A front-end calls [`check`](LoginThrottle::check) before verifying a password, then
/// [`failed`](LoginThrottle::failed) (and sleeps [`failure_delay`](LoginThrottle::failure_delay))
/// or [`succeeded`](LoginThrottle::succeeded). Memory is bounded by
/// [`LoginPolicy::max_tracked`] entries of at most the allowed number of timestamps each.
#[derive(Debug)]
pub struct LoginThrottle {
    policy: LoginPolicy,
    failures: Mutex<Failures>,
}

/// The failure records of a [`LoginThrottle`].
#[derive(Debug, Default)]
struct Failures {
    by_network: FailureLog<IpAddr>,
    by_account: FailureLog<String>,
}

/// Recent failure times per key, newest last, at most `limit` per key (older ones cannot change
/// a decision).
#[derive(Debug)]
struct FailureLog<K> {
    entries: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for FailureLog<K> {
    fn default() -> Self {
        FailureLog {
            entries: HashMap::new(),
        }
    }
}

/// The longest account name kept as a key, in bytes; longer ones count under their prefix, so a
/// client cannot spend memory by sending huge names. RFC 5321 §4.5.3.1.3 caps a path at 256.
const MAX_ACCOUNT_KEY: usize = 320;

impl LoginThrottle {
    /// A throttle applying `policy`.
    pub fn new(policy: LoginPolicy) -> LoginThrottle {
        LoginThrottle {
            policy,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &LoginPolicy {
        &self.policy
    }

    /// Whether a login for `account` from `ip` may be tried now; `Err` holds how long until
    /// one may.
    pub fn check(&self, ip: IpAddr, account: &str) -> Result<(), Duration> {
        self.check_at(ip, account, Instant::now())
    }

    /// Records a failed login for `account` from `ip`.
    pub fn failed(&self, ip: IpAddr, account: &str) {
        self.failed_at(ip, account, Instant::now());
    }

    /// Records a successful login: the account's failures are forgotten.
    ///
    /// The client network's failures stay: forgetting them would let someone who owns one
    /// account reset their guessing budget by logging in to it between guesses.
    pub fn succeeded(&self, _ip: IpAddr, account: &str) {
        let mut failures = lock(&self.failures);
        failures.by_account.entries.remove(&account_key(account));
    }

    /// How long a front-end waits before answering a failed login, to slow down guessing.
    pub fn failure_delay(&self) -> Duration {
        self.policy.failure_delay
    }

    /// [`check`](Self::check) at a given time.
    fn check_at(&self, ip: IpAddr, account: &str, now: Instant) -> Result<(), Duration> {
        let policy = &self.policy;
        let failures = lock(&self.failures);
        let network = failures.by_network.wait(
            &client_network(ip),
            policy.failures_per_ip,
            policy.window,
            now,
        );
        let account = failures.by_account.wait(
            &account_key(account),
            policy.failures_per_account,
            policy.window,
            now,
        );
        // Both budgets must have room again, so the caller waits for the later of the two.
        match network.max(account) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// [`failed`](Self::failed) at a given time.
    fn failed_at(&self, ip: IpAddr, account: &str, now: Instant) {
        let policy = &self.policy;
        let mut failures = lock(&self.failures);
        failures.by_network.record(
            client_network(ip),
            policy.failures_per_ip,
            policy.max_tracked,
            policy.window,
            now,
        );
        failures.by_account.record(
            account_key(account),
            policy.failures_per_account,
            policy.max_tracked,
            policy.window,
            now,
        );
    }
}

/// The key an account's failures count under: case-folded, and cut to a bounded length.
fn account_key(account: &str) -> String {
    let mut key = account[..account.floor_char_boundary(MAX_ACCOUNT_KEY)].to_lowercase();
    // Lower case can be longer than upper case ('İ' becomes two characters), so cut again.
    key.truncate(key.floor_char_boundary(MAX_ACCOUNT_KEY));
    key
}

impl<K: std::hash::Hash + Eq + Clone> FailureLog<K> {
    /// How long until `key` may fail again under `limit` failures per `window`, or `None` if it
    /// may now.
    fn wait(&self, key: &K, limit: usize, window: Duration, now: Instant) -> Option<Duration> {
        if limit == 0 {
            return None;
        }
        let times = self.entries.get(key)?;
        let recent: Vec<&Instant> = times.iter().filter(|&&at| now < at + window).collect();
        if recent.len() < limit {
            return None;
        }
        // The budget has room again once the oldest failure that still fills it leaves the
        // window.
        let blocking = *recent[recent.len() - limit];
        Some(blocking + window - now)
    }

    /// Notes a failure of `key` at `now`, keeping at most `limit` times per key and at most
    /// `max_tracked` keys.
    fn record(&mut self, key: K, limit: usize, max_tracked: usize, window: Duration, now: Instant) {
        if limit == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= max_tracked.max(1) {
            self.make_room(max_tracked.max(1), window, now);
        }

        let times = self.entries.entry(key).or_default();
        times.push_back(now);
        // Only the newest `limit` failures can decide a check.
        while times.len() > limit {
            times.pop_front();
        }
    }

    /// Frees entries so that one more fits under `max_tracked`: first those whose failures all
    /// left the window, then, if none did, the eighth with the oldest latest failure.
    fn make_room(&mut self, max_tracked: usize, window: Duration, now: Instant) {
        self.entries
            .retain(|_, times| times.back().is_some_and(|&latest| now < latest + window));
        if self.entries.len() < max_tracked {
            return;
        }

        // Evicting a batch keeps the cost of this scan amortised over many insertions.
        let batch = (max_tracked / 8).max(1);
        let mut latest: Vec<(Instant, K)> = self
            .entries
            .iter()
            .filter_map(|(key, times)| times.back().map(|&at| (at, key.clone())))
            .collect();
        latest.select_nth_unstable_by_key(batch - 1, |(at, _)| *at);
        for (_, key) in latest.into_iter().take(batch) {
            self.entries.remove(&key);
        }
    }

    /// How many keys are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// When a front-end accepts passwords over a connection without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plaintext {
    /// Never: STARTTLS or STLS first. The safe default.
    Never,
    /// From loopback addresses only (a webmail or fetcher on the same machine).
    Loopback,
    /// Always. Dangerous: passwords cross the network in clear.
    Always,
}

impl Plaintext {
    /// Whether a client at `ip` may send a password without TLS.
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Plaintext::Always => true,
            Plaintext::Loopback => ip.is_loopback(),
            Plaintext::Never => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn policy(per_ip: usize, per_account: usize) -> LoginPolicy {
        LoginPolicy {
            failures_per_ip: per_ip,
            failures_per_account: per_account,
            window: Duration::from_secs(300),
            failure_delay: Duration::ZERO,
            max_tracked: 100,
        }
    }

    #[test]
    fn the_total_limit_refuses_the_connection_past_it_and_a_drop_frees_a_place() {
        let limits = ConnectionLimits::new(2, 0);
        let first = limits.try_acquire(ip("192.0.2.1")).unwrap();
        let _second = limits.try_acquire(ip("192.0.2.2")).unwrap();
        assert!(limits.try_acquire(ip("192.0.2.3")).is_none());
        assert_eq!(limits.open(), 2);

        drop(first);
        assert_eq!(limits.open(), 1);
        assert!(limits.try_acquire(ip("192.0.2.3")).is_some());
    }

    #[test]
    fn the_per_ip_limit_refuses_one_address_and_not_another() {
        let limits = ConnectionLimits::new(0, 2);
        let held: Vec<_> = (0..2)
            .map(|_| limits.try_acquire(ip("192.0.2.1")).unwrap())
            .collect();
        assert!(limits.try_acquire(ip("192.0.2.1")).is_none());
        assert!(limits.try_acquire(ip("192.0.2.2")).is_some());
        assert_eq!(limits.open_from(ip("192.0.2.1")), 2);

        drop(held);
        assert_eq!(limits.open_from(ip("192.0.2.1")), 0);
        assert!(limits.try_acquire(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_per_ip_budget() {
        let limits = ConnectionLimits::new(0, 1);
        let _held = limits.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(
            limits
                .try_acquire(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
                .is_none()
        );
        assert!(limits.try_acquire(ip("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address() {
        let limits = ConnectionLimits::new(0, 1);
        let _held = limits.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(limits.try_acquire(ip("::ffff:192.0.2.7")).is_none());
        assert!(limits.try_acquire(ip("::ffff:192.0.2.8")).is_some());
    }

    #[test]
    fn closed_connections_leave_no_per_ip_entries_behind() {
        let limits = ConnectionLimits::new(0, 0);
        for n in 0..1000u32 {
            drop(limits.try_acquire(IpAddr::from(n.to_be_bytes())).unwrap());
        }
        assert_eq!(limits.open(), 0);
        assert!(lock(&limits.shared.open).per_network.is_empty());
    }

    #[test]
    fn permits_released_from_many_threads_bring_the_count_back_to_zero() {
        let limits = ConnectionLimits::new(64, 8);
        let threads: Vec<_> = (0..8u8)
            .map(|n| {
                let limits = limits.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let permit = limits.try_acquire(IpAddr::from([10, 0, 0, n]));
                        assert!(permit.is_some());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(limits.open(), 0);
    }

    #[test]
    fn the_account_budget_refuses_after_its_failures_from_any_address() {
        let throttle = LoginThrottle::new(policy(0, 3));
        let now = Instant::now();
        for n in 0..3u8 {
            assert!(
                throttle
                    .check_at(IpAddr::from([192, 0, 2, n]), "alice@example.org", now)
                    .is_ok()
            );
            throttle.failed_at(IpAddr::from([192, 0, 2, n]), "alice@example.org", now);
        }
        let refused = throttle.check_at(ip("198.51.100.1"), "Alice@Example.org", now);
        assert_eq!(refused, Err(Duration::from_secs(300)));
        assert!(
            throttle
                .check_at(ip("198.51.100.1"), "bob@example.org", now)
                .is_ok()
        );
    }

    #[test]
    fn the_ip_budget_refuses_every_account_from_that_network() {
        let throttle = LoginThrottle::new(policy(4, 0));
        let now = Instant::now();
        for n in 0..4 {
            throttle.failed_at(ip("2001:db8::1"), &format!("user{n}@example.org"), now);
        }
        assert!(
            throttle
                .check_at(ip("2001:db8::99"), "new@example.org", now)
                .is_err()
        );
        assert!(
            throttle
                .check_at(ip("2001:db8:0:1::1"), "new@example.org", now)
                .is_ok()
        );
    }

    #[test]
    fn failures_leave_the_budget_as_they_leave_the_window() {
        let throttle = LoginThrottle::new(policy(0, 2));
        let start = Instant::now();
        throttle.failed_at(ip("192.0.2.1"), "alice", start);
        throttle.failed_at(ip("192.0.2.1"), "alice", start + Duration::from_secs(100));

        let later = start + Duration::from_secs(120);
        assert_eq!(
            throttle.check_at(ip("192.0.2.1"), "alice", later),
            Err(Duration::from_secs(180))
        );
        // Once the first failure is 300 s old, one more attempt is allowed.
        assert!(
            throttle
                .check_at(ip("192.0.2.1"), "alice", start + Duration::from_secs(300))
                .is_ok()
        );
    }

    #[test]
    fn the_longer_of_the_two_waits_is_returned() {
        let throttle = LoginThrottle::new(policy(2, 1));
        let start = Instant::now();
        throttle.failed_at(ip("192.0.2.1"), "alice", start);
        throttle.failed_at(ip("192.0.2.1"), "bob", start + Duration::from_secs(60));
        // The IP budget frees at 300 s, bob's at 360 s.
        let at = start + Duration::from_secs(60);
        assert_eq!(
            throttle.check_at(ip("192.0.2.1"), "bob", at),
            Err(Duration::from_secs(300))
        );
    }

    #[test]
    fn a_success_clears_the_account_but_not_the_network() {
        let throttle = LoginThrottle::new(policy(3, 3));
        let now = Instant::now();
        for _ in 0..3 {
            throttle.failed_at(ip("192.0.2.1"), "alice", now);
        }
        throttle.succeeded(ip("192.0.2.2"), "ALICE");
        assert!(throttle.check_at(ip("192.0.2.2"), "alice", now).is_ok());
        assert!(throttle.check_at(ip("192.0.2.1"), "bob", now).is_err());
    }

    #[test]
    fn zero_limits_never_refuse_and_track_nothing() {
        let throttle = LoginThrottle::new(policy(0, 0));
        let now = Instant::now();
        for _ in 0..100 {
            throttle.failed_at(ip("192.0.2.1"), "alice", now);
        }
        assert!(throttle.check_at(ip("192.0.2.1"), "alice", now).is_ok());
        let failures = lock(&throttle.failures);
        assert_eq!(
            (failures.by_network.len(), failures.by_account.len()),
            (0, 0)
        );
    }

    #[test]
    fn each_key_keeps_at_most_its_limit_of_timestamps() {
        let throttle = LoginThrottle::new(policy(3, 2));
        let now = Instant::now();
        for _ in 0..1000 {
            throttle.failed_at(ip("192.0.2.1"), "alice", now);
        }
        let failures = lock(&throttle.failures);
        assert_eq!(failures.by_network.entries[&ip("192.0.2.1")].len(), 3);
        assert_eq!(failures.by_account.entries["alice"].len(), 2);
    }

    #[test]
    fn tracked_keys_stay_under_the_cap_and_the_oldest_go_first() {
        let throttle = LoginThrottle::new(LoginPolicy {
            max_tracked: 16,
            ..policy(1, 1)
        });
        let start = Instant::now();
        for n in 0..1000u32 {
            let at = start + Duration::from_millis(u64::from(n));
            throttle.failed_at(IpAddr::from(n.to_be_bytes()), &format!("user{n}"), at);
            let failures = lock(&throttle.failures);
            assert!(failures.by_network.len() <= 16 && failures.by_account.len() <= 16);
        }

        // The newest failures are still remembered, the oldest forgotten.
        let at = start + Duration::from_secs(1);
        assert!(
            throttle
                .check_at(IpAddr::from(999u32.to_be_bytes()), "x", at)
                .is_err()
        );
        assert!(throttle.check_at(ip("192.0.2.9"), "user999", at).is_err());
        assert!(
            throttle
                .check_at(IpAddr::from(0u32.to_be_bytes()), "user0", at)
                .is_ok()
        );
    }

    #[test]
    fn expired_keys_are_evicted_before_live_ones() {
        let throttle = LoginThrottle::new(LoginPolicy {
            max_tracked: 2,
            ..policy(1, 1)
        });
        let start = Instant::now();
        throttle.failed_at(ip("192.0.2.1"), "old", start);
        throttle.failed_at(ip("192.0.2.2"), "live", start + Duration::from_secs(250));
        // At 320 s the first entry has left the window; the live one must survive the insert.
        let at = start + Duration::from_secs(320);
        throttle.failed_at(ip("192.0.2.3"), "new", at);
        assert!(throttle.check_at(ip("192.0.2.2"), "live", at).is_err());
        assert_eq!(lock(&throttle.failures).by_account.len(), 2);
    }

    #[test]
    fn huge_account_names_are_kept_under_a_bounded_key() {
        let throttle = LoginThrottle::new(policy(0, 1));
        let huge = "é".repeat(100_000);
        throttle.failed(ip("192.0.2.1"), &huge);
        assert!(throttle.check(ip("192.0.2.1"), &huge).is_err());
        let failures = lock(&throttle.failures);
        assert!(
            failures
                .by_account
                .entries
                .keys()
                .all(|key| key.len() <= MAX_ACCOUNT_KEY)
        );
    }

    #[test]
    fn the_failure_delay_comes_from_the_policy_and_defaults_to_one_second() {
        assert_eq!(
            LoginThrottle::new(LoginPolicy::default()).failure_delay(),
            Duration::from_secs(1)
        );
        assert_eq!(
            LoginThrottle::new(policy(1, 1)).failure_delay(),
            Duration::ZERO
        );
    }
}
