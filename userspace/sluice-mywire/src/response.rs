//! What a server sends back for a command: OK, ERR and EOF packets, and the
//! pieces of a text-protocol result set (column count, column definitions,
//! rows), plus the `LOCAL INFILE` request.
//!
//! Binary-protocol rows live in [`crate::binary`] and are re-exported here
//! ([`binary_row`], [`encode_binary_row`], [`binary_value_text`]).
//!
//! Deciding *which* of these a packet is depends on where the exchange
//! stands (a binary row also starts with `0x00`, a text row can start with
//! `0xFE`), so the `is_*` helpers only look at the header byte and its
//! length; the session engine asks them at the right moment.
use std::fmt;

use crate::caps;
use crate::error::{CodecError, Result};
use crate::wire::{Reader, put_lenenc_bytes, put_lenenc_int};

pub use crate::binary::{binary_row, binary_value_text, encode_binary_row};
pub use crate::caps::status;
pub use types::{BINARY_FLAG, UNSIGNED_FLAG, is_text_like};

/// Header of an OK packet.
pub const OK_HEADER: u8 = 0x00;
/// Header of an EOF packet, and of an OK packet that replaces EOF under
/// [`caps::DEPRECATE_EOF`].
pub const EOF_HEADER: u8 = 0xFE;
/// Header of an ERR packet.
pub const ERR_HEADER: u8 = 0xFF;
/// Header of a `LOCAL INFILE` request, and the NULL marker in text rows.
pub const LOCAL_INFILE_HEADER: u8 = 0xFB;

/// Whether `payload` starts like an OK packet (`0x00`). Only meaningful
/// where an OK can appear, e.g. a command's first response packet.
pub fn is_ok(payload: &[u8]) -> bool {
    payload.first() == Some(&OK_HEADER)
}

/// Whether `payload` is an ERR packet (`0xFF`); valid at any point.
pub fn is_err(payload: &[u8]) -> bool {
    payload.first() == Some(&ERR_HEADER)
}

/// Whether `payload` is a classic EOF packet: `0xFE` and shorter than 9
/// bytes (a text row starting with `0xFE` needs an 8-byte length after it).
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF_HEADER) && payload.len() < 9
}

/// Whether `payload` ends a result set's rows under the negotiated
/// `capabilities`: with [`caps::DEPRECATE_EOF`], an OK packet with the
/// `0xFE` header (shorter than a maximal chunk, since a row starting with
/// `0xFE` holds a value of at least 16 MiB); without it, [`is_eof`].
pub fn is_result_end(payload: &[u8], capabilities: u64) -> bool {
    if capabilities & caps::DEPRECATE_EOF != 0 {
        payload.first() == Some(&EOF_HEADER) && payload.len() < crate::packet::MAX_CHUNK
    } else {
        is_eof(payload)
    }
}

/// An OK packet: a command succeeded (or, with header `0xFE`, a result set
/// ended under [`caps::DEPRECATE_EOF`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkPacket {
    /// `0x00`, or `0xFE` when the OK replaces an EOF.
    pub header: u8,
    /// Rows changed (or found, with [`caps::FOUND_ROWS`]).
    pub affected_rows: u64,
    /// `LAST_INSERT_ID()` after the statement.
    pub last_insert_id: u64,
    /// Server status flags ([`caps::status`]).
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
    /// Everything after the warning count, raw: the human-readable info
    /// and, with [`caps::SESSION_TRACK`], the session-state changes. Kept
    /// as sent so re-encoding is exact; see [`OkPacket::message`] and
    /// [`OkPacket::session_changes`].
    pub info: Vec<u8>,
}

impl OkPacket {
    /// A plain OK (`header` 0) with the given counts and no info.
    pub fn new(affected_rows: u64, last_insert_id: u64, status: u16) -> OkPacket {
        OkPacket {
            header: OK_HEADER,
            affected_rows,
            last_insert_id,
            status,
            warnings: 0,
            info: Vec::new(),
        }
    }

