#!/usr/bin/env bash
# What an ingest certifies: index entries planted by someone without the passphrase (at a
# serial between the base point and the next, in a new lineage) or a base changed while the
# ingest runs must never become part of a new point's committed map. Either the ingest fails
# with one line, or the new point reads exactly its source, or it reads EIO; verify never
# passes over wrong bytes. And a format 1 config put back over an upgraded vault is refused by
# upgrade, not rebuilt from forged format 1 tables. (Found by an adversarial review.)
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_programs
use_test_build
need_cmd cmp dd mdb_dump mdb_load
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
echo 'tamper test passphrase' >pass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
I=$VBK_INSPECT
mkdir mnt

mkdisk() {
	rm -f "$1"
	truncate -s 32768 "$1"
	for i in 0 1 2 3; do
		printf "DATA-CHUNK-%d" "$i" | dd of="$1" bs=4096 seek="$i" conv=notrunc,sync status=none
	done
}

# check VAULT VM IMG WHAT: latest of VM reads IMG exactly or fails; verify not 0 if it fails.
check() {
	local st=0 vst=0
	"$VMBAK" verify "$1" >/dev/null 2>&1 || vst=$?
	vmount "$1" mnt
	cat "mnt/$2/latest/d.img" >got 2>/dev/null || st=$?
	vumount mnt
	if [ "$st" -eq 0 ]; then
		cmp -s got "$3" || fail "$4: the new point reads wrong bytes"
	else
		[ "$vst" -ne 0 ] || fail "$4: reads fail but verify exits 0"
	fi
}

for mode in full changed; do
	note "entries planted between the base and the next point ($mode ingest)"
	rm -rf v
	mkdisk a.img
	expect_status 0 "$VMBAK" init v --chunk-size 4096
	expect_status 0 "$VMBAK" ingest v a --disk d=a.img
	read -r _ S _ L _ _ < <("$I" v a latest d | head -n 1)
	id1=$("$I" v a latest d | awk '$1 == 1 { print $2 }')
	"$I" raw v put idx "$(printf %016x%016x%016x "$L" 5 $((~(S + 1))))" "$id1" ||
		fail "cannot plant an entry"
	"$I" raw v put idx "$(printf %016x%016x%016x "$L" 2 $((~(S + 1))))" ||
		fail "cannot plant a tombstone"
	printf "NEW-DATA-CHUNK-0" | dd of=a.img bs=4096 conv=notrunc,sync status=none
	printf '0 4096\n' >ext
	st=0
	if [ "$mode" = changed ]; then
		"$VMBAK" ingest v a --disk d=a.img --changed d=ext >/dev/null 2>err || st=$?
	else
		"$VMBAK" ingest v a --disk d=a.img >/dev/null 2>err || st=$?
	fi
	[ "$st" -eq 0 ] || [ "$(wc -l <err)" -eq 1 ] || fail "a failed ingest said more than one line"
	check v a a.img "planted entries, $mode"
	# The new point must not be the base either when the ingest said it made one.
	[ "$st" -ne 0 ] || [ "$("$VMBAK" list v --json | grep -c '"id"')" -eq 2 ] ||
		fail "the ingest said it made a point but there is none"
done

note "entries planted in the next lineage before a new VM's first ingest"
rm -rf v
mkdisk a.img
expect_status 0 "$VMBAK" init v --chunk-size 4096
expect_status 0 "$VMBAK" ingest v a --disk d=a.img
read -r _ S _ L _ _ < <("$I" v a latest d | head -n 1)
id1=$("$I" v a latest d | awk '$1 == 1 { print $2 }')
for l in 1 2 3 4 5 6 7 8; do
	for s in 1 2 3 4 5 6 7 8 9 10; do
		"$I" raw v put idx "$(printf %016x%016x%016x $((L + l)) 6 $((~(S + s))))" "$id1"
	done
done
truncate -s 32768 b.img
printf "B-ONLY" | dd of=b.img conv=notrunc,sync status=none
st=0
"$VMBAK" ingest v b --disk d=b.img >/dev/null 2>err || st=$?
if [ "$st" -ne 0 ]; then
	[ "$(wc -l <err)" -eq 1 ] || fail "a refused ingest said more than one line"
	grep -q 'index' err || fail "the refusal does not name the index"
