//! The control loop: the Deployment controller (rolling and recreate
//! updates, revisions, conditions, progress deadlines — following
//! Kubernetes' `pkg/controller/deployment`), the ReplicaSet controller, and
//! the kubelet (in `kubelet.rs`). Each tick looks only at objects whose
//! events marked them dirty and at timers that fell due, so thousands of
//! idle or slow rollouts cost nothing between their changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::Metadata;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::events::{self, Occurrence, Source};
use super::kinds::Kind;
use super::store::{Key, Part, Propagation, Store, random_suffix};
use super::{cluster_kinds, core_kinds, endpoints, kruise, kubelet};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Objects reconciled per pass at most (a guard against a controller bug
/// looping forever; a pass normally settles far below it).
#[cfg(test)]
const MAX_PER_PASS: usize = 1_000_000;

/// What a reconcile pass needs besides the store.
pub struct Context<'a> {
    pub now: Instant,
    pub ready_delay: Duration,
    /// Image substrings whose pods never become ready.
    pub never_ready: &'a [String],
}

/// Controller memory that is not part of any object.
#[derive(Default)]
pub struct ControllerState {
    /// Pod → (uid, when its containers started).
    pub(super) pod_started: HashMap<Key, (String, Instant)>,
    /// Pod being deleted → (uid, when the kubelet told its containers to stop).
    pub(super) pod_stopping: HashMap<Key, (String, Instant)>,
    /// Deployment → (uid, when it last made progress): the precise
    /// instant behind the Progressing condition's lastUpdateTime.
    progress: HashMap<Key, (String, Instant)>,
    timers: BTreeMap<Instant, BTreeSet<(Kind, Key)>>,
    /// uid → (generation, hash of the pod template): templates are
    /// compared on every Deployment sync, computed once per generation.
    fingerprints: HashMap<String, (i64, u64)>,
    /// OpenKruise Rollout's memory.
    pub(super) kruise: kruise::KruiseState,
    /// When old Events were last looked for.
    events_expired: Option<Instant>,
}

impl ControllerState {
    /// Looks at `key` again at `when`.
    pub(super) fn wake_at(&mut self, when: Instant, kind: Kind, key: Key) {
        self.timers.entry(when).or_default().insert((kind, key));
    }
}

/// One controller pass: due timers, then dirty objects until settled.
#[cfg(test)]
pub fn run_once(store: &mut Store, state: &mut ControllerState, ctx: &Context) {
    fire_timers(store, state, ctx.now);
    work(store, state, ctx, MAX_PER_PASS);
}

/// Marks the objects whose timers fell due as dirty (and registers the
/// node if it is missing, as a kubelet does on start).
pub fn fire_timers(store: &mut Store, state: &mut ControllerState, now: Instant) {
    kubelet::register_node(store);
    if state
        .events_expired
        .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60))
    {
        state.events_expired = Some(now);
        events::expire(store, Timestamp::now().as_second());
    }
    let later = state.timers.split_off(&(now + Duration::from_nanos(1)));
    let due = std::mem::replace(&mut state.timers, later);
    for keys in due.into_values() {
        store.dirty.extend(keys);
    }
}

/// Reconciles up to `budget` dirty objects (those dirtied meanwhile
/// included); answers how many it did.
pub fn work(store: &mut Store, state: &mut ControllerState, ctx: &Context, budget: usize) -> usize {
    let mut done = 0;
    while done < budget {
        let Some((kind, key)) = store.dirty.pop_first() else {
            break;
        };
        match kind {
            Kind::Deployment => {
                sync_deployment(store, state, ctx, &key);
                kruise::workload_changed(store, &key);
            }
            Kind::Custom(_) if kruise::is_rollout(kind) => {
                kruise::sync_rollout(store, state, ctx, kind, &key);
            }
            Kind::ReplicaSet => sync_replica_set(store, &key),
            Kind::Pod => {
                kubelet::sync_pod(store, state, ctx, &key);
                endpoints::pod_changed(store, &key);
                cluster_kinds::pod_changed(store, &key);
            }
            Kind::PodDisruptionBudget => cluster_kinds::sync_budget(store, &key),
            // A Service's key stands for its Endpoints and EndpointSlices.
            Kind::Service | Kind::Endpoints => endpoints::sync(store, &key),
            Kind::Namespace => core_kinds::sync_namespace(store, &key),
            _ => {}
        }
        done += 1;
    }
    done
}

// ---------------------------------------------------------------- helpers

pub(super) fn get_typed<K: DeserializeOwned>(store: &Store, kind: Kind, key: &Key) -> Option<K> {
    K::deserialize(store.get(kind, &key.0, &key.1)?).ok()
}

/// Writes a controller's version of an object; answers it as stored (with
/// its new resourceVersion and generation).
pub(super) fn put<K: Serialize + Clone + Metadata<Ty = ObjectMeta>>(
    store: &mut Store,
    kind: Kind,
    key: &Key,
    object: &K,
) -> Option<K> {
    let value = serde_json::to_value(object).ok()?;
    match store.update(kind, &key.0, &key.1, value, Part::All, false) {
        Ok(stored) => {
            let mut written = object.clone();
            let meta = written.metadata_mut();
            meta.resource_version = stored["metadata"]["resourceVersion"]
                .as_str()
                .map(String::from);
            meta.generation = stored["metadata"]["generation"].as_i64();
            Some(written)
        }
        Err(e) => {
            tracing::debug!(?kind, ?key, error = %e, "simulated controller write failed");
            None
        }
    }
}

