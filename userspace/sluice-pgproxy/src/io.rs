//! The byte streams a session runs over: plain TCP, or TLS terminated by
//! sluice (client leg) or originated by sluice (database leg). Startup works
//! on a whole [`Conn`]; a ready session splits each one into halves so the
//! two directions run on their own tasks.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// Read half of a split [`Conn`].
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// Write half of a split [`Conn`].
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// One leg of a session.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS that sluice terminates (the client's leg).
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS that sluice originates (the database's leg).
    Dialled(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    /// Whether the leg is encrypted.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Conn::Plain(_))
    }

    /// Halves for the two directions. Plain TCP splits without a lock; a
    /// TLS stream shares one session state between its halves.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Conn::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            tls => {
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Accepted(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Dialled(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Accepted(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Dialled(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Accepted(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Dialled(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Accepted(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Dialled(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
