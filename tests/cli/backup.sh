#!/usr/bin/env bash
# tests/cli/backup.sh: vmbak backup JOBFILE (vmbak-job(5)) and the systemd units.
#
# A job file with retention and a verify run four times (at known times, VMBAK_TEST_NOW): the
# VM keeps exactly the points its rules say (vmbak list --json), each run leaves a backup job
# whose steps name the ingest, prune and verify jobs it ran. A failing ingest skips prune and
# verify and says so in the record; one killed by SIGTERM is recorded as killed, with the step
# it was in. --dry-run prints the commands and runs nothing. An
# encrypted vault with the passphrase file named in the job. Bad job files: each gives exactly
# one line naming the file, the line and the key, exit status 2, and nothing is run or recorded.
# Then `make install PREFIX=...` and `systemd-analyze verify` of the installed units.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
RELEASE_VMBAK=$VMBAK
use_test_build
need_cmd python3
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
V=$T/vault
cd "$T"
expect_ok "$VMBAK" init "$V" --encryption none --chunk-size 4096
head -c 262144 /dev/urandom >disk.img

# ---- a job with retention, run four times ----
cat >web1.job <<EOF
# web1: one disk, the newest 2 points and one a day for 3 days
vault = $V
vm   =   web1
disk = sda=$T/disk.img
keep-last = 2
keep-daily = 3
verify = latest
verify-sample = 50
EOF
chmod 0644 web1.job

expect_ok "$VMBAK" backup web1.job --dry-run
[ "$(wc -l <"$OUT")" -eq 3 ] || fail "--dry-run: not 3 commands: $(cat "$OUT")"
expect_stdout "^vmbak ingest --disk=sda=$T/disk.img -- $V web1\$"
expect_stdout "^vmbak prune --keep-last=2 --keep-daily=3 -- $V web1\$"
expect_stdout "^vmbak verify --sample=50 -- $V web1/latest\$"
expect_ok "$VMBAK" jobs "$V" --json
expect_json 'assert d == [], d'

# 2026-03-01 10:00, 03-01 18:00, 03-02 10:00, 03-05 10:00 (UTC): after the last run the rules
# keep 03-05 and 03-02 (keep-last 2) and 03-01 18:00 (the third day); 03-01 10:00 goes.
times=(1772359200 1772388000 1772445600 1772704800)
for i in "${!times[@]}"; do
	dd if=/dev/urandom of=disk.img bs=4096 count=4 seek=$((i * 8)) conv=notrunc status=none
	VMBAK_TEST_NOW=${times[$i]} expect_ok "$VMBAK" backup web1.job
	expect_stdout '^backup web1: ingest completed \(job [0-9]+\), prune completed \(job [0-9]+\), verify completed \(job [0-9]+\)$'
done
cp disk.img disk-last.img
expect_ok "$VMBAK" list "$V" --json
expect_json '
vm = [x for x in d["vms"] if x["name"] == "web1"][0] if isinstance(d, dict) and "vms" in d else None
ids = sorted(p["id"] for p in (vm["points"] if vm else [p for p in d if p.get("vm") == "web1"]))
assert ids == ["2026-03-01T18:00:00Z", "2026-03-02T10:00:00Z", "2026-03-05T10:00:00Z"], ids'

# The job records: four backups, each naming its own ingest, prune and verify.
expect_ok "$VMBAK" jobs "$V" --json
expect_json '
import re
by_id = {j["id"]: j for j in d}
backups = [j for j in d if j["kind"] == "backup"]
assert len(backups) == 4, backups
for b in backups:
    assert b["target"] == "web1" and b["state"] == "completed" and b["error"] is None, b
    m = re.fullmatch(r"ingest completed \(job (\d+)\), prune completed \(job (\d+)\), "
                     r"verify completed \(job (\d+)\)", b["steps"])
    assert m, b["steps"]
    for kind, jid in zip(("ingest", "prune", "verify"), m.groups()):
        s = by_id[int(jid)]
        assert s["kind"] == kind and s["state"] == "completed" and s["pid"] == b["pid"], s
        assert int(jid) > b["id"], (b, s)
    ing = by_id[int(m.group(1))]
    assert b["bytes_read"] == ing["bytes_read"] == 262144, (b, ing)
    assert b["bytes_stored"] == ing["bytes_stored"] > 0, (b, ing)
