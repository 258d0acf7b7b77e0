//! Notification destinations and their deliveries (migration 0024). A
//! destination is stored with its URL and signing secret sealed, each
//! change audited in its transaction. The outbox is the deliveries table:
//! [`fan_out`] runs inside the transaction of every timeline event and
//! writes one delivery per destination that asks for it, with the job
//! that sends it; the engine (`engine::notify`) sends and records each
//! attempt fenced on its job's lease, so nothing is sent from a request,
//! nothing is lost on a restart and no event is delivered twice by two
//! servers.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use utoipa::ToSchema;

use super::audit::{self, AuditActor, Change, snapshot};
use super::error::{Error, Result};
use super::jobs::{self, JobLease, Subject};
use super::{Db, Tx, now_ms};
use crate::domain::notify::{self, DestinationKind, Notice};
use crate::domain::tree::path_covers;
use crate::secret::{Sealer, Secret};

/// The job kind that sends a delivery.
pub const NOTIFY_JOB: &str = "notify";

/// A destination as shown: never its URL (only the host) nor its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Destination {
    pub id: i64,
    /// The node it is set on; it hears of work orders in the node's whole
    /// subtree.
    pub node_id: i64,
    pub node_path: String,
    pub name: String,
    pub kind: DestinationKind,
    /// The URL's scheme and host.
    pub url_hint: String,
    /// The events it is told of; all when empty.
    pub events: Vec<String>,
    /// Why it no longer receives anything (it answered 410 Gone); absent
    /// while it does.
    pub disabled_reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

impl Destination {
    /// Whether it is told of event `name`.
    pub fn wants(&self, name: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == name)
    }
}

const COLUMNS: &str = "d.id, d.node_id, n.path AS node_path, d.name, d.kind, d.url_hint, d.events, \
    d.disabled_reason, d.created_by, d.created_at";
const FROM: &str = "notification_destinations d JOIN nodes n ON n.id = d.node_id";

fn from_row(row: &AnyRow) -> Result<Destination> {
    let kind: String = row.try_get("kind")?;
    let events: String = row.try_get("events")?;
    Ok(Destination {
        id: row.try_get("id")?,
        node_id: row.try_get("node_id")?,
        node_path: row.try_get("node_path")?,
        name: row.try_get("name")?,
        kind: DestinationKind::parse(&kind)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("destination kind '{kind}'")))?,
        url_hint: row.try_get("url_hint")?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        disabled_reason: row.try_get("disabled_reason")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

pub fn not_found(id: i64) -> Error {
    Error::NotFound(format!("notification destination {id} does not exist"))
}

fn url_aad(id: i64) -> String {
    format!("notification_destination:{id}:url")
}

fn secret_aad(id: i64) -> String {
    format!("notification_destination:{id}:secret")
}

fn sealed(sealer: &Sealer, text: &str, aad: &str) -> Result<String> {
    sealer
        .seal(text, aad)
        .map_err(|e| Error::Internal(anyhow::anyhow!(e)))
}

/// A destination to store, checked by the caller (`flows::notifications`).
pub struct NewDestination<'a> {
    pub node_id: i64,
    pub name: &'a str,
    pub kind: DestinationKind,
    pub url: &'a str,
    pub events: &'a [String],
}

/// Stores `new`, audited as `who`'s: the destination, and for a webhook
/// its signing secret (shown this once).
pub async fn create(
    db: &Db,
    sealer: &Sealer,
    new: &NewDestination<'_>,
    who: &AuditActor,
) -> Result<(Destination, Option<Secret<String>>)> {
    let mut tx = db.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO notification_destinations (node_id, name, kind, url_sealed, url_hint, events, created_by, created_at) \
         VALUES ($1, $2, $3, '', $4, $5, $6, $7) RETURNING id",
    )
    .bind(new.node_id)
    .bind(new.name)
    .bind(new.kind.as_str())
    .bind(notify::url_hint(new.url))
    .bind(new.events.join(","))
    .bind(&who.name)
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await?;
    let secret = (new.kind == DestinationKind::Webhook).then(notify::new_secret);
    sqlx::query(
        "UPDATE notification_destinations SET url_sealed = $1, secret_sealed = $2 WHERE id = $3",
    )
    .bind(sealed(sealer, new.url, &url_aad(id))?)
    .bind(
        secret
            .as_deref()
            .map(|s| sealed(sealer, s, &secret_aad(id)))
            .transpose()?,
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let destination = read(&mut *tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "notification_destination.create",
            target_type: "notification_destination",
            target_id: Some(id),
            summary: format!(
                "{} destination \"{}\" on {} ({})",
                destination.kind.as_str(),
                destination.name,
                destination.node_path,
                destination.url_hint
            ),
            before: None,
            after: snapshot(&destination),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((destination, secret.map(Secret::new)))
}

async fn read<'c, E>(db: E, id: i64) -> Result<Destination>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE d.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| not_found(id))?;
    from_row(&row)
}

/// Destination `id`.
pub async fn get(pool: &AnyPool, id: i64) -> Result<Destination> {
    read(pool, id).await
}

