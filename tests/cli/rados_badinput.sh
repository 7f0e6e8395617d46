#!/usr/bin/env bash
# Bad input around chunks in Ceph RADOS: one clear line on stderr, a non-zero exit, nothing
# half-made (a failed init leaves no vault directory, nor objects).
#
#   - init with a pool that does not exist, an unreachable cluster (a config naming a port no
#     mon listens on), a ceph config that does not exist, a bad --chunks, ceph options without
#     --chunks rados:POOL;
#   - a config whose "chunks" names an unknown store, or was edited from rados to nothing (the
#     kind of store is bound to the keys): refused at open;
#   - a host without librados (tests/nolib.sh): list works, restore and verify fail with one line;
#   - a vault whose cluster went away: list still works (it needs no chunks), reading a chunk
#     fails within the timeout with one line.
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/ceph.sh"
. "$SRCDIR/tests/nolib.sh"

need_cmd python3
need_programs
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
CEPH_TIMEOUT=2

note "usage errors"
expect_status 2 "$VMBAK" init x --encryption none --chunks s3:bucket
expect_stderr "invalid chunk store"
expect_status 2 "$VMBAK" init x --encryption none --chunks rados:
expect_status 2 "$VMBAK" init x --encryption none --ceph-namespace n
expect_stderr "go with --chunks rados:POOL"
[ ! -e x ] || fail "a refused init left '$TESTTMP/x'"

note "a ceph config that does not exist"
expect_status 1 "$VMBAK" init x --encryption none --chunks rados:p --ceph-conf "$TESTTMP/nope.conf"
expect_stderr "ceph config"
[ ! -e x ] || fail "a failed init left '$TESTTMP/x'"

note "an unreachable cluster"
port=$(_ceph_free_port)
cat >dead.conf <<EOF
[global]
mon host = v2:127.0.0.1:$port
auth client required = none
rados mon op timeout = 2
rados osd op timeout = 2
client mount timeout = 2
EOF
t0=$SECONDS
expect_status 1 timeout 60 "$VMBAK" init x --encryption none --chunks rados:p --ceph-conf dead.conf
expect_stderr "^vmbak: cannot connect to the ceph cluster of .*dead.conf"
[ $((SECONDS - t0)) -le 20 ] || fail "init took $((SECONDS - t0)) s to give up"
[ ! -e x ] || fail "a failed init left '$TESTTMP/x'"
mkdir empty
expect_status 1 timeout 60 "$VMBAK" init empty --encryption none --chunks rados:p \
	--ceph-conf dead.conf
[ -d empty ] && [ -z "$(ls -A empty)" ] || fail "a failed init left files in an empty directory"

ceph_start

note "a pool that does not exist"
expect_status 1 "$VMBAK" init x --encryption none --chunks rados:no-such-pool --ceph-conf "$CEPH_CONF"
expect_stderr "^vmbak: .*ceph pool 'no-such-pool' does not exist"
[ ! -e x ] || fail "a failed init left '$TESTTMP/x'"
[ -z "$(ceph_rados x ls 2>/dev/null)" ] || true

note "a config with an unknown chunk store, or with the rados store removed"
expect_status 0 "$VMBAK" init v --encryption none --chunks "rados:$CEPH_POOL" --ceph-conf "$CEPH_CONF"
head -c 1M /dev/urandom >d.img
expect_status 0 "$VMBAK" ingest v vm --disk d=d.img
cp -a v v.bak
python3 - v/vmbak-vault.json <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["chunks"]["store"] = "s3"
json.dump(c, open(sys.argv[1], "w"))
EOF
expect_status 1 "$VMBAK" list v
expect_stderr "unknown chunk store 's3'"
rm -rf v && cp -a v.bak v
python3 - v/vmbak-vault.json <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
del c["chunks"]
json.dump(c, open(sys.argv[1], "w"))
EOF
expect_status 1 "$VMBAK" list v
expect_stderr "does not match its database"
rm -rf v && cp -a v.bak v
expect_status 0 "$VMBAK" verify v

note "a host without librados (tests/nolib.sh): list works, reading chunks fails in one line"
expect_ok without_libs librados.so.2 "$VMBAK" list v
expect_status 1 without_libs librados.so.2 "$VMBAK" restore v vm --to r
expect_stderr "^vmbak: cannot load librados\.so\.2 \(needed for chunks in RADOS\): .*librados"
[ ! -e r/d.img ] || fail "a restore without librados left 'r/d.img'"
expect_status 1 without_libs librados.so.2 "$VMBAK" verify v
expect_stderr "^vmbak: cannot load librados\.so\.2 \(needed for chunks in RADOS\): "
expect_status 0 "$VMBAK" verify v

note "the cluster goes away: list works, reads fail in time"
ceph_osd_stop
expect_status 0 "$VMBAK" list v
t0=$SECONDS
expect_status 1 timeout 60 "$VMBAK" restore v vm --to r
expect_stderr "ceph|cluster"
[ $((SECONDS - t0)) -le 20 ] || fail "restore took $((SECONDS - t0)) s to give up"
ceph_osd_start
expect_status 0 "$VMBAK" restore v vm --to r2
cmp d.img r2/d.img || fail "the restored disk differs"