/// Now, truncated to whole seconds as Kubernetes stores times (so that
/// comparing a fresh status with the stored one is exact).
pub(super) fn now_time() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn controller_ref(owner_kind: Kind, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: owner_kind.api_version().into(),
        kind: owner_kind.kind().into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Creation order as Kubernetes sorts it: timestamp, then name.
fn creation_order(meta: &ObjectMeta) -> (i64, String) {
    (
        meta.creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// JSON with object keys sorted and nulls, empty objects and empty lists
/// left out: two templates are the same template when these strings are.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| !is_empty(&map[*k])).collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A template's identity, ignoring the pod-template-hash label.
pub fn template_fingerprint(template: &PodTemplateSpec) -> String {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH);
    }
    let value = serde_json::to_value(&template).unwrap_or(Value::Null);
    let mut out = String::new();
    canonical(&value, &mut out);
    out
}

/// `pod-template-hash`: FNV-32a of the template (and the collision count),
/// its decimal digits spelt in Kubernetes' safe alphabet.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(template_fingerprint(template).as_bytes());
    if let Some(count) = collision_count {
        feed(&count.to_le_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d - b'0')] as char)
        .collect()
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub(super) fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let percent: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = percent * f64::from(total) / 100.0;
            if round_up {
                exact.ceil() as i32
            } else {
                exact.floor() as i32
            }
        }
    }
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate")
}

/// maxSurge and maxUnavailable resolved against the replica count
/// (`ResolveFenceposts`).
fn fenceposts(d: &Deployment) -> (i32, i32) {
    let rolling = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(d);
    let surge = scaled_value(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled_value(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn status_of(rs: &ReplicaSet) -> ReplicaSetStatus {
    rs.status.clone().unwrap_or_default()
}

fn progress_deadline(d: &Deployment) -> Option<Duration> {
    d.spec
        .progress_deadline_seconds
        .filter(|s| *s != i32::MAX && *s >= 0)
        .map(|s| Duration::from_secs(s as u64))
}

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some(type_))
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = now_time();
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// `SetDeploymentCondition`: a condition with the same status and reason
/// stays as it is; otherwise it is replaced (keeping lastTransitionTime
/// when the status did not change) and moves to the end. Answers whether
/// it changed.
fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) -> bool {
    let type_ = condition.type_.clone();
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|c| c.type_ == type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return false;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != type_);
    conditions.push(condition);
    true
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_.as_deref() != Some(type_));
    }
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

// ------------------------------------------------------------ replica sets

/// The ReplicaSet controller: as many pods as `spec.replicas`, and a status
/// counting them.
fn sync_replica_set(store: &mut Store, key: &Key) {
    let Some(rs) = get_typed::<ReplicaSet>(store, Kind::ReplicaSet, key) else {
        return;
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let mut pods: Vec<Pod> = owned::<Pod>(store, &uid, Kind::Pod);
    let desired = spec_replicas(&rs).max(0) as usize;
    if pods.len() < desired {
        for _ in pods.len()..desired {
            if let Some(pod) = new_pod(store, &rs) {
                pods.push(pod);
            }
        }
    } else if pods.len() > desired {
        // Kubernetes deletes the least useful pods first: not ready before
        // ready, then the newest.
        pods.sort_by_key(|p| {
            let order = creation_order(&p.metadata);
            (kubelet::is_ready(p), std::cmp::Reverse(order))
        });
        let doomed: Vec<Pod> = pods.drain(..pods.len() - desired).collect();
        for pod in doomed {
            let (ns, name) = key_of(&pod.metadata);
            if store.delete_pod(&ns, &name, None, false).is_ok() {
                record_on_replica_set(store, &rs, "SuccessfulDelete", "Deleted", &pod);
            }
        }
    }
    let ready = pods.iter().filter(|p| kubelet::is_ready(p)).count() as i32;
    let count = pods.len() as i32;
    let status = ReplicaSetStatus {
        replicas: count,
        fully_labeled_replicas: non_zero(count),
        ready_replicas: non_zero(ready),
        available_replicas: non_zero(ready),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    if rs.status.as_ref() != Some(&status) {
        let mut updated = rs;
        updated.status = Some(status);
        put(store, Kind::ReplicaSet, key, &updated);
    }
}

fn owned<K: DeserializeOwned>(store: &Store, uid: &str, kind: Kind) -> Vec<K> {
    store
        .owned_by(uid, kind)
        .into_iter()
        .filter(|v| {
            v.pointer("/metadata/deletionTimestamp").is_none()
                && v.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r["uid"] == uid && r["controller"] == Value::Bool(true))
                    })
        })
        .filter_map(|v| K::deserialize(v).ok())
        .collect()
}

