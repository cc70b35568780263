//! Hooks: the `rootfs` and `initramfs` stages (executables in `S.d` directories, then
//! `kairos-agent run-stage S` or its `yip`/`elemental` equivalents) and the system extension
//! links. Hooks never fail the boot: their errors are logged.

use super::{log_error, run_program, take_c_str, Ctx, Error};
use crate::log;
use crate::sys::{self, CBuf};
use crate::util::fixed::{List, Text};
use core::ffi::CStr;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, OFlags};

/// A hook that runs longer than this is killed; the boot goes on.
const HOOK_TIMEOUT_MS: u64 = 300_000;
const PATH_ENV: &CStr = c"PATH=/usr/bin:/usr/sbin:/bin:/sbin";
/// Stage engines, first found wins: program and the word before the stage name, as C strings
/// back to back.
const AGENTS: &[u8] =
    b"/usr/bin/kairos-agent\0run-stage\0/usr/bin/yip\0-s\0/usr/bin/elemental\0run-stage\0";

/// What `sys::for_each_entry` calls here: one instantiation of it serves both listings.
type EntryFn<'a> = dyn FnMut(&[u8], FileType) + 'a;

/// Adds the names of the executables in directory `dir` to `out`, if it could be opened.
fn executables(dir: sys::Result<OwnedFd>, out: &mut List<4096, 64>) {
    let Ok(dir) = dir else {
        return;
    };
    let add: &mut EntryFn = &mut |name, ft| {
        if ft == FileType::RegularFile || ft == FileType::Symlink || ft == FileType::Unknown {
            let _ = out.push(name);
        }
    };
    let _ = sys::for_each_entry(dir.as_fd(), add);
}

/// Runs `<dir><name>` for each of `names`, sorted bytewise (`dir` ends in a `/`).
fn run_all(dir: &[u8], names: &List<4096, 64>, envp: &[&CStr], chroot_to: Option<&[u8]>) {
    // The names come from one directory, so they are unique: each round runs the smallest
    // name after the previous one. No name is empty, so all sort after the first round's "".
    let mut prev: &[u8] = b"";
    loop {
        let mut next: Option<&[u8]> = None;
        for n in names.iter() {
            if n > prev && next.is_none_or(|b| n < b) {
                next = Some(n);
            }
        }
        let Some(name) = next else { break };
        let mut p = Text::<256>::new();
        p.push_lossy(dir);
        p.push_lossy(name);
        run_one(p.as_bytes(), &[], envp, chroot_to);
        prev = name;
    }
}

/// Runs `path` (a path inside `chroot_to` when given) with `args` (at most two), logging the
/// outcome.
fn run_one(path: &[u8], args: &[&CStr], envp: &[&CStr], chroot_to: Option<&[u8]>) {
    let mut p = CBuf::new();
    let Ok(p) = p.c_str(path) else {
        return;
    };
    let mut argv: [&CStr; 3] = [p; 3];
    for (slot, a) in argv.iter_mut().skip(1).zip(args) {
        *slot = a;
    }
    let argv = argv.get(..1 + args.len()).unwrap_or(&argv);
    match run_program(argv, envp, chroot_to, HOOK_TIMEOUT_MS, [b"", path], 0) {
        Ok(_) => log::info(b"ran {}", &[path]),
        Err(_) => log_error(log::Level::Warn, b"{}"),
    }
}

