//! Release items and their stages: what a valid stage plan is. Pure; the
//! shell supplies the facts (where each app sits in the tree, how many
//! approvers the item's node has).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::text::check_single_line;
use crate::domain::tree::path_covers;
use crate::domain::verify::VerifyPlan;

/// Most stages an item may have.
pub const MAX_STAGES: usize = 20;
/// Most steps a canary may have.
pub const MAX_STEPS: usize = 20;
/// Shortest overall deadline a stage may have, in minutes.
pub const MIN_DEADLINE_MINUTES: i64 = 1;
/// Longest overall deadline a stage may have, in minutes (a day).
pub const MAX_DEADLINE_MINUTES: i64 = 1440;

/// How a stage rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Update the Deployment's image and wait for it.
    Rolling,
    /// OpenKruise Rollout with steps.
    Canary,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Rolling => "rolling",
            Strategy::Canary => "canary",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rolling" => Ok(Strategy::Rolling),
            "canary" => Ok(Strategy::Canary),
            _ => Err(format!("unknown stage strategy '{s}'")),
        }
    }
}

/// One canary step: a traffic weight or a replica count, then a pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryStep {
    /// Percent of traffic to the new version (1–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Pods of the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Seconds to wait before the next step; absent: wait for an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_seconds: Option<u32>,
}

/// Route requests with this header to the canary before any weight shifts
/// (A/B testing through the app's Ingress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

/// The canary plan of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub steps: Vec<CanaryStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_match: Option<HeaderMatch>,
}

impl Canary {
    /// Whether the canary shifts requests (a header match or a traffic
    /// weight), which needs the app's Service and Ingress to route through;
    /// a plan of replica counts alone needs neither.
    pub fn routes_traffic(&self) -> bool {
        self.header_match.is_some() || self.steps.iter().any(|s| s.weight.is_some())
    }

    /// How many steps the canary's Rollout has: a header match is a step
    /// of its own, before the others.
    pub fn step_count(&self) -> u32 {
        (self.steps.len() + usize::from(self.header_match.is_some())) as u32
    }

    /// The plan's step behind Rollout step `step` (1-based), `None` for the
    /// header step.
    fn planned(&self, step: u32) -> Option<&CanaryStep> {
        let header = usize::from(self.header_match.is_some());
        (step as usize)
            .checked_sub(1 + header)
            .and_then(|i| self.steps.get(i))
    }

    /// Step `step` (1-based) in words: "20% traffic", "2 pods",
    /// "requests with header x-canary: yes".
    pub fn describe_step(&self, step: u32) -> String {
        if let Some(h) = &self.header_match
            && step == 1
        {
            return format!("requests with header {}: {}", h.name, h.value);
        }
        match self.planned(step).map(|s| (s.weight, s.replicas)) {
            Some((Some(w), _)) => format!("{w}% traffic"),
            Some((None, Some(r))) => format!("{r} pod{}", if r == 1 { "" } else { "s" }),
            _ => String::new(),
        }
    }

    /// Where the canary goes from step `step` once it is approved: "step
    /// 3: 50% traffic", or the end after the last step.
    pub fn after(&self, step: u32) -> String {
        if step < self.step_count() {
            format!("step {}: {}", step + 1, self.describe_step(step + 1))
        } else {
            "the end: every pod runs the new version".to_string()
        }
    }

    /// The pause of step `step`: its seconds, or `None` to wait for an
    /// owner's approval (the header step always waits for one).
    pub fn pause_of(&self, step: u32) -> Option<u32> {
        self.planned(step).and_then(|s| s.pause_seconds)
    }
}

/// A stage as submitted: which app, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    pub app_id: i64,
    pub strategy: Strategy,
    /// Required for `canary`, absent for `rolling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Minutes the stage may run in all before it fails (1–1440). Absent
    /// or null: twice the Deployment's progress deadline (20 minutes for
    /// the Kubernetes default of 600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1440)]
    pub deadline_minutes: Option<i64>,
    /// What verifies the stage once its new version runs: metric gates,
    /// smoke checks, a soak time, an owner's sign-off. Absent: the stage
    /// succeeds once the rollout is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyPlan>,
}

/// A problem with a plan: which field (`stages[0].deadline_minutes` for
/// one stage's setting) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub field: Cow<'static, str>,
    pub message: String,
}

