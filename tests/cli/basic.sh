#!/usr/bin/env bash
# tests/cli/basic.sh: init, ingest, list, info as a user runs them.
#
# Vaults unencrypted and encrypted (passphrase from a file option, the global option and both
# environment variables), an ingest of small disks with data, zeros and a hole, list and
# list --json (parsed with python3), info and info --json, two ingests within a second getting
# distinct ids that sort, a wrong passphrase, and list/info of an encrypted vault without any
# passphrase. Runs with VMBAK and TESTTMP from the runner, or by hand (tests/lib.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_programs
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
ID_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z(-[0-9]+)?$'

# Disks: sda has random data, zeros and a hole, and a size that is not a multiple of 64K or of
# 512; sdb is a second copy of sda's data (dedup), 2 MiB.
head -c 200000 /dev/urandom >"$T/sda.img"
head -c 131072 /dev/zero >>"$T/sda.img"
truncate -s 3000001 "$T/sda.img"
printf 'tail' >>"$T/sda.img"
SDA_SIZE=$(stat -c %s "$T/sda.img")
head -c 200000 "$T/sda.img" >"$T/sdb.img"
truncate -s 2M "$T/sdb.img"
echo 'correct horse battery staple' >"$T/pass"
echo 'Tr0ub4dor&3' >"$T/wrong"

# --- an unencrypted vault
V=$T/plain
expect_ok "$VMBAK" init "$V" --encryption none
grep -q 'vault created' "$OUT" || fail "init says nothing"
[ -f "$V/vmbak-vault.json" ] || fail "no config in the new vault"

# An empty vault lists nothing.
expect_ok "$VMBAK" list "$V"
[ "$(wc -l <"$OUT")" -eq 1 ] || fail "empty vault: list is not just a header"
grep -q '^VM  *ID  *DISKS  *SIZE  *RETAIN' "$OUT" || fail "list header"
expect_ok "$VMBAK" list "$V" --json
expect_json 'assert d == [], d'
expect_ok "$VMBAK" info "$V" --json
expect_json 'assert d["points"] == 0 and d["vms"] == 0 and d["encryption"] == "none", d
assert d["chunk_size"] == 65536 and d["format_version"] == 2, d'

expect_ok "$VMBAK" ingest "$V" vm1 --disk sda="$T/sda.img" --disk sdb="$T/sdb.img"
[ "$(wc -l <"$OUT")" -ge 2 ] || fail "ingest prints no summary line"
grep -q '^vm1: 2 disks' "$OUT" || fail "ingest summary"
ID1=$(tail -n 1 "$OUT")
[[ $ID1 =~ $ID_RE ]] || fail "ingest: last line '$ID1' is not a point id"

expect_ok "$VMBAK" list "$V"
[ "$(wc -l <"$OUT")" -eq 2 ] || fail "list: one point expected"
grep -Eq "^vm1  +$ID1  +2  +" "$OUT" || fail "list: no row for $ID1"
# Options after or before the arguments.
expect_ok "$VMBAK" list --json "$V"
cp "$OUT" "$T/list1.json"
expect_ok "$VMBAK" list "$V" vm1 --json
cmp -s "$OUT" "$T/list1.json" || fail "list --json VAULT and VAULT VM --json differ"
expect_json '
id1, size = sys.argv[2], int(sys.argv[3])
assert isinstance(d, list) and len(d) == 1, d
p = d[0]
assert p["vm"] == "vm1" and p["id"] == id1, p
assert isinstance(p["serial"], int), p
assert isinstance(p["created"], str) and p["created"].endswith("Z"), p
assert p["retain_until"] is None and p["parent"] is None and p["escrow"] == [], p
names = [x["name"] for x in p["disks"]]
assert names == ["sda", "sdb"], names
sda, sdb = p["disks"]
assert type(sda["size"]) is int and sda["size"] == size, sda
assert sdb["size"] == 2 * 1024 * 1024, sdb
assert 0 < sda["data_bytes"] <= sda["size"], sda
' "$ID1" "$SDA_SIZE"

