//! The object store: every object as its JSON, one global monotonically
//! increasing resourceVersion, a bounded event history for watches that
//! resume, an index from owner uid to dependents (garbage collection, and
//! cheap "what does this Deployment own"), and the set of objects the
//! controller must look at next.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Weak};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Notify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::defaults::normalize;
use super::kinds::Kind;
use super::managed_fields::Write;
use super::status::ApiError;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// Events kept for watches that resume from a resourceVersion.
pub const HISTORY_LIMIT: usize = 20_000;

/// A change, as watches deliver it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub event_type: EventType,
    pub object: Arc<Value>,
    /// The object before a modification (to tell a watch with a selector
    /// that an object left or entered it).
    pub old: Option<Arc<Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object itself: status changes are ignored.
    Main,
    /// The `/status` subresource: only status changes count.
    Status,
    /// Controllers: metadata, spec and status alike.
    All,
}

/// What happens to dependents of a deleted object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Deleted with their owner (background and foreground alike).
    Cascade,
    /// Kept, without the owner reference.
    Orphan,
}

/// Events queued for one watch at most; a watch that falls further behind is
/// ended (its client resumes from the last version it saw).
pub const WATCH_QUEUE_LIMIT: usize = 10_000;

/// The events one open watch has yet to deliver, pushed by the store as
/// they happen (so a watch never scans other objects' events).
#[derive(Default)]
pub struct WatchQueue {
    pub notify: Notify,
    events: Mutex<VecDeque<Arc<Event>>>,
    overflowed: AtomicBool,
}

impl WatchQueue {
    pub fn push(&self, event: Arc<Event>) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        if events.len() >= WATCH_QUEUE_LIMIT {
            self.overflowed.store(true, Ordering::SeqCst);
        } else {
            events.push_back(event);
        }
        drop(events);
        self.notify.notify_one();
    }

    /// The queued events, and whether some were lost to overflow.
    pub fn drain(&self) -> (Vec<Arc<Event>>, bool) {
        let events = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        (events, self.overflowed.load(Ordering::SeqCst))
    }
}

/// What a watch waits for: a kind, maybe in one namespace, maybe one name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interest {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The changes a watch may resume from, oldest first.
#[derive(Default)]
struct History {
    events: VecDeque<Arc<Event>>,
    /// Highest resourceVersion dropped.
    compacted: u64,
}

impl History {
    fn push(&mut self, event: Arc<Event>, limit: usize) {
        self.events.push_back(event);
        self.trim(limit);
    }

    fn trim(&mut self, limit: usize) {
        while self.events.len() > limit {
            if let Some(dropped) = self.events.pop_front() {
                self.compacted = dropped.rv;
            }
        }
    }

    fn since(&self, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        if rv < self.compacted {
            return Err(self.compacted + 1);
        }
        let start = self.events.partition_point(|e| e.rv <= rv);
        Ok(self.events.range(start..).cloned().collect())
    }
}

pub struct Store {
    rv: u64,
    /// Objects are shared with the event history, never copied into it.
    objects: BTreeMap<Kind, BTreeMap<Key, Arc<Value>>>,
    owned: HashMap<String, BTreeSet<(Kind, Key)>>,
    /// Changes of every kind but Events, which keep their own (as the API
    /// server keeps a watch cache per resource): the many Events the
    /// controllers record never push a Deployment's changes out.
    history: History,
    event_history: History,
    history_limit: usize,
    /// Objects the controller should reconcile.
    pub dirty: BTreeSet<(Kind, Key)>,
    /// Open watches, by what they watch, woken on matching events only.
    watchers: HashMap<Interest, Vec<Weak<WatchQueue>>>,
    next_pod_ip: u32,
    next_cluster_ip: u32,
    /// OpenKruise Rollout runs here (its webhook and controller): set by
    /// `kruise::install`, not by a definition alone.
    pub kruise: bool,
}

