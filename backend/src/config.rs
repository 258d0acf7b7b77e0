//! Command line and `ROLLWAY_*` environment: parsed by clap, validated once
//! at start. A bad value is reported naming both the flag and the variable,
//! and the process exits with code 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use url::Url;

use crate::secret::Secret;

/// Exit code for bad configuration, as clap uses for bad arguments.
pub const EXIT_BAD_CONFIG: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "rollway",
    version,
    about = "Rollway: release tickets, approvals and staged rollouts to Kubernetes from GitLab",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Database: `sqlite://FILE` (created if missing) or `postgres://…`.
    #[arg(
        long,
        global = true,
        env = "ROLLWAY_DATABASE_URL",
        default_value = "sqlite://rollway.db"
    )]
    pub database_url: String,

    /// Log line format.
    #[arg(
        long,
        global = true,
        env = "ROLLWAY_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, create the first admin if there is none, then serve.
    Serve(ServeArgs),
    /// Administration against the configured database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Serve a simulated Kubernetes cluster (no database), to try Rollway
    /// and kubectl without a real cluster.
    Sim(SimArgs),
    /// Try Rollway with nothing else installed: a throw-away SQLite
    /// database seeded with two teams, four services, demo users and
    /// release items, an in-process simulated cluster (OpenKruise Rollout
    /// included) with a good and a bad tag, a stand-in GitLab, and time
    /// sped up so a rollout takes seconds. Prints the URL and logins.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its database and kubeconfig (created if
    /// missing; a new temporary directory when not given). Run it again on
    /// the same directory to start afresh.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ROLLWAY_SIM_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,

    /// Write a kubeconfig for the simulated cluster to this file (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,

    /// Milliseconds a started pod takes to become Ready.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub ready_delay_ms: u64,

    /// Serve OpenKruise Rollout (`rollouts.kruise.io`) too, for canary
    /// stages: its definition, workload webhook and controller.
    #[arg(long)]
    pub kruise: bool,
}

