#!/usr/bin/env bash
# tests/fuse/lifecycle.sh: delete and gc against a live mount, and gc racing an ingest.
#
# 1. Five points of one disk, each changing a few chunks (full and --changed ingests); with the
#    vault mounted, points are deleted (oldest, middle, newest with --force) and gc runs: every
#    remaining point reads back byte-identical (cmp against its source) through the live mount
#    and after a remount.
# 2. gc while an ingest that reuses chunks of deleted points is held just before its commit
#    (test hook VMBAK_TEST_PAUSE_INGEST_COMMIT): the chunks are pinned, gc keeps them, the new
#    point reads back exactly.
# 3. An ingest that commits between gc's mark and its sweep (hook VMBAK_TEST_PAUSE_GC_SWEEP):
#    the ingest's pins outlive its commit, gc keeps the chunks, the point reads back exactly;
#    the next gc drops the pins and frees nothing referenced. A second gc meanwhile is refused.
# 4. gc frees chunks an ingest found stored but has not pinned yet (hook
#    VMBAK_TEST_PAUSE_INGEST_BATCH): the ingest's batch commit sees them gone and stores them.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
use_test_build
need_root
need_fuse
need_cmd python3

plain_vault

# ---- 1: deletes under a live mount ----
head -c $((1024 * 1024)) /dev/urandom >disk.img
ids=()
for i in 0 1 2 3 4; do
	args=()
	if [ "$i" -gt 0 ]; then
		scribble disk.img 3 "changed$i.txt"
		[ $((i % 2)) -eq 0 ] && args=(--changed "sda=changed$i.txt")
	fi
	cp disk.img "src$i.img"
	expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk.img "${args[@]}"
	ids+=("$(tail -n 1 "$OUT")")
done
vmount "$V" "$M"
check_points() {
	local i
	for i in "$@"; do
		cmp "$M/vm1/${ids[$i]}/sda.img" "src$i.img" || fail "point $i (${ids[$i]}) differs"
	done
}
check_points 0 1 2 3 4
expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[2]}"
check_points 0 1 3 4
expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[0]}"
expect_status 0 "$VMBAK" gc "$V" --json
note "gc after two deletes: $(cat "$OUT" | tr -d ' \n')"
[ "$(json_value "d['freed'] > 0")" = True ] || fail "gc freed nothing after deletes"
check_points 1 3 4
[ -e "$M/vm1/${ids[0]}" ] && fail "a deleted point is still visible"
expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[4]}" --force
expect_status 0 "$VMBAK" gc "$V"
check_points 1 3
[ "$(readlink "$M/vm1/latest")" = "${ids[3]}" ] || fail "latest is not ${ids[3]}"
vumount "$M"
vmount "$V" "$M"
check_points 1 3
vumount "$M"

# ---- 2: gc while an ingest reusing unreferenced chunks waits before its commit ----
head -c $((512 * 1024)) /dev/urandom >x.img
expect_status 0 "$VMBAK" ingest "$V" a --disk sda=x.img
expect_status 0 "$VMBAK" delete "$V" "a/$(tail -n 1 "$OUT")" --force
VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/go "$VMBAK" ingest "$V" b --disk sda=x.img >"$T/b.out" 2>&1 &
pid=$!
for ((i = 0; i < 1000; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.02
done
[ -e "$T/go.reached" ] || fail "ingest b did not reach its commit"
expect_status 0 "$VMBAK" gc "$V" --json
note "gc during ingest b: $(tr -d ' \n' <"$OUT")"
[ "$(json_value "d['pinned']")" = 32 ] || fail "gc did not keep the 32 pinned chunks of ingest b"
[ "$(json_value "d['freed']")" = 0 ] || fail "gc freed chunks an ingest in progress uses"
touch "$T/go"
wait "$pid" || { cat "$T/b.out"; fail "ingest b failed"; }
vmount "$V" "$M"
cmp "$M/b/latest/sda.img" x.img || fail "point of b differs"
vumount "$M"

# ---- 3: an ingest commits between gc's mark and its sweep ----
head -c $((512 * 1024)) /dev/urandom >y.img
expect_status 0 "$VMBAK" ingest "$V" c --disk sda=y.img
expect_status 0 "$VMBAK" delete "$V" "c/$(tail -n 1 "$OUT")" --force
VMBAK_TEST_PAUSE_GC_SWEEP=$T/sweep "$VMBAK" gc "$V" --json >"$T/gc.out" 2>&1 &
pid=$!
for ((i = 0; i < 1000; i++)); do
	[ -e "$T/sweep.reached" ] && break
	sleep 0.02
done
[ -e "$T/sweep.reached" ] || fail "gc did not reach its sweep"
expect_status 1 "$VMBAK" gc "$V"
expect_stderr 'another gc \(job [0-9]+\) is running'
expect_status 0 "$VMBAK" ingest "$V" d --disk sda=y.img
touch "$T/sweep"
wait "$pid" || { cat "$T/gc.out"; fail "gc failed"; }
cp "$T/gc.out" "$OUT"
note "gc around ingest d: $(tr -d ' \n' <"$OUT")"
[ "$(json_value "d['pinned']")" = 32 ] || fail "gc did not keep the 32 chunks of the committed ingest"
[ "$(json_value "d['freed']")" = 0 ] || fail "gc freed chunks of a point committed after its mark"
vmount "$V" "$M"
cmp "$M/d/latest/sda.img" y.img || fail "point of d differs"
vumount "$M"
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['pinned']")" = 0 ] || fail "pins of an ended ingest survived the next gc"
[ "$(json_value "d['freed']")" = 0 ] || fail "the next gc freed referenced chunks"
vmount "$V" "$M"
cmp "$M/d/latest/sda.img" y.img || fail "point of d differs after the next gc"
cmp "$M/b/latest/sda.img" x.img || fail "point of b differs after the next gc"
check_points 1 3
vumount "$M"

# ---- 4: gc deletes a chunk between an ingest's lookup and its batch commit ----
# (hook VMBAK_TEST_PAUSE_INGEST_BATCH): the batch commit finds the chunks gone, looks again
# and stores them itself.
head -c $((512 * 1024)) /dev/urandom >z.img
expect_status 0 "$VMBAK" ingest "$V" e --disk sda=z.img
expect_status 0 "$VMBAK" delete "$V" "e/$(tail -n 1 "$OUT")" --force
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/batch "$VMBAK" ingest "$V" f --disk sda=z.img \
	>"$T/f.out" 2>&1 &
pid=$!
for ((i = 0; i < 1000; i++)); do
	[ -e "$T/batch.reached" ] && break
	sleep 0.02
done
[ -e "$T/batch.reached" ] || fail "ingest f did not reach its batch"
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['freed']")" = 32 ] || fail "gc did not free the 32 unpinned chunks"
touch "$T/batch"
wait "$pid" || { cat "$T/f.out"; fail "ingest f failed"; }
grep -q '32 new chunks' "$T/f.out" || { cat "$T/f.out"; fail "ingest f did not store again"; }
vmount "$V" "$M"
cmp "$M/f/latest/sda.img" z.img || fail "point of f differs"
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['chunks'] == d['referenced']")" = True ] || fail "garbage left after ingest f"
cmp "$M/f/latest/sda.img" z.img || fail "point of f differs after gc"
echo "ok"
