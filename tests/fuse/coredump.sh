#!/usr/bin/env bash
# tests/fuse/coredump.sh: vmbakfs and vmbak, which hold the vault's keys, leave no core dump.
#
# With `ulimit -c unlimited` and kernel.core_pattern pointing into TESTTMP (the original is put
# back at exit; the test skips when it cannot be changed), a control process killed with
# SIGSEGV must leave a core (else this machine writes none and the test proves nothing). Then
# a vmbakfs -f serving an encrypted vault, and a vmbak ingest into it stopped at its first batch
# (hook VMBAK_TEST_PAUSE_INGEST_BATCH), are killed with SIGSEGV: both must die (the damaged-page
# guard once swallowed a SIGSEGV sent by kill), and neither may leave a core.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_root
need_fuse
need_programs
use_test_build
unset VMBAK_PASSPHRASE VMBAK_PASSPHRASE_FILE
T=$TESTTMP
V=$T/vault
M=$T/mnt
cd "$T"
mkdir cores
chmod 1777 cores

pattern=/proc/sys/kernel/core_pattern
orig=$(cat "$pattern") || skip "cannot read $pattern"
# Restored before anything else is undone; printf %q keeps a pipe pattern intact.
at_exit "printf '%s\n' $(printf '%q' "$orig") >$pattern"
echo "$T/cores/core.%p" >"$pattern" 2>/dev/null || skip "cannot write $pattern"
[ "$(cat "$pattern")" = "$T/cores/core.%p" ] || skip "$pattern did not take the new pattern"
ulimit -c unlimited || skip "cannot raise the core size limit"

# segv PID: kills PID with SIGSEGV, waits until it is gone, then a little for the core.
segv() {
	local i
	kill -SEGV "$1"
	for ((i = 0; i < 200; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	! kill -0 "$1" 2>/dev/null || fail "pid $1 lives on after SIGSEGV"
	sleep 0.5
}

sleep 100 &
ctl=$!
at_exit "kill $ctl 2>/dev/null"
# Only once it runs sleep: the forked shell before the exec may catch the signal itself.
for ((i = 0; i < 200; i++)); do
	[ "$(cat "/proc/$ctl/comm" 2>/dev/null)" = sleep ] && break
	sleep 0.02
done
segv "$ctl"
wait "$ctl" 2>/dev/null || true
[ -n "$(ls cores)" ] || skip "a process killed with SIGSEGV leaves no core here"
rm -f cores/*

printf 'core pass\n' >pass
expect_status 0 "$VMBAK" init "$V" --passphrase-file pass
head -c $((20 * 1024 * 1024)) /dev/urandom >d.img
expect_status 0 "$VMBAK" ingest "$V" vm1 --disk sda=d.img --passphrase-file pass

# The daemon, in the foreground, serving (its keys unwrapped).
mkdir -p "$M"
"$VMBAKFS" "$V" "$M" -f -o passphrase_file="$T/pass" >fs.log 2>&1 &
fs=$!
echo "fuse $M" >>"$_lib_state"
for ((i = 0; i < 200; i++)); do
	is_mounted "$M" && break
	kill -0 "$fs" 2>/dev/null || { cat fs.log; fail "vmbakfs exited"; }
	sleep 0.05
done
cmp "$M/vm1/latest/sda.img" d.img || fail "the image differs"
segv "$fs"
wait "$fs" 2>/dev/null || true
[ -z "$(ls cores)" ] || fail "vmbakfs killed with SIGSEGV left a core: $(ls cores)"
_lib_fuse_unmount "$M" || fail "cannot unmount the dead mount"

# vmbak, stopped inside an ingest (keys unwrapped).
VMBAK_TEST_PAUSE_INGEST_BATCH=$T/go "$VMBAK" ingest "$V" vm2 --disk sda=d.img \
	--passphrase-file pass >ingest.log 2>&1 &
ing=$!
for ((i = 0; i < 1000; i++)); do
	[ -e "$T/go.reached" ] && break
	sleep 0.02
done
[ -e "$T/go.reached" ] || { kill "$ing"; fail "the ingest did not reach its batch"; }
segv "$ing"
wait "$ing" 2>/dev/null || true
[ -z "$(ls cores)" ] || fail "vmbak killed with SIGSEGV left a core: $(ls cores)"
echo "ok"
