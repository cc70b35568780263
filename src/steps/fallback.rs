//! Image fallback (`rd.immucore.fallback`, issue 14 part 3): when the image the boot wants
//! cannot be used (missing, truncated, not a filesystem, the wrong label, fails to mount or, with
//! the verity feature, to verify), the next one in Kairos' order boots instead: active ->
//! passive -> recovery (`recovery.img`, else `recovery.squashfs`, on `COS_RECOVERY`), the order
//! of Kairos' GRUB menu. Opt-in: in Kairos' GRUB layout the kernel comes from inside the image,
//! and another image's root under that kernel would not match its modules (README).
//!
//! The root chain is three steps (`mount-state`, `discover-state`, `mount-root`), and each can
//! find the image unusable. When one fails, [`recover`] tries the next candidates in order,
//! redoing for each what the chain did so far and the failed step: the candidate's images
//! partition (recovery lives on another one, so the partition on `/run/initramfs/cos-state` is
//! switched), its loop device, its mount. `ctx.state` becomes the candidate's, so the steps
//! after it (sentinel, layout, OEM, volumes, binds, hooks) are those of the state booted.
//! Once `mount-root` succeeded with a candidate, [`finish`] makes it loud: a warning naming what
//! was wanted, what failed and what boots instead; the booted state's sentinel in place of the
//! wanted one's; and `/run/cos/fallback` (format at [`FALLBACK_FILE`]).
//!
//! A fallback image is held to the rules of the wanted one: the same label check, and under
//! dm-verity the same root hash source (a `roothash=` on the command line applies to whichever
//! image boots, so with one only a copy of the same image can be a fallback), and with
//! `rd.immucore.verity=required` an image without a root hash is refused like any failure.

use super::root::{self, SENTINEL_DIR, STATE_DIR};
use super::{err, err_errno, Ctx, Error};
use crate::config::cmdline::BootState;
use crate::log;
use crate::sys;
use crate::util::fixed::Text;

/// `/run/cos/fallback`, written when a fallback image booted: `key=value` lines, each value to
/// the end of its line, unquoted (control characters in it replaced by `?`):
/// `wanted=<state>`, `wanted_image=<path>`, `booted=<state>`, `booted_image=<path>` (paths on
/// the images partition; states as the sentinels name them without `_mode`), and
/// `reason=<image>: <step>: <why>`, one `; `-separated entry per image or partition that
/// failed, in the order tried.
pub const FALLBACK_FILE: &[u8] = b"/run/cos/fallback";

/// Room for the reasons: every image's error message (256 bytes at most) with its name.
const REASONS_SIZE: usize = 1024;

/// Room for `/run/cos/fallback`: two states, two image paths, the reasons.
const NOTE_SIZE: usize = 1536;

/// The step of the root chain that found an image unusable, in chain order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(test, derive(Debug))]
pub enum Stage {
    /// `mount-state`: the images partition did not mount.
    State,
    /// `discover-state`: the image is missing, truncated, not a filesystem or wrongly labelled.
    Discover,
    /// `mount-root`: the image did not verify or did not mount.
    Mount,
}

impl Stage {
    fn name(self) -> &'static [u8] {
        match self {
            Stage::State => b"mount-state",
            Stage::Discover => b"discover-state",
            Stage::Mount => b"mount-root",
        }
    }
}

/// An image that can be booted instead: its boot state and its path on that state's images
/// partition (Kairos' names, as its GRUB menu loop-mounts them).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct Candidate {
    pub state: BootState,
    pub image: &'static str,
}

/// Kairos' order after the active image.
const AFTER_ACTIVE: [Candidate; 3] = [
    Candidate {
        state: BootState::Passive,
        image: "/cOS/passive.img",
    },
    Candidate {
        state: BootState::Recovery,
        image: "/cOS/recovery.img",
    },
    Candidate {
        state: BootState::Recovery,
        image: "/cOS/recovery.squashfs",
    },
];

/// The images to try, in order, when the image of `wanted` cannot be used. Recovery (and
/// autoreset, a recovery boot) is the last resort: nothing follows it.
pub fn after(wanted: BootState) -> &'static [Candidate] {
    let from = match wanted {
        BootState::Active => 0,
        BootState::Passive => 1,
        _ => AFTER_ACTIVE.len(),
    };
    AFTER_ACTIVE.get(from..).unwrap_or(&[])
}

