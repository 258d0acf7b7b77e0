//! The Events the simulated cluster's components record, as a real
//! cluster's do: the Deployment controller's `ScalingReplicaSet`, the
//! ReplicaSet controller's `SuccessfulCreate` / `SuccessfulDelete`, the
//! scheduler's `Scheduled` and the kubelet's `Pulled`, `Created`,
//! `Started`, `Killing` and `Unhealthy`. They are core `v1` Events
//! (`kubectl get events`, and the Events of `kubectl describe`, which lists
//! them by `involvedObject`). An Event that happens again is counted on the
//! first one (`count`, `lastTimestamp`), as the client-go recorder counts
//! them; Events older than an hour are removed, as the API server's
//! `--event-ttl` removes them.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::kinds::Kind;
use super::kubelet::NODE_NAME;
use super::store::{Part, Store, now_timestamp, str_at};

/// How long an Event is kept after it last happened (the API server's
/// default `--event-ttl`).
pub const TTL: Duration = Duration::from_secs(3600);

/// The component that records an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Deployment,
    ReplicaSet,
    Scheduler,
    Kubelet,
}

impl Source {
    pub fn component(self) -> &'static str {
        match self {
            Source::Deployment => "deployment-controller",
            Source::ReplicaSet => "replicaset-controller",
            Source::Scheduler => "default-scheduler",
            Source::Kubelet => "kubelet",
        }
    }

    fn source(self) -> Value {
        match self {
            Source::Kubelet => json!({"component": self.component(), "host": NODE_NAME}),
            _ => json!({"component": self.component()}),
        }
    }

    fn instance(self) -> &'static str {
        match self {
            Source::Kubelet => NODE_NAME,
            Source::Scheduler => "default-scheduler-sim-node-1",
            _ => "",
        }
    }
}

/// What happened, to which object.
pub struct Occurrence<'a> {
    /// The object it happened to, as stored.
    pub object: &'a Value,
    pub kind: Kind,
    /// `Normal` or `Warning`.
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    pub source: Source,
    /// The part of the object, e.g. `spec.containers{web}`.
    pub field_path: Option<String>,
}

/// Records an Event, or counts it again on the same Event when it already
/// happened (same object, reason, message and component).
pub fn record(store: &mut Store, occurrence: Occurrence<'_>) {
    let object = occurrence.object;
    let namespace = str_at(object, "/metadata/namespace")
        .unwrap_or("default")
        .to_string();
    let name = str_at(object, "/metadata/name").unwrap_or_default();
    let uid = str_at(object, "/metadata/uid").unwrap_or_default();
    let now = now_timestamp();
    // The name stands for what happened, so the same Event again is found
    // by name (the recorder's own key: object, reason, message, source).
    let field_path = occurrence.field_path.as_deref().unwrap_or_default();
    let digest = Sha256::digest(
        [
            uid,
            occurrence.reason,
            &occurrence.message,
            occurrence.source.component(),
            field_path,
        ]
        .join("\u{0}")
        .as_bytes(),
    );
    let event_name = format!("{name}.{}", hex::encode(&digest[..8]));
    if let Some(again) = store.get(Kind::Event, &namespace, &event_name) {
        let mut event = again.clone();
        let count = event["count"].as_i64().unwrap_or(1) + 1;
        event["count"] = count.into();
        event["lastTimestamp"] = now.into();
        if let Err(e) = store.update(
            Kind::Event,
            &namespace,
            &event_name,
            event,
            Part::All,
            false,
        ) {
            tracing::debug!(error = %e, "simulated cluster could not count an event again");
        }
        return;
    }
    let mut involved = json!({
        "kind": occurrence.kind.kind(),
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "apiVersion": occurrence.kind.api_version(),
        "resourceVersion": str_at(object, "/metadata/resourceVersion").unwrap_or_default(),
    });
    if let Some(path) = &occurrence.field_path {
        involved["fieldPath"] = path.clone().into();
    }
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name, "namespace": namespace},
        "involvedObject": involved,
        "reason": occurrence.reason,
        "message": occurrence.message,
        "source": occurrence.source.source(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": if occurrence.warning { "Warning" } else { "Normal" },
        "eventTime": null,
        "reportingComponent": occurrence.source.component(),
        "reportingInstance": occurrence.source.instance(),
    });
    if let Err(e) = store.create(Kind::Event, &namespace, event, false) {
        tracing::debug!(error = %e, "simulated cluster could not record an event");
    }
}

/// Removes the Events that last happened more than [`TTL`] before `now`
/// (seconds since the epoch).
pub fn expire(store: &mut Store, now: i64) {
    let ttl = i64::try_from(TTL.as_secs()).unwrap_or(i64::MAX);
    let old: Vec<(String, String)> = store
        .list(Kind::Event, None)
        .into_iter()
        .filter(|e| {
            let last = str_at(e, "/lastTimestamp")
                .or_else(|| str_at(e, "/eventTime"))
                .or_else(|| str_at(e, "/metadata/creationTimestamp"))
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
            last.is_some_and(|t| now - t.as_second() > ttl)
        })
        .filter_map(|e| {
            Some((
                str_at(e, "/metadata/namespace")?.to_string(),
                str_at(e, "/metadata/name")?.to_string(),
            ))
        })
        .collect();
    for (namespace, name) in old {
        let _ = store.delete(
            Kind::Event,
            &namespace,
            &name,
            super::store::Propagation::Cascade,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(store: &mut Store) -> Value {
        store
            .create(
                Kind::Namespace,
                "",
                json!({"metadata": {"name": "default"}}),
                false,
            )
            .unwrap();
        let created = store
            .create(
                Kind::Pod,
                "default",
                json!({"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}),
                false,
            )
            .unwrap();
        (*created).clone()
    }

    fn started(object: &Value) -> Occurrence<'_> {
        Occurrence {
            object,
            kind: Kind::Pod,
            warning: false,
            reason: "Started",
            message: "Started container web".into(),
            source: Source::Kubelet,
            field_path: Some("spec.containers{web}".into()),
        }
    }

    #[test]
    fn an_event_names_its_object_and_counts_repeats() {
        let mut store = Store::default();
        let pod = pod(&mut store);
        record(&mut store, started(&pod));
        record(&mut store, started(&pod));
        let events = store.list(Kind::Event, Some("default"));
        assert_eq!(events.len(), 1);
        let event = events[0];
        assert_eq!(event["count"], 2);
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["involvedObject"]["kind"], "Pod");
        assert_eq!(event["involvedObject"]["uid"], pod["metadata"]["uid"]);
        assert_eq!(event["involvedObject"]["fieldPath"], "spec.containers{web}");
        assert_eq!(
            event["source"],
            json!({"component": "kubelet", "host": NODE_NAME})
        );
        assert!(
            str_at(event, "/metadata/name")
                .unwrap()
                .starts_with("web-1.")
        );
        // Another reason is another event.
        let mut killing = started(&pod);
        killing.reason = "Killing";
        killing.message = "Stopping container web".into();
        record(&mut store, killing);
        assert_eq!(store.list(Kind::Event, Some("default")).len(), 2);
    }

    #[test]
    fn events_older_than_the_ttl_are_removed() {
        let mut store = Store::default();
        let pod = pod(&mut store);
        record(&mut store, started(&pod));
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        expire(&mut store, now + 60);
        assert_eq!(store.list(Kind::Event, None).len(), 1);
        expire(&mut store, now + 3601 + 1);
        assert!(store.list(Kind::Event, None).is_empty());
    }
}
