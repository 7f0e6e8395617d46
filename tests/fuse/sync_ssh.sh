#!/usr/bin/env bash
# tests/fuse/sync_ssh.sh: vmbak sync over ssh to 127.0.0.1 (an sshd started here, tests/sshd.sh):
# full then incremental, a kill -9 of the remote `vmbak serve` and of the local ssh client (a
# network cut) in the middle of a point and the resume, syncs while the source ingests and the
# replica prunes; the replica verified and every point compared through
# a mount. Bad targets: a host without vmbak, a `serve` speaking another protocol version, a
# path that is no replica: one line, status 1, nothing made.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$SRCDIR/tests/sshd.sh"
need_root
need_fuse
# The remote side runs the release build found in PATH; the local one the test build (hooks).
remote_bin=$(dirname "$VMBAK")
use_test_build
start_sshd "$remote_bin"

T=$TESTTMP
cd "$T"
echo "ssh sync passphrase" >pass
export VMBAK_PASSPHRASE_FILE=$T/pass
unset VMBAK_PASSPHRASE
S=$T/src
D=$T/dst
M=$T/mnt
URL=ssh://root@127.0.0.1:$SSH_PORT$D
: >map
expect_status 0 "$VMBAK" init "$S" --chunk-size 16384

ingest() {
	"$VMBAK" ingest "$S" "$1" --disk sda="$2" >ingest.out 2>ingest.err ||
		{ cat ingest.err; fail "ingest of $1 failed"; }
	local id
	id=$(tail -n 1 ingest.out)
	cp --sparse=always "$2" "$T/pt.$1.$id"
	echo "$1 $id $T/pt.$1.$id" >>map
}

