//! The Prometheus client of verification gates: instant queries against a
//! cluster's Prometheus (`GET /api/v1/query`), handed its URL and opened
//! token by `db` (it runs no SQL). Every call has a deadline; a failure
//! worth trying again (no connection, 5xx without Prometheus' error
//! envelope, 429) is tried again with a short backoff while the deadline
//! lasts. Prometheus' own error envelope (`status: error`, `errorType`,
//! `error`) is reported as such. Redirects are never followed, answers are
//! read up to a size limit, and the token is never logged.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::cluster::PrometheusAccess;

/// The largest answer read (a query returning more is refused).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// The first pause between two tries; it doubles.
const BACKOFF: Duration = Duration::from_millis(200);

/// Why a query has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromError {
    /// Prometheus answered with its error envelope.
    #[error("Prometheus of cluster {cluster} refused the query ({error_type}): {error}")]
    Refused {
        cluster: String,
        error_type: String,
        error: String,
    },
    /// No usable answer within the deadline.
    #[error("Prometheus of cluster {cluster} did not answer: {why}")]
    Unreachable { cluster: String, why: String },
    /// An answer that is not what the Prometheus API gives.
    #[error("Prometheus of cluster {cluster} gave an answer Rollway cannot read: {why}")]
    Malformed { cluster: String, why: String },
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

/// The client; one per server.
pub struct PrometheusClient {
    http: reqwest::Client,
    deadline: Duration,
}

impl PrometheusClient {
    /// A client whose calls last at most `deadline` each, retries
    /// included.
    pub fn new(deadline: Duration) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(deadline)
            .user_agent(concat!("rollway/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        PrometheusClient { http, deadline }
    }

    /// The instant vector (or scalar, as one unlabelled sample) of `query`
    /// now.
    pub async fn query(
        &self,
        access: &PrometheusAccess,
        query: &str,
    ) -> Result<Vec<Sample>, PromError> {
        let unreachable = |why: String| PromError::Unreachable {
            cluster: access.cluster.clone(),
            why,
        };
        let tries = async {
            let mut pause = BACKOFF;
            loop {
                match self.try_once(access, query).await {
                    Err(Try::Again(why)) => {
                        tracing::info!(cluster = %access.cluster, error = %why, "Prometheus query failed; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(Try::Final(e)) => return Err(e),
                    Ok(samples) => return Ok(samples),
                }
            }
        };
        tokio::time::timeout(self.deadline, tries)
            .await
            .unwrap_or_else(|_| {
                Err(unreachable(format!(
                    "no answer within {} s",
                    self.deadline.as_secs_f64()
                )))
            })
    }

    async fn try_once(&self, access: &PrometheusAccess, query: &str) -> Result<Vec<Sample>, Try> {
        let cluster = access.cluster.clone();
        let mut request = self
            .http
            .get(format!("{}/api/v1/query", access.url))
            .query(&[("query", query)]);
        if let Some(token) = &access.token {
            request = request.bearer_auth(token.expose());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Try::Again(without_url(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Try::Final(PromError::Unreachable {
                cluster,
                why: format!("it answered {status} (a redirect, not followed)"),
            }));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_ANSWER {
                        return Err(Try::Final(PromError::Malformed {
                            cluster,
                            why: format!("the answer is larger than {} MiB", MAX_ANSWER >> 20),
                        }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(Try::Again(without_url(&e))),
            }
        }
        let envelope: Option<Envelope> = serde_json::from_slice(&body).ok();
        match envelope {
            Some(e) if e.status == "error" => Err(Try::Final(PromError::Refused {
                cluster,
                error_type: clip(e.error_type.as_deref().unwrap_or("unknown")),
                error: clip(e.error.as_deref().unwrap_or("")),
            })),
            Some(e) if e.status == "success" && status.is_success() => match e.data {
                Some(data) => {
                    samples(&data).map_err(|why| Try::Final(PromError::Malformed { cluster, why }))
                }
                None => Err(Try::Final(PromError::Malformed {
                    cluster,
                    why: "a success without data".into(),
                })),
            },
            _ if status.is_server_error() || status.as_u16() == 429 => {
                Err(Try::Again(format!("it answered {status}")))
            }
            _ => Err(Try::Final(PromError::Unreachable {
                cluster,
                why: format!("it answered {status}, not the Prometheus API"),
            })),
        }
    }
}

enum Try {
    Again(String),
    Final(PromError),
}

/// An HTTP error without the URL (it may carry the query).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", clip(&detail))
    }
}

/// Text from the other side, one line and at most 300 characters.
fn clip(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    line.trim().to_string()
}

/// The samples of an instant query's data.
fn samples(data: &Data) -> Result<Vec<Sample>, String> {
    let value_of = |pair: &Value| -> Result<f64, String> {
        let text = pair
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a sample without a value: {}", clip(&pair.to_string())))?;
        text.parse::<f64>()
            .map_err(|_| format!("a value that is not a number: {}", clip(text)))
    };
    match data.result_type.as_str() {
        "vector" => data
            .result
            .as_array()
            .ok_or("a vector that is not a list")?
            .iter()
            .map(|series| {
                Ok(Sample {
                    labels: series
                        .get("metric")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                    value: value_of(series.get("value").unwrap_or(&Value::Null))?,
                })
            })
            .collect(),
        "scalar" => Ok(vec![Sample {
            labels: serde_json::Map::new(),
            value: value_of(&data.result)?,
        }]),
        other => Err(format!(
            "a {other} result; a gate's query must give an instant vector or a scalar"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        serde_json::from_value::<Envelope>(v).unwrap().data.unwrap()
    }

    #[test]
    fn vectors_and_scalars_read_as_samples() {
        let vector = data(
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"deployment": "web"}, "value": [1.5, "0.2"]},
                {"metric": {"deployment": "api"}, "value": [1.5, "NaN"]},
                {"metric": {}, "value": [1.5, "+Inf"]}
            ]}}),
        );
        let got = samples(&vector).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].labels["deployment"], "web");
        assert_eq!(got[0].value, 0.2);
        assert!(got[1].value.is_nan());
        assert_eq!(got[2].value, f64::INFINITY);
        let scalar = data(
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.5, "2"]}}),
        );
        assert_eq!(samples(&scalar).unwrap()[0].value, 2.0);
        let matrix =
            data(json!({"status": "success", "data": {"resultType": "matrix", "result": []}}));
        assert!(samples(&matrix).unwrap_err().contains("instant vector"));
        let bad = data(
            json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}}),
        );
        assert!(samples(&bad).unwrap_err().contains("not a number"));
    }

    #[test]
    fn text_from_prometheus_is_one_short_line() {
        assert_eq!(clip("a\nb\tc"), "a b c");
        assert_eq!(clip(&"x".repeat(500)).len(), 300);
    }
}
