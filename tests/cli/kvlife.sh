#!/usr/bin/env bash
# Key lifecycle and audit without a mount: KEK version states (disable, enable, retire), ingest
# refused for a disabled version, rewrap filters (--from, --to, VM, VM/RP), verify --keyvault,
# the audit log (a changed, removed or reordered line, a truncated log and a torn last line are
# each found; vault key slot changes logged without the key vault passphrase), and bad input for
# every new argument: one line, non-zero exit, key vault and vault unchanged byte for byte.
. "$SRCDIR/tests/lib.sh"

need_cmd python3 sha256sum mdb_dump
need_programs
cd "$TESTTMP"

printf 'vault passphrase\n' >vpass
printf 'key vault passphrase\n' >kvpass
chmod 600 vpass kvpass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/vpass VMBAK_KEYVAULT_PASSPHRASE_FILE=$TESTTMP/kvpass

printf 'secret one' >s1
printf 'secret two' >s2
truncate -s 1M d1.img d2.img

# snapshot: every byte of the key vault and of the vault's databases.
snapshot() {
	sha256sum kv/* v/vmbak-vault.json
	local db
	for db in meta vms2 rps2 rpnames2 lineages2 idx dmaps chunks; do
		mdb_dump -s "$db" v 2>/dev/null | sed '1,/^HEADER=END$/d' | sha256sum
	done
}
# refused STATUS ERE CMD...: CMD fails with STATUS, one line matching ERE, nothing changed.
refused() {
	local st=$1 re=$2
	shift 2
	snapshot >before
	expect_status "$st" "$@" </dev/null
	expect_stderr "$re"
	snapshot >after
	cmp -s before after || { diff before after >&2; fail "'$*' changed the key vault or vault"; }
}
blob_kek() { python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print("%s/%s" % (b["kek"]["name"], b["kek"]["version"]) if b["kek"] else "-")' "$1"; }

expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" keyvault init kv
expect_status 0 "$VMBAK" keyvault key create kv ka --type aes-256
expect_status 0 "$VMBAK" keyvault key create kv kr --type rsa-3072
expect_status 0 "$VMBAK" keyvault secret set kv s1 --value-file s1 --kek ka
expect_status 0 "$VMBAK" keyvault secret set kv s2 --value-file s2 --kek kr
expect_status 0 "$VMBAK" ingest v vm1 --disk a=d1.img --disk b=d2.img --keyvault kv \
	--escrow a=s1 --escrow b=s2 </dev/null
rp1=$(tail -n 1 "$OUT")
expect_status 0 "$VMBAK" ingest v vm2 --disk a=d1.img --keyvault kv --escrow a=s1 </dev/null
rp2=$(tail -n 1 "$OUT")

note "key list: states, and blob counts with --vault"
expect_status 0 "$VMBAK" keyvault key list kv --json --vault v
python3 - "$OUT" <<'EOF' || fail "key list --json --vault"
import json, sys
ks = {k["name"]: k for k in json.load(open(sys.argv[1]))}
assert [(v["state"], v["blobs"]) for v in ks["ka"]["versions"]] == [("current", 2)], ks
assert [(v["state"], v["blobs"]) for v in ks["kr"]["versions"]] == [("current", 1)], ks
EOF
expect_status 0 "$VMBAK" keyvault key list kv
expect_stdout "^ka +aes-256 +1 .* current +hmac-sha256:"

note "a disabled version wraps nothing new: ingest refused, nothing stored"
expect_status 0 "$VMBAK" keyvault key disable kv ka/1
expect_stdout "is now disabled"
expect_status 0 "$VMBAK" keyvault key disable kv ka/1
expect_stdout "was already disabled"
refused 1 "secret 's1' version 1 is wrapped by key 'ka' version 1, which is disabled" \
	"$VMBAK" ingest v vm1 --disk a=d1.img --keyvault kv --escrow a=s1
refused 1 "key 'ka' version 1 .* is disabled" \
	"$VMBAK" keyvault secret set kv s1 --value-file s2 --kek ka
note "disabled still unwraps"
expect_status 0 "$VMBAK" verify v --keyvault kv
expect_stdout "^vm1/$rp1 a: escrow ok \(secret 's1' version 1, key 'ka' version 1\)$"
expect_stdout "^escrow: 3 blobs unwrapped: 0 failed$"
grep -q 'secret one\|secret two' "$OUT" && fail "verify printed a secret"
expect_status 0 "$VMBAK" keyvault key enable kv ka/1
expect_stdout "is now enabled"

note "rewrap filters: --from with a version, a VM, VM/RP, --to another KEK"
expect_status 0 "$VMBAK" keyvault key rotate kv ka
expect_status 0 "$VMBAK" keyvault key rotate kv kr
expect_status 0 "$VMBAK" rewrap v --keyvault kv --from ka/1 vm2
expect_stdout "^vm2/$rp2 a: key 'ka' version 1 -> key 'ka' version 2$"
expect_stdout "^rewrap: 1 blob in 1 point rewrapped"
expect_status 0 "$VMBAK" rewrap v --keyvault kv --from kr "vm1/$rp1"
expect_stdout "^vm1/$rp1 b: key 'kr' version 1 -> key 'kr' version 2$"
expect_stdout "^rewrap: 1 blob in 1 point rewrapped, 0 already current, 1 left alone"
expect_status 0 "$VMBAK" rewrap v --keyvault kv --to kr vm1/latest --from ka
expect_stdout "^vm1/$rp1 a: key 'ka' version 1 -> key 'kr' version 2$"
expect_status 0 "$VMBAK" keyvault key list kv --json --vault v
python3 - "$OUT" <<'EOF' || fail "counts after rewrap"
import json, sys
ks = {k["name"]: k for k in json.load(open(sys.argv[1]))}
assert [v["blobs"] for v in ks["ka"]["versions"]] == [0, 1], ks["ka"]
assert [v["blobs"] for v in ks["kr"]["versions"]] == [0, 2], ks["kr"]
EOF

note "retire: refused while a blob in a named vault uses the version"
expect_status 0 "$VMBAK" keyvault secret set kv s1 --value-file s1 --kek ka
expect_status 0 "$VMBAK" keyvault secret set kv s2 --value-file s2 --kek kr
refused 1 "cannot retire key 'ka' version 2: 1 escrow blob in vault 'v' still uses it" \
	"$VMBAK" keyvault key retire kv ka/2 --vault v
expect_status 0 "$VMBAK" keyvault key retire kv ka/1 --vault v
expect_status 0 "$VMBAK" keyvault key retire kv kr/1 --vault v
expect_status 0 "$VMBAK" verify v --keyvault kv
expect_stdout "^escrow: 3 blobs unwrapped: 0 failed$"
expect_status 0 "$VMBAK" keyvault key disable kv kr/2
refused 1 "key 'kr' version 2 .* is disabled" "$VMBAK" rewrap v --keyvault kv --to kr vm2
expect_status 0 "$VMBAK" keyvault key enable kv kr/2
expect_status 0 "$VMBAK" keyvault key enable kv ka/1

note "verify --keyvault of one VM"
expect_status 0 "$VMBAK" verify v vm2 --keyvault kv
expect_stdout "^escrow: 1 blob unwrapped: 0 failed$"

note "vault key slot changes are logged without the key vault passphrase"
printf 'second vault passphrase\n' >vpass2
expect_status 0 env -u VMBAK_KEYVAULT_PASSPHRASE_FILE "$VMBAK" key add v \
	--new-passphrase-file vpass2 --name second --keyvault kv
expect_status 0 "$VMBAK" keyvault audit kv --json
python3 - "$OUT" <<'EOF' || fail "key add is not in the audit log, or is vouched for"
import json, sys
d = json.load(open(sys.argv[1]))
e = d["events"][-1]
assert e["op"] == "vault-key-add" and e["authenticated"] is False, e
assert d["intact"] and d["authenticated"] == d["lines"] - 1, d
EOF
expect_status 0 "$VMBAK" keyvault key disable kv ka/1
expect_status 0 "$VMBAK" keyvault audit kv --json
python3 - "$OUT" <<'EOF' || fail "the next authenticated line does not vouch for key add"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["intact"] and d["authenticated"] == d["lines"] == d["signed_lines"], d
assert [e["op"] for e in d["events"]][-2:] == ["vault-key-add", "key-disable"], d["events"]
EOF
expect_status 0 "$VMBAK" keyvault audit kv
expect_stdout " key-disable ok key=ka/1$"

note "the audit log: a changed, removed, moved line, a truncated log and a torn line"
cp kv/audit.log audit.good
sed -i '2s/"user":"[^"]*"/"user":"mallory"/' kv/audit.log
expect_status 3 "$VMBAK" keyvault audit kv
expect_stderr "chain breaks at line 2"
cp audit.good kv/audit.log
sed -i 3d kv/audit.log
expect_status 3 "$VMBAK" keyvault audit kv
expect_stderr "chain breaks at line 3"
cp audit.good kv/audit.log
{ sed -n 1p audit.good; sed -n 3p audit.good; sed -n 2p audit.good; sed -n '4,$p' audit.good; } >kv/audit.log
expect_status 3 "$VMBAK" keyvault audit kv
expect_stderr "chain breaks at line 2"
head -n 3 audit.good >kv/audit.log
expect_status 3 "$VMBAK" keyvault audit kv
expect_stderr "fewer than the [0-9]+ the key vault signed"
cp audit.good kv/audit.log
printf '{"seq":99,"time":"20' >>kv/audit.log
expect_status 3 "$VMBAK" keyvault audit kv
expect_stderr "last line \([0-9]+\) is incomplete"
expect_status 0 "$VMBAK" keyvault key enable kv ka/1
expect_status 0 "$VMBAK" keyvault audit kv --json
python3 - "$OUT" <<'EOF' || fail "the torn line was not repaired"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["intact"], d
assert [e["op"] for e in d["events"]][-2:] == ["audit-repair", "key-enable"], d["events"]
EOF
note "a wrong passphrase: audit refused, an unwrap attempt logged unauthenticated"
printf 'wrong\n' >badpass
expect_status 1 "$VMBAK" keyvault audit kv --passphrase-file badpass
expect_stderr "wrong passphrase"

note "bad input for every new argument: one line, non-zero, nothing changed"
refused 2 "rewrap needs --keyvault" "$VMBAK" rewrap v
refused 2 "missing VAULT" "$VMBAK" rewrap --keyvault kv
refused 2 "empty argument for '--keyvault'" "$VMBAK" rewrap v --keyvault ""
refused 1 "is not a key vault|cannot open key vault" "$VMBAK" rewrap v --keyvault nokv
refused 2 "invalid --from" "$VMBAK" rewrap v --keyvault kv --from ""
refused 2 "invalid --from" "$VMBAK" rewrap v --keyvault kv --from ka/0
refused 2 "invalid --from" "$VMBAK" rewrap v --keyvault kv --from ka/x
refused 2 "invalid --from" "$VMBAK" rewrap v --keyvault kv --from ka/1/2
refused 2 "invalid --from" "$VMBAK" rewrap v --keyvault kv --from "../x"
refused 2 "invalid --from" "$VMBAK" rewrap v --keyvault kv --from ka/99999999999
refused 1 "no key 'nokey'" "$VMBAK" rewrap v --keyvault kv --from nokey
refused 1 "no version 9 of key 'ka'" "$VMBAK" rewrap v --keyvault kv --from ka/9
refused 2 "invalid --to" "$VMBAK" rewrap v --keyvault kv --to "a b"
refused 2 "invalid --to" "$VMBAK" rewrap v --keyvault kv --to ""
refused 1 "no key 'nokey'" "$VMBAK" rewrap v --keyvault kv --to nokey
refused 2 "invalid VM name" "$VMBAK" rewrap v --keyvault kv "../vm"
refused 2 "invalid point id" "$VMBAK" rewrap v --keyvault kv "vm1/notanid"
refused 1 "no VM 'vm9'" "$VMBAK" rewrap v --keyvault kv vm9
refused 1 "no recovery point 'vm1/2020-01-01T00:00:00Z'" \
	"$VMBAK" rewrap v --keyvault kv vm1/2020-01-01T00:00:00Z
refused 2 "unexpected argument" "$VMBAK" rewrap v --keyvault kv vm1 extra
refused 2 "no --passphrase option" "$VMBAK" rewrap v --keyvault kv --passphrase=x
refused 2 "empty file name for --keyvault-passphrase-file" \
	"$VMBAK" rewrap v --keyvault kv --keyvault-passphrase-file ""
refused 1 "wrong passphrase for key vault" \
	"$VMBAK" rewrap v --keyvault kv --keyvault-passphrase-file badpass
refused 1 "wrong passphrase|cannot open vault|cannot unlock" \
	"$VMBAK" rewrap v --keyvault kv --passphrase-file badpass
refused 2 "expected NAME/VERSION" "$VMBAK" keyvault key disable kv ka
refused 2 "expected NAME/VERSION" "$VMBAK" keyvault key enable kv ""
refused 2 "invalid version" "$VMBAK" keyvault key disable kv ka/0
refused 2 "invalid version" "$VMBAK" keyvault key disable kv ka/-1
refused 2 "invalid version" "$VMBAK" keyvault key disable kv ka/1x
refused 2 "invalid key name" "$VMBAK" keyvault key disable kv .x/1
refused 1 "no key 'nokey'" "$VMBAK" keyvault key disable kv nokey/1
refused 1 "no version 7 of key 'ka'" "$VMBAK" keyvault key retire kv ka/7 --vault v
refused 2 "retire needs --vault" "$VMBAK" keyvault key retire kv ka/1
refused 2 "option '--vault' does not apply to 'keyvault key disable'" \
	"$VMBAK" keyvault key disable kv ka/1 --vault v
refused 2 "option '--vault' does not apply" "$VMBAK" keyvault secret list kv --vault v
refused 2 "empty argument for '--vault'" "$VMBAK" keyvault key retire kv ka/1 --vault ""
refused 1 "novault" "$VMBAK" keyvault key retire kv ka/1 --vault novault
refused 1 "novault" "$VMBAK" keyvault key list kv --vault v --vault novault
refused 1 "wrong passphrase for key vault" \
	"$VMBAK" keyvault key disable kv ka/1 --passphrase-file badpass
refused 2 "unexpected argument" "$VMBAK" keyvault audit kv extra
refused 2 "option '--vault' does not apply" "$VMBAK" keyvault audit kv --vault v
refused 1 "is not a key vault|cannot open key vault" "$VMBAK" keyvault audit nokv
refused 2 "--check-escrow needs --keyvault" "$VMBAK" verify v --check-escrow
refused 2 "--keyvault-passphrase-file needs --keyvault" \
	"$VMBAK" verify v --keyvault-passphrase-file kvpass
refused 2 "empty argument for '--keyvault'" "$VMBAK" verify v --keyvault ""
refused 1 "is not a key vault|cannot open key vault" "$VMBAK" verify v --keyvault nokv
refused 1 "wrong passphrase for key vault" \
	"$VMBAK" verify v --keyvault kv --keyvault-passphrase-file badpass
refused 1 "is not a key vault|cannot open key vault" \
	"$VMBAK" key add v --new-passphrase-file vpass2 --name third --keyvault nokv
refused 2 "empty argument for '--keyvault'" \
	"$VMBAK" key remove v second --keyvault ""
refused 2 "not for 'key list'" "$VMBAK" key list v --keyvault kv
