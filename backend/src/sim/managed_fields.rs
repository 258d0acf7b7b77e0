//! Field ownership as the real API server tracks it in
//! `metadata.managedFields` (structured-merge-diff semantics, for the
//! built-in kinds): every write records which manager set which fields,
//! `Update` entries for ordinary writes (create, replace, patch) and `Apply`
//! entries for server-side apply, whose conflicts with other managers answer
//! 409 unless forced, and whose dropped fields are removed when nobody else
//! owns them.
//!
//! A field path is a list of elements spelled as in `fieldsV1`: `f:name`
//! for a field, `k:{"name":"app"}` for an element of a list keyed by merge
//! keys, `v:"x"` for an element of a set of scalars. Lists without keys,
//! LabelSelectors and key references are atomic: owned as one field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::kinds::Kind;
use super::status::ApiError;

/// A field path, one `fieldsV1` element per step.
pub type Path = Vec<String>;

/// A set of field paths.
pub type FieldSet = BTreeSet<Path>;

/// The operation a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    fn same_owner(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&self.fields),
        });
        if let Some(sub) = &self.subresource {
            entry["subresource"] = sub.as_str().into();
        }
        entry
    }

    fn from_json(value: &Value) -> Option<Entry> {
        let operation = match value.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            _ => Operation::Update,
        };
        Some(Entry {
            manager: value.get("manager")?.as_str()?.to_string(),
            operation,
            api_version: value
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            time: value
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subresource: value
                .get("subresource")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from),
            fields: parse_fields_v1(value.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }

    /// How a conflict names this manager: `"kubectl-set" using apps/v1`
    /// for updates, just the quoted name for appliers.
    fn describe(&self) -> String {
        let mut name = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            name = format!("{name} with subresource {sub:?}");
        }
        match self.operation {
            Operation::Update => format!("{name} using {}", self.api_version),
            Operation::Apply => name,
        }
    }
}

/// The entries of a stored object.
pub fn entries_of(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// What one write tells the store about its author.
#[derive(Debug, Clone)]
pub struct Write {
    pub manager: String,
    pub operation: Operation,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    /// Applies only: the fields of the applied configuration.
    pub applied: FieldSet,
    /// Applies only: take fields other managers own instead of failing.
    pub force: bool,
}

impl Write {
    pub fn update(manager: String, subresource: Option<&str>) -> Write {
        Write {
            manager,
            operation: Operation::Update,
            subresource: subresource.map(String::from),
            applied: FieldSet::new(),
            force: false,
        }
    }

    /// The `managedFields` of `new` after this write replaced `old`
    /// (`None` on create), or 409 with every conflict of an apply.
    pub fn managed_fields(
        &self,
        kind: Kind,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<Value, ApiError> {
        let zero = zero_object(kind);
        let sub = self.subresource.as_deref();
        let before = nodes(&owned_part(old.unwrap_or(&zero), sub));
        let after = nodes(&owned_part(new, sub));
        let changes = compare(&before, &after);
        let previous = old.map(entries_of).unwrap_or_default();
        let me = Entry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: kind.api_version().to_string(),
            time: super::store::now_timestamp(),
            subresource: self.subresource.clone(),
            fields: FieldSet::new(),
        };
        let mut conflicts: Vec<(String, Path)> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut mine: Option<Entry> = None;
        for mut entry in previous {
            if entry.same_owner(&me) {
                mine = Some(entry);
                continue;
            }
            let taken: Vec<Path> = entry
                .fields
                .iter()
                .filter(|p| changes.modified.contains(*p) || changes.added.contains(*p))
                .cloned()
                .collect();
            if self.operation == Operation::Apply && !self.force {
                conflicts.extend(taken.iter().map(|p| (entry.describe(), p.clone())));
            }
            for path in taken.iter().chain(&changes.removed) {
                entry.fields.remove(path);
            }
            entries.push(entry);
        }
        if !conflicts.is_empty() {
            return Err(conflict_error(&conflicts));
        }
        let fields = match self.operation {
            Operation::Apply => self.applied.clone(),
            Operation::Update => {
                let mut fields = mine.as_ref().map(|m| m.fields.clone()).unwrap_or_default();
                fields.extend(changes.modified.iter().cloned());
                fields.extend(changes.added.iter().cloned());
                for path in &changes.removed {
                    fields.remove(path);
                }
                fields
            }
        };
        // Unchanged ownership keeps its time, so a write that changes
        // nothing stays a no-op.
        let time = match &mine {
            Some(m) if m.fields == fields => m.time.clone(),
            _ => me.time.clone(),
        };
        let me = Entry { fields, time, ..me };
        match previous_position(old, &me) {
            Some(i) if i <= entries.len() => entries.insert(i, me),
            _ => entries.push(me),
        }
        entries.retain(|e| !e.fields.is_empty());
        Ok(Value::Array(entries.iter().map(Entry::to_json).collect()))
    }
}

/// Where the writer's entry stood before, to keep the list order stable.
fn previous_position(old: Option<&Value>, me: &Entry) -> Option<usize> {
    old.map(entries_of)?.iter().position(|e| e.same_owner(me))
}

/// 409 as the real server answers a conflicting apply.
fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let message = if let [(manager, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {manager}: {}",
            pretty(path)
        )
    } else {
        let mut by_manager: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
        for (manager, path) in conflicts {
            by_manager.entry(manager).or_default().push(path);
        }
        let mut lines = Vec::new();
        for (manager, paths) in by_manager {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {}", pretty(p))));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, path)| {
            // The cause names the manager without the "using" part.
            let quoted = manager.split(" using ").next().unwrap_or(manager);
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {quoted}"),
                "field": pretty(path),
            })
        })
        .collect();
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        // The real server names no object here, only the causes.
        details: Some(json!({ "causes": causes })),
    }
}

