//! What a client sends after the handshake: one command per packet, the
//! first payload byte naming it, plus the prepared-statement messages
//! (`COM_STMT_PREPARE`'s OK reply and `COM_STMT_EXECUTE`'s parameters).
//!
//! [`Command::parse`] borrows from the payload and does not need the
//! session's capabilities; the two commands whose layout depends on state
//! keep their raw body for a second step: `COM_CHANGE_USER` (capabilities,
//! [`ChangeUser::parse`]) and `COM_STMT_EXECUTE` (the statement's parameter
//! count and earlier types, [`Execute::parse`]).
//!
//! With [`caps::QUERY_ATTRIBUTES`] negotiated, `COM_QUERY` and
//! `COM_STMT_EXECUTE` carry an attribute prefix this module does not read;
//! a proxy should clear that flag from the client's capabilities.
use crate::binary::{self, Layout, int_value};
#[allow(unused_imports)] // Named by the docs.
use crate::caps;
use crate::error::{CodecError, Result};
use crate::handshake::{put_attributes, put_auth_response, read_attributes, read_auth_response};
use crate::response::types;
use crate::wire::{Reader, put_lenenc_bytes, put_null_str};

/// Sleep (server-internal; clients never send it).
pub const COM_SLEEP: u8 = 0x00;
/// Close the connection.
pub const COM_QUIT: u8 = 0x01;
/// Change the default database.
pub const COM_INIT_DB: u8 = 0x02;
/// Run SQL text.
pub const COM_QUERY: u8 = 0x03;
/// List a table's columns (deprecated).
pub const COM_FIELD_LIST: u8 = 0x04;
/// Create a database (removed in 5.x).
pub const COM_CREATE_DB: u8 = 0x05;
/// Drop a database (removed in 5.x).
pub const COM_DROP_DB: u8 = 0x06;
/// Flush tables, logs... (deprecated).
pub const COM_REFRESH: u8 = 0x07;
/// Shut the server down (deprecated).
pub const COM_SHUTDOWN: u8 = 0x08;
/// Server statistics as a string.
pub const COM_STATISTICS: u8 = 0x09;
/// Process list (deprecated).
pub const COM_PROCESS_INFO: u8 = 0x0a;
/// Server-internal.
pub const COM_CONNECT: u8 = 0x0b;
/// Kill a connection (deprecated in favour of `KILL`).
pub const COM_PROCESS_KILL: u8 = 0x0c;
/// Dump debug information to the server log.
pub const COM_DEBUG: u8 = 0x0d;
/// Liveness check.
pub const COM_PING: u8 = 0x0e;
/// Server-internal.
pub const COM_TIME: u8 = 0x0f;
/// Server-internal.
pub const COM_DELAYED_INSERT: u8 = 0x10;
/// Re-authenticate as another user, resetting the session.
pub const COM_CHANGE_USER: u8 = 0x11;
/// Replication: binlog stream.
pub const COM_BINLOG_DUMP: u8 = 0x12;
/// Replication (removed).
pub const COM_TABLE_DUMP: u8 = 0x13;
/// Server-internal.
pub const COM_CONNECT_OUT: u8 = 0x14;
/// Replication: register a replica.
pub const COM_REGISTER_SLAVE: u8 = 0x15;
/// Prepare a statement.
pub const COM_STMT_PREPARE: u8 = 0x16;
/// Execute a prepared statement.
pub const COM_STMT_EXECUTE: u8 = 0x17;
/// Send a parameter value in pieces.
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
/// Deallocate a prepared statement (no reply).
pub const COM_STMT_CLOSE: u8 = 0x19;
/// Reset a prepared statement's long data and cursor.
pub const COM_STMT_RESET: u8 = 0x1a;
/// Turn multi-statements on or off.
pub const COM_SET_OPTION: u8 = 0x1b;
/// Fetch rows from a cursor.
pub const COM_STMT_FETCH: u8 = 0x1c;
/// Server-internal.
pub const COM_DAEMON: u8 = 0x1d;
/// Replication: GTID binlog stream.
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
/// Reset session state without re-authenticating.
pub const COM_RESET_CONNECTION: u8 = 0x1f;
/// MySQL clone plugin.
pub const COM_CLONE: u8 = 0x20;
/// MariaDB: bulk execute of a prepared statement.
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;
/// MariaDB: several commands in one packet.
pub const COM_MULTI: u8 = 0xfe;

