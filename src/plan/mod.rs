//! The boot as one step table (`STEPS`): each row declares a step once, with its upstream name,
//! whether it is critical, the function that runs it (behind the cargo feature that gates it)
//! and its place in the plan of each boot mode: its strong deps (a failed or skipped strong dep
//! skips the step) and its ordering-only deps. `exec` selects the plan of a boot and runs it in
//! layer order (table order inside a layer); `render` prints it for `--dry-run` in upstream's
//! format.
//!
//! Deliberate fixes of upstream's semantics (SPEC §5): only a step's own strong deps can skip it
//! (no transitive "weak only for this node" rule), so a missing OEM partition does not skip the
//! layout and one failed volume or overlay path does not skip the persistent binds. The one
//! case where binds must not run (their filesystem is missing) is decided inside `mount-bind`,
//! because it depends on which volume holds `PERSISTENT_STATE_TARGET`.

mod exec;
#[cfg(any(test, feature = "dry-run"))]
mod render;

pub use crate::config::cmdline::Mode;
pub use exec::{Plan, Status, MAX_STEPS};

#[cfg(feature = "bootassessment")]
use crate::steps::assessment;
#[cfg(feature = "hooks")]
use crate::steps::hooks;
#[cfg(feature = "live")]
use crate::steps::live;
#[cfg(feature = "oci")]
use crate::steps::oci;
use crate::steps::{binds, fstab, init, overlay, root, volumes, Ctx, Error};

