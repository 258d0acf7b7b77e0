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