/// The name of command byte `code` as the server's sources spell it.
pub fn command_name(code: u8) -> &'static str {
    match code {
        COM_SLEEP => "COM_SLEEP",
        COM_QUIT => "COM_QUIT",
        COM_INIT_DB => "COM_INIT_DB",
        COM_QUERY => "COM_QUERY",
        COM_FIELD_LIST => "COM_FIELD_LIST",
        COM_CREATE_DB => "COM_CREATE_DB",
        COM_DROP_DB => "COM_DROP_DB",
        COM_REFRESH => "COM_REFRESH",
        COM_SHUTDOWN => "COM_SHUTDOWN",
        COM_STATISTICS => "COM_STATISTICS",
        COM_PROCESS_INFO => "COM_PROCESS_INFO",
        COM_CONNECT => "COM_CONNECT",
        COM_PROCESS_KILL => "COM_PROCESS_KILL",
        COM_DEBUG => "COM_DEBUG",
        COM_PING => "COM_PING",
        COM_TIME => "COM_TIME",
        COM_DELAYED_INSERT => "COM_DELAYED_INSERT",
        COM_CHANGE_USER => "COM_CHANGE_USER",
        COM_BINLOG_DUMP => "COM_BINLOG_DUMP",
        COM_TABLE_DUMP => "COM_TABLE_DUMP",
        COM_CONNECT_OUT => "COM_CONNECT_OUT",
        COM_REGISTER_SLAVE => "COM_REGISTER_SLAVE",
        COM_STMT_PREPARE => "COM_STMT_PREPARE",
        COM_STMT_EXECUTE => "COM_STMT_EXECUTE",
        COM_STMT_SEND_LONG_DATA => "COM_STMT_SEND_LONG_DATA",
        COM_STMT_CLOSE => "COM_STMT_CLOSE",
        COM_STMT_RESET => "COM_STMT_RESET",
        COM_SET_OPTION => "COM_SET_OPTION",
        COM_STMT_FETCH => "COM_STMT_FETCH",
        COM_DAEMON => "COM_DAEMON",
        COM_BINLOG_DUMP_GTID => "COM_BINLOG_DUMP_GTID",
        COM_RESET_CONNECTION => "COM_RESET_CONNECTION",
        COM_CLONE => "COM_CLONE",
        COM_STMT_BULK_EXECUTE => "COM_STMT_BULK_EXECUTE",
        COM_MULTI => "COM_MULTI",
        _ => "COM_UNKNOWN",
    }
}

