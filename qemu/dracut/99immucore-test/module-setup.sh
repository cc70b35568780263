#!/bin/bash
# Test-only dracut module (qemu/dracut): a unit ordered after initrd-fs.target that prints, on the
# console, what systemd recorded about immucore.service, sysroot.mount and the initrd targets
# (monotonic timestamps, results) and how many filesystems are stacked on /sysroot.  The test
# reads these "DRACUT-TEST:" lines from the serial log.  Never part of a real initramfs.
check() { return 255; }
depends() { echo immucore; }
install() {
    inst_multiple systemctl
    inst_script "$moddir/immucore-test-report.sh" /usr/bin/immucore-test-report
    inst_simple "$moddir/immucore-test-report.service" "$systemdsystemunitdir/immucore-test-report.service"
    mkdir -p "$initdir$systemdsystemunitdir/initrd.target.wants"
    ln_r "$systemdsystemunitdir/immucore-test-report.service" \
        "$systemdsystemunitdir/initrd.target.wants/immucore-test-report.service"
}
