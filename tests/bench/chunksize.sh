#!/usr/bin/env bash
# chunksize.sh CORPUS_DIR [SIZES...]: the measurements behind the default chunk size.
# For each chunk size: full ingest of base.raw and base.luks (time, stored bytes, index entries),
# then day2 of each with --changed (time, growth as a multiple of the changed bytes), and cold
# random 4 KiB reads through the mount (IOPS, with fio when present).
# Prints one table; ratios are against `cat` of the source measured in the same run.
set -euo pipefail
corpus=${1:?usage: chunksize.sh CORPUS_DIR [SIZES...]}; shift
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(16K 32K 64K 128K 256K 1M)
top=$(cd "$(dirname "$0")/../.." && pwd)
VMBAK=${VMBAK:-$top/build/vmbak}; VMBAKFS=${VMBAKFS:-$top/build/vmbakfs}
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/vmbak-chunksize.XXXXXX")
mnt=$work/mnt; mkdir -p "$mnt"
cleanup() { mountpoint -q "$mnt" && fusermount3 -u "$mnt"; rm -rf "$work"; }
trap cleanup EXIT
printf 'bench-passphrase\n' > "$work/pw"; chmod 600 "$work/pw"
export VMBAK_PASSPHRASE_FILE=$work/pw

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
kib() { du -sk "$1" | cut -f1; }
changed() { awk '{s += $2} END {print s}' "$1"; }
idx_entries() { mdb_stat -s idx "$1" 2>/dev/null | awk '/Entries:/ {print $2}'; }

drop; t_cat=$(secs cat "$corpus/base.raw")
raw_changed=$(changed "$corpus/day2.extents"); luks_changed=$(changed "$corpus/day2.luks.extents")
echo "cat base.raw (cold): ${t_cat}s; changed bytes: raw $raw_changed, luks $luks_changed"
printf '%-6s %8s %8s %8s %9s %8s %8s %8s %8s %8s\n' chunk raw_s luks_s stored_M idx_entr \
	d2raw_s grow_raw d2luks_s grow_lk rand_iops
for cs in "${sizes[@]}"; do
	v=$work/v-$cs; rm -rf "$v"
	"$VMBAK" init "$v" --chunk-size "$cs" >/dev/null
	drop; t_raw=$(secs "$VMBAK" ingest "$v" raw --disk os="$corpus/base.raw")
	drop; t_luks=$(secs "$VMBAK" ingest "$v" luks --disk os="$corpus/base.luks")
	stored=$(kib "$v"); entries=$(idx_entries "$v")
	drop; t_d2=$(secs "$VMBAK" ingest "$v" raw --disk os="$corpus/day2.raw" --changed os="$corpus/day2.extents")
	s2=$(kib "$v")
	drop; t_d2l=$(secs "$VMBAK" ingest "$v" luks --disk os="$corpus/day2.luks" --changed os="$corpus/day2.luks.extents")
	s3=$(kib "$v")
	iops=-
	if command -v fio >/dev/null; then
		"$VMBAKFS" "$v" "$mnt"
		drop
		iops=$(fio --name=r --filename="$mnt/raw/latest/os.img" --rw=randread --bs=4k \
			--size=3G --runtime=10 --time_based --ioengine=psync --direct=0 --numjobs=1 \
			--invalidate=1 --output-format=terse 2>/dev/null | awk -F';' '{print $8}')
		fusermount3 -u "$mnt"
	fi
	printf '%-6s %8.2f %8.2f %8d %9s %8.2f %8.2f %8.2f %8.2f %8s\n' "$cs" "$t_raw" "$t_luks" \
		$((stored / 1024)) "$entries" "$t_d2" "$(echo "($s2 - $stored) * 1024 / $raw_changed" | bc -l)" \
		"$t_d2l" "$(echo "($s3 - $s2) * 1024 / $luks_changed" | bc -l)" "$iops"
	rm -rf "$v"
done
