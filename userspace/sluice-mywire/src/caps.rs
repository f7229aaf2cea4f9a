//! Capability flags and server status flags.
//!
//! Capabilities are carried as one `u64`: the low 32 bits are the standard
//! `CLIENT_*` flags; the high 32 bits are MariaDB's extended capabilities.
//! MariaDB puts those in the last 4 of the greeting's 10 reserved bytes and
//! the client echoes its own in the last 4 of the handshake response's 23
//! filler bytes, but only when the server *clears* bit 0
//! ([`CLIENT_MYSQL`], historically `CLIENT_LONG_PASSWORD`), which is how a
//! MariaDB server says "I am not MySQL and my reserved bytes mean something".

/// Historic "new, longer password hashes" flag; every MySQL sets it.
/// MariaDB 10.2+ clears it to announce extended capabilities.
pub const LONG_PASSWORD: u64 = 1;
/// The same bit under MariaDB's name.
pub const CLIENT_MYSQL: u64 = LONG_PASSWORD;
/// Report rows found instead of rows changed.
pub const FOUND_ROWS: u64 = 2;
/// Longer column flags in column definitions.
pub const LONG_FLAG: u64 = 4;
/// A database name follows in the handshake response.
pub const CONNECT_WITH_DB: u64 = 8;
/// `db.table.column` is not allowed.
pub const NO_SCHEMA: u64 = 16;
/// zlib compression of the packet stream.
pub const COMPRESS: u64 = 32;
/// Unused (ODBC behaviour).
pub const ODBC: u64 = 64;
/// The client can handle `LOAD DATA LOCAL INFILE`.
pub const LOCAL_FILES: u64 = 128;
/// Parser ignores spaces before `(`.
pub const IGNORE_SPACE: u64 = 256;
/// The 4.1 protocol: the only one this crate speaks.
pub const PROTOCOL_41: u64 = 512;
/// Interactive client (`interactive_timeout` applies).
pub const INTERACTIVE: u64 = 1024;
/// TLS: an SSL request precedes the handshake response.
pub const SSL: u64 = 2048;
/// Do not issue SIGPIPE (client-side only).
pub const IGNORE_SIGPIPE: u64 = 4096;
/// Status flags in OK/EOF packets.
pub const TRANSACTIONS: u64 = 8192;
/// Unused (formerly 4.1 protocol).
pub const RESERVED: u64 = 16384;
/// 4.1 authentication: length-prefixed auth response.
pub const SECURE_CONNECTION: u64 = 32768;
/// Several statements per `COM_QUERY`.
pub const MULTI_STATEMENTS: u64 = 1 << 16;
/// Several result sets per command.
pub const MULTI_RESULTS: u64 = 1 << 17;
/// Several result sets per `COM_STMT_EXECUTE`.
pub const PS_MULTI_RESULTS: u64 = 1 << 18;
/// Pluggable authentication: plugin names in handshake messages.
pub const PLUGIN_AUTH: u64 = 1 << 19;
/// Connection attributes in the handshake response.
pub const CONNECT_ATTRS: u64 = 1 << 20;
/// Length-encoded auth response in the handshake response.
pub const PLUGIN_AUTH_LENENC_DATA: u64 = 1 << 21;
/// The client can handle expired passwords (sandbox mode).
pub const CAN_HANDLE_EXPIRED_PASSWORDS: u64 = 1 << 22;
/// Session-state tracking data in OK packets.
pub const SESSION_TRACK: u64 = 1 << 23;
/// OK packets (header `0xFE`) replace EOF packets.
pub const DEPRECATE_EOF: u64 = 1 << 24;
/// Result-set metadata may be omitted (MySQL 8).
pub const OPTIONAL_RESULTSET_METADATA: u64 = 1 << 25;
/// zstd compression; a level byte ends the handshake response.
pub const ZSTD_COMPRESSION: u64 = 1 << 26;
/// Query attributes prefix `COM_QUERY` and `COM_STMT_EXECUTE` (MySQL 8).
pub const QUERY_ATTRIBUTES: u64 = 1 << 27;
/// Multi-factor authentication (MySQL 8).
pub const MULTI_FACTOR_AUTH: u64 = 1 << 28;
/// Client-side only: verify the server certificate.
pub const SSL_VERIFY_SERVER_CERT: u64 = 1 << 30;
/// Client-side only: keep options after a failed connect.
pub const REMEMBER_OPTIONS: u64 = 1u64 << 31;
/// MariaDB: progress reports (ERR packets with code `0xFFFF`).
pub const MARIADB_PROGRESS: u64 = 1 << 32;
/// MariaDB: `COM_MULTI`.
pub const MARIADB_COM_MULTI: u64 = 1 << 33;
/// MariaDB: `COM_STMT_BULK_EXECUTE`.
pub const MARIADB_STMT_BULK_OPERATIONS: u64 = 1 << 34;
/// MariaDB: extended type information in column definitions.
pub const MARIADB_EXTENDED_METADATA: u64 = 1 << 35;
/// MariaDB: prepared-statement metadata may be skipped on execute.
pub const MARIADB_CACHE_METADATA: u64 = 1 << 36;

