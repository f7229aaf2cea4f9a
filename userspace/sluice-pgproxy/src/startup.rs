//! Startup and authentication: from the client's first bytes to the first
//! ReadyForQuery, after which `pipeline.rs` takes over.
//!
//! 1. Probes: SSLRequest is answered `S` and TLS terminated when `[tls]` is
//!    configured (`N` otherwise); GSSENCRequest is answered `N`. A
//!    CancelRequest is routed by its synthetic key and ends the connection.
//! 2. The StartupMessage: newer minor versions and `_pq_.` options are
//!    declined with NegotiateProtocolVersion, as a 3.0 server would.
//! 3. Credential injection only: the workload is admitted by identity (and
//!    token, if its credential has one) before anything is dialled.
//! 4. The database leg: dialled, TLS negotiated as the target says, the
//!    StartupMessage forwarded as protocol 3.0.
//! 5. Authentication: relayed untouched (passthrough; SCRAM-PLUS is struck
//!    from the offered mechanisms, as its channel binding cannot cross a
//!    TLS-terminating proxy), or answered by sluice with the vaulted
//!    credential (injection), the client then told AuthenticationOk.
//! 6. ParameterStatus and friends are relayed until ReadyForQuery, the
//!    server's BackendKeyData replaced by a synthetic one.
//!
//! Steps 1–6 must finish within `proxy.startup_timeout_ms`
//! ([`crate::limits::Limits`]), so a client that connects and stalls, or
//! dribbles its startup packet, cannot hold a session slot. Before
//! anything is dialled, the StartupMessage is checked against the
//! identity's session cap (53300) and the failed-login limits of its
//! source and of its identity and user (28000); a login the database
//! refuses for its credentials (SQLSTATE class 28) counts as a failure.
//! Bytes that are no startup packet at all (garbage, a TLS ClientHello
//! or an HTTP request sent straight to the port, a length over
//! PostgreSQL's own 10,000-byte startup limit) get 08P01 saying so.
use std::net::IpAddr;

use bytes::BytesMut;
use sluice_pgwire::{
    BackendMessage, CodecError, Frame, FrameReader, FrontendMessage, StartupRequest,
    backend::Authentication, startup::PROTOCOL_3_0,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    PgError, Route, SessionConfig, Summary, TargetAuth, cancel::RealBackend, inject, io::Conn,
    pipeline, tls::UpstreamTls,
};

/// SSL/GSS probes a client may send before its StartupMessage.
const MAX_PROBES: usize = 3;

/// Largest startup-family packet accepted (PostgreSQL's own
/// `MAX_STARTUP_PACKET_LENGTH`): a hostile length is refused from the
/// header before anything is buffered for it.
const MAX_STARTUP_PACKET: usize = 10_000;

