//! A MySQL/MariaDB byte stream, as one side of a connection sends it.
//!
//! - `sluice_mywire::exercise`: framing and every parser must not panic
//!   (the same function the crate's smoke test runs).
//! - Framing fed in arbitrary pieces gives exactly the packets, and the
//!   same error, as the whole stream at once (cancel-safe framing); a
//!   single-chunk packet re-encodes to the bytes it came in.
//! - What the proxy parses and re-encodes (greeting with capabilities
//!   struck, handshake response, OK/ERR/EOF, commands, column
//!   definitions, prepare and auth-switch replies) parses back equal.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_mywire::{
    CodecError, Packet, auth, caps, command, handshake,
    packet::{self, HEADER_LEN},
    response,
};

const MAX: usize = 4096;

#[derive(Debug, PartialEq)]
enum Read {
    Packet(Packet),
    Error(CodecError),
}

/// Take every complete packet off `buf`; true once framing failed.
fn drain(buf: &mut BytesMut, out: &mut Vec<Read>) -> bool {
    loop {
        match packet::decode(buf, MAX) {
            Ok(Some(p)) => out.push(Read::Packet(p)),
            Ok(None) => return false,
            Err(e) => {
                out.push(Read::Error(e));
                return true;
            }
        }
    }
}

fn round_trips(p: &[u8]) {
    if let Ok(g) = handshake::Greeting::parse(p) {
        // Encoded as real servers do (part 2 of the scramble padded to 13
        // bytes, its length sent only with PLUGIN_AUTH), so a scramble of
        // another length than 20 comes back padded or cut: everything
        // else comes back as it was, and the encoding is stable.
        let bytes = g.encode();
        let back = handshake::Greeting::parse(&bytes).expect("own greeting parses");
        assert_eq!(
            handshake::Greeting {
                scramble: g.scramble.clone(),
                ..back.clone()
            },
            g
        );
        if g.capabilities & caps::SECURE_CONNECTION != 0
            && g.scramble.len() == 20
            && !g.scramble.ends_with(&[0])
        {
            assert_eq!(back.scramble, g.scramble);
        }
        assert_eq!(back.encode(), bytes, "greeting encoding is stable");
        // What the proxy relays: the greeting with capabilities struck.
        let mut struck = g.clone();
        struck.capabilities &= !(caps::COMPRESS | caps::LOCAL_FILES);
        let again = handshake::Greeting::parse(&struck.encode()).expect("struck greeting parses");
        assert_eq!(again.capabilities, struck.capabilities);
    }
    if let Ok(r) = handshake::HandshakeResponse::parse(p) {
        assert_eq!(
            handshake::HandshakeResponse::parse(&r.encode()).as_ref(),
            Ok(&r)
        );
    }
    for c in [
        0,
        caps::PROTOCOL_41,
        caps::PROTOCOL_41 | caps::SESSION_TRACK,
    ] {
        if let Ok(ok) = response::OkPacket::parse(p, c) {
            assert_eq!(
                response::OkPacket::parse(&ok.encode_for(c), c).as_ref(),
                Ok(&ok)
            );
        }
        if let Ok(def) = response::ColumnDef::parse_for(p, c | caps::MARIADB_EXTENDED_METADATA) {
            let c = c | caps::MARIADB_EXTENDED_METADATA;
            assert_eq!(
                response::ColumnDef::parse_for(&def.encode_for(c), c).as_ref(),
                Ok(&def)
            );
        }
    }
    if let Ok(e) = response::ErrPacket::parse(p) {
        assert_eq!(response::ErrPacket::parse(&e.encode()).as_ref(), Ok(&e));
    }
    if let Ok(e) = response::EofPacket::parse(p) {
        assert_eq!(response::EofPacket::parse(&e.encode()), Ok(e));
    }
    if let Ok(def) = response::ColumnDef::parse(p) {
        assert_eq!(response::ColumnDef::parse(&def.encode()).as_ref(), Ok(&def));
    }
    if let Ok(cmd) = command::Command::parse(p) {
        let bytes = cmd.encode();
        assert_eq!(command::Command::parse(&bytes).as_ref(), Ok(&cmd));
    }
    if let Ok(o) = command::PrepareOk::parse(p) {
        assert_eq!(command::PrepareOk::parse(&o.encode()), Ok(o));
    }
    if let Ok(s) = auth::AuthSwitch::parse(p) {
        assert_eq!(auth::AuthSwitch::parse(&s.encode()).as_ref(), Ok(&s));
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses where reads stop; the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    sluice_mywire::exercise(stream);
    let mut whole = Vec::new();
    drain(&mut BytesMut::from(stream), &mut whole);

    let mut pieces = Vec::new();
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = 1 + (state >> 16) as usize % 64;
        let (now, later) = rest.split_at(n.min(rest.len()));
        buf.extend_from_slice(now);
        rest = later;
        if drain(&mut buf, &mut pieces) {
            break;
        }
    }
    assert_eq!(whole, pieces, "framing depends on where reads stop");

    for r in &whole {
        let Read::Packet(p) = r else { continue };
        if p.raw.len() == p.payload.len() + HEADER_LEN {
            let mut out = BytesMut::new();
            packet::encode(p.seq, &p.payload, &mut out);
            assert_eq!(&out[..], &p.raw[..], "a packet re-encodes as it came");
        }
        round_trips(&p.payload);
    }
});
