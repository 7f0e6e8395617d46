#!/usr/bin/env bash
# Key slots: several passphrases per vault (vmbak key list|add|passwd|remove). Each passphrase
# opens the vault (ingest, list, mount); passwd makes the old passphrase stop working while every
# point stays readable; remove; the last slot stays. Bad input (wrong passphrase, new passphrase
# file missing, empty or absent, names duplicate, unknown or invalid) gives one line, a non-zero
# exit, and leaves the config and data.mdb byte for byte as they were. No key operation ever
# changes data.mdb. A slot renamed or redated in the config no longer opens. A vault of format 2
# from before slots (tests/fixtures/vault-v2-keyobj.tar.xz) opens and converts. Concurrent key
# changes both land. A kill -9 at any moment of a key change leaves a config that the old or the
# new passphrase opens (hook VMBAK_TEST_PAUSE_KEY_WRITE: just before the config is replaced).
. "$SRCDIR/tests/lib.sh"

need_programs
need_cmd python3 sha256sum cmp xz tar
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

for i in 1 2 3 4 5 6 7; do printf 'slot passphrase number %d\n' "$i" >"p$i"; done
: >empty
python3 - <<'PY'
import random
r = random.Random(7)
open("a.img", "wb").write(r.randbytes(40 * 4096) + bytes(24 * 4096) + r.randbytes(7000))
b = bytearray(open("a.img", "rb").read()); b[8192:16384] = r.randbytes(8192)
open("b.img", "wb").write(b)
PY

V=$TESTTMP/v
# state: the sha256 of the config and of data.mdb of $V
state() { sha256sum "$V/vmbak-vault.json" "$V/data.mdb" | awk '{print $1}' | tr '\n' ' '; }
mdb() { sha256sum <"$V/data.mdb"; }
# with N CMD...: runs CMD with passphrase file pN
with() {
	local n=$1
	shift
	VMBAK_PASSPHRASE_FILE=$TESTTMP/p$n "$@"
}
# opens N: passphrase N opens the vault (exit 0) ; opens_not N: it is refused as wrong
opens() { with "$1" expect_status 0 "$VMBAK" list "$V"; }
opens_not() {
	with "$1" expect_status 1 "$VMBAK" list "$V"
	expect_stderr "^vmbak: wrong passphrase for vault"
}
# keyop STATUS CMD...: a key operation; data.mdb is never changed by it, and a failing one
# leaves the config as it was too.
keyop() {
	local want=$1 before mbefore
	shift
	before=$(state)
	mbefore=$(mdb)
	expect_status "$want" "$@"
	[ "$(mdb)" = "$mbefore" ] || fail "'$*' changed data.mdb"
	if [ "$want" -ne 0 ] && [ "$(state)" != "$before" ]; then
		fail "the refused '$*' changed the vault"
	fi
	return 0
}
# slots N: the names of the slots, as key list --json prints them, opened with pN
slots() {
	with "$1" expect_status 0 "$VMBAK" key list "$V" --json
	python3 -c 'import json,sys; print(" ".join(k["name"] for k in json.load(open(sys.argv[1]))))' "$OUT"
}
# readable N: every point of vm1 reads back through a mount opened with pN
readable() {
	local n=$1 mnt=$TESTTMP/mnt$1 ids i=0
	vmount "$V" "$mnt" -o "passphrase_file=$TESTTMP/p$n"
	mapfile -t ids < <(ls "$mnt/vm1" | grep -v latest)
	[ "${#ids[@]}" -eq "${#src[@]}" ] || fail "mount with p$n shows ${#ids[@]} points, not ${#src[@]}"
	for id in "${ids[@]}"; do
		cmp "$mnt/vm1/$id/sda.img" "${src[$i]}" || fail "point $id differs through a mount opened with p$n"
		i=$((i + 1))
	done
	vumount "$mnt"
}

