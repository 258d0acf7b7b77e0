//! What an order changes, for the people deciding on it: the version each
//! stage runs now (read from the held Deployment watch) or, once a stage
//! deployed, the one it replaced; GitLab's compare link and the commits in
//! between. GitLab gets a short deadline here: when it is slow the page
//! keeps the link and says why the list is missing.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use url::Url;

use crate::app::AppState;
use crate::db::release_items;
use crate::db::work_order_views::WorkOrderDetail;
use crate::domain::work_order::StageStatus;
use crate::error::{Error, Result};
use crate::gitlab::{Commit, GitlabClient};
use crate::kube::live::{LiveRead, LiveStatus};

use super::live::{shown_image, stages_live, tag_of};

/// How long the commits may take before the page shows the link alone.
const DEADLINE: Duration = Duration::from_secs(3);

/// How many commits a comparison lists.
pub const MAX_COMMITS: usize = 50;

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageFrom {
    pub position: i64,
    pub name: String,
    /// The tag (or, when not of the item's repository, the whole image)
    /// the stage runs now, or ran before the order deployed it.
    pub from: Option<String>,
    /// `from` as a tag of the item's repository (only these compare).
    pub tag: Option<String>,
    /// `from` is what the stage replaced (it deployed), not what runs now.
    pub replaced: bool,
    /// Why `from` is not known.
    pub unknown: Option<String>,
}

/// The commits between two versions.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub from: String,
    pub to: String,
    /// GitLab's compare page.
    pub url: Option<String>,
    /// GitLab's pages of the two tags.
    pub from_url: Option<String>,
    pub to_url: Option<String>,
    /// The commits `to` adds over `from` (or, going back, the ones it
    /// takes away), newest first, and whether there are more than shown;
    /// or why they could not be read.
    pub commits: std::result::Result<(Vec<Commit>, bool), String>,
    /// `to` is older than `from`: the commits listed go away.
    pub backwards: bool,
}

/// The image repository of an order: its image without `:version`.
fn repository(d: &WorkOrderDetail) -> &str {
    d.order
        .image
        .strip_suffix(&format!(":{}", d.order.version))
        .unwrap_or(&d.order.image)
}

/// What each stage of `d` starts from: the image it replaced when it
/// deployed, else what its Deployment runs now (from the held watch).
pub fn stage_froms(state: &AppState, d: &WorkOrderDetail) -> Vec<StageFrom> {
    froms(d, &stages_live(state, &d.stage_runs))
}

/// [`stage_froms`] with the watches already read (`live`, by app id).
pub fn froms(d: &WorkOrderDetail, live: &HashMap<i64, LiveStatus>) -> Vec<StageFrom> {
    let repo = repository(d);
    d.stage_runs
        .iter()
        .map(|s| {
            let replaced = (s.status != StageStatus::Pending)
                .then(|| s.replaced_image.clone())
                .flatten();
            let (image, unknown) = match (&replaced, live.get(&s.app_id).map(|l| &l.read)) {
                (Some(image), _) => (Some(image.clone()), None),
                (None, Some(LiveRead::Found(dep))) => match &dep.image {
                    Some(image) => (Some(image.clone()), None),
                    None => (None, Some("its container is not in the Deployment".into())),
                },
                (None, Some(LiveRead::Missing)) => {
                    (None, Some("its Deployment is not in the cluster".into()))
                }
                (None, Some(LiveRead::Unknown(why))) => (None, Some(why.clone())),
                (None, None) => (None, Some("the app was deleted".into())),
            };
            StageFrom {
                position: s.position,
                name: s.name.clone(),
                replaced: replaced.is_some(),
                tag: image.as_deref().and_then(|i| tag_of(i, repo)),
                from: image.map(|i| shown_image(&i, repo)),
                unknown,
            }
        })
        .collect()
}

/// The page of GitLab project `project` (a path, or a numeric id, which
/// GitLab resolves at `/projects/<id>`) at `base`.
pub fn project_url(base: &str, project: &str) -> Option<String> {
    let mut url = Url::parse(base).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    {
        let mut segments = url.path_segments_mut().ok()?;
        segments.pop_if_empty();
        if project.parse::<u64>().is_ok() {
            segments.push("projects").push(project);
        } else {
            for part in project.split('/').filter(|p| !p.is_empty()) {
                if part == "." || part == ".." {
                    return None;
                }
                segments.push(part);
            }
        }
    }
    Some(url.to_string())
}

/// GitLab's page of tag `tag` of `project` (a path; `None` for a
/// numeric id, which has no such page) at `base`.
pub fn tag_url(base: &str, project: &str, tag: &str) -> Option<String> {
    if project.parse::<u64>().is_ok() {
        return None;
    }
    let mut url = Url::parse(&project_url(base, project)?).ok()?;
    url.path_segments_mut()
        .ok()?
        .push("-")
        .push("tags")
        .push(tag);
    Some(url.to_string())
}

