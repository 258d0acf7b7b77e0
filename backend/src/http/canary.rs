//! A canary stage's steps on the work order page: what each step does, how
//! it goes on (an owner's approval or its own time), where the stage is
//! now, who let each step go on and when, and the button that approves the
//! step it is paused at.

use std::collections::HashMap;

use super::Moment;
use crate::db::work_order_views::{StageRun, TimelineEvent};
use crate::domain::work_order::StageStatus;

/// The steps of one canary stage.
pub struct CanarySteps {
    pub position: i64,
    pub name: String,
    pub steps: Vec<StepRow>,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// The stage went on from it.
    Done,
    /// The stage waits at it now.
    Paused,
    /// The stage is past its last pause and on its way through this step
    /// (or a later one with no pause of its own).
    Going,
    /// Not reached yet.
    Ahead,
    /// The stage ended (failed or rolled back) while paused at it.
    Stopped,
    /// The stage ended (failed or rolled back) before it.
    NotReached,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::Paused => "paused",
            StepState::Going => "going",
            StepState::Ahead => "ahead",
            StepState::Stopped => "stopped",
            StepState::NotReached => "not_reached",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::Paused => "paused here",
            StepState::Going => "in progress",
            StepState::Ahead => "to come",
            StepState::Stopped => "stopped here",
            StepState::NotReached => "not reached",
        }
    }
}

/// One step of a canary stage.
pub struct StepRow {
    pub number: u32,
    /// "25% traffic", "2 pods", "requests with header x-canary: yes".
    pub what: String,
    /// "an owner approves", "goes on after 60 s".
    pub how: String,
    pub state: StepState,
    /// Who let the stage go on from this step ("by itself" for a pause
    /// that ended), and when.
    pub went_on: Option<(String, Moment)>,
    /// The viewer may approve this step now.
    pub approve: bool,
    /// What the approve button asks before it posts.
    pub question: String,
}

/// The step a step note is about: "step 2" (an approval) or "step 2 went
/// on …" (a pause that ended by itself).
fn step_of(note: &str) -> Option<u32> {
    let rest = note.strip_prefix("step ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The steps of every canary stage of an order, from its stage runs and
/// timeline; `may_approve(stage, step)` says whether the viewer may
/// approve a step now.
pub fn canary_steps(
    runs: &[StageRun],
    timeline: &[TimelineEvent],
    may_approve: impl Fn(u32, u32) -> bool,
) -> Vec<CanarySteps> {
    runs.iter()
        .filter_map(|run| {
            let plan = run.canary.as_ref()?;
            let of = plan.step_count();
            let mut went_on: HashMap<u32, (String, Moment)> = HashMap::new();
            for e in timeline
                .iter()
                .filter(|e| e.stage_position == Some(run.position))
            {
                let who = match e.kind.as_str() {
                    "step_approved" => format!("approved by {}", e.actor),
                    "stage_resumed" if e.message.contains("gates passed") => {
                        "went on once its gates passed".to_string()
                    }
                    "stage_resumed" => "went on by itself".to_string(),
                    _ => continue,
                };
                if let Some(step) = step_of(&e.message) {
                    went_on.insert(step, (who, Moment::at(e.at)));
                }
            }
            let left_last = run
                .paused_step
                .is_some_and(|last| went_on.contains_key(&last));
            // A stage rolled back after it succeeded, or whose verification
            // started, went through every step.
            let status = match (run.status, run.rollback_from) {
                _ if run.verify_started_at.is_some() => StageStatus::Succeeded,
                (
                    StageStatus::RollingBack | StageStatus::RolledBack,
                    Some(StageStatus::Succeeded),
                ) => StageStatus::Succeeded,
                (status, _) => status,
            };
            let steps = (1..=of)
                .map(|number| {
                    let state = state_of(status, run.paused_step, left_last, number);
                    StepRow {
                        number,
                        what: plan.describe_step(number),
                        how: match plan.pause_of(number) {
                            Some(0) => "goes straight on".to_string(),
                            Some(seconds) => format!("goes on after {seconds} s"),
                            None => "an owner approves".to_string(),
                        },
                        state,
                        went_on: went_on.remove(&number),
                        approve: state == StepState::Paused
                            && may_approve(run.position as u32, number),
                        question: format!(
                            "Approve step {number} of stage {} ({})? The canary goes on to {}.",
                            run.position,
                            run.name,
                            plan.after(number)
                        ),
                    }
                })
                .collect();
            Some(CanarySteps {
                position: run.position,
                name: run.name.clone(),
                steps,
            })
        })
        .collect()
}

/// Where step `n` stands for a stage in `status`, last paused at `paused`
/// (the step it waits at while paused; `left_last`: it went on from it).
fn state_of(status: StageStatus, paused: Option<u32>, left_last: bool, n: u32) -> StepState {
    let last = paused.unwrap_or(0);
    let ended = matches!(
        status,
        StageStatus::Failed | StageStatus::RollingBack | StageStatus::RolledBack
    );
    match status {
        StageStatus::Pending => StepState::Ahead,
        StageStatus::Paused if n < last => StepState::Done,
        StageStatus::Paused if n == last => StepState::Paused,
        StageStatus::Paused => StepState::Ahead,
        StageStatus::Deploying if n <= last => StepState::Done,
        StageStatus::Deploying if n == last + 1 => StepState::Going,
        StageStatus::Deploying => StepState::Ahead,
        StageStatus::Verifying | StageStatus::Succeeded => StepState::Done,
        _ if ended && (n < last || (n == last && left_last)) => StepState::Done,
        _ if ended && n == last => StepState::Stopped,
        _ => StepState::NotReached,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_notes_name_their_step() {
        assert_eq!(step_of("step 2"), Some(2));
        assert_eq!(
            step_of("step 12 went on without an approval through Rollway (its pause ended)"),
            Some(12)
        );
        assert_eq!(step_of("paused at step 2"), None);
        assert_eq!(step_of("step x"), None);
    }

    #[test]
    fn steps_stand_where_the_stage_is() {
        use StageStatus as S;
        use StepState::*;
        let row = |status, paused| -> Vec<StepState> {
            (1..=3).map(|n| state_of(status, paused, true, n)).collect()
        };
        assert_eq!(row(S::Pending, None), [Ahead, Ahead, Ahead]);
        assert_eq!(row(S::Deploying, None), [Going, Ahead, Ahead]);
        assert_eq!(row(S::Paused, Some(2)), [Done, Paused, Ahead]);
        assert_eq!(row(S::Deploying, Some(2)), [Done, Done, Going]);
        assert_eq!(row(S::Verifying, Some(2)), [Done, Done, Done]);
        assert_eq!(row(S::Succeeded, None), [Done, Done, Done]);
        assert_eq!(row(S::RolledBack, Some(2)), [Done, Done, NotReached]);
        assert_eq!(row(S::Failed, None), [NotReached, NotReached, NotReached]);
        let stopped: Vec<StepState> = (1..=3)
            .map(|n| state_of(S::RolledBack, Some(2), false, n))
            .collect();
        assert_eq!(
            stopped,
            [Done, Stopped, NotReached],
            "rolled back at a pause"
        );
    }
}
