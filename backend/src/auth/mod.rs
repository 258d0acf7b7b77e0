//! Who is asking and what they may do: passwords, single sign-on, the
//! client address,
//! login rate limits, and the casbin policy that answers "may this actor do
//! this here". `auth` decides; the extractors that read requests and render
//! refusals live at the edges (`http::extract`, `api::extract`).

pub mod client;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod rate_limit;

pub use policy::{Action, OnNode, Policy};
