#!/bin/bash
# fuzz/seeds-decode.sh [OUT_DIR] — makes the seeds of the decoder targets (gzip, zstd, sha256)
# under OUT_DIR (default fuzz/target/seeds): streams made by the real gzip and zstd tools from
# a small real tar (some of /etc and this repository), single and multi-member or multi-frame,
# with skippable frames as zstd:chunked writes them. The first byte of each seed is the
# target's mode: 0x80 and up "decode this stream", below 0x80 "compress this text first".
# Nothing binary is checked in; fuzz/run calls this when OUT_DIR/gzip is missing. A tool that is
# not installed is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-target/seeds}
mkdir -p "$out/gzip" "$out/zstd" "$out/sha256"
work=$(mktemp -d /tmp/immucore-decode-seeds.XXXXXX)
trap 'rm -rf "$work"' EXIT

have() { command -v "$1" >/dev/null 2>&1 || { echo "seeds-decode.sh: $1 not installed, skipping" >&2; return 1; }; }
# seed TARGET NAME MODE FILE: MODE as the first byte, then FILE.
seed() { { printf "\\x$3"; cat "$4"; } >"$out/$1/$2"; }

tar -cf "$work/small.tar" -C .. Cargo.toml fuzz/run 2>/dev/null
head -c 20000 "$work/small.tar" >"$work/head.tar"
printf 'abcabcabcabcabcabcabc\n' >"$work/text"
for f in small.tar head.tar text; do
    seed gzip "plain-$f" 06 "$work/$f"
    seed zstd "plain-$f" 03 "$work/$f"
    seed sha256 "$f" 3f "$work/$f"
done
if have gzip; then
    gzip -9 -c "$work/head.tar" >"$work/a.gz"
    gzip -1 -n -c "$work/text" >"$work/b.gz"
    : | gzip -c >"$work/empty.gz"
    gzip -N -c "$work/small.tar" >"$work/named.gz"
    cat "$work/b.gz" "$work/empty.gz" "$work/b.gz" >"$work/members.gz"
    for f in a b empty named members; do seed gzip "$f.gz" 80 "$work/$f.gz"; done
fi
if have zstd; then
    zstd -q -19 -c "$work/head.tar" >"$work/a.zst"
    zstd -q -1 --no-check -c "$work/text" >"$work/b.zst"
    zstd -q --long=20 -c "$work/small.tar" >"$work/long.zst"
    # A skippable frame (magic 0x184D2A5E, 4-byte length, content) between two frames.
    { cat "$work/b.zst"; printf '\x5e\x2a\x4d\x18\x04\x00\x00\x00skip'; cat "$work/a.zst"; } >"$work/frames.zst"
    for f in a b long frames; do seed zstd "$f.zst" 80 "$work/$f.zst"; done
fi
