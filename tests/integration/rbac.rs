//! The route × role table: every state-changing route, called as admin,
//! owner, engineer, viewer, outsider and anonymous, is allowed or denied as
//! listed. Later features add their routes to these tables.
//!
//! The organisation (see `Org`): olivia owns /acme/pay, eric is engineer
//! and vera viewer there, otto owns the look-alike sibling /acme/payroll.

use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN_PASSWORD, Api, Browser, Org, TestApp, USER_PASSWORD};
use crate::db_test;
use crate::releases::{Release, item_body, order_body};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Owner,
    Engineer,
    Viewer,
    Outsider,
    Anonymous,
}

const EVERYONE: [Who; 6] = [
    Who::Admin,
    Who::Owner,
    Who::Engineer,
    Who::Viewer,
    Who::Outsider,
    Who::Anonymous,
];
const ADMINS: &[Who] = &[Who::Admin];
const OWNERS: &[Who] = &[Who::Admin, Who::Owner];
/// Engineers and owners of the node, and admins.
const FILERS: &[Who] = &[Who::Admin, Who::Owner, Who::Engineer];
/// The effective approvers: owners of the nearest node with owners (admins
/// are not approvers by being admins).
const APPROVERS: &[Who] = &[Who::Owner];
const SIGNED_IN: &[Who] = &[
    Who::Admin,
    Who::Owner,
    Who::Engineer,
    Who::Viewer,
    Who::Outsider,
];

fn user_of(who: Who) -> Option<(&'static str, &'static str)> {
    match who {
        Who::Admin => Some(("admin", ADMIN_PASSWORD)),
        Who::Owner => Some(("olivia", USER_PASSWORD)),
        Who::Engineer => Some(("eric", USER_PASSWORD)),
        Who::Viewer => Some(("vera", USER_PASSWORD)),
        Who::Outsider => Some(("otto", USER_PASSWORD)),
        Who::Anonymous => None,
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", SEQ.fetch_add(1, Ordering::SeqCst))
}

/// Fresh things for one request to act on, made by the admin.
struct Fixtures<'a> {
    org: &'a Org,
    release: &'a Release,
    release_tokens: Vec<(String, Api)>,
}

