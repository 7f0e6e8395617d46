#!/usr/bin/env bash
# vmbak files: guest file systems mounted read-only straight from the vault, without
# device-mapper. A LUKS2 disk (made by `cryptsetup reencrypt --encrypt` on an image file, as a
# guest installer would leave it), a LUKS2 disk with 4096-byte sectors and AES-128-XTS, a LUKS1
# disk (qemu-img convert -O luks), a GPT disk whose partition 2 is plain ext4 that needs its
# journal replayed, an MBR disk whose partition 2 is LUKS1, and an NTFS disk: every one shows the
# original files (diff -r), through the escrowed key of its point, also after the LUKS
# passphrase and the KEK were rotated (the older point's blob still opens the older point).
# -u undoes every layer; a second -u, and a -u after the view was killed, say so in one line.
# BitLocker: the real volumes of ../shared/fixtures/bitlocker, opened with the escrowed user
# password, recovery password and .BEK: the decrypted volume (--raw) has the SHA-256 of
# images.conf. Without libcryptsetup (tests/nolib.sh), a LUKS disk fails in one line.
# Bad input for every argument: one line, the exit status, nothing left mounted.
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/nolib.sh"

need_root
need_fuse
need_cmd cryptsetup mkfs.ext4 debugfs qemu-img python3 diff sha256sum
need_programs
[ -e /dev/loop-control ] || skip "no loop devices (/dev/loop-control)"
cd "$TESTTMP"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
printf 'first luks passphrase' >p1
printf 'second luks passphrase' >p2
chmod 600 vpass kvpass p1 p2
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass
unset VMBAK_KEYVAULT_PASSPHRASE VMBAK_KEYVAULT_PASSPHRASE_FILE
kvopt=(--keyvault kv --keyvault-passphrase-file kvpass)

# Every mount point of this test is undone at exit, whatever happened.
mkdir m bad
for d in m bad; do
	at_exit "'$VMBAK' files -u '$TESTTMP/$d' >/dev/null 2>&1"
done

note "the files: text, binary, a symbolic link, nested directories, a name with spaces"
mkdir -p src/etc/deep/er "src/with space"
echo "hello from the guest" >src/etc/motd
head -c 3000000 /dev/urandom >src/etc/deep/er/random.bin
head -c 70000 /dev/urandom >"src/with space/file one"
ln -s ../etc/motd "src/with space/link"
: >src/empty

# mkext4 IMG FS_SIZE FILE_SIZE: ext4 of FS_SIZE holding src in IMG of FILE_SIZE.
mkext4() {
	rm -f "$1"
	truncate -s "$3" "$1"
	mkfs.ext4 -q -F -b 4096 -d src "$1" "$2" || fail "mkfs.ext4 -d into $1 failed"
}

note "LUKS2 made in place (reencrypt --encrypt, 16 MiB header), LUKS2 4 KiB sectors, LUKS1"
fast=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
mkext4 luks2.img 48M 64M
cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M "${fast[@]}" \
	--key-file p1 -q luks2.img || fail "cryptsetup reencrypt --encrypt luks2.img failed"
mkext4 luks2k.img 48M 64M
cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M --sector-size 4096 \
	--key-size 256 "${fast[@]}" --key-file p1 -q luks2k.img ||
	fail "cryptsetup reencrypt --encrypt luks2k.img failed"
cryptsetup luksDump luks2k.img | grep -q 'sector: 4096' || fail "luks2k.img has no 4 KiB sectors"
mkext4 raw1.img 40M 40M
qemu-img convert -f raw -O luks --object secret,id=s0,file=p1 -o key-secret=s0,iter-time=10 \
	raw1.img luks1.img || fail "qemu-img convert -O luks failed"
cryptsetup luksDump luks1.img | grep -q 'Version:.*1' || fail "luks1.img is not LUKS1"

note "partitioned disks: GPT with plain ext4 (journal to replay) in 2, MBR with LUKS1 in 2"
mkext4 part.img 20M 20M
debugfs -w -R 'feature needs_recovery' part.img >/dev/null 2>&1 ||
	fail "debugfs cannot set needs_recovery"
