//! Finding block devices by `LABEL=`, `UUID=`, `PARTLABEL=`, `PARTUUID=` or path, without
//! udev. Every lookup lists `/sys/class/block` afresh and looks at each device as it is listed,
//! keeping only the first two that match: no device is ever left out, however many a machine
//! has, and an identifier carried by two devices is always seen. When udev made
//! `/dev/disk/by-*` links they serve as a fallback.
//!
//! Probing a device opens and reads it (about 24 KiB with readahead, from the disk again each
//! time, as the kernel drops the cache of a device nobody holds open). With the feature
//! `kept-probes`, as PID 1, where nothing but immucore and the programs it runs changes the
//! disks, what the probes of the first 16 devices found is kept, so the three partition lookups
//! of a boot (state, OEM, persistent) probe each disk once: a kept probe serves while the
//! device has the same name and size and no program (hook, fsck, lvm) has run since. Loop and
//! device-mapper devices, which immucore itself attaches and detaches, are probed every time.
//! `wait_for` polls less often when a scan is slow.

#[cfg(feature = "gpt")]
use super::gpt::{gpt_partitions, GptPart};
use super::probe::{probe_fs, BlockRead, FsInfo, FsType, NOT_PROBED};
use crate::config::cmdline::{Device, DeviceKind};
use crate::log;
use crate::sys;
use crate::util::fixed::Text;
use crate::util::words::words;
use rustix::fd::{AsFd, BorrowedFd};

/// Devices we never open: slow or unsafe to probe, or never a Kairos partition.
const SKIP_PREFIXES: &[u8] = b"ram zram fd nbd sr mtd";
/// Room for a kernel block device name: disks have under 32 bytes (`DISK_NAME_LEN`), partitions
/// add `p` and a number. A longer name makes the lookup refuse rather than skip the device.
const NAME_MAX: usize = 64;
/// What a partition's name adds to its disk's: `p` and a number up to 256 (the GPT entries
/// `gpt_partitions` reports).
const PARTITION_SUFFIX_MAX: usize = 4;
/// Poll period while waiting for a device to appear.
const POLL_MS: u64 = 50;
/// Devices whose probe later lookups reuse (more are probed each time).
#[cfg(feature = "kept-probes")]
pub const KEPT_PROBES: usize = 16;

/// A device that matched a lookup.
pub struct Match {
    name: Text<NAME_MAX>,
    /// The filesystem its superblock names, when the lookup probed it (LABEL=, UUID=).
    fs: Option<FsType>,
}

impl Match {
    /// `/dev/<name>`, in the type `wait_for` returns.
    pub fn node(&self) -> Text<192> {
        dev_node(self.name.as_bytes())
    }
}

pub enum Found<'a> {
    None,
    One(&'a Match),
    /// Two devices carry the same identifier: mounting either could be the wrong disk.
    Duplicate(&'a Match, &'a Match),
    /// Not every device could be looked at, or this build cannot look: no decision. The text
    /// follows the device spec in the message (`LABEL=X` + text).
    Refused(&'static [u8]),
}

/// What the latest lookup matched: the first two devices, all a decision needs (one is the
/// answer, a second one a refusal), and the probes later lookups may reuse.
pub struct Table {
    first: Option<Match>,
    second: Option<Match>,
    #[cfg(feature = "kept-probes")]
    kept: KeptProbes,
}

/// The probes of earlier lookups (feature `kept-probes`).
#[cfg(feature = "kept-probes")]
struct KeptProbes {
    /// Whether probes are kept (PID 1 only: see the module's text).
    on: bool,
    /// `sys::programs_run()` when `probed` was filled.
    programs_run: u32,
    probed: [Option<Probed>; KEPT_PROBES],
}

/// What probing one device found.
#[cfg(feature = "kept-probes")]
struct Probed {
    name: Text<NAME_MAX>,
    /// Its size in bytes then: a device that changed is probed again.
    size: u64,
    /// Its filesystem, label and UUID; `None` when no probe of this build recognised it.
    info: Option<FsInfo>,
}

/// Whether lookups also look at CD-ROM drives (`sr*`, skipped otherwise): from the time a
/// live medium is looked for, which may be one (feature `live`). Not a field of `Table`, whose
/// size is held small.
#[cfg(feature = "live")]
static CDROMS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Makes every later lookup look at CD-ROM drives too (see `CDROMS`).
#[cfg(feature = "live")]
pub fn include_cdroms() {
    CDROMS.store(true, core::sync::atomic::Ordering::Relaxed);
}

struct FdRead<'a>(BorrowedFd<'a>);

