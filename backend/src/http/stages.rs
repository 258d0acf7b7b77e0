//! Driving stages from the work order page: Deploy, Roll back (this
//! stage's image, or for owners the whole replaced template), Cancel and a
//! canary's Approve step, a verification's Sign off and Continue go
//! through the same state machine call as every other decision on an
//! order.
//!
//! None of them happens on one click. Deploy opens a page saying what
//! changes (the image running now and the one it becomes, the cluster, the
//! environment) before its button; the others ask in a dialog, and a form
//! posted without that confirmation (no JavaScript) gets the same
//! confirmation page first.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::work_orders::decide_from_page;
use super::{Layout, PageCtx, PageRoutes};
use crate::auth::Action;
use crate::db::work_orders::{self, StageTarget};
use crate::domain::work_order::{Command, decide, refusal};
use crate::error::{Error, Result};
use crate::flows;
use crate::flows::clusters::look_at_deployment;
use crate::kube::deployment::container_image;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/work-orders/{id}/stages/{n}/deploy", confirm_deploy)
        .post("/work-orders/{id}/stages/{n}/deploy", deploy_stage)
        .post("/work-orders/{id}/stages/{n}/rollback", rollback_stage)
        .post("/work-orders/{id}/stages/{n}/cancel", cancel_stage)
        .post("/work-orders/{id}/stages/{n}/approve-step", approve_step)
        .post("/work-orders/{id}/stages/{n}/sign-off", sign_off)
        .post("/work-orders/{id}/stages/{n}/continue", go_on)
}

