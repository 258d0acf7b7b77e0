//! Admin pages for users, service accounts and API tokens, and the
//! signed-in person's own account page.

use askama::Template;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::extract::{CsrfForm, NoFields};
use super::once::{self, Shown};
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::{Action, password};
use crate::db::accounts::{self, Account, AccountKind, NewAccount};
use crate::db::id_token_bindings::{self, BindingInfo, NewBinding};
use crate::db::now_ms;
use crate::db::tokens::{self, TokenInfo};
use crate::db::tree::{self as tree_db, Node};
use crate::domain::tree::Role;
use crate::error::{Error, Result};

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/admin/users", list_users)
        .post("/admin/users", create_user)
        .post("/admin/users/{id}/disable", disable_user)
        .post("/admin/users/{id}/enable", enable_user)
        .post("/admin/users/{id}/reset-password", reset_user_password)
        .get("/admin/service-accounts", list_service_accounts)
        .post("/admin/service-accounts", create_service_account)
        .get("/admin/service-accounts/{id}", show_service_account)
        .post(
            "/admin/service-accounts/{id}/disable",
            disable_service_account,
        )
        .post(
            "/admin/service-accounts/{id}/enable",
            enable_service_account,
        )
        .post(
            "/admin/service-accounts/{id}/tokens",
            create_service_account_token,
        )
        .post("/admin/tokens/{id}/revoke", revoke_token)
        .post(
            "/admin/service-accounts/{id}/id-token-bindings",
            create_id_token_binding,
        )
        .post(
            "/admin/id-token-bindings/{id}/delete",
            delete_id_token_binding,
        )
        .get("/account", show_my_account)
        .post("/account/password", change_my_password)
        .post("/account/tokens", create_my_token)
        .post("/account/tokens/{id}/revoke", revoke_my_token)
}

fn require_admin(ctx: &PageCtx) -> Result<()> {
    ctx.state
        .policy
        .require(&ctx.actor.account, Action::ManageAccounts, "/")
}

struct AccountRow {
    account: Account,
    created: Moment,
    /// Linked to a single sign-on identity.
    sso: bool,
}

fn rows(list: Vec<Account>) -> Vec<AccountRow> {
    list.into_iter()
        .map(|account| AccountRow {
            created: Moment::at(account.created_at),
            account,
            sso: false,
        })
        .collect()
}

// ---------------------------------------------------------------- users

/// The users page.
const USERS: &str = "/admin/users";

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<AccountRow>,
    /// A password to show once: (user name, password).
    one_time_password: Option<(String, String)>,
    form: NewUserForm,
    me: i64,
}

#[derive(Deserialize, Default)]
struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    is_admin: Option<String>,
}

async fn render_users(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    mut form: NewUserForm,
) -> Response {
    if let Err(e) = require_admin(ctx) {
        return ctx.error_page(&e);
    }
    let pool = &ctx.state.db.pool;
    let read = async {
        Ok::<_, crate::db::error::Error>((
            accounts::list(pool, AccountKind::User).await?,
            crate::db::oidc::linked(pool).await?,
        ))
    };
    let (users, linked) = match read.await {
        Ok(found) => found,
        Err(e) => return ctx.error_page(&e),
    };
    let mut users = rows(users);
    for row in &mut users {
        row.sso = linked.contains(&row.account.id);
    }
    form.password.clear();
    let one_time_password = match ctx.shown_once(USERS) {
        Some(Shown::Password { user, password }) => Some((user, password)),
        _ => None,
    };
    let page = UsersPage {
        layout: ctx.layout("Users", "admin-users", notice),
        users,
        one_time_password,
        form,
        me: ctx.actor.account.id,
    };
    ctx.render(status, &page)
}

/// Every user, and the form to add one.
async fn list_users(ctx: PageCtx) -> Response {
    render_users(&ctx, StatusCode::OK, None, NewUserForm::default()).await
}

