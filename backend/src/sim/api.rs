//! The HTTP surface: discovery routes, and one handler for every resource
//! URL (`/api/v1/…`, `/apis/{group}/{version}/…`) that parses the path into
//! a target and dispatches on the verb. Errors are `Status` bodies.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};

use super::Sim;
use super::discovery;
use super::faults::intercept;
use super::kinds::Kind;
use super::managed_fields::{self, Operation, Write};
use super::openapi;
use super::options::{Verb, WriteOptions, add_warnings, check_unknown_fields};
use super::patch::{self, PatchKind};
use super::protobuf;
use super::selector::{FieldQuery, LabelQuery};
use super::status::{ApiError, success_status};
use super::store::{Part, Propagation};
use super::table;
use super::{access, crd};
use super::{logs, watch};

pub(crate) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/version", get(|| async { json_ok(&discovery::version()) }))
        .route("/api", get(core_versions))
        .route("/api/v1", get(|| async { resource_list("", "v1") }))
        .route("/apis", get(|| async { json_ok(&discovery::group_list()) }))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/api/v1/{*rest}", any(resource_request))
        .route("/apis/{group}/{version}/{*rest}", any(resource_request))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3/{*path}", get(openapi_group))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found_path() })
        .layer(from_fn_with_state(sim.clone(), crd::layer))
        .layer(from_fn_with_state(sim.clone(), access::layer))
        .layer(from_fn_with_state(sim.clone(), intercept))
        .with_state(sim.clone())
        // The pods' synthetic metrics, for Prometheus to scrape: outside the
        // API's layers, so scrapes stay out of the request log.
        .merge(
            Router::new()
                .route("/sim/metrics", get(pod_metrics))
                .route("/sim/prometheus/api/v1/query", get(prometheus_query))
                .with_state(sim),
        )
}

/// The simulated cluster's stand-in for a Prometheus query API
/// (`metrics::instant_query`), for clusters set up without one.
async fn prometheus_query(
    State(sim): State<Sim>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (status, answer) =
        super::metrics::instant_query(&sim, q.get("query").map(String::as_str).unwrap_or(""));
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &answer,
    )
}

async fn pod_metrics(State(sim): State<Sim>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::exposition(&sim),
    )
        .into_response()
}

fn json_ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

async fn core_versions(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    json_ok(&discovery::core_versions(host))
}

async fn api_group(axum::extract::Path(group): axum::extract::Path<String>) -> Response {
    match discovery::group(&group) {
        Some(doc) => json_ok(&doc),
        None => ApiError::not_found_path().into_response(),
    }
}

/// `/openapi/v2`: protobuf when the client asks for it (kubectl), else JSON.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let documents = openapi::documents();
    let (content_type, body) = if accept.contains("protobuf") {
        // The type Kubernetes answers; the `…spec.v2@v1.0+protobuf` kubectl
        // asks for is not a valid media type to Go's parser.
        (
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            &documents.v2_protobuf[..],
        )
    } else {
        ("application/json", &documents.v2_json[..])
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Bytes::from_static(body),
    )
        .into_response()
}

async fn openapi_v3_index() -> Response {
    raw_json(&openapi::documents().v3_index)
}

async fn openapi_group(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match openapi::documents().v3(&path) {
        Some(doc) => raw_json(doc),
        None => ApiError::not_found_path().into_response(),
    }
}

/// A JSON document built once (no copy per request).
fn raw_json(body: &'static [u8]) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from_static(body),
    )
        .into_response()
}