impl SimArgs {
    /// The address to listen on, validated.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            bad(
                "--listen",
                "ROLLWAY_SIM_LISTEN",
                format!("'{}' is not an address like 127.0.0.1:0", self.listen),
            )
        })
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "ROLLWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// The URL people reach Rollway at. When it is https, cookies are marked
    /// Secure and use the `__Host-` prefix.
    #[arg(long, env = "ROLLWAY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The reverse proxies in front of Rollway, whose X-Forwarded-For
    /// entries are believed: a number of hops (`1` for one proxy) or a
    /// comma-separated list of proxy addresses and networks
    /// (`10.0.0.0/8,192.168.1.7`). The client address is the one the
    /// outermost trusted proxy saw, never an entry the client wrote. Without
    /// it, the socket's peer address is the client.
    #[arg(long, env = "ROLLWAY_TRUSTED_PROXIES", value_name = "N|NETWORKS")]
    pub trusted_proxies: Option<String>,

    /// Replaced by --trusted-proxies (it trusted the leftmost
    /// X-Forwarded-For entry, which the client writes).
    #[arg(long, env = "ROLLWAY_TRUST_FORWARDED_FOR", hide = true)]
    pub trust_forwarded_for: bool,

    /// Serve `/metrics` on this address only (e.g. `127.0.0.1:9090`),
    /// not on the main listener.
    #[arg(long, env = "ROLLWAY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Login attempts allowed per user name per minute.
    #[arg(long, env = "ROLLWAY_LOGIN_ATTEMPTS_PER_USER", default_value = "5")]
    pub login_attempts_per_user: String,

    /// Login attempts allowed per client address per minute.
    #[arg(long, env = "ROLLWAY_LOGIN_ATTEMPTS_PER_IP", default_value = "20")]
    pub login_attempts_per_ip: String,

    /// Hours a browser session lasts without activity.
    #[arg(long, env = "ROLLWAY_SESSION_IDLE_HOURS", default_value = "12")]
    pub session_idle_hours: String,

    /// Seconds a GitLab call may take before it fails with 502.
    #[arg(long, env = "ROLLWAY_GITLAB_TIMEOUT_SECONDS", default_value = "10")]
    pub gitlab_timeout_seconds: String,

    /// Seconds a Prometheus query may take, tries included, before it
    /// counts as unanswered.
    #[arg(long, env = "ROLLWAY_PROMETHEUS_TIMEOUT_SECONDS", default_value = "10")]
    pub prometheus_timeout_seconds: String,

    /// Seconds a Kubernetes call may take before it is tried again (up to
    /// four tries with backoff); watches are not limited.
    #[arg(long, env = "ROLLWAY_KUBE_TIMEOUT_SECONDS", default_value = "10")]
    pub kube_timeout_seconds: String,

    /// Seconds a stage's job stays with this server without a renewal;
    /// another replica takes over a job whose server went away after this.
    #[arg(long, env = "ROLLWAY_ENGINE_LEASE_SECONDS", default_value = "15")]
    pub engine_lease_seconds: String,

    /// Rollouts this server follows at once.
    #[arg(long, env = "ROLLWAY_ENGINE_MAX_JOBS", default_value = "1000")]
    pub engine_max_jobs: String,

    /// Seconds a lane (a branch's copy of an app, made by a fast-path
    /// deploy) may go without a deploy before the engine removes it
    /// (default: 3 days).
    #[arg(long, env = "ROLLWAY_LANE_TTL_SECONDS", default_value = "259200")]
    pub lane_ttl_seconds: String,

    /// Seconds between the attempts at a notification, comma-separated
    /// (up to 8; default: the Standard Webhooks schedule, at once, 5 s,
    /// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); it fails after the last.
    #[arg(
        long,
        env = "ROLLWAY_WEBHOOK_RETRY_SECONDS",
        default_value = "0,5,300,1800,7200,18000,36000,36000"
    )]
    pub webhook_retry_seconds: String,

    /// Let notification destinations be on the local network or this host
    /// (loopback, private and link-local addresses); refused by default.
    #[arg(long, env = "ROLLWAY_WEBHOOK_ALLOW_LOCAL_NETWORK")]
    pub webhook_allow_local_network: bool,

    /// Single sign-on: the OpenID Connect provider's issuer URL (e.g.
    /// `https://login.example.com/realms/acme`). The login page then offers
    /// "Sign in with …"; needs --public-url and --oidc-client-id, and the
    /// provider must accept `<public-url>/auth/oidc/callback` as a redirect
    /// URI.
    #[arg(
        long,
        env = "ROLLWAY_OIDC_ISSUER",
        value_name = "URL",
        help_heading = "Single sign-on"
    )]
    pub oidc_issuer: Option<String>,

    /// The client id Rollway is registered with at the provider.
    #[arg(long, env = "ROLLWAY_OIDC_CLIENT_ID", help_heading = "Single sign-on")]
    pub oidc_client_id: Option<String>,

    /// The client's secret (best given in the environment); a public
    /// client leaves it out.
    #[arg(
        long,
        env = "ROLLWAY_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        value_parser = secret_value,
        help_heading = "Single sign-on"
    )]
    pub oidc_client_secret: Option<Secret<String>>,

    /// The provider's name on the login button.
    #[arg(
        long,
        env = "ROLLWAY_OIDC_NAME",
        default_value = "single sign-on",
        help_heading = "Single sign-on"
    )]
    pub oidc_name: String,

    /// Scopes asked for, space-separated (`openid` is always asked for).
    #[arg(
        long,
        env = "ROLLWAY_OIDC_SCOPES",
        default_value = "openid profile email",
        help_heading = "Single sign-on"
    )]
    pub oidc_scopes: String,

    /// The ID-token claim whose value is the Rollway user name: on a
    /// first sign-in the user of that name is linked to the person (for
    /// good: later sign-ins match the provider's subject), or created.
    #[arg(
        long,
        env = "ROLLWAY_OIDC_USER_CLAIM",
        default_value = "preferred_username",
        help_heading = "Single sign-on"
    )]
    pub oidc_user_claim: String,

    /// The ID-token claim listing a person's groups (e.g. `groups`), read
    /// for --oidc-group-role and --oidc-admin-group.
    #[arg(
        long,
        env = "ROLLWAY_OIDC_GROUPS_CLAIM",
        help_heading = "Single sign-on"
    )]
    pub oidc_groups_claim: Option<String>,

    /// A group's role on a tree node, `GROUP=/path:role` (role: owner,
    /// engineer or viewer); repeat it, or separate entries with `;` in the
    /// variable. At each sign-in a person gets the roles of the groups they
    /// are in and loses those of groups they left; roles given by hand are
    /// never touched.
    #[arg(
        long = "oidc-group-role",
        env = "ROLLWAY_OIDC_GROUP_ROLES",
        value_delimiter = ';',
        value_name = "GROUP=PATH:ROLE",
        help_heading = "Single sign-on"
    )]
    pub oidc_group_roles: Vec<String>,

    /// The group whose members are admins, set at each sign-in (admins
    /// made by hand stay admins).
    #[arg(
        long,
        env = "ROLLWAY_OIDC_ADMIN_GROUP",
        value_name = "GROUP",
        help_heading = "Single sign-on"
    )]
    pub oidc_admin_group: Option<String>,

    /// Who may log in with a password: `on` (every user who has one),
    /// `admins` (only admins, a way in while the provider is away) or
    /// `off` (people sign in through the provider only). API tokens work
    /// either way.
    #[arg(long, env = "ROLLWAY_PASSWORD_LOGIN", value_enum, default_value_t = PasswordLogin::On, help_heading = "Single sign-on")]
    pub password_login: PasswordLogin,
}

