//! The floor of the boot benchmark (`qemu/bench/run`): a hard-coded `/init` that does only the
//! kernel work of immucore's steady-state active boot of the benchmark disk (`qemu/mkdisk`), in
//! the same order, and nothing else: no discovery (the partitions are the disk's known
//! `/dev/vda1`, `vda3`, `vda4`), no parsing (the module list is read as plain lines, every path
//! and option is a constant), no logging but the benchmark's one phase mark.
//!
//! The work, as immucore does it (one line of the kernel log for immucore's step):
//! base-mounts, load-modules (one `finit_module` per listed module), create-sentinel,
//! mount-tmpfs, mount-state (wait for the node, mount ro), discover-state (loop attach ro),
//! mount-root, mount-oem, mount-base-overlay + overlay-mount (/var, /etc, /srv, upper dirs made,
//! modes copied), custom-mount (COS_PERSISTENT on /usr/local), mount-bind (the default layout's
//! 37 persistent paths: mkdir -p of the path, a bind of its store), write-fstab (the same 46
//! lines, written to a temporary file and renamed), initramfs-hook (the API filesystems bound in,
//! the image's hook run chrooted and waited for, unbound), switch-root (API filesystems moved,
//! the root moved onto `/`, chroot, the initramfs's files removed, exec `/sbin/init`).
//!
//! Any failure halts the VM with `REPORT: floor-failed <what>` on the console: the benchmark
//! then records the boot as failed instead of timing a different boot.
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;

/// The default layout's persistent paths in immucore's bind order (parents first).
const BINDS: [&str; 37] = [
    "/home", "/opt", "/root", "/etc/cni", "/var/cores", "/etc/init.d", "/etc/iscsi", "/etc/k0s",
    "/etc/kubernetes", "/usr/libexec", "/var/log", "/etc/modprobe.d", "/etc/pwx", "/etc/rancher",
    "/etc/runlevels", "/etc/ssh", "/etc/sysconfig", "/etc/systemd", "/etc/zfs",
    "/var/lib/ca-certificates", "/var/lib/calico", "/etc/ssl/certs", "/var/lib/cni",
    "/var/lib/confexts", "/var/lib/containerd", "/var/lib/dbus", "/var/lib/etcd",
    "/var/lib/extensions", "/var/lib/k0s", "/var/lib/kairos", "/var/lib/kubelet",
    "/var/lib/longhorn", "/var/lib/osd", "/var/lib/rancher", "/var/lib/rook",
    "/var/lib/tailscale", "/var/lib/wicked",
];
const OVERLAYS: [&str; 3] = ["/var", "/etc", "/srv"];
const API: [(&str, &str, libc::c_ulong, &str); 4] = [
    ("/proc", "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""),
    ("/sys", "sysfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, ""),
    ("/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
    ("/run", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755"),
];

fn fail(what: &str) -> ! {
    println!("REPORT: floor-failed {what}: {}", std::io::Error::last_os_error());
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn mount(src: &str, dst: &str, fstype: &str, flags: libc::c_ulong, data: &str) {
    let (s, d, t, o) = (c(src), c(dst), c(fstype), c(data));
    let r = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), t.as_ptr(), flags, o.as_ptr().cast()) };
    if r != 0 {
        fail(&format!("mount {src} on {dst}"));
    }
}

fn mkdir_p(path: &str) {
    if fs::DirBuilder::new().recursive(true).mode(0o755).create(path).is_err() {
        fail(&format!("mkdir {path}"));
    }
}

/// The store name of a persistent path: `/var/lib/cni` -> `var-lib-cni.bind`.
fn store(path: &str) -> String {
    format!("/sysroot/usr/local/.state/{}.bind", path.trim_start_matches('/').replace('/', "-"))
}

fn overlay_dir(path: &str) -> String {
    format!("/run/overlay/{}/.overlay/", path.trim_start_matches('/').replace('/', "-"))
}

/// Waits for a device node (devtmpfs makes it once the driver found the disk), every 5 ms.
fn wait_node(path: &str) {
    for _ in 0..12_000 {
        if fs::metadata(path).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    fail(&format!("no {path}"));
}

fn load_modules() {
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut uts) };
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
    let list = fs::read_to_string("/etc/immucore/modules").unwrap_or_default();
    for m in list.lines().filter(|l| !l.is_empty()) {
        let Ok(f) = fs::File::open(format!("/lib/modules/{release}/{m}")) else { continue };
        unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
    }
}

/// LOOP_CTL_GET_FREE + LOOP_CONFIGURE, read-only with autoclear, as immucore attaches.
fn loop_attach(image: &str) -> String {
    let img = fs::File::open(image).unwrap_or_else(|_| fail(image));
    let ctl = fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control");
    let ctl = ctl.unwrap_or_else(|_| fail("/dev/loop-control"));
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), 0x4C82 /* LOOP_CTL_GET_FREE */) };
    if n < 0 {
        fail("LOOP_CTL_GET_FREE");
    }
    let dev = format!("/dev/loop{n}");
    let mut tries = 0;
    let node = loop {
        match fs::File::open(&dev) {
            Ok(f) => break f,
            Err(_) if tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(_) => fail(&dev),
        }
    };
    // struct loop_config { u32 fd; u32 block_size; struct loop_info64 info (232 bytes); u64 reserved[8]; }
    let mut cfg = [0u8; 4 + 4 + 232 + 64];
    cfg[..4].copy_from_slice(&(img.as_raw_fd() as u32).to_ne_bytes());
    // loop_info64.lo_flags at offset 52 of the info: LO_FLAGS_READ_ONLY (1) | LO_FLAGS_AUTOCLEAR (4)
    cfg[8 + 52..8 + 56].copy_from_slice(&5u32.to_ne_bytes());
    let name = image.as_bytes();
    let len = name.len().min(63);
    cfg[8 + 56..8 + 56 + len].copy_from_slice(&name[..len]);
    if unsafe { libc::ioctl(node.as_raw_fd(), 0x4C0A /* LOOP_CONFIGURE */, cfg.as_mut_ptr()) } != 0 {
        fail("LOOP_CONFIGURE");
    }
    std::mem::forget(node);
    dev
}

