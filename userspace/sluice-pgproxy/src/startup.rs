//! Startup and authentication: from the client's first bytes to the first
//! ReadyForQuery, after which `pipeline.rs` takes over.
//!
//! SSLRequest and GSSENCRequest are answered `N` (TLS termination is a later
//! milestone, so clients with `sslmode=prefer` continue in plain text). A
//! CancelRequest is routed by its synthetic key. A StartupMessage is
//! forwarded as protocol 3.0; `_pq_.` options and newer minor versions are
//! declined with NegotiateProtocolVersion, as a 3.0 server would. The
//! authentication exchange is relayed untouched (passthrough auth), and the
//! server's BackendKeyData is replaced by a synthetic one.
use bytes::BytesMut;
use sluice_pgwire::{
    BackendMessage, CodecError, Frame, FrameReader, FrontendMessage, StartupRequest,
    backend::Authentication, startup::PROTOCOL_3_0,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{PgError, SessionConfig, Summary, cancel::RealBackend, io::Conn, pipeline};

/// SSL/GSS probes a client may send before its StartupMessage.
const MAX_PROBES: usize = 3;

/// Serve one client whose connection was headed for `original`. `dial`
/// opens an upstream connection to the address it is given: `original` for
/// a session, or the backend a CancelRequest's key maps to. It is only
/// called once the client's first message shows which.
pub async fn run<F, Fut>(
    mut client: TcpStream,
    original: std::net::SocketAddr,
    config: &SessionConfig,
    dial: F,
) -> Result<Summary, PgError>
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>>,
{
    let reader = FrameReader::new(config.max_message);
    let mut cbuf = BytesMut::with_capacity(16 * 1024);
    let mut summary = Summary::default();
    let mut startup = None;
    for _ in 0..MAX_PROBES {
        let Some(frame) = read_frame(&mut client, &mut cbuf, &reader, false, "client").await?
        else {
            return Err(PgError::ClientGone);
        };
        match StartupRequest::decode(frame) {
            Err(e) => {
                refuse(
                    &mut client,
                    "08P01",
                    &format!("sluice: invalid startup packet: {e}"),
                )
                .await;
                return Err(PgError::Protocol {
                    leg: "client",
                    source: e,
                });
            }
            Ok(StartupRequest::SslRequest | StartupRequest::GssEncRequest) => {
                write(&mut client, b"N", "client").await?;
            }
            Ok(StartupRequest::Cancel { pid, key }) => {
                summary.cancel_routed = route_cancel(config, pid, key, dial).await;
                return Ok(summary);
            }
            Ok(StartupRequest::Startup { version, params }) => {
                startup = Some((version, params));
                break;
            }
        }
    }
    let Some((version, params)) = startup else {
        refuse(&mut client, "08P01", "sluice: expected a StartupMessage").await;
        return Err(PgError::Protocol {
            leg: "client",
            source: CodecError::malformed("startup", "too many SSL/GSS requests"),
        });
    };
    let (params, declined): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(k, _)| !k.starts_with("_pq_."));
    summary.user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone());
    summary.database = params
        .iter()
        .find(|(k, _)| k == "database")
        .map(|(_, v)| v.clone())
        .or_else(|| summary.user.clone());

    let mut upstream = match dial(original).await {
        Ok(u) => u,
        Err(e) => {
            refuse(
                &mut client,
                "08006",
                &format!("sluice: the database is unreachable: {e}"),
            )
            .await;
            return Err(PgError::Io {
                leg: "upstream",
                source: e,
            });
        }
    };
    let mut out = BytesMut::new();
    StartupRequest::Startup {
        version: PROTOCOL_3_0,
        params,
    }
    .encode(&mut out);
    write(&mut upstream, &out, "upstream").await?;
    if version != PROTOCOL_3_0 || !declined.is_empty() {
        let mut n = BytesMut::new();
        BackendMessage::NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized: declined.into_iter().map(|(k, _)| k).collect(),
        }
        .encode(&mut n);
        write(&mut client, &n, "client").await?;
    }

    let mut ubuf = BytesMut::with_capacity(16 * 1024);
    let upstream_addr = upstream.peer_addr().map_err(|source| PgError::Io {
        leg: "upstream",
        source,
    })?;
    let mut synthetic = None;
    // Bounded: an authentication exchange is a handful of round trips, and
    // a post-auth burst of ParameterStatus messages.
    for _ in 0..256 {
        let Some(frame) = read_frame(&mut upstream, &mut ubuf, &reader, true, "upstream").await?
        else {
            return Err(PgError::Io {
                leg: "upstream",
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        };
        let msg = BackendMessage::decode(frame).map_err(|source| PgError::Protocol {
            leg: "upstream",
            source,
        })?;
        let mut out = BytesMut::new();
        match &msg {
            BackendMessage::BackendKeyData { pid, key } => {
                let s = config.cancels.register(RealBackend {
                    addr: upstream_addr,
                    pid: *pid,
                    key: *key,
                });
                synthetic = Some(s);
                BackendMessage::BackendKeyData { pid: s.0, key: s.1 }.encode(&mut out);
            }
            BackendMessage::Authentication(Authentication::Sasl(mechs)) => {
                // Channel binding binds to *this* TLS channel; sluice's
                // client leg is a different one, so -PLUS cannot work.
                let mechs: Vec<String> = mechs
                    .iter()
                    .filter(|m| !m.ends_with("-PLUS"))
                    .cloned()
                    .collect();
                BackendMessage::Authentication(Authentication::Sasl(mechs)).encode(&mut out);
            }
            other => other.encode(&mut out),
        }
        write(&mut client, &out, "client").await?;
        match msg {
            BackendMessage::Authentication(a) if needs_response(&a) => {
                let Some(frame) =
                    read_frame(&mut client, &mut cbuf, &reader, true, "client").await?
                else {
                    return Err(PgError::ClientGone);
                };
                if frame.tag != b'p' {
                    refuse(
                        &mut client,
                        "08P01",
                        "sluice: expected an authentication response",
                    )
                    .await;
                    return Err(PgError::Protocol {
                        leg: "client",
                        source: CodecError::UnknownTag {
                            side: "frontend",
                            tag: frame.tag as char,
                        },
                    });
                }
                let mut out = BytesMut::new();
                FrontendMessage::AuthResponse(frame.body).encode(&mut out);
                write(&mut upstream, &out, "upstream").await?;
            }
            BackendMessage::ErrorResponse(_) => {
                // Authentication failed or the server refused the session;
                // the client has the server's own error.
                return Ok(summary);
            }
            BackendMessage::ReadyForQuery(_) => {
                let result = pipeline::run(
                    Conn::Plain(client),
                    Conn::Plain(upstream),
                    cbuf,
                    ubuf,
                    config,
                    &mut summary,
                )
                .await;
                if let Some(s) = synthetic {
                    config.cancels.unregister(s);
                }
                return result.map(|()| summary);
            }
            _ => {}
        }
    }
    Err(PgError::Protocol {
        leg: "upstream",
        source: CodecError::malformed("startup", "no ReadyForQuery after 256 messages"),
    })
}

fn needs_response(a: &Authentication) -> bool {
    !matches!(a, Authentication::Ok | Authentication::SaslFinal(_))
}

async fn route_cancel<F, Fut>(config: &SessionConfig, pid: i32, key: i32, dial: F) -> bool
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>>,
{
    let Some(real) = config.cancels.lookup(pid, key) else {
        tracing::info!(pid, "cancel request with an unknown key: dropped");
        return false;
    };
    match dial(real.addr).await {
        Ok(mut up) => {
            let mut out = BytesMut::new();
            StartupRequest::Cancel {
                pid: real.pid,
                key: real.key,
            }
            .encode(&mut out);
            let ok = up.write_all(&out).await.is_ok();
            tracing::info!(backend_pid = real.pid, "cancel request routed");
            ok
        }
        Err(e) => {
            tracing::warn!(error = %e, "cancel request: database unreachable");
            false
        }
    }
}

/// Read until one frame is complete; None on a clean EOF before any byte of it.
pub(crate) async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    reader: &FrameReader,
    tagged: bool,
    leg: &'static str,
) -> Result<Option<Frame>, PgError> {
    loop {
        let next = if tagged {
            reader.next_tagged(buf)
        } else {
            reader.next_startup(buf)
        };
        match next {
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
            Err(source) => return Err(PgError::Protocol { leg, source }),
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|source| PgError::Io { leg, source })?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(PgError::Io {
                    leg,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                })
            };
        }
    }
}

async fn write(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    leg: &'static str,
) -> Result<(), PgError> {
    let written = match stream.write_all(bytes).await {
        Ok(()) => stream.flush().await,
        Err(e) => Err(e),
    };
    written.map_err(|source| PgError::Io { leg, source })
}

/// Best effort: tell the client why, then the caller closes.
async fn refuse(client: &mut (impl AsyncWrite + Unpin), sqlstate: &str, message: &str) {
    let mut out = BytesMut::new();
    BackendMessage::ErrorResponse(vec![
        (b'S', "FATAL".into()),
        (b'V', "FATAL".into()),
        (b'C', sqlstate.into()),
        (b'M', message.into()),
    ])
    .encode(&mut out);
    let _ = write(client, &out, "client").await;
}
