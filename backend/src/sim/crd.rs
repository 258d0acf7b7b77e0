//! CustomResourceDefinitions: a stored `apiextensions.k8s.io/v1`
//! CustomResourceDefinition makes its resource servable at once — discovery
//! (`/apis`, `/apis/{group}`, `/apis/{group}/{version}`), CRUD, list,
//! watch, merge and JSON patch (strategic merge answers 415 as on a real
//! server) and the status subresource — and deleting it deletes its objects
//! and stops serving them.
//!
//! A custom resource is [`Kind::Custom`] around a [`CustomKind`]: a shared,
//! immutable description made from the definition. Descriptions are
//! interned process-wide (two simulated clusters applying the same
//! definition share one), so what is kept grows with the number of distinct
//! definitions, not with requests. Objects are stored at the storage
//! version; a request at another served version sees them at that version
//! (conversion strategy `None`: only `apiVersion` changes), which the
//! middleware [`layer`] does on the way in and out.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition,
};
use serde_json::{Value, json};

use super::Sim;
use super::api::{Target, parse_path_with};
use super::kinds::Kind;
use super::status::ApiError;
use super::store::{Propagation, Store, now_timestamp};

/// The largest request body converted between versions.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What a definition says about its resource, as far as serving it goes.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Definition {
    group: String,
    plural: String,
    singular: String,
    kind: String,
    list_kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
    namespaced: bool,
    /// Served versions, the preferred one first.
    versions: Vec<String>,
    storage_version: String,
    /// `group/storage_version`.
    api_version: String,
    status: bool,
    /// `additionalPrinterColumns` by version.
    columns: Vec<(String, Vec<PrinterColumn>)>,
}

/// One of a version's `additionalPrinterColumns`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PrinterColumn {
    name: String,
    type_: String,
    json_path: String,
    priority: i64,
    description: String,
}

/// A custom resource: equal, ordered and hashed by group and plural, which
/// is what identifies a resource over updates of its definition.
#[derive(Clone, Copy, Debug)]
pub struct CustomKind(&'static Definition);

impl CustomKind {
    fn id(self) -> (&'static str, &'static str) {
        (&self.0.group, &self.0.plural)
    }

    pub fn group(self) -> &'static str {
        &self.0.group
    }

    pub fn plural(self) -> &'static str {
        &self.0.plural
    }

    pub fn singular(self) -> &'static str {
        &self.0.singular
    }

    pub fn kind(self) -> &'static str {
        &self.0.kind
    }

    pub fn list_kind(self) -> &'static str {
        &self.0.list_kind
    }

    pub fn short_names(self) -> Vec<&'static str> {
        self.0.short_names.iter().map(String::as_str).collect()
    }

    pub fn categories(self) -> Vec<&'static str> {
        self.0.categories.iter().map(String::as_str).collect()
    }

    pub fn namespaced(self) -> bool {
        self.0.namespaced
    }

    pub fn storage_version(self) -> &'static str {
        &self.0.storage_version
    }

    pub fn api_version(self) -> &'static str {
        &self.0.api_version
    }

    /// Served versions, the preferred one first.
    pub fn versions(self) -> Vec<&'static str> {
        self.0.versions.iter().map(String::as_str).collect()
    }

    pub fn has_status(self) -> bool {
        self.0.status
    }
}

impl PartialEq for CustomKind {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for CustomKind {}

impl std::hash::Hash for CustomKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl PartialOrd for CustomKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CustomKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id().cmp(&other.id())
    }
}