    /// Parse an OK packet under the negotiated `capabilities` (status and
    /// warnings are present with [`caps::PROTOCOL_41`]).
    pub fn parse(payload: &[u8], capabilities: u64) -> Result<OkPacket> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != OK_HEADER && header != EOF_HEADER {
            return Err(CodecError::malformed(format!(
                "OK packet header 0x{header:02X}"
            )));
        }
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let (mut status, mut warnings) = (0, 0);
        if capabilities & caps::PROTOCOL_41 != 0 {
            status = r.u16()?;
            warnings = r.u16()?;
        } else if capabilities & caps::TRANSACTIONS != 0 {
            status = r.u16()?;
        }
        Ok(OkPacket {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info: r.rest().to_vec(),
        })
    }

    /// Encode with the protocol 4.1 layout (the only one this crate
    /// negotiates).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_for(caps::PROTOCOL_41)
    }

    /// Encode with the layout `capabilities` select, the inverse of
    /// [`OkPacket::parse`].
    pub fn encode_for(&self, capabilities: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.info.len());
        out.push(self.header);
        put_lenenc_int(&mut out, self.affected_rows);
        put_lenenc_int(&mut out, self.last_insert_id);
        if capabilities & caps::PROTOCOL_41 != 0 {
            out.extend_from_slice(&self.status.to_le_bytes());
            out.extend_from_slice(&self.warnings.to_le_bytes());
        } else if capabilities & caps::TRANSACTIONS != 0 {
            out.extend_from_slice(&self.status.to_le_bytes());
        }
        out.extend_from_slice(&self.info);
        out
    }

    /// The human-readable info ("Rows matched: 1  Changed: 1..."): with
    /// [`caps::SESSION_TRACK`] a length-encoded string, else all of `info`.
    pub fn message(&self, capabilities: u64) -> &[u8] {
        if capabilities & caps::SESSION_TRACK == 0 {
            return &self.info;
        }
        Reader::new(&self.info).lenenc_bytes().unwrap_or_default()
    }

    /// Session-state changes as `(type, data)` pairs, when the server set
    /// [`caps::status::SESSION_STATE_CHANGED`] under [`caps::SESSION_TRACK`].
    /// Types: 0 system variable, 1 schema, 2 state change, 3 GTIDs,
    /// 4 transaction characteristics, 5 transaction state. Unreadable data
    /// yields what was read before it.
    pub fn session_changes(&self, capabilities: u64) -> Vec<(u8, &[u8])> {
        let mut out = Vec::new();
        if capabilities & caps::SESSION_TRACK == 0
            || self.status & caps::status::SESSION_STATE_CHANGED == 0
        {
            return out;
        }
        let mut r = Reader::new(&self.info);
        if r.lenenc_bytes().is_err() {
            return out;
        }
        let Ok(block) = r.lenenc_bytes() else {
            return out;
        };
        let mut b = Reader::new(block);
        while let (Ok(kind), Ok(data)) = (b.u8(), b.lenenc_bytes()) {
            out.push((kind, data));
        }
        out
    }

    /// The new default database, if this OK reports a schema change
    /// (`USE db`, or `COM_INIT_DB`) through session tracking.
    pub fn schema_change(&self, capabilities: u64) -> Option<&[u8]> {
        self.session_changes(capabilities)
            .into_iter()
            .find(|&(kind, _)| kind == 1)
            .and_then(|(_, data)| Reader::new(data).lenenc_bytes().ok())
    }
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// Error number (e.g. 1045 access denied, 1064 syntax error).
    pub code: u16,
    /// SQLSTATE, `HY000` when the server sent none (ERRs before the
    /// handshake completes carry no SQLSTATE).
    pub sql_state: [u8; 5],
    /// The message, lossily decoded as UTF-8.
    pub message: String,
}

impl ErrPacket {
    /// An error with `code`, SQLSTATE `state` (anything but 5 bytes becomes
    /// `HY000`) and `message`.
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> ErrPacket {
        let sql_state = <[u8; 5]>::try_from(state.as_bytes()).unwrap_or(*b"HY000");
        ErrPacket {
            code,
            sql_state,
            message: message.into(),
        }
    }

