//! Kubernetes' protobuf bodies, as the JSON they stand for. kubectl 1.32
//! and later sends the objects its generators build (`kubectl create
//! namespace|deployment|service|configmap|secret|…`) as
//! `application/vnd.kubernetes.protobuf`, and every kubectl sends
//! `auth can-i` reviews so. Such a body is the magic `k8s\0`, then a
//! `runtime.Unknown` holding the object's apiVersion and kind and the
//! object's own message. The messages are read with the descriptors of
//! Kubernetes' `generated.proto` files (`descriptors.pb.gz`, made by
//! `scripts/sim-protos`), and turned into the JSON the API server's Go
//! types would give:
//! - `Time` is an RFC 3339 time (`null` when zero), `MicroTime` one with
//!   microseconds, `Duration` Go's duration text;
//! - `IntOrString` is a number or a string, `Quantity` its string;
//! - `RawExtension` and `FieldsV1` are the JSON they carry; bytes are
//!   base64;
//! - the structs Go embeds inline (a Volume's `volumeSource`, an
//!   IngressRule's `ingressRuleValue`, …) are flattened into their parent;
//! - empty strings, and all-zero numbers and `false` in the fields Go keeps
//!   as plain values, are left out, as Go's `omitempty` leaves them out;
//!   the fields Go keeps as pointers (`replicas`, …) keep their zero, which
//!   means something there.
//!
//! Answers stay JSON: every kubectl that sends protobuf accepts JSON back.

use std::sync::OnceLock;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
};
use serde_json::{Map, Value, json};

/// How a Kubernetes protobuf body starts.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type of Kubernetes' protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Nested messages deeper than this are refused (a real object is a dozen
/// levels deep at most).
const MAX_DEPTH: usize = 64;

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut set = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&include_bytes!("descriptors.pb.gz")[..]),
            &mut set,
        )
        .expect("the embedded descriptors are gzip");
        DescriptorPool::decode(set.as_slice()).expect("the embedded descriptors decode")
    })
}

/// Why a protobuf body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Not a Kubernetes protobuf body, or not a valid one.
    Malformed(String),
    /// A kind whose message the simulated cluster does not know.
    UnknownKind { api_version: String, kind: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "the protobuf body cannot be decoded: {why}"),
            Error::UnknownKind { api_version, kind } => write!(
                f,
                "no kind {kind:?} is registered for version {api_version:?} in the simulated cluster's protobuf scheme"
            ),
        }
    }
}

/// The object a protobuf body holds, as JSON with its apiVersion and kind.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let malformed = |why: &str| Error::Malformed(why.to_string());
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("it does not start with the k8s protobuf magic"))?;
    let unknown = pool()
        .get_message_by_name(UNKNOWN)
        .expect("runtime.Unknown is in the descriptors");
    let unknown = DynamicMessage::decode(unknown, envelope)
        .map_err(|e| Error::Malformed(format!("runtime.Unknown: {e}")))?;
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned())
        .ok_or_else(|| malformed("runtime.Unknown has no typeMeta"))?;
    let api_version = string(&type_meta, "apiVersion");
    let kind = string(&type_meta, "kind");
    let encoding = string(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(Error::Malformed(format!(
            "content encoding {encoding:?} is not supported"
        )));
    }
    let descriptor = message_of(&api_version, &kind).ok_or_else(|| Error::UnknownKind {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let message = DynamicMessage::decode(descriptor, raw)
        .map_err(|e| Error::Malformed(format!("{kind}: {e}")))?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), api_version.into());
    object.insert("kind".into(), kind.into());
    match to_json(&message, 0)? {
        Value::Object(fields) => object.extend(fields),
        _ => return Err(malformed("the object is not a message")),
    }
    Ok(Value::Object(object))
}

