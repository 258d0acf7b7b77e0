//! Freeze windows: times when a node's subtree takes no deploys. A window
//! is one-off (a start and an end) or recurring, with GitLab's
//! freeze-period semantics: a cron expression for its start, one for its
//! end, and an IANA time zone both are read in; it is active between the
//! latest start and the next end after it.
//!
//! The cron expressions are the five standard Unix fields (minute, hour,
//! day of month, month, day of week; `*`, lists, ranges, steps, month and
//! day names, Sunday as 0 or 7, and the Vixie rule that a restricted day
//! of month and day of week match either), as GitLab reads them. Local
//! times are placed in the zone as RFC 5545 does: a time in a spring
//! gap moves forward by the gap, a time in an autumn fold takes the
//! earlier instant.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// How far a schedule is searched for its next or latest occurrence.
const SEARCH_DAYS: i32 = 366 * 5;

/// A five-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The bits of one field: `lo..=hi`, with `names` for `lo..` when given.
fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(lo + i as u32);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{what}: '{s}' is not a number{}", name_hint(names)))?;
        if n < lo || n > hi {
            return Err(format!("{what}: {n} is outside {lo}–{hi}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("{what}: the step in '{part}' is not a positive number")
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `5/15`: from 5 to the end, every 15.
                None if step > 1 => (value(range)?, hi),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("{what}: the range '{range}' runs backwards"));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            match v.checked_add(step) {
                Some(next) => v = next,
                None => break,
            }
        }
    }
    Ok(bits)
}

fn name_hint(names: &[&str]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" or a name ({}, …)", names[..3].join(", "))
    }
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "'{text}' is not a cron expression of five fields (minute hour day-of-month month day-of-week)"
            ));
        };
        let weekdays = field(weekday, "day of week", 0, 7, &WEEKDAYS)?;
        Ok(Cron {
            text: fields.join(" "),
            minutes: field(minute, "minute", 0, 59, &[])?,
            hours: field(hour, "hour", 0, 23, &[])? as u32,
            days: field(day, "day of month", 1, 31, &[])? as u32,
            months: field(month, "month", 1, 12, &MONTHS)? as u16,
            // Sunday is 0 or 7.
            weekdays: ((weekdays | (weekdays >> 7)) & 0x7f) as u8,
            any_day: day.starts_with('*'),
            any_weekday: weekday.starts_with('*'),
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    fn on(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let day = self.days & (1 << date.day()) != 0;
        let weekday = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => day || weekday,
            _ => day && weekday,
        }
    }

    /// The day's times, in order.
    fn times(&self, date: Date) -> impl DoubleEndedIterator<Item = DateTime> + '_ {
        (0..24i8)
            .filter(move |h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(move |m| self.minutes & (1 << m) != 0)
                    .map(move |m| date.at(h, m, 0, 0))
            })
    }

    /// The first time it fires strictly after `after`, in `tz`.
    pub fn next(&self, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let start = tz.to_datetime(after).date();
        (0..SEARCH_DAYS)
            .filter_map(|i| start.checked_add(i.days()).ok())
            .filter(|d| self.on(*d))
            .find_map(|d| {
                self.times(d)
                    .filter_map(|t| place(tz, t))
                    .find(|at| *at > after)
            })
    }

    /// The last time it fired at or before `at`, in `tz`.
    pub fn latest(&self, tz: &TimeZone, at: Timestamp) -> Option<Timestamp> {
        // A moved-forward gap time may land after its day: look a day on.
        let start = tz.to_datetime(at).date().tomorrow().ok()?;
        (0..SEARCH_DAYS)
            .filter_map(|i| start.checked_sub(i.days()).ok())
            .filter(|d| self.on(*d))
            .find_map(|d| {
                self.times(d)
                    .rev()
                    .filter_map(|t| place(tz, t))
                    .find(|t| *t <= at)
            })
    }
}

/// Local time `t` in `tz` (a gap moves it forward, a fold takes the
/// earlier instant).
fn place(tz: &TimeZone, t: DateTime) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(t).compatible().ok()
}

/// When a window is, as stored.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// From `starts_at` to `ends_at` (Unix ms).
    Once { starts_at: i64, ends_at: i64 },
    /// From each start to the next end after it, read in `zone`.
    Recurring {
        start: Cron,
        end: Cron,
        zone: TimeZone,
        zone_name: String,
    },
}

