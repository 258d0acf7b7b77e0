//! GitLab through its REST API (the `gitlab` crate, async): the connection
//! settings (URL and a token sealed at rest), project look-up by id or path,
//! and a project's tags, newest first, following every page.
//!
//! Every call has a deadline; any GitLab failure is a 502 whose message
//! names GitLab and the status it answered with.

pub mod id_tokens;

use std::time::Duration;

use gitlab::api::projects::repository::commits::Commits;
use gitlab::api::projects::repository::tags::{Tags, TagsOrderBy};
use gitlab::api::{self, AsyncQuery, Pagination, common::SortOrder};
use gitlab::{AsyncGitlab, GitlabBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use url::Url;
use utoipa::ToSchema;

use crate::db::audit::{self, AuditActor, Change};
use crate::db::{Db, now_ms};
use crate::domain::text::check_single_line;
use crate::error::{Error, Result};
use crate::secret::{Sealer, Secret, sha256_hex};

const URL_KEY: &str = "gitlab.url";
const TOKEN_KEY: &str = "gitlab.token";

/// A tag of a project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub message: Option<String>,
    /// When the tag was made (RFC 3339), when GitLab says.
    #[serde(default)]
    pub created_at: Option<String>,
    pub commit: Option<TagCommit>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TagCommit {
    pub id: String,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A commit, as a list of changes shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Commit {
    pub id: String,
    pub short_id: String,
    pub title: String,
    #[serde(default)]
    pub author_name: Option<String>,
    /// When it was made (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A project as GitLab describes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: u64,
    pub path_with_namespace: String,
    #[serde(default)]
    pub web_url: Option<String>,
}

/// The stored connection, without the token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GitlabSettings {
    pub url: Option<String>,
    /// Whether a token is stored (it is never shown).
    pub token_set: bool,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
}

/// The GitLab client of this server: settings are read from the database
/// and the built client is kept until they change.
pub struct GitlabClient {
    timeout: Duration,
    cached: Mutex<Option<(String, AsyncGitlab)>>,
    /// GitLab CI ID tokens: their verifier and GitLab's keys.
    pub id_tokens: id_tokens::IdTokenVerifier,
}

fn upstream(what: &str, err: impl std::fmt::Display) -> Error {
    Error::Upstream(format!("GitLab failed while {what}: {err}"))
}

fn api_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    err: api::ApiError<E>,
) -> Error {
    use api::ApiError::*;
    match &err {
        GitlabService { status, .. }
        | GitlabWithStatus { status, .. }
        | GitlabObjectWithStatus { status, .. }
        | GitlabUnrecognizedWithStatus { status, .. } => {
            Error::Upstream(format!("GitLab answered {status} while {what}"))
        }
        _ => upstream(what, err),
    }
}

/// Checks a GitLab base URL and splits it into the host part the client
/// wants (host, port and path, no scheme) and whether it is plain http.
fn host_of(url: &str) -> Result<(String, bool)> {
    let parsed =
        Url::parse(url.trim()).map_err(|e| Error::validation("url", format!("not a URL: {e}")))?;
    let insecure = match parsed.scheme() {
        "https" => false,
        "http" => true,
        other => {
            return Err(Error::validation(
                "url",
                format!("GitLab URL must be http or https, not {other}"),
            ));
        }
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| Error::validation("url", "the GitLab URL has no host"))?;
    let mut out = host.to_string();
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    let path = parsed.path().trim_end_matches('/');
    out.push_str(path);
    Ok((out, insecure))
}