/// The next candidate after `wanted` from position `*next` on, passing over those on the
/// images partition `dead` (it did not mount: another try would only wait again; its failure
/// is among the reasons already); `*next` moves past it.
pub fn next_candidate(
    wanted: BootState,
    next: &mut usize,
    dead: Option<&str>,
) -> Option<Candidate> {
    let list = after(wanted);
    while let Some(c) = list.get(*next) {
        *next += 1;
        if c.state.images_label() != dead {
            return Some(*c);
        }
    }
    None
}

/// What image fallback knows during the root chain (`Ctx::fallback`). The reasons' buffer
/// last (`repr(C)`, as in `Ctx`): the small fields at short offsets.
#[repr(C)]
pub struct Fallback<'a> {
    /// The state and image wanted, from the first failure on (`None`: nothing failed).
    wanted: Option<(BootState, &'a [u8])>,
    /// The candidate tried or booted instead (`None`: the wanted image).
    current: Option<Candidate>,
    /// Position of the next candidate in `after(wanted)`.
    next: usize,
    /// The images partition this chain mounted on `/run/initramfs/cos-state`, if any.
    mounted: Option<&'static str>,
    /// An images partition that did not mount.
    dead: Option<&'static str>,
    /// Why each image failed (`reason=` of `/run/cos/fallback`).
    reasons: Text<REASONS_SIZE>,
}

impl Default for Fallback<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl Fallback<'_> {
    pub const fn new() -> Self {
        Fallback {
            wanted: None,
            current: None,
            next: 0,
            mounted: None,
            dead: None,
            reasons: Text::EMPTY,
        }
    }

    /// The image tried or booted instead of the wanted one, if any.
    pub fn image(&self) -> Option<&'static [u8]> {
        self.current.map(|c| c.image.as_bytes())
    }
}

/// A root chain step's `outcome`, after image fallback: a failure of step `stage` is replaced
/// by the outcome of the next usable image, when `rd.immucore.fallback` asks for it and there
/// is one. Once `mount-root` mounted a fallback image, [`finish`].
pub fn recover(ctx: &mut Ctx, stage: Stage, outcome: Result<(), Error>) -> Result<(), Error> {
    if let Err(e) = outcome {
        fall_back(ctx, stage, e)?;
    }
    if stage == Stage::Mount {
        finish(ctx);
    }
    Ok(())
}

/// Step `stage` failed with `e` for the image being tried: tries the next candidates until one
/// gets through `stage`, or none is left.
fn fall_back(ctx: &mut Ctx, stage: Stage, e: Error) -> Result<(), Error> {
    // A root mounted on the sysroot (by someone else, or ours before a later error) is not
    // ours to replace.
    if !ctx.cmd.fallback || sys::is_mountpoint_path(ctx.sysroot()) {
        return Err(e);
    }
    if ctx.fallback.wanted.is_none() {
        if after(ctx.state).is_empty() {
            // Nothing to fall back to: the error as it is.
            return Err(e);
        }
        ctx.fallback.wanted = Some((ctx.state, ctx.image()));
        // mount-state mounted the wanted state's partition, unless it is what failed.
        let label = ctx.state.images_label();
        if stage == Stage::State {
            ctx.fallback.dead = label;
        } else {
            ctx.fallback.mounted = label;
        }
    }
    note_failure(ctx, stage, e);
    let wanted = ctx.fallback.wanted.as_ref().map_or(ctx.state, |w| w.0);
    loop {
        let fb = &mut ctx.fallback;
        let Some(c) = next_candidate(wanted, &mut fb.next, fb.dead) else {
            return Err(err(
                b"no usable image (rd.immucore.fallback tried each in turn): {}",
                &[ctx.fallback.reasons.as_bytes()],
            ));
        };
        log::warn(
            b"fallback: trying the {} image {}",
            &[c.state.name().as_bytes(), c.image.as_bytes()],
        );
        ctx.state = c.state;
        ctx.fallback.current = Some(c);
        match attempt(ctx, stage, c) {
            Ok(()) => return Ok(()),
            Err(e) => note_failure(ctx, stage_failed(ctx, stage), e),
        }
    }
}

