#!/usr/bin/env bash
# tests/bench/scale.sh: how costs grow with the size of a vault (make bench-scale).
#
# Measures on this machine, in one run, and prints a table with the slope (time per chunk or
# per point) and met / NOT met for each target of issue 16, "How costs grow":
#
#   ingest  throughput of one new 1 GiB disk into an empty vault and into the same vault grown
#           to 1M, 3M and 10M distinct chunks (target: at 10M within 20% of the empty vault).
#           Vaults use --chunk-size 4K. The fill chunks come from an NBD export served by
#           nbdkit's cc plugin over tests/bench/scale_gen.c: 4 KiB blocks that all differ
#           (their index in the first 8 bytes, then zeros) and compress to a few bytes, so
#           10M chunks (40 GiB logical) cost about 3 GiB of vault and never touch the disk
#           as source. The measured disk is the same 1 GiB file each time: the first GiB of
#           CORPUS/base.raw where there is one, else 1 GiB of nbdkit's random plugin (seed 1);
#           it is ingested into a copy of the vault (cp --sparse=always, then sync), so that
#           it is new to every vault, and the copy is dropped. Source in the page cache.
#   gc, verify  at 10M chunks (the vault of `ingest`, kept in BENCH_DIR/v10m): time per chunk
#           and peak RSS (GNU time %M; target <= 256 MiB): gc with nothing to collect, verify
#           of the whole vault, and gc after deleting the point holding most chunks (on a
#           copy, so v10m stays whole for the next run).
#   list    `vmbak list`, `ls -R` of the mount and opening latest (stat + first 4 KiB read of
#           VM/latest/d.img) with 10x100, 100x10 and 100x100 VMs x points of a 64 KiB disk
#           (targets at 100x100: list < 1 s, ls -R < 2 s). Vaults --encryption none, so that
#           each of the 10,000 ingests does not run the passphrase's KDF; every point is a
#           real `vmbak ingest` of a 64 KiB file whose first block differs per point.
#   prune   `vmbak prune --keep-last 1` of each VM of the 100x100 vault (100 runs, 9,900
#           points deleted): time and time per point deleted, and the gc after it.
#
#   BENCH_DIR  work directory (default /var/tmp/bench-scale); v10m and ingest.txt are kept
#              there and reused by the next run unless REBUILD=1 (building them takes the
#              longest: about 15 minutes for v10m, 20 for the points, on 2 shared cores)
#   CORPUS     a corpus directory holding base.raw (default /var/tmp/rbench/corpus)
#   PARTS      which parts to run (default "ingest gcverify list prune")
#   FILL       chunks of the largest vault (default 10000000; smaller for a quick run)
#   SHAPES     VMs x points of the list part (default "10x100 100x10 100x100"); prune
#              runs on the last (it must be 100x100 for prune)
#
# Prints the table on stdout and keeps it in BENCH_DIR/scale.txt. Needs root, /dev/fuse,
# nbdkit with its cc plugin (nbdkit-plugin-dev), nbdcopy, GNU time.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
VMBAK=${VMBAK:-$top/build/vmbak}
VMBAKFS=${VMBAKFS:-$top/build/vmbakfs}
BENCH_DIR=${BENCH_DIR:-/var/tmp/bench-scale}
CORPUS=${CORPUS:-/var/tmp/rbench/corpus}
PARTS=${PARTS:-ingest gcverify list prune}
FILL=${FILL:-10000000}
GEN=$top/tests/bench/scale_gen.c

