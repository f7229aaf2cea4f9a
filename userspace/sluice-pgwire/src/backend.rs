//! Messages a server sends.
use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    CodecError, Frame,
    wire::{Reader, put_cstr, put_list16, put_message, put_value},
};

/// The Authentication request family (`R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// AuthenticationOk.
    Ok,
    /// AuthenticationKerberosV5.
    KerberosV5,
    /// AuthenticationCleartextPassword.
    CleartextPassword,
    /// AuthenticationMD5Password with its salt.
    Md5Password([u8; 4]),
    /// AuthenticationGSS.
    Gss,
    /// AuthenticationGSSContinue.
    GssContinue(Bytes),
    /// AuthenticationSSPI.
    Sspi,
    /// AuthenticationSASL with the offered mechanisms.
    Sasl(Vec<String>),
    /// AuthenticationSASLContinue.
    SaslContinue(Bytes),
    /// AuthenticationSASLFinal.
    SaslFinal(Bytes),
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// Source table OID, 0 if not a plain column.
    pub table_oid: u32,
    /// Source column number, 0 if not a plain column.
    pub column: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type size (negative: variable).
    pub type_size: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// Format code: 0 text, 1 binary.
    pub format: i16,
}

/// ErrorResponse / NoticeResponse fields: (field type byte, value).
pub type Fields = Vec<(u8, String)>;

/// A backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// `R`.
    Authentication(Authentication),
    /// `K`: the key a client needs to cancel.
    BackendKeyData {
        /// Process id.
        pid: i32,
        /// Secret key.
        key: i32,
    },
    /// `2`.
    BindComplete,
    /// `3`.
    CloseComplete,
    /// `C`: command tag, e.g. `SELECT 3`.
    CommandComplete(String),
    /// `d`.
    CopyData(Bytes),
    /// `c`.
    CopyDone,
    /// `G`.
    CopyInResponse {
        /// Overall format (0 text, 1 binary).
        format: i8,
        /// Per-column formats.
        column_formats: Vec<i16>,
    },
    /// `H`.
    CopyOutResponse {
        /// Overall format.
        format: i8,
        /// Per-column formats.
        column_formats: Vec<i16>,
    },
    /// `W`.
    CopyBothResponse {
        /// Overall format.
        format: i8,
        /// Per-column formats.
        column_formats: Vec<i16>,
    },
    /// `D`: one row; None is NULL.
    DataRow(Vec<Option<Bytes>>),
    /// `I`.
    EmptyQueryResponse,
    /// `E`.
    ErrorResponse(Fields),
    /// `V`: the result; None is NULL.
    FunctionCallResponse(Option<Bytes>),
    /// `v`.
    NegotiateProtocolVersion {
        /// The newest protocol version the server supports for the major
        /// version asked for. The documentation calls it the "newest minor
        /// version", but PostgreSQL sends the whole version number (3.0 is
        /// 196608) and libpq 18 reads it so.
        newest_version: i32,
        /// Protocol options it did not recognise.
        unrecognized: Vec<String>,
    },
    /// `n`.
    NoData,
    /// `N`.
    NoticeResponse(Fields),
    /// `A`: LISTEN/NOTIFY.
    NotificationResponse {
        /// Notifying backend's pid.
        pid: i32,
        /// Channel.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// `t`: parameter type OIDs.
    ParameterDescription(Vec<u32>),
    /// `S`.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Value.
        value: String,
    },
    /// `1`.
    ParseComplete,
    /// `s`.
    PortalSuspended,
    /// `Z`: transaction status `I`, `T` or `E`.
    ReadyForQuery(u8),
    /// `T`.
    RowDescription(Vec<FieldDescription>),
}

impl BackendMessage {
    /// Decode one frame from [`crate::FrameReader::next_tagged`].
    pub fn decode(frame: Frame) -> Result<BackendMessage, CodecError> {
        let what = name(frame.tag);
        Self::decode_with(frame.tag, Reader::new(frame.body, what))
    }

