//! Work orders as pages and the API read them: the order row, its detail
//! (approvers, decisions, stage runs, timeline), the filtered keyset lists
//! scoped to what the reader may view, and the approvals inbox. Reads only;
//! every change goes through the state machine's shell in
//! `db::work_orders`. The read models carry typed states and statuses; the
//! API shapes its own JSON from them (`api::work_orders`).

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, FromRow, Row};

use super::Db;
use super::apps::Location;
use super::cache::VersionedCache;
use super::error::{Error, Result};
use super::tree::Scope;
use crate::config::DbKind;
use crate::domain::release_item::{Canary, Strategy};
use crate::domain::verify::VerifyPlan;
use crate::domain::work_order::{StageStatus, State};

/// A work order as lists and pages show it.
#[derive(Debug, Clone)]
pub struct WorkOrder {
    pub id: i64,
    pub release_item_id: i64,
    /// The release item's name.
    pub release_item: String,
    pub node_id: i64,
    pub node_path: String,
    /// The GitLab tag released.
    pub version: String,
    /// `image_repository:version`.
    pub image: String,
    pub title: String,
    pub description: String,
    pub state: State,
    pub creator_id: i64,
    pub creator: String,
    pub required_approvals: i64,
    /// Approvals recorded so far.
    pub approvals: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Filed as a hotfix, with this reason: it may deploy through a freeze
    /// once an owner of the frozen node lets it.
    pub hotfix_reason: Option<String>,
}

/// One approver's approval or rejection.
#[derive(Debug, Clone, Deserialize)]
pub struct Decision {
    pub account: String,
    /// `approved` or `rejected`.
    pub decision: String,
    pub comment: String,
    pub at: i64,
}

/// A stage of an order and how far it got.
#[derive(Debug, Clone)]
pub struct StageRun {
    pub position: i64,
    pub name: String,
    pub app_id: i64,
    pub app: String,
    pub cluster: String,
    /// Where the app's Deployment is (its cluster's id among them).
    pub location: Location,
    pub strategy: Strategy,
    pub canary: Option<Canary>,
    pub status: StageStatus,
    pub replaced_image: Option<String>,
    pub replaced_revision: Option<String>,
    pub new_revision: Option<String>,
    /// The revision a rollback brought back.
    pub restored_revision: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub message: String,
    /// While rolling back: the status the rollback started from.
    pub rollback_from: Option<StageStatus>,
    /// While paused: the canary step it waits at (1-based).
    pub paused_step: Option<u32>,
    /// Its verification plan, as filed.
    pub verify: Option<VerifyPlan>,
    /// When its verification started, when an owner signed it off, when
    /// a person last let it go on past an inconclusive gate (Unix ms).
    pub verify_started_at: Option<i64>,
    pub signed_off_at: Option<i64>,
    pub verify_continued_at: Option<i64>,
}

/// One measurement of a gate or one attempt of a smoke check.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifyResult {
    pub position: i64,
    /// The canary step it belongs to; 0 after the rollout.
    pub step: i64,
    /// `gate` or `smoke`.
    pub check_kind: String,
    /// Which gate or smoke check of the plan (0-based).
    pub check_index: i64,
    /// The measurement or attempt (1-based).
    pub seq: i64,
    pub at: i64,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// A gate: the sample furthest on the wrong side; a smoke check: the
    /// HTTP status.
    pub value: Option<f64>,
    pub detail: String,
    /// The filled query or URL (empty in results older than 0018).
    #[serde(default)]
    pub asked: String,
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, Deserialize)]
pub struct TimelineEvent {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    /// What happened, e.g. `filed`, `approval_recorded`, `approved`, `rejected`, `closed`.
    pub kind: String,
    pub message: String,
    pub stage_position: Option<i64>,
}

/// A work order with everything that happened to it.
#[derive(Debug, Clone)]
pub struct WorkOrderDetail {
    pub order: WorkOrder,
    /// The node whose owners approve, and who they are (creator included).
    /// [`detail`] leaves them empty: they come from the policy's cache
    /// (`flows::work_orders::detail`).
    pub approvers_node: Option<String>,
    pub approvers: Vec<String>,
    /// The release item rolls back a failed stage by itself.
    pub auto_rollback: bool,
    pub decisions: Vec<Decision>,
    pub stage_runs: Vec<StageRun>,
    pub timeline: Vec<TimelineEvent>,
    /// Every verification result, in the order taken.
    pub verify_results: Vec<VerifyResult>,
}

