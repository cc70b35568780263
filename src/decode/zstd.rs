//! Zstandard (RFC 8878): the `tar+zstd` layers, zstd:chunked included (many frames, then
//! skippable frames that a plain decoder passes over).
//!
//! A block (at most 128 KiB) is decoded whole into the caller's window buffer, a ring at least
//! as large as the frame's window, and handed out from there by `read`; the ring keeps the
//! history that later matches copy from. No dictionaries (OCI layers do not use them).

use super::{corrupt, unsupported, DecodeError, Source};

const FRAME_MAGIC: u32 = 0xfd2f_b528;
/// Skippable frames: 0x184D2A50..0x184D2A5F, then a little-endian length (RFC 8878 §3.1.2).
const SKIPPABLE_MAGIC: u32 = 0x184d_2a50;
const SKIPPABLE_MASK: u32 = 0xffff_fff0;
/// The largest block's content (RFC 8878 §3.1.1.2.3).
const BLOCK_MAX: usize = 128 << 10;
/// The largest window taken: 128 MiB, the default limit of zstd's own decoder (`--long`
/// streams use it; more needs `--memory=` there too).
pub const MAX_WINDOW: u64 = 1 << 27;

/// Literal length codes 16..35 and match length codes 32..52 have extra bits (RFC 8878
/// §3.1.1.3.2.1.1); their base values follow from them, each code's base being the previous
/// one's plus its range.
const LL_EXTRA_BITS: [u8; 36] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 10, 11,
    12, 13, 14, 15, 16,
];
const ML_EXTRA_BITS: [u8; 53] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
];
const LL_BASE: [u32; 36] = bases(&LL_EXTRA_BITS, 0);
const ML_BASE: [u32; 53] = bases(&ML_EXTRA_BITS, 3);

const fn bases<const N: usize>(extra_bits: &[u8; N], first: u32) -> [u32; N] {
    let mut base = [0; N];
    let mut i = 0;
    let mut next = first;
    while i < N {
        base[i] = next;
        next += 1 << extra_bits[i];
        i += 1;
    }
    base
}

/// The predefined distributions of the sequence codes and their accuracy logs (RFC 8878
/// §3.1.1.3.2.2); -1 is "less than 1".
const LL_DEFAULT: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
    -1, -1, -1, -1,
];
const ML_DEFAULT: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
const OF_DEFAULT: [i16; 29] = [
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];

/// A frame header's facts (RFC 8878 §3.1.1.1).
#[derive(Clone, Copy)]
struct FrameHeader {
    window: usize,
    content_size: Option<u64>,
    checksum: bool,
    /// Where the first block header is.
    blocks: usize,
}

enum FrameStart {
    Frame(FrameHeader),
    /// A skippable frame; the next frame starts there.
    Skip(usize),
}

/// A little-endian number of up to 8 bytes (8 in one load: the bit readers' common case).
fn le(bytes: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(bytes) {
        Ok(word) => u64::from_le_bytes(word),
        Err(_) => bytes.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b)),
    }
}

/// The frame (or skippable frame) at `pos`.
fn frame_start(input: &[u8], pos: usize) -> Result<FrameStart, DecodeError> {
    let truncated = corrupt("zstd: truncated frame header", input.len());
    let magic = le(input.get(pos..pos + 4).ok_or(truncated)?) as u32;
    if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
        let size = le(input.get(pos + 4..pos + 8).ok_or(truncated)?) as usize;
        let end = (pos + 8).saturating_add(size);
        if end > input.len() {
            return Err(corrupt("zstd: truncated skippable frame", input.len()));
        }
        return Ok(FrameStart::Skip(end));
    }
    if magic != FRAME_MAGIC {
        return Err(corrupt("zstd: bad frame magic", pos));
    }
    let descriptor = *input.get(pos + 4).ok_or(truncated)?;
    let size_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        return Err(corrupt("zstd: reserved frame header bit set", pos + 4));
    }
    let checksum = descriptor & 0x04 != 0;
    let dict_id_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let mut at = pos + 5;
    let mut window = 0;
    if !single_segment {
        let byte = *input.get(at).ok_or(truncated)?;
        let log = 10 + u32::from(byte >> 3);
        if log > MAX_WINDOW.trailing_zeros() {
            return Err(unsupported("zstd: window larger than 128 MiB", at));
        }
        let base = 1u64 << log;
        window = base + (base / 8) * u64::from(byte & 7);
        at += 1;
    }
    let dict_id = le(input.get(at..at + dict_id_len).ok_or(truncated)?);
    if dict_id != 0 {
        return Err(unsupported("zstd: frame needs a dictionary", at));
    }
    at += dict_id_len;
    let size_len = match size_flag {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let size_bytes = input.get(at..at + size_len).ok_or(truncated)?;
    let content_size = match size_len {
        0 => None,
        2 => Some(le(size_bytes) + 256),
        _ => Some(le(size_bytes)),
    };
    at += size_len;
    if single_segment {
        window = content_size.unwrap_or(0);
    }
    if window > MAX_WINDOW {
        return Err(unsupported("zstd: window larger than 128 MiB", pos + 4));
    }
    Ok(FrameStart::Frame(FrameHeader {
        window: window as usize,
        content_size,
        checksum,
        blocks: at,
    }))
}

