//! A tar reader over a byte stream, for the members of an OCI archive and of its layers: ustar
//! (with the 155-byte prefix), PAX `x` and `g` records (path, linkpath, size, uid, gid, mtime,
//! `SCHILY.xattr.*`), GNU long names and links (`L`, `K`), GNU base-256 numbers. No allocation:
//! names, link targets, PAX records and xattrs live in fixed buffers whose limits are errors
//! naming the limit, never a silent cut.

use crate::util::fixed::Text;

/// Where the bytes come from: a slice, or a decoder over a layer blob.
pub trait Input {
    /// Fills `out` from the start; 0 means the end of the stream.
    fn read(&mut self, out: &mut [u8]) -> Result<usize, TarError>;
}

/// A tar stream we refuse: what was wrong, and the byte offset in the stream where.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct TarError {
    pub message: &'static str,
    pub offset: u64,
}

const BLOCK: usize = 512;
/// Longest path or link target (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Largest PAX extended header or GNU long-name record read.
const MAX_RECORD: usize = 16 * 1024;
/// Room for the extended attributes of one entry (names and values).
const XATTR_ROOM: usize = 4096;
pub const MAX_XATTRS: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One member: its header fields with the PAX and GNU overrides applied.
pub struct Entry {
    pub kind: Kind,
    pub path: Text<MAX_PATH>,
    pub link: Text<MAX_PATH>,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes: `xattr_ends[i]` is where attribute i ends in `xattr_data`, as
    /// `name\0value`.
    xattr_data: [u8; XATTR_ROOM],
    xattr_ends: [u16; MAX_XATTRS],
    xattr_count: usize,
}

impl Entry {
    pub fn new() -> Entry {
        Entry {
            kind: Kind::File,
            path: Text::new(),
            link: Text::new(),
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            dev_major: 0,
            dev_minor: 0,
            xattr_data: [0; XATTR_ROOM],
            xattr_ends: [0; MAX_XATTRS],
            xattr_count: 0,
        }
    }

    /// The extended attributes, as (name, value).
    pub fn xattrs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0usize;
        self.xattr_ends
            .iter()
            .take(self.xattr_count)
            .filter_map(move |&end| {
                let item = self.xattr_data.get(start..usize::from(end))?;
                start = usize::from(end);
                let nul = item.iter().position(|&c| c == 0)?;
                Some((item.get(..nul)?, item.get(nul + 1..)?))
            })
    }

    fn add_xattr(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        let start = self.xattr_ends[..self.xattr_count]
            .last()
            .map_or(0, |&e| usize::from(e));
        let end = start + name.len() + 1 + value.len();
        if self.xattr_count >= MAX_XATTRS || end > XATTR_ROOM {
            return Err("more extended attributes than 16 or 4 KiB");
        }
        let slot = self.xattr_data.get_mut(start..end).ok_or("xattr room")?;
        let (n, rest) = slot.split_at_mut(name.len());
        n.copy_from_slice(name);
        let (nul, v) = rest.split_at_mut(1);
        nul[0] = 0;
        v.copy_from_slice(value);
        self.xattr_ends[self.xattr_count] = end as u16;
        self.xattr_count += 1;
        Ok(())
    }

    fn reset(&mut self) {
        self.path.clear();
        self.link.clear();
        self.xattr_count = 0;
        self.size = 0;
    }
}

impl Default for Entry {
    fn default() -> Self {
        Entry::new()
    }
}

/// What a PAX record or GNU long name sets for the next member.
struct Pending {
    path: bool,
    link: bool,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<i64>,
}

impl Pending {
    const NONE: Pending = Pending {
        path: false,
        link: false,
        size: None,
        uid: None,
        gid: None,
        mtime: None,
    };
}

/// Reads a tar stream member by member: `next` gives the header of each, `read_data` its
/// content (what is not read is skipped by the next `next`).
pub struct Reader<I: Input> {
    input: I,
    /// Offset in the stream of the next byte `input` gives.
    offset: u64,
    /// Content of the current member not yet read, then its padding to the block.
    remaining: u64,
    padding: u64,
    record: [u8; MAX_RECORD],
}

impl<I: Input> Reader<I> {
    pub fn new(input: I) -> Self {
        Reader {
            input,
            offset: 0,
            remaining: 0,
            padding: 0,
            record: [0; MAX_RECORD],
        }
    }

