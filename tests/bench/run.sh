#!/usr/bin/env bash
# tests/bench/run.sh [SIZE]: the benchmark of vmbak/vmbakfs against borg, restic and casync, and
# against plain cp/cat of the source, in one run on the same data (make bench).
#
#   SIZE            corpus size in GiB, "3G" or "3" (default 3G)
#   BENCH_DIR       work directory (default /var/tmp/vmbak-bench); the corpus, the 1 TiB sparse
#                   disk and the results (results.txt, .tsv, .json, bench.log) stay there
#   CORPUS          a ready corpus directory (base.raw base.luks day2.raw day2.luks, with
#                   day2.extents and day2.luks.extents if present); default: made in BENCH_DIR
#                   by ../shared/bench/make-corpus.sh when it exists (the corpus reported figures
#                   are measured on), else by the project's own tests/bench/corpus.py (the same
#                   kinds of data, made from fixed seeds)
#   BENCH_PEERS     peers to run (default "borg restic casync"; "" for none)
#   BENCH_QUICK=1   shorter: 5 s random-read tests; no cold `cat` and no 8-reader random reads
#                   through the peers' mounts (vmbak's and the source's still run); no 1 TiB case
#   BENCH_SCALE=0   skip the 1 TiB sparse case; BENCH_FIO_SECS, BENCH_FIO_IOS: random-read limits
#   BENCH_TIMEOUT   seconds allowed for one step (default 1800); BENCH_KEEP=1 keeps repositories
#
# What it runs, for each tool: full ingest of base.raw and base.luks, incremental ingest of
# day2.raw and day2.luks (vmbak with and without --changed), du after each, cold `dd bs=1M` and
# `cat` through the mount, fio 4 KiB random reads through the mount (1 reader cold then warm;
# 8 readers cold); for the source files: cp --sparse=always, cold cat and dd, the same fio
# runs, and a cold read of only the changed extents of day2 (one dd per extent, then one
# process with pread), the floor of an incremental ingest. benchlib.py prints the table and
# judges the targets of issue 16 from the ratios of this run: met, NOT met, or n/a (why).
#
# Needs root (page-cache drops, installing the peers with apt-get when they are missing) and
# /dev/fuse. Each tool's mount is started afresh before every cold test and always unmounted.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/tests/bench
VMBAK=${VMBAK:-$top/build/vmbak}
VMBAKFS=${VMBAKFS:-$top/build/vmbakfs}

