//! Times as pages show them: relative ("3 min ago", "in 29 days") with
//! the exact UTC time on hover, and durations ("4 min 12 s").

pub use crate::domain::text::duration;
use std::fmt;

/// `2026-11-23 07:33 UTC` from unix milliseconds.
pub fn format_time(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "-".into())
}

/// `ms` as an HTML `datetime` value (RFC 3339, UTC).
fn machine_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An RFC 3339 time (as GitLab writes them) in unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `ms` as a date, `2026-11-23` (UTC).
pub fn format_date(ms: i64) -> String {
    let mut day = format_time(ms);
    day.truncate(10);
    day
}

/// How long ago `ms` was, in words ("12 s ago", "3 min ago"), for times
/// shown beside their exact value.
pub fn ago(ms: i64) -> String {
    relative(ms, crate::db::now_ms())
}

/// `at` seen from `now`: "just now", "5 min ago", "in 3 days".
fn relative(at: i64, now: i64) -> String {
    let span = (now - at).abs();
    if span < 5_000 {
        return "just now".into();
    }
    let words = rough(span);
    if at <= now {
        format!("{words} ago")
    } else {
        format!("in {words}")
    }
}

/// A span of milliseconds in its largest unit: "12 s", "3 min", "1 day".
fn rough(ms: i64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 => format!("{} h", seconds / 3600),
        86_400..=172_799 => "1 day".into(),
        _ => format!("{} days", seconds / 86_400),
    }
}

/// A time on a page: relative, with the exact time on hover and for
/// machines; "—" when there is none. Renders as HTML (write it with
/// `|safe`): every part is made here from a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment(pub Option<i64>);

impl Moment {
    pub fn at(ms: i64) -> Self {
        Moment(Some(ms))
    }

    /// The exact time, for places that show it in full.
    pub fn exact(&self) -> String {
        self.0.map(format_time).unwrap_or_else(|| "—".into())
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("—"),
            Some(ms) => write!(
                f,
                r#"<time datetime="{}" title="{}">{}</time>"#,
                machine_time(ms),
                format_time(ms),
                ago(ms)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_in_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(machine_time(1_500), "1970-01-01T00:00:01.5Z");
    }

    #[test]
    fn gitlab_times_are_read() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.500Z"), Some(1_500));
        assert_eq!(
            parse_rfc3339("2026-11-01T10:00:00+01:00")
                .map(format_date)
                .as_deref(),
            Some("2026-11-01")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn relative_times_read_as_words_both_ways() {
        let now = 10_000_000_000;
        let cases = [
            (now - 2_000, "just now"),
            (now - 12_000, "12 s ago"),
            (now - 3 * 60_000 - 5_000, "3 min ago"),
            (now - 2 * 3_600_000, "2 h ago"),
            (now - 86_400_000 - 1, "1 day ago"),
            (now - 9 * 86_400_000, "9 days ago"),
            (now + 29 * 86_400_000 + 5, "in 29 days"),
            (now + 90_000, "in 1 min"),
        ];
        for (at, words) in cases {
            assert_eq!(relative(at, now), words, "{}", now - at);
        }
    }

    #[test]
    fn durations_keep_two_units() {
        let cases = [
            (0, "0 s"),
            (45_999, "45 s"),
            (4 * 60_000, "4 min"),
            (4 * 60_000 + 12_000, "4 min 12 s"),
            (2 * 3_600_000, "2 h"),
            (2 * 3_600_000 + 5 * 60_000 + 9_000, "2 h 5 min"),
            (86_400_000, "1 day"),
            (86_400_000 + 3 * 3_600_000, "1 day 3 h"),
            (3 * 86_400_000 + 4 * 3_600_000, "3 days 4 h"),
            (-5, "0 s"),
        ];
        for (ms, words) in cases {
            assert_eq!(duration(ms), words);
        }
    }

    #[test]
    fn a_moment_is_a_time_element_with_the_exact_time_on_hover() {
        let html = Moment::at(0).to_string();
        assert!(
            html.starts_with(
                r#"<time datetime="1970-01-01T00:00:00Z" title="1970-01-01 00:00 UTC">"#
            ),
            "{html}"
        );
        assert!(html.ends_with(" days ago</time>"), "{html}");
        assert_eq!(Moment(None).to_string(), "—");
    }
}
