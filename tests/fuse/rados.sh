#!/usr/bin/env bash
# Chunks in Ceph RADOS (vmbak init --chunks rados:POOL), on a one-node cluster the test starts
# (tests/ceph.sh): an encrypted vault whose frames are objects of the pool, one per chunk,
# named by the chunk id in hex, in the vault's namespace.
#
#   - round trip of an ext4 image through the mount: cmp, qemu-img compare, e2fsck -fn, loop
#     mount and diff -r against the source files;
#   - an incremental point (--changed) reads back right, the first one still does;
#   - delete + gc removes exactly the objects no remaining point refers to (and a stray chunk-
#     named object), nothing of another vault sharing the pool, nothing not named like a chunk;
#   - damage: an object overwritten (rados put) or removed (rados rm) is EIO for its range in
#     the mount, never wrong bytes, the rest reads right; verify exits 3 naming the point.
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/ceph.sh"

need_root
need_fuse
need_cmd mkfs.ext4 e2fsck qemu-img losetup python3 cmp diff
need_programs
cd "$TESTTMP"

printf 'rados test passphrase\n' >pass
chmod 600 pass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
CS=65536

ceph_start

note "a vault with its chunks in pool '$CEPH_POOL'"
expect_status 0 "$VMBAK" init v --chunks "rados:$CEPH_POOL" --ceph-conf "$CEPH_CONF"
expect_stdout "chunks in ceph pool $CEPH_POOL"
expect_status 0 "$VMBAK" info v --json
ns=$(json_value 'd["uuid"]')
expect_json 'assert d["chunk_store"] == "rados" and d["ceph_pool"] == sys.argv[2], d
assert d["ceph_namespace"] == d["uuid"], d' "$CEPH_POOL"

note "a second vault in the same pool, its own namespace"
expect_status 0 "$VMBAK" init w --encryption none --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF" --ceph-namespace other-vault
head -c 3M /dev/urandom >w.img
expect_status 0 "$VMBAK" ingest w vmw --disk d=w.img
w_objs=$(ceph_rados other-vault ls | sort)
[ "$(echo "$w_objs" | wc -l)" -eq 48 ] || fail "vault w has $(echo "$w_objs" | wc -l) objects, not 48"

note "making a 64 MiB ext4 image"
src=$(mk_ext4_image "$TESTTMP/os.img" 64)
cp os.img os1.img

expect_status 0 "$VMBAK" ingest v vm1 --disk os=os.img
id1=$(tail -n 1 "$OUT")
objs=$(ceph_rados "$ns" ls | wc -l)
expect_status 0 "$VMBAK" info v --json
expect_json 'assert d["chunks"] == int(sys.argv[2]) and d["chunks"] > 100, d' "$objs"
# The frames are in the pool, not in data.mdb.
db_kb=$(du -k v/data.mdb | cut -f1)
[ "$db_kb" -lt 4096 ] || fail "data.mdb takes $db_kb KiB: chunks went into it"
note "$objs objects, data.mdb $db_kb KiB"

note "round trip through the mount"
vmount v mnt
img=mnt/vm1/$id1/os.img
dd if="$img" of=direct.img bs=64k iflag=direct status=none || fail "dd iflag=direct failed"
cmp os.img direct.img || fail "O_DIRECT reads differ from the source"
rm -f direct.img
cmp os.img "$img" || fail "cmp: the mounted image differs from the source"
qemu-img compare -f raw -F raw os.img "$img" || fail "qemu-img compare reports a difference"
e2fsck -fn "$img" >e2fsck.out 2>&1 || { cat e2fsck.out >&2; fail "e2fsck -fn failed"; }
dev=$(loop_attach "$img")
kmount_ro "$dev" ext4
diff -r -x lost+found "$src" ext4 >diff.out ||
	{ head -n 20 diff.out >&2; fail "diff -r of the loop-mounted image and '$src' differs"; }
kumount ext4
loop_detach "$dev"
vumount mnt

