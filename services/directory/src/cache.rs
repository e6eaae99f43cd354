//! A read-through cache of routing answers, so steady delivery costs far less than one
//! directory round trip per message.
//!
//! Positive answers (a mailbox, an alias expansion, a local domain) live for `ttl`; negative
//! ones (unknown address, foreign domain) for `negative_ttl`, usually shorter, so that a newly
//! created address starts receiving soon. Errors are never cached: a directory outage must not
//! outlive itself. The cache holds at most `max_entries`; when full, expired entries go first,
//! then the oldest. A change made through this process clears the cache; a change made
//! elsewhere (another replica, an operator's ldapmodify) is seen when the entry expires.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Cache limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Lifetime of a positive answer; zero turns the cache off.
    pub ttl: Duration,
    /// Lifetime of a negative answer.
    pub negative_ttl: Duration,
    /// Most answers held.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            max_entries: 100_000,
        }
    }
}

/// A bounded map of answers with expiry.
pub(crate) struct Cache<K, V> {
    config: CacheConfig,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    values: HashMap<K, (Instant, V)>,
    /// Insertion order, for eviction; may hold keys already replaced or removed.
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    pub(crate) fn new(config: CacheConfig) -> Cache<K, V> {
        let inner = Inner {
            values: HashMap::new(),
            order: VecDeque::new(),
        };
        Cache {
            config,
            inner: Mutex::new(inner),
        }
    }

    /// The cached answer for `key`, if it has not expired.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut inner = self.inner.lock().ok()?;
        match inner.values.get(key) {
            Some((expiry, value)) if *expiry > Instant::now() => Some(value.clone()),
            Some(_) => {
                inner.values.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores an answer; `negative` picks the shorter lifetime.
    pub(crate) fn put(&self, key: K, value: V, negative: bool) {
        let ttl = if negative {
            self.config.negative_ttl
        } else {
            self.config.ttl
        };
        if ttl.is_zero() || self.config.max_entries == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();

        while inner.values.len() >= self.config.max_entries {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.values.remove(&oldest);
        }
        // Keep the order queue from growing without bound through replaced keys.
        if inner.order.len() > self.config.max_entries.saturating_mul(2) {
            let Inner { values, order } = &mut *inner;
            order.retain(|k| values.get(k).is_some_and(|(expiry, _)| *expiry > now));
        }
        if inner
            .values
            .insert(key.clone(), (now + ttl, value))
            .is_none()
        {
            inner.order.push_back(key);
        }
    }

    /// Forgets every answer.
    pub(crate) fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.values.clear();
            inner.order.clear();
        }
    }

    /// How many answers are held (expired ones included until touched).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.values.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ttl_ms: u64, negative_ms: u64, max: usize) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_millis(ttl_ms),
            negative_ttl: Duration::from_millis(negative_ms),
            max_entries: max,
        }
    }

    #[test]
    fn answers_expire_after_their_ttl() {
        let cache = Cache::new(config(60_000, 1, 10));
        cache.put("positive", 1, false);
        cache.put("negative", 2, true);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(cache.get(&"positive"), Some(1));
        assert_eq!(cache.get(&"negative"), None);
    }

    #[test]
    fn the_size_bound_evicts_the_oldest() {
        let cache = Cache::new(config(60_000, 60_000, 3));
        for key in 0..10 {
            cache.put(key, key, false);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&0), None);
        assert_eq!(cache.get(&9), Some(9));
    }

    #[test]
    fn a_zero_ttl_disables_caching() {
        let cache = Cache::new(config(0, 0, 10));
        cache.put("k", 1, false);
        assert_eq!(cache.get(&"k"), None);
    }

    #[test]
    fn replacing_a_key_many_times_keeps_the_queue_bounded() {
        let cache = Cache::new(config(60_000, 60_000, 4));
        for round in 0..1000 {
            cache.put("same", round, false);
        }
        assert_eq!(cache.get(&"same"), Some(999));
        assert!(cache.inner.lock().unwrap().order.len() <= 9);
    }
}
