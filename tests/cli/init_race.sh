#!/usr/bin/env bash
# tests/cli/init_race.sh: concurrent `vmbak init` of one directory: exactly one succeeds, the
# others fail with one line, and the vault is the winner's (its encryption), never replaced.
#
# Each round starts 8 inits at once (even ones encrypted, odd ones --encryption none), into a
# directory that does not exist or exists empty (alternating rounds). Afterwards the vault's
# config says the winner's encryption, it was not rewritten after the winner exited, and an
# ingest and list work with the winner's passphrase mode.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"
printf 'a passphrase\n' >pass
head -c 70000 /dev/urandom >d.img

ROUNDS=${ROUNDS:-6}
for ((round = 0; round < ROUNDS; round++)); do
	V=$T/v$round
	[ $((round % 2)) -eq 1 ] && mkdir "$V"
	pids=()
	for i in 0 1 2 3 4 5 6 7; do
		if [ $((i % 2)) -eq 0 ]; then
			"$VMBAK" init "$V" --passphrase-file pass >"out.$i" 2>"err.$i" &
		else
			"$VMBAK" init "$V" --encryption none >"out.$i" 2>"err.$i" &
		fi
		pids+=($!)
	done
	ok=()
	for i in 0 1 2 3 4 5 6 7; do
		st=0
		wait "${pids[$i]}" || st=$?
		if [ "$st" -eq 0 ]; then
			ok+=("$i")
		elif [ "$st" -ne 1 ] || [ "$(wc -l <"err.$i")" -ne 1 ]; then
			cat "err.$i"
			fail "round $round: init $i exited $st, or not with one line"
		fi
	done
	[ "${#ok[@]}" -eq 1 ] || fail "round $round: ${#ok[@]} inits succeeded (${ok[*]}), not 1"
	w=${ok[0]}
	want=none
	[ $((w % 2)) -eq 0 ] && want=aes-256-gcm
	got=$(python3 -c "import json; print(json.load(open('$V/vmbak-vault.json'))['encryption'])")
	[ "$got" = "$want" ] || fail "round $round: init $w won, but the vault's encryption is $got"
	sleep 0.2
	got2=$(python3 -c "import json; print(json.load(open('$V/vmbak-vault.json'))['encryption'])")
	[ "$got2" = "$got" ] || fail "round $round: the config changed after the inits ended"
	if [ "$want" = none ]; then
		expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=d.img
	else
		expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=d.img --passphrase-file pass
	fi
	if [ "$want" = none ]; then
		expect_status 0 "$VMBAK" verify "$V"
	else
		expect_status 0 "$VMBAK" verify "$V" --passphrase-file pass
	fi
	note "round $round: init $w won ($want); losers said: $(sort -u err.[0-7] | head -n 2 | tr '\n' '|')"
done
echo "ok"