/// One client command, borrowing from its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `COM_QUIT`.
    Quit,
    /// `COM_INIT_DB`: the database name.
    InitDb(&'a [u8]),
    /// `COM_QUERY`: the SQL text.
    Query(&'a [u8]),
    /// `COM_FIELD_LIST`: the table name, NUL, then a wildcard (raw).
    FieldList(&'a [u8]),
    /// `COM_STATISTICS`.
    Statistics,
    /// `COM_PROCESS_INFO`.
    ProcessInfo,
    /// `COM_PROCESS_KILL`: the connection id.
    ProcessKill(u32),
    /// `COM_DEBUG`.
    Debug,
    /// `COM_PING`.
    Ping,
    /// `COM_CHANGE_USER`: the raw body after the command byte; decode with
    /// [`ChangeUser::parse`].
    ChangeUser(&'a [u8]),
    /// `COM_STMT_PREPARE`: the SQL text.
    StmtPrepare(&'a [u8]),
    /// `COM_STMT_EXECUTE`: the raw body after the command byte; decode
    /// with [`Execute::parse`].
    StmtExecute(&'a [u8]),
    /// `COM_STMT_SEND_LONG_DATA`: one piece of a parameter's value.
    StmtSendLongData {
        /// Statement id.
        statement_id: u32,
        /// Parameter index, from 0.
        param: u16,
        /// The piece.
        data: &'a [u8],
    },
    /// `COM_STMT_CLOSE`: the statement id.
    StmtClose(u32),
    /// `COM_STMT_RESET`: the statement id.
    StmtReset(u32),
    /// `COM_SET_OPTION`: 0 multi-statements on, 1 off.
    SetOption(u16),
    /// `COM_STMT_FETCH`: rows from a cursor.
    StmtFetch {
        /// Statement id.
        statement_id: u32,
        /// How many rows.
        rows: u32,
    },
    /// `COM_RESET_CONNECTION`.
    ResetConnection,
    /// Any other command byte (replication, MariaDB bulk/multi, internal).
    Other(u8),
}

impl<'a> Command<'a> {
    /// Parse a command packet. Commands without arguments ignore trailing
    /// bytes, as the server does.
    pub fn parse(payload: &'a [u8]) -> Result<Command<'a>> {
        let mut r = Reader::new(payload);
        let code = r.u8().map_err(|_| CodecError::Truncated {
            what: "command byte",
        })?;
        Ok(match code {
            COM_QUIT => Command::Quit,
            COM_INIT_DB => Command::InitDb(r.rest()),
            COM_QUERY => Command::Query(r.rest()),
            COM_FIELD_LIST => Command::FieldList(r.rest()),
            COM_STATISTICS => Command::Statistics,
            COM_PROCESS_INFO => Command::ProcessInfo,
            COM_PROCESS_KILL => Command::ProcessKill(r.u32()?),
            COM_DEBUG => Command::Debug,
            COM_PING => Command::Ping,
            COM_CHANGE_USER => Command::ChangeUser(r.rest()),
            COM_STMT_PREPARE => Command::StmtPrepare(r.rest()),
            COM_STMT_EXECUTE => Command::StmtExecute(r.rest()),
            COM_STMT_SEND_LONG_DATA => Command::StmtSendLongData {
                statement_id: r.u32()?,
                param: r.u16()?,
                data: r.rest(),
            },
            COM_STMT_CLOSE => Command::StmtClose(r.u32()?),
            COM_STMT_RESET => Command::StmtReset(r.u32()?),
            COM_SET_OPTION => Command::SetOption(r.u16()?),
            COM_STMT_FETCH => Command::StmtFetch {
                statement_id: r.u32()?,
                rows: r.u32()?,
            },
            COM_RESET_CONNECTION => Command::ResetConnection,
            other => Command::Other(other),
        })
    }

    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::Quit => COM_QUIT,
            Command::InitDb(_) => COM_INIT_DB,
            Command::Query(_) => COM_QUERY,
            Command::FieldList(_) => COM_FIELD_LIST,
            Command::Statistics => COM_STATISTICS,
            Command::ProcessInfo => COM_PROCESS_INFO,
            Command::ProcessKill(_) => COM_PROCESS_KILL,
            Command::Debug => COM_DEBUG,
            Command::Ping => COM_PING,
            Command::ChangeUser(_) => COM_CHANGE_USER,
            Command::StmtPrepare(_) => COM_STMT_PREPARE,
            Command::StmtExecute(_) => COM_STMT_EXECUTE,
            Command::StmtSendLongData { .. } => COM_STMT_SEND_LONG_DATA,
            Command::StmtClose(_) => COM_STMT_CLOSE,
            Command::StmtReset(_) => COM_STMT_RESET,
            Command::SetOption(_) => COM_SET_OPTION,
            Command::StmtFetch { .. } => COM_STMT_FETCH,
            Command::ResetConnection => COM_RESET_CONNECTION,
            Command::Other(code) => *code,
        }
    }

    /// The command's name (`COM_QUERY`...), for logs and audit.
    pub fn name(&self) -> &'static str {
        command_name(self.code())
    }

    /// Encode as a command payload. `Other` encodes its byte alone.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.code()];
        match self {
            Command::InitDb(b)
            | Command::Query(b)
            | Command::FieldList(b)
            | Command::ChangeUser(b)
            | Command::StmtPrepare(b)
            | Command::StmtExecute(b) => out.extend_from_slice(b),
            Command::ProcessKill(id) | Command::StmtClose(id) | Command::StmtReset(id) => {
                out.extend_from_slice(&id.to_le_bytes())
            }
            Command::SetOption(o) => out.extend_from_slice(&o.to_le_bytes()),
            Command::StmtSendLongData {
                statement_id,
                param,
                data,
            } => {
                out.extend_from_slice(&statement_id.to_le_bytes());
                out.extend_from_slice(&param.to_le_bytes());
                out.extend_from_slice(data);
            }
            Command::StmtFetch { statement_id, rows } => {
                out.extend_from_slice(&statement_id.to_le_bytes());
                out.extend_from_slice(&rows.to_le_bytes());
            }
            Command::Quit
            | Command::Statistics
            | Command::ProcessInfo
            | Command::Debug
            | Command::Ping
            | Command::ResetConnection
            | Command::Other(_) => {}
        }
        out
    }
}

/// A `COM_QUERY` payload for `sql`.
pub fn query_payload(sql: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + sql.len());
    out.push(COM_QUERY);
    out.extend_from_slice(sql);
    out
}

/// A decoded `COM_CHANGE_USER` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    /// New user name.
    pub user: Vec<u8>,
    /// Auth response, computed against the greeting's scramble.
    pub auth_response: Vec<u8>,
    /// New default database (empty for none).
    pub database: Vec<u8>,
    /// New collation id, when the client sends one (it then may send the
    /// fields below).
    pub charset: Option<u16>,
    /// Auth plugin, with [`caps::PLUGIN_AUTH`].
    pub auth_plugin: Option<String>,
    /// Connection attributes, with [`caps::CONNECT_ATTRS`].
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ChangeUser {
    /// Parse the body after the command byte under the session's
    /// `capabilities`. The auth response is 1-byte-length-prefixed with
    /// [`caps::SECURE_CONNECTION`], else NUL-terminated: unlike the
    /// handshake response, [`caps::PLUGIN_AUTH_LENENC_DATA`] does not
    /// apply here (neither server reads a length-encoded one). Every field
    /// after the database is optional at the end of the packet.
    pub fn parse(body: &[u8], capabilities: u64) -> Result<ChangeUser> {
        let mut r = Reader::new(body);
        let user = r.null_str()?.to_vec();
        let auth_response =
            read_auth_response(&mut r, capabilities & !caps::PLUGIN_AUTH_LENENC_DATA)?.to_vec();
        let database = r.null_str()?.to_vec();
        let mut out = ChangeUser {
            user,
            auth_response,
            database,
            charset: None,
            auth_plugin: None,
            attributes: Vec::new(),
        };
        if r.is_empty() {
            return Ok(out);
        }
        out.charset = Some(r.u16()?);
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            let name = r.null_str().or_else(|_| Ok::<_, CodecError>(r.rest()))?;
            out.auth_plugin = Some(String::from_utf8_lossy(name).into_owned());
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            out.attributes = read_attributes(&mut r)?;
        }
        r.finish("COM_CHANGE_USER")?;
        Ok(out)
    }

    /// Encode the body (without the command byte), the inverse of
    /// [`ChangeUser::parse`]. Nothing follows the database when `charset`
    /// is `None`; the plugin name is written when its flag is set and it
    /// is `Some`, the attributes whenever [`caps::CONNECT_ATTRS`] is set.
    pub fn encode(&self, capabilities: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.user.len() + self.auth_response.len());
        put_null_str(&mut out, &self.user);
        put_auth_response(
            &mut out,
            capabilities & !caps::PLUGIN_AUTH_LENENC_DATA,
            &self.auth_response,
        );
        put_null_str(&mut out, &self.database);
        let Some(charset) = self.charset else {
            return out;
        };
        out.extend_from_slice(&charset.to_le_bytes());
        if let (true, Some(p)) = (capabilities & caps::PLUGIN_AUTH != 0, &self.auth_plugin) {
            put_null_str(&mut out, p.as_bytes());
        }
        if capabilities & caps::CONNECT_ATTRS != 0 {
            put_attributes(&mut out, &self.attributes);
        }
        out
    }

    /// The whole command payload: `COM_CHANGE_USER` then [`ChangeUser::encode`].
    pub fn to_payload(&self, capabilities: u64) -> Vec<u8> {
        let mut out = vec![COM_CHANGE_USER];
        out.extend_from_slice(&self.encode(capabilities));
        out
    }
}

