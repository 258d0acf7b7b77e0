//! ConfigMaps, Secrets and ServiceAccounts: their validation and defaults
//! (Secret `data` must be base64, `stringData` is merged into `data` and
//! never stored, `type` defaults to `Opaque`), the objects every namespace
//! starts with (the `default` ServiceAccount and the `kube-root-ca.crt`
//! ConfigMap, made by the controller as a real cluster's controllers do),
//! and keeping Secret contents out of the request log.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::{Map, Value, json};

use super::api::parse_resource_path;
use super::kinds::Kind;
use super::status::ApiError;
use super::store::{Key, Store};

/// Validation failures: `(field path, message)`.
type Causes = Vec<(String, String)>;

pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// What `ca.crt` holds: the simulated cluster serves plain HTTP and has no
/// certificate authority to publish.
pub const ROOT_CA_TEXT: &str =
    "# The Rollway simulated cluster serves plain HTTP: there is no certificate authority.\n";

const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Where the real API server reports a bad byte in base64: the offset of
/// the first character outside the alphabet, else where the input ends
/// short of a whole quantum. Line breaks are skipped, as Go's decoder skips
/// them (kustomize wraps long values over lines).
fn illegal_base64_at(text: &str) -> Option<usize> {
    let mut padding = 0;
    let mut seen = 0;
    let significant = text.bytes().filter(|b| !matches!(b, b'\r' | b'\n')).count();
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'\r' | b'\n' => continue,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if padding == 0 => {}
            b'=' if seen + 2 >= significant && seen % 4 >= 2 => padding += 1,
            _ => return Some(i),
        }
        seen += 1;
    }
    if !significant.is_multiple_of(4) {
        return Some(text.len() - (significant % 4));
    }
    None
}

/// A Secret before it is decoded: every `data` value valid base64 (400
/// otherwise, naming only the offset, never the value), `stringData`
/// merged into `data` as base64 and dropped.
pub fn prepare_secret(mut object: Value) -> Result<Value, ApiError> {
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: {why}"
        ))
    };
    if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
        for value in data.values_mut() {
            if let Some(at) = value.as_str().and_then(illegal_base64_at) {
                return Err(cannot(format!("illegal base64 data at input byte {at}")));
            }
            if let Some(text) = value.as_str().filter(|t| t.contains(['\r', '\n'])) {
                *value = text.replace(['\r', '\n'], "").into();
            }
        }
    }
    let Some(map) = object.as_object_mut() else {
        return Ok(object);
    };
    match map.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(strings)) => {
            let data = map
                .entry("data")
                .or_insert_with(|| Value::Object(Map::new()));
            if data.is_null() {
                *data = Value::Object(Map::new());
            }
            let Some(data) = data.as_object_mut() else {
                return Err(cannot(
                    "json: cannot unmarshal data into Go struct field Secret.data of type map[string][]uint8".into(),
                ));
            };
            for (key, value) in strings {
                let Value::String(text) = value else {
                    return Err(cannot(format!(
                        "json: cannot unmarshal {} into Go struct field Secret.stringData of type string",
                        json_type(&value)
                    )));
                };
                let encoded = serde_json::to_value(ByteString(text.into_bytes()))
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                data.insert(key, encoded);
            }
        }
        Some(other) => {
            return Err(cannot(format!(
                "json: cannot unmarshal {} into Go struct field Secret.stringData of type map[string]string",
                json_type(&other)
            )));
        }
    }
    Ok(object)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key != "."
        && key != ".."
        && !key.starts_with("..")
}

fn check_keys<'a>(field: &str, keys: impl Iterator<Item = &'a String>, causes: &mut Causes) {
    for key in keys {
        if !is_config_key(key) {
            causes.push((
                format!("{field}[{key}]"),
                format!("Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
            ));
        }
    }
}

pub fn check_config_map(config_map: &mut ConfigMap, causes: &mut Causes) {
    check_keys(
        "data",
        config_map.data.iter().flatten().map(|(k, _)| k),
        causes,
    );
    check_keys(
        "binaryData",
        config_map.binary_data.iter().flatten().map(|(k, _)| k),
        causes,
    );
    if let (Some(data), Some(binary)) = (&config_map.data, &config_map.binary_data) {
        for key in binary.keys().filter(|k| data.contains_key(*k)) {
            causes.push((
                format!("data[{key}]"),
                format!("Invalid value: \"{key}\": duplicate of key present in binaryData"),
            ));
        }
    }
}

pub fn check_secret(secret: &mut Secret, causes: &mut Causes) {
    let type_ = secret.type_.get_or_insert_with(|| "Opaque".into()).clone();
    let data = secret.data.clone().unwrap_or_default();
    check_keys("data", data.keys(), causes);
    let has = |key: &str| data.get(key).is_some_and(|v| !v.0.is_empty());
    let mut require = |key: &str, message: &str| {
        causes.push((format!("data[{key}]"), format!("Required value{message}")));
    };
    match type_.as_str() {
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !data.contains_key(key) {
                    require(key, "");
                }
            }
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            require(".dockerconfigjson", "");
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => require(".dockercfg", ""),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require("username", ": either username or password is required");
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => require("ssh-privatekey", ""),
        _ => {}
    }
}

/// Gives the namespace `key` its `default` ServiceAccount and its
/// `kube-root-ca.crt` ConfigMap when it lacks them.
pub fn sync_namespace(store: &mut Store, key: &Key) {
    let namespace = key.1.as_str();
    if store.get(Kind::Namespace, "", namespace).is_none() {
        return;
    }
    if store
        .get(Kind::ServiceAccount, namespace, "default")
        .is_none()
    {
        let _ = store.create(
            Kind::ServiceAccount,
            namespace,
            json!({"metadata": {"name": "default"}}),
            false,
        );
    }
    if store
        .get(Kind::ConfigMap, namespace, ROOT_CA_CONFIG_MAP)
        .is_none()
    {
        let _ = store.create(
            Kind::ConfigMap,
            namespace,
            json!({
                "metadata": {
                    "name": ROOT_CA_CONFIG_MAP,
                    "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
                },
                "data": {"ca.crt": ROOT_CA_TEXT},
            }),
            false,
        );
    }
}

/// The body of a request as the request log keeps it: a Secret's body
/// (whatever the verb) is replaced by a note of its size.
pub fn loggable_body(path: &str, body: &[u8]) -> String {
    let secret = parse_resource_path(path).is_some_and(|t| t.kind == Kind::Secret);
    if secret && !body.is_empty() {
        format!("<Secret body, {} bytes, not recorded>", body.len())
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}
