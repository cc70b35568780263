//! Block devices: superblock and partition-table probes.
pub mod gpt;
pub mod probe;
pub mod scan;
