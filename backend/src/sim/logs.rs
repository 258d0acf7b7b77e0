//! Synthetic pod logs: per container, startup lines naming the image at the
//! pod's start, then one line every `log_interval` of simulated time (a
//! failing readiness check for never-ready images). Supports `container`,
//! `tailLines`, `sinceSeconds`, `limitBytes`, `timestamps` and `follow`.

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Sim;
use super::api::{Query, flag};
use super::kinds::Kind;
use super::status::ApiError;

/// How often a following stream checks that its pod still exists.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// What one container logs.
struct Script {
    pod: String,
    namespace: String,
    container: String,
    image: String,
    port: i32,
    start: Timestamp,
    interval: Duration,
    failing: bool,
}

impl Script {
    /// Line `n` (0-based) and when it was written.
    fn line(&self, n: u64) -> (Timestamp, String) {
        let startup = [
            format!("Starting {} (image {})", self.container, self.image),
            format!(
                "Loaded configuration for pod {} in namespace {}",
                self.pod, self.namespace
            ),
            format!("Listening on 0.0.0.0:{}", self.port),
        ];
        let count = startup.len() as u64;
        if n < count {
            return (self.start, startup[n as usize].clone());
        }
        let beat = n - count + 1;
        let at = self.at(beat);
        let text = if self.failing {
            format!("readiness check failed: dependency not reachable (attempt {beat})")
        } else {
            format!(
                "GET /healthz 200 ({beat} checks served, image {})",
                self.image
            )
        };
        (at, text)
    }

    fn at(&self, beat: u64) -> Timestamp {
        let offset = self
            .interval
            .saturating_mul(beat.min(u64::from(u32::MAX)) as u32);
        self.start
            .checked_add(SignedDuration::try_from(offset).unwrap_or(SignedDuration::MAX))
            .unwrap_or(self.start)
    }

    /// How many lines exist at `now`.
    fn lines_at(&self, now: Timestamp) -> u64 {
        if self.interval.is_zero() {
            return 3;
        }
        let elapsed = now.duration_since(self.start).as_millis().max(0) as u128;
        3 + (elapsed / self.interval.as_millis().max(1)) as u64
    }
}

fn format_line(at: Timestamp, text: &str, timestamps: bool) -> String {
    if timestamps {
        format!(
            "{}.{:09}Z {text}\n",
            at.strftime("%Y-%m-%dT%H:%M:%S"),
            at.subsec_nanosecond()
        )
    } else {
        format!("{text}\n")
    }
}

/// GET `/api/v1/namespaces/{ns}/pods/{name}/log`.
pub fn serve(sim: &Sim, namespace: &str, name: &str, query: &Query) -> Result<Response, ApiError> {
    let pod: Pod = sim
        .get(Kind::Pod, namespace, name)
        .ok_or_else(|| ApiError::not_found(Kind::Pod, name))?;
    let containers: Vec<_> = pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let container = match query.get("container") {
        Some(wanted) => containers
            .iter()
            .find(|c| c.name == *wanted)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "container {wanted} is not valid for pod {name}; choose one of: [{}]",
                    names.join(" ")
                ))
            })?,
        None if containers.len() == 1 => &containers[0],
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    if flag(query, "previous") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{}\" in pod \"{name}\" not found",
            container.name
        )));
    }
    let Some(start) = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
    else {
        return Err(ApiError::bad_request(format!(
            "container \"{}\" in pod \"{name}\" is waiting to start: ContainerCreating",
            container.name
        )));
    };
    let image = container.image.clone().unwrap_or_default();
    let never_ready = sim.faults().never_ready_patterns();
    let script = Script {
        pod: name.to_string(),
        namespace: namespace.to_string(),
        container: container.name.clone(),
        failing: never_ready.iter().any(|p| image.contains(p.as_str())),
        image,
        port: container
            .ports
            .iter()
            .flatten()
            .next()
            .map_or(8080, |p| p.container_port),
        start,
        interval: sim.config().log_interval,
    };
    let timestamps = flag(query, "timestamps");
    let now = Timestamp::now();
    let available = script.lines_at(now);
    let mut first = 0;
    if let Some(seconds) = query
        .get("sinceSeconds")
        .and_then(|s| s.parse::<i64>().ok())
    {
        let since = now
            .checked_sub(SignedDuration::from_secs(seconds))
            .unwrap_or(script.start);
        while first < available && script.line(first).0 < since {
            first += 1;
        }
    }
    if let Some(tail) = query.get("tailLines").and_then(|t| t.parse::<u64>().ok()) {
        first = first.max(available.saturating_sub(tail));
    }
    let mut text = String::new();
    for n in first..available {
        let (at, line) = script.line(n);
        text.push_str(&format_line(at, &line, timestamps));
    }
    if let Some(limit) = query
        .get("limitBytes")
        .and_then(|l| l.parse::<usize>().ok())
        && text.len() > limit
    {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if !flag(query, "follow") {
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response());
    }

    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(64);
    let sim = sim.clone();
    let uid = pod.metadata.uid.clone();
    let (namespace, name) = (namespace.to_string(), name.to_string());
    tokio::spawn(async move {
        let mut stops = sim.stops();
        if tx.send(Ok(Bytes::from(text))).await.is_err() {
            return;
        }
        let mut next = available;
        loop {
            let gone = sim
                .get::<Pod>(Kind::Pod, &namespace, &name)
                .is_none_or(|p| p.metadata.uid != uid);
            if gone {
                return;
            }
            let now = Timestamp::now();
            while next < script.lines_at(now) {
                let (at, line) = script.line(next);
                if tx
                    .send(Ok(Bytes::from(format_line(at, &line, timestamps))))
                    .await
                    .is_err()
                {
                    return;
                }
                next += 1;
            }
            let due = script.line(next).0;
            let wait = Duration::try_from(due.duration_since(now))
                .unwrap_or_default()
                .min(FOLLOW_POLL);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stops.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}
