//! Primitive field readers and writers. A [`Reader`] walks one frame's body
//! and turns every overrun into `Malformed` naming the message.
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;

/// Reads the fields of one message body.
pub struct Reader {
    buf: Bytes,
    what: &'static str,
    lossy: bool,
}

impl Reader {
    /// Read `body`, naming `what` in errors.
    pub fn new(body: Bytes, what: &'static str) -> Reader {
        Reader {
            buf: body,
            what,
            lossy: false,
        }
    }

    /// Like [`Reader::new`], but strings that are not UTF-8 are read with
    /// U+FFFD in place of invalid sequences instead of failing. Strings are
    /// in the session's `client_encoding`, which need not be UTF-8; a proxy
    /// that only looks at a message must not reject it for that.
    pub fn new_lossy(body: Bytes, what: &'static str) -> Reader {
        Reader {
            buf: body,
            what,
            lossy: true,
        }
    }

    fn need(&self, n: usize) -> Result<(), CodecError> {
        if self.buf.remaining() < n {
            Err(CodecError::malformed(
                self.what,
                format!("needs {n} more bytes, has {}", self.buf.remaining()),
            ))
        } else {
            Ok(())
        }
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// Int16, big endian.
    pub fn i16(&mut self) -> Result<i16, CodecError> {
        self.need(2)?;
        Ok(self.buf.get_i16())
    }

    /// Int32, big endian.
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }

    /// A count (Int16) that must not be negative.
    pub fn count16(&mut self) -> Result<usize, CodecError> {
        let n = self.i16()?;
        usize::try_from(n)
            .map_err(|_| CodecError::malformed(self.what, format!("negative count {n}")))
    }

    /// An Int16 count, then that many items read by `item`. `min_size` is
    /// the smallest encoding of one item: capacity is never reserved beyond
    /// what the remaining bytes could hold, whatever count a peer claims.
    pub fn list16<T>(
        &mut self,
        min_size: usize,
        mut item: impl FnMut(&mut Reader) -> Result<T, CodecError>,
    ) -> Result<Vec<T>, CodecError> {
        let n = self.count16()?;
        let mut out = Vec::with_capacity(n.min(self.remaining() / min_size.max(1)));
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// A NUL-terminated UTF-8 string.
    pub fn cstr(&mut self) -> Result<String, CodecError> {
        let Some(end) = self.buf.iter().position(|&b| b == 0) else {
            return Err(CodecError::malformed(
                self.what,
                "string without a terminating NUL",
            ));
        };
        let raw = self.buf.split_to(end);
        self.buf.advance(1);
        if self.lossy {
            return Ok(String::from_utf8_lossy(&raw).into_owned());
        }
        String::from_utf8(raw.to_vec())
            .map_err(|_| CodecError::malformed(self.what, "string is not UTF-8"))
    }

    /// Exactly `n` bytes, zero-copy.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, CodecError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// An Int32 length then that many bytes; -1 is NULL.
    pub fn value(&mut self) -> Result<Option<Bytes>, CodecError> {
        let len = self.i32()?;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(CodecError::malformed(
                self.what,
                format!("value length {n}"),
            )),
            n => self.bytes(n as usize).map(Some),
        }
    }

    /// Everything left.
    pub fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    /// The body must be fully consumed.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::malformed(
                self.what,
                format!("{} trailing bytes", self.buf.len()),
            ))
        }
    }
}

/// Write a NUL-terminated string.
pub fn put_cstr(dst: &mut BytesMut, s: &str) {
    dst.put_slice(s.as_bytes());
    dst.put_u8(0);
}

/// Write an Int32-length-prefixed value, -1 for NULL.
pub fn put_value(dst: &mut BytesMut, v: Option<&[u8]>) {
    match v {
        None => dst.put_i32(-1),
        Some(b) => {
            dst.put_i32(b.len() as i32);
            dst.put_slice(b);
        }
    }
}

/// Write a count as Int16.
pub fn put_count16(dst: &mut BytesMut, n: usize) {
    dst.put_i16(n as i16);
}

/// Write an Int16 count, then each item with `item`.
pub fn put_list16<T>(dst: &mut BytesMut, items: &[T], mut item: impl FnMut(&mut BytesMut, &T)) {
    put_count16(dst, items.len());
    for x in items {
        item(dst, x);
    }
}

/// Write an Int32 length (counting itself) followed by what `body` writes.
pub fn put_length_prefixed(dst: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = dst.len();
    dst.put_i32(0);
    body(dst);
    let len = (dst.len() - at) as i32;
    dst[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Write a tagged message: `tag`, Int32 length, then what `body` writes.
pub fn put_message(dst: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    dst.put_u8(tag);
    put_length_prefixed(dst, body);
}
