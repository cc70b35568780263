//! Hooks: the `rootfs` and `initramfs` stages (executables in `S.d` directories, then
//! `kairos-agent run-stage S` or its `yip`/`elemental` equivalents) and the system extension
//! links. Hooks never fail the boot: their errors are logged.

use super::{Ctx, Error};
use crate::log;
use crate::sys::{self, CBuf};
use crate::util::fixed::{List, Text};
use core::ffi::CStr;
use rustix::fd::AsFd;
use rustix::fs::{FileType, OFlags};

/// A hook that runs longer than this is killed; the boot goes on.
const HOOK_TIMEOUT_MS: u64 = 300_000;
const PATH_ENV: &CStr = c"PATH=/usr/bin:/usr/sbin:/bin:/sbin";
/// Stage engines, first found wins: program and the words before the stage name.
const AGENTS: &[(&[u8], &[&CStr])] = &[
    (b"/usr/bin/kairos-agent", &[c"run-stage"]),
    (b"/usr/bin/yip", &[c"-s"]),
    (b"/usr/bin/elemental", &[c"run-stage"]),
];

/// Names of the executables in directory `dir`, sorted bytewise.
fn executables(dir: &[u8], out: &mut List<4096, 64>) {
    let Ok(fd) = sys::open_dir(dir) else { return };
    let _ = sys::for_each_entry(fd.as_fd(), |name, ft| {
        if ft == FileType::RegularFile || ft == FileType::Symlink || ft == FileType::Unknown {
            let _ = out.push(name);
        }
    });
    sort(out);
}

fn sort(list: &mut List<4096, 64>) {
    let mut sorted: List<4096, 64> = List::new();
    let mut used = [false; 64];
    for _ in 0..list.len() {
        let mut best: Option<usize> = None;
        for i in 0..list.len() {
            if used.get(i) == Some(&true) {
                continue;
            }
            if best.is_none_or(|b| list.get(i) < list.get(b)) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            if let Some(u) = used.get_mut(b) {
                *u = true;
            }
            let _ = sorted.push(list.get(b).unwrap_or(&[]));
        }
    }
    *list = sorted;
}

struct StageEnv {
    stage: Text<48>,
    state: Text<48>,
    sysroot: Text<160>,
}

impl StageEnv {
    fn new(ctx: &Ctx, stage: &str) -> StageEnv {
        let mut e = StageEnv {
            stage: Text::new(),
            state: Text::new(),
            sysroot: Text::new(),
        };
        e.stage.push_lossy(b"IMMUCORE_STAGE=");
        e.stage.push_lossy(stage.as_bytes());
        e.state.push_lossy(b"IMMUCORE_STATE=");
        e.state.push_lossy(ctx.cmd.state.name().as_bytes());
        e.sysroot.push_lossy(b"IMMUCORE_SYSROOT=");
        e.sysroot.push_lossy(ctx.sysroot());
        e
    }
}

/// Runs `path` (a path inside `chroot_to` when given) with `args`, logging the outcome.
fn run_one(step: &str, path: &[u8], args: &[&CStr], env: &StageEnv, chroot_to: Option<&[u8]>) {
    let (mut p, mut a, mut b, mut c) = (CBuf::new(), CBuf::new(), CBuf::new(), CBuf::new());
    let (Ok(p), Ok(a), Ok(b), Ok(c)) = (
        p.c_str(path),
        a.c_str(env.stage.as_bytes()),
        b.c_str(env.state.as_bytes()),
        c.c_str(env.sysroot.as_bytes()),
    ) else {
        return;
    };
    let mut argv: [&CStr; 6] = [p; 6];
    let n = 1 + args.len().min(5);
    for (slot, a) in argv.iter_mut().skip(1).zip(args) {
        *slot = a;
    }
    let envp = [a, b, c, PATH_ENV];
    match sys::run(
        argv.get(..n).unwrap_or(&[]),
        &envp,
        chroot_to,
        HOOK_TIMEOUT_MS,
    ) {
        Ok(0) => log::info(step, b"ran {}", &[path]),
        Ok(code) => log::warn(
            step,
            b"{} exited with status {}",
            &[path, log::num(code as u64).as_bytes()],
        ),
        Err(e) => log::warn(
            step,
            b"cannot run {}: {}",
            &[path, log::errno(e).as_bytes()],
        ),
    }
}