fn intern(definition: Definition) -> CustomKind {
    static INTERNED: OnceLock<Mutex<HashSet<&'static Definition>>> = OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = interned.get(&definition) {
        return CustomKind(known);
    }
    let leaked: &'static Definition = Box::leak(Box::new(definition));
    interned.insert(leaked);
    CustomKind(leaked)
}

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The resource a stored definition serves, if it serves any version.
pub fn kind_of(crd: &Value) -> Option<CustomKind> {
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array)?;
    let storage_version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())?
        .to_string();
    let mut served: Vec<String> = versions
        .iter()
        .filter(|v| v["served"] == true)
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect();
    if group.is_empty() || plural.is_empty() || kind.is_empty() || served.is_empty() {
        return None;
    }
    served.sort_by_key(|v| version_priority(v));
    let singular = Some(text(crd, "/spec/names/singular"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = Some(text(crd, "/spec/names/listKind"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("{kind}List"));
    let status = versions
        .iter()
        .find(|v| v["name"] == storage_version.as_str())
        .is_some_and(|v| v.pointer("/subresources/status").is_some());
    let columns = versions
        .iter()
        .map(|v| {
            let columns = v["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: text(c, "/name"),
                    type_: text(c, "/type"),
                    json_path: text(c, "/jsonPath"),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    description: text(c, "/description"),
                })
                .collect();
            (text(v, "/name"), columns)
        })
        .collect();
    Some(intern(Definition {
        columns,
        api_version: format!("{group}/{storage_version}"),
        short_names: strings(crd, "/spec/names/shortNames"),
        categories: strings(crd, "/spec/names/categories"),
        namespaced: text(crd, "/spec/scope") != "Cluster",
        group,
        plural,
        singular,
        kind,
        list_kind,
        versions: served,
        storage_version,
        status,
    }))
}

/// Kubernetes' order of versions, preferred first: GA before beta before
/// alpha, higher numbers first, then anything else alphabetically.
fn version_priority(version: &str) -> (u8, i64, i64, String) {
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: i64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (level, minor) = if tail.is_empty() {
            (0, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (1, n.parse().ok()?)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n.parse().ok()?)
        } else {
            return None;
        };
        Some((level, -major, -minor))
    });
    match parsed {
        Some((level, major, minor)) => (level, major, minor, String::new()),
        None => (3, 0, 0, version.to_string()),
    }
}

/// The custom kind served at a group/version/plural by this store's
/// definitions.
pub fn resolve(store: &Store, group: &str, version: &str, plural: &str) -> Option<Kind> {
    store
        .list(Kind::CustomResourceDefinition, None)
        .into_iter()
        .filter(|crd| {
            crd.pointer("/spec/group").and_then(Value::as_str) == Some(group)
                && crd.pointer("/spec/names/plural").and_then(Value::as_str) == Some(plural)
        })
        .find_map(kind_of)
        .filter(|c| c.versions().contains(&version))
        .map(Kind::Custom)
}

/// What a custom resource URL points at, for this cluster's definitions.
pub fn parse_path(sim: &Sim, path: &str) -> Option<Target> {
    let world = sim.world();
    parse_path_with(path, |group, version, plural| {
        resolve(&world.store, group, version, plural)
    })
}

/// The custom kinds of one group, as the store's definitions say.
fn kinds_in_group(store: &Store, group: &str) -> Vec<CustomKind> {
    store
        .list(Kind::CustomResourceDefinition, None)
        .into_iter()
        .filter(|crd| crd.pointer("/spec/group").and_then(Value::as_str) == Some(group))
        .filter_map(kind_of)
        .collect()
}

