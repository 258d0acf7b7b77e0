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
    /// Where the changed object is shown, while it is.
    link: Option<String>,
    /// What changed, field by field: (field, before, after).
    diff: Vec<Change>,
}

/// One field of a change: its dotted path and its value before and after
/// (`None`: not there).
#[derive(Debug, PartialEq, Eq)]
struct Change {
    field: String,
    before: Option<String>,
    after: Option<String>,
}

/// The page of an audit row's object.
fn link_of(e: &AuditEntry) -> Option<String> {
    let id = e.target_id;
    match (e.target_type.as_str(), id) {
        ("node", Some(id)) => Some(format!("/tree/nodes/{id}")),
        ("release_item", Some(id)) => Some(format!("/release-items/{id}")),
        ("work_order", Some(id)) => Some(format!("/work-orders/{id}")),
        ("cluster", Some(id)) => Some(format!("/admin/clusters/{id}")),
        ("app", Some(_)) => Some("/admin/apps".into()),
        ("account", Some(_)) => Some("/admin/users".into()),
        ("settings", _) => Some("/admin/settings".into()),
        _ => None,
    }
}

/// `value` as dotted paths to its leaves, written as JSON.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The fields that differ between two snapshots (JSON text, as recorded),
/// in the order they appear; a snapshot that is not JSON is one field.
fn diff(before: Option<&str>, after: Option<&str>) -> Vec<Change> {
    let leaves = |text: Option<&str>| {
        let mut out = Vec::new();
        if let Some(text) = text {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(v) => flatten("", &v, &mut out),
                Err(_) => out.push(("value".to_string(), text.to_string())),
            }
        }
        out
    };
    let (b, a) = (leaves(before), leaves(after));
    let find = |list: &[(String, String)], k: &str| {
        list.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone())
    };
    let mut fields: Vec<&String> = b.iter().map(|(f, _)| f).collect();
    for (f, _) in &a {
        if !fields.contains(&f) {
            fields.push(f);
        }
    }
    fields
        .into_iter()
        .filter_map(|f| {
            let (old, new) = (find(&b, f), find(&a, f));
            (old != new).then(|| Change {
                field: f.clone(),
                before: old,
                after: new,
            })
        })
        .collect()
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
            link: link_of(&entry),
            diff: diff(entry.before.as_deref(), entry.after.as_deref()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reads_field_by_field() {
        let before =
            r#"{"name":"cart","stages":[{"name":"staging","app_id":1}],"required_approvals":1}"#;
        let after = r#"{"name":"cart","stages":[{"name":"staging","app_id":2},{"name":"prod","app_id":3}],"required_approvals":2}"#;
        let changes = diff(Some(before), Some(after));
        let show = |c: &Change| {
            format!(
                "{}: {} -> {}",
                c.field,
                c.before.as_deref().unwrap_or("-"),
                c.after.as_deref().unwrap_or("-")
            )
        };
        assert_eq!(
            changes.iter().map(show).collect::<Vec<_>>(),
            [
                "required_approvals: 1 -> 2",
                "stages[0].app_id: 1 -> 2",
                "stages[1].app_id: - -> 3",
                "stages[1].name: - -> prod",
            ]
        );
        // Created or removed: every field on one side.
        assert_eq!(
            diff(None, Some(r#"{"a":"x"}"#))[0].after.as_deref(),
            Some("x")
        );
        assert_eq!(diff(Some("not json"), None)[0].field, "value");
        assert!(diff(Some(before), Some(before)).is_empty());
    }
}
