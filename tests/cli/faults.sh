#!/usr/bin/env bash
# tests/cli/faults.sh: fault injection (issue 4). Runs each operation with the Nth allocation,
# write, fsync, LMDB put/del or LMDB commit failing, N walking over every such call.
#
# Uses the programs of `make fault` (tests/fault/fault.c; $B-fault/vmbak next to $VMBAK), which
# count their calls (VMBAK_FAULT_COUNT) and fail the one VMBAK_FAULT=KIND:N names. For each
# operation (init, ingest, ingest --changed, delete, prune, gc, protect, verify, list) and each
# kind, a clean run counts the calls C; then for N in 1..C (at most FAULT_MAX values, default
# 12, 5 under the sanitizers: 1, C and others picked with a fixed seed) the operation runs on a
# fresh copy of a reference vault with call N failing. Each run must end without a crash: either
# it succeeds (the failure was handled; stderr empty or one "vmbak: warning: ..." line) or it
# exits with status 1 and exactly one line "vmbak: ..." on stderr. Afterwards the vault must be
# intact: no job shows as running and, after a failure, none of the new jobs as completed;
# `vmbak verify` (the normal build) passes; `vmbak list --json` shows exactly the points before
# or after the operation; a further ingest works. A failed init leaves no vault behind, or one
# that works. Also, with a smaller sample (FAULT_MAX_ENC, default 3, 2 under the sanitizers):
# ingest with LMDB's MDB_MAP_FULL from a put (the map grows), and an encrypted vault's init and
# ingest. Prints the counts per operation and kind, and the faults that did not fail their
# operation. Skips when $B-fault is not built, except under CI=true.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE VMBAK_FAULT VMBAK_FAULT_COUNT

FVMBAK=${VMBAK_FAULT_BIN:-$(dirname "$VMBAK")-fault/vmbak}
if [ ! -x "$FVMBAK" ]; then
	[ "${CI:-}" = true ] && fail "'$FVMBAK' is not built (make fault)"
	skip "'$FVMBAK' is not built (make fault)"
fi
# The reference and check ingests set their times (VMBAK_TEST_NOW): a hook of the test build.
VMBAK=$FVMBAK
# Fewer under the sanitizers, where every run is slower.
if [ -n "${ASAN_OPTIONS:-}${UBSAN_OPTIONS:-}" ]; then
	MAX=${FAULT_MAX:-5}
	MAX_ENC=${FAULT_MAX_ENC:-2}
else
	MAX=${FAULT_MAX:-12}
	MAX_ENC=${FAULT_MAX_ENC:-3}
fi
KINDS=(alloc write fsync mdb_put commit)

T=$TESTTMP
cd "$T"

