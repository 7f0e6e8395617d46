#!/usr/bin/env bash
# tests/fuse/libvirt_restore.sh: restore's VM definition, with a libvirtd of the test's own
# (tests/libvirt.sh: virtlogd and libvirtd started by hand in a private mount namespace).
#
# A VM "guest" (TCG, the tiny Linux guest of tests/guest.sh booted from kernel and initramfs)
# has an ext4 disk vda and a disk vdb that libvirt encrypts (LUKS1, <encryption format='luks'>,
# its passphrase escrowed in a key vault). Its point keeps its domain XML (through the test
# build's VMBAK_TEST_DOMAIN_XML, which keeps a file as ingest --libvirt does).
#
#   - restore --to DIR --keyvault KV writes DIR/domain.xml for a new VM (name <vm>-<rp>, new
#     UUID and MAC, disks on the restored files, vdb wired to a new secret whose XML and value
#     file are beside it); virt-xml-validate accepts both; the printed virsh commands define it;
#     it boots and reads vda's file and vdb's plaintext (QEMU decrypting with the secret).
#   - --define does the same through libvirt; a name a domain has (the original's) is refused
#     before anything is written, and so is a LUKS disk without its key or as qcow2.
#   - --instant --define: the new VM runs on overlays backed by the vault mount, writes inside
#     the guest, `virsh blockpull` moves the data off the vault, the vault is unmounted, and the
#     guest keeps running and reading the right bytes; its write is in the overlay, which has
#     no backing file any more.
# shellcheck source=../libvirt.sh
. "$(dirname "${BASH_SOURCE[0]}")/../libvirt.sh"
libvirt_ns "$@"
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
need_cmd mkfs.ext4 debugfs python3 sha256sum qemu-img
if ! command -v virt-xml-validate >/dev/null 2>&1 || ! command -v xmllint >/dev/null 2>&1; then
	[ "${CI:-}" = true ] && fail "needs virt-xml-validate and xmllint (libvirt-clients, libxml2-utils)"
	skip "needs virt-xml-validate and xmllint (libvirt-clients, libxml2-utils)"
fi
# shellcheck source=../guest.sh
. "$SRCDIR/tests/guest.sh"
if ! guest_tools || ! guest_kernel; then
	[ "${CI:-}" = true ] && fail "$GUEST_WHY (under CI=true the guest must boot)"
	skip "$GUEST_WHY"
fi
[ -x "${VMBAK_TB:-}" ] || fail "the test build ('${VMBAK_TB:-}') is not built: make fault"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"
libvirt_start

note "the original VM: an ext4 disk and a LUKS disk"
mkdir -p tree/data
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(7).randbytes(2 << 20))' \
	>tree/data/payload.bin
mkfs.ext4 -q -F -d tree disk.img 32M
want=$(sha256sum <tree/data/payload.bin | cut -d' ' -f1)
head -c $((4 << 20)) /dev/urandom >plain.img
want_b=$(sha256sum <plain.img | cut -d' ' -f1)
printf 'the LUKS passphrase of vdb' >luks.pass
# qemu-img's LUKS benchmark fails now and then on a busy machine ("Unable to get accurate CPU
# usage"): a few tries.
for try in 1 2 3 4 5; do
	qemu-img convert -f raw -O luks --object secret,id=sec0,file=luks.pass \
		-o key-secret=sec0,iter-time=50 plain.img luks.img && break
	[ "$try" -lt 5 ] || fail "cannot make luks.img"
	rm -f luks.img
done

cat >init <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	insmod "/lib/modules/$m.ko" || echo "@@LV FATAL insmod $m"
done
if [ -b /dev/vdb ]; then
	echo "@@LV vdb $(head -c 4194304 /dev/vdb | sha256sum | cut -d' ' -f1)"
	mount -t ext4 -o ro /dev/vda /mnt || echo "@@LV FATAL cannot mount /dev/vda"
	echo "@@LV sha 0 $(sha256sum </mnt/data/payload.bin | cut -d' ' -f1)"
	umount /mnt
	poweroff -f