/// `.spec.template.spec.containers[name="app"].image`, as conflicts print
/// a path.
pub fn pretty(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else {
            out.push_str(&format!("[{element}]"));
        }
    }
    out
}

/// The `fieldsV1` tree of a set: a member with children gets `".": {}`.
pub fn fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            node = node
                .entry(element.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
        node.insert(".".into(), json!({}));
    }
    Value::Object(tidy(root))
}

/// Drops the `"."` of leaves: `{"f:image": {}}`, not `{"f:image": {".": {}}}`.
fn tidy(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .map(|(k, v)| match v {
            Value::Object(inner) => {
                let inner = if inner.len() == 1 && inner.contains_key(".") {
                    Map::new()
                } else {
                    tidy(inner)
                };
                (k, Value::Object(inner))
            }
            other => (k, other),
        })
        .collect()
}

/// The set a `fieldsV1` tree spells.
pub fn parse_fields_v1(value: &Value) -> FieldSet {
    fn walk(map: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        for (key, child) in map {
            if key == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(key.clone());
            match child.as_object() {
                Some(inner) if !inner.is_empty() => walk(inner, path, out),
                _ => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(map) = value.as_object() {
        walk(map, &mut Vec::new(), &mut out);
    }
    out
}

/// What a node of an object is, for ownership.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A scalar, an atomic list or an atomic map: owned whole.
    Leaf(Value),
    /// A map whose fields are owned one by one (`true` when empty).
    Map(bool),
    /// An element of a keyed list or set.
    Item,
}

/// Every node of an object, by path.
fn nodes(object: &Value) -> BTreeMap<Path, Node> {
    let mut out = BTreeMap::new();
    if let Value::Object(map) = object {
        walk_map(map, &mut Vec::new(), &mut out);
    }
    out
}

fn walk_map(map: &Map<String, Value>, path: &mut Path, out: &mut BTreeMap<Path, Node>) {
    for (key, value) in map {
        path.push(format!("f:{key}"));
        walk_value(key, value, path, out);
        path.pop();
    }
}

fn walk_value(field: &str, value: &Value, path: &mut Path, out: &mut BTreeMap<Path, Node>) {
    match value {
        Value::Object(map) if !is_atomic_map(field, map) => {
            out.insert(path.clone(), Node::Map(map.is_empty()));
            walk_map(map, path, out);
        }
        Value::Array(items) => match list_type(path, field) {
            ListType::Atomic => {
                out.insert(path.clone(), Node::Leaf(value.clone()));
            }
            ListType::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone(), Node::Leaf(item.clone()));
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    let Value::Object(fields) = item else {
                        continue;
                    };
                    path.push(key_element(keys, fields));
                    out.insert(path.clone(), Node::Item);
                    walk_map(fields, path, out);
                    path.pop();
                }
            }
        },
        // Nulls mean "absent" to the real server.
        Value::Null => {}
        other => {
            out.insert(path.clone(), Node::Leaf(other.clone()));
        }
    }
}

