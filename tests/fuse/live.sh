#!/usr/bin/env bash
# A mounted vault is live: a point ingested while it is mounted (and being read) appears without
# remounting, and `latest` follows it. A damaged chunk gives EIO, never different bytes, and the
# mount survives it.
# shellcheck disable=SC2010,SC2012,SC2317 # ls on purpose: the listing users see; wait_for CMD
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd python3 cmp dd
need_programs
cd "$TESTTMP"

# wait_for SECONDS CMD...: until CMD succeeds, at most SECONDS.
wait_for() {
	local end
	end=$(($(date +%s%N) + $1 * 1000000000))
	shift
	until "$@"; do
		[ "$(date +%s%N)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

head -c $((8 << 20)) /dev/urandom >d.img
cp d.img d1.img

expect_status 0 "$VMBAK" init "$TESTTMP/v" --encryption none
expect_status 0 "$VMBAK" ingest "$TESTTMP/v" vm1 --disk d=d.img
id1=$(tail -n 1 "$OUT")
[ -n "$id1" ] || fail "ingest printed no recovery point id"

vmount "$TESTTMP/v" mnt
[ "$(readlink mnt/vm1/latest)" = "$id1" ] || fail "latest is not $id1"
cmp d1.img "mnt/vm1/$id1/d.img" || fail "the first point differs"

note "a second point, ingested while the first is open and being read"
dd if=/dev/urandom of=d.img bs=1M seek=2 count=1 conv=notrunc status=none
exec 3<"mnt/vm1/$id1/d.img"
(while :; do cat "mnt/vm1/$id1/d.img" >/dev/null || exit 1; done) &
reader=$!
at_exit "kill $reader 2>/dev/null"
st=0
timeout 120 "$VMBAK" ingest "$TESTTMP/v" vm1 --disk d=d.img >ingest2.out 2>ingest2.err || st=$?
kill "$reader" 2>/dev/null || true
wait "$reader" 2>/dev/null || true
[ "$st" -eq 0 ] || fail "ingest while mounted exited with $st: $(cat ingest2.err)"
id2=$(tail -n 1 ingest2.out)
if [ -z "$id2" ] || [ "$id2" = "$id1" ]; then
	fail "the second ingest printed id '$id2'"
fi

wait_for 2 test -e "mnt/vm1/$id2/d.img" ||
	fail "mnt/vm1/$id2 did not appear within 2 s: $(ls mnt/vm1 | tr '\n' ' ')"
ls mnt/vm1 | grep -qxF "$id2" || fail "ls mnt/vm1 does not list $id2"
latest_is() { [ "$(readlink mnt/vm1/latest)" = "$1" ]; }
wait_for 2 latest_is "$id2" || fail "latest is '$(readlink mnt/vm1/latest)', not '$id2'"
cmp d.img "mnt/vm1/$id2/d.img" || fail "the second point differs"
cmp d1.img "mnt/vm1/$id1/d.img" || fail "the first point differs after the second ingest"
cmp d1.img /dev/fd/3 || fail "the first point, open during the ingest, differs"
exec 3<&-
[ "$(ls mnt/vm1 | grep -cvxF latest)" -eq 2 ] || fail "mnt/vm1 holds: $(ls mnt/vm1 | tr '\n' ' ')"
vumount mnt

note "damage: flip bytes of one chunk in data.mdb"
# 1 MiB of random data (incompressible, so stored as it is in a vault without encryption); the
# 64 KiB chunk at 256 KiB gets damaged.
head -c $((1 << 20)) /dev/urandom >dmg.img
expect_status 0 "$VMBAK" init "$TESTTMP/w" --encryption none --chunk-size 65536
expect_status 0 "$VMBAK" ingest "$TESTTMP/w" vm1 --disk d=dmg.img
idd=$(tail -n 1 "$OUT")
python3 - dmg.img "$TESTTMP/w/data.mdb" <<'EOF' || fail "cannot damage the vault"
import errno, os, sys
img, db = sys.argv[1:3]
with open(img, "rb") as f:
    f.seek(256 * 1024 + 8192)
    needle = f.read(4096)
fd = os.open(db, os.O_RDWR)
size = os.fstat(fd).st_size
hits, off, piece = [], 0, 16 << 20
# Only the file's data regions: with MDB_WRITEMAP data.mdb may be as large as the map, sparse.
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError as e:
        if e.errno == errno.ENXIO:
            break
        raise
    h = os.lseek(fd, d, os.SEEK_HOLE)
    p = d
    while p < h:
        buf = os.pread(fd, min(piece + 4096, h - p), p)
        i = buf.find(needle)
        while i >= 0:
            if p + i not in hits:
                hits.append(p + i)
            i = buf.find(needle, i + 1)
        p += piece
    off = h
if not hits:
    sys.exit("the 4 KiB block was not found in data.mdb")
for h in hits:
    b = bytearray(os.pread(fd, 16, h + 2000))
    os.pwrite(fd, bytes(x ^ 0xA5 for x in b), h + 2000)
os.fsync(fd)
os.close(fd)
print("# flipped 16 bytes at %d place(s) in data.mdb" % len(hits))
EOF

# This time in the foreground (-f), in the background of the test.
vmount "$TESTTMP/w" mnt2 -f
dimg=mnt2/vm1/$idd/d.img
if dd if="$dimg" of=/dev/null bs=4096 skip=66 count=1 status=none 2>dd.err; then
	fail "dd of the damaged region succeeded"
fi
grep -q "Input/output error" dd.err || fail "dd of the damaged region: $(cat dd.err), not EIO"
python3 - dmg.img "$dimg" <<'EOF' || fail "reads of the damaged image"
import errno, os, sys
src, img = sys.argv[1:3]
with open(src, "rb") as f:
    want = f.read()
fd = os.open(img, os.O_RDONLY)
chunk = 64 * 1024
bad = 256 * 1024 // chunk
order = [bad] + [i for i in range(len(want) // chunk) if i != bad] + [bad]
for i in order:
    for off, ln in ((i * chunk, chunk), (i * chunk + 100, 5000), (i * chunk + chunk - 1, 1)):
        try:
            got = os.pread(fd, ln, off)
        except OSError as e:
            if e.errno == errno.EIO and i == bad:
                continue
            sys.exit("read of %d at %d: %s" % (ln, off, e.strerror))
        if i == bad:
            sys.exit("read of %d at %d in the damaged chunk succeeded" % (ln, off))
        if got != want[off:off + ln]:
            sys.exit("read of %d at %d gave different bytes" % (ln, off))
# A read across into the damaged chunk fails or stops short, never with different bytes.
try:
    got = os.pread(fd, 2 * chunk, (bad - 1) * chunk)
    if got != want[(bad - 1) * chunk:(bad - 1) * chunk + len(got)] or len(got) > chunk:
        sys.exit("a read across the damaged chunk gave %d bytes, or different ones" % len(got))
except OSError as e:
    if e.errno != errno.EIO:
        raise
os.close(fd)
EOF
if cmp dmg.img "$dimg" 2>cmp.err; then
	fail "cmp of the damaged image succeeded"
fi
grep -q "Input/output error" cmp.err || fail "cmp of the damaged image: $(cat cmp.err)"

note "the mount is still alive"
is_mounted mnt2 || fail "the mount died"
ls -l mnt2/vm1 >/dev/null || fail "ls of the mount fails after the damage"
dd if="$dimg" of=/dev/null bs=65536 count=4 status=none || fail "good chunks cannot be read"
vumount mnt2
exit 0
