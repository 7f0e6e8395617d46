#!/usr/bin/env bash
# vmbak keyvault: every command, escrow at ingest, and the refusals: no passphrase, wrong
# passphrase, weak or unknown key types, a tampered blob (every field), a blob of another key
# vault, a file that is not a blob, a missing secret or a disk not in the ingest; nothing is
# written when a command fails. The blobs are read through a mount, as a user gets them.
. "$SRCDIR/tests/lib.sh"

need_root
need_fuse
need_cmd python3 cmp sha256sum
need_programs
cd "$TESTTMP"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
printf 'not the passphrase\n' >wrong
chmod 600 vpass kvpass wrong
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass
unset VMBAK_KEYVAULT_PASSPHRASE VMBAK_KEYVAULT_PASSPHRASE_FILE

sum() { sha256sum kv/keyvault.json | cut -d' ' -f1; }
# unchanged SUM: the key vault file is still the one whose digest was SUM.
unchanged() { [ "$(sum)" = "$1" ] || fail "a failed command changed kv/keyvault.json"; }

note "init"
expect_status 0 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_stdout "^key vault 'kv' created, id [0-9a-f-]{36}$"
[ "$(stat -c %a kv)" = 700 ] || fail "kv is mode $(stat -c %a kv), not 700"
[ "$(stat -c %a kv/keyvault.json)" = 600 ] || fail "kv/keyvault.json is not mode 600"
expect_status 1 "$VMBAK" keyvault init kv --passphrase-file kvpass
expect_stderr "not empty"
expect_status 2 "$VMBAK" keyvault init kv3 </dev/null
expect_stderr "no passphrase for key vault 'kv3'"
[ ! -e kv3 ] || fail "init without a passphrase left kv3 behind"
# Into an existing empty directory, however open: it ends up 0700 as well.
mkdir -m 0777 kv4
chmod 0777 kv4
expect_status 0 "$VMBAK" keyvault init kv4 --passphrase-file kvpass
[ "$(stat -c %a kv4)" = 700 ] || fail "kv4 (made 0777) is mode $(stat -c %a kv4), not 700"

note "usage"
expect_status 0 "$VMBAK" keyvault --help
expect_stdout "secret set KV NAME --value-file F"
expect_status 2 "$VMBAK" keyvault
expect_status 2 "$VMBAK" keyvault key
expect_status 2 "$VMBAK" keyvault key delete kv kek
expect_stderr "unknown keyvault command 'key delete'"
expect_status 2 "$VMBAK" keyvault key list kv --type aes-256
expect_stderr "does not apply"
expect_status 2 "$VMBAK" keyvault key create kv kek --passphrase 'secret on argv'
expect_stderr "no --passphrase option"
grep -q 'secret on argv' "$ERR" && fail "a passphrase given on argv was echoed"
expect_status 2 "$VMBAK" keyvault key create kv 'bad/name' --passphrase-file kvpass
expect_status 2 "$VMBAK" keyvault unwrap kv
expect_stderr "missing BLOB"

note "key types: weak and unknown ones refused"
s0=$(sum)
for t in rsa-1024 rsa-2048 aes-128 aes-192; do
	expect_status 2 "$VMBAK" keyvault key create kv weak --type "$t" --passphrase-file kvpass
	expect_stderr "key type '$t' is too weak"
done
for t in ed25519 rsa-3072x rsa dsa-3072 ''; do
	expect_status 2 "$VMBAK" keyvault key create kv weak --type "$t" --passphrase-file kvpass
done
unchanged "$s0"

note "keys: no passphrase, wrong passphrase, create, rotate, list"
expect_status 2 "$VMBAK" keyvault key create kv kek </dev/null
expect_stderr "no passphrase for key vault 'kv'"
expect_status 1 "$VMBAK" keyvault key create kv kek --passphrase-file wrong
expect_stderr "^vmbak: wrong passphrase for key vault 'kv'$"
unchanged "$s0"
VMBAK_KEYVAULT_PASSPHRASE_FILE=$TESTTMP/kvpass expect_status 0 "$VMBAK" keyvault key create kv kek
expect_stdout "^key 'kek' version 1 \(rsa-3072\), fingerprint sha256:[0-9a-f]{64}$"
VMBAK_KEYVAULT_PASSPHRASE='key vault passphrase' \
	expect_status 0 "$VMBAK" keyvault key create kv aes --type aes-256
