#!/usr/bin/env bash
# tests/cli/qemu_sources.sh: vmbak ingest --qemu, points of a running QEMU VM.
#
# QEMU (accel=tcg, no guest OS) runs with two qcow2 disks (one -drive, one -blockdev) and a QMP
# socket; the test writes into the disks through the devices with HMP qemu-io, as a guest would,
# and mirrors every write into raw reference files. Full point, writes, incremental point: each
# point equals the references as they were at its instant, the incremental one reads only the
# dirty extents, writes made while an ingest runs stay out of its point, and the VM still runs.
# QEMU killed and started again: the next point is full and says so (stderr, manifest.json).
# Two vaults taking turns both stay incremental and correct. An ingest killed by SIGTERM leaves
# the next one incremental and correct. Bad input (a socket that is not QMP, a VM with no
# writable disk, a node that does not exist): one line, exit 1, no point, and nothing left in
# QEMU (no bitmap but the latest point's, no fleecing node, job or export). Escrow of a LUKS
# disk in a qcow2: --escrow with --check-escrow reads the header from the frozen export; the
# unwrapped secret opens the point's image; a wrong secret or a disk the VM does not have is
# refused in one line, with no point and QEMU's bitmaps as they were.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_programs
need_cmd qemu-system-x86_64 qemu-img python3 timeout
plain_vault
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

cat >"$T/qmp.py" <<'EOF'
# qmp.py SOCKET CMD [JSON-ARGS]: runs one QMP command, prints its "return" as JSON; exit 1 on
# a QMP error. CMD "hmp" runs a human monitor command line and fails on any answer (qemu-io
# prints its report on QEMU's stdout, its errors in the answer).
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(sys.argv[1])
f = s.makefile('rw')
def rd():
    while True:
        m = json.loads(f.readline())
        if 'event' not in m:
            return m
rd()
def ex(cmd, args=None):
    f.write(json.dumps({'execute': cmd, 'arguments': args or {}}) + '\n')
    f.flush()
    m = rd()
    if 'error' in m:
        sys.exit('qmp: %s: %s' % (cmd, m['error'].get('desc')))
    return m['return']
ex('qmp_capabilities')
if sys.argv[2] == 'hmp':
    out = ex('human-monitor-command', {'command-line': sys.argv[3]})
    if out.strip():
        sys.exit('hmp: %s: %s' % (sys.argv[3], out))
else:
    print(json.dumps(ex(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)))
EOF

QMP=$T/qmp.sock
qemu_pid=
start_qemu() {
	rm -f "$QMP"
	timeout -s KILL 500 qemu-system-x86_64 -machine accel=tcg -nodefaults -display none \
		-m 64 -qmp "unix:$QMP,server=on,wait=off" \
		-drive "file=$T/d0.qcow2,format=qcow2,if=none,id=drive0" \
		-device virtio-blk-pci,drive=drive0,id=vd0 \
		-blockdev "driver=file,filename=$T/d1.qcow2,node-name=f1" \
		-blockdev driver=qcow2,file=f1,node-name=n1 \
		-device virtio-blk-pci,drive=n1,id=vd1 \
		-drive "file=$T/r2.raw,format=raw,if=none,id=raw2" \
		-device virtio-blk-pci,drive=raw2,id=vr2 \
		-drive "file=$T/ro.raw,format=raw,if=none,id=rodrive,readonly=on" \
		-device virtio-blk-pci,drive=rodrive,id=vro >/dev/null 2>>"$T/qemu.err" &
	qemu_pid=$!
	echo "$qemu_pid" >>"$T/pids"
	for ((i = 0; i < 200; i++)); do
		[ -S "$QMP" ] && python3 "$T/qmp.py" "$QMP" query-status >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	fail "QEMU did not start: $(cat "$T/qemu.err")"
}
stop_qemu() {
	if [ -n "$qemu_pid" ]; then
		# qemu_pid is timeout's: QEMU is its child, killed as a crash would.
		pkill -KILL -P "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
		qemu_pid=
	fi
}
at_exit "for p in \$(cat '$T/pids' 2>/dev/null); do kill -TERM \$p 2>/dev/null; done; true"

qemu-img create -q -f qcow2 "$T/d0.qcow2" 64M
qemu-img create -q -f qcow2 "$T/d1.qcow2" 32M
truncate -s 1M "$T/ro.raw"
truncate -s 16M "$T/r2.raw"
truncate -s 16M "$T/ref2.raw"
truncate -s 64M "$T/ref0.raw"
truncate -s 32M "$T/ref1.raw"

