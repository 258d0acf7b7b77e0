//! The simulator driven the way Rollway drives a cluster: a real kube-rs
//! client over the in-process router.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;

use super::{Sim, SimConfig};

fn fast() -> SimConfig {
    SimConfig {
        tick: Duration::from_millis(10),
        ready_delay: Duration::from_millis(50),
        log_interval: Duration::from_millis(100),
    }
}

fn client(sim: &Sim) -> Client {
    Client::new(sim.router(), "default")
}

/// Polls `check` until it answers `Some`, failing after 20 seconds.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rolled_out(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
}

async fn wait_rolled_out(sim: &Sim, namespace: &str, name: &str) -> Deployment {
    eventually(&format!("{namespace}/{name} to roll out"), || {
        sim.deployment(namespace, name).filter(rolled_out)
    })
    .await
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
        .map(|c| {
            (
                c.status.clone().unwrap_or_default(),
                c.reason.clone().unwrap_or_default(),
            )
        })
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned()
        .unwrap_or_default()
}

fn set_image(image: &str) -> Patch<serde_json::Value> {
    Patch::Strategic(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}),
    )
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn sim_kube_client_gets_patches_and_sees_the_rollout() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 2, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let d = api.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert_eq!(
        d.spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    assert_eq!(d.spec.revision_history_limit, Some(10));
    wait_rolled_out(&sim, "prod", "web").await;

    let patched = api
        .patch("web", &PatchParams::default(), &set_image("web:2"))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    let image = patched.spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("web:2"));

    let done = wait_rolled_out(&sim, "prod", "web").await;
    assert_eq!(done.status.as_ref().unwrap().observed_generation, Some(2));
    assert_eq!(
        condition(&done, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(
        condition(&done, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    let pods = eventually("old pods to go", || {
        let pods = sim.pods("prod");
        (pods.len() == 2).then_some(pods)
    })
    .await;
    for pod in &pods {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some("sim-node-1")
        );
        assert!(status.pod_ip.is_some() && status.start_time.is_some());
        let container = &status.container_statuses.as_ref().unwrap()[0];
        assert!(container.ready);
        assert_eq!(container.image, "web:2");
    }
    assert!(api.get_opt("missing").await.unwrap().is_none());
    let (code, reason) = api_error(api.get("missing").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn sim_replace_with_a_stale_resource_version_conflicts() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    // Once rolled out, the controller leaves the object alone.
    wait_rolled_out(&sim, "prod", "web").await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let stale = api.get("web").await.unwrap();
    let mut fresh = stale.clone();
    fresh
        .metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "front".into());
    api.replace("web", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let (code, reason) = api_error(
        api.replace("web", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    let (code, reason) = api_error(
        api.create(&PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn sim_two_image_changes_make_three_revisions_and_undo_readopts_the_first() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 2, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    wait_rolled_out(&sim, "prod", "web").await;
    for image in ["web:2", "web:3"] {
        api.patch("web", &PatchParams::default(), &set_image(image))
            .await
            .unwrap();
        wait_rolled_out(&sim, "prod", "web").await;
    }
    let rs_api: Api<ReplicaSet> = Api::namespaced(client(&sim), "prod");
    let rss = rs_api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let mut revisions: Vec<(String, String, i32)> = rss
        .iter()
        .map(|rs| {
            let image = rs
                .spec
                .template
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap();
            (revision(&rs.metadata), image, rs.spec.replicas.unwrap())
        })
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        [
            ("1".into(), "web:1".into(), 0),
            ("2".into(), "web:2".into(), 0),
            ("3".into(), "web:3".into(), 2)
        ]
    );
    for rs in &rss {
        let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
        assert_eq!(
            rs.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(
            rs.spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Deployment", Some(true))
        );
    }
    let d = api.get("web").await.unwrap();
    assert_eq!(revision(&d.metadata), "3");

    // What `kubectl rollout undo --to-revision=1` sends: the old template
    // (without its hash label) as a JSON patch.
    let first = rss.iter().find(|rs| revision(&rs.metadata) == "1").unwrap();
    let mut template = first.spec.template.clone().unwrap();
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(undo).unwrap()),
    )
    .await
    .unwrap();
    let d = wait_rolled_out(&sim, "prod", "web").await;
    assert_eq!(revision(&d.metadata), "4");
    let readopted = rs_api
        .get(first.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(revision(&readopted.metadata), "4");
    assert_eq!(
        readopted.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(readopted.spec.replicas, Some(2));
    assert_eq!(
        rs_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

#[tokio::test]
async fn sim_never_ready_images_end_in_progress_deadline_exceeded() {
    let sim = Sim::new(fast());
    sim.faults().never_ready("broken");
    sim.create_deployment("prod", "web", "app", "web:1", 2, 1);
    wait_rolled_out(&sim, "prod", "web").await;
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    api.patch("web", &PatchParams::default(), &set_image("web:broken"))
        .await
        .unwrap();
    let d = eventually("ProgressDeadlineExceeded", || {
        sim.deployment("prod", "web").filter(|d| {
            condition(d, "Progressing") == Some(("False".into(), "ProgressDeadlineExceeded".into()))
        })
    })
    .await;
    // Old pods keep serving: the rollout stalls within maxUnavailable.
    assert_eq!(
        condition(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    let status = d.status.unwrap();
    assert_eq!(status.updated_replicas, Some(1));
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.unavailable_replicas, Some(1));
    let broken: Vec<Pod> = sim
        .pods("prod")
        .into_iter()
        .filter(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("web:broken"))
        .collect();
    assert_eq!(broken.len(), 1);
    assert!(
        !broken[0]
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .ready
    );

    // Lifting the fault lets the rollout finish.
    sim.faults().clear_never_ready();
    let d = wait_rolled_out(&sim, "prod", "web").await;
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
}

#[tokio::test]
async fn sim_watcher_reconnects_after_drop_watches() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=web"),
    );
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) = event
                && tx.send(d).is_err()
            {
                return;
            }
        }
    });
    let image_of = |d: &Deployment| {
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(image_of(&first), "web:1");

    sim.faults().drop_watches();
    api.patch("web", &PatchParams::default(), &set_image("web:2"))
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let d = rx.recv().await.unwrap();
            if image_of(&d) == "web:2" {
                return d;
            }
        }
    })
    .await
    .expect("the watcher sees changes after its watch was dropped");
    assert_eq!(seen.metadata.generation, Some(2));
    let watches = sim
        .requests()
        .iter()
        .filter(|r| r.query.contains("watch=true"))
        .count();
    assert!(
        watches >= 2,
        "the watcher watched again ({watches} watches)"
    );
    task.abort();
}

#[tokio::test]
async fn sim_watch_from_a_compacted_version_answers_410_gone() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let old_rv = api
        .get("web")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    sim.set_history_limit(3);
    for n in 0..5 {
        api.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"n": n.to_string()}}})),
        )
        .await
        .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // A recent version resumes with the later events (history long enough
    // again that the controller's own writes cannot push it out).
    sim.set_history_limit(1000);
    let recent = api
        .get("web")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &recent)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"n": "last"}}})),
    )
    .await
    .unwrap();
    // The controller may write the Deployment's status first.
    loop {
        match stream.try_next().await.unwrap() {
            Some(WatchEvent::Modified(d)) if d.metadata.labels.as_ref().unwrap()["n"] == "last" => {
                break;
            }
            Some(WatchEvent::Modified(d)) => {
                assert_eq!(
                    d.metadata.labels.unwrap()["n"],
                    "4",
                    "nothing older comes back"
                )
            }
            other => panic!("expected MODIFIED, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sim_faults_fail_hang_and_conflict_the_next_matching_requests() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");

    sim.faults().fail_next(1, Some("get"), "/deployments/web");
    let (code, reason) = api_error(api.get("web").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    api.get("web").await.unwrap();

    sim.faults()
        .conflict_next(2, Some("PATCH"), "/deployments/web");
    api.get("web").await.expect("reads are not conflicted");
    for _ in 0..2 {
        let (code, reason) = api_error(
            api.patch("web", &PatchParams::default(), &set_image("web:2"))
                .await
                .unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
    }
    api.patch("web", &PatchParams::default(), &set_image("web:2"))
        .await
        .unwrap();

    sim.faults().hang_next(1, None, "/deployments/web");
    let hung = tokio::time::timeout(Duration::from_millis(300), api.get("web")).await;
    assert!(hung.is_err(), "the request hangs");
    api.get("web").await.expect("only one request hangs");
}

#[tokio::test]
async fn sim_request_log_records_patch_bodies() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    sim.clear_requests();
    api.patch("web", &PatchParams::default(), &set_image("web:7"))
        .await
        .unwrap();
    api.get("web").await.unwrap();
    let requests = sim.requests();
    let image_patches: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.path == "/apis/apps/v1/namespaces/prod/deployments/web"
                && r.body.contains("web:7")
        })
        .collect();
    assert_eq!(image_patches.len(), 1);
    assert_eq!(
        image_patches[0].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.body.is_empty())
    );
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn sim_pod_logs_name_the_container_and_follow_until_the_pod_goes() {
    let sim = Sim::new(fast());
    sim.create_namespace("prod");
    let pods: Api<Pod> = Api::namespaced(client(&sim), "prod");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "two"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}, {"name": "proxy", "image": "envoy:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the pod to start", || {
        sim.pods("prod")
            .first()
            .and_then(|p| p.status.as_ref()?.start_time.clone())
    })
    .await;

    let (code, _) = api_error(pods.logs("two", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 400);
    let message = match pods.logs("two", &LogParams::default()).await.unwrap_err() {
        kube::Error::Api(status) => status.message,
        other => panic!("{other:?}"),
    };
    assert!(
        message.contains("app") && message.contains("proxy"),
        "{message}"
    );
    let wrong = LogParams {
        container: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(
        api_error(pods.logs("two", &wrong).await.unwrap_err()).0,
        400
    );

    let params = LogParams {
        container: Some("proxy".into()),
        timestamps: true,
        ..Default::default()
    };
    let text = pods.logs("two", &params).await.unwrap();
    assert!(text.contains("envoy:1"), "{text}");
    assert!(
        text.lines()
            .all(|l| l.split(' ').next().unwrap().ends_with('Z')),
        "{text}"
    );
    let tail = LogParams {
        container: Some("app".into()),
        tail_lines: Some(1),
        ..Default::default()
    };
    assert_eq!(pods.logs("two", &tail).await.unwrap().lines().count(), 1);

    let follow = LogParams {
        container: Some("app".into()),
        follow: true,
        ..Default::default()
    };
    let mut lines = pods.log_stream("two", &follow).await.unwrap().lines();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(5), lines.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(seen[0].contains("Starting app (image app:1)"), "{seen:?}");
    pods.delete("two", &DeleteParams::default()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while lines.try_next().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "following ends when the pod goes");
}

#[tokio::test]
async fn sim_selectors_filter_lists() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    sim.create_deployment("prod", "api", "app", "api:1", 1, 600);
    sim.create_deployment("stage", "web", "app", "web:1", 1, 600);
    let all: Api<Deployment> = Api::all(client(&sim));
    let names = |items: Vec<Deployment>| -> Vec<String> {
        items
            .into_iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d.metadata.namespace.unwrap(),
                    d.metadata.name.unwrap()
                )
            })
            .collect()
    };
    let list = |selector: &str| {
        let all = all.clone();
        let params = ListParams::default().labels(selector);
        async move { names(all.list(&params).await.unwrap().items) }
    };
    assert_eq!(list("app=web").await, ["prod/web", "stage/web"]);
    assert_eq!(list("app!=web").await, ["prod/api"]);
    assert_eq!(list("app in (api,web)").await.len(), 3);
    assert_eq!(list("app notin (web)").await, ["prod/api"]);
    assert_eq!(list("app").await.len(), 3);
    assert!(list("!app").await.is_empty());
    let by_field = ListParams::default().fields("metadata.namespace=stage");
    assert_eq!(
        names(all.list(&by_field).await.unwrap().items),
        ["stage/web"]
    );
    let bad = ListParams::default().labels("app in (web");
    assert_eq!(api_error(all.list(&bad).await.unwrap_err()).0, 400);
}

