//! THE work order state machine. Pure: it takes the current state, a
//! command and the facts about the actor, and returns the transition to
//! persist or a refusal with its reason. The shell (`db::work_orders`)
//! loads the facts, calls [`decide`], and writes the new state together
//! with the timeline event in one transaction. Nothing else decides whether
//! a work order may change.
//!
//! ```text
//! pending_approval --approve (enough approvals)--> approved --deploy stage 1--> in_progress
//! pending_approval --reject (with a reason)--> rejected
//! in_progress: each stage run: pending -> deploying -> verifying -> succeeded | failed
//!              a canary stage: deploying <-> paused (at step N; an owner's
//!              approve-step, or the end of a timed pause, moves it on)
//!              succeeded | failed --rollback--> rolling_back -> rolled_back | failed
//! all stages succeeded --> succeeded ; any stage failed --> failed
//! a rollback finished --> rolled_back (no stage runs the new version)
//!                       | partially_rolled_back (some stage still does)
//!                       | failed (another stage failed and still needs a decision)
//! any open state --close--> closed (refused while a stage is mid-rollout)
//! ```
//!
//! People send [`Command::Deploy`] and [`Command::Rollback`]; the engine
//! reports what Kubernetes did with [`Command::Report`]. A stage that fails
//! with the item's "roll back automatically" on goes straight from
//! `deploying` to `rolling_back`, and the transition asks the shell to queue
//! the rollback job in the same transaction.
//!
//! Open states are `pending_approval`, `approved`, `in_progress` and
//! `failed` (a failed release still needs a decision: roll back or close);
//! `succeeded`, `rolled_back`, `partially_rolled_back`, `rejected` and
//! `closed` are terminal. A finished order's deployed stages can still be
//! rolled back; that moves it between the terminal states `succeeded`,
//! `partially_rolled_back` and `rolled_back`, never back to an open one (a
//! newer order may be open for the item by then).

use std::fmt;
use std::str::FromStr;

use crate::domain::release_item::Strategy;
use crate::domain::text::check_free_form;
use crate::domain::verify::VerifyPlan;

/// Where a work order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    PendingApproval,
    Approved,
    InProgress,
    Succeeded,
    Failed,
    /// Every stage that deployed was rolled back: nothing of the order runs.
    RolledBack,
    /// Some stages were rolled back, others still run the order's version.
    PartiallyRolledBack,
    Rejected,
    Closed,
}

impl State {
    pub const ALL: [State; 9] = [
        State::PendingApproval,
        State::Approved,
        State::InProgress,
        State::Succeeded,
        State::Failed,
        State::RolledBack,
        State::PartiallyRolledBack,
        State::Rejected,
        State::Closed,
    ];

    /// The states that count as open for rule 1 (one open order per item).
    pub const OPEN: [State; 4] = [
        State::PendingApproval,
        State::Approved,
        State::InProgress,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::PendingApproval => "pending_approval",
            State::Approved => "approved",
            State::InProgress => "in_progress",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::RolledBack => "rolled_back",
            State::PartiallyRolledBack => "partially_rolled_back",
            State::Rejected => "rejected",
            State::Closed => "closed",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            State::PendingApproval => "Waiting for approval",
            State::Approved => "Approved",
            State::InProgress => "In progress",
            State::Succeeded => "Succeeded",
            State::Failed => "Failed",
            State::RolledBack => "Rolled back",
            State::PartiallyRolledBack => "Partially rolled back",
            State::Rejected => "Rejected",
            State::Closed => "Closed",
        }
    }

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown work order state '{s}'"))
    }
}

/// Where one stage run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageStatus {
    Pending,
    Deploying,
    Verifying,
    Paused,
    Succeeded,
    Failed,
    RollingBack,
    RolledBack,
}

impl StageStatus {
    pub const ALL: [StageStatus; 8] = [
        StageStatus::Pending,
        StageStatus::Deploying,
        StageStatus::Verifying,
        StageStatus::Paused,
        StageStatus::Succeeded,
        StageStatus::Failed,
        StageStatus::RollingBack,
        StageStatus::RolledBack,
    ];

    /// Statuses in which the engine is working on the stage.
    pub const MID_ROLLOUT: [StageStatus; 4] = [
        StageStatus::Deploying,
        StageStatus::Verifying,
        StageStatus::Paused,
        StageStatus::RollingBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Deploying => "deploying",
            StageStatus::Verifying => "verifying",
            StageStatus::Paused => "paused",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Failed => "failed",
            StageStatus::RollingBack => "rolling_back",
            StageStatus::RolledBack => "rolled_back",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            StageStatus::Pending => "Pending",
            StageStatus::Deploying => "Deploying",
            StageStatus::Verifying => "Verifying",
            StageStatus::Paused => "Paused",
            StageStatus::Succeeded => "Succeeded",
            StageStatus::Failed => "Failed",
            StageStatus::RollingBack => "Rolling back",
            StageStatus::RolledBack => "Rolled back",
        }
    }

    pub fn is_mid_rollout(self) -> bool {
        Self::MID_ROLLOUT.contains(&self)
    }
}

impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StageStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown stage status '{s}'"))
    }
}

/// What the engine saw Kubernetes do with a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every new pod is updated; waiting for them to become available.
    Verifying,
    /// The new revision is fully rolled out and available.
    Succeeded,
    /// The rollout failed (progress deadline, missing Deployment, …).
    Failed,
    /// A rollback found the Deployment changed by someone else since the
    /// stage deployed and wrote nothing: the stage returns to where it was.
    Refused,
    /// A canary's Rollout paused at `step` (1-based), for an owner's
    /// approval or for its time.
    Paused { step: u32 },
    /// A canary's Rollout left its pause at `step` without an approval
    /// through Rollway (its time ran out, or someone approved it in the
    /// cluster).
    Resumed { step: u32 },
    /// The stage's verification plan passed.
    Verified,
    /// A gate of the verification plan could not be judged past its
    /// inconclusive limit: a person decides.
    Inconclusive,
}

/// Something someone (or the engine) asks of a work order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Approve {
        comment: String,
    },
    Reject {
        comment: String,
    },
    Close {
        reason: String,
    },
    /// Start stage `stage` (1-based).
    Deploy {
        stage: u32,
    },
    /// Restore what stage `stage` replaced: its container's image, or with
    /// `whole_template` (owners only) the whole pod template it replaced,
    /// changes made by others since included.
    Rollback {
        stage: u32,
        whole_template: bool,
    },
    /// Stop the engine's work on stage `stage` (owners only): the stage
    /// fails with the reason, so it can be rolled back or the order closed.
    Cancel {
        stage: u32,
        reason: String,
    },
    /// The engine's report on the deploy or rollback running for `stage`.
    Report {
        stage: u32,
        outcome: Outcome,
        message: String,
    },
    /// Let canary stage `stage`, paused at `step`, go on (owners only).
    ApproveStep {
        stage: u32,
        step: u32,
    },
    /// An owner's "verified" on stage `stage`, whose plan asks for it.
    SignOff {
        stage: u32,
    },
    /// Let stage `stage`, paused because a gate could not be judged, go
    /// on with its verification (owners only); the inconclusive gate
    /// counts as passed by that person.
    GoOn {
        stage: u32,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Close { .. } => "close",
            Command::Deploy { .. } => "deploy",
            Command::Rollback { .. } => "rollback",
            Command::Cancel { .. } => "cancel",
            Command::Report { .. } => "report",
            Command::ApproveStep { .. } => "approve_step",
            Command::SignOff { .. } => "sign_off",
            Command::GoOn { .. } => "go_on",
        }
    }

    /// The input a person gives with the command: what an
    /// [`RefusalKind::Invalid`] refusal of it is about.
    pub fn input(&self) -> &'static str {
        match self {
            Command::Approve { .. } | Command::Reject { .. } => "comment",
            Command::Close { .. } | Command::Cancel { .. } => "reason",
            Command::Deploy { .. }
            | Command::Rollback { .. }
            | Command::Report { .. }
            | Command::SignOff { .. }
            | Command::GoOn { .. } => "stage",
            Command::ApproveStep { .. } => "step",
        }
    }
}

/// What the shell knows about one stage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageFacts {
    pub status: StageStatus,
    /// The engine wrote to Kubernetes for this stage (it recorded what it
    /// replaced), so there is something to roll back.
    pub deployed: bool,
    /// While rolling back: the status the rollback started from.
    pub rollback_from: Option<StageStatus>,
    /// How the stage rolls out.
    pub strategy: Strategy,
    /// The canary step it last paused at (1-based): where it waits while
    /// paused.
    pub paused_step: Option<u32>,
    /// Its verification plan asks for something (gates, smoke checks, a
    /// soak time or a sign-off).
    pub verifies: bool,
    /// Its verification has started (the rollout was available); a pause
    /// from then on waits for a person's decision, not at a canary step.
    pub verification_started: bool,
    /// Its plan asks for an owner's sign-off, not given yet.
    pub awaits_sign_off: bool,
}

