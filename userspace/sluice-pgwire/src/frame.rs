//! Framing: split whole frames off an accumulating buffer.
//!
//! The caller reads into a `BytesMut` and asks for the next frame; if the
//! frame is not complete, nothing is consumed and `Ok(None)` comes back, so
//! a read cancelled inside `tokio::select!` loses nothing. The declared
//! length is checked against the maximum as soon as the header is in, and
//! the buffer is only ever asked to reserve what an acceptable frame needs.
use bytes::{Buf, Bytes, BytesMut};

use crate::CodecError;

/// Default largest message accepted (1 GiB is PostgreSQL's own limit for a
/// value; proxies rarely need more than this).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One complete message: its type byte (0 for the untagged startup family)
/// and its body without the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type byte; 0 for startup-family messages.
    pub tag: u8,
    /// The body, after the length field.
    pub body: Bytes,
}

/// Splits frames with a size limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameReader {
    max: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            max: DEFAULT_MAX_MESSAGE,
        }
    }
}

impl FrameReader {
    /// A reader accepting messages up to `max` bytes (length field included).
    pub fn new(max: usize) -> FrameReader {
        FrameReader { max: max.max(8) }
    }

    /// The next tagged message (`tag`, Int32 length, body), if complete.
    pub fn next_tagged(&self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let tag = buf[0];
        let len = self.declared_len(&buf[1..5], "message length")?;
        let total = 1 + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(5);
        Ok(Some(Frame {
            tag,
            body: frame.freeze(),
        }))
    }

    /// Look at the tagged frame starting at `buf[0]` without consuming it:
    /// its type byte and total length (header included) once it is
    /// complete. Lets a relay forward whole runs of frames straight from
    /// its read buffer.
    pub fn peek_tagged(&self, buf: &[u8]) -> Result<Option<(u8, usize)>, CodecError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let total = 1 + self.declared_len(&buf[1..5], "message length")?;
        Ok((buf.len() >= total).then_some((buf[0], total)))
    }

    /// The next untagged startup-family message (Int32 length, body), if complete.
    pub fn next_startup(&self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = self.declared_len(&buf[0..4], "startup length")?;
        if len < 8 {
            return Err(CodecError::malformed(
                "startup message",
                format!("length {len} is below 8"),
            ));
        }
        if buf.len() < len {
            buf.reserve(len - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(len);
        frame.advance(4);
        Ok(Some(Frame {
            tag: 0,
            body: frame.freeze(),
        }))
    }

    fn declared_len(&self, raw: &[u8], what: &'static str) -> Result<usize, CodecError> {
        let len = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if len < 4 {
            return Err(CodecError::malformed(what, format!("{len} is below 4")));
        }
        let len = len as usize;
        if len > self.max {
            return Err(CodecError::TooLarge { len, max: self.max });
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_is_none_and_consumes_nothing() {
        let r = FrameReader::default();
        let mut buf = BytesMut::from(&b"Q\x00\x00\x00\x0bselec"[..]);
        assert_eq!(r.next_tagged(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 10);
        buf.extend_from_slice(b"t\0");
        let f = r.next_tagged(&mut buf).unwrap().unwrap();
        assert_eq!((f.tag, &f.body[..]), (b'Q', &b"select\0"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_is_refused_from_the_header_alone() {
        let r = FrameReader::new(1024);
        let mut buf = BytesMut::from(&b"D\x7f\xff\xff\xff"[..]);
        assert_eq!(
            r.next_tagged(&mut buf),
            Err(CodecError::TooLarge {
                len: 0x7fff_ffff,
                max: 1024
            })
        );
        assert!(
            buf.capacity() < 1024,
            "must not reserve for a refused frame"
        );
    }

    #[test]
    fn lengths_below_the_header_are_malformed() {
        let r = FrameReader::default();
        let mut buf = BytesMut::from(&b"Q\x00\x00\x00\x02"[..]);
        assert!(matches!(
            r.next_tagged(&mut buf),
            Err(CodecError::Malformed { .. })
        ));
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x04"[..]);
        assert!(matches!(
            r.next_startup(&mut buf),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn peek_sees_complete_frames_only() {
        let r = FrameReader::default();
        assert_eq!(
            r.peek_tagged(b"Z\x00\x00\x00\x05I").unwrap(),
            Some((b'Z', 6))
        );
        assert_eq!(r.peek_tagged(b"Z\x00\x00\x00\x05").unwrap(), None);
        assert!(r.peek_tagged(b"Z\x00\x00\x00\x01").is_err());
    }

    #[test]
    fn splits_back_to_back_frames() {
        let r = FrameReader::default();
        let mut buf = BytesMut::from(&b"S\x00\x00\x00\x04H\x00\x00\x00\x04"[..]);
        assert_eq!(r.next_tagged(&mut buf).unwrap().unwrap().tag, b'S');
        assert_eq!(r.next_tagged(&mut buf).unwrap().unwrap().tag, b'H');
        assert_eq!(r.next_tagged(&mut buf).unwrap(), None);
    }
}
