#!/usr/bin/env bash
# tests/cli/sources.sh: disks read over NBD and images of other formats (vmbak ingest
# --disk NAME=NBD_URI, --format NAME=FORMAT).
#
# A qcow2 with a backing chain, a vmdk, a vhdx and a vpc made with qemu-img convert: the image in
# the mount equals `qemu-img convert -O raw` of the source (cmp), and holes stay holes (only the
# data is read, du of the image in the mount is small). NBD exports of qemu-nbd and nbdkit over a
# unix socket and over TCP on 127.0.0.1, and nbdkit with TLS (PSK). Bad input: a qcow2 whose
# backing file is missing, an unknown format, --format with a URI, a server that is not there,
# an export that disappears mid-read, SIGTERM during an ingest: one line, non-zero exit, no
# point, no qemu-nbd left running and no private directory left behind. Escrow: a LUKS1 disk in
# a qcow2 (--format) and over NBD, --escrow with --check-escrow (the header read through the
# source); the unwrapped secret opens the image in the mount; a wrong secret is refused.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_programs
need_cmd qemu-img qemu-io qemu-nbd nbdkit python3 timeout
plain_vault

# vmbak's private directories go here, so the test sees what it leaves behind.
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

no_leftovers() {
	[ -z "$(ls -A "$TMPDIR")" ] || fail "$1: left behind in TMPDIR: $(ls -A "$TMPDIR")"
	! pgrep -f "qemu-nbd.*$TMPDIR" >/dev/null || fail "$1: a qemu-nbd is still running"
}

npoints() {
	"$VMBAK" list "$V" --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
}

# read_bytes VM: bytes the latest point of VM read from its source.
read_bytes() {
	"$VMBAK" info "$V" "$1" --json | python3 -c \
		'import json, sys; print(sum(d["read_bytes"] for d in json.load(sys.stdin)["disks"]))'
}

# check_point VM DISK REF: the image in the mount equals REF, and is sparse where REF is.
check_point() {
	local img=$M/$1/latest/$2.img
	cmp "$img" "$3" || fail "$1: image in the mount differs from $3"
	[ "$(du -k "$img" | cut -f1)" -le $(($(du -k "$3" | cut -f1) + 64)) ] ||
		fail "$1: holes of $3 are not holes in the mount"
}

# --- images: a qcow2 backing chain, vmdk, vhdx, vpc (64 MiB, a few MiB of data)
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 10M 3M' base.qcow2 >/dev/null
head -c 1048576 /dev/urandom >rand.bin
qemu-io -f qcow2 -c 'write -P 0x55 30M 64k' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
qemu-io -f qcow2 -c 'write -P 0x33 512k 1M' -c 'write -z 10M 1M' mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -f qcow2 -c 'write -P 0x44 40M 64k' -c 'write -P 0x66 63M 1M' top.qcow2 >/dev/null
qemu-img convert -O raw top.qcow2 top.raw
# Random data too, so that chunks are not all one byte.
dd if=rand.bin of=top.raw bs=1M seek=20 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 top.raw plain.qcow2
qemu-img convert -O raw top.qcow2 chain.raw
for f in vmdk vhdx vpc; do
	qemu-img convert -f raw -O "$f" top.raw "top.$f"
	qemu-img convert -f "$f" -O raw "top.$f" "ref.$f.raw"
done
expect_ok "$VMBAK" ingest "$V" chain --disk sda=top.qcow2 --format sda=qcow2
[ "$(read_bytes chain)" -lt $((12 << 20)) ] || fail "qcow2: holes were read"
no_leftovers "qcow2 chain"
expect_ok "$VMBAK" ingest "$V" two --disk a=plain.qcow2 --format a=qcow2 \
	--disk b=top.vmdk --format b=vmdk --disk c=top.raw
for f in vmdk vhdx vpc; do
	expect_ok "$VMBAK" ingest "$V" "img-$f" --disk sda="top.$f" --format sda="$f"
	no_leftovers "$f"
done
# raw through qemu-nbd too
expect_ok "$VMBAK" ingest "$V" img-raw --disk sda=top.raw --format sda=raw

vmount "$V" "$M"
check_point chain sda chain.raw
check_point two a top.raw
check_point two b ref.vmdk.raw
check_point two c top.raw
for f in vmdk vhdx vpc; do
	check_point "img-$f" sda "ref.$f.raw"
