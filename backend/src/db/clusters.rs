//! Clusters: where apps run and how to reach them. The kubeconfig is sealed
//! with the cluster id as associated data and never read back out except
//! by the Kubernetes driver; pages and API show only when and by whom it
//! was set.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::constraint::{Constraint, violated};
use super::error::{Error, Result};
use super::{Db, Tx, now_ms};
use crate::domain::cluster::{
    ClusterAccess, ClusterCredentials, Environment, PrometheusAccess, validate_kubeconfig,
    validate_prometheus_url,
};
use crate::domain::tree::validate_name;
use crate::secret::{Sealer, Secret, sha256_hex};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    /// `dev`, `test`, `staging` or `prod`.
    #[schema(value_type = String, example = "dev")]
    #[serde(serialize_with = "serialize_env")]
    pub environment: Environment,
    /// Rollway runs inside this cluster and uses its service account.
    pub in_cluster: bool,
    /// The kubeconfig context used (its current context when absent).
    pub kube_context: Option<String>,
    /// Whether a kubeconfig is stored (it is never shown).
    pub has_kubeconfig: bool,
    pub credentials_set_at: Option<i64>,
    pub credentials_set_by: Option<String>,
    /// The Prometheus verification gates query, when one is set.
    pub prometheus_url: Option<String>,
    /// Whether a Prometheus bearer token is stored (it is never shown).
    pub has_prometheus_token: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

fn serialize_env<S: serde::Serializer>(env: &Environment, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(env.as_str())
}

/// How Rollway reaches a cluster.
pub enum Connection {
    Kubeconfig {
        yaml: Secret<String>,
        context: Option<String>,
    },
    InCluster,
}

const COLUMNS: &str = "c.id, c.name, c.environment, c.in_cluster, c.kube_context, \
    CAST(CASE WHEN c.kubeconfig_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_kubeconfig, \
    c.credentials_set_at, c.credentials_set_by, c.prometheus_url, \
    CAST(CASE WHEN c.prometheus_token_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_prometheus_token, \
    c.created_at, c.updated_at";

fn from_row(row: &AnyRow) -> Result<Cluster, sqlx::Error> {
    let env: String = row.try_get("environment")?;
    Ok(Cluster {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        environment: env
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        in_cluster: row.try_get::<i64, _>("in_cluster")? != 0,
        kube_context: row.try_get("kube_context")?,
        has_kubeconfig: row.try_get::<i64, _>("has_kubeconfig")? != 0,
        credentials_set_at: row.try_get("credentials_set_at")?,
        credentials_set_by: row.try_get("credentials_set_by")?,
        prometheus_url: row.try_get("prometheus_url")?,
        has_prometheus_token: row.try_get::<i64, _>("has_prometheus_token")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn aad(id: i64) -> String {
    format!("cluster:{id}")
}

fn prometheus_aad(id: i64) -> String {
    format!("cluster-prometheus:{id}")
}

fn check_connection(connection: &Connection) -> Result<()> {
    if let Connection::Kubeconfig { yaml, context } = connection {
        validate_kubeconfig(yaml.expose(), context.as_deref())
            .map_err(|m| Error::validation("kubeconfig", m))?;
    }
    Ok(())
}

async fn get_in(tx: &mut Tx, id: i64) -> Result<Cluster> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clusters c WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("no cluster with id {id}")))
}

