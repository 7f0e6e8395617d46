#!/usr/bin/env bash
# tests/bench/qemu_incr.sh: full and incremental points of a running QEMU VM (vmbak ingest
# --qemu) next to `qemu-img convert` of the whole disk and, when borg is installed, `borg create`
# of the converted raw image before and after the same writes. The VM (accel=tcg, no guest OS)
# has a 4 GiB qcow2 disk holding about 830 MiB of data (random and text runs, holes between);
# between the points 1024 writes of 64 KiB (64 MiB) land at random offsets through the device
# (HMP qemu-io). Prints wall time and bytes read of each. Not part of make check. Work
# directory: BENCH_DIR (default a new directory under /var/tmp, removed after).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
VMBAK=${VMBAK:-$top/build/vmbak}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/vmbak-qemu.XXXXXX)}
qemu_pid=
cleanup() {
	[ -z "$qemu_pid" ] || { pkill -KILL -P "$qemu_pid" 2>/dev/null || true; wait 2>/dev/null || true; }
	[ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

python3 - <<'EOF'
import os
with open('src.raw', 'wb') as f:
    f.truncate(4 << 30)
    txt = (b'the quick brown fox jumps over the lazy dog\n' * 24000)[:1 << 20]
    for i in range(24):
        f.seek(i * (160 << 20))
        for k in range(64 if i % 2 == 0 else 6):
            f.write(os.urandom(1 << 20) if i % 2 == 0 else txt)
EOF
qemu-img convert -f raw -O qcow2 src.raw d0.qcow2
rm -f src.raw

timeout -s KILL 1200 qemu-system-x86_64 -machine accel=tcg -nodefaults -display none -m 64 \
	-qmp "unix:$dir/qmp.sock,server=on,wait=off" \
	-drive "file=$dir/d0.qcow2,format=qcow2,if=none,id=drive0" \
	-device virtio-blk-pci,drive=drive0,id=vd0 >/dev/null 2>qemu.err &
qemu_pid=$!
for ((i = 0; i < 200; i++)); do [ -S qmp.sock ] && break; sleep 0.05; done

# t LABEL CMD...: runs CMD, prints LABEL and its wall time.
t() {
	local label=$1 t0 t1
	shift
	t0=$(date +%s.%N)
	"$@" >/dev/null
	t1=$(date +%s.%N)
	printf '%-44s %7.2f s' "$label" "$(python3 -c "print($t1 - $t0)")"
}
read_bytes() {
	"$VMBAK" info v vm --json |
		python3 -c 'import json, sys; print(sum(d["read_bytes"] for d in json.load(sys.stdin)["disks"]))'
}

"$VMBAK" init v --encryption none >/dev/null
t "vmbak ingest --qemu, full" "$VMBAK" ingest v vm --qemu "$dir/qmp.sock"
echo "   $(read_bytes) bytes read"
t "qemu-img convert -O raw (whole disk)" qemu-img convert -U -f qcow2 -O raw d0.qcow2 conv.raw
echo "   $(stat -c %s conv.raw) bytes of disk"
if command -v borg >/dev/null; then
	export BORG_PASSPHRASE= BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
	borg init -e none borg >/dev/null 2>&1
	t "borg create --sparse (converted raw), first" borg create --sparse borg::a conv.raw
	echo
fi

python3 - "$dir/qmp.sock" <<'EOF'
import json, random, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile('rw')
def rd():
    while True:
        m = json.loads(f.readline())
        if 'event' not in m:
            return m
rd()
def ex(c, a=None):
    f.write(json.dumps({'execute': c, 'arguments': a or {}}) + '\n')
    f.flush()
    return rd()
ex('qmp_capabilities')
random.seed(7)
for o in random.sample(range((4 << 30) // 65536), 1024):
    r = ex('human-monitor-command',
           {'command-line': 'qemu-io drive0 "write -P %d %d 65536"' % (o % 250 + 1, o * 65536)})
    assert r.get('return') == '', r
EOF
echo "1024 writes of 64 KiB at random offsets (64 MiB)"
t "vmbak ingest --qemu, incremental" "$VMBAK" ingest v vm --qemu "$dir/qmp.sock"
echo "   $(read_bytes) bytes read"
if command -v borg >/dev/null; then
	t "qemu-img convert -O raw again (page cache)" qemu-img convert -U -f qcow2 -O raw d0.qcow2 conv.raw
	echo
	t "borg create --sparse (converted raw), second" borg create --sparse borg::b conv.raw
	echo
fi