done
check_point img-raw sda top.raw
vumount "$M"

# A format is never probed: a raw disk whose first bytes are a qcow2 header stays raw.
cp plain.qcow2 looks-like-qcow2.raw
truncate -s 64M looks-like-qcow2.raw
expect_ok "$VMBAK" ingest "$V" probe --disk sda=looks-like-qcow2.raw --format sda=raw

# --- NBD servers
kit_pid=
stop_kit() {
	if [ -n "$kit_pid" ]; then
		kill "$kit_pid" 2>/dev/null || true
		wait "$kit_pid" 2>/dev/null || true
		kit_pid=
	fi
}
# Servers this test started, by pid, stopped when it exits (also on failure).
at_exit "for p in \$(cat '$T/servers' 2>/dev/null); do kill -TERM \$p 2>/dev/null; done; true"

# wait_sock PATH: until a server listens there (10 s).
wait_sock() {
	local i
	for ((i = 0; i < 200; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.05
	done
	fail "no server on '$1'"
}

# A free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT
wait_port() {
	local i
	for ((i = 0; i < 200; i++)); do
		python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
			"$1" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "no server on 127.0.0.1:$1"
}

# nbdkit, unix socket
timeout 300 nbdkit -f -U "$T/kit.sock" file top.raw &
kit_pid=$!
echo "$kit_pid" >>"$T/servers"
wait_sock "$T/kit.sock"
expect_ok "$VMBAK" ingest "$V" kit-unix --disk "sda=nbd+unix:///?socket=$T/kit.sock"
[ "$(read_bytes kit-unix)" -lt $((12 << 20)) ] || fail "nbdkit: holes were read"
stop_kit

# nbdkit, TCP
port=$(free_port)
timeout 300 nbdkit -f -i 127.0.0.1 -p "$port" file top.raw &
kit_pid=$!
echo "$kit_pid" >>"$T/servers"
wait_port "$port"
expect_ok "$VMBAK" ingest "$V" kit-tcp --disk "sda=nbd://127.0.0.1:$port"
stop_kit

# qemu-nbd, unix socket with an export name
timeout 300 qemu-nbd -r -t -f qcow2 -k "$T/qn.sock" -x disk0 top.qcow2 &
kit_pid=$!
echo "$kit_pid" >>"$T/servers"
wait_sock "$T/qn.sock"
expect_ok "$VMBAK" ingest "$V" qn-unix --disk "sda=nbd+unix:///disk0?socket=$T/qn.sock"
[ "$(read_bytes qn-unix)" -lt $((12 << 20)) ] || fail "qemu-nbd: holes were read"
stop_kit

# qemu-nbd, TCP
port=$(free_port)
timeout 300 qemu-nbd -r -t -f qcow2 -b 127.0.0.1 -p "$port" top.qcow2 &
kit_pid=$!
echo "$kit_pid" >>"$T/servers"
wait_port "$port"
expect_ok "$VMBAK" ingest "$V" qn-tcp --disk "sda=nbd://127.0.0.1:$port"
stop_kit

# nbdkit with TLS required (pre-shared key): nbds+unix://
printf 'alice:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$T/keys.psk"
timeout 300 nbdkit -f -U "$T/tls.sock" --tls=require --tls-psk="$T/keys.psk" file top.raw &
kit_pid=$!
echo "$kit_pid" >>"$T/servers"
wait_sock "$T/tls.sock"
expect_ok "$VMBAK" ingest "$V" kit-tls \
	--disk "sda=nbds+unix://alice@/?socket=$T/tls.sock&tls-psk-file=$T/keys.psk"
# Without TLS the server refuses.
expect_status 1 "$VMBAK" ingest "$V" kit-notls --disk "sda=nbd+unix:///?socket=$T/tls.sock"
stop_kit

vmount "$V" "$M"
for vm in kit-unix kit-tcp kit-tls; do
	check_point "$vm" sda top.raw
done
for vm in qn-unix qn-tcp; do
	check_point "$vm" sda chain.raw
done
cmp "$M/probe/latest/sda.img" looks-like-qcow2.raw || fail "raw disk read as qcow2"
vumount "$M"

# --- escrow of a disk read through its source: a LUKS1 disk inside a qcow2 (--format) and the
# same raw LUKS image over NBD; the header is read and checked through the source
if command -v cryptsetup >/dev/null || [ -x /usr/sbin/cryptsetup ] || [ -x /sbin/cryptsetup ]; then
	printf '%s' 'luks-in-qcow2 pass' >luks.pass
	printf '%s' 'not the passphrase' >wrong.pass
	printf '%s' kvpw >kvpass
	head -c $((8 << 20)) /dev/urandom >luks-plain.img
	qemu-img convert -f raw -O luks --object secret,id=s0,file=luks.pass \
		-o key-secret=s0,iter-time=10 luks-plain.img luks.img
	qemu-img convert -f raw -O qcow2 luks.img luks.qcow2
	expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
	expect_status 0 "$VMBAK" keyvault key create kv kek --passphrase-file kvpass
	expect_status 0 "$VMBAK" keyvault secret set kv disk --value-file luks.pass --kek kek \
		--passphrase-file kvpass
	expect_status 0 "$VMBAK" keyvault secret set kv wrong --value-file wrong.pass --kek kek \
		--passphrase-file kvpass
	kvopt=(--keyvault kv --keyvault-passphrase-file kvpass)
	expect_ok "$VMBAK" ingest "$V" luks-fmt --disk sda=luks.qcow2 --format sda=qcow2 \
		"${kvopt[@]}" --escrow sda=disk --check-escrow
	no_leftovers "escrow with --format"
	timeout 300 nbdkit -f -U "$T/luks.sock" file luks.img &
	kit_pid=$!
	echo "$kit_pid" >>"$T/servers"
	wait_sock "$T/luks.sock"
	# Without --check-escrow and without the key vault passphrase: the kind from the header.
	expect_ok "$VMBAK" ingest "$V" luks-nbd --disk "sda=nbd+unix:///?socket=$T/luks.sock" \
		--keyvault kv --escrow sda=disk
	expect_ok "$VMBAK" list "$V" --json
	[ "$(json_value '[p["escrow"] for p in d if p["vm"] == "luks-nbd"][0]')" = "['sda']" ] ||
		fail "list --json: no escrow for luks-nbd"
	before=$(npoints)
	# A wrong secret with --check-escrow: one line, no point, over NBD and through qemu-nbd.
	expect_status 1 "$VMBAK" ingest "$V" luks-bad --disk "sda=nbd+unix:///?socket=$T/luks.sock" \
		"${kvopt[@]}" --escrow sda=wrong --check-escrow
	expect_stderr "^vmbak: secret 'wrong' version 1 does not open the LUKS header of disk 'sda'"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "wrong secret over NBD: not one line: $(cat "$ERR")"
	stop_kit
	expect_status 1 "$VMBAK" ingest "$V" luks-bad --disk sda=luks.qcow2 --format sda=qcow2 \
		"${kvopt[@]}" --escrow sda=wrong --check-escrow
	expect_stderr "^vmbak: secret 'wrong' version 1 does not open the LUKS header of disk 'sda'"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "wrong secret with --format: not one line: $(cat "$ERR")"
	# A disk that is not LUKS, with --escrow-kind luks: refused from the header read over NBD.
	expect_status 1 "$VMBAK" ingest "$V" luks-bad --disk sda=plain.qcow2 --format sda=qcow2 \
		"${kvopt[@]}" --escrow sda=disk --escrow-kind sda=luks --check-escrow
	expect_stderr "is not a LUKS or BitLocker volume"
	[ "$(npoints)" -eq "$before" ] || fail "a refused escrow made a point"
	no_leftovers "refused escrow"

	# The restored image opens with the unwrapped passphrase.
	vmount "$V" "$M"
	for vm in luks-fmt luks-nbd; do
		cmp "$M/$vm/latest/sda.img" luks.img || fail "$vm: image differs from luks.img"
		"$VMBAK" keyvault unwrap kv "$M/$vm/latest/sda.key" --passphrase-file kvpass \
			>"$vm.out" || fail "$vm: unwrap failed"
		cmp "$vm.out" luks.pass || fail "$vm: the unwrapped secret is not the passphrase"
		cp "$M/$vm/latest/sda.img" "$vm.restored"
		cryptsetup open --test-passphrase --readonly --key-file="$vm.out" "$vm.restored" ||
			fail "$vm: cryptsetup does not open the restored image with the unwrapped key"
		qemu-img convert --object "secret,id=s1,file=$vm.out" \
			--image-opts "driver=luks,key-secret=s1,file.filename=$vm.restored" \
			-O raw "$vm.plain"
		cmp "$vm.plain" luks-plain.img || fail "$vm: decrypted image differs"
	done
	vumount "$M"
else
	[ "${CI:-}" != true ] || fail "cryptsetup is not installed"
	note "no cryptsetup: escrow of NBD and --format disks not tested"
fi

# --- bad input: one line, non-zero exit, no point, nothing left running
before=$(npoints)
mv base.qcow2 base.moved
expect_status 1 "$VMBAK" ingest "$V" bad --disk sda=top.qcow2 --format sda=qcow2
expect_stderr "^vmbak: disk 'sda': cannot open image 'top.qcow2' as qcow2: .*backing"
no_leftovers "missing backing file"
mv base.moved base.qcow2
expect_status 2 "$VMBAK" ingest "$V" bad --disk sda=top.qcow2 --format sda=qcow3
expect_stderr "unknown image format 'qcow3'"
expect_status 2 "$VMBAK" ingest "$V" bad --disk "sda=nbd://127.0.0.1:1" --format sda=qcow2
expect_status 2 "$VMBAK" ingest "$V" bad --disk sda=top.qcow2 --format sdb=qcow2
expect_status 1 "$VMBAK" ingest "$V" bad --disk "sda=nbd+unix:///?socket=$T/nothing.sock"
expect_stderr "cannot connect to"
expect_status 1 "$VMBAK" ingest "$V" bad --disk sda=nothing.qcow2 --format sda=qcow2
# A file that is not a qcow2 read as one.
expect_status 1 "$VMBAK" ingest "$V" bad --disk sda=top.raw --format sda=qcow2
expect_stderr "cannot open image 'top.raw' as qcow2"
no_leftovers "bad input"

# An export that disappears mid-read (the test build pauses after its first batch).
head -c $((48 << 20)) /dev/urandom >full.raw
timeout 300 nbdkit -f -U "$T/gone.sock" file full.raw &
kit_pid=$!
echo "$kit_pid" >>"$T/servers"
wait_sock "$T/gone.sock"
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/go "$VMBAK_TB" ingest "$V" bad \
	--disk "sda=nbd+unix:///?socket=$T/gone.sock" >/dev/null 2>"$T/gone.err" &
ing=$!
for ((i = 0; i < 600; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.05
done
[ -e "$T/go.reached" ] || fail "the ingest never reached its first batch"
# nbdkit waits for its clients on SIGTERM: the export vanishes as with a crash.
pkill -KILL -P "$kit_pid"
stop_kit
touch "$T/go"
st=0
wait "$ing" || st=$?
[ "$st" -eq 1 ] || fail "export gone: exit status $st"
[ "$(wc -l <"$T/gone.err")" -eq 1 ] || fail "export gone: not one line: $(cat "$T/gone.err")"
grep -q "^vmbak: cannot read '.*gone.sock.*" "$T/gone.err" ||
	fail "export gone: $(cat "$T/gone.err")"
rm -f "$T/go" "$T/go.reached"

# SIGTERM while an image is read: qemu-nbd stops, its directory goes.
qemu-img convert -f raw -O qcow2 full.raw full.qcow2
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/go "$VMBAK_TB" ingest "$V" bad --disk sda=full.qcow2 \
	--format sda=qcow2 >/dev/null 2>"$T/term.err" &
ing=$!
for ((i = 0; i < 600; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.05
done
[ -e "$T/go.reached" ] || fail "the ingest of full.qcow2 never reached its first batch"
pgrep -f "qemu-nbd.*$TMPDIR" >/dev/null || fail "no qemu-nbd while reading full.qcow2"
kill -TERM "$ing"
st=0
wait "$ing" || st=$?
[ "$st" -eq 1 ] || fail "ingest killed by SIGTERM exited with $st"
grep -q "^vmbak: interrupted by SIGTERM" "$T/term.err" || fail "SIGTERM: $(cat "$T/term.err")"
for ((i = 0; i < 100; i++)); do
	pgrep -f "qemu-nbd.*$TMPDIR" >/dev/null || break
	sleep 0.05
done
no_leftovers "SIGTERM"
[ "$(npoints)" -eq "$before" ] || fail "a failed ingest made a point"
finish_checks