impl StageFacts {
    pub fn new(status: StageStatus, deployed: bool) -> Self {
        Self {
            status,
            deployed,
            rollback_from: None,
            strategy: Strategy::Rolling,
            paused_step: None,
            verifies: false,
            verification_started: false,
            awaits_sign_off: false,
        }
    }

    /// With what the stage's verification `plan` asks for, whether it has
    /// started and whether an owner signed it off.
    pub fn verifying(self, plan: Option<&VerifyPlan>, started: bool, signed_off: bool) -> Self {
        let plan = plan.filter(|p| !p.is_empty());
        Self {
            verifies: plan.is_some(),
            verification_started: started,
            awaits_sign_off: plan.is_some_and(|p| p.sign_off) && !signed_off,
            ..self
        }
    }
}

/// Work the shell queues for the engine in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A rolling stage's deploy.
    Deploy,
    /// A canary stage's deploy through OpenKruise Rollout.
    Canary,
    Rollback,
    /// A stage's verification plan, once its rollout is available.
    Verify,
}

impl JobKind {
    /// Every kind of work the state machine asks for.
    pub const ALL: [JobKind; 4] = [
        JobKind::Deploy,
        JobKind::Canary,
        JobKind::Rollback,
        JobKind::Verify,
    ];

    /// The name of the engine's job kind that does this work (`jobs.kind`).
    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::Deploy => "deploy",
            JobKind::Canary => "canary",
            JobKind::Rollback => "rollback",
            JobKind::Verify => "verify",
        }
    }

    /// The deploy of a stage of `strategy`.
    pub const fn deploy(strategy: Strategy) -> JobKind {
        match strategy {
            Strategy::Rolling => JobKind::Deploy,
            Strategy::Canary => JobKind::Canary,
        }
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deploy" => Ok(JobKind::Deploy),
            "canary" => Ok(JobKind::Canary),
            "rollback" => Ok(JobKind::Rollback),
            "verify" => Ok(JobKind::Verify),
            _ => Err(format!("unknown job kind '{s}'")),
        }
    }
}

/// A stage run's change of status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageChange {
    pub position: u32,
    pub from: StageStatus,
    pub to: StageStatus,
    /// The canary step the stage pauses at with the change (none keeps
    /// the step it last paused at).
    pub paused_step: Option<u32>,
    /// What the change records about the stage's verification.
    pub verification: Option<VerifyMark>,
}

/// A moment of a stage's verification the stage run records (with the
/// time of the change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMark {
    /// The rollout is available; the plan starts.
    Started,
    /// An owner signed the stage off.
    SignedOff,
    /// A person let the verification go on past an inconclusive gate.
    WentOn,
}

impl StageChange {
    fn to(position: u32, from: StageStatus, to: StageStatus) -> Self {
        StageChange {
            position,
            from,
            to,
            paused_step: None,
            verification: None,
        }
    }

    fn marking(self, mark: VerifyMark) -> Self {
        StageChange {
            verification: Some(mark),
            ..self
        }
    }
}

/// What the shell knows about the actor and the order when a command
/// arrives.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The actor filed this order.
    pub actor_is_creator: bool,
    /// The actor is one of the effective approvers of the item's node.
    pub actor_is_approver: bool,
    /// The actor may close orders on this item (engineer or owner there,
    /// or admin).
    pub actor_may_close: bool,
    /// The actor approved this order already.
    pub actor_already_approved: bool,
    /// Distinct approvals recorded so far.
    pub approvals: u32,
    /// Approvals the release item requires.
    pub required_approvals: u32,
    /// The actor may start and roll back stages (engineer or owner on
    /// the item's node, or admin).
    pub actor_may_deploy: bool,
    /// The stage runs in order (index 0 is stage 1).
    pub stages: Vec<StageFacts>,
    /// The release item rolls back a failed stage by itself.
    pub auto_rollback: bool,
    /// The actor owns the item's node (an effective approver) or is an
    /// admin: may cancel a stage and restore a whole template.
    pub actor_is_owner: bool,
    /// Pending stages (by position) a freeze window covers now, not
    /// overridden for this order: why each may not start.
    pub frozen: std::collections::BTreeMap<u32, String>,
    /// Stages (by position) a stop of the line covers now: why none of
    /// them may start or go on to a next canary step.
    pub stopped: std::collections::BTreeMap<u32, String>,
}

impl Facts {
    /// A stage is deploying, paused or rolling back.
    pub fn stage_mid_rollout(&self) -> bool {
        self.stages.iter().any(|s| s.status.is_mid_rollout())
    }
}

/// Why a command was refused, and which HTTP status says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 403: the actor may not do this.
    NotAllowed,
    /// 409: not in this state (or not again).
    Conflict,
    /// 409 `frozen`: a freeze window covers the stage.
    Frozen,
    /// 409 `line_stopped`: the line is stopped above the stage.
    LineStopped,
    /// 422: the command itself is incomplete.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

/// A refusal of one command, with the input of that command at fault when
/// the command itself is incomplete ([`RefusalKind::Invalid`]). The edge
/// (`flows::work_orders`) turns it into the error people see, so the shell
/// can pass it on with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `comment`, `reason` or `stage`.
    pub input: &'static str,
    pub refusal: Refusal,
}

/// A refusal of the state machine as the error people see: 403 when the
/// actor may not, 409 when the order's state does not allow it, 422 naming
/// the command's input when the command is incomplete. Flows pass
/// refusals on with `?` through this; the shell carries them as
/// `db::error::Error::Refused`.
impl From<Refused> for crate::error::Error {
    fn from(refused: Refused) -> Self {
        let Refused {
            input,
            refusal: Refusal { kind, reason },
        } = refused;
        match kind {
            RefusalKind::NotAllowed => crate::error::Error::Forbidden(reason),
            RefusalKind::Conflict => crate::error::Error::Conflict(reason),
            RefusalKind::Frozen => crate::error::Error::Frozen(reason),
            RefusalKind::LineStopped => crate::error::Error::LineStopped(reason),
            RefusalKind::Invalid => crate::error::Error::validation(input, reason),
        }
    }
}

/// `refusal` of `command`, naming the command's input.
pub fn refusal(command: &Command, refusal: Refusal) -> Refused {
    Refused {
        input: command.input(),
        refusal,
    }
}

fn refuse(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
    Refusal {
        kind,
        reason: reason.into(),
    }
}

/// What happens to the order; the shell records it with a timeline event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Timeline event kind, e.g. `approved`, `approval_recorded`.
    pub event: &'static str,
    /// Whether the shell records an approval row for the actor.
    pub records_approval: bool,
    /// The comment or reason given, for the timeline.
    pub note: String,
    /// The stage run that changes with the order, if any.
    pub stage: Option<StageChange>,
    /// Work to queue for the engine.
    pub job: Option<JobKind>,
    /// The engine's queued work on the stage ends (cancelled).
    pub cancels_job: bool,
    /// A second timeline event (e.g. `rollback_started` after an automatic
    /// rollback, `succeeded` after the last stage).
    pub then: Option<(&'static str, String)>,
}

impl Transition {
    fn order(from: State, to: State, event: &'static str, note: String) -> Self {
        Transition {
            from,
            to,
            event,
            records_approval: false,
            note,
            stage: None,
            job: None,
            cancels_job: false,
            then: None,
        }
    }
}

/// Longest accepted comment or reason.
pub const MAX_NOTE_LEN: usize = 2000;

