//! Health, readiness and metrics: plain-text answers for probes and
//! scrapers, open to anyone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum_prometheus::metrics_exporter_prometheus::PrometheusHandle;

use super::PageRoutes;
use crate::app::AppState;

pub fn routes() -> PageRoutes {
    PageRoutes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
}

/// `/metrics`, rendered from `handle`: on the main listener, or alone on
/// `--metrics-listen`.
pub fn metrics_routes(handle: PrometheusHandle) -> PageRoutes {
    PageRoutes::new().get("/metrics", move || std::future::ready(handle.render()))
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.db.ping().await {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}
