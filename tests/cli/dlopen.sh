#!/usr/bin/env bash
# Libraries loaded when a path needs them (base/dl.h): vmbak and vmbakfs are not linked with
# librados, libvirt, libxml2, libnbd or libcryptsetup (ldd lists none of them), every verb that
# needs none of them works on a host without all five, and a path that needs one fails with one
# line naming the library and what needed it, exit 1, nothing stored changed. The host without
# them is tests/nolib.sh's mount namespace. (RADOS: tests/cli/rados_badinput.sh; LUKS in
# vmbak files: tests/fuse/files.sh.)
. "$SRCDIR/tests/lib.sh"
. "$SRCDIR/tests/nolib.sh"

need_root
need_cmd unshare ldconfig ldd qemu-img
need_programs
cd "$TESTTMP"
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE

note "not linked: ldd lists none of them"
for p in "$VMBAK" "$VMBAKFS"; do
	ldd "$p" >ldd.out || fail "ldd $p failed"
	for l in $DL_LIBS; do
		! grep -q "$l" ldd.out || fail "$p is linked with $l: $(grep "$l" ldd.out)"
	done
done

note "the namespace hides them"
for l in $DL_LIBS; do
	! without_libs "$DL_LIBS" python3 -c "import ctypes; ctypes.CDLL('$l')" 2>/dev/null ||
		fail "without_libs did not hide $l"
done

note "without all five: init, ingest, list, info, verify, restore, --version work"
head -c 3M /dev/urandom >d.img
expect_ok without_libs "$DL_LIBS" "$VMBAK" --version
expect_ok without_libs "$DL_LIBS" "$VMBAKFS" --version
expect_ok without_libs "$DL_LIBS" "$VMBAK" init v --encryption none
expect_ok without_libs "$DL_LIBS" "$VMBAK" ingest v vm --disk d=d.img
expect_ok without_libs "$DL_LIBS" "$VMBAK" list v
cp "$OUT" list.before
expect_ok without_libs "$DL_LIBS" "$VMBAK" info v
expect_ok without_libs "$DL_LIBS" "$VMBAK" verify v
expect_ok without_libs "$DL_LIBS" "$VMBAK" restore v vm --to r
cmp d.img r/d.img || fail "the restored disk differs"

note "an NBD source without libnbd: one line, nothing stored"
expect_status 1 without_libs libnbd.so.0 "$VMBAK" ingest v vm --disk d=nbd://127.0.0.1:9/x
expect_stderr "^vmbak: disk 'd': cannot load libnbd\.so\.0 \(needed for NBD sources\): .*libnbd\.so\.0"
qemu-img create -q -f qcow2 d.qcow2 4M
expect_status 1 without_libs libnbd.so.0 "$VMBAK" ingest v vm --disk d=d.qcow2 --format d=qcow2
expect_stderr "^vmbak: disk 'd': cannot load libnbd\.so\.0 \(needed for NBD sources\): "
! pgrep -f "qemu-nbd.*$TESTTMP/d.qcow2" >/dev/null || fail "a qemu-nbd was left running"

note "--libvirt without libvirt, or without the libxml2 it needs"
expect_status 1 without_libs libvirt.so.0 "$VMBAK" ingest v vm --libvirt dom
expect_stderr "^vmbak: cannot load libvirt\.so\.0 \(needed for libvirt domains\): .*libvirt\.so\.0"
expect_status 1 without_libs libxml2.so.2 "$VMBAK" ingest v vm --libvirt dom
expect_stderr "^vmbak: cannot load libvirt\.so\.0 \(needed for libvirt domains\): .*libxml2\.so\.2"

note "nothing stored changed"
expect_ok "$VMBAK" list v
cmp "$OUT" list.before || fail "the list changed"
expect_ok "$VMBAK" verify v
