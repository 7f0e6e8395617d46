#!/usr/bin/env bash
# tests/fuse/sync.sh: vmbak sync to a local replica: full, then incremental (bytes sent close to
# the new chunks), a kill -9 of the sender in the middle of a point and the resume (nothing sent
# twice, the point whole or absent), syncs while the source ingests, prunes and collects and the
# replica collects; then verify of the replica and cmp of every point it holds through a mount
# opened with the source's passphrase.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
use_test_build

T=$TESTTMP
cd "$T"
echo "sync test passphrase" >pass
export VMBAK_PASSPHRASE_FILE=$T/pass
unset VMBAK_PASSPHRASE
S=$T/src
D=$T/dst
M=$T/mnt
: >map # "VM ID SOURCE-COPY" per point ingested
expect_status 0 "$VMBAK" init "$S" --chunk-size 16384

# ingest VM FILE: a point of FILE as disk sda; its content kept for the comparisons.
ingest() {
	"$VMBAK" ingest "$S" "$1" --disk sda="$2" >ingest.out 2>ingest.err ||
		{ cat ingest.err; fail "ingest of $1 failed"; }
	local id
	id=$(tail -n 1 ingest.out)
	cp --sparse=always "$2" "$T/pt.$1.$id"
	echo "$1 $id $T/pt.$1.$id" >>map
}

# check_replica: verify says the replica is whole; every point it lists reads back exactly as
# ingested, through a mount of the replica with the source's passphrase.
check_replica() {
	local vm id f n=0
	expect_status 0 "$VMBAK" verify "$D"
	vmount "$D" "$M" -o passphrase_file="$T/pass"
	"$VMBAK" list "$D" --json >list.json
	while read -r vm id f; do
		python3 -c 'import json, sys
sys.exit(0 if any(p["vm"] == sys.argv[2] and p["id"] == sys.argv[3]
                  for p in json.load(open(sys.argv[1]))) else 1)' list.json "$vm" "$id" || continue
		cmp "$M/$vm/$id/sda.img" "$f" || fail "replica point $vm/$id differs from its source"
		n=$((n + 1))
	done <map
	vumount "$M"
	[ "$n" -eq "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' \
		list.json)" ] || fail "the replica lists points the test did not ingest"
	note "replica: $n points compared"
}

head -c $((12 * 1024 * 1024)) /dev/urandom >a.img
truncate -s 32M a.img
ingest vm1 a.img

expect_status 0 "$VMBAK" init "$D" --replica-of "$S"
expect_stdout "replica created"
expect_status 0 "$VMBAK" sync "$S" "$D" --json
expect_json 'assert d["ok"] and d["points_copied"] == 1 and d["chunks_sent"] == 768, d'
full=$(json_value 'd["bytes_sent"]')

# Incremental: 10 changed chunks of 16 KiB; what goes over is those and little else.
for b in 3 50 99 130 200 260 333 400 555 700; do
	dd if=/dev/urandom of=a.img bs=16384 count=1 seek=$b conv=notrunc status=none
done
ingest vm1 a.img
expect_status 0 "$VMBAK" sync "$S" "$D" --json
expect_json 'assert d["points_copied"] == 1 and d["points_present"] == 1, d'
expect_json 'assert d["chunks_sent"] == 10 and d["chunks_present"] == 0, d'
expect_json 'assert d["chunk_bytes_sent"] <= 10 * (16384 + 40), d'
expect_json 'assert d["bytes_sent"] < d["chunk_bytes_sent"] + 16384, d'
note "full sync sent $full bytes, the incremental $(json_value 'd["bytes_sent"]')"
# Nothing new: nothing but the listing goes over.
expect_status 0 "$VMBAK" sync "$S" "$D" --json
expect_json 'assert d["points_copied"] == 0 and d["chunks_sent"] == 0 and d["bytes_sent"] < 4096, d'
check_replica

