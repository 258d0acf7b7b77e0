//! A stage's verification plan and the rules that judge it (issue 15):
//! metric gates (a Prometheus query, a condition on every sample, taken
//! `count` times `interval_seconds` apart, failing past `failure_limit`
//! failed measurements and handed to a person past `inconclusive_limit`
//! inconclusive ones), HTTP smoke checks, a soak time and an owner's
//! sign-off. Pure: templating, validation and verdicts; the engine runs
//! the plan.
//!
//! Queries and URLs are templates over the stage's values:
//! `{{namespace}}`, `{{deployment}}`, `{{container}}`, `{{new_hash}}` and
//! `{{old_hash}}` (the pod-template hashes of the new and old pods). Every
//! value is a Kubernetes name or hash — lowercase letters, digits, `-` and
//! `.` — so it can stand in a PromQL label matcher or a URL as it is.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::text::check_single_line;

/// Most gates a stage may have.
pub const MAX_GATES: usize = 10;
/// Most smoke checks a stage may have.
pub const MAX_SMOKE: usize = 5;
/// The longest soak: a day.
pub const MAX_SOAK_SECONDS: u32 = 86_400;

/// What verifies a stage once its new version runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyPlan {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<MetricGate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub smoke: Vec<SmokeCheck>,
    /// The least time the stage stays `verifying`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 86400)]
    pub soak_seconds: Option<u32>,
    /// The stage waits for an owner's "verified".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sign_off: bool,
}

/// A comparison a sample must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Op {
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Below => "<",
            Op::AtMost => "<=",
            Op::Above => ">",
            Op::AtLeast => ">=",
        }
    }

    /// Whether `value` passes `value OP threshold` (NaN never does).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Below => value < threshold,
            Op::AtMost => value <= threshold,
            Op::Above => value > threshold,
            Op::AtLeast => value >= threshold,
        }
    }
}

/// A Prometheus query judged `count` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricGate {
    /// What the gate watches, e.g. `error ratio`.
    #[schema(min_length = 1, max_length = 60)]
    pub name: String,
    /// PromQL, templated (see the module's placeholders).
    #[schema(min_length = 1, max_length = 2000)]
    pub query: String,
    pub op: Op,
    /// Every sample of the result must pass `sample op threshold`.
    pub threshold: f64,
    #[serde(default = "default_interval")]
    #[schema(minimum = 5, maximum = 3600)]
    pub interval_seconds: u32,
    /// Measurements to take.
    #[serde(default = "default_count")]
    #[schema(minimum = 1, maximum = 100)]
    pub count: u32,
    /// Failed measurements tolerated; one more fails the stage.
    #[serde(default)]
    pub failure_limit: u32,
    /// Inconclusive measurements (no data, Prometheus unreachable)
    /// tolerated; one more pauses the stage for a person.
    #[serde(default = "default_inconclusive_limit")]
    pub inconclusive_limit: u32,
}

fn default_interval() -> u32 {
    30
}
fn default_count() -> u32 {
    5
}
fn default_inconclusive_limit() -> u32 {
    1
}

/// An HTTP request whose answer must have the expected status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// http or https, templated.
    #[schema(min_length = 1, max_length = 2000)]
    pub url: String,
    #[serde(default = "default_status")]
    #[schema(minimum = 100, maximum = 599)]
    pub expect_status: u16,
    #[serde(default = "default_timeout")]
    #[schema(minimum = 1, maximum = 60)]
    pub timeout_seconds: u32,
    /// Tries before the check fails.
    #[serde(default = "default_attempts")]
    #[schema(minimum = 1, maximum = 10)]
    pub attempts: u32,
}

fn default_status() -> u16 {
    200
}
fn default_timeout() -> u32 {
    5
}
fn default_attempts() -> u32 {
    3
}

/// The values a template may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub namespace: String,
    pub deployment: String,
    pub container: String,
    pub new_hash: String,
    pub old_hash: String,
}

const PLACEHOLDERS: [&str; 5] = [
    "namespace",
    "deployment",
    "container",
    "new_hash",
    "old_hash",
];

