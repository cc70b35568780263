#!/bin/bash
# fuzz/seeds.sh [OUT_DIR] — makes the binary seeds of the `probe` target: the interesting part
# (at most 64 KiB) of small filesystem images and partition tables built with the real tools.
# Nothing binary is checked in; fuzz/run calls this when OUT_DIR (default
# fuzz/target/seeds/probe) is missing. Tools that are not installed are skipped with a note.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-target/seeds/probe}
mkdir -p "$out"
work=$(mktemp -d /tmp/immucore-seeds.XXXXXX)
trap 'rm -rf "$work"' EXIT

have() { command -v "$1" >/dev/null 2>&1 || { echo "seeds.sh: $1 not installed, skipping" >&2; return 1; }; }
# cut NAME IMAGE [SKIP_KIB]: 64 KiB of IMAGE starting SKIP_KIB KiB in (the probe target also
# reads every input as if it started at 32 KiB and at 64 KiB).
cut() { dd if="$2" of="$out/$1" bs=1024 skip="${3:-0}" count=64 status=none; }
img() { rm -f "$work/img"; truncate -s "$1" "$work/img"; }

if have mkfs.ext4; then
    img 8M; mkfs.ext4 -q -F -L COS_STATE -U 11111111-2222-3333-4444-555555555555 "$work/img"; cut ext4 "$work/img"
    img 8M; mkfs.ext2 -q -F -L "my label" "$work/img"; cut ext2 "$work/img"
    img 8M; mkfs.ext4 -q -F -O ^has_journal,^extent,^64bit,^flex_bg,^huge_file,^dir_nlink,^extra_isize,^metadata_csum -j -L COS_OEM "$work/img"; cut ext3 "$work/img"
fi
if have mkfs.vfat; then
    img 64M; mkfs.vfat -F 32 -s 1 -n COS_GRUB -i 1234ABCD "$work/img" >/dev/null; cut vfat32 "$work/img"
    img 16M; mkfs.vfat -F 16 -n EFI "$work/img" >/dev/null; cut vfat16 "$work/img"
    img 1M; mkfs.vfat -F 12 "$work/img" >/dev/null; cut vfat12-nolabel "$work/img"
fi
if have xorriso; then
    mkdir -p "$work/iso/boot"; echo hi >"$work/iso/boot/x"
    xorriso -as mkisofs -quiet -V COS_LIVE -o "$work/live.iso" "$work/iso" 2>/dev/null
    cut iso "$work/live.iso"          # system area and the first descriptors
    cut iso-at32k "$work/live.iso" 32 # descriptors at the start: read at the 32 KiB shift
fi
if have mkfs.xfs; then
    img 300M; mkfs.xfs -q -f -L COS_PERSIST "$work/img"; cut xfs "$work/img"
fi
if have mkfs.btrfs; then
    img 120M; mkfs.btrfs -q -f -L COS_PERSISTENT "$work/img" >/dev/null; cut btrfs-at64k "$work/img" 64
fi
if have mksquashfs; then
    rm -f "$work/sq"; mksquashfs "$work/iso" "$work/sq" -quiet -no-progress >/dev/null; cut squashfs "$work/sq"
fi
if have mkfs.erofs; then
    mkfs.erofs -q -L COS_EROFS "$work/erofs" "$work/iso" >/dev/null 2>&1 || mkfs.erofs "$work/erofs" "$work/iso" >/dev/null
    cut erofs "$work/erofs"
fi
if have sgdisk; then
    for ss in 512 4096; do
        img 16M
        if [ "$ss" = 512 ]; then
            sgdisk -q -n1:0:+4M -c1:COS_GRUB -n2:0:+4M -c2:"cos state" -n3:0:0 -c3:COS_OEM "$work/img" >/dev/null
        else
            # sgdisk takes the sector size from the device; a 4 KiB-sector table is written by
            # hand from the 512-byte one: same entries, header at 4096, entries from LBA 2.
            python3 - "$work/img" <<'PY' || continue
import struct, sys, zlib
p = sys.argv[1]
entries = []
for i in range(3):
    guid = bytes([0x10 + i] * 16)
    name = ["COS_GRUB", "cos state", "COS_OEM"][i].encode("utf-16-le")
    entries.append(bytes([0xAF, 0x3D, 0xC6, 0x0F] + [0x83] * 12) + guid + struct.pack("<QQQ", 6 + i * 256, 5 + (i + 1) * 256, 0) + name.ljust(72, b"\0"))
arr = b"".join(entries).ljust(128 * 128, b"\0")
hdr = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1, 4095, 6, 4090, b"\x22" * 16, 2, 128, 128, zlib.crc32(arr)))
hdr[16:20] = struct.pack("<I", zlib.crc32(bytes(hdr)))
mbr = bytearray(512)
mbr[446:462] = bytes([0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF]) + struct.pack("<II", 1, 4095)
mbr[510:512] = b"\x55\xaa"
with open(p, "r+b") as f:
    f.write(mbr); f.seek(4096); f.write(bytes(hdr).ljust(4096, b"\0")); f.seek(8192); f.write(arr)
PY
        fi
        cut "gpt$ss" "$work/img"
    done
fi
ls "$out" | wc -l | xargs echo "seeds.sh: probe seeds in $out:"
