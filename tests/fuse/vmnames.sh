#!/usr/bin/env bash
# tests/fuse/vmnames.sh: the mount remembers VM names by number (fs/ops.h), and what it shows
# still follows the vault: a VM whose last point is deleted while mounted disappears (its
# directory, a path into it, an open directory handle's listing), and a VM of the same name made
# again shows its new points only; a VM directory reached without listing the root first works.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
V=$T/vault
M=$T/mnt
cd "$T"
expect_status 0 "$VMBAK" init "$V" --encryption none --chunk-size 4K
head -c 65536 /dev/urandom >a.img
head -c 65536 /dev/urandom >b.img
head -c 65536 /dev/urandom >c.img
expect_status 0 "$VMBAK" ingest "$V" vmA --disk d=a.img
ida=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest "$V" vmB --disk d=b.img

vmount "$V" "$M"
# Straight to a path inside a VM, before any listing of the root.
cmp "$M/vmB/latest/d.img" b.img || fail "vmB/latest/d.img differs"
[ "$(ls "$M")" = "$(printf 'vmA\nvmB')" ] || fail "root lists: $(ls "$M")"
cmp "$M/vmA/$ida/d.img" a.img || fail "vmA's point differs"
[ "$(ls "$M/vmA")" = "$(printf '%s\nlatest' "$ida")" ] || fail "vmA lists: $(ls "$M/vmA")"

# vmA loses its only point while mounted: gone, whichever way it is asked for.
expect_status 0 "$VMBAK" delete "$V" "vmA/$ida" --force
[ ! -e "$M/vmA" ] || fail "vmA, with no point left, is still there"
[ ! -e "$M/vmA/latest" ] || fail "vmA/latest is still there"
[ "$(ls "$M")" = vmB ] || fail "root lists: $(ls "$M")"
cmp "$M/vmB/latest/d.img" b.img || fail "vmB/latest/d.img differs after vmA went"

# vmA again, with other data: only its new point shows, and latest reads the new data.
sleep 1
expect_status 0 "$VMBAK" ingest "$V" vmA --disk d=c.img
idc=$(tail -n 1 "$OUT")
[ "$(ls "$M/vmA")" = "$(printf '%s\nlatest' "$idc")" ] || fail "vmA lists: $(ls "$M/vmA")"
cmp "$M/vmA/latest/d.img" c.img || fail "vmA/latest reads other data than its new point"
[ ! -e "$M/vmA/$ida" ] || fail "vmA's deleted point shows again"
vumount "$M"
echo ok