/// A block header (RFC 8878 §3.1.1.2): last block, type, size.
fn block_header(input: &[u8], pos: usize) -> Result<(bool, u8, usize), DecodeError> {
    let header = le(input
        .get(pos..pos + 3)
        .ok_or(corrupt("zstd: truncated block header", input.len()))?) as usize;
    Ok((header & 1 != 0, (header >> 1 & 3) as u8, header >> 3))
}

/// Bits read backwards from the end of a slice, whose last byte marks the start with its
/// highest set bit (RFC 8878 §4.1). Past the start the bits read as zeros and `left` goes
/// negative, which the callers check.
struct BackBits<'a> {
    data: &'a [u8],
    /// Bits not yet read: the ones at positions 0..left.
    left: i64,
}

impl<'a> BackBits<'a> {
    fn new(data: &'a [u8], at: usize) -> Result<Self, DecodeError> {
        match data.last() {
            Some(&last) if last != 0 => Ok(BackBits {
                data,
                left: data.len() as i64 * 8 - i64::from(last.leading_zeros()) - 1,
            }),
            _ => Err(corrupt("zstd: bitstream without its end mark", at)),
        }
    }

    /// 8 bytes from `at`, zeros past the end.
    fn load(&self, at: usize) -> u64 {
        match self.data.get(at..at + 8) {
            Some(bytes) => le(bytes),
            None => le(self.data.get(at..).unwrap_or(&[])),
        }
    }

    /// The next `n` (<= 56) bits, the most significant first.
    fn peek(&self, n: u32) -> u64 {
        let start = self.left - i64::from(n);
        let mask = (1u64 << n) - 1;
        if start >= 0 {
            (self.load((start / 8) as usize) >> (start % 8)) & mask
        } else if self.left <= 0 {
            0
        } else {
            (self.load(0) << -start) & mask
        }
    }

    fn read(&mut self, n: u32) -> u64 {
        let value = self.peek(n);
        self.left -= i64::from(n);
        value
    }
}

/// Bits read forwards, least significant first (FSE table descriptions, RFC 8878 §4.1.1).
struct ForwardBits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl ForwardBits<'_> {
    /// The next `n` (<= 16) bits.
    fn read(&mut self, n: u32, at: usize) -> Result<u32, DecodeError> {
        let start = self.pos;
        self.pos += n as usize;
        if self.pos > self.data.len() * 8 {
            return Err(corrupt("zstd: truncated FSE table description", at));
        }
        let bytes = self.data.get(start / 8..).unwrap_or(&[]);
        let word = le(bytes.get(..8).unwrap_or(bytes));
        Ok(((word >> (start % 8)) & ((1 << n) - 1)) as u32)
    }
}

#[derive(Clone, Copy, Default)]
struct FseEntry {
    symbol: u8,
    bits: u8,
    base: u16,
}

/// An FSE decoding table of at most `N` states (RFC 8878 §4.1).
struct Fse<const N: usize> {
    table: [FseEntry; N],
    log: u32,
    /// Built in this frame (a `Repeat` mode may use it).
    present: bool,
}

impl<const N: usize> Fse<N> {
    const fn new() -> Self {
        Fse {
            table: [FseEntry {
                symbol: 0,
                bits: 0,
                base: 0,
            }; N],
            log: 0,
            present: false,
        }
    }

    fn entry(&self, state: usize) -> FseEntry {
        self.table.get(state).copied().unwrap_or_default()
    }

    /// The first state, from `log` bits.
    fn first(&self, bits: &mut BackBits) -> usize {
        bits.read(self.log) as usize
    }

    fn next(&self, state: usize, bits: &mut BackBits) -> usize {
        let e = self.entry(state);
        usize::from(e.base) + bits.read(u32::from(e.bits)) as usize
    }

    /// A table of one symbol (`RLE` mode).
    fn rle(&mut self, symbol: u8) {
        self.table[0] = FseEntry {
            symbol,
            bits: 0,
            base: 0,
        };
        self.log = 0;
        self.present = true;
    }