note "init, one slot 'default'"
with 1 expect_status 0 "$VMBAK" init "$V" --chunk-size 4K
with 1 expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=a.img
src=(a.img)
with 1 expect_status 0 "$VMBAK" key list "$V" --json
python3 - "$OUT" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))
assert len(k) == 1 and k[0]["name"] == "default" and k[0]["current"] is True, k
assert len(k[0]["created"]) == 20, k
PY
python3 -c 'import json,sys; k=json.load(open(sys.argv[1]))["keys"]; assert isinstance(k, list) and k[0]["name"] == "default", k' "$V/vmbak-vault.json"
with 1 expect_status 0 "$VMBAK" key list "$V"
expect_stdout '^default +[0-9T:Z-]+ +yes$'

note "add: both passphrases open the vault (ingest, list, mount)"
with 1 keyop 0 "$VMBAK" key add "$V" --new-passphrase-file p2 --name ops
expect_stdout "added key slot 'ops'"
[ "$(slots 2)" = "default ops" ] || fail "slots after add: $(slots 2)"
with 2 expect_status 0 "$VMBAK" key list "$V" --json
python3 -c 'import json,sys; k=json.load(open(sys.argv[1])); assert [x["current"] for x in k] == [False, True], k' "$OUT"
with 2 expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=b.img
src+=(b.img)
opens 1
opens 2
readable 1
readable 2
# Without --name: key-N.
with 2 keyop 0 "$VMBAK" key add "$V" --new-passphrase-file p3
expect_stdout "added key slot 'key-3'"
[ "$(slots 3)" = "default ops key-3" ] || fail "slots: $(slots 3)"

note "passwd: the old passphrase stops working, every point stays readable"
# Without --name: the slot the current passphrase opened (ops, through p2).
with 2 keyop 0 "$VMBAK" key passwd "$V" --new-passphrase-file p4
expect_stdout "key slot 'ops'"
opens_not 2
opens 4
opens 1
readable 4
# With --name: another slot than the one that opened.
with 4 keyop 0 "$VMBAK" key passwd "$V" --new-passphrase-file p5 --name default
opens_not 1
opens 5
readable 5
with 5 expect_status 0 "$VMBAK" verify "$V"
[ "$(slots 5)" = "default ops key-3" ] || fail "passwd changed the slots: $(slots 5)"

note "bad input: one line, non-zero exit, config and data.mdb unchanged"
with 6 keyop 1 "$VMBAK" key add "$V" --new-passphrase-file p7 --name x
expect_stderr "wrong passphrase"
with 6 keyop 1 "$VMBAK" key passwd "$V" --new-passphrase-file p7
expect_stderr "wrong passphrase"
with 6 keyop 1 "$VMBAK" key remove "$V" ops
expect_stderr "wrong passphrase"
with 5 keyop 2 "$VMBAK" key add "$V" --name x
expect_stderr "missing --new-passphrase-file"
with 5 keyop 2 "$VMBAK" key passwd "$V"
expect_stderr "missing --new-passphrase-file"
with 5 keyop 1 "$VMBAK" key add "$V" --new-passphrase-file empty --name x
expect_stderr "empty passphrase from file"
with 5 keyop 1 "$VMBAK" key add "$V" --new-passphrase-file "$TESTTMP/no-such-file" --name x
expect_stderr "no-such-file.*No such file"
with 5 keyop 1 "$VMBAK" key passwd "$V" --new-passphrase-file "$TESTTMP/no-such-file"
with 5 keyop 2 "$VMBAK" key add "$V" --new-passphrase-file '' --name x
with 5 keyop 1 "$VMBAK" key add "$V" --new-passphrase-file p6 --name ops
expect_stderr "already has a key slot named 'ops'"
with 5 keyop 1 "$VMBAK" key add "$V" --new-passphrase-file p5 --name x
expect_stderr "new passphrase is the one that opens key slot 'default'"
with 5 keyop 1 "$VMBAK" key passwd "$V" --new-passphrase-file p6 --name nobody
expect_stderr "no key slot named 'nobody'"
with 5 keyop 1 "$VMBAK" key remove "$V" nobody
expect_stderr "no key slot named 'nobody'"
long=$(printf 'n%.0s' $(seq 65))
for bad in '' .hidden 'a b' a/b "$long" 'x=y' $'a\nb'; do
	with 5 keyop 2 "$VMBAK" key add "$V" --new-passphrase-file p6 --name "$bad"
	expect_stderr "key slot name"
	with 5 keyop 2 "$VMBAK" key remove "$V" "$bad"
	expect_stderr "key slot name"
