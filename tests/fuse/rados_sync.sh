#!/usr/bin/env bash
# Replicas with chunks in Ceph RADOS (vmbak init --replica-of SRC --chunks rados:POOL), on a
# one-node cluster the test starts (tests/ceph.sh):
#
#   - an LMDB source to a RADOS replica, and a RADOS source to an LMDB replica and to a RADOS
#     replica: full sync, then incremental; verify of each replica and cmp of every point
#     through a mount of it opened with the source's passphrase;
#   - a RADOS replica keeps its objects in its own namespace (its site uuid by default), never
#     the source's: `rados ls` counts them; the source's own pool and namespace are refused;
#   - over ssh (vmbak serve, an sshd of the test's own): an LMDB source to a RADOS replica, full
#     then incremental;
#   - the chunk store kind stays bound: a replica's config with its "chunks" field removed or
#     added, or a RADOS source's config with it removed, is refused, with or without the keys.
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/ceph.sh"
. "$SRCDIR/tests/sshd.sh"

need_root
need_fuse
need_cmd python3 cmp
need_programs
cd "$TESTTMP"
T=$TESTTMP

printf 'rados sync passphrase\n' >pass
chmod 600 pass
export VMBAK_PASSPHRASE_FILE=$T/pass
unset VMBAK_PASSPHRASE

ceph_start
start_sshd "$(dirname "$VMBAK")"

# site VAULT: the replica's own uuid, from its config.
site() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["replica"]["site"])' \
		"$1/vmbak-vault.json"
}

