//! MySQL/MariaDB client/server protocol, as bytes in and typed messages
//! out. No I/O.
//!
//! Layout, lowest first:
//! - [`error`]: [`CodecError`]. "Need more bytes" is never an error:
//!   framing returns `Ok(None)`; a packet that is complete but wrong is
//!   `Truncated` or `Malformed`.
//! - [`wire`]: the primitive readers and writers (little-endian integers,
//!   length-encoded integers and strings, NUL-terminated strings).
//! - [`packet`]: splits whole logical packets (reassembling 16 MiB chunks)
//!   off an accumulating `BytesMut`, checking the declared length against
//!   a maximum *before* buffering the body, so reads stay cancel-safe and
//!   a hostile length cannot make the proxy allocate.
//! - [`caps`]: capability and status flags, MariaDB's extended capabilities
//!   in the high 32 bits.
//! - [`handshake`]: the greeting, SSL request and handshake response.
//! - [`response`]: OK, ERR and EOF packets, column definitions, text rows,
//!   and (from [`binary`]) binary rows.
//! - [`binary`]: the binary protocol's value encoding, shared by binary
//!   rows and `COM_STMT_EXECUTE` parameters, and its text rendering.
//! - [`command`]: client commands, `COM_CHANGE_USER`, the prepare reply
//!   and `COM_STMT_EXECUTE` parameters.
//! - [`auth`]: auth switch and "more data" packets, and the client-side
//!   scramble of each supported auth plugin.
//!
//! Nothing here panics on any input: every read is bounds-checked, and
//! [`exercise`] (run by the unit tests and the `my_stream` fuzz target in
//! tests/fuzz) holds the parsers to that.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
pub mod binary;
pub mod caps;
#[cfg(test)]
mod captured;
pub mod command;
pub mod error;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod wire;

pub use caps::status;
pub use command::Command;
pub use error::{CodecError, Result};
pub use packet::Packet;
pub use response::types;

/// Feed an arbitrary byte stream through framing and every parser the way
/// a proxy would, stopping at the first framing error; parsers that accept
/// a payload must re-encode it without panicking. Shared by the
/// `my_stream` fuzz target (tests/fuzz) and the in-tree smoke test; it
/// must never panic, whatever the input.
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    use bytes::BytesMut;

    use crate::response::ColumnDef;

    let mut buf = BytesMut::from(data);
    // Bounded: every successful decode consumes at least 4 bytes.
    for _ in 0..data.len() / 4 + 1 {
        let packet = match packet::decode(&mut buf, 64 * 1024) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => return,
        };
        let p = &packet.payload[..];
        if let Ok(g) = handshake::Greeting::parse(p) {
            let _ = handshake::Greeting::parse(&g.encode());
        }
        if let Ok(r) = handshake::HandshakeResponse::parse(p) {
            let _ = handshake::HandshakeResponse::parse(&r.encode());
        }
        if handshake::is_ssl_request(p) {
            let _ = handshake::SslRequest::parse(p).map(|s| s.encode());
        }
        for c in [
            0,
            caps::PROTOCOL_41,
            caps::PROTOCOL_41 | caps::SESSION_TRACK,
        ] {
            if let Ok(ok) = response::OkPacket::parse(p, c) {
                let _ = (ok.encode_for(c), ok.message(c), ok.schema_change(c));
            }
            let _ = response::is_result_end(p, c);
            if let Ok(cmd) = command::Command::parse(p) {
                let _ = (cmd.encode(), cmd.name());
                if let command::Command::ChangeUser(body) = cmd {
                    let _ = command::ChangeUser::parse(body, c | caps::SECURE_CONNECTION)
                        .map(|u| u.encode(c));
                    let _ = command::ChangeUser::parse(body, c | caps::PLUGIN_AUTH_LENENC_DATA);
                }
            }
        }
        let _ = response::ErrPacket::parse(p).map(|e| (e.encode(), e.to_string()));
        let _ = response::EofPacket::parse(p).map(|e| e.encode());
        let _ = (response::is_ok(p), response::is_err(p), response::is_eof(p));
        let _ = response::column_count(p);
        let _ = response::local_infile_request(p);
        let column = response::ColumnDef::parse(p);
        let _ = response::ColumnDef::parse_for(p, caps::MARIADB_EXTENDED_METADATA);
        for n in 0..4 {
            let _ = response::text_row(p, n);
        }
        let _ = command::PrepareOk::parse(p).map(|o| o.encode());
        let _ = auth::AuthSwitch::parse(p).map(|s| s.encode());
        let _ = auth::more_data(p);
        // Binary rows and parameters against a few column-type mixes,
        // including one taken from the packet itself.
        let mut mixes: Vec<Vec<ColumnDef>> = [
            &[types::LONGLONG, types::VAR_STRING][..],
            &[types::DATETIME, types::TIME, types::DOUBLE, types::FLOAT],
            &[
                types::TINY,
                types::SHORT,
                types::NULL,
                types::NEWDECIMAL,
                types::DATE,
            ],
        ]
        .iter()
        .map(|ts| {
            ts.iter()
                .map(|&t| ColumnDef {
                    column_type: t,
                    flags: u16::from(p.first().copied().unwrap_or(0)),
                    decimals: p.get(1).copied().unwrap_or(0),
                    ..ColumnDef::default()
                })
                .collect()
        })
        .collect();
        if let Ok(c) = column {
            mixes.push(vec![c]);
        }
        for cols in &mixes {
            if let Ok(values) = response::binary_row(p, cols) {
                for (c, v) in cols.iter().zip(&values) {
                    if let Some(raw) = v {
                        let _ = response::binary_value_text(c, raw);
                    }
                }
                let _ = response::encode_binary_row(cols, &values);
            }
            let types_: Vec<(u8, bool)> = cols
                .iter()
                .map(|c| (c.column_type, c.flags & 1 != 0))
                .collect();
            let long: Vec<bool> = cols.iter().map(|c| c.decimals & 1 != 0).collect();
            for bound in [&types_[..], &[]] {
                if let Ok((e, _)) = command::Execute::parse(p, cols.len(), bound, &long) {
                    let _ = e.encode(true);
                    for param in &e.params {
                        let _ = param.display();
                    }
                }
            }
        }
        let _ = auth::native_password(p, p);
        let _ = auth::caching_sha2(p, p);
    }
}

