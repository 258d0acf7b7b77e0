//! The OpenAPI documents of the served kinds, with the schemas and field
//! descriptions of Kubernetes' own published spec (`definitions.json.gz`,
//! see `NOTICE`; `scripts/sim-openapi` regenerates it), so `kubectl explain`
//! prints what it prints against a real cluster, older kubectl validates
//! manifests against the real schema, and kubectl finds the `dryRun` and
//! `fieldValidation` parameters it looks for before using them.
//!
//! - `/openapi/v2`: one Swagger 2.0 document, as JSON or, when asked for
//!   protobuf (kubectl does, and 1.20 takes nothing else), as gnostic's
//!   `openapi.v2.Document` ([`proto`]);
//! - `/openapi/v3`: an index of group/versions, each pointing at its own
//!   OpenAPI 3.0 document by a URL carrying a hash of its content (kubectl
//!   caches by that URL). The v3 schemas are the v2 ones in v3 form: refs
//!   under `#/components/schemas/`, and a ref with a description of its own
//!   wrapped in `allOf`, as Kubernetes writes them.
//!
//! Paths cover what the simulator routes: each kind's collection and
//! object, and its `status` and `scale` subresources.

mod proto;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::discovery::SERVER_VERSION;
use super::kinds::Kind;

/// Kubernetes' definitions, trimmed to what the served kinds reach.
static DEFINITIONS_GZ: &[u8] = include_bytes!("definitions.json.gz");

/// What `/openapi/…` answers, built once on first use.
pub struct Documents {
    pub v2_json: Vec<u8>,
    pub v2_protobuf: Vec<u8>,
    pub v3_index: Vec<u8>,
    /// `api/v1`, `apis/apps/v1`, … → the document.
    v3: BTreeMap<String, Vec<u8>>,
}

impl Documents {
    /// The v3 document of `api/v1` or `apis/<group>/<version>`.
    pub fn v3(&self, path: &str) -> Option<&[u8]> {
        self.v3.get(path.trim_matches('/')).map(Vec::as_slice)
    }
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| build(&Kind::ALL));

pub fn documents() -> &'static Documents {
    &DOCUMENTS
}

/// The definitions as published, by name.
fn definitions() -> Map<String, Value> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(DEFINITIONS_GZ)
        .read_to_end(&mut text)
        .expect("the vendored OpenAPI definitions are gzip");
    let mut doc: Value =
        serde_json::from_slice(&text).expect("the vendored OpenAPI definitions are JSON");
    match doc["definitions"].take() {
        Value::Object(definitions) => definitions,
        _ => panic!("the vendored OpenAPI document has no definitions"),
    }
}

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The name of the definition whose `x-kubernetes-group-version-kind` is
/// this kind's.
fn definition_of(definitions: &Map<String, Value>, kind: Kind) -> Option<String> {
    let want = json!({"group": kind.group(), "version": kind.version(), "kind": kind.kind()});
    definitions
        .iter()
        .find(|(_, d)| {
            d["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|gvks| gvks.contains(&want))
        })
        .map(|(name, _)| name.clone())
}

/// `roots` and every definition they refer to, directly or not.
fn reachable(definitions: &Map<String, Value>, roots: &[String]) -> Map<String, Value> {
    fn refs(node: &Value, out: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    out.push(r.trim_start_matches("#/definitions/").to_string());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut kept = Map::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if kept.contains_key(&name) {
            continue;
        }
        if let Some(definition) = definitions.get(&name) {
            refs(definition, &mut todo);
            kept.insert(name, definition.clone());
        }
    }
    kept
}

/// One operation on a path.
struct Operation {
    method: &'static str,
    id: String,
    action: &'static str,
    query: &'static [&'static str],
    /// The definition the request body is (patches are any object).
    body: Option<String>,
    response: String,
}

/// One path and what it takes.
struct PathItem {
    path: String,
    path_params: Vec<&'static str>,
    kind: Kind,
    operations: Vec<Operation>,
}

const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const LIST: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const DELETE: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];

fn query_type(name: &str) -> &'static str {
    match name {
        "force" | "watch" | "allowWatchBookmarks" | "sendInitialEvents" | "orphanDependents" => {
            "boolean"
        }
        "limit" | "timeoutSeconds" | "gracePeriodSeconds" => "integer",
        _ => "string",
    }
}

/// `api/v1`, `apis/apps/v1`.
fn group_path(kind: Kind) -> String {
    match kind.group() {
        "" => format!("api/{}", kind.version()),
        group => format!("apis/{group}/{}", kind.version()),
    }
}