/// LabelSelectors and key references, atomic in the Kubernetes schema.
fn is_atomic_map(field: &str, map: &Map<String, Value>) -> bool {
    match field {
        "selector" | "labelSelector" | "namespaceSelector" => {
            !map.is_empty()
                && map
                    .keys()
                    .all(|k| k == "matchLabels" || k == "matchExpressions")
        }
        "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef" => true,
        _ => false,
    }
}

enum ListType {
    Atomic,
    Set,
    Map(&'static [&'static str]),
}

/// How the schema of the built-in kinds types a list field
/// (`x-kubernetes-list-type` and `-list-map-keys`).
fn list_type(path: &Path, field: &str) -> ListType {
    let in_container = path.iter().any(|p| {
        matches!(
            p.as_str(),
            "f:containers" | "f:initContainers" | "f:ephemeralContainers"
        )
    });
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListType::Map(&["name"]),
        "ports" if in_container => ListType::Map(&["containerPort", "protocol"]),
        "ports" => ListType::Map(&["port", "protocol"]),
        "volumeMounts" => ListType::Map(&["mountPath"]),
        "volumeDevices" => ListType::Map(&["devicePath"]),
        "conditions" => ListType::Map(&["type"]),
        "ownerReferences" => ListType::Map(&["uid"]),
        "hostAliases" => ListType::Map(&["ip"]),
        "topologySpreadConstraints" => ListType::Map(&["topologyKey", "whenUnsatisfiable"]),
        "finalizers" => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// `k:{"containerPort":80,"protocol":"TCP"}`: the keys in name order, a
/// missing protocol as its default.
fn key_element(keys: &[&str], fields: &Map<String, Value>) -> String {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let parts: Vec<String> = sorted
        .into_iter()
        .filter_map(|k| {
            let value = match fields.get(k) {
                Some(v) if !v.is_null() => v.clone(),
                _ if k == "protocol" => Value::from("TCP"),
                _ => return None,
            };
            Some(format!("{}:{value}", Value::from(k)))
        })
        .collect();
    format!("k:{{{}}}", parts.join(","))
}

/// The part of an object ownership is tracked for: no identity or server
/// fields, no status for the main resource, only status for `/status`.
fn owned_part(object: &Value, subresource: Option<&str>) -> Value {
    let mut part = object.clone();
    let Some(map) = part.as_object_mut() else {
        return json!({});
    };
    map.remove("apiVersion");
    map.remove("kind");
    if subresource == Some("status") {
        map.retain(|k, _| k == "status");
        return part;
    }
    map.remove("status");
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    part
}

/// The fields an apply configuration sets (leaves, list elements and empty
/// maps; maps with fields are not owned as such).
pub fn applied_fields(config: &Value, subresource: Option<&str>) -> FieldSet {
    nodes(&owned_part(config, subresource))
        .into_iter()
        .filter(|(_, node)| !matches!(node, Node::Map(false)))
        .map(|(path, _)| path)
        .collect()
}

/// What an empty object of a kind already has: structs that are never
/// absent in the API server's types, so a create does not own them as such.
fn zero_object(kind: Kind) -> Value {
    match kind {
        Kind::Deployment => json!({"metadata": {}, "spec": {
            "template": {"metadata": {}, "spec": {}}, "strategy": {}
        }}),
        Kind::ReplicaSet => json!({"metadata": {}, "spec": {
            "template": {"metadata": {}, "spec": {}}
        }}),
        Kind::Pod | Kind::Service | Kind::Namespace | Kind::Ingress => {
            json!({"metadata": {}, "spec": {}})
        }
        _ => json!({"metadata": {}}),
    }
}

struct Changes {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

fn compare(before: &BTreeMap<Path, Node>, after: &BTreeMap<Path, Node>) -> Changes {
    let mut changes = Changes {
        added: FieldSet::new(),
        modified: FieldSet::new(),
        removed: FieldSet::new(),
    };
    for (path, node) in after {
        match before.get(path) {
            None => {
                changes.added.insert(path.clone());
            }
            Some(old)
                if old != node
                    && matches!((old, node), (Node::Leaf(_), _) | (_, Node::Leaf(_))) =>
            {
                changes.modified.insert(path.clone());
            }
            Some(_) => {}
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            changes.removed.insert(path.clone());
        }
    }
    changes
}

/// Removes from `object` the fields `manager` applied before and no longer
/// applies, unless another manager owns them (or something inside them).
pub fn prune(object: &mut Value, previous: &[Entry], write: &Write) {
    let Some(mine) = previous.iter().find(|e| {
        e.manager == write.manager
            && e.operation == Operation::Apply
            && e.subresource == write.subresource
    }) else {
        return;
    };
    let others: FieldSet = previous
        .iter()
        .filter(|e| !std::ptr::eq(*e, mine))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let doomed: Vec<&Path> = mine
        .fields
        .iter()
        .filter(|p| !write.applied.contains(*p))
        .filter(|p| !others.iter().any(|o| o.starts_with(p)))
        .collect();
    // What is inside a removed element goes with it.
    let outermost: Vec<&Path> = doomed
        .iter()
        .filter(|p| !doomed.iter().any(|q| q.len() < p.len() && p.starts_with(q)))
        .copied()
        .collect();
    for path in outermost {
        remove_at(object, path);
    }
}

/// Removes the field or element at `path`; a map or list this leaves empty
/// goes too, as the real server drops it. Answers whether `node` is now
/// empty because of the removal.
fn remove_at(node: &mut Value, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        if let Some(field) = first.strip_prefix("f:") {
            if let Some(map) = node.as_object_mut() {
                map.remove(field);
                return map.is_empty();
            }
        } else if let Value::Array(items) = node {
            items.retain(|item| !element_matches(item, first));
            return items.is_empty();
        }
        return false;
    }
    let Some(child) = step(node, first) else {
        return false;
    };
    if !remove_at(child, rest) {
        return false;
    }
    remove_at(node, std::slice::from_ref(first))
}

fn step<'a>(node: &'a mut Value, element: &str) -> Option<&'a mut Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return node.as_object_mut()?.get_mut(field);
    }
    node.as_array_mut()?
        .iter_mut()
        .find(|item| element_matches(item, element))
}