/// The message of `kind` in `apiVersion`: `apps/v1` Deployment is
/// `k8s.io.api.apps.v1.Deployment`, `v1` Namespace
/// `k8s.io.api.core.v1.Namespace`, `networking.k8s.io/v1` Ingress
/// `k8s.io.api.networking.v1.Ingress`, `rbac.authorization.k8s.io/v1`
/// ClusterRole `k8s.io.api.rbac.v1.ClusterRole`.
fn message_of(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "core",
        group => group.split('.').next().unwrap_or(group),
    };
    if !is_name(package) || !is_name(version) || !is_name(kind) {
        return None;
    }
    pool().get_message_by_name(&format!("k8s.io.api.{package}.{version}.{kind}"))
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The fields Go keeps as pointers whose zero or `false` means something
/// (`replicas: 0`, `automountServiceAccountToken: false`, …), by the
/// message they are in. Every other zero scalar is left out as Go's
/// `omitempty` leaves it out.
const POINTERS: &[(&str, &[&str])] = &[
    (
        "k8s.io.api.apps.v1.DeploymentSpec",
        &[
            "replicas",
            "revisionHistoryLimit",
            "progressDeadlineSeconds",
        ],
    ),
    ("k8s.io.api.apps.v1.ReplicaSetSpec", &["replicas"]),
    (
        "k8s.io.api.core.v1.PodSpec",
        &[
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "automountServiceAccountToken",
            "shareProcessNamespace",
            "priority",
            "enableServiceLinks",
            "setHostnameAsFQDN",
            "hostUsers",
        ],
    ),
    (
        "k8s.io.api.core.v1.SecurityContext",
        &[
            "privileged",
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
        ],
    ),
    (
        "k8s.io.api.core.v1.PodSecurityContext",
        &["runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"],
    ),
    ("k8s.io.api.core.v1.Secret", &["immutable"]),
    ("k8s.io.api.core.v1.ConfigMap", &["immutable"]),
    (
        "k8s.io.api.core.v1.ServiceAccount",
        &["automountServiceAccountToken"],
    ),
    (
        "k8s.io.api.core.v1.ServiceSpec",
        &["allocateLoadBalancerNodePorts"],
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        &["defaultMode", "optional"],
    ),
    (
        "k8s.io.api.core.v1.SecretVolumeSource",
        &["defaultMode", "optional"],
    ),
    ("k8s.io.api.core.v1.KeyToPath", &["mode"]),
    ("k8s.io.api.core.v1.ConfigMapKeySelector", &["optional"]),
    ("k8s.io.api.core.v1.SecretKeySelector", &["optional"]),
    ("k8s.io.api.core.v1.ConfigMapEnvSource", &["optional"]),
    ("k8s.io.api.core.v1.SecretEnvSource", &["optional"]),
    (
        "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        &["deletionGracePeriodSeconds"],
    ),
    (
        "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference",
        &["controller", "blockOwnerDeletion"],
    ),
    (
        "k8s.io.api.discovery.v1.EndpointConditions",
        &["ready", "serving", "terminating"],
    ),
    ("k8s.io.api.discovery.v1.EndpointPort", &["port"]),
    ("k8s.io.api.events.v1.EventSeries", &["count"]),
];

/// The structs Go embeds inline (`json:",inline"`): their fields are the
/// outer object's in JSON, but one field of their own in protobuf.
const INLINE: &[(&str, &str)] = &[
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    ("k8s.io.api.core.v1.VolumeMountStatus", "volumeStatus"),
    (
        "k8s.io.api.core.v1.ConfigMapEnvSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    (
        "k8s.io.api.core.v1.SecretKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretProjection",
        "localObjectReference",
    ),
    ("k8s.io.api.networking.v1.IngressRule", "ingressRuleValue"),
];

fn is_inline(message: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    INLINE.contains(&(message.full_name(), field.name()))
}

fn keeps_zero(message: &MessageDescriptor, field: &FieldDescriptor) -> bool {
    POINTERS
        .iter()
        .find(|(name, _)| *name == message.full_name())
        .is_some_and(|(_, fields)| fields.contains(&field.name()))
}

