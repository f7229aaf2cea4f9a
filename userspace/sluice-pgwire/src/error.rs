//! Codec errors. Incomplete input is not among them: framing reports it as
//! `Ok(None)` so the caller reads more.
use thiserror::Error;

/// A frame that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The declared length exceeds the configured maximum.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared length, including the length field.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The frame is complete but its content is invalid.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message (or field) was being read.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A message type byte this side of the protocol does not define.
    #[error("unknown {side} message type {tag:?}")]
    UnknownTag {
        /// "frontend" or "backend".
        side: &'static str,
        /// The type byte, as a char.
        tag: char,
    },
}

impl CodecError {
    /// A `Malformed` error for `what`.
    pub fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        CodecError::Malformed {
            what,
            reason: reason.into(),
        }
    }
}
