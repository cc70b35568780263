//! `oci-root`: the root from an OCI image archive (`root=bootc-live:`, bootc-live's command
//! line with its bugs fixed). The archive, in the initramfs or on a partition, is mapped and
//! read in place; the image's layers are applied into a tmpfs of a set size; the tree is bound
//! read-only on the sysroot with `/etc` and `/var` bound read-write (each as the command line
//! says); the archive is then deleted from the initramfs, so its memory returns.

use super::{err, err_errno, Ctx, Error};
use crate::config::cmdline::{self, Device};
use crate::log;
use crate::oci;
use crate::sys::inroot::{fd_path, Root};
use crate::sys::{self, mapped::Mapped, CBuf, Flags};
use crate::util::fixed::Text;
use rustix::fd::AsFd;

/// Where the image's tree is unpacked (a tmpfs of its own, moved into the new root's `/run`
/// with the rest of `/run` at switch root).
const TREE: &[u8] = b"/run/bootc-live";
/// Where a partition holding the archive is mounted, read-only, while it is read.
const MEDIUM: &[u8] = b"/run/initramfs/bootc-medium";
/// The tree's tmpfs size without `bootc.live.size=`: a limit, not a reservation; three
/// quarters of RAM leaves room for the archive while it is read.
pub const DEFAULT_SIZE: &[u8] = b"75%";
/// How long a partition holding the archive is waited for.
const MEDIUM_TIMEOUT_MS: u64 = 30_000;

/// The bootc-live keys besides `root=`, read as dracut reads them: the last value of a key
/// counts; a boolean is false only for `0`, `no` and `off`, and a bare key is true.
pub struct Settings {
    pub tag: Text<128>,
    pub rw: bool,
    pub etc_rw: bool,
    pub var_rw: bool,
    pub size: Text<32>,
    pub rootflags: Text<256>,
}

fn boolean(value: Option<&[u8]>) -> bool {
    !matches!(value, Some(b"0" | b"no" | b"off"))
}

impl Settings {
    pub fn parse(text: &[u8]) -> Settings {
        let mut s = Settings {
            tag: Text::new(),
            rw: false,
            etc_rw: true,
            var_rw: true,
            size: Text::new(),
            rootflags: Text::new(),
        };
        let _ = s.tag.push(b"latest");
        let _ = s.size.push(DEFAULT_SIZE);
        cmdline::for_each_token(text, &mut |token| {
            let (key, value) = match token.iter().position(|&c| c == b'=') {
                Some(at) => (token.get(..at).unwrap_or(token), token.get(at + 1..)),
                None => (token, None),
            };
            match key {
                b"bootclabel" => set_text(&mut s.tag, key, value),
                b"rootflags" => set_text(&mut s.rootflags, key, value),
                b"bootc.live.size" => {
                    let v = value.unwrap_or(b"");
                    if valid_size(v) {
                        set_text(&mut s.size, key, value);
                    } else {
                        log::warn(b"bootc.live.size={}: not a size (like 4G or 80%), using {}", &[v, DEFAULT_SIZE]);
                    }
                }
                b"rw" => s.rw = boolean(value),
                b"bootc.live.etc.rw" => s.etc_rw = boolean(value),
                b"bootc.live.var.rw" => s.var_rw = boolean(value),
                b"bootc.live.erofs" | b"bootc.kexec" | b"bootc.zram" => log::warn(
                    b"{} is not supported by this build: ignored (the image is unpacked into a tmpfs)",
                    &[key],
                ),
                _ => {}
            }
        });
        s
    }
}

fn set_text<const N: usize>(text: &mut Text<N>, key: &[u8], value: Option<&[u8]>) {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return;
    };
    let mut t = Text::new();
    if t.push(v).is_ok() {
        *text = t;
    } else {
        log::warn(b"{}=: value too long, ignored", &[key]);
    }
}