done
with 5 keyop 2 "$VMBAK" key add "$V" --passphrase secret --new-passphrase-file p6
expect_stderr "no --passphrase option"
grep -q secret "$ERR" && fail "a passphrase given on the command line was printed"
with 5 keyop 2 "$VMBAK" key add "$V" --new-passphrase-file p6 --json
with 5 keyop 2 "$VMBAK" key remove "$V" --name ops
with 5 keyop 2 "$VMBAK" key list "$V" extra
with 5 keyop 2 "$VMBAK" key rename "$V" ops
with 5 keyop 2 "$VMBAK" key
unset VMBAK_PASSPHRASE_FILE
keyop 2 "$VMBAK" key remove "$V" ops </dev/null
expect_stderr "no passphrase for vault"
with 5 expect_status 1 "$VMBAK" key list "$TESTTMP/no-vault"
with 5 expect_status 0 "$VMBAK" init "$TESTTMP/plain" --encryption none
with 5 expect_status 1 "$VMBAK" key add "$TESTTMP/plain" --new-passphrase-file p6
expect_stderr "not encrypted"
[ -e "$TESTTMP/plain/vmbak-vault.lock" ] && fail "a refused key change made a lock file"
with 5 expect_status 1 "$VMBAK" key list "$TESTTMP/plain"
expect_stderr "not encrypted"

note "remove; the last slot stays"
with 4 keyop 0 "$VMBAK" key remove "$V" key-3
expect_stdout "removed key slot 'key-3'"
opens_not 3
# The slot that opened may go too, while another is left.
with 4 keyop 0 "$VMBAK" key remove "$V" ops
opens_not 4
[ "$(slots 5)" = "default" ] || fail "slots after remove: $(slots 5)"
with 5 keyop 1 "$VMBAK" key remove "$V" default
expect_stderr "cannot remove key slot 'default'.*last one"
opens 5
readable 5

note "a slot renamed or redated in the config no longer opens"
with 5 keyop 0 "$VMBAK" key add "$V" --new-passphrase-file p6 --name second
cp "$V/vmbak-vault.json" config.good
for how in rename redate swap; do
	python3 - "$V/vmbak-vault.json" "$how" <<'PY'
import json, sys
path, how = sys.argv[1], sys.argv[2]
c = json.load(open(path))
k = c["keys"]
if how == "rename":
    k[1]["name"] = "renamed"
elif how == "redate":
    k[1]["created"] = "2001-01-01T00:00:00Z"
else:
    k[0]["name"], k[1]["name"] = k[1]["name"], k[0]["name"]
json.dump(c, open(path, "w"), indent=1)
PY
	opens_not 6
	[ "$how" = swap ] && opens_not 5
	cp config.good "$V/vmbak-vault.json"
done
opens 6
python3 - "$V/vmbak-vault.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["keys"].append(dict(c["keys"][0]))
json.dump(c, open(path, "w"), indent=1)
PY
with 5 expect_status 1 "$VMBAK" list "$V"
expect_stderr "two key slots named 'default'"
cp config.good "$V/vmbak-vault.json"

note "concurrent key changes both land"
with 5 "$VMBAK" key add "$V" --new-passphrase-file p1 --name c1 >c1.out 2>&1 &
pid1=$!
with 6 "$VMBAK" key add "$V" --new-passphrase-file p2 --name c2 >c2.out 2>&1 &
pid2=$!
wait "$pid1" || { cat c1.out; fail "the first of two concurrent key adds failed"; }
wait "$pid2" || { cat c2.out; fail "the second of two concurrent key adds failed"; }
# In either order: whichever took the lock second re-read the config with the other's slot.
case "$(slots 1)" in
"default second c1 c2" | "default second c2 c1") ;;
*) fail "concurrent adds: slots are $(slots 1)" ;;
esac
opens 2
with 1 keyop 0 "$VMBAK" key remove "$V" c1
with 2 keyop 0 "$VMBAK" key remove "$V" c2

