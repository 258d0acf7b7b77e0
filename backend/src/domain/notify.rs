//! Notifications, the pure part: which timeline events are told (and by
//! what name), the Standard Webhooks signature, the retry schedule, the
//! checks on a destination's URL, and the bodies sent (a Slack message, a
//! signed webhook's JSON). Sending is the engine's (`engine::notify`);
//! storing, `db::notifications`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;

/// The events a destination may ask for: (its name, the timeline event
/// kind it comes from, what it says).
pub const EVENTS: [(&str, &str, &str); 11] = [
    ("filed", "filed", "filed"),
    ("approved", "approved", "approved"),
    ("rejected", "rejected", "rejected"),
    ("stage_started", "stage_deploy_started", "stage started"),
    ("stage_paused", "stage_paused", "stage paused"),
    ("stage_succeeded", "stage_succeeded", "stage succeeded"),
    ("stage_failed", "stage_failed", "stage failed"),
    ("stage_rolled_back", "rolled_back", "stage rolled back"),
    (
        "freeze_overridden",
        "freeze_overridden",
        "freeze overridden",
    ),
    ("line_stopped", "line_stopped", "line stopped"),
    ("line_lifted", "line_lifted", "line stop lifted"),
];

/// The event name a timeline event of `kind` is told as, if it is told.
pub fn event_of(kind: &str) -> Option<&'static str> {
    EVENTS
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map(|(name, ..)| *name)
}

/// Whether `name` is an event a destination may ask for.
pub fn is_event(name: &str) -> bool {
    EVENTS.iter().any(|(n, ..)| *n == name)
}

/// Where a destination sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// A generic webhook, signed the Standard Webhooks way.
    Webhook,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Slack => "slack",
            DestinationKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "slack" => Some(DestinationKind::Slack),
            "webhook" => Some(DestinationKind::Webhook),
            _ => None,
        }
    }
}

/// The Standard Webhooks retry schedule, in seconds after the previous
/// attempt: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const RETRY_SCHEDULE: [u64; 8] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

