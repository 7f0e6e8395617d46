#!/usr/bin/env bash
# tests/bench/sync.sh CORPUS: `vmbak sync` of the full point (base.raw) and of the day-2 point
# (day2.raw, --changed day2.extents) of the benchmark corpus (tests/bench/corpus.py), to a
# local replica and over ssh to 127.0.0.1 (an sshd of its own, tests/sshd.sh), next to
# `rsync -a` of the LMDB vault directory over the same ssh, in the same run: time and bytes
# sent. Not part of make check. Work directory: BENCH_DIR (default a new directory under
# /var/tmp, removed after a run that went well). Needs rsync and openssh-server.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
corpus=${1:?usage: tests/bench/sync.sh CORPUS}
corpus=$(cd "$corpus" && pwd)
export SRCDIR=$top
VMBAK=${VMBAK:-$top/build/vmbak}
VMBAK=$(realpath "$VMBAK")
# lib.sh makes TESTTMP (under TMPDIR) and removes it when all went well.
if [ -n "${BENCH_DIR:-}" ]; then
	export TESTTMP=$BENCH_DIR
else
	unset TESTTMP
	export TMPDIR=${TMPDIR:-/var/tmp}
fi
. "$top/tests/lib.sh"
dir=$TESTTMP
. "$top/tests/sshd.sh"
need_cmd rsync
start_sshd "$(dirname "$VMBAK")"
cd "$dir"
printf 'bench sync passphrase\n' >pass
export VMBAK_PASSPHRASE_FILE=$dir/pass
unset VMBAK_PASSPHRASE

"$VMBAK" init src >/dev/null
"$VMBAK" init local --replica-of src >/dev/null
"$VMBAK" init remote --replica-of src >/dev/null
mkdir rsynced
url=ssh://root@127.0.0.1:$SSH_PORT$dir/remote

# run NAME CMD...: wall seconds of CMD into $secs.
run() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@"
	t1=$(date +%s.%N)
	secs=$(echo "$t1 - $t0" | bc)
}

report() { # LABEL
	local label=$1
	run "$VMBAK" sync src local --json >local.json
	printf '%-6s vmbak sync, local:  %6.2f s, %s bytes sent (%s bytes of frames)\n' "$label" \
		"$secs" "$(json local.json bytes_sent)" "$(json local.json chunk_bytes_sent)"
	run "$VMBAK" sync src "$url" --json >remote.json
	printf '%-6s vmbak sync, ssh:    %6.2f s, %s bytes sent (%s bytes of frames)\n' "$label" \
		"$secs" "$(json remote.json bytes_sent)" "$(json remote.json chunk_bytes_sent)"
	run rsync -a --stats -e "$VMBAK_RSH -p $SSH_PORT" src/ "root@127.0.0.1:$dir/rsynced/" \
		>rsync.out
	printf '%-6s rsync -a, ssh:      %6.2f s, %s bytes sent\n' "$label" "$secs" \
		"$(awk -F': ' '/^Total bytes sent/ { gsub(",", "", $2); print $2 }' rsync.out)"
}
json() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

"$VMBAK" ingest src vm --disk sda="$corpus/base.raw" >/dev/null
echo "vault after base.raw: $(du -sh src | cut -f1)"
report full
"$VMBAK" ingest src vm --disk sda="$corpus/day2.raw" --changed sda="$corpus/day2.extents" \
	>/dev/null
echo "vault after day2.raw: $(du -sh src | cut -f1)"
report day-2
"$VMBAK" verify remote | tail -n 1
