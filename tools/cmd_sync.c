/* cmd_sync.c: vmbak sync (copy points to a replica, locally or over ssh) and vmbak serve (the
 * replica's end over ssh's stdio).
 *
 * Over ssh every message, either way, is u32 length (big-endian, at most VBS_SYNC_MSG_MAX) |
 * bytes; the bytes are replica.h's requests and responses. The local side runs `ssh` (or the
 * words of VMBAK_RSH) with the remote command `vmbak serve PATH` (or --remote-path's program),
 * reads ssh's stderr into a temporary file, and when the connection ends early says in one
 * line what the remote side last said.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "replica.h"
#include "sync.h"
#include "util.h"
#include "vault.h"

#define SYNC_USAGE                                                                                 \
	"vmbak sync SRC DST [VM ...] [--prune] [--keep-going] [--json] [--remote-path PATH]"
#define SERVE_USAGE "vmbak serve PATH"

static const char sync_help[] =
    "usage: " SYNC_USAGE "\n"
    "\n"
    "Copies every recovery point of the vault SRC (or of the VMs named) that the replica\n"
    "DST lacks, with only the chunks DST lacks, frames and sealed records as they are, so\n"
    "DST never needs a passphrase and never sees plaintext. DST is a replica made with\n"
    "`vmbak init DST --replica-of SRC`, a path or ssh://[user@]host[:port]/path (then\n"
    "`vmbak serve` runs there through ssh). A point appears in DST whole or not at all; a\n"
    "sync cut short resumes without sending again what arrived. Points deleted from SRC\n"
    "stay in DST unless --prune, and points DST deleted (its own prune) are not sent again.\n"
    "\n"
    "options:\n"
    "  --prune                 then delete from DST the points (of the VMs synced) that SRC\n"
    "                          no longer has, except those protected in DST, retained there\n"
    "                          by their retain-until, or the newest of their VM: retention\n"
    "                          rules are given to vmbak prune, so SRC's prunes are what is\n"
    "                          propagated (a local DST only; over ssh run vmbak prune there)\n"
    "  --keep-going            a point that fails is reported and skipped (with the later\n"
    "                          points of its VM); the exit status is still 1\n"
    "  --json                  print the counts as one JSON object\n"
    "  --remote-path PATH      the vmbak to run on the ssh host (default: vmbak in its PATH)\n"
    "  --passphrase-file F     read SRC's passphrase from the first line of F\n"
    "  -h, --help              show this help\n"
    "\n"
    "environment: VMBAK_RSH, the command run instead of ssh (split at spaces), e.g.\n"
    "\"ssh -i KEY -o BatchMode=yes\".\n";

static const char serve_help[] =
    "usage: " SERVE_USAGE "\n"
    "\n"
    "The replica's end of vmbak sync over ssh: speaks the sync protocol on its standard\n"
    "input and output. Not for interactive use; needs no passphrase.\n"
    "\n"
    "options:\n"
    "  -h, --help              show this help\n";

/* ---- framing ---- */

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0 done, 1 end of file before the first byte, -errno (-ECONNRESET: end within). */
static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return got ? -ECONNRESET : 1;
		got += (size_t)n;
	}
	return 0;
}

static int frame_write(int fd, const uint8_t *msg, size_t len)
{
	uint8_t h[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			(uint8_t)len};
	int r = write_full(fd, h, 4);

	return r < 0 ? r : write_full(fd, msg, len);
}

/* One message: 0, 1 at a clean end of file, -EMSGSIZE, -errno. */
static int frame_read(int fd, uint8_t **ret, size_t *ret_len)
{
	uint8_t h[4], *p;
	uint32_t len;
	int r = read_full(fd, h, 4);

	if (r != 0)
		return r;
	len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (len > VBS_SYNC_MSG_MAX)
		return -EMSGSIZE;
	p = malloc(len ? len : 1);
	if (!p)
		return -ENOMEM;
	r = read_full(fd, p, len);
	if (r != 0) {
		free(p);
		return r == 1 ? -ECONNRESET : r;
	}
	*ret = p;
	*ret_len = len;
	return 0;
}

/* ---- the transports ---- */

struct link {
	const char *dst;  /* as given, for messages */
	vbs_replica *rep; /* local */
	/* ssh */
	pid_t pid;
	int to, from, err; /* pipe to its stdin, from its stdout; its stderr (a memfd) */
	uint64_t sent, received;
};

static int local_call(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
	struct link *l = arg;
	int r = vbs_replica_handle(l->rep, req, len, ret, ret_len);

	if (r < 0)
		return vbu_fail(r, "out of memory");
	l->sent += len + 4;
	l->received += *ret_len + 4;
	return 0;
}