/// One stretch of a window, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub start: i64,
    pub end: i64,
}

fn ts(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// The IANA time zone `name`.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err("an IANA time zone such as Europe/Berlin or UTC".into());
    }
    TimeZone::get(name)
        .map_err(|_| format!("'{name}' is not an IANA time zone (such as Europe/Berlin or UTC)"))
}

impl Schedule {
    /// A recurring schedule from its parts, checked.
    pub fn recurring(start: &str, end: &str, zone_name: &str) -> Result<Schedule, String> {
        Ok(Schedule::Recurring {
            start: start.parse().map_err(|e| format!("start: {e}"))?,
            end: end.parse().map_err(|e| format!("end: {e}"))?,
            zone: zone(zone_name)?,
            zone_name: zone_name.trim().to_string(),
        })
    }

    /// The stretch active at `now` (Unix ms), if any.
    pub fn active_at(&self, now: i64) -> Option<Occurrence> {
        match self {
            Schedule::Once { starts_at, ends_at } => (*starts_at <= now && now < *ends_at)
                .then_some(Occurrence {
                    start: *starts_at,
                    end: *ends_at,
                }),
            Schedule::Recurring {
                start, end, zone, ..
            } => {
                let began = start.latest(zone, ts(now)?)?;
                let ends = end.next(zone, began)?;
                (ms(ends) > now).then_some(Occurrence {
                    start: ms(began),
                    end: ms(ends),
                })
            }
        }
    }

    /// The stretch active at `now` and the ones after it that start
    /// before `until`, at most `limit`.
    pub fn upcoming(&self, now: i64, until: i64, limit: usize) -> Vec<Occurrence> {
        let mut out: Vec<Occurrence> = self.active_at(now).into_iter().collect();
        match self {
            Schedule::Once { starts_at, ends_at } => {
                if *starts_at > now && *starts_at < until {
                    out.push(Occurrence {
                        start: *starts_at,
                        end: *ends_at,
                    });
                }
            }
            Schedule::Recurring {
                start, end, zone, ..
            } => {
                let mut cursor = out.last().map_or(now, |o| o.end - 1);
                while out.len() < limit {
                    let Some(began) = ts(cursor).and_then(|c| start.next(zone, c)) else {
                        break;
                    };
                    let Some(ends) = end.next(zone, began) else {
                        break;
                    };
                    if ms(began) >= until {
                        break;
                    }
                    out.push(Occurrence {
                        start: ms(began),
                        end: ms(ends),
                    });
                    cursor = ms(ends) - 1;
                }
            }
        }
        out.truncate(limit);
        out
    }

    /// Checks that the schedule ever freezes anything after `now`.
    pub fn check(&self, now: i64) -> Result<(), String> {
        match self {
            Schedule::Once { starts_at, ends_at } => {
                if ends_at <= starts_at {
                    return Err("the end must come after the start".into());
                }
                if *ends_at <= now {
                    return Err("the window is over already: its end has passed".into());
                }
                if ends_at.saturating_sub(*starts_at) > i64::from(SEARCH_DAYS / 5) * 86_400_000 {
                    return Err("a one-off window lasts a year at most".into());
                }
                Ok(())
            }
            Schedule::Recurring { start, end, .. } => {
                if self.upcoming(now, i64::MAX, 1).is_empty() {
                    return Err(format!(
                        "'{start}' to '{end}' never freezes anything in the next five years"
                    ));
                }
                Ok(())
            }
        }
    }

    /// The schedule in words: "Fri 18:00 → Mon 08:00 (Europe/Berlin)"
    /// style for a recurring one, its cron expressions as written.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Once { .. } => "one-off".into(),
            Schedule::Recurring {
                start,
                end,
                zone_name,
                ..
            } => format!("from '{start}' to '{end}' ({zone_name})"),
        }
    }

    /// `at` (Unix ms) as the window's people read it: in its zone for a
    /// recurring one, in UTC for a one-off.
    pub fn local(&self, at: i64) -> String {
        let zone = match self {
            Schedule::Recurring { zone, .. } => zone.clone(),
            Schedule::Once { .. } => TimeZone::UTC,
        };
        let Some(t) = ts(at) else {
            return at.to_string();
        };
        let z = t.to_zoned(zone);
        let name = match self {
            Schedule::Recurring { zone_name, .. } => zone_name.as_str(),
            Schedule::Once { .. } => "UTC",
        };
        format!("{} {name}", z.strftime("%Y-%m-%d %H:%M"))
    }
}

