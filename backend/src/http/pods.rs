//! What the stages did in the cluster: the pods of the old and the new
//! version, and a container's log (last lines, or followed as it is
//! written through server-sent events). A followed log is authorised again
//! every few seconds while it runs and lives at most half an hour.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures::{AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use super::{Layout, PageCtx, PageRoutes};
use crate::app::AppState;
use crate::db::work_order_views::{StageRun, WorkOrderDetail};
use crate::db::work_orders::{self, StageTarget};
use crate::db::{now_ms, sessions};
use crate::domain::work_order::StageStatus;
use crate::error::{Error, Result};
use crate::flows::{kube_error, stage_deployment};
use crate::kube::deployment;
use crate::kube::pods::{self, PodRow};
use crate::kube::{ClusterClient, KubeError};

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/work-orders/{id}/pods", pods)
        .get("/work-orders/{id}/stages/{n}/pods/{pod}/logs", logs)
        .get(
            "/work-orders/{id}/stages/{n}/pods/{pod}/logs/stream",
            follow_logs,
        )
}

/// The pods of one ReplicaSet.
pub struct PodGroup {
    /// `new` or `old`.
    pub role: &'static str,
    pub revision: String,
    pub image: String,
    pub pods: Vec<PodRow>,
}

/// What a stage's Deployment runs.
pub struct StagePods {
    pub position: i64,
    pub name: String,
    pub target: String,
    pub groups: Vec<PodGroup>,
    pub error: Option<String>,
    /// A canary stage: its new pods are the canary, the old ones stable.
    pub canary: bool,
}

#[derive(Template)]
#[template(path = "pods_fragment.html")]
struct PodsFragment {
    order_id: i64,
    stages: Vec<StagePods>,
    /// How often the section asks again: `None` once the order is over.
    poll: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "pods.html")]
struct PodsPage {
    layout: Layout,
    order_id: i64,
    title: String,
    stages: Vec<StagePods>,
}

/// The order, if the viewer may see its node (404 otherwise).
async fn visible_order(ctx: &PageCtx, id: i64) -> Result<WorkOrderDetail> {
    crate::flows::work_orders::detail(
        &ctx.state,
        &ctx.actor.account,
        Some(ctx.actor.board_version),
        id,
    )
    .await
}

/// The pods of the old and new versions of every stage that has started:
/// a fragment for htmx, a page otherwise.
async fn pods(ctx: PageCtx, Path(id): Path<i64>, headers: axum::http::HeaderMap) -> Response {
    let d = match visible_order(&ctx, id).await {
        Ok(d) => d,
        Err(e) => return ctx.error_page(&e),
    };
    let mut stages = Vec::new();
    for run in d
        .stage_runs
        .iter()
        .filter(|s| s.status != StageStatus::Pending)
    {
        stages.push(stage_pods(&ctx.state, &d, run).await);
    }
    if headers.contains_key("hx-request") {
        let poll = if !d.order.state.is_open() {
            None
        } else if d.stage_runs.iter().any(|s| s.status.is_mid_rollout()) {
            Some("2s")
        } else {
            Some("15s")
        };
        let fragment = PodsFragment {
            order_id: id,
            stages,
            poll,
        };
        return match fragment.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => ctx.error_page(&Error::Internal(e.into())),
        };
    }
    let page = PodsPage {
        layout: ctx.layout(format!("Pods of #{id}"), "work-orders", None),
        order_id: id,
        title: d.order.title.clone(),
        stages,
    };
    ctx.render(StatusCode::OK, &page)
}