size=${1:-3G}
gib=${size%[Gg]}
if ! [[ $gib =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: tests/bench/run.sh [SIZE_GIB, e.g. 3G]" >&2
	exit 2
fi
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmbak-bench}
PEERS=${BENCH_PEERS-borg restic casync}
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	FIO_SECS=${BENCH_FIO_SECS:-5}; FIO_IOS=${BENCH_FIO_IOS:-5000}; SCALE=${BENCH_SCALE:-0}
else
	FIO_SECS=${BENCH_FIO_SECS:-20}; FIO_IOS=${BENCH_FIO_IOS:-20000}; SCALE=${BENCH_SCALE:-1}
fi
TMO=${BENCH_TIMEOUT:-1800}
SEED=20261123

W=$BENCH_DIR/work
MNT=$W/mnt
RAW=$BENCH_DIR/results.raw
NOTES=$BENCH_DIR/results.notes
LOG=$BENCH_DIR/bench.log

say() { printf 'bench: %s\n' "$*" >&2; printf '%s %s\n' "$(date -u +%T)" "$*" >>"$LOG"; }
note() { printf '%s\n' "$*" >>"$NOTES"; say "note: $*"; }
die() { echo "bench: $*" >&2; exit 1; }

declare -A R
put() { R[$1]=$2; printf '%s\t%s\n' "$1" "$2" >>"$RAW"; }
get() { printf '%s' "${R[$1]:-}"; }
# calc EXPR: floating-point arithmetic on numbers put earlier (empty when an operand is missing)
calc() { awk "BEGIN { printf \"%.6f\", $1 }" 2>/dev/null; }

mkdir -p "$BENCH_DIR" || die "cannot create '$BENCH_DIR'"
: >"$RAW"; : >"$NOTES"; : >"$LOG"

# ---- cleanup: whatever is mounted is unmounted, whatever runs is stopped ----------------------
MOUNT_PID=
BINDS=()
mount_stop() {
	local pid=$MOUNT_PID i
	MOUNT_PID=
	if mountpoint -q "$MNT" 2>/dev/null; then
		fusermount3 -u "$MNT" 2>>"$LOG" || fusermount3 -uz "$MNT" 2>>"$LOG" ||
			umount -l "$MNT" 2>>"$LOG"
	fi
	[ -n "$pid" ] || return 0
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null; sleep 2; kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}
cleanup() {
	local b
	mount_stop
	for b in "${BINDS[@]}"; do umount "$b" 2>/dev/null; done
	if [ "${BENCH_KEEP:-0}" != 1 ] && [ -d "$W" ]; then
		rm -rf --one-file-system "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- what the run needs -------------------------------------------------------------------------
[ -x "$VMBAK" ] && [ -x "$VMBAKFS" ] || die "build vmbak and vmbakfs first (make)"
ROOT=0; [ "$(id -u)" -eq 0 ] && ROOT=1
[ -c /dev/fuse ] || die "/dev/fuse is missing: the mount tests cannot run"

APT_UPDATED=0
install_pkgs() { # PKG...: installs the missing ones; 1 when that was impossible
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ $ROOT = 1 ] && command -v apt-get >/dev/null || return 1
	say "installing ${missing[*]}"
	if [ $APT_UPDATED = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOG" 2>&1; APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>>"$LOG" 2>&1
}
install_pkgs time fio python3 lmdb-utils fuse3 coreutils ||
	die "cannot install time fio python3 lmdb-utils fuse3 (run as root, or install them)"
for c in /usr/bin/time fio python3 mdb_stat fusermount3 timeout; do
	command -v "$c" >/dev/null || die "'$c' is missing"
done

peers=()
for p in $PEERS; do
	case $p in
	borg) pk="borgbackup python3-pyfuse3"; c=borg ;;
	restic) pk=restic; c=restic ;;
	casync) pk=casync; c=casync ;;
	*) note "unknown peer '$p' skipped"; continue ;;
	esac
	# shellcheck disable=SC2086
	if install_pkgs $pk && command -v $c >/dev/null; then
		peers+=("$p")
	else
		note "$p skipped: Debian package(s) $pk could not be installed"
	fi
