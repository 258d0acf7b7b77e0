//! PersistentVolumeClaims, ClusterRoles, ClusterRoleBindings and
//! PodDisruptionBudgets — what an application's own install brings besides
//! its workload (Rollway's `deploy/kubernetes` does): their validation and
//! defaults, a claim bound at once by the simulated provisioner, and a
//! budget's status kept from the pods it selects, as the disruption
//! controller keeps it. RBAC objects are stored and served, never enforced:
//! the simulated cluster allows every request.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::kinds::Kind;
use super::kubelet::is_ready;
use super::selector::LabelQuery;
use super::store::{Key, Part, Store};

/// Validation failures: `(field path, message)`.
type Causes = Vec<(String, String)>;

/// The storage class claims without one get, as a cluster's default
/// StorageClass gives them.
pub const DEFAULT_STORAGE_CLASS: &str = "standard";

const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

pub fn check_claim(claim: &mut PersistentVolumeClaim, causes: &mut Causes) {
    let Some(spec) = claim.spec.as_mut() else {
        causes.push(("spec".into(), "Required value".into()));
        return;
    };
    spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.is_empty() {
        causes.push((
            "spec.accessModes".into(),
            "Required value: at least 1 access mode is required".into(),
        ));
    }
    for mode in modes.iter().filter(|m| !ACCESS_MODES.contains(&m.as_str())) {
        causes.push((
            "spec.accessModes".into(),
            format!(
                "Unsupported value: \"{mode}\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""
            ),
        ));
    }
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    if storage.is_none() {
        causes.push(("spec.resources[storage]".into(), "Required value".into()));
    }
}

/// A new claim bound to a volume of the simulated provisioner: named after
/// the claim's uid, of the size and modes asked, in the default class.
pub fn bind_claim(object: &mut Value) {
    let uid = object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let spec = &mut object["spec"];
    if spec["storageClassName"].as_str().is_none() {
        spec["storageClassName"] = DEFAULT_STORAGE_CLASS.into();
    }
    if spec["volumeName"].as_str().is_none_or(str::is_empty) {
        spec["volumeName"] = format!("pvc-{uid}").into();
    }
    let capacity = spec
        .pointer("/resources/requests/storage")
        .cloned()
        .unwrap_or(Value::Null);
    let modes = spec["accessModes"].clone();
    object["status"] = json!({
        "phase": "Bound",
        "accessModes": modes,
        "capacity": {"storage": capacity},
    });
}

fn check_rules(rules: &[k8s_openapi::api::rbac::v1::PolicyRule], causes: &mut Causes) {
    for (i, rule) in rules.iter().enumerate() {
        if rule.verbs.is_empty() {
            causes.push((
                format!("rules[{i}].verbs"),
                "Required value: verbs must contain at least one value".into(),
            ));
        }
        let resources = rule.resources.as_ref().is_some_and(|r| !r.is_empty());
        let urls = rule
            .non_resource_urls
            .as_ref()
            .is_some_and(|u| !u.is_empty());
        if resources && rule.api_groups.as_ref().is_none_or(Vec::is_empty) {
            causes.push((
                format!("rules[{i}].apiGroups"),
                "Required value: resource rules must supply at least one api group".into(),
            ));
        }
        if resources && urls {
            causes.push((
                format!("rules[{i}].nonResourceURLs"),
                "Invalid value: []string{...}: rules cannot apply to both regular resources and non-resource URLs".into(),
            ));
        }
        if !resources && !urls {
            causes.push((
                format!("rules[{i}].resources"),
                "Required value: resource rules must supply at least one resource or non-resource URL".into(),
            ));
        }
    }
}

pub fn check_cluster_role(role: &mut ClusterRole, causes: &mut Causes) {
    check_rules(role.rules.as_deref().unwrap_or_default(), causes);
}

pub fn check_cluster_role_binding(binding: &mut ClusterRoleBinding, causes: &mut Causes) {
    let role = &binding.role_ref;
    if role.kind != "ClusterRole" {
        causes.push((
            "roleRef.kind".into(),
            format!(
                "Unsupported value: \"{}\": supported values: \"ClusterRole\"",
                role.kind
            ),
        ));
    }
    if role.name.is_empty() {
        causes.push(("roleRef.name".into(), "Required value".into()));
    }
    let group = role.api_group.as_deref().unwrap_or_default();
    if group != "rbac.authorization.k8s.io" {
        causes.push((
            "roleRef.apiGroup".into(),
            format!(
                "Unsupported value: \"{group}\": supported values: \"rbac.authorization.k8s.io\""
            ),
        ));
    }
    for (i, subject) in binding.subjects.iter().flatten().enumerate() {
        if subject.name.is_empty() {
            causes.push((format!("subjects[{i}].name"), "Required value".into()));
        }
        match subject.kind.as_str() {
            "ServiceAccount" if subject.namespace.as_deref().is_none_or(str::is_empty) => {
                causes.push((format!("subjects[{i}].namespace"), "Required value".into()));
            }
            "ServiceAccount" | "User" | "Group" => {}
            other => causes.push((
                format!("subjects[{i}].kind"),
                format!(
                    "Unsupported value: \"{other}\": supported values: \"Group\", \"ServiceAccount\", \"User\""
                ),
            )),
        }
    }
}