fi
# Instant recovery (vda alone): write, then read for as long as the host lets the guest run.
mount -t ext4 /dev/vda /mnt || echo "@@LV FATAL cannot mount /dev/vda"
echo "written in the overlay" >/mnt/data/written.txt
sync
i=0
while :; do
	echo 3 >/proc/sys/vm/drop_caches
	echo "@@LV sha $i $(sha256sum </mnt/data/payload.bin | cut -d' ' -f1)"
	i=$((i + 1))
	sleep 0.3
done
EOF
guest_initramfs "$T/root" init initrd.gz || fail "cannot build the initramfs"

cat >guest.xml <<EOF
<domain type='qemu'>
  <name>guest</name>
  <uuid>6f1a4c1e-0d7b-4d55-9a3e-6b1c1d0e2f30</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$VMLINUZ</kernel>
    <initrd>$T/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet loglevel=3 panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$T/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$T/luks.img'>
        <encryption format='luks'>
          <secret type='passphrase' uuid='0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d'/>
        </encryption>
      </source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='52:54:00:12:34:56'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$T/guest-console.log'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
virt-xml-validate guest.xml domain >/dev/null || fail "the test's own domain XML is invalid"
# The original stays defined (never started): its name is taken.
virsh_t define guest.xml >/dev/null || fail "cannot define the original domain"
libvirt_forget guest

printf 'kv passphrase' >kvpass
expect_status 0 "$VMBAK" init v --encryption none
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv kek --type rsa-3072 --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault secret set kv guest-vdb --value-file luks.pass --kek kek \
	--passphrase-file kvpass
VMBAK_TEST_DOMAIN_XML=guest.xml expect_status 0 "$VMBAK_TB" ingest v guest --disk vda=disk.img \
	--disk vdb=luks.img --keyvault kv --escrow vdb=guest-vdb
rp=$(tail -n 1 "$OUT")
# What boots must be the point, not today's disks.
dd if=/dev/urandom of=disk.img bs=1M count=32 conv=notrunc status=none
dd if=/dev/urandom of=luks.img bs=1M count=2 seek=2 conv=notrunc status=none

# console_wait LOG N: waits (up to 240 s) until the guest printed N "sha" lines in LOG.
console_wait() {
	local k
	for ((k = 0; k < 1200; k++)); do
		[ -f "$1" ] && [ "$(tr -d '\r' <"$1" | grep -c '^@@LV sha ')" -ge "$2" ] && return 0
		[ -f "$1" ] && grep -q '^@@LV FATAL' "$1" && break
		sleep 0.2
	done
	fail "the guest did not print $2 readings: $(tr -d '\r' <"$1" 2>/dev/null | grep '@@LV' | tail -n 3)"
}
shas() {
	tr -d '\r' <"$1" | awk '$1 == "@@LV" && $2 == "sha" { print $4 }' | sort -u
}

note "refusals, before anything is written"
expect_status 1 "$VMBAK" restore v guest --to r0
expect_stderr "^vmbak: disk 'vdb' is encrypted by libvirt \(luks\): give --keyvault KV"
expect_status 1 "$VMBAK" restore v guest --to r0 --format qcow2 --keyvault kv \
	--keyvault-passphrase-file kvpass
expect_stderr "^vmbak: disk 'vdb' is encrypted by libvirt \(luks\): restore it as raw"
expect_status 1 "$VMBAK" restore v guest --to r0 --keyvault kv --keyvault-passphrase-file kvpass \
	--define --name guest
expect_stderr "^vmbak: libvirt already has a domain named 'guest': give another --name$"
expect_status 1 "$VMBAK" restore v guest --to r0 --define --connect qemu:///nowhere \
	--keyvault kv --keyvault-passphrase-file kvpass
