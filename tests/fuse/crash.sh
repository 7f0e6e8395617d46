#!/usr/bin/env bash
# tests/fuse/crash.sh: kill -9 at random moments of ingest, prune, delete and gc.
#
# KILLS rounds (default 40): each starts one operation on the vault (a full or --changed
# ingest of a changed disk, a prune, a delete of the oldest point, a gc), sleeps a random
# moment (within a window that adapts to how long operations take here) and kills it with
# SIGKILL (if it still runs). After every round: list works, no partial point (every listed
# point is one the test knows, its id, and at most the point the killed ingest was writing). Every 10 rounds and at the end every point is compared with its
# source through a live mount; at the end `vmbak verify` (when present) passes, an ingest works
# without repair, gc removes the leftovers (a second gc frees nothing), and the job history
# shows the killed jobs as failed ("process died").
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_cmd python3

KILLS=${KILLS:-40}
plain_vault

declare -A src # point id -> its source image
SIZE=$((4 * 1024 * 1024))
head -c "$SIZE" /dev/urandom >disk.img
attempt=0

# list_ids: the ids of vm1, oldest first.
list_ids() {
	"$VMBAK" list "$V" vm1 >"$T/list.out" || fail "list failed"
	awk 'NR > 1 { print $2 }' "$T/list.out"
}

# new_disk: changes a few random chunks of disk.img, keeps a copy as src$attempt.img and adds
# the changed ranges to changed.txt, which holds every change since the latest committed point
# (an ingest that was killed before its commit took none of its changes).
new_disk() {
	attempt=$((attempt + 1))
	scribble disk.img 4 changed.txt
	cp disk.img "src$attempt.img"
}

# Three points to start with.
for i in 1 2 3; do
	new_disk
	expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk.img
	src[$(tail -n 1 "$OUT")]=src$attempt.img
	: >changed.txt
done

check_all() {
	local id
	vmount "$V" "$M"
	for id in $(list_ids); do
		cmp "$M/vm1/$id/sda.img" "${src[$id]}" || fail "point $id differs from ${src[$id]}"
	done
	vumount "$M"
}

landed=0 window=100
declare -A ops_count
for ((round = 1; round <= KILLS; round++)); do
	ids=($(list_ids))
	op=$((RANDOM % 5))
	case $op in
	0 | 1)
		new_disk
		if [ "$op" -eq 1 ] && [ "${#ids[@]}" -gt 0 ]; then
			cmd=("$VMBAK" ingest "$V" vm1 --disk sda=disk.img --changed sda=changed.txt
				--threads 1)
		else
			cmd=("$VMBAK" ingest "$V" vm1 --disk sda=disk.img --threads 1)
		fi
		name=ingest
		;;
	2)
		cmd=("$VMBAK" prune "$V" vm1 --keep-last 3)
		name=prune
		;;
	3)
		[ "${#ids[@]}" -ge 2 ] || { round=$((round - 1)); continue; }
		cmd=("$VMBAK" delete "$V" "vm1/${ids[0]}")
		name=delete
		;;
	4)
		cmd=("$VMBAK" gc "$V")
		name=gc
		;;
	esac
	"${cmd[@]}" >/dev/null 2>"$T/op.err" &
	pid=$!
	# A random moment in [0, window) ms. The window adapts to the machine's speed: it
	# shrinks after a kill that came too late and grows after one that landed, so about half
	# the kills land mid-operation on a fast idle machine and on a loaded one alike.
	sleep "$(printf '0.%03d' $((RANDOM % window)))"
	if kill -9 "$pid" 2>/dev/null; then
		landed=$((landed + 1))
		ops_count[$name]=$((${ops_count[$name]:-0} + 1))
		window=$((window * 5 / 4 < 999 ? window * 5 / 4 : 999))
	else
		window=$((window / 2 > 2 ? window / 2 : 2))
	fi
	wait "$pid" 2>/dev/null || true
	# No partial point: everything listed is known, except at most one point, the one the
	# killed ingest was committing, which must then be that ingest's source.
	unknown=0
	for id in $(list_ids); do
		if [ -z "${src[$id]:-}" ]; then
			[ "$name" = ingest ] || fail "round $round ($name): unknown point $id"
			unknown=$((unknown + 1))
			src[$id]=src$attempt.img
			: >changed.txt
		fi
	done
	[ "$unknown" -le 1 ] || fail "round $round: $unknown new points from one ingest"
	[ $((round % 10)) -eq 0 ] && check_all
done
note "kills that landed while the operation ran: $landed of $KILLS" \
	"(ingest ${ops_count[ingest]:-0}, prune ${ops_count[prune]:-0}," \
	"delete ${ops_count[delete]:-0}, gc ${ops_count[gc]:-0})"
[ "$landed" -ge $((KILLS / 5)) ] || fail "too few kills landed mid-operation ($landed)"
check_all

# Verify, when the verb exists.
if "$VMBAK" verify --help >/dev/null 2>&1; then
	expect_status 0 "$VMBAK" verify "$V"
fi
# The next ingest works with no repair, and gc cleans up what the killed ones left.
new_disk
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk.img
src[$(tail -n 1 "$OUT")]=src$attempt.img
expect_status 0 "$VMBAK" gc "$V" --json
note "final gc: $(tr -d ' \n' <"$OUT")"
[ "$(json_value "d['pinned']")" = 0 ] || fail "pins of killed ingests survived"
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['freed']")" = 0 ] || fail "a second gc freed more"
[ "$(json_value "d['chunks'] == d['referenced']")" = True ] || fail "unreferenced chunks left"
check_all
expect_status 0 "$VMBAK" jobs "$V" --json
running=$(json_value "sum(1 for j in d if j['state'] == 'running')")
died=$(json_value "sum(1 for j in d if j['error'] == 'process died')")
note "jobs: ${died} shown as failed with 'process died', ${running} running"
[ "$running" -eq 0 ] || fail "killed jobs shown as running"
[ "$died" -ge 1 ] || fail "no killed job shown as 'process died'"
echo "ok"
