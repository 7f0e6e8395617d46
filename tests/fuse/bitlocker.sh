#!/usr/bin/env bash
# BitLocker escrow with the real volumes of cryptsetup's test suite (made on Windows): every
# image's user password and 48-digit recovery password, and the two .BEK startup keys, escrowed
# with --check-escrow (one point per kind of secret, every image a disk of it); through the mount
# every blob says its kind and unwraps to the secret. A wrong secret of each kind is refused
# (one line, exit 1, nothing committed), and so is bad input to --escrow-kind. No source image
# changes. The fixtures are unpacked from ../shared/fixtures/bitlocker beside the checkout.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd cryptsetup python3 sha256sum tar xz cmp
need_programs
fx=$SRCDIR/../shared/fixtures/bitlocker
[ -f "$fx/bitlk-images.tar.xz" ] ||
	skip "no BitLocker fixtures at $fx (a copy of shared/ beside the checkout)"
cd "$TESTTMP"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
chmod 600 vpass kvpass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass
unset VMBAK_KEYVAULT_PASSPHRASE VMBAK_KEYVAULT_PASSPHRASE_FILE

note "unpack the fixtures (sparse)"
tar -xJf "$fx/bitlk-images.tar.xz" --wildcards 'bitlk-images/*.img' 'bitlk-images/*.BEK' \
	'bitlk-images/images.conf' || fail "cannot unpack $fx/bitlk-images.tar.xz"
I=bitlk-images
# NAME PW RP SK_GUID per image; "-" where there is none.
awk -F= '/^\[/ { if (n) print n, pw, rp, sk; n = substr($0, 2, length($0) - 2); pw = rp = sk = "-" }
	$1 == "PW" && $2 != "" { pw = $2 } $1 == "RP" && $2 != "" { rp = $2 }
	$1 == "SK_VMK_GUID" && $2 != "" { sk = toupper($2) }
	END { if (n) print n, pw, rp, sk }' "$I/images.conf" >images