    /// Reads a table description (RFC 8878 §4.1.1) and builds the table; returns its length.
    fn read(
        &mut self,
        data: &[u8],
        max_log: u32,
        max_symbol: usize,
        at: usize,
    ) -> Result<usize, DecodeError> {
        let bad = corrupt("zstd: invalid FSE table description", at);
        let mut bits = ForwardBits { data, pos: 0 };
        let log = bits.read(4, at)? + 5;
        if log > max_log {
            return Err(corrupt("zstd: FSE accuracy log too large", at));
        }
        let mut counts = [0i16; 256];
        let mut remaining: i32 = (1 << log) + 1;
        let mut threshold: i32 = 1 << log;
        let mut width = log + 1;
        let mut symbol = 0;
        while remaining > 1 {
            if symbol > max_symbol {
                return Err(bad);
            }
            // Small values take one bit less (RFC 8878 §4.1.1).
            let max = (2 * threshold - 1) - remaining;
            let before = bits.pos;
            let low = bits.read(width - 1, at)? as i32;
            let value = if low < max {
                low
            } else {
                bits.pos = before;
                let full = bits.read(width, at)? as i32;
                if full >= threshold {
                    full - max
                } else {
                    full
                }
            };
            let count = value - 1;
            remaining -= count.abs();
            *counts.get_mut(symbol).ok_or(bad)? = count as i16;
            symbol += 1;
            if count == 0 {
                // Then 2-bit counts of further zero probabilities, 3 meaning "and more".
                loop {
                    let repeat = bits.read(2, at)? as usize;
                    symbol += repeat;
                    if repeat != 3 {
                        break;
                    }
                }
            }
            if remaining < 1 {
                return Err(bad);
            }
            while remaining < threshold {
                width -= 1;
                threshold >>= 1;
            }
        }
        if remaining != 1 || symbol > max_symbol + 1 {
            return Err(bad);
        }
        self.build(counts.get(..symbol).ok_or(bad)?, log, at)?;
        Ok(bits.pos.div_ceil(8))
    }

    /// Spreads the symbols over the states by their normalized counts (RFC 8878 §4.1.1).
    fn build(&mut self, counts: &[i16], log: u32, at: usize) -> Result<(), DecodeError> {
        let bad = corrupt("zstd: invalid FSE distribution", at);
        let size = 1usize << log;
        if size > N || counts.len() > 256 {
            return Err(bad);
        }
        let mut next = [0u16; 256];
        // "Less than 1" symbols take the last states, one each.
        let mut high = size;
        for (symbol, &count) in counts.iter().enumerate() {
            if count == -1 {
                high = high.checked_sub(1).ok_or(bad)?;
                self.table[high].symbol = symbol as u8;
                next[symbol] = 1;
            } else {
                next[symbol] = count.max(0) as u16;
            }
        }
        let step = (size >> 1) + (size >> 3) + 3;
        let mask = size - 1;
        let mut pos = 0;
        for (symbol, &count) in counts.iter().enumerate() {
            for _ in 0..count.max(0) {
                self.table.get_mut(pos).ok_or(bad)?.symbol = symbol as u8;
                loop {
                    pos = (pos + step) & mask;
                    if pos < high {
                        break;
                    }
                }
            }
        }
        if pos != 0 {
            return Err(bad);
        }
        for entry in self.table.iter_mut().take(size) {
            let slot = next.get_mut(usize::from(entry.symbol)).ok_or(bad)?;
            let x = u32::from(*slot);
            *slot += 1;
            if x == 0 {
                return Err(bad);
            }
            let bits = log - (31 - x.leading_zeros());
            entry.bits = bits as u8;
            entry.base = ((x << bits) as usize - size) as u16;
        }
        self.log = log;
        self.present = true;
        Ok(())
    }
}

/// The Huffman code of the literals (RFC 8878 §4.2), kept for treeless literal sections.
struct Huffman {
    /// By the next `max_bits` bits: `symbol | bits << 8`.
    table: [u16; 1 << 11],
    max_bits: u32,
    present: bool,
}

impl Huffman {
    /// Reads a Huffman tree description (RFC 8878 §4.2.1); returns its length.
    fn read(&mut self, data: &[u8], at: usize) -> Result<usize, DecodeError> {
        let bad = corrupt("zstd: invalid Huffman tree description", at);
        let header = usize::from(*data.first().ok_or(bad)?);
        let mut weights = [0u8; 256];
        let mut count = 0;
        let used;
        if header < 128 {
            // The weights are FSE-coded, with two interleaved states.
            used = 1 + header;
            let coded = data.get(1..used).ok_or(bad)?;
            let mut fse: Fse<64> = Fse::new();
            let table_len = fse.read(coded, 6, 255, at)?;
            let mut bits = BackBits::new(coded.get(table_len..).ok_or(bad)?, at)?;
            let mut states = [fse.first(&mut bits), fse.first(&mut bits)];
            let mut turn = 0;
            loop {
                let state = states[turn & 1];
                *weights.get_mut(count).ok_or(bad)? = fse.entry(state).symbol;
                count += 1;
                states[turn & 1] = fse.next(state, &mut bits);
                if bits.left < 0 {
                    // The stream is over: the other state gives one last weight.
                    *weights.get_mut(count).ok_or(bad)? = fse.entry(states[(turn + 1) & 1]).symbol;
                    count += 1;
                    break;
                }
                turn += 1;
            }
        } else {
            // 4 bits per weight.
            count = header - 127;
            used = 1 + count.div_ceil(2);
            let packed = data.get(1..used).ok_or(bad)?;
            for (i, weight) in weights.iter_mut().take(count).enumerate() {
                let byte = packed.get(i / 2).copied().unwrap_or(0);
                *weight = if i % 2 == 0 { byte >> 4 } else { byte & 15 };
            }
        }
        // The last symbol's weight is implied: what completes the sum to a power of two.
        let mut sum = 0u32;
        for &w in weights.iter().take(count) {
            if w > 11 {
                return Err(bad);
            }
            sum += (1 << w) >> 1;
        }
        if sum == 0 {
            return Err(bad);
        }
        let max_bits = 32 - sum.leading_zeros();
        let rest = (1u32 << max_bits) - sum;
        if max_bits > 11 || !rest.is_power_of_two() {
            return Err(bad);
        }
        *weights.get_mut(count).ok_or(bad)? = rest.trailing_zeros() as u8 + 1;
        count += 1;
        // Each symbol of weight w takes 2^(w-1) consecutive entries, lowest weights first.
        let mut start = [0usize; 13];
        for &w in weights.iter().take(count) {
            if w > 0 {
                start[usize::from(w) + 1] += 1 << (w - 1);
            }
        }
        for w in 1..12 {
            start[w + 1] += start[w];
        }
        for (symbol, &w) in weights.iter().enumerate().take(count) {
            if w == 0 {
                continue;
            }
            let from = start[usize::from(w)];
            let len = 1 << (w - 1);
            let entry = symbol as u16 | ((max_bits + 1 - u32::from(w)) as u16) << 8;
            self.table.get_mut(from..from + len).ok_or(bad)?.fill(entry);
            start[usize::from(w)] += len;
        }
        self.max_bits = max_bits;
        self.present = true;
        Ok(used)
    }