expect_stdout "^key 'aes' version 1 \(aes-256\), fingerprint hmac-sha256:[0-9a-f]{64}$"
s0=$(sum)
expect_status 1 "$VMBAK" keyvault key create kv kek --type rsa-4096 --passphrase-file kvpass
expect_stderr "key 'kek' exists"
expect_status 1 "$VMBAK" keyvault key rotate kv nokey --passphrase-file kvpass
expect_stderr "no key 'nokey'"
unchanged "$s0"
expect_status 0 "$VMBAK" keyvault key rotate kv kek --passphrase-file kvpass
expect_stdout "^key 'kek' version 2 \(rsa-3072\)"
expect_status 0 "$VMBAK" keyvault key list kv </dev/null
expect_stdout "^kek +rsa-3072 +1 .* enabled +sha256:"
expect_stdout "^kek +rsa-3072 +2 .* current +sha256:"
expect_status 0 "$VMBAK" keyvault key list kv --json </dev/null
python3 - "$OUT" <<'EOF' || fail "key list --json is not as expected"
import json, sys
keys = json.load(open(sys.argv[1]))
assert [k["name"] for k in keys] == ["aes", "kek"], keys
k = keys[1]
assert k["type"] == "rsa-3072" and k["current"] == 2 and len(k["versions"]) == 2, k
assert [v["state"] for v in k["versions"]] == ["enabled", "current"], k
assert k["versions"][0]["fingerprint"] != k["versions"][1]["fingerprint"]
assert all(v["fingerprint"].startswith("sha256:") for v in k["versions"])
assert keys[0]["type"] == "aes-256" and keys[0]["versions"][0]["fingerprint"].startswith("hmac-")
EOF

note "secrets: every one needs the passphrase, an RSA-wrapped one too"
printf 'first secret value' >s1
printf 'second secret\nvalue\n' >s2
: >empty
s0=$(sum)
expect_status 2 "$VMBAK" keyvault secret set kv os-rsa --value-file s1 --kek kek </dev/null
expect_stderr "no passphrase for key vault 'kv'"
expect_status 1 "$VMBAK" keyvault secret set kv os-rsa --value-file s1 --kek kek \
	--passphrase-file wrong
expect_stderr "wrong passphrase"
unchanged "$s0"
expect_status 0 "$VMBAK" keyvault secret set kv os-rsa --value-file s1 --kek kek \
	--passphrase-file kvpass
expect_stdout "^secret 'os-rsa' version 1, wrapped by key 'kek' version 2$"
s0=$(sum)
expect_status 2 "$VMBAK" keyvault secret set kv os-none --value-file s1 </dev/null
expect_stderr "no passphrase"
expect_status 2 "$VMBAK" keyvault secret set kv os-aes --value-file s1 --kek aes </dev/null
expect_status 1 "$VMBAK" keyvault secret set kv os-none --value-file s1 --passphrase-file wrong
expect_stderr "wrong passphrase"
expect_status 1 "$VMBAK" keyvault secret set kv x --value-file s1 --kek nokey --passphrase-file kvpass </dev/null
expect_stderr "no key 'nokey'"
expect_status 1 "$VMBAK" keyvault secret set kv x --value-file empty --kek kek --passphrase-file kvpass </dev/null
expect_stderr "is empty"
expect_status 1 "$VMBAK" keyvault secret set kv x --value-file nofile --kek kek --passphrase-file kvpass </dev/null
expect_status 2 "$VMBAK" keyvault secret set kv x --kek kek </dev/null
expect_stderr "use --value-file"
unchanged "$s0"
expect_status 0 "$VMBAK" keyvault secret set kv os-none --value-file s1 --passphrase-file kvpass
expect_stdout "encrypted under the key vault's own key"
expect_status 0 "$VMBAK" keyvault secret set kv os-aes --value-file s1 --kek aes \
	--passphrase-file kvpass
if grep -q 'first secret' kv/keyvault.json; then
	fail "a secret value is in the key vault file in clear"
