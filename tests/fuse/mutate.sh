#!/usr/bin/env bash
# tests/fuse/mutate.sh: metadata mutations (issue 10). Damage or tampering of any record of the
# vault's LMDB databases never reads as data: an image reads back byte-exact, is absent, or
# fails with EIO; never different bytes with exit 0.
#
# An encrypted vault (passphrase file), chunk size 16 KiB, two VMs: vm1 (disks sda 4 MiB with
# holes, sdb 1 MiB) with three points, vm2 (disk sda 3 MiB, sharing chunks with vm1) with two;
# later points partly --changed ingests, one point protected. A copy of the vault is kept after
# the first point of each VM ("old", for replays). Every image of every point is read once
# through a mount (sha256, checked against the sources), and each manifest.json kept.
#
# Then MUTATE_COUNT (default 300) mutations, each on a fresh copy of the vault, by
# tests/fuse/mutate.py, which treats every named database alike (flip a bit of a key or value,
# swap values inside a database or across two whose keys have the same length, delete, copy a
# record under a near key or over an existing one, replay the older copy's value). After each:
#   - a fresh read-only mount (vmbakfs -f in the background, so its exit status is seen). If
#     it refuses to start, that must be with one line "vmbakfs: ..." and a non-signal status:
#     the vault is then counted "unopenable" (a fine outcome; e.g. the config binding broken);
#   - every image of the original listing, read whole (sha256sum, time-limited): byte-exact,
#     or failing with ENOENT (absent) or EIO. Different bytes with exit 0, another errno, or a
#     timeout fail the test. Each manifest.json: the same bytes as before, or ENOENT/EIO. Each
#     VM's `latest`: a point of that VM, or ENOENT/EIO;
#   - the daemon is alive and answers afterwards (mountpoint, stat), and exits 0 on unmount
#     (no signal, no sanitizer report);
#   - `vmbak verify`: not 0 when any read failed or was absent or the mount refused; never a
#     signal or a timeout; when not 0, one line on stderr.
# At most MUTATE_SECONDS (150; 0: no limit) of mutations in all, once every (database,
# operation) pair has had its turn: a busy machine runs fewer (make check-long: all of 1200).
# Prints the seed (SEED=... replays a run; MUTATE_ONLY=N runs only mutation N of it), each
# failing mutation (database, operation, key in hex, what happened) and the counts. The vaults
# of the first MUTATE_KEEP (10) failing mutations are kept in TESTTMP/fail-N.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_cmd sha256sum timeout fusermount3 mountpoint
need_programs
use_test_build
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

. "$SRCDIR/tests/fuse/twovms.bash"
need_py_lmdb
MPY=$SRCDIR/tests/fuse/mutate.py

COUNT=${MUTATE_COUNT:-300}
KEEP=${MUTATE_KEEP:-10}
# Seconds after which no new one starts (0: no limit), for make check on a busy machine.
BUDGET=${MUTATE_SECONDS:-150}
SEED=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
note "seed $SEED (SEED=$SEED MUTATE_COUNT=$COUNT to replay), $COUNT mutations"

T=$TESTTMP
V=$T/vault
M=$T/mnt
cd "$T"
two_vm_vault "$V" "$T/old"
"$PY" "$MPY" dbs "$V" >dbs
sed 's/^/# database /' dbs
# Pairs (database, operation) of mutate.py: the first that many mutations cover each once.
npairs=$(($(wc -l <dbs) * 8))
mkdir -p "$M"
M=$(_lib_abspath "$M")
# Unmounted at exit too, whatever the loop below left mounted.
echo "fuse $M" >>"$_lib_state"

npoints=$(find manifests -name '*.json' | wc -l)

# ---- the mutations ----
nfail=0
nkept=0

# one_mutation I: runs mutation I; appends problems to $probs; sets $outcome.
one_mutation() {
	local i=$1 D=$T/mut
	rm -rf --one-file-system "$D"
	mkdir "$D"
	cp --sparse=always --reflink=auto "$V/data.mdb" "$V/vmbak-vault.json" "$D/"
	desc=$("$PY" "$MPY" apply "$D" "$T/old" "$SEED" "$i" 2>mut.err) ||
		fail "mutation $i could not be applied: $(cat mut.err)"
	rm -f "$D/lock.mdb"

	check_vault "$D" "$M" verify
}

if [ -n "${MUTATE_ONLY:-}" ]; then
	seq_list=$MUTATE_ONLY
else
	seq_list=$(seq 0 $((COUNT - 1)))
fi
t0=$SECONDS
done_n=0
for i in $seq_list; do
	# The time budget, once every pair/class has had its turn: a loaded machine runs fewer.
	if [ "$BUDGET" -gt 0 ] && [ $((SECONDS - t0)) -ge "$BUDGET" ] && [ "$done_n" -ge "$npairs" ]; then
		note "time budget of ${BUDGET} s (MUTATE_SECONDS) spent: stopping after $done_n mutations"
		break
	fi
	done_n=$((done_n + 1))
	one_mutation "$i"
	bump "outcome-$outcome"
	if [ ${#probs[@]} -gt 0 ]; then
		nfail=$((nfail + 1))
		bump "failed-$(cut -d, -f1 <<<"$desc" | tr ' ' -)"
		echo "FAIL mutation $i (SEED=$SEED MUTATE_ONLY=$i): $desc"
		kinds=()
		for line in "${probs[@]}"; do
			echo "    $line"
			case "$line" in
			*'WRONG BYTES'*) kinds+=(wrong-bytes) ;;
			*CHANGED*) kinds+=(manifest-changed) ;;
			*'not a point'*) kinds+=(latest-elsewhere) ;;
			*'VERIFY EXITS 0 though the mount served wrong'*) kinds+=(verify-passes-wrong-bytes) ;;
			*'VERIFY EXITS 0'*) kinds+=(verify-passes-failed-reads) ;;
			*CRASHED* | *signal* | *died* | *gone* | *Sanitizer* | *'double free'*) kinds+=(crash) ;;
			*'one clear line'*) kinds+=(unclear-message) ;;
			*) kinds+=(other-errno-or-timeout) ;;
			esac
		done
		# Each kind once per mutation.
		for k in $(printf '%s\n' "${kinds[@]}" | sort -u); do
			bump "fail-$k"
		done
		if [ "$nkept" -lt "$KEEP" ]; then
			mv "$T/mut" "$T/fail-$i"
			echo "$desc" >"$T/fail-$i/MUTATION"
			nkept=$((nkept + 1))
		fi
	elif [ -n "${MUTATE_VERBOSE:-}" ]; then
		echo "ok mutation $i ($outcome): $desc"
	fi
done
rm -rf --one-file-system "$T/mut"

note "$done_n mutations in $((SECONDS - t0)) s (seed $SEED), $npoints points"
for k in $(printf '%s\n' "${!count[@]}" | sort); do
	note "$k: ${count[$k]}"
done
[ "$nfail" -eq 0 ] || fail "$nfail of $done_n mutations failed (SEED=$SEED)"
exit 0
