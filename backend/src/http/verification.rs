//! A stage's verification on the work order page: each metric gate with
//! its condition, a small chart of its measurements (server-drawn SVG: the
//! threshold as a dashed line, a dot per measurement coloured by its
//! verdict, inconclusive ones as hollow dots on the floor) and the verdict
//! of each; each smoke check's attempts with status and time; the soak
//! time; the sign-off; and the buttons a person needs (Sign off; Continue
//! when a gate could not be judged).

use std::fmt::Write as _;

use super::Moment;
use crate::db::work_order_views::{StageRun, VerifyResult};
use crate::domain::release_item::Strategy;
use crate::domain::text::duration;
use crate::domain::verify::{MetricGate, number};
use crate::domain::work_order::StageStatus;

/// The verification of one stage.
pub struct VerifyCard {
    pub position: i64,
    pub name: String,
    /// Where the verification is, in a line.
    pub standing: String,
    pub gates: Vec<GateRow>,
    pub smoke: Vec<SmokeRow>,
    /// "at least 5 min (until …)", empty without a soak time.
    pub soak: String,
    /// "" (no sign-off asked), "waiting for an owner", "signed off …".
    pub sign_off: String,
    /// The viewer may sign off now.
    pub may_sign_off: bool,
    /// The viewer may let it go on past an inconclusive gate now.
    pub may_go_on: bool,
}

pub struct GateRow {
    pub name: String,
    /// `query < 0.05, every 30 s × 5, fails past 1, undecided past 1`.
    pub rule: String,
    pub query: String,
    /// The last query measured, filled in, on the cluster's Prometheus
    /// (its graph page); none before a measurement or without one.
    pub link: Option<String>,
    /// The chart, as SVG markup made here from numbers (render `|safe`).
    pub chart: String,
    pub measurements: Vec<Measurement>,
}

pub struct Measurement {
    /// "step 2 · #1" at a canary step, "#1" after the rollout.
    pub label: String,
    pub seq: i64,
    pub verdict: String,
    pub detail: String,
    pub at: Moment,
}

pub struct SmokeRow {
    pub url: String,
    pub expect: u16,
    pub attempts: Vec<Measurement>,
}

/// `query` on the graph page of the Prometheus at `base` (the classic
/// `/graph` path, which Prometheus 3 forwards to its new one), the last
/// hour.
pub fn graph_link(base: &str, query: &str) -> String {
    let expr: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!(
        "{}/graph?g0.expr={expr}&g0.tab=0&g0.range_input=1h",
        base.trim_end_matches('/')
    )
}