impl GitlabClient {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            cached: Mutex::new(None),
            id_tokens: id_tokens::IdTokenVerifier::new(timeout),
        }
    }

    async fn with_deadline<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let answer = tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Upstream(format!(
                    "GitLab did not answer within {} s while {what}",
                    self.timeout.as_secs()
                )))
            });
        if let Err(e) = &answer {
            // In the caller's `gitlab` span, which names the project.
            tracing::info!(error = %e, "GitLab call failed");
        }
        answer
    }

    /// The stored settings (never the token).
    pub async fn settings(db: &Db) -> Result<GitlabSettings> {
        let rows = sqlx::query_as::<_, (String, String, i64, String)>(
            "SELECT key, value, updated_at, updated_by FROM settings WHERE key = $1 OR key = $2",
        )
        .bind(URL_KEY)
        .bind(TOKEN_KEY)
        .fetch_all(&db.pool)
        .await?;
        let url = rows.iter().find(|r| r.0 == URL_KEY);
        let token = rows.iter().find(|r| r.0 == TOKEN_KEY);
        let latest = rows.iter().max_by_key(|r| r.2);
        Ok(GitlabSettings {
            url: url.map(|r| r.1.clone()),
            token_set: token.is_some(),
            updated_at: latest.map(|r| r.2),
            updated_by: latest.map(|r| r.3.clone()),
        })
    }

    /// Stores the connection (the token sealed) in one transaction.
    pub async fn save_settings(
        db: &Db,
        sealer: &Sealer,
        url: &str,
        token: Option<&Secret<String>>,
        who: &AuditActor,
    ) -> Result<GitlabSettings> {
        // `Url::parse` drops tabs and line breaks silently: refuse them
        // before, so what is stored is what was parsed.
        check_single_line("the GitLab URL", url).map_err(|m| Error::validation("url", m))?;
        host_of(url)?;
        let url = url.trim().trim_end_matches('/').to_string();
        let now = now_ms();
        let mut tx = db.begin_write().await?;
        let mut writes = vec![(URL_KEY, url.clone())];
        if let Some(token) = token {
            if token.expose().trim().is_empty() {
                return Err(Error::validation("token", "the token is empty"));
            }
            check_single_line("the token", token.expose())
                .map_err(|m| Error::validation("token", m))?;
            let sealed = sealer
                .seal(token.expose().trim(), &format!("settings:{TOKEN_KEY}"))
                .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
            writes.push((TOKEN_KEY, sealed));
        }
        for (key, value) in writes {
            sqlx::query("DELETE FROM settings WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(value)
            .bind(now)
            .bind(&who.name)
            .execute(&mut *tx)
            .await?;
        }
        audit::record(
            &mut tx,
            who,
            Change {
                action: "settings.gitlab",
                target_type: "settings",
                target_id: None,
                summary: format!(
                    "GitLab connection set to {url}{}",
                    if token.is_some() {
                        " with a new token"
                    } else {
                        ""
                    }
                ),
                before: None,
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Self::settings(db).await
    }

    /// The client for the stored settings, built (which checks the token
    /// with GitLab) only when they changed.
    async fn client(&self, db: &Db, sealer: &Sealer) -> Result<AsyncGitlab> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT key, value FROM settings WHERE key = $1 OR key = $2",
        )
        .bind(URL_KEY)
        .bind(TOKEN_KEY)
        .fetch_all(&db.pool)
        .await?;
        let url = rows.iter().find(|r| r.0 == URL_KEY).map(|r| r.1.clone());
        let sealed = rows.iter().find(|r| r.0 == TOKEN_KEY).map(|r| r.1.clone());
        let (Some(url), Some(sealed)) = (url, sealed) else {
            return Err(Error::Conflict(
                "GitLab is not connected yet: an admin sets its URL and token under Settings"
                    .into(),
            ));
        };
        let fingerprint = sha256_hex(&format!("{url}\n{sealed}"));
        let mut cached = self.cached.lock().await;
        if let Some((fp, client)) = cached.as_ref()
            && *fp == fingerprint
        {
            return Ok(client.clone());
        }
        let token = sealer
            .open(&sealed, &format!("settings:{TOKEN_KEY}"))
            .map_err(|e| Error::Internal(anyhow::anyhow!("GitLab token: {e}")))?;
        let (host, insecure) = host_of(&url)?;
        let mut builder = GitlabBuilder::new(host, token.expose().clone());
        if insecure {
            builder.insecure();
        }
        let client = self
            .with_deadline("connecting", async {
                builder.build_async().await.map_err(|e| match e {
                    gitlab::GitlabError::Http { status } => Error::Upstream(format!(
                        "GitLab answered {status} while connecting (check the URL and token)"
                    )),
                    gitlab::GitlabError::Api { source } => {
                        api_error("connecting (check the URL and token)", source)
                    }
                    other => upstream("connecting", other),
                })
            })
            .await?;
        *cached = Some((fingerprint, client.clone()));
        Ok(client)
    }

    /// Checks the stored connection.
    #[tracing::instrument(name = "gitlab", skip_all, fields(call = "connect"))]
    pub async fn test_connection(&self, db: &Db, sealer: &Sealer) -> Result<()> {
        self.client(db, sealer).await.map(|_| ())
    }

    /// A project by numeric id or `group/path`.
    #[tracing::instrument(name = "gitlab", skip_all, fields(call = "project", project = %project))]
    pub async fn project(&self, db: &Db, sealer: &Sealer, project: &str) -> Result<Project> {
        let client = self.client(db, sealer).await?;
        let what = format!("looking up project {project}");
        self.with_deadline(&what, async {
            let endpoint = api::projects::Project::builder()
                .project(project_ref(project))
                .build()
                .map_err(|e| Error::validation("gitlab_project", e.to_string()))?;
            endpoint
                .query_async(&client)
                .await
                .map_err(|e| api_error(&what, e))
        })
        .await
    }

    /// Every tag of a project, newest first.
    #[tracing::instrument(name = "gitlab", skip_all, fields(call = "tags", project = %project))]
    pub async fn tags(&self, db: &Db, sealer: &Sealer, project: &str) -> Result<Vec<Tag>> {
        let client = self.client(db, sealer).await?;
        let what = format!("listing the tags of {project}");
        self.with_deadline(&what, async {
            let endpoint = Tags::builder()
                .project(project_ref(project))
                .order_by(TagsOrderBy::Updated)
                .sort(SortOrder::Descending)
                .build()
                .map_err(|e| Error::validation("gitlab_project", e.to_string()))?;
            api::paged(endpoint, Pagination::All)
                .query_async(&client)
                .await
                .map_err(|e| api_error(&what, e))
        })
        .await
    }
}

