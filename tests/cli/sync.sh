#!/usr/bin/env bash
# tests/cli/sync.sh: replicas and sync, bad input: --replica-of a vault that is not one, a sync
# to a vault that is not a replica or is one of another vault, an ingest into a replica; and
# `vmbak serve` fed hostile messages (another protocol version, truncated and oversized
# requests, counts past the message, a commit whose keys do not match): an error answer or one
# line and exit 1, never a crash, and the replica unchanged.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

T=$TESTTMP
cd "$T"
echo "cli sync passphrase" >pass
export VMBAK_PASSPHRASE_FILE=$T/pass
unset VMBAK_PASSPHRASE
S=$T/src
D=$T/dst
expect_status 0 "$VMBAK" init "$S" --chunk-size 16384
head -c 300000 /dev/urandom >a.img
expect_status 0 "$VMBAK" ingest "$S" vm1 --disk sda=a.img

# --replica-of: of nothing, of a file, with other options, onto an existing vault.
expect_status 1 "$VMBAK" init "$D" --replica-of "$T/none"
expect_stderr "^vmbak: cannot open vault '.*none'"
[ ! -e "$D" ] || fail "a failed init --replica-of left '$D'"
echo x >file
expect_status 1 "$VMBAK" init "$D" --replica-of file
[ ! -e "$D" ] || fail "a failed init --replica-of left '$D'"
expect_status 2 "$VMBAK" init "$D" --replica-of "$S" --chunk-size 4096
[ ! -e "$D" ] || fail "a refused init --replica-of left '$D'"
expect_status 1 "$VMBAK" init "$S" --replica-of "$S"
expect_stderr "already a vault"

# No passphrase is needed to make a replica, nor to receive.
expect_status 0 env -u VMBAK_PASSPHRASE_FILE "$VMBAK" init "$D" --replica-of "$S"
python3 - "$S" "$D" <<'EOF' || fail "the replica's config is not its source's plus a marker"
import json, sys
s = json.load(open(sys.argv[1] + "/vmbak-vault.json"))
d = json.load(open(sys.argv[2] + "/vmbak-vault.json"))
r = d.pop("replica")
assert r["of"] == s["uuid"] and r["site"] != s["uuid"] and len(r["site"]) == 36, r
assert d == s, (d, s)
EOF

# A replica made from a copy of the source's config file alone (what a second site can be
# sent): the first sync brings the sealed copy of the config, then it opens like the other.
cp "$S/vmbak-vault.json" "$T/src-config.json"
expect_status 1 "$VMBAK" init "$T/r3" --replica-of "$T/pass"
expect_stderr "not valid JSON"
[ ! -e "$T/r3" ] || fail "a failed init --replica-of left '$T/r3'"
expect_status 0 env -u VMBAK_PASSPHRASE_FILE "$VMBAK" init "$T/r3" --replica-of "$T/src-config.json"
expect_status 0 "$VMBAK" sync "$S" "$T/r3" --json
expect_json 'assert d["points_copied"] == 1, d'
expect_status 0 "$VMBAK" verify "$T/r3"
expect_status 0 "$VMBAK" sync "$S" "$T/r3"

# A source with chunks in RADOS (its config file; no cluster needed): its replica keeps its
# chunks in LMDB unless told, binds the source's kind (the keys it shares are bound to it), and
# records its own; the ceph options go only with --chunks rados:POOL, the source's other
# options never.
python3 - "$S/vmbak-vault.json" "$T/rados-config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["chunks"] = {"store": "rados", "pool": "backup", "namespace": "ns1"}
json.dump(c, open(sys.argv[2], "w"))
PY
expect_status 2 "$VMBAK" init "$T/r4" --replica-of "$T/rados-config.json" --ceph-namespace x
expect_stderr "go with --chunks rados:POOL"
expect_status 2 "$VMBAK" init "$T/r4" --replica-of "$S" --chunks lmdb --dedup-scope vm
[ ! -e "$T/r4" ] || fail "a refused init --replica-of left '$T/r4'"
expect_status 0 "$VMBAK" init "$T/r4" --replica-of "$T/rados-config.json" --chunks lmdb
python3 - "$T/r4/vmbak-vault.json" <<'PY' || fail "the replica of a RADOS source is not LMDB"
import json, sys
d = json.load(open(sys.argv[1]))
assert "chunks" not in d and d["replica"]["source_chunks"] == "rados", d
PY
cp "$T/r4/vmbak-vault.json" "$T/r4.json"
python3 - "$T/r4/vmbak-vault.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["chunks"] = {"store": "rados", "pool": "backup", "namespace": "ns1"}
json.dump(c, open(sys.argv[1], "w"))
PY
expect_status 1 "$VMBAK" sync "$S" "$T/r4"
expect_stderr "its config keeps its chunks in RADOS, its database in LMDB"
cp "$T/r4.json" "$T/r4/vmbak-vault.json"
sed -i 's/"source_chunks": *"rados"/"source_chunks": "ceph"/' "$T/r4/vmbak-vault.json"
expect_status 1 "$VMBAK" info "$T/r4"
expect_stderr "bad field 'replica'"

