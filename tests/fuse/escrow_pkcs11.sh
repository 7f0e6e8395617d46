#!/usr/bin/env bash
# Key escrow with KEKs in a PKCS#11 token (SoftHSM2, its token in this test's directory through
# SOFTHSM2_CONF): the escrow story of escrow.sh with an RSA and an AES-256 KEK made inside the
# token (ingest with --escrow, a KEK rotation and a new LUKS passphrase, a second point with
# --check-escrow, then through the mount each point's DISK.key unwraps, by the token, to the
# passphrase cryptsetup accepts for that point's image and refuses for the other's). Then the
# refusals, each one line, non-zero, the key vault file unchanged byte for byte: a wrong PIN, no
# PIN, a missing token, a key removed from the token, another key put in its place, bad URIs, a
# module path neither registered with p11-kit nor allowed (and allowed by VMBAK_PKCS11_MODULE), a
# URI in the key vault file changed without its passphrase, and no --pin option.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd cryptsetup softhsm2-util pkcs11-tool python3 cmp sha256sum
need_programs
cd "$TESTTMP"

# SoftHSM2's module, as p11-kit's registry knows it (Debian's softhsm2 registers it).
MODULE=$(sed -n 's/^module:[[:space:]]*//p' /usr/share/p11-kit/modules/softhsm2.module 2>/dev/null)
[ -n "$MODULE" ] && [ -e "$MODULE" ] || skip "softhsm2 is not registered with p11-kit"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
printf '1234\n' >pin
printf '4321\n' >wrongpin
chmod 600 vpass kvpass pin wrongpin
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass
unset VMBAK_KEYVAULT_PASSPHRASE VMBAK_KEYVAULT_PASSPHRASE_FILE VMBAK_PKCS11_PIN \
	VMBAK_PKCS11_MODULE
export VMBAK_PKCS11_PIN_FILE=$TESTTMP/pin

note "a SoftHSM2 token in $TESTTMP/tokens"
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$TESTTMP" >softhsm2.conf
export SOFTHSM2_CONF=$TESTTMP/softhsm2.conf
softhsm2-util --init-token --free --label vmbak-escrow --pin 1234 --so-pin 5678 >/dev/null ||
	fail "softhsm2-util --init-token failed"
P11="pkcs11-tool --module $MODULE --token-label vmbak-escrow --login --pin 1234"

sum() { sha256sum kv/keyvault.json | cut -d' ' -f1; }
unchanged() { [ "$(sum)" = "$1" ] || fail "a failed command changed kv/keyvault.json"; }

note "KEKs made in the token: RSA-3072 (by module name) and AES-256 (by module path)"
expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv hsm-rsa --type rsa-3072 --passphrase-file kvpass \
	--pkcs11 'pkcs11:token=vmbak-escrow;object=escrow-rsa?module-name=softhsm2'
expect_stdout "in PKCS#11 token: pkcs11:token=vmbak-escrow;id=%[0-9A-F%]+;object=escrow-rsa;type=private"
expect_status 0 "$VMBAK" keyvault key create kv hsm-aes --type aes-256 --passphrase-file kvpass \
	--pkcs11 "pkcs11:token=vmbak-escrow;object=escrow-aes?module-path=$MODULE"
expect_stdout "fingerprint pkcs11-kcv:[0-9a-f]{64}"
# The token holds them, never to be read out.
$P11 --list-objects >objects 2>/dev/null || fail "pkcs11-tool --list-objects failed"
grep -A4 'label: *escrow-rsa' objects | grep -q 'never extractable' ||
	fail "the RSA private key in the token is extractable"
grep -A4 'label: *escrow-aes' objects | grep -q 'never extractable' ||
	fail "the AES key in the token is extractable"
python3 - kv/keyvault.json <<'EOF' ||
import json, sys
k = json.load(open(sys.argv[1]))["keys"]
for name in ("hsm-rsa", "hsm-aes"):
    assert k[name]["pkcs11"].startswith("pkcs11:token=vmbak-escrow"), k[name]
    for v in k[name]["versions"]:
        assert "private" not in v and v["pkcs11"].startswith("pkcs11:"), v
EOF
	fail "the key vault keeps private material of a token key"

note "LUKS1 images"
truncate -s 20M luks.img
printf 'first LUKS passphrase' >pass1
chmod 600 pass1
cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file pass1 luks.img ||
	fail "cryptsetup luksFormat failed"

