#!/usr/bin/env bash
# Per-recovery-point key escrow end to end, with real LUKS1 disks: a LUKS passphrase kept in a
# key vault (wrapped by an RSA KEK, by an AES-256 KEK, or stored without a KEK), two recovery
# points with a KEK rotation and a passphrase change in between, and through the mount each
# point's DISK.key unwraps to the passphrase of that point: cryptsetup accepts it for that
# point's image and refuses the other point's, and QEMU's LUKS driver opened with it reads back
# the plaintext ext4 image.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd qemu-img cryptsetup mkfs.ext4 python3 cmp
need_programs
cd "$TESTTMP"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
chmod 600 vpass kvpass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass
unset VMBAK_KEYVAULT_PASSPHRASE VMBAK_KEYVAULT_PASSPHRASE_FILE

note "a 24 MiB ext4 image, and a LUKS1 image of it made by qemu-img convert -O luks"
mk_ext4_image "$TESTTMP/plain.img" 24 >/dev/null
# LUKS passphrases are files read whole (no newline), as cryptsetup --key-file and QEMU's
# secret object read them.
printf 'first LUKS passphrase' >pass1
chmod 600 pass1
# QEMU times its PBKDF2 rounds with the process's CPU clock, and on a loaded machine that
# sometimes fails ("Unable to get accurate CPU usage"): try again a few times.
for try in 1 2 3 4 5; do
	qemu-img convert -f raw -O luks --object secret,id=sec0,file=pass1 \
		-o key-secret=sec0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256,iter-time=50 \
		plain.img luks.img && break
	[ "$try" -lt 5 ] || fail "qemu-img convert -O luks failed"
	rm -f luks.img
done
cryptsetup luksDump luks.img | grep -Eq '^Version:[[:space:]]*1$' || fail "luks.img is not LUKS1"

expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv rsa-kek --type rsa-3072 --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv aes-kek --type aes-256 --passphrase-file kvpass

