#!/usr/bin/env bash
# tests/cli/slices.sh: gc and verify in slices of the chunk-id space give the answers of one pass.
#
# gc and verify hold one slice of the ids at a time (a million or so) so that their memory stays
# bounded in a vault of millions of chunks. The test build's VMBAK_TEST_SLICE makes the slices
# tiny, so that a small vault is done in many: verify (whole, per VM, a sample with a seed) counts
# and reads the same chunks as in one slice, finds the same damaged chunks and names the same
# points and byte ranges; gc frees exactly what a gc in one slice frees, and what stays reads
# back exactly.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
use_test_build
need_cmd python3 cmp
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
V=$T/vault
cd "$T"
expect_status 0 "$VMBAK" init "$V" --encryption none --chunk-size 4096

# vm1: a 1 MiB random disk (256 chunks), then 64 chunks of it changed; vm2: another disk,
# with a hole; vm3: a disk sharing half its chunks with vm1's first point.
head -c 1048576 /dev/urandom >a.img
cp a.img a0.img
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk d=a.img
rp1=$(tail -n 1 "$OUT")
dd if=/dev/urandom of=a.img bs=4096 count=64 seek=100 conv=notrunc status=none
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk d=a.img
head -c 524288 /dev/urandom >b.img
truncate -s 1048576 b.img
expect_status 0 "$VMBAK" ingest "$V" vm2 --disk d=b.img
head -c 524288 a0.img >c.img
head -c 524288 /dev/urandom >>c.img
expect_status 0 "$VMBAK" ingest "$V" vm3 --disk d=c.img

# counts KEYS...: the verify --json counts named, on one line
counts() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(str(d[k]) for k in sys.argv[2:]))' "$OUT" "$@"
}
K=(chunks_referenced chunks_checked bytes_checked chunks_damaged chunks_missing damaged_points)

for scope in "" vm1 vm3 "vm1/$rp1"; do
	expect_status 0 "$VMBAK" verify "$V" $scope --json
	one=$(counts "${K[@]}")
	[ -z "$scope" ] && whole=$one
	for n in 1 7 100; do
		VMBAK_TEST_SLICE=$n expect_status 0 "$VMBAK" verify "$V" $scope --json
		[ "$(counts "${K[@]}")" = "$one" ] ||
			fail "verify '$scope' in slices of $n: $(counts "${K[@]}"), in one: $one"
	done
done
note "whole vault: $whole (referenced checked bytes damaged missing points)"
[ "${whole%% *}" = $((256 + 64 + 128 + 128)) ] || fail "expected 576 distinct chunks: $whole"

# A sample with a seed: the same chunks each time, in slices too (each slice rounds its share
# up: a few more than 40%).
VMBAK_TEST_SLICE=100 expect_status 0 "$VMBAK" verify "$V" --sample 40 --seed 9 --json
s1=$(counts chunks_checked bytes_checked seed)
VMBAK_TEST_SLICE=100 expect_status 0 "$VMBAK" verify "$V" --sample 40 --seed 9 --json
[ "$(counts chunks_checked bytes_checked seed)" = "$s1" ] || fail "a seeded sample differs"
n=$(counts chunks_checked)
[ "$n" -ge 231 ] && [ "$n" -le 238 ] || fail "a 40% sample of 576 in slices read $n chunks"
# Without --seed the seed printed replays the sample.
VMBAK_TEST_SLICE=100 expect_status 0 "$VMBAK" verify "$V" --sample 40 --json
s2=$(counts chunks_checked bytes_checked)
seed=$(counts seed)
VMBAK_TEST_SLICE=100 expect_status 0 "$VMBAK" verify "$V" --sample 40 --seed "$seed" --json
[ "$(counts chunks_checked bytes_checked)" = "$s2" ] || fail "the printed seed does not replay"

# gc: delete vm1's first point on two copies; gc in one slice and in slices of 5.
cp -a "$V" "$T/g1"
cp -a "$V" "$T/g2"
for g in g1 g2; do
	expect_status 0 "$VMBAK" delete "$T/$g" "vm1/$rp1"
