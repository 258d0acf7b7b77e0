//! The command line: help everywhere, bad configuration exits 2 naming the
//! flag and the variable, admin commands work against the database.

use std::process::Command;

use reqwest::StatusCode;

use crate::common::{Backend, SECRET_KEY, TestApp, TestDb, bin};
use crate::db_test;

fn rollway(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(dir.path());
    for var in [
        "ROLLWAY_DATABASE_URL",
        "ROLLWAY_LISTEN",
        "ROLLWAY_SECRET_KEY",
        "ROLLWAY_ADMIN_PASSWORD",
        "ROLLWAY_PUBLIC_URL",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["admin", "--help"],
        vec!["admin", "create-user", "--help"],
        vec!["admin", "create-service-account", "--help"],
        vec!["admin", "create-token", "--help"],
        vec!["admin", "list-tokens", "--help"],
        vec!["admin", "revoke-token", "--help"],
        vec!["admin", "verify-audit", "--help"],
        vec!["admin", "audit-anchor", "--help"],
        vec!["admin", "migrate-audit", "--help"],
    ] {
        let out = rollway(&args, &[]);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let help = String::from_utf8_lossy(&rollway(&["serve", "--help"], &[]).stdout).to_string();
    for flag in [
        "--listen",
        "ROLLWAY_LISTEN",
        "--database-url",
        "ROLLWAY_DATABASE_URL",
        "--public-url",
        "--log-format",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    // The README's configuration table has every flag `serve` takes.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let flags: std::collections::BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .collect();
    assert!(flags.contains("--oidc-issuer"), "{flags:?}");
    for flag in flags {
        assert!(readme.contains(&format!("`{flag}`")), "README lacks {flag}");
    }
}

#[test]
fn bad_configuration_exits_2_naming_the_flag_and_variable() {
    /// (arguments, environment, words the error must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &["serve", "--listen", "nonsense"],
            &[],
            &["--listen", "ROLLWAY_LISTEN"],
        ),
        (
            &["serve"],
            &[("ROLLWAY_LISTEN", "also-nonsense")],
            &["--listen", "ROLLWAY_LISTEN"],
        ),
        (
            &["--database-url", "mysql://x/y", "serve"],
            &[],
            &["--database-url", "ROLLWAY_DATABASE_URL"],
        ),
        (
            &["serve", "--public-url", "ftp://x"],
            &[],
            &["--public-url", "ROLLWAY_PUBLIC_URL"],
        ),
        (
            &["serve", "--login-attempts-per-ip", "0"],
            &[],
            &["--login-attempts-per-ip"],
        ),
        (
            &["serve"],
            &[("ROLLWAY_SECRET_KEY", "short")],
            &["ROLLWAY_SECRET_KEY"],
        ),
        (
            &["serve"],
            &[("ROLLWAY_ADMIN_PASSWORD", "short")],
            &["ROLLWAY_ADMIN_PASSWORD"],
        ),
        (
            &[
                "--database-url",
                "postgres://postgres@127.0.0.1/none",
                "serve",
            ],
            &[],
            &["ROLLWAY_SECRET_KEY"],
        ),
        (&["--log-format", "xml", "serve"], &[], &["--log-format"]),
    ];
    for (args, env, words) in cases {
        let out = rollway(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        for word in *words {
            assert!(
                stderr.contains(word),
                "{args:?}: '{word}' missing in: {stderr}"
            );
        }
    }
}

db_test!(
    admin_commands_manage_users_service_accounts_and_tokens,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let admin = app.api(Some(&app.admin_token()));
        admin
            .post(
                "/api/v1/nodes",
                serde_json::json!({"name": "acme", "title": "Acme"}),
            )
            .await;

        let out = app.cli(&["admin", "create-user", "carla"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let password = stdout
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .expect("password printed")
            .trim()
            .to_string();
        assert_eq!(
            app.browser().login("carla", &password).await.0,
            StatusCode::SEE_OTHER
        );

        let out = Command::new(bin())
            .args([
                "--database-url",
                &app.db.url,
                "admin",
                "create-user",
                "boss",
                "--admin",
                "--password-env",
                "BOSS_PW",
            ])
            .env("BOSS_PW", "boss-password-123")
            // The server's key: the command seals the audit row it appends.
            .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("boss-password-123"));
        let boss = app.api(Some(&app.token_for("boss")));
        assert_eq!(boss.get("/api/v1/me").await.1["admin"], true);

        let out = app.cli(&["admin", "create-user", "carla"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

        let out = app.cli(&[
            "admin",
            "create-service-account",
            "deployer",
            "--node",
            "/acme",
            "--role",
            "engineer",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = app.cli(&[
            "admin",
            "create-service-account",
            "lost",
            "--node",
            "/nowhere",
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("/nowhere"));

        let out = app.cli(&[
            "admin",
            "create-token",
            "deployer",
            "--name",
            "ci",
            "--expires-in-days",
            "7",
        ]);
        assert!(out.status.success());
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(token.starts_with("rwy_"));
        let deployer = app.api(Some(&token));
        let (s, me) = deployer.get("/api/v1/me").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(me["roles"][0]["path"], "/acme");

        let out = app.cli(&["admin", "list-tokens", "deployer"]);
        let listing = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            listing.contains("deployer") && listing.contains("active"),
            "{listing}"
        );
        assert!(
            !listing.contains(&token),
            "list-tokens must not print secrets"
        );
        let id = listing
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .expect("a token row")
            .to_string();
        let out = app.cli(&["admin", "revoke-token", &id]);
        assert!(out.status.success());
        assert_eq!(deployer.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
        let listing =
            String::from_utf8_lossy(&app.cli(&["admin", "list-tokens", "deployer"]).stdout)
                .to_string();
        assert!(listing.contains("revoked"), "{listing}");
    }
);

#[tokio::test]
async fn sqlite_database_and_key_file_are_created_on_first_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = db.dir().to_path_buf();
    let out = Command::new(bin())
        .args(["admin", "list-tokens"])
        .current_dir(&dir)
        .env_remove("ROLLWAY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.join("rollway.db").exists(),
        "default database sqlite://rollway.db is created"
    );
    let app = TestApp::start_on(
        db,
        crate::common::Start {
            env: vec![("ROLLWAY_SECRET_KEY".into(), String::new())],
            ..Default::default()
        },
    );
    let key = dir.join("rollway.db.key");
    assert!(key.exists(), "a generated key is kept beside the database");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(app);
}

/// The database of `db` opened and migrated through the library, for
/// tests that call the `db` layer directly.
pub(crate) async fn open_db(db: &TestDb) -> rollway::db::Db {
    let opened = connect_db(db).await;
    opened.migrate().await.expect("migrate the test database");
    opened
}

/// The database of `db` opened through the library, not migrated.
pub(crate) async fn connect_db(db: &TestDb) -> rollway::db::Db {
    let config = rollway::config::DatabaseConfig {
        url: rollway::secret::Secret::new(db.url.clone()),
        kind: match db.backend {
            Backend::Sqlite => rollway::config::DbKind::Sqlite,
            Backend::Postgres => rollway::config::DbKind::Postgres,
        },
        sqlite_file: None,
    };
    let key = rollway::secret::SecretKey::new(SECRET_KEY.as_bytes()).audit_key();
    rollway::db::Db::connect(&config, key)
        .await
        .expect("open the test database")
}

db_test!(
    a_service_account_whose_binding_fails_is_not_created,
    |backend| async move {
        use rollway::db::{accounts, audit::AuditActor, tree::Node};
        use rollway::domain::tree::Role;
        let test_db = TestDb::new(backend).await;
        let db = open_db(&test_db).await;
        let gone = Node {
            id: 987_654,
            parent_id: None,
            name: "gone".into(),
            title: "Gone".into(),
            path: "/gone".into(),
            created_at: 0,
            updated_at: 0,
        };
        let err = accounts::create_service_account(
            &db,
            "ci-bot",
            "",
            Some((&gone, Role::Engineer)),
            &AuditActor::cli(),
        )
        .await
        .expect_err("a binding to a node that does not exist fails");
        assert!(
            matches!(err, rollway::db::error::Error::Database(_)),
            "the foreign key refuses it: {err:?}"
        );
        assert!(
            accounts::find_by_name(&db.pool, "ci-bot")
                .await
                .unwrap()
                .is_none(),
            "the account was rolled back with its binding"
        );
        let audited: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'account.create'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            audited, 0,
            "no audit row for an account that does not exist"
        );

        // Bound to a real node, the account, its membership and both audit
        // rows are written together.
        let node = rollway::db::tree::create(&db, None, "acme", "Acme", &AuditActor::cli())
            .await
            .unwrap();
        let account = accounts::create_service_account(
            &db,
            "ci-bot",
            "",
            Some((&node, Role::Engineer)),
            &AuditActor::cli(),
        )
        .await
        .unwrap();
        let members: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM node_members WHERE account_id = $1 AND node_id = $2",
        )
        .bind(account.id)
        .bind(node.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(members, 1);
    }
);
