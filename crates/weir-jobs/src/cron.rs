//! Cron expressions for periodic jobs: five fields (minute, hour, day of month, month, day
//! of week) with `*`, lists, ranges, steps and names, plus `@hourly`, `@daily`, `@weekly`,
//! `@monthly` and `@yearly`, in UTC unless a time zone is named first:
//! `CRON_TZ=Europe/Berlin 0 9 * * mon-fri` (as cronie and robfig/cron write it; `TZ=` too).
//!
//! As in Vixie cron, when both day fields are restricted a day matches if either does.
//! Across a daylight-saving change, the calendar does the work (jiff, with the IANA time
//! zone database): a time the clocks skip (02:30 on a spring-forward night in Berlin)
//! fires at the first instant after the gap, and a time they pass twice (02:30 on a
//! fall-back night) fires once, at its first occurrence.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{DateTime, Weekday};
use jiff::tz::{Disambiguation, TimeZone};
use thiserror::Error;

use crate::time::Timestamp;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    source: String,
    /// Where the fields are read: UTC unless the expression names a zone.
    zone: TimeZone,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// Why an expression is not valid cron.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid cron expression `{expression}`: {reason}")]
pub struct CronError {
    expression: String,
    reason: String,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    // 7 is Sunday too, as in most crons.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
    },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(index) = self.names.iter().position(|name| *name == lower) {
            return Ok(index as u32 + self.min);
        }
        let value: u32 = text
            .parse()
            .map_err(|_| format!("{} `{text}` is not a number", self.name))?;
        if value < self.min || value > self.max {
            return Err(format!(
                "{} {value} is outside {}–{}",
                self.name, self.min, self.max
            ));
        }
        Ok(value)
    }

    /// The set of matching values as a bit mask, and whether the field restricts anything.
    fn parse(&self, text: &str) -> Result<(u64, bool), String> {
        let mut mask = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                        format!("{} step `{step}` must be a positive number", self.name)
                    })?;
                    (range, step)
                }
                None => (part, 1),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((low, high)) = range.split_once('-') {
                let (low, high) = (self.value(low)?, self.value(high)?);
                if low > high {
                    return Err(format!("{} range `{range}` runs backwards", self.name));
                }
                (low, high)
            } else {
                let low = self.value(range)?;
                // `5/15` means from 5 to the end, every 15.
                (low, if part.contains('/') { self.max } else { low })
            };
            for value in (low..=high).step_by(step as usize) {
                mask |= 1 << value;
            }
        }
        Ok((mask, text != "*"))
    }
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| CronError {
            expression: expression.to_owned(),
            reason,
        };
        let (zone, fields) = match expression.trim().split_once(char::is_whitespace) {
            Some((prefix, rest)) if prefix.starts_with("CRON_TZ=") || prefix.starts_with("TZ=") => {
                let name = prefix.split_once('=').map_or("", |(_, name)| name);
                let zone = TimeZone::get(name).map_err(|_| {
                    error(format!(
                        "time zone `{name}` is not in the IANA database (e.g. Europe/Berlin, America/New_York, UTC)"
                    ))
                })?;
                (zone, rest.trim())
            }
            _ => (TimeZone::UTC, expression.trim()),
        };
        let expanded = match fields {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(error(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut masks = [(0u64, false); 5];
        for (slot, (field, text)) in masks.iter_mut().zip(FIELDS.iter().zip(&parts)) {
            *slot = field.parse(text).map_err(error)?;
        }
        let mut weekdays = masks[4].0;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            source: expression.trim().to_owned(),
            zone,
            minutes: masks[0].0,
            hours: masks[1].0,
            days: masks[2].0,
            months: masks[3].0,
            weekdays,
            days_restricted: masks[2].1,
            weekdays_restricted: masks[4].1,
        })
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Cron {
    fn day_matches(&self, day: i8, weekday: Weekday) -> bool {
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday.to_sunday_zero_offset()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }

    /// The first matching minute strictly after `after`, or `None` if there is none in the
    /// next eight years (`0 0 30 2 *`: February 30th never comes).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let after = after.to_jiff()?;
        let start = after.to_zoned(self.zone.clone()).datetime();
        let mut date = start.date();
        for day_index in 0..(8 * 366) {
            if self.months & (1 << date.month()) != 0
                && self.day_matches(date.day(), date.weekday())
            {
                // On the first day, minutes up to `after`'s are passed over by the
                // comparison below, not by starting later: a clock set back may repeat them.
                let first_hour = if day_index == 0 { start.hour() } else { 0 };
                for hour in first_hour..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in (0..60i8).filter(|m| self.minutes & (1 << m) != 0) {
                        let wall =
                            DateTime::from_parts(date, jiff::civil::time(hour, minute, 0, 0));
                        let Some(at) = self.instant_of(wall) else {
                            continue;
                        };
                        if at > after {
                            return Some(Timestamp(at.as_millisecond()));
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The instant a wall-clock time of the zone stands for: in a gap, the first instant
    /// after it; when it comes twice, the first.
    fn instant_of(&self, wall: DateTime) -> Option<jiff::Timestamp> {
        let ambiguous = self.zone.to_ambiguous_zoned(wall);
        ambiguous
            .disambiguate(Disambiguation::Compatible)
            .ok()
            .map(|zoned| zoned.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn next(cron: &str, after: &str) -> String {
        cron.parse::<Cron>()
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn finds_the_next_minute() {
        assert_eq!(
            next("* * * * *", "2026-11-26T07:00:30Z"),
            "2026-11-26T07:01:00.000Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-26T07:00:00Z"),
            "2026-11-26T07:15:00.000Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-26T07:30:00Z"),
            "2026-11-26T07:45:00.000Z"
        );
        assert_eq!(
            next("0 3 * * *", "2026-11-26T07:00:00Z"),
            "2026-11-27T03:00:00.000Z"
        );
        assert_eq!(
            next("@monthly", "2026-12-15T00:00:00Z"),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(
            next("0 0 29 feb *", "2026-01-01T00:00:00Z"),
            "2028-02-29T00:00:00.000Z"
        );
        assert_eq!(
            next("30 9 * * mon-fri", "2026-11-27T10:00:00Z"),
            "2026-11-30T09:30:00.000Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-11-26T00:00:00Z"),
            "2026-11-29T00:00:00.000Z"
        );
        // Both day fields restricted: either matches (the 1st, or any Friday).
        assert_eq!(
            next("0 12 1 * fri", "2026-11-26T00:00:00Z"),
            "2026-11-27T12:00:00.000Z"
        );
    }

    #[test]
    fn a_time_zone_moves_the_hours_and_follows_daylight_saving() {
        let berlin = "CRON_TZ=Europe/Berlin 0 9 * * *";
        assert_eq!(
            next(berlin, "2026-11-26T00:00:00Z"),
            "2026-11-26T08:00:00.000Z",
            "CET"
        );
        assert_eq!(
            next(berlin, "2026-07-01T00:00:00Z"),
            "2026-07-01T07:00:00.000Z",
            "CEST"
        );
        assert_eq!(
            next("TZ=America/New_York 30 17 * * fri", "2026-11-26T00:00:00Z"),
            "2026-11-27T22:30:00.000Z"
        );
        // 2026-03-29: Berlin's clocks go from 02:00 to 03:00; 02:30 is skipped and the job
        // fires at the first instant after the gap.
        let half_past_two = "CRON_TZ=Europe/Berlin 30 2 * * *";
        assert_eq!(
            next(half_past_two, "2026-03-29T00:00:00Z"),
            "2026-03-29T01:30:00.000Z"
        );
        // 2026-10-25: from 03:00 back to 02:00; 02:30 comes twice and fires once.
        let first = next(half_past_two, "2026-10-24T23:00:00Z");
        assert_eq!(first, "2026-10-25T00:30:00.000Z", "the first 02:30 (CEST)");
        assert_eq!(
            next(half_past_two, &first),
            "2026-10-26T01:30:00.000Z",
            "not the second 02:30 an hour later: the next day's"
        );
        assert_eq!(
            next("0 9 * * *", "2026-07-01T00:00:00Z"),
            "2026-07-01T09:00:00.000Z",
            "UTC"
        );
    }

    #[test]
    fn a_date_that_never_comes_has_no_next() {
        let never: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(never.next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn errors_name_the_field() {
        for (expression, needle) in [
            ("* * * *", "expected 5 fields"),
            ("CRON_TZ=Mars/Olympus 0 9 * * *", "not in the IANA database"),
            ("60 * * * *", "minute 60 is outside 0–59"),
            ("* 24 * * *", "hour 24"),
            ("* * 0 * *", "day of month 0"),
            ("* * * smarch *", "month `smarch` is not a number"),
            ("*/0 * * * *", "minute step `0`"),
            ("* * * * 5-1", "runs backwards"),
        ] {
            let error = expression.parse::<Cron>().unwrap_err().to_string();
            assert!(error.contains(needle), "{expression}: {error}");
        }
    }
}
