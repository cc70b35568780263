//! Live roots as PID 1 (feature `live`): what dracut's dmsquash-live does for `root=live:...`,
//! in three steps. `mount-live-medium` waits for the medium (`CDLABEL=`/`LABEL=`/... with the
//! live deadline, `rd.immucore.sysrootwait=`) and mounts it read-only on `/run/initramfs/live`;
//! `mount-live-image` mounts the image on it (`rd.live.dir`/`rd.live.squashimg`, a file in the
//! initramfs, or the medium itself when it is a squashfs or erofs), through a loop device and,
//! with `rd.live.ram`, from a copy in RAM, on `/run/rootfsbase`; `mount-live-overlay` mounts a
//! sized tmpfs for the upper and work directories and the overlay on the sysroot. Everything
//! lives under `/run`, so it moves into the booted system with `/run`.

use super::{err, err_errno, mount_at, Ctx, Error, Target};
use crate::config::cmdline::Device;
use crate::dev::probe::FsType;
use crate::dev::scan::{self, probe_node};
use crate::log;
use crate::sys::{self, inroot::Root, loopdev};
use crate::util::fixed::Text;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{OFlags, SeekFrom};

/// Where the medium is mounted (dracut's path).
pub const MEDIUM_DIR: &[u8] = b"/run/initramfs/live";
/// Where the image is mounted, the lower layer of the overlay (dracut's path).
pub const IMAGE_DIR: &[u8] = b"/run/rootfsbase";
/// Where a squashfs that holds `LiveOS/rootfs.img` stays mounted (dracut's path).
const SQUASHFS_DIR: &[u8] = b"/run/initramfs/squashfs";
/// The image inside a squashfs, as Fedora-style live media nest it.
const INNER_IMAGE: &[u8] = b"/LiveOS/rootfs.img";
/// The tmpfs that holds the copy of the image with `rd.live.ram`, and the copy.
const RAM_DIR: &[u8] = b"/run/initramfs/live-ram";
const RAM_IMAGE: &[u8] = b"/run/initramfs/live-ram/image";
/// The tmpfs of the overlay's upper and work directories.
pub const OVERLAY_DIR: &[u8] = b"/run/overlayfs";
const UPPER_DIR: &[u8] = b"/run/overlayfs/upper";
const WORK_DIR: &[u8] = b"/run/overlayfs/work";
/// The overlay's options (the directories above).
const OVERLAY_OPTS: &[u8] =
    b"lowerdir=/run/rootfsbase,upperdir=/run/overlayfs/upper,workdir=/run/overlayfs/work";
/// The tmpfs size without `rd.live.overlay.size=`: the kernel's own tmpfs default, stated.
const DEFAULT_OVERLAY_SIZE: &[u8] = b"50%";

/// `mount-live-medium`: finds the medium `root=live:` names (waiting up to
/// `rd.immucore.sysrootwait=`) and mounts it read-only on `/run/initramfs/live`; for an image
/// file in the initramfs, or a medium that is a squashfs or erofs image itself, it only
/// remembers where the image is.
pub fn mount_live_medium(ctx: &mut Ctx) -> Result<(), Error> {
    let source = ctx.cmd.live.source.as_bytes();
    if is_network(source) {
        return Err(err(
            b"root=live:{}: immucore has no network; deliver the image as a second initrd \
              (a newc cpio with /rootfs.squashfs) and boot root=live:/rootfs.squashfs",
            &[source],
        ));
    }
    if is_initramfs_file(source) {
        return Ok(());
    }
    let dev = medium_device(source)?;
    let timeout_ms = u64::from(ctx.cmd.sysroot_wait_s) * 1000;
    scan::include_cdroms();
    let mut why = Text::<256>::new();
    let Some((node, _)) = scan::wait_for(&mut ctx.devices, &dev, timeout_ms, &mut why) else {
        why.push_lossy(b"; devices seen:");
        list_devices(&mut why);
        return Err(err(b"live medium {}", &[why.as_bytes()]));
    };
    ctx.live_medium = node;
    let node = ctx.live_medium.as_bytes();
    let fs = probe_node(node).map(|f| f.fs);
    match fs {
        Some(FsType::Squashfs | FsType::Erofs) => Ok(()),
        Some(fs) => {
            mount_at(
                ctx,
                node,
                Target::Host(MEDIUM_DIR),
                fs.name().as_bytes(),
                b"ro",
            )?;
            log::info(b"mounted live medium {} on {}", &[node, MEDIUM_DIR]);
            Ok(())
        }
        None => Err(err(
            b"live medium {} has no filesystem immucore recognises",
            &[node],
        )),
    }
}