    /// Decodes one stream of literals into `out`; the stream must end exactly.
    fn decode(&self, data: &[u8], out: &mut [u8], at: usize) -> Result<(), DecodeError> {
        let mut bits = BackBits::new(data, at)?;
        for byte in out.iter_mut() {
            let entry = self
                .table
                .get(bits.peek(self.max_bits) as usize)
                .copied()
                .unwrap_or(0);
            *byte = entry as u8;
            bits.left -= i64::from(entry >> 8);
        }
        if bits.left != 0 {
            return Err(corrupt(
                "zstd: Huffman stream does not end with its literals",
                at,
            ));
        }
        Ok(())
    }
}

/// XXH64 (seed 0), for the content checksum: its low 32 bits end a frame that has one.
struct Xxh64 {
    lanes: [u64; 4],
    buf: [u8; 32],
    buffered: usize,
    total: u64,
}

/// The XXH64 primes (xxHash specification).
const P1: u64 = 0x9e37_79b1_85eb_ca87;
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
const P3: u64 = 0x1656_67b1_9e37_79f9;
const P4: u64 = 0x85eb_ca77_c2b2_ae63;
const P5: u64 = 0x27d4_eb2f_1656_67c5;

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

impl Xxh64 {
    fn new() -> Self {
        Xxh64 {
            lanes: [P1.wrapping_add(P2), P2, 0, P1.wrapping_neg()],
            buf: [0; 32],
            buffered: 0,
            total: 0,
        }
    }

