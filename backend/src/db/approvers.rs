//! Approver look-ups: who approves at a node (the owners of the nearest node
//! with owners, `domain::tree::effective_approvers`) and where an account
//! approves. Release items (enough approvers for a plan), work orders (the
//! facts of the state machine, the detail page) and the approvals inbox all
//! read approvers through here; this module imports neither of them.

use std::collections::BTreeSet;

use sqlx::{Any, AnyPool};

use super::error::Result;
use crate::domain::tree::{self as rules, Membership, Role};

/// Owners on the chain from the root to `path`, as the tree rules take
/// them, in one query.
async fn owners_on_chain<'c, E>(db: E, path: &str) -> Result<Vec<Membership<String>>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let chain = rules::ancestor_chain(path);
    if chain.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=chain.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT n.path, a.name FROM node_members m JOIN nodes n ON n.id = m.node_id JOIN accounts a ON a.id = m.account_id \
         WHERE n.path IN ({}) AND m.role = 'owner' AND a.disabled_at IS NULL",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
    for node_path in &chain {
        query = query.bind(node_path);
    }
    Ok(query
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|(path, account)| Membership {
            account,
            path,
            role: Role::Owner,
        })
        .collect())
}

/// The effective approvers at `path` (owners of the nearest node with
/// owners, disabled accounts excluded) and the node they come from, read
/// in a transaction (`&mut **tx`) or from the pool. Pages and the API read
/// it through `Policy::approvers_at`, which caches it per policy version.
pub async fn approvers_of<'c, E>(db: E, path: &str) -> Result<Option<(String, BTreeSet<String>)>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let owners = owners_on_chain(db, path).await?;
    Ok(rules::effective_approvers(path, &owners))
}

/// The ids of the nodes where `account_id` is an effective approver.
/// Callers use the cached `Policy::approver_nodes`.
pub async fn approver_nodes(pool: &AnyPool, account_id: i64) -> Result<Vec<i64>> {
    let nodes: Vec<(i64, String)> = sqlx::query_as("SELECT id, path FROM nodes")
        .fetch_all(pool)
        .await?;
    let owners: Vec<(String, i64)> = sqlx::query_as(
        "SELECT n.path, m.account_id FROM node_members m JOIN nodes n ON n.id = m.node_id \
         JOIN accounts a ON a.id = m.account_id WHERE m.role = 'owner' AND a.disabled_at IS NULL",
    )
    .fetch_all(pool)
    .await?;
    if !owners.iter().any(|(_, a)| *a == account_id) {
        return Ok(Vec::new());
    }
    let memberships: Vec<Membership<i64>> = owners
        .into_iter()
        .map(|(path, account)| Membership {
            account,
            path,
            role: Role::Owner,
        })
        .collect();
    Ok(nodes
        .into_iter()
        .filter(|(_, path)| {
            rules::effective_approvers(path, &memberships)
                .is_some_and(|(_, set)| set.contains(&account_id))
        })
        .map(|(id, _)| id)
        .collect())
}
