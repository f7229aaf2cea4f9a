//! The binary protocol's value encoding, shared by `COM_STMT_EXECUTE`
//! parameters and binary result rows.
//!
//! Each value's layout follows from its column type alone: integers and
//! floats are fixed-width little-endian, dates and times are a length byte
//! then only as many fields as are non-zero, everything else (strings,
//! decimals, blobs, JSON, BIT, geometry) is a length-encoded string. A
//! *raw* value here is the value without its framing: the fixed-width
//! bytes, the temporal bytes after the length byte, or the string content
//! after the length prefix.
//!
//! [`binary_value_text`] renders a raw value the way the text protocol
//! would have sent it, so a proxy can apply one set of text-based rules
//! (masking, audit) to both protocols.
use crate::error::{CodecError, Result};
use crate::response::ColumnDef;
use crate::response::types;
use crate::wire::{Reader, put_lenenc_bytes};

/// How a value of some column type is framed in the binary protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Exactly this many little-endian bytes.
    Fixed(usize),
    /// A length byte (0, 4, 7, 11 for dates; 0, 8, 12 for times), then
    /// that many bytes.
    Temporal,
    /// A length-encoded string.
    LengthEncoded,
    /// Nothing at all (`MYSQL_TYPE_NULL`).
    Empty,
}

/// The binary layout of `column_type`.
pub fn layout(column_type: u8) -> Layout {
    match column_type {
        types::TINY => Layout::Fixed(1),
        types::SHORT | types::YEAR => Layout::Fixed(2),
        types::LONG | types::INT24 | types::FLOAT => Layout::Fixed(4),
        types::LONGLONG | types::DOUBLE => Layout::Fixed(8),
        types::DATE
        | types::DATETIME
        | types::TIMESTAMP
        | types::TIME
        | types::NEWDATE
        | types::DATETIME2
        | types::TIMESTAMP2
        | types::TIME2 => Layout::Temporal,
        types::NULL => Layout::Empty,
        _ => Layout::LengthEncoded,
    }
}

/// Read one raw value of `column_type`.
pub fn read_value<'a>(r: &mut Reader<'a>, column_type: u8) -> Result<&'a [u8]> {
    match layout(column_type) {
        Layout::Fixed(n) => r.bytes(n),
        Layout::Temporal => {
            let n = r.u8()?;
            r.bytes(usize::from(n))
        }
        Layout::LengthEncoded => r.lenenc_bytes(),
        Layout::Empty => Ok(&[]),
    }
}

/// Append one raw value of `column_type` with its framing. A fixed-width
/// value of the wrong size is zero-padded or cut to size (so the row stays
/// readable); a temporal value is cut at 255 bytes.
pub fn put_value(out: &mut Vec<u8>, column_type: u8, raw: &[u8]) {
    match layout(column_type) {
        Layout::Fixed(n) => {
            let take = raw.len().min(n);
            out.extend_from_slice(&raw[..take]);
            out.resize(out.len() + (n - take), 0);
        }
        Layout::Temporal => {
            let raw = &raw[..raw.len().min(255)];
            out.push(raw.len() as u8);
            out.extend_from_slice(raw);
        }
        Layout::LengthEncoded => put_lenenc_bytes(out, raw),
        Layout::Empty => {}
    }
}

/// Split a binary-protocol result row into raw values, `None` for NULL.
///
/// The row is a `0x00` header, a NULL bitmap with an offset of 2 bits
/// (`(columns + 9) / 8` bytes), then each non-NULL value framed by its
/// column's type. Values are zero-copy slices of `payload`.
pub fn binary_row<'a>(payload: &'a [u8], columns: &[ColumnDef]) -> Result<Vec<Option<&'a [u8]>>> {
    let mut r = Reader::new(payload);
    let header = r.u8()?;
    if header != 0 {
        return Err(CodecError::malformed(format!(
            "binary row header 0x{header:02X}"
        )));
    }
    let bitmap = r.bytes((columns.len() + 9) / 8)?;
    let mut out = Vec::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        if bit_set(bitmap, i + 2) {
            out.push(None);
        } else {
            out.push(Some(read_value(&mut r, col.column_type)?));
        }
    }
    r.finish("binary row")?;
    Ok(out)
}

