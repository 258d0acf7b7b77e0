//! Canary stages through OpenKruise Rollout on the simulated cluster (run
//! with `--kruise`): the Kubernetes driver's part — whether a cluster
//! serves Rollouts, the Rollout a plan becomes, its pauses as Rollway reads
//! them, and a step approved with exactly one status patch.

use std::time::Duration;

use rollway::domain::cluster::{ClusterAccess, ClusterCredentials};
use rollway::domain::release_item::{Canary, CanaryStep};
use rollway::kube::rollout::{self, RolloutView};
use rollway::kube::{ClusterClient, KubeDriver, KubeError, KubeSettings};
use rollway::secret::Secret;
use rollway::sim::{RunningSim, Sim};

use crate::common::eventually;
use crate::engine::sim_config;

async fn sim_and_client() -> (RunningSim, ClusterClient) {
    let sim = Sim::start(sim_config(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the simulated cluster");
    sim.sim
        .create_deployment("prod", "web", "app", "registry.example.com/web:1", 3, 600);
    let credentials = ClusterCredentials {
        id: 1,
        name: "prod".into(),
        access: ClusterAccess::Kubeconfig {
            yaml: Secret::new(sim.kubeconfig()),
            context: None,
        },
        fingerprint: "sim".into(),
    };
    let client = KubeDriver::new(KubeSettings::default())
        .client(&credentials)
        .await
        .expect("a client of the simulated cluster");
    (sim, client)
}

async fn rollout_when(client: &ClusterClient, check: impl Fn(&RolloutView) -> bool) -> RolloutView {
    let ok = eventually(Duration::from_secs(20), || async {
        client
            .rollout("prod", "web")
            .await
            .ok()
            .flatten()
            .is_some_and(|v| check(&v))
    })
    .await;
    let view = client.rollout("prod", "web").await.unwrap().unwrap();
    assert!(ok, "the Rollout never got there: {view:?}");
    view
}

fn step(replicas: Option<u32>, weight: Option<u32>, pause: Option<u32>) -> CanaryStep {
    CanaryStep {
        weight,
        replicas,
        pause_seconds: pause,
    }
}

#[tokio::test]
async fn the_driver_puts_a_rollout_follows_its_pause_and_approves_a_step_with_one_patch() {
    let (sim, client) = sim_and_client().await;
    assert!(
        !client.serves_rollouts().await.unwrap(),
        "no OpenKruise Rollout yet"
    );
    sim.sim.install_kruise();
    assert!(client.serves_rollouts().await.unwrap());
    assert_eq!(client.rollout("prod", "web").await.unwrap(), None);

    let plan = Canary {
        steps: vec![step(Some(1), None, None), step(None, Some(100), Some(0))],
        header_match: None,
    };
    let spec = rollout::spec("web", &plan, None);
    let created = client
        .put_rollout("prod", "web", &spec, None)
        .await
        .unwrap();
    assert!(created.managed_by_rollway);
    assert_eq!(created.workload, "web");
    let healthy = rollout_when(&client, |v| v.observed() && v.phase == "Healthy").await;
    // Writing the same spec again changes nothing; a stale read is refused.
    let again = client
        .put_rollout("prod", "web", &spec, Some(&healthy))
        .await
        .unwrap();
    assert_eq!(again.generation, healthy.generation);
    let stale = RolloutView {
        resource_version: "1".into(),
        ..healthy.clone()
    };
    assert!(matches!(
        client.put_rollout("prod", "web", &spec, Some(&stale)).await,
        Err(KubeError::Conflict(_))
    ));

    let ready = eventually(Duration::from_secs(20), || async {
        sim.sim
            .deployment("prod", "web")
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            == Some(3)
    })
    .await;
    assert!(ready, "the Deployment never came up");
    let d = client.deployment("prod", "web").await.unwrap().unwrap();
    client
        .patch_image(
            "prod",
            "web",
            "app",
            "registry.example.com/web:2",
            d.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap();
    let paused = rollout_when(&client, |v| v.paused_at(1)).await;
    assert_eq!(
        (paused.canary_replicas, paused.canary_ready_replicas),
        (1, 1)
    );
    assert_eq!(paused.progressing, "InRolling");

    // Two approvals of the same pause at once: one patch lands, the other
    // finds the Rollout changed.
    sim.sim.clear_requests();
    let (a, b) = tokio::join!(
        client.approve_step("prod", &paused),
        client.approve_step("prod", &paused)
    );
    let conflicts = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(KubeError::Conflict(_))))
        .count();
    assert_eq!(
        (a.is_ok() as u8 + b.is_ok() as u8, conflicts),
        (1, 1),
        "{a:?} {b:?}"
    );
    let patched = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "PATCH" && r.path.ends_with("/rollouts/web/status") && r.status == 200
        })
        .count();
    assert_eq!(patched, 1);

    let done = rollout_when(&client, |v| v.phase == "Healthy" && v.succeeded.is_some()).await;
    assert_eq!(done.succeeded, Some(true), "{done:?}");
    let d = sim.sim.deployment("prod", "web").unwrap();
    assert_eq!(d.spec.paused, None, "resumed");
}
