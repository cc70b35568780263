//! The executor: selects the steps of a boot from the table and runs them, recording what
//! happened to each.

use super::{Deps, Mode, Step, StepId, StepSet, STEPS};
use crate::log;
use crate::util::fixed::Text;

/// The most steps one plan holds (checked against the table below).
pub const MAX_STEPS: usize = 24;

const _: () = {
    let (mut normal, mut live, mut i) = (0, 0, 0);
    while i < STEPS.len() {
        normal += STEPS[i].deps(Mode::Normal).is_some() as usize;
        live += STEPS[i].deps(Mode::Live).is_some() as usize;
        i += 1;
    }
    assert!(
        normal <= MAX_STEPS && live <= MAX_STEPS,
        "a plan has more than MAX_STEPS steps"
    );
};

/// What happened to a step (why it failed or was skipped is `Plan::why`).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum Status {
    NotRun,
    Ok,
    Failed,
    Skipped,
}

/// The steps selected for this boot, in execution order, with their outcomes.
/// `repr(C)`: the 8 KB of texts last, the rest at short offsets (as `steps::Ctx`).
#[repr(C)]
pub struct Plan {
    len: usize,
    pub(super) steps: [Option<&'static Step>; MAX_STEPS],
    /// Per step: the strong deps it has in this plan (see `new`).
    needs: [StepSet; MAX_STEPS],
    pub(super) layer: [u8; MAX_STEPS],
    pub status: [Status; MAX_STEPS],
    pub duration_ms: [u64; MAX_STEPS],
    /// Why a step failed or was skipped.
    pub why: [Text<256>; MAX_STEPS],
}

// Nothing asks whether a plan is empty: an `is_empty` would be dead code.
#[allow(clippy::len_without_is_empty)]
impl Plan {
    /// No steps (all zero bytes, so filling a plan is one memset).
    const EMPTY: Plan = Plan {
        steps: [None; MAX_STEPS],
        needs: [StepSet::EMPTY; MAX_STEPS],
        layer: [0; MAX_STEPS],
        status: [Status::NotRun; MAX_STEPS],
        why: [Text::EMPTY; MAX_STEPS],
        duration_ms: [0; MAX_STEPS],
        len: 0,
    };

    /// The plan of boot mode `mode`: the steps of the table in that mode's plan that this build
    /// has (their cargo feature is on) and for which `include` is true, in table order. A table
    /// lists its steps in layer order whichever of the optional steps are left out (tested), so
    /// this is also upstream's order: by layer, then table order.
    ///
    /// A step left out passes its deps on to the steps that depend on it: without rootfs-hook,
    /// load-config still needs mount-root and runs after mount-oem. Deps on steps that are not
    /// in the mode's plan at all are ignored.
    pub fn new(mode: Mode, include: &dyn Fn(StepId) -> bool) -> Plan {
        let mut plan = Plan::EMPTY;
        let mut left_out = [Deps::NONE; StepId::COUNT];
        for s in STEPS {
            let Some(deps) = s.deps(mode) else {
                continue;
            };
            let deps = deps.passed_on(&left_out);
            if s.run.is_none() || !include(s.id) {
                if let Some(slot) = left_out.get_mut(s.id as usize) {
                    *slot = deps;
                }
                continue;
            }
            // One more than the deepest dep so far (layer 1 is upstream's `init`). Only
            // `--dry-run` prints the layers (the plan runs in table order): without it, none.
            let layered = cfg!(any(test, feature = "dry-run"));
            let deepest = (0..plan.len)
                .filter(|&i| layered && plan.step(i).is_some_and(|d| deps.all().contains(d.id)))
                .filter_map(|i| plan.layer.get(i).copied())
                .fold(1, u8::max);
            let (Some(step), Some(needs), Some(layer)) = (
                plan.steps.get_mut(plan.len),
                plan.needs.get_mut(plan.len),
                plan.layer.get_mut(plan.len),
            ) else {
                continue;
            };
            (*step, *needs, *layer) = (Some(s), deps.strong, deepest + 1);
            plan.len += 1;
        }
        plan
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn step(&self, i: usize) -> Option<&'static Step> {
        self.steps.get(i).copied().flatten()
    }

    pub fn contains(&self, id: StepId) -> bool {
        self.index(id).is_some()
    }

    fn index(&self, id: StepId) -> Option<usize> {
        (0..self.len).find(|&i| self.step(i).is_some_and(|s| s.id == id))
    }

    pub fn set_duration(&mut self, id: StepId, ms: u64) {
        if let Some(d) = self.index(id).and_then(|i| self.duration_ms.get_mut(i)) {
            *d = ms;
        }
    }

    pub fn status_of(&self, id: StepId) -> Option<Status> {
        self.index(id).and_then(|i| self.status.get(i).copied())
    }

