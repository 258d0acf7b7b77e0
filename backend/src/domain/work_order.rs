//! THE work order state machine. Pure: it takes the current state, a
//! command and the facts about the actor, and returns the transition to
//! persist or a refusal with its reason. The shell (`db::work_orders`)
//! loads the facts, calls [`decide`], and writes the new state together
//! with the timeline event in one transaction. Nothing else decides whether
//! a work order may change.
//!
//! ```text
//! pending_approval --approve (enough approvals)--> approved --deploy stage 1--> in_progress
//! pending_approval --reject--> rejected
//! all stages succeeded --> succeeded ; any stage failed --> failed
//! any open state --close--> closed (refused while a stage is mid-rollout)
//! ```
//!
//! Open states are `pending_approval`, `approved`, `in_progress` and
//! `failed` (a failed release still needs a decision: roll back or close);
//! `succeeded`, `rejected` and `closed` are terminal.

use std::fmt;
use std::str::FromStr;

/// Where a work order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    PendingApproval,
    Approved,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    Closed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::PendingApproval,
        State::Approved,
        State::InProgress,
        State::Succeeded,
        State::Failed,
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

/// Something someone asks of a work order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Approve { comment: String },
    Reject { comment: String },
    Close { reason: String },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Close { .. } => "close",
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
    /// A stage is deploying or paused mid-rollout.
    pub stage_mid_rollout: bool,
}

/// Why a command was refused, and which HTTP status says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 403: the actor may not do this.
    NotAllowed,
    /// 409: not in this state (or not again).
    Conflict,
    /// 422: the command itself is incomplete.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
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
}

/// Longest accepted comment or reason.
pub const MAX_NOTE_LEN: usize = 2000;

/// Decides what `command` does to an order in `state`.
pub fn decide(state: State, command: &Command, facts: &Facts) -> Result<Transition, Refusal> {
    use RefusalKind::*;
    match command {
        Command::Approve { comment } | Command::Reject { comment } => {
            check_note(comment, false)?;
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
                return Ok(Transition {
                    from: state,
                    to: State::Rejected,
                    event: "rejected",
                    records_approval: false,
                    note: comment.clone(),
                });
            }
            let approvals = facts.approvals + 1;
            let enough = approvals >= facts.required_approvals.max(1);
            Ok(Transition {
                from: state,
                to: if enough {
                    State::Approved
                } else {
                    State::PendingApproval
                },
                event: if enough {
                    "approved"
                } else {
                    "approval_recorded"
                },
                records_approval: true,
                note: comment.clone(),
            })
        }
        Command::Close { reason } => {
            check_note(reason, true)?;
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
            if facts.stage_mid_rollout {
                return Err(refuse(
                    Conflict,
                    "a stage is rolling out; wait for it to finish or fail before closing",
                ));
            }
            Ok(Transition {
                from: state,
                to: State::Closed,
                event: "closed",
                records_approval: false,
                note: reason.clone(),
            })
        }
    }
}

fn check_note(note: &str, required: bool) -> Result<(), Refusal> {
    if required && note.trim().is_empty() {
        return Err(refuse(RefusalKind::Invalid, "give a reason"));
    }
    if note.chars().count() > MAX_NOTE_LEN {
        return Err(refuse(
            RefusalKind::Invalid,
            format!("keep it under {MAX_NOTE_LEN} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefusalKind::*;
    use State::*;

    fn approver() -> Facts {
        Facts {
            actor_is_approver: true,
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
        rolling.stage_mid_rollout = true;
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
    fn states_parse_and_print() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("open".parse::<State>().is_err());
        assert!(!Succeeded.is_open() && !Rejected.is_open() && !Closed.is_open());
    }
}