expect_stderr "^vmbak: cannot connect to libvirt at 'qemu:///nowhere'"
[ -z "$(ls -A r0 2>/dev/null)" ] || fail "a refused restore wrote: $(ls r0)"
expect_status 2 "$VMBAK" restore v guest --to r0 --connect qemu:///system
expect_status 2 "$VMBAK" restore v guest --disk vda=x.img --define
expect_status 2 "$VMBAK" restore v guest --to r0 --name ""
expect_status 1 "$VMBAK" restore v guest --to r0 --name "a/b" --keyvault kv \
	--keyvault-passphrase-file kvpass
expect_stderr "^vmbak: invalid VM name 'a/b' for the domain"
expect_status 0 "$VMBAK" ingest v plain --disk vda=disk.img
expect_status 1 "$VMBAK" restore v plain --to r0 --name x
expect_stderr "^vmbak: point plain/.* has no domain.xml"

note "restore --to: domain.xml and the secret, defined with the printed commands"
expect_status 0 "$VMBAK" restore v guest --to full --keyvault kv --keyvault-passphrase-file kvpass
cat "$OUT"
expect_stdout "^domain: new VM 'guest-$rp' \(uuid [0-9a-f-]{36}\) -> $T/full/domain\.xml$"
expect_stdout "^vdb: libvirt secret [0-9a-f-]{36} -> $T/full/vdb\.secret\.xml, its value in $T/full/vdb\.key$"
define_cmd=$(sed -n 's/^to define it: //p' "$OUT")
[ -n "$define_cmd" ] || fail "restore printed no commands to define the VM"
virt-xml-validate full/domain.xml domain || fail "full/domain.xml does not validate"
virt-xml-validate full/vdb.secret.xml secret || fail "full/vdb.secret.xml does not validate"
[ "$(stat -c %a full/vdb.key)" = 600 ] || fail "the secret's value file is not 0600"
cmp full/vdb.key luks.pass || fail "the secret's value is not the escrowed passphrase"
python3 - full/domain.xml full/vdb.secret.xml "$T" "guest-$rp" <<'EOF' || fail "domain.xml is wrong"
import sys, xml.etree.ElementTree as ET
d = ET.parse(sys.argv[1]).getroot()
s = ET.parse(sys.argv[2]).getroot()
t, name = sys.argv[3], sys.argv[4]
assert d.findtext("name") == name, d.findtext("name")
assert d.findtext("uuid") != "6f1a4c1e-0d7b-4d55-9a3e-6b1c1d0e2f30"
mac = d.find("devices/interface/mac").get("address")
assert mac != "52:54:00:12:34:56" and mac.startswith("52:54:00:"), mac
disks = {x.find("target").get("dev"): x for x in d.findall("devices/disk")}
assert disks["vda"].find("source").get("file") == t + "/full/vda.img"
assert disks["vdb"].find("source").get("file") == t + "/full/vdb.img"
assert disks["vda"].find("driver").get("type") == "raw"
sec = disks["vdb"].find("source/encryption/secret").get("uuid")
assert sec == s.findtext("uuid") and sec != "0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", sec
assert s.find("usage/volume").text == t + "/full/vdb.img"
assert d.find("devices/serial/source").get("path") == t + "/full/console-guest-console.log"
EOF
(eval "$define_cmd") >define.out 2>&1 || fail "the printed commands failed: $(cat define.out)"
libvirt_forget "guest-$rp"
virsh_t start "guest-$rp" >/dev/null || fail "cannot start the restored VM"
console_wait full/console-guest-console.log 1
[ "$(shas full/console-guest-console.log)" = "$want" ] || fail "the restored VM read other bytes"
got_b=$(tr -d '\r' <full/console-guest-console.log | awk '$2 == "vdb" { print $3 }')
[ "$got_b" = "$want_b" ] || fail "the restored VM's LUKS disk gave '$got_b', not its plaintext"
note "the restored VM booted, read its file and decrypted its LUKS disk with the new secret"

