#!/usr/bin/env bash
# The VM's configuration kept with a point: `ingest --config FILE` shows FILE as
# <vm>/<rp>/config, and a point's libvirt domain XML shows as <vm>/<rp>/domain.xml (made here
# through the test build's VMBAK_TEST_DOMAIN_XML, which keeps a file as --libvirt does; the
# libvirt test makes real ones). Both are in manifest.json, list --json and info; they are
# size-capped, committed with the point or not at all, and a damaged record never gives wrong
# bytes.
. "$SRCDIR/tests/lib.sh"
need_fuse
need_programs
need_cmd mdb_dump mdb_load python3
use_test_build

plain_vault
CAP=$((256 * 1024))
mk_sparse disk 4M >/dev/null
head -c 3000 /dev/urandom >cfg
printf 'name=vm1\nmemory=512\n\0binary after a NUL\n' >>cfg
cat >dom.xml <<'EOF'
<domain type='qemu'>
  <name>vm1</name>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
EOF

note "a point with a config file and a domain XML"
VMBAK_TEST_DOMAIN_XML=dom.xml expect_status 0 "$VMBAK_TB" ingest "$V" vm1 --disk sda=disk \
	--config cfg
rp1=$(tail -n 1 "$OUT")

note "a point with neither, then one with another config"
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk
rp2=$(tail -n 1 "$OUT")
printf 'second\n' >cfg2
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config cfg2
rp3=$(tail -n 1 "$OUT")

note "list --json and info"
expect_status 0 "$VMBAK" list "$V" vm1 --json
expect_json '
p = {x["id"]: x for x in d}
a, b, c = (p[i] for i in sys.argv[2:5])
assert a["config"] == {"file": "config", "size": int(sys.argv[5])}, a
assert a["domain_xml"] == {"file": "domain.xml", "size": int(sys.argv[6])}, a
assert b["config"] is None and b["domain_xml"] is None, b
assert c["config"] == {"file": "config", "size": 7} and c["domain_xml"] is None, c
' "$rp1" "$rp2" "$rp3" "$(stat -c %s cfg)" "$(stat -c %s dom.xml)"
expect_status 0 "$VMBAK" info "$V" "vm1/$rp1"
expect_stdout "^config: +config \($(stat -c %s cfg) bytes\)"
expect_stdout "^domain xml: +domain.xml \($(stat -c %s dom.xml) bytes\)"
expect_status 0 "$VMBAK" info "$V" "vm1/$rp2"
grep -q '^config:' "$OUT" && fail "info shows a config for a point without one"
expect_status 0 "$VMBAK" info "$V" "vm1/$rp1" --json
expect_json 'assert d["config"]["size"] > 3000 and d["domain_xml"]["file"] == "domain.xml", d'

note "the mount"
vmount "$V" "$M"
cmp "$M/vm1/$rp1/config" cfg || fail "config of $rp1 differs from the file given"
cmp "$M/vm1/$rp1/domain.xml" dom.xml || fail "domain.xml of $rp1 differs"
cmp "$M/vm1/$rp3/config" cfg2 || fail "config of $rp3 differs"
cmp "$M/vm1/latest/config" cfg2 || fail "latest/config is not the newest point's"
[ ! -e "$M/vm1/$rp2/config" ] && [ ! -e "$M/vm1/$rp2/domain.xml" ] ||
	fail "a point without configuration shows one"
[ ! -e "$M/vm1/$rp3/domain.xml" ] || fail "a point without domain XML shows one"
ls "$M/vm1/$rp1" >ls.out
[ "$(tr '\n' ' ' <ls.out)" = "config domain.xml manifest.json sda.img " ] ||
	fail "unexpected listing of $rp1: $(tr '\n' ' ' <ls.out)"
[ "$(stat -c %a%s "$M/vm1/$rp1/config")" = "444$(stat -c %s cfg)" ] ||
	fail "config's mode or size is wrong: $(stat -c '%a %s' "$M/vm1/$rp1/config")"
python3 - "$M/vm1/$rp1/manifest.json" "$(stat -c %s cfg)" <<'EOF' || fail "manifest.json of $rp1"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["config"] == {"file": "config", "size": int(sys.argv[2])}, m
assert m["domain_xml"]["file"] == "domain.xml", m
EOF
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["config"] is None' \
	"$M/vm1/$rp2/manifest.json" || fail "manifest.json of $rp2 names a config"
echo x >"$M/vm1/$rp1/config" 2>/dev/null && fail "config is writable"
vumount "$M"

note "bad --config: one line, no point"
expect_status 0 "$VMBAK" list "$V" vm1 --json
n=$(json_value 'len(d)')
head -c $((CAP + 1)) /dev/zero >big
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config big
expect_stderr "^vmbak: config file 'big' is larger than $CAP bytes$"
head -c "$CAP" /dev/zero >cap
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config nothere
expect_stderr "^vmbak: cannot read config file 'nothere': No such file or directory$"
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config "$T"
expect_stderr "is not a regular file"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config cfg --config cfg2
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config ""
VMBAK_TEST_DOMAIN_XML=big expect_status 1 "$VMBAK_TB" ingest "$V" vm1 --disk sda=disk
expect_status 0 "$VMBAK" list "$V" vm1 --json
[ "$(json_value 'len(d)')" = "$n" ] || fail "a refused ingest made a point"
note "a config of exactly the cap is kept"
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=disk --config cap
rp4=$(tail -n 1 "$OUT")

note "a killed ingest leaves neither the point nor its config"
VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/go timeout -s KILL 60 "$VMBAK_TB" ingest "$V" vm1 \
	--disk sda=disk --config cfg >/dev/null 2>&1 &
pid=$!
for ((i = 0; i < 300; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.1
done
[ -e "$T/go.reached" ] || fail "the ingest did not reach its commit"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
expect_status 0 "$VMBAK" list "$V" vm1 --json
[ "$(json_value 'len(d)')" = "$((n + 1))" ] || fail "a killed ingest made a point"

note "one flipped bit in the record: EIO, never other bytes"
mdb_dump -s rps2 "$V" >rps2.dump || fail "cannot dump rps2"
python3 - rps2.dump <<'EOF' || fail "cannot flip a bit"
import sys
lines = open(sys.argv[1]).read().split("\n")
body = [i for i, l in enumerate(lines) if l.startswith(" ")]
i = body[1]  # the first point's value (keys and values alternate)
v = lines[i].strip()
k = len(v) - 80  # inside the domain XML, the record's last field, before the tag
lines[i] = " " + v[:k] + "%02x" % (int(v[k:k + 2], 16) ^ 4) + v[k + 2:]
open(sys.argv[1], "w").write("\n".join(lines))
EOF
mdb_load -s rps2 -f rps2.dump "$V" || fail "cannot load the damaged record"
vmount "$V" "$M"
st=0
cat "$M/vm1/$rp1/domain.xml" >got 2>cat.err || st=$?
[ "$st" -ne 0 ] || fail "a damaged record still gave a domain.xml"
grep -q 'Input/output error' cat.err || fail "not EIO: $(cat cat.err)"
[ ! -s got ] || fail "bytes came out of a damaged record"
cmp "$M/vm1/$rp4/config" cap || fail "the undamaged point's config is wrong"
vumount "$M"
expect_status 3 "$VMBAK" verify "$V"
expect_stdout "record of the point with serial [0-9]+ is damaged"
finish_checks
