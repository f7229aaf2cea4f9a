//! The handshake: from the database's greeting to the first command.
//!
//! 1. The database leg is dialled first (in MySQL the server speaks first).
//!    A database that cannot be reached is reported to the client as an
//!    ERR packet in place of the greeting, as a server refusing a
//!    connection would.
//! 2. The greeting is relayed with the capabilities sluice cannot honour
//!    struck out: compression (the session would be opaque), query
//!    attributes, optional or cached result metadata (rows could not be
//!    told apart), MariaDB's progress reports, bulk and multi commands.
//!    SSL is offered when sluice has a client-leg certificate.
//! 3. The client's SSLRequest is answered with a TLS handshake; its
//!    HandshakeResponse is checked (protocol 4.1, no compression, TLS if
//!    required) and forwarded with `CLIENT_LOCAL_FILES` cleared (the
//!    database then refuses `LOAD DATA LOCAL` itself, behind the policy's
//!    own refusal), after sluice's own SSLRequest and TLS handshake when
//!    the target wants TLS.
//! 4. Authentication is relayed both ways until the database says OK or
//!    ERR — any plugin (native password, caching_sha2 fast and full,
//!    ed25519), as sluice only moves the packets — with sequence ids
//!    renumbered, since one leg may have spent an id on TLS and the other
//!    not.
//!
//! With `auth = "inject"` sluice runs both handshakes itself
//! (`inject.rs`): the client gets sluice's own greeting (same capabilities,
//! sluice's nonce, `mysql_native_password`), is admitted by network, uid
//! and token once its HandshakeResponse is read (before the database leg's
//! TLS), and sluice answers the database as the credential's upstream
//! user, then relays the database's OK to the client.
//!
//! Steps 1–4 must finish within `proxy.startup_timeout_ms`
//! ([`sluice_pgproxy::limits::Limits`]). Before the database is dialled,
//! the login takes its place in its source's failed-login budget
//! (`LoginLimiter::attempt_source`): a source past its limit gets ERR 1129
//! in place of the greeting, as a server refusing the connection would,
//! and with `f` recent failures at most `limit − f` handshakes of one
//! source hold a database connection at once (more wait, undialled), so
//! silent clients cannot pile up database connections. An identity at its
//! session cap gets ERR 1203 in place of the greeting; once the
//! HandshakeResponse names the user, the identity and user's budget is
//! taken too (`Attempt::identify`, ERR 1129), before anything of the login
//! reaches the database. A
//! login the database refuses with 1045 or 1698 counts as a failure. A
//! first packet that is no handshake (garbage, a TLS ClientHello or an
//! HTTP request sent straight to the port) gets ERR 1156 saying so.

use bytes::BytesMut;
use sluice_config::secrets::{Credential, Secrets};
use sluice_mywire::{
    Packet, caps,
    handshake::{Greeting, HandshakeResponse, SslRequest, is_ssl_request},
    packet,
    response::ErrPacket,
};
use sluice_pgproxy::{Route, SessionConfig, SessionInfo, Summary, TargetAuth, io::Conn};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{KillRegistry, MyError, codes, inject, session};

/// Largest handshake packet accepted from either side.
const MAX_HANDSHAKE: usize = 64 * 1024;

/// Authentication round trips before sluice gives up on a login.
const MAX_AUTH_STEPS: usize = 16;

/// Capabilities sluice never lets a session negotiate (see the module doc).
const STRUCK: u64 = caps::COMPRESS
    | caps::ZSTD_COMPRESSION
    | caps::QUERY_ATTRIBUTES
    | caps::OPTIONAL_RESULTSET_METADATA
    | caps::MULTI_FACTOR_AUTH
    | caps::MARIADB_PROGRESS
    | caps::MARIADB_COM_MULTI
    | caps::MARIADB_STMT_BULK_OPERATIONS
    | caps::MARIADB_EXTENDED_METADATA
    | caps::MARIADB_CACHE_METADATA;

