//! The service tree: nodes with materialised paths and their members.
//! Every membership change bumps the policy version in the same transaction
//! so every server replica reloads its enforcer before the next decision.

use std::sync::Arc;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::accounts::{self, Account, AccountKind};
use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::{Db, Tx, now_ms};
use crate::domain::tree::{self as rules, Membership, Role};

/// A node of the service tree.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Node {
    pub id: i64,
    pub parent_id: Option<i64>,
    /// Slug, unique among siblings.
    pub name: String,
    pub title: String,
    /// Materialised path, e.g. `/acme/payments/checkout-api`.
    pub path: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Node {
    /// Where the node's parent sits (`/` for a root): deletion is decided there.
    pub fn parent_path(&self) -> &str {
        rules::parent_path(&self.path)
    }

    /// How deep the node sits (a root is 0).
    pub fn depth(&self) -> usize {
        self.path.matches('/').count().saturating_sub(1)
    }
}

/// A direct member of a node.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    pub node_id: i64,
    pub account_id: i64,
    pub account: String,
    pub display_name: String,
    pub kind: AccountKind,
    #[schema(value_type = String, example = "owner")]
    #[serde(serialize_with = "serialize_role")]
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
    /// The single sign-on group this role comes from (set at each of the
    /// person's sign-ins); `null` when it was given by hand.
    pub sso_group: Option<String>,
}

fn serialize_role<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

const NODE_COLUMNS: &str = "n.id, n.parent_id, n.name, n.title, n.path, n.created_at, n.updated_at";

