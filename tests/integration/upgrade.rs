//! Upgrades: a database written by an older Rollway is migrated with its
//! data, on both backends.

use crate::cli::connect_db;
use crate::common::{Backend, TestDb};
use crate::db_test;

/// Runs `sql` statements one by one.
async fn exec(db: &rollway::db::Db, statements: &[&str]) {
    for sql in statements {
        sqlx::query(sql)
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

async fn text(db: &rollway::db::Db, sql: &str) -> Vec<String> {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn one(db: &rollway::db::Db, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

db_test!(
    orders_rolled_back_before_the_upgrade_say_so_after_it,
    |backend| async move {
        let test_db = TestDb::new(backend).await;
        let db = connect_db(&test_db).await;
        // The schema as Rollway left it before `rolled_back` existed.
        db.migrate_through(10).await.unwrap();
        exec(
            &db,
            &[
                "INSERT INTO accounts (id, kind, name, display_name, created_at, updated_at) \
                 VALUES (1, 'user', 'erin', 'Erin', 0, 0)",
                "INSERT INTO nodes (id, parent_id, name, title, path, created_at, updated_at) \
                 VALUES (1, NULL, '', 'Root', '/', 0, 0)",
                "INSERT INTO clusters (id, name, environment, created_at, updated_at) \
                 VALUES (1, 'staging', 'staging', 0, 0)",
                "INSERT INTO apps (id, name, cluster_id, namespace, deployment, container, node_id, created_at, updated_at) \
                 VALUES (1, 'shop', 1, 'shop', 'shop', 'shop', 1, 0, 0)",
                "INSERT INTO release_items (id, node_id, name, gitlab_project, image_repository, created_at, updated_at) \
                 VALUES (1, 1, 'shop', 'g/shop', 'reg/shop', 0, 0)",
                "INSERT INTO release_items (id, node_id, name, gitlab_project, image_repository, created_at, updated_at) \
                 VALUES (2, 1, 'cart', 'g/cart', 'reg/cart', 0, 0)",
            ],
        )
        .await;
        // (id, release item, state, its stages' statuses)
        let orders: [(i64, i64, &str, &[&str]); 6] = [
            (1, 1, "succeeded", &["rolled_back"]),
            (2, 1, "succeeded", &["succeeded", "rolled_back"]),
            (3, 2, "failed", &["rolled_back", "pending"]),
            (4, 1, "closed", &["failed", "rolled_back"]),
            (5, 1, "succeeded", &["succeeded", "succeeded"]),
            // Still needs a decision: another stage failed.
            (6, 1, "failed", &["failed", "rolled_back"]),
        ];
        for (id, item, state, stages) in orders {
            exec(
                &db,
                &[&format!(
                    "INSERT INTO work_orders (id, release_item_id, node_id, version, image, title, state, \
                     creator_id, required_approvals, created_at, updated_at) \
                     VALUES ({id}, {item}, 1, 'v{id}', 'reg/shop:v{id}', 'Order {id}', '{state}', 1, 1, 0, 0)"
                )],
            )
            .await;
            for (i, status) in stages.iter().enumerate() {
                exec(
                    &db,
                    &[&format!(
                        "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, status) \
                         VALUES ({id}, {}, 's{i}', 1, 'rolling', '{status}')",
                        i + 1
                    )],
                )
                .await;
            }
        }
        let inbox_before = one(&db, "SELECT version FROM inbox_state").await;

        db.migrate()
            .await
            .expect("the upgrade applies to this data");

        assert_eq!(
            text(&db, "SELECT state FROM work_orders ORDER BY id").await,
            [
                "rolled_back",
                "partially_rolled_back",
                "rolled_back",
                "closed",
                "succeeded",
                "failed"
            ]
        );
        assert_eq!(
            text(
                &db,
                "SELECT CAST(work_order_id AS TEXT) || ' ' || actor || ': ' || message FROM timeline_events \
                 WHERE kind = 'state_corrected' ORDER BY work_order_id"
            )
            .await,
            [
                "1 system: the order said succeeded after its rollback; it is rolled back",
                "2 system: the order said succeeded after its rollback; it is partially rolled back",
                "3 system: the order said failed after its rollback; it is rolled back",
            ],
            "each changed order says why"
        );
        // The rebuilt table keeps what the old one enforced and triggered.
        let insert = |id: i64, item: i64, state: &str| {
            format!(
                "INSERT INTO work_orders (id, release_item_id, node_id, version, image, title, state, \
                 creator_id, required_approvals, created_at, updated_at) \
                 VALUES ({id}, {item}, 1, 'v', 'i', 't', '{state}', 1, 1, 0, 0)"
            )
        };
        for refused in [
            insert(10, 1, "bogus"),
            insert(11, 1, "pending_approval"), // order 6 is open for item 1
            insert(12, 999, "closed"),         // no such item
        ] {
            assert!(
                sqlx::query(&refused).execute(&db.pool).await.is_err(),
                "refused: {refused}"
            );
        }
        exec(&db, &[&insert(13, 1, "rolled_back")]).await;
        // The dashboard's stage heads: filled from the history, then kept
        // by the triggers as runs leave `pending`, only ever moving to a
        // newer order.
        let heads = "SELECT CAST(release_item_id AS TEXT) || ':' || CAST(app_id AS TEXT) || ' ' \
                     || CAST(work_order_id AS TEXT) FROM stage_heads ORDER BY release_item_id, app_id";
        assert_eq!(text(&db, heads).await, ["1:1 6", "2:1 3"]);
        exec(
            &db,
            &[
                "INSERT INTO stage_runs (work_order_id, position, name, app_id, strategy, status) \
               VALUES (13, 1, 's', 1, 'rolling', 'pending')",
            ],
        )
        .await;
        assert_eq!(
            text(&db, heads).await,
            ["1:1 6", "2:1 3"],
            "pending touches nothing"
        );
        exec(
            &db,
            &[
                "UPDATE stage_runs SET status = 'deploying' WHERE work_order_id = 13",
                "UPDATE stage_runs SET status = 'succeeded' WHERE work_order_id = 5 AND position = 1",
            ],
        )
        .await;
        assert_eq!(
            text(&db, heads).await,
            ["1:1 13", "2:1 3"],
            "an older order's change leaves the head"
        );
        assert!(
            one(&db, "SELECT version FROM inbox_state").await > inbox_before,
            "the inbox triggers were rebuilt with the table"
        );
        let indexes = text(
            &db,
            match backend {
                Backend::Sqlite => {
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'work_orders' \
                     AND name LIKE 'work_orders%' ORDER BY name"
                }
                Backend::Postgres => {
                    "SELECT indexname::TEXT FROM pg_indexes WHERE tablename = 'work_orders' \
                     AND indexname <> 'work_orders_pkey' ORDER BY indexname"
                }
            },
        )
        .await;
        assert_eq!(
            indexes,
            [
                "work_orders_creator_idx",
                "work_orders_item_idx",
                "work_orders_item_state_idx",
                "work_orders_node_idx",
                "work_orders_node_state_idx",
                "work_orders_one_open_per_item",
                "work_orders_state_idx"
            ]
        );
    }
);

db_test!(
    approvals_made_before_the_upgrade_are_counted_and_the_count_follows_every_change,
    |backend| async move {
        let test_db = TestDb::new(backend).await;
        let db = connect_db(&test_db).await;
        // The schema before orders carried their approval count.
        db.migrate_through(26).await.unwrap();
        let mut setup = vec![
            "INSERT INTO nodes (id, parent_id, name, title, path, created_at, updated_at) \
             VALUES (1, NULL, '', 'Root', '/', 0, 0)"
                .to_string(),
            "INSERT INTO release_items (id, node_id, name, gitlab_project, image_repository, created_at, updated_at) \
             VALUES (1, 1, 'shop', 'g/shop', 'reg/shop', 0, 0)"
                .to_string(),
        ];
        for id in 1..=4 {
            setup.push(format!(
                "INSERT INTO accounts (id, kind, name, display_name, created_at, updated_at) \
                 VALUES ({id}, 'user', 'user{id}', 'User {id}', 0, 0)"
            ));
        }
        for id in 1..=3 {
            setup.push(format!(
                "INSERT INTO work_orders (id, release_item_id, node_id, version, image, title, state, \
                 creator_id, required_approvals, created_at, updated_at) \
                 VALUES ({id}, 1, 1, 'v{id}', 'reg/shop:v{id}', 'Order {id}', 'closed', 1, 2, 0, 0)"
            ));
        }
        // Order 1: two approvals and a rejection; order 2: a rejection.
        for (order, account, decision) in [
            (1, 2, "approved"),
            (1, 3, "approved"),
            (1, 4, "rejected"),
            (2, 2, "rejected"),
        ] {
            setup.push(format!(
                "INSERT INTO approvals (work_order_id, account_id, decision, at) \
                 VALUES ({order}, {account}, '{decision}', 0)"
            ));
        }
        let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
        exec(&db, &setup).await;

        db.migrate()
            .await
            .expect("the upgrade applies to this data");
        let counts = || async {
            text(
                &db,
                "SELECT CAST(id AS TEXT) || ':' || CAST(approval_count AS TEXT) FROM work_orders ORDER BY id",
            )
            .await
        };
        assert_eq!(
            counts().await,
            ["1:2", "2:0", "3:0"],
            "counted at the upgrade"
        );

        exec(
            &db,
            &[
                "INSERT INTO approvals (work_order_id, account_id, decision, at) VALUES (3, 2, 'approved', 0)",
                "INSERT INTO approvals (work_order_id, account_id, decision, at) VALUES (3, 3, 'rejected', 0)",
                "UPDATE approvals SET decision = 'approved' WHERE work_order_id = 2 AND account_id = 2",
                "UPDATE approvals SET decision = 'rejected' WHERE work_order_id = 1 AND account_id = 3",
                "DELETE FROM approvals WHERE work_order_id = 1 AND account_id = 2",
            ],
        )
        .await;
        assert_eq!(
            counts().await,
            ["1:0", "2:1", "3:1"],
            "kept by every insert, change and removal"
        );
    }
);
