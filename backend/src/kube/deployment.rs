//! Reading a Deployment's rollout the way `kubectl rollout status` does,
//! and the pod-template arithmetic of `kubectl rollout undo`. Pure.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The annotation holding a Deployment's (and its ReplicaSets') revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller adds to each ReplicaSet's pods.
pub const TEMPLATE_HASH: &str = "pod-template-hash";

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// New pods are being created or old ones removed.
    Waiting(String),
    /// Every pod runs the new template; some are not available yet.
    Verifying(String),
    /// The new revision is fully rolled out and available.
    Complete,
    /// Kubernetes gave up: the progress deadline passed.
    Failed(String),
}

/// The revision annotation of an object.
pub fn revision(meta: &ObjectMeta) -> Option<String> {
    meta.annotations.as_ref()?.get(REVISION).cloned()
}

/// The image of `container` in the Deployment's pod template.
pub fn container_image<'a>(deployment: &'a Deployment, container: &str) -> Option<&'a str> {
    template_image(&deployment.spec.template, container)
}

/// The image of `container` in a pod template.
pub fn template_image<'a>(template: &'a PodTemplateSpec, container: &str) -> Option<&'a str> {
    template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.image.as_deref())
}

/// The names of the Deployment's containers, for messages.
pub fn container_names(deployment: &Deployment) -> Vec<String> {
    deployment
        .spec
        .template
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

/// The Deployment's selector as a label-selector string
/// (`matchLabels` only: what Deployments made by people use).
pub fn selector_string(deployment: &Deployment) -> String {
    let mut labels: Vec<String> = deployment
        .spec
        .selector
        .match_labels
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    labels.sort();
    labels.join(",")
}

/// The pod template of `rs` as a Deployment would carry it: without the
/// `pod-template-hash` label the controller added.
pub fn template_of(rs: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = rs.spec.template.clone()?;
    if let Some(meta) = template.metadata.as_mut()
        && let Some(labels) = meta.labels.as_mut()
    {
        labels.remove(TEMPLATE_HASH);
    }
    Some(template)
}

/// Whether two pod templates are the same once the hash label is ignored.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn normal(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut() {
            if let Some(labels) = meta.labels.as_mut() {
                labels.remove(TEMPLATE_HASH);
                if labels.is_empty() {
                    meta.labels = None;
                }
            }
            if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
                meta.annotations = None;
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    }
    normal(a) == normal(b)
}

/// Why `live` is not the object of uid `uid` (it was deleted and created
/// again under the same name), if it is not: a stage follows and writes
/// one object only.
pub fn replaced(uid: Option<&str>, live: &Deployment) -> Option<String> {
    let now = live.metadata.uid.as_deref();
    match (uid, now) {
        (Some(was), Some(now)) if was != now => Some(format!(
            "the Deployment was replaced: it was deleted and created again (uid {was} is now {now}); \
             this stage's rollout cannot be followed on another object"
        )),
        _ => None,
    }
}

/// Kubernetes' default `spec.progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// How long a deploy or rollback of `deployment` may run in all (its
/// overall deadline), in milliseconds: the stage's own setting in minutes,
/// else twice the Deployment's progress deadline.
pub fn overall_deadline_ms(deployment: &Deployment, minutes: Option<i64>) -> i64 {
    match minutes {
        Some(m) if m > 0 => m * 60_000,
        _ => {
            let progress = deployment
                .spec
                .progress_deadline_seconds
                .filter(|s| *s > 0)
                .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
            2 * i64::from(progress) * 1000
        }
    }
}

/// The Deployment says its last rollout passed its progress deadline.
pub fn past_progress_deadline(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
}

/// The Deployment wants no pods at all.
pub fn scaled_to_zero(deployment: &Deployment) -> bool {
    deployment.spec.replicas == Some(0)
}

/// The template a deploy of `image` into `container` left: `replaced`
/// with that one image changed.
pub fn with_image(replaced: &PodTemplateSpec, container: &str, image: &str) -> PodTemplateSpec {
    let mut ours = replaced.clone();
    if let Some(c) = ours
        .spec
        .as_mut()
        .and_then(|s| s.containers.iter_mut().find(|c| c.name == container))
    {
        c.image = Some(image.to_string());
    }
    ours
}