    /// Offset in the stream of the current member's content (after `next`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn input(&mut self) -> &mut I {
        &mut self.input
    }

    fn fail(&self, message: &'static str) -> TarError {
        TarError {
            message,
            offset: self.offset,
        }
    }

    /// Fills `buf` completely; `Ok(false)` at a clean end of the stream before the first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, TarError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.input.read(buf.get_mut(done..).unwrap_or(&mut []))?;
            if n == 0 {
                if done == 0 {
                    return Ok(false);
                }
                return Err(self.fail("the stream ends inside a block (truncated)"));
            }
            done += n;
            self.offset += n as u64;
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut scratch = [0u8; BLOCK];
        while n > 0 {
            let want = n.min(BLOCK as u64) as usize;
            let got = self.input.read(&mut scratch[..want])?;
            if got == 0 {
                return Err(self.fail("the stream ends inside a member (truncated)"));
            }
            n -= got as u64;
            self.offset += got as u64;
        }
        Ok(())
    }

    /// Reads content of the current member into `out`; 0 at its end.
    pub fn read_data(&mut self, out: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (out.len() as u64).min(self.remaining) as usize;
        let got = self.input.read(out.get_mut(..want).unwrap_or(&mut []))?;
        if got == 0 {
            return Err(self.fail("the stream ends inside a member (truncated)"));
        }
        self.remaining -= got as u64;
        self.offset += got as u64;
        Ok(got)
    }

    /// Skips the rest of the current member, then its padding.
    fn finish_member(&mut self) -> Result<(), TarError> {
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest)
    }

    /// Reads a member's whole content (a PAX record, a long name) into `self.record`.
    fn read_record(&mut self, size: u64) -> Result<usize, TarError> {
        if size > MAX_RECORD as u64 {
            return Err(self.fail("a PAX or long-name record larger than 16 KiB"));
        }
        let n = size as usize;
        let mut record = [0u8; MAX_RECORD];
        let buf = record.get_mut(..n).unwrap_or(&mut []);
        if !self.fill(buf)? && n > 0 {
            return Err(self.fail("the stream ends inside a member (truncated)"));
        }
        self.record = record;
        self.skip(pad(size))?;
        Ok(n)
    }

    /// The next member into `entry`; `Ok(false)` at the end of the archive (two zero blocks,
    /// or the end of the stream at a block boundary).
    pub fn next(&mut self, entry: &mut Entry) -> Result<bool, TarError> {
        self.finish_member()?;
        entry.reset();
        let mut pending = Pending::NONE;
        loop {
            let mut header = [0u8; BLOCK];
            let at = self.offset;
            if !self.fill(&mut header)? {
                return Ok(false);
            }
            if header.iter().all(|&c| c == 0) {
                return Ok(false);
            }
            let fail = |message| TarError {
                message,
                offset: at,
            };
            if !checksum_ok(&header) {
                return Err(fail(
                    "a header with a bad checksum (not a tar, or corrupted)",
                ));
            }
            let size = number(&header[124..136]).ok_or(fail("a header with a bad size field"))?;
            let typeflag = header[156];
            match typeflag {
                b'x' | b'g' => {
                    let n = self.read_record(size)?;
                    let global = typeflag == b'g';
                    let record = self.record;
                    let body = record.get(..n).unwrap_or(&[]);
                    parse_pax(body, entry, &mut pending, global).map_err(fail)?;
                    continue;
                }
                b'L' | b'K' => {
                    let n = self.read_record(size)?;
                    let record = self.record;
                    let body = record.get(..n).unwrap_or(&[]);
                    let body = until_nul(body);
                    let (text, set) = if typeflag == b'L' {
                        (&mut entry.path, &mut pending.path)
                    } else {
                        (&mut entry.link, &mut pending.link)
                    };
                    text.clear();
                    text.push(body)
                        .map_err(|_| fail("a long name over 4096 bytes"))?;
                    *set = true;
                    continue;
                }
                _ => {}
            }
            entry.kind = match typeflag {
                b'0' | 0 | b'7' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::CharDevice,
                b'4' => Kind::BlockDevice,
                b'5' => Kind::Directory,
                b'6' => Kind::Fifo,
                b'S' => return Err(fail("a sparse member (not allowed in layers)")),
                _ => return Err(fail("a member of an unknown type")),
            };
            if !pending.path {
                entry.path.clear();
                let ustar = &header[257..263] == b"ustar\0";
                let prefix = until_nul(&header[345..500]);
                if ustar && !prefix.is_empty() {
                    let _ = entry.path.push(prefix);
                    let _ = entry.path.push(b"/");
                }
                let _ = entry.path.push(until_nul(&header[0..100]));
            }
            if !pending.link {
                entry.link.clear();
                let _ = entry.link.push(until_nul(&header[157..257]));
            }
            let field = |r: core::ops::Range<usize>| {
                header
                    .get(r)
                    .and_then(number)
                    .ok_or(fail("a header with a bad number field"))
            };
            entry.mode = (field(100..108)? & 0o7777) as u32;
            entry.uid = pending
                .uid
                .map_or_else(|| field(108..116).map(|v| v as u32), Ok)?;
            entry.gid = pending
                .gid
                .map_or_else(|| field(116..124).map(|v| v as u32), Ok)?;
            entry.mtime = pending
                .mtime
                .map_or_else(|| field(136..148).map(|v| v as i64), Ok)?;
            entry.dev_major = field(329..337).unwrap_or(0) as u32;
            entry.dev_minor = field(337..345).unwrap_or(0) as u32;
            entry.size = pending.size.unwrap_or(size);
            // Only regular files carry content (a hardlink's size is its target's).
            let content = if entry.kind == Kind::File {
                entry.size
            } else {
                0
            };
            self.remaining = content;
            self.padding = pad(content);
            return Ok(true);
        }
    }
}