    /// Why step `i` must be skipped: the first (in run order) of its strong deps that failed
    /// or was skipped.
    fn blocked_by(&self, i: usize) -> Option<&'static str> {
        let needs = *self.needs.get(i)?;
        (0..i).find_map(|j| match (self.step(j)?, self.status.get(j)?) {
            (d, Status::Failed | Status::Skipped) if needs.contains(d.id) => Some(d.name()),
            _ => None,
        })
    }

    /// Runs every step in order through `action` (which returns whether the step succeeded,
    /// and if not leaves why in its second argument) and `now` (a millisecond clock); `report`
    /// hears about each outcome (and why) as it happens.
    pub fn run(
        &mut self,
        action: impl FnMut(StepId, &mut Text<256>) -> bool,
        now: impl Fn() -> u64,
        report: impl FnMut(&Step, Status, &[u8]),
    ) {
        self.run_until(action, now, report, || false)
    }

    /// `run`, but once `stop` says so (a service manager's SIGTERM) the remaining steps are
    /// skipped, never interrupted half-way. Log lines from `action` and `report` are logged
    /// under the step's name.
    pub fn run_until(
        &mut self,
        mut action: impl FnMut(StepId, &mut Text<256>) -> bool,
        now: impl Fn() -> u64,
        mut report: impl FnMut(&Step, Status, &[u8]),
        stop: impl Fn() -> bool,
    ) {
        for i in 0..self.len {
            let blocked = self.blocked_by(i);
            let (Some(step), Some(status), Some(why), Some(ms)) = (
                self.step(i),
                self.status.get_mut(i),
                self.why.get_mut(i),
                self.duration_ms.get_mut(i),
            ) else {
                continue;
            };
            log::set_step(step.name());
            *status = Status::Skipped;
            if stop() {
                why.push_lossy(b"not run: a stop signal (SIGTERM) arrived before this step");
            } else if let Some(dep) = blocked {
                why.push_lossy(b"skipped because ");
                why.push_lossy(dep.as_bytes());
                why.push_lossy(b" did not succeed");
            } else {
                let start = now();
                *status = if action(step.id, why) {
                    Status::Ok
                } else {
                    Status::Failed
                };
                *ms = now().saturating_sub(start);
            }
            report(step, *status, why.as_bytes());
        }
        log::set_step("");
    }

    /// The first critical step that failed or was skipped, and why: the boot has no root.
    pub fn fatal(&self) -> Option<(&'static Step, &Text<256>)> {
        (0..self.len).find_map(|i| match (self.step(i)?, self.status.get(i)?) {
            (s, Status::Failed | Status::Skipped) if s.critical => Some((s, self.why.get(i)?)),
            _ => None,
        })
    }
}

impl Deps {
    /// These deps, plus for each dep left out of the plan the deps it passed on
    /// (`left_out`, by step; empty for the steps in the plan): a strong dep's strong deps stay
    /// strong, everything else becomes ordering-only.
    fn passed_on(self, left_out: &[Deps; StepId::COUNT]) -> Deps {
        let mut deps = self;
        for dep in STEPS {
            let Some(&out) = left_out.get(dep.id as usize) else {
                continue;
            };
            if self.strong.contains(dep.id) {
                deps.strong = deps.strong.union(out.strong);
                deps.after = deps.after.union(out.after);
            } else if self.after.contains(dep.id) {
                deps.after = deps.after.union(out.all());
            }
        }
        deps
    }
}

#[cfg(test)]
mod tests {
    use super::super::render::render_to_string as render;
    use super::super::StepId::*;
    use super::*;
    use std::vec::Vec;

    fn normal_service() -> Plan {
        Plan::new(Mode::Normal, &|id| {
            !matches!(id, BaseMounts | LoadModules | SwitchRoot | LvmActivation)
        })
    }

    fn run_failing(p: &mut Plan, failing: &[StepId]) -> Vec<StepId> {
        let mut ran = Vec::new();
        p.run(
            |id, why| {
                ran.push(id);
                if failing.contains(&id) {
                    *why = Text::from(b"boom").unwrap();
                }
                !failing.contains(&id)
            },
            || 0,
            |_, _, _| {},
        );
        ran
    }

    fn skipped(p: &Plan, id: StepId) -> bool {
        p.status_of(id) == Some(Status::Skipped)
    }

    #[test]
    fn init_mode_adds_base_mounts_first_and_switch_root_last() {
        let p = Plan::new(Mode::Normal, &|id| id != LvmActivation);
        assert_eq!(p.step(0).unwrap().id, BaseMounts);
        // Devices need their drivers: nothing that touches a disk runs before the modules.
        assert_eq!(p.step(1).unwrap().id, LoadModules);
        assert_eq!(p.step(p.len() - 1).unwrap().id, SwitchRoot);
        assert!(!p.contains(LvmActivation));
    }

    #[cfg(feature = "lvm")]
    #[test]
    fn lvm_activation_is_in_the_plan_when_included() {
        let lvm = Plan::new(Mode::Normal, &|_| true);
        assert!(lvm.contains(LvmActivation));
    }

