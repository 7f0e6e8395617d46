#!/usr/bin/env bash
# tests/fuse/delete_lineage.sh: deleting points whose disks come and go.
#
# A delete moves the deleted point's index entries of each disk to the next point of the same
# lineage, and hands a lineage's head back to the point before. Those neighbours are found among
# the VM's points around the deleted one (delete.c): here a VM of 24 points has a disk that is
# there in points 0-7, gone in 8-11 and back (a new lineage) in 12-23, and another that changes
# in every point. Points are deleted in the middle, at either end of a lineage and where the disk
# is absent, then pruned to the newest 6; after each step every remaining point reads back
# byte-identical through a fresh mount and verify passes.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
use_test_build
need_root
need_fuse
need_cmd python3

plain_vault

head -c $((512 * 1024)) /dev/urandom >a.img
head -c $((256 * 1024)) /dev/urandom >b.img
ids=()
has_b() { [ "$1" -le 7 ] || [ "$1" -ge 12 ]; }
for i in $(seq 0 23); do
	scribble a.img 2
	cp a.img "a$i.img"
	args=(--disk sda=a.img)
	if has_b "$i"; then
		# The lineage of sdb starts again at 12: its first point there is a whole new disk.
		[ "$i" -eq 12 ] && head -c $((256 * 1024)) /dev/urandom >b.img
		scribble b.img 1
		cp b.img "b$i.img"
		args+=(--disk sdb=b.img)
	fi
	expect_status 0 "$VMBAK" ingest "$V" vm1 "${args[@]}"
	ids+=("$(tail -n 1 "$OUT")")
done

# check I...: the points with these numbers read back as they were ingested, the others are gone
check() {
	local i want=" $* "
	vmount "$V" "$M"
	for i in $(seq 0 23); do
		if [[ $want != *" $i "* ]]; then
			[ -e "$M/vm1/${ids[$i]}" ] && fail "deleted point $i (${ids[$i]}) is still there"
			continue
		fi
		cmp -s "$M/vm1/${ids[$i]}/sda.img" "a$i.img" || fail "point $i: sda differs"
		if has_b "$i"; then
			cmp -s "$M/vm1/${ids[$i]}/sdb.img" "b$i.img" || fail "point $i: sdb differs"
		elif [ -e "$M/vm1/${ids[$i]}/sdb.img" ]; then
			fail "point $i has an sdb it never had"
		fi
	done
	vumount "$M"
	expect_status 0 "$VMBAK" verify "$V"
}

check $(seq 0 23)
# the middle of a lineage of sdb, the last point of its first lineage, a point without sdb,
# the first point of its second lineage, the first point of all
for i in 4 7 9 12 0; do
	expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[$i]}"
done
check 1 2 3 5 6 8 10 11 $(seq 13 23)
expect_status 0 "$VMBAK" prune "$V" vm1 --keep-last 6
check $(seq 18 23)
expect_status 0 "$VMBAK" gc "$V"
check $(seq 18 23)