# scenario VM KEK: the whole story for one VM whose secret is wrapped by KEK (or none: "").
scenario() {
	local vm=$1 kek=$2 kekopt=() kvopt=() rp1 rp2 k1 k2 j
	[ -n "$kek" ] && kekopt=(--kek "$kek")
	# A backup host needs the key vault passphrase only for an AES KEK or no KEK.
	[ "$kek" != rsa-kek ] && kvopt=(--keyvault-passphrase-file kvpass)
	note "$vm: secret ${kek:-without a KEK}"
	cp luks.img "$vm.img"
	printf 'second LUKS passphrase of %s' "$vm" >"$vm.pass2"

	expect_status 0 "$VMBAK" keyvault secret set kv "$vm-os" --value-file pass1 "${kekopt[@]}" \
		--passphrase-file kvpass
	expect_status 0 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" --keyvault kv \
		--escrow "os=$vm-os" "${kvopt[@]}" </dev/null
	rp1=$(tail -n 1 "$OUT")

	# Years later: the KEK rotates, the disk gets a new passphrase, the secret a new version.
	if [ -n "$kek" ]; then
		expect_status 0 "$VMBAK" keyvault key rotate kv "$kek" --passphrase-file kvpass
	fi
	cryptsetup luksAddKey --key-file pass1 --pbkdf-force-iterations 1000 "$vm.img" "$vm.pass2" ||
		fail "cryptsetup luksAddKey on $vm.img failed"
	cryptsetup luksRemoveKey "$vm.img" pass1 || fail "cryptsetup luksRemoveKey on $vm.img failed"
	# The key vault still has the old passphrase: --check-escrow finds it out, no point made.
	expect_status 1 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" --keyvault kv \
		--escrow "os=$vm-os" --check-escrow --keyvault-passphrase-file kvpass </dev/null
	expect_stderr "secret '$vm-os' version 1 does not open the LUKS header of disk 'os'"
	expect_status 0 "$VMBAK" keyvault secret set kv "$vm-os" --value-file "$vm.pass2" \
		"${kekopt[@]}" --passphrase-file kvpass
	expect_stdout "version 2"
	expect_status 0 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" --keyvault kv \
		--escrow "os=$vm-os" --check-escrow --keyvault-passphrase-file kvpass </dev/null
	rp2=$(tail -n 1 "$OUT")
	[ "$rp1" != "$rp2" ] || fail "two ingests gave the same id $rp1"

	for j in 1 2; do
		local rp k img
		if [ "$j" = 1 ]; then rp=$rp1 k=pass1; else rp=$rp2 k=$vm.pass2; fi
		img=mnt/$vm/$rp/os.img
		[ "$(stat -c %a "mnt/$vm/$rp/os.key")" = 400 ] ||
			fail "mode of mnt/$vm/$rp/os.key is $(stat -c %a "mnt/$vm/$rp/os.key"), not 400"
		python3 - "mnt/$vm/$rp/manifest.json" "mnt/$vm/$rp/os.key" "$vm" "$rp" "$j" "$kek" <<'EOF' ||
import json, sys
man, key, vm, rp, j, kek = sys.argv[1:7]
m = json.load(open(man))
assert m["escrow"] == ["os"], m["escrow"]
b = json.load(open(key))
assert b["format"] == "vmbak-escrow" and b["version"] == 2, b
assert b["kind"] == "luks", b
assert (b["vm"], b["disk"], b["rp"]) == (vm, "os", rp), b
assert b["secret"] == {"name": vm + "-os", "version": int(j)}, b["secret"]
if kek:
    assert b["kek"]["name"] == kek and b["kek"]["version"] == int(j), b["kek"]
else:
    assert b["kek"] is None and b["algorithm"] == "keyvault-aes-256-gcm", b
EOF
			fail "manifest or blob of $vm/$rp is not as expected"
		expect_status 0 "$VMBAK" keyvault unwrap kv "mnt/$vm/$rp/os.key" --output "$vm.key$j" \
			--passphrase-file kvpass
		[ "$(stat -c %a "$vm.key$j")" = 600 ] || fail "unwrapped $vm.key$j is not mode 600"
		cmp "$vm.key$j" "$k" || fail "the key of $vm/$rp is not the passphrase of that point"
		# To stdout too, byte for byte.
		"$VMBAK" keyvault unwrap kv "mnt/$vm/$rp/os.key" --passphrase-file kvpass >"$vm.out$j" ||
			fail "unwrap of $vm/$rp to stdout failed"
		cmp "$vm.out$j" "$k" || fail "unwrap to stdout of $vm/$rp differs"
	done
	k1=$vm.key1 k2=$vm.key2
	cryptsetup luksOpen --test-passphrase --readonly --key-file "$k1" "mnt/$vm/$rp1/os.img" ||
		fail "cryptsetup refuses the escrowed key of $vm/$rp1 for its image"
	cryptsetup luksOpen --test-passphrase --readonly --key-file "$k2" "mnt/$vm/$rp2/os.img" ||
		fail "cryptsetup refuses the escrowed key of $vm/$rp2 for its image"
	if cryptsetup luksOpen --test-passphrase --readonly --key-file "$k2" "mnt/$vm/$rp1/os.img" \
		2>/dev/null; then
		fail "cryptsetup accepts the key of $vm/$rp2 for the image of $vm/$rp1"
	fi
	if cryptsetup luksOpen --test-passphrase --readonly --key-file "$k1" "mnt/$vm/$rp2/os.img" \
		2>/dev/null; then
		fail "cryptsetup accepts the key of $vm/$rp1 for the image of $vm/$rp2"
	fi
	for j in 1 2; do
		local rp
		if [ "$j" = 1 ]; then rp=$rp1; else rp=$rp2; fi
		qemu-img compare --object "secret,id=sec0,file=$vm.key$j" --image-opts \
			"driver=luks,file.filename=mnt/$vm/$rp/os.img,key-secret=sec0" \
			"driver=raw,file.filename=plain.img" >/dev/null ||
			fail "qemu-img compare: $vm/$rp opened with its escrowed key differs from plain.img"
	done
}

note "--check-escrow refuses a disk that is not LUKS"
expect_status 0 "$VMBAK" keyvault secret set kv plain-os --value-file pass1 --kek rsa-kek \
	--passphrase-file kvpass
