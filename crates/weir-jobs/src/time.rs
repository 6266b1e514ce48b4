//! Wall-clock instants as milliseconds since the Unix epoch, and their RFC 3339 form.
//!
//! Jobs are stored on disk and shared between nodes, so their times are wall-clock times
//! (not `Instant`s), kept as integer milliseconds in both stores. Every store operation
//! takes `now` from its caller: the stores never read the clock themselves, which lets the
//! conformance suite move time forward (to expire a lease, or reach a retry) without sleeping.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// This instant moved forward by `duration` (saturating).
    pub fn after(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// This instant moved back by `duration` (saturating).
    pub fn before(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(millis))
    }

    /// How long from `self` until `later` (zero when `later` is not later).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// Parses RFC 3339 (`2026-11-26T07:00:00Z`, `…T07:00:00.250+01:00`).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
            return None;
        }
        if !matches!(bytes[10], b'T' | b't' | b' ') || bytes[16] != b':' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = text.get(range)?;
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut millis = 0;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
            millis = padded.parse::<i64>().ok()?;
            rest = &fraction[digits..];
        }
        let offset_minutes = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = match rest.as_bytes().first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let zone = rest.get(1..)?;
                if zone.len() != 5 || zone.as_bytes()[2] != b':' {
                    return None;
                }
                let (h, m): (i64, i64) = (zone[..2].parse().ok()?, zone[3..].parse().ok()?);
                if h > 23 || m > 59 {
                    return None;
                }
                sign * (h * 60 + m)
            }
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59);
        Some(Timestamp((seconds - offset_minutes * 60) * 1_000 + millis))
    }

    /// The calendar fields of this instant in UTC: (year, month, day, hour, minute, second,
    /// millisecond, weekday with Sunday = 0).
    pub fn to_civil(self) -> Civil {
        let seconds = self.0.div_euclid(1_000);
        let millis = self.0.rem_euclid(1_000);
        let days = seconds.div_euclid(86_400);
        let in_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: in_day / 3_600,
            minute: in_day % 3_600 / 60,
            second: in_day % 60,
            millisecond: millis,
            weekday: (days + 4).rem_euclid(7),
        }
    }

    /// The instant of a UTC calendar time (fields out of range are normalised by arithmetic).
    pub fn from_civil(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> Timestamp {
        let days = days_from_civil(year, month, 1) + day - 1;
        Timestamp(((days * 24 + hour) * 60 + minute) * 60_000)
    }
}

/// A UTC calendar breakdown of a [`Timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Civil {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub millisecond: i64,
    /// Sunday = 0 … Saturday = 6.
    pub weekday: i64,
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds: `2026-11-26T07:00:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.to_civil();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second, c.millisecond
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not an RFC 3339 time such as 2026-11-26T07:00:00Z"
            ))
        })
    }
}

pub(crate) fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms: days since 1970-01-01 to and from the proleptic Gregorian
// calendar, exact over the whole i64 range we use.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-11-26T07:05:09.250Z",
            "1969-12-31T23:59:59.000Z",
        ] {
            let at = Timestamp::parse_rfc3339(text).unwrap();
            assert_eq!(at.to_string(), text);
        }
        assert_eq!(
            Timestamp(0).to_civil().weekday,
            4,
            "1970-01-01 was a Thursday"
        );
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let utc = Timestamp::parse_rfc3339("2026-11-26T07:00:00Z").unwrap();
        let plus = Timestamp::parse_rfc3339("2026-11-26T08:30:00+01:30").unwrap();
        assert_eq!(utc, plus);
        let fraction = Timestamp::parse_rfc3339("2026-11-26T07:00:00.5Z").unwrap();
        assert_eq!(fraction.0 - utc.0, 500);
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        for text in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T07:00:00",
            "2026-11-26T07:00:00+1",
            "2026-11-26T07:00:00.Z",
            "+026-11-26T07:00:00Z",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(text), None, "{text}");
        }
    }
}