/// GitLab's compare page of `project` (a path) at `base`.
pub fn compare_url(base: &str, project_path: &str, from: &str, to: &str) -> Option<String> {
    let mut url = Url::parse(&project_url(base, project_path)?).ok()?;
    url.path_segments_mut()
        .ok()?
        .push("-")
        .push("compare")
        .push(&format!("{from}...{to}"));
    Some(url.to_string())
}

/// The comparisons an order's page shows: one per distinct tag its stages
/// start from (other than the order's own), with the commits in between.
pub async fn comparisons(state: &AppState, d: &WorkOrderDetail) -> Result<Vec<Comparison>> {
    let froms = stage_froms(state, d);
    let to = d.order.version.clone();
    // Only tags of the item's repository can be compared.
    let tags: BTreeSet<String> = froms
        .iter()
        .filter_map(|s| s.tag.clone())
        .filter(|t| *t != to)
        .collect();
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    let item = release_items::get(&state.db.pool, d.order.release_item_id).await?;
    let base = GitlabClient::settings(&state.db).await?.url;
    // The project's path for the link (the item may name it by id).
    let path = match item.gitlab_project.parse::<u64>() {
        Err(_) => Ok(item.gitlab_project.clone()),
        Ok(_) => within(
            state
                .gitlab
                .project(&state.db, &state.sealer, &item.gitlab_project),
        )
        .await
        .map(|p| p.path_with_namespace),
    };
    let mut out = Vec::new();
    // Once GitLab failed to answer, the other comparisons do not wait for
    // it again: the page gets its links at most one deadline late.
    let mut unreachable: Option<String> = match &path {
        Err(e @ Error::Upstream(_)) => Some(e.public_message()),
        _ => None,
    };
    for from in tags {
        let (url, from_url, to_url) = match (&base, &path) {
            (Some(base), Ok(path)) => (
                compare_url(base, path, &from, &to),
                tag_url(base, path, &from),
                tag_url(base, path, &to),
            ),
            _ => (None, None, None),
        };
        let project = item.gitlab_project.as_str();
        let mut backwards = false;
        let commits = match unreachable.clone() {
            Some(why) => Err(why),
            None => {
                let mut commits = commits_within(state, project, &from, &to).await;
                if let Err(e @ Error::Upstream(_)) = &commits {
                    unreachable = Some(e.public_message());
                }
                if matches!(&commits, Ok((c, _)) if c.is_empty()) {
                    // Nothing new: perhaps the order goes back to an older tag.
                    let back = commits_within(state, project, &to, &from).await;
                    if matches!(&back, Ok((c, _)) if !c.is_empty()) {
                        backwards = true;
                        commits = back;
                    }
                }
                commits.map_err(|e| e.public_message())
            }
        };
        out.push(Comparison {
            from,
            to: to.clone(),
            url,
            from_url,
            to_url,
            commits,
            backwards,
        });
    }
    Ok(out)
}

/// The commits `to` has over `from`, within [`DEADLINE`].
async fn commits_within(
    state: &AppState,
    project: &str,
    from: &str,
    to: &str,
) -> Result<(Vec<Commit>, bool)> {
    within(
        state
            .gitlab
            .commits_between(&state.db, &state.sealer, project, from, to, MAX_COMMITS),
    )
    .await
}

/// `call` within [`DEADLINE`].
async fn within<T>(call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(DEADLINE, call)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Upstream(format!(
                "GitLab did not answer within {} s",
                DEADLINE.as_secs()
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compare_link_is_built_from_the_configured_gitlab() {
        assert_eq!(
            compare_url(
                "https://gitlab.example.com",
                "acme/shop/cart",
                "v1.0.0",
                "v1.1.0"
            )
            .unwrap(),
            "https://gitlab.example.com/acme/shop/cart/-/compare/v1.0.0...v1.1.0"
        );
        assert_eq!(
            compare_url("https://example.com/gitlab/", "g/p", "a", "b").unwrap(),
            "https://example.com/gitlab/g/p/-/compare/a...b"
        );
        // Hostile parts stay inside their segment.
        assert_eq!(
            compare_url("https://gl.example", "g/p", "a?x=1#y", "b").unwrap(),
            "https://gl.example/g/p/-/compare/a%3Fx=1%23y...b"
        );
        assert!(compare_url("https://gl.example", "g/../admin", "a", "b").is_none());
        assert!(compare_url("javascript:alert(1)", "g/p", "a", "b").is_none());
    }

    #[test]
    fn a_project_links_by_path_or_by_id() {
        assert_eq!(
            project_url("https://gl.example/", "acme/shop").unwrap(),
            "https://gl.example/acme/shop"
        );
        assert_eq!(
            project_url("https://gl.example", "42").unwrap(),
            "https://gl.example/projects/42"
        );
        assert!(project_url("https://gl.example", "a/../../x").is_none());
        assert!(project_url("file:///etc", "a").is_none());
        assert_eq!(
            tag_url("https://gl.example", "acme/shop", "v1.2.0").unwrap(),
            "https://gl.example/acme/shop/-/tags/v1.2.0"
        );
        assert!(tag_url("https://gl.example", "42", "v1").is_none());
    }
}