/// The server's reply to a successful `COM_STMT_PREPARE`. Definitions of
/// `params` parameters and then `columns` columns follow it (each group
/// ended by an EOF unless [`caps::DEPRECATE_EOF`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    /// Id for later `COM_STMT_*` commands.
    pub statement_id: u32,
    /// Result-set columns.
    pub columns: u16,
    /// Placeholders.
    pub params: u16,
    /// Warning count.
    pub warnings: u16,
}

impl PrepareOk {
    /// Parse (header `0x00`, then 9 bytes and usually a 2-byte warning
    /// count; a trailing metadata flag byte is ignored).
    pub fn parse(payload: &[u8]) -> Result<PrepareOk> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != 0 {
            return Err(CodecError::malformed(format!(
                "COM_STMT_PREPARE OK header 0x{header:02X}"
            )));
        }
        let statement_id = r.u32()?;
        let columns = r.u16()?;
        let params = r.u16()?;
        r.u8()?; // filler
        let warnings = if r.remaining() >= 2 { r.u16()? } else { 0 };
        Ok(PrepareOk {
            statement_id,
            columns,
            params,
            warnings,
        })
    }

    /// Encode as 12 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12);
        out.push(0);
        out.extend_from_slice(&self.statement_id.to_le_bytes());
        out.extend_from_slice(&self.columns.to_le_bytes());
        out.extend_from_slice(&self.params.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&self.warnings.to_le_bytes());
        out
    }
}

/// `COM_STMT_EXECUTE` flag: open a read-only cursor.
pub const CURSOR_TYPE_READ_ONLY: u8 = 1;
/// `COM_STMT_EXECUTE` flag (MySQL 8 with query attributes): a parameter
/// count precedes the parameters. Not supported here.
pub const PARAMETER_COUNT_AVAILABLE: u8 = 8;

/// A decoded `COM_STMT_EXECUTE` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Execute {
    /// Statement id.
    pub statement_id: u32,
    /// Cursor flags ([`CURSOR_TYPE_READ_ONLY`]...).
    pub flags: u8,
    /// Iteration count; always 1.
    pub iterations: u32,
    /// One entry per placeholder.
    pub params: Vec<Param>,
}

/// One bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The type the client bound it as (one of [`types`]).
    pub column_type: u8,
    /// Whether the client flagged it unsigned.
    pub unsigned: bool,
    /// Its value.
    pub value: ParamValue,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// SQL NULL.
    Null,
    /// Sent earlier with `COM_STMT_SEND_LONG_DATA`, not in this packet.
    Long,
    /// A signed integer (TINY, SHORT, YEAR, LONG, INT24, LONGLONG).
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A FLOAT (a 4-byte value, widened exactly).
    Float(f64),
    /// A DOUBLE.
    Double(f64),
    /// Strings, decimals, blobs, JSON, BIT, geometry: the raw bytes.
    Bytes(Vec<u8>),
    /// DATE/DATETIME/TIMESTAMP as `YYYY-MM-DD[ hh:mm:ss[.ffffff]]`, TIME
    /// as `[-]hh:mm:ss[.ffffff]` (hours include days).
    Text(String),
}

