//! Clusters and apps: environment classes and the checks a kubeconfig must
//! pass before it is stored.

use std::fmt;
use std::str::FromStr;

use crate::secret::Secret;

/// Largest kubeconfig accepted.
pub const MAX_KUBECONFIG_BYTES: usize = 256 * 1024;

/// What a cluster is for. The CI fast path deploys without a ticket only to
/// `dev` and `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Dev,
    Test,
    Staging,
    Prod,
}

impl Environment {
    pub const ALL: [Environment; 4] = [
        Environment::Dev,
        Environment::Test,
        Environment::Staging,
        Environment::Prod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Test => "test",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }

    /// Whether CI may deploy here without a ticket.
    pub fn allows_fast_path(self) -> bool {
        matches!(self, Environment::Dev | Environment::Test)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Environment::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!("unknown environment '{s}': expected dev, test, staging or prod")
            })
    }
}

/// Checks that `yaml` is a kubeconfig with at least one cluster, and that
/// `context` (when given) is one of its contexts. Messages never quote the
/// document, which may hold credentials.
pub fn validate_kubeconfig(yaml: &str, context: Option<&str>) -> Result<(), String> {
    if yaml.trim().is_empty() {
        return Err("the kubeconfig is empty".into());
    }
    if yaml.len() > MAX_KUBECONFIG_BYTES {
        return Err(format!(
            "the kubeconfig is larger than {} KiB",
            MAX_KUBECONFIG_BYTES / 1024
        ));
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| {
        format!(
            "the kubeconfig is not valid YAML (line {})",
            e.location().map(|l| l.line()).unwrap_or(0)
        )
    })?;
    let names = |key: &str| -> Vec<String> {
        doc.get(key)
            .and_then(|v| v.as_sequence())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("name").and_then(|n| n.as_str()).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if doc
        .get("kind")
        .and_then(|k| k.as_str())
        .is_some_and(|k| k != "Config")
    {
        return Err("the document is not a kubeconfig (kind is not Config)".into());
    }
    refuse_external_credentials(&doc)?;
    let clusters = names("clusters");
    if clusters.is_empty() {
        return Err("the kubeconfig names no cluster (no clusters: entries with a name)".into());
    }
    let contexts = names("contexts");
    match context {
        Some(ctx) if !contexts.iter().any(|c| c == ctx) => Err(format!(
            "the kubeconfig has no context '{ctx}' (it has: {})",
            if contexts.is_empty() {
                "none".to_string()
            } else {
                contexts.join(", ")
            }
        )),
        None if contexts.is_empty() => Err("the kubeconfig has no contexts".into()),
        None if doc
            .get("current-context")
            .and_then(|c| c.as_str())
            .is_none_or(str::is_empty)
            && contexts.len() > 1 =>
        {
            Err("the kubeconfig has several contexts and no current-context: name the context to use".into())
        }
        _ => Ok(()),
    }
}

/// Fields of `users[].user` that carry their credential inline. Everything
/// else is refused: `exec` and `auth-provider` would run a command or a
/// plugin as the server's user, and `tokenFile`, `client-certificate`,
/// `client-key` would make the server read a local file (its own secret
/// key, say) and send it to whatever `server` the kubeconfig names.
const INLINE_USER_FIELDS: &[&str] = &[
    "token",
    "client-certificate-data",
    "client-key-data",
    "username",
    "password",
    "as",
    "as-uid",
    "as-groups",
    "as-user-extra",
    "extensions",
];

/// Fields of `clusters[].cluster` that need nothing but the document
/// (`certificate-authority`, a path, is refused for the same reason).
const INLINE_CLUSTER_FIELDS: &[&str] = &[
    "server",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "tls-server-name",
    "proxy-url",
    "disable-compression",
    "extensions",
];

/// Refuses a kubeconfig whose users or clusters name anything but inline
/// credentials, naming the first offending field (never its value).
pub fn refuse_external_credentials(doc: &serde_yaml::Value) -> Result<(), String> {
    for (list, entry, allowed) in [
        ("users", "user", INLINE_USER_FIELDS),
        ("clusters", "cluster", INLINE_CLUSTER_FIELDS),
    ] {
        let Some(items) = doc.get(list).and_then(|v| v.as_sequence()) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(fields) = item.get(entry).and_then(|v| v.as_mapping()) else {
                continue;
            };
            for key in fields.keys() {
                let key = key.as_str().unwrap_or("?");
                if allowed.contains(&key) {
                    continue;
                }
                let why = match key {
                    "exec" | "auth-provider" => "it would run a command on the Rollway server",
                    k if k.ends_with("File")
                        || k.ends_with("-file")
                        || matches!(
                            k,
                            "client-certificate" | "client-key" | "certificate-authority"
                        ) =>
                    {
                        "it names a file on the Rollway server"
                    }
                    _ => "it is not a field Rollway accepts",
                };
                return Err(format!(
                    "{list}[{i}].{entry}.{key} is not accepted: {why}; paste a kubeconfig with inline \
                     credentials only (token, client-certificate-data and client-key-data, \
                     certificate-authority-data)"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a Kubernetes object name (DNS-1123 label: namespaces,
/// Deployments, containers).
pub fn validate_k8s_name(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} '{value}' is not a Kubernetes name (lowercase letters, digits and '-', at most 63)"
        ))
    }
}

/// Checks the name of an app's Service: a DNS-1035 label, short enough
/// for the canary Service (`<name>-canary`) to be one too.
pub fn validate_service_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ROUTED_NAME
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "service '{value}' is not a Service name (a lowercase letter first, then lowercase letters, digits and '-', at most {MAX_ROUTED_NAME})"
        ))
    }
}