# The same data again, for another VM: nothing new is stored.
expect_ok "$VMBAK" ingest "$V" vm2 --disk sdb="$T/sdb.img" --retain-until "$(date -u -d '+1 year' +%F)"
grep -q '^vm2: 1 disk, 2.0 MiB, .* 0 new chunks' "$OUT" || fail "no dedup across VMs"
ID_VM2=$(tail -n 1 "$OUT")
expect_ok "$VMBAK" list "$V" vm2 --json
expect_json 'assert d[0]["retain_until"].startswith(sys.argv[2]), d' "$(date -u -d '+1 year' +%F)"
expect_ok "$VMBAK" info "$V" vm2 --json
expect_json 'assert d["id"] == sys.argv[2], d' "$ID_VM2"
expect_ok "$VMBAK" list "$V" vm2
grep -q "$(date -u -d '+1 year' +%F)" "$OUT" || fail "list: no RETAIN date"

# Two ingests of one VM within a second get distinct ids that sort by time. Try a few times to
# land both in the same second; distinct and sorted is required either way.
same=0
for _ in 1 2 3 4 5; do
	expect_ok "$VMBAK" ingest "$V" vm3 --disk sda="$T/sdb.img"
	a=$(tail -n 1 "$OUT")
	expect_ok "$VMBAK" ingest "$V" vm3 --disk sda="$T/sdb.img"
	b=$(tail -n 1 "$OUT")
	[[ $a =~ $ID_RE && $b =~ $ID_RE ]] || fail "ids '$a' '$b'"
	[ "$a" != "$b" ] || fail "two ingests gave the same id '$a'"
	[[ $a < $b ]] || fail "ids do not sort by time: '$a' then '$b'"
	if [ "${a:0:20}" = "${b:0:20}" ]; then
		same=1
		break
	fi
done
[ "$same" -eq 1 ] || echo "# note: no two ingests landed in the same second"
expect_ok "$VMBAK" list "$V" vm3 --json
expect_json '
ids = [p["id"] for p in d]
assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
assert d[-1]["id"] == sys.argv[2] and d[-1]["parent"] == d[-2]["id"], d[-2:]
' "$b"

# info: the vault, a point, the latest point.
expect_ok "$VMBAK" info "$V"
for w in 'uuid:' 'encryption: *none' 'chunk size: *64.0 KiB' 'dedup ratio:' \
	'compression ratio:' 'VMs: *3'; do
	grep -Eq "$w" "$OUT" || fail "info: no '$w'"
done
expect_ok "$VMBAK" list "$V" --json
npoints=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$OUT")
expect_ok "$VMBAK" info "$V" --json
expect_json '
assert d["vms"] == 3 and d["points"] == int(sys.argv[2]), d
for k in ("chunks", "chunk_bytes", "chunk_raw_bytes", "logical_bytes", "data_bytes",
          "file_bytes", "free_bytes"):
    assert type(d[k]) is int and d[k] >= 0, k
assert d["chunks"] > 0 and d["logical_bytes"] >= d["data_bytes"] > 0, d
assert d["dedup_ratio"] > 1, d
' "$npoints"
expect_ok "$VMBAK" info "$V" "vm1/$ID1"
grep -q "^point: *$ID1" "$OUT" || fail "info VM/RP: no point line"
grep -Eq '^sda +2.9 MiB' "$OUT" || fail "info VM/RP: no row for sda"
expect_ok "$VMBAK" info "$V" "vm1/$ID1" --json
expect_json '
assert d["vm"] == "vm1" and d["id"] == sys.argv[2], d
sda = d["disks"][0]
assert sda["name"] == "sda" and sda["size"] == int(sys.argv[3]), sda
assert sda["read_bytes"] > 0 and sda["new_chunks"] > 0 and sda["new_bytes"] > 0, sda
' "$ID1" "$SDA_SIZE"
expect_ok "$VMBAK" info "$V" vm3 --json
expect_json 'assert d["id"] == sys.argv[2], d' "$b"
expect_ok "$VMBAK" info "$V" vm3/latest --json
expect_json 'assert d["id"] == sys.argv[2], d' "$b"

# --progress: progress on stderr, the id still the last line of stdout.
expect_status 0 "$VMBAK" --progress ingest "$V" vm1 --disk sda="$T/sda.img" --disk sdb="$T/sdb.img"
[[ $(tail -n 1 "$OUT") =~ $ID_RE ]] || fail "--progress: id not last on stdout"
grep -q '%' "$ERR" || fail "--progress: no percentage on stderr"
[ -z "$(tail -c 1 "$ERR")" ] || fail "--progress: no final newline"
# Without it, and stderr not a terminal, nothing on stderr.
expect_ok "$VMBAK" ingest "$V" vm1 --disk sda="$T/sda.img" --threads 1