/// Stage `rootfs`, or `initramfs` when `chrooted`: the initramfs' hooks, the image's hooks,
/// then a stage engine. The `initramfs` stage runs the image's programs chrooted into the new
/// root (in a child).
pub fn run_stage(ctx: &mut Ctx, chrooted: bool) -> Result<(), Error> {
    // The stage, and the name of its hook directories (with a trailing `/`, for the names).
    let (stage_c, hooks_d): (_, &[u8]) = if chrooted {
        (c"initramfs", b"/initramfs.d/")
    } else {
        (c"rootfs", b"/rootfs.d/")
    };
    let stage = stage_c.to_bytes();
    let sysroot = ctx.sysroot();
    // The hook environment: `KEY=value` strings back to back, each ended by a NUL. None of the
    // values (literals, a state name, the sysroot from the environment, at most 128 bytes)
    // holds a NUL, so each string is found again up to its own.
    let mut vars = Text::<256>::new();
    log::expand(
        b"IMMUCORE_STAGE={}\0IMMUCORE_STATE={}\0IMMUCORE_SYSROOT={}\0",
        &[stage, ctx.cmd.state.name().as_bytes(), sysroot],
        &mut |c| vars.push_lossy(&[c]),
    );
    let mut envp = [PATH_ENV; 4];
    let mut rest = vars.as_bytes();
    // Always three: each value fits in `vars` and holds no NUL (see above).
    for slot in envp.iter_mut().take(3) {
        if let Some(var) = take_c_str(&mut rest) {
            *slot = var;
        }
    }

    // The initramfs' hook directory first, then the image's (both fit: the configuration
    // directory and the sysroot hold at most 128 bytes).
    let mut dir = Text::<512>::new();
    dir.push_lossy(ctx.env.config_dir.as_bytes());
    dir.push_lossy(hooks_d);
    let mut names = List::new();
    executables(sys::open_dir(dir.as_bytes()), &mut names);
    run_all(dir.as_bytes(), &names, &envp, None);

    // The image's hook directory, as the hooks see it: from inside the new root when chrooted,
    // through the sysroot otherwise.
    dir.clear();
    if !chrooted {
        dir.push_lossy(sysroot);
    }
    let inside = dir.len();
    dir.push_lossy(b"/usr/lib/immucore");
    dir.push_lossy(hooks_d);
    let hooks = dir.as_bytes();
    let image_dir = hooks.get(inside..).unwrap_or_default();
    // Listed through the confined lookup.
    names.clear();
    if let Some(root) = &ctx.root {
        let fd = root.open_at(image_dir, OFlags::RDONLY | OFlags::DIRECTORY, 0);
        executables(fd, &mut names);
    }
    let mut agents = AGENTS;
    let agent = loop {
        let (Some(path), Some(word)) = (take_c_str(&mut agents), take_c_str(&mut agents)) else {
            break None;
        };
        let path = path.to_bytes();
        let found = if chrooted {
            ctx.root
                .as_ref()
                .is_some_and(|r| r.open_at(path, OFlags::PATH, 0).is_ok())
        } else {
            sys::is_executable(path)
        };
        if found {
            break Some((path, word));
        }
    };
    if names.is_empty() && agent.is_none() {
        log::debug(b"no hooks for stage {}", &[stage]);
        return Ok(());
    }
    let chroot_to = chrooted.then_some(sysroot);
    if chrooted {
        api_filesystems(sysroot, true);
    }
    run_all(hooks, &names, &envp, chroot_to);
    if let Some((path, word)) = agent {
        run_one(path, &[word, stage_c], &envp, chroot_to);
    }
    if chrooted {
        api_filesystems(sysroot, false);
    }
    Ok(())
}

const API_FS: [&[u8]; 4] = [b"/dev", b"/proc", b"/sys", b"/run"];

/// Makes `/dev`, `/proc`, `/sys` and `/run` visible inside the new root for chrooted hooks
/// (`bind`), or removes them again, in reverse order.
fn api_filesystems(sysroot: &[u8], bind: bool) {
    for i in 0..API_FS.len() {
        let Some(fs) = API_FS.get(if bind { i } else { API_FS.len() - 1 - i }) else {
            continue;
        };
        let mut target = Text::<256>::new();
        target.push_lossy(sysroot);
        target.push_lossy(fs);
        if !bind {
            let _ = sys::unmount_detach(target.as_bytes());
        } else if sys::is_dir(target.as_bytes()) {
            let _ = sys::mount_bind(fs, target.as_bytes());
        }
    }
}

/// `enable-sysext-confext`: links `<state>/*.raw` and `common/*.raw` system and configuration
/// extensions into `/run/extensions` and `/run/confexts` for systemd-sysext.
pub fn enable_sysext_confext(ctx: &mut Ctx) -> Result<(), Error> {
    let Some(sub) = ctx.cmd.state.extension_dir() else {
        return Ok(());
    };
    let root = ctx.root()?;
    // Each kind of extension (system, configuration), kept in `/var/lib/kairos/<kind>` and
    // linked into `/run/<kind>`: from `<state>/`, then from `common/`.
    for i in 0..4 {
        let kind: &[u8] = if i < 2 { b"extensions/" } else { b"confexts/" };
        let dir = if i % 2 == 0 {
            sub.as_bytes()
        } else {
            b"common"
        };
        // The directory (with its trailing `/`), then `<directory>/<name>` for each extension
        // in it.
        let mut to = Text::<256>::new();
        to.push_lossy(b"/var/lib/kairos/");
        to.push_lossy(kind);
        to.push_lossy(dir);
        to.push_lossy(b"/");
        let Ok(fd) = root.open_at(to.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY, 0) else {
            continue;
        };
        let mut link = Text::<256>::new();
        link.push_lossy(b"/run/");
        link.push_lossy(kind);
        let _ = sys::mkdir_p(link.as_bytes(), 0o755);
        let (to_dir, link_dir) = (to.len(), link.len());
        let add: &mut EntryFn = &mut |name, ft| {
            if ft != FileType::RegularFile || !name.ends_with(b".raw") {
                return;
            }
            to.truncate(to_dir);
            to.push_lossy(name);
            link.truncate(link_dir);
            link.push_lossy(name);
            let (to, link) = (to.as_bytes(), link.as_bytes());
            if sys::exists(link) {
                log::warn(b"{} already exists; not linking {}", &[link, to]);
                return;
            }
            match sys::symlink(to, link) {
                Ok(()) => log::info(b"enabled {}", &[to]),
                Err(e) => log::warn_errno(b"cannot link {}: {}", &[to], e),
            }
        };
        let _ = sys::for_each_entry(fd.as_fd(), add);
    }
    Ok(())
}