/// Every served version of a group, the preferred one first.
fn group_versions(kinds: &[CustomKind]) -> Vec<&'static str> {
    let mut versions: Vec<&str> = kinds.iter().flat_map(|k| k.versions()).collect();
    versions.sort_by_key(|v| version_priority(v));
    versions.dedup();
    versions
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis/{group}` of a custom group.
fn group_document(store: &Store, group: &str) -> Option<Value> {
    let versions = group_versions(&kinds_in_group(store, group));
    if versions.is_empty() {
        return None;
    }
    let mut doc = group_json(group, &versions);
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Some(doc)
}

/// `/apis/{group}/{version}` of a custom group.
fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<CustomKind> = kinds_in_group(store, group)
        .into_iter()
        .filter(|k| k.versions().contains(&version))
        .collect();
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
            "verbs": Kind::Custom(kind).verbs(),
        });
        if !kind.short_names().is_empty() {
            resource["shortNames"] = json!(kind.short_names());
        }
        if !kind.categories().is_empty() {
            resource["categories"] = json!(kind.categories());
        }
        resources.push(resource);
        if kind.has_status() {
            resources.push(json!({
                "name": format!("{}/status", kind.plural()),
                "singularName": "",
                "namespaced": kind.namespaced(),
                "kind": kind.kind(),
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources,
    }))
}

/// Adds the custom groups to `/apis`.
fn add_groups(store: &Store, mut list: Value) -> Value {
    let mut groups: Vec<String> = store
        .list(Kind::CustomResourceDefinition, None)
        .into_iter()
        .filter(|crd| kind_of(crd).is_some())
        .map(|crd| text(crd, "/spec/group"))
        .collect();
    groups.sort();
    groups.dedup();
    if let Some(entries) = list["groups"].as_array_mut() {
        for group in groups {
            let versions = group_versions(&kinds_in_group(store, &group));
            entries.push(group_json(&group, &versions));
        }
    }
    list
}

fn is_builtin_group(group: &str) -> bool {
    Kind::ALL.iter().any(|k| k.group() == group)
}

fn json_response(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

/// Middleware: custom groups in discovery, and custom resources at a
/// version other than their storage version converted on the way in and
/// out. Everything else passes through.
pub(crate) async fn layer(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let is_get = request.method() == Method::GET;
    match segments.as_slice() {
        ["apis"] if is_get => {
            let response = next.run(request).await;
            if !response.status().is_success() {
                return response;
            }
            let (parts, body) = response.into_parts();
            let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
                return ApiError::internal("cannot read the group list").into_response();
            };
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(list) if list["kind"] == "APIGroupList" => {
                    let list = add_groups(&sim.world().store, list);
                    json_response(&list)
                }
                _ => Response::from_parts(parts, Body::from(bytes)),
            }
        }
        ["apis", group] if is_get && !is_builtin_group(group) => {
            let doc = group_document(&sim.world().store, group);
            match doc {
                Some(doc) => json_response(&doc),
                None => next.run(request).await,
            }
        }
        ["apis", group, version] if is_get && !is_builtin_group(group) => {
            let doc = resource_list(&sim.world().store, group, version);
            match doc {
                Some(doc) => json_response(&doc),
                None => next.run(request).await,
            }
        }
        ["apis", group, version, ..] if !is_builtin_group(group) => {
            let Some(target) = parse_path(&sim, &path) else {
                return next.run(request).await;
            };
            let Kind::Custom(kind) = target.kind else {
                return next.run(request).await;
            };
            if request.method() == Method::PATCH && is_strategic_merge(&request) {
                return ApiError {
                    code: 415,
                    reason: "UnsupportedMediaType",
                    message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                    details: None,
                }
                .into_response();
            }
            let table = request.method() == Method::GET
                && !is_watch(request.uri().query())
                && request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("as=Table"));
            let mut request = request;
            if table {
                // Answered as objects, printed here with the definition's
                // columns.
                request.headers_mut().insert(
                    header::ACCEPT,
                    "application/json".parse().expect("a header value"),
                );
            }
            let response = if *version == kind.storage_version() {
                next.run(request).await
            } else {
                let served = format!("{group}/{version}");
                convert(request, next, &served, kind.api_version()).await
            };
            if table {
                print_table(kind, version, response).await
            } else {
                response
            }
        }
        _ => next.run(request).await,
    }
}

fn is_strategic_merge(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .starts_with("application/strategic-merge-patch+json")
        })
}

/// Serves a request at `served` (`group/version`) from objects stored at
/// `stored`: the body's apiVersion goes in as `stored`, answers come out as
/// `served`, watch events included.
async fn convert(request: Request, next: Next, served: &str, stored: &'static str) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return ApiError::bad_request("cannot read the body").into_response();
    };
    let bytes = if bytes.is_empty() {
        bytes
    } else {
        let yaml = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.contains("yaml"));
        let parsed: Option<Value> = if yaml {
            serde_yaml::from_slice(&bytes).ok()
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        match parsed {
            Some(mut value) if value["apiVersion"] == served => {
                value["apiVersion"] = stored.into();
                // JSON is YAML: the body stays readable as declared.
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }
            _ => bytes,
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let watching = is_watch(parts.uri.query());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let served = served.to_string();
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if watching {
        let stream = body
            .into_data_stream()
            .map(move |chunk| chunk.map(|bytes| convert_lines(&bytes, stored, &served)));
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    let Ok(bytes) = to_bytes(body, BODY_LIMIT).await else {
        return ApiError::internal("cannot read the answer").into_response();
    };
    let bytes = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut value) => {
            relabel(&mut value, stored, &served);
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
        }
        Err(_) => bytes,
    };
    Response::from_parts(parts, Body::from(bytes))
}

fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

/// The `meta.k8s.io/v1` Table of an answered object or list: Name, then
/// the version's printer columns (Age when it has none), as the real
/// server prints custom resources.
async fn print_table(kind: CustomKind, version: &str, response: Response) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let Ok(bytes) = to_bytes(response.into_body(), BODY_LIMIT).await else {
        return ApiError::internal("cannot read the answer").into_response();
    };
    let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
        return ApiError::internal("the answer is not JSON").into_response();
    };
    let objects: Vec<Value> = match answer.get("items").and_then(Value::as_array) {
        Some(items) => items.clone(),
        None => vec![answer.clone()],
    };
    let printer: &[PrinterColumn] = kind
        .0
        .columns
        .iter()
        .find(|(v, _)| v == version)
        .map(|(_, c)| c.as_slice())
        .unwrap_or_default();
    let age = PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        priority: 0,
        description: String::new(),
    };
    let columns: Vec<&PrinterColumn> = if printer.is_empty() {
        vec![&age]
    } else {
        printer.iter().collect()
    };
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    definitions.extend(columns.iter().map(|c| {
        let (type_, format) = match c.type_.as_str() {
            "date" => ("date", ""),
            other => (other, ""),
        };
        json!({"name": c.name, "type": type_, "format": format, "priority": c.priority, "description": c.description})
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            cells.extend(columns.iter().map(|c| cell(o, c)));
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = answer.pointer("/metadata/resourceVersion") {
        metadata["resourceVersion"] = rv.clone();
    }
    json_response(&json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }))
}

/// One printer column of one object: dates as ages, other values as they
/// are, nothing (printed `<none>`) where the path finds nothing.
fn cell(object: &Value, column: &PrinterColumn) -> Value {
    let Some(value) = json_path(object, &column.json_path) else {
        return Value::Null;
    };
    match (column.type_.as_str(), value) {
        ("date", Value::String(time)) => super::table::age(time).into(),
        ("string", Value::String(_)) => value.clone(),
        ("string", other) => other.to_string().into(),
        _ => value.clone(),
    }
}

/// The value at a printer column's JSONPath: dotted fields, `[n]`, `[*]`
/// (the first element) and `[?(@.field=="value")]` filters, as CRDs write
/// them.
fn json_path<'a>(mut value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            if !field.is_empty() {
                value = value.get(field)?;
            }
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let selector = &after[..end];
            let items = value.as_array()?;
            value = if let Some(filter) = selector
                .strip_prefix("?(@.")
                .and_then(|f| f.strip_suffix(')'))
            {
                let (field, wanted) = filter.split_once("==")?;
                let wanted = wanted.trim().trim_matches(|c| c == '"' || c == '\'');
                items.iter().find(|item| {
                    json_path(item, &format!(".{}", field.trim())).and_then(Value::as_str)
                        == Some(wanted)
                })?
            } else if selector == "*" {
                items.first()?
            } else {
                items.get(selector.parse::<usize>().ok()?)?
            };
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(value)
}

/// Watch events, one JSON document a line.
fn convert_lines(bytes: &Bytes, stored: &str, served: &str) -> Bytes {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        match serde_json::from_slice::<Value>(line) {
            Ok(mut event) => {
                relabel(&mut event, stored, served);
                out.extend(serde_json::to_vec(&event).unwrap_or_default());
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            Err(_) => out.extend_from_slice(line),
        }
    }
    Bytes::from(out)
}

/// Rewrites `apiVersion` `from` → `to` in an object, a list's items or a
/// watch event's object.
fn relabel(value: &mut Value, from: &str, to: &str) {
    if value["apiVersion"] == from {
        value["apiVersion"] = to.into();
    }
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            relabel(item, from, to);
        }
    }
    if let Some(object) = value.get_mut("object").filter(|o| o.is_object()) {
        relabel(object, from, to);
    }
}

// ------------------------------------------------------- the definitions

/// Validation of a definition and the defaults the API server fills in.
pub fn check_definition(crd: &mut CustomResourceDefinition, causes: &mut Vec<(String, String)>) {
    let spec = &mut crd.spec;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let group = spec.group.clone();
    if group.is_empty() {
        causes.push(("spec.group".into(), "Required value".into()));
    } else if !group.contains('.') {
        causes.push((
            "spec.group".into(),
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    } else if is_builtin_group(&group) {
        causes.push((
            "spec.group".into(),
            format!("Invalid value: \"{group}\": is served by the cluster itself"),
        ));
    }
    let names = &mut spec.names;
    if names.plural.is_empty() {
        causes.push(("spec.names.plural".into(), "Required value".into()));
    } else if names.plural.to_lowercase() != names.plural {
        causes.push((
            "spec.names.plural".into(),
            format!(
                "Invalid value: \"{}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
                names.plural
            ),
        ));
    }
    if names.kind.is_empty() {
        causes.push(("spec.names.kind".into(), "Required value".into()));
    }
    if !names.plural.is_empty() && name != format!("{}.{group}", names.plural) {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    names
        .singular
        .get_or_insert_with(|| names.kind.to_lowercase());
    names
        .list_kind
        .get_or_insert_with(|| format!("{}List", names.kind));
    if spec.scope != "Namespaced" && spec.scope != "Cluster" {
        causes.push((
            "spec.scope".into(),
            format!(
                "Unsupported value: \"{}\": supported values: \"Cluster\", \"Namespaced\"",
                spec.scope
            ),
        ));
    }
    if spec.versions.is_empty() {
        causes.push(("spec.versions".into(), "Required value".into()));
    } else {
        let storage = spec.versions.iter().filter(|v| v.storage).count();
        if storage != 1 {
            causes.push((
                "spec.versions".into(),
                format!("Invalid value: must have exactly one version marked as storage version (found {storage})"),
            ));
        }
        if !spec.versions.iter().any(|v| v.served) {
            causes.push((
                "spec.versions".into(),
                "Invalid value: must serve at least one version".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, version) in spec.versions.iter().enumerate() {
            if !seen.insert(version.name.clone()) {
                causes.push((
                    format!("spec.versions[{i}].name"),
                    format!("Duplicate value: \"{}\"", version.name),
                ));
            }
        }
    }
    spec.conversion
        .get_or_insert_with(|| CustomResourceConversion {
            strategy: "None".into(),
            webhook: None,
        });
}

/// The status a definition gets on creation: its names accepted, the
/// resource established (it is served from now on).
pub fn initial_status(crd: &mut Value) {
    let now = now_timestamp();
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    crd["status"] = json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": storage,
    });
}

/// A custom object as stored: its own fields kept as sent (no schema
/// pruning), metadata an object.
pub fn normalize_object(object: Value) -> Result<Value, ApiError> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(object)
}

/// Deletes every object of the resource a deleted definition served.
pub fn delete_objects(store: &mut Store, crd: &Value) {
    let Some(custom) = kind_of(crd) else {
        return;
    };
    let kind = Kind::Custom(custom);
    let keys: Vec<(String, String)> = store
        .list(kind, None)
        .into_iter()
        .map(|o| (text(o, "/metadata/namespace"), text(o, "/metadata/name")))
        .collect();
    for (namespace, name) in keys {
        let _ = store.delete(kind, &namespace, &name, Propagation::Cascade, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_follow_fields_indexes_and_filters() {
        let object = json!({
            "metadata": {"name": "web"},
            "status": {
                "replicas": 3,
                "conditions": [
                    {"type": "Progressing", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
            },
        });
        assert_eq!(json_path(&object, ".status.replicas"), Some(&json!(3)));
        assert_eq!(
            json_path(&object, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(
            json_path(&object, "{.status.conditions[0].type}"),
            Some(&json!("Progressing"))
        );
        assert_eq!(
            json_path(&object, ".status.conditions[*].status"),
            Some(&json!("False"))
        );
        assert_eq!(json_path(&object, ".status.missing"), None);
        assert_eq!(
            json_path(&object, ".status.conditions[?(@.type=='Gone')].status"),
            None
        );
    }

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut versions = vec![
            "v1alpha1",
            "v2beta1",
            "v1",
            "foo",
            "v1beta2",
            "v2",
            "v1beta1",
            "v10alpha3",
        ];
        versions.sort_by_key(|v| version_priority(v));
        assert_eq!(
            versions,
            [
                "v2",
                "v1",
                "v2beta1",
                "v1beta2",
                "v1beta1",
                "v10alpha3",
                "v1alpha1",
                "foo"
            ]
        );
    }

    #[test]
    fn a_kind_is_one_resource_whatever_its_definition_says_besides() {
        let definition = |short: &str| {
            json!({
                "spec": {
                    "group": "example.com",
                    "names": {"plural": "widgets", "kind": "Widget", "shortNames": [short]},
                    "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": true, "storage": true}],
                },
            })
        };
        let a = kind_of(&definition("wd")).unwrap();
        let b = kind_of(&definition("wg")).unwrap();
        assert_eq!(Kind::Custom(a), Kind::Custom(b));
        assert_eq!(b.short_names(), ["wg"]);
        // The same definition twice is one description.
        let again = kind_of(&definition("wd")).unwrap();
        assert!(std::ptr::eq(a.0, again.0));
        assert_eq!(Kind::Custom(a).api_version(), "example.com/v1");
        assert_eq!(Kind::Custom(a).qualified(), "widgets.example.com");
        assert_eq!(a.singular(), "widget");
        assert_eq!(a.list_kind(), "WidgetList");
    }
}