async fn group_resources(
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Response {
    resource_list(&group, &version)
}

fn resource_list(group: &str, version: &str) -> Response {
    match discovery::resource_list(group, version) {
        Some(doc) => json_ok(&doc),
        None => ApiError::not_found_path().into_response(),
    }
}

/// What a resource URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// Empty for cluster-scoped kinds and all-namespace lists.
    pub namespace: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// Parses `/api/v1/namespaces/ns/pods/name/log` and friends.
pub fn parse_resource_path(path: &str) -> Option<Target> {
    parse_path_with(path, Kind::from_path)
}

/// [`parse_resource_path`], with `resolve` naming the kind at a group,
/// version and plural (custom resources: `crd::parse_path`).
pub fn parse_path_with(
    path: &str,
    resolve: impl Fn(&str, &str, &str) -> Option<Kind>,
) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let kind = |plural: &str| resolve(group, version, plural);
    let target = |kind: Kind, namespace: &str, name: Option<&str>, sub: Option<&str>| Target {
        kind,
        namespace: namespace.to_string(),
        name: name.map(String::from),
        sub: sub.map(String::from),
    };
    let namespaced_kind = |plural: &str| kind(plural).filter(|k| k.namespaced());
    match rest {
        [plural] => Some(target(kind(plural)?, "", None, None)),
        ["namespaces", ns, plural] if namespaced_kind(plural).is_some() => {
            Some(target(namespaced_kind(plural)?, ns, None, None))
        }
        ["namespaces", ns, plural, name] => {
            Some(target(namespaced_kind(plural)?, ns, Some(name), None))
        }
        ["namespaces", ns, plural, name, sub] => {
            Some(target(namespaced_kind(plural)?, ns, Some(name), Some(sub)))
        }
        [plural, name] => Some(target(
            kind(plural).filter(|k| !k.namespaced())?,
            "",
            Some(name),
            None,
        )),
        [plural, name, sub] => Some(target(
            kind(plural).filter(|k| !k.namespaced())?,
            "",
            Some(name),
            Some(sub),
        )),
        _ => None,
    }
}

pub(crate) type Query = HashMap<String, String>;