say() { printf 'bench-scale: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (mounts)"
[ -x "$VMBAK" ] && [ -x "$VMBAKFS" ] || die "build first (make)"
for c in nbdkit nbdcopy fusermount3 bc; do
	command -v "$c" >/dev/null || die "needs $c"
done
[ -x /usr/bin/time ] || die "needs GNU time (/usr/bin/time)"
[[ $FILL =~ ^[1-9][0-9]*$ ]] && [ "$FILL" -ge 100 ] || die "FILL: a number of chunks, >= 100"

mkdir -p "$BENCH_DIR" || die "cannot make $BENCH_DIR"
cd "$BENCH_DIR" || exit 1
W=$BENCH_DIR/work.$$
mkdir -p "$W" || die "cannot make $W"
export VMBAK_PASSPHRASE=bench-scale
unset VMBAK_PASSPHRASE_FILE

KIT_PID=
MNT=$W/mnt
cleanup() {
	mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT"
	if [ -n "$KIT_PID" ]; then
		kill "$KIT_PID" 2>/dev/null
		wait "$KIT_PID" 2>/dev/null
	fi
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# timed CMD...: runs CMD with stdout to $W/out; sets T (seconds, wall), CPU (seconds, user +
# system) and RSS (peak, KiB); fails loudly.
timed() {
	/usr/bin/time -o "$W/time" -f '%e %M %U %S' "$@" >"$W/out" 2>"$W/err"
	local rc=$? u s
	# GNU time writes "Command exited with non-zero status N" first on failure
	read -r T RSS u s < <(tail -1 "$W/time")
	CPU=$(echo "$u + $s" | bc)
	if [ $rc -ne 0 ]; then
		say "failed ($rc): $*"
		sed 's/^/  /' "$W/err" >&2
		return $rc
	fi
	return 0
}
# A fresh NBD export of the generator: size BYTES, salt N. Sets KIT_URI.
kit_start() {
	local sock=$W/kit.sock
	rm -f "$sock"
	timeout 3600 nbdkit -f -U "$sock" cc "$GEN" size="$1" salt="$2" &
	KIT_PID=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
	[ -S "$sock" ] || die "nbdkit cc $GEN would not start (nbdkit-plugin-dev installed?)"
	KIT_URI="nbd+unix:///?socket=$sock"
}
kit_stop() {
	[ -n "$KIT_PID" ] && { kill "$KIT_PID" 2>/dev/null; wait "$KIT_PID" 2>/dev/null; }
	KIT_PID=
}
chunks_of() { mdb_stat -s idx "$1" 2>/dev/null | awk '/Entries:/ {print $2}'; }
f2() { printf '%.2f' "$1"; }
us_per() { echo "scale=2; $1 * 1000000 / $2" | bc; }
mib() { echo "$1 / 1024" | bc; }
verdict() { if [ "$(echo "$1" | bc)" -eq 1 ]; then echo met; else echo "NOT met"; fi; }

TABLE=$BENCH_DIR/scale.txt.new
: >"$TABLE"
out() { printf '%s\n' "$*" | tee -a "$TABLE"; }

# ---------------------------------------------------------------- ingest
part_ingest() {
	local disk=$BENCH_DIR/disk1g.raw
	if [ ! -s "$disk" ]; then
		if [ -s "$CORPUS/base.raw" ]; then
			head -c 1G "$CORPUS/base.raw" >"$disk.tmp" && mv "$disk.tmp" "$disk"
			echo "first GiB of $CORPUS/base.raw" >"$disk.what"
		else
			timeout 600 nbdkit -f -U "$W/rnd.sock" random size=1G seed=1 &
			local p=$!
			for _ in $(seq 100); do [ -S "$W/rnd.sock" ] && break; sleep 0.1; done
			nbdcopy "nbd+unix:///?socket=$W/rnd.sock" "$disk.tmp" && mv "$disk.tmp" "$disk"
			kill $p; wait $p 2>/dev/null
			echo "1 GiB of nbdkit random seed=1" >"$disk.what"
		fi
	fi
	[ -s "$disk" ] || die "cannot make $disk"
	cat "$disk" >/dev/null
	local v=$BENCH_DIR/v10m res=$BENCH_DIR/ingest.txt
	if [ "${REBUILD:-0}" = 1 ] || [ ! -s "$res" ] || [ ! -d "$v" ] ||
		[ "$(head -1 "$res")" != "fill $FILL" ]; then
		rm -rf "$v" "$res"
		echo "fill $FILL" >"$res.new"
		"$VMBAK" init "$v" --chunk-size 4K >/dev/null || die "init failed"
		# measure N: ingest the 1 GiB disk into a copy of v (which holds N chunks), twice,
		# and keep the faster (the slower is printed too)
		measure() {
			local n=$1 best= other= cpu= i
			for i in 1 2; do
				rm -rf "$W/m"
				cp -a --sparse=always "$v" "$W/m" && sync || die "cannot copy the vault"
				timed "$VMBAK" ingest "$W/m" measured --disk d="$disk" || die "ingest failed"
				if [ -z "$best" ] || [ "$(echo "$T < $best" | bc)" -eq 1 ]; then
					other=$best; best=$T; cpu=$CPU
				else
					other=$T
				fi
				rm -rf "$W/m"
			done
			echo "measure $n $best $other $RSS $cpu" >>"$res.new"
			say "1 GiB into a vault of $n chunks: ${best}s (${other}s)"
		}
		# fill N SALT: one point of N new chunks
		fill() {
			kit_start $(($1 * 4096)) "$2"
			timed "$VMBAK" ingest "$v" "fill$2" --disk d="$KIT_URI" || die "fill ingest failed"
			kit_stop
			echo "fill $1 $T $RSS $CPU" >>"$res.new"
			say "filled $1 chunks in ${T}s"
		}
		measure 0
		local have=0 step
		for step in $((FILL / 10)) $((FILL * 3 / 10)) "$FILL"; do
			fill $((step - have)) "$have"
			have=$step
			measure "$(chunks_of "$v")"
		done
		mv "$res.new" "$res"
	fi
	local what; what=$(cat "$disk.what" 2>/dev/null)
	out ""
	out "ingest of one new 1 GiB disk ($what), chunk size 4 KiB, source in page cache"
	out "$(printf '%-12s %7s %7s %9s %9s %9s %8s %7s' 'vault chunks' time_s 'MiB/s' 'us/chunk' 'cpu_s' 'cpu_us/ch' 'other_s' 'rss_MiB')"
	local t0= c0= n t o r c t_last c_last n_last
	while read -r kind n t o r c; do
		[ "$kind" = measure ] || continue
		[ -z "$t0" ] && { t0=$t; c0=$c; }
		out "$(printf '%-12s %7s %7s %9s %9s %9s %8s %7s' "$n" "$(f2 "$t")" "$(f2 "$(echo "1024 / $t" | bc -l)")" \
			"$(us_per "$t" 262144)" "$(f2 "$c")" "$(us_per "$c" 262144)" "$(f2 "$o")" "$(mib "$r")")"
		t_last=$t; c_last=$c; n_last=$n
	done <"$res"
	local ratio cratio
	ratio=$(echo "scale=3; $t0 / $t_last" | bc)
	cratio=$(echo "scale=3; $c0 / $c_last" | bc)
	out "(time_s: the faster of two runs, other_s the slower; cpu_s: user + system of the faster)"
	out "target: throughput at $n_last chunks within 20% of the empty vault's: $ratio (cpu: $cratio): $(verdict "$ratio >= 0.8 && $ratio <= 1.2")"
	local fn ft fr fc
	while read -r kind fn ft fr fc; do
		[ "$kind" = fill ] && [ -n "$ft" ] || continue
		out "$(printf 'fill of %8s chunks: %7ss, %6s us/chunk (cpu %6s us/chunk), rss %s MiB' "$fn" "$(f2 "$ft")" "$(us_per "$ft" "$fn")" "$(us_per "$fc" "$fn")" "$(mib "$fr")")"
	done <"$res"
}

# ---------------------------------------------------------------- list, ls -R, latest
# make_points V VMS PTS [ONEVM]: a vault of VMS VMs x PTS points of a 64 KiB disk, each a real
# `vmbak ingest` (points in the outer loop, as days pass); with ONEVM all go to VM "vm".
make_points() {
	local v=$1 vms=$2 pts=$3 one=${4:-} p m name
	"$VMBAK" init "$v" --encryption none --chunk-size 4K >/dev/null || die "init failed"
	head -c 65536 /dev/urandom >"$W/d.img"
	local t0; t0=$(date +%s.%N)
	for ((p = 1; p <= pts; p++)); do
		for ((m = 1; m <= vms; m++)); do
			printf '%08d%08d' "$p" "$m" | dd of="$W/d.img" conv=notrunc status=none
			name=$(printf 'vm%03d' "$m")
			[ -n "$one" ] && name=vm
			"$VMBAK" ingest "$v" "$name" --disk d="$W/d.img" >/dev/null ||
				die "ingest $name failed"
		done
	done
	echo "scale=1; ($(date +%s.%N) - $t0) * 1000 / ($vms * $pts)" | bc >"$v.ms_per_ingest"
}
# best3 CMD...: the fastest of three runs, in T; RSS of that run
best3() {
	local b= r= i
	for i in 1 2 3; do
		timed "$@" || die "failed: $*"
		if [ -z "$b" ] || [ "$(echo "$T < $b" | bc)" -eq 1 ]; then b=$T; r=$RSS; fi
	done
	T=$b; RSS=$r
}
mnt_up() {
	mkdir -p "$MNT"
	timeout 60 "$VMBAKFS" "$1" "$MNT" || die "vmbakfs would not mount $1"
}
mnt_down() { mountpoint -q "$MNT" && fusermount3 -u "$MNT"; }
now() { date +%s.%N; }

part_list() {
	local shapes=${SHAPES:-10x100 100x10 100x100} sh vms pts v t_list t_ls t_open n ms
	out ""
	out "list, ls -R of a fresh mount, opening latest (stat + first 4 KiB of VM/latest/d.img on a"
	out "fresh mount); VMs x points of a 64 KiB disk, chunk size 4 KiB; list/ls -R best of 3"
	out "$(printf '%-8s %7s %8s %10s %8s %10s %9s %11s' shape points list_s 'us/point' 'ls-R_s' 'us/point' 'latest_ms' 'ingest_ms')"
	for sh in $shapes; do
		vms=${sh%x*}; pts=${sh#*x}; v=$BENCH_DIR/list-$sh; n=$((vms * pts))
		if [ "${REBUILD:-0}" = 1 ] || [ ! -s "$v.ms_per_ingest" ]; then
			rm -rf "$v" "$v.ms_per_ingest"
			say "making $sh points"
			make_points "$v" "$vms" "$pts"
		fi
		best3 "$VMBAK" list "$v"; t_list=$T
		[ "$(wc -l <"$W/out")" -eq $((n + 1)) ] || die "list of $v: not $n points"
		local b= i c
		for i in 1 2 3; do
			mnt_up "$v"
			t0=$(now); c=$(ls -R "$MNT" | wc -l); t1=$(now)
			mnt_down
			T=$(echo "$t1 - $t0" | bc)
			if [ -z "$b" ] || [ "$(echo "$T < $b" | bc)" -eq 1 ]; then b=$T; fi
		done
		t_ls=$b
		mnt_up "$v"
		local last; last=$(printf 'vm%03d' "$vms")
		t0=$(now)
		stat "$MNT/$last/latest/d.img" >/dev/null && dd if="$MNT/$last/latest/d.img" of=/dev/null bs=4k count=1 status=none ||
			die "cannot open $last/latest/d.img"
		t1=$(now)
		mnt_down
		t_open=$(echo "($t1 - $t0) * 1000" | bc)
		out "$(printf '%-8s %7s %8s %10s %8s %10s %9s %11s' "$sh" "$n" "$(f2 "$t_list")" "$(us_per "$t_list" "$n")" \
			"$(f2 "$t_ls")" "$(us_per "$t_ls" "$n")" "$(f2 "$t_open")" "$(cat "$v.ms_per_ingest")")"
	done
	out "target at $sh: list < 1 s: $(verdict "$t_list < 1"); ls -R < 2 s: $(verdict "$t_ls < 2")"
}

# ---------------------------------------------------------------- prune
part_prune() {
	local v=$BENCH_DIR/list-100x100 vms=100 m name t=0 del=0 before after rss=0
	[ -s "$v.ms_per_ingest" ] || die "prune needs the 100x100 vault of the list part (PARTS=list)"
	rm -rf "$W/p"
	cp -a --sparse=always "$v" "$W/p" || die "cannot copy $v"
	before=$("$VMBAK" list "$W/p" | tail -n +2 | wc -l)
	for ((m = 1; m <= vms; m++)); do
		name=$(printf 'vm%03d' "$m")
		timed "$VMBAK" prune "$W/p" "$name" --keep-last 1 || die "prune $name failed"
		t=$(echo "$t + $T" | bc)
		[ "$RSS" -gt "$rss" ] && rss=$RSS
	done
	after=$("$VMBAK" list "$W/p" | tail -n +2 | wc -l)
	del=$((before - after))
	[ "$del" -eq $((before - vms)) ] || die "prune deleted $del points, not $((before - vms))"
	timed "$VMBAK" gc "$W/p" || die "gc after prune failed"
	local t_gc=$T
	rm -rf "$W/p"
	out ""
	out "prune --keep-last 1 of each of 100 VMs x 100 points (one run per VM, 100 runs)"
	out "$(printf '%-9s %8s %8s %10s %8s %10s' points deleted total_s 'ms/point' 'rss_MiB' 'gc_after_s')"
	out "$(printf '%-9s %8s %8s %10s %8s %10s' "$before" "$del" "$(f2 "$t")" "$(echo "scale=3; $t * 1000 / $del" | bc)" "$(mib "$rss")" "$(f2 "$t_gc")")"
}

# ---------------------------------------------------------------- gc, verify at 10M
part_gcverify() {
	local v=$BENCH_DIR/v10m n
	[ -s "$BENCH_DIR/ingest.txt" ] && [ -d "$v" ] || die "gcverify needs the vault of the ingest part (PARTS=ingest)"
	n=$(chunks_of "$v")
	out ""
	out "gc and verify of the vault of $n chunks (chunk size 4 KiB; target peak RSS <= 256 MiB)"
	out "(rss: GNU time's %M, the peak resident set: the heap and the pages of data.mdb that LMDB's"
	out " map holds mapped at the time, which are page cache)"
	out "$(printf '%-46s %8s %9s %8s %8s  %s' what time_s 'us/chunk' 'cpu_s' 'rss_MiB' 'rss target')"
	row() {
		out "$(printf '%-46s %8s %9s %8s %8s  %s' "$1" "$(f2 "$T")" "$(us_per "$T" "$2")" "$(f2 "$CPU")" "$(mib "$RSS")" "$(verdict "$RSS <= 262144")")"
	}
	timed "$VMBAK" gc "$v" || die "gc failed"
	row "gc, nothing to collect" "$n"
	timed "$VMBAK" verify "$v" || die "verify failed"
	row "verify, whole vault" "$n"
	# the point holding most chunks: the last fill
	local rp big
	big=$("$VMBAK" list "$v" --json | python3 -c '
import json, sys
pts = [p for p in json.load(sys.stdin) if p["vm"].startswith("fill")]
print(max(pts, key=lambda p: sum(d["size"] for d in p["disks"]))["vm"])')
	rm -rf "$W/g"
	cp -a --sparse=always "$v" "$W/g" && sync || die "cannot copy the vault"
	"$VMBAK" delete "$W/g" "$big/latest" --force >/dev/null || die "delete $big failed"
	timed "$VMBAK" gc "$W/g" || die "gc after delete failed"
	local freed; freed=$((n - $(chunks_of "$W/g")))
	row "gc after deleting $big ($freed freed)" "$n"
	rm -rf "$W/g"
}

for p in $PARTS; do
	case $p in
	ingest) part_ingest ;;
	list) part_list ;;
	prune) part_prune ;;
	gcverify) part_gcverify ;;
	*) die "unknown part '$p'" ;;
	esac
done
mv "$TABLE" "$BENCH_DIR/scale.txt"
