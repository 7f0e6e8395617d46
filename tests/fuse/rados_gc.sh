#!/usr/bin/env bash
# gc and ingest at once, with chunks in Ceph RADOS (tests/ceph.sh), interleaved by the test hooks
# of the test build (make fault):
#
#   - gc marks while an ingest has stored and pinned its chunks but not committed its point
#     (VMBAK_TEST_PAUSE_GC_MARK, VMBAK_TEST_PAUSE_INGEST_COMMIT): the pool lists the new objects,
#     no point refers to them, and gc keeps every one (pinned); the point then commits and reads
#     back whole;
#   - gc deletes chunks between an ingest's look-up and its batch (VMBAK_TEST_PAUSE_INGEST_BATCH):
#     the batch's pins find them gone, the ingest stores them again, the point reads back.
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/ceph.sh"

need_root
need_fuse
need_cmd python3 cmp
need_programs
use_test_build
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP

ceph_start
expect_status 0 "$VMBAK" init v --encryption none --chunk-size 16384 --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF"
expect_status 0 "$VMBAK" info v --json
ns=$(json_value 'd["uuid"]')

# wait_file PATH: until PATH exists (20 s at most).
wait_file() {
	local i
	for ((i = 0; i < 1000; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.02
	done
	fail "'$1' did not appear"
}

note "gc marks while an ingest's chunks are stored and pinned, its point not committed"
head -c $((512 * 1024)) /dev/urandom >a.img
VMBAK_TEST_PAUSE_GC_MARK=$T/mark timeout -k 5 120 "$VMBAK" gc v --json >gc.out 2>&1 &
gpid=$!
at_exit "kill $gpid 2>/dev/null || true"
wait_file mark.reached
VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/commit timeout -k 5 120 "$VMBAK" ingest v a --disk sda=a.img \
	>a.out 2>&1 &
ipid=$!
at_exit "kill $ipid 2>/dev/null || true"
wait_file commit.reached
[ "$(ceph_rados "$ns" ls | wc -l)" -eq 32 ] || fail "the pool does not hold the ingest's 32 chunks"
touch mark
wait "$gpid" || { cat gc.out >&2; fail "gc failed"; }
cp gc.out "$OUT"
note "gc: $(tr -d ' \n' <gc.out)"
[ "$(json_value "d['chunks']")" = 32 ] || fail "gc did not list the 32 stored chunks"
[ "$(json_value "d['pinned']")" = 32 ] || fail "gc did not keep the 32 pinned chunks"
[ "$(json_value "d['freed']")" = 0 ] || fail "gc freed chunks of an ingest in progress"
[ "$(ceph_rados "$ns" ls | wc -l)" -eq 32 ] || fail "objects of the ingest in progress are gone"
touch commit
wait "$ipid" || { cat a.out >&2; fail "the ingest failed"; }
expect_status 0 "$VMBAK" verify v
expect_stdout ': whole$'
vmount v mnt
cmp a.img mnt/a/latest/sda.img || fail "the point differs from its disk"
vumount mnt

note "gc deletes chunks between an ingest's look-up and its batch"
expect_status 0 "$VMBAK" list v a --json
id=$(json_value 'd[0]["id"]')
expect_status 0 "$VMBAK" delete v "a/$id" --force
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/batch timeout -k 5 120 "$VMBAK" ingest v b --disk sda=a.img \
	>b.out 2>&1 &
bpid=$!
at_exit "kill $bpid 2>/dev/null || true"
wait_file batch.reached
expect_status 0 "$VMBAK" gc v --json
[ "$(json_value "d['freed']")" = 32 ] || fail "gc did not free the 32 unpinned chunks"
[ "$(ceph_rados "$ns" ls | wc -l)" -eq 0 ] || fail "objects are left after gc"
touch batch
wait "$bpid" || { cat b.out >&2; fail "ingest b failed"; }
grep -q '32 new chunks' b.out || { cat b.out >&2; fail "ingest b did not store the chunks again"; }
[ "$(ceph_rados "$ns" ls | wc -l)" -eq 32 ] || fail "the pool does not hold ingest b's chunks"
vmount v mnt
cmp a.img mnt/b/latest/sda.img || fail "point of b differs"
vumount mnt
expect_status 0 "$VMBAK" verify v
expect_status 0 "$VMBAK" gc v --json
[ "$(json_value "d['freed']")" = 0 ] || fail "gc freed chunks of point b"
