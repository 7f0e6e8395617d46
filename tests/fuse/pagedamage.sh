#!/usr/bin/env bash
# tests/fuse/pagedamage.sh: random page damage (issue 10). One bit flipped in one page of
# data.mdb, at a random offset of what the page holds, in pages of every kind of every
# database; the vault is the one of tests/fuse/twovms.bash (two VMs, five points, encrypted).
#
# tests/fuse/pagedamage.py walks data.mdb as lmdb's mdb.c lays it out (from the newer meta page:
# the free-page tree, the main tree, each named database's tree, the overflow runs of big
# values) and classes every page: DB/branch, DB/leaf, DB/overflow, meta (the newer meta page),
# meta-old, unused (no tree reaches it). Trial I (PAGEDAMAGE_COUNT, default 100) takes class
# I mod the number of classes and a random page of it, flips one bit on a fresh copy of the
# vault, and checks as tests/fuse/mutate.sh does (check_vault in twovms.bash): every image of
# the original listing byte-exact, absent or EIO, never different bytes with exit 0; manifests
# unchanged or failing; the daemon alive and answering, clean exit; `vmbak verify` not 0 when
# any read failed or the mount refused, never a crash.
# Also, the mount keeps serving what is not damaged:
#   - a flip in an unused page changes nothing: every image reads exactly;
#   - a flip in a page of the chunks or tails database (branch, leaf or overflow) can only
#     hurt the records on that page or below it: the same vault with those records deleted
#     (by tests/fuse/mutate.py delete, records named by key) is mounted too, and every image
#     that reads exactly there must read exactly with the damaged page.
# At most PAGEDAMAGE_SECONDS (150; 0: no limit) of trials, once every class has had one.
# Prints the seed (SEED=... replays; PAGEDAMAGE_ONLY=I runs only trial I) and, for each failing
# trial, the page, its class, the bit, what went wrong; the first 10 failing vaults are kept in
# TESTTMP/fail-I.
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
PPY=$SRCDIR/tests/fuse/pagedamage.py
MPY=$SRCDIR/tests/fuse/mutate.py

COUNT=${PAGEDAMAGE_COUNT:-100}
KEEP=${PAGEDAMAGE_KEEP:-10}
# Seconds after which no new one starts (0: no limit), for make check on a busy machine.
BUDGET=${PAGEDAMAGE_SECONDS:-150}
SEED=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
note "seed $SEED (SEED=$SEED PAGEDAMAGE_COUNT=$COUNT to replay), $COUNT trials"

T=$TESTTMP
V=$T/vault
M=$T/mnt
cd "$T"
two_vm_vault "$V"
"$PY" "$PPY" pages "$V/data.mdb" >pages || fail "cannot walk the pages of '$V/data.mdb'"
mapfile -t classes < <(awk '{ print $1 }' pages | sort -u)
for c in "${classes[@]}"; do
	note "pages $c: $(awk -v c="$c" '$1 == c' pages | wc -l)"
done
mkdir -p "$M"
M=$(_lib_abspath "$M")
echo "fuse $M" >>"$_lib_state"

nfail=0
nkept=0
if [ -n "${PAGEDAMAGE_ONLY:-}" ]; then
	seq_list=$PAGEDAMAGE_ONLY
else
	seq_list=$(seq 0 $((COUNT - 1)))
fi
t0=$SECONDS
done_n=0
for i in $seq_list; do
	# The time budget, once every pair/class has had its turn: a loaded machine runs fewer.
	if [ "$BUDGET" -gt 0 ] && [ $((SECONDS - t0)) -ge "$BUDGET" ] && [ "$done_n" -ge "${#classes[@]}" ]; then
		note "time budget of ${BUDGET} s (PAGEDAMAGE_SECONDS) spent: stopping after $done_n trials"
		break
	fi
	done_n=$((done_n + 1))
	RANDOM=$((SEED + i))
	cls=${classes[$((i % ${#classes[@]}))]}
	n=$(awk -v c="$cls" '$1 == c' pages | wc -l)
	read -r _ pgno ranges keys < <(awk -v c="$cls" '$1 == c' pages |
		sed -n "$((RANDOM % n + 1))p")
	D=$T/dmg
	rm -rf --one-file-system "$D"
	mkdir "$D"
	cp --sparse=always --reflink=auto "$V/data.mdb" "$V/vmbak-vault.json" "$D/"
	desc="$cls $("$PY" "$PPY" flip "$D/data.mdb" "$pgno" "$ranges" "$SEED $i")"
	check_vault "$D" "$M" verify
	bump "outcome-$outcome"
	declare -A got=()
	for k in "${!result[@]}"; do
		got[$k]=${result[$k]}
	done
	# What must still read.
	must=()
	case "$cls" in
	unused)
		mapfile -t must < <(awk '{ print $2 }' images)
		;;
	chunks/* | tails/*)
		R=$T/ref
		rm -rf --one-file-system "$R"
		mkdir "$R"
		cp --sparse=always --reflink=auto "$V/data.mdb" "$V/vmbak-vault.json" "$R/"
		"$PY" "$MPY" delete "$R" "${cls%/*}" "$keys" >/dev/null
		saved=("${probs[@]}")
		check_vault "$R" "$M"
		[ ${#probs[@]} -eq 0 ] ||
			saved+=("the reference (records of the page deleted) fails too: ${probs[*]}")
		for k in "${!result[@]}"; do
			[ "${result[$k]}" = exact ] && must+=("$k")
		done
		probs=("${saved[@]}")
		;;
	esac
	for k in "${must[@]}"; do
		[ "${got[$k]:-}" = exact ] ||
			probs+=("$k: ${got[$k]:-not read} though no page it needs is damaged")
	done
	unset got
	if [ ${#probs[@]} -gt 0 ]; then
		nfail=$((nfail + 1))
		bump "failed-$cls"
		echo "FAIL trial $i (SEED=$SEED PAGEDAMAGE_ONLY=$i): $desc"
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
			*'no page it needs'*) kinds+=(undamaged-not-served) ;;
			*) kinds+=(other-errno-or-timeout) ;;
			esac
		done
		for k in $(printf '%s\n' "${kinds[@]}" | sort -u); do
			bump "fail-$k"
		done
		if [ "$nkept" -lt "$KEEP" ]; then
			mv "$D" "$T/fail-$i"
			echo "$desc" >"$T/fail-$i/DAMAGE"
			nkept=$((nkept + 1))
		fi
	elif [ -n "${PAGEDAMAGE_VERBOSE:-}" ]; then
		echo "ok trial $i ($outcome): $desc"
	fi
done
rm -rf --one-file-system "$T/dmg" "$T/ref"

note "$done_n trials in $((SECONDS - t0)) s (seed $SEED)"
for k in $(printf '%s\n' "${!count[@]}" | sort); do
	note "$k: ${count[$k]}"
done
[ "$nfail" -eq 0 ] || fail "$nfail of $done_n trials failed (SEED=$SEED)"
exit 0
