//! GitLab CI ID tokens as API credentials: a token signed with the fake
//! GitLab's key and bound to a project acts as its service account (its
//! grants, the audit log naming the job); every way a token can be wrong is
//! refused with 401 and its reason; a rotated key is picked up after one
//! fetch of GitLab's key set, and unknown kids do not make Rollway fetch it
//! again and again. The test keys are `tests/fixtures/id_tokens`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ADMIN_PASSWORD, Api, Backend, Org, Start, TestApp};
use crate::db_test;
use crate::fake_gitlab::{FakeGitlab, TOKEN};

/// Rollway's public URL in these tests: the audience tokens must name.
pub(crate) const AUDIENCE: &str = "https://rollway.example";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../tests/fixtures/id_tokens/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The private half of fixture key `k` (`a` or `b`).
fn signing_key(k: &str) -> EncodingKey {
    let pem = fixture(&format!("key-{k}.pem"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    EncodingKey::from_rsa_der(&STANDARD.decode(body).expect("PEM body"))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims GitLab puts in a job's ID token, for `project` on `reference`.
pub(crate) fn claims(gitlab: &FakeGitlab, project: &str, reference: &str) -> Value {
    let now = now();
    json!({
        "namespace_id": "72", "namespace_path": project.rsplit_once('/').map(|p| p.0).unwrap_or(""),
        "project_id": "20", "project_path": project,
        "user_id": "1", "user_login": "dana", "user_email": "dana@example.com",
        "pipeline_id": "574", "pipeline_source": "push",
        "job_id": "302", "ref": reference, "ref_type": "branch", "ref_path": format!("refs/heads/{reference}"),
        "ref_protected": "true",
        "jti": "c1d2e3", "iss": gitlab.url, "iat": now, "nbf": now - 5, "exp": now + 300,
        "sub": format!("project_path:{project}:ref_type:branch:ref:{reference}"),
        "aud": AUDIENCE
    })
}

/// `claims` signed RS256 with fixture key `k` under kid `kid`.
fn sign(claims: &Value, k: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &signing_key(k)).expect("sign")
}

/// A token as GitLab signs it: key `a`, kid `test-key-a`.
pub(crate) fn gitlab_token(claims: &Value) -> String {
    sign(claims, "a", "test-key-a")
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

/// A server with a public URL, connected to a fake GitLab serving key `a`.
async fn start(backend: Backend) -> (TestApp, FakeGitlab, Org) {
    let mut options = Start::default();
    options
        .args
        .extend(["--public-url".to_string(), AUDIENCE.to_string()]);
    let app = TestApp::start_with(backend, options).await;
    let gitlab = FakeGitlab::start().await;
    gitlab.serve_signing_keys(&["a"]);
    let org = Org::create(&app).await;
    let (s, v) = org
        .admin
        .put(
            "/api/v1/settings/gitlab",
            json!({"url": gitlab.url, "token": TOKEN}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (app, gitlab, org)
}

/// A service account with `role` on `node` (a path), and its id.
async fn service_account(admin: &Api, name: &str, node: &str, role: &str) -> i64 {
    let (s, v) = admin
        .post(
            "/api/v1/service-accounts",
            json!({"name": name, "node": node, "role": role}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

async fn bind(admin: &Api, body: Value) -> Value {
    let (s, v) = admin.post("/api/v1/id-token-bindings", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// `GET /api/v1/me` with `token`: its status and answer.
async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.api(Some(token)).get("/api/v1/me").await
}

/// Asserts `token` is refused with 401 and a message holding `reason`.
async fn assert_refused(app: &TestApp, what: &str, token: &str, reason: &str) {
    let (s, v) = me(app, token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(reason),
        "{what}: '{message}' does not say '{reason}'"
    );
}

db_test!(
    an_id_token_bound_to_its_project_acts_as_the_service_account,
    |backend| async move {
        let (app, gitlab, org) = start(backend).await;
        let deployer = service_account(&org.admin, "deployer", "/acme/pay", "owner").await;
        let binding = bind(
            &org.admin,
            json!({"service_account_id": deployer, "project_path": "Acme/Pay"}),
        )
        .await;
        assert_eq!(binding["project_path"], "acme/pay", "{binding}");
        assert_eq!(binding["service_account"], "deployer");
        let token = gitlab_token(&claims(&gitlab, "acme/pay", "main"));

        let (s, v) = me(&app, &token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["account"]["name"], "deployer", "{v}");

        // Its grants: owner of /acme/pay may add a node there, not a root
        // node, and /acme/payroll is as missing to it as to anyone outside.
        let ci = app.api(Some(&token));
        let (s, v) = ci
            .post(
                "/api/v1/nodes",
                json!({"parent_id": org.pay, "name": "from-ci", "title": "From CI"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, v) = ci
            .post("/api/v1/nodes", json!({"name": "rootish", "title": "R"}))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = ci
            .post(
                "/api/v1/nodes",
                json!({"parent_id": org.payroll, "name": "x", "title": "X"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        // Nor may it manage bindings.
        assert_eq!(
            ci.get("/api/v1/id-token-bindings").await.0,
            StatusCode::FORBIDDEN
        );

        // The audit log names the service account and the job.
        let (_, audit) = org.admin.get("/api/v1/audit").await;
        let entry = audit
            .as_array()
            .or_else(|| audit["entries"].as_array())
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["summary"].as_str().unwrap_or("").contains("from-ci"))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no audit row for the node: {audit}"));
        assert_eq!(entry["actor_id"], deployer, "{entry}");
        assert_eq!(
            entry["actor"], "deployer (GitLab CI acme/pay@main job 302)",
            "{entry}"
        );
        // The token is never written anywhere.
        let signature = token.rsplit('.').next().unwrap();
        assert!(!app.output().contains(signature), "the token was logged");
        assert!(!audit.to_string().contains(signature));

        // Removing the binding refuses the token at once.
        let (s, v) = org
            .admin
            .delete(&format!("/api/v1/id-token-bindings/{}", binding["id"]))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_refused(&app, "unbound", &token, "no binding matches").await;
        // Keys were fetched once for all of it.
        assert_eq!(gitlab.key_set_fetches(), 1);
    }
);

db_test!(
    every_bad_id_token_is_refused_with_its_reason,
    |backend| async move {
        let (app, gitlab, org) = start(backend).await;
        let deployer = service_account(&org.admin, "deployer", "/acme/pay", "engineer").await;
        bind(
            &org.admin,
            json!({"service_account_id": deployer, "project_path": "acme/pay"}),
        )
        .await;
        let good = claims(&gitlab, "acme/pay", "main");
        // The good token works, so each refusal below is its own change.
        assert_eq!(me(&app, &gitlab_token(&good)).await.0, StatusCode::OK);
        let now = now();

        // alg none: no signature at all.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"test-key-a"}"#),
            URL_SAFE_NO_PAD.encode(good.to_string())
        );
        assert_refused(&app, "alg none", &none, "only RS256").await;
        // HS256 "signed" with GitLab's public key as the secret.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("test-key-a".into());
        let (public, pem) = (fixture("key-a.jwk.json"), fixture("key-a.pem"));
        for secret in [public.as_bytes(), pem.as_bytes()] {
            let forged =
                jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(secret)).unwrap();
            assert_refused(&app, "HS256", &forged, "only RS256").await;
        }
        // Signed by another key under GitLab's kid.
        let forged = sign(&good, "b", "test-key-a");
        assert_refused(&app, "wrong key", &forged, "signature does not verify").await;
        // A tampered payload.
        let token = gitlab_token(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD
                .encode(with(good.clone(), json!({"project_path": "acme/payroll"})).to_string()),
            parts[2]
        );
        assert_refused(&app, "tampered", &tampered, "signature does not verify").await;

        let cases = [
            (
                "wrong iss",
                json!({"iss": "https://gitlab.evil.example"}),
                "issuer (iss)",
            ),
            ("no iss", json!({"iss": null}), "iss"),
            (
                "wrong aud",
                json!({"aud": "https://other.example"}),
                "audience (aud)",
            ),
            (
                "aud of another path",
                json!({"aud": format!("{AUDIENCE}/x")}),
                "audience (aud)",
            ),
            ("expired", json!({"exp": now - 120}), "expired"),
            (
                "nbf in the future",
                json!({"nbf": now + 300}),
                "not valid yet",
            ),
            (
                "iat in the future",
                json!({"iat": now + 300}),
                "not valid yet",
            ),
            ("no project", json!({"project_path": null}), "project_path"),
            (
                "another project",
                json!({"project_path": "other/app"}),
                "no binding matches",
            ),
            (
                "a longer path",
                json!({"project_path": "acme/pay/api"}),
                "no binding matches",
            ),
            (
                "a look-alike",
                json!({"project_path": "acme/payroll"}),
                "no binding matches",
            ),
        ];
        for (what, change, reason) in cases {
            let token = gitlab_token(&with(good.clone(), change));
            assert_refused(&app, what, &token, reason).await;
        }
        // A small leeway for clock skew.
        let skewed = with(good.clone(), json!({"exp": now - 5, "nbf": now + 5}));
        assert_eq!(me(&app, &gitlab_token(&skewed)).await.0, StatusCode::OK);

        // An unknown kid: GitLab's keys are fetched once more, not again
        // for the same kid, and random kids are bounded overall.
        let fetches = gitlab.key_set_fetches();
        let unknown = sign(&good, "b", "test-key-b");
        assert_refused(&app, "unknown kid", &unknown, "no signing key 'test-key-b'").await;
        assert_eq!(gitlab.key_set_fetches(), fetches + 1);
        assert_refused(&app, "unknown kid again", &unknown, "no signing key").await;
        assert_eq!(gitlab.key_set_fetches(), fetches + 1, "asked again");
        for i in 0..20 {
            let random = sign(&good, "b", &format!("random-{i}"));
            assert_refused(&app, "random kid", &random, "random-").await;
        }
        assert!(
            gitlab.key_set_fetches() <= fetches + 3,
            "random kids made Rollway fetch GitLab's keys {} times",
            gitlab.key_set_fetches() - fetches
        );
        // Not a JWT nor an rwy_ token.
        let (s, _) = me(&app, "a.b.c").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
);

db_test!(
    bindings_match_group_prefixes_refs_and_protected_refs_strictly,
    |backend| async move {
        let (app, gitlab, org) = start(backend).await;
        let releaser = service_account(&org.admin, "releaser", "/acme", "viewer").await;
        let retired = service_account(&org.admin, "retired", "/acme", "viewer").await;
        bind(
            &org.admin,
            json!({"service_account_id": releaser, "project_path": "acme/*",
                   "ref_type": "branch", "ref": "release/*", "protected_only": true}),
        )
        .await;
        bind(
            &org.admin,
            json!({"service_account_id": retired, "project_path": "old/app"}),
        )
        .await;
        let (s, v) = org
            .admin
            .patch(
                &format!("/api/v1/service-accounts/{retired}"),
                json!({"disabled": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let base = claims(&gitlab, "acme/tools", "release/2026.1");
        for project in ["acme/tools", "acme/pay/api"] {
            let token = gitlab_token(&with(base.clone(), json!({"project_path": project})));
            let (s, v) = me(&app, &token).await;
            assert_eq!(s, StatusCode::OK, "{project}: {v}");
            assert_eq!(v["account"]["name"], "releaser", "{project}");
        }
        let cases = [
            (
                "a look-alike group",
                json!({"project_path": "acme-evil/tools"}),
            ),
            ("the group itself", json!({"project_path": "acme"})),
            (
                "a group below another",
                json!({"project_path": "evil/acme/tools"}),
            ),
            ("an unprotected ref", json!({"ref_protected": "false"})),
            (
                "a boolean, not GitLab's string",
                json!({"ref_protected": true}),
            ),
            ("no ref_protected", json!({"ref_protected": null})),
            ("another ref", json!({"ref": "main"})),
            (
                "a ref containing the glob's text",
                json!({"ref": "hotfix/release/1"}),
            ),
            ("a tag", json!({"ref_type": "tag"})),
        ];
        for (what, change) in cases {
            let token = gitlab_token(&with(base.clone(), change));
            assert_refused(&app, what, &token, "no binding matches").await;
        }
        let token = gitlab_token(&with(base.clone(), json!({"project_path": "old/app"})));
        assert_refused(&app, "disabled", &token, "service account retired").await;
        assert_refused(&app, "disabled", &token, "is disabled").await;
    }
);

db_test!(
    a_rotated_gitlab_key_is_picked_up_after_one_fetch,
    |backend| async move {
        let (app, gitlab, org) = start(backend).await;
        let deployer = service_account(&org.admin, "deployer", "/acme/pay", "viewer").await;
        bind(
            &org.admin,
            json!({"service_account_id": deployer, "project_path": "acme/pay"}),
        )
        .await;
        let good = claims(&gitlab, "acme/pay", "main");
        assert_eq!(me(&app, &gitlab_token(&good)).await.0, StatusCode::OK);
        assert_eq!(gitlab.key_set_fetches(), 1);
        // GitLab rotates: it signs with key b and serves both.
        gitlab.serve_signing_keys(&["a", "b"]);
        let rotated = sign(&good, "b", "test-key-b");
        let (s, v) = me(&app, &rotated).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(gitlab.key_set_fetches(), 2);
        // Both keys are now known: no more fetches.
        assert_eq!(me(&app, &rotated).await.0, StatusCode::OK);
        assert_eq!(me(&app, &gitlab_token(&good)).await.0, StatusCode::OK);
        assert_eq!(gitlab.key_set_fetches(), 2);
    }
);

db_test!(
    id_token_bindings_are_validated_audited_and_shown_to_admins,
    |backend| async move {
        let (app, _gitlab, org) = start(backend).await;
        let sa = service_account(&org.admin, "deployer", "/acme/pay", "viewer").await;
        let (_, users) = org.admin.get("/api/v1/users").await;
        let olivia = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "olivia")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let bad = [
            (
                json!({"service_account_id": sa, "project_path": "acme"}),
                "project_path",
            ),
            (
                json!({"service_account_id": sa, "project_path": "*"}),
                "project_path",
            ),
            (
                json!({"service_account_id": sa, "project_path": "acme/p*y"}),
                "project_path",
            ),
            (
                json!({"service_account_id": sa, "project_path": "acme/pay", "ref": "a b"}),
                "ref",
            ),
            (
                json!({"service_account_id": sa, "project_path": "acme/pay", "ref_type": "commit"}),
                "ref_type",
            ),
            (
                json!({"service_account_id": olivia, "project_path": "acme/pay"}),
                "service_account_id",
            ),
            (
                json!({"service_account_id": 999999, "project_path": "acme/pay"}),
                "service_account_id",
            ),
        ];
        for (body, field) in bad {
            let (s, v) = org
                .admin
                .post("/api/v1/id-token-bindings", body.clone())
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
            if field != "ref_type" {
                assert_eq!(v["error"]["field"], field, "{body}: {v}");
            }
        }
        let made = bind(
            &org.admin,
            json!({"service_account_id": sa, "project_path": "acme/*", "ref": "main"}),
        )
        .await;
        let (_, list) = org.admin.get("/api/v1/id-token-bindings").await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["ref"], "main");
        let (_, audit) = org.admin.get("/api/v1/audit").await;
        assert!(
            audit.to_string().contains("id_token_binding.create"),
            "{audit}"
        );
        let (s, _) = org.admin.delete("/api/v1/id-token-bindings/999999").await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // The service account's page lists it and adds and removes them.
        let browser = app.browser_as("admin", ADMIN_PASSWORD).await;
        let page_path = format!("/admin/service-accounts/{sa}");
        let (_, page) = browser.get(&page_path).await;
        assert!(page.contains("GitLab CI ID tokens"), "{page}");
        assert!(page.contains("<code>acme/*</code>"), "{page}");
        assert!(page.contains(&format!("aud: {AUDIENCE}")), "{page}");
        let (s, page, _) = browser
            .submit(
                &format!("/admin/service-accounts/{sa}/id-token-bindings"),
                &[
                    ("project_path", "acme/pay/api"),
                    ("ref_type", "tag"),
                    ("ref", "v*"),
                    ("protected_only", "on"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{page}");
        let (_, list) = org.admin.get("/api/v1/id-token-bindings").await;
        let added = list
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["project_path"] == "acme/pay/api")
            .unwrap_or_else(|| panic!("{list}"));
        assert_eq!(added["ref_type"], "tag");
        assert_eq!(added["protected_only"], true);
        let (s, page, _) = browser
            .submit(
                &format!("/admin/service-accounts/{sa}/id-token-bindings"),
                &[("project_path", "acme-no-slash")],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.contains("names no project"), "{page}");
        let (s, _, _) = browser
            .submit(
                &format!("/admin/id-token-bindings/{}/delete", made["id"]),
                &[],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, list) = org.admin.get("/api/v1/id-token-bindings").await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    }
);

#[tokio::test]
async fn id_tokens_are_refused_without_a_public_url() {
    let app = TestApp::start(Backend::Sqlite).await;
    let gitlab = FakeGitlab::start().await;
    gitlab.serve_signing_keys(&["a"]);
    let token = gitlab_token(&claims(&gitlab, "acme/pay", "main"));
    assert_refused(&app, "no public URL", &token, "--public-url").await;
    assert_eq!(gitlab.key_set_fetches(), 0);
}

#[tokio::test]
async fn a_failing_gitlab_key_set_is_a_502_naming_gitlab() {
    let (app, gitlab, org) = start(Backend::Sqlite).await;
    let sa = service_account(&org.admin, "deployer", "/acme/pay", "viewer").await;
    bind(
        &org.admin,
        json!({"service_account_id": sa, "project_path": "acme/pay"}),
    )
    .await;
    gitlab.set_mode(crate::fake_gitlab::Mode::Status(500));
    let token = gitlab_token(&claims(&gitlab, "acme/pay", "main"));
    let (s, v) = me(&app, &token).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GitLab's ID-token signing keys could not be fetched"),
        "{v}"
    );
    // Within the back-off, GitLab is not asked again.
    let fetches = gitlab.key_set_fetches();
    assert_eq!(me(&app, &token).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(gitlab.key_set_fetches(), fetches);
}

/// A server with a 1 s GitLab deadline and a bound token for `acme/pay`.
async fn start_with_short_deadline() -> (TestApp, FakeGitlab, String) {
    let mut options = Start::default();
    options
        .args
        .extend(["--public-url", AUDIENCE, "--gitlab-timeout-seconds", "1"].map(String::from));
    let app = TestApp::start_with(Backend::Sqlite, options).await;
    let gitlab = FakeGitlab::start().await;
    gitlab.serve_signing_keys(&["a"]);
    let admin = app.api(Some(&app.admin_token()));
    let (s, v) = admin
        .put(
            "/api/v1/settings/gitlab",
            json!({"url": gitlab.url, "token": TOKEN}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = admin
        .post("/api/v1/service-accounts", json!({"name": "deployer"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    bind(
        &admin,
        json!({"service_account_id": v["id"], "project_path": "acme/pay"}),
    )
    .await;
    let token = gitlab_token(&claims(&gitlab, "acme/pay", "main"));
    (app, gitlab, token)
}

/// Asserts a 502 whose message says `why`.
async fn assert_keys_unavailable(app: &TestApp, token: &str, why: &str) {
    let (s, v) = me(app, token).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("GitLab's ID-token signing keys could not be fetched")
            && message.contains(why),
        "'{message}' does not say '{why}'"
    );
}

#[tokio::test]
async fn a_hanging_gitlab_key_set_fails_within_the_id_token_deadline() {
    let (app, gitlab, token) = start_with_short_deadline().await;
    gitlab.set_mode(crate::fake_gitlab::Mode::Hang);
    let started = std::time::Instant::now();
    assert_keys_unavailable(&app, &token, "did not answer within 1 s").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_redirecting_gitlab_key_set_is_not_followed_for_id_tokens() {
    let (app, gitlab, token) = start_with_short_deadline().await;
    gitlab.set_mode(crate::fake_gitlab::Mode::Status(302));
    assert_keys_unavailable(&app, &token, "a redirect, not followed").await;
}

#[tokio::test]
async fn an_oversized_gitlab_key_set_is_not_read_for_id_tokens() {
    let (app, gitlab, token) = start_with_short_deadline().await;
    let padding = "x".repeat(300 * 1024);
    gitlab.serve_raw_key_set(format!(r#"{{"keys": [], "padding": "{padding}"}}"#));
    assert_keys_unavailable(&app, &token, "larger than 256 KiB").await;
}

#[tokio::test]
async fn a_key_set_without_an_rs256_key_verifies_no_id_token() {
    let (app, gitlab, token) = start_with_short_deadline().await;
    gitlab.serve_raw_key_set(
        r#"{"keys": [{"kty": "oct", "kid": "test-key-a", "k": "c2VjcmV0"}]}"#.into(),
    );
    assert_keys_unavailable(&app, &token, "no RS256 or ES256 signing key").await;
}
