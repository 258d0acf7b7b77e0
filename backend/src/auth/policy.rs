//! THE policy: one call, [`Policy::may`], answers "may this actor do this
//! action at this tree path". Pages call it to decide which buttons to show
//! and handlers call the same function to allow the request.
//!
//! casbin holds the rules: which role permits which action (static, below)
//! and who holds which role where (memberships, loaded from the database).
//! A role granted on `/a/b` covers `/a/b` and every descendant, and not
//! `/a/bc`: the domain matching function is [`tree::path_covers`]. Admins
//! hold the `admin` role on `/`, which covers everything.
//!
//! Reads are scoped like writes, and decided here too: an object on a node
//! the reader may not view answers exactly as a missing one
//! ([`Policy::visible`]), and lists keep the reader's [`Scope`]
//! ([`Policy::read_scope`]), which the database applies in SQL.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};

use crate::db::apps::App;
use crate::db::cache::VersionedCache;
use crate::db::release_items::ReleaseItem;
use crate::db::tree::{Node, Scope};
use crate::db::work_order_views::{WorkOrder, WorkOrderDetail};
use crate::db::{self, Db, accounts::Account};
use crate::domain::tree::{self, Role};
use crate::error::{Error, Result};

/// Something an actor may be allowed to do somewhere in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See a node, its members and what hangs below it.
    ViewNode,
    /// Create a node under the node at the checked path (`/` for roots).
    CreateChildNode,
    /// Change a node's title.
    EditNode,
    /// Delete a node; checked at its parent's path, so nobody deletes the
    /// node that grants them their role.
    DeleteNode,
    /// Add, change or remove members of a node.
    ManageMembers,
    /// Users, service accounts and their tokens (checked at `/`).
    ManageAccounts,
    /// Clusters, apps and instance settings such as GitLab (checked at `/`).
    ManageRegistry,
    /// Create, change and delete release items on a node.
    ManageReleaseItems,
    /// File work orders on a node's release items and drive their stages.
    FileWorkOrder,
    /// Deploy an image straight to a node's apps on dev and test clusters
    /// (the CI fast path), and remove their lanes.
    FastDeploy,
    /// Set and remove freeze windows on a node, and let a hotfix through
    /// one.
    ManageFreezes,
    /// Stop the line on a node (halt its subtree's deploys) and lift it.
    StopLine,
    /// Set and remove a node's notification destinations, read their
    /// delivery logs and send a delivery again.
    ManageNotifications,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ViewNode => "node.view",
            Action::CreateChildNode => "node.create_child",
            Action::EditNode => "node.edit",
            Action::DeleteNode => "node.delete",
            Action::ManageMembers => "node.manage_members",
            Action::ManageAccounts => "accounts.manage",
            Action::ManageRegistry => "registry.manage",
            Action::ManageReleaseItems => "release_item.manage",
            Action::FileWorkOrder => "work_order.file",
            Action::FastDeploy => "deployment.fast",
            Action::ManageFreezes => "freeze.manage",
            Action::StopLine => "line.stop",
            Action::ManageNotifications => "notification.manage",
        }
    }
}

/// Which tree role permits which action. Admins may do everything.
const ROLE_PERMISSIONS: &[(Role, &[Action])] = &[
    (Role::Viewer, &[Action::ViewNode]),
    (
        Role::Engineer,
        &[Action::ViewNode, Action::FileWorkOrder, Action::FastDeploy],
    ),
    (
        Role::Owner,
        &[
            Action::ViewNode,
            Action::CreateChildNode,
            Action::EditNode,
            Action::DeleteNode,
            Action::ManageMembers,
            Action::ManageReleaseItems,
            Action::FileWorkOrder,
            Action::FastDeploy,
            Action::ManageFreezes,
            Action::StopLine,
            Action::ManageNotifications,
        ],
    ),
];

const MODEL: &str = r#"
[request_definition]
r = sub, dom, act

[policy_definition]
p = sub, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && (p.act == "*" || r.act == p.act)
"#;

const ADMIN_ROLE: &str = "admin";

fn subject(account_id: i64) -> String {
    format!("account:{account_id}")
}

/// The enforcer and the policy version it was built from.
struct Loaded {
    version: i64,
    enforcer: Enforcer,
    /// Per account, the paths where it holds a role: the roots of what it
    /// may read (the same grants the enforcer holds).
    granted: HashMap<i64, Vec<String>>,
}

