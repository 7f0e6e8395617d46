#!/usr/bin/env bash
# tests/fuse/libvirt_ingest.sh: vmbak ingest --libvirt against a libvirtd of the test's own
# (tests/libvirt.sh: virtlogd and libvirtd started by hand in a private mount namespace).
#
# A running TCG domain (no guest OS: writes go into its disks through HMP qemu-io, as a guest's
# would) with a qcow2 disk and a raw disk (raw keeps no checkpoint bitmap: it is read whole
# every time). Reference copies follow every write.
#   - a full point, then an incremental one that reads only the dirty extents: each equals the
#     disks at its instant; domain.xml in the mount is the domain's inactive XML; the vault's
#     older checkpoint is tidied, one checkpoint of the vault stays;
#   - a second vault backs up the same domain alternately: both stay incremental and correct;
#   - a checkpoint deleted behind vmbak's back: a full read, said in one line and recorded;
#   - a latest point that a verify found damaged: the next point is a full read, said;
#   - --quiesce without a guest agent fails clearly and leaves no job or checkpoint behind;
#   - bad input: one line, no point;
#   - a domain with a LUKS disk in a qcow2: --escrow with --check-escrow reads the header from
#     the job's export; the unwrapped secret opens the point's image; a wrong secret or a disk
#     the domain does not have is refused in one line, no point, checkpoints unchanged.
# shellcheck source=../libvirt.sh
. "$(dirname "${BASH_SOURCE[0]}")/../libvirt.sh"
libvirt_ns "$@"
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
need_cmd qemu-img qemu-system-x86_64 python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"
libvirt_start

MiB=$((1 << 20))
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(1).randbytes(24 << 20))' >ref-vda
truncate -s 64M ref-vda
python3 -c 'import random, sys; sys.stdout.buffer.write(random.Random(2).randbytes(3 << 20))' >ref-vdb
truncate -s 16M ref-vdb
qemu-img convert -f raw -O qcow2 ref-vda vda.qcow2
cp --sparse=always ref-vdb vdb.raw

domxml() {
	cat <<EOF
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$T/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$T/vdb.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
}
domxml lvguest >lvguest.xml
virsh_t define lvguest.xml >/dev/null || fail "cannot define the domain"
libvirt_forget lvguest
virsh_t start lvguest >/dev/null || fail "cannot start the domain"

# put DISK OFFSET LENGTH BYTE: the guest's write (HMP qemu-io on the disk's device), and the
# same write into the reference copy.
put() {
	virsh_t qemu-monitor-command lvguest --hmp \
		"qemu-io -d /machine/peripheral/virtio-disk$([ "$1" = vda ] && echo 0 || echo 1)/virtio-backend \"write -P $4 $2 $3\"" \
		>qio.out 2>&1 || fail "qemu-io failed: $(cat qio.out)"
	grep -qi 'error\|fail' qio.out && fail "qemu-io: $(cat qio.out)"
	python3 - "ref-$1" "$2" "$3" "$4" <<'EOF'
import os, sys
f, off, n, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0)
fd = os.open(f, os.O_WRONLY)
os.pwrite(fd, bytes([b]) * n, off)
os.close(fd)
EOF
}
# no_job: the domain has no job (an aborted backup job may take a moment to go).
no_job() {
	local k
	for ((k = 0; k < 50; k++)); do
		virsh_t domjobinfo lvguest >job.out 2>&1 || true
		grep -q '^Job type: *None' job.out && return 0
		sleep 0.2
	done
	fail "a job is left running: $(tr '\n' ' ' <job.out)"
}
# checkpoints: the domain's checkpoints, one per line, sorted.
checkpoints() {
	virsh_t checkpoint-list lvguest --name | sed '/^$/d' | sort
}
# ingest VAULT [ARGS...]: a point of lvguest; RP is its id; the references are kept as
# ref-RP-DISK.
ingest() {
	local vault=$1
	shift
	expect_status 0 "$VMBAK" ingest "$vault" lvguest --libvirt lvguest "$@"
	RP=$(tail -n 1 "$OUT")
	cp ref-vda "ref-$RP-vda"
	cp ref-vdb "ref-$RP-vdb"
}
# point_is VAULT RP READ: RP's images equal their references, its source record says READ.
point_is() {
	vmount "$1" "$T/mnt"
	cmp "$T/mnt/lvguest/$2/vda.img" "ref-$2-vda" || fail "$1 $2: vda differs from the disk"
	cmp "$T/mnt/lvguest/$2/vdb.img" "ref-$2-vdb" || fail "$1 $2: vdb differs from the disk"
	python3 - "$T/mnt/lvguest/$2/manifest.json" "$3" <<'EOF' || fail "$1 $2: manifest"
import json, sys
m = json.load(open(sys.argv[1]))
s = m["source"]
assert s["kind"] == "libvirt" and s["origin"] == "lvguest" and s["read"] == sys.argv[2], s
assert s["checkpoint"].startswith("vmbak-"), s
assert (s["since"] is not None) == (sys.argv[2] == "incremental"), s
assert m["domain_xml"]["file"] == "domain.xml", m
EOF
	cp "$T/mnt/lvguest/$2/domain.xml" "got-$2.xml"
	vumount "$T/mnt"
}

