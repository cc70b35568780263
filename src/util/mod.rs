//! Small helpers shared by every layer: fixed buffers, numbers.
pub mod fixed;
pub mod words;