    fn stripe(&mut self, stripe: &[u8]) {
        for (lane, word) in self.lanes.iter_mut().zip(stripe.chunks_exact(8)) {
            *lane = xxh_round(*lane, le(word));
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.buffered > 0 {
            let take = data.len().min(32 - self.buffered);
            let (head, rest) = data.split_at(take);
            if let Some(room) = self.buf.get_mut(self.buffered..self.buffered + take) {
                room.copy_from_slice(head);
            }
            self.buffered += take;
            data = rest;
            if self.buffered < 32 {
                return;
            }
            let buf = self.buf;
            self.stripe(&buf);
            self.buffered = 0;
        }
        let mut stripes = data.chunks_exact(32);
        for stripe in &mut stripes {
            self.stripe(stripe);
        }
        let tail = stripes.remainder();
        if let Some(room) = self.buf.get_mut(..tail.len()) {
            room.copy_from_slice(tail);
        }
        self.buffered = tail.len();
    }

    fn finish(&self) -> u64 {
        let [v1, v2, v3, v4] = self.lanes;
        let mut h = if self.total >= 32 {
            let mut h = v1
                .rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18));
            for v in self.lanes {
                h = (h ^ xxh_round(0, v)).wrapping_mul(P1).wrapping_add(P4);
            }
            h
        } else {
            P5
        };
        h = h.wrapping_add(self.total);
        let mut rest = self.buf.get(..self.buffered).unwrap_or(&[]);
        while rest.len() >= 8 {
            h = (h ^ xxh_round(0, le(&rest[..8])))
                .rotate_left(27)
                .wrapping_mul(P1)
                .wrapping_add(P4);
            rest = &rest[8..];
        }
        if rest.len() >= 4 {
            h = (h ^ le(&rest[..4]).wrapping_mul(P1))
                .rotate_left(23)
                .wrapping_mul(P2)
                .wrapping_add(P3);
            rest = &rest[4..];
        }
        for &byte in rest {
            h = (h ^ u64::from(byte).wrapping_mul(P5))
                .rotate_left(11)
                .wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// The window buffer as a ring: the decoded bytes are written at `pos`; the last `pending`
/// of them are not handed out yet.
struct Ring<'a> {
    buf: &'a mut [u8],
    pos: usize,
    pending: usize,
}

impl Ring<'_> {
    fn advance(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.pos -= self.buf.len();
        }
        self.pending += n;
    }

    /// `data` (no longer than the ring).
    fn push(&mut self, data: &[u8]) {
        let first = data.len().min(self.buf.len() - self.pos);
        let (a, b) = data.split_at(first);
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + first) {
            dst.copy_from_slice(a);
        }
        if let Some(dst) = self.buf.get_mut(..b.len()) {
            dst.copy_from_slice(b);
        }
        self.advance(data.len());
    }

    fn fill(&mut self, byte: u8, mut n: usize) {
        while n > 0 {
            let run = n.min(self.buf.len() - self.pos);
            if let Some(dst) = self.buf.get_mut(self.pos..self.pos + run) {
                dst.fill(byte);
            }
            self.advance(run);
            n -= run;
        }
    }

    /// `len` bytes from `offset` back (0 < offset <= ring length), overlapping as LZ77 does.
    fn copy(&mut self, offset: usize, len: usize) {
        let size = self.buf.len();
        let mut src = if self.pos >= offset {
            self.pos - offset
        } else {
            self.pos + size - offset
        };
        if offset >= len && src + len <= size && self.pos + len <= size {
            self.buf.copy_within(src..src + len, self.pos);
            self.advance(len);
            return;
        }
        for _ in 0..len {
            let byte = self.buf.get(src).copied().unwrap_or(0);
            if let Some(dst) = self.buf.get_mut(self.pos) {
                *dst = byte;
            }
            src = if src + 1 == size { 0 } else { src + 1 };
            self.advance(1);
        }
    }

    /// The last `n` bytes written, in at most two pieces.
    fn last(&self, n: usize) -> (&[u8], &[u8]) {
        if n <= self.pos {
            (self.buf.get(self.pos - n..self.pos).unwrap_or(&[]), &[])
        } else {
            let wrapped = n - self.pos;
            let from = self.buf.len().saturating_sub(wrapped);
            (
                self.buf.get(from..).unwrap_or(&[]),
                self.buf.get(..self.pos).unwrap_or(&[]),
            )
        }
    }
}

/// The frame being decoded.
struct Frame {
    header: FrameHeader,
    /// Bytes decoded in this frame (the reach of offsets, and the content size check).
    decoded: u64,
    checksum: Xxh64,
    /// The last block is decoded: the checksum and the next frame follow.
    blocks_done: bool,
}

/// A Zstandard stream decoder; see the module comment.
pub struct Zstd<'a> {
    input: &'a [u8],
    /// The next byte of input to read.
    pos: usize,
    ring: Ring<'a>,
    frame: Option<Frame>,
    /// The literals of the block being decoded.
    literals: [u8; BLOCK_MAX],
    huffman: Huffman,
    literal_lengths: Fse<512>,
    offsets: Fse<256>,
    match_lengths: Fse<512>,
    /// The repeat offsets (RFC 8878 §3.1.2.5).
    repeat: [usize; 3],
}

impl<'a> Zstd<'a> {
    /// The largest window over the frames of `input`: the least buffer `new` takes. Walks the
    /// frame and block headers only.
    pub fn window_size(input: &[u8]) -> Result<usize, DecodeError> {
        if input.is_empty() {
            return Err(corrupt("zstd: empty input", 0));
        }
        let (mut pos, mut largest) = (0, 0);
        while pos < input.len() {
            let header = match frame_start(input, pos)? {
                FrameStart::Skip(next) => {
                    pos = next;
                    continue;
                }
                FrameStart::Frame(header) => header,
            };
            largest = largest.max(header.window);
            pos = header.blocks;
            loop {
                let (last, kind, size) = block_header(input, pos)?;
                pos += 3 + if kind == 1 { 1 } else { size };
                if last {
                    break;
                }
            }
            pos += if header.checksum { 4 } else { 0 };
        }
        if pos > input.len() {
            return Err(corrupt("zstd: truncated frame", input.len()));
        }
        Ok(largest)
    }

    /// A decoder of `input` with `window` (at least `window_size(input)` bytes) as its ring.
    pub fn new(input: &'a [u8], window: &'a mut [u8]) -> Result<Self, DecodeError> {
        if Self::window_size(input)? > window.len() {
            return Err(unsupported("zstd: window larger than the buffer", 0));
        }
        Ok(Zstd {
            input,
            pos: 0,
            ring: Ring {
                buf: window,
                pos: 0,
                pending: 0,
            },
            frame: None,
            literals: [0; BLOCK_MAX],
            huffman: Huffman {
                table: [0; 1 << 11],
                max_bits: 0,
                present: false,
            },
            literal_lengths: Fse::new(),
            offsets: Fse::new(),
            match_lengths: Fse::new(),
            repeat: [1, 4, 8],
        })
    }