/// Creates a user; a generated password is shown once.
async fn create_user(ctx: PageCtx, CsrfForm(form): CsrfForm<NewUserForm>) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let (password, generated) = if form.password.is_empty() {
            (password::generate(), true)
        } else {
            password::validate(&form.password)?;
            (form.password.clone(), false)
        };
        accounts::validate_name(form.name.trim())?;
        let hash = password::hash_blocking(password.clone()).await?;
        let mut tx = ctx.state.db.begin_write().await?;
        let account = accounts::insert(
            &mut tx,
            &NewAccount {
                kind: AccountKind::User,
                name: form.name.trim(),
                display_name: &form.display_name,
                description: "",
                password_hash: Some(&hash),
                is_admin: form.is_admin.is_some(),
            },
            &ctx.who(),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, Error>((account, generated.then_some(password)))
    }
    .await;
    match result {
        Ok((account, Some(password))) => once::redirect(
            &ctx,
            USERS,
            Notice::success(format!("Created user {}.", account.name)),
            Shown::Password {
                user: account.name,
                password,
            },
        ),
        Ok((account, None)) => redirect_with(
            USERS,
            Notice::success(format!("Created user {}.", account.name)),
        ),
        Err(e) => render_users(&ctx, page_status(&e), Some(Notice::from_error(&e)), form).await,
    }
}

async fn set_disabled(
    ctx: &PageCtx,
    id: i64,
    kind: AccountKind,
    disabled: bool,
) -> Result<Account> {
    require_admin(ctx)?;
    let account = accounts::get_of_kind(&ctx.state.db.pool, id, kind).await?;
    if disabled && account.id == ctx.actor.account.id {
        return Err(Error::Conflict(
            "you cannot disable your own account".into(),
        ));
    }
    accounts::set_disabled(&ctx.state.db, id, disabled, &ctx.who()).await?;
    Ok(account)
}

fn disabled_notice(account: &Account, disabled: bool) -> Notice {
    Notice::success(if disabled {
        format!(
            "Disabled {}; their sessions and tokens stop working now.",
            account.name
        )
    } else {
        format!("Enabled {}.", account.name)
    })
}

async fn toggle_user(ctx: PageCtx, id: i64, disabled: bool) -> Response {
    match set_disabled(&ctx, id, AccountKind::User, disabled).await {
        Ok(account) => redirect_with(USERS, disabled_notice(&account, disabled)),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => {
            render_users(
                &ctx,
                page_status(&e),
                Some(Notice::from_error(&e)),
                NewUserForm::default(),
            )
            .await
        }
    }
}

/// Disables a user and ends their sessions.
async fn disable_user(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    toggle_user(ctx, id, true).await
}

/// Re-enables a user.
async fn enable_user(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    toggle_user(ctx, id, false).await
}

/// Sets a new generated password, shown once, and ends the user's sessions.
async fn reset_user_password(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let account = accounts::get_of_kind(&ctx.state.db.pool, id, AccountKind::User).await?;
        let password = password::generate();
        let hash = password::hash_blocking(password.clone()).await?;
        accounts::set_password_hash(&ctx.state.db, id, &hash, &ctx.who()).await?;
        Ok::<_, Error>((account, password))
    }
    .await;
    match result {
        Ok((account, password)) => once::redirect(
            &ctx,
            USERS,
            Notice::success(format!("Reset the password of {}.", account.name)),
            Shown::Password {
                user: account.name,
                password,
            },
        ),
        Err(e) => ctx.error_page(&e),
    }
}

// ---------------------------------------------------------- service accounts

#[derive(Template)]
#[template(path = "service_accounts.html")]
struct ServiceAccountsPage {
    layout: Layout,
    accounts: Vec<AccountRow>,
    form: NewServiceAccountForm,
    roles: [Role; 3],
}

#[derive(Deserialize, Default)]
struct NewServiceAccountForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    role: String,
}

async fn render_service_accounts(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    form: NewServiceAccountForm,
) -> Response {
    if let Err(e) = require_admin(ctx) {
        return ctx.error_page(&e);
    }
    let list = match accounts::list(&ctx.state.db.pool, AccountKind::ServiceAccount).await {
        Ok(l) => l,
        Err(e) => return ctx.error_page(&e),
    };
    let page = ServiceAccountsPage {
        layout: ctx.layout("Service accounts", "admin-service-accounts", notice),
        accounts: rows(list),
        form,
        roles: Role::ALL,
    };
    ctx.render(status, &page)
}