/// Checks the name of an app's Ingress: a DNS-1123 subdomain, short enough
/// for the canary Ingress (`<name>-canary`) to be one too.
pub fn validate_ingress_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 253 - "-canary".len()
        && value.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ingress '{value}' is not an Ingress name (lowercase letters, digits, '-' and '.')"
        ))
    }
}

/// The longest Service name whose canary Service (`<name>-canary`) is
/// still a valid name.
pub const MAX_ROUTED_NAME: usize = 63 - "-canary".len();

/// How to reach a cluster's Prometheus: its URL and, when it wants one,
/// the bearer token (opened by `db::clusters::prometheus_access`, the one
/// place it is unsealed, and handed to the Prometheus client).
#[derive(Debug, Clone)]
pub struct PrometheusAccess {
    pub cluster: String,
    pub url: String,
    pub token: Option<Secret<String>>,
}

/// Checks a Prometheus base URL: http or https, a host, no credentials in
/// it (the token has its own field), no query or fragment, one line.
pub fn validate_prometheus_url(url: &str) -> Result<(), String> {
    if url.chars().any(char::is_control) {
        return Err("the Prometheus URL must be one line without control characters".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "the Prometheus URL must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the Prometheus URL has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("put no credentials in the Prometheus URL; give a bearer token instead".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("the Prometheus URL takes no query or fragment".into());
    }
    if url.len() > 2000 {
        return Err("the Prometheus URL is longer than 2000 characters".into());
    }
    Ok(())
}

/// How to reach a cluster: its stored connection, opened by
/// `db::clusters::credentials` (the one place that unseals a kubeconfig)
/// and handed to the Kubernetes driver, which runs no query of its own.
#[derive(Debug, Clone)]
pub struct ClusterCredentials {
    pub id: i64,
    pub name: String,
    pub access: ClusterAccess,
    /// Changes whenever the stored connection changes: the driver keeps a
    /// cluster's client while it stays the same.
    pub fingerprint: String,
}

/// What a cluster's stored connection holds.
#[derive(Debug, Clone)]
pub enum ClusterAccess {
    /// A kubeconfig (opened) and the context to use (its current one when
    /// absent).
    Kubeconfig {
        yaml: Secret<String>,
        context: Option<String>,
    },
    /// Rollway runs inside the cluster and uses its service account.
    InCluster,
    /// No kubeconfig is stored.
    Missing,
    /// The stored kubeconfig cannot be opened (the secret key changed).
    Unreadable,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://127.0.0.1:6443\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: u\n- name: other\n  context:\n    cluster: sim\n    user: u\ncurrent-context: sim\nusers:\n- name: u\n  user:\n    token: secret-token\n";

    #[test]
    fn kubeconfigs_are_checked() {
        assert!(validate_kubeconfig(KUBECONFIG, None).is_ok());
        assert!(validate_kubeconfig(KUBECONFIG, Some("other")).is_ok());
        let err = validate_kubeconfig(KUBECONFIG, Some("nope")).unwrap_err();
        assert!(err.contains("sim, other"), "{err}");
        assert!(validate_kubeconfig("", None).is_err());
        assert!(validate_kubeconfig("a: [b", None).is_err());
        assert!(validate_kubeconfig("kind: Pod\nclusters: []", None).is_err());
        assert!(validate_kubeconfig("apiVersion: v1\nkind: Config\nclusters: []\n", None).is_err());
        let no_current = KUBECONFIG.replace("current-context: sim\n", "");
        assert!(validate_kubeconfig(&no_current, None).is_err());
        assert!(validate_kubeconfig(&no_current, Some("sim")).is_ok());
        // Errors never echo the document.
        let bad = "token: secret-token\n: [";
        assert!(
            !validate_kubeconfig(bad, None)
                .unwrap_err()
                .contains("secret-token")
        );
    }

    #[test]
    fn only_inline_credentials_are_accepted() {
        let user = |field: &str| {
            KUBECONFIG.replace("    token: secret-token\n", &format!("    {field}\n"))
        };
        for (field, named) in [
            (
                "exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}",
                "users[0].user.exec",
            ),
            ("auth-provider: {name: gcp}", "users[0].user.auth-provider"),
            (
                "tokenFile: /var/lib/rollway/rollway.db.key",
                "users[0].user.tokenFile",
            ),
            (
                "client-certificate: /etc/passwd",
                "users[0].user.client-certificate",
            ),
            ("client-key: /etc/shadow", "users[0].user.client-key"),
            ("password-file: /x", "users[0].user.password-file"),
            ("surprise: 1", "users[0].user.surprise"),
        ] {
            let err = validate_kubeconfig(&user(field), None).unwrap_err();
            assert!(err.starts_with(named), "{field}: {err}");
            assert!(!err.contains("/etc") && !err.contains("/bin/sh"), "{err}");
        }
        let ca_path = KUBECONFIG.replace(
            "    server: http://127.0.0.1:6443\n",
            "    server: http://127.0.0.1:6443\n    certificate-authority: /etc/ssl/ca.pem\n",
        );
        let err = validate_kubeconfig(&ca_path, None).unwrap_err();
        assert!(
            err.starts_with("clusters[0].cluster.certificate-authority"),
            "{err}"
        );
        for field in [
            "token: t",
            "client-certificate-data: Zm9v\n    client-key-data: YmFy",
            "username: u\n    password: p",
        ] {
            assert!(validate_kubeconfig(&user(field), None).is_ok(), "{field}");
        }
    }

    #[test]
    fn kubernetes_names_are_checked() {
        for ok in ["default", "checkout-api", "a1"] {
            assert!(validate_k8s_name("namespace", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Default", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(validate_k8s_name("namespace", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prometheus_urls_are_plain_http_bases() {
        for ok in [
            "http://prometheus.monitoring:9090",
            "https://prom.example.com/prometheus/",
        ] {
            assert!(validate_prometheus_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "prometheus:9090",
            "file:///etc/passwd",
            "ftp://prom",
            "http://user:pw@prom:9090",
            "http://prom:9090/?q=1",
            "http://prom:9090/\nx",
        ] {
            assert!(validate_prometheus_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_and_ingress_names_leave_room_for_their_canaries() {
        for ok in ["web", "web-1", &"a".repeat(56)] {
            assert!(validate_service_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1web", "Web", "web-", "web.api", &"a".repeat(57)] {
            assert!(validate_service_name(bad).is_err(), "{bad}");
        }
        for ok in ["web", "web.example", "1web", &"a".repeat(246)] {
            assert!(validate_ingress_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Web", "web..x", ".web", "web-", "a_b", &"a".repeat(247)] {
            assert!(validate_ingress_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_dev_and_test_allow_the_fast_path() {
        let allowed: Vec<_> = Environment::ALL
            .into_iter()
            .filter(|e| e.allows_fast_path())
            .collect();
        assert_eq!(allowed, [Environment::Dev, Environment::Test]);
        assert_eq!("prod".parse::<Environment>(), Ok(Environment::Prod));
        assert!("production".parse::<Environment>().is_err());
    }
}