assert by_id[int(re.search(r"verify completed \(job (\d+)", backups[-1]["steps"]).group(1))]["target"] == "web1/latest"
assert all(j["steps"] is None for j in d if j["kind"] != "backup")'
njobs=$(json_value 'len(d)')

# The last point is the disk as it was at the last run.
expect_ok "$VMBAK" restore "$V" web1/latest --to "$T/restored"
cmp restored/sda.img disk-last.img || fail "the last backup's point differs from the disk"

# ---- a failing ingest: prune and verify are skipped, the record says so ----
printf 'not an extent list\n' >bad-extents
cp web1.job fail.job
echo "changed = sda=$T/bad-extents" >>fail.job
VMBAK_TEST_NOW=1772791200 expect_status 1 "$VMBAK" backup fail.job
expect_stdout '^backup web1: ingest failed \(job [0-9]+\), prune skipped, verify skipped$'
expect_ok "$VMBAK" jobs "$V" --json
expect_json '
b = d[-2] if d[-1]["kind"] == "ingest" else d[-1]
b = [j for j in d if j["kind"] == "backup"][-1]
assert b["state"] == "failed" and b["error"].startswith("ingest: "), b
assert b["steps"].startswith("ingest failed (job "), b
assert [j["kind"] for j in d if j["id"] > b["id"]] == ["ingest"], d'
njobs=$(json_value 'len(d)')
expect_ok "$VMBAK" list "$V" --json
cp "$OUT" points-before.json

