#!/usr/bin/env bash
# vmbak rewrap under fault injection (the test build, make fault; see tests/cli/faults.sh): with
# the Nth allocation, write, fsync, LMDB put or LMDB commit failing, a rewrap ends cleanly (exit
# 0, or 1 with one line), and afterwards every escrow blob still unwraps (a point's blobs are
# never neither old nor new), both blobs of a two-disk point are under the same KEK version (one
# commit per point), the key vault's audit log verifies, and a second, clean rewrap finishes.
. "$SRCDIR/tests/lib.sh"

need_cmd python3
need_programs
FVMBAK=${VMBAK_TB:-$(dirname "$VMBAK")-fault/vmbak}
if [ ! -x "$FVMBAK" ]; then
	[ "${CI:-}" = true ] && fail "'$FVMBAK' is not built (make fault)"
	skip "'$FVMBAK' is not built (make fault)"
fi
if [ -n "${ASAN_OPTIONS:-}${UBSAN_OPTIONS:-}" ]; then
	MAX=${FAULT_MAX:-4}
else
	MAX=${FAULT_MAX:-10}
fi
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE VMBAK_FAULT VMBAK_FAULT_COUNT
printf 'key vault passphrase\n' >kvpass
export VMBAK_KEYVAULT_PASSPHRASE_FILE=$TESTTMP/kvpass

printf 'secret a' >sa
printf 'secret b' >sb
truncate -s 256K d1.img d2.img
mkdir ref
"$VMBAK" init ref/v --encryption none >/dev/null
"$VMBAK" keyvault init ref/kv >/dev/null
"$VMBAK" keyvault key create ref/kv k --type aes-256 >/dev/null
"$VMBAK" keyvault secret set ref/kv sa --value-file sa --kek k >/dev/null
"$VMBAK" keyvault secret set ref/kv sb --value-file sb --kek k >/dev/null
for i in 1 2 3; do
	"$VMBAK" ingest ref/v vm1 --disk a=d1.img --disk b=d2.img --keyvault ref/kv \
		--escrow a=sa --escrow b=sb </dev/null >/dev/null
done
"$VMBAK" ingest ref/v vm2 --disk a=d1.img --keyvault ref/kv --escrow a=sa </dev/null >/dev/null
"$VMBAK" keyvault key rotate ref/kv k >/dev/null

fresh() {
	rm -rf w
	cp -a ref w
}

# check WHAT: the state of w/ after a rewrap that may have failed.
check() {
	local what=$1 st=0
	"$VMBAK" verify w/v --keyvault w/kv >verify.out 2>&1 || st=$?
	[ "$st" -eq 0 ] || { cat verify.out; fail "$what: a blob no longer unwraps (verify: $st)"; }
	python3 - verify.out <<'EOF' || fail "$what: a point's blobs are under different versions"
import re, sys
seen = {}
for line in open(sys.argv[1]):
    m = re.match(r"^(\S+) (\S+): escrow ok \(secret '\S+' version 1, key 'k' version (\d)\)$", line)
    if m:
        seen.setdefault(m.group(1), set()).add(m.group(3))
assert len(seen) == 4, seen
for p, v in seen.items():
    assert len(v) == 1, (p, v)
EOF
	st=0
	"$VMBAK" keyvault audit w/kv >audit.out 2>&1 || st=$?
	[ "$st" -eq 0 ] || { tail -n 3 audit.out; fail "$what: the audit log does not verify ($st)"; }
	"$VMBAK" rewrap w/v --keyvault w/kv >rewrap.out 2>&1 ||
		{ cat rewrap.out; fail "$what: the rewrap after it failed"; }
	"$VMBAK" verify w/v --keyvault w/kv >verify.out 2>&1 ||
		{ cat verify.out; fail "$what: verify after the second rewrap failed"; }
	[ "$(grep -c "key 'k' version 2)" verify.out)" = 7 ] ||
		{ cat verify.out; fail "$what: the second rewrap did not finish the job"; }
}

pick() {
	local c=$1 m=$2
	if [ "$c" -le "$m" ]; then
		seq 1 "$c"
	else
		python3 -c "import random,sys; c,m=int(sys.argv[1]),int(sys.argv[2]); r=random.Random(7)
s={1,c}|set(r.sample(range(2,c),m-2)); print('\n'.join(map(str,sorted(s))))" "$c" "$m"
	fi
}

fresh
VMBAK_FAULT_COUNT=$TESTTMP/counts "$FVMBAK" rewrap w/v --keyvault w/kv >"$OUT" 2>"$ERR" ||
	{ cat "$ERR"; fail "the clean rewrap failed"; }
check "the clean run"
runs=0 failed=0
for kind in alloc write fsync mdb_put commit; do
	c=$(awk -v k="$kind" '$1 == k { print $2 }' counts)
	for n in $(pick "${c:-0}" "$MAX"); do
		fresh
		st=0
		VMBAK_FAULT=$kind:$n "$FVMBAK" rewrap w/v --keyvault w/kv >"$OUT" 2>"$ERR" || st=$?
		what="rewrap with $kind:$n of $c failing"
		runs=$((runs + 1))
		if [ "$st" -ge 124 ] || grep -Eq 'Sanitizer|runtime error|core dumped' "$ERR"; then
			cat "$ERR"
			fail "$what: crashed ($st)"
		fi
		if [ "$st" -ne 0 ]; then
			failed=$((failed + 1))
			if [ "$st" -ne 1 ] || [ "$(wc -l <"$ERR")" -ne 1 ] || ! grep -q '^vmbak: ' "$ERR"
			then
				cat "$ERR"
				fail "$what: exit status $st, expected 1 and one line 'vmbak: ...'"
			fi
		elif [ -s "$ERR" ] && ! grep -q '^vmbak: warning: ' "$ERR"; then
			cat "$ERR"
			fail "$what: succeeded with an error message"
		fi
		check "$what"
	done
done
note "$runs faulty rewraps, $failed failed cleanly, the others handled the fault"
