//! What the dashboard reads from the database for a page of release items
//! — the items and stages, where their apps are, each stage's last order
//! and each item's order waiting for approval — and the cache that serves
//! a page read under one `board_state` version again until the version
//! moves on (triggers move it on every change the page could show; see
//! migration 0012). The live part (what the clusters run) is never cached
//! here: it is read from the held watches on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::apps::Location;
use super::release_items::ReleaseItem;
use super::work_order_views::{StageTouch, Waiting};

/// The database's part of some items' live status.
#[derive(Debug, Clone, Default)]
pub struct ItemsRecord {
    pub items: Vec<ReleaseItem>,
    /// The last order that touched each (item, app).
    pub touched: HashMap<(i64, i64), StageTouch>,
    /// Each item's order waiting for approval.
    pub waiting: HashMap<i64, Waiting>,
    /// Where each app's Deployment is, by app id.
    pub apps: HashMap<i64, Location>,
}

/// One page of the dashboard, as read from the database.
#[derive(Debug, Clone, Default)]
pub struct BoardPage {
    /// This page (1-based) and how many there are.
    pub page: usize,
    pub pages: usize,
    pub record: ItemsRecord,
    /// GitLab's address, for links to the running tags.
    pub gitlab_url: Option<String>,
}

/// Pages kept at most; the cache empties when it would hold more.
const MAX_PAGES: usize = 512;

/// Dashboard pages by what asked for them (reader's scope, filter, page),
/// valid for one `board_state` version.
#[derive(Default)]
pub struct BoardCache {
    inner: Mutex<(i64, HashMap<String, Arc<BoardPage>>)>,
}

impl BoardCache {
    /// The page kept for `key` under `version`, if any.
    pub fn get(&self, version: i64, key: &str) -> Option<Arc<BoardPage>> {
        let inner = self.inner.lock().expect("board cache");
        if inner.0 != version {
            return None;
        }
        inner.1.get(key).cloned()
    }

    /// Keeps `page`, read after `version` was: a newer version empties the
    /// cache, an older one (a request that read it before a change) keeps
    /// nothing.
    pub fn put(&self, version: i64, key: String, page: Arc<BoardPage>) {
        let mut inner = self.inner.lock().expect("board cache");
        if version < inner.0 {
            return;
        }
        if version > inner.0 || inner.1.len() >= MAX_PAGES {
            inner.0 = version;
            inner.1.clear();
        }
        inner.1.insert(key, page);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: usize) -> Arc<BoardPage> {
        Arc::new(BoardPage {
            page: n,
            ..BoardPage::default()
        })
    }

    #[test]
    fn a_page_is_served_only_under_the_version_it_was_read_at() {
        let cache = BoardCache::default();
        cache.put(3, "a".into(), page(1));
        assert_eq!(cache.get(3, "a").unwrap().page, 1);
        assert!(cache.get(3, "b").is_none());
        assert!(cache.get(4, "a").is_none(), "the board changed since");
        // A request that read an older version keeps nothing.
        cache.put(2, "b".into(), page(2));
        assert!(cache.get(2, "b").is_none() && cache.get(3, "b").is_none());
        // A newer version drops the older pages.
        cache.put(5, "c".into(), page(3));
        assert!(cache.get(5, "a").is_none());
        assert_eq!(cache.get(5, "c").unwrap().page, 3);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = BoardCache::default();
        for i in 0..MAX_PAGES + 10 {
            cache.put(1, i.to_string(), page(i));
        }
        assert!(cache.inner.lock().unwrap().1.len() <= MAX_PAGES);
        assert!(cache.get(1, &(MAX_PAGES + 9).to_string()).is_some());
    }
}