# table.py IMG gpt|mbr PART_FILE: IMG with two partitions, the second holding PART_FILE.
cat >table.py <<'EOF'
import os, struct, sys, uuid, zlib
img, kind, part = sys.argv[1:4]
data = open(part, "rb").read()
p1, p2 = 2048, 2048 + 8192  # first sectors; partition 1 is 4 MiB of nothing
n2 = (len(data) + 511) // 512
total = p2 + n2 + 2048
with open(img, "wb") as f:
    f.truncate(total * 512)
    mbr = bytearray(512)
    if kind == "mbr":
        mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", p1, 8192)
        mbr[462:478] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", p2, n2)
    else:
        mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0xEE, b"\0\0\0", 1, total - 1)
        ents = bytearray(128 * 128)
        linux = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le
        for i, (a, n) in enumerate([(p1, 8192), (p2, n2)]):
            ents[i * 128:i * 128 + 48] = linux + uuid.uuid4().bytes_le + struct.pack("<QQ", a, a + n - 1)
        hdr = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, 1,
                                    total - 1, 34, total - 34, uuid.uuid4().bytes_le, 2, 128, 128,
                                    zlib.crc32(ents)))
        struct.pack_into("<I", hdr, 16, zlib.crc32(hdr))
        f.seek(512); f.write(hdr)
        f.seek(1024); f.write(ents)
    mbr[510:512] = b"\x55\xaa"
    f.seek(0); f.write(mbr)
    f.seek(p2 * 512); f.write(data)
EOF
python3 table.py gpt.img gpt part.img || fail "cannot write gpt.img"
python3 table.py mbr.img mbr luks1.img || fail "cannot write mbr.img"

ntfs=0
if command -v mkntfs >/dev/null && command -v ntfs-3g >/dev/null; then
	note "an NTFS disk (mkntfs, filled through ntfs-3g)"
	truncate -s 32M ntfs.img
	mkntfs -q -F -Q ntfs.img >/dev/null 2>&1 || fail "mkntfs failed"
	mkdir nt
	ntfs-3g ntfs.img nt || fail "ntfs-3g cannot mount ntfs.img"
	cp -a src/. nt/ && umount nt || fail "cannot fill ntfs.img"
	ntfs=1
else
	note "no mkntfs or ntfs-3g (Debian package ntfs-3g): no NTFS disk"
fi

note "key vault, and point 1 with every disk (escrow for the encrypted ones)"
expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv kek --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault secret set kv os --value-file p1 --kek kek \
	--passphrase-file kvpass
disks=(--disk luks2=luks2.img --disk luks2k=luks2k.img --disk luks1=luks1.img
	--disk gpt=gpt.img --disk mbr=mbr.img)
[ "$ntfs" -eq 1 ] && disks+=(--disk ntfs=ntfs.img)
# (--check-escrow reads a header at the start of a disk: not that of a partition.)
expect_status 0 "$VMBAK" ingest v vm "${disks[@]}" "${kvopt[@]}" --escrow luks2=os \
	--escrow luks2k=os --escrow luks1=os --escrow mbr=os --escrow-kind mbr=luks
rp1=$(tail -n 1 "$OUT")

# mounts: the lines of /proc/self/mountinfo that concern this test, and the state directories.
mounts() {
	grep -F -e "$TESTTMP" -e vmbak-files /proc/self/mountinfo | cut -d' ' -f5- | sort || true
}
# shows POINT DISK [OPTS...]: vmbak files mounts DISK of POINT at m with the original files.
shows() {
	local point=$1 disk=$2 t0
	shift 2
	t0=$(date +%s%N)
	expect_status 0 "$VMBAK" files v "vm/$point" "$disk" m "$@"
	ls m >/dev/null || fail "cannot list the root of $disk"
	echo "vmbak files $point $disk: $(( ($(date +%s%N) - t0) / 1000000 )) ms to a listing"
	local pat=$point
	[ "$point" = latest ] && pat='[^ ]+'
	expect_stdout "mounted .*disk '$disk' of vm/$pat read-only at $TESTTMP/m"
	[ -z "${desc:-}" ] || expect_stdout "$desc"
	diff -r --no-dereference -x lost+found -x 'System Volume Information' src m ||
		fail "disk $disk of $point does not show the original files"
	expect_status 0 "$VMBAK" files -u m
	[ ! -s "$ERR" ] || fail "files -u printed: $(cat "$ERR")"
	[ "$(mounts)" = "$before" ] || fail "files -u of $disk left: $(mounts)"
}
before=$(mounts)