/* The last non-empty line the remote side wrote on stderr, printable, in buf. */
static void remote_said(struct link *l, char *buf, size_t size)
{
	char tmp[4096];
	ssize_t n = l->err >= 0 ? pread(l->err, tmp, sizeof(tmp) - 1, 0) : -1;
	char *line = NULL, *p;

	buf[0] = '\0';
	if (n <= 0)
		return;
	{
		off_t end = lseek(l->err, 0, SEEK_END);

		/* The end of a long stderr holds the last line. */
		if (end > (off_t)sizeof(tmp) - 1)
			n = pread(l->err, tmp, sizeof(tmp) - 1, end - (off_t)sizeof(tmp) + 1);
		if (n <= 0)
			return;
	}
	tmp[n] = '\0';
	for (p = strtok(tmp, "\r\n"); p; p = strtok(NULL, "\r\n"))
		if (*p)
			line = p;
	if (!line)
		return;
	snprintf(buf, size, "%s", q(line));
}

static void link_close(struct link *l, int *ret_status)
{
	int st = 0;

	if (l->to >= 0)
		close(l->to);
	if (l->from >= 0)
		close(l->from);
	l->to = l->from = -1;
	if (l->pid > 0) {
		/* Its stdin closed, serve ends; give it ten seconds. */
		for (int i = 0; i < 1000; i++) {
			pid_t w = waitpid(l->pid, &st, WNOHANG);

			if (w == l->pid || (w < 0 && errno != EINTR))
				break;
			if (i == 999) {
				kill(l->pid, SIGTERM);
				waitpid(l->pid, &st, 0);
				break;
			}
			usleep(10000);
		}
		l->pid = 0;
		if (ret_status)
			*ret_status = st;
	}
}

/* The connection ended early: one line with what the other side said. */
static int ssh_gone(struct link *l, int err)
{
	char said[512];
	int st = -1;

	link_close(l, &st);
	remote_said(l, said, sizeof(said));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
		return vbu_fail(-EPIPE,
				"'%s': the remote command was not found (%s); is vmbak "
				"installed there? (--remote-path)",
				l->dst, said[0] ? said : "exit status 127");
	if (said[0])
		return vbu_fail(-EPIPE, "'%s': connection closed: %s", l->dst, said);
	return vbu_fail(-EPIPE, "'%s': connection closed (%s)", l->dst,
			err == -EMSGSIZE ? "message too large" : vbu_strerror(-err));
}

static int ssh_send(void *arg, const uint8_t *req, size_t len)
{
	struct link *l = arg;
	int r;

	if (l->pid <= 0)
		return vbu_fail(-EPIPE, "'%s': connection closed", l->dst);
	r = frame_write(l->to, req, len);
	if (r < 0)
		return ssh_gone(l, r);
	l->sent += len + 4;
	return 0;
}

static int ssh_recv(void *arg, uint8_t **ret, size_t *ret_len)
{
	struct link *l = arg;
	int r;

	if (l->pid <= 0)
		return vbu_fail(-EPIPE, "'%s': connection closed", l->dst);
	r = frame_read(l->from, ret, ret_len);
	if (r == 1)
		r = -ECONNRESET;
	if (r == -EMSGSIZE)
		return vbu_fail(-EPROTO, "'%s': the remote side sent a message too large", l->dst);
	if (r < 0)
		return ssh_gone(l, r);
	l->received += *ret_len + 4;
	return 0;
}

static int ssh_call(void *arg, const uint8_t *req, size_t len, uint8_t **ret, size_t *ret_len)
{
	int r = ssh_send(arg, req, len);

	return r < 0 ? r : ssh_recv(arg, ret, ret_len);
}

