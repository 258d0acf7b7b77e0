//! Rebuilds when a migration is added or changed, so `sqlx::migrate!` in
//! `src/db/mod.rs` embeds every file of both folders.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
