//! gzip (RFC 1952) over DEFLATE (RFC 1951). Placeholder of the interface: the decoder follows.

use super::{unsupported, DecodeError, Source};

pub struct Gzip<'a> {
    input: &'a [u8],
    window: &'a mut [u8; 32768],
}

impl<'a> Gzip<'a> {
    pub fn new(input: &'a [u8], window: &'a mut [u8; 32768]) -> Self {
        Gzip { input, window }
    }
}

impl Source for Gzip<'_> {
    fn read(&mut self, _out: &mut [u8]) -> Result<usize, DecodeError> {
        let _ = (&self.input, &mut self.window);
        Err(unsupported("gzip: the decoder is not written yet", 0))
    }
}
