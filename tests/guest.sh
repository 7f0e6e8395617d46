# tests/guest.sh: a tiny Linux guest for the tests that boot one (sourced; bash).
#
# The kernel is Debian's cloud kernel (linux-image-cloud-amd64), fetched with `apt-get download`
# and unpacked (dpkg -x) into GUEST_CACHE (default /var/tmp/vmbak-powercut, POWERCUT_CACHE is
# honoured); nothing is installed on the host. GUEST_KERNEL_DIR (or POWERCUT_KERNEL_DIR) may
# name an unpacked kernel package instead. The initramfs is busybox-static, the virtio modules
# (virtio_blk among them; ext4 is built into that kernel), and any programs with the libraries
# they load. QEMU runs with accel=tcg (no KVM here) under a time limit.
#
#   guest_tools               checks for qemu-system-x86_64, cpio, gzip and a static busybox
#                             (sets BUSYBOX); returns 1 with GUEST_WHY set when one is missing
#   guest_kernel              sets VMLINUZ and MODDIR, fetching the kernel when needed;
#                             returns 1 with GUEST_WHY set when it cannot
#   guest_initramfs ROOT INIT OUT [MODULE...] [-- PROGRAM...]
#                             builds in ROOT (made afresh) an initramfs with INIT as /init,
#                             the virtio modules and MODULEs (paths under MODDIR without .ko,
#                             e.g. fs/fuse/fuse) in /lib/modules, and PROGRAMs in /usr/bin
#                             with their libraries; writes it gzip'ed to OUT
# shellcheck shell=bash

GUEST_CACHE=${GUEST_CACHE:-${POWERCUT_CACHE:-/var/tmp/vmbak-powercut}}
GUEST_VIRTIO_MODULES="drivers/virtio/virtio_ring drivers/virtio/virtio
	drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev
	drivers/virtio/virtio_pci drivers/block/virtio_blk"

guest_tools() {
	local c b
	for c in qemu-system-x86_64 cpio gzip timeout; do
		command -v "$c" >/dev/null 2>&1 || { GUEST_WHY="needs '$c', which is not installed"; return 1; }
	done
	BUSYBOX=
	for b in /bin/busybox /usr/bin/busybox; do
		if [ -x "$b" ] && { ldd "$b" 2>&1 || true; } | grep -q 'not a dynamic executable'; then
			BUSYBOX=$b
			break
		fi
	done
	[ -n "$BUSYBOX" ] ||
		{ GUEST_WHY="needs a static busybox (Debian package busybox-static)"; return 1; }
}

_guest_fetch_kernel() {
	local pkg tmp
	mkdir -p "$GUEST_CACHE" || return 1
	(
		flock 9
		[ -d "$GUEST_CACHE/kernel/boot" ] && exit 0
		command -v apt-get >/dev/null 2>&1 || exit 1
		pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
		[ -n "$pkg" ] || exit 1
		tmp=$(mktemp -d "$GUEST_CACHE/dl.XXXXXX") || exit 1
		(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) &&
			dpkg -x "$tmp"/"$pkg"_*.deb "$tmp/kernel" &&
			mv "$tmp/kernel" "$GUEST_CACHE/kernel"
		st=$?
		rm -rf "$tmp"
		exit $st
	) 9>"$GUEST_CACHE/.lock"
}

guest_kernel() {
	local kdir=${GUEST_KERNEL_DIR:-${POWERCUT_KERNEL_DIR:-$GUEST_CACHE/kernel}}
	if [ -z "${GUEST_KERNEL_DIR:-}${POWERCUT_KERNEL_DIR:-}" ] && [ ! -d "$kdir/boot" ]; then
		_guest_fetch_kernel || {
			GUEST_WHY="cannot fetch linux-image-cloud-amd64 (apt-get download)"
			return 1
		}
	fi
	# shellcheck disable=SC2012
	VMLINUZ=$(ls "$kdir"/boot/vmlinuz-* 2>/dev/null | head -n 1)
	# shellcheck disable=SC2012
	MODDIR=$(ls -d "$kdir"/lib/modules/*/kernel 2>/dev/null | head -n 1)
	[ -n "$VMLINUZ" ] && [ -n "$MODDIR" ] ||
		{ GUEST_WHY="no kernel and modules under $kdir"; return 1; }
}

guest_initramfs() {
	local r=$1 init=$2 out=$3 f m lib
	local -a mods progs=()
	shift 3
	read -r -a mods <<<"$(echo $GUEST_VIRTIO_MODULES)"
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		mods+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	progs=("$@")
	rm -rf "$r"
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,lib/modules,proc,sys,dev,tmp,etc,mnt} || return 1
	cp "$BUSYBOX" "$r/bin/busybox" || return 1
	for f in $("$BUSYBOX" --list); do
		[ -e "$r/bin/$f" ] || ln -s busybox "$r/bin/$f"
	done
	for f in "${progs[@]}"; do
		cp "$f" "$r/usr/bin/" || return 1
	done
	if [ ${#progs[@]} -gt 0 ]; then
		for lib in $(ldd "${progs[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
			$1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
			mkdir -p "$r$(dirname "$lib")" && cp -L "$lib" "$r$lib" || return 1
		done
	fi
	# Paths the dynamic loader looks in, whichever of /lib and /usr/lib the host uses.
	[ -e "$r/usr/lib" ] || ln -s ../lib "$r/usr/lib"
	[ -e "$r/lib64" ] || ln -s lib "$r/lib64"
	for m in "${mods[@]}"; do
		cp "$MODDIR/$m.ko" "$r/lib/modules/" || return 1
	done
	ln -s /proc/self/mounts "$r/etc/mtab"
	echo "root:x:0:0:root:/:/bin/sh" >"$r/etc/passwd"
	echo "root:x:0:" >"$r/etc/group"
	cp "$init" "$r/init" && chmod 755 "$r/init" || return 1
	(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
}
