#!/usr/bin/env bash
# tests/cli/usage.sh: every argument of init, ingest, list and info given wrong.
#
# Each bad command must exit with the right status (2 for a wrong command line, 1 for a failure
# outside it), print exactly one line on stderr starting with "vmbak: ", and leave the vault as
# it was: `vmbak list --json` and the config file are compared before and after.
# Runs with VMBAK (the program) and TESTTMP (a fresh directory) from the runner, or by hand.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_programs
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
# Every check below runs, and the failures are reported together at the end.
keep_going

# absent PATH: a failed command left nothing at PATH.
absent() {
	[ ! -e "$1" ] || check_failed "'$1' exists after a failed command"
}

# The scene: an unencrypted vault with one point, an encrypted one, a disk, odd files.
V=$T/vault
VE=$T/vault-enc
D=$T/disk.img
head -c 300000 /dev/urandom >"$D"
truncate -s 1M "$D"
echo 'right passphrase' >"$T/pass"
echo 'wrong passphrase' >"$T/wrongpass"
: >"$T/emptypass"
echo "0 65536" >"$T/extents"
: >"$T/plainfile"
mkdir "$T/emptydir" "$T/fulldir"
: >"$T/fulldir/something"
long=$(printf 'x%.0s' $(seq 5000))
name65=$(printf 'n%.0s' $(seq 65))
name64=$(printf 'n%.0s' $(seq 64))
tomorrow=$(date -u -d '+2 days' +%F)
today=$(date -u +%F)

"$VMBAK" init "$V" --encryption none >/dev/null
"$VMBAK" ingest "$V" vm1 --disk sda="$D" >/dev/null
"$VMBAK" init "$VE" --passphrase-file "$T/pass" >/dev/null
"$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/pass" >/dev/null
"$VMBAK" list "$V" --json >"$T/before.json"
"$VMBAK" --passphrase-file "$T/pass" list "$VE" --json >"$T/before-enc.json"
sha256sum "$V/vmbak-vault.json" "$VE/vmbak-vault.json" >"$T/before.sha"

# --- the program and its global options
expect_status 2 "$VMBAK"
expect_status 2 "$VMBAK" bogus
expect_stderr "unknown command 'bogus'"
expect_status 2 "$VMBAK" --bogus list "$V"
expect_status 2 "$VMBAK" -x list "$V"
expect_status 2 "$VMBAK" --passphrase-file
expect_status 2 "$VMBAK" --passphrase-file "" ingest "$V" vm1 --disk sda="$D"
expect_status 2 "$VMBAK" help bogus
expect_status 2 "$VMBAK" help init list
expect_status 2 "$VMBAK" $'bad\ncommand'
expect_status 0 "$VMBAK" --help
grep -q '^usage: vmbak' "$OUT" || check_failed "--help prints no usage"
[ -s "$ERR" ] && check_failed "--help writes to stderr"
expect_status 0 "$VMBAK" --version
grep -q '^vmbak ' "$OUT" || check_failed "--version"
for verb in init ingest list info help; do
	expect_status 0 "$VMBAK" "$verb" --help
	grep -q "^usage: vmbak $verb" "$OUT" || check_failed "'$verb --help' prints no usage"
	expect_status 0 "$VMBAK" help "$verb"
	expect_status 0 "$VMBAK" "$verb" -h
done

# --- init
N=$T/new
expect_status 2 "$VMBAK" init
expect_stderr "missing VAULT"
expect_status 2 "$VMBAK" init ""
expect_status 2 "$VMBAK" init "$T/$long"
expect_status 2 "$VMBAK" init "$N" extra --encryption none
expect_stderr "unexpected argument 'extra'"
expect_status 2 "$VMBAK" init "$N" --bogus
expect_stderr "unknown option '--bogus'"
expect_status 2 "$VMBAK" init "$N" -q
expect_status 2 "$VMBAK" init "$N" --encryption bogus
expect_status 2 "$VMBAK" init "$N" --encryption ""
expect_status 2 "$VMBAK" init "$N" --encryption
expect_stderr "needs an argument"
expect_status 2 "$VMBAK" init "$N" --encryption=AES-256-GCM
for cs in "" 0 1 3K 1K 2K 8M 4097 65535 100000 abc 64Q -64K 1G 99999999999999999999999; do
	expect_status 2 "$VMBAK" init "$N" --encryption none --chunk-size "$cs"
	expect_stderr "chunk size"
