//! The connection phase: the server's greeting (Handshake v10), the
//! client's SSL request and its handshake response (protocol 4.1).
//!
//! Capabilities are `u64` throughout (see [`crate::caps`]): the MariaDB
//! extended capabilities travel in bytes that MySQL calls reserved or
//! filler, and only when bit 0 ([`caps::CLIENT_MYSQL`]) is clear. Encoders
//! write them back the same way, so parse-then-encode reproduces real
//! packets byte for byte and a proxy can rewrite a capability without
//! losing the rest.
use crate::caps;
use crate::error::{CodecError, Result};
use crate::response::ErrPacket;
use crate::wire::{Reader, put_lenenc_bytes, put_lenenc_int, put_null_str};

/// The only handshake version this crate speaks (MySQL 3.21.0 and later).
pub const PROTOCOL_VERSION: u8 = 10;

/// Length of the fixed block (caps, max packet, charset, filler) that
/// starts both the SSL request and the handshake response.
pub const SSL_REQUEST_LEN: usize = 32;

/// The server's first packet (Handshake v10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Protocol version; always [`PROTOCOL_VERSION`].
    pub protocol: u8,
    /// Human-readable version (MariaDB before 11 prefixes `5.5.5-`).
    pub server_version: Vec<u8>,
    /// Thread id; `KILL` and `COM_PROCESS_KILL` name it.
    pub connection_id: u32,
    /// Auth plugin data (the nonce): part 1 (8 bytes) then part 2 without
    /// its trailing NUL, 20 bytes for every current server.
    pub scramble: Vec<u8>,
    /// Server capabilities, MariaDB extended ones in bits 32..63.
    pub capabilities: u64,
    /// Default collation id.
    pub charset: u8,
    /// Server status flags ([`caps::status`]).
    pub status: u16,
    /// Default auth plugin, present with [`caps::PLUGIN_AUTH`].
    pub auth_plugin: Option<String>,
}

impl Greeting {
    /// Whether a first server packet is an ERR packet (e.g. "host is not
    /// allowed to connect", "too many connections") instead of a greeting.
    pub fn is_err(payload: &[u8]) -> bool {
        payload.first() == Some(&0xFF)
    }

