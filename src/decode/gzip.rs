//! gzip (RFC 1952) over DEFLATE (RFC 1951): the `tar+gzip` layers. Members one after the other
//! (`cat a.gz b.gz`, pigz) make one stream; each member's CRC-32 and length are checked.
//!
//! The output goes straight into the caller's buffer and into a 32 KiB ring of history (the
//! farthest a DEFLATE match reaches); a match cut by a full buffer resumes on the next `read`.

use super::{corrupt, unsupported, DecodeError, Source};

/// The history a DEFLATE stream may refer to (RFC 1951 §2: distances up to 32768).
pub const WINDOW: usize = 32768;
const WINDOW_MASK: usize = WINDOW - 1;

/// Header flags (RFC 1952 §2.3.1).
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const FRESERVED: u8 = 0xe0;

/// Length codes 257..285: the base length and the extra bits (RFC 1951 §3.2.5).
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Distance codes 0..29: the base distance and the extra bits (RFC 1951 §3.2.5).
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic block lists the code lengths of the code-length code
/// (RFC 1951 §3.2.7).
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

const MAX_CODE_BITS: u32 = 15;
/// Codes up to this many bits decode with one table look-up; longer ones walk the counts.
const FAST_BITS: u32 = 10;

/// The bits of the input, least significant first (RFC 1951 §3.1.1).
struct Bits<'a> {
    input: &'a [u8],
    /// The next byte not yet in `buf`.
    pos: usize,
    buf: u64,
    count: u32,
}

impl Bits<'_> {
    /// The byte of the input where the next unread bit is.
    fn offset(&self) -> usize {
        self.pos - (self.count / 8) as usize
    }

    /// The next `n` (<= 32) bits without consuming them; zeros past the end of the input.
    fn peek(&mut self, n: u32) -> u64 {
        if self.count < n {
            while self.count <= 56 {
                let Some(&byte) = self.input.get(self.pos) else {
                    break;
                };
                self.buf |= u64::from(byte) << self.count;
                self.count += 8;
                self.pos += 1;
            }
        }
        self.buf & ((1 << n) - 1)
    }

    fn consume(&mut self, n: u32) -> Result<(), DecodeError> {
        if n > self.count {
            return Err(corrupt("gzip: truncated deflate data", self.input.len()));
        }
        self.buf >>= n;
        self.count -= n;
        Ok(())
    }

    fn take(&mut self, n: u32) -> Result<usize, DecodeError> {
        let value = self.peek(n);
        self.consume(n)?;
        Ok(value as usize)
    }

    /// Drops the bits up to the next byte boundary and gives back the whole bytes read ahead, so
    /// that `pos` is the next byte (stored blocks and the trailer are read byte-wise).
    fn align(&mut self) {
        self.pos = self.offset();
        self.buf = 0;
        self.count = 0;
    }
}

/// A canonical Huffman code (RFC 1951 §3.2.2) of up to `N` symbols.
struct Huffman<const N: usize> {
    /// How many codes have each length (0 = unused symbols).
    count: [u16; 16],
    /// The symbols in code order.
    symbol: [u16; N],
    /// By the next FAST_BITS input bits: `symbol << 4 | length` of a code that short, else 0.
    fast: [u16; 1 << FAST_BITS],
}

impl<const N: usize> Huffman<N> {
    const fn new() -> Self {
        Huffman {
            count: [0; 16],
            symbol: [0; N],
            fast: [0; 1 << FAST_BITS],
        }
    }

