//! Shared machinery of the real-mount tests: GPT disk images built from declarative specs
//! (cached under `/var/tmp/immucore-mount`), loop devices with guaranteed detach, one global lock, and
//! `Bench::boot`, which runs `immucore` in a private mount namespace and collects what it left.
//!
//! Needs root, a kernel with loop devices and overlayfs, and the tools in `TOOLS`.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_immucore");
const LOCK_FILE: &str = "/tmp/immucore-mount-tests.lock";

/// (tool, Debian package that ships it)
const TOOLS: &[(&str, &str)] = &[
    ("sgdisk", "gdisk"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("unshare", "util-linux"),
    ("partx", "util-linux"),
    ("losetup", "mount"),
    ("mount", "mount"),
    ("bash", "bash"),
    ("dd", "coreutils"),
    ("find", "findutils"),
];

// ---------------------------------------------------------------------------------------------
// Disk specs

/// One entry of a filesystem built with `mkfs.ext4 -d`.
#[derive(Clone, Debug, Hash)]
pub enum Node {
    Dir(&'static str),
    File(&'static str, &'static str),
    Link(&'static str, &'static str),
    /// Pseudo-random bytes (deterministic, so the cache works): not a filesystem.
    Noise(&'static str, usize),
    /// A filesystem image file, e.g. `/cOS/active.img`.
    Image(&'static str, Fs),
    /// Sets the permission bits of an entry listed before.
    Mode(&'static str, u32),
}

impl Node {
    pub fn path(&self) -> &'static str {
        match self {
            Node::Dir(p) | Node::File(p, _) | Node::Link(p, _) | Node::Noise(p, _) => p,
            Node::Image(p, _) | Node::Mode(p, _) => p,
        }
    }
}

#[derive(Clone, Debug, Hash)]
pub struct Fs {
    pub label: &'static str,
    pub mb: u64,
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, Hash)]
pub struct Part {
    pub name: &'static str,
    pub fs: Fs,
}

pub fn part(name: &'static str, fs: Fs) -> Part {
    Part { name, fs }
}

pub fn empty_fs(label: &'static str, mb: u64) -> Fs {
    Fs {
        label,
        mb,
        nodes: vec![],
    }
}

/// The directories of an OS image; `/etc/image-name` holds `name` so a test sees which image is
/// the root. `/usr/libexec` exists so that the default layout's binds all succeed. `/srv` is
/// 0750 and `/etc/ssh` holds a 0600 key, a symlink and a subdirectory (attributes to keep).
pub fn os_image(label: &'static str, name: &'static str) -> Fs {
    let mut nodes: Vec<Node> = [
        "/etc/ssh",
        "/var/log",
        "/var/lib",
        "/srv",
        "/usr/local",
        "/usr/libexec",
        "/oem",
        "/home",
        "/opt",
        "/root",
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/tmp",
        "/sbin",
        "/data",
    ]
    .into_iter()
    .map(Node::Dir)
    .collect();
    nodes.extend([
        Node::File("/etc/image-name", name),
        Node::File("/etc/ssh/sshd_config", "hi"),
        Node::File("/var/log/boot.log", "log1"),
        Node::File("/etc/ssh/ssh_host_key", "secret"),
        Node::Mode("/etc/ssh/ssh_host_key", 0o600),
        Node::Link("/etc/ssh/ssh_link", "sshd_config"),
        Node::File("/etc/ssh/sub/f", "sub"),
        Node::Mode("/srv", 0o750),
    ]);
    Fs {
        label,
        mb: 8,
        nodes,
    }
}

/// A state/recovery partition holding image files under `/cOS`.
pub fn images_fs(label: &'static str, images: Vec<(&'static str, Fs)>) -> Fs {
    let mb = 8 + images.iter().map(|(_, f)| f.mb).sum::<u64>();
    let nodes = images.into_iter().map(|(p, f)| Node::Image(p, f)).collect();
    Fs { label, mb, nodes }
}

/// oem, recovery (recovery.img = COS_SYSTEM), state (active.img, passive.img), persistent.
pub fn standard_disk() -> Vec<Part> {
    vec![
        part(
            "oem",
            Fs {
                label: "COS_OEM",
                mb: 8,
                nodes: vec![Node::File("/oem-marker", "oem")],
            },
        ),
        part(
            "recovery",
            images_fs(
                "COS_RECOVERY",
                vec![("/cOS/recovery.img", os_image("COS_SYSTEM", "recovery"))],
            ),
        ),
        part("state", standard_state()),
        part("persistent", empty_fs("COS_PERSISTENT", 16)),
    ]
}

pub fn standard_state() -> Fs {
    images_fs(
        "COS_STATE",
        vec![
            ("/cOS/active.img", os_image("COS_ACTIVE", "active")),
            ("/cOS/passive.img", os_image("COS_PASSIVE", "passive")),
        ],
    )
}

/// `disk` without the partitions named in `names`.
pub fn without(mut disk: Vec<Part>, names: &[&str]) -> Vec<Part> {
    disk.retain(|p| !names.contains(&p.name));
    disk
}

/// `disk` with the partition called `name` replaced by `fs`.
pub fn replace(mut disk: Vec<Part>, name: &str, fs: Fs) -> Vec<Part> {
    let p = disk
        .iter_mut()
        .find(|p| p.name == name)
        .expect("no such partition");
    p.fs = fs;
    disk
}

// ---------------------------------------------------------------------------------------------
// Building (cached)

/// Outside `/tmp` and `/run` on purpose: immucore mounts tmpfs there inside the namespace,
/// which would hide a scratch dir (and a checkout) below them.
pub fn scratch() -> PathBuf {
    PathBuf::from("/var/tmp/immucore-mount")
}

/// Bump when the way images are built changes, so cached images are rebuilt.
const CACHE_VERSION: u32 = 1;

fn key(v: &impl Hash) -> String {
    let mut h = DefaultHasher::new();
    (CACHE_VERSION, v).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// PATH with the sbin directories, where the tools live, even for a user PATH without them.
fn search_path() -> String {
    std::env::var("PATH").unwrap_or_default() + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
}

fn command(prog: &str) -> Command {
    let mut c = Command::new(prog);
    c.env("PATH", search_path());
    c
}

#[track_caller]
pub fn sh(cmd: &str) -> String {
    let out = command("bash")
        .args(["-c", cmd])
        .output()
        .expect("cannot run bash");
    assert!(
        out.status.success(),
        "command failed ({}): {cmd}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Builds (or reuses) the ext4 image of `fs`; returns its cached path.
pub fn build_fs(fs: &Fs) -> PathBuf {
    let cache = scratch().join("cache");
    let out = cache.join(format!("fs-{}-{}.img", fs.label, key(fs)));
    if out.exists() {
        return out;
    }
    let stage = cache.join(format!("stage-{}", key(fs)));
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).unwrap();
    for n in &fs.nodes {
        let at = |p: &str| {
            let t = stage.join(p.trim_start_matches('/'));
            fs::create_dir_all(t.parent().unwrap()).unwrap();
            t
        };
        match n {
            Node::Dir(p) => fs::create_dir_all(at(p)).unwrap(),
            Node::File(p, text) => fs::write(at(p), format!("{text}\n")).unwrap(),
            Node::Link(p, to) => std::os::unix::fs::symlink(to, at(p)).unwrap(),
            Node::Noise(p, len) => fs::write(at(p), noise(*len)).unwrap(),
            Node::Mode(p, mode) => {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(at(p), fs::Permissions::from_mode(*mode)).unwrap()
            }
            Node::Image(p, inner) => {
                sh(&format!(
                    "cp --sparse=always {} {}",
                    q(&build_fs(inner)),
                    q(&at(p))
                ));
            }
        };
    }
    let tmp = out.with_extension("tmp");
    sh(&format!(
        "rm -f {t}; truncate -s {mb}M {t} && mkfs.ext4 -q -F -L {l} -d {s} {t}",
        t = q(&tmp),
        mb = fs.mb,
        l = fs.label,
        s = q(&stage)
    ));
    fs::rename(&tmp, &out).unwrap();
    let _ = fs::remove_dir_all(&stage);
    out
}

/// Builds (or reuses) a GPT disk image with one partition per `Part`, 1 MiB aligned.
pub fn build_disk(parts: &[Part]) -> PathBuf {
    let out = scratch()
        .join("cache")
        .join(format!("disk-{}.img", key(&parts)));
    if out.exists() {
        return out;
    }
    let total: u64 = 2 + parts.iter().map(|p| p.fs.mb).sum::<u64>();
    let tmp = out.with_extension("tmp");
    let mut gpt = String::new();
    let mut dd = String::new();
    let mut start = 1;
    for (i, p) in parts.iter().enumerate() {
        let n = i + 1;
        gpt += &format!(
            " -n {n}:{start}M:+{}M -c {n}:{} -t {n}:8300",
            p.fs.mb, p.name
        );
        dd += &format!(
            "dd if={} of={} bs=1M seek={start} conv=notrunc,sparse status=none\n",
            q(&build_fs(&p.fs)),
            q(&tmp)
        );
        start += p.fs.mb;
    }
    sh(&format!(
        "rm -f {t}; truncate -s {total}M {t} && sgdisk{gpt} {t} >/dev/null\n{dd}",
        t = q(&tmp)
    ));
    fs::rename(&tmp, &out).unwrap();
    out
}

/// Builds (or reuses) a GPT disk image of `count` (at most 128) partitions of 1 MiB, named
/// `p1`, `p2`...: a machine with many block devices. The partitions numbered in `filled` get
/// that filesystem (of 1 MiB), the others stay blank.
pub fn build_many_partitions(count: usize, filled: &[(usize, Fs)]) -> PathBuf {
    let out = scratch()
        .join("cache")
        .join(format!("many-{}.img", key(&(count, filled))));
    if out.exists() {
        return out;
    }
    let tmp = out.with_extension("tmp");
    let gpt: String = (1..=count)
        .map(|n| format!(" -n {n}:0:+1M -c {n}:p{n}"))
        .collect();
    let mut dd = String::new();
    for (n, fs) in filled {
        assert!(
            fs.mb == 1 && (1..=count).contains(n),
            "partition {n}: {fs:?}"
        );
        // Partition n starts at MiB n (sgdisk aligns the first one to 1 MiB).
        dd += &format!(
            "dd if={} of={} bs=1M seek={n} conv=notrunc,sparse status=none\n",
            q(&build_fs(fs)),
            q(&tmp)
        );
    }
    sh(&format!(
        "rm -f {t}; truncate -s {total}M {t} && sgdisk{gpt} {t} >/dev/null\n{dd}",
        total = count + 2,
        t = q(&tmp)
    ));
    fs::rename(&tmp, &out).unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Loop devices

/// An attached disk; detached on drop, even when the test fails.
pub struct Disk {
    pub dev: String,
    names: Vec<&'static str>,
}

impl Disk {
    /// `/dev/loopNpK` of the partition called `name`.
    pub fn part(&self, name: &str) -> String {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("no such partition")
            + 1;
        format!("{}p{i}", self.dev)
    }

    /// `/dev/loopNpK` of partition number `n`.
    pub fn nth(&self, n: usize) -> String {
        format!("{}p{n}", self.dev)
    }

    /// Waits until no mount namespace holds the ext4 filesystem of partition `name` (namespace
    /// teardown can lag behind the exit of its last process).
    pub fn wait_unmounted(&self, name: &str) {
        let sys = format!(
            "/sys/fs/ext4/{}",
            self.part(name).trim_start_matches("/dev/")
        );
        let end = Instant::now() + Duration::from_secs(5);
        while Path::new(&sys).exists() {
            assert!(
                Instant::now() < end,
                "{sys}: still mounted 5 s after the namespace ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Contents of `path` on the (unmounted) ext4 partition `name`, read with debugfs.
    pub fn read(&self, name: &str, path: &str) -> String {
        self.wait_unmounted(name);
        sh(&format!(
            "debugfs -R 'cat {path}' {} 2>/dev/null",
            self.part(name)
        ))
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = command("losetup").args(["-d", &self.dev]).status();
    }
}

/// Detaches loop devices left over by earlier crashed runs (backing file under `scratch()`).
fn detach_stale() {
    let Ok(dir) = fs::read_dir("/sys/block") else {
        return;
    };
    let root = scratch();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(back) = fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(back.trim()).starts_with(&root) {
            let _ = command("losetup")
                .args(["-d", &format!("/dev/{name}")])
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The bench: lock, scratch dir, boots

static LOCK: Mutex<()> = Mutex::new(());

fn require_env() {
    let path = search_path();
    let missing: Vec<_> = TOOLS
        .iter()
        .filter(|(t, _)| !path.split(':').any(|d| Path::new(d).join(t).is_file()))
        .collect();
    if !missing.is_empty() {
        let mut pk: Vec<&str> = TOOLS.iter().map(|(_, p)| *p).collect();
        pk.dedup();
        panic!(
            "missing tools: {}\nthe real-mount tests need the Debian packages: {}",
            missing
                .iter()
                .map(|(t, p)| format!("{t} (package {p})"))
                .collect::<Vec<_>>()
                .join(", "),
            pk.join(" ")
        );
    }
    let uid = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "the real-mount tests must run as root (loop devices, mounts)"
    );
}

pub struct Bench {
    pub dir: PathBuf,
    pub sysroot: PathBuf,
    boots: std::cell::Cell<u32>,
    _flock: File,
    _lock: MutexGuard<'static, ()>,
}

/// What a boot should be: command line, optional `layout.env`, shell to run in the namespace
/// before immucore (`$S` is the sysroot, `$W` the test dir) and checks to run after it.
#[derive(Default)]
pub struct Boot<'a> {
    pub cmdline: &'a str,
    pub layout: Option<&'a str>,
    pub args: &'a [&'a str],
    pub before: &'a str,
    pub checks: &'a [&'a str],
    /// Do not mount a fresh tmpfs on /run (for `--dry-run`, which must not need one).
    pub no_run_tmpfs: bool,
    /// Send SIGTERM to immucore this long after it started (a service manager's stop).
    pub sigterm_after: Option<&'a str>,
}

impl Bench {
    pub fn new(name: &str) -> Bench {
        require_env();
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let flock = File::create(LOCK_FILE).expect(LOCK_FILE);
        flock.lock().expect("flock");
        detach_stale();
        let dir = scratch().join("work").join(name);
        let _ = fs::remove_dir_all(&dir);
        let sysroot = dir.join("sysroot");
        fs::create_dir_all(&sysroot).unwrap();
        fs::create_dir_all(dir.join("cfg")).unwrap();
        Bench {
            dir,
            sysroot,
            boots: 0.into(),
            _flock: flock,
            _lock: lock,
        }
    }

    pub fn sysroot(&self) -> String {
        self.sysroot.display().to_string()
    }

    /// Copies the (cached) disk into the test dir and attaches it with its partitions.
    pub fn attach(&self, parts: &[Part]) -> Disk {
        self.attach_edited("disk.img", parts, |_| {})
    }

    /// A second disk: the disk of `build_many_partitions(count, filled)` attached with its
    /// partitions, which `Disk::nth` names.
    pub fn attach_many(&self, count: usize, filled: &[(usize, Fs)]) -> Disk {
        self.attach_copy(
            "many.img",
            &build_many_partitions(count, filled),
            &[],
            count,
            |_| {},
        )
    }

    /// The disk of `parts` attached from the copy `file` in the test dir, after `edit` changed
    /// that image (as a file on the host: a damaged partition table, say). Partitions the
    /// kernel does not find are added as blkid sees them (`partx -u`).
    pub fn attach_edited(&self, file: &str, parts: &[Part], edit: impl FnOnce(&Path)) -> Disk {
        let names: Vec<&'static str> = parts.iter().map(|p| p.name).collect();
        self.attach_copy(file, &build_disk(parts), &names, parts.len(), edit)
    }

    /// Copies `img` to `file` in the test dir, lets `edit` change it, attaches it and waits
    /// for partition `count`.
    fn attach_copy(
        &self,
        file: &str,
        img: &Path,
        names: &[&'static str],
        count: usize,
        edit: impl FnOnce(&Path),
    ) -> Disk {
        let copy = self.dir.join(file);
        sh(&format!("cp --sparse=always {} {}", q(img), q(&copy)));
        edit(&copy);
        let dev = sh(&format!("losetup -P -f --show {}", q(&copy)))
            .trim()
            .to_string();
        let disk = Disk {
            dev,
            names: names.to_vec(),
        };
        let last = format!(
            "/sys/class/block/{}",
            disk.nth(count).trim_start_matches("/dev/")
        );
        let end = Instant::now() + Duration::from_secs(10);
        while !Path::new(&last).exists() {
            let _ = command("partx").args(["-u", &disk.dev]).output();
            assert!(Instant::now() < end, "{last} did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        disk
    }

    /// Runs immucore in a private mount namespace and returns what it did.
    pub fn boot(&self, b: &Boot) -> Outcome {
        let n = self.boots.get() + 1;
        self.boots.set(n);
        let out = self.dir.join(format!("boot{n}"));
        fs::create_dir_all(&out).unwrap();
        fs::write(self.dir.join("cmdline"), format!("{}\n", b.cmdline)).unwrap();
        let layout = self.dir.join("cfg/layout.env");
        match b.layout {
            Some(text) => fs::write(&layout, text).unwrap(),
            None => {
                let _ = fs::remove_file(&layout);
            }
        }
        let mut script = format!(
            "S={s}; W={w}; O={o}; export S W O\n\
             mount --make-rprivate / || exit 90\n\
             {run}\
             ( set -e\n{before}\n) || exit 91\n\
             cat /proc/self/mountinfo > $O/mounts.before\n\
             HOST_PROC_CMDLINE=$W/cmdline IMMUCORE_SYSROOT=$S IMMUCORE_CONFIG_DIR=$W/cfg {bin} {args} \
             >$O/stdout 2>$O/stderr &\n\
             pid=$!\n\
             {stop}\
             wait $pid; echo $? > $O/rc\n\
             cat /proc/self/mountinfo > $O/mounts.after\n\
             find /run -mindepth 1 > $O/run.list\n\
             cat /run/immucore/immucore.log > $O/log 2>/dev/null\n\
             cat /run/immucore/boot-timeline.json > $O/timeline 2>/dev/null\n",
            s = q(&self.sysroot),
            w = q(&self.dir),
            o = q(&out),
            run = if b.no_run_tmpfs { "" } else { "mount -t tmpfs tmpfs /run || exit 92\n" },
            before = b.before,
            bin = BIN,
            args = b.args.join(" "),
            stop = b.sigterm_after.map(|d| format!("sleep {d}; kill -TERM $pid\n")).unwrap_or_default(),
        );
        for (i, c) in b.checks.iter().enumerate() {
            script += &format!("( {c}\n) > $O/check{i} 2>&1; echo $? > $O/check{i}.rc\n");
        }
        script += "exit 0\n";
        fs::write(out.join("script.sh"), &script).unwrap();
        let run = command("unshare")
            .args(["--mount", "--propagation", "private", "bash"])
            .arg(out.join("script.sh"))
            .output()
            .expect("cannot run unshare");
        assert!(
            run.status.success(),
            "namespace script failed ({}): {}{}",
            run.status,
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        let read = |f: &str| fs::read_to_string(out.join(f)).unwrap_or_default();
        let before = parse_mountinfo(&read("mounts.before"));
        let new_mounts = parse_mountinfo(&read("mounts.after"))
            .into_iter()
            .filter(|m| !before.iter().any(|o| o.id == m.id))
            .collect();
        Outcome {
            code: read("rc").trim().parse().expect("no exit code"),
            stdout: read("stdout"),
            stderr: read("stderr"),
            log: read("log"),
            timeline: read("timeline"),
            run_files: read("run.list").lines().map(str::to_string).collect(),
            mounts: new_mounts,
            checks: (0..b.checks.len())
                .map(|i| Check {
                    cmd: b.checks[i].to_string(),
                    out: read(&format!("check{i}")),
                    rc: read(&format!("check{i}.rc")).trim().parse().unwrap_or(-1),
                })
                .collect(),
            sysroot: self.sysroot(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outcome

#[derive(Clone, Debug)]
pub struct Mount {
    pub id: String,
    /// Path inside the filesystem that is mounted (`/` or e.g. `/.state/etc-ssh.bind`).
    pub root: String,
    pub target: String,
    pub opts: String,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

impl Mount {
    pub fn has_opt(&self, o: &str) -> bool {
        self.opts.split(',').any(|x| x == o)
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let a: Vec<&str> = a.split(' ').collect();
            let b: Vec<&str> = b.split(' ').collect();
            Some(Mount {
                id: a.first()?.to_string(),
                root: unescape(a.get(3)?),
                target: unescape(a.get(4)?),
                opts: a.get(5)?.to_string(),
                fstype: b.first()?.to_string(),
                source: unescape(b.get(1)?),
                super_opts: b.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

#[derive(Debug)]
pub struct Check {
    pub cmd: String,
    pub out: String,
    pub rc: i32,
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub log: String,
    pub timeline: String,
    /// Everything under /run after the boot (`find /run -mindepth 1`).
    pub run_files: Vec<String>,
    /// The mounts immucore added (mount ids absent before it ran), in mountinfo order.
    pub mounts: Vec<Mount>,
    pub checks: Vec<Check>,
    pub sysroot: String,
}

impl Outcome {
    /// A dump for assertion messages.
    pub fn dump(&self) -> String {
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "  {} {} [{}] {} {} {}",
                    m.target, m.root, m.opts, m.fstype, m.source, m.super_opts
                )
            })
            .collect();
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|c| format!("  $ {}\n  rc={} {}", c.cmd, c.rc, c.out))
            .collect();
        format!(
            "exit code {}\n--- stderr\n{}--- new mounts\n{}\n--- checks\n{}\n--- timeline\n{}",
            self.code,
            self.stderr,
            mounts.join("\n"),
            checks.join("\n"),
            self.timeline
        )
    }

    /// Absolute host path of `p` inside the sysroot (`/` is the sysroot itself).
    pub fn in_root(&self, p: &str) -> String {
        if p == "/" {
            self.sysroot.clone()
        } else {
            format!("{}{p}", self.sysroot)
        }
    }

    /// The topmost new mount on the absolute path `target`.
    pub fn mount_at(&self, target: &str) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.target == target)
    }

    /// The topmost new mount on `p` inside the sysroot; panics with the dump if none.
    #[track_caller]
    pub fn root_mount(&self, p: &str) -> &Mount {
        let t = self.in_root(p);
        self.mount_at(&t)
            .unwrap_or_else(|| panic!("nothing mounted on {t}\n{}", self.dump()))
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.dump());
    }

    /// The i-th check; panics with its output unless it exited 0.
    #[track_caller]
    pub fn ok(&self, i: usize) -> &str {
        let c = &self.checks[i];
        assert_eq!(
            c.rc,
            0,
            "check failed: {}\n{}\n{}",
            c.cmd,
            c.out,
            self.dump()
        );
        &c.out
    }

    /// The i-th check; panics unless it exited non-zero.
    #[track_caller]
    pub fn fails(&self, i: usize) -> &str {
        let c = &self.checks[i];
        assert_ne!(
            c.rc,
            0,
            "check unexpectedly succeeded: {}\n{}\n{}",
            c.cmd,
            c.out,
            self.dump()
        );
        &c.out
    }

    /// The `error` of `step` in boot-timeline.json, if the step failed or was skipped.
    pub fn step_error(&self, step: &str) -> Option<String> {
        let line = self
            .timeline
            .lines()
            .find(|l| l.contains(&format!("\"name\": \"{step}\"")))?;
        let (_, e) = line.split_once("\"error\": \"")?;
        Some(
            e.trim_end_matches(&['}', ',', ' '][..])
                .trim_end_matches('"')
                .to_string(),
        )
    }

    #[track_caller]
    pub fn expect_stderr(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.dump()
        );
    }
}

/// Backing files of the loop devices attached to an OS image (`.../cOS/*.img`): after a failed
/// boot none may be left behind.
pub fn loop_devices_on_images() -> Vec<String> {
    fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let b = fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            b.contains("/cOS/").then(|| b.trim().to_string())
        })
        .collect()
}
