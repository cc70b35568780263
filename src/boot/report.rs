//! What the run leaves behind for people: the per-step timeline (`boot-timeline.json`, slowest
//! first) and, when there is no root, the failure summary on the console.

use crate::log;
use crate::plan::{Plan, Status};
#[cfg(any(feature = "timeline", feature = "oci"))]
use crate::sys;
use crate::util::fixed::Text;
use crate::util::words::split;

pub const TIMELINE_FILE: &[u8] = b"/run/immucore/boot-timeline.json";

#[cfg(feature = "timeline")]
fn json_string(out: &mut Text<8192>, s: &[u8]) {
    out.push_lossy(b"\"");
    for c in s {
        if matches!(c, b'"' | b'\\') {
            out.push_lossy(b"\\");
        }
        out.push_lossy(if *c < 0x20 {
            b"?"
        } else {
            core::slice::from_ref(c)
        });
    }
    out.push_lossy(b"\"");
}

/// `[{"name": .., "duration_ms": .., "error": ..}]` of the steps that ran, slowest first.
#[cfg(feature = "timeline")]
pub fn timeline(plan: &Plan, out: &mut Text<8192>) {
    out.push_lossy(b"[\n");
    // Selection by duration, descending: the first of equal durations wins (plan order).
    let mut done = [false; crate::plan::MAX_STEPS];
    let mut sep: &[u8] = b"";
    loop {
        let mut best = None;
        for i in 0..plan.len() {
            let d = plan.duration_ms.get(i);
            let ran = plan.status.get(i).is_some_and(|s| *s != Status::NotRun);
            let listed = done.get(i).copied().unwrap_or(true);
            if ran && !listed && best.is_none_or(|b| d > plan.duration_ms.get(b)) {
                best = Some(i);
            }
        }
        let Some(i) = best else { break };
        if let Some(listed) = done.get_mut(i) {
            *listed = true;
        }
        let (Some(step), Some(status)) = (plan.step(i), plan.status.get(i)) else {
            continue;
        };
        out.push_lossy(sep);
        sep = b",\n";
        out.push_lossy(b"  {\"name\": ");
        json_string(out, step.name().as_bytes());
        out.push_lossy(b", \"duration_ms\": ");
        out.push_lossy(log::num(plan.duration_ms.get(i).copied().unwrap_or(0)).as_bytes());
        if let (Status::Failed | Status::Skipped, Some(why)) = (status, plan.why.get(i)) {
            out.push_lossy(b", \"error\": ");
            json_string(out, why.as_bytes());
        }
        out.push_lossy(b"}");
    }
    out.push_lossy(b"\n]\n");
}

#[cfg(feature = "timeline")]
#[inline(never)]
pub fn write_timeline(plan: &Plan) {
    let mut text = Text::<8192>::new();
    timeline(plan, &mut text);
    let _ = sys::mkdir_p(log::LOG_DIR, 0o755);
    if let Err(e) = sys::write_path_atomic(TIMELINE_FILE, text.as_bytes(), 0o644) {
        log::warn_errno(b"cannot write the boot timeline: {}", &[], e);
    }
}

/// The failure summary, one logged line per line: what failed and why, what was skipped, the
/// command line, the log.
const SUMMARY: &[u8] = b"{}
        IMMUCORE BOOT FAILED
{}
Reason: {}
Failed: {}
Skipped:{}
Cmdline: {}
Logs:    {}{}{}
{}";

/// Logs the failure summary. `plan` is `None` for a failure before there was a plan (no step
/// failed or was skipped then).
pub fn failure_summary(plan: Option<&Plan>, reason: &[u8], cmdline: &[u8]) {
    let rule = b"========================================";
    let mut failed = Text::<512>::new();
    let mut skipped = Text::<512>::new();
    if let Some(plan) = plan {
        for i in 0..plan.len() {
            let Some(step) = plan.step(i) else { continue };
            let list = match plan.status.get(i) {
                Some(Status::Failed) => &mut failed,
                Some(Status::Skipped) => &mut skipped,
                _ => continue,
            };
            list.push_lossy(b" ");
            list.push_lossy(step.name().as_bytes());
        }
    }
    // The `{}` marks of SUMMARY, in order.
    let mut args: &[&[u8]] = &[
        rule,
        rule,
        reason,
        failed.as_bytes(),
        skipped.as_bytes(),
        cmdline.trim_ascii(),
        log::LOG_FILE,
        if cfg!(feature = "timeline") {
            b" and "
        } else {
            b""
        },
        if cfg!(feature = "timeline") {
            TIMELINE_FILE
        } else {
            b""
        },
        rule,
    ];
    for line in split(SUMMARY, b'\n') {
        log::error(line, args);
        let marks = line.windows(2).filter(|w| w == b"{}").count();
        args = args.get(marks..).unwrap_or(&[]);
    }
}

/// Appends this process's peak memory (`VmHWM` of `/proc/self/status`, as the kernel writes
/// it: `352 kB`); nothing when it cannot be read. For the boot-cost records (switch_root's last
/// line, the OCI unpack summary).
#[cfg(any(feature = "timeline", feature = "oci"))]
pub fn peak_memory(out: &mut Text<32>) {
    let mut buf = [0u8; 4096];
    let Ok(n) = sys::read_file(b"/proc/self/status", &mut buf) else {
        return;
    };
    let status = buf.get(..n).unwrap_or(&[]);
    // A line of its own, never the first (that is `Name:`).
    if let Some(at) = status.windows(7).position(|w| w == b"\nVmHWM:") {
        let rest = status.get(at + 7..).unwrap_or(&[]);
        let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
        out.push_lossy(rest.get(..end).unwrap_or(rest).trim_ascii());
    }
}

#[cfg(all(test, feature = "timeline"))]
mod tests {
    use super::*;
    use crate::plan::{StepId, NORMAL};

    #[test]
    fn timeline_is_slowest_first_with_errors() {
        let mut p = Plan::new(NORMAL, &|id| {
            matches!(
                id,
                StepId::CreateSentinel | StepId::MountState | StepId::MountTmpfs
            )
        });
        let clock = std::cell::Cell::new(0u64);
        let mut n = 0;
        p.run(
            |id, why| {
                n += 1;
                clock.set(clock.get() + n * 10);
                if id == StepId::MountState {
                    *why = Text::from(b"no \"COS_STATE\"").unwrap();
                }
                id != StepId::MountState
            },
            || clock.get(),
            |_, _, _| {},
        );
        let mut out = Text::new();
        timeline(&p, &mut out);
        assert_eq!(
            out.as_str(),
            "[\n  {\"name\": \"mount-state\", \"duration_ms\": 30, \"error\": \"no \\\"COS_STATE\\\"\"},\n  \
             {\"name\": \"mount-tmpfs\", \"duration_ms\": 20},\n  {\"name\": \"create-sentinel\", \"duration_ms\": 10}\n]\n"
        );
    }
}