# scenario VM KEK: ingest, rotate, new passphrase, ingest with --check-escrow; unwrap both points.
scenario() {
	local vm=$1 kek=$2 rp1 rp2 j
	note "$vm: secret wrapped by $kek"
	cp luks.img "$vm.img"
	printf 'second LUKS passphrase of %s' "$vm" >"$vm.pass2"
	expect_status 0 "$VMBAK" keyvault secret set kv "$vm-os" --value-file pass1 --kek "$kek" \
		--passphrase-file kvpass
	# An RSA KEK wraps with the public key kept in the key vault: no PIN, no passphrase.
	if [ "$kek" = hsm-rsa ]; then
		VMBAK_PKCS11_PIN_FILE= expect_status 0 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" \
			--keyvault kv --escrow "os=$vm-os" </dev/null
	else
		# AES wraps inside the token: the PIN, but not the key vault's passphrase.
		VMBAK_PKCS11_PIN_FILE= expect_status 1 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" \
			--keyvault kv --escrow "os=$vm-os" </dev/null
		expect_stderr "PKCS#11 token 'vmbak-escrow' needs its PIN"
		expect_status 0 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" --keyvault kv \
			--escrow "os=$vm-os" </dev/null
	fi
	rp1=$(tail -n 1 "$OUT")
	expect_status 0 "$VMBAK" keyvault key rotate kv "$kek" --passphrase-file kvpass
	expect_stdout "version 2"
	cryptsetup luksAddKey --key-file pass1 --pbkdf-force-iterations 1000 "$vm.img" "$vm.pass2" ||
		fail "cryptsetup luksAddKey on $vm.img failed"
	cryptsetup luksRemoveKey "$vm.img" pass1 || fail "cryptsetup luksRemoveKey failed"
	expect_status 0 "$VMBAK" keyvault secret set kv "$vm-os" --value-file "$vm.pass2" \
		--kek "$kek" --passphrase-file kvpass
	expect_stdout "version 2, wrapped by key '$kek' version 2"
	expect_status 0 "$VMBAK" ingest v "$vm" --disk "os=$vm.img" --keyvault kv \
		--escrow "os=$vm-os" --check-escrow --keyvault-passphrase-file kvpass </dev/null
	rp2=$(tail -n 1 "$OUT")
	[ "$rp1" != "$rp2" ] || fail "two ingests gave the same id $rp1"

	vmount v mnt
	for j in 1 2; do
		local rp k
		if [ "$j" = 1 ]; then rp=$rp1 k=pass1; else rp=$rp2 k=$vm.pass2; fi
		python3 - "mnt/$vm/$rp/os.key" "$kek" "$j" <<'EOF' || fail "blob of $vm/$rp"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["kek"]["name"] == sys.argv[2] and b["kek"]["version"] == int(sys.argv[3]), b["kek"]
EOF
		# The old point after the rotation: version 1 of the KEK, still in the token.
		expect_status 0 "$VMBAK" keyvault unwrap kv "mnt/$vm/$rp/os.key" \
			--output "$vm.key$j" --passphrase-file kvpass
		cmp "$vm.key$j" "$k" || fail "the key of $vm/$rp is not the passphrase of that point"
		cp "mnt/$vm/$rp/os.key" "$vm.blob$j"
	done
	cryptsetup luksOpen --test-passphrase --readonly --key-file "$vm.key1" \
		"mnt/$vm/$rp1/os.img" || fail "cryptsetup refuses the escrowed key of $vm/$rp1"
	cryptsetup luksOpen --test-passphrase --readonly --key-file "$vm.key2" \
		"mnt/$vm/$rp2/os.img" || fail "cryptsetup refuses the escrowed key of $vm/$rp2"
	if cryptsetup luksOpen --test-passphrase --readonly --key-file "$vm.key2" \
		"mnt/$vm/$rp1/os.img" 2>/dev/null; then
		fail "cryptsetup accepts the key of $vm/$rp2 for the image of $vm/$rp1"
	fi
	vumount mnt
}

scenario web hsm-rsa
scenario db hsm-aes

note "refusals: one line each, non-zero, the key vault unchanged"
s0=$(sum)
# expect_refused STATUS PATTERN CMD...: exit STATUS, one line on stderr matching PATTERN.
expect_refused() {
	local st=$1 pat=$2
	shift 2
	expect_status "$st" "$@"
	expect_stderr "$pat"
	[ "$(wc -l <"$ERR")" = 1 ] || fail "more than one line on stderr: $(cat "$ERR")"
	unchanged "$s0"
}