/// Whether `source` is a URL or network spec (`http://...`, `nfs:server:/path`): a scheme
/// before a `:`, where a device spec has `TAG=` and a path starts with `/`.
fn is_network(source: &[u8]) -> bool {
    let at = |byte: u8| source.iter().position(|&c| c == byte);
    let colon = at(b':').unwrap_or(usize::MAX);
    colon < at(b'=').unwrap_or(usize::MAX) && !source.starts_with(b"/")
}

/// `root=live:/rootfs.squashfs`: an absolute path outside `/dev`, a file of the initramfs.
fn is_initramfs_file(source: &[u8]) -> bool {
    source.starts_with(b"/") && !source.starts_with(b"/dev/")
}

/// The device of `root=live:<source>`: `CDLABEL=` is the ISO's volume label, as `LABEL=`.
fn medium_device(source: &[u8]) -> Result<Device, Error> {
    let spec = match source.strip_prefix(b"CD".as_slice()) {
        Some(label) if label.starts_with(b"LABEL=") => label,
        _ => source,
    };
    Device::parse(spec).map_err(|why| err(b"root=live:{}: {}", &[source, why.as_bytes()]))
}

/// Appends the block devices there are and their labels (` sr0 COS_LIVE vda1 COS_OEM vdb`),
/// for the message of a medium that never appeared.
fn list_devices(out: &mut Text<256>) {
    let Ok(dir) = sys::open_dir(b"/sys/class/block") else {
        return;
    };
    let _ = sys::for_each_entry(dir.as_fd(), &mut |name, _| {
        let mut node = Text::<80>::new();
        node.push_lossy(b"/dev/");
        node.push_lossy(name);
        out.push_lossy(b" ");
        out.push_lossy(name);
        if let Some(fs) = probe_node(node.as_bytes()).filter(|f| !f.label.is_empty()) {
            out.push_lossy(b" ");
            out.push_lossy(fs.label.as_bytes());
        }
    });
}

/// The filesystems a live image may carry (squashfs, erofs, ext2/3/4).
fn is_image_fs(fs: FsType) -> bool {
    matches!(
        fs,
        FsType::Squashfs | FsType::Erofs | FsType::Ext2 | FsType::Ext3 | FsType::Ext4
    )
}

/// `mount-live-image`: the image (on the medium, in the initramfs, or the medium itself),
/// copied into RAM first with `rd.live.ram`, loop-mounted read-only on `/run/rootfsbase`; a
/// squashfs that holds `LiveOS/rootfs.img` moves to `/run/initramfs/squashfs` and the inner
/// image is mounted instead.
pub fn mount_live_image(ctx: &mut Ctx) -> Result<(), Error> {
    let live = &ctx.cmd.live;
    let medium = ctx.live_medium.as_bytes();
    let on_medium = sys::is_mountpoint_path(MEDIUM_DIR);
    // The image and its name in messages: the path searched on the medium, the file of the
    // initramfs, or the medium's device.
    let (name, opened) = if on_medium {
        let image = live.image.as_bytes();
        let file = Root::open(MEDIUM_DIR).and_then(|r| r.open_at(image, OFlags::RDONLY, 0));
        (image, file)
    } else if medium.is_empty() {
        let file = live.source.as_bytes();
        (file, sys::open(file, OFlags::RDONLY, 0))
    } else {
        (medium, sys::open_ro(medium))
    };
    let mut file = opened.map_err(|e| {
        let place: &[u8] = if on_medium {
            MEDIUM_DIR
        } else {
            b"the initramfs"
        };
        err_errno(b"live image {} not found in {}", &[name, place], e)
    })?;
    // A file of the initramfs is in RAM already.
    if live.ram && (on_medium || !medium.is_empty()) {
        file = copy_to_ram(ctx, file, name)?;
        if on_medium {
            // As with dracut, the medium may be removed once the image is in RAM.
            let _ = sys::unmount_detach(MEDIUM_DIR);
        }
    }
    mount_image(ctx, file.as_fd(), name, IMAGE_DIR)?;
    let inner = Root::open(IMAGE_DIR).and_then(|r| r.open_at(INNER_IMAGE, OFlags::RDONLY, 0));
    if let Ok(inner) = inner {
        sys::mkdir_p(SQUASHFS_DIR, 0o755)
            .and_then(|()| sys::mount_move(IMAGE_DIR, SQUASHFS_DIR))
            .map_err(|e| err_errno(b"cannot move {} to {}", &[IMAGE_DIR, SQUASHFS_DIR], e))?;
        mount_image(ctx, inner.as_fd(), INNER_IMAGE, IMAGE_DIR)?;
    }
    Ok(())
}

