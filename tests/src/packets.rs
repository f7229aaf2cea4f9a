//! Hostile packets (filled in below).
