//! What the dashboard reads from the database for a page of release items
//! — the items and stages, where their apps are, each stage's last order
//! and each item's order waiting for approval — and the cache that serves
//! such a page again while `board_state.version` holds (triggers move it
//! on every change a page could show; see migrations 0012 and 0013). The
//! live part (what the clusters run) is never cached here: it is read from
//! the held watches on every request.

use std::collections::HashMap;
use std::sync::Arc;

use super::apps::Location;
use super::cache::VersionedCache;
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

/// Dashboard pages kept at most.
const MAX_PAGES: usize = 512;

/// Dashboard pages by what asked for them (reader's scope, filter, page),
/// for one `board_state` version.
pub type BoardCache = VersionedCache<String, Arc<BoardPage>>;

/// An empty [`BoardCache`].
pub fn board_cache() -> BoardCache {
    VersionedCache::new(MAX_PAGES)
}

/// Items' records kept at most.
const MAX_ITEMS: usize = 4096;

/// One item's record by item id (`GET /api/v1/release-items/{id}/status`),
/// for one `board_state` version.
pub type ItemCache = VersionedCache<i64, Arc<ItemsRecord>>;

/// An empty [`ItemCache`].
pub fn item_cache() -> ItemCache {
    VersionedCache::new(MAX_ITEMS)
}