    /// Starts the frame at `pos`, or passes over a skippable one.
    fn start_frame(&mut self) -> Result<(), DecodeError> {
        match frame_start(self.input, self.pos)? {
            FrameStart::Skip(next) => self.pos = next,
            FrameStart::Frame(header) => {
                if header.window > self.ring.buf.len() {
                    return Err(unsupported("zstd: window larger than the buffer", self.pos));
                }
                self.pos = header.blocks;
                self.frame = Some(Frame {
                    header,
                    decoded: 0,
                    checksum: Xxh64::new(),
                    blocks_done: false,
                });
                self.huffman.present = false;
                self.literal_lengths.present = false;
                self.offsets.present = false;
                self.match_lengths.present = false;
                self.repeat = [1, 4, 8];
            }
        }
        Ok(())
    }

    /// The end of a frame: its content size and checksum.
    fn end_frame(&mut self, frame: &Frame) -> Result<(), DecodeError> {
        if frame
            .header
            .content_size
            .is_some_and(|size| size != frame.decoded)
        {
            return Err(corrupt("zstd: frame content size mismatch", self.pos));
        }
        if frame.header.checksum {
            let stored = self.input.get(self.pos..self.pos + 4);
            let stored = stored.ok_or(corrupt(
                "zstd: truncated content checksum",
                self.input.len(),
            ))?;
            if le(stored) as u32 != frame.checksum.finish() as u32 {
                return Err(corrupt("zstd: content checksum mismatch", self.pos));
            }
            self.pos += 4;
        }
        Ok(())
    }

    /// Decodes the next block of `frame` into the ring.
    fn block(&mut self, frame: &mut Frame) -> Result<(), DecodeError> {
        let at = self.pos;
        let (last, kind, size) = block_header(self.input, at)?;
        let data_at = at + 3;
        let block_max = frame.header.window.min(BLOCK_MAX);
        let too_large = corrupt("zstd: block larger than the window or 128 KiB", at);
        let truncated = corrupt("zstd: truncated block", self.input.len());
        let before = self.ring.pending;
        match kind {
            0 => {
                let data = self.input.get(data_at..data_at + size).ok_or(truncated)?;
                if size > block_max {
                    return Err(too_large);
                }
                self.ring.push(data);
                self.pos = data_at + size;
            }
            1 => {
                let byte = *self.input.get(data_at).ok_or(truncated)?;
                if size > block_max {
                    return Err(too_large);
                }
                self.ring.fill(byte, size);
                self.pos = data_at + 1;
            }
            2 => {
                let data = self.input.get(data_at..data_at + size).ok_or(truncated)?;
                if size > block_max {
                    return Err(too_large);
                }
                self.compressed_block(data, data_at, frame, block_max)?;
                self.pos = data_at + size;
            }
            _ => return Err(corrupt("zstd: reserved block type", at)),
        }
        let produced = self.ring.pending - before;
        frame.decoded += produced as u64;
        if frame.header.checksum {
            let (a, b) = self.ring.last(produced);
            frame.checksum.update(a);
            frame.checksum.update(b);
        }
        frame.blocks_done = last;
        Ok(())
    }

    /// A compressed block (RFC 8878 §3.1.1.3): literals, then the sequences that interleave
    /// them with matches.
    fn compressed_block(
        &mut self,
        data: &[u8],
        at: usize,
        frame: &Frame,
        block_max: usize,
    ) -> Result<(), DecodeError> {
        let (literal_count, used) = self.literals(data, at)?;
        let sequences = data.get(used..).unwrap_or(&[]);
        self.sequences(sequences, at + used, literal_count, frame, block_max)
    }