fn fstab() -> String {
    let mut t = String::from(
        "tmpfs /tmp tmpfs rw 0 0\n\
         /dev/disk/by-label/COS_STATE /run/initramfs/cos-state ext4 ro 0 0\n\
         /dev/disk/by-label/COS_ACTIVE / ext4 ro 0 0\n\
         /dev/disk/by-label/COS_OEM /oem ext4 rw 0 0\n\
         tmpfs /run/overlay tmpfs size=25% 0 0\n",
    );
    for p in OVERLAYS {
        let d = overlay_dir(p);
        t += &format!("overlay {p} overlay lowerdir=/sysroot{p},upperdir={d}upper,workdir={d}work 0 0\n");
    }
    t += "/dev/disk/by-label/COS_PERSISTENT /usr/local ext4 rw 0 0\n";
    for p in BINDS {
        t += &format!("{} {p} none bind 0 0\n", &store(p)["/sysroot".len()..]);
    }
    t
}

/// Runs the image's initramfs-stage hook chrooted into the new root, as immucore does.
fn hook() {
    for (p, ..) in API {
        mount(p, &format!("/sysroot{p}"), "", libc::MS_BIND, "");
    }
    let argv = [c("/usr/lib/immucore/initramfs.d/10-mark"), c("initramfs")];
    let envp = [
        c("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
        c("IMMUCORE_STAGE=initramfs"),
        c("IMMUCORE_STATE=active"),
    ];
    let av = [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
    let ev = [envp[0].as_ptr(), envp[1].as_ptr(), envp[2].as_ptr(), std::ptr::null()];
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::chroot(c"/sysroot".as_ptr());
            libc::chdir(c"/".as_ptr());
            libc::execve(av[0], av.as_ptr(), ev.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    for (p, ..) in API.iter().rev() {
        let t = c(&format!("/sysroot{p}"));
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Removes the initramfs's files below `dir` (same filesystem only), as switch_root does.
fn remove_children(dir: &str, dev: u64) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            if m.dev() == dev {
                remove_children(&p.to_string_lossy(), dev);
                let _ = fs::remove_dir(&p);
            }
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

fn switch_root() -> ! {
    mount("", "/", "", libc::MS_PRIVATE | libc::MS_REC, "");
    for (p, ..) in API {
        mount(p, &format!("/sysroot{p}"), "", libc::MS_MOVE, "");
    }
    let dev = fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
    let old_root = fs::File::open("/").unwrap_or_else(|_| fail("/"));
    unsafe {
        if libc::chdir(c"/sysroot".as_ptr()) != 0 {
            fail("chdir /sysroot");
        }
    }
    mount(".", "/", "", libc::MS_MOVE, "");
    unsafe {
        libc::chroot(c".".as_ptr());
        libc::chdir(c"/".as_ptr());
    }
    let old = format!("/proc/self/fd/{}", old_root.as_raw_fd());
    let old = fs::read_link(&old).map(|_| old).unwrap_or_default();
    remove_children(&old, dev);
    let init = c("/sbin/init");
    let av = [init.as_ptr(), std::ptr::null()];
    let ev = [std::ptr::null()];
    unsafe { libc::execve(init.as_ptr(), av.as_ptr(), ev.as_ptr()) };
    fail("exec /sbin/init")
}

/// The benchmark's marks in the kernel log (not printed on a `quiet` console): the end of each
/// group of immucore's steps, for the per-step comparison; `load-modules` is the phase mark.
fn mark(step: &str) {
    static KMSG: std::sync::OnceLock<Option<fs::File>> = std::sync::OnceLock::new();
    let kmsg = KMSG.get_or_init(|| fs::OpenOptions::new().write(true).open("/dev/kmsg").ok());
    if let Some(mut k) = kmsg.as_ref() {
        let _ = k.write_all(format!("bench: floor: {step} done").as_bytes());
    }
}

fn main() {
    for (path, fstype, flags, data) in API {
        mount(fstype, path, fstype, flags, data);
    }
    load_modules();
    mark("load-modules");
    mkdir_p("/run/cos");
    let _ = fs::write("/run/cos/active_mode", "1");
    mkdir_p("/tmp");
    mount("tmpfs", "/tmp", "tmpfs", 0, "");
    wait_node("/dev/vda3");
    mkdir_p("/run/initramfs/cos-state");
    mount("/dev/vda3", "/run/initramfs/cos-state", "ext4", libc::MS_RDONLY, "");
    mark("mount-state");
    let lo = loop_attach("/run/initramfs/cos-state/cOS/active.img");
    mount(&lo, "/sysroot", "ext4", libc::MS_RDONLY, "");
    mark("mount-root");
    mount("/dev/vda1", "/sysroot/oem", "ext4", 0, "");
    mark("mount-oem");
    mkdir_p("/run/overlay");
    mount("tmpfs", "/run/overlay", "tmpfs", 0, "size=25%");
    for p in OVERLAYS {
        let (d, lower) = (overlay_dir(p), format!("/sysroot{p}"));
        mkdir_p(&format!("{d}work"));
        mkdir_p(&format!("{d}upper"));
        let mode = fs::metadata(&lower).map(|m| m.mode() & 0o7777).unwrap_or(0o755);
        let _ = fs::set_permissions(format!("{d}upper"), fs::Permissions::from_mode(mode));
        let opts = format!("lowerdir={lower},upperdir={d}upper,workdir={d}work");
        mount("overlay", &lower, "overlay", 0, &opts);
    }
    mark("overlay-mount");
    mount("/dev/vda4", "/sysroot/usr/local", "ext4", 0, "");
    mark("custom-mount");
    for p in BINDS {
        let at = format!("/sysroot{p}");
        mkdir_p(&at);
        mount(&store(p), &at, "", libc::MS_BIND, "");
    }
    mark("mount-bind");
    let mut f = fs::File::create("/sysroot/etc/.fstab.tmp").unwrap_or_else(|_| fail("fstab"));
    let _ = f.write_all(fstab().as_bytes());
    drop(f);
    if fs::rename("/sysroot/etc/.fstab.tmp", "/sysroot/etc/fstab").is_err() {
        fail("rename fstab");
    }
    mark("write-fstab");
    hook();
    mark("initramfs-hook");
    switch_root()
}
