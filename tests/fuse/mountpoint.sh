#!/usr/bin/env bash
# tests/fuse/mountpoint.sh: vmbakfs refuses mount points it cannot serve, with one line and
# exit status 1, within a time limit, leaving nothing mounted:
#   - the vault directory itself, a directory that holds the vault, a directory inside it
#     (also reached through a bind mount, so paths alone do not tell): the daemon would open
#     the vault through its own mount and hang in the kernel;
#   - a directory that already is a mount point (a second vmbakfs would hide the first);
#   - the mount point of a daemon killed with -9 ("Transport endpoint is not connected"): the
#     line says how to clear it (fusermount3 -u).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
cd "$T"
mkdir -p a/b
expect_status 0 "$VMBAK" init a/b/v --encryption none
head -c 100000 /dev/urandom >d.img
expect_status 0 "$VMBAK" ingest a/b/v vm1 --disk d=d.img
mkdir a/b/v/inside

mounts_here() {
	awk -v d="$T/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l
}

# refused PATTERN VAULT MNT: vmbakfs VAULT MNT exits 1 within 20 s with one line matching
# PATTERN and leaves nothing new mounted.
refused() {
	local pat=$1 vault=$2 mnt=$3 before st=0
	before=$(mounts_here)
	echo "fuse $(_lib_abspath "$mnt")" >>"$_lib_state"
	timeout -k 5 20 "$VMBAKFS" "$vault" "$mnt" >"$OUT" 2>"$ERR" || st=$?
	if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
		fail "vmbakfs '$vault' '$mnt' hung"
	fi
	[ "$st" -eq 1 ] || { _lib_show_output; fail "vmbakfs '$vault' '$mnt' exited with $st"; }
	[ "$(wc -l <"$ERR")" -eq 1 ] || { _lib_show_output; fail "not one line on stderr"; }
	expect_stderr "^vmbakfs: .*$pat"
	[ "$(mounts_here)" -eq "$before" ] || fail "vmbakfs '$vault' '$mnt' mounted something"
	note "ok: $(cat "$ERR")"
}

refused "vault" a/b/v a/b/v
refused "vault" a/b/v a/b
refused "vault" a/b/v a
refused "vault" a/b/v a/b/v/inside
ln -s a/b/v vlink
refused "vault" vlink a/b/v
# The same directories under another path: only device and inode numbers tell.
mkdir a2
mount --bind a a2
at_exit "umount '$T/a2'"
refused "vault" a2/b/v a
refused "vault" a/b/v a2/b/v/inside

# A second mount on a mounted directory.
vmount a/b/v mnt
refused "already a mount point" a/b/v mnt
cmp d.img mnt/vm1/latest/d.img || fail "the first mount no longer serves"

# The daemon killed with -9: its mount point stays, dead. The next mount says how to clear it.
# Mounted here as a daemon even under the sanitizers (vmount would use -f there, and count the
# killed process as a failure).
vumount mnt
mnt_abs=$(_lib_abspath mnt)
"$VMBAKFS" a/b/v "$mnt_abs" || fail "vmbakfs a/b/v '$mnt_abs' failed"
pid=$(ps -eo pid=,args= |
	awk -v m="$mnt_abs" '$2 ~ /vmbakfs$/ && $4 == m && NF == 4 { print $1 }')
[ -n "$pid" ] && [ "$(wc -w <<<"$pid")" -eq 1 ] || fail "cannot find the daemon of '$mnt_abs'"
kill -9 "$pid"
for ((i = 0; i < 100; i++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
is_mounted mnt || fail "the dead daemon's mount went away by itself"
refused "fusermount3 -u" a/b/v mnt
expect_stderr "not connected"
vumount mnt
vmount a/b/v mnt
cmp d.img mnt/vm1/latest/d.img || fail "the new mount does not serve"

echo "ok"