impl ParamValue {
    /// SQL-ish text for audit: numbers as written, strings and temporals
    /// as quoted literals (backslash-escaped as the server's query log
    /// does; bytes that are not UTF-8 as `X'..'`). `None` for NULL and
    /// long data.
    pub fn display(&self) -> Option<String> {
        Some(match self {
            ParamValue::Null | ParamValue::Long => return None,
            ParamValue::Int(v) => v.to_string(),
            ParamValue::UInt(v) => v.to_string(),
            ParamValue::Float(v) => binary::format_float(*v, true, None),
            ParamValue::Double(v) => binary::format_float(*v, false, None),
            ParamValue::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => quote(s),
                Err(_) => {
                    let mut out = String::with_capacity(3 + b.len() * 2);
                    out.push_str("X'");
                    for byte in b {
                        out.push_str(&format!("{byte:02X}"));
                    }
                    out.push('\'');
                    out
                }
            },
            ParamValue::Text(s) => quote(s),
        })
    }
}

impl Param {
    /// Like [`ParamValue::display`], but decimals bound as strings show as
    /// bare numbers.
    pub fn display(&self) -> Option<String> {
        match (&self.value, self.column_type) {
            (ParamValue::Bytes(b), types::DECIMAL | types::NEWDECIMAL)
                if !b.is_empty()
                    && b.iter().all(|c| {
                        c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                    }) =>
            {
                Some(String::from_utf8_lossy(b).into_owned())
            }
            (v, _) => v.display(),
        }
    }
}

/// A single-quoted SQL literal with the escapes the server's
/// `escape_string_for_mysql` uses.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl Execute {
    /// Parse the body after the command byte.
    ///
    /// `param_count` comes from the statement's [`PrepareOk`]. Types are
    /// in the packet when its new-params-bound flag is 1, else they are
    /// the ones from the statement's previous execute, `previous_types`
    /// (`(type, unsigned)` pairs); the types used are returned alongside
    /// so the caller can remember them. `long_data[i]` says parameter `i`
    /// was sent with `COM_STMT_SEND_LONG_DATA` since the last execute or
    /// reset: such a parameter has no bytes here (whatever its NULL bit
    /// says) and reads as [`ParamValue::Long`].
    pub fn parse(
        body: &[u8],
        param_count: usize,
        previous_types: &[(u8, bool)],
        long_data: &[bool],
    ) -> Result<(Execute, Vec<(u8, bool)>)> {
        let mut r = Reader::new(body);
        let statement_id = r.u32()?;
        let flags = r.u8()?;
        let iterations = r.u32()?;
        if flags & PARAMETER_COUNT_AVAILABLE != 0 {
            return Err(CodecError::malformed(
                "COM_STMT_EXECUTE with query attributes is not supported",
            ));
        }
        let mut exec = Execute {
            statement_id,
            flags,
            iterations,
            params: Vec::new(),
        };
        if param_count == 0 {
            return Ok((exec, Vec::new()));
        }
        let null_bitmap = r.bytes(param_count.div_ceil(8))?;
        let new_params_bound = r.u8()?;
        let types_used: Vec<(u8, bool)> = if new_params_bound == 1 {
            // Two bytes per parameter: never reserve beyond the packet.
            let mut t = Vec::with_capacity(param_count.min(r.remaining() / 2));
            for _ in 0..param_count {
                let column_type = r.u8()?;
                let flag = r.u8()?;
                t.push((column_type, flag & 0x80 != 0));
            }
            t
        } else if previous_types.len() >= param_count {
            previous_types[..param_count].to_vec()
        } else {
            return Err(CodecError::malformed(
                "COM_STMT_EXECUTE without parameter types, and none bound before",
            ));
        };
        let mut params = Vec::with_capacity(param_count.min(body.len()));
        for (i, &(column_type, unsigned)) in types_used.iter().enumerate() {
            let value = if long_data.get(i).copied().unwrap_or(false) {
                ParamValue::Long
            } else if binary::bit_set(null_bitmap, i) {
                ParamValue::Null
            } else {
                read_param(&mut r, column_type, unsigned)?
            };
            params.push(Param {
                column_type,
                unsigned,
                value,
            });
        }
        r.finish("COM_STMT_EXECUTE")?;
        exec.params = params;
        Ok((exec, types_used))
    }

    /// Encode the body (without the command byte). With `send_types`, the
    /// new-params-bound flag is 1 and every parameter's type follows; else
    /// the server uses the types of the previous execute. Temporal values
    /// are written in their shortest form; a `Text` value that does not
    /// parse as its type is written as a zero date/time.
    pub fn encode(&self, send_types: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.params.len() * 10);
        out.extend_from_slice(&self.statement_id.to_le_bytes());
        out.push(self.flags);
        out.extend_from_slice(&self.iterations.to_le_bytes());
        if self.params.is_empty() {
            return out;
        }
        let bitmap_at = out.len();
        out.resize(bitmap_at + self.params.len().div_ceil(8), 0);
        for (i, p) in self.params.iter().enumerate() {
            if p.value == ParamValue::Null {
                out[bitmap_at + i / 8] |= 1 << (i % 8);
            }
        }
        out.push(u8::from(send_types));
        if send_types {
            for p in &self.params {
                out.push(p.column_type);
                out.push(if p.unsigned { 0x80 } else { 0 });
            }
        }
        for p in &self.params {
            put_param(&mut out, p);
        }
        out
    }

    /// The whole command payload: `COM_STMT_EXECUTE` then [`Execute::encode`].
    pub fn to_payload(&self, send_types: bool) -> Vec<u8> {
        let mut out = vec![COM_STMT_EXECUTE];
        out.extend_from_slice(&self.encode(send_types));
        out
    }
}