expect_status 0 "$VMBAK" init v --encryption none --chunk-size 16384
expect_status 0 "$VMBAK" info v --json
uuid=$(json_value 'd["uuid"]')

note "a full point"
ingest v
rp1=$RP
[ ! -s "$ERR" ] || fail "the first point said: $(cat "$ERR")"
point_is v "$rp1" full
virsh_t dumpxml lvguest --inactive >inactive.xml
# (virsh adds a blank line at the end)
[ "$(cat "got-$rp1.xml")" = "$(cat inactive.xml)" ] || fail "domain.xml is not the domain's inactive XML"
grep -q "<name>lvguest</name>" "got-$rp1.xml" || fail "domain.xml names another domain"
cps=$(checkpoints)
[ "$(echo "$cps" | wc -l)" -eq 1 ] && [[ $cps == vmbak-$uuid-* ]] ||
	fail "after the first point the checkpoints are: $cps"
no_job

note "writes, then an incremental point that reads only them"
put vda $((3 * MiB)) 65536 0x55
put vda $((40 * MiB + 8192)) 4096 0x66
put vda $((63 * MiB)) 131072 0x77
put vdb $((5 * MiB)) 65536 0x88
ingest v
rp2=$RP
point_is v "$rp2" incremental
expect_status 0 "$VMBAK" info v "lvguest/$rp2" --json
expect_json '
r = {x["name"]: x["read_bytes"] for x in d["disks"]}
i = {x["name"]: x["incremental"] for x in d["disks"]}
assert 0 < r["vda"] <= 262144 + 4 * 16384, r
assert i == {"vda": True, "vdb": False}, i
assert d["source"]["read"] == "incremental" and d["source"]["since"] == sys.argv[2], d["source"]
' "$(echo "$cps")"
note "read $(json_value 'sum(x["read_bytes"] for x in d["disks"])') bytes for the incremental point"
cps2=$(checkpoints)
[ "$(echo "$cps2" | wc -l)" -eq 1 ] && [ "$cps2" != "$cps" ] ||
	fail "the older checkpoint was not tidied: $cps2"
point_is v "$rp1" full

note "a second vault, alternately"
expect_status 0 "$VMBAK" init v2 --encryption none --chunk-size 16384
expect_status 0 "$VMBAK" info v2 --json
uuid2=$(json_value 'd["uuid"]')
put vda $((10 * MiB)) 65536 0x11
ingest v2
point_is v2 "$RP" full
put vda $((11 * MiB)) 65536 0x22
ingest v
point_is v "$RP" incremental
put vdb $((1 * MiB)) 65536 0x33
ingest v2
point_is v2 "$RP" incremental
ingest v
point_is v "$RP" incremental
[ "$(checkpoints | grep -c "^vmbak-$uuid-")" -eq 1 ] && [ "$(checkpoints | grep -c "^vmbak-$uuid2-")" -eq 1 ] ||
	fail "each vault should keep one checkpoint: $(checkpoints)"

note "--quiesce without a guest agent"
before=$(checkpoints)
expect_status 0 "$VMBAK" list v lvguest --json
n=$(json_value 'len(d)')
expect_status 1 "$VMBAK" ingest v lvguest --libvirt lvguest --quiesce
expect_stderr "^vmbak: cannot quiesce domain 'lvguest' through its guest agent: "
[ "$(checkpoints)" = "$before" ] || fail "a failed --quiesce changed the checkpoints"
no_job

