# tests/ceph.sh: a one-node Ceph cluster for the tests, sourced after tests/lib.sh.
#
#   ceph_start          one mon and one memstore osd on 127.0.0.1, auth none, in $TESTTMP/ceph;
#                       sets CEPH_CONF (its config file, also exported for the ceph tools) and
#                       creates the pool $CEPH_POOL (size 1). Stopped and removed when the test
#                       exits (at_exit), also when it fails.
#   ceph_osd_stop       stops the osd (SIGTERM, as an operator would: memstore saves its
#                       objects); requests to the pool then wait, and time out in clients
#   ceph_osd_start      starts it again and waits until the pool takes writes
#   ceph_rados NS ARGS  rados on the pool, in namespace NS
#   ceph_stop           stops everything and removes the directory (also done at exit)
#
# The config gives clients short timeouts (rados_osd_op_timeout, rados_mon_op_timeout,
# client_mount_timeout: CEPH_TIMEOUT seconds, 5 by default), so a test of a cluster that does not
# answer takes seconds. Every daemon runs under `timeout` (TEST_TIMEOUT) and is killed at exit.
# Needs ceph-mon, ceph-osd and ceph-common (tests/deps.sh); skips without them, except under
# CI=true where that is a failure.
# shellcheck shell=bash

CEPH_POOL=${CEPH_POOL:-vmbak}
CEPH_TIMEOUT=${CEPH_TIMEOUT:-5}

need_ceph() {
	local c missing=
	for c in ceph-mon ceph-osd ceph rados monmaptool; do
		command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
	done
	[ -z "$missing" ] && return 0
	[ "${CI:-}" = true ] && fail "needs${missing} (Debian ceph-mon ceph-osd ceph-common)"
	skip "needs${missing} (Debian ceph-mon ceph-osd ceph-common)"
}

# A free TCP port on 127.0.0.1.
_ceph_free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Runs the ceph CLI against the test cluster, under a time limit.
ceph_cli() {
	timeout -k 2 30 ceph --conf "$CEPH_CONF" "$@"
}

_ceph_pid() {
	cat "$CEPH_DIR/$1.pid" 2>/dev/null || true
}

ceph_start() {
	local port fsid i
	need_ceph
	CEPH_DIR=$TESTTMP/ceph
	mkdir -p "$CEPH_DIR"/mon "$CEPH_DIR"/osd "$CEPH_DIR"/run "$CEPH_DIR"/log
	port=$(_ceph_free_port)
	fsid=$(cat /proc/sys/kernel/random/uuid)
	CEPH_CONF=$CEPH_DIR/ceph.conf
	export CEPH_CONF
	cat >"$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms bind ipv4 = true
ms bind ipv6 = false
run dir = $CEPH_DIR/run
admin socket = $CEPH_DIR/run/\$name.asok
log file = $CEPH_DIR/log/\$name.log
mon cluster log file = $CEPH_DIR/log/cluster.log
crash dir = $CEPH_DIR/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
rados osd op timeout = $CEPH_TIMEOUT
rados mon op timeout = $CEPH_TIMEOUT
client mount timeout = $CEPH_TIMEOUT
[mon]
mon data = $CEPH_DIR/mon/\$cluster-\$id
paxos propose interval = 0.01
paxos min wait = 0.01
mon data avail warn = 1
mon data avail crit = 0
[osd]
osd data = $CEPH_DIR/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd class load list = *
osd heartbeat grace = 5
# A clean shutdown, so memstore saves its objects for the next start.
osd fast shutdown = false
EOF
	at_exit "bash '$SRCDIR/tests/ceph.sh' stop '$CEPH_DIR'"
	timeout 30 monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" \
		"$CEPH_DIR/monmap" >/dev/null 2>&1 || fail "ceph: monmaptool failed"
	timeout 30 ceph-mon --conf "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
		>"$CEPH_DIR/log/mkfs-mon.out" 2>&1 || { cat "$CEPH_DIR/log/mkfs-mon.out" >&2; fail "ceph: mon mkfs failed"; }
	timeout -k 5 "${TEST_TIMEOUT:-600}" ceph-mon --conf "$CEPH_CONF" -i a -f \
		>"$CEPH_DIR/log/mon.out" 2>&1 &
	echo $! >"$CEPH_DIR/mon.pid"
	disown
	ceph_cli osd create >/dev/null || { tail -5 "$CEPH_DIR/log/mon.a.log" >&2; fail "ceph: the mon does not answer"; }
	mkdir -p "$CEPH_DIR/osd/ceph-0"
	timeout 60 ceph-osd --conf "$CEPH_CONF" -i 0 --mkfs >"$CEPH_DIR/log/mkfs-osd.out" 2>&1 ||
		{ cat "$CEPH_DIR/log/mkfs-osd.out" >&2; fail "ceph: osd mkfs failed"; }
	_ceph_osd_run
	ceph_cli osd pool create "$CEPH_POOL" 8 8 >/dev/null 2>&1 || fail "ceph: cannot create pool"
	ceph_cli osd pool set "$CEPH_POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1 || true
	ceph_wait_up
}