done
has_peer() { local p; for p in "${peers[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

# ---- the corpus ---------------------------------------------------------------------------------
if [ -n "${CORPUS:-}" ]; then
	C=$CORPUS
else
	C=$BENCH_DIR/corpus-${gib}G
	mk=(bash "$top/../shared/bench/make-corpus.sh")
	[ -f "${mk[1]}" ] || mk=(python3 "$here/corpus.py")
	if [ ! -f "$C/.done" ] || [ "$(cat "$C/.done")" != "$gib" ]; then
		install_pkgs e2fsprogs qemu-utils python3 || die "the corpus needs e2fsprogs qemu-utils"
		say "making the ${gib} GiB corpus in $C with ${mk[1]}"
		"${mk[@]}" "$C" "$gib" >>"$LOG" 2>&1 || die "${mk[1]##*/} failed (see $LOG)"
	fi
fi
C=$(cd "$C" && pwd) || die "no corpus directory '$C'"
for f in base.raw base.luks day2.raw day2.luks; do
	[ -f "$C/$f" ] || die "corpus '$C' has no $f"
done
extents_of() { # IMAGE: the changed-extents file of day2.IMAGE, derived when the corpus has none
	local given=$C/day2.extents
	[ "$1" = luks ] && given=$C/day2.luks.extents
	if [ -f "$given" ]; then
		echo "$given"
		return
	fi
	local d=$BENCH_DIR/derived-$(echo "$C" | tr / _)-day2.$1.extents
	if [ ! -s "$d" ]; then
		say "deriving the changed extents of day2.$1 (64 KiB granularity)"
		python3 "$here/benchlib.py" extents "$C/base.$1" "$C/day2.$1" "$d" 65536 ||
			die "cannot derive the changed extents of day2.$1"
	fi
	note "day2.$1: the corpus has no extents list; derived by comparing base and day2 at 64 KiB"
	echo "$d"
}
EXT_raw=$(extents_of raw)
EXT_luks=$(extents_of luks)
CH_raw=$(awk '{ s += $2 } END { printf "%.0f", s }' "$EXT_raw")
CH_luks=$(awk '{ s += $2 } END { printf "%.0f", s }' "$EXT_luks")
[ "$CH_raw" -gt 0 ] && [ "$CH_luks" -gt 0 ] || die "the changed extents of day2 are empty"
IMG_SIZE=$(stat -c %s "$C/base.raw")

# a run cut short may have left its mount behind
mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"; }
rm -rf --one-file-system "$W"
mkdir -p "$W" "$MNT" || die "cannot create '$W'"
# the programs as they are now: a rebuild during the run does not change what is measured
mkdir -p "$W/bin" && cp "$VMBAK" "$VMBAKFS" "$W/bin/" || die "cannot copy the programs to '$W/bin'"
VMBAK_BUILT=$(date -u -r "$VMBAK" '+%F %H:%M UTC')
VMBAK=$W/bin/$(basename "$VMBAK")
VMBAKFS=$W/bin/$(basename "$VMBAKFS")
PW=$W/passphrase
printf 'bench-passphrase-%s\n' "$SEED" >"$PW"; chmod 600 "$PW"

ver() { "$@" 2>/dev/null | head -1; }
put meta.title "vmbakfs benchmark: ${gib} GiB corpus, $(date -u '+%Y-%m-%d %H:%M UTC')"
cmdline="BENCH_DIR=$BENCH_DIR${CORPUS:+ CORPUS=$CORPUS}"
[ -n "${BENCH_PEERS+x}" ] && cmdline+=" BENCH_PEERS=\"$PEERS\""
[ "$QUICK" = 1 ] && cmdline+=" BENCH_QUICK=1"
put meta.command "command: $cmdline tests/bench/run.sh $size"
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
load=$(cut -d' ' -f1-3 /proc/loadavg)
put meta.machine "machine: $(nproc) cores, $mem, $(uname -r), load average at start $load"
modes="modes: vmbak $(ver "$VMBAK" --version | awk '{ print $2 }') (built $VMBAK_BUILT)"
modes+=" aes-256-gcm, zstd-1, 64 KiB chunks (vault defaults)"
has_peer borg && modes+="; $(ver borg --version) repokey-blake2, lz4, default chunker"
has_peer restic && modes+="; restic $(ver restic version | awk '{ print $2 }') default" &&
	modes+=" (AES-256-CTR + Poly1305, compression auto)"
has_peer casync && modes+="; casync $(ver casync --version | awk '{ print $2 }') zstd," &&
	modes+=" no encryption (it has none), directory archive (.caidx) so that it can be mounted"
put meta.modes "$modes"
corpus="corpus: $C, images of $((IMG_SIZE >> 20)) MiB; changed bytes day2.raw $CH_raw,"
corpus+=" day2.luks $CH_luks; cold = page cache dropped and mount started afresh (a host may"
corpus+=" still cache the virtual disk); fio psync 4 KiB, seed $SEED, cold: at most $FIO_IOS"
corpus+=" reads or $FIO_SECS s, warm: the same reads again"
put meta.corpus "$corpus"
[ $ROOT = 1 ] || note "not root: page caches were not dropped, so the cold figures are not cold"
# what benchlib.py's verdicts say of a figure that is missing
put meta.peers "${peers[*]}"
put meta.quick "$QUICK"
put meta.scale "$SCALE"
put meta.root "$ROOT"

# ---- measuring ----------------------------------------------------------------------------------
drop() {
	sync
	[ $ROOT = 1 ] && echo 3 >/proc/sys/vm/drop_caches
	return 0
}
now() { date +%s%N; }
secs_since() { calc "($(now) - $1) / 1e9"; }
du_bytes() { du -s --block-size=1 "$@" 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
maxput() { # KEY VALUE: keeps the larger
	local o=${R[$1]:-0}
	awk -v a="$2" -v b="$o" 'BEGIN { exit !(a > b) }' && put "$1" "$2"
	return 0
}

# step TOOL KEY CMD...: runs CMD (stdout in $W/out) under a time limit and GNU time, then syncs
# the work file system (the time counts until the data is on disk); puts TOOL.KEY (wall seconds),
# LAST_RSS (peak RSS, KiB) and, for ingest_* keys, raises TOOL.rss_ingest. 1 on failure.
step() {
	local tool=$1 key=$2 t0 rc
	shift 2
	say "$tool: $key"
	t0=$(now)
	timeout -k 10 "$TMO" /usr/bin/time -f %M -o "$W/time" "$@" >"$W/out" 2>"$W/err"
	rc=$?
	sync -f "$W"
	local s
	s=$(secs_since "$t0")
	cat "$W/out" "$W/err" >>"$LOG"
	if [ $rc -ne 0 ]; then
		local why="exit status $rc"
		[ $rc = 124 ] && why="timed out after $TMO s"
		note "$tool: $key failed ($why): $(grep -v '^Command exited' "$W/err" | tail -1)"
		return 1
	fi
	put "$tool.$key" "$s"
	LAST_RSS=$(tail -1 "$W/time")
	case $key in
	ingest_*) maxput "$tool.rss_ingest" "$LAST_RSS" ;;
	esac
}

# mount_start PATH CMD...: runs the mount command in the foreground of a background job and waits
# until PATH (a file inside the mount) is there. 1 (and a note) when it is not within 120 s.
mount_start() {
	local path=$1 i
	shift
	mount_stop
	"$@" >>"$LOG" 2>&1 &
	MOUNT_PID=$!
	for ((i = 0; i < 1200; i++)); do
		if mountpoint -q "$MNT" && [ -e "$path" ]; then
			return 0
		fi
		kill -0 "$MOUNT_PID" 2>/dev/null || break
		sleep 0.1
	done
	note "mount failed or too slow: $*"
	mount_stop
	return 1
}
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$MOUNT_PID/status" 2>/dev/null; }

# seq_read TOOL KEY CMD...: cold sequential read (the caller dropped the caches), as MB/s
seq_read() {
	local tool=$1 key=$2 t0 rc s
	shift 2
	t0=$(now)
	timeout -k 5 "$TMO" "$@" >/dev/null 2>>"$LOG"
	rc=$?
	s=$(secs_since "$t0")
	if [ $rc -ne 0 ]; then
		note "$tool: $key failed (exit status $rc)"
		return 1
	fi
	put "$tool.$key" "$(calc "$IMG_SIZE / $s / 1e6")"
}

# fio_common FILE SIZE JOBS: the options every random-read run shares
fio_common() {
	# fio takes ':' as a separator of file names: recovery point ids have colons
	FIO=(--name=rand --filename="${1//:/\\:}" --readonly --rw=randread --bs=4k
		--ioengine=psync --direct=0 --iodepth=1 --numjobs="$3" --size="$2"
		--randrepeat=0 --randseed="$SEED" --norandommap --output-format=json)
}

# rand_read TOOL FILE SIZE: fio 4 KiB random reads, cold (the caller dropped the caches), then the
# same offsets again (warm)
rand_read() {
	local tool=$1 file=$2 fsize=$3 out ios iops p50 p99 how
	fio_common "$file" "$fsize" 1
	local common=("${FIO[@]}")
	for how in cold warm; do
		out=$W/fio-$tool-$how.json
		if [ $how = cold ]; then
			timeout -k 5 $((FIO_SECS + 120)) fio "${common[@]}" --invalidate=1 \
				--number_ios="$FIO_IOS" --runtime="$FIO_SECS" >"$out" 2>>"$LOG"
		else
			timeout -k 5 $((FIO_SECS + 120)) fio "${common[@]}" --invalidate=0 \
				--number_ios="$ios" --runtime="$FIO_SECS" >"$out" 2>>"$LOG"
		fi
		if ! read -r n iops p50 p99 < <(python3 "$here/benchlib.py" fio "$out" 2>>"$LOG"); then
			note "$tool: fio $how random reads failed"
			return 1
		fi
		[ $how = cold ] && ios=$n
		put "$tool.rand_${how}_iops" "$iops"
		put "$tool.rand_${how}_p50" "$p50"
		put "$tool.rand_${how}_p99" "$p99"
	done
}

# rand_par TOOL FILE SIZE: the cold random reads by 8 readers at once (the caller dropped the
# caches). fio seeds each job from the seed and its job number: job 1 reads the single reader's
# offsets, the others their own. Together they make as many reads as the single reader, so that
# as large a share of them finds its chunk already read by an earlier one.
rand_par() {
	local tool=$1 file=$2 fsize=$3 out=$W/fio-$1-par.json n iops p50 p99
	fio_common "$file" "$fsize" 8
	timeout -k 5 $((FIO_SECS + 120)) fio "${FIO[@]}" --group_reporting --invalidate=1 \
		--number_ios=$(((FIO_IOS + 7) / 8)) --runtime="$FIO_SECS" >"$out" 2>>"$LOG"
	if ! read -r n iops p50 p99 < <(python3 "$here/benchlib.py" fio "$out" 2>>"$LOG"); then
		note "$tool: fio random reads by 8 readers failed"
		return 1
	fi
	put "$tool.rand_par_iops" "$iops"
	put "$tool.rand_par_p50" "$p50"
	put "$tool.rand_par_p99" "$p99"
}

# read_tests TOOL PATH CMD...: the read tests through a mount started with CMD, PATH the image
read_tests() {
	local tool=$1 path=$2
	shift 2
	say "$tool: cold sequential read, dd bs=1M"
	if mount_start "$path" "$@"; then
		drop; seq_read "$tool" seq_dd dd if="$path" of=/dev/null bs=1M status=none
		maxput "$tool.rss_mount" "$(hwm)"; mount_stop
	fi
	# vmbak's own `dd` and `cat` are compared, so its cold `cat` runs also when QUICK
	if [ "$QUICK" != 1 ] || [ "$tool" = vmbak ]; then
		say "$tool: cold, then warm sequential read, cat"
		if mount_start "$path" "$@"; then
			drop; seq_read "$tool" seq_cat cat "$path"
			seq_read "$tool" seq_cat_warm cat "$path"
			maxput "$tool.rss_mount" "$(hwm)"; mount_stop
		fi
	fi
	say "$tool: 4 KiB random reads, cold then warm"
	if mount_start "$path" "$@"; then
		drop; rand_read "$tool" "$path" "$IMG_SIZE"
		maxput "$tool.rss_mount" "$(hwm)"; mount_stop
	fi
	# the peers' 8 readers are optional: not when QUICK. Their peak RSS is a row of its own, so
	# that rss_mount compares the same single-reader tests of every tool.
	if [ "$QUICK" != 1 ] || [ "$tool" = vmbak ]; then
		say "$tool: 4 KiB random reads by 8 readers, cold"
		if mount_start "$path" "$@"; then
			drop; rand_par "$tool" "$path" "$IMG_SIZE"
			maxput "$tool.rss_mount_par" "$(hwm)"; mount_stop
		fi
	fi
}

# growth TOOL SUFFIX: day2 growth as multiples of the changed bytes, from the stored sizes
growth() {
	local t=$1 x=${2:-} a b c
	a=$(get "$t.stored_base_luks$x"); b=$(get "$t.stored_day2_raw$x"); c=$(get "$t.stored_day2_luks$x")
	[ -n "$a" ] && [ -n "$b" ] && put "$t.growth_day2_raw$x" "$(calc "($b - $a) / $CH_raw")"
	[ -n "$b" ] && [ -n "$c" ] && put "$t.growth_day2_luks$x" "$(calc "($c - $b) / $CH_luks")"
	return 0
}

# ---- plain cp and cat of the source -------------------------------------------------------------
say "source: cold and warm cat, cold dd, random reads"
drop; seq_read src seq_cat cat "$C/base.raw"
seq_read src seq_cat_warm cat "$C/base.raw"
drop; seq_read src seq_dd dd if="$C/base.raw" of=/dev/null bs=1M status=none
drop; rand_read src "$C/base.raw" "$IMG_SIZE"
drop; rand_par src "$C/base.raw" "$IMG_SIZE"
# the floor of an incremental ingest with --changed: reading only the changed bytes, cold. One
# dd per extent (what a script would do; the target is judged against it), and the same reads
# by one process (pread), which shows how much of the dd time is starting a process per extent.
for img in raw luks; do
	ext=EXT_$img
	say "source: cold read of the changed extents of day2.$img, dd per extent, then one process"
	drop; t0=$(now)
	if awk '{ print $1, $2 }' "${!ext}" | while read -r off len; do
		dd if="$C/day2.$img" iflag=skip_bytes,count_bytes skip="$off" count="$len" bs=1M \
			of=/dev/null status=none || exit 1
	done; then
		put "src.read_changed_${img}_dd_s" "$(secs_since "$t0")"
	else
		note "src: dd of the changed extents of day2.$img failed"
	fi
	drop; t0=$(now)
	if python3 "$here/benchlib.py" pread-extents "$C/day2.$img" "${!ext}" 2>>"$LOG"; then
		put "src.read_changed_${img}_pread_s" "$(secs_since "$t0")"
	else
		note "src: pread of the changed extents of day2.$img failed"
	fi
done
mkdir -p "$W/cp"
for img in base.raw base.luks day2.raw day2.luks; do
	k=${img/./_}
	drop; step src "ingest_${k}_s" cp --sparse=always "$C/$img" "$W/cp/$img" &&
		put "src.stored_$k" "$(du_bytes "$W/cp")"
done
growth src
rm -rf "$W/cp"

# ---- vmbak --------------------------------------------------------------------------------------
export VMBAK_PASSPHRASE_FILE=$PW
V=$W/vmbak
V2=$W/vmbak-changed
meta() { mdb_stat -ea "$1" 2>/dev/null | python3 "$here/benchlib.py" lmdb-meta; }
base_id=
if step vmbak init "$VMBAK" init "$V" --encryption aes-256-gcm; then
	drop; step vmbak ingest_base_raw_s "$VMBAK" ingest "$V" raw --disk os="$C/base.raw" &&
		base_id=$(tail -1 "$W/out")
	put vmbak.stored_base_raw "$(du_bytes "$V")"
	drop; step vmbak ingest_base_luks_s "$VMBAK" ingest "$V" luks --disk os="$C/base.luks"
	put vmbak.stored_base_luks "$(du_bytes "$V")"
	say "vmbak: copying the vault for the --changed ingests"
	cp -a --sparse=always "$V" "$V2"
	# the copy's own starting size: the sparse copy need not take the blocks the original takes
	put vmbak.stored_base_luks_changed "$(du_bytes "$V2")"
	for v in "" _changed; do
		vault=$V; [ -n "$v" ] && vault=$V2
		m0='' tl0=''
		read -r m0 tl0 < <(meta "$vault")
		for img in raw luks; do
			extra=()
			if [ -n "$v" ]; then
				ext=EXT_$img
				extra=(--changed os="${!ext}")
			fi
			drop; step vmbak "ingest_day2_${img}${v}_s" "$VMBAK" ingest "$vault" "$img" \
				--disk os="$C/day2.$img" "${extra[@]}"
			put "vmbak.stored_day2_${img}$v" "$(du_bytes "$vault")"
			m1='' tl1=''
			read -r m1 tl1 < <(meta "$vault")
			if [ -n "$m0" ] && [ -n "$m1" ]; then
				put "vmbak.meta_day2_${img}$v" $((m1 - m0))
				put "vmbak.meta_tails_day2_${img}$v" $((tl1 - tl0))
			fi
			m0=$m1 tl0=$tl1
		done
		growth vmbak "$v"
	done
	for img in raw luks; do
		m=$(get "vmbak.meta_day2_${img}_changed")
		ch=CH_$img
		[ -n "$m" ] && put "vmbak.meta_day2_${img}_changed_pct" "$(calc "100 * $m / ${!ch}")"
	done
	"$VMBAK" info "$V2" >>"$LOG" 2>&1
	rm -rf "$V2"
	if [ -n "$base_id" ]; then
		read_tests vmbak "$MNT/raw/$base_id/os.img" "$VMBAKFS" "$V" "$MNT" -f
	else
		note "vmbak: no recovery point of base.raw, no read tests"
	fi
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$V"
fi

# ---- borg ---------------------------------------------------------------------------------------
if has_peer borg; then
	export BORG_BASE_DIR=$W/borg-home BORG_PASSCOMMAND="cat $PW"
	export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
	B=$W/borg
	if step borg init borg init -e repokey-blake2 "$B"; then
		for img in base.raw base.luks day2.raw day2.luks; do
			k=${img/./_}
			drop; step borg "ingest_${k}_s" env -C "$C" borg create "$B::${img/./-}" "$img"
			put "borg.stored_$k" "$(du_bytes "$B")"
		done
		growth borg
		read_tests borg "$MNT/base.raw" borg mount -f "$B::base-raw" "$MNT"
	fi
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$B" "$BORG_BASE_DIR"
fi

# ---- restic -------------------------------------------------------------------------------------
if has_peer restic; then
	export RESTIC_PASSWORD_FILE=$PW RESTIC_CACHE_DIR=$W/restic-cache RESTIC_REPOSITORY=$W/restic
	if step restic init restic init; then
		for img in base.raw base.luks day2.raw day2.luks; do
			k=${img/./_}
			drop; step restic "ingest_${k}_s" env -C "$C" restic backup -q --tag "${img/./-}" "$img"
			put "restic.stored_$k" "$(du_bytes "$RESTIC_REPOSITORY")"
		done
		growth restic
		read_tests restic "$MNT/tags/base-raw/latest/base.raw" restic mount "$MNT"
	fi
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"
fi

# ---- casync -------------------------------------------------------------------------------------
if has_peer casync; then
	S=$W/casync
	mkdir -p "$S/store" "$W/casync-src"
	for img in base.raw base.luks day2.raw day2.luks; do
		k=${img/./_}
		d=$W/casync-src/${img/./-}
		mkdir -p "$d"
		# the image alone in a directory, so that `casync mount` can show it
		if ! ln "$C/$img" "$d/$img" 2>/dev/null; then
			: >"$d/$img"
			mount --bind "$C/$img" "$d/$img" && BINDS+=("$d/$img")
		fi
		drop; step casync "ingest_${k}_s" casync make --store="$S/store" --compression=zstd \
			"$S/${img/./-}.caidx" "$d"
		put "casync.stored_$k" "$(du_bytes "$S")"
	done
	growth casync
	read_tests casync "$MNT/base.raw" casync mount --store="$S/store" "$S/base-raw.caidx" "$MNT"
	for b in "${BINDS[@]}"; do umount "$b" 2>/dev/null; done
	BINDS=()
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$S" "$W/casync-src"
fi

# ---- the scale case: a 1 TiB sparse disk holding 1 GiB ----------------------------------------
if [ "$SCALE" = 1 ]; then
	SZ=$((1 << 40)); DATA=$((1 << 30))
	big=$BENCH_DIR/scale/disk-1T.raw
	mkdir -p "$BENCH_DIR/scale"
	if [ ! -f "$big.done" ] || [ ! -f "$big.sha256" ]; then
		say "scale: making the 1 TiB sparse disk with 1 GiB of data"
		rm -f "$big"
		python3 "$here/benchlib.py" sparse-make "$big" $SZ $DATA $SEED && touch "$big.done" ||
			note "scale: cannot make the 1 TiB sparse disk in $BENCH_DIR/scale"
	fi
	if [ -f "$big.done" ]; then
		drop; step src scale_ingest_s cp --sparse=always "$big" "$W/big-copy.raw" &&
			put src.scale_stored "$(du_bytes "$W/big-copy.raw")"
		rm -f "$W/big-copy.raw"
		drop; t0=$(now)
		if python3 "$here/benchlib.py" sparse-check "$big" $SZ $DATA $SEED "$big.sha256" 2>>"$LOG"; then
			put src.scale_read_s "$(secs_since "$t0")"
		fi
		VS=$W/vmbak-scale
		if step vmbak init "$VMBAK" init "$VS" --encryption aes-256-gcm; then
			drop; step vmbak scale_ingest_s "$VMBAK" ingest "$VS" big --disk os="$big" &&
				put vmbak.scale_rss_ingest "$LAST_RSS"
			put vmbak.scale_stored "$(du_bytes "$VS")"
			say "vmbak: reading the 1 GiB of data of the 1 TiB disk through the mount"
			if mount_start "$MNT/big/latest/os.img" "$VMBAKFS" "$VS" "$MNT" -f; then
				drop; t0=$(now)
				if timeout -k 5 "$TMO" python3 "$here/benchlib.py" sparse-check \
					"$MNT/big/latest/os.img" $SZ $DATA $SEED "$big.sha256" 2>>"$LOG"; then
					put vmbak.scale_read_s "$(secs_since "$t0")"
				else
					note "vmbak: the 1 TiB disk read back through the mount differs or failed"
				fi
				put vmbak.scale_rss_mount "$(hwm)"
				mount_stop
			fi
			rm -rf "$VS"
		fi
		note "1 TiB case: peers not run (each reads all 1 TiB of holes at ingest);" \
			"'cp/cat src' is cp --sparse=always of the disk and a read of its data pieces"
	fi
fi

# the RSS peaks are raw KiB; rows are made in benchlib.py
put meta.end "$(date -u +%T)"
say "done; results in $BENCH_DIR/results.{txt,tsv,json}, log in $LOG"
python3 "$here/benchlib.py" report "$RAW" "$NOTES" "$BENCH_DIR"
