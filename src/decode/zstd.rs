//! Zstandard (RFC 8878). Placeholder of the interface: the decoder follows.

use super::{unsupported, DecodeError, Source};

pub struct Zstd<'a> {
    input: &'a [u8],
    window: &'a mut [u8],
}

impl<'a> Zstd<'a> {
    /// The largest window over the frames of `input`: the buffer `new` needs.
    pub fn window_size(_input: &[u8]) -> Result<usize, DecodeError> {
        Err(unsupported("zstd: the decoder is not written yet", 0))
    }

    pub fn new(input: &'a [u8], window: &'a mut [u8]) -> Result<Self, DecodeError> {
        Ok(Zstd { input, window })
    }
}

impl Source for Zstd<'_> {
    fn read(&mut self, _out: &mut [u8]) -> Result<usize, DecodeError> {
        let _ = (&self.input, &mut self.window);
        Err(unsupported("zstd: the decoder is not written yet", 0))
    }
}