check_replica() {
	local vm id f n=0
	expect_status 0 "$VMBAK" verify "$D"
	vmount "$D" "$M" -o passphrase_file="$T/pass"
	for vm in $(awk '{print $1}' map | sort -u); do
		for id in $("$VMBAK" list "$D" "$vm" --json | python3 -c 'import json, sys
print(" ".join(p["id"] for p in json.load(sys.stdin)))'); do
			f=$(awk -v vm="$vm" -v id="$id" '$1 == vm && $2 == id { print $3 }' map)
			[ -n "$f" ] || fail "the replica has a point the test did not ingest: $vm/$id"
			cmp "$M/$vm/$id/sda.img" "$f" || fail "replica point $vm/$id differs"
			n=$((n + 1))
		done
	done
	vumount "$M"
	note "replica: $n points compared"
}

head -c $((12 * 1024 * 1024)) /dev/urandom >a.img
ingest vm1 a.img
expect_status 0 "$VMBAK" init "$D" --replica-of "$S"

# Bad targets first, while the replica is empty.
# A host where vmbak is not in PATH.
expect_status 1 env VMBAK_RSH="$(ssh_rsh "$SSH_DIR/bare")" "$VMBAK" sync "$S" "$URL"
expect_stderr "^vmbak: .*remote command was not found.*vmbak: command not found"
# A serve that speaks another version of the protocol.
cat >fake-serve <<'EOF'
#!/usr/bin/env python3
import struct, sys
n = struct.unpack(">I", sys.stdin.buffer.read(4))[0]
sys.stdin.buffer.read(n)
body = b"\0" + struct.pack(">I", 99) + b"\0" * 160
sys.stdout.buffer.write(struct.pack(">I", len(body)) + body)
sys.stdout.flush()
sys.stdin.buffer.read()
EOF
chmod +x fake-serve
expect_status 1 "$VMBAK" sync "$S" "$URL" --remote-path "$T/fake-serve"
expect_stderr "^vmbak: the replica speaks sync protocol version 99, this vmbak 1$"
# A path that is a vault but no replica, and one that is nothing.
expect_status 1 "$VMBAK" sync "$S" "ssh://127.0.0.1:$SSH_PORT$S"
expect_stderr "is not a replica"
expect_status 1 "$VMBAK" sync "$S" "ssh://127.0.0.1:$SSH_PORT$T/nothing"
expect_stderr "cannot open vault"
[ ! -e "$T/nothing" ] || fail "a sync to a missing path made something"
expect_status 0 "$VMBAK" list "$D" --json
expect_json 'assert d == [], d'

# Full, then incremental.
expect_status 0 "$VMBAK" sync "$S" "$URL" --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_sent"] == 768, d'
for b in 7 77 177 277 377 477 577 677; do
	dd if=/dev/urandom of=a.img bs=16384 count=1 seek=$b conv=notrunc status=none
done
ingest vm1 a.img
expect_status 0 "$VMBAK" sync "$S" "$URL" --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_sent"] == 8, d'
expect_json 'assert d["bytes_sent"] < d["chunk_bytes_sent"] + 16384, d'
note "incremental over ssh: $(json_value 'd["bytes_sent"]') bytes for 8 new chunks"

# kill -9 of the remote serve after the first put of a new 12 MiB disk.
head -c $((12 * 1024 * 1024)) /dev/urandom >b.img
ingest vm2 b.img
VMBAK_TEST_SYNC_PUT_PAUSE=$T/put.go "$VMBAK" sync "$S" "$URL" >killed.out 2>killed.err &
spid=$!
at_exit "kill -9 $spid 2>/dev/null || true"
for ((i = 0; i < 300; i++)); do
	[ -e put.go.reached ] && break
	sleep 0.1
done
[ -e put.go.reached ] || fail "the sync did not reach its first put"
serve=$(pgrep -f -x "vmbak serve $D" || pgrep -f -x "$remote_bin/vmbak serve $D" || true)
[ -n "$serve" ] || fail "no remote vmbak serve found"
kill -9 $serve
touch put.go
st=0
wait "$spid" || st=$?
[ "$st" -eq 1 ] || fail "the sync whose serve was killed exited with $st"
[ "$(wc -l <killed.err)" -eq 1 ] && grep -q "^vmbak: .*connection closed" killed.err ||
	{ cat killed.err; fail "the sync whose serve was killed must say so in one line"; }
expect_status 0 "$VMBAK" list "$D" --json
expect_json 'assert all(p["vm"] != "vm2" for p in d), "a point arrived half"'
expect_status 0 "$VMBAK" sync "$S" "$URL" --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_present"] >= 500, d'
expect_json 'assert d["chunks_sent"] + d["chunks_present"] == 768, d'

# A network cut: kill -9 of the ssh client under the sync, after its first put.
head -c $((12 * 1024 * 1024)) /dev/urandom >c.img
ingest vm3 c.img
VMBAK_TEST_SYNC_PUT_PAUSE=$T/cut.go "$VMBAK" sync "$S" "$URL" >cut.out 2>cut.err &
spid=$!
at_exit "kill -9 $spid 2>/dev/null || true"
for ((i = 0; i < 300; i++)); do
	[ -e cut.go.reached ] && break
	sleep 0.1
done
[ -e cut.go.reached ] || fail "the sync did not reach its first put"
client=$(pgrep -P "$spid" -x ssh || true)
[ -n "$client" ] || fail "no ssh client under the sync"
kill -9 $client
touch cut.go
st=0
wait "$spid" || st=$?
[ "$st" -eq 1 ] && [ "$(wc -l <cut.err)" -eq 1 ] ||
	{ cat cut.err; fail "a sync whose connection was cut must fail with one line"; }
expect_status 0 "$VMBAK" list "$D" --json
expect_json 'assert all(p["vm"] != "vm3" for p in d), "a point arrived half"'
expect_status 0 "$VMBAK" sync "$S" "$URL" --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_present"] >= 500, d'

# Syncs while the source ingests and the replica prunes (the base of a delta may go: the disk
# is then sent whole).
(
	for r in 1 2 3 4; do
		scribble a.img 5
		ingest vm1 a.img
	done
	touch writer.done
) >writer.log 2>&1 &
wpid=$!
at_exit "kill $wpid 2>/dev/null || true"
(
	while [ ! -e writer.done ]; do
		"$VMBAK" prune "$D" vm1 --keep-last 1 >/dev/null
		sleep 0.1
	done
) >pruner.log 2>&1 &
ppid=$!
at_exit "kill $ppid 2>/dev/null || true"
syncs=0
while [ ! -e writer.done ] && kill -0 "$wpid" 2>/dev/null; do
	"$VMBAK" sync "$S" "$URL" >sync.out 2>sync.err || { cat sync.err; fail "a sync failed"; }
	syncs=$((syncs + 1))
done
wait "$wpid" || { cat writer.log; fail "the writer failed"; }
wait "$ppid" || { cat pruner.log; fail "a prune of the replica failed"; }
note "$syncs syncs during ingests at the source and prunes at the replica"
expect_status 0 "$VMBAK" sync "$S" "$URL"
latest=$("$VMBAK" list "$S" vm1 --json | python3 -c 'import json, sys
print(json.load(sys.stdin)[-1]["id"])')
expect_status 0 "$VMBAK" list "$D" vm1 --json
expect_json 'assert d[-1]["id"] == sys.argv[2], d' "$latest"
check_replica