    /// Builds the code from the code length of each symbol (each <= 15, at most `N`). Returns
    /// how many codes are left unused at the longest length: negative for an over-subscribed
    /// set (not a prefix code), positive for an incomplete one.
    fn build(&mut self, lengths: &[u8]) -> i32 {
        self.count = [0; 16];
        for &len in lengths {
            if let Some(c) = self.count.get_mut(usize::from(len)) {
                *c += 1;
            }
        }
        let mut left: i32 = 1;
        for &c in self.count.iter().skip(1) {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return left;
            }
        }
        // Where each length's symbols start in `symbol`.
        let mut next = [0u16; 16];
        for len in 1..15 {
            next[len + 1] = next[len] + self.count[len];
        }
        for (sym, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            if let Some(at) = next.get_mut(usize::from(len)) {
                if let Some(slot) = self.symbol.get_mut(usize::from(*at)) {
                    *slot = sym as u16;
                }
                *at += 1;
            }
        }
        // The fast table: each short code, bit-reversed (codes are sent most significant bit
        // first into a stream read least significant first), at every index it prefixes.
        self.fast = [0; 1 << FAST_BITS];
        let (mut code, mut index) = (0u32, 0usize);
        for len in 1..=FAST_BITS {
            for _ in 0..self.count[len as usize] {
                let sym = self.symbol.get(index).copied().unwrap_or(0);
                index += 1;
                let mut i = (code.reverse_bits() >> (32 - len)) as usize;
                while let Some(slot) = self.fast.get_mut(i) {
                    *slot = sym << 4 | len as u16;
                    i += 1 << len;
                }
                code += 1;
            }
            code <<= 1;
        }
        left
    }

    fn decode(&self, bits: &mut Bits) -> Result<usize, DecodeError> {
        let peek = bits.peek(MAX_CODE_BITS);
        let entry = self
            .fast
            .get((peek & ((1 << FAST_BITS) - 1)) as usize)
            .copied()
            .unwrap_or(0);
        if entry != 0 {
            bits.consume(u32::from(entry & 15))?;
            return Ok(usize::from(entry >> 4));
        }
        // A longer code: walk the lengths, one bit at a time (zlib's puff.c).
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..=MAX_CODE_BITS {
            code |= ((peek >> (len - 1)) & 1) as i32;
            let count = i32::from(self.count[len as usize]);
            if code - count < first {
                bits.consume(len)?;
                let sym = self
                    .symbol
                    .get((index + code - first) as usize)
                    .copied()
                    .unwrap_or(0);
                return Ok(usize::from(sym));
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(corrupt("gzip: invalid Huffman code", bits.offset()))
    }
}

#[derive(Clone, Copy)]
enum State {
    /// A member's header is next (the first, or one after a trailer).
    Header,
    BlockHeader,
    /// Inside a stored block, with this many bytes left.
    Stored(usize),
    /// Inside a Huffman-coded block.
    Codes,
    /// A match not yet written in full.
    Copy {
        len: usize,
        dist: usize,
    },
    Trailer,
    End,
}

/// A gzip stream decoder; see the module comment.
pub struct Gzip<'a> {
    bits: Bits<'a>,
    window: &'a mut [u8; WINDOW],
    /// Where the next output byte goes in `window`.
    window_pos: usize,
    state: State,
    /// The current block is the member's last.
    last_block: bool,
    /// Bytes out of the current member, for the distance check and ISIZE.
    member_len: u64,
    member_crc: u32,
    litlen: Huffman<288>,
    dist: Huffman<32>,
}

impl<'a> Gzip<'a> {
    pub fn new(input: &'a [u8], window: &'a mut [u8; WINDOW]) -> Self {
        Gzip {
            bits: Bits {
                input,
                pos: 0,
                buf: 0,
                count: 0,
            },
            window,
            window_pos: 0,
            state: State::Header,
            last_block: false,
            member_len: 0,
            member_crc: 0,
            litlen: Huffman::new(),
            dist: Huffman::new(),
        }
    }

    /// The member header (RFC 1952 §2.3): magic, method, flags, and the optional fields to skip.
    fn header(&mut self) -> Result<(), DecodeError> {
        let input = self.bits.input;
        let start = self.bits.pos;
        let truncated = corrupt("gzip: truncated header", input.len());
        // The magic first, as far as the input goes: trailing bytes that are not a member are
        // named as such, not as a truncated one.
        let magic = [0x1f, 0x8b];
        let present = input.get(start..).unwrap_or(&[]);
        if !present.iter().zip(magic).all(|(&a, b)| a == b) {
            return Err(corrupt("gzip: bad header magic", start));
        }
        let fixed = input.get(start..start + 10).ok_or(truncated)?;
        if fixed.get(2) != Some(&8) {
            return Err(unsupported(
                "gzip: compression method is not deflate",
                start + 2,
            ));
        }
        let flags = fixed.get(3).copied().unwrap_or(0);
        if flags & FRESERVED != 0 {
            return Err(corrupt("gzip: reserved header flags set", start + 3));
        }
        let mut pos = start + 10;
        if flags & FEXTRA != 0 {
            let len = input.get(pos..pos + 2).ok_or(truncated)?;
            pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
        }
        for flag in [FNAME, FCOMMENT] {
            if flags & flag != 0 {
                let text = input.get(pos..).ok_or(truncated)?;
                pos += 1 + text.iter().position(|&b| b == 0).ok_or(truncated)?;
            }
        }
        if flags & FHCRC != 0 {
            let stored = input.get(pos..pos + 2).ok_or(truncated)?;
            let header = input.get(start..pos).ok_or(truncated)?;
            if u16::from_le_bytes([stored[0], stored[1]]) != crc32(0, header) as u16 {
                return Err(corrupt("gzip: header CRC mismatch", pos));
            }
            pos += 2;
        }
        if pos > input.len() {
            return Err(truncated);
        }
        self.bits.pos = pos;
        self.member_len = 0;
        self.member_crc = 0;
        Ok(())
    }

