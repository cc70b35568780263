//! Fixed-capacity text containers: the whole program works without a heap.
//!
//! `Text<N>` is a byte string with a compile-time capacity; `List<B, I>` keeps up to `I` items
//! in one `B`-byte buffer. Pushing past a limit returns `Full` instead of allocating or
//! panicking, so every limit surfaces as a clear error at the caller.
//!
//! The generic types are thin shells: every method hands its buffer over as a slice to one
//! non-generic function, so the code exists once however many capacities the program uses
//! (see size-report.md).

/// A limit of a fixed buffer was reached.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct Full;

/// Byte string of at most `N` bytes. Contents are normally UTF-8 but nothing relies on it.
#[derive(Clone)]
pub struct Text<const N: usize>(Filled<[u8; N]>);

/// The fields of a `Text`. `&Filled<[u8; N]>` coerces to `&Filled<[u8]>` (the buffer becomes a
/// slice), so code that only reads the text exists once for all capacities.
///
/// `len` comes first and the helpers take `len` and the text in the order of the methods'
/// arguments, followed by the buffer: each method's per-capacity copy then only adds the buffer
/// (pointer and `N`) to the registers it received.
#[derive(Clone)]
#[repr(C)]
struct Filled<B: ?Sized> {
    len: usize,
    buf: B,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Text<N> {
    /// An empty text as a constant: in a struct literal, its zero bytes join the neighbours' in
    /// one clearing (a `new()` call is a separate step).
    pub const EMPTY: Self = Text(Filled {
        len: 0,
        buf: [0; N],
    });

    /// Out of line: a call is shorter than clearing `N` bytes in place.
    #[inline(never)]
    pub const fn new() -> Self {
        Self::EMPTY
    }

    /// Builds from `s`, or `Full` when it does not fit.
    pub fn from(s: &[u8]) -> Result<Self, Full> {
        if s.len() > N {
            return Err(Full);
        }
        let mut t = Self::new();
        t.push_lossy(s);
        Ok(t)
    }

    pub fn push(&mut self, s: &[u8]) -> Result<(), Full> {
        push(&mut self.0.len, s, &mut self.0.buf)
    }

    pub fn push_str(&mut self, s: &str) -> Result<(), Full> {
        self.push(s.as_bytes())
    }

    pub fn push_byte(&mut self, b: u8) -> Result<(), Full> {
        self.push(&[b])
    }

    /// Appends the decimal form of `n`.
    pub fn push_num(&mut self, n: u64) -> Result<(), Full> {
        push_num(&mut self.0.len, n, &mut self.0.buf)
    }

    /// Appends `s`, cutting it to what fits (for messages, where a shortened text beats none).
    pub fn push_lossy(&mut self, s: &[u8]) {
        push_lossy(&mut self.0.len, s, &mut self.0.buf)
    }

    /// Moves the last `n` bytes to position `at`, shifting what was there after them (all of
    /// it when `at` or `n` is out of range: nothing moves).
    pub fn move_tail_to(&mut self, at: usize, n: usize) {
        let len = self.0.len;
        if let Some(part) = self.0.buf.get_mut(at..len) {
            // Three reversals: `rotate_right` brings core's rotation algorithms (qemu/size-lore.md).
            if n <= part.len() {
                part.reverse();
                let (new_head, new_tail) = part.split_at_mut(n);
                new_head.reverse();
                new_tail.reverse();
            }
        }
    }

    pub fn truncate(&mut self, len: usize) {
        if len < self.0.len {
            self.0.len = len;
        }
    }

    pub fn clear(&mut self) {
        self.0.len = 0;
    }

    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        let all: &Filled<[u8]> = &self.0;
        all.bytes()
    }

    /// The contents as `&str`; invalid UTF-8 yields `"?"` (only reachable from raw disk bytes).
    pub fn as_str(&self) -> &str {
        as_str(self.as_bytes())
    }
}

impl Filled<[u8]> {
    /// The first `len` bytes of `buf` (all of it if `len` is out of range, which never happens).
    #[inline(never)]
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }
}