    /// Parse an ERR packet. The `#` + SQLSTATE marker is optional; a
    /// MariaDB progress report (code `0xFFFF`) is `Malformed`, since it is
    /// not an error and a proxy should not have negotiated
    /// [`caps::MARIADB_PROGRESS`] to begin with.
    pub fn parse(payload: &[u8]) -> Result<ErrPacket> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != ERR_HEADER {
            return Err(CodecError::malformed(format!(
                "ERR packet header 0x{header:02X}"
            )));
        }
        let code = r.u16()?;
        if code == 0xFFFF {
            return Err(CodecError::malformed(
                "MariaDB progress report where an ERR packet was expected",
            ));
        }
        let mut sql_state = *b"HY000";
        if r.peek() == Some(b'#') {
            r.u8()?;
            sql_state.copy_from_slice(r.bytes(5)?);
        }
        Ok(ErrPacket {
            code,
            sql_state,
            message: String::from_utf8_lossy(r.rest()).into_owned(),
        })
    }

    /// Encode, always with the `#` + SQLSTATE marker (protocol 4.1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(ERR_HEADER);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        out.extend_from_slice(&self.sql_state);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// The SQLSTATE as text (lossy).
    pub fn state(&self) -> String {
        String::from_utf8_lossy(&self.sql_state).into_owned()
    }
}

impl fmt::Display for ErrPacket {
    /// The way the `mysql` client prints it: `ERROR 1045 (28000): ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            self.state(),
            self.message
        )
    }
}

/// A classic EOF packet (without [`caps::DEPRECATE_EOF`]): ends column
/// definitions and rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EofPacket {
    /// Warning count.
    pub warnings: u16,
    /// Server status flags ([`caps::status`]).
    pub status: u16,
}

impl EofPacket {
    /// Parse an EOF packet (a bare `0xFE` from a pre-4.1 server reads as
    /// zero warnings and status).
    pub fn parse(payload: &[u8]) -> Result<EofPacket> {
        if !is_eof(payload) {
            return Err(CodecError::malformed("not an EOF packet"));
        }
        let mut r = Reader::new(payload);
        r.u8()?;
        if r.is_empty() {
            return Ok(EofPacket {
                warnings: 0,
                status: 0,
            });
        }
        let warnings = r.u16()?;
        let status = r.u16()?;
        r.finish("EOF packet")?;
        Ok(EofPacket { warnings, status })
    }

    /// Encode as 5 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5);
        out.push(EOF_HEADER);
        out.extend_from_slice(&self.warnings.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out
    }
}