fn secret_value(raw: &str) -> Result<Secret<String>, String> {
    Ok(Secret::new(raw.to_string()))
}

/// Who may log in with a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PasswordLogin {
    On,
    Admins,
    Off,
}

/// A group's role on a node, as `--oidc-group-role` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRole {
    pub group: String,
    pub path: String,
    /// `owner`, `engineer` or `viewer`.
    pub role: String,
}

impl GroupRole {
    /// Reads `GROUP=/path:role`; the group may hold `=` and `:` itself
    /// (an LDAP name), the path and role may not.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let shape = || format!("'{raw}' is not GROUP=/path:role");
        let (group, rest) = raw.rsplit_once('=').ok_or_else(shape)?;
        let (path, role) = rest.rsplit_once(':').ok_or_else(shape)?;
        let (group, path, role) = (group.trim(), path.trim(), role.trim());
        if group.is_empty() || !path.starts_with('/') {
            return Err(shape());
        }
        if !matches!(role, "owner" | "engineer" | "viewer") {
            return Err(format!(
                "'{raw}': the role must be owner, engineer or viewer, not '{role}'"
            ));
        }
        Ok(GroupRole {
            group: group.to_string(),
            path: path.trim_end_matches('/').to_string(),
            role: role.to_string(),
        })
        .map(|mut g| {
            if g.path.is_empty() {
                g.path = "/".into();
            }
            g
        })
    }
}

/// An optional flag's value, trimmed; `None` when empty.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Validated single sign-on settings.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer exactly as configured (tokens' `iss` must equal the
    /// provider's discovery document's, which must equal this).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    pub name: String,
    pub scopes: Vec<String>,
    pub user_claim: String,
    pub groups_claim: Option<String>,
    pub group_roles: Vec<GroupRole>,
    pub admin_group: Option<String>,
    /// `<public-url>/auth/oidc/callback`.
    pub redirect_uri: String,
}

