# tests/sshd.sh: sourced by the sync tests after lib.sh: an sshd of the test's own on 127.0.0.1.
#
# start_sshd BINDIR: starts /usr/sbin/sshd -D on a free port of 127.0.0.1 with a throwaway host
# key, under a time limit, stopped (and its sessions with it) when the test exits, also when it
# fails. Two client keys are authorized for root: $SSH_DIR/client, whose sessions have BINDIR
# first in PATH (so `vmbak` is found there), and $SSH_DIR/bare, whose PATH has no vmbak. Sets
# SSH_PORT, SSH_DIR, and VMBAK_RSH (exported) to an ssh that uses the first key and trusts the
# host key; ssh_rsh KEY prints such a command for another key.
# shellcheck shell=bash

ssh_rsh() {
	echo "ssh -F /dev/null -i $1 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" \
		"-o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=10"
}

start_sshd() {
	local bindir=$1 i
	[ -x /usr/sbin/sshd ] || {
		[ "${CI:-}" = true ] && fail "/usr/sbin/sshd is missing (openssh-server, tests/deps.sh)"
		skip "needs /usr/sbin/sshd (Debian openssh-server)"
	}
	need_cmd ssh ssh-keygen timeout
	SSH_DIR=$TESTTMP/sshd
	mkdir -p "$SSH_DIR" /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host" || fail "cannot make a host key"
	ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/client" || fail "cannot make a client key"
	ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/bare" || fail "cannot make a client key"
	{
		echo "environment=\"PATH=$bindir:/usr/bin:/bin\" $(cat "$SSH_DIR/client.pub")"
		echo "environment=\"PATH=/usr/bin:/bin\" $(cat "$SSH_DIR/bare.pub")"
	} >"$SSH_DIR/authorized_keys"
	SSH_PORT=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
	cat >"$SSH_DIR/config" <<EOF
ListenAddress 127.0.0.1:$SSH_PORT
HostKey $SSH_DIR/host
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment yes
PidFile $SSH_DIR/sshd.pid
EOF
	timeout 600 /usr/sbin/sshd -D -f "$SSH_DIR/config" -E "$SSH_DIR/log" &
	SSHD_PID=$!
	# timeout passes the TERM on to sshd, which ends its sessions too.
	at_exit "kill $SSHD_PID 2>/dev/null; wait $SSHD_PID 2>/dev/null || true"
	VMBAK_RSH=$(ssh_rsh "$SSH_DIR/client")
	export VMBAK_RSH
	for ((i = 0; i < 100; i++)); do
		grep -q "Server listening" "$SSH_DIR/log" 2>/dev/null && return 0
		kill -0 "$SSHD_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$SSH_DIR/log" >&2 || true
	fail "sshd did not start"
}
