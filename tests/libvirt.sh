# tests/libvirt.sh: a libvirtd of the test's own, for the tests that drive libvirt (sourced;
# bash, after tests/lib.sh).
#
#   libvirt_ns "$@"     first thing in the test, before lib.sh: re-runs the test in a private
#                       mount namespace (unshare -m), so that what libvirt_start mounts is seen
#                       by the test and its children only, and goes away with them
#   libvirt_start       starts virtlogd and libvirtd by hand (no systemd), each under a time
#                       limit and killed when the test exits, with private /run/libvirt,
#                       /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt (tmpfs) and
#                       /etc/libvirt (TESTTMP/libvirt-etc: a qemu.conf that runs QEMU as root
#                       with no relabelling, so QEMU reads the test's files and the vmbakfs mount
#                       without -o allow_other); sets LIBVIRT_DEFAULT_URI. Two tests, or a host's
#                       own libvirtd, never see each other. Skips (fails under CI=true) when
#                       libvirt is not installed.
#   virsh_t ARGS...     virsh under a time limit
#
# libvirtd (9.0) resolves its built-in QEMU user, libvirt-qemu, even when qemu.conf names
# another: where the host lacks that user (libvirt-daemon-system creates it; the tests need only
# libvirt-daemon), the namespace's /etc/passwd and /etc/group get it.
# shellcheck shell=bash

LIBVIRT_LIMIT=${LIBVIRT_LIMIT:-900}

libvirt_ns() {
	if [ -z "${VMBAK_LIBVIRT_NS:-}" ]; then
		if ! command -v unshare >/dev/null 2>&1; then
			echo "needs unshare (util-linux)"
			exit 77
		fi
		VMBAK_LIBVIRT_NS=1 exec unshare -m --propagation private -- bash "$0" "$@"
	fi
}

virsh_t() {
	timeout -k 5 120 virsh "$@"
}

libvirt_start() {
	local c d etc=$TESTTMP/libvirt-etc i
	for c in libvirtd virtlogd virsh; do
		if ! command -v "$c" >/dev/null 2>&1; then
			[ "${CI:-}" = true ] && fail "needs '$c' (libvirt-daemon, libvirt-clients)"
			skip "needs '$c', which is not installed (libvirt-daemon, libvirt-clients)"
		fi
	done
	[ -n "${VMBAK_LIBVIRT_NS:-}" ] || fail "libvirt_start outside libvirt_ns"
	for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt; do
		mkdir -p "$d" || fail "cannot make $d"
	done
	for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
		mount -t tmpfs -o mode=0755 tmpfs "$d" || fail "cannot mount a tmpfs on $d"
	done
	mkdir -p "$etc"
	cat >"$etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
EOF
	mount --bind "$etc" /etc/libvirt || fail "cannot bind $etc on /etc/libvirt"
	cp /etc/passwd "$TESTTMP/passwd" && cp /etc/group "$TESTTMP/group" || fail "cannot copy passwd"
	if ! getent passwd libvirt-qemu >/dev/null; then
		echo 'libvirt-qemu:x:64055:64055:libvirt-qemu:/nonexistent:/usr/sbin/nologin' \
			>>"$TESTTMP/passwd"
		mount --bind "$TESTTMP/passwd" /etc/passwd || fail "cannot bind a passwd"
	fi
	if ! getent group libvirt-qemu >/dev/null; then
		echo 'libvirt-qemu:x:64055:' >>"$TESTTMP/group"
		mount --bind "$TESTTMP/group" /etc/group || fail "cannot bind a group file"
	fi
	# Pid files of their own: the defaults (/run/virtlogd.pid, /run/libvirtd.pid) lie outside the
	# tmpfs mounts, where another test's daemons (another checkout's) would hold them.
	timeout -k 5 "$LIBVIRT_LIMIT" virtlogd -p "$TESTTMP/virtlogd.pid" >"$TESTTMP/virtlogd.log" 2>&1 &
	at_exit "kill $! 2>/dev/null"
	timeout -k 5 "$LIBVIRT_LIMIT" libvirtd -p "$TESTTMP/libvirtd.pid" >"$TESTTMP/libvirtd.log" 2>&1 &
	LIBVIRTD_PID=$!
	at_exit "kill $LIBVIRTD_PID 2>/dev/null; sleep 0.5; kill -9 $LIBVIRTD_PID 2>/dev/null"
	for ((i = 0; i < 150; i++)); do
		[ -S /run/libvirt/libvirt-sock ] && break
		kill -0 "$LIBVIRTD_PID" 2>/dev/null ||
			fail "libvirtd exited: $(grep -E ' error : ' "$TESTTMP/libvirtd.log" | tail -n 2)"
		sleep 0.1
	done
	[ -S /run/libvirt/libvirt-sock ] || fail "libvirtd did not start within 15 s"
	export LIBVIRT_DEFAULT_URI=qemu:///system
	virsh_t version >/dev/null 2>&1 || fail "virsh cannot talk to libvirtd"
}

# libvirt_forget DOMAIN: destroyed and undefined when the test exits (with its checkpoints).
libvirt_forget() {
	at_exit "timeout 60 virsh destroy '$1' >/dev/null 2>&1; timeout 60 virsh undefine '$1' --checkpoints-metadata --nvram >/dev/null 2>&1 || timeout 60 virsh undefine '$1' >/dev/null 2>&1"
}