fn new_pod(store: &mut Store, rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.template.clone()?;
    let rs_name = rs.metadata.name.clone()?;
    let namespace = rs.metadata.namespace.clone()?;
    let template_meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec?;
    spec.node_name = Some(kubelet::NODE_NAME.into());
    let name = loop {
        let candidate = format!("{rs_name}-{}", random_suffix());
        if store.get(Kind::Pod, &namespace, &candidate).is_none() {
            break candidate;
        }
    };
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{rs_name}-")),
            namespace: Some(namespace.clone()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            owner_references: Some(vec![controller_ref(Kind::ReplicaSet, &rs.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let value = serde_json::to_value(&pod).ok()?;
    let stored = store.create(Kind::Pod, &namespace, value, false).ok()?;
    let created = Pod::deserialize(&*stored).ok()?;
    record_on_replica_set(store, rs, "SuccessfulCreate", "Created", &created);
    Some(created)
}

/// The ReplicaSet controller's Event about one of its pods.
fn record_on_replica_set(
    store: &mut Store,
    rs: &ReplicaSet,
    reason: &'static str,
    verb: &str,
    pod: &Pod,
) {
    let Ok(object) = serde_json::to_value(rs) else {
        return;
    };
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    events::record(
        store,
        Occurrence {
            object: &object,
            kind: Kind::ReplicaSet,
            warning: false,
            reason,
            message: format!("{verb} pod: {pod_name}"),
            source: Source::ReplicaSet,
            field_path: None,
        },
    );
}

// ------------------------------------------------------------- deployments

/// The Deployment controller's sync of one Deployment.
fn sync_deployment(store: &mut Store, state: &mut ControllerState, ctx: &Context, key: &Key) {
    let Some(mut d) = get_typed::<Deployment>(store, Kind::Deployment, key) else {
        state.progress.remove(key);
        prune_fingerprints(store, state);
        return;
    };
    if d.metadata.deletion_timestamp.is_some() {
        return;
    }
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let mut rss: Vec<ReplicaSet> = owned::<ReplicaSet>(store, &uid, Kind::ReplicaSet);
    rss.sort_by_key(|rs| creation_order(&rs.metadata));
    let stored_before = d.clone();

    let paused = d.spec.paused == Some(true);
    check_paused_conditions(&mut d, state, ctx, key);
    if paused && let Some(partition) = kruise::partition_of(&d) {
        rollout_partition(store, state, ctx, key, d, &stored_before, rss, &partition);
        return;
    }
    if paused {
        let new_index = find_new(state, &rss, &d);
        let new_rs = new_index.map(|i| rss[i].clone());
        sync_rollout_status(
            store,
            state,
            ctx,
            key,
            &mut d,
            &stored_before,
            &rss,
            new_rs.as_ref(),
        );
        return;
    }

    let create = is_rolling(&d);
    let Some((new_rs, old_rss)) = new_and_old(store, state, ctx, &mut d, rss, create) else {
        // A failed create: write what changed (collision count) and retry.
        if d != stored_before {
            put(store, Kind::Deployment, key, &d);
        }
        store.dirty.insert((Kind::Deployment, key.clone()));
        return;
    };
    if is_rolling(&d) {
        rollout_rolling(store, state, ctx, key, d, &stored_before, new_rs, old_rss);
    } else {
        rollout_recreate(store, state, ctx, key, d, &stored_before, new_rs, old_rss);
    }
}

/// A paused Deployment under a partition-style Rollout, as Kruise's
/// advanced Deployment controller runs it: `partition` of its pods run its
/// template (the new ReplicaSet, created when missing), the rest stay on
/// the newest old one.
#[allow(clippy::too_many_arguments)]
fn rollout_partition(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    key: &Key,
    mut d: Deployment,
    stored_before: &Deployment,
    rss: Vec<ReplicaSet>,
    partition: &IntOrString,
) {
    let Some((new_rs, mut old_rss)) = new_and_old(store, state, ctx, &mut d, rss, true) else {
        if d != *stored_before {
            put(store, Kind::Deployment, key, &d);
        }
        store.dirty.insert((Kind::Deployment, key.clone()));
        return;
    };
    let Some(mut new_rs) = new_rs else {
        return;
    };
    let total = replicas(&d);
    let wanted = scaled_value(Some(partition), total, true).clamp(0, total);
    scale(store, &d, &mut new_rs, wanted);
    old_rss.sort_by_key(|rs| std::cmp::Reverse(revision_of(rs)));
    let mut left = total - wanted;
    for rs in old_rss.iter_mut() {
        let count = left.min(total);
        scale(store, &d, rs, count);
        left -= count;
    }
    let mut all = old_rss;
    all.push(new_rs.clone());
    sync_rollout_status(
        store,
        state,
        ctx,
        key,
        &mut d,
        stored_before,
        &all,
        Some(&new_rs),
    );
}

/// The oldest ReplicaSet whose template is the Deployment's (ignoring the
/// hash label).
fn find_new(state: &mut ControllerState, rss: &[ReplicaSet], d: &Deployment) -> Option<usize> {
    let wanted = cached_fingerprint(state, &d.metadata, &d.spec.template);
    rss.iter().position(|rs| {
        rs.spec
            .template
            .as_ref()
            .is_some_and(|t| cached_fingerprint(state, &rs.metadata, t) == wanted)
    })
}

fn cached_fingerprint(
    state: &mut ControllerState,
    meta: &ObjectMeta,
    template: &PodTemplateSpec,
) -> u64 {
    let uid = meta.uid.clone().unwrap_or_default();
    let generation = meta.generation.unwrap_or_default();
    if let Some((cached_generation, hash)) = state.fingerprints.get(&uid)
        && *cached_generation == generation
    {
        return *hash;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template_fingerprint(template).bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    state.fingerprints.insert(uid, (generation, hash));
    hash
}

/// Forgets fingerprints of objects that are gone, once they pile up.
fn prune_fingerprints(store: &Store, state: &mut ControllerState) {
    let live = store.count(Kind::ReplicaSet) + store.count(Kind::Deployment);
    if state.fingerprints.len() <= 1024 || state.fingerprints.len() <= 2 * live {
        return;
    }
    let uids: std::collections::HashSet<&str> = [Kind::ReplicaSet, Kind::Deployment]
        .into_iter()
        .flat_map(|k| store.list(k, None))
        .filter_map(|o| o.pointer("/metadata/uid").and_then(Value::as_str))
        .collect();
    state
        .fingerprints
        .retain(|uid, _| uids.contains(uid.as_str()));
}

/// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (found,
/// re-adopted with the next revision, or created when `create`), the old
/// ones, and the Deployment's revision annotation. `None` when creating
/// failed.
fn new_and_old(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    d: &mut Deployment,
    mut rss: Vec<ReplicaSet>,
    create: bool,
) -> Option<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
    let new_index = find_new(state, &rss, d);
    let existing_new = new_index.map(|i| rss.remove(i));
    let old_rss = rss;
    let max_old = old_rss.iter().map(revision_of).max().unwrap_or(0);
    let new_revision = (max_old + 1).to_string();
    let deadline = progress_deadline(d).is_some();
    let key = key_of(&d.metadata);

    if let Some(mut rs) = existing_new {
        let mut changed = set_new_rs_annotations(d, &mut rs, &new_revision, true);
        if rs.spec.min_ready_seconds != d.spec.min_ready_seconds {
            rs.spec.min_ready_seconds = d.spec.min_ready_seconds;
            changed = true;
        }
        if changed {
            let rs_key = key_of(&rs.metadata);
            rs = put(store, Kind::ReplicaSet, &rs_key, &rs)?;
        }
        let revision = annotation(&rs.metadata, REVISION)
            .unwrap_or_default()
            .to_string();
        set_deployment_revision(d, &revision);
        let status = d.status.get_or_insert_with(Default::default);
        if deadline && condition(status, "Progressing").is_none() {
            let name = rs.metadata.name.clone().unwrap_or_default();
            set_condition(
                status,
                new_condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set \"{name}\""),
                ),
            );
            note_progress(state, ctx, &key, d);
        }
        return Some((Some(rs), old_rss));
    }
    if !create {
        return Some((None, old_rss));
    }

    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&d.spec.template, collision_count);
    let name = format!("{}-{hash}", d.metadata.name.clone().unwrap_or_default());
    if store.get(Kind::ReplicaSet, &namespace, &name).is_some() {
        // A ReplicaSet of that name with another template (or owner): a
        // hash collision, resolved by hashing again with a higher count.
        let status = d.status.get_or_insert_with(Default::default);
        status.collision_count = Some(collision_count.unwrap_or(0) + 1);
        return None;
    }
    let mut template = d.spec.template.clone();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH.into(), hash.clone());
    let mut selector = d.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH.into(), hash.clone());
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            owner_references: Some(vec![controller_ref(Kind::Deployment, &d.metadata)]),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: d.spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    };
    let mut all = old_rss.clone();
    all.push(rs.clone());
    rs.spec.replicas = Some(new_rs_new_replicas(d, &all, &rs));
    set_new_rs_annotations(d, &mut rs, &new_revision, false);
    let value = serde_json::to_value(&rs).ok()?;
    let created = match store.create(Kind::ReplicaSet, &namespace, value, false) {
        Ok(created) => ReplicaSet::deserialize(&*created).ok()?,
        Err(e) => {
            tracing::debug!(error = %e, "simulated controller could not create a replica set");
            return None;
        }
    };
    let initial = spec_replicas(&created);
    if initial > 0 {
        record_scaling(store, d, &created, 0, initial);
    }
    set_deployment_revision(d, &new_revision);
    if deadline {
        let status = d.status.get_or_insert_with(Default::default);
        set_condition(
            status,
            new_condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{name}\""),
            ),
        );
        note_progress(state, ctx, &key, d);
    }
    Some((Some(created), old_rss))
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations,
/// raises the revision (keeping the old one in revision-history when a
/// ReplicaSet is re-adopted), and on creation the replica annotations.
fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if [
            LAST_APPLIED,
            REVISION,
            REVISION_HISTORY,
            DESIRED_REPLICAS,
            MAX_REPLICAS,
        ]
        .contains(&k.as_str())
            || annotations.get(k) == Some(v)
        {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old_revision = annotations.get(REVISION).cloned();
    let old: i64 = old_revision
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let new: i64 = new_revision.parse().unwrap_or(0);
    if old < new {
        annotations.insert(REVISION.into(), new_revision.into());
        changed = true;
        if let Some(old_revision) = old_revision.filter(|r| !r.is_empty()) {
            let history = match annotations.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old_revision}"),
                _ => old_revision,
            };
            annotations.insert(REVISION_HISTORY.into(), history);
        }
    }
    if !exists {
        changed |= set_replicas_annotations(d, rs);
    }
    changed
}

