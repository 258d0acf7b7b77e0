//! The resources the simulated cluster serves: their API group, names,
//! scope, subresources and verbs, in one table used by routing, discovery
//! and error messages.

/// A resource type the simulator stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Deployment,
    ReplicaSet,
    Pod,
    Service,
    Ingress,
    /// `v1` Event (what `kubectl get events` and `describe` read).
    Event,
    /// `events.k8s.io/v1` Event (what kube-rs' event recorder writes).
    EventV1,
}

/// Verbs every stored resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Namespace,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Pod,
        Kind::Service,
        Kind::Ingress,
        Kind::Event,
        Kind::EventV1,
    ];

    /// API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Pod | Kind::Service | Kind::Event => "",
            Kind::Deployment | Kind::ReplicaSet => "apps",
            Kind::Ingress => "networking.k8s.io",
            Kind::EventV1 => "events.k8s.io",
        }
    }

    pub fn version(self) -> &'static str {
        "v1"
    }

    /// `apiVersion` as written in objects: `v1`, `apps/v1`, …
    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "apps" => "apps/v1",
            "events.k8s.io" => "events.k8s.io/v1",
            _ => "networking.k8s.io/v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Ingress => "Ingress",
            Kind::Event | Kind::EventV1 => "Event",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Ingress => "ingresses",
            Kind::Event | Kind::EventV1 => "events",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Deployment => "deployment",
            Kind::ReplicaSet => "replicaset",
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::Ingress => "ingress",
            Kind::Event | Kind::EventV1 => "event",
        }
    }

    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Deployment => &["deploy"],
            Kind::ReplicaSet => &["rs"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::Ingress => &["ing"],
            Kind::Event | Kind::EventV1 => &["ev"],
        }
    }

    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }

    /// Subresources served besides the object itself.
    pub fn subresources(self) -> &'static [&'static str] {
        match self {
            Kind::Deployment | Kind::ReplicaSet => &["status", "scale"],
            Kind::Pod => &["status", "log"],
            Kind::Namespace | Kind::Service | Kind::Ingress => &["status"],
            Kind::Event | Kind::EventV1 => &[],
        }
    }

    /// Whether `metadata.generation` is kept (bumped on spec changes).
    pub fn has_generation(self) -> bool {
        matches!(self, Kind::Deployment | Kind::ReplicaSet)
    }

    /// `deployments.apps`, `pods`: the name the API uses in messages.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    /// `Deployment.apps`, `Pod`: the kind as validation messages name it.
    pub fn qualified_kind(self) -> String {
        match self.group() {
            "" => self.kind().to_string(),
            group => format!("{}.{group}", self.kind()),
        }
    }

    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.version() == version && k.plural() == plural)
    }

    /// The kinds served under one group/version.
    pub fn in_group(group: &str, version: &str) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| k.group() == group && k.version() == version)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_kinds_only_in_their_group() {
        assert_eq!(
            Kind::from_path("apps", "v1", "deployments"),
            Some(Kind::Deployment)
        );
        assert_eq!(Kind::from_path("", "v1", "deployments"), None);
        assert_eq!(
            Kind::from_path("networking.k8s.io", "v1", "ingresses"),
            Some(Kind::Ingress)
        );
        assert_eq!(Kind::Deployment.qualified(), "deployments.apps");
        assert_eq!(Kind::Pod.qualified(), "pods");
    }
}
