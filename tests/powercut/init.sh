#!/bin/sh
# tests/powercut/init.sh: /init of the power-cut guest (busybox sh; see tests/powercut/run.sh).
#
# Disks: /dev/vda the vault's ext4 file system (read-write), /dev/vdb the pool (read-only,
# random and compressible data the source disks are cut from). Kernel command line:
#   pc.mode=init   make the vault, sync, power off
#   pc.mode=run    report what the vault holds (the check), then run operations until the
#                  host kills the machine (or the plan ends)
#   pc.mode=check  the check, then one ingest and a second verify, power off
#   pc.seed=N      seed of the plan of operations and of the source disks
#   pc.enc=0|1     vault without or with encryption (init only)
#   pc.wb=N        dirty_writeback_centisecs of the guest (0: no periodic writeback, so
#                  only fsync, sync and memory pressure write dirty pages)
#
# Every line for the host starts with "@@PC ". The host keeps the ledger: what was reported
# done before the cut must be there after it (see run.sh).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export VMBAK_PASSPHRASE=powercut
V=/vault/v

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=128m tmp /tmp
mkdir -p /dev/pts

say() {
	echo "@@PC $*" >/dev/console
}

die() {
	say "FATAL $*"
	sync
	poweroff -f
	sleep 60
}

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk \
	fuse; do
	insmod "/lib/modules/$m.ko" || die "insmod $m"
done

mode=run seed=1 enc=1 wb=
for w in $(cat /proc/cmdline); do
	case "$w" in
	pc.mode=*) mode=${w#pc.mode=} ;;
	pc.seed=*) seed=${w#pc.seed=} ;;
	pc.enc=*) enc=${w#pc.enc=} ;;
	pc.wb=*) wb=${w#pc.wb=} ;;
	esac
done
[ -n "$wb" ] && echo "$wb" >/proc/sys/vm/dirty_writeback_centisecs

i=0
while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && die "no virtio disks"
	sleep 0.1
done
mkdir -p /vault /mnt
mount -t ext4 /dev/vda /vault || die "cannot mount the vault disk"
say "BOOT mode=$mode seed=$seed"

finish() {
	sync
	umount /vault || say "WARN cannot unmount the vault disk"
	say "POWEROFF"
	poweroff -f
	sleep 60
}

if [ "$mode" = init ]; then
	if [ "$enc" = 1 ]; then
		vmbak init "$V" --chunk-size 16K >/tmp/out 2>&1 || die "init: $(cat /tmp/out)"
	else
		vmbak init "$V" --chunk-size 16K --encryption none >/tmp/out 2>&1 ||
			die "init: $(cat /tmp/out)"
	fi
	say "INIT-DONE"
	finish
fi

# ids: the points of vm1, oldest first (none when the VM has no point or does not exist).
ids() {
	vmbak list "$V" 2>/tmp/list.err | awk '$1 == "vm1" { print $2 }'
}

# check: every point listed, with the sha256 of its image read through a mount of the vault,
# then the exit status of verify.
check() {
	say "CHECK-BEGIN"
	vmbak list "$V" >/tmp/list.out 2>/tmp/list.err
	rc=$?
	say "LIST $rc"
	[ $rc -eq 0 ] || say "ERR $(head -n 1 /tmp/list.err)"
	awk '$1 == "vm1" { print $2 }' /tmp/list.out >/tmp/ids
	if [ -s /tmp/ids ]; then
		if vmbakfs "$V" /mnt >/tmp/fs.out 2>&1; then
			while read -r id; do
				if s=$(sha256sum <"/mnt/vm1/$id/sda.img"); then
					say "POINT $id ${s%% *}"
				else
					say "POINT $id READ-ERROR"
				fi
			done </tmp/ids
			umount /mnt || say "ERR cannot unmount /mnt"
		else
			say "ERR mount: $(head -n 1 /tmp/fs.out)"
			while read -r id; do
				say "POINT $id READ-ERROR"
			done </tmp/ids
		fi
	fi
	vmbak verify "$V" >/tmp/verify.out 2>&1
	rc=$?
	say "VERIFY $rc"
	[ $rc -eq 0 ] || sed 's/^/@@PC ERR verify: /' /tmp/verify.out | head -n 20 >/dev/console
	say "CHECK-END"
}

# mksrc G: /tmp/src.img, the source disk of generation G: 2-6 MiB cut from the pool in 64 KiB
# units; most units at their own offset of the pool (so consecutive points share chunks),
# some from elsewhere in the pool (random or compressible data), some zero (holes), and a
# stamp so that no two generations are equal. Prints its sha256.
# mksrc G inc: the same, but /tmp/prev.img (the source of the newest point) with a few units
# changed; /tmp/changed lists the changed extents for `ingest --changed`.
mksrc() {
	if [ "${2:-}" = inc ]; then
		cp /tmp/prev.img /tmp/src.img
		awk -v g="$1" -v n=$(($(stat -c %s /tmp/prev.img) / 65536)) 'BEGIN {
			srand(g)
			m = 1 + int(rand() * 6)
			for (j = 0; j < m; j++) {
				k = int(rand() * n)
				if (rand() < 0.3)
					print "zero", k
				else
					print "pool", k, int(rand() * 256)
			}
			print "stamp", int(rand() * n * 64)
		}' >/tmp/plan.src
	else
		awk -v g="$1" 'BEGIN {
			srand(g)
			n = 32 + int(rand() * 64)
			print "base", n
			for (k = 0; k < n; k++) {
				r = rand()
				if (r < 0.1)
					print "zero", k
				else if (r < 0.35)
					print "pool", k, int(rand() * 256)
			}
			print "stamp", int(rand() * n * 64)
		}' >/tmp/plan.src
	fi
	: >/tmp/changed
	while read -r what a b; do
		case "$what" in
		base) dd if=/dev/vdb of=/tmp/src.img bs=64k count="$a" 2>/dev/null ;;
		zero) dd if=/dev/zero of=/tmp/src.img bs=64k seek="$a" count=1 conv=notrunc \
			2>/dev/null
			echo "$((a * 65536)) 65536" >>/tmp/changed ;;
		pool) dd if=/dev/vdb of=/tmp/src.img bs=64k seek="$a" skip="$b" count=1 \
			conv=notrunc 2>/dev/null
			echo "$((a * 65536)) 65536" >>/tmp/changed ;;
		stamp) echo "power-cut source, generation $1" |
			dd of=/tmp/src.img bs=1k seek="$a" conv=notrunc 2>/dev/null
			echo "$((a / 64 * 65536)) 65536" >>/tmp/changed ;;
		esac
	done </tmp/plan.src
	s=$(sha256sum </tmp/src.img)
	echo "${s%% *}"
}

