//! The settings page (admins): the GitLab connection, and single sign-on
//! as the server was started with.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::Action;
use crate::config::PasswordLogin;
use crate::db::tree as tree_db;
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
    /// Single sign-on as configured, when it is.
    sso: Option<SsoView>,
    /// Who may log in with a password, in words.
    password_login: &'static str,
}

/// Single sign-on's settings as the page shows them (never the secret).
struct SsoView {
    name: String,
    issuer: String,
    client_id: String,
    secret_set: bool,
    redirect_uri: String,
    user_claim: String,
    groups_claim: Option<String>,
    admin_group: Option<String>,
    /// (group, node path, role, whether the node exists)
    group_roles: Vec<(String, String, String, bool)>,
}

async fn sso_view(ctx: &PageCtx) -> Result<Option<SsoView>> {
    let Some(c) = &ctx.state.config.oidc else {
        return Ok(None);
    };
    let mut group_roles = Vec::new();
    for g in &c.group_roles {
        let exists = tree_db::find_by_path(&ctx.state.db.pool, &g.path)
            .await?
            .is_some();
        group_roles.push((g.group.clone(), g.path.clone(), g.role.clone(), exists));
    }
    Ok(Some(SsoView {
        name: c.name.clone(),
        issuer: c.issuer.clone(),
        client_id: c.client_id.clone(),
        secret_set: c.client_secret.is_some(),
        redirect_uri: c.redirect_uri.clone(),
        user_claim: c.user_claim.clone(),
        groups_claim: c.groups_claim.clone(),
        admin_group: c.admin_group.clone(),
        group_roles,
    }))
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
            sso: sso_view(ctx).await?,
            password_login: match ctx.state.config.password_login {
                PasswordLogin::On => "every user who has a password",
                PasswordLogin::Admins => "administrators only",
                PasswordLogin::Off => "nobody: people sign in through the provider",
            },
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
