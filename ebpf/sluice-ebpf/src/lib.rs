//! The programs live in the `sluice` binary target (see main.rs); this empty
//! library target only lets the userspace build script depend on the crate.
#![no_std]