/* ssh://[user@]host[:port]/path into its parts (static buffers of the caller). */
static int parse_ssh(const char *url, char *userhost, size_t uhsize, char *port, size_t psize,
		     const char **ret_path)
{
	const char *p = url + 6, *slash = strchr(p, '/'), *colon;
	size_t n;

	if (!slash || slash == p)
		return usage_err("invalid ssh target '%s': use ssh://[user@]host[:port]/path",
				 q(url));
	colon = memchr(p, ':', (size_t)(slash - p));
	n = (size_t)((colon ? colon : slash) - p);
	if (n == 0 || n >= uhsize || p[0] == '-' || p[0] == '@')
		return usage_err("invalid ssh target '%s': bad host", q(url));
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_' || c == '@'))
			return usage_err("invalid ssh target '%s': bad host", q(url));
	}
	memcpy(userhost, p, n);
	userhost[n] = '\0';
	port[0] = '\0';
	if (colon) {
		size_t pl = (size_t)(slash - colon - 1);

		if (pl == 0 || pl >= psize || strspn(colon + 1, "0123456789") < pl)
			return usage_err("invalid ssh target '%s': bad port", q(url));
		memcpy(port, colon + 1, pl);
		port[pl] = '\0';
		if (atoi(port) < 1 || atoi(port) > 65535)
			return usage_err("invalid ssh target '%s': bad port", q(url));
	}
	if (!slash[1])
		return usage_err("invalid ssh target '%s': no path", q(url));
	*ret_path = slash;
	return 0;
}

/* s in single quotes for a POSIX shell, appended to buf. */
static int shell_quote(char *buf, size_t size, const char *s)
{
	size_t n = strlen(buf);

	if (n + 1 >= size)
		return -1;
	buf[n++] = '\'';
	for (; *s; s++) {
		const char *piece = *s == '\'' ? "'\\''" : NULL;
		size_t pl = piece ? 4 : 1;

		if (n + pl + 2 >= size)
			return -1;
		if (piece)
			memcpy(buf + n, piece, 4);
		else
			buf[n] = *s;
		n += pl;
	}
	buf[n++] = '\'';
	buf[n] = '\0';
	return 0;
}

