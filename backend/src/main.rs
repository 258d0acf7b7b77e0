//! The `rollway` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use rollway::cli;
use rollway::config::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// jemalloc serves every allocation, SQLite's included (it replaces
/// `malloc`): measured on the work order bench against glibc's allocator,
/// a quarter less CPU per request and a quarter less memory, because
/// glibc gives each of SQLite's connection threads an arena that holds on
/// to what it freed (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings: a background thread hands memory freed for a
/// second back to the system, so an idle server shrinks after a burst.
#[allow(non_upper_case_globals)]
#[unsafe(no_mangle)]
pub static malloc_conf: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(cli))
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("ROLLWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
