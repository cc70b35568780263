//! The program: read the kernel command line, build the plan of the boot, run it, and hand
//! over to the new root (or, when there is none, say why and do the failure action).

use crate::boot;
use crate::config::cmdline::{self, Cmdline, Mode};
use crate::config::state::{Action, Env};
use crate::log;
use crate::plan::{Plan, Status, StepId};
use crate::steps::{self, init};
use crate::sys;
use crate::util::fixed::Text;

// Pieces of `HELP` that only a build with the feature has (literals, for `concat!`): the help
// names only what the build can do.
#[cfg(feature = "dry-run")]
#[rustfmt::skip]
macro_rules! with_dry_run { ($text:literal) => { $text }; }
#[cfg(not(feature = "dry-run"))]
#[rustfmt::skip]
macro_rules! with_dry_run { ($text:literal) => { "" }; }
#[cfg(feature = "service")]
#[rustfmt::skip]
macro_rules! with_service { ($text:expr) => { $text }; }
#[cfg(not(feature = "service"))]
#[rustfmt::skip]
macro_rules! with_service { ($text:expr) => { "" }; }
#[cfg(feature = "service")]
#[rustfmt::skip]
macro_rules! without_service { ($text:literal) => { "" }; }
#[cfg(not(feature = "service"))]
#[rustfmt::skip]
macro_rules! without_service { ($text:literal) => { $text }; }
#[cfg(all(feature = "fallback", feature = "service"))]
#[rustfmt::skip]
macro_rules! with_fallback { ($text:literal) => { $text }; }
#[cfg(all(not(feature = "fallback"), feature = "service"))]
#[rustfmt::skip]
macro_rules! with_fallback { ($text:literal) => { "" }; }
#[cfg(all(feature = "cmdline-mounts", feature = "service"))]
#[rustfmt::skip]
macro_rules! with_cmdline_mounts { ($text:literal) => { $text }; }
#[cfg(all(not(feature = "cmdline-mounts"), feature = "service"))]
#[rustfmt::skip]
macro_rules! with_cmdline_mounts { ($text:literal) => { "" }; }
#[cfg(feature = "bootassessment")]
#[rustfmt::skip]
macro_rules! with_bootassessment { ($text:literal) => { $text }; }
#[cfg(not(feature = "bootassessment"))]
#[rustfmt::skip]
macro_rules! with_bootassessment { ($text:literal) => { "" }; }
#[cfg(feature = "live")]
#[rustfmt::skip]
macro_rules! with_live { ($text:literal) => { $text }; }
#[cfg(not(feature = "live"))]
#[rustfmt::skip]
macro_rules! with_live { ($text:literal) => { "" }; }

