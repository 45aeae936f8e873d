//! Tumbling windows in market time. A window lies in one *span*: a session of the calendar, or
//! (a time zone alone) a local day, or a local week for `1w`. Windows shorter than a day start at
//! the span's start every `size` and the last one ends with the span; a window of `1d` (or `1w`,
//! `1mo`: a local week from Monday, a calendar month) is the whole span. So hourly bars of the New York session are 09:30–10:30 … 15:30–16:00
//! (13:00 on an early close), a daily bar is one session, and a day in New York lasts 23 or 25
//! hours when the clocks change. Time outside every span (outside the session) has no window.

use std::sync::Arc;

use jiff::Span;
use jiff::tz::TimeZone;

use super::{Calendar, SessionKind};

pub const DAY_MS: i64 = 86_400_000;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// `1mo`: a window of a calendar month.
pub const MONTH_MS: i64 = crate::base::units::MONTH_MS;
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone)]
pub struct Align {
    pub tz_name: String,
    pub tz: TimeZone,
    pub calendar: Option<Arc<Calendar>>,
    pub session: SessionKind,
    /// The windows' size (ms): below a day, a day, or (without a calendar) a week.
    pub size: i64,
}

/// The span and the gap last looked up (most records fall in the same one as the one before).
#[derive(Debug, Default, Clone, Copy)]
pub struct AlignCache {
    span: Option<(i64, i64)>,
    gap: Option<(i64, i64)>,
}

impl Align {
    /// The span holding `t`, or the gap (outside sessions) holding it.
    fn span(&self, t: i64) -> Result<(i64, i64), (i64, i64)> {
        if let Some(c) = &self.calendar {
            return c.session_at(t, self.session).map(|s| (s.open, s.close));
        }
        let day = Calendar::local_date(&self.tz, t);
        let (first, next) = match self.size {
            WEEK_MS => {
                let back = day.weekday().to_monday_zero_offset() as i64;
                let first = day.checked_sub(Span::new().days(back)).unwrap_or(day);
                (
                    first,
                    first.checked_add(Span::new().days(7)).unwrap_or(first),
                )
            }
            MONTH_MS => {
                let first = day.first_of_month();
                (
                    first,
                    first.checked_add(Span::new().months(1)).unwrap_or(first),
                )
            }
            _ => (day, day.tomorrow().unwrap_or(day)),
        };
        let start = |d: jiff::civil::Date| {
            d.to_zoned(self.tz.clone())
                .map(|z| z.timestamp().as_millisecond())
                .unwrap_or(t)
        };
        Ok((start(first), start(next).max(t + 1)))
    }

    /// The window `[start, end)` holding `t`, or `None` outside the sessions.
    pub fn window(&self, t: i64, cache: &mut AlignCache) -> Option<(i64, i64)> {
        let inside = |s: Option<(i64, i64)>| s.filter(|(lo, hi)| *lo <= t && t < *hi);
        let (lo, hi) = match inside(cache.span) {
            Some(s) => s,
            None => {
                if inside(cache.gap).is_some() {
                    return None;
                }
                match self.span(t) {
                    Ok(s) => {
                        cache.span = Some(s);
                        s
                    }
                    Err(g) => {
                        cache.gap = Some(g);
                        return None;
                    }
                }
            }
        };
        if self.size >= DAY_MS {
            return Some((lo, hi));
        }
        let start = lo + (t - lo).div_euclid(self.size) * self.size;
        Some((start, (start + self.size).min(hi)))
    }

    /// The first window starting at or after `t` and before `until` (gap filling walks the
    /// windows of a key one after the other, across gaps between sessions).
    pub fn next_window(
        &self,
        mut t: i64,
        until: i64,
        cache: &mut AlignCache,
    ) -> Option<(i64, i64)> {
        while t < until {
            match self.window(t, cache) {
                Some((s, e)) if s >= t => return Some((s, e)),
                Some((_, e)) => t = e,
                // In a gap: its end is the next span's start.
                None => match cache.gap {
                    Some((lo, hi)) if lo <= t && t < hi => t = hi,
                    _ => return None,
                },
            }
        }
        None
    }

    /// The market date of `t`: the date of the session holding it (a 24/5 session that opened
    /// on Sunday evening is Monday's), else its local date.
    pub fn date_of(&self, t: i64) -> jiff::civil::Date {
        match &self.calendar {
            Some(c) => match c.session_at(t, self.session) {
                Ok(s) => s.date,
                Err(_) => Calendar::local_date(&self.tz, t),
            },
            None => Calendar::local_date(&self.tz, t),
        }
    }