fn set_replicas_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let desired = replicas(d).to_string();
    let max = (replicas(d) + max_surge(d)).to_string();
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        if annotations.get(k) != Some(&v) {
            annotations.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

fn set_deployment_revision(d: &mut Deployment, revision: &str) {
    if revision.is_empty() {
        return;
    }
    let annotations = d.metadata.annotations.get_or_insert_with(Default::default);
    if annotations.get(REVISION).map(String::as_str) != Some(revision) {
        annotations.insert(REVISION.into(), revision.into());
    }
}

/// `NewRSNewReplicas`: how far the new ReplicaSet may grow now.
fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(spec_replicas).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return spec_replicas(new_rs);
    }
    let scale_up = (max_total - current).min(replicas(d) - spec_replicas(new_rs));
    spec_replicas(new_rs) + scale_up
}

/// Sets a ReplicaSet's size (and replica annotations); answers whether the
/// size changed.
fn scale(store: &mut Store, d: &Deployment, rs: &mut ReplicaSet, count: i32) -> bool {
    let from = spec_replicas(rs);
    let size_changed = from != count;
    let mut copy = rs.clone();
    copy.spec.replicas = Some(count);
    let annotations_changed = set_replicas_annotations(d, &mut copy);
    if !size_changed && !annotations_changed {
        return false;
    }
    let key = key_of(&copy.metadata);
    match put(store, Kind::ReplicaSet, &key, &copy) {
        Some(stored) => {
            *rs = stored;
            if size_changed {
                record_scaling(store, d, rs, from, count);
            }
            size_changed
        }
        None => false,
    }
}

