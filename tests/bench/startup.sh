#!/usr/bin/env bash
# tests/bench/startup.sh BEFORE_DIR AFTER_DIR [ROUNDS]: start-up of two builds (directories
# holding vmbak and vmbakfs), measured in the same minutes: ROUNDS (default 10) alternating
# rounds of `vmbak --version`, `vmbak list VAULT` and a vmbakfs mount + ls + unmount, each cold
# (sync and drop_caches first, as make bench does before every step) and warm. Prints the
# median and minimum of each. Needs root (drop_caches, FUSE). Not part of make check. Work
# directory: BENCH_DIR (default a new directory under /var/tmp, removed after).
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: tests/bench/startup.sh BEFORE_DIR AFTER_DIR [ROUNDS]" >&2; exit 2; }
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
n=${3:-10}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "tests/bench/startup.sh: invalid ROUNDS '$n'" >&2; exit 2; }
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/vmbak-startup.XXXXXX)}
mnt=$dir/m
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	[ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$mnt"
cd "$dir"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
"$after/vmbak" init v --encryption none >/dev/null
head -c 8M /dev/urandom >d.img
"$after/vmbak" ingest v vm --disk d=d.img >/dev/null

# us CMD...: microseconds CMD took; a failure stops the benchmark.
us() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null || { echo "tests/bench/startup.sh: '$*' failed" >&2; exit 1; }
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000))
}
mount_cycle() {
	timeout 20 "$1/vmbakfs" v "$mnt" && ls "$mnt/vm" >/dev/null && fusermount3 -u "$mnt"
}
for _ in $(seq "$n"); do
	for which in before after; do
		b=$before
		[ "$which" = after ] && b=$after
		for cache in cold warm; do
			for cmd in version list mount; do
				if [ "$cache" = cold ]; then
					sync
					echo 3 >/proc/sys/vm/drop_caches
				fi
				case $cmd in
				version) t=$(us "$b/vmbak" --version) ;;
				list) t=$(us "$b/vmbak" list v) ;;
				mount) t=$(us mount_cycle "$b") ;;
				esac
				echo "$which $cache $cmd $t"
			done
		done
	done
done >times
python3 - times "$n" <<'PY'
import statistics as st
import sys
d = {}
for line in open(sys.argv[1]):
    w, c, cmd, t = line.split()
    d.setdefault((cmd, c, w), []).append(int(t) / 1000)
print("%d alternating rounds, ms" % int(sys.argv[2]))
print("%-16s %-5s %10s %11s %11s %11s %8s" % ("", "", "before med", "after med", "before min",
                                              "after min", "med b/a"))
names = {"version": "vmbak --version", "list": "vmbak list", "mount": "vmbakfs mnt+umnt"}
for cmd in ("version", "list", "mount"):
    for c in ("cold", "warm"):
        b, a = d[(cmd, c, "before")], d[(cmd, c, "after")]
        print("%-16s %-5s %10.1f %11.1f %11.1f %11.1f %7.2fx" % (
            names[cmd], c, st.median(b), st.median(a), min(b), min(a), st.median(b) / st.median(a)))
PY