    /// An upper bound of a window's length (a day's or week's span may be an hour longer when
    /// the clocks change; a 24/5 session is a day).
    pub fn longest_ms(&self) -> i64 {
        match self.size {
            s if s < DAY_MS => s,
            WEEK_MS => WEEK_MS + HOUR_MS,
            MONTH_MS => 31 * DAY_MS + HOUR_MS,
            _ => DAY_MS + HOUR_MS,
        }
    }

    /// `in America/New_York, XNYS regular sessions`.
    pub fn describe(&self) -> String {
        match &self.calendar {
            Some(c) => format!(
                "in {}, {} {} sessions",
                self.tz_name,
                c.name,
                self.session.name()
            ),
            None => format!("in {}", self.tz_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn tz_only(tz: &str, size: i64) -> Align {
        Align {
            tz_name: tz.into(),
            tz: super::super::time_zone(tz).unwrap(),
            calendar: None,
            session: SessionKind::Regular,
            size,
        }
    }

    #[test]
    fn local_days_last_23_and_25_hours_across_dst() {
        let a = tz_only("America/New_York", DAY_MS);
        let mut c = AlignCache::default();
        let (s, e) = a.window(ms("2026-03-08T12:00:00Z"), &mut c).unwrap();
        assert_eq!(
            (s, e),
            (ms("2026-03-08T05:00:00Z"), ms("2026-03-09T04:00:00Z"))
        );
        let (s, e) = a.window(ms("2026-11-01T12:00:00Z"), &mut c).unwrap();
        assert_eq!(e - s, 25 * HOUR_MS);
        // Hours in Kolkata start at half past the UTC hour.
        let h = tz_only("Asia/Kolkata", HOUR_MS);
        let (s, _) = h
            .window(ms("2026-03-08T12:40:00Z"), &mut c.clone())
            .unwrap();
        assert_eq!(s, ms("2026-03-08T12:30:00Z"));
        // Weeks start on Monday at local midnight.
        let w = tz_only("Europe/Berlin", WEEK_MS);
        let (s, e) = w
            .window(ms("2026-03-29T12:00:00Z"), &mut AlignCache::default())
            .unwrap();
        assert_eq!(
            (s, e),
            (ms("2026-03-22T23:00:00Z"), ms("2026-03-29T22:00:00Z"))
        );
    }

    #[test]
    fn months_are_calendar_months_at_local_midnight() {
        let m = tz_only("America/New_York", MONTH_MS);
        let mut c = AlignCache::default();
        // February 2026: 28 days of EST; March: 31 days less the hour the clocks skip.
        let (s, e) = m.window(ms("2026-02-14T12:00:00Z"), &mut c).unwrap();
        assert_eq!(
            (s, e),
            (ms("2026-02-01T05:00:00Z"), ms("2026-03-01T05:00:00Z"))
        );
        let (s, e) = m.window(ms("2026-03-31T12:00:00Z"), &mut c).unwrap();
        assert_eq!(
            (s, e),
            (ms("2026-03-01T05:00:00Z"), ms("2026-04-01T04:00:00Z"))
        );
        // 23:30 on the last day of the month in New York is already the next month in UTC.
        let (s, _) = m.window(ms("2026-05-01T03:30:00Z"), &mut c).unwrap();
        assert_eq!(s, ms("2026-04-01T04:00:00Z"));
        assert!(m.longest_ms() >= 31 * DAY_MS);
    }

    #[test]
    fn session_windows_start_at_the_open_and_end_with_the_close() {
        let a = Align {
            calendar: Some(Calendar::load("XNYS").unwrap()),
            size: HOUR_MS,
            ..tz_only("America/New_York", HOUR_MS)
        };
        let mut c = AlignCache::default();
        assert_eq!(
            a.window(ms("2026-11-27T17:59:59Z"), &mut c),
            Some((ms("2026-11-27T17:30:00Z"), ms("2026-11-27T18:00:00Z")))
        );
        assert_eq!(a.window(ms("2026-11-27T18:00:00Z"), &mut c), None);
        assert_eq!(a.window(ms("2026-11-28T15:00:00Z"), &mut c), None);
        assert_eq!(
            a.window(ms("2026-11-30T14:30:00Z"), &mut c),
            Some((ms("2026-11-30T14:30:00Z"), ms("2026-11-30T15:30:00Z")))
        );
    }
}