/// Now, as Kubernetes writes times (RFC 3339, whole seconds).
pub fn now_timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The node port range Services get their node ports from (the API
/// server's default `--service-node-port-range`).
pub const NODE_PORTS: (u16, u16) = (30000, 32767);

/// A random RFC 4122 version-4 uid.
pub fn new_uid() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Five characters as Kubernetes' name generator picks them.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(super) fn str_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// The uids an object's ownerReferences point at.
fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The controlling owner `(kind, name)` of an object, if it is one we run.
pub(super) fn controller_owner(object: &Value) -> Option<(Kind, String)> {
    let refs = object.pointer("/metadata/ownerReferences")?.as_array()?;
    refs.iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| {
            let kind = match r.get("kind")?.as_str()? {
                "Deployment" => Kind::Deployment,
                "ReplicaSet" => Kind::ReplicaSet,
                _ => return None,
            };
            Some((kind, r.get("name")?.as_str()?.to_string()))
        })
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            rv: 1,
            objects: Kind::ALL
                .into_iter()
                .map(|k| (k, BTreeMap::new()))
                .collect(),
            owned: HashMap::new(),
            history: History::default(),
            event_history: History::default(),
            history_limit: HISTORY_LIMIT,
            dirty: BTreeSet::new(),
            watchers: HashMap::new(),
            next_pod_ip: 0,
            next_cluster_ip: 0,
            kruise: false,
        }
    }

    /// Keeps at most `limit` events for resuming watches (tests use a small
    /// limit to provoke 410 Gone).
    pub fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        self.history.trim(self.history_limit);
        self.event_history.trim(self.history_limit);
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.get_shared(kind, namespace, name).map(|o| &**o)
    }

    fn get_shared(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Arc<Value>> {
        let namespace = if kind.namespaced() { namespace } else { "" };
        self.objects
            .get(&kind)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// How many objects of `kind` there are.
    pub fn count(&self, kind: Kind) -> usize {
        self.objects.get(&kind).map_or(0, BTreeMap::len)
    }

    /// Objects of `kind`, in one namespace or all, ordered by namespace and
    /// name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<&Value> {
        let Some(objects) = self.objects.get(&kind) else {
            return Vec::new();
        };
        match namespace.filter(|_| kind.namespaced()) {
            None => objects.values().map(|v| &**v).collect(),
            Some(ns) => objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| &**v)
                .collect(),
        }
    }

    /// What an owner (by uid) has dependents of `kind`.
    pub fn owned_by(&self, uid: &str, kind: Kind) -> Vec<&Value> {
        self.owned
            .get(uid)
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k == kind)
            .filter_map(|(k, key)| self.objects.get(k)?.get(key).map(|v| &**v))
            .collect()
    }

    /// Creates an object. `namespace` comes from the URL (namespaced kinds).
    pub fn create(
        &mut self,
        kind: Kind,
        namespace: &str,
        object: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        self.create_managed(kind, namespace, object, dry_run, None)
    }

    /// Creates an object, recording `write` in its managedFields (API
    /// writes; the controller's own objects have none).
    pub fn create_managed(
        &mut self,
        kind: Kind,
        namespace: &str,
        mut object: Value,
        dry_run: bool,
        write: Option<&Write>,
    ) -> Result<Arc<Value>, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        let meta = object
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        if kind.namespaced() {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), namespace.into());
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let prefix = prefix.to_string();
                    loop {
                        let candidate = format!("{prefix}{}", random_suffix());
                        if self.get(kind, namespace, &candidate).is_none() {
                            break candidate;
                        }
                    }
                }
                _ => String::new(),
            }
        } else {
            name
        };
        meta.insert("name".into(), name.clone().into());
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            meta.remove(field);
        }
        let mut object = normalize(kind, object)?;
        if kind.namespaced() && self.get(Kind::Namespace, "", namespace).is_none() {
            return Err(ApiError::not_found(Kind::Namespace, namespace));
        }
        if self.get(kind, namespace, &name).is_some() {
            return Err(ApiError::already_exists(kind, &name));
        }
        if let Some(write) = write {
            object["metadata"]["managedFields"] = write.managed_fields(kind, None, &object)?;
        }
        let meta = &mut object["metadata"];
        meta["uid"] = new_uid().into();
        meta["creationTimestamp"] = now_timestamp().into();
        if kind.has_generation() {
            meta["generation"] = 1.into();
        }
        self.initial_status(kind, &mut object);
        if dry_run {
            return Ok(Arc::new(object));
        }
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        let key = self.key_of(kind, &object);
        self.index_owners(kind, &key, None, &object);
        let object = Arc::new(object);
        self.objects
            .entry(kind)
            .or_default()
            .insert(key, object.clone());
        self.record(kind, EventType::Added, object.clone(), None, true);
        Ok(object)
    }

    /// What the API server sets as status on create.
    fn initial_status(&mut self, kind: Kind, object: &mut Value) {
        match kind {
            Kind::Deployment | Kind::ReplicaSet => object["status"] = json!({}),
            Kind::Pod => object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"}),
            Kind::Namespace => object["status"] = json!({"phase": "Active"}),
            Kind::Ingress => object["status"] = json!({"loadBalancer": {}}),
            Kind::Event | Kind::EventV1 => {}
            Kind::CustomResourceDefinition => super::crd::initial_status(object),
            Kind::ConfigMap
            | Kind::Secret
            | Kind::ServiceAccount
            | Kind::Endpoints
            | Kind::EndpointSlice
            | Kind::Node
            | Kind::SelfSubjectAccessReview
            | Kind::SelfSubjectRulesReview
            | Kind::ClusterRole
            | Kind::ClusterRoleBinding
            | Kind::Custom(_) => {}
            Kind::PersistentVolumeClaim => super::cluster_kinds::bind_claim(object),
            Kind::PodDisruptionBudget => {
                object["status"] = json!({
                    "disruptionsAllowed": 0, "currentHealthy": 0,
                    "desiredHealthy": 0, "expectedPods": 0,
                });
            }
            Kind::Service => {
                object["status"] = json!({"loadBalancer": {}});
                let spec = &mut object["spec"];
                let wants_ip = spec["type"] != "ExternalName"
                    && spec
                        .get("clusterIP")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty);
                if wants_ip {
                    self.next_cluster_ip += 1;
                    let n = self.next_cluster_ip;
                    let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
                    spec["clusterIP"] = ip.clone().into();
                    spec["clusterIPs"] = json!([ip]);
                }
                let wants_node_ports = matches!(spec["type"].as_str(), Some("NodePort"))
                    || (spec["type"] == "LoadBalancer"
                        && spec["allocateLoadBalancerNodePorts"] != false);
                if wants_node_ports {
                    let mut taken = self.node_ports_in_use();
                    for port in spec["ports"].as_array_mut().into_iter().flatten() {
                        if port["nodePort"].as_u64().is_some_and(|p| p > 0) {
                            continue;
                        }
                        if let Some(free) =
                            (NODE_PORTS.0..=NODE_PORTS.1).find(|p| !taken.contains(p))
                        {
                            taken.push(free);
                            port["nodePort"] = free.into();
                        }
                    }
                }
            }
        }
    }

    /// The node ports Services hold.
    fn node_ports_in_use(&self) -> Vec<u16> {
        self.list(Kind::Service, None)
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().into_iter().flatten())
            .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
            .collect()
    }

    /// A fresh pod IP.
    pub fn next_pod_ip(&mut self) -> String {
        self.next_pod_ip += 1;
        let n = self.next_pod_ip;
        format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 1)
    }

    /// Replaces an object (PUT, a patched object, a controller write). A
    /// resourceVersion in `object` must match the stored one (409
    /// otherwise). A write that changes nothing stores nothing.
    pub fn update(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        object: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        self.update_managed(kind, namespace, name, object, part, dry_run, None)
    }

    /// Replaces an object, recording `write` in its managedFields; without
    /// one, the managedFields stay as stored (controller writes, scale).
    #[allow(clippy::too_many_arguments)]
    pub fn update_managed(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut object: Value,
        part: Part,
        dry_run: bool,
        write: Option<&Write>,
    ) -> Result<Arc<Value>, ApiError> {
        let existing = self
            .get_shared(kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(kind, name))?
            .clone();
        if !object.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        match str_at(&object, "/metadata/name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => object["metadata"]["name"] = name.into(),
        }
        if kind.namespaced() {
            match str_at(&object, "/metadata/namespace") {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => object["metadata"]["namespace"] = namespace.into(),
            }
        }
        let existing_rv = str_at(&existing, "/metadata/resourceVersion").unwrap_or_default();
        match str_at(&object, "/metadata/resourceVersion") {
            Some(rv) if !rv.is_empty() && rv != existing_rv => {
                return Err(ApiError::conflict(kind, name));
            }
            _ => {}
        }
        match part {
            // Without a status subresource, status is written like the rest.
            Part::Main if !kind.subresources().contains(&"status") => {}
            Part::Main => match existing.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(o) = object.as_object_mut() {
                        o.remove("status");
                    }
                }
            },
            Part::Status => {
                let status = object.get("status").cloned();
                object = (*existing).clone();
                match status {
                    Some(status) => object["status"] = status,
                    None => {
                        if let Some(o) = object.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            Part::All => {}
        }
        for field in [
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
        ] {
            match existing["metadata"].get(field) {
                Some(value) => object["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = object["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        object["metadata"]["resourceVersion"] = existing_rv.into();
        // Controllers write objects they read from the store and changed
        // through typed structs: already in normal form.
        let mut object = if part == Part::All {
            object
        } else {
            normalize(kind, object)?
        };
        // Admission of a client's write (controllers write past it).
        if kind == Kind::Deployment && part == Part::Main {
            super::kruise::admit_deployment(self, &existing, &mut object);
        }
        match write {
            Some(write) => {
                object["metadata"]["managedFields"] =
                    write.managed_fields(kind, Some(&existing), &object)?;
            }
            None => match existing["metadata"].get("managedFields") {
                Some(managed) => object["metadata"]["managedFields"] = managed.clone(),
                None => {
                    if let Some(meta) = object["metadata"].as_object_mut() {
                        meta.remove("managedFields");
                    }
                }
            },
        }
        let spec_changed = object.get("spec") != existing.get("spec");
        if kind.has_generation() && spec_changed {
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = (generation + 1).into();
        }
        if object == *existing {
            return Ok(existing);
        }
        if dry_run {
            return Ok(Arc::new(object));
        }
        // A controller's own status write needs no second look by the
        // controller; anything else does.
        let mark_self = part != Part::All || spec_changed;
        Ok(self.store_modified(kind, existing, object, mark_self))
    }

    /// Stores `object` in place of `existing` under a new resourceVersion
    /// and records the change (marking the object dirty if `mark_self`).
    fn store_modified(
        &mut self,
        kind: Kind,
        existing: Arc<Value>,
        mut object: Value,
        mark_self: bool,
    ) -> Arc<Value> {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        let key = self.key_of(kind, &object);
        self.index_owners(kind, &key, Some(&existing), &object);
        let object = Arc::new(object);
        self.objects
            .entry(kind)
            .or_default()
            .insert(key, object.clone());
        self.record(
            kind,
            EventType::Modified,
            object.clone(),
            Some(existing),
            mark_self,
        );
        object
    }

    /// Deletes a pod gracefully, as the API server does: a pod bound to a
    /// node is only marked (`deletionTimestamp` = now + its grace period,
    /// `deletionGracePeriodSeconds`), and the kubelet stops its containers
    /// and removes it; a pod on no node, a finished one, or a grace period
    /// of 0 goes at once. A second delete may shorten the grace period,
    /// never lengthen it. `grace` is the client's `gracePeriodSeconds`
    /// (else the pod's `terminationGracePeriodSeconds`, else 30). Answers
    /// the pod as it is after the call.
    pub fn delete_pod(
        &mut self,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let existing = self
            .get_shared(Kind::Pod, namespace, name)
            .ok_or_else(|| ApiError::not_found(Kind::Pod, name))?
            .clone();
        let scheduled = str_at(&existing, "/spec/nodeName").is_some_and(|n| !n.is_empty());
        let finished = matches!(
            str_at(&existing, "/status/phase"),
            Some("Succeeded" | "Failed")
        );
        let grace = grace
            .or_else(|| {
                existing
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0);
        if !scheduled || finished || grace == 0 {
            return self.delete(Kind::Pod, namespace, name, Propagation::Cascade, dry_run);
        }
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let deadline = now.saturating_add(grace);
        let current = str_at(&existing, "/metadata/deletionTimestamp")
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|t| t.as_second());
        if current.is_some_and(|c| c <= deadline) {
            return Ok(existing);
        }
        let Ok(at) = k8s_openapi::jiff::Timestamp::from_second(deadline) else {
            return self.delete(Kind::Pod, namespace, name, Propagation::Cascade, dry_run);
        };
        let mut object = (*existing).clone();
        object["metadata"]["deletionTimestamp"] =
            at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into();
        object["metadata"]["deletionGracePeriodSeconds"] = grace.into();
        if dry_run {
            return Ok(Arc::new(object));
        }
        Ok(self.store_modified(Kind::Pod, existing, object, true))
    }

    /// Deletes an object and, unless orphaned, everything it owns (and a
    /// namespace's contents; pods a garbage collector deletes go
    /// gracefully, see [`Store::delete_pod`]). Answers the deleted object.
    pub fn delete(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        propagation: Propagation,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let namespace = if kind.namespaced() { namespace } else { "" };
        let key = (namespace.to_string(), name.to_string());
        let Some(existing) = self.objects.get(&kind).and_then(|o| o.get(&key)) else {
            return Err(ApiError::not_found(kind, name));
        };
        if dry_run {
            return Ok(existing.clone());
        }
        let Some(object) = self.objects.get_mut(&kind).and_then(|o| o.remove(&key)) else {
            return Err(ApiError::not_found(kind, name));
        };
        let mut object = Arc::unwrap_or_clone(object);
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        self.index_owners(kind, &key, Some(&object), &Value::Null);
        let object = Arc::new(object);
        self.record(kind, EventType::Deleted, object.clone(), None, true);
        let uid = str_at(&object, "/metadata/uid")
            .unwrap_or_default()
            .to_string();
        let dependents = self.owned.remove(&uid).unwrap_or_default();
        for (dep_kind, (dep_ns, dep_name)) in dependents {
            match propagation {
                Propagation::Cascade if dep_kind == Kind::Pod && kind != Kind::Namespace => {
                    let _ = self.delete_pod(&dep_ns, &dep_name, None, false);
                }
                Propagation::Cascade => {
                    let _ = self.delete(dep_kind, &dep_ns, &dep_name, Propagation::Cascade, false);
                }
                Propagation::Orphan => {
                    if let Some(mut dependent) = self.get(dep_kind, &dep_ns, &dep_name).cloned() {
                        if let Some(refs) = dependent["metadata"]["ownerReferences"].as_array_mut()
                        {
                            refs.retain(|r| r["uid"] != uid.as_str());
                        }
                        let _ =
                            self.update(dep_kind, &dep_ns, &dep_name, dependent, Part::All, false);
                    }
                }
            }
        }
        if kind == Kind::CustomResourceDefinition {
            super::crd::delete_objects(self, &object);
        }
        if kind == Kind::Namespace {
            let kinds: Vec<Kind> = self.objects.keys().copied().collect();
            for contained in kinds.into_iter().filter(|k| k.namespaced()) {
                let names: Vec<String> = self
                    .list(contained, Some(name))
                    .iter()
                    .filter_map(|o| str_at(o, "/metadata/name").map(String::from))
                    .collect();
                for n in names {
                    let _ = self.delete(contained, name, &n, Propagation::Cascade, false);
                }
            }
        }
        Ok(object)
    }

    /// The changes after `rv` in the history `kind` is kept in (Events
    /// have their own), or `Err(oldest resumable version)` when some of
    /// them were already dropped from it.
    pub fn events_since(&self, kind: Kind, rv: u64) -> Result<Vec<Arc<Event>>, u64> {
        self.history_of(kind).since(rv)
    }

    fn history_of(&self, kind: Kind) -> &History {
        match kind {
            Kind::Event | Kind::EventV1 => &self.event_history,
            _ => &self.history,
        }
    }

    fn key_of(&self, kind: Kind, object: &Value) -> Key {
        let namespace = if kind.namespaced() {
            str_at(object, "/metadata/namespace").unwrap_or_default()
        } else {
            ""
        };
        let name = str_at(object, "/metadata/name").unwrap_or_default();
        (namespace.to_string(), name.to_string())
    }

    fn index_owners(&mut self, kind: Kind, key: &Key, old: Option<&Value>, new: &Value) {
        let entry = (kind, key.clone());
        for uid in old.map(owner_uids).unwrap_or_default() {
            if let Some(set) = self.owned.get_mut(&uid) {
                set.remove(&entry);
                if set.is_empty() {
                    self.owned.remove(&uid);
                }
            }
        }
        for uid in owner_uids(new) {
            self.owned.entry(uid).or_default().insert(entry.clone());
        }
    }

    fn record(
        &mut self,
        kind: Kind,
        event_type: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
        mark_self: bool,
    ) {
        let key = self.key_of(kind, &object);
        if mark_self
            && (matches!(
                kind,
                Kind::Deployment
                    | Kind::ReplicaSet
                    | Kind::Pod
                    | Kind::Service
                    | Kind::Namespace
                    | Kind::PodDisruptionBudget
            ) || super::kruise::is_rollout(kind))
        {
            self.dirty.insert((kind, key.clone()));
        }
        for candidate in [Some(&*object), old.as_deref()].into_iter().flatten() {
            if let Some((owner_kind, owner)) = controller_owner(candidate) {
                self.dirty.insert((owner_kind, (key.0.clone(), owner)));
            }
        }
        let event = Arc::new(Event {
            rv: self.rv,
            kind,
            event_type,
            object,
            old,
        });
        let limit = self.history_limit;
        match kind {
            Kind::Event | Kind::EventV1 => self.event_history.push(event.clone(), limit),
            _ => self.history.push(event.clone(), limit),
        }
        self.deliver(kind, &key, &event);
    }

    /// Queues events of `interest` for a watch from now on.
    pub fn register_watch(&mut self, interest: Interest, queue: &Arc<WatchQueue>) {
        self.watchers
            .entry(interest)
            .or_default()
            .push(Arc::downgrade(queue));
    }

    pub fn unregister_watch(&mut self, interest: &Interest, queue: &Arc<WatchQueue>) {
        if let Some(list) = self.watchers.get_mut(interest) {
            list.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(queue)));
            if list.is_empty() {
                self.watchers.remove(interest);
            }
        }
    }

    fn deliver(&mut self, kind: Kind, (namespace, name): &Key, event: &Arc<Event>) {
        let namespace = kind.namespaced().then(|| namespace.clone());
        let mut interests = vec![
            Interest {
                kind,
                namespace: None,
                name: None,
            },
            Interest {
                kind,
                namespace: None,
                name: Some(name.clone()),
            },
        ];
        if namespace.is_some() {
            interests.push(Interest {
                kind,
                namespace: namespace.clone(),
                name: None,
            });
            interests.push(Interest {
                kind,
                namespace,
                name: Some(name.clone()),
            });
        }
        for interest in interests {
            if let Some(list) = self.watchers.get_mut(&interest) {
                list.retain(|w| match w.upgrade() {
                    Some(queue) => {
                        queue.push(event.clone());
                        true
                    }
                    None => false,
                });
                if list.is_empty() {
                    self.watchers.remove(&interest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let mut store = Store::new();
        store
            .create(
                Kind::Namespace,
                "",
                json!({"metadata": {"name": "prod"}}),
                false,
            )
            .unwrap();
        store
    }

    fn pod(name: &str, owner_uid: Option<&str>) -> Value {
        let mut pod = json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        });
        if let Some(uid) = owner_uid {
            pod["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": uid, "controller": true
            }]);
        }
        pod
    }

    #[test]
    fn every_write_takes_the_next_resource_version() {
        let mut store = store();
        let a = store
            .create(Kind::Pod, "prod", pod("a", None), false)
            .unwrap();
        let b = store
            .create(Kind::Pod, "prod", pod("b", None), false)
            .unwrap();
        let rv_a: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let rv_b: u64 = b["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(rv_b, rv_a + 1);
        assert_eq!(store.resource_version(), rv_b);
        assert!(a["metadata"]["uid"].as_str().unwrap().len() == 36);
        assert_eq!(
            store
                .create(Kind::Pod, "prod", pod("a", None), false)
                .unwrap_err()
                .reason,
            "AlreadyExists"
        );
        assert_eq!(
            store
                .create(Kind::Pod, "nowhere", pod("c", None), false)
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn stale_resource_versions_conflict_and_noop_writes_store_nothing() {
        let mut store = store();
        let a = (*store
            .create(Kind::Pod, "prod", pod("a", None), false)
            .unwrap())
        .clone();
        let before = store.resource_version();
        let same = store
            .update(Kind::Pod, "prod", "a", a.clone(), Part::Main, false)
            .unwrap();
        assert_eq!(*same, a);
        assert_eq!(store.resource_version(), before);

        let mut changed = a.clone();
        changed["metadata"]["labels"]["tier"] = json!("front");
        store
            .update(Kind::Pod, "prod", "a", changed.clone(), Part::Main, false)
            .unwrap();
        let stale = store
            .update(Kind::Pod, "prod", "a", changed, Part::Main, false)
            .unwrap_err();
        assert_eq!((stale.code, stale.reason), (409, "Conflict"));
    }

    #[test]
    fn deleting_an_owner_deletes_its_dependents_unless_orphaned() {
        let mut store = store();
        store
            .create(Kind::Pod, "prod", pod("a", Some("owner-1")), false)
            .unwrap();
        store
            .create(Kind::Pod, "prod", pod("b", Some("owner-1")), false)
            .unwrap();
        let rs = json!({
            "metadata": {"name": "web-1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
        });
        let mut rs = store.create(Kind::ReplicaSet, "prod", rs, false).unwrap();
        // Point the pods at the real uid.
        let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
        for name in ["a", "b"] {
            let mut p = store.get(Kind::Pod, "prod", name).unwrap().clone();
            p["metadata"]["ownerReferences"][0]["uid"] = json!(uid);
            store
                .update(Kind::Pod, "prod", name, p, Part::Main, false)
                .unwrap();
        }
        assert_eq!(store.owned_by(&uid, Kind::Pod).len(), 2);
        rs = store
            .delete(
                Kind::ReplicaSet,
                "prod",
                "web-1",
                Propagation::Cascade,
                false,
            )
            .unwrap();
        assert_eq!(rs["metadata"]["name"], "web-1");
        assert!(store.list(Kind::Pod, Some("prod")).is_empty());
    }

    #[test]
    fn history_answers_events_after_a_version_or_says_it_is_gone() {
        let mut store = store();
        let start = store.resource_version();
        for name in ["a", "b", "c"] {
            store
                .create(Kind::Pod, "prod", pod(name, None), false)
                .unwrap();
        }
        let events = store.events_since(Kind::Pod, start).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_type, EventType::Added);
        store.set_history_limit(2);
        assert!(store.events_since(Kind::Pod, start).is_err());
        assert_eq!(store.events_since(Kind::Pod, start + 1).unwrap().len(), 2);
        // Events keep a history of their own: however many are recorded,
        // the pods' changes stay resumable.
        let before_events = store.resource_version();
        for n in 0..5 {
            store
                .create(
                    Kind::Event,
                    "prod",
                    json!({"metadata": {"name": format!("e{n}")}, "involvedObject": {}}),
                    false,
                )
                .unwrap();
        }
        assert_eq!(store.events_since(Kind::Pod, start + 1).unwrap().len(), 2);
        assert!(store.events_since(Kind::Event, before_events).is_err());
        assert_eq!(
            store
                .events_since(Kind::EventV1, before_events + 3)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn deleting_a_namespace_deletes_what_it_holds() {
        let mut store = store();
        store
            .create(Kind::Pod, "prod", pod("a", None), false)
            .unwrap();
        store
            .delete(Kind::Namespace, "", "prod", Propagation::Cascade, false)
            .unwrap();
        assert!(store.list(Kind::Pod, None).is_empty());
    }
}
