//! Timestamps for people: RFC 3339 in UTC, and the forms `--since` and
//! `--until` accept.

/// µs since the epoch as `2026-11-22T10:26:37.123456Z`.
pub fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// Parse a point in time: `2026-11-22`, `2026-11-22T10:00:00Z` (fractions
/// and `+hh:mm` offsets accepted), or an age — `90s`, `15m`, `2h`, `7d` —
/// counted back from `now_us`.
pub fn parse(text: &str, now_us: u64) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "cannot read {text:?} as a time: use 2026-11-22, 2026-11-22T10:00:00Z, or an age like 15m, 2h, 7d"
        )
    };
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c))
        && let Ok(n) = t[..t.len() - 1].parse::<u64>()
    {
        // An age beyond the epoch counts from it (saturating, like the
        // subtraction): `99999999999999999999h` is not an overflow.
        let secs = match unit {
            's' => n,
            'm' => n.saturating_mul(60),
            'h' => n.saturating_mul(3600),
            _ => n.saturating_mul(86_400),
        };
        return Ok(now_us.saturating_sub(secs.saturating_mul(1_000_000)));
    }
    let (date, rest) = t.split_at(t.find(['T', 't', ' ']).unwrap_or(t.len()));
    let mut parts = date.split('-');
    let mut num = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
    };
    let (y, m, d) = (
        num(4).ok_or_else(bad)?,
        num(2).ok_or_else(bad)?,
        num(2).ok_or_else(bad)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) * 86_400;
    let mut micros = 0i64;
    if !rest.is_empty() {
        let rest = &rest[1..];
        let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        // Every field is plain ASCII digits (no sign, no other script's
        // digits) of a bounded length, so the arithmetic below cannot
        // overflow whatever was typed.
        let field = |p: &str, max: usize| {
            (!p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<i64>().ok())
                .flatten()
                .ok_or_else(bad)
        };
        let f: Vec<i64> = hms
            .split(':')
            .map(|p| field(p, 2))
            .collect::<Result<_, _>>()?;
        let [h, mi, s] = match f.as_slice() {
            [h, mi] => [*h, *mi, 0],
            [h, mi, s] => [*h, *mi, *s],
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || s > 60 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + s;
        if !frac.is_empty() {
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            // Microseconds: the first six digits, the rest dropped.
            let digits = &frac[..frac.len().min(6)];
            let scale = 10i64.pow(6 - digits.len() as u32);
            micros = field(digits, 6)? * scale;
        }
        if let Some(sign) = offset.chars().next().filter(|c| *c == '+' || *c == '-') {
            let (oh, om) = offset[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om) = (field(oh, 2)?, field(om, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let off = oh * 3600 + om * 60;
            secs -= if sign == '+' { off } else { -off };
        }
    }
    u64::try_from(secs * 1_000_000 + micros).map_err(|_| bad())
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        let us = 1_795_343_197_123_456; // 2026-11-22T...
        let s = rfc3339(us);
        assert_eq!(parse(&s, 0).unwrap(), us);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(parse("2000-03-01", 0).unwrap(), 951_868_800_000_000);
        assert_eq!(
            parse("2000-03-01T01:00:00+01:00", 0).unwrap(),
            951_868_800_000_000
        );
        assert_eq!(parse("15m", 1_000_000_000).unwrap(), 100_000_000);
        assert!(parse("yesterday", 0).unwrap_err().contains("7d"));
        assert!(parse("2026-13-01", 0).is_err());
    }

    /// Found by the store_event fuzz target: ages and clock fields whose
    /// arithmetic overflowed (a panic in debug builds, a wrong time in
    /// release ones), and fractions of non-ASCII digits that underflowed
    /// the scale.
    #[test]
    fn hostile_times_are_errors_or_saturate() {
        assert_eq!(parse("2222222222222222229h", 5).unwrap(), 0);
        assert_eq!(parse("18446744073709551615d", 5).unwrap(), 0);
        for text in [
            "2026-11-22T-9223372036854775808:00",
            "2026-11-22T10:00:00+9223372036854775807:00",
            "2026-11-22T10:00:00-24:00",
            "2026-11-22T10:00:00.\u{e9}\u{e9}\u{e9}\u{e9}Z",
            "2026-11-22T10:00:00.\u{661}\u{662}Z",
            "2026-11-22T+1:00",
        ] {
            assert!(parse(text, 0).is_err(), "{text:?}");
        }
        assert_eq!(
            parse("2000-03-01T01:00:00.1234567Z", 0).unwrap(),
            951_872_400_123_456
        );
    }
}
