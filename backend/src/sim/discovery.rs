//! Discovery documents: `/version`, `/api`, `/apis` and the resource lists
//! of each group/version. (The OpenAPI documents are in `openapi`.)

use serde_json::{Value, json};

use super::kinds::Kind;

pub const SERVER_VERSION: &str = "v1.33.0";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": SERVER_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = Kind::ALL
        .into_iter()
        .map(Kind::group)
        .filter(|g| !g.is_empty())
        .collect();
    groups.dedup();
    groups
}

fn group_json(group: &str) -> Value {
    let version = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({
        "name": group,
        "versions": [version.clone()],
        "preferredVersion": version,
    })
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_json).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, when the group is served.
pub fn group(name: &str) -> Option<Value> {
    groups().contains(&name).then(|| {
        let mut group = group_json(name);
        group["kind"] = "APIGroup".into();
        group["apiVersion"] = "v1".into();
        group
    })
}

/// `/api/v1` or `/apis/{group}/{version}`, when served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds = Kind::in_group(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for kind in kinds {
        let mut resource = json!({
            "name": kind.plural(),
            "singularName": kind.singular(),
            "namespaced": kind.namespaced(),
            "kind": kind.kind(),
            "verbs": kind.verbs(),
            "shortNames": kind.short_names(),
        });
        if !kind.categories().is_empty() {
            resource["categories"] = json!(kind.categories());
        }
        resources.push(resource);
        for sub in kind.subresources() {
            let mut entry = json!({
                "name": format!("{}/{sub}", kind.plural()),
                "singularName": "",
                "namespaced": kind.namespaced(),
                "kind": kind.kind(),
                "verbs": ["get", "patch", "update"],
            });
            match *sub {
                "scale" => {
                    entry["group"] = "autoscaling".into();
                    entry["version"] = "v1".into();
                    entry["kind"] = "Scale".into();
                }
                "log" => entry["verbs"] = json!(["get"]),
                _ => {}
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_every_group_and_subresource() {
        let groups = group_list();
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "apps",
                "networking.k8s.io",
                "events.k8s.io",
                "discovery.k8s.io",
                "apiextensions.k8s.io",
                "authorization.k8s.io",
                "rbac.authorization.k8s.io",
                "policy"
            ]
        );
        let apps = resource_list("apps", "v1").unwrap();
        let resources: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(resources.contains(&"deployments/scale"));
        assert!(resources.contains(&"replicasets"));
        let core = resource_list("", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        assert!(resource_list("batch", "v1").is_none());
        let rbac = resource_list("rbac.authorization.k8s.io", "v1").unwrap();
        assert_eq!(rbac["resources"][0]["name"], "clusterroles");
        assert_eq!(rbac["resources"][0]["namespaced"], false);
        let policy = resource_list("policy", "v1").unwrap();
        let names: Vec<&str> = policy["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["poddisruptionbudgets", "poddisruptionbudgets/status"]
        );
    }
}