/// When attempt `attempts + 1` is due after the last one, from `schedule`
/// (seconds between attempts); `None` once every attempt was made.
pub fn next_attempt_in(schedule: &[u64], attempts: usize) -> Option<u64> {
    schedule.get(attempts).copied()
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` header of `body` sent as message `id` at
/// `timestamp` (seconds): `v1,` and the base64 HMAC-SHA256, keyed with the
/// secret's bytes, of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "the signing secret is not base64".to_string())?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "unusable signing secret".to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Checks a destination's URL: `https` (or `http`), a host, no user or
/// password in it, at most 2,000 characters. What is wrong, in words.
pub fn check_url(text: &str) -> Result<url::Url, String> {
    if text.len() > 2000 {
        return Err("at most 2,000 characters".into());
    }
    let url = url::Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("a URL with a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("no user name or password in the URL".into());
    }
    Ok(url)
}

/// Whether `ip` is on the local network or the host itself (loopback,
/// private, link-local, unique-local, unspecified, broadcast or
/// multicast): where a webhook may not go unless an admin allows it.
pub fn local_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT (and cloud metadata).
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => local_address(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// Why a webhook may not go to `url` when local addresses are not
/// allowed: its host is a local IP address. (Names are checked when they
/// are resolved, at each attempt.)
pub fn refuse_local_host(url: &url::Url) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => std::net::IpAddr::V4(ip),
        url::Host::Ipv6(ip) => std::net::IpAddr::V6(ip),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        url::Host::Domain(_) => return None,
    };
    local_address(ip).then(|| LOCAL_REFUSED.to_string())
}

/// What a webhook to the local network is told.
pub const LOCAL_REFUSED: &str = "webhooks may not go to the local network or this host; an admin allows them with --webhook-allow-local-network";

/// What a destination's list shows of its URL: scheme, host and port only
/// (the rest may hold a token, as Slack's do).
pub fn url_hint(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
        Err(_) => "…".into(),
    }
}

/// One event as a destination is told it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Notice {
    /// The event's name (see the list a destination asks for).
    #[serde(rename = "type")]
    pub event: String,
    /// When it happened, Unix ms.
    pub at: i64,
    pub work_order_id: i64,
    pub work_order_title: String,
    pub release_item: String,
    pub version: String,
    pub node_path: String,
    /// The stage it concerns, if any.
    pub stage: Option<i64>,
    /// Who did it (`engine` for Rollway itself).
    pub actor: String,
    pub message: String,
    /// The work order's page.
    pub url: String,
}

impl Notice {
    /// The Slack message: one line with a link to the order.
    pub fn slack_text(&self) -> String {
        let label = EVENTS
            .iter()
            .find(|(n, ..)| *n == self.event)
            .map(|(.., l)| *l)
            .unwrap_or("event");
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let stage = self
            .stage
            .map(|s| format!(" stage {s}"))
            .unwrap_or_default();
        let message = if self.message.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&self.message))
        };
        format!(
            "<{}|#{} {}> ({} {} on {}){stage} {label} by {}{message}",
            self.url,
            self.work_order_id,
            escape(&self.work_order_title),
            escape(&self.release_item),
            escape(&self.version),
            self.node_path,
            escape(&self.actor),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector_signs_as_the_spec_says() {
        // From the Standard Webhooks specification's test vectors.
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("whsec_***", "m", 1, "{}").is_err());
    }

    #[test]
    fn a_new_secret_is_32_random_bytes_in_base64() {
        let a = new_secret();
        let key = STANDARD.decode(a.strip_prefix("whsec_").unwrap()).unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(a, new_secret());
    }

    #[test]
    fn the_schedule_runs_out_after_its_last_attempt() {
        assert_eq!(next_attempt_in(&RETRY_SCHEDULE, 0), Some(0));
        assert_eq!(next_attempt_in(&RETRY_SCHEDULE, 1), Some(5));
        assert_eq!(next_attempt_in(&RETRY_SCHEDULE, 7), Some(36000));
        assert_eq!(next_attempt_in(&RETRY_SCHEDULE, 8), None);
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        assert!(check_url("https://hooks.slack.com/services/T0/B0/xyz").is_ok());
        for bad in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "not a url",
            "https://",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            url_hint("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
    }

    #[test]
    fn local_addresses_are_told_apart() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(local_address(local.parse().unwrap()), "{local}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "100.128.0.1"] {
            assert!(!local_address(public.parse().unwrap()), "{public}");
        }
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(refuse_local_host(&url("http://127.0.0.1:9/x")).is_some());
        assert!(refuse_local_host(&url("http://[::1]/x")).is_some());
        assert!(refuse_local_host(&url("http://LOCALHOST/x")).is_some());
        assert!(refuse_local_host(&url("https://hooks.slack.com/x")).is_none());
    }

    #[test]
    fn events_map_from_the_timeline() {
        assert_eq!(event_of("stage_deploy_started"), Some("stage_started"));
        assert_eq!(event_of("rolled_back"), Some("stage_rolled_back"));
        assert_eq!(event_of("approval_recorded"), None);
        assert!(is_event("line_stopped") && !is_event("stage_deploy_started"));
    }

    #[test]
    fn a_slack_message_links_the_order_and_escapes_what_people_typed() {
        let notice = Notice {
            event: "stage_failed".into(),
            at: 0,
            work_order_id: 7,
            work_order_title: "Fix <b> & co".into(),
            release_item: "checkout".into(),
            version: "v1.2.0".into(),
            node_path: "/acme/pay".into(),
            stage: Some(2),
            actor: "engine".into(),
            message: "pods crash".into(),
            url: "https://rollway.example.com/work-orders/7".into(),
        };
        assert_eq!(
            notice.slack_text(),
            "<https://rollway.example.com/work-orders/7|#7 Fix &lt;b&gt; &amp; co> \
             (checkout v1.2.0 on /acme/pay) stage 2 stage failed by engine: pods crash"
        );
    }
}
