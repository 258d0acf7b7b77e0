//! What runs where, for the dashboard, the release item and app pages and
//! `GET /api/v1/release-items/{id}/status`: each stage of an item as its
//! cluster reports it (the image tag running, ready and desired pods, read
//! from a held Deployment watch, with how fresh it is), the last order that
//! touched the stage and the order waiting for approval. The cluster is
//! never asked on the request path: [`run`] keeps a watch on every
//! namespace some app lives in.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::app::AppState;
use crate::db::accounts::Account;
use crate::db::apps::{self, AppFilter};
use crate::db::board::ItemsRecord;
use crate::db::release_items::{self, ReleaseItem};
use crate::db::tree::Scope;
use crate::db::work_order_views::{self, StageRun, StageTouch, Waiting};
use crate::error::{Error, Result};
use crate::kube::live::{LiveRead, LiveStatus};

use super::clusters::cluster_client;

/// How often the set of watched namespaces follows the apps.
const REFRESH: Duration = Duration::from_secs(30);

/// One stage of an item, live.
#[derive(Debug, Clone)]
pub struct StageLive {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    pub cluster_id: i64,
    pub environment: String,
    pub namespace: String,
    pub deployment: String,
    /// What the cluster reports.
    pub live: LiveStatus,
    /// The running image's tag when it is of the item's repository, else
    /// the whole image.
    pub running: Option<String>,
    /// The running image's tag, when it is of the item's repository.
    pub tag: Option<String>,
    /// The last order that touched the stage.
    pub last: Option<StageTouch>,
}

/// A release item and its stages, live.
#[derive(Debug, Clone)]
pub struct ItemLive {
    pub item: ReleaseItem,
    pub stages: Vec<StageLive>,
    pub waiting: Option<Waiting>,
}

/// The tag of `image` when it is of `repository` (not a digest).
pub fn tag_of(image: &str, repository: &str) -> Option<String> {
    image
        .strip_prefix(repository)?
        .strip_prefix(':')
        .filter(|t| !t.is_empty() && !t.contains('@'))
        .map(str::to_string)
}

/// The image `image` as a row shows it: its tag when it is of
/// `repository`, else in full.
pub fn shown_image(image: &str, repository: &str) -> String {
    tag_of(image, repository).unwrap_or_else(|| image.to_string())
}

/// What the database says of `items` (already scoped to the reader) for
/// their live status: cacheable while the board version holds.
pub async fn items_record(state: &AppState, items: Vec<ReleaseItem>) -> Result<ItemsRecord> {
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let (touched, waiting) = work_order_views::stage_history(&state.db.pool, &ids).await?;
    let app_ids: BTreeSet<i64> = items
        .iter()
        .flat_map(|i| i.stages.iter().map(|s| s.app_id))
        .collect();
    let apps = apps::locations(&state.db.pool, &app_ids.into_iter().collect::<Vec<_>>()).await?;
    Ok(ItemsRecord {
        items,
        touched,
        waiting,
        apps,
    })
}

/// The live status of the item `id` as `actor` may see it (not found when
/// it may not), its database part served from the item cache while
/// `board_version` (read with the actor's token or session) holds.
pub async fn item_live(
    state: &AppState,
    actor: &Account,
    board_version: i64,
    id: i64,
) -> Result<ItemLive> {
    let record = state
        .items
        .get_or_load(board_version, &id, || async {
            let item = release_items::get(&state.db.pool, id).await?;
            Ok::<_, Error>(Arc::new(items_record(state, vec![item]).await?))
        })
        .await?;
    let not_found = || Error::from(release_items::not_found(id));
    let item = record.items.first().ok_or_else(not_found)?;
    if !state.policy.may_view(actor, &item.node_path) {
        return Err(not_found());
    }
    compose(state, &record)
        .into_iter()
        .next()
        .ok_or_else(not_found)
}

/// The live status of `items` (already scoped to the reader).
pub async fn items_live(state: &AppState, items: Vec<ReleaseItem>) -> Result<Vec<ItemLive>> {
    Ok(compose(state, &items_record(state, items).await?))
}