[ "$(wc -l <images)" -ge 15 ] || fail "images.conf lists $(wc -l <images) images, not 15"
sha256sum "$I"/*.img >sums

# cryptsetup 2.6 cannot test a secret of a volume still encrypting (eow) or partially
# decrypted (clearkey): those are checked apart, below.
untestable='bitlk-aes-xts-128-eow|bitlk-clearkey-aes-cbc-128'

expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key create kv kek --passphrase-file kvpass

note "secrets: every password, recovery password and startup key (values stored exactly)"
n=0
pw_args=() rp_args=() sk_args=()
while read -r name pw rp sk; do
	n=$((n + 1))
	[[ "$name" =~ ^($untestable)$ ]] && continue
	if [ "$pw" != - ]; then
		printf '%s' "$pw" >"pw$n"
		expect_status 0 "$VMBAK" keyvault secret set kv "pw$n" --value-file "pw$n" --kek kek \
			--passphrase-file kvpass
		pw_args+=(--disk "d$n=$I/$name.img" --escrow "d$n=pw$n")
	fi
	printf '%s' "$rp" >"rp$n"
	expect_status 0 "$VMBAK" keyvault secret set kv "rp$n" --value-file "rp$n" --kek kek \
		--passphrase-file kvpass
	rp_args+=(--disk "d$n=$I/$name.img" --escrow "d$n=rp$n")
	if [ "$sk" != - ]; then
		cp "$I/$sk.BEK" "sk$n"
		expect_status 0 "$VMBAK" keyvault secret set kv "sk$n" --value-file "sk$n" --kek kek \
			--passphrase-file kvpass
		sk_args+=(--disk "d$n=$I/$name.img" --escrow "d$n=sk$n")
	fi
	echo "$n $name" >>disks
done <images
[ "${#sk_args[@]}" -eq 8 ] || fail "not two images with a startup key in images.conf"

# state: digests of the vault and key vault files (LMDB's lock file aside).
state() { find v kv -type f ! -name lock.mdb -print0 | sort -z | xargs -0 sha256sum; }
# refused STATUS MESSAGE CMD...: the command exits STATUS with one line on stderr that matches
# MESSAGE, and leaves the vault and the key vault as they were.
refused() {
	local st=$1 msg=$2 before
	shift 2
	before=$(state)
	expect_status "$st" "$@"
	expect_stderr "$msg"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line on stderr: $(cat "$ERR")"
	[ "$(state)" = "$before" ] || fail "a refused command changed the vault or the key vault"
}

note "ingest with --check-escrow: passwords, recovery passwords, startup keys"
t0=$SECONDS
expect_status 0 "$VMBAK" ingest v pw "${pw_args[@]}" --keyvault kv --check-escrow \
	--keyvault-passphrase-file kvpass </dev/null
rp_pw=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest v rp "${rp_args[@]}" --keyvault kv --check-escrow \
	--keyvault-passphrase-file kvpass </dev/null
rp_rp=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest v sk "${sk_args[@]}" --keyvault kv --check-escrow \
	--keyvault-passphrase-file kvpass </dev/null
rp_sk=$(tail -n 1 "$OUT")
echo "three ingests with --check-escrow of $(wc -l <disks) images: $((SECONDS - t0)) s"

note "wrong secrets are refused at ingest with --check-escrow"
first=$(head -n 1 disks | cut -d' ' -f2)
printf 'not anaconda' >wrongpw
printf '%s' "$(sed -n 2p images | cut -d' ' -f3)" >wrongrp # another image's recovery password
printf '042647-302313-590458-071500-554323-116567-412181-516979' >badsum
printf '%s\n' "$(head -n 1 images | cut -d' ' -f3)" >nlrp
for s in wrongpw wrongrp badsum nlrp; do
	expect_status 0 "$VMBAK" keyvault secret set kv "$s" --value-file "$s" --kek kek \
		--passphrase-file kvpass
done
refused 1 "secret 'wrongpw' version 1 does not open the BitLocker header of disk 'os'" \
	"$VMBAK" ingest v bad --disk "os=$I/$first.img" --keyvault kv --escrow os=wrongpw \
	--check-escrow --keyvault-passphrase-file kvpass
refused 1 "secret 'wrongrp' version 1 does not open the BitLocker header of disk 'os'" \
	"$VMBAK" ingest v bad --disk "os=$I/$first.img" --keyvault kv --escrow os=wrongrp \
	--check-escrow --keyvault-passphrase-file kvpass
refused 1 "secret 'badsum' version 1 for disk 'os' is not a valid bitlocker-recovery: group 8 fails its check" \
	"$VMBAK" ingest v bad --disk "os=$I/$first.img" --keyvault kv --escrow os=badsum \
	--check-escrow --keyvault-passphrase-file kvpass
refused 1 "is not a valid bitlocker-recovery: it ends in a newline" \
	"$VMBAK" ingest v bad --disk "os=$I/$first.img" --keyvault kv --escrow os=nlrp \
	--check-escrow --keyvault-passphrase-file kvpass
# The startup key of one volume does not open the other.
skd=$(grep startup-key-win11 disks | cut -d' ' -f2)
refused 1 "secret 'sk[0-9]+' version 1 does not open the BitLocker header of disk 'os'" \
	"$VMBAK" ingest v bad --disk "os=$I/$skd.img" --keyvault kv \
	--escrow "os=${sk_args[3]#*=}" --check-escrow --keyvault-passphrase-file kvpass
# A volume cryptsetup cannot test (still encrypting): refused, not let through.
printf 'anaconda' >eowpw
expect_status 0 "$VMBAK" keyvault secret set kv eowpw --value-file eowpw --kek kek \
	--passphrase-file kvpass
refused 1 "or cryptsetup cannot test this volume" \
	"$VMBAK" ingest v bad --disk "os=$I/bitlk-aes-xts-128-eow.img" --keyvault kv \
	--escrow os=eowpw --check-escrow --keyvault-passphrase-file kvpass

note "--escrow-kind: bad input"
pwd1=$(head -n 1 disks | cut -d' ' -f1)
ok=(--disk "os=$I/$first.img" --keyvault kv --escrow "os=pw$pwd1")
refused 2 "invalid --escrow-kind 'os': use --escrow-kind NAME=KIND" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os
refused 2 "empty kind in --escrow-kind 'os='" "$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os=
refused 2 "invalid kind 'bitlocker' in --escrow-kind: use one of luks, bitlocker-password" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os=bitlocker
refused 2 "--escrow-kind names disk 'data', which no --escrow gives" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind data=luks
refused 2 "disk 'os' is given twice with --escrow-kind" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os=luks --escrow-kind os=luks
refused 2 "invalid disk name" "$VMBAK" ingest v bad "${ok[@]}" --escrow-kind '../x=luks'
refused 1 "--escrow-kind os=luks does not fit disk 'os': '$I/$first.img' is a BitLocker volume" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os=luks
refused 1 "is not a valid bitlocker-recovery: it is not 55 characters long" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os=bitlocker-recovery \
	--keyvault-passphrase-file kvpass --check-escrow
refused 1 "is not a valid bitlocker-startup-key: it is not a .BEK file" \
	"$VMBAK" ingest v bad "${ok[@]}" --escrow-kind os=bitlocker-startup-key \
	--keyvault-passphrase-file kvpass --check-escrow
# A backup host without the key vault passphrase cannot look at the value: it must be told.
refused 1 "cannot tell which kind of BitLocker secret 'pw$pwd1' is without the key vault passphrase: give --escrow-kind os=" \
	"$VMBAK" ingest v bad "${ok[@]}"
expect_status 0 "$VMBAK" ingest v told "${ok[@]}" --escrow-kind os=bitlocker-password </dev/null
rp_told=$(tail -n 1 "$OUT")

note "no source image changed"
sha256sum -c --quiet sums || fail "an ingest changed a source image"

note "verify --keyvault --check-escrow: each secret opens its disk's header as stored in the point"
expect_status 0 "$VMBAK" verify v --keyvault kv --check-escrow --keyvault-passphrase-file kvpass
grep -q 'escrow FAILED' "$OUT" && fail "verify --check-escrow failed a blob: $(grep FAILED "$OUT")"
[ "$(grep -c "escrow ok .*opens the disk's header)$" "$OUT")" -ge 7 ] ||
	fail "verify --check-escrow did not check every blob"

note "through the mount: every blob says its kind and unwraps to the secret"
vmount v mnt
# check VM RP PREFIX KIND [MIN]: every disk's blob of VM/RP is version 2 with kind KIND and
# unwraps to the secret PREFIX<n> (disk d<n>), or PREFIX (disk os); there are MIN (2) at least.
check() {
	local vm=$1 rp=$2 prefix=$3 kind=$4 min=${5:-2} d k s m=0
	for k in "mnt/$vm/$rp"/*.key; do
		d=$(basename "$k" .key)
		s=$prefix${d#d}
		[ "$d" = os ] && s=$prefix
		python3 - "$k" "$kind" "$s" <<'EOF' || fail "blob $k is not as expected"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["version"] == 2 and b["kind"] == sys.argv[2], b
assert b["secret"]["name"] == sys.argv[3], b["secret"]
EOF
		expect_status 0 "$VMBAK" keyvault unwrap kv "$k" --passphrase-file kvpass
		cmp "$OUT" "$s" || fail "blob $k does not unwrap to $s"
		m=$((m + 1))
	done
	echo "$vm/$rp: $m blobs of kind $kind"
	[ "$m" -ge "$min" ] || fail "$vm/$rp has $m blobs"
}
check pw "$rp_pw" pw bitlocker-password
check rp "$rp_rp" rp bitlocker-recovery
check sk "$rp_sk" sk bitlocker-startup-key
check told "$rp_told" "pw$pwd1" bitlocker-password 1
# The images in the vault are the sources, byte for byte (two of them).
cmp "mnt/pw/$rp_pw/d1.img" "$I/$first.img" || fail "d1 of pw/$rp_pw differs from its source"
skn=$(grep startup-key-win11 disks | cut -d' ' -f1)
cmp "mnt/sk/$rp_sk/d$skn.img" "$I/$skd.img" || fail "d$skn of sk/$rp_sk differs from its source"