/// `template` with its placeholders replaced by `values`; an unknown or
/// unclosed placeholder is an error naming it.
pub fn fill(template: &str, values: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a '{{' without its '}}'".to_string())?;
        let name = after[..end].trim();
        out.push_str(match name {
            "namespace" => &values.namespace,
            "deployment" => &values.deployment,
            "container" => &values.container,
            "new_hash" => &values.new_hash,
            "old_hash" => &values.old_hash,
            other => {
                return Err(format!(
                    "unknown placeholder {{{{{other}}}}}; use {}",
                    PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
                ));
            }
        });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Values that fill every placeholder, for checking a template on save.
fn sample_values() -> Values {
    Values {
        namespace: "ns".into(),
        deployment: "web".into(),
        container: "app".into(),
        new_hash: "abc123".into(),
        old_hash: "def456".into(),
    }
}

impl VerifyPlan {
    /// What verifies a fast-path deployment to an app: the plans of the
    /// release stages on it as one — every gate and smoke check (each
    /// once) and the longest soak. A sign-off is left out: a deploy from
    /// CI has no owner in the loop to give it. `None` when nothing is left
    /// to check.
    pub fn for_fast_path<'a>(
        plans: impl IntoIterator<Item = &'a VerifyPlan>,
    ) -> Option<VerifyPlan> {
        let mut merged = VerifyPlan::default();
        for plan in plans {
            for gate in &plan.gates {
                if !merged.gates.contains(gate) {
                    merged.gates.push(gate.clone());
                }
            }
            for check in &plan.smoke {
                if !merged.smoke.contains(check) {
                    merged.smoke.push(check.clone());
                }
            }
            merged.soak_seconds = merged
                .soak_seconds
                .max(plan.soak_seconds.filter(|s| *s > 0));
        }
        (!merged.is_empty()).then_some(merged)
    }

    /// What the plan checks, in a line: "2 gates, 1 smoke check, a 60 s
    /// soak".
    pub fn summary(&self) -> String {
        let plural = |n: usize, one: &str| match n {
            1 => format!("1 {one}"),
            n => format!("{n} {one}s"),
        };
        let mut parts = Vec::new();
        if !self.gates.is_empty() {
            parts.push(plural(self.gates.len(), "metric gate"));
        }
        if !self.smoke.is_empty() {
            parts.push(plural(self.smoke.len(), "smoke check"));
        }
        if let Some(soak) = self.soak_seconds.filter(|s| *s > 0) {
            parts.push(format!(
                "a soak of {}",
                crate::domain::text::duration(i64::from(soak) * 1000)
            ));
        }
        if self.sign_off {
            parts.push("an owner's sign-off".into());
        }
        parts.join(", ")
    }

    /// Whether the plan asks for anything.
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
            && self.smoke.is_empty()
            && self.soak_seconds.unwrap_or(0) == 0
            && !self.sign_off
    }

    /// Checks the plan; the error names what is wrong, as a person reads it.
    pub fn validate(&self) -> Result<(), String> {
        if self.gates.len() > MAX_GATES {
            return Err(format!("at most {MAX_GATES} metric gates"));
        }
        if self.smoke.len() > MAX_SMOKE {
            return Err(format!("at most {MAX_SMOKE} smoke checks"));
        }
        if self.soak_seconds.is_some_and(|s| s > MAX_SOAK_SECONDS) {
            return Err(format!(
                "a soak time is at most a day ({MAX_SOAK_SECONDS} s)"
            ));
        }
        for (i, g) in self.gates.iter().enumerate() {
            let n = i + 1;
            let name = g.name.trim();
            if name.is_empty() || name.chars().count() > 60 {
                return Err(format!("gate {n}: a name of 1 to 60 characters"));
            }
            check_single_line("a gate's name", name).map_err(|m| format!("gate {n}: {m}"))?;
            if g.query.trim().is_empty() || g.query.len() > 2000 {
                return Err(format!(
                    "gate {n} ({name}): a query of 1 to 2000 characters"
                ));
            }
            if g.query
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(format!(
                    "gate {n} ({name}): the query has control characters"
                ));
            }
            fill(&g.query, &sample_values()).map_err(|m| format!("gate {n} ({name}): {m}"))?;
            if !g.threshold.is_finite() {
                return Err(format!("gate {n} ({name}): the threshold must be a number"));
            }
            if !(5..=3600).contains(&g.interval_seconds) {
                return Err(format!(
                    "gate {n} ({name}): an interval of 5 to 3600 seconds"
                ));
            }
            if !(1..=100).contains(&g.count) {
                return Err(format!("gate {n} ({name}): 1 to 100 measurements"));
            }
            if g.failure_limit >= g.count {
                return Err(format!(
                    "gate {n} ({name}): the failure limit ({}) must be below the count ({}), or the gate could never fail",
                    g.failure_limit, g.count
                ));
            }
            if g.inconclusive_limit > g.count {
                return Err(format!(
                    "gate {n} ({name}): the inconclusive limit ({}) is above the count ({})",
                    g.inconclusive_limit, g.count
                ));
            }
        }
        for (i, s) in self.smoke.iter().enumerate() {
            let n = i + 1;
            check_single_line("a smoke check's URL", &s.url)
                .map_err(|m| format!("smoke check {n}: {m}"))?;
            let url = fill(s.url.trim(), &sample_values())
                .map_err(|m| format!("smoke check {n}: {m}"))?;
            let parsed =
                url::Url::parse(&url).map_err(|e| format!("smoke check {n}: not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!("smoke check {n}: an http or https URL with a host"));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(format!("smoke check {n}: put no credentials in the URL"));
            }
            if s.url.len() > 2000 {
                return Err(format!("smoke check {n}: a URL of at most 2000 characters"));
            }
            if !(100..=599).contains(&s.expect_status) {
                return Err(format!("smoke check {n}: an expected status of 100 to 599"));
            }
            if !(1..=60).contains(&s.timeout_seconds) {
                return Err(format!("smoke check {n}: a timeout of 1 to 60 seconds"));
            }
            if !(1..=10).contains(&s.attempts) {
                return Err(format!("smoke check {n}: 1 to 10 attempts"));
            }
        }
        Ok(())
    }
}