note "every disk of point 1"
desc="\(LUKS2, aes-xts-plain64, AES-256, 512-byte sectors\)" shows "$rp1" luks2 "${kvopt[@]}"
desc="\(LUKS2, aes-xts-plain64, AES-128, 4096-byte sectors\)" shows "$rp1" luks2k "${kvopt[@]}"
desc="\(LUKS1, aes-xts-plain64, AES-256, 512-byte sectors\)" shows "$rp1" luks1 "${kvopt[@]}"
desc="mounted partition 2 of disk 'gpt' .*\(not encrypted\)" shows "$rp1" gpt --partition 2
shows "$rp1" mbr --partition 2 "${kvopt[@]}"
[ "$ntfs" -eq 1 ] && shows "$rp1" ntfs
# The key vault passphrase from the environment, as restore takes it.
VMBAK_KEYVAULT_PASSPHRASE_FILE=$TESTTMP/kvpass shows latest luks1 --keyvault kv

note "every unwrap of vmbak files is in the key vault's audit log"
expect_status 0 "$VMBAK" keyvault audit kv --json --passphrase-file kvpass
python3 - "$OUT" <<'EOF' || fail "the unwraps of vmbak files are not in the audit log"
import json, sys
d = json.load(open(sys.argv[1]))
ev = [e for e in d["events"] if e["op"] == "files"]
assert d["intact"] and len(ev) == 5, ev
for e in ev:
    assert e["result"] == "ok" and e["secret"] == "os" and e["key"] == "kek", e
got = sorted(e["detail"].split(" disk ")[1] for e in ev)
assert got == ["luks1", "luks1", "luks2", "luks2k", "mbr"], got
EOF

note "--raw: the decrypted volume as a file, byte for byte the original file system"
expect_status 0 "$VMBAK" files v "vm/$rp1" luks1 m --raw "${kvopt[@]}"
cmp m/disk raw1.img || fail "--raw of luks1 is not the original file system"
expect_status 0 "$VMBAK" files -u m

note "rotation: new LUKS passphrase, new secret version, new KEK version; both points open"
cryptsetup luksChangeKey "${fast[@]}" --key-file p1 luks2.img p2 ||
	fail "cryptsetup luksChangeKey failed"
expect_status 0 "$VMBAK" keyvault key rotate kv kek --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault secret set kv os --value-file p2 --kek kek \
	--passphrase-file kvpass
expect_status 0 "$VMBAK" ingest v vm --disk luks2=luks2.img "${kvopt[@]}" --escrow luks2=os \
	--check-escrow
rp2=$(tail -n 1 "$OUT")
[ "$rp2" != "$rp1" ] || fail "no second point"
shows "$rp1" luks2 "${kvopt[@]}"
shows "$rp2" luks2 "${kvopt[@]}"

