//! Integration tests: each starts the real `rollway` binary on a random port
//! against a fresh SQLite file or PostgreSQL database, and talks HTTP.

mod common;

mod api_errors;
mod audit;
mod auth;
mod browser;
mod canary;
mod cli;
mod dashboard;
mod demo;
mod deploy_manifests;
mod engine;
mod engine_safety;
mod fake_gitlab;
mod fake_oidc;
mod fast_path;
mod fast_path_verify;
mod freezes;
mod fuzz;
mod gitlab;
mod gitlab_ci;
mod id_tokens;
mod kubectl;
mod kubectl_create;
mod kubectl_explain;
mod kubectl_kinds;
mod line_stops;
mod notifications;
mod ops;
mod order_page;
mod rbac;
mod read_scope;
mod registry;
mod release_pages;
mod releases;
mod sso;
mod tokens;
mod tree;
mod upgrade;
mod verification;
mod verify;
