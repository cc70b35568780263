//! `rd.immucore.bootassessment`: Kairos' boot assessment done by the initramfs, for boards
//! whose kernel and initramfs live outside the images (no GRUB to do it). The state is the one
//! Kairos' GRUB script keeps: the GRUB environment block `/boot_assessment` on `COS_STATE`.
//! When `enable_boot_assessment=yes` (set by Kairos after an upgrade) or
//! `enable_boot_assessment_always=yes`, an active boot:
//! - with `boot_assessment_tentative=yes` already set (the last try never reached a good
//!   system) boots the passive image instead and writes `/run/cos/upgrade_failure`, as GRUB's
//!   fallback entry does;
//! - else sets `boot_assessment_tentative=yes` and boots active: the booted system clears it
//!   once it is good (Kairos' agent, or `immucore boot-ok`).
//!
//! One addition to GRUB's script: the passive boot also sets `immucore_active_failed=yes`.
//! Kairos' agent clears both variables on every boot whose command line names `active.img`,
//! which GRUB's passive entry does not but ours still does (the board has one entry); without
//! this note the next boot would try the broken image again, now unassessed. The note goes
//! when an upgrade arms the assessment again (`enable_boot_assessment=yes` with no try
//! pending) or with `boot-ok`.
//!
//! The block is rewritten in place at its size (GRUB writes it through its block list), from
//! one `pwrite` of its 1024 bytes at offset 0 and an `fsync`; `COS_STATE` is read-write only
//! for that write and read-only again before the root is assembled.

use super::root::{self, STATE_DIR};
use super::{err, err_errno, Ctx, Error};
use crate::config::cmdline::BootState;
use crate::config::grubenv::{self, Block, Unwritable};
use crate::log;
use crate::sys::{self, inroot::Root};
use crate::util::fixed::Text;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::OFlags;
use rustix::mount::MountFlags;

/// The block, at the top of `COS_STATE`.
pub const BLOCK: &[u8] = b"/boot_assessment";
const ENABLE: &[u8] = b"enable_boot_assessment";
const ALWAYS: &[u8] = b"enable_boot_assessment_always";
const TENTATIVE: &[u8] = b"boot_assessment_tentative";
/// Our note that the active image failed its assessed boot (see the module comment).
const ACTIVE_FAILED: &[u8] = b"immucore_active_failed";
/// What Kairos writes on a boot after a failed upgrade (content `1`, mode 0600).
pub const UPGRADE_FAILURE: &[u8] = b"/run/cos/upgrade_failure";
/// The image GRUB's fallback entry boots.
pub const PASSIVE_IMAGE: &[u8] = b"/cOS/passive.img";

/// What the block says about an active boot.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Verdict {
    /// Not assessed: boot active, write nothing.
    Unassessed,
    /// A try: set the tentative flag (and drop our failure note), boot active.
    Try,
    /// The last try failed: boot passive, noting the failure in the block.
    FirstFallback,
    /// The active image failed before and nothing re-armed it: boot passive.
    Fallback,
}

/// Kairos' GRUB script on the block's state, plus the failure note.
pub fn verdict(block: &Block) -> Verdict {
    let tentative = block.is_yes(TENTATIVE);
    if block.is_yes(ACTIVE_FAILED) {
        // An upgrade re-arms with `enable_boot_assessment=yes` and an empty tentative flag;
        // Kairos' agent on the passive boot clears `enable_boot_assessment` instead.
        if !tentative && block.is_yes(ENABLE) {
            return Verdict::Try;
        }
        return Verdict::Fallback;
    }
    if !(block.is_yes(ENABLE) || block.is_yes(ALWAYS)) {
        Verdict::Unassessed
    } else if tentative {
        Verdict::FirstFallback
    } else {
        Verdict::Try
    }
}

/// The block as it should be after `verdict` (`None`: left as it is).
fn rewritten(block: &Block, verdict: Verdict) -> Option<Result<Block, Unwritable>> {
    let mut new = block.clone();
    let changed = match verdict {
        Verdict::Unassessed | Verdict::Fallback => return None,
        Verdict::Try => {
            new.unset(ACTIVE_FAILED);
            new.set(TENTATIVE, b"yes")
        }
        Verdict::FirstFallback => new.set(ACTIVE_FAILED, b"yes"),
    };
    Some(changed.map(|()| new))
}

