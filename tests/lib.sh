# tests/lib.sh: sourced by the shell tests (tests/cli/*.sh, tests/fuse/*.sh).
#
# The runner (tests/run) sets VMBAK, VMBAKFS (absolute paths of the programs under test), SRCDIR
# (the repository) and TESTTMP (a fresh directory, removed after a pass). A test run by hand gets
# defaults: the programs in $SRCDIR/build and a TESTTMP of its own, removed when the test passes.
#
# Exit status of a test: 0 pass, 77 skip (the last line printed says why), anything else fail.
#
# Whatever a test mounts or attaches through the helpers below is undone when the test exits, by
# an EXIT trap, in reverse order, also when it fails or is killed by SIGTERM/SIGINT (the runner's
# timeout): kernel mounts, then loop devices, then FUSE mounts (fusermount3 -u, then aborting the
# connection, then fusermount3 -uz as a last resort). A test that needs its own cleanup adds a
# command with at_exit.
# shellcheck shell=bash

set -euo pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
VMBAK=${VMBAK:-$SRCDIR/build/vmbak}
VMBAKFS=${VMBAKFS:-$SRCDIR/build/vmbakfs}
export SRCDIR VMBAK VMBAKFS

_lib_own_tmp=0
if [ -z "${TESTTMP:-}" ]; then
	TESTTMP=$(mktemp -d "${TMPDIR:-/tmp}/vmbak-test.XXXXXX")
	_lib_own_tmp=1
fi
export TESTTMP
# Things to undo, one per line ("fuse DIR", "kmount DIR", "loop DEV", "pid PID", "cmd TEXT"). A
# file rather than an array so helpers called in $(...) subshells can register too.
_lib_state=$TESTTMP/.cleanup
: >>"$_lib_state"

# Files where expect_status leaves the output of the last command it ran.
OUT=$TESTTMP/.stdout
ERR=$TESTTMP/.stderr

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

skip() {
	echo "$*"
	exit 77
}

note() {
	echo "# $*"
}

# at_exit CMD...: run CMD (as one shell string) when the test exits, before mounts are undone.
at_exit() {
	echo "cmd $*" >>"$_lib_state"
}

need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "needs '$c', which is not installed"
	done
}

need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
}

# A test of a real mount: skips where FUSE is unavailable, except under CI=true where that is a
# failure (CI must run the mounts).
need_fuse() {
	local why=
	if [ ! -c /dev/fuse ]; then
		why="/dev/fuse is missing"
	elif ! (: <>/dev/fuse) 2>/dev/null; then
		why="/dev/fuse cannot be opened"
	elif ! command -v fusermount3 >/dev/null 2>&1; then
		why="fusermount3 is not installed (Debian package fuse3)"
	fi
	[ -z "$why" ] && return 0
	if [ "${CI:-}" = true ]; then
		fail "$why (a real mount is required under CI=true)"
	fi
	skip "$why"
}

need_programs() {
	[ -x "$VMBAK" ] || fail "'$VMBAK' is not built"
	[ -x "$VMBAKFS" ] || fail "'$VMBAKFS' is not built"
}

# use_test_build: the rest of the test runs the test build (make fault) instead, which alone
# has the test hooks (VMBAK_TEST_PAUSE_*, VMBAK_TEST_NOW). Fails when it is not built.
use_test_build() {
	[ -x "${VMBAK_TB:-}" ] && [ -x "${VMBAKFS_TB:-}" ] ||
		fail "the test build ('${VMBAK_TB:-}') is not built: make fault"
	VMBAK=$VMBAK_TB
	VMBAKFS=$VMBAKFS_TB
}

# The checks below stop the test at the first failure, unless keep_going was called: then each
# failed check says so on stderr and the test goes on, and finish_checks ends it (status 1 if
# any failed). A list of many independent checks (tests/cli/usage.sh) reports them all at once.
_lib_keep_going=0
_lib_checks=0
_lib_failed=0

# keep_going: from here on, a failed check is counted and reported, not fatal.
keep_going() {
	_lib_keep_going=1
}

# check_failed MSG: one failed check (fatal unless keep_going).
check_failed() {
	if [ "$_lib_keep_going" -eq 1 ]; then
		echo "FAIL: $*" | cut -c 1-400 >&2
		_lib_failed=$((_lib_failed + 1))
		return 0
	fi
	fail "$*"
}

