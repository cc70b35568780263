//! Hooks: the `rootfs` and `initramfs` stages (executables in `S.d` directories, then
//! `kairos-agent run-stage S` or its `yip`/`elemental` equivalents) and the system extension
//! links. Hooks never fail the boot: their errors are logged.

use super::init::API_FILESYSTEMS;
use super::{run_program, Ctx, Error, RUN_PATH};
use crate::log;
use crate::sys::{self, inroot::Root, CBuf, Errno};
use crate::util::fixed::{List, Text};
use core::ffi::CStr;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, OFlags};

/// A hook that runs longer than this is killed; the boot goes on.
const HOOK_TIMEOUT_MS: u64 = 300_000;
/// Stage engines, first found wins: the program and the word before the stage name.
const AGENTS: [[&CStr; 2]; 3] = [
    [c"/usr/bin/kairos-agent", c"run-stage"],
    [c"/usr/bin/yip", c"-s"],
    [c"/usr/bin/elemental", c"run-stage"],
];

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

/// Where a directory of hooks is, and so how its hooks are found and run.
enum HookDir<'a> {
    /// A directory of the initramfs (`<config dir>/rootfs.d/`): hooks run by their path.
    Initramfs,
    /// The image's directory (`/usr/lib/immucore/rootfs.d/`, a path inside `root`). Each hook
    /// is resolved inside the root, so a symlink on the way (the directory itself, or the
    /// hook), absolute or relative, leads where it leads in the image; the hook then runs by
    /// the real path that resolution found: from the initramfs (`sysroot/...`), or chrooted
    /// into the root (`chroot_to`) by its path there. (Not `execveat` on the resolved fd: a
    /// script run that way is handed to its interpreter as `/dev/fd/N`, which an initramfs
    /// with immucore as PID 1 does not have.)
    Image {
        root: &'a Root,
        chroot_to: Option<&'a [u8]>,
    },
}

/// Longest hook path: the directory (configuration directory or sysroot, at most 128 bytes,
/// and `/usr/lib/immucore/initramfs.d/`) and a name (at most 255 bytes) fit.
type HookPath = Text<512>;

/// `<dir><name>`, or `None` (with a warning) when it does not fit: a hook never runs under a
/// cut-off path, which could name another program.
fn hook_path(dir: &[u8], name: &[u8]) -> Option<HookPath> {
    let mut path = HookPath::new();
    if path.push(dir).and_then(|()| path.push(name)).is_err() {
        log::warn(
            b"skipping hook {}{}: the path is longer than 511 bytes",
            &[dir, name],
        );
        return None;
    }
    Some(path)
}

/// Runs `<dir><name>` for each of `names`, sorted bytewise (`dir` ends in a `/`).
fn run_all(dir: &[u8], names: &List<4096, 64>, envp: &[&CStr], how: &HookDir) {
    // The real path of the root, which the real path of each of its hooks starts with.
    let mut root_path = Text::<512>::new();
    if let HookDir::Image { root, .. } = how {
        if let Err(e) = sys::inroot::real_path(root.fd(), &mut root_path) {
            log::warn_errno(b"cannot run the hooks in {}: {}", &[dir], e);
            return;
        }
    }
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
        prev = name;
        let Some(path) = hook_path(dir, name) else {
            continue;
        };
        match *how {
            HookDir::Initramfs => run_one(path.as_bytes(), &[], envp, None),
            HookDir::Image { root, chroot_to } => {
                let mut real = Text::<512>::new();
                let resolved = root
                    .open_at(path.as_bytes(), OFlags::PATH, 0)
                    .and_then(|fd| sys::inroot::real_path(fd.as_fd(), &mut real));
                if let Err(e) = resolved {
                    log::warn_errno(b"cannot run hook {}: {}", &[path.as_bytes()], e);
                    continue;
                }
                let run = match chroot_to {
                    Some(_) => path_below(real.as_bytes(), root_path.as_bytes()),
                    None => Some(real.as_bytes()),
                };
                match run {
                    Some(run) => run_one(run, &[], envp, chroot_to),
                    None => log::warn(
                        b"not running hook {}: it resolved to {}, outside the root",
                        &[path.as_bytes(), real.as_bytes()],
                    ),
                }
            }
        }
    }
}

/// `path` as seen from `root` (both real paths): `/a/b` of `<root>/a/b`; `None` when `path`
/// is not below `root`.
fn path_below<'p>(path: &'p [u8], root: &[u8]) -> Option<&'p [u8]> {
    if root == b"/" {
        return Some(path);
    }
    let rest = path.strip_prefix(root)?;
    rest.starts_with(b"/").then_some(rest)
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
        Err(e) => e.log(log::Level::Warn, b"{}"),
    }
}