done
expect_status 0 "$VMBAK" gc "$T/g1" --json
gc1=$(json_value "(d['chunks'], d['referenced'], d['freed'])")
VMBAK_TEST_SLICE=5 expect_status 0 "$VMBAK" gc "$T/g2" --json
gc2=$(json_value "(d['chunks'], d['referenced'], d['freed'])")
[ "$gc1" = "$gc2" ] || fail "gc in slices: $gc2, in one: $gc1"
# vm1's first point alone held the 64 old chunks 100-163 of a0.img; vm3 holds 0-127 of them:
# the other 36 are freed.
[ "$gc1" = "(576, 540, 36)" ] || fail "gc counts $gc1, expected (576, 540, 36)"
VMBAK_TEST_SLICE=5 expect_status 0 "$VMBAK" gc "$T/g2" --json
[ "$(json_value "d['freed']")" = 0 ] || fail "a second gc in slices freed more"
expect_status 0 "$VMBAK" verify "$T/g2"
for vm in vm1 vm2 vm3; do
	expect_status 0 "$VMBAK" restore "$T/g2" "$vm" --to "$T/out-$vm"
done
cmp a.img out-vm1/d.img && cmp b.img out-vm2/d.img && cmp c.img out-vm3/d.img ||
	fail "gc in slices lost data"
# The chunk store's count sizes gc's slices, and no MAC covers it: a flipped high bit (here
# all bits) must cost a bounded number of passes (VBS_SLICES_MAX), free nothing and lose nothing.
"$VBK_INSPECT" raw "$T/g2" put meta "$(printf chunks | od -An -tx1 | tr -d ' \n')" \
	"ffffffffffffffff$(printf '%032d' 0)" || fail "cannot write the chunk count"
expect_status 0 timeout 120 "$VMBAK" gc "$T/g2" --json
[ "$(json_value "d['freed']")" = 0 ] || fail "gc with a damaged chunk count freed chunks"
rm -rf "$T/out-vm1"
expect_status 0 "$VMBAK" restore "$T/g2" vm1 --to "$T/out-vm1"
cmp a.img out-vm1/d.img || fail "gc with a damaged chunk count lost data"

# Damage: flip a byte inside the stored frames of three chunks of a0.img (unencrypted, random
# data is stored raw): chunks 10 (vm1 both points and vm3), 120 (vm1's first point and vm3)
# and 200 (vm1 both points).
python3 - "$V/data.mdb" <<'PYEOF'
import sys
src = open("a0.img", "rb").read()
p = sys.argv[1]
db = bytearray(open(p, "rb").read())
for n in (10, 120, 200):
    needle = src[n * 4096 + 1000:n * 4096 + 1064]
    at = db.find(needle)
    assert at >= 0 and db.find(needle, at + 1) < 0, n
    db[at + 32] ^= 0xff
open(p, "r+b").write(db)
PYEOF
expect_status 3 "$VMBAK" verify "$V"
grep -v '^verify:' "$OUT" >one.txt
for n in 1 3 50; do
	VMBAK_TEST_SLICE=$n expect_status 3 "$VMBAK" verify "$V"
	grep -v '^verify:' "$OUT" >sliced.txt
	diff one.txt sliced.txt >&2 || fail "verify in slices of $n reports other damage"
done
[ "$(grep -c 'damaged chunk' one.txt)" -ge 4 ] || { cat one.txt >&2; fail "damage not reported"; }
expect_status 3 "$VMBAK" verify "$V" --json
[ "$(counts chunks_damaged)" = 3 ] || fail "$(counts chunks_damaged) damaged chunks, expected 3"
VMBAK_TEST_SLICE=2 expect_status 3 "$VMBAK" verify "$V" --json
[ "$(counts chunks_damaged damaged_points)" = "3 3" ] || fail "in slices: $(counts chunks_damaged damaged_points)"
