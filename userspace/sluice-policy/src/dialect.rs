//! Which SQL a statement is written in.
use std::{fmt, str::FromStr};

/// The SQL dialect statements are parsed in: the target's protocol.
///
/// The dialect changes how text is read (quoting, comments, executable
/// comments), how names fold, and which statements exist; the rules and
/// the masking configuration are the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Dialect {
    /// PostgreSQL.
    #[default]
    Postgres,
    /// MySQL and MariaDB.
    MySql,
}

impl Dialect {
    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dialect name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SQL dialect {0:?} (postgres or mysql)")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Dialect, UnknownDialect> {
        match s.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "pg" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            _ => Err(UnknownDialect(s.to_string())),
        }
    }
}
