//! Admin pages for clusters and apps.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::dashboard::Reading;
use super::extract::{CsrfForm, NoFields};
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, page_status, redirect_with};
use crate::auth::Action;
use crate::db::apps::{self, App, AppFields, AppFilter};
use crate::db::clusters::{self, Cluster, ClusterUpdate, Connection, TokenChange};
use crate::db::tree as tree_db;
use crate::domain::cluster::Environment;
use crate::error::{Error, Result};
use crate::flows;
use crate::secret::Secret;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/admin/clusters", list_clusters)
        .post("/admin/clusters", create_cluster)
        .get("/admin/clusters/{id}", show_cluster)
        .post("/admin/clusters/{id}/update", update_cluster)
        .post("/admin/clusters/{id}/test", test_cluster)
        .post("/admin/clusters/{id}/prometheus", save_prometheus)
        .post("/admin/clusters/{id}/prometheus/test", test_prometheus)
        .post("/admin/clusters/{id}/delete", delete_cluster)
        .get("/admin/apps", list_apps)
        .post("/admin/apps", create_app)
        .post("/admin/apps/{id}/delete", delete_app)
}

fn require_admin(ctx: &PageCtx) -> Result<()> {
    ctx.state
        .policy
        .require(&ctx.actor.account, Action::ManageRegistry, "/")
}

struct ClusterRow {
    cluster: Cluster,
    credentials: String,
}

fn cluster_row(cluster: Cluster) -> ClusterRow {
    let credentials = if cluster.in_cluster {
        "in-cluster service account".to_string()
    } else if cluster.has_kubeconfig {
        format!(
            "kubeconfig set on {} by {}",
            Moment(cluster.credentials_set_at).exact(),
            cluster.credentials_set_by.as_deref().unwrap_or("?")
        )
    } else {
        "no credentials".to_string()
    };
    ClusterRow {
        cluster,
        credentials,
    }
}

#[derive(Template)]
#[template(path = "clusters.html")]
struct ClustersPage {
    layout: Layout,
    clusters: Vec<ClusterRow>,
    environments: [Environment; 4],
    form: ClusterForm,
}

#[derive(Deserialize, Default)]
struct ClusterForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    kubeconfig: String,
    #[serde(default)]
    context: String,
    #[serde(default)]
    in_cluster: Option<String>,
}

impl ClusterForm {
    /// The connection the form asks for; `None` when it leaves it as is.
    fn connection(&self) -> Result<Option<Connection>> {
        match (self.kubeconfig.trim().is_empty(), self.in_cluster.is_some()) {
            (false, true) => Err(Error::validation(
                "kubeconfig",
                "paste a kubeconfig or tick in-cluster, not both",
            )),
            (false, false) => Ok(Some(Connection::Kubeconfig {
                yaml: Secret::new(self.kubeconfig.clone()),
                context: Some(self.context.trim().to_string()).filter(|c| !c.is_empty()),
            })),
            (true, true) => Ok(Some(Connection::InCluster)),
            (true, false) => Ok(None),
        }
    }
}

async fn render_clusters(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    mut form: ClusterForm,
) -> Response {
    if let Err(e) = require_admin(ctx) {
        return ctx.error_page(&e);
    }
    match clusters::list(&ctx.state.db.pool).await {
        Ok(list) => {
            // A pasted kubeconfig is never sent back to the browser.
            form.kubeconfig.clear();
            let page = ClustersPage {
                layout: ctx.layout("Clusters", "admin-clusters", notice),
                clusters: list.into_iter().map(cluster_row).collect(),
                environments: Environment::ALL,
                form,
            };
            ctx.render(status, &page)
        }
        Err(e) => ctx.error_page(&e),
    }
}

/// Every cluster and the form to register one.
async fn list_clusters(ctx: PageCtx) -> Response {
    render_clusters(&ctx, StatusCode::OK, None, ClusterForm::default()).await
}

/// Registers a cluster.
async fn create_cluster(ctx: PageCtx, CsrfForm(form): CsrfForm<ClusterForm>) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let env: Environment = form
            .environment
            .parse()
            .map_err(|m: String| Error::validation("environment", m))?;
        let conn = form.connection()?.ok_or_else(|| {
            Error::validation("kubeconfig", "paste a kubeconfig, or tick in-cluster")
        })?;
        Ok::<_, Error>(
            clusters::create(
                &ctx.state.db,
                &ctx.state.sealer,
                form.name.trim(),
                env,
                &conn,
                &ctx.who(),
            )
            .await?,
        )
    }
    .await;
    match result {
        Ok(c) => redirect_with(
            &format!("/admin/clusters/{}", c.id),
            Notice::success(format!("Registered cluster {}.", c.name)),
        ),
        Err(e) => render_clusters(&ctx, page_status(&e), Some(Notice::from_error(&e)), form).await,
    }
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage {
    layout: Layout,
    row: ClusterRow,
    apps: Vec<App>,
    environments: [Environment; 4],
}

