//! Request date parsing.
//!
//! The original service accepted whatever pandas' `to_datetime` took for a date; its clients
//! send either a calendar date (`2018-01-01`) or a full ISO 8601 datetime
//! (`2018-01-01T00:00:00`, `2018-01-01T00:00:00Z`, `2018-01-01T00:00:00+05:00`). Only the
//! calendar date matters for the features. With an offset, the date is the one written in the
//! string (the local date at that offset), as pandas reports it; it is never shifted to UTC.
//! Years run from 1 to 9999, the range of the original service's date type (and of what
//! `YYYY` can write): chrono also reads year 0, negative years and signed five-digit years,
//! which are rejected like any impossible date.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

/// Why a date string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid date {input:?}: expected YYYY-MM-DD (years 1 to 9999) or an ISO 8601 datetime such as 2018-01-01T00:00:00"
)]
pub struct DateError {
    /// The rejected input, truncated to keep error messages short.
    pub input: String,
}

const MAX_ECHO: usize = 40;

/// The years a request date may have.
pub const YEARS: RangeInclusive<i32> = 1..=9999;

/// Parses a request date: `YYYY-MM-DD`, or an ISO 8601 datetime with `T` or a space between
/// date and time, optional fractional seconds and an optional `Z` / `±HH:MM` offset; the
/// year must be in [`YEARS`].
pub fn parse_date(input: &str) -> Result<NaiveDate, DateError> {
    let s = input.trim();
    match parse_any_year(s) {
        Some(date) if YEARS.contains(&date.year()) => Ok(date),
        _ => Err(DateError {
            input: s.chars().take(MAX_ECHO).collect(),
        }),
    }
}