fn read_param(r: &mut Reader<'_>, column_type: u8, unsigned: bool) -> Result<ParamValue> {
    let raw = binary::read_value(r, column_type)?;
    let bad = || {
        CodecError::malformed(format!(
            "{} parameter value of {} bytes",
            types::name(column_type),
            raw.len()
        ))
    };
    Ok(match (binary::layout(column_type), column_type) {
        (Layout::Empty, _) => ParamValue::Null,
        (Layout::Fixed(_), types::FLOAT) => ParamValue::Float(f64::from(f32::from_le_bytes(
            raw.try_into().map_err(|_| bad())?,
        ))),
        (Layout::Fixed(_), types::DOUBLE) => {
            ParamValue::Double(f64::from_le_bytes(raw.try_into().map_err(|_| bad())?))
        }
        (Layout::Fixed(_), _) => {
            let (s, u) = int_value(raw).ok_or_else(bad)?;
            if unsigned {
                ParamValue::UInt(u)
            } else {
                ParamValue::Int(s)
            }
        }
        (Layout::Temporal, types::TIME | types::TIME2) => {
            ParamValue::Text(binary::format_time(raw, None).ok_or_else(bad)?)
        }
        (Layout::Temporal, types::DATE | types::NEWDATE) if raw.len() <= 4 => {
            ParamValue::Text(binary::format_date(raw).ok_or_else(bad)?)
        }
        (Layout::Temporal, _) => {
            ParamValue::Text(binary::format_datetime(raw, None).ok_or_else(bad)?)
        }
        (Layout::LengthEncoded, _) => ParamValue::Bytes(raw.to_vec()),
    })
}