    /// Parse a greeting. An ERR packet is `Malformed` carrying the
    /// server's message, since it means the server refused the connection.
    pub fn parse(payload: &[u8]) -> Result<Greeting> {
        if Greeting::is_err(payload) {
            return Err(match ErrPacket::parse(payload) {
                Ok(e) => CodecError::malformed(format!(
                    "server refused the connection: {} ({})",
                    e.message, e.code
                )),
                Err(_) => CodecError::malformed("server refused the connection"),
            });
        }
        let mut r = Reader::new(payload);
        let protocol = r.u8()?;
        if protocol != PROTOCOL_VERSION {
            return Err(CodecError::malformed(format!(
                "handshake protocol {protocol} is not supported (only 10)"
            )));
        }
        let server_version = r.null_str()?.to_vec();
        let connection_id = r.u32()?;
        let mut scramble = r.bytes(8)?.to_vec();
        r.u8()?; // filler
        let mut capabilities = u64::from(r.u16()?);
        let mut g = Greeting {
            protocol,
            server_version,
            connection_id,
            scramble: Vec::new(),
            capabilities,
            charset: 0,
            status: 0,
            auth_plugin: None,
        };
        if r.is_empty() {
            // Pre-4.1 servers stop here.
            g.scramble = scramble;
            return Ok(g);
        }
        g.charset = r.u8()?;
        g.status = r.u16()?;
        capabilities |= u64::from(r.u16()?) << 16;
        let data_len = r.u8()?;
        let reserved = r.bytes(10)?;
        if capabilities & caps::CLIENT_MYSQL == 0 {
            let ext = u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]]);
            capabilities |= u64::from(ext) << 32;
        }
        if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = usize::from(data_len).saturating_sub(8).max(13);
            let part2 = r.bytes(n)?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            scramble.extend_from_slice(part2);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 {
            // MySQL 5.5.7-5.5.9 sent the name without its NUL.
            let name = r.null_str().or_else(|_| Ok::<_, CodecError>(r.rest()))?;
            g.auth_plugin = Some(String::from_utf8_lossy(name).into_owned());
        }
        g.scramble = scramble;
        g.capabilities = capabilities;
        Ok(g)
    }

    /// Encode as a real server does: part 2 of the scramble padded to 13
    /// bytes including its NUL, the auth-data length byte set only with
    /// [`caps::PLUGIN_AUTH`], extended capabilities only when bit 0 is clear.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.server_version.len());
        out.push(self.protocol);
        put_null_str(&mut out, &self.server_version);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        let mut part1 = [0u8; 8];
        let n = self.scramble.len().min(8);
        part1[..n].copy_from_slice(&self.scramble[..n]);
        out.extend_from_slice(&part1);
        out.push(0);
        let c = self.capabilities;
        out.extend_from_slice(&(c as u16).to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((c >> 16) as u16).to_le_bytes());
        // Without PLUGIN_AUTH a reader takes 13 bytes for part 2 (12 and
        // its NUL); with it, the length byte says, up to 255 in all. Part
        // 2 is cut to what will be read, so the encoding reads back as
        // itself whatever the scramble.
        let part2 = self.scramble.get(8..).unwrap_or_default();
        let part2 = &part2[..part2.len().min(if c & caps::PLUGIN_AUTH != 0 {
            255 - 9
        } else {
            12
        })];
        out.push(if c & caps::PLUGIN_AUTH != 0 {
            (8 + part2.len() + 1).min(255) as u8
        } else {
            0
        });
        let mut reserved = [0u8; 10];
        if c & caps::CLIENT_MYSQL == 0 {
            reserved[6..].copy_from_slice(&((c >> 32) as u32).to_le_bytes());
        }
        out.extend_from_slice(&reserved);
        if c & caps::SECURE_CONNECTION != 0 {
            out.extend_from_slice(part2);
            out.push(0);
            out.resize(out.len() + 12usize.saturating_sub(part2.len()), 0);
        }
        if c & caps::PLUGIN_AUTH != 0 {
            put_null_str(
                &mut out,
                self.auth_plugin.as_deref().unwrap_or_default().as_bytes(),
            );
        }
        out
    }
}

/// Whether a client's first packet is an SSL request: exactly the 32-byte
/// fixed block with [`caps::SSL`] set. A full handshake response is always
/// longer (at least the user name's NUL follows).
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == SSL_REQUEST_LEN && u64::from(payload[1]) << 8 & caps::SSL != 0
}

/// Read the fixed 32-byte block shared by the SSL request and the
/// handshake response.
fn read_fixed(r: &mut Reader<'_>) -> Result<(u64, u32, u8)> {
    let mut capabilities = u64::from(r.u32()?);
    let max_packet = r.u32()?;
    let charset = r.u8()?;
    let filler = r.bytes(23)?;
    if capabilities & caps::CLIENT_MYSQL == 0 {
        let ext = u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]]);
        capabilities |= u64::from(ext) << 32;
    }
    Ok((capabilities, max_packet, charset))
}

fn put_fixed(out: &mut Vec<u8>, capabilities: u64, max_packet: u32, charset: u8) {
    out.extend_from_slice(&(capabilities as u32).to_le_bytes());
    out.extend_from_slice(&max_packet.to_le_bytes());
    out.push(charset);
    let mut filler = [0u8; 23];
    if capabilities & caps::CLIENT_MYSQL == 0 {
        filler[19..].copy_from_slice(&((capabilities >> 32) as u32).to_le_bytes());
    }
    out.extend_from_slice(&filler);
}

