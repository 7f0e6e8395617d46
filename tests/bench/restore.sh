#!/usr/bin/env bash
# tests/bench/restore.sh [SIZE]: how fast a point comes back out (make bench-restore).
#
# On the benchmark corpus (base.raw, an ext4 disk; base.luks, the same under LUKS1), in one run:
#   - `vmbak restore --to DIR` of each disk, against `cp --sparse=always` and
#     `qemu-img convert -O raw` of the same image from a vmbakfs mount; every copy starts cold
#     (page cache dropped, the mount started afresh) and the three alternate, REPS times;
#     restore makes its file durable (fsync) before it renames it into place, so the times of
#     cp and qemu-img include a `sync -d` of what they wrote (neither syncs by itself);
#   - `vmbak restore --instant --mount MNT` to the first line a guest prints on its serial
#     console, and to the guest's listing of its root directory (tests/guest.sh's tiny guest,
#     QEMU accel=tcg, booting with the instant overlay as its disk);
#   - `vmbak files` to a listing of the guest's root directory, for the plain disk and for
#     the LUKS disk (unwrapping the escrowed passphrase).
#
#   SIZE        corpus size in GiB (default 3)
#   BENCH_DIR   work directory (default /var/tmp/vmbak-bench); the corpus is made there by
#               ../shared/bench/make-corpus.sh (else tests/bench/corpus.py) unless CORPUS names one
#   REPS        cold copies of each kind per disk (default 3; the median is reported)
#
# Prints a table on stdout and keeps it in BENCH_DIR/restore.txt. Needs root and /dev/fuse.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
VMBAK=${VMBAK:-$top/build/vmbak}
VMBAKFS=${VMBAKFS:-$top/build/vmbakfs}
size=${1:-3}
gib=${size%[Gg]}
[[ $gib =~ ^[1-9][0-9]*$ ]] || { echo "usage: tests/bench/restore.sh [SIZE_GIB]" >&2; exit 2; }
BENCH_DIR=${BENCH_DIR:-/var/tmp/vmbak-bench}
REPS=${REPS:-3}
W=$BENCH_DIR/restore
MNT=$W/mnt