/// Column types and column-definition flags.
pub mod types {
    /// `DECIMAL` (old, pre-5.0).
    pub const DECIMAL: u8 = 0;
    /// `TINYINT`, 1 byte.
    pub const TINY: u8 = 1;
    /// `SMALLINT`, 2 bytes.
    pub const SHORT: u8 = 2;
    /// `INT`, 4 bytes.
    pub const LONG: u8 = 3;
    /// `FLOAT`, 4 bytes.
    pub const FLOAT: u8 = 4;
    /// `DOUBLE`, 8 bytes.
    pub const DOUBLE: u8 = 5;
    /// `NULL` (a parameter bound to NULL).
    pub const NULL: u8 = 6;
    /// `TIMESTAMP`.
    pub const TIMESTAMP: u8 = 7;
    /// `BIGINT`, 8 bytes.
    pub const LONGLONG: u8 = 8;
    /// `MEDIUMINT`, sent in 4 bytes.
    pub const INT24: u8 = 9;
    /// `DATE`.
    pub const DATE: u8 = 10;
    /// `TIME`.
    pub const TIME: u8 = 11;
    /// `DATETIME`.
    pub const DATETIME: u8 = 12;
    /// `YEAR`, sent in 2 bytes.
    pub const YEAR: u8 = 13;
    /// Internal `DATE` representation; not sent to clients.
    pub const NEWDATE: u8 = 14;
    /// `VARCHAR`.
    pub const VARCHAR: u8 = 15;
    /// `BIT`.
    pub const BIT: u8 = 16;
    /// Internal `TIMESTAMP` with fractional seconds; not sent to clients.
    pub const TIMESTAMP2: u8 = 17;
    /// Internal `DATETIME` with fractional seconds; not sent to clients.
    pub const DATETIME2: u8 = 18;
    /// Internal `TIME` with fractional seconds; not sent to clients.
    pub const TIME2: u8 = 19;
    /// `VECTOR` (MySQL 9).
    pub const VECTOR: u8 = 242;
    /// `JSON` (MySQL; MariaDB sends JSON as a `BLOB`/string).
    pub const JSON: u8 = 245;
    /// `DECIMAL`/`NUMERIC`, sent as text.
    pub const NEWDECIMAL: u8 = 246;
    /// `ENUM`.
    pub const ENUM: u8 = 247;
    /// `SET`.
    pub const SET: u8 = 248;
    /// `TINYBLOB`/`TINYTEXT`.
    pub const TINY_BLOB: u8 = 249;
    /// `MEDIUMBLOB`/`MEDIUMTEXT`.
    pub const MEDIUM_BLOB: u8 = 250;
    /// `LONGBLOB`/`LONGTEXT`.
    pub const LONG_BLOB: u8 = 251;
    /// `BLOB`/`TEXT`.
    pub const BLOB: u8 = 252;
    /// `VARCHAR`/`VARBINARY` as sent to clients.
    pub const VAR_STRING: u8 = 253;
    /// `CHAR`/`BINARY` (and `ENUM`/`SET` as sent to clients).
    pub const STRING: u8 = 254;
    /// Spatial types.
    pub const GEOMETRY: u8 = 255;

    /// Column flag: `NOT NULL`.
    pub const NOT_NULL_FLAG: u16 = 1;
    /// Column flag: part of the primary key.
    pub const PRI_KEY_FLAG: u16 = 2;
    /// Column flag: part of a unique key.
    pub const UNIQUE_KEY_FLAG: u16 = 4;
    /// Column flag: part of a non-unique key.
    pub const MULTIPLE_KEY_FLAG: u16 = 8;
    /// Column flag: a BLOB or TEXT.
    pub const BLOB_FLAG: u16 = 16;
    /// Column flag: `UNSIGNED`; decides how binary integers are read.
    pub const UNSIGNED_FLAG: u16 = 32;
    /// Column flag: `ZEROFILL`; the text protocol pads to the display width.
    pub const ZEROFILL_FLAG: u16 = 64;
    /// Column flag: binary collation (bytes, not characters).
    pub const BINARY_FLAG: u16 = 128;
    /// Column flag: an `ENUM`.
    pub const ENUM_FLAG: u16 = 256;
    /// Column flag: `AUTO_INCREMENT`.
    pub const AUTO_INCREMENT_FLAG: u16 = 512;
    /// Column flag: a `TIMESTAMP`.
    pub const TIMESTAMP_FLAG: u16 = 1024;
    /// Column flag: a `SET`.
    pub const SET_FLAG: u16 = 2048;

    /// Whether values of `column_type` are character or byte strings
    /// (what a masking rule can rewrite as text): strings, blobs, `ENUM`,
    /// `SET` and `JSON`. Numbers (decimals included), temporals, `BIT` and
    /// geometry are not.
    pub fn is_text_like(column_type: u8) -> bool {
        matches!(
            column_type,
            VARCHAR
                | VAR_STRING
                | STRING
                | ENUM
                | SET
                | TINY_BLOB
                | MEDIUM_BLOB
                | LONG_BLOB
                | BLOB
                | JSON
        )
    }