impl BlockRead for FdRead<'_> {
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> bool {
        sys::pread_exact(self.0, off, buf)
    }
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    /// A table that probes every device on every lookup.
    pub const fn new() -> Table {
        Table {
            first: None,
            second: None,
            #[cfg(feature = "kept-probes")]
            kept: KeptProbes {
                on: false,
                programs_run: 0,
                probed: [const { None }; KEPT_PROBES],
            },
        }
    }

    /// A table whose lookups reuse the probes of earlier ones (PID 1, where only immucore and
    /// the programs it runs change the disks); without the feature, one that keeps none.
    pub const fn reusing_probes() -> Table {
        #[allow(unused_mut)]
        let mut t = Table::new();
        #[cfg(feature = "kept-probes")]
        {
            t.kept.on = true;
        }
        t
    }

    /// Lists `/sys/class/block` and looks at every device for `dev` (a `LABEL=`, `UUID=`,
    /// `PARTLABEL=` or `PARTUUID=`; a path matches nothing here).
    pub fn find(&mut self, dev: &Device) -> Found<'_> {
        self.first = None;
        self.second = None;
        #[cfg(feature = "kept-probes")]
        self.kept.forget_if_programs_ran();
        if dev.kind == DeviceKind::Path {
            return Found::None;
        }
        #[cfg(not(feature = "gpt"))]
        if matches!(dev.kind, DeviceKind::PartLabel | DeviceKind::PartUuid) {
            return Found::Refused(b" needs the gpt feature, not in this build");
        }
        let Ok(dir) = sys::open_dir(sys_path(b"", b"").as_bytes()) else {
            return Found::Refused(b": cannot list /sys/class/block (is sysfs mounted?)");
        };
        let mut name_too_long = false;
        let listed = sys::for_each_entry(dir.as_fd(), &mut |name, _| {
            // Two matches decide (a refusal): the rest need not be looked at.
            if self.second.is_some() || skips(name) {
                return;
            }
            if name.len() > NAME_MAX - PARTITION_SUFFIX_MAX {
                name_too_long = true;
                return;
            }
            self.look_at(name, dev);
        });
        if name_too_long {
            return Found::Refused(
                b": a block device name is too long to look at: refusing to pick a device \
                  without seeing them all",
            );
        }
        if listed.is_err() {
            return Found::Refused(
                b": listing /sys/class/block failed: refusing to pick a device without seeing \
                  them all",
            );
        }
        match (&self.first, &self.second) {
            (Some(a), Some(b)) => Found::Duplicate(a, b),
            (Some(a), None) => Found::One(a),
            _ => Found::None,
        }
    }

    /// Probes the device `name` for `dev` and records it (or, for a GPT name or id, its
    /// partitions) when it matches.
    fn look_at(&mut self, name: &[u8], dev: &Device) {
        let size = read_sys_u64(name, b"/size").saturating_mul(512);
        // An unattached loop device has size 0; nothing to probe.
        if size == 0 {
            return;
        }
        let want = dev.value.as_bytes();
        match dev.kind {
            DeviceKind::Label | DeviceKind::Uuid => {
                let Some(info) = self.probe(name, size) else {
                    return;
                };
                let have = match dev.kind {
                    DeviceKind::Label => info.label.as_bytes(),
                    _ => info.uuid.as_bytes(),
                };
                if same_id(have, want, dev.kind == DeviceKind::Uuid) {
                    self.record(name, Some(info.fs));
                }
            }
            #[cfg(feature = "gpt")]
            DeviceKind::PartLabel | DeviceKind::PartUuid => {
                // Partitions are found through their disk's table (the GPT describes them all).
                if sys::exists(sys_path(name, b"/partition").as_bytes()) {
                    return;
                }
                let Ok(fd) = sys::open_ro(dev_node(name).as_bytes()) else {
                    return;
                };
                gpt_partitions(&mut FdRead(fd.as_fd()), size, 0, &mut |p: &GptPart| {
                    let (have, is_id) = match dev.kind {
                        DeviceKind::PartLabel => (p.name.as_bytes(), false),
                        _ => (p.uuid.as_bytes(), true),
                    };
                    if !same_id(have, want, is_id) {
                        return;
                    }
                    // Only a partition the kernel made counts (one it did not is no device).
                    let part = partition_name(name, p.number);
                    if sys::exists(sys_path(part.as_bytes(), b"").as_bytes()) {
                        self.record(part.as_bytes(), None);
                    }
                });
            }
            _ => {}
        }
    }

    /// The filesystem on the device `name` of `size` bytes: what a probe of this boot found,
    /// or a probe now (kept for the next lookups when there is room).
    fn probe(&mut self, name: &[u8], size: u64) -> Option<FsInfo> {
        #[cfg(not(feature = "kept-probes"))]
        let _ = size;
        #[cfg(feature = "kept-probes")]
        if let Some(info) = self.kept.get(name, size) {
            return info;
        }
        // A device that cannot be opened now may open later: nothing is kept for it.
        let fd = sys::open_ro(dev_node(name).as_bytes()).ok()?;
        let info = probe_fs(&mut FdRead(fd.as_fd()));
        #[cfg(feature = "kept-probes")]
        self.kept.put(name, size, &info);
        info
    }

    /// Keeps the first two matches (`find` has checked that `name` fits).
    fn record(&mut self, name: &[u8], fs: Option<FsType>) {
        #[cfg(feature = "iso9660")]
        if self
            .first
            .as_ref()
            .is_some_and(|m| same_hybrid_iso(m, name, fs))
        {
            return;
        }
        let mut m = Match {
            name: Text::EMPTY,
            fs,
        };
        m.name.push_lossy(name);
        let m = Some(m);
        if self.first.is_none() {
            self.first = m;
        } else if self.second.is_none() {
            self.second = m;
        }
    }
}