/// Bytes of padding after `size` bytes of content.
fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or(field)
}

/// The header checksum: the sum of its bytes with the checksum field as spaces.
fn checksum_ok(header: &[u8; BLOCK]) -> bool {
    let Some(stored) = number(&header[148..156]) else {
        return false;
    };
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(c)
            }
        })
        .sum();
    sum == stored
}

/// A numeric field: octal (spaces and NULs around it), or GNU base-256 (first bit set).
fn number(field: &[u8]) -> Option<u64> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 != 0 {
        if first & 0x40 != 0 {
            return None; // negative
        }
        let mut v = u64::from(first & 0x3f);
        for &c in rest {
            if v >> 56 != 0 {
                return None;
            }
            v = v << 8 | u64::from(c);
        }
        return Some(v);
    }
    let mut v: u64 = 0;
    let mut digits = false;
    for &c in field {
        match c {
            b'0'..=b'7' => {
                v = v.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
                digits = true;
            }
            b' ' | 0 if !digits => continue,
            b' ' | 0 => break,
            _ => return None,
        }
    }
    Some(v)
}

/// Applies a PAX record set (`<len> <key>=<value>\n`...) to the next member. Global records
/// (`g`) apply to every later member in the standard; producers of layers do not write them,
/// and the ones met are read for validity and otherwise ignored.
fn parse_pax(
    mut body: &[u8],
    entry: &mut Entry,
    pending: &mut Pending,
    global: bool,
) -> Result<(), &'static str> {
    const BAD: &str = "a malformed PAX record";
    while !body.is_empty() {
        let space = body.iter().position(|&c| c == b' ').ok_or(BAD)?;
        let len = crate::util::fixed::parse_u64(body.get(..space).ok_or(BAD)?).ok_or(BAD)? as usize;
        let record = body.get(..len).ok_or(BAD)?;
        body = body.get(len..).ok_or(BAD)?;
        let kv = record
            .get(space + 1..len.checked_sub(1).ok_or(BAD)?)
            .ok_or(BAD)?;
        if record.last() != Some(&b'\n') {
            return Err(BAD);
        }
        let eq = kv.iter().position(|&c| c == b'=').ok_or(BAD)?;
        let (key, value) = (kv.get(..eq).ok_or(BAD)?, kv.get(eq + 1..).ok_or(BAD)?);
        if global {
            continue;
        }
        let num = || crate::util::fixed::parse_u64(value).ok_or("a PAX number that is not one");
        match key {
            b"path" => {
                entry.path.clear();
                entry
                    .path
                    .push(value)
                    .map_err(|_| "a PAX path over 4096 bytes")?;
                pending.path = true;
            }
            b"linkpath" => {
                entry.link.clear();
                entry
                    .link
                    .push(value)
                    .map_err(|_| "a PAX linkpath over 4096 bytes")?;
                pending.link = true;
            }
            b"size" => pending.size = Some(num()?),
            b"uid" => pending.uid = Some(num()? as u32),
            b"gid" => pending.gid = Some(num()? as u32),
            b"mtime" => {
                // Seconds, maybe with a fraction: the whole seconds count.
                let whole = value.split(|&c| c == b'.').next().unwrap_or(value);
                let (neg, digits) = match whole.strip_prefix(b"-") {
                    Some(d) => (true, d),
                    None => (false, whole),
                };
                let s = crate::util::fixed::parse_u64(digits)
                    .ok_or("a PAX mtime that is not a number")? as i64;
                pending.mtime = Some(if neg { -s } else { s });
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    entry.add_xattr(name, value)?;
                }
            }
        }
    }
    Ok(())
}