/// The date written in `s`, in any year chrono can represent.
fn parse_any_year(s: &str) -> Option<NaiveDate> {
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(date);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.date_naive());
    }
    // Local times, then times with an offset (whose date is the one written, not UTC's).
    const LOCAL: [&str; 3] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ];
    const ZONED: [&str; 3] = [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ];
    let local = |format| NaiveDateTime::parse_from_str(s, format).ok();
    let zoned = |format| DateTime::parse_from_str(s, format).ok();
    (LOCAL.into_iter().find_map(local).map(|dt| dt.date()))
        .or_else(|| ZONED.into_iter().find_map(zoned).map(|dt| dt.date_naive()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn accepts_plain_dates_and_iso_datetimes() {
        let cases = [
            ("2018-01-01", ymd(2018, 1, 1)),
            ("2018-01-01T00:00:00", ymd(2018, 1, 1)),
            ("2018-01-01 13:45:10", ymd(2018, 1, 1)),
            ("2018-01-01T23:59:59.123456", ymd(2018, 1, 1)),
            ("2018-01-01T00:00:00Z", ymd(2018, 1, 1)),
            ("2018-03-04T10:00", ymd(2018, 3, 4)),
            (" 2016-02-29 ", ymd(2016, 2, 29)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_date(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn keeps_the_written_date_when_an_offset_is_given() {
        // 23:30 at -05:00 is already the next day in UTC; the local date is what counts.
        assert_eq!(parse_date("2018-01-01T23:30:00-05:00"), Ok(ymd(2018, 1, 1)));
        assert_eq!(parse_date("2018-01-01T00:30:00+09:00"), Ok(ymd(2018, 1, 1)));
        assert_eq!(parse_date("2018-01-01T00:30:00+0900"), Ok(ymd(2018, 1, 1)));
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for input in [
            "",
            "2018-13-01",
            "2017-02-29",
            "01/02/2018",
            "yesterday",
            "2018-01-01T25:00:00",
        ] {
            let err = parse_date(input).unwrap_err();
            assert!(
                err.to_string().contains("expected YYYY-MM-DD"),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn rejects_years_outside_1_to_9999() {
        for input in [
            "0000-01-01",
            "0000-12-31T23:59:59",
            "0000-06-15T12:00:00Z",
            "0000-01-01T00:00:00+05:00",
            "-0001-01-01",
            "-2018-01-01T00:00:00",
            "+10000-01-01",
            "10000-01-01",
        ] {
            let err = parse_date(input).unwrap_err();
            assert!(
                err.to_string().contains("years 1 to 9999"),
                "{input}: {err}"
            );
        }
        // chrono itself reads them: the year check is what rejects them.
        assert_eq!(parse_any_year("0000-01-01"), Some(ymd(0, 1, 1)));
        assert_eq!(parse_any_year("-0001-01-01"), Some(ymd(-1, 1, 1)));
        // The ends of the range are dates.
        assert_eq!(parse_date("0001-01-01"), Ok(ymd(1, 1, 1)));
        assert_eq!(parse_date("9999-12-31T23:59:59Z"), Ok(ymd(9999, 12, 31)));
        // The date as written counts: year 1 at +01:00 is still year 1.
        assert_eq!(parse_date("0001-01-01T00:30:00+01:00"), Ok(ymd(1, 1, 1)));
    }

    #[test]
    fn truncates_long_input_in_the_error() {
        let long = "x".repeat(10_000);
        let err = parse_date(&long).unwrap_err();
        assert_eq!(err.input.len(), MAX_ECHO);
    }

    mod properties {
        use chrono::Days;
        use proptest::prelude::*;

        use super::*;

        /// Any day of years 1..=9999 (the range `YYYY-MM-DD` can write).
        fn any_date() -> impl Strategy<Value = NaiveDate> {
            (0u64..3_652_059)
                .prop_map(|offset| NaiveDate::from_ymd_opt(1, 1, 1).unwrap() + Days::new(offset))
        }

        /// Any day of year 0, of a negative year, or of a year after 9999 (chrono reads them
        /// all; `%Y` writes them as `0000`, `-0001`, `+10000`).
        fn any_date_outside_the_years() -> impl Strategy<Value = NaiveDate> {
            prop_oneof![
                (-9999i32..=0, 1u32..=366),
                (10_000i32..=262_142, 1u32..=366),
            ]
            .prop_filter_map("a day of that year", |(year, ordinal)| {
                NaiveDate::from_yo_opt(year, ordinal)
            })
        }

        proptest! {
            #[test]
            fn year_zero_negative_and_five_digit_years_are_rejected(
                date in any_date_outside_the_years(),
                (h, m) in (0u32..24, 0u32..60),
                offset_hours in -23i32..=23,
            ) {
                let day = date.format("%Y-%m-%d").to_string();
                prop_assert_eq!(parse_any_year(&day), Some(date), "{}", day);
                let sign = if offset_hours < 0 { '-' } else { '+' };
                for text in [
                    day.clone(),
                    format!("{day}T{h:02}:{m:02}:00"),
                    format!("{day} {h:02}:{m:02}:00.5"),
                    format!("{day}T{h:02}:{m:02}:00Z"),
                    format!("{day}T{h:02}:{m:02}:00{sign}{:02}:00", offset_hours.abs()),
                ] {
                    let err = parse_date(&text);
                    prop_assert!(err.is_err(), "{} parsed as {:?}", text, err);
                }
            }

            #[test]
            fn any_text_parses_or_is_rejected_with_a_short_echo(input in any::<String>()) {
                if let Err(err) = parse_date(&input) {
                    prop_assert!(err.input.chars().count() <= MAX_ECHO);
                }
            }

            #[test]
            fn what_parses_has_a_canonical_form_that_parses_the_same(
                input in "[0-9 T:Z+.-]{0,32}",
            ) {
                if let Ok(date) = parse_date(&input) {
                    let canonical = date.format("%Y-%m-%d").to_string();
                    prop_assert_eq!(parse_date(&canonical), Ok(date), "{} -> {}", input, canonical);
                }
            }

            #[test]
            fn calendar_dates_round_trip(date in any_date()) {
                prop_assert_eq!(parse_date(&date.format("%Y-%m-%d").to_string()), Ok(date));
            }

            #[test]
            fn whatever_parses_is_in_years_1_to_9999(input in "[+-]?[0-9]{1,6}-[0-9]{2}-[0-9]{2}") {
                if let Ok(date) = parse_date(&input) {
                    prop_assert!(YEARS.contains(&date.year()), "{} -> {}", input, date);
                }
            }

            #[test]
            fn datetimes_keep_the_written_date(
                date in any_date(),
                (h, m, s) in (0u32..24, 0u32..60, 0u32..60),
                nanos in 0u32..1_000_000_000,
                offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i32),
                separator in prop::sample::select(vec!['T', ' ']),
            ) {
                let day = date.format("%Y-%m-%d");
                let sign = if offset_minutes < 0 { '-' } else { '+' };
                let (oh, om) = (offset_minutes.abs() / 60, offset_minutes.abs() % 60);
                for text in [
                    format!("{day}{separator}{h:02}:{m:02}:{s:02}"),
                    format!("{day}{separator}{h:02}:{m:02}:{s:02}.{nanos:09}"),
                    format!("{day}T{h:02}:{m:02}:{s:02}Z"),
                    format!("{day}{separator}{h:02}:{m:02}:{s:02}{sign}{oh:02}:{om:02}"),
                    format!("  {day}  "),
                ] {
                    prop_assert_eq!(parse_date(&text), Ok(date), "{}", text);
                }
            }
        }
    }
}
