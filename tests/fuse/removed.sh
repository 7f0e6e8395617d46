#!/usr/bin/env bash
# tests/fuse/removed.sh: a file of a recovery point that is still open when the point is
# deleted gives ENOENT on read (vmbakfs(1)), for the parts not already in the page cache; the
# point's directory disappears from the mount at once.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_cmd python3
need_programs
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
V=$T/vault
M=$T/mnt
cd "$T"
expect_status 0 "$VMBAK" init "$V" --encryption none
head -c $((4 * 1024 * 1024)) /dev/urandom >d.img
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=d.img
id=$(tail -n 1 "$OUT")
vmount "$V" "$M"
python3 - "$M/vm1/$id/sda.img" "$VMBAK" "$V" "vm1/$id" <<'PY' || fail "see above"
import errno, os, subprocess, sys
path, vmbak, vault, point = sys.argv[1:]
fd = os.open(path, os.O_RDONLY)
assert len(os.pread(fd, 4096, 0)) == 4096
subprocess.run([vmbak, "delete", vault, point, "--force"], check=True, stdout=subprocess.DEVNULL)
try:
    os.pread(fd, 4096, 3 * 1024 * 1024)
except OSError as e:
    if e.errno != errno.ENOENT:
        sys.exit("read of a deleted point: %s, expected ENOENT" % errno.errorcode[e.errno])
else:
    sys.exit("read of a deleted point succeeded")
os.close(fd)
PY
[ ! -e "$M/vm1/$id" ] || fail "the deleted point is still listed"
echo "ok"