# A sync to a vault that is not a replica, to a replica of another vault: one line, nothing
# written.
O=$T/other
expect_status 0 "$VMBAK" init "$O" --encryption none
expect_status 1 "$VMBAK" sync "$S" "$O"
expect_stderr "^vmbak: '.*other' is not a replica \(make one with vmbak init --replica-of\)$"
expect_status 0 "$VMBAK" init "$T/r2" --replica-of "$O"
expect_status 1 "$VMBAK" sync "$S" "$T/r2"
expect_stderr "^vmbak: replica: '.*r2' is not a replica of the source vault"
expect_status 0 "$VMBAK" jobs "$T/r2" --json
expect_json 'assert d == [], d'
expect_status 1 "$VMBAK" sync "$S" "$D" nosuchvm
expect_stderr "^vmbak: vault '.*' has no VM 'nosuchvm'$"
expect_status 2 "$VMBAK" sync "$S" "$D" --remote-path /x
expect_status 2 "$VMBAK" sync "$S" "ssh://-oProxyCommand=x/v"
expect_status 2 "$VMBAK" sync "$S" "ssh://host:99999/v"

expect_status 0 "$VMBAK" sync "$S" "$D"
expect_status 0 "$VMBAK" verify "$D"
# A replica takes points from sync only.
expect_status 1 "$VMBAK" ingest "$D" vm1 --disk sda=a.img
expect_stderr "is a replica"

# serve, fed by hand. Each case: the messages, then what must come back.
python3 - "$VMBAK" "$D" "$S" <<'EOF' || fail "serve mishandled a hostile message"
import json, struct, subprocess, sys
vmbak, dst, src = sys.argv[1:4]
uuid = json.load(open(src + "/vmbak-vault.json"))["uuid"].encode()

