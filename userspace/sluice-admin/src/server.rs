//! The accept loop and one task per connection.
//!
//! A semaphore permit is taken *before* each accept, so at most
//! `max_connections` connections are served at once and the rest wait in the
//! kernel's backlog. Every stage is bounded in time: the TLS handshake
//! (`handshake_timeout`), each request head (`header_timeout`, which also
//! closes idle keep-alive connections), each body (`body_timeout`, in the
//! handler), and the connection as a whole (`connection_lifetime`). On
//! shutdown the loop stops accepting, connections finish the request in
//! hand (graceful), and whatever is left after [`DRAIN`] is dropped.

use std::{convert::Infallible, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use crate::{
    Limits,
    handler::{Ctx, handle},
};

/// How long connections get to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors, …), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Request heads larger than this are refused by hyper (431): room for a
/// 16 KiB bearer token and ordinary headers.
const MAX_HEAD: usize = 64 * 1024;

/// Serves until `stop` turns true (or its sender is dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(ctx.limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        conns.spawn(connection(
            stream,
            peer,
            tls.clone(),
            Arc::clone(&ctx),
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "admin API: connections still open after shutdown; closing them"
        );
        conns.abort_all();
    }
    tracing::info!("admin API stopped");
}

/// One connection: TLS (if configured), then HTTP/1.1.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return http(TokioIo::new(stream), peer, ctx, stop).await;
    };
    match tokio::time::timeout(ctx.limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => http(TokioIo::new(tls), peer, ctx, stop).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin API: TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "admin API: TLS handshake timed out"),
    }
}

async fn http<I>(io: I, peer: SocketAddr, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let Limits {
        header_timeout,
        connection_lifetime,
        ..
    } = ctx.limits;
    let service = service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, Infallible>(handle(req, peer, ctx).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut deadline = pin!(tokio::time::sleep(connection_lifetime));
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "admin API: connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut deadline, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
