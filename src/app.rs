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

const HELP: &[u8] = b"immucore - mount a Kairos/cOS immutable OS root at boot

Usage: immucore [--dry-run | --help | --version]
  (none)     assemble the root of /proc/cmdline and /run/cos/cos-layout.env on /sysroot
             (as PID 1: also /proc /sys /dev /run and modules, then switch root)
  --dry-run  print the steps and exit; touches nothing
  --version  version, commit and build features

Kernel command line: root=LABEL=COS_{ACTIVE,PASSIVE,SYSTEM,RECOVERY}, root=live:...,
cos-img/filename=, rd.cos.{oemlabel=,oemtimeout=,overlay=tmpfs:<size>|LABEL=x,debugrw,disable},
rd.cos.mount=LABEL=x:/mnt, rd.immucore.{sysrootwait=,debug,rebootonfailure}, kairos.reset,
recovery-mode, fsck.{mode,repair}=, init=, rd.shell=0, rd.emergency=reboot|poweroff|halt
(a fatal error as PID 1: reboot > poweroff > halt > /bin/sh > wait; README)
Testing: HOST_PROC_CMDLINE, IMMUCORE_SYSROOT, IMMUCORE_CONFIG_DIR replace /proc/cmdline,
/sysroot, /etc/immucore. Logs: /run/immucore/
";

/// The optional parts of immucore (cargo features) this build has. (Only those: a build
/// without a feature carries neither its name nor a flag for it.)
const FEATURES: &[&str] = &[
    #[cfg(feature = "hooks")]
    "hooks",
    #[cfg(feature = "lvm")]
    "lvm",
    #[cfg(feature = "fsck")]
    "fsck",
    #[cfg(feature = "gpt")]
    "gpt",
    #[cfg(feature = "xfs")]
    "xfs",
    #[cfg(feature = "btrfs")]
    "btrfs",
    #[cfg(feature = "vfat")]
    "vfat",
    #[cfg(feature = "iso9660")]
    "iso9660",
    #[cfg(feature = "squashfs")]
    "squashfs",
    #[cfg(feature = "erofs")]
    "erofs",
    #[cfg(feature = "consoles")]
    "consoles",
    #[cfg(feature = "watchdog")]
    "watchdog",
];

fn out(s: &[u8]) {
    let _ = sys::write_all(sys::stdout(), s);
}

/// The features this build has, space-separated, or `none`.
fn out_features() {
    let mut sep: &[u8] = b"";
    for name in FEATURES {
        out(sep);
        out(name.as_bytes());
        sep = b" ";
    }
    if sep.is_empty() {
        out(b"none");
    }
}

fn print_help() -> i32 {
    out(HELP);
    out(b"Build features: ");
    out_features();
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
    out_features();
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
    let env = Env::new(process.args().skip(1), process.vars(), sys::is_pid1());
    let dry_run = match env.action {
        Action::Help => return print_help(),
        Action::Version => return print_version(),
        Action::DryRun => true,
        Action::Boot => false,
    };
    if let Some(bad) = &env.bad_arg {
        log::error(b"unknown argument '{}' (see --help)", &[bad.as_bytes()]);
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
    if dry_run {
        log::set_console(false);
    }
    report_cmdline(&cmd, text);
    let mut plan = build_plan(&env, &cmd);
    if dry_run {
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
    Plan::new(cmd.mode, &|id| match id {
        StepId::BaseMounts | StepId::LoadModules | StepId::SwitchRoot => env.init_mode,
        StepId::LvmActivation => has_lvm,
        _ => true,
    })
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
