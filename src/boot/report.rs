//! What the run leaves behind for people: the per-step timeline (`boot-timeline.json`, slowest
//! first) and, when there is no root, the failure summary on the console.

use crate::log;
use crate::plan::{Plan, Status};
use crate::sys;
use crate::util::fixed::Text;

pub const TIMELINE_FILE: &[u8] = b"/run/immucore/boot-timeline.json";

fn json_string(out: &mut Text<8192>, s: &[u8]) {
    out.push_lossy(b"\"");
    for &c in s {
        match c {
            b'"' => out.push_lossy(b"\\\""),
            b'\\' => out.push_lossy(b"\\\\"),
            0..=0x1f => out.push_lossy(b"?"),
            _ => out.push_lossy(&[c]),
        }
    }
    out.push_lossy(b"\"");
}

/// `[{"name": .., "duration_ms": .., "error": ..}]` of the steps that ran, slowest first.
pub fn timeline(plan: &Plan, out: &mut Text<8192>) {
    let mut order = [0usize; crate::plan::MAX_STEPS];
    let n = plan.len().min(order.len());
    for (i, o) in order.iter_mut().enumerate().take(n) {
        *o = i;
    }
    // Insertion sort by duration, descending; stable for equal durations (plan order).
    for i in 1..n {
        let mut j = i;
        while j > 0 {
            let (a, b) = (
                order.get(j - 1).copied().unwrap_or(0),
                order.get(j).copied().unwrap_or(0),
            );
            if plan.duration_ms.get(a) >= plan.duration_ms.get(b) {
                break;
            }
            order.swap(j - 1, j);
            j -= 1;
        }
    }
    out.push_lossy(b"[\n");
    let mut first = true;
    for &i in order.iter().take(n) {
        let (Some(step), Some(status)) = (plan.step(i), plan.status.get(i)) else {
            continue;
        };
        if *status == Status::NotRun {
            continue;
        }
        if !first {
            out.push_lossy(b",\n");
        }
        first = false;
        out.push_lossy(b"  {\"name\": ");
        json_string(out, step.name.as_bytes());
        out.push_lossy(b", \"duration_ms\": ");
        out.push_lossy(log::num(plan.duration_ms.get(i).copied().unwrap_or(0)).as_bytes());
        if let Status::Failed(e) | Status::Skipped(e) = status {
            out.push_lossy(b", \"error\": ");
            json_string(out, e.as_bytes());
        }
        out.push_lossy(b"}");
    }
    out.push_lossy(b"\n]\n");
}

pub fn write_timeline(plan: &Plan) {
    let mut text = Text::<8192>::new();
    timeline(plan, &mut text);
    let _ = sys::mkdir_p(log::LOG_DIR, 0o755);
    if let Err(e) = sys::write_path_atomic(TIMELINE_FILE, text.as_bytes(), 0o644) {
        log::warn(
            "",
            b"cannot write the boot timeline: {}",
            &[log::errno(e).as_bytes()],
        );
    }
}

/// The failure summary: what failed and why, what was skipped, the command line, the log.
pub fn failure_summary(plan: &Plan, reason: &[u8], cmdline: &[u8]) {
    let rule = b"========================================";
    let mut failed = Text::<512>::new();
    let mut skipped = Text::<512>::new();
    for i in 0..plan.len() {
        let Some(step) = plan.step(i) else { continue };
        let list = match plan.status.get(i) {
            Some(Status::Failed(_)) => &mut failed,
            Some(Status::Skipped(_)) => &mut skipped,
            _ => continue,
        };
        list.push_lossy(b" ");
        list.push_lossy(step.name.as_bytes());
    }
    let lines: [(&[u8], &[&[u8]]); 9] = [
        (b"{}", &[rule]),
        (b"        IMMUCORE BOOT FAILED", &[]),
        (b"{}", &[rule]),
        (b"Reason: {}", &[reason]),
        (b"Failed: {}", &[failed.as_bytes()]),
        (b"Skipped:{}", &[skipped.as_bytes()]),
        (b"Cmdline: {}", &[cmdline.trim_ascii()]),
        (b"Logs:    {} and {}", &[log::LOG_FILE, TIMELINE_FILE]),
        (b"{}", &[rule]),
    ];
    for (template, args) in lines {
        log::error("", template, args);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{StepId, NORMAL};

    #[test]
    fn timeline_is_slowest_first_with_errors() {
        let mut p = Plan::new(NORMAL, |id| {
            matches!(
                id,
                StepId::CreateSentinel | StepId::MountState | StepId::MountTmpfs
            )
        });
        let clock = std::cell::Cell::new(0u64);
        let mut n = 0;
        p.run(
            |id| {
                n += 1;
                clock.set(clock.get() + n * 10);
                if id == StepId::MountState {
                    Err(Text::from(b"no \"COS_STATE\"").unwrap())
                } else {
                    Ok(())
                }
            },
            || clock.get(),
            |_, _| {},
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
