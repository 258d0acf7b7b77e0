//! The endpoints controllers: for each Service with a selector, the
//! `Endpoints` of the same name and its `discovery.k8s.io/v1`
//! EndpointSlices list the pods it selects that have an IP — ready ones as
//! addresses (`conditions.ready`), the others as notReadyAddresses — with
//! the Service's ports, a named targetPort resolved against each pod's
//! container ports. They follow pods as they come, become ready and go;
//! deleting the Service deletes them (the slices as its dependents).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::kinds::Kind;
use super::kubelet::NODE_NAME;
use super::selector::LabelQuery;
use super::store::{Key, Part, Propagation, Store};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// One Service port as served by one pod: `(name, port, protocol)`.
type Port = (String, i64, String);

/// One pod behind a Service.
struct Backend {
    ip: String,
    ready: bool,
    node: String,
    target: Value,
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The selector of a Service the controller keeps endpoints for.
fn selector_of(service: &Value) -> Option<LabelQuery> {
    if text(service, "/spec/type") == "ExternalName" {
        return None;
    }
    let selector = service.pointer("/spec/selector")?.as_object()?;
    if selector.is_empty() {
        return None;
    }
    let labels: BTreeMap<String, String> = selector
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    Some(LabelQuery::from_selector(
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(labels),
            match_expressions: None,
        },
    ))
}

/// A pod changed (or went): every Service with a selector in its namespace
/// looks again.
pub fn pod_changed(store: &mut Store, pod: &Key) {
    let services: Vec<Key> = store
        .list(Kind::Service, Some(&pod.0))
        .into_iter()
        .filter(|s| selector_of(s).is_some())
        .map(|s| (pod.0.clone(), text(s, "/metadata/name").to_string()))
        .collect();
    for key in services {
        store.dirty.insert((Kind::Endpoints, key));
    }
}

/// The port a Service port reaches on one pod, if the pod has it.
fn resolve_port(service_port: &Value, pod: &Value) -> Option<i64> {
    match service_port.get("targetPort") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => {
            if let Ok(number) = name.parse::<i64>() {
                return Some(number);
            }
            pod.pointer("/spec/containers")?
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_i64())
        }
        _ => service_port.get("port").and_then(Value::as_i64),
    }
}

fn ip_order(ip: &str) -> (Option<Ipv4Addr>, String) {
    (ip.parse().ok(), ip.to_string())
}

/// Recomputes the Endpoints and EndpointSlices of the Service `key`.
pub fn sync(store: &mut Store, key: &Key) {
    let (namespace, name) = key;
    let Some(service) = store.get(Kind::Service, namespace, name).cloned() else {
        if store.get(Kind::Endpoints, namespace, name).is_some() {
            let _ = store.delete(
                Kind::Endpoints,
                namespace,
                name,
                Propagation::Cascade,
                false,
            );
        }
        return;
    };
    let Some(selector) = selector_of(&service) else {
        return;
    };
    let service_ports: Vec<Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Pods grouped by the ports they serve, as the real controllers group
    // them into subsets and slices.
    let mut groups: BTreeMap<Vec<Port>, Vec<Backend>> = BTreeMap::new();
    for pod in store.list(Kind::Pod, Some(namespace)) {
        let ip = text(pod, "/status/podIP");
        if ip.is_empty()
            || pod.pointer("/metadata/deletionTimestamp").is_some()
            || !selector.matches_object(pod)
        {
            continue;
        }
        let ports: Vec<Port> = service_ports
            .iter()
            .filter_map(|p| {
                Some((
                    p["name"].as_str().unwrap_or_default().to_string(),
                    resolve_port(p, pod)?,
                    p["protocol"].as_str().unwrap_or("TCP").to_string(),
                ))
            })
            .collect();
        if !service_ports.is_empty() && ports.is_empty() {
            continue;
        }
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        let node = Some(text(pod, "/spec/nodeName"))
            .filter(|n| !n.is_empty())
            .unwrap_or(NODE_NAME);
        groups.entry(ports).or_default().push(Backend {
            ip: ip.to_string(),
            ready,
            node: node.to_string(),
            target: json!({
                "kind": "Pod",
                "namespace": namespace,
                "name": text(pod, "/metadata/name"),
                "uid": text(pod, "/metadata/uid"),
            }),
        });
    }
    for backends in groups.values_mut() {
        backends.sort_by_key(|b| ip_order(&b.ip));
    }
    let labels = service
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    write_endpoints(store, key, &labels, &groups);
    write_slices(store, key, &service, &labels, &groups);
}

