//! Label and field selectors as the API's `labelSelector` / `fieldSelector`
//! query parameters spell them, and `LabelSelector` objects.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::kinds::Kind;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`; every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelQuery(pub Vec<Requirement>);

impl LabelQuery {
    /// Parses `app=web,tier in (a,b),!legacy,env!=prod,track`.
    pub fn parse(text: &str) -> Result<LabelQuery, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(LabelQuery(requirements))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// The requirements of a `LabelSelector` object (matchLabels and
    /// matchExpressions).
    pub fn from_selector(selector: &LabelSelector) -> LabelQuery {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
            .collect();
        for expression in selector.match_expressions.iter().flatten() {
            let key = expression.key.clone();
            let values = expression.values.clone().unwrap_or_default();
            requirements.push(match expression.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                _ => Requirement::DoesNotExist(key),
            });
        }
        LabelQuery(requirements)
    }

    /// Whether the labels of a stored object (JSON) match.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.matches(&labels_of(object))
    }
}

/// `metadata.labels` of a JSON object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(valid_key(key.trim())?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            valid_key(key.trim())?,
            value.trim().to_string(),
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(
            valid_key(key.trim())?,
            value.trim().to_string(),
        ));
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let close = term
            .rfind(')')
            .filter(|&c| c > open)
            .ok_or_else(|| format!("unable to parse requirement: {term}: missing ')'"))?;
        let values: Vec<String> = term[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let mut words = head.split_whitespace();
        let key = words.next().unwrap_or_default();
        let operator = words.next().unwrap_or_default();
        if words.next().is_some() {
            return Err(format!("unable to parse requirement: {term}"));
        }
        return match operator {
            "in" => Ok(Requirement::In(valid_key(key)?, values)),
            "notin" => Ok(Requirement::NotIn(valid_key(key)?, values)),
            _ => Err(format!(
                "unable to parse requirement: {term}: unknown operator {operator:?}"
            )),
        };
    }
    Ok(Requirement::Exists(valid_key(term)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// A parsed `fieldSelector`: `path=value` / `path==value` / `path!=value`
/// over dotted JSON paths such as `metadata.name` or `status.phase`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldQuery(pub Vec<(String, bool, String)>);

impl FieldQuery {
    pub fn parse(text: &str) -> Result<FieldQuery, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldQuery(terms))
    }

    /// Refuses fields the real server cannot select `kind` by, as it does:
    /// `field label not supported: spec.foo`.
    pub fn check_supported(&self, kind: Kind) -> Result<(), String> {
        for (path, _, _) in &self.0 {
            if !supported_field(kind, path) {
                return Err(format!("field label not supported: {path}"));
            }
        }
        Ok(())
    }

    /// The name a `metadata.name=` term pins, if any.
    pub fn pinned_name(&self) -> Option<String> {
        self.0
            .iter()
            .find(|(path, equal, _)| path == "metadata.name" && *equal)
            .map(|(_, _, value)| value.clone())
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// Whether the real API server lets lists of `kind` be selected by the
/// field `path` (its field label conversions).
pub fn supported_field(kind: Kind, path: &str) -> bool {
    if matches!(path, "metadata.name" | "metadata.namespace") {
        return true;
    }
    let extra: &[&str] = match kind {
        Kind::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        Kind::Namespace => &["status.phase"],
        Kind::ReplicaSet => &["status.replicas"],
        Kind::Service => &["spec.clusterIP", "spec.type"],
        Kind::Event | Kind::EventV1 => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        #[allow(unreachable_patterns)]
        _ => &[],
    };
    extra.contains(&path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_cover_every_operator() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app=api", false),
            ("app!=api", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("tier in (front, back)", true),
            ("tier in (back)", false),
            ("tier notin (back)", true),
            ("tier notin (front,back)", false),
            ("missing notin (a)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier in (front),!legacy", true),
            ("app=web,tier=back", false),
            ("", true),
        ];
        for (selector, expected) in cases {
            let query = LabelQuery::parse(selector).unwrap();
            assert_eq!(query.matches(&web), expected, "{selector}");
        }
    }

    #[test]
    fn malformed_label_selectors_are_refused() {
        assert!(LabelQuery::parse("tier in (a").is_err());
        assert!(LabelQuery::parse("tier between (a)").is_err());
        assert!(LabelQuery::parse("bad key=1").is_err());
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let pod = json!({"metadata": {"name": "web-1", "namespace": "prod"}, "status": {"phase": "Running"}});
        let query = FieldQuery::parse("metadata.name=web-1,metadata.namespace==prod").unwrap();
        assert!(query.matches_object(&pod));
        assert_eq!(query.pinned_name().as_deref(), Some("web-1"));
        assert!(
            !FieldQuery::parse("status.phase!=Running")
                .unwrap()
                .matches_object(&pod)
        );
        assert!(FieldQuery::parse("nonsense").is_err());
    }

    #[test]
    fn field_selectors_on_unsupported_fields_are_refused_like_the_real_server() {
        let pods =
            FieldQuery::parse("spec.nodeName=n1,status.phase=Running,metadata.name=a").unwrap();
        assert_eq!(pods.check_supported(Kind::Pod), Ok(()));
        let foo = FieldQuery::parse("metadata.name=a,spec.foo=bar").unwrap();
        assert_eq!(
            foo.check_supported(Kind::Pod),
            Err("field label not supported: spec.foo".to_string())
        );
        let phase = FieldQuery::parse("status.phase=Running").unwrap();
        assert!(phase.check_supported(Kind::Deployment).is_err());
        assert_eq!(
            FieldQuery::parse("metadata.namespace!=kube-system")
                .unwrap()
                .check_supported(Kind::Deployment),
            Ok(())
        );
    }
}