/// Every destination, by node path: the caller keeps what the reader may
/// see.
pub async fn all(pool: &AnyPool) -> Result<Vec<Destination>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {FROM} ORDER BY n.path, d.id"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Removes destination `id` (its deliveries with it), audited as `who`'s.
pub async fn delete(db: &Db, id: i64, who: &AuditActor) -> Result<Destination> {
    let mut tx = db.begin_write().await?;
    let destination = read(&mut *tx, id).await?;
    sqlx::query(
        "UPDATE jobs SET state = 'done', lease_until = NULL, last_error = 'destination removed', updated_at = $1 \
         WHERE subject_kind = 'delivery' AND state = 'queued' AND subject_id IN \
         (SELECT id FROM notification_deliveries WHERE destination_id = $2)",
    )
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM notification_deliveries WHERE destination_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM notification_destinations WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "notification_destination.delete",
            target_type: "notification_destination",
            target_id: Some(id),
            summary: format!(
                "destination \"{}\" on {} removed",
                destination.name, destination.node_path
            ),
            before: snapshot(&destination),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(destination)
}

/// Lets a destination disabled by a 410 receive again, audited.
pub async fn enable(db: &Db, id: i64, who: &AuditActor) -> Result<Destination> {
    let mut tx = db.begin_write().await?;
    let before = read(&mut *tx, id).await?;
    sqlx::query("UPDATE notification_destinations SET disabled_reason = NULL WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let after = read(&mut *tx, id).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "notification_destination.enable",
            target_type: "notification_destination",
            target_id: Some(id),
            summary: format!(
                "destination \"{}\" on {} enabled again",
                after.name, after.node_path
            ),
            before: snapshot(&before),
            after: snapshot(&after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Writes, inside the transaction of timeline event `event_id` (of kind
/// `kind`, on work order `order_id`), a delivery and its job for every
/// destination that is told of it. One query when no destination is set.
pub(crate) async fn fan_out(tx: &mut Tx, event_id: i64, order_id: i64, kind: &str) -> Result<()> {
    let Some(event) = notify::event_of(kind) else {
        return Ok(());
    };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE d.disabled_reason IS NULL"
    ))
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let path: String = sqlx::query_scalar(
        "SELECT n.path FROM work_orders w JOIN release_items i ON i.id = w.release_item_id \
         JOIN nodes n ON n.id = i.node_id WHERE w.id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut **tx)
    .await?;
    let now = now_ms();
    for row in &rows {
        let d = from_row(row)?;
        if !path_covers(&path, &d.node_path) || !d.wants(event) {
            continue;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notification_deliveries (destination_id, event_id, event, message_id, status, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5) RETURNING id",
        )
        .bind(d.id)
        .bind(event_id)
        .bind(event)
        .bind(format!("msg_rollway_{event_id}_{}", d.id))
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        jobs::enqueue(&mut *tx, NOTIFY_JOB, Subject::Delivery { id }, now).await?;
    }
    Ok(())
}

/// One delivery as its log shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub destination_id: i64,
    /// The timeline event told.
    pub event_id: i64,
    pub event: String,
    pub work_order_id: i64,
    /// The `webhook-id` of every attempt.
    pub message_id: String,
    /// `pending` (to be sent, or sent again), `delivered` or `failed`
    /// (every attempt failed, or the destination answered 410).
    pub status: String,
    pub attempts: i64,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<i64>,
    pub last_error: String,
    pub created_at: i64,
    pub attempted_at: Option<i64>,
    pub delivered_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "x.id, x.destination_id, x.event_id, x.event, e.work_order_id, x.message_id, \
    x.status, x.attempts, x.last_status, x.last_error, x.created_at, x.attempted_at, x.delivered_at";
const DELIVERY_FROM: &str = "notification_deliveries x JOIN timeline_events e ON e.id = x.event_id";

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, sqlx::Error> {
    Ok(Delivery {
        id: row.try_get("id")?,
        destination_id: row.try_get("destination_id")?,
        event_id: row.try_get("event_id")?,
        event: row.try_get("event")?,
        work_order_id: row.try_get("work_order_id")?,
        message_id: row.try_get("message_id")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        attempted_at: row.try_get("attempted_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

/// The newest `limit` deliveries to destination `id`, newest first.
pub async fn deliveries(pool: &AnyPool, id: i64, limit: i64) -> Result<Vec<Delivery>> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE x.destination_id = $1 ORDER BY x.id DESC LIMIT $2"
    ))
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(delivery_from_row)
        .collect::<Result<_, _>>()?)
}

/// Delivery `id`.
pub async fn delivery(pool: &AnyPool, id: i64) -> Result<Delivery> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE x.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::NotFound(format!("delivery {id} does not exist")))?;
    Ok(delivery_from_row(&row)?)
}

/// Sends delivery `id` again from its first attempt (same `webhook-id`),
/// audited as `who`'s. A delivery being sent is a conflict.
pub async fn send_again(db: &Db, id: i64, who: &AuditActor) -> Result<Delivery> {
    let mut tx = db.begin_write().await?;
    let updated = sqlx::query(
        "UPDATE notification_deliveries SET status = 'pending', attempts = 0, last_error = '' \
         WHERE id = $1 AND status <> 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM notification_deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(match exists {
            Some(_) => Error::Conflict(format!("delivery {id} is being sent already")),
            None => Error::NotFound(format!("delivery {id} does not exist")),
        });
    }
    jobs::enqueue(&mut tx, NOTIFY_JOB, Subject::Delivery { id }, now_ms()).await?;
    audit::record(
        &mut tx,
        who,
        Change {
            action: "notification_delivery.send_again",
            target_type: "notification_delivery",
            target_id: Some(id),
            summary: format!("delivery {id} sent again"),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    delivery(&db.pool, id).await
}

/// What the engine needs to send delivery `id`.
pub struct Outgoing {
    pub delivery: Delivery,
    pub kind: DestinationKind,
    pub url: Secret<String>,
    pub secret: Option<Secret<String>>,
    /// The destination answered 410 since: nothing more is sent.
    pub disabled: bool,
    pub notice: Notice,
}

/// Delivery `id` with its destination (URL and secret opened) and the
/// event as it is told; `None` when it is gone (its destination removed).
/// `base` is the server's public URL, for the link to the order.
pub async fn outgoing(
    pool: &AnyPool,
    sealer: &Sealer,
    id: i64,
    base: &str,
) -> Result<Option<Outgoing>> {
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS}, d.kind, d.url_sealed, d.secret_sealed, d.disabled_reason, \
         e.at, e.actor, e.message, e.stage_position, w.title, w.version, i.name AS item, n.path \
         FROM {DELIVERY_FROM} JOIN notification_destinations d ON d.id = x.destination_id \
         JOIN work_orders w ON w.id = e.work_order_id JOIN release_items i ON i.id = w.release_item_id \
         JOIN nodes n ON n.id = i.node_id WHERE x.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let delivery = delivery_from_row(&row)?;
    let destination = delivery.destination_id;
    let open = |sealed: &str, aad: String| {
        sealer
            .open(sealed, &aad)
            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))
    };
    let kind: String = row.try_get("kind")?;
    let secret: Option<String> = row.try_get("secret_sealed")?;
    let notice = Notice {
        event: delivery.event.clone(),
        at: row.try_get("at")?,
        work_order_id: delivery.work_order_id,
        work_order_title: row.try_get("title")?,
        release_item: row.try_get("item")?,
        version: row.try_get("version")?,
        node_path: row.try_get("path")?,
        stage: row.try_get("stage_position")?,
        actor: row.try_get("actor")?,
        message: row.try_get("message")?,
        url: format!(
            "{}/work-orders/{}",
            base.trim_end_matches('/'),
            delivery.work_order_id
        ),
    };
    Ok(Some(Outgoing {
        kind: DestinationKind::parse(&kind)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("destination kind '{kind}'")))?,
        url: open(
            &row.try_get::<String, _>("url_sealed")?,
            url_aad(destination),
        )?,
        secret: secret
            .map(|s| open(&s, secret_aad(destination)))
            .transpose()?,
        disabled: row
            .try_get::<Option<String>, _>("disabled_reason")?
            .is_some(),
        delivery,
        notice,
    }))
}