note "an incremental point (--changed)"
: >changed
scribble os.img 40 changed
expect_status 0 "$VMBAK" ingest v vm1 --disk os=os.img --changed os=changed
id2=$(tail -n 1 "$OUT")
[ "$id2" != "$id1" ] || fail "the second point has the first one's id"
grep -q "read" "$OUT" || true
vmount v mnt
cmp os.img "mnt/vm1/$id2/os.img" || fail "the incremental point differs from the changed image"
cmp os1.img "mnt/vm1/$id1/os.img" || fail "the first point changed"
vumount mnt
expect_status 0 "$VMBAK" verify v
expect_stdout ': whole$'

note "delete + gc removes exactly the unreferenced objects"
"$VBK_INSPECT" v vm1 "$id1" os | tail -n +2 | awk '{print $2}' | sort -u >ids1
"$VBK_INSPECT" v vm1 "$id2" os | tail -n +2 | awk '{print $2}' | sort -u >ids2
ceph_rados "$ns" ls | sort >before
comm -23 ids1 ids2 >only1
[ -s only1 ] || fail "the second point shares every chunk of the first"
sort -u ids1 ids2 >both
cmp -s both before || fail "the pool's objects are not the points' chunks: $(diff both before | head -5)"
# A chunk-named object no point refers to (an ingest cut short leaves such), and an object of
# someone else in the namespace.
stray=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo junk | ceph_rados "$ns" put "$stray" -
echo other | ceph_rados "$ns" put not-a-chunk -
expect_status 0 "$VMBAK" delete v "vm1/$id1"
expect_status 0 "$VMBAK" gc v --json
expect_json 'assert d["freed"] == int(sys.argv[2]) + 1, d' "$(wc -l <only1)"
ceph_rados "$ns" ls | sort >after
{ cat ids2; echo not-a-chunk; } | sort >want
cmp -s want after || fail "after gc the pool holds other objects than point 2's: $(diff want after | head -5)"
[ "$(ceph_rados other-vault ls | sort)" = "$w_objs" ] || fail "gc of v touched vault w's objects"
expect_status 0 "$VMBAK" info v --json
expect_json 'assert d["chunks"] == int(sys.argv[2]), d' "$(wc -l <ids2)"
expect_status 0 "$VMBAK" verify v
expect_status 0 "$VMBAK" verify w

note "damage: one object overwritten, one removed"
# Two chunks of point 2 that no other chunk number shares.
read -r n_put id_put n_rm id_rm < <("$VBK_INSPECT" v vm1 "$id2" os | tail -n +2 | python3 -c '
import sys, collections
rows = [l.split() for l in sys.stdin if len(l.split()) == 2]
count = collections.Counter(r[1] for r in rows)
uniq = [r for r in rows if count[r[1]] == 1]
print(uniq[5][0], uniq[5][1], uniq[len(uniq) // 2][0], uniq[len(uniq) // 2][1])')
head -c 70000 /dev/urandom >garbage
ceph_rados "$ns" put "$id_put" garbage
ceph_rados "$ns" rm "$id_rm"
vmount v mnt
img=mnt/vm1/$id2/os.img
for n in "$n_put" "$n_rm"; do
	if dd if="$img" of=/dev/null bs=$CS skip="$n" count=1 iflag=direct status=none 2>dd.err; then
		fail "chunk $n, damaged in the pool, read without an error"
	fi
	grep -q "Input/output error" dd.err || fail "chunk $n: $(cat dd.err), not EIO"
done
dd if="$img" of=part.img bs=$CS count=4 iflag=direct status=none || fail "an undamaged range failed"
dd if=os.img of=want.img bs=$CS count=4 status=none
cmp part.img want.img || fail "an undamaged range reads wrong"
timeout 10 mountpoint -q mnt || fail "the mount went away"
vumount mnt
expect_status 3 "$VMBAK" verify v
expect_stdout "^vm1/$id2 os: bytes $((n_put * CS))-"
expect_stdout "^vm1/$id2 os: bytes $((n_rm * CS))-"
expect_stderr "2 points affected|1 point affected"
