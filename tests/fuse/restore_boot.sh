#!/usr/bin/env bash
# tests/fuse/restore_boot.sh: a guest boots from what the vault gives back.
#
# A disk with an ext4 file system holding a known file is backed up; a tiny Linux guest
# (tests/guest.sh: Debian's cloud kernel, a busybox initramfs, QEMU with accel=tcg under a time
# limit) then boots with, as its disk, in turn: the raw image of `vmbak restore --to`, the
# qcow2 image of `vmbak restore --format qcow2`, and the image inside a vmbakfs mount, read
# straight from the vault. Each time the guest mounts the disk, prints the SHA-256 of the file
# and powers off; it must match the one taken before the backup.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
need_cmd mkfs.ext4 python3 sha256sum
# shellcheck source=../guest.sh
. "$SRCDIR/tests/guest.sh"
if ! guest_tools || ! guest_kernel; then
	[ "${CI:-}" = true ] && fail "$GUEST_WHY (under CI=true the guest must boot)"
	skip "$GUEST_WHY"
fi
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"

mkdir -p tree/data
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(5).randbytes(3 << 20))' \
	>tree/data/payload.bin
echo "restored guest" >tree/data/hello.txt
mkfs.ext4 -q -F -d tree disk.img 48M
want=$(sha256sum <tree/data/payload.bin | cut -d' ' -f1)

cat >init <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	insmod "/lib/modules/$m.ko" || echo "@@RB FATAL insmod $m"
done
if mount -t ext4 -o ro /dev/vda /mnt; then
	echo "@@RB sha $(sha256sum </mnt/data/payload.bin | cut -d' ' -f1)"
	echo "@@RB says $(cat /mnt/data/hello.txt)"
	umount /mnt
else
	echo "@@RB FATAL cannot mount /dev/vda"
fi
poweroff -f
EOF
guest_initramfs "$T/root" init initrd.gz || fail "cannot build the initramfs"

# boot IMAGE FORMAT WHAT: the guest with IMAGE as its (read-only) disk.
boot() {
	local log=$T/boot-$3.log st=0 got
	timeout -s KILL 180 qemu-system-x86_64 -machine q35,accel=tcg -m 256 -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot -serial "file:$log" \
		-kernel "$VMLINUZ" -initrd initrd.gz -append "console=ttyS0 quiet loglevel=3 panic=-1" \
		-drive "file=$1,if=virtio,format=$2,readonly=on" </dev/null >"$log.qemu" 2>&1 || st=$?
	[ "$st" -eq 0 ] || fail "$3: qemu exited with $st: $(tail -c 300 "$log.qemu")"
	got=$(tr -d '\r' <"$log" | awk '$1 == "@@RB" && $2 == "sha" { print $3 }')
	[ "$got" = "$want" ] ||
		fail "$3: the guest read '$got', not $want: $(tr -d '\r' <"$log" | grep '@@RB' | head -3)"
	tr -d '\r' <"$log" | grep -q '^@@RB says restored guest$' || fail "$3: hello.txt is wrong"
	note "$3: the guest booted and read its file"
}

expect_status 0 "$VMBAK" init v --encryption none
expect_status 0 "$VMBAK" ingest v guest --disk root=disk.img
# The source changes after the backup: what boots must be the point, not today's disk.
dd if=/dev/urandom of=disk.img bs=1M count=48 conv=notrunc status=none

expect_status 0 "$VMBAK" restore v guest --to full
boot full/root.img raw "full restore"
expect_status 0 "$VMBAK" restore v guest --to q --format qcow2
boot q/root.qcow2 qcow2 "qcow2 restore"
mkdir mnt
vmount v mnt
rp=$(ls mnt/guest | grep -v latest | head -n 1)
boot "mnt/guest/$rp/root.img" raw "straight from the mount"
vumount mnt
