//! Listening sockets: transparent ones for the gateway, plain ones for the
//! jump host.
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use crate::SessionError;

const BACKLOG: u32 = 4096;

/// A listener with `IP_TRANSPARENT` on `addr`, so the tc program can assign
/// it flows addressed to any database address and it can answer from there.
pub fn bind_transparent(addr: SocketAddr) -> Result<TcpListener, SessionError> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    sluice_intercept::set_transparent(&socket, addr.is_ipv6())?;
    if addr.is_ipv6() {
        sluice_intercept::set_v6only(&socket)?;
    }
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(BACKLOG)?)
}

/// A plain listener for the jump-host rewrite target.
pub fn bind_jump(addr: SocketAddr) -> Result<TcpListener, SessionError> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(BACKLOG)?)
}
