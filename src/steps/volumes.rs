//! Partitions other than the root chain: OEM, `VOLUMES` and `rd.*.mount` extra volumes, and
//! (feature `lvm`) LVM activation where an `lvm` binary exists.

use super::{add_failure, err, failures, mount_device, Ctx, Error, Target, Volume, MAX_VOLUMES};
use crate::config::cmdline::{volume_spec, BootState};
use crate::dev::scan::Found;
use crate::log::{self, Level};
use crate::util::fixed::Text;

const VOLUME_TIMEOUT_MS: u64 = 3_000;
#[cfg(feature = "lvm")]
const LVM_TIMEOUT_MS: u64 = 120_000;
#[cfg(feature = "lvm")]
pub const LVM_PATHS: &[&[u8]] = &[b"/usr/sbin/lvm", b"/sbin/lvm"];

/// `mount-oem`: `COS_OEM` (or `rd.*.oemlabel=`) on `<sysroot>/oem`. Without an explicit label
/// a missing OEM partition is fine; with one, it is awaited `oemtimeout` seconds.
pub fn mount_oem(ctx: &mut Ctx) -> Result<(), Error> {
    if ctx.state == BootState::Live {
        log::info(b"live boot: no OEM partition to mount", &[]);
        return Ok(());
    }
    let explicit = !ctx.cmd.oem_label.is_empty();
    let dev = super::root::label_device(if explicit {
        ctx.cmd.oem_label.as_bytes()
    } else {
        b"COS_OEM"
    });
    if !explicit && matches!(ctx.devices.find(&dev), Found::None) {
        log::info(b"no COS_OEM partition: OEM not mounted", &[]);
        return Ok(());
    }
    let timeout = ctx.cmd.oem_timeout_s as u64 * 1000;
    mount_device(ctx, &dev, Target::InRoot(b"/oem"), b"rw", timeout, true)
}

/// The extra volumes in order: `rd.cos.mount=`, `rd.immucore.mount=`, then `VOLUMES`. As
/// upstream, a device named twice keeps its last mount point.
fn collect_volumes(ctx: &Ctx, volumes: &mut [Option<Volume>; MAX_VOLUMES]) -> Result<(), Error> {
    // At most 16 + 16 specs: the command line and the layout each keep no more.
    for list in [&ctx.cmd.mounts, &ctx.layout.volumes] {
        for v in list.iter() {
            let (dev, mountpoint) = match volume_spec(v) {
                Ok(spec) => spec,
                Err(why) => return Err(err(b"volume '{}': {}", &[v, why.as_bytes()])),
            };
            let mut vol = Volume {
                mountpoint,
                device: Text::EMPTY,
                dev,
                mounted: false,
            };
            vol.dev.by_path(&mut vol.device);
            // The device's slot, else the first free one: the slots fill in order, so one
            // holding the device comes before any free one.
            let Some(slot) = volumes
                .iter_mut()
                .find(|s| s.as_ref().is_none_or(|s| s.device == vol.device))
            else {
                return Err(err(b"more than 16 volumes", &[]));
            };
            *slot = Some(vol);
        }
    }
    Ok(())
}

/// `custom-mount`: every extra volume, read-write. A failed volume fails the step (after all
/// were tried) but is remembered per volume, so `mount-bind` can tell whether the persistent
/// store's own filesystem is missing. OEM volumes may fail (upstream tolerates them).
#[inline(never)]
pub fn custom_mount(ctx: &mut Ctx) -> Result<(), Error> {
    // Collected and mounted outside the context (`mount_device` needs all of it), then stored
    // there, also when a spec was refused (the volumes before it count as not mounted).
    let mut volumes = [const { None }; MAX_VOLUMES];
    let collected = collect_volumes(ctx, &mut volumes);
    let mut failed = Text::<256>::new();
    // None is mounted when a spec was refused.
    for vol in volumes.iter_mut().flatten().filter(|_| collected.is_ok()) {
        let (device, mountpoint) = (vol.device.as_bytes(), vol.mountpoint.as_bytes());
        let target = Target::InRoot(mountpoint);
        match mount_device(ctx, &vol.dev, target, b"rw", VOLUME_TIMEOUT_MS, true) {
            Ok(()) => vol.mounted = true,
            Err(e) if device.ends_with(b"/COS_OEM") => {
                e.log(Level::Warn, b"{} (OEM volume, tolerated)");
            }
            Err(e) => {
                e.log(Level::Error, b"{}");
                add_failure(
                    &mut failed,
                    b"not mounted:",
                    b",",
                    &[device, b" on ", mountpoint],
                );
            }
        }
    }
    ctx.volumes = volumes;
    collected?;
    failures(&failed)
}

/// `lvm-activation`: activate volume groups so labels on logical volumes can be found.
#[cfg(feature = "lvm")]
pub fn lvm_activation() -> Result<(), Error> {
    use super::{run_program, RUN_PATH};
    use crate::sys;
    let Some(lvm) = LVM_PATHS.iter().find(|p| sys::is_executable(p)) else {
        return Ok(());
    };
    let mut bin = sys::CBuf::new();
    // Literals without a NUL: this cannot fail.
    let Ok(bin) = bin.c_str(lvm) else {
        return Ok(());
    };
    let argv = [bin, c"vgchange", c"--activate", c"y", c"--sysinit"];
    run_program(
        &argv,
        &[RUN_PATH],
        None,
        LVM_TIMEOUT_MS,
        [b"lvm ", b"vgchange"],
        0,
    )?;
    log::info(b"volume groups activated", &[]);
    Ok(())
}