fn err(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks a stage's overall deadline: absent (the default) or 1 to 1440
/// minutes. The caller names the stage in front of the message.
pub fn check_deadline_minutes(deadline_minutes: Option<i64>) -> Result<(), String> {
    match deadline_minutes {
        Some(m) if !(MIN_DEADLINE_MINUTES..=MAX_DEADLINE_MINUTES).contains(&m) => Err(format!(
            "the deadline must be {MIN_DEADLINE_MINUTES} to {MAX_DEADLINE_MINUTES} minutes \
             (a day), or empty for twice the Deployment's progress deadline; {m} is not"
        )),
        _ => Ok(()),
    }
}

/// What the shell knows when checking a plan.
pub struct PlanFacts<'a> {
    /// The path of the item's node.
    pub item_path: &'a str,
    /// The tree path of each app the plan names (missing: no such app).
    pub app_paths: &'a dyn Fn(i64) -> Option<String>,
    /// How many effective approvers the item's node has.
    pub approvers: usize,
}

/// Checks the required approvals and the stages of an item.
pub fn validate_plan(
    required_approvals: i64,
    stages: &[StageSpec],
    facts: &PlanFacts<'_>,
) -> Result<(), PlanError> {
    if required_approvals < 1 {
        return Err(err(
            "required_approvals",
            "at least one approval is required",
        ));
    }
    if required_approvals as usize > facts.approvers {
        return Err(err(
            "required_approvals",
            format!(
                "{required_approvals} approvals are required but {} has only {} approver{}",
                facts.item_path,
                facts.approvers,
                if facts.approvers == 1 { "" } else { "s" }
            ),
        ));
    }
    if stages.is_empty() {
        return Err(err("stages", "add at least one stage"));
    }
    if stages.len() > MAX_STAGES {
        return Err(err("stages", format!("at most {MAX_STAGES} stages")));
    }
    let mut names = HashSet::new();
    for (i, stage) in stages.iter().enumerate() {
        let n = i + 1;
        let name = stage.name.trim();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(err(
                "stages",
                format!("stage {n}: give it a name of at most 60 characters"),
            ));
        }
        check_single_line(&format!("stage {n}: the name"), name).map_err(|m| err("stages", m))?;
        if !names.insert(name.to_lowercase()) {
            return Err(err(
                "stages",
                format!("stage {n}: the name '{name}' is used twice"),
            ));
        }
        match (facts.app_paths)(stage.app_id) {
            None => {
                return Err(err(
                    "stages",
                    format!("stage {n} ({name}): app {} does not exist", stage.app_id),
                ));
            }
            // The app's own path is not named: it may sit where the
            // caller may not look.
            Some(path) if !path_covers(&path, facts.item_path) => {
                return Err(err(
                    "stages",
                    format!(
                        "stage {n} ({name}): app {} is outside {} where the item lives; pick an app at or below it",
                        stage.app_id, facts.item_path
                    ),
                ));
            }
            Some(_) => {}
        }
        check_deadline_minutes(stage.deadline_minutes).map_err(|m| {
            err(
                format!("stages[{i}].deadline_minutes"),
                format!("stage {n} ({name}): {m}"),
            )
        })?;
        match (stage.strategy, &stage.canary) {
            (Strategy::Rolling, Some(_)) => {
                return Err(err(
                    "stages",
                    format!("stage {n} ({name}): a rolling stage has no canary steps"),
                ));
            }
            (Strategy::Rolling, None) => {}
            (Strategy::Canary, None) => {
                return Err(err(
                    "stages",
                    format!("stage {n} ({name}): a canary stage needs steps"),
                ));
            }
            (Strategy::Canary, Some(canary)) => {
                validate_canary(canary)
                    .map_err(|m| err("stages", format!("stage {n} ({name}): {m}")))?;
            }
        }
        if let Some(plan) = &stage.verify {
            plan.validate().map_err(|m| {
                err(
                    format!("stages[{i}].verify"),
                    format!("stage {n} ({name}): {m}"),
                )
            })?;
        }
    }
    Ok(())
}

