//! GRUB environment blocks, as `grub-editenv` and GRUB's `load_env`/`save_env` keep them: a
//! file of exactly 1024 bytes that starts with `# GRUB Environment Block\n`, then `key=value\n`
//! lines (a backslash escapes a backslash or a newline in a value), then `#` up to the end.
//! GRUB writes such a file in place through its block list, so its size never changes; this
//! module reads one and rewrites it at the same size, keeping every line it does not change
//! (unknown keys, comment lines) as it was. Pure code over bytes: the boot assessment
//! (`steps::assessment`) does the file and mount work.

use crate::util::fixed::Text;

/// The size of the blocks `grub-editenv` creates, the only size accepted.
pub const SIZE: usize = 1024;
/// How every block starts.
pub const HEADER: &[u8] = b"# GRUB Environment Block\n";

/// A block that reads as a GRUB environment block.
#[derive(Clone)]
pub struct Block {
    bytes: [u8; SIZE],
    /// Where the `#` padding starts (the end of the last line).
    used: usize,
}

/// Why bytes are not a GRUB environment block (a block we never rewrite).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Damage {
    /// The file has this many bytes, not 1024.
    Size(usize),
    /// It does not start with `# GRUB Environment Block\n`.
    NoHeader,
    /// The line at this offset has no `=` after a key.
    NoEquals(usize),
    /// The line at this offset runs into the end of the block without its newline.
    Unterminated(usize),
    /// A NUL byte at this offset (a block zeroed or never written).
    Nul(usize),
}

impl Damage {
    /// What is wrong, for a warning that also names the file.
    pub fn describe(self, out: &mut Text<128>) {
        let (what, at): (&[u8], Option<usize>) = match self {
            Damage::Size(n) => {
                out.push_lossy(b"it has ");
                let _ = out.push_num(n as u64);
                out.push_lossy(b" bytes, not 1024");
                return;
            }
            Damage::NoHeader => (b"it does not start with '# GRUB Environment Block'", None),
            Damage::NoEquals(at) => (b"a line without '=' at byte ", Some(at)),
            Damage::Unterminated(at) => (b"a line without its newline at byte ", Some(at)),
            Damage::Nul(at) => (b"a NUL byte at byte ", Some(at)),
        };
        out.push_lossy(what);
        if let Some(at) = at {
            let _ = out.push_num(at as u64);
        }
    }
}

/// A change that cannot be made.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Unwritable {
    /// The lines would not fit in 1024 bytes.
    NoRoom,
    /// A key that is empty or holds `=`, `#` at its start, a backslash or a newline, or a value
    /// with a backslash or a newline (this writer does not escape).
    BadText,
}

/// Where the line starting at `start` ends (after its newline): the first newline not escaped
/// by a backslash. `None`: no newline before the end of `bytes`.
fn line_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' => i += 2,
            b'\n' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

impl Block {
    /// Reads `data` as a block: exactly 1024 bytes, the header, lines of `key=value` (or
    /// comment lines starting with `#`), then `#` padding to the end.
    pub fn parse(data: &[u8]) -> Result<Block, Damage> {
        let bytes: [u8; SIZE] = data.try_into().map_err(|_| Damage::Size(data.len()))?;
        if !bytes.starts_with(HEADER) {
            return Err(Damage::NoHeader);
        }
        if let Some(at) = bytes.iter().position(|&c| c == 0) {
            return Err(Damage::Nul(at));
        }
        let mut at = HEADER.len();
        while at < SIZE {
            let end = line_end(&bytes, at);
            let rest = bytes.get(at..).unwrap_or(&[]);
            match end {
                // The padding: `#` to the end, without a newline.
                None if rest.iter().all(|&c| c == b'#') => break,
                None => return Err(Damage::Unterminated(at)),
                Some(end) => {
                    let line = bytes.get(at..end).unwrap_or(&[]);
                    let is_comment = line.first() == Some(&b'#');
                    let key_len = line.iter().position(|&c| c == b'=').unwrap_or(0);
                    if !is_comment && key_len == 0 {
                        return Err(Damage::NoEquals(at));
                    }
                    at = end;
                }
            }
        }
        Ok(Block { bytes, used: at })
    }

    /// The 1024 bytes of the block.
    pub fn as_bytes(&self) -> &[u8; SIZE] {
        &self.bytes
    }