/// The columns of a [`WorkOrder`], read from [`FROM`] by [`from_row`].
pub(super) const COLUMNS: &str = "w.id, w.release_item_id, r.name AS release_item, w.node_id, n.path AS node_path, w.version, \
    w.image, w.title, w.description, w.state, w.creator_id, a.name AS creator, w.required_approvals, \
    w.approval_count AS approvals, \
    w.created_at, w.updated_at, w.hotfix_reason";
pub(super) const FROM: &str = "work_orders w JOIN release_items r ON r.id = w.release_item_id \
    JOIN nodes n ON n.id = w.node_id JOIN accounts a ON a.id = w.creator_id";

/// The names [`COLUMNS`] gives its columns, for reading them as JSON.
const ORDER_FIELDS: [&str; 17] = [
    "id",
    "release_item_id",
    "release_item",
    "node_id",
    "node_path",
    "version",
    "image",
    "title",
    "description",
    "state",
    "creator_id",
    "creator",
    "required_approvals",
    "approvals",
    "created_at",
    "updated_at",
    "hotfix_reason",
];

/// A work order as [`COLUMNS`] read it: from a row, or from an element
/// of a JSON list of [`ORDER_FIELDS`].
#[derive(Deserialize, sqlx::FromRow)]
struct WorkOrderRow {
    id: i64,
    release_item_id: i64,
    release_item: String,
    node_id: i64,
    node_path: String,
    version: String,
    image: String,
    title: String,
    description: String,
    state: String,
    creator_id: i64,
    creator: String,
    required_approvals: i64,
    approvals: i64,
    created_at: i64,
    updated_at: i64,
    #[serde(default)]
    hotfix_reason: Option<String>,
}

impl TryFrom<WorkOrderRow> for WorkOrder {
    type Error = sqlx::Error;

    fn try_from(r: WorkOrderRow) -> Result<Self, sqlx::Error> {
        Ok(WorkOrder {
            id: r.id,
            release_item_id: r.release_item_id,
            release_item: r.release_item,
            node_id: r.node_id,
            node_path: r.node_path,
            version: r.version,
            image: r.image,
            title: r.title,
            description: r.description,
            state: r.state.parse().map_err(decode)?,
            creator_id: r.creator_id,
            creator: r.creator,
            required_approvals: r.required_approvals,
            approvals: r.approvals,
            created_at: r.created_at,
            updated_at: r.updated_at,
            hotfix_reason: r.hotfix_reason,
        })
    }
}

fn decode(e: String) -> sqlx::Error {
    sqlx::Error::Decode(e.into())
}

pub(super) fn from_row(row: &AnyRow) -> Result<WorkOrder, sqlx::Error> {
    WorkOrderRow::from_row(row)?.try_into()
}

/// What a missing order answers; an order the reader may not see answers
/// the same, so ids cannot be probed.
pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("no work order with id {id}"))
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<WorkOrder> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

/// `fields` (JSON key, SQL expression) of the rows of `from`, ordered by
/// `order`, as one JSON array in a text column: a subquery for the select
/// list, so an order and its lists come back in one row.
fn json_rows(kind: DbKind, fields: &[(&str, &str)], from: &str, order: &str) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|(key, expr)| format!("'{key}', {expr}"))
        .collect();
    let pairs = pairs.join(", ");
    match kind {
        DbKind::Sqlite => {
            format!("(SELECT json_group_array(json_object({pairs}) ORDER BY {order}) FROM {from})")
        }
        DbKind::Postgres => format!(
            "(SELECT COALESCE(CAST(json_agg(json_build_object({pairs}) ORDER BY {order}) AS TEXT), '[]') FROM {from})"
        ),
    }
}