fn parse_query(query: Option<&str>) -> Query {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn flag(query: &Query, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

/// The label and field selectors of a list, watch or deletecollection;
/// field selectors on fields `kind` does not support answer 400.
pub(crate) fn selectors(kind: Kind, query: &Query) -> Result<(LabelQuery, FieldQuery), ApiError> {
    let labels = LabelQuery::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldQuery::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    fields
        .check_supported(kind)
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

async fn resource_request(
    State(sim): State<Sim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(sim, method, uri, headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn handle(
    sim: Sim,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = parse_resource_path(uri.path())
        .or_else(|| crd::parse_path(&sim, uri.path()))
        .ok_or_else(ApiError::not_found_path)?;
    let query = parse_query(uri.query());
    let kind = target.kind;
    if let Some(sub) = target.sub.as_deref()
        && !kind.subresources().contains(&sub)
    {
        return Err(ApiError::not_found_path());
    }
    let namespaced_without_namespace = kind.namespaced() && target.namespace.is_empty();
    let Some(name) = target.name.clone() else {
        let namespace = (!target.namespace.is_empty()).then_some(target.namespace.as_str());
        return match method {
            Method::GET if flag(&query, "watch") => {
                watch::serve(&sim, kind, namespace, &query, wants_table(&headers))
            }
            Method::GET => list(&sim, kind, namespace, &query, &headers),
            Method::POST if !namespaced_without_namespace => {
                create(&sim, &target, &query, &headers, &body)
            }
            Method::DELETE => delete_collection(&sim, kind, namespace, &query, &headers, &body),
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            ))),
        };
    };
    if namespaced_without_namespace {
        return Err(ApiError::not_found_path());
    }
    let namespace = target.namespace.as_str();
    let sub = target.sub.as_deref();
    match (method, sub) {
        (Method::GET, None | Some("status")) => {
            let object = sim
                .world()
                .store
                .get(kind, namespace, &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(kind, &name))?;
            Ok(respond_object(StatusCode::OK, &object, &headers))
        }
        (Method::GET, Some("scale")) => {
            let object = sim
                .world()
                .store
                .get(kind, namespace, &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(kind, &name))?;
            Ok(json_ok(&scale_of(&object)))
        }
        (Method::GET, Some("log")) => logs::serve(&sim, namespace, &name, &query),
        (Method::PUT, None | Some("status")) => {
            replace(&sim, kind, namespace, &name, sub, &query, &headers, &body)
        }
        (Method::PUT, Some("scale")) => {
            let options = WriteOptions::parse(Verb::Update, &query, &headers, None, false)?;
            let scale = parse_object(&headers, &body)?;
            let mut world = sim.world();
            let object = world
                .store
                .get(kind, namespace, &name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(kind, &name))?;
            let stored = apply_scale(
                &mut world.store,
                kind,
                namespace,
                &name,
                object,
                &scale,
                options.dry_run,
            )?;
            Ok(json_ok(&scale_of(&stored)))
        }
        (Method::PATCH, _) => {
            patch_object(&sim, kind, namespace, &name, sub, &query, &headers, &body)
        }
        (Method::DELETE, None) => delete(&sim, kind, namespace, &name, &query, &headers, &body),
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// Answers an object, as a Table when the client asks for one (kubectl).
fn respond_object(code: StatusCode, object: &Value, headers: &HeaderMap) -> Response {
    if wants_table(headers)
        && let Some(table) = table::for_objects(std::slice::from_ref(object), None)
    {
        return json_response(code, &table);
    }
    json_response(code, object)
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

fn parse_object(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    match essence {
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid YAML: {e}"))),
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"))),
        protobuf::MEDIA_TYPE => protobuf::decode(body).map_err(|e| match e {
            protobuf::Error::UnknownKind { .. } => ApiError::unsupported(e.to_string()),
            protobuf::Error::Malformed(_) => ApiError::bad_request(e.to_string()),
        }),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn list(
    sim: &Sim,
    kind: Kind,
    namespace: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(kind, query)?;
    let page = Page::parse(query)?;
    let world = sim.world();
    // A continued list answers the resourceVersion of its first page.
    let rv = page
        .after
        .as_ref()
        .map_or_else(|| world.store.resource_version(), |a| a.rv);
    let mut items: Vec<Value> = world
        .store
        .list(kind, namespace)
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches_object(o))
        .filter(|o| page.after.as_ref().is_none_or(|a| key_of(o) > a.key))
        .cloned()
        .collect();
    drop(world);
    let mut next = None;
    if let Some(limit) = page.limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().map(key_of).unwrap_or_default();
        next = Some((Continue { rv, key: last }.token(), remaining));
    }
    let paged = |metadata: &mut Value| {
        if let Some((token, remaining)) = &next {
            metadata["continue"] = json!(token);
            metadata["remainingItemCount"] = json!(remaining);
        }
    };
    if wants_table(headers)
        && let Some(mut table) = table::for_objects(&items, Some(rv))
    {
        paged(&mut table["metadata"]);
        return Ok(json_ok(&table));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    paged(&mut metadata);
    Ok(json_ok(&json!({
        "kind": format!("{}List", kind.kind()),
        "apiVersion": kind.api_version(),
        "metadata": metadata,
        "items": items,
    })))
}

/// Where a list goes on from: the resourceVersion of its first page and
/// the (namespace, name) of the last object it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Continue {
    rv: u64,
    key: (String, String),
}

impl Continue {
    /// The opaque `continue` token of a list page.
    fn token(&self) -> String {
        hex::encode(
            json!({"v": 1, "rv": self.rv, "ns": self.key.0, "name": self.key.1}).to_string(),
        )
    }

    fn parse(token: &str) -> Result<Continue, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "continue key is not valid: it was not made by this server".to_string(),
            )
        };
        let bytes = hex::decode(token).map_err(|_| bad())?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        match (
            value["v"].as_u64(),
            value["rv"].as_u64(),
            value["ns"].as_str(),
            value["name"].as_str(),
        ) {
            (Some(1), Some(rv), Some(ns), Some(name)) => Ok(Continue {
                rv,
                key: (ns.to_string(), name.to_string()),
            }),
            _ => Err(bad()),
        }
    }
}

/// A list's `limit` (absent or 0: everything) and `continue`.
struct Page {
    limit: Option<usize>,
    after: Option<Continue>,
}

impl Page {
    fn parse(query: &Query) -> Result<Page, ApiError> {
        let limit = match query.get("limit").map(String::as_str) {
            None | Some("") => None,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n > 0 => Some(n as usize),
                Ok(_) => None,
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "limit: '{text}' is not a whole number"
                    )));
                }
            },
        };
        let after = match query.get("continue").map(String::as_str) {
            None | Some("") => None,
            Some(token) => Some(Continue::parse(token)?),
        };
        Ok(Page { limit, after })
    }
}