/// Encode a binary-protocol result row, the inverse of [`binary_row`].
/// `values` pairs with `columns` in order; a missing value is NULL and
/// extra values are ignored.
pub fn encode_binary_row(columns: &[ColumnDef], values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + (columns.len() + 9) / 8 + values.len() * 8);
    out.push(0);
    let bitmap_at = out.len();
    out.resize(bitmap_at + (columns.len() + 9) / 8, 0);
    for (i, col) in columns.iter().enumerate() {
        match values.get(i).copied().flatten() {
            None => {
                let bit = i + 2;
                out[bitmap_at + bit / 8] |= 1 << (bit % 8);
            }
            Some(raw) => put_value(&mut out, col.column_type, raw),
        }
    }
    out
}

/// Whether bit `bit` of `bitmap` is set (out of range reads as clear).
pub(crate) fn bit_set(bitmap: &[u8], bit: usize) -> bool {
    bitmap
        .get(bit / 8)
        .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
}

/// Render a raw binary value the way the text protocol shows it:
/// integers signed or unsigned by [`types::UNSIGNED_FLAG`] (zero-padded to
/// the display width with `ZEROFILL`), floats with the column's fixed
/// decimals if it has them, dates and times as `YYYY-MM-DD hh:mm:ss` with
/// as many fractional digits as the column declares, strings as lossy
/// UTF-8. `None` when `raw` does not fit the type (or the type is NULL).
pub fn binary_value_text(column: &ColumnDef, raw: &[u8]) -> Option<String> {
    let t = column.column_type;
    let unsigned = column.flags & types::UNSIGNED_FLAG != 0;
    let text = match layout(t) {
        Layout::Fixed(n) if raw.len() != n => return None,
        Layout::Fixed(_) => match t {
            types::FLOAT => format_float(
                f64::from(f32::from_le_bytes(fixed(raw)?)),
                true,
                fixed_decimals(column.decimals),
            ),
            types::DOUBLE => format_float(
                f64::from_le_bytes(fixed(raw)?),
                false,
                fixed_decimals(column.decimals),
            ),
            _ => {
                let (s, u) = int_value(raw)?;
                let digits = if unsigned {
                    u.to_string()
                } else {
                    s.to_string()
                };
                if column.flags & types::ZEROFILL_FLAG != 0 {
                    let width = usize::try_from(column.length).unwrap_or(0).min(64);
                    format!("{digits:0>width$}")
                } else {
                    digits
                }
            }
        },
        Layout::Temporal => {
            let frac = usize::from(column.decimals);
            let frac = (frac <= 6).then_some(frac);
            match t {
                types::DATE | types::NEWDATE => format_date(raw)?,
                types::TIME | types::TIME2 => format_time(raw, frac)?,
                _ => format_datetime(raw, frac)?,
            }
        }
        Layout::LengthEncoded => String::from_utf8_lossy(raw).into_owned(),
        Layout::Empty => return None,
    };
    Some(text)
}

fn fixed<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.try_into().ok()
}

/// A little-endian integer of 1, 2, 4 or 8 bytes, sign-extended and
/// zero-extended.
pub(crate) fn int_value(raw: &[u8]) -> Option<(i64, u64)> {
    Some(match raw.len() {
        1 => (i64::from(raw[0] as i8), u64::from(raw[0])),
        2 => {
            let b = fixed(raw)?;
            (
                i64::from(i16::from_le_bytes(b)),
                u64::from(u16::from_le_bytes(b)),
            )
        }
        4 => {
            let b = fixed(raw)?;
            (
                i64::from(i32::from_le_bytes(b)),
                u64::from(u32::from_le_bytes(b)),
            )
        }
        8 => {
            let b = fixed(raw)?;
            (i64::from_le_bytes(b), u64::from_le_bytes(b))
        }
        _ => return None,
    })
}

