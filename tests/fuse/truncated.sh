#!/usr/bin/env bash
# tests/fuse/truncated.sh: a truncated or empty data.mdb.
#
#   - Truncated (cut to 95%, 75%, 50% of its size): vmbakfs mounts, and every access (list the
#     root and each VM, read each image) either gives the right answer or fails with EIO: never
#     ENOTCONN (the daemon used to exit at the first page past the end), never wrong bytes. At
#     least one access fails (something is damaged), and the mount is still mounted and
#     answering afterwards.
#   - Empty: `vmbak verify` exits 3 (damage found) and vmbakfs refuses with one line naming the
#     vault; neither turns the empty file into a new database.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_cmd python3
need_programs
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
# A request cut short by a damaged page loses the LMDB cursors it had open (vault.h,
# vbs_guarded): expected, and bounded by the damaged requests, so not a leak to report here.
printf 'leak:mdb_cursor_open\n' >"$T/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp"
M=$T/mnt
cd "$T"
expect_status 0 "$VMBAK" init v --encryption none --chunk-size 16384
for vm in vm1 vm2 vm3; do
	head -c $((3 * 1024 * 1024 + 777)) /dev/urandom >"$vm.img"
	expect_status 0 "$VMBAK" ingest v "$vm" --disk sda="$vm.img"
done
size=$(stat -c %s v/data.mdb)

eio_total=0
for pct in 95 75 50; do
	rm -rf "v$pct"
	cp -a v "v$pct"
	truncate -s $((size * pct / 100 / 4096 * 4096)) "v$pct/data.mdb"
	vmount "v$pct" "$M"
	python3 - "$M" >"probe.$pct" <<'PY' || { cat "probe.$pct"; fail "$pct%: see above"; }
import errno, os, sys
m = sys.argv[1]
eio = ok = 0
def attempt(what, fn):
    global eio, ok
    try:
        fn()
        ok += 1
    except OSError as e:
        if e.errno != errno.EIO:
            sys.exit("%s: %s, expected success or EIO" % (what, errno.errorcode.get(e.errno)))
        eio += 1
def image(vm):
    with open(os.path.join(m, vm, "latest", "sda.img"), "rb") as f:
        got = f.read()
    with open(vm + ".img", "rb") as f:
        if f.read() != got:
            sys.exit("%s: wrong bytes read" % vm)
attempt("list the root", lambda: os.listdir(m))
for vm in ("vm1", "vm2", "vm3"):
    attempt("list " + vm, lambda: os.listdir(os.path.join(m, vm)))
    attempt("read " + vm, lambda: image(vm))
print("ok %d eio %d" % (ok, eio))
PY
	note "$pct%: $(cat "probe.$pct")"
	eio_total=$((eio_total + $(awk '{ print $4 }' "probe.$pct")))
	is_mounted "$M" || fail "$pct%: the mount went away"
	timeout 10 mountpoint -q "$M" || fail "$pct%: the mount no longer answers"
	timeout 10 stat "$M" >/dev/null || fail "$pct%: the root no longer answers"
	vumount "$M"
done
[ "$eio_total" -gt 0 ] || fail "no access failed: nothing was damaged"

: >v/data.mdb
expect_status 3 "$VMBAK" verify v
expect_stderr "vault 'v'.*damaged"
[ "$(stat -c %s v/data.mdb)" -eq 0 ] || fail "verify turned the empty data.mdb into a database"
mkdir -p "$M"
echo "fuse $M" >>"$_lib_state"
expect_status 1 timeout 30 "$VMBAKFS" v "$M"
expect_stderr "^vmbakfs: vault '.*/v'.*damaged"
is_mounted "$M" && fail "vmbakfs mounted an empty data.mdb"
echo "ok"