#[cfg(test)]
mod smoke {
    use bytes::BytesMut;

    use super::*;

    /// Deterministic stand-in for the fuzzer in CI: random streams and
    /// single-byte mutations of valid ones must never panic.
    #[test]
    fn random_and_mutated_streams_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let c =
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH | caps::CONNECT_ATTRS;
        let payloads: Vec<Vec<u8>> = vec![
            handshake::Greeting {
                protocol: 10,
                server_version: b"8.0.36".to_vec(),
                connection_id: 9,
                scramble: (1..=20).collect(),
                capabilities: 0xdfff_ffff,
                charset: 255,
                status: 2,
                auth_plugin: Some(auth::CACHING_SHA2.into()),
            }
            .encode(),
            handshake::HandshakeResponse {
                capabilities: c | caps::CONNECT_WITH_DB,
                max_packet: 1 << 24,
                charset: 255,
                user: b"app".to_vec(),
                auth_response: vec![1; 20],
                database: Some(b"shop".to_vec()),
                auth_plugin: Some(auth::NATIVE.into()),
                attributes: vec![(b"_pid".to_vec(), b"1".to_vec())],
                zstd_level: None,
            }
            .encode(),
            response::OkPacket::new(1, 2, 3).encode(),
            response::ErrPacket::new(1045, "28000", "denied").encode(),
            response::encode_column_count(2),
            response::ColumnDef {
                column_type: types::LONGLONG,
                ..response::ColumnDef::default()
            }
            .encode(),
            response::encode_text_row(&[Some(b"4111"), None]),
            response::EofPacket { warnings: 0, status: 2 }.encode(),
            b"\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03abc".to_vec(),
            b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\xfe\x00\x2a\x00\x00\x00\x00\x00\x00\x00\x03abc".to_vec(),
            b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x0c\x00\x0b\x00\x07\xe8\x07\x02\x1d\x01\x02\x03\x08\x01\x01\x00\x00\x00\x02\x03\x04".to_vec(),
            command::ChangeUser {
                user: b"bob".to_vec(),
                auth_response: vec![2; 20],
                database: b"d".to_vec(),
                charset: Some(8),
                auth_plugin: Some(auth::NATIVE.into()),
                attributes: vec![],
            }
            .to_payload(c),
            auth::AuthSwitch {
                plugin: auth::NATIVE.into(),
                data: vec![3; 21],
            }
            .encode(),
        ];
        let mut valid = BytesMut::new();
        for (i, p) in payloads.iter().enumerate() {
            packet::encode(i as u8, p, &mut valid);
        }
        exercise(&valid);
        for _ in 0..3_000 {
            let mut m = valid.to_vec();
            for _ in 0..(next() % 3 + 1) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            exercise(&m);
            let len = (next() % 256) as usize;
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            exercise(&random);
            // Random payloads with valid framing reach every parser.
            let mut framed = BytesMut::new();
            packet::encode(0, &random, &mut framed);
            exercise(&framed);
        }
    }
}
