//! The `immucore` executable: a libc-free static entry point around the library. Its test
//! build (`cargo clippy --all-targets`) links std, which brings its own entry point.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]

#[cfg(not(test))]
#[allow(unsafe_code)]
#[path = "sys/start.rs"]
mod start;