/// `CoreV1`, `AppsV1`, `NetworkingV1`, `RbacAuthorizationV1`: as in
/// operation ids.
fn operation_prefix(kind: Kind) -> String {
    let group = kind.group().trim_end_matches(".k8s.io");
    let mut prefix = if group.is_empty() {
        "Core".to_string()
    } else {
        group
            .split('.')
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    let version = kind.version();
    prefix.push_str(&version[..1].to_ascii_uppercase());
    prefix.push_str(&version[1..]);
    prefix
}

fn paths_of(kind: Kind, definition: &str) -> Vec<PathItem> {
    let base = group_path(kind);
    let scope = if kind.namespaced() { "Namespaced" } else { "" };
    let name = kind.kind();
    let prefix = operation_prefix(kind);
    let id = |verb: &str, suffix: &str| format!("{verb}{prefix}{scope}{name}{suffix}");
    let list = format!("{definition}List");
    let (collection, mut params) = if kind.namespaced() {
        (
            format!("/{base}/namespaces/{{namespace}}/{}", kind.plural()),
            vec!["namespace"],
        )
    } else {
        (format!("/{base}/{}", kind.plural()), vec![])
    };
    let op = |method, id, action, query, body: Option<&str>, response: &str| Operation {
        method,
        id,
        action,
        query,
        body: body.map(String::from),
        response: response.to_string(),
    };
    let mut items = vec![PathItem {
        path: collection.clone(),
        path_params: params.clone(),
        kind,
        operations: vec![
            op("get", id("list", ""), "list", LIST, None, &list),
            op(
                "post",
                id("create", ""),
                "post",
                WRITE,
                Some(definition),
                definition,
            ),
            op(
                "delete",
                id("deleteCollection", ""),
                "deletecollection",
                DELETE,
                Some(DELETE_OPTIONS),
                STATUS,
            ),
        ],
    }];
    params.push("name");
    let object = format!("{collection}/{{name}}");
    let delete_answer = if kind == Kind::Pod {
        definition
    } else {
        STATUS
    };
    items.push(PathItem {
        path: object.clone(),
        path_params: params.clone(),
        kind,
        operations: vec![
            op("get", id("read", ""), "get", &[], None, definition),
            op(
                "put",
                id("replace", ""),
                "put",
                WRITE,
                Some(definition),
                definition,
            ),
            op("patch", id("patch", ""), "patch", PATCH, None, definition),
            op(
                "delete",
                id("delete", ""),
                "delete",
                DELETE,
                Some(DELETE_OPTIONS),
                delete_answer,
            ),
        ],
    });
    for sub in kind.subresources() {
        let (suffix, answer) = match *sub {
            "status" => ("Status", definition),
            "scale" => ("Scale", SCALE),
            _ => continue,
        };
        items.push(PathItem {
            path: format!("{object}/{sub}"),
            path_params: params.clone(),
            kind,
            operations: vec![
                op("get", id("read", suffix), "get", &[], None, answer),
                op(
                    "put",
                    id("replace", suffix),
                    "put",
                    WRITE,
                    Some(answer),
                    answer,
                ),
                op("patch", id("patch", suffix), "patch", PATCH, None, answer),
            ],
        });
    }
    items
}

const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn gvk(kind: Kind) -> Value {
    json!({"group": kind.group(), "version": kind.version(), "kind": kind.kind()})
}

/// A Swagger 2.0 path item.
fn v2_path(item: &PathItem) -> Value {
    let mut out = Map::new();
    let mut parameters: Vec<Value> = item
        .path_params
        .iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "type": "string", "uniqueItems": true}))
        .collect();
    parameters
        .push(json!({"name": "pretty", "in": "query", "type": "string", "uniqueItems": true}));
    out.insert("parameters".into(), parameters.into());
    for op in &item.operations {
        let mut parameters: Vec<Value> = Vec::new();
        if op.method == "patch" {
            parameters.push(json!({"name": "body", "in": "body", "required": true, "schema": {"type": "object"}}));
        } else if let Some(body) = &op.body {
            parameters.push(json!({"name": "body", "in": "body", "required": op.method != "delete", "schema": {"$ref": format!("#/definitions/{body}")}}));
        }
        parameters.extend(op.query.iter().map(
            |q| json!({"name": q, "in": "query", "type": query_type(q), "uniqueItems": true}),
        ));
        let consumes = if op.method == "patch" {
            json!(PATCH_TYPES)
        } else {
            json!(["*/*"])
        };
        out.insert(
            op.method.into(),
            json!({
                "operationId": op.id,
                "consumes": consumes,
                "produces": ["application/json", "application/yaml"],
                "schemes": ["https"],
                "parameters": parameters,
                "responses": {
                    "200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{}", op.response)}},
                    "401": {"description": "Unauthorized"},
                },
                "x-kubernetes-action": op.action,
                "x-kubernetes-group-version-kind": gvk(item.kind),
            }),
        );
    }
    Value::Object(out)
}