async fn render_cluster(
    ctx: &PageCtx,
    id: i64,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    let result = async {
        require_admin(ctx)?;
        let cluster = clusters::get(&ctx.state.db.pool, id).await?;
        let apps = apps::list(
            &ctx.state.db.pool,
            &AppFilter {
                cluster: Some(cluster.name.clone()),
                ..AppFilter::default()
            },
            ctx.read_scope(),
        )
        .await?;
        Ok::<_, Error>(ClusterPage {
            layout: ctx.layout(
                format!("Cluster {}", cluster.name),
                "admin-clusters",
                notice,
            ),
            row: cluster_row(cluster),
            apps,
            environments: Environment::ALL,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// One cluster: credentials status, its apps.
async fn show_cluster(ctx: PageCtx, Path(id): Path<i64>) -> Response {
    render_cluster(&ctx, id, StatusCode::OK, None).await
}

/// After a POST on cluster `id`'s page: back to it saying what was done,
/// or the page again with the error (a missing or forbidden cluster is an
/// error page of its own).
async fn back_to_cluster(ctx: &PageCtx, id: i64, done: Result<String>) -> Response {
    match done {
        Ok(message) => redirect_with(&format!("/admin/clusters/{id}"), Notice::success(message)),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => render_cluster(ctx, id, page_status(&e), Some(Notice::from_error(&e))).await,
    }
}

/// Changes the environment or replaces the credentials.
async fn update_cluster(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<ClusterForm>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        clusters::get(&ctx.state.db.pool, id).await?;
        let environment = match form.environment.trim() {
            "" => None,
            raw => Some(
                raw.parse()
                    .map_err(|m: String| Error::validation("environment", m))?,
            ),
        };
        let update = ClusterUpdate {
            environment,
            connection: form.connection()?,
        };
        Ok::<_, Error>(
            clusters::update(&ctx.state.db, &ctx.state.sealer, id, update, &ctx.who()).await?,
        )
    }
    .await;
    back_to_cluster(
        &ctx,
        id,
        result.map(|c| format!("Saved cluster {}.", c.name)),
    )
    .await
}

/// Removes a cluster without apps.
async fn delete_cluster(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        Ok::<_, Error>(clusters::delete(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(c) => redirect_with(
            "/admin/clusters",
            Notice::success(format!("Removed cluster {}.", c.name)),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => render_cluster(&ctx, id, page_status(&e), Some(Notice::from_error(&e))).await,
    }
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    layout: Layout,
    apps: Vec<AppRow>,
    clusters: Vec<Cluster>,
    form: AppForm,
}

/// An app and what its Deployment runs, from the held watch.
struct AppRow {
    app: App,
    live: Reading,
}

#[derive(Deserialize, Default)]
struct AppForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cluster_id: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    deployment: String,
    #[serde(default)]
    container: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    ingress: String,
    #[serde(default)]
    node: String,
}

async fn render_apps(
    ctx: &PageCtx,
    status: StatusCode,
    notice: Option<Notice>,
    form: AppForm,
) -> Response {
    let result = async {
        require_admin(ctx)?;
        let apps = apps::list(&ctx.state.db.pool, &AppFilter::default(), ctx.read_scope()).await?;
        let ids: Vec<i64> = apps.iter().map(|a| a.id).collect();
        let mut live = flows::live::apps_live(&ctx.state, &ids).await?;
        let apps = apps
            .into_iter()
            .filter_map(|app| {
                let status = live.remove(&app.id)?;
                Some(AppRow {
                    live: Reading::of_app(&status, &app),
                    app,
                })
            })
            .collect();
        let clusters = clusters::list(&ctx.state.db.pool).await?;
        Ok::<_, Error>(AppsPage {
            layout: ctx.layout("Apps", "admin-apps", notice),
            apps,
            clusters,
            form,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(status, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// Every app and the form to register one.
async fn list_apps(ctx: PageCtx) -> Response {
    render_apps(&ctx, StatusCode::OK, None, AppForm::default()).await
}

/// Registers an app.
async fn create_app(ctx: PageCtx, CsrfForm(form): CsrfForm<AppForm>) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let cluster_id: i64 = form
            .cluster_id
            .trim()
            .parse()
            .map_err(|_| Error::validation("cluster_id", "pick a cluster"))?;
        let node = tree_db::find_by_path(&ctx.state.db.pool, form.node.trim())
            .await?
            .ok_or_else(|| {
                Error::validation("node", format!("no tree node at '{}'", form.node.trim()))
            })?;
        let fields = AppFields {
            name: form.name.trim().to_string(),
            cluster_id,
            namespace: form.namespace.trim().to_string(),
            deployment: form.deployment.trim().to_string(),
            container: form.container.trim().to_string(),
            service: Some(form.service.trim().to_string()).filter(|s| !s.is_empty()),
            ingress: Some(form.ingress.trim().to_string()).filter(|s| !s.is_empty()),
            node_id: node.id,
        };
        Ok::<_, Error>(apps::create(&ctx.state.db, &fields, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(app) => {
            let done = format!("Registered app {} in {}.", app.name, app.cluster);
            let notice = match crate::flows::clusters::app_warning(&ctx.state, &app).await {
                Some(warning) => Notice::warning(format!("{done} {warning}")),
                None => Notice::success(done),
            };
            redirect_with("/admin/apps", notice)
        }
        Err(e) => render_apps(&ctx, page_status(&e), Some(Notice::from_error(&e)), form).await,
    }
}

/// Removes an app no stage uses.
async fn delete_app(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_f): CsrfForm<NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        Ok::<_, Error>(apps::delete(&ctx.state.db, id, &ctx.who()).await?)
    }
    .await;
    match result {
        Ok(app) => redirect_with(
            "/admin/apps",
            Notice::success(format!("Removed app {}.", app.name)),
        ),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => {
            render_apps(
                &ctx,
                page_status(&e),
                Some(Notice::from_error(&e)),
                AppForm::default(),
            )
            .await
        }
    }
}

/// Connects with the stored credentials and reports what answered.
async fn test_cluster(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::extract::NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let cluster = clusters::get(&ctx.state.db.pool, id).await?;
        let version = crate::flows::test_connection(&ctx.state, &cluster).await?;
        Ok::<_, Error>((cluster.name, version))
    }
    .await;
    let done = result.map(|(name, version)| format!("Connected to {name}: Kubernetes {version}."));
    back_to_cluster(&ctx, id, done).await
}

#[derive(Deserialize, Default)]
struct PrometheusForm {
    #[serde(default)]
    url: String,
    /// Write-only; empty keeps the stored one.
    #[serde(default)]
    token: String,
    /// "on": remove the stored token.
    #[serde(default)]
    clear_token: String,
    /// "on": remove the Prometheus altogether.
    #[serde(default)]
    remove: String,
}

/// Sets, changes or removes the cluster's Prometheus.
async fn save_prometheus(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<PrometheusForm>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let settings = if form.remove == "on" {
            None
        } else {
            let token = match (form.token.trim().is_empty(), form.clear_token == "on") {
                (false, _) => TokenChange::Set(Secret::new(form.token.trim().to_string())),
                (true, true) => TokenChange::Clear,
                (true, false) => TokenChange::Keep,
            };
            Some((form.url.as_str(), token))
        };
        Ok::<_, Error>(
            clusters::set_prometheus(&ctx.state.db, &ctx.state.sealer, id, settings, &ctx.who())
                .await?,
        )
    }
    .await;
    let done = result.map(|c| match c.prometheus_url {
        Some(url) => format!("Saved: verification gates of {} query {url}.", c.name),
        None => format!("Removed the Prometheus of {}.", c.name),
    });
    back_to_cluster(&ctx, id, done).await
}

/// Asks the cluster's Prometheus `1+1`.
async fn test_prometheus(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::extract::NoFields>,
) -> Response {
    let result = async {
        require_admin(&ctx)?;
        let cluster = clusters::get(&ctx.state.db.pool, id).await?;
        flows::clusters::test_prometheus(&ctx.state, id).await?;
        Ok::<_, Error>(cluster.name)
    }
    .await;
    let done = result.map(|name| format!("The Prometheus of {name} answers: 1+1 = 2."));
    back_to_cluster(&ctx, id, done).await
}