/// An object's place in a list: (namespace, name).
fn key_of(object: &Value) -> (String, String) {
    let text = |field: &str| {
        object["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (text("namespace"), text("name"))
}

fn create(
    sim: &Sim,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let options = WriteOptions::parse(Verb::Create, query, headers, None, false)?;
    let object = parse_object(headers, body)?;
    let warnings = check_unknown_fields(&options, target.kind, &object, Some(body))?;
    let write = Write::update(options.manager.clone(), None);
    let stored = sim.world().store.create_managed(
        target.kind,
        &target.namespace,
        object,
        options.dry_run,
        Some(&write),
    )?;
    Ok(warned(
        json_response(StatusCode::CREATED, &stored),
        &warnings,
    ))
}

/// PUT of an object or its status.
#[allow(clippy::too_many_arguments)]
fn replace(
    sim: &Sim,
    kind: Kind,
    namespace: &str,
    name: &str,
    sub: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let options = WriteOptions::parse(Verb::Update, query, headers, None, false)?;
    let object = parse_object(headers, body)?;
    let warnings = check_unknown_fields(&options, kind, &object, Some(body))?;
    let part = if sub == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let write = Write::update(options.manager.clone(), sub);
    let stored = sim.world().store.update_managed(
        kind,
        namespace,
        name,
        object,
        part,
        options.dry_run,
        Some(&write),
    )?;
    Ok(warned(json_ok(&stored), &warnings))
}

/// A response with `Warning` headers.
fn warned(mut response: Response, warnings: &[String]) -> Response {
    add_warnings(response.headers_mut(), warnings);
    response
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    sim: &Sim,
    kind: Kind,
    namespace: &str,
    name: &str,
    sub: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let patch_kind = PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
    let apply = patch_kind == PatchKind::Apply;
    let options = WriteOptions::parse(Verb::Patch, query, headers, None, apply)?;
    let patch_body = patch::parse_body(patch_kind, body).map_err(ApiError::bad_request)?;
    let dry_run = options.dry_run;
    let owned_sub = sub.filter(|s| *s == "status");
    let write = if apply {
        Write {
            manager: options.manager.clone(),
            operation: Operation::Apply,
            subresource: owned_sub.map(String::from),
            applied: managed_fields::applied_fields(&patch_body, owned_sub),
            force: options.force,
        }
    } else {
        Write::update(options.manager.clone(), owned_sub)
    };
    let mut world = sim.world();
    let Some(existing) = world.store.get(kind, namespace, name).cloned() else {
        if apply && sub.is_none() {
            // Server-side apply creates what does not exist yet.
            let mut object = patch_body;
            if object.get("metadata").is_none() {
                object["metadata"] = json!({});
            }
            object["metadata"]["name"] = name.into();
            let warnings = check_unknown_fields(&options, kind, &object, None)?;
            let stored =
                world
                    .store
                    .create_managed(kind, namespace, object, dry_run, Some(&write))?;
            return Ok(warned(
                json_response(StatusCode::CREATED, &stored),
                &warnings,
            ));
        }
        return Err(ApiError::not_found(kind, name));
    };
    if sub == Some("scale") {
        let mut scale = scale_of(&existing);
        patch::apply(patch_kind, &mut scale, &patch_body)
            .map_err(|e| patch_error(kind, name, e))?;
        let stored = apply_scale(
            &mut world.store,
            kind,
            namespace,
            name,
            existing,
            &scale,
            dry_run,
        )?;
        return Ok(json_ok(&scale_of(&stored)));
    }
    let mut patched = existing;
    if apply {
        // Fields this manager applied before and no longer applies go,
        // unless another manager owns them.
        let previous = managed_fields::entries_of(&patched);
        managed_fields::prune(&mut patched, &previous, &write);
    }
    patch::apply(patch_kind, &mut patched, &patch_body).map_err(|e| patch_error(kind, name, e))?;
    let warnings = check_unknown_fields(&options, kind, &patched, None)?;
    let part = if sub == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let stored =
        world
            .store
            .update_managed(kind, namespace, name, patched, part, dry_run, Some(&write))?;
    Ok(warned(json_ok(&stored), &warnings))
}

fn patch_error(kind: Kind, name: &str, message: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{} \"{name}\" is invalid: the patch could not be applied: {message}",
            kind.qualified_kind()
        ),
        details: None,
    }
}

