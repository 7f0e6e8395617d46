#!/usr/bin/env bash
# tests/cli/shrink.sh: a source that shrinks while it is ingested fails the ingest with
# "shrank", whether it is fully allocated or sparse, and leaves no point.
#
# The ingest stops at its first batch (hook VMBAK_TEST_PAUSE_INGEST_BATCH) after reading the
# first 16 MiB; the source is then cut to 16 MiB. A fully allocated source fails when the next
# read comes up short. A sparse one (16 MiB of data, a hole, data in its last 4 KiB) used to have
# its missing end taken for a hole (SEEK_DATA gives ENXIO past the new end) and committed.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
use_test_build
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
V=$T/vault
cd "$T"
expect_status 0 "$VMBAK" init "$V" --encryption none --chunk-size 65536

MiB=$((1024 * 1024))
# shrink_during_ingest KIND: KIND full or sparse.
shrink_during_ingest() {
	local kind=$1 pid st=0 i
	rm -f "$T/go" "$T/go.reached" src.img
	if [ "$kind" = full ]; then
		head -c $((64 * MiB)) /dev/urandom >src.img
	else
		head -c $((16 * MiB)) /dev/urandom >src.img
		truncate -s $((64 * MiB)) src.img
		head -c 4096 /dev/urandom | dd of=src.img bs=4096 seek=$((64 * 256 - 1)) \
			conv=notrunc status=none
	fi
	VMBAK_TEST_PAUSE_INGEST_BATCH=$T/go "$VMBAK" ingest "$V" "vm-$kind" --disk sda=src.img \
		>"$T/$kind.out" 2>"$T/$kind.err" &
	pid=$!
	for ((i = 0; i < 1000; i++)); do
		[ -e "$T/go.reached" ] && break
		sleep 0.02
	done
	[ -e "$T/go.reached" ] || { kill "$pid"; fail "$kind: the ingest did not reach its batch"; }
	truncate -s $((16 * MiB)) src.img
	touch "$T/go"
	wait "$pid" || st=$?
	[ "$st" -eq 1 ] || { cat "$T/$kind.out" "$T/$kind.err"; fail "$kind: ingest exited $st"; }
	[ "$(wc -l <"$T/$kind.err")" -eq 1 ] || { cat "$T/$kind.err"; fail "$kind: not one line"; }
	grep -q "shrank" "$T/$kind.err" || { cat "$T/$kind.err"; fail "$kind: no 'shrank'"; }
	expect_status 0 "$VMBAK" list "$V" --json
	[ "$(python3 -c "import json; print(len([p for p in json.load(open('$OUT'))
		if p['vm'] == 'vm-$kind']))")" = 0 ] || { cat "$OUT"; fail "$kind: a point was made"; }
}

shrink_during_ingest full
shrink_during_ingest sparse
echo "ok"