/// Handshake collation ids of character sets whose multi-byte characters
/// may end in 0x5c (`\`) or 0x27 (`'`): big5, sjis, gbk, cp932, gb18030.
/// The policy reads statements as UTF-8-compatible text; with these a
/// statement could mean something else to the database.
const UNSAFE_CHARSETS: [u8; 11] = [1, 84, 13, 88, 28, 87, 95, 96, 248, 249, 250];

/// Whether a collation id (handshake or `COM_CHANGE_USER`) is one of
/// [`UNSAFE_CHARSETS`].
pub(crate) fn unsafe_charset(collation: u16) -> bool {
    u8::try_from(collation).is_ok_and(|c| UNSAFE_CHARSETS.contains(&c))
}

/// Serve one client whose connection was headed for `route.original`.
/// `dial` opens the database connection.
pub async fn run<F, Fut>(
    client: TcpStream,
    route: Route<'_>,
    config: &SessionConfig,
    kills: &KillRegistry,
    dial: F,
) -> Result<Summary, MyError>
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
        MyError::Refused(format!(
            "handshake did not complete within {} (proxy.startup_timeout_ms)",
            sluice_pgproxy::limits::duration_text(timeout)
        ))
    })
    .and_then(|r| r);
    let ready = match established {
        Ok(Some(ready)) => ready,
        // A client that connected and left without a byte (a port probe)
        // says nothing; every other attempt that ended early is recorded
        // (PCI DSS 10.2.1.4), with why.
        Err(MyError::ClientGone) => return Err(MyError::ClientGone),
        Ok(None) => {
            let why = match &summary.login_error {
                Some(e) => format!("login refused by the database: {e}"),
                None => "login refused by the database".into(),
            };
            config.record_refused("mysql", &route, &summary, &why);
            return Ok(summary);
        }
        Err(e) => {
            config.record_refused("mysql", &route, &summary, &e.to_string());
            return Err(e);
        }
    };
    let log = config
        .store
        .as_ref()
        .map(|store| store.begin(summary.start_event("mysql", &route)));
    summary.session_id = log.as_ref().map(|l| l.id());
    let registered = kills.register(route.original, ready.thread, route.identity);
    let result = session::run(
        ready,
        session::Context {
            config,
            log: log.as_ref(),
            kills,
            route: &route,
            killed: registered.signal(),
        },
        &mut summary,
    )
    .await;
    drop(registered);
    let result = match result {
        Err(MyError::Io {
            leg: "client",
            source,
        }) => {
            summary.client_lost = Some(source.to_string());
            Ok(())
        }
        other => other,
    };
    if let Some(log) = &log {
        let reason = match &result {
            Ok(()) => match &summary.client_lost {
                Some(e) => format!("client connection lost: {e}"),
                None => summary.end_reason.unwrap_or("ended").to_owned(),
            },
            Err(e) => e.to_string(),
        };
        log.record(&summary.end_event(reason, started.elapsed()));
    }
    result.map(|()| summary)
}

/// A session past authentication, ready for commands.
pub(crate) struct Ready {
    pub(crate) client: Conn,
    pub(crate) upstream: Conn,
    pub(crate) cbuf: BytesMut,
    pub(crate) ubuf: BytesMut,
    /// The capabilities the client and the database agreed on.
    pub(crate) caps: u64,
    /// The database thread (connection id) the session holds.
    pub(crate) thread: u32,
    pub(crate) policy: Box<dyn sluice_pgproxy::SessionPolicy>,
}