/// An OpenAPI 3.0 path item.
fn v3_path(item: &PathItem) -> Value {
    let schema_ref = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let mut out = Map::new();
    let mut parameters: Vec<Value> = item
        .path_params
        .iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    parameters.push(
        json!({"name": "pretty", "in": "query", "schema": {"type": "string", "uniqueItems": true}}),
    );
    out.insert("parameters".into(), parameters.into());
    for op in &item.operations {
        let parameters: Vec<Value> = op
            .query
            .iter()
            .map(|q| json!({"name": q, "in": "query", "schema": {"type": query_type(q), "uniqueItems": true}}))
            .collect();
        let mut operation = json!({
            "operationId": op.id,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {
                    "application/json": {"schema": schema_ref(&op.response)},
                    "application/yaml": {"schema": schema_ref(&op.response)},
                }},
                "401": {"description": "Unauthorized"},
            },
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": gvk(item.kind),
        });
        if op.method == "patch" {
            let content: Map<String, Value> = PATCH_TYPES
                .iter()
                .map(|t| ((*t).to_string(), json!({"schema": {"type": "object"}})))
                .collect();
            operation["requestBody"] = json!({"content": content, "required": true});
        } else if let Some(body) = &op.body {
            operation["requestBody"] = json!({
                "content": {"*/*": {"schema": schema_ref(body)}},
                "required": op.method != "delete",
            });
        }
        out.insert(op.method.into(), operation);
    }
    Value::Object(out)
}

/// A v2 schema in v3 form.
fn to_v3(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let value = match key.as_str() {
            "$ref" => Value::String(
                value
                    .as_str()
                    .unwrap_or_default()
                    .replace("#/definitions/", "#/components/schemas/"),
            ),
            "items" | "additionalProperties" => to_v3(value),
            "allOf" => Value::Array(value.as_array().into_iter().flatten().map(to_v3).collect()),
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), to_v3(v)))
                    .collect(),
            ),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    if out.len() > 1
        && let Some(reference) = out.remove("$ref")
    {
        out.insert("allOf".into(), json!([{"$ref": reference}]));
    }
    Value::Object(out)
}

/// The documents for `kinds`.
fn build(kinds: &[Kind]) -> Documents {
    let all = definitions();
    let served: Vec<(Kind, String)> = kinds
        .iter()
        .filter_map(|&k| definition_of(&all, k).map(|d| (k, d)))
        .collect();
    let roots_of = |kinds: &mut dyn Iterator<Item = &(Kind, String)>| -> Vec<String> {
        let mut roots = vec![STATUS.to_string(), DELETE_OPTIONS.to_string()];
        for (kind, definition) in kinds {
            roots.push(definition.clone());
            roots.push(format!("{definition}List"));
            if kind.subresources().contains(&"scale") {
                roots.push(SCALE.to_string());
            }
        }
        roots
    };
    let paths: Vec<PathItem> = served
        .iter()
        .flat_map(|(kind, definition)| paths_of(*kind, definition))
        .collect();

    let v2 = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": paths.iter().map(|p| (p.path.clone(), v2_path(p))).collect::<Map<_, _>>(),
        "definitions": reachable(&all, &roots_of(&mut served.iter())),
    });

    let groups: BTreeSet<String> = served.iter().map(|(k, _)| group_path(*k)).collect();
    let mut v3 = BTreeMap::new();
    let mut index = Map::new();
    for group in groups {
        let in_group = |k: &Kind| group_path(*k) == group;
        let schemas: Map<String, Value> = reachable(
            &all,
            &roots_of(&mut served.iter().filter(|(k, _)| in_group(k))),
        )
        .into_iter()
        .map(|(name, schema)| (name, to_v3(&schema)))
        .collect();
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION},
            "paths": paths
                .iter()
                .filter(|p| in_group(&p.kind))
                .map(|p| (p.path.clone(), v3_path(p)))
                .collect::<Map<_, _>>(),
            "components": {"schemas": schemas},
        });
        let bytes = serde_json::to_vec(&doc).expect("JSON");
        let hash = hex::encode_upper(Sha512::digest(&bytes));
        index.insert(
            group.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{group}?hash={hash}")}),
        );
        v3.insert(group, bytes);
    }
    Documents {
        v2_protobuf: proto::document(&v2),
        v2_json: serde_json::to_vec(&v2).expect("JSON"),
        v3_index: serde_json::to_vec(&json!({"paths": index})).expect("JSON"),
        v3,
    }
}

