//! The database layer's own errors: what a query found or refused (a
//! missing row, a rule the stored data breaks, the state machine's refusal,
//! a job lease another worker holds) apart from the database failing.
//! Callers that care match on them (the engine on [`Error::LeaseLost`]);
//! flows and the edges turn them into the shell's [`crate::error::Error`]
//! through the one `From` below. Unique constraints broken by an insert are
//! named by [`super::constraint::violated`], never by the error's text.

use std::borrow::Cow;

use crate::domain::work_order::Refused;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change breaks a rule given what is stored (something depends on
    /// the row, a name is taken).
    #[error("{0}")]
    Conflict(String),
    /// A value fails its rule before anything is written.
    #[error("{message}")]
    Validation {
        field: Option<Cow<'static, str>>,
        message: String,
    },
    /// The work order state machine refused the command.
    #[error("{}", .0.refusal.reason)]
    Refused(Refused),
    /// An engine job's lease is no longer this worker's (it ran out and
    /// another worker took the job over); nothing was written.
    #[error("job {job_id} is no longer held by this worker")]
    LeaseLost { job_id: i64 },
    /// The database failed or answered something unreadable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Anything else unexpected (stored data that cannot be read back).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn validation(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl From<Refused> for Error {
    fn from(refused: Refused) -> Self {
        Error::Refused(refused)
    }
}

impl From<Error> for crate::error::Error {
    /// What people are told: the words and status of [`Shown`] below; a
    /// database failure keeps its whole chain for the log, answered
    /// generically.
    ///
    /// [`Shown`]: crate::error::Shown
    fn from(e: Error) -> Self {
        use crate::error::{Error as Shell, Shown};
        match e {
            Error::Database(e) => Shell::Internal(anyhow::Error::new(e).context("database")),
            Error::Internal(e) => Shell::Internal(e),
            other => other.shown().into_owned(),
        }
    }
}

/// The one mapping of each kind to the shell's error: the same words, the
/// status their kind has; a lost lease reads as a conflict (a worker's late
/// report); failures as internal errors.
impl crate::error::Shown for Error {
    fn shown(&self) -> Cow<'_, crate::error::Error> {
        use crate::error::Error as Shell;
        Cow::Owned(match self {
            Error::NotFound(m) => Shell::NotFound(m.clone()),
            Error::Conflict(m) => Shell::Conflict(m.clone()),
            Error::Validation { field, message } => Shell::Validation {
                field: field.clone(),
                message: message.clone(),
            },
            Error::Refused(refused) => refused.clone().into(),
            lost @ Error::LeaseLost { .. } => Shell::Conflict(lost.to_string()),
            Error::Database(e) => Shell::Internal(anyhow::anyhow!("database: {e}")),
            Error::Internal(e) => Shell::Internal(anyhow::anyhow!("{e:#}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::work_order::{Command, Refusal, RefusalKind, refusal};

    #[test]
    fn each_kind_keeps_its_status_and_words() {
        let shell = |e: Error| crate::error::Error::from(e);
        assert_eq!(
            shell(Error::NotFound("no item 3".into())).status_code(),
            404
        );
        assert_eq!(shell(Error::Conflict("taken".into())).status_code(), 409);
        let invalid = shell(Error::validation("name", "too long"));
        assert_eq!(invalid.status_code(), 422);
        assert_eq!(invalid.to_string(), "too long");
        let lost = shell(Error::LeaseLost { job_id: 7 });
        assert_eq!(lost.status_code(), 409);
        assert!(lost.to_string().contains("job 7"));
        let refused = refusal(
            &Command::Close {
                reason: String::new(),
            },
            Refusal {
                kind: RefusalKind::Invalid,
                reason: "a reason is required".into(),
            },
        );
        let refused = shell(Error::Refused(refused));
        assert_eq!(refused.status_code(), 422);
        assert_eq!(refused.body().error.field.as_deref(), Some("reason"));
    }

    #[test]
    fn database_failures_hide_their_detail() {
        let e = crate::error::Error::from(Error::Database(sqlx::Error::RowNotFound));
        assert_eq!(e.status_code(), 500);
        assert!(!e.public_message().contains("RowNotFound"));
    }
}
