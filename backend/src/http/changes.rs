//! What an order changes: the commits between what each stage runs (or
//! ran) and the order's version, from GitLab with a short deadline. A
//! fragment the order page loads after it is shown, or a page of its own.

use askama::Template;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::{Layout, Moment, PageCtx, PageRoutes, parse_rfc3339};
use crate::error::Error;
use crate::flows::changes::{self, Comparison, MAX_COMMITS};
use crate::gitlab::Commit;

pub fn routes() -> PageRoutes {
    PageRoutes::new().get("/work-orders/{id}/changes", changes)
}

#[derive(Template)]
#[template(path = "changes_list.html")]
struct ChangesFragment {
    comparisons: Vec<Comparison>,
    max: usize,
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    layout: Layout,
    order_id: i64,
    title: String,
    /// The comparisons, as the fragment shows them.
    list: ChangesFragment,
}

impl ChangesFragment {
    fn when(&self, c: &Commit) -> Moment {
        commit_time(c)
    }
}

/// When a commit was made, as GitLab says (RFC 3339).
fn commit_time(c: &Commit) -> Moment {
    Moment(c.created_at.as_deref().and_then(parse_rfc3339))
}

async fn changes(ctx: PageCtx, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let result = async {
        let d = crate::flows::work_orders::detail(
            &ctx.state,
            &ctx.actor.account,
            Some(ctx.actor.board_version),
            id,
        )
        .await?;
        let comparisons = changes::comparisons(&ctx.state, &d).await?;
        Ok::<_, Error>((d, comparisons))
    }
    .await;
    let (d, comparisons) = match result {
        Ok(found) => found,
        Err(e) => return ctx.error_page(&e),
    };
    let list = ChangesFragment {
        comparisons,
        max: MAX_COMMITS,
    };
    if headers.contains_key("hx-request") {
        return match list.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => ctx.error_page(&Error::Internal(e.into())),
        };
    }
    let page = ChangesPage {
        layout: ctx.layout(format!("Changes of #{id}"), "work-orders", None),
        order_id: id,
        title: d.order.title,
        list,
    };
    ctx.render(StatusCode::OK, &page)
}