/// The client's request to switch to TLS before sending credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    /// Client capabilities, [`caps::SSL`] set.
    pub capabilities: u64,
    /// Largest packet the client wants to receive.
    pub max_packet: u32,
    /// Client collation id.
    pub charset: u8,
}

impl SslRequest {
    /// Parse a 32-byte SSL request.
    pub fn parse(payload: &[u8]) -> Result<SslRequest> {
        let mut r = Reader::new(payload);
        let (capabilities, max_packet, charset) = read_fixed(&mut r)?;
        r.finish("SSL request")?;
        if capabilities & caps::SSL == 0 {
            return Err(CodecError::malformed(
                "SSL request without the SSL capability",
            ));
        }
        Ok(SslRequest {
            capabilities,
            max_packet,
            charset,
        })
    }

    /// Encode as 32 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SSL_REQUEST_LEN);
        put_fixed(&mut out, self.capabilities, self.max_packet, self.charset);
        out
    }
}

/// The client's credentials (`HandshakeResponse41`).
///
/// Which optional fields are on the wire is decided by `capabilities`,
/// both ways: [`HandshakeResponse::parse`] reads a field only when its flag
/// is set (and, like the server, treats a field missing at the very end as
/// absent); [`HandshakeResponse::encode`] writes `database`,
/// `auth_plugin` and `zstd_level` only when their flag is set, and the
/// attribute block when [`caps::CONNECT_ATTRS`] is. The fields are
/// positional: a flagged `database` or `auth_plugin` that is `None` ends
/// the packet if nothing follows it, and is written empty if something
/// does (a database and a plugin name cannot be told apart on the wire).
/// Change the flag along with the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// Client capabilities, MariaDB extended ones in bits 32..63.
    pub capabilities: u64,
    /// Largest packet the client wants to receive.
    pub max_packet: u32,
    /// Client collation id.
    pub charset: u8,
    /// User name (in the client's character set).
    pub user: Vec<u8>,
    /// Auth plugin response (a scramble, or a cleartext password).
    pub auth_response: Vec<u8>,
    /// Initial database, with [`caps::CONNECT_WITH_DB`].
    pub database: Option<Vec<u8>>,
    /// The plugin `auth_response` was computed with, with [`caps::PLUGIN_AUTH`].
    pub auth_plugin: Option<String>,
    /// Connection attributes (`_client_name`, `program_name`...), with
    /// [`caps::CONNECT_ATTRS`].
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
    /// zstd compression level, with [`caps::ZSTD_COMPRESSION`].
    pub zstd_level: Option<u8>,
}