note "kill -9 in the middle of a key change"
# The pause hook exists only in the test build (make fault), from here on.
use_test_build
# Held just before the config is replaced (the lock held, the new slots wrapped).
mb=$(mdb)
cp "$V/vmbak-vault.json" config.before
VMBAK_TEST_PAUSE_KEY_WRITE=$TESTTMP/go VMBAK_PASSPHRASE_FILE=$TESTTMP/p5 \
	"$VMBAK" key passwd "$V" --new-passphrase-file p7 >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 600; i++)); do [ -e go.reached ] && break; sleep 0.05; done
[ -e go.reached ] || fail "the key change never reached its pause"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
cmp -s config.before "$V/vmbak-vault.json" || fail "a key change killed before its write changed the config"
opens 5
opens_not 7
# The lock died with the process: the next key change goes through.
with 5 keyop 0 "$VMBAK" key passwd "$V" --new-passphrase-file p7
opens 7
opens_not 5
# Killed at random instants: the config is always the old one or the new one.
cur=7 other=5 done=0
for round in $(seq 12); do
	VMBAK_PASSPHRASE_FILE=$TESTTMP/p$cur "$VMBAK" key passwd "$V" --name default \
		--new-passphrase-file "p$other" >/dev/null 2>&1 &
	pid=$!
	sleep "0.$(printf '%02d' $((RANDOM % 60)))"
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$V/vmbak-vault.json" ||
		fail "round $round: the config is not whole JSON after a kill -9"
	if with "$other" "$VMBAK" list "$V" >/dev/null 2>&1; then
		t=$cur cur=$other other=$t done=$((done + 1))
	fi
	opens "$cur"
	opens_not "$other"
	[ "$(slots "$cur")" = "default second" ] || fail "round $round: slots are $(slots "$cur")"
done
note "$done of 12 killed key changes had replaced the config"
[ "$(mdb)" = "$mb" ] || fail "the killed key changes changed data.mdb"
rm -f "$V"/vmbak-vault.json.tmp.*
readable "$cur"
with "$cur" expect_status 0 "$VMBAK" verify "$V"

note "up to 32 slots"
with "$cur" expect_status 0 "$VMBAK" init "$TESTTMP/many" --chunk-size 4K
for i in $(seq 2 32); do
	printf 'many %d\n' "$i" >"m$i"
	with "$cur" expect_status 0 "$VMBAK" key add "$TESTTMP/many" --new-passphrase-file "m$i"
done
with "$cur" expect_status 1 "$VMBAK" key add "$TESTTMP/many" --new-passphrase-file p1
expect_stderr "32 key slots"
# The last slot's passphrase opens too (every slot tried).
VMBAK_PASSPHRASE_FILE=$TESTTMP/m32 expect_status 0 "$VMBAK" list "$TESTTMP/many"

note "a format 2 vault from before key slots"
tar -xJf "$SRCDIR/tests/fixtures/vault-v2-keyobj.tar.xz"
V=$TESTTMP/v2-keyobj
cp pass p0
python3 -c 'import json,sys; assert isinstance(json.load(open(sys.argv[1]))["keys"], dict)' "$V/vmbak-vault.json"
opens 0
with 0 expect_status 0 "$VMBAK" key list "$V" --json
python3 -c 'import json,sys; k=json.load(open(sys.argv[1])); assert [x["name"] for x in k] == ["default"] and k[0]["current"], k' "$OUT"
with 0 keyop 1 "$VMBAK" key add "$V" --new-passphrase-file p1 --name default
with 0 keyop 0 "$VMBAK" key add "$V" --new-passphrase-file p1 --name second
python3 -c 'import json,sys; k=json.load(open(sys.argv[1]))["keys"]; assert [x["name"] for x in k] == ["default", "second"], k' "$V/vmbak-vault.json"
opens 0
opens 1
src=(k.img)
mkdir -p fxm
vmount "$V" fxm -o "passphrase_file=$TESTTMP/p1"
cmp fxm/web1/latest/os.img k.img || fail "the converted vault's point differs"
vumount fxm
with 1 expect_status 0 "$VMBAK" verify "$V"
note "ok"
