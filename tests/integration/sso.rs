//! Single sign-on through OpenID Connect, against the test provider
//! (`fake_oidc`): the whole code flow with PKCE, people linked by subject,
//! roles from groups set at each sign-in, every forged token and every
//! replayed or foreign sign-in refused, and password login switched off.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Backend, Browser, Org, Start, TestApp, USER_PASSWORD};
use crate::fake_oidc::{CLIENT_SECRET, FakeOidc, Forge};

/// A server signing in through `provider`, its public URL its own address
/// (the provider sends browsers back there), with `extra` flags.
pub(crate) async fn start_with_sso(
    backend: Backend,
    provider: &FakeOidc,
    extra: &[&str],
) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = Start::default();
    let address = format!("127.0.0.1:{port}");
    options.args.extend(
        [
            "--listen",
            &address,
            "--public-url",
            &format!("http://{address}"),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    options.args.extend(provider.args());
    options.args.extend(extra.iter().map(|s| s.to_string()));
    TestApp::start_with(backend, options).await
}

/// What a sign-in came to in the browser.
struct SignedIn {
    status: StatusCode,
    /// Where the last answer pointed (the page signed in to).
    location: Option<String>,
    body: String,
}

/// Starts a sign-in going on to `next` and has the provider sign the
/// chosen person in: the callback URL it sends the browser back to.
async fn to_callback(browser: &Browser, next: &str) -> String {
    let to_provider = browser
        .location_of(&format!("/auth/oidc/start?next={next}"))
        .await
        .expect("start sends the browser to the provider");
    let resp = browser.client.get(&to_provider).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "the provider sends it back"
    );
    let back = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(back.contains("/auth/oidc/callback?"), "{back}");
    back
}

/// Goes through the flow as a browser would: Rollway's start, the
/// provider's authorize page, Rollway's callback.
async fn sign_in(browser: &Browser, next: &str) -> SignedIn {
    let back = to_callback(browser, next).await;
    let resp = browser.client.get(&back).send().await.unwrap();
    SignedIn {
        status: resp.status(),
        location: resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: resp.text().await.unwrap_or_default(),
    }
}

/// Has the provider sign in the person `claims` name, and expects Rollway
/// to refuse them (403) saying `why`.
async fn refused_as(app: &TestApp, provider: &FakeOidc, claims: Value, why: &str) {
    provider.sign_in_as(claims);
    let browser = app.browser();
    let done = sign_in(&browser, "/").await;
    assert_eq!(done.status, StatusCode::FORBIDDEN, "{}", done.body);
    assert!(done.body.contains(why), "{why}: {}", done.body);
    assert_eq!(who(&browser).await, None);
}

/// The account a browser is signed in as, from its account page.
async fn who(browser: &Browser) -> Option<String> {
    let (status, html) = browser.get("/account").await;
    if status != StatusCode::OK {
        return None;
    }
    let marker = "Signed in as <code>";
    let at = html.find(marker)? + marker.len();
    Some(html[at..].split('<').next()?.to_string())
}