/// Parses the gates of the stages editor, one per line:
/// `name | query | op threshold [| interval=30s count=5 failures=0 inconclusive=1]`.
/// The query may hold `|` itself (a PromQL regex): the name is up to the
/// first `|`, the condition and the settings are taken from the end.
pub fn parse_gates(text: &str) -> Result<Vec<MetricGate>, String> {
    let mut gates = Vec::new();
    for (n, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() {
            continue;
        }
        let n = n + 1;
        let bad = |why: &str| {
            format!(
                "gate line {n}: {why}; write `name | query | < 0.05` and optionally \
                 `| interval=30s count=5 failures=0 inconclusive=1`"
            )
        };
        let (name, rest) = line.split_once('|').ok_or_else(|| bad("no query"))?;
        let mut parts: Vec<&str> = rest.split('|').collect();
        let mut gate = MetricGate {
            name: name.trim().to_string(),
            query: String::new(),
            op: Op::Below,
            threshold: 0.0,
            interval_seconds: default_interval(),
            count: default_count(),
            failure_limit: 0,
            inconclusive_limit: default_inconclusive_limit(),
        };
        let last = parts.last().map(|p| p.trim()).unwrap_or("");
        if parts.len() > 2 && last.split_whitespace().all(|t| t.contains('=')) {
            for token in last.split_whitespace() {
                let (key, value) = token.split_once('=').unwrap_or((token, ""));
                let number = |v: &str| {
                    v.trim_end_matches('s')
                        .parse::<u32>()
                        .map_err(|_| bad(&format!("'{token}' is not a whole number")))
                };
                match key {
                    "interval" => gate.interval_seconds = number(value)?,
                    "count" => gate.count = number(value)?,
                    "failures" => gate.failure_limit = number(value)?,
                    "inconclusive" => gate.inconclusive_limit = number(value)?,
                    other => return Err(bad(&format!("unknown setting '{other}'"))),
                }
            }
            parts.pop();
        }
        if parts.len() < 2 {
            return Err(bad("no condition"));
        }
        let condition = parts.pop().unwrap_or("").trim();
        let (op, threshold) = ["<=", ">=", "<", ">"]
            .iter()
            .find_map(|op| condition.strip_prefix(op).map(|t| (*op, t.trim())))
            .ok_or_else(|| bad(&format!("'{condition}' is not a condition like '< 0.05'")))?;
        gate.op = match op {
            "<=" => Op::AtMost,
            ">=" => Op::AtLeast,
            ">" => Op::Above,
            _ => Op::Below,
        };
        gate.threshold = threshold
            .parse::<f64>()
            .map_err(|_| bad(&format!("'{threshold}' is not a number")))?;
        gate.query = parts.join("|").trim().to_string();
        gates.push(gate);
    }
    Ok(gates)
}