    /// The literals section (RFC 8878 §3.1.1.3.1) into `self.literals`: their number and the
    /// section's length.
    fn literals(&mut self, data: &[u8], at: usize) -> Result<(usize, usize), DecodeError> {
        let truncated = corrupt("zstd: truncated literals section", at);
        let b0 = usize::from(*data.first().ok_or(truncated)?);
        let byte = |i: usize| data.get(i).map(|&b| usize::from(b)).ok_or(truncated);
        let kind = b0 & 3;
        let size_format = b0 >> 2 & 3;
        if kind < 2 {
            // Raw or RLE: the size in 5, 12 or 20 bits.
            let (count, header) = match size_format {
                0 | 2 => (b0 >> 3, 1),
                1 => ((b0 >> 4) + (byte(1)? << 4), 2),
                _ => ((b0 >> 4) + (byte(1)? << 4) + (byte(2)? << 12), 3),
            };
            let out = self
                .literals
                .get_mut(..count)
                .ok_or(corrupt("zstd: more than 128 KiB of literals", at))?;
            if kind == 0 {
                out.copy_from_slice(data.get(header..header + count).ok_or(truncated)?);
                return Ok((count, header + count));
            }
            out.fill(byte(header)? as u8);
            return Ok((count, header + 1));
        }
        // Huffman-coded, in 1 or 4 streams; sizes in 10, 14 or 18 bits each.
        let (header, field) = match size_format {
            0 | 1 => (3, 10),
            2 => (4, 14),
            _ => (5, 18),
        };
        let sizes = le(data.get(..header).ok_or(truncated)?) >> 4;
        let mask = (1u64 << field) - 1;
        let count = (sizes & mask) as usize;
        let compressed = (sizes >> field & mask) as usize;
        let mut coded = data.get(header..header + compressed).ok_or(truncated)?;
        if count > BLOCK_MAX {
            return Err(corrupt("zstd: more than 128 KiB of literals", at));
        }
        if kind == 2 {
            let tree = self.huffman.read(coded, at + header)?;
            coded = coded.get(tree..).unwrap_or(&[]);
        } else if !self.huffman.present {
            return Err(corrupt(
                "zstd: treeless literals without a previous Huffman table",
                at,
            ));
        }
        let out = self.literals.get_mut(..count).ok_or(truncated)?;
        if size_format == 0 {
            self.huffman.decode(coded, out, at)?;
        } else {
            // Four streams after a jump table of the first three sizes; each stream gives a
            // quarter of the literals (rounded up), the last one the rest.
            let bad = corrupt("zstd: invalid literal stream sizes", at);
            let jump = coded.get(..6).ok_or(bad)?;
            let s1 = le(&jump[0..2]) as usize;
            let s2 = le(&jump[2..4]) as usize;
            let s3 = le(&jump[4..6]) as usize;
            let streams = coded.get(6..).ok_or(bad)?;
            let s4 = streams.len().checked_sub(s1 + s2 + s3).ok_or(bad)?;
            let quarter = count.div_ceil(4);
            if 3 * quarter > count {
                return Err(bad);
            }
            let mut from = 0;
            let mut out_from = 0;
            for (i, size) in [s1, s2, s3, s4].into_iter().enumerate() {
                let stream = streams.get(from..from + size).ok_or(bad)?;
                let out_len = if i < 3 { quarter } else { count - 3 * quarter };
                let dst = out.get_mut(out_from..out_from + out_len).ok_or(bad)?;
                self.huffman.decode(stream, dst, at)?;
                from += size;
                out_from += out_len;
            }
        }
        Ok((count, header + compressed))
    }

    /// The sequences section (RFC 8878 §3.1.1.3.2), executed into the ring.
    fn sequences(
        &mut self,
        data: &[u8],
        at: usize,
        literal_count: usize,
        frame: &Frame,
        block_max: usize,
    ) -> Result<(), DecodeError> {
        let truncated = corrupt("zstd: truncated sequences section", at);
        let byte = |i: usize| data.get(i).map(|&b| usize::from(b)).ok_or(truncated);
        let b0 = byte(0)?;
        let (count, mut used) = match b0 {
            0..=127 => (b0, 1),
            128..=254 => (((b0 - 128) << 8) + byte(1)?, 2),
            _ => (byte(1)? + (byte(2)? << 8) + 0x7f00, 3),
        };
        let literals = self.literals.get(..literal_count).unwrap_or(&[]);
        if count == 0 {
            if used != data.len() {
                return Err(corrupt("zstd: bytes after an empty sequences section", at));
            }
            if literal_count > block_max {
                return Err(corrupt("zstd: block larger than the window or 128 KiB", at));
            }
            self.ring.push(literals);
            return Ok(());
        }
        let modes = byte(used)?;
        used += 1;
        if modes & 3 != 0 {
            return Err(corrupt(
                "zstd: reserved bits set in the sequence modes",
                at + used - 1,
            ));
        }
        used += table(
            &mut self.literal_lengths,
            modes >> 6,
            data,
            used,
            at,
            &LL_DEFAULT,
            6,
            9,
            35,
        )?;
        used += table(
            &mut self.offsets,
            modes >> 4 & 3,
            data,
            used,
            at,
            &OF_DEFAULT,
            5,
            8,
            31,
        )?;
        used += table(
            &mut self.match_lengths,
            modes >> 2 & 3,
            data,
            used,
            at,
            &ML_DEFAULT,
            6,
            9,
            52,
        )?;

        let mut bits = BackBits::new(data.get(used..).unwrap_or(&[]), at + used)?;
        let mut ll_state = self.literal_lengths.first(&mut bits);
        let mut of_state = self.offsets.first(&mut bits);
        let mut ml_state = self.match_lengths.first(&mut bits);
        let mut literal_pos = 0;
        let mut block_len = 0;
        let bad_offset = corrupt(
            "zstd: match offset reaches before the frame or past the window",
            at,
        );
        for i in 0..count {
            let ll_code = usize::from(self.literal_lengths.entry(ll_state).symbol);
            let of_code = u32::from(self.offsets.entry(of_state).symbol);
            let ml_code = usize::from(self.match_lengths.entry(ml_state).symbol);
            // Offset bits, then match length bits, then literal length bits.
            let offset_value = (1usize << of_code) + bits.read(of_code) as usize;
            let ml_extra = u32::from(ML_EXTRA_BITS.get(ml_code).copied().unwrap_or(0));
            let match_len =
                ML_BASE.get(ml_code).copied().unwrap_or(0) as usize + bits.read(ml_extra) as usize;
            let ll_extra = u32::from(LL_EXTRA_BITS.get(ll_code).copied().unwrap_or(0));
            let literal_len =
                LL_BASE.get(ll_code).copied().unwrap_or(0) as usize + bits.read(ll_extra) as usize;
            let offset =
                resolve_offset(&mut self.repeat, offset_value, literal_len).ok_or(bad_offset)?;
            if i + 1 < count {
                ll_state = self.literal_lengths.next(ll_state, &mut bits);
                ml_state = self.match_lengths.next(ml_state, &mut bits);
                of_state = self.offsets.next(of_state, &mut bits);
            }
            if bits.left < 0 {
                return Err(corrupt("zstd: truncated sequence bitstream", at));
            }
            block_len += literal_len + match_len;
            if block_len > block_max {
                return Err(corrupt("zstd: block larger than the window or 128 KiB", at));
            }
            let run = literals
                .get(literal_pos..literal_pos + literal_len)
                .ok_or(corrupt(
                    "zstd: sequences use more literals than the block has",
                    at,
                ))?;
            self.ring.push(run);
            literal_pos += literal_len;
            let reach = frame.decoded + (self.ring.pending as u64);
            if offset as u64 > reach || offset > frame.header.window {
                return Err(bad_offset);
            }
            self.ring.copy(offset, match_len);
        }
        if bits.left != 0 {
            return Err(corrupt(
                "zstd: sequence bitstream does not end with its sequences",
                at,
            ));
        }
        let rest = literals.get(literal_pos..).unwrap_or(&[]);
        if block_len + rest.len() > block_max {
            return Err(corrupt("zstd: block larger than the window or 128 KiB", at));
        }
        self.ring.push(rest);
        Ok(())
    }
}

