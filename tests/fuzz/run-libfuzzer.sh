#!/usr/bin/env bash
# tests/fuzz/run-libfuzzer.sh SECONDS [NAME...]: builds the libFuzzer targets tests/fuzz/fuzz_NAME.c
# with clang (-fsanitize=fuzzer,address,undefined, the library built the same way) into
# build-fuzz/ and runs each for SECONDS, one after the other, on one core. `make fuzz
# FUZZ_SECONDS=N` runs them all.
#
# Each target starts from its committed seeds, tests/fuzz/corpus/NAME/, and keeps what it finds
# in build-fuzz/corpus/NAME/ (not committed: copy a few small, interesting files into the seeds
# by hand). A crash, leak, timeout or sanitizer report leaves its input in
# tests/fuzz/crashes/NAME/, which `make check` then replays forever after: fix the parser, keep
# the file. Prints one line per target with its executions; exit status 1 when any target
# found something. clang is installed with apt-get when missing (as root). Extra arguments for
# make (say, to leave out a file) can be given in FUZZ_MAKEFLAGS.
set -euo pipefail

cd "$(dirname "$0")/../.."
secs=${1:-60}
shift || true
case "$secs" in
'' | *[!0-9]*) echo "usage: $0 SECONDS [NAME...]" >&2; exit 2 ;;
esac
B=build-fuzz

if ! command -v clang >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "run-libfuzzer: clang is missing: apt-get install clang" >&2
		exit 1
	fi
	echo "run-libfuzzer: installing clang" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang >&2
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# The library with coverage for the fuzzer, and the sanitizers; not the programs.
# shellcheck disable=SC2086
make -s B=$B CC=clang EXTRA_CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $SAN" \
	${FUZZ_MAKEFLAGS:-} "$B/libvmbak.a"
libs=$(pkg-config --libs fuse3 lmdb libzstd libcrypto json-c)
cflags="-std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -O1 -g -fno-omit-frame-pointer -pthread
	-Ibase -Ikeyvault -Istore $(pkg-config --cflags json-c)"

if [ $# -eq 0 ]; then
	set --
	for f in tests/fuzz/fuzz_*.c; do
		n=${f##*/fuzz_}
		set -- "$@" "${n%.c}"
	done
fi

scratch=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch=/dev/shm
found=0
for n in "$@"; do
	src=tests/fuzz/fuzz_$n.c
	[ -f "$src" ] || { echo "run-libfuzzer: no target '$src'" >&2; exit 2; }
	bin=$B/fuzz_$n
	# shellcheck disable=SC2086
	clang $cflags -fsanitize=fuzzer $SAN -o "$bin" "$src" "$B/libvmbak.a" $libs -lpthread
	mkdir -p "$B/corpus/$n" "tests/fuzz/crashes/$n" "tests/fuzz/corpus/$n"
	log=$B/fuzz_$n.log
	st=0
	# Targets that write scratch files (config, kvfile, index) put them in TMPDIR: memory.
	TMPDIR=$scratch ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1 \
		"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
		-print_final_stats=1 -artifact_prefix="tests/fuzz/crashes/$n/" \
		"$B/corpus/$n" "tests/fuzz/corpus/$n" >"$log" 2>&1 || st=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
	if [ "$st" -ne 0 ]; then
		found=1
		echo "fuzz_$n: FOUND A PROBLEM after ${execs:-?} executions (log: $log)"
		grep -m 3 -E 'ERROR|runtime error|SUMMARY|deadly signal' "$log" | sed 's/^/    /' || true
	else
		files=$(find "$B/corpus/$n" -type f | wc -l)
		echo "fuzz_$n: ${execs:-?} executions in ${secs}s, ${cov:-cov: ?}, corpus $files files"
	fi
done
exit "$found"