    /// Each `key=value\n` line (comment lines too) as `(start, end)` offsets.
    fn lines(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut at = HEADER.len();
        core::iter::from_fn(move || {
            let end = line_end(self.bytes.get(..self.used)?, at)?;
            let line = (at, end);
            at = end;
            Some(line)
        })
    }

    /// The line of `key` (the first one, as GRUB reads it): its offsets and where its value
    /// starts.
    fn find(&self, key: &[u8]) -> Option<(usize, usize, usize)> {
        self.lines().find_map(|(start, end)| {
            let line = self.bytes.get(start..end)?;
            line.strip_prefix(key)?.strip_prefix(b"=")?;
            Some((start, end, start + key.len() + 1))
        })
    }

    /// The value of `key` as written (escapes kept), if the block has the key.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let (_, end, value) = self.find(key)?;
        // Without the newline.
        self.bytes.get(value..end - 1)
    }

    /// Whether `key` holds exactly `yes`, as GRUB's script tests `[ "${key}" = "yes" ]`.
    pub fn is_yes(&self, key: &[u8]) -> bool {
        self.get(key) == Some(b"yes")
    }

    /// Sets `key` to `value`: in place of its line if it has one (as `grub-editenv set` does),
    /// else as a new line after the last one. The block keeps its 1024 bytes.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), Unwritable> {
        let bad_key = key.is_empty()
            || key.first() == Some(&b'#')
            || key.iter().any(|c| matches!(c, b'=' | b'\\' | b'\n'));
        if bad_key || value.iter().any(|c| matches!(c, b'\\' | b'\n')) {
            return Err(Unwritable::BadText);
        }
        let (start, end) = match self.find(key) {
            Some((start, end, _)) => (start, end),
            None => (self.used, self.used),
        };
        self.splice(start, end, &[key, b"=", value, b"\n"])
    }

    /// Removes every line of `key` (`grub-editenv unset`).
    pub fn unset(&mut self, key: &[u8]) {
        while let Some((start, end, _)) = self.find(key) {
            // Removing only shrinks: it always fits.
            let _ = self.splice(start, end, &[]);
        }
    }

    /// Replaces bytes `start..end` of the lines with `parts` joined, and pads with `#` again.
    fn splice(&mut self, start: usize, end: usize, parts: &[&[u8]]) -> Result<(), Unwritable> {
        let added: usize = parts.iter().map(|p| p.len()).sum();
        let used = self.used - (end - start) + added;
        if used > SIZE {
            return Err(Unwritable::NoRoom);
        }
        let mut out = [b'#'; SIZE];
        let head = self.bytes.get(..start).unwrap_or(&[]);
        let tail = self.bytes.get(end..self.used).unwrap_or(&[]);
        let mut at = 0;
        for part in [head].iter().chain(parts).chain([tail].iter()) {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        self.bytes = out;
        self.used = used;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::ToOwned;
    use std::format;
    use std::process::Command;
    use std::string::String;
    use std::vec::Vec;

    fn block(lines: &str) -> Vec<u8> {
        let mut b = HEADER.to_vec();
        b.extend_from_slice(lines.as_bytes());
        b.resize(SIZE, b'#');
        b
    }

    #[test]
    fn reads_keys_and_keeps_unknown_lines() {
        let data = block("saved_entry=cos\nenable_boot_assessment=yes\nodd=a\\\nb\n");
        let b = Block::parse(&data).unwrap();
        assert_eq!(b.get(b"saved_entry"), Some(&b"cos"[..]));
        assert!(b.is_yes(b"enable_boot_assessment"));
        assert!(!b.is_yes(b"boot_assessment_tentative"));
        assert_eq!(b.get(b"odd"), Some(&b"a\\\nb"[..]));
        assert_eq!(b.get(b"enable"), None, "a prefix of a key is not the key");
        assert_eq!(&b.as_bytes()[..], &data[..]);
    }

    #[test]
    fn set_replaces_in_place_or_appends_and_keeps_the_size() {
        let mut b = Block::parse(&block("a=1\nboot_assessment_tentative=\nz=9\n")).unwrap();
        b.set(b"boot_assessment_tentative", b"yes").unwrap();
        assert_eq!(
            &b.as_bytes()[..],
            &block("a=1\nboot_assessment_tentative=yes\nz=9\n")[..]
        );
        b.set(b"new", b"x").unwrap();
        b.set(b"a", b"").unwrap();
        assert_eq!(
            &b.as_bytes()[..],
            &block("a=\nboot_assessment_tentative=yes\nz=9\nnew=x\n")[..]
        );
        b.unset(b"boot_assessment_tentative");
        assert_eq!(&b.as_bytes()[..], &block("a=\nz=9\nnew=x\n")[..]);
        // What is written parses back to the same.
        let again = Block::parse(b.as_bytes()).unwrap();
        assert_eq!(again.as_bytes(), b.as_bytes());
    }

    #[test]
    fn a_full_block_refuses_to_grow() {
        let filler = "k=".to_owned() + &"v".repeat(SIZE - HEADER.len() - 4) + "\n";
        let data = block(&filler);
        let mut b = Block::parse(&data).unwrap();
        assert_eq!(b.set(b"x", b"yes"), Err(Unwritable::NoRoom));
        assert_eq!(&b.as_bytes()[..], &data[..], "unchanged after a refusal");
        assert_eq!(b.set(b"k", b"short"), Ok(()));
    }

    #[test]
    fn text_this_writer_cannot_escape_is_refused() {
        let mut b = Block::parse(&block("")).unwrap();
        for (k, v) in [
            ("", "x"),
            ("a=b", "x"),
            ("#c", "x"),
            ("a", "x\ny"),
            ("a", "\\"),
        ] {
            assert_eq!(b.set(k.as_bytes(), v.as_bytes()), Err(Unwritable::BadText));
        }
    }

    #[test]
    fn damaged_blocks_are_named() {
        assert_eq!(Block::parse(&[b'#'; 1023]).err(), Some(Damage::Size(1023)));
        assert_eq!(Block::parse(&[b'#'; 2048]).err(), Some(Damage::Size(2048)));
        let mut no_header = block("a=1\n");
        no_header[2] = b'X';
        assert_eq!(Block::parse(&no_header).err(), Some(Damage::NoHeader));
        assert_eq!(
            Block::parse(&block("a=1\nnoequals\n")).err(),
            Some(Damage::NoEquals(HEADER.len() + 4))
        );
        assert_eq!(
            Block::parse(&block("=v\n")).err(),
            Some(Damage::NoEquals(HEADER.len()))
        );
        let mut zeroed = block("a=1\n");
        zeroed[600..700].fill(0);
        assert_eq!(Block::parse(&zeroed).err(), Some(Damage::Nul(600)));
        let mut torn = block("a=1\n");
        torn[900] = b'x';
        assert_eq!(
            Block::parse(&torn).err(),
            Some(Damage::Unterminated(HEADER.len() + 4))
        );
        let mut t = Text::new();
        Damage::Size(3).describe(&mut t);
        assert_eq!(t.as_str(), "it has 3 bytes, not 1024");
        // Comment lines are GRUB's too.
        assert!(Block::parse(&block("# a comment\na=1\n")).is_ok());
    }

    /// Blocks made and read by GRUB's own `grub-editenv` (Debian's `grub-common`), when it is
    /// installed: ours reads theirs, and theirs reads what ours wrote.
    #[test]
    fn grub_editenv_agrees() {
        let path = std::env::temp_dir().join(format!("grubenv-test-{}", std::process::id()));
        let editenv = |args: &[&str]| Command::new("grub-editenv").arg(&path).args(args).output();
        let Ok(out) = editenv(&["create"]) else {
            std::eprintln!("grub-editenv not installed: skipped");
            return;
        };
        assert!(out.status.success());
        let out = editenv(&["set", "enable_boot_assessment=yes", "other=keep me"]).unwrap();
        assert!(out.status.success());
        let data = std::fs::read(&path).unwrap();
        let mut b = Block::parse(&data).unwrap();
        assert!(b.is_yes(b"enable_boot_assessment"));
        b.set(b"boot_assessment_tentative", b"yes").unwrap();
        std::fs::write(&path, b.as_bytes()).unwrap();
        let list = editenv(&["list"]).unwrap();
        let list = String::from_utf8(list.stdout).unwrap();
        assert_eq!(
            list,
            "enable_boot_assessment=yes\nother=keep me\nboot_assessment_tentative=yes\n"
        );
        let _ = std::fs::remove_file(&path);
    }
}