/// The offset of a sequence from its offset value, updating the repeat offsets (RFC 8878
/// §3.1.2.5). None for a repeat offset of 0.
fn resolve_offset(repeat: &mut [usize; 3], value: usize, literal_len: usize) -> Option<usize> {
    if value > 3 {
        let offset = value - 3;
        *repeat = [offset, repeat[0], repeat[1]];
        return Some(offset);
    }
    // Values 1..3 name a repeat offset; with no literals before the match they shift by one
    // (the first would be pointless), and the last means "the first minus one".
    let index = value - 1 + usize::from(literal_len == 0);
    let offset = match index {
        0 => return Some(repeat[0]),
        1 => repeat[1],
        2 => repeat[2],
        _ => repeat[0].checked_sub(1).filter(|&o| o > 0)?,
    };
    if index == 1 {
        repeat[1] = repeat[0];
    } else {
        repeat[2] = repeat[1];
        repeat[1] = repeat[0];
    }
    repeat[0] = offset;
    Some(offset)
}

/// The table of one sequence code for a block from its mode: predefined, one symbol (RLE),
/// described in the block (FSE), or the previous block's (repeat). Returns the bytes it took.
#[allow(clippy::too_many_arguments)]
fn table<const N: usize>(
    fse: &mut Fse<N>,
    mode: usize,
    data: &[u8],
    pos: usize,
    at: usize,
    default: &[i16],
    default_log: u32,
    max_log: u32,
    max_symbol: usize,
) -> Result<usize, DecodeError> {
    let rest = data.get(pos..).unwrap_or(&[]);
    match mode {
        0 => fse.build(default, default_log, at).map(|()| 0),
        1 => {
            let symbol = *rest
                .first()
                .ok_or(corrupt("zstd: truncated sequences section", at))?;
            if usize::from(symbol) > max_symbol {
                return Err(corrupt("zstd: invalid RLE sequence code", at + pos));
            }
            fse.rle(symbol);
            Ok(1)
        }
        2 => fse.read(rest, max_log, max_symbol, at + pos),
        _ if fse.present => Ok(0),
        _ => Err(corrupt(
            "zstd: repeated sequence table without a previous one",
            at + pos,
        )),
    }
}

impl Source for Zstd<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, DecodeError> {
        let mut n = 0;
        while n < out.len() {
            if self.ring.pending > 0 {
                let (a, b) = self.ring.last(self.ring.pending);
                let mut taken = 0;
                for piece in [a, b] {
                    let dst = out.get_mut(n..).unwrap_or(&mut []);
                    let k = piece.len().min(dst.len());
                    if let (Some(d), Some(s)) = (dst.get_mut(..k), piece.get(..k)) {
                        d.copy_from_slice(s);
                    }
                    n += k;
                    taken += k;
                }
                self.ring.pending -= taken;
                continue;
            }
            match self.frame.take() {
                None if self.pos >= self.input.len() => break,
                None => self.start_frame()?,
                Some(frame) if frame.blocks_done => self.end_frame(&frame)?,
                Some(mut frame) => {
                    self.block(&mut frame)?;
                    self.frame = Some(frame);
                }
            }
        }
        Ok(n)
    }
}
