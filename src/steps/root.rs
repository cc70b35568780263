//! The root chain: sentinel, `/tmp`, the images partition, the loop device over the image and
//! the read-only root on the sysroot (or, in live mode, waiting for someone else's sysroot).

use super::{err, err_errno, mount_at, mount_device, Ctx, Error, Mounted, Target};
use crate::config::cmdline::{words, Device, DeviceKind};
use crate::log;
use crate::sys::{self, inroot::Root, loopdev};
use crate::util::fixed::Text;
use rustix::fd::AsFd;
use rustix::fs::OFlags;

pub const SENTINEL_DIR: &[u8] = b"/run/cos";
/// The images partition stays here: under `/run`, it moves with `/run` into the booted system.
pub const STATE_DIR: &[u8] = b"/run/initramfs/cos-state";

const STATE_TIMEOUT_MS: u64 = 60_000;

pub fn create_sentinel(ctx: &mut Ctx) -> Result<(), Error> {
    let name = ctx.cmd.state.sentinel();
    sys::mkdir_p(SENTINEL_DIR, 0o755).map_err(|e| err_errno(b"cannot create /run/cos", &[], e))?;
    let mut path = Text::<64>::new();
    path.push_lossy(SENTINEL_DIR);
    path.push_lossy(b"/");
    path.push_lossy(name.as_bytes());
    sys::write_path_atomic(path.as_bytes(), b"1", 0o644)
        .map_err(|e| err_errno(b"cannot write {}", &[path.as_bytes()], e))?;
    log::info(
        b"boot state {}: wrote {}",
        &[ctx.cmd.state.name().as_bytes(), path.as_bytes()],
    );
    Ok(())
}

pub fn mount_tmpfs(ctx: &mut Ctx) -> Result<(), Error> {
    let how = mount_at(ctx, b"tmpfs", Target::Host(b"/tmp"), b"tmpfs", b"rw")?;
    ctx.fstab.add(b"tmpfs", b"/tmp", b"tmpfs", b"rw");
    if how == Mounted::Now {
        log::info(b"mounted tmpfs on /tmp", &[]);
    }
    Ok(())
}

/// `LABEL=<label>`. Fits: the built-in COS_* labels, and the command line keeps at most 64
/// bytes of one.
pub(super) fn label_device(label: &[u8]) -> Device {
    let mut dev = Device {
        kind: DeviceKind::Label,
        value: Text::EMPTY,
    };
    dev.value.push_lossy(label);
    dev
}

/// Mounts `COS_STATE` (or `COS_RECOVERY`) read-only on `/run/initramfs/cos-state`.
pub fn mount_state(ctx: &mut Ctx) -> Result<(), Error> {
    let state = ctx.cmd.state;
    let Some(label) = state.images_label() else {
        return Err(err(b"boot state unknown: root= names none of COS_ACTIVE, COS_PASSIVE, COS_RECOVERY, COS_SYSTEM (and no kairos.reset or recovery-mode)", &[]));
    };
    if ctx.cmd.image.is_empty() {
        return Err(err(b"could not get the image name from the command line (i.e. cos-img/filename=/cOS/active.img)", &[]));
    }
    let opts = root_opts(ctx);
    mount_device(
        ctx,
        &label_device(label.as_bytes()),
        Target::Host(STATE_DIR),
        opts,
        STATE_TIMEOUT_MS,
        true,
    )
}

/// The images partition and the root are read-only unless `rd.*.debugrw`.
fn root_opts(ctx: &Ctx) -> &'static [u8] {
    if ctx.cmd.debugrw {
        b"rw"
    } else {
        b"ro"
    }
}