/// Every flag with its name, lowest bit first, for logs and debugging.
pub const NAMES: &[(u64, &str)] = &[
    (LONG_PASSWORD, "LONG_PASSWORD"),
    (FOUND_ROWS, "FOUND_ROWS"),
    (LONG_FLAG, "LONG_FLAG"),
    (CONNECT_WITH_DB, "CONNECT_WITH_DB"),
    (NO_SCHEMA, "NO_SCHEMA"),
    (COMPRESS, "COMPRESS"),
    (ODBC, "ODBC"),
    (LOCAL_FILES, "LOCAL_FILES"),
    (IGNORE_SPACE, "IGNORE_SPACE"),
    (PROTOCOL_41, "PROTOCOL_41"),
    (INTERACTIVE, "INTERACTIVE"),
    (SSL, "SSL"),
    (IGNORE_SIGPIPE, "IGNORE_SIGPIPE"),
    (TRANSACTIONS, "TRANSACTIONS"),
    (RESERVED, "RESERVED"),
    (SECURE_CONNECTION, "SECURE_CONNECTION"),
    (MULTI_STATEMENTS, "MULTI_STATEMENTS"),
    (MULTI_RESULTS, "MULTI_RESULTS"),
    (PS_MULTI_RESULTS, "PS_MULTI_RESULTS"),
    (PLUGIN_AUTH, "PLUGIN_AUTH"),
    (CONNECT_ATTRS, "CONNECT_ATTRS"),
    (PLUGIN_AUTH_LENENC_DATA, "PLUGIN_AUTH_LENENC_DATA"),
    (CAN_HANDLE_EXPIRED_PASSWORDS, "CAN_HANDLE_EXPIRED_PASSWORDS"),
    (SESSION_TRACK, "SESSION_TRACK"),
    (DEPRECATE_EOF, "DEPRECATE_EOF"),
    (OPTIONAL_RESULTSET_METADATA, "OPTIONAL_RESULTSET_METADATA"),
    (ZSTD_COMPRESSION, "ZSTD_COMPRESSION"),
    (QUERY_ATTRIBUTES, "QUERY_ATTRIBUTES"),
    (MULTI_FACTOR_AUTH, "MULTI_FACTOR_AUTH"),
    (SSL_VERIFY_SERVER_CERT, "SSL_VERIFY_SERVER_CERT"),
    (REMEMBER_OPTIONS, "REMEMBER_OPTIONS"),
    (MARIADB_PROGRESS, "MARIADB_PROGRESS"),
    (MARIADB_COM_MULTI, "MARIADB_COM_MULTI"),
    (MARIADB_STMT_BULK_OPERATIONS, "MARIADB_STMT_BULK_OPERATIONS"),
    (MARIADB_EXTENDED_METADATA, "MARIADB_EXTENDED_METADATA"),
    (MARIADB_CACHE_METADATA, "MARIADB_CACHE_METADATA"),
];

/// Names of the flags set in `caps` (unknown bits are left out).
pub fn names(caps: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(bit, _)| caps & bit != 0)
        .map(|&(_, name)| name)
        .collect()
}

/// Whether `caps` (as announced by a server) carries MariaDB extended
/// capabilities in its high 32 bits: bit 0 is clear.
pub fn has_mariadb_extended(caps: u64) -> bool {
    caps & CLIENT_MYSQL == 0
}

/// Server status flags, carried in OK and EOF packets.
pub mod status {
    /// A transaction is open.
    pub const IN_TRANS: u16 = 1;
    /// Autocommit mode is on.
    pub const AUTOCOMMIT: u16 = 2;
    /// Another result set follows.
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    /// The query did not use a good index.
    pub const NO_GOOD_INDEX_USED: u16 = 16;
    /// The query used no index.
    pub const NO_INDEX_USED: u16 = 32;
    /// A read-only cursor is open (`COM_STMT_FETCH` can be used).
    pub const CURSOR_EXISTS: u16 = 64;
    /// The cursor's last row has been sent.
    pub const LAST_ROW_SENT: u16 = 128;
    /// A database was dropped.
    pub const DB_DROPPED: u16 = 256;
    /// `NO_BACKSLASH_ESCAPES` SQL mode is on: backslash is not an escape.
    pub const NO_BACKSLASH_ESCAPES: u16 = 512;
    /// A prepared statement's metadata changed (re-prepare).
    pub const METADATA_CHANGED: u16 = 1024;
    /// The query was logged as slow.
    pub const QUERY_WAS_SLOW: u16 = 2048;
    /// The result set holds a procedure's OUT parameters.
    pub const PS_OUT_PARAMS: u16 = 4096;
    /// A read-only transaction is open.
    pub const IN_TRANS_READONLY: u16 = 8192;
    /// Session state changed; the OK packet carries tracking data.
    pub const SESSION_STATE_CHANGED: u16 = 16384;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_distinct_single_bits() {
        let mut seen = 0u64;
        for &(bit, name) in NAMES {
            assert_eq!(bit.count_ones(), 1, "{name}");
            assert_eq!(seen & bit, 0, "{name} duplicated");
            seen |= bit;
        }
        assert_eq!(NAMES.len(), 36);
    }

    #[test]
    fn names_and_mariadb_detection() {
        for (caps, want, mariadb) in [
            (0u64, vec![], true),
            (
                LONG_PASSWORD | PROTOCOL_41,
                vec!["LONG_PASSWORD", "PROTOCOL_41"],
                false,
            ),
            (
                PROTOCOL_41 | MARIADB_PROGRESS | MARIADB_CACHE_METADATA,
                vec!["PROTOCOL_41", "MARIADB_PROGRESS", "MARIADB_CACHE_METADATA"],
                true,
            ),
            (1 << 29, vec![], true),
        ] {
            assert_eq!(names(caps), want);
            assert_eq!(has_mariadb_extended(caps), mariadb);
        }
        assert_eq!(status::SESSION_STATE_CHANGED, 0x4000);
    }
}
