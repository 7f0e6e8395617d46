/* main.c: vmbakfs VAULT MOUNTPOINT [options]: arguments, startup and the FUSE session.
 *
 * Startup checks everything in the foreground, where errors reach the terminal: the options
 * (fuse_session_new() parses the mount options), the paths, the vault, its passphrase, that
 * its LMDB environment opens. Only then is the file system mounted and the daemon forked; the
 * environment is opened again in the child, because LMDB must not cross fork(). The parent
 * waits until the child has done that, so its exit status says whether the mount works, and
 * the child unmounts before reporting a failure: a failed start leaves nothing mounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "front.h"
#include "ops.h"
#include "util.h"
#include "vault.h"

enum {
	CONTINUE = -1, /* parse_args: go on and mount (else an exit status of front.h) */
};

/* With fsname=VAULT (the vault's absolute path, see new_session), so that the mount table
 * says which vault a mount serves (findmnt, vmbak restore --instant). */
#define FORCED_OPTS "ro,default_permissions,subtype=vmbakfs"
#define MAX_IDLE_THREADS 10
#define MAX_THREADS 16
#define CACHE_SIZE_MAX (64ull << 30) /* -o cache_size: see cache_size_max() */

typedef struct vbf_args {
	char *passphrase_file; /* -o passphrase_file=F (never passed on to the mount) */
	char *cache_size;      /* -o cache_size=MIB */
	char *vault;
	char *mountpoint;
	int foreground;
	int debug;
	int single_thread;
	int help;
	int version;
} vbf_args;

enum { KEY_FOREGROUND, KEY_DEBUG, KEY_SINGLE, KEY_HELP, KEY_VERSION };

static const struct fuse_opt opt_spec[] = {
    {"passphrase_file=%s", offsetof(vbf_args, passphrase_file), 0},
    {"cache_size=%s", offsetof(vbf_args, cache_size), 0},
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("--foreground", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("--debug", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    FUSE_OPT_KEY("-s", KEY_SINGLE),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_END,
};

static const char help_text[] =
    "usage: vmbakfs VAULT MOUNTPOINT [options]\n"
    "\n"
    "Shows the vault VAULT read-only at MOUNTPOINT:\n"
    "    MOUNTPOINT/VM/latest              symlink to the newest recovery point\n"
    "    MOUNTPOINT/VM/RP/manifest.json    what the recovery point holds\n"
    "    MOUNTPOINT/VM/RP/DISK.img         the disk image, exact size, sparse\n"
    "    MOUNTPOINT/VM/RP/DISK.key         the escrowed key blob (mode 0400)\n"
    "\n"
    "options:\n"
    "    -f                      stay in the foreground\n"
    "    -d                      print every FUSE request (implies -f)\n"
    "    -s                      serve requests from one thread\n"
    "    -o passphrase_file=F    read the vault passphrase from the file F\n"
    "    -o cache_size=MIB       memory for decoded chunks in MiB (default 64; at most\n"
    "                            half of the memory, and 64 GiB)\n"
    "    -o allow_other          let other users in (key blobs stay 0400)\n"
    "    -o OPT[,OPT...]         other options of mount.fuse3(8)\n"
    "    -h, --help              print this help and exit\n"
    "    -V, --version           print the version and exit\n"
    "\n"
    "environment:\n"
    "    VMBAK_PASSPHRASE_FILE   file holding the vault passphrase\n"
    "    VMBAK_PASSPHRASE        the vault passphrase\n"
    "\n"
    "Unmount with: fusermount3 -u MOUNTPOINT\n";

/* libfuse's messages, made to look like ours: "vmbakfs: MESSAGE", one line. libfuse sometimes
 * builds a line from several calls, so pieces are gathered until the newline. While capturing
 * (startup, one thread), complete lines are kept for the caller instead of printed. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_line[1024];
static char log_captured[1024];
static int log_capturing;

static void log_flush_locked(void)
{
	size_t len = strlen(log_line);
	const char *msg = log_line;

	while (len > 0 && (log_line[len - 1] == '\n' || log_line[len - 1] == ' '))
		log_line[--len] = '\0';
	for (char *p = log_line; *p != '\0'; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	if (strncmp(msg, "fuse: ", 6) == 0)
		msg += 6;
	if (msg[0] != '\0') {
		if (log_capturing)
			snprintf(log_captured, sizeof(log_captured), "%s", msg);
		else
			vbu_err("%s", msg);
	}
	log_line[0] = '\0';
}

static void log_fuse(enum fuse_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void log_fuse(enum fuse_log_level level, const char *fmt, va_list ap)
{
	size_t used;

	if (level >= FUSE_LOG_DEBUG) {
		/* -d: the request trace, as libfuse prints it. */
		vfprintf(stderr, fmt, ap);
		return;
	}
	pthread_mutex_lock(&log_lock);
	used = strlen(log_line);
	vsnprintf(log_line + used, sizeof(log_line) - used, fmt, ap);
	used = strlen(log_line);
	if (used > 0 && (log_line[used - 1] == '\n' || used == sizeof(log_line) - 1))
		log_flush_locked();
	pthread_mutex_unlock(&log_lock);
}

