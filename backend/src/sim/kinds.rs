//! The resources the simulated cluster serves: their API group, names,
//! scope, subresources and verbs, in one table used by routing, discovery
//! and error messages. Resources defined by a CustomResourceDefinition are
//! one more variant, [`Kind::Custom`], described by the definition itself
//! (see `crd.rs`).

use super::crd::CustomKind;

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
    ConfigMap,
    Secret,
    ServiceAccount,
    /// Kept by the controller for each Service with a selector.
    Endpoints,
    /// `discovery.k8s.io/v1`, kept alongside Endpoints.
    EndpointSlice,
    /// The one node, `sim-node-1`, registered by the kubelet.
    Node,
    /// `apiextensions.k8s.io/v1`: each one makes a [`Kind::Custom`] servable.
    CustomResourceDefinition,
    /// `authorization.k8s.io/v1`, create only: what `kubectl auth can-i` asks.
    SelfSubjectAccessReview,
    /// `authorization.k8s.io/v1`, create only: `kubectl auth can-i --list`.
    SelfSubjectRulesReview,
    /// Bound at once to a volume of the simulated provisioner.
    PersistentVolumeClaim,
    /// `rbac.authorization.k8s.io/v1`: stored, not enforced (the simulated
    /// cluster allows every request).
    ClusterRole,
    ClusterRoleBinding,
    /// `policy/v1`, its status kept from the pods it selects.
    PodDisruptionBudget,
    /// A resource of a CustomResourceDefinition. Two custom kinds are the
    /// same kind when their group and plural are (whatever else the
    /// definition said when each was made).
    Custom(CustomKind),
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
    /// The built-in kinds (custom ones come and go with their definitions).
    pub const ALL: [Kind; 21] = [
        Kind::Namespace,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Pod,
        Kind::Service,
        Kind::Ingress,
        Kind::Event,
        Kind::EventV1,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::ServiceAccount,
        Kind::Endpoints,
        Kind::Node,
        Kind::EndpointSlice,
        Kind::CustomResourceDefinition,
        Kind::SelfSubjectAccessReview,
        Kind::SelfSubjectRulesReview,
        Kind::PersistentVolumeClaim,
        Kind::ClusterRole,
        Kind::ClusterRoleBinding,
        Kind::PodDisruptionBudget,
    ];

    /// API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace
            | Kind::Pod
            | Kind::Service
            | Kind::Event
            | Kind::ConfigMap
            | Kind::Secret
            | Kind::ServiceAccount
            | Kind::Endpoints
            | Kind::Node
            | Kind::PersistentVolumeClaim => "",
            Kind::Deployment | Kind::ReplicaSet => "apps",
            Kind::Ingress => "networking.k8s.io",
            Kind::EventV1 => "events.k8s.io",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::CustomResourceDefinition => "apiextensions.k8s.io",
            Kind::SelfSubjectAccessReview | Kind::SelfSubjectRulesReview => "authorization.k8s.io",
            Kind::ClusterRole | Kind::ClusterRoleBinding => "rbac.authorization.k8s.io",
            Kind::PodDisruptionBudget => "policy",
            Kind::Custom(c) => c.group(),
        }
    }

    /// The version objects are stored (and, for built-in kinds, served) at.
    pub fn version(self) -> &'static str {
        match self {
            Kind::Custom(c) => c.storage_version(),
            _ => "v1",
        }
    }

    /// `apiVersion` as written in objects: `v1`, `apps/v1`, …
    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "apps" => "apps/v1",
            "events.k8s.io" => "events.k8s.io/v1",
            "networking.k8s.io" => "networking.k8s.io/v1",
            "discovery.k8s.io" => "discovery.k8s.io/v1",
            "apiextensions.k8s.io" => "apiextensions.k8s.io/v1",
            "authorization.k8s.io" => "authorization.k8s.io/v1",
            "rbac.authorization.k8s.io" => "rbac.authorization.k8s.io/v1",
            "policy" => "policy/v1",
            _ => match self {
                Kind::Custom(c) => c.api_version(),
                _ => "v1",
            },
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
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::CustomResourceDefinition => "CustomResourceDefinition",
            Kind::SelfSubjectAccessReview => "SelfSubjectAccessReview",
            Kind::SelfSubjectRulesReview => "SelfSubjectRulesReview",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::ClusterRole => "ClusterRole",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::Custom(c) => c.kind(),
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
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "nodes",
            Kind::CustomResourceDefinition => "customresourcedefinitions",
            Kind::SelfSubjectAccessReview => "selfsubjectaccessreviews",
            Kind::SelfSubjectRulesReview => "selfsubjectrulesreviews",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::ClusterRole => "clusterroles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
            Kind::PodDisruptionBudget => "poddisruptionbudgets",
            Kind::Custom(c) => c.plural(),
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Custom(c) => c.singular(),
            // The lowercase kind, as the API server derives it.
            Kind::Namespace => "namespace",
            Kind::Deployment => "deployment",
            Kind::ReplicaSet => "replicaset",
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::Ingress => "ingress",
            Kind::Event | Kind::EventV1 => "event",
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
            Kind::ServiceAccount => "serviceaccount",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslice",
            Kind::Node => "node",
            Kind::CustomResourceDefinition => "customresourcedefinition",
            Kind::SelfSubjectAccessReview => "selfsubjectaccessreview",
            Kind::SelfSubjectRulesReview => "selfsubjectrulesreview",
            Kind::PersistentVolumeClaim => "persistentvolumeclaim",
            Kind::ClusterRole => "clusterrole",
            Kind::ClusterRoleBinding => "clusterrolebinding",
            Kind::PodDisruptionBudget => "poddisruptionbudget",
        }
    }

    pub fn short_names(self) -> Vec<&'static str> {
        match self {
            Kind::Namespace => vec!["ns"],
            Kind::Deployment => vec!["deploy"],
            Kind::ReplicaSet => vec!["rs"],
            Kind::Pod => vec!["po"],
            Kind::Service => vec!["svc"],
            Kind::Ingress => vec!["ing"],
            Kind::Event | Kind::EventV1 => vec!["ev"],
            Kind::ConfigMap => vec!["cm"],
            Kind::ServiceAccount => vec!["sa"],
            Kind::Endpoints => vec!["ep"],
            Kind::Node => vec!["no"],
            Kind::CustomResourceDefinition => vec!["crd", "crds"],
            Kind::PersistentVolumeClaim => vec!["pvc"],
            Kind::PodDisruptionBudget => vec!["pdb"],
            Kind::Secret
            | Kind::EndpointSlice
            | Kind::SelfSubjectAccessReview
            | Kind::SelfSubjectRulesReview
            | Kind::ClusterRole
            | Kind::ClusterRoleBinding => vec![],
            Kind::Custom(c) => c.short_names(),
        }
    }

    pub fn namespaced(self) -> bool {
        match self {
            Kind::Namespace
            | Kind::Node
            | Kind::CustomResourceDefinition
            | Kind::SelfSubjectAccessReview
            | Kind::SelfSubjectRulesReview
            | Kind::ClusterRole
            | Kind::ClusterRoleBinding => false,
            Kind::Custom(c) => c.namespaced(),
            _ => true,
        }
    }

    /// Subresources served besides the object itself.
    pub fn subresources(self) -> &'static [&'static str] {
        match self {
            Kind::Deployment | Kind::ReplicaSet => &["status", "scale"],
            Kind::Pod => &["status", "log"],
            Kind::Namespace
            | Kind::Service
            | Kind::Ingress
            | Kind::Node
            | Kind::CustomResourceDefinition
            | Kind::PersistentVolumeClaim
            | Kind::PodDisruptionBudget => &["status"],
            Kind::Custom(c) if c.has_status() => &["status"],
            _ => &[],
        }
    }

    /// The verbs discovery announces.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Kind::SelfSubjectAccessReview | Kind::SelfSubjectRulesReview => &["create"],
            _ => VERBS,
        }
    }

    /// The discovery categories (`kubectl get all` reads `all`).
    pub fn categories(self) -> Vec<&'static str> {
        match self {
            Kind::Deployment
            | Kind::ReplicaSet
            | Kind::Pod
            | Kind::Service
            | Kind::Ingress
            | Kind::Event
            | Kind::EventV1 => vec!["all"],
            Kind::CustomResourceDefinition => vec!["api-extensions"],
            Kind::Custom(c) => c.categories(),
            _ => vec![],
        }
    }

    /// Whether `metadata.generation` is kept (bumped on spec changes).
    pub fn has_generation(self) -> bool {
        matches!(
            self,
            Kind::Deployment
                | Kind::ReplicaSet
                | Kind::PodDisruptionBudget
                | Kind::CustomResourceDefinition
                | Kind::Custom(_)
        )
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

    /// The built-in kind at a path (custom kinds: `crd::resolve`).
    pub fn from_path(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.version() == version && k.plural() == plural)
    }

    /// The built-in kinds served under one group/version.
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
        assert_eq!(
            Kind::from_path("rbac.authorization.k8s.io", "v1", "clusterroles"),
            Some(Kind::ClusterRole)
        );
        assert_eq!(
            Kind::ClusterRoleBinding.api_version(),
            "rbac.authorization.k8s.io/v1"
        );
        assert_eq!(
            Kind::from_path("policy", "v1", "poddisruptionbudgets"),
            Some(Kind::PodDisruptionBudget)
        );
        assert_eq!(Kind::PodDisruptionBudget.api_version(), "policy/v1");
        assert_eq!(
            Kind::from_path("", "v1", "persistentvolumeclaims"),
            Some(Kind::PersistentVolumeClaim)
        );
        assert!(!Kind::ClusterRole.namespaced() && Kind::PersistentVolumeClaim.namespaced());
    }
}
