//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for when
//! it shows `kubectl get` output, with the columns the real API server
//! prints for each kind.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// A Table of `objects` (all of one kind), or `None` for an empty slice of
/// unknown kind.
pub fn for_objects(objects: &[Value], resource_version: Option<u64>) -> Option<Value> {
    let kind = objects
        .first()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_string());
    if let Some(table) = kind
        .as_deref()
        .and_then(|k| super::kinds_table::for_objects(k, objects, resource_version))
    {
        return Some(table);
    }
    let columns: &[(&str, &str)] = match kind.as_deref() {
        Some("Deployment") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        Some("ReplicaSet") => &[
            ("Name", "string"),
            ("Desired", "integer"),
            ("Current", "integer"),
            ("Ready", "integer"),
            ("Age", "string"),
        ],
        Some("Pod") => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
        ],
        Some("Service") => &[
            ("Name", "string"),
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("External-IP", "string"),
            ("Port(s)", "string"),
            ("Age", "string"),
        ],
        Some("Ingress") => &[
            ("Name", "string"),
            ("Class", "string"),
            ("Hosts", "string"),
            ("Address", "string"),
            ("Ports", "string"),
            ("Age", "string"),
        ],
        Some("Namespace") => &[("Name", "string"), ("Status", "string"), ("Age", "string")],
        Some("Event") => &[
            ("Last Seen", "string"),
            ("Type", "string"),
            ("Reason", "string"),
            ("Object", "string"),
            ("Message", "string"),
        ],
        // An empty list: kubectl prints "No resources found" from any table.
        None => &[("Name", "string"), ("Age", "string")],
        Some(_) => return None,
    };
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|(name, type_)| {
            json!({
                "name": name,
                "type": type_,
                "format": if *name == "Name" { "name" } else { "" },
                "description": "",
                "priority": 0,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": cells(o), "object": partial_metadata(o)}))
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.to_string().into();
    }
    Some(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    }))
}

fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object["metadata"],
    })
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn cells(o: &Value) -> Vec<Value> {
    let name = text(o, "/metadata/name");
    let age = age(text(o, "/metadata/creationTimestamp"));
    match text(o, "/kind") {
        "Deployment" => vec![
            name.into(),
            format!(
                "{}/{}",
                int(o, "/status/readyReplicas"),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )
            .into(),
            int(o, "/status/updatedReplicas").into(),
            int(o, "/status/availableReplicas").into(),
            age.into(),
        ],
        "ReplicaSet" => vec![
            name.into(),
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .into(),
            int(o, "/status/replicas").into(),
            int(o, "/status/readyReplicas").into(),
            age.into(),
        ],
        "Pod" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter()
                    .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                    .sum()
            });
            let phase = text(o, "/status/phase");
            let status = if phase.is_empty() { "Pending" } else { phase };
            vec![
                name.into(),
                format!("{ready}/{total}").into(),
                status.into(),
                restarts.to_string().into(),
                age.into(),
            ]
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cluster_ip = text(o, "/spec/clusterIP");
            vec![
                name.into(),
                text(o, "/spec/type").into(),
                if cluster_ip.is_empty() {
                    "<none>"
                } else {
                    cluster_ip
                }
                .into(),
                "<none>".into(),
                if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }
                .into(),
                age.into(),
            ]
        }
        "Ingress" => {
            let hosts: Vec<&str> = o
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .map(|rules| rules.iter().filter_map(|r| r["host"].as_str()).collect())
                .unwrap_or_default();
            let class = text(o, "/spec/ingressClassName");
            vec![
                name.into(),
                if class.is_empty() { "<none>" } else { class }.into(),
                if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }
                .into(),
                "".into(),
                "80".into(),
                age.into(),
            ]
        }
        "Event" => {
            // Core events name their object `involvedObject`, events.k8s.io
            // ones `regarding`.
            let object = o
                .get("involvedObject")
                .or_else(|| o.get("regarding"))
                .unwrap_or(&Value::Null);
            let seen = [
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .map(|p| text(o, p))
            .find(|t| !t.is_empty())
            .unwrap_or_default();
            let message = o
                .get("message")
                .or_else(|| o.get("note"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            vec![
                self::age(seen).into(),
                text(o, "/type").into(),
                text(o, "/reason").into(),
                format!(
                    "{}/{}",
                    object["kind"].as_str().unwrap_or_default().to_lowercase(),
                    object["name"].as_str().unwrap_or_default()
                )
                .into(),
                message.into(),
            ]
        }
        _ => vec![name.into(), text(o, "/status/phase").into(), age.into()],
    }
}

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 time.
pub(super) fn age(since: &str) -> String {
    let Ok(then) = since.parse::<Timestamp>() else {
        return "<unknown>".into();
    };
    let seconds = Timestamp::now().as_second() - then.as_second();
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_print_ready_over_desired() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
                       "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let table = for_objects(&[d], Some(7)).unwrap();
        assert_eq!(table["rows"][0]["cells"][0], "web");
        assert_eq!(table["rows"][0]["cells"][1], "2/3");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        assert!(
            table["rows"][0]["cells"][4]
                .as_str()
                .unwrap()
                .ends_with('d')
        );
    }
}