/// Something that hangs on a tree node: whoever may view the node may see
/// it.
pub trait OnNode {
    /// The path of the node it hangs on.
    fn node_path(&self) -> &str;
    /// What asking for it answers when it does not exist.
    fn not_found(&self) -> Error;
}

impl OnNode for Node {
    fn node_path(&self) -> &str {
        &self.path
    }
    fn not_found(&self) -> Error {
        db::tree::not_found(self.id).into()
    }
}

impl OnNode for ReleaseItem {
    fn node_path(&self) -> &str {
        &self.node_path
    }
    fn not_found(&self) -> Error {
        db::release_items::not_found(self.id).into()
    }
}

impl OnNode for WorkOrder {
    fn node_path(&self) -> &str {
        &self.node_path
    }
    fn not_found(&self) -> Error {
        db::work_order_views::not_found(self.id).into()
    }
}

impl OnNode for WorkOrderDetail {
    fn node_path(&self) -> &str {
        &self.order.node_path
    }
    fn not_found(&self) -> Error {
        db::work_order_views::not_found(self.order.id).into()
    }
}

impl OnNode for App {
    fn node_path(&self) -> &str {
        &self.node_path
    }
    fn not_found(&self) -> Error {
        db::apps::not_found(self.id).into()
    }
}

impl OnNode for db::deployments::FastDeployment {
    fn node_path(&self) -> &str {
        &self.node_path
    }
    fn not_found(&self) -> Error {
        db::deployments::not_found(self.id).into()
    }
}

/// Per account, the paths where it holds any role.
fn granted_paths(memberships: &[tree::Membership<i64>]) -> HashMap<i64, Vec<String>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for m in memberships {
        out.entry(m.account).or_default().push(m.path.clone());
    }
    out
}

