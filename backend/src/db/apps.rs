//! Apps: a workload in a cluster (namespace, Deployment, container)
//! attached to a tree node.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::tree::Scope;
use super::{Db, Tx, now_ms};
use crate::domain::cluster::{validate_ingress_name, validate_k8s_name, validate_service_name};
use crate::domain::tree::validate_name;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct App {
    pub id: i64,
    pub name: String,
    pub cluster_id: i64,
    /// The cluster's name.
    pub cluster: String,
    /// The cluster's environment class.
    pub environment: String,
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    /// The Service a canary stage of this app routes requests through
    /// (with `ingress`); absent: its canaries shift pods, not traffic.
    pub service: Option<String>,
    /// The nginx Ingress in front of `service`.
    pub ingress: Option<String>,
    pub node_id: i64,
    /// The tree path of the app's node.
    pub node_path: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields of an app, for create and replace.
#[derive(Debug, Clone)]
pub struct AppFields {
    pub name: String,
    pub cluster_id: i64,
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    /// Both or neither: where a canary's traffic goes through.
    pub service: Option<String>,
    pub ingress: Option<String>,
    pub node_id: i64,
}

const COLUMNS: &str = "p.id, p.name, p.cluster_id, c.name AS cluster, c.environment, p.namespace, \
    p.deployment, p.container, p.service, p.ingress, p.node_id, n.path AS node_path, p.created_at, p.updated_at";
const FROM: &str = "apps p JOIN clusters c ON c.id = p.cluster_id JOIN nodes n ON n.id = p.node_id";

fn from_row(row: &AnyRow) -> Result<App, sqlx::Error> {
    Ok(App {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        cluster_id: row.try_get("cluster_id")?,
        cluster: row.try_get("cluster")?,
        environment: row.try_get("environment")?,
        namespace: row.try_get("namespace")?,
        deployment: row.try_get("deployment")?,
        container: row.try_get("container")?,
        service: row.try_get("service")?,
        ingress: row.try_get("ingress")?,
        node_id: row.try_get("node_id")?,
        node_path: row.try_get("node_path")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn validate(fields: &AppFields) -> Result<()> {
    validate_name(&fields.name).map_err(|m| Error::validation("name", m))?;
    validate_k8s_name("namespace", &fields.namespace)
        .map_err(|m| Error::validation("namespace", m))?;
    validate_k8s_name("deployment", &fields.deployment)
        .map_err(|m| Error::validation("deployment", m))?;
    validate_k8s_name("container", &fields.container)
        .map_err(|m| Error::validation("container", m))?;
    match (&fields.service, &fields.ingress) {
        (None, None) => {}
        (Some(service), Some(ingress)) => {
            validate_service_name(service).map_err(|m| Error::validation("service", m))?;
            validate_ingress_name(ingress).map_err(|m| Error::validation("ingress", m))?;
        }
        (None, Some(_)) => {
            return Err(Error::validation(
                "service",
                "name the Service the Ingress sends to as well, or neither",
            ));
        }
        (Some(_), None) => {
            return Err(Error::validation(
                "ingress",
                "name the Ingress in front of the Service as well, or neither",
            ));
        }
    }
    Ok(())
}

async fn check_refs(tx: &mut Tx, fields: &AppFields) -> Result<()> {
    let cluster: Option<i64> = sqlx::query_scalar("SELECT id FROM clusters WHERE id = $1")
        .bind(fields.cluster_id)
        .fetch_optional(&mut **tx)
        .await?;
    if cluster.is_none() {
        return Err(Error::validation(
            "cluster_id",
            format!("cluster {} does not exist", fields.cluster_id),
        ));
    }
    let node: Option<i64> = sqlx::query_scalar("SELECT id FROM nodes WHERE id = $1")
        .bind(fields.node_id)
        .fetch_optional(&mut **tx)
        .await?;
    if node.is_none() {
        return Err(Error::validation(
            "node_id",
            format!("tree node {} does not exist", fields.node_id),
        ));
    }
    Ok(())
}

fn unique_conflict(e: sqlx::Error, fields: &AppFields) -> Error {
    match violated(&e) {
        Some(Constraint::AppWorkload) => Error::Conflict(format!(
            "another app already targets {}/{} container {} in that cluster",
            fields.namespace, fields.deployment, fields.container
        )),
        Some(Constraint::AppName) => Error::Conflict(format!(
            "an app named '{}' already exists in that cluster",
            fields.name
        )),
        _ => e.into(),
    }
}

/// What a missing app answers; an app the reader may not see answers the
/// same, so ids cannot be probed.
pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("no app with id {id}"))
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<App> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

pub async fn create(db: &Db, fields: &AppFields, who: &AuditActor) -> Result<App> {
    validate(fields)?;
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    check_refs(&mut tx, fields).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO apps (name, cluster_id, namespace, deployment, container, service, ingress, node_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(&fields.name)
    .bind(fields.cluster_id)
    .bind(&fields.namespace)
    .bind(&fields.deployment)
    .bind(&fields.container)
    .bind(&fields.service)
    .bind(&fields.ingress)
    .bind(fields.node_id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| unique_conflict(e, fields))?;
    let app = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "app.create",
            target_type: "app",
            target_id: Some(id),
            summary: format!(
                "registered app {} ({}/{}/{} in {}) on {}",
                app.name, app.namespace, app.deployment, app.container, app.cluster, app.node_path
            ),
            before: None,
            after: snapshot(&app),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(app)
}

pub async fn update(db: &Db, id: i64, fields: &AppFields, who: &AuditActor) -> Result<App> {
    validate(fields)?;
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    check_refs(&mut tx, fields).await?;
    sqlx::query(
        "UPDATE apps SET name = $1, cluster_id = $2, namespace = $3, deployment = $4, container = $5, \
         service = $6, ingress = $7, node_id = $8, updated_at = $9 WHERE id = $10",
    )
    .bind(&fields.name)
    .bind(fields.cluster_id)
    .bind(&fields.namespace)
    .bind(&fields.deployment)
    .bind(&fields.container)
    .bind(&fields.service)
    .bind(&fields.ingress)
    .bind(fields.node_id)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(|e| unique_conflict(e, fields))?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "app.update",
            target_type: "app",
            target_id: Some(id),
            summary: format!("changed app {}", after.name),
            before: snapshot(&before),
            after: snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Removes an app that no release stage targets.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<App> {
    let mut tx = db.begin_write().await?;
    let app = get_in(&mut tx, id).await?;
    let items: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT r.name FROM release_stages s JOIN release_items r ON r.id = s.release_item_id \
         WHERE s.app_id = $1 ORDER BY r.name LIMIT 6",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    if !items.is_empty() {
        return Err(Error::Conflict(format!(
            "app {} is a stage of release items: {}; change their stages first",
            app.name,
            super::name_list(&items)
        )));
    }
    let lanes: Vec<String> =
        sqlx::query_scalar("SELECT slug FROM lanes WHERE app_id = $1 ORDER BY slug LIMIT 6")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if !lanes.is_empty() {
        return Err(Error::Conflict(format!(
            "app {} has lanes: {}; remove them first",
            app.name,
            super::name_list(&lanes)
        )));
    }
    let busy: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM deployments WHERE app_id = $1 AND status IN ('pending', 'rolling_out') LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(busy) = busy {
        return Err(Error::Conflict(format!(
            "fast-path deployment {busy} of app {} is rolling out; wait until it ends",
            app.name
        )));
    }
    // Its fast-path history goes with it.
    sqlx::query(
        "DELETE FROM deployment_events WHERE deployment_id IN (SELECT id FROM deployments WHERE app_id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM deployments WHERE app_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM apps WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "app.delete",
            target_type: "app",
            target_id: Some(id),
            summary: format!("removed app {} from {}", app.name, app.cluster),
            before: snapshot(&app),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(app)
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<App> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| not_found(id))
}

/// Filters for listing apps.
#[derive(Debug, Default)]
pub struct AppFilter {
    pub cluster: Option<String>,
    pub name: Option<String>,
    pub node_id: Option<i64>,
}

/// Where an app's Deployment is: its cluster, namespace, name and container.
#[derive(Debug, Clone)]
pub struct Location {
    pub cluster_id: i64,
    pub namespace: String,
    pub deployment: String,
    pub container: String,
}

/// The locations of apps `ids` (read from the database, written as integer
/// literals), by app id.
pub async fn locations(
    pool: &AnyPool,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Location>> {
    if ids.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    let rows = sqlx::query(&format!(
        "SELECT id, cluster_id, namespace, deployment, container FROM apps WHERE id IN ({})",
        ids.join(", ")
    ))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                Location {
                    cluster_id: r.try_get("cluster_id")?,
                    namespace: r.try_get("namespace")?,
                    deployment: r.try_get("deployment")?,
                    container: r.try_get("container")?,
                },
            ))
        })
        .collect()
}

/// The apps in `scope` that match `filter`, by cluster and name.
pub async fn list(pool: &AnyPool, filter: &AppFilter, scope: &Scope) -> Result<Vec<App>> {
    let (in_scope, roots) = match scope.predicate("n.path", 4) {
        Some((p, roots)) => (format!(" AND {p}"), roots),
        None => (String::new(), Vec::new()),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} \
         WHERE ($1 IS NULL OR c.name = $1) AND ($2 IS NULL OR p.name = $2) AND ($3 IS NULL OR p.node_id = $3){in_scope} \
         ORDER BY c.name, p.name"
    );
    let mut query = sqlx::query(&sql)
        .bind(filter.cluster.as_deref())
        .bind(filter.name.as_deref())
        .bind(filter.node_id);
    for root in roots {
        query = query.bind(root);
    }
    let rows = query.fetch_all(pool).await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}