fi
expect_status 0 "$VMBAK" keyvault secret list kv --json </dev/null
python3 - "$OUT" <<'EOF' || fail "secret list --json is not as expected"
import json, sys
s = {x["name"]: x for x in json.load(open(sys.argv[1]))}
assert sorted(s) == ["os-aes", "os-none", "os-rsa"], s
assert s["os-rsa"]["versions"][0]["kek"] == {"name": "kek", "version": 2}, s
assert s["os-rsa"]["versions"][0]["algorithm"] == "rsa-oaep-sha256+aes-256-gcm"
assert s["os-aes"]["versions"][0]["algorithm"] == "aes-256-kwp+aes-256-gcm"
assert s["os-none"]["versions"][0]["kek"] is None
assert "value" not in json.dumps(s)
EOF
expect_status 0 "$VMBAK" keyvault secret list kv </dev/null
expect_stdout "^os-rsa +1 .* kek v2 +rsa-oaep-sha256"

note "ingest with escrow: refusals leave no recovery point"
truncate -s 2M os.img data.img aux.img
printf 'os disk' | dd of=os.img conv=notrunc status=none
printf 'data disk' | dd of=data.img conv=notrunc status=none
expect_status 0 "$VMBAK" init v
disks=(--disk os=os.img --disk data=data.img --disk aux=aux.img)
expect_status 1 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow os=nosecret </dev/null
expect_stderr "no secret 'nosecret' in key vault 'kv'"
expect_status 2 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow swap=os-rsa </dev/null
expect_stderr "--escrow names disk 'swap', which no --disk gives"
expect_status 2 "$VMBAK" ingest v vm1 "${disks[@]}" --escrow os=os-rsa </dev/null
expect_stderr "needs --keyvault"
expect_status 2 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv </dev/null
expect_status 2 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow os=os-rsa \
	--escrow os=os-aes </dev/null
expect_status 2 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow 'os=bad/name' </dev/null
expect_status 1 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault nokv --escrow os=os-rsa </dev/null
# An AES KEK or no KEK needs the key vault's passphrase at ingest.
expect_status 2 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow data=os-aes </dev/null
expect_stderr "no passphrase for key vault"
expect_status 1 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow aux=os-none \
	--keyvault-passphrase-file wrong </dev/null
expect_stderr "wrong passphrase"
expect_status 0 "$VMBAK" list v --json
[ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$OUT")" = 0 ] ||
	fail "a refused ingest created a recovery point"

expect_status 0 "$VMBAK" ingest v vm1 "${disks[@]}" --keyvault kv --escrow os=os-rsa \
	--escrow data=os-aes --escrow aux=os-none --keyvault-passphrase-file kvpass </dev/null
rp=$(tail -n 1 "$OUT")
# The RSA one alone, without any key vault passphrase.
expect_status 0 "$VMBAK" ingest v vm2 --disk os=os.img --keyvault kv --escrow os=os-rsa </dev/null
rp2=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" list v --json
python3 - "$OUT" <<'EOF' || fail "list --json does not name the escrowed disks"
import json, sys
pts = {p["vm"]: p for p in json.load(open(sys.argv[1]))}
assert sorted(pts["vm1"]["escrow"]) == ["aux", "data", "os"], pts
assert pts["vm2"]["escrow"] == ["os"], pts
EOF

vmount v mnt
for d in os data aux; do
	[ "$(stat -c %a "mnt/vm1/$rp/$d.key")" = 400 ] || fail "mnt/vm1/$rp/$d.key is not mode 400"
	cp "mnt/vm1/$rp/$d.key" "$d.key"
done
cp "mnt/vm2/$rp2/os.key" vm2.key
python3 - "mnt/vm1/$rp/manifest.json" <<'EOF' || fail "manifest.json does not list the escrow"
import json, sys
assert sorted(json.load(open(sys.argv[1]))["escrow"]) == ["aux", "data", "os"]
EOF

note "unwrap"
for d in os data aux; do
	expect_status 0 "$VMBAK" keyvault unwrap kv "$d.key" --passphrase-file kvpass
	cmp "$OUT" s1 || fail "unwrap of $d.key to stdout is not the secret"