/// Serve one client whose connection was headed for `route.original`.
/// `dial` opens an upstream connection to the address it is given:
/// `route.original` for a session, or the backend a CancelRequest's key
/// maps to. It is only called once the client's first message shows which.
pub async fn run<F, Fut>(
    client: TcpStream,
    route: Route<'_>,
    config: &SessionConfig,
    dial: F,
) -> Result<Summary, PgError>
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>>,
{
    let mut summary = Summary::default();
    let started = std::time::Instant::now();
    // The identity's place under its session cap, held to the end.
    let slot = config.limits.connections.take(route.identity);
    let timeout = config.limits.startup_timeout;
    let established = tokio::time::timeout(
        timeout,
        establish(
            client,
            &route,
            config,
            dial,
            &mut summary,
            slot.as_ref().err().copied(),
        ),
    )
    .await
    .map_err(|_| {
        PgError::Refused(format!(
            "startup did not complete within {} (proxy.startup_timeout_ms)",
            crate::limits::duration_text(timeout)
        ))
    })
    .and_then(|r| r);
    let ready = match established {
        Ok(Some(ready)) => ready,
        // A cancel request is no session; a client that connected and
        // left without sending a byte (a port probe) says nothing.
        Ok(None) if summary.cancel_routed || summary.user.is_none() => {
            return Ok(summary);
        }
        Err(PgError::ClientGone) if summary.user.is_none() => return Err(PgError::ClientGone),
        // A login that failed or was refused is evidence too (PCI DSS
        // 10.2.1.4): recorded as a session that ended at startup, and so
        // is every attempt that ended in an error (garbage, a stall past
        // the timeout, a limit).
        Ok(None) => {
            let why = match &summary.login_error {
                Some(e) => format!("login refused by the database: {e}"),
                None => "login refused by the database".into(),
            };
            config.record_refused("postgres", &route, &summary, &why);
            return Ok(summary);
        }
        Err(e) => {
            config.record_refused("postgres", &route, &summary, &e.to_string());
            return Err(e);
        }
    };
    let log = config
        .store
        .as_ref()
        .map(|store| store.begin(summary.start_event("postgres", &route)));
    summary.session_id = log.as_ref().map(|l| l.id());
    let result = pipeline::run(
        pipeline::Legs {
            client: ready.client,
            upstream: ready.upstream,
            cbuf: ready.cbuf,
            ubuf: ready.ubuf,
            canceled: ready
                .synthetic
                .and_then(|s| config.cancels.cancel_signal(s)),
        },
        config,
        ready.policy,
        log.as_ref(),
        &mut summary,
    )
    .await;
    if let Some(s) = ready.synthetic {
        config.cancels.unregister(s);
    }
    // The counts, also when the session ended with an error.
    let counts = summary.clone();
    let result = match result {
        // A client that vanishes mid-session (killed, network loss) ends it
        // as ordinarily as one that says Terminate; the summary still counts.
        Err(PgError::Io {
            leg: "client",
            source,
        }) => {
            summary.client_lost = Some(source.to_string());
            Ok(summary)
        }
        other => other.map(|()| summary),
    };
    if let Some(log) = &log {
        let reason = match &result {
            Ok(s) => match &s.client_lost {
                Some(e) => format!("client connection lost: {e}"),
                None => s.end_reason.unwrap_or("ended").to_owned(),
            },
            Err(e) => e.to_string(),
        };
        log.record(&counts.end_event(reason, started.elapsed()));
    }
    result
}

/// A session past startup, ready for queries.
struct Ready {
    client: Conn,
    upstream: Conn,
    cbuf: BytesMut,
    ubuf: BytesMut,
    synthetic: Option<(i32, i32)>,
    /// The session's policy, made once its user and database are known.
    policy: Box<dyn crate::SessionPolicy>,
}