else
	check v b b.img "planted lineage"
fi

note "a base changed while the ingest runs"
rm -rf v
mkdisk a.img
expect_status 0 "$VMBAK" init v --chunk-size 4096
expect_status 0 "$VMBAK" ingest v a --disk d=a.img
read -r _ S _ L _ _ < <("$I" v a latest d | head -n 1)
id1=$("$I" v a latest d | awk '$1 == 1 { print $2 }')
key1=$(printf %016x%016x%016x "$L" 1 $((~S)))
cp a.img a2.img
dd if=/dev/zero of=a2.img bs=4096 seek=1 count=1 conv=notrunc status=none
# Chunk 1's entry gone while the ingest plans, back before it commits.
"$I" raw v del idx "$key1"
VMBAK_TEST_PAUSE_INGEST_COMMIT=$TESTTMP/go "$VMBAK" ingest v a --disk d=a2.img >/dev/null \
	2>err &
pid=$!
for _ in $(seq 100); do
	[ -e go.reached ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
"$I" raw v put idx "$key1" "$id1"
touch go
st=0
wait "$pid" || st=$?
[ "$st" -eq 0 ] || [ "$(wc -l <err)" -eq 1 ] || fail "a failed ingest said more than one line"
# The base is read through its checked map: the missing entry is seen at once.
[ "$st" -ne 0 ] || [ -e go.reached ] || fail "the ingest neither paused nor failed"
[ "$st" -eq 0 ] || grep -q 'damaged' err || fail "the failed ingest does not say the base is damaged"
# Whole again (the entry is back): latest is the new point, or still the base.
check v a "$([ "$st" -eq 0 ] && echo a2.img || echo a.img)" "base changed during the ingest"

note "a format 1 config put back over an upgraded vault"
mkdir fx && tar -C fx -xJf "$SRCDIR/tests/fixtures/vault-v1.tar.xz" v1-aes-256-gcm pass
cp -a fx/v1-aes-256-gcm .
export VMBAK_PASSPHRASE_FILE=$TESTTMP/fx/pass
cp v1-aes-256-gcm/vmbak-vault.json config.v1
expect_status 0 "$VMBAK" upgrade v1-aes-256-gcm
# The old config and old (here: genuine, could be forged) format 1 tables put back.
cp config.v1 v1-aes-256-gcm/vmbak-vault.json
for db in vms rps rpnames lineages; do
	mdb_dump -s "$db" fx/v1-aes-256-gcm | mdb_load -s "$db" v1-aes-256-gcm ||
		fail "cannot put table $db back"
done
# Upgrade keeps the authenticated format 2 database and drops the put-back tables; it never
# rebuilds from them.
expect_status 0 "$VMBAK" upgrade v1-aes-256-gcm
expect_stdout "finished an upgrade"
expect_status 0 "$VMBAK" verify v1-aes-256-gcm
expect_status 0 "$VMBAK" list v1-aes-256-gcm
[ "$(grep -c web1 "$OUT")" -eq 2 ] || fail "the upgraded points are not all there"
mdb_stat -s rps v1-aes-256-gcm >/dev/null 2>&1 && fail "the put-back format 1 table is still there"
# Format 2 tables that do not authenticate under the config are refused, nothing written.
cp config.v1 v1-aes-256-gcm/vmbak-vault.json
for db in vms rps rpnames lineages; do
	mdb_dump -s "$db" fx/v1-aes-256-gcm | mdb_load -s "$db" v1-aes-256-gcm 2>/dev/null
done
"$I" raw v1-aes-256-gcm put meta "$(printf config | od -An -tx1 | tr -d ' \n')" 00112233 ||
	fail "cannot damage meta config"
sum=$(sha256sum v1-aes-256-gcm/data.mdb)
expect_status 1 "$VMBAK" upgrade v1-aes-256-gcm
expect_stderr "format 2 tables"
[ "$(sha256sum v1-aes-256-gcm/data.mdb)" = "$sum" ] || fail "a refused upgrade changed data.mdb"