done
VMBAK_KEYVAULT_PASSPHRASE_FILE=$TESTTMP/kvpass expect_status 0 "$VMBAK" keyvault unwrap kv \
	"mnt/vm1/$rp/os.key" --output out.bin
expect_stdout "^secret 'os-rsa' version 1 \(VM 'vm1', disk 'os', point $rp\) written to 'out.bin'$"
[ "$(stat -c %a out.bin)" = 600 ] || fail "out.bin is mode $(stat -c %a out.bin), not 600"
cmp out.bin s1 || fail "out.bin is not the secret"
rm -f out.bin

note "unwrap --output refuses a target that is not a regular file"
# A private device node (never the system's /dev/null), a FIFO and a symlink to /dev/null:
# the atomic write would replace each with a regular file holding the secret.
mknod nulldev c 1 3 || fail "cannot make a device node"
mkfifo fifo
ln -s /dev/null devlink
for t in nulldev fifo devlink; do
	before=$(stat -c %F "$t")
	expect_status 1 "$VMBAK" keyvault unwrap kv os.key --output "$t" --passphrase-file kvpass
	expect_stderr "^vmbak: cannot write '$t': it exists and is not a regular file"
	[ "$(stat -c %F "$t")" = "$before" ] || fail "unwrap --output $t replaced it"
	[ ! -s "$OUT" ] || fail "unwrap --output $t printed something"
done
[ "$(stat -c %F /dev/null)" = "character special file" ] || fail "/dev/null is not a device"
rm -f nulldev fifo devlink

note "unwrap refusals write nothing"
# check_refused STATUS ERE ARGS...: unwrap fails with STATUS, says ERE, writes no output.
check_refused() {
	local st=$1 ere=$2
	shift 2
	rm -f out.bin
	expect_status "$st" "$VMBAK" keyvault unwrap "$@" --output out.bin </dev/null
	expect_stderr "$ere"
	[ ! -e out.bin ] || fail "a refused unwrap wrote out.bin"
	[ ! -s "$OUT" ] || fail "a refused unwrap printed something on stdout"
}
check_refused 2 "no passphrase for key vault" kv os.key
check_refused 1 "wrong passphrase for key vault 'kv'" kv os.key --passphrase-file wrong
check_refused 1 "not an escrow blob" kv s1 --passphrase-file kvpass
check_refused 1 "not an escrow blob" kv kv/keyvault.json --passphrase-file kvpass
check_refused 1 "not an escrow blob" kv empty --passphrase-file kvpass
check_refused 1 "cannot read escrow blob 'nofile'" kv nofile --passphrase-file kvpass
check_refused 1 "is not a key vault" v os.key --passphrase-file kvpass
head -c 300 os.key >cut.key
check_refused 1 "not an escrow blob" kv cut.key --passphrase-file kvpass

expect_status 0 "$VMBAK" keyvault init kv2 --passphrase-file kvpass
check_refused 1 "belongs to key vault [0-9a-f-]{36}, not to 'kv2'" kv2 os.key --passphrase-file kvpass

note "tampered blobs: every field of the RSA one, those that differ of the AES and keyless ones"
mkdir tampered
python3 - tampered os.key data.key aux.key <<'EOF' || fail "cannot make tampered blobs"
import json, os, sys
out = sys.argv[1]
def change(v):
    if isinstance(v, bool) or v is None:
        return 1
    if isinstance(v, int):
        return v + 1
    # Keep the value well-formed (base64 stays base64, names stay names).
    c = v[0]
    return ("B" if c == "A" else "A" if c.isalpha() else "3" if c == "2" else "2") + v[1:]
n = 0
for src in sys.argv[2:]:
    base = os.path.basename(src).split(".")[0]
    b = json.load(open(src))
    paths = [(k,) for k in b if not isinstance(b[k], dict)]
    paths += [(k, s) for k in b if isinstance(b[k], dict) for s in b[k]]
    if b["kek"] is None:
        paths.append(("kek",))
    if base != "os":
        # Unwrapping takes a second under load: the unit test changes every field of these.
        paths = [p for p in paths if p[0] in ("kek", "algorithm", "wrapped_key", "secret")]
    for p in paths:
        t = json.loads(json.dumps(b))
        o = t
        for k in p[:-1]:
            o = o[k]
        o[p[-1]] = change(o[p[-1]])
        open(os.path.join(out, "%s.%s" % (base, ".".join(p))), "w").write(json.dumps(t, indent=2))
        n += 1
    if base != "os":
        continue
    # An extra field and a missing field are refused too.
    t = dict(b, extra=1)
    open(os.path.join(out, base + ".+extra"), "w").write(json.dumps(t))
    t = dict(b)
    del t["rp"]
    open(os.path.join(out, base + ".-rp"), "w").write(json.dumps(t))
