//! The options of writes as the real API server reads and checks them:
//! `dryRun` (query parameter, or the body of DeleteOptions), `fieldManager`
//! and its user-agent default, `force` for applies, `fieldValidation` and
//! the unknown fields it refuses, warns about or ignores.

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};

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

/// The fields of `object` its kind does not have, as the real decoder
/// names them (`spec.template.spec.containers[0].foo`): what decoding
/// into the kind's type drops.
pub fn unknown_fields(kind: Kind, object: &Value) -> Vec<String> {
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
    let Ok(decoded) = normalize(kind, probe.clone()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (Value::Object(given), Value::Object(kept)) = (&probe, &decoded) {
        diff_map(given, kept, "", &mut out);
    }
    out.retain(|path| path != "metadata.managedFields" && path != "metadata.selfLink");
    out
}

fn diff_map(
    given: &Map<String, Value>,
    kept: &Map<String, Value>,
    at: &str,
    out: &mut Vec<String>,
) {
    for (key, value) in given {
        if value.is_null() {
            continue;
        }
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match kept.get(key) {
            None => out.push(path),
            Some(kept) => diff_value(value, kept, &path, out),
        }
    }
}

fn diff_value(given: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(g), Value::Object(k)) => diff_map(g, k, path, out),
        (Value::Array(g), Value::Array(k)) => {
            for (i, (g, k)) in g.iter().zip(k).enumerate() {
                diff_value(g, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// What to do about unknown fields: nothing, warnings for the response, or
/// 400. `prefix` is the decoder's lead-in for bodies decoded as objects.
pub fn check_unknown_fields(
    options: &WriteOptions,
    kind: Kind,
    object: &Value,
    decoded_body: bool,
) -> Result<Vec<String>, ApiError> {
    if options.field_validation == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let unknown = unknown_fields(kind, object);
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let problems: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
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
    fn unknown_fields_are_named_with_their_path() {
        let object = json!({
            "metadata": {"name": "web"},
            "spec": {
                "foo": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "web:1", "imagePullPolicyy": "Always"}]}
                }
            }
        });
        assert_eq!(
            unknown_fields(Kind::Deployment, &object),
            [
                "spec.foo",
                "spec.template.spec.containers[0].imagePullPolicyy"
            ]
        );
        let strict = WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Strict,
            manager: "m".into(),
            force: false,
        };
        let error = check_unknown_fields(&strict, Kind::Deployment, &object, true).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo", unknown field "spec.template.spec.containers[0].imagePullPolicyy""#
        );
        let warn = WriteOptions {
            field_validation: FieldValidation::Warn,
            ..strict.clone()
        };
        let warnings = check_unknown_fields(&warn, Kind::Deployment, &object, true).unwrap();
        let mut headers = HeaderMap::new();
        add_warnings(&mut headers, &warnings);
        assert_eq!(
            headers.get(header::WARNING).unwrap(),
            r#"299 - "unknown field \"spec.foo\"""#
        );
        let ignore = WriteOptions {
            field_validation: FieldValidation::Ignore,
            ..strict
        };
        assert!(
            check_unknown_fields(&ignore, Kind::Deployment, &object, true)
                .unwrap()
                .is_empty()
        );
    }
}
