#!/usr/bin/env bash
# The config cannot be edited into something weaker: encryption, chunk size and dedup scope
# are bound to the vault's keys (and sealed in the database), so a config edited to
# "encryption": "none" (the downgrade of issue 10: the next ingest stored in clear), to another
# chunk size or dedup scope is refused with one line, and nothing is written. Dedup scope "vm":
# chunks are shared within a VM, never across VMs.
. "$SRCDIR/tests/lib.sh"

need_programs
need_cmd python3 mdb_dump
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
printf 'config test passphrase\n' >pass
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
python3 -c 'import sys; sys.stdout.write(("a secret line of the guest %d\n" * 1) * 0 + "".join("guest text line %06d\n" % i for i in range(40000)))' >disk.img

expect_status 0 "$VMBAK" init v
expect_status 0 "$VMBAK" ingest v vm1 --disk sda=disk.img
grep -qa 'guest text line' v/data.mdb && fail "an encrypted vault holds the disk's text"
cp v/vmbak-vault.json config.good

# edit FIELD VALUE: the config with one field changed (the rest as it was)
edit() {
	python3 - "$@" <<'PY'
import json, sys
c = json.load(open("config.good"))
field, value = sys.argv[1], sys.argv[2]
if field == "downgrade":
    c["encryption"] = "none"
    c.pop("keys", None)
    c["id_key"] = "00" * 32
else:
    c[field] = json.loads(value)
json.dump(c, open("v/vmbak-vault.json", "w"), indent=1)
PY
}

for how in downgrade chunk_size dedup_scope; do
	case "$how" in
	downgrade) edit downgrade x ;;
	chunk_size) edit chunk_size 4096 ;;
	dedup_scope) edit dedup_scope '"vm"' ;;
	esac
	note "config edited: $how"
	sum=$(sha256sum v/data.mdb)
	expect_status 1 "$VMBAK" ingest v vm2 --disk sda=disk.img
	[ "$(wc -l <"$ERR")" -eq 1 ] || fail "$how: more than one line on stderr"
	grep -qa 'guest text line' v/data.mdb && fail "$how: the ingest stored the disk in clear"
	[ "$(sha256sum v/data.mdb)" = "$sum" ] || fail "$how: the refused ingest changed data.mdb"
	expect_status 1 "$VMBAK" list v
	mkdir -p mnt
	expect_status 1 "$VMBAKFS" v mnt
	is_mounted mnt && fail "$how: vmbakfs mounted a vault with an edited config"
	# The keys are bound to the edited fields: the passphrase no longer opens them (exit 1),
	# or, downgraded, the database's sealed copy of the config does not match (exit 3).
	expect_status "$([ "$how" = downgrade ] && echo 3 || echo 1)" "$VMBAK" verify v
done
# Without a passphrase too (the downgraded config asks for none).
edit downgrade x
unset VMBAK_PASSPHRASE_FILE
expect_status 1 "$VMBAK" ingest v vm2 --disk sda=disk.img
expect_stderr "config does not match"
grep -qa 'guest text line' v/data.mdb && fail "the downgraded ingest stored the disk in clear"
export VMBAK_PASSPHRASE_FILE=$TESTTMP/pass
cp config.good v/vmbak-vault.json
expect_status 0 "$VMBAK" verify v

note "dedup scope vm"
expect_status 2 "$VMBAK" init vnone --encryption none --dedup-scope vm
expect_stderr "needs an encrypted vault"
[ -e vnone ] && fail "a refused init left a directory"
expect_status 2 "$VMBAK" init vbad --dedup-scope vms
expect_status 0 "$VMBAK" init vs --dedup-scope vm
expect_status 0 "$VMBAK" ingest vs vm1 --disk sda=disk.img
expect_status 0 "$VMBAK" info vs --json
c1=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["dedup_scope"] == "vm", d; print(d["chunks"])' "$OUT")
expect_status 0 "$VMBAK" ingest vs vm1 --disk sda=disk.img
expect_stdout ' 0 new chunks'
expect_status 0 "$VMBAK" ingest vs vm2 --disk sda=disk.img
expect_status 0 "$VMBAK" info vs --json
c2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunks"])' "$OUT")
[ "$c2" -eq $((2 * c1)) ] || fail "dedup scope vm: vm2 shared chunks with vm1 ($c1, then $c2)"
expect_status 0 "$VMBAK" verify vs
vmount vs mnt
cmp mnt/vm1/latest/sda.img disk.img || fail "vm1 reads wrong (scope vm)"
cmp mnt/vm2/latest/sda.img disk.img || fail "vm2 reads wrong (scope vm)"
vumount mnt