fn node_from_row(row: &AnyRow) -> Result<Node, sqlx::Error> {
    Ok(Node {
        id: row.try_get("id")?,
        parent_id: row.try_get("parent_id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        path: row.try_get("path")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn parse_role(raw: &str) -> Result<Role, sqlx::Error> {
    raw.parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

/// Bumps the policy version; call inside the transaction that changed a
/// membership or an admin flag.
pub async fn bump_policy_version(tx: &mut Tx) -> Result<()> {
    sqlx::query("UPDATE policy_state SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The current policy version.
pub async fn policy_version(pool: &AnyPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT version FROM policy_state WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

/// What a missing node answers; a node the reader may not see answers the
/// same, so ids cannot be probed.
pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("no tree node with id {id}"))
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<Node> {
    let row = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes n WHERE n.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref()
        .map(node_from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

pub async fn find_by_path(pool: &AnyPool, path: &str) -> Result<Option<Node>> {
    let row = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes n WHERE n.path = $1"
    ))
    .bind(path)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(node_from_row).transpose()?)
}

/// The part of the tree a reader may see: all of it, or the subtrees
/// below the nodes where they hold a role (`Policy::read_scope` decides
/// which, and caches it per grant version). Lists apply it in SQL, so a
/// page of a list is a page of rows the reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every node (admins, and anyone whose roles cover the whole tree).
    All,
    Under(Arc<Subtrees>),
}

/// Subtrees of the tree: their roots and every node in them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subtrees {
    /// Paths of the subtrees' top nodes, none below another.
    pub roots: Vec<String>,
    /// Ids of every node at or below a root.
    pub nodes: Vec<i64>,
}

impl Scope {
    /// Nothing at all (no role anywhere, or a disabled account).
    pub fn nothing() -> Self {
        Scope::Under(Arc::new(Subtrees::default()))
    }

    /// What tells this scope from another in a cache key: its roots (and
    /// how many nodes lie under them, should a node be added since).
    pub fn cache_key(&self) -> String {
        match self {
            Scope::All => "*".to_string(),
            Scope::Under(subtrees) => {
                format!("{}\n{}", subtrees.nodes.len(), subtrees.roots.join("\n"))
            }
        }
    }

    /// Whether node `id` is in the scope.
    pub fn covers_node(&self, id: i64) -> bool {
        match self {
            Scope::All => true,
            Scope::Under(s) => s.nodes.binary_search(&id).is_ok(),
        }
    }

    /// A SQL predicate keeping the rows whose node path (`column`) lies in
    /// the scope, with its parameters numbered from `$first`; `None` when
    /// everything is visible. The test is `domain::tree::path_covers`
    /// written in portable SQL: the path itself, or a path that starts with
    /// it followed by `/` (so `/a/b` covers `/a/b/c` and not `/a/bc`).
    pub fn predicate(&self, column: &str, first: usize) -> Option<(String, Vec<String>)> {
        let Scope::Under(subtrees) = self else {
            return None;
        };
        Some(paths_predicate(&subtrees.roots, column, first))
    }
}

/// The SQL test "`column` is at or below one of `roots`" (see
/// [`Scope::predicate`]).
fn paths_predicate(roots: &[String], column: &str, first: usize) -> (String, Vec<String>) {
    if roots.is_empty() {
        return ("1 = 0".into(), Vec::new());
    }
    let terms: Vec<String> = (first..first + roots.len())
        .map(|i| format!("{column} = ${i} OR substr({column}, 1, length(${i}) + 1) = ${i} || '/'"))
        .collect();
    (format!("({})", terms.join(" OR ")), roots.to_vec())
}

/// The subtrees below `roots` (paths, none below another), and whether
/// they hold every node of the tree.
pub async fn subtrees(pool: &AnyPool, roots: Vec<String>) -> Result<(Subtrees, bool)> {
    let (p, args) = paths_predicate(&roots, "n.path", 1);
    let sql = format!(
        "SELECT n.id, (SELECT COUNT(*) FROM nodes) AS total FROM nodes n WHERE {p} ORDER BY n.id"
    );
    let mut query = sqlx::query_as::<_, (i64, i64)>(&sql);
    for arg in args {
        query = query.bind(arg);
    }
    let rows = query.fetch_all(pool).await?;
    let everything = rows
        .first()
        .is_some_and(|(_, total)| *total == rows.len() as i64);
    let nodes = rows.into_iter().map(|(id, _)| id).collect();
    Ok((Subtrees { roots, nodes }, everything))
}

/// The nodes in `scope`, ordered by path, so a parent comes before its
/// children.
pub async fn list_all(pool: &AnyPool, scope: &Scope) -> Result<Vec<Node>> {
    let (filter, args) = match scope.predicate("n.path", 1) {
        Some((p, args)) => (format!("WHERE {p}"), args),
        None => (String::new(), Vec::new()),
    };
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes n {filter} ORDER BY n.path");
    let mut query = sqlx::query(&sql);
    for arg in args {
        query = query.bind(arg);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows.iter().map(node_from_row).collect::<Result<_, _>>()?)
}

/// The direct children of a node (roots when `parent_id` is `None`).
pub async fn children(pool: &AnyPool, parent_id: Option<i64>) -> Result<Vec<Node>> {
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes n \
         WHERE ($1 IS NULL AND n.parent_id IS NULL) OR n.parent_id = $1 ORDER BY n.name"
    ))
    .bind(parent_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(node_from_row).collect::<Result<_, _>>()?)
}

/// The ancestors of a node from the root down, the node itself excluded.
pub async fn ancestors(pool: &AnyPool, node: &Node) -> Result<Vec<Node>> {
    let mut chain = rules::ancestor_chain(&node.path);
    chain.pop();
    let mut out = Vec::with_capacity(chain.len());
    for path in chain {
        if let Some(n) = find_by_path(pool, &path).await? {
            out.push(n);
        }
    }
    Ok(out)
}

/// Creates a node under `parent_id` (a root when `None`).
pub async fn create(
    db: &Db,
    parent_id: Option<i64>,
    name: &str,
    title: &str,
    who: &AuditActor,
) -> Result<Node> {
    rules::validate_name(name).map_err(|m| Error::validation("name", m))?;
    let title = title.trim();
    rules::validate_title(title).map_err(|m| Error::validation("title", m))?;
    let parent = match parent_id {
        Some(id) => Some(get(&db.pool, id).await.map_err(|_| {
            Error::validation("parent_id", format!("parent node {id} does not exist"))
        })?),
        None => None,
    };
    let path = rules::child_path(parent.as_ref().map(|p| p.path.as_str()), name);
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO nodes (parent_id, name, title, path, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(parent_id)
    .bind(name)
    .bind(title)
    .bind(&path)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if violated(&e) == Some(Constraint::NodePath) {
            Error::Conflict(format!("a node named '{name}' already exists at {path}"))
        } else {
            e.into()
        }
    })?;
    let node = Node {
        id,
        parent_id,
        name: name.to_string(),
        title: title.to_string(),
        path,
        created_at: now,
        updated_at: now,
    };
    // A new node inherits approvers: cached approver sets must be redone.
    bump_policy_version(&mut tx).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "node.create",
            target_type: "node",
            target_id: Some(id),
            summary: format!("created {}", node.path),
            before: None,
            after: snapshot(&node),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(node)
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<Node> {
    let row = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS} FROM nodes n WHERE n.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(node_from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

/// Changes a node's title.
pub async fn update_title(db: &Db, id: i64, title: &str, who: &AuditActor) -> Result<Node> {
    let title = title.trim();
    rules::validate_title(title).map_err(|m| Error::validation("title", m))?;
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    sqlx::query("UPDATE nodes SET title = $1, updated_at = $2 WHERE id = $3")
        .bind(title)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "node.update",
            target_type: "node",
            target_id: Some(id),
            summary: format!("retitled {} to '{}'", after.path, after.title),
            before: snapshot(&before),
            after: snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a node that has nothing hanging below it; otherwise a 409 that
/// names what is left. Its memberships go with it.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<Node> {
    let mut tx = db.begin_write().await?;
    let node = get_in(&mut tx, id).await?;
    let children: Vec<String> =
        sqlx::query_scalar("SELECT name FROM nodes WHERE parent_id = $1 ORDER BY name LIMIT 6")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if !children.is_empty() {
        return Err(Error::Conflict(format!(
            "{} still has child nodes: {}; delete or move them first",
            node.path,
            super::name_list(&children)
        )));
    }
    let apps: Vec<String> =
        sqlx::query_scalar("SELECT name FROM apps WHERE node_id = $1 ORDER BY name LIMIT 6")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if !apps.is_empty() {
        return Err(Error::Conflict(format!(
            "{} still has apps: {}; move or remove them first",
            node.path,
            super::name_list(&apps)
        )));
    }
    let items: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM release_items WHERE node_id = $1 ORDER BY name LIMIT 6",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    if !items.is_empty() {
        return Err(Error::Conflict(format!(
            "{} still has release items: {}; delete them first",
            node.path,
            super::name_list(&items)
        )));
    }
    sqlx::query("DELETE FROM node_members WHERE node_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    bump_policy_version(&mut tx).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "node.delete",
            target_type: "node",
            target_id: Some(id),
            summary: format!("deleted {}", node.path),
            before: snapshot(&node),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(node)
}

const MEMBER_COLUMNS: &str = "m.node_id, m.account_id, a.name AS account, a.display_name, a.kind, \
                              m.role, a.disabled_at, m.created_at, m.sso_group";

fn member_from_row(row: &AnyRow) -> Result<Member, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let role: String = row.try_get("role")?;
    Ok(Member {
        node_id: row.try_get("node_id")?,
        account_id: row.try_get("account_id")?,
        account: row.try_get("account")?,
        display_name: row.try_get("display_name")?,
        kind: if kind == "service" {
            AccountKind::ServiceAccount
        } else {
            AccountKind::User
        },
        role: parse_role(&role)?,
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        created_at: row.try_get("created_at")?,
        sso_group: row.try_get("sso_group")?,
    })
}

/// The direct members of a node, owners first.
pub async fn members(pool: &AnyPool, node_id: i64) -> Result<Vec<Member>> {
    let rows = sqlx::query(&format!(
        "SELECT {MEMBER_COLUMNS} FROM node_members m JOIN accounts a ON a.id = m.account_id \
         WHERE m.node_id = $1 \
         ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'engineer' THEN 1 ELSE 2 END, a.name"
    ))
    .bind(node_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
}

/// The memberships of every node on the chain from the root to `path`,
/// by account name, as the pure tree rules take them. Disabled accounts
/// hold no role.
pub async fn memberships_on_chain(pool: &AnyPool, path: &str) -> Result<Vec<Membership<String>>> {
    let mut out = Vec::new();
    for node_path in rules::ancestor_chain(path) {
        let rows = sqlx::query(
            "SELECT a.name, m.role FROM node_members m JOIN nodes n ON n.id = m.node_id \
             JOIN accounts a ON a.id = m.account_id \
             WHERE n.path = $1 AND a.disabled_at IS NULL",
        )
        .bind(&node_path)
        .fetch_all(pool)
        .await?;
        for row in rows {
            let role: String = row.try_get("role")?;
            out.push(Membership {
                account: row.try_get("name")?,
                path: node_path.clone(),
                role: parse_role(&role)?,
            });
        }
    }
    Ok(out)
}

/// Every membership of every node (the policy enforcer's grouping rules).
pub async fn all_memberships(pool: &AnyPool) -> Result<Vec<Membership<i64>>> {
    let rows = sqlx::query(
        "SELECT m.account_id, n.path, m.role FROM node_members m JOIN nodes n ON n.id = m.node_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get("role")?;
            Ok(Membership {
                account: row.try_get("account_id")?,
                path: row.try_get("path")?,
                role: parse_role(&role)?,
            })
        })
        .collect()
}

/// The nodes an account is a direct member of, with its role there.
pub async fn memberships_of(pool: &AnyPool, account_id: i64) -> Result<Vec<(Node, Role)>> {
    let rows = sqlx::query(&format!(
        "SELECT {NODE_COLUMNS}, m.role FROM node_members m JOIN nodes n ON n.id = m.node_id \
         WHERE m.account_id = $1 ORDER BY n.path"
    ))
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get("role")?;
            Ok((node_from_row(row)?, parse_role(&role)?))
        })
        .collect()
}

