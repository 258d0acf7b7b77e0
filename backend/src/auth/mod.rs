//! Who is asking: passwords, browser sessions, API tokens, CSRF, login rate
//! limits, and the casbin policy that answers "may this actor do this here".

pub mod extract;
pub mod password;
pub mod policy;
pub mod rate_limit;

pub use extract::{ApiActor, CsrfForm, NoFields, PageActor};
pub use policy::{Action, OnNode, Policy};
