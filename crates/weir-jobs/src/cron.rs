//! Cron expressions for periodic jobs: five fields (minute, hour, day of month, month, day
//! of week) in UTC, with `*`, lists, ranges, steps and names, plus `@hourly`, `@daily`,
//! `@weekly`, `@monthly` and `@yearly`.
//!
//! As in Vixie cron, when both day fields are restricted a day matches if either does.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::time::{days_in_month, Timestamp};

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
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
        let expanded = match expression.trim() {
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
    fn day_matches(&self, day: i64, weekday: i64) -> bool {
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            _ => by_day && by_weekday,
        }
    }

    /// The first matching minute strictly after `after`, or `None` if there is none in the
    /// next eight years (`0 0 30 2 *`: February 30th never comes).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = Timestamp((after.0.div_euclid(60_000) + 1) * 60_000).to_civil();
        let (mut year, mut month, mut day) = (start.year, start.month, start.day);
        let (mut hour, mut minute) = (start.hour, start.minute);
        for _ in 0..(8 * 366) {
            let weekday = Timestamp::from_civil(year, month, day, 0, 0)
                .to_civil()
                .weekday;
            if self.months & (1 << month) != 0 && self.day_matches(day, weekday) {
                for h in hour..24 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    let first_minute = if h == hour { minute } else { 0 };
                    if let Some(m) = (first_minute..60).find(|m| self.minutes & (1 << m) != 0) {
                        return Some(Timestamp::from_civil(year, month, day, h, m));
                    }
                }
            }
            (hour, minute) = (0, 0);
            day += 1;
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
        None
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
    fn a_date_that_never_comes_has_no_next() {
        let never: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(never.next_after(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn errors_name_the_field() {
        for (expression, needle) in [
            ("* * * *", "expected 5 fields"),
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
