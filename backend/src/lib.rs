//! Rollway: release tickets, approvals and staged rollouts to Kubernetes
//! from GitLab. See ARCHITECTURE.md for the map of this crate.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod engine;
pub mod error;
pub mod flows;
pub mod gitlab;
pub mod http;
pub mod jwks;
pub mod kube;
#[cfg(test)]
mod layering;
pub mod prometheus;
pub mod secret;
pub mod server;
pub mod sim;
pub mod smoke;