/// A column's decimals count as a fixed number of digits, or `None` for
/// "not fixed" (MySQL sends 31, MariaDB 39).
fn fixed_decimals(decimals: u8) -> Option<usize> {
    (decimals < 31).then_some(usize::from(decimals))
}

/// Format a float like the server's text protocol: a fixed number of
/// decimals when the column declares them, else the shortest text that
/// reads back to the same value, switching to exponent form for very large
/// or very small magnitudes (`1e20`, `1.5e-7`).
pub(crate) fn format_float(v: f64, single: bool, decimals: Option<usize>) -> String {
    if let Some(d) = decimals {
        return if single {
            format!("{:.*}", d, v as f32)
        } else {
            format!("{v:.d$}")
        };
    }
    let magnitude = v.abs();
    let exponent = magnitude != 0.0 && magnitude.is_finite() && !(1e-6..1e15).contains(&magnitude);
    match (single, exponent) {
        (true, true) => format!("{:e}", v as f32),
        (true, false) => format!("{}", v as f32),
        (false, true) => format!("{v:e}"),
        (false, false) => format!("{v}"),
    }
}

/// Date and time fields decoded from a temporal value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Temporal {
    pub negative: bool,
    pub days: u32,
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

/// Decode a DATE/DATETIME/TIMESTAMP value (0, 4, 7 or 11 bytes).
pub(crate) fn decode_datetime(raw: &[u8]) -> Option<Temporal> {
    let mut t = Temporal::default();
    let mut r = Reader::new(raw);
    if !matches!(raw.len(), 0 | 4 | 7 | 11) {
        return None;
    }
    if raw.len() >= 4 {
        t.year = r.u16().ok()?;
        t.month = r.u8().ok()?;
        t.day = r.u8().ok()?;
    }
    if raw.len() >= 7 {
        t.hour = r.u8().ok()?;
        t.minute = r.u8().ok()?;
        t.second = r.u8().ok()?;
    }
    if raw.len() == 11 {
        t.micros = r.u32().ok()?;
    }
    Some(t)
}

/// Decode a TIME value (0, 8 or 12 bytes).
pub(crate) fn decode_time(raw: &[u8]) -> Option<Temporal> {
    let mut t = Temporal::default();
    let mut r = Reader::new(raw);
    if !matches!(raw.len(), 0 | 8 | 12) {
        return None;
    }
    if raw.len() >= 8 {
        t.negative = r.u8().ok()? != 0;
        t.days = r.u32().ok()?;
        t.hour = r.u8().ok()?;
        t.minute = r.u8().ok()?;
        t.second = r.u8().ok()?;
    }
    if raw.len() == 12 {
        t.micros = r.u32().ok()?;
    }
    Some(t)
}

/// `.ffffff` cut to `digits` (`None`: six digits, only when non-zero).
fn fraction(micros: u32, digits: Option<usize>) -> String {
    match digits {
        Some(0) => String::new(),
        Some(d) => format!(".{:06}", micros % 1_000_000)[..d.min(6) + 1].to_string(),
        None if micros == 0 => String::new(),
        None => format!(".{:06}", micros % 1_000_000),
    }
}

/// `YYYY-MM-DD`.
pub(crate) fn format_date(raw: &[u8]) -> Option<String> {
    let t = decode_datetime(raw)?;
    Some(format!("{:04}-{:02}-{:02}", t.year, t.month, t.day))
}

/// `YYYY-MM-DD hh:mm:ss` and the fraction.
pub(crate) fn format_datetime(raw: &[u8], frac: Option<usize>) -> Option<String> {
    let t = decode_datetime(raw)?;
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        fraction(t.micros, frac)
    ))
}