done
expect_status 2 "$VMBAK" init "$N" --encryption none --chunk-size
expect_status 2 "$VMBAK" init "$N" --passphrase-file ""
absent "$N"
expect_status 1 "$VMBAK" init "$V" --encryption none
expect_stderr "already a vault"
expect_status 1 "$VMBAK" init "$T/fulldir" --encryption none
expect_status 1 "$VMBAK" init "$T/plainfile" --encryption none
expect_status 1 "$VMBAK" init "$T/nodir/v" --encryption none
absent "$T/nodir"
expect_status 1 "$VMBAK" init "$T/plainfile/v" --encryption none
# Encrypted without any passphrase source: a usage error, and nothing created.
expect_status 2 "$VMBAK" init "$N"
expect_stderr "no passphrase"
absent "$N"
expect_status 1 "$VMBAK" init "$N" --passphrase-file "$T/missing"
expect_stderr "missing"
absent "$N"
expect_status 1 "$VMBAK" init "$N" --passphrase-file "$T/emptypass"
absent "$N"
expect_status 1 env VMBAK_PASSPHRASE_FILE="$T/missing" "$VMBAK" init "$N"
absent "$N"
expect_status 1 "$VMBAK" init "$T/fulldir" --passphrase-file "$T/pass"
# The directory exists and is empty: creating in it is fine; the empty dir stays usable after
# a refused attempt.
expect_status 2 "$VMBAK" init "$T/emptydir" --chunk-size 3K
[ -z "$(ls -A "$T/emptydir")" ] || check_failed "emptydir touched"

# --- ingest
expect_status 2 "$VMBAK" ingest
expect_status 2 "$VMBAK" ingest "$V"
expect_stderr "missing VM"
expect_status 2 "$VMBAK" ingest "$V" vm1
expect_stderr "no disk"
expect_status 2 "$VMBAK" ingest "$V" vm1 extra --disk sda="$D"
expect_status 2 "$VMBAK" ingest "" vm1 --disk sda="$D"
expect_status 2 "$VMBAK" ingest "$T/$long" vm1 --disk sda="$D"
for vm in "" "$name65" "bad name" "a/b" ".hidden" "." ".." "tab$(printf '\t')x" $'new\nline' \
	"é" "a*b"; do
	expect_status 2 "$VMBAK" ingest "$V" "$vm" --disk sda="$D"
	expect_stderr "VM name"
	expect_stderr "1-64 characters"
done
for dn in "" "$name65" "bad name" "a/b" ".d" "x:y" "é"; do
	expect_status 2 "$VMBAK" ingest "$V" vm1 --disk "$dn=$D"
	expect_stderr "disk name"
done
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk "$D"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda=
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk ""
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk "sda=$T/$long"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --disk sda="$D"
expect_stderr "twice"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sdb="$T/extents"
expect_stderr "sdb"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/extents" \
	--changed sda="$T/extents"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed "$T/extents"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda=
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed ".x=$T/extents"
for date in "" 2026-13-01 2026-02-30 2026-1-1 tomorrow 20261231 "2026-12-31 " \
	2020-01-01 1970-01-01 "$today"; do
	expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until "$date"
	expect_stderr "retain-until"
done
for th in "" 0 -1 abc 1x 99999 " 2" +2; do
	expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --threads "$th"
	expect_stderr "thread"
done
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --bogus
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --escrow sda=x
# Escrow goes with every source; with --qemu --disk, NAME is one of the --disk names.
expect_status 2 "$VMBAK" ingest "$V" vm1 --qemu "$T/qmp.sock" --disk a=drive0 --keyvault kv \
	--escrow b=x
expect_stderr "^vmbak: --escrow names disk 'b', which no --disk gives"
expect_status 2 "$VMBAK" ingest "$V" vm1 --libvirt dom --escrow vda=x --check-escrow
expect_stderr "^vmbak: --escrow needs --keyvault KV"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --passphrase=s3cret
if grep -q s3cret "$ERR"; then
	check_failed "the argument of an unknown option appears in its message"