# kill -9 of the sender after the first 8 MiB of a new 12 MiB disk went over.
head -c $((12 * 1024 * 1024)) /dev/urandom >b.img
ingest vm2 b.img
VMBAK_TEST_SYNC_PUT_PAUSE=$T/put.go "$VMBAK" sync "$S" "$D" >killed.out 2>&1 &
spid=$!
at_exit "kill -9 $spid 2>/dev/null || true"
for ((i = 0; i < 300; i++)); do
	[ -e put.go.reached ] && break
	sleep 0.1
done
[ -e put.go.reached ] || fail "the sync did not reach its first put"
kill -9 "$spid"
wait "$spid" 2>/dev/null || true
expect_status 0 "$VMBAK" list "$D" --json
expect_json 'assert all(p["vm"] != "vm2" for p in d), "a point arrived half"'
expect_status 0 "$VMBAK" verify "$D"
expect_status 0 "$VMBAK" sync "$S" "$D" --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_present"] >= 500, d'
expect_json 'assert d["chunks_sent"] + d["chunks_present"] == 768 and d["chunks_sent"] <= 268, d'
expect_status 0 "$VMBAK" jobs "$D" --json
expect_json 'assert sum(1 for j in d if j["kind"] == "sync" and j["state"] == "failed") == 1, d'

# The base of a delta deleted from the replica between the chunks and the commit: the commit
# is refused as stale and the disk sent whole, holes included.
head -c 2000000 /dev/urandom >c.img
ingest vm3 c.img
expect_status 0 "$VMBAK" sync "$S" "$D" vm3
base=$(awk '$1 == "vm3" { print $2 }' map)
dd if=/dev/zero of=c.img bs=16384 count=3 seek=5 conv=notrunc status=none
dd if=/dev/urandom of=c.img bs=16384 count=3 seek=50 conv=notrunc status=none
ingest vm3 c.img
VMBAK_TEST_SYNC_COMMIT_PAUSE=$T/commit.go "$VMBAK" sync "$S" "$D" vm3 --json >stale.json &
spid=$!
at_exit "kill -9 $spid 2>/dev/null || true"
for ((i = 0; i < 300; i++)); do
	[ -e commit.go.reached ] && break
	sleep 0.1
done
[ -e commit.go.reached ] || fail "the sync did not reach its commit"
expect_status 0 "$VMBAK" delete "$D" "vm3/$base" --force
touch commit.go
wait "$spid" || fail "the sync whose base went failed"
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["points_copied"] == 1 and d["chunks_sent"] == 3, d' stale.json
expect_status 0 "$VMBAK" restore "$D" vm3 --to "$T/restored"
cmp "$T/restored/sda.img" c.img || fail "the point sent whole after a stale delta differs"

# Syncs while the source ingests, prunes and collects, and the replica collects.
writer() {
	local r
	for ((r = 0; r < 6; r++)); do
		scribble a.img 4
		ingest vm1 a.img
		"$VMBAK" prune "$S" vm1 --keep-last 2 >/dev/null
		"$VMBAK" gc "$S" >/dev/null
	done
	touch writer.done
}
collector() {
	while [ ! -e writer.done ]; do
		"$VMBAK" gc "$D" >/dev/null 2>>collector.err || true
		sleep 0.05
	done
}
writer >writer.log 2>&1 &
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
collector &
cpid=$!
at_exit "kill $cpid 2>/dev/null || true"
syncs=0
while [ ! -e writer.done ] && kill -0 "$wpid" 2>/dev/null; do
	"$VMBAK" sync "$S" "$D" >sync.out 2>sync.err || { cat sync.err; fail "a sync failed"; }
	syncs=$((syncs + 1))
done
wait "$wpid" || { cat writer.log; fail "the writer failed"; }
wait "$cpid" || true
grep -v "another gc is running" collector.err >&2 && fail "a gc of the replica failed"
expect_status 0 "$VMBAK" sync "$S" "$D"
note "$syncs syncs during ingest, prune and gc"
expect_status 0 "$VMBAK" gc "$D"
# Points pruned at the source stay in the replica (no --prune): every point is there, but the
# one the replica deleted itself.
expect_status 0 "$VMBAK" list "$D" --json
expect_json 'assert len(d) == len(open(sys.argv[2]).readlines()) - 1, len(d)' "$T/map"
check_replica