def run(frames, raw=b""):
    data = b"".join(struct.pack(">I", len(f)) + f for f in frames) + raw
    p = subprocess.run([vmbak, "serve", dst], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    out, resps = p.stdout, []
    while out:
        n = struct.unpack(">I", out[:4])[0]
        resps.append(out[4:4 + n])
        out = out[4 + n:]
    return p.returncode, resps, p.stderr.decode()

hello = bytes([1]) + struct.pack(">I", 1) + uuid
# Another protocol version: an error naming both.
rc, r, err = run([bytes([1]) + struct.pack(">I", 7) + uuid])
assert rc == 0 and r[0][0] == 1 and b"protocol version 7" in r[0], r
# Another vault's uuid.
rc, r, err = run([bytes([1]) + struct.pack(">I", 1) + b"0" * 36])
assert r[0][0] == 1 and b"not a replica of the source" in r[0], r
cases = [
    b"",                                            # empty request
    bytes([99]),                                    # unknown op
    bytes([1]) + b"\0\0",                           # truncated hello
    bytes([3]) + struct.pack(">I", 1 << 30),        # have: count past the message
    bytes([3]) + struct.pack(">I", 2) + b"x" * 63,  # have: one byte short
    bytes([4]) + struct.pack(">QII", 1, 0, 1) + b"i" * 32 + struct.pack(">I", 1 << 31),
    bytes([4]) + struct.pack(">QII", 1, 0, 1) + b"i" * 32 + struct.pack(">I", 20) + b"\1" * 20,
    bytes([4]) + struct.pack(">QII", 999, 0, 0),    # put for a job that does not exist
    bytes([5]) + struct.pack(">QBI", 0, 1, 4) + b"abcd",
    bytes([5]) + struct.pack(">QBI", 5, 0, 1 << 30),
    bytes([6]) + struct.pack(">QQ", 1, 1) + b"h" * 16 + struct.pack(">H", 0),
    # a commit whose point record is keyed by another serial
    bytes([6]) + struct.pack(">QQ", 50, 50) + b"h" * 16 + struct.pack(">H", 1) +
    bytes([2]) + struct.pack(">H", 8) + struct.pack(">Q", 51) + struct.pack(">I", 40) + b"v" * 40 +
    struct.pack(">H", 0),
    # a commit with entries out of order
    bytes([6]) + struct.pack(">QQ", 50, 50) + b"h" * 16 + struct.pack(">H", 1) +
    bytes([2]) + struct.pack(">H", 8) + struct.pack(">Q", 50) + struct.pack(">I", 40) + b"v" * 40 +
    struct.pack(">H", 1) + struct.pack(">QBQI", 9, 0, 1, 2) + struct.pack(">QB", 5, 0) +
    struct.pack(">QB", 4, 0),
    # a commit naming an unknown database
    bytes([6]) + struct.pack(">QQ", 50, 50) + b"h" * 16 + struct.pack(">H", 1) +
    bytes([9]) + struct.pack(">H", 8) + struct.pack(">Q", 50) + struct.pack(">I", 40) + b"v" * 40 +
    struct.pack(">H", 0),
    bytes([7]) + b"\0" * 3,                         # release: truncated
]
rc, r, err = run([hello] + cases)
assert rc == 0 and len(r) == len(cases) + 1, (rc, len(r), err)
assert r[0][0] == 0, r[0]
for c, a in zip(cases, r[1:]):
    assert a[0] == 1 and len(a) > 1, (c[:16], a)
    assert all(32 <= b < 127 for b in a[1:]), a
# A length past the limit: one line, exit 1, no answer.
rc, r, err = run([], struct.pack(">I", 0xffffffff))
assert rc == 1 and r == [] and err.count("\n") == 1 and err.startswith("vmbak: "), (rc, err)
# A message cut short: the same.
rc, r, err = run([], struct.pack(">I", 100) + b"x" * 10)
assert rc == 1 and err.count("\n") == 1, (rc, err)
EOF
expect_status 0 "$VMBAK" verify "$D"
expect_status 0 "$VMBAK" list "$D" --json
expect_json 'assert len(d) == 1, d'
# A replica that serve cannot open: the answer to hello says why.
python3 - "$VMBAK" "$T/none" <<'EOF' || fail "serve of a missing path"
import struct, subprocess, sys
p = subprocess.run([sys.argv[1], "serve", sys.argv[2]],
                   input=struct.pack(">I", 41) + bytes([1]) + struct.pack(">I", 1) + b"u" * 36,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
assert p.returncode == 0 and p.stdout[4] == 1 and b"cannot open vault" in p.stdout, p
EOF

# --prune: the source's deletions reach the replica, except where the replica protects.
expect_status 0 "$VMBAK" ingest "$S" vm1 --disk sda=a.img
p2=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest "$S" vm1 --disk sda=a.img
expect_status 0 "$VMBAK" sync "$S" "$D"
p1=$("$VMBAK" list "$S" vm1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
expect_status 0 "$VMBAK" delete "$S" "vm1/$p1"
expect_status 0 "$VMBAK" protect "$D" "vm1/$p2"
expect_status 0 "$VMBAK" delete "$S" "vm1/$p2"
# Without --prune nothing goes.
expect_status 0 "$VMBAK" sync "$S" "$D" --json
expect_json 'assert d["points_deleted"] == 0 and d["points_copied"] == 0, d'
expect_status 0 "$VMBAK" jobs "$D" --json
jobs_before=$(json_value 'len(d)')
expect_status 2 "$VMBAK" sync "$S" "ssh://localhost/x" --prune
expect_stderr "^vmbak: --prune needs a local replica"
expect_status 0 "$VMBAK" sync "$S" "$D" --prune --json
expect_json 'assert d["points_deleted"] == 1 and d["points_kept"] == 1, d'
expect_status 0 "$VMBAK" list "$D" vm1 --json
expect_json 'assert [p["id"] for p in d] == sys.argv[2:], d' "$p2" \
	"$("$VMBAK" list "$S" vm1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["id"])')"
expect_status 0 "$VMBAK" verify "$D"
# One job record per sync, the deletions included.
expect_status 0 "$VMBAK" jobs "$D" --json
expect_json 'assert len(d) == int(sys.argv[2]) + 2 and d[-2]["kind"] == "sync", d' "$jobs_before"

# Escrow blobs travel with their points: a key restored from the replica is the secret.
echo "kv passphrase" >kvpass
export VMBAK_KEYVAULT_PASSPHRASE_FILE=$T/kvpass
expect_status 0 "$VMBAK" keyvault init "$T/kv"
expect_status 0 "$VMBAK" keyvault key create "$T/kv" kek --type aes-256
printf 'the LUKS passphrase' >secret
expect_status 0 "$VMBAK" keyvault secret set "$T/kv" disksecret --value-file secret --kek kek
expect_status 0 "$VMBAK" ingest "$S" vmk --disk sda=a.img --keyvault "$T/kv" \
	--escrow sda=disksecret
expect_status 0 "$VMBAK" sync "$S" "$D" vmk
expect_status 0 "$VMBAK" list "$D" vmk --json
expect_json 'assert d[0]["escrow"] == ["sda"], d'
expect_status 0 "$VMBAK" restore "$D" vmk --to "$T/rk" --keyvault "$T/kv"
cmp "$T/rk/sda.img" a.img || fail "restored image from the replica differs"
cmp "$T/rk/sda.key" secret || fail "the escrowed key restored from the replica differs"
expect_status 0 "$VMBAK" info "$D" --json
expect_json 'assert d["replica"] is True, d'
