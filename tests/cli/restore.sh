#!/usr/bin/env bash
# tests/cli/restore.sh: vmbak restore as an operator runs it.
#
#   - --to DIR: every disk back as a sparse raw image equal to its source (cmp), mode 0600, of
#     the latest and of an older point; a second run is refused without --force, and then
#     leaves the files as they were; --disk NAME picks disks; --format qcow2 gives images that
#     qemu-img check accepts and qemu-img compare finds equal to the sources.
#   - --disk NAME=DEST onto a loop device full of garbage (exact over the disk's size, the rest
#     untouched) and onto a larger file; refused onto a mounted device, a smaller file, the
#     vault's own file, a directory.
#   - --keyvault: the escrowed LUKS secret comes back as DIR/<disk>.key (0600) and opens the
#     restored LUKS image (cryptsetup --test-passphrase); a wrong key vault passphrase or
#     another key vault stops the restore before any image is written.
#   - A damaged chunk stops the restore with one line; no image and no .part file are left.
#   - A restore killed with SIGKILL leaves only a .part file; run again, it completes.
#   - Bad input for every argument: one line, exit 2 (or 1), nothing written. (--instant
#     itself boots a guest in tests/fuse/restore_boot.sh.)
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_programs
need_cmd python3 qemu-img cmp cryptsetup mdb_dump
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE VMBAK_KEYVAULT_PASSPHRASE \
	VMBAK_KEYVAULT_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"

# Disks: sda data, zeros and a hole, a size that is no multiple of 512; sdb mostly hole.
python3 - <<'EOF'
import random
r = random.Random(13)
with open("sda.img", "wb") as f:
    f.write(r.randbytes(3 << 20))
    f.write(bytes(1 << 20))
    f.seek(6 << 20)
    f.write(r.randbytes(1 << 20))
    f.write(b"tail" * 1000 + b"!")
with open("sdb.img", "wb") as f:
    f.truncate(16 << 20)
    f.seek(9 << 20)
    f.write(b"sdb says hello\n" * 4000)
EOF
printf 'restore test passphrase\n' >pass
printf 'key vault passphrase\n' >kvpass
printf 'wrong passphrase\n' >wrong
chmod 600 pass kvpass wrong
export VMBAK_PASSPHRASE_FILE=$T/pass

expect_status 0 "$VMBAK" init v --chunk-size 64K
expect_status 0 "$VMBAK" ingest v vm1 --disk sda=sda.img --disk sdb=sdb.img
old=$(tail -n 1 "$OUT")
cp sda.img sda.old
dd if=/dev/urandom of=sda.img bs=4096 count=3 seek=100 conv=notrunc status=none
expect_status 0 "$VMBAK" ingest v vm1 --disk sda=sda.img --disk sdb=sdb.img

note "--to DIR: the latest point, then an older one"
expect_ok "$VMBAK" restore v vm1 --to out
expect_stdout '^sda: 7\.0 MiB -> out/sda\.img$'
expect_stdout '^restored 2 disks of vm1/'
cmp sda.img out/sda.img || fail "out/sda.img differs from its source"
cmp sdb.img out/sdb.img || fail "out/sdb.img differs from its source"
[ "$(stat -c %a out/sda.img)" = 600 ] || fail "a restored image is not mode 0600"
[ "$(stat -c %a out)" = 700 ] || fail "the new directory is not mode 0700"
[ "$(du -k out/sdb.img | cut -f1)" -lt 1024 ] || fail "out/sdb.img is not sparse"
ls out | grep -q part && fail "a .part file is left"
expect_ok "$VMBAK" restore v "vm1/$old" --to old --disk sda
cmp sda.old old/sda.img || fail "the older point's sda differs"
[ ! -e old/sdb.img ] || fail "--disk sda also restored sdb"

