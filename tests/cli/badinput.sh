#!/usr/bin/env bash
# tests/cli/badinput.sh: a table of bad command lines, each with the exit status it must give
# and a pattern its one line on stderr must match.
#
# tests/cli/usage.sh already walks init, ingest, list and info through wrong values; this table
# covers what it does not: every argument of verify, the lifecycle commands (protect,
# unprotect, delete, prune, gc, jobs) and the key vault, path traversal in names and targets,
# files where directories belong and the reverse (vaults, passphrase files, extents files,
# sources, key vaults), symlink loops, 5000-character values, numbers that are letters,
# negative or overflow, and wrong passphrases on every command that asks for one.
#
# Each row: exit status 2 (usage) or 1 (failure outside the command line), exactly one line on
# stderr starting with "vmbak: " and matching the row's pattern, nothing on stdout that looks
# like a result, and nothing stored touched: after the table, every database of both vaults but
# the job history (mdb_dump), their `list --json`, their configs and the key vault file are
# byte for byte what they were.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=/dev/null
. "$here/../lib.sh"
need_cmd mdb_dump sha256sum
[ -x "$VMBAK" ] || fail "no program at '$VMBAK'"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE VMBAK_KEYVAULT_PASSPHRASE \
	VMBAK_KEYVAULT_PASSPHRASE_FILE
cd "$TESTTMP"
T=$TESTTMP

rows=0
bad=0

# row STATUS ERE CMD...: one row of the table (stdin is /dev/null: nothing can prompt).
row() {
	local want=$1 re=$2 st=0
	shift 2
	rows=$((rows + 1))
	"$@" </dev/null >"$T/out" 2>"$T/err" || st=$?
	if [ "$st" -ne "$want" ] || [ "$(wc -l <"$T/err")" -ne 1 ] ||
		[ -n "$(tail -c 1 "$T/err")" ] || ! grep -q '^vmbak: ' "$T/err" ||
		! grep -Eq -- "$re" "$T/err"; then
		echo "FAIL: row $rows: exit $st (want $want), stderr must be one 'vmbak: ' line" \
			"matching /$re/: ${*:2}" | cut -c 1-400 >&2
		head -c 600 "$T/err" | sed 's/^/    stderr: /' >&2
		bad=$((bad + 1))
	fi
	if grep -Eq '^verify: .*whole$' "$T/out"; then
		echo "FAIL: row $rows printed a result: ${*:2}" | cut -c 1-300 >&2
		bad=$((bad + 1))
	fi
	return 0
}

has_cmd() {
	"$VMBAK" help "$1" >/dev/null 2>&1
}

# The scene.
V=$T/vault
VE=$T/vault-enc
D=$T/disk.img
head -c 200000 /dev/urandom >"$D"
truncate -s 1M "$D"
echo 'the right passphrase' >"$T/pass"
echo 'a wrong passphrase' >"$T/wrongpass"
printf '\n' >"$T/nlpass"
printf 'pass\0word\n' >"$T/nulpass"
: >"$T/plainfile"
mkdir "$T/emptydir" "$T/adir"
ln -s loop "$T/loop"
long=$(printf 'x%.0s' $(seq 5000))
longnum=$(printf '9%.0s' $(seq 5000))
name65=$(printf 'n%.0s' $(seq 65))
"$VMBAK" init "$V" --encryption none >/dev/null
"$VMBAK" ingest "$V" vm1 --disk sda="$D" >/dev/null
rp=$("$VMBAK" ingest "$V" vm1 --disk sda="$D" | tail -n 1)
"$VMBAK" init "$VE" --passphrase-file "$T/pass" >/dev/null
"$VMBAK" ingest "$VE" vm1 --disk sda="$D" --passphrase-file "$T/pass" >/dev/null