fn put_param(out: &mut Vec<u8>, p: &Param) {
    let t = p.column_type;
    let raw: Vec<u8> = match &p.value {
        ParamValue::Null | ParamValue::Long => return,
        ParamValue::Int(v) => v.to_le_bytes().to_vec(),
        ParamValue::UInt(v) => v.to_le_bytes().to_vec(),
        ParamValue::Float(v) => {
            if t == types::DOUBLE {
                v.to_le_bytes().to_vec()
            } else {
                (*v as f32).to_le_bytes().to_vec()
            }
        }
        ParamValue::Double(v) => {
            if t == types::FLOAT {
                (*v as f32).to_le_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        }
        ParamValue::Bytes(b) => b.clone(),
        ParamValue::Text(s) => match t {
            types::TIME | types::TIME2 => binary::parse_time(s).unwrap_or_default(),
            _ => binary::parse_datetime(s).unwrap_or_default(),
        },
    };
    match binary::layout(t) {
        // Little-endian integers: the low bytes are the narrower value.
        Layout::Fixed(n) => out.extend_from_slice(&raw[..n.min(raw.len())]),
        Layout::LengthEncoded => put_lenenc_bytes(out, &raw),
        _ => binary::put_value(out, t, &raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for (cmd, name) in [
            (Command::Quit, "COM_QUIT"),
            (Command::InitDb(b"shop"), "COM_INIT_DB"),
            (Command::Query(b"select 1"), "COM_QUERY"),
            (Command::Query(b""), "COM_QUERY"),
            (Command::FieldList(b"t\0%"), "COM_FIELD_LIST"),
            (Command::Statistics, "COM_STATISTICS"),
            (Command::ProcessInfo, "COM_PROCESS_INFO"),
            (Command::ProcessKill(77), "COM_PROCESS_KILL"),
            (Command::Debug, "COM_DEBUG"),
            (Command::Ping, "COM_PING"),
            (Command::ChangeUser(b"bob\0\0\0"), "COM_CHANGE_USER"),
            (Command::StmtPrepare(b"select ?"), "COM_STMT_PREPARE"),
            (
                Command::StmtExecute(b"\x01\0\0\0\0\x01\0\0\0"),
                "COM_STMT_EXECUTE",
            ),
            (
                Command::StmtSendLongData {
                    statement_id: 3,
                    param: 1,
                    data: b"chunk",
                },
                "COM_STMT_SEND_LONG_DATA",
            ),
            (Command::StmtClose(9), "COM_STMT_CLOSE"),
            (Command::StmtReset(9), "COM_STMT_RESET"),
            (Command::SetOption(1), "COM_SET_OPTION"),
            (
                Command::StmtFetch {
                    statement_id: 2,
                    rows: 100,
                },
                "COM_STMT_FETCH",
            ),
            (Command::ResetConnection, "COM_RESET_CONNECTION"),
            (Command::Other(COM_BINLOG_DUMP), "COM_BINLOG_DUMP"),
            (Command::Other(COM_MULTI), "COM_MULTI"),
            (Command::Other(0x99), "COM_UNKNOWN"),
        ] {
            let b = cmd.encode();
            assert_eq!(Command::parse(&b).unwrap(), cmd);
            assert_eq!(cmd.name(), name);
        }
        assert_eq!(query_payload(b"select 1"), b"\x03select 1");
        assert!(Command::parse(b"").is_err());
        for short in [
            &b"\x0c\x01"[..],
            b"\x18\x01\x00\x00\x00\x01",
            b"\x19",
            b"\x1c\x01\x00\x00\x00",
            b"\x1b\x00",
        ] {
            assert!(Command::parse(short).is_err(), "{short:?}");
        }
    }

    #[test]
    fn change_user_round_trips() {
        let full =
            caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH | caps::CONNECT_ATTRS;
        for (c, cu) in [
            (
                full,
                ChangeUser {
                    user: b"bob".to_vec(),
                    auth_response: (1..=20).collect(),
                    database: b"shop".to_vec(),
                    charset: Some(255),
                    auth_plugin: Some("mysql_native_password".into()),
                    attributes: vec![(b"_client_name".to_vec(), b"libmariadb".to_vec())],
                },
            ),
            (
                caps::PROTOCOL_41 | caps::SECURE_CONNECTION,
                ChangeUser {
                    user: b"bob".to_vec(),
                    auth_response: vec![],
                    database: vec![],
                    charset: None,
                    auth_plugin: None,
                    attributes: vec![],
                },
            ),
            (
                caps::PROTOCOL_41,
                ChangeUser {
                    user: b"x".to_vec(),
                    auth_response: b"pw".to_vec(),
                    database: b"d".to_vec(),
                    charset: Some(33),
                    auth_plugin: None,
                    attributes: vec![],
                },
            ),
            (
                full | caps::PLUGIN_AUTH_LENENC_DATA,
                ChangeUser {
                    user: b"y".to_vec(),
                    auth_response: vec![7; 64],
                    database: b"".to_vec(),
                    charset: Some(8),
                    auth_plugin: Some("client_ed25519".into()),
                    attributes: vec![],
                },
            ),
        ] {
            let payload = cu.to_payload(c);
            let Command::ChangeUser(body) = Command::parse(&payload).unwrap() else {
                panic!("not COM_CHANGE_USER");
            };
            assert_eq!(ChangeUser::parse(body, c).unwrap(), cu);
        }
        // PLUGIN_AUTH_LENENC_DATA does not make the length length-encoded.
        let cu = ChangeUser::parse(b"u\0\xfcpw\0", full | caps::PLUGIN_AUTH_LENENC_DATA);
        assert!(
            cu.is_err(),
            "0xfc is a 252-byte length here, not a lenenc prefix"
        );
        let cu = ChangeUser::parse(b"u\0\x02pwd\0", full | caps::PLUGIN_AUTH_LENENC_DATA).unwrap();
        assert_eq!(
            (&cu.auth_response[..], &cu.database[..]),
            (&b"pw"[..], &b"d"[..])
        );
        assert!(ChangeUser::parse(b"bob", caps::PROTOCOL_41).is_err());
        assert!(ChangeUser::parse(b"bob\0\x05ab", caps::SECURE_CONNECTION).is_err());
    }

    #[test]
    fn prepare_ok_round_trips() {
        for p in [
            PrepareOk {
                statement_id: 1,
                columns: 2,
                params: 3,
                warnings: 0,
            },
            PrepareOk {
                statement_id: u32::MAX,
                columns: 0,
                params: 65535,
                warnings: 4,
            },
        ] {
            assert_eq!(PrepareOk::parse(&p.encode()).unwrap(), p);
        }
        let short = PrepareOk::parse(b"\x00\x01\x00\x00\x00\x01\x00\x02\x00\x00").unwrap();
        assert_eq!(
            (
                short.statement_id,
                short.columns,
                short.params,
                short.warnings
            ),
            (1, 1, 2, 0)
        );
        assert!(PrepareOk::parse(b"\xff\x01\x00\x00\x00\x01\x00\x02\x00\x00").is_err());
        assert!(PrepareOk::parse(b"\x00\x01\x00").is_err());
    }

    fn p(column_type: u8, unsigned: bool, value: ParamValue) -> Param {
        Param {
            column_type,
            unsigned,
            value,
        }
    }

    #[test]
    fn execute_round_trips() {
        let params = vec![
            p(types::LONGLONG, false, ParamValue::Int(-5)),
            p(types::LONGLONG, true, ParamValue::UInt(u64::MAX)),
            p(types::TINY, false, ParamValue::Int(-1)),
            p(types::SHORT, true, ParamValue::UInt(65535)),
            p(types::LONG, false, ParamValue::Int(i64::from(i32::MIN))),
            p(types::FLOAT, false, ParamValue::Float(f64::from(1.1f32))),
            p(types::DOUBLE, false, ParamValue::Double(0.1)),
            p(
                types::VAR_STRING,
                false,
                ParamValue::Bytes(b"O'Reilly".to_vec()),
            ),
            p(
                types::NEWDECIMAL,
                false,
                ParamValue::Bytes(b"12.50".to_vec()),
            ),
            p(types::NULL, false, ParamValue::Null),
            p(types::VAR_STRING, false, ParamValue::Null),
            p(types::BLOB, false, ParamValue::Long),
            p(
                types::DATETIME,
                false,
                ParamValue::Text("2024-02-29 01:02:03.123456".into()),
            ),
            p(
                types::DATETIME,
                false,
                ParamValue::Text("2024-02-29 00:00:00".into()),
            ),
            p(types::DATE, false, ParamValue::Text("2024-02-29".into())),
            p(types::TIME, false, ParamValue::Text("-26:03:04".into())),
            p(
                types::TIMESTAMP,
                false,
                ParamValue::Text("0000-00-00 00:00:00".into()),
            ),
        ];
        let exec = Execute {
            statement_id: 7,
            flags: CURSOR_TYPE_READ_ONLY,
            iterations: 1,
            params,
        };
        let long: Vec<bool> = exec
            .params
            .iter()
            .map(|p| p.value == ParamValue::Long)
            .collect();
        let body = exec.encode(true);
        let (parsed, types_used) = Execute::parse(&body, exec.params.len(), &[], &long).unwrap();
        assert_eq!(parsed, exec);
        assert_eq!(parsed.encode(true), body);
        // A second execute without types reuses the first one's.
        let again = exec.encode(false);
        let (parsed, t2) = Execute::parse(&again, exec.params.len(), &types_used, &long).unwrap();
        assert_eq!((parsed, t2), (exec.clone(), types_used.clone()));
        assert!(Execute::parse(&again, exec.params.len(), &[], &long).is_err());
        for cut in 0..body.len() {
            assert!(
                Execute::parse(&body[..cut], exec.params.len(), &[], &long).is_err(),
                "cut {cut}"
            );
        }
        // No parameters.
        let none = Execute {
            statement_id: 1,
            flags: 0,
            iterations: 1,
            params: vec![],
        };
        assert_eq!(
            Execute::parse(&none.encode(true), 0, &[], &[]).unwrap().0,
            none
        );
        let mut attrs = none.encode(true);
        attrs[4] = PARAMETER_COUNT_AVAILABLE;
        assert!(Execute::parse(&attrs, 0, &[], &[]).is_err());
        assert_eq!(exec.to_payload(true)[0], COM_STMT_EXECUTE);
    }

    #[test]
    fn a_real_libmysqlclient_execute() {
        // `SELECT ?, ?` executed with (42 as LONGLONG, "abc" as STRING).
        let body = b"\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\xfe\x00\x2a\x00\x00\x00\x00\x00\x00\x00\x03abc";
        let (e, t) = Execute::parse(body, 2, &[], &[]).unwrap();
        assert_eq!(t, vec![(types::LONGLONG, false), (types::STRING, false)]);
        assert_eq!(e.params[0].value, ParamValue::Int(42));
        assert_eq!(e.params[1].value, ParamValue::Bytes(b"abc".to_vec()));
        assert_eq!(e.encode(true), body);
    }

    #[test]
    fn param_display() {
        for (param, text) in [
            (p(types::LONG, false, ParamValue::Int(-3)), Some("-3")),
            (p(types::LONG, true, ParamValue::UInt(3)), Some("3")),
            (
                p(types::FLOAT, false, ParamValue::Float(f64::from(1.1f32))),
                Some("1.1"),
            ),
            (
                p(types::DOUBLE, false, ParamValue::Double(2.5)),
                Some("2.5"),
            ),
            (
                p(
                    types::STRING,
                    false,
                    ParamValue::Bytes(b"it's a \\ test\n".to_vec()),
                ),
                Some("'it\\'s a \\\\ test\\n'"),
            ),
            (
                p(types::BLOB, false, ParamValue::Bytes(b"\xff\x00".to_vec())),
                Some("X'FF00'"),
            ),
            (
                p(
                    types::NEWDECIMAL,
                    false,
                    ParamValue::Bytes(b"-12.50".to_vec()),
                ),
                Some("-12.50"),
            ),
            (
                p(
                    types::NEWDECIMAL,
                    false,
                    ParamValue::Bytes(b"1; drop".to_vec()),
                ),
                Some("'1; drop'"),
            ),
            (
                p(types::DATE, false, ParamValue::Text("2024-02-29".into())),
                Some("'2024-02-29'"),
            ),
            (p(types::NULL, false, ParamValue::Null), None),
            (p(types::BLOB, false, ParamValue::Long), None),
        ] {
            assert_eq!(param.display().as_deref(), text);
        }
        assert_eq!(
            ParamValue::Bytes(b"12.5".to_vec()).display().as_deref(),
            Some("'12.5'")
        );
    }
}
