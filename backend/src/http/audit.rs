//! The audit log page (admins): newest first, filtered, keyset pages.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Layout, Moment, PageCtx, PageRoutes};
use crate::auth::Action;
use crate::db::audit::{self, AuditEntry, Filter};

pub fn routes() -> PageRoutes {
    PageRoutes::new().get("/admin/audit", show_audit_log)
}

const PAGE_SIZE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target_type: String,
    before: Option<i64>,
}

struct Row {
    entry: AuditEntry,
    at: Moment,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    rows: Vec<Row>,
    query: AuditQuery,
    /// Query string of the next (older) page, when there is one.
    older: Option<String>,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Every change, who made it, from where, before and after.
async fn show_audit_log(ctx: PageCtx, Query(query): Query<AuditQuery>) -> Response {
    if let Err(e) = ctx
        .state
        .policy
        .require(&ctx.actor.account, Action::ManageAccounts, "/")
    {
        return ctx.error_page(&e);
    }
    let filter = Filter {
        actor: non_empty(&query.actor),
        action: non_empty(&query.action),
        target_type: non_empty(&query.target_type),
        before_id: query.before,
    };
    let (entries, more) = match audit::list(&ctx.state.db.pool, &filter, PAGE_SIZE).await {
        Ok(found) => found,
        Err(e) => return ctx.error_page(&e),
    };
    let older = match (more, entries.last()) {
        (true, Some(last)) => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("actor", query.actor.trim());
            q.append_pair("action", query.action.trim());
            q.append_pair("target_type", query.target_type.trim());
            q.append_pair("before", &last.id.to_string());
            Some(q.finish())
        }
        _ => None,
    };
    let rows = entries
        .into_iter()
        .map(|entry| Row {
            at: Moment::at(entry.at),
            entry,
        })
        .collect();
    let page = AuditPage {
        layout: ctx.layout("Audit log", "admin-audit", None),
        rows,
        query,
        older,
    };
    ctx.render(StatusCode::OK, &page)
}
