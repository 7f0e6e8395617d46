#!/usr/bin/env bash
# Key lifecycle through a real mount: a LUKS2 disk escrowed under KEK version 1; the KEK rotates;
# `vmbak rewrap` re-wraps the point's blob while the vault is mounted, and the mounted DISK.key
# shows the new blob at once (it is not cached as immutable); version 1 is then retired, and the
# old point still restores: its blob, read through the mount, unwraps to the passphrase, which
# cryptsetup accepts for the point's image. verify --keyvault --check-escrow checks the secret
# against the header stored in the point, and the audit log shows every step.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd cryptsetup python3 cmp
need_programs
cd "$TESTTMP"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
chmod 600 vpass kvpass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass VMBAK_KEYVAULT_PASSPHRASE_FILE=$TESTTMP/kvpass

printf 'the LUKS passphrase' >lpass
truncate -s 20M disk.img
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
	--key-file lpass disk.img || fail "cryptsetup luksFormat failed"

blob_kek() { python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print("%s/%s" % (b["kek"]["name"], b["kek"]["version"]))' "$1"; }

expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" keyvault init kv
expect_status 0 "$VMBAK" keyvault key create kv kek --type rsa-3072
expect_status 0 "$VMBAK" keyvault secret set kv os --value-file lpass --kek kek
expect_status 0 "$VMBAK" ingest v vm1 --disk os=disk.img --keyvault kv --escrow os=os \
	--check-escrow </dev/null
rp=$(tail -n 1 "$OUT")

vmount v mnt
[ "$(blob_kek "mnt/vm1/$rp/os.key")" = kek/1 ] || fail "the blob is not under kek/1"
cp "mnt/vm1/$rp/os.key" old.key

note "rotate, then rewrap while mounted: the mount shows the new blob"
expect_status 0 "$VMBAK" keyvault key rotate kv kek
expect_status 0 "$VMBAK" rewrap v --keyvault kv
expect_stdout "^vm1/$rp os: key 'kek' version 1 -> key 'kek' version 2$"
expect_stdout "^rewrap: 1 blob in 1 point rewrapped"
[ "$(blob_kek "mnt/vm1/$rp/os.key")" = kek/2 ] ||
	fail "the mount still shows the old blob after a rewrap"
[ "$(stat -c %s "mnt/vm1/$rp/os.key")" = "$(wc -c <"mnt/vm1/$rp/os.key")" ] ||
	fail "the size of the mounted blob is stale"
cmp -s old.key "mnt/vm1/$rp/os.key" && fail "the mounted blob did not change"
note "a second rewrap finds everything current"
expect_status 0 "$VMBAK" rewrap v --keyvault kv
expect_stdout "^rewrap: 0 blobs in 0 points rewrapped, 1 already current"

note "retire version 1: refused while the secret's latest version uses it, then allowed"
expect_status 1 "$VMBAK" keyvault key retire kv kek/1 --vault v
expect_stderr "latest version of secret 'os' is wrapped by it"
expect_status 0 "$VMBAK" keyvault secret set kv os --value-file lpass --kek kek
expect_status 0 "$VMBAK" keyvault key retire kv kek/1 --vault v
expect_stdout "is now retired"
expect_status 0 "$VMBAK" keyvault key list kv --json --vault v
python3 - "$OUT" <<'EOF' || fail "key list --json does not show the states and counts"
import json, sys
k = json.load(open(sys.argv[1]))[0]
assert [(v["state"], v["blobs"]) for v in k["versions"]] == [("retired", 0), ("current", 1)], k
EOF

note "the old blob (under the retired version) no longer unwraps; the rewrapped one does"
expect_status 1 "$VMBAK" keyvault unwrap kv old.key
expect_stderr "is retired"
expect_status 0 "$VMBAK" keyvault unwrap kv "mnt/vm1/$rp/os.key" --output secret.out
cmp secret.out lpass || fail "the rewrapped blob does not give the passphrase back"
cryptsetup luksOpen --test-passphrase --readonly --key-file secret.out "mnt/vm1/$rp/os.img" ||
	fail "cryptsetup refuses the unwrapped passphrase for the old point's image"

note "verify --keyvault --check-escrow: the header stored in the point"
expect_status 0 "$VMBAK" verify v --keyvault kv --check-escrow
expect_stdout "^vm1/$rp os: escrow ok .*key 'kek' version 2, opens the disk's header\)$"
grep -q 'the LUKS passphrase' "$OUT" "$ERR" && fail "verify printed the secret"

note "a blob whose secret does not open the disk is damage (exit 3)"
printf 'another passphrase' >wrong
truncate -s 20M disk2.img
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
	--key-file wrong disk2.img || fail "cryptsetup luksFormat failed"
expect_status 0 "$VMBAK" ingest v vm2 --disk os=disk2.img --keyvault kv --escrow os=os </dev/null
expect_status 3 "$VMBAK" verify v vm2 --keyvault kv --check-escrow
expect_stderr "1 of 1 escrow blobs"
grep -Eq "^vm2/.* os: escrow FAILED: the secret does not open the disk's LUKS header" "$OUT" ||
	fail "verify does not say which blob failed"

note "the audit log shows each step and verifies"
expect_status 0 "$VMBAK" keyvault audit kv --json
python3 - "$OUT" <<'EOF' || fail "the audit log is not as expected"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["intact"] and d["authenticated"] == d["lines"], d
ops = [e["op"] for e in d["events"]]
for want in ["key-create", "secret-set", "key-rotate", "rewrap", "key-retire", "unwrap",
             "verify-escrow"]:
    assert want in ops, (want, ops)
r = [e for e in d["events"] if e["op"] == "rewrap"][0]
assert r["key"] == "kek" and r["version"] == 2 and r["result"] == "ok", r
assert any(e["op"] == "unwrap" and e["result"] == "failed" for e in d["events"]), ops
EOF
vumount mnt