fi
expect_status 2 "$VMBAK" list "$V" --json=yes
expect_stderr "takes no argument"
expect_status 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until
many=()
for i in $(seq 257); do many+=(--disk "d$i=$D"); done
expect_status 2 "$VMBAK" ingest "$V" vm1 "${many[@]}"
expect_stderr "too many disks"
# Runtime failures: sources and vaults that are not what they should be.
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda="$T/missing.img" --retain-until "$tomorrow"
expect_stderr "missing.img"
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda="$T/emptydir"
expect_stderr "directory"
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda=/dev/null
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --disk sdb="$T/missing.img"
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/missing.map"
expect_stderr "missing.map"
expect_status 1 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/emptydir"
expect_status 1 "$VMBAK" ingest "$T/novault" vm1 --disk sda="$D"
absent "$T/novault"
expect_status 1 "$VMBAK" ingest "$T/plainfile" vm1 --disk sda="$D"
expect_status 1 "$VMBAK" ingest "$T/emptydir" vm1 --disk sda="$D"
expect_status 1 "$VMBAK" ingest "$T/fulldir" vm1 --disk sda="$D"
# An incremental ingest needs an earlier point of the VM.
expect_status 1 "$VMBAK" ingest "$V" vm2 --disk sda="$D" --changed sda="$T/extents"
# Passphrases of the encrypted vault.
expect_status 1 "$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/wrongpass"
expect_stderr "wrong passphrase for vault"
expect_status 1 env VMBAK_PASSPHRASE='not it' "$VMBAK" ingest "$VE" vm1 --disk sda="$D"
expect_stderr "wrong passphrase for vault"
expect_status 1 "$VMBAK" --passphrase-file "$T/wrongpass" ingest "$VE" vm1 --disk sda="$D"
expect_status 1 "$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/missing"
expect_status 1 "$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/emptypass"
expect_status 2 "$VMBAK" ingest "$VE" vm1 --disk sda="$D"
expect_stderr "no passphrase"
# No secret in a message.
if grep -rq 'right passphrase\|not it' "$ERR"; then
	check_failed "a passphrase appears in a message"
fi

# --- list
expect_status 2 "$VMBAK" list
expect_status 2 "$VMBAK" list ""
expect_status 2 "$VMBAK" list "$T/$long"
expect_status 2 "$VMBAK" list "$V" vm1 extra
expect_status 2 "$VMBAK" list "$V" --bogus
expect_status 2 "$VMBAK" list "$V" --json=yes
for vm in "" "$name65" "bad name" ".hidden" "a/b"; do
	expect_status 2 "$VMBAK" list "$V" "$vm"
	expect_stderr "VM name"
done
expect_status 1 "$VMBAK" list "$V" nosuchvm
expect_stderr "no VM 'nosuchvm' in vault"
expect_status 1 "$VMBAK" list "$V" "$name64" --json
[ -s "$OUT" ] && check_failed "list of an unknown VM printed JSON"
expect_status 1 "$VMBAK" list "$T/missing"
expect_status 1 "$VMBAK" list "$T/plainfile"
expect_status 1 "$VMBAK" list "$T/emptydir"
expect_status 1 "$VMBAK" list "$T/fulldir" --json

# --- info
expect_status 2 "$VMBAK" info
expect_status 2 "$VMBAK" info ""
expect_status 2 "$VMBAK" info "$T/$long"
expect_status 2 "$VMBAK" info "$V" vm1 extra
expect_status 2 "$VMBAK" info "$V" --bogus
for target in "bad name" ".x" "/2026-01-01T00:00:00Z" "$name65/latest" "vm1/bad id" \
	"vm1/$long" "vm1/a/b"; do
	expect_status 2 "$VMBAK" info "$V" "$target"
done
expect_status 1 "$VMBAK" info "$V" nosuchvm
expect_stderr "no VM 'nosuchvm'"
expect_status 1 "$VMBAK" info "$V" nosuchvm/latest
expect_status 1 "$VMBAK" info "$V" vm1/2000-01-01T00:00:00Z
expect_stderr "no point '2000-01-01T00:00:00Z' of VM 'vm1'"
expect_status 1 "$VMBAK" info "$V" vm1/2000-01-01T00:00:00Z --json
expect_status 1 "$VMBAK" info "$T/missing"
expect_status 1 "$VMBAK" info "$T/plainfile" --json
expect_status 1 "$VMBAK" info "$T/emptydir"

# --- nothing stored was touched
"$VMBAK" list "$V" --json >"$T/after.json"
"$VMBAK" --passphrase-file "$T/pass" list "$VE" --json >"$T/after-enc.json"
if ! cmp -s "$T/before.json" "$T/after.json" || ! cmp -s "$T/before-enc.json" "$T/after-enc.json"
then
	diff "$T/before.json" "$T/after.json" >&2 || true
	check_failed "the vaults' points changed"
fi
sha256sum -c --quiet "$T/before.sha" || check_failed "a vault config changed"
"$VMBAK" list "$V" vm1 >/dev/null || check_failed "vault unreadable"
finish_checks
