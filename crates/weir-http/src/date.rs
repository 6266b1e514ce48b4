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

/// Renders seconds since the Unix epoch as an IMF-fixdate (RFC 9110 section 5.6.7), through
/// httpdate (already in the tree for `Retry-After`): the calendar arithmetic is written
/// once, there.
pub(crate) fn render_imf_fixdate(unix_seconds: u64) -> [u8; DATE_LEN] {
    let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_seconds));
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // Always 29 bytes for years 1970-9999; a later clock keeps the epoch's text.
    if let Some(rendered) = text.as_bytes().get(..DATE_LEN) {
        out.copy_from_slice(rendered);
    }
    out
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
