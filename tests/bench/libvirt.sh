#!/usr/bin/env bash
# tests/bench/libvirt.sh [SIZE_GIB] [DATA_GIB] [WRITES_MIB]: vmbak ingest --libvirt of a running
# TCG domain with one qcow2 disk of SIZE_GIB (default 4) holding DATA_GIB (default 2) of random
# data: time and bytes read of the full point, then, after WRITES_MIB (default 64) of scattered
# 256 KiB writes through the guest's disk (HMP qemu-io), of the incremental point; next to
# `qemu-img convert -U -O raw` of the whole disk in the same run. A libvirtd of its own
# (tests/libvirt.sh), everything under TMPDIR (default /var/tmp). Not part of make check.
set -euo pipefail
# shellcheck source=../libvirt.sh
. "$(dirname "${BASH_SOURCE[0]}")/../libvirt.sh"
export TMPDIR=${TMPDIR:-/var/tmp}
libvirt_ns "$@"
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
size=${1:-4} data=${2:-2} writes=${3:-64}
T=$TESTTMP
cd "$T"
libvirt_start
unset VMBAK_PASSPHRASE_FILE
export VMBAK_PASSPHRASE=bench-passphrase

qemu-img create -q -f qcow2 disk.qcow2 "${size}G"
# DATA_GIB of random data in 64 MiB pieces spread over the disk.
python3 - "$size" "$data" <<'EOF' >plan
import random, sys
size, data = int(sys.argv[1]) << 30, int(sys.argv[2]) << 30
piece = 64 << 20
slots = list(range(size // piece))
random.Random(3).shuffle(slots)
for s in sorted(slots[: data // piece]):
    print(s * piece)
EOF
raw=$T/fill.raw
truncate -s "${size}G" "$raw"
while read -r off; do
	head -c $((64 << 20)) /dev/urandom | dd of="$raw" bs=1M seek=$((off >> 20)) conv=notrunc \
		status=none
done <plan
qemu-img convert -f raw -O qcow2 "$raw" disk.qcow2
rm -f "$raw"
cat >d.xml <<EOF
<domain type='qemu'><name>bench</name><memory unit='MiB'>64</memory>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='$T/disk.qcow2'/><target dev='vda' bus='virtio'/></disk>
<memballoon model='none'/></devices></domain>
EOF
virsh_t define d.xml >/dev/null
libvirt_forget bench
virsh_t start bench >/dev/null
"$VMBAK" init v >/dev/null

secs() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	python3 -c "print('%.2f' % ($t1 - $t0))"
}
read_bytes() {
	"$VMBAK" info v bench --json | python3 -c 'import json, sys
print(sum(d["read_bytes"] for d in json.load(sys.stdin)["disks"]))'
}
sync
echo 3 >/proc/sys/vm/drop_caches
t_conv=$(secs qemu-img convert -U -f qcow2 -O raw disk.qcow2 conv.raw)
rm -f conv.raw
sync
echo 3 >/proc/sys/vm/drop_caches
t_full=$(secs "$VMBAK" ingest v bench --libvirt bench)
b_full=$(read_bytes)
# WRITES_MIB of 256 KiB writes at random 256 KiB-aligned offsets.
python3 - "$size" "$writes" <<'EOF' >writes
import random, sys
size, n = int(sys.argv[1]) << 30, (int(sys.argv[2]) << 20) // (256 << 10)
r = random.Random(9)
for o in sorted(r.sample(range(size // (256 << 10)), n)):
    print(o * (256 << 10))
EOF
while read -r off; do
	virsh_t qemu-monitor-command bench --hmp \
		"qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0x5a $off 262144\"" \
		>/dev/null
done <writes
sync
echo 3 >/proc/sys/vm/drop_caches
t_incr=$(secs "$VMBAK" ingest v bench --libvirt bench)
b_incr=$(read_bytes)
printf '%-34s %10s %14s\n' what seconds bytes_read
printf '%-34s %10s %14s\n' "qemu-img convert -U -O raw (whole)" "$t_conv" "$((size << 30))"
printf '%-34s %10s %14s\n' "ingest --libvirt, full" "$t_full" "$b_full"
printf '%-34s %10s %14s\n' "ingest --libvirt, incremental" "$t_incr" "$b_incr"
echo "disk ${size} GiB, ${data} GiB of data, ${writes} MiB of scattered 256 KiB writes"