/// Which step an attempt failed in: `mount-state` if its partition is not the one mounted.
fn stage_failed(ctx: &Ctx, stage: Stage) -> Stage {
    let label = ctx.state.images_label();
    if ctx.fallback.mounted != label {
        Stage::State
    } else {
        stage
    }
}

/// Logs why the image being tried failed in `stage`, adds it to the reasons, and releases what
/// the attempt left (the loop device; under dm-verity the `root` mapping of a verified image
/// that then failed to mount, or the next image could not have one).
fn note_failure(ctx: &mut Ctx, stage: Stage, e: Error) {
    let why = e.message();
    let image = ctx.image();
    let parts = [image, stage.name(), why.as_bytes()];
    log::warn(b"fallback: {} cannot be used: {}: {}", &parts);
    push_reason(&mut ctx.fallback.reasons, &parts);
    ctx.root_loop = None;
    #[cfg(feature = "verity")]
    if stage == Stage::Mount {
        let _ = sys::dm::remove(b"root");
    }
}

/// Adds `<image>: <step>: <why>` (`parts`) to `reasons`, after a `; ` if there are some. Control
/// characters become `?`: the reasons are one line of `/run/cos/fallback`, whatever bytes (a
/// label from the disk) a message holds.
fn push_reason(reasons: &mut Text<REASONS_SIZE>, parts: &[&[u8]; 3]) {
    if !reasons.is_empty() {
        reasons.push_lossy(b"; ");
    }
    log::expand(b"{}: {}: {}", parts, &mut |c| {
        reasons.push_lossy(&[if c < b' ' || c == 0x7f { b'?' } else { c }])
    });
}

/// Runs the root chain up to `stage` for candidate `c` (now `ctx.state`): its images partition
/// when another one (or none) is mounted, its loop device, its mount.
fn attempt(ctx: &mut Ctx, stage: Stage, c: Candidate) -> Result<(), Error> {
    let label = c.state.images_label().unwrap_or("");
    if let Some(other) = ctx.fallback.mounted.filter(|&m| m != label) {
        // The other partition makes way: the loop devices over its images are gone (a failed
        // attempt released them), so nothing holds it.
        sys::unmount_detach(STATE_DIR)
            .map_err(|e| err_errno(b"cannot unmount {} ({})", &[STATE_DIR, other.as_bytes()], e))?;
        ctx.fallback.mounted = None;
        ctx.fstab.forget(STATE_DIR);
    }
    if ctx.fallback.mounted.is_none() {
        if let Err(e) = root::mount_images_partition(ctx, label) {
            ctx.fallback.dead = c.state.images_label();
            return Err(e);
        }
        ctx.fallback.mounted = Some(label);
    }
    if stage == Stage::State {
        return Ok(());
    }
    root::attach_image(ctx)?;
    if stage == Stage::Mount {
        root::mount_image(ctx)?;
    }
    Ok(())
}

/// After `mount-root` mounted a fallback image: the warning, the booted state's sentinel in
/// place of the wanted one's, and `/run/cos/fallback`. Nothing when the wanted image booted.
fn finish(ctx: &mut Ctx) {
    let Some((wanted, wanted_image)) = ctx.fallback.wanted else {
        return;
    };
    let booted_image = ctx.image();
    let reasons = ctx.fallback.reasons.as_bytes();
    log::warn(
        b"FALLBACK: the {} image {} cannot be used ({}); booting the {} image {} instead",
        &[
            wanted.name().as_bytes(),
            wanted_image,
            reasons,
            ctx.state.name().as_bytes(),
            booted_image,
        ],
    );
    let mut note = Text::new();
    fallback_note(
        &mut note,
        [wanted, ctx.state],
        [wanted_image, booted_image],
        reasons,
    );
    let mut old = Text::<64>::new();
    old.push_lossy(SENTINEL_DIR);
    old.push_lossy(b"/");
    wanted.push_sentinel(&mut old);
    let _ = remove_file(old.as_bytes());
    // The booted state's sentinel (and its log line); a failure is the step's, as when the
    // sentinel step writes it.
    if let Err(e) = root::create_sentinel(ctx) {
        e.log(log::Level::Error, b"fallback: {}");
    }
    if let Err(e) = sys::write_path_atomic(FALLBACK_FILE, note.as_bytes(), 0o644) {
        log::warn_errno(b"cannot write {}", &[FALLBACK_FILE], e);
    }
}