    /// Decode one frame, reading strings that are not UTF-8 lossily (see
    /// [`Reader::new_lossy`]): for a proxy that inspects messages in a
    /// session whose `client_encoding` may be anything, and forwards the
    /// original bytes unless it replaces the message.
    pub fn decode_lossy(frame: Frame) -> Result<BackendMessage, CodecError> {
        let what = name(frame.tag);
        Self::decode_with(frame.tag, Reader::new_lossy(frame.body, what))
    }

    fn decode_with(tag: u8, mut r: Reader) -> Result<BackendMessage, CodecError> {
        let what = name(tag);
        let msg = match tag {
            b'R' => BackendMessage::Authentication(match r.i32()? {
                0 => Authentication::Ok,
                2 => Authentication::KerberosV5,
                3 => Authentication::CleartextPassword,
                5 => {
                    let s = r.bytes(4)?;
                    Authentication::Md5Password([s[0], s[1], s[2], s[3]])
                }
                7 => Authentication::Gss,
                8 => Authentication::GssContinue(r.rest()),
                9 => Authentication::Sspi,
                10 => {
                    let mut mechanisms = Vec::new();
                    loop {
                        let m = r.cstr()?;
                        if m.is_empty() {
                            break;
                        }
                        mechanisms.push(m);
                    }
                    Authentication::Sasl(mechanisms)
                }
                11 => Authentication::SaslContinue(r.rest()),
                12 => Authentication::SaslFinal(r.rest()),
                code => {
                    return Err(CodecError::malformed(
                        what,
                        format!("authentication code {code}"),
                    ));
                }
            }),
            b'K' => BackendMessage::BackendKeyData {
                pid: r.i32()?,
                key: r.i32()?,
            },
            b'2' => BackendMessage::BindComplete,
            b'3' => BackendMessage::CloseComplete,
            b'C' => BackendMessage::CommandComplete(r.cstr()?),
            b'd' => BackendMessage::CopyData(r.rest()),
            b'c' => BackendMessage::CopyDone,
            b'G' | b'H' | b'W' => {
                let format = r.u8()? as i8;
                let column_formats = r.list16(2, Reader::i16)?;
                match tag {
                    b'G' => BackendMessage::CopyInResponse {
                        format,
                        column_formats,
                    },
                    b'H' => BackendMessage::CopyOutResponse {
                        format,
                        column_formats,
                    },
                    _ => BackendMessage::CopyBothResponse {
                        format,
                        column_formats,
                    },
                }
            }
            b'D' => {
                let values = r.list16(4, Reader::value)?;
                BackendMessage::DataRow(values)
            }
            b'I' => BackendMessage::EmptyQueryResponse,
            b'E' => BackendMessage::ErrorResponse(fields(&mut r)?),
            b'N' => BackendMessage::NoticeResponse(fields(&mut r)?),
            b'V' => BackendMessage::FunctionCallResponse(r.value()?),
            b'v' => {
                let newest_version = r.i32()?;
                let n = r.i32()?;
                let n = usize::try_from(n)
                    .map_err(|_| CodecError::malformed(what, format!("negative count {n}")))?;
                let mut unrecognized = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    unrecognized.push(r.cstr()?);
                }
                BackendMessage::NegotiateProtocolVersion {
                    newest_version,
                    unrecognized,
                }
            }
            b'n' => BackendMessage::NoData,
            b'A' => BackendMessage::NotificationResponse {
                pid: r.i32()?,
                channel: r.cstr()?,
                payload: r.cstr()?,
            },
            b't' => {
                let oids = r.list16(4, |r| Ok(r.i32()? as u32))?;
                BackendMessage::ParameterDescription(oids)
            }
            b'S' => BackendMessage::ParameterStatus {
                name: r.cstr()?,
                value: r.cstr()?,
            },
            b'1' => BackendMessage::ParseComplete,
            b's' => BackendMessage::PortalSuspended,
            b'Z' => {
                let status = r.u8()?;
                if !matches!(status, b'I' | b'T' | b'E') {
                    return Err(CodecError::malformed(
                        what,
                        format!("transaction status {:?}", status as char),
                    ));
                }
                BackendMessage::ReadyForQuery(status)
            }
            b'T' => {
                let cols = r.list16(19, |r| {
                    Ok(FieldDescription {
                        name: r.cstr()?,
                        table_oid: r.i32()? as u32,
                        column: r.i16()?,
                        type_oid: r.i32()? as u32,
                        type_size: r.i16()?,
                        type_modifier: r.i32()?,
                        format: r.i16()?,
                    })
                })?;
                BackendMessage::RowDescription(cols)
            }
            tag => {
                return Err(CodecError::UnknownTag {
                    side: "backend",
                    tag: tag as char,
                });
            }
        };
        r.finish()?;
        Ok(msg)
    }

    /// The message's type byte.
    pub fn tag(&self) -> u8 {
        match self {
            BackendMessage::Authentication(_) => b'R',
            BackendMessage::BackendKeyData { .. } => b'K',
            BackendMessage::BindComplete => b'2',
            BackendMessage::CloseComplete => b'3',
            BackendMessage::CommandComplete(_) => b'C',
            BackendMessage::CopyData(_) => b'd',
            BackendMessage::CopyDone => b'c',
            BackendMessage::CopyInResponse { .. } => b'G',
            BackendMessage::CopyOutResponse { .. } => b'H',
            BackendMessage::CopyBothResponse { .. } => b'W',
            BackendMessage::DataRow(_) => b'D',
            BackendMessage::EmptyQueryResponse => b'I',
            BackendMessage::ErrorResponse(_) => b'E',
            BackendMessage::FunctionCallResponse(_) => b'V',
            BackendMessage::NegotiateProtocolVersion { .. } => b'v',
            BackendMessage::NoData => b'n',
            BackendMessage::NoticeResponse(_) => b'N',
            BackendMessage::NotificationResponse { .. } => b'A',
            BackendMessage::ParameterDescription(_) => b't',
            BackendMessage::ParameterStatus { .. } => b'S',
            BackendMessage::ParseComplete => b'1',
            BackendMessage::PortalSuspended => b's',
            BackendMessage::ReadyForQuery(_) => b'Z',
            BackendMessage::RowDescription(_) => b'T',
        }
    }

    /// Encode, header included.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_message(dst, self.tag(), |b| match self {
            BackendMessage::Authentication(a) => match a {
                Authentication::Ok => b.put_i32(0),
                Authentication::KerberosV5 => b.put_i32(2),
                Authentication::CleartextPassword => b.put_i32(3),
                Authentication::Md5Password(salt) => {
                    b.put_i32(5);
                    b.put_slice(salt);
                }
                Authentication::Gss => b.put_i32(7),
                Authentication::GssContinue(d) => {
                    b.put_i32(8);
                    b.put_slice(d);
                }
                Authentication::Sspi => b.put_i32(9),
                Authentication::Sasl(mechs) => {
                    b.put_i32(10);
                    for m in mechs {
                        put_cstr(b, m);
                    }
                    b.put_u8(0);
                }
                Authentication::SaslContinue(d) => {
                    b.put_i32(11);
                    b.put_slice(d);
                }
                Authentication::SaslFinal(d) => {
                    b.put_i32(12);
                    b.put_slice(d);
                }
            },
            BackendMessage::BackendKeyData { pid, key } => {
                b.put_i32(*pid);
                b.put_i32(*key);
            }
            BackendMessage::BindComplete
            | BackendMessage::CloseComplete
            | BackendMessage::CopyDone
            | BackendMessage::EmptyQueryResponse
            | BackendMessage::NoData
            | BackendMessage::ParseComplete
            | BackendMessage::PortalSuspended => {}
            BackendMessage::CommandComplete(tag) => put_cstr(b, tag),
            BackendMessage::CopyData(d) => b.put_slice(d),
            BackendMessage::CopyInResponse {
                format,
                column_formats,
            }
            | BackendMessage::CopyOutResponse {
                format,
                column_formats,
            }
            | BackendMessage::CopyBothResponse {
                format,
                column_formats,
            } => {
                b.put_i8(*format);
                put_list16(b, column_formats, |b, f| b.put_i16(*f));
            }
            BackendMessage::DataRow(values) => {
                put_list16(b, values, |b, v| put_value(b, v.as_deref()));
            }
            BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                for (code, value) in f {
                    b.put_u8(*code);
                    put_cstr(b, value);
                }
                b.put_u8(0);
            }
            BackendMessage::FunctionCallResponse(v) => put_value(b, v.as_deref()),
            BackendMessage::NegotiateProtocolVersion {
                newest_version,
                unrecognized,
            } => {
                b.put_i32(*newest_version);
                b.put_i32(unrecognized.len() as i32);
                for o in unrecognized {
                    put_cstr(b, o);
                }
            }
            BackendMessage::NotificationResponse {
                pid,
                channel,
                payload,
            } => {
                b.put_i32(*pid);
                put_cstr(b, channel);
                put_cstr(b, payload);
            }
            BackendMessage::ParameterDescription(oids) => {
                put_list16(b, oids, |b, o| b.put_u32(*o));
            }
            BackendMessage::ParameterStatus { name, value } => {
                put_cstr(b, name);
                put_cstr(b, value);
            }
            BackendMessage::ReadyForQuery(status) => b.put_u8(*status),
            BackendMessage::RowDescription(cols) => {
                put_list16(b, cols, |b, c| {
                    put_cstr(b, &c.name);
                    b.put_u32(c.table_oid);
                    b.put_i16(c.column);
                    b.put_u32(c.type_oid);
                    b.put_i16(c.type_size);
                    b.put_i32(c.type_modifier);
                    b.put_i16(c.format);
                });
            }
        });
    }

    /// An ErrorResponse with severity ERROR, a SQLSTATE and a message: what
    /// sluice sends a client whose statement it refuses.
    pub fn error(sqlstate: &str, message: &str) -> BackendMessage {
        BackendMessage::ErrorResponse(vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', sqlstate.into()),
            (b'M', message.into()),
        ])
    }

    /// A field of an ErrorResponse or NoticeResponse (`C` SQLSTATE, `M` message…).
    pub fn field(&self, code: u8) -> Option<&str> {
        match self {
            BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                f.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_str())
            }
            _ => None,
        }
    }
}