    /// The member trailer (RFC 1952 §2.3): CRC-32 and length of the data, both modulo 2^32.
    fn trailer(&mut self) -> Result<State, DecodeError> {
        self.bits.align();
        let input = self.bits.input;
        let pos = self.bits.pos;
        let trailer = input
            .get(pos..pos + 8)
            .ok_or(corrupt("gzip: truncated trailer", input.len()))?;
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc != self.member_crc {
            return Err(corrupt("gzip: CRC-32 mismatch (corrupted data)", pos));
        }
        if size != self.member_len as u32 {
            return Err(corrupt("gzip: length mismatch (ISIZE)", pos + 4));
        }
        self.bits.pos = pos + 8;
        Ok(if self.bits.pos == input.len() {
            State::End
        } else {
            State::Header
        })
    }

    /// A block header (RFC 1951 §3.2.3), and the codes of a Huffman-coded block.
    fn block_header(&mut self) -> Result<State, DecodeError> {
        let at = self.bits.offset();
        let header = self.bits.take(3)?;
        self.last_block = header & 1 != 0;
        match header >> 1 {
            0 => {
                self.bits.align();
                let pos = self.bits.pos;
                let input = self.bits.input;
                let lens = input
                    .get(pos..pos + 4)
                    .ok_or(corrupt("gzip: truncated deflate data", input.len()))?;
                let len = u16::from_le_bytes([lens[0], lens[1]]);
                if len != !u16::from_le_bytes([lens[2], lens[3]]) {
                    return Err(corrupt(
                        "gzip: stored block length does not match its complement",
                        pos,
                    ));
                }
                self.bits.pos = pos + 4;
                Ok(State::Stored(usize::from(len)))
            }
            1 => {
                // The fixed code (RFC 1951 §3.2.6).
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                self.litlen.build(&lengths);
                self.dist.build(&[5; 30]);
                Ok(State::Codes)
            }
            2 => {
                self.dynamic_codes()?;
                Ok(State::Codes)
            }
            _ => Err(corrupt("gzip: invalid block type", at)),
        }
    }

    /// The code lengths of a dynamic block (RFC 1951 §3.2.7).
    fn dynamic_codes(&mut self) -> Result<(), DecodeError> {
        let at = self.bits.offset();
        let nlen = self.bits.take(5)? + 257;
        let ndist = self.bits.take(5)? + 1;
        let ncode = self.bits.take(4)? + 4;
        if nlen > 286 || ndist > 30 {
            return Err(corrupt("gzip: too many length or distance codes", at));
        }
        let mut lengths = [0u8; 286 + 30];
        for &sym in CODE_LENGTH_ORDER.iter().take(ncode) {
            lengths[sym] = self.bits.take(3)? as u8;
        }
        let mut code_lengths: Huffman<19> = Huffman::new();
        if code_lengths.build(lengths.get(..19).unwrap_or(&[])) != 0 {
            return Err(corrupt("gzip: invalid code-length code", at));
        }
        let mut filled = 0;
        while filled < nlen + ndist {
            let sym = code_lengths.decode(&mut self.bits)?;
            let (value, repeat) = match sym {
                0..=15 => (sym as u8, 1),
                16 => {
                    let previous = filled.checked_sub(1).and_then(|i| lengths.get(i));
                    let previous = *previous.ok_or(corrupt(
                        "gzip: code length repeat with no previous length",
                        at,
                    ))?;
                    (previous, 3 + self.bits.take(2)?)
                }
                17 => (0, 3 + self.bits.take(3)?),
                _ => (0, 11 + self.bits.take(7)?),
            };
            let run = lengths
                .get_mut(filled..filled + repeat)
                .filter(|_| filled + repeat <= nlen + ndist)
                .ok_or(corrupt("gzip: code lengths overrun the codes", at))?;
            run.fill(value);
            filled += repeat;
        }
        let (litlen, dist) = lengths.split_at(nlen);
        let dist = dist.get(..ndist).unwrap_or(&[]);
        if litlen.get(256) == Some(&0) {
            return Err(corrupt("gzip: block has no end-of-block code", at));
        }
        // An incomplete code is only allowed when it has no code longer than one bit: one
        // distance code, or none (RFC 1951 §3.2.7; zlib's inflate_table).
        let complete =
            |left: i32, lengths: &[u8]| left == 0 || (left > 0 && lengths.iter().all(|&l| l <= 1));
        let left = self.litlen.build(litlen);
        if !complete(left, litlen) {
            return Err(corrupt("gzip: invalid literal/length code", at));
        }
        let left = self.dist.build(dist);
        if !complete(left, dist) {
            return Err(corrupt("gzip: invalid distance code", at));
        }
        Ok(())
    }