pub fn check_budget(budget: &mut PodDisruptionBudget, causes: &mut Causes) {
    let spec = budget.spec.get_or_insert_default();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        causes.push((
            "spec".into(),
            "Invalid value: policy.PodDisruptionBudgetSpec{...}: minAvailable and maxUnavailable cannot be both set".into(),
        ));
    }
    for (field, value) in [
        ("minAvailable", &spec.min_available),
        ("maxUnavailable", &spec.max_unavailable),
    ] {
        let bad = match value {
            Some(IntOrString::Int(n)) => *n < 0,
            Some(IntOrString::String(s)) => percent(s).is_none(),
            None => false,
        };
        if bad {
            causes.push((
                format!("spec.{field}"),
                "Invalid value: must be a non-negative integer or a percentage up to 100%".into(),
            ));
        }
    }
}

/// `"25%"` → 25.
fn percent(text: &str) -> Option<u32> {
    text.strip_suffix('%')?
        .parse::<u32>()
        .ok()
        .filter(|p| *p <= 100)
}

/// `value` of `total`: a number as is, a percentage rounded up (as the
/// disruption controller scales both fields).
fn scaled(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let p = i64::from(percent(s).unwrap_or(0));
            let total = i64::from(total);
            i32::try_from((total * p + 99) / 100).unwrap_or(i32::MAX)
        }
    }
}

/// What a budget's status says of `pods` (those its selector picks, not
/// terminating): expected, healthy, desired, and the disruptions allowed.
fn budget_status(budget: &PodDisruptionBudget, pods: &[Pod]) -> Value {
    let spec = budget.spec.clone().unwrap_or_default();
    let expected = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let healthy = i32::try_from(pods.iter().filter(|p| is_ready(p)).count()).unwrap_or(i32::MAX);
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (_, Some(max)) => (expected - scaled(max, expected)).max(0),
        (Some(min), None) => scaled(min, expected),
        (None, None) => 0,
    };
    let allowed = (healthy - desired).max(0);
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    json!({
        "observedGeneration": budget.metadata.generation.unwrap_or(1),
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": status,
            "reason": reason,
            "message": "",
            "observedGeneration": budget.metadata.generation.unwrap_or(1),
        }],
    })
}

/// Recomputes the status of the budget `key` from its pods.
pub fn sync_budget(store: &mut Store, key: &Key) {
    let Some(stored) = store
        .get(Kind::PodDisruptionBudget, &key.0, &key.1)
        .cloned()
    else {
        return;
    };
    let Ok(budget) = serde_json::from_value::<PodDisruptionBudget>(stored.clone()) else {
        return;
    };
    let query = budget
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(LabelQuery::from_selector);
    let pods: Vec<Pod> = match &query {
        // A budget without a selector selects nothing.
        None => Vec::new(),
        Some(query) => store
            .list(Kind::Pod, Some(&key.0))
            .into_iter()
            .filter(|p| query.matches_object(p))
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .filter_map(|p| serde_json::from_value(p.clone()).ok())
            .collect(),
    };
    let mut status = budget_status(&budget, &pods);
    // The condition's time moves only when the condition does.
    let old = &stored["status"]["conditions"][0];
    status["conditions"][0]["lastTransitionTime"] = if old["status"]
        == status["conditions"][0]["status"]
        && old["reason"] == status["conditions"][0]["reason"]
    {
        old["lastTransitionTime"].clone()
    } else {
        serde_json::to_value(super::controller::now_time()).unwrap_or(Value::Null)
    };
    if stored["status"] == status {
        return;
    }
    let mut updated = stored;
    updated["status"] = status;
    if let Err(e) = store.update(
        Kind::PodDisruptionBudget,
        &key.0,
        &key.1,
        updated,
        Part::Status,
        false,
    ) {
        tracing::debug!(?key, error = %e, "simulated disruption controller write failed");
    }
}

/// A pod changed (or went): every budget in its namespace looks again.
pub fn pod_changed(store: &mut Store, pod: &Key) {
    let budgets: Vec<Key> = store
        .list(Kind::PodDisruptionBudget, Some(&pod.0))
        .into_iter()
        .filter_map(|b| b.pointer("/metadata/name").and_then(Value::as_str))
        .map(|name| (pod.0.clone(), name.to_string()))
        .collect();
    for key in budgets {
        store.dirty.insert((Kind::PodDisruptionBudget, key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn budget(spec: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b", "generation": 2}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn a_budget_allows_what_its_healthy_pods_spare() {
        let three_ready = [pod(true), pod(true), pod(true)];
        let status = budget_status(&budget(json!({"maxUnavailable": 1})), &three_ready);
        assert_eq!(
            (
                &status["expectedPods"],
                &status["currentHealthy"],
                &status["desiredHealthy"],
                &status["disruptionsAllowed"]
            ),
            (&json!(3), &json!(3), &json!(2), &json!(1))
        );
        assert_eq!(status["conditions"][0]["reason"], "SufficientPods");
        assert_eq!(status["observedGeneration"], 2);

        let one_starting = [pod(true), pod(true), pod(false)];
        let status = budget_status(&budget(json!({"minAvailable": "50%"})), &one_starting);
        // 50 % of 3 rounds up to 2 that must stay.
        assert_eq!(status["desiredHealthy"], 2);
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");

        let status = budget_status(&budget(json!({"maxUnavailable": "34%"})), &three_ready);
        assert_eq!(status["desiredHealthy"], 1);
        assert_eq!(status["disruptionsAllowed"], 2);
    }

    #[test]
    fn budget_specs_are_checked() {
        let mut causes = Causes::new();
        check_budget(
            &mut budget(json!({"minAvailable": 1, "maxUnavailable": 1})),
            &mut causes,
        );
        check_budget(&mut budget(json!({"minAvailable": "150%"})), &mut causes);
        let fields: Vec<&str> = causes.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec", "spec.minAvailable"]);
    }
}
