# shellcheck shell=bash disable=SC2034
# qemu/lib.sh — helpers shared by the QEMU boot kit scripts (sourced, not run).
# Arch names everywhere: x86_64, aarch64, armv7 (Debian 12, kernel 6.1), and the Debian 13 (trixie,
# kernel 6.12) targets x86_64-6.12, aarch64-6.12, armv7-6.12 and riscv64 (Debian 12 has no
# riscv64 kernel). Each name has its own cache directory, qemu/cache/<name>.

QEMU_KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$QEMU_KIT/cache
OUT=$QEMU_KIT/out

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { echo "${0##*/}: $*" >&2; }

# arch_vars ARCH: sets DEB_ARCH KFLAVOUR QEMU_BIN QEMU_MACHINE CONSOLE RUST_TRIPLE, and
# SUITE (bookworm or trixie) and KGEN (6.1 or 6.12): the Debian release the kernel comes from
arch_vars() {
    case ${1%-6.12} in
    x86_64)  DEB_ARCH=amd64 KFLAVOUR=amd64 QEMU_BIN=qemu-system-x86_64
             QEMU_MACHINE="-M q35" CONSOLE=ttyS0 RUST_TRIPLE=x86_64-unknown-linux-musl ;;
    aarch64) DEB_ARCH=arm64 KFLAVOUR=arm64 QEMU_BIN=qemu-system-aarch64
             QEMU_MACHINE="-M virt -cpu cortex-a57" CONSOLE=ttyAMA0 RUST_TRIPLE=aarch64-unknown-linux-musl ;;
    armv7)   DEB_ARCH=armhf KFLAVOUR=armmp QEMU_BIN=qemu-system-arm
             QEMU_MACHINE="-M virt,highmem=off -cpu cortex-a15" CONSOLE=ttyAMA0 RUST_TRIPLE=thumbv7neon-unknown-linux-gnueabihf ;;
    riscv64) DEB_ARCH=riscv64 KFLAVOUR=riscv64 QEMU_BIN=qemu-system-riscv64
             QEMU_MACHINE="-M virt -bios default" CONSOLE=ttyS0 RUST_TRIPLE=riscv64gc-unknown-linux-gnu ;;
    *) die "unknown arch '$1' (x86_64, aarch64, armv7, riscv64; x86_64-6.12, aarch64-6.12, armv7-6.12)" ;;
    esac
    SUITE=bookworm KGEN=6.1
    case $1 in
    riscv64|*-6.12) SUITE=trixie KGEN=6.12 ;;
    esac
    [ "$1" != riscv64-6.12 ] || die "riscv64 only has Debian 13's 6.12 kernel: call it riscv64"
    ARCH=$1
    ADIR=$CACHE/$1
}

# kernel_version ARCH: version string of the kernel set up in the cache
kernel_version() {
    [ -s "$CACHE/$1/kver" ] || die "no kernel for $1 in $CACHE/$1: run qemu/setup $1"
    cat "$CACHE/$1/kver"
}

# need_pkgs PKG...: apt-get install whatever of PKG is not installed yet
need_pkgs() {
    local p missing=()
    for p in "$@"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"ok installed" ]] || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 || {
        apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# stamp_ok STAMP INPUT...: true if STAMP holds the checksum of the INPUT files/strings
# stamp_write STAMP INPUT...: record it
_stamp_sum() { local i; for i in "$@"; do if [ -f "$i" ]; then sha256sum "$i"; else echo "$i"; fi; done | sha256sum | cut -d' ' -f1; }
stamp_ok() { local s=$1; shift; [ -f "$s" ] && [ "$(cat "$s")" = "$(_stamp_sum "$@")" ]; }
stamp_write() { local s=$1; shift; _stamp_sum "$@" > "$s"; }


# busybox_install ARCH ROOT: static busybox of ARCH at ROOT/bin/busybox plus applet symlinks
# (applet list from the host's busybox-static, the same Debian build as the target's)
busybox_install() {
    local root=$2 l
    [ -x "$CACHE/$1/busybox" ] || die "no busybox for $1: run qemu/setup $1"
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    cp "$CACHE/$1/busybox" "$root/bin/busybox"
    busybox --list-full | while read -r l; do
        [ -e "$root/$l" ] || [ -L "$root/$l" ] || ln -s /bin/busybox "$root/$l"
    done
}

# cpio_pack DIR OUT: newc cpio of DIR, owned by root, gzip -9, reproducible order and times
cpio_pack() {
    find "$1" -exec touch -h -d @0 {} +
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n > "$2"
}

# initramfs_stage ARCH INIT DIR [--no-modules|--hotplug]: the common initramfs tree: /init, the
# module list and .ko files (--hotplug: with the SCSI modules of late-device boots),
# /dev/console and the empty mount points
initramfs_stage() {
    local arch=$1 init=$2 dir=$3 kver m
    kver=$(kernel_version "$arch")
    rm -rf "$dir"; mkdir -p "$dir"/{proc,sys,dev,run,sysroot,tmp,etc/immucore}
    install -m 0755 "$init" "$dir/init"
    mknod -m 0600 "$dir/dev/console" c 5 1
    [ "${4:-}" = --no-modules ] && return 0
    local list=$CACHE/$arch/modules.list
    [ "${4:-}" = --hotplug ] && list=$CACHE/$arch/modules-hotplug.list
    [ "${4:-}" = --failsafe ] && list=$CACHE/$arch/modules-failsafe.list
    cp "$list" "$dir/etc/immucore/modules"
    while read -r m; do
        install -D -m 0644 "$CACHE/$arch/root/lib/modules/$kver/$m" "$dir/lib/modules/$kver/$m"
    done < "$list"
}

# reports LOG: the REPORT lines of a serial log (SeaBIOS escapes and CRs removed)
reports() { grep -ao 'REPORT: .*' "$1" | tr -d '\r' || true; }

# failsafe_watchdog ARCH: the watchdog driver module of the failure-handling boots (qemu/setup)
# and, in WATCHDOG_DEVICE, the QEMU device it drives (empty: softdog, no device)
failsafe_watchdog() {
    case $1 in
    x86_64|aarch64) WATCHDOG_DEVICE=i6300esb; echo i6300esb ;;
    *) WATCHDOG_DEVICE=; echo softdog ;;
    esac
}
