//! The decoders of OCI layers and the digest of OCI blobs, written here because the binary has
//! no allocator and no dependency beyond rustix: SHA-256, gzip (DEFLATE) and, with the `zstd`
//! feature, Zstandard. Each reads a whole compressed blob from memory (the archive is mapped)
//! and writes the decompressed bytes through `Source::read`, keeping only a caller-provided
//! window of history; no heap, no panic on any input (the fuzz targets hold that), a clear
//! message and the input offset for every refusal. Tested against flate2, the zstd crate and
//! sha2 (src/decode/tests.rs, fuzz/fuzz_targets/{gzip,zstd,sha256}.rs).

pub mod gzip;
mod sha256;
#[cfg(feature = "zstd")]
pub mod zstd;

pub use gzip::Gzip;
pub use sha256::Sha256;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

#[cfg(test)]
mod tests;

/// Why a compressed stream was refused: what was wrong (`message`) and at which byte of the
/// compressed input (`offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input breaks the format (bad magic, impossible code, checksum mismatch, truncation).
    Corrupt { message: &'static str, offset: u64 },
    /// A valid stream that this decoder does not take (a dictionary, a window over the buffer).
    Unsupported { message: &'static str, offset: u64 },
}

impl DecodeError {
    /// What was wrong, naming the format: "gzip: bad header magic".
    pub fn message(&self) -> &'static str {
        match *self {
            DecodeError::Corrupt { message, .. } | DecodeError::Unsupported { message, .. } => {
                message
            }
        }
    }

    /// The byte of the compressed input where it was found.
    pub fn offset(&self) -> u64 {
        match *self {
            DecodeError::Corrupt { offset, .. } | DecodeError::Unsupported { offset, .. } => offset,
        }
    }
}

pub(crate) fn corrupt(message: &'static str, offset: usize) -> DecodeError {
    DecodeError::Corrupt {
        message,
        offset: offset as u64,
    }
}

pub(crate) fn unsupported(message: &'static str, offset: usize) -> DecodeError {
    DecodeError::Unsupported {
        message,
        offset: offset as u64,
    }
}

/// A stream of decompressed bytes.
pub trait Source {
    /// Fills `out` (as far as the stream goes) and returns the bytes written; 0 only at the end
    /// of the stream (or for an empty `out`).
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DecodeError>;
}

/// An uncompressed blob as a `Source` (the `tar` layers).
pub struct Plain<'a> {
    rest: &'a [u8],
}

impl<'a> Plain<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Plain { rest: input }
    }
}

impl Source for Plain<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DecodeError> {
        let n = out.len().min(self.rest.len());
        let (head, rest) = self.rest.split_at(n);
        if let Some(dst) = out.get_mut(..n) {
            dst.copy_from_slice(head);
        }
        self.rest = rest;
        Ok(n)
    }
}