/// The `autoscaling/v1` Scale of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .map(|s| selector_string(&s))
        .unwrap_or_default();
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// `app=web,tier in (a,b)` from a LabelSelector.
pub fn selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    terms.join(",")
}

fn apply_scale(
    store: &mut super::store::Store,
    kind: Kind,
    namespace: &str,
    name: &str,
    mut object: Value,
    scale: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        && !rv.is_empty()
        && Some(rv)
            != object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(ApiError::conflict(kind, name));
    }
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            kind,
            name,
            &[(
                "spec.replicas".into(),
                "Invalid value: must be greater than or equal to 0".into(),
            )],
        ));
    }
    object["spec"]["replicas"] = replicas.into();
    store
        .update(kind, namespace, name, object, Part::Main, dry_run)
        .map(std::sync::Arc::unwrap_or_clone)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
    preconditions: Option<Preconditions>,
    /// `["All"]` from `kubectl delete --dry-run=server`.
    dry_run: Option<Vec<String>>,
    /// Seconds a pod gets to stop (`kubectl delete --grace-period`).
    grace_period_seconds: Option<i64>,
}

impl DeleteOptions {
    /// The DeleteOptions body of a delete or deletecollection (none: the
    /// defaults).
    fn parse(body: &[u8]) -> Result<DeleteOptions, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeleteOptions::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))
    }

    /// The grace period, from the query (first) and the body.
    fn grace(&self, query: &Query) -> Result<Option<i64>, ApiError> {
        match query.get("gracePeriodSeconds") {
            Some(text) => text.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {text:?}"))
            }),
            None => Ok(self.grace_period_seconds),
        }
    }

    /// Cascade or orphan, from the query (first) and the body.
    fn propagation(&self, query: &Query) -> Propagation {
        let policy = query
            .get("propagationPolicy")
            .cloned()
            .or_else(|| self.propagation_policy.clone());
        let orphan = policy.as_deref() == Some("Orphan")
            || self.orphan_dependents == Some(true)
            || query.get("orphanDependents").is_some_and(|v| v == "true");
        if orphan {
            Propagation::Orphan
        } else {
            Propagation::Cascade
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete(
    sim: &Sim,
    kind: Kind,
    namespace: &str,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let options = DeleteOptions::parse(body)?;
    let write_options = WriteOptions::parse(
        Verb::Delete,
        query,
        headers,
        options.dry_run.as_deref(),
        false,
    )?;
    let propagation = options.propagation(query);
    let grace = options.grace(query)?;
    let mut world = sim.world();
    let existing = world
        .store
        .get(kind, namespace, name)
        .ok_or_else(|| ApiError::not_found(kind, name))?;
    if let Some(pre) = options.preconditions {
        let uid = existing.pointer("/metadata/uid").and_then(Value::as_str);
        let rv = existing
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if pre.uid.is_some_and(|u| Some(u.as_str()) != uid)
            || pre.resource_version.is_some_and(|r| Some(r.as_str()) != rv)
        {
            return Err(ApiError::conflict(kind, name));
        }
    }
    if kind == Kind::Pod {
        // Pods go gracefully, and answer themselves marked as being deleted.
        let mut deleted = std::sync::Arc::unwrap_or_clone(world.store.delete_pod(
            namespace,
            name,
            grace,
            write_options.dry_run,
        )?);
        drop(world);
        // One gone at once (or that would be, in a dry run) is answered
        // as deleted now, with no grace period.
        if deleted.pointer("/metadata/deletionTimestamp").is_none() {
            deleted["metadata"]["deletionTimestamp"] = super::store::now_timestamp().into();
            deleted["metadata"]["deletionGracePeriodSeconds"] = 0.into();
        }
        return Ok(json_ok(&deleted));
    }
    let deleted = world
        .store
        .delete(kind, namespace, name, propagation, write_options.dry_run)?;
    drop(world);
    let uid = deleted
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(json_ok(&success_status(kind, name, uid)))
}

fn delete_collection(
    sim: &Sim,
    kind: Kind,
    namespace: Option<&str>,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let options = DeleteOptions::parse(body)?;
    let write_options = WriteOptions::parse(
        Verb::Delete,
        query,
        headers,
        options.dry_run.as_deref(),
        false,
    )?;
    let propagation = options.propagation(query);
    let (labels, fields) = selectors(kind, query)?;
    let mut world = sim.world();
    let doomed: Vec<(String, String)> = world
        .store
        .list(kind, namespace)
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches_object(o))
        .map(|o| {
            let ns = o["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (ns, name)
        })
        .collect();
    let grace = options.grace(query)?;
    let mut items = Vec::new();
    for (ns, name) in doomed {
        let deleted = if kind == Kind::Pod {
            world
                .store
                .delete_pod(&ns, &name, grace, write_options.dry_run)
        } else {
            world
                .store
                .delete(kind, &ns, &name, propagation, write_options.dry_run)
        };
        if let Ok(deleted) = deleted {
            items.push(deleted);
        }
    }
    let rv = world.store.resource_version();
    Ok(json_ok(&json!({
        "kind": format!("{}List", kind.kind()),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths_parse_into_targets() {
        let t = parse_resource_path("/apis/apps/v1/namespaces/prod/deployments/web/scale").unwrap();
        assert_eq!(
            t,
            Target {
                kind: Kind::Deployment,
                namespace: "prod".into(),
                name: Some("web".into()),
                sub: Some("scale".into())
            }
        );
        let list = parse_resource_path("/api/v1/namespaces/prod/pods").unwrap();
        assert_eq!((list.kind, list.name), (Kind::Pod, None));
        let all = parse_resource_path("/api/v1/pods").unwrap();
        assert_eq!((all.kind, all.namespace.as_str()), (Kind::Pod, ""));
        let ns = parse_resource_path("/api/v1/namespaces/prod").unwrap();
        assert_eq!(
            (ns.kind, ns.name.as_deref()),
            (Kind::Namespace, Some("prod"))
        );
        let ns_status = parse_resource_path("/api/v1/namespaces/prod/status").unwrap();
        assert_eq!(ns_status.sub.as_deref(), Some("status"));
        assert!(parse_resource_path("/apis/apps/v1/namespaces/prod/pods").is_none());
        assert!(parse_resource_path("/api/v1/pods/web").is_none());
    }
}
