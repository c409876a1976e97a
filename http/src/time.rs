//! RFC 3339 timestamps: formatting (UTC, microseconds, as the API promises) and parsing.
//!
//! Small and exact on purpose: conversions between days and civil dates use the proleptic
//! Gregorian calendar algorithm (days from 1970-01-01), valid far beyond any message's lifetime.
//!
//! Why not a date crate: the API promises exactly six fractional digits in every answer (Queen's
//! clients compare the strings), while RFC 3339 formatters such as the `time` crate's print the
//! fraction trimmed; and parsing must take the space separator (`2026-01-01 10:00:00+00:00`,
//! what Python's `str(datetime)` gives) that strict RFC 3339 parsers refuse. Both would need a
//! custom format description around the crate; the arithmetic here is the smaller thing to own,
//! and the tests below check it against every day of four centuries.

use queen_engine::Timestamp;

const US_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// `2026-04-26T10:59:28.267966Z`.
pub fn format(ts: Timestamp) -> String {
    let us = ts.micros();
    let secs = us.div_euclid(US_PER_SEC);
    let frac = us.rem_euclid(US_PER_SEC);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (a space is accepted for `T`).
pub fn parse(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 6)];
        frac_us = digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32);
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * SECS_PER_DAY + h * 3600 + mi * 60 + sec.min(59) - offset_secs;
    Some(Timestamp(secs * US_PER_SEC + frac_us))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_microseconds() {
        assert_eq!(format(Timestamp(0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format(Timestamp(1_777_201_168_267_966)),
            "2026-04-26T10:59:28.267966Z"
        );
        assert_eq!(
            format(Timestamp(951_782_400_000_001)),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(format(Timestamp(-1)), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for us in [
            0,
            1_777_201_168_267_966,
            951_782_400_000_001,
            4_102_444_800_000_000,
        ] {
            assert_eq!(parse(&format(Timestamp(us))), Some(Timestamp(us)));
        }
        assert_eq!(
            parse("2026-04-26T12:59:28.267966+02:00"),
            Some(Timestamp(1_777_201_168_267_966))
        );
        assert_eq!(
            parse("2026-04-26 10:59:28Z"),
            Some(Timestamp(1_777_201_168_000_000))
        );
        assert_eq!(
            parse("2026-04-26T10:59:28.5Z"),
            Some(Timestamp(1_777_201_168_500_000))
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Walk the calendar by hand from 1900-01-01 and compare with the arithmetic.
        let (mut y, mut m, mut d) = (1900i64, 1i64, 1i64);
        let first = days_from_civil(1900, 1, 1);
        for day in first..first + 146_097 {
            assert_eq!(civil_from_days(day), (y, m, d));
            assert_eq!(days_from_civil(y, m, d), day);
            let us = day * SECS_PER_DAY * US_PER_SEC + 43_200_123_456;
            let text = format(Timestamp(us));
            assert_eq!(&text[..10], &format!("{y:04}-{m:02}-{d:02}"));
            assert_eq!(parse(&text), Some(Timestamp(us)));
            d += 1;
            if d > days_in_month(y, m) {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "now",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-04-26T10:59:28",
            "2026-04-26T25:00:00Z",
            "2026-04-26T10:59:28.Z",
            "2026-04-26T10:59:28+0200",
            "２０２６-04-26T10:59:28Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