# ---- SIGTERM while the ingest commits: the ingest and the backup are both killed ----
rm -f "$T/go" "$T/go.reached"
VMBAK_TEST_PAUSE_INGEST_COMMIT=$T/go "$VMBAK" backup web1.job >/dev/null 2>"$T/sig.err" &
pid=$!
for ((i = 0; i < 500; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.02
done
[ -e "$T/go.reached" ] || { kill -KILL "$pid"; fail "the backup's ingest did not reach its commit"; }
kill -TERM "$pid"
st=0
wait "$pid" || st=$?
[ "$st" -eq 1 ] || fail "SIGTERM: exit status $st"
grep -q 'interrupted by SIGTERM' "$T/sig.err" || fail "no message for SIGTERM: $(cat "$T/sig.err")"
expect_ok "$VMBAK" jobs "$V" --json
expect_json '
b = [j for j in d if j["kind"] == "backup"][-1]
assert b["state"] == "killed" and b["error"] == "interrupted by SIGTERM", b
i = [j for j in d if j["kind"] == "ingest"][-1]
assert i["state"] == "killed" and i["id"] > b["id"], i
assert b["steps"] == "ingest killed (job %d)" % i["id"], b'
njobs=$(json_value 'len(d)')
expect_ok "$VMBAK" list "$V" --json
cmp -s "$OUT" points-before.json || fail "a killed backup changed the points"

# ---- an encrypted vault, its passphrase file named in the job ----
E=$T/evault
printf 'correct horse battery staple\n' >pass
chmod 0600 pass
expect_ok "$VMBAK" --passphrase-file pass init "$E" --chunk-size 4096
cat >enc.job <<EOF
vault = $E
vm = db1
passphrase-file = $T/pass
disk = sda=$T/disk.img
keep-last = 1
EOF
chmod 0600 enc.job
expect_ok "$VMBAK" backup enc.job
expect_stdout '^backup db1: ingest completed \(job [0-9]+\), prune completed \(job [0-9]+\)$'
expect_ok "$VMBAK" backup enc.job
newest=$(grep -E "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z(-[0-9]+)?$" "$OUT")
expect_ok "$VMBAK" --passphrase-file pass list "$E" --json
expect_json 'assert [p["id"] for p in d] == [sys.argv[2]], d' "$newest"
chmod 0640 pass
expect_status 2 "$VMBAK" backup enc.job
expect_stderr "^vmbak: enc.job:3: passphrase-file: '$T/pass' holds a secret but group or others may access it \\(mode 0640\\)"
chmod 0600 pass

# ---- bad job files: one line naming the file, the line and the key; nothing run ----
# bad LINE KEY EXTRA-LINE...: a job of the vault, vm and disk lines and EXTRA-LINEs.
bad() {
	local line=$1 key=$2
	shift 2
	{
		echo "vault = $V"
		echo "vm = web1"
		echo "disk = sda=$T/disk.img"
		printf '%s\n' "$@"
	} >bad.job
	chmod 0600 bad.job
	VMBAK_TEST_NOW=1772877600 expect_status 2 "$VMBAK" backup bad.job
	if [ -n "$line" ]; then
		expect_stderr "^vmbak: bad\\.job:$line: $key: "
	else
		expect_stderr "^vmbak: bad\\.job: $key"
	fi
}
keep_going
bad 4 keep-last 'keep-last = x'
bad 4 keep-lst 'keep-lst = 3'
bad 5 keep-last 'keep-last = 3' 'keep-last = 4'
bad 4 vm 'vm = web2'
bad 4 retain-until 'retain-until = 2020-01-01'
bad 4 retain-until 'retain-until = someday'
bad 5 escrow 'keyvault = /nonexistent' 'escrow = sdb=secret'
bad 4 check-escrow 'check-escrow = maybe'
bad 4 check-escrow 'check-escrow = yes'
bad 4 disk "disk = sda=$T/disk.img"
bad 4 dis "dis = sdb=$T/disk.img"
bad 4 passphrase 'passphrase = hunter2'
bad 4 help 'help = yes'
bad 4 disk 'disk sdb'
bad 4 line '[section]'
bad 4 threads 'threads ='
bad 4 threads 'threads = 0'
bad 4 verify-sample 'verify-sample = 10'
bad 5 verify-sample 'verify = latest' 'verify-sample = 300'
bad 5 verify-seed 'verify = latest' 'verify-seed = 7'
bad 4 verify 'verify = sometimes'
bad 5 verify-json 'verify = latest' 'verify-json = yes'
bad 4 keep-last 'keep-last = 0'
# The job's own keys.
printf 'vm = web1\ndisk = sda=%s/disk.img\n' "$T" >bad.job
expect_status 2 "$VMBAK" backup bad.job
expect_stderr '^vmbak: bad\.job: vault: missing'
printf 'vault = %s\nvm = web/1\ndisk = sda=%s/disk.img\n' "$V" "$T" >bad.job
expect_status 2 "$VMBAK" backup bad.job
expect_stderr '^vmbak: bad\.job:2: vm: invalid VM name'
printf 'vault = %s\nvm = web1\n' "$V" >bad.job
expect_status 2 "$VMBAK" backup bad.job
expect_stderr '^vmbak: bad\.job: no disk given'
# A job file others may change is refused; a missing disk is a failure (1), named by its line.
printf 'vault = %s\nvm = web1\ndisk = sda=%s/disk.img\n' "$V" "$T" >bad.job
chmod 0666 bad.job
expect_status 2 "$VMBAK" backup bad.job
expect_stderr '^vmbak: bad\.job: job file may be changed by group or others'
printf 'vault = %s\nvm = web1\ndisk = sda=%s/disk.img\n\0\n' "$V" "$T" >bad.job
chmod 0600 bad.job
expect_status 2 "$VMBAK" backup bad.job
expect_stderr '^vmbak: bad\.job: job file holds a NUL byte'
expect_status 1 "$VMBAK" backup "$T/none.job"
expect_status 2 "$VMBAK" backup
expect_status 2 "$VMBAK" backup a.job b.job

# Job files of random lines (known keys with odd values, garbage, long lines): never a crash,
# always exactly one line on stderr, and nothing run.
for seed in $(seq 1 40); do
	python3 - "$seed" "$V" "$T" >rand.job <<'PY'
import random, sys
r = random.Random(int(sys.argv[1]))
keys = ["vault", "vm", "disk", "changed", "keep-last", "keep-daily", "verify", "verify-sample",
        "verify-seed", "retain-until", "threads", "escrow", "escrow-kind", "keyvault",
        "check-escrow", "passphrase-file", "keyvault-passphrase-file", "progress", "x", ""]
vals = ["", "yes", "no", "0", "-1", "99999999999999999999", "sda=" + sys.argv[3] + "/disk.img",
        "a=b=c", "latest", "all", "2099-01-01", "\x7f", "=", "#", sys.argv[2], "web1",
        "x" * r.choice([1, 300, 5000])]
lines = ["vault = " + sys.argv[2], "vm = web1"] if r.random() < 0.7 else []
for _ in range(r.randint(0, 8)):
    k = r.choice(keys)
    v = r.choice(vals)
    lines.append(r.choice(["%s = %s", "%s=%s", "  %s\t=  %s  ", "%s %s", "# %s = %s"]) % (k, v))
r.shuffle(lines)
sys.stdout.write("\n".join(lines) + r.choice(["", "\n", "\r\n"]))
PY
	chmod 0600 rand.job
	st=0
	"$VMBAK" backup rand.job --dry-run </dev/null >"$OUT" 2>"$ERR" || st=$?
	case $st in
	0) [ ! -s "$ERR" ] || fail "random job $seed: exit 0 with stderr: $(cat "$ERR")" ;;
	1 | 2) [ "$(wc -l <"$ERR")" -eq 1 ] && grep -q '^vmbak: rand\.job' "$ERR" ||
		fail "random job $seed: not one line naming the file: $(cat "$ERR")" ;;
	*) fail "random job $seed: exit status $st: $(cat "$ERR")" ;;
	esac