#[cfg(feature = "kept-probes")]
impl KeptProbes {
    /// Forgets every probe when a program ran since they were made: it may have changed any
    /// disk.
    fn forget_if_programs_ran(&mut self) {
        if self.programs_run != sys::programs_run() {
            self.programs_run = sys::programs_run();
            self.probed = [const { None }; KEPT_PROBES];
        }
    }

    /// Whether `name` may be kept: not loop and device-mapper devices, which immucore attaches
    /// and detaches itself (images, dm-verity).
    fn keeps(&self, name: &[u8]) -> bool {
        self.on && !name.starts_with(b"loop") && !name.starts_with(b"dm-")
    }

    fn slot_of(&self, name: &[u8]) -> Option<usize> {
        let same = |p: &Option<Probed>| p.as_ref().is_some_and(|p| p.name.as_bytes() == name);
        self.probed.iter().position(same)
    }

    /// What the kept probe of `name` found, if it was made at this `size`.
    fn get(&self, name: &[u8], size: u64) -> Option<Option<FsInfo>> {
        let kept = self
            .slot_of(name)
            .and_then(|i| self.probed.get(i)?.as_ref())?;
        (self.keeps(name) && kept.size == size).then(|| kept.info.clone())
    }

    /// Keeps what probing `name` at `size` found, in its slot or a free one (none left: not
    /// kept).
    fn put(&mut self, name: &[u8], size: u64, info: &Option<FsInfo>) {
        if !self.keeps(name) {
            return;
        }
        let at = self.slot_of(name);
        let at = at.or_else(|| self.probed.iter().position(Option::is_none));
        if let Some(slot) = at.and_then(|i| self.probed.get_mut(i)) {
            let mut kept = Probed {
                name: Text::EMPTY,
                size,
                info: info.clone(),
            };
            kept.name.push_lossy(name); // fits: `find` checked the name's length
            *slot = Some(kept);
        }
    }
}