/// One line of what a command changes.
struct Fact {
    label: &'static str,
    value: String,
    /// Shown in red: it touches staging or production.
    danger: bool,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    order_id: i64,
    heading: String,
    facts: Vec<Fact>,
    note: String,
    action: String,
    /// Form fields posted again with the confirmation.
    fields: Vec<(&'static str, String)>,
    button: String,
    button_class: &'static str,
}

/// Whether a form says it was confirmed in the browser.
#[derive(Deserialize, Default)]
struct Confirmed {
    #[serde(default)]
    confirmed: String,
}

impl Confirmed {
    fn yes(&self) -> bool {
        self.confirmed == "yes"
    }
}

/// The image stage `target` runs now, read from its cluster with a
/// deadline, or what stands in its way.
async fn live_image(ctx: &PageCtx, target: &StageTarget) -> String {
    let found = look_at_deployment(
        &ctx.state,
        target.cluster_id,
        &target.cluster,
        &target.namespace,
        &target.deployment,
    )
    .await;
    match found {
        Err(why) => format!("unknown: {why}"),
        Ok(None) => format!(
            "nothing: Deployment {}/{} does not exist",
            target.namespace, target.deployment
        ),
        Ok(Some(deployment)) => container_image(&deployment, &target.container)
            .map(str::to_string)
            .unwrap_or_else(|| format!("nothing: no container {}", target.container)),
    }
}

/// The confirmation page for `command` on stage `stage` of order `id`.
async fn confirm_page(
    ctx: &PageCtx,
    id: i64,
    stage: u32,
    command: Command,
    fields: Vec<(&'static str, String)>,
) -> Result<ConfirmPage> {
    let d = flows::work_orders::detail(
        &ctx.state,
        &ctx.actor.account,
        Some(ctx.actor.board_version),
        id,
    )
    .await?;
    let target = work_orders::stage_target(&ctx.state.db.pool, id, i64::from(stage)).await?;
    let may_close = ctx.may(Action::FileWorkOrder, &d.order.node_path);
    let facts = work_orders::facts_for(&d, &ctx.actor.account, may_close);
    // Refused now: the page says why, with the status the POST would get.
    decide(d.order.state, &command, &facts).map_err(|r| refusal(&command, r))?;
    let sensitive = matches!(target.environment.as_str(), "staging" | "prod");
    let run = d.stage_runs.iter().find(|s| s.position == i64::from(stage));
    let stage_name = run.map(|s| s.name.clone()).unwrap_or_default();
    let place = |label| Fact {
        label,
        value: String::new(),
        danger: false,
    };
    let mut lines = vec![
        Fact {
            value: format!(
                "{} (Deployment {}/{}, container {})",
                target.app, target.namespace, target.deployment, target.container
            ),
            ..place("App")
        },
        Fact {
            value: target.cluster.clone(),
            danger: sensitive,
            ..place("Cluster")
        },
        Fact {
            value: target.environment.clone(),
            danger: sensitive,
            ..place("Environment")
        },
    ];
    let (heading, note, button, class) = match &command {
        Command::ApproveStep { step, .. } => {
            let plan = run.and_then(|s| s.canary.clone()).unwrap_or_default();
            lines.push(Fact {
                value: format!(
                    "{step} of {}: {}",
                    plan.step_count(),
                    plan.describe_step(*step)
                ),
                ..place("Paused at step")
            });
            lines.push(Fact {
                value: plan.after(*step),
                danger: sensitive,
                ..place("Goes on to")
            });
            (
                format!("Approve step {step} of stage {stage} ({stage_name})?"),
                "OpenKruise lets the canary go on from this step; the order page follows it live."
                    .to_string(),
                format!("Approve step {step}"),
                "primary",
            )
        }
        Command::Deploy { .. } => {
            lines.push(Fact {
                value: live_image(ctx, &target).await,
                ..place("Runs now")
            });
            lines.push(Fact {
                value: target.image.clone(),
                danger: sensitive,
                ..place("Becomes")
            });
            (
                format!("Deploy stage {stage} ({stage_name})?"),
                "Rollway sets this container's image and nothing else, then follows the rollout; \
                 the order page shows it live."
                    .to_string(),
                format!("Deploy to {}", target.environment),
                "primary",
            )
        }
        Command::Rollback { whole_template, .. } => {
            lines.push(Fact {
                value: target.image.clone(),
                ..place("Runs now")
            });
            lines.push(Fact {
                value: target
                    .replaced_image
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                danger: sensitive,
                ..place("Goes back to")
            });
            (
                format!("Roll stage {stage} ({stage_name}) back?"),
                if *whole_template {
                    "The whole pod template this stage replaced comes back, undoing changes others made since."
                } else {
                    "Only the image this stage replaced comes back; the rollback is refused if someone changed the Deployment since."
                }
                .to_string(),
                if *whole_template {
                    "Restore whole template".to_string()
                } else {
                    "Roll back".to_string()
                },
                "danger",
            )
        }
        Command::SignOff { .. } => (
            format!("Sign stage {stage} ({stage_name}) off as verified?"),
            "You vouch that the new version works here. The stage succeeds once the rest of its \
             verification (gates, smoke checks, soak time) has passed too."
                .to_string(),
            "Sign off".to_string(),
            "primary",
        ),
        Command::GoOn { .. } => (
            format!("Let the verification of stage {stage} ({stage_name}) go on?"),
            format!(
                "{} The measurements that could not be judged no longer count against the gate's \
                 limit; the gate goes on measuring and the rest of the plan runs.",
                run.map(|s| s.message.as_str()).unwrap_or_default()
            ),
            "Continue verification".to_string(),
            "primary",
        ),
        _ => (
            format!("Cancel stage {stage} ({stage_name})?"),
            "The engine stops; the stage fails where it is, and then you can roll it back or close the order."
                .to_string(),
            "Cancel stage".to_string(),
            "danger",
        ),
    };
    let action = match command {
        Command::Deploy { .. } => "deploy",
        Command::Rollback { .. } => "rollback",
        Command::ApproveStep { .. } => "approve-step",
        Command::SignOff { .. } => "sign-off",
        Command::GoOn { .. } => "continue",
        _ => "cancel",
    };
    Ok(ConfirmPage {
        layout: ctx.layout(heading.clone(), "work-orders", None),
        order_id: id,
        heading,
        facts: lines,
        note,
        action: format!("/work-orders/{id}/stages/{stage}/{action}"),
        fields,
        button,
        button_class: class,
    })
}

async fn show_confirmation(
    ctx: &PageCtx,
    id: i64,
    stage: u32,
    command: Command,
    fields: Vec<(&'static str, String)>,
) -> Response {
    match confirm_page(ctx, id, stage, command, fields).await {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}

/// What deploying the stage changes, and the button that does it.
async fn confirm_deploy(ctx: PageCtx, Path((id, stage)): Path<(i64, u32)>) -> Response {
    show_confirmation(&ctx, id, stage, Command::Deploy { stage }, Vec::new()).await
}

async fn deploy_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<Confirmed>,
) -> Response {
    let command = Command::Deploy { stage };
    if !form.yes() {
        return show_confirmation(&ctx, id, stage, command, Vec::new()).await;
    }
    decide_from_page(ctx, id, command).await
}

#[derive(Deserialize)]
struct RollbackForm {
    /// "whole": restore the whole replaced pod template (owners).
    #[serde(default)]
    restore: String,
    #[serde(flatten)]
    confirmed: Confirmed,
}

async fn rollback_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<RollbackForm>,
) -> Response {
    let whole_template = form.restore == "whole";
    let command = Command::Rollback {
        stage,
        whole_template,
    };
    if !form.confirmed.yes() {
        let fields = vec![("restore", form.restore)];
        return show_confirmation(&ctx, id, stage, command, fields).await;
    }
    decide_from_page(ctx, id, command).await
}

#[derive(Deserialize)]
struct CancelForm {
    #[serde(default)]
    reason: String,
    #[serde(flatten)]
    confirmed: Confirmed,
}

async fn cancel_stage(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<CancelForm>,
) -> Response {
    let command = Command::Cancel {
        stage,
        reason: form.reason.clone(),
    };
    if !form.confirmed.yes() {
        let fields = vec![("reason", form.reason)];
        return show_confirmation(&ctx, id, stage, command, fields).await;
    }
    decide_from_page(ctx, id, command).await
}

#[derive(Deserialize)]
struct StepForm {
    #[serde(default)]
    step: String,
    #[serde(flatten)]
    confirmed: Confirmed,
}

/// Approves the canary step the stage is paused at (owners).
async fn approve_step(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<StepForm>,
) -> Response {
    let Ok(step) = form.step.trim().parse::<u32>() else {
        return ctx.error_page(&Error::validation(
            "step",
            "say which step to approve (its number)",
        ));
    };
    let command = Command::ApproveStep { stage, step };
    if !form.confirmed.yes() {
        let fields = vec![("step", step.to_string())];
        return show_confirmation(&ctx, id, stage, command, fields).await;
    }
    decide_from_page(ctx, id, command).await
}

/// An owner's "verified" on a stage whose plan asks for it.
async fn sign_off(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<Confirmed>,
) -> Response {
    let command = Command::SignOff { stage };
    if !form.yes() {
        return show_confirmation(&ctx, id, stage, command, Vec::new()).await;
    }
    decide_from_page(ctx, id, command).await
}

/// Lets a verification paused on an inconclusive gate go on (owners).
async fn go_on(
    ctx: PageCtx,
    Path((id, stage)): Path<(i64, u32)>,
    CsrfForm(form): CsrfForm<Confirmed>,
) -> Response {
    let command = Command::GoOn { stage };
    if !form.yes() {
        return show_confirmation(&ctx, id, stage, command, Vec::new()).await;
    }
    decide_from_page(ctx, id, command).await
}