/// How an attempt ended, as [`record`] writes it.
pub enum Attempted {
    /// The destination took it.
    Delivered { status: u16 },
    /// Not taken; tried again later.
    Retry { status: Option<u16>, error: String },
    /// Not taken, and no attempt is left.
    Failed { status: Option<u16>, error: String },
    /// 410 Gone: the destination is disabled, the delivery failed.
    Gone { error: String },
}

/// Records an attempt at delivery `id`, fenced on the job's lease; closes
/// the job unless it is tried again.
pub async fn record(db: &Db, lease: &JobLease, id: i64, attempted: &Attempted) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    jobs::check_lease(&mut tx, lease).await?;
    let (status, code, error, delivered_at) = match attempted {
        Attempted::Delivered { status } => ("delivered", Some(*status), "", Some(now)),
        Attempted::Retry { status, error } => ("pending", *status, error.as_str(), None),
        Attempted::Failed { status, error } => ("failed", *status, error.as_str(), None),
        Attempted::Gone { error } => ("failed", Some(410), error.as_str(), None),
    };
    sqlx::query(
        "UPDATE notification_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, \
         last_error = $3, attempted_at = $4, delivered_at = $5 WHERE id = $6",
    )
    .bind(status)
    .bind(code.map(i64::from))
    .bind(error)
    .bind(now)
    .bind(delivered_at)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if let Attempted::Gone { error } = attempted {
        sqlx::query(
            "UPDATE notification_destinations SET disabled_reason = $1 WHERE id = \
             (SELECT destination_id FROM notification_deliveries WHERE id = $2)",
        )
        .bind(error)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    if !matches!(attempted, Attempted::Retry { .. }) {
        jobs::close(&mut tx, lease, now).await?;
    }
    tx.commit().await?;
    Ok(())
}