VMBAK_PKCS11_PIN_FILE=$TESTTMP/wrongpin expect_refused 1 \
	"^vmbak: wrong PIN for PKCS#11 token 'vmbak-escrow'" \
	"$VMBAK" keyvault unwrap kv web.blob1 --passphrase-file kvpass --output x.out
VMBAK_PKCS11_PIN_FILE= expect_refused 1 "^vmbak: PKCS#11 token 'vmbak-escrow' needs its PIN" \
	"$VMBAK" keyvault unwrap kv web.blob1 --passphrase-file kvpass --output x.out </dev/null
VMBAK_PKCS11_PIN_FILE=$TESTTMP/nopin expect_refused 1 "^vmbak: cannot read the PIN" \
	"$VMBAK" keyvault unwrap kv db.blob1 --passphrase-file kvpass --output x.out
[ ! -e x.out ] || fail "a failed unwrap wrote its output"
# The PIN from the environment works too (and never from argv).
VMBAK_PKCS11_PIN_FILE= VMBAK_PKCS11_PIN=1234 expect_status 0 "$VMBAK" keyvault unwrap kv \
	db.blob2 --passphrase-file kvpass --output db.again
cmp db.again db.pass2 || fail "unwrap with VMBAK_PKCS11_PIN gave another secret"
rm -f db.again

expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad1 \
	--passphrase-file kvpass --pkcs11 'pkcs11:token=vmbak-escrow;pin-value=1234'
expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad2 \
	--passphrase-file kvpass --pkcs11 'pkcs11:token=vmbak-escrow;frobnicate=1'
expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad3 \
	--passphrase-file kvpass --pkcs11 'http://vmbak-escrow'
expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad4 \
	--passphrase-file kvpass --pkcs11 'pkcs11:token=vmbak-escrow;token=other'
expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad5 \
	--passphrase-file kvpass --pkcs11 'pkcs11:token=vmbak-escrow;id=%01'
expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad6 \
	--passphrase-file kvpass --pkcs11 'pkcs11:token=vmbak escrow'
expect_refused 2 "^vmbak: invalid PKCS#11 URI" "$VMBAK" keyvault key create kv bad7 \
	--passphrase-file kvpass --pkcs11 'pkcs11:token=x?module-path=relative/lib.so'
expect_refused 1 "^vmbak: no PKCS#11 token matches 'pkcs11:token=no-such-token" \
	"$VMBAK" keyvault key create kv bad8 --passphrase-file kvpass \
	--pkcs11 'pkcs11:token=no-such-token?module-name=softhsm2'
# A module that p11-kit's registry does not know is never loaded, unless the user allows it.
cp "$MODULE" "$TESTTMP/copy-of-softhsm2.so"
expect_refused 1 "^vmbak: PKCS#11 module '$TESTTMP/copy-of-softhsm2.so' is not registered" \
	"$VMBAK" keyvault key create kv bad9 --passphrase-file kvpass \
	--pkcs11 "pkcs11:token=vmbak-escrow?module-path=$TESTTMP/copy-of-softhsm2.so"

note "a missing token: unwrap says so"
mv tokens tokens.away
mkdir tokens
expect_refused 1 "^vmbak: no PKCS#11 token matches 'pkcs11:token=vmbak-escrow;" \
	"$VMBAK" keyvault unwrap kv web.blob1 --passphrase-file kvpass --output x.out
rmdir tokens
mv tokens.away tokens

note "a key removed from the token: unwrap of its points says so, the others still unwrap"
id=$(python3 -c 'import json,sys; print(json.load(open("kv/keyvault.json"))["keys"]["hsm-rsa"]["versions"][0]["pkcs11"])' |
	sed -n 's/.*;id=\([^;]*\);.*/\1/p' | tr -d '%')
[ -n "$id" ] || fail "no id in the key vault's URI of hsm-rsa version 1"
$P11 --delete-object --type privkey --id "$id" >/dev/null 2>&1 ||
	fail "pkcs11-tool --delete-object failed"