impl Fixtures<'_> {
    async fn leaf_under_pay(&self) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post(
                "/api/v1/nodes",
                json!({"parent_id": self.org.pay, "name": unique("leaf"), "title": "Leaf"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn user(&self) -> (i64, String) {
        let name = unique("user");
        let (s, v) = self
            .org
            .admin
            .post(
                "/api/v1/users",
                json!({"name": name, "password": USER_PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (v["user"]["id"].as_i64().unwrap(), name)
    }
    async fn disabled_user(&self) -> i64 {
        let (id, _) = self.user().await;
        self.org
            .admin
            .patch(&format!("/api/v1/users/{id}"), json!({"disabled": true}))
            .await;
        id
    }
    async fn service_account(&self) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post("/api/v1/service-accounts", json!({"name": unique("bot")}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn token(&self) -> i64 {
        let sa = self.service_account().await;
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/service-accounts/{sa}/tokens"),
                json!({"name": "t"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    fn cluster_body(&self) -> Value {
        json!({"name": unique("c"), "environment": "dev", "kubeconfig": crate::registry::kubeconfig()})
    }
    async fn cluster(&self) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post("/api/v1/clusters", self.cluster_body())
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    fn app_body(&self, cluster: i64) -> Value {
        json!({"name": unique("a"), "cluster_id": cluster, "namespace": "ns", "deployment": unique("d"), "container": "c", "node_id": self.org.pay})
    }
    async fn app(&self, cluster: i64) -> i64 {
        let (s, v) = self
            .org
            .admin
            .post("/api/v1/apps", self.app_body(cluster))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    async fn item(&self) -> i64 {
        self.release.another_item(&unique("item")).await
    }
    /// A fresh item with an order eric filed, waiting for approval.
    async fn order(&self) -> i64 {
        let item = self.item().await;
        let eric = self.release_api("eric");
        let (s, v) = eric
            .post("/api/v1/work-orders", order_body(item, "v1.0.0"))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
    /// A fresh item with an order eric filed and olivia approved.
    async fn approved_order(&self) -> i64 {
        let id = self.order().await;
        let (s, v) = self
            .release_api("olivia")
            .post(&format!("/api/v1/work-orders/{id}/approve"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        id
    }
    /// The stages editor's fields for a fresh item on /acme/pay.
    fn item_form(&self, _unused: Option<i64>) -> Vec<(String, String)> {
        [
            ("node_id", self.org.pay.to_string()),
            ("name", unique("item")),
            ("gitlab_project", crate::releases::PROJECT.to_string()),
            (
                "image_repository",
                "registry.example.com/acme/x".to_string(),
            ),
            ("required_approvals", "1".to_string()),
            ("stage_1_name", "staging".to_string()),
            ("stage_1_app", self.release.staging_app.to_string()),
            ("stage_1_strategy", "rolling".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
    fn release_api(&self, name: &str) -> Api {
        self.release_tokens
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, api)| api.clone())
            .expect("token")
    }
    async fn member_of_pay_api(&self) -> i64 {
        let (_, name) = self.user().await;
        let (s, v) = self
            .org
            .admin
            .post(
                &format!("/api/v1/nodes/{}/members", self.org.pay_api),
                json!({"account": name, "role": "viewer"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["account_id"].as_i64().unwrap()
    }
}

/// One API request to make.
struct ApiCall {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn call(method: Method, path: String, body: Option<Value>) -> ApiCall {
    ApiCall { method, path, body }
}

const API_ROUTES: &[(&str, &[Who])] = &[
    ("POST /api/v1/nodes (child of /acme/pay)", OWNERS),
    ("POST /api/v1/nodes (root)", ADMINS),
    ("PATCH /api/v1/nodes/{id}", OWNERS),
    ("DELETE /api/v1/nodes/{id}", OWNERS),
    ("POST /api/v1/nodes/{id}/members", OWNERS),
    ("DELETE /api/v1/nodes/{id}/members/{account_id}", OWNERS),
    ("POST /api/v1/users", ADMINS),
    ("PATCH /api/v1/users/{id}", ADMINS),
    ("POST /api/v1/users/{id}/reset-password", ADMINS),
    ("POST /api/v1/service-accounts", ADMINS),
    ("PATCH /api/v1/service-accounts/{id}", ADMINS),
    ("POST /api/v1/service-accounts/{id}/tokens", ADMINS),
    ("DELETE /api/v1/tokens/{id}", ADMINS),
    ("POST /api/v1/clusters", ADMINS),
    ("PATCH /api/v1/clusters/{id}", ADMINS),
    ("DELETE /api/v1/clusters/{id}", ADMINS),
    ("POST /api/v1/apps", ADMINS),
    ("PATCH /api/v1/apps/{id}", ADMINS),
    ("DELETE /api/v1/apps/{id}", ADMINS),
    ("PUT /api/v1/settings/gitlab", ADMINS),
    ("POST /api/v1/release-items", OWNERS),
    ("PUT /api/v1/release-items/{id}", OWNERS),
    ("DELETE /api/v1/release-items/{id}", OWNERS),
    ("POST /api/v1/work-orders", FILERS),
    ("POST /api/v1/work-orders/{id}/approve", APPROVERS),
    ("POST /api/v1/work-orders/{id}/reject", APPROVERS),
    ("POST /api/v1/work-orders/{id}/close", FILERS),
    ("POST /api/v1/work-orders/{id}/stages/{n}/deploy", FILERS),
    ("POST /api/v1/work-orders/{id}/stages/{n}/rollback", FILERS),
    ("POST /api/v1/clusters/{id}/test", ADMINS),
];

/// Routes whose callers, once the role check lets them in, meet the test
/// clusters (unreachable: 502) or a state rule (nothing deployed: 409):
/// for these, "allowed" means anything but 401, 403 and 404.
const PAST_THE_ROLE_CHECK: &[&str] = &[
    "POST /api/v1/work-orders/{id}/stages/{n}/deploy",
    "POST /api/v1/work-orders/{id}/stages/{n}/rollback",
    "POST /api/v1/clusters/{id}/test",
    "POST /work-orders/{id}/stages/{n}/deploy",
    "POST /work-orders/{id}/stages/{n}/rollback",
    "POST /admin/clusters/{id}/test",
];

fn admitted(route: &str, status: StatusCode) -> bool {
    if PAST_THE_ROLE_CHECK.contains(&route) {
        ![
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
        ]
        .contains(&status)
    } else {
        status.is_success() || status == StatusCode::SEE_OTHER
    }
}

async fn api_call(route: &str, f: &Fixtures<'_>) -> ApiCall {
    let org = f.org;
    match route {
        "POST /api/v1/nodes (child of /acme/pay)" => call(
            Method::POST,
            "/api/v1/nodes".into(),
            Some(json!({"parent_id": org.pay, "name": unique("n"), "title": "N"})),
        ),
        "POST /api/v1/nodes (root)" => call(
            Method::POST,
            "/api/v1/nodes".into(),
            Some(json!({"name": unique("root"), "title": "R"})),
        ),
        "PATCH /api/v1/nodes/{id}" => call(
            Method::PATCH,
            format!("/api/v1/nodes/{}", org.pay_api),
            Some(json!({"title": "T"})),
        ),
        "DELETE /api/v1/nodes/{id}" => call(
            Method::DELETE,
            format!("/api/v1/nodes/{}", f.leaf_under_pay().await),
            None,
        ),
        "POST /api/v1/nodes/{id}/members" => {
            let (_, name) = f.user().await;
            call(
                Method::POST,
                format!("/api/v1/nodes/{}/members", org.pay_api),
                Some(json!({"account": name, "role": "viewer"})),
            )
        }
        "DELETE /api/v1/nodes/{id}/members/{account_id}" => {
            let account = f.member_of_pay_api().await;
            call(
                Method::DELETE,
                format!("/api/v1/nodes/{}/members/{account}", org.pay_api),
                None,
            )
        }
        "POST /api/v1/users" => call(
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"name": unique("u"), "password": USER_PASSWORD})),
        ),
        "PATCH /api/v1/users/{id}" => call(
            Method::PATCH,
            format!("/api/v1/users/{}", f.user().await.0),
            Some(json!({"disabled": true})),
        ),
        "POST /api/v1/users/{id}/reset-password" => call(
            Method::POST,
            format!("/api/v1/users/{}/reset-password", f.user().await.0),
            None,
        ),
        "POST /api/v1/service-accounts" => call(
            Method::POST,
            "/api/v1/service-accounts".into(),
            Some(json!({"name": unique("sa")})),
        ),
        "PATCH /api/v1/service-accounts/{id}" => call(
            Method::PATCH,
            format!("/api/v1/service-accounts/{}", f.service_account().await),
            Some(json!({"disabled": true})),
        ),
        "POST /api/v1/service-accounts/{id}/tokens" => call(
            Method::POST,
            format!(
                "/api/v1/service-accounts/{}/tokens",
                f.service_account().await
            ),
            Some(json!({"name": "t"})),
        ),
        "DELETE /api/v1/tokens/{id}" => call(
            Method::DELETE,
            format!("/api/v1/tokens/{}", f.token().await),
            None,
        ),
        "POST /api/v1/clusters" => call(
            Method::POST,
            "/api/v1/clusters".into(),
            Some(f.cluster_body()),
        ),
        "PATCH /api/v1/clusters/{id}" => call(
            Method::PATCH,
            format!("/api/v1/clusters/{}", f.cluster().await),
            Some(json!({"environment": "test"})),
        ),
        "DELETE /api/v1/clusters/{id}" => call(
            Method::DELETE,
            format!("/api/v1/clusters/{}", f.cluster().await),
            None,
        ),
        "POST /api/v1/apps" => {
            let cluster = f.cluster().await;
            call(
                Method::POST,
                "/api/v1/apps".into(),
                Some(f.app_body(cluster)),
            )
        }
        "PATCH /api/v1/apps/{id}" => {
            let cluster = f.cluster().await;
            let app = f.app(cluster).await;
            call(
                Method::PATCH,
                format!("/api/v1/apps/{app}"),
                Some(f.app_body(cluster)),
            )
        }
        "DELETE /api/v1/apps/{id}" => {
            let cluster = f.cluster().await;
            call(
                Method::DELETE,
                format!("/api/v1/apps/{}", f.app(cluster).await),
                None,
            )
        }
        "PUT /api/v1/settings/gitlab" => call(
            Method::PUT,
            "/api/v1/settings/gitlab".into(),
            Some(json!({"url": f.release.gitlab.url, "token": crate::fake_gitlab::TOKEN})),
        ),
        "POST /api/v1/release-items" => {
            let body = item_body(
                org.pay,
                &unique("item"),
                f.release.staging_app,
                f.release.prod_app,
            );
            call(Method::POST, "/api/v1/release-items".into(), Some(body))
        }
        "PUT /api/v1/release-items/{id}" => {
            let item = f.item().await;
            let body = item_body(
                org.pay,
                &unique("item"),
                f.release.staging_app,
                f.release.prod_app,
            );
            call(
                Method::PUT,
                format!("/api/v1/release-items/{item}"),
                Some(body),
            )
        }
        "DELETE /api/v1/release-items/{id}" => call(
            Method::DELETE,
            format!("/api/v1/release-items/{}", f.item().await),
            None,
        ),
        "POST /api/v1/work-orders" => call(
            Method::POST,
            "/api/v1/work-orders".into(),
            Some(order_body(f.item().await, "v1.0.0")),
        ),
        "POST /api/v1/work-orders/{id}/approve" => call(
            Method::POST,
            format!("/api/v1/work-orders/{}/approve", f.order().await),
            Some(json!({})),
        ),
        "POST /api/v1/work-orders/{id}/reject" => call(
            Method::POST,
            format!("/api/v1/work-orders/{}/reject", f.order().await),
            Some(json!({})),
        ),
        "POST /api/v1/work-orders/{id}/close" => call(
            Method::POST,
            format!("/api/v1/work-orders/{}/close", f.order().await),
            Some(json!({"reason": "test"})),
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/deploy" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/deploy",
                f.approved_order().await
            ),
            None,
        ),
        "POST /api/v1/work-orders/{id}/stages/{n}/rollback" => call(
            Method::POST,
            format!(
                "/api/v1/work-orders/{}/stages/1/rollback",
                f.approved_order().await
            ),
            None,
        ),
        "POST /api/v1/clusters/{id}/test" => call(
            Method::POST,
            format!("/api/v1/clusters/{}/test", f.cluster().await),
            None,
        ),
        other => panic!("no fixture for {other}"),
    }
}

const PAGE_ROUTES: &[(&str, &[Who])] = &[
    ("POST /tree/nodes (child of /acme/pay)", OWNERS),
    ("POST /tree/nodes (root)", ADMINS),
    ("POST /tree/nodes/{id}/title", OWNERS),
    ("POST /tree/nodes/{id}/delete", OWNERS),
    ("POST /tree/nodes/{id}/members", OWNERS),
    ("POST /tree/nodes/{id}/members/{account_id}/delete", OWNERS),
    ("POST /admin/users", ADMINS),
    ("POST /admin/users/{id}/disable", ADMINS),
    ("POST /admin/users/{id}/enable", ADMINS),
    ("POST /admin/users/{id}/reset-password", ADMINS),
    ("POST /admin/service-accounts", ADMINS),
    ("POST /admin/service-accounts/{id}/disable", ADMINS),
    ("POST /admin/service-accounts/{id}/enable", ADMINS),
    ("POST /admin/service-accounts/{id}/tokens", ADMINS),
    ("POST /admin/tokens/{id}/revoke", ADMINS),
    ("POST /admin/clusters", ADMINS),
    ("POST /admin/clusters/{id}/update", ADMINS),
    ("POST /admin/clusters/{id}/delete", ADMINS),
    ("POST /admin/apps", ADMINS),
    ("POST /admin/apps/{id}/delete", ADMINS),
    ("POST /admin/settings", ADMINS),
    ("POST /release-items", OWNERS),
    ("POST /release-items/{id}", OWNERS),
    ("POST /release-items/{id}/delete", OWNERS),
    ("POST /work-orders", FILERS),
    ("POST /work-orders/{id}/approve", APPROVERS),
    ("POST /work-orders/{id}/reject", APPROVERS),
    ("POST /work-orders/{id}/close", FILERS),
    ("POST /work-orders/{id}/stages/{n}/deploy", FILERS),
    ("POST /work-orders/{id}/stages/{n}/rollback", FILERS),
    ("POST /admin/clusters/{id}/test", ADMINS),
    ("POST /account/password", SIGNED_IN),
    ("POST /logout", SIGNED_IN),
];

async fn page_call(route: &str, f: &Fixtures<'_>, who: Who) -> (String, Vec<(String, String)>) {
    let org = f.org;
    let kv = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    match route {
        "POST /tree/nodes (child of /acme/pay)" => (
            "/tree/nodes".into(),
            kv(&[
                ("parent_id", &org.pay.to_string()),
                ("name", &unique("n")),
                ("title", "N"),
            ]),
        ),
        "POST /tree/nodes (root)" => (
            "/tree/nodes".into(),
            kv(&[("name", &unique("root")), ("title", "R")]),
        ),
        "POST /tree/nodes/{id}/title" => (
            format!("/tree/nodes/{}/title", org.pay_api),
            kv(&[("title", "T")]),
        ),
        "POST /tree/nodes/{id}/delete" => (
            format!("/tree/nodes/{}/delete", f.leaf_under_pay().await),
            vec![],
        ),
        "POST /tree/nodes/{id}/members" => {
            let (_, name) = f.user().await;
            (
                format!("/tree/nodes/{}/members", org.pay_api),
                kv(&[("account", &name), ("role", "viewer")]),
            )
        }
        "POST /tree/nodes/{id}/members/{account_id}/delete" => {
            let account = f.member_of_pay_api().await;
            (
                format!("/tree/nodes/{}/members/{account}/delete", org.pay_api),
                vec![],
            )
        }
        "POST /admin/users" => (
            "/admin/users".into(),
            kv(&[("name", &unique("u")), ("password", USER_PASSWORD)]),
        ),
        "POST /admin/users/{id}/disable" => {
            (format!("/admin/users/{}/disable", f.user().await.0), vec![])
        }
        "POST /admin/users/{id}/enable" => (
            format!("/admin/users/{}/enable", f.disabled_user().await),
            vec![],
        ),
        "POST /admin/users/{id}/reset-password" => (
            format!("/admin/users/{}/reset-password", f.user().await.0),
            vec![],
        ),
        "POST /admin/service-accounts" => (
            "/admin/service-accounts".into(),
            kv(&[("name", &unique("sa"))]),
        ),
        "POST /admin/service-accounts/{id}/disable" => (
            format!(
                "/admin/service-accounts/{}/disable",
                f.service_account().await
            ),
            vec![],
        ),
        "POST /admin/service-accounts/{id}/enable" => (
            format!(
                "/admin/service-accounts/{}/enable",
                f.service_account().await
            ),
            vec![],
        ),
        "POST /admin/service-accounts/{id}/tokens" => (
            format!(
                "/admin/service-accounts/{}/tokens",
                f.service_account().await
            ),
            kv(&[("name", "t")]),
        ),
        "POST /admin/tokens/{id}/revoke" => {
            (format!("/admin/tokens/{}/revoke", f.token().await), vec![])
        }
        "POST /admin/clusters" => {
            let yaml = crate::registry::kubeconfig();
            (
                "/admin/clusters".into(),
                kv(&[
                    ("name", &unique("c")),
                    ("environment", "dev"),
                    ("kubeconfig", &yaml),
                ]),
            )
        }
        "POST /admin/clusters/{id}/update" => (
            format!("/admin/clusters/{}/update", f.cluster().await),
            kv(&[("environment", "test")]),
        ),
        "POST /admin/clusters/{id}/delete" => (
            format!("/admin/clusters/{}/delete", f.cluster().await),
            vec![],
        ),
        "POST /admin/apps" => {
            let cluster = f.cluster().await.to_string();
            (
                "/admin/apps".into(),
                kv(&[
                    ("name", &unique("a")),
                    ("cluster_id", &cluster),
                    ("namespace", "ns"),
                    ("deployment", &unique("d")),
                    ("container", "c"),
                    ("node", "/acme/pay"),
                ]),
            )
        }
        "POST /admin/apps/{id}/delete" => {
            let cluster = f.cluster().await;
            (
                format!("/admin/apps/{}/delete", f.app(cluster).await),
                vec![],
            )
        }
        "POST /admin/settings" => (
            "/admin/settings".into(),
            kv(&[
                ("url", &f.release.gitlab.url),
                ("token", crate::fake_gitlab::TOKEN),
            ]),
        ),
        "POST /release-items" => ("/release-items".into(), f.item_form(None)),
        "POST /release-items/{id}" => {
            let item = f.item().await;
            (format!("/release-items/{item}"), f.item_form(None))
        }
        "POST /release-items/{id}/delete" => {
            (format!("/release-items/{}/delete", f.item().await), vec![])
        }
        "POST /work-orders" => {
            let item = f.item().await.to_string();
            (
                "/work-orders".into(),
                kv(&[("item", &item), ("version", "v1.0.0"), ("title", "T")]),
            )
        }
        "POST /work-orders/{id}/approve" => {
            (format!("/work-orders/{}/approve", f.order().await), vec![])
        }
        "POST /work-orders/{id}/reject" => {
            (format!("/work-orders/{}/reject", f.order().await), vec![])
        }
        "POST /work-orders/{id}/close" => (
            format!("/work-orders/{}/close", f.order().await),
            kv(&[("reason", "test")]),
        ),
        "POST /work-orders/{id}/stages/{n}/deploy" => (
            format!("/work-orders/{}/stages/1/deploy", f.approved_order().await),
            vec![],
        ),
        "POST /work-orders/{id}/stages/{n}/rollback" => (
            format!(
                "/work-orders/{}/stages/1/rollback",
                f.approved_order().await
            ),
            vec![],
        ),
        "POST /admin/clusters/{id}/test" => (
            format!("/admin/clusters/{}/test", f.cluster().await),
            vec![],
        ),
        // A wrong current password is refused by validation (422), which
        // still shows the route itself admitted the person.
        "POST /account/password" => (
            "/account/password".into(),
            kv(&[
                ("current_password", "not-my-password"),
                ("new_password", "whatever-long-1"),
            ]),
        ),
        "POST /logout" => {
            let _ = who;
            ("/logout".into(), vec![])
        }
        other => panic!("no fixture for {other}"),
    }
}

db_test!(
    every_state_changing_api_route_allows_exactly_the_listed_roles,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let release = Release::create(&app, true).await;
        let org = &release.org;
        let fixtures = Fixtures {
            org,
            release: &release,
            release_tokens: vec![
                ("eric".into(), app.api(Some(&app.token_for("eric")))),
                ("olivia".into(), app.api(Some(&app.token_for("olivia")))),
            ],
        };
        let mut clients: Vec<(Who, Api)> = Vec::new();
        for who in EVERYONE {
            let api = match user_of(who) {
                Some((name, _)) => app.api(Some(&app.token_for(name))),
                None => app.api(None),
            };
            clients.push((who, api));
        }
        let mut failures = Vec::new();
        for (route, allowed) in API_ROUTES {
            for (who, api) in &clients {
                let c = api_call(route, &fixtures).await;
                let (status, body) = api.request(c.method.clone(), &c.path, c.body.clone()).await;
                let expected_ok = allowed.contains(who);
                let ok = match (who, expected_ok) {
                    (Who::Anonymous, _) => status == StatusCode::UNAUTHORIZED,
                    (_, true) => admitted(route, status),
                    (_, false) => {
                        status == StatusCode::FORBIDDEN && body["error"]["code"] == "forbidden"
                    }
                };
                if !ok {
                    failures.push(format!("{route} as {who:?}: got {status} {body}"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "route × role table broken:\n{}",
            failures.join("\n")
        );
    }
);

db_test!(
    every_state_changing_page_route_allows_exactly_the_listed_roles,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let release = Release::create(&app, true).await;
        let org = &release.org;
        let fixtures = Fixtures {
            org,
            release: &release,
            release_tokens: vec![
                ("eric".into(), app.api(Some(&app.token_for("eric")))),
                ("olivia".into(), app.api(Some(&app.token_for("olivia")))),
            ],
        };
        let mut failures = Vec::new();
        for (route, allowed) in PAGE_ROUTES {
            for who in EVERYONE {
                // A fresh browser per request: logout and password changes end
                // the session they run in.
                let browser: Browser = match user_of(who) {
                    Some((name, password)) => app.browser_as(name, password).await,
                    None => app.browser(),
                };
                let (path, fields) = page_call(route, &fixtures, who).await;
                let fields: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let (status, _, location) = if who == Who::Anonymous {
                    // The anonymous browser has a CSRF cookie from the login page.
                    let token = browser.csrf("/login").await;
                    let mut all = vec![("csrf_token", token.as_str())];
                    all.extend_from_slice(&fields);
                    browser.post_raw(&path, &all).await
                } else {
                    browser.submit(&path, &fields).await
                };
                let to_login = location.as_deref().is_some_and(|l| l.starts_with("/login"));
                let ok = match (who, allowed.contains(&who)) {
                    (Who::Anonymous, _) => status == StatusCode::SEE_OTHER && to_login,
                    (_, true) => {
                        admitted(route, status)
                            || (*route == "POST /account/password"
                                && status == StatusCode::UNPROCESSABLE_ENTITY)
                    }
                    (_, false) => status == StatusCode::FORBIDDEN,
                };
                if !ok {
                    failures.push(format!(
                        "{route} as {who:?}: got {status} location {location:?}"
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "route × role table broken:\n{}",
            failures.join("\n")
        );
    }
);