impl HandshakeResponse {
    /// Parse a protocol 4.1 handshake response.
    pub fn parse(payload: &[u8]) -> Result<HandshakeResponse> {
        let mut r = Reader::new(payload);
        let (capabilities, max_packet, charset) = read_fixed(&mut r)?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(CodecError::malformed("pre-4.1 clients are not supported"));
        }
        let user = r.null_str()?.to_vec();
        let auth_response = read_auth_response(&mut r, capabilities)?.to_vec();
        let mut database = None;
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            database = Some(r.null_str()?.to_vec());
        }
        let mut auth_plugin = None;
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            let name = r.null_str().or_else(|_| Ok::<_, CodecError>(r.rest()))?;
            auth_plugin = Some(String::from_utf8_lossy(name).into_owned());
        }
        let mut attributes = Vec::new();
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            attributes = read_attributes(&mut r)?;
        }
        let mut zstd_level = None;
        if capabilities & caps::ZSTD_COMPRESSION != 0 && !r.is_empty() {
            zstd_level = Some(r.u8()?);
        }
        r.finish("handshake response")?;
        Ok(HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
            zstd_level,
        })
    }

    /// Encode; see the type's documentation for which fields are written.
    pub fn encode(&self) -> Vec<u8> {
        let c = self.capabilities;
        let mut out = Vec::with_capacity(64 + self.user.len() + self.auth_response.len());
        put_fixed(&mut out, c, self.max_packet, self.charset);
        put_null_str(&mut out, &self.user);
        put_auth_response(&mut out, c, &self.auth_response);
        // The optional fields are positional. One whose flag is set but
        // that is None ends the packet when nothing is written after it
        // (parse reads a field missing at the very end as absent), and is
        // written empty otherwise, so that what follows stays in its place.
        let zstd = self.zstd_level.filter(|_| c & caps::ZSTD_COMPRESSION != 0);
        let attributes = c & caps::CONNECT_ATTRS != 0;
        let after_plugin = (attributes && !self.attributes.is_empty()) || zstd.is_some();
        let after_database =
            after_plugin || (c & caps::PLUGIN_AUTH != 0 && self.auth_plugin.is_some());
        if c & caps::CONNECT_WITH_DB != 0 {
            match &self.database {
                Some(db) => put_null_str(&mut out, db),
                None if after_database => put_null_str(&mut out, b""),
                None => return out,
            }
        }
        if c & caps::PLUGIN_AUTH != 0 {
            match &self.auth_plugin {
                Some(p) => put_null_str(&mut out, p.as_bytes()),
                None if after_plugin => put_null_str(&mut out, b""),
                None => return out,
            }
        }
        if attributes {
            put_attributes(&mut out, &self.attributes);
        }
        if let Some(level) = zstd {
            out.push(level);
        }
        out
    }

    /// The value of connection attribute `key`, if sent.
    pub fn attribute(&self, key: &[u8]) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// Read an auth response in the form `capabilities` select: length-encoded
/// with [`caps::PLUGIN_AUTH_LENENC_DATA`], else a 1-byte length with
/// [`caps::SECURE_CONNECTION`], else NUL-terminated.
pub(crate) fn read_auth_response<'a>(r: &mut Reader<'a>, capabilities: u64) -> Result<&'a [u8]> {
    if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_bytes()
    } else if capabilities & caps::SECURE_CONNECTION != 0 {
        let n = r.u8()?;
        r.bytes(usize::from(n))
    } else {
        r.null_str()
    }
}

/// Write an auth response in the form [`read_auth_response`] reads. With a
/// 1-byte length, more than 255 bytes cannot be expressed and is cut.
pub(crate) fn put_auth_response(out: &mut Vec<u8>, capabilities: u64, data: &[u8]) {
    if capabilities & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        put_lenenc_bytes(out, data);
    } else if capabilities & caps::SECURE_CONNECTION != 0 {
        let data = &data[..data.len().min(255)];
        out.push(data.len() as u8);
        out.extend_from_slice(data);
    } else {
        put_null_str(out, data);
    }
}

/// Read a connection-attribute block: a length-encoded total, then
/// key/value pairs of length-encoded strings filling exactly that total.
pub(crate) fn read_attributes(r: &mut Reader<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let block = r.lenenc_bytes()?;
    let mut a = Reader::new(block);
    let mut out = Vec::new();
    while !a.is_empty() {
        let k = a.lenenc_bytes()?.to_vec();
        let v = a.lenenc_bytes()?.to_vec();
        out.push((k, v));
    }
    Ok(out)
}