fn validate_canary(canary: &Canary) -> Result<(), String> {
    if canary.steps.is_empty() {
        return Err("a canary needs at least one step".into());
    }
    if canary.steps.len() > MAX_STEPS {
        return Err(format!("at most {MAX_STEPS} steps"));
    }
    let mut last_weight = 0;
    let mut last_replicas = 0;
    for (i, step) in canary.steps.iter().enumerate() {
        let s = i + 1;
        match (step.weight, step.replicas) {
            (None, None) => return Err(format!("step {s} needs a weight or a replica count")),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "step {s} has both a weight and a replica count; pick one"
                ));
            }
            (Some(w), None) => {
                if w == 0 || w > 100 {
                    return Err(format!("step {s}: weight {w}% is not between 1 and 100"));
                }
                if w <= last_weight {
                    return Err(format!(
                        "step {s}: weights must increase ({w}% after {last_weight}%)"
                    ));
                }
                last_weight = w;
            }
            (None, Some(r)) => {
                if r == 0 {
                    return Err(format!("step {s}: replicas must be at least 1"));
                }
                if r <= last_replicas {
                    return Err(format!(
                        "step {s}: replica counts must increase ({r} after {last_replicas})"
                    ));
                }
                last_replicas = r;
            }
        }
        if step.pause_seconds.is_some_and(|p| p > 86_400) {
            return Err(format!("step {s}: a pause is at most a day (86400 s)"));
        }
    }
    if let Some(h) = &canary.header_match {
        let valid_name = !h.name.is_empty()
            && h.name.len() <= 100
            && h.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(format!("'{}' is not an HTTP header name", h.name));
        }
        if h.value.trim().is_empty() || h.value.len() > 200 {
            return Err("the header value must be 1 to 200 characters".into());
        }
        check_single_line("the header value", &h.value)?;
    }
    Ok(())
}

/// Parses the step notation of the stages editor: steps separated by
/// commas, each `N%` or `N replicas` (`Nr`), optionally followed by
/// `:manual` (the default) or `:Ss` for a timed pause. Example:
/// `10%, 50%:300s, 100%`.
pub fn parse_steps(text: &str) -> Result<Vec<CanaryStep>, String> {
    let mut steps = Vec::new();
    for raw in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (amount, pause) = match raw.split_once(':') {
            Some((a, p)) => (a.trim(), Some(p.trim())),
            None => (raw, None),
        };
        let pause_seconds = match pause {
            None | Some("manual") | Some("") => None,
            Some(p) => Some(
                p.strip_suffix('s')
                    .unwrap_or(p)
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| {
                        format!("'{raw}': the pause must be 'manual' or seconds like '60s'")
                    })?,
            ),
        };
        let (weight, replicas) = if let Some(w) = amount.strip_suffix('%') {
            (
                Some(
                    w.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("'{raw}': '{w}' is not a number"))?,
                ),
                None,
            )
        } else {
            let r = amount
                .strip_suffix("replicas")
                .or_else(|| amount.strip_suffix("replica"))
                .or_else(|| amount.strip_suffix('r'))
                .ok_or_else(|| {
                    format!("'{raw}': write a weight like '20%' or replicas like '2r'")
                })?;
            (
                None,
                Some(
                    r.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("'{raw}': '{}' is not a number", r.trim()))?,
                ),
            )
        };
        steps.push(CanaryStep {
            weight,
            replicas,
            pause_seconds,
        });
    }
    Ok(steps)
}