static void log_capture_begin(void)
{
	pthread_mutex_lock(&log_lock);
	log_capturing = 1;
	log_captured[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

/* Ends capturing; returns the last line libfuse logged meanwhile ("" if none). */
static const char *log_capture_end(void)
{
	pthread_mutex_lock(&log_lock);
	if (log_line[0] != '\0')
		log_flush_locked();
	log_capturing = 0;
	pthread_mutex_unlock(&log_lock);
	return log_captured;
}

#define TRY_HELP " (try 'vmbakfs --help')"
#define USAGE_LINE " (usage: vmbakfs VAULT MOUNTPOINT [-f] [-o OPTION[,OPTION...]])"

static int usage_missing(const char *what)
{
	vbu_err("missing %s" USAGE_LINE, what);
	return VMBAK_EXIT_USAGE;
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	vbf_args *a = data;

	switch (key) {
	case FUSE_OPT_KEY_NONOPT: {
		char **slot = NULL;

		if (a->vault == NULL)
			slot = &a->vault;
		else if (a->mountpoint == NULL)
			slot = &a->mountpoint;
		if (slot == NULL) {
			usage_err("too many arguments: '%s'" TRY_HELP, q(arg));
			return -1;
		}
		*slot = strdup(arg);
		if (*slot == NULL) {
			vbu_errno(-ENOMEM, "cannot parse the arguments");
			return -1;
		}
		return 0;
	}
	case KEY_FOREGROUND:
		a->foreground = 1;
		return 0;
	case KEY_DEBUG:
		/* Kept: fuse_session_new() turns on its request trace. */
		a->debug = 1;
		a->foreground = 1;
		return 1;
	case KEY_SINGLE:
		a->single_thread = 1;
		return 0;
	case KEY_HELP:
		a->help = 1;
		return 0;
	case KEY_VERSION:
		a->version = 1;
		return 0;
	default:
		if (arg[0] == '-') {
			usage_err("unknown option '%s'" TRY_HELP, q(arg));
			return -1;
		}
		/* A mount option: fuse_session_new() checks it. */
		return 1;
	}
}

/* The largest decoded-chunk cache: half of the physical memory, and never more than
 * CACHE_SIZE_MAX. A cache that cannot fit would make the daemon the first one the kernel kills
 * when memory runs short. */
static uint64_t cache_size_max(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t half;

	if (pages <= 0 || psize <= 0)
		return CACHE_SIZE_MAX;
	half = (uint64_t)pages / 2 * (uint64_t)psize;
	return half < CACHE_SIZE_MAX ? half : CACHE_SIZE_MAX;
}

/* "64" is MiB; "512M", "1G", "65536K" are sizes with a unit. */
static int parse_cache_size(const char *s, size_t *ret)
{
	uint64_t n;
	int r;

	if (s[0] == '\0')
		return -EINVAL;
	r = vbu_parse_size(s, &n);
	if (r < 0)
		return r;
	if (strspn(s, "0123456789") == strlen(s)) {
		if (n > UINT64_MAX / (1024 * 1024))
			return -ERANGE;
		n *= 1024 * 1024;
	}
	if (n == 0)
		return -EINVAL;
	if (n > cache_size_max())
		return -ERANGE;
	*ret = (size_t)n;
	return 0;
}

/* Returns CONTINUE, or the exit status when there is nothing to mount (help, version, usage
 * error: the message is printed). fargs keeps the mount options for fuse_session_new(). */
static int parse_args(struct fuse_args *fargs, vbf_args *a, size_t *ret_cache)
{
	const char *msg;
	int r;

	log_capture_begin();
	r = fuse_opt_parse(fargs, a, opt_spec, opt_proc);
	msg = log_capture_end();
	if (r != 0) {
		/* opt_proc has said what is wrong, or libfuse has (captured). */
		if (msg[0] != '\0')
			usage_err("%s" TRY_HELP, q(msg));
		return VMBAK_EXIT_USAGE;
	}
	if (a->help) {
		fputs(help_text, stdout);
		return fflush(stdout) == 0 ? VMBAK_EXIT_OK : VMBAK_EXIT_FAIL;
	}
	if (a->version) {
		printf("vmbakfs %s (libfuse %s)\n", VMBAK_VERSION, fuse_pkgversion());
		return fflush(stdout) == 0 ? VMBAK_EXIT_OK : VMBAK_EXIT_FAIL;
	}
	if (a->vault == NULL)
		return usage_missing("VAULT and MOUNTPOINT");
	if (a->mountpoint == NULL)
		return usage_missing("MOUNTPOINT");
	if (a->vault[0] == '\0')
		return usage_err("empty VAULT" TRY_HELP);
	if (a->mountpoint[0] == '\0')
		return usage_err("empty MOUNTPOINT" TRY_HELP);
	if (a->passphrase_file != NULL && a->passphrase_file[0] == '\0')
		return usage_err("empty passphrase_file" TRY_HELP);
	*ret_cache = 0;
	if (a->cache_size != NULL && (r = parse_cache_size(a->cache_size, ret_cache)) < 0) {
		if (r == -ERANGE)
			return usage_err("invalid cache_size '%s': at most %llu MiB (half of the "
					 "memory, and 64 GiB)" TRY_HELP,
					 q(a->cache_size),
					 (unsigned long long)(cache_size_max() >> 20));
		return usage_err(
		    "invalid cache_size '%s': give MiB, or a size such as 512M or 2G" TRY_HELP,
		    q(a->cache_size));
	}
	return CONTINUE;
}

/* 1 when the directory dir is path or one of its ancestors, 0 when not, -errno on failure.
 * path is absolute and canonical (realpath). Compared by device and inode numbers, not by
 * name: a bind mount gives one directory several paths. */
static int is_at_or_above(const struct stat *dir, const char *path)
{
	char *p = strdup(path), *slash;
	struct stat st;
	int r = 0;

	if (p == NULL)
		return -ENOMEM;
	for (;;) {
		if (stat(p, &st) != 0) {
			r = -errno;
			break;
		}
		if (st.st_dev == dir->st_dev && st.st_ino == dir->st_ino) {
			r = 1;
			break;
		}
		slash = strrchr(p, '/');
		if (slash == NULL || p[1] == '\0')
			break;
		slash[slash == p ? 1 : 0] = '\0';
	}
	free(p);
	return r;
}

/* The daemon opens the vault after mounting: through its own mount if the mount point is the
 * vault directory or holds it, where it would wait on itself for ever. A mount point inside
 * the vault would hide part of it. */
static int check_not_vault(const vbf_args *a, const char *vault, const char *mnt,
			   const struct stat *mnt_st)
{
	struct stat vst;
	int r;

	if (stat(vault, &vst) != 0) {
		vbu_errno(-errno, "cannot open vault '%s'", q(a->vault));
		return VMBAK_EXIT_FAIL;
	}
	r = is_at_or_above(mnt_st, vault);
	if (r == 1) {
		if (mnt_st->st_dev == vst.st_dev && mnt_st->st_ino == vst.st_ino)
			vbu_err("cannot mount on '%s': it is the vault directory",
				q(a->mountpoint));
		else
			vbu_err("cannot mount on '%s': it holds the vault '%s'", q(a->mountpoint),
				q(a->vault));
		return VMBAK_EXIT_FAIL;
	}
	if (r == 0)
		r = is_at_or_above(&vst, mnt);
	if (r == 1) {
		vbu_err("cannot mount on '%s': it is inside the vault '%s'", q(a->mountpoint),
			q(a->vault));
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		vbu_errno(r, "cannot mount on '%s'", q(a->mountpoint));
		return VMBAK_EXIT_FAIL;
	}
	return VMBAK_EXIT_OK;
}

/* A mount point that cannot be used. ENOTCONN is the mount of a daemon that died: say how
 * to clear it. */
static void mount_point_err(const char *mountpoint, int err)
{
	if (err == -ENOTCONN)
		vbu_err("cannot mount on '%s': %s (the mount of a daemon that died: clear it "
			"with 'fusermount3 -u %s')",
			q(mountpoint), vbu_strerror(ENOTCONN), q(mountpoint));
	else
		vbu_errno(err, "cannot mount on '%s'", q(mountpoint));
}

/* Absolute paths, because the daemon works from "/". */
static int resolve_paths(const vbf_args *a, char **ret_vault, char **ret_mnt)
{
	char *vault = NULL, *mnt = NULL;
	struct stat st;
	int status = VMBAK_EXIT_FAIL;

	vault = realpath(a->vault, NULL);
	if (vault == NULL) {
		vbu_errno(-errno, "cannot open vault '%s'", q(a->vault));
		goto out;
	}
	mnt = realpath(a->mountpoint, NULL);
	if (mnt == NULL || stat(mnt, &st) != 0) {
		mount_point_err(a->mountpoint, -errno);
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		vbu_errno(-ENOTDIR, "cannot mount on '%s'", q(a->mountpoint));
		goto out;
	}
	if (check_not_vault(a, vault, mnt, &st) != VMBAK_EXIT_OK)
		goto out;
	*ret_vault = vault;
	*ret_mnt = mnt;
	vault = mnt = NULL;
	status = VMBAK_EXIT_OK;
out:
	free(vault);
	free(mnt);
	return status;
}

/* Opens and unlocks the vault and checks that its environment opens; leaves it closed (LMDB
 * must not cross the fork of daemon_start()). */
static int open_vault(const char *path, const vbf_args *a, size_t cache_bytes, vbs_vault **ret)
{
	vbs_vault *v = NULL;
	int status;

	status = vault_open(path, 1, 0, a->passphrase_file, &v);
	if (status != VMBAK_EXIT_OK)
		return status;
	vbs_vault_close_env(v);
	if (cache_bytes > 0)
		vbs_vault_set_cache_size(v, cache_bytes);
	*ret = v;
	return VMBAK_EXIT_OK;
}

static struct fuse_session *new_session(struct fuse_args *fargs, vbf_fs *fs,
					const char *vault_path)
{
	/* A path too long for the mount's option page gives the plain name. */
	char *fsname = front_fuse_opt("fsname", strlen(vault_path) > 1024 ? "vmbakfs" : vault_path);
	struct fuse_session *se;
	const char *msg;

	if (!fsname || fuse_opt_add_arg(fargs, "-o" FORCED_OPTS) != 0 ||
	    fuse_opt_add_arg(fargs, "-o") != 0 || fuse_opt_add_arg(fargs, fsname) != 0) {
		free(fsname);
		vbu_errno(-ENOMEM, "cannot start");
		return NULL;
	}
	free(fsname);
	log_capture_begin();
	se = fuse_session_new(fargs, &vbf_ops, sizeof(vbf_ops), fs);
	msg = log_capture_end();
	if (se == NULL)
		usage_err("%s" TRY_HELP, msg[0] != '\0' ? q(msg) : "invalid mount options");
	return se;
}

/* mountinfo escapes space, tab, newline and backslash in paths as \ooo. */
static void unescape_octal(char *s)
{
	char *out = s;

	while (*s != '\0') {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

/* The device number of the newest mount on mnt, from /proc/self/mountinfo. The mount itself
 * cannot be asked (stat) until the session loop answers the kernel. */
static int mount_dev(const char *mnt, unsigned *ret_major, unsigned *ret_minor)
{
	unsigned maj, min;
	size_t cap = 0;
	char *line = NULL;
	int found = -ENOENT;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char point[PATH_MAX];

		_Static_assert(PATH_MAX == 4096, "the width in the format below");

		/* ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ... */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, point) != 3)
			continue;
		unescape_octal(point);
		if (strcmp(point, mnt) != 0)
			continue;
		*ret_major = maj;
		*ret_minor = min;
		found = 0;
	}
	free(line);
	fclose(f);
	return found;
}

/* The kernel reads ahead 128 KiB by default, so a sequential reader (cp, dd, qemu-img convert)
 * sends requests of that size. Raising the mount's own read-ahead (to VBF_READ_AHEAD_KIB, ops.h)
 * lets them grow to the 1 MiB libfuse accepts, several in flight: fewer, larger requests, and
 * a reader of 1 MiB is no longer left with one at a time. Best effort: only root may, and
 * nothing breaks without it. Done before the session answers INIT, which keeps the smaller of
 * this and what op_init() asks for. */
static void raise_read_ahead(const char *mnt)
{
	char path[64], value[16];
	unsigned maj, min;
	int fd, len;

	if (mount_dev(mnt, &maj, &min) < 0)
		return;
	len = snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	if (len < 0 || (size_t)len >= sizeof(path))
		return;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	len = snprintf(value, sizeof(value), "%d\n", VBF_READ_AHEAD_KIB);
	if (len > 0 && vbu_write_all(fd, value, (size_t)len) < 0) {
		/* Not allowed or not supported: the default stays. */
	}
	close(fd);
}

/* Forks the daemon. The parent waits for the child's word (one byte: its exit status) and
 * exits with it; the child returns the descriptor to send it on. fuse_daemonize() would let
 * the parent exit before the child knows whether the vault opens. */
static int daemon_start(int *ret_fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(p[0]);
		close(p[1]);
		return err;
	}
	if (pid > 0) {
		unsigned char status = VMBAK_EXIT_FAIL;
		ssize_t n;

		close(p[1]);
		do
			n = read(p[0], &status, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 ? status : VMBAK_EXIT_FAIL);
	}
	close(p[0]);
	if (setsid() < 0) {
		int err = -errno;

		close(p[1]);
		return err;
	}
	*ret_fd = p[1];
	return 0;
}