/// The Deployment controller's `ScalingReplicaSet` Event.
fn record_scaling(store: &mut Store, d: &Deployment, rs: &ReplicaSet, from: i32, to: i32) {
    let Ok(object) = serde_json::to_value(d) else {
        return;
    };
    let direction = if to > from { "up" } else { "down" };
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    events::record(
        store,
        Occurrence {
            object: &object,
            kind: Kind::Deployment,
            warning: false,
            reason: "ScalingReplicaSet",
            message: format!("Scaled {direction} replica set {rs_name} from {from} to {to}"),
            source: Source::Deployment,
            field_path: None,
        },
    );
}

#[allow(clippy::too_many_arguments)]
fn rollout_rolling(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    key: &Key,
    mut d: Deployment,
    stored_before: &Deployment,
    new_rs: Option<ReplicaSet>,
    mut old_rss: Vec<ReplicaSet>,
) {
    let Some(mut new_rs) = new_rs else {
        return;
    };
    let mut scaled = false;
    // Scale up, if we can.
    if spec_replicas(&new_rs) != replicas(&d) {
        let target = if spec_replicas(&new_rs) > replicas(&d) {
            replicas(&d)
        } else {
            let mut all = old_rss.clone();
            all.push(new_rs.clone());
            new_rs_new_replicas(&d, &all, &new_rs)
        };
        scaled = scale(store, &d, &mut new_rs, target);
    }
    // Scale down, if we can.
    if !scaled {
        scaled = reconcile_old(store, &d, &new_rs, &mut old_rss);
    }
    let mut all = old_rss.clone();
    all.push(new_rs.clone());
    if !scaled && deployment_complete(&d, d.status.as_ref().unwrap_or(&Default::default())) {
        cleanup(store, &d, &old_rss);
    }
    sync_rollout_status(
        store,
        state,
        ctx,
        key,
        &mut d,
        stored_before,
        &all,
        Some(&new_rs),
    );
}

/// `reconcileOldReplicaSets`: unhealthy old pods go first, then old pods
/// down to the availability floor.
fn reconcile_old(
    store: &mut Store,
    d: &Deployment,
    new_rs: &ReplicaSet,
    old_rss: &mut [ReplicaSet],
) -> bool {
    let old_count: i32 = old_rss.iter().map(spec_replicas).sum();
    if old_count == 0 {
        return false;
    }
    let all_count = old_count + spec_replicas(new_rs);
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = spec_replicas(new_rs) - status_of(new_rs).available_replicas.unwrap_or(0);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut total = 0;
    // Clean up unhealthy replicas first.
    for rs in old_rss.iter_mut() {
        if total >= max_scaled_down {
            break;
        }
        let available = status_of(rs).available_replicas.unwrap_or(0);
        if spec_replicas(rs) == 0 || spec_replicas(rs) == available {
            continue;
        }
        let down = (max_scaled_down - total).min(spec_replicas(rs) - available);
        let target = spec_replicas(rs) - down;
        if scale(store, d, rs, target) {
            total += down;
        }
    }
    // Then scale down old replica sets as far as availability allows.
    let available: i32 = old_rss
        .iter()
        .chain(std::iter::once(new_rs))
        .map(|rs| status_of(rs).available_replicas.unwrap_or(0))
        .sum();
    if available > min_available {
        let budget = available - min_available;
        let mut done = 0;
        for rs in old_rss.iter_mut() {
            if done >= budget {
                break;
            }
            if spec_replicas(rs) == 0 {
                continue;
            }
            let down = spec_replicas(rs).min(budget - done);
            let target = spec_replicas(rs) - down;
            if scale(store, d, rs, target) {
                done += down;
            }
        }
        total += done;
    }
    total > 0
}