#[inline(never)]
fn push(len: &mut usize, s: &[u8], buf: &mut [u8]) -> Result<(), Full> {
    let end = len.checked_add(s.len()).ok_or(Full)?;
    copy_bytes(buf.get_mut(*len..end).ok_or(Full)?, s);
    *len = end;
    Ok(())
}

#[inline(never)]
fn push_lossy(len: &mut usize, s: &[u8], buf: &mut [u8]) {
    let room = buf.len().saturating_sub(*len);
    let _ = push(len, s.get(..room).unwrap_or(s), buf);
}

fn push_num(len: &mut usize, n: u64, buf: &mut [u8]) -> Result<(), Full> {
    let mut digits = [0u8; 20];
    push(len, fmt_u64(n, &mut digits), buf)
}

/// How many leading bytes of `s` are valid UTF-8 (`s.len()` if all are): the same answer as
/// `core::str::from_utf8(s)`'s `valid_up_to`, without its word-at-a-time fast path, which
/// costs several hundred bytes of code and buys nothing on a few short inputs.
pub fn utf8_valid_up_to(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&lead) = s.get(i) {
        // The lead byte's high ones give the sequence length (none: ASCII); each length has a
        // smallest code point, so longer (overlong) forms of smaller ones are refused.
        let ones = lead.leading_ones() as usize;
        let min = match ones {
            0 => 0,
            2 => 0x80,
            3 => 0x800,
            4 => 0x1_0000,
            _ => return i,
        };
        let mut cp = u32::from(lead) & (0x7f >> ones);
        for k in 1..ones {
            match s.get(i + k) {
                Some(&c) if c & 0xc0 == 0x80 => cp = cp << 6 | u32::from(c & 0x3f),
                _ => return i,
            }
        }
        if cp < min || cp > 0x10_ffff || matches!(cp, 0xd800..=0xdfff) {
            return i;
        }
        i += ones.max(1);
    }
    i
}

#[inline(never)]
fn as_str(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("?")
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

#[cfg(test)]
impl<const N: usize> core::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Up to `I` byte strings stored back to back in one `B`-byte buffer, in insertion order.
/// (Field order as for `Text`: `count` is where `&mut self` points.)
#[derive(Clone)]
#[repr(C)]
pub struct List<const B: usize, const I: usize> {
    count: usize,
    ends: [u16; I],
    bytes: Text<B>,
}

impl<const B: usize, const I: usize> Default for List<B, I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const B: usize, const I: usize> List<B, I> {
    /// All zero bytes, cleared at once (`Text::EMPTY`, not a `Text::new` call in between).
    pub const fn new() -> Self {
        List {
            bytes: Text::EMPTY,
            ends: [0; I],
            count: 0,
        }
    }

    pub fn push(&mut self, item: &[u8]) -> Result<(), Full> {
        let bytes = &mut self.bytes;
        push_item(
            &mut self.count,
            item,
            &mut self.ends,
            &mut bytes.0.len,
            &mut bytes.0.buf,
        )
    }

    /// Pushes `item` unless an equal item is already there (first occurrence wins).
    pub fn push_unique(&mut self, item: &[u8]) -> Result<(), Full> {
        if self.contains(item) {
            return Ok(());
        }
        self.push(item)
    }

    pub fn contains(&self, item: &[u8]) -> bool {
        contains(self.iter(), item)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.iter().nth(i)
    }

    /// The items in order (one iterator type for every capacity).
    pub fn iter(&self) -> Iter<'_> {
        Iter::new(&self.count, &self.ends, &self.bytes.0)
    }

    /// Iterates as `&str` (items that are not UTF-8 read as `"?"`).
    pub fn iter_str(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(as_str)
    }
}

/// `List::contains` for every capacity.
#[inline(never)]
fn contains(mut items: Iter<'_>, item: &[u8]) -> bool {
    items.any(|x| x == item)
}

/// `List::push` on the list's fields as slices (one copy for every capacity).
#[inline(never)]
fn push_item(
    count: &mut usize,
    item: &[u8],
    ends: &mut [u16],
    len: &mut usize,
    buf: &mut [u8],
) -> Result<(), Full> {
    let slot = ends.get_mut(*count).ok_or(Full)?;
    let end = u16::try_from(*len + item.len()).map_err(|_| Full)?;
    push(len, item, buf)?;
    *slot = end;
    *count += 1;
    Ok(())
}