/// The statement [`detail`] runs, built once per backend.
fn detail_sql(kind: DbKind) -> &'static str {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<String> = OnceLock::new();
    let build = || {
        let decisions = json_rows(
            kind,
            &[
                ("account", "a.name"),
                ("decision", "ap.decision"),
                ("comment", "ap.comment"),
                ("at", "ap.at"),
            ],
            "approvals ap JOIN accounts a ON a.id = ap.account_id WHERE ap.work_order_id = w.id",
            "ap.at",
        );
        let stage_runs = json_rows(
            kind,
            &[
                ("position", "s.position"),
                ("name", "s.name"),
                ("app_id", "s.app_id"),
                ("app", "p.name"),
                ("cluster", "c.name"),
                ("cluster_id", "c.id"),
                ("namespace", "p.namespace"),
                ("deployment", "p.deployment"),
                ("container", "p.container"),
                ("strategy", "s.strategy"),
                ("canary_json", "s.canary_json"),
                ("status", "s.status"),
                ("replaced_image", "s.replaced_image"),
                ("replaced_revision", "s.replaced_revision"),
                ("new_revision", "s.new_revision"),
                ("restored_revision", "s.restored_revision"),
                ("started_at", "s.started_at"),
                ("finished_at", "s.finished_at"),
                ("message", "s.message"),
                ("rollback_from", "s.rollback_from"),
                ("paused_step", "s.paused_step"),
                ("verify_json", "s.verify_json"),
                ("verify_started_at", "s.verify_started_at"),
                ("signed_off_at", "s.signed_off_at"),
                ("verify_continued_at", "s.verify_continued_at"),
            ],
            "stage_runs s JOIN apps p ON p.id = s.app_id JOIN clusters c ON c.id = p.cluster_id \
             WHERE s.work_order_id = w.id",
            "s.position",
        );
        let timeline = json_rows(
            kind,
            &[
                ("id", "e.id"),
                ("at", "e.at"),
                ("actor", "e.actor"),
                ("kind", "e.kind"),
                ("message", "e.message"),
                ("stage_position", "e.stage_position"),
            ],
            "timeline_events e WHERE e.work_order_id = w.id",
            "e.id",
        );
        let verify_results = json_rows(
            kind,
            &[
                ("position", "v.position"),
                ("step", "v.step"),
                ("check_kind", "v.source"),
                ("check_index", "v.source_index"),
                ("seq", "v.seq"),
                ("at", "v.at"),
                ("verdict", "v.verdict"),
                ("value", "v.value"),
                ("detail", "v.detail"),
                ("asked", "v.asked"),
            ],
            "verify_results v WHERE v.work_order_id = w.id",
            "v.id",
        );
        format!(
            "SELECT {COLUMNS}, r.auto_rollback, {decisions} AS decisions, {stage_runs} AS stage_runs, \
             {timeline} AS timeline, {verify_results} AS verify_results FROM {FROM} WHERE w.id = $1"
        )
    };
    match kind {
        DbKind::Sqlite => SQLITE.get_or_init(build),
        DbKind::Postgres => POSTGRES.get_or_init(build),
    }
}

/// A stage run as [`detail_sql`] returns it.
#[derive(Deserialize)]
struct StageRunRow {
    position: i64,
    name: String,
    app_id: i64,
    app: String,
    cluster: String,
    cluster_id: i64,
    namespace: String,
    deployment: String,
    container: String,
    strategy: String,
    canary_json: Option<String>,
    status: String,
    replaced_image: Option<String>,
    replaced_revision: Option<String>,
    new_revision: Option<String>,
    restored_revision: Option<String>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    message: String,
    rollback_from: Option<String>,
    paused_step: Option<i64>,
    verify_json: Option<String>,
    verify_started_at: Option<i64>,
    signed_off_at: Option<i64>,
    verify_continued_at: Option<i64>,
}

impl TryFrom<StageRunRow> for StageRun {
    type Error = sqlx::Error;

    fn try_from(r: StageRunRow) -> Result<Self, sqlx::Error> {
        Ok(StageRun {
            position: r.position,
            name: r.name,
            app_id: r.app_id,
            app: r.app,
            cluster: r.cluster,
            location: Location {
                cluster_id: r.cluster_id,
                namespace: r.namespace,
                deployment: r.deployment,
                container: r.container,
            },
            strategy: r.strategy.parse().map_err(decode)?,
            canary: r.canary_json.and_then(|c| serde_json::from_str(&c).ok()),
            status: r.status.parse().map_err(decode)?,
            replaced_image: r.replaced_image,
            replaced_revision: r.replaced_revision,
            new_revision: r.new_revision,
            restored_revision: r.restored_revision,
            started_at: r.started_at,
            finished_at: r.finished_at,
            message: r.message,
            rollback_from: r
                .rollback_from
                .map(|s| s.parse())
                .transpose()
                .map_err(decode)?,
            paused_step: r.paused_step.map(|s| s as u32),
            verify: super::release_items::verify_plan(r.verify_json)?,
            verify_started_at: r.verify_started_at,
            signed_off_at: r.signed_off_at,
            verify_continued_at: r.verify_continued_at,
        })
    }
}

