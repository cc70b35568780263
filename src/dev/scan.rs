//! Finding block devices by `LABEL=`, `UUID=`, `PARTLABEL=`, `PARTUUID=` or path, without
//! udev: `/sys/class/block` is listed, each new device's superblock probed once and remembered,
//! so waiting for several devices costs one scan per poll, not one per label. When udev made
//! `/dev/disk/by-*` links they are used directly.

use super::gpt::{gpt_partitions, GptPart};
use super::probe::{probe_fs, BlockRead, FsInfo, FsType};
use crate::config::cmdline::{words, Device, DeviceKind};
use crate::sys;
use crate::util::fixed::Text;
use rustix::fd::{AsFd, BorrowedFd};

/// Devices we never open: slow or unsafe to probe, or never a Kairos partition.
const SKIP_PREFIXES: &[u8] = b"ram zram fd nbd sr mtd";
pub const MAX_DEVICES: usize = 64;
/// Poll period while waiting for a device to appear.
const POLL_MS: u64 = 50;

pub struct Entry {
    pub name: Text<32>,
    pub size: u64,
    pub fs: Option<FsInfo>,
    pub partlabel: Text<144>,
    pub partuuid: Text<40>,
    /// Partition number whose GPT entry is still to be read (0: a whole disk, or read already).
    partn: u64,
    /// `/dev/<disk>` of a partition, once a GPT lookup needed it (kernel names are under 32
    /// bytes).
    disk: Text<40>,
}

impl Entry {
    fn new(size: u64) -> Entry {
        Entry {
            name: Text::EMPTY,
            size,
            fs: None,
            partlabel: Text::EMPTY,
            partuuid: Text::EMPTY,
            partn: 0,
            disk: Text::EMPTY,
        }
    }

    /// `/dev/<name>`, in the type `wait_for` returns.
    pub fn node(&self) -> Text<192> {
        dev_node(self.name.as_bytes())
    }
}

pub enum Found<'a> {
    None,
    One(&'a Entry),
    /// Two devices carry the same identifier: mounting either could be the wrong disk.
    Duplicate(&'a Entry, &'a Entry),
}

pub struct Table {
    entries: [Option<Entry>; MAX_DEVICES],
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

const NO_ENTRY: Option<Entry> = None;

impl Table {
    pub const fn new() -> Table {
        Table {
            entries: [NO_ENTRY; MAX_DEVICES],
        }
    }

    /// Lists `/sys/class/block`; probes devices not seen before (or whose size changed, such
    /// as a loop device that got a backing file); forgets devices that went away.
    pub fn refresh(&mut self) {
        let Ok(dir) = sys::open_dir(b"/sys/class/block") else {
            return;
        };
        let mut present = [false; MAX_DEVICES];
        let _ = sys::for_each_entry(dir.as_fd(), &mut |name, _| {
            // `rpmb`: the eMMC replay-protected area (`mmcblkNrpmb`), never a filesystem.
            if words(SKIP_PREFIXES).any(|p| name.starts_with(p)) || name.ends_with(b"rpmb") {
                return;
            }
            let size = read_sys_u64(name, b"/size");
            let mut slots = self.entries.iter_mut().zip(present.iter_mut());
            if let Some((slot, seen)) =
                slots.find(|(e, _)| e.as_ref().is_some_and(|e| e.name.as_bytes() == name))
            {
                if slot.as_ref().is_some_and(|e| e.size == size) {
                    *seen = true;
                    return;
                }
                *slot = None;
            }
            // An unattached loop device has size 0; nothing to probe.
            if size == 0 {
                return;
            }
            let mut slots = self.entries.iter_mut().zip(present.iter_mut());
            if let Some((slot, seen)) = slots.find(|(e, _)| e.is_none()) {
                probe_entry(slot.insert(Entry::new(size)), name);
                *seen = true;
            }
        });
        for (slot, &seen) in self.entries.iter_mut().zip(&present) {
            if !seen {
                *slot = None;
            }
        }
    }

    /// Reads the GPT name and id of the partitions that do not have them yet, one read of each
    /// parent disk's table for all its partitions.
    fn load_gpt(&mut self) {
        // The disk of each partition still to fill in, looked up once (a sysfs readlink).
        for e in self.entries.iter_mut().flatten() {
            if e.partn != 0 && e.disk.is_empty() {
                if let Some(disk) = parent_disk(e.name.as_bytes()) {
                    e.disk.push_lossy(disk.as_bytes());
                }
            }
        }
        for i in 0..MAX_DEVICES {
            let Some(Some(e)) = self.entries.get(i) else {
                continue;
            };
            if e.partn == 0 || e.disk.is_empty() {
                continue;
            }
            let disk = e.disk.clone();
            let Ok(fd) = sys::open_ro(disk.as_bytes()) else {
                continue;
            };
            let entries = &mut self.entries;
            gpt_partitions(&mut FdRead(fd.as_fd()), 0, &mut |p: &GptPart| {
                let number = u64::from(p.number);
                for e in entries.iter_mut().flatten() {
                    if e.partn == number && e.disk == disk {
                        e.partlabel.push_lossy(p.name.as_bytes());
                        e.partuuid.push_lossy(p.uuid.as_bytes());
                    }
                }
            });
            // The disk's table is read: none of its partitions asks for it again.
            for e in self.entries.iter_mut().flatten() {
                if e.disk == disk {
                    e.partn = 0;
                }
            }
        }
    }