impl GitlabClient {
    /// The commits `to` has and `from` lacks (GitLab's `from..to`), newest
    /// first: at most `limit`, and whether there are more. Read a page at
    /// a time from the commits list with a revision range, which carries
    /// no diffs (the compare endpoint returns every diff with them).
    #[tracing::instrument(name = "gitlab", skip_all, fields(call = "commits", project = %project))]
    pub async fn commits_between(
        &self,
        db: &Db,
        sealer: &Sealer,
        project: &str,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<(Vec<Commit>, bool)> {
        for reference in [from, to] {
            check_ref(reference)?;
        }
        let client = self.client(db, sealer).await?;
        let what = format!("listing the commits of {project} from {from} to {to}");
        let range = format!("{from}..{to}");
        let mut commits: Vec<Commit> = self
            .with_deadline(&what, async {
                let endpoint = Commits::builder()
                    .project(project_ref(project))
                    .ref_name(range.as_str())
                    .build()
                    .map_err(|e| Error::validation("gitlab_project", e.to_string()))?;
                api::paged(endpoint, Pagination::Limit(limit + 1))
                    .query_async(&client)
                    .await
                    .map_err(|e| api_error(&what, e))
            })
            .await?;
        let more = commits.len() > limit;
        commits.truncate(limit);
        Ok((commits, more))
    }
}

/// A tag or branch name as git allows it, checked before it goes into a
/// revision range: no `..`, no spaces or control characters, not empty.
fn check_ref(reference: &str) -> Result<()> {
    let bad = reference.is_empty()
        || reference.len() > 255
        || reference.contains("..")
        || reference.starts_with('-')
        || reference
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        return Err(Error::validation(
            "version",
            format!("{reference:?} is not a tag name"),
        ));
    }
    Ok(())
}

fn project_ref(project: &str) -> gitlab::api::common::NameOrId<'_> {
    match project.parse::<u64>() {
        Ok(id) => id.into(),
        Err(_) => project.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_hosts() {
        assert_eq!(
            host_of("https://gitlab.example.com").unwrap(),
            ("gitlab.example.com".into(), false)
        );
        assert_eq!(
            host_of("http://127.0.0.1:8929/").unwrap(),
            ("127.0.0.1:8929".into(), true)
        );
        assert_eq!(
            host_of("https://example.com/gitlab/").unwrap(),
            ("example.com/gitlab".into(), false)
        );
        assert!(host_of("ftp://x").is_err());
        assert!(host_of("not a url").is_err());
    }

    #[test]
    fn only_plain_ref_names_go_into_a_range() {
        for good in ["v1.2.0", "release/2026-12", "1.0.0-rc.1"] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in ["", "a..b", "-x", "v1 2", "v1\n", "v1:2", "v~1", "a^", "x*"] {
            assert!(check_ref(bad).is_err(), "{bad:?}");
        }
    }
}
