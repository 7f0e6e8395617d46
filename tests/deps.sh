#!/usr/bin/env bash
# Installs the Debian packages that building vmbakfs and running its tests need, only those that
# are missing. Quiet when everything is there. Not root and something missing: says what to
# install and exits 1.
#
# The power-cut suite (tests/powercut/run.sh) also needs the kernel of linux-image-cloud-amd64:
# it fetches that package itself with `apt-get download` and unpacks it into a cache directory,
# so that no kernel is installed on the host (no hooks, no boot loader changes).
set -euo pipefail

pkgs=(
	build-essential pkg-config
	libfuse3-dev liblmdb-dev libzstd-dev libssl-dev libjson-c-dev libp11-kit-dev
	libcryptsetup-dev libnbd-dev libvirt-dev libxml2-dev
	fuse3 qemu-utils cryptsetup-bin e2fsprogs fio util-linux mount python3
	man-db groff-base
	lmdb-utils
	qemu-system-x86 busybox-static cpio
	python3-lmdb
	libnbd-bin nbdkit nbdkit-plugin-dev openssl time
	softhsm2 opensc
	openssh-server openssh-client
	dislocker ntfs-3g
	libvirt-daemon libvirt-clients libxml2-utils
	systemd
	librados-dev ceph-mon ceph-osd ceph-common
)

missing=()
for p in "${pkgs[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$status" in
	ii*) ;;
	*) missing+=("$p") ;;
	esac
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages, install them as root: apt-get install ${missing[*]}" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