    /// The name of `column_type` as MySQL's sources spell it, for logs.
    pub fn name(column_type: u8) -> &'static str {
        match column_type {
            DECIMAL => "DECIMAL",
            TINY => "TINY",
            SHORT => "SHORT",
            LONG => "LONG",
            FLOAT => "FLOAT",
            DOUBLE => "DOUBLE",
            NULL => "NULL",
            TIMESTAMP => "TIMESTAMP",
            LONGLONG => "LONGLONG",
            INT24 => "INT24",
            DATE => "DATE",
            TIME => "TIME",
            DATETIME => "DATETIME",
            YEAR => "YEAR",
            NEWDATE => "NEWDATE",
            VARCHAR => "VARCHAR",
            BIT => "BIT",
            TIMESTAMP2 => "TIMESTAMP2",
            DATETIME2 => "DATETIME2",
            TIME2 => "TIME2",
            VECTOR => "VECTOR",
            JSON => "JSON",
            NEWDECIMAL => "NEWDECIMAL",
            ENUM => "ENUM",
            SET => "SET",
            TINY_BLOB => "TINY_BLOB",
            MEDIUM_BLOB => "MEDIUM_BLOB",
            LONG_BLOB => "LONG_BLOB",
            BLOB => "BLOB",
            VAR_STRING => "VAR_STRING",
            STRING => "STRING",
            GEOMETRY => "GEOMETRY",
            _ => "UNKNOWN",
        }
    }
}

/// A column definition (`ColumnDefinition41`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnDef {
    /// Always `def`.
    pub catalog: Vec<u8>,
    /// Database.
    pub schema: Vec<u8>,
    /// Table alias as written in the query.
    pub table: Vec<u8>,
    /// Underlying table.
    pub org_table: Vec<u8>,
    /// Column alias as written in the query.
    pub name: Vec<u8>,
    /// Underlying column.
    pub org_name: Vec<u8>,
    /// Collation id (63 = binary).
    pub charset: u16,
    /// Maximum display length.
    pub length: u32,
    /// One of [`types`].
    pub column_type: u8,
    /// Column flags ([`types::UNSIGNED_FLAG`]...).
    pub flags: u16,
    /// Decimal digits; for temporals, fractional-second digits.
    pub decimals: u8,
}

impl ColumnDef {
    /// Parse the standard layout. Anything after the fixed block (the
    /// default value in a `COM_FIELD_LIST` reply) is ignored.
    pub fn parse(payload: &[u8]) -> Result<ColumnDef> {
        ColumnDef::parse_for(payload, 0)
    }

    /// Parse under the negotiated `capabilities` (client's and server's
    /// flags ANDed): with [`caps::MARIADB_EXTENDED_METADATA`], MariaDB puts
    /// a length-encoded block of extended type information after
    /// `org_name`, which is skipped.
    pub fn parse_for(payload: &[u8], capabilities: u64) -> Result<ColumnDef> {
        let mut r = Reader::new(payload);
        let catalog = r.lenenc_bytes()?.to_vec();
        let schema = r.lenenc_bytes()?.to_vec();
        let table = r.lenenc_bytes()?.to_vec();
        let org_table = r.lenenc_bytes()?.to_vec();
        let name = r.lenenc_bytes()?.to_vec();
        let org_name = r.lenenc_bytes()?.to_vec();
        if capabilities & caps::MARIADB_EXTENDED_METADATA != 0 {
            r.lenenc_bytes()?;
        }
        let fixed = r.lenenc_bytes()?;
        if fixed.len() < 10 {
            return Err(CodecError::malformed(format!(
                "column definition fixed block of {} bytes",
                fixed.len()
            )));
        }
        let mut f = Reader::new(fixed);
        Ok(ColumnDef {
            catalog,
            schema,
            table,
            org_table,
            name,
            org_name,
            charset: f.u16()?,
            length: f.u32()?,
            column_type: f.u8()?,
            flags: f.u16()?,
            decimals: f.u8()?,
        })
    }

