//! MySQL/MariaDB client/server protocol, as bytes in and typed messages
//! out. No I/O.
//!
//! Layout, lowest first:
//! - [`error`]: [`CodecError`]. "Need more bytes" is never an error:
//!   framing returns `Ok(None)`; a packet that is complete but wrong is
//!   `Truncated` or `Malformed`.
//! - [`wire`]: the primitive readers and writers (little-endian integers,
//!   length-encoded integers and strings, NUL-terminated strings).
//! - [`packet`]: splits whole logical packets (reassembling 16 MiB chunks)
//!   off an accumulating `BytesMut`, checking the declared length against
//!   a maximum *before* buffering the body.
//! - [`caps`]: capability and status flags, MariaDB's extended capabilities
//!   in the high 32 bits.
//! - [`handshake`]: the greeting, SSL request and handshake response.
//! - [`response`]: OK, ERR and EOF packets, column definitions, text rows.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod caps;
pub mod error;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod wire;

pub use caps::status;
pub use error::{CodecError, Result};
pub use packet::Packet;
pub use response::types;
