#!/usr/bin/env bash
# tests/fuse/nbd_export.sh: an image of a point served over NBD with TLS, for a hypervisor on
# another host, as vmbakfs(1) documents it: qemu-nbd --read-only of the image in a vmbakfs
# mount, with x509 certificates both ways (made here with openssl: a CA, a server certificate
# for localhost and 127.0.0.1, a client certificate for the hypervisor).
#
#   - nbdinfo over nbds:// sees the export, its size and that it is read-only;
#   - qemu-img compare over nbd with TLS finds it equal to the source;
#   - a client without TLS is refused; a write through the export fails; the vault is
#     unchanged (vmbak verify).
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
need_cmd qemu-nbd qemu-img qemu-io nbdinfo openssl python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"

python3 -c 'import random, sys
r = random.Random(9)
sys.stdout.buffer.write(r.randbytes(5 << 20) + bytes(3 << 20) + r.randbytes(1 << 20))' >disk.img
expect_status 0 "$VMBAK" init v --encryption none
expect_status 0 "$VMBAK" ingest v vm1 --disk sda=disk.img
rp=$(tail -n 1 "$OUT")
mkdir mnt
vmount v mnt

note "certificates: a CA, a server certificate for localhost and 127.0.0.1, a client's"
mkdir -p tls/server tls/client
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=vmbak test CA" \
	-keyout tls/ca-key.pem -out tls/server/ca-cert.pem 2>/dev/null || fail "openssl: CA"
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout tls/server/server-key.pem \
	-out tls/server.csr 2>/dev/null || fail "openssl: server key"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >tls/ext
openssl x509 -req -in tls/server.csr -CA tls/server/ca-cert.pem -CAkey tls/ca-key.pem \
	-CAcreateserial -days 2 -extfile tls/ext -out tls/server/server-cert.pem 2>/dev/null ||
	fail "openssl: server certificate"
cp tls/server/ca-cert.pem tls/client/ca-cert.pem
openssl req -newkey rsa:2048 -nodes -subj "/CN=hypervisor" -keyout tls/client/client-key.pem \
	-out tls/client.csr 2>/dev/null || fail "openssl: client key"
printf 'extendedKeyUsage=clientAuth\n' >tls/ext-client
openssl x509 -req -in tls/client.csr -CA tls/server/ca-cert.pem -CAkey tls/ca-key.pem \
	-CAcreateserial -days 2 -extfile tls/ext-client -out tls/client/client-cert.pem \
	2>/dev/null || fail "openssl: client certificate"
port=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')

qemu-nbd --read-only --persistent --shared=4 --format=raw --export-name=sda \
	--object "tls-creds-x509,id=tls0,dir=$T/tls/server,endpoint=server" --tls-creds=tls0 \
	--bind=127.0.0.1 --port="$port" --fork --pid-file="$T/nbd.pid" \
	"$T/mnt/vm1/$rp/sda.img" 2>nbd.err || fail "qemu-nbd did not start: $(cat nbd.err)"
at_exit "kill \$(cat $T/nbd.pid) 2>/dev/null"

uri="nbds://localhost:$port/sda?tls-certificates=$T/tls/client"
nbd_opts="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,export=sda"
nbd_opts+=",tls-creds=tlsc"
timeout 60 nbdinfo --json "$uri" >info.json || fail "nbdinfo over TLS failed"
python3 - "$(stat -c %s disk.img)" <<'EOF' || fail "nbdinfo: $(cat info.json)"
import json, sys
d = json.load(open("info.json"))
e = d["exports"][0]
assert e["export-size"] == int(sys.argv[1]), e
assert e["is_read_only"], e
assert d["TLS"], d
EOF
timeout 120 qemu-img compare -q \
	--object "tls-creds-x509,id=tlsc,dir=$T/tls/client,endpoint=client" \
	--image-opts "driver=raw,file.filename=$T/disk.img" "$nbd_opts" ||
	fail "qemu-img compare over nbd with TLS: the export differs from the source"
note "the export reads as the source, over TLS"
if timeout 30 nbdinfo "nbd://localhost:$port/sda" >plain.out 2>&1; then
	fail "a client without TLS was served"
fi
mkdir tls/nocert
cp tls/client/ca-cert.pem tls/nocert/
if timeout 30 nbdinfo "nbds://localhost:$port/sda?tls-certificates=$T/tls/nocert" \
	>nocert.out 2>&1; then
	fail "a client without a certificate was served"
fi
timeout 60 qemu-io -r --object "tls-creds-x509,id=tlsc,dir=$T/tls/client,endpoint=client" \
	--image-opts "$nbd_opts" -c "read 0 4096" >io.out 2>&1 || true
grep -q '^read 4096/4096' io.out || fail "qemu-io cannot read the export: $(head -c 300 io.out)"
timeout 60 qemu-io --object "tls-creds-x509,id=tlsc,dir=$T/tls/client,endpoint=client" \
	--image-opts "$nbd_opts" -c "write -P 0x55 0 4096" >io.out 2>&1 || true
! grep -q '^wrote' io.out || fail "a write through the read-only export succeeded"
kill "$(cat nbd.pid)"
vumount mnt
expect_status 0 "$VMBAK" verify v
