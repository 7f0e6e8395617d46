#!/usr/bin/env bash
# tests/fuse/powercut.sh: the power-cut suite (tests/powercut/run.sh) with a reduced count, so
# that `make check` stays fast: POWERCUT_CUTS cuts (default 6) at a random seed, printed with
# the command that replays it. `make check-long` runs the full count. The working directory,
# with the vault image as the failing cut left it and the guest's console logs, stays in
# TESTTMP after a failure. Skips where QEMU, busybox-static or the kernel are missing, except
# under CI=true, where that is a failure.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

args=(--cuts "${POWERCUT_CUTS:-6}" --window "${POWERCUT_WINDOW:-15000}" --dir "$TESTTMP/powercut")
[ -n "${POWERCUT_SEED:-}" ] && args+=(--seed "$POWERCUT_SEED")
st=0
bash "$SRCDIR/tests/powercut/run.sh" "${args[@]}" || st=$?
exit "$st"
