//! The `notify` kind: sends one delivery (`db::notifications`) — a Slack
//! message, or a webhook signed the Standard Webhooks way with the same
//! `webhook-id` on every attempt — and records the attempt fenced on the
//! job's lease, so two servers never both record it. A 2xx delivers it; a
//! 410 disables the destination; a 429 is tried again after its
//! `Retry-After`; anything else (an error, a timeout, a redirect, which is
//! never followed) is tried again on the retry schedule, and fails once
//! the schedule is over. Unless an admin allows it, nothing is sent to a
//! host that is, or resolves to, an address on the local network. A server that dies after the destination took a
//! message but before recording it sends it again on takeover, under the
//! same `webhook-id`, for the receiver to tell.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use super::{Context, Done, Error, Kind};
use crate::db::jobs::{Job, Subject};
use crate::db::notifications::{self, Attempted, NOTIFY_JOB, Outgoing};
use crate::db::now_ms;
use crate::domain::notify::{self, DestinationKind};

/// Sends a delivery.
pub(super) struct Notify;

/// How long a destination may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `Retry-After` honoured.
const LONGEST_RETRY_AFTER_S: u64 = 86_400;

/// The client deliveries go out through: no redirects followed, a timeout.
pub fn client(local_network: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .user_agent(concat!("Rollway/", env!("CARGO_PKG_VERSION")));
    let builder = if local_network {
        builder
    } else {
        builder.dns_resolver(std::sync::Arc::new(PublicOnly))
    };
    builder.build().unwrap_or_default()
}

/// Resolves names to their addresses off the local network only, at every
/// connect: a name that resolved to a public address when it was checked
/// cannot be pointed at this host or the local network just before the
/// request (DNS rebinding). A name with no other address fails to connect.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !notify::local_address(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(notify::LOCAL_REFUSED.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The body of a webhook: Standard Webhooks' `type`, `timestamp`, `data`.
fn webhook_body(o: &Outgoing) -> String {
    let at = jiff::Timestamp::from_millisecond(o.notice.at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    serde_json::json!({"type": o.notice.event, "timestamp": at, "data": o.notice}).to_string()
}

/// Seconds a 429's `Retry-After` asks to wait: a number of seconds or an
/// HTTP date (RFC 9110; one in the past is no wait), at most
/// [`LONGEST_RETRY_AFTER_S`].
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds = match raw.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let at = jiff::fmt::rfc2822::DateTimeParser::new()
                .parse_timestamp(raw)
                .ok()?;
            let left = at.as_second() - jiff::Timestamp::now().as_second();
            u64::try_from(left.max(0)).unwrap_or(0)
        }
    };
    Some(seconds.min(LONGEST_RETRY_AFTER_S))
}

/// Why `url` may not be sent to now: its host names (or resolves to) an
/// address on the local network, which the server does not allow.
async fn local_network(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if let Some(why) = notify::refuse_local_host(&parsed) {
        return Some(why);
    }
    let host = parsed.host_str()?;
    let port = parsed.port_or_known_default()?;
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs
            .any(|a| notify::local_address(a.ip()))
            .then(|| notify::LOCAL_REFUSED.to_string()),
        // Sending fails the same way, and is tried again.
        Err(_) => None,
    }
}

