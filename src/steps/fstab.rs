//! The fstab of the booted system: one line per mount in step order, so systemd's
//! fstab-generator turns what is already mounted into active units instead of mounting again.

use super::{err, err_errno, Ctx, Error};
use crate::log;
use crate::sys;
use crate::util::fixed::Text;
use crate::util::words::split;
use rustix::fd::AsFd;

pub const MAX_FSTAB: usize = 16 * 1024;

pub struct Fstab {
    text: Text<MAX_FSTAB>,
    lines: usize,
    /// A line did not fit: writing a partial fstab would hide mounts from systemd.
    overflow: bool,
}

impl Default for Fstab {
    fn default() -> Self {
        Self::new()
    }
}

impl Fstab {
    pub const fn new() -> Fstab {
        Fstab {
            text: Text::EMPTY,
            lines: 0,
            overflow: false,
        }
    }

    /// Records `<spec> <file> <type> <opts> 0 0`, escaping blanks the way fstab(5) wants. The
    /// line is written straight into the text and taken back whole if it does not fit. One
    /// line per mount point: a second line for `file` (a volume that is also the OEM
    /// partition, a mount found already there) is dropped, the first stays (systemd would warn
    /// about a duplicate entry and use the first). A line goes before the lines of mount points
    /// below its own (a bind of a persistent path before the volume kept visible below it), so
    /// that `mount -a` rebuilds the same tree.
    pub fn add(&mut self, spec: &[u8], file: &[u8], fstype: &[u8], opts: &[u8]) {
        let start = self.text.len();
        self.field(spec, start);
        self.field(file, start);
        self.field(fstype, start);
        self.field(if opts.is_empty() { b"defaults" } else { opts }, start);
        // Only the closing `0 0\n` is checked: every push is all or nothing and at most 4 bytes,
        // so one that did not fit left fewer than 4 bytes free, and the closing one fails too.
        if self.text.push(b"0 0\n").is_err() {
            self.text.truncate(start);
            self.overflow = true;
            return;
        }
        let bytes = self.text.as_bytes();
        let (earlier, line) = bytes.split_at_checked(start).unwrap_or((bytes, &[]));
        if split(earlier, b'\n').any(|l| mount_point(l) == mount_point(line)) {
            log::debug(b"fstab lists {} already", &[file]);
            self.text.truncate(start);
            return;
        }
        self.lines += 1;
        let line_len = line.len();
        if let Some(at) = first_line_below(earlier, mount_point(line)) {
            self.text.move_tail_to(at, line_len);
        }
    }

    /// Drops the line of the mount point `file` (given as escaped in the lines), if there is
    /// one: image fallback put another partition there.
    #[cfg(feature = "fallback")]
    pub fn forget(&mut self, file: &[u8]) {
        let mut start = 0;
        let mut found = None;
        for line in self.text.as_bytes().split_inclusive(|&c| c == b'\n') {
            if mount_point(line) == Some(file) {
                found = Some((start, line.len()));
                break;
            }
            start += line.len();
        }
        if let Some((start, len)) = found {
            // The lines after it move up over it, and it goes off the end.
            let total = self.text.len();
            self.text.move_tail_to(start, total - start - len);
            self.text.truncate(total - len);
            self.lines -= 1;
        }
    }