    /// Encode in the standard layout (fixed block of `0x0c` bytes, the last
    /// two zero filler).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_for(0)
    }

    /// Encode under the negotiated `capabilities`: with
    /// [`caps::MARIADB_EXTENDED_METADATA`], an empty extended-type block
    /// follows `org_name` (extended information read by
    /// [`ColumnDef::parse_for`] is not kept).
    pub fn encode_for(&self, capabilities: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            32 + self.schema.len() + self.table.len() + self.name.len() + self.org_name.len(),
        );
        for s in [
            &self.catalog,
            &self.schema,
            &self.table,
            &self.org_table,
            &self.name,
            &self.org_name,
        ] {
            put_lenenc_bytes(&mut out, s);
        }
        if capabilities & caps::MARIADB_EXTENDED_METADATA != 0 {
            out.push(0);
        }
        out.push(0x0c);
        out.extend_from_slice(&self.charset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.push(self.column_type);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.push(self.decimals);
        out.extend_from_slice(&[0, 0]);
        out
    }

    /// Whether the column is `UNSIGNED`.
    pub fn is_unsigned(&self) -> bool {
        self.flags & UNSIGNED_FLAG != 0
    }
}

/// The column count that starts a result set. (Under
/// [`caps::OPTIONAL_RESULTSET_METADATA`] or MariaDB's
/// [`caps::MARIADB_CACHE_METADATA`] a flag byte follows; it is ignored.)
pub fn column_count(payload: &[u8]) -> Result<u64> {
    Reader::new(payload).lenenc_int()
}

/// Encode a column-count packet.
pub fn encode_column_count(columns: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    put_lenenc_int(&mut out, columns);
    out
}

/// Split a text-protocol row into its `columns` values (`None` is SQL
/// NULL). Values are zero-copy slices of `payload`; a row that holds more
/// or fewer values is `Malformed`.
pub fn text_row(payload: &[u8], columns: usize) -> Result<Vec<Option<&[u8]>>> {
    let mut r = Reader::new(payload);
    // Every value takes at least one byte: never reserve beyond that.
    let mut out = Vec::with_capacity(columns.min(payload.len()));
    for i in 0..columns {
        out.push(r.lenenc_nullable().map_err(|e| match e {
            CodecError::Truncated { .. } => CodecError::malformed(format!(
                "text row holds {i} values where {columns} were expected"
            )),
            e => e,
        })?);
    }
    if !r.is_empty() {
        return Err(CodecError::malformed(format!(
            "text row holds more than the {columns} values expected"
        )));
    }
    Ok(out)
}

/// Encode a text-protocol row.
pub fn encode_text_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.iter().map(|v| v.map_or(1, |b| b.len() + 9)).sum());
    for v in values {
        match v {
            None => out.push(LOCAL_INFILE_HEADER),
            Some(b) => put_lenenc_bytes(&mut out, b),
        }
    }
    out
}