say() { printf 'bench-restore: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (page-cache drops, mounts)"
[ -x "$VMBAK" ] && [ -x "$VMBAKFS" ] || die "build first (make)"
for c in qemu-img qemu-system-x86_64 python3 fusermount3; do
	command -v "$c" >/dev/null || die "needs $c"
done

# ---- corpus ----
if [ -n "${CORPUS:-}" ]; then
	C=$CORPUS
else
	C=$BENCH_DIR/corpus-$gib
	if [ -x "$top/../shared/bench/make-corpus.sh" ]; then
		"$top/../shared/bench/make-corpus.sh" "$C" "$gib" >&2 || die "make-corpus.sh failed"
	else
		python3 "$top/tests/bench/corpus.py" "$C" "$gib" >&2 || die "corpus.py failed"
	fi
fi
for f in base.raw base.luks pass.txt; do
	[ -f "$C/$f" ] || die "no $f in the corpus $C"
done

rm -rf "$W"
mkdir -p "$W" "$MNT" || die "cannot make $W"
cd "$W" || exit 1
cleanup() {
	[ -n "${qpid:-}" ] && kill -9 "$qpid" 2>/dev/null
	"$VMBAK" files -u "$W/fm" >/dev/null 2>&1
	mountpoint -q "$MNT" && fusermount3 -u "$MNT"
	rm -rf "$W/out" "$W/v" "$W/inst"
}
trap cleanup EXIT

printf 'bench restore passphrase\n' >vpass
printf 'bench key vault passphrase\n' >kvpass
chmod 600 vpass kvpass
export VMBAK_PASSPHRASE_FILE=$W/vpass
export VMBAK_KEYVAULT_PASSPHRASE_FILE=$W/kvpass
unset VMBAK_PASSPHRASE VMBAK_KEYVAULT_PASSPHRASE

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
mnt_up() {
	mountpoint -q "$MNT" && fusermount3 -u "$MNT"
	cold
	timeout 60 "$VMBAKFS" "$W/v" "$MNT" || die "vmbakfs would not mount"
}
mnt_down() { mountpoint -q "$MNT" && fusermount3 -u "$MNT"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

say "vault: init, key vault, ingest of base.raw and base.luks (escrowed)"
"$VMBAK" init v >/dev/null || die "init failed"
"$VMBAK" keyvault init kv >/dev/null || die "keyvault init failed"
"$VMBAK" keyvault key create kv kek >/dev/null || die "key create failed"
"$VMBAK" keyvault secret set kv luks --value-file "$C/pass.txt" --kek kek >/dev/null ||
	die "secret set failed"
"$VMBAK" ingest v bench --disk root="$C/base.raw" --disk luks="$C/base.luks" \
	--keyvault kv --escrow luks=luks >/dev/null || die "ingest failed"
rp=$("$VMBAK" list v bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')

declare -A T
mkdir -p out
for ((i = 1; i <= REPS; i++)); do
	for disk in root luks; do
		rm -rf out/*
		cold
		t0=$(now)
		"$VMBAK" restore v "bench/$rp" --to out/r --disk "$disk" >/dev/null ||
			die "vmbak restore failed"
		t1=$(now)
		T[restore.$disk]+="$(ms "$t0" "$t1") "
		[ "$i" -gt 1 ] || cmp "out/r/$disk.img" "$C/base.${disk/root/raw}" ||
			die "the restored $disk differs from the source"
		rm -rf out/r

		mnt_up
		t0=$(now)
		cp --sparse=always "$MNT/bench/$rp/$disk.img" out/cp.img || die "cp failed"
		sync -d out/cp.img
		t1=$(now)
		T[cp.$disk]+="$(ms "$t0" "$t1") "
		rm -f out/cp.img

		mnt_up
		t0=$(now)
		qemu-img convert -f raw -O raw "$MNT/bench/$rp/$disk.img" out/q.img ||
			die "qemu-img convert failed"
		sync -d out/q.img
		t1=$(now)
		T[qemu.$disk]+="$(ms "$t0" "$t1") "
		rm -f out/q.img
		mnt_down
	done
	say "round $i of $REPS: ${T[restore.root]}| ${T[cp.root]}| ${T[qemu.root]}"
done

# ---- instant recovery to the guest's first line ----
inst_first=- inst_list=-
# shellcheck source=../guest.sh
. "$top/tests/guest.sh"
if guest_tools && guest_kernel; then
	cat >init <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	insmod "/lib/modules/$m.ko"
done
mount -t ext4 -o ro /dev/vda /mnt && echo "@@LIST $(ls /mnt | wc -l) entries"
poweroff -f
EOF
	guest_initramfs "$W/root" init initrd.gz >/dev/null 2>&1 || die "cannot build the initramfs"
	cold
	t0=$(now)
	"$VMBAK" restore v "bench/$rp" --to inst --disk root --instant --mount "$MNT" >/dev/null ||
		die "restore --instant failed"
	timeout -s KILL 300 qemu-system-x86_64 -machine q35,accel=tcg -m 256 -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot -serial stdio \
		-kernel "$VMLINUZ" -initrd initrd.gz -append "console=ttyS0 panic=-1" \
		-drive "file=inst/root.qcow2,if=virtio,format=qcow2" </dev/null 2>/dev/null |
		while IFS= read -r line; do
			echo "$(now) $line"
		done >serial.log
	first=$(head -n 1 serial.log | cut -d' ' -f1)
	list=$(grep -m1 '@@LIST' serial.log | cut -d' ' -f1)
	[ -n "$first" ] && inst_first=$(ms "$t0" "$first")
	[ -n "$list" ] && inst_list=$(ms "$t0" "$list")
	[ -n "$list" ] || say "the guest printed no listing: $(tail -c 300 serial.log)"
	mnt_down
else
	say "no guest: $GUEST_WHY"
fi

# ---- vmbak files to a listing ----
mkdir -p fm
files_ms() {
	local t0 t1
	cold
	t0=$(now)
	"$VMBAK" files v "bench/$rp" "$@" "$W/fm" >/dev/null || { echo -; return; }
	ls "$W/fm" >/dev/null || { echo -; return; }
	t1=$(now)
	"$VMBAK" files -u "$W/fm" >/dev/null
	ms "$t0" "$t1"
}
files_root=$(files_ms root)
files_luks=$(files_ms luks --keyvault kv)

{
	echo "restore of a ${gib} GiB corpus point (median of $REPS cold runs, ms; ratio: vmbak time / other)"
	printf '%-6s %12s %22s %26s\n' disk "vmbak restore" "cp --sparse + sync" "qemu-img convert + sync"
	for disk in root luks; do
		r=$(echo "${T[restore.$disk]}" | tr ' ' '\n' | grep . | median)
		c=$(echo "${T[cp.$disk]}" | tr ' ' '\n' | grep . | median)
		q=$(echo "${T[qemu.$disk]}" | tr ' ' '\n' | grep . | median)
		printf '%-6s %12s %15s (%.2fx) %19s (%.2fx)\n' "$disk" "$r" "$c" \
			"$(awk "BEGIN { print $r / $c }")" "$q" "$(awk "BEGIN { print $r / $q }")"
	done
	echo "runs (ms): restore root ${T[restore.root]}; cp ${T[cp.root]}; qemu-img ${T[qemu.root]}"
	echo "runs (ms): restore luks ${T[restore.luks]}; cp ${T[cp.luks]}; qemu-img ${T[qemu.luks]}"
	echo "restore --instant (mounting the vault) to the guest's first serial line: $inst_first ms; to its root listing: $inst_list ms"
	echo "vmbak files to a listing of the root directory: plain ext4 $files_root ms, LUKS1 $files_luks ms"
} | tee "$BENCH_DIR/restore.txt"
