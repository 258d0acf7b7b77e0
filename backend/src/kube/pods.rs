//! What a stage's pods look like, read from Kubernetes objects: which
//! ReplicaSets stand for the new and the replaced version, a pod as a table
//! row, which container's log to show. Pure functions over k8s-openapi
//! types; the pages fetch the objects and render the result.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

use super::deployment::{self, TEMPLATE_HASH};

/// One pod as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    pub name: String,
    pub phase: String,
    /// `ready/total` containers.
    pub ready: String,
    pub all_ready: bool,
    pub restarts: i32,
    /// `42s`, `5m`, `3h`, `2d` like kubectl.
    pub age: String,
    pub image: String,
}

/// Which version a ReplicaSet runs for a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetRole {
    /// The work order's target image.
    New,
    /// The image the stage replaced.
    Old,
}

impl SetRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SetRole::New => "new",
            SetRole::Old => "old",
        }
    }
}

/// The ReplicaSet's revision number (0 when it has none).
fn revision_number(rs: &ReplicaSet) -> i64 {
    deployment::revision(&rs.metadata)
        .and_then(|r| r.parse::<i64>().ok())
        .unwrap_or(0)
}

/// The image `container` runs in a ReplicaSet's template (`?` if none).
pub fn image_of(rs: &ReplicaSet, container: &str) -> String {
    rs.spec
        .template
        .as_ref()
        .and_then(|t| deployment::template_image(t, container))
        .unwrap_or("?")
        .to_string()
}

/// The ReplicaSets to show for a stage: the newest running `target_image`,
/// and the newest running `replaced_image` (by image, since a rollback
/// moves the replaced version's revision on). One set is shown once, as
/// `New`, when both images are the same.
pub fn pick_replica_sets<'a>(
    sets: &'a [ReplicaSet],
    container: &str,
    target_image: &str,
    replaced_image: Option<&str>,
) -> Vec<(SetRole, &'a ReplicaSet)> {
    let newest_with = |image: &str| {
        sets.iter()
            .filter(|rs| image_of(rs, container) == image)
            .max_by_key(|rs| revision_number(rs))
    };
    let mut picked: Vec<(SetRole, &ReplicaSet)> = Vec::new();
    let candidates = [
        (SetRole::New, newest_with(target_image)),
        (SetRole::Old, replaced_image.and_then(newest_with)),
    ];
    for (role, rs) in candidates {
        let Some(rs) = rs else { continue };
        if picked
            .iter()
            .any(|(_, r)| r.metadata.name == rs.metadata.name)
        {
            continue;
        }
        picked.push((role, rs));
    }
    picked
}

/// The label selector of a ReplicaSet's pods under `deployment`.
pub fn pod_selector(deployment: &Deployment, rs: &ReplicaSet) -> String {
    let hash = rs
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(TEMPLATE_HASH))
        .cloned()
        .unwrap_or_default();
    format!(
        "{},{TEMPLATE_HASH}={hash}",
        deployment::selector_string(deployment)
    )
}

/// Whether `pod` carries every label of the Deployment's selector.
pub fn belongs_to(pod: &Pod, deployment: &Deployment) -> bool {
    let wanted = deployment
        .spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A pod as a row, its age counted to `now_ms` (unix milliseconds).
pub fn pod_row(pod: &Pod, now_ms: i64) -> PodRow {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let total = pod.spec.as_ref().map(|s| s.containers.len()).unwrap_or(0);
    let ready = statuses.iter().filter(|c| c.ready).count();
    let age = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| age((now_ms - t.0.as_millisecond()).max(0)))
        .unwrap_or_default();
    PodRow {
        name: pod.metadata.name.clone().unwrap_or_default(),
        // Being deleted shows as kubectl shows it.
        phase: if pod.metadata.deletion_timestamp.is_some() {
            "Terminating".into()
        } else {
            pod.status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into())
        },
        ready: format!("{ready}/{total}"),
        all_ready: total > 0 && ready == total,
        restarts: statuses.iter().map(|c| c.restart_count).sum(),
        age,
        image: pod
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| c.image.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
    }
}

