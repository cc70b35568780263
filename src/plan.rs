//! The boot as a fixed step table: names (as upstream), strong deps (a failed or skipped strong
//! dep skips the step), ordering-only deps, and which steps are critical. The executor runs the
//! steps one after another in layer order (table order inside a layer), records what happened
//! and prints the plan for `--dry-run` in upstream's format.
//!
//! Deliberate fixes of upstream's semantics (SPEC §5): only a step's own strong deps can skip it
//! (no transitive "weak only for this node" rule), so a missing OEM partition does not skip the
//! layout and one failed volume or overlay path does not skip the persistent binds. The one
//! case where binds must not run (their filesystem is missing) is decided inside `mount-bind`,
//! because it depends on which volume holds `PERSISTENT_STATE_TARGET`.

use crate::log;
use crate::util::fixed::{packed_name, packed_names, Text};

#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub enum StepId {
    BaseMounts,
    LoadModules,
    CreateSentinel,
    MountTmpfs,
    LvmActivation,
    MountState,
    DiscoverState,
    MountRoot,
    WaitForSysroot,
    MountOem,
    RootfsHook,
    LoadConfig,
    MountBaseOverlay,
    OverlayMount,
    CustomMount,
    MountBind,
    EnableSysextConfext,
    WriteFstab,
    InitramfsHook,
    SwitchRoot,
}

use StepId::*;

impl StepId {
    /// The step's name as upstream spells it (`mount-state`).
    pub fn name(self) -> &'static str {
        packed_name(STEP_NAMES, &STEP_NAME_ENDS, self as usize)
    }
}

// The names of the steps in `StepId` order, back to back (see `packed_name`).
packed_names!(
    STEP_NAMES,
    STEP_NAME_ENDS,
    [
        "base-mounts",
        "load-modules",
        "create-sentinel",
        "mount-tmpfs",
        "lvm-activation",
        "mount-state",
        "discover-state",
        "mount-root",
        "wait-for-sysroot",
        "mount-oem",
        "rootfs-hook",
        "load-config",
        "mount-base-overlay",
        "overlay-mount",
        "custom-mount",
        "mount-bind",
        "enable-sysext-confext",
        "write-fstab",
        "initramfs-hook",
        "switch-root"
    ]
);

/// A row of a step table. Deps are bit sets of `StepId`s: a table of 7-byte rows instead of
/// one of two slices and a name each.
pub struct Step {
    pub id: StepId,
    /// A failed or skipped strong dep skips this step. `CRITICAL` marks a critical step.
    deps: Ids,
    /// Ordering only: run after these if they are in the plan, whatever their outcome.
    after: Ids,
}

impl Step {
    pub fn name(&self) -> &'static str {
        self.id.name()
    }

    /// Failure means no usable root: exit 1 in service mode, failure summary in init mode.
    pub fn critical(&self) -> bool {
        self.deps.bits() & CRITICAL != 0
    }

    /// The strong deps, bit `id` for each (and `CRITICAL`, which is no step's bit).
    fn deps(&self) -> u32 {
        self.deps.bits()
    }

    /// The strong and ordering-only deps.
    fn all_deps(&self) -> u32 {
        self.deps.bits() | self.after.bits()
    }
}

/// A bit set of `StepId`s (`1 << id`) in three little-endian bytes: with byte alignment a row
/// is 8 bytes (a `u32` would make it 12).
struct Ids([u8; 3]);

/// The bit of a step's `deps` that marks it critical: the last of the three bytes, which is no
/// step id's bit (asserted below), so dependency lookups never match it.
const CRITICAL: u32 = 1 << 23;
const _: () = assert!((SwitchRoot as u32) < 23);

impl Ids {
    fn bits(&self) -> u32 {
        let [a, b, c] = self.0;
        u32::from_le_bytes([a, b, c, 0])
    }
}

