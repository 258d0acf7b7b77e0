//! Freeze windows in the pages: the node page lists the windows covering
//! the node and lets its owners set and remove them (the form and its
//! rows are built here), the calendar lists what is coming across what
//! the reader sees, and an owner of a frozen node lets a hotfix through
//! from the work order's page.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::Action;
use crate::db::freezes::FreezeWindow;
use crate::db::now_ms;
use crate::domain::freeze::{ENVIRONMENTS, local_ms};
use crate::error::{Error, Result};
use crate::flows::freezes::{self, WindowRequest};

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/freezes", calendar)
        .post("/tree/nodes/{id}/freeze-windows", create_window)
        .post("/freeze-windows/{id}/delete", delete_window)
        .post("/work-orders/{id}/freeze-override", override_freeze)
}

/// Time zones offered in the form (any IANA name may be typed).
pub(super) const ZONES: [&str; 12] = [
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
];

/// A window as a page row shows it.
pub(super) struct FreezeRow {
    pub w: FreezeWindow,
    /// Its schedule in words.
    pub when: String,
    /// On now, next, or over, in words.
    pub status: String,
    pub on_now: bool,
    /// Set on a node above the one shown.
    pub inherited: bool,
    /// The reader may remove it.
    pub can_remove: bool,
}

/// `at` in the time zone of `schedule` (a recurring window's), else UTC.
pub(super) fn local_time(schedule: Option<&crate::domain::freeze::Schedule>, at: i64) -> String {
    schedule
        .map(|s| s.local(at))
        .unwrap_or_else(|| super::moments::format_time(at))
}

/// `windows` as rows for a reader on the node at `here`.
pub(super) fn rows(ctx: &PageCtx, windows: Vec<FreezeWindow>, here: &str) -> Vec<FreezeRow> {
    windows
        .into_iter()
        .map(|w| {
            let schedule = w.schedule();
            let local = |at: i64| local_time(schedule.as_ref(), at);
            let when = match (
                &w.cron_start,
                &w.cron_end,
                &w.time_zone,
                w.starts_at,
                w.ends_at,
            ) {
                (Some(start), Some(end), Some(zone), ..) => {
                    format!("every '{start}' until '{end}' ({zone})")
                }
                (.., Some(from), Some(to)) => format!("from {} to {}", local(from), local(to)),
                _ => "a schedule that no longer reads".into(),
            };
            let status = match (w.active, w.next) {
                (Some(on), _) => format!(
                    "On now, until {} ({})",
                    local(on.end),
                    super::moments::ago(on.end)
                ),
                (None, Some(next)) => format!(
                    "Next from {} ({}) to {}",
                    local(next.start),
                    super::moments::ago(next.start),
                    local(next.end)
                ),
                (None, None) => "Over: nothing more to freeze".into(),
            };
            FreezeRow {
                on_now: w.active.is_some(),
                inherited: w.node_path != here,
                can_remove: ctx.may(Action::ManageFreezes, &w.node_path),
                when,
                status,
                w,
            }
        })
        .collect()
}

/// The node page's window form, as sent (to fill in again after a
/// refusal).
#[derive(Deserialize, Default)]
pub(super) struct FreezeForm {
    #[serde(default)]
    pub reason: String,
    /// `once` or `recurring`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub starts: String,
    #[serde(default)]
    pub ends: String,
    #[serde(default)]
    pub cron_start: String,
    #[serde(default)]
    pub cron_end: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub env_dev: Option<String>,
    #[serde(default)]
    pub env_test: Option<String>,
    #[serde(default)]
    pub env_staging: Option<String>,
    #[serde(default)]
    pub env_prod: Option<String>,
}

impl FreezeForm {
    /// Whether environment class `e` is ticked.
    pub fn ticked(&self, e: &str) -> bool {
        match e {
            "dev" => self.env_dev.is_some(),
            "test" => self.env_test.is_some(),
            "staging" => self.env_staging.is_some(),
            "prod" => self.env_prod.is_some(),
            _ => false,
        }
    }

    pub fn recurring(&self) -> bool {
        self.kind == "recurring"
    }

    /// The zone to show: as sent, else UTC.
    pub fn zone(&self) -> &str {
        match self.time_zone.trim() {
            "" => "UTC",
            zone => zone,
        }
    }

    pub fn environments(&self) -> &'static [&'static str] {
        &ENVIRONMENTS
    }
}

