//! The HTTP client of verification smoke checks: one GET of a URL the
//! stage's plan names, judged by its status alone. The URL comes from a
//! person, so the request carries no credentials of Rollway's, follows no
//! redirect (a 3xx is the answer), reads no body and ends at its timeout;
//! what comes back is the status and the time it took.

use std::time::{Duration, Instant};

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, or `None` when none came back.
    pub status: Option<u16>,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// Why no status came back (a timeout, no connection).
    pub error: Option<String>,
}

/// The client; one per server.
pub struct SmokeClient {
    http: reqwest::Client,
}

impl Default for SmokeClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SmokeClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rollway-smoke/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        SmokeClient { http }
    }

    /// GETs `url`, waiting at most `timeout` for the status line.
    pub async fn get(&self, url: &str, timeout: Duration) -> Attempt {
        let start = Instant::now();
        let answer = tokio::time::timeout(timeout, self.http.get(url).send()).await;
        let millis = start.elapsed().as_millis() as u64;
        match answer {
            Ok(Ok(response)) => Attempt {
                status: Some(response.status().as_u16()),
                millis,
                error: None,
            },
            Ok(Err(e)) => Attempt {
                status: None,
                millis,
                error: Some(if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "the request failed".to_string()
                }),
            },
            Err(_) => Attempt {
                status: None,
                millis,
                error: Some(format!("no answer within {} s", timeout.as_secs())),
            },
        }
    }
}
