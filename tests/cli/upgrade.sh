#!/usr/bin/env bash
# Format 1 vaults (made by vmbak of ff4c364, kept in tests/fixtures/vault-v1.tar.xz; see
# tests/fixtures/make-vault-v1.sh) are refused by every command but upgrade with one line
# naming it; vmbak upgrade rewrites them as format 2: every point reads back exactly, list
# keeps retention and protection, verify is whole, the next ingest (also --changed) continues
# the old points, no VM name is left in clear in an encrypted vault, and a second upgrade
# changes nothing. A wrong passphrase leaves the vault byte for byte as it was.
. "$SRCDIR/tests/lib.sh"

need_programs
need_cmd xz tar cmp
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
tar -xJf "$SRCDIR/tests/fixtures/vault-v1.tar.xz"

for enc in none aes-256-gcm; do
	V=$TESTTMP/v1-$enc
	note "format 1 vault, encryption $enc"
	if [ "$enc" = none ]; then unset VMBAK_PASSPHRASE_FILE; else export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass; fi
	expect_status 1 "$VMBAK" list "$V"
	expect_stderr "format 1.*vmbak upgrade"
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line for a format 1 vault"
	mkdir -p mnt
	expect_status 1 "$VMBAKFS" "$V" mnt
	expect_stderr "vmbak upgrade"
	if [ "$enc" != none ]; then
		sum=$(cat "$V"/* | sha256sum)
		echo 'not the passphrase' >wrong
		VMBAK_PASSPHRASE_FILE=$TESTTMP/wrong expect_status 1 "$VMBAK" upgrade "$V"
		expect_stderr "wrong passphrase"
		[ "$(cat "$V"/* | sha256sum)" = "$sum" ] || fail "a failed upgrade changed the vault"
		grep -qa web1 "$V/data.mdb" || fail "the fixture has no clear VM name to begin with"
	fi
	expect_status 0 "$VMBAK" upgrade "$V"
	expect_stdout "upgraded from format 1 to 2: 2 VMs, 3 points"
	if [ "$enc" != none ] && grep -qa -e web1 -e db1 "$V/data.mdb"; then
		fail "a VM name is left in clear after the upgrade"
	fi
	expect_status 0 "$VMBAK" upgrade "$V"
	expect_stdout "already format 2"
	expect_status 0 "$VMBAK" verify "$V"
	expect_stdout ': whole$'
	expect_status 0 "$VMBAK" list "$V" --json
	python3 -c '
import json, sys
pts = json.load(open(sys.argv[1]))
got = sorted((p["vm"], p["id"], p["protected"], p["retain_until"]) for p in pts)
want = [("db1", "2025-11-25T16:00:00Z", False, None),
        ("web1", "2025-11-24T16:00:00Z", True, "2030-01-01"),
        ("web1", "2025-11-25T16:00:00Z", False, None)]
assert got == want, got
' "$OUT" || fail "the listing changed in the upgrade"
	vmount "$V" mnt
	cmp mnt/web1/2025-11-24T16:00:00Z/os.img a.img || fail "web1's first point reads wrong"
	cmp mnt/web1/latest/os.img a2.img || fail "web1's incremental point reads wrong"
	cmp mnt/web1/latest/data.img b.img || fail "web1's second disk reads wrong"
	cmp mnt/db1/latest/d.img b.img || fail "db1 reads wrong"
	vumount mnt
	# The next points continue the old lineages.
	printf '0 4096\n' >ext
	cp a2.img a3.img
	printf 'changed' | dd of=a3.img conv=notrunc status=none
	expect_status 0 "$VMBAK" ingest "$V" web1 --disk os=a3.img --changed os=ext --disk data=b.img
	expect_status 0 "$VMBAK" ingest "$V" db1 --disk d=a.img
	expect_status 0 "$VMBAK" verify "$V"
	vmount "$V" mnt
	cmp mnt/web1/latest/os.img a3.img || fail "an incremental ingest on an upgraded vault"
	cmp mnt/web1/latest/data.img b.img || fail "the second disk after the upgrade"
	cmp mnt/db1/latest/d.img a.img || fail "db1 after the upgrade"
	cmp mnt/web1/2025-11-24T16:00:00Z/os.img a.img || fail "an old point after new ones"
	vumount mnt
done