/// `boot-ok`'s change: no try pending, no failure noted.
fn blessed(block: &Block) -> Result<Block, Unwritable> {
    let mut new = block.clone();
    new.unset(ACTIVE_FAILED);
    new.set(TENTATIVE, b"")?;
    Ok(new)
}

/// Why a block cannot be changed, for messages.
fn unwritable_reason(why: Unwritable) -> &'static [u8] {
    match why {
        Unwritable::NoRoom => b"the variables would not fit in its 1024 bytes",
        Unwritable::BadText => b"a value it cannot hold",
    }
}

/// The block file on the images partition mounted at `dir`, read: `Ok(None)` when there is
/// none; the error says why it cannot be used (unreadable, damaged) and is never rewritten.
fn read_block(dir: &[u8]) -> Result<Option<Block>, Error> {
    let state = Root::open(dir).map_err(|e| err_errno(b"cannot open {}", &[dir], e))?;
    // Non-blocking: a FIFO in its place must not hang the boot (it is refused below).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let file = match state.open_at(BLOCK, flags, 0) {
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        other => other.map_err(|e| err_errno(b"cannot open {}{}", &[dir, BLOCK], e))?,
    };
    check_regular(&file, dir)?;
    // One byte more than a block: a longer file is damaged, not cut to size.
    let mut data = [0u8; grubenv::SIZE + 1];
    let len = match sys::read_fd(file.as_fd(), &mut data) {
        Err(rustix::io::Errno::FBIG) => data.len(),
        other => other.map_err(|e| err_errno(b"cannot read {}{}", &[dir, BLOCK], e))?,
    };
    match Block::parse(data.get(..len).unwrap_or(&[])) {
        Ok(block) => Ok(Some(block)),
        Err(damage) => {
            let mut why = Text::<128>::new();
            damage.describe(&mut why);
            Err(err(
                b"{}{} is not a GRUB environment block ({}): left as it is",
                &[dir, BLOCK, why.as_bytes()],
            ))
        }
    }
}

