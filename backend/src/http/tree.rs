//! Service tree pages: browse, node page, children, members.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::{CsrfForm, NoFields};
use super::once::Shown;
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::Action;
use crate::db::tree::{self as tree_db, Member, Node};
use crate::domain::tree::{self, Role};
use crate::error::{Error, Result};

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/tree", show_tree)
        .post("/tree/nodes", create_node)
        .get("/tree/nodes/{id}", show_node)
        .post("/tree/nodes/{id}/title", edit_node_title)
        .post("/tree/nodes/{id}/delete", delete_node)
        .post("/tree/nodes/{id}/members", add_member)
        .post(
            "/tree/nodes/{id}/members/{account_id}/delete",
            remove_member,
        )
}

#[derive(Template)]
#[template(path = "tree.html")]
struct TreePage {
    layout: Layout,
    nodes: Vec<Node>,
    can_create_root: bool,
    form_name: String,
    form_title: String,
}

/// The subtrees this person may view (the whole tree, for admins),
/// indented by depth. Nodes above them are not listed: their names are in
/// the paths shown, and nothing more of them is.
async fn show_tree(ctx: PageCtx) -> Response {
    render_tree(&ctx, StatusCode::OK, None, String::new(), String::new()).await
}

async fn render_tree(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    form_name: String,
    form_title: String,
) -> Response {
    let nodes = match tree_db::list_all(&ctx.state.db.pool, ctx.read_scope()).await {
        Ok(n) => n,
        Err(e) => return ctx.error_page(&e),
    };
    let page = TreePage {
        layout: ctx.layout("Service tree", "tree", notice),
        nodes,
        can_create_root: ctx.may(Action::CreateChildNode, "/"),
        form_name,
        form_title,
    };
    ctx.render(status, &page)
}

/// A node above the page's node, in the breadcrumbs: a link when the
/// viewer may open it, its name alone otherwise (it is in the path anyway).
struct Crumb {
    id: i64,
    name: String,
    link: bool,
}

/// A member row with what the viewer may do with it.
struct MemberRow {
    member: Member,
    added: Moment,
}

#[derive(Template)]
#[template(path = "node.html")]
struct NodePage {
    layout: Layout,
    node: Node,
    ancestors: Vec<Crumb>,
    children: Vec<Node>,
    members: Vec<MemberRow>,
    /// Where the approvers come from and who they are.
    approvers: Option<(String, Vec<String>)>,
    my_roles: Vec<&'static str>,
    roles: [Role; 3],
    can_edit: bool,
    can_add_child: bool,
    can_manage_members: bool,
    can_delete: bool,
    can_manage_items: bool,
    is_admin: bool,
    items: Vec<crate::db::release_items::ReleaseItem>,
    apps: Vec<crate::db::apps::App>,
    /// Freeze windows covering the node, nearest first.
    freezes: Vec<super::freezes::FreezeRow>,
    can_manage_freezes: bool,
    zones: &'static [&'static str],
    /// Stops of the line over the node, nearest first.
    stops: Vec<super::line_stops::StopRow>,
    /// The reader may stop the line here (and the line is not stopped
    /// here already).
    can_stop_line: bool,
    /// Notification destinations covering the node, nearest first (for
    /// those who manage them).
    destinations: Vec<crate::db::notifications::Destination>,
    can_manage_notifications: bool,
    form: NodeForms,
}

/// Values to refill forms with after a refused submission.
#[derive(Default)]
struct NodeForms {
    child_name: String,
    child_title: String,
    member_account: String,
    member_role: String,
    freeze: super::freezes::FreezeForm,
    destination: super::notifications::DestinationForm,
    /// A destination just set: its name and secret, shown once.
    new_destination: Option<super::notifications::NewDestination>,
}

/// A node's page.
pub(super) fn node_page(id: i64) -> String {
    format!("/tree/nodes/{id}")
}

