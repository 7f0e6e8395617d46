#!/usr/bin/env bash
# tests/fuse/restore_boot.sh: a guest boots from what the vault gives back.
#
# A disk with an ext4 file system holding a known file is backed up; a tiny Linux guest
# (tests/guest.sh: Debian's cloud kernel, a busybox initramfs, QEMU with accel=tcg under a time
# limit) then boots with, as its disk, in turn: the raw image of `vmbak restore --to`, the
# qcow2 image of `vmbak restore --format qcow2`, and the image inside a vmbakfs mount, read
# straight from the vault. Each time the guest mounts the disk, prints the SHA-256 of the file
# and powers off; it must match the one taken before the backup.
#
# Then instant recovery: `vmbak restore --instant --mount MNT` mounts the vault and writes a
# qcow2 overlay backed by the image in the mount. The guest boots from the overlay, writes a
# file (into the overlay: the vault and the image in the mount are unchanged), and keeps
# re-reading its file with the page cache dropped. QMP block-stream then copies the data off
# the vault into the overlay while the guest runs; the vault is unmounted; the guest must go on
# reading the right bytes, now from the overlay alone.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
need_cmd mkfs.ext4 debugfs python3 sha256sum
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
if grep -q rb.live /proc/cmdline; then
	# Instant recovery: write, then read for as long as the host lets the guest run.
	mount -t ext4 /dev/vda /mnt || echo "@@RB FATAL cannot mount /dev/vda"
	echo "written in the overlay" >/mnt/data/written.txt
	sync
	i=0
	while :; do
		echo 3 >/proc/sys/vm/drop_caches
		echo "@@RB sha $i $(sha256sum </mnt/data/payload.bin | cut -d' ' -f1)"
		i=$((i + 1))
		sleep 0.3
	done
fi
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

note "instant recovery: an overlay on the mount, block-stream, then the mount goes away"
img_sha=$(sha256sum <full/root.img | cut -d' ' -f1)
expect_status 0 "$VMBAK" restore v guest --to inst --instant --mount mnt
expect_stdout "^mounted vault v on $T/mnt"
expect_stdout "^root: .* -> inst/root\.qcow2, an overlay on $T/mnt/guest/$rp/root\.img$"
echo "fuse $T/mnt" >>"$_lib_state"
# (the output is taken whole first: under pipefail, grep -q quitting early could fail qemu-img)
info=$(qemu-img info inst/root.qcow2) || fail "qemu-img info of the overlay failed"
grep -q "^backing file: $T/mnt/guest/$rp/root.img$" <<<"$info" ||
	fail "the overlay's backing file is not the image in the mount"
log=$T/boot-live.log
timeout -s KILL 300 qemu-system-x86_64 -machine q35,accel=tcg -m 256 -smp 1 \
	-nodefaults -no-user-config -display none -no-reboot -serial "file:$log" \
	-qmp "unix:$T/qmp.sock,server=on,wait=off" \
	-kernel "$VMLINUZ" -initrd initrd.gz -append "console=ttyS0 quiet loglevel=3 rb.live" \
	-drive "file=inst/root.qcow2,if=virtio,format=qcow2,id=root" </dev/null >"$log.qemu" 2>&1 &
qpid=$!
at_exit "kill $qpid 2>/dev/null"
# shas N: waits until the guest printed N readings, then prints them (one per line).
shas() {
	local k
	for ((k = 0; k < 600; k++)); do
		[ -f "$log" ] && [ "$(tr -d '\r' <"$log" | grep -c '^@@RB sha ')" -ge "$1" ] && break
		kill -0 "$qpid" 2>/dev/null || break
		sleep 0.2
	done
	[ -f "$log" ] && tr -d '\r' <"$log" | awk '$1 == "@@RB" && $2 == "sha" { print $4 }'
}
seen=$(shas 2 | sort -u)
[ "$seen" = "$want" ] || fail "from the overlay on the mount the guest read: $seen"
python3 - "$T/qmp.sock" <<'EOF' || fail "block-stream did not complete"
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(name, **args):
    f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
    f.flush()
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            if "error" in m:
                sys.exit("%s: %s" % (name, m["error"]))
            return m["return"]
json.loads(f.readline())  # the greeting
cmd("qmp_capabilities")
cmd("block-stream", **{"job-id": "pull", "device": "root"})
deadline = time.time() + 240
while cmd("query-block-jobs"):
    if time.time() > deadline:
        sys.exit("block-stream still running after 240 s")
    time.sleep(0.2)
for b in cmd("query-block"):
    if b["device"] == "root" and b["inserted"].get("backing_file"):
        sys.exit("the drive still has a backing file: %s" % b["inserted"]["backing_file"])
EOF
vumount mnt
before=$(shas 0 | wc -l)
after=$(shas $((before + 3)) | tail -n +$((before + 1)) | sort -u)
[ "$after" = "$want" ] || fail "with the vault unmounted the guest read: ${after:-nothing}"
kill -0 "$qpid" 2>/dev/null || fail "the guest stopped"
kill "$qpid"
wait "$qpid" 2>/dev/null || true
note "the guest kept reading its file after the vault was unmounted"
vmount v mnt
[ "$(sha256sum <"mnt/guest/$rp/root.img" | cut -d' ' -f1)" = "$img_sha" ] ||
	fail "the image in the vault changed"
vumount mnt
info=$(qemu-img info inst/root.qcow2) || fail "qemu-img info of the overlay failed"
grep -q '^backing file' <<<"$info" && fail "the overlay still has a backing file"
qemu-img convert -O raw inst/root.qcow2 live.raw
[ "$(debugfs -R 'cat /data/written.txt' live.raw 2>/dev/null)" = "written in the overlay" ] ||
	fail "the guest's write is not in the overlay"
expect_status 0 "$VMBAK" verify v
