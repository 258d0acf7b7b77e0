//! Which named constraint a database error broke, read from the driver's
//! structured error rather than its text. PostgreSQL names the constraint
//! (`DatabaseError::constraint`); SQLite does not, but reports the table and
//! columns of a unique violation (`UNIQUE constraint failed: apps.cluster_id,
//! apps.namespace, …`), which [`CONSTRAINTS`] maps to the same name.

use sqlx::error::{DatabaseError, ErrorKind};

/// The unique constraints and indexes that callers answer for (a 409 naming
/// what already exists). Names are the ones in `migrations/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    AccountName,
    SessionTokenHash,
    ApiTokenHash,
    NodePath,
    NodeMember,
    ClusterName,
    AppName,
    AppWorkload,
    ReleaseItemName,
    ReleaseStagePosition,
    OneOpenOrderPerItem,
    Approval,
    StageRunPosition,
    OneQueuedJobPerSubject,
    IdempotencyKey,
    OneStopPerNode,
    OidcSubject,
    OidcAccount,
}

/// Each constraint with its name in both schemas, its table and its
/// columns in index order: the one table both backends are read through.
pub const CONSTRAINTS: &[(Constraint, &str, &str, &[&str])] = &[
    (
        Constraint::AccountName,
        "accounts_name_key",
        "accounts",
        &["name"],
    ),
    (
        Constraint::SessionTokenHash,
        "sessions_token_hash_key",
        "sessions",
        &["token_hash"],
    ),
    (
        Constraint::ApiTokenHash,
        "api_tokens_token_hash_key",
        "api_tokens",
        &["token_hash"],
    ),
    (Constraint::NodePath, "nodes_path_key", "nodes", &["path"]),
    (
        Constraint::NodeMember,
        "node_members_pkey",
        "node_members",
        &["node_id", "account_id"],
    ),
    (
        Constraint::ClusterName,
        "clusters_name_key",
        "clusters",
        &["name"],
    ),
    (
        Constraint::AppName,
        "apps_cluster_name_key",
        "apps",
        &["cluster_id", "name"],
    ),
    (
        Constraint::AppWorkload,
        "apps_workload_key",
        "apps",
        &["cluster_id", "namespace", "deployment", "container"],
    ),
    (
        Constraint::ReleaseItemName,
        "release_items_node_name_key",
        "release_items",
        &["node_id", "name"],
    ),
    (
        Constraint::ReleaseStagePosition,
        "release_stages_position_key",
        "release_stages",
        &["release_item_id", "position"],
    ),
    (
        Constraint::OneOpenOrderPerItem,
        "work_orders_one_open_per_item",
        "work_orders",
        &["release_item_id"],
    ),
    (
        Constraint::Approval,
        "approvals_pkey",
        "approvals",
        &["work_order_id", "account_id"],
    ),
    (
        Constraint::StageRunPosition,
        "stage_runs_position_key",
        "stage_runs",
        &["work_order_id", "position"],
    ),
    (
        Constraint::OneQueuedJobPerSubject,
        "jobs_one_queued_per_subject",
        "jobs",
        &["subject_kind", "subject_id"],
    ),
    (
        Constraint::IdempotencyKey,
        "idempotency_keys_pkey",
        "idempotency_keys",
        &["account_id", "key"],
    ),
    (
        Constraint::OneStopPerNode,
        "line_stops_one_per_node",
        "line_stops",
        &["node_id"],
    ),
    (
        Constraint::OidcSubject,
        "oidc_identities_pkey",
        "oidc_identities",
        &["issuer", "subject"],
    ),
    (
        Constraint::OidcAccount,
        "oidc_identities_account_idx",
        "oidc_identities",
        &["account_id", "issuer"],
    ),
];

impl Constraint {
    /// Its name in the migrations.
    pub fn name(self) -> &'static str {
        CONSTRAINTS
            .iter()
            .find(|(c, ..)| *c == self)
            .map(|(_, name, ..)| *name)
            .unwrap_or("")
    }

    fn by_name(name: &str) -> Option<Constraint> {
        CONSTRAINTS
            .iter()
            .find(|(_, n, ..)| *n == name)
            .map(|(c, ..)| *c)
    }

    /// SQLite's report of a unique violation: `table.col, table.col, …`.
    fn by_columns(list: &str) -> Option<Constraint> {
        let mut table = None;
        let mut columns = Vec::new();
        for qualified in list.split(',') {
            let (t, column) = qualified.trim().split_once('.')?;
            if table.is_some_and(|seen| seen != t) {
                return None;
            }
            table = Some(t);
            columns.push(column);
        }
        let table = table?;
        CONSTRAINTS
            .iter()
            .find(|(_, _, t, cols)| *t == table && *cols == columns.as_slice())
            .map(|(c, ..)| *c)
    }
}

/// The unique constraint `err` broke, when it is one of [`Constraint`].
pub fn violated(err: &sqlx::Error) -> Option<Constraint> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    violated_in(db.as_ref())
}

fn violated_in(db: &dyn DatabaseError) -> Option<Constraint> {
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    if let Some(name) = db.constraint() {
        return Constraint::by_name(name);
    }
    if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        // The message is SQLite's fixed format for this error code
        // (SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY): the columns follow the
        // colon.
        let (_, columns) = sqlite.message().split_once(": ")?;
        return Constraint::by_columns(columns);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_column_lists_map_to_the_same_constraint() {
        for (constraint, name, table, columns) in CONSTRAINTS {
            assert_eq!(Constraint::by_name(name), Some(*constraint));
            assert_eq!(constraint.name(), *name);
            let list: Vec<String> = columns.iter().map(|c| format!("{table}.{c}")).collect();
            assert_eq!(
                Constraint::by_columns(&list.join(", ")),
                Some(*constraint),
                "{name}"
            );
        }
        assert_eq!(Constraint::by_columns("apps.namespace"), None);
        assert_eq!(Constraint::by_columns("apps.name, clusters.name"), None);
        assert_eq!(Constraint::by_name("nope"), None);
    }

    #[test]
    fn every_column_list_names_one_constraint() {
        for (i, (_, a, ta, ca)) in CONSTRAINTS.iter().enumerate() {
            for (_, b, tb, cb) in &CONSTRAINTS[i + 1..] {
                assert!(ta != tb || ca != cb, "{a} and {b} cover the same columns");
            }
        }
    }
}