/// The file name of a `LOCAL INFILE` request (`0xFB` + name), which is
/// only what it seems as the first response to a `COM_QUERY`.
pub fn local_infile_request(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&LOCAL_INFILE_HEADER, name)) => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P41: u64 = caps::PROTOCOL_41;

    #[test]
    fn ok_packets_round_trip() {
        for (ok, c) in [
            (OkPacket::new(0, 0, caps::status::AUTOCOMMIT), P41),
            (
                OkPacket {
                    header: 0x00,
                    affected_rows: 300,
                    last_insert_id: 1 << 40,
                    status: 3,
                    warnings: 2,
                    info: b"Rows matched: 1  Changed: 1  Warnings: 0".to_vec(),
                },
                P41,
            ),
            (
                OkPacket {
                    header: 0xFE,
                    affected_rows: 0,
                    last_insert_id: 0,
                    status: 0x22,
                    warnings: 0,
                    info: vec![],
                },
                P41 | caps::DEPRECATE_EOF,
            ),
            (
                OkPacket {
                    header: 0,
                    affected_rows: 1,
                    last_insert_id: 2,
                    status: 2,
                    warnings: 0,
                    info: b"info".to_vec(),
                },
                caps::TRANSACTIONS,
            ),
            (
                OkPacket {
                    header: 0,
                    affected_rows: 1,
                    last_insert_id: 2,
                    status: 0,
                    warnings: 0,
                    info: vec![],
                },
                0,
            ),
        ] {
            let bytes = ok.encode_for(c);
            assert_eq!(OkPacket::parse(&bytes, c).unwrap(), ok);
            if c & P41 != 0 {
                assert_eq!(ok.encode(), bytes);
            }
        }
        assert_eq!(
            OkPacket::new(0, 0, 2).encode(),
            b"\x00\x00\x00\x02\x00\x00\x00"
        );
        assert!(OkPacket::parse(b"\x01\x00\x00", P41).is_err());
        assert!(OkPacket::parse(b"\x00\x00\x00\x02", P41).is_err());
    }

    #[test]
    fn ok_session_tracking() {
        // `USE shop` with SESSION_TRACK: empty info, then a state block
        // holding one SCHEMA entry.
        let c = P41 | caps::SESSION_TRACK;
        let payload = b"\x00\x00\x00\x02\x40\x00\x00\x00\x07\x01\x05\x04shop";
        let ok = OkPacket::parse(payload, c).unwrap();
        assert_eq!(ok.message(c), b"");
        assert_eq!(ok.session_changes(c), vec![(1u8, &b"\x04shop"[..])]);
        assert_eq!(ok.schema_change(c), Some(&b"shop"[..]));
        assert_eq!(ok.encode(), payload);
        assert_eq!(ok.schema_change(P41), None);
        let plain = OkPacket {
            info: b"\x05hello".to_vec(),
            ..OkPacket::new(1, 0, 2)
        };
        assert_eq!(plain.message(c), b"hello");
        assert_eq!(plain.message(P41), b"\x05hello");
        assert!(plain.session_changes(c).is_empty());
    }

    #[test]
    fn err_packets() {
        for (e, text) in [
            (
                ErrPacket::new(1045, "28000", "Access denied for user 'x'@'h'"),
                "ERROR 1045 (28000): Access denied for user 'x'@'h'",
            ),
            (
                ErrPacket::new(1064, "bad", "syntax"),
                "ERROR 1064 (HY000): syntax",
            ),
            (ErrPacket::new(0, "42000", ""), "ERROR 0 (42000): "),
        ] {
            assert_eq!(ErrPacket::parse(&e.encode()).unwrap(), e);
            assert_eq!(e.to_string(), text);
        }
        // Without the marker (sent before the handshake completes).
        let e = ErrPacket::parse(b"\xff\x10\x04Too many connections").unwrap();
        assert_eq!(
            (e.code, &e.sql_state, &e.message[..]),
            (1040, b"HY000", "Too many connections")
        );
        assert!(is_err(b"\xff"));
        for bad in [
            &b"\xff\x01"[..],
            b"\x00\x01\x02",
            b"\xff\xff\xff\x01\x00\x01\x03stage",
            b"\xff\x01\x02#HY0",
        ] {
            assert!(ErrPacket::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn eof_packets_and_classifiers() {
        for eof in [
            EofPacket {
                warnings: 0,
                status: 2,
            },
            EofPacket {
                warnings: 7,
                status: 0x4022,
            },
        ] {
            let b = eof.encode();
            assert!(is_eof(&b));
            assert!(is_result_end(&b, P41));
            assert_eq!(EofPacket::parse(&b).unwrap(), eof);
        }
        assert_eq!(
            EofPacket::parse(b"\xfe").unwrap(),
            EofPacket {
                warnings: 0,
                status: 0
            }
        );
        assert!(EofPacket::parse(b"\xfe\x00").is_err());
        assert!(EofPacket::parse(b"\x00\x00\x00\x00\x00").is_err());
        for (payload, ok, eof) in [
            (&b"\x00\x00\x00\x02\x00\x00\x00"[..], true, false),
            (b"\xfe\x00\x00\x02\x00\x00\x00", false, true),
            (b"\xfe\x00\x00\x00\x00\x00\x00\x00\x00\x00", false, false),
            (b"", false, false),
        ] {
            assert_eq!((is_ok(payload), is_eof(payload)), (ok, eof), "{payload:?}");
        }
        let ok_as_eof = b"\xfe\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00";
        assert!(!is_result_end(ok_as_eof, P41));
        assert!(is_result_end(ok_as_eof, P41 | caps::DEPRECATE_EOF));
    }

    fn column(name: &str, column_type: u8, flags: u16) -> ColumnDef {
        ColumnDef {
            catalog: b"def".to_vec(),
            schema: b"shop".to_vec(),
            table: b"c".to_vec(),
            org_table: b"customers".to_vec(),
            name: name.as_bytes().to_vec(),
            org_name: name.as_bytes().to_vec(),
            charset: 255,
            length: 1020,
            column_type,
            flags,
            decimals: 0,
        }
    }

    #[test]
    fn column_definitions_round_trip() {
        for c in [
            column(
                "id",
                types::LONGLONG,
                types::NOT_NULL_FLAG | types::PRI_KEY_FLAG | UNSIGNED_FLAG,
            ),
            column("card", types::VAR_STRING, 0),
            ColumnDef::default(),
            ColumnDef {
                name: vec![b'x'; 300],
                ..column("", types::NEWDECIMAL, BINARY_FLAG)
            },
        ] {
            let b = c.encode();
            assert_eq!(ColumnDef::parse(&b).unwrap(), c);
            assert_eq!(ColumnDef::parse_for(&b, P41).unwrap(), c);
        }
        // `SELECT 1` from MySQL 8: catalog def, empty names but "1".
        let real =
            b"\x03def\x00\x00\x00\x011\x00\x0c\x3f\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00";
        let c = ColumnDef::parse(real).unwrap();
        assert_eq!(
            (c.column_type, c.flags, c.charset, &c.name[..]),
            (types::LONGLONG, 0x81, 63, &b"1"[..])
        );
        assert_eq!(c.encode(), real);
        // MariaDB extended metadata: a block between org_name and the fixed part.
        let mut ext = Vec::new();
        for s in [&b"def"[..], b"", b"", b"", b"j", b""] {
            put_lenenc_bytes(&mut ext, s);
        }
        put_lenenc_bytes(&mut ext, b"\x01\x04json");
        ext.extend_from_slice(&real[real.len() - 13..]);
        let j = ColumnDef::parse_for(&ext, caps::MARIADB_EXTENDED_METADATA).unwrap();
        assert_eq!((&j.name[..], j.column_type), (&b"j"[..], types::LONGLONG));
        assert!(ColumnDef::parse(&real[..real.len() - 3]).is_err());
        assert!(ColumnDef::parse(b"\x03def\x00\x00\x00\x00\x00\x02\x00\x00").is_err());
    }

    #[test]
    fn text_like_types() {
        for (t, text) in [
            (types::VARCHAR, true),
            (types::VAR_STRING, true),
            (types::STRING, true),
            (types::BLOB, true),
            (types::JSON, true),
            (types::ENUM, true),
            (types::NEWDECIMAL, false),
            (types::LONG, false),
            (types::DATETIME, false),
            (types::BIT, false),
            (types::GEOMETRY, false),
        ] {
            assert_eq!(is_text_like(t), text, "{}", types::name(t));
        }
    }

    #[test]
    fn text_rows_round_trip() {
        let long = vec![b'z'; 70_000];
        for values in [
            vec![],
            vec![None],
            vec![Some(&b""[..])],
            vec![Some(&b"4111111111111111"[..]), None, Some(&b"Ada"[..])],
            vec![Some(&long[..]), Some(&b"\xfb"[..])],
        ] {
            let b = encode_text_row(&values);
            assert_eq!(text_row(&b, values.len()).unwrap(), values);
            if !values.is_empty() {
                assert!(text_row(&b, values.len() - 1).is_err());
            }
            assert!(matches!(
                text_row(&b, values.len() + 1),
                Err(CodecError::Malformed(_))
            ));
        }
        assert!(text_row(b"\xff", 1).is_err());
    }

    #[test]
    fn column_counts_and_local_infile() {
        for n in [1u64, 250, 251, 4096] {
            assert_eq!(column_count(&encode_column_count(n)).unwrap(), n);
        }
        assert!(column_count(b"\xfb").is_err());
        assert_eq!(
            local_infile_request(b"\xfb/etc/passwd"),
            Some(&b"/etc/passwd"[..])
        );
        assert_eq!(local_infile_request(b"\x01"), None);
        assert_eq!(local_infile_request(b""), None);
    }
}
