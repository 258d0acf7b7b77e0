//! The options of writes as the real API server reads and checks them:
//! `dryRun` (query parameter, or the body of DeleteOptions), `fieldManager`
//! and its user-agent default, `force` for applies, `fieldValidation` and
//! the unknown fields it refuses, warns about or ignores.

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};

use super::api::Query;
use super::defaults::normalize;
use super::kinds::Kind;
use super::status::ApiError;

/// What a write does with fields its kind does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// The default since Kubernetes 1.27: accept, with a warning header.
    Warn,
    Strict,
}

/// The options of one create, update, patch or delete.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// `fieldManager`, or the user agent's program name.
    pub manager: String,
    pub force: bool,
}

/// The kind of options a verb takes, as errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    fn options_kind(self) -> &'static str {
        match self {
            Verb::Create => "CreateOptions",
            Verb::Update => "UpdateOptions",
            Verb::Patch => "PatchOptions",
            Verb::Delete => "DeleteOptions",
        }
    }
}

impl WriteOptions {
    /// Reads and checks the options of a request. `body_dry_run` is the
    /// `dryRun` of a DeleteOptions body; `apply` says the request is a
    /// server-side apply.
    pub fn parse(
        verb: Verb,
        query: &Query,
        headers: &HeaderMap,
        body_dry_run: Option<&[String]>,
        apply: bool,
    ) -> Result<WriteOptions, ApiError> {
        let mut dry_run: Vec<String> = query
            .get("dryRun")
            .map(|v| vec![v.clone()])
            .unwrap_or_default();
        if let Some(values) = body_dry_run {
            dry_run.extend(values.iter().cloned());
        }
        let mut causes: Vec<(&str, String, &str)> = Vec::new();
        if dry_run.iter().any(|v| v != "All") {
            let quoted: Vec<String> = dry_run.iter().map(|v| format!("{v:?}")).collect();
            causes.push((
                "dryRun",
                format!(
                    "Unsupported value: []string{{{}}}: supported values: \"All\"",
                    quoted.join(", ")
                ),
                "FieldValueNotSupported",
            ));
        }
        let field_validation = match query.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) if verb != Verb::Delete => {
                causes.push((
                    "fieldValidation",
                    format!(
                        "Unsupported value: {other:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                    ),
                    "FieldValueNotSupported",
                ));
                FieldValidation::Warn
            }
            Some(_) => FieldValidation::Warn,
        };
        let given = query.get("fieldManager").filter(|m| !m.is_empty());
        if let Some(manager) = given {
            if manager.len() > 128 {
                causes.push((
                    "fieldManager",
                    "Too long: may not be more than 128 bytes".into(),
                    "FieldValueTooLong",
                ));
            } else if let Some((i, c)) = manager.chars().enumerate().find(|(_, c)| c.is_control()) {
                causes.push((
                    "fieldManager",
                    format!(
                        "Invalid value: {manager:?}: invalid character U+{:04X} (at position {i})",
                        c as u32
                    ),
                    "FieldValueInvalid",
                ));
            }
        } else if apply {
            causes.push((
                "fieldManager",
                "Required value: is required for apply patch".into(),
                "FieldValueRequired",
            ));
        }
        let force = match query.get("force").map(String::as_str) {
            None => false,
            Some(v) => {
                let on = v == "true" || v == "1";
                if on && !apply {
                    causes.push((
                        "force",
                        "Forbidden: may not be specified for non-apply patch".into(),
                        "FieldValueForbidden",
                    ));
                }
                on
            }
        };
        if !causes.is_empty() {
            return Err(options_invalid(verb, &causes));
        }
        let manager = match given {
            Some(manager) => manager.clone(),
            None => user_agent_manager(headers),
        };
        Ok(WriteOptions {
            dry_run: !dry_run.is_empty(),
            field_validation,
            manager,
            force,
        })
    }
}

/// The program name of the user agent (`kubectl/v1.33.0 (linux/amd64) …`
/// gives `kubectl`), the manager of writes that name none.
fn user_agent_manager(headers: &HeaderMap) -> String {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    agent
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect()
}

/// 422 naming the options, as `CreateOptions.meta.k8s.io "" is invalid: …`.
fn options_invalid(verb: Verb, causes: &[(&str, String, &str)]) -> ApiError {
    let text: Vec<String> = causes.iter().map(|(f, m, _)| format!("{f}: {m}")).collect();
    let message = if text.len() == 1 {
        text[0].clone()
    } else {
        format!("[{}]", text.join(", "))
    };
    let details: Vec<Value> = causes
        .iter()
        .map(|(field, message, reason)| json!({"reason": reason, "message": message, "field": field}))
        .collect();
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{}.meta.k8s.io \"\" is invalid: {message}",
            verb.options_kind()
        ),
        details: Some(
            json!({"group": "meta.k8s.io", "kind": verb.options_kind(), "causes": details}),
        ),
    }
}