/// The cards of every stage with a verification plan; `prometheus` is the
/// Prometheus URL of a cluster, by id.
pub fn verify_cards(
    runs: &[StageRun],
    results: &[VerifyResult],
    prometheus: impl Fn(i64) -> Option<String>,
    order_open: bool,
    may_sign_off: impl Fn(u32) -> bool,
    may_go_on: impl Fn(u32) -> bool,
) -> Vec<VerifyCard> {
    runs.iter()
        .filter_map(|run| {
            let plan = run.verify.as_ref().filter(|p| !p.is_empty())?;
            // A canary's gates are measured at each step; everything else
            // after the rollout (step 0).
            let mine: Vec<&VerifyResult> = results
                .iter()
                .filter(|r| r.position == run.position)
                .collect();
            let of = |kind: &str, index: usize| -> Vec<&VerifyResult> {
                mine.iter()
                    .copied()
                    .filter(|r| r.check_kind == kind && r.check_index == index as i64)
                    .collect()
            };
            let gates = plan
                .gates
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let taken = of("gate", i);
                    GateRow {
                        name: g.name.clone(),
                        rule: format!(
                            "{} {}, every {} × {}; fails past {} failed, asks a person past {} undecided",
                            g.op.as_str(),
                            number(g.threshold),
                            duration(i64::from(g.interval_seconds) * 1000),
                            g.count,
                            g.failure_limit,
                            g.inconclusive_limit
                        ),
                        query: g.query.clone(),
                        link: taken
                            .iter()
                            .rev()
                            .find(|r| !r.asked.is_empty())
                            .zip(prometheus(run.location.cluster_id))
                            .map(|(r, base)| graph_link(&base, &r.asked)),
                        chart: chart(g, &taken),
                        measurements: rows(&taken),
                    }
                })
                .collect();
            let smoke = plan
                .smoke
                .iter()
                .enumerate()
                .map(|(i, s)| SmokeRow {
                    url: s.url.clone(),
                    expect: s.expect_status,
                    attempts: rows(&of("smoke", i)),
                })
                .collect();
            let started = run.verify_started_at;
            let soak = match (plan.soak_seconds.filter(|s| *s > 0), started) {
                (Some(s), Some(at)) => format!(
                    "at least {} (until {})",
                    duration(i64::from(s) * 1000),
                    Moment::at(at + i64::from(s) * 1000).exact()
                ),
                (Some(s), None) => format!("at least {}", duration(i64::from(s) * 1000)),
                (None, _) => String::new(),
            };
            let sign_off = match (plan.sign_off, run.signed_off_at) {
                (false, _) => String::new(),
                (true, Some(at)) => format!("signed off {}", Moment::at(at).exact()),
                (true, None) => "waits for an owner's sign-off".to_string(),
            };
            let gated_steps = run.strategy == Strategy::Canary && !plan.gates.is_empty();
            let standing = match (run.status, started) {
                (StageStatus::Pending, _) if !order_open => "not run".to_string(),
                (StageStatus::Deploying | StageStatus::Paused, None) if gated_steps => {
                    "gates are measured at each canary step before it pauses".to_string()
                }
                (_, None) if run.status == StageStatus::Pending => {
                    "starts once the rollout is available".to_string()
                }
                (StageStatus::Deploying | StageStatus::Verifying, None) => {
                    "starts once the rollout is available".to_string()
                }
                (StageStatus::Verifying, Some(_)) => "verifying".to_string(),
                (StageStatus::Paused, Some(_)) => {
                    "paused: a gate could not be judged; an owner continues or rolls back".to_string()
                }
                (StageStatus::Succeeded, Some(_)) => "verified".to_string(),
                (StageStatus::Failed | StageStatus::RollingBack | StageStatus::RolledBack, Some(_)) => {
                    "did not pass".to_string()
                }
                _ => "did not start".to_string(),
            };
            Some(VerifyCard {
                position: run.position,
                name: run.name.clone(),
                standing,
                gates,
                smoke,
                soak,
                sign_off,
                may_sign_off: may_sign_off(run.position as u32),
                may_go_on: may_go_on(run.position as u32),
            })
        })
        .collect()
}

fn rows(results: &[&VerifyResult]) -> Vec<Measurement> {
    results
        .iter()
        .map(|r| Measurement {
            label: if r.step > 0 {
                format!("step {} · #{}", r.step, r.seq)
            } else {
                format!("#{}", r.seq)
            },
            seq: r.seq,
            verdict: r.verdict.clone(),
            detail: r.detail.clone(),
            at: Moment::at(r.at),
        })
        .collect()
}

/// Chart size, in SVG units.
const WIDTH: f64 = 240.0;
const HEIGHT: f64 = 64.0;
const PAD: f64 = 6.0;