/// Decodes one JSON list column of [`detail_sql`].
fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| decode(format!("{column}: {e}")))
}

/// An order with its decisions, stage runs and timeline, in one query.
/// The approvers are left to the caller (see [`WorkOrderDetail`]).
pub async fn detail(db: &Db, id: i64) -> Result<WorkOrderDetail> {
    let row = sqlx::query(detail_sql(db.kind))
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(|| not_found(id))?;
    let stage_runs: Vec<StageRunRow> = json_column(&row, "stage_runs")?;
    Ok(WorkOrderDetail {
        order: from_row(&row)?,
        approvers_node: None,
        approvers: Vec::new(),
        auto_rollback: row.try_get::<i64, _>("auto_rollback")? != 0,
        decisions: json_column(&row, "decisions")?,
        stage_runs: stage_runs
            .into_iter()
            .map(StageRun::try_from)
            .collect::<Result<_, _>>()?,
        timeline: json_column(&row, "timeline")?,
        verify_results: json_column(&row, "verify_results")?,
    })
}

/// A page of a list of orders, newest first, and whether more follow.
pub type OrderPage = (Vec<WorkOrder>, bool);

/// Order details kept at most (a few kB each).
const MAX_DETAILS: usize = 1024;
/// List pages kept at most (up to 200 orders each).
const MAX_LISTS: usize = 256;

/// Orders as read under one `board_state` version (migration 0013):
/// details by id, list pages by the filter, scope and size that asked.
/// Who may see them is checked on every request, after the cache.
pub struct OrderReads {
    details: VersionedCache<i64, Arc<WorkOrderDetail>>,
    lists: VersionedCache<String, Arc<OrderPage>>,
}

impl Default for OrderReads {
    fn default() -> Self {
        Self {
            details: VersionedCache::new(MAX_DETAILS),
            lists: VersionedCache::new(MAX_LISTS),
        }
    }
}

impl OrderReads {
    /// [`detail`], served from the cache while `version` (read with the
    /// caller's session or token, before this) holds; `None` reads the
    /// database and keeps nothing (for a caller that may have changed the
    /// order since it read its version).
    pub async fn detail(
        &self,
        db: &Db,
        version: Option<i64>,
        id: i64,
    ) -> Result<Arc<WorkOrderDetail>> {
        let Some(version) = version else {
            return Ok(Arc::new(detail(db, id).await?));
        };
        self.details
            .get_or_load(version, &id, || async {
                Ok(Arc::new(detail(db, id).await?))
            })
            .await
    }

    /// [`list`], served from the cache while `version` holds.
    pub async fn list(
        &self,
        db: &Db,
        version: i64,
        filter: &Filter,
        scope: &Scope,
        limit: i64,
    ) -> Result<Arc<OrderPage>> {
        let key = format!("{filter:?}\u{0}{}\u{0}{limit}", scope.cache_key());
        self.lists
            .get_or_load(version, key.as_str(), || async {
                Ok(Arc::new(list(db, filter, scope, limit).await?))
            })
            .await
    }
}

/// List filters; all optional.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub state: Option<State>,
    /// Orders of these release items (any, when empty).
    pub items: Vec<i64>,
    /// A node path: orders of items at or below it.
    pub node: Option<String>,
    pub creator: Option<i64>,
    /// Only orders waiting for this account's approval: the account and
    /// the nodes where it approves (`Policy::approver_nodes`).
    pub awaiting: Option<(i64, std::sync::Arc<Vec<i64>>)>,
    /// Only orders with an id below this (keyset pages, newest first).
    pub before_id: Option<i64>,
    /// Search: orders whose version, release item name or a word of whose
    /// title starts with this, ignoring case.
    pub search: Option<String>,
}

/// Longest search accepted, in characters.
pub const MAX_SEARCH_LEN: usize = 100;

/// `prefix` as a LIKE pattern matching what starts with it, its `%`, `_`
/// and `\` escaped (the statement says `ESCAPE '\'`), lowercased.
pub(super) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Node ids as an SQL list of integer literals. They come from the
/// database, never from a request, and an `i64` prints only digits; as
/// literals, a statement holding them has no parameters to plan for, so
/// PostgreSQL plans it once per connection instead of on every request
/// (an `IN` list of bound parameters is planned again each time, for
/// milliseconds, whenever its generic plan looks costlier).
fn id_list(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    ids.join(", ")
}

