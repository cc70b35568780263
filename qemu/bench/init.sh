#!/bin/sh
# qemu/bench/init.sh — busybox shell /init that does what immucore does for an ACTIVE boot
# (modules, state, loop, root, OEM, overlays, persistent volume and binds, the image's
# initramfs-stage hooks, sentinel, fstab, switch_root):
# the benchmark baseline and the kit's self-test.  Kairos default layout (upstream §4.5).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
read -r up _ < /proc/uptime
echo "REPORT: shell-init-start $up"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=755,nodev,nosuid,strictatime tmpfs /run

fail() { echo "REPORT: shell-init-failed $*"; sync; poweroff -f; }
say() { echo "shell-init: $*"; }

img=/cOS/active.img oemlabel=COS_OEM
for w in $(cat /proc/cmdline); do
    case $w in
    cos-img/filename=*) img=${w#*=} ;;
    rd.cos.oemlabel=*|rd.immucore.oemlabel=*) oemlabel=${w#*=} ;;
    esac
done

kver=$(uname -r)
while read -r m; do
    insmod "/lib/modules/$kver/$m" || say "insmod $m failed"
done < /etc/immucore/modules
echo "bench: shell-init: modules loaded" > /dev/kmsg  # phase mark for qemu/bench/run

# wait_label LABEL SECONDS: print the device holding LABEL, polling every 20 ms until the deadline
now() { read -r t _ < /proc/uptime; echo "${t%.*}"; }
wait_label() {
    end=$(($(now) + $2))
    while ! findfs "LABEL=$1" 2>/dev/null; do
        [ "$(now)" -lt "$end" ] || return 1
        usleep 20000
    done
}
dash() { p=${1#/}; echo "$p" | tr / -; }
FSTAB=
fstab() { FSTAB="$FSTAB$1 $2 $3 $4 0 0
"; }

# state partition and root image, read-only
state=$(wait_label COS_STATE 60) || fail "no LABEL=COS_STATE"
mkdir -p /run/initramfs/cos-state
mount -o ro "$state" /run/initramfs/cos-state || fail "mount $state"
fstab /dev/disk/by-label/COS_STATE /run/initramfs/cos-state ext4 ro
loop=$(losetup -f) && losetup -r "$loop" "/run/initramfs/cos-state$img" || fail "losetup $img"
mount -t ext4 -o ro "$loop" /sysroot || fail "mount $img"
fstab /dev/disk/by-label/COS_ACTIVE / ext4 ro

# OEM (optional)
if oem=$(wait_label "$oemlabel" 5); then
    mount "$oem" /sysroot/oem && fstab "/dev/disk/by-label/$oemlabel" /oem ext4 defaults
else
    say "no LABEL=$oemlabel, skipping /oem"
fi

# ephemeral overlays
mkdir -p /run/overlay
mount -t tmpfs -o size=25% tmpfs /run/overlay
fstab tmpfs /run/overlay tmpfs defaults,size=25%
for p in /etc /var /srv; do
    o=/run/overlay/$(dash $p)/.overlay
    mkdir -p "$o/upper" "$o/work"
    chmod "$(stat -c %a "/sysroot$p")" "$o/upper"
    opts=lowerdir=$p,upperdir=$o/upper,workdir=$o/work
    mount -t overlay overlay -o "index=off,lowerdir=/sysroot$p,upperdir=$o/upper,workdir=$o/work" "/sysroot$p" &&
        fstab overlay "$p" overlay "$opts" || say "overlay $p failed"
done

# persistent partition and binds
if pers=$(wait_label COS_PERSISTENT 3) && mount "$pers" /sysroot/usr/local; then
    fstab /dev/disk/by-label/COS_PERSISTENT /usr/local ext4 defaults
    for p in /etc/cni /etc/init.d /etc/iscsi /etc/k0s /etc/kubernetes /etc/modprobe.d /etc/pwx \
        /etc/rancher /etc/runlevels /etc/ssh /etc/ssl/certs /etc/sysconfig /etc/systemd /etc/zfs \
        /home /opt /root /usr/libexec /var/cores /var/lib/ca-certificates /var/lib/cni \
        /var/lib/containerd /var/lib/calico /var/lib/dbus /var/lib/etcd /var/lib/extensions \
        /var/lib/confexts /var/lib/k0s /var/lib/kubelet /var/lib/longhorn /var/lib/osd \
        /var/lib/rancher /var/lib/rook /var/lib/tailscale /var/lib/wicked /var/lib/kairos /var/log; do
        s=/usr/local/.state/$(dash $p).bind
        if [ ! -d "/sysroot$s" ]; then
            mkdir -p "/sysroot$s"
            [ -d "/sysroot$p" ] && cp -a "/sysroot$p/." "/sysroot$s/"
        fi
        mkdir -p "/sysroot$p" 2>/dev/null
        mount -o bind "/sysroot$s" "/sysroot$p" && fstab "$s" "$p" none defaults,bind || say "bind $p failed"
    done
else
    say "no COS_PERSISTENT: persistent binds skipped"
fi

# the image's initramfs-stage hooks, chrooted into the new root with the API filesystems bound
# in (what immucore's initramfs-hook step does, so both variants do the same work)
hooks=$(ls /sysroot/usr/lib/immucore/initramfs.d/ 2>/dev/null)
if [ -n "$hooks" ]; then
    for d in /dev /proc /sys /run; do mount --bind "$d" "/sysroot$d"; done
    for h in $hooks; do
        [ -x "/sysroot/usr/lib/immucore/initramfs.d/$h" ] || continue
        IMMUCORE_STAGE=initramfs IMMUCORE_STATE=active \
            chroot /sysroot "/usr/lib/immucore/initramfs.d/$h" || say "hook $h failed"
    done
    for d in /run /sys /proc /dev; do umount "/sysroot$d"; done
fi

mkdir -p /run/cos
echo 1 > /run/cos/active_mode
printf '%s' "$FSTAB" > /sysroot/etc/fstab.tmp && mv /sysroot/etc/fstab.tmp /sysroot/etc/fstab

# peak memory of this shell (PID 1) only: the busybox applets it ran were processes of their own
while read -r k v; do [ "$k" = VmHWM: ] && echo "REPORT: shell-vmhwm $v"; done < /proc/$$/status
for d in /dev /proc /sys /run; do mount --move "$d" "/sysroot$d"; done
exec switch_root /sysroot /sbin/init
