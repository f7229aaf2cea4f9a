//! One intercepted connection: resolve, dial, relay, log.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use sluice_config::Protocol;
use sluice_identity::{Facts, OriginalDst};
use tokio::{
    io::copy_bidirectional_with_sizes,
    net::{TcpSocket, TcpStream},
};
use tracing::Instrument;

use crate::{Mode, Relay, SessionError};

/// Relay buffers: large enough that result streaming is not syscall-bound.
const BUF: usize = 64 * 1024;

pub(crate) async fn run(relay: &Relay, client: TcpStream, peer: SocketAddr, mode: Mode, id: u64) {
    let span = tracing::info_span!("session", id);
    async move {
        let started = Instant::now();
        match relay_one(relay, client, peer, mode, id).await {
            Ok((facts, dst, up, down)) => tracing::info!(
                event = "close",
                client = %facts.client(),
                original_dst = %dst,
                bytes_up = up,
                bytes_down = down,
                duration_ms = started.elapsed().as_millis() as u64,
                "session closed"
            ),
            Err(e) => tracing::warn!(
                event = "refused",
                client = %peer,
                error = %e,
                duration_ms = started.elapsed().as_millis() as u64,
                "session ended with an error"
            ),
        }
    }
    .instrument(span)
    .await;
}

async fn relay_one(
    relay: &Relay,
    mut client: TcpStream,
    peer: SocketAddr,
    mode: Mode,
    id: u64,
) -> Result<(Facts, OriginalDst, u64, u64), SessionError> {
    let (facts, dst) = resolve(relay, &client, peer, mode)?;
    let target = relay.settings.config.target_for(dst.0);
    let protocol = target.map(|t| t.protocol);
    tracing::info!(event = "open", original_dst = %dst, facts = %facts, ?protocol, "session opened");
    let rules = relay.rules();
    let who = rules.identities.resolve(&facts);
    tracing::info!(identity = %who.name, matched_by = %who.matched_by, "workload identified");
    let _live = relay.register(crate::LiveSession {
        id,
        identity: who.name.clone(),
        target: target.map(|t| t.name.clone()).unwrap_or_default(),
        client: facts.client().to_string(),
        original_dst: dst.to_string(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    // Only a configured target is served. Anything else reached the
    // listener without being steered to it (a client dialling the proxy's
    // own address, say): relaying it would pass it uninspected, or dial the
    // listener itself in a loop. Refused (fail closed).
    let Some(target) = target else {
        return Err(SessionError::NoTarget(dst.0));
    };
    client.set_nodelay(true)?;
    if target.protocol != Protocol::Tcp {
        let protocol = target.protocol;
        let Some(target) = relay.settings.targets.get(&target.name) else {
            return Err(SessionError::NoTarget(dst.0));
        };
        let workload = sluice_pgproxy::Workload {
            addr: facts.client().0.ip(),
            uid: match &facts {
                Facts::Local { uid, .. } => Some(*uid),
                Facts::Remote { .. } => None,
            },
        };
        let recorded = recorded_facts(&facts);
        let route = sluice_pgproxy::Route {
            original: dst.0,
            target,
            workload,
            identity: &who.name,
            groups: &who.groups,
            facts: &recorded,
        };
        let dial_to = |addr: SocketAddr| async move {
            // The engines name the leg ("upstream: …"): pass the address
            // and the cause, not this crate's own "upstream …" prefix.
            let up = dial(relay, addr).await.map_err(|e| match e {
                SessionError::Upstream { addr, source } => {
                    std::io::Error::new(source.kind(), format!("{addr}: {source}"))
                }
                SessionError::UpstreamTimeout(addr) => std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{addr}: connect timed out"),
                ),
                other => std::io::Error::other(other.to_string()),
            })?;
            up.set_nodelay(true)?;
            Ok(up)
        };
        let config = sluice_pgproxy::SessionConfig {
            policy: rules.policy,
            ..relay.settings.postgres.clone()
        };
        if protocol == Protocol::Mysql {
            return match sluice_myproxy::serve(client, route, &config, &relay.kills, dial_to).await
            {
                Ok(s) => {
                    tracing::info!(
                        user = s.user.as_deref().unwrap_or(""),
                        database = s.database.as_deref().unwrap_or(""),
                        upstream_user = s.upstream_user.as_deref().unwrap_or(""),
                        client_tls = s.client_tls,
                        upstream_tls = s.upstream_tls,
                        statements_allowed = s.statements_allowed,
                        statements_denied = s.statements_denied,
                        client_lost = s.client_lost.as_deref().unwrap_or(""),
                        recorded = s.session_id.unwrap_or(0),
                        "mysql session ended"
                    );
                    Ok((facts, dst, s.bytes_up, s.bytes_down))
                }
                Err(e) => Err(SessionError::Mysql(e)),
            };
        }
        return match sluice_pgproxy::serve(client, route, &config, dial_to).await {
            Ok(s) => {
                tracing::info!(
                    user = s.user.as_deref().unwrap_or(""),
                    database = s.database.as_deref().unwrap_or(""),
                    upstream_user = s.upstream_user.as_deref().unwrap_or(""),
                    client_tls = s.client_tls,
                    upstream_tls = s.upstream_tls,
                    statements_allowed = s.statements_allowed,
                    statements_denied = s.statements_denied,
                    cancel = s.cancel_routed,
                    client_lost = s.client_lost.as_deref().unwrap_or(""),
                    recorded = s.session_id.unwrap_or(0),
                    "postgres session ended"
                );
                Ok((facts, dst, s.bytes_up, s.bytes_down))
            }
            Err(e) => Err(SessionError::Postgres(e)),
        };
    }
    // An opaque target (protocol = "tcp"): relay bytes, uninspected, as
    // configured.
    let mut upstream = dial(relay, dst.0).await?;
    upstream.set_nodelay(true)?;
    // Errors here are ordinary endings (a client that dies mid-result, a
    // database restart): report the bytes moved either way.
    let (up, down) = match copy_bidirectional_with_sizes(&mut client, &mut upstream, BUF, BUF).await
    {
        Ok(counts) => counts,
        Err(e) => {
            tracing::info!(error = %e, "connection reset");
            (0, 0)
        }
    };
    Ok((facts, dst, up, down))
}

/// A flow's facts as recorded (cardholder data masked in command lines).
fn recorded_facts(facts: &Facts) -> sluice_store::event::Facts {
    match facts {
        Facts::Remote {
            client,
            interface,
            mac,
        } => sluice_store::event::Facts {
            client: client.0.to_string(),
            interface: interface.clone(),
            mac: mac.clone(),
            ..Default::default()
        },
        Facts::Local {
            client,
            pid,
            uid,
            gid,
            comm,
            cgroup_id,
            cgroup,
            cmdline,
            exe,
        } => sluice_store::event::Facts {
            client: client.0.to_string(),
            pid: Some(*pid),
            uid: Some(*uid),
            gid: Some(*gid),
            comm: Some(comm.clone()),
            exe: exe.clone(),
            cgroup_id: Some(*cgroup_id),
            cgroup: cgroup.clone(),
            cmdline: cmdline
                .as_deref()
                .map(|c| sluice_store::redact::mask_pans(c).into_owned()),
            ..Default::default()
        },
    }
}

fn resolve(
    relay: &Relay,
    client: &TcpStream,
    peer: SocketAddr,
    mode: Mode,
) -> Result<(Facts, OriginalDst), SessionError> {
    match mode {
        Mode::Gateway => {
            let dst = client.local_addr()?;
            Ok((
                Facts::remote(peer, relay.facts.take_gateway(peer)),
                OriginalDst(dst),
            ))
        }
        Mode::JumpHost => {
            let record = relay
                .facts
                .take_connect(peer)
                .ok_or(SessionError::NoFacts(peer))?;
            Ok((
                Facts::local(peer, &record),
                OriginalDst(record.original_dst),
            ))
        }
    }
}

async fn dial(relay: &Relay, dst: SocketAddr) -> Result<TcpStream, SessionError> {
    let socket = if dst.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    sluice_intercept::set_mark(&socket, relay.settings.upstream_mark)?;
    let timeout: Duration = relay.settings.connect_timeout;
    match tokio::time::timeout(timeout, socket.connect(dst)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(SessionError::Upstream { addr: dst, source }),
        Err(_) => Err(SessionError::UpstreamTimeout(dst)),
    }
}