static int ssh_open(struct link *l, const char *url, const char *remote_path)
{
	char userhost[256], port[8], cmd[8192] = "", *rsh = NULL, *argv[72];
	const char *path = NULL, *env = getenv("VMBAK_RSH");
	int in[2] = {-1, -1}, out[2] = {-1, -1}, argc = 0, r;
	pid_t pid;

	if ((r = parse_ssh(url, userhost, sizeof(userhost), port, sizeof(port), &path)) != 0)
		return r;
	if (shell_quote(cmd, sizeof(cmd), remote_path ? remote_path : "vmbak") < 0 ||
	    strlen(cmd) + 8 >= sizeof(cmd))
		return usage_err("remote path too long");
	strcat(cmd, " serve ");
	if (shell_quote(cmd, sizeof(cmd), path) < 0)
		return usage_err("remote path too long");
	rsh = strdup(env && *env ? env : "ssh");
	if (!rsh) {
		vbu_err("out of memory");
		return VMBAK_EXIT_FAIL;
	}
	for (char *w = strtok(rsh, " \t"); w && argc < 64; w = strtok(NULL, " \t"))
		argv[argc++] = w;
	if (argc == 0 || argc >= 64) {
		free(rsh);
		return usage_err("VMBAK_RSH must name a command (at most 63 words)");
	}
	if (port[0]) {
		argv[argc++] = "-p";
		argv[argc++] = port;
	}
	argv[argc++] = userhost;
	argv[argc++] = cmd;
	argv[argc] = NULL;
	l->err = memfd_create("vmbak-ssh-stderr", MFD_CLOEXEC);
	if (l->err < 0 || pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		vbu_errno(-errno, "cannot start ssh");
		goto fail;
	}
	pid = fork();
	if (pid < 0) {
		vbu_errno(-errno, "cannot start ssh");
		goto fail;
	}
	if (pid == 0) {
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(l->err, 2) < 0)
			_exit(126);
		execvp(argv[0], argv);
		dprintf(2, "cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	l->pid = pid;
	l->to = in[1];
	l->from = out[0];
	free(rsh);
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	free(rsh);
	return VMBAK_EXIT_FAIL;
}

/* ---- sync ---- */

struct notes {
	int json;
	int keep_going; /* failed points are told one by one (else the one error line says it) */
};

static void on_point(void *arg, const char *vm, const char *id, const char *what, const char *err)
{
	struct notes *n = arg;

	if (n->json)
		return;
	if (err && *err && n->keep_going && strcmp(what, "failed") == 0)
		fprintf(stderr, "vmbak: %s/%s: %s\n", vm, id, q(err));
	else if (strcmp(what, "kept") == 0)
		printf("kept %s/%s: %s\n", vm, id, err ? q(err) : "");
	else if (strcmp(what, "copied") == 0 || strcmp(what, "deleted") == 0)
		printf("%s %s/%s\n", what, vm, id);
	fflush(stdout);
}

enum { OPT_KEEP_GOING = 0x100, OPT_JSON, OPT_REMOTE_PATH, OPT_PASSPHRASE_FILE, OPT_PRUNE };

static int cmd_sync(int argc, char **argv, vmbak_globals *g)
{
	static const struct option longopts[] = {
	    {"keep-going", no_argument, NULL, OPT_KEEP_GOING},
	    {"prune", no_argument, NULL, OPT_PRUNE},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"remote-path", required_argument, NULL, OPT_REMOTE_PATH},
	    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
	    {"passphrase", required_argument, NULL, OPT_PASSPHRASE_REFUSED},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const names[] = {"SRC", "DST"};
	const char *passphrase_file = NULL, *remote_path = NULL, *src, *dst;
	struct link l = {.to = -1, .from = -1, .err = -1};
	struct notes nt = {0};
	vbs_sync_opts o = {0};
	vbs_sync_stats st = {0};
	vbs_vault *v = NULL, *pv = NULL;
	struct timespec t0, t1;
	int opt, state = 0, r, status, nargs, prune = 0;

	while ((opt = verb_getopt(argc, argv, ":h", longopts, &state)) != -1) {
		switch (opt) {
		case 'h':
			fputs(sync_help, stdout);
			return VMBAK_EXIT_OK;
		case OPT_KEEP_GOING:
			o.keep_going = nt.keep_going = 1;
			break;
		case OPT_JSON:
			nt.json = 1;
			break;
		case OPT_PRUNE:
			prune = 1;
			break;
		case OPT_REMOTE_PATH:
			if (!*optarg)
				return usage_err("--remote-path is empty");
			remote_path = optarg;
			break;
		case OPT_PASSPHRASE_FILE:
			r = passphrase_file_arg(optarg, &passphrase_file);
			if (r != 0)
				return r;
			break;
		case OPT_PASSPHRASE_REFUSED:
			return passphrase_option_refused();
		default:
			return VMBAK_EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	r = check_nargs(SYNC_USAGE, names, 2, nargs > 2 ? nargs : 2, nargs, argv + optind);
	if (r != 0)
		return r;
	src = argv[optind];
	dst = argv[optind + 1];
	if ((r = check_vault_arg(src)) != 0 || (r = check_vault_arg(dst)) != 0)
		return r;
	for (int i = optind + 2; i < argc; i++)
		if ((r = check_name_arg("VM", argv[i])) != 0)
			return r;
	o.vms = (const char *const *)argv + optind + 2;
	o.nvms = (size_t)(nargs - 2);
	if (remote_path && strncmp(dst, "ssh://", 6) != 0)
		return usage_err("--remote-path is for an ssh:// destination");
	if (prune && strncmp(dst, "ssh://", 6) == 0)
		return usage_err("--prune needs a local replica: over ssh, run vmbak prune on the "
				 "replica's host");
	signal(SIGPIPE, SIG_IGN);

	status = vault_open(src, 1, VAULT_UNLOCK, verb_passphrase_file(passphrase_file, g), &v);
	if (status != 0)
		goto out;
	l.dst = dst;
	if (strncmp(dst, "ssh://", 6) == 0) {
		status = ssh_open(&l, dst, remote_path);
		if (status != 0)
			goto out;
		o.call = ssh_call;
		o.send = ssh_send;
		o.recv = ssh_recv;
	} else {
		r = vbs_replica_open(dst, &l.rep);
		if (r < 0) {
			status = store_err(r, "cannot open replica '%s'", q(dst));
			goto out;
		}
		o.call = local_call;
		if (prune) {
			/* A second handle with the keys, for the deletions (the first has none). */
			r = vbs_vault_open(dst, 0, &pv);
			if (r == 0)
				r = vbs_vault_unlock_from(pv, v);
			if (r == 0)
				r = vbs_vault_open_env(pv);
			if (r < 0) {
				status = store_err(r, "cannot open replica '%s'", q(dst));
				goto out;
			}
			o.prune = pv;
		}
	}
	o.call_arg = &l;
	o.note = on_point;
	o.note_arg = &nt;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = vbs_sync(v, &o, &st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	status = r < 0 ? VMBAK_EXIT_FAIL : VMBAK_EXIT_OK;
	if (r < 0 && !(o.keep_going && r == -EIO))
		store_err(r, "cannot sync '%s' to '%s'", q(src), q(dst));
	else if (r < 0)
		vbu_err("sync '%s' to '%s': %llu point(s) failed", q(src), q(dst),
			(unsigned long long)st.points_failed);
	if (nt.json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "ok", json_object_new_boolean(r == 0));
		json_object_object_add(j, "job", json_u64(st.job));
		json_object_object_add(j, "points_copied", json_u64(st.points_copied));
		json_object_object_add(j, "points_present", json_u64(st.points_present));
		json_object_object_add(j, "points_failed", json_u64(st.points_failed));
		json_object_object_add(j, "chunks_sent", json_u64(st.chunks_sent));
		json_object_object_add(j, "chunk_bytes_sent", json_u64(st.chunk_bytes_sent));
		json_object_object_add(j, "chunks_present", json_u64(st.chunks_present));
		json_object_object_add(j, "points_deleted", json_u64(st.points_deleted));
		json_object_object_add(j, "points_kept", json_u64(st.points_kept));
		json_object_object_add(j, "bytes_sent", json_u64(l.sent));
		json_object_object_add(j, "bytes_received", json_u64(l.received));
		json_object_object_add(
		    j, "seconds",
		    json_object_new_double((double)(t1.tv_sec - t0.tv_sec) +
					   (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
		puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY));
		json_object_put(j);
	} else if (r == 0) {
		char a[HUMAN_SIZE_LEN], b[HUMAN_SIZE_LEN];

		printf("sync done: %llu point(s) copied, %llu already there; %llu chunk(s) sent "
		       "(%s), %llu found there; %s sent in all\n",
		       (unsigned long long)st.points_copied, (unsigned long long)st.points_present,
		       (unsigned long long)st.chunks_sent, human_size(st.chunk_bytes_sent, a),
		       (unsigned long long)st.chunks_present, human_size(l.sent, b));
		if (prune)
			printf("pruned: %llu point(s) deleted, %llu kept\n",
			       (unsigned long long)st.points_deleted,
			       (unsigned long long)st.points_kept);
	}
out:
	link_close(&l, NULL);
	if (l.err >= 0)
		close(l.err);
	vbs_replica_close(l.rep);
	vbs_vault_close(pv);
	vbs_vault_close(v);
	return status;
}

/* ---- serve ---- */

static int cmd_serve(int argc, char **argv, vmbak_globals *g)
{
	static const struct option longopts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const names[] = {"PATH"};
	vbs_replica *rep = NULL;
	char why[512] = "";
	int opt, state = 0, r, out, status = VMBAK_EXIT_OK;

	(void)g;
	while ((opt = verb_getopt(argc, argv, ":h", longopts, &state)) != -1) {
		if (opt == 'h') {
			fputs(serve_help, stdout);
			return VMBAK_EXIT_OK;
		}
		return VMBAK_EXIT_USAGE;
	}
	r = check_nargs(SERVE_USAGE, names, 1, 1, argc - optind, argv + optind);
	if (r != 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	/* The protocol owns stdout: anything else printed goes to stderr. */
	out = fcntl(1, F_DUPFD_CLOEXEC, 3);
	if (out < 0 || dup2(2, 1) < 0) {
		vbu_errno(-errno, "serve: cannot set up its output");
		return VMBAK_EXIT_FAIL;
	}
	r = vbs_replica_open(argv[optind], &rep);
	if (r < 0)
		snprintf(why, sizeof(why), "%s", vbs_errmsg()[0] ? vbs_errmsg() : vbu_strerror(-r));
	for (;;) {
		uint8_t *req = NULL, *resp = NULL;
		size_t len = 0, rlen = 0;

		r = frame_read(0, &req, &len);
		if (r == 1)
			break;
		if (r < 0) {
			vbu_err("serve: %s",
				r == -EMSGSIZE ? "message too large" : vbu_strerror(-r));
			status = VMBAK_EXIT_FAIL;
			break;
		}
		if (rep) {
			r = vbs_replica_handle(rep, req, len, &resp, &rlen);
		} else {
			rlen = 1 + strlen(why);
			resp = malloc(rlen);
			r = resp ? 0 : -ENOMEM;
			if (resp) {
				resp[0] = VBS_SYNC_ERR;
				memcpy(resp + 1, why, rlen - 1);
			}
		}
		free(req);
		if (r == 0)
			r = frame_write(out, resp, rlen);
		free(resp);
		if (r < 0) {
			status = VMBAK_EXIT_FAIL;
			break;
		}
	}
	close(out);
	vbs_replica_close(rep);
	return status;
}

const vmbak_cmd cmd_sync_def = {
    .name = "sync",
    .summary = "copy recovery points to a replica (a path or ssh://)",
    .help = sync_help,
    .main = cmd_sync,
};

const vmbak_cmd cmd_serve_def = {
    .name = "serve",
    .summary = "the replica's end of sync over ssh (stdio)",
    .help = serve_help,
    .main = cmd_serve,
};