/// The one definition of "waiting for my approval": an order waiting for
/// approval on a node where I approve, filed by someone else, on which I
/// have not decided yet. `me` is a placeholder (`$n`) bound by the caller
/// to the account id; `nodes` the ids of its approver nodes
/// (`db::approvers::approver_nodes`).
fn awaiting_predicate(me: &str, nodes: &[i64]) -> String {
    format!(
        "w.state = '{pending}' AND w.creator_id <> {me} AND w.node_id IN ({nodes}) \
         AND NOT EXISTS (SELECT 1 FROM approvals ap WHERE ap.work_order_id = w.id AND ap.account_id = {me})",
        pending = State::PendingApproval.as_str(),
        nodes = id_list(nodes),
    )
}

/// How a list applies a reader's scope.
enum ScopePlan {
    Everything,
    Nothing,
    /// Few visible orders: `node_id IN (…)` drives the node index, then at
    /// most [`SPARSE_ORDERS`] rows are sorted.
    FewOrders(Vec<i64>),
    /// Many visible orders: the newest-first scan keeps the rows of these
    /// nodes (`+node_id IN (…)`: the unary plus keeps SQLite from driving
    /// the node index and sorting them all) and stops at the page's end.
    ManyOrders(Vec<i64>),
    /// More nodes than a statement should list: the newest-first scan
    /// keeps the rows whose node path lies in the scope.
    ManyNodes,
}

/// Below this many orders in the reader's nodes, their list is read
/// through the node index and sorted; from it on, by the newest-first scan.
const SPARSE_ORDERS: i64 = 2000;

/// Most visible nodes listed in a statement (bind limits, statement size).
const MAX_LISTED_NODES: usize = 500;

/// Picks the way to apply `scope`. On SQLite neither way is good for
/// every reader (measured at 100k orders, docs/benchmarks.md): the
/// newest-first scan reads every order when the reader's nodes hold none,
/// and the node index sorts every visible order when they hold many. A
/// count bounded by [`SPARSE_ORDERS`] tells them apart for well under a
/// millisecond.
async fn scope_plan(db: &Db, scope: &Scope) -> Result<ScopePlan> {
    let Scope::Under(subtrees) = scope else {
        return Ok(ScopePlan::Everything);
    };
    let ids = &subtrees.nodes;
    if ids.is_empty() {
        return Ok(ScopePlan::Nothing);
    }
    if ids.len() > MAX_LISTED_NODES {
        return Ok(ScopePlan::ManyNodes);
    }
    // PostgreSQL plans an id list from its statistics of `node_id` and
    // picks the right way by itself; SQLite needs to be told, except for
    // one node, whose equality reads its index newest first whatever the
    // count.
    if db.kind == DbKind::Postgres || ids.len() == 1 {
        return Ok(ScopePlan::FewOrders(ids.clone()));
    }
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM work_orders WHERE node_id IN ({}) LIMIT {SPARSE_ORDERS}) t",
        id_list(ids)
    );
    if sqlx::query_scalar::<_, i64>(&sql)
        .fetch_one(&db.pool)
        .await?
        < SPARSE_ORDERS
    {
        Ok(ScopePlan::FewOrders(ids.clone()))
    } else {
        Ok(ScopePlan::ManyOrders(ids.clone()))
    }
}