/// The keys of a body in the order it gives them, duplicates kept (what a
/// `Value` cannot tell).
#[derive(Debug)]
enum Shape {
    Object(Vec<(String, Shape)>),
    Array(Vec<Shape>),
    Null,
    Scalar,
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Shape, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Shape, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Shape>()? {
                    entries.push((key, value));
                }
                Ok(Shape::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Shape, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Shape>()? {
                    items.push(item);
                }
                Ok(Shape::Array(items))
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Null)
            }
            fn visit_none<E>(self) -> Result<Shape, E> {
                Ok(Shape::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
                <Shape as serde::Deserialize>::deserialize(d)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Shape {
    /// The shape of a JSON or YAML body.
    fn of(body: &[u8]) -> Option<Shape> {
        serde_json::from_slice(body)
            .ok()
            .or_else(|| serde_yaml::from_slice(body).ok())
    }

    /// The shape of a value (keys in name order, no duplicates).
    fn from_value(value: &Value) -> Shape {
        match value {
            Value::Object(map) => Shape::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Shape::from_value(v)))
                    .collect(),
            ),
            Value::Array(items) => Shape::Array(items.iter().map(Shape::from_value).collect()),
            Value::Null => Shape::Null,
            _ => Shape::Scalar,
        }
    }
}

/// The fields of `object` its kind does not have, and those `body` gives
/// twice, as the real decoder names them (`unknown field
/// "spec.template.spec.containers[0].foo"`, `duplicate field
/// "spec.replicas"`), in the body's order: what decoding into the kind's
/// type drops or overwrites.
pub fn field_problems(kind: Kind, object: &Value, body: Option<&[u8]>) -> Vec<String> {
    let shape = body
        .and_then(Shape::of)
        .unwrap_or_else(|| Shape::from_value(object));
    let mut probe = object.clone();
    if let Some(meta) = probe.get_mut("metadata").and_then(Value::as_object_mut) {
        // Identity fields are checked elsewhere; a placeholder lets
        // generateName objects be decoded too.
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            meta.insert("name".into(), "probe".into());
        }
    }
    let Ok(decoded) = normalize(kind, probe) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk_shape(&shape, &decoded, "", &mut out);
    if kind == Kind::Secret {
        // Merged into `data` on write, never stored: known, not kept.
        out.retain(|p| p != "unknown field \"stringData\"");
    }
    out
}

/// Fields the server takes out of objects itself, never unknown.
const SERVER_HANDLED: &[&str] = &["metadata.managedFields", "metadata.selfLink"];