/// Whether `url` may be fetched in the clear: only on this machine.
pub fn loopback_http(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Checks a provider's URL: https, or http on this machine only.
pub fn provider_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("'{raw}' is not a URL ({e})"))?;
    let ok = match url.scheme() {
        "https" => true,
        "http" => loopback_http(&url),
        _ => false,
    };
    if !ok {
        return Err(format!(
            "'{raw}' must be an https URL (http only on this machine)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(format!("'{raw}' must hold no user, password or fragment"));
    }
    Ok(url)
}

impl OidcConfig {
    fn from_args(args: &ServeArgs, public_url: Option<&Url>) -> Result<Option<Self>, ConfigError> {
        let Some(issuer) = args.oidc_issuer.as_deref().filter(|s| !s.is_empty()) else {
            let set = args.oidc_client_id.is_some()
                || !args.oidc_group_roles.is_empty()
                || args.oidc_admin_group.is_some();
            if set {
                return Err(bad(
                    "--oidc-issuer",
                    "ROLLWAY_OIDC_ISSUER",
                    "the other single sign-on settings are given, but not the provider's issuer URL",
                ));
            }
            return Ok(None);
        };
        let issuer_bad = |m: String| bad("--oidc-issuer", "ROLLWAY_OIDC_ISSUER", m);
        let parsed = provider_url(issuer).map_err(issuer_bad)?;
        if parsed.query().is_some() {
            return Err(issuer_bad(format!("'{issuer}' must hold no query")));
        }
        let public_url = public_url.ok_or_else(|| {
            bad(
                "--public-url",
                "ROLLWAY_PUBLIC_URL",
                "single sign-on needs the URL people reach Rollway at: the provider sends them back to <public-url>/auth/oidc/callback",
            )
        })?;
        let client_id = given(&args.oidc_client_id).ok_or_else(|| {
            bad(
                "--oidc-client-id",
                "ROLLWAY_OIDC_CLIENT_ID",
                "single sign-on needs the client id Rollway is registered with",
            )
        })?;
        let mut scopes = vec!["openid".to_string()];
        for scope in args.oidc_scopes.split_whitespace() {
            if !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_string());
            }
        }
        let user_claim = args.oidc_user_claim.trim();
        if user_claim.is_empty() {
            return Err(bad(
                "--oidc-user-claim",
                "ROLLWAY_OIDC_USER_CLAIM",
                "name the claim that holds the user name",
            ));
        }
        let group_roles = args
            .oidc_group_roles
            .iter()
            .filter(|r| !r.trim().is_empty())
            .map(|r| GroupRole::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| bad("--oidc-group-role", "ROLLWAY_OIDC_GROUP_ROLES", m))?;
        let groups_claim = given(&args.oidc_groups_claim);
        let admin_group = given(&args.oidc_admin_group);
        if groups_claim.is_none() && (!group_roles.is_empty() || admin_group.is_some()) {
            return Err(bad(
                "--oidc-groups-claim",
                "ROLLWAY_OIDC_GROUPS_CLAIM",
                "group roles and the admin group need the claim that lists a person's groups",
            ));
        }
        let base = public_url.as_str().trim_end_matches('/');
        Ok(Some(OidcConfig {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            client_secret: args
                .oidc_client_secret
                .clone()
                .filter(|s| !s.expose().is_empty()),
            name: args.oidc_name.trim().to_string(),
            scopes,
            user_claim: user_claim.to_string(),
            groups_claim: groups_claim.map(str::to_string),
            group_roles,
            admin_group: admin_group.map(str::to_string),
            redirect_uri: format!("{base}/auth/oidc/callback"),
        }))
    }
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a user who logs in with a password.
    CreateUser {
        /// Login name (lowercase letters, digits, `-`, `_`, `.`).
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from this environment variable instead of
        /// generating one (a generated password is printed once).
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Name shown in the UI (defaults to the login name).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Create a service account (for CI) bound to a tree node.
    CreateServiceAccount {
        /// Account name.
        name: String,
        /// Path of the tree node to bind it to, e.g. `/acme/payments`.
        #[arg(long)]
        node: String,
        /// Role on that node.
        #[arg(long, default_value = "engineer")]
        role: String,
        /// What the account is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Create an API token for an account and print it once.
    CreateToken {
        /// Account (user or service account) name.
        account: String,
        /// Label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the token expires (never, when left out).
        #[arg(long, value_name = "N")]
        expires_in_days: Option<u32>,
    },
    /// List API tokens (never their secrets).
    ListTokens {
        /// Only the tokens of this account.
        account: Option<String>,
    },
    /// Revoke an API token by id; it is refused at once.
    RevokeToken {
        /// Token id, as `list-tokens` shows it.
        id: i64,
    },
    /// Register a cluster from a kubeconfig file (or in-cluster credentials).
    AddCluster {
        /// Cluster name.
        name: String,
        /// dev, test, staging or prod.
        #[arg(long)]
        environment: String,
        /// Kubeconfig file (`-` reads standard input). Stored encrypted.
        #[arg(long, value_name = "FILE", conflicts_with = "in_cluster")]
        kubeconfig: Option<PathBuf>,
        /// Context in the kubeconfig (its current context when left out).
        #[arg(long)]
        context: Option<String>,
        /// Use the service account of the pod Rollway runs in.
        #[arg(long)]
        in_cluster: bool,
    },
    /// Register an app: a Deployment's container in a cluster, on a tree node.
    AddApp {
        /// App name (unique within its cluster).
        name: String,
        /// Cluster name.
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        container: String,
        /// The Service canary stages route requests through (give
        /// `--ingress` too); without them canaries shift pods, not traffic.
        #[arg(long, requires = "ingress")]
        service: Option<String>,
        /// The nginx Ingress in front of `--service`.
        #[arg(long, requires = "service")]
        ingress: Option<String>,
        /// Tree node path, e.g. `/acme/payments`.
        #[arg(long)]
        node: String,
    },
    /// Check the audit log's chain (every row's link and its MAC under the
    /// secret key); names the first bad row and exits 1 when it is broken.
    VerifyAudit {
        /// Also check that the chain still reaches this anchor, a line
        /// printed earlier by `audit-anchor` (or logged by `serve`) and kept
        /// outside the database; exits 1 when it does not.
        #[arg(long, value_name = "LINE")]
        anchor: Option<String>,
    },
    /// Check the audit log and print its newest row as one anchor line, to
    /// keep where the database's writers cannot change it (a ticket, a log
    /// system, a write-once bucket) and to check later with `verify-audit
    /// --anchor`.
    AuditAnchor,
    /// Once, after upgrading: check an audit log written before it was
    /// keyed (unkeyed SHA-256), then re-chain it with the secret key. Refuses
    /// a broken chain, naming the row.
    MigrateAudit,
}

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// A validated database location.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret<String>,
    pub kind: DbKind,
    /// The SQLite file, when the database is SQLite.
    pub sqlite_file: Option<PathBuf>,
}

