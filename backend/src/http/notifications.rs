//! Notifications in the pages: `/notifications` lists the destinations
//! the reader manages, each with its delivery log (send again, enable a
//! disabled one, remove); the node page's card sets one (its form is
//! handled here, and a webhook's secret is handed to the node page to
//! show once, `super::once`).

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::CsrfForm;
use super::once::{self, Shown};
use super::{Layout, Moment, Notice, PageCtx, PageRoutes, redirect_with};
use crate::db::notifications::{Delivery, Destination};
use crate::domain::notify::EVENTS;
use crate::error::Error;
use crate::flows::notifications::{self, DestinationRequest};

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/notifications", list)
        .post("/tree/nodes/{id}/notification-destinations", create)
        .post("/notification-destinations/{id}/delete", delete)
        .post("/notification-destinations/{id}/enable", enable)
        .post("/notification-deliveries/{id}/send-again", send_again)
}

/// The deliveries each destination's log shows.
const LOG_ROWS: i64 = 20;

/// The node page's destination form, as sent.
#[derive(Deserialize, Default)]
pub(super) struct DestinationForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    /// The events ticked, `ev_<name>` → `on`.
    #[serde(flatten)]
    pub ticked: std::collections::HashMap<String, String>,
}

impl DestinationForm {
    /// Whether event `name` is ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.ticked.contains_key(&format!("ev_{name}"))
    }

    /// Every event a destination may ask for: (name, label).
    pub fn events(&self) -> Vec<(&'static str, &'static str)> {
        EVENTS.iter().map(|(n, _, l)| (*n, *l)).collect()
    }
}

/// A webhook destination just set, as the node page shows it once.
pub(super) struct NewDestination {
    pub name: String,
    /// Its signing secret.
    pub secret: String,
}

async fn create(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(form): CsrfForm<DestinationForm>,
) -> Response {
    let events: Vec<String> = EVENTS
        .iter()
        .filter(|(n, ..)| form.ticked(n))
        .map(|(n, ..)| n.to_string())
        .collect();
    let asked = DestinationRequest {
        name: &form.name,
        kind: &form.kind,
        url: &form.url,
        events: &events,
    };
    match notifications::create(&ctx.state, &ctx.actor.account, &ctx.who(), id, &asked).await {
        Ok((d, secret)) => {
            let notice = Notice::success(format!(
                "Notification destination \"{}\" set on {}.",
                d.name, d.node_path
            ));
            let to = format!("{}#notifications", super::tree::node_page(id));
            match secret {
                Some(secret) => once::redirect(
                    &ctx,
                    &to,
                    notice,
                    Shown::SigningSecret {
                        destination: d.name,
                        secret: secret.expose().clone(),
                    },
                ),
                None => redirect_with(&to, notice),
            }
        }
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => ctx.error_page(&e),
        Err(e) => {
            super::tree::render_node_with_destination_form(
                &ctx,
                id,
                super::page_status(&e),
                Some(Notice::from_error(&e)),
                form,
            )
            .await
        }
    }
}

async fn delete(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::extract::NoFields>,
) -> Response {
    match notifications::delete(&ctx.state, &ctx.actor.account, &ctx.who(), id).await {
        Ok(d) => redirect_with(
            "/notifications",
            Notice::success(format!(
                "Notification destination \"{}\" on {} removed.",
                d.name, d.node_path
            )),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

async fn enable(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::extract::NoFields>,
) -> Response {
    match notifications::enable(&ctx.state, &ctx.actor.account, &ctx.who(), id).await {
        Ok(d) => redirect_with(
            &format!("/notifications#destination-{id}"),
            Notice::success(format!("\"{}\" receives again.", d.name)),
        ),
        Err(e) => ctx.error_page(&e),
    }
}

async fn send_again(
    ctx: PageCtx,
    Path(id): Path<i64>,
    CsrfForm(_): CsrfForm<super::extract::NoFields>,
) -> Response {
    match notifications::send_again(&ctx.state, &ctx.actor.account, &ctx.who(), id).await {
        Ok(d) => redirect_with(
            &format!("/notifications#destination-{}", d.destination_id),
            Notice::success(format!("Delivery {id} is sent again.")),
        ),
        Err(e @ Error::Conflict(_)) => redirect_with("/notifications", Notice::from_error(&e)),
        Err(e) => ctx.error_page(&e),
    }
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct ListPage {
    layout: Layout,
    destinations: Vec<DestinationCard>,
}

struct DestinationCard {
    d: Destination,
    deliveries: Vec<DeliveryRow>,
}

struct DeliveryRow {
    x: Delivery,
    at: Moment,
}

async fn list(ctx: PageCtx) -> Response {
    let result = async {
        let mut destinations = Vec::new();
        for d in notifications::all_managed(&ctx.state, &ctx.actor.account).await? {
            let deliveries =
                notifications::deliveries(&ctx.state, &ctx.actor.account, d.id, LOG_ROWS)
                    .await?
                    .into_iter()
                    .map(|x| DeliveryRow {
                        at: Moment::at(x.attempted_at.unwrap_or(x.created_at)),
                        x,
                    })
                    .collect();
            destinations.push(DestinationCard { d, deliveries });
        }
        Ok::<_, Error>(ListPage {
            // Admins reach it from the administration pages.
            layout: ctx.layout(
                "Notifications",
                if ctx.may(crate::auth::Action::ManageAccounts, "/") {
                    "admin-notifications"
                } else {
                    "tree"
                },
                None,
            ),
            destinations,
        })
    }
    .await;
    match result {
        Ok(page) => ctx.render(StatusCode::OK, &page),
        Err(e) => ctx.error_page(&e),
    }
}