fn walk_shape(shape: &Shape, kept: &Value, at: &str, out: &mut Vec<String>) {
    match (shape, kept) {
        (Shape::Object(entries), Value::Object(kept)) => {
            let mut seen = std::collections::HashSet::new();
            for (key, child) in entries {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                if !seen.insert(key.as_str()) {
                    out.push(format!("duplicate field {path:?}"));
                    continue;
                }
                match kept.get(key) {
                    None if matches!(child, Shape::Null) => {}
                    None if SERVER_HANDLED.contains(&path.as_str()) => {}
                    None => out.push(format!("unknown field {path:?}")),
                    Some(kept) => walk_shape(child, kept, &path, out),
                }
            }
        }
        (Shape::Array(items), Value::Array(kept)) => {
            for (i, (item, kept)) in items.iter().zip(kept).enumerate() {
                walk_shape(item, kept, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What to do about unknown and duplicate fields: nothing, warnings for
/// the response, or 400. `body` is the request body when it is the object
/// itself (create, replace): its errors get the decoder's lead-in.
pub fn check_unknown_fields(
    options: &WriteOptions,
    kind: Kind,
    object: &Value,
    body: Option<&[u8]>,
) -> Result<Vec<String>, ApiError> {
    if options.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let decoded_body = body.is_some();
    let problems = field_problems(kind, object, body);
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    if options.field_validation == FieldValidation::Strict {
        let strict = format!("strict decoding error: {}", problems.join(", "));
        let message = if decoded_body {
            format!(
                "{} in version \"{}\" cannot be handled as a {}: {strict}",
                kind.kind(),
                kind.version(),
                kind.kind()
            )
        } else {
            strict
        };
        return Err(ApiError::bad_request(message));
    }
    Ok(problems)
}

/// Adds one `Warning: 299 - "…"` header per warning, as kubectl prints them.
pub fn add_warnings(headers: &mut HeaderMap, warnings: &[String]) {
    for warning in warnings {
        let text = format!("299 - {}", quote_warning(warning));
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.append(header::WARNING, value);
        }
    }
}

/// An RFC 7234 quoted string: backslashes and quotes escaped.
fn quote_warning(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dry_run_values_other_than_all_are_refused_like_the_real_server() {
        let ok = WriteOptions::parse(
            Verb::Create,
            &query(&[("dryRun", "All")]),
            &HeaderMap::new(),
            None,
            false,
        )
        .unwrap();
        assert!(ok.dry_run);
        let error = WriteOptions::parse(
            Verb::Create,
            &query(&[("dryRun", "Yes")]),
            &HeaderMap::new(),
            None,
            false,
        )
        .unwrap_err();
        assert_eq!((error.code, error.reason), (422, "Invalid"));
        assert_eq!(
            error.message,
            r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Yes"}: supported values: "All""#
        );
        let body = WriteOptions::parse(
            Verb::Delete,
            &Query::new(),
            &HeaderMap::new(),
            Some(&["All".to_string()]),
            false,
        )
        .unwrap();
        assert!(body.dry_run, "dryRun in a DeleteOptions body counts");
        let bad_body = WriteOptions::parse(
            Verb::Delete,
            &Query::new(),
            &HeaderMap::new(),
            Some(&["Server".to_string()]),
            false,
        )
        .unwrap_err();
        assert!(
            bad_body.message.starts_with("DeleteOptions.meta.k8s.io"),
            "{}",
            bad_body.message
        );
    }

    #[test]
    fn managers_come_from_field_manager_or_the_user_agent_and_apply_needs_one() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("kubectl/v1.33.0 (linux/amd64) kubernetes/abc"),
        );
        let from_agent =
            WriteOptions::parse(Verb::Update, &Query::new(), &headers, None, false).unwrap();
        assert_eq!(from_agent.manager, "kubectl");
        let named = WriteOptions::parse(
            Verb::Patch,
            &query(&[("fieldManager", "kubectl-set")]),
            &headers,
            None,
            false,
        )
        .unwrap();
        assert_eq!(named.manager, "kubectl-set");
        let apply =
            WriteOptions::parse(Verb::Patch, &Query::new(), &headers, None, true).unwrap_err();
        assert_eq!(
            apply.message,
            r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
        );
        let force = WriteOptions::parse(
            Verb::Patch,
            &query(&[("force", "true")]),
            &headers,
            None,
            false,
        )
        .unwrap_err();
        assert!(
            force.message.contains("force: Forbidden"),
            "{}",
            force.message
        );
    }

    #[test]
    fn unknown_and_duplicate_fields_are_named_in_body_order() {
        // `spec.zeta` before `spec.alpha`, and `replicas` twice, as a client
        // could send them.
        let body = br#"{"metadata": {"name": "web"},
            "spec": {"zeta": 1, "replicas": 1, "replicas": 2, "alpha": 2,
              "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "web:1", "imagePullPolicyy": "Always"}]}}}}"#;
        let object: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            field_problems(Kind::Deployment, &object, Some(body)),
            [
                r#"unknown field "spec.zeta""#,
                r#"duplicate field "spec.replicas""#,
                r#"unknown field "spec.alpha""#,
                r#"unknown field "spec.template.spec.containers[0].imagePullPolicyy""#,
            ]
        );
        let strict = WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Strict,
            manager: "m".into(),
            force: false,
        };
        let error =
            check_unknown_fields(&strict, Kind::Deployment, &object, Some(body)).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.zeta", duplicate field "spec.replicas", unknown field "spec.alpha", unknown field "spec.template.spec.containers[0].imagePullPolicyy""#
        );
        // Patched objects have no body of their own: no lead-in.
        let patched = check_unknown_fields(&strict, Kind::Deployment, &object, None).unwrap_err();
        assert!(
            patched
                .message
                .starts_with(r#"strict decoding error: unknown field "spec.alpha""#),
            "{}",
            patched.message
        );
        let warn = WriteOptions {
            field_validation: FieldValidation::Warn,
            ..strict.clone()
        };
        let warnings = check_unknown_fields(&warn, Kind::Deployment, &object, Some(body)).unwrap();
        let mut headers = HeaderMap::new();
        add_warnings(&mut headers, &warnings);
        let sent: Vec<&str> = headers
            .get_all(header::WARNING)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(sent.len(), 4);
        assert_eq!(sent[0], r#"299 - "unknown field \"spec.zeta\"""#);
        assert_eq!(sent[1], r#"299 - "duplicate field \"spec.replicas\"""#);
        let ignore = WriteOptions {
            field_validation: FieldValidation::Ignore,
            ..strict
        };
        assert!(
            check_unknown_fields(&ignore, Kind::Deployment, &object, Some(body))
                .unwrap()
                .is_empty()
        );
        // Known fields and nulls are no problem; neither are fields the
        // server handles itself.
        let clean = json!({"metadata": {"name": "web", "managedFields": [], "labels": null},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "web:1"}]}}}});
        assert!(field_problems(Kind::Deployment, &clean, None).is_empty());
    }
}
