#!/usr/bin/env bash
# tests/cli/libfaults.sh: faults inside the libraries (issue 10). Each operation runs with the
# Nth system call it makes failing, whoever makes it: LMDB, json-c, OpenSSL, libfuse or our own
# code (tests/fault/libfault.c, an LD_PRELOAD built as $B/tests/libfault.so: open, read, pread,
# write, pwrite, fsync, fdatasync, mmap, msync, rename, ftruncate, getrandom... fail with EIO,
# writes with ENOSPC).
#
# Operations, on a fresh copy of a reference vault (encrypted, two VMs, escrow through a key
# vault) or key vault: init, ingest, ingest --changed, list, info, verify, delete, prune, gc,
# keyvault init, key create, key rotate, secret set, unwrap, and a mount with every image read
# (vmbakfs -f). A clean run counts the calls C; then N runs over 1..C (LIBFAULTS_MAX values,
# default 5: 1, C and others picked from SEED; LIBFAULTS_MAX=0: every N). Each run must:
#   - end in success (stderr empty, or lines "vmbak: warning: ...") or a non-zero, non-signal
#     status with exactly one line on stderr starting "vmbak: " or "vmbakfs: "; no sanitizer
#     report. A mount under a fault: images read exactly or fail with EIO, never wrong bytes;
#   - leave, run again WITHOUT faults: `vmbak verify` exiting 0; every point listed reading back
#     exactly through a mount (sha256 of its sources), and the points listed being those before
#     or after the operation; the next operation of the same kind working (a key vault: its
#     keys listed, the escrowed secret unwrapped).
# Prints the seed, each failing run (operation, N, the call that failed, what went wrong) and the
# counts per operation.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_cmd python3 sha256sum timeout
need_programs
LIBFAULT=${LIBFAULT_SO:-$(dirname "$VMBAK")/tests/libfault.so}
use_test_build
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE VMBAK_KEYVAULT_PASSPHRASE \
	VMBAK_KEYVAULT_PASSPHRASE_FILE
if [ ! -f "$LIBFAULT" ]; then
	[ "${CI:-}" = true ] && fail "'$LIBFAULT' is not built (make test-bins)"
	skip "'$LIBFAULT' is not built (make test-bins)"
fi
FUSE=1
if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
	[ "${CI:-}" = true ] && fail "needs root and /dev/fuse for the mounts under CI=true"
	FUSE=0
	note "no FUSE here: points are checked by verify only, the mount is not faulted"
fi