/// Input over a byte slice (the mapped archive, or an uncompressed blob).
pub struct SliceInput<'a> {
    pub data: &'a [u8],
}

impl Input for SliceInput<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<usize, TarError> {
        let n = out.len().min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        if let Some(dst) = out.get_mut(..n) {
            dst.copy_from_slice(head);
        }
        self.data = rest;
        Ok(n)
    }
}

/// The member of the archive `data` named `name` (a leading `./` ignored), as the slice of its
/// content. Only headers are read: the archive stays where it lies.
pub fn find_member<'a>(data: &'a [u8], name: &[u8]) -> Result<Option<&'a [u8]>, TarError> {
    let mut reader = Reader::new(SliceInput { data });
    let mut entry = Entry::new();
    while reader.next(&mut entry)? {
        let path = entry.path.as_bytes();
        let path = path.strip_prefix(b"./").unwrap_or(path);
        if path == name && entry.kind == Kind::File {
            let start = reader.offset() as usize;
            let end = start.checked_add(entry.size as usize);
            return match end.and_then(|end| data.get(start..end)) {
                Some(content) => Ok(Some(content)),
                None => Err(TarError {
                    message: "a member runs past the end of the archive (truncated)",
                    offset: reader.offset(),
                }),
            };
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0000000");
        let s = std::format!("{:011o}", size);
        h[124..135].copy_from_slice(s.as_bytes());
        h[136..147].copy_from_slice(b"00000000001");
        h[156] = typeflag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&c| u32::from(c)).sum();
        let s = std::format!("{:06o}\0 ", sum);
        h[148..156].copy_from_slice(s.as_bytes());
        h
    }

    fn member(out: &mut Vec<u8>, name: &[u8], typeflag: u8, data: &[u8]) {
        out.extend_from_slice(&header(name, typeflag, data.len() as u64));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }

    #[test]
    fn reads_pax_gnu_and_finds_members() {
        let mut tar = Vec::new();
        let pax = b"29 SCHILY.xattr.user.a=hello\n18 uid=4000000000\n";
        member(&mut tar, b"PaxHeaders/x", b'x', pax);
        member(&mut tar, b"short", b'0', b"content");
        let long = [b'n'; 300];
        member(&mut tar, b"././@LongLink", b'L', &long);
        member(&mut tar, b"cut", b'2', b"");
        member(&mut tar, b"./index.json", b'0', b"{}");
        tar.extend_from_slice(&[0u8; 1024]);

        let mut r = Reader::new(SliceInput { data: &tar });
        let mut e = Entry::new();
        assert!(r.next(&mut e).unwrap());
        assert_eq!(e.path.as_bytes(), b"short");
        assert_eq!(e.uid, 4000000000);
        assert_eq!(e.mode, 0o644);
        let x: Vec<_> = e.xattrs().collect();
        assert_eq!(x, [(&b"user.a"[..], &b"hello"[..])]);
        let mut buf = [0u8; 100];
        assert_eq!(r.read_data(&mut buf).unwrap(), 7);
        assert!(r.next(&mut e).unwrap());
        assert_eq!(e.path.as_bytes(), &long[..]);
        assert_eq!(e.kind, Kind::Symlink);
        assert_eq!(e.uid, 0o1750, "a PAX uid applies to one member only");
        assert!(r.next(&mut e).unwrap());
        assert!(!r.next(&mut e).unwrap());
        assert_eq!(find_member(&tar, b"index.json").unwrap(), Some(&b"{}"[..]));
        assert_eq!(find_member(&tar, b"missing").unwrap(), None);
    }

    #[test]
    fn refuses_bad_checksums_and_truncation() {
        let mut tar = Vec::new();
        member(&mut tar, b"f", b'0', &[1u8; 1000]);
        let mut bad = tar.clone();
        bad[0] = b'g';
        let mut e = Entry::new();
        let err = Reader::new(SliceInput { data: &bad })
            .next(&mut e)
            .err()
            .unwrap();
        assert!(err.message.contains("checksum"), "{err:?}");
        let cut = &tar[..700];
        let mut r = Reader::new(SliceInput { data: cut });
        assert!(r.next(&mut e).unwrap());
        let mut buf = [0u8; 2048];
        let err = loop {
            match r.read_data(&mut buf) {
                Ok(0) => panic!("no error"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(err.message.contains("truncated"));
        assert!(find_member(cut, b"f").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"0000644\0"), Some(0o644));
        assert_eq!(number(b"  755 \0"), Some(0o755));
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]),
            Some(2 << 32)
        );
        assert_eq!(number(b"12x"), None);
    }
}