/// A configuration value that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} / {env}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: &'static str,
    pub message: String,
}

fn bad(flag: &'static str, env: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        env,
        message: message.into(),
    }
}

impl DatabaseConfig {
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let err = |m: String| bad("--database-url", "ROLLWAY_DATABASE_URL", m);
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let file = rest.trim_start_matches("//");
            let file = file.split('?').next().unwrap_or_default();
            if file.is_empty() || file == ":memory:" {
                return Err(err(
                    "SQLite needs a file, e.g. sqlite://rollway.db (in-memory databases lose everything)"
                        .into(),
                ));
            }
            Ok(Self {
                url: Secret::new(url.to_string()),
                kind: DbKind::Sqlite,
                sqlite_file: Some(PathBuf::from(file)),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Url::parse(url).map_err(|e| err(format!("not a valid PostgreSQL URL ({e})")))?;
            Ok(Self {
                url: Secret::new(url.to_string()),
                kind: DbKind::Postgres,
                sqlite_file: None,
            })
        } else {
            Err(err(
                "expected sqlite://FILE or postgres://USER@HOST/DB".into()
            ))
        }
    }
}

/// Whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedProxies {
    /// None: the socket's peer is the client.
    #[default]
    None,
    /// This many proxies in a row, the last of them the socket's peer.
    Hops(usize),
    /// Proxies at these addresses or networks.
    Networks(Vec<ipnet::IpNet>),
}

impl TrustedProxies {
    /// Most hops accepted; more is a mistake, not an architecture.
    pub const MAX_HOPS: usize = 10;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(TrustedProxies::None);
        }
        if let Ok(n) = raw.parse::<usize>() {
            return match n {
                0 => Ok(TrustedProxies::None),
                n if n <= Self::MAX_HOPS => Ok(TrustedProxies::Hops(n)),
                _ => Err(format!(
                    "{n} hops is more than {}; list the proxies' networks instead",
                    Self::MAX_HOPS
                )),
            };
        }
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|net| {
                net.parse::<ipnet::IpNet>()
                    .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("'{net}' is neither a number of hops nor an address or network like 10.0.0.0/8")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies::Networks)
    }
}

