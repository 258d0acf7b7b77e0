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
use super::protobuf;
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
    let review = if body.starts_with(protobuf::MAGIC) {
        protobuf::decode(&body).map_err(|e| ApiError::bad_request(e.to_string()))
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