/// Writes the connection of cluster `id` (sealing a kubeconfig).
async fn write_connection(
    tx: &mut Tx,
    sealer: &Sealer,
    id: i64,
    connection: &Connection,
    who: &AuditActor,
) -> Result<()> {
    let (sealed, context, in_cluster) = match connection {
        Connection::Kubeconfig { yaml, context } => (
            Some(
                sealer
                    .seal(yaml.expose(), &aad(id))
                    .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?,
            ),
            context.clone().filter(|c| !c.is_empty()),
            0_i64,
        ),
        Connection::InCluster => (None, None, 1_i64),
    };
    sqlx::query(
        "UPDATE clusters SET kubeconfig_sealed = $1, kube_context = $2, in_cluster = $3, \
         credentials_set_at = $4, credentials_set_by = $5, updated_at = $4 WHERE id = $6",
    )
    .bind(sealed)
    .bind(context)
    .bind(in_cluster)
    .bind(now_ms())
    .bind(&who.name)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Registers a cluster.
pub async fn create(
    db: &Db,
    sealer: &Sealer,
    name: &str,
    environment: Environment,
    connection: &Connection,
    who: &AuditActor,
) -> Result<Cluster> {
    validate_name(name).map_err(|m| Error::validation("name", m))?;
    check_connection(connection)?;
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO clusters (name, environment, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(name)
    .bind(environment.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if violated(&e) == Some(Constraint::ClusterName) {
            Error::Conflict(format!("a cluster named '{name}' already exists"))
        } else {
            e.into()
        }
    })?;
    write_connection(&mut tx, sealer, id, connection, who).await?;
    let cluster = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "cluster.create",
            target_type: "cluster",
            target_id: Some(id),
            summary: format!("registered cluster {name} ({environment})"),
            before: None,
            after: snapshot(&cluster),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(cluster)
}

/// What an update may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ClusterUpdate {
    pub environment: Option<Environment>,
    pub connection: Option<Connection>,
}