/// The bit set of `ids`.
const fn ids(ids: &[StepId]) -> Ids {
    let mut set: u32 = 0;
    let mut i = 0;
    while i < ids.len() {
        set |= 1 << ids[i] as u32;
        i += 1;
    }
    let [a, b, c, _] = set.to_le_bytes();
    Ids([a, b, c])
}

const fn step(id: StepId, deps: &[StepId], after: &[StepId]) -> Step {
    Step {
        id,
        deps: ids(deps),
        after: ids(after),
    }
}

const fn critical(id: StepId, deps: &[StepId], after: &[StepId]) -> Step {
    let mut s = step(id, deps, after);
    s.deps.0[2] |= (CRITICAL >> 16) as u8;
    s
}

/// Active, passive and recovery boots from an image file.
pub const NORMAL: &[Step] = &[
    step(BaseMounts, &[], &[]),
    step(LoadModules, &[], &[BaseMounts]),
    step(LvmActivation, &[], &[LoadModules]),
    step(CreateSentinel, &[], &[LoadModules]),
    step(MountTmpfs, &[], &[LoadModules]),
    critical(MountState, &[], &[LoadModules]),
    critical(DiscoverState, &[MountState], &[]),
    critical(MountRoot, &[DiscoverState], &[]),
    step(MountOem, &[MountRoot], &[LvmActivation]),
    step(RootfsHook, &[MountRoot, CreateSentinel], &[MountOem]),
    step(LoadConfig, &[RootfsHook], &[]),
    step(MountBaseOverlay, &[LoadConfig], &[]),
    step(OverlayMount, &[LoadConfig, MountBaseOverlay], &[]),
    // After the overlays, unlike upstream: a volume under an RW path (`/srv/data`) needs the
    // overlay to create its mount point, and an overlay mounted later would hide the volume.
    step(CustomMount, &[LoadConfig], &[OverlayMount]),
    step(MountBind, &[LoadConfig], &[OverlayMount, CustomMount]),
    step(EnableSysextConfext, &[MountRoot], &[MountBind]),
    step(
        WriteFstab,
        &[MountRoot],
        &[MountOem, CustomMount, MountBind, OverlayMount, MountTmpfs],
    ),
    step(
        InitramfsHook,
        &[MountRoot],
        &[WriteFstab, EnableSysextConfext],
    ),
    step(SwitchRoot, &[MountRoot], &[InitramfsHook]),
];

/// Live, netboot and disabled boots: something else assembles `/sysroot`.
pub const LIVE: &[Step] = &[
    step(BaseMounts, &[], &[]),
    step(LoadModules, &[], &[BaseMounts]),
    step(CreateSentinel, &[], &[LoadModules]),
    critical(WaitForSysroot, &[], &[LoadModules]),
    step(MountOem, &[WaitForSysroot], &[]),
    step(RootfsHook, &[CreateSentinel, WaitForSysroot], &[MountOem]),
    step(
        InitramfsHook,
        &[CreateSentinel, WaitForSysroot, RootfsHook],
        &[MountOem],
    ),
    step(SwitchRoot, &[WaitForSysroot], &[InitramfsHook]),
];

pub const MAX_STEPS: usize = 24;

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
pub struct Plan {
    steps: [Option<&'static Step>; MAX_STEPS],
    layer: [u8; MAX_STEPS],
    pub status: [Status; MAX_STEPS],
    /// Why a step failed or was skipped.
    pub why: [Text<256>; MAX_STEPS],
    pub duration_ms: [u64; MAX_STEPS],
    len: usize,
}

impl Plan {
    /// No steps (all zero bytes, so filling a plan is one memset).
    const EMPTY: Plan = Plan {
        steps: [None; MAX_STEPS],
        layer: [0; MAX_STEPS],
        status: [Status::NotRun; MAX_STEPS],
        why: [Text::EMPTY; MAX_STEPS],
        duration_ms: [0; MAX_STEPS],
        len: 0,
    };