/// Decides what `command` does to an order in `state`.
pub fn decide(state: State, command: &Command, facts: &Facts) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    match command {
        Command::Approve { comment } => check_note("the comment", comment, false)?,
        Command::Reject { comment } => check_note("the reason", comment, true)?,
        _ => {}
    }
    match command {
        Command::Approve { comment } | Command::Reject { comment } => {
            if state != State::PendingApproval {
                return Err(refuse(
                    Conflict,
                    format!(
                        "this work order is {}; only orders waiting for approval can be {}",
                        state.label().to_lowercase(),
                        if matches!(command, Command::Approve { .. }) {
                            "approved"
                        } else {
                            "rejected"
                        }
                    ),
                ));
            }
            if facts.actor_is_creator {
                return Err(refuse(
                    NotAllowed,
                    "you filed this work order; someone else must decide on it",
                ));
            }
            if !facts.actor_is_approver {
                return Err(refuse(
                    NotAllowed,
                    "only the approvers of this release item's node may decide on it",
                ));
            }
            if facts.actor_already_approved {
                return Err(refuse(
                    Conflict,
                    "you have already approved this work order",
                ));
            }
            if let Command::Reject { .. } = command {
                return Ok(Transition::order(
                    state,
                    State::Rejected,
                    "rejected",
                    comment.clone(),
                ));
            }
            let approvals = facts.approvals + 1;
            let enough = approvals >= facts.required_approvals.max(1);
            Ok(Transition {
                records_approval: true,
                ..Transition::order(
                    state,
                    if enough {
                        State::Approved
                    } else {
                        State::PendingApproval
                    },
                    if enough {
                        "approved"
                    } else {
                        "approval_recorded"
                    },
                    comment.clone(),
                )
            })
        }
        Command::Close { reason } => {
            check_note("the reason", reason, true)?;
            if !state.is_open() {
                return Err(refuse(
                    Conflict,
                    format!(
                        "this work order is already {}",
                        state.label().to_lowercase()
                    ),
                ));
            }
            if !facts.actor_may_close {
                return Err(refuse(
                    NotAllowed,
                    "only engineers and owners of this release item's node may close it",
                ));
            }
            if facts.stage_mid_rollout() {
                return Err(refuse(
                    Conflict,
                    "a stage is rolling out; wait for it to finish or fail before closing",
                ));
            }
            Ok(Transition::order(
                state,
                State::Closed,
                "closed",
                reason.clone(),
            ))
        }
        Command::Deploy { stage } => deploy(state, *stage, facts),
        Command::Rollback {
            stage,
            whole_template,
        } => rollback(state, *stage, *whole_template, facts),
        Command::Cancel { stage, reason } => cancel(state, *stage, reason, facts),
        Command::Report {
            stage,
            outcome,
            message,
        } => report(state, *stage, outcome, message, facts),
        Command::ApproveStep { stage, step } => approve_step(state, *stage, *step, facts),
        Command::SignOff { stage } => sign_off(state, *stage, facts),
        Command::GoOn { stage } => go_on(state, *stage, facts),
    }
}

fn sign_off(state: State, position: u32, facts: &Facts) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    let stage = stage_at(facts, position)?;
    if !facts.actor_is_owner {
        return Err(refuse(
            NotAllowed,
            "only owners of this release item's node may sign a stage off",
        ));
    }
    match stage.status {
        StageStatus::Verifying if stage.verification_started && stage.awaits_sign_off => {
            Ok(Transition {
                stage: Some(
                    StageChange::to(position, stage.status, stage.status)
                        .marking(VerifyMark::SignedOff),
                ),
                ..Transition::order(state, state, "signed_off", String::new())
            })
        }
        StageStatus::Verifying if stage.verification_started => Err(refuse(
            Conflict,
            format!(
                "stage {position} waits for no sign-off (signed off already, or its plan asks for none)"
            ),
        )),
        StageStatus::Deploying | StageStatus::Verifying => Err(refuse(
            Conflict,
            format!(
                "stage {position} is still rolling out; sign it off once its verification runs"
            ),
        )),
        status => Err(refuse(
            Conflict,
            format!(
                "stage {position} is {}; only a stage being verified can be signed off",
                status.label().to_lowercase()
            ),
        )),
    }
}

fn go_on(state: State, position: u32, facts: &Facts) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    let stage = stage_at(facts, position)?;
    if !facts.actor_is_owner {
        return Err(refuse(
            NotAllowed,
            "only owners of this release item's node may let a verification go on",
        ));
    }
    if state != State::InProgress {
        return Err(refuse(
            Conflict,
            format!(
                "this work order is {}; no stage of it waits for a decision",
                state.label().to_lowercase()
            ),
        ));
    }
    if stage.status == StageStatus::Paused && stage.verification_started {
        return Ok(Transition {
            stage: Some(
                StageChange::to(position, stage.status, StageStatus::Verifying)
                    .marking(VerifyMark::WentOn),
            ),
            job: Some(JobKind::Verify),
            ..Transition::order(state, state, "verification_went_on", String::new())
        });
    }
    Err(refuse(
        Conflict,
        format!(
            "stage {position} is {}; it is not waiting for a decision on its verification",
            stage.status.label().to_lowercase()
        ),
    ))
}

fn approve_step(
    state: State,
    position: u32,
    step: u32,
    facts: &Facts,
) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    let stage = stage_at(facts, position)?;
    if !facts.actor_is_owner {
        return Err(refuse(
            NotAllowed,
            "only owners of this release item's node may approve a canary step",
        ));
    }
    if state != State::InProgress {
        return Err(refuse(
            Conflict,
            format!(
                "this work order is {}; no stage of it is paused",
                state.label().to_lowercase()
            ),
        ));
    }
    if stage.verification_started {
        return Err(refuse(
            Conflict,
            format!(
                "stage {position} went through every step; it is {} its verification",
                if stage.status == StageStatus::Paused {
                    "waiting for a decision on"
                } else {
                    "in"
                }
            ),
        ));
    }
    if let (StageStatus::Paused, Some(why)) = (stage.status, facts.stopped.get(&position)) {
        return Err(refuse(LineStopped, why.clone()));
    }
    match (stage.status, stage.paused_step) {
        (StageStatus::Paused, Some(paused)) if paused == step => Ok(Transition {
            stage: Some(StageChange::to(
                position,
                stage.status,
                StageStatus::Deploying,
            )),
            ..Transition::order(state, state, "step_approved", format!("step {step}"))
        }),
        (StageStatus::Paused, Some(paused)) if paused > step => Err(refuse(
            Conflict,
            format!("the rollout moved on to step {paused}"),
        )),
        (StageStatus::Paused, Some(paused)) => Err(refuse(
            Conflict,
            format!("stage {position} is paused at step {paused}, not at step {step}"),
        )),
        (StageStatus::Deploying | StageStatus::Verifying, _) => Err(refuse(
            Conflict,
            format!("the rollout moved on from step {step}; it is not paused"),
        )),
        (status, _) => Err(refuse(
            Conflict,
            format!(
                "stage {position} is {}; it is not paused at a step",
                status.label().to_lowercase()
            ),
        )),
    }
}

/// The stage run at 1-based `position`, or a 404-ish refusal.
fn stage_at(facts: &Facts, position: u32) -> Result<StageFacts, Refusal> {
    position
        .checked_sub(1)
        .and_then(|i| facts.stages.get(i as usize))
        .copied()
        .ok_or_else(|| {
            refuse(
                RefusalKind::Invalid,
                format!(
                    "this work order has no stage {position} (it has {})",
                    facts.stages.len()
                ),
            )
        })
}

fn deploy(state: State, position: u32, facts: &Facts) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    let stage = stage_at(facts, position)?;
    if !facts.actor_may_deploy {
        return Err(refuse(
            NotAllowed,
            "only engineers and owners of this release item's node may deploy it",
        ));
    }
    match state {
        State::Approved | State::InProgress => {}
        State::PendingApproval => {
            return Err(refuse(
                Conflict,
                "this work order is waiting for approval; it can be deployed once approved",
            ));
        }
        other => {
            return Err(refuse(
                Conflict,
                format!(
                    "this work order is {}; nothing more can be deployed",
                    other.label().to_lowercase()
                ),
            ));
        }
    }
    if stage.status != StageStatus::Pending {
        return Err(refuse(
            Conflict,
            format!(
                "stage {position} is {} already; a stage is deployed only once",
                stage.status.label().to_lowercase()
            ),
        ));
    }
    if let Some(previous) = position.checked_sub(2).map(|i| facts.stages[i as usize])
        && previous.status != StageStatus::Succeeded
    {
        return Err(refuse(
            Conflict,
            format!(
                "stage {} is {}; stage {position} can start only after it succeeded",
                position - 1,
                previous.status.label().to_lowercase()
            ),
        ));
    }
    if let Some((busy, _)) = facts
        .stages
        .iter()
        .enumerate()
        .find(|(_, s)| s.status.is_mid_rollout())
    {
        return Err(refuse(
            Conflict,
            format!("stage {} is still rolling out", busy + 1),
        ));
    }
    if let Some(why) = facts.stopped.get(&position) {
        return Err(refuse(LineStopped, why.clone()));
    }
    if let Some(why) = facts.frozen.get(&position) {
        return Err(refuse(Frozen, why.clone()));
    }
    Ok(Transition {
        stage: Some(StageChange::to(
            position,
            stage.status,
            StageStatus::Deploying,
        )),
        job: Some(JobKind::deploy(stage.strategy)),
        ..Transition::order(
            state,
            State::InProgress,
            "stage_deploy_started",
            String::new(),
        )
    })
}