const HELP: &str = concat!(
    "immucore - mount a Kairos/cOS immutable OS root at boot

Usage: immucore [",
    with_dry_run!("--dry-run | "),
    "--help | --version",
    with_bootassessment!(" | boot-ok"),
    "]
  (none)     mount the image named on /proc/cmdline on /sysroot, with the overlays, volumes
             and binds of /run/cos/cos-layout.env (as PID 1: also /proc /sys /dev /run, the
             modules in /etc/immucore/modules, and switch root)
",
    with_dry_run!(
        "  --dry-run  print the steps and exit; touches nothing
"
    ),
    with_bootassessment!(
        "  boot-ok    from the booted system: this boot is good; clears boot_assessment_tentative
             in /boot_assessment on COS_STATE (rd.immucore.bootassessment; README)
"
    ),
    "  --version  version, commit and build features

",
    // The list of keys is for whoever reads --help on a host, where the service build runs;
    // the tiny PID-1 build points to the README instead (500 bytes; qemu/size-lore.md).
    with_service!(
        "Kernel command line: root=LABEL=COS_{ACTIVE,PASSIVE,SYSTEM,RECOVERY}, root=live:...,
cos-img/filename=, rd.cos.{oemlabel=,oemtimeout=,overlay=tmpfs:<size>|LABEL=x,debugrw,disable},
"
    ),
    with_service!(with_cmdline_mounts!("rd.cos.mount=LABEL=x:/mnt, ")),
    with_bootassessment!("rd.immucore.bootassessment, "),
    with_service!(
        "rd.immucore.{sysrootwait=,debug,rebootonfailure}, kairos.reset,
recovery-mode, fsck.{mode,repair}=, init=, rd.shell=0, rd.emergency=reboot|poweroff|halt
(a fatal error as PID 1: reboot > poweroff > halt > /bin/sh > wait; README)
"
    ),
    with_service!(with_fallback!(
        "rd.immucore.fallback (an unusable image boots the next: active > passive > recovery)
"
    )),
    with_service!(
        "Testing: HOST_PROC_CMDLINE, IMMUCORE_SYSROOT, IMMUCORE_CONFIG_DIR replace /proc/cmdline,
/sysroot, /etc/immucore. "
    ),
    without_service!(
        "Kernel command line keys and their precedence: README.md.
"
    ),
    "Logs: /run/immucore/
",
    with_live!(
        "Live roots as PID 1: root=live:CDLABEL=x|LABEL=x|UUID=x|PARTUUID=x|PARTLABEL=x|/dev/x|/file,
rd.live.{dir=,squashimg=,ram,overlay.size=<MiB>} (default LiveOS/squashfs.img; the overlay
tmpfs takes up to 50% of RAM), rootflags=; medium /run/initramfs/live, image /run/rootfsbase
"
    ),
);

/// The optional parts of immucore (cargo features), and whether this build has each.
pub const FEATURES: &[(&str, bool)] = &[
    ("service", cfg!(feature = "service")),
    ("dry-run", cfg!(feature = "dry-run")),
    ("cmdline-mounts", cfg!(feature = "cmdline-mounts")),
    ("timeline", cfg!(feature = "timeline")),
    ("nested-mounts", cfg!(feature = "nested-mounts")),
    ("hooks", cfg!(feature = "hooks")),
    ("lvm", cfg!(feature = "lvm")),
    ("fsck", cfg!(feature = "fsck")),
    ("gpt", cfg!(feature = "gpt")),
    ("xfs", cfg!(feature = "xfs")),
    ("btrfs", cfg!(feature = "btrfs")),
    ("vfat", cfg!(feature = "vfat")),
    ("iso9660", cfg!(feature = "iso9660")),
    ("squashfs", cfg!(feature = "squashfs")),
    ("erofs", cfg!(feature = "erofs")),
    ("verity", cfg!(feature = "verity")),
    ("consoles", cfg!(feature = "consoles")),
    ("watchdog", cfg!(feature = "watchdog")),
    ("module-hints", cfg!(feature = "module-hints")),
    ("fallback", cfg!(feature = "fallback")),
    ("bootassessment", cfg!(feature = "bootassessment")),
    ("live", cfg!(feature = "live")),
    ("kept-probes", cfg!(feature = "kept-probes")),
    ("oci", cfg!(feature = "oci")),
    ("zstd", cfg!(feature = "zstd")),
];

/// What `--version` and `--help` print for the features: the built ones, space-separated, or
/// `none`. Worked out at compile time, so the binary holds this text and not the table (a
/// 24-byte row per feature, and a loop; qemu/size-lore.md).
const BUILT_FEATURES: &[u8] = &built_features::<{ built_features_len(FEATURES) }>(FEATURES);

/// The length of the text of `built_features`.
const fn built_features_len(all: &[(&str, bool)]) -> usize {
    let (mut len, mut i) = (0, 0);
    while i < all.len() {
        if all[i].1 {
            len += (len > 0) as usize + all[i].0.len();
        }
        i += 1;
    }
    if len == 0 {
        "none".len()
    } else {
        len
    }
}

/// The names of the features of `all` that are built, space-separated (`N` bytes: see
/// `built_features_len`), or `none`.
const fn built_features<const N: usize>(all: &[(&str, bool)]) -> [u8; N] {
    let mut text = [0; N];
    let (mut len, mut i) = (0, 0);
    while i < all.len() {
        let (name, built) = all[i];
        if built {
            if len > 0 {
                len = put(&mut text, len, b" ");
            }
            len = put(&mut text, len, name.as_bytes());
        }
        i += 1;
    }
    if len == 0 {
        put(&mut text, 0, b"none");
    }
    text
}

/// Copies `s` into `text` at `at` (at compile time); returns where it ends.
const fn put(text: &mut [u8], at: usize, s: &[u8]) -> usize {
    let mut k = 0;
    while k < s.len() {
        text[at + k] = s[k];
        k += 1;
    }
    at + k
}

fn out(s: &[u8]) {
    let _ = sys::write_all(sys::stdout(), s);
}

fn print_help() -> i32 {
    out(HELP.as_bytes());
    out(b"Build features: ");
    out(BUILT_FEATURES);
    out(b"\n");
    0
}

fn print_version() -> i32 {
    out(concat!(
        "immucore ",
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("IMMUCORE_COMMIT"),
        "; features: "
    )
    .as_bytes());
    out(BUILT_FEATURES);
    out(b")\n");
    0
}

/// In init mode, what `boot::fail` needs besides the command line's words: whether `rd.shell`
/// allows a shell.
struct ShellAllowed(bool);

/// `base-mounts`, run before the plan exists (see `start`): its outcome and duration.
struct BaseMounts {
    outcome: Result<(), steps::Error>,
    ms: u64,
}

/// Program entry after `_start`: returns the exit status (never returns in init mode).
pub fn main(process: sys::args::ProcessArgs) -> i32 {
    #[cfg(feature = "oci")]
    if process.args().nth(1) == Some(b"oci-unpack") {
        return steps::oci::unpack_command(process.args().skip(2));
    }
    let env = Env::new(process.args().skip(1), process.vars(), sys::is_pid1());
    let dry_run = match env.action {
        Action::Help => return print_help(),
        Action::Version => return print_version(),
        Action::DryRun if !cfg!(feature = "dry-run") => {
            log::error(
                b"--dry-run needs the dry-run feature, which this build lacks",
                &[],
            );
            return 2;
        }
        Action::DryRun => true,
        Action::Boot => false,
        #[cfg(feature = "bootassessment")]
        Action::BootOk => return steps::assessment::boot_ok(),
    };
    if let Some(bad) = &env.bad_arg {
        log::error(b"unknown argument '{}' (see --help)", &[bad.as_bytes()]);
        return 2;
    }
    if !env.init_mode && !dry_run && !cfg!(feature = "service") {
        log::error(b"service mode (not PID 1) needs the service feature", &[]);
        return 2;
    }
    let base = if dry_run { None } else { start(&env) };
    let mut raw = [0u8; 4200];
    let (text, parsed) = read_cmdline(&env, &mut raw);
    #[cfg(feature = "watchdog")]
    if env.init_mode && !dry_run {
        crate::watchdog::start(text);
    }
    let cmd = match parsed {
        Ok(cmd) => cmd,
        Err(reason) => {
            // Not understood: the words `boot::fail` looks for can still ask for a reboot; the
            // shell is allowed, as by default.
            let on_failure = (env.init_mode && !dry_run).then_some(ShellAllowed(true));
            return give_up(None, reason.as_bytes(), text, on_failure);
        }
    };
    log::set_debug(cmd.debug);
    #[cfg(feature = "live")]
    let assembled_here = live_root(&env, &cmd);
    #[cfg(not(feature = "live"))]
    let assembled_here = false;
    if cmd.mode == Mode::Live && !cfg!(feature = "service") && !assembled_here {
        let why = b"root=live:, netboot and rd.cos.disable need the service feature";
        log::error(why, &[]);
        let on_failure = (env.init_mode && !dry_run).then_some(ShellAllowed(cmd.shell_allowed));
        return give_up(None, why, text, on_failure);
    }
    if dry_run {
        log::set_console(false);
    }
    report_cmdline(&cmd, text);
    let mut plan = build_plan(&env, &cmd);
    if dry_run {
        #[cfg(feature = "dry-run")]
        plan.render(&mut |b: &[u8]| out(b));
        return 0;
    }
    let mut ctx = steps::Ctx::new(&env, &cmd);
    run_plan(&mut plan, &mut ctx, base);
    hand_over(&plan, ctx, process, text)
}

/// What happens before the command line is read. As PID 1: `base-mounts`, as nothing is
/// mounted yet, not even `/proc` with the command line (its outcome goes into the plan when
/// the plan exists). As a service: the log file, and stop signals deferred to between steps.
fn start(env: &Env) -> Option<BaseMounts> {
    if !env.init_mode {
        log::open_file();
        #[cfg(feature = "service")]
        sys::defer_stop_signals();
        return None;
    }
    let started = sys::now_ms();
    log::set_step(StepId::BaseMounts.name());
    let outcome = init::base_mounts();
    log::set_step("");
    let ms = sys::now_ms().saturating_sub(started);
    Some(BaseMounts { outcome, ms })
}

/// Reads the kernel command line into `raw`: its text, and what it says or why that is not
/// known.
fn read_cmdline<'r>(env: &Env, raw: &'r mut [u8; 4200]) -> (&'r [u8], Result<Cmdline, Text<512>>) {
    let read = sys::read_file(env.cmdline_path.as_bytes(), raw);
    let text = raw.get(..*read.as_ref().unwrap_or(&0)).unwrap_or(&[]);
    // 512: the failure summary's reason, which can also be a step name, ": " and its error.
    let mut reason = Text::<512>::new();
    let parsed = match read {
        Err(e) => {
            log::error(
                b"cannot read the command line from {}: {}",
                &[env.cmdline_path.as_bytes(), log::errno(e).as_bytes()],
            );
            reason.push_lossy(b"cannot read the kernel command line");
            Err(reason)
        }
        Ok(_) => cmdline::parse(text).map_err(|e| {
            log::error(
                b"kernel command line: {} (at '{}')",
                &[e.reason.as_bytes(), e.token.as_bytes()],
            );
            reason.push_lossy(b"invalid kernel command line: ");
            reason.push_lossy(e.reason.as_bytes());
            reason
        }),
    };
    (text, parsed)
}