/// A page of the orders in `scope`, newest first, and whether more follow.
/// Only the filters given become predicates, so each can use its index;
/// the scope is applied in the query (see [`scope_plan`]), so a page holds
/// `limit` rows the reader may see whenever that many exist.
pub async fn list(
    db: &Db,
    filter: &Filter,
    scope: &Scope,
    limit: i64,
) -> Result<(Vec<WorkOrder>, bool)> {
    let pool = &db.pool;
    enum Arg {
        Int(i64),
        Text(String),
    }
    let mut predicates: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let next = |args: &mut Vec<Arg>, arg: Arg| {
        args.push(arg);
        format!("${}", args.len())
    };
    if let Some(state) = filter.state {
        let p = next(&mut args, Arg::Text(state.as_str().into()));
        predicates.push(format!("w.state = {p}"));
    }
    match filter.items.as_slice() {
        [] => {}
        // One item is an equality, so its (item, state, id) or (item, id)
        // index yields the page newest first without a sort.
        [one] => {
            let p = next(&mut args, Arg::Int(*one));
            predicates.push(format!("w.release_item_id = {p}"));
        }
        many => {
            let ps: Vec<String> = many.iter().map(|i| next(&mut args, Arg::Int(*i))).collect();
            predicates.push(format!("w.release_item_id IN ({})", ps.join(", ")));
        }
    }
    if let Some(node) = &filter.node {
        // A leaf node is a plain equality on (node_id, id); a subtree is an
        // IN list of the nodes below.
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM nodes WHERE path = $1 OR path LIKE $2 ESCAPE '\\'")
                .bind(node)
                .bind(like_prefix(&format!("{node}/")))
                .fetch_all(pool)
                .await?;
        match ids.as_slice() {
            [] => return Ok((Vec::new(), false)),
            [one] => {
                let p = next(&mut args, Arg::Int(*one));
                predicates.push(format!("w.node_id = {p}"));
            }
            many => predicates.push(format!("w.node_id IN ({})", id_list(many))),
        }
    }
    if let Some(creator) = filter.creator {
        let p = next(&mut args, Arg::Int(creator));
        predicates.push(format!("w.creator_id = {p}"));
    }
    if let Some((me, nodes)) = &filter.awaiting {
        if nodes.is_empty() {
            return Ok((Vec::new(), false));
        }
        let me_p = next(&mut args, Arg::Int(*me));
        predicates.push(awaiting_predicate(&me_p, nodes));
    }
    if let Some(before) = filter.before_id {
        let p = next(&mut args, Arg::Int(before));
        predicates.push(format!("w.id < {p}"));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let starts = next(&mut args, Arg::Text(like_prefix(search)));
        let word = next(&mut args, Arg::Text(format!("% {}", like_prefix(search))));
        predicates.push(format!(
            "(lower(w.version) LIKE {starts} ESCAPE '\\' \
              OR lower(w.title) LIKE {starts} ESCAPE '\\' OR lower(w.title) LIKE {word} ESCAPE '\\' \
              OR w.release_item_id IN (SELECT ri.id FROM release_items ri WHERE lower(ri.name) LIKE {starts} ESCAPE '\\'))"
        ));
    }
    let mut nodes_join = "";
    match scope_plan(db, scope).await? {
        ScopePlan::Everything => {}
        ScopePlan::Nothing => return Ok((Vec::new(), false)),
        // One node is an equality, so its (node_id, id) index yields the
        // page newest first without a sort.
        ScopePlan::FewOrders(ids) => predicates.push(match ids.as_slice() {
            [one] => format!("w.node_id = {one}"),
            many => format!("w.node_id IN ({})", id_list(many)),
        }),
        ScopePlan::ManyOrders(ids) => {
            predicates.push(format!("+w.node_id IN ({})", id_list(&ids)));
        }
        ScopePlan::ManyNodes => {
            if let Some((p, roots)) = scope.predicate("n.path", args.len() + 1) {
                predicates.push(p);
                args.extend(roots.into_iter().map(Arg::Text));
                nodes_join = " JOIN nodes n ON n.id = w.node_id";
            }
        }
    }
    // The page's ids first, their names and counts after: a plan that has
    // to sort (an inbox, a filter the planner misjudges) sorts ids, and
    // only the page's rows are joined. The limit is a literal: planned
    // with a parameter, PostgreSQL's generic plan guesses a tenth of the
    // table.
    let ids = format!(
        "SELECT w.id FROM work_orders w{nodes_join} {} ORDER BY w.id DESC LIMIT {}",
        if predicates.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", predicates.join(" AND "))
        },
        limit + 1
    );
    let page = format!("SELECT {COLUMNS} FROM {FROM} WHERE w.id IN ({ids})");
    // The page as one JSON array in one row: a row costs more on its way
    // through the driver than its columns cost to encode.
    let fields: Vec<(&str, &str)> = ORDER_FIELDS.iter().map(|f| (*f, *f)).collect();
    let sql = format!(
        "SELECT {}",
        json_rows(db.kind, &fields, &format!("({page}) t"), "id DESC")
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
        };
    }
    let rows: Vec<WorkOrderRow> = serde_json::from_str(&query.fetch_one(pool).await?)
        .map_err(|e| decode(format!("work order list: {e}")))?;
    let mut orders: Vec<WorkOrder> = rows
        .into_iter()
        .map(WorkOrder::try_from)
        .collect::<Result<_, _>>()?;
    let more = orders.len() as i64 > limit;
    orders.truncate(limit as usize);
    Ok((orders, more))
}