async fn members_of(org: &Org, node: i64) -> Vec<Value> {
    let (s, v) = org
        .admin
        .get(&format!("/api/v1/nodes/{node}/members"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

fn member<'a>(members: &'a [Value], name: &str) -> Option<&'a Value> {
    members.iter().find(|m| m["account"] == name)
}

async fn sso_links_people_and_sets_their_groups_roles(backend: Backend) {
    let provider = FakeOidc::start().await;
    let app = start_with_sso(
        backend,
        &provider,
        &[
            "--oidc-groups-claim",
            "groups",
            "--oidc-group-role",
            "pay-team=/acme/pay:engineer",
            "--oidc-group-role",
            "pay-leads=/acme/pay:owner",
            "--oidc-group-role",
            "ghosts=/nowhere:owner",
            "--oidc-admin-group",
            "rollway-admins",
        ],
    )
    .await;
    let org = Org::create(&app).await;

    // The login page offers the provider.
    let (_, login) = app.browser().get("/login").await;
    assert!(login.contains("Sign in with Acme SSO"), "{login}");
    // Admins see the settings, the redirect URI to register and a
    // mapping to a node that does not exist; never the secret.
    let admin_browser = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
    let (_, settings) = admin_browser.get("/admin/settings").await;
    assert!(
        settings.contains(&format!("{}/auth/oidc/callback", app.base)),
        "{settings}"
    );
    assert!(
        settings.contains("ghosts") && settings.contains("no such node"),
        "{settings}"
    );
    assert!(!settings.contains(CLIENT_SECRET));

    // A first sign-in creates alice with the role of her group.
    provider.sign_in_as(json!({"sub": "u-alice", "preferred_username": "Alice", "name": "Alice Liddell", "groups": ["pay-team", "ghosts"]}));
    let browser = app.browser();
    let done = sign_in(&browser, "/tree").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some("/tree"));
    assert_eq!(who(&browser).await.as_deref(), Some("alice"));
    let (_, page) = browser.get("/account").await;
    assert!(page.contains("have no password here"), "{page}");
    let members = members_of(&org, org.pay).await;
    let alice = member(&members, "alice").expect("alice is a member of /acme/pay");
    assert_eq!(alice["role"], "engineer");
    assert_eq!(alice["sso_group"], "pay-team");
    assert_eq!(alice["display_name"], "Alice Liddell");
    // The provider saw PKCE and the client's credentials (fake_oidc
    // refuses the code otherwise) and the secret is nowhere in the log.
    assert!(provider.requests().contains(&"POST token".to_string()));
    assert!(
        !app.output().contains(CLIENT_SECRET),
        "the client secret was logged"
    );

    // Her groups change: the strongest role wins, and a group left takes
    // its role away; a role given by hand stays.
    let (s, v) = org
        .admin
        .post(
            &format!("/api/v1/nodes/{}/members", org.acme),
            json!({"account": "alice", "role": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    provider.sign_in_as(json!({"sub": "u-alice", "preferred_username": "alice", "groups": ["pay-team", "pay-leads"]}));
    assert_eq!(
        sign_in(&app.browser(), "/").await.status,
        StatusCode::SEE_OTHER
    );
    let members = members_of(&org, org.pay).await;
    assert_eq!(member(&members, "alice").unwrap()["role"], "owner");
    assert_eq!(member(&members, "alice").unwrap()["sso_group"], "pay-leads");
    provider.sign_in_as(json!({"sub": "u-alice", "preferred_username": "alice", "groups": []}));
    assert_eq!(
        sign_in(&app.browser(), "/").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(
        member(&members_of(&org, org.pay).await, "alice").is_none(),
        "left pay-team"
    );
    let acme = members_of(&org, org.acme).await;
    let by_hand = member(&acme, "alice").expect("the role given by hand stays");
    assert_eq!(by_hand["role"], "viewer");
    assert!(by_hand["sso_group"].is_null());

    // The admin group gives admin, and takes it back.
    provider.sign_in_as(
        json!({"sub": "u-alice", "preferred_username": "alice", "groups": ["rollway-admins"]}),
    );
    let admin_browser = app.browser();
    assert_eq!(
        sign_in(&admin_browser, "/").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(admin_browser.get("/admin/users").await.0, StatusCode::OK);
    provider.sign_in_as(json!({"sub": "u-alice", "preferred_username": "alice", "groups": []}));
    let plain = app.browser();
    assert_eq!(sign_in(&plain, "/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(plain.get("/admin/users").await.0, StatusCode::FORBIDDEN);

    // Linked by subject: a new name at the provider is still alice…
    provider.sign_in_as(json!({"sub": "u-alice", "preferred_username": "alice.l"}));
    let renamed = app.browser();
    assert_eq!(sign_in(&renamed, "/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(who(&renamed).await.as_deref(), Some("alice"));
    // …and another person naming herself alice is refused.
    refused_as(
        &app,
        &provider,
        json!({"sub": "u-mallory", "preferred_username": "alice"}),
        "already linked to another person",
    )
    .await;

    // An existing password user is linked on her first sign-in; a service
    // account is never signed in to; a name Rollway cannot use is refused.
    provider.sign_in_as(json!({"sub": "u-eric", "preferred_username": "eric"}));
    let eric = app.browser();
    assert_eq!(sign_in(&eric, "/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(who(&eric).await.as_deref(), Some("eric"));
    let (_, page) = eric.get("/account").await;
    assert!(
        page.contains("change-password-form"),
        "eric keeps his password"
    );
    // Admins see who signs in through single sign-on.
    let admin_pages = app.browser_as("admin", crate::common::ADMIN_PASSWORD).await;
    let (_, users) = admin_pages.get("/admin/users").await;
    let row_of = |name: &str| {
        let at = users
            .find(&format!("data-account=\"{name}\""))
            .unwrap_or_else(|| panic!("{name} listed"));
        users[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(row_of("eric").contains(">SSO<"), "{users}");
    assert!(!row_of("olivia").contains(">SSO<"), "{users}");
    let (s, v) = org
        .admin
        .post(
            "/api/v1/service-accounts",
            json!({"name": "ci-bot", "node": "/acme/pay"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    // Naming oneself admin at the provider makes nobody an administrator.
    refused_as(
        &app,
        &provider,
        json!({"sub": "u-eve", "preferred_username": "admin"}),
        "administrators are not linked",
    )
    .await;
    refused_as(
        &app,
        &provider,
        json!({"sub": "u-bot", "preferred_username": "ci-bot"}),
        "service account",
    )
    .await;
    refused_as(
        &app,
        &provider,
        json!({"sub": "u-x", "preferred_username": "x y@example.com"}),
        "is not one Rollway can use",
    )
    .await;
    // A disabled account is refused.
    let (_, users) = org.admin.get("/api/v1/users").await;
    let alice_id = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (s, v) = org
        .admin
        .patch(
            &format!("/api/v1/users/{alice_id}"),
            json!({"disabled": true}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    refused_as(
        &app,
        &provider,
        json!({"sub": "u-alice", "preferred_username": "alice"}),
        "disabled",
    )
    .await;

    // The audit log has the link and the roles' comings and goings.
    let (_, audit) = org.admin.get("/api/v1/audit?limit=200").await;
    let text = audit.to_string();
    for needle in [
        "linked alice to their single sign-on",
        "alice is engineer on /acme/pay (single sign-on group pay-team)",
        "removed alice from /acme/pay: no longer in single sign-on group pay-leads",
        "alice is an administrator (single sign-on admin group)",
    ] {
        assert!(text.contains(needle), "audit lacks {needle:?}: {text}");
    }
}

crate::db_test!(
    sso_links_people_and_sets_their_groups_roles,
    sso_links_people_and_sets_their_groups_roles
);

async fn every_forged_or_replayed_sign_in_is_refused(backend: Backend) {
    let provider = FakeOidc::start().await;
    let app = start_with_sso(backend, &provider, &[]).await;
    let admin = app.api(Some(&app.admin_token()));
    provider.sign_in_as(json!({"sub": "u-fay", "preferred_username": "fay"}));
    for (forge, why) in [
        (Forge::WrongKey, "signature does not verify"),
        (Forge::WrongNonce, "nonce is not this sign-in"),
        (Forge::Expired, "has expired (exp)"),
        (Forge::WrongAudience, "audience (aud) is not this client"),
        (Forge::WrongIssuer, "issuer (iss) is not"),
        (Forge::AlgNone, "algorithm is &#39;none&#39;"),
        (Forge::Hs256, "algorithm is &#39;HS256&#39;"),
    ] {
        provider.forge(forge);
        let browser = app.browser();
        let done = sign_in(&browser, "/").await;
        assert_eq!(
            done.status,
            StatusCode::UNAUTHORIZED,
            "{forge:?}: {}",
            done.body
        );
        assert!(
            done.body.contains(why),
            "{forge:?} names {why:?}: {}",
            done.body
        );
        assert_eq!(who(&browser).await, None, "{forge:?} signed in");
    }
    let (_, users) = admin.get("/api/v1/users").await;
    assert!(
        !users.to_string().contains("\"fay\""),
        "a forged token made an account: {users}"
    );

    // ES256 from the provider's P-256 key is good.
    provider.forge(Forge::GoodEs256);
    let browser = app.browser();
    assert_eq!(sign_in(&browser, "/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(who(&browser).await.as_deref(), Some("fay"));

    // The callback only finishes a sign-in this browser started, once.
    provider.forge(Forge::Good);
    let started = app.browser();
    let back = to_callback(&started, "/").await;
    // Another browser (an attacker's link) has no sign-in to finish.
    let other = app.browser();
    let resp = other.client.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("was not started in this browser")
    );
    // A state that is not this browser's.
    let tampered = back.replace("state=", "state=x");
    let resp = started.client.get(&tampered).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The cookie went with the first answer: the real callback now fails too.
    let resp = started.client.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(who(&started).await, None);
    // A code used once is refused by the provider when used again.
    let twice = app.browser();
    let back = to_callback(&twice, "/").await;
    let resp = twice.client.get(&back).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let again = app.browser();
    let fresh = to_callback(&again, "/").await;
    let old_code = back
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let fresh_code = fresh
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let replayed = fresh.replace(fresh_code, old_code);
    let resp = again.client.get(&replayed).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("invalid_grant"));
    // The provider said no.
    let browser = app.browser();
    let to_provider = browser.location_of("/auth/oidc/start").await.unwrap();
    let state = url::Url::parse(&to_provider)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let (status, body) = browser
        .get(&format!(
            "/auth/oidc/callback?state={state}&error=access_denied&error_description=not+today"
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("access_denied: not today"), "{body}");
    // Never a redirect off the site after signing in.
    provider.forge(Forge::Good);
    let done = sign_in(&app.browser(), "//evil.example/x").await;
    assert_eq!(done.location.as_deref(), Some("/"));
    // No code or token is logged.
    let out = app.output();
    assert!(!out.contains(old_code), "a code was logged");
}

crate::db_test!(
    sso_every_forged_or_replayed_sign_in_is_refused,
    every_forged_or_replayed_sign_in_is_refused
);

#[tokio::test]
async fn sso_password_login_can_be_off_or_for_admins_only() {
    let provider = FakeOidc::start().await;
    let admins_only =
        start_with_sso(Backend::Sqlite, &provider, &["--password-login", "admins"]).await;
    Org::create(&admins_only).await;
    let off = start_with_sso(Backend::Sqlite, &provider, &["--password-login", "off"]).await;
    let org = Org::create(&off).await;

    let (_, login) = off.browser().get("/login").await;
    assert!(login.contains("Sign in with Acme SSO"));
    assert!(
        !login.contains("name=\"password\""),
        "no password form: {login}"
    );
    for (user, password) in [
        ("eric", USER_PASSWORD),
        ("admin", crate::common::ADMIN_PASSWORD),
    ] {
        // A form posted anyway (its CSRF token from the other server,
        // which shares the key and the cookie's host) is refused.
        let browser = off.browser();
        let (_, page) = Browser::at(&admins_only.base).get("/login").await;
        assert!(page.contains("name=\"password\""));
        let resp = browser
            .client
            .get(admins_only.url("/login"))
            .send()
            .await
            .unwrap();
        let token = crate::common::csrf_from(&resp.text().await.unwrap()).unwrap();
        let (status, body, _) = browser
            .post_raw(
                "/login",
                &[
                    ("csrf_token", &token),
                    ("username", user),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {body}");
        assert!(
            body.contains("Password login is off: sign in with Acme SSO."),
            "{body}"
        );
        assert_eq!(who(&browser).await, None);
    }
    // API tokens work either way.
    let (s, _) = org.admin.get("/api/v1/nodes").await;
    assert_eq!(s, StatusCode::OK);

    let (_, login) = admins_only.browser().get("/login").await;
    assert!(
        login.contains("Administrators: log in with a password"),
        "{login}"
    );
    let eric = admins_only.browser();
    let (status, body) = eric.login("eric", USER_PASSWORD).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("Only administrators log in with a password here"),
        "{body}"
    );
    assert_eq!(who(&eric).await, None);
    // A wrong password still reads the same as ever.
    let (status, _) = eric.login("eric", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let admin = admins_only.browser();
    let (status, _) = admin.login("admin", crate::common::ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(who(&admin).await.as_deref(), Some("admin"));
}

#[tokio::test]
async fn sso_a_provider_that_cannot_be_reached_is_named_on_the_login_page() {
    let provider = FakeOidc::start().await;
    // A provider whose discovery document is not there.
    let mut options = Start::default();
    options.args.extend(
        [
            "--public-url",
            "http://127.0.0.1:9",
            "--oidc-issuer",
            &format!("{}/realms/other", provider.issuer),
            "--oidc-client-id",
            "x",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let app = TestApp::start_with(Backend::Sqlite, options).await;
    let (status, body) = app.browser().get("/auth/oidc/start").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("discovery document failed"), "{body}");
}