fn report_cmdline(cmd: &Cmdline, text: &[u8]) {
    log::debug(b"command line: {}", &[text.trim_ascii()]);
    let mode: &[u8] = if cmd.mode == Mode::Live {
        b"live"
    } else {
        b"normal"
    };
    log::info(
        b"boot state {}, mode {}, image {}",
        &[cmd.state.name().as_bytes(), mode, cmd.image.as_bytes()],
    );
    for w in cmd.warnings.iter() {
        log::warn(b"{}", &[w]);
    }
    for k in cmd.ignored.iter() {
        log::debug(b"ignored (not supported yet): {}", &[k]);
    }
}

/// The plan of this boot: its mode's steps; the init-mode ones only as PID 1, lvm-activation
/// only when an `lvm` binary is installed.
fn build_plan(env: &Env, cmd: &Cmdline) -> Plan {
    #[cfg(feature = "lvm")]
    let has_lvm = steps::volumes::LVM_PATHS
        .iter()
        .any(|p| sys::is_executable(p));
    #[cfg(not(feature = "lvm"))]
    let has_lvm = false;
    #[cfg(feature = "live")]
    let live_root = live_root(env, cmd);
    Plan::new(cmd.mode, &|id| match id {
        StepId::BaseMounts | StepId::LoadModules | StepId::SwitchRoot => env.init_mode,
        StepId::LvmActivation => has_lvm,
        #[cfg(feature = "bootassessment")]
        StepId::BootAssessment => cmd.boot_assessment,
        #[cfg(feature = "live")]
        StepId::WaitForSysroot => !live_root,
        #[cfg(feature = "live")]
        StepId::MountLiveMedium | StepId::MountLiveImage | StepId::MountLiveOverlay => live_root,
        #[cfg(feature = "oci")]
        StepId::OciRoot => !cmd.bootc_source.is_empty(),
        _ => true,
    })
}