/// The editor notation of gates (the inverse of [`parse_gates`]).
pub fn format_gates(gates: &[MetricGate]) -> String {
    gates
        .iter()
        .map(|g| {
            format!(
                "{} | {} | {} {} | interval={}s count={} failures={} inconclusive={}",
                g.name,
                g.query.replace('\n', " "),
                g.op.as_str(),
                g.threshold,
                g.interval_seconds,
                g.count,
                g.failure_limit,
                g.inconclusive_limit
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses the smoke checks of the stages editor, one per line:
/// `URL [expect=200] [timeout=5s] [attempts=3]`.
pub fn parse_smoke(text: &str) -> Result<Vec<SmokeCheck>, String> {
    let mut checks = Vec::new();
    for (n, line) in text.lines().map(str::trim).enumerate() {
        let mut tokens = line.split_whitespace();
        let Some(url) = tokens.next() else { continue };
        let mut check = SmokeCheck {
            url: url.to_string(),
            expect_status: default_status(),
            timeout_seconds: default_timeout(),
            attempts: default_attempts(),
        };
        for token in tokens {
            let bad = || {
                format!(
                    "smoke line {}: '{token}'; write `URL expect=200 timeout=5s attempts=3`",
                    n + 1
                )
            };
            let (key, value) = token.split_once('=').ok_or_else(bad)?;
            let value = value.trim_end_matches('s');
            match key {
                "expect" => check.expect_status = value.parse().map_err(|_| bad())?,
                "timeout" => check.timeout_seconds = value.parse().map_err(|_| bad())?,
                "attempts" => check.attempts = value.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        checks.push(check);
    }
    Ok(checks)
}

/// The editor notation of smoke checks (the inverse of [`parse_smoke`]).
pub fn format_smoke(checks: &[SmokeCheck]) -> String {
    checks
        .iter()
        .map(|c| {
            format!(
                "{} expect={} timeout={}s attempts={}",
                c.url, c.expect_status, c.timeout_seconds, c.attempts
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What one measurement of a gate found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// No samples, a value that is not a number, or no answer.
    Inconclusive,
}

impl MetricGate {
    /// Judges one measurement: every sample must pass; none is
    /// inconclusive, not a pass.
    pub fn judge(&self, samples: &[f64]) -> Verdict {
        if samples.is_empty() || samples.iter().any(|v| v.is_nan()) {
            return Verdict::Inconclusive;
        }
        if samples.iter().all(|v| self.op.holds(*v, self.threshold)) {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// The sample furthest on the wrong side of the threshold (the largest
    /// for `<` and `<=`, the smallest for `>` and `>=`): the one a chart
    /// shows and a failure names.
    pub fn worst(&self, samples: &[f64]) -> Option<f64> {
        let numbers = samples.iter().copied().filter(|v| !v.is_nan());
        match self.op {
            Op::Below | Op::AtMost => numbers.reduce(f64::max),
            Op::Above | Op::AtLeast => numbers.reduce(f64::min),
        }
    }

    /// Where the gate stands after `verdicts` (oldest first): passed once
    /// `count` measurements are taken and one of them passed, the first
    /// `forgiven` inconclusive ones not counted at all (a person let the
    /// verification go on past them): neither against its inconclusive
    /// limit nor as measurements taken.
    pub fn standing(&self, verdicts: &[Verdict], forgiven: u32) -> Standing {
        let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count() as u32;
        if count(Verdict::Fail) > self.failure_limit {
            Standing::Failed
        } else if count(Verdict::Inconclusive).saturating_sub(forgiven) > self.inconclusive_limit {
            Standing::Inconclusive
        } else if (verdicts.len() as u32).saturating_sub(forgiven) >= self.count
            // Measurements that could not be judged are taken, up to the
            // limit, but never pass a gate alone.
            && count(Verdict::Pass) > 0
        {
            Standing::Passed
        } else {
            Standing::Measuring
        }
    }
}

/// A measured value for people: up to four significant digits, no
/// trailing zeros ("0.05", "0.2134", "812", "1.5e-5").
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    if !(-4..=9).contains(&magnitude) {
        let text = format!("{v:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim(mantissa.to_string()));
    }
    let decimals = (3 - magnitude).max(0) as usize;
    trim(format!("{v:.decimals$}"))
}

/// Where a gate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// More measurements to take.
    Measuring,
    Passed,
    /// Past its failure limit: the stage fails (and rolls back).
    Failed,
    /// Past its inconclusive limit: the stage waits for a person.
    Inconclusive,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> MetricGate {
        MetricGate {
            name: "error ratio".into(),
            query: r#"sum(rate(http_requests_total{namespace="{{namespace}}",pod_template_hash="{{new_hash}}",code=~"5.."}[1m]))"#.into(),
            op: Op::Below,
            threshold: 0.05,
            interval_seconds: 30,
            count: 5,
            failure_limit: 1,
            inconclusive_limit: 1,
        }
    }

    #[test]
    fn a_fast_path_deploy_checks_every_gate_and_smoke_check_of_the_apps_stages_once_without_a_sign_off()
     {
        let smoke = |url: &str| SmokeCheck {
            url: url.into(),
            expect_status: 200,
            timeout_seconds: 5,
            attempts: 3,
        };
        let mut latency = gate();
        latency.name = "p99".into();
        let dev = VerifyPlan {
            gates: vec![gate()],
            smoke: vec![smoke("http://web/healthz")],
            soak_seconds: Some(30),
            sign_off: true,
        };
        let other = VerifyPlan {
            gates: vec![gate(), latency.clone()],
            smoke: vec![smoke("http://web/healthz"), smoke("http://web/ready")],
            soak_seconds: Some(90),
            sign_off: false,
        };
        let merged = VerifyPlan::for_fast_path([&dev, &other]).unwrap();
        assert_eq!(merged.gates, vec![gate(), latency]);
        assert_eq!(
            merged.smoke,
            vec![smoke("http://web/healthz"), smoke("http://web/ready")]
        );
        assert_eq!(merged.soak_seconds, Some(90));
        assert!(!merged.sign_off);
        assert_eq!(
            merged.summary(),
            "2 metric gates, 2 smoke checks, a soak of 1 min 30 s"
        );
        assert_eq!(
            dev.summary(),
            "1 metric gate, 1 smoke check, a soak of 30 s, an owner's sign-off"
        );
        // A sign-off alone leaves nothing a deploy from CI checks.
        let sign_off_only = VerifyPlan {
            sign_off: true,
            ..VerifyPlan::default()
        };
        assert_eq!(VerifyPlan::for_fast_path([&sign_off_only]), None);
        assert_eq!(VerifyPlan::for_fast_path([]), None);
    }

    #[test]
    fn the_editor_notation_reads_back_what_it_writes() {
        let mut g = gate();
        g.query = r#"sum(rate(x{code=~"500|503"}[1m]))"#.into();
        let text = format_gates(std::slice::from_ref(&g));
        assert_eq!(parse_gates(&text).unwrap(), vec![g.clone()]);
        let short = parse_gates("p99 | histogram_quantile(0.99, x) | <= 0.5").unwrap();
        assert_eq!(
            (
                short[0].op,
                short[0].threshold,
                short[0].count,
                short[0].query.as_str()
            ),
            (Op::AtMost, 0.5, 5, "histogram_quantile(0.99, x)")
        );
        for bad in [
            "no pipes",
            "name | query",
            "n | q | = 1",
            "n | q | < x",
            "n | q | < 1 | colour=red",
        ] {
            assert!(parse_gates(bad).is_err(), "{bad}");
        }
        let checks =
            parse_smoke("http://web.ns.svc/healthz expect=204 timeout=2s\n\nhttps://x/ attempts=1")
                .unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(
            (
                checks[0].expect_status,
                checks[0].timeout_seconds,
                checks[0].attempts
            ),
            (204, 2, 3)
        );
        assert_eq!(parse_smoke(&format_smoke(&checks)).unwrap(), checks);
        assert!(parse_smoke("http://x/ expect").is_err());
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(0.05), "0.05");
        assert_eq!(number(0.213_456), "0.2135");
        assert_eq!(number(812.0), "812");
        assert_eq!(number(0.2), "0.2");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(1234.5678), "1235");
        assert_eq!(number(0.000_015), "1.5e-5");
    }

    #[test]
    fn templates_fill_known_placeholders_and_name_unknown_ones() {
        let values = Values {
            namespace: "prod".into(),
            deployment: "web".into(),
            container: "app".into(),
            new_hash: "7d9f".into(),
            old_hash: "5c2a".into(),
        };
        assert_eq!(
            fill(
                "{{namespace}}/{{ deployment }}:{{new_hash}}-{{old_hash}} {{container}}",
                &values
            )
            .unwrap(),
            "prod/web:7d9f-5c2a app"
        );
        assert!(
            fill("{{pod}}", &values)
                .unwrap_err()
                .contains("unknown placeholder {{pod}}")
        );
        assert!(
            fill("{{namespace", &values)
                .unwrap_err()
                .contains("without its")
        );
        assert_eq!(fill("no placeholders", &values).unwrap(), "no placeholders");
    }

    #[test]
    fn a_measurement_passes_only_when_every_sample_does() {
        let g = gate();
        assert_eq!(g.judge(&[0.01, 0.02]), Verdict::Pass);
        assert_eq!(g.judge(&[0.01, 0.2]), Verdict::Fail);
        assert_eq!(
            g.judge(&[]),
            Verdict::Inconclusive,
            "no data is not success"
        );
        assert_eq!(g.judge(&[f64::NAN]), Verdict::Inconclusive);
        assert!(Op::AtMost.holds(0.05, 0.05) && !Op::Below.holds(0.05, 0.05));
        assert!(Op::AtLeast.holds(1.0, 1.0) && !Op::Above.holds(1.0, 1.0));
    }

    #[test]
    fn a_gate_fails_past_its_failure_limit_and_waits_past_its_inconclusive_limit() {
        use Verdict::*;
        let g = gate();
        assert_eq!(g.standing(&[], 0), Standing::Measuring);
        assert_eq!(
            g.standing(&[Pass, Fail], 0),
            Standing::Measuring,
            "one failure tolerated"
        );
        assert_eq!(
            g.standing(&[Fail, Pass, Fail], 0),
            Standing::Failed,
            "failure_limit + 1"
        );
        assert_eq!(g.standing(&[Inconclusive, Pass], 0), Standing::Measuring);
        assert_eq!(
            g.standing(&[Inconclusive, Inconclusive], 0),
            Standing::Inconclusive
        );
        assert_eq!(
            g.standing(&[Pass, Fail, Pass, Inconclusive, Pass], 0),
            Standing::Passed
        );
        assert_eq!(
            g.standing(&[Fail, Fail, Inconclusive, Inconclusive], 0),
            Standing::Failed,
            "a failure outweighs an inconclusive"
        );
        assert_eq!(
            g.standing(&[Pass, Inconclusive, Inconclusive], 2),
            Standing::Measuring,
            "inconclusives a person let go past no longer count"
        );
        assert_eq!(
            g.standing(&[Inconclusive, Inconclusive, Inconclusive, Inconclusive], 2),
            Standing::Inconclusive,
            "new ones do"
        );
        assert_eq!(
            g.standing(&[Inconclusive, Inconclusive, Pass, Pass, Pass, Pass], 2),
            Standing::Measuring,
            "forgiven ones are not measurements"
        );
        assert_eq!(
            g.standing(
                &[Inconclusive, Inconclusive, Pass, Pass, Pass, Pass, Pass],
                2
            ),
            Standing::Passed
        );
        // Measurements that could not be judged never pass a gate alone.
        let lenient = MetricGate {
            count: 2,
            inconclusive_limit: 3,
            ..gate()
        };
        assert_eq!(
            lenient.standing(&[Inconclusive, Inconclusive], 0),
            Standing::Measuring
        );
        assert_eq!(
            lenient.standing(&[Inconclusive, Inconclusive, Pass], 0),
            Standing::Passed
        );
        assert_eq!(
            lenient.standing(&[Inconclusive; 4], 0),
            Standing::Inconclusive
        );
        assert_eq!(g.worst(&[0.01, 0.3, 0.2]), Some(0.3));
        let floor = MetricGate {
            op: Op::AtLeast,
            ..gate()
        };
        assert_eq!(floor.worst(&[0.9, 0.5, f64::NAN]), Some(0.5));
        assert_eq!(g.worst(&[]), None);
    }

    #[test]
    fn plans_are_checked_as_a_person_reads_them() {
        let ok = VerifyPlan {
            gates: vec![gate()],
            smoke: vec![SmokeCheck {
                url: "http://{{deployment}}.{{namespace}}.svc:8080/healthz".into(),
                expect_status: 200,
                timeout_seconds: 5,
                attempts: 3,
            }],
            soak_seconds: Some(300),
            sign_off: true,
        };
        assert_eq!(ok.validate(), Ok(()));
        assert!(!ok.is_empty());
        assert!(VerifyPlan::default().is_empty());
        let refused = |change: fn(&mut VerifyPlan), says: &str| {
            let mut plan = ok.clone();
            change(&mut plan);
            let message = plan.validate().unwrap_err();
            assert!(message.contains(says), "{message}");
        };
        refused(|p| p.gates[0].failure_limit = 5, "could never fail");
        refused(
            |p| p.gates[0].query = "up{pod=\"{{pod}}\"}".into(),
            "unknown placeholder",
        );
        refused(|p| p.gates[0].threshold = f64::INFINITY, "must be a number");
        refused(|p| p.gates[0].interval_seconds = 1, "5 to 3600");
        refused(|p| p.gates[0].name = " ".into(), "1 to 60");
        refused(
            |p| p.smoke[0].url = "file:///etc/passwd".into(),
            "http or https",
        );
        refused(
            |p| p.smoke[0].url = "http://u:p@web/".into(),
            "no credentials",
        );
        refused(|p| p.smoke[0].attempts = 0, "1 to 10 attempts");
        refused(|p| p.soak_seconds = Some(90_000), "at most a day");
        let json: VerifyPlan = serde_json::from_value(serde_json::json!({
            "gates": [{"name": "p99", "query": "q", "op": "<=", "threshold": 0.5}]
        }))
        .unwrap();
        assert_eq!(
            (
                json.gates[0].interval_seconds,
                json.gates[0].count,
                json.gates[0].inconclusive_limit
            ),
            (30, 5, 1),
            "defaults"
        );
        assert!(serde_json::from_value::<VerifyPlan>(serde_json::json!({"gates": [{"name": "x", "query": "q", "op": "=", "threshold": 1}]})).is_err());
    }
}