MAX=${LIBFAULTS_MAX:-5}
SEED=${SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
note "seed $SEED (SEED=$SEED LIBFAULTS_MAX=$MAX to replay)"
# The preload sits under the sanitizers' own interceptors.
SAN_OPTS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0

T=$TESTTMP
cd "$T"
printf 'libfaults vault passphrase\n' >pass
printf 'libfaults key vault passphrase\n' >kvpass
printf 'the disk secret\n' >secret
chmod 600 pass kvpass secret
export VMBAK_PASSPHRASE_FILE=$T/pass VMBAK_KEYVAULT_PASSPHRASE_FILE=$T/kvpass
M=$T/mnt
mkdir -p "$M"
M=$(_lib_abspath "$M")
[ "$FUSE" -eq 1 ] && echo "fuse $M" >>"$_lib_state"

python3 - <<'EOF'
import random
r = random.Random(11)
cs = 16384
with open("d1.img", "wb") as f:
    f.truncate(2 << 20)
    f.write(r.randbytes(128 << 10))
    f.seek(1 << 20)
    f.write(b"libfaults text block\n" * 8000)
with open("e1.img", "wb") as f:
    f.truncate(1 << 20)
    f.seek(256 << 10)
    f.write(r.randbytes(64 << 10))
data = bytearray(open("d1.img", "rb").read())
for i, off in enumerate((0, 1 << 20, (2 << 20) - cs)):
    data[off:off + cs] = r.randbytes(cs)
open("d2.img", "wb").write(data)
open("ch-d2", "w").write("".join("%d %d\n" % (o, cs) for o in (0, 1 << 20, (2 << 20) - cs)))
for i, off in enumerate((cs * 3, 1 << 20)):
    data[off:off + cs] = r.randbytes(cs)
open("d3.img", "wb").write(data)
open("ch-d3", "w").write("".join("%d %d\n" % (o, cs) for o in (cs * 3, 1 << 20)))
EOF

# ---- the references ----
T0=1772359200
expect_status 0 "$VMBAK" keyvault init kvref
expect_status 0 "$VMBAK" keyvault key create kvref kek --type aes-256
expect_status 0 "$VMBAK" keyvault secret set kvref s1 --value-file secret --kek kek
expect_status 0 "$VMBAK" init ref --chunk-size 16K
VMBAK_TEST_NOW=$((T0 + 60)) expect_status 0 "$VMBAK" ingest ref vm1 --disk sda=d1.img \
	--disk sdb=e1.img --keyvault kvref --escrow sda=s1
VMBAK_TEST_NOW=$((T0 + 120)) expect_status 0 "$VMBAK" ingest ref vm2 --disk sda=e1.img
VMBAK_TEST_NOW=$((T0 + 3600)) expect_status 0 "$VMBAK" ingest ref vm1 --disk sda=d2.img \
	--disk sdb=e1.img --changed sda=ch-d2
VMBAK_TEST_NOW=$((T0 + 7200)) expect_status 0 "$VMBAK" ingest ref vm1 --disk sda=d1.img \
	--disk sdb=e1.img
# A deleted point, so that gc has something to free.
expect_status 0 "$VMBAK" delete ref vm1/2026-03-01T12:00:00Z --force
expect_status 0 "$VMBAK" verify ref
rm -f ref/lock.mdb
# What each point's images must read as: "VM/RP/DISK.img SHA256".
sha() { sha256sum <"$1" | cut -d' ' -f1; }
{
	echo "vm1/2026-03-01T10:01:00Z/sda.img $(sha d1.img)"
	echo "vm1/2026-03-01T10:01:00Z/sdb.img $(sha e1.img)"
	echo "vm2/2026-03-01T10:02:00Z/sda.img $(sha e1.img)"
	echo "vm1/2026-03-01T11:00:00Z/sda.img $(sha d2.img)"
	echo "vm1/2026-03-01T11:00:00Z/sdb.img $(sha e1.img)"
	# The points the operations make.
	echo "vm1/2026-03-01T13:00:00Z/sda.img $(sha d3.img)"
	echo "vm1/2026-03-01T13:00:00Z/sdb.img $(sha e1.img)"
	echo "vm2/2026-03-01T13:00:00Z/sda.img $(sha d3.img)"
	echo "vm1/2026-03-01T14:00:00Z/sda.img $(sha d3.img)"
	echo "vm1/2026-03-01T14:00:00Z/sdb.img $(sha e1.img)"
	echo "vm2/2026-03-01T14:00:00Z/sda.img $(sha d1.img)"
} >expect
if [ "$FUSE" -eq 1 ]; then
	vmount ref "$M"
	cp "$M/vm1/2026-03-01T10:01:00Z/sda.key" blob
	vumount "$M"
else
	skip "the escrow blob is taken from a mount: needs FUSE"
fi

# ---- the operations ----
# Each: prep DIR (a fresh copy to work in), the faulted command (run in DIR), the check that the
# next operation of the same kind works. @ in the arguments stands for DIR.
declare -A OP NEXT KIND
add() { OP[$1]=$2; NEXT[$1]=$3; KIND[$1]=$4; }
ops=(init ingest ingest-changed list info verify delete prune gc kv-init kv-create kv-rotate
	kv-secret kv-unwrap mount)
V13="VMBAK_TEST_NOW=$((T0 + 10800))"
V14="VMBAK_TEST_NOW=$((T0 + 14400))"
add init "vmbak init @/new --chunk-size 16K" "vmbak init @/new2" init
add ingest "$V13 vmbak ingest @/v vm2 --disk sda=$T/d3.img" \
	"$V14 vmbak ingest @/v vm2 --disk sda=$T/d1.img" vault
add ingest-changed "$V13 vmbak ingest @/v vm1 --disk sda=$T/d3.img --disk sdb=$T/e1.img --changed sda=$T/ch-d3 --keyvault @/kv --escrow sda=s1" \
	"$V14 vmbak ingest @/v vm1 --disk sda=$T/d3.img --disk sdb=$T/e1.img --changed sda=$T/ch-d3" vault
add list "vmbak list @/v --json" "vmbak list @/v" vault
add info "vmbak info @/v vm1/2026-03-01T10:01:00Z" "vmbak info @/v" vault
add verify "vmbak verify @/v" "vmbak verify @/v vm1" vault
add delete "vmbak delete @/v vm1/2026-03-01T10:01:00Z" "vmbak delete @/v vm2/2026-03-01T10:02:00Z --force" vault
add prune "vmbak prune @/v vm1 --keep-last 1" "vmbak prune @/v vm2 --keep-last 1" vault
add gc "vmbak gc @/v" "vmbak gc @/v" vault
add kv-init "vmbak keyvault init @/kvnew" "vmbak keyvault init @/kvnew2" kvinit
add kv-create "vmbak keyvault key create @/kv kek2 --type aes-256" \
	"vmbak keyvault key create @/kv kek3 --type aes-256" kv
add kv-rotate "vmbak keyvault key rotate @/kv kek" "vmbak keyvault key rotate @/kv kek" kv
add kv-secret "vmbak keyvault secret set @/kv s2 --value-file $T/secret --kek kek" \
	"vmbak keyvault secret set @/kv s3 --value-file $T/secret --kek kek" kv
add kv-unwrap "vmbak keyvault unwrap @/kv $T/blob" "vmbak keyvault unwrap @/kv $T/blob" kv
add mount "MOUNT" "" vault

nfail=0
fails=()
declare -A count=()
bump() { count[$1]=$((${count[$1]:-0} + 1)); }

# fresh DIR: DIR with a copy of the reference vault (v) and key vault (kv).
fresh() {
	rm -rf --one-file-system "$1"
	mkdir "$1"
	mkdir "$1/v"
	cp --sparse=always ref/data.mdb ref/vmbak-vault.json "$1/v/"
	cp -a kvref "$1/kv"
}

# points DIR: "VM/RP" of every point the vault lists, sorted.
points() {
	{ "$VMBAK" list "$1/v" --json 2>/dev/null || echo '[]'; } | python3 -c 'import json, sys
for p in json.load(sys.stdin):
    print(p["vm"] + "/" + p["id"])' | sort
}

# expand CMD DIR: CMD with @ replaced by DIR and the program vmbak by $VMBAK.
expand() {
	local c=${1//@/$2}
	echo "${c/vmbak /$VMBAK }"
}

# run_cmd DIR CMD N: runs CMD (with @ = DIR) with call N failing (0: none) in the background
# of nothing: stdout in run.out, stderr in run.err, status in $st, the failed call in $call.
run_cmd() {
	local dir=$1 cmd=$2 n=$3 env=()
	env=(VMBAK_LIBFAULT="$n" VMBAK_LIBFAULT_COUNT="$T/cnt" LD_PRELOAD="$LIBFAULT"
		ASAN_OPTIONS="$SAN_OPTS")
	rm -f cnt
	st=0
	# The command is split into words on purpose (no argument here holds a space).
	# shellcheck disable=SC2046
	timeout -k 5 60 env "${env[@]}" $(expand "$cmd" "$dir") </dev/null >run.out 2>run.err ||
		st=$?
	calls=$(awk '{ print $1 }' cnt 2>/dev/null || echo 0)
	call=$(awk '{ print $2 }' cnt 2>/dev/null || true)
}

# mount_read DIR N: vmbakfs -f of DIR/v with call N failing, every image of the listing read;
# sets st (the daemon's status, or 1 with one line if it refused), and appends problems.
mount_read() {
	local dir=$1 n=$2 pid k path sum rst gone=0
	rm -f cnt
	VMBAK_LIBFAULT="$n" VMBAK_LIBFAULT_COUNT="$T/cnt" LD_PRELOAD="$LIBFAULT" \
		ASAN_OPTIONS="$SAN_OPTS" "$VMBAKFS" "$dir/v" "$M" -f >run.out 2>run.err &
	pid=$!
	for ((k = 0; k < 400; k++)); do
		is_mounted "$M" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	if is_mounted "$M"; then
		while read -r path sum; do
			[ -d "$dir/listed/$(dirname "$path")" ] || continue
			rst=0
			timeout -k 5 20 sha256sum "$M/$path" >rd.out 2>rd.err || rst=$?
			if ! is_mounted "$M"; then
				# The daemon quit and its mount went with it.
				gone=1
				break
			fi
			if [ "$rst" -eq 0 ]; then
				[ "$(cut -d' ' -f1 rd.out)" = "$sum" ] ||
					probs+=("$path: WRONG BYTES through the faulted mount")
			elif grep -Eq 'not connected|connection abort' rd.err; then
				# The daemon quit: fine if it said why, in one line (checked by the caller).
				gone=1
			elif ! grep -q 'Input/output error' rd.err; then
				probs+=("$path: read under the fault failed, not with EIO: $(head -c 200 rd.err)")
			fi
		done <expect
		# A daemon whose /dev/fuse failed has ended its session (and says so on exit): a stat
		# that fails or hangs is fine while the daemon is on its way out, never after.
		if [ "$gone" -eq 0 ] && is_mounted "$M" &&
			! timeout -k 5 10 stat "$M" >/dev/null 2>&1; then
			gone=1
			for ((k = 0; k < 200; k++)); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.05
			done
			if kill -0 "$pid" 2>/dev/null; then
				probs+=("the faulted mount stopped answering")
				# Where the daemon is stuck, for whoever reads the log.
				if command -v gdb >/dev/null; then
					timeout 30 gdb -p "$pid" -batch -ex 'thread apply all bt' \
						2>/dev/null | grep -E '^(Thread|#)' | head -n 60 |
						sed 's/^/    stuck: /'
				fi
			fi
		fi
		_lib_fuse_unmount "$M" || probs+=("cannot unmount the faulted mount")
	fi
	for ((k = 0; k < 200; k++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; probs+=("vmbakfs -f did not exit"); }
	st=0
	wait "$pid" 2>/dev/null || st=$?
	[ "$gone" -eq 0 ] || [ "$st" -ne 0 ] || probs+=("vmbakfs left its mount but exited 0")
	calls=$(awk '{ print $1 }' cnt 2>/dev/null || echo 0)
	call=$(awk '{ print $2 }' cnt 2>/dev/null || true)
}

# read_points DIR: every listed point of DIR/v reads back exactly through a clean mount.
read_points() {
	local dir=$1 p path sum rst
	rm -rf "$dir/listed"
	while read -r p; do
		mkdir -p "$dir/listed/$p"
		grep -q "^$p/" expect || probs+=("an unknown point is listed: $p")
	done < <(points "$dir" 2>/dev/null)
	[ "$FUSE" -eq 1 ] || return 0
	if ! timeout -k 5 60 "$VMBAKFS" "$dir/v" "$M" >fs.out 2>fs.err; then
		probs+=("the vault does not mount after the fault: $(head -c 200 fs.err)")
		return 0
	fi
	while read -r path sum; do
		[ -d "$dir/listed/$(dirname "$path")" ] || continue
		rst=0
		timeout -k 5 20 sha256sum "$M/$path" >rd.out 2>rd.err || rst=$?
		[ "$rst" -eq 0 ] && [ "$(cut -d' ' -f1 rd.out)" = "$sum" ] ||
			probs+=("$path does not read back after the fault (status $rst: $(head -c 100 rd.err))")
	done <expect
	_lib_fuse_unmount "$M" || probs+=("cannot unmount")
}

t0=$SECONDS
for op in "${ops[@]}"; do
	D=$T/w
	# The clean run: how many calls, and the points before and after.
	fresh "$D"
	points "$D" >before
	if [ "$op" = mount ]; then
		read_points "$D"
		probs=()
		mount_read "$D" 0
	else
		run_cmd "$D" "${OP[$op]}" 0
		[ "$st" -eq 0 ] || { cat run.err; fail "$op fails without a fault (status $st)"; }
	fi
	c=$calls
	points "$D" >after 2>/dev/null || : >after
	if [ "$MAX" -eq 0 ] || [ "$c" -le "$MAX" ]; then
		ns=$(seq 1 "$c")
	else
		ns=$( (echo 1; echo "$c"; python3 -c 'import random, sys
s, c, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("\n".join(map(str, random.Random(s).sample(range(2, c), min(k, c - 2)))))' \
			"$SEED $op" "$c" "$((MAX - 2))") | sort -n -u)
	fi
	nf=0
	for n in $ns; do
		probs=()
		fresh "$D"
		if [ "$op" = mount ]; then
			read_points "$D"
			mount_read "$D" "$n"
		else
			run_cmd "$D" "${OP[$op]}" "$n"
		fi
		# The outcome under the fault.
		if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
			probs+=("timed out")
		elif [ "$st" -ge 128 ]; then
			probs+=("CRASHED with status $st: $(tail -n 3 run.err | tr '\n' '|')")
		elif [ "$st" -ne 0 ]; then
			# libfuse reports a failed read of /dev/fuse with perror() ("fuse: reading
			# device: ..."), which no API of it redirects: that line is libfuse's own.
			[ "$op" = mount ] && sed -i '/^fuse: reading device: /d' run.err
			if [ "$(wc -l <run.err)" -ne 1 ] || ! grep -Eq '^vmbak(fs)?: ' run.err; then
				probs+=("status $st without one clear line on stderr: $(head -c 300 run.err | tr '\n' '|')")
			fi
			bump "$op-failed-cleanly"
		else
			# A mount that served on logs each request it failed ("vmbakfs: ..." lines).
			if grep -Ev '^vmbak: warning: |^vmbakfs: ' run.err | grep -q . ||
				{ [ "$op" != mount ] && grep -q '^vmbakfs: ' run.err; }; then
				probs+=("success, but stderr has: $(head -c 300 run.err | tr '\n' '|')")
			fi
			bump "$op-succeeded"
		fi
		if grep -Eq 'ERROR: (Address|Leak|Memory)Sanitizer|runtime error:' run.err; then
			probs+=("sanitizer: $(grep -Em1 'ERROR|runtime error' run.err)")
		fi
		# Afterwards, without faults.
		case "${KIND[$op]}" in
		vault)
			vst=0
			"$VMBAK" verify "$D/v" >vf.out 2>vf.err || vst=$?
			[ "$vst" -eq 0 ] || probs+=("verify afterwards exits $vst: $(head -c 200 vf.err)")
			points "$D" >now 2>/dev/null || : >now
			cmp -s now before || cmp -s now after ||
				probs+=("points listed afterwards are neither those before nor after: $(tr '\n' ' ' <now)")
			read_points "$D"
			;;
		init)
			if [ -e "$D/new/vmbak-vault.json" ]; then
				"$VMBAK" verify "$D/new" >/dev/null 2>vf.err ||
					probs+=("a failed init left a vault that does not verify: $(head -c 200 vf.err)")
			elif [ -e "$D/new" ]; then
				# Not a vault: a new init there must work.
				NEXT[init]="vmbak init @/new"
			fi
			;;
		kvinit)
			if [ -e "$D/kvnew/keyvault.json" ]; then
				"$VMBAK" keyvault key list "$D/kvnew" >/dev/null 2>kv.err ||
					probs+=("a failed keyvault init left a key vault that does not work: $(head -c 200 kv.err)")
			elif [ -e "$D/kvnew" ]; then
				NEXT[kv-init]="vmbak keyvault init @/kvnew"
			fi
			;;
		kv)
			"$VMBAK" keyvault key list "$D/kv" >/dev/null 2>kv.err ||
				probs+=("keyvault key list afterwards fails: $(head -c 200 kv.err)")
			"$VMBAK" keyvault unwrap "$D/kv" "$T/blob" >kv.out 2>kv.err &&
				[ "$(cat kv.out)" = "$(cat secret)" ] ||
				probs+=("the escrowed secret does not unwrap afterwards: $(head -c 200 kv.err)")
			;;
		esac
		if [ -n "${NEXT[$op]}" ]; then
			nst=0
			# shellcheck disable=SC2046
			env $(expand "${NEXT[$op]}" "$D") </dev/null >nx.out 2>nx.err || nst=$?
			[ "$nst" -eq 0 ] ||
				probs+=("the next $op fails afterwards (status $nst): $(head -c 200 nx.err)")
		fi
		NEXT[init]="vmbak init @/new2"
		NEXT[kv-init]="vmbak keyvault init @/kvnew2"
		if [ ${#probs[@]} -gt 0 ]; then
			nfail=$((nfail + 1))
			nf=$((nf + 1))
			fails+=("FAIL $op with call $n of $c failing (${call:-?}):" "${probs[@]/#/    }")
			echo "FAIL $op with call $n of $c failing (${call:-?}) (SEED=$SEED):"
			printf '    %s\n' "${probs[@]}"
			for k in $(for line in "${probs[@]}"; do
				case "$line" in
				*CRASHED* | *sanitizer*) echo crash ;;
				*'one clear line'* | *'stderr has'*) echo unclear-message ;;
				*'WRONG BYTES'*) echo wrong-bytes ;;
				*'timed out'*) echo timeout ;;
				*) echo "vault-after-$op" ;;
				esac
			done | sort -u); do
				bump "fail-$k"
			done
		fi
	done
	note "$op: $c calls, $(wc -w <<<"$ns") faults tried, $nf failed"
done
rm -rf --one-file-system "$T/w"
note "$((SECONDS - t0)) s"
for k in $(printf '%s\n' "${!count[@]}" | sort); do
	note "$k: ${count[$k]}"
done
# The failures again, last: the runner shows a failed test's last lines.
for line in "${fails[@]}"; do
	note "$line"
done
[ "$nfail" -eq 0 ] || fail "$nfail faulted runs failed (SEED=$SEED)"
exit 0