_ceph_osd_run() {
	timeout -k 5 "${TEST_TIMEOUT:-600}" ceph-osd --conf "$CEPH_CONF" -i 0 -f \
		>>"$CEPH_DIR/log/osd.out" 2>&1 &
	echo $! >"$CEPH_DIR/osd.pid"
	disown
}

# Waits (60 s at most) until the pool takes a write.
ceph_wait_up() {
	local end=$((SECONDS + 60))
	while [ "$SECONDS" -lt "$end" ]; do
		if echo x | timeout 5 rados --conf "$CEPH_CONF" -p "$CEPH_POOL" put .probe - 2>/dev/null; then
			timeout 5 rados --conf "$CEPH_CONF" -p "$CEPH_POOL" rm .probe 2>/dev/null || true
			return 0
		fi
		sleep 0.1
	done
	tail -20 "$CEPH_DIR/log/osd.0.log" >&2 || true
	fail "ceph: the osd does not take writes after 60 s"
}

# Stops the osd as an operator does (SIGTERM: it marks itself down, memstore saves its objects
# into the osd's directory), and waits until it has exited (30 s, then SIGKILL).
ceph_osd_stop() {
	local p c i
	p=$(_ceph_pid osd)
	c=$(pgrep -P "$p" -x ceph-osd || true)
	[ -n "$c" ] || fail "ceph: no osd process to stop"
	kill -TERM "$c"
	for ((i = 0; i < 600; i++)); do
		kill -0 "$c" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$c" "$p" 2>/dev/null || true
	rm -f "$CEPH_DIR/osd.pid"
}

# Starts the osd again (its objects are loaded back) and waits until the pool takes writes.
ceph_osd_start() {
	_ceph_osd_run
	ceph_wait_up
}

# rados against the test pool and the namespace of a vault: ceph_rados NS ARGS...
ceph_rados() {
	local ns=$1
	shift
	timeout -k 2 30 rados --conf "$CEPH_CONF" -p "$CEPH_POOL" -N "$ns" "$@"
}

# ceph_stop [DIR]: kills the daemons of the cluster in DIR ($CEPH_DIR) and removes DIR. Also run
# as `bash tests/ceph.sh stop DIR` (the exit trap runs commands in a shell of their own).
ceph_stop() {
	local dir=${1:-${CEPH_DIR:-}} f p c i
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	for f in osd mon; do
		p=$(cat "$dir/$f.pid" 2>/dev/null || true)
		[ -n "$p" ] || continue
		# The daemon first (the child of its timeout), then the timeout.
		c=$(pgrep -P "$p" || true)
		[ -z "$c" ] || kill -KILL $c 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			{ [ -z "$c" ] || ! kill -0 $c 2>/dev/null; } && break
			sleep 0.05
		done
		rm -f "$dir/$f.pid"
	done
	# The logs stay with the test's files (kept when it fails).
	[ -d "$dir/log" ] && mv "$dir/log" "$dir.log" 2>/dev/null
	rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = stop ]; then
	ceph_stop "${2:-}"
fi