/// How many orders wait for this account's approval (the header badge):
/// the same predicate as the inbox list.
pub async fn awaiting_count(pool: &AnyPool, account_id: i64, nodes: &[i64]) -> Result<i64> {
    if nodes.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "SELECT COUNT(*) FROM work_orders w WHERE {}",
        awaiting_predicate("$1", nodes)
    );
    Ok(sqlx::query_scalar::<_, i64>(&sql)
        .bind(account_id)
        .fetch_one(pool)
        .await?)
}

/// The last order that touched a stage: its id, version, state and how
/// far that stage got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTouch {
    pub order_id: i64,
    pub version: String,
    pub state: State,
    pub stage_status: StageStatus,
}

/// An order waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub order_id: i64,
    pub version: String,
}

/// For items `item_ids` (read from the database, printed as literals):
/// the last order of each item that did something on each of its stages'
/// apps, keyed by (item, app), and each item's order waiting for approval.
pub async fn stage_history(
    pool: &AnyPool,
    item_ids: &[i64],
) -> Result<(
    std::collections::HashMap<(i64, i64), StageTouch>,
    std::collections::HashMap<i64, Waiting>,
)> {
    let mut touched = std::collections::HashMap::new();
    let mut waiting = std::collections::HashMap::new();
    if item_ids.is_empty() {
        return Ok((touched, waiting));
    }
    let items = id_list(item_ids);
    // Each stage's head (kept by triggers: the newest order whose run on
    // that app left `pending`), then that order's row and run.
    let rows = sqlx::query(&format!(
        "SELECT h.release_item_id, h.app_id, w.id, w.version, w.state, s.status \
         FROM stage_heads h JOIN work_orders w ON w.id = h.work_order_id \
         JOIN stage_runs s ON s.work_order_id = w.id AND s.app_id = h.app_id \
         WHERE h.release_item_id IN ({items})"
    ))
    .fetch_all(pool)
    .await?;
    for row in rows {
        let state: String = row.try_get("state")?;
        let status: String = row.try_get("status")?;
        touched.insert(
            (row.try_get("release_item_id")?, row.try_get("app_id")?),
            StageTouch {
                order_id: row.try_get("id")?,
                version: row.try_get("version")?,
                state: state
                    .parse()
                    .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?,
                stage_status: status
                    .parse()
                    .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?,
            },
        );
    }
    let rows = sqlx::query(&format!(
        "SELECT id, release_item_id, version FROM work_orders \
         WHERE state = 'pending_approval' AND release_item_id IN ({items})"
    ))
    .fetch_all(pool)
    .await?;
    for row in rows {
        waiting.insert(
            row.try_get("release_item_id")?,
            Waiting {
                order_id: row.try_get("id")?,
                version: row.try_get("version")?,
            },
        );
    }
    Ok((touched, waiting))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_a_prefix_with_like_wildcards_escaped() {
        assert_eq!(like_prefix("Car"), "car%");
        assert_eq!(like_prefix("50%_off\\"), "50\\%\\_off\\\\%");
    }

    #[test]
    fn the_json_list_reads_every_column_under_its_own_name() {
        let columns: Vec<&str> = COLUMNS.split(", ").collect();
        // The approvals count is a subquery with commas of its own.
        let names: Vec<&str> = columns
            .iter()
            .filter_map(|c| {
                c.rsplit_once(" AS ")
                    .map(|(_, alias)| alias)
                    .or_else(|| c.strip_prefix("w."))
            })
            .filter(|name| !name.contains(' '))
            .collect();
        assert_eq!(names, ORDER_FIELDS.to_vec());
    }

    #[test]
    fn the_inbox_and_its_badge_share_one_predicate() {
        let p = awaiting_predicate("$1", &[2, 3]);
        assert!(p.starts_with("w.state = 'pending_approval' AND w.creator_id <> $1"));
        assert!(p.contains("w.node_id IN (2, 3)"));
        assert!(p.contains("ap.account_id = $1)"));
    }
}