    #[cfg(not(feature = "lvm"))]
    #[test]
    fn without_the_lvm_feature_lvm_activation_is_in_no_plan() {
        let lvm = Plan::new(Mode::Normal, &|_| true);
        assert!(!lvm.contains(LvmActivation));
    }

    #[test]
    fn missing_oem_does_not_skip_the_layout() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[MountOem]);
        let mut expected = std::vec![
            LoadConfig,
            MountBaseOverlay,
            OverlayMount,
            CustomMount,
            MountBind,
            WriteFstab,
        ];
        if cfg!(feature = "hooks") {
            expected.extend([RootfsHook, InitramfsHook]);
        }
        for id in expected {
            assert!(ran.contains(&id), "{id:?} should run");
        }
        assert!(p.fatal().is_none());
    }

    #[test]
    fn failed_extra_volume_does_not_skip_binds() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[CustomMount]);
        assert!(ran.contains(&MountBind));
        assert!(ran.contains(&WriteFstab));
    }

    #[test]
    fn failed_overlay_path_does_not_skip_binds() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[OverlayMount]);
        assert!(ran.contains(&MountBind));
    }

    #[test]
    fn failed_base_overlay_skips_overlays_but_not_binds() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[MountBaseOverlay]);
        assert!(skipped(&p, OverlayMount));
        assert!(ran.contains(&MountBind));
    }

    #[test]
    fn failed_layout_skips_everything_that_needs_it() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[LoadConfig]);
        for id in [MountBaseOverlay, OverlayMount, CustomMount, MountBind] {
            assert!(skipped(&p, id), "{id:?} should be skipped");
            assert!(!ran.contains(&id));
        }
        // fstab and the initramfs stage still run for what was mounted.
        assert!(ran.contains(&WriteFstab));
        if cfg!(feature = "hooks") {
            assert!(ran.contains(&InitramfsHook));
        }
    }

    #[test]
    fn critical_failure_skips_dependants_and_is_fatal() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[MountState]);
        assert!(!ran.contains(&DiscoverState));
        assert!(!ran.contains(&MountRoot));
        assert!(!ran.contains(&WriteFstab));
        assert!(ran.contains(&CreateSentinel));
        let (step, _) = p.fatal().unwrap();
        assert_eq!(step.id, MountState);
        let s = render(&p);
        assert!(
            s.contains(" mount-root (error: skipped because discover-state did not succeed)"),
            "{s}"
        );
    }

    /// Without rootfs-hook (left out here as a build without the hooks feature leaves it out),
    /// load-config takes over its strong deps: a failed mount-root or create-sentinel still
    /// skips the layout, as it does through the hook.
    #[test]
    fn a_left_out_step_passes_its_deps_on() {
        for failing in [MountRoot, CreateSentinel] {
            let mut p = Plan::new(Mode::Normal, &|id| {
                !matches!(id, BaseMounts | LoadModules | LvmActivation | RootfsHook)
            });
            let ran = run_failing(&mut p, &[failing]);
            assert!(!ran.contains(&LoadConfig), "{failing:?}");
            let s = render(&p);
            let why = std::format!(
                " load-config (error: skipped because {} did",
                failing.name()
            );
            assert!(s.contains(&why), "{s}");
        }
    }

    #[cfg(feature = "service")]
    #[test]
    fn live_wait_failure_is_fatal() {
        let mut p = Plan::new(Mode::Live, &|_| true);
        let ran = run_failing(&mut p, &[WaitForSysroot]);
        assert!(!ran.contains(&SwitchRoot));
        assert_eq!(p.fatal().unwrap().0.id, WaitForSysroot);
    }

    #[test]
    fn a_stop_skips_the_remaining_steps_without_cutting_one() {
        let mut p = normal_service();
        let ran = std::cell::RefCell::new(Vec::new());
        p.run_until(
            |id, _| {
                ran.borrow_mut().push(id);
                true
            },
            || 0,
            |_, _, _| {},
            || ran.borrow().contains(&MountRoot),
        );
        assert_eq!(*ran.borrow().last().unwrap(), MountRoot);
        assert_eq!(p.status_of(MountRoot), Some(Status::Ok));
        assert!(skipped(&p, MountOem) && skipped(&p, WriteFstab));
        let s = render(&p);
        assert!(
            s.contains(
                " mount-oem (error: not run: a stop signal (SIGTERM) arrived before this step)"
            ),
            "{s}"
        );
    }

    #[test]
    fn durations_are_recorded() {
        let mut p = normal_service();
        let t = std::cell::Cell::new(0u64);
        p.run(
            |_, _| true,
            || {
                t.set(t.get() + 5);
                t.get()
            },
            |_, _, _| {},
        );
        assert!(p.duration_ms.iter().take(p.len()).all(|&d| d == 5));
    }
}