/// `[-]hh:mm:ss` (hours include the days, as the server shows them) and
/// the fraction.
pub(crate) fn format_time(raw: &[u8], frac: Option<usize>) -> Option<String> {
    let t = decode_time(raw)?;
    let hours = u64::from(t.days) * 24 + u64::from(t.hour);
    Some(format!(
        "{}{:02}:{:02}:{:02}{}",
        if t.negative { "-" } else { "" },
        hours,
        t.minute,
        t.second,
        fraction(t.micros, frac)
    ))
}

/// Parse text from [`format_date`]/[`format_datetime`] back into the
/// shortest binary DATE/DATETIME encoding (as libmysqlclient sends it).
pub(crate) fn parse_datetime(text: &str) -> Option<Vec<u8>> {
    let (date, time) = match text.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut d = date.splitn(3, '-');
    let year: u16 = d.next()?.parse().ok()?;
    let month: u8 = d.next()?.parse().ok()?;
    let day: u8 = d.next()?.parse().ok()?;
    let (hour, minute, second, micros) = match time {
        Some(t) => parse_clock(t)?,
        None => (0, 0, 0, 0),
    };
    let hour = u8::try_from(hour).ok()?;
    let mut out = Vec::with_capacity(11);
    if micros != 0 || hour != 0 || minute != 0 || second != 0 || year != 0 || month != 0 || day != 0
    {
        out.extend_from_slice(&year.to_le_bytes());
        out.extend_from_slice(&[month, day]);
    }
    if micros != 0 || hour != 0 || minute != 0 || second != 0 {
        out.extend_from_slice(&[hour, minute, second]);
    }
    if micros != 0 {
        out.extend_from_slice(&micros.to_le_bytes());
    }
    Some(out)
}

/// Parse text from [`format_time`] back into the shortest binary TIME
/// encoding.
pub(crate) fn parse_time(text: &str) -> Option<Vec<u8>> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (hours, minute, second, micros) = parse_clock(rest)?;
    let days = u32::try_from(hours / 24).ok()?;
    let hour = (hours % 24) as u8;
    let mut out = Vec::with_capacity(12);
    if negative || micros != 0 || hours != 0 || minute != 0 || second != 0 {
        out.push(u8::from(negative));
        out.extend_from_slice(&days.to_le_bytes());
        out.extend_from_slice(&[hour, minute, second]);
    }
    if micros != 0 {
        out.extend_from_slice(&micros.to_le_bytes());
    }
    Some(out)
}

