//! The root chain: sentinel, `/tmp`, the images partition, the loop device over the image and
//! the read-only root on the sysroot (or, in live mode, waiting for someone else's sysroot).

use super::{err, err_errno, mount_at, mount_device, Ctx, Error, Mounted, Target};
use crate::config::cmdline::{Device, DeviceKind};
use crate::dev::probe::FsInfo;
use crate::dev::scan::probe_node;
use crate::log;
use crate::sys::{self, inroot::Root, loopdev};
use crate::util::fixed::Text;
#[cfg(feature = "service")]
use crate::util::words::{is_word_of, words};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::OFlags;

pub const SENTINEL_DIR: &[u8] = b"/run/cos";
/// The images partition stays here: under `/run`, it moves with `/run` into the booted system.
pub const STATE_DIR: &[u8] = b"/run/initramfs/cos-state";

const STATE_TIMEOUT_MS: u64 = 60_000;

pub fn create_sentinel(ctx: &mut Ctx) -> Result<(), Error> {
    sys::mkdir_p(SENTINEL_DIR, 0o755).map_err(|e| err_errno(b"cannot create /run/cos", &[], e))?;
    let mut path = Text::<64>::new();
    path.push_lossy(SENTINEL_DIR);
    path.push_lossy(b"/");
    ctx.state.push_sentinel(&mut path);
    sys::write_path_atomic(path.as_bytes(), b"1", 0o644)
        .map_err(|e| err_errno(b"cannot write {}", &[path.as_bytes()], e))?;
    log::info(
        b"boot state {}: wrote {}",
        &[ctx.state.name().as_bytes(), path.as_bytes()],
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
    let state = ctx.state;
    let Some(label) = state.images_label() else {
        return Err(err(b"boot state unknown: root= names none of COS_ACTIVE, COS_PASSIVE, COS_RECOVERY, COS_SYSTEM (and no kairos.reset or recovery-mode)", &[]));
    };
    if ctx.cmd.image.is_empty() {
        return Err(err(b"could not get the image name from the command line (i.e. cos-img/filename=/cOS/active.img)", &[]));
    }
    let outcome = mount_images_partition(ctx, label);
    #[cfg(feature = "fallback")]
    let outcome = super::fallback::recover(ctx, super::fallback::Stage::State, outcome);
    outcome
}

/// Mounts the images partition `label` read-only (`rd.*.debugrw`: read-write) on
/// `/run/initramfs/cos-state`.
#[cfg_attr(not(feature = "fallback"), inline(always))]
pub(super) fn mount_images_partition(ctx: &mut Ctx, label: &str) -> Result<(), Error> {
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

/// Opens the image file on the images partition, resolved inside it: a symlink there cannot
/// point at some other file.
fn open_image(image: &[u8], flags: OFlags) -> Result<OwnedFd, Error> {
    let state = Root::open(STATE_DIR).map_err(|e| err_errno(b"cannot open {}", &[STATE_DIR], e))?;
    state
        .open_at(image, flags, 0)
        .map_err(|e| err_errno(b"cannot open image {} on the images partition", &[image], e))
}

/// `ext4, label COS_ACTIVE` or `squashfs, no label`: what a probe found, for messages.
fn describe_fs(fs: Option<&FsInfo>) -> Text<96> {
    let mut t = Text::new();
    let Some(fs) = fs else {
        t.push_lossy(b"unknown filesystem");
        return t;
    };
    t.push_lossy(fs.fs.name().as_bytes());
    if fs.label.is_empty() {
        t.push_lossy(b", no label");
    } else {
        t.push_lossy(b", label ");
        t.push_lossy(fs.label.as_bytes());
    }
    t
}

/// Attaches the image file to a loop device and checks it carries the expected filesystem.
pub fn discover_state(ctx: &mut Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    if sys::is_mountpoint_path(sysroot) {
        #[cfg(feature = "service")]
        return check_premounted(ctx);
        #[cfg(not(feature = "service"))]
        return Err(err(
            b"{} is mounted already (a root mounted by someone else needs the service feature)",
            &[sysroot],
        ));
    }
    let outcome = attach_image(ctx);
    #[cfg(feature = "fallback")]
    let outcome = super::fallback::recover(ctx, super::fallback::Stage::Discover, outcome);
    outcome
}

/// `discover-state` for the image of `ctx.state` (`image`): attached to a loop device in
/// `ctx.root_loop` when it holds a filesystem with the state's root label (or none).
#[cfg_attr(not(feature = "fallback"), inline(always))]
pub(super) fn attach_image(ctx: &mut Ctx) -> Result<(), Error> {
    let image = ctx.image();
    let rw = ctx.cmd.debugrw;
    let file = open_image(image, if rw { OFlags::RDWR } else { OFlags::RDONLY })?;
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
    let want = ctx.state.root_label().unwrap_or("").as_bytes();
    let dev = lp.path.as_bytes();
    let Some(fs) = probe_node(dev) else {
        return Err(err(
            b"{} is not a filesystem image (no known superblock on {})",
            &[image, dev],
        ));
    };
    // The label check is for filesystems that carry one: squashfs has none, and erofs or
    // ext4 may be made without one.
    let label = fs.label.as_bytes();
    if !label.is_empty() && label != want {
        return Err(err(
            b"{} carries the label '{}', expected '{}': refusing to boot the wrong image",
            &[image, label, want],
        ));
    }
    log::info(
        b"{} attached to {} ({})",
        &[image, dev, describe_fs(Some(&fs)).as_bytes()],
    );
    ctx.root_loop = Some((lp, fs.fs.name()));
    Ok(())
}

/// Kairos' own filesystem labels. A sysroot mounted from one of them other than the expected
/// root label is another part of this installation (the other image, a partition), never
/// the system asked for.
#[cfg(feature = "service")]
const KAIROS_LABELS: &[u8] =
    b"COS_ACTIVE COS_PASSIVE COS_SYSTEM COS_RECOVERY COS_STATE COS_PERSISTENT COS_OEM COS_GRUB";

/// `discover-state` when someone else mounted the sysroot already (dracut's `sysroot.mount`,
/// an earlier run of immucore): no loop device is needed, but what is mounted there is
/// checked and named. The image (a loop device over the image file) and a filesystem with the
/// expected label are booted; another Kairos filesystem is refused; anything else (a root
/// someone prepared, a bind mount of a directory) is booted with a warning that it is not the
/// image.
#[cfg(feature = "service")]
fn check_premounted(ctx: &Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    let image = ctx.image();
    let want = ctx.state.root_label().unwrap_or("").as_bytes();
    let mut node = Text::<32>::new();
    let fs = mounted_fs(sysroot, &mut node);
    let what = describe_fs(fs.as_ref());
    let label = fs.as_ref().map_or(&b""[..], |f| f.label.as_bytes());
    let dev: &[u8] = if node.is_empty() {
        b"no block device"
    } else {
        node.as_bytes()
    };
    // One argument list for every message: the last is the image, or what it is instead.
    let mut args = [sysroot, dev, what.as_bytes(), image];
    let verdict: &[u8] = if is_loop_over(dev, image) {
        b"a loop device over the image"
    } else if !label.is_empty() && label == want {
        b"the expected label"
    } else if is_word_of(KAIROS_LABELS, label) {
        return Err(err(
            b"{} is already mounted from {} ({}), not the image {}: refusing to boot the wrong system",
            &args,
        ));
    } else {
        log::warn(
            b"{} is already mounted from {} ({}), not the image {}; booting what is there",
            &args,
        );
        return Ok(());
    };
    if let Some(last) = args.last_mut() {
        *last = verdict;
    }
    log::info(b"{} is already mounted from {} ({}), {}", &args);
    Ok(())
}

/// What is mounted on `path`: its block device (into `node`, left empty when there is none)
/// and what the device's superblock says.
fn mounted_fs(path: &[u8], node: &mut Text<32>) -> Option<FsInfo> {
    sys::block_device_of(path, node).ok()?;
    probe_node(node.as_bytes())
}

/// Whether the block device `dev` is a loop device over the image file `image`.
#[cfg(feature = "service")]
fn is_loop_over(dev: &[u8], image: &[u8]) -> bool {
    let Ok(file) = open_image(image, OFlags::PATH) else {
        return false;
    };
    let backing = sys::open_ro(dev).and_then(|d| loopdev::backing_file(d.as_fd()));
    backing.is_ok() && backing == sys::file_id(file.as_fd())
}

/// Mounts the image's filesystem on the sysroot, read-only unless `rd.*.debugrw`.
pub fn mount_root(ctx: &mut Ctx) -> Result<(), Error> {
    let outcome = mount_image(ctx);
    #[cfg(feature = "fallback")]
    let outcome = super::fallback::recover(ctx, super::fallback::Stage::Mount, outcome);
    outcome
}

/// `mount-root` for the image `discover-state` attached (`ctx.root_loop`), of `ctx.state`.
#[cfg_attr(not(feature = "fallback"), inline(always))]
pub(super) fn mount_image(ctx: &mut Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    let want = ctx.state.root_label().unwrap_or("");
    let opts = root_opts(ctx);
    #[cfg(feature = "verity")]
    let mut mapped = false;
    match ctx.root_loop.take() {
        Some((lp, fs)) => {
            // With a root hash, the image is mounted through dm-verity (`/dev/mapper/root`).
            #[cfg(feature = "verity")]
            let lp = super::verity::verify_root(ctx, lp)?;
            #[cfg(feature = "verity")]
            {
                mapped = lp.path.as_bytes().starts_with(b"/dev/mapper/");
            }
            let dev = lp.path.as_bytes();
            if mount_at(ctx, dev, Target::Host(sysroot), fs.as_bytes(), opts)? == Mounted::Now {
                log::info(
                    b"mounted {} ({}) on {} {}",
                    &[dev, want.as_bytes(), sysroot, opts],
                );
            }
            // The mount holds the loop device now; closing our fd (here) lets autoclear
            // work later.
        }
        None if sys::is_mountpoint_path(sysroot) => super::log_already_mounted(sysroot),
        None => return Err(err(b"no loop device for the root image", &[])),
    }
    open_root(ctx)?;
    // The fstab line says what is mounted, whoever mounted it: the expected label when the
    // filesystem carries it, else its device; its filesystem type. For a root without a
    // block device (a bind of a prepared directory), the expected label and `auto`.
    let mut spec = Text::<192>::new();
    let mut node = Text::<32>::new();
    let fs = mounted_fs(sysroot, &mut node);
    let fstype = fs.as_ref().map_or("auto", |f| f.fs.name());
    match fs {
        // A mapped root (dm-verity) by its name: the label is on the loop device below it too.
        #[cfg(feature = "verity")]
        _ if mapped => spec.push_lossy(b"/dev/mapper/root"),
        Some(f) if f.label.as_bytes() != want.as_bytes() => spec.push_lossy(node.as_bytes()),
        _ => label_device(want.as_bytes()).by_path(&mut spec),
    }
    ctx.fstab
        .add(spec.as_bytes(), b"/", fstype.as_bytes(), opts);
    Ok(())
}

/// Opens the assembled sysroot as the root later steps work in.
pub(super) fn open_root(ctx: &mut Ctx) -> Result<(), Error> {
    let sysroot = ctx.env.sysroot.as_bytes();
    let root = Root::open(sysroot).map_err(|e| err_errno(b"cannot open {}", &[sysroot], e))?;
    ctx.root = Some(root);
    Ok(())
}

/// What shows that a sysroot holds a system: `/system` as upstream checks, or an init.
#[cfg(feature = "service")]
const SYSROOT_MARKERS: &[u8] = b"/system /sbin/init /usr/lib/systemd/systemd";

/// Live mode: someone else (dracut's dmsquash-live, an initramfs script) assembles the sysroot;
/// wait until it holds a system (`/system` as upstream checks, or an init).
#[cfg(feature = "service")]
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