/// Validated settings of `rollway serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub public_url: Option<Url>,
    pub trusted_proxies: TrustedProxies,
    /// Where `/metrics` is served when not on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    pub login_attempts_per_user: u32,
    pub login_attempts_per_ip: u32,
    pub session_idle_hours: u32,
    pub gitlab_timeout_seconds: u32,
    pub prometheus_timeout_seconds: u32,
    pub kube_timeout_seconds: u32,
    pub engine_lease_seconds: u32,
    pub engine_max_jobs: u32,
    pub lane_ttl_seconds: u32,
    pub webhook_retry_seconds: Vec<u64>,
    pub webhook_allow_local_network: bool,
    /// Single sign-on, when a provider is configured.
    pub oidc: Option<OidcConfig>,
    pub password_login: PasswordLogin,
    /// Serving `rollway demo`: pages say the clusters are simulated.
    pub demo: bool,
}

/// A retry schedule as `--webhook-retry-seconds` takes it: up to 8
/// comma-separated numbers of seconds, each at most a day.
fn retry_schedule(text: &str) -> Result<Vec<u64>, String> {
    let schedule: Vec<u64> = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("'{}' is not a number of seconds", s.trim()))
        })
        .collect::<Result<_, _>>()?;
    if schedule.is_empty() || schedule.len() > 8 {
        return Err("give 1 to 8 numbers of seconds".into());
    }
    if schedule.iter().any(|s| *s > 86_400) {
        return Err("at most a day between two attempts".into());
    }
    Ok(schedule)
}

