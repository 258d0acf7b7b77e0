//! The CI fast path: deploying an image straight to an app on a dev or
//! test cluster (the app's own Deployment, or a lane's copy of it), and
//! asking for a lane to be removed. The checks come in the order a caller
//! fixes them: who may (403), where (403 `environment_protected` for
//! staging and prod), what (422 naming the field), when (409
//! `line_stopped` while the line is stopped above the app, 409 `frozen`
//! while a freeze window covers it); then one transaction
//! records the deployment and queues its job, and the engine is woken.

use crate::app::AppState;
use crate::auth::policy::Action;
use crate::db::accounts::Account;
use crate::db::apps;
use crate::db::audit::AuditActor;
use crate::db::deployments::{self, FastDeployment, Lane, NewDeployment};
use crate::db::now_ms;
use crate::db::{freezes, line_stops};
use crate::domain::fast_path::{lane_name, open_to_fast_path, parse_image, validate_lane};
use crate::error::{Error, Result};

/// What a fast-path deploy asks for.
pub struct DeployRequest<'a> {
    pub app_id: i64,
    pub image: &'a str,
    pub lane: Option<&'a str>,
}

/// Deploys `request.image` to app `request.app_id` (or its lane) for
/// `actor`; the deployment as recorded, `pending` until the engine takes it.
pub async fn deploy(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    request: &DeployRequest<'_>,
) -> Result<FastDeployment> {
    let app = state
        .policy
        .visible(actor, apps::get(&state.db.pool, request.app_id).await)?;
    state
        .policy
        .require(actor, Action::FastDeploy, &app.node_path)?;
    if !open_to_fast_path(&app.environment) {
        return Err(Error::EnvironmentProtected(format!(
            "app {} runs in cluster {}, a {} cluster: the fast path deploys to dev and test \
             clusters only — file a work order for its release item to deploy there",
            app.name, app.cluster, app.environment
        )));
    }
    let image = parse_image(request.image).map_err(|m| Error::validation("image", m))?;
    let repositories = deployments::bound_repositories(&state.db.pool, app.id).await?;
    if !repositories.is_empty() && !repositories.contains(&image.repository) {
        return Err(Error::validation(
            "image",
            format!(
                "app {} is released from {}; image {} is from {}",
                app.name,
                repositories.join(" or "),
                request.image,
                image.repository
            ),
        ));
    }
    if let Some(lane) = request.lane {
        validate_lane(lane).map_err(|m| Error::validation("lane", m))?;
    }
    if let Some(stop) = line_stops::covering(&state.db.pool, &[&app.node_path]).await? {
        return Err(Error::LineStopped(format!(
            "app {} is held: {}; deploy to it once an owner lifts the stop",
            app.name,
            stop.describe()
        )));
    }
    let windows = freezes::covering(&state.db.pool, &app.node_path, now_ms()).await?;
    if let Some((window, until)) = freezes::blocking(&windows, &app.environment, &[]) {
        return Err(Error::Frozen(format!(
            "app {} is frozen by {}; deploy to it once the freeze ends",
            app.name,
            window.describe_until(until)
        )));
    }
    let target = match request.lane {
        Some(lane) => lane_name(&app.deployment, lane),
        None => app.deployment.clone(),
    };
    let ttl_ms = i64::from(state.config.lane_ttl_seconds) * 1000;
    let created = deployments::create(
        &state.db,
        &NewDeployment {
            app: &app,
            image: request.image,
            lane: request.lane,
            deployment: &target,
            lane_expires_at: now_ms() + ttl_ms,
        },
        who,
    )
    .await?;
    state.engine.wake();
    Ok(created)
}

/// Asks for lane `slug` of app `app_id` to be removed; the lane marked
/// `removing` (its removal job runs at once).
pub async fn remove_lane(
    state: &AppState,
    actor: &Account,
    who: &AuditActor,
    app_id: i64,
    slug: &str,
) -> Result<Lane> {
    let app = state
        .policy
        .visible(actor, apps::get(&state.db.pool, app_id).await)?;
    state
        .policy
        .require(actor, Action::FastDeploy, &app.node_path)?;
    validate_lane(slug).map_err(|m| Error::validation("lane", m))?;
    let lane = deployments::request_lane_removal(&state.db, app.id, slug, who).await?;
    state.engine.wake();
    Ok(lane)
}
