#!/usr/bin/env bash
# tests/cli/usage.sh: every argument of init, ingest, list and info given wrong.
#
# Each bad command must exit with the right status (2 for a wrong command line, 1 for a failure
# outside it), print exactly one line on stderr starting with "vmbak: ", and leave the vault as
# it was: `vmbak list --json` and the config file are compared before and after.
# Runs with VMBAK (the program) and TESTTMP (a fresh directory) from the runner, or by hand.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -f "$here/../lib.sh" ]; then
	# shellcheck source=/dev/null
	. "$here/../lib.sh"
fi
VMBAK=${VMBAK:-$here/../../build/vmbak}
if [ -z "${TESTTMP:-}" ]; then
	TESTTMP=$(mktemp -d "${TMPDIR:-/tmp}/vmbak-usage.XXXXXX")
	trap 'rm -rf "$TESTTMP"' EXIT
fi
[ -x "$VMBAK" ] || { echo "FAIL: no program at '$VMBAK'" >&2; exit 1; }
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

T=$TESTTMP
fails=0
checks=0

u_show() {
	echo "--- stdout:"
	head -c 2000 "$T/out"
	echo "--- stderr:"
	head -c 2000 "$T/err"
	echo "---"
}

# u_expect STATUS CMD...: CMD exits with STATUS; when STATUS is not 0 it prints exactly one line
# on stderr, starting with "vmbak: ". stdin is /dev/null so nothing can prompt.
u_expect() {
	local want=$1 st=0 lines
	shift
	checks=$((checks + 1))
	"$@" </dev/null >"$T/out" 2>"$T/err" || st=$?
	if [ "$st" -ne "$want" ]; then
		echo "FAIL: exit $st, expected $want: $*" | cut -c 1-300 >&2
		u_show >&2
		fails=$((fails + 1))
		return 0
	fi
	if [ "$want" -ne 0 ]; then
		lines=$(wc -l <"$T/err")
		if [ "$lines" -ne 1 ] || [ -n "$(tail -c 1 "$T/err")" ] ||
			! head -n 1 "$T/err" | grep -q '^vmbak: '; then
			echo "FAIL: not exactly one 'vmbak: ' line on stderr: $*" | cut -c 1-300 >&2
			u_show >&2
			fails=$((fails + 1))
		fi
	fi
	return 0
}

# u_stderr ERE: the stderr of the last u_expect matches ERE.
u_stderr() {
	if ! grep -Eq -- "$1" "$T/err"; then
		echo "FAIL: stderr does not match /$1/" >&2
		u_show >&2
		fails=$((fails + 1))
	fi
}

