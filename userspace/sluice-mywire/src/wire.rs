//! Primitive field readers and writers shared by every message: fixed-width
//! little-endian integers, length-encoded integers and strings, and
//! NUL-terminated strings.
//!
//! A [`Reader`] walks one complete payload as a borrowed slice, so parsers
//! can hand out zero-copy sub-slices. Every overrun is
//! [`CodecError::Truncated`] naming the primitive; nothing here indexes
//! without a bounds check, so no input can make a parser panic.
use crate::error::{CodecError, Result};

/// Reads the fields of one packet payload, front to back.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Read `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>("u8")?[0])
    }

    /// A little-endian 2-byte integer.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array("u16")?))
    }

    /// A little-endian 3-byte integer (packet lengths, `0xFD` lenencs).
    pub fn u24(&mut self) -> Result<u32> {
        let [a, b, c] = self.array("u24")?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    /// A little-endian 4-byte integer.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array("u32")?))
    }

    /// A little-endian 8-byte integer.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array("u64")?))
    }

    /// A length-encoded integer: one byte below `0xFB`, or `0xFC`/`0xFD`/
    /// `0xFE` followed by 2/3/8 bytes. `0xFB` is the NULL marker of text
    /// rows and `0xFF` starts an ERR packet; neither is an integer, so both
    /// are `Malformed` here: callers that accept NULL peek for it first.
    pub fn lenenc_int(&mut self) -> Result<u64> {
        match self.u8().map_err(|_| CodecError::Truncated {
            what: "length-encoded integer",
        })? {
            b @ 0..=0xFA => Ok(u64::from(b)),
            0xFC => self.u16().map(u64::from),
            0xFD => self.u24().map(u64::from),
            0xFE => self.u64(),
            b => Err(CodecError::malformed(format!(
                "0x{b:02X} where a length-encoded integer was expected"
            ))),
        }
    }

    /// A length-encoded integer, then that many bytes (zero-copy).
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.lenenc_int()?;
        // A length beyond `usize` cannot fit in the payload either.
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.take(n, "length-encoded string")
    }

    /// A text-row value: `0xFB` is SQL NULL, anything else a
    /// [`lenenc_bytes`](Reader::lenenc_bytes).
    pub fn lenenc_nullable(&mut self) -> Result<Option<&'a [u8]>> {
        if self.peek() == Some(0xFB) {
            self.buf = self.buf.get(1..).unwrap_or_default();
            return Ok(None);
        }
        self.lenenc_bytes().map(Some)
    }

    /// Bytes up to the next NUL, which is consumed but not returned.
    pub fn null_str(&mut self) -> Result<&'a [u8]> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(CodecError::Truncated {
                what: "NUL-terminated string",
            });
        };
        let s = self.take(end, "NUL-terminated string")?;
        self.take(1, "NUL-terminated string")?;
        Ok(s)
    }

    /// Exactly `n` bytes (zero-copy).
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.take(n, "fixed-length bytes")
    }

    /// Everything left; the reader is empty afterwards.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The next byte, without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `Malformed` unless every byte has been read: for messages whose
    /// layout is fully determined, trailing bytes mean we misread it.
    pub fn finish(&self, what: &str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::malformed(format!(
                "{} trailing bytes after {what}",
                self.buf.len()
            )))
        }
    }
}

/// Append a length-encoded integer, in the shortest form.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// How many bytes [`put_lenenc_int`] writes for `v`.
pub fn lenenc_int_len(v: u64) -> usize {
    match v {
        0..=0xFA => 1,
        0xFB..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

/// Append a length-encoded integer then `b`.
pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Append `b` then a NUL. `b` must not itself contain a NUL, or the peer
/// will read a shorter string than intended.
pub fn put_null_str(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b);
    out.push(0);
}

/// Append a 3-byte little-endian integer (the low 24 bits of `v`).
pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes()[..3]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_int_round_trips_at_every_boundary() {
        for (v, encoded) in [
            (0u64, &b"\x00"[..]),
            (0xFA, b"\xFA"),
            (0xFB, b"\xFC\xFB\x00"),
            (0xFFFF, b"\xFC\xFF\xFF"),
            (0x1_0000, b"\xFD\x00\x00\x01"),
            (0xFF_FFFF, b"\xFD\xFF\xFF\xFF"),
            (0x100_0000, b"\xFE\x00\x00\x00\x01\x00\x00\x00\x00"),
            (u64::MAX, b"\xFE\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF"),
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(out, encoded, "{v:#x}");
            assert_eq!(lenenc_int_len(v), encoded.len());
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int().unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn lenenc_int_rejects_null_and_err_markers_and_truncation() {
        for (input, want) in [
            (&b"\xFB"[..], "malformed"),
            (b"\xFF", "malformed"),
            (b"", "truncated"),
            (b"\xFC\x01", "truncated"),
            (b"\xFD\x01\x02", "truncated"),
            (b"\xFE\x01\x02\x03\x04\x05\x06\x07", "truncated"),
        ] {
            let err = Reader::new(input).lenenc_int().unwrap_err();
            assert!(err.to_string().contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn fixed_width_integers_are_little_endian() {
        let data = b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12";
        let mut r = Reader::new(data);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 0x0302);
        assert_eq!(r.u24().unwrap(), 0x06_0504);
        assert_eq!(r.u32().unwrap(), 0x0a09_0807);
        assert_eq!(r.u64().unwrap(), 0x1211_100f_0e0d_0c0b);
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(CodecError::Truncated { what: "u8" }));
        let mut r = Reader::new(b"\x01");
        assert_eq!(r.u16(), Err(CodecError::Truncated { what: "u16" }));
        assert_eq!(r.remaining(), 1, "a failed read consumes nothing");
    }

    #[test]
    fn strings_round_trip() {
        for s in [&b""[..], b"x", &[b'a'; 300], &[0x41; 70_000]] {
            let mut out = Vec::new();
            put_lenenc_bytes(&mut out, s);
            put_null_str(&mut out, s);
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_bytes().unwrap(), s);
            assert_eq!(r.null_str().unwrap(), s);
            assert!(r.is_empty());
            r.finish("strings").unwrap();
        }
    }

    #[test]
    fn nullable_peek_rest_and_truncation() {
        let mut r = Reader::new(b"\xFB\x02hi\x05ab");
        assert_eq!(r.peek(), Some(0xFB));
        assert_eq!(r.lenenc_nullable().unwrap(), None);
        assert_eq!(r.lenenc_nullable().unwrap(), Some(&b"hi"[..]));
        assert!(matches!(
            r.clone().lenenc_bytes(),
            Err(CodecError::Truncated { .. })
        ));
        assert!(r.finish("x").is_err());
        assert_eq!(r.rest(), b"\x05ab");
        assert!(r.is_empty());
        assert_eq!(r.peek(), None);
        assert!(Reader::new(b"no nul").null_str().is_err());
        assert!(
            Reader::new(b"\xFE\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF")
                .lenenc_bytes()
                .is_err()
        );
        assert_eq!(Reader::new(b"abc").bytes(2).unwrap(), b"ab");
    }
}
