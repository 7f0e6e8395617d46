#!/usr/bin/env bash
# tests/bench/rados.sh CORPUS: chunks in RADOS next to chunks in LMDB, in one run on one corpus
# (not part of make check). CORPUS is a directory with base.raw, day2.raw and day2.extents (from
# ../shared/bench/make-corpus.sh or tests/bench/corpus.py). For each store, an encrypted vault
# with 64 KiB chunks:
#   ingest     vmbak ingest of base.raw, then of day2.raw with --changed day2.extents
#   seq        cold sequential read of base.raw through a fresh mount (dd bs=1M)
#   rand       cold random 4 KiB reads through a fresh mount (fio, direct, 1 job, BENCH_SECS s)
# "Cold": a fresh vmbakfs (empty chunk cache) and data.mdb dropped from the page cache; the
# RADOS cluster is the one-node memstore cluster of tests/ceph.sh on this machine (its objects
# stay in the osd's memory: this measures the client path and the per-object round trip, not
# disks). Results on stdout, one line per measure.
set -euo pipefail
corpus=$(cd "${1:?usage: tests/bench/rados.sh CORPUS}" && pwd)
SECS=${BENCH_SECS:-15}
export TEST_TIMEOUT=${TEST_TIMEOUT:-3600}
. "$(dirname "$0")/../lib.sh"
. "$SRCDIR/tests/ceph.sh"
need_root
need_fuse
need_cmd fio dd
need_programs
cd "$TESTTMP"
printf 'bench passphrase\n' >pass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
CEPH_TIMEOUT=30
ceph_start

now() { date +%s.%N; }
rate() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.0f MB/s (%.1f s)", b / (t1 - t0) / 1e6, t1 - t0 }'; }
size=$(stat -c %s "$corpus/base.raw")
data=$(du -B1 "$corpus/base.raw" | cut -f1)

for store in ${BENCH_STORES:-lmdb rados}; do
	opts=()
	[ "$store" = rados ] && opts=(--chunks "rados:$CEPH_POOL" --ceph-conf "$CEPH_CONF")
	"$VMBAK" init "v-$store" "${opts[@]}" >/dev/null
	t0=$(now)
	"$VMBAK" ingest "v-$store" vm --disk "sda=$corpus/base.raw" >ingest.out
	t1=$(now)
	id=$(tail -n 1 ingest.out)
	echo "$store ingest base: $(rate "$data" "$t0" "$t1") of $data data bytes"
	t0=$(now)
	"$VMBAK" ingest "v-$store" vm --disk "sda=$corpus/day2.raw" \
		--changed "sda=$corpus/day2.extents" >/dev/null
	t1=$(now)
	echo "$store ingest day2 --changed: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }')"
	"$VMBAK" info "v-$store" | grep -E "chunk store|chunks stored|stored:" | sed "s/^/$store /"

	dd if="v-$store/data.mdb" iflag=nocache count=0 status=none
	vmount "v-$store" mnt
	t0=$(now)
	dd if="mnt/vm/$id/sda.img" of=/dev/null bs=1M status=none
	t1=$(now)
	echo "$store cold sequential read: $(rate "$size" "$t0" "$t1")"
	vumount mnt

	dd if="v-$store/data.mdb" iflag=nocache count=0 status=none
	vmount "v-$store" mnt
	# fio takes ':' as a separator of file names: point ids have colons.
	f="mnt/vm/$id/sda.img"
	fio --name=rand --filename="${f//:/\\:}" --rw=randread --bs=4k --direct=1 \
		--ioengine=psync --numjobs=1 --runtime="$SECS" --time_based --readonly \
		--size="$size" --randseed=20261123 --output-format=json >fio.json
	echo "$store cold random 4 KiB reads: $(python3 -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print("%.0f IOPS, mean %.2f ms" % (j["iops"], j["clat_ns"]["mean"] / 1e6))' fio.json)"
	vumount mnt
done