/// `record` with what the held watches report now.
pub fn compose(state: &AppState, record: &ItemsRecord) -> Vec<ItemLive> {
    record
        .items
        .iter()
        .map(|item| {
            let stages = item
                .stages
                .iter()
                .map(|stage| {
                    let app = record.apps.get(&stage.app_id);
                    let live = match app {
                        Some(a) => {
                            state
                                .live
                                .read(a.cluster_id, &a.namespace, &a.deployment, &a.container)
                        }
                        None => LiveStatus {
                            read: LiveRead::Unknown("the app was deleted".into()),
                            as_of: None,
                            stale_because: None,
                        },
                    };
                    let image = match &live.read {
                        LiveRead::Found(d) => d.image.as_deref(),
                        _ => None,
                    };
                    let running = image.map(|i| shown_image(i, &item.image_repository));
                    let tag = image.and_then(|i| tag_of(i, &item.image_repository));
                    StageLive {
                        position: stage.position,
                        name: stage.name.clone(),
                        app_id: stage.app_id,
                        app: stage.app.clone(),
                        cluster: stage.cluster.clone(),
                        cluster_id: stage.cluster_id,
                        environment: stage.environment.clone(),
                        namespace: app.map(|a| a.namespace.clone()).unwrap_or_default(),
                        deployment: app.map(|a| a.deployment.clone()).unwrap_or_default(),
                        live,
                        running,
                        tag,
                        last: record.touched.get(&(item.id, stage.app_id)).cloned(),
                    }
                })
                .collect();
            ItemLive {
                waiting: record.waiting.get(&item.id).cloned(),
                stages,
                item: item.clone(),
            }
        })
        .collect()
}

/// What the held watches report now for the Deployments of apps
/// `app_ids` (read from the database), by app id; a deleted app is left
/// out.
pub async fn apps_live(state: &AppState, app_ids: &[i64]) -> Result<HashMap<i64, LiveStatus>> {
    let apps = apps::locations(&state.db.pool, app_ids).await?;
    Ok(apps
        .into_iter()
        .map(|(id, a)| {
            let live = state
                .live
                .read(a.cluster_id, &a.namespace, &a.deployment, &a.container);
            (id, live)
        })
        .collect())
}

/// What the held watches report for the stages of an order, by app id
/// (their locations come with the order: no query).
pub fn stages_live(state: &AppState, stages: &[StageRun]) -> HashMap<i64, LiveStatus> {
    stages
        .iter()
        .map(|s| {
            let at = &s.location;
            let live = state
                .live
                .read(at.cluster_id, &at.namespace, &at.deployment, &at.container);
            (s.app_id, live)
        })
        .collect()
}

/// Watches every namespace some app lives in, following the apps: now,
/// every [`REFRESH`], and as soon as a page asks for one not watched yet.
pub async fn run(state: AppState) {
    loop {
        if let Err(e) = refresh(&state).await {
            tracing::warn!(error = %e, "live status: cannot list the apps");
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = state.live.wanted() => {
                // Pages asking together are answered by one refresh.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Holds a watch on each app namespace and lets the others go.
pub async fn refresh(state: &AppState) -> Result<()> {
    let apps = apps::list(&state.db.pool, &AppFilter::default(), &Scope::All).await?;
    let namespaces: BTreeSet<(i64, String, String)> = apps
        .into_iter()
        .map(|a| (a.cluster_id, a.cluster, a.namespace))
        .collect();
    let mut held = Vec::new();
    for (cluster_id, cluster, namespace) in namespaces {
        let client = cluster_client(state, cluster_id, &cluster)
            .await
            .map_err(|e| e.public_message());
        held.push(((cluster_id, namespace), client));
    }
    state.live.hold(&state.kube, held);
    Ok(())
}

/// Keeps [`run`] alive as a task of its own.
pub fn start(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_image_shows_its_tag_when_it_is_the_items() {
        assert_eq!(
            shown_image("reg/shop/cart:v1.2.0", "reg/shop/cart"),
            "v1.2.0"
        );
        assert_eq!(
            shown_image("reg/shop/cart-canary:v1", "reg/shop/cart"),
            "reg/shop/cart-canary:v1"
        );
        assert_eq!(shown_image("nginx:1.27", "reg/shop/cart"), "nginx:1.27");
    }
}