/// The fewest roots covering `paths`: a path below another one adds
/// nothing.
fn outermost(paths: &[String]) -> Vec<String> {
    let mut roots: Vec<String> = paths
        .iter()
        .filter(|p| {
            !paths
                .iter()
                .any(|other| other != *p && tree::path_covers(p, other))
        })
        .cloned()
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// Entries each of the policy's caches keeps at most (one per account or
/// node path).
const POLICY_CACHE_LIMIT: usize = 100_000;

pub struct Policy {
    current: RwLock<Arc<Loaded>>,
    reload: tokio::sync::Mutex<()>,
    /// Per account, the nodes where it is an effective approver (the tree,
    /// its grants and which accounts are enabled only change with a
    /// policy version bump).
    approver_nodes: VersionedCache<i64, Arc<Vec<i64>>>,
    /// Per account, what it may read.
    scopes: VersionedCache<i64, Scope>,
    /// Per node path, its effective approvers and the node they come from.
    approvers: VersionedCache<String, Approvers>,
    /// Per account, how many orders wait for its approval, for the policy
    /// and inbox versions it was counted at (`db::sessions`).
    awaiting: VersionedCache<i64, i64, (i64, i64)>,
}

/// The effective approvers at a node: the node they come from and their
/// names (`db::approvers::approvers_of`); `None` when no node above has
/// owners.
pub type Approvers = Arc<Option<(String, BTreeSet<String>)>>;

/// Builds an enforcer from the static role rules and the given grants.
async fn build_enforcer(
    memberships: &[tree::Membership<i64>],
    admin_ids: &[i64],
) -> anyhow::Result<Enforcer> {
    let model = DefaultModel::from_str(MODEL).await?;
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await?;
    enforcer
        .get_role_manager()
        .write()
        .matching_fn(None, Some(tree::path_covers));
    let mut rules: Vec<Vec<String>> = vec![vec![ADMIN_ROLE.into(), "*".into()]];
    for (role, actions) in ROLE_PERMISSIONS {
        for action in *actions {
            rules.push(vec![role.as_str().into(), action.as_str().into()]);
        }
    }
    enforcer.add_policies(rules).await?;
    let mut grants: Vec<Vec<String>> = memberships
        .iter()
        .map(|m| vec![subject(m.account), m.role.as_str().into(), m.path.clone()])
        .collect();
    grants.extend(
        admin_ids
            .iter()
            .map(|id| vec![subject(*id), ADMIN_ROLE.into(), "/".into()]),
    );
    if !grants.is_empty() {
        enforcer.add_grouping_policies(grants).await?;
    }
    enforcer.build_role_links()?;
    Ok(enforcer)
}

impl Policy {
    /// Loads every grant from the database.
    pub async fn load(db: &Db) -> Result<Self> {
        let loaded = Self::load_from(db).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(loaded)),
            reload: tokio::sync::Mutex::new(()),
            approver_nodes: VersionedCache::new(POLICY_CACHE_LIMIT),
            scopes: VersionedCache::new(POLICY_CACHE_LIMIT),
            approvers: VersionedCache::new(POLICY_CACHE_LIMIT),
            awaiting: VersionedCache::new(POLICY_CACHE_LIMIT),
        })
    }

    async fn load_from(db: &Db) -> Result<Loaded> {
        // Read the version first: a change racing with the load bumps it
        // again, so the next request reloads rather than keeping stale grants.
        let version = db::tree::policy_version(&db.pool).await?;
        let memberships = db::tree::all_memberships(&db.pool).await?;
        let admins = db::tree::admin_ids(&db.pool).await?;
        let enforcer = build_enforcer(&memberships, &admins)
            .await
            .map_err(|e| Error::Internal(e.context("building the policy enforcer")))?;
        Ok(Loaded {
            version,
            enforcer,
            granted: granted_paths(&memberships),
        })
    }

    fn snapshot(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the grants when another request or replica changed them.
    /// Called once per authenticated request, before any decision.
    pub async fn refresh(&self, db: &Db) -> Result<()> {
        let latest = db::tree::policy_version(&db.pool).await?;
        self.refresh_to(db, latest).await
    }

    /// [`Policy::refresh`] when the caller already read the current
    /// version (the session and token look-ups read it in the same query).
    pub async fn refresh_to(&self, db: &Db, latest: i64) -> Result<()> {
        if self.snapshot().version == latest {
            return Ok(());
        }
        let _one_at_a_time = self.reload.lock().await;
        if self.snapshot().version == latest {
            return Ok(());
        }
        let loaded = Arc::new(Self::load_from(db).await?);
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(())
    }

    /// The ids of the nodes where `account_id` is an effective approver
    /// (owners of the nearest node with owners), cached per policy version.
    pub async fn approver_nodes(&self, db: &Db, account_id: i64) -> Result<Arc<Vec<i64>>> {
        let version = self.snapshot().version;
        self.approver_nodes
            .get_or_load(version, &account_id, || async {
                Ok(Arc::new(
                    db::approvers::approver_nodes(&db.pool, account_id).await?,
                ))
            })
            .await
    }

    /// The effective approvers at the node with `path`, cached per policy
    /// version.
    pub async fn approvers_at(&self, db: &Db, path: &str) -> Result<Approvers> {
        let version = self.snapshot().version;
        self.approvers
            .get_or_load(version, path, || async {
                Ok(Arc::new(db::approvers::approvers_of(&db.pool, path).await?))
            })
            .await
    }

    /// How many orders wait for `actor`'s approval (the header badge):
    /// orders on the nodes where it approves that it may also read (`scope`,
    /// its [`Policy::read_scope`]), counted again only when the policy or
    /// the inbox version (`inbox_version`, read with the session) moved on.
    pub async fn awaiting_count(
        &self,
        db: &Db,
        actor: &Account,
        scope: &Scope,
        inbox_version: i64,
    ) -> Result<i64> {
        let versions = (self.snapshot().version, inbox_version);
        self.awaiting
            .get_or_load(versions, &actor.id, || async {
                let approves = self.approver_nodes(db, actor.id).await?;
                // Approvers own a node above the orders they approve, so
                // they may see them; the badge still counts only what its
                // holder may open.
                let approves: Vec<i64> = approves
                    .iter()
                    .copied()
                    .filter(|node| scope.covers_node(*node))
                    .collect();
                Ok(db::work_order_views::awaiting_count(&db.pool, actor.id, &approves).await?)
            })
            .await
    }

    /// May `actor` do `action` at the node with `path` (`/` for global
    /// actions)? Disabled accounts may do nothing.
    pub fn may(&self, actor: &Account, action: Action, path: &str) -> bool {
        if actor.is_disabled() {
            return false;
        }
        let loaded = self.snapshot();
        loaded
            .enforcer
            .enforce((subject(actor.id), path, action.as_str()))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "policy evaluation failed; denying");
                false
            })
    }

    /// May `actor` see the node at `path`, and what hangs on it (at least
    /// `viewer` there or above, or admin)?
    pub fn may_view(&self, actor: &Account, path: &str) -> bool {
        self.may(actor, Action::ViewNode, path)
    }

    /// THE read check: `found` when `actor` may view its node; otherwise
    /// the same 404 a missing id answers, so ids cannot be probed. Writes
    /// load their object through it too, then check their own action.
    pub fn visible<T: OnNode, E: Into<Error>>(
        &self,
        actor: &Account,
        found: std::result::Result<T, E>,
    ) -> Result<T> {
        let object = found.map_err(Into::into)?;
        if self.may_view(actor, object.node_path()) {
            Ok(object)
        } else {
            Err(object.not_found())
        }
    }

    /// The roots of what `actor` may read: `None` for everything (admins),
    /// else the outermost paths where it holds a role (none when disabled).
    fn scope_roots(&self, actor: &Account) -> Option<Vec<String>> {
        if actor.is_disabled() {
            return Some(Vec::new());
        }
        if self.may_view(actor, "/") {
            return None;
        }
        let loaded = self.snapshot();
        Some(
            loaded
                .granted
                .get(&actor.id)
                .map(|paths| outermost(paths))
                .unwrap_or_default(),
        )
    }

    /// What `actor` may read, for lists: everything (admins, and anyone
    /// whose roles cover every node), or the subtrees below the nodes where
    /// it holds a role, with their node ids; cached per policy version
    /// (nodes are only added or removed with a version bump).
    pub async fn read_scope(&self, db: &Db, actor: &Account) -> Result<Scope> {
        let Some(roots) = self.scope_roots(actor) else {
            return Ok(Scope::All);
        };
        if roots.is_empty() {
            return Ok(Scope::nothing());
        }
        let version = self.snapshot().version;
        self.scopes
            .get_or_load(version, &actor.id, || async {
                let (subtrees, everything) = db::tree::subtrees(&db.pool, roots).await?;
                Ok(if everything {
                    Scope::All
                } else {
                    Scope::Under(Arc::new(subtrees))
                })
            })
            .await
    }

    /// [`Policy::may`], as a 403 naming what was refused.
    pub fn require(&self, actor: &Account, action: Action, path: &str) -> Result<()> {
        if self.may(actor, action, path) {
            Ok(())
        } else {
            Err(Error::Forbidden(refusal(action, path)))
        }
    }
}

