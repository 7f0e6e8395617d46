#!/usr/bin/env bash
# Holes: a 4 GiB sparse disk with a few bytes of data is ingested without reading its holes and
# shows its holes through the mount (SEEK_DATA/SEEK_HOLE, st_blocks, du, cp --sparse). An image
# whose size is neither a multiple of the chunk size nor of 512 comes back exactly.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd python3 cmp truncate
need_programs
cd "$TESTTMP"

mk_sparse big.img 4G >runs.txt
size=$(stat -c %s big.img)
[ "$size" -eq $((4 << 30)) ] || fail "big.img is $size bytes"
head -c 1000003 /dev/urandom >odd.img
# Some zeros inside the odd image too, across a 4 KiB boundary.
dd if=/dev/zero of=odd.img bs=1 seek=300000 count=70000 conv=notrunc status=none

expect_status 0 "$VMBAK" init "$TESTTMP/v" --encryption none

note "ingest (its reads are counted: the holes must not be read)"
python3 - "$VMBAK" "$TESTTMP/v" <<'EOF' >ingest.out || fail "ingest failed or read the holes"
import subprocess, sys, time
def rchar():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
vmbak, vault = sys.argv[1:3]
before, t0 = rchar(), time.monotonic()
p = subprocess.run([vmbak, "ingest", vault, "vm1", "--disk", "big=big.img", "--disk", "odd=odd.img"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
secs, nread = time.monotonic() - t0, rchar() - before   # a reaped child's I/O counts here
sys.stderr.write(p.stderr.decode(errors="replace"))
if p.returncode != 0:
    sys.exit("ingest exited with %d" % p.returncode)
out = p.stdout.decode().strip().splitlines()
print(out[-1] if out else "")
sys.stderr.write("# ingest took %.2f s and read %d bytes\n" % (secs, nread))
if nread > 64 << 20:
    sys.exit("ingest read %d bytes of a 4 GiB disk holding %d bytes of data: holes were read"
             % (nread, 1000003 + 100))
if secs > 60:
    sys.exit("ingest took %.1f s" % secs)
EOF
id=$(tail -n 1 ingest.out)
[ -n "$id" ] || fail "ingest printed no recovery point id"

vmount "$TESTTMP/v" mnt
dir=mnt/vm1/$id
[ "$(stat -c %s "$dir/big.img")" -eq "$size" ] || fail "size of big.img is wrong"
[ "$(stat -c %s "$dir/odd.img")" -eq 1000003 ] || fail "size of odd.img is wrong"

note "cmp"
cmp odd.img "$dir/odd.img" || fail "odd.img differs"
cmp big.img "$dir/big.img" || fail "big.img differs"

note "SEEK_DATA/SEEK_HOLE, st_blocks"
python3 - "$dir/big.img" "$dir/odd.img" runs.txt big.img <<'EOF' || fail "holes are not visible through the mount"
import errno, os, sys
big, odd, runs_file, big_src = sys.argv[1:5]
runs = [tuple(map(int, l.split())) for l in open(runs_file) if l.strip()]
fd = os.open(big, os.O_RDONLY)
size = os.fstat(fd).st_size
regions, off = [], 0
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    if not d < h <= size:
        sys.exit("SEEK_DATA %d then SEEK_HOLE %d: bad region" % (d, h))
    regions.append((d, h))
    off = h
if os.lseek(fd, size - 1, os.SEEK_HOLE) != size:
    sys.exit("SEEK_HOLE from the last byte does not give the size")
data = sum(h - d for d, h in regions)
print("# %d data regions, %d bytes: %s" % (len(regions), data, regions[:8]))
for o, l in runs:
    for b in (o, o + l - 1):
        if not any(d <= b < h for d, h in regions):
            sys.exit("byte %d, written in the source, is in a hole of the mount" % b)
    with open(big_src, "rb") as f:
        f.seek(o)
        want = f.read(l)
    if os.pread(fd, l, o) != want:
        sys.exit("the %d bytes at %d differ" % (l, o))
if data > 64 << 20:
    sys.exit("%d bytes of data regions for %d bytes of data" % (data, sum(l for _, l in runs)))
try:
    os.lseek(fd, size, os.SEEK_DATA)
    sys.exit("SEEK_DATA at the end succeeded")
except OSError as e:
    if e.errno != errno.ENXIO:
        raise
blocks = os.fstat(fd).st_blocks * 512
if blocks > 64 << 20:
    sys.exit("st_blocks is %d bytes" % blocks)
if blocks < sum(l for _, l in runs):
    sys.exit("st_blocks is %d bytes, less than the data" % blocks)
os.close(fd)

# The odd image: reads across its end and a hole check that a region is not claimed empty
# where it has data.
fd = os.open(odd, os.O_RDONLY)
with open("odd.img", "rb") as f:
    src = f.read()
for off, ln in ((0, 1000003), (999999, 100), (1000002, 1), (1000003, 10), (65530, 20),
                (262140, 10), (299990, 80000)):
    if os.pread(fd, ln, off) != src[off:off + ln]:
        sys.exit("odd.img: read of %d at %d differs" % (ln, off))
if os.lseek(fd, 0, os.SEEK_DATA) != 0:
    sys.exit("odd.img: SEEK_DATA 0 is not 0")
if os.lseek(fd, 0, os.SEEK_HOLE) < 300000 // 4096 * 4096:
    sys.exit("odd.img: a hole before offset 300000, where there is data")
os.close(fd)
EOF

note "du, cp --sparse=always"
du_kb=$(du -k "$dir/big.img" | cut -f1)
[ "$du_kb" -lt 65536 ] || fail "du says $du_kb KiB for the mounted big.img"
cp --sparse=always "$dir/big.img" copy.img
copy_kb=$(du -k copy.img | cut -f1)
[ "$copy_kb" -lt 65536 ] || fail "du says $copy_kb KiB for the sparse copy"
cmp big.img copy.img || fail "the sparse copy differs"

vumount mnt
exit 0
