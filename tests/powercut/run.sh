#!/usr/bin/env bash
# tests/powercut/run.sh: power cuts. Ingests, deletes and gc run inside a QEMU guest (TCG)
# whose vault lives on an ext4 virtio disk (cache=writeback); QEMU is killed with SIGKILL at a
# random instant, so every write the guest kernel had not yet issued to the disk is lost. The
# next boot checks the vault against what the guest had reported done before the cut.
#
#   tests/powercut/run.sh [--cuts N] [--seed S] [--window MS] [--dir DIR] [--keep] [--plain]
#
#   --cuts N     number of cuts (default 50)
#   --seed S     seed of the whole run: the delays of the cuts and the guest's operations and
#                source disks (default: random, printed). Guest timing under TCG is not exact,
#                so a replay with the same seed cuts near, not exactly at, the same instants.
#   --window MS  each cut comes a random 0..MS milliseconds after the guest starts operating
#                (default 20000)
#   --dir DIR    working directory (default: a new one under ${TMPDIR:-/tmp}); kept after a
#                failure, with the vault image as the failing cut left it
#   --keep       keep the working directory after a pass too
#   --plain      a vault without encryption (default: aes-256-gcm)
#   --check-image IMG
#                only boot the guest in check mode on a copy of the vault disk IMG (the
#                vault-after-cut.img a failure keeps) and show what it prints
#
# How it works. One boot per cut: the guest (tests/powercut/init.sh in an initramfs of
# busybox-static, the programs under test and their libraries, the virtio and fuse modules of
# Debian's cloud kernel) first reports what the vault holds (every point of vm1 with the sha256
# of its image read through a vmbakfs mount inside the guest, and the exit status of `vmbak
# verify`), then runs a seeded plan of operations, each reported on the serial console when it
# returns ("COMMITTED <rp> <sha256 of the source>", "DELETED <rp>", "GC-DONE"; deletes,
# `prune --keep-last 4` and gc among ingests, the first operation an ingest), until the host
# kills QEMU. The host keeps the ledger: after a cut, every point reported committed reads back
# exactly, every point reported deleted stays deleted, a point nobody reported is only the one
# the cut ingest was writing (and equals its source), verify exits 0, and the next ingest (the
# first operation of every boot) works. A last boot checks the last cut.
#
# Needs qemu-system-x86_64, busybox-static, cpio, mkfs.ext4, python3, and the kernel of
# linux-image-cloud-amd64, which is fetched with `apt-get download` and unpacked (dpkg -x)
# into POWERCUT_CACHE (default /var/tmp/vmbak-powercut); nothing is installed on the host.
# POWERCUT_KERNEL_DIR may name an unpacked kernel package instead (tests/guest.sh).
#
# Exit status: 0 pass, 1 fail, 77 cannot run here (under CI=true that is a failure, 1).
set -uo pipefail
# The whole script is one block, read before it runs: editing it during a long run is safe.
{

SRCDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VMBAK=${VMBAK:-$SRCDIR/build/vmbak}
VMBAKFS=${VMBAKFS:-$SRCDIR/build/vmbakfs}
BOOT_TIMEOUT=${POWERCUT_BOOT_TIMEOUT:-400}

cuts=50 seed='' window=20000 dir='' keep=0 enc=1 check_image=''
while [ $# -gt 0 ]; do
	case "$1" in
	--cuts) cuts=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--window) window=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--plain) enc=0; shift ;;
	--check-image) check_image=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -uo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "powercut: unknown option '$1'" >&2; exit 2 ;;
	esac
done
[[ $cuts =~ ^[0-9]+$ ]] || { echo "powercut: --cuts takes a number" >&2; exit 2; }
[[ $window =~ ^[1-9][0-9]*$ ]] || { echo "powercut: --window takes milliseconds" >&2; exit 2; }
[ -n "$seed" ] || seed=$(((RANDOM << 15 | RANDOM) % 1000000000))
[[ $seed =~ ^[0-9]+$ ]] || { echo "powercut: --seed takes a number" >&2; exit 2; }

log() {
	echo "powercut: $*"
}

# cannot_run WHY: skip, or fail under CI=true.
cannot_run() {
	if [ "${CI:-}" = true ]; then
		echo "powercut: $* (under CI=true the power-cut suite must run)"
		exit 1
	fi
	echo "powercut: $*"
	exit 77
}

for c in mkfs.ext4 python3; do
	command -v "$c" >/dev/null 2>&1 || cannot_run "needs '$c', which is not installed"
