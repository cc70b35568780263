//! immucore: mounts a Kairos/cOS immutable OS root at boot.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod boot;
pub mod config;
pub mod copy;
pub mod dev;
pub mod log;
pub mod plan;
pub mod steps;
pub mod sys;
pub mod util;

use config::cmdline::{self, Cmdline, Mode};
use config::state::{Action, Env};
use plan::{Plan, Status, StepId};
use util::fixed::Text;

const HELP: &[u8] = b"immucore - mount a Kairos/cOS immutable OS root at boot

Usage: immucore [--dry-run | --help | --version]
  (none)     mount the image named on /proc/cmdline on /sysroot, with the overlays, volumes
             and binds of /run/cos/cos-layout.env (as PID 1: also /proc /sys /dev /run, the
             modules in /etc/immucore/modules, and switch root)
  --dry-run  print the steps and exit; touches nothing
  --version  version and commit

Kernel command line: root=LABEL=COS_{ACTIVE,PASSIVE,SYSTEM,RECOVERY}, root=live:...,
cos-img/filename=, rd.cos.{oemlabel=,oemtimeout=,overlay=tmpfs:<size>|LABEL=x,debugrw,disable},
rd.cos.mount=LABEL=x:/mnt, rd.immucore.{sysrootwait=,debug,rebootonfailure}, kairos.reset,
recovery-mode, fsck.{mode,repair}=, init=, rd.shell=0
Testing: HOST_PROC_CMDLINE, IMMUCORE_SYSROOT, IMMUCORE_CONFIG_DIR replace /proc/cmdline,
/sysroot, /etc/immucore. Logs: /run/immucore/
";

fn out(s: &[u8]) {
    let _ = sys::write_all(sys::stdout(), s);
}