/// Why a rollback of `name`'s `container` must not run on `live`, if it
/// must not (the rule of rollbacks): our container must still run
/// `deployed` (the image the stage deployed; else a later deploy would be
/// undone), and unless the whole template is restored, nothing else in the
/// template may differ from what the deploy left (`replaced` with our
/// image), or the rollback would keep or lose others' changes unseen.
pub fn rollback_refusal(
    name: &str,
    replaced: Option<&PodTemplateSpec>,
    container: &str,
    deployed: &str,
    live: &Deployment,
    whole_template: bool,
) -> Option<String> {
    match container_image(live, container) {
        None => {
            return Some(format!(
                "{name}: container {container} is gone (renamed or removed; the Deployment has {}); \
                 not rolling back over a later change",
                container_names(live).join(", ")
            ));
        }
        Some(now) if now != deployed => {
            return Some(format!(
                "{name} now runs {now}, not {deployed} that this stage deployed; not rolling back \
                 over a later change"
            ));
        }
        Some(_) => {}
    }
    if whole_template {
        return None;
    }
    let ours = with_image(replaced?, container, deployed);
    let changes = template_changes(&ours, &live.spec.template);
    (!changes.is_empty()).then(|| {
        format!(
            "{name} was changed by someone else since this stage deployed: {}. A rollback \
             restores only this stage's image, so it would keep those changes unseen; an owner \
             may restore the whole pod template anyway",
            changes.join("; ")
        )
    })
}

/// Most changes a message lists before it says how many more there are.
const CHANGES_LISTED: usize = 8;

/// How `live` differs from `expected` (pod templates), for people: one
/// entry per changed field, lists of named things (containers, env,
/// ports, volumes) matched by name; images and other short scalars are
/// shown from → to, other values (env values may be secrets) only named.
/// Empty when they are the same once the `pod-template-hash` label is
/// ignored.
pub fn template_changes(expected: &PodTemplateSpec, live: &PodTemplateSpec) -> Vec<String> {
    fn normal(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(TEMPLATE_HASH);
        }
        serde_json::to_value(t).unwrap_or_default()
    }
    let mut changes = Vec::new();
    diff("", &normal(expected), &normal(live), &mut changes);
    if changes.len() > CHANGES_LISTED {
        let more = changes.len() - CHANGES_LISTED;
        changes.truncate(CHANGES_LISTED);
        changes.push(format!("and {more} more"));
    }
    changes
}

fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if a == b || (empty(a) && empty(b)) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    &child,
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        // A list of named things on one side only: each one added or removed.
        (Value::Null, Value::Array(y)) if named(y) => diff(path, &Value::Array(vec![]), b, out),
        (Value::Array(x), Value::Null) if named(x) => diff(path, a, &Value::Array(vec![]), out),
        (Value::Array(x), Value::Array(y))
            if (named(x) || x.is_empty()) && (named(y) || y.is_empty()) =>
        {
            let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
            let names: Vec<String> = x.iter().chain(y.iter()).map(name).collect();
            let mut seen = std::collections::HashSet::new();
            for n in names.into_iter().filter(|n| seen.insert(n.clone())) {
                let find = |list: &[Value]| {
                    list.iter()
                        .find(|v| name(v) == n)
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                let (old, new) = (find(x), find(y));
                let child = format!("{path}[{n}]");
                match (old.is_null(), new.is_null()) {
                    (false, true) => out.push(format!("{child} removed")),
                    (true, false) => out.push(format!("{child} added")),
                    _ => diff(&child, &old, &new, out),
                }
            }
        }
        _ => {
            let short = |v: &Value| match v {
                Value::String(s) if s.len() <= 120 && !path.contains(".env[") => {
                    Some(format!("{s:?}"))
                }
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Null => Some("(unset)".into()),
                _ => None,
            };
            match (short(a), short(b)) {
                (Some(x), Some(y)) => out.push(format!("{path}: {x} → {y}")),
                _ => out.push(format!("{path} changed")),
            }
        }
    }
}

/// A list of objects that all have a name (containers, env, volumes, …).
fn named(list: &[serde_json::Value]) -> bool {
    !list.is_empty() && list.iter().all(|v| v["name"].is_string())
}