done
# shellcheck source=../guest.sh
. "$SRCDIR/tests/guest.sh"
guest_tools || cannot_run "$GUEST_WHY"
for p in "$VMBAK" "$VMBAKFS"; do
	[ -x "$p" ] || { echo "powercut: '$p' is not built"; exit 1; }
done
guest_kernel || cannot_run "$GUEST_WHY"

own_dir=0
if [ -z "$dir" ]; then
	dir=$(mktemp -d "${TMPDIR:-/tmp}/vmbak-powercut.XXXXXX") || exit 1
	own_dir=1
fi
mkdir -p "$dir" || exit 1
dir=$(cd "$dir" && pwd)
qpid=
# kill_qemu: the cut. SIGKILL to QEMU itself (qpid is the timeout(1) around it).
kill_qemu() {
	local p
	p=$(cat "$dir/qemu.pid" 2>/dev/null)
	[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
	[ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
	return 0
}
cleanup() {
	[ -n "$qpid" ] && kill_qemu
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# The initramfs: busybox, the programs and the libraries they load, the modules, /init.
build_initramfs() {
	local fm
	fm=$(command -v fusermount3 || true)
	guest_initramfs "$dir/root" "$SRCDIR/tests/powercut/init.sh" "$dir/initrd.gz" fs/fuse/fuse \
		-- "$VMBAK" "$VMBAKFS" ${fm:+"$fm"}
}

# The pool the guest cuts source disks from: 8 MiB random, 8 MiB compressible text.
make_pool() {
	python3 - "$1" "$dir/pool.img" <<-'EOF'
		import random, sys
		r = random.Random(int(sys.argv[1]))
		words = [b"vault", b"chunk", b"point", b"power", b"cut", b"disk", b"ext4", b"qemu"]
		with open(sys.argv[2], "wb") as f:
		    f.write(r.randbytes(8 << 20))
		    out = bytearray()
		    while len(out) < (8 << 20):
		        out += b" ".join(r.choice(words) for _ in range(12)) + b"\n"
		    f.write(out[: 8 << 20])
	EOF
}

# boot MODE GUEST_SEED LOG: starts the guest in the background (qpid, the QEMU process).
boot() {
	local wb=0
	# Half the boots write dirty pages back only on fsync, sync and memory pressure; the
	# others every 0.2 s, so that cuts also land with the pages of unsynced writes partly
	# on the disk, in whatever order the kernel wrote them.
	[ $((RANDOM % 2)) -eq 0 ] && wb=20
	rm -f "$dir/qemu.pid" "$3"
	timeout -s KILL "$BOOT_TIMEOUT" qemu-system-x86_64 -machine q35,accel=tcg -m 512 -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot \
		-serial "file:$3" -pidfile "$dir/qemu.pid" \
		-kernel "$VMLINUZ" -initrd "$dir/initrd.gz" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 pc.mode=$1 pc.seed=$2 pc.enc=$enc pc.wb=$wb" \
		-drive "file=$dir/vault.img,if=virtio,format=raw,cache=writeback" \
		-drive "file=$dir/pool.img,if=virtio,format=raw,readonly=on" \
		>"$3.qemu" 2>&1 &
	qpid=$!
	boot_t0=$EPOCHREALTIME
}

# lines LOG: the complete lines the guest wrote for the host, without their prefix (a line the
# cut interrupted has no newline and is left out).
lines() {
	tr -d '\r' <"$1" | awk '/^@@PC / { sub(/^@@PC /, ""); print }' |
		{ if [ -n "$(tail -c 1 "$1")" ]; then sed '$d'; else cat; fi; }
}

# wait_for LOG WORD SECONDS: waits until the guest printed WORD (a line) or ended; true if seen.
wait_for() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		grep -q "^@@PC $2" "$1" 2>/dev/null && return 0
		kill -0 "$qpid" 2>/dev/null || { grep -q "^@@PC $2" "$1" 2>/dev/null; return; }
		sleep 0.1
	done
	return 1
}

failed=0
fail() {
	echo "FAIL: $*"
	failed=1
}

declare -A committed=() deleted=()
pend_sha='' pend_del=''

# check_report LOG: compares the check a boot printed with the ledger.
check_report() {
	local l w id n_unknown=0 vrc='' listed_ok=0 ended=0
	local -A listed=()
	while IFS= read -r l; do
		set -- $l
		w=${1:-}
		case "$w" in
		LIST) [ "$2" = 0 ] && listed_ok=1 ;;
		POINT) listed[$2]=$3 ;;
		VERIFY) vrc=$2 ;;
		ERR) echo "  guest: $l" ;;
		FATAL) fail "guest: $l" ;;
		CHECK-END) ended=1; break ;;
		esac
	done < <(lines "$1" | sed -n '/^CHECK-BEGIN/,/^CHECK-END/p')
	[ "$ended" = 1 ] || { fail "the check did not complete"; return; }
	[ "$listed_ok" = 1 ] || fail "list failed"
	[ "$vrc" = 0 ] || fail "verify exited ${vrc:-?}"
	for id in "${!committed[@]}"; do
		if [ -z "${listed[$id]:-}" ]; then
			if [[ " $pend_del " == *" $id "* ]]; then
				deleted[$id]=1
				unset "committed[$id]"
			else
				fail "committed point $id is gone"
			fi
		elif [ "${listed[$id]}" != "${committed[$id]}" ]; then
			fail "point $id reads ${listed[$id]}, committed as ${committed[$id]}"
		fi
	done
	for id in "${!listed[@]}"; do
		[ -n "${committed[$id]:-}" ] && continue
		if [ -n "${deleted[$id]:-}" ]; then
			fail "deleted point $id is back"
		elif [ -n "$pend_sha" ] && [ "${listed[$id]}" = "$pend_sha" ] &&
			[ "$n_unknown" -eq 0 ]; then
			n_unknown=1
			committed[$id]=$pend_sha
			adopted=$((adopted + 1))
		else
			fail "unknown point $id (reads ${listed[$id]}; cut ingest: ${pend_sha:-none})"
		fi
	done
	pend_sha='' pend_del=''
}

