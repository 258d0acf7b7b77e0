//! The settings page (admins): the GitLab connection.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::Action;
use crate::error::Result;
use crate::gitlab::{GitlabClient, GitlabSettings};
use crate::secret::Secret;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/admin/settings", show_settings)
        .post("/admin/settings", save_gitlab_settings)
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    gitlab: GitlabSettings,
    updated: Moment,
}

async fn render(ctx: &PageCtx, status: StatusCode, notice: Option<Notice>) -> Response {
    let result: Result<SettingsPage> = async {
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::ManageRegistry, "/")?;
        let gitlab = GitlabClient::settings(&ctx.state.db).await?;
        Ok(SettingsPage {
            layout: ctx.layout("Settings", "admin-settings", notice),
            updated: Moment(gitlab.updated_at),
            gitlab,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// The GitLab connection.
async fn show_settings(ctx: PageCtx) -> Response {
    render(&ctx, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct GitlabForm {
    url: String,
    #[serde(default)]
    token: String,
}

/// Saves the GitLab connection and tests it.
async fn save_gitlab_settings(ctx: PageCtx, CsrfForm(form): CsrfForm<GitlabForm>) -> Response {
    let saved = async {
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::ManageRegistry, "/")?;
        let token = Some(form.token.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        GitlabClient::save_settings(
            &ctx.state.db,
            &ctx.state.sealer,
            &form.url,
            token.as_ref(),
            &ctx.who(),
        )
        .await
    }
    .await;
    match saved {
        Err(e) => render(&ctx, page_status(&e), Some(Notice::from_error(&e))).await,
        Ok(_) => match ctx
            .state
            .gitlab
            .test_connection(&ctx.state.db, &ctx.state.sealer)
            .await
        {
            Ok(()) => redirect_with(
                "/admin/settings",
                Notice::success("Saved. GitLab answered with these settings."),
            ),
            Err(e) => redirect_with(
                "/admin/settings",
                Notice::error(format!(
                    "Saved, but the connection test failed: {}",
                    e.public_message()
                )),
            ),
        },
    }
}
