#!/bin/sh
# immucore-generator NORMAL_DIR [EARLY_DIR LATE_DIR] — systemd generator of the dracut module
# "immucore".  Makes the order of immucore.service and sysroot.mount the same on every boot:
#
# normal boot (root=LABEL=COS_ACTIVE|COS_PASSIVE|COS_SYSTEM|COS_RECOVERY ...):
#   immucore owns /sysroot.  systemd-fstab-generator turns root= into sysroot.mount waiting for
#   /dev/disk/by-label/<label>, which is immucore's own loop device.  sysroot.mount and the fsck
#   of the root device are ordered after immucore.service, so systemd never mounts or checks the
#   image while immucore sets it up; when their jobs run, /sysroot is already mounted (systemd
#   sees it in mountinfo) and the start is a no-op.
# live/disabled boot (root=live:..., netboot, rd.cos.disable, rd.immucore.disable[d]):
#   someone else (dmsquash-live, ...) mounts /sysroot: immucore is ordered after sysroot.mount and
#   only waits for it.
set -f
dir=${1:-/run/systemd/generator}
cmdline=
read -r cmdline < /proc/cmdline || :
live=
for w in $cmdline; do
    case $w in
    root=live:* | netboot | rd.cos.disable | rd.immucore.disable | rd.immucore.disabled) live=1 ;;
    esac
done
if [ -n "$live" ]; then
    mkdir -p "$dir/immucore.service.d"
    printf '%s\n' '# written by immucore-generator: live/disabled boot' '[Unit]' 'After=sysroot.mount' \
        > "$dir/immucore.service.d/50-live.conf"
else
    mkdir -p "$dir/sysroot.mount.d" "$dir/systemd-fsck@.service.d"
    printf '%s\n' '# written by immucore-generator: immucore mounts /sysroot' '[Unit]' 'After=immucore.service' \
        '[Mount]' 'TimeoutSec=300' > "$dir/sysroot.mount.d/50-immucore.conf"
    printf '%s\n' '# written by immucore-generator: never fsck the root image while immucore sets it up' \
        '[Unit]' 'After=immucore.service' > "$dir/systemd-fsck@.service.d/50-immucore.conf"
fi
exit 0