/// Steps 1–4; None when the login ended normally without a session (the
/// database refused it, and the client was told).
async fn establish<F, Fut>(
    client: TcpStream,
    route: &Route<'_>,
    config: &SessionConfig,
    dial: F,
    summary: &mut Summary,
    over_cap: Option<u32>,
) -> Result<Option<Ready>, MyError>
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>>,
{
    let mut client = Conn::Plain(client);
    let secrets = match &route.target.auth {
        TargetAuth::Passthrough => None,
        TargetAuth::Inject(secrets) => Some(secrets.as_ref()),
    };
    // 0. Limits, before anything is dialled: the answer takes the
    // greeting's place (sequence id 0), as a server's refusal does.
    let source = &route.workload;
    let logins = &config.limits.logins;
    // The login holds its place in the source's failed-login budget from
    // before the dial until the verdict: parallel guesses cannot all pass
    // before one is counted, and a source holds at most the limit's worth
    // of database connections in handshakes (more wait here, undialled).
    let mut attempt = match logins.attempt_source(source).await {
        Ok(a) => a,
        Err(blocked) => {
            tracing::warn!(event = "login_rate_limited", client = %source.addr, uid = ?source.uid, identity = route.identity, "connection refused: too many failed logins");
            return Err(refused_for_greeting(
                &mut client,
                codes::HOST_BLOCKED,
                blocked.to_string(),
            )
            .await);
        }
    };
    if let Some(cap) = over_cap {
        tracing::warn!(
            event = "identity_cap",
            identity = route.identity,
            cap,
            "session refused: the identity is at its cap"
        );
        let message = format!(
            "sluice: too many connections for identity \"{}\" (proxy.max_connections_per_identity = {cap})",
            route.identity
        );
        return Err(
            refused_for_greeting(&mut client, codes::TOO_MANY_USER_CONNECTIONS, message).await,
        );
    }
    // 1. The database first.
    let tcp = match dial(route.original).await {
        Ok(tcp) => tcp,
        Err(e) => {
            return Err(refused(
                &mut client,
                0,
                codes::UNREACHABLE,
                "08S01",
                format!("sluice: cannot reach the database {}: {e}", route.original),
            )
            .await);
        }
    };
    let mut upstream = Conn::Plain(tcp);
    let (mut cbuf, mut ubuf) = (BytesMut::with_capacity(8192), BytesMut::with_capacity(8192));
    let greeting_packet = read(&mut upstream, &mut ubuf, MAX_HANDSHAKE, "upstream").await?;
    if sluice_mywire::response::is_err(&greeting_packet.payload) {
        // Too many connections, host blocked: the client hears it as is.
        write(&mut client, &greeting_packet.raw, "client").await?;
        let why = ErrPacket::parse(&greeting_packet.payload)
            .map(|e| e.message)
            .unwrap_or_else(|e| e.to_string());
        return Err(MyError::Refused(format!(
            "the database refused the connection: {why}"
        )));
    }
    let greeting =
        Greeting::parse(&greeting_packet.payload).map_err(|source| MyError::Protocol {
            leg: "upstream",
            source,
        })?;
    let thread = greeting.connection_id;

    // 2. What the client is offered: the database's greeting, or with
    // injection sluice's own (its nonce, the same capabilities).
    let mut offered = greeting.capabilities & !STRUCK & !caps::SSL;
    if config.client_tls.is_some() {
        offered |= caps::SSL;
    }
    let nonce = match secrets {
        Some(_) => Some(inject::nonce().ok_or_else(|| {
            MyError::Refused("the system's random source failed (greeting nonce)".into())
        })?),
        None => None,
    };
    let to_client = match &nonce {
        Some(nonce) => inject::greeting(&greeting, offered, nonce),
        None => Greeting {
            capabilities: offered,
            ..greeting.clone()
        },
    };
    offered = to_client.capabilities;
    send(&mut client, 0, &to_client.encode(), "client").await?;

    // 3. The client's answer, over TLS if it asks.
    // Read exactly one packet: a client that asks for TLS starts its
    // handshake right behind the request, without waiting for an answer,
    // and those bytes must stay in the socket for the TLS acceptor.
    let mut first = match read_exact_packet(&mut client, MAX_HANDSHAKE, "client").await {
        Ok(p) => p,
        Err(MyError::Protocol { leg, source }) => {
            let message = format!("sluice: invalid handshake packet: {source}");
            let _ = send(
                &mut client,
                2,
                &ErrPacket::new(codes::MALFORMED, "08S01", message).encode(),
                "client",
            )
            .await;
            return Err(MyError::Protocol { leg, source });
        }
        Err(e) => return Err(e),
    };
    if is_ssl_request(&first.payload) {
        let Some(tls) = &config.client_tls else {
            return Err(refused(
                &mut client,
                first.seq.wrapping_add(1),
                codes::NOT_SUPPORTED,
                "08004",
                "sluice: TLS was not offered on this connection".into(),
            )
            .await);
        };
        let Conn::Plain(tcp) = client else {
            return Err(MyError::Refused("TLS requested twice".into()));
        };
        client = match tls.acceptor.accept(tcp).await {
            Ok(s) => Conn::Accepted(Box::new(s)),
            Err(source) => {
                return Err(MyError::Tls {
                    leg: "client",
                    source,
                });
            }
        };
        first = read(&mut client, &mut cbuf, MAX_HANDSHAKE, "client").await?;
    } else if config.client_tls.as_ref().is_some_and(|t| t.require) {
        return Err(refused(
            &mut client,
            first.seq.wrapping_add(1),
            codes::ACCESS_DENIED,
            "08004",
            "sluice: this proxy requires TLS; connect with --ssl (or ssl_mode=REQUIRED)".into(),
        )
        .await);
    }
    summary.client_tls = client.is_tls();
    let client_seq = first.seq;
    let response = match HandshakeResponse::parse(&first.payload) {
        Ok(r) => r,
        Err(e) => {
            return Err(refused(
                &mut client,
                client_seq.wrapping_add(1),
                codes::MALFORMED,
                "08S01",
                format!("sluice: invalid handshake response: {e}"),
            )
            .await);
        }
    };
    summary.user = Some(String::from_utf8_lossy(&response.user).into_owned());
    summary.database = response
        .database
        .as_ref()
        .map(|d| String::from_utf8_lossy(d).into_owned());
    summary.application = response
        .attributes
        .iter()
        .find(|(k, _)| k.as_slice() == b"program_name")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    if unsafe_charset(response.charset.into()) {
        return Err(refused(
            &mut client,
            client_seq.wrapping_add(1),
            codes::CHARSET,
            "42000",
            format!(
                "sluice: client character set {} is refused: its multi-byte characters can hide a quote or backslash, so sluice could read a statement differently from the database; use utf8mb4",
                response.charset
            ),
        )
        .await);
    }
    if response.capabilities & (caps::COMPRESS | caps::ZSTD_COMPRESSION) != 0 {
        return Err(refused(
            &mut client,
            client_seq.wrapping_add(1),
            codes::NOT_SUPPORTED,
            "08004",
            "sluice: the compressed protocol is not supported (sluice must read every statement); connect without compression".into(),
        )
        .await);
    }
    let mut agreed = response.capabilities & (offered | caps::SSL) & !caps::LOCAL_FILES & !STRUCK;
    let user = summary.user.clone().unwrap_or_default();
    // Now under its identity and user's budget too.
    if let Err(blocked) = attempt.identify(route.identity, &user).await {
        tracing::warn!(event = "login_rate_limited", client = %source.addr, uid = ?source.uid, identity = route.identity, user = %user, "login refused: too many failed logins");
        return Err(refused(
            &mut client,
            client_seq.wrapping_add(1),
            codes::HOST_BLOCKED,
            "HY000",
            blocked.to_string(),
        )
        .await);
    }

    // Injection: admit the workload now, before the database leg goes on.
    // `cseq` is the next sequence id towards the client.
    let mut cseq = client_seq.wrapping_add(1);
    let credential = match (secrets, &nonce) {
        (Some(secrets), Some(nonce)) => {
            match admit(
                &mut client,
                &mut cbuf,
                (secrets, nonce),
                route,
                &user,
                &response,
                &mut cseq,
            )
            .await?
            {
                Ok(cred) => {
                    summary.upstream_user = Some(cred.upstream_user().to_owned());
                    Some(cred)
                }
                Err(inject::Refusal(message)) => {
                    attempt.failed();
                    return Err(
                        refused(&mut client, cseq, codes::ACCESS_DENIED, "28000", message).await,
                    );
                }
            }
        }
        _ => None,
    };

    // The database leg's TLS, as the target says.
    let ip = route.original.ip();
    let tls = &route.target.tls;
    let mut up_seq = 1u8;
    if let Some((connector, name)) = tls.connector(ip) {
        if greeting.capabilities & caps::SSL != 0 {
            let request = SslRequest {
                capabilities: (agreed & !caps::SSL) | caps::SSL,
                max_packet: response.max_packet,
                charset: response.charset,
            };
            send(&mut upstream, up_seq, &request.encode(), "upstream").await?;
            up_seq = up_seq.wrapping_add(1);
            let Conn::Plain(tcp) = upstream else {
                return Err(MyError::Refused("database TLS negotiated twice".into()));
            };
            upstream = match connector.connect(name, tcp).await {
                Ok(s) => Conn::Dialled(Box::new(s)),
                Err(e) => {
                    return Err(refused(
                        &mut client,
                        client_seq.wrapping_add(1),
                        codes::UNREACHABLE,
                        "08S01",
                        format!(
                            "sluice: TLS to the database failed (upstream_tls = \"{}\"): {e}",
                            tls.mode()
                        ),
                    )
                    .await);
                }
            };
        } else if tls.required() {
            return Err(refused(
                &mut client,
                client_seq.wrapping_add(1),
                codes::UNREACHABLE,
                "08S01",
                format!(
                    "sluice: the database does not offer TLS and upstream_tls = \"{}\"",
                    tls.mode()
                ),
            )
            .await);
        }
    }
    summary.upstream_tls = upstream.is_tls();
    agreed = if upstream.is_tls() {
        agreed | caps::SSL
    } else {
        agreed & !caps::SSL
    };
    let made = Made {
        thread,
        caps: agreed & !caps::SSL,
    };

    // 4'. Injection: sluice logs in, then tells the client.
    if let Some(cred) = credential {
        let login = login(
            &mut upstream,
            &mut ubuf,
            (cred, &greeting),
            &response,
            inject::upstream_capabilities(agreed, greeting.capabilities),
            up_seq,
        )
        .await?;
        return match login {
            Ok(ok) => {
                tracing::info!(
                    event = "credential_injected",
                    target = %route.target.name,
                    upstream_user = cred.upstream_user(),
                    "logged in with the vaulted credential"
                );
                send(&mut client, cseq, &ok, "client").await?;
                Ok(Some(ready(
                    client, upstream, cbuf, ubuf, made, route, config, summary,
                )))
            }
            Err(e) => {
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
                Err(refused(&mut client, cseq, codes::ACCESS_DENIED, "28000", message).await)
            }
        };
    }

    let forwarded = HandshakeResponse {
        capabilities: agreed,
        ..response
    };
    send(&mut upstream, up_seq, &forwarded.encode(), "upstream").await?;

    // 4. Authentication, relayed. `delta` maps client ids to database ids.
    let delta = up_seq.wrapping_sub(client_seq);
    for _ in 0..MAX_AUTH_STEPS {
        tokio::select! {
            p = read(&mut upstream, &mut ubuf, MAX_HANDSHAKE, "upstream") => {
                let p = p?;
                send(&mut client, p.seq.wrapping_sub(delta), &p.payload, "client").await?;
                match p.payload.first() {
                    Some(0x00) => {
                        return Ok(Some(ready(
                            client, upstream, cbuf, ubuf, made, route, config, summary,
                        )));
                    }
                    Some(0xFF) => {
                        let (code, why) = ErrPacket::parse(&p.payload)
                            .map(|e| (e.code, e.message))
                            .unwrap_or_default();
                        tracing::info!(error = %why, code, "the database refused the login");
                        // Refused credentials count against the login limits.
                        if matches!(code, codes::ACCESS_DENIED | codes::ACCESS_DENIED_NO_PASSWORD) {
                            attempt.failed();
                        }
                        summary.login_error = Some(format!("{code} {why}"));
                        return Ok(None);
                    }
                    _ => {}
                }
            }
            p = read(&mut client, &mut cbuf, MAX_HANDSHAKE, "client") => {
                let p = p?;
                send(&mut upstream, p.seq.wrapping_add(delta), &p.payload, "upstream").await?;
            }
        }
    }
    Err(MyError::Refused(format!(
        "authentication took more than {MAX_AUTH_STEPS} steps"
    )))
}