fn rollback(
    state: State,
    position: u32,
    whole_template: bool,
    facts: &Facts,
) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    let stage = stage_at(facts, position)?;
    if !facts.actor_may_deploy {
        return Err(refuse(
            NotAllowed,
            "only engineers and owners of this release item's node may roll it back",
        ));
    }
    if whole_template && !facts.actor_is_owner {
        return Err(refuse(
            NotAllowed,
            "only owners of this release item's node may restore the whole pod template",
        ));
    }
    if !matches!(
        state,
        State::InProgress
            | State::Failed
            | State::Succeeded
            | State::PartiallyRolledBack
            | State::RolledBack
    ) {
        return Err(refuse(
            Conflict,
            format!(
                "this work order is {}; nothing of it is deployed",
                state.label().to_lowercase()
            ),
        ));
    }
    // A canary paused at a step rolls back from there: its job stops and
    // the rollback restores the template (Kruise's direct rollback).
    let paused = stage.status == StageStatus::Paused;
    if !(matches!(stage.status, StageStatus::Succeeded | StageStatus::Failed) || paused)
        || !stage.deployed
    {
        return Err(refuse(
            Conflict,
            format!(
                "stage {position} is {}; only a stage that has deployed can be rolled back",
                stage.status.label().to_lowercase()
            ),
        ));
    }
    if let Some((busy, _)) = facts
        .stages
        .iter()
        .enumerate()
        .find(|(i, s)| s.status.is_mid_rollout() && (*i + 1 != position as usize || !paused))
    {
        return Err(refuse(
            Conflict,
            format!("stage {} is still rolling out", busy + 1),
        ));
    }
    Ok(Transition {
        stage: Some(StageChange::to(
            position,
            stage.status,
            StageStatus::RollingBack,
        )),
        job: Some(JobKind::Rollback),
        cancels_job: paused,
        ..Transition::order(state, state, "rollback_started", String::new())
    })
}

fn cancel(state: State, position: u32, reason: &str, facts: &Facts) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    check_note("the reason", reason, true)?;
    let stage = stage_at(facts, position)?;
    if !facts.actor_is_owner {
        return Err(refuse(
            NotAllowed,
            "only owners of this release item's node may cancel a stage",
        ));
    }
    if !stage.status.is_mid_rollout() {
        return Err(refuse(
            Conflict,
            format!(
                "stage {position} is {}; only a stage that is deploying or rolling back can be cancelled",
                stage.status.label().to_lowercase()
            ),
        ));
    }
    Ok(Transition {
        stage: Some(StageChange::to(position, stage.status, StageStatus::Failed)),
        cancels_job: true,
        ..Transition::order(
            state,
            if state == State::InProgress {
                State::Failed
            } else {
                state
            },
            "stage_cancelled",
            reason.to_string(),
        )
    })
}

fn report(
    state: State,
    position: u32,
    outcome: &Outcome,
    message: &str,
    facts: &Facts,
) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    let stage = stage_at(facts, position)?;
    let change = |to| Some(StageChange::to(position, stage.status, to));
    let stale = || {
        refuse(
            Conflict,
            format!(
                "stage {position} is {}; the report no longer applies",
                stage.status
            ),
        )
    };
    let note = message.to_string();
    match (stage.status, outcome) {
        // The rollout is available and the plan asks for more: the stage
        // stays verifying and its verification starts.
        (StageStatus::Deploying | StageStatus::Verifying, Outcome::Succeeded)
            if stage.verifies && !stage.verification_started =>
        {
            Ok(Transition {
                stage: Some(
                    StageChange::to(position, stage.status, StageStatus::Verifying)
                        .marking(VerifyMark::Started),
                ),
                job: Some(JobKind::Verify),
                ..Transition::order(state, state, "verification_started", note)
            })
        }
        // Only the verification's own report ends a verified stage.
        (_, Outcome::Succeeded)
            if stage.verification_started && stage.status != StageStatus::RollingBack =>
        {
            Err(stale())
        }
        (StageStatus::Verifying, Outcome::Verified) if stage.verification_started => Ok(succeeded(
            state,
            position,
            note,
            facts,
            change(StageStatus::Succeeded),
        )),
        (StageStatus::Verifying, Outcome::Inconclusive) if stage.verification_started => {
            Ok(Transition {
                stage: change(StageStatus::Paused),
                ..Transition::order(state, state, "verification_paused", note)
            })
        }
        (StageStatus::Deploying, Outcome::Verifying) => Ok(Transition {
            stage: change(StageStatus::Verifying),
            ..Transition::order(state, state, "stage_verifying", note)
        }),
        (StageStatus::Deploying | StageStatus::Verifying, Outcome::Succeeded) => Ok(succeeded(
            state,
            position,
            note,
            facts,
            change(StageStatus::Succeeded),
        )),
        (StageStatus::Deploying | StageStatus::Verifying, Outcome::Failed) => {
            let to = if state == State::InProgress {
                State::Failed
            } else {
                state
            };
            if facts.auto_rollback && stage.deployed {
                Ok(Transition {
                    stage: change(StageStatus::RollingBack),
                    job: Some(JobKind::Rollback),
                    then: Some((
                        "rollback_started",
                        "automatic rollback after the failure".to_string(),
                    )),
                    ..Transition::order(state, to, "stage_failed", note)
                })
            } else {
                Ok(Transition {
                    stage: change(StageStatus::Failed),
                    ..Transition::order(state, to, "stage_failed", note)
                })
            }
        }
        (StageStatus::Deploying | StageStatus::Paused, Outcome::Paused { step }) => {
            Ok(Transition {
                stage: Some(StageChange {
                    paused_step: Some(*step),
                    ..StageChange::to(position, stage.status, StageStatus::Paused)
                }),
                ..Transition::order(state, state, "stage_paused", note)
            })
        }
        (StageStatus::Paused, Outcome::Resumed { step }) if stage.paused_step == Some(*step) => {
            Ok(Transition {
                stage: change(StageStatus::Deploying),
                ..Transition::order(state, state, "stage_resumed", note)
            })
        }
        (StageStatus::RollingBack, Outcome::Succeeded) => Ok(Transition {
            stage: change(StageStatus::RolledBack),
            ..Transition::order(
                state,
                after_rollback(state, position, facts),
                "rolled_back",
                note,
            )
        }),
        // The rollback wrote nothing: the stage is as it was before it.
        (StageStatus::RollingBack, Outcome::Refused) => Ok(Transition {
            stage: change(stage.rollback_from.unwrap_or(StageStatus::Failed)),
            ..Transition::order(state, state, "rollback_refused", note)
        }),
        (StageStatus::RollingBack, Outcome::Failed) => Ok(Transition {
            stage: change(StageStatus::Failed),
            ..Transition::order(
                state,
                if state == State::InProgress {
                    State::Failed
                } else {
                    state
                },
                "rollback_failed",
                note,
            )
        }),
        _ => Err(stale()),
    }
}

/// Stage `position` succeeded (`change`): the order succeeds with its last
/// stage.
fn succeeded(
    state: State,
    position: u32,
    note: String,
    facts: &Facts,
    change: Option<StageChange>,
) -> Transition {
    let last = facts
        .stages
        .iter()
        .enumerate()
        .all(|(i, s)| i + 1 == position as usize || s.status == StageStatus::Succeeded);
    let to = if last && state == State::InProgress {
        State::Succeeded
    } else {
        state
    };
    Transition {
        stage: change,
        then: (to == State::Succeeded).then(|| ("succeeded", "every stage succeeded".to_string())),
        ..Transition::order(state, to, "stage_succeeded", note)
    }
}

/// The order's state once stage `position` is rolled back. An open order
/// with another failed stage stays failed: that stage still needs a
/// decision. Otherwise the order is over: partially rolled back while some
/// other stage still runs its version, rolled back when none does. Stages
/// not run yet never will (a stage deploys only after the one before it
/// succeeded, and the order is finished).
fn after_rollback(state: State, position: u32, facts: &Facts) -> State {
    let others = || {
        facts
            .stages
            .iter()
            .enumerate()
            .filter(move |(i, _)| i + 1 != position as usize)
            .map(|(_, s)| s.status)
    };
    if state.is_open() && others().any(|s| s == StageStatus::Failed) {
        State::Failed
    } else if others().any(|s| s == StageStatus::Succeeded) {
        State::PartiallyRolledBack
    } else {
        State::RolledBack
    }
}

