//! The layout (where it comes from) and the ephemeral side of it: the `/run/overlay` backing
//! store and one overlayfs per `RW_PATHS` entry, whose upper layer vanishes at reboot.

use super::fstab::Fstab;
use super::{
    add_failure, err, err_errno, failures, mount_at, mount_device, mounted_root, Ctx, Error,
    Mounted, Target,
};
use crate::config::cmdline::{overlay_backing, Backing};
use crate::config::layout::{parse_env, EnvVars, Layout};
use crate::config::path::dash_name;
use crate::log::{self, Level};
use crate::sys::{
    self,
    inroot::{real_path, Root},
};
use crate::util::fixed::Text;
use rustix::fd::AsFd;

pub const LAYOUT_FILE: &[u8] = b"/run/cos/cos-layout.env";
pub const EXTRA_LAYOUT_FILE: &[u8] = b"/run/cos/extra-layout.env";
pub const OVERLAY_DIR: &[u8] = b"/run/overlay";
const MAX_LAYOUT_FILE: usize = 64 * 1024;
const BACKING_TIMEOUT_MS: u64 = 10_000;

/// Reads and parses one env file; `Ok(false)` when it does not exist.
fn read_env(path: &[u8], vars: &mut EnvVars) -> Result<bool, Error> {
    let mut buf = [0u8; MAX_LAYOUT_FILE];
    let n = match sys::read_file(path, &mut buf) {
        Ok(n) => n,
        Err(sys::Errno::NOENT) => return Ok(false),
        Err(sys::Errno::FBIG) => return Err(err(b"{}: larger than 64 KiB", &[path])),
        Err(e) => return Err(err_errno(b"cannot read {}", &[path], e)),
    };
    parse_env(buf.get(..n).unwrap_or(&[]), vars).map_err(|e| {
        err(
            b"{} line {}: {}",
            &[
                path,
                log::num(e.line as u64).as_bytes(),
                e.reason.as_bytes(),
            ],
        )
    })?;
    Ok(true)
}

/// `load-config`: the layout from `/run/cos/cos-layout.env`, else the initramfs'
/// `layout.env`, else the built-in Kairos defaults for the boot state (SPEC §4). In the last
/// two cases the applied layout is written to `/run/cos/cos-layout.env` for the booted system.
pub fn load_config(ctx: &mut Ctx) -> Result<(), Error> {
    let cmd = ctx.cmd;
    let overlay = cmd.overlay.as_bytes();
    let mut initramfs_layout = Text::<160>::new();
    initramfs_layout.push_lossy(ctx.env.config_dir.as_bytes());
    initramfs_layout.push_lossy(b"/layout.env");
    let mut main = EnvVars::new();
    // Only hooks write `/run/cos` before this step (the image's rootfs stage, or dracut's in
    // service mode): without either, init mode mounted `/run` empty and these files cannot be.
    const HOOKS_RAN: bool = cfg!(any(feature = "hooks", feature = "service"));
    let mut source: &[u8] = LAYOUT_FILE;
    let mut found = HOOKS_RAN && read_env(source, &mut main)?;
    if !found {
        source = initramfs_layout.as_bytes();
        found = read_env(source, &mut main)?;
    }
    let layout = if found {
        let mut extra = EnvVars::new();
        let has_extra = HOOKS_RAN && read_env(EXTRA_LAYOUT_FILE, &mut extra)?;
        Layout::from_env(&main, has_extra.then_some(&extra), overlay)
    } else {
        source = b"built-in defaults";
        Layout::builtin(ctx.state, overlay)
    }
    .map_err(|e| {
        err(
            b"{}: {} '{}': {}",
            &[
                source,
                e.key.as_bytes(),
                e.item.as_bytes(),
                e.reason.as_bytes(),
            ],
        )
    })?;
    // Refused entries were skipped one by one; the rest of the layout applies.
    for warning in layout.warnings.iter() {
        log::warn(b"{}: {}", &[source, warning]);
    }
    if layout.unreported_warnings > 0 {
        let more = log::num(layout.unreported_warnings as u64);
        log::warn(b"{}: {} more refused entries", &[source, more.as_bytes()]);
    }
    if source != LAYOUT_FILE {
        let mut text = Text::<16384>::new();
        layout
            .render_env(&mut text)
            .map_err(|_| err(b"the layout is too large to write", &[]))?;
        let _ = sys::mkdir_p(b"/run/cos", 0o755);
        sys::write_path_atomic(LAYOUT_FILE, text.as_bytes(), 0o644)
            .map_err(|e| err_errno(b"cannot write {}", &[LAYOUT_FILE], e))?;
    }
    log::info(
        b"layout from {}: {} overlay paths, {} persistent paths, {} volumes, overlay {}",
        &[
            source,
            log::num(layout.rw_paths.len() as u64).as_bytes(),
            log::num(layout.binds.len() as u64).as_bytes(),
            log::num(layout.volumes.len() as u64).as_bytes(),
            layout.overlay.as_bytes(),
        ],
    );
    ctx.layout = layout;
    Ok(())
}