/// Changes a cluster's environment or replaces its connection.
pub async fn update(
    db: &Db,
    sealer: &Sealer,
    id: i64,
    update: ClusterUpdate,
    who: &AuditActor,
) -> Result<Cluster> {
    if let Some(c) = &update.connection {
        check_connection(c)?;
    }
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    if let Some(env) = update.environment {
        sqlx::query("UPDATE clusters SET environment = $1, updated_at = $2 WHERE id = $3")
            .bind(env.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(connection) = &update.connection {
        write_connection(&mut tx, sealer, id, connection, who).await?;
    }
    let after = get_in(&mut tx, id).await?;
    let mut what = Vec::new();
    if before.environment != after.environment {
        what.push(format!(
            "environment {} → {}",
            before.environment, after.environment
        ));
    }
    if update.connection.is_some() {
        what.push("replaced its credentials".to_string());
    }
    audit::record(
        &mut tx,
        who,
        Change {
            action: "cluster.update",
            target_type: "cluster",
            target_id: Some(id),
            summary: format!(
                "cluster {}: {}",
                after.name,
                if what.is_empty() {
                    "no change".into()
                } else {
                    what.join(", ")
                }
            ),
            before: snapshot(&before),
            after: snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Removes a cluster that no app uses.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<Cluster> {
    let mut tx = db.begin_write().await?;
    let cluster = get_in(&mut tx, id).await?;
    let apps: Vec<String> =
        sqlx::query_scalar("SELECT name FROM apps WHERE cluster_id = $1 ORDER BY name LIMIT 6")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if !apps.is_empty() {
        return Err(Error::Conflict(format!(
            "cluster {} still has apps: {}; remove them first",
            cluster.name,
            super::name_list(&apps)
        )));
    }
    sqlx::query("DELETE FROM clusters WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "cluster.delete",
            target_type: "cluster",
            target_id: Some(id),
            summary: format!("removed cluster {}", cluster.name),
            before: snapshot(&cluster),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(cluster)
}

pub async fn get(pool: &AnyPool, id: i64) -> Result<Cluster> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM clusters c WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(|| Error::NotFound(format!("no cluster with id {id}")))
}

pub async fn find_by_name(pool: &AnyPool, name: &str) -> Result<Option<Cluster>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM clusters c WHERE c.name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list(pool: &AnyPool) -> Result<Vec<Cluster>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM clusters c ORDER BY c.name"))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Cluster `id`'s stored connection, its kubeconfig opened, for the
/// Kubernetes driver. The one place a sealed kubeconfig is opened (with
/// the cluster id as associated data); a kubeconfig that cannot be opened
/// is [`ClusterAccess::Unreadable`], for the driver to refuse by name.
pub async fn credentials(pool: &AnyPool, sealer: &Sealer, id: i64) -> Result<ClusterCredentials> {
    let row = sqlx::query(
        "SELECT name, kubeconfig_sealed, kube_context, in_cluster FROM clusters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no cluster with id {id}")))?;
    let name: String = row.try_get("name")?;
    let sealed: Option<String> = row.try_get("kubeconfig_sealed")?;
    let context: Option<String> = row.try_get("kube_context")?;
    let in_cluster = row.try_get::<i64, _>("in_cluster")? != 0;
    let fingerprint = sha256_hex(&format!(
        "{}|{}|{in_cluster}",
        sealed.as_deref().unwrap_or(""),
        context.as_deref().unwrap_or("")
    ));
    let access = match (in_cluster, sealed) {
        (true, _) => ClusterAccess::InCluster,
        (false, None) => ClusterAccess::Missing,
        (false, Some(sealed)) => match sealer.open(&sealed, &aad(id)) {
            Ok(yaml) => ClusterAccess::Kubeconfig { yaml, context },
            Err(_) => ClusterAccess::Unreadable,
        },
    };
    Ok(ClusterCredentials {
        id,
        name,
        access,
        fingerprint,
    })
}

/// What to do with a cluster's Prometheus bearer token.
pub enum TokenChange {
    Keep,
    Set(Secret<String>),
    Clear,
}

/// Sets (or, with `None`, removes) the Prometheus of cluster `id`: its URL
/// and bearer token, the token sealed.
pub async fn set_prometheus(
    db: &Db,
    sealer: &Sealer,
    id: i64,
    settings: Option<(&str, TokenChange)>,
    who: &AuditActor,
) -> Result<Cluster> {
    let (url, token) = match settings {
        Some((url, token)) => {
            let url = url.trim();
            validate_prometheus_url(url).map_err(|m| Error::validation("url", m))?;
            if let TokenChange::Set(t) = &token
                && (t.expose().trim().is_empty() || t.expose().chars().any(char::is_control))
            {
                return Err(Error::validation(
                    "token",
                    "the token is empty or has control characters",
                ));
            }
            (Some(url.trim_end_matches('/').to_string()), token)
        }
        None => (None, TokenChange::Clear),
    };
    let mut tx = db.begin_write().await?;
    let before = get_in(&mut tx, id).await?;
    let sealed = match &token {
        TokenChange::Set(t) => Some(
            sealer
                .seal(t.expose(), &prometheus_aad(id))
                .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?,
        ),
        _ => None,
    };
    sqlx::query(
        "UPDATE clusters SET prometheus_url = $1, \
         prometheus_token_sealed = CASE WHEN $2 = 1 THEN prometheus_token_sealed ELSE $3 END, \
         updated_at = $4 WHERE id = $5",
    )
    .bind(&url)
    .bind(i64::from(matches!(token, TokenChange::Keep)))
    .bind(sealed)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let after = get_in(&mut tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "cluster.prometheus",
            target_type: "cluster",
            target_id: Some(id),
            summary: match &after.prometheus_url {
                Some(url) => format!(
                    "cluster {}: Prometheus {url}{}",
                    after.name,
                    match token {
                        TokenChange::Set(_) => " with a new token",
                        TokenChange::Clear => " without a token",
                        TokenChange::Keep => "",
                    }
                ),
                None => format!("cluster {}: Prometheus removed", after.name),
            },
            before: snapshot(&before),
            after: snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Cluster `id`'s Prometheus with its token opened, for the Prometheus
/// client; `None` when the cluster has none. The one place the token is
/// unsealed.
pub async fn prometheus_access(
    pool: &AnyPool,
    sealer: &Sealer,
    id: i64,
) -> Result<Option<PrometheusAccess>> {
    let row = sqlx::query(
        "SELECT name, prometheus_url, prometheus_token_sealed FROM clusters WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::NotFound(format!("no cluster with id {id}")))?;
    let name: String = row.try_get("name")?;
    let Some(url) = row.try_get::<Option<String>, _>("prometheus_url")? else {
        return Ok(None);
    };
    let token = match row.try_get::<Option<String>, _>("prometheus_token_sealed")? {
        Some(sealed) => Some(sealer.open(&sealed, &prometheus_aad(id)).map_err(|_| {
            Error::Conflict(format!(
                "the Prometheus token of cluster {name} cannot be opened with this server's key; set it again"
            ))
        })?),
        None => None,
    };
    Ok(Some(PrometheusAccess {
        cluster: name,
        url,
        token,
    }))
}