print(n)
EOF
count=0
for f in tampered/*; do
	rm -f out.bin
	st=0
	"$VMBAK" keyvault unwrap kv "$f" --output out.bin --passphrase-file kvpass >"$OUT" 2>"$ERR" ||
		st=$?
	[ "$st" -eq 1 ] || { cat "$ERR" >&2; fail "unwrap of tampered blob $f exited with $st, not 1"; }
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "unwrap of $f did not print exactly one line"
	[ ! -e out.bin ] || fail "unwrap of tampered blob $f wrote out.bin"
	count=$((count + 1))
done
[ "$count" -ge 30 ] || fail "only $count tampered blobs were made"
note "$count tampered blobs refused"
# The untampered ones still unwrap (the loop did not just fail for every file).
expect_status 0 "$VMBAK" keyvault unwrap kv data.key --passphrase-file kvpass

note "a blob with a field missing, empty or cut is refused before the passphrase is asked"
mkdir short
python3 - os.key short <<'EOF2' || fail "cannot make blobs with missing fields"
import json, os, sys
b = json.load(open(sys.argv[1]))
for f in ("wrapped_key", "nonce", "tag", "ciphertext"):
    for how, val in (("missing", None), ("empty", ""), ("short", b[f][:8])):
        t = dict(b)
        if val is None:
            del t[f]
        else:
            t[f] = val
        open(os.path.join(sys.argv[2], f + "." + how), "w").write(json.dumps(t))
t = json.loads(json.dumps(b))
t["kek"]["fingerprint"] = ""
open(os.path.join(sys.argv[2], "fingerprint.empty"), "w").write(json.dumps(t))
EOF2
for f in short/*; do
	# No passphrase source at all: a blob that got past the first check would stop at
	# "no passphrase" (status 2) instead.
	expect_status 1 "$VMBAK" keyvault unwrap kv "$f" </dev/null
	expect_stderr "^vmbak: '$f' is not an escrow blob \(malformed or altered\)$"
done

note "unwrap names the key vault, not the blob, when the key vault is damaged"
cp -a kv kvd
python3 - kvd/keyvault.json <<'EOF2' || fail "cannot damage kvd"
import json, sys
k = json.load(open(sys.argv[1]))
p = k["keys"]["kek"]["versions"][1]["private"]
p["ciphertext"] = ("B" if p["ciphertext"][0] == "A" else "A") + p["ciphertext"][1:]
open(sys.argv[1], "w").write(json.dumps(k, indent=2))
EOF2
expect_status 1 "$VMBAK" keyvault unwrap kvd os.key --passphrase-file kvpass
expect_stderr "key vault 'kvd'|key vault file 'kvd/keyvault.json'"
grep -q "escrow blob" "$ERR" && fail "unwrap blamed the blob for a damaged key vault"
rm -rf kvd

note "scrypt parameters that cost a minute per unlock are refused"
cp -a kv kvs
python3 - kvs/keyvault.json <<'EOF2' || fail "cannot change kvs"
import json, sys
k = json.load(open(sys.argv[1]))
k["kdf"].update(n=1 << 22, r=2, p=16)
open(sys.argv[1], "w").write(json.dumps(k, indent=2))
EOF2
before=$(sha256sum kvs/keyvault.json)
expect_status 1 "$VMBAK" keyvault key list kvs </dev/null
expect_stderr "^vmbak: key vault file 'kvs/keyvault.json': scrypt parameters n=4194304 r=2 p=16 cost more than this build allows"
[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line for costly scrypt parameters"
[ "$(sha256sum kvs/keyvault.json)" = "$before" ] || fail "a refused key vault was changed"
rm -rf kvs

note "rotation: old blobs keep working; restore puts a secret back as a new version"
expect_status 0 "$VMBAK" keyvault key rotate kv kek --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault key rotate kv aes --passphrase-file kvpass
expect_status 0 "$VMBAK" keyvault secret set kv os-rsa --value-file s2 --kek kek \
	--passphrase-file kvpass </dev/null
expect_stdout "version 2, wrapped by key 'kek' version 3"
for d in os data aux; do
	expect_status 0 "$VMBAK" keyvault unwrap kv "$d.key" --passphrase-file kvpass
	cmp "$OUT" s1 || fail "after rotation, $d.key does not unwrap to the secret"
done
expect_status 0 "$VMBAK" keyvault restore kv vm2.key --passphrase-file kvpass
expect_stdout "^secret 'os-rsa' restored as version 3, wrapped by key 'kek' version 3 \(the blob held version 1"
expect_status 0 "$VMBAK" keyvault restore kv aux.key --passphrase-file kvpass
expect_stdout "^secret 'os-none' restored as version 2, encrypted under"
s0=$(sum)
expect_status 1 "$VMBAK" keyvault restore kv tampered/os.vm --passphrase-file kvpass
expect_status 2 "$VMBAK" keyvault restore kv os.key </dev/null
unchanged "$s0"
# The restored version is the current one: a new point escrows it, and it is the old value.
expect_status 0 "$VMBAK" ingest v vm3 --disk os=os.img --keyvault kv --escrow os=os-rsa </dev/null
rp3=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" keyvault unwrap kv "mnt/vm3/$rp3/os.key" --passphrase-file kvpass
cmp "$OUT" s1 || fail "the restored secret version is not the escrowed value"
grep -q '"version": 3' "mnt/vm3/$rp3/os.key" || fail "the new blob does not name version 3"

note "KEK substitution: a version added without the passphrase is refused"
# The attacker can write the file but lacks the passphrase: a version with their own public key.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out evil.pem 2>/dev/null ||
	fail "cannot make an RSA key"
openssl pkey -in evil.pem -pubout -outform DER -out evil.der || fail "cannot export evil.der"
cp -a kv kvx
python3 - kvx/keyvault.json evil.der <<'EOF2' || fail "cannot add a version to kvx"
import base64, hashlib, json, sys
k = json.load(open(sys.argv[1]))
der = open(sys.argv[2], "rb").read()
vs = k["keys"]["kek"]["versions"]
v = dict(vs[-1], version=len(vs) + 1, public=base64.b64encode(der).decode(),
         fingerprint="sha256:" + hashlib.sha256(der).hexdigest())
vs.append(v)
open(sys.argv[1], "w").write(json.dumps(k, indent=2))
EOF2
sx=$(sha256sum kvx/keyvault.json)
expect_status 1 "$VMBAK" keyvault key list kvx </dev/null
expect_stderr "^vmbak: key vault file 'kvx/keyvault.json' does not verify: it was changed without"
expect_status 1 "$VMBAK" keyvault secret set kvx new --value-file s2 --kek kek \
	--passphrase-file kvpass
expect_stderr "does not verify"
expect_status 1 "$VMBAK" ingest v vmx --disk os=os.img --keyvault kvx --escrow os=os-rsa </dev/null
expect_stderr "does not verify"
[ "$(sha256sum kvx/keyvault.json)" = "$sx" ] || fail "a refused key vault was changed"

note "... and so is a file re-signed with the attacker's own signing key"
openssl genpkey -algorithm ED25519 -out evil-sign.pem || fail "cannot make an Ed25519 key"
openssl pkey -in evil-sign.pem -pubout -outform DER -out evil-sign.der
python3 - kvx/keyvault.json evil-sign.der canon.bin <<'EOF2' || fail "cannot re-sign kvx"
import base64, json, sys
k = json.load(open(sys.argv[1]))
k["signing"]["public"] = base64.b64encode(open(sys.argv[2], "rb").read()[-32:]).decode()
k["generation"] += 1
del k["signature"]
canon = json.dumps(k, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
open(sys.argv[3], "wb").write(b"vmbak-keyvault-signature v1\0" + canon.encode())
open(sys.argv[1], "w").write(json.dumps(k, indent=2))
EOF2
openssl pkeyutl -sign -rawin -inkey evil-sign.pem -in canon.bin -out canon.sig ||
	fail "cannot sign canon.bin"
python3 - kvx/keyvault.json canon.sig <<'EOF2' || fail "cannot add the signature"
import base64, json, sys
k = json.load(open(sys.argv[1]))
k["signature"] = base64.b64encode(open(sys.argv[2], "rb").read()).decode()
open(sys.argv[1], "w").write(json.dumps(k, indent=2))
EOF2
# Without the passphrase, a file signed by any key reads (key list cannot tell) ...
expect_status 0 "$VMBAK" keyvault key list kvx </dev/null
# ... but the passphrase finds the signing key is not the owner's,
sx=$(sha256sum kvx/keyvault.json)
expect_status 1 "$VMBAK" keyvault secret set kvx new --value-file s2 --kek kek \
	--passphrase-file kvpass
expect_stderr "^vmbak: key vault file 'kvx/keyvault.json' does not verify: it was signed by another key"
expect_status 1 "$VMBAK" keyvault verify kvx --passphrase-file kvpass
[ "$(sha256sum kvx/keyvault.json)" = "$sx" ] || fail "a refused key vault was changed"
# ... and a vault that has escrowed to this key vault before refuses it.
expect_status 1 "$VMBAK" ingest v vmx --disk os=os.img --keyvault kvx --escrow os=os-rsa </dev/null
expect_stderr "^vmbak: key vault 'kvx' \(id [0-9a-f-]{36}\) is signed by another key than vault 'v' has seen: it was replaced"
[ "$(wc -l <"$ERR")" -eq 1 ] || fail "more than one line for a replaced key vault"
expect_status 0 "$VMBAK" list v --json
python3 -c 'import json,sys; assert all(p["vm"] != "vmx" for p in json.load(open(sys.argv[1])))' \
	"$OUT" || fail "a refused ingest made a point"
rm -rf kvx

note "rollback: an older copy of the key vault is refused by a vault that saw a newer one"
cp -a kv kv-old
expect_status 0 "$VMBAK" keyvault key rotate kv kek --passphrase-file kvpass
expect_status 0 "$VMBAK" ingest v vm4 --disk os=os.img --keyvault kv --escrow os=os-rsa </dev/null
cp kv/keyvault.json kv-new.json
cp kv-old/keyvault.json kv/keyvault.json
expect_status 1 "$VMBAK" ingest v vm4 --disk os=os.img --keyvault kv --escrow os=os-rsa </dev/null
expect_stderr "^vmbak: key vault 'kv' is at generation [0-9]+, older than generation [0-9]+ that vault 'v' has seen: an older copy was put back"
cp kv-new.json kv/keyvault.json
expect_status 0 "$VMBAK" ingest v vm4 --disk os=os.img --keyvault kv --escrow os=os-rsa </dev/null
rm -rf kv-old kv-new.json

note "a signature removed is refused by ingest and found out by the passphrase"
cp -a kv kvs
python3 - kvs/keyvault.json <<'EOF2' || fail "cannot strip kvs"
import json, sys
k = json.load(open(sys.argv[1]))
for f in ("generation", "signing", "signature"):
    del k[f]
open(sys.argv[1], "w").write(json.dumps(k, indent=2))
EOF2
sx=$(sha256sum kvs/keyvault.json)
expect_status 1 "$VMBAK" ingest v vm5 --disk os=os.img --keyvault kvs --escrow os=os-rsa </dev/null
expect_stderr "^vmbak: key vault 'kvs' is not signed .*run 'vmbak keyvault verify kvs'"
expect_status 1 "$VMBAK" keyvault verify kvs --passphrase-file kvpass
expect_stderr "^vmbak: key vault file 'kvs/keyvault.json' has lost its signature"
[ "$(sha256sum kvs/keyvault.json)" = "$sx" ] || fail "a refused key vault was changed"
rm -rf kvs

note "verify"
expect_status 0 "$VMBAK" keyvault verify kv --passphrase-file kvpass
expect_stdout "^key vault 'kv' \(id [0-9a-f-]{36}\) verifies: generation [0-9]+, signing key sha256:[0-9a-f]{64}$"