/// `mount-base-overlay`: the store under every overlay's upper and work directory.
pub fn mount_base_overlay(ctx: &mut Ctx) -> Result<(), Error> {
    let spec = ctx.layout.overlay.as_bytes();
    // Created once the backing is known to be valid.
    let make_dir = || {
        sys::mkdir_p(OVERLAY_DIR, 0o700)
            .map_err(|e| err_errno(b"cannot create /run/overlay", &[], e))
    };
    let target = Target::Host(OVERLAY_DIR);
    match overlay_backing(spec) {
        Err(why) => Err(err(b"overlay backing '{}': {}", &[spec, why.as_bytes()])),
        Ok(Backing::Tmpfs(size)) => {
            make_dir()?;
            let mut opts = Text::<64>::new();
            opts.push_lossy(b"size=");
            opts.push_lossy(size);
            let opts = opts.as_bytes();
            if mount_at(ctx, b"tmpfs", target, b"tmpfs", opts)? == Mounted::Now {
                log::info(b"mounted tmpfs ({}) on /run/overlay", &[opts]);
                ctx.fstab.add(b"tmpfs", OVERLAY_DIR, b"tmpfs", opts);
            }
            Ok(())
        }
        Ok(Backing::Device(dev)) => {
            make_dir()?;
            mount_device(ctx, &dev, target, b"", BACKING_TIMEOUT_MS, false)
        }
    }
}

/// `overlay-mount`: an overlay on every RW path. A path that is missing from the image and
/// cannot be created is skipped with a warning (upstream); other failures fail the step after
/// every path was tried.
pub fn overlay_mount(ctx: &mut Ctx) -> Result<(), Error> {
    let mut failed = Text::<256>::new();
    for path in ctx.layout.rw_paths.iter() {
        if let Err(e) = overlay_one(&ctx.root, &mut ctx.fstab, path) {
            e.log(Level::Error, b"{}");
            add_failure(&mut failed, b"overlay failed for", b"", &[path]);
        }
    }
    failures(&failed)
}

#[inline(never)]
fn overlay_one(root: &Option<Root>, fstab: &mut Fstab, path: &[u8]) -> Result<(), Error> {
    let root = mounted_root(root)?;
    // The argument list of the messages that name the path.
    let named = &[path];
    let lower = match root.mkdir_p(path, 0o755) {
        Ok(fd) => fd,
        Err(e) => {
            log::warn_errno(
                b"{} is missing in the image and cannot be created ({}): skipped",
                named,
                e,
            );
            return Ok(());
        }
    };
    let mut lower_path = Text::<512>::new();
    real_path(lower.as_fd(), &mut lower_path)
        .map_err(|e| err_errno(b"cannot name {}", named, e))?;
    let mut dash = Text::<256>::new();
    // Cannot fail: layout paths are normalized, at most `MAX_PATH` (240) bytes.
    let _ = dash_name(path, &mut dash);
    // `<OVERLAY_DIR>/<dash>/.overlay/`, where the upper and the work directory go.
    let mut dir = Text::<512>::new();
    dir.push_lossy(OVERLAY_DIR);
    dir.push_lossy(b"/");
    dir.push_lossy(dash.as_bytes());
    dir.push_lossy(b"/.overlay/");
    let (lower_dir, layers) = (lower_path.as_bytes(), dir.as_bytes());
    // Always fits: the lower path has at most 512 bytes, the directory 267.
    let mut opts = Text::<2048>::new();
    log::expand(
        b"lowerdir={},upperdir={}upper,workdir={}work",
        &[lower_dir, layers, layers],
        &mut |c| opts.push_lossy(&[c]),
    );
    let opts = opts.as_bytes();
    if sys::is_mountpoint(lower.as_fd(), b"") {
        super::log_already_mounted(path);
    } else {
        // The work directory, then the upper one, which `dir` keeps naming.
        let base = dir.len();
        let mut make = |leaf: &[u8]| {
            dir.truncate(base);
            dir.push_lossy(leaf);
            let made = dir.as_bytes();
            sys::mkdir_p(made, 0o755).map_err(|e| err_errno(b"cannot create {}", &[made], e))
        };
        make(b"work")?;
        make(b"upper")?;
        let upper = dir.as_bytes();
        // The merged directory takes mode and owner from the upper root: copy them from the
        // lower directory, or e.g. /root (0700) would become 0755.
        sys::copy_owner_and_mode(lower.as_fd(), upper)
            .map_err(|e| err_errno(b"cannot set mode of {}", &[upper], e))?;
        let at = sys::inroot::fd_path(lower.as_fd());
        sys::mount(
            b"overlay",
            at.as_bytes(),
            b"overlay",
            sys::Flags::empty(),
            opts,
        )
        .map_err(|e| err_errno(b"overlay on {} failed", named, e))?;
        log::info(b"mounted overlay on {} (upper {})", &[path, upper]);
    }
    fstab.add(b"overlay", path, b"overlay", opts);
    Ok(())
}
