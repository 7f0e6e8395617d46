#!/usr/bin/env bash
# tests/cli/lifecycle.sh: protect, unprotect, delete, prune, gc and jobs from the command line.
#
# Points with synthetic creation times (the test-only VMBAK_TEST_NOW), prune's usage errors,
# --dry-run (changes nothing, says why each point is kept), a real prune (protected, retained
# and newest points survive), delete's refusals and --force, gc freeing exactly the chunks of
# the deleted points, and the job history: completed, failed, killed by SIGTERM, and a job whose
# process was killed with SIGKILL shown as failed ("process died").
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
use_test_build
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
V=$T/vault
cd "$T"
expect_status 0 "$VMBAK" init "$V" --encryption none --chunk-size 4096

# Eight points of vm1, one chunk (4 KiB) changed each time, at known times (UTC):
# 2026-03-01 10:00, 03-01 18:00, 03-02 10:00, 03-08 10:00, 03-09 10:00, 04-01 10:00,
# 04-01 11:00, 04-02 10:00.
head -c 65536 /dev/urandom >disk.img
times=(1772359200 1772388000 1772445600 1772964000 1773050400 1775037600 1775041200
	1775124000)
ids=()
for i in "${!times[@]}"; do
	dd if=/dev/urandom of=disk.img bs=4096 count=1 seek="$i" conv=notrunc status=none
	cp disk.img "disk$i.img"
	extra=()
	[ "$i" -eq 1 ] && extra=(--retain-until 2099-01-01)
	VMBAK_TEST_NOW=${times[$i]} expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk.img \
		"${extra[@]}"
	ids+=("$(tail -n 1 "$OUT")")
done
note "points: ${ids[*]}"
[ "${ids[0]}" = 2026-03-01T10:00:00Z ] || fail "VMBAK_TEST_NOW not used: ${ids[0]}"

# Usage errors: one line, status 2.
expect_status 2 "$VMBAK" prune "$V" vm1
expect_stderr 'needs at least one rule'
expect_status 2 "$VMBAK" prune "$V" vm1 --keep-last 0
expect_status 2 "$VMBAK" prune "$V" vm1 --keep-daily x
expect_stderr "invalid count 'x' for --keep-daily"
expect_status 2 "$VMBAK" prune "$V" --keep-last 1
expect_status 2 "$VMBAK" delete "$V" vm1
expect_stderr 'expected VM/RP'
expect_status 2 "$VMBAK" delete "$V" 'bad name/x'
expect_status 2 "$VMBAK" protect "$V"
expect_status 2 "$VMBAK" gc "$V" extra
expect_status 1 "$VMBAK" prune "$V" nosuchvm --keep-last 1
expect_stderr "no VM 'nosuchvm'"
expect_status 1 "$VMBAK" delete "$V" vm1/2000-01-01T00:00:00Z
expect_stderr "no recovery point 'vm1/2000-01-01T00:00:00Z'"

# VM/latest names the newest point; a malformed point is a usage error.
last=${ids[${#ids[@]} - 1]}
expect_status 0 "$VMBAK" protect "$V" vm1/latest
expect_stdout "^protected vm1/$last\$"
expect_status 0 "$VMBAK" unprotect "$V" vm1/latest
expect_stdout "^unprotected vm1/$last\$"
expect_status 2 "$VMBAK" protect "$V" 'vm1/bad id'
expect_stderr "invalid point id 'bad id'"
expect_status 1 "$VMBAK" protect "$V" nosuchvm/latest
expect_stderr "no VM 'nosuchvm'"

# Protection shows in list and list --json and info.
expect_status 0 "$VMBAK" protect "$V" "vm1/${ids[3]}"
expect_status 0 "$VMBAK" list "$V" vm1
grep -E "${ids[3]} .* yes\$" "$OUT" >/dev/null || fail "list does not show the protection"
expect_status 0 "$VMBAK" list "$V" --json
[ "$(json_value "[p['id'] for p in d if p['protected']]")" = "['${ids[3]}']" ] ||
	fail "list --json: protected is wrong"
[ "$(json_value "[p['retain_until'] for p in d][1]")" = 2099-01-01 ] || fail "retain_until missing"
expect_status 0 "$VMBAK" info "$V" "vm1/${ids[3]}"
expect_stdout '^protected: +yes'

# Dry run: keep-daily 2, keep-monthly 2. Days newest first: 04-02 (kept), 04-01 (11:00 kept,
# 10:00 pruned); monthly skips April (covered) and keeps March's newest, 03-09 10:00. Kept
# besides: ids[1] (retain-until), ids[3] (protected).
expect_status 0 "$VMBAK" prune "$V" vm1 --keep-daily 2 --keep-monthly 2 --dry-run
cat "$OUT"
expect_stdout "^prune +vm1/${ids[0]}\$"
expect_stdout "^keep +vm1/${ids[1]} +\(retain-until 2099-01-01\)\$"
expect_stdout "^prune +vm1/${ids[2]}\$"
expect_stdout "^keep +vm1/${ids[3]} +\(protected\)\$"
expect_stdout "^keep +vm1/${ids[4]} +\(keep-monthly\)\$"
expect_stdout "^prune +vm1/${ids[5]}\$"
expect_stdout "^keep +vm1/${ids[6]} +\(keep-daily\)\$"
expect_stdout "^keep +vm1/${ids[7]} +\(keep-daily\)\$"
expect_stdout 'dry run: 3 of 8 points'
expect_status 0 "$VMBAK" list "$V" --json
[ "$(json_value 'len(d)')" = 8 ] || fail "the dry run deleted something"
expect_status 0 "$VMBAK" prune "$V" vm1 --keep-daily 2 --keep-monthly 2 --dry-run --json
[ "$(json_value "sum(1 for p in d if not p['keep'])")" = 3 ] || fail "prune --json: wrong plan"

expect_status 0 "$VMBAK" gc "$V" --json
chunks_before=$(json_value "d['chunks']")
[ "$(json_value "d['freed']")" = 0 ] || fail "gc freed chunks of live points"

# The real prune.
expect_status 0 "$VMBAK" prune "$V" vm1 --keep-daily 2 --keep-monthly 2
expect_stdout 'pruned 3 of 8 points'
expect_status 0 "$VMBAK" list "$V" --json
[ "$(json_value "' '.join(p['id'] for p in d)")" = "${ids[1]} ${ids[3]} ${ids[4]} ${ids[6]} ${ids[7]}" ] ||
	fail "prune kept the wrong points: $(json_value "' '.join(p['id'] for p in d)")"

# gc frees exactly the chunks only the pruned points held. Point i changed chunk i, so every
# pruned point's own chunk is inherited by the next point, except one: ids[0] read chunk 1 as it
# was first written, ids[1] (kept) changed it, and nothing else refers to that old chunk 1.
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['freed']")" = 1 ] || fail "gc freed $(json_value "d['freed']") chunks, expected 1"
[ "$(json_value "d['chunks'] - d['freed']")" = $((chunks_before - 1)) ] || fail "gc counts"
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['freed']")" = 0 ] || fail "a second gc freed more"

# Delete: refusals, then --force.
expect_status 1 "$VMBAK" delete "$V" "vm1/${ids[7]}"
expect_stderr 'is the newest of VM'
expect_status 1 "$VMBAK" delete "$V" "vm1/${ids[3]}" --force
expect_stderr 'is protected; unprotect it first'
expect_status 1 "$VMBAK" delete "$V" "vm1/${ids[1]}"
expect_stderr 'is retained until 2099-01-01'
expect_status 0 "$VMBAK" unprotect "$V" "vm1/${ids[3]}"
expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[3]}"
expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[1]}" --force
expect_stdout "^deleted vm1/${ids[1]}\$"

