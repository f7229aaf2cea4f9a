//! Framing: split whole logical packets off an accumulating buffer.
//!
//! Every MySQL packet is a 3-byte little-endian payload length, a 1-byte
//! sequence id, then the payload. A payload of `0xFFFFFF` bytes or more is
//! sent as chunks of exactly [`MAX_CHUNK`] bytes followed by one shorter
//! chunk (empty when the length is an exact multiple); [`decode`] reassembles
//! them so parsers only ever see whole payloads.
//!
//! Like the PostgreSQL framer, [`decode`] consumes nothing until a whole
//! logical packet is buffered (so a read cancelled inside `tokio::select!`
//! loses nothing) and checks the declared length against the caller's
//! maximum as soon as each header is in, before the buffer grows for the
//! body: a hostile length cannot make the proxy allocate.
use bytes::{Bytes, BytesMut};

use crate::error::{CodecError, Result};

/// Largest payload one chunk can carry; a chunk this long means another
/// chunk of the same logical packet follows.
pub const MAX_CHUNK: usize = 0xFF_FFFF;

/// Bytes of header in front of every chunk.
pub const HEADER_LEN: usize = 4;

/// A sensible default for `max_payload`: MySQL's own `max_allowed_packet`
/// default is 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// One complete logical packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the last chunk; the next packet in the exchange
    /// carries `seq.wrapping_add(1)`.
    pub seq: u8,
    /// The reassembled payload, without headers.
    pub payload: Bytes,
    /// The exact bytes received, every chunk with its header, so a proxy
    /// that does not rewrite the packet can forward it untouched.
    pub raw: Bytes,
}