/// Reads the rollout of a Deployment.
pub fn evaluate(deployment: &Deployment) -> Progress {
    let name = deployment.metadata.name.as_deref().unwrap_or("deployment");
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = deployment.status.as_ref() else {
        return Progress::Waiting("waiting for the Deployment controller".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("waiting for the Deployment controller to see the change".into());
    }
    if let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Progress::Failed(format!(
            "{name} exceeded its progress deadline{}",
            condition
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    let wanted = deployment.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        return Progress::Waiting(format!("{updated} of {wanted} new replicas updated"));
    }
    if replicas > updated {
        return Progress::Waiting(format!(
            "{} old replica{} pending termination",
            replicas - updated,
            if replicas - updated == 1 { "" } else { "s" }
        ));
    }
    if available < updated {
        return Progress::Verifying(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Progress::Complete
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};

    fn deployment(generation: i64, observed: i64, wanted: i32, status: [i32; 3]) -> Deployment {
        let [replicas, updated, available] = status;
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: Some(wanted),
                ..DeploymentSpec::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
        }
    }

    #[test]
    fn reads_a_rollout_like_kubectl() {
        assert!(matches!(
            evaluate(&deployment(2, 1, 3, [3, 3, 3])),
            Progress::Waiting(_)
        ));
        assert_eq!(
            evaluate(&deployment(2, 2, 3, [4, 1, 3])),
            Progress::Waiting("1 of 3 new replicas updated".into())
        );
        assert_eq!(
            evaluate(&deployment(2, 2, 3, [4, 3, 3])),
            Progress::Waiting("1 old replica pending termination".into())
        );
        assert_eq!(
            evaluate(&deployment(2, 2, 3, [3, 3, 2])),
            Progress::Verifying("2 of 3 updated replicas available".into())
        );
        assert_eq!(
            evaluate(&deployment(2, 2, 3, [3, 3, 3])),
            Progress::Complete
        );
    }

    #[test]
    fn a_passed_deadline_fails_the_rollout() {
        let mut d = deployment(2, 2, 3, [4, 1, 3]);
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: Some("Progressing".into()),
            status: Some("False".into()),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet \"web-abc\" has timed out progressing.".into()),
            ..DeploymentCondition::default()
        }]);
        match evaluate(&d) {
            Progress::Failed(m) => {
                assert!(m.contains("progress deadline") && m.contains("timed out"))
            }
            other => panic!("{other:?}"),
        }
    }

    fn template(json: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn template_changes_name_what_someone_else_changed() {
        let replaced = template(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "app", "image": "shop/web:1", "env": [{"name": "MODE", "value": "a"}]},
                {"name": "proxy", "image": "envoy:1.0"}
            ]}
        }));
        let ours = with_image(&replaced, "app", "shop/web:2");
        assert!(template_changes(&ours, &ours).is_empty());
        // Only the image we set differs from what was replaced.
        assert_eq!(
            template_changes(&replaced, &ours),
            vec![r#"spec.containers[app].image: "shop/web:1" → "shop/web:2""#]
        );
        let mut live = ours.clone();
        let spec = live.spec.as_mut().unwrap();
        spec.containers[1].image = Some("envoy:1.1".into());
        spec.containers[0].env.as_mut().unwrap()[0].value = Some("secret-b".into());
        live.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_HASH.into(), "abc".into());
        let changes = template_changes(&ours, &live);
        assert_eq!(
            changes,
            vec![
                "spec.containers[app].env[MODE].value changed".to_string(),
                r#"spec.containers[proxy].image: "envoy:1.0" → "envoy:1.1""#.to_string(),
            ],
            "env values are named, never shown; the hash label is ignored"
        );
        assert!(!changes.concat().contains("secret-b"));
        let mut renamed = ours.clone();
        renamed.spec.as_mut().unwrap().containers[0].name = "main".into();
        assert_eq!(
            template_changes(&ours, &renamed),
            vec![
                "spec.containers[app] removed",
                "spec.containers[main] added"
            ]
        );
    }

    #[test]
    fn the_overall_deadline_is_the_setting_or_twice_the_progress_deadline() {
        let mut d = deployment(1, 1, 1, [1, 1, 1]);
        assert_eq!(overall_deadline_ms(&d, None), 1_200_000);
        d.spec.progress_deadline_seconds = Some(30);
        assert_eq!(overall_deadline_ms(&d, None), 60_000);
        assert_eq!(overall_deadline_ms(&d, Some(5)), 300_000);
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let mut a = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            ..PodTemplateSpec::default()
        };
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_HASH.into(), "abc".into());
        assert!(same_template(&a, &b));
        a.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "x".into());
        assert!(!same_template(&a, &b));
    }
}