/// Attaches the image file to a loop device and checks it carries the expected filesystem.
pub fn discover_state(ctx: &mut Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    if sys::is_mountpoint_path(sysroot) {
        log::info(b"{} is already mounted; no loop device needed", &[sysroot]);
        return Ok(());
    }
    let image = ctx.cmd.image.as_bytes();
    // The image path is resolved inside the images partition: a symlink there cannot point
    // the loop device at some other file.
    let state = Root::open(STATE_DIR).map_err(|e| err_errno(b"cannot open {}", &[STATE_DIR], e))?;
    let rw = ctx.cmd.debugrw;
    let flags = if rw { OFlags::RDWR } else { OFlags::RDONLY };
    let file = state
        .open_at(image, flags, 0)
        .map_err(|e| err_errno(b"cannot open image {} on the images partition", &[image], e))?;
    // A truncated image (an interrupted upgrade) mounts with a bare EINVAL: say what it is.
    let file_size = rustix::fs::seek(&file, rustix::fs::SeekFrom::End(0)).unwrap_or(0);
    if let Some(fs_size) = crate::dev::scan::ext_size_of(file.as_fd()) {
        if fs_size > file_size {
            return Err(err(
                b"{} is truncated (the filesystem needs {} bytes, the file has {})",
                &[
                    image,
                    log::num(fs_size).as_bytes(),
                    log::num(file_size).as_bytes(),
                ],
            ));
        }
    }
    let lp = loopdev::attach(file.as_fd(), !rw, image)
        .map_err(|e| err_errno(b"cannot attach {} to a loop device", &[image], e))?;
    let want = ctx.cmd.state.root_label().unwrap_or("").as_bytes();
    let dev = lp.path.as_bytes();
    let Some(fs) = crate::dev::scan::probe_node(dev) else {
        return Err(err(
            b"{} is not a filesystem image (no known superblock on {})",
            &[image, dev],
        ));
    };
    let label = fs.label.as_bytes();
    if label != want {
        return Err(err(
            b"{} carries the label '{}', expected '{}': refusing to boot the wrong image",
            &[image, label, want],
        ));
    }
    log::info(
        b"{} attached to {} ({}, label {})",
        &[image, dev, fs.fs.name().as_bytes(), want],
    );
    ctx.root_loop = Some((lp, fs.fs.name()));
    Ok(())
}

/// Mounts the image's filesystem on the sysroot, read-only unless `rd.*.debugrw`.
pub fn mount_root(ctx: &mut Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    let want = ctx.cmd.state.root_label().unwrap_or("");
    let opts = root_opts(ctx);
    let fstype = match ctx.root_loop.take() {
        Some((lp, fs)) => {
            let dev = lp.path.as_bytes();
            if mount_at(ctx, dev, Target::Host(sysroot), fs.as_bytes(), opts)? == Mounted::Now {
                log::info(
                    b"mounted {} ({}) on {} {}",
                    &[dev, want.as_bytes(), sysroot, opts],
                );
            }
            // The mount holds the loop device now; closing our fd lets autoclear work later
            // (at the end of this arm).
            fs
        }
        None if sys::is_mountpoint_path(sysroot) => {
            super::log_already_mounted(sysroot);
            "auto"
        }
        None => return Err(err(b"no loop device for the root image", &[])),
    };
    open_root(ctx)?;
    let mut spec = Text::<192>::new();
    label_device(want.as_bytes()).by_path(&mut spec);
    ctx.fstab
        .add(spec.as_bytes(), b"/", fstype.as_bytes(), opts);
    Ok(())
}

/// Opens the assembled sysroot as the root later steps work in.
fn open_root(ctx: &mut Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    let root = Root::open(sysroot).map_err(|e| err_errno(b"cannot open {}", &[sysroot], e))?;
    ctx.root = Some(root);
    Ok(())
}

/// What shows that a sysroot holds a system: `/system` as upstream checks, or an init.
const SYSROOT_MARKERS: &[u8] = b"/system /sbin/init /usr/lib/systemd/systemd";

/// Live mode: someone else (dracut's dmsquash-live, an initramfs script) assembles the sysroot;
/// wait until it holds a system (`/system` as upstream checks, or an init).
pub fn wait_for_sysroot(ctx: &mut Ctx) -> Result<(), Error> {
    let wait_s = u64::from(ctx.cmd.sysroot_wait_s);
    let deadline = sys::now_ms().saturating_add(wait_s * 1000);
    let sysroot = ctx.env.sysroot.as_bytes();
    let mut probe = Text::<192>::new();
    loop {
        for marker in words(SYSROOT_MARKERS) {
            probe.clear();
            probe.push_lossy(sysroot);
            probe.push_lossy(marker);
            if sys::exists(probe.as_bytes()) {
                open_root(ctx)?;
                log::info(b"{} is ready ({} exists)", &[sysroot, marker]);
                return Ok(());
            }
        }
        if sys::stop_requested() {
            return Err(err(
                b"stopped waiting for {}: a stop signal (SIGTERM) arrived",
                &[sysroot],
            ));
        }
        if sys::now_ms() >= deadline {
            return Err(err(
                b"{} held no system after {} s (rd.immucore.sysrootwait)",
                &[sysroot, log::num(wait_s).as_bytes()],
            ));
        }
        sys::sleep_ms(100);
    }
}