/// Whether immucore assembles a live root itself: as PID 1 with `root=live:<source>`. As a
/// service, dracut's dmsquash-live does, and immucore waits for it.
#[cfg(feature = "live")]
fn live_root(env: &Env, cmd: &Cmdline) -> bool {
    env.init_mode && !cmd.live.source.is_empty()
}

/// Runs the plan, logging each outcome under the step's name. A service manager's stop skips
/// the remaining steps, none is cut half-way.
fn run_plan(plan: &mut Plan, ctx: &mut steps::Ctx, base: Option<BaseMounts>) {
    // Done before the plan existed: its outcome when the plan comes to it, its real duration
    // after (not the 0 ms of handing over the outcome).
    let (mut base_outcome, base_ms) = match base {
        Some(b) => (Some(b.outcome), Some(b.ms)),
        None => (None, None),
    };
    plan.run_until(
        // base-mounts is the plan's first step (no deps), so its error text is still the last
        // step error: nothing in between makes one.
        |id, why| {
            let outcome = match base_outcome.take_if(|_| id == StepId::BaseMounts) {
                Some(outcome) => outcome,
                None => id.run(ctx),
            };
            #[cfg(feature = "watchdog")]
            crate::watchdog::keepalive();
            outcome.map_err(|e| *why = e.message()).is_ok()
        },
        sys::now_ms,
        |_, status, why| {
            let (level, template): (_, &[u8]) = match status {
                Status::Failed => (log::Level::Error, b"failed: {}"),
                Status::Skipped => (log::Level::Warn, b"{}"),
                _ => (log::Level::Debug, b"done"),
            };
            log::log(level, template, &[why]);
        },
        sys::stop_requested,
    );
    if let Some(ms) = base_ms {
        plan.set_duration(StepId::BaseMounts, ms);
    }
    #[cfg(feature = "timeline")]
    boot::report::write_timeline(plan);
}