/// The editor notation of steps (the inverse of [`parse_steps`]).
pub fn format_steps(steps: &[CanaryStep]) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match (step.weight, step.replicas) {
            (Some(w), _) => {
                let _ = write!(out, "{w}%");
            }
            (None, Some(r)) => {
                let _ = write!(out, "{r}r");
            }
            (None, None) => {}
        }
        if let Some(p) = step.pause_seconds {
            let _ = write!(out, ":{p}s");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_described_as_a_person_reads_them() {
        let plan = Canary {
            steps: vec![
                CanaryStep {
                    weight: None,
                    replicas: Some(1),
                    pause_seconds: None,
                },
                CanaryStep {
                    weight: Some(20),
                    replicas: None,
                    pause_seconds: Some(60),
                },
            ],
            header_match: Some(HeaderMatch {
                name: "x-canary".into(),
                value: "yes".into(),
            }),
        };
        assert_eq!(plan.describe_step(1), "requests with header x-canary: yes");
        assert_eq!(plan.describe_step(2), "1 pod");
        assert_eq!(plan.describe_step(3), "20% traffic");
        assert_eq!(plan.pause_of(1), None);
        assert_eq!(plan.pause_of(3), Some(60));
        assert_eq!(plan.step_count(), 3);
        assert_eq!(plan.after(2), "step 3: 20% traffic");
        assert_eq!(plan.after(3), "the end: every pod runs the new version");
        assert_eq!(plan.describe_step(4), "");
    }

    fn steps(text: &str) -> Vec<CanaryStep> {
        parse_steps(text).unwrap()
    }

    fn canary_stage(text: &str) -> StageSpec {
        StageSpec {
            name: "prod".into(),
            app_id: 1,
            strategy: Strategy::Canary,
            canary: Some(Canary {
                steps: steps(text),
                header_match: None,
            }),
            deadline_minutes: None,
            verify: None,
        }
    }

    fn rolling(name: &str, app_id: i64) -> StageSpec {
        StageSpec {
            name: name.into(),
            app_id,
            strategy: Strategy::Rolling,
            canary: None,
            deadline_minutes: None,
            verify: None,
        }
    }

    fn check(required: i64, stages: &[StageSpec]) -> Result<(), PlanError> {
        let apps = |id: i64| match id {
            1 => Some("/acme/pay/api".to_string()),
            2 => Some("/acme/pay".to_string()),
            3 => Some("/acme/payroll".to_string()),
            _ => None,
        };
        validate_plan(
            required,
            stages,
            &PlanFacts {
                item_path: "/acme/pay",
                app_paths: &apps,
                approvers: 2,
            },
        )
    }

    #[test]
    fn step_notation_round_trips() {
        let parsed = steps("10%, 50%:300s, 100%:manual");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1].weight, Some(50));
        assert_eq!(parsed[1].pause_seconds, Some(300));
        assert_eq!(parsed[2].pause_seconds, None);
        assert_eq!(format_steps(&parsed), "10%, 50%:300s, 100%");
        assert_eq!(steps("1r, 3 replicas:60")[1].replicas, Some(3));
        for bad in ["ten%", "10", "10%:soon", "x r"] {
            assert!(parse_steps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_are_checked() {
        assert!(check(1, &[rolling("staging", 2), canary_stage("10%, 50%, 100%")]).is_ok());
        let cases: &[(i64, Vec<StageSpec>, &str)] = &[
            (0, vec![rolling("a", 1)], "at least one approval"),
            (3, vec![rolling("a", 1)], "only 2 approvers"),
            (1, vec![], "at least one stage"),
            (1, vec![rolling("a", 3)], "outside /acme/pay"),
            (1, vec![rolling("a", 9)], "does not exist"),
            (1, vec![rolling("a", 1), rolling("A", 2)], "used twice"),
            (1, vec![rolling(" ", 1)], "give it a name"),
            (1, vec![canary_stage("")], "at least one step"),
            (1, vec![canary_stage("50%, 30%")], "weights must increase"),
            (1, vec![canary_stage("50%, 150%")], "not between 1 and 100"),
            (1, vec![canary_stage("0%")], "not between 1 and 100"),
            (
                1,
                vec![canary_stage("2r, 2r")],
                "replica counts must increase",
            ),
            (1, vec![canary_stage("10%:90000s")], "at most a day"),
        ];
        for (required, stages, expected) in cases {
            let e = check(*required, stages).unwrap_err();
            assert!(
                e.message.contains(expected),
                "{expected}: got {}",
                e.message
            );
        }
        let mut no_plan = canary_stage("10%");
        no_plan.canary = None;
        assert!(
            check(1, &[no_plan])
                .unwrap_err()
                .message
                .contains("needs steps")
        );
        let mut rolling_with_steps = rolling("a", 1);
        rolling_with_steps.canary = Some(Canary {
            steps: steps("10%"),
            header_match: None,
        });
        assert!(check(1, &[rolling_with_steps]).is_err());
        let mut header = canary_stage("10%");
        header.canary.as_mut().unwrap().header_match = Some(HeaderMatch {
            name: "x canary".into(),
            value: "1".into(),
        });
        assert!(
            check(1, &[header])
                .unwrap_err()
                .message
                .contains("header name")
        );
    }

    #[test]
    fn stage_deadlines_are_a_minute_to_a_day_or_the_default() {
        for fine in [None, Some(1), Some(20), Some(1440)] {
            let mut stage = canary_stage("10%");
            stage.deadline_minutes = fine;
            assert!(check(1, &[stage]).is_ok(), "{fine:?}");
        }
        for wrong in [0, -5, 1441, i64::MAX] {
            let mut second = rolling("prod", 2);
            second.deadline_minutes = Some(wrong);
            let e = check(1, &[rolling("staging", 1), second]).unwrap_err();
            assert_eq!(e.field, "stages[1].deadline_minutes", "{wrong}");
            assert!(
                e.message.starts_with("stage 2 (prod): ")
                    && e.message.contains("1 to 1440 minutes")
                    && e.message.contains(&format!("{wrong} is not")),
                "{}",
                e.message
            );
        }
        assert!(check_deadline_minutes(Some(MAX_DEADLINE_MINUTES + 1)).is_err());
        assert!(check_deadline_minutes(Some(MIN_DEADLINE_MINUTES - 1)).is_err());
    }
}