note "without libcryptsetup (tests/nolib.sh): one line, nothing mounted"
expect_status 1 without_libs libcryptsetup.so.12 "$VMBAK" files v "vm/$rp1" luks2 m "${kvopt[@]}"
expect_stderr "^vmbak: cannot load libcryptsetup\.so\.12 \(needed for LUKS disks in vmbak files\): "
! is_mounted m || fail "a failed vmbak files left m mounted"
note "-u twice, and -u after the view was killed"
expect_status 0 "$VMBAK" files v "vm/$rp1" luks2 m "${kvopt[@]}"
expect_status 0 "$VMBAK" files -u m
expect_status 1 "$VMBAK" files -u m
expect_stderr "^vmbak: nothing is mounted by vmbak files at 'm'$"
[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line: $(cat "$ERR")"
expect_status 0 "$VMBAK" files v "vm/$rp1" luks2 m "${kvopt[@]}"
state=$(grep -l "^mnt $TESTTMP/m\$" /run/vmbak-files/*/state)
pid=$(sed -n 's/^view //p' "$state")
kill -9 "$pid"
for i in $(seq 50); do [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" || break; sleep 0.1; done
ls m >/dev/null 2>&1 || true
expect_status 1 "$VMBAK" files -u m
expect_stderr "^vmbak: the view under 'm' had stopped \(its process was gone, reads failed\); every layer is undone now$"
[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line: $(cat "$ERR")"
[ "$(mounts)" = "$before" ] || fail "-u after a crash left: $(mounts)"

note "a set-up that stopped before it recorded its view: refused, then undone by -u"
h=$(printf '%s' "$TESTTMP/m" | sha256sum | cut -c1-32)
mkdir -p "/run/vmbak-files/$h/view"
expect_status 1 "$VMBAK" files v "vm/$rp1" gpt m --partition 2
expect_stderr "^vmbak: 'm' is still set up by vmbak files: undo it first with vmbak files -u$"
expect_status 1 "$VMBAK" files -u m
expect_stderr "^vmbak: vmbak files had stopped while setting up 'm'; what it had set up is undone now$"
[ ! -e "/run/vmbak-files/$h" ] || fail "-u left /run/vmbak-files/$h"
[ "$(mounts)" = "$before" ] || fail "left: $(mounts)"

note "bad input: one line, the exit status, nothing left mounted"
touch afile
printf 'wrong\n' >wrongkv
# refused STATUS MESSAGE ARGS...: vmbak files ARGS exits STATUS with one line matching MESSAGE.
refused() {
	local st=$1 msg=$2
	shift 2
	expect_status "$st" "$VMBAK" files "$@"
	expect_stderr "$msg"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line on stderr: $(cat "$ERR")"
	[ "$(mounts)" = "$before" ] || fail "a refused 'vmbak files $*' left: $(mounts)"
	[ -z "$(ls -A bad)" ] || fail "a refused 'vmbak files $*' left files in bad/"
}
refused 2 "missing MOUNTPOINT" v "$rp1" luks2
refused 2 "too many arguments|unexpected argument" v "$rp1" luks2 bad extra
refused 2 "missing MOUNTPOINT" -u
refused 2 "-u takes only the mount point" -u bad --partition 1
refused 1 "cannot open vault 'nov'" nov "vm/$rp1" luks2 bad "${kvopt[@]}"
refused 2 "" v vm luks2 bad
refused 2 "invalid point id 'nope'" v vm/nope luks2 bad
refused 1 "no point '2001-01-01T00:00:00Z' of VM 'vm'" v vm/2001-01-01T00:00:00Z luks2 bad
refused 1 "no VM 'novm'" v novm/latest luks2 bad
refused 2 "invalid disk name" v "vm/$rp1" ../x bad
refused 1 "point vm/$rp1 has no disk 'nodisk'" v "vm/$rp1" nodisk bad
refused 1 "cannot use mount point 'nomnt'" v "vm/$rp1" gpt nomnt --partition 2
refused 1 "cannot use mount point 'afile': not a directory" v "vm/$rp1" gpt afile --partition 2
refused 2 "empty mount point" v "vm/$rp1" gpt ""
refused 1 "disk 'luks2' is LUKS encrypted: give --keyvault" v "vm/$rp1" luks2 bad
refused 1 "key vault" v "vm/$rp1" luks2 bad --keyvault nokv --keyvault-passphrase-file kvpass
refused 1 "disk 'gpt' of point vm/$rp1 has no escrowed key" v "vm/$rp1" gpt bad "${kvopt[@]}"
refused 1 "passphrase" v "vm/$rp1" luks2 bad --keyvault kv --keyvault-passphrase-file wrongkv
refused 2 "--keyvault-passphrase-file needs --keyvault" v "vm/$rp1" gpt bad \
	--keyvault-passphrase-file kvpass
refused 2 "empty argument for --keyvault-passphrase-file" v "vm/$rp1" gpt bad --keyvault kv \
	--keyvault-passphrase-file ""
refused 2 "--keyvault needs a key vault path" v "vm/$rp1" gpt bad --keyvault ""
for p in 0 -1 x 1x 99999 ""; do
	refused 2 "invalid --partition '$p': give a number from 1 to 1024" v "vm/$rp1" gpt bad \
		--partition "$p"
done
refused 1 "disk 'gpt' has no partition 3" v "vm/$rp1" gpt bad --partition 3
refused 1 "disk 'gpt' has no partition 200 \(its GPT has 128 entries\)" v "vm/$rp1" gpt bad \
	--partition 200
refused 1 "disk 'mbr' has an MBR: only its primary partitions 1 to 4" v "vm/$rp1" mbr bad \
	--partition 5
refused 1 "disk 'luks1' has no partition table" v "vm/$rp1" luks1 bad --partition 1 \
	"${kvopt[@]}"
refused 1 "disk 'gpt' has an escrowed key|no escrowed key" v "vm/$rp1" gpt bad --partition 1 \
	"${kvopt[@]}"
refused 1 "cannot mount the file system of disk 'gpt'" v "vm/$rp1" gpt bad --partition 1
refused 1 "disk 'mbr' is LUKS encrypted: give --keyvault" v "vm/$rp1" mbr bad --partition 2
refused 2 "--passphrase" v "vm/$rp1" gpt bad --passphrase x
# An escrowed key that does not open the disk; ciphers the view does not decrypt.
printf 'not the passphrase' >wrongp
expect_status 0 "$VMBAK" keyvault secret set kv wrong --value-file wrongp --kek kek \
	--passphrase-file kvpass
# (cryptsetup luksFormat checks a cipher through device-mapper: qemu-img makes these.)
truncate -s 8M zero.img
qemu-img convert -f raw -O luks --object secret,id=s0,file=p1 \
	-o key-secret=s0,iter-time=10,cipher-alg=serpent-256 zero.img serpent.img ||
	fail "qemu-img convert -O luks (serpent) failed"
qemu-img convert -f raw -O luks --object secret,id=s0,file=p1 \
	-o key-secret=s0,iter-time=10,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256 \
	zero.img cbc.img || fail "qemu-img convert -O luks (cbc-essiv) failed"
expect_status 0 "$VMBAK" ingest v odd --disk luks1=luks1.img --disk serpent=serpent.img \
	--disk cbc=cbc.img "${kvopt[@]}" --escrow luks1=wrong --escrow serpent=os --escrow cbc=os \
	--escrow-kind luks1=luks
refused 1 "^vmbak: the escrowed key of disk 'luks1' does not open its LUKS header$" \
	v odd/latest luks1 bad "${kvopt[@]}"
refused 1 "^vmbak: disk 'serpent' is encrypted with serpent-xts-plain64 \(64-byte key\): vmbak files decrypts only aes-xts-plain64$" \
	v odd/latest serpent bad "${kvopt[@]}"
refused 1 "^vmbak: disk 'cbc' is encrypted with aes-cbc-essiv:sha256 \(32-byte key\): vmbak files decrypts only aes-xts-plain64$" \
	v odd/latest cbc bad "${kvopt[@]}"
refused 2 "unknown option|unrecognized option" v "vm/$rp1" gpt bad --bogus
refused 1 "nothing is mounted by vmbak files at 'bad'" -u bad
refused 1 "nothing is mounted by vmbak files at 'nomnt'" -u nomnt
# A mount point in use: vmbak files' own mount.
expect_status 0 "$VMBAK" files v "vm/$rp1" gpt m --partition 2
inuse=$(mounts)
expect_status 1 "$VMBAK" files v "vm/$rp1" gpt m --partition 2
expect_stderr "cannot use mount point 'm': something is mounted there"
[ "$(mounts)" = "$inuse" ] || fail "a refused mount changed the mounts"
(cd m && exec sleep 60) &
holder=$!
sleep 0.2
expect_status 1 "$VMBAK" files -u m
kill "$holder"
wait "$holder" 2>/dev/null || true
expect_stderr "cannot unmount '.*m': Device or resource busy"
expect_status 0 "$VMBAK" files -u m
[ "$(mounts)" = "$before" ] || fail "left: $(mounts)"

note "help and the manual"
expect_status 0 "$VMBAK" files --help
expect_stdout "vmbak files -u MOUNTPOINT"
man -l "$SRCDIR/man/vmbak.1" 2>/dev/null | grep -q 'files -u mountpoint' || fail "vmbak(1) has no files"

fx=$SRCDIR/../shared/fixtures/bitlocker
if [ ! -f "$fx/bitlk-images.tar.xz" ] || ! command -v dislocker >/dev/null; then
	note "BitLocker skipped: no fixtures at $fx or no dislocker (Debian package dislocker)"
	exit 0
fi

note "BitLocker: escrowed user password, recovery password and .BEK through dislocker"
tar -xJf "$fx/bitlk-images.tar.xz" --wildcards 'bitlk-images/*.img' 'bitlk-images/*.BEK' \
	'bitlk-images/images.conf' || fail "cannot unpack $fx/bitlk-images.tar.xz"
I=bitlk-images
# conf IMAGE KEY: the value of KEY in IMAGE's section of images.conf.
conf() {
	awk -F= -v s="[$1]" -v k="$2" '$0 == s { on = 1; next } /^\[/ { on = 0 }
		on && $1 == k { print substr($0, length(k) + 2) }' "$I/images.conf"
}
printf '%s' "$(conf bitlk-aes-xts-128 PW)" >blpw
printf '%s' "$(conf bitlk-aes-cbc-256 RP)" >blrp
cp "$I/$(conf bitlk-aes-xts-128-startup-key SK_VMK_GUID | tr a-f A-F).BEK" blsk
for s in blpw blrp blsk; do
	expect_status 0 "$VMBAK" keyvault secret set kv "$s" --value-file "$s" --kek kek \
		--passphrase-file kvpass
done
expect_status 0 "$VMBAK" ingest v bl --disk pw="$I/bitlk-aes-xts-128.img" \
	--disk rp="$I/bitlk-aes-cbc-256.img" --disk sk="$I/bitlk-aes-xts-128-startup-key.img" \
	"${kvopt[@]}" --escrow pw=blpw --escrow rp=blrp --escrow sk=blsk --check-escrow
blrp1=$(tail -n 1 "$OUT")
for d in pw:bitlk-aes-xts-128:bitlocker-password rp:bitlk-aes-cbc-256:bitlocker-recovery \
	sk:bitlk-aes-xts-128-startup-key:bitlocker-startup-key; do
	IFS=: read -r disk img kind <<<"$d"
	want=$(conf "$img" SHA256SUM)
	[ -n "$want" ] || fail "images.conf has no SHA256SUM for $img"
	t0=$(date +%s%N)
	expect_status 0 "$VMBAK" files v "bl/$blrp1" "$disk" m --raw "${kvopt[@]}"
	expect_stdout "BitLocker, escrowed $kind; the volume as dislocker-file"
	got=$(sha256sum <m/dislocker-file | cut -d' ' -f1)
	echo "$img with its $kind: $(( ($(date +%s%N) - t0) / 1000000 )) ms, sha256 $got"
	[ "$got" = "$want" ] || fail "the decrypted $img is not the volume of images.conf"
	expect_status 0 "$VMBAK" files -u m
	[ "$(mounts)" = "$before" ] || fail "files -u of $disk left: $(mounts)"
done
# cryptsetup's test volumes keep their NTFS only in part (the first records of its MFT):
# ntfs-3g refuses them, and vmbak files undoes dislocker and the view.
refused 1 "cannot mount the file system of disk 'pw': ntfs-3g: " v "bl/$blrp1" pw bad \
	"${kvopt[@]}"