    pub fn find(&mut self, dev: &Device) -> Found<'_> {
        if matches!(dev.kind, DeviceKind::PartLabel | DeviceKind::PartUuid) {
            self.load_gpt();
        }
        let mut first: Option<&Entry> = None;
        for e in self.entries.iter().flatten() {
            if !matches(e, dev) {
                continue;
            }
            match first {
                None => first = Some(e),
                Some(f) => return Found::Duplicate(f, e),
            }
        }
        first.map_or(Found::None, Found::One)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }
}

fn matches(e: &Entry, dev: &Device) -> bool {
    let want = dev.value.as_bytes();
    let have = match dev.kind {
        DeviceKind::Label => e.fs.as_ref().map(|f| f.label.as_bytes()),
        DeviceKind::Uuid => e.fs.as_ref().map(|f| f.uuid.as_bytes()),
        DeviceKind::PartLabel => Some(e.partlabel.as_bytes()),
        DeviceKind::PartUuid => Some(e.partuuid.as_bytes()),
        DeviceKind::Path => None,
    };
    // Ids are hex, written in either case; labels match exactly.
    let is_id = matches!(dev.kind, DeviceKind::Uuid | DeviceKind::PartUuid);
    // A plain loop: core's `eq_ignore_ascii_case` is several times larger. Two different bytes
    // are the same letter in either case when they differ only in bit 0x20 and are letters.
    have.is_some_and(|h| {
        h.len() == want.len()
            && h.iter().zip(want).all(|(&a, &b)| {
                a == b || (is_id && a ^ b == 0x20 && (a | 0x20).is_ascii_lowercase())
            })
    })
}

/// `/sys/class/block/<name><file>`; `file` is empty or starts with `/`.
fn sys_path(name: &[u8], file: &[u8]) -> Text<128> {
    let mut p = Text::new();
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

/// Fills the new entry `e` for device `name`: its filesystem and partition number.
fn probe_entry(e: &mut Entry, name: &[u8]) {
    e.name.push_lossy(name);
    e.fs = probe_node(e.node().as_bytes());
    // A partition: its number says which GPT entry of the parent disk describes it. The GPT
    // itself is read only if a PARTLABEL=/PARTUUID= lookup needs it (`load_gpt`).
    e.partn = read_sys_u64(name, b"/partition");
}

/// `/dev/<name>` (kernel device names are under 32 bytes: always fits).
fn dev_node(name: &[u8]) -> Text<192> {
    let mut t = Text::new();
    t.push_lossy(b"/dev/");
    t.push_lossy(name);
    t
}

/// `/dev/<disk>` of a partition, from the sysfs link `/sys/class/block/<part>`, which points
/// to `.../block/<disk>/<part>`.
fn parent_disk(part: &[u8]) -> Option<Text<192>> {
    let mut link = Text::<512>::new();
    sys::readlink(sys_path(part, b"").as_bytes(), &mut link).ok()?;
    Some(dev_node(disk_of_link(link.as_bytes())))
}

/// The disk's name in a partition's sysfs link `.../block/<disk>/<part>`.
fn disk_of_link(link: &[u8]) -> &[u8] {
    let (dir, _) = sys::split_parent(link);
    sys::split_parent(dir).1
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
        if dev.kind == DeviceKind::Path {
            if sys::exists(dev.value.as_bytes()) {
                let mut node = Text::new();
                node.push_lossy(dev.value.as_bytes()); // a `Text<128>`: always fits
                return Some((node, None));
            }
        } else {
            table.refresh();
            match table.find(dev) {
                Found::One(e) => return Some((e.node(), e.fs.as_ref().map(|f| f.fs))),
                Found::Duplicate(a, b) => {
                    err.push_lossy(b" is carried by two devices, ");
                    err.push_lossy(a.node().as_bytes());
                    err.push_lossy(b" and ");
                    err.push_lossy(b.node().as_bytes());
                    err.push_lossy(b": refusing to guess which one to mount");
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
            err.push_lossy(b" did not appear within ");
            err.push_lossy(crate::log::num(timeout_ms / 1000).as_bytes());
            err.push_lossy(b" s");
            return None;
        }
        sys::sleep_ms(POLL_MS);
    }
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

    #[test]
    fn a_partition_link_names_its_disk() {
        let cases = [
            ("../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1", "vda"),
            ("../../devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda2", "sda"),
            ("../../devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1/nvme0n1p3", "nvme0n1"),
            ("../../devices/platform/soc/mmc_host/mmc0/mmc0:0001/block/mmcblk0/mmcblk0p1", "mmcblk0"),
            ("../../devices/virtual/block/loop0/loop0p1", "loop0"),
        ];
        for (link, disk) in cases {
            assert_eq!(disk_of_link(link.as_bytes()), disk.as_bytes(), "{link}");
        }
    }

    /// An empty word (a doubled or trailing space) would match every device name.
    #[test]
    fn skipped_prefixes_are_all_non_empty() {
        assert!(words(SKIP_PREFIXES).all(|w| !w.is_empty()));
    }
}