#[allow(clippy::too_many_arguments)]
fn rollout_recreate(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    key: &Key,
    mut d: Deployment,
    stored_before: &Deployment,
    new_rs: Option<ReplicaSet>,
    mut old_rss: Vec<ReplicaSet>,
) {
    let mut scaled_down = false;
    for rs in old_rss.iter_mut() {
        if spec_replicas(rs) != 0 {
            scaled_down |= scale(store, &d, rs, 0);
        }
    }
    // Pods still stopping count too: Recreate starts the new version only
    // once every old pod is gone.
    let old_pods_running = old_rss.iter().any(|rs| {
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        store.owned_by(uid, Kind::Pod).into_iter().any(|p| {
            !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
    });
    if scaled_down || old_pods_running {
        let mut all = old_rss.clone();
        all.extend(new_rs.clone());
        sync_rollout_status(
            store,
            state,
            ctx,
            key,
            &mut d,
            stored_before,
            &all,
            new_rs.as_ref(),
        );
        return;
    }
    let new_rs = match new_rs {
        Some(rs) => Some(rs),
        None => match new_and_old(store, state, ctx, &mut d, old_rss.clone(), true) {
            Some((rs, _)) => rs,
            None => {
                store.dirty.insert((Kind::Deployment, key.clone()));
                return;
            }
        },
    };
    let Some(mut new_rs) = new_rs else {
        return;
    };
    let target = replicas(&d);
    scale(store, &d, &mut new_rs, target);
    if deployment_complete(&d, d.status.as_ref().unwrap_or(&Default::default())) {
        cleanup(store, &d, &old_rss);
    }
    let mut all = old_rss.clone();
    all.push(new_rs.clone());
    sync_rollout_status(
        store,
        state,
        ctx,
        key,
        &mut d,
        stored_before,
        &all,
        Some(&new_rs),
    );
}

/// Deletes the oldest idle ReplicaSets beyond revisionHistoryLimit.
fn cleanup(store: &mut Store, d: &Deployment, old_rss: &[ReplicaSet]) {
    let Some(limit) = d.spec.revision_history_limit else {
        return;
    };
    let mut cleanable: Vec<&ReplicaSet> = old_rss
        .iter()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = cleanable.len() as i32 - limit;
    if excess <= 0 {
        return;
    }
    cleanable.sort_by_key(|rs| (revision_of(rs), creation_order(&rs.metadata)));
    for rs in cleanable.into_iter().take(excess as usize) {
        let status = status_of(rs);
        if status.replicas != 0
            || spec_replicas(rs) != 0
            || rs.metadata.generation > status.observed_generation
        {
            continue;
        }
        let (ns, name) = key_of(&rs.metadata);
        let _ = store.delete(Kind::ReplicaSet, &ns, &name, Propagation::Cascade, false);
    }
}

fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn deployment_progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Remembers that the Deployment's Progressing condition was just updated.
fn note_progress(state: &mut ControllerState, ctx: &Context, key: &Key, d: &Deployment) {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    state.progress.insert(key.clone(), (uid, ctx.now));
}

/// When the Deployment last made progress: the remembered instant, or (for
/// a condition written by someone else) its lastUpdateTime.
fn last_progress(
    state: &ControllerState,
    ctx: &Context,
    key: &Key,
    d: &Deployment,
    cond: &DeploymentCondition,
) -> Instant {
    if let Some((uid, at)) = state.progress.get(key)
        && d.metadata.uid.as_deref() == Some(uid.as_str())
    {
        return *at;
    }
    let updated = cond
        .last_update_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let age = Timestamp::now().duration_since(updated).unsigned_abs();
    ctx.now.checked_sub(age).unwrap_or(ctx.now)
}

/// `calculateStatus` + `syncRolloutStatus`: counts from the ReplicaSets,
/// Available, and the Progressing condition with its deadline. Writes the
/// Deployment when anything (status, revision annotation) changed.
#[allow(clippy::too_many_arguments)]
fn sync_rollout_status(
    store: &mut Store,
    state: &mut ControllerState,
    ctx: &Context,
    key: &Key,
    d: &mut Deployment,
    stored_before: &Deployment,
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) {
    let old_status = d.status.clone().unwrap_or_default();
    let sum = |f: &dyn Fn(&ReplicaSetStatus) -> i32| -> i32 {
        all.iter().map(|rs| f(&status_of(rs))).sum()
    };
    let available = sum(&|s| s.available_replicas.unwrap_or(0));
    let total_spec: i32 = all.iter().map(spec_replicas).sum();
    let updated = new_rs.map(|rs| status_of(rs).replicas).unwrap_or(0);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: non_zero(sum(&|s| s.replicas)),
        updated_replicas: non_zero(updated),
        ready_replicas: non_zero(sum(&|s| s.ready_replicas.unwrap_or(0))),
        available_replicas: non_zero(available),
        unavailable_replicas: non_zero((total_spec - available).max(0)),
        collision_count: old_status.collision_count,
        conditions: old_status.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }

    let deadline = progress_deadline(d);
    if deadline.is_none() {
        remove_condition(&mut status, "Progressing");
    }
    let current = condition(&old_status, "Progressing").cloned();
    let complete_before = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
    let subject = match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
        Some(name) => format!("ReplicaSet \"{name}\""),
        None => format!(
            "Deployment \"{}\"",
            d.metadata.name.as_deref().unwrap_or_default()
        ),
    };
    // A paused Deployment (by hand, or by OpenKruise at a canary step)
    // has no progress to estimate: its condition stays `DeploymentPaused`
    // however long the pause (Kubernetes syncs only its counts).
    if let Some(deadline) = deadline
        && !complete_before
        && d.spec.paused != Some(true)
    {
        if deployment_complete(d, &status) {
            if set_condition(
                &mut status,
                new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("{subject} has successfully progressed."),
                ),
            ) {
                note_progress(state, ctx, key, d);
            }
        } else if deployment_progressing(&old_status, &status) {
            let mut cond = new_condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("{subject} is progressing."),
            );
            if let Some(current) = &current
                && current.status.as_deref() == Some("True")
            {
                cond.last_transition_time = current.last_transition_time.clone();
            }
            remove_condition(&mut status, "Progressing");
            status.conditions.get_or_insert_with(Vec::new).push(cond);
            note_progress(state, ctx, key, d);
        } else if let Some(cond) = condition(&status, "Progressing").cloned() {
            let reason = cond.reason.as_deref().unwrap_or_default();
            if reason != "NewReplicaSetAvailable" {
                let due = last_progress(state, ctx, key, d, &cond) + deadline;
                let timed_out = reason == "ProgressDeadlineExceeded" || due < ctx.now;
                if timed_out {
                    set_condition(
                        &mut status,
                        new_condition(
                            "Progressing",
                            "False",
                            "ProgressDeadlineExceeded",
                            format!("{subject} has timed out progressing."),
                        ),
                    );
                } else if d.spec.paused != Some(true) {
                    // Look again when the deadline passes.
                    state.wake_at(
                        due + Duration::from_millis(1),
                        Kind::Deployment,
                        key.clone(),
                    );
                }
            }
        }
    }
    let complete = deployment_complete(d, &status);
    d.status = Some(status);
    if d != stored_before {
        put(store, Kind::Deployment, key, d);
        if complete {
            // Kubernetes looks again after its own status update; a
            // complete rollout then cleans up old ReplicaSets.
            store.dirty.insert((Kind::Deployment, key.clone()));
        }
    }
}