expect_status 1 "$VMBAK" ingest v plain --disk os=plain.img --keyvault kv --escrow os=plain-os \
	--check-escrow --keyvault-passphrase-file kvpass </dev/null
expect_stderr "'plain.img' is not a LUKS or BitLocker volume"

note "--check-escrow never writes the disk: a LUKS2 header with a damaged primary copy"
# cryptsetup repairs a damaged primary LUKS2 header from its secondary copy as it loads it; run
# on the source, that rewrote the disk being backed up.
truncate -s 20M luks2.img
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
	--key-file pass1 luks2.img || fail "cryptsetup luksFormat --type luks2 failed"
printf 'not the LUKS passphrase' >wrongpass
expect_status 0 "$VMBAK" init v2
expect_status 0 "$VMBAK" keyvault secret set kv l2-os --value-file pass1 --kek rsa-kek \
	--passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault secret set kv l2-wrong --value-file wrongpass --kek rsa-kek \
	--passphrase-file kvpass
for damage in json magic; do
	cp luks2.img "damaged-$damage.img"
	if [ "$damage" = json ]; then
		# 8 bytes of the primary JSON area: its checksum no longer matches.
		printf 'XXXXXXXX' | dd of="damaged-$damage.img" bs=1 seek=$((0x1100)) conv=notrunc \
			status=none
	else
		dd if=/dev/zero of="damaged-$damage.img" bs=16 count=1 conv=notrunc status=none
	fi
	before=$(sha256sum <"damaged-$damage.img")
	expect_status 0 "$VMBAK" ingest v2 "l2-$damage" --disk "os=damaged-$damage.img" \
		--keyvault kv --escrow os=l2-os --check-escrow --keyvault-passphrase-file kvpass </dev/null
	[ "$(sha256sum <"damaged-$damage.img")" = "$before" ] ||
		fail "ingest --check-escrow changed its source damaged-$damage.img"
	expect_status 1 "$VMBAK" ingest v2 "l2-$damage" --disk "os=damaged-$damage.img" \
		--keyvault kv --escrow os=l2-wrong --check-escrow --keyvault-passphrase-file kvpass </dev/null
	expect_stderr "secret 'l2-wrong' version 1 does not open the LUKS header of disk 'os'"
	[ "$(sha256sum <"damaged-$damage.img")" = "$before" ] ||
		fail "a refused ingest --check-escrow changed its source damaged-$damage.img"
done

note "--check-escrow runs cryptsetup by absolute path, never one found through PATH"
mkdir fakebin
cat >fakebin/cryptsetup <<EOF
#!/bin/sh
env >"$TESTTMP/fake-ran"
cat >/dev/null
exit 0
EOF
chmod 755 fakebin/cryptsetup
PATH=$TESTTMP/fakebin:$PATH expect_status 1 "$VMBAK" ingest v2 fake --disk os=luks2.img \
	--keyvault kv --escrow os=l2-wrong --check-escrow --keyvault-passphrase-file kvpass </dev/null
expect_stderr "secret 'l2-wrong' version 1 does not open the LUKS header"
[ ! -e fake-ran ] || fail "ingest --check-escrow ran the cryptsetup it found in PATH"

vmount v mnt
scenario web rsa-kek
scenario db aes-kek
scenario app ""

note "the mount shows the escrow of every point; list --json names it"
"$VMBAK" list v --json >list.json || fail "list --json failed"
python3 - list.json <<'EOF' || fail "list --json does not name the escrowed disks"
import json, sys
pts = json.load(open(sys.argv[1]))
assert len(pts) == 6, len(pts)
for p in pts:
    assert p["escrow"] == ["os"], p
EOF

note "a KEK-wrapped blob of one point does not open as another's (moved between points)"
python3 - mnt/web/latest/os.key web.moved <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))
b["vm"] = "db"
open(sys.argv[2], "w").write(json.dumps(b, indent=2) + "\n")
EOF
expect_status 1 "$VMBAK" keyvault unwrap kv web.moved --passphrase-file kvpass --output moved.out
expect_stderr "does not verify"
[ ! -e moved.out ] || fail "a failed unwrap wrote its output file"