    /// Selects the steps of `table` for which `include` is true, in table order. Deps on steps
    /// that are not included are ignored. A table lists its steps in layer order whichever of
    /// the init-mode and LVM steps are left out (tested), so this is also upstream's order: by
    /// layer, then table order.
    pub fn new(table: &'static [Step], include: &dyn Fn(StepId) -> bool) -> Plan {
        let mut plan = Plan::EMPTY;
        for s in table.iter().filter(|s| include(s.id)) {
            let deps = s.all_deps();
            // One more than the deepest dep included so far (layer 1 is upstream's `init`).
            let deepest = plan
                .steps
                .iter()
                .zip(&plan.layer)
                .filter(|(d, _)| d.is_some_and(|d| deps & 1 << d.id as u32 != 0))
                .fold(1, |l, (_, &dl)| l.max(dl));
            let (Some(step), Some(layer)) =
                (plan.steps.get_mut(plan.len), plan.layer.get_mut(plan.len))
            else {
                continue;
            };
            (*step, *layer) = (Some(s), deepest + 1);
            plan.len += 1;
        }
        plan
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        let deps = self.step(i)?.deps();
        (0..i).find_map(|j| match (self.step(j)?, self.status.get(j)?) {
            (d, Status::Failed | Status::Skipped) if deps & 1 << d.id as u32 != 0 => Some(d.name()),
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
            (s, Status::Failed | Status::Skipped) if s.critical() => Some((s, self.why.get(i)?)),
            _ => None,
        })
    }

