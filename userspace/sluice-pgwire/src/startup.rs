//! The startup family: the untagged first message of a connection.
use bytes::{BufMut, BytesMut};

use crate::{
    CodecError, Frame,
    wire::{Reader, put_cstr, put_length_prefixed},
};

/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// What a client may send first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest {
    /// StartupMessage: protocol version and parameters (user, database, …).
    Startup {
        /// Requested version (major << 16 | minor).
        version: i32,
        /// Parameters in the order sent.
        params: Vec<(String, String)>,
    },
    /// SSLRequest: answer `S` and start TLS, or `N`.
    SslRequest,
    /// GSSENCRequest: sluice answers `N`.
    GssEncRequest,
    /// CancelRequest for the backend with this process id and secret key.
    Cancel {
        /// Backend process id (as the client knows it).
        pid: i32,
        /// Secret key (as the client knows it).
        key: i32,
    },
}

impl StartupRequest {
    /// Decode a frame from [`crate::FrameReader::next_startup`].
    pub fn decode(frame: Frame) -> Result<StartupRequest, CodecError> {
        let mut r = Reader::new(frame.body, "startup message");
        let code = r.i32()?;
        let msg = match code {
            SSL_REQUEST => StartupRequest::SslRequest,
            GSSENC_REQUEST => StartupRequest::GssEncRequest,
            CANCEL_REQUEST => StartupRequest::Cancel {
                pid: r.i32()?,
                key: r.i32()?,
            },
            version if version >> 16 == 3 => {
                let mut params = Vec::new();
                loop {
                    let name = r.cstr()?;
                    if name.is_empty() {
                        break;
                    }
                    let value = r.cstr()?;
                    params.push((name, value));
                }
                StartupRequest::Startup { version, params }
            }
            other => {
                return Err(CodecError::malformed(
                    "startup message",
                    format!(
                        "unsupported protocol version {}.{}",
                        other >> 16,
                        other & 0xffff
                    ),
                ));
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// Encode with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_length_prefixed(dst, |dst| match self {
            StartupRequest::Startup { version, params } => {
                dst.put_i32(*version);
                for (k, v) in params {
                    put_cstr(dst, k);
                    put_cstr(dst, v);
                }
                dst.put_u8(0);
            }
            StartupRequest::SslRequest => dst.put_i32(SSL_REQUEST),
            StartupRequest::GssEncRequest => dst.put_i32(GSSENC_REQUEST),
            StartupRequest::Cancel { pid, key } => {
                dst.put_i32(CANCEL_REQUEST);
                dst.put_i32(*pid);
                dst.put_i32(*key);
            }
        });
    }

    /// A startup parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupRequest::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameReader;

    fn round_trip(msg: StartupRequest) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        let frame = FrameReader::default()
            .next_startup(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(StartupRequest::decode(frame).unwrap(), msg);
        assert!(buf.is_empty());
    }

    #[test]
    fn startup_message() {
        round_trip(StartupRequest::Startup {
            version: PROTOCOL_3_0,
            params: vec![
                ("user".into(), "agent".into()),
                ("database".into(), "cards".into()),
            ],
        });
    }
    #[test]
    fn newer_minor_version_is_accepted_for_negotiation() {
        round_trip(StartupRequest::Startup {
            version: PROTOCOL_3_0 + 2,
            params: vec![],
        });
    }
    #[test]
    fn ssl_request() {
        round_trip(StartupRequest::SslRequest);
    }
    #[test]
    fn gssenc_request() {
        round_trip(StartupRequest::GssEncRequest);
    }
    #[test]
    fn cancel_request() {
        round_trip(StartupRequest::Cancel {
            pid: 4242,
            key: -17,
        });
    }
    #[test]
    fn protocol_2_is_malformed() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x08\x00\x02\x00\x00"[..]);
        let frame = FrameReader::default()
            .next_startup(&mut buf)
            .unwrap()
            .unwrap();
        assert!(matches!(
            StartupRequest::decode(frame),
            Err(CodecError::Malformed { .. })
        ));
    }
}