fn remove_file(path: &[u8]) -> Result<(), sys::Errno> {
    let mut c = sys::CBuf::new();
    rustix::fs::unlink(c.c_str(path)?)
}

/// The text of `/run/cos/fallback` (see [`FALLBACK_FILE`]) into `out`: `states` and `images`
/// are the wanted and the booted one's. No value holds a line break: the images are fixed
/// names or the command line's (a token: no blanks), `note_failure` replaced them in `reasons`.
pub fn fallback_note(
    out: &mut Text<NOTE_SIZE>,
    states: [BootState; 2],
    images: [&[u8]; 2],
    reasons: &[u8],
) {
    let values = [
        states[0].name().as_bytes(),
        images[0],
        states[1].name().as_bytes(),
        images[1],
        reasons,
    ];
    log::expand(
        b"wanted={}\nwanted_image={}\nbooted={}\nbooted_image={}\nreason={}\n",
        &values,
        &mut |c| out.push_lossy(&[c]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use BootState::*;

    fn order(wanted: BootState, dead: Option<&str>) -> std::vec::Vec<&'static str> {
        let mut next = 0;
        std::iter::from_fn(|| next_candidate(wanted, &mut next, dead))
            .map(|c| c.image)
            .collect()
    }

    #[test]
    fn kairos_order_active_passive_recovery() {
        assert_eq!(
            order(Active, None),
            [
                "/cOS/passive.img",
                "/cOS/recovery.img",
                "/cOS/recovery.squashfs"
            ]
        );
        assert_eq!(
            order(Passive, None),
            ["/cOS/recovery.img", "/cOS/recovery.squashfs"]
        );
        for last_resort in [Recovery, AutoReset, Live, Unknown] {
            assert!(order(last_resort, None).is_empty(), "{last_resort:?}");
            assert!(after(last_resort).is_empty());
        }
        // Passive and recovery boot from their own partitions, recovery from another one.
        let states: std::vec::Vec<_> = after(Active).iter().map(|c| c.state).collect();
        assert_eq!(states, [Passive, Recovery, Recovery]);
        assert_eq!(Passive.images_label(), Active.images_label());
        assert_ne!(Recovery.images_label(), Active.images_label());
    }

    #[test]
    fn a_partition_that_did_not_mount_is_passed_over() {
        // COS_STATE missing: passive lives there too, recovery does not.
        assert_eq!(
            order(Active, Some("COS_STATE")),
            ["/cOS/recovery.img", "/cOS/recovery.squashfs"]
        );
        assert!(order(Passive, Some("COS_RECOVERY")).is_empty());
        // The position moves on: a candidate is tried once.
        let mut next = 0;
        let first = next_candidate(Active, &mut next, None).unwrap();
        assert_eq!((first.state, next), (Passive, 1));
        next_candidate(Active, &mut next, Some("COS_RECOVERY"));
        assert_eq!(next, 3);
    }

    #[test]
    fn stages_are_in_chain_order() {
        assert!(Stage::State < Stage::Discover && Stage::Discover < Stage::Mount);
        assert_eq!(Stage::Discover.name(), b"discover-state");
    }

    #[test]
    fn the_fallback_note_is_one_key_per_line() {
        let mut t = Text::new();
        fallback_note(
            &mut t,
            [Active, Passive],
            [b"/cOS/active.img", b"/cOS/passive.img"],
            b"/cOS/active.img: discover-state: bad",
        );
        assert_eq!(
            t.as_str(),
            "wanted=active\nwanted_image=/cOS/active.img\nbooted=passive\n\
             booted_image=/cOS/passive.img\n\
             reason=/cOS/active.img: discover-state: bad\n"
        );
    }

    #[test]
    fn reasons_are_one_line_in_the_order_tried() {
        let mut r = Text::new();
        push_reason(
            &mut r,
            &[
                b"/cOS/active.img",
                b"discover-state",
                b"label 'A\nbooted=x'",
            ],
        );
        push_reason(&mut r, &[b"/cOS/passive.img", b"mount-root", b"bad\x7f"]);
        assert_eq!(
            r.as_str(),
            "/cOS/active.img: discover-state: label 'A?booted=x'; \
             /cOS/passive.img: mount-root: bad?"
        );
    }
}