expect_refused 1 "^vmbak: no such key in PKCS#11 token 'vmbak-escrow'" \
	"$VMBAK" keyvault unwrap kv web.blob1 --passphrase-file kvpass --output x.out
expect_status 0 "$VMBAK" keyvault unwrap kv web.blob2 --passphrase-file kvpass --output web.again
cmp web.again web.pass2 || fail "unwrap of version 2 after version 1 was removed differs"

note "another key in the token under the id the key vault names: refused as not the key"
id=$(python3 -c 'import json,sys; print(json.load(open("kv/keyvault.json"))["keys"]["hsm-aes"]["versions"][0]["pkcs11"])' |
	sed -n 's/.*;id=\([^;]*\);.*/\1/p' | tr -d '%')
$P11 --delete-object --type secrkey --id "$id" >/dev/null 2>&1 ||
	fail "pkcs11-tool --delete-object of the AES key failed"
$P11 --keygen --key-type AES:32 --id "$id" --label escrow-aes --usage-wrap --sensitive \
	>/dev/null 2>&1 || fail "pkcs11-tool --keygen failed"
expect_refused 1 "^vmbak: the PKCS#11 token holds another key than key 'hsm-aes' version 1$" \
	"$VMBAK" keyvault unwrap kv db.blob1 --passphrase-file kvpass --output x.out

note "a URI changed in the key vault file without its passphrase is found out"
cp kv/keyvault.json kv.good
python3 - kv/keyvault.json "$TESTTMP/evil.so" <<'EOF'
import json, sys
p, evil = sys.argv[1:3]
k = json.load(open(p))
v = k["keys"]["hsm-aes"]["versions"][1]
v["pkcs11"] = v["pkcs11"].split("?")[0] + "?module-path=" + evil
open(p, "w").write(json.dumps(k, indent=2))
EOF
printf 'not a module' >evil.so
s0=$(sum)
expect_refused 1 "^vmbak: key vault file .kv/keyvault.json. does not verify: it was changed" \
	"$VMBAK" keyvault unwrap kv db.blob2 --passphrase-file kvpass --output x.out
cp kv.good kv/keyvault.json
[ ! -e x.out ] || fail "a failed unwrap wrote its output"

note "no --pin option; a module p11-kit does not know is loaded only when VMBAK_PKCS11_MODULE allows it"
s0=$(sum)
expect_refused 2 "^vmbak: there is no --pin option" "$VMBAK" keyvault unwrap kv web.blob2 \
	--passphrase-file kvpass --pin 1234
VMBAK_PKCS11_MODULE=relative.so expect_refused 1 \
	"^vmbak: VMBAK_PKCS11_MODULE must be an absolute path" "$VMBAK" keyvault key create kv \
	bad10 --passphrase-file kvpass --pkcs11 'pkcs11:token=vmbak-escrow'
VMBAK_PKCS11_MODULE=$TESTTMP/no-such-module.so expect_refused 1 \
	"^vmbak: cannot load PKCS#11 module '$TESTTMP/no-such-module.so' \(from VMBAK_PKCS11_MODULE\)" \
	"$VMBAK" keyvault key create kv bad11 --passphrase-file kvpass --pkcs11 'pkcs11:token=x'
: >emptypin
VMBAK_PKCS11_PIN_FILE=$TESTTMP/emptypin expect_refused 1 "^vmbak: cannot read the PIN" \
	"$VMBAK" keyvault key create kv bad12 --passphrase-file kvpass \
	--pkcs11 'pkcs11:token=vmbak-escrow?module-name=softhsm2'
COPY="pkcs11:token=vmbak-escrow;object=copied?module-path=$TESTTMP/copy-of-softhsm2.so"
VMBAK_PKCS11_MODULE=$TESTTMP/copy-of-softhsm2.so expect_status 0 "$VMBAK" keyvault key create \
	kv copied --passphrase-file kvpass --pkcs11 "$COPY"
# The key vault names that module now; without the variable it is still not loaded.
s0=$(sum)
expect_refused 1 "^vmbak: PKCS#11 module '$TESTTMP/copy-of-softhsm2.so' is not registered" \
	"$VMBAK" keyvault key rotate kv copied --passphrase-file kvpass
VMBAK_PKCS11_MODULE=$TESTTMP/copy-of-softhsm2.so expect_status 0 "$VMBAK" keyvault key rotate \
	kv copied --passphrase-file kvpass
expect_stdout "object=copied-v2;type=private"
