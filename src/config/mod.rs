//! Configuration sources: kernel command line, layout files, and the path rules they share.
pub mod cmdline;
pub mod layout;
pub mod path;
pub mod state;