async fn stage_pods(state: &AppState, d: &WorkOrderDetail, run: &StageRun) -> StagePods {
    let mut out = StagePods {
        position: run.position,
        name: run.name.clone(),
        target: String::new(),
        groups: Vec::new(),
        error: None,
        canary: run.canary.is_some(),
    };
    let found = async {
        let (target, client, deployment) = open_stage(state, d.order.id, run.position).await?;
        out.target = format!(
            "{}/{} in {}",
            target.namespace, target.deployment, target.cluster
        );
        let sets = client
            .replica_sets_of(&deployment)
            .await
            .map_err(|e| kube_error(&target.cluster, e))?;
        let picked = pods::pick_replica_sets(
            &sets,
            &target.container,
            &d.order.image,
            run.replaced_image.as_deref(),
        );
        let now = now_ms();
        for (role, rs) in picked {
            let found = client
                .pods(&target.namespace, &pods::pod_selector(&deployment, rs))
                .await
                .map_err(|e| kube_error(&target.cluster, e))?;
            out.groups.push(PodGroup {
                role: role.as_str(),
                revision: deployment::revision(&rs.metadata).unwrap_or_default(),
                image: pods::image_of(rs, &target.container),
                pods: found.iter().map(|pod| pods::pod_row(pod, now)).collect(),
            });
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = found {
        out.error = Some(e.to_string());
    }
    out
}

/// The stage's target, its cluster's client and the live Deployment.
async fn open_stage(
    state: &AppState,
    id: i64,
    position: i64,
) -> Result<(StageTarget, ClusterClient, Deployment)> {
    let target = work_orders::stage_target(&state.db.pool, id, position).await?;
    let (client, deployment) = stage_deployment(state, &target).await?;
    let deployment = deployment.ok_or_else(|| {
        Error::NotFound(format!(
            "Deployment {}/{} does not exist in cluster {}",
            target.namespace, target.deployment, target.cluster
        ))
    })?;
    Ok((target, client, deployment))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    container: String,
    tail: Option<String>,
}

#[derive(Template)]
#[template(path = "pod_logs.html")]
struct LogsPage {
    layout: Layout,
    order_id: i64,
    position: i64,
    pod: String,
    containers: Vec<String>,
    container: String,
    tail: i64,
    lines: String,
    stream_url: String,
}

const MAX_TAIL: i64 = 5000;

/// The pod, if it belongs to the stage's Deployment (404 otherwise: the
/// log view is not a window onto every pod of the namespace), and the path
/// of the order's node.
async fn stage_pod(
    ctx: &PageCtx,
    id: i64,
    position: i64,
    name: &str,
) -> Result<(StageTarget, ClusterClient, Pod, String)> {
    let node_path = visible_order(ctx, id).await?.order.node_path;
    let (target, client, deployment) = open_stage(&ctx.state, id, position).await?;
    let pod = client
        .pod(&target.namespace, name)
        .await
        .map_err(|e| kube_error(&target.cluster, e))?;
    let belongs = pod
        .as_ref()
        .is_some_and(|p| pods::belongs_to(p, &deployment));
    match pod {
        Some(pod) if belongs => Ok((target, client, pod, node_path)),
        _ => Err(Error::NotFound(format!(
            "no pod {name} in {}/{} of stage {position}",
            target.namespace, target.deployment
        ))),
    }
}

fn pick_container(pod: &Pod, asked: &str, default: &str) -> Result<(Vec<String>, String)> {
    pods::pick_container(pod, asked, default).map_err(|m| Error::validation("container", m))
}

fn parse_tail(raw: Option<&str>) -> Result<i64> {
    match raw.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(200),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_TAIL).contains(n))
            .ok_or_else(|| {
                Error::validation(
                    "tail",
                    format!("give a number of lines from 1 to {MAX_TAIL}"),
                )
            }),
    }
}

/// Where a log is read from: the stage pod's container and how many
/// lines, checked.
struct LogSource {
    target: StageTarget,
    client: ClusterClient,
    containers: Vec<String>,
    container: String,
    tail: i64,
    /// The order's node: the viewer must keep a role there.
    node_path: String,
}

async fn log_source(
    ctx: &PageCtx,
    id: i64,
    position: i64,
    name: &str,
    q: &LogQuery,
) -> Result<LogSource> {
    let tail = parse_tail(q.tail.as_deref())?;
    let (target, client, pod, node_path) = stage_pod(ctx, id, position, name).await?;
    let (containers, container) = pick_container(&pod, q.container.trim(), &target.container)?;
    Ok(LogSource {
        target,
        client,
        containers,
        container,
        tail,
        node_path,
    })
}