# finish_checks: ends a keep_going test: a note with the counts, status 1 if any check failed.
finish_checks() {
	note "$_lib_checks checks, $_lib_failed failed"
	[ "$_lib_failed" -eq 0 ] || exit 1
	exit 0
}

# expect_status N CMD...: runs CMD with no standard input, stdout in $OUT and stderr in $ERR,
# and checks that it exits with status N. A failing command (N != 0) must say why in exactly
# one line on stderr; when CMD is vmbak or vmbakfs, starting with "vmbak: " or "vmbakfs: ".
expect_status() {
	local want=$1 st=0 prog
	shift
	_lib_checks=$((_lib_checks + 1))
	"$@" </dev/null >"$OUT" 2>"$ERR" || st=$?
	if [ "$st" -ne "$want" ]; then
		_lib_show_output
		check_failed "'$*' exited with $st, expected $want"
		return 0
	fi
	if [ "$want" -ne 0 ]; then
		prog=${1##*/}
		if [ "$(wc -l <"$ERR")" -ne 1 ] || [ -n "$(tail -c 1 "$ERR" | tr -d '\n')" ]; then
			_lib_show_output
			check_failed "'$*' must print exactly one line on stderr"
		elif { [ "$prog" = vmbak ] || [ "$prog" = vmbakfs ]; } &&
			! grep -q "^$prog: " "$ERR"; then
			_lib_show_output
			check_failed "'$*': its line on stderr must start with '$prog: '"
		fi
	fi
	return 0
}

# expect_ok CMD...: CMD succeeds and writes nothing on stderr.
expect_ok() {
	expect_status 0 "$@"
	[ ! -s "$ERR" ] || { _lib_show_output; check_failed "'$*' wrote on stderr"; }
	return 0
}

# expect_stderr ERE: the stderr of the last expect_status matches ERE.
expect_stderr() {
	grep -Eq -- "$1" "$ERR" || { _lib_show_output; check_failed "stderr does not match /$1/"; }
	return 0
}

# expect_stdout ERE: the stdout of the last expect_status has a line matching ERE.
expect_stdout() {
	grep -Eq -- "$1" "$OUT" || { _lib_show_output; check_failed "stdout does not match /$1/"; }
	return 0
}

# expect_json CODE [ARG...]: python3 with the JSON that the last expect_status printed as `d`
# (sys.argv[2:] are the ARGs); CODE asserts.
expect_json() {
	python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$1" "$OUT" "${@:2}" || { _lib_show_output; check_failed "JSON check failed: $1"; }
	return 0
}

_lib_show_output() {
	{
		echo "--- stdout:"
		head -c 4000 "$OUT" 2>/dev/null || true
		echo "--- stderr:"
		head -c 4000 "$ERR" 2>/dev/null || true
		echo "---"
	} >&2
}

# is_mounted DIR: DIR is a mount point. Reads the mount table, so it never touches (and never
# hangs on) a file system whose daemon is stuck.
is_mounted() {
	local dir
	dir=$(_lib_abspath "$1")
	awk -v d="$dir" '$5 == d { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# The absolute path of $1 with only its parent resolved: never stats $1 itself, which may be a
# mount whose daemon hangs.
_lib_abspath() {
	local p=${1%/}
	[ -n "$p" ] || p=/
	printf '%s/%s\n' "$(realpath -m -- "$(dirname -- "$p")")" "$(basename -- "$p")" |
		sed 's://*:/:g'
}

# vmount VAULT MNT [OPTION...]: mounts VAULT at MNT with vmbakfs (MNT is created if needed) and
# waits until it is mounted. With -f among the options vmbakfs runs in the foreground, in the
# background of the test; so it does too under the sanitizers (ASAN_OPTIONS or UBSAN_OPTIONS
# set), where a daemon's reports would go to /dev/null: its output goes to a log, and a
# non-zero exit status after the unmount fails the test. The mount is undone when the test
# exits.
vmount() {
	local vault=$1 mnt=$2 fg=0 o pid st=0 i log
	shift 2
	for o in "$@"; do
		[ "$o" = -f ] && fg=1
	done
	if [ "$fg" -eq 0 ] && [ -n "${ASAN_OPTIONS:-}${UBSAN_OPTIONS:-}" ]; then
		set -- "$@" -f
		fg=1
	fi
	mkdir -p -- "$mnt"
	mnt=$(_lib_abspath "$mnt")
	if [ "$fg" -eq 1 ]; then
		log=$(mktemp "$TESTTMP/.vmbakfs-fg.XXXXXX")
		"$VMBAKFS" "$vault" "$mnt" "$@" >"$log" 2>&1 &
		pid=$!
		# Undone in reverse order: unmount first, then wait for the process to exit.
		echo "pid $pid $log" >>"$_lib_state"
		echo "fuse $mnt" >>"$_lib_state"
	else
		echo "fuse $mnt" >>"$_lib_state"
		# A vmbakfs that deadlocks on its own mount sleeps in the kernel, killable only by
		# SIGKILL; its death ends the FUSE connection too.
		timeout -k 5 60 "$VMBAKFS" "$vault" "$mnt" "$@" >"$OUT" 2>"$ERR" || st=$?
		if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
			_lib_show_output
			fail "vmbakfs '$vault' '$mnt' did not return within 60 s"
		elif [ "$st" -ne 0 ]; then
			_lib_show_output
			fail "vmbakfs '$vault' '$mnt' exited with $st"
		fi
	fi
	for ((i = 0; i < 200; i++)); do
		if is_mounted "$mnt" && timeout 10 mountpoint -q -- "$mnt"; then
			return 0
		fi
		if [ "$fg" -eq 1 ] && ! kill -0 "$pid" 2>/dev/null; then
			st=0
			wait "$pid" || st=$?
			cat "$log" >&2 || true
			fail "vmbakfs -f '$vault' '$mnt' exited with $st before mounting"
		fi
		sleep 0.05
	done
	fail "'$mnt' is not mounted 10 s after vmbakfs started"
}

# vumount MNT: unmounts a vmbakfs mount now (the exit trap would do it too).
vumount() {
	local mnt
	mnt=$(_lib_abspath "$1")
	_lib_fuse_unmount "$mnt" || fail "cannot unmount '$mnt'"
	is_mounted "$mnt" && fail "'$mnt' is still mounted"
	return 0
}

_lib_fuse_unmount() {
	local mnt=$1 minor i
	is_mounted "$mnt" || return 0
	for ((i = 0; i < 20; i++)); do
		timeout 20 fusermount3 -u -- "$mnt" 2>/dev/null && return 0
		is_mounted "$mnt" || return 0
		sleep 0.1
	done
	echo "lib: '$mnt' is busy or hung, aborting its FUSE connection" >&2
	minor=$(awk -v d="$mnt" '$5 == d { split($3, a, ":"); print a[2]; exit }' /proc/self/mountinfo)
	if [ -d /sys/fs/fuse/connections ] && ! grep -q ' - fusectl ' /proc/self/mountinfo; then
		mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null || true
	fi
	if [ -n "$minor" ] && [ -w "/sys/fs/fuse/connections/$minor/abort" ]; then
		echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null || true
		timeout 20 fusermount3 -u -- "$mnt" 2>/dev/null && return 0
	fi
	echo "lib: lazily unmounting '$mnt'" >&2
	timeout 20 fusermount3 -uz -- "$mnt" 2>/dev/null || timeout 20 umount -l -- "$mnt" 2>/dev/null
	! is_mounted "$mnt"
}

# loop_attach FILE: attaches FILE read-only to a free loop device and prints the device.
# Detached when the test exits.
loop_attach() {
	local dev
	dev=$(losetup -r -f --show -- "$1") || fail "losetup -r -f --show '$1' failed"
	echo "loop $dev" >>"$_lib_state"
	echo "$dev"
}

loop_detach() {
	losetup -d "$1" || fail "losetup -d '$1' failed"
}

# kmount_ro DEV DIR [mount options]: mounts DEV read-only at DIR (created), undone at exit.
kmount_ro() {
	local dev=$1 dir=$2
	shift 2
	mkdir -p -- "$dir"
	dir=$(_lib_abspath "$dir")
	echo "kmount $dir" >>"$_lib_state"
	mount -o ro "$@" -- "$dev" "$dir" || fail "mount -o ro '$dev' '$dir' failed"
}

kumount() {
	umount -- "$1" || fail "umount '$1' failed"
}

# _lib_reap PID LOG: waits for a vmbakfs -f to exit after its unmount; fails if it does not, or
# exits with an error, or its log holds a sanitizer report.
_lib_reap() {
	local pid=$1 log=$2 i st=0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "lib: vmbakfs -f (pid $pid) did not exit 10 s after its unmount" >&2
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return 1
	fi
	wait "$pid" 2>/dev/null || st=$?
	if [ "$st" -ne 0 ] && [ "$st" -ne 127 ] ||
		grep -Eq 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:' "$log"; then
		echo "lib: vmbakfs -f (pid $pid) exited with status $st or reported an error:" >&2
		tail -n 40 "$log" >&2
		return 1
	fi
	return 0
}

_lib_cleanup() {
	local st=$? kind arg bad=0 i
	trap - EXIT INT TERM HUP
	set +e
	if [ -s "$_lib_state" ]; then
		while read -r kind arg; do
			case "$kind" in
			cmd) bash -c "$arg" || true ;;
			kmount)
				if is_mounted "$arg"; then
					timeout 20 umount -- "$arg" 2>/dev/null ||
						timeout 20 umount -l -- "$arg" || bad=1
				fi
				;;
			loop)
				# Only if it is still the loop device this test attached.
				if losetup -- "$arg" 2>/dev/null | grep -qF -- "$TESTTMP"; then
					losetup -d "$arg" || bad=1
				fi
				;;
			fuse)
				_lib_fuse_unmount "$arg" || { echo "lib: cannot unmount '$arg'" >&2; bad=1; }
				;;
			pid)
				_lib_reap "${arg%% *}" "${arg#* }" || bad=1
				;;
			esac
		done < <(tac "$_lib_state")
	fi
	: >"$_lib_state"
	if [ "$bad" -ne 0 ] && [ "$st" -eq 0 ]; then
		st=1
	fi
	if [ "$_lib_own_tmp" -eq 1 ]; then
		if [ "$st" -eq 0 ] || [ "$st" -eq 77 ]; then
			rm -rf --one-file-system -- "$TESTTMP"
		else
			echo "lib: test files kept in $TESTTMP" >&2
		fi
	fi
	exit "$st"
}
trap _lib_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# mk_ext4_image PATH SIZE_MB: makes PATH, a SIZE_MB MiB ext4 image (4 KiB blocks) filled to about
# 60% by mkfs.ext4 -d from real files of this machine (documentation, libraries, programs),
# copied first into the directory PATH.src. Prints PATH.src, to diff -r against.
mk_ext4_image() {
	local img=$1 size_mb=$2 src=$1.src
	need_cmd mkfs.ext4 python3
	rm -rf -- "$src"
	mkdir -p -- "$src"
	python3 - "$src" "$size_mb" <<'EOF' || fail "cannot collect files for '$src'"
import os, shutil, sys
dst, size_mb = sys.argv[1], int(sys.argv[2])
budget = size_mb * 1024 * 1024 * 6 // 10
max_files = size_mb * 1024 * 1024 // 16384 // 2   # half of mkfs.ext4's default inode count
used = files = 0
seen = set()

def blocks(n):
    return (n + 4095) // 4096 * 4096

def fill(top, limit):
    global used, files
    for root, dirs, names in os.walk(top):
        dirs.sort()
        for n in sorted(names):
            if used + 64 * 1024 > limit or files >= max_files:
                return
            p = os.path.join(root, n)
            if p in seen:
                continue
            seen.add(p)
            try:
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                sz = os.path.getsize(p)
            except OSError:
                continue
            if sz > 8 * 1024 * 1024 or used + blocks(sz) + 4096 > limit:
                continue
            q = os.path.join(dst, os.path.relpath(p, "/"))
            d = os.path.dirname(q)
            try:
                if not os.path.isdir(d):
                    os.makedirs(d)
                    used += 4096
                shutil.copyfile(p, q)
            except OSError:
                continue
            used += blocks(sz)
            files += 1

# Text first (up to a quarter), then binaries: a mix of compressible and incompressible data.
fill("/usr/share/doc", budget // 4)
for top in ("/usr/lib/x86_64-linux-gnu", "/usr/lib", "/usr/bin"):
    fill(top, budget)
if files == 0:
    sys.exit("no files found to put into the image")
EOF
	rm -f -- "$img"
	truncate -s "${size_mb}M" -- "$img"
	mkfs.ext4 -q -F -b 4096 -L vmbak-test -d "$src" -- "$img" >&2 ||
		fail "mkfs.ext4 -d '$src' '$img' failed"
	echo "$src"
}

# mk_sparse PATH SIZE: makes PATH, a sparse file of SIZE (bytes, or with a truncate(1) suffix
# such as 4G) with a few distinctive bytes written at a few offsets: the first bytes, a run that
# crosses the middle 1 MiB boundary, one at a third, the very last bytes. Prints the offsets of
# the written runs, one "OFFSET LENGTH" per line.
mk_sparse() {
	local path=$1 size
	rm -f -- "$path"
	truncate -s "$2" -- "$path"
	size=$(stat -c %s -- "$path")
	python3 - "$path" "$size" <<'EOF' || fail "cannot write into '$path'"
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
runs = []
for off in (0, size // 3 + 4093, size // 2 // (1 << 20) * (1 << 20) - 5, size - 11):
    if off < 0 or off >= size or any(o <= off < o + l for o, l in runs):
        continue
    data = ("vmbak@%d;" % off).encode()[: size - off]
    runs.append((off, len(data)))
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, data, off)
    os.close(fd)
for o, l in sorted(runs):
    print(o, l)
EOF
}

# flip_chunks VAULT VM DISK N...: flips one byte in the middle of the frame of chunk N of DISK
# as the VM's latest point sees it, at every place of data.mdb the frame appears (found with
# vbk-inspect, tests/tools/inspect.c, and mdb_dump).
flip_chunks() {
	python3 - "$@" <<'EOF' || fail "cannot damage chunks $*"
import os, subprocess, sys
vault, vm, disk, ns = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4:]]