/// The chart of a gate's measurements: x is the measurement's place in
/// order (1 to the gate's count, or further when a canary measured it at
/// several steps), y its worst sample, from 0 to a little above the larger
/// of the threshold and every value.
fn chart(gate: &MetricGate, taken: &[&VerifyResult]) -> String {
    let values = taken.iter().filter_map(|r| r.value);
    let top = values
        .clone()
        .chain([gate.threshold])
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.25;
    let bottom = values.chain([gate.threshold]).fold(0.0_f64, f64::min);
    let span = (top - bottom).max(f64::MIN_POSITIVE);
    let count = gate.count.max(taken.len() as u32).max(2);
    let x = |place: usize| PAD + place as f64 * (WIDTH - 2.0 * PAD) / f64::from(count - 1);
    let y = |v: f64| HEIGHT - PAD - (v - bottom) / span * (HEIGHT - 2.0 * PAD);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="gate-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{} measurements of {}">"#,
        taken.len(),
        gate.count
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{PAD}" y1="{b:.1}" x2="{w:.1}" y2="{b:.1}"/>"#,
        b = HEIGHT - PAD,
        w = WIDTH - PAD
    );
    let t = y(gate.threshold);
    let _ = write!(
        svg,
        r#"<line class="threshold" x1="{PAD}" y1="{t:.1}" x2="{w:.1}" y2="{t:.1}"><title>threshold {} {}</title></line>"#,
        html_escape(gate.op.as_str()),
        number(gate.threshold),
        w = WIDTH - PAD
    );
    let points: Vec<String> = taken
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.value.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect();
    if points.len() > 1 {
        let _ = write!(
            svg,
            r#"<polyline class="trend" points="{}"/>"#,
            points.join(" ")
        );
    }
    for (i, r) in taken.iter().enumerate() {
        let (cy, class) = match (r.value, r.verdict.as_str()) {
            (Some(v), "fail") => (y(v), "fail"),
            (Some(v), "pass") => (y(v), "pass"),
            _ => (HEIGHT - PAD, "inconclusive"),
        };
        let _ = write!(
            svg,
            r#"<circle class="{class}" cx="{:.1}" cy="{cy:.1}" r="3.5"><title>{}#{} {}: {}</title></circle>"#,
            x(i),
            if r.step > 0 {
                format!("step {} ", r.step)
            } else {
                String::new()
            },
            r.seq,
            class,
            html_escape(&r.detail)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `text` safe inside SVG markup.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::verify::Op;

    fn result(seq: i64, verdict: &str, value: Option<f64>, detail: &str) -> VerifyResult {
        VerifyResult {
            position: 1,
            step: 0,
            check_kind: "gate".into(),
            check_index: 0,
            seq,
            at: 1,
            verdict: verdict.into(),
            value,
            detail: detail.into(),
            asked: format!("errors{{seq=\"{seq}\"}}"),
        }
    }

    #[test]
    fn a_query_link_opens_the_filled_query_on_the_graph_page() {
        assert_eq!(
            graph_link(
                "https://prom.example/sub/",
                "sum(rate(x{ns=\"shop\"}[1m])) > 0 & 1"
            ),
            "https://prom.example/sub/graph?g0.expr=sum%28rate%28x%7Bns%3D%22shop%22%7D%5B1m%5D%29%29+%3E+0+%26+1&g0.tab=0&g0.range_input=1h"
        );
    }

    #[test]
    fn a_chart_draws_the_threshold_and_a_dot_per_measurement_with_its_verdict() {
        let gate = MetricGate {
            name: "errors".into(),
            query: "q".into(),
            op: Op::Below,
            threshold: 0.05,
            interval_seconds: 5,
            count: 3,
            failure_limit: 1,
            inconclusive_limit: 1,
        };
        let taken = [
            result(1, "pass", Some(0.01), "0.01 < 0.05"),
            result(2, "fail", Some(0.2), "0.2 is not < 0.05 <script>"),
            result(3, "inconclusive", None, "no data"),
        ];
        let refs: Vec<&VerifyResult> = taken.iter().collect();
        let svg = chart(&gate, &refs);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("<title>threshold &lt; 0.05</title>"));
        assert!(svg.contains(r#"<circle class="fail""#));
        assert!(svg.contains(r#"<circle class="inconclusive""#));
        assert!(!svg.contains("<script>"), "details are escaped");
        // The failing dot sits above the threshold line (smaller y).
        let y_of = |class: &str| -> f64 {
            let at = svg.find(&format!(r#"<circle class="{class}""#)).unwrap();
            let cy = &svg[at..];
            let start = cy.find("cy=\"").unwrap() + 4;
            cy[start..start + cy[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        };
        let threshold_at = svg.find(r#"class="threshold""#).unwrap();
        let t = &svg[threshold_at..];
        let start = t.find("y1=\"").unwrap() + 4;
        let threshold_y: f64 = t[start..start + t[start..].find('"').unwrap()]
            .parse()
            .unwrap();
        assert!(y_of("fail") < threshold_y && y_of("pass") > threshold_y);
    }
}
