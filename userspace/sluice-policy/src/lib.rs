//! Statement policy and masking for sluice, pure and synchronous.
//!
//! - [`analyze`]: one SQL string parsed with `sqlparser` (PostgreSQL or
//!   MySQL/MariaDB, see [`Dialect`]) into per-statement facts: class,
//!   kind, tables, columns, functions, WHERE presence, the outermost
//!   LIMIT, and each output column's lineage.
//! - `mysql` (private): MySQL text read the way the server reads it
//!   (executable comments, quoting) and the MySQL-only statements.
//! - [`engine`]: rules compiled from the configuration, decided per
//!   identity and target, with a cache keyed by statement shape
//!   ([`fingerprint`]: operand literals replaced).
//! - [`mask`]: masking formats (PCI display, redaction, keyed tokens).
//! - [`detect`]: content detectors run on every value leaving the
//!   database (PANs, track data, CVV-like values, optional extras).
pub mod analyze;
pub mod detect;
pub mod dialect;
pub mod engine;
pub mod fingerprint;
pub mod mask;
mod mysql;

pub use dialect::Dialect;