/// `checkPausedConditions`.
fn check_paused_conditions(
    d: &mut Deployment,
    state: &mut ControllerState,
    ctx: &Context,
    key: &Key,
) {
    if progress_deadline(d).is_none() {
        return;
    }
    let status = d.status.get_or_insert_with(Default::default);
    let reason = condition(status, "Progressing").and_then(|c| c.reason.clone());
    if reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return;
    }
    let paused_condition = reason.as_deref() == Some("DeploymentPaused");
    let paused = d.spec.paused == Some(true);
    if paused && !paused_condition {
        set_condition(
            status,
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ),
        );
    } else if !paused && paused_condition {
        set_condition(
            status,
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            ),
        );
        note_progress(state, ctx, key, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::sim::store::EventType;

    /// A store and controller driven by hand through simulated time.
    struct Harness {
        store: Store,
        state: ControllerState,
        now: Instant,
        ready_delay: Duration,
        never_ready: Vec<String>,
    }

    impl Harness {
        fn new(ready_delay: Duration) -> Harness {
            let mut store = Store::new();
            store
                .create(
                    Kind::Namespace,
                    "",
                    json!({"metadata": {"name": "prod"}}),
                    false,
                )
                .unwrap();
            Harness {
                store,
                state: ControllerState::default(),
                now: Instant::now(),
                ready_delay,
                never_ready: Vec::new(),
            }
        }

        fn deploy(&mut self, image: &str, replicas: i32, spec: Value) {
            let mut d = json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "app", "image": image}]}}
                }
            });
            json_patch::merge(&mut d, &json!({"spec": spec}));
            self.store
                .create(Kind::Deployment, "prod", d, false)
                .unwrap();
            self.run();
        }

        fn set_image(&mut self, image: &str) {
            let mut d = self
                .store
                .get(Kind::Deployment, "prod", "web")
                .unwrap()
                .clone();
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            self.store
                .update(Kind::Deployment, "prod", "web", d, Part::Main, false)
                .unwrap();
            self.run();
        }

        fn run(&mut self) {
            let ctx = Context {
                now: self.now,
                ready_delay: self.ready_delay,
                never_ready: &self.never_ready,
            };
            run_once(&mut self.store, &mut self.state, &ctx);
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.run();
        }

        fn deployment(&self) -> Deployment {
            get_typed(
                &self.store,
                Kind::Deployment,
                &("prod".into(), "web".into()),
            )
            .unwrap()
        }

        fn replica_sets(&self) -> Vec<ReplicaSet> {
            let mut rss: Vec<ReplicaSet> = self
                .store
                .list(Kind::ReplicaSet, Some("prod"))
                .into_iter()
                .map(|v| serde_json::from_value(v.clone()).unwrap())
                .collect();
            rss.sort_by_key(revision_of);
            rss
        }

        /// The pods not being deleted (those a rollout counts).
        fn pods(&self) -> Vec<Pod> {
            self.store
                .list(Kind::Pod, Some("prod"))
                .into_iter()
                .map(|v| serde_json::from_value::<Pod>(v.clone()).unwrap())
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect()
        }

        fn progressing(&self) -> (String, String) {
            let d = self.deployment();
            let c = condition(d.status.as_ref().unwrap(), "Progressing")
                .unwrap()
                .clone();
            (c.status.unwrap(), c.reason.unwrap())
        }

        fn available(&self) -> (String, String) {
            let d = self.deployment();
            let c = condition(d.status.as_ref().unwrap(), "Available")
                .unwrap()
                .clone();
            (c.status.unwrap(), c.reason.unwrap())
        }

        fn complete(&self) -> bool {
            let d = self.deployment();
            deployment_complete(&d, d.status.as_ref().unwrap())
        }

        fn roll_out(&mut self) {
            for _ in 0..50 {
                if self.complete() {
                    return;
                }
                self.advance(self.ready_delay);
            }
            panic!("the rollout did not complete");
        }
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn a_new_deployment_gets_revision_one_and_becomes_available_after_the_ready_delay() {
        let mut h = Harness::new(Duration::from_secs(5));
        h.deploy("web:1", 3, json!({}));
        let rss = h.replica_sets();
        assert_eq!(rss.len(), 1);
        assert_eq!(revision_of(&rss[0]), 1);
        assert_eq!(rss[0].spec.replicas, Some(3));
        let pods = h.pods();
        assert_eq!(pods.len(), 3);
        assert!(pods.iter().all(|p| !kubelet::is_ready(p)));
        assert_eq!(h.available(), pair("False", "MinimumReplicasUnavailable"));
        assert_eq!(h.progressing(), pair("True", "ReplicaSetUpdated"));
        assert_eq!(annotation(&h.deployment().metadata, REVISION), Some("1"));

        h.advance(Duration::from_secs(4));
        assert!(!h.complete(), "not ready before the delay");
        h.advance(Duration::from_secs(1));
        assert!(h.complete());
        assert_eq!(h.available(), pair("True", "MinimumReplicasAvailable"));
        assert_eq!(h.progressing(), pair("True", "NewReplicaSetAvailable"));
        let status = h.deployment().status.unwrap();
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.unavailable_replicas, None);
    }

    #[test]
    fn a_rolling_update_stays_within_max_surge_and_max_unavailable() {
        let mut h = Harness::new(Duration::from_secs(10));
        h.deploy("web:1", 4, json!({}));
        h.roll_out();
        h.set_image("web:2");
        let mut steps = 0;
        while !h.complete() {
            let pods = h.pods();
            let ready = pods.iter().filter(|p| kubelet::is_ready(p)).count();
            // 25% of 4: one extra pod, one missing pod at most.
            assert!(pods.len() <= 5, "{} pods exceed maxSurge", pods.len());
            assert!(ready >= 3, "{ready} ready pods break maxUnavailable");
            steps += 1;
            assert!(steps < 20, "the rollout stalled");
            h.advance(Duration::from_secs(10));
        }
        assert!(steps >= 2, "the update went in steps ({steps})");
        let rss = h.replica_sets();
        assert_eq!(rss.len(), 2);
        assert_eq!(rss[0].spec.replicas, Some(0));
        assert_eq!(rss[1].spec.replicas, Some(4));
        assert_eq!(revision_of(&rss[1]), 2);
        let images: Vec<String> = h.pods().iter().flat_map(kubelet::images).collect();
        assert_eq!(images, ["web:2"; 4]);
    }

    #[test]
    fn progress_deadline_exceeded_only_after_the_deadline_without_progress() {
        let mut h = Harness::new(Duration::from_secs(1));
        h.never_ready.push("broken".into());
        h.deploy("web:1", 2, json!({"progressDeadlineSeconds": 30}));
        h.roll_out();
        h.set_image("web:broken");
        assert_eq!(h.progressing(), pair("True", "ReplicaSetUpdated"));
        h.advance(Duration::from_secs(29));
        assert_eq!(h.progressing(), pair("True", "ReplicaSetUpdated"));
        h.advance(Duration::from_secs(2));
        assert_eq!(h.progressing(), pair("False", "ProgressDeadlineExceeded"));
        let d = h.deployment();
        let message = condition(d.status.as_ref().unwrap(), "Progressing")
            .unwrap()
            .message
            .clone()
            .unwrap();
        assert!(message.ends_with("has timed out progressing."), "{message}");
        assert_eq!(h.available(), pair("True", "MinimumReplicasAvailable"));

        // A new template starts a new attempt.
        h.set_image("web:3");
        h.roll_out();
        assert_eq!(h.progressing(), pair("True", "NewReplicaSetAvailable"));
    }

    #[test]
    fn going_back_to_an_old_template_readopts_its_replica_set() {
        let mut h = Harness::new(Duration::from_secs(1));
        h.deploy("web:1", 2, json!({}));
        h.roll_out();
        let first = h.replica_sets()[0].metadata.name.clone();
        h.set_image("web:2");
        h.roll_out();
        h.set_image("web:1");
        h.roll_out();
        let rss = h.replica_sets();
        assert_eq!(rss.len(), 2, "no new ReplicaSet for a known template");
        let readopted = rss.iter().find(|rs| rs.metadata.name == first).unwrap();
        assert_eq!(revision_of(readopted), 3);
        assert_eq!(annotation(&readopted.metadata, REVISION_HISTORY), Some("1"));
        assert_eq!(readopted.spec.replicas, Some(2));
        assert_eq!(annotation(&h.deployment().metadata, REVISION), Some("3"));
    }

    #[test]
    fn recreate_removes_every_old_pod_before_creating_new_ones() {
        let mut h = Harness::new(Duration::from_secs(1));
        h.deploy("web:1", 3, json!({"strategy": {"type": "Recreate"}}));
        h.roll_out();
        let before = h.store.resource_version();
        h.set_image("web:2");
        h.roll_out();
        let events = h.store.events_since(Kind::Pod, before).unwrap();
        let last_old_delete = events
            .iter()
            .rposition(|e| e.kind == Kind::Pod && e.event_type == EventType::Deleted)
            .unwrap();
        let first_new_add = events
            .iter()
            .position(|e| e.kind == Kind::Pod && e.event_type == EventType::Added)
            .unwrap();
        assert!(last_old_delete < first_new_add);
        assert_eq!(h.pods().len(), 3);
    }

    #[test]
    fn replica_sets_beyond_the_history_limit_are_deleted() {
        let mut h = Harness::new(Duration::from_secs(1));
        h.deploy("web:1", 1, json!({"revisionHistoryLimit": 1}));
        h.roll_out();
        for image in ["web:2", "web:3"] {
            h.set_image(image);
            h.roll_out();
        }
        h.run();
        let revisions: Vec<i64> = h.replica_sets().iter().map(revision_of).collect();
        assert_eq!(revisions, [2, 3]);
    }

    #[test]
    fn a_paused_deployment_waits_for_resume() {
        let mut h = Harness::new(Duration::from_secs(1));
        h.deploy("web:1", 1, json!({}));
        h.roll_out();
        let mut d = h
            .store
            .get(Kind::Deployment, "prod", "web")
            .unwrap()
            .clone();
        d["spec"]["paused"] = json!(true);
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
        h.store
            .update(Kind::Deployment, "prod", "web", d, Part::Main, false)
            .unwrap();
        h.advance(Duration::from_secs(5));
        assert_eq!(h.replica_sets().len(), 1);
        assert_eq!(h.progressing(), pair("Unknown", "DeploymentPaused"));
        let mut d = h
            .store
            .get(Kind::Deployment, "prod", "web")
            .unwrap()
            .clone();
        d["spec"]["paused"] = json!(false);
        h.store
            .update(Kind::Deployment, "prod", "web", d, Part::Main, false)
            .unwrap();
        h.run();
        h.roll_out();
        assert_eq!(h.replica_sets().len(), 2);
        assert_eq!(h.progressing(), pair("True", "NewReplicaSetAvailable"));
    }

    #[test]
    fn template_hashes_ignore_their_own_label_and_empty_fields() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "web:1", "env": []}]}
        }))
        .unwrap();
        let b: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}, "annotations": {}},
            "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {}}]}
        }))
        .unwrap();
        assert_eq!(template_fingerprint(&a), template_fingerprint(&b));
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(
            template_hash(&a, None)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }
}
