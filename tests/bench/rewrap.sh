#!/usr/bin/env bash
# tests/bench/rewrap.sh [POINTS] [TYPE]: the time of `vmbak rewrap` over POINTS recovery points
# (default 1000) of one small disk each, every one with an escrow blob wrapped by a KEK of TYPE
# (default rsa-3072), after a rotation; and of `vmbak verify --keyvault` over them. Not part of
# make check. Work directory: BENCH_DIR (default a new directory under /var/tmp, removed after).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
VMBAK=${VMBAK:-$top/build/vmbak}
n=${1:-1000}
type=${2:-rsa-3072}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: tests/bench/rewrap.sh [POINTS] [TYPE]" >&2; exit 2; }
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/vmbak-rewrap.XXXXXX)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT
cd "$dir"
printf 'bench key vault passphrase\n' >kvpass
export VMBAK_KEYVAULT_PASSPHRASE_FILE=$dir/kvpass
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

"$VMBAK" init v --encryption none >/dev/null
"$VMBAK" keyvault init kv >/dev/null
"$VMBAK" keyvault key create kv kek --type "$type" >/dev/null
printf 'a LUKS passphrase' >secret
"$VMBAK" keyvault secret set kv s --value-file secret --kek kek >/dev/null
truncate -s 64K disk.img
t0=$(date +%s.%N)
for ((i = 0; i < n; i++)); do
	"$VMBAK" ingest v "vm$((i % 10))" --disk sda=disk.img --keyvault kv --escrow sda=s \
		</dev/null >/dev/null
done
t1=$(date +%s.%N)
"$VMBAK" keyvault key rotate kv kek >/dev/null
/usr/bin/time -f '%e %U %S' -o rewrap.time "$VMBAK" rewrap v --keyvault kv >rewrap.out
/usr/bin/time -f '%e %U %S' -o verify.time "$VMBAK" verify v --keyvault kv >verify.out
tail -n 1 rewrap.out
read -r rw ru rs <rewrap.time
read -r vw vu vs <verify.time
printf 'ingest of %d points with escrow: %.1f s\n' "$n" "$(echo "$t1 - $t0" | bc)"
printf 'rewrap of %d points (%s): %s s wall, %s s user, %s s sys\n' "$n" "$type" "$rw" "$ru" "$rs"
printf 'verify --keyvault of %d points: %s s wall, %s s user, %s s sys\n' "$n" "$vw" "$vu" "$vs"
