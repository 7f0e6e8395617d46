#!/usr/bin/env bash
# tests/fuse/qemu_guest.sh: points of a running guest that writes all the time boot and hold
# every file the guest had synced.
#
# A tiny Linux guest (tests/guest.sh: Debian's cloud kernel, a busybox initramfs, QEMU with
# accel=tcg under a time limit) runs with a qcow2 disk holding ext4 and a QMP socket. Its init
# mounts the disk read-write and loops: write file N with known content, append N to a log,
# `sync`, print "@@SYNCED N" on the serial console. While it runs, the host takes three points
# with `vmbak ingest --qemu` (the first full, the next two incremental, as manifest.json says),
# noting for each the highest N printed before that ingest started. The guest is then stopped,
# and each point's image in a vmbakfs mount gets a qcow2 overlay (the journal replays into the
# overlay, not the vault); the guest boots from it, mounts the disk, checks files 1..N and the
# first N lines of the log, unmounts and prints its verdict; the host then runs e2fsck -fn on
# the overlay's raw image. Any synced file missing or wrong, or an inconsistent file system, fails.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
need_cmd mkfs.ext4 e2fsck dumpe2fs qemu-img python3
# shellcheck source=../guest.sh
. "$SRCDIR/tests/guest.sh"
if ! guest_tools || ! guest_kernel; then
	[ "${CI:-}" = true ] && fail "$GUEST_WHY (under CI=true the guest must boot)"
	skip "$GUEST_WHY"
fi
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"

cat >init <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	insmod "/lib/modules/$m.ko" || echo "@@QG FATAL insmod $m"
done
# content N: what file N holds.
content() { yes "file $1 of the guest" | head -c 6000; }
if ! mount -t ext4 /dev/vda /mnt; then
	echo "@@QG FATAL cannot mount /dev/vda"
	poweroff -f