/// What the handshake settled that the ready session keeps.
#[derive(Clone, Copy)]
struct Made {
    /// The database thread (connection id).
    thread: u32,
    /// The capabilities both legs agreed on, SSL aside.
    caps: u64,
}

/// The ready session, its policy made with the client's user and database.
#[expect(
    clippy::too_many_arguments,
    reason = "the handshake's pieces, assembled once"
)]
fn ready(
    client: Conn,
    upstream: Conn,
    cbuf: BytesMut,
    ubuf: BytesMut,
    made: Made,
    route: &Route<'_>,
    config: &SessionConfig,
    summary: &Summary,
) -> Ready {
    let info = SessionInfo {
        protocol: "mysql",
        identity: route.identity,
        groups: route.groups,
        target: &route.target.name,
        user: summary.user.as_deref().unwrap_or(""),
        database: summary.database.as_deref().unwrap_or(""),
    };
    let policy = config.policy.session(&info);
    Ready {
        client,
        upstream,
        cbuf,
        ubuf,
        caps: made.caps,
        thread: made.thread,
        policy,
    }
}

/// Credential injection, client leg: find the credential for this
/// workload and user, and read its token when it has one. `cseq` is the
/// next sequence id towards the client (moved on by an auth switch).
async fn admit<'s>(
    client: &mut Conn,
    cbuf: &mut BytesMut,
    (secrets, nonce): (&'s Secrets, &[u8; inject::NONCE_LEN]),
    route: &Route<'_>,
    user: &str,
    response: &HandshakeResponse,
    cseq: &mut u8,
) -> Result<Result<&'s Credential, inject::Refusal>, MyError> {
    let cred = match inject::find(secrets, &route.target.name, user, &route.workload) {
        Ok(cred) => cred,
        Err(r) => return Ok(Err(r)),
    };
    let token = match inject::client_auth(cred, response, client.is_tls(), nonce) {
        inject::ClientAuth::Admit => return Ok(Ok(cred)),
        inject::ClientAuth::Refuse(r) => return Ok(Err(r)),
        inject::ClientAuth::Token(token) => token,
        inject::ClientAuth::Switch { request, token } => {
            send(client, *cseq, &request, "client").await?;
            let answer = read(client, cbuf, MAX_HANDSHAKE, "client").await?;
            *cseq = answer.seq.wrapping_add(1);
            if !token {
                return Ok(Ok(cred));
            }
            inject::cleartext(&answer.payload).to_vec()
        }
    };
    match &cred.token_sha256 {
        Some(expected) if inject::token_matches(expected, &token) => Ok(Ok(cred)),
        _ => Ok(Err(inject::Refusal(format!(
            "sluice: token authentication failed for user \"{user}\""
        )))),
    }
}