/// A tmpfs size: digits with an optional k, m, g or % suffix.
fn valid_size(v: &[u8]) -> bool {
    let digits = match v.split_last() {
        Some((b'k' | b'K' | b'm' | b'M' | b'g' | b'G' | b'%', digits)) => digits,
        _ => v,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Where the archive is: a file of the initramfs, or a file on a partition.
enum Source<'a> {
    Initramfs(&'a [u8]),
    Partition(Device, &'a [u8]),
}

fn parse_source(source: &[u8]) -> Result<Source<'_>, Error> {
    if let Some(at) = source.windows(3).position(|w| w == b"://") {
        let scheme = source.get(..at).unwrap_or(source);
        return Err(err(
            b"root=bootc-live:{}: {} sources need a network, which this initramfs does not bring up; load the archive as a second initrd (bootloader or PXE) and boot with root=bootc-live:/<path>",
            &[source, scheme],
        ));
    }
    if source.starts_with(b"/") && !source.starts_with(b"/dev/") {
        return Ok(Source::Initramfs(source));
    }
    let Some(at) = source.windows(2).position(|w| w == b":/") else {
        return Err(err(
            b"root=bootc-live:{}: not a path (/x.oci) nor a partition and path (LABEL=x:/x.oci)",
            &[source],
        ));
    };
    let (dev, path) = (
        source.get(..at).unwrap_or(b""),
        source.get(at + 1..).unwrap_or(b""),
    );
    let dev = Device::parse(dev)
        .map_err(|why| err(b"root=bootc-live:{}: {}", &[source, why.as_bytes()]))?;
    Ok(Source::Partition(dev, path))
}

/// Maps `archive` and unpacks the image `tag` into the tmpfs `tree`, logging the time, the
/// amount and the peak memory.
pub fn unpack_archive(archive: &[u8], tag: &[u8], tree: &[u8]) -> Result<oci::Summary, Error> {
    let started = sys::now_ms();
    let fd = sys::open_ro(archive)
        .map_err(|e| err_errno(b"cannot open the archive {}", &[archive], e))?;
    let map =
        Mapped::new(&fd).map_err(|e| err_errno(b"cannot map the archive {}", &[archive], e))?;
    let summary = oci::unpack(map.bytes(), tag, tree)
        .map_err(|e| err(b"{}: {}", &[archive, e.message().as_bytes()]))?;
    // The kernel updates the peak (VmHWM) when memory is unmapped: after the archive's map.
    drop(map);
    let ms = sys::now_ms().saturating_sub(started);
    let mut peak = Text::new();
    crate::boot::report::peak_memory(&mut peak);
    log::info(
        b"unpacked {} layers ({} entries, {} MiB of files) in {} ms; peak memory {}",
        &[
            log::num(summary.layers as u64).as_bytes(),
            log::num(summary.stats.entries).as_bytes(),
            log::num(summary.stats.bytes >> 20).as_bytes(),
            log::num(ms).as_bytes(),
            peak.as_bytes(),
        ],
    );
    Ok(summary)
}

/// The step: unpack, then bind the tree on the sysroot.
pub fn oci_root(ctx: &mut Ctx) -> Result<(), Error> {
    let mut text = [0u8; cmdline::MAX_CMDLINE + 8];
    let n = sys::read_file(ctx.env.cmdline_path.as_bytes(), &mut text).unwrap_or(0);
    let settings = Settings::parse(text.get(..n).unwrap_or(&[]));
    let source = ctx.cmd.bootc_source.as_bytes();
    let (archive, medium) = match parse_source(source)? {
        Source::Initramfs(path) => (path, false),
        Source::Partition(dev, path) => {
            super::mount_device(
                ctx,
                &dev,
                super::Target::Host(MEDIUM),
                b"ro",
                MEDIUM_TIMEOUT_MS,
                false,
            )?;
            (path, true)
        }
    };
    let mut path: Text<512> = Text::new();
    if medium {
        path.push_lossy(MEDIUM);
    }
    path.push_lossy(archive);
    let path = path.as_bytes();

    sys::mkdir_p(TREE, 0o755).map_err(|e| err_errno(b"cannot create {}", &[TREE], e))?;
    let mut opts: Text<64> = Text::new();
    opts.push_lossy(b"mode=0755,size=");
    opts.push_lossy(settings.size.as_bytes());
    sys::mount(
        b"bootc-live",
        TREE,
        b"tmpfs",
        Flags::empty(),
        opts.as_bytes(),
    )
    .map_err(|e| {
        err_errno(
            b"cannot mount a tmpfs ({}) on {}",
            &[opts.as_bytes(), TREE],
            e,
        )
    })?;
    log::info(
        b"unpacking {} (tag {}) into a tmpfs of size {}",
        &[path, settings.tag.as_bytes(), settings.size.as_bytes()],
    );
    unpack_archive(path, settings.tag.as_bytes(), TREE)?;
    if medium {
        let _ = sys::unmount_detach(MEDIUM);
    } else {
        match unlink(path) {
            Ok(()) => log::info(
                b"deleted {} from the initramfs (its memory returns)",
                &[path],
            ),
            Err(e) => log::warn_errno(b"cannot delete {} from the initramfs: {}", &[path], e),
        }
    }
    bind_root(ctx, &settings)?;
    let sysroot = ctx.env.sysroot.as_bytes();
    let root = Root::open(sysroot).map_err(|e| err_errno(b"cannot open {}", &[sysroot], e))?;
    ctx.root = Some(root);
    Ok(())
}

fn unlink(path: &[u8]) -> sys::Result<()> {
    let mut c = CBuf::new();
    rustix::fs::unlink(c.c_str(path)?)
}

/// Binds the tree on the sysroot, read-only unless `rw` (with the flags of `rootflags=`), and
/// `/etc` and `/var` of the tree on themselves, each read-write unless its key says `0`.
fn bind_root(ctx: &Ctx, settings: &Settings) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    sys::mkdir_p(sysroot, 0o755).map_err(|e| err_errno(b"cannot create {}", &[sysroot], e))?;
    sys::mount_bind(TREE, sysroot)
        .map_err(|e| err_errno(b"cannot bind {} on {}", &[TREE, sysroot], e))?;
    let mut data = Text::<2048>::new();
    let flags = super::mount_options(settings.rootflags.as_bytes(), &mut data);
    if !data.is_empty() {
        log::warn(
            b"rootflags={}: not flags of a bind mount, ignored",
            &[data.as_bytes()],
        );
    }
    remount(sysroot, flags, !settings.rw)?;
    let tree = Root::open(TREE).map_err(|e| err_errno(b"cannot open {}", &[TREE], e))?;
    let root = Root::open(sysroot).map_err(|e| err_errno(b"cannot open {}", &[sysroot], e))?;
    for (dir, writable) in [(&b"/etc"[..], settings.etc_rw), (b"/var", settings.var_rw)] {
        let (Ok(from), Ok(to)) = (tree.dir(dir), root.dir(dir)) else {
            log::info(b"the image has no {}: not bound", &[dir]);
            continue;
        };
        let target = fd_path(to.as_fd());
        sys::mount_bind(fd_path(from.as_fd()).as_bytes(), target.as_bytes())
            .map_err(|e| err_errno(b"cannot bind {} of the image", &[dir], e))?;
        // The bind's own root, opened anew: `to` is the directory under it.
        let bound = root
            .dir(dir)
            .map_err(|e| err_errno(b"cannot open {}", &[dir], e))?;
        remount(fd_path(bound.as_fd()).as_bytes(), Flags::empty(), !writable)?;
        log::info(
            b"{} {}",
            &[
                dir,
                if writable {
                    b"read-write"
                } else {
                    b"read-only"
                },
            ],
        );
    }
    let mode: &[u8] = if settings.rw {
        b"read-write"
    } else {
        b"read-only"
    };
    log::info(b"image tree bound {} on {}", &[mode, sysroot]);
    Ok(())
}

/// Sets the flags of the bind mount at `target`: read-only or not, plus `flags`.
fn remount(target: &[u8], flags: Flags, read_only: bool) -> Result<(), Error> {
    let mut flags = flags | Flags::BIND;
    if read_only {
        flags |= Flags::RDONLY;
    } else {
        flags.remove(Flags::RDONLY);
    }
    let mut c = CBuf::new();
    let t = c
        .c_str(target)
        .map_err(|e| err_errno(b"bad path {}", &[target], e))?;
    rustix::mount::mount_remount(t, flags, c"")
        .map_err(|e| err_errno(b"cannot remount {}", &[target], e))
}

/// `immucore oci-unpack ARCHIVE DIR [--tag T]`: the unpacking alone, on a host (for tests and
/// the benchmark). DIR must be a tmpfs.
pub fn unpack_command<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> i32 {
    let (Some(archive), Some(dir)) = (args.next(), args.next()) else {
        log::error(
            b"usage: immucore oci-unpack ARCHIVE DIR [--tag TAG] (DIR: a tmpfs)",
            &[],
        );
        return 2;
    };
    let mut tag: &[u8] = b"latest";
    match (args.next(), args.next()) {
        (None, _) => {}
        (Some(b"--tag"), Some(t)) => tag = t,
        (Some(other), _) => {
            log::error(b"oci-unpack: unknown argument '{}'", &[other]);
            return 2;
        }
    }
    match unpack_archive(archive, tag, dir) {
        Ok(_) => 0,
        Err(e) => {
            log::error(b"{}", &[e.message().as_bytes()]);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_dracut_reads_them() {
        let s = Settings::parse(b"root=bootc-live:/r.oci ro bootclabel=v1 bootclabel=\"v2\" rw bootc.live.etc.rw=0 bootc.live.var.rw=no bootc.live.size=2G rootflags=nosuid");
        assert_eq!(s.tag.as_bytes(), b"v2", "the last value counts");
        assert!(s.rw && !s.etc_rw && !s.var_rw);
        assert_eq!(s.size.as_bytes(), b"2G");
        assert_eq!(s.rootflags.as_bytes(), b"nosuid");
        let d = Settings::parse(b"rw rw=0 bootc.live.size=lots");
        assert_eq!(d.tag.as_bytes(), b"latest");
        assert!(
            !d.rw && d.etc_rw && d.var_rw,
            "rw=0 undoes rw; etc and var default to rw"
        );
        assert_eq!(
            d.size.as_bytes(),
            DEFAULT_SIZE,
            "a bad size keeps the default"
        );
    }

    #[test]
    fn sources() {
        assert!(matches!(
            parse_source(b"/root.oci"),
            Ok(Source::Initramfs(b"/root.oci"))
        ));
        match parse_source(b"LABEL=IMAGES:/images/root.oci") {
            Ok(Source::Partition(dev, path)) => {
                assert_eq!(dev.value.as_bytes(), b"IMAGES");
                assert_eq!(path, b"/images/root.oci");
            }
            _ => panic!("not a partition source"),
        }
        assert!(matches!(
            parse_source(b"/dev/vdb1:/x.oci"),
            Ok(Source::Partition(_, b"/x.oci"))
        ));
        let net = parse_source(b"http://server/root.oci")
            .err()
            .unwrap()
            .message();
        assert!(net.as_str().contains("second initrd"), "{}", net.as_str());
        assert!(parse_source(b"docker://quay.io/x:latest").is_err());
        assert!(parse_source(b"root.oci").is_err());
    }
}