    /// Writes `field` and a space, for the line that starts at `start`.
    #[inline(never)]
    fn field(&mut self, field: &[u8], start: usize) {
        for &c in field {
            // Blanks and `\` as fstab(5) wants (`\040` for a space), other control bytes
            // (musl's getmntent also splits at \r \v \f) and a `#` that would turn the
            // line into a comment (as the line's first byte): all as octal escapes.
            let escape =
                c <= b' ' || c == b'\\' || c == 0x7f || (self.text.len() == start && c == b'#');
            // `\ooo`, or only its first byte replaced by `c` itself.
            let out = [
                if escape { b'\\' } else { c },
                b'0' + (c >> 6),
                b'0' + ((c >> 3) & 7),
                b'0' + (c & 7),
            ];
            let len = if escape { out.len() } else { 1 };
            let _ = self.text.push(out.get(..len).unwrap_or(&out));
        }
        let _ = self.text.push(b" ");
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// The mount point of an fstab line: its second field (the fields are escaped, so spaces only
/// separate them).
fn mount_point(line: &[u8]) -> Option<&[u8]> {
    split(line, b' ').nth(1)
}

/// Where the first line of `lines` starts whose mount point lies strictly below `parent` (as
/// escaped in the lines; never for `/`, which every line follows).
fn first_line_below(lines: &[u8], parent: Option<&[u8]>) -> Option<usize> {
    let parent = parent.filter(|p| *p != b"/")?;
    let mut start = 0;
    for l in split(lines, b'\n') {
        let below = mount_point(l).is_some_and(|mp| {
            mp.len() > parent.len() && mp.starts_with(parent) && mp.get(parent.len()) == Some(&b'/')
        });
        if below {
            return Some(start);
        }
        start += l.len() + 1;
    }
    None
}

/// `write-fstab`: `<sysroot>/etc/fstab`, written to a temporary file and renamed.
pub fn write_fstab(ctx: &mut Ctx) -> Result<(), Error> {
    if ctx.fstab.overflow {
        return Err(err(
            b"fstab would exceed 16 KiB; not writing a partial one",
            &[],
        ));
    }
    let root = ctx.root()?;
    // One message for both: making /etc is part of writing /etc/fstab, the errno tells why.
    root.mkdir_p(b"/etc", 0o755)
        .and_then(|etc| sys::write_file_atomic(etc.as_fd(), b"fstab", ctx.fstab.as_bytes(), 0o644))
        .map_err(|e| err_errno(b"cannot write /etc/fstab in the new root", &[], e))?;
    log::info(
        b"wrote /etc/fstab with {} entries",
        &[log::num(ctx.fstab.lines as u64).as_bytes()],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_order_and_options_and_escape_blanks() {
        let mut f = Fstab::new();
        f.add(b"tmpfs", b"/tmp", b"tmpfs", b"rw");
        f.add(b"/dev/disk/by-label/COS_ACTIVE", b"/", b"ext4", b"ro");
        f.add(b"overlay", b"/etc", b"overlay", b"lowerdir=/sysroot/etc,upperdir=/run/overlay/etc/.overlay/upper,workdir=/run/overlay/etc/.overlay/work");
        f.add(
            b"/usr/local/.state/my dir.bind",
            b"/my dir",
            b"none",
            b"bind",
        );
        f.add(b"/dev/disk/by-label/X", b"/x", b"ext4", b"");
        assert_eq!(
            core::str::from_utf8(f.as_bytes()).unwrap(),
            "tmpfs /tmp tmpfs rw 0 0\n\
             /dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0\n\
             overlay /etc overlay lowerdir=/sysroot/etc,upperdir=/run/overlay/etc/.overlay/upper,workdir=/run/overlay/etc/.overlay/work 0 0\n\
             /usr/local/.state/my\\040dir.bind /my\\040dir none bind 0 0\n\
             /dev/disk/by-label/X /x ext4 defaults 0 0\n"
        );
        assert!(!f.overflow);
    }

    #[test]
    fn blanks_backslashes_controls_and_a_leading_hash_are_escaped() {
        let mut f = Fstab::new();
        f.add(b"#a\\b", b"/t\tn\nd\x7f#", b"ext4", b"rw");
        assert_eq!(
            f.as_bytes(),
            b"\\043a\\134b /t\\011n\\012d\\177# ext4 rw 0 0\n"
        );
    }

    #[test]
    fn one_line_per_mount_point_the_first_stays() {
        let mut f = Fstab::new();
        f.add(b"/dev/disk/by-label/COS_OEM", b"/oem", b"ext4", b"rw");
        f.add(b"/dev/disk/by-label/COS_OEM", b"/oem", b"ext4", b"defaults");
        f.add(b"/dev/disk/by-label/X", b"/oem/x", b"ext4", b"rw");
        f.add(b"/dev/disk/by-label/Y", b"/oem", b"xfs", b"ro");
        f.add(b"/dev/disk/by-label/Z", b"/my dir", b"ext4", b"rw");
        f.add(b"/dev/disk/by-label/Z", b"/my dir", b"ext4", b"rw");
        assert_eq!(
            core::str::from_utf8(f.as_bytes()).unwrap(),
            "/dev/disk/by-label/COS_OEM /oem ext4 rw 0 0\n\
             /dev/disk/by-label/X /oem/x ext4 rw 0 0\n\
             /dev/disk/by-label/Z /my\\040dir ext4 rw 0 0\n"
        );
        assert_eq!(f.lines, 3);
    }

    /// A mount recorded after the mounts below it (a persistent bind made after a volume kept
    /// visible below it) is listed before them: `mount -a` mounts parents first.
    #[test]
    fn parents_come_before_the_mounts_below_them() {
        let mut f = Fstab::new();
        f.add(b"/dev/disk/by-label/COS_ACTIVE", b"/", b"ext4", b"ro");
        f.add(b"overlay", b"/var/lib/rancher/cache", b"overlay", b"x");
        f.add(
            b"/dev/disk/by-label/DATA",
            b"/var/lib/rancher/storage",
            b"ext4",
            b"rw",
        );
        f.add(
            b"/dev/disk/by-label/OTHER",
            b"/var/lib/rancherx",
            b"ext4",
            b"rw",
        );
        f.add(
            b"/s/var-lib-rancher.bind",
            b"/var/lib/rancher",
            b"none",
            b"bind",
        );
        f.add(b"tmpfs", b"/tmp", b"tmpfs", b"rw");
        assert_eq!(
            core::str::from_utf8(f.as_bytes()).unwrap(),
            "/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0\n\
             /s/var-lib-rancher.bind /var/lib/rancher none bind 0 0\n\
             overlay /var/lib/rancher/cache overlay x 0 0\n\
             /dev/disk/by-label/DATA /var/lib/rancher/storage ext4 rw 0 0\n\
             /dev/disk/by-label/OTHER /var/lib/rancherx ext4 rw 0 0\n\
             tmpfs /tmp tmpfs rw 0 0\n"
        );
        assert_eq!(f.lines, 6);
    }

    #[cfg(feature = "fallback")]
    #[test]
    fn a_forgotten_mount_point_loses_its_line_only() {
        let mut f = Fstab::new();
        f.add(b"tmpfs", b"/tmp", b"tmpfs", b"rw");
        f.add(
            b"/dev/disk/by-label/COS_STATE",
            b"/run/initramfs/cos-state",
            b"ext4",
            b"ro",
        );
        f.add(b"/dev/disk/by-label/COS_ACTIVE", b"/", b"ext4", b"ro");
        f.forget(b"/run/initramfs/cos-state");
        f.forget(b"/nowhere");
        f.add(
            b"/dev/disk/by-label/COS_RECOVERY",
            b"/run/initramfs/cos-state",
            b"ext4",
            b"ro",
        );
        assert_eq!(
            core::str::from_utf8(f.as_bytes()).unwrap(),
            "tmpfs /tmp tmpfs rw 0 0\n\
             /dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0\n\
             /dev/disk/by-label/COS_RECOVERY /run/initramfs/cos-state ext4 ro 0 0\n"
        );
        assert_eq!(f.lines, 3);
        f.forget(b"/tmp");
        f.forget(b"/run/initramfs/cos-state");
        assert_eq!(
            f.as_bytes(),
            b"/dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0\n"
        );
        assert_eq!(f.lines, 1);
    }

    #[test]
    fn overflow_is_remembered_not_truncated_silently() {
        let mut f = Fstab::new();
        let long = [b'a'; 1000];
        // A mount point of its own for each line (a second line for one would be dropped).
        for i in b'a'..b'a' + 20 {
            f.add(&long, &[b'/', i], b"ext4", b"rw");
        }
        assert!(f.overflow);
        assert!(f.as_bytes().ends_with(b"0 0\n"));
    }
}
