//! Discovery documents: `/version`, `/api`, `/apis`, the resource lists of
//! each group/version, and a skeleton OpenAPI v3 (paths and operations, no
//! schemas) — enough for kubectl to see that the server validates fields
//! itself, so `kubectl apply` works without `--validate=false` — and an
//! OpenAPI v2 document without definitions, on which older kubectl (which
//! validates client-side) skips validation of the kinds it does not find.

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

/// `/openapi/v2` as JSON: a Swagger 2.0 document without paths or
/// definitions. (Protobuf clients get the empty message, which decodes to
/// the same document.)
pub fn openapi_v2() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes (Rollway simulated cluster)", "version": SERVER_VERSION},
        "paths": {},
        "definitions": {},
    })
}

/// The path of a group/version in OpenAPI v3: `api/v1`, `apis/apps/v1`.
fn openapi_group_path(group: &str) -> String {
    if group.is_empty() {
        "api/v1".into()
    } else {
        format!("apis/{group}/v1")
    }
}

/// `/openapi/v3`: where each group/version's document is.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    let mut groups: Vec<&str> = Kind::ALL.into_iter().map(Kind::group).collect();
    groups.dedup();
    for group in groups {
        let path = openapi_group_path(group);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", SERVER_VERSION)}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{api/v1 | apis/<group>/v1}`: the operations on each kind,
/// tagged with their group/version/kind and the query parameters they
/// take (no schemas).
pub fn openapi_group(path: &str) -> Option<Value> {
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| openapi_group_path(k.group()) == path)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = serde_json::Map::new();
    for kind in kinds {
        let gvk = json!({"group": kind.group(), "version": kind.version(), "kind": kind.kind()});
        let ok = json!({"200": {"description": "OK"}});
        let body = |types: &[&str]| {
            let content: serde_json::Map<String, Value> = types
                .iter()
                .map(|t| ((*t).to_string(), json!({"schema": {"type": "object"}})))
                .collect();
            json!({"content": content, "required": true})
        };
        let object_path = if kind.namespaced() {
            format!(
                "/{path}/namespaces/{{namespace}}/{}/{{name}}",
                kind.plural()
            )
        } else {
            format!("/{path}/{}/{{name}}", kind.plural())
        };
        let collection_path = object_path.trim_end_matches("/{name}").to_string();
        let write_params = json!([
            query("dryRun"),
            query("fieldManager"),
            query("fieldValidation")
        ]);
        paths.insert(
            object_path,
            json!({
                "get": {"operationId": format!("read{}", kind.kind()), "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": ok},
                "put": {"operationId": format!("replace{}", kind.kind()), "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "requestBody": body(&["*/*"]), "responses": ok},
                "patch": {
                    "operationId": format!("patch{}", kind.kind()),
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                    "requestBody": body(&["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]),
                    "responses": ok,
                },
                "delete": {"operationId": format!("delete{}", kind.kind()), "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk, "responses": ok},
                "parameters": [query("pretty")],
            }),
        );
        paths.insert(
            collection_path,
            json!({
                "get": {"operationId": format!("list{}", kind.kind()), "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk, "responses": ok},
                "post": {"operationId": format!("create{}", kind.kind()), "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "requestBody": body(&["*/*"]), "responses": ok},
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (Rollway simulated cluster)", "version": SERVER_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
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
                "authorization.k8s.io"
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
    }
}