fi
check=$(sed -n 's/.*qg\.check=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -z "$check" ]; then
	mkdir -p /mnt/f
	n=1
	while :; do
		content $n >/mnt/f/$n
		echo $n >>/mnt/log
		sync
		echo "@@SYNCED $n"
		n=$((n + 1))
		sleep 0.2
	done
fi
bad=0
i=1
while [ $i -le "$check" ]; do
	if [ ! -f /mnt/f/$i ]; then
		echo "@@QG missing file $i"
		bad=1
	elif ! content $i | cmp -s - /mnt/f/$i; then
		echo "@@QG wrong content in file $i"
		bad=1
	fi
	i=$((i + 1))
done
seq 1 "$check" >/tmp/want
head -n "$check" /mnt/log >/tmp/got 2>/dev/null
cmp -s /tmp/want /tmp/got || { echo "@@QG the log lacks lines of 1..$check"; bad=1; }
echo "@@QG $(ls /mnt/f | wc -l) files"
umount /mnt || { echo "@@QG cannot unmount"; bad=1; }
if [ $bad -eq 0 ]; then echo "@@QG verdict ok $check"; else echo "@@QG verdict bad $check"; fi
poweroff -f
EOF
guest_initramfs "$T/root" init initrd.gz || fail "cannot build the initramfs"

truncate -s 32M disk.raw
mkfs.ext4 -q -F disk.raw
qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2
rm disk.raw
expect_status 0 "$VMBAK" init v --encryption none --chunk-size 16384

# synced: the highest N the live guest printed as synced (0 if none yet).
log=$T/live.log
synced() {
	[ -f "$log" ] || { echo 0; return; }
	tr -d '\r' <"$log" | awk '$1 == "@@SYNCED" && $2 + 0 > n { n = $2 + 0 } END { print n + 0 }'
}
# wait_synced N: waits until the guest printed N as synced; fails after 60 s.
wait_synced() {
	local k
	for ((k = 0; k < 300; k++)); do
		[ "$(synced)" -ge "$1" ] && return 0
		kill -0 "$qpid" 2>/dev/null || fail "the guest stopped: $(tail -c 300 "$log.qemu")"
		sleep 0.2
	done
	fail "the guest did not sync file $1 within 60 s: $(tr -d '\r' <"$log" | grep '@@' | tail -3)"
}

timeout -s KILL 200 qemu-system-x86_64 -machine q35,accel=tcg -m 256 -smp 1 \
	-nodefaults -no-user-config -display none -no-reboot -serial "file:$log" \
	-qmp "unix:$T/qmp.sock,server=on,wait=off" \
	-kernel "$VMLINUZ" -initrd initrd.gz -append "console=ttyS0 quiet loglevel=3 panic=-1" \
	-drive "file=disk.qcow2,if=none,format=qcow2,id=root" \
	-device virtio-blk-pci,drive=root,id=vroot </dev/null >"$log.qemu" 2>&1 &
qpid=$!
at_exit "kill $qpid 2>/dev/null"

# Three points a few files apart; N[k] is what the guest had synced before point k began.
wait_synced 3
declare -a N P
for k in 1 2 3; do
	N[k]=$(synced)
	expect_status 0 "$VMBAK" ingest v vm --qemu qmp.sock
	P[k]=$(tail -n 1 "$OUT")
	note "point ${P[k]}: files 1..${N[k]} synced before it"
	# A few seconds and a few files later (point ids are whole seconds).
	sleep 2
	wait_synced $((N[k] + 6))
done
kill -0 "$qpid" 2>/dev/null || fail "the guest stopped during the points"
kill "$qpid"
wait "$qpid" 2>/dev/null || true
grep -q FATAL "$log" && fail "the live guest: $(tr -d '\r' <"$log" | grep -m 1 FATAL)"

vmount v mnt
python3 - mnt/vm "${P[@]}" <<'EOF' || fail "the points do not say how they were read"
import json, sys
d, ps = sys.argv[1], sys.argv[2:]
for i, p in enumerate(ps):
    r = json.load(open("%s/%s/manifest.json" % (d, p)))["disks"][0]["read"]
    want = ("full", None) if i == 0 else ("incremental", ps[i - 1])
    if (r["mode"], r["base"]) != want:
        sys.exit("point %s was read %s from %s, not %s from %s" % (p, r["mode"], r["base"], *want))
EOF

# check K: boots the guest on an overlay of point K's image; it checks files 1..N[K].
check() {
	local k=$1 p=${P[$1]} blog=$T/check-$1.log st=0 v cpid rec="not needed"
	# (whether the guest's journal replays: the point is a running file system's)
	dumpe2fs -h "$T/mnt/vm/$p/root.img" 2>/dev/null | grep -q needs_recovery && rec="replayed"
	qemu-img create -q -f qcow2 -b "$T/mnt/vm/$p/root.img" -F raw "ov$k.qcow2"
	timeout -s KILL 120 qemu-system-x86_64 -machine q35,accel=tcg -m 256 -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot -serial "file:$blog" \
		-kernel "$VMLINUZ" -initrd initrd.gz \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 qg.check=${N[k]}" \
		-drive "file=ov$k.qcow2,if=virtio,format=qcow2" </dev/null >"$blog.qemu" 2>&1 &
	cpid=$!
	at_exit "kill $cpid 2>/dev/null"
	wait "$cpid" || st=$?
	[ "$st" -eq 0 ] || fail "point $k ($p): qemu exited with $st: $(tail -c 300 "$blog.qemu")"
	v=$(tr -d '\r' <"$blog" | grep '^@@QG verdict' || true)
	[ "$v" = "@@QG verdict ok ${N[k]}" ] ||
		fail "point $k ($p) lost synced data: $(tr -d '\r' <"$blog" | grep '^@@QG' | sed 's/^@@QG //' | head -3 | paste -sd ';')"
	qemu-img convert -O raw "ov$k.qcow2" "ov$k.raw"
	e2fsck -fn "ov$k.raw" >"e2fsck-$k.log" 2>&1 ||
		fail "point $k ($p): the file system is inconsistent: $(grep -v '^Pass\|^e2fsck' "e2fsck-$k.log" | head -2 | paste -sd ';')"
	rm -f "ov$k.raw"
	note "point $k ($p): the guest booted, files 1..${N[k]} are there, e2fsck is clean (journal: $rec)"
}
for k in 1 2 3; do
	check "$k"
done
vumount mnt