/// `NAME=value` (`name` ends in `=`) as a C string in `buf`.
fn env_var<'b>(buf: &'b mut CBuf, name: &[u8], value: &[u8]) -> sys::Result<&'b CStr> {
    let mut var = Text::<256>::new();
    var.push(name)
        .and_then(|()| var.push(value))
        .map_err(|_| Errno::NAMETOOLONG)?;
    buf.c_str(var.as_bytes())
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
    // The hook environment. Each variable fits (a state name; the sysroot holds at most 128
    // bytes) and holds no NUL (values from the environment cannot).
    let (mut stage_var, mut state_var, mut sysroot_var) = (CBuf::new(), CBuf::new(), CBuf::new());
    let envp = match (
        env_var(&mut stage_var, b"IMMUCORE_STAGE=", stage),
        env_var(
            &mut state_var,
            b"IMMUCORE_STATE=",
            ctx.state.name().as_bytes(),
        ),
        env_var(&mut sysroot_var, b"IMMUCORE_SYSROOT=", sysroot),
    ) {
        (Ok(stage), Ok(state), Ok(sysroot)) => [RUN_PATH, stage, state, sysroot],
        _ => return Err(super::err(b"the hook environment does not fit", &[])),
    };

    // The initramfs' hook directory first, then the image's.
    let mut dir = Text::<512>::new();
    dir.push_lossy(ctx.env.config_dir.as_bytes());
    dir.push_lossy(hooks_d);
    let mut names = List::new();
    executables(sys::open_dir(dir.as_bytes()), &mut names);
    run_all(dir.as_bytes(), &names, &envp, &HookDir::Initramfs);

    // The image's hook directory, listed and resolved inside the root.
    dir.clear();
    dir.push_lossy(b"/usr/lib/immucore");
    dir.push_lossy(hooks_d);
    let image_dir = dir.as_bytes();
    names.clear();
    let root = ctx.root.as_ref();
    if let Some(root) = root {
        let fd = root.open_at(image_dir, OFlags::RDONLY | OFlags::DIRECTORY, 0);
        executables(fd, &mut names);
    }
    // The rootfs stage runs the initramfs' engine, the initramfs stage the image's.
    let agent = AGENTS.iter().find(|[path, _]| {
        let path = path.to_bytes();
        if chrooted {
            root.is_some_and(|r| r.open_at(path, OFlags::PATH, 0).is_ok())
        } else {
            sys::is_executable(path)
        }
    });
    if names.is_empty() && agent.is_none() {
        log::debug(b"no hooks for stage {}", &[stage]);
        return Ok(());
    }
    let chroot_to = chrooted.then_some(sysroot);
    if chrooted {
        api_filesystems(sysroot, true);
    }
    if let Some(root) = root {
        run_all(
            image_dir,
            &names,
            &envp,
            &HookDir::Image { root, chroot_to },
        );
    }
    if let Some([path, word]) = agent {
        run_one(path.to_bytes(), &[word, stage_c], &envp, chroot_to);
    }
    if chrooted {
        api_filesystems(sysroot, false);
    }
    Ok(())
}

/// Makes the API filesystems visible inside the new root for chrooted hooks
/// (`bind`), or removes them again, in reverse order.
fn api_filesystems(sysroot: &[u8], bind: bool) {
    let count = API_FILESYSTEMS.len();
    for i in 0..count {
        let Some(fs) = API_FILESYSTEMS.get(if bind { i } else { count - 1 - i }) else {
            continue;
        };
        let fs = fs.path;
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
    let Some(sub) = ctx.state.extension_dir() else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_whose_path_does_not_fit_is_skipped_not_cut_off() {
        let name = [b'h'; 255];
        let fits = hook_path(b"/etc/immucore/rootfs.d/", &name).unwrap();
        assert_eq!(fits.len(), 23 + 255);
        let dir = [b'd'; 300];
        assert!(hook_path(&dir, &name).is_none());
    }

    #[test]
    fn the_path_of_a_hook_in_the_root_is_its_real_path_below_the_root() {
        let root: &[u8] = b"/sysroot";
        assert_eq!(
            path_below(b"/sysroot/elsewhere/10", root),
            Some(&b"/elsewhere/10"[..])
        );
        assert_eq!(path_below(b"/sysroot2/x", root), None);
        assert_eq!(path_below(b"/run/x", root), None);
        assert_eq!(path_below(b"/x/y", b"/"), Some(&b"/x/y"[..]));
    }

    #[test]
    fn every_hook_variable_is_one_c_string() {
        let mut buf = CBuf::new();
        assert_eq!(
            env_var(&mut buf, b"IMMUCORE_STAGE=", b"rootfs"),
            Ok(c"IMMUCORE_STAGE=rootfs")
        );
        assert_eq!(
            env_var(&mut buf, b"IMMUCORE_SYSROOT=", &[b's'; 250]),
            Err(Errno::NAMETOOLONG)
        );
    }
}