# w DISK OFFSET LENGTH PATTERN: a guest write (through the device) and its mirror in refN.raw.
w() {
	local dev
	case "$1" in
	0) dev=drive0 ;;
	1) dev="-d /machine/peripheral/vd1/virtio-backend" ;;
	2) dev=raw2 ;;
	esac
	python3 "$T/qmp.py" "$QMP" hmp "qemu-io $dev \"write -P $4 $2 $3\"" || fail "write $*"
	python3 - "$T/ref$1.raw" "$2" "$3" "$4" <<'EOF'
import sys
f, off, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
with open(f, 'r+b') as fh:
    fh.seek(off)
    fh.write(bytes([p]) * n)
EOF
}

# snap NAME: reference copies of both disks as they are now.
snap() {
	cp --sparse=always "$T/ref0.raw" "$T/$1.0.raw"
	cp --sparse=always "$T/ref1.raw" "$T/$1.1.raw"
	cp --sparse=always "$T/ref2.raw" "$T/$1.2.raw"
}

# ingest VAULT: a point of VM vm from QEMU; prints its id.
ingest() {
	expect_status 0 "$VMBAK" ingest "$1" vm --qemu "$QMP"
	tail -n 1 "$OUT"
}

# read_bytes VAULT: bytes the latest point read.
read_bytes() {
	"$VMBAK" info "$1" vm --json | python3 -c \
		'import json, sys; print(sum(d["read_bytes"] for d in json.load(sys.stdin)["disks"]))'
}

# check VAULT ID SNAP: the point's images equal the snapshot.
check() {
	vmount "$1" "$M"
	cmp "$M/vm/$2/drive0.img" "$T/$3.0.raw" || fail "$1/$2: drive0 differs from $3"
	cmp "$M/vm/$2/vd1.img" "$T/$3.1.raw" || fail "$1/$2: vd1 differs from $3"
	cmp "$M/vm/$2/raw2.img" "$T/$3.2.raw" || fail "$1/$2: raw2 differs from $3"
	vumount "$M"
}

# manifest_read VAULT ID: "MODE BASE" of drive0 in the point's manifest.json.
manifest_read() {
	vmount "$1" "$M"
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))["disks"][0]["read"]
print(d["mode"], d["base"])' "$M/vm/$2/manifest.json"
	vumount "$M"
}

# clean_qemu VAULT ID: QEMU holds no node, job or export of ours, and of our bitmaps only
# the point's, recording.
clean_qemu() {
	local uuid
	uuid=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["uuid"])' \
		"$1/vmbak-vault.json")
	python3 "$T/qmp.py" "$QMP" query-named-block-nodes >"$T/nodes.json"
	python3 "$T/qmp.py" "$QMP" query-block-jobs >"$T/jobs.json"
	python3 "$T/qmp.py" "$QMP" query-block >"$T/blocks.json"
	python3 - "$T" "$uuid" "$2" <<'EOF' || fail "QEMU is not clean after '$1' point $2"
import json, sys
t, uuid, rp = sys.argv[1:]
nodes = json.load(open(t + '/nodes.json'))
assert not [n for n in nodes if n['node-name'].startswith('vmbak-')], 'fleecing node left'
assert not json.load(open(t + '/jobs.json')), 'block job left'
for b in json.load(open(t + '/blocks.json')):
    ins = b.get('inserted') or {}
    if ins.get('ro'):
        continue
    mine = [m for m in ins.get('dirty-bitmaps', b.get('dirty-bitmaps', []))
            if m['name'].startswith('vmbak-' + uuid)]
    want = ['vmbak-%s@%s' % (uuid, rp)] if rp != '-' else []
    assert [m['name'] for m in mine] == want, 'bitmaps of %s: %s' % (b['device'], mine)
    assert all(m['recording'] for m in mine), 'bitmap not recording'
EOF
}

start_qemu
w 0 0 1048576 0x41
w 0 $((20 << 20)) 65536 0x42
w 1 $((1 << 20)) 131072 0x43

# --- full point, writes, incremental point
snap s1
p1=$(ingest "$V")
clean_qemu "$V" "$p1"
w 0 $((4 << 20)) 65536 0x44
w 1 0 65536 0x45
w 0 0 4096 0x46
w 2 $((3 << 20)) 65536 0x4c
snap s2
p2=$(ingest "$V")
clean_qemu "$V" "$p2"
rb=$(read_bytes "$V")
# Dirty: 64 KiB + 64 KiB + one 64 KiB bitmap granule, and 64 KiB of the raw disk (whose
# bitmap is not persistent, raw files cannot hold one): 256 KiB.
[ "$rb" -eq $((256 << 10)) ] || fail "incremental point read $rb bytes, not 262144"
check "$V" "$p1" s1
check "$V" "$p2" s2
[ "$(manifest_read "$V" "$p2")" = "incremental $p1" ] || fail "p2 manifest: $(manifest_read "$V" "$p2")"
[ "$(manifest_read "$V" "$p1")" = "full None" ] || fail "p1 manifest"