    /// Upstream's `--dry-run` format (reference §15): per layer a line `<n>.` and one line per
    /// step; layer 1 is the synthetic `init` node.
    pub fn render(&self, out: &mut dyn FnMut(&[u8])) {
        // Every line ends in these flags and then "true)" or "false)".
        const FLAGS: &[u8] = b" (background: false) (weak: false) (run: ";
        out(b"1.\n init");
        out(FLAGS);
        out(b"false)\n");
        // Layers are numbered densely: one whose steps were all left out leaves no gap.
        let (mut number, mut prev) = (1, 0);
        for i in 0..self.len {
            let (Some(step), Some(&layer)) = (self.step(i), self.layer.get(i)) else {
                continue;
            };
            if layer != prev {
                (number, prev) = (number + 1, layer);
                out(crate::log::num(number).as_bytes());
                out(b".\n");
            }
            out(b" ");
            out(step.name().as_bytes());
            let ran = match self.status.get(i) {
                Some(Status::Failed | Status::Skipped) => {
                    out(b" (error: ");
                    out(self.why.get(i).map_or(&[][..], |w| w.as_bytes()));
                    out(b")");
                    true
                }
                Some(Status::Ok) => true,
                _ => false,
            };
            out(FLAGS);
            out(if ran { b"true)\n" } else { b"false)\n" });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn normal_service() -> Plan {
        Plan::new(NORMAL, &|id| {
            !matches!(id, BaseMounts | LoadModules | SwitchRoot | LvmActivation)
        })
    }

    fn render(p: &Plan) -> String {
        let mut s = Vec::new();
        p.render(&mut |b: &[u8]| s.extend_from_slice(b));
        String::from_utf8(s).unwrap()
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
    fn step_names_are_upstreams() {
        let expected = [
            (BaseMounts, "base-mounts"),
            (LoadModules, "load-modules"),
            (CreateSentinel, "create-sentinel"),
            (MountTmpfs, "mount-tmpfs"),
            (LvmActivation, "lvm-activation"),
            (MountState, "mount-state"),
            (DiscoverState, "discover-state"),
            (MountRoot, "mount-root"),
            (WaitForSysroot, "wait-for-sysroot"),
            (MountOem, "mount-oem"),
            (RootfsHook, "rootfs-hook"),
            (LoadConfig, "load-config"),
            (MountBaseOverlay, "mount-base-overlay"),
            (OverlayMount, "overlay-mount"),
            (CustomMount, "custom-mount"),
            (MountBind, "mount-bind"),
            (EnableSysextConfext, "enable-sysext-confext"),
            (WriteFstab, "write-fstab"),
            (InitramfsHook, "initramfs-hook"),
            (SwitchRoot, "switch-root"),
        ];
        for (id, name) in expected {
            assert_eq!(id.name(), name, "{id:?}");
        }
        // Every id is in the list (`SwitchRoot` is the last).
        assert_eq!(expected.len(), SwitchRoot as usize + 1);
    }

    #[test]
    fn normal_service_layers_match_upstream_shape() {
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n create-sentinel (background: false) (weak: false) (run: false)\n mount-tmpfs (background: false) (weak: false) (run: false)\n mount-state (background: false) (weak: false) (run: false)\n\
3.\n discover-state (background: false) (weak: false) (run: false)\n\
4.\n mount-root (background: false) (weak: false) (run: false)\n\
5.\n mount-oem (background: false) (weak: false) (run: false)\n\
6.\n rootfs-hook (background: false) (weak: false) (run: false)\n\
7.\n load-config (background: false) (weak: false) (run: false)\n\
8.\n mount-base-overlay (background: false) (weak: false) (run: false)\n\
9.\n overlay-mount (background: false) (weak: false) (run: false)\n\
10.\n custom-mount (background: false) (weak: false) (run: false)\n\
11.\n mount-bind (background: false) (weak: false) (run: false)\n\
12.\n enable-sysext-confext (background: false) (weak: false) (run: false)\n write-fstab (background: false) (weak: false) (run: false)\n\
13.\n initramfs-hook (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&normal_service()), expected);
    }

    /// `Plan::new` keeps table order: it must be layer order for every selection `main` makes
    /// (any of the optional steps left out).
    #[test]
    fn tables_are_in_layer_order_for_the_selections_made() {
        let optional = [BaseMounts, LoadModules, LvmActivation, SwitchRoot];
        for table in [NORMAL, LIVE] {
            for mask in 0..1 << optional.len() {
                let p = Plan::new(table, &|id| {
                    let i = optional.iter().position(|&o| o == id);
                    i.is_none_or(|i| mask & (1 << i) != 0)
                });
                let layers = &p.layer[..p.len()];
                assert!(layers.windows(2).all(|w| w[0] <= w[1]), "{layers:?}");
            }
        }
    }

    #[test]
    fn live_layers_match_upstream() {
        let p = Plan::new(LIVE, &|id| {
            !matches!(id, BaseMounts | LoadModules | SwitchRoot)
        });
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n create-sentinel (background: false) (weak: false) (run: false)\n wait-for-sysroot (background: false) (weak: false) (run: false)\n\
3.\n mount-oem (background: false) (weak: false) (run: false)\n\
4.\n rootfs-hook (background: false) (weak: false) (run: false)\n\
5.\n initramfs-hook (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&p), expected);
    }

    #[test]
    fn init_mode_adds_base_mounts_first_and_switch_root_last() {
        let p = Plan::new(NORMAL, &|id| id != LvmActivation);
        assert_eq!(p.step(0).unwrap().id, BaseMounts);
        // Devices need their drivers: nothing that touches a disk runs before the modules.
        assert_eq!(p.step(1).unwrap().id, LoadModules);
        assert_eq!(p.step(p.len() - 1).unwrap().id, SwitchRoot);
        let lvm = Plan::new(NORMAL, &|_| true);
        assert!(lvm.contains(LvmActivation));
        assert!(!p.contains(LvmActivation));
    }

    #[test]
    fn missing_oem_does_not_skip_the_layout() {
        let mut p = normal_service();
        let ran = run_failing(&mut p, &[MountOem]);
        for id in [
            RootfsHook,
            LoadConfig,
            MountBaseOverlay,
            OverlayMount,
            CustomMount,
            MountBind,
            WriteFstab,
            InitramfsHook,
        ] {
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
        assert!(ran.contains(&InitramfsHook));
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

    #[test]
    fn live_wait_failure_is_fatal() {
        let mut p = Plan::new(LIVE, &|_| true);
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