# ingest G [inc]: a point of vm1 from the source of generation G; with inc, and when this boot
# made the newest point, an incremental one (--changed) on top of it.
ingest() {
	how=full
	[ "${2:-}" = inc ] && [ -f /tmp/prev.img ] && how=inc
	sha=$(mksrc "$1" "$how")
	say "INGEST-BEGIN $sha $how"
	if [ "$how" = inc ]; then
		set -- --changed sda=/tmp/changed
	else
		set --
	fi
	if vmbak ingest "$V" vm1 --disk sda=/tmp/src.img "$@" >/tmp/out 2>/tmp/err; then
		say "COMMITTED $(tail -n 1 /tmp/out) $sha"
		mv /tmp/src.img /tmp/prev.img
	else
		say "FAILED ingest ($how): $(head -n 1 /tmp/err)"
		rm -f /tmp/prev.img
	fi
}

# delete: the oldest point of vm1 while it has more than three.
delete() {
	set -- $(ids)
	[ $# -gt 3 ] || return 0
	say "DELETE-BEGIN $1"
	if vmbak delete "$V" "vm1/$1" >/tmp/out 2>/tmp/err; then
		say "DELETED $1"
	else
		say "FAILED delete $1: $(head -n 1 /tmp/err)"
	fi
}

# prune: keeps the four newest points of vm1; says which it deletes before it starts and, once
# it returned, which are gone.
prune() {
	ids >/tmp/before
	say "PRUNE-BEGIN $(head -n -4 /tmp/before | tr '\n' ' ')"
	if vmbak prune "$V" vm1 --keep-last 4 >/tmp/out 2>/tmp/err; then
		ids >/tmp/after
		for id in $(cat /tmp/before); do
			grep -qx "$id" /tmp/after || say "DELETED $id"
		done
		say "PRUNE-DONE"
	else
		say "FAILED prune: $(head -n 1 /tmp/err)"
	fi
}

gc() {
	say "GC-BEGIN"
	if vmbak gc "$V" >/tmp/out 2>/tmp/err; then
		say "GC-DONE"
	else
		say "FAILED gc: $(head -n 1 /tmp/err)"
	fi
}

check
if [ "$mode" = check ]; then
	ingest "$seed"
	vmbak verify "$V" >/tmp/verify.out 2>&1
	say "VERIFY-AFTER $?"
	# What the cut operations left behind: gc frees it all (no pin of a dead ingest stays),
	# a second gc frees nothing, and no job of an earlier boot shows as running.
	for i in 1 2; do
		if vmbak gc "$V" --json >/tmp/out 2>/tmp/err; then
			say "GC-JSON $i $(tr -d ' \n' </tmp/out)"
		else
			say "FAILED gc: $(head -n 1 /tmp/err)"
		fi
	done
	if vmbak jobs "$V" --json >/tmp/out 2>/tmp/err; then
		say "JOBS-RUNNING $(tr -d ' \n' </tmp/out | grep -o '"state":"running"' | wc -l)"
	else
		say "FAILED jobs: $(head -n 1 /tmp/err)"
	fi
	finish
fi

say "RUN-START"
awk -v s="$seed" 'BEGIN {
	srand(s)
	for (i = 0; i < 100; i++) {
		r = i == 0 ? 0 : rand() # the first operation after a cut is an ingest
		if (r < 0.5)
			print "ingest", int(rand() * 1000000000), (i > 0 && rand() < 0.5 ? "inc" : "full")
		else if (r < 0.65)
			print "delete"
		else if (r < 0.8)
			print "prune"
		else
			print "gc"
	}
}' >/tmp/plan
while read -r op arg arg2; do
	case "$op" in
	ingest) ingest "$arg" "$arg2" ;;
	delete) delete ;;
	prune) prune ;;
	gc) gc ;;
	esac
done </tmp/plan
say "RUN-END"
finish