/// Human name of a backend message type, for errors and logs.
pub fn name(tag: u8) -> &'static str {
    match tag {
        b'R' => "Authentication",
        b'K' => "BackendKeyData",
        b'2' => "BindComplete",
        b'3' => "CloseComplete",
        b'C' => "CommandComplete",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'G' => "CopyInResponse",
        b'H' => "CopyOutResponse",
        b'W' => "CopyBothResponse",
        b'D' => "DataRow",
        b'I' => "EmptyQueryResponse",
        b'E' => "ErrorResponse",
        b'V' => "FunctionCallResponse",
        b'v' => "NegotiateProtocolVersion",
        b'n' => "NoData",
        b'N' => "NoticeResponse",
        b'A' => "NotificationResponse",
        b't' => "ParameterDescription",
        b'S' => "ParameterStatus",
        b'1' => "ParseComplete",
        b's' => "PortalSuspended",
        b'Z' => "ReadyForQuery",
        b'T' => "RowDescription",
        _ => "backend message",
    }
}

/// The values of a DataRow body (the frame without its 5-byte header),
/// borrowed from it: no copy and no reference count, for a proxy that looks
/// at every row of a result and forwards most of them untouched. `None` is
/// NULL. Errors exactly where [`BackendMessage::decode`] would.
pub fn data_row_values(body: &[u8]) -> Result<Vec<Option<&[u8]>>, CodecError> {
    let what = "DataRow";
    let short = |need: usize, has: usize| {
        CodecError::malformed(what, format!("needs {need} more bytes, has {has}"))
    };
    let (count, mut rest) = match body {
        [a, b, rest @ ..] => (i16::from_be_bytes([*a, *b]), rest),
        _ => return Err(short(2, body.len())),
    };
    let count = usize::try_from(count)
        .map_err(|_| CodecError::malformed(what, format!("negative count {count}")))?;
    // Every value takes at least its 4-byte length: never reserve more
    // than the body could hold, whatever count the peer claims.
    let mut values = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        let (len, after) = match rest {
            [a, b, c, d, after @ ..] => (i32::from_be_bytes([*a, *b, *c, *d]), after),
            _ => return Err(short(4, rest.len())),
        };
        match len {
            -1 => {
                values.push(None);
                rest = after;
            }
            n if n < 0 => return Err(CodecError::malformed(what, format!("value length {n}"))),
            n => {
                let n = n as usize;
                if after.len() < n {
                    return Err(short(n, after.len()));
                }
                let (value, after) = after.split_at(n);
                values.push(Some(value));
                rest = after;
            }
        }
    }
    if !rest.is_empty() {
        return Err(CodecError::malformed(
            what,
            format!("{} trailing bytes", rest.len()),
        ));
    }
    Ok(values)
}