# A new ingest after deleting the newest point continues from the one before.
expect_status 0 "$VMBAK" delete "$V" "vm1/${ids[7]}" --force
cp "disk6.img" disk.img
dd if=/dev/urandom of=disk.img bs=4096 count=1 seek=15 conv=notrunc status=none
printf '%d %d\n' $((15 * 4096)) 4096 >changed.txt
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk.img --changed sda=changed.txt
expect_status 0 "$VMBAK" info "$V" vm1 --json
[ "$(json_value "d['parent']")" = "${ids[6]}" ] || fail "the new point's parent is not ${ids[6]}"

# Jobs: ingest, prune, delete, gc recorded; refusals failed with their error.
expect_status 0 "$VMBAK" jobs "$V" --json
json_value "'\n'.join('%s %s %s %s' % (j['id'], j['kind'], j['state'], j['error']) for j in d)"
[ "$(json_value "sorted(set(j['kind'] for j in d))")" = "['delete', 'gc', 'ingest', 'prune']" ] ||
	fail "job kinds missing"
[ "$(json_value "[j['state'] for j in d if j['kind'] == 'delete' and 'newest' in (j['error'] or '')]")" = "['failed']" ] ||
	fail "a refused delete is not a failed job"
[ "$(json_value "all(j['state'] == 'completed' for j in d if j['kind'] in ('ingest', 'gc') or j['target'] == 'vm1' and j['kind'] == 'prune')")" = True ] ||
	fail "jobs not completed"
[ "$(json_value "d[0]['bytes_read']")" = 65536 ] || fail "bytes_read of the first ingest"
expect_status 0 "$VMBAK" jobs "$V" --last 2
[ "$(wc -l <"$OUT")" -eq 3 ] || fail "jobs --last 2"

# An ingest stopped by SIGTERM: killed. One killed by SIGKILL: failed, "process died".
for sig in TERM KILL; do
	rm -f "$T/go" "$T/go.reached"
	VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/go "$VMBAK" ingest "$V" vm2 --disk sda=disk.img \
		>/dev/null 2>"$T/sig.err" &
	pid=$!
	for ((i = 0; i < 500; i++)); do
		[ -e "$T/go.reached" ] && break
		sleep 0.02
	done
	[ -e "$T/go.reached" ] || fail "the ingest did not reach its commit"
	expect_status 0 "$VMBAK" jobs "$V" --json
	[ "$(json_value "d[-1]['state']")" = running ] || fail "a live ingest is not running"
	kill -"$sig" "$pid"
	st=0
	wait "$pid" || st=$?
	expect_status 0 "$VMBAK" jobs "$V" --json
	if [ "$sig" = TERM ]; then
		[ "$st" -eq 1 ] || fail "SIGTERM: exit status $st"
		grep -q 'interrupted by SIGTERM' "$T/sig.err" || fail "no message for SIGTERM"
		[ "$(json_value "d[-1]['state']")" = killed ] || fail "SIGTERM: not killed"
	else
		[ "$(json_value "d[-1]['state'] + '/' + d[-1]['error']")" = "failed/process died" ] ||
			fail "SIGKILL: $(json_value "d[-1]")"
	fi
done
expect_status 0 "$VMBAK" list "$V" --json
[ "$(json_value "[p['id'] for p in d if p['vm'] == 'vm2']")" = "[]" ] ||
	fail "an interrupted ingest left a point"
# Their chunks were pinned by dead jobs: gc frees them.
expect_status 0 "$VMBAK" gc "$V" --json
[ "$(json_value "d['pinned']")" = 0 ] || fail "pins of dead ingests kept"
echo "ok"