/// Attaches `file` (the image `name`) to a read-only loop device, checks it carries a live
/// image filesystem and mounts it read-only on `target`, with `rootflags=`.
fn mount_image(ctx: &Ctx, file: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> Result<(), Error> {
    let lp = loopdev::attach(file, true, name)
        .map_err(|e| err_errno(b"cannot attach {} to a loop device", &[name], e))?;
    let dev = lp.path.as_bytes();
    let Some(fs) = probe_node(dev).map(|f| f.fs).filter(|&f| is_image_fs(f)) else {
        return Err(err(
            b"live image {} is no squashfs, erofs or ext2/3/4 filesystem",
            &[name],
        ));
    };
    let mut opts = Text::<160>::new();
    opts.push_lossy(b"ro,");
    opts.push_lossy(ctx.cmd.live.rootflags.as_bytes());
    let fstype = fs.name().as_bytes();
    mount_at(ctx, dev, Target::Host(target), fstype, opts.as_bytes())?;
    log::info(b"mounted live image {} ({}) on {}", &[name, fstype, target]);
    // The mount holds the loop device now; closing ours lets autoclear work later.
    Ok(())
}

/// `rd.live.ram`: copies the image into a tmpfs of its size (`/run/initramfs/live-ram`),
/// logging each tenth done, and returns the copy, opened read-only.
fn copy_to_ram(ctx: &Ctx, from: OwnedFd, name: &[u8]) -> Result<OwnedFd, Error> {
    let size = rustix::fs::seek(&from, SeekFrom::End(0)).unwrap_or(0);
    // tmpfs counts whole pages: one MiB more than the image is room for the rounding.
    let mut opts = Text::<48>::new();
    opts.push_lossy(b"mode=0700,size=");
    let _ = opts.push_num(size.saturating_add(1 << 20));
    mount_at(
        ctx,
        b"tmpfs",
        Target::Host(RAM_DIR),
        b"tmpfs",
        opts.as_bytes(),
    )?;
    let to = sys::open(RAM_IMAGE, OFlags::WRONLY | OFlags::CREATE, 0o400)
        .map_err(|e| err_errno(b"cannot create {}", &[RAM_IMAGE], e))?;
    let mut offset = 0;
    while offset < size {
        // 64 MiB a round: a progress line each, and the watchdog fed.
        let chunk = (size - offset).min(64 << 20) as usize;
        match rustix::fs::sendfile(&to, &from, Some(&mut offset), chunk) {
            Ok(n) if n > 0 => {}
            Ok(_) => break,
            Err(e) => return Err(err_errno(b"copying {} into RAM failed", &[name], e)),
        }
        let done = [log::num(offset >> 20), log::num(size >> 20)];
        log::info(
            b"rd.live.ram: {} of {} MiB copied",
            &[done[0].as_bytes(), done[1].as_bytes()],
        );
        #[cfg(feature = "watchdog")]
        crate::watchdog::keepalive();
    }
    if offset != size {
        return Err(err(b"copying {} into RAM stopped early", &[name]));
    }
    sys::open(RAM_IMAGE, OFlags::RDONLY, 0)
        .map_err(|e| err_errno(b"cannot open {}", &[RAM_IMAGE], e))
}

/// `mount-live-overlay`: a tmpfs of `rd.live.overlay.size=` MiB (default half the RAM) on
/// `/run/overlayfs` with the upper and work directories, and the overlay of the image on the
/// sysroot, writable.
pub fn mount_live_overlay(ctx: &mut Ctx) -> Result<(), Error> {
    let mut opts = Text::<48>::new();
    opts.push_lossy(b"mode=0755,size=");
    match ctx.cmd.live.overlay_mib {
        0 => opts.push_lossy(DEFAULT_OVERLAY_SIZE),
        mib => {
            let _ = opts.push_num(u64::from(mib));
            opts.push_lossy(b"m");
        }
    }
    mount_at(
        ctx,
        b"tmpfs",
        Target::Host(OVERLAY_DIR),
        b"tmpfs",
        opts.as_bytes(),
    )?;
    for dir in [UPPER_DIR, WORK_DIR] {
        sys::mkdir_p(dir, 0o755).map_err(|e| err_errno(b"cannot create {}", &[dir], e))?;
    }
    let sysroot = ctx.sysroot();
    mount_at(
        ctx,
        b"LiveOS_rootfs",
        Target::Host(sysroot),
        b"overlay",
        OVERLAY_OPTS,
    )?;
    log::info(
        b"mounted the live overlay on {} (tmpfs {})",
        &[sysroot, opts.as_bytes()],
    );
    super::root::open_root(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cmdline::DeviceKind;

    #[test]
    fn network_sources_are_recognised() {
        for s in [
            "http://x/a.squashfs",
            "https://x",
            "nfs:server:/path",
            "tftp://h/f",
            "ftp://h",
        ] {
            assert!(is_network(s.as_bytes()), "{s}");
        }
        for s in [
            "CDLABEL=COS_LIVE",
            "LABEL=COS_RECOVERY",
            "/dev/sr0",
            "/rootfs.squashfs",
        ] {
            assert!(!is_network(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn initramfs_files_are_absolute_paths_outside_dev() {
        assert!(is_initramfs_file(b"/rootfs.squashfs"));
        assert!(!is_initramfs_file(b"/dev/sr0"));
        assert!(!is_initramfs_file(b"LABEL=x"));
    }

    #[test]
    fn medium_specs_parse_as_dracut_reads_them() {
        let cases = [
            ("CDLABEL=COS_LIVE", DeviceKind::Label, "COS_LIVE"),
            ("LABEL=COS_RECOVERY", DeviceKind::Label, "COS_RECOVERY"),
            ("UUID=1234-ABCD", DeviceKind::Uuid, "1234-ABCD"),
            ("PARTLABEL=live", DeviceKind::PartLabel, "live"),
            (
                "PARTUUID=0b4cbb7c-a3c7-456a-a892-7e5f4f5c3478",
                DeviceKind::PartUuid,
                "0b4cbb7c-a3c7-456a-a892-7e5f4f5c3478",
            ),
            ("/dev/sr0", DeviceKind::Path, "/dev/sr0"),
        ];
        for (spec, kind, value) in cases {
            let d = medium_device(spec.as_bytes()).unwrap();
            assert_eq!((d.kind, d.value.as_str()), (kind, value), "{spec}");
        }
        let e = medium_device(b"CDROM=x").unwrap_err().message();
        assert!(is_network(b"nfs:server:/srv/live.squashfs"));
        assert!(!is_network(b"LABEL=a:b"));
        assert!(
            e.as_str().starts_with("root=live:CDROM=x: unknown device"),
            "{}",
            e.as_str()
        );
    }

    #[test]
    fn live_images_are_squashfs_erofs_or_ext() {
        use FsType::*;
        for fs in [Squashfs, Erofs, Ext2, Ext3, Ext4] {
            assert!(is_image_fs(fs), "{}", fs.name());
        }
        for fs in [Iso9660, Vfat, Xfs, Btrfs] {
            assert!(!is_image_fs(fs), "{}", fs.name());
        }
    }
}
