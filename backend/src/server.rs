//! The HTTP server: router assembly, security layers, metrics, health,
//! serving and graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum_prometheus::metrics_exporter_prometheus::PrometheusHandle;
use axum_prometheus::{EndpointLabel, PrometheusMetricLayer, PrometheusMetricLayerBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::{api, http};

/// Request metrics: the layer that counts, and where `/metrics` is served
/// (on the main listener, or only on `--metrics-listen`).
pub struct Metrics {
    pub layer: PrometheusMetricLayer<'static>,
    pub handle: PrometheusHandle,
    pub on_main_listener: bool,
}

/// Every path that matched no route shares this `endpoint` label, so the
/// label set stays bounded whatever is requested.
const UNMATCHED_ENDPOINT: &str = "unmatched";

impl Metrics {
    /// Request count and latency histogram per matched route, prefixed
    /// `rollway_http_…`. Installs the process-wide recorder: once per process.
    pub fn install(on_main_listener: bool) -> Self {
        let (layer, handle) = PrometheusMetricLayerBuilder::new()
            .with_prefix("rollway")
            .with_ignore_patterns(&["/metrics", "/static/{*path}"])
            .with_endpoint_label_type(EndpointLabel::MatchedPathWithFallbackFn(|_| {
                UNMATCHED_ENDPOINT.to_string()
            }))
            .with_default_metrics()
            .build_pair();
        Self {
            layer,
            handle,
            on_main_listener,
        }
    }
}

/// The whole router: pages, the API, health and (unless served apart)
/// metrics.
pub fn router(state: AppState, metrics: Option<&Metrics>) -> Router {
    let mut router = Router::new()
        .merge(http::routes().into_router())
        .merge(api::routes().router)
        .fallback_service(
            Router::new()
                .fallback(http::not_found)
                .with_state(state.clone()),
        );
    if let Some(metrics) = metrics {
        if metrics.on_main_listener {
            router = router.merge(http::metrics_routes(metrics.handle.clone()).into_router());
        }
        router = router.layer(metrics.layer.clone());
    }
    router = router.layer(axum::middleware::map_response_with_state(
        state.clone(),
        http::write_flash,
    ));
    let hsts = state.config.secure_cookies().then(|| {
        SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000"),
        )
    });
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Pages and answers are per person and may carry secrets (a new
        // token is shown once): no cache keeps them. Static assets set their
        // own caching.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(tower::util::option_layer(hsts))
        .layer(axum::middleware::from_fn(refuse_nul_in_uri))
        // A limit on what extractors read (not a layer in front), so an
        // oversized body is refused in the answer's own format: JSON under
        // /api, an error page for forms.
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(CompressionLayer::new())
        // A panic is a bug, but it still answers 500 with the same
        // generic text as any internal error, not a dropped connection.
        .layer(CatchPanicLayer::custom(answer_panic))
        // Requests are logged by path only: a query may carry a sign-in's
        // code and state (single sign-on's callback).
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            },
        ))
        .with_state(state)
}

/// The answer to a request whose handler panicked: logged, generic 500.
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    crate::error::Error::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}

/// A NUL in the path or the query string (`%00`, the only way to send one
/// there) is refused with 422 before any handler runs: JSON under `/api`,
/// an error page elsewhere. PostgreSQL cannot store NUL in text, so letting
/// one through would fail there (500) where SQLite takes it. Bodies are
/// checked by the API's extractors and `CsrfForm`.
async fn refuse_nul_in_uri(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let uri = req.uri();
    let has_nul = |s: &str| s.to_ascii_lowercase().contains("%00");
    let found = if has_nul(uri.path()) {
        Some(("path".to_string(), "the path".to_string()))
    } else if uri.query().is_some_and(has_nul) {
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
            .map(|(name, _)| {
                let name = name.replace('\0', "\\0");
                (name.clone(), format!("the query parameter '{name}'"))
            })
    } else {
        None
    };
    let Some((field, what)) = found else {
        return next.run(req).await;
    };
    let err = crate::error::Error::validation(
        field,
        format!("{what} must not contain NUL characters (%00)"),
    );
    if uri.path().starts_with("/api/") {
        err.into_response()
    } else {
        http::page_error(&err)
    }
}

/// Binds, prints where it listens, and serves until SIGINT/SIGTERM.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let metrics = Metrics::install(state.config.metrics_listen.is_none());
    let listen = state.config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen / ROLLWAY_LISTEN)"))?;
    let local = listener.local_addr()?;
    let housekeeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            let mut minutes = 0_u64;
            loop {
                tick.tick().await;
                state.login_limiter.shrink();
                // The first tick is immediate: statistics at start, then hourly.
                if minutes.is_multiple_of(60) {
                    state.db.optimize().await;
                    crate::db::audit::log_anchor(&state.db).await;
                    if let Err(e) = crate::db::idempotency::expire(&state.db).await {
                        tracing::warn!(error = %e, "could not forget old idempotency keys");
                    }
                }
                minutes += 1;
            }
        })
    };
    let metrics_server = match state.config.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (--metrics-listen / ROLLWAY_METRICS_LISTEN)")
            })?;
            let local = listener.local_addr()?;
            let app = http::metrics_routes(metrics.handle.clone())
                .into_router()
                .with_state(state.clone());
            println!("Rollway metrics on http://{local}/metrics");
            tracing::info!(address = %local, "serving metrics");
            Some(tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }))
        }
    };
    let engine = state.engine.start();
    let live = crate::flows::live::start(state.clone());
    let app = router(state.clone(), Some(&metrics));
    // Printed on stdout (not only logged) so scripts and tests can find
    // the port when listening on port 0.
    println!("Rollway listening on http://{local}");
    tracing::info!(address = %local, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;
    housekeeping.abort();
    live.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    state.engine.shutdown().await;
    let _ = engine.await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