/// Whether lookups skip the device `name`: `is_skipped`, less CD-ROM drives once asked.
fn skips(name: &[u8]) -> bool {
    #[cfg(feature = "live")]
    if name.starts_with(b"sr") && CDROMS.load(core::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    is_skipped(name)
}

/// Whether `name` (filesystem `fs`) is the first partition of `m`'s disk, or its disk, both
/// iso9660: a hybrid ISO (xorriso's `partition_offset`, as Kairos' ISOs are made) carries its
/// filesystem on the disk and again in its first partition. One medium, not two devices with
/// the same label: the first seen is kept.
#[cfg(feature = "iso9660")]
fn same_hybrid_iso(m: &Match, name: &[u8], fs: Option<FsType>) -> bool {
    let (a, b) = (m.name.as_bytes(), name);
    let (disk, part) = if a.len() < b.len() { (a, b) } else { (b, a) };
    let suffix = part.get(disk.len()..).unwrap_or(&[]);
    let number = suffix.strip_prefix(b"p".as_slice()).unwrap_or(suffix);
    fs == Some(FsType::Iso9660) && m.fs == fs && part.starts_with(disk) && number == b"1"
}

/// Whether the device `name` is one we never open (`SKIP_PREFIXES`; `rpmb`: the eMMC
/// replay-protected area `mmcblkNrpmb`, never a filesystem).
fn is_skipped(name: &[u8]) -> bool {
    words(SKIP_PREFIXES).any(|p| name.starts_with(p)) || name.ends_with(b"rpmb")
}

/// Whether `have` is the identifier `want`: ids (hex) in either case, labels exactly.
fn same_id(have: &[u8], want: &[u8], is_id: bool) -> bool {
    // A plain loop: core's `eq_ignore_ascii_case` is several times larger. Two different bytes
    // are the same letter in either case when they differ only in bit 0x20 and are letters.
    have.len() == want.len()
        && have
            .iter()
            .zip(want)
            .all(|(&a, &b)| a == b || (is_id && a ^ b == 0x20 && (a | 0x20).is_ascii_lowercase()))
}

/// The kernel's name of partition `number` of `disk`: `sda` → `sda1`, `nvme0n1` → `nvme0n1p1`
/// (a `p` when the disk's name ends in a digit). Fits: `find` refuses disk names without room
/// for `PARTITION_SUFFIX_MAX`.
#[cfg(feature = "gpt")]
fn partition_name(disk: &[u8], number: u32) -> Text<NAME_MAX> {
    let mut t = Text::new();
    t.push_lossy(disk);
    if disk.last().is_some_and(u8::is_ascii_digit) {
        t.push_lossy(b"p");
    }
    let _ = t.push_num(u64::from(number));
    t
}

// Test seam: a directory that stands for `/` where devices are listed and opened (a fake
// `sys/class/block` and `dev`). Nothing in a release build.
#[cfg(test)]
std::thread_local!(static FAKE_ROOT: core::cell::RefCell<std::string::String> =
    const { core::cell::RefCell::new(std::string::String::new()) });

/// `/sys/class/block/<name><file>`; `file` is empty or starts with `/`.
fn sys_path(name: &[u8], file: &[u8]) -> Text<128> {
    let mut p = Text::new();
    #[cfg(test)]
    FAKE_ROOT.with(|r| p.push_lossy(r.borrow().as_bytes()));
    p.push_lossy(b"/sys/class/block/");
    p.push_lossy(name);
    p.push_lossy(file);
    p
}

fn read_sys_u64(name: &[u8], file: &[u8]) -> u64 {
    let mut buf = [0u8; 32];
    let n = sys::read_file(sys_path(name, file).as_bytes(), &mut buf).unwrap_or(0);
    // The leading digits (sysfs ends the number with a newline); saturates rather than wraps.
    buf.iter()
        .take(n)
        .take_while(|c| c.is_ascii_digit())
        .fold(0, |v: u64, &c| {
            v.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        })
}

/// `/dev/<name>` (`NAME_MAX` is far below the room: always fits).
fn dev_node(name: &[u8]) -> Text<192> {
    let mut t = Text::new();
    #[cfg(test)]
    FAKE_ROOT.with(|r| t.push_lossy(r.borrow().as_bytes()));
    t.push_lossy(b"/dev/");
    t.push_lossy(name);
    t
}

/// Waits until `dev` exists, up to `timeout_ms`, and returns the device node to mount and, when
/// the scan probed it already, its filesystem type. Two devices with the same identifier fail
/// at once, naming both. `err` (empty on entry) says why on `None`; on success it holds only
/// the device's description.
pub fn wait_for(
    table: &mut Table,
    dev: &Device,
    timeout_ms: u64,
    err: &mut Text<256>,
) -> Option<(Text<192>, Option<FsType>)> {
    let deadline = sys::now_ms().saturating_add(timeout_ms);
    // Every failure message starts with the device.
    describe(dev, err);
    loop {
        let scan_start = sys::now_ms();
        if dev.kind == DeviceKind::Path {
            if sys::exists(dev.value.as_bytes()) {
                let mut node = Text::new();
                node.push_lossy(dev.value.as_bytes()); // a `Text<128>`: always fits
                return Some((node, None));
            }
        } else {
            match table.find(dev) {
                Found::One(m) => return Some((m.node(), m.fs)),
                Found::Duplicate(a, b) => {
                    err.push_lossy(b" is carried by two devices, ");
                    err.push_lossy(a.node().as_bytes());
                    err.push_lossy(b" and ");
                    err.push_lossy(b.node().as_bytes());
                    err.push_lossy(b": refusing to guess which one to mount");
                    return None;
                }
                Found::Refused(why) => {
                    err.push_lossy(why);
                    return None;
                }
                Found::None => {
                    // The udev link (`/dev/disk/by-label/X`...), if udev made it.
                    let mut link = Text::new();
                    dev.by_path(&mut link);
                    if sys::exists(link.as_bytes()) {
                        return Some((link, None));
                    }
                }
            }
        }
        if sys::stop_requested() {
            err.push_lossy(b": stopped waiting, a stop signal (SIGTERM) arrived");
            return None;
        }
        if sys::now_ms() >= deadline {
            if matches!(dev.kind, DeviceKind::Label | DeviceKind::Uuid) {
                log_missing_probes();
            }
            err.push_lossy(b" did not appear within ");
            err.push_lossy(log::num(timeout_ms / 1000).as_bytes());
            err.push_lossy(b" s");
            return None;
        }
        // Waiting is not hanging: the watchdog (rd.immucore.watchdog=) must not reset the board.
        #[cfg(feature = "watchdog")]
        crate::watchdog::keepalive();
        // A scan reads every device again (the kernel drops an unopened device's cache on its
        // last close): where a scan is slow, it takes at most half of the waiting time.
        sys::sleep_ms(POLL_MS.max(sys::now_ms().saturating_sub(scan_start)));
    }
}

/// Says, in a debug line, which filesystems this build cannot identify: a label or UUID on one
/// of them is never found.
fn log_missing_probes() {
    if NOT_PROBED.is_empty() {
        return;
    }
    let mut names = Text::<64>::new();
    for name in NOT_PROBED {
        names.push_lossy(b" ");
        names.push_lossy(name.as_bytes());
    }
    log::debug(
        b"this build has no probe for{}: labels and UUIDs on those are not seen",
        &[names.as_bytes()],
    );
}

/// `LABEL=X` style text of a device spec, for messages.
pub fn describe(dev: &Device, out: &mut Text<256>) {
    if dev.kind != DeviceKind::Path {
        out.push_lossy(dev.kind.tag().as_bytes());
        out.push_lossy(b"=");
    }
    out.push_lossy(dev.value.as_bytes());
}

/// `probe::ext_size` of an open file or device.
pub fn ext_size_of(fd: BorrowedFd<'_>) -> Option<u64> {
    super::probe::ext_size(&mut FdRead(fd))
}

/// Probes one device node (the loop device over the root image, a `/dev/...` path).
pub fn probe_node(node: &[u8]) -> Option<FsInfo> {
    let fd = sys::open_ro(node).ok()?;
    probe_fs(&mut FdRead(fd.as_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "gpt")]
    #[test]
    fn partitions_are_named_as_the_kernel_does() {
        let cases = [
            ("vda", 1, "vda1"),
            ("sda", 12, "sda12"),
            ("nvme0n1", 3, "nvme0n1p3"),
            ("mmcblk0", 1, "mmcblk0p1"),
            ("loop0", 100, "loop0p100"),
        ];
        for (disk, n, part) in cases {
            assert_eq!(partition_name(disk.as_bytes(), n).as_str(), part);
        }
    }

    /// Without the gpt feature a GPT name fails at once, naming the feature: never a wait that
    /// ends in "did not appear".
    #[cfg(not(feature = "gpt"))]
    #[test]
    fn gpt_names_need_the_gpt_feature() {
        for spec in [
            "PARTLABEL=data",
            "PARTUUID=0b4cbb7c-a3c7-456a-a892-7e5f4f5c3478",
        ] {
            let dev = Device::parse(spec.as_bytes()).unwrap();
            let mut why = Text::new();
            let start = sys::now_ms();
            assert!(wait_for(&mut Table::new(), &dev, 60_000, &mut why).is_none());
            assert!(sys::now_ms() - start < 1000, "{spec}: waited");
            let want = std::format!("{spec} needs the gpt feature, not in this build");
            assert_eq!(why.as_str(), want);
        }
    }

    #[cfg(feature = "iso9660")]
    #[test]
    fn a_hybrid_iso_and_its_first_partition_are_one_medium() {
        let iso = |name: &str| {
            let mut m = Match {
                name: Text::EMPTY,
                fs: Some(FsType::Iso9660),
            };
            m.name.push_lossy(name.as_bytes());
            m
        };
        let iso9660 = Some(FsType::Iso9660);
        assert!(same_hybrid_iso(&iso("sda"), b"sda1", iso9660));
        assert!(same_hybrid_iso(&iso("sda1"), b"sda", iso9660));
        assert!(same_hybrid_iso(&iso("nvme0n1"), b"nvme0n1p1", iso9660));
        // Another disk, another partition, another filesystem: two devices.
        assert!(!same_hybrid_iso(&iso("sda"), b"sdb1", iso9660));
        assert!(!same_hybrid_iso(&iso("sda"), b"sda2", iso9660));
        assert!(!same_hybrid_iso(&iso("sda"), b"sdab", iso9660));
        assert!(!same_hybrid_iso(&iso("sda"), b"sda1", Some(FsType::Ext4)));
    }

    #[test]
    fn ids_match_in_either_case_labels_exactly() {
        assert!(same_id(b"c0ffee-AB", b"C0FFEE-ab", true));
        assert!(!same_id(b"c0ffee-AB", b"C0FFEE-ab", false));
        assert!(same_id(b"COS_STATE", b"COS_STATE", false));
        assert!(!same_id(b"COS_STATE", b"COS_STAT", false));
        // `@` and `` ` `` differ in bit 0x20 too, but are no letters.
        assert!(!same_id(b"@", b"`", true));
    }

    /// A kept probe serves the next lookups (the device is not read again) until the device
    /// changes size or a program runs; a table that keeps none sees a change at once. Devices
    /// faked below a directory (`FAKE_ROOT`): an ext4 image made by mkfs.ext4, relabelled by
    /// e2label.
    #[cfg(feature = "kept-probes")]
    #[test]
    fn kept_probes_serve_until_a_device_or_a_program_changes() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(std::format!("immucore-scan-{}", std::process::id()));
        let block = dir.join("sys/class/block/fakedisk1");
        std::fs::create_dir_all(&block).unwrap();
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        let disk = dir.join("dev/fakedisk1");
        let sh = |cmd: &str| {
            let ok = Command::new("sh")
                .args(["-c", cmd])
                .status()
                .unwrap()
                .success();
            assert!(ok, "{cmd}");
        };
        let disk_s = disk.to_str().unwrap();
        sh(&std::format!("mkfs.ext4 -q -F -L OLD {disk_s} 1M"));
        std::fs::write(block.join("size"), "2048\n").unwrap();
        FAKE_ROOT.with(|r| *r.borrow_mut() = dir.to_str().unwrap().into());
        let label = |l: &str| Device::parse(std::format!("LABEL={l}").as_bytes()).unwrap();
        let one = |t: &mut Table, l: &str| matches!(t.find(&label(l)), Found::One(_));

        let mut kept = Table::reusing_probes();
        assert!(one(&mut kept, "OLD"));
        sh(&std::format!("e2label {disk_s} NEW"));
        assert!(!one(&mut kept, "NEW"), "the kept probe was not used");
        assert!(
            one(&mut Table::new(), "NEW"),
            "a table that keeps none reads the disk"
        );
        // A program ran (a hook may have relabelled a disk): every device is probed again.
        assert_eq!(sys::run(&[c"/bin/true"], &[], None, 5_000), Ok(0));
        assert!(one(&mut kept, "NEW"));
        // Grown (as a layout stage grows a partition): probed again.
        sh(&std::format!("e2label {disk_s} GROWN"));
        assert!(!one(&mut kept, "GROWN"));
        std::fs::write(block.join("size"), "2049\n").unwrap();
        assert!(one(&mut kept, "GROWN"));
        FAKE_ROOT.with(|r| r.borrow_mut().clear());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The matches and the kept probes: bounded, whatever the machine has.
    #[test]
    fn the_device_table_is_bounded() {
        let size = core::mem::size_of::<Table>();
        assert!(size <= 4096, "{size}");
    }

    /// An empty word (a doubled or trailing space) would match every device name.
    #[test]
    fn skipped_prefixes_are_all_non_empty() {
        assert!(words(SKIP_PREFIXES).all(|w| !w.is_empty()));
    }
}