note "bad input"
expect_status 1 "$VMBAK" ingest v lvguest --libvirt nosuch
expect_stderr "^vmbak: no libvirt domain 'nosuch'$"
domxml lvstopped | sed "s|$T/vda.qcow2|$T/none.qcow2|" >stopped.xml
virsh_t define stopped.xml >/dev/null || fail "cannot define lvstopped"
libvirt_forget lvstopped
expect_status 1 "$VMBAK" ingest v lvguest --libvirt lvstopped
expect_stderr "^vmbak: domain 'lvstopped' is not running"
expect_status 1 "$VMBAK" ingest v lvguest --libvirt lvguest --connect qemu:///nowhere
expect_stderr "^vmbak: cannot connect to libvirt at 'qemu:///nowhere'"
expect_status 2 "$VMBAK" ingest v lvguest --libvirt lvguest --disk vda=ref-vda
expect_status 2 "$VMBAK" ingest v lvguest --disk vda=ref-vda --quiesce
expect_status 2 "$VMBAK" ingest v lvguest --libvirt ""
expect_status 0 "$VMBAK" list v lvguest --json
[ "$(json_value 'len(d)')" = "$n" ] || fail "a refused ingest made a point"
[ "$(checkpoints)" = "$before" ] || fail "a refused ingest changed the checkpoints"

note "a checkpoint deleted behind vmbak's back: a full read, said and recorded"
virsh_t checkpoint-delete lvguest "$(checkpoints | grep "^vmbak-$uuid-")" >/dev/null ||
	fail "cannot delete the checkpoint"
put vda 0 65536 0x44
printf 'cfg\n' >cfg
expect_status 0 "$VMBAK" ingest v lvguest --libvirt lvguest --config cfg
RP=$(tail -n 1 "$OUT")
cp ref-vda "ref-$RP-vda"
cp ref-vdb "ref-$RP-vdb"
expect_stderr "^vmbak: full read of domain 'lvguest': checkpoint vmbak-$uuid-[0-9]+ of the latest point [^ ]+ is not in the domain$"
point_is v "$RP" full
expect_status 0 "$VMBAK" info v "lvguest/$RP" --json
expect_json 'assert "is not in the domain" in d["source"]["why_full"] and d["config"]["size"] == 4, d'
ingest v
point_is v "$RP" incremental

note "the latest point fails verification: the next point is read in full, not built on it"
put vda 0 65536 0x5a
ingest v
bad=$RP
flip_chunks v lvguest vda 0
expect_status 3 "$VMBAK" verify v lvguest
put vda 0 65536 0x5b
ingest v
expect_stderr "^vmbak: full read of domain 'lvguest': the latest point $bad failed verification$"
point_is v "$RP" full
ingest v
point_is v "$RP" incremental

note "a killed ingest leaves no job, and the checkpoint the latest point needs"
put vdb 0 65536 0x99
before=$(checkpoints)
VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/go "$VMBAK_TB" ingest v lvguest --libvirt lvguest \
	>kill.out 2>&1 &