/// Write a connection-attribute block.
pub(crate) fn put_attributes(out: &mut Vec<u8>, attributes: &[(Vec<u8>, Vec<u8>)]) {
    let mut block = Vec::new();
    for (k, v) in attributes {
        put_lenenc_bytes(&mut block, k);
        put_lenenc_bytes(&mut block, v);
    }
    put_lenenc_int(out, block.len() as u64);
    out.extend_from_slice(&block);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MySQL 8.0.36 greeting as sent on the wire (payload only).
    const MYSQL8: &[u8] = b"\x0a8.0.36\x00\x0b\x00\x00\x00\x1f\x12\x4b\x6c\x08\x3c\x2a\x51\x00\xff\xff\xff\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x36\x5e\x10\x25\x66\x7d\x0b\x3e\x5f\x2b\x13\x62\x00caching_sha2_password\x00";

    /// A MariaDB 10.11 greeting: bit 0 clear, extended capabilities
    /// (progress, bulk operations, extended metadata, cache metadata = 0x1d)
    /// in the last 4 reserved bytes, `5.5.5-` version prefix.
    const MARIADB: &[u8] = b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00\x21\x00\x00\x00\x3b\x2f\x6a\x7b\x55\x28\x3e\x2e\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00\x24\x3d\x5e\x74\x4d\x44\x26\x5a\x52\x37\x2c\x5f\x00mysql_native_password\x00";

    #[test]
    fn real_greetings_round_trip_byte_for_byte() {
        for (bytes, version, id, caps_, charset, plugin) in [
            (
                MYSQL8,
                &b"8.0.36"[..],
                11,
                0xdfff_ffffu64,
                0xff,
                "caching_sha2_password",
            ),
            (
                MARIADB,
                b"5.5.5-10.11.6-MariaDB-0+deb12u1",
                33,
                0x1d_81ff_f7feu64,
                0x2d,
                "mysql_native_password",
            ),
        ] {
            let g = Greeting::parse(bytes).unwrap();
            assert_eq!(g.protocol, 10);
            assert_eq!(g.server_version, version);
            assert_eq!(g.connection_id, id);
            assert_eq!(g.capabilities, caps_, "{:#x}", g.capabilities);
            assert_eq!(g.charset, charset);
            assert_eq!(g.status, caps::status::AUTOCOMMIT);
            assert_eq!(g.scramble.len(), 20);
            assert_eq!(g.auth_plugin.as_deref(), Some(plugin));
            assert_eq!(g.encode(), bytes);
        }
        let m = Greeting::parse(MARIADB).unwrap();
        assert!(m.capabilities & caps::MARIADB_PROGRESS != 0);
        assert!(m.capabilities & caps::MARIADB_EXTENDED_METADATA != 0);
        assert!(m.capabilities & caps::CLIENT_MYSQL == 0);
    }

    #[test]
    fn greeting_variants_round_trip() {
        for g in [
            Greeting {
                protocol: 10,
                server_version: b"5.7.44".to_vec(),
                connection_id: 0xdead_beef,
                scramble: (1..=20).collect(),
                capabilities: 0xffff_f7ff & !caps::SSL,
                charset: 8,
                status: 0,
                auth_plugin: Some("mysql_native_password".into()),
            },
            Greeting {
                protocol: 10,
                server_version: b"x".to_vec(),
                connection_id: 1,
                scramble: (1..=20).collect(),
                capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION,
                charset: 33,
                status: 3,
                auth_plugin: None,
            },
        ] {
            assert_eq!(Greeting::parse(&g.encode()).unwrap(), g);
        }
    }

    #[test]
    fn greeting_errors() {
        let err = Greeting::parse(b"\xff\x69\x04Host 'x' is not allowed to connect").unwrap_err();
        assert!(err.to_string().contains("is not allowed"), "{err}");
        assert!(Greeting::is_err(b"\xff"));
        assert!(Greeting::parse(b"\x09old\x00").is_err());
        for cut in 0..MYSQL8.len() - 22 {
            if cut != 23 {
                assert!(Greeting::parse(&MYSQL8[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    fn response(caps_: u64) -> HandshakeResponse {
        HandshakeResponse {
            capabilities: caps_,
            max_packet: 16 * 1024 * 1024,
            charset: 255,
            user: b"app".to_vec(),
            auth_response: (100..120).collect(),
            database: (caps_ & caps::CONNECT_WITH_DB != 0).then(|| b"shop".to_vec()),
            auth_plugin: (caps_ & caps::PLUGIN_AUTH != 0).then(|| "caching_sha2_password".into()),
            attributes: if caps_ & caps::CONNECT_ATTRS != 0 {
                vec![
                    (b"_client_name".to_vec(), b"libmysql".to_vec()),
                    (b"_pid".to_vec(), b"4242".to_vec()),
                ]
            } else {
                vec![]
            },
            zstd_level: (caps_ & caps::ZSTD_COMPRESSION != 0).then_some(3),
        }
    }

    #[test]
    fn handshake_response_round_trips() {
        let base = caps::PROTOCOL_41 | caps::LONG_PASSWORD;
        for c in [
            base | caps::SECURE_CONNECTION,
            base,
            base | caps::PLUGIN_AUTH_LENENC_DATA | caps::SECURE_CONNECTION,
            base | caps::SECURE_CONNECTION | caps::CONNECT_WITH_DB | caps::PLUGIN_AUTH,
            base | caps::SECURE_CONNECTION
                | caps::CONNECT_WITH_DB
                | caps::PLUGIN_AUTH
                | caps::CONNECT_ATTRS
                | caps::ZSTD_COMPRESSION,
            // MariaDB client: bit 0 clear, extended caps in the filler.
            caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::CONNECT_ATTRS
                | caps::MARIADB_PROGRESS
                | caps::MARIADB_STMT_BULK_OPERATIONS,
        ] {
            let mut resp = response(c);
            if c & (caps::SECURE_CONNECTION | caps::PLUGIN_AUTH_LENENC_DATA) == 0 {
                resp.auth_response = b"no nul inside".to_vec();
            }
            let bytes = resp.encode();
            assert_eq!(HandshakeResponse::parse(&bytes).unwrap(), resp, "{c:#x}");
            assert_eq!(HandshakeResponse::parse(&bytes).unwrap().encode(), bytes);
        }
        let r = response(caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::CONNECT_ATTRS);
        assert_eq!(r.attribute(b"_pid"), Some(&b"4242"[..]));
        assert_eq!(r.attribute(b"nope"), None);
    }

    #[test]
    fn handshake_response_rejects_old_and_broken() {
        let old = response(caps::LONG_PASSWORD | caps::SECURE_CONNECTION).encode();
        assert_eq!(
            HandshakeResponse::parse(&old),
            Err(CodecError::malformed("pre-4.1 clients are not supported"))
        );
        let good =
            response(caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::CONNECT_ATTRS).encode();
        // Cutting right after the auth response leaves the (optional,
        // trailing) attributes absent, which is accepted.
        let attrs_at = 32 + 4 + 1 + 20;
        for cut in (0..good.len()).filter(|&c| c != attrs_at) {
            assert!(HandshakeResponse::parse(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(1);
        assert!(HandshakeResponse::parse(&trailing).is_err());
    }

    #[test]
    fn missing_trailing_optional_fields_are_absent() {
        // libmysqlclient-style: CONNECT_WITH_DB set but nothing after the
        // auth response.
        let c =
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::CONNECT_WITH_DB | caps::PLUGIN_AUTH;
        let mut r = response(c);
        r.database = None;
        r.auth_plugin = None;
        assert_eq!(HandshakeResponse::parse(&r.encode()).unwrap(), r);
    }

    /// Found by the my_stream fuzz target: a greeting without PLUGIN_AUTH
    /// whose scramble was longer than 20 bytes encoded all of it, but the
    /// auth-data length byte is 0 then and a reader takes 13 bytes: the
    /// rest was read as whatever follows. Part 2 is now cut to what a
    /// reader takes, so an encoded greeting reads back as itself.
    #[test]
    fn long_scrambles_are_cut_to_what_is_read() {
        for c in [
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION,
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
        ] {
            let g = Greeting {
                protocol: PROTOCOL_VERSION,
                server_version: b"8.0.36".to_vec(),
                connection_id: 7,
                scramble: (1..=255).collect(),
                capabilities: c,
                charset: 255,
                status: 2,
                auth_plugin: (c & caps::PLUGIN_AUTH != 0).then(|| "mysql_native_password".into()),
            };
            let bytes = g.encode();
            let back = Greeting::parse(&bytes).unwrap();
            assert_eq!(back.encode(), bytes, "{c:#x}");
            assert_eq!(back.auth_plugin, g.auth_plugin);
            let kept = if c & caps::PLUGIN_AUTH != 0 {
                8 + 246
            } else {
                8 + 12
            };
            assert_eq!(back.scramble, g.scramble[..kept], "{c:#x}");
        }
    }

    /// Found by the my_stream fuzz target: a response ending after its
    /// auth response with PLUGIN_AUTH and CONNECT_ATTRS set parsed with no
    /// plugin, and re-encoded with an empty attribute block where the
    /// plugin name goes, which then parsed as an empty plugin name. The
    /// same shift put a plugin where the database goes when the client
    /// set CONNECT_WITH_DB but named no database (what credential
    /// injection sends on for libmysqlclient-style clients).
    #[test]
    fn absent_flagged_fields_keep_the_rest_in_place() {
        let mut payload = vec![0x44, 0xff, 0xff, 0x31, 0xff, 0xff, 0xff, 0xff, 0xff];
        payload.extend_from_slice(&[0; 19]);
        payload.extend_from_slice(&[0xff; 4]);
        payload.extend_from_slice(b"\xff\xff\xff\xff!\xff\xff\x00\x00");
        let r = HandshakeResponse::parse(&payload).unwrap();
        assert_eq!(
            (r.auth_plugin.as_deref(), r.database.as_deref()),
            (None, None)
        );
        assert_eq!(r.encode(), payload, "nothing after the auth response");
        assert_eq!(HandshakeResponse::parse(&r.encode()).unwrap(), r);

        let c = caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::CONNECT_WITH_DB
            | caps::PLUGIN_AUTH
            | caps::CONNECT_ATTRS;
        let mut r = response(c);
        r.database = None;
        r.auth_plugin = Some(crate::auth::NATIVE.into());
        let back = HandshakeResponse::parse(&r.encode()).unwrap();
        assert_eq!(
            back.database.as_deref(),
            Some(&b""[..]),
            "empty, not the plugin"
        );
        assert_eq!(back.auth_plugin.as_deref(), Some(crate::auth::NATIVE));
        assert_eq!(back.attributes, r.attributes);

        r.auth_plugin = None;
        r.attributes = vec![(b"_os".to_vec(), b"Linux".to_vec())];
        let back = HandshakeResponse::parse(&r.encode()).unwrap();
        assert_eq!(back.auth_plugin.as_deref(), Some(""));
        assert_eq!(back.attributes, r.attributes, "attributes stay attributes");
    }

    #[test]
    fn ssl_request_round_trips_and_is_recognised() {
        for c in [
            caps::PROTOCOL_41 | caps::SSL | caps::LONG_PASSWORD,
            caps::PROTOCOL_41 | caps::SSL | caps::MARIADB_PROGRESS,
        ] {
            let req = SslRequest {
                capabilities: c,
                max_packet: 1 << 24,
                charset: 45,
            };
            let bytes = req.encode();
            assert_eq!(bytes.len(), 32);
            assert!(is_ssl_request(&bytes));
            assert_eq!(SslRequest::parse(&bytes).unwrap(), req);
        }
        let full = response(caps::PROTOCOL_41 | caps::SSL | caps::SECURE_CONNECTION).encode();
        assert!(!is_ssl_request(&full));
        assert!(!is_ssl_request(&[0; 32]));
        let no_ssl = SslRequest {
            capabilities: caps::PROTOCOL_41,
            max_packet: 0,
            charset: 0,
        }
        .encode();
        assert!(!is_ssl_request(&no_ssl));
        assert!(SslRequest::parse(&no_ssl).is_err());
    }
}