/// Every service account, and the form to add one.
async fn list_service_accounts(ctx: PageCtx) -> Response {
    render_service_accounts(&ctx, StatusCode::OK, None, NewServiceAccountForm::default()).await
}

/// Creates a service account and binds it to a node, in one go.
async fn create_service_account(
    ctx: PageCtx,
    CsrfForm(form): CsrfForm<NewServiceAccountForm>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let node = match form.node.trim() {
            "" => None,
            path => Some(
                tree_db::find_by_path(&ctx.state.db.pool, path)
                    .await?
                    .ok_or_else(|| Error::validation("node", format!("no tree node at {path}")))?,
            ),
        };
        let role: Role = if form.role.is_empty() {
            Role::Engineer
        } else {
            form.role
                .parse()
                .map_err(|m: String| Error::validation("role", m))?
        };
        Ok::<_, Error>(
            accounts::create_service_account(
                &ctx.state.db,
                form.name.trim(),
                &form.description,
                node.as_ref().map(|node| (node, role)),
                &ctx.who(),
            )
            .await?,
        )
    }
    .await;
    match result {
        Ok(account) => redirect_with(
            &service_account_page(account.id),
            Notice::success(format!(
                "Created service account {}. Create a token for it below.",
                account.name
            )),
        ),
        Err(e) => {
            render_service_accounts(&ctx, page_status(&e), Some(Notice::from_error(&e)), form).await
        }
    }
}

struct TokenRow {
    token: TokenInfo,
    state: &'static str,
    created: Moment,
    expires: Moment,
    last_used: Moment,
}