/// Stage `stage`: the initramfs' hooks, the image's hooks, then a stage engine. The
/// `initramfs` stage runs the image's programs chrooted into the new root (in a child).
pub fn run_stage(ctx: &mut Ctx, stage: &str) -> Result<(), Error> {
    let step = if stage == "rootfs" {
        "rootfs-hook"
    } else {
        "initramfs-hook"
    };
    let env = StageEnv::new(ctx, stage);
    let mut dir = Text::<256>::new();
    dir.push_lossy(ctx.env.config_dir.as_bytes());
    dir.push_lossy(b"/");
    dir.push_lossy(stage.as_bytes());
    dir.push_lossy(b".d");
    let mut names = List::new();
    executables(dir.as_bytes(), &mut names);
    for name in names.iter() {
        let mut p = dir.clone();
        p.push_lossy(b"/");
        p.push_lossy(name);
        run_one(step, p.as_bytes(), &[], &env, None);
    }

    let chrooted = stage == "initramfs";
    let sysroot = ctx.env.sysroot.clone();
    let mut image_dir = Text::<256>::new();
    image_dir.push_lossy(b"/usr/lib/immucore/");
    image_dir.push_lossy(stage.as_bytes());
    image_dir.push_lossy(b".d");
    // The image's hook directory, listed through the confined lookup.
    let mut names = List::new();
    if let Some(root) = &ctx.root {
        if let Ok(fd) = root.open_at(image_dir.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY, 0) {
            let real = sys::inroot::fd_path(fd.as_fd());
            executables(real.as_bytes(), &mut names);
        }
    }
    let agent = AGENTS.iter().find(|(p, _)| {
        if chrooted {
            ctx.root
                .as_ref()
                .is_some_and(|r| r.open_at(p, OFlags::PATH, 0).is_ok())
        } else {
            sys::is_executable(p)
        }
    });
    if names.is_empty() && agent.is_none() {
        log::debug(step, b"no hooks for stage {}", &[stage.as_bytes()]);
        return Ok(());
    }
    if chrooted {
        bind_api_filesystems(sysroot.as_bytes());
    }
    for name in names.iter() {
        let mut p = Text::<256>::new();
        if !chrooted {
            p.push_lossy(sysroot.as_bytes());
        }
        p.push_lossy(image_dir.as_bytes());
        p.push_lossy(b"/");
        p.push_lossy(name);
        run_one(
            step,
            p.as_bytes(),
            &[],
            &env,
            if chrooted {
                Some(sysroot.as_bytes())
            } else {
                None
            },
        );
    }
    if let Some((path, words)) = agent {
        let mut args: [&CStr; 3] = [c""; 3];
        let mut stage_c = CBuf::new();
        let stage_c = stage_c.c_str(stage.as_bytes()).ok();
        let mut n = 0;
        for w in words.iter() {
            if let Some(slot) = args.get_mut(n) {
                *slot = w;
                n += 1;
            }
        }
        if let (Some(s), Some(slot)) = (stage_c, args.get_mut(n)) {
            *slot = s;
            n += 1;
        }
        run_one(
            step,
            path,
            args.get(..n).unwrap_or(&[]),
            &env,
            if chrooted {
                Some(sysroot.as_bytes())
            } else {
                None
            },
        );
    }
    if chrooted {
        unbind_api_filesystems(sysroot.as_bytes());
    }
    Ok(())
}

const API_FS: &[&[u8]] = &[b"/dev", b"/proc", b"/sys", b"/run"];

/// Makes `/dev`, `/proc`, `/sys` and `/run` visible inside the new root for chrooted hooks.
fn bind_api_filesystems(sysroot: &[u8]) {
    for fs in API_FS {
        let mut target = Text::<256>::new();
        target.push_lossy(sysroot);
        target.push_lossy(fs);
        if sys::is_dir(target.as_bytes()) {
            let _ = sys::mount_bind(fs, target.as_bytes());
        }
    }
}

fn unbind_api_filesystems(sysroot: &[u8]) {
    for fs in API_FS.iter().rev() {
        let mut target = Text::<256>::new();
        target.push_lossy(sysroot);
        target.push_lossy(fs);
        let _ = sys::unmount_detach(target.as_bytes());
    }
}

/// `enable-sysext-confext`: links `<state>/*.raw` and `common/*.raw` system and configuration
/// extensions into `/run/extensions` and `/run/confexts` for systemd-sysext.
pub fn enable_sysext_confext(ctx: &mut Ctx) -> Result<(), Error> {
    const STEP: &str = "enable-sysext-confext";
    let Some(sub) = ctx.cmd.state.extension_dir() else {
        return Ok(());
    };
    let root = ctx.root()?;
    for (source, run_dir) in [
        (&b"/var/lib/kairos/extensions"[..], &b"/run/extensions"[..]),
        (b"/var/lib/kairos/confexts", b"/run/confexts"),
    ] {
        for dir in [sub.as_bytes(), b"common"] {
            let mut src = Text::<256>::new();
            src.push_lossy(source);
            src.push_lossy(b"/");
            src.push_lossy(dir);
            let Ok(fd) = root.open_at(src.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY, 0) else {
                continue;
            };
            let _ = sys::mkdir_p(run_dir, 0o755);
            let _ = sys::for_each_entry(fd.as_fd(), |name, ft| {
                if ft != FileType::RegularFile || !name.ends_with(b".raw") {
                    return;
                }
                let mut link = Text::<256>::new();
                link.push_lossy(run_dir);
                link.push_lossy(b"/");
                link.push_lossy(name);
                let mut to = src.clone();
                to.push_lossy(b"/");
                to.push_lossy(name);
                if sys::exists(link.as_bytes()) {
                    log::warn(
                        STEP,
                        b"{} already exists; not linking {}",
                        &[link.as_bytes(), to.as_bytes()],
                    );
                    return;
                }
                match sys::symlink(to.as_bytes(), link.as_bytes()) {
                    Ok(()) => log::info(STEP, b"enabled {}", &[to.as_bytes()]),
                    Err(e) => log::warn(
                        STEP,
                        b"cannot link {}: {}",
                        &[to.as_bytes(), log::errno(e).as_bytes()],
                    ),
                }
            });
        }
    }
    Ok(())
}
