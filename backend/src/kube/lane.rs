//! Lanes: a branch's copy of an app's Deployment and Service, side by side
//! with the app's own. The copy carries `rollway.io/lane=<slug>` on its
//! selector and pods, and the labels the app's selectors match on get the
//! lane in their value, so neither the app's Deployment nor its Service
//! ever select a lane's pods (and the lane's select only its own). The
//! app's objects are read, never written.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};

use super::{ClusterClient, KubeError, Target};
use crate::domain::fast_path::{LANE_LABEL, LANE_OF_ANNOTATION, lane_name};

/// The label keys whose values a lane changes: the ones the app's
/// Deployment selector and Service selector match on.
fn selected_keys(base: &Deployment, service: Option<&Service>) -> Vec<String> {
    let mut keys: Vec<String> = base
        .spec
        .selector
        .match_labels
        .as_ref()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(selector) = service
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.selector.as_ref())
    {
        keys.extend(selector.keys().cloned());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// `labels` for lane `slug`: each selected key's value marked with the
/// lane, and the lane label added.
fn lane_labels(
    labels: &BTreeMap<String, String>,
    keys: &[String],
    slug: &str,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    for key in keys {
        if let Some(value) = out.get_mut(key) {
            *value = if value.is_empty() {
                slug.to_string()
            } else {
                lane_name(value, slug)
            };
        }
    }
    out.insert(LANE_LABEL.into(), slug.into());
    out
}

/// Fresh metadata for a copy of `base` named `name` in lane `slug`.
fn lane_meta(base: &ObjectMeta, name: &str, slug: &str) -> ObjectMeta {
    let mut labels = base.labels.clone().unwrap_or_default();
    labels.insert(LANE_LABEL.into(), slug.into());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        LANE_OF_ANNOTATION.to_string(),
        base.name.clone().unwrap_or_default(),
    );
    ObjectMeta {
        name: Some(name.into()),
        namespace: base.namespace.clone(),
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The lane `slug` copy of `base` named `name`, one replica, its
/// `container` running `image`; `service` is the app's Service (its
/// selector's keys are marked too). `None` when `base` has no such
/// container.
pub fn lane_deployment(
    base: &Deployment,
    service: Option<&Service>,
    name: &str,
    slug: &str,
    container: &str,
    image: &str,
) -> Option<Deployment> {
    let keys = selected_keys(base, service);
    let mut spec = base.spec.clone();
    spec.replicas = Some(1);
    spec.paused = None;
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    spec.selector.match_labels = Some(lane_labels(&selector, &keys, slug));
    let mut template_meta = spec.template.metadata.clone().unwrap_or_default();
    template_meta.labels = Some(lane_labels(
        &template_meta.labels.unwrap_or_default(),
        &keys,
        slug,
    ));
    spec.template.metadata = Some(template_meta);
    let pod = spec.template.spec.as_mut()?;
    let target = pod.containers.iter_mut().find(|c| c.name == container)?;
    target.image = Some(image.into());
    Some(Deployment {
        metadata: lane_meta(&base.metadata, name, slug),
        spec,
        status: None,
    })
}

/// The lane `slug` copy of the app's `service` named `name`, selecting the
/// lane's pods only: a ClusterIP Service on the same ports (node ports,
/// cluster IPs and load balancers are the copy's own).
pub fn lane_service(
    base_deployment: &Deployment,
    service: &Service,
    name: &str,
    slug: &str,
) -> Service {
    let keys = selected_keys(base_deployment, Some(service));
    let base = service.spec.clone().unwrap_or_default();
    let ports = base.ports.map(|ports| {
        ports
            .into_iter()
            .map(|mut p| {
                p.node_port = None;
                p
            })
            .collect()
    });
    Service {
        metadata: lane_meta(&service.metadata, name, slug),
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports,
            selector: Some(lane_labels(&base.selector.unwrap_or_default(), &keys, slug)),
            session_affinity: base.session_affinity,
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether `live` already is what [`lane_service`] `wanted` asks for: the
/// same labels, selector and ports, a port's defaults (protocol TCP, the
/// target port its port, the node port the cluster gave it) as the API
/// server fills them in.
pub fn service_as_wanted(live: &Service, wanted: &Service) -> bool {
    use k8s_openapi::api::core::v1::ServicePort;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = |s: &Service| -> Vec<(Option<String>, i32, IntOrString, String)> {
        let mut ports: Vec<_> = s
            .spec
            .iter()
            .flat_map(|spec| spec.ports.iter().flatten())
            .map(|p: &ServicePort| {
                (
                    p.name.clone().filter(|n| !n.is_empty()),
                    p.port,
                    p.target_port.clone().unwrap_or(IntOrString::Int(p.port)),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                )
            })
            .collect();
        ports.sort_by(|a, b| (&a.0, a.1, &a.3).cmp(&(&b.0, b.1, &b.3)));
        ports
    };
    let selector = |s: &Service| s.spec.as_ref().and_then(|spec| spec.selector.clone());
    live.metadata.labels.clone().unwrap_or_default()
        == wanted.metadata.labels.clone().unwrap_or_default()
        && selector(live) == selector(wanted)
        && ports(live) == ports(wanted)
}

impl ClusterClient {
    /// Creates `deployment`; a 409 when one of its name exists.
    pub async fn create_deployment(
        &self,
        deployment: &Deployment,
    ) -> Result<Deployment, KubeError> {
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        self.call(
            Target::new("create", "deployments")
                .within(&namespace)
                .named(&name),
            &format!("creating Deployment {namespace}/{name}"),
            || async { api.create(&PostParams::default(), deployment).await },
        )
        .await
    }

    /// Service `namespace/name`, or `None`.
    pub async fn service(&self, namespace: &str, name: &str) -> Result<Option<Service>, KubeError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        self.call(
            Target::new("get", "services").within(namespace).named(name),
            &format!("reading Service {namespace}/{name}"),
            || api.get_opt(name),
        )
        .await
    }

    /// Creates `service`, or writes its labels, selector and ports over the
    /// one of its name unless it has them already.
    pub async fn put_service(&self, service: &Service) -> Result<Service, KubeError> {
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let api: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        match self.service(&namespace, &name).await? {
            None => {
                self.call(
                    Target::new("create", "services")
                        .within(&namespace)
                        .named(&name),
                    &format!("creating Service {namespace}/{name}"),
                    || async { api.create(&PostParams::default(), service).await },
                )
                .await
            }
            Some(live) if service_as_wanted(&live, service) => Ok(live),
            Some(live) => {
                let mut next = live.clone();
                let mut spec = live.spec.unwrap_or_default();
                let wanted = service.spec.clone().unwrap_or_default();
                spec.ports = wanted.ports;
                spec.selector = wanted.selector;
                next.spec = Some(spec);
                next.metadata.labels = service.metadata.labels.clone();
                self.call(
                    Target::new("replace", "services")
                        .within(&namespace)
                        .named(&name),
                    &format!("writing Service {namespace}/{name}"),
                    || async { api.replace(&name, &PostParams::default(), &next).await },
                )
                .await
            }
        }
    }

    /// Deletes lane object `kind` `namespace/name` if it is there and is a
    /// lane's (it carries the lane label): true when it was deleted, false
    /// when it was not there.
    pub async fn delete_lane_object(
        &self,
        namespace: &str,
        name: &str,
        service: bool,
    ) -> Result<bool, KubeError> {
        let (resource, labels) = if service {
            let found = self.service(namespace, name).await?;
            ("services", found.map(|s| s.metadata.labels))
        } else {
            let found = self.deployment(namespace, name).await?;
            ("deployments", found.map(|d| d.metadata.labels))
        };
        let Some(labels) = labels else {
            return Ok(false);
        };
        if !labels.unwrap_or_default().contains_key(LANE_LABEL) {
            return Err(KubeError::Refused(format!(
                "{namespace}/{name} is not a lane's (it has no {LANE_LABEL} label); left as it is"
            )));
        }
        let params = DeleteParams::background();
        let what = format!("deleting {resource} {namespace}/{name}");
        let deleted = if service {
            let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
            let target = Target::new("delete", "services")
                .within(namespace)
                .named(name);
            self.call(target, &what, || async {
                api.delete(name, &params).await.map(|_| ())
            })
            .await
        } else {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
            let target = Target::new("delete", "deployments")
                .within(namespace)
                .named(name);
            self.call(target, &what, || async {
                api.delete(name, &params).await.map(|_| ())
            })
            .await
        };
        match deleted {
            Ok(()) => Ok(true),
            Err(KubeError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::api::core::v1::{
        Container, PodSpec, PodTemplateSpec, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn a_lane_service_as_the_api_server_fills_it_in_is_as_wanted_and_a_changed_port_is_not() {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let wanted = lane_service(&base(), &service(), "web--feat", "feat");
        let mut live = wanted.clone();
        let spec = live.spec.as_mut().unwrap();
        spec.cluster_ip = Some("10.0.0.12".into());
        for p in spec.ports.iter_mut().flatten() {
            p.protocol = Some("TCP".into());
            p.target_port = Some(IntOrString::Int(p.port));
        }
        live.metadata.resource_version = Some("12".into());
        live.metadata.uid = Some("u9".into());
        assert!(service_as_wanted(&live, &wanted));

        let mut other_port = live.clone();
        other_port.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 81;
        assert!(!service_as_wanted(&other_port, &wanted));
        let mut other_selector = live.clone();
        other_selector.spec.as_mut().unwrap().selector = Some(labels(&[("app", "web")]));
        assert!(!service_as_wanted(&other_selector, &wanted));
        let mut unlabelled = live;
        unlabelled.metadata.labels = None;
        assert!(!service_as_wanted(&unlabelled, &wanted));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u1".into()),
                resource_version: Some("7".into()),
                labels: Some(labels(&[("app", "web")])),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: Some(4),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![
                            Container {
                                name: "web".into(),
                                image: Some("shop/web:1".into()),
                                ..Container::default()
                            },
                            Container {
                                name: "sidecar".into(),
                                image: Some("proxy:2".into()),
                                ..Container::default()
                            },
                        ],
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }

    fn service() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                cluster_ip: Some("10.0.0.9".into()),
                selector: Some(labels(&[("app", "web"), ("tier", "front")])),
                ports: Some(vec![ServicePort {
                    port: 80,
                    node_port: Some(30080),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| pod.get(k) == Some(v))
    }

    #[test]
    fn a_lane_copy_runs_its_image_on_one_replica_and_keeps_the_rest() {
        let lane = lane_deployment(
            &base(),
            Some(&service()),
            "web--feat",
            "feat",
            "web",
            "shop/web:2",
        )
        .unwrap();
        assert_eq!(lane.metadata.name.as_deref(), Some("web--feat"));
        assert_eq!(lane.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(lane.metadata.uid, None);
        assert_eq!(lane.metadata.resource_version, None);
        assert_eq!(
            lane.metadata.annotations.unwrap()[LANE_OF_ANNOTATION],
            "web"
        );
        let spec = lane.spec;
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some("shop/web:2"));
        assert_eq!(pod.containers[1].image.as_deref(), Some("proxy:2"));
        assert!(lane_deployment(&base(), None, "x", "feat", "nope", "i:1").is_none());
    }

    #[test]
    fn neither_the_apps_deployment_nor_its_service_select_a_lanes_pods() {
        let base = base();
        let svc = service();
        let lane =
            lane_deployment(&base, Some(&svc), "web--feat", "feat", "web", "shop/web:2").unwrap();
        let lane_spec = lane.spec;
        let lane_pod = lane_spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(lane_pod[LANE_LABEL], "feat");
        assert_eq!(lane_pod["app"], "web--feat");
        assert_eq!(lane_pod["tier"], "front--feat");
        let base_spec = base.spec.clone();
        let base_pod = base_spec.template.metadata.unwrap().labels.unwrap();
        let base_selector = base_spec.selector.match_labels.unwrap();
        let lane_selector = lane_spec.selector.match_labels.unwrap();
        assert!(!selects(&base_selector, &lane_pod));
        assert!(!selects(
            svc.spec.as_ref().unwrap().selector.as_ref().unwrap(),
            &lane_pod
        ));
        assert!(selects(&lane_selector, &lane_pod));
        assert!(!selects(&lane_selector, &base_pod));
        let lane_svc = lane_service(&base, &svc, "web--feat", "feat");
        let lane_svc_spec = lane_svc.spec.unwrap();
        let lane_svc_selector = lane_svc_spec.selector.unwrap();
        assert!(selects(&lane_svc_selector, &lane_pod));
        assert!(!selects(&lane_svc_selector, &base_pod));
        // Its own ClusterIP, no node port, no load balancer.
        assert_eq!(lane_svc_spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(lane_svc_spec.cluster_ip, None);
        assert_eq!(lane_svc_spec.ports.unwrap()[0].node_port, None);
        // Two lanes do not select each other's pods.
        let other = lane_deployment(&base, Some(&svc), "web--b", "b", "web", "shop/web:3").unwrap();
        let other_pod = other.spec.template.metadata.unwrap().labels.unwrap();
        assert!(!selects(&lane_selector, &other_pod));
    }
}