/// Iterator over the items of a `List`.
#[derive(Clone)]
pub struct Iter<'a> {
    bytes: &'a [u8],
    ends: &'a [u16],
    start: usize,
}

impl<'a> Iter<'a> {
    /// From the list's fields as slices (one copy for every capacity).
    #[inline(never)]
    fn new(count: &usize, ends: &'a [u16], bytes: &'a Filled<[u8]>) -> Self {
        Iter {
            bytes: bytes.bytes(),
            ends: ends.get(..*count).unwrap_or(ends),
            start: 0,
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];

    #[inline(never)]
    fn next(&mut self) -> Option<&'a [u8]> {
        let (&end, rest) = self.ends.split_first()?;
        self.ends = rest;
        let end = end as usize;
        let item = self.bytes.get(self.start..end).unwrap_or(&[]);
        self.start = end;
        Some(item)
    }
}

#[cfg(test)]
impl<const B: usize, const I: usize> core::fmt::Debug for List<B, I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter_str()).finish()
    }
}

/// Copies `src` to the start of `dst`, as much as fits: `copy_from_slice` without its panic on
/// a length mismatch, which stays in the binary when the compiler cannot prove the lengths equal.
pub fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// The two lower-case hex digits of `b`. Out of line: the one hex encoder of the log's
/// escapes, udev's `\x` names, the verity salt and the UUIDs.
#[inline(never)]
pub fn hex_pair(b: u8) -> [u8; 2] {
    let digit = |n: u8| match n & 15 {
        d @ 0..=9 => b'0' + d,
        d => b'a' + d - 10,
    };
    [digit(b >> 4), digit(b)]
}

/// Formats `n` in decimal into `buf`, returning the digits.
pub fn fmt_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or(&[])
}

/// Parses an unsigned decimal number; `None` for empty input, other characters or overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_valid_up_to_agrees_with_core() {
        let mut cases: std::vec::Vec<std::vec::Vec<u8>> = std::vec::Vec::new();
        for a in 0..=255u8 {
            for b in [
                0u8, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff,
            ] {
                for c in [0x41u8, 0x80, 0xbf, 0xc0] {
                    cases.push(std::vec![a, b, c, 0x80, 0x41]);
                    cases.push(std::vec![0x41, a, b, c]);
                    cases.push(std::vec![a, b]);
                }
            }
        }
        for c in cases {
            let want = match core::str::from_utf8(&c) {
                Ok(_) => c.len(),
                Err(e) => e.valid_up_to(),
            };
            assert_eq!(utf8_valid_up_to(&c), want, "{c:x?}");
        }
    }

    #[test]
    fn text_refuses_overflow_and_keeps_contents() {
        let mut t: Text<4> = Text::new();
        t.push(b"ab").unwrap();
        assert_eq!(t.push(b"cde"), Err(Full));
        assert_eq!(t.as_str(), "ab");
        t.push_lossy(b"cdef");
        assert_eq!(t.as_str(), "abcd");
    }

    #[test]
    fn hex_pairs_are_lower_case() {
        assert_eq!(&hex_pair(0x0f), b"0f");
        assert_eq!(&hex_pair(0xa9), b"a9");
    }

    #[test]
    fn numbers_round_trip() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(fmt_u64(u64::MAX, &mut b), b"18446744073709551615");
        assert_eq!(parse_u64(b"120"), Some(120));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1x"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }

    #[test]
    fn list_keeps_order_limits_and_uniqueness() {
        let mut l: List<16, 3> = List::new();
        l.push(b"/etc").unwrap();
        l.push_unique(b"/etc").unwrap();
        l.push(b"/var").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l.get(1), Some(&b"/var"[..]));
        assert_eq!(l.push(b"/a-very-long"), Err(Full));
        l.push(b"/x").unwrap();
        assert_eq!(l.push(b"/y"), Err(Full));
        assert_eq!(
            l.iter_str().collect::<std::vec::Vec<_>>(),
            ["/etc", "/var", "/x"]
        );
    }
}