/// Declares `StepId` with the given variants and counts them (`StepId::COUNT`).
/// A variant may carry a `#[cfg(feature = ...)]`: a step that exists only with its feature
/// (its row costs a build without it nothing).
macro_rules! step_ids {
    ($($(#[$cfg:meta])* $id:ident),+ $(,)?) => {
        /// A step; `STEPS` has its row.
        #[derive(Clone, Copy, PartialEq, Eq)]
        #[cfg_attr(test, derive(Debug))]
        pub enum StepId {
            $($(#[$cfg])* $id),+
        }

        impl StepId {
            /// How many steps there are.
            pub const COUNT: usize = [$($(#[$cfg])* StepId::$id),+].len();
        }
    };
}

step_ids!(
    BaseMounts,
    LoadModules,
    LvmActivation,
    // Only in a build with the feature: the tiny build has no byte to spare for its row.
    #[cfg(feature = "bootassessment")]
    BootAssessment,
    CreateSentinel,
    MountTmpfs,
    MountState,
    DiscoverState,
    MountRoot,
    // Only in builds with `oci`: the tiny profile has 64 bytes of its budget left.
    #[cfg(feature = "oci")]
    OciRoot,
    WaitForSysroot,
    MountLiveMedium,
    MountLiveImage,
    MountLiveOverlay,
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
);

use StepId::*;

const _: () = assert!(
    StepId::COUNT <= u32::BITS as usize,
    "a StepSet has one bit per step: make it wider"
);

/// The plan of a normal boot: active, passive and recovery boots from an image file.
pub const NORMAL: Mode = Mode::Normal;
/// The plan of a live, netboot or disabled boot: something else assembles `/sysroot`.
pub const LIVE: Mode = Mode::Live;

/// Runs a step, given what the steps hand to each other.
pub type Run = fn(&mut Ctx) -> Result<(), Error>;

/// `Some(run)` when cargo feature `$feature` is on, else `None`: the step is then in no plan
/// and its code is not built. Its row stays, so the steps after it keep their place (see
/// `Plan::new`).
macro_rules! with_feature {
    ($feature:literal, $run:expr) => {{
        #[cfg(feature = $feature)]
        let run: Option<Run> = Some($run);
        #[cfg(not(feature = $feature))]
        let run: Option<Run> = None;
        run
    }};
}

/// Every step, in the order the plans run them (a step's deps come before it, checked below).
/// `step(id, name, run)`, then `.critical()` for a step without which there is no root, then
/// the plans it is in: `.normal(strong deps, ordering-only deps)`, `.live(..)`.
pub const STEPS: &[Step] = &[
    step(BaseMounts, "base-mounts", Some(|_| init::base_mounts()))
        .normal(&[], &[])
        .live(&[], &[]),
    step(LoadModules, "load-modules", Some(init::load_modules))
        .normal(&[], &[BaseMounts])
        .live(&[], &[BaseMounts]),
    step(
        LvmActivation,
        "lvm-activation",
        with_feature!("lvm", |_| volumes::lvm_activation()),
    )
    .normal(&[], &[LoadModules]),
    // Only with rd.immucore.bootassessment (`app`): it picks the image (active or passive)
    // before the sentinel names the state and the root chain assembles it.
    #[cfg(feature = "bootassessment")]
    step(BootAssessment, "boot-assessment", Some(assessment::assess)).normal(&[], &[LoadModules]),
    step(
        CreateSentinel,
        "create-sentinel",
        Some(root::create_sentinel),
    )
    .normal(
        &[],
        &[
            LoadModules,
            #[cfg(feature = "bootassessment")]
            BootAssessment,
        ],
    )
    .live(&[], &[LoadModules]),
    step(MountTmpfs, "mount-tmpfs", Some(root::mount_tmpfs)).normal(
        &[],
        &[
            LoadModules,
            #[cfg(feature = "bootassessment")]
            BootAssessment,
        ],
    ),
    step(MountState, "mount-state", Some(root::mount_state))
        .critical()
        .normal(
            &[],
            &[
                LoadModules,
                #[cfg(feature = "bootassessment")]
                BootAssessment,
            ],
        ),
    step(DiscoverState, "discover-state", Some(root::discover_state))
        .critical()
        .normal(&[MountState], &[]),
    step(MountRoot, "mount-root", Some(root::mount_root))
        .critical()
        .normal(&[DiscoverState], &[]),
    // root=bootc-live: the root from an OCI archive, before the wait for a sysroot (which then
    // finds it ready); in the plan only when the command line names an archive (app).
    #[cfg(feature = "oci")]
    step(OciRoot, "oci-root", Some(oci::oci_root))
        .critical()
        .live(&[], &[LoadModules]),
    step(
        WaitForSysroot,
        "wait-for-sysroot",
        with_feature!("service", root::wait_for_sysroot),
    )
    .critical()
    // A failed oci-root leaves no sysroot to wait for.
    .live(BEFORE_SYSROOT, &[LoadModules]),
    // A live root immucore assembles itself (PID 1 with root=live:...; `app::build_plan`
    // runs these instead of wait-for-sysroot, and only then). Rows only with the feature: a
    // row is 48 bytes, and the tiny build must not grow (see `ROWLESS`).
    #[cfg(feature = "live")]
    step(
        MountLiveMedium,
        "mount-live-medium",
        with_feature!("live", live::mount_live_medium),
    )
    .critical()
    .live(&[], &[LoadModules]),
    #[cfg(feature = "live")]
    step(
        MountLiveImage,
        "mount-live-image",
        with_feature!("live", live::mount_live_image),
    )
    .critical()
    .live(&[MountLiveMedium], &[]),
    #[cfg(feature = "live")]
    step(
        MountLiveOverlay,
        "mount-live-overlay",
        with_feature!("live", live::mount_live_overlay),
    )
    .critical()
    .live(&[MountLiveImage], &[]),
    step(MountOem, "mount-oem", Some(volumes::mount_oem))
        .normal(&[MountRoot], &[LvmActivation])
        .live(&[WaitForSysroot, MountLiveOverlay], &[]),
    step(
        RootfsHook,
        "rootfs-hook",
        with_feature!("hooks", |ctx| hooks::run_stage(ctx, false)),
    )
    .normal(&[MountRoot, CreateSentinel], &[MountOem])
    .live(
        &[CreateSentinel, WaitForSysroot, MountLiveOverlay],
        &[MountOem],
    ),
    step(LoadConfig, "load-config", Some(overlay::load_config)).normal(&[RootfsHook], &[]),
    step(
        MountBaseOverlay,
        "mount-base-overlay",
        Some(overlay::mount_base_overlay),
    )
    .normal(&[LoadConfig], &[]),
    step(OverlayMount, "overlay-mount", Some(overlay::overlay_mount))
        .normal(&[LoadConfig, MountBaseOverlay], &[]),
    // After the overlays, unlike upstream: a volume under an RW path (`/srv/data`) needs the
    // overlay to create its mount point, and an overlay mounted later would hide the volume.
    step(CustomMount, "custom-mount", Some(volumes::custom_mount))
        .normal(&[LoadConfig], &[OverlayMount]),
    step(MountBind, "mount-bind", Some(binds::mount_bind))
        .normal(&[LoadConfig], &[OverlayMount, CustomMount]),
    step(
        EnableSysextConfext,
        "enable-sysext-confext",
        with_feature!("hooks", hooks::enable_sysext_confext),
    )
    .normal(&[MountRoot], &[MountBind]),
    step(WriteFstab, "write-fstab", Some(fstab::write_fstab)).normal(
        &[MountRoot],
        &[MountOem, CustomMount, MountBind, OverlayMount, MountTmpfs],
    ),
    step(
        InitramfsHook,
        "initramfs-hook",
        with_feature!("hooks", |ctx| hooks::run_stage(ctx, true)),
    )
    .normal(&[MountRoot], &[WriteFstab, EnableSysextConfext])
    .live(
        &[CreateSentinel, WaitForSysroot, MountLiveOverlay, RootfsHook],
        &[MountOem],
    ),
    // The hand-over itself happens after the plan ran (`app`), so that the summary can be
    // printed first.
    step(SwitchRoot, "switch-root", Some(|_| Ok(())))
        .normal(&[MountRoot], &[InitramfsHook])
        .live(&[WaitForSysroot, MountLiveOverlay], &[InitramfsHook]),
];

/// What assembles a live sysroot before the wait for it: oci-root, in builds that have it.
const BEFORE_SYSROOT: &[StepId] = &[
    #[cfg(feature = "oci")]
    OciRoot,
];

const _: () = check_table(STEPS);

/// The steps without a row in this build (their cargo feature is off): they are in no plan,
/// and a dep on one is ignored, like a dep on any step not in a plan.
const ROWLESS: StepSet = if cfg!(feature = "live") {
    StepSet::EMPTY
} else {
    StepSet::of(&[MountLiveMedium, MountLiveImage, MountLiveOverlay])
};

/// Fails the build unless `table` has exactly one row per step (but the `ROWLESS` ones) and
/// lists every dep of a step before it (so any selection of its rows in table order runs deps
/// first).
const fn check_table(table: &[Step]) {
    let mut seen = ROWLESS;
    let mut i = 0;
    while i < table.len() {
        let row = &table[i];
        assert!(!seen.contains(row.id), "a step has two rows in STEPS");
        if let Some(deps) = row.deps(Mode::Normal) {
            assert!(
                deps.all().is_subset(seen),
                "a normal dep comes after its step"
            );
        }
        if let Some(deps) = row.deps(Mode::Live) {
            assert!(
                deps.all().is_subset(seen),
                "a live dep comes after its step"
            );
        }
        seen = seen.with(row.id);
        i += 1;
    }
    assert!(
        table.len() + ROWLESS.0.count_ones() as usize == StepId::COUNT,
        "a step has no row in STEPS"
    );
}

/// A row of the step table.
pub struct Step {
    pub id: StepId,
    /// As upstream spells it (`mount-state`).
    name: &'static str,
    /// Failure means no usable root: exit 1 in service mode, failure summary in init mode.
    critical: bool,
    /// `None` when the cargo feature that gates the step is off.
    run: Option<Run>,
    /// Whether it is in the plan of each boot mode, and its deps there (`deps`). Not an
    /// `Option<Deps>` per mode: the flags share the padding after `id`, and a row is 48 bytes
    /// instead of 64 (qemu/size-lore.md).
    in_normal: bool,
    in_live: bool,
    normal: Deps,
    live: Deps,
}

/// A step named `name`, run by `run`, in no plan yet.
const fn step(id: StepId, name: &'static str, run: Option<Run>) -> Step {
    Step {
        id,
        name,
        critical: false,
        run,
        in_normal: false,
        in_live: false,
        normal: Deps::NONE,
        live: Deps::NONE,
    }
}

impl Step {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its deps in the plan of boot mode `mode`, if it is in that plan.
    const fn deps(&self, mode: Mode) -> Option<Deps> {
        let (member, deps) = match mode {
            Mode::Normal => (self.in_normal, self.normal),
            Mode::Live => (self.in_live, self.live),
        };
        if member {
            Some(deps)
        } else {
            None
        }
    }

    const fn critical(mut self) -> Step {
        self.critical = true;
        self
    }

    const fn normal(mut self, strong: &[StepId], after: &[StepId]) -> Step {
        (self.in_normal, self.normal) = (true, Deps::new(strong, after));
        self
    }

    const fn live(mut self, strong: &[StepId], after: &[StepId]) -> Step {
        (self.in_live, self.live) = (true, Deps::new(strong, after));
        self
    }
}

impl StepId {
    /// The step's row (every step but the `ROWLESS` ones has one: `check_table`).
    fn row(self) -> Option<&'static Step> {
        STEPS.iter().find(|s| s.id == self)
    }

    /// The step's name as upstream spells it (`mount-state`).
    pub fn name(self) -> &'static str {
        self.row().map_or("", Step::name)
    }

    /// Runs the step's function. Only steps of a plan run, and those have one.
    pub fn run(self, ctx: &mut Ctx) -> Result<(), Error> {
        match self.row().and_then(|s| s.run) {
            Some(run) => run(ctx),
            None => Ok(()),
        }
    }
}

/// A step's deps in one plan.
#[derive(Clone, Copy)]
struct Deps {
    /// A failed or skipped strong dep skips the step.
    strong: StepSet,
    /// Ordering only: run after these if they are in the plan, whatever their outcome.
    after: StepSet,
}

impl Deps {
    const NONE: Deps = Deps {
        strong: StepSet::EMPTY,
        after: StepSet::EMPTY,
    };

    const fn new(strong: &[StepId], after: &[StepId]) -> Deps {
        Deps {
            strong: StepSet::of(strong),
            after: StepSet::of(after),
        }
    }

    /// Every step this one runs after.
    const fn all(self) -> StepSet {
        self.strong.union(self.after)
    }
}

/// A set of steps: a bit per `StepId` (checked above). 32 bits: with a `u64` each row of
/// `STEPS` is 16 bytes wider (qemu/size-lore.md).
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct StepSet(u32);

impl StepSet {
    pub const EMPTY: StepSet = StepSet(0);

    pub const fn of(ids: &[StepId]) -> StepSet {
        let mut set = StepSet::EMPTY;
        let mut i = 0;
        while i < ids.len() {
            set = set.with(ids[i]);
            i += 1;
        }
        set
    }

    const fn bit(id: StepId) -> u32 {
        1 << id as u32
    }

    pub const fn contains(self, id: StepId) -> bool {
        self.0 & StepSet::bit(id) != 0
    }

    pub const fn with(self, id: StepId) -> StepSet {
        StepSet(self.0 | StepSet::bit(id))
    }

    pub const fn union(self, other: StepSet) -> StepSet {
        StepSet(self.0 | other.0)
    }

    pub const fn is_subset(self, of: StepSet) -> bool {
        self.0 & !of.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::render::render_to_string as render;
    use super::*;

    /// The live root steps: only PID 1 with a live source runs them (`app::build_plan`).
    const LIVE_ROOT: [StepId; 3] = [MountLiveMedium, MountLiveImage, MountLiveOverlay];

    fn service(mode: Mode) -> Plan {
        Plan::new(mode, &|id| {
            // oci-root: in the plan only for root=bootc-live: (app).
            #[cfg(feature = "oci")]
            if id == OciRoot {
                return false;
            }
            !matches!(id, BaseMounts | LoadModules | SwitchRoot | LvmActivation)
                && !assessment(id)
                && !LIVE_ROOT.contains(&id)
        })
    }

    /// Whether `id` is the boot assessment, which `app` puts in a plan only with
    /// `rd.immucore.bootassessment`.
    fn assessment(id: StepId) -> bool {
        #[cfg(feature = "bootassessment")]
        return id == BootAssessment;
        #[cfg(not(feature = "bootassessment"))]
        {
            let _ = id;
            false
        }
    }

    #[test]
    fn step_names_are_upstreams() {
        let expected = [
            (BaseMounts, "base-mounts"),
            (LoadModules, "load-modules"),
            (CreateSentinel, "create-sentinel"),
            (MountTmpfs, "mount-tmpfs"),
            (LvmActivation, "lvm-activation"),
            #[cfg(feature = "bootassessment")]
            (BootAssessment, "boot-assessment"),
            (MountState, "mount-state"),
            (DiscoverState, "discover-state"),
            (MountRoot, "mount-root"),
            #[cfg(feature = "oci")]
            (OciRoot, "oci-root"),
            (WaitForSysroot, "wait-for-sysroot"),
            (MountLiveMedium, "mount-live-medium"),
            (MountLiveImage, "mount-live-image"),
            (MountLiveOverlay, "mount-live-overlay"),
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
            let name = if ROWLESS.contains(id) { "" } else { name };
            assert_eq!(id.name(), name, "{id:?}");
        }
        assert_eq!(expected.len(), StepId::COUNT);
    }

    /// Whether `id` is oci-root, which `app` puts in a plan only with `root=bootc-live:`
    /// (never with `root=live:`, which selects the live root steps).
    fn oci_root(id: StepId) -> bool {
        #[cfg(feature = "oci")]
        return id == OciRoot;
        #[cfg(not(feature = "oci"))]
        {
            let _ = id;
            false
        }
    }

    #[test]
    fn step_sets_hold_what_was_put_in() {
        let set = StepSet::of(&[MountRoot, SwitchRoot]);
        assert!(set.contains(MountRoot) && set.contains(SwitchRoot));
        assert!(!set.contains(BaseMounts) && !StepSet::EMPTY.contains(MountRoot));
        assert!(StepSet::of(&[SwitchRoot]).is_subset(set));
        assert!(!set.is_subset(StepSet::of(&[SwitchRoot])));
        assert_eq!(StepSet::EMPTY.with(MountRoot).union(set), set);
    }

    #[test]
    fn the_critical_steps_are_the_root_chain() {
        let critical: std::vec::Vec<_> =
            STEPS.iter().filter(|s| s.critical).map(|s| s.id).collect();
        let mut expected = std::vec![
            MountState,
            DiscoverState,
            MountRoot,
            #[cfg(feature = "oci")]
            OciRoot,
            WaitForSysroot,
        ];
        if cfg!(feature = "live") {
            expected.extend(LIVE_ROOT);
        }
        assert_eq!(critical, expected);
    }

    #[test]
    fn gated_steps_have_their_function_only_with_their_feature() {
        let built = |id: StepId| id.row().is_some_and(|row| row.run.is_some());
        for id in [RootfsHook, EnableSysextConfext, InitramfsHook] {
            assert_eq!(built(id), cfg!(feature = "hooks"), "{id:?}");
        }
        assert_eq!(built(LvmActivation), cfg!(feature = "lvm"));
        assert_eq!(built(WaitForSysroot), cfg!(feature = "service"));
        #[cfg(feature = "bootassessment")]
        assert!(built(BootAssessment));
        for id in LIVE_ROOT {
            assert_eq!(built(id), cfg!(feature = "live"), "{id:?}");
        }
        // The other steps are in every build.
        let gated = [
            RootfsHook,
            EnableSysextConfext,
            InitramfsHook,
            LvmActivation,
            WaitForSysroot,
            MountLiveMedium,
            MountLiveImage,
            MountLiveOverlay,
        ];
        for s in STEPS.iter().filter(|s| !gated.contains(&s.id)) {
            assert!(s.run.is_some(), "{:?}", s.id);
        }
    }

    #[cfg(feature = "hooks")]
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
        assert_eq!(render(&service(NORMAL)), expected);
    }

    #[cfg(feature = "hooks")]
    #[test]
    fn live_layers_match_upstream() {
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n create-sentinel (background: false) (weak: false) (run: false)\n wait-for-sysroot (background: false) (weak: false) (run: false)\n\
3.\n mount-oem (background: false) (weak: false) (run: false)\n\
4.\n rootfs-hook (background: false) (weak: false) (run: false)\n\
5.\n initramfs-hook (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&service(LIVE)), expected);
    }

    /// PID 1 with `root=live:...`: the live root steps instead of wait-for-sysroot, before
    /// the OEM partition, the hooks and switch-root (what `--dry-run` shows for that boot).
    #[cfg(all(feature = "hooks", feature = "live"))]
    #[test]
    fn live_root_layers_as_pid1() {
        let plan = Plan::new(LIVE, &|id| {
            !matches!(id, WaitForSysroot | LvmActivation) && !oci_root(id)
        });
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n base-mounts (background: false) (weak: false) (run: false)\n\
3.\n load-modules (background: false) (weak: false) (run: false)\n\
4.\n create-sentinel (background: false) (weak: false) (run: false)\n mount-live-medium (background: false) (weak: false) (run: false)\n\
5.\n mount-live-image (background: false) (weak: false) (run: false)\n\
6.\n mount-live-overlay (background: false) (weak: false) (run: false)\n\
7.\n mount-oem (background: false) (weak: false) (run: false)\n\
8.\n rootfs-hook (background: false) (weak: false) (run: false)\n\
9.\n initramfs-hook (background: false) (weak: false) (run: false)\n\
10.\n switch-root (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&plan), expected);
    }

    /// root=bootc-live: (app puts oci-root in the plan): the archive is unpacked first, then
    /// the wait for a sysroot finds it ready and the live plan goes on.
    #[cfg(all(feature = "hooks", feature = "oci"))]
    #[test]
    fn oci_root_comes_before_the_wait_for_a_sysroot() {
        let plan = Plan::new(LIVE, &|id| {
            !matches!(id, BaseMounts | LoadModules | SwitchRoot) && !LIVE_ROOT.contains(&id)
        });
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n create-sentinel (background: false) (weak: false) (run: false)\n oci-root (background: false) (weak: false) (run: false)\n\
3.\n wait-for-sysroot (background: false) (weak: false) (run: false)\n\
4.\n mount-oem (background: false) (weak: false) (run: false)\n\
5.\n rootfs-hook (background: false) (weak: false) (run: false)\n\
6.\n initramfs-hook (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&plan), expected);
    }

    /// Without the hooks feature the plans lack the hook steps, and the layout still follows
    /// the root and the OEM partition (rootfs-hook's deps passed on to load-config).
    #[cfg(not(feature = "hooks"))]
    #[test]
    fn normal_service_layers_without_hooks() {
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n create-sentinel (background: false) (weak: false) (run: false)\n mount-tmpfs (background: false) (weak: false) (run: false)\n mount-state (background: false) (weak: false) (run: false)\n\
3.\n discover-state (background: false) (weak: false) (run: false)\n\
4.\n mount-root (background: false) (weak: false) (run: false)\n\
5.\n mount-oem (background: false) (weak: false) (run: false)\n\
6.\n load-config (background: false) (weak: false) (run: false)\n\
7.\n mount-base-overlay (background: false) (weak: false) (run: false)\n\
8.\n overlay-mount (background: false) (weak: false) (run: false)\n\
9.\n custom-mount (background: false) (weak: false) (run: false)\n\
10.\n mount-bind (background: false) (weak: false) (run: false)\n\
11.\n write-fstab (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&service(NORMAL)), expected);
    }

    #[cfg(all(not(feature = "hooks"), feature = "service"))]
    #[test]
    fn live_layers_without_hooks() {
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n create-sentinel (background: false) (weak: false) (run: false)\n wait-for-sysroot (background: false) (weak: false) (run: false)\n\
3.\n mount-oem (background: false) (weak: false) (run: false)\n";
        assert_eq!(render(&service(LIVE)), expected);
        // As PID 1, switch-root still comes last, in a layer of its own.
        let init = Plan::new(LIVE, &|_| true);
        let layers = &init.layer[..init.len()];
        assert_eq!(init.step(init.len() - 1).unwrap().id, SwitchRoot);
        assert!(
            layers[layers.len() - 2] < layers[layers.len() - 1],
            "{layers:?}"
        );
    }

    /// With `rd.immucore.bootassessment` (`app` then includes the step) the assessment runs
    /// alone, before the sentinel and the root chain, which follow the state it picks.
    #[cfg(feature = "bootassessment")]
    #[test]
    fn boot_assessment_runs_before_the_sentinel_and_the_state() {
        let p = Plan::new(NORMAL, &|id| {
            !matches!(id, BaseMounts | LoadModules | SwitchRoot | LvmActivation)
        });
        let expected = "1.\n init (background: false) (weak: false) (run: false)\n\
2.\n boot-assessment (background: false) (weak: false) (run: false)\n\
3.\n create-sentinel (background: false) (weak: false) (run: false)\n mount-tmpfs (background: false) (weak: false) (run: false)\n mount-state (background: false) (weak: false) (run: false)\n\
4.\n discover-state (background: false) (weak: false) (run: false)\n";
        assert!(render(&p).starts_with(expected), "{}", render(&p));
    }

    /// `Plan::new` keeps table order: it must be layer order for every selection `app` and the
    /// cargo features make (any of the optional steps left out).
    #[test]
    fn tables_are_in_layer_order_for_the_selections_made() {
        let optional = [
            BaseMounts,
            LoadModules,
            LvmActivation,
            #[cfg(feature = "bootassessment")]
            BootAssessment,
            SwitchRoot,
            RootfsHook,
            EnableSysextConfext,
            InitramfsHook,
            WaitForSysroot,
            MountLiveMedium,
            MountLiveImage,
            MountLiveOverlay,
            #[cfg(feature = "oci")]
            OciRoot,
        ];
        for mode in [NORMAL, LIVE] {
            for mask in 0..1 << optional.len() {
                let chosen = |id: StepId| {
                    let i = optional.iter().position(|&o| o == id);
                    i.is_none_or(|i| mask & (1 << i) != 0)
                };
                // `app` runs the live root steps instead of waiting for a sysroot, and never
                // with an OCI root (one `root=`).
                let live_root = LIVE_ROOT.iter().any(|&id| chosen(id));
                if live_root
                    && (chosen(WaitForSysroot)
                        || optional.iter().any(|&o| oci_root(o) && chosen(o)))
                {
                    continue;
                }
                let p = Plan::new(mode, &chosen);
                let layers = &p.layer[..p.len()];
                assert!(layers.windows(2).all(|w| w[0] <= w[1]), "{layers:?}");
            }
        }
    }
}