/// Why `action` at `path` was refused, in the words of who may do it.
fn refusal(action: Action, path: &str) -> String {
    let who = match action {
        Action::ManageAccounts | Action::ManageRegistry => {
            return format!("You need to be an admin to {}.", describe(action));
        }
        Action::ViewNode => "a member (viewer, engineer or owner)",
        Action::FileWorkOrder | Action::FastDeploy => "an engineer or owner",
        Action::CreateChildNode
        | Action::EditNode
        | Action::DeleteNode
        | Action::ManageMembers
        | Action::ManageReleaseItems
        | Action::ManageFreezes
        | Action::StopLine
        | Action::ManageNotifications => "an owner",
    };
    format!("You need to be {who} of {path} to {}.", describe(action))
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::ViewNode => "view this node",
        Action::CreateChildNode => "create nodes",
        Action::EditNode => "edit this node",
        Action::DeleteNode => "delete nodes",
        Action::ManageMembers => "manage members",
        Action::ManageAccounts => "manage accounts",
        Action::ManageRegistry => "manage clusters, apps and settings",
        Action::ManageReleaseItems => "manage release items",
        Action::FileWorkOrder => "file or drive work orders",
        Action::FastDeploy => "deploy to this node's apps on dev and test clusters",
        Action::ManageFreezes => "set or lift freeze windows here",
        Action::StopLine => "stop or restart the line here",
        Action::ManageNotifications => "manage notifications here",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::AccountKind;

    #[test]
    fn a_refusal_names_who_may_do_it() {
        assert_eq!(
            refusal(Action::ManageReleaseItems, "/shop"),
            "You need to be an owner of /shop to manage release items."
        );
        assert_eq!(
            refusal(Action::FileWorkOrder, "/shop/cart"),
            "You need to be an engineer or owner of /shop/cart to file or drive work orders."
        );
        assert_eq!(
            refusal(Action::ManageAccounts, "/"),
            "You need to be an admin to manage accounts."
        );
    }

    fn account(id: i64) -> Account {
        Account {
            id,
            kind: AccountKind::User,
            name: format!("user{id}"),
            display_name: String::new(),
            description: String::new(),
            is_admin: false,
            created_at: 0,
            disabled_at: None,
        }
    }

    fn grant(account: i64, path: &str, role: Role) -> tree::Membership<i64> {
        tree::Membership {
            account,
            path: path.into(),
            role,
        }
    }

    async fn policy_of(memberships: &[tree::Membership<i64>], admins: &[i64]) -> Policy {
        let enforcer = build_enforcer(memberships, admins).await.unwrap();
        Policy {
            current: RwLock::new(Arc::new(Loaded {
                version: 0,
                enforcer,
                granted: granted_paths(memberships),
            })),
            reload: tokio::sync::Mutex::new(()),
            approver_nodes: VersionedCache::new(POLICY_CACHE_LIMIT),
            scopes: VersionedCache::new(POLICY_CACHE_LIMIT),
            approvers: VersionedCache::new(POLICY_CACHE_LIMIT),
            awaiting: VersionedCache::new(POLICY_CACHE_LIMIT),
        }
    }

    #[tokio::test]
    async fn roles_cover_descendants_and_not_lookalike_siblings() {
        let policy = policy_of(
            &[
                grant(1, "/a/b", Role::Owner),
                grant(2, "/a", Role::Viewer),
                grant(3, "/a/b/c", Role::Engineer),
            ],
            &[9],
        )
        .await;
        use Action::*;
        let cases = [
            (1, EditNode, "/a/b", true),
            (1, EditNode, "/a/b/c", true),
            (1, EditNode, "/a/b/c/d", true),
            (1, EditNode, "/a/bc", false),
            (1, EditNode, "/a", false),
            (1, ManageAccounts, "/", false),
            (1, CreateChildNode, "/", false),
            (2, ViewNode, "/a/bc", true),
            (2, EditNode, "/a/b", false),
            (3, ViewNode, "/a/b/c", true),
            (3, ViewNode, "/a/b", false),
            (3, ManageMembers, "/a/b/c", false),
            (9, ManageAccounts, "/", true),
            (9, DeleteNode, "/x/y", true),
            (4, ViewNode, "/a", false),
        ];
        for (id, action, path, expected) in cases {
            assert_eq!(
                policy.may(&account(id), action, path),
                expected,
                "account {id} {action:?} at {path}"
            );
        }
        let mut disabled = account(9);
        disabled.disabled_at = Some(1);
        assert!(!policy.may(&disabled, ManageAccounts, "/"));
    }

    fn work_order_on(path: &str) -> WorkOrder {
        WorkOrder {
            id: 7,
            release_item_id: 1,
            release_item: "item".into(),
            node_id: 1,
            node_path: path.into(),
            version: "v1".into(),
            image: "i:v1".into(),
            title: "t".into(),
            description: String::new(),
            state: crate::domain::work_order::State::PendingApproval,
            creator_id: 1,
            creator: "c".into(),
            required_approvals: 1,
            approvals: 0,
            created_at: 0,
            updated_at: 0,
            hotfix_reason: None,
        }
    }

    #[tokio::test]
    async fn hidden_objects_answer_like_missing_ones() {
        let policy = policy_of(
            &[
                grant(1, "/a/b", Role::Viewer),
                grant(2, "/a/bc", Role::Owner),
            ],
            &[9],
        )
        .await;
        for (id, path, seen) in [
            (1, "/a/b/c", true),
            (1, "/a/bc", false),
            (2, "/a/b/c", false),
            (9, "/x", true),
            (4, "/a/b", false),
        ] {
            let answer = policy.visible(&account(id), Ok::<_, Error>(work_order_on(path)));
            match answer {
                Ok(_) => assert!(seen, "account {id} sees {path}"),
                Err(e) => {
                    assert!(!seen, "account {id} does not see {path}");
                    assert_eq!(
                        e.to_string(),
                        db::work_order_views::not_found(7).to_string(),
                        "the same answer as a missing order"
                    );
                }
            }
        }
        let missing =
            policy.visible::<WorkOrder, _>(&account(9), Err(db::work_order_views::not_found(8)));
        assert!(matches!(missing, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn the_read_scope_is_the_outermost_granted_subtrees() {
        let policy = policy_of(
            &[
                grant(1, "/a/b", Role::Viewer),
                grant(1, "/a/b/c", Role::Owner),
                grant(1, "/a/bc", Role::Engineer),
                grant(1, "/z", Role::Viewer),
            ],
            &[9],
        )
        .await;
        assert_eq!(
            policy.scope_roots(&account(1)),
            Some(vec!["/a/b".into(), "/a/bc".into(), "/z".into()])
        );
        assert_eq!(
            policy.scope_roots(&account(9)),
            None,
            "admins read everything"
        );
        assert_eq!(policy.scope_roots(&account(4)), Some(Vec::new()));
        let mut disabled = account(1);
        disabled.disabled_at = Some(1);
        assert_eq!(policy.scope_roots(&disabled), Some(Vec::new()));
    }
}
