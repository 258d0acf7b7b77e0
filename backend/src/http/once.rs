//! A secret shown once on the page a form leads to: a new token, a
//! generated password, a webhook's signing secret. The form's POST answers
//! 303 like every other form (post/redirect/get: reloading the page shows
//! it again rather than creating a second token or destination), and
//! hands the secret to that page in a cookie sealed with the server's key,
//! bound to the person and the page, that lasts five minutes; the page
//! shows it and clears the cookie, so a reload no longer shows it.

use axum::response::Response;
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};

use super::{Notice, PageCtx, page_error, redirect_with, set_cookie};
use crate::auth::client::SiteCookie;
use crate::db::now_ms;
use crate::error::Error;
use crate::secret::Sealer;

/// How long the page may take to load after the form.
const LIFETIME_MS: i64 = 5 * 60 * 1000;

/// What a page shows once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shown {
    /// A generated password, with the user it is for.
    Password { user: String, password: String },
    /// A new API token.
    Token { token: String },
    /// A webhook destination's signing secret, with the destination's name.
    SigningSecret { destination: String, secret: String },
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    shown: Shown,
    /// Unix milliseconds after which it is not shown.
    until: i64,
}

/// What the sealed value is bound to: only this person, on this page,
/// opens it.
fn bound_to(account: i64, page: &str) -> String {
    format!("once:{account}:{page}")
}

/// The path a redirect target names, without its query and fragment.
fn page_of(to: &str) -> &str {
    to.split(['?', '#']).next().unwrap_or(to)
}

/// 303 to `to` with `notice`, handing `shown` to that page for the person
/// signed in.
pub fn redirect(ctx: &PageCtx, to: &str, notice: Notice, shown: Shown) -> Response {
    let sealed = Sealed {
        shown,
        until: now_ms() + LIFETIME_MS,
    };
    let bound = bound_to(ctx.actor.account.id, page_of(to));
    let sealed = serde_json::to_string(&sealed)
        .map_err(|e| e.to_string())
        .and_then(|json| ctx.state.sealer.seal(&json, &bound));
    let sealed = match sealed {
        Ok(sealed) => sealed,
        Err(e) => {
            return page_error(&Error::Internal(anyhow::anyhow!(
                "sealing a secret to show once: {e}"
            )));
        }
    };
    let secure = ctx.state.config.secure_cookies();
    let mut response = redirect_with(to, notice);
    let lifetime = time::Duration::milliseconds(LIFETIME_MS);
    set_cookie(
        &mut response,
        SiteCookie::Once.name(secure),
        secure,
        sealed,
        Some(lifetime),
    );
    response
}

/// The sealed cookie a request carries, if any (opened by [`open`];
/// [`PageCtx::render`] clears it).
pub(super) fn read(jar: &CookieJar, secure: bool) -> Option<String> {
    jar.get(SiteCookie::Once.name(secure))
        .map(|c| c.value().to_string())
}

/// What `sealed` hands to `page` for the person signed in: nothing if it
/// was sealed for another person or page, by another key, or is too old.
pub(super) fn open(ctx: &PageCtx, sealed: &str, page: &str) -> Option<Shown> {
    unseal(
        &ctx.state.sealer,
        ctx.actor.account.id,
        sealed,
        page,
        now_ms(),
    )
}

fn unseal(sealer: &Sealer, account: i64, sealed: &str, page: &str, now: i64) -> Option<Shown> {
    let json = sealer.open(sealed, &bound_to(account, page)).ok()?;
    let sealed: Sealed = serde_json::from_str(json.expose()).ok()?;
    (sealed.until > now).then_some(sealed.shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_the_path_alone() {
        assert_eq!(page_of("/tree/nodes/7#notifications"), "/tree/nodes/7");
        assert_eq!(page_of("/account?x=1"), "/account");
        assert_eq!(page_of("/admin/users"), "/admin/users");
    }

    #[test]
    fn opens_only_for_its_person_and_page_and_not_too_late() {
        let sealer = crate::secret::SecretKey::for_tests().sealer();
        let token = Shown::Token {
            token: "rwy_x".into(),
        };
        let json = serde_json::to_string(&Sealed {
            shown: token.clone(),
            until: 1_000,
        })
        .unwrap();
        let sealed = sealer.seal(&json, &bound_to(3, "/account")).unwrap();
        assert_eq!(unseal(&sealer, 3, &sealed, "/account", 999), Some(token));
        assert_eq!(unseal(&sealer, 4, &sealed, "/account", 999), None);
        assert_eq!(unseal(&sealer, 3, &sealed, "/admin/users", 999), None);
        assert_eq!(unseal(&sealer, 3, &sealed, "/account", 1_000), None);
        assert_eq!(unseal(&sealer, 3, "v1:00", "/account", 999), None);
    }
}