/// IDs of every admin account (the enforcer's global grants).
pub async fn admin_ids(pool: &AnyPool) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM accounts WHERE is_admin = 1")
            .fetch_all(pool)
            .await?,
    )
}

/// Adds an account to a node or changes its role there. Returns the member
/// and whether it was new.
pub async fn put_member(
    db: &Db,
    node_id: i64,
    account_name: &str,
    role: Role,
    who: &AuditActor,
) -> Result<(Member, bool)> {
    let node = get(&db.pool, node_id).await?;
    let account: Account = accounts::find_by_name(&db.pool, account_name)
        .await?
        .ok_or_else(|| {
            Error::validation(
                "account",
                format!("no user or service account named '{account_name}'"),
            )
        })?;
    let mut tx = db.begin_write().await?;
    let put = put_member_in(&mut tx, &node, &account, role, who).await?;
    tx.commit().await?;
    Ok(put)
}

/// [`put_member`] inside the caller's transaction, for changes that write
/// a membership together with something else (a new service account and
/// its binding).
pub(crate) async fn put_member_in(
    tx: &mut Tx,
    node: &Node,
    account: &Account,
    role: Role,
    who: &AuditActor,
) -> Result<(Member, bool)> {
    let node_id = node.id;
    let before = member_in(tx, node_id, account.id).await?;
    let updated =
        // A role given by hand is the person's own from now on: sign-ins
        // leave it alone.
        sqlx::query(
            "UPDATE node_members SET role = $1, sso_group = NULL WHERE node_id = $2 AND account_id = $3",
        )
            .bind(role.as_str())
            .bind(node_id)
            .bind(account.id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    if updated == 0 {
        sqlx::query(
            "INSERT INTO node_members (node_id, account_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(node_id)
        .bind(account.id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            if violated(&e) == Some(Constraint::NodeMember) {
                Error::Conflict(format!("{} was added at the same time; try again", account.name))
            } else {
                e.into()
            }
        })?;
    }
    bump_policy_version(tx).await?;
    let member = member_in(tx, node_id, account.id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("membership vanished after writing it")))?;
    audit::record(
        tx,
        who,
        Change {
            action: if before.is_some() {
                "member.update"
            } else {
                "member.add"
            },
            target_type: "node",
            target_id: Some(node_id),
            summary: format!("{} is {} on {}", member.account, member.role, node.path),
            before: before.as_ref().and_then(snapshot),
            after: snapshot(&member),
        },
    )
    .await?;
    Ok((member, updated == 0))
}

