#!/usr/bin/env bash
# A real ext4 disk image through an encrypted vault and back: ingest it, mount the vault, and
# check the image in the mount with the tools an operator restoring it would use.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd mkfs.ext4 e2fsck qemu-img losetup python3 cmp diff
need_programs
cd "$TESTTMP"

printf 'ext4 roundtrip passphrase\n' >pass
chmod 600 pass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass

note "making a 96 MiB ext4 image from files of this machine"
src=$(mk_ext4_image "$TESTTMP/os.img" 96)
size=$(stat -c %s os.img)

expect_status 0 "$VMBAK" init "$TESTTMP/v" --encryption aes-256-gcm
expect_status 0 "$VMBAK" ingest "$TESTTMP/v" vm1 --disk os=os.img
id=$(tail -n 1 "$OUT")
[ -n "$id" ] || fail "ingest printed no recovery point id"
note "recovery point $id"

vmount "$TESTTMP/v" mnt
img=mnt/vm1/$id/os.img

[ -d "mnt/vm1/$id" ] || fail "mnt/vm1/$id is missing: $(ls -la mnt/vm1)"
[ -L mnt/vm1/latest ] || fail "mnt/vm1/latest is not a symlink"
[ "$(readlink mnt/vm1/latest)" = "$id" ] ||
	fail "mnt/vm1/latest points to '$(readlink mnt/vm1/latest)', not '$id'"
[ "$(stat -c %s "$img")" = "$size" ] || fail "size of $img is $(stat -c %s "$img"), not $size"
mode=$(stat -c %A "$img")
[ "$mode" = "-r--r--r--" ] || fail "mode of $img is $mode, not -r--r--r--: $(ls -l "$img")"

note "O_DIRECT reads in small pieces (no kernel read-ahead: the mount decodes ahead)"
# First, on an empty cache, so what is read is what the prefetcher decoded.
dd if="$img" of=direct.img bs=64k iflag=direct status=none || fail "dd iflag=direct failed"
cmp os.img direct.img || fail "O_DIRECT 64 KiB reads differ from the source"
dd if="$img" of=direct4k.img bs=4k count=4096 skip=1000 iflag=direct status=none ||
	fail "dd iflag=direct bs=4k failed"
dd if=os.img of=src4k.img bs=4k count=4096 skip=1000 status=none
cmp src4k.img direct4k.img || fail "O_DIRECT 4 KiB reads differ from the source"
rm -f direct.img direct4k.img src4k.img

note "cmp, qemu-img compare"
cmp os.img "$img" || fail "cmp: the mounted image differs from the source"
cmp os.img mnt/vm1/latest/os.img || fail "cmp through the latest link differs"
qemu-img compare -f raw -F raw os.img "$img" || fail "qemu-img compare reports a difference"

note "e2fsck -fn on the mounted image"
e2fsck -fn "$img" || fail "e2fsck -fn on the mounted image failed with status $?"

note "cp --sparse=always"
cp --sparse=always "$img" copy.img
cmp os.img copy.img || fail "the sparse copy differs from the source"
copy_kb=$(du -k copy.img | cut -f1)
[ $((copy_kb * 1024)) -lt "$size" ] ||
	fail "the copy is not sparse: du says ${copy_kb} KiB for $size bytes"
rm -f copy.img

note "losetup -r, mount -o ro, diff -r against the source files"
dev=$(loop_attach "$img")
kmount_ro "$dev" ext4
diff -r -x lost+found "$src" ext4 >diff.out ||
	{ head -n 20 diff.out >&2; fail "diff -r of the loop-mounted image and '$src' differs"; }
[ "$(find ext4 -type f | wc -l)" -gt 10 ] || fail "the loop-mounted image holds too few files"
kumount ext4
loop_detach "$dev"

note "200 reads at random offsets, st_blocks, manifest.json"
python3 - os.img "$img" "mnt/vm1/$id/manifest.json" "$id" <<'EOF' || fail "python checks failed"
import json, os, random, sys
srcp, imgp, manp, rpid = sys.argv[1:5]
size = os.path.getsize(srcp)
rnd = random.Random(1234)
with open(srcp, "rb") as s, open(imgp, "rb", buffering=0) as m:
    for i in range(200):
        if i % 4 == 0:
            ln = rnd.randint(1, 4096)
        elif i % 4 == 1:
            ln = rnd.randint(4096, 1 << 20)
        else:
            ln = rnd.randint(1, 200000)
        off = rnd.randrange(0, size)
        if i == 0:
            off = size - 1
        if i == 1:
            off, ln = size - 10, 100      # runs past the end: a short read
        s.seek(off)
        want = s.read(ln)
        got = os.pread(m.fileno(), ln, off)
        if got != want:
            sys.exit("read of %d bytes at %d differs (got %d bytes)" % (ln, off, len(got)))
    if os.pread(m.fileno(), 10, size) != b"":
        sys.exit("a read at the end of the image returned data")

# st_blocks: at least the 4 KiB blocks holding non-zero bytes, at most the size; the free space
# of the file system is zeros, which are holes.
nonzero = 0
with open(srcp, "rb") as s:
    while True:
        b = s.read(4096)
        if not b:
            break
        if b.count(0) != len(b):
            nonzero += len(b)
st = os.stat(imgp)
alloc = st.st_blocks * 512
if not (nonzero <= alloc < size):
    sys.exit("st_blocks %d (%d bytes) is not between the %d non-zero bytes and the size %d"
             % (st.st_blocks, alloc, nonzero, size))

with open(manp) as f:
    man = json.load(f)
if man.get("vm") != "vm1":
    sys.exit("manifest.json: vm is %r" % man.get("vm"))
if man.get("id") != rpid:
    sys.exit("manifest.json: id is %r, not %r" % (man.get("id"), rpid))
disks = man.get("disks")
names = [d.get("name") if isinstance(d, dict) else d for d in disks or []]
if names != ["os"]:
    sys.exit("manifest.json: disks are %r" % (disks,))
if isinstance(disks[0], dict) and "size" in disks[0] and disks[0]["size"] != size:
    sys.exit("manifest.json: disk size %r, not %d" % (disks[0]["size"], size))
EOF

note "writes fail with EROFS"
! touch mnt/vm1/x 2>/dev/null || fail "touch mnt/vm1/x succeeded"
! (echo >"$img") 2>/dev/null || fail "writing into $img succeeded"
! rm -f "$img" 2>/dev/null || fail "rm $img succeeded"
! mkdir mnt/newdir 2>/dev/null || fail "mkdir in the mount succeeded"
python3 - "$img" mnt/vm1 <<'EOF' || fail "writes did not fail with EROFS"
import errno, os, sys
img, vmdir = sys.argv[1:3]
for path, flags in ((img, os.O_WRONLY), (img, os.O_RDWR), (os.path.join(vmdir, "x"), os.O_WRONLY | os.O_CREAT)):
    try:
        os.close(os.open(path, flags, 0o644))
    except OSError as e:
        if e.errno != errno.EROFS:
            sys.exit("open(%s, %#o): %s, expected EROFS" % (path, flags, e.strerror))
    else:
        sys.exit("open(%s, %#o) succeeded" % (path, flags))
EOF
cmp os.img "$img" || fail "the image changed after the write attempts"

vumount mnt
is_mounted mnt && fail "mnt is still mounted"
exit 0