pid=$!
for ((i = 0; i < 300; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.1
done
[ -e "$T/go.reached" ] || fail "the ingest did not reach its commit: $(cat kill.out)"
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
no_job
[ "$(checkpoints)" = "$before" ] || fail "a killed ingest changed the checkpoints: $(checkpoints)"
compgen -G "$T/vmbak-libvirt.*" >/dev/null && fail "a killed ingest left its directory"
ingest v
point_is v "$RP" incremental

note "kill -9: the next ingest ends the job left behind and goes on"
put vda $((20 * MiB)) 65536 0xab
rm -f "$T/go" "$T/go.reached"
VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/go "$VMBAK_TB" ingest v lvguest --libvirt lvguest \
	>kill.out 2>&1 &
pid=$!
for ((i = 0; i < 300; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.1
done
[ -e "$T/go.reached" ] || fail "the ingest did not reach its commit: $(cat kill.out)"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
expect_status 0 "$VMBAK" ingest v lvguest --libvirt lvguest
RP=$(tail -n 1 "$OUT")
cp ref-vda "ref-$RP-vda"
cp ref-vdb "ref-$RP-vdb"
expect_stderr "^vmbak: warning: ended a backup job of domain 'lvguest' that an earlier vmbak left running$"
point_is v "$RP" incremental
[ "$(checkpoints | grep -c "^vmbak-$uuid-")" -eq 1 ] || fail "checkpoints left: $(checkpoints)"
compgen -G "$T/vmbak-libvirt.*" >/dev/null && fail "a directory was left behind"
no_job

note "restore defines a new VM from the domain.xml libvirt gave"
expect_status 0 "$VMBAK" restore v lvguest --to r --name lvcopy --define
expect_stdout "^domain: defined 'lvcopy' in libvirt$"
libvirt_forget lvcopy
if command -v virt-xml-validate >/dev/null 2>&1; then
	virt-xml-validate r/domain.xml domain >/dev/null || fail "r/domain.xml does not validate"
fi
virsh_t dumpxml lvcopy >copy.xml || fail "lvcopy is not defined"
grep -q "<source file='$T/r/vda.img'/>" copy.xml && grep -q "<source file='$T/r/vdb.img'/>" copy.xml ||
	fail "lvcopy's disks are not the restored files"
virsh_t start lvcopy >/dev/null || fail "the restored VM does not start"
virsh_t destroy lvcopy >/dev/null

note "escrow of a LUKS disk of a domain: the header read from the job's export, checked"
if [ -x /usr/sbin/cryptsetup ] || [ -x /sbin/cryptsetup ] || command -v cryptsetup >/dev/null; then
	printf '%s' 'domain luks pass' >luks.pass
	printf '%s' 'not the passphrase' >wrong.pass
	printf '%s' kvpw >kvpass
	head -c $((4 << 20)) /dev/urandom >luks-plain.img
	qemu-img convert -f raw -O luks --object secret,id=s0,file=luks.pass \
		-o key-secret=s0,iter-time=10 luks-plain.img luks.img
	qemu-img convert -f raw -O qcow2 luks.img luks.qcow2
	expect_ok "$VMBAK" keyvault init kv --passphrase-file kvpass
	expect_ok "$VMBAK" keyvault key create kv kek --passphrase-file kvpass
	for s in luks wrong; do
		expect_ok "$VMBAK" keyvault secret set kv "$s" --value-file "$s.pass" --kek kek \
			--passphrase-file kvpass
	done
	kvopt=(--keyvault kv --keyvault-passphrase-file kvpass)
	# lvguest's XML with vda only, on luks.qcow2.
	domxml lvluks | sed -e "s|$T/vda.qcow2|$T/luks.qcow2|" -e "/vdb.raw/,/<\/disk>/d" \
		-e '/<disk .*device=.disk.>/{N;/type=.raw./d}' >lvluks.xml
	virsh_t define lvluks.xml >/dev/null || fail "cannot define lvluks"
	libvirt_forget lvluks
	virsh_t start lvluks >/dev/null || fail "cannot start lvluks"
	expect_ok "$VMBAK" init v3 --encryption none --chunk-size 16384
	expect_ok "$VMBAK" ingest v3 lvluks --libvirt lvluks "${kvopt[@]}" --escrow vda=luks \
		--check-escrow
	lrp=$(tail -n 1 "$OUT")
	before=$(virsh_t checkpoint-list lvluks --name | sed '/^$/d' | sort)
	expect_status 1 "$VMBAK" ingest v3 lvluks --libvirt lvluks "${kvopt[@]}" \
		--escrow vda=wrong --check-escrow
	expect_stderr "^vmbak: secret 'wrong' version 1 does not open the LUKS header of disk 'vda'"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "wrong secret with --libvirt: not one line: $(cat "$ERR")"
	expect_status 1 "$VMBAK" ingest v3 lvluks --libvirt lvluks "${kvopt[@]}" --escrow sda=luks
	expect_stderr "escrow names disk 'sda', which VM 'lvluks' does not have"
	[ "$(virsh_t checkpoint-list lvluks --name | sed '/^$/d' | sort)" = "$before" ] ||
		fail "a refused escrow changed the checkpoints"
	expect_status 0 "$VMBAK" list v3 lvluks --json
	[ "$(json_value 'len(d)')" = 1 ] || fail "a refused escrow made a point"
	vmount v3 "$T/mnt"
	cmp "$T/mnt/lvluks/$lrp/vda.img" luks.img || fail "lvluks: vda.img differs from luks.img"
	"$VMBAK" keyvault unwrap kv "$T/mnt/lvluks/$lrp/vda.key" --passphrase-file kvpass \
		>vda.out || fail "lvluks: unwrap failed"
	cp "$T/mnt/lvluks/$lrp/vda.img" vda.restored
	vumount "$T/mnt"
	cmp vda.out luks.pass || fail "lvluks: the unwrapped secret is not the passphrase"
	cryptsetup open --test-passphrase --readonly --key-file=vda.out vda.restored ||
		fail "lvluks: cryptsetup does not open the point's image with the unwrapped key"
	virsh_t destroy lvluks >/dev/null 2>&1 || true
else
	[ "${CI:-}" != true ] || fail "cryptsetup is not installed"
	note "no cryptsetup: escrow with --libvirt not tested"
fi
finish_checks