/// Steps 1–6; None when the connection ended normally before a session
/// (a routed cancel request, or an authentication failure the client was
/// told about by the database).
async fn establish<F, Fut>(
    client: TcpStream,
    route: &Route<'_>,
    config: &SessionConfig,
    dial: F,
    summary: &mut Summary,
    over_cap: Option<u32>,
) -> Result<Option<Ready>, PgError>
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>>,
{
    let reader = FrameReader::new(config.max_message);
    let startup_reader = FrameReader::new(config.max_message.min(MAX_STARTUP_PACKET));
    let mut cbuf = BytesMut::with_capacity(16 * 1024);
    let mut client = Conn::Plain(client);

    // 1. Probes.
    let mut startup = None;
    for _ in 0..MAX_PROBES {
        let frame = match read_frame(&mut client, &mut cbuf, &startup_reader, false, "client").await
        {
            Ok(Some(frame)) => frame,
            Ok(None) => return Err(PgError::ClientGone),
            Err(PgError::Protocol { leg, source }) => {
                let hint = crate::limits::confusion_hint(&cbuf);
                refuse(
                    &mut client,
                    "08P01",
                    &format!("sluice: invalid startup packet: {source}{hint}"),
                )
                .await;
                return Err(PgError::Protocol { leg, source });
            }
            Err(e) => return Err(e),
        };
        let frame_start: Vec<u8> = frame.body.iter().take(8).copied().collect();
        match StartupRequest::decode(frame) {
            Err(e) => {
                let hint = crate::limits::confusion_hint(&frame_start);
                refuse(
                    &mut client,
                    "08P01",
                    &format!("sluice: invalid startup packet: {e}{hint}"),
                )
                .await;
                return Err(PgError::Protocol {
                    leg: "client",
                    source: e,
                });
            }
            Ok(StartupRequest::SslRequest) => {
                client = accept_tls(client, &cbuf, config).await?;
            }
            Ok(StartupRequest::GssEncRequest) => write(&mut client, b"N", "client").await?,
            Ok(StartupRequest::Cancel { pid, key }) => {
                summary.cancel_routed = route_cancel(config, pid, key, dial).await;
                return Ok(None);
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
    summary.client_tls = client.is_tls();
    if !client.is_tls() && config.client_tls.as_ref().is_some_and(|t| t.require) {
        return Err(refused(
            &mut client,
            "28000",
            "sluice: this gateway only accepts TLS connections: connect with sslmode=require or sslmode=verify-full".into(),
        )
        .await);
    }

    // 2. The StartupMessage.
    let (mut params, declined): (Vec<_>, Vec<_>) = params
        .into_iter()
        .partition(|(k, _)| !k.starts_with("_pq_."));
    let param = |params: &[(String, String)], name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    summary.user = param(&params, "user");
    summary.database = param(&params, "database").or_else(|| summary.user.clone());
    summary.application = param(&params, "application_name");
    let user = summary.user.clone().unwrap_or_default();
    if let Some(cap) = over_cap {
        let message = format!(
            "sluice: too many connections for identity \"{}\" (proxy.max_connections_per_identity = {cap})",
            route.identity
        );
        tracing::warn!(
            event = "identity_cap",
            identity = route.identity,
            cap,
            "session refused: the identity is at its cap"
        );
        return Err(refused(&mut client, "53300", message).await);
    }
    let source = &route.workload;
    // The login holds its place in the failed-login budget until the
    // verdict (parallel guesses cannot all pass before one is counted).
    let attempt = match config
        .limits
        .logins
        .attempt(source, route.identity, &user)
        .await
    {
        Ok(a) => a,
        Err(blocked) => {
            tracing::warn!(event = "login_rate_limited", client = %source.addr, uid = ?source.uid, identity = route.identity, user = %user, "login refused: too many failed logins");
            return Err(refused(&mut client, "28000", blocked.to_string()).await);
        }
    };
    if version != PROTOCOL_3_0 || !declined.is_empty() {
        let mut n = BytesMut::new();
        BackendMessage::NegotiateProtocolVersion {
            newest_version: PROTOCOL_3_0,
            unrecognized: declined.into_iter().map(|(k, _)| k).collect(),
        }
        .encode(&mut n);
        write(&mut client, &n, "client").await?;
    }

    // 3. Admission (credential injection).
    let credential = match &route.target.auth {
        TargetAuth::Passthrough => None,
        TargetAuth::Inject(secrets) => {
            match inject::admit(
                &mut client,
                &mut cbuf,
                &reader,
                secrets,
                &route.target.name,
                &user,
                &route.workload,
            )
            .await?
            {
                Ok(cred) => {
                    // The database sees the vaulted role; name the database
                    // explicitly so it does not default to that role's name.
                    params.retain(|(k, _)| k != "user" && k != "database");
                    params.push(("user".into(), cred.upstream_user().to_owned()));
                    params.push((
                        "database".into(),
                        summary.database.clone().unwrap_or_default(),
                    ));
                    summary.upstream_user = Some(cred.upstream_user().to_owned());
                    Some(cred)
                }
                Err(r) => {
                    if r.sqlstate.starts_with("28") {
                        attempt.failed();
                    }
                    return Err(refused(&mut client, r.sqlstate, r.message).await);
                }
            }
        }
    };

    // 4. The database leg.
    let tcp = match dial(route.original).await {
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
    let upstream_addr = tcp.peer_addr().map_err(|source| PgError::Io {
        leg: "upstream",
        source,
    })?;
    let mut upstream = match upstream_tls(tcp, &route.target.tls, route.original.ip()).await {
        Ok(u) => u,
        Err(why) => {
            let message = format!(
                "sluice: TLS to the database failed (upstream_tls = {}): {why}",
                route.target.tls.mode()
            );
            return Err(refused(&mut client, "08006", message).await);
        }
    };
    summary.upstream_tls = upstream.is_tls();
    let mut out = BytesMut::new();
    StartupRequest::Startup {
        version: PROTOCOL_3_0,
        params,
    }
    .encode(&mut out);
    write(&mut upstream, &out, "upstream").await?;

    // 5. Authentication by sluice (injection); passthrough is relayed below.
    let mut ubuf = BytesMut::with_capacity(16 * 1024);
    if let Some(cred) = credential {
        if let Err(e) = inject::login(&mut upstream, &mut ubuf, &reader, cred).await {
            tracing::warn!(
                event = "credential_rejected",
                target = %route.target.name,
                upstream_user = cred.upstream_user(),
                error = %e,
                "logging in with the vaulted credential failed"
            );
            let message = format!(
                "sluice: could not log in to the database for user \"{}\"; the operator can find why in sluice's log",
                cred.user
            );
            return Err(refused(&mut client, "28000", message).await);
        }
        tracing::info!(
            event = "credential_injected",
            target = %route.target.name,
            upstream_user = cred.upstream_user(),
            "logged in with the vaulted credential"
        );
        let mut ok = BytesMut::new();
        BackendMessage::Authentication(Authentication::Ok).encode(&mut ok);
        write(&mut client, &ok, "client").await?;
    }

    // 5–6. Relay until ReadyForQuery. Bounded: an authentication exchange
    // is a handful of round trips, then a burst of ParameterStatus.
    let relay_auth = credential.is_none();
    let mut synthetic = None;
    // The database offered SCRAM-SHA-256-PLUS (it can bind to its TLS link).
    let mut offered_plus = false;
    for _ in 0..256 {
        let msg = read_backend(&mut upstream, &mut ubuf, &reader).await?;
        let mut out = BytesMut::new();
        if let BackendMessage::ReadyForQuery(_) = &msg {
            // The session's policy, and what it asks to run before the
            // client's first statement (the client waits for this
            // ReadyForQuery meanwhile).
            let mut policy = config.policy.session(&crate::SessionInfo {
                protocol: "postgres",
                identity: route.identity,
                groups: route.groups,
                target: &route.target.name,
                user: summary.user.as_deref().unwrap_or(""),
                database: summary.database.as_deref().unwrap_or(""),
            });
            if let Some(query) = policy.startup_query() {
                let rows = startup_query(&mut upstream, &mut ubuf, &reader, &query).await?;
                policy.startup_rows(rows);
            }
            msg.encode(&mut out);
            write(&mut client, &out, "client").await?;
            return Ok(Some(Ready {
                client,
                upstream,
                cbuf,
                ubuf,
                synthetic,
                policy,
            }));
        }
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
            BackendMessage::Authentication(_) if !relay_auth => {
                return Err(PgError::Protocol {
                    leg: "upstream",
                    source: CodecError::malformed(
                        "startup",
                        "authentication request after AuthenticationOk",
                    ),
                });
            }
            BackendMessage::Authentication(Authentication::Sasl(mechs)) => {
                offered_plus = mechs.iter().any(|m| m.ends_with("-PLUS"));
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
                if offered_plus && wants_channel_binding(&frame.body) {
                    return Err(refused(&mut client, "28000", CHANNEL_BINDING.into()).await);
                }
                let mut out = BytesMut::new();
                FrontendMessage::AuthResponse(frame.body).encode(&mut out);
                write(&mut upstream, &out, "upstream").await?;
            }
            BackendMessage::ErrorResponse(fields) => {
                // Authentication failed or the server refused the session;
                // the client has the server's own error. Credentials it
                // refused (class 28) count against the login limits.
                if let Some(s) = synthetic {
                    config.cancels.unregister(s);
                }
                let field = |code: u8| {
                    fields
                        .iter()
                        .find(|(c, _)| *c == code)
                        .map_or("", |(_, v)| v.as_str())
                };
                let sqlstate = field(b'C');
                if sqlstate.starts_with("28") {
                    attempt.failed();
                }
                summary.login_error = Some(format!("{sqlstate} {}", field(b'M')));
                return Ok(None);
            }
            _ => {}
        }
    }
    Err(PgError::Protocol {
        leg: "upstream",
        source: CodecError::malformed("startup", "no ReadyForQuery after 256 messages"),
    })
}

/// The database's next message; its closing the connection is an error.
async fn read_backend(
    upstream: &mut Conn,
    ubuf: &mut BytesMut,
    reader: &FrameReader,
) -> Result<BackendMessage, PgError> {
    let Some(frame) = read_frame(upstream, ubuf, reader, true, "upstream").await? else {
        return Err(PgError::Io {
            leg: "upstream",
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    };
    BackendMessage::decode(frame).map_err(|source| PgError::Protocol {
        leg: "upstream",
        source,
    })
}

/// Run sluice's own query on a ready connection and collect its rows (text
/// values) up to ReadyForQuery. A database error is returned as its
/// message; only I/O and protocol failures end the session. Bounded: at
/// most 100,000 messages.
async fn startup_query(
    upstream: &mut Conn,
    ubuf: &mut BytesMut,
    reader: &FrameReader,
    query: &str,
) -> Result<Result<Vec<Vec<Option<String>>>, String>, PgError> {
    let mut out = BytesMut::new();
    FrontendMessage::Query(query.to_string()).encode(&mut out);
    write(upstream, &out, "upstream").await?;
    let mut rows = Vec::new();
    let mut error = None;
    for _ in 0..100_000 {
        match read_backend(upstream, ubuf, reader).await? {
            BackendMessage::DataRow(values) => rows.push(
                values
                    .into_iter()
                    .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                    .collect(),
            ),
            BackendMessage::ErrorResponse(fields) => {
                error = Some(
                    fields
                        .iter()
                        .find(|(c, _)| *c == b'M')
                        .map(|(_, m)| m.clone())
                        .unwrap_or_default(),
                );
            }
            BackendMessage::ReadyForQuery(_) => {
                return Ok(match error {
                    Some(e) => Err(e),
                    None => Ok(rows),
                });
            }
            _ => {}
        }
    }
    Err(PgError::Protocol {
        leg: "upstream",
        source: CodecError::malformed("startup", "no ReadyForQuery after sluice's own query"),
    })
}

/// Answer an SSLRequest: `S` and a TLS handshake when the client leg has a
/// certificate, `N` otherwise.
async fn accept_tls(
    mut client: Conn,
    cbuf: &BytesMut,
    config: &SessionConfig,
) -> Result<Conn, PgError> {
    if !cbuf.is_empty() {
        // Bytes sent before the handshake would be read as if they had come
        // over TLS (CVE-2021-23214): refuse, as PostgreSQL does.
        refuse(
            &mut client,
            "08P01",
            "sluice: received unencrypted data after SSL request",
        )
        .await;
        return Err(PgError::Protocol {
            leg: "client",
            source: CodecError::malformed("SSLRequest", "data sent before the TLS handshake"),
        });
    }
    let (tls, mut tcp) = match (&config.client_tls, client) {
        (Some(tls), Conn::Plain(tcp)) => (tls, tcp),
        (_, mut other) => {
            write(&mut other, b"N", "client").await?;
            return Ok(other);
        }
    };
    write(&mut tcp, b"S", "client").await?;
    match tls.acceptor.accept(tcp).await {
        Ok(s) => Ok(Conn::Accepted(Box::new(s))),
        Err(source) => Err(PgError::Tls {
            leg: "client",
            source,
        }),
    }
}

/// Negotiate TLS on a fresh database connection as `tls` says; the error
/// says why in words for the client.
async fn upstream_tls(mut tcp: TcpStream, tls: &UpstreamTls, ip: IpAddr) -> Result<Conn, String> {
    let Some((connector, name)) = tls.connector(ip) else {
        return Ok(Conn::Plain(tcp));
    };
    let mut request = BytesMut::new();
    StartupRequest::SslRequest.encode(&mut request);
    let mut answer = [0u8; 1];
    let exchanged = match tcp.write_all(&request).await {
        Ok(()) => tcp.read_exact(&mut answer).await.map(|_| ()),
        Err(e) => Err(e),
    };
    exchanged.map_err(|e| format!("SSLRequest: {e}"))?;
    match answer[0] {
        b'S' => connector
            .connect(name, tcp)
            .await
            .map(|s| Conn::Dialled(Box::new(s)))
            .map_err(|e| e.to_string()),
        b'N' if !tls.required() => Ok(Conn::Plain(tcp)),
        b'N' => Err("the database does not accept TLS".into()),
        other => Err(format!(
            "unexpected answer {:?} to SSLRequest",
            other as char
        )),
    }
}

/// Why a channel-binding client cannot log in through sluice in passthrough.
const CHANNEL_BINDING: &str = "sluice: SCRAM channel binding cannot cross sluice's TLS termination \
     (the database binds to its TLS link with sluice, the client to its link with sluice). \
     Connect with channel_binding=disable, or have the operator set auth = \"inject\" for this target";

/// A SASLInitialResponse whose GS2 flag says "I support channel binding
/// and think the server does not" (`y`): a database that does support it
/// refuses that as a downgrade, so sluice says why first.
fn wants_channel_binding(body: &bytes::Bytes) -> bool {
    FrontendMessage::sasl_initial(body).is_ok_and(|s| {
        s.mechanism == "SCRAM-SHA-256" && s.data.is_some_and(|d| d.first() == Some(&b'y'))
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

/// Write and flush.
pub(crate) async fn write(
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

/// [`refuse`], returning the error that ends the session.
async fn refused(
    client: &mut (impl AsyncWrite + Unpin),
    sqlstate: &str,
    message: String,
) -> PgError {
    refuse(client, sqlstate, &message).await;
    PgError::Refused(message)
}
