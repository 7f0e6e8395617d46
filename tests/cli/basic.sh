#!/usr/bin/env bash
# tests/cli/basic.sh: init, ingest, list, info as a user runs them.
#
# Vaults unencrypted and encrypted (passphrase from a file option, the global option and both
# environment variables), an ingest of small disks with data, zeros and a hole, list and
# list --json (parsed with python3), info and info --json, two ingests within a second getting
# distinct ids that sort, a wrong passphrase, and list/info of an encrypted vault without any
# passphrase. Runs with VMBAK and TESTTMP from the runner, or by hand.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -f "$here/../lib.sh" ]; then
	# shellcheck source=/dev/null
	. "$here/../lib.sh"
fi
VMBAK=${VMBAK:-$here/../../build/vmbak}
if [ -z "${TESTTMP:-}" ]; then
	TESTTMP=$(mktemp -d "${TMPDIR:-/tmp}/vmbak-basic.XXXXXX")
	trap 'rm -rf "$TESTTMP"' EXIT
fi
[ -x "$VMBAK" ] || { echo "FAIL: no program at '$VMBAK'" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3, which is not installed"; exit 77; }
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
ID_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z(-[0-9]+)?$'

b_fail() {
	echo "FAIL: $*" >&2
	for f in "$T/out" "$T/err"; do
		[ -f "$f" ] && { echo "--- $(basename "$f"):"; head -c 3000 "$f"; } >&2
	done
	exit 1
}

# b_run STATUS CMD...: runs CMD (stdin /dev/null) into $T/out and $T/err, checks its status.
b_run() {
	local want=$1 st=0
	shift
	"$@" </dev/null >"$T/out" 2>"$T/err" || st=$?
	[ "$st" -eq "$want" ] || b_fail "exit $st, expected $want: $*"
	if [ "$want" -ne 0 ]; then
		[ "$(wc -l <"$T/err")" -eq 1 ] || b_fail "not exactly one line on stderr: $*"
	fi
	return 0
}

# b_ok CMD...: CMD succeeds and prints nothing on stderr.
b_ok() {
	b_run 0 "$@"
	[ ! -s "$T/err" ] || b_fail "stderr not empty: $*"
}

# b_py CODE: python3 with the JSON of $T/out as `d`; CODE asserts.
b_py() {
	python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$1" "$T/out" "${@:2}" || b_fail "JSON check failed: $1"
}

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
b_ok "$VMBAK" init "$V" --encryption none
grep -q 'vault created' "$T/out" || b_fail "init says nothing"
[ -f "$V/vmbak-vault.json" ] || b_fail "no config in the new vault"

# An empty vault lists nothing.
b_ok "$VMBAK" list "$V"
[ "$(wc -l <"$T/out")" -eq 1 ] || b_fail "empty vault: list is not just a header"
grep -q '^VM  *ID  *DISKS  *SIZE  *RETAIN' "$T/out" || b_fail "list header"
b_ok "$VMBAK" list "$V" --json
b_py 'assert d == [], d'
b_ok "$VMBAK" info "$V" --json
b_py 'assert d["points"] == 0 and d["vms"] == 0 and d["encryption"] == "none", d
assert d["chunk_size"] == 65536 and d["format_version"] == 2, d'

b_ok "$VMBAK" ingest "$V" vm1 --disk sda="$T/sda.img" --disk sdb="$T/sdb.img"
[ "$(wc -l <"$T/out")" -ge 2 ] || b_fail "ingest prints no summary line"
grep -q '^vm1: 2 disks' "$T/out" || b_fail "ingest summary"
ID1=$(tail -n 1 "$T/out")
[[ $ID1 =~ $ID_RE ]] || b_fail "ingest: last line '$ID1' is not a point id"

b_ok "$VMBAK" list "$V"
[ "$(wc -l <"$T/out")" -eq 2 ] || b_fail "list: one point expected"
grep -Eq "^vm1  +$ID1  +2  +" "$T/out" || b_fail "list: no row for $ID1"
# Options after or before the arguments.
b_ok "$VMBAK" list --json "$V"
cp "$T/out" "$T/list1.json"
b_ok "$VMBAK" list "$V" vm1 --json
cmp -s "$T/out" "$T/list1.json" || b_fail "list --json VAULT and VAULT VM --json differ"
b_py '
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
b_ok "$VMBAK" ingest "$V" vm2 --disk sdb="$T/sdb.img" --retain-until "$(date -u -d '+1 year' +%F)"
grep -q '^vm2: 1 disk, 2.0 MiB, .* 0 new chunks' "$T/out" || b_fail "no dedup across VMs"
ID_VM2=$(tail -n 1 "$T/out")
b_ok "$VMBAK" list "$V" vm2 --json
b_py 'assert d[0]["retain_until"].startswith(sys.argv[2]), d' "$(date -u -d '+1 year' +%F)"
b_ok "$VMBAK" info "$V" vm2 --json
b_py 'assert d["id"] == sys.argv[2], d' "$ID_VM2"
b_ok "$VMBAK" list "$V" vm2
grep -q "$(date -u -d '+1 year' +%F)" "$T/out" || b_fail "list: no RETAIN date"

# Two ingests of one VM within a second get distinct ids that sort by time. Try a few times to
# land both in the same second; distinct and sorted is required either way.
same=0
for _ in 1 2 3 4 5; do
	b_ok "$VMBAK" ingest "$V" vm3 --disk sda="$T/sdb.img"
	a=$(tail -n 1 "$T/out")
	b_ok "$VMBAK" ingest "$V" vm3 --disk sda="$T/sdb.img"
	b=$(tail -n 1 "$T/out")
	[[ $a =~ $ID_RE && $b =~ $ID_RE ]] || b_fail "ids '$a' '$b'"
	[ "$a" != "$b" ] || b_fail "two ingests gave the same id '$a'"
	[[ $a < $b ]] || b_fail "ids do not sort by time: '$a' then '$b'"
	if [ "${a:0:20}" = "${b:0:20}" ]; then
		same=1
		break
	fi
done
[ "$same" -eq 1 ] || echo "# note: no two ingests landed in the same second"
b_ok "$VMBAK" list "$V" vm3 --json
b_py '
ids = [p["id"] for p in d]
assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
assert d[-1]["id"] == sys.argv[2] and d[-1]["parent"] == d[-2]["id"], d[-2:]
' "$b"

# info: the vault, a point, the latest point.
b_ok "$VMBAK" info "$V"
for w in 'uuid:' 'encryption: *none' 'chunk size: *64.0 KiB' 'dedup ratio:' \
	'compression ratio:' 'VMs: *3'; do
	grep -Eq "$w" "$T/out" || b_fail "info: no '$w'"
done
b_ok "$VMBAK" list "$V" --json
npoints=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")
b_ok "$VMBAK" info "$V" --json
b_py '
assert d["vms"] == 3 and d["points"] == int(sys.argv[2]), d
for k in ("chunks", "chunk_bytes", "chunk_raw_bytes", "logical_bytes", "data_bytes",
          "file_bytes", "free_bytes"):
    assert type(d[k]) is int and d[k] >= 0, k
assert d["chunks"] > 0 and d["logical_bytes"] >= d["data_bytes"] > 0, d
assert d["dedup_ratio"] > 1, d
' "$npoints"
b_ok "$VMBAK" info "$V" "vm1/$ID1"
grep -q "^point: *$ID1" "$T/out" || b_fail "info VM/RP: no point line"
grep -Eq '^sda +2.9 MiB' "$T/out" || b_fail "info VM/RP: no row for sda"
b_ok "$VMBAK" info "$V" "vm1/$ID1" --json
b_py '
assert d["vm"] == "vm1" and d["id"] == sys.argv[2], d
sda = d["disks"][0]
assert sda["name"] == "sda" and sda["size"] == int(sys.argv[3]), sda
assert sda["read_bytes"] > 0 and sda["new_chunks"] > 0 and sda["new_bytes"] > 0, sda
' "$ID1" "$SDA_SIZE"
b_ok "$VMBAK" info "$V" vm3 --json
b_py 'assert d["id"] == sys.argv[2], d' "$b"
b_ok "$VMBAK" info "$V" vm3/latest --json
b_py 'assert d["id"] == sys.argv[2], d' "$b"

# --progress: progress on stderr, the id still the last line of stdout.
b_run 0 "$VMBAK" --progress ingest "$V" vm1 --disk sda="$T/sda.img" --disk sdb="$T/sdb.img"
[[ $(tail -n 1 "$T/out") =~ $ID_RE ]] || b_fail "--progress: id not last on stdout"
grep -q '%' "$T/err" || b_fail "--progress: no percentage on stderr"
[ -z "$(tail -c 1 "$T/err")" ] || b_fail "--progress: no final newline"
# Without it, and stderr not a terminal, nothing on stderr.
b_ok "$VMBAK" ingest "$V" vm1 --disk sda="$T/sda.img" --threads 1

# --- encrypted vaults: passphrase from each source
E=$T/enc
b_ok "$VMBAK" init "$E" --passphrase-file "$T/pass" --chunk-size 4K
grep -q 'aes-256-gcm' "$T/out" || b_fail "init: encryption not said"
if grep -rq 'correct horse' "$E"; then
	b_fail "the passphrase is stored in the vault"
fi
b_ok "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img" --passphrase-file "$T/pass"
E1=$(tail -n 1 "$T/out")
b_ok "$VMBAK" --passphrase-file "$T/pass" ingest "$E" vm1 --disk sda="$T/sda.img"
b_ok env VMBAK_PASSPHRASE_FILE="$T/pass" "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img"
b_ok env VMBAK_PASSPHRASE='correct horse battery staple' "$VMBAK" ingest "$E" vm1 \
	--disk sda="$T/sda.img"
# The option wins over the environment.
b_ok env VMBAK_PASSPHRASE_FILE="$T/wrong" "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img" \
	--passphrase-file "$T/pass"

# A wrong passphrase: exit 1, one line, nothing added.
b_run 1 "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img" --passphrase-file "$T/wrong"
grep -q "^vmbak: wrong passphrase for vault '$E'$" "$T/err" || b_fail "wrong passphrase message"
grep -q 'Tr0ub4dor' "$T/err" && b_fail "a passphrase in a message"
b_run 1 env VMBAK_PASSPHRASE_FILE="$T/wrong" "$VMBAK" ingest "$E" vm1 --disk sda="$T/sda.img"
grep -q 'wrong passphrase' "$T/err" || b_fail "wrong passphrase message (environment)"

# Every record is sealed: list and info of an encrypted vault need the passphrase too, and
# nothing of it (VM names, point ids) is in the vault's files in clear.
b_run 2 "$VMBAK" list "$E" --json
grep -q 'no passphrase' "$T/err" || b_fail "list without a passphrase: wrong message"
b_ok "$VMBAK" --passphrase-file "$T/pass" list "$E" --json
b_py 'assert len(d) == 5 and d[0]["id"] == sys.argv[2], d' "$E1"
b_ok "$VMBAK" --passphrase-file "$T/pass" info "$E" --json
b_py 'assert d["encryption"] == "aes-256-gcm" and d["chunk_size"] == 4096, d'
b_ok "$VMBAK" --passphrase-file "$T/pass" info "$E" "vm1/$E1"
if grep -qa -e 'vm1' -e "$E1" "$E/data.mdb"; then
	b_fail "a VM name or point id is readable in the encrypted vault's files"
fi

# init from the environment, and with the global option.
b_ok env VMBAK_PASSPHRASE='another one' "$VMBAK" init "$T/enc2"
b_ok env VMBAK_PASSPHRASE_FILE="$T/pass" "$VMBAK" init "$T/enc3"
b_ok "$VMBAK" --passphrase-file "$T/pass" init "$T/enc4"
b_ok env VMBAK_PASSPHRASE='another one' "$VMBAK" ingest "$T/enc2" vm1 --disk sda="$T/sdb.img"
b_run 1 "$VMBAK" ingest "$T/enc2" vm1 --disk sda="$T/sdb.img" --passphrase-file "$T/pass"
grep -q 'wrong passphrase' "$T/err" || b_fail "wrong passphrase message (enc2)"
# An existing empty directory becomes a vault.
mkdir "$T/emptydir"
b_ok "$VMBAK" init "$T/emptydir" --encryption none --chunk-size 1M
b_ok "$VMBAK" info "$T/emptydir" --json
b_py 'assert d["chunk_size"] == 1048576, d'

# The installed programs have no test hooks: no environment variable sets a point's time or
# makes a command stop (those live in the test build only, make fault).
if grep -qa 'VMBAK_TEST_' "$VMBAK" "$VMBAKFS"; then
	b_fail "a test hook is compiled into the release programs"
fi
b_ok env VMBAK_TEST_NOW=86400 "$VMBAK" ingest "$T/emptydir" vm9 --disk sda="$T/sda.img"
tail -n 1 "$T/out" | grep -q '^1970' && b_fail "VMBAK_TEST_NOW changed a release ingest's time"

echo "# basic: ok"