fn to_json(message: &DynamicMessage, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed("the object is nested too deeply".into()));
    }
    let descriptor = message.descriptor();
    let short = descriptor
        .full_name()
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let package = descriptor.package_name();
    // The types whose JSON is not an object of their fields.
    match (package, short) {
        ("k8s.io.apimachinery.pkg.apis.meta.v1", "Time" | "MicroTime") => {
            return Ok(time(message, short == "MicroTime"));
        }
        ("k8s.io.apimachinery.pkg.apis.meta.v1", "Duration") => {
            return Ok(go_duration(integer(message, "duration")).into());
        }
        ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => {
            return Ok(if integer(message, "type") == 1 {
                string(message, "strVal").into()
            } else {
                integer(message, "intVal").into()
            });
        }
        ("k8s.io.apimachinery.pkg.api.resource", "Quantity") => {
            return Ok(string(message, "string").into());
        }
        ("k8s.io.apimachinery.pkg.runtime", "RawExtension")
        | ("k8s.io.apimachinery.pkg.apis.meta.v1", "FieldsV1") => {
            // `raw` in one, `Raw` in the other: field 1 in both.
            let raw = message
                .get_field_by_number(1)
                .and_then(|v| v.as_bytes().cloned())
                .unwrap_or_default();
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&raw)
                .map_err(|e| Error::Malformed(format!("{short} does not hold JSON: {e}")));
        }
        _ => {}
    }
    let mut object = Map::new();
    for (field, value) in message.fields() {
        let json = match value {
            prost_reflect::Value::List(items) => {
                let items = items
                    .iter()
                    .map(|item| scalar_or_message(item, depth))
                    .collect::<Result<Vec<_>, _>>()?;
                if items.is_empty() {
                    continue;
                }
                Value::Array(items)
            }
            prost_reflect::Value::Map(entries) => {
                let mut map = Map::new();
                for (key, value) in entries {
                    let key = match key {
                        prost_reflect::MapKey::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    map.insert(key, scalar_or_message(value, depth)?);
                }
                Value::Object(map)
            }
            value => {
                let json = scalar_or_message(value, depth)?;
                let zero = matches!(&json, Value::String(s) if s.is_empty())
                    || matches!(&json, Value::Bool(false))
                    || json.as_f64() == Some(0.0);
                let message_field = matches!(field.kind(), Kind::Message(_));
                if zero && !message_field && !keeps_zero(&descriptor, &field) {
                    continue;
                }
                json
            }
        };
        if is_inline(&descriptor, &field) {
            if let Value::Object(fields) = json {
                object.extend(fields);
            }
            continue;
        }
        object.insert(field.name().to_string(), json);
    }
    Ok(Value::Object(object))
}

fn scalar_or_message(value: &prost_reflect::Value, depth: usize) -> Result<Value, Error> {
    use prost_reflect::Value as V;
    Ok(match value {
        V::Bool(b) => (*b).into(),
        V::I32(n) => (*n).into(),
        V::I64(n) => (*n).into(),
        V::U32(n) => (*n).into(),
        V::U64(n) => (*n).into(),
        V::F32(n) => json!(n),
        V::F64(n) => json!(n),
        V::String(s) => s.clone().into(),
        V::Bytes(b) => {
            serde_json::to_value(k8s_openapi::ByteString(b.to_vec())).unwrap_or(Value::Null)
        }
        V::EnumNumber(n) => (*n).into(),
        V::Message(m) => to_json(m, depth + 1)?,
        V::List(_) | V::Map(_) => {
            return Err(Error::Malformed("a list inside a list".into()));
        }
    })
}

fn integer(message: &DynamicMessage, name: &str) -> i64 {
    match message.get_field_by_name(name).as_deref() {
        Some(prost_reflect::Value::I64(n)) => *n,
        Some(prost_reflect::Value::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn string(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A `Time` as Go's JSON has it: whole seconds, `null` when zero;
/// a `MicroTime` with six decimals.
fn time(message: &DynamicMessage, micro: bool) -> Value {
    let seconds = integer(message, "seconds");
    let nanos = integer(message, "nanos");
    if seconds == 0 && nanos == 0 {
        return Value::Null;
    }
    let nanos = i32::try_from(nanos).unwrap_or(0);
    let Ok(at) = k8s_openapi::jiff::Timestamp::new(seconds, if micro { nanos } else { 0 }) else {
        return Value::Null;
    };
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S.%6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    at.strftime(format).to_string().into()
}

/// Nanoseconds as Go's `time.Duration` prints them: `1h2m3.5s`, `250ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", decimal(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", decimal(n, 1_000_000));
    }
    let seconds = n / 1_000_000_000;
    let (h, m) = (seconds / 3600, seconds / 60 % 60);
    let s = decimal(n % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `n / unit` with the fraction Go prints (no trailing zeros).
fn decimal(n: u64, unit: u64) -> String {
    let whole = n / unit;
    let fraction = n % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