impl ServeConfig {
    /// Whether cookies must be `Secure` with the `__Host-` prefix.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https")
    }

    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let listen = args.listen.parse::<SocketAddr>().map_err(|_| {
            bad(
                "--listen",
                "ROLLWAY_LISTEN",
                format!("'{}' is not an address like 127.0.0.1:8080", args.listen),
            )
        })?;
        let public_url = match args.public_url.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => {
                let url = Url::parse(raw).map_err(|e| {
                    bad(
                        "--public-url",
                        "ROLLWAY_PUBLIC_URL",
                        format!("'{raw}' is not a URL ({e})"),
                    )
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(bad(
                        "--public-url",
                        "ROLLWAY_PUBLIC_URL",
                        format!("'{raw}' must be an http or https URL"),
                    ));
                }
                Some(url)
            }
        };
        let positive = |raw: &str, flag, env| -> Result<u32, ConfigError> {
            raw.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(flag, env, format!("'{raw}' is not a positive whole number")))
        };
        if args.trust_forwarded_for {
            return Err(bad(
                "--trust-forwarded-for",
                "ROLLWAY_TRUST_FORWARDED_FOR",
                "it is replaced by --trusted-proxies / ROLLWAY_TRUSTED_PROXIES (a number of proxy hops, e.g. 1, or the proxies' networks)",
            ));
        }
        let trusted_proxies = TrustedProxies::parse(args.trusted_proxies.as_deref().unwrap_or(""))
            .map_err(|m| bad("--trusted-proxies", "ROLLWAY_TRUSTED_PROXIES", m))?;
        let metrics_listen = match args.metrics_listen.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(raw.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "--metrics-listen",
                    "ROLLWAY_METRICS_LISTEN",
                    format!("'{raw}' is not an address like 127.0.0.1:9090"),
                )
            })?),
        };
        let oidc = OidcConfig::from_args(args, public_url.as_ref())?;
        if oidc.is_none() && args.password_login != PasswordLogin::On {
            return Err(bad(
                "--password-login",
                "ROLLWAY_PASSWORD_LOGIN",
                "without single sign-on (--oidc-issuer) people could not log in",
            ));
        }
        Ok(Self {
            listen,
            public_url,
            trusted_proxies,
            metrics_listen,
            login_attempts_per_user: positive(
                &args.login_attempts_per_user,
                "--login-attempts-per-user",
                "ROLLWAY_LOGIN_ATTEMPTS_PER_USER",
            )?,
            login_attempts_per_ip: positive(
                &args.login_attempts_per_ip,
                "--login-attempts-per-ip",
                "ROLLWAY_LOGIN_ATTEMPTS_PER_IP",
            )?,
            session_idle_hours: positive(
                &args.session_idle_hours,
                "--session-idle-hours",
                "ROLLWAY_SESSION_IDLE_HOURS",
            )?,
            gitlab_timeout_seconds: positive(
                &args.gitlab_timeout_seconds,
                "--gitlab-timeout-seconds",
                "ROLLWAY_GITLAB_TIMEOUT_SECONDS",
            )?,
            prometheus_timeout_seconds: positive(
                &args.prometheus_timeout_seconds,
                "--prometheus-timeout-seconds",
                "ROLLWAY_PROMETHEUS_TIMEOUT_SECONDS",
            )?,
            kube_timeout_seconds: positive(
                &args.kube_timeout_seconds,
                "--kube-timeout-seconds",
                "ROLLWAY_KUBE_TIMEOUT_SECONDS",
            )?,
            engine_lease_seconds: positive(
                &args.engine_lease_seconds,
                "--engine-lease-seconds",
                "ROLLWAY_ENGINE_LEASE_SECONDS",
            )?,
            engine_max_jobs: positive(
                &args.engine_max_jobs,
                "--engine-max-jobs",
                "ROLLWAY_ENGINE_MAX_JOBS",
            )?,
            lane_ttl_seconds: positive(
                &args.lane_ttl_seconds,
                "--lane-ttl-seconds",
                "ROLLWAY_LANE_TTL_SECONDS",
            )?,
            webhook_retry_seconds: retry_schedule(&args.webhook_retry_seconds).map_err(|m| {
                bad(
                    "--webhook-retry-seconds",
                    "ROLLWAY_WEBHOOK_RETRY_SECONDS",
                    format!("'{}': {m}", args.webhook_retry_seconds),
                )
            })?,
            webhook_allow_local_network: args.webhook_allow_local_network,
            oidc,
            password_login: args.password_login,
            demo: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args() -> ServeArgs {
        ServeArgs {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            trusted_proxies: None,
            trust_forwarded_for: false,
            metrics_listen: None,
            login_attempts_per_user: "5".into(),
            login_attempts_per_ip: "20".into(),
            session_idle_hours: "12".into(),
            gitlab_timeout_seconds: "10".into(),
            prometheus_timeout_seconds: "10".into(),
            kube_timeout_seconds: "10".into(),
            engine_lease_seconds: "15".into(),
            engine_max_jobs: "1000".into(),
            lane_ttl_seconds: "259200".into(),
            webhook_retry_seconds: "0,5,300,1800,7200,18000,36000,36000".into(),
            webhook_allow_local_network: false,
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_name: "single sign-on".into(),
            oidc_scopes: "openid profile email".into(),
            oidc_user_claim: "preferred_username".into(),
            oidc_groups_claim: None,
            oidc_group_roles: Vec::new(),
            oidc_admin_group: None,
            password_login: PasswordLogin::On,
        }
    }

    #[test]
    fn single_sign_on_needs_its_issuer_client_and_public_url() {
        let mut args = serve_args();
        args.oidc_issuer = Some("https://login.example.com/realms/acme".into());
        args.oidc_client_id = Some("rollway".into());
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--public-url"), "{err}");
        args.public_url = Some("https://rollway.example.com/".into());
        args.oidc_scopes = "profile openid groups".into();
        let config = ServeConfig::from_args(&args).unwrap();
        let oidc = config.oidc.unwrap();
        assert_eq!(
            oidc.redirect_uri,
            "https://rollway.example.com/auth/oidc/callback"
        );
        assert_eq!(oidc.scopes, ["openid", "profile", "groups"]);
        for issuer in [
            "http://login.example.com",
            "ftp://login.example.com",
            "https://u:p@login.example.com",
            "https://login.example.com/?x=1",
        ] {
            args.oidc_issuer = Some(issuer.into());
            assert!(ServeConfig::from_args(&args).is_err(), "{issuer}");
        }
        args.oidc_issuer = Some("http://127.0.0.1:9000".into());
        assert!(
            ServeConfig::from_args(&args).is_ok(),
            "http on this machine"
        );
        args.oidc_client_id = None;
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("ROLLWAY_OIDC_CLIENT_ID"), "{err}");
    }

    #[test]
    fn group_roles_need_the_groups_claim_and_a_real_role() {
        assert_eq!(
            GroupRole::parse("cn=pay,ou=groups=/acme/pay:owner").unwrap(),
            GroupRole {
                group: "cn=pay,ou=groups".into(),
                path: "/acme/pay".into(),
                role: "owner".into()
            }
        );
        assert_eq!(GroupRole::parse("all=/:viewer").unwrap().path, "/");
        for bad in [
            "pay",
            "pay=/acme",
            "=/acme:owner",
            "pay=acme:owner",
            "pay=/acme:boss",
        ] {
            assert!(GroupRole::parse(bad).is_err(), "{bad}");
        }
        let mut args = serve_args();
        args.public_url = Some("https://rollway.example.com".into());
        args.oidc_issuer = Some("https://login.example.com".into());
        args.oidc_client_id = Some("rollway".into());
        args.oidc_group_roles = vec!["pay=/acme/pay:owner".into()];
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--oidc-groups-claim"), "{err}");
        args.oidc_groups_claim = Some("groups".into());
        assert!(ServeConfig::from_args(&args).is_ok());
    }

    #[test]
    fn password_login_is_switched_off_only_with_single_sign_on() {
        let mut args = serve_args();
        args.password_login = PasswordLogin::Off;
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--password-login"), "{err}");
        args.oidc_client_id = Some("rollway".into());
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--oidc-issuer"), "{err}");
    }

    #[test]
    fn a_retry_schedule_is_1_to_8_numbers_of_seconds() {
        assert_eq!(retry_schedule("0, 1,1").unwrap(), [0, 1, 1]);
        for bad in ["", "1,x", "0,0,0,0,0,0,0,0,0", "90000"] {
            assert!(retry_schedule(bad).is_err(), "{bad}");
        }
        let mut args = serve_args();
        args.webhook_retry_seconds = "5,x".into();
        let err = ServeConfig::from_args(&args).unwrap_err();
        assert!(err.to_string().contains("--webhook-retry-seconds"), "{err}");
        args.webhook_retry_seconds = "0,5,300,1800,7200,18000,36000,36000".into();
        let config = ServeConfig::from_args(&args).unwrap();
        assert_eq!(
            config.webhook_retry_seconds,
            [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
        );
    }

    #[test]
    fn database_urls_are_recognised() {
        let sqlite = DatabaseConfig::from_url("sqlite://data/rollway.db").unwrap();
        assert_eq!(sqlite.kind, DbKind::Sqlite);
        assert_eq!(sqlite.sqlite_file, Some(PathBuf::from("data/rollway.db")));
        let pg = DatabaseConfig::from_url("postgres://postgres@127.0.0.1/rollway").unwrap();
        assert_eq!(pg.kind, DbKind::Postgres);
        for bad in ["mysql://x", "rollway.db", "sqlite::memory:", "sqlite://"] {
            let err = DatabaseConfig::from_url(bad).unwrap_err().to_string();
            assert!(err.contains("ROLLWAY_DATABASE_URL"), "{err}");
        }
    }

    #[test]
    fn bad_serve_values_name_flag_and_variable() {
        let mut args = serve_args();
        args.listen = "localhost".into();
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(
            err.contains("--listen") && err.contains("ROLLWAY_LISTEN"),
            "{err}"
        );

        let mut args = serve_args();
        args.public_url = Some("ftp://x".into());
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("ROLLWAY_PUBLIC_URL"), "{err}");

        let mut args = serve_args();
        args.login_attempts_per_ip = "0".into();
        assert!(ServeConfig::from_args(&args).is_err());
    }

    #[test]
    fn trusted_proxies_are_hops_or_networks() {
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::None));
        assert_eq!(TrustedProxies::parse("2"), Ok(TrustedProxies::Hops(2)));
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8, 192.168.1.7,::1"),
            Ok(TrustedProxies::Networks(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.7/32".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ]))
        );
        for bad in ["11", "-1", "10.0.0.0/33", "proxy.example"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        let mut args = serve_args();
        args.trust_forwarded_for = true;
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--trusted-proxies"), "{err}");
        let mut args = serve_args();
        args.metrics_listen = Some("nowhere".into());
        let err = ServeConfig::from_args(&args).unwrap_err().to_string();
        assert!(err.contains("ROLLWAY_METRICS_LISTEN"), "{err}");
    }

    #[test]
    fn https_public_url_turns_on_secure_cookies() {
        let mut args = serve_args();
        assert!(!ServeConfig::from_args(&args).unwrap().secure_cookies());
        args.public_url = Some("https://rollway.example.com".into());
        assert!(ServeConfig::from_args(&args).unwrap().secure_cookies());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
