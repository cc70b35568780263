//! The `immucore` executable: a libc-free static entry point around the library.
#![no_std]
#![no_main]

#[path = "sys/start.rs"]
mod start;
