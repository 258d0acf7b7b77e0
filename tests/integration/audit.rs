//! The audit log: who changed what, from where, before and after, in a
//! chain of MACs under the secret key that `rollway admin verify-audit`
//! checks, which the database refuses to change, and whose head can be
//! anchored outside it.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Row};

use crate::common::{
    ADMIN_PASSWORD, Backend, Org, SECRET_KEY, Start, TestApp, TestDb, USER_PASSWORD, bin,
    eventually,
};
use crate::db_test;

/// A key other than the servers' in these tests.
const OTHER_KEY: &str = "another-secret-key-0123456789abcdef012345678";

/// `rollway --database-url … <args>` with `key` as the secret key.
fn rollway(db: &TestDb, key: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--database-url")
        .arg(&db.url)
        .args(args)
        .env("ROLLWAY_SECRET_KEY", key)
        .current_dir(db.dir())
        .output()
        .expect("run rollway")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Starts `rollway serve` with `key` and waits for it to exit by itself:
/// its exit code and error output, or `None` (and it is stopped) when it
/// is still serving after a generous deadline.
async fn serve_exit(db: &TestDb, key: &str) -> Option<(Option<i32>, String)> {
    let mut child = Command::new(bin())
        .args([
            "--database-url",
            &db.url,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("ROLLWAY_SECRET_KEY", key)
        .env("ROLLWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .current_dir(db.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rollway");
    let exited = eventually(Duration::from_secs(30), || {
        let done = matches!(child.try_wait(), Ok(Some(_)));
        async move { done }
    })
    .await;
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let out = child.wait_with_output().expect("serve output");
    Some((out.status.code(), stderr(&out)))
}

async fn connect(db: &TestDb) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = match db.backend {
        // Creates the file for a database built here rather than by rollway.
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    sqlx::AnyConnection::connect(&url)
        .await
        .expect("connect to the test database")
}

/// Runs SQL, giving back the database's refusal instead of panicking.
async fn try_execute(db: &TestDb, sql: &str) -> Result<u64, String> {
    let mut conn = connect(db).await;
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| e.to_string())
}

/// Drops the audit triggers, as the owner of the database's tables can:
/// what an attacker with full write access does first.
async fn drop_audit_triggers(db: &TestDb) {
    for (table, trigger) in [
        ("audit_log", "audit_log_no_update"),
        ("audit_log", "audit_log_no_delete"),
        ("audit_head", "audit_head_forward_only"),
        ("audit_head", "audit_head_no_delete"),
    ] {
        let on = match db.backend {
            Backend::Postgres => format!(" ON {table}"),
            Backend::Sqlite => String::new(),
        };
        db.execute(&format!("DROP TRIGGER IF EXISTS {trigger}{on}"))
            .await;
    }
}

/// One stored audit row.
#[derive(Debug, Clone, PartialEq)]
struct StoredRow {
    id: i64,
    at: i64,
    actor_id: Option<i64>,
    actor: String,
    source_ip: String,
    action: String,
    target_type: String,
    target_id: Option<i64>,
    summary: String,
    before: Option<String>,
    after: Option<String>,
    prev_hash: String,
    hash: String,
}

async fn stored_rows(db: &TestDb) -> Vec<StoredRow> {
    let mut conn = connect(db).await;
    sqlx::query(
        "SELECT id, at, actor_id, actor, source_ip, action, target_type, target_id, summary, \
         before_json, after_json, prev_hash, hash FROM audit_log ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("audit rows")
    .iter()
    .map(|r| StoredRow {
        id: r.get("id"),
        at: r.get("at"),
        actor_id: r.get("actor_id"),
        actor: r.get("actor"),
        source_ip: r.get("source_ip"),
        action: r.get("action"),
        target_type: r.get("target_type"),
        target_id: r.get("target_id"),
        summary: r.get("summary"),
        before: r.get("before_json"),
        after: r.get("after_json"),
        prev_hash: r.get("prev_hash"),
        hash: r.get("hash"),
    })
    .collect()
}

/// The row hash of earlier versions: plain SHA-256 of the linked,
/// length-prefixed fields, which anyone can recompute.
fn unkeyed_hash(prev_hash: &str, r: &StoredRow) -> String {
    use sha2::{Digest, Sha256};
    let mut input = String::new();
    let mut field = |v: &str| {
        input.push_str(&format!("{}:{v}|", v.len()));
    };
    field(prev_hash);
    field(&r.id.to_string());
    field(&r.at.to_string());
    field(&r.actor_id.map(|v| v.to_string()).unwrap_or_default());
    field(&r.actor);
    field(&r.source_ip);
    field(&r.action);
    field(&r.target_type);
    field(&r.target_id.map(|v| v.to_string()).unwrap_or_default());
    field(&r.summary);
    field(r.before.as_deref().unwrap_or("\u{0}"));
    field(r.after.as_deref().unwrap_or("\u{0}"));
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// Stores `rows` chained with the unkeyed hash (ids and links set here),
/// and points the head at the last one.
async fn write_unkeyed_chain(db: &TestDb, rows: &mut [StoredRow], insert: bool) {
    let mut conn = connect(db).await;
    let mut prev = String::new();
    for r in rows.iter_mut() {
        r.prev_hash = prev.clone();
        r.hash = unkeyed_hash(&prev, r);
        let sql = if insert {
            "INSERT INTO audit_log (id, at, actor_id, actor, source_ip, action, target_type, \
             target_id, summary, before_json, after_json, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        } else {
            "UPDATE audit_log SET at = $2, actor_id = $3, actor = $4, source_ip = $5, action = $6, \
             target_type = $7, target_id = $8, summary = $9, before_json = $10, after_json = $11, \
             prev_hash = $12, hash = $13 WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(r.id)
            .bind(r.at)
            .bind(r.actor_id)
            .bind(&r.actor)
            .bind(&r.source_ip)
            .bind(&r.action)
            .bind(&r.target_type)
            .bind(r.target_id)
            .bind(&r.summary)
            .bind(&r.before)
            .bind(&r.after)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .execute(&mut conn)
            .await
            .expect("write an audit row");
        prev = r.hash.clone();
    }
    let last = rows.last().map(|r| r.id).unwrap_or_default();
    sqlx::query("UPDATE audit_head SET seq = $1, last_hash = $2 WHERE id = 1")
        .bind(last)
        .bind(&prev)
        .execute(&mut conn)
        .await
        .expect("move the head");
}

/// A database as an earlier version left it: the schema up to migration
/// 0005 and three rows chained with the unkeyed hash.
async fn database_of_an_earlier_version(backend: Backend) -> (TestDb, Vec<StoredRow>) {
    use std::borrow::Cow;
    let db = TestDb::new(backend).await;
    let folder = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = format!("{}/../migrations/{folder}", env!("CARGO_MANIFEST_DIR"));
    let all = sqlx::migrate::Migrator::new(std::path::Path::new(&dir))
        .await
        .expect("read the migrations");
    let before_keyed = sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            all.migrations
                .iter()
                .filter(|m| m.version <= 5)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    let mut conn = connect(&db).await;
    before_keyed.run(&mut conn).await.expect("migrate to 0005");
    let row = |id: i64, actor: &str, action: &str, target_type: &str, summary: &str| StoredRow {
        id,
        at: 1_700_000_000_000 + id,
        actor_id: (actor != "system").then_some(1),
        actor: actor.into(),
        source_ip: if actor == "system" {
            "local"
        } else {
            "10.0.0.7"
        }
        .into(),
        action: action.into(),
        target_type: target_type.into(),
        target_id: Some(id),
        summary: summary.into(),
        before: None,
        after: Some(format!("{{\"id\":{id}}}")),
        prev_hash: String::new(),
        hash: String::new(),
    };
    let mut rows = vec![
        row(1, "system", "account.create", "account", "created admin"),
        row(2, "admin", "node.create", "node", "created /acme"),
        row(
            3,
            "admin",
            "member.add",
            "member",
            "olivia is owner on /acme",
        ),
    ];
    write_unkeyed_chain(&db, &mut rows, true).await;
    (db, rows)
}

db_test!(
    admin_changes_are_recorded_with_actor_address_and_before_after,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let (s, _) = org
            .admin
            .patch(
                &format!("/api/v1/nodes/{}", org.pay),
                json!({"title": "Payments"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, page) = org.admin.get("/api/v1/audit?action=node.update").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let entry = &page["entries"][0];
        assert_eq!(entry["actor"], "admin");
        assert_eq!(entry["source_ip"], "127.0.0.1");
        assert_eq!(entry["target_type"], "node");
        assert_eq!(entry["target_id"], org.pay);
        let before: serde_json::Value =
            serde_json::from_str(entry["before"].as_str().unwrap()).unwrap();
        let after: serde_json::Value =
            serde_json::from_str(entry["after"].as_str().unwrap()).unwrap();
        assert_eq!(
            (before["title"].as_str(), after["title"].as_str()),
            (Some("pay"), Some("Payments"))
        );
        // Every kind of change so far is there: accounts (first admin by
        // "system", users by admin), tokens by the command line, nodes, members.
        let (_, all) = org.admin.get("/api/v1/audit?limit=500").await;
        let actions: Vec<&str> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        for action in [
            "account.create",
            "token.create",
            "node.create",
            "member.add",
            "node.update",
        ] {
            assert!(actions.contains(&action), "{action} missing in {actions:?}");
        }
        let first = all["entries"].as_array().unwrap().last().unwrap();
        assert_eq!(
            (first["id"].as_i64(), first["actor"].as_str()),
            (Some(1), Some("system"))
        );
        let token_row = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "token.create")
            .unwrap();
        assert_eq!(token_row["actor"], "cli");
        // Secrets never reach the log.
        let (_, sa) = org
            .admin
            .post("/api/v1/service-accounts", json!({"name": "bot"}))
            .await;
        let (_, token) = org
            .admin
            .post(
                &format!("/api/v1/service-accounts/{}/tokens", sa["id"]),
                json!({"name": "ci"}),
            )
            .await;
        let secret = token["token"].as_str().unwrap();
        let (_, all) = org.admin.get("/api/v1/audit?limit=500").await;
        let text = serde_json::to_string(&all).unwrap();
        assert!(
            text.contains("token.create") && !text.contains(secret),
            "no token secrets"
        );
        assert!(
            !text.contains("argon2") && !text.contains(USER_PASSWORD),
            "no passwords or hashes"
        );
        // Keyset pages: small pages walk the whole log without overlap.
        let mut seen = Vec::new();
        let mut cursor: Option<i64> = None;
        loop {
            let path = match cursor {
                Some(c) => format!("/api/v1/audit?limit=3&cursor={c}"),
                None => "/api/v1/audit?limit=3".to_string(),
            };
            let (_, page) = org.admin.get(&path).await;
            seen.extend(
                page["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_i64().unwrap()),
            );
            match page["next_cursor"].as_i64() {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seen, sorted, "newest first, no repeats");
        assert_eq!(*seen.last().unwrap(), 1);
        // Only admins read it; bad parameters are JSON errors.
        let olivia = app.api(Some(&app.token_for("olivia")));
        assert_eq!(olivia.get("/api/v1/audit").await.0, StatusCode::FORBIDDEN);
        assert_eq!(
            org.admin.get("/api/v1/audit?cursor=abc").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            org.admin.get("/api/v1/audit?limit=0").await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
);

db_test!(
    page_actions_are_audited_and_the_audit_page_filters,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let olivia = app.browser_as("olivia", USER_PASSWORD).await;
        let (s, _, _) = olivia
            .submit(
                "/tree/nodes/2/members",
                &[("account", "vera"), ("role", "engineer")],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (s, html) = admin.get("/admin/audit?actor=olivia").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            html.contains("member.update") && html.contains("vera is engineer on /acme/pay"),
            "{html}"
        );
        assert!(
            !html.contains("node.create"),
            "filtered to olivia's changes"
        );
        // The row links its object and shows what changed, field by field.
        assert!(
            html.contains("<a href=\"/tree/nodes/2\">vera is engineer on /acme/pay</a>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<dt>role</dt><dd><del title="before">viewer</del> → <ins title="after">engineer</ins></dd>"#),
            "{html}"
        );
        assert_eq!(olivia.get("/admin/audit").await.0, StatusCode::FORBIDDEN);
    }
);

db_test!(
    verify_audit_finds_the_first_tampered_row,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let out = app.cli(&["admin", "verify-audit"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("intact"));
        // Edit a row in place, as someone with full database access might.
        drop_audit_triggers(&app.db).await;
        app.db
            .execute("UPDATE audit_log SET summary = 'nothing to see' WHERE id = 4")
            .await;
        let out = app.cli(&["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("row 4"), "{}", stderr(&out));
    }
);

db_test!(verify_audit_notices_removed_rows, |backend| async move {
    let app = TestApp::start(backend).await;
    let _org = Org::create(&app).await;
    drop_audit_triggers(&app.db).await;
    app.db.execute("DELETE FROM audit_log WHERE id = 3").await;
    let out = app.cli(&["admin", "verify-audit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("row 4"),
        "the row after the gap is named"
    );
    // Removing the newest rows is caught by the head.
    let app2 = TestApp::start(backend).await;
    let _org = Org::create(&app2).await;
    drop_audit_triggers(&app2.db).await;
    app2.db
        .execute("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)")
        .await;
    let out = app2.cli(&["admin", "verify-audit"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
});

db_test!(
    rows_edited_and_rechained_with_plain_sha256_do_not_verify,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let db = app.stop();
        // Someone who can write the database but lacks the secret key edits
        // row 4 and recomputes every later row the way earlier versions did.
        drop_audit_triggers(&db).await;
        let mut rows = stored_rows(&db).await;
        assert!(rows.len() > 6, "{} rows", rows.len());
        rows[3].summary = "nothing to see".into();
        let mut prev = rows[2].hash.clone();
        let mut conn = connect(&db).await;
        for r in rows.iter_mut().skip(3) {
            r.prev_hash = prev.clone();
            r.hash = unkeyed_hash(&prev, r);
            sqlx::query(
                "UPDATE audit_log SET summary = $1, prev_hash = $2, hash = $3 WHERE id = $4",
            )
            .bind(&r.summary)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind(r.id)
            .execute(&mut conn)
            .await
            .unwrap();
            prev = r.hash.clone();
        }
        sqlx::query("UPDATE audit_head SET last_hash = $1 WHERE id = 1")
            .bind(&prev)
            .execute(&mut conn)
            .await
            .unwrap();
        let out = rollway(&db, SECRET_KEY, &["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("row 4") && stderr(&out).contains("MAC"),
            "{}",
            stderr(&out)
        );
    }
);

db_test!(
    removing_the_newest_row_and_moving_the_head_back_fails_against_an_earlier_anchor,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let out = app.cli(&["admin", "audit-anchor"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let anchor = stdout(&out).trim().to_string();
        let db = app.stop();
        let rows = stored_rows(&db).await;
        let newest = rows.last().unwrap().id;
        assert!(
            anchor.starts_with(&format!("rollway-audit-anchor:v1:{newest}:")),
            "{anchor}"
        );
        // The newest row goes, and the head is set back to the row before:
        // a chain that checks out by itself.
        drop_audit_triggers(&db).await;
        db.execute(&format!("DELETE FROM audit_log WHERE id = {newest}"))
            .await;
        db.execute(&format!(
            "UPDATE audit_head SET seq = {}, last_hash = '{}' WHERE id = 1",
            newest - 1,
            rows[rows.len() - 2].hash
        ))
        .await;
        let out = rollway(
            &db,
            SECRET_KEY,
            &["admin", "verify-audit", "--anchor", &anchor],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("anchor names row {newest}")) && err.contains("removed"),
            "{err}"
        );
    }
);

db_test!(
    the_database_refuses_to_change_or_remove_audit_rows,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let before = stored_rows(&app.db).await;
        for sql in [
            "UPDATE audit_log SET summary = 'nothing to see' WHERE id = 2",
            "UPDATE audit_log SET hash = hash",
            "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)",
            "DELETE FROM audit_log",
        ] {
            let refusal = try_execute(&app.db, sql).await.unwrap_err();
            assert!(refusal.contains("append-only"), "{sql}: {refusal}");
        }
        if backend == Backend::Postgres {
            let refusal = try_execute(&app.db, "TRUNCATE audit_log")
                .await
                .unwrap_err();
            assert!(refusal.contains("append-only"), "{refusal}");
        }
        // The head does not go back, nor lose its key, nor disappear.
        for sql in [
            "UPDATE audit_head SET seq = seq - 1",
            "UPDATE audit_head SET scheme = 'sha256'",
            "UPDATE audit_head SET key_id = '0123456789abcdef'",
        ] {
            let refusal = try_execute(&app.db, sql).await.unwrap_err();
            assert!(refusal.contains("only moves forward"), "{sql}: {refusal}");
        }
        assert!(
            try_execute(&app.db, "DELETE FROM audit_head")
                .await
                .is_err()
        );
        assert_eq!(stored_rows(&app.db).await, before, "nothing changed");
        // Appends go on.
        let out = app.cli(&["admin", "create-user", "carla"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = app.cli(&["admin", "verify-audit"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("{} rows", before.len() + 1)),
            "{}",
            stdout(&out)
        );
    }
);

db_test!(
    a_chain_sealed_with_another_secret_key_does_not_verify_nor_take_rows,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let db = app.stop();
        let rows = stored_rows(&db).await;
        let out = rollway(&db, OTHER_KEY, &["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("another secret key"),
            "{}",
            stderr(&out)
        );
        // A command run with the wrong key appends nothing it cannot prove.
        let out = rollway(&db, OTHER_KEY, &["admin", "create-user", "carla"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("another secret key"),
            "{}",
            stderr(&out)
        );
        assert_eq!(stored_rows(&db).await, rows);
        // The server refuses to start with it.
        let (code, err) = serve_exit(&db, OTHER_KEY)
            .await
            .expect("serve with another key must not start");
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("another secret key"), "{err}");
        // Clearing the head's key name does not help: no row checks out
        // under the other key.
        drop_audit_triggers(&db).await;
        db.execute("UPDATE audit_head SET key_id = ''").await;
        let out = rollway(&db, OTHER_KEY, &["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("row 1") && stderr(&out).contains("MAC"),
            "{}",
            stderr(&out)
        );
        // With the right key it still checks out.
        let out = rollway(&db, SECRET_KEY, &["admin", "verify-audit"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
);

db_test!(
    an_audit_log_of_an_earlier_version_is_rechained_once_by_migrate_audit,
    |backend| async move {
        let (db, old_rows) = database_of_an_earlier_version(backend).await;
        // Until it is migrated, the server does not start…
        let (code, err) = serve_exit(&db, SECRET_KEY)
            .await
            .expect("serve on an unmigrated audit log must not start");
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("rollway admin migrate-audit"), "{err}");
        // …verify-audit says so, and commands append nothing.
        let out = rollway(&db, SECRET_KEY, &["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("unkeyed") && stderr(&out).contains("migrate-audit"),
            "{}",
            stderr(&out)
        );
        let out = rollway(&db, SECRET_KEY, &["admin", "create-user", "carla"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("migrate-audit"), "{}", stderr(&out));
        assert_eq!(stored_rows(&db).await, old_rows);

        let out = rollway(&db, SECRET_KEY, &["admin", "migrate-audit"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("Re-chained 3"), "{}", stdout(&out));
        let rows = stored_rows(&db).await;
        assert_eq!(rows.len(), 4, "the three old rows and one saying so");
        for (new, old) in rows.iter().zip(&old_rows) {
            assert_eq!(
                (&new.summary, new.at, &new.actor),
                (&old.summary, old.at, &old.actor),
                "content is kept"
            );
            assert_ne!(new.hash, old.hash, "row {} is sealed anew", new.id);
        }
        assert_eq!(rows[3].action, "audit.migrate");
        let out = rollway(&db, SECRET_KEY, &["admin", "verify-audit"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("intact: 4 rows"), "{}", stdout(&out));
        // Once only, and the triggers stand again.
        let out = rollway(&db, SECRET_KEY, &["admin", "migrate-audit"]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("already"), "{}", stdout(&out));
        assert!(
            try_execute(&db, "UPDATE audit_log SET summary = 'x' WHERE id = 1")
                .await
                .is_err()
        );
        // Now the server starts and appends to the keyed chain.
        let app = TestApp::start_on(db, Start::default());
        let out = app.cli(&["admin", "create-user", "carla"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = app.cli(&["admin", "verify-audit"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("intact: 6 rows"), "{}", stdout(&out));
    }
);

db_test!(
    migrate_audit_refuses_an_old_chain_that_is_already_broken,
    |backend| async move {
        let (db, mut old_rows) = database_of_an_earlier_version(backend).await;
        // Row 2 was edited after it was written, without recomputing.
        db.execute("UPDATE audit_log SET summary = 'created /other' WHERE id = 2")
            .await;
        old_rows[1].summary = "created /other".into();
        let out = rollway(&db, SECRET_KEY, &["admin", "migrate-audit"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("refusing") && err.contains("row 2"), "{err}");
        assert_eq!(stored_rows(&db).await, old_rows, "nothing changed");
        let out = rollway(&db, SECRET_KEY, &["admin", "verify-audit"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("unkeyed") && stderr(&out).contains("row 2"),
            "{}",
            stderr(&out)
        );
        let (code, err) = serve_exit(&db, SECRET_KEY).await.expect("still refused");
        assert_eq!(code, Some(2), "{err}");
    }
);

db_test!(
    the_audit_anchor_is_logged_at_start_printed_on_demand_and_verifies,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            Start {
                env: vec![("ROLLWAY_LOG_FORMAT".into(), "json".into())],
                ..Start::default()
            },
        )
        .await;
        // The first admin is row 1; the server logs the head as it starts.
        let logged = || {
            app.output()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["fields"]["message"] == "audit log head")
                .map(|v| {
                    (
                        v["fields"]["seq"].as_i64(),
                        v["fields"]["anchor"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
        };
        assert!(
            eventually(Duration::from_secs(30), || {
                let found = logged().is_some();
                async move { found }
            })
            .await,
            "no anchor logged at start: {}",
            app.output()
        );
        let (seq, first) = logged().unwrap();
        assert_eq!(seq, Some(1), "{first}");
        let out = app.cli(&["admin", "audit-anchor"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), first, "printed as logged");
        let out = app.cli(&["admin", "verify-audit", "--anchor", &first]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("reaches the anchor at row 1"),
            "{}",
            stdout(&out)
        );
        // The chain grows past an anchor and still reaches it.
        let _org = Org::create(&app).await;
        let out = app.cli(&["admin", "verify-audit", "--anchor", &first]);
        assert!(out.status.success(), "{}", stderr(&out));
        let now = stdout(&app.cli(&["admin", "audit-anchor"]))
            .trim()
            .to_string();
        assert_ne!(now, first);
        assert!(
            app.cli(&["admin", "verify-audit", "--anchor", &now])
                .status
                .success()
        );
        // An anchor the chain does not match, or does not reach, fails.
        let mac = first.rsplit(':').next().unwrap();
        let flipped = format!(
            "rollway-audit-anchor:v1:1:{}{}",
            if mac.starts_with('0') { '1' } else { '0' },
            &mac[1..]
        );
        let out = app.cli(&["admin", "verify-audit", "--anchor", &flipped]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("differs from the anchor"),
            "{}",
            stderr(&out)
        );
        let beyond = format!("rollway-audit-anchor:v1:99999:{mac}");
        let out = app.cli(&["admin", "verify-audit", "--anchor", &beyond]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
        // A line that is not an anchor is bad input (exit 2), named.
        for bad in ["", "rollway-audit-anchor:v1:1", "hello"] {
            let out = app.cli(&["admin", "verify-audit", "--anchor", bad]);
            assert_eq!(out.status.code(), Some(2), "{bad:?}");
            assert!(stderr(&out).contains("--anchor"), "{}", stderr(&out));
        }
    }
);