done

# Nothing ran: no new job, no new point.
expect_ok "$VMBAK" jobs "$V" --json
expect_json 'assert len(d) == int(sys.argv[2]), len(d)' "$njobs"
expect_ok "$VMBAK" list "$V" --json
cmp -s "$OUT" points-before.json || fail "a bad job file changed the points"

# A right job file whose disk is gone: status 1, the line of the disk, and a failed backup in
# the job history (the backup that did not happen), with nothing else run.
printf 'vault = %s\nvm = web1\ndisk = sda=%s/gone.img\nkeep-last = 1\n' "$V" "$T" >gone.job
chmod 0600 gone.job
expect_status 1 "$VMBAK" backup gone.job
expect_stderr "^vmbak: gone\\.job:3: disk: cannot open disk 'sda' source '$T/gone\\.img'"
expect_ok "$VMBAK" jobs "$V" --json
expect_json '
assert len(d) == int(sys.argv[2]) + 1, d
b = d[-1]
assert b["kind"] == "backup" and b["state"] == "failed", b
assert b["steps"] == "ingest not started (its check failed), prune skipped", b
assert b["error"].startswith("gone.job:3: disk: cannot open disk"), b' "$njobs"
expect_ok "$VMBAK" list "$V" --json
cmp -s "$OUT" points-before.json || fail "a job whose disk is gone changed the points"

# ---- the systemd units ----
inst=$T/inst
bdir=$(dirname "$RELEASE_VMBAK")
expect_ok make -s -C "$SRCDIR" -o all install B="$bdir" PREFIX="$inst"
units=$inst/lib/systemd/system
[ -f "$units/vmbak-backup@.service" ] && [ -f "$units/vmbak-backup@.timer" ] ||
	fail "make install did not install the units: $(ls -R "$inst")"
[ -f "$inst/share/man/man5/vmbak-job.5" ] || fail "make install did not install vmbak-job(5)"
grep -qx "ExecStart=$inst/bin/vmbak backup /etc/vmbak/jobs/%i.job" "$units/vmbak-backup@.service" ||
	fail "ExecStart does not run the installed vmbak: $(grep ExecStart "$units/vmbak-backup@.service")"
! grep -q '@[A-Z]*@' "$units/vmbak-backup@.service" || fail "a placeholder left in the unit"
# Block devices (the VMs' disks) must stay open to the backup: nothing that sets a device policy.
! grep -Eq '^(PrivateDevices|ProtectClock|DeviceAllow|DevicePolicy)=' "$units/vmbak-backup@.service" ||
	fail "the unit restricts devices: $(grep -E '^(PrivateDevices|ProtectClock|Device)' "$units/vmbak-backup@.service")"
if ! command -v systemd-analyze >/dev/null; then
	[ "${CI:-}" != true ] || fail "systemd-analyze is missing (tests/deps.sh installs systemd)"
	note "systemd-analyze is missing: the units are not verified"
else
	# MANPATH: Documentation= is checked against the installed pages too.
	MANPATH=$inst/share/man expect_ok systemd-analyze verify \
		"$units/vmbak-backup@web1.service" "$units/vmbak-backup@web1.timer"
fi
finish_checks