/// Sets a window on node `id` from the node page's form.
async fn create_window(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<FreezeForm>,
) -> Response {
    let environments: Vec<String> = ENVIRONMENTS
        .iter()
        .filter(|e| form.ticked(e))
        .map(|e| e.to_string())
        .collect();
    let zone = form.zone().to_string();
    let result = async {
        let (starts_at, ends_at, cron_start, cron_end) = if form.recurring() {
            (
                None,
                None,
                Some(form.cron_start.trim()),
                Some(form.cron_end.trim()),
            )
        } else {
            let at = |text: &str, field: &'static str| {
                if text.trim().is_empty() {
                    return Err(Error::validation(field, "give a date and time"));
                }
                local_ms(text, &zone).map_err(|m| Error::validation(field, m))
            };
            (
                Some(at(&form.starts, "starts")?),
                Some(at(&form.ends, "ends")?),
                None,
                None,
            )
        };
        let asked = WindowRequest {
            reason: &form.reason,
            starts_at,
            ends_at,
            cron_start,
            cron_end,
            time_zone: form.recurring().then_some(zone.as_str()),
            environments: &environments,
        };
        freezes::create(&ctx.state, &ctx.actor.account, &ctx.who(), id, &asked).await
    }
    .await;
    match result {
        Ok(w) => redirect_with(
            &format!("/tree/nodes/{id}"),
            Notice::success(format!(
                "Freeze window \"{}\" set on {}.",
                w.reason, w.node_path
            )),
        ),
        Err(e @ Error::NotFound(_)) => ctx.error_page(&e),
        Err(e) => {
            super::tree::render_node_with_freeze(
                &ctx,
                id,
                page_status(&e),
                Some(Notice::from_error(&e)),
                form,
            )
            .await
        }
    }
}

/// Removes window `id`; back to the node it was set on.
async fn delete_window(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::extract::NoFields>,
) -> Response {
    match freezes::delete(&ctx.state, &ctx.actor.account, &ctx.who(), id).await {
        Ok(w) => redirect_with(
            &format!("/tree/nodes/{}", w.node_id),
            Notice::success(format!(
                "Freeze window \"{}\" on {} removed.",
                w.reason, w.node_path
            )),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

#[derive(Deserialize, Default)]
struct OverrideForm {
    #[serde(default)]
    comment: String,
}

/// Lets hotfix order `id` through the freeze holding it.
async fn override_freeze(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<OverrideForm>,
) -> Response {
    let to = format!("/work-orders/{id}");
    let done: Result<Vec<FreezeWindow>> = freezes::override_freeze(
        &ctx.state,
        &ctx.actor.account,
        &ctx.who(),
        id,
        &form.comment,
    )
    .await;
    match done {
        Ok(lifted) => redirect_with(
            &to,
            Notice::success(format!(
                "Let this hotfix through {}.",
                lifted
                    .iter()
                    .map(|w| format!("\"{}\"", w.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => redirect_with(&to, Notice::from_error(&e)),
    }
}

#[derive(Template)]
#[template(path = "freezes.html")]
struct CalendarPage {
    layout: Layout,
    entries: Vec<Entry>,
    days: i64,
    /// Stops of the line in force that the reader sees.
    stops: Vec<super::line_stops::StopRow>,
}

struct Entry {
    e: crate::flows::freezes::CalendarEntry,
    from: String,
    to: String,
    starts: Moment,
}

/// How far the calendar page looks ahead.
const CALENDAR_DAYS: i64 = 60;

/// The coming stretches of every window the reader sees.
async fn calendar(ctx: PageCtx) -> Response {
    let result = async {
        let windows = freezes::all_visible(&ctx.state, &ctx.actor.account).await?;
        let schedules: std::collections::HashMap<i64, _> = windows
            .iter()
            .filter_map(|w| Some((w.id, w.schedule()?)))
            .collect();
        let entries = crate::flows::freezes::calendar_of(&windows, now_ms(), CALENDAR_DAYS)
            .into_iter()
            .map(|e| {
                let local = |at: i64| local_time(schedules.get(&e.window_id), at);
                Entry {
                    from: local(e.start),
                    to: local(e.end),
                    starts: Moment::at(e.start),
                    e,
                }
            })
            .collect();
        let stops = crate::flows::line_stops::active_visible(&ctx.state, &ctx.actor.account)
            .await?
            .into_iter()
            .map(|s| super::line_stops::StopRow::of(&ctx, s))
            .collect();
        Ok::<_, Error>(CalendarPage {
            stops,
            layout: ctx.layout("Freeze calendar", "tree", None),
            entries,
            days: CALENDAR_DAYS,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}