# --- encrypted vaults: passphrase from each source
E=$T/enc
expect_ok "$VMBAK" init "$E" --passphrase-file "$T/pass" --chunk-size 4K
grep -q 'aes-256-gcm' "$OUT" || fail "init: encryption not said"
if grep -rq 'correct horse' "$E"; then
	fail "the passphrase is stored in the vault"
fi
expect_ok "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img" --passphrase-file "$T/pass"
E1=$(tail -n 1 "$OUT")
expect_ok "$VMBAK" --passphrase-file "$T/pass" ingest "$E" vm1 --disk sda="$T/sda.img"
expect_ok env VMBAK_PASSPHRASE_FILE="$T/pass" "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img"
expect_ok env VMBAK_PASSPHRASE='correct horse battery staple' "$VMBAK" ingest "$E" vm1 \
	--disk sda="$T/sda.img"
# The option wins over the environment.
expect_ok env VMBAK_PASSPHRASE_FILE="$T/wrong" "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img" \
	--passphrase-file "$T/pass"

# A wrong passphrase: exit 1, one line, nothing added.
expect_status 1 "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img" --passphrase-file "$T/wrong"
grep -q "^vmbak: wrong passphrase for vault '$E'$" "$ERR" || fail "wrong passphrase message"
grep -q 'Tr0ub4dor' "$ERR" && fail "a passphrase in a message"
expect_status 1 env VMBAK_PASSPHRASE_FILE="$T/wrong" "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img"
grep -q 'wrong passphrase' "$ERR" || fail "wrong passphrase message (environment)"

# Every record is sealed: list and info of an encrypted vault need the passphrase too, and
# nothing of it (VM names, point ids) is in the vault's files in clear.
expect_status 2 "$VMBAK" list "$E" --json
grep -q 'no passphrase' "$ERR" || fail "list without a passphrase: wrong message"
expect_ok "$VMBAK" --passphrase-file "$T/pass" list "$E" --json
expect_json 'assert len(d) == 5 and d[0]["id"] == sys.argv[2], d' "$E1"
expect_ok "$VMBAK" --passphrase-file "$T/pass" info "$E" --json
expect_json 'assert d["encryption"] == "aes-256-gcm" and d["chunk_size"] == 4096, d'
expect_ok "$VMBAK" --passphrase-file "$T/pass" info "$E" "vm1/$E1"
if grep -qa -e 'vm1' -e "$E1" "$E/data.mdb"; then
	fail "a VM name or point id is readable in the encrypted vault's files"
fi

# init from the environment, and with the global option.
expect_ok env VMBAK_PASSPHRASE='another one' "$VMBAK" init "$T/enc2"
expect_ok env VMBAK_PASSPHRASE_FILE="$T/pass" "$VMBAK" init "$T/enc3"
expect_ok "$VMBAK" --passphrase-file "$T/pass" init "$T/enc4"
expect_ok env VMBAK_PASSPHRASE='another one' "$VMBAK" ingest "$T/enc2" vm1 --disk sda="$T/sdb.img"
expect_status 1 "$VMBAK" ingest "$T/enc2" vm1 --disk sda="$T/sdb.img" --passphrase-file "$T/pass"
grep -q 'wrong passphrase' "$ERR" || fail "wrong passphrase message (enc2)"
# An existing empty directory becomes a vault.
mkdir -m 0777 "$T/emptydir"
expect_ok "$VMBAK" init "$T/emptydir" --encryption none --chunk-size 1M
[ "$(stat -c %a "$T/emptydir")" = 700 ] || fail "init left an empty 0777 directory open to all"
expect_ok "$VMBAK" info "$T/emptydir" --json
expect_json 'assert d["chunk_size"] == 1048576, d'

# The installed programs have no test hooks: no environment variable sets a point's time or
# makes a command stop (those live in the test build only, make fault).
if grep -qa 'VMBAK_TEST_' "$VMBAK" "$VMBAKFS"; then
	fail "a test hook is compiled into the release programs"
fi
expect_ok env VMBAK_TEST_NOW=86400 "$VMBAK" ingest "$T/emptydir" vm9 --disk sda="$T/sda.img"
tail -n 1 "$OUT" | grep -q '^1970' && fail "VMBAK_TEST_NOW changed a release ingest's time"

echo "# basic: ok"