/// `42s`, `5m`, `3h`, `2d` like kubectl.
pub fn age(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The pod's container names and the one whose log to show: `asked`, or
/// else `default` (the stage's container) when the pod has it, or else the
/// first. A name the pod does not have is refused with a message.
pub fn pick_container(
    pod: &Pod,
    asked: &str,
    default: &str,
) -> Result<(Vec<String>, String), String> {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let chosen = if asked.is_empty() {
        if names.iter().any(|n| n == default) {
            default.to_string()
        } else {
            names.first().cloned().unwrap_or_default()
        }
    } else {
        asked.to_string()
    };
    if !names.contains(&chosen) {
        return Err(format!(
            "pod has no container {chosen} (it has {})",
            names.join(", ")
        ));
    }
    Ok((names, chosen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replica_set(name: &str, revision: &str, image: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {"app": "web", "pod-template-hash": format!("h-{name}")},
                "annotations": {"deployment.kubernetes.io/revision": revision},
            },
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "app", "image": image},
                    {"name": "sidecar", "image": "proxy:1"},
                ]}},
            },
        }))
        .unwrap()
    }

    fn deployment() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}},
            },
        }))
        .unwrap()
    }

    fn pod(labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-abc",
                "labels": labels,
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"containers": [
                {"name": "app", "image": "web:2"},
                {"name": "sidecar", "image": "proxy:1"},
            ]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "app", "ready": true, "restartCount": 2, "image": "web:2", "imageID": "", "started": true},
                    {"name": "sidecar", "ready": false, "restartCount": 1, "image": "proxy:1", "imageID": "", "started": true},
                ],
            },
        }))
        .unwrap()
    }

    fn names(picked: &[(SetRole, &ReplicaSet)]) -> Vec<(SetRole, String)> {
        picked
            .iter()
            .map(|(role, rs)| (*role, rs.metadata.name.clone().unwrap()))
            .collect()
    }

    #[test]
    fn the_newest_set_of_each_image_is_picked_by_revision() {
        let sets = [
            replica_set("web-1", "1", "web:1"),
            replica_set("web-2", "2", "web:2"),
            // A rollback brought web:1 back as revision 3, then web:2 again
            // as revision 4.
            replica_set("web-3", "3", "web:1"),
            replica_set("web-4", "10", "web:2"),
        ];
        let picked = pick_replica_sets(&sets, "app", "web:2", Some("web:1"));
        assert_eq!(
            names(&picked),
            [
                (SetRole::New, "web-4".to_string()),
                (SetRole::Old, "web-3".to_string())
            ],
            "revisions compare as numbers, not text"
        );
    }

    #[test]
    fn a_set_is_shown_once_and_missing_images_are_left_out() {
        let sets = [replica_set("web-2", "2", "web:2")];
        assert_eq!(
            names(&pick_replica_sets(&sets, "app", "web:2", Some("web:2"))),
            [(SetRole::New, "web-2".to_string())]
        );
        assert_eq!(
            names(&pick_replica_sets(&sets, "app", "web:3", None)),
            Vec::new()
        );
        assert_eq!(
            names(&pick_replica_sets(&sets, "app", "web:3", Some("web:2"))),
            [(SetRole::Old, "web-2".to_string())]
        );
        assert_eq!(image_of(&sets[0], "sidecar"), "proxy:1");
        assert_eq!(image_of(&sets[0], "nope"), "?");
    }

    #[test]
    fn a_sets_pods_are_selected_by_the_deployment_selector_and_its_hash() {
        let rs = replica_set("web-2", "2", "web:2");
        assert_eq!(
            pod_selector(&deployment(), &rs),
            "app=web,pod-template-hash=h-web-2"
        );
    }

    #[test]
    fn a_pod_row_counts_ready_containers_restarts_and_age() {
        let created = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let row = pod_row(&pod(json!({"app": "web"})), created + 3 * 3_600_000);
        assert_eq!(
            row,
            PodRow {
                name: "web-abc".into(),
                phase: "Running".into(),
                ready: "1/2".into(),
                all_ready: false,
                restarts: 3,
                age: "3h".into(),
                image: "web:2, proxy:1".into(),
            }
        );
        let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        let row = pod_row(&bare, created);
        assert_eq!(
            (row.phase.as_str(), row.ready.as_str(), row.all_ready),
            ("Unknown", "0/0", false)
        );
        let mut leaving = pod(json!({"app": "web"}));
        leaving.metadata.deletion_timestamp = leaving.metadata.creation_timestamp.clone();
        assert_eq!(pod_row(&leaving, created).phase, "Terminating");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(5_000), "5s");
        assert_eq!(age(600_000), "10m");
        assert_eq!(age(3 * 3_600_000), "3h");
        assert_eq!(age(3 * 86_400_000), "3d");
    }

    #[test]
    fn a_pod_belongs_when_it_carries_the_selector_labels() {
        assert!(belongs_to(
            &pod(json!({"app": "web", "x": "y"})),
            &deployment()
        ));
        assert!(!belongs_to(&pod(json!({"app": "other"})), &deployment()));
        assert!(!belongs_to(&pod(json!({})), &deployment()));
    }

    #[test]
    fn the_container_is_the_asked_one_else_the_stages_else_the_first() {
        let p = pod(json!({}));
        let all = vec!["app".to_string(), "sidecar".to_string()];
        assert_eq!(
            pick_container(&p, "", "app"),
            Ok((all.clone(), "app".into()))
        );
        assert_eq!(
            pick_container(&p, "", "gone"),
            Ok((all.clone(), "app".into()))
        );
        assert_eq!(
            pick_container(&p, "sidecar", "app"),
            Ok((all, "sidecar".into()))
        );
        let err = pick_container(&p, "db", "app").unwrap_err();
        assert!(
            err.contains("no container db") && err.contains("app, sidecar"),
            "{err}"
        );
    }
}