/// The last lines of a container's log.
async fn logs(
    ctx: PageCtx,
    Path((id, position, name)): Path<(i64, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let result = async {
        let LogSource {
            target,
            client,
            containers,
            container,
            tail,
            ..
        } = log_source(&ctx, id, position, &name, &q).await?;
        let lines = client
            .logs(&target.namespace, &name, &container, tail)
            .await
            .map_err(|e| kube_error(&target.cluster, e))?;
        Ok::<_, Error>(LogsPage {
            layout: ctx.layout(format!("Log of {name}"), "work-orders", None),
            order_id: id,
            position,
            stream_url: format!(
                "/work-orders/{id}/stages/{position}/pods/{name}/logs/stream?container={container}&tail={tail}"
            ),
            pod: name.clone(),
            containers,
            container,
            tail,
            lines,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// How often a followed log checks that its viewer may still read it: the
/// session is live, the account enabled, and a role on the order's node
/// held. Logging out, being disabled or losing the role ends the stream
/// within this time.
const FOLLOW_RECHECK: Duration = Duration::from_secs(5);

/// The longest a followed log stays open. The browser's EventSource then
/// reconnects, and the new request is authorised from scratch.
const FOLLOW_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The log as it is written, one server-sent event per line, for as long
/// as the viewer may read it (see [`FOLLOW_RECHECK`], [`FOLLOW_LIFETIME`]).
async fn follow_logs(
    ctx: PageCtx,
    Path((id, position, name)): Path<(i64, i64, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let result = async {
        let LogSource {
            target,
            client,
            container,
            tail,
            node_path,
            ..
        } = log_source(&ctx, id, position, &name, &q).await?;
        let reader = client
            .follow_logs(&target.namespace, &name, &container, tail)
            .await
            .map_err(|e: KubeError| kube_error(&target.cluster, e))?;
        Ok::<_, Error>((reader, node_path))
    }
    .await;
    match result {
        Ok((reader, node_path)) => {
            let events = reader.lines().map(|line| {
                Ok::<_, Infallible>(match line {
                    Ok(line) => Event::default().data(line),
                    Err(e) => Event::default().event("error").data(e.to_string()),
                })
            });
            let state = ctx.state.clone();
            let session_id = ctx.actor.session_id;
            let still_allowed = move || {
                let state = state.clone();
                let node_path = node_path.clone();
                async move { may_still_read(&state, session_id, &node_path).await }
            };
            Sse::new(guarded(
                events,
                FOLLOW_RECHECK,
                FOLLOW_LIFETIME,
                still_allowed,
            ))
            .keep_alive(KeepAlive::default())
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Whether session `session_id` is still live, its account enabled, and
/// allowed to view the node at `node_path`. Any failure answers no: a
/// stream that cannot be re-checked ends.
async fn may_still_read(state: &AppState, session_id: i64, node_path: &str) -> bool {
    match sessions::live_account(&state.db.pool, session_id).await {
        Ok(Some(found)) => {
            state
                .policy
                .refresh_to(&state.db, found.policy_version)
                .await
                .is_ok()
                && state.policy.may_view(&found.account, node_path)
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "re-checking a followed log failed; ending it");
            false
        }
    }
}

/// `events`, until `still_allowed` answers no (asked every `every`) or
/// `lifetime` has passed, whichever comes first. The checks come first:
/// a chatty stream does not starve them.
fn guarded<S, F, Fut>(
    events: S,
    every: Duration,
    lifetime: Duration,
    still_allowed: F,
) -> impl Stream<Item = S::Item>
where
    S: Stream + Unpin,
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    let deadline = start + lifetime;
    let mut ticks = tokio::time::interval_at(start + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(
        (events, still_allowed, ticks),
        move |(mut events, mut still_allowed, mut ticks)| async move {
            loop {
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(deadline) => return None,
                    _ = ticks.tick() => {
                        if !still_allowed().await {
                            return None;
                        }
                    }
                    item = events.next() => {
                        return item.map(|item| (item, (events, still_allowed, ticks)));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that yields `0, 1, 2, …` every second, forever.
    fn ticking() -> impl Stream<Item = u64> + Unpin {
        Box::pin(futures::stream::unfold(0_u64, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((n, n + 1))
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_guarded_stream_ends_at_the_first_refused_check() {
        let checks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = checks.clone();
        let started = tokio::time::Instant::now();
        let items: Vec<u64> = guarded(
            ticking(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            move || {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Allowed at the first two checks (5 s, 10 s), refused at 15 s.
                async move { n < 2 }
            },
        )
        .collect()
        .await;
        assert_eq!(checks.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        assert_eq!(items.len(), 14, "{items:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_guarded_stream_ends_at_its_lifetime_while_allowed() {
        let started = tokio::time::Instant::now();
        let items: Vec<u64> = guarded(
            ticking(),
            Duration::from_secs(5),
            Duration::from_secs(60),
            || async { true },
        )
        .collect()
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert_eq!(items.len(), 59, "{items:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_guarded_stream_ends_with_its_source() {
        let items: Vec<u32> = guarded(
            futures::stream::iter([1, 2, 3]),
            Duration::from_secs(5),
            Duration::from_secs(60),
            || async { true },
        )
        .collect()
        .await;
        assert_eq!(items, [1, 2, 3]);
    }

    #[test]
    fn tails_are_bounded() {
        assert_eq!(parse_tail(None).unwrap(), 200);
        assert_eq!(parse_tail(Some("50")).unwrap(), 50);
        assert!(parse_tail(Some("0")).is_err());
        assert!(parse_tail(Some("abc")).is_err());
        assert!(parse_tail(Some("999999")).is_err());
    }
}
