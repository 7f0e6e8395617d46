#!/usr/bin/env bash
# tests/fuse/fulldisk.sh: a vault on a small tmpfs that fills up in the middle of an ingest.
#
# A 40 MiB tmpfs holds the vault and a 6 MiB filler file. Two points of a 4 MiB disk go in;
# an ingest of 48 MiB of random data (committing its first batches of chunks) then fails: exit status 1, one line on stderr saying the
# device is full. The points committed before read back exactly through a mount, list works,
# and the failed ingest is a failed job. After the filler is removed, an ingest and a gc work
# again, the ingest reuses the space gc freed (data.mdb does not grow; info shows the free
# space), and everything still reads back exactly.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
S=$T/small
V=$S/vault
M=$T/mnt
cd "$T"
mkdir -p "$S"
mount -t tmpfs -o size=40m tmpfs "$S" || skip "cannot mount a tmpfs"
echo "kmount $S" >>"$_lib_state"

expect_status 0 "$VMBAK" init "$V" --encryption none
head -c 6M /dev/zero | tr '\0' 'x' >"$S/filler"
head -c 4M /dev/urandom >a.img
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=a.img
id1=$(tail -n 1 "$OUT")
cp a.img a1.img
dd if=/dev/urandom of=a.img bs=64K count=4 seek=10 conv=notrunc status=none
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=a.img
id2=$(tail -n 1 "$OUT")

head -c 48M /dev/urandom >big.img
expect_status 1 "$VMBAK" ingest "$V" vm2 --disk sda=big.img
note "full: $(cat "$ERR")"
expect_stderr 'no space left on device|is full'
df -h "$S" | tail -n 1

expect_status 0 "$VMBAK" list "$V" --json
[ "$(json_value "' '.join(p['id'] for p in d)")" = "$id1 $id2" ] || fail "list after the failure"
vmount "$V" "$M"
cmp "$M/vm1/$id1/sda.img" a1.img || fail "point 1 differs after the disk filled up"
cmp "$M/vm1/$id2/sda.img" a.img || fail "point 2 differs after the disk filled up"
vumount "$M"

# Space freed: ingest works again; gc drops what the failed ingest stored.
rm "$S/filler"
expect_status 0 "$VMBAK" jobs "$V" --json
[ "$(json_value "d[-1]['kind'] + ' ' + d[-1]['state']")" = "ingest failed" ] ||
	fail "the failed ingest is not a failed job: $(json_value "d[-1]")"
expect_status 0 "$VMBAK" gc "$V" --json
note "gc: $(tr -d ' \n' <"$OUT")"
[ "$(json_value "d['freed'] > 0")" = True ] || fail "gc freed nothing of the failed ingest"
[ "$(json_value "d['chunks'] - d['freed'] == d['referenced']")" = True ] || fail "gc left garbage"
expect_status 0 "$VMBAK" info "$V" --json
note "after gc: data.mdb $(json_value "d['file_bytes']") bytes, $(json_value "d['free_bytes']") free"
[ "$(json_value "d['free_bytes'] >= 16 << 20")" = True ] || fail "info does not show the freed space"
size_before=$(stat -c %s "$V/data.mdb")
head -c 8M /dev/urandom >c.img
expect_status 0 "$VMBAK" ingest "$V" vm3 --disk sda=c.img
id3=$(tail -n 1 "$OUT")
# 8 MiB of new chunks fit in the 16 MiB gc freed: the file does not grow.
[ "$(stat -c %s "$V/data.mdb")" -le "$size_before" ] || fail "freed space was not reused"
vmount "$V" "$M"
cmp "$M/vm1/$id1/sda.img" a1.img || fail "point 1 differs"
cmp "$M/vm1/$id2/sda.img" a.img || fail "point 2 differs"
cmp "$M/vm3/$id3/sda.img" c.img || fail "point 3 differs"
vumount "$M"
echo "ok"
