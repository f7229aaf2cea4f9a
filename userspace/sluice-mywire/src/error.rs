//! Codec errors. Incomplete input is not among them: framing reports it as
//! `Ok(None)` so the caller reads more. Inside a complete packet, running out
//! of bytes is [`CodecError::Truncated`]: the packet boundary is known, so a
//! short field means the peer sent a broken message, not that more is coming.
use thiserror::Error;

/// A packet (or a field inside one) that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// A complete packet ended in the middle of a field.
    #[error("packet truncated while reading {what}")]
    Truncated {
        /// The primitive or field that was being read.
        what: &'static str,
    },
    /// The packet is complete but its content is invalid or unsupported.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The declared payload length exceeds the configured maximum.
    #[error("packet of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Declared payload length (running total for multi-chunk packets).
        len: usize,
        /// Configured maximum.
        max: usize,
    },
}

impl CodecError {
    /// A `Malformed` error with `reason`.
    pub fn malformed(reason: impl Into<String>) -> Self {
        CodecError::Malformed(reason.into())
    }
}

/// `Result` with [`CodecError`] as the default error.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        for (err, text) in [
            (
                CodecError::Truncated { what: "u32" },
                "packet truncated while reading u32",
            ),
            (
                CodecError::malformed("bad header"),
                "malformed packet: bad header",
            ),
            (
                CodecError::TooLarge { len: 10, max: 4 },
                "packet of 10 bytes exceeds the maximum of 4",
            ),
        ] {
            assert_eq!(err.to_string(), text);
        }
    }
}
