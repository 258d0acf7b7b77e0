//! Application state: everything a request handler or flow may need.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_csrf::{CsrfConfig, Key, SameSite};

use crate::auth::Policy;
use crate::auth::oidc::Oidc;
use crate::auth::rate_limit::LoginLimiter;
use crate::config::ServeConfig;
use crate::db::Db;
use crate::db::board::{BoardCache, ItemCache, board_cache, item_cache};
use crate::db::work_order_views::OrderReads;
use crate::engine::{Engine, EngineSettings};
use crate::gitlab::GitlabClient;
use crate::kube::live::LiveDeployments;
use crate::kube::{KubeDriver, KubeSettings};
use crate::prometheus::PrometheusClient;
use crate::secret::{Sealer, SecretKey};

/// Everything a request handler may need, shared behind an `Arc`.
pub struct App {
    pub db: Db,
    pub config: ServeConfig,
    pub policy: Policy,
    pub login_limiter: LoginLimiter,
    pub csrf: CsrfConfig,
    /// Seals and opens stored credentials.
    pub sealer: Sealer,
    pub gitlab: GitlabClient,
    pub prometheus: Arc<PrometheusClient>,
    /// Kubernetes clients of the clusters in use.
    pub kube: Arc<KubeDriver>,
    /// This server's deploy engine.
    pub engine: Arc<Engine>,
    /// What runs where: the watched Deployments of every app's namespace.
    pub live: Arc<LiveDeployments>,
    /// Dashboard pages read from the database, by board version.
    pub board: BoardCache,
    /// Single items' records read from the database, by board version.
    pub items: ItemCache,
    /// Order details and list pages read from the database, by board
    /// version.
    pub orders: OrderReads,
    /// Single sign-on, when a provider is configured.
    pub oidc: Option<Arc<Oidc>>,
}

/// Cheap-to-clone handle on [`App`], passed with axum's `State`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    pub async fn new(db: Db, config: ServeConfig, key: &SecretKey) -> anyhow::Result<Self> {
        let policy = Policy::load(&db)
            .await
            .context("loading the access policy")?;
        let secure = config.secure_cookies();
        let csrf = CsrfConfig::default()
            .with_key(Some(Key::from(&key.derive_64("csrf-cookie"))))
            .with_salt(hex::encode(key.derive_64("csrf-salt")))
            .with_cookie_name("rollway_csrf")
            .with_cookie_same_site(SameSite::Strict)
            .with_http_only(true)
            .with_secure(secure)
            .with_prefix_with_host(secure)
            .with_lifetime(time::Duration::hours(12));
        let config_timeout = config.gitlab_timeout_seconds;
        let prometheus_timeout = Duration::from_secs(u64::from(config.prometheus_timeout_seconds));
        let login_limiter =
            LoginLimiter::new(config.login_attempts_per_user, config.login_attempts_per_ip);
        let kube = Arc::new(KubeDriver::new(KubeSettings {
            call_timeout: Duration::from_secs(u64::from(config.kube_timeout_seconds)),
            ..KubeSettings::default()
        }));
        let prometheus = Arc::new(PrometheusClient::new(prometheus_timeout));
        let engine = Engine::new(
            db.clone(),
            key.sealer(),
            kube.clone(),
            prometheus.clone(),
            EngineSettings {
                lease: Duration::from_secs(u64::from(config.engine_lease_seconds)),
                max_jobs: config.engine_max_jobs as usize,
                lane_ttl: Duration::from_secs(u64::from(config.lane_ttl_seconds)),
                webhook_retry: config.webhook_retry_seconds.clone(),
                webhook_local_network: config.webhook_allow_local_network,
                public_url: Some(match &config.public_url {
                    Some(url) => url.to_string(),
                    None => format!("http://{}", config.listen),
                }),
                ..EngineSettings::default()
            },
        );
        let oidc = config
            .oidc
            .clone()
            .map(|c| Arc::new(Oidc::new(c, Duration::from_secs(u64::from(config_timeout)))));
        Ok(AppState(Arc::new(App {
            oidc,
            db,
            config,
            policy,
            login_limiter,
            csrf,
            sealer: key.sealer(),
            gitlab: GitlabClient::new(Duration::from_secs(u64::from(config_timeout))),
            prometheus,
            kube,
            engine,
            live: Arc::new(LiveDeployments::new()),
            board: board_cache(),
            items: item_cache(),
            orders: OrderReads::default(),
        })))
    }
}
