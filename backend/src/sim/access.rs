//! `authorization.k8s.io/v1` self-reviews, what `kubectl auth can-i` asks:
//! SelfSubjectAccessReview (may I do this?) and SelfSubjectRulesReview
//! (what may I do here?). The simulated cluster's token is cluster-admin,
//! so every well-formed question is answered yes. Both are create-only and
//! never stored, as on a real server.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Sim;
use super::kinds::Kind;
use super::status::ApiError;

const PREFIX: &str = "/apis/authorization.k8s.io/v1/";

/// Why everything is allowed, worded as RBAC words it.
const REASON: &str = "RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\"";

/// Middleware: answers the two review resources; everything else passes.
pub(crate) async fn layer(State(_sim): State<Sim>, request: Request, next: Next) -> Response {
    let kind = match request.uri().path().strip_prefix(PREFIX) {
        Some("selfsubjectaccessreviews") => Kind::SelfSubjectAccessReview,
        Some("selfsubjectrulesreviews") => Kind::SelfSubjectRulesReview,
        _ => return next.run(request).await,
    };
    if request.method() != Method::POST {
        return ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            request.method()
        ))
        .into_response();
    }
    let Ok(body) = to_bytes(request.into_body(), 1024 * 1024).await else {
        return ApiError::bad_request("cannot read the body").into_response();
    };
    let protobuf = body.starts_with(PROTOBUF_MAGIC);
    let review = if protobuf {
        from_protobuf(kind, &body)
            .ok_or_else(|| ApiError::bad_request("the body is not a valid protobuf review"))
    } else {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
    };
    match review.and_then(|review| answer(kind, review)) {
        Ok(answered) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&answered).unwrap_or_default(),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// How a Kubernetes protobuf body starts (kubectl sends reviews so; it
/// accepts JSON answers).
const PROTOBUF_MAGIC: &[u8] = b"k8s\0";

/// A protobuf field's value: length-delimited bytes, or a scalar (which
/// reviews do not need).
enum Field<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let field = match key & 7 {
            0 => {
                varint(buf, &mut at)?;
                Field::Scalar
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).ok()?;
                let bytes = buf.get(at..at.checked_add(len)?)?;
                at += len;
                Field::Bytes(bytes)
            }
            1 => {
                at += 8;
                Field::Scalar
            }
            5 => {
                at += 4;
                Field::Scalar
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    Some(out)
}

/// The length-delimited field `number` of a message.
fn field(buf: &[u8], number: u64) -> Option<&[u8]> {
    fields(buf)?.into_iter().find_map(|(n, f)| match f {
        Field::Bytes(bytes) if n == number => Some(bytes),
        _ => None,
    })
}

/// The string fields of a message, by number, as JSON under `names`.
fn strings_of(buf: &[u8], names: &[(u64, &str)]) -> Value {
    let mut object = json!({});
    for (number, f) in fields(buf).unwrap_or_default() {
        if let (Field::Bytes(bytes), Some((_, name))) =
            (f, names.iter().find(|(n, _)| *n == number))
        {
            object[*name] = String::from_utf8_lossy(bytes).into_owned().into();
        }
    }
    object
}

/// A review sent as protobuf (a `runtime.Unknown` envelope around the
/// message), as the JSON it stands for.
fn from_protobuf(kind: Kind, body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(PROTOBUF_MAGIC)?;
    let raw = field(envelope, 2)?;
    let spec = field(raw, 2).unwrap_or_default();
    let mut review = json!({"kind": kind.kind(), "apiVersion": kind.api_version(), "spec": {}});
    if kind == Kind::SelfSubjectAccessReview {
        if let Some(attributes) = field(spec, 1) {
            review["spec"]["resourceAttributes"] = strings_of(
                attributes,
                &[
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ],
            );
        }
        if let Some(attributes) = field(spec, 2) {
            review["spec"]["nonResourceAttributes"] =
                strings_of(attributes, &[(1, "path"), (2, "verb")]);
        }
    } else {
        review["spec"] = strings_of(spec, &[(1, "namespace")]);
    }
    Some(review)
}

/// The review with its status filled in.
pub fn answer(kind: Kind, mut review: Value) -> Result<Value, ApiError> {
    if !review.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    match review["kind"].as_str() {
        Some(k) if k != kind.kind() => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                kind.kind()
            )));
        }
        _ => {}
    }
    review["kind"] = kind.kind().into();
    review["apiVersion"] = kind.api_version().into();
    if !review["metadata"].is_object() {
        review["metadata"] = json!({});
    }
    review["metadata"]["creationTimestamp"] = Value::Null;
    let spec = &review["spec"];
    if kind == Kind::SelfSubjectAccessReview {
        let resource = spec.get("resourceAttributes").is_some_and(Value::is_object);
        let non_resource = spec
            .get("nonResourceAttributes")
            .is_some_and(Value::is_object);
        if resource == non_resource {
            return Err(ApiError::invalid(
                kind,
                "",
                &[(
                    "spec.resourceAttributes".into(),
                    "Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                )],
            ));
        }
        review["status"] = json!({"allowed": true, "reason": REASON});
    } else {
        review["status"] = json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        });
    }
    Ok(review)
}