# u_absent PATH: a failed command left nothing at PATH.
u_absent() {
	checks=$((checks + 1))
	if [ -e "$1" ]; then
		echo "FAIL: '$1' exists after a failed command" >&2
		fails=$((fails + 1))
	fi
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
u_expect 2 "$VMBAK"
u_expect 2 "$VMBAK" bogus
u_stderr "unknown command 'bogus'"
u_expect 2 "$VMBAK" --bogus list "$V"
u_expect 2 "$VMBAK" -x list "$V"
u_expect 2 "$VMBAK" --passphrase-file
u_expect 2 "$VMBAK" --passphrase-file "" ingest "$V" vm1 --disk sda="$D"
u_expect 2 "$VMBAK" help bogus
u_expect 2 "$VMBAK" help init list
u_expect 2 "$VMBAK" $'bad\ncommand'
u_expect 0 "$VMBAK" --help
grep -q '^usage: vmbak' "$T/out" || { echo "FAIL: --help prints no usage" >&2; fails=$((fails + 1)); }
[ -s "$T/err" ] && { echo "FAIL: --help writes to stderr" >&2; fails=$((fails + 1)); }
u_expect 0 "$VMBAK" --version
grep -q '^vmbak ' "$T/out" || { echo "FAIL: --version" >&2; fails=$((fails + 1)); }
for verb in init ingest list info help; do
	u_expect 0 "$VMBAK" "$verb" --help
	grep -q "^usage: vmbak $verb" "$T/out" || {
		echo "FAIL: '$verb --help' prints no usage" >&2
		fails=$((fails + 1))
	}
	u_expect 0 "$VMBAK" help "$verb"
	u_expect 0 "$VMBAK" "$verb" -h
done

# --- init
N=$T/new
u_expect 2 "$VMBAK" init
u_stderr "missing VAULT"
u_expect 2 "$VMBAK" init ""
u_expect 2 "$VMBAK" init "$T/$long"
u_expect 2 "$VMBAK" init "$N" extra --encryption none
u_stderr "unexpected argument 'extra'"
u_expect 2 "$VMBAK" init "$N" --bogus
u_stderr "unknown option '--bogus'"
u_expect 2 "$VMBAK" init "$N" -q
u_expect 2 "$VMBAK" init "$N" --encryption bogus
u_expect 2 "$VMBAK" init "$N" --encryption ""
u_expect 2 "$VMBAK" init "$N" --encryption
u_stderr "needs an argument"
u_expect 2 "$VMBAK" init "$N" --encryption=AES-256-GCM
for cs in "" 0 1 3K 1K 2K 8M 4097 65535 100000 abc 64Q -64K 1G 99999999999999999999999; do
	u_expect 2 "$VMBAK" init "$N" --encryption none --chunk-size "$cs"
	u_stderr "chunk size"
done
u_expect 2 "$VMBAK" init "$N" --encryption none --chunk-size
u_expect 2 "$VMBAK" init "$N" --passphrase-file ""
u_absent "$N"
u_expect 1 "$VMBAK" init "$V" --encryption none
u_stderr "already a vault"
u_expect 1 "$VMBAK" init "$T/fulldir" --encryption none
u_expect 1 "$VMBAK" init "$T/plainfile" --encryption none
u_expect 1 "$VMBAK" init "$T/nodir/v" --encryption none
u_absent "$T/nodir"
u_expect 1 "$VMBAK" init "$T/plainfile/v" --encryption none
# Encrypted without any passphrase source: a usage error, and nothing created.
u_expect 2 "$VMBAK" init "$N"
u_stderr "no passphrase"
u_absent "$N"
u_expect 1 "$VMBAK" init "$N" --passphrase-file "$T/missing"
u_stderr "missing"
u_absent "$N"
u_expect 1 "$VMBAK" init "$N" --passphrase-file "$T/emptypass"
u_absent "$N"
u_expect 1 env VMBAK_PASSPHRASE_FILE="$T/missing" "$VMBAK" init "$N"
u_absent "$N"
u_expect 1 "$VMBAK" init "$T/fulldir" --passphrase-file "$T/pass"
# The directory exists and is empty: creating in it is fine; the empty dir stays usable after
# a refused attempt.
u_expect 2 "$VMBAK" init "$T/emptydir" --chunk-size 3K
[ -z "$(ls -A "$T/emptydir")" ] || { echo "FAIL: emptydir touched" >&2; fails=$((fails + 1)); }

# --- ingest
u_expect 2 "$VMBAK" ingest
u_expect 2 "$VMBAK" ingest "$V"
u_stderr "missing VM"
u_expect 2 "$VMBAK" ingest "$V" vm1
u_stderr "no disk"
u_expect 2 "$VMBAK" ingest "$V" vm1 extra --disk sda="$D"
u_expect 2 "$VMBAK" ingest "" vm1 --disk sda="$D"
u_expect 2 "$VMBAK" ingest "$T/$long" vm1 --disk sda="$D"
for vm in "" "$name65" "bad name" "a/b" ".hidden" "." ".." "tab$(printf '\t')x" $'new\nline' \
	"é" "a*b"; do
	u_expect 2 "$VMBAK" ingest "$V" "$vm" --disk sda="$D"
	u_stderr "VM name"
	u_stderr "1-64 characters"
done
for dn in "" "$name65" "bad name" "a/b" ".d" "x:y" "é"; do
	u_expect 2 "$VMBAK" ingest "$V" vm1 --disk "$dn=$D"
	u_stderr "disk name"
done
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk "$D"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda=
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk ""
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk "sda=$T/$long"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --disk sda="$D"
u_stderr "twice"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sdb="$T/extents"
u_stderr "sdb"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/extents" \
	--changed sda="$T/extents"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed "$T/extents"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda=
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed ".x=$T/extents"
for date in "" 2026-13-01 2026-02-30 2026-1-1 tomorrow 20261231 "2026-12-31 " \
	2020-01-01 1970-01-01 "$today"; do
	u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until "$date"
	u_stderr "retain-until"
done
for th in "" 0 -1 abc 1x 99999 " 2" +2; do
	u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --threads "$th"
	u_stderr "thread"
done
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --bogus
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --escrow sda=x
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --passphrase=s3cret
if grep -q s3cret "$T/err"; then
	echo "FAIL: the argument of an unknown option appears in its message" >&2
	fails=$((fails + 1))
fi
u_expect 2 "$VMBAK" list "$V" --json=yes
u_stderr "takes no argument"
u_expect 2 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until
many=()
for i in $(seq 257); do many+=(--disk "d$i=$D"); done
u_expect 2 "$VMBAK" ingest "$V" vm1 "${many[@]}"
u_stderr "too many disks"
# Runtime failures: sources and vaults that are not what they should be.
u_expect 1 "$VMBAK" ingest "$V" vm1 --disk sda="$T/missing.img" --retain-until "$tomorrow"
u_stderr "missing.img"
u_expect 1 "$VMBAK" ingest "$V" vm1 --disk sda="$T/emptydir"
u_stderr "directory"
u_expect 1 "$VMBAK" ingest "$V" vm1 --disk sda=/dev/null
u_expect 1 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --disk sdb="$T/missing.img"
u_expect 1 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/missing.map"
u_stderr "missing.map"
u_expect 1 "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/emptydir"
u_expect 1 "$VMBAK" ingest "$T/novault" vm1 --disk sda="$D"
u_absent "$T/novault"
u_expect 1 "$VMBAK" ingest "$T/plainfile" vm1 --disk sda="$D"
u_expect 1 "$VMBAK" ingest "$T/emptydir" vm1 --disk sda="$D"
u_expect 1 "$VMBAK" ingest "$T/fulldir" vm1 --disk sda="$D"
# An incremental ingest needs an earlier point of the VM.
u_expect 1 "$VMBAK" ingest "$V" vm2 --disk sda="$D" --changed sda="$T/extents"
# Passphrases of the encrypted vault.
u_expect 1 "$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/wrongpass"
u_stderr "wrong passphrase for vault"
u_expect 1 env VMBAK_PASSPHRASE='not it' "$VMBAK" ingest "$VE" vm1 --disk sda="$D"
u_stderr "wrong passphrase for vault"
u_expect 1 "$VMBAK" --passphrase-file "$T/wrongpass" ingest "$VE" vm1 --disk sda="$D"
u_expect 1 "$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/missing"
u_expect 1 "$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/emptypass"
u_expect 2 "$VMBAK" ingest "$VE" vm1 --disk sda="$D"
u_stderr "no passphrase"
# No secret in a message.
if grep -rq 'right passphrase\|not it' "$T/err"; then
	echo "FAIL: a passphrase appears in a message" >&2
	fails=$((fails + 1))
fi

# --- list
u_expect 2 "$VMBAK" list
u_expect 2 "$VMBAK" list ""
u_expect 2 "$VMBAK" list "$T/$long"
u_expect 2 "$VMBAK" list "$V" vm1 extra
u_expect 2 "$VMBAK" list "$V" --bogus
u_expect 2 "$VMBAK" list "$V" --json=yes
for vm in "" "$name65" "bad name" ".hidden" "a/b"; do
	u_expect 2 "$VMBAK" list "$V" "$vm"
	u_stderr "VM name"
done
u_expect 1 "$VMBAK" list "$V" nosuchvm
u_stderr "no VM 'nosuchvm' in vault"
u_expect 1 "$VMBAK" list "$V" "$name64" --json
[ -s "$T/out" ] && { echo "FAIL: list of an unknown VM printed JSON" >&2; fails=$((fails + 1)); }
u_expect 1 "$VMBAK" list "$T/missing"
u_expect 1 "$VMBAK" list "$T/plainfile"
u_expect 1 "$VMBAK" list "$T/emptydir"
u_expect 1 "$VMBAK" list "$T/fulldir" --json

# --- info
u_expect 2 "$VMBAK" info
u_expect 2 "$VMBAK" info ""
u_expect 2 "$VMBAK" info "$T/$long"
u_expect 2 "$VMBAK" info "$V" vm1 extra
u_expect 2 "$VMBAK" info "$V" --bogus
for target in "bad name" ".x" "/2026-01-01T00:00:00Z" "$name65/latest" "vm1/bad id" \
	"vm1/$long" "vm1/a/b"; do
	u_expect 2 "$VMBAK" info "$V" "$target"
done
u_expect 1 "$VMBAK" info "$V" nosuchvm
u_stderr "no VM 'nosuchvm'"
u_expect 1 "$VMBAK" info "$V" nosuchvm/latest
u_expect 1 "$VMBAK" info "$V" vm1/2000-01-01T00:00:00Z
u_stderr "no point '2000-01-01T00:00:00Z' of VM 'vm1'"
u_expect 1 "$VMBAK" info "$V" vm1/2000-01-01T00:00:00Z --json
u_expect 1 "$VMBAK" info "$T/missing"
u_expect 1 "$VMBAK" info "$T/plainfile" --json
u_expect 1 "$VMBAK" info "$T/emptydir"

# --- nothing stored was touched
"$VMBAK" list "$V" --json >"$T/after.json"
"$VMBAK" --passphrase-file "$T/pass" list "$VE" --json >"$T/after-enc.json"
checks=$((checks + 1))
if ! cmp -s "$T/before.json" "$T/after.json" || ! cmp -s "$T/before-enc.json" "$T/after-enc.json"
then
	echo "FAIL: the vaults' points changed" >&2
	diff "$T/before.json" "$T/after.json" >&2 || true
	fails=$((fails + 1))
fi
if ! sha256sum -c --quiet "$T/before.sha"; then
	echo "FAIL: a vault config changed" >&2
	fails=$((fails + 1))
fi
"$VMBAK" list "$V" vm1 >/dev/null || { echo "FAIL: vault unreadable" >&2; fails=$((fails + 1)); }

echo "# usage: $checks checks, $fails failed"
[ "$fails" -eq 0 ]
