//! Configuration sources: kernel command line, layout files, and the path rules they share.
pub mod cmdline;
#[cfg(feature = "bootassessment")]
pub mod grubenv;
pub mod layout;
pub mod path;
pub mod state;