# check VAULT FILE...: verify says VAULT is whole; its points of vm1, oldest first, read back as
# FILE... through a mount of it with the source's passphrase.
check() {
	local v=$1 id f
	shift
	expect_status 0 "$VMBAK" verify "$v"
	expect_stdout ': whole$'
	expect_status 0 "$VMBAK" list "$v" vm1 --json
	local ids
	ids=$(json_value '" ".join(p["id"] for p in d)')
	set -- "$@"
	[ "$(echo "$ids" | wc -w)" -eq $# ] || fail "'$v' holds $(echo "$ids" | wc -w) points, not $#"
	vmount "$v" mnt -o passphrase_file="$T/pass"
	for id in $ids; do
		f=$1
		shift
		cmp "mnt/vm1/$id/sda.img" "$f" || fail "point vm1/$id of '$v' differs from its disk"
	done
	vumount mnt
}

head -c $((2 * 1024 * 1024)) /dev/urandom >a.img
cp a.img b.img
dd if=/dev/urandom of=b.img bs=16384 seek=10 count=8 conv=notrunc status=none

note "an LMDB source, a RADOS replica of it"
expect_status 0 "$VMBAK" init src --chunk-size 16384
expect_status 0 "$VMBAK" ingest src vm1 --disk sda=a.img
expect_status 0 env -u VMBAK_PASSPHRASE_FILE "$VMBAK" init rr --replica-of src \
	--chunks "rados:$CEPH_POOL" --ceph-conf "$CEPH_CONF"
expect_stdout "chunks in ceph pool $CEPH_POOL"
ns=$(site rr)
expect_status 0 "$VMBAK" info rr --json
expect_json 'assert d["chunk_store"] == "rados" and d["ceph_namespace"] == sys.argv[2], d
assert d["ceph_namespace"] != d["uuid"], d' "$ns"
expect_status 0 "$VMBAK" sync src rr --json
expect_json 'assert d["points_copied"] == 1, d'
[ "$(ceph_rados "$ns" ls | wc -l)" -eq 128 ] || fail "the replica's namespace lacks its 128 chunks"
expect_status 0 "$VMBAK" ingest src vm1 --disk sda=b.img
expect_status 0 "$VMBAK" sync src rr --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_sent"] == 8, d'
[ "$(ceph_rados "$ns" ls | wc -l)" -eq 136 ] || fail "the incremental sync did not add 8 objects"
check rr a.img b.img

note "a RADOS source, an LMDB and a RADOS replica of it"
expect_status 0 "$VMBAK" init rs --chunk-size 16384 --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF"
expect_status 0 "$VMBAK" info rs --json
sns=$(json_value 'd["uuid"]')
expect_status 0 "$VMBAK" ingest rs vm1 --disk sda=a.img
expect_status 1 "$VMBAK" init bad --replica-of rs --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF" --ceph-namespace "$sns"
expect_stderr "holds the chunks of 'rs' itself"
[ ! -e bad ] || fail "a refused init --replica-of left 'bad'"
expect_status 0 "$VMBAK" init lr --replica-of rs
expect_status 0 "$VMBAK" info lr --json
expect_json 'assert d["chunk_store"] == "lmdb", d'
expect_status 0 "$VMBAK" init rr2 --replica-of rs --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF" --ceph-namespace site-two
for r in lr rr2; do
	expect_status 0 "$VMBAK" sync rs "$r" --json
	expect_json 'assert d["points_copied"] == 1, d'
done
expect_status 0 "$VMBAK" ingest rs vm1 --disk sda=b.img
for r in lr rr2; do
	expect_status 0 "$VMBAK" sync rs "$r" --json
	expect_json 'assert d["points_copied"] == 1 and d["chunks_sent"] == 8, d'
	check "$r" a.img b.img
done
[ "$(ceph_rados site-two ls | wc -l)" -eq 136 ] || fail "namespace site-two lacks 136 objects"
[ "$(ceph_rados "$sns" ls | wc -l)" -eq 136 ] || fail "the source's namespace changed"

note "back: from a RADOS replica to an LMDB replica of it"
expect_status 0 "$VMBAK" init back --replica-of rr
expect_status 0 "$VMBAK" sync rr back --json
expect_json 'assert d["points_copied"] == 2, d'
check back a.img b.img

note "the chunk store kind stays bound"
# edit VAULT EXPR: VAULT's config c changed by the python statement EXPR.
edit() {
	cp "$1/vmbak-vault.json" "$1.json.orig"
	python3 - "$1/vmbak-vault.json" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
PY
}
restore() { cp "$1.json.orig" "$1/vmbak-vault.json"; }
# A source: its keys are bound to its kind, so they no longer unwrap. A replica, whose keys are
# its source's: its database says where its chunks are.
edit rs 'del c["chunks"]'
expect_status 1 "$VMBAK" verify rs
expect_stderr "wrong passphrase"
restore rs
edit rr 'del c["chunks"]'
expect_status 3 "$VMBAK" verify rr
expect_stderr "its config keeps its chunks in LMDB, its database in RADOS"
restore rr
edit rr 'del c["chunks"]'
expect_status 1 "$VMBAK" sync src rr
expect_stderr "refusing to use it"
restore rr
edit lr "c['chunks'] = {'store': 'rados', 'pool': '$CEPH_POOL', 'namespace': 'x'}"
expect_status 3 "$VMBAK" verify lr
expect_stderr "refusing to use it"
restore lr
# A replica's "source_chunks" is bound to the keys it shares with its source.
edit lr 'c["replica"]["source_chunks"] = "lmdb"'
if "$VMBAK" verify lr >verify.out 2>&1; then
	fail "a replica whose source_chunks was edited still opens"
fi
restore lr
check lr a.img b.img

note "over ssh: an LMDB source to a RADOS replica, full then incremental"
expect_status 0 "$VMBAK" init sr --replica-of src --chunks "rados:$CEPH_POOL" \
	--ceph-conf "$CEPH_CONF" --ceph-namespace over-ssh
expect_status 0 "$VMBAK" sync src "ssh://root@127.0.0.1:$SSH_PORT$T/sr" --json
expect_json 'assert d["points_copied"] == 2, d'
cp b.img c.img
dd if=/dev/urandom of=c.img bs=16384 seek=40 count=4 conv=notrunc status=none
expect_status 0 "$VMBAK" ingest src vm1 --disk sda=c.img
expect_status 0 "$VMBAK" sync src "ssh://root@127.0.0.1:$SSH_PORT$T/sr" --json
expect_json 'assert d["points_copied"] == 1 and d["chunks_sent"] == 4, d'
[ "$(ceph_rados over-ssh ls | wc -l)" -eq 140 ] || fail "namespace over-ssh lacks 140 objects"
check sr a.img b.img c.img
