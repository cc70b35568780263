#!/bin/sh
# Print "DRACUT-TEST: <unit> <Property>=<value>" lines for the units the dracut test checks.
for u in immucore.service sysroot.mount initrd-root-fs.target initrd-fs.target; do
    systemctl show -p ActiveState -p Result -p ExecMainStatus -p ExecMainStartTimestampMonotonic \
        -p ExecMainExitTimestampMonotonic -p ActiveEnterTimestampMonotonic "$u" 2>&1 |
        while IFS= read -r l; do echo "DRACUT-TEST: $u $l"; done
done
systemctl show -p InitRDTimestampMonotonic -p UserspaceTimestampMonotonic 2>&1 |
    while IFS= read -r l; do echo "DRACUT-TEST: manager $l"; done
n=0
while read -r _src mp _rest; do [ "$mp" = /sysroot ] && n=$((n + 1)); done < /proc/self/mounts
echo "DRACUT-TEST: sysroot-stack $n"
echo "DRACUT-TEST: report-done"
