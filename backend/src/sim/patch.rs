//! The PATCH flavours the API server accepts: JSON merge patch (RFC 7386),
//! JSON patch (RFC 6902), strategic merge patch (lists merged by their
//! Kubernetes merge key, `$patch`, `$setElementOrder`, `$retainKeys`,
//! `$deleteFromPrimitiveList` directives) and server-side apply (modelled as
//! a strategic merge of the applied configuration).

use serde_json::{Map, Value};

/// The content types of PATCH requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    /// Recognises the content type, ignoring parameters such as charset.
    pub fn from_content_type(content_type: &str) -> Option<PatchKind> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match essence {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Parses a patch body (YAML for apply, JSON otherwise).
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, String> {
    match kind {
        PatchKind::Apply => serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()),
    }
}

/// Applies `patch` to `target` in place.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), String> {
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".into());
            }
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchKind::Json => {
            let operations: json_patch::Patch =
                serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
            json_patch::patch(target, &operations).map_err(|e| e.to_string())
        }
        PatchKind::Strategic | PatchKind::Apply => strategic_merge(target, patch),
    }
}

/// Strategic merge patch of `patch` into `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(patch) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    merge_map(target, patch, &mut path)
}

/// The key list elements are merged by, for a list field at `path`
/// (the object keys leading to it), as Kubernetes' `patchMergeKey` tags say.
fn merge_key(path: &[String], field: &str) -> Option<&'static str> {
    let in_container = path.iter().any(|p| {
        matches!(
            p.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if in_container => Some("containerPort"),
        "ports" => Some("port"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        _ => None,
    }
}

/// Lists of scalars merged as sets rather than replaced.
fn is_merged_scalar_list(field: &str) -> bool {
    field == "finalizers"
}

fn merge_map(
    target: &mut Value,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(directive) = patch.get("$patch") {
        match directive.as_str() {
            Some("replace") => {
                *target = strip_directives(&Value::Object(patch.clone()));
                return Ok(());
            }
            Some("delete") => {
                *target = Value::Object(Map::new());
                return Ok(());
            }
            Some("merge") => {}
            other => return Err(format!("unknown patch directive {other:?}")),
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            if let Value::Array(order) = value {
                orders.push((field.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let doomed = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !doomed.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let object = target.as_object_mut().ok_or("target is not an object")?;
        match value {
            Value::Null => {
                object.remove(key);
            }
            Value::Object(inner)
                if inner.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                object.remove(key);
            }
            Value::Object(inner) => {
                let slot = object.entry(key.clone()).or_insert(Value::Null);
                path.push(key.clone());
                let result = merge_map(slot, inner, path);
                path.pop();
                result?;
            }
            Value::Array(items) => {
                let slot = object.entry(key.clone()).or_insert(Value::Null);
                merge_list(slot, items, key, path)?;
            }
            scalar => {
                object.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (field, order) in orders {
        let key = merge_key(path, &field);
        if let Some(Value::Array(list)) = target.get_mut(&field) {
            reorder(list, &order, key);
        }
    }
    if let Some(Value::Array(retain)) = patch.get("$retainKeys")
        && let Some(object) = target.as_object_mut()
    {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        object.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(
    target: &mut Value,
    items: &[Value],
    field: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    let replace_all = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let key = merge_key(path, field);
    if replace_all || (key.is_none() && !is_merged_scalar_list(field)) || !target.is_array() {
        let kept: Vec<Value> = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        *target = Value::Array(kept);
        return Ok(());
    }
    let list = target.as_array_mut().ok_or("target is not a list")?;
    let Some(key) = key else {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return Ok(());
    };
    for item in items {
        let Value::Object(patch_item) = item else {
            return Err(format!("{field}: list items must be objects with {key}"));
        };
        let id = patch_item.get(key).cloned().unwrap_or(Value::Null);
        let position = list
            .iter()
            .position(|existing| existing.get(key) == Some(&id));
        if patch_item.get("$patch").and_then(Value::as_str) == Some("delete") {
            list.retain(|existing| existing.get(key) != Some(&id));
            continue;
        }
        path.push(field.to_string());
        let result = match position {
            Some(i) => merge_map(&mut list[i], patch_item, path),
            None => {
                let mut fresh = Value::Object(Map::new());
                let result = merge_map(&mut fresh, patch_item, path);
                list.push(fresh);
                result
            }
        };
        path.pop();
        result?;
    }
    Ok(())
}

/// Puts the elements named in `order` first, in that order; the others keep
/// their relative order after them.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let identity = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let wanted: Vec<Value> = order.iter().map(&identity).collect();
    let mut ranked: Vec<(usize, usize, Value)> = list
        .drain(..)
        .enumerate()
        .map(|(i, v)| {
            let rank = wanted
                .iter()
                .position(|w| *w == identity(&v))
                .unwrap_or(usize::MAX);
            (rank, i, v)
        })
        .collect();
    ranked.sort_by_key(|(rank, i, _)| (*rank, *i));
    list.extend(ranked.into_iter().map(|(_, _, v)| v));
}

/// A copy without `$…` directive keys, for content inserted as is.
fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
            "spec": {"template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "name": "http"}]},
                    {"name": "sidecar", "image": "side:1"}
                ],
                "tolerations": [{"key": "x"}]
            }}}
        })
    }

    fn smp(patch: Value) -> Value {
        let mut target = deployment();
        strategic_merge(&mut target, &patch).unwrap();
        target
    }

    #[test]
    fn strategic_merge_merges_containers_and_env_by_name() {
        let result = smp(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
        ]}}}}));
        let containers = &result["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2);
        assert_eq!(containers[0]["image"], "app:2");
        assert_eq!(containers[1]["image"], "side:1");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(
            containers[0]["ports"],
            json!([{"containerPort": 80, "name": "http"}])
        );
    }

    #[test]
    fn strategic_merge_merges_container_ports_by_container_port() {
        let result = smp(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 9090}]}
        ]}}}}));
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "web"}, {"containerPort": 9090}])
        );
    }

    #[test]
    fn strategic_merge_honours_delete_and_replace_directives() {
        let deleted = smp(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"}
        ]}}}}));
        let containers = deleted["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "app");

        let replaced = smp(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "only", "image": "only:1"}, {"$patch": "replace"}
        ]}}}}));
        assert_eq!(
            replaced["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "only:1"}])
        );

        let labels = smp(json!({"metadata": {"labels": {"$patch": "replace", "new": "x"}}}));
        assert_eq!(labels["metadata"]["labels"], json!({"new": "x"}));

        let gone = smp(json!({"metadata": {"labels": {"$patch": "delete"}}}));
        assert!(gone["metadata"].get("labels").is_none());
    }

    #[test]
    fn strategic_merge_replaces_lists_without_merge_key_and_deletes_nulls() {
        let result = smp(json!({
            "metadata": {"labels": {"tier": null}, "finalizers": ["b"]},
            "spec": {"template": {"spec": {"tolerations": [{"key": "y"}]}}}
        }));
        assert_eq!(result["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(result["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            result["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "y"}])
        );
    }

    #[test]
    fn strategic_merge_orders_elements_as_kubectl_asks() {
        // What `kubectl set image` sends.
        let result = smp(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "app:3"}]
        }}}}));
        let containers = &result["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "sidecar");
        assert_eq!(containers[1]["image"], "app:3");
        assert!(
            result["spec"]["template"]["spec"]
                .get("$setElementOrder/containers")
                .is_none()
        );
    }

    #[test]
    fn strategic_merge_retain_keys_and_primitive_list_deletion() {
        let mut target = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "finalizers": ["a", "b"]});
        strategic_merge(
            &mut target,
            &json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
                    "$deleteFromPrimitiveList/finalizers": ["a"]}),
        )
        .unwrap();
        assert_eq!(
            target,
            json!({"strategy": {"type": "Recreate"}, "finalizers": ["b"]})
        );
    }

    #[test]
    fn merge_patch_replaces_lists_and_json_patch_follows_rfc_6902() {
        let mut target = deployment();
        apply(
            PatchKind::Merge,
            &mut target,
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "x:1"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            target["spec"]["template"]["spec"]["containers"],
            json!([{"name": "x", "image": "x:1"}])
        );

        let mut target = deployment();
        apply(
            PatchKind::Json,
            &mut target,
            &json!([
                {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "app:9"},
                {"op": "test", "path": "/metadata/name", "value": "web"},
                {"op": "remove", "path": "/metadata/labels/tier"}
            ]),
        )
        .unwrap();
        assert_eq!(
            target["spec"]["template"]["spec"]["containers"][0]["image"],
            "app:9"
        );
        assert_eq!(target["metadata"]["labels"], json!({"app": "web"}));

        let failing = apply(
            PatchKind::Json,
            &mut deployment(),
            &json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
        );
        assert!(failing.is_err());
    }

    #[test]
    fn content_types_are_recognised_with_parameters() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml"),
            Some(PatchKind::Apply)
        );
        assert_eq!(PatchKind::from_content_type("text/plain"), None);
    }
}
