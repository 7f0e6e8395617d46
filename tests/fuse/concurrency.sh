#!/usr/bin/env bash
# tests/fuse/concurrency.sh: a reader compares every point through a live mount while ingests,
# prune and gc run.
#
# A writer in the background runs ROUNDS (default 8) rounds of: change a few chunks, ingest
# (full or --changed), prune --keep-last 3, gc. Meanwhile the reader lists the VM's directory
# in the mount and compares every point it finds with its source. A wrong byte always fails;
# an I/O error is accepted only for a point that prune has deleted meanwhile. Points ingested
# while mounted must appear without a remount.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse

ROUNDS=${ROUNDS:-8}
plain_vault
SIZE=$((4 * 1024 * 1024))
head -c "$SIZE" /dev/urandom >disk.img
: >map # "id source" per committed point
for i in 1 2; do
	cp disk.img "src$i.img"
	expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk.img
	echo "$(tail -n 1 "$OUT") src$i.img" >>map
	dd if=/dev/urandom of=disk.img bs=16384 count=2 seek=$((RANDOM % 200)) conv=notrunc \
		status=none
done
vmount "$V" "$M"

writer() {
	local r k off id
	for ((r = 3; r < ROUNDS + 3; r++)); do
		: >changed.txt
		scribble disk.img 3 changed.txt
		cp disk.img "src$r.img"
		if [ $((r % 2)) -eq 0 ]; then
			id=$("$VMBAK" ingest "$V" vm1 --disk sda=disk.img --changed sda=changed.txt |
				tail -n 1)
		else
			id=$("$VMBAK" ingest "$V" vm1 --disk sda=disk.img | tail -n 1)
		fi
		echo "$id src$r.img" >>map
		"$VMBAK" prune "$V" vm1 --keep-last 3 >/dev/null
		"$VMBAK" gc "$V" >/dev/null
	done
	touch writer.done
}
writer >writer.log 2>&1 &
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"

checked=0
vanished=0
declare -A seen
while [ ! -e writer.done ]; do
	kill -0 "$wpid" 2>/dev/null || break
	for d in "$M"/vm1/*Z*; do
		[ -d "$d" ] || continue
		id=${d##*/}
		src=$(awk -v id="$id" '$1 == id { print $2 }' map)
		[ -n "$src" ] || continue # committed, but the writer has not noted it yet
		seen[$id]=1
		if cmp "$d/sda.img" "$src" >cmp.out 2>&1; then
			checked=$((checked + 1))
		elif grep -q differ cmp.out; then
			cat cmp.out
			fail "wrong bytes in point $id"
		elif "$VMBAK" list "$V" vm1 | grep -q -- " $id "; then
			cat cmp.out
			fail "a read of live point $id failed"
		else
			vanished=$((vanished + 1))
		fi
	done
done
wait "$wpid" || { cat writer.log; fail "the writer failed"; }
[ -e writer.done ] || { cat writer.log; fail "the writer stopped early"; }
note "reader: $checked points compared, $vanished reads cut by a prune, ${#seen[@]} points seen"
[ "$checked" -ge 1 ] || fail "the reader compared nothing"
[ "${#seen[@]}" -ge 4 ] || fail "new points did not appear in the mount"
# Afterwards: the three points left read back exactly.
n=0
for d in "$M"/vm1/*Z*; do
	id=${d##*/}
	cmp "$d/sda.img" "$(awk -v id="$id" '$1 == id { print $2 }' map)" || fail "point $id differs"
	n=$((n + 1))
done
[ "$n" -eq 3 ] || fail "$n points left, expected 3"
echo "ok"