/// `h+:mm:ss[.ffffff]` → (hours, minutes, seconds, microseconds).
fn parse_clock(text: &str) -> Option<(u64, u8, u8, u32)> {
    let (clock, frac) = match text.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (text, None),
    };
    let mut c = clock.splitn(3, ':');
    let hours: u64 = c.next()?.parse().ok()?;
    let minute: u8 = c.next()?.parse().ok()?;
    let second: u8 = c.next()?.parse().ok()?;
    let micros = match frac {
        Some(f) if (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<6}").parse().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    Some((hours, minute, second, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(column_type: u8, flags: u16, decimals: u8, length: u32) -> ColumnDef {
        ColumnDef {
            catalog: b"def".to_vec(),
            name: types::name(column_type).as_bytes().to_vec(),
            charset: 63,
            length,
            column_type,
            flags,
            decimals,
            ..ColumnDef::default()
        }
    }

    #[test]
    fn rendering_matches_the_text_protocol() {
        let u = types::UNSIGNED_FLAG;
        for (c, raw, text) in [
            (col(types::TINY, 0, 0, 4), &b"\xff"[..], Some("-1")),
            (col(types::TINY, u, 0, 3), b"\xff", Some("255")),
            (col(types::SHORT, 0, 0, 6), b"\x00\x80", Some("-32768")),
            (
                col(types::YEAR, u | types::ZEROFILL_FLAG, 0, 4),
                b"\xe8\x07",
                Some("2024"),
            ),
            (
                col(types::LONG, u | types::ZEROFILL_FLAG, 0, 5),
                b"\x2a\x00\x00\x00",
                Some("00042"),
            ),
            (col(types::INT24, 0, 0, 9), b"\xfe\xff\xff\xff", Some("-2")),
            (
                col(types::LONGLONG, u, 0, 20),
                b"\xff\xff\xff\xff\xff\xff\xff\xff",
                Some("18446744073709551615"),
            ),
            (
                col(types::LONGLONG, 0, 0, 20),
                b"\xff\xff\xff\xff\xff\xff\xff\xff",
                Some("-1"),
            ),
            (
                col(types::FLOAT, 0, 31, 12),
                &1.1f32.to_le_bytes()[..],
                Some("1.1"),
            ),
            (
                col(types::FLOAT, 0, 2, 12),
                &1.5f32.to_le_bytes()[..],
                Some("1.50"),
            ),
            (
                col(types::DOUBLE, 0, 31, 22),
                &0.1f64.to_le_bytes()[..],
                Some("0.1"),
            ),
            (
                col(types::DOUBLE, 0, 39, 22),
                &1e20f64.to_le_bytes()[..],
                Some("1e20"),
            ),
            (
                col(types::DOUBLE, 0, 31, 22),
                &(-2.5f64).to_le_bytes()[..],
                Some("-2.5"),
            ),
            (col(types::DATE, 0, 0, 10), b"", Some("0000-00-00")),
            (
                col(types::DATE, 0, 0, 10),
                b"\xe8\x07\x02\x1d",
                Some("2024-02-29"),
            ),
            (
                col(types::DATETIME, 0, 0, 19),
                b"\xe8\x07\x02\x1d",
                Some("2024-02-29 00:00:00"),
            ),
            (
                col(types::DATETIME, 0, 0, 19),
                b"\xe8\x07\x02\x1d\x17\x3b\x3a",
                Some("2024-02-29 23:59:58"),
            ),
            (
                col(types::TIMESTAMP, 0, 3, 23),
                b"\xe8\x07\x02\x1d\x01\x02\x03\x40\xe2\x01\x00",
                Some("2024-02-29 01:02:03.123"),
            ),
            (
                col(types::DATETIME, 0, 6, 26),
                b"\xe8\x07\x02\x1d\x01\x02\x03\x40\xe2\x01\x00",
                Some("2024-02-29 01:02:03.123456"),
            ),
            (col(types::TIME, 0, 0, 10), b"", Some("00:00:00")),
            (
                col(types::TIME, 0, 0, 10),
                b"\x01\x01\x00\x00\x00\x02\x03\x04",
                Some("-26:03:04"),
            ),
            (
                col(types::TIME, 0, 2, 13),
                b"\x00\x00\x00\x00\x00\x02\x03\x04\x10\x27\x00\x00",
                Some("02:03:04.01"),
            ),
            (
                col(types::VAR_STRING, 0, 0, 80),
                b"Ada \xff",
                Some("Ada \u{fffd}"),
            ),
            (col(types::NEWDECIMAL, 0, 2, 10), b"-12.50", Some("-12.50")),
            (col(types::NULL, 0, 0, 0), b"", None),
            (col(types::LONG, 0, 0, 11), b"\x01\x00", None),
            (col(types::DATE, 0, 0, 10), b"\x01\x00\x01", None),
            (col(types::TIME, 0, 0, 10), b"\x01\x00\x01\x00", None),
        ] {
            assert_eq!(
                binary_value_text(&c, raw).as_deref(),
                text,
                "{} {raw:?}",
                types::name(c.column_type)
            );
        }
    }

    #[test]
    fn binary_rows_round_trip() {
        let cols = vec![
            col(types::LONGLONG, 0, 0, 20),
            col(types::VAR_STRING, 0, 0, 80),
            col(types::DATETIME, 0, 0, 19),
            col(types::TINY, 0, 0, 4),
            col(types::DOUBLE, 0, 31, 22),
            col(types::TIME, 0, 0, 10),
            col(types::BLOB, 0, 0, 65535),
            col(types::SHORT, 0, 0, 6),
            col(types::NULL, 0, 0, 0),
        ];
        let long = vec![b'q'; 300];
        for values in [
            vec![
                Some(&b"\x01\x00\x00\x00\x00\x00\x00\x00"[..]),
                Some(b"4111111111111111"),
                Some(b"\xe8\x07\x02\x1d\x17\x3b\x3a"),
                Some(b"\x05"),
                Some(&b"\x00\x00\x00\x00\x00\x00\xf0\x3f"[..]),
                Some(b""),
                Some(&long[..]),
                Some(b"\x01\x02"),
                Some(b""),
            ],
            vec![None; 9],
            vec![
                None,
                Some(&b""[..]),
                None,
                Some(b"\x00"),
                None,
                None,
                Some(b""),
                None,
                None,
            ],
        ] {
            let b = encode_binary_row(&cols, &values);
            assert_eq!(binary_row(&b, &cols).unwrap(), values);
            for cut in 0..b.len() {
                assert!(binary_row(&b[..cut], &cols).is_err(), "cut {cut}");
            }
        }
        // NULL bitmap offset: the first column's NULL bit is bit 2.
        let b = encode_binary_row(&cols[..1], &[None]);
        assert_eq!(b, b"\x00\x04");
        assert!(binary_row(b"\x01\x00", &cols[..1]).is_err());
        assert!(binary_row(b"\x00\x04\x00", &cols[..1]).is_err());
        // Wrongly sized fixed values are padded to keep the row readable.
        let b = encode_binary_row(&cols[..1], &[Some(b"\x07")]);
        assert_eq!(
            binary_row(&b, &cols[..1]).unwrap(),
            vec![Some(&b"\x07\0\0\0\0\0\0\0"[..])]
        );
    }

    #[test]
    fn temporal_text_round_trips() {
        for raw in [
            &b""[..],
            b"\xe8\x07\x02\x1d",
            b"\xe8\x07\x02\x1d\x17\x3b\x3a",
            b"\xe8\x07\x02\x1d\x01\x02\x03\x40\xe2\x01\x00",
        ] {
            let text = format_datetime(raw, None).unwrap();
            assert_eq!(parse_datetime(&text).unwrap(), raw, "{text}");
        }
        for raw in [
            &b""[..],
            b"\x01\x01\x00\x00\x00\x02\x03\x04",
            b"\x00\x00\x00\x00\x00\x02\x03\x04",
            b"\x00\x22\x00\x00\x00\x02\x03\x04\x10\x27\x00\x00",
        ] {
            let text = format_time(raw, None).unwrap();
            assert_eq!(parse_time(&text).unwrap(), raw, "{text}");
        }
        assert_eq!(parse_datetime("2024-01-02").unwrap(), b"\xe8\x07\x01\x02");
        for bad in [
            "",
            "2024",
            "2024-01-02 10",
            "2024-01-02 10:00:00.1234567",
            "x-1-2",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
        assert_eq!(parse_time("1:2"), None);
    }

    #[test]
    fn layouts() {
        for (t, l) in [
            (types::TINY, Layout::Fixed(1)),
            (types::YEAR, Layout::Fixed(2)),
            (types::INT24, Layout::Fixed(4)),
            (types::DOUBLE, Layout::Fixed(8)),
            (types::TIMESTAMP, Layout::Temporal),
            (types::NEWDECIMAL, Layout::LengthEncoded),
            (types::JSON, Layout::LengthEncoded),
            (types::BIT, Layout::LengthEncoded),
            (types::NULL, Layout::Empty),
        ] {
            assert_eq!(layout(t), l, "{}", types::name(t));
        }
    }
}
