#!/usr/bin/env bash
# make demo: installs what is missing, builds, makes a small real ext4 disk image, backs it up
# into an encrypted vault, mounts the vault, shows it, compares the image, unmounts.
# Everything lives in ./demo (removed and made again on each run).
set -euo pipefail
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
cd "$SRCDIR"
D=$SRCDIR/demo

step() {
	printf '\n==> %s\n' "$*"
}

# show CMD...: prints the command, then runs it.
show() {
	printf '$ %s\n' "$*" | sed "s|$SRCDIR/||g"
	"$@"
}

step "installing missing Debian packages (tests/deps.sh)"
bash tests/deps.sh

step "building (make)"
make -j"$(nproc)" all

# A previous run may have been cut short while mounted.
if [ -d "$D/mnt" ] && awk -v d="$D/mnt" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo
then
	fusermount3 -u "$D/mnt" || fusermount3 -uz "$D/mnt"
fi
rm -rf --one-file-system "$D"
mkdir -p "$D/.state"

# The mount helpers of the tests: the mount is undone on exit, whatever happens.
TESTTMP=$D/.state
export TESTTMP
# shellcheck source=tests/lib.sh
. "$SRCDIR/tests/lib.sh"

step "making a 64 MiB ext4 disk image from files on this machine"
src=$(mk_ext4_image "$D/os.img" 64)
echo "demo/os.img: a $(du -h --apparent-size "$D/os.img" | cut -f1) ext4 image holding" \
	"$(find "$src" -type f | wc -l) files copied from /usr (also kept in ${src#"$SRCDIR"/})"

step "creating an encrypted vault (the passphrase is in demo/passphrase, mode 0600)"
(
	umask 077
	echo "vmbak demo passphrase" >"$D/passphrase"
)
export VMBAK_PASSPHRASE_FILE=$D/passphrase
show "$VMBAK" init "$D/vault" --encryption aes-256-gcm

step "backing up the disk of VM 'demo-vm' (a recovery point; its id is printed last)"
show "$VMBAK" ingest "$D/vault" demo-vm --disk os="$D/os.img" | tee "$D/.state/ingest.out"
id=$(tail -n 1 "$D/.state/ingest.out")

step "listing the vault"
show "$VMBAK" list "$D/vault"

step "mounting the vault read-only at demo/mnt"
printf '$ %s\n' "vmbakfs demo/vault demo/mnt"
vmount "$D/vault" "$D/mnt"
show ls -lR demo/mnt

step "the recovery point's manifest"
show cat "demo/mnt/demo-vm/$id/manifest.json"
echo

step "comparing the image in the mount with the original"
show cmp demo/os.img demo/mnt/demo-vm/latest/os.img
echo "identical: demo/os.img and demo/mnt/demo-vm/latest/os.img"
show du -h --apparent-size demo/mnt/demo-vm/latest/os.img
show du -h demo/mnt/demo-vm/latest/os.img
show du -sh demo/vault

step "unmounting"
printf '$ %s\n' "fusermount3 -u demo/mnt"
vumount "$D/mnt"

cat <<EOF

Done. The demo
  - made demo/os.img, a 64 MiB ext4 disk image (mkfs.ext4 -d demo/os.img.src),
  - created the encrypted vault demo/vault (passphrase in demo/passphrase),
  - backed the image up as recovery point $id of VM demo-vm,
  - mounted the vault at demo/mnt, listed it and showed the manifest,
  - found demo/mnt/demo-vm/latest/os.img identical to demo/os.img (cmp),
  - and unmounted it.
To look again:
  VMBAK_PASSPHRASE_FILE=demo/passphrase ./vmbakfs demo/vault demo/mnt
  ls -l demo/mnt/demo-vm/latest/
  fusermount3 -u demo/mnt
EOF