snapshot() {
	local v db
	for v in "$V" "$VE"; do
		if [ "$v" = "$VE" ]; then
			VMBAK_PASSPHRASE_FILE=$T/pass "$VMBAK" list "$v" --json
		else
			"$VMBAK" list "$v" --json
		fi
		sha256sum "$v/vmbak-vault.json"
		ls -A "$v"
		for db in meta vms2 rps2 rpnames2 lineages2 idx dmaps chunks pins protect2; do
			mdb_dump -s "$db" "$v" 2>/dev/null | sed '1,/^HEADER=END$/d' | sha256sum
		done
	done
	[ -d "$T/kv" ] && sha256sum "$T/kv"/* 2>/dev/null
	return 0
}

KV=$T/kv
if has_cmd keyvault; then
	VMBAK_KEYVAULT_PASSPHRASE_FILE=$T/pass "$VMBAK" keyvault init "$KV" >/dev/null 2>&1 ||
		fail "cannot create a key vault"
fi
snapshot >"$T/before"

# --- the targets every verb that takes VM or VM/RP shares: traversal and malformed names
for verb in verify; do
	row 2 'missing VAULT' "$VMBAK" $verb
	row 2 'vault path is empty' "$VMBAK" $verb ""
	row 2 'too long' "$VMBAK" $verb "$T/$long"
	row 2 'unexpected argument' "$VMBAK" $verb "$V" vm1 extra
	row 2 "unknown option '--bogus'" "$VMBAK" $verb "$V" --bogus
	row 1 'No such file or directory' "$VMBAK" $verb "$T/missing"
	row 1 'not a directory' "$VMBAK" $verb "$T/plainfile"
	row 1 'not a vault' "$VMBAK" $verb "$T/emptydir"
	row 1 'not a vault' "$VMBAK" $verb "$T/adir"
	row 1 'symbolic links' "$VMBAK" $verb "$T/loop"
	row 1 'No such file or directory' "$VMBAK" $verb "$T/missing/deeper"
	row 1 'Not a directory|not a directory' "$VMBAK" $verb "$T/plainfile/v"
	for target in ../x ../../etc/passwd "vm1/../x" "./vm1" "." ".." "a/b/c" "/vm1" \
		"vm1/.." "vm1/." "$name65" "$long" "vm 1" $'vm1\n' 'vm1*' 'é' "vm1/$long" \
		"vm1/2026-01-01T00:00:00Z/x" "vm1/bad id"; do
		row 2 'invalid (VM name|point id)|empty VM name' "$VMBAK" $verb "$V" "$target"
	done
	row 2 'empty VM name' "$VMBAK" $verb "$V" ""
	row 1 "no VM 'nosuchvm'" "$VMBAK" $verb "$V" nosuchvm
	row 1 "no VM 'nosuchvm'" "$VMBAK" $verb "$V" nosuchvm/latest
	row 1 "no point '2000-01-01T00:00:00Z'" "$VMBAK" $verb "$V" vm1/2000-01-01T00:00:00Z
done

# --- verify's own options
for s in "" 0 -1 -0.5 101 100.5 abc 10x 1e999 nan inf " 5" "%" "$long" "$longnum" 0x10; do
	row 2 'invalid --sample' "$VMBAK" verify "$V" --sample "$s"
done
row 2 'needs an argument' "$VMBAK" verify "$V" --sample
for s in "" 0 -1 abc 18446744073709551616 "$longnum" " 7" 1.5; do
	row 2 'invalid --seed' "$VMBAK" verify "$V" --sample 10 --seed "$s"
done
row 2 '--seed needs --sample' "$VMBAK" verify "$V" --seed 5
row 2 '--seed needs --sample' "$VMBAK" verify "$V" --sample 100 --seed 5
row 2 'takes no argument' "$VMBAK" verify "$V" --json=yes
row 2 'no --passphrase option' "$VMBAK" verify "$VE" --passphrase=s3cret
grep -q s3cret "$T/err" && { echo "FAIL: a passphrase in a message" >&2; bad=$((bad + 1)); }
row 2 'empty file name' "$VMBAK" verify "$VE" --passphrase-file ""

# --- passphrases: wrong, empty, NUL, missing, a directory, a loop, too long a path
for verb in verify ingest; do
	args=("$VE")
	[ $verb = ingest ] && args+=(vm1 --disk sda="$D")
	row 1 'wrong passphrase' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/wrongpass"
	row 1 'wrong passphrase' env VMBAK_PASSPHRASE='not it' "$VMBAK" $verb "${args[@]}"
	row 1 'wrong passphrase' env VMBAK_PASSPHRASE_FILE="$T/wrongpass" "$VMBAK" $verb \
		"${args[@]}"
	row 1 'wrong passphrase' "$VMBAK" --passphrase-file "$T/wrongpass" $verb "${args[@]}"
	row 1 'empty passphrase' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/nlpass"
	row 1 'NUL' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/nulpass"
	row 1 'missing' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/missing"
	row 1 'directory' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/adir"
	row 1 'directory' env VMBAK_PASSPHRASE_FILE="$T/adir" "$VMBAK" $verb "${args[@]}"
	row 1 'symbolic links' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/loop"
	row 1 'too long' "$VMBAK" $verb "${args[@]}" --passphrase-file "$T/$long"
	row 2 'no passphrase' "$VMBAK" $verb "${args[@]}"
	row 1 'empty passphrase' env VMBAK_PASSPHRASE= "$VMBAK" $verb "${args[@]}"
done
if grep -rq 'right passphrase\|wrong passphrase$\|not it' "$T/err"; then
	echo "FAIL: a passphrase appears in a message" >&2
	bad=$((bad + 1))
fi

# --- ingest: what usage.sh leaves out
for dn in ../x .. a/b "../../etc/passwd" "sda/" "$long"; do
	row 2 'disk name' "$VMBAK" ingest "$V" vm1 --disk "$dn=$D"
done
for vm in ../x "../../etc" "vm1/" "/vm1" "$long"; do
	row 2 'VM name' "$VMBAK" ingest "$V" "$vm" --disk sda="$D"
done
row 1 'directory' "$VMBAK" ingest "$V" vm1 --disk sda="$T/adir"
row 1 'symbolic links' "$VMBAK" ingest "$V" vm1 --disk sda="$T/loop"
row 1 'not a directory|Not a directory' "$VMBAK" ingest "$V" vm1 --disk sda="$T/plainfile/x"
row 2 'too long' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed "sda=$T/$long"
row 1 'not a regular file' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/adir"
row 1 'symbolic links' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/loop"
row 2 'retain-until' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until "$long"
row 2 'retain-until' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until 99999-01-01
row 2 'retain-until' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --retain-until -2030-01-01
row 2 'thread' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --threads "$longnum"
row 2 'thread' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --threads 18446744073709551617
row 1 'not a vault' "$VMBAK" ingest "$T/adir" vm1 --disk sda="$D"
row 1 'symbolic links' "$VMBAK" ingest "$T/loop" vm1 --disk sda="$D"
# Extents files that do not parse: the line at fault is named; nothing is committed.
printf '0 65536\nbogus line\n' >"$T/bad.map"
row 1 'line 2' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/bad.map"
printf '0 99999999999999999999999\n' >"$T/big.map"
row 1 'line 1' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/big.map"
printf '0 4096\n2097152 4096\n' >"$T/past.map"
row 1 'line 2' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/past.map"
printf -- '-5 4096\n' >"$T/neg.map"
row 1 'line 1' "$VMBAK" ingest "$V" vm1 --disk sda="$D" --changed sda="$T/neg.map"

# --- init: a few more places a vault cannot go
row 1 'symbolic links' "$VMBAK" init "$T/loop" --encryption none
row 1 'directory' "$VMBAK" init "$T/newv" --passphrase-file "$T/adir"
[ -e "$T/newv" ] && { echo "FAIL: init left '$T/newv'" >&2; bad=$((bad + 1)); }
row 2 'chunk size' "$VMBAK" init "$T/newv" --encryption none --chunk-size "$longnum"
row 2 'encryption' "$VMBAK" init "$T/newv" --encryption "$long"

# --- list and info: traversal and loops
row 1 'symbolic links' "$VMBAK" list "$T/loop"
row 1 'symbolic links' "$VMBAK" info "$T/loop"
for target in ../x "vm1/../x" "$long"; do
	row 2 'VM name|point id' "$VMBAK" list "$V" "$target"
	row 2 'VM name|point id' "$VMBAK" info "$V" "$target"
done

# --- lifecycle commands, where this build has them
for verb in protect unprotect delete; do
	has_cmd $verb || continue
	row 2 'missing VAULT' "$VMBAK" $verb
	row 2 'missing' "$VMBAK" $verb "$V"
	row 2 'vault path is empty' "$VMBAK" $verb "" "vm1/$rp"
	row 2 'too long' "$VMBAK" $verb "$T/$long" "vm1/$rp"
	row 2 'unexpected argument' "$VMBAK" $verb "$V" "vm1/$rp" extra
	row 2 "unknown option '--bogus'" "$VMBAK" $verb "$V" "vm1/$rp" --bogus
	for target in ../x "vm1/../x" "vm1/$long" "$name65/$rp" "" "/$rp"; do
		row 2 'invalid|empty|missing|point|expected VM/RP' "$VMBAK" $verb "$V" "$target"
	done
	# A malformed id is refused before the vault is opened, as by info and verify; a
	# well-formed one that is not there is looked up.
	row 2 "invalid point id 'bad id'" "$VMBAK" $verb "$V" "vm1/bad id"
	row 1 "no recovery point 'vm1/2000-01-01T00:00:00Z'" "$VMBAK" $verb "$V" \
		"vm1/2000-01-01T00:00:00Z"
	row 1 'No such file or directory' "$VMBAK" $verb "$T/missing" "vm1/$rp"
	row 1 'not a directory' "$VMBAK" $verb "$T/plainfile" "vm1/$rp"
	row 1 'not a vault' "$VMBAK" $verb "$T/adir" "vm1/$rp"
	row 1 "no (VM|point|recovery point)" "$VMBAK" $verb "$V" nosuchvm/2000-01-01T00:00:00Z
	row 1 "no (VM|point|recovery point)" "$VMBAK" $verb "$V" vm1/2000-01-01T00:00:00Z
done
if has_cmd prune; then
	row 2 'missing VAULT' "$VMBAK" prune
	row 2 'missing VM' "$VMBAK" prune "$V"
	row 2 'rule' "$VMBAK" prune "$V" vm1
	row 2 'too long' "$VMBAK" prune "$T/$long" vm1 --keep-last 1
	for vm in ../x "a/b" "$name65" "" "$long"; do
		row 2 'VM name' "$VMBAK" prune "$V" "$vm" --keep-last 1
	done
	for opt in last hourly daily weekly monthly yearly; do
		for n in "" -1 abc 1x "$longnum" 18446744073709551616 " 1" 1.5; do
			row 2 "keep-$opt" "$VMBAK" prune "$V" vm1 --keep-$opt "$n"
		done
	done
	row 2 'needs an argument' "$VMBAK" prune "$V" vm1 --keep-last
	row 1 'No such file or directory' "$VMBAK" prune "$T/missing" vm1 --keep-last 1
	row 1 'not a directory' "$VMBAK" prune "$T/plainfile" vm1 --keep-last 1
	row 1 "no VM 'nosuchvm'" "$VMBAK" prune "$V" nosuchvm --keep-last 1
fi
for verb in gc jobs; do
	has_cmd $verb || continue
	row 2 'missing VAULT' "$VMBAK" $verb
	row 2 'vault path is empty' "$VMBAK" $verb ""
	row 2 'too long' "$VMBAK" $verb "$T/$long"
	row 2 'unexpected argument' "$VMBAK" $verb "$V" extra
	row 2 "unknown option '--bogus'" "$VMBAK" $verb "$V" --bogus
	row 1 'No such file or directory' "$VMBAK" $verb "$T/missing"
	row 1 'not a directory' "$VMBAK" $verb "$T/plainfile"
	row 1 'not a vault' "$VMBAK" $verb "$T/adir"
	row 1 'symbolic links' "$VMBAK" $verb "$T/loop"
done
if has_cmd jobs; then
	for n in "" 0 -1 abc "$longnum" 18446744073709551616; do
		row 2 'last' "$VMBAK" jobs "$V" --last "$n"
	done
fi

# --- the key vault, where this build has it
if has_cmd keyvault; then
	export VMBAK_KEYVAULT_PASSPHRASE_FILE=$T/pass
	row 2 'missing|usage' "$VMBAK" keyvault
	row 2 'unknown' "$VMBAK" keyvault bogus "$KV"
	row 2 'missing|usage' "$VMBAK" keyvault key
	row 2 'missing' "$VMBAK" keyvault key list
	row 2 'empty|missing' "$VMBAK" keyvault key list ""
	row 1 'cannot read key vault|too long' "$VMBAK" keyvault key list "$T/$long"
	row 1 'No such file or directory|not a key vault' "$VMBAK" keyvault key list "$T/missing"
	row 1 'ot a directory|not a key vault' "$VMBAK" keyvault key list "$T/plainfile"
	row 1 'not a key vault' "$VMBAK" keyvault key list "$T/adir"
	row 1 'not a key vault' "$VMBAK" keyvault key list "$V"
	for name in ../x a/b .hidden "$name65" "" "$long" "k 1"; do
		row 2 'name' "$VMBAK" keyvault key create "$KV" "$name"
		row 2 'name' "$VMBAK" keyvault secret set "$KV" "$name" --value-file "$T/pass"
	done
	row 2 'empty' "$VMBAK" keyvault key create "$KV" k1 --type ""
	for ty in rsa-1024 rsa aes-128 bogus "$long"; do
		row 2 'type' "$VMBAK" keyvault key create "$KV" k1 --type "$ty"
	done
	row 1 'no (key|KEK)' "$VMBAK" keyvault key rotate "$KV" nosuchkey
	row 2 'value-file' "$VMBAK" keyvault secret set "$KV" s1
	row 1 'missing|No such file' "$VMBAK" keyvault secret set "$KV" s1 \
		--value-file "$T/missing"
	row 1 'directory' "$VMBAK" keyvault secret set "$KV" s1 --value-file "$T/adir"
	row 1 'no (key|KEK)' "$VMBAK" keyvault secret set "$KV" s1 --value-file "$T/pass" \
		--kek nosuchkey
	row 1 'wrong passphrase' env VMBAK_KEYVAULT_PASSPHRASE_FILE="$T/wrongpass" \
		"$VMBAK" keyvault secret set "$KV" s1 --value-file "$T/pass"
	row 1 'No such file|missing' "$VMBAK" keyvault unwrap "$KV" "$T/missing.key"
	row 1 'directory' "$VMBAK" keyvault unwrap "$KV" "$T/adir"
	head -c 300 /dev/urandom >"$T/garbage.key"
	row 1 'blob|escrow|JSON' "$VMBAK" keyvault unwrap "$KV" "$T/garbage.key"
	row 1 'blob|escrow|JSON' "$VMBAK" keyvault restore "$KV" "$T/garbage.key"
	: >"$T/empty.key"
	row 1 'blob|escrow|JSON|empty' "$VMBAK" keyvault unwrap "$KV" "$T/empty.key"
	unset VMBAK_KEYVAULT_PASSPHRASE_FILE
fi

# --- nothing stored was touched
snapshot >"$T/after"
rows=$((rows + 1))
if ! cmp -s "$T/before" "$T/after"; then
	echo "FAIL: something stored changed" >&2
	diff "$T/before" "$T/after" >&2 || true
	bad=$((bad + 1))
fi

echo "# badinput: $rows rows, $bad failed"
[ "$bad" -eq 0 ]