# run_report LOG: updates the ledger with what a boot reported done; sets inflight to what the
# cut interrupted (ingest, delete, gc, idle between operations, none if the plan ended first).
run_report() {
	local l w
	inflight=idle
	while IFS= read -r l; do
		set -- $l
		w=${1:-}
		case "$w" in
		INGEST-BEGIN) pend_sha=$2; inflight=ingest-${3:-full} ;;
		COMMITTED)
			n_committed=$((n_committed + 1))
			if [[ ${2:-} =~ ^[0-9]{4}-[0-9T:.Z-]+$ && ${3:-} =~ ^[0-9a-f]{64}$ ]]; then
				committed[$2]=$3
				pend_sha=
				inflight=idle
			fi
			;;
		DELETE-BEGIN) pend_del=$2; inflight=delete ;;
		DELETED)
			if [[ " $pend_del " == *" ${2:-} "* ]]; then
				deleted[$2]=1
				unset "committed[$2]"
			else
				fail "guest: $l, which it did not announce"
			fi
			[ "$inflight" = delete ] && { pend_del=; inflight=idle; }
			;;
		PRUNE-BEGIN) shift; pend_del=$*; inflight=prune ;;
		PRUNE-DONE) pend_del=; inflight=idle ;;
		GC-BEGIN) inflight=gc ;;
		GC-DONE) inflight=idle ;;
		FAILED) fail "guest: $l" ;;
		FATAL) fail "guest: $l" ;;
		RUN-END) inflight=none ;;
		esac
	done < <(lines "$1" | sed -n '/^RUN-START/,$p')
}

# final_checks LOG: what the cut operations left behind is cleaned up: the first gc of the last
# boot keeps nothing for dead ingests, the second frees nothing and leaves no unreferenced
# chunk, and no job of an earlier boot shows as running.
final_checks() {
	local g1 g2 n
	g1=$(lines "$1" | sed -n 's/^GC-JSON 1 //p')
	g2=$(lines "$1" | sed -n 's/^GC-JSON 2 //p')
	n=$(lines "$1" | sed -n 's/^JOBS-RUNNING //p')
	lines "$1" | grep '^FAILED' | while IFS= read -r l; do echo "FAIL: guest: $l"; done
	lines "$1" | grep -q '^FAILED' && failed=1
	if [ -z "$g1" ] || [ -z "$g2" ]; then
		fail "last boot: gc did not report"
	else
		python3 -c 'import json, sys
g1, g2 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("powercut: last gc: first", sys.argv[1], "second", sys.argv[2])
bad = []
if g1.get("pinned", 0) != 0: bad.append("the first gc kept chunks pinned by dead ingests")
if g2.get("freed", 0) != 0: bad.append("a second gc freed more")
if g2.get("chunks") != g2.get("referenced"): bad.append("unreferenced chunks are left")
for b in bad: print("FAIL:", b)
sys.exit(1 if bad else 0)' "$g1" "$g2" || failed=1
	fi
	[ "$n" = 0 ] || fail "last boot: ${n:-?} jobs of earlier boots show as running"
}

