//! Answers worked out from the database, each valid for the version of the
//! data it was read at: the policy's grants (`policy_state`), the inbox
//! (`inbox_state`), everything the dashboard and the order pages show
//! (`board_state`). Triggers or the write paths move those versions, and
//! sessions and tokens read them in the query that authenticates them, so
//! a change made through any replica shows on the next request everywhere
//! and a hit costs no query.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Values by key, all of one version `Ver`: a lookup at another version
/// misses; storing at a newer version drops every value of older ones,
/// storing at an older one (a request that read its version before a
/// change) keeps nothing. Bounded: it empties when it would hold more than
/// its limit.
pub struct VersionedCache<K, T, Ver = i64> {
    limit: usize,
    inner: Mutex<(Option<Ver>, HashMap<K, T>)>,
}

impl<K: Hash + Eq, T: Clone, Ver: Ord + Copy> VersionedCache<K, T, Ver> {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::new((None, HashMap::new())),
        }
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
