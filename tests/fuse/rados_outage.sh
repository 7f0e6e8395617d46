#!/usr/bin/env bash
# Chunks in Ceph RADOS when the cluster stops answering (tests/ceph.sh; the osd is stopped
# with SIGTERM, as an operator stops it, and started again):
#
#   - during an ingest (paused by the test hook VMBAK_TEST_PAUSE_INGEST_BATCH just before its
#     first chunks are stored): the ingest fails within the client's timeouts with one clear
#     line, no point appears; with the osd back, the next ingest works and verifies whole;
#   - during reads through the mount: a read of a chunk not yet cached fails with EIO within
#     the timeout, the mount stays up and reads right again once the osd is back.
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/ceph.sh"

need_root
need_fuse
need_cmd python3 cmp dd
need_programs
use_test_build
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
CS=65536
CEPH_TIMEOUT=3

ceph_start
expect_status 0 "$VMBAK" init v --encryption none --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF"
head -c 24M /dev/urandom >d.img

note "the osd stops while an ingest stores its chunks"
VMBAK_TEST_PAUSE_INGEST_BATCH=$TESTTMP/go timeout -k 5 120 "$VMBAK" ingest v vm1 --disk d=d.img \
	>ingest.out 2>ingest.err </dev/null &
pid=$!
at_exit "kill $pid 2>/dev/null || true"
for ((i = 0; i < 600; i++)); do
	[ -e go.reached ] && break
	sleep 0.05
done
[ -e go.reached ] || fail "the ingest did not reach its first batch"
ceph_osd_stop
t0=$(date +%s)
touch go
st=0
wait "$pid" || st=$?
t1=$(date +%s)
ceph_osd_start
[ "$st" -ne 0 ] && [ "$st" -lt 124 ] || fail "the ingest exited with $st, not a failure of its own"
[ "$(wc -l <ingest.err)" -eq 1 ] && grep -q '^vmbak: ' ingest.err ||
	{ cat ingest.err >&2; fail "the failed ingest must say why in one line"; }
grep -Eq "ceph|cluster" ingest.err || fail "the error does not name the cluster: $(cat ingest.err)"
note "$(cat ingest.err) (after $((t1 - t0)) s)"
[ $((t1 - t0)) -le $((CEPH_TIMEOUT * 4 + 5)) ] || fail "the ingest took $((t1 - t0)) s to fail"
expect_status 0 "$VMBAK" list v --json
expect_json 'assert d == [], d'

note "with the osd back, the next ingest works"
expect_status 0 "$VMBAK" ingest v vm1 --disk d=d.img
id=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" verify v
expect_stdout ': whole$'

note "the osd stops while the mount reads"
vmount v mnt
img=mnt/vm1/$id/d.img
dd if="$img" of=/dev/null bs=$CS count=1 iflag=direct status=none || fail "a first read failed"
ceph_osd_stop
t0=$(date +%s)
# The last chunk: far from anything read or decoded ahead.
n=$(($(stat -c %s d.img) / CS - 1))
if timeout 60 dd if="$img" of=/dev/null bs=$CS skip="$n" count=1 iflag=direct status=none \
	2>dd.err; then
	ceph_osd_start
	fail "a read with the osd stopped succeeded"
fi
t1=$(date +%s)
ceph_osd_start
grep -q "Input/output error" dd.err || fail "the read failed with $(cat dd.err), not EIO"
note "read failed with EIO after $((t1 - t0)) s"
[ $((t1 - t0)) -le $((CEPH_TIMEOUT * 4 + 5)) ] || fail "the read took $((t1 - t0)) s to fail"
timeout 10 mountpoint -q mnt || fail "the mount went away"
cmp d.img "$img" || fail "with the osd back, the image reads wrong"
vumount mnt