async fn load_node_page(
    ctx: &PageCtx,
    id: i64,
    notice: Option<Notice>,
    mut form: NodeForms,
) -> Result<NodePage> {
    let pool = &ctx.state.db.pool;
    let node = ctx.visible(tree_db::get(pool, id).await)?;
    let ancestors = tree_db::ancestors(pool, &node)
        .await?
        .into_iter()
        .map(|a| Crumb {
            link: ctx.may(Action::ViewNode, &a.path),
            id: a.id,
            name: a.name,
        })
        .collect();
    let children = tree_db::children(pool, Some(id)).await?;
    let members = tree_db::members(pool, id)
        .await?
        .into_iter()
        .map(|member| MemberRow {
            added: Moment::at(member.created_at),
            member,
        })
        .collect();
    let chain = tree_db::memberships_on_chain(pool, &node.path).await?;
    let approvers = tree::effective_approvers(&node.path, &chain)
        .map(|(from, owners)| (from, owners.into_iter().collect()));
    let my_roles = tree::effective_roles(&ctx.actor.account.name, &node.path, &chain)
        .into_iter()
        .map(Role::as_str)
        .collect();
    let windows = crate::db::freezes::covering(pool, &node.path, crate::db::now_ms()).await?;
    let stops: Vec<_> = crate::flows::line_stops::over(&ctx.state, &node.path)
        .await?
        .into_iter()
        .map(|s| super::line_stops::StopRow::of(ctx, s))
        .collect();
    let can_manage_notifications = ctx.may(Action::ManageNotifications, &node.path);
    let destinations = if can_manage_notifications {
        crate::flows::notifications::of_node(&ctx.state, &ctx.actor.account, node.id).await?
    } else {
        Vec::new()
    };
    if let Some(Shown::SigningSecret {
        destination,
        secret,
    }) = ctx.shown_once(&node_page(node.id))
    {
        form.new_destination = Some(super::notifications::NewDestination {
            name: destination,
            secret,
        });
    }
    Ok(NodePage {
        destinations,
        can_manage_notifications,
        can_stop_line: ctx.may(Action::StopLine, &node.path)
            && !stops.iter().any(|r| r.s.node_id == node.id),
        stops,
        freezes: super::freezes::rows(ctx, windows, &node.path),
        can_manage_freezes: ctx.may(Action::ManageFreezes, &node.path),
        zones: &super::freezes::ZONES,
        layout: ctx.layout(node.title.clone(), "tree", notice),
        can_edit: ctx.may(Action::EditNode, &node.path),
        can_add_child: ctx.may(Action::CreateChildNode, &node.path),
        can_manage_members: ctx.may(Action::ManageMembers, &node.path),
        can_delete: ctx.may(Action::DeleteNode, node.parent_path()),
        can_manage_items: ctx.may(Action::ManageReleaseItems, &node.path),
        is_admin: ctx.may(Action::ManageAccounts, "/"),
        items: crate::db::release_items::list(pool, Some(id), ctx.read_scope()).await?,
        apps: crate::db::apps::list(
            pool,
            &crate::db::apps::AppFilter {
                node_id: Some(id),
                ..Default::default()
            },
            ctx.read_scope(),
        )
        .await?,
        node,
        ancestors,
        children,
        members,
        approvers,
        my_roles,
        roles: Role::ALL,
        form,
    })
}

