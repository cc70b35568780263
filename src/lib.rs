//! immucore: mounts a Kairos/cOS immutable OS root at boot. `app` is the program; `plan` the
//! step table and its executor; `steps` what each step does; `boot` the hand-over and the
//! failure paths; `config` and `dev` what the steps read; `sys` the system calls, and the one
//! module with `unsafe` code.
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod app;
pub mod boot;
pub mod config;
pub mod copy;
#[cfg(feature = "oci")]
pub mod decode;
pub mod dev;
pub mod log;
#[cfg(feature = "oci")]
pub mod oci;
pub mod plan;
pub mod steps;
#[allow(unsafe_code)]
pub mod sys;
pub mod util;
#[cfg(feature = "watchdog")]
pub mod watchdog;