/// A local date and time as a form sends it (`2026-12-24T18:00`) in zone
/// `zone_name`, in Unix ms (a time in a spring gap moves forward).
pub fn local_ms(text: &str, zone_name: &str) -> Result<i64, String> {
    let zone = zone(zone_name)?;
    let civil: DateTime = text.trim().parse().map_err(|_| {
        format!(
            "'{}' is not a date and time (2026-12-24T18:00)",
            text.trim()
        )
    })?;
    place(&zone, civil)
        .map(ms)
        .ok_or_else(|| format!("'{}' is out of range", text.trim()))
}

/// The environment classes a window may be limited to.
pub const ENVIRONMENTS: [&str; 4] = ["dev", "test", "staging", "prod"];

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        ms(text.parse::<Timestamp>().unwrap())
    }

    fn iso(ms_: i64) -> String {
        ts(ms_).unwrap().to_string()
    }

    #[test]
    fn cron_fields_read_as_unix_cron_does() {
        let c: Cron = "*/15 9-17 * * mon-fri".parse().unwrap();
        assert_eq!(c.minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(c.hours, (9..=17).fold(0, |b, h| b | 1 << h));
        assert_eq!(c.weekdays, 0b0111110);
        let sunday: Cron = "0 0 * * 7".parse().unwrap();
        assert_eq!(sunday.weekdays, 1, "7 is Sunday too");
        let from: Cron = "5/20 * * JAN,jul *".parse().unwrap();
        assert_eq!(from.minutes, 1 << 5 | 1 << 25 | 1 << 45);
        assert_eq!(from.months, 1 << 1 | 1 << 7);
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "* * * * funday",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad}");
        }
        // Steps too large to add up do not overflow.
        let huge: Cron = "7/4294967295 * * * *".parse().unwrap();
        assert_eq!(huge.minutes, 1 << 7);
        assert!(
            "*/99999999999 * * * *".parse::<Cron>().is_err(),
            "a step past u32"
        );
    }

    #[test]
    fn a_restricted_day_of_month_and_day_of_week_match_either() {
        let c: Cron = "0 0 13 * fri".parse().unwrap();
        let utc = TimeZone::UTC;
        // 2026-02-06 is a Friday; 2026-02-13 is a Friday the 13th.
        let february: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        let next = c.next(&utc, february).unwrap();
        assert_eq!(next.to_string(), "2026-02-06T00:00:00Z");
        let only_13: Cron = "0 0 13 * *".parse().unwrap();
        let next = only_13.next(&utc, february).unwrap();
        assert_eq!(next.to_string(), "2026-02-13T00:00:00Z");
        // Latest at or before: the same minute counts.
        let latest = only_13.latest(&utc, next).unwrap();
        assert_eq!(latest, next);
    }

    #[test]
    fn a_weekend_freeze_is_active_from_the_latest_start_to_the_next_end() {
        let weekend = Schedule::recurring("0 18 * * 5", "0 8 * * 1", "Europe/Berlin").unwrap();
        // Saturday 2026-12-05 12:00 Berlin (11:00 UTC): frozen since
        // Friday 18:00 Berlin (17:00 UTC) until Monday 08:00 (07:00 UTC).
        let on = weekend.active_at(at("2026-12-05T11:00:00Z")).unwrap();
        assert_eq!(iso(on.start), "2026-12-04T17:00:00Z");
        assert_eq!(iso(on.end), "2026-12-07T07:00:00Z");
        assert_eq!(weekend.local(on.end), "2026-12-07 08:00 Europe/Berlin");
        // Monday 09:00 Berlin: over; Thursday: not yet.
        assert_eq!(weekend.active_at(at("2026-12-07T08:00:00Z")), None);
        assert_eq!(weekend.active_at(at("2026-12-10T12:00:00Z")), None);
        // The end itself is no longer frozen; a millisecond before is.
        assert_eq!(weekend.active_at(on.end), None);
        assert!(weekend.active_at(on.end - 1).is_some());
        let next = weekend.upcoming(at("2026-12-07T08:00:00Z"), i64::MAX, 2);
        assert_eq!(
            next.iter()
                .map(|o| (iso(o.start), iso(o.end)))
                .collect::<Vec<_>>(),
            [
                (
                    "2026-12-11T17:00:00Z".to_string(),
                    "2026-12-14T07:00:00Z".to_string()
                ),
                (
                    "2026-12-18T17:00:00Z".to_string(),
                    "2026-12-21T07:00:00Z".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_recurring_freeze_keeps_its_local_times_across_daylight_saving_changes() {
        // Nightly 22:00 → 06:00 in New York, over the spring-forward night
        // (2026-03-08 02:00 EST → 03:00 EDT) and the fall-back one
        // (2026-11-01 02:00 EDT → 01:00 EST).
        let nightly = Schedule::recurring("0 22 * * *", "0 6 * * *", "America/New_York").unwrap();
        let spring = nightly.active_at(at("2026-03-08T05:00:00Z")).unwrap();
        assert_eq!(iso(spring.start), "2026-03-08T03:00:00Z", "22:00 EST");
        assert_eq!(iso(spring.end), "2026-03-08T10:00:00Z", "06:00 EDT");
        let fall = nightly.active_at(at("2026-11-01T05:00:00Z")).unwrap();
        assert_eq!(iso(fall.start), "2026-11-01T02:00:00Z", "22:00 EDT");
        assert_eq!(iso(fall.end), "2026-11-01T11:00:00Z", "06:00 EST");
        // A start in the spring gap (02:30 does not exist) moves to 03:30.
        let gap = Schedule::recurring("30 2 8 3 *", "0 4 8 3 *", "America/New_York").unwrap();
        let o = gap.active_at(at("2026-03-08T07:45:00Z")).unwrap();
        assert_eq!(iso(o.start), "2026-03-08T07:30:00Z", "03:30 EDT");
        // A start in the autumn fold (01:30 twice) takes the first.
        let fold = Schedule::recurring("30 1 1 11 *", "0 3 1 11 *", "America/New_York").unwrap();
        let o = fold.active_at(at("2026-11-01T06:00:00Z")).unwrap();
        assert_eq!(iso(o.start), "2026-11-01T05:30:00Z", "01:30 EDT");
    }

    #[test]
    fn a_forms_local_time_is_read_in_the_zone_given() {
        assert_eq!(
            iso(local_ms("2026-12-24T18:00", "Europe/Berlin").unwrap()),
            "2026-12-24T17:00:00Z"
        );
        assert_eq!(
            iso(local_ms("2026-07-01T09:30", "America/New_York").unwrap()),
            "2026-07-01T13:30:00Z"
        );
        assert!(local_ms("24.12.2026 18:00", "UTC").is_err());
        assert!(local_ms("2026-12-24T18:00", "Nowhere/Else").is_err());
    }

    #[test]
    fn a_one_off_window_is_active_from_its_start_until_its_end() {
        let extreme = Schedule::Once {
            starts_at: i64::MIN,
            ends_at: i64::MAX,
        };
        assert!(extreme.check(0).is_err(), "longer than a year, no overflow");
        let once = Schedule::Once {
            starts_at: 1_000,
            ends_at: 5_000,
        };
        assert_eq!(once.active_at(999), None);
        assert!(once.active_at(1_000).is_some());
        assert_eq!(once.active_at(5_000), None);
        assert_eq!(once.upcoming(0, i64::MAX, 5).len(), 1);
        assert!(once.check(0).is_ok());
        assert!(once.check(5_000).is_err(), "over");
        let backwards = Schedule::Once {
            starts_at: 5_000,
            ends_at: 1_000,
        };
        assert!(backwards.check(0).is_err());
    }

    #[test]
    fn a_schedule_that_never_freezes_or_names_no_zone_is_refused() {
        assert!(Schedule::recurring("0 0 30 2 *", "0 1 * * *", "UTC").is_ok());
        let feb_30 = Schedule::recurring("0 0 30 2 *", "0 1 * * *", "UTC").unwrap();
        assert!(feb_30.check(0).unwrap_err().contains("never"));
        assert!(Schedule::recurring("0 0 * * *", "0 1 * * *", "Mars/Olympus").is_err());
        assert!(Schedule::recurring("0 0 * * *", "0 1 * * *", "../etc/passwd").is_err());
        assert!(Schedule::recurring("0 0 * *", "0 1 * * *", "UTC").is_err());
    }
}
