//! Clusters and apps: credentials sealed at rest and never rendered back;
//! validation; what still depends on what.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_PASSWORD, Org, TestApp};
use crate::db_test;

pub const KUBE_TOKEN: &str = "kube-token-that-must-never-leak";

pub fn kubeconfig() -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: ci\ncurrent-context: sim\nusers:\n- name: ci\n  user:\n    token: {KUBE_TOKEN}\n"
    )
}

db_test!(
    kubeconfigs_are_sealed_and_never_shown,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let (s, c) = org
            .admin
            .post(
                "/api/v1/clusters",
                json!({"name": "dev-1", "environment": "dev", "kubeconfig": kubeconfig()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        assert_eq!(c["has_kubeconfig"], true);
        assert_eq!(c["credentials_set_by"], "admin");
        assert!(c.get("kubeconfig").is_none());
        let id = c["id"].as_i64().unwrap();
        // In the database: ciphertext only.
        let stored = app
            .db
            .query_text(&format!(
                "SELECT kubeconfig_sealed FROM clusters WHERE id = {id}"
            ))
            .await
            .unwrap();
        assert!(stored.starts_with("v1:"), "{stored}");
        assert!(!stored.contains(KUBE_TOKEN) && !stored.contains("server"));
        // Nowhere in answers, pages or logs.
        let (_, one) = org.admin.get(&format!("/api/v1/clusters/{id}")).await;
        let (_, all) = org.admin.get("/api/v1/clusters").await;
        let (_, audit) = org.admin.get("/api/v1/audit?target_type=cluster").await;
        let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
        let (_, list_page) = browser.get("/admin/clusters").await;
        let (_, page) = browser.get(&format!("/admin/clusters/{id}")).await;
        assert!(
            page.contains("kubeconfig set on") && page.contains("by admin"),
            "{page}"
        );
        for text in [
            one.to_string(),
            all.to_string(),
            audit.to_string(),
            list_page,
            page,
            app.output(),
        ] {
            assert!(!text.contains(KUBE_TOKEN), "the kubeconfig leaked");
        }
        // Replacing it records who and when; the environment can change.
        let (s, c2) = org
            .admin
            .patch(
                &format!("/api/v1/clusters/{id}"),
                json!({"environment": "test", "kubeconfig": kubeconfig(), "context": "sim"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{c2}");
        assert_eq!(c2["environment"], "test");
        assert_eq!(c2["kube_context"], "sim");
        let stored2 = app
            .db
            .query_text(&format!(
                "SELECT kubeconfig_sealed FROM clusters WHERE id = {id}"
            ))
            .await
            .unwrap();
        assert_ne!(stored, stored2, "a fresh nonce each time");
    }
);

db_test!(bad_cluster_input_is_refused, |backend| async move {
    let app = TestApp::start(backend).await;
    let admin = app.api(Some(&app.admin_token()));
    let cases = [
        (
            json!({"name": "c", "environment": "production", "kubeconfig": kubeconfig()}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "environment",
        ),
        (
            json!({"name": "c", "environment": "dev", "kubeconfig": "not: [yaml"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kubeconfig",
        ),
        (
            json!({"name": "c", "environment": "dev", "kubeconfig": kubeconfig(), "context": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kubeconfig",
        ),
        (
            json!({"name": "c", "environment": "dev"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "kubeconfig",
        ),
        (
            json!({"name": "Bad Name", "environment": "dev", "kubeconfig": kubeconfig()}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
    ];
    for (body, status, field) in cases {
        let (s, v) = admin.post("/api/v1/clusters", body.clone()).await;
        assert_eq!(s, status, "{body} → {v}");
        assert_eq!(v["error"]["field"], field, "{v}");
        assert!(!v.to_string().contains(KUBE_TOKEN));
    }
    let ok = json!({"name": "c", "environment": "dev", "kubeconfig": kubeconfig()});
    assert_eq!(
        admin.post("/api/v1/clusters", ok.clone()).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        admin.post("/api/v1/clusters", ok).await.0,
        StatusCode::CONFLICT
    );
    let (s, v) = admin
        .post(
            "/api/v1/clusters",
            json!({"name": "incluster", "environment": "prod", "in_cluster": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (v["in_cluster"].as_bool(), v["has_kubeconfig"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        admin.get("/api/v1/clusters/999").await.0,
        StatusCode::NOT_FOUND
    );
});

db_test!(
    apps_are_registered_looked_up_and_guard_their_dependencies,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let (_, c) = org
            .admin
            .post(
                "/api/v1/clusters",
                json!({"name": "dev-1", "environment": "dev", "kubeconfig": kubeconfig()}),
            )
            .await;
        let cluster = c["id"].as_i64().unwrap();
        let body = json!({"name": "checkout", "cluster_id": cluster, "namespace": "shop", "deployment": "checkout-api", "container": "api", "node_id": org.pay_api});
        let (s, a) = org.admin.post("/api/v1/apps", body.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        assert_eq!(a["node_path"], "/acme/pay/api");
        assert_eq!(a["environment"], "dev");
        // CI looks an app up by cluster and name, with any token.
        let eric = app.api(Some(&app.token_for("eric")));
        let (s, found) = eric.get("/api/v1/apps?cluster=dev-1&name=checkout").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(found.as_array().unwrap().len(), 1);
        assert_eq!(found[0]["id"], a["id"]);
        assert_eq!(
            eric.get("/api/v1/apps?cluster=dev-1&name=nope").await.1,
            json!([])
        );
        assert_eq!(
            eric.post("/api/v1/apps", body.clone()).await.0,
            StatusCode::FORBIDDEN
        );
        // Validation and conflicts.
        assert_eq!(
            org.admin.post("/api/v1/apps", body.clone()).await.0,
            StatusCode::CONFLICT
        );
        let mut same_workload = body.clone();
        same_workload["name"] = json!("other");
        let (s, v) = org.admin.post("/api/v1/apps", same_workload).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shop/checkout-api"),
            "{v}"
        );
        for (field, value) in [
            ("namespace", json!("Shop")),
            ("cluster_id", json!(999)),
            ("node_id", json!(999)),
            ("container", json!("")),
        ] {
            let mut bad = body.clone();
            bad["name"] = json!("x");
            bad[field] = value;
            let (s, v) = org.admin.post("/api/v1/apps", bad).await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {v}");
            assert_eq!(v["error"]["field"], field);
        }
        // A cluster with apps, and a node with apps, cannot be removed.
        let (s, v) = org
            .admin
            .delete(&format!("/api/v1/clusters/{cluster}"))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(v["error"]["message"].as_str().unwrap().contains("checkout"));
        let (s, v) = org
            .admin
            .delete(&format!("/api/v1/nodes/{}", org.pay_api))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("apps: checkout"),
            "{v}"
        );
        // Moving the app and removing it.
        let mut moved = body.clone();
        moved["node_id"] = json!(org.pay);
        let (s, v) = org
            .admin
            .patch(&format!("/api/v1/apps/{}", a["id"]), moved)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["node_path"], "/acme/pay");
        assert_eq!(
            org.admin
                .delete(&format!("/api/v1/apps/{}", a["id"]))
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            org.admin
                .delete(&format!("/api/v1/clusters/{cluster}"))
                .await
                .0,
            StatusCode::NO_CONTENT
        );
    }
);

db_test!(
    the_command_line_registers_clusters_and_apps,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let _org = Org::create(&app).await;
        let file = app.db.dir().join("kubeconfig.yaml");
        std::fs::write(&file, kubeconfig()).unwrap();
        let out = app.cli(&[
            "admin",
            "add-cluster",
            "sim",
            "--environment",
            "test",
            "--kubeconfig",
            file.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = app.cli(&[
            "admin",
            "add-app",
            "web",
            "--cluster",
            "sim",
            "--namespace",
            "shop",
            "--deployment",
            "web",
            "--container",
            "web",
            "--node",
            "/acme/pay",
            "--service",
            "web",
            "--ingress",
            "web",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, apps) = app
            .api(Some(&app.admin_token()))
            .get("/api/v1/apps?cluster=sim")
            .await;
        assert_eq!(apps[0]["name"], "web");
        assert_eq!(
            (&apps[0]["service"], &apps[0]["ingress"]),
            (&json!("web"), &json!("web"))
        );
        // A Service without its Ingress is a usage error.
        let out = app.cli(&[
            "admin",
            "add-app",
            "api",
            "--cluster",
            "sim",
            "--namespace",
            "shop",
            "--deployment",
            "api",
            "--container",
            "api",
            "--node",
            "/acme/pay",
            "--service",
            "api",
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--ingress"));
        let out = app.cli(&[
            "admin",
            "add-cluster",
            "x",
            "--environment",
            "qa",
            "--kubeconfig",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--environment"));
    }
);

db_test!(
    admin_pages_register_clusters_and_apps,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let yaml = kubeconfig();
        let (s, html, _) = admin
            .submit(
                "/admin/clusters",
                &[
                    ("name", "dev-1"),
                    ("environment", "dev"),
                    ("kubeconfig", "garbage: ["),
                    ("context", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("not valid YAML"));
        let (s, _, location) = admin
            .submit(
                "/admin/clusters",
                &[
                    ("name", "dev-1"),
                    ("environment", "dev"),
                    ("kubeconfig", yaml.as_str()),
                    ("context", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, page) = admin.get(&location.unwrap()).await;
        assert!(page.contains("kubeconfig set on") && !page.contains(KUBE_TOKEN));
        let (s, _, _) = admin
            .submit(
                "/admin/apps",
                &[
                    ("name", "web"),
                    ("cluster_id", "1"),
                    ("namespace", "shop"),
                    ("deployment", "web"),
                    ("container", "web"),
                    ("node", "/acme/pay"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, page) = admin.get("/admin/apps").await;
        assert!(page.contains("data-app=\"web\"") && page.contains("/acme/pay"));
        assert!(!page.contains("canary traffic via"), "web names no Service");

        // Canary traffic: a Service and an Ingress, both or neither.
        let api_app = [
            ("name", "api"),
            ("cluster_id", "1"),
            ("namespace", "shop"),
            ("deployment", "api"),
            ("container", "api"),
            ("node", "/acme/pay"),
        ];
        let half = [&api_app[..], &[("service", "api")]].concat();
        let (s, page, _) = admin.submit("/admin/apps", &half).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            page.contains("name the Ingress in front of the Service as well, or neither")
                && page.contains("value=\"api\""),
            "says what is missing and keeps what was typed"
        );
        let both = [&api_app[..], &[("service", "api"), ("ingress", "api.shop")]].concat();
        let (s, _, _) = admin.submit("/admin/apps", &both).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, page) = admin.get("/admin/apps").await;
        assert!(
            page.contains("canary traffic via Service</span> <code>api</code>")
                && page.contains("<code>api.shop</code>"),
            "{page}"
        );
        let (_, apps) = org.admin.get("/api/v1/apps?name=api").await;
        assert_eq!(apps[0]["service"], "api");
        assert_eq!(apps[0]["ingress"], "api.shop");
    }
);

/// A kubeconfig whose user runs `touch MARKER` through an exec plugin.
fn exec_kubeconfig(marker: &std::path::Path) -> String {
    kubeconfig().replace(
        &format!("    token: {KUBE_TOKEN}\n"),
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: touch\n      args: [\"{}\"]\n",
            marker.display()
        ),
    )
}

db_test!(
    kubeconfigs_that_run_commands_or_read_files_are_refused_everywhere,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let org = Org::create(&app).await;
        let marker = app.db.dir().join("exec-ran");
        let token_file = kubeconfig().replace(
            &format!("    token: {KUBE_TOKEN}\n"),
            "    tokenFile: rollway.db.key\n",
        );
        // The API names the field, with 422, and stores nothing.
        for (yaml, field) in [
            (exec_kubeconfig(&marker), "users[0].user.exec"),
            (token_file.clone(), "users[0].user.tokenFile"),
        ] {
            let (s, v) = org
                .admin
                .post(
                    "/api/v1/clusters",
                    json!({"name": "evil", "environment": "dev", "kubeconfig": yaml}),
                )
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
            assert_eq!(v["error"]["field"], "kubeconfig");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(field), "{message}");
        }
        let (_, list) = org.admin.get("/api/v1/clusters").await;
        assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
        // The page says the same.
        let admin = app.browser_as("admin", ADMIN_PASSWORD).await;
        let yaml = exec_kubeconfig(&marker);
        let (s, html, _) = admin
            .submit(
                "/admin/clusters",
                &[
                    ("name", "evil"),
                    ("environment", "dev"),
                    ("kubeconfig", &yaml),
                    ("context", ""),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            html.contains("users[0].user.exec is not accepted"),
            "{html}"
        );
        // And the command line.
        let file = app.db.dir().join("token-file.yaml");
        std::fs::write(&file, &token_file).unwrap();
        let out = app.cli(&[
            "admin",
            "add-cluster",
            "evil",
            "--environment",
            "dev",
            "--kubeconfig",
            file.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("users[0].user.tokenFile"), "{stderr}");

        // A stored kubeconfig that holds a plugin anyway (written behind
        // Rollway's back, sealed with its key) is refused when the client is
        // built: the command never runs.
        let (s, c) = org
            .admin
            .post(
                "/api/v1/clusters",
                json!({"name": "dev-1", "environment": "dev", "kubeconfig": kubeconfig()}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        let id = c["id"].as_i64().unwrap();
        let sealed = rollway::secret::SecretKey::new(crate::common::SECRET_KEY.as_bytes())
            .sealer()
            .seal(&exec_kubeconfig(&marker), &format!("cluster:{id}"))
            .unwrap();
        app.db
            .execute(&format!(
                "UPDATE clusters SET kubeconfig_sealed = '{sealed}' WHERE id = {id}"
            ))
            .await;
        let (s, v) = org
            .admin
            .post(&format!("/api/v1/clusters/{id}/test"), json!({}))
            .await;
        assert!(
            s.is_client_error() || s == StatusCode::BAD_GATEWAY,
            "{s} {v}"
        );
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("users[0].user.exec"), "{message}");
        assert!(!marker.exists(), "the exec plugin ran on the server");
    }
);