fn token_rows(list: Vec<TokenInfo>) -> Vec<TokenRow> {
    let now = now_ms();
    list.into_iter()
        .map(|token| TokenRow {
            state: token.state(now),
            created: Moment::at(token.created_at),
            expires: Moment(token.expires_at),
            last_used: Moment(token.last_used_at),
            token,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "service_account.html")]
struct ServiceAccountPage {
    layout: Layout,
    account: Account,
    bindings: Vec<(Node, Role)>,
    tokens: Vec<TokenRow>,
    new_token: Option<String>,
    /// Where the token form posts, where revoking posts, and a label idea.
    create_action: String,
    revoke_base: &'static str,
    token_example: &'static str,
    /// GitLab CI ID tokens bound to this account, and the form to add one.
    ci_bindings: Vec<BindingInfo>,
    ci_form: BindingForm,
    /// The `aud` CI jobs must ask for: Rollway's public URL, when set.
    audience: Option<String>,
}

/// A service account's page.
fn service_account_page(id: i64) -> String {
    format!("/admin/service-accounts/{id}")
}

/// A token a form just made, handed to `page` to show once.
fn new_token(ctx: &PageCtx, page: &str) -> Option<String> {
    match ctx.shown_once(page) {
        Some(Shown::Token { token }) => Some(token),
        _ => None,
    }
}

async fn render_service_account(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    render_service_account_with(ctx, id, status, notice, BindingForm::default()).await
}

async fn render_service_account_with(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
    ci_form: BindingForm,
) -> Response {
    let result = async {
        require_admin(ctx)?;
        let pool = &ctx.state.db.pool;
        let account = accounts::get_of_kind(pool, id, AccountKind::ServiceAccount).await?;
        let bindings = tree_db::memberships_of(pool, id).await?;
        let tokens = token_rows(tokens::list(pool, Some(id)).await?);
        let ci_bindings = id_token_bindings::list(pool, Some(id)).await?;
        Ok::<_, Error>(ServiceAccountPage {
            ci_bindings,
            ci_form,
            audience: ctx
                .state
                .config
                .public_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_string()),
            layout: ctx.layout(
                format!("Service account {}", account.name),
                "admin-service-accounts",
                notice,
            ),
            create_action: format!("/admin/service-accounts/{}/tokens", account.id),
            revoke_base: "/admin/tokens",
            token_example: "gitlab-ci",
            new_token: new_token(ctx, &service_account_page(account.id)),
            account,
            bindings,
            tokens,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// One service account: where it is bound, its tokens.
async fn show_service_account(ctx: PageCtx, Path(id): Path<i64>) -> Response {
    render_service_account(&ctx, id, StatusCode::OK, None).await
}

async fn toggle_service_account(ctx: PageCtx, id: i64, disabled: bool) -> Response {
    match set_disabled(&ctx, id, AccountKind::ServiceAccount, disabled).await {
        Ok(account) => redirect_with(
            &service_account_page(id),
            disabled_notice(&account, disabled),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

/// Disables a service account; its tokens stop working at once.
async fn disable_service_account(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    toggle_service_account(ctx, id, true).await
}

/// Re-enables a service account.
async fn enable_service_account(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    toggle_service_account(ctx, id, false).await
}

#[derive(Deserialize)]
struct NewTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in_days: String,
}

/// Creates a token and shows it once.
async fn create_service_account_token(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<NewTokenForm>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        accounts::get_of_kind(&ctx.state.db.pool, id, AccountKind::ServiceAccount).await?;
        let expires = expiry_days(&form.expires_in_days)?;
        Ok::<_, Error>(tokens::create(&ctx.state.db, id, &form.name, expires, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok((info, secret)) => once::redirect(
            &ctx,
            &service_account_page(id),
            Notice::success(format!("Created token '{}'.", info.name)),
            Shown::Token {
                token: secret.expose().clone(),
            },
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => {
            render_service_account(&ctx, id, page_status(&e), Some(Notice::from_error(&e))).await
        }
    }
}

/// Revokes a token.
async fn revoke_token(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        Ok::<_, Error>(tokens::revoke(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(info) => redirect_with(
            &service_account_page(info.account_id),
            Notice::success(format!("Revoked token '{}'.", info.name)),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

/// The form binding GitLab CI ID tokens to a service account.
#[derive(Deserialize, Default)]
struct BindingForm {
    #[serde(default)]
    project_path: String,
    #[serde(default)]
    ref_type: String,
    #[serde(default, rename = "ref")]
    ref_pattern: String,
    #[serde(default)]
    protected_only: Option<String>,
}

/// Binds GitLab CI ID tokens matching the form's claims to the account.
async fn create_id_token_binding(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<BindingForm>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        accounts::get_of_kind(&ctx.state.db.pool, id, AccountKind::ServiceAccount).await?;
        Ok::<_, Error>(
            id_token_bindings::create(
                &ctx.state.db,
                &NewBinding {
                    service_account_id: id,
                    project_path: &form.project_path,
                    ref_type: Some(form.ref_type.as_str()),
                    ref_pattern: Some(form.ref_pattern.as_str()),
                    protected_only: form.protected_only.is_some(),
                },
                &ctx.who(),
            )
            .await?,
        )
    }
    .await;
    match result {
        Ok(info) => redirect_with(
            &service_account_page(id),
            Notice::success(format!(
                "GitLab CI ID tokens of {} now act as {}.",
                id_token_bindings::describe(&info),
                info.service_account
            )),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => {
            render_service_account_with(
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

/// Removes a binding of GitLab CI ID tokens.
async fn delete_id_token_binding(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        Ok::<_, Error>(id_token_bindings::delete(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(info) => redirect_with(
            &service_account_page(info.service_account_id),
            Notice::success(format!(
                "GitLab CI ID tokens of {} no longer act as {}.",
                id_token_bindings::describe(&info),
                info.service_account
            )),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

// ---------------------------------------------------------- my account

#[derive(Template)]
#[template(path = "account.html")]
struct MyAccountPage {
    layout: Layout,
    account: Account,
    memberships: Vec<(Node, Role)>,
    /// Whether they have a password to change.
    has_password: bool,
    /// Personal API tokens: they act as this person.
    tokens: Vec<TokenRow>,
    new_token: Option<String>,
    create_action: String,
    revoke_base: &'static str,
    token_example: &'static str,
}

/// The signed-in person's own page.
const MY_ACCOUNT: &str = "/account";

async fn render_my_account(ctx: &PageCtx, status: StatusCode, notice: Option<Notice>) -> Response {
    let account = ctx.actor.account.clone();
    let pool = &ctx.state.db.pool;
    let result = async {
        Ok::<_, Error>((
            tree_db::memberships_of(pool, account.id).await?,
            token_rows(tokens::list(pool, Some(account.id)).await?),
            accounts::has_password(pool, account.id).await?,
        ))
    }
    .await;
    match result {
        Ok((memberships, tokens, has_password)) => {
            let page = MyAccountPage {
                layout: ctx.layout("My account", "account", notice),
                account,
                memberships,
                has_password,
                tokens,
                new_token: new_token(ctx, MY_ACCOUNT),
                create_action: "/account/tokens".into(),
                revoke_base: "/account/tokens",
                token_example: "my laptop",
            };
            ctx.render(status, &page)
        }
        Err(e) => ctx.error_page(&e),
    }
}

/// A whole number of days from a form field, blank for none.
fn expiry_days(raw: &str) -> Result<Option<u32>> {
    match raw.trim() {
        "" => Ok(None),
        raw => raw.parse::<u32>().map(Some).map_err(|_| {
            Error::validation(
                "expires_in_days",
                format!("'{raw}' is not a whole number of days"),
            )
        }),
    }
}

/// Creates a personal token for the signed-in person and shows it once.
async fn create_my_token(ctx: PageCtx, CsrfForm(form): CsrfForm<NewTokenForm>) -> Response {
    let result = async {
        let expires = expiry_days(&form.expires_in_days)?;
        Ok::<_, Error>(
            tokens::create(
                &ctx.state.db,
                ctx.actor.account.id,
                &form.name,
                expires,
                &ctx.who(),
            )
            .await?,
        )
    }
    .await;
    match result {
        Ok((info, secret)) => once::redirect(
            &ctx,
            MY_ACCOUNT,
            Notice::success(format!("Created token '{}'.", info.name)),
            Shown::Token {
                token: secret.expose().clone(),
            },
        ),
        Err(e) => render_my_account(&ctx, page_status(&e), Some(Notice::from_error(&e))).await,
    }
}

/// Revokes one of the signed-in person's own tokens (anyone else's answers
/// as a missing one).
async fn revoke_my_token(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        match tokens::get(&ctx.state.db.pool, id).await? {
            Some(t) if t.account_id == ctx.actor.account.id => {}
            _ => return Err(Error::NotFound(format!("token {id} not found"))),
        }
        Ok(tokens::revoke(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(info) => redirect_with(
            MY_ACCOUNT,
            Notice::success(format!("Revoked token '{}'.", info.name)),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

/// The signed-in person's roles and password form.
async fn show_my_account(ctx: PageCtx) -> Response {
    render_my_account(&ctx, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

/// Changes one's own password; every session (this one too) ends.
async fn change_my_password(ctx: PageCtx, CsrfForm(form): CsrfForm<PasswordForm>) -> Response {
    // The current password is a guess like a login: the same limits apply,
    // or a stolen session could try thousands of them (each an argon2 hash).
    let mut retry_after = None;
    let result = async {
        if let Err(wait) = ctx
            .state
            .login_limiter
            .check(&ctx.actor.account.name, ctx.actor.ip)
        {
            let secs = wait.as_secs().max(1);
            retry_after = Some(secs);
            return Err(Error::RateLimited(format!(
                "Too many password attempts. Try again in {secs} seconds."
            )));
        }
        let (_, hash) = accounts::find_for_login(&ctx.state.db.pool, &ctx.actor.account.name)
            .await?
            .ok_or_else(|| Error::Forbidden("this account has no password".into()))?;
        if !password::verify_blocking(form.current_password, hash).await {
            return Err(Error::validation(
                "current_password",
                "the current password is wrong",
            ));
        }
        password::validate(&form.new_password)?;
        let new_hash = password::hash_blocking(form.new_password).await?;
        Ok::<_, Error>(
            accounts::set_password_hash(&ctx.state.db, ctx.actor.account.id, &new_hash, &ctx.who())
                .await?,
        )
    }
    .await;
    match result {
        Ok(()) => redirect_with(
            "/login",
            Notice::success("Password changed. Log in with the new one."),
        ),
        Err(e) => {
            let mut response =
                render_my_account(&ctx, page_status(&e), Some(Notice::from_error(&e))).await;
            if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }
}
