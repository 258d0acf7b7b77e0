//! Answers worked out from the database, each valid for the version of the
//! data it was read at: the policy's grants (`policy_state`), the inbox
//! (`inbox_state`), everything the dashboard and the order pages show
//! (`board_state`). Triggers or the write paths move those versions, and
//! sessions and tokens read them in the query that authenticates them, so
//! a change made through any replica shows on the next request everywhere
//! and a hit costs no query. Requests that miss the same key at once read
//! it once: the first reads, the others wait for its answer.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// One key's turn to be read: held by the request reading it.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// Values by key, all of one version `Ver`: a lookup at another version
/// misses; storing at a newer version drops every value of older ones,
/// storing at an older one (a request that read its version before a
/// change) keeps nothing. Bounded: it empties when it would hold more than
/// its limit.
pub struct VersionedCache<K, T, Ver = i64> {
    limit: usize,
    inner: Mutex<(Option<Ver>, HashMap<K, T>)>,
    /// The keys being read now, each with its gate.
    loading: Mutex<HashMap<K, Gate>>,
}

impl<K: Hash + Eq + Clone, T: Clone, Ver: Ord + Copy> VersionedCache<K, T, Ver> {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::new((None, HashMap::new())),
            loading: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key` under `version`: kept, or worked out by `load`
    /// and kept. While one request loads a key, others missing the same
    /// key wait and take its answer (if it is of their version) instead of
    /// loading it again; a failed load leaves the next in line to try.
    pub async fn get_or_load<Q, E, F, Fut>(&self, version: Ver, key: &Q, load: F) -> Result<T, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(found) = self.get(version, key) {
            return Ok(found);
        }
        let turn = Turn::take(&self.loading, key.to_owned());
        let _held = turn.gate.lock().await;
        if let Some(found) = self.get(version, key) {
            return Ok(found);
        }
        let value = load().await?;
        self.put(version, turn.key.clone(), value.clone());
        Ok(value)
    }

    /// The value kept for `key` under `version`, if any.
    pub fn get<Q>(&self, version: Ver, key: &Q) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.inner.lock().ok()?;
        if inner.0 != Some(version) {
            return None;
        }
        inner.1.get(key).cloned()
    }

    /// Keeps `value`, worked out after `version` was read.
    pub fn put(&self, version: Ver, key: K, value: T) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.0.is_some_and(|kept| version < kept) {
            return;
        }
        if inner.0 != Some(version) || inner.1.len() >= self.limit {
            inner.0 = Some(version);
            inner.1.clear();
        }
        inner.1.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().1.len()
    }
}

fn locked<X>(mutex: &Mutex<X>) -> MutexGuard<'_, X> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request's place in line for a key: the key's gate, dropped from the
/// map when the last request holding it lets go (also when a request is
/// cancelled while waiting or loading).
struct Turn<'a, K: Hash + Eq> {
    loading: &'a Mutex<HashMap<K, Gate>>,
    key: K,
    gate: Gate,
}

impl<'a, K: Hash + Eq + Clone> Turn<'a, K> {
    fn take(loading: &'a Mutex<HashMap<K, Gate>>, key: K) -> Self {
        let gate = locked(loading).entry(key.clone()).or_default().clone();
        Self { loading, key, gate }
    }
}

impl<K: Hash + Eq> Drop for Turn<'_, K> {
    fn drop(&mut self) {
        let mut loading = locked(self.loading);
        // Gates are cloned only under this lock: two holders (the map and
        // this turn) means no one else is in line.
        if Arc::strong_count(&self.gate) == 2
            && loading
                .get(&self.key)
                .is_some_and(|gate| Arc::ptr_eq(gate, &self.gate))
        {
            loading.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_served_only_under_the_version_it_was_read_at() {
        let cache: VersionedCache<String, i64> = VersionedCache::new(10);
        cache.put(3, "a".into(), 1);
        assert_eq!(cache.get(3, "a"), Some(1));
        assert_eq!(cache.get(3, "b"), None);
        assert_eq!(cache.get(4, "a"), None, "the data changed since");
        // A request that read an older version keeps nothing.
        cache.put(2, "b".into(), 2);
        assert_eq!(cache.get(2, "b"), None);
        assert_eq!(cache.get(3, "b"), None);
        // A newer version drops the older values.
        cache.put(5, "c".into(), 3);
        assert_eq!(cache.get(5, "a"), None);
        assert_eq!(cache.get(5, "c"), Some(3));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn versions_can_be_pairs() {
        // The header badge's count, for a policy and an inbox version.
        let cache: VersionedCache<i64, i64, (i64, i64)> = VersionedCache::new(10);
        cache.put((7, 3), 1, 10);
        cache.put((7, 3), 2, 20);
        assert_eq!(cache.get((7, 3), &1), Some(10));
        assert_eq!(cache.get((7, 4), &1), None, "the inbox moved on");
        assert_eq!(cache.get((8, 3), &1), None, "the grants moved on");
        cache.put((7, 4), 1, 11);
        assert_eq!(cache.get((7, 4), &1), Some(11));
        assert_eq!(cache.get((7, 3), &2), None);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn requests_missing_one_key_at_once_load_it_once() {
        let cache: Arc<VersionedCache<String, i64>> = Arc::new(VersionedCache::new(10));
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (open, opened) = tokio::sync::watch::channel(false);
        let requests: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads, mut opened) = (cache.clone(), loads.clone(), opened.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(1, "k", || async move {
                            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            // Held until every request is in line.
                            opened.wait_for(|open| *open).await.unwrap();
                            Ok::<_, ()>(42)
                        })
                        .await
                })
            })
            .collect();
        let in_line = || {
            cache
                .loading
                .lock()
                .unwrap()
                .get("k")
                .map_or(0, Arc::strong_count)
        };
        while in_line() < 9 {
            tokio::task::yield_now().await;
        }
        open.send(true).unwrap();
        for request in requests {
            assert_eq!(request.await.unwrap(), Ok(42));
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(cache.loading.lock().unwrap().is_empty(), "no gate is left");
    }

    #[tokio::test]
    async fn a_failed_load_leaves_the_next_request_to_load() {
        let cache: VersionedCache<i64, i64> = VersionedCache::new(10);
        assert_eq!(
            cache.get_or_load(1, &7, || async { Err("down") }).await,
            Err("down")
        );
        assert_eq!(
            cache
                .get_or_load(1, &7, || async { Ok::<_, &str>(3) })
                .await,
            Ok(3)
        );
        assert_eq!(
            cache
                .get_or_load(1, &7, || async { Err("not asked") })
                .await,
            Ok(3)
        );
        assert_eq!(
            cache
                .get_or_load(2, &7, || async { Ok::<_, &str>(4) })
                .await,
            Ok(4),
            "another version loads again"
        );
        assert!(cache.loading.lock().unwrap().is_empty());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache: VersionedCache<usize, usize> = VersionedCache::new(100);
        for i in 0..110 {
            cache.put(1, i, i);
        }
        assert!(cache.len() <= 100);
        assert_eq!(cache.get(1, &109), Some(109), "the newest is kept");
    }
}