/// After the plan ran: as PID 1, switch root into the assembled root; as a service, exit 0.
/// Without a root: the failure summary and the failure action (`give_up`), with what the
/// steps left (`ctx`: the loop device over the image, say) still there.
fn hand_over(plan: &Plan, ctx: steps::Ctx, process: sys::args::ProcessArgs, text: &[u8]) -> i32 {
    let (env, cmd) = (ctx.env, ctx.cmd);
    let on_failure = || env.init_mode.then_some(ShellAllowed(cmd.shell_allowed));
    if sys::stop_requested() {
        let why = b"stopped by a signal before all steps ran";
        return give_up(Some(plan), why, text, None);
    }
    let mut reason = Text::<512>::new();
    if let Some((step, e)) = plan.fatal() {
        reason.push_lossy(step.name().as_bytes());
        reason.push_lossy(b": ");
        reason.push_lossy(e.as_bytes());
        return give_up(Some(plan), reason.as_bytes(), text, on_failure());
    }
    log::info(b"root assembled on {}", &[env.sysroot.as_bytes()]);
    if !env.init_mode {
        return 0;
    }
    drop(ctx);
    #[cfg(feature = "watchdog")]
    crate::watchdog::hand_over();
    log::set_step(StepId::SwitchRoot.name());
    boot::switch_root::switch_root(
        env.sysroot.as_bytes(),
        cmd.init.as_bytes(),
        process,
        &mut reason,
    );
    log::set_step("");
    give_up(Some(plan), reason.as_bytes(), text, on_failure())
}

/// There is no root: the failure summary, then in init mode the failure action, as PID 1 must
/// never exit; else exit status 1.
fn give_up(
    plan: Option<&Plan>,
    reason: &[u8],
    cmdline: &[u8],
    on_failure: Option<ShellAllowed>,
) -> i32 {
    #[cfg(feature = "consoles")]
    if on_failure.is_some() {
        boot::tee_to_consoles(cmdline);
    }
    boot::report::failure_summary(plan, reason, cmdline);
    if let Some(ShellAllowed(shell)) = on_failure {
        boot::fail(cmdline, shell);
    }
    1
}