note "--define"
expect_status 0 "$VMBAK" restore v "guest/$rp" --to def --name guest-def --define --keyvault kv \
	--keyvault-passphrase-file kvpass
expect_stdout "^domain: defined 'guest-def' in libvirt$"
grep -q '^to define it:' "$OUT" && fail "--define still printed the commands"
libvirt_forget guest-def
virsh_t dumpxml guest-def >def.xml || fail "guest-def is not defined"
grep -q "<source file='$T/def/vdb.img'" def.xml || fail "guest-def's vdb is not the restored file"
sec=$(python3 -c 'import sys, xml.etree.ElementTree as ET
print(ET.parse(sys.argv[1]).getroot().findtext("uuid"))' def/vdb.secret.xml)
virsh_t secret-list >secrets.out || fail "virsh secret-list failed"
grep -q "$sec .*$T/def/vdb.img" secrets.out || fail "libvirt has no secret $sec: $(cat secrets.out)"
# The secret is private (libvirt never gives its value back): the guest proves it.
virsh_t start guest-def >/dev/null || fail "cannot start guest-def"
console_wait def/console-guest-console.log 1
got_b=$(tr -d '\r' <def/console-guest-console.log | awk '$2 == "vdb" { print $3 }')
[ "$got_b" = "$want_b" ] || fail "guest-def's LUKS disk gave '$got_b', not its plaintext"
expect_status 1 "$VMBAK" restore v "guest/$rp" --to def2 --name guest-def --define --keyvault kv \
	--keyvault-passphrase-file kvpass
expect_stderr "already has a domain named 'guest-def'"
virsh_t dumpxml guest >orig.xml || fail "the original domain is gone"
grep -q "<source file='$T/disk.img'/>" orig.xml || fail "the original domain was changed"

note "--instant with libvirt: overlays on the mount, blockpull, the mount goes away"
mkdir mnt
expect_status 0 "$VMBAK" restore v guest --to inst --instant --mount mnt --disk vda \
	--name guest-inst --define
cat "$OUT"
echo "fuse $T/mnt" >>"$_lib_state"
expect_stdout "^domain: disk 'vdb' of the original VM is not restored: left out"
libvirt_forget guest-inst
virt-xml-validate inst/domain.xml domain || fail "inst/domain.xml does not validate"
grep -q "<driver name=\"qemu\" type=\"qcow2\"/>" inst/domain.xml || fail "the overlay is not qcow2"
virsh_t start guest-inst >/dev/null || fail "cannot start the instant VM"
console_wait inst/console-guest-console.log 2
[ "$(shas inst/console-guest-console.log)" = "$want" ] || fail "the instant VM read other bytes"
virsh_t blockpull guest-inst vda --wait --timeout 240 >pull.out 2>&1 ||
	fail "virsh blockpull failed: $(cat pull.out)"
vumount mnt
n=$(tr -d '\r' <inst/console-guest-console.log | grep -c '^@@LV sha ')
console_wait inst/console-guest-console.log $((n + 4))
[ "$(shas inst/console-guest-console.log)" = "$want" ] ||
	fail "after the vault went away the guest read other bytes"
[ "$(virsh_t domstate guest-inst)" = running ] || fail "the instant VM stopped"
virsh_t destroy guest-inst >/dev/null
qemu-img info inst/vda.qcow2 >info.out || fail "qemu-img info failed"
grep -q '^backing file' info.out && fail "the overlay still has a backing file"
qemu-img convert -O raw inst/vda.qcow2 after.raw
[ "$(debugfs -R 'cat /data/written.txt' after.raw 2>/dev/null)" = "written in the overlay" ] ||
	fail "the guest's write is not in the overlay"
[ "$(debugfs -R 'cat /data/payload.bin' after.raw 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$want" ] ||
	fail "the pulled overlay's file differs"
note "the guest ran on, its data off the vault and its write kept"
finish_checks