/* Tells the parent how the start went. On success the daemon's stdio goes to /dev/null first:
 * nobody reads the terminal after the parent has exited. */
static void daemon_report(int fd, int status)
{
	unsigned char byte = (unsigned char)status;
	int null;

	if (status == VMBAK_EXIT_OK) {
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (null >= 0) {
			dup2(null, STDIN_FILENO);
			dup2(null, STDOUT_FILENO);
			dup2(null, STDERR_FILENO);
			if (null > STDERR_FILENO)
				close(null);
		}
	}
	if (vbu_write_all(fd, &byte, 1) < 0) {
		/* The parent is gone; nothing to tell. */
	}
	close(fd);
}

static int run_loop(struct fuse_session *se, const vbf_args *a)
{
	struct fuse_loop_config *cfg;
	int r;

	if (a->single_thread)
		return fuse_session_loop(se);
	cfg = fuse_loop_cfg_create();
	if (cfg == NULL)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, 0);
	fuse_loop_cfg_set_max_threads(cfg, MAX_THREADS);
	fuse_loop_cfg_set_idle_threads(cfg, MAX_IDLE_THREADS);
	r = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return r;
}

/* Every open image holds a descriptor of the vault's chunk file (image.h): allow as many
 * open images as the hard limit does. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	/* vmbakfs(1): a missing passphrase is a failure (1), like a wrong one. */
	static const front_program prog = {
	    .name = "vmbakfs",
	    .passphrase_option = "-o passphrase_file=F",
	    .no_passphrase_status = VMBAK_EXIT_FAIL,
	};
	struct fuse_args fargs = FUSE_ARGS_INIT(argc, argv);
	struct fuse_session *se = NULL;
	char *vault_path = NULL, *mnt = NULL;
	vbf_args a = {0};
	vbf_fs fs = {0};
	size_t cache_bytes = 0;
	int status, r, mounted = 0, report_fd = -1;
	const char *msg;

	status = front_init(&prog);
	if (status != VMBAK_EXIT_OK)
		return status;
	/* Frames and decoded chunks (64 KiB) are allocated and freed on every request by many
	 * threads: a fixed mmap threshold keeps glibc's moving threshold from serving larger
	 * buffers from per-thread arenas that never shrink, and few arenas keep the rest
	 * compact. */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	mallopt(M_ARENA_MAX, 4);
	raise_nofile();
	fuse_set_log_func(log_fuse);

	status = parse_args(&fargs, &a, &cache_bytes);
	if (status != CONTINUE)
		goto out;
	status = resolve_paths(&a, &vault_path, &mnt);
	if (status != VMBAK_EXIT_OK)
		goto out;
	{
		unsigned maj, min;

		/* A second mount would hide the first one and keep serving under it unseen. */
		if (mount_dev(mnt, &maj, &min) == 0) {
			vbu_err("cannot mount on '%s': it is already a mount point",
				q(a.mountpoint));
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	se = new_session(&fargs, &fs, vault_path);
	if (se == NULL) {
		status = VMBAK_EXIT_USAGE;
		goto out;
	}
	status = open_vault(vault_path, &a, cache_bytes, &fs.vault);
	if (status != VMBAK_EXIT_OK)
		goto out;
	status = VMBAK_EXIT_FAIL;
	fs.uid = getuid();
	fs.gid = getgid();
	pthread_mutex_init(&fs.names_lock, NULL);
	clock_gettime(CLOCK_REALTIME, &fs.started);

	log_capture_begin();
	r = fuse_session_mount(se, mnt);
	msg = log_capture_end();
	if (r != 0) {
		vbu_err("cannot mount on '%s'%s%s", q(a.mountpoint), msg[0] != '\0' ? ": " : "",
			q(msg));
		goto out;
	}
	mounted = 1;
	raise_read_ahead(mnt);
	if (!a.foreground) {
		r = daemon_start(&report_fd);
		if (r < 0) {
			vbu_errno(r, "cannot start the daemon");
			goto out;
		}
	}
	if (chdir("/") != 0) {
		/* Paths are absolute; the daemon only must not keep a directory busy. */
	}
	r = vbs_vault_open_env(fs.vault);
	if (r < 0) {
		store_err(r, "cannot open vault '%s'", q(a.vault));
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		vbu_err("cannot set the signal handlers");
		goto out;
	}
	if (report_fd >= 0) {
		daemon_report(report_fd, VMBAK_EXIT_OK);
		report_fd = -1;
	}
	/* libfuse's own complaint about a failing session ("reading device: ...") is kept
	 * for the one line said below, not printed as a second one. */
	log_capture_begin();
	r = run_loop(se, &a);
	msg = log_capture_end();
	fuse_remove_signal_handlers(se);
	if (r < 0) {
		if (msg[0])
			vbu_err("the session on '%s' failed: %s (%s)", q(a.mountpoint),
				vbu_strerror(-r), q(msg));
		else
			vbu_errno(r, "the session on '%s' failed", q(a.mountpoint));
		goto out;
	}
	status = VMBAK_EXIT_OK;
out:
	if (mounted)
		fuse_session_unmount(se);
	if (report_fd >= 0)
		daemon_report(report_fd, status);
	if (se != NULL)
		fuse_session_destroy(se);
	vbs_vault_close(fs.vault);
	fuse_opt_free_args(&fargs);
	free(a.passphrase_file);
	free(a.cache_size);
	free(a.vault);
	free(a.mountpoint);
	free(vault_path);
	free(mnt);
	return status;
}
