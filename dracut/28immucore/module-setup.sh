#!/bin/bash
# dracut module "immucore": the systemd initrd unit that runs the static immucore binary, which
# mounts the Kairos/cOS immutable root on /sysroot.  See dracut/README.md.
#
# immucore probes superblocks and sets up loop devices itself: this module installs no blkid,
# losetup, rsync, shell or other tool for it.  Only the generator is a /bin/sh script, and every
# dracut initramfs already holds /bin/sh (module base).

# The binary to install: /usr/bin/immucore of the host (or of --sysroot), or $IMMUCORE_BIN.
immucore_src() {
    echo "${IMMUCORE_BIN:-${dracutsysrootdir-}/usr/bin/immucore}"
}

# called by dracut: only when asked for (add_dracutmodules+=" immucore "), and only if the
# binary is there
check() {
    if [[ ! -x $(immucore_src) ]]; then
        derror "immucore: $(immucore_src) is missing or not executable"
        return 1
    fi
    return 255
}

# called by dracut
depends() {
    # systemd-initrd: initrd.target, initrd-fs.target, sysroot.mount handling;
    # systemd-udevd + udev-rules: /dev/disk/by-label links (also for immucore's loop device);
    # rootfs-block: dracut-cmdline accepts root=LABEL=...
    echo systemd-initrd systemd-udevd udev-rules rootfs-block
    return 0
}

# called by dracut
installkernel() {
    # loop + overlay are loaded by systemd-modules-load (see install); ext4 and squashfs are
    # loaded on demand by mount(2) through modprobe
    hostonly='' instmods overlay loop squashfs ext4
}

# called by dracut
install() {
    inst_simple "$(immucore_src)" /usr/bin/immucore
    inst_simple "$moddir/immucore.service" "$systemdsystemunitdir/immucore.service"
    inst_script "$moddir/immucore-generator.sh" "$systemdutildir/system-generators/immucore-generator"
    # initrd.target requires the unit: its failure fails initrd.target (and so emergency.target)
    mkdir -p "$initdir$systemdsystemunitdir/initrd.target.requires"
    ln_r "$systemdsystemunitdir/immucore.service" \
        "$systemdsystemunitdir/initrd.target.requires/immucore.service"
    # systemd-modules-load loads loop and overlay before immucore starts (no /dev/loop-control
    # without the loop module)
    mkdir -p "$initdir/usr/lib/modules-load.d"
    printf '%s\n' loop overlay > "$initdir/usr/lib/modules-load.d/immucore.conf"
    # mount points immucore uses in the initramfs
    inst_dir /sysroot
    inst_dir /run
}