t_start=$SECONDS
RANDOM=$seed
log "seed $seed, $cuts cuts, window ${window} ms, vault $([ $enc = 1 ] && echo aes-256-gcm || echo unencrypted), dir $dir"
log "replay: $0 --seed $seed --cuts $cuts --window $window$([ $enc = 0 ] && echo ' --plain')"
build_initramfs || { echo "powercut: cannot build the initramfs"; exit 1; }
make_pool "$seed" || { echo "powercut: cannot make the pool disk"; exit 1; }
if [ -n "$check_image" ]; then
	cp --sparse=always "$check_image" "$dir/vault.img" || exit 1
	boot check "$seed" "$dir/boot-check.log"
	wait "$qpid"
	qpid=
	tr -d '\r' <"$dir/boot-check.log"
	exit 0
fi
rm -f "$dir/vault.img"
truncate -s 256M "$dir/vault.img" && mkfs.ext4 -q -F "$dir/vault.img" ||
	{ echo "powercut: cannot make the vault file system"; exit 1; }

boot init 0 "$dir/boot-0.log"
wait "$qpid"
qpid=
if ! lines "$dir/boot-0.log" | grep -q '^INIT-DONE'; then
	tail -n 20 "$dir/boot-0.log" "$dir/boot-0.log.qemu" 2>/dev/null
	echo "powercut: the guest did not make the vault (seed $seed)"
	exit 1
fi
log "vault made in $((SECONDS - t_start)) s"

declare -A at_cut=()
adopted=0 landed=0 n_committed=0
for ((cut = 1; cut <= cuts + 1; cut++)); do
	L=$dir/boot-$cut.log
	gseed=$((RANDOM << 15 | RANDOM))
	delay=$(((RANDOM << 15 | RANDOM) % window))
	# The vault as the previous cut left it: kept for a failure (a boot changes it).
	cp --sparse=always "$dir/vault.img" "$dir/vault-after-cut.img"
	if [ "$cut" -gt "$cuts" ]; then
		boot check "$gseed" "$L"
		wait "$qpid"
		qpid=
		check_report "$L"
		lines "$L" | grep -q '^VERIFY-AFTER 0' || fail "last boot: ingest or verify failed"
		lines "$L" | grep -q '^COMMITTED' || fail "last boot: the ingest after the last cut failed"
		final_checks "$L"
		break
	fi
	boot run "$gseed" "$L"
	if ! wait_for "$L" RUN-START 300; then
		kill_qemu
		wait "$qpid" 2>/dev/null
		qpid=
		check_report "$L"
		fail "cut $cut: the guest did not start its operations"
	else
		t_run=$EPOCHREALTIME
		sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
		kill_qemu
		wait "$qpid" 2>/dev/null
		qpid=
		t_end=$EPOCHREALTIME
		check_report "$L"
		run_report "$L"
		what=$inflight
		[ "$what" = none ] || landed=$((landed + 1))
		at_cut[$what]=$((${at_cut[$what]:-0} + 1))
		secs=$(awk -v a="$boot_t0" -v b="$t_end" -v r="$t_run" \
			'BEGIN { printf "%.1f s (%.1f s to the operations)", b - a, r - a }')
		log "cut $cut: seed $gseed, after ${delay} ms, during $what; ${#committed[@]} points; boot $secs"
	fi
	if [ "$failed" = 1 ]; then
		echo "powercut: FAILED in boot $cut, which checked what cut $((cut - 1)) left and then" \
			"ran until cut $cut (run seed $seed, guest seed $gseed)"
		echo "powercut: the vault as cut $((cut - 1)) left it: $dir/vault-after-cut.img;" \
			"logs: $dir/boot-*.log"
		echo "powercut: replay: $0 --seed $seed --cuts $cuts --window $window$([ $enc = 0 ] && echo ' --plain')"
		exit 1
	fi
done
if [ "$failed" = 1 ]; then
	echo "powercut: FAILED at the last check (run seed $seed)"
	echo "powercut: the vault as the last cut left it: $dir/vault-after-cut.img; logs: $dir/boot-*.log"
	exit 1
fi
summary=
for w in "${!at_cut[@]}"; do
	summary+=" $w ${at_cut[$w]},"
done
secs=$((SECONDS - t_start))
log "cuts during:${summary%,}; points committed: $n_committed, and $adopted more that a cut" \
	"ingest had committed before it could say so"
log "ok: $cuts cuts ($landed while the guest was operating), all checks passed, in ${secs} s" \
	"($((secs / (cuts + 1))) s a cut)"
if [ "$keep" = 0 ] && [ "$own_dir" = 1 ]; then
	rm -rf "$dir"
fi
exit 0
}