#[tokio::test]
async fn sim_deleting_a_deployment_collects_its_replica_sets_and_pods() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 2, 600);
    wait_rolled_out(&sim, "prod", "web").await;
    assert_eq!(sim.pods("prod").len(), 2);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    api.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(sim.replica_sets("prod").is_empty());
    // The pods stop gracefully, then their kubelet removes them.
    let pods = sim.pods("prod");
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p.metadata.deletion_timestamp.is_some()));
    eventually("the pods are gone", || {
        sim.pods("prod").is_empty().then_some(())
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(client(&sim));
    assert!(namespaces.get("prod").await.is_ok());
}

#[tokio::test]
async fn sim_scale_subresource_resizes_the_deployment() {
    let sim = Sim::new(fast());
    sim.create_deployment("prod", "web", "app", "web:1", 1, 600);
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    let d = wait_rolled_out(&sim, "prod", "web").await;
    assert_eq!(d.spec.replicas, Some(3));
    assert_eq!(sim.pods("prod").len(), 3);
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
}

#[tokio::test]
async fn sim_server_side_apply_creates_then_merges() {
    let sim = Sim::new(fast());
    sim.create_namespace("prod");
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "applied"},
        "spec": {"selector": {"matchLabels": {"app": "applied"}},
                 "template": {"metadata": {"labels": {"app": "applied"}},
                              "spec": {"containers": [{"name": "app", "image": "applied:1"}]}}}
    });
    let params = PatchParams::apply("rollway-test");
    api.patch("applied", &params, &Patch::Apply(&manifest))
        .await
        .unwrap();
    let mut second = manifest.clone();
    second["spec"]["template"]["spec"]["containers"][0]["image"] = json!("applied:2");
    let d = api
        .patch("applied", &params, &Patch::Apply(&second))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    wait_rolled_out(&sim, "prod", "applied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_a_thousand_concurrent_rollouts_stay_cheap() {
    let sim = Sim::new(SimConfig {
        tick: Duration::from_millis(100),
        ready_delay: Duration::from_millis(300),
        log_interval: Duration::from_secs(2),
    });
    let started = std::time::Instant::now();
    for n in 0..1000 {
        sim.create_deployment("load", &format!("app-{n}"), "app", "app:1", 2, 600);
    }
    // Checked on the JSON under the lock: cheap enough not to slow the
    // controller down.
    let all_rolled_out = |sim: &Sim| {
        let world = sim.world();
        world
            .store
            .list(super::Kind::Deployment, Some("load"))
            .iter()
            .all(|d| {
                d["status"]["observedGeneration"] == d["metadata"]["generation"]
                    && d["status"]["updatedReplicas"] == 2
                    && d["status"]["availableReplicas"] == 2
                    && d["status"]["replicas"] == 2
            })
    };
    // Poll slowly: the check itself holds the lock the controller needs.
    let settled = |what: &'static str, sim: Sim| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while !all_rolled_out(&sim) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    settled("1000 deployments to roll out", sim.clone()).await;
    let created = started.elapsed();
    let api: Api<Deployment> = Api::namespaced(client(&sim), "load");
    // One watch per Deployment, as an engine following each rollout would
    // hold: each is woken by its own Deployment's events only.
    let mut watches = tokio::task::JoinSet::new();
    for n in 0..1000 {
        let name = format!("app-{n}");
        let rv = api
            .get(&name)
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let params = WatchParams::default().fields(&format!("metadata.name={name}"));
        let stream = api.watch(&params, &rv).await.unwrap();
        watches.spawn(async move {
            let mut stream = stream.boxed();
            while let Some(event) = stream.try_next().await.unwrap() {
                if let WatchEvent::Modified(d) = event {
                    assert_eq!(d.metadata.name.as_deref(), Some(name.as_str()));
                    let image = d.spec.template.spec.as_ref().unwrap().containers[0]
                        .image
                        .clone();
                    if image.as_deref() == Some("app:2") && rolled_out(&d) {
                        return;
                    }
                }
            }
            panic!("the watch of {name} ended before its rollout");
        });
    }
    let started = std::time::Instant::now();
    for n in 0..1000 {
        api.patch(
            &format!("app-{n}"),
            &PatchParams::default(),
            &set_image("app:2"),
        )
        .await
        .unwrap();
    }
    let patched = started.elapsed();
    settled("1000 rollouts to finish", sim.clone()).await;
    let watched = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(done) = watches.join_next().await {
            done.unwrap();
        }
    })
    .await;
    assert!(watched.is_ok(), "every watch saw its rollout finish");
    let rolled = started.elapsed();
    println!("created in {created:?}, patched in {patched:?}, rolled out in {rolled:?}");
    // The old pods stop gracefully, then their kubelet removes them.
    eventually("only the new pods are left", || {
        (sim.pods("load").len() == 2000).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sim_stores_events_of_both_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;

    let sim = Sim::new(fast());
    sim.create_namespace("prod");
    let events: Api<Event> = Api::namespaced(client(&sim), "prod");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.rollout"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "rollway", "reportingInstance": "rollway-1",
        "action": "Rollout", "reason": "Started", "type": "Normal", "note": "rolling out web:2",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "prod"}
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let listed = events.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed[0].note.as_deref(), Some("rolling out web:2"));
    let core: Api<CoreEvent> = Api::namespaced(client(&sim), "prod");
    assert!(
        core.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Dry runs, field ownership, field validation and field selectors, as a
/// real API server answers them, over raw HTTP so bodies and headers are
/// exactly what a client sends and sees.
mod honesty {
    use axum::body::Body;
    use axum::http::{HeaderMap, Request, header};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::fast;
    use crate::sim::{Kind, Sim};

    struct Answer {
        status: u16,
        headers: HeaderMap,
        body: Value,
    }

    async fn call(sim: &Sim, method: &str, uri: &str, content_type: &str, body: &str) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::USER_AGENT,
                "kubectl/v1.33.0 (linux/amd64) kubernetes/abcdef0",
            )
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = sim.router().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    const JSON: &str = "application/json";

    fn service(name: &str) -> String {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
        })
        .to_string()
    }

    const SERVICES: &str = "/api/v1/namespaces/prod/services";

    fn sim_with_service() -> Sim {
        let sim = Sim::new(fast());
        sim.create_namespace("prod");
        sim
    }

    fn warnings(answer: &Answer) -> Vec<String> {
        answer
            .headers
            .get_all(header::WARNING)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn sim_dry_run_in_delete_options_deletes_nothing_and_records_no_event() {
        let sim = sim_with_service();
        assert_eq!(
            call(&sim, "POST", SERVICES, JSON, &service("web"))
                .await
                .status,
            201
        );
        let rv = sim.resource_version();

        let dry = call(&sim, "DELETE", &format!("{SERVICES}/web"), JSON,
            r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background","dryRun":["All"]}"#).await;
        assert_eq!(dry.status, 200, "{}", dry.body);
        assert_eq!(dry.body["status"], "Success");
        // A namespace too: nothing it holds goes either.
        let ns = call(
            &sim,
            "DELETE",
            "/api/v1/namespaces/prod",
            JSON,
            r#"{"dryRun":["All"]}"#,
        )
        .await;
        assert_eq!(ns.status, 200, "{}", ns.body);
        let collection = call(
            &sim,
            "DELETE",
            &format!("{SERVICES}?labelSelector=app%3Dweb"),
            JSON,
            r#"{"dryRun":["All"],"propagationPolicy":"Foreground"}"#,
        )
        .await;
        assert_eq!(collection.status, 200, "{}", collection.body);
        assert_eq!(collection.body["items"][0]["metadata"]["name"], "web");
        assert_eq!(sim.resource_version(), rv, "no write, so no watch event");
        assert!(sim.get::<Value>(Kind::Service, "prod", "web").is_some());
        assert!(sim.get::<Value>(Kind::Namespace, "", "prod").is_some());

        let bad = call(
            &sim,
            "DELETE",
            &format!("{SERVICES}/web"),
            JSON,
            r#"{"dryRun":["Server"]}"#,
        )
        .await;
        assert_eq!(bad.status, 422);
        assert_eq!(bad.body["reason"], "Invalid");
        assert_eq!(
            bad.body["message"],
            r#"DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Server"}: supported values: "All""#
        );
        assert_eq!(bad.body["details"]["causes"][0]["field"], "dryRun");
        let bad_query = call(
            &sim,
            "DELETE",
            &format!("{SERVICES}/web?dryRun=true"),
            JSON,
            "",
        )
        .await;
        assert_eq!(bad_query.status, 422);
        assert!(sim.get::<Value>(Kind::Service, "prod", "web").is_some());

        let real = call(
            &sim,
            "DELETE",
            &format!("{SERVICES}/web"),
            JSON,
            r#"{"propagationPolicy":"Background"}"#,
        )
        .await;
        assert_eq!(real.status, 200);
        assert!(sim.get::<Value>(Kind::Service, "prod", "web").is_none());
    }

    #[tokio::test]
    async fn sim_dry_run_writes_answer_the_object_as_it_would_be_and_store_nothing() {
        let sim = sim_with_service();
        let created = call(
            &sim,
            "POST",
            &format!("{SERVICES}?dryRun=All"),
            JSON,
            &service("web"),
        )
        .await;
        assert_eq!(created.status, 201);
        assert_eq!(
            created.body["spec"]["ports"][0]["protocol"], "TCP",
            "defaulted"
        );
        assert!(created.body["metadata"].get("resourceVersion").is_none());
        assert!(sim.get::<Value>(Kind::Service, "prod", "web").is_none());

        let stored = call(&sim, "POST", SERVICES, JSON, &service("web"))
            .await
            .body;
        let rv = sim.resource_version();
        let url = format!("{SERVICES}/web");
        let merge = call(
            &sim,
            "PATCH",
            &format!("{url}?dryRun=All"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"tier":"front"}}}"#,
        )
        .await;
        assert_eq!(merge.status, 200);
        assert_eq!(merge.body["metadata"]["labels"]["tier"], "front");
        let mut replaced = stored.clone();
        replaced["spec"]["selector"] = json!({"app": "other"});
        let put = call(
            &sim,
            "PUT",
            &format!("{url}?dryRun=All"),
            JSON,
            &replaced.to_string(),
        )
        .await;
        assert_eq!(put.status, 200);
        assert_eq!(put.body["spec"]["selector"]["app"], "other");
        let apply = call(
            &sim,
            "PATCH",
            &format!("{url}?dryRun=All&fieldManager=deployer"),
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations: {note: applied}\n",
        )
        .await;
        assert_eq!(apply.status, 200, "{}", apply.body);
        assert_eq!(apply.body["metadata"]["annotations"]["note"], "applied");
        assert_eq!(entry(&apply.body, "deployer")["operation"], "Apply");
        assert_eq!(sim.resource_version(), rv);
        let now: Value = sim.get(Kind::Service, "prod", "web").unwrap();
        assert_eq!(now, stored, "nothing changed");
    }

    fn entry<'a>(object: &'a Value, manager: &str) -> &'a Value {
        object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["manager"] == manager)
            .unwrap_or_else(|| panic!("no {manager} in {}", object["metadata"]["managedFields"]))
    }

    #[tokio::test]
    async fn sim_managed_fields_record_writers_and_applies_conflict_until_forced() {
        let sim = sim_with_service();
        let url = format!("{SERVICES}/web");
        let created = call(
            &sim,
            "POST",
            &format!("{SERVICES}?fieldManager=creator"),
            JSON,
            &service("web"),
        )
        .await;
        let creator = entry(&created.body, "creator");
        assert_eq!(creator["operation"], "Update");
        assert_eq!(creator["apiVersion"], "v1");
        assert_eq!(creator["fieldsType"], "FieldsV1");
        assert_eq!(
            creator["fieldsV1"]["f:spec"]["f:ports"][r#"k:{"port":80,"protocol":"TCP"}"#]["f:targetPort"],
            json!({})
        );
        assert_eq!(
            creator["fieldsV1"]["f:metadata"]["f:labels"]["."],
            json!({})
        );

        // Without fieldManager the user agent names the manager.
        let patched = call(
            &sim,
            "PATCH",
            &url,
            "application/strategic-merge-patch+json",
            r#"{"spec":{"selector":{"app":"v2"}}}"#,
        )
        .await
        .body;
        let kubectl = entry(&patched, "kubectl");
        assert_eq!(
            kubectl["fieldsV1"],
            json!({"f:spec": {"f:selector": {"f:app": {}}}})
        );
        assert!(
            entry(&patched, "creator")["fieldsV1"]["f:spec"]["f:selector"]
                .get("f:app")
                .is_none()
        );

        let apply = |force: bool, body: &'static str| {
            let sim = sim.clone();
            let url = format!(
                "{url}?fieldManager=deployer{}",
                if force { "&force=true" } else { "" }
            );
            async move { call(&sim, "PATCH", &url, "application/apply-patch+yaml", body).await }
        };
        let config = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {team: a}\nspec:\n  selector: {app: web}\n";
        let conflict = apply(false, config).await;
        assert_eq!(conflict.status, 409, "{}", conflict.body);
        assert_eq!(conflict.body["reason"], "Conflict");
        assert_eq!(
            conflict.body["message"],
            r#"Apply failed with 1 conflict: conflict with "kubectl" using v1: .spec.selector.app"#
        );
        assert_eq!(
            conflict.body["details"]["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.selector.app"}])
        );
        let forced = apply(true, config).await;
        assert_eq!(forced.status, 200, "{}", forced.body);
        assert_eq!(forced.body["spec"]["selector"]["app"], "web");
        let deployer = entry(&forced.body, "deployer");
        assert_eq!(deployer["operation"], "Apply");
        assert_eq!(
            deployer["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:selector": {"f:app": {}}}})
        );
        assert!(
            forced.body["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["manager"] != "kubectl"),
            "kubectl owned nothing else"
        );

        // A field dropped from the configuration goes; one another manager
        // also owns stays.
        let dropped = apply(
            false,
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n",
        )
        .await;
        assert_eq!(dropped.status, 200, "{}", dropped.body);
        assert!(
            dropped.body["metadata"]["labels"].get("team").is_none(),
            "{}",
            dropped.body
        );
        assert_eq!(dropped.body["metadata"]["labels"]["app"], "web");

        let nameless = call(&sim, "PATCH", &url, "application/apply-patch+yaml", config).await;
        assert_eq!(nameless.status, 422);
        assert_eq!(
            nameless.body["message"],
            r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
        );
        // A write that changes nothing stores nothing, managedFields included.
        let rv = sim.resource_version();
        let again = apply(
            false,
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n",
        )
        .await;
        assert_eq!(again.status, 200);
        assert_eq!(sim.resource_version(), rv);
    }

    #[tokio::test]
    async fn sim_field_validation_refuses_warns_or_ignores_unknown_fields() {
        let sim = sim_with_service();
        let odd = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"foo": 1, "ports": [{"port": 80, "bar": true}]}})
            .to_string()
        };
        let strict = call(
            &sim,
            "POST",
            &format!("{SERVICES}?fieldValidation=Strict"),
            JSON,
            &odd("a"),
        )
        .await;
        assert_eq!(strict.status, 400);
        assert_eq!(strict.body["reason"], "BadRequest");
        assert_eq!(
            strict.body["message"],
            r#"Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.foo", unknown field "spec.ports[0].bar""#
        );
        assert!(sim.get::<Value>(Kind::Service, "prod", "a").is_none());

        let warned = call(&sim, "POST", SERVICES, JSON, &odd("b")).await;
        assert_eq!(warned.status, 201);
        assert_eq!(
            warnings(&warned),
            [
                r#"299 - "unknown field \"spec.foo\"""#,
                r#"299 - "unknown field \"spec.ports[0].bar\"""#
            ]
        );
        assert!(warned.body["spec"].get("foo").is_none());

        let ignored = call(
            &sim,
            "POST",
            &format!("{SERVICES}?fieldValidation=Ignore"),
            JSON,
            &odd("c"),
        )
        .await;
        assert_eq!(ignored.status, 201);
        assert!(warnings(&ignored).is_empty());

        let patch = call(
            &sim,
            "PATCH",
            &format!("{SERVICES}/b?fieldValidation=Strict"),
            "application/merge-patch+json",
            r#"{"spec":{"baz":1}}"#,
        )
        .await;
        assert_eq!(patch.status, 400);
        assert_eq!(
            patch.body["message"],
            r#"strict decoding error: unknown field "spec.baz""#
        );

        let bad = call(
            &sim,
            "POST",
            &format!("{SERVICES}?fieldValidation=Loose"),
            JSON,
            &service("d"),
        )
        .await;
        assert_eq!(bad.status, 422);
        assert_eq!(
            bad.body["message"],
            r#"CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": supported values: "", "Ignore", "Strict", "Warn""#
        );
    }

    #[tokio::test]
    async fn sim_unsupported_field_selectors_answer_400_everywhere() {
        let sim = sim_with_service();
        call(&sim, "POST", SERVICES, JSON, &service("web")).await;
        for (method, uri) in [
            (
                "GET",
                "/api/v1/namespaces/prod/pods?fieldSelector=spec.foo%3Dbar",
            ),
            (
                "GET",
                "/api/v1/pods?watch=true&fieldSelector=spec.foo%3Dbar",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/prod/services?fieldSelector=spec.foo%3Dbar",
            ),
        ] {
            let answer = call(&sim, method, uri, JSON, "").await;
            assert_eq!(answer.status, 400, "{method} {uri}");
            assert_eq!(
                answer.body["message"],
                "field label not supported: spec.foo"
            );
        }
        assert!(sim.get::<Value>(Kind::Service, "prod", "web").is_some());
        let listed = call(
            &sim,
            "GET",
            &format!("{SERVICES}?fieldSelector=metadata.name%3Dweb,spec.type%3DClusterIP"),
            JSON,
            "",
        )
        .await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn sim_lists_come_in_pages_with_limit_and_continue() {
    let sim = Sim::new(fast());
    for name in ["a", "b", "c", "d", "e"] {
        sim.create_deployment("prod", name, "app", "web:1", 0, 600);
    }
    let api: Api<Deployment> = Api::namespaced(client(&sim), "prod");
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let names = |list: &kube::core::ObjectList<Deployment>| -> Vec<String> {
        list.items
            .iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect()
    };
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().expect("a continue token");
    // A change between pages: later pages go on after the last name given,
    // at the first page's resourceVersion.
    sim.create_deployment("prod", "bb", "app", "web:1", 0, 600);
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second), ["bb", "c"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let last = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(names(&last), ["d", "e"]);
    assert!(last.metadata.continue_.is_none() && last.metadata.remaining_item_count.is_none());
    // All at once without a limit; a token not made here is refused.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        6
    );
    match api
        .list(&ListParams::default().continue_token("not-ours"))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 400, "{e:?}"),
        other => panic!("expected 400, got {other:?}"),
    }
}
