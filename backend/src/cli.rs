//! What each command does: `serve` and the `admin` subcommands. Bad
//! configuration exits with code 2, other failures with 1.

use std::process::ExitCode;

use anyhow::{Context, anyhow};

use crate::app::AppState;
use crate::auth::password;
use crate::config::{
    AdminCommand, Cli, Command, ConfigError, DatabaseConfig, EXIT_BAD_CONFIG, ServeConfig, SimArgs,
};
use crate::db::accounts::{self, AccountKind, NewAccount};
use crate::db::audit::{self, Anchor, AuditActor, Verdict};
use crate::db::clusters::Connection;
use crate::db::{self, Db};
use crate::domain::cluster::Environment;
use crate::domain::tree::Role;
use crate::error::Error;
use crate::secret::{SecretKey, load_secret_key};
use crate::server;

mod demo;

/// A failure, and whether it was bad configuration (exit 2).
enum Failure {
    Config(String),
    Other(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Internal(inner) => Failure::Other(inner),
            other => Failure::Other(anyhow!(other.to_string())),
        }
    }
}

impl From<crate::db::error::Error> for Failure {
    fn from(e: crate::db::error::Error) -> Self {
        Error::from(e).into()
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_BAD_CONFIG as u8)
        }
        Err(Failure::Other(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects and migrates; audit rows written through the handle are sealed
/// with `key`.
async fn open_db(config: &DatabaseConfig, key: &SecretKey) -> Result<Db, Failure> {
    let db = Db::connect(config, key.audit_key()).await?;
    db.migrate().await?;
    Ok(db)
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => {
            let serve_config = ServeConfig::from_args(&args)?;
            let db_config = DatabaseConfig::from_url(&cli.global.database_url)?;
            let key = load_secret_key(
                std::env::var("ROLLWAY_SECRET_KEY").ok().as_deref(),
                db_config.sqlite_file.as_deref(),
            )
            .map_err(Failure::Config)?;
            let admin_password = std::env::var("ROLLWAY_ADMIN_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty());
            if let Some(p) = &admin_password {
                password::validate(p)
                    .map_err(|e| Failure::Config(format!("invalid ROLLWAY_ADMIN_PASSWORD: {e}")))?;
            }
            let db = open_db(&db_config, &key).await?;
            // An audit log awaiting `migrate-audit`, or sealed with another
            // key, could not take a single row: refuse now, not per request.
            if let Some(problem) = audit::refusal(&db).await? {
                return Err(Failure::Config(problem));
            }
            create_first_admin(&db, admin_password).await?;
            let state = AppState::new(db, serve_config, &key).await?;
            server::serve(state).await?;
            Ok(())
        }
        Command::Admin(command) => {
            let config = DatabaseConfig::from_url(&cli.global.database_url)?;
            let key = secret_key(&config)?;
            let db = open_db(&config, &key).await?;
            admin(&db, &key, command).await
        }
        Command::Sim(args) => serve_sim(&args).await,
        Command::Demo(args) => demo::run(&args).await,
    }
}

/// `rollway sim`: serves a simulated cluster until Ctrl-C or SIGTERM.
async fn serve_sim(args: &SimArgs) -> Result<(), Failure> {
    use crate::sim::{Sim, SimConfig};
    let listen = args.listen_addr()?;
    let config = SimConfig {
        ready_delay: std::time::Duration::from_millis(args.ready_delay_ms),
        ..SimConfig::default()
    };
    let running = Sim::start(config, listen).await?;
    if args.kruise {
        running.sim.install_kruise();
    }
    println!("Rollway simulated cluster listening on {}", running.url());
    if let Some(path) = &args.kubeconfig_out {
        write_kubeconfig(path, &running.kubeconfig())
            .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
        println!("Kubeconfig written to {}", path.display());
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
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
    running.shutdown().await;
    Ok(())
}

/// Writes (or overwrites) a kubeconfig readable by its owner only.
fn write_kubeconfig(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        std::io::Write::write_all(&mut options.open(path)?, content.as_bytes())?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    std::io::Write::write_all(&mut options.open(path)?, content.as_bytes())
}

/// On a database without accounts, creates `admin` with the given password
/// or a generated one printed once.
async fn create_first_admin(db: &Db, password: Option<String>) -> Result<(), Failure> {
    if accounts::count(&db.pool).await? > 0 {
        return Ok(());
    }
    let (password, generated) = match password {
        Some(p) => (p, false),
        None => (password::generate(), true),
    };
    let hash = password::hash_blocking(password.clone()).await?;
    let mut tx = db.begin_write().await.context("opening a transaction")?;
    accounts::insert(
        &mut tx,
        &NewAccount {
            kind: AccountKind::User,
            name: "admin",
            display_name: "Administrator",
            description: "",
            password_hash: Some(&hash),
            is_admin: true,
        },
        &AuditActor::system(),
    )
    .await?;
    tx.commit().await.context("creating the first admin")?;
    if generated {
        println!(
            "Created the first administrator.\n  user:     admin\n  password: {password}\nThis password is shown only now; change it after logging in."
        );
    } else {
        println!(
            "Created the first administrator 'admin' with the password from ROLLWAY_ADMIN_PASSWORD."
        );
    }
    Ok(())
}

fn format_time(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => crate::http::format_time(ms),
    }
}

/// The secret key, the server's: admin commands seal the audit rows they
/// append (and stored credentials) with it.
fn secret_key(config: &DatabaseConfig) -> Result<SecretKey, Failure> {
    load_secret_key(
        std::env::var("ROLLWAY_SECRET_KEY").ok().as_deref(),
        config.sqlite_file.as_deref(),
    )
    .map_err(Failure::Config)
}

/// Why a verified audit log is not intact, as the command's error.
fn audit_failure(verdict: Verdict) -> Failure {
    let message = match verdict {
        Verdict::Intact { .. } => "the audit log is intact".to_string(),
        Verdict::Broken { id, reason } => format!("the audit log is broken at row {id}: {reason}"),
        Verdict::Unmigrated { old } => match *old {
            Verdict::Broken { id, reason } => format!(
                "the audit log is still chained with the unkeyed SHA-256 of earlier versions, \
                 and that chain is broken at row {id}: {reason}"
            ),
            _ => "the audit log is still chained with the unkeyed SHA-256 of earlier versions, \
                  which anyone able to write the database can recompute: run `rollway admin \
                  migrate-audit` once to seal it with the secret key"
                .to_string(),
        },
        Verdict::OtherKey => "the audit log is sealed with another secret key than this one: \
                              verify with the ROLLWAY_SECRET_KEY (or, for SQLite, the \
                              <database>.key file) of the server that wrote it; if it is that \
                              key, the log's head was altered"
            .to_string(),
    };
    Failure::Other(anyhow!(message))
}

async fn admin(db: &Db, key: &SecretKey, command: AdminCommand) -> Result<(), Failure> {
    match command {
        AdminCommand::AddCluster {
            name,
            environment,
            kubeconfig,
            context,
            in_cluster,
        } => {
            let environment: Environment = environment
                .parse()
                .map_err(|e: String| Failure::Config(format!("--environment: {e}")))?;
            let connection = match (kubeconfig, in_cluster) {
                (_, true) => Connection::InCluster,
                (Some(path), false) => {
                    let yaml = if path.as_os_str() == "-" {
                        let mut text = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                            .context("reading the kubeconfig from standard input")?;
                        text
                    } else {
                        std::fs::read_to_string(&path).map_err(|e| {
                            Failure::Config(format!(
                                "--kubeconfig: cannot read {}: {e}",
                                path.display()
                            ))
                        })?
                    };
                    Connection::Kubeconfig {
                        yaml: crate::secret::Secret::new(yaml),
                        context,
                    }
                }
                (None, false) => {
                    return Err(Failure::Config(
                        "give --kubeconfig FILE or --in-cluster".into(),
                    ));
                }
            };
            let sealer = key.sealer();
            let cluster = db::clusters::create(
                db,
                &sealer,
                &name,
                environment,
                &connection,
                &AuditActor::cli(),
            )
            .await?;
            println!(
                "Registered cluster '{}' (id {}, {}).",
                cluster.name, cluster.id, cluster.environment
            );
            Ok(())
        }
        AdminCommand::AddApp {
            name,
            cluster,
            namespace,
            deployment,
            container,
            service,
            ingress,
            node,
        } => {
            let cluster = db::clusters::find_by_name(&db.pool, &cluster)
                .await?
                .ok_or_else(|| {
                    Failure::Config(format!("--cluster: no cluster named '{cluster}'"))
                })?;
            let node = db::tree::find_by_path(&db.pool, &node)
                .await?
                .ok_or_else(|| Failure::Config(format!("--node: no tree node at {node}")))?;
            let fields = db::apps::AppFields {
                name,
                cluster_id: cluster.id,
                namespace,
                deployment,
                container,
                service,
                ingress,
                node_id: node.id,
            };
            let app = db::apps::create(db, &fields, &AuditActor::cli()).await?;
            println!(
                "Registered app '{}' (id {}): {}/{} container {} in {}, on {}.",
                app.name,
                app.id,
                app.namespace,
                app.deployment,
                app.container,
                app.cluster,
                app.node_path
            );
            Ok(())
        }
        AdminCommand::CreateUser {
            name,
            admin,
            password_env,
            display_name,
        } => {
            let (password, generated) = match &password_env {
                Some(var) => {
                    let value = std::env::var(var).map_err(|_| {
                        Failure::Config(format!("--password-env: the variable {var} is not set"))
                    })?;
                    (value, false)
                }
                None => (password::generate(), true),
            };
            password::validate(&password)?;
            let hash = password::hash_blocking(password.clone()).await?;
            let mut tx = db.begin_write().await.context("opening a transaction")?;
            let account = accounts::insert(
                &mut tx,
                &NewAccount {
                    kind: AccountKind::User,
                    name: &name,
                    display_name: display_name.as_deref().unwrap_or(""),
                    description: "",
                    password_hash: Some(&hash),
                    is_admin: admin,
                },
                &AuditActor::cli(),
            )
            .await?;
            tx.commit().await.context("creating the user")?;
            println!(
                "Created user '{}' (id {}){}.",
                account.name,
                account.id,
                if admin { ", an administrator" } else { "" }
            );
            if generated {
                println!("password: {password}\nThis password is shown only now.");
            }
            Ok(())
        }
        AdminCommand::CreateServiceAccount {
            name,
            node,
            role,
            description,
        } => {
            let role: Role = role
                .parse()
                .map_err(|e: String| Failure::Config(format!("--role: {e}")))?;
            let node = db::tree::find_by_path(&db.pool, &node)
                .await?
                .ok_or_else(|| Failure::Config(format!("--node: no tree node at {node}")))?;
            let account = accounts::create_service_account(
                db,
                &name,
                &description,
                Some((&node, role)),
                &AuditActor::cli(),
            )
            .await?;
            println!(
                "Created service account '{}' (id {}) as {} on {}.",
                account.name, account.id, role, node.path
            );
            Ok(())
        }
        AdminCommand::CreateToken {
            account,
            name,
            expires_in_days,
        } => {
            let found = accounts::find_by_name(&db.pool, &account)
                .await?
                .ok_or_else(|| Failure::Config(format!("no account named '{account}'")))?;
            let (info, secret) =
                db::tokens::create(db, found.id, &name, expires_in_days, &AuditActor::cli())
                    .await?;
            eprintln!(
                "Created token {} '{}' for {} (expires: {}). It is shown only now:",
                info.id,
                info.name,
                info.account,
                format_time(info.expires_at)
            );
            println!("{}", secret.expose());
            Ok(())
        }
        AdminCommand::ListTokens { account } => {
            let account_id = match account {
                None => None,
                Some(name) => Some(
                    accounts::find_by_name(&db.pool, &name)
                        .await?
                        .ok_or_else(|| Failure::Config(format!("no account named '{name}'")))?
                        .id,
                ),
            };
            let list = db::tokens::list(&db.pool, account_id).await?;
            let now = db::now_ms();
            println!(
                "{:>6}  {:<20} {:<20} {:<12} {:<8} {:<17} {:<17}",
                "ID", "ACCOUNT", "NAME", "PREFIX", "STATE", "EXPIRES", "LAST USED"
            );
            for t in list {
                println!(
                    "{:>6}  {:<20} {:<20} {:<12} {:<8} {:<17} {:<17}",
                    t.id,
                    t.account,
                    t.name,
                    t.prefix,
                    t.state(now),
                    format_time(t.expires_at),
                    format_time(t.last_used_at)
                );
            }
            Ok(())
        }
        AdminCommand::VerifyAudit { anchor } => {
            let anchor = anchor
                .as_deref()
                .map(str::parse::<Anchor>)
                .transpose()
                .map_err(|e| Failure::Config(format!("--anchor: {e}")))?;
            match audit::verify(db, anchor.as_ref()).await? {
                Verdict::Intact { rows, head } => {
                    println!(
                        "The audit log is intact: {rows} rows, every link and MAC checks out."
                    );
                    if let Some(anchor) = &anchor {
                        println!("It reaches the anchor at row {}.", anchor.seq);
                    }
                    if let Some(head) = head {
                        println!("Head: {head}");
                    }
                    Ok(())
                }
                other => Err(audit_failure(other)),
            }
        }
        AdminCommand::AuditAnchor => match audit::verify(db, None).await? {
            Verdict::Intact {
                head: Some(head), ..
            } => {
                // Only the line on stdout, for scripts that store it.
                println!("{head}");
                Ok(())
            }
            Verdict::Intact { head: None, .. } => Err(Failure::Other(anyhow!(
                "the audit log is empty: nothing to anchor yet"
            ))),
            other => Err(audit_failure(other)),
        },
        AdminCommand::MigrateAudit => match audit::migrate(db).await? {
            audit::Migration::AlreadyKeyed => {
                println!("The audit log is already sealed with the secret key; nothing to do.");
                Ok(())
            }
            audit::Migration::Refused { id, reason } => Err(Failure::Other(anyhow!(
                "refusing to re-chain the audit log: its old chain is broken at row {id}: \
                 {reason}. Nothing was changed; sealing it now would vouch for the tampered rows"
            ))),
            audit::Migration::Rechained { rows } => {
                println!(
                    "Re-chained {rows} audit rows with the secret key (HMAC-SHA256). Keep an \
                     anchor outside the database now: rollway admin audit-anchor"
                );
                Ok(())
            }
        },
        AdminCommand::RevokeToken { id } => {
            let info = db::tokens::revoke(db, id, &AuditActor::cli()).await?;
            println!(
                "Revoked token {} '{}' of {}.",
                info.id, info.name, info.account
            );
            Ok(())
        }
    }
}
