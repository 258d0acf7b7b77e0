//! What both benchmarks share: the real `rollway` binary started as its own
//! process (so its memory and CPU are its own), its RSS and CPU time read
//! from `/proc`, bulk inserts for seeding, and the environment knobs.

#![allow(dead_code)] // each benchmark uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rollway::db::Db;

pub const SECRET_KEY: &str = "bench-secret-key-0123456789abcdef0123456789";
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and waits for the line `<prefix>http://ADDR` on its
/// standard output; the rest of its output is drained.
pub fn start(mut command: Command, prefix: &str) -> Server {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(addr) = line.strip_prefix(prefix) {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

/// The real `rollway serve` on database `url`, on a loopback port, logging
/// warnings only.
pub fn start_rollway(url: &str, dir: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollway"));
    command
        .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
        .env("ROLLWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("ROLLWAY_LOG", "warn")
        .current_dir(dir);
    // `BENCH_SERVER_ENV="K=V,K2=V2"`: environment for the server alone
    // (allocator settings and the like, for experiments).
    if let Ok(pairs) = std::env::var("BENCH_SERVER_ENV") {
        for pair in pairs.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("BENCH_SERVER_ENV: K=V,…");
            command.env(k, v);
        }
    }
    start(command, "Rollway listening on ")
}

/// Runs a `rollway` command on database `url` and returns its output.
pub fn cli(url: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rollway"))
        .args(["--database-url", url])
        .args(args)
        .env("ROLLWAY_SECRET_KEY", SECRET_KEY)
        .current_dir(dir)
        .output()
        .expect("run rollway");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Resident set size now and at its peak, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of a process.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name).
    let hz = 100.0;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

/// Inserts rows in multi-row statements of 500 inside one transaction.
pub async fn insert_rows(db: &Db, head: &str, rows: impl Iterator<Item = String>) {
    let mut tx = db.begin_write().await.unwrap();
    let mut batch = Vec::with_capacity(500);
    for row in rows {
        batch.push(row);
        if batch.len() == 500 {
            let sql = format!("{head} VALUES {}", batch.join(","));
            sqlx::query(&sql).execute(&mut *tx).await.unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        let sql = format!("{head} VALUES {}", batch.join(","));
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
