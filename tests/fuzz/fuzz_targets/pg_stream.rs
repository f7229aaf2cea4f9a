//! A PostgreSQL byte stream, as one side of a connection sends it.
//!
//! - `sluice_pgwire::exercise`: framing and every decoder must not panic
//!   (the same function the crate's smoke test runs).
//! - The session's framing, the way the proxy reads a connection: a
//!   client's untagged startup frames while they are SSLRequest or
//!   GSSENCRequest, then tagged frames (a server's are all tagged). Fed the stream in arbitrary pieces (a read may stop
//!   anywhere) it must produce exactly the frames, and the same error,
//!   as when the whole stream is there at once: framing is cancel-safe.
//!   `peek_tagged` must agree with `next_tagged`.
//! - A message that decodes re-encodes to bytes that decode to the same
//!   message (the proxy re-encodes what it rewrites).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_pgwire::{
    BackendMessage, CodecError, Frame, FrameReader, FrontendMessage, StartupRequest,
};

/// One framing result: a frame (of the startup family or tagged), or the
/// error that ends the connection.
#[derive(Debug, PartialEq)]
enum Read {
    Frame { startup: bool, frame: Frame },
    Error(CodecError),
}

/// The proxy's framing state: still in the startup family, or past it.
struct Session {
    reader: FrameReader,
    startup: bool,
    out: Vec<Read>,
    failed: bool,
}

impl Session {
    /// A client's stream starts with the startup family, a server's does not.
    fn new(client: bool) -> Session {
        Session {
            // Small, so the size limit is reached too.
            reader: FrameReader::new(4096),
            startup: client,
            out: Vec::new(),
            failed: false,
        }
    }

    /// Take every complete frame off `buf`, as the proxy does after a read.
    fn drain(&mut self, buf: &mut BytesMut) {
        while !self.failed {
            let next = if self.startup {
                self.reader.next_startup(buf)
            } else {
                if let Ok(Some((tag, total))) = self.reader.peek_tagged(buf) {
                    let len = buf.len();
                    let f = self.reader.next_tagged(buf);
                    assert!(
                        matches!(&f, Ok(Some(f)) if f.tag == tag && f.body.len() + 5 == total),
                        "peek said {tag}/{total}, next_tagged gave {f:?}"
                    );
                    assert_eq!(buf.len(), len - total);
                    self.take(f);
                    continue;
                }
                self.reader.next_tagged(buf)
            };
            if !self.take(next) {
                return;
            }
        }
    }

    /// Record one framing result; false when more bytes are needed.
    fn take(&mut self, r: Result<Option<Frame>, CodecError>) -> bool {
        match r {
            Ok(Some(frame)) => {
                let startup = self.startup;
                if startup {
                    // SSLRequest and GSSENCRequest are followed by another
                    // startup-family message; anything else ends startup.
                    self.startup = matches!(
                        StartupRequest::decode(frame.clone()),
                        Ok(StartupRequest::SslRequest | StartupRequest::GssEncRequest)
                    );
                }
                self.out.push(Read::Frame { startup, frame });
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.out.push(Read::Error(e));
                self.failed = true;
                false
            }
        }
    }
}

fn round_trips(frame: &Frame, startup: bool) {
    if startup {
        if let Ok(m) = StartupRequest::decode(frame.clone()) {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            let again = FrameReader::new(usize::MAX >> 2)
                .next_startup(&mut out)
                .expect("own startup encoding frames")
                .expect("own startup encoding is complete");
            assert_eq!(StartupRequest::decode(again), Ok(m));
        }
        return;
    }
    let reader = FrameReader::new(usize::MAX >> 2);
    if let Ok(m) = FrontendMessage::decode(frame.clone()) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let again = reader
            .next_tagged(&mut out)
            .expect("own frontend encoding frames")
            .expect("own frontend encoding is complete");
        assert!(out.is_empty(), "one message encodes as one frame");
        assert_eq!(FrontendMessage::decode(again), Ok(m));
    }
    if let Ok(m) = BackendMessage::decode(frame.clone()) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let again = reader
            .next_tagged(&mut out)
            .expect("own backend encoding frames")
            .expect("own backend encoding is complete");
        assert!(out.is_empty(), "one message encodes as one frame");
        assert_eq!(BackendMessage::decode(again), Ok(m));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses where reads stop and whose stream it is (bit
    // 7: a server's, all tagged); the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    sluice_pgwire::exercise(stream);
    let client = seed & 0x80 == 0;
    let mut whole = Session::new(client);
    whole.drain(&mut BytesMut::from(stream));

    let mut pieces = Session::new(client);
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() && !pieces.failed {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 1 + (state >> 16) as usize % 64;
        let (now, later) = rest.split_at(n.min(rest.len()));
        buf.extend_from_slice(now);
        rest = later;
        pieces.drain(&mut buf);
    }
    assert_eq!(whole.out, pieces.out, "framing depends on where reads stop");

    for r in &whole.out {
        if let Read::Frame { startup, frame } = r {
            round_trips(frame, *startup);
        }
    }
});