/// Program entry after `_start`: returns the exit status (never returns in init mode).
pub fn main(process: sys::args::ProcessArgs) -> i32 {
    let pid1 = sys::is_pid1();
    let env = Env::new(process.args().skip(1), process.vars(), pid1);
    let dry_run = match env.action {
        Action::Help => {
            out(HELP);
            return 0;
        }
        Action::Version => {
            out(concat!(
                "immucore ",
                env!("CARGO_PKG_VERSION"),
                " (commit ",
                env!("IMMUCORE_COMMIT"),
                ")\n"
            )
            .as_bytes());
            return 0;
        }
        Action::DryRun => true,
        Action::Boot => false,
    };
    if let Some(bad) = &env.bad_arg {
        log::error(b"unknown argument '{}' (see --help)", &[bad.as_bytes()]);
        return 2;
    }
    let init_mode = env.init_mode;
    // The outcome and duration of base-mounts, run before the plan exists: as PID 1 nothing is
    // mounted yet, not even /proc with the command line.
    let mut base = None;
    let mut base_ms = 0;
    if !dry_run {
        if init_mode {
            let started = sys::now_ms();
            log::set_step(StepId::BaseMounts.name());
            base = Some(boot::base_mounts());
            log::set_step("");
            base_ms = sys::now_ms().saturating_sub(started);
        } else {
            log::open_file();
            sys::defer_stop_signals();
        }
    }
    let mut raw = [0u8; 4200];
    let read = sys::read_file(env.cmdline_path.as_bytes(), &mut raw);
    let text = raw.get(..*read.as_ref().unwrap_or(&0)).unwrap_or(&[]);
    // 512: a step name, ": " and its 256-byte error fit (and a capacity used elsewhere).
    let mut reason = Text::<512>::new();
    let parsed = match read {
        Err(e) => {
            log::error(
                b"cannot read the command line from {}: {}",
                &[env.cmdline_path.as_bytes(), log::errno(e).as_bytes()],
            );
            reason.push_lossy(b"cannot read the kernel command line");
            None
        }
        Ok(_) => match cmdline::parse(text) {
            Ok(c) => Some(c),
            Err(e) => {
                log::error(
                    b"kernel command line: {} (at '{}')",
                    &[e.reason.as_bytes(), e.token.as_bytes()],
                );
                reason.push_lossy(b"invalid kernel command line: ");
                reason.push_lossy(e.reason.as_bytes());
                None
            }
        },
    };
    let Some(cmd) = parsed else {
        // No plan yet: the summary names no steps, and the command line was not understood, so
        // only its raw text can ask for a reboot.
        const REBOOT: &[u8] = b"rd.immucore.rebootonfailure";
        let reboot = text.windows(REBOOT.len()).any(|w| w == REBOOT);
        let fail = (init_mode && !dry_run).then_some((reboot, true));
        return give_up(None, reason.as_bytes(), text, fail);
    };
    log::set_debug(cmd.debug);
    if dry_run {
        log::set_console(false);
    }
    report_cmdline(&cmd, text);
    let plan_table = if cmd.mode == Mode::Live {
        plan::LIVE
    } else {
        plan::NORMAL
    };
    let has_lvm = steps::volumes::LVM_PATHS
        .iter()
        .any(|p| sys::is_executable(p));
    let mut plan = Plan::new(plan_table, &|id| match id {
        StepId::BaseMounts | StepId::LoadModules | StepId::SwitchRoot => init_mode,
        StepId::LvmActivation => has_lvm,
        _ => true,
    });
    if dry_run {
        plan.render(&mut |b: &[u8]| out(b));
        return 0;
    }
    let mut ctx = steps::Ctx::new(&env, &cmd);
    plan.run_until(
        // `base` is set only in init mode: base-mounts takes the outcome. It is the plan's first
        // step (no dependencies), so its error text is still the last step error: nothing in
        // between makes one.
        |id, why| {
            match base.take_if(|_| id == StepId::BaseMounts) {
                Some(r) => r,
                None => steps::run(id, &mut ctx),
            }
            .map_err(|e| *why = e.message())
            .is_ok()
        },
        sys::now_ms,
        // The plan named the step in the log (`log::set_step`).
        |_, status, why| {
            let (level, template): (_, &[u8]) = match status {
                Status::Failed => (log::Level::Error, b"failed: {}"),
                Status::Skipped => (log::Level::Warn, b"{}"),
                _ => (log::Level::Debug, b"done"),
            };
            log::log(level, template, &[why]);
        },
        // A service manager's stop: the remaining steps are skipped, none is cut half-way.
        sys::stop_requested,
    );
    // Done before the plan existed: its real duration, not the 0 ms of handing over the result.
    if init_mode {
        plan.set_duration(StepId::BaseMounts, base_ms);
    }
    boot::report::write_timeline(&plan);
    let fail = init_mode.then_some((cmd.reboot_on_failure, cmd.shell_allowed));
    if sys::stop_requested() {
        let why = b"stopped by a signal before all steps ran";
        return give_up(Some(&plan), why, text, None);
    }
    if let Some((step, e)) = plan.fatal() {
        reason.push_lossy(step.name().as_bytes());
        reason.push_lossy(b": ");
        reason.push_lossy(e.as_bytes());
        return give_up(Some(&plan), reason.as_bytes(), text, fail);
    }
    log::info(b"root assembled on {}", &[env.sysroot.as_bytes()]);
    if !init_mode {
        return 0;
    }
    drop(ctx);
    log::set_step(StepId::SwitchRoot.name());
    // `reason` is still empty: every failure before returned.
    boot::switch_root::switch_root(
        env.sysroot.as_bytes(),
        cmd.init.as_bytes(),
        process,
        &mut reason,
    );
    log::set_step("");
    give_up(Some(&plan), reason.as_bytes(), text, fail)
}

/// There is no root: the failure summary, then with `fail` (init mode: reboot on failure,
/// shell allowed) the failure action, as PID 1 must never exit; else exit status 1.
fn give_up(plan: Option<&Plan>, reason: &[u8], cmdline: &[u8], fail: Option<(bool, bool)>) -> i32 {
    boot::report::failure_summary(plan, reason, cmdline);
    if let Some((reboot, shell)) = fail {
        boot::fail(reboot, shell);
    }
    1
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