fn write_endpoints(
    store: &mut Store,
    (namespace, name): &Key,
    labels: &Value,
    groups: &BTreeMap<Vec<Port>, Vec<Backend>>,
) {
    let address = |b: &Backend| json!({"ip": b.ip, "nodeName": b.node, "targetRef": b.target});
    let subsets: Vec<Value> = groups
        .iter()
        .map(|(ports, backends)| {
            let mut subset = json!({});
            let ready: Vec<Value> = backends.iter().filter(|b| b.ready).map(address).collect();
            let not_ready: Vec<Value> = backends.iter().filter(|b| !b.ready).map(address).collect();
            if !ready.is_empty() {
                subset["addresses"] = ready.into();
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = not_ready.into();
            }
            if !ports.is_empty() {
                subset["ports"] = ports
                    .iter()
                    .map(|(port_name, port, protocol)| {
                        let mut p = json!({"port": port, "protocol": protocol});
                        if !port_name.is_empty() {
                            p["name"] = port_name.as_str().into();
                        }
                        p
                    })
                    .collect::<Vec<Value>>()
                    .into();
            }
            subset
        })
        .collect();
    let mut object = match store.get(Kind::Endpoints, namespace, name) {
        Some(existing) => existing.clone(),
        None => json!({"metadata": {"name": name}}),
    };
    match object["metadata"].as_object_mut() {
        Some(meta) if labels.as_object().is_none_or(|l| l.is_empty()) => {
            meta.remove("labels");
        }
        _ => object["metadata"]["labels"] = labels.clone(),
    }
    match object.as_object_mut() {
        Some(map) if subsets.is_empty() => {
            map.remove("subsets");
        }
        _ => object["subsets"] = subsets.into(),
    }
    let result = if object["metadata"].get("uid").is_some() {
        store
            .update(Kind::Endpoints, namespace, name, object, Part::Main, false)
            .map(|_| ())
    } else {
        store
            .create(Kind::Endpoints, namespace, object, false)
            .map(|_| ())
    };
    if let Err(e) = result {
        tracing::debug!(%namespace, %name, error = %e, "simulated endpoints write failed");
    }
}

fn write_slices(
    store: &mut Store,
    (namespace, name): &Key,
    service: &Value,
    labels: &Value,
    groups: &BTreeMap<Vec<Port>, Vec<Backend>>,
) {
    let mut labels = labels.clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[SERVICE_NAME_LABEL] = name.as_str().into();
    labels[MANAGED_BY_LABEL] = MANAGED_BY.into();
    let owner = json!([{
        "apiVersion": "v1",
        "kind": "Service",
        "name": name,
        "uid": text(service, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    // Desired slices: one per port set; a Service without backends keeps
    // one empty slice, as the real controller does.
    let mut desired: Vec<(Value, Value)> = groups
        .iter()
        .map(|(ports, backends)| {
            let ports: Vec<Value> = ports
                .iter()
                .map(|(port_name, port, protocol)| {
                    json!({"name": port_name, "port": port, "protocol": protocol})
                })
                .collect();
            let endpoints: Vec<Value> = backends
                .iter()
                .map(|b| {
                    json!({
                        "addresses": [b.ip],
                        "conditions": {"ready": b.ready, "serving": b.ready, "terminating": false},
                        "nodeName": b.node,
                        "targetRef": b.target,
                    })
                })
                .collect();
            (Value::from(ports), Value::from(endpoints))
        })
        .collect();
    if desired.is_empty() {
        desired.push((json!([]), json!([])));
    }
    let mut existing: Vec<Value> = store
        .list(Kind::EndpointSlice, Some(namespace))
        .into_iter()
        .filter(|s| {
            text(
                s,
                &format!("/metadata/labels/{}", SERVICE_NAME_LABEL.replace('/', "~1")),
            ) == name.as_str()
                && text(
                    s,
                    &format!("/metadata/labels/{}", MANAGED_BY_LABEL.replace('/', "~1")),
                ) == MANAGED_BY
        })
        .cloned()
        .collect();
    for (ports, endpoints) in desired {
        let same_ports = |s: &Value| s.get("ports").cloned().unwrap_or(json!([])) == ports;
        let mut slice = match existing.iter().position(same_ports) {
            Some(i) => existing.remove(i),
            None => json!({"metadata": {"generateName": format!("{name}-")}}),
        };
        slice["metadata"]["labels"] = labels.clone();
        slice["metadata"]["ownerReferences"] = owner.clone();
        slice["addressType"] = "IPv4".into();
        slice["endpoints"] = endpoints;
        match slice.as_object_mut() {
            Some(map) if ports.as_array().is_some_and(Vec::is_empty) => {
                map.remove("ports");
            }
            _ => slice["ports"] = ports,
        }
        let result = match slice["metadata"]["name"].as_str().map(String::from) {
            Some(slice_name) => store
                .update(
                    Kind::EndpointSlice,
                    namespace,
                    &slice_name,
                    slice,
                    Part::Main,
                    false,
                )
                .map(|_| ()),
            None => store
                .create(Kind::EndpointSlice, namespace, slice, false)
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::debug!(%namespace, %name, error = %e, "simulated endpoint slice write failed");
        }
    }
    for stale in existing {
        let _ = store.delete(
            Kind::EndpointSlice,
            namespace,
            text(&stale, "/metadata/name"),
            Propagation::Cascade,
            false,
        );
    }
}