# Disk images: 18 MiB of compressible data, every 64 KiB chunk distinct, so that an ingest at
# chunk size 64K makes two batches (16 MiB each); disk2 changes one chunk in every 4 MiB.
python3 - <<'EOF'
import struct
cs = 65536
with open("disk1.img", "wb") as f:
    for i in range(18 * 16):
        f.write((struct.pack("<Q", i) + b"vmbak fault test " * 8)[:128] * (cs // 128))
with open("disk2.img", "wb") as f:
    f.write(open("disk1.img", "rb").read())
with open("disk2.img", "r+b") as f, open("changed.txt", "w") as c:
    for i in range(0, 18 * 16, 64):
        f.seek(i * cs + 100)
        f.write(b"changed %d" % i)
        c.write("%d %d\n" % (i * cs, cs))
EOF
head -c 262144 /dev/urandom >small.img

# Times of the points (VMBAK_TEST_NOW): the reference's, the operation's, the check ingest's.
T0=1772359200
ref_vault() { # ref_vault DIR ENCRYPTION: vm1 with points at T0+1h..T0+4h, the first deleted.
	local v=$1 i
	"$VMBAK" init "$v" --encryption "$2" --chunk-size 64K >/dev/null
	for i in 1 2 3 4; do
		cp disk1.img d.img
		dd if=/dev/urandom of=d.img bs=65536 count=1 seek=$((i * 3)) conv=notrunc status=none
		VMBAK_TEST_NOW=$((T0 + i * 3600)) "$VMBAK" ingest "$v" vm1 --disk sda=d.img \
			--disk sdb=small.img >/dev/null
	done
	"$VMBAK" delete "$v" vm1/2026-03-01T11:00:00Z >/dev/null
}
export VMBAK_PASSPHRASE=fault-test-passphrase
ref_vault ref none
ref_vault refenc aes-256-gcm
unset VMBAK_PASSPHRASE
P3=vm1/2026-03-01T13:00:00Z

# The operations, as argument lists after the program; @V stands for the vault.
declare -A OPS=(
	[init]="init @V --encryption none --chunk-size 64K"
	[ingest]="ingest @V vm1 --disk sda=disk2.img --disk sdb=small.img --threads 2"
	[changed]="ingest @V vm1 --disk sda=disk2.img --disk sdb=small.img --threads 2
		--changed sda=changed.txt --changed sdb=empty.txt"
	[delete]="delete @V $P3"
	[prune]="prune @V vm1 --keep-last 2"
	[gc]="gc @V"
	[protect]="protect @V $P3"
	[verify]="verify @V"
	[list]="list @V --json"
)
: >empty.txt
ORDER=(init ingest changed delete prune gc protect verify list)

# run_op PROG OP VAULT: runs operation OP on VAULT with PROG, stdout/stderr in $OUT/$ERR.
run_op() {
	local prog=$1 op=$2 v=$3 a args=()
	for a in ${OPS[$op]}; do
		[ "$a" = @V ] && a=$v
		args+=("$a")
	done
	VMBAK_TEST_NOW=$((T0 + 10 * 3600)) "$prog" "${args[@]}" >"$OUT" 2>"$ERR"
}

# fresh REF OP: a fresh copy of the vault REF for OP, in w/ (init: none); prints its path.
fresh() {
	rm -rf w
	mkdir w
	if [ "$2" = init ]; then
		echo w/v
	else
		cp -a "$1" w/v
		echo w/v
	fi
}

# The N values to try out of 1..C, at most M of them: all, or 1, C and a fixed-seed sample.
pick() {
	local c=$1 m=$2
	if [ "$c" -le "$m" ]; then
		seq 1 "$c"
	else
		python3 -c "import random,sys; c,m=int(sys.argv[1]),int(sys.argv[2]); r=random.Random(4)
s={1,c}|set(r.sample(range(2,c),m-2)); print('\n'.join(map(str,sorted(s))))" "$c" "$m"
	fi
}

runs=0 failures=0 handled=0
report=()

# check_vault V BEFORE AFTER WHAT ST: V is intact and lists as BEFORE or AFTER; its job history
# shows no job running, and after a failure (ST != 0) none of the new jobs as completed; a
# further ingest works.
check_vault() {
	local v=$1 before=$2 after=$3 what=$4 failed=$5 st=0
	"$VMBAK" jobs "$v" --json >jobs.json 2>&1 || { cat jobs.json; fail "$what: jobs failed"; }
	awk -v failed="$failed" -v first="$JOBS0" '
		/"id":/ { gsub(/[^0-9]/, ""); id = $0 + 0 }
		/"state":/ {
			if ($0 ~ /"running"/ || (failed && id > first && $0 ~ /"completed"/)) {
				print "job " id ": " $0; bad = 1
			}
		}
		END { exit bad }' jobs.json || fail "$what: wrong job history"
	"$VMBAK" verify "$v" >verify.out 2>&1 || st=$?
	[ "$st" -eq 0 ] || { cat verify.out; fail "$what: verify exited with $st afterwards"; }
	"$VMBAK" list "$v" --json >list.json 2>&1 || { cat list.json; fail "$what: list failed"; }
	if ! cmp -s list.json "$before" && ! cmp -s list.json "$after"; then
		diff -u "$before" list.json | head -40 || true
		fail "$what: list --json is neither the state before nor after the operation"
	fi
	VMBAK_TEST_NOW=$((T0 + 20 * 3600)) "$VMBAK" ingest "$v" vm1 --disk sdb=small.img \
		>ingest.out 2>&1 || { cat ingest.out; fail "$what: next ingest failed"; }
}

# campaign REF OP MAX: every kind for OP on copies of REF.
campaign() {
	local ref=$1 op=$2 m=$3 kind c n st v before after
	before=$T/before.$op.json after=$T/after.$op.json
	local nruns nfail t1=$SECONDS
	# The state before, and the clean run: its counts and the state after.
	if [ "$op" = init ]; then
		echo "[]" >"$before"
		JOBS0=0
	else
		"$VMBAK" list "$ref" --json >"$before"
		JOBS0=$("$VMBAK" jobs "$ref" --json | python3 -c \
			'import json,sys; print(max([j["id"] for j in json.load(sys.stdin)] or [0]))')
	fi
	v=$(fresh "$ref" "$op")
	st=0
	VMBAK_FAULT_COUNT=$T/counts run_op "$FVMBAK" "$op" "$v" || st=$?
	[ "$st" -eq 0 ] || { cat "$ERR"; fail "$op: the clean run exited with $st"; }
	"$VMBAK" list "$v" --json >"$after"
	for kind in "${KINDS[@]}"; do
		c=$(awk -v k="$kind" '$1 == k { print $2 }' "$T/counts")
		nruns=0 nfail=0
		for n in $(pick "${c:-0}" "$m"); do
			v=$(fresh "$ref" "$op")
			st=0
			VMBAK_FAULT=$kind:$n$CODE run_op "$FVMBAK" "$op" "$v" || st=$?
			runs=$((runs + 1)) nruns=$((nruns + 1))
			what="$op with $kind:$n of $c failing"
			if [ "$st" -ge 124 ] || grep -Eq 'Sanitizer|runtime error|core dumped' "$ERR"; then
				cat "$ERR"
				fail "$what: crashed (exit status $st)"
			fi
			if [ "$st" -ne 0 ]; then
				failures=$((failures + 1)) nfail=$((nfail + 1))
				if [ "$st" -ne 1 ] || [ "$(wc -l <"$ERR")" -ne 1 ] ||
					! grep -q '^vmbak: ' "$ERR"; then
					echo "--- stderr:"
					cat "$ERR"
					fail "$what: exit status $st, expected 1 and one line 'vmbak: ...'"
				fi
			else
				# Handled: silently, or with one warning line.
				if [ -s "$ERR" ] && { [ "$(wc -l <"$ERR")" -ne 1 ] ||
					! grep -q '^vmbak: warning: ' "$ERR"; }; then
					echo "--- stderr:"
					cat "$ERR"
					fail "$what: succeeded, but stderr is not one 'vmbak: warning: ...' line"
				fi
				handled=$((handled + 1))
				echo "$what$CODE: succeeded${ERR:+ $(head -c 100 "$ERR")}" >>handled.txt
			fi
			if [ "$op" = init ] && [ "$st" -ne 0 ]; then
				# A failed init leaves no vault, or one that works.
				if [ -e "$v" ]; then
					"$VMBAK" verify "$v" >verify.out 2>&1 ||
						{ cat verify.out; fail "$what: left '$v' behind, not a vault"; }
				fi
				rm -rf "$v"
				run_op "$VMBAK" init "$v" || fail "$what: init again does not work"
			fi
			check_vault "$v" "$before" "$after" "$what" "$st"
		done
		report+=("$(printf '%-8s %-8s calls %5s  runs %3d  failed %3d%s%s' "$op" "$kind" \
			"${c:-0}" "$nruns" "$nfail" "${VMBAK_PASSPHRASE:+  (encrypted)}" \
			"${CODE:+  (code ${CODE#:})}")")
	done
	note "$op${VMBAK_PASSPHRASE:+ (encrypted)}: $((SECONDS - t1)) s"
}

t0=$SECONDS
: >handled.txt
CODE=
for op in "${ORDER[@]}"; do
	campaign ref "$op" "$MAX"
done
# LMDB's MDB_MAP_FULL from a put: the vault grows its map and tries again.
KINDS=(mdb_put)
CODE=:-30792
campaign ref ingest "$MAX_ENC"
KINDS=(alloc write fsync mdb_put commit)
CODE=
export VMBAK_PASSPHRASE=fault-test-passphrase
OPS[init]="init @V --chunk-size 64K"
for op in init ingest; do
	campaign refenc "$op" "$MAX_ENC"
done
printf '%s\n' "${report[@]}"
note "faults that did not fail the operation:"
sed 's/^/#   /' handled.txt
note "$runs runs with one fault injected: $failures failed cleanly, $handled succeeded" \
	"(fault handled), every vault intact ($((SECONDS - t0)) s)"