/// Split the next logical packet off `buf`, if all of its chunks are in.
///
/// Returns `Ok(None)` (consuming nothing) while incomplete. Continuation
/// chunks must carry consecutive sequence ids; anything else is
/// `Malformed`, as the server itself treats it ("packets out of order").
/// For a single-chunk packet `payload` and `raw` share one allocation.
pub fn decode(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Packet>> {
    let mut off = 0usize;
    let mut total = 0usize;
    let mut chunks = 0usize;
    let mut seq = 0u8;
    loop {
        let Some(header) = buf.get(off..off + HEADER_LEN) else {
            return Ok(None);
        };
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let chunk_seq = header[3];
        if chunks > 0 && chunk_seq != seq.wrapping_add(1) {
            return Err(CodecError::malformed(format!(
                "continuation chunk has sequence id {chunk_seq}, expected {}",
                seq.wrapping_add(1)
            )));
        }
        seq = chunk_seq;
        total = total.saturating_add(len);
        if total > max_payload {
            return Err(CodecError::TooLarge {
                len: total,
                max: max_payload,
            });
        }
        let end = off + HEADER_LEN + len;
        if buf.len() < end {
            buf.reserve(end - buf.len());
            return Ok(None);
        }
        off = end;
        chunks += 1;
        if len < MAX_CHUNK {
            break;
        }
    }
    let raw = buf.split_to(off).freeze();
    let payload = if chunks == 1 {
        raw.slice(HEADER_LEN..)
    } else {
        let mut payload = BytesMut::with_capacity(total);
        let mut rest = &raw[..];
        while let Some((header, tail)) = rest.split_first_chunk::<HEADER_LEN>() {
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let (body, tail) = tail.split_at(len.min(tail.len()));
            payload.extend_from_slice(body);
            rest = tail;
        }
        payload.freeze()
    };
    Ok(Some(Packet { seq, payload, raw }))
}

/// Append `payload` as one logical packet starting at sequence id `seq`,
/// chunked at [`MAX_CHUNK`] (with an empty trailing chunk when the length
/// is an exact multiple). Returns the sequence id the next packet of the
/// exchange must use.
pub fn encode(seq: u8, payload: &[u8], out: &mut BytesMut) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    out.reserve(payload.len() + HEADER_LEN * (payload.len() / MAX_CHUNK + 1));
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.extend_from_slice(&[seq]);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        for (len, chunks) in [
            (0usize, 1usize),
            (1, 1),
            (MAX_CHUNK - 1, 1),
            (MAX_CHUNK, 2),
            (MAX_CHUNK * 2 + 5, 3),
        ] {
            let payload = pattern(len);
            let mut buf = BytesMut::new();
            let next = encode(250, &payload, &mut buf);
            assert_eq!(next, 250u8.wrapping_add(chunks as u8), "len {len}");
            assert_eq!(buf.len(), len + HEADER_LEN * chunks);
            let wire = buf.clone().freeze();
            buf.extend_from_slice(b"\x01\x00\x00\x07\x0e");
            let p = decode(&mut buf, usize::MAX).unwrap().unwrap();
            assert_eq!(p.payload.len(), len);
            assert!(p.payload == payload, "payload differs at len {len}");
            assert_eq!(p.seq, next.wrapping_sub(1));
            assert!(p.raw == wire);
            assert_eq!(&buf[..], b"\x01\x00\x00\x07\x0e", "next packet left alone");
            let q = decode(&mut buf, usize::MAX).unwrap().unwrap();
            assert_eq!((q.seq, &q.payload[..]), (7, &b"\x0e"[..]));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn single_chunk_payload_is_a_slice_of_raw() {
        let mut buf = BytesMut::from(&b"\x03\x00\x00\x00\x03abc"[..]);
        let p = decode(&mut buf, 16).unwrap().unwrap();
        assert_eq!(&p.payload[..], b"\x03ab");
        assert_eq!(&buf[..], b"c");
        let raw_start = p.raw.as_ptr() as usize;
        assert_eq!(p.payload.as_ptr() as usize, raw_start + HEADER_LEN);
    }

    #[test]
    fn partial_input_is_none_and_consumes_nothing() {
        let payload = pattern(MAX_CHUNK + 10);
        let mut full = BytesMut::new();
        encode(0, &payload, &mut full);
        for cut in [
            0,
            1,
            3,
            4,
            5,
            MAX_CHUNK + 3,
            MAX_CHUNK + 4,
            MAX_CHUNK + 7,
            full.len() - 1,
        ] {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut buf, usize::MAX).unwrap(), None, "cut {cut}");
            assert_eq!(buf.len(), cut, "cut {cut} consumed input");
        }
    }

    #[test]
    fn oversized_is_refused_from_the_header_alone() {
        for (input, max, len) in [
            (&b"\xff\xff\xff\x00"[..], 1024, MAX_CHUNK),
            (b"\x00\x04\x00\x00", 1023, 1024),
        ] {
            let mut buf = BytesMut::from(input);
            assert_eq!(
                decode(&mut buf, max),
                Err(CodecError::TooLarge { len, max })
            );
            assert!(
                buf.capacity() < 1024,
                "must not reserve for a refused packet"
            );
        }
        // Multi-chunk: the running total counts.
        let mut full = BytesMut::new();
        encode(0, &pattern(MAX_CHUNK + 2), &mut full);
        let mut buf = full.clone();
        assert_eq!(
            decode(&mut buf, MAX_CHUNK + 1),
            Err(CodecError::TooLarge {
                len: MAX_CHUNK + 2,
                max: MAX_CHUNK + 1
            })
        );
        let mut buf = full;
        assert!(decode(&mut buf, MAX_CHUNK + 2).unwrap().is_some());
    }

    #[test]
    fn out_of_order_continuation_is_malformed() {
        let mut full = BytesMut::new();
        encode(0, &pattern(MAX_CHUNK), &mut full);
        full[MAX_CHUNK + HEADER_LEN + 3] = 5;
        assert!(matches!(
            decode(&mut full, usize::MAX),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn sequence_ids_wrap() {
        let mut buf = BytesMut::new();
        assert_eq!(encode(255, b"x", &mut buf), 0);
        assert_eq!(&buf[..], b"\x01\x00\x00\xffx");
    }
}
