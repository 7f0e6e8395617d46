#!/usr/bin/env bash
# tests/fuse/readers.sh: a reader of the vault killed with -9 does not pin its pages for ever.
#
# A process (python3 with liblmdb through ctypes) opens a read transaction on data.mdb and is
# killed with SIGKILL while a mount keeps the environment open (so LMDB's reset of the reader
# table at the first open never happens). Its slot in the reader table is stale: LMDB cannot
# reuse any page freed after its snapshot. The next writing command must clear it
# (mdb_reader_check): `mdb_stat -r` shows no entry of the dead pid afterwards, and
# ingest + delete + gc cycles do not make data.mdb grow cycle after cycle.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_cmd python3 mdb_stat
[ -e /usr/lib/x86_64-linux-gnu/liblmdb.so.0 ] || ldconfig -p | grep -q 'liblmdb.so.0 ' ||
	skip "needs liblmdb.so.0 (Debian package liblmdb0)"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
V=$T/vault
M=$T/mnt
cd "$T"
# has_reader PID: the reader table of the vault lists PID (mdb_stat exits 1 after -r here).
has_reader() {
	{ mdb_stat -r "$V" 2>/dev/null || true; } | awk -v p="$1" '$1 == p { f = 1 } END { exit !f }'
}
expect_status 0 "$VMBAK" init "$V" --encryption none
head -c $((8 * 1024 * 1024)) /dev/urandom >base.img
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=base.img
vmount "$V" "$M"
ls "$M/vm1/latest/" >/dev/null

# A reader that holds a read transaction until it is killed.
python3 - "$V" >"$T/reader.out" 2>&1 <<'PY' &
import ctypes, sys, time
lib = ctypes.CDLL("liblmdb.so.0")
env = ctypes.c_void_p()
txn = ctypes.c_void_p()
assert lib.mdb_env_create(ctypes.byref(env)) == 0
lib.mdb_env_set_maxdbs(env, 16)
MDB_RDONLY, MDB_NOTLS = 0x20000, 0x200000
rc = lib.mdb_env_open(env, sys.argv[1].encode(), MDB_RDONLY | MDB_NOTLS, 0o600)
assert rc == 0, rc
assert lib.mdb_txn_begin(env, None, MDB_RDONLY, ctypes.byref(txn)) == 0
print("ready", flush=True)
time.sleep(600)
PY
reader=$!
at_exit "kill -9 $reader 2>/dev/null"
for ((i = 0; i < 500; i++)); do
	grep -q ready "$T/reader.out" && break
	kill -0 "$reader" 2>/dev/null || { cat "$T/reader.out"; fail "the reader died"; }
	sleep 0.02
done
grep -q ready "$T/reader.out" || fail "the reader did not start"
has_reader "$reader" || fail "the reader is not in the reader table"
kill -9 "$reader"
wait "$reader" 2>/dev/null || true
has_reader "$reader" || fail "the dead reader's slot is already gone"

sizes=()
for cycle in 1 2 3 4; do
	head -c $((8 * 1024 * 1024)) /dev/urandom >c.img
	expect_status 0 "$VMBAK" ingest "$V" vm2 --disk sda=c.img
	id=$(tail -n 1 "$OUT")
	if [ "$cycle" -eq 1 ] && has_reader "$reader"; then
		fail "a write left the stale reader (pid $reader) in the reader table"
	fi
	expect_status 0 "$VMBAK" delete "$V" "vm2/$id" --force
	expect_status 0 "$VMBAK" gc "$V"
	sizes+=("$(stat -c %s "$V/data.mdb")")
done
note "data.mdb after each cycle: ${sizes[*]}"
# Freed pages are reused: after the first cycle the file does not keep growing by a disk's worth.
[ $((sizes[3] - sizes[1])) -lt $((4 * 1024 * 1024)) ] ||
	fail "data.mdb grew from ${sizes[1]} to ${sizes[3]} bytes over two ingest+delete+gc cycles"
ls "$M/vm1/latest/" >/dev/null
cmp "$M/vm1/latest/sda.img" base.img || fail "vm1 differs through the mount"
echo "ok"