fn check_note(field: &str, note: &str, required: bool) -> Result<(), Refusal> {
    if required && note.trim().is_empty() {
        return Err(refuse(RefusalKind::Invalid, "give a reason"));
    }
    if note.chars().count() > MAX_NOTE_LEN {
        return Err(refuse(
            RefusalKind::Invalid,
            format!("keep it under {MAX_NOTE_LEN} characters"),
        ));
    }
    check_free_form(field, note).map_err(|m| refuse(RefusalKind::Invalid, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefusalKind::*;
    use State::*;

    fn approver() -> Facts {
        Facts {
            actor_is_approver: true,
            actor_is_owner: true,
            actor_may_close: true,
            required_approvals: 1,
            ..Facts::default()
        }
    }

    fn approve() -> Command {
        Command::Approve {
            comment: "lgtm".into(),
        }
    }
    fn reject() -> Command {
        Command::Reject {
            comment: "no".into(),
        }
    }
    fn close() -> Command {
        Command::Close {
            reason: "superseded".into(),
        }
    }

    /// Expected outcome for an approver (not the creator) with one approval
    /// required: Ok(new state) or Err(refusal kind).
    fn expected(state: State, command: &str) -> Result<State, RefusalKind> {
        match (state, command) {
            (PendingApproval, "approve") => Ok(Approved),
            (PendingApproval, "reject") => Ok(Rejected),
            (_, "approve" | "reject") => Err(Conflict),
            (s, "close") if s.is_open() => Ok(Closed),
            (_, "close") => Err(Conflict),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_state_and_command() {
        for state in State::ALL {
            for command in [approve(), reject(), close()] {
                let got = decide(state, &command, &approver())
                    .map(|t| t.to)
                    .map_err(|r| r.kind);
                assert_eq!(
                    got,
                    expected(state, command.name()),
                    "{state} × {}",
                    command.name()
                );
            }
        }
    }

    /// Who sends a command in the full table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Who {
        /// An approver who may also close, deploy and roll back.
        Approver,
        /// Someone who may only look.
        Viewer,
    }

    /// Every command the state machine takes, with stage 1 where it names one.
    fn every_command() -> Vec<Command> {
        vec![
            approve(),
            reject(),
            close(),
            Command::Deploy { stage: 1 },
            Command::Rollback {
                stage: 1,
                whole_template: false,
            },
            Command::Rollback {
                stage: 1,
                whole_template: true,
            },
            Command::Cancel {
                stage: 1,
                reason: "stuck".into(),
            },
            report(1, Outcome::Verifying),
            report(1, Outcome::Succeeded),
            report(1, Outcome::Failed),
            report(1, Outcome::Refused),
            report(1, Outcome::Paused { step: 1 }),
            report(1, Outcome::Resumed { step: 1 }),
            report(1, Outcome::Verified),
            report(1, Outcome::Inconclusive),
            Command::ApproveStep { stage: 1, step: 1 },
            Command::SignOff { stage: 1 },
            Command::GoOn { stage: 1 },
        ]
    }

    /// The table: what `command` does to an order in `state` whose one
    /// stage is `stage` (deployed unless pending; automatic rollback on),
    /// sent by `who`: Ok(new state, new stage status if it changes) or the
    /// refusal's kind. Written from SPEC, apart from `decide`.
    fn table(
        who: Who,
        state: State,
        stage: StageStatus,
        command: &Command,
    ) -> Result<(State, Option<StageStatus>), RefusalKind> {
        use Outcome as O;
        let open = state.is_open();
        let busy = stage.is_mid_rollout();
        // A failure reported while the order runs fails the order.
        let failing = if state == InProgress { Failed } else { state };
        match (command, who) {
            // Approve / reject: only while waiting, only by approvers.
            (Command::Approve { .. } | Command::Reject { .. }, _) if state != PendingApproval => {
                Err(Conflict)
            }
            (Command::Approve { .. } | Command::Reject { .. }, Who::Viewer) => Err(NotAllowed),
            (Command::Approve { .. }, Who::Approver) => Ok((Approved, None)),
            (Command::Reject { .. }, Who::Approver) => Ok((Rejected, None)),
            // Close: any open order, by engineers and owners, not mid-rollout.
            (Command::Close { .. }, _) if !open => Err(Conflict),
            (Command::Close { .. }, Who::Viewer) => Err(NotAllowed),
            (Command::Close { .. }, Who::Approver) if busy => Err(Conflict),
            (Command::Close { .. }, Who::Approver) => Ok((Closed, None)),
            // Deploy / roll back: the right first, then the state.
            (
                Command::Deploy { .. } | Command::Rollback { .. } | Command::Cancel { .. },
                Who::Viewer,
            ) => Err(NotAllowed),
            (Command::Deploy { .. }, Who::Approver) => match (state, stage) {
                (Approved | InProgress, S::Pending) => Ok((InProgress, Some(S::Deploying))),
                _ => Err(Conflict),
            },
            (Command::Rollback { .. }, Who::Approver) => match (state, stage) {
                (
                    InProgress | Failed | Succeeded | PartiallyRolledBack | RolledBack,
                    S::Succeeded | S::Failed | S::Paused,
                ) => Ok((state, Some(S::RollingBack))),
                _ => Err(Conflict),
            },
            // Cancel: any stage the engine works on; the order fails with it.
            (Command::Cancel { .. }, Who::Approver) if busy => Ok((failing, Some(S::Failed))),
            (Command::Cancel { .. }, Who::Approver) => Err(Conflict),
            // A canary step: owners, while the order runs and the stage is
            // paused at it.
            (Command::ApproveStep { .. }, Who::Viewer) => Err(NotAllowed),
            (Command::ApproveStep { .. }, Who::Approver) => match (state, stage) {
                (InProgress, S::Paused) => Ok((InProgress, Some(S::Deploying))),
                _ => Err(Conflict),
            },
            // Verification decisions: owners, and only once a plan runs
            // (none does in this table; see the verification test).
            (Command::SignOff { .. } | Command::GoOn { .. }, Who::Viewer) => Err(NotAllowed),
            (Command::SignOff { .. } | Command::GoOn { .. }, Who::Approver) => Err(Conflict),
            // Engine reports: decided by the stage's status alone.
            (Command::Report { outcome, .. }, _) => match (stage, outcome) {
                (S::Deploying | S::Paused, O::Paused { .. }) => Ok((state, Some(S::Paused))),
                (S::Paused, O::Resumed { .. }) => Ok((state, Some(S::Deploying))),
                (S::Deploying, O::Verifying) => Ok((state, Some(S::Verifying))),
                (S::Deploying | S::Verifying, O::Succeeded) => Ok((
                    if state == InProgress {
                        Succeeded
                    } else {
                        state
                    },
                    Some(S::Succeeded),
                )),
                (S::Deploying | S::Verifying, O::Failed) => Ok((failing, Some(S::RollingBack))),
                // The order's only stage is rolled back: nothing of it runs.
                (S::RollingBack, O::Succeeded) => Ok((RolledBack, Some(S::RolledBack))),
                (S::RollingBack, O::Failed) => Ok((failing, Some(S::Failed))),
                // A refused rollback leaves the order; the stage goes back
                // to where it was (failed when unknown).
                (S::RollingBack, O::Refused) => Ok((state, Some(S::Failed))),
                _ => Err(Conflict),
            },
        }
    }

    #[test]
    fn every_command_in_every_state_and_stage_status() {
        let mut cases = 0;
        for who in [Who::Approver, Who::Viewer] {
            for state in State::ALL {
                for stage in StageStatus::ALL {
                    for command in every_command() {
                        let mut facts = deployer(&[stage]);
                        if who == Who::Viewer {
                            facts.actor_is_approver = false;
                            facts.actor_is_owner = false;
                            facts.actor_may_close = false;
                            facts.actor_may_deploy = false;
                        }
                        let got = decide(state, &command, &facts)
                            .map(|t| (t.to, t.stage.map(|c| c.to)))
                            .map_err(|r| r.kind);
                        assert_eq!(
                            got,
                            table(who, state, stage, &command),
                            "{who:?}: {state} × stage {stage} × {command:?}"
                        );
                        cases += 1;
                    }
                }
            }
        }
        assert_eq!(cases, 2 * 9 * 8 * 18);
    }

    #[test]
    fn every_command_names_its_input_when_refused_as_incomplete() {
        for command in every_command() {
            let refused = refusal(&command, refuse(Invalid, "no"));
            let input = match command {
                Command::Approve { .. } | Command::Reject { .. } => "comment",
                Command::Close { .. } | Command::Cancel { .. } => "reason",
                Command::ApproveStep { .. } => "step",
                _ => "stage",
            };
            assert_eq!(refused.input, input, "{command:?}");
        }
    }

    #[test]
    fn a_canary_stage_deploys_through_its_own_job_and_pauses_at_its_steps() {
        let mut facts = deployer(&[S::Pending]);
        facts.stages[0].strategy = Strategy::Canary;
        let t = decide(Approved, &Command::Deploy { stage: 1 }, &facts).unwrap();
        assert_eq!(t.job, Some(JobKind::Canary));

        facts.stages[0].status = S::Deploying;
        let t = decide(InProgress, &report(1, Outcome::Paused { step: 2 }), &facts).unwrap();
        assert_eq!(t.event, "stage_paused");
        assert_eq!(
            t.stage.map(|c| (c.to, c.paused_step)),
            Some((S::Paused, Some(2)))
        );

        facts.stages[0].status = S::Paused;
        facts.stages[0].paused_step = Some(2);
        let approve = |step| Command::ApproveStep { stage: 1, step };
        let t = decide(InProgress, &approve(2), &facts).unwrap();
        assert_eq!((t.event, t.note.as_str()), ("step_approved", "step 2"));
        assert_eq!(
            t.stage.map(|c| (c.to, c.paused_step)),
            Some((S::Deploying, None))
        );
        assert_eq!(t.job, None, "the running job follows; nothing is queued");
        // The page showed step 1, the rollout is at step 2 by now.
        let refusal = decide(InProgress, &approve(1), &facts).unwrap_err();
        assert_eq!(
            (refusal.kind, refusal.reason.as_str()),
            (Conflict, "the rollout moved on to step 2")
        );
        let refusal = decide(InProgress, &approve(3), &facts).unwrap_err();
        assert_eq!(refusal.kind, Conflict);
        // Approved already (a double click): not paused any more.
        facts.stages[0].status = S::Deploying;
        facts.stages[0].paused_step = None;
        let refusal = decide(InProgress, &approve(2), &facts).unwrap_err();
        assert_eq!(refusal.kind, Conflict);
        assert!(
            refusal.reason.contains("moved on from step 2"),
            "{refusal:?}"
        );
        // An engineer who may deploy is no owner.
        facts.stages[0].status = S::Paused;
        facts.stages[0].paused_step = Some(2);
        facts.actor_is_owner = false;
        let refusal = decide(InProgress, &approve(2), &facts).unwrap_err();
        assert_eq!(refusal.kind, NotAllowed);
        // A timed pause that ran out, reported for the step it was at.
        let t = decide(InProgress, &report(1, Outcome::Resumed { step: 2 }), &facts).unwrap();
        assert_eq!(
            (t.event, t.stage.map(|c| c.to)),
            ("stage_resumed", Some(S::Deploying))
        );
        assert_eq!(
            decide(InProgress, &report(1, Outcome::Resumed { step: 1 }), &facts)
                .unwrap_err()
                .kind,
            Conflict,
            "a stale resume"
        );
    }

    #[test]
    fn approvals_accumulate_until_enough() {
        let mut facts = approver();
        facts.required_approvals = 2;
        let first = decide(PendingApproval, &approve(), &facts).unwrap();
        assert_eq!(
            (first.to, first.event, first.records_approval),
            (PendingApproval, "approval_recorded", true)
        );
        facts.approvals = 1;
        let second = decide(PendingApproval, &approve(), &facts).unwrap();
        assert_eq!((second.to, second.event), (Approved, "approved"));
    }

    #[test]
    fn a_creator_cannot_decide_on_their_own_order() {
        let mut facts = approver();
        facts.actor_is_creator = true;
        for command in [approve(), reject()] {
            let refusal = decide(PendingApproval, &command, &facts).unwrap_err();
            assert_eq!(refusal.kind, NotAllowed);
            assert!(refusal.reason.contains("you filed"));
        }
    }

    #[test]
    fn only_approvers_decide_and_each_counts_once() {
        let mut facts = approver();
        facts.actor_is_approver = false;
        assert_eq!(
            decide(PendingApproval, &approve(), &facts)
                .unwrap_err()
                .kind,
            NotAllowed
        );
        assert_eq!(
            decide(PendingApproval, &reject(), &facts).unwrap_err().kind,
            NotAllowed
        );
        let mut facts = approver();
        facts.required_approvals = 2;
        facts.actor_already_approved = true;
        facts.approvals = 1;
        assert_eq!(
            decide(PendingApproval, &approve(), &facts)
                .unwrap_err()
                .kind,
            Conflict
        );
    }

    #[test]
    fn a_rejection_needs_a_reason() {
        for blank in ["", "  \n "] {
            let refused = decide(
                PendingApproval,
                &Command::Reject {
                    comment: blank.into(),
                },
                &approver(),
            )
            .unwrap_err();
            assert_eq!(
                (refused.kind, refused.reason.as_str()),
                (Invalid, "give a reason")
            );
        }
        let approved = decide(
            PendingApproval,
            &Command::Approve {
                comment: String::new(),
            },
            &approver(),
        );
        assert!(approved.is_ok(), "approving needs no comment");
    }

    #[test]
    fn one_rejection_ends_it_even_after_approvals() {
        let mut facts = approver();
        facts.required_approvals = 3;
        facts.approvals = 2;
        assert_eq!(
            decide(PendingApproval, &reject(), &facts).unwrap().to,
            Rejected
        );
    }

    #[test]
    fn closing_needs_a_reason_a_right_and_no_rollout_in_flight() {
        let facts = approver();
        let blank = Command::Close {
            reason: "  ".into(),
        };
        assert_eq!(decide(Approved, &blank, &facts).unwrap_err().kind, Invalid);
        let mut outsider = approver();
        outsider.actor_may_close = false;
        assert_eq!(
            decide(Approved, &close(), &outsider).unwrap_err().kind,
            NotAllowed
        );
        let mut rolling = approver();
        rolling.stages = vec![StageFacts::new(StageStatus::Deploying, true)];
        assert_eq!(
            decide(InProgress, &close(), &rolling).unwrap_err().kind,
            Conflict
        );
        assert_eq!(decide(Failed, &close(), &facts).unwrap().to, Closed);
    }

    #[test]
    fn over_long_comments_are_refused() {
        let long = Command::Approve {
            comment: "x".repeat(MAX_NOTE_LEN + 1),
        };
        assert_eq!(
            decide(PendingApproval, &long, &approver())
                .unwrap_err()
                .kind,
            Invalid
        );
    }

    #[test]
    fn comments_and_reasons_keep_line_breaks_but_no_other_control_characters() {
        let facts = approver();
        let reject = |comment: &str| Command::Reject {
            comment: comment.into(),
        };
        let close = |reason: &str| Command::Close {
            reason: reason.into(),
        };
        for bad in [reject("ok\u{1b}[2J"), close("bell\u{7}"), close("\0")] {
            let refusal = decide(PendingApproval, &bad, &facts).unwrap_err();
            assert_eq!(refusal.kind, Invalid, "{bad:?}");
            assert!(refusal.reason.contains("control characters"), "{refusal:?}");
        }
        assert!(decide(PendingApproval, &reject("no:\r\n\t- tests"), &facts).is_ok());
        assert!(decide(PendingApproval, &close("superseded\nby #12"), &facts).is_ok());
    }

    use StageStatus as S;

    fn deployer(stages: &[StageStatus]) -> Facts {
        Facts {
            actor_may_deploy: true,
            auto_rollback: true,
            stages: stages
                .iter()
                .map(|&s| StageFacts {
                    // A paused stage is paused at its first step.
                    paused_step: (s == S::Paused).then_some(1),
                    ..StageFacts::new(s, s != S::Pending)
                })
                .collect(),
            ..approver()
        }
    }

    fn roll_back(stage: u32) -> Command {
        Command::Rollback {
            stage,
            whole_template: false,
        }
    }

    #[test]
    fn only_owners_cancel_a_stage_or_restore_a_whole_template() {
        let mut facts = deployer(&[S::Deploying]);
        let cancel = Command::Cancel {
            stage: 1,
            reason: "stuck on a paused Deployment".into(),
        };
        let t = decide(InProgress, &cancel, &facts).unwrap();
        assert_eq!(t.to, Failed);
        assert!(t.cancels_job);
        assert_eq!(t.stage.map(|c| c.to), Some(S::Failed));
        assert_eq!(t.event, "stage_cancelled");
        let no_reason = Command::Cancel {
            stage: 1,
            reason: " ".into(),
        };
        assert_eq!(
            decide(InProgress, &no_reason, &facts).unwrap_err().kind,
            Invalid
        );
        facts.actor_is_owner = false;
        assert_eq!(
            decide(InProgress, &cancel, &facts).unwrap_err().kind,
            NotAllowed
        );
        let mut done = deployer(&[S::Succeeded]);
        done.actor_is_owner = false;
        assert!(decide(Succeeded, &roll_back(1), &done).is_ok());
        let whole = Command::Rollback {
            stage: 1,
            whole_template: true,
        };
        assert_eq!(
            decide(Succeeded, &whole, &done).unwrap_err().kind,
            NotAllowed
        );
        done.actor_is_owner = true;
        assert_eq!(
            decide(Succeeded, &whole, &done)
                .unwrap()
                .stage
                .map(|c| c.to),
            Some(S::RollingBack)
        );
    }

    #[test]
    fn a_refused_rollback_returns_the_stage_to_where_it_was() {
        for from in [S::Succeeded, S::Failed] {
            let mut facts = deployer(&[S::RollingBack]);
            facts.stages[0].rollback_from = Some(from);
            let t = decide(Succeeded, &report(1, Outcome::Refused), &facts).unwrap();
            assert_eq!(t.to, Succeeded, "the order is left as it was");
            assert_eq!(t.stage.map(|c| c.to), Some(from));
            assert_eq!(t.event, "rollback_refused");
            assert_eq!(t.job, None);
        }
    }

    fn report(stage: u32, outcome: Outcome) -> Command {
        Command::Report {
            stage,
            outcome,
            message: "seen".into(),
        }
    }

    /// A stage whose plan asks for a sign-off, verifying or not yet.
    fn verifying(status: StageStatus, started: bool, signed_off: bool) -> Facts {
        let plan = VerifyPlan {
            sign_off: true,
            ..VerifyPlan::default()
        };
        let mut facts = deployer(&[status]);
        facts.stages[0] = facts.stages[0].verifying(Some(&plan), started, signed_off);
        facts
    }

    #[test]
    fn a_verified_stage_succeeds_only_through_its_verification() {
        let decided = |facts: &Facts, command: Command| {
            decide(InProgress, &command, facts)
                .map(|t| (t.stage.map(|c| (c.to, c.verification)), t.job, t.event))
                .map_err(|r| r.kind)
        };
        // The rollout is available: verification starts, the stage stays
        // verifying and a verify job is queued.
        assert_eq!(
            decided(
                &verifying(S::Verifying, false, false),
                report(1, Outcome::Succeeded)
            ),
            Ok((
                Some((S::Verifying, Some(VerifyMark::Started))),
                Some(JobKind::Verify),
                "verification_started"
            ))
        );
        let running = verifying(S::Verifying, true, false);
        // Only the verification's own report ends it.
        assert_eq!(
            decided(&running, report(1, Outcome::Succeeded)),
            Err(Conflict)
        );
        assert_eq!(
            decided(&running, report(1, Outcome::Verified)),
            Ok((Some((S::Succeeded, None)), None, "stage_succeeded"))
        );
        assert_eq!(
            decided(&running, report(1, Outcome::Failed)),
            Ok((
                Some((S::RollingBack, None)),
                Some(JobKind::Rollback),
                "stage_failed"
            )),
            "a failed gate rolls back by itself"
        );
        assert_eq!(
            decided(&running, report(1, Outcome::Inconclusive)),
            Ok((Some((S::Paused, None)), None, "verification_paused"))
        );
        // Sign-off: owners, once, while it verifies.
        assert_eq!(
            decided(&running, Command::SignOff { stage: 1 }),
            Ok((
                Some((S::Verifying, Some(VerifyMark::SignedOff))),
                None,
                "signed_off"
            ))
        );
        let mut engineer = running.clone();
        engineer.actor_is_owner = false;
        assert_eq!(
            decided(&engineer, Command::SignOff { stage: 1 }),
            Err(NotAllowed)
        );
        assert_eq!(
            decided(
                &verifying(S::Verifying, true, true),
                Command::SignOff { stage: 1 }
            ),
            Err(Conflict),
            "signed off already"
        );
        assert_eq!(
            decided(
                &verifying(S::Deploying, false, false),
                Command::SignOff { stage: 1 }
            ),
            Err(Conflict),
            "not before the rollout is available"
        );
        // Paused for a person: continue (owners) or roll back.
        let paused = verifying(S::Paused, true, false);
        assert_eq!(
            decided(&paused, Command::GoOn { stage: 1 }),
            Ok((
                Some((S::Verifying, Some(VerifyMark::WentOn))),
                Some(JobKind::Verify),
                "verification_went_on"
            ))
        );
        let mut engineer = paused.clone();
        engineer.actor_is_owner = false;
        assert_eq!(
            decided(&engineer, Command::GoOn { stage: 1 }),
            Err(NotAllowed)
        );
        assert!(
            decided(
                &paused,
                Command::Rollback {
                    stage: 1,
                    whole_template: false
                }
            )
            .is_ok()
        );
        assert_eq!(
            decided(&paused, Command::ApproveStep { stage: 1, step: 1 }),
            Err(Conflict),
            "a verification pause is not a canary step"
        );
        assert_eq!(
            decided(
                &verifying(S::Paused, false, false),
                Command::GoOn { stage: 1 }
            ),
            Err(Conflict),
            "a canary pause is not a verification's"
        );
    }

    #[test]
    fn a_stopped_line_holds_deploys_and_canary_steps_but_not_rollbacks() {
        let why = "the line is stopped at /acme by olivia (stop 1): incident".to_string();
        let mut facts = deployer(&[S::Succeeded, S::Pending]);
        facts.stopped = [(1, why.clone()), (2, why.clone())].into();
        facts.frozen = [(2, "frozen".to_string())].into();
        let refused = decide(InProgress, &Command::Deploy { stage: 2 }, &facts).unwrap_err();
        assert_eq!(
            (refused.kind, refused.reason.as_str()),
            (LineStopped, why.as_str()),
            "a stop is said before a freeze"
        );
        let shown: crate::error::Error =
            super::refusal(&Command::Deploy { stage: 2 }, refused).into();
        assert_eq!((shown.status_code(), shown.code()), (409, "line_stopped"));
        // Rolling back is never held.
        assert!(decide(InProgress, &roll_back(1), &facts).is_ok());

        let mut canary = deployer(&[S::Paused]);
        canary.actor_is_owner = true;
        canary.stages[0].strategy = Strategy::Canary;
        canary.stopped = [(1, why)].into();
        let step = Command::ApproveStep { stage: 1, step: 1 };
        assert_eq!(
            decide(InProgress, &step, &canary).unwrap_err().kind,
            LineStopped
        );
        assert!(decide(InProgress, &roll_back(1), &canary).is_ok());
        // A refusal for another reason comes first: not paused at a step.
        canary.stages[0].status = S::Deploying;
        assert_eq!(
            decide(InProgress, &step, &canary).unwrap_err().kind,
            Conflict
        );
        // Lifted: the step goes on.
        canary.stages[0].status = S::Paused;
        canary.stopped.clear();
        assert!(decide(InProgress, &step, &canary).is_ok());
    }

    #[test]
    fn stages_deploy_in_order_once_each() {
        let facts = deployer(&[S::Pending, S::Pending]);
        let t = decide(Approved, &Command::Deploy { stage: 1 }, &facts).unwrap();
        assert_eq!(t.to, InProgress);
        assert_eq!(t.job, Some(JobKind::Deploy));
        assert_eq!(t.stage, Some(StageChange::to(1, S::Pending, S::Deploying)));
        // Stage 2 before stage 1 succeeded.
        let refusal = decide(Approved, &Command::Deploy { stage: 2 }, &facts).unwrap_err();
        assert_eq!(refusal.kind, Conflict);
        assert!(refusal.reason.contains("stage 1 is pending"), "{refusal:?}");
        for first in [S::Deploying, S::Verifying, S::Failed, S::RolledBack] {
            let facts = deployer(&[first, S::Pending]);
            assert_eq!(
                decide(InProgress, &Command::Deploy { stage: 2 }, &facts)
                    .unwrap_err()
                    .kind,
                Conflict,
                "stage 1 {first}"
            );
        }
        let facts = deployer(&[S::Succeeded, S::Pending]);
        let t = decide(InProgress, &Command::Deploy { stage: 2 }, &facts).unwrap();
        assert_eq!((t.to, t.stage.unwrap().to), (InProgress, S::Deploying));
        // Twice.
        for status in [S::Deploying, S::Succeeded, S::Failed, S::RolledBack] {
            let facts = deployer(&[status, S::Pending]);
            let refusal = decide(InProgress, &Command::Deploy { stage: 1 }, &facts).unwrap_err();
            assert_eq!(refusal.kind, Conflict, "{status}");
        }
        // No such stage.
        assert_eq!(
            decide(Approved, &Command::Deploy { stage: 3 }, &facts)
                .unwrap_err()
                .kind,
            Invalid
        );
        assert_eq!(
            decide(Approved, &Command::Deploy { stage: 0 }, &facts)
                .unwrap_err()
                .kind,
            Invalid
        );
    }

    #[test]
    fn deploying_needs_an_approved_order_and_the_right() {
        let facts = deployer(&[S::Pending]);
        for state in [PendingApproval, Succeeded, Failed, Rejected, Closed] {
            assert_eq!(
                decide(state, &Command::Deploy { stage: 1 }, &facts)
                    .unwrap_err()
                    .kind,
                Conflict,
                "{state}"
            );
        }
        let mut viewer = facts.clone();
        viewer.actor_may_deploy = false;
        assert_eq!(
            decide(Approved, &Command::Deploy { stage: 1 }, &viewer)
                .unwrap_err()
                .kind,
            NotAllowed
        );
    }

    #[test]
    fn the_last_stage_succeeding_completes_the_order() {
        let facts = deployer(&[S::Succeeded, S::Verifying]);
        let t = decide(InProgress, &report(2, Outcome::Succeeded), &facts).unwrap();
        assert_eq!((t.to, t.event), (Succeeded, "stage_succeeded"));
        assert_eq!(t.then.unwrap().0, "succeeded");
        let facts = deployer(&[S::Deploying, S::Pending]);
        let t = decide(InProgress, &report(1, Outcome::Succeeded), &facts).unwrap();
        assert_eq!((t.to, t.then), (InProgress, None));
        let t = decide(InProgress, &report(1, Outcome::Verifying), &facts).unwrap();
        assert_eq!(t.stage.unwrap().to, S::Verifying);
    }

    #[test]
    fn a_failure_fails_the_order_and_rolls_back_when_asked() {
        let facts = deployer(&[S::Deploying]);
        let t = decide(InProgress, &report(1, Outcome::Failed), &facts).unwrap();
        assert_eq!((t.to, t.event), (Failed, "stage_failed"));
        assert_eq!(t.stage.unwrap().to, S::RollingBack);
        assert_eq!(t.job, Some(JobKind::Rollback));
        assert_eq!(t.then.unwrap().0, "rollback_started");
        let mut manual = facts.clone();
        manual.auto_rollback = false;
        let t = decide(InProgress, &report(1, Outcome::Failed), &manual).unwrap();
        assert_eq!((t.stage.unwrap().to, t.job), (S::Failed, None));
        // Failed before writing anything: nothing to roll back.
        let mut untouched = facts.clone();
        untouched.stages[0].deployed = false;
        let t = decide(InProgress, &report(1, Outcome::Failed), &untouched).unwrap();
        assert_eq!((t.stage.unwrap().to, t.job), (S::Failed, None));
    }

    #[test]
    fn rollback_only_of_a_deployed_stage() {
        for status in [S::Succeeded, S::Failed] {
            let facts = deployer(&[status, S::Pending]);
            let t = decide(InProgress, &roll_back(1), &facts).unwrap();
            assert_eq!(t.stage.unwrap().to, S::RollingBack);
            assert_eq!(t.job, Some(JobKind::Rollback));
        }
        for status in [S::Pending, S::Deploying, S::RollingBack, S::RolledBack] {
            let facts = deployer(&[status]);
            assert_eq!(
                decide(InProgress, &roll_back(1), &facts).unwrap_err().kind,
                Conflict,
                "{status}"
            );
        }
        let mut never_written = deployer(&[S::Failed]);
        never_written.stages[0].deployed = false;
        assert_eq!(
            decide(Failed, &roll_back(1), &never_written)
                .unwrap_err()
                .kind,
            Conflict
        );
        let facts = deployer(&[S::Succeeded]);
        for state in [PendingApproval, Approved, Rejected, Closed] {
            assert_eq!(
                decide(state, &roll_back(1), &facts).unwrap_err().kind,
                Conflict,
                "{state}"
            );
        }
        // A finished release can be rolled back; it stays succeeded until
        // the rollback is done.
        let t = decide(Succeeded, &roll_back(1), &facts).unwrap();
        assert_eq!(t.to, Succeeded);
    }

    #[test]
    fn rollback_outcomes() {
        // Stage 1 rolled back before stage 2 ran: nothing of the order runs,
        // and stage 2 never will.
        let facts = deployer(&[S::RollingBack, S::Pending]);
        let t = decide(InProgress, &report(1, Outcome::Succeeded), &facts).unwrap();
        assert_eq!(
            (t.to, t.event, t.stage.unwrap().to),
            (RolledBack, "rolled_back", S::RolledBack)
        );
        let t = decide(Failed, &report(1, Outcome::Failed), &facts).unwrap();
        assert_eq!(
            (t.to, t.event, t.stage.unwrap().to),
            (Failed, "rollback_failed", S::Failed)
        );
        let t = decide(Succeeded, &report(1, Outcome::Succeeded), &facts).unwrap();
        assert_eq!(t.to, RolledBack);
        // A failed rollback of a finished order leaves it finished.
        let t = decide(Succeeded, &report(1, Outcome::Failed), &facts).unwrap();
        assert_eq!(t.to, Succeeded);
    }

    #[test]
    fn a_rollback_of_some_stages_leaves_the_order_partially_rolled_back() {
        use State::*;
        // (order state, stage statuses with stage 2 rolling back, expected)
        let cases = [
            // Stage 1 still runs the new version.
            (
                Succeeded,
                [S::Succeeded, S::RollingBack, S::Succeeded],
                PartiallyRolledBack,
            ),
            (
                InProgress,
                [S::Succeeded, S::RollingBack, S::Pending],
                PartiallyRolledBack,
            ),
            (
                Failed,
                [S::Succeeded, S::RollingBack, S::Pending],
                PartiallyRolledBack,
            ),
            // The last stage still running the version is rolled back.
            (
                PartiallyRolledBack,
                [S::RolledBack, S::RollingBack, S::RolledBack],
                RolledBack,
            ),
            (
                PartiallyRolledBack,
                [S::Succeeded, S::RollingBack, S::RolledBack],
                PartiallyRolledBack,
            ),
            // Another stage failed and is not dealt with yet: still failed.
            (Failed, [S::Failed, S::RollingBack, S::Pending], Failed),
            // A finished order never opens again, whatever its stages.
            (
                Succeeded,
                [S::Failed, S::RollingBack, S::Succeeded],
                PartiallyRolledBack,
            ),
            (
                PartiallyRolledBack,
                [S::Failed, S::RollingBack, S::RolledBack],
                RolledBack,
            ),
        ];
        for (state, stages, expected) in cases {
            let facts = deployer(&stages);
            let t = decide(state, &report(2, Outcome::Succeeded), &facts).unwrap();
            assert_eq!(t.to, expected, "{state} {stages:?}");
            assert!(
                state.is_open() || !t.to.is_open(),
                "{state} {stages:?} must stay finished"
            );
        }
        // Nothing more deploys once the order is over.
        let facts = deployer(&[S::Succeeded, S::RolledBack, S::Pending]);
        for state in [PartiallyRolledBack, RolledBack] {
            assert_eq!(
                decide(state, &Command::Deploy { stage: 3 }, &facts)
                    .unwrap_err()
                    .kind,
                Conflict
            );
        }
        // Its other stages can still be rolled back.
        let t = decide(PartiallyRolledBack, &roll_back(1), &facts).unwrap();
        assert_eq!(t.stage.unwrap().to, S::RollingBack);
    }

    #[test]
    fn stale_reports_are_refused() {
        for status in [S::Pending, S::Succeeded, S::Failed, S::RolledBack] {
            let facts = deployer(&[status]);
            for outcome in [Outcome::Verifying, Outcome::Succeeded, Outcome::Failed] {
                assert_eq!(
                    decide(InProgress, &report(1, outcome.clone()), &facts)
                        .unwrap_err()
                        .kind,
                    Conflict,
                    "{status} {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn stage_statuses_parse_and_print() {
        for status in StageStatus::ALL {
            assert_eq!(status.as_str().parse::<StageStatus>(), Ok(status));
        }
        assert!("done".parse::<StageStatus>().is_err());
    }

    #[test]
    fn states_parse_and_print() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("open".parse::<State>().is_err());
        assert!(!Succeeded.is_open() && !Rejected.is_open() && !Closed.is_open());
        assert!(!RolledBack.is_open() && !PartiallyRolledBack.is_open());
    }
}