    /// One byte out: into `out` at `n` and into the history.
    fn put(&mut self, out: &mut [u8], n: &mut usize, byte: u8) {
        if let Some(slot) = out.get_mut(*n) {
            *slot = byte;
            *n += 1;
        }
        self.window[self.window_pos & WINDOW_MASK] = byte;
        self.window_pos = (self.window_pos + 1) & WINDOW_MASK;
        self.member_len += 1;
    }

    /// Decodes into `out` from `*n` on until it is full or the stream ends.
    fn fill(
        &mut self,
        out: &mut [u8],
        n: &mut usize,
        crc_from: &mut usize,
    ) -> Result<(), DecodeError> {
        while *n < out.len() {
            self.state = match self.state {
                State::End => return Ok(()),
                State::Header => {
                    self.header()?;
                    State::BlockHeader
                }
                State::BlockHeader => self.block_header()?,
                State::Stored(left) => {
                    let pos = self.bits.pos;
                    let take = left.min(out.len() - *n);
                    let input = self.bits.input;
                    let data = input
                        .get(pos..pos + take)
                        .ok_or(corrupt("gzip: truncated stored block", input.len()))?;
                    for &byte in data {
                        self.put(out, n, byte);
                    }
                    self.bits.pos = pos + take;
                    match left - take {
                        0 if self.last_block => State::Trailer,
                        0 => State::BlockHeader,
                        left => State::Stored(left),
                    }
                }
                State::Codes => loop {
                    if *n == out.len() {
                        break State::Codes;
                    }
                    let sym = self.litlen.decode(&mut self.bits)?;
                    if sym < 256 {
                        self.put(out, n, sym as u8);
                        continue;
                    }
                    if sym == 256 {
                        break if self.last_block {
                            State::Trailer
                        } else {
                            State::BlockHeader
                        };
                    }
                    let at = self.bits.offset();
                    let code = sym - 257;
                    let (Some(&base), Some(&extra)) =
                        (LENGTH_BASE.get(code), LENGTH_EXTRA.get(code))
                    else {
                        return Err(corrupt("gzip: invalid length code", at));
                    };
                    let len = usize::from(base) + self.bits.take(u32::from(extra))?;
                    let code = self.dist.decode(&mut self.bits)?;
                    let (Some(&base), Some(&extra)) = (DIST_BASE.get(code), DIST_EXTRA.get(code))
                    else {
                        return Err(corrupt("gzip: invalid distance code", at));
                    };
                    let dist = usize::from(base) + self.bits.take(u32::from(extra))?;
                    if dist as u64 > self.member_len {
                        return Err(corrupt(
                            "gzip: distance reaches before the start of the data",
                            at,
                        ));
                    }
                    break State::Copy { len, dist };
                },
                State::Copy { len, dist } => {
                    let take = len.min(out.len() - *n);
                    for _ in 0..take {
                        let byte = self.window[self.window_pos.wrapping_sub(dist) & WINDOW_MASK];
                        self.put(out, n, byte);
                    }
                    if take == len {
                        State::Codes
                    } else {
                        State::Copy {
                            len: len - take,
                            dist,
                        }
                    }
                }
                State::Trailer => {
                    self.member_crc = crc32(self.member_crc, out.get(*crc_from..*n).unwrap_or(&[]));
                    *crc_from = *n;
                    self.trailer()?
                }
            };
        }
        Ok(())
    }
}

impl Source for Gzip<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DecodeError> {
        let (mut n, mut crc_from) = (0, 0);
        // A trailer the last call stopped before is checked now, even with nothing left to
        // decode, so that the end of the stream (0) comes only after it.
        if matches!(self.state, State::Trailer) {
            self.state = self.trailer()?;
        }
        let result = self.fill(out, &mut n, &mut crc_from);
        self.member_crc = crc32(self.member_crc, out.get(crc_from..n).unwrap_or(&[]));
        result.map(|()| n)
    }
}

/// CRC-32 with the polynomial of gzip (RFC 1952 §8), reflected, one byte per table look-up.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// `crc` (of the data so far) extended with `data`.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &byte in data {
        c = CRC_TABLE[((c ^ u32::from(byte)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}