/// Sends `o` once: the status, or what went wrong.
async fn send(ctx: &Context, o: &Outgoing) -> Result<(StatusCode, HeaderMap), String> {
    let url = o.url.expose().as_str();
    let request = match o.kind {
        DestinationKind::Slack => ctx
            .http
            .post(url)
            .json(&serde_json::json!({"text": o.notice.slack_text()})),
        DestinationKind::Webhook => {
            let body = webhook_body(o);
            let timestamp = now_ms() / 1000;
            let secret = o
                .secret
                .as_ref()
                .ok_or("the destination has no signing secret")?;
            let signature =
                notify::sign(secret.expose(), &o.delivery.message_id, timestamp, &body)?;
            ctx.http
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .header("webhook-id", &o.delivery.message_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
        }
    };
    match request.send().await {
        Ok(response) => Ok((response.status(), response.headers().clone())),
        // The error's text may hold the URL (a Slack token): never shown.
        Err(e) if e.is_timeout() => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
        Err(e) if e.is_connect() => Err("could not connect".into()),
        Err(_) => Err("the request failed".into()),
    }
}

impl Kind for Notify {
    const NAME: &'static str = NOTIFY_JOB;

    async fn run(&self, ctx: &Context, job: &Job) -> Result<Done, Error> {
        let Subject::Delivery { id } = job.subject else {
            return Err(Error::Fail(format!(
                "a {} job works on a delivery, not on a {}",
                job.kind,
                job.subject.kind()
            )));
        };
        let base = ctx.settings.public_url.as_deref().unwrap_or("");
        let Some(o) = notifications::outgoing(&ctx.db.pool, &ctx.sealer, id, base).await? else {
            return Ok(Done::Moot("the delivery is gone".into()));
        };
        if o.delivery.status != "pending" {
            return Ok(Done::Moot(format!("delivery is {}", o.delivery.status)));
        }
        if !ctx.settings.webhook_local_network
            && let Some(why) = local_network(o.url.expose()).await
        {
            let failed = Attempted::Failed {
                status: None,
                error: why,
            };
            notifications::record(&ctx.db, &job.lease, id, &failed).await?;
            return Ok(Done::Recorded);
        }
        if o.disabled {
            let failed = Attempted::Failed {
                status: None,
                error: "the destination is disabled (it answered 410 Gone)".into(),
            };
            notifications::record(&ctx.db, &job.lease, id, &failed).await?;
            return Ok(Done::Recorded);
        }
        let attempt = o.delivery.attempts as usize + 1;
        let schedule = &ctx.settings.webhook_retry;
        let again = |status: Option<u16>, error: String, wait: Option<u64>| match wait
            .or_else(|| notify::next_attempt_in(schedule, attempt))
        {
            Some(seconds) => (
                Attempted::Retry { status, error },
                Some(now_ms() + seconds as i64 * 1000),
            ),
            None => (
                Attempted::Failed {
                    status,
                    error: format!("{error} (gave up after {attempt} attempts)"),
                },
                None,
            ),
        };
        let (attempted, later) = match send(ctx, &o).await {
            Ok((status, _)) if status.is_success() => (
                Attempted::Delivered {
                    status: status.as_u16(),
                },
                None,
            ),
            Ok((StatusCode::GONE, _)) => (
                Attempted::Gone {
                    error: "the destination answered 410 Gone: it takes nothing more".into(),
                },
                None,
            ),
            Ok((StatusCode::TOO_MANY_REQUESTS, headers)) => {
                let wait = retry_after(&headers);
                let more = notify::next_attempt_in(schedule, attempt).is_some();
                again(
                    Some(429),
                    "429 Too Many Requests".into(),
                    wait.filter(|_| more),
                )
            }
            Ok((status, _)) if status.is_redirection() => again(
                Some(status.as_u16()),
                format!("{status}: redirects are not followed"),
                None,
            ),
            Ok((status, _)) => again(Some(status.as_u16()), status.to_string(), None),
            Err(error) => again(None, error, None),
        };
        notifications::record(&ctx.db, &job.lease, id, &attempted).await?;
        Ok(match later {
            Some(at) => Done::Later {
                at,
                note: format!("attempt {attempt} failed; trying again"),
            },
            None => Done::Recorded,
        })
    }

    async fn fail(&self, ctx: &Context, job: &Job, message: String) -> Result<Done, Error> {
        if let Subject::Delivery { id } = job.subject {
            let failed = Attempted::Failed {
                status: None,
                error: message.clone(),
            };
            notifications::record(&ctx.db, &job.lease, id, &failed).await?;
        }
        Ok(Done::Moot(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test]
    async fn names_resolve_to_public_addresses_only() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let local = PublicOnly
            .resolve(reqwest::dns::Name::from_str("localhost").unwrap())
            .await;
        assert!(local.is_err(), "localhost has no public address");
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(7));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999999"));
        assert_eq!(retry_after(&headers), Some(LONGEST_RETRY_AFTER_S));
        // An HTTP date: in the past, no wait; ahead, the time until it.
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(0));
        let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&ahead)
            .unwrap();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!((115..=120).contains(&wait), "{date}: {wait}");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