# --- writes during an ingest stay out of its point (the test build pauses at its first batch)
w 1 $((8 << 20)) 65536 0x47
snap s3
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/go "$VMBAK_TB" ingest "$V" vm --qemu "$QMP" \
	>"$T/p3.out" 2>"$T/p3.err" &
ing=$!
for ((i = 0; i < 600; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.05
done
[ -e "$T/go.reached" ] || fail "the ingest never reached its first batch"
w 1 $((8 << 20)) 65536 0x48
w 0 $((30 << 20)) 65536 0x49
touch "$T/go"
wait "$ing" || fail "ingest during writes: $(cat "$T/p3.err")"
rm -f "$T/go" "$T/go.reached"
p3=$(tail -n 1 "$T/p3.out")
check "$V" "$p3" s3
clean_qemu "$V" "$p3"
snap s4
p4=$(ingest "$V")
[ "$(read_bytes "$V")" -eq $((128 << 10)) ] || fail "p4 read $(read_bytes "$V") bytes"
check "$V" "$p4" s4
python3 "$T/qmp.py" "$QMP" query-status | grep -q '"running"' || fail "the VM does not run"

# --- an ingest killed by SIGTERM: the next one is still incremental and correct
w 0 $((40 << 20)) 65536 0x4a
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/go "$VMBAK_TB" ingest "$V" vm --qemu "$QMP" \
	>/dev/null 2>"$T/killed.err" &
ing=$!
for ((i = 0; i < 600; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.05
done
[ -e "$T/go.reached" ] || fail "the killed ingest never reached its first batch"
w 1 $((9 << 20)) 65536 0x4b
kill -TERM "$ing"
st=0
wait "$ing" || st=$?
[ "$st" -eq 1 ] || fail "ingest killed by SIGTERM exited with $st"
rm -f "$T/go.reached"
[ -z "$(ls -A "$TMPDIR")" ] || fail "SIGTERM left $(ls -A "$TMPDIR")"
snap s5
p5=$(ingest "$V")
[ "$(read_bytes "$V")" -eq $((128 << 10)) ] || fail "after a killed ingest: read $(read_bytes "$V")"
check "$V" "$p5" s5
clean_qemu "$V" "$p5"

# --- two vaults taking turns
V2=$T/vault2
expect_ok "$VMBAK" init "$V2" --encryption none --chunk-size 16384
q1=$(ingest "$V2")
w 0 $((50 << 20)) 65536 0x50
snap s6
p6=$(ingest "$V")
[ "$(read_bytes "$V")" -eq $((64 << 10)) ] || fail "vault 1 turn: read $(read_bytes "$V")"
w 1 $((10 << 20)) 65536 0x51
snap s7
q2=$(ingest "$V2")
[ "$(read_bytes "$V2")" -eq $((128 << 10)) ] || fail "vault 2 turn: read $(read_bytes "$V2")"
check "$V" "$p6" s6
check "$V2" "$q1" s5
check "$V2" "$q2" s7
clean_qemu "$V2" "$q2"
clean_qemu "$V" "$p6"

# --- bad input: one line, exit 1, no point, QEMU left clean
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
for _ in range(4):
    c, _ = s.accept(); c.sendall(b"hello, I am not QEMU\n"); time.sleep(0.2); c.close()' \
	"$T/notqmp.sock" &
echo $! >>"$T/pids"
for ((i = 0; i < 100; i++)); do [ -S "$T/notqmp.sock" ] && break; sleep 0.05; done
expect_status 1 "$VMBAK" ingest "$V" vm --qemu "$T/notqmp.sock"
expect_stderr "is not a QMP socket"
expect_status 1 "$VMBAK" ingest "$V" vm --qemu "$T/nothing.sock"
expect_status 1 "$VMBAK" ingest "$V" vm --qemu "$QMP" --disk a=no-such-node
expect_stderr "QEMU has no disk with node, drive or device 'no-such-node'"
expect_status 1 "$VMBAK" ingest "$V" vm --qemu "$QMP" --disk a=rodrive
expect_stderr "read-only"
expect_status 2 "$VMBAK" ingest "$V" vm --qemu "$QMP" --format a=qcow2
clean_qemu "$V" "$p6"
[ -z "$(ls -A "$TMPDIR")" ] || fail "bad input left $(ls -A "$TMPDIR")"
# A named subset: only drive0, named sys.
expect_status 0 "$VMBAK" ingest "$V" vm2 --qemu "$QMP" --disk sys=drive0
vmount "$V" "$M"
cmp "$M/vm2/latest/sys.img" "$T/ref0.raw" || fail "--disk sys=drive0 differs"
[ ! -e "$M/vm2/latest/vd1.img" ] || fail "--disk sys=drive0 took vd1 too"
vumount "$M"

# --- QEMU killed and started again: the next point is full and says so
# (flushed first: a killed QEMU may lose the qcow2 metadata of writes it had not flushed)
python3 "$T/qmp.py" "$QMP" hmp 'qemu-io drive0 "flush"'
python3 "$T/qmp.py" "$QMP" hmp 'qemu-io -d /machine/peripheral/vd1/virtio-backend "flush"'
stop_qemu
start_qemu
w 0 $((60 << 20)) 65536 0x52
snap s8
expect_status 0 "$VMBAK" ingest "$V" vm --qemu "$QMP"
p8=$(tail -n 1 "$OUT")
expect_stderr "disk 'drive0' of VM 'vm' is read in full: (no dirty bitmap|the dirty bitmap) of point $p6"
[ "$(wc -l <"$ERR")" -eq 3 ] || fail "full read: not one line per disk: $(cat "$ERR")"
check "$V" "$p8" s8
[ "$(manifest_read "$V" "$p8")" = "full None" ] || fail "p8 manifest"
clean_qemu "$V" "$p8"
w 1 0 65536 0x53
snap s9
p9=$(ingest "$V")
[ "$(read_bytes "$V")" -eq $((64 << 10)) ] || fail "after restart: read $(read_bytes "$V")"
check "$V" "$p9" s9

# --- the latest point fails verification: the next point is read in full, not built on it
flip_chunks "$V" vm drive0 $(((60 << 20) / 16384))
expect_status 3 "$VMBAK" verify "$V" vm
"$VMBAK" list "$V" vm --json | python3 -c 'import json, sys
d = {p["id"]: p.get("damaged") for p in json.load(sys.stdin)}
sys.exit(0 if d[sys.argv[1]] and d[sys.argv[2]] else "not marked damaged: %s" % d)' "$p8" "$p9" ||
	fail "verify did not mark the damaged points"
w 0 $((60 << 20)) 65536 0x54
snap s10
expect_status 0 "$VMBAK" ingest "$V" vm --qemu "$QMP"
p10=$(tail -n 1 "$OUT")
expect_stderr "disk 'drive0' of VM 'vm' is read in full: point $p9 failed verification"
[ "$(manifest_read "$V" "$p10")" = "full None" ] || fail "p10 manifest"
check "$V" "$p10" s10
w 1 0 65536 0x55
snap s11
p11=$(ingest "$V")
[ "$(read_bytes "$V")" -eq $((64 << 10)) ] || fail "after the full point: read $(read_bytes "$V")"
check "$V" "$p11" s11

# A VM with no writable disk.
stop_qemu
rm -f "$QMP"
timeout -s KILL 300 qemu-system-x86_64 -machine accel=tcg -nodefaults -display none -m 64 \
	-qmp "unix:$QMP,server=on,wait=off" \
	-drive "file=$T/ro.raw,format=raw,if=none,id=rodrive,readonly=on" \
	-device virtio-blk-pci,drive=rodrive,id=vro >/dev/null 2>>"$T/qemu.err" &
qemu_pid=$!
echo "$qemu_pid" >>"$T/pids"
for ((i = 0; i < 200; i++)); do [ -S "$QMP" ] && break; sleep 0.05; done
expect_status 1 "$VMBAK" ingest "$V" vm --qemu "$QMP"
expect_stderr "no writable disk"
stop_qemu

# --- escrow of a running VM's LUKS disk: the header is read from the frozen export
if [ -x /usr/sbin/cryptsetup ] || [ -x /sbin/cryptsetup ] || command -v cryptsetup >/dev/null; then
	printf '%s' 'vm luks pass' >"$T/luks.pass"
	printf '%s' 'not the passphrase' >"$T/wrong.pass"
	printf '%s' kvpw >"$T/kvpass"
	head -c $((4 << 20)) /dev/urandom >"$T/luks-plain.img"
	qemu-img convert -f raw -O luks --object "secret,id=s0,file=$T/luks.pass" \
		-o key-secret=s0,iter-time=10 "$T/luks-plain.img" "$T/luks.img"
	qemu-img convert -f raw -O qcow2 "$T/luks.img" "$T/luks.qcow2"
	expect_ok "$VMBAK" keyvault init "$T/kv" --passphrase-file "$T/kvpass"
	expect_ok "$VMBAK" keyvault key create "$T/kv" kek --passphrase-file "$T/kvpass"
	for s in luks wrong; do
		expect_ok "$VMBAK" keyvault secret set "$T/kv" "$s" --value-file "$T/$s.pass" \
			--kek kek --passphrase-file "$T/kvpass"
	done
	kvopt=(--keyvault "$T/kv" --keyvault-passphrase-file "$T/kvpass")
	rm -f "$QMP"
	timeout -s KILL 300 qemu-system-x86_64 -machine accel=tcg -nodefaults -display none -m 64 \
		-qmp "unix:$QMP,server=on,wait=off" \
		-drive "file=$T/luks.qcow2,format=qcow2,if=none,id=lk" \
		-device virtio-blk-pci,drive=lk,id=vlk >/dev/null 2>>"$T/qemu.err" &
	qemu_pid=$!
	echo "$qemu_pid" >>"$T/pids"
	for ((i = 0; i < 200; i++)); do
		[ -S "$QMP" ] && python3 "$T/qmp.py" "$QMP" query-status >/dev/null 2>&1 && break
		sleep 0.05
	done
	# Disk named by QEMU (its drive id), the kind found from the header, checked.
	expect_ok "$VMBAK" ingest "$V" lvm --qemu "$QMP" "${kvopt[@]}" --escrow lk=luks \
		--check-escrow
	pl=$(tail -n 1 "$OUT")
	clean_qemu "$V" "$pl"
	before=$("$VMBAK" list "$V" lvm --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
	# A wrong secret: one line, no point, and the bitmap of the latest point left as it was.
	expect_status 1 "$VMBAK" ingest "$V" lvm --qemu "$QMP" "${kvopt[@]}" --escrow lk=wrong \
		--check-escrow
	expect_stderr "^vmbak: secret 'wrong' version 1 does not open the LUKS header of disk 'lk' \\(QEMU disk 'lk'\\): no recovery point made$"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "wrong secret with --qemu: not one line: $(cat "$ERR")"
	clean_qemu "$V" "$pl"
	# A disk the VM does not have.
	expect_status 1 "$VMBAK" ingest "$V" lvm --qemu "$QMP" "${kvopt[@]}" --escrow vdz=luks
	expect_stderr "^vmbak: --escrow names disk 'vdz', which VM 'lvm' does not have \\(its disks: lk\\)"
	clean_qemu "$V" "$pl"
	[ -z "$(ls -A "$TMPDIR")" ] || fail "refused escrow left $(ls -A "$TMPDIR")"
	after=$("$VMBAK" list "$V" lvm --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
	[ "$after" -eq "$before" ] || fail "a refused escrow made a point"
	# Named with --disk: the escrow follows the name the point gives the disk.
	expect_status 0 "$VMBAK" ingest "$V" lvm --qemu "$QMP" --disk sys=lk "${kvopt[@]}" \
		--escrow sys=luks --check-escrow
	expect_stderr "disk 'sys' of VM 'lvm' is read in full"
	vmount "$V" "$M"
	cmp "$M/lvm/$pl/lk.img" "$T/luks.img" || fail "lvm: lk.img differs from luks.img"
	"$VMBAK" keyvault unwrap "$T/kv" "$M/lvm/$pl/lk.key" --passphrase-file "$T/kvpass" \
		>"$T/lk.out" || fail "lvm: unwrap failed"
	"$VMBAK" keyvault unwrap "$T/kv" "$M/lvm/latest/sys.key" --passphrase-file "$T/kvpass" \
		>"$T/sys.out" || fail "lvm: unwrap of sys.key failed"
	cp "$M/lvm/$pl/lk.img" "$T/lk.restored"
	vumount "$M"
	cmp "$T/lk.out" "$T/luks.pass" || fail "lvm: the unwrapped secret is not the passphrase"
	cmp "$T/sys.out" "$T/luks.pass" || fail "lvm: sys.key is not the passphrase"
	cryptsetup open --test-passphrase --readonly --key-file="$T/lk.out" "$T/lk.restored" ||
		fail "lvm: cryptsetup does not open the point's image with the unwrapped key"
	python3 "$T/qmp.py" "$QMP" query-status | grep -q '"running"' || fail "the VM does not run"
	stop_qemu
else
	[ "${CI:-}" != true ] || fail "cryptsetup is not installed"
	note "no cryptsetup: escrow with --qemu not tested"
fi
finish_checks