async fn member_in(tx: &mut Tx, node_id: i64, account_id: i64) -> Result<Option<Member>> {
    let row = sqlx::query(&format!(
        "SELECT {MEMBER_COLUMNS} FROM node_members m JOIN accounts a ON a.id = m.account_id \
         WHERE m.node_id = $1 AND m.account_id = $2"
    ))
    .bind(node_id)
    .bind(account_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(member_from_row).transpose()?)
}

/// Removes an account from a node.
pub async fn remove_member(db: &Db, node_id: i64, account_id: i64, who: &AuditActor) -> Result<()> {
    let mut tx = db.begin_write().await?;
    let node = get_in(&mut tx, node_id).await?;
    let before = member_in(&mut tx, node_id, account_id).await?;
    let removed = sqlx::query("DELETE FROM node_members WHERE node_id = $1 AND account_id = $2")
        .bind(node_id)
        .bind(account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(Error::NotFound(format!(
            "account {account_id} is not a member of node {node_id}"
        )));
    }
    bump_policy_version(&mut tx).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "member.remove",
            target_type: "node",
            target_id: Some(node_id),
            summary: format!(
                "removed {} from {}",
                before.as_ref().map(|m| m.account.as_str()).unwrap_or("?"),
                node.path
            ),
            before: before.as_ref().and_then(snapshot),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
