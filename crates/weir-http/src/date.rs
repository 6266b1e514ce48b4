//! The `Date` header, rendered at most once per second per thread.
//!
//! Rendering a date costs more than the rest of a small response ("hello world was
//! bottlenecked on rendering a date", may-minihttp), and even reading the wall clock shows up
//! in profiles. Each worker thread keeps the rendered IMF-fixdate together with the monotonic
//! instant at which the wall-clock second ends. The caller passes the `Instant` it already
//! read for its own bookkeeping, so a response costs a comparison and a 29-byte copy: the
//! wall clock is read and the date rendered once per second per thread, with no lock.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const DATE_LEN: usize = 29;

struct CachedDate {
    /// When the rendered second is over; `None` before the first render.
    valid_until: Option<Instant>,
    rendered: [u8; DATE_LEN],
}

thread_local! {
    static CACHE: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { valid_until: None, rendered: [0; DATE_LEN] })
    };
}

/// Calls `f` with the date at `now` (a recent reading of the monotonic clock) rendered as an
/// IMF-fixdate.
pub(crate) fn with_date_at<R>(now: Instant, f: impl FnOnce(&[u8; DATE_LEN]) -> R) -> R {
    CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.valid_until.is_none_or(|until| now >= until) {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            cache.rendered = render_imf_fixdate(wall.as_secs());
            let rest_of_second =
                Duration::from_secs(1) - Duration::from_nanos(u64::from(wall.subsec_nanos()));
            cache.valid_until = Some(Instant::now() + rest_of_second);
        }
        f(&cache.rendered)
    })
}

/// Renders seconds since the Unix epoch as an IMF-fixdate (RFC 9110 section 5.6.7).
pub(crate) fn render_imf_fixdate(unix_seconds: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_seconds / 86_400;
    let secs_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put_two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    put_two_digits(&mut out[12..14], year / 100);
    put_two_digits(&mut out[14..16], year % 100);
    put_two_digits(&mut out[17..19], secs_of_day / 3600);
    put_two_digits(&mut out[20..22], secs_of_day / 60 % 60);
    put_two_digits(&mut out[23..25], secs_of_day % 60);
    out
}

fn put_two_digits(out: &mut [u8], value: u64) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01, after Howard
/// Hinnant's `civil_from_days`, restricted to dates after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_dates() {
        assert_eq!(&render_imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        // The example of RFC 9110.
        assert_eq!(
            &render_imf_fixdate(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        // A leap day and the end of a year.
        assert_eq!(
            &render_imf_fixdate(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &render_imf_fixdate(1_798_761_599),
            b"Thu, 31 Dec 2026 23:59:59 GMT"
        );
    }

    #[test]
    fn cached_date_is_current() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let seen = with_date_at(Instant::now(), |d| *d);
        // The second may tick between the two reads.
        assert!(seen == render_imf_fixdate(now) || seen == render_imf_fixdate(now + 1));
    }
}