fn element_matches(item: &Value, element: &str) -> bool {
    if let Some(value) = element.strip_prefix("v:") {
        return serde_json::from_str::<Value>(value).is_ok_and(|v| v == *item);
    }
    let Some(key) = element.strip_prefix("k:") else {
        return false;
    };
    let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    keys.iter().all(|(k, v)| match item.get(k) {
        Some(actual) => actual == v,
        None => k == "protocol" && v == "TCP",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "app", "image": image,
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "MODE", "value": "demo"}]
                    }]}
                }
            }
        })
    }

    fn path(elements: &[&str]) -> Path {
        elements.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn applied_fields_key_lists_by_their_merge_keys() {
        let set = applied_fields(&deployment("web:1"), None);
        let container = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"app"}"#,
        ];
        let mut image = path(&container);
        image.push("f:image".into());
        assert!(set.contains(&image));
        assert!(set.contains(&path(&container)));
        let mut port = path(&container);
        port.extend([
            "f:ports".into(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#.into(),
        ]);
        assert!(set.contains(&port), "{set:?}");
        assert!(
            set.contains(&path(&["f:spec", "f:selector"])),
            "LabelSelector is atomic"
        );
        assert!(!set.contains(&path(&["f:metadata", "f:name"])));
        assert!(
            !set.contains(&path(&["f:spec"])),
            "maps with fields are not owned as such"
        );
        let v1 = fields_v1(&set);
        assert_eq!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#]["."],
            json!({})
        );
        assert_eq!(v1["f:spec"]["f:selector"], json!({}));
        assert_eq!(parse_fields_v1(&v1), set);
        assert_eq!(
            pretty(&image),
            r#".spec.template.spec.containers[name="app"].image"#
        );
    }

    #[test]
    fn updates_own_what_they_change_and_take_it_from_others() {
        let created = Write::update("kubectl-create".into(), None)
            .managed_fields(Kind::Deployment, None, &deployment("web:1"))
            .unwrap();
        let mut stored = deployment("web:1");
        stored["metadata"]["managedFields"] = created.clone();
        let create_entry = &created[0];
        assert_eq!(create_entry["manager"], "kubectl-create");
        assert_eq!(create_entry["operation"], "Update");
        assert_eq!(create_entry["fieldsType"], "FieldsV1");
        // Added maps are owned ("."), structs every Deployment has are not.
        assert_eq!(
            create_entry["fieldsV1"]["f:metadata"]["f:labels"]["."],
            json!({})
        );
        assert!(create_entry["fieldsV1"]["f:spec"].get(".").is_none());

        let set_image = Write::update("kubectl-set".into(), None)
            .managed_fields(Kind::Deployment, Some(&stored), &deployment("web:2"))
            .unwrap();
        let entries: Vec<Entry> = set_image
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Entry::from_json)
            .collect();
        let image = path(&[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"app"}"#,
            "f:image",
        ]);
        assert_eq!(entries.len(), 2);
        assert!(
            !entries[0].fields.contains(&image),
            "kubectl-create lost the image"
        );
        assert_eq!(entries[1].manager, "kubectl-set");
        assert_eq!(entries[1].fields, [image].into_iter().collect());
    }

    #[test]
    fn applies_conflict_with_other_owners_unless_forced() {
        let mut stored = deployment("web:2");
        let image = path(&[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"app"}"#,
            "f:image",
        ]);
        stored["metadata"]["managedFields"] = json!([Entry {
            manager: "kubectl-set".into(),
            operation: Operation::Update,
            api_version: "apps/v1".into(),
            time: "2026-01-01T00:00:00Z".into(),
            subresource: None,
            fields: [image.clone()].into_iter().collect(),
        }
        .to_json()]);
        let config = deployment("web:1");
        let mut apply = Write {
            manager: "deployer".into(),
            operation: Operation::Apply,
            subresource: None,
            applied: applied_fields(&config, None),
            force: false,
        };
        let error = apply
            .managed_fields(Kind::Deployment, Some(&stored), &config)
            .unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert_eq!(
            error.message,
            r#"Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: .spec.template.spec.containers[name="app"].image"#
        );
        let cause = &error.details.unwrap()["causes"][0];
        assert_eq!(cause["reason"], "FieldManagerConflict");
        assert_eq!(cause["message"], r#"conflict with "kubectl-set""#);

        // The same values are shared, not conflicting.
        let same = deployment("web:2");
        let shared = Write {
            applied: applied_fields(&same, None),
            ..apply.clone()
        }
        .managed_fields(Kind::Deployment, Some(&stored), &same)
        .unwrap();
        assert_eq!(shared.as_array().unwrap().len(), 2);

        apply.force = true;
        let forced = apply
            .managed_fields(Kind::Deployment, Some(&stored), &config)
            .unwrap();
        let entries: Vec<Entry> = forced
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Entry::from_json)
            .collect();
        assert_eq!(entries.len(), 1, "kubectl-set owned nothing else");
        assert_eq!(entries[0].manager, "deployer");
        assert_eq!(entries[0].operation, Operation::Apply);
        assert!(entries[0].fields.contains(&image));
    }

    #[test]
    fn fields_dropped_from_an_apply_go_unless_someone_else_owns_them() {
        let applied = deployment("web:1");
        let mut dropped = applied.clone();
        dropped["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("env");
        dropped["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        let previous = vec![
            Entry {
                manager: "deployer".into(),
                operation: Operation::Apply,
                api_version: "apps/v1".into(),
                time: String::new(),
                subresource: None,
                fields: applied_fields(&applied, None),
            },
            Entry {
                manager: "labeller".into(),
                operation: Operation::Update,
                api_version: "apps/v1".into(),
                time: String::new(),
                subresource: None,
                fields: [path(&["f:metadata", "f:labels", "f:app"])]
                    .into_iter()
                    .collect(),
            },
        ];
        let write = Write {
            manager: "deployer".into(),
            operation: Operation::Apply,
            subresource: None,
            applied: applied_fields(&dropped, None),
            force: false,
        };
        let mut object = applied.clone();
        prune(&mut object, &previous, &write);
        let container = &object["spec"]["template"]["spec"]["containers"][0];
        assert!(container.get("env").is_none(), "{container}");
        assert_eq!(container["image"], "web:1");
        assert_eq!(
            object["metadata"]["labels"]["app"], "web",
            "another owner keeps it"
        );
    }
}