note "existing files are refused without --force"
sha256sum out/* >sums
expect_status 1 "$VMBAK" restore v vm1/latest --to out
expect_stderr "'out/sda\.img' exists \(use --force to replace it\)"
sha256sum -c --quiet sums || fail "a refused restore changed the files"
expect_ok "$VMBAK" restore v "vm1/$old" --to out --force
cmp sda.old out/sda.img || fail "--force did not replace out/sda.img"

note "--format qcow2"
expect_ok "$VMBAK" restore v vm1 --to q --format qcow2
for d in sda sdb; do
	qemu-img check -q q/$d.qcow2 || fail "qemu-img check refuses q/$d.qcow2"
	qemu-img compare -q -f raw -F qcow2 $d.img q/$d.qcow2 || fail "q/$d.qcow2 differs"
	[ "$(stat -c %a q/$d.qcow2)" = 600 ] || fail "q/$d.qcow2 is not mode 0600"
done
[ -z "$(ls q | grep -v '\.qcow2$')" ] || fail "qcow2 restore left other files: $(ls q)"

note "--disk NAME=DEST onto a larger file and a loop device"
head -c $((20 << 20)) /dev/urandom >dest.img
tail -c $(((20 << 20) - $(stat -c %s sdb.img))) dest.img >dest.tail
expect_ok "$VMBAK" restore v vm1 --disk sdb=dest.img
cmp -n "$(stat -c %s sdb.img)" sdb.img dest.img || fail "sdb onto a file differs"
tail -c $(((20 << 20) - $(stat -c %s sdb.img))) dest.img | cmp - dest.tail ||
	fail "bytes past the disk's size were changed"
head -c $((4 << 20)) /dev/zero >small.img
expect_status 1 "$VMBAK" restore v vm1 --disk sda=small.img
expect_stderr "it holds 4\.0 MiB \(4194304 bytes\), the disk needs"
cmp -s small.img <(head -c $((4 << 20)) /dev/zero) || fail "a refused restore wrote small.img"
expect_status 1 "$VMBAK" restore v vm1 --disk sda=v/data.mdb
expect_stderr "the vault's own file"
expect_status 1 "$VMBAK" restore v vm1 --disk sda=out
expect_stderr "not a block device or regular file"
expect_status 1 "$VMBAK" restore v vm1 --disk sda=nothing-here
if [ "$(id -u)" -eq 0 ] && command -v losetup >/dev/null && truncate -s 9M loop.img &&
	LOOP=$(losetup -f --show loop.img 2>/dev/null); then
	echo "loop $LOOP" >>"$_lib_state"
	dd if=/dev/urandom of="$LOOP" bs=1M count=9 status=none
	expect_ok "$VMBAK" restore v vm1 --disk "sda=$LOOP"
	cmp -n "$(stat -c %s sda.img)" sda.img "$LOOP" || fail "sda onto a loop device differs"
	mkfs.ext4 -q "$LOOP"
	mkdir lmnt
	mount "$LOOP" lmnt
	echo "kmount $T/lmnt" >>"$_lib_state"
	expect_status 1 "$VMBAK" restore v vm1 --disk "sda=$LOOP"
	expect_stderr "it is in use"
	umount lmnt
else
	[ "${CI:-}" = true ] && fail "no loop device for the block device restore"
	note "no loop device here: the block device cases are not run"
fi

note "--keyvault: the escrowed secret of a LUKS1 disk"
printf 'the LUKS passphrase' >luks.pass
for try in 1 2 3 4 5; do
	qemu-img convert -f raw -O luks --object secret,id=s0,file=luks.pass \
		-o key-secret=s0,iter-time=50 sda.img luks.img && break
	[ "$try" -lt 5 ] || fail "qemu-img convert -O luks failed"
	rm -f luks.img
done
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv kek --type rsa-3072 --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault secret set kv luks1 --value-file luks.pass --kek kek \
	--passphrase-file kvpass
expect_status 0 "$VMBAK" ingest v vm2 --disk os=luks.img --disk data=sdb.img --keyvault kv \
	--escrow os=luks1
expect_ok "$VMBAK" restore v vm2 --to k --keyvault kv --keyvault-passphrase-file kvpass
expect_stdout "^os: .* -> k/os\.img, key k/os\.key$"
expect_stdout "^data: no escrowed key$"
cmp luks.pass k/os.key || fail "k/os.key is not the escrowed secret"
[ "$(stat -c %a k/os.key)" = 600 ] || fail "k/os.key is not mode 0600"
cmp luks.img k/os.img || fail "k/os.img differs"
cryptsetup open --test-passphrase --key-file k/os.key k/os.img ||
	fail "cryptsetup refuses the restored key for the restored image"
expect_status 1 "$VMBAK" restore v vm2 --to k2 --keyvault kv --keyvault-passphrase-file wrong
[ -z "$(ls k2 2>/dev/null)" ] || fail "a wrong key vault passphrase left files: $(ls k2)"
expect_status 0 "$VMBAK" keyvault init kv2 --passphrase-file kvpass
expect_status 1 "$VMBAK" restore v vm2 --to k3 --keyvault kv2 --keyvault-passphrase-file kvpass
expect_stderr "belongs to key vault"
[ -z "$(ls k3 2>/dev/null)" ] || fail "another key vault left files: $(ls k3)"

note "a damaged chunk stops the restore, and leaves nothing"
cp -a v vd
rm -f vd/lock.mdb
flip_chunks "$T/vd" vm1 sda 5
expect_status 1 "$VMBAK" restore vd vm1 --to dmg
expect_stderr "the vault is damaged"
[ -z "$(ls dmg)" ] || fail "a failed restore left files: $(ls dmg)"
expect_status 1 "$VMBAK" restore vd vm1 --to dmgq --format qcow2
[ -z "$(ls dmgq)" ] || fail "a failed qcow2 restore left files: $(ls dmgq)"

note "kill -9 in the middle, then again"
head -c $((96 << 20)) /dev/urandom >big.img
expect_status 0 "$VMBAK" ingest v vm3 --disk big=big.img
killed=0
for try in 1 2 3; do
	rm -rf kil
	"$VMBAK" restore v vm3 --to kil >/dev/null 2>&1 &
	pid=$!
	for ((k = 0; k < 500; k++)); do
		[ -e kil/big.img.part ] && break
		sleep 0.01
	done
	kill -STOP "$pid" 2>/dev/null || true
	if [ ! -e kil/big.img ] && [ -e kil/big.img.part ]; then
		kill -KILL "$pid"
		wait "$pid" 2>/dev/null || true
		killed=1
		break
	fi
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
done
[ "$killed" -eq 1 ] || fail "could not stop a restore in the middle"
[ ! -e kil/big.img ] || fail "a killed restore left a complete-looking file"
expect_ok "$VMBAK" restore v vm3 --to kil
cmp big.img kil/big.img || fail "the restore run again differs"
[ ! -e kil/big.img.part ] || fail "the .part file is left after the second run"

note "bad input"
keep_going
expect_status 2 "$VMBAK" restore
expect_status 2 "$VMBAK" restore v
expect_status 2 "$VMBAK" restore v vm1
expect_stderr "give --to DIR, or --disk NAME=DEST"
expect_status 2 "$VMBAK" restore v vm1 --to
expect_status 2 "$VMBAK" restore v vm1 --to ''
expect_status 2 "$VMBAK" restore v vm1 --to x extra
expect_status 2 "$VMBAK" restore v vm1 --to x --format vmdk
expect_status 2 "$VMBAK" restore v vm1 --to x --disk 'bad/name'
expect_status 2 "$VMBAK" restore v vm1 --to x --disk sda --disk sda
expect_status 2 "$VMBAK" restore v vm1 --disk sda=dest.img --disk sda=small.img
expect_status 2 "$VMBAK" restore v vm1 --disk sda=
expect_status 2 "$VMBAK" restore v vm1 --to x --disk sda=dest.img
expect_status 2 "$VMBAK" restore v vm1 --disk sda=dest.img --disk sdb
expect_status 2 "$VMBAK" restore v vm1 --disk sda=dest.img --keyvault kv
expect_status 2 "$VMBAK" restore v vm1 --disk sda=dest.img --format qcow2
expect_status 2 "$VMBAK" restore v vm1 --to x --keyvault-passphrase-file kvpass
expect_status 2 "$VMBAK" restore v vm1 --to x --keyvault ''
expect_status 2 "$VMBAK" restore v vm1 --to x --passphrase secret
expect_status 2 "$VMBAK" restore v vm1 --to x --bogus
expect_status 2 "$VMBAK" restore v vm1 --to x --mount m
expect_stderr "--mount goes with --instant"
expect_status 2 "$VMBAK" restore v vm1 --to x --instant --mount ''
expect_status 2 "$VMBAK" restore v vm1 --to x --instant --format raw
expect_status 2 "$VMBAK" restore v vm1 --disk sda=dest.img --instant
expect_status 1 "$VMBAK" restore v vm1 --to x --instant
expect_stderr "--instant needs vault 'v' mounted"
expect_status 1 "$VMBAK" restore v vm1 --to x --instant --mount no/such/dir
expect_status 1 "$VMBAK" restore v vm1 --to x --instant --mount /proc
expect_stderr "is a mount point of something else"
expect_status 2 "$VMBAK" restore v 'vm1/not-an-id' --to x
expect_status 1 "$VMBAK" restore v vm1 --to x --disk sdz
expect_stderr "has no disk 'sdz' \(its disks: sda, sdb\)"
expect_status 1 "$VMBAK" restore v vm9 --to x
expect_stderr "no VM 'vm9'"
expect_status 1 "$VMBAK" restore v vm1/2001-01-01T00:00:00Z --to x
expect_status 1 "$VMBAK" restore nowhere vm1 --to x
expect_status 1 "$VMBAK" restore v vm1 --to sda.img
expect_stderr "not a directory"
expect_status 1 "$VMBAK" restore v vm1 --to no/such/dir
env -u VMBAK_PASSPHRASE_FILE "$VMBAK" restore v vm1 --to x </dev/null >/dev/null 2>err &&
	check_failed "an encrypted vault restored without a passphrase"
[ ! -e x ] || [ -z "$(ls x)" ] || check_failed "bad input left files in x: $(ls x)"
expect_ok "$VMBAK" restore --help
expect_stdout '^usage: vmbak restore'
finish_checks