/// Credential injection, database leg: send sluice's HandshakeResponse (at
/// sequence id `seq`) and answer the database until its OK, whose payload
/// is returned for the client. Bounded by [`MAX_AUTH_STEPS`].
async fn login(
    upstream: &mut Conn,
    ubuf: &mut BytesMut,
    (cred, greeting): (&Credential, &Greeting),
    client: &HandshakeResponse,
    capabilities: u64,
    seq: u8,
) -> Result<Result<Vec<u8>, inject::LoginError>, MyError> {
    let mut state = inject::Login::new(cred, upstream.is_tls());
    let response = match inject::upstream_response(client, capabilities, cred, &mut state, greeting)
    {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    send(upstream, seq, &response.encode(), "upstream").await?;
    for _ in 0..MAX_AUTH_STEPS {
        let p = read(upstream, ubuf, MAX_HANDSHAKE, "upstream").await?;
        match state.next(&p.payload) {
            Ok(inject::Step::Done) => return Ok(Ok(p.payload.to_vec())),
            Ok(inject::Step::Wait) => {}
            Ok(inject::Step::Answer(answer)) => {
                send(upstream, p.seq.wrapping_add(1), &answer, "upstream").await?;
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Err(MyError::Refused(format!(
        "authentication with the database took more than {MAX_AUTH_STEPS} steps"
    )))
}

/// Read one whole packet; the end of the stream is an I/O error on `leg`.
pub(crate) async fn read(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    max: usize,
    leg: &'static str,
) -> Result<Packet, MyError> {
    loop {
        match packet::decode(buf, max) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(source) => return Err(MyError::Protocol { leg, source }),
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|source| MyError::Io { leg, source })?;
        if n == 0 {
            return Err(MyError::Io {
                leg,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
    }
}

/// Read one packet of at most `max` bytes with exact reads, so that
/// nothing behind it leaves the socket.
async fn read_exact_packet(
    stream: &mut (impl AsyncRead + Unpin),
    max: usize,
    leg: &'static str,
) -> Result<Packet, MyError> {
    let io = |source| MyError::Io { leg, source };
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        let n = stream.read(&mut header[got..]).await.map_err(io)?;
        if n == 0 {
            return Err(if got == 0 {
                MyError::ClientGone
            } else {
                io(std::io::ErrorKind::UnexpectedEof.into())
            });
        }
        got += n;
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > max || len >= sluice_mywire::packet::MAX_CHUNK {
        // Another protocol's first bytes read as a length are large: say
        // which protocol they look like.
        let hint = sluice_pgproxy::limits::confusion_hint(&header);
        return Err(MyError::Protocol {
            leg,
            source: sluice_mywire::CodecError::malformed(format!(
                "a first packet of {len} bytes is over the handshake limit of {max}{hint}"
            )),
        });
    }
    let mut buf = BytesMut::with_capacity(4 + len);
    buf.extend_from_slice(&header);
    buf.resize(4 + len, 0);
    stream.read_exact(&mut buf[4..]).await.map_err(io)?;
    match packet::decode(&mut buf, max) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(io(std::io::ErrorKind::UnexpectedEof.into())),
        Err(source) => Err(MyError::Protocol { leg, source }),
    }
}

/// Frame `payload` with sequence id `seq`, write and flush.
pub(crate) async fn send(
    stream: &mut (impl AsyncWrite + Unpin),
    seq: u8,
    payload: &[u8],
    leg: &'static str,
) -> Result<(), MyError> {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    packet::encode(seq, payload, &mut out);
    write(stream, &out, leg).await
}

/// Write and flush.
pub(crate) async fn write(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    leg: &'static str,
) -> Result<(), MyError> {
    let written = match stream.write_all(bytes).await {
        Ok(()) => stream.flush().await,
        Err(e) => Err(e),
    };
    written.map_err(|source| MyError::Io { leg, source })
}

/// An ERR packet in place of the greeting (sequence id 0), without the
/// SQLSTATE marker: the client has not said it speaks protocol 4.1 yet,
/// so a server's own refusal here carries none. Best effort; returns the
/// error that ends the session.
async fn refused_for_greeting(
    client: &mut (impl AsyncWrite + Unpin),
    code: u16,
    message: String,
) -> MyError {
    let mut payload = vec![0xFF];
    payload.extend_from_slice(&code.to_le_bytes());
    payload.extend_from_slice(message.as_bytes());
    let _ = send(client, 0, &payload, "client").await;
    MyError::Refused(message)
}

/// Tell the client why (best effort) and return the error that ends the
/// session.
async fn refused(
    client: &mut (impl AsyncWrite + Unpin),
    seq: u8,
    code: u16,
    state: &str,
    message: String,
) -> MyError {
    let _ = send(
        client,
        seq,
        &ErrPacket::new(code, state, message.clone()).encode(),
        "client",
    )
    .await;
    MyError::Refused(message)
}