fn fields(r: &mut Reader) -> Result<Fields, CodecError> {
    let mut out = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            return Ok(out);
        }
        out.push((code, r.cstr()?));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameReader;

    fn round_trip(msg: BackendMessage) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        let frame = FrameReader::default()
            .next_tagged(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(BackendMessage::decode(frame).unwrap(), msg);
        assert!(buf.is_empty());
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn authentication_family() {
        for a in [
            Authentication::Ok,
            Authentication::KerberosV5,
            Authentication::CleartextPassword,
            Authentication::Md5Password([1, 2, 3, 4]),
            Authentication::Gss,
            Authentication::GssContinue(b("token")),
            Authentication::Sspi,
            Authentication::Sasl(vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-256-PLUS".into()]),
            Authentication::SaslContinue(b("r=abc,s=salt,i=4096")),
            Authentication::SaslFinal(b("v=proof")),
        ] {
            round_trip(BackendMessage::Authentication(a));
        }
    }
    #[test]
    fn backend_key_data() {
        round_trip(BackendMessage::BackendKeyData {
            pid: 1234,
            key: -99,
        });
    }
    #[test]
    fn bind_complete() {
        round_trip(BackendMessage::BindComplete);
    }
    #[test]
    fn close_complete() {
        round_trip(BackendMessage::CloseComplete);
    }
    #[test]
    fn command_complete() {
        round_trip(BackendMessage::CommandComplete("SELECT 2".into()));
    }
    #[test]
    fn copy_data_and_done() {
        round_trip(BackendMessage::CopyData(b("1\tAda\n")));
        round_trip(BackendMessage::CopyDone);
    }
    #[test]
    fn copy_responses() {
        round_trip(BackendMessage::CopyInResponse {
            format: 0,
            column_formats: vec![0, 0],
        });
        round_trip(BackendMessage::CopyOutResponse {
            format: 1,
            column_formats: vec![1],
        });
        round_trip(BackendMessage::CopyBothResponse {
            format: 0,
            column_formats: vec![],
        });
    }
    #[test]
    fn data_row() {
        round_trip(BackendMessage::DataRow(vec![
            Some(b("4111111111111111")),
            None,
            Some(Bytes::new()),
        ]));
    }
    #[test]
    fn empty_query_response() {
        round_trip(BackendMessage::EmptyQueryResponse);
    }
    #[test]
    fn error_and_notice() {
        let e = BackendMessage::error("42501", "permission denied by sluice policy");
        assert_eq!(e.field(b'C'), Some("42501"));
        round_trip(e);
        round_trip(BackendMessage::NoticeResponse(vec![
            (b'S', "NOTICE".into()),
            (b'M', "hello".into()),
        ]));
    }
    #[test]
    fn function_call_response() {
        round_trip(BackendMessage::FunctionCallResponse(Some(b("42"))));
        round_trip(BackendMessage::FunctionCallResponse(None));
    }
    #[test]
    fn negotiate_protocol_version() {
        round_trip(BackendMessage::NegotiateProtocolVersion {
            newest_version: 0,
            unrecognized: vec!["_pq_.foo".into()],
        });
    }
    #[test]
    fn no_data() {
        round_trip(BackendMessage::NoData);
    }
    #[test]
    fn notification_response() {
        round_trip(BackendMessage::NotificationResponse {
            pid: 7,
            channel: "cards".into(),
            payload: "changed".into(),
        });
    }
    #[test]
    fn parameter_description() {
        round_trip(BackendMessage::ParameterDescription(vec![23, 25]));
    }
    #[test]
    fn parameter_status() {
        round_trip(BackendMessage::ParameterStatus {
            name: "server_version".into(),
            value: "15.18".into(),
        });
    }
    #[test]
    fn parse_complete() {
        round_trip(BackendMessage::ParseComplete);
    }
    #[test]
    fn portal_suspended() {
        round_trip(BackendMessage::PortalSuspended);
    }
    #[test]
    fn ready_for_query() {
        round_trip(BackendMessage::ReadyForQuery(b'T'));
    }
    #[test]
    fn row_description() {
        round_trip(BackendMessage::RowDescription(vec![FieldDescription {
            name: "pan".into(),
            table_oid: 16384,
            column: 3,
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        }]));
    }

    #[test]
    fn data_row_values_borrow_what_decode_copies() {
        let row = BackendMessage::DataRow(vec![Some(b("4111")), None, Some(Bytes::new())]);
        let mut buf = BytesMut::new();
        row.encode(&mut buf);
        let values = data_row_values(&buf[5..]).unwrap();
        assert_eq!(values, vec![Some(&b"4111"[..]), None, Some(&b""[..])]);
        // Malformed bodies fail as decode does, never panic.
        for body in [
            &b""[..],
            b"\0",
            b"\xff\xff",
            b"\0\x01\0\0\0\x09short",
            b"\0\x01\xff\xff\xff\xfe",
            b"\0\x01\xff\xff\xff\xffextra",
            b"\0\x01\0\0",
        ] {
            assert!(
                matches!(data_row_values(body), Err(CodecError::Malformed { .. })),
                "{body:?}"
            );
            assert!(
                BackendMessage::decode(Frame {
                    tag: b'D',
                    body: Bytes::copy_from_slice(body)
                })
                .is_err()
            );
        }
    }

    #[test]
    fn lossy_decoding_keeps_messages_that_are_not_utf8() {
        // A LATIN1 session: "é" is one byte, 0xE9.
        let body = Bytes::from_static(b"SNOTICE\0Mcaf\xe9\0\0");
        let frame = Frame { tag: b'N', body };
        assert!(BackendMessage::decode(frame.clone()).is_err());
        let msg = BackendMessage::decode_lossy(frame).unwrap();
        assert_eq!(msg.field(b'M'), Some("caf\u{fffd}"));
    }

    /// One line per malformed frame: (tag, body) → Malformed.
    #[test]
    fn malformed_bodies_are_typed_errors() {
        let cases: &[(u8, &[u8])] = &[
            (b'Z', b"Q"),
            (b'Z', b""),
            (b'R', b"\0\0\0\x63"),
            (b'D', b"\0\x01\0\0\0\x09short"),
            (b'D', b"\xff\xff"),
            (b'T', b"\0\x01col\0"),
            (b'E', b"Mno terminator"),
            (b'K', b"\0\0\0\x01"),
            (b'1', b"x"),
        ];
        for (tag, body) in cases {
            let err = BackendMessage::decode(Frame {
                tag: *tag,
                body: Bytes::from_static(body),
            })
            .unwrap_err();
            assert!(
                matches!(err, CodecError::Malformed { .. }),
                "{} {body:?}: {err}",
                *tag as char
            );
        }
    }
}