/// The size of the block file `file` (on the partition at `dir`) if it is a regular file: a
/// device node, FIFO or directory in its place is refused, never read or written.
fn check_regular(file: &OwnedFd, dir: &[u8]) -> Result<u64, Error> {
    let st =
        rustix::fs::fstat(file).map_err(|e| err_errno(b"cannot stat {}{}", &[dir, BLOCK], e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(err(
            b"{}{} is not a regular file: left as it is",
            &[dir, BLOCK],
        ));
    }
    Ok(u64::try_from(st.st_size).unwrap_or(0))
}

/// Writes `block` over the block file on the partition mounted (read-write) at `dir`: in
/// place, the same 1024 bytes at offset 0, then flushed. Never a new file, a rename or a
/// truncation: GRUB writes the block where it is, and a power cut leaves the old or the new.
fn write_block(dir: &[u8], block: &Block) -> Result<(), Error> {
    let what = [dir, BLOCK];
    let state = Root::open(dir).map_err(|e| err_errno(b"cannot open {}", &[dir], e))?;
    let file: OwnedFd = state
        .open_at(
            BLOCK,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            0,
        )
        .map_err(|e| err_errno(b"cannot open {}{} for writing", &what, e))?;
    let size = check_regular(&file, dir)?;
    if size != grubenv::SIZE as u64 {
        return Err(err(b"{}{} changed size under us: not rewritten", &what));
    }
    pwrite_all(file.as_fd(), block.as_bytes())
        .and_then(|()| rustix::fs::fsync(&file))
        .map_err(|e| err_errno(b"cannot write {}{}", &what, e))
}

/// All of `data` at offset 0 of `fd` (a short write goes on where it stopped).
fn pwrite_all(fd: BorrowedFd<'_>, data: &[u8]) -> Result<(), sys::Errno> {
    let mut done = 0;
    while let Some(rest) = data.get(done..).filter(|r| !r.is_empty()) {
        match rustix::io::pwrite(fd, rest, done as u64) {
            Ok(0) => return Err(sys::Errno::IO),
            Ok(n) => done += n,
            Err(sys::Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `mount -o remount` of `dir`, read-only or read-write, keeping `keep` (the per-mount flags it
/// had: a remount sets them all).
fn remount(dir: &[u8], read_only: bool, keep: MountFlags) -> Result<(), sys::Errno> {
    let flags = if read_only {
        keep | MountFlags::RDONLY
    } else {
        keep - MountFlags::RDONLY
    };
    rustix::mount::mount_remount(dir, flags, c"")
}

/// Rewrites the block on the partition mounted at `path` (read-only unless `rw`) as `block`: a
/// remount read-write for the write only, then read-only again. A partition that does not go
/// back to read-only is unmounted (mount-state then mounts it afresh).
fn rewrite_mounted(path: &[u8], rw: bool, keep: MountFlags, block: &Block) -> Result<(), Error> {
    if !rw {
        remount(path, false, keep)
            .map_err(|e| err_errno(b"cannot remount {} read-write", &[path], e))?;
    }
    let written = write_block(path, block);
    if !rw {
        if let Err(e) = remount(path, true, keep) {
            log::error(
                b"cannot remount {} read-only again ({}): unmounting it",
                &[path, log::errno(e).as_bytes()],
            );
            let _ = sys::unmount_detach(path);
        }
    }
    written
}

/// The `boot-assessment` step (normal plan, with `rd.immucore.bootassessment`): decides
/// between the active and the passive image from the block, before the sentinel and the root
/// chain, and rewrites the block when the decision changes it. Any trouble with the block
/// boots as the command line asks, with a message.
pub fn assess(ctx: &mut Ctx) -> Result<(), Error> {
    if ctx.cmd.state != BootState::Active {
        log::info(
            b"a {} boot was asked for; only active boots are assessed",
            &[ctx.state.name().as_bytes()],
        );
        return Ok(());
    }
    // mount-state's own mount (read-only); mount-state then finds it there.
    root::mount_state(ctx)?;
    let Some(block) = read_block(STATE_DIR)? else {
        log::info(b"no {} on COS_STATE: booting active, unassessed", &[BLOCK]);
        return Ok(());
    };
    let verdict = verdict(&block);
    let mut outcome = Ok(());
    if let Some(new) = rewritten(&block, verdict) {
        outcome = match new {
            Ok(new) => {
                log::info(b"rewriting {} on COS_STATE", &[BLOCK]);
                rewrite_mounted(STATE_DIR, ctx.cmd.debugrw, MountFlags::empty(), &new)
            }
            Err(why) => Err(err(
                b"{} on COS_STATE not rewritten: {}",
                &[BLOCK, unwritable_reason(why)],
            )),
        };
    }
    match verdict {
        Verdict::Unassessed => log::info(
            b"not enabled in {} (enable_boot_assessment): booting active",
            &[BLOCK],
        ),
        Verdict::Try if outcome.is_ok() => log::info(
            b"trying the active image (boot_assessment_tentative=yes until the system clears it)",
            &[],
        ),
        // Without the flag on disk, a failure of this boot could not be told next time.
        Verdict::Try => log::warn(b"booting active without a try on record", &[]),
        Verdict::FirstFallback | Verdict::Fallback => fall_back(ctx),
    }
    outcome
}

/// Boots the passive image instead of the active one, as GRUB's fallback entry does, and says
/// so: on the console and in `/run/cos/upgrade_failure`.
fn fall_back(ctx: &mut Ctx) {
    log::warn(
        b"the active image failed its assessed boot (boot_assessment_tentative never cleared): booting the passive image {} instead",
        &[PASSIVE_IMAGE],
    );
    ctx.state = BootState::Passive;
    let written = sys::mkdir_p(root::SENTINEL_DIR, 0o755)
        .and_then(|()| sys::write_path_atomic(UPGRADE_FAILURE, b"1", 0o600));
    if let Err(e) = written {
        log::error(
            b"cannot write {}: {}",
            &[UPGRADE_FAILURE, log::errno(e).as_bytes()],
        );
    }
}

/// Where `boot-ok` mounts `COS_STATE` when the booted system has it nowhere.
const PRIVATE_DIR: &[u8] = b"/run/immucore/boot-ok";

/// Per-mount flags of the mount at `dir` that a remount must restate.
fn mount_flags_of(dir: &[u8]) -> (bool, MountFlags) {
    use rustix::fs::StatVfsMountFlags as V;
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return (false, MountFlags::empty());
    };
    let f = st.f_flag;
    let pairs = [
        (V::NOSUID, MountFlags::NOSUID),
        (V::NODEV, MountFlags::NODEV),
        (V::NOEXEC, MountFlags::NOEXEC),
        (V::NOATIME, MountFlags::NOATIME),
        (V::NODIRATIME, MountFlags::NODIRATIME),
        (V::RELATIME, MountFlags::RELATIME),
    ];
    let keep = pairs
        .iter()
        .filter(|(v, _)| f.contains(*v))
        .fold(MountFlags::empty(), |k, (_, m)| k | *m);
    (!f.contains(V::RDONLY), keep)
}

/// `immucore boot-ok`, from the booted system: this boot is good. Clears
/// `boot_assessment_tentative` (and our failure note) in `/boot_assessment` on `COS_STATE`,
/// as Kairos' agent does after a good boot (`systemd-bless-boot` for this scheme). On the
/// passive boot after a failed try it means: try the active image again next boot. Uses
/// `/run/initramfs/cos-state` when `COS_STATE` is mounted there (read-write for the write,
/// then as it was), else mounts `COS_STATE` (by label) on a private directory. Exit status 0:
/// cleared, or nothing to clear; 1: it could not be done (the message says why).
pub fn boot_ok() -> i32 {
    log::set_step("boot-ok");
    let outcome = if sys::is_mountpoint_path(STATE_DIR) {
        let (rw, keep) = mount_flags_of(STATE_DIR);
        bless(STATE_DIR, rw, keep)
    } else {
        bless_unmounted()
    };
    match outcome {
        Ok(()) => 0,
        Err(e) => {
            e.log(log::Level::Error, b"{}");
            1
        }
    }
}

/// `boot-ok` on the block of the partition mounted at `path`.
fn bless(path: &[u8], rw: bool, keep: MountFlags) -> Result<(), Error> {
    let Some(block) = read_block(path)? else {
        log::info(b"no {} on COS_STATE: nothing to clear", &[BLOCK]);
        return Ok(());
    };
    if !block.is_yes(TENTATIVE) && !block.is_yes(ACTIVE_FAILED) {
        log::info(
            b"boot_assessment_tentative is not set in {}: nothing to clear",
            &[BLOCK],
        );
        return Ok(());
    }
    let new = blessed(&block)
        .map_err(|why| err(b"{} not rewritten: {}", &[BLOCK, unwritable_reason(why)]))?;
    rewrite_mounted(path, rw, keep, &new)?;
    log::info(
        b"cleared boot_assessment_tentative in {} on COS_STATE: this boot is good",
        &[BLOCK],
    );
    Ok(())
}

/// `boot-ok` when `COS_STATE` is not at `/run/initramfs/cos-state`: mounted on a private
/// directory, read-only and then remounted read-write for the write only (a filesystem mounted
/// read-only elsewhere too cannot be mounted read-write beside it), then unmounted.
fn bless_unmounted() -> Result<(), Error> {
    let mut table = crate::dev::scan::Table::new();
    let mut why = Text::<256>::new();
    let dev = root::label_device(b"COS_STATE");
    let Some((node, known)) = crate::dev::scan::wait_for(&mut table, &dev, 0, &mut why) else {
        return Err(err(b"{}", &[why.as_bytes()]));
    };
    let node = node.as_bytes();
    let Some(fs) = known.or_else(|| crate::dev::scan::probe_node(node).map(|f| f.fs)) else {
        return Err(err(
            b"{} has no filesystem that immucore recognises",
            &[node],
        ));
    };
    sys::mkdir_p(PRIVATE_DIR, 0o700)
        .map_err(|e| err_errno(b"cannot create {}", &[PRIVATE_DIR], e))?;
    sys::mount(
        node,
        PRIVATE_DIR,
        fs.name().as_bytes(),
        MountFlags::RDONLY,
        b"",
    )
    .map_err(|e| err_errno(b"cannot mount {} on {}", &[node, PRIVATE_DIR], e))?;
    let outcome = bless(PRIVATE_DIR, false, MountFlags::empty());
    if let Err(e) = rustix::mount::unmount(PRIVATE_DIR, rustix::mount::UnmountFlags::empty()) {
        log::warn(
            b"cannot unmount {}: {}",
            &[PRIVATE_DIR, log::errno(e).as_bytes()],
        );
    }
    let _ = rustix::fs::rmdir(PRIVATE_DIR);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::ToOwned;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    fn block(lines: &str) -> Block {
        let mut b = grubenv::HEADER.to_vec();
        b.extend_from_slice(lines.as_bytes());
        b.resize(grubenv::SIZE, b'#');
        Block::parse(&b).unwrap()
    }

    fn text(b: &Block) -> String {
        let bytes = &b.as_bytes()[grubenv::HEADER.len()..];
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .trim_end_matches('#')
            .to_owned()
    }

    /// Kairos' GRUB script, case by case, and the block each case leaves.
    #[test]
    fn verdicts_follow_kairos_grub_script() {
        use Verdict::*;
        let cases: &[(&str, Verdict, Option<&str>)] = &[
            ("", Unassessed, None),
            ("enable_boot_assessment=\nboot_assessment_tentative=yes\n", Unassessed, None),
            (
                "enable_boot_assessment=yes\n",
                Try,
                Some("enable_boot_assessment=yes\nboot_assessment_tentative=yes\n"),
            ),
            (
                "enable_boot_assessment_always=yes\nboot_assessment_tentative=\n",
                Try,
                Some("enable_boot_assessment_always=yes\nboot_assessment_tentative=yes\n"),
            ),
            (
                "enable_boot_assessment=yes\nboot_assessment_tentative=yes\n",
                FirstFallback,
                Some("enable_boot_assessment=yes\nboot_assessment_tentative=yes\nimmucore_active_failed=yes\n"),
            ),
            // Kairos' agent cleared both on the passive boot: stay on passive.
            (
                "enable_boot_assessment=\nboot_assessment_tentative=\nimmucore_active_failed=yes\n",
                Fallback,
                None,
            ),
            (
                "enable_boot_assessment=yes\nboot_assessment_tentative=yes\nimmucore_active_failed=yes\n",
                Fallback,
                None,
            ),
            (
                "enable_boot_assessment_always=yes\nimmucore_active_failed=yes\n",
                Fallback,
                None,
            ),
            // An upgrade armed it again (Kairos' after-upgrade): a new try.
            (
                "enable_boot_assessment=yes\nboot_assessment_tentative=\nimmucore_active_failed=yes\n",
                Try,
                Some("enable_boot_assessment=yes\nboot_assessment_tentative=yes\n"),
            ),
        ];
        for (lines, want, after) in cases {
            let b = block(lines);
            assert_eq!(verdict(&b), *want, "{lines:?}");
            let new = rewritten(&b, *want).map(|r| text(&r.unwrap()));
            assert_eq!(new.as_deref(), *after, "{lines:?}");
        }
    }

    #[test]
    fn boot_ok_clears_the_try_and_the_failure_note_and_keeps_the_rest() {
        let b = block("saved_entry=x\nenable_boot_assessment=yes\nboot_assessment_tentative=yes\nimmucore_active_failed=yes\n");
        let new = blessed(&b).unwrap();
        assert_eq!(
            text(&new),
            "saved_entry=x\nenable_boot_assessment=yes\nboot_assessment_tentative=\n"
        );
        assert_eq!(
            verdict(&new),
            Verdict::Try,
            "the next boot tries active again"
        );
    }

    #[test]
    fn a_full_block_is_not_rewritten() {
        let fill = "k=".to_owned() + &"v".repeat(grubenv::SIZE - grubenv::HEADER.len() - 4 - 27);
        let lines: Vec<u8> = format!("{fill}\nenable_boot_assessment=yes\n").into_bytes();
        let b = block(std::str::from_utf8(&lines).unwrap());
        assert_eq!(verdict(&b), Verdict::Try);
        assert!(matches!(
            rewritten(&b, Verdict::Try),
            Some(Err(Unwritable::NoRoom))
        ));
    }
}