async fn render_node(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
    form: NodeForms,
) -> Response {
    match load_node_page(ctx, id, notice, form).await {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// The node page again after a refused freeze window, its form filled in.
pub(super) async fn render_node_with_freeze(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
    freeze: super::freezes::FreezeForm,
) -> Response {
    let form = NodeForms {
        freeze,
        ..NodeForms::default()
    };
    render_node(ctx, id, status, notice, form).await
}

/// The node page again after a refused destination, its form filled in.
pub(super) async fn render_node_with_destination_form(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
    destination: super::notifications::DestinationForm,
) -> Response {
    let form = NodeForms {
        destination,
        ..NodeForms::default()
    };
    render_node(ctx, id, status, notice, form).await
}

/// One node: children, members, approvers.
async fn show_node(ctx: PageCtx, Path(id): Path<i64>) -> Response {
    render_node(&ctx, id, StatusCode::OK, None, NodeForms::default()).await
}

#[derive(Deserialize)]
struct CreateNodeForm {
    #[serde(default)]
    parent_id: Option<String>,
    name: String,
    title: String,
}

/// Creates a root node (admins) or a child node (owners of the parent).
async fn create_node(ctx: PageCtx, CsrfForm(form): CsrfForm<CreateNodeForm>) -> Response {
    let parent_id = match form
        .parent_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return ctx.error_page(&Error::BadRequest(format!(
                    "parent_id '{raw}' is not a number"
                )));
            }
        },
    };
    let name = form.name.trim().to_string();
    let result = async {
        let parent_path = match parent_id {
            Some(id) => {
                ctx.visible(tree_db::get(&ctx.state.db.pool, id).await)?
                    .path
            }
            None => "/".to_string(),
        };
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::CreateChildNode, &parent_path)?;
        Ok::<_, Error>(
            tree_db::create(&ctx.state.db, parent_id, &name, &form.title, &ctx.who()).await?,
        )
    }
    .await;
    match (result, parent_id) {
        (Ok(node), None) => redirect_with(
            &format!("/tree/nodes/{}", node.id),
            Notice::success(format!("Created {}.", node.path)),
        ),
        (Ok(node), Some(parent)) => redirect_with(
            &format!("/tree/nodes/{parent}"),
            Notice::success(format!("Created {}.", node.path)),
        ),
        (Err(e), None) => {
            render_tree(
                &ctx,
                page_status(&e),
                Some(Notice::from_error(&e)),
                name,
                form.title,
            )
            .await
        }
        (Err(e @ Error::NotFound(_)), Some(_)) => ctx.error_page(&e),
        (Err(e), Some(parent)) => {
            let forms = NodeForms {
                child_name: name,
                child_title: form.title,
                ..Default::default()
            };
            render_node(
                &ctx,
                parent,
                page_status(&e),
                Some(Notice::from_error(&e)),
                forms,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct TitleForm {
    title: String,
}

/// Changes a node's title.
async fn edit_node_title(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<TitleForm>,
) -> Response {
    let result = async {
        let node = ctx.visible(tree_db::get(&ctx.state.db.pool, id).await)?;
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::EditNode, &node.path)?;
        Ok::<_, Error>(tree_db::update_title(&ctx.state.db, id, &form.title, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(_) => redirect_with(
            &format!("/tree/nodes/{id}"),
            Notice::success("Title saved."),
        ),
        Err(e @ Error::NotFound(_)) => ctx.error_page(&e),
        Err(e) => {
            render_node(
                &ctx,
                id,
                page_status(&e),
                Some(Notice::from_error(&e)),
                NodeForms::default(),
            )
            .await
        }
    }
}

/// Deletes a node with nothing below it.
async fn delete_node(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_form): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        let node = ctx.visible(tree_db::get(&ctx.state.db.pool, id).await)?;
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::DeleteNode, node.parent_path())?;
        Ok::<_, Error>(tree_db::delete(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(node) => {
            let to = node
                .parent_id
                .map(|p| format!("/tree/nodes/{p}"))
                .unwrap_or_else(|| "/tree".into());
            redirect_with(&to, Notice::success(format!("Deleted {}.", node.path)))
        }
        Err(e @ Error::NotFound(_)) => ctx.error_page(&e),
        Err(e) => {
            render_node(
                &ctx,
                id,
                page_status(&e),
                Some(Notice::from_error(&e)),
                NodeForms::default(),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct MemberForm {
    account: String,
    role: String,
}

/// Adds a member or changes a member's role.
async fn add_member(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<MemberForm>,
) -> Response {
    let account = form.account.trim().to_string();
    let result = async {
        let node = ctx.visible(tree_db::get(&ctx.state.db.pool, id).await)?;
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::ManageMembers, &node.path)?;
        let role: Role = form
            .role
            .parse()
            .map_err(|m: String| Error::validation("role", m))?;
        if account.is_empty() {
            return Err(Error::validation(
                "account",
                "name the user or service account to add",
            ));
        }
        let (member, created) =
            tree_db::put_member(&ctx.state.db, id, &account, role, &ctx.who()).await?;
        Ok((member, created))
    }
    .await;
    match result {
        Ok((member, created)) => redirect_with(
            &format!("/tree/nodes/{id}"),
            Notice::success(if created {
                format!("Added {} as {}.", member.account, member.role)
            } else {
                format!("{} is now {}.", member.account, member.role)
            }),
        ),
        Err(e @ Error::NotFound(_)) => ctx.error_page(&e),
        Err(e) => {
            let forms = NodeForms {
                member_account: account,
                member_role: form.role,
                ..Default::default()
            };
            render_node(
                &ctx,
                id,
                page_status(&e),
                Some(Notice::from_error(&e)),
                forms,
            )
            .await
        }
    }
}

/// Removes a member.
async fn remove_member(
    ctx: PageCtx,
    Path((id, account_id)): Path<(i64, i64)>,
    CsrfForm(_form): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        let node = ctx.visible(tree_db::get(&ctx.state.db.pool, id).await)?;
        ctx.state
            .policy
            .require(&ctx.actor.account, Action::ManageMembers, &node.path)?;
        Ok::<_, Error>(tree_db::remove_member(&ctx.state.db, id, account_id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(()) => redirect_with(
            &format!("/tree/nodes/{id}"),
            Notice::success("Member removed."),
        ),
        Err(e @ Error::NotFound(_)) => ctx.error_page(&e),
        Err(e) => {
            render_node(
                &ctx,
                id,
                page_status(&e),
                Some(Notice::from_error(&e)),
                NodeForms::default(),
            )
            .await
        }
    }
}