def dump(db):
    out = subprocess.run(["mdb_dump", "-s", db, vault], check=True,
                         stdout=subprocess.PIPE).stdout.decode().splitlines()
    body = out[out.index("HEADER=END") + 1:out.index("DATA=END")]
    return [(bytes.fromhex(body[i].strip()), bytes.fromhex(body[i + 1].strip()))
            for i in range(0, len(body), 2)]

lines = subprocess.run([os.environ["VBK_INSPECT"], vault, vm, "latest", disk], check=True,
                       stdout=subprocess.PIPE).stdout.decode().splitlines()
idx = {int(l.split()[0]): (0, bytes.fromhex(l.split()[1])) for l in lines[1:]}
chunks = dict(dump("chunks"))
data = bytearray(open(vault + "/data.mdb", "rb").read())
for n in ns:
    frame = chunks[idx[n][1]]
    at, hits = 0, 0
    while True:
        at = data.find(frame, at)
        if at < 0:
            break
        data[at + len(frame) // 2] ^= 0x55
        hits += 1
        at += len(frame)
    if hits == 0:
        sys.exit("frame of chunk %d (%d bytes) not found in data.mdb" % (n, len(frame)))
with open(vault + "/data.mdb", "r+b") as f:
    f.write(data)
EOF
}

# The set-up many mount tests share.

# plain_vault [INIT-OPTION...]: T=$TESTTMP (the working directory from here on), V=$T/vault (an
# unencrypted vault with 16 KiB chunks, created here with any further init options), M=$T/mnt
# (a mount point to use); no passphrase in the environment.
plain_vault() {
	unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
	T=$TESTTMP
	V=$T/vault
	M=$T/mnt
	cd "$T"
	expect_status 0 "$VMBAK" init "$V" --encryption none --chunk-size 16384 "$@"
}

# json_value EXPR: the value of the python3 expression EXPR over the JSON in $OUT (`d`).
json_value() {
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$OUT" "$1"
}

# scribble FILE N [CHANGED]: overwrites N random 16 KiB blocks of FILE with random bytes,
# appending "OFFSET 16384" to the extents file CHANGED for each.
scribble() {
	local file=$1 n=$2 changed=${3:-} blocks k b
	blocks=$(($(stat -c %s "$file") / 16384))
	for ((k = 0; k < n; k++)); do
		b=$((RANDOM % blocks))
		dd if=/dev/urandom of="$file" bs=16384 count=1 seek="$b" conv=notrunc status=none
		[ -z "$changed" ] || echo "$((b * 16384)) 16384" >>"$changed"
	done
}
