//! Messages a client sends after startup.
use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    CodecError, Frame,
    wire::{Reader, put_cstr, put_list16, put_message, put_value},
};

/// What Describe and Close act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A prepared statement (`S`).
    Statement,
    /// A portal (`P`).
    Portal,
}

impl Target {
    fn decode(b: u8, what: &'static str) -> Result<Target, CodecError> {
        match b {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            other => Err(CodecError::malformed(
                what,
                format!("target {:?} is neither 'S' nor 'P'", other as char),
            )),
        }
    }
    fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// A frontend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// Simple query: one string, possibly several statements.
    Query(String),
    /// Parse: prepare `query` as statement `name` ("" = unnamed).
    Parse {
        /// Statement name.
        name: String,
        /// SQL text.
        query: String,
        /// Parameter type OIDs the client fixed (0 = unspecified).
        param_types: Vec<u32>,
    },
    /// Bind: create `portal` from `statement` with parameter values.
    Bind {
        /// Portal name.
        portal: String,
        /// Statement name.
        statement: String,
        /// Parameter format codes (0 text, 1 binary; none = all text, one = all).
        param_formats: Vec<i16>,
        /// Parameter values; None is NULL.
        params: Vec<Option<Bytes>>,
        /// Result column format codes.
        result_formats: Vec<i16>,
    },
    /// Describe a statement or portal.
    Describe {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// Execute a portal.
    Execute {
        /// Portal name.
        portal: String,
        /// Row limit, 0 = no limit.
        max_rows: i32,
    },
    /// Sync: end of an extended-query batch.
    Sync,
    /// Flush: send what is pending.
    Flush,
    /// Close a statement or portal.
    Close {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// COPY data from the client.
    CopyData(Bytes),
    /// COPY FROM STDIN finished.
    CopyDone,
    /// COPY FROM STDIN aborted, with the client's reason.
    CopyFail(String),
    /// FunctionCall (fast-path interface).
    FunctionCall {
        /// Function OID.
        oid: u32,
        /// Argument format codes.
        arg_formats: Vec<i16>,
        /// Arguments; None is NULL.
        args: Vec<Option<Bytes>>,
        /// Result format code.
        result_format: i16,
    },
    /// Terminate.
    Terminate,
    /// `p`: PasswordMessage, SASLInitialResponse, SASLResponse or
    /// GSSResponse; which one depends on the authentication exchange, so
    /// the body is kept and read with the helpers below.
    AuthResponse(Bytes),
}

/// SASLInitialResponse, read from an [`FrontendMessage::AuthResponse`] body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitial {
    /// Mechanism, e.g. `SCRAM-SHA-256`.
    pub mechanism: String,
    /// Initial client response; None if absent (-1).
    pub data: Option<Bytes>,
}

impl FrontendMessage {
    /// Decode one frame from [`crate::FrameReader::next_tagged`].
    pub fn decode(frame: Frame) -> Result<FrontendMessage, CodecError> {
        let what = name(frame.tag);
        let mut r = Reader::new(frame.body, what);
        let msg = match frame.tag {
            b'Q' => FrontendMessage::Query(r.cstr()?),
            b'P' => {
                let name = r.cstr()?;
                let query = r.cstr()?;
                let param_types = r.list16(4, |r| Ok(r.i32()? as u32))?;
                FrontendMessage::Parse {
                    name,
                    query,
                    param_types,
                }
            }
            b'B' => {
                let portal = r.cstr()?;
                let statement = r.cstr()?;
                let param_formats = r.list16(2, Reader::i16)?;
                let params = r.list16(4, Reader::value)?;
                let result_formats = r.list16(2, Reader::i16)?;
                FrontendMessage::Bind {
                    portal,
                    statement,
                    param_formats,
                    params,
                    result_formats,
                }
            }
            b'D' => FrontendMessage::Describe {
                target: Target::decode(r.u8()?, what)?,
                name: r.cstr()?,
            },
            b'E' => FrontendMessage::Execute {
                portal: r.cstr()?,
                max_rows: r.i32()?,
            },
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'C' => FrontendMessage::Close {
                target: Target::decode(r.u8()?, what)?,
                name: r.cstr()?,
            },
            b'd' => FrontendMessage::CopyData(r.rest()),
            b'c' => FrontendMessage::CopyDone,
            b'f' => FrontendMessage::CopyFail(r.cstr()?),
            b'F' => {
                let oid = r.i32()? as u32;
                let arg_formats = r.list16(2, Reader::i16)?;
                let args = r.list16(4, Reader::value)?;
                FrontendMessage::FunctionCall {
                    oid,
                    arg_formats,
                    args,
                    result_format: r.i16()?,
                }
            }
            b'X' => FrontendMessage::Terminate,
            b'p' => FrontendMessage::AuthResponse(r.rest()),
            tag => {
                return Err(CodecError::UnknownTag {
                    side: "frontend",
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
            FrontendMessage::Query(_) => b'Q',
            FrontendMessage::Parse { .. } => b'P',
            FrontendMessage::Bind { .. } => b'B',
            FrontendMessage::Describe { .. } => b'D',
            FrontendMessage::Execute { .. } => b'E',
            FrontendMessage::Sync => b'S',
            FrontendMessage::Flush => b'H',
            FrontendMessage::Close { .. } => b'C',
            FrontendMessage::CopyData(_) => b'd',
            FrontendMessage::CopyDone => b'c',
            FrontendMessage::CopyFail(_) => b'f',
            FrontendMessage::FunctionCall { .. } => b'F',
            FrontendMessage::Terminate => b'X',
            FrontendMessage::AuthResponse(_) => b'p',
        }
    }

    /// Encode, header included.
    pub fn encode(&self, dst: &mut BytesMut) {
        put_message(dst, self.tag(), |b| match self {
            FrontendMessage::Query(q) => put_cstr(b, q),
            FrontendMessage::Parse {
                name,
                query,
                param_types,
            } => {
                put_cstr(b, name);
                put_cstr(b, query);
                put_list16(b, param_types, |b, t| b.put_u32(*t));
            }
            FrontendMessage::Bind {
                portal,
                statement,
                param_formats,
                params,
                result_formats,
            } => {
                put_cstr(b, portal);
                put_cstr(b, statement);
                put_list16(b, param_formats, |b, x| b.put_i16(*x));
                put_list16(b, params, |b, p| put_value(b, p.as_deref()));
                put_list16(b, result_formats, |b, x| b.put_i16(*x));
            }
            FrontendMessage::Describe { target, name }
            | FrontendMessage::Close { target, name } => {
                b.put_u8(target.byte());
                put_cstr(b, name);
            }
            FrontendMessage::Execute { portal, max_rows } => {
                put_cstr(b, portal);
                b.put_i32(*max_rows);
            }
            FrontendMessage::Sync
            | FrontendMessage::Flush
            | FrontendMessage::CopyDone
            | FrontendMessage::Terminate => {}
            FrontendMessage::CopyData(data) | FrontendMessage::AuthResponse(data) => {
                b.put_slice(data)
            }
            FrontendMessage::CopyFail(reason) => put_cstr(b, reason),
            FrontendMessage::FunctionCall {
                oid,
                arg_formats,
                args,
                result_format,
            } => {
                b.put_u32(*oid);
                put_list16(b, arg_formats, |b, x| b.put_i16(*x));
                put_list16(b, args, |b, a| put_value(b, a.as_deref()));
                b.put_i16(*result_format);
            }
        });
    }

    /// Read an AuthResponse body as a cleartext or MD5 PasswordMessage.
    pub fn password(body: &Bytes) -> Result<String, CodecError> {
        let mut r = Reader::new(body.clone(), "password message");
        let p = r.cstr()?;
        r.finish()?;
        Ok(p)
    }

    /// Read an AuthResponse body as a SASLInitialResponse.
    pub fn sasl_initial(body: &Bytes) -> Result<SaslInitial, CodecError> {
        let mut r = Reader::new(body.clone(), "SASLInitialResponse");
        let mechanism = r.cstr()?;
        let data = r.value()?;
        r.finish()?;
        Ok(SaslInitial { mechanism, data })
    }
}

/// Human name of a frontend message type, for errors and logs.
pub fn name(tag: u8) -> &'static str {
    match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'D' => "Describe",
        b'E' => "Execute",
        b'S' => "Sync",
        b'H' => "Flush",
        b'C' => "Close",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'F' => "FunctionCall",
        b'X' => "Terminate",
        b'p' => "authentication response",
        _ => "frontend message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameReader;

    fn round_trip(msg: FrontendMessage) {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        let frame = FrameReader::default()
            .next_tagged(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(FrontendMessage::decode(frame).unwrap(), msg);
        assert!(buf.is_empty());
    }

    fn v(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn query() {
        round_trip(FrontendMessage::Query("select 1; select 2".into()));
    }
    #[test]
    fn parse() {
        round_trip(FrontendMessage::Parse {
            name: "s1".into(),
            query: "select $1::int".into(),
            param_types: vec![23, 0],
        });
    }
    #[test]
    fn bind() {
        round_trip(FrontendMessage::Bind {
            portal: "".into(),
            statement: "s1".into(),
            param_formats: vec![0, 1],
            params: vec![v("42"), None, Some(Bytes::from_static(&[0, 0, 0, 7]))],
            result_formats: vec![1],
        });
    }
    #[test]
    fn describe() {
        round_trip(FrontendMessage::Describe {
            target: Target::Statement,
            name: "s1".into(),
        });
        round_trip(FrontendMessage::Describe {
            target: Target::Portal,
            name: "".into(),
        });
    }
    #[test]
    fn execute() {
        round_trip(FrontendMessage::Execute {
            portal: "c1".into(),
            max_rows: 100,
        });
    }
    #[test]
    fn sync() {
        round_trip(FrontendMessage::Sync);
    }
    #[test]
    fn flush() {
        round_trip(FrontendMessage::Flush);
    }
    #[test]
    fn close() {
        round_trip(FrontendMessage::Close {
            target: Target::Portal,
            name: "c1".into(),
        });
    }
    #[test]
    fn copy_data() {
        round_trip(FrontendMessage::CopyData(Bytes::from_static(
            b"1\t4111111111111111\n",
        )));
    }
    #[test]
    fn copy_done() {
        round_trip(FrontendMessage::CopyDone);
    }
    #[test]
    fn copy_fail() {
        round_trip(FrontendMessage::CopyFail("client gave up".into()));
    }
    #[test]
    fn function_call() {
        round_trip(FrontendMessage::FunctionCall {
            oid: 1598,
            arg_formats: vec![1],
            args: vec![None, v("x")],
            result_format: 1,
        });
    }
    #[test]
    fn terminate() {
        round_trip(FrontendMessage::Terminate);
    }
    #[test]
    fn auth_responses() {
        let mut b = BytesMut::new();
        put_cstr(&mut b, "md5abcdef");
        let body = b.freeze();
        round_trip(FrontendMessage::AuthResponse(body.clone()));
        assert_eq!(FrontendMessage::password(&body).unwrap(), "md5abcdef");
        let mut b = BytesMut::new();
        put_cstr(&mut b, "SCRAM-SHA-256");
        put_value(&mut b, Some(b"n,,n=,r=abc"));
        let init = FrontendMessage::sasl_initial(&b.freeze()).unwrap();
        assert_eq!(init.mechanism, "SCRAM-SHA-256");
        assert_eq!(init.data.as_deref(), Some(&b"n,,n=,r=abc"[..]));
    }

    /// One line per malformed frame: (tag, body) → must be Malformed.
    #[test]
    fn malformed_bodies_are_typed_errors() {
        let cases: &[(u8, &[u8])] = &[
            (b'Q', b"no terminator"),
            (b'Q', b"x\0trailing"),
            (b'P', b"s\0q\0\xff\xff"),
            (b'B', b"\0\0\0\x01\0\0\0\x01\xff\xff\xff\xfe"),
            (b'D', b"Xname\0"),
            (b'E', b"p\0\0\0"),
            (b'Q', b"\xc3\x28\0"),
        ];
        for (tag, body) in cases {
            let err = FrontendMessage::decode(Frame {
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
        let err = FrontendMessage::decode(Frame {
            tag: b'?',
            body: Bytes::new(),
        })
        .unwrap_err();
        assert_eq!(
            err,
            CodecError::UnknownTag {
                side: "frontend",
                tag: '?'
            }
        );
    }
}