#[cfg(test)]
mod tests {
    use super::proto::decode::{named, one, text};
    use super::*;

    fn v2() -> Value {
        serde_json::from_slice(&documents().v2_json).unwrap()
    }

    fn refs_resolve(doc: &Value, prefix: &str, names: &Map<String, Value>) {
        match doc {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    let name = r.strip_prefix(prefix).unwrap_or_else(|| panic!("{r}"));
                    assert!(names.contains_key(name), "{r} is not in the document");
                }
                map.values().for_each(|v| refs_resolve(v, prefix, names));
            }
            Value::Array(list) => list.iter().for_each(|v| refs_resolve(v, prefix, names)),
            _ => {}
        }
    }

    #[test]
    fn every_served_kind_has_its_published_schema_and_every_ref_resolves() {
        let doc = v2();
        let all = definitions();
        let definitions = doc["definitions"].as_object().unwrap();
        // The access reviews are create-only requests, not objects anyone
        // explains or stores; the vendored definitions leave them out.
        for kind in Kind::ALL.into_iter().filter(|k| k.verbs() != ["create"]) {
            let name = definition_of(&all, kind).unwrap_or_else(|| panic!("{kind:?}"));
            assert!(definitions.contains_key(&name), "{name}");
        }
        refs_resolve(&doc, "#/definitions/", definitions);
        assert_eq!(
            doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]["description"],
            "The deployment strategy to use to replace existing pods with new ones."
        );
        // Only what the served kinds reach: no StatefulSet here.
        assert!(!definitions.contains_key("io.k8s.api.apps.v1.StatefulSet"));
    }

    #[test]
    fn the_vendored_definitions_are_closed_under_refs() {
        let all = definitions();
        refs_resolve(&Value::Object(all.clone()), "#/definitions/", &all);
    }

    #[test]
    fn patch_operations_name_their_kind_and_take_dry_run_and_field_validation() {
        let doc = v2();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"dryRun") && names.contains(&"fieldValidation"));
        assert_eq!(
            doc["paths"]["/api/v1/namespaces/{name}"]["get"]["operationId"],
            "readCoreV1Namespace"
        );
        assert!(
            doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"]
                .is_object()
        );
    }

    #[test]
    fn the_protobuf_document_carries_the_descriptions() {
        let bytes = &documents().v2_protobuf;
        let definitions = one(bytes, 9);
        let strategy = named(definitions, 1, "io.k8s.api.apps.v1.DeploymentStrategy");
        assert_eq!(
            text(strategy, 4),
            "DeploymentStrategy describes how to replace existing pods with new ones."
        );
        let deployment = named(definitions, 1, "io.k8s.api.apps.v1.Deployment");
        let gvk = named(deployment, 31, "x-kubernetes-group-version-kind");
        let gvk: Value = serde_yaml::from_str(&text(gvk, 2)).unwrap();
        assert_eq!(gvk[0]["group"], "apps");
        let path = named(
            one(bytes, 8),
            2,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        );
        assert_eq!(text(one(path, 8), 5), "patchAppsV1NamespacedDeployment");
    }

    #[test]
    fn v3_documents_are_indexed_by_group_with_a_content_hash() {
        let index: Value = serde_json::from_slice(&documents().v3_index).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let (path, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(path, "/openapi/v3/apis/apps/v1");
        let bytes = documents().v3("apis/apps/v1").unwrap();
        assert_eq!(hash, hex::encode_upper(Sha512::digest(bytes)));
        assert!(index["paths"]["api/v1"].is_object());
        assert!(index["paths"]["apis/events.k8s.io/v1"].is_object());
        assert!(documents().v3("apis/batch/v1").is_none());

        let doc: Value = serde_json::from_slice(bytes).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        refs_resolve(&doc, "#/components/schemas/", schemas);
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(
            strategy["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert_eq!(
            strategy["description"],
            "The deployment strategy to use to replace existing pods with new ones."
        );
        assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
        assert!(!schemas.contains_key("io.k8s.api.core.v1.Namespace"));
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
    }

    #[test]
    fn refs_with_siblings_are_wrapped_in_all_of_for_v3() {
        assert_eq!(
            to_v3(&json!({"$ref": "#/definitions/A"})),
            json!({"$ref": "#/components/schemas/A"})
        );
        assert_eq!(
            to_v3(
                &json!({"type": "array", "items": {"$ref": "#/definitions/A", "description": "d"}})
            ),
            json!({"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/A"}], "description": "d"}})
        );
    }
}
