//! Watches: newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`,
//! `BOOKMARK`, `ERROR`) from a resourceVersion on, served from the store's
//! event history; a version no longer in the history gets a 410 Expired
//! ERROR event, as the real API answers.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Sim;
use super::api::{Query, flag, selectors};
use super::kinds::Kind;
use super::selector::{FieldQuery, LabelQuery};
use super::status::ApiError;
use super::store::{Event, EventType, Interest, WatchQueue};
use super::table;

/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// What one watch delivers.
struct Filter {
    kind: Kind,
    namespace: Option<String>,
    labels: LabelQuery,
    fields: FieldQuery,
}

impl Filter {
    fn selects(&self, object: &Value) -> bool {
        let namespace_ok = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns)
        });
        namespace_ok && self.labels.matches_object(object) && self.fields.matches_object(object)
    }

    /// The event this watch sees for a store event, if any: an object that
    /// starts or stops matching the selectors is ADDED or DELETED.
    fn view<'a>(&self, event: &'a Event) -> Option<(EventType, &'a Value)> {
        if event.kind != self.kind {
            return None;
        }
        let now = self.selects(&event.object);
        match event.event_type {
            EventType::Modified => {
                let before = event.old.as_ref().is_some_and(|o| self.selects(o));
                match (before, now) {
                    (true, true) => Some((EventType::Modified, &event.object)),
                    (false, true) => Some((EventType::Added, &event.object)),
                    (true, false) => Some((EventType::Deleted, &event.object)),
                    (false, false) => None,
                }
            }
            other => now.then_some((other, &event.object)),
        }
    }
}

/// An event line carrying the object, or (for kubectl's `get -w`) the
/// object's Table row.
fn object_line(event_type: &str, object: &Value, as_table: bool) -> Bytes {
    if as_table {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|rv| rv.parse().ok());
        if let Some(table) = table::for_objects(std::slice::from_ref(object), rv) {
            return line(event_type, &table);
        }
    }
    line(event_type, object)
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn bookmark(kind: Kind, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": kind.kind(), "apiVersion": kind.api_version(), "metadata": metadata}),
    )
}

/// Keeps a watch registered with the store while its task runs.
struct Registration {
    sim: Sim,
    interest: Interest,
    queue: Arc<WatchQueue>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sim
            .world()
            .store
            .unregister_watch(&self.interest, &self.queue);
    }
}

/// Starts a watch and answers its streaming body.
pub fn serve(
    sim: &Sim,
    kind: Kind,
    namespace: Option<&str>,
    query: &Query,
    as_table: bool,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(kind, query)?;
    let filter = Filter {
        kind,
        namespace: namespace.filter(|_| kind.namespaced()).map(String::from),
        labels,
        fields,
    };
    let allow_bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial = flag(query, "sendInitialEvents");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    let requested = query
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|rv| !rv.is_empty() && *rv != "0");
    let requested = match requested {
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?,
        ),
        None => None,
    };

    // Under one hold of the lock: register for new events, and take what
    // came before (the current objects, or the history since the requested
    // version), so nothing slips by and nothing comes twice.
    let queue = Arc::new(WatchQueue::default());
    let interest = Interest {
        kind,
        namespace: filter.namespace.clone(),
        name: filter.fields.pinned_name(),
    };
    let mut drops = sim.faults().watch_drops();
    let mut stops = sim.stops();
    let mut world = sim.world();
    world.store.register_watch(interest.clone(), &queue);
    let current = world.store.resource_version();
    let mut initial: Vec<Bytes> = Vec::new();
    match requested {
        Some(rv) if !send_initial => match world.store.events_since(kind, rv) {
            Ok(events) => {
                for event in events {
                    if let Some((event_type, object)) = filter.view(&event) {
                        initial.push(object_line(event_type.as_str(), object, as_table));
                    }
                }
            }
            Err(oldest) => {
                let status = ApiError::expired(rv, oldest).status_json();
                initial.push(line("ERROR", &status));
                world.store.unregister_watch(&interest, &queue);
                drop(world);
                return Ok(stream_response(futures::stream::iter(
                    initial.into_iter().map(Ok::<_, io::Error>),
                )));
            }
        },
        _ => {
            for object in world.store.list(kind, filter.namespace.as_deref()) {
                if filter.selects(object) {
                    initial.push(object_line("ADDED", object, as_table));
                }
            }
            if send_initial && allow_bookmarks {
                initial.push(bookmark(kind, current, true));
            }
        }
    }
    drop(world);

    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(256);
    let sim = sim.clone();
    tokio::spawn(async move {
        let _registration = Registration {
            sim: sim.clone(),
            interest,
            queue: queue.clone(),
        };
        for chunk in initial {
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut bookmarks = tokio::time::interval(BOOKMARK_EVERY);
        bookmarks.tick().await;
        loop {
            let (events, overflowed) = queue.drain();
            for event in events {
                if let Some((event_type, object)) = filter.view(&event)
                    && tx
                        .send(Ok(object_line(event_type.as_str(), object, as_table)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if overflowed {
                // Too far behind: end the watch; the client resumes.
                return;
            }
            let sleep_until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = queue.notify.notified() => {}
                _ = sleep_until_deadline => return,
                _ = drops.changed() => {
                    let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "watch dropped (fault injection)"))).await;
                    return;
                }
                _ = stops.changed() => return,
                _ = tx.closed() => return,
                _ = bookmarks.tick(), if allow_bookmarks => {
                    // Everything up to the current version is either sent
                    // or queued: send the queue, then the bookmark.
                    let (rv, (events, _)) = {
                        let world = sim.world();
                        (world.store.resource_version(), queue.drain())
                    };
                    for event in events {
                        if let Some((event_type, object)) = filter.view(&event)
                            && tx.send(Ok(object_line(event_type.as_str(), object, as_table))).await.is_err()
                        {
                            return;
                        }
                    }
                    if tx.send(Ok(bookmark(filter.kind, rv, false))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(stream_response(ReceiverStream::new(rx)))
}

fn stream_response(
    stream: impl futures::Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
