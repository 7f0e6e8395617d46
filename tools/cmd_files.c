/* cmd_files.c: vmbak files, a guest file system mounted read-only straight from the vault.
 *
 * The layers, from the bottom: the disk image in the vault; a view process (files_view.h) that
 * shows one file, the partition of --partition or the whole disk, decrypted with the LUKS volume
 * key when the disk is LUKS; for BitLocker, dislocker's FUSE file system on that view; and the
 * guest file system, mounted read-only from the top file (a loop mount, or ntfs-3g for NTFS).
 * No device-mapper anywhere.
 *
 * Secrets: the escrowed secret is unwrapped into memory. For LUKS, libcryptsetup gives the
 * volume key from a copy of the header area kept in a memfd (never a file on disk), the
 * passphrase given as bytes; the key reaches the view process by fork and lives in its memory.
 * For BitLocker, dislocker gets the user password on its stdin (a pipe), the recovery password
 * on its controlling terminal (a pty: it reads that one from /dev/tty only), the .BEK as
 * /dev/fd/3 of a memfd. Nothing is on argv, nothing in a file of the file system.
 *
 * What -u needs to undo is kept in RUN_DIR/<first 32 hex of SHA-256(MOUNTPOINT)>/ (mode 0700):
 * "state" (the mount point, the view's pid, whether dislocker is there) and the mount points
 * "view" and "bitlocker" of the layers below.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common.h"
#include "audit.h"
#include "crypto.h"
#include "cryptsetup_dl.h"
#include "escrow.h"
#include "escrow_tools.h"
#include "file.h"
#include "files_view.h"
#include "hdrcheck.h"
#include "image.h"
#include "kv.h"
#include "rp.h"
#include "run.h"
#include "util.h"
#include "vault.h"

#define FILES_USAGE                                                                                \
	"vmbak files VAULT VM/RP DISK MOUNTPOINT [--keyvault KV] [--partition N] [--raw]\n"        \
	"       vmbak files -u MOUNTPOINT"

static const char files_help[] =
    "usage: " FILES_USAGE "\n"
    "\n"
    "Mounts the file system of disk DISK of point VM/RP (VM/latest: the newest) read-only at\n"
    "MOUNTPOINT, straight from the vault: nothing is copied, and no device-mapper is used.\n"
    "Returns once it is mounted; -u MOUNTPOINT undoes every layer it set up.\n"
    "\n"
    "A LUKS1 or LUKS2 disk (AES-XTS, plain64) is opened with its escrowed key: --keyvault\n"
    "unwraps it in memory, libcryptsetup gives the volume key, and vmbak decrypts the sectors\n"
    "itself. A BitLocker disk is opened by dislocker with its escrowed user password,\n"
    "recovery password or startup key (.BEK). The secret never reaches a file or a command\n"
    "line. NTFS is mounted with ntfs-3g, other file systems with a read-only loop mount (ext4\n"
    "that needs its journal replayed: without replaying it, -o noload).\n"
    "\n"
    "options:\n"
    "  --keyvault KV           unwrap the disk's escrowed key with key vault KV\n"
    "  --keyvault-passphrase-file F\n"
    "                          the key vault passphrase (else from\n"
    "                          VMBAK_KEYVAULT_PASSPHRASE_FILE, VMBAK_KEYVAULT_PASSPHRASE or\n"
    "                          the terminal)\n"
    "  --partition N           the file system (or LUKS or BitLocker volume) is partition N\n"
    "                          of the disk (MBR 1-4, or GPT)\n"
    "  --raw                   mount no file system: MOUNTPOINT shows the decrypted volume as\n"
    "                          one read-only file (disk; dislocker-file for BitLocker), for\n"
    "                          tools of your own (LVM inside LUKS, say)\n"
    "  -u, --unmount           unmount MOUNTPOINT and undo the layers below it\n"
    "  --passphrase-file F     read the vault passphrase from the first line of F\n"
    "  -h, --help              show this help\n"
    "\n"
    "exit status: 0 mounted (or unmounted), 1 failed (one line on stderr says why; nothing is\n"
    "left mounted), 2 usage error.\n";

#ifndef FILES_RUN_DIR
#define FILES_RUN_DIR "/run/vmbak-files"
#endif
#define HDR_FIRST (16u << 20) /* LUKS header area copied first: LUKS2's default size */
#define GPT_ENTRIES_MAX 1024

enum {
	OPT_KEYVAULT = 0x100,
	OPT_KV_PASSFILE,
	OPT_PARTITION,
	OPT_RAW,
};

typedef struct fopts {
	const char *vault, *point, *disk, *mnt, *kv, *kv_passfile, *passphrase_file;
	unsigned partition; /* 0: none */
	int unmount, raw;
} fopts;

/* What a mount is made of, and what -u undoes. */
typedef struct layers {
	char mnt[PATH_MAX];  /* the mount point, absolute */
	char dir[PATH_MAX];  /* FILES_RUN_DIR/<hash> */
	char view[PATH_MAX]; /* dir/view */
	char bl[PATH_MAX];   /* dir/bitlocker */
	pid_t view_pid;
	int bitlocker;
	int top; /* the file system at mnt is ours to unmount (the state says so) */
} layers;

/* ---- arguments ---- */

static const struct option files_options[] = {
    {"keyvault", required_argument, NULL, OPT_KEYVAULT},
    {"keyvault-passphrase-file", required_argument, NULL, OPT_KV_PASSFILE},
    {"partition", required_argument, NULL, OPT_PARTITION},
    {"unmount", no_argument, NULL, 'u'},
    {"raw", no_argument, NULL, OPT_RAW},
    {NULL, 0, NULL, 0},
};

static int files_option(verb_ctx *c, int opt, const char *optval)
{
	fopts *o = c->opts;

	switch (opt) {
	case 'u':
		o->unmount = 1;
		break;
	case OPT_RAW:
		o->raw = 1;
		break;
	case OPT_KEYVAULT:
		if (!*optval)
			return usage_err("--keyvault needs a key vault path");
		o->kv = optval;
		break;
	case OPT_KV_PASSFILE:
		if (!*optval)
			return usage_err("empty argument for --keyvault-passphrase-file");
		o->kv_passfile = optval;
		break;
	case OPT_PARTITION: {
		unsigned long n;

		if (parse_count(optval, 1, GPT_ENTRIES_MAX, &n) < 0)
			return usage_err("invalid --partition '%s': give a number from 1 to %d",
					 q(optval), GPT_ENTRIES_MAX);
		o->partition = (unsigned)n;
		break;
	}
	default:
		return VMBAK_EXIT_USAGE;
	}
	return 0;
}

/* The arguments: the mount point alone with -u, else VAULT VM/RP DISK MOUNTPOINT (counted
 * here, as the two forms count differently). */
static int files_check(verb_ctx *c)
{
	static const char *const names[] = {"VAULT", "VM/RP", "DISK", "MOUNTPOINT"};
	static const char *const unames[] = {"MOUNTPOINT"};
	fopts *o = c->opts;
	char **args = c->args;
	int status;

	o->passphrase_file = c->passphrase_file;
	if (o->unmount) {
		status = check_nargs("vmbak files -u MOUNTPOINT", unames, 1, 1, c->nargs, args);
		if (status != 0)
			return status;
		if (o->kv || o->kv_passfile || o->partition || c->passphrase_opt || o->raw)
			return usage_err("-u takes only the mount point");
		o->mnt = args[0];
		return 0;
	}
	status =
	    check_nargs("vmbak files VAULT VM/RP DISK MOUNTPOINT", names, 4, 4, c->nargs, args);
	if (status != 0)
		return status;
	o->vault = args[0];
	o->point = args[1];
	o->disk = args[2];
	o->mnt = args[3];
	if ((status = check_vault_arg(o->vault)) != 0 ||
	    (status = check_name_arg("disk", o->disk)) != 0)
		return status;
	if (!*o->mnt)
		return usage_err("empty mount point");
	if (o->kv_passfile && !o->kv)
		return usage_err("--keyvault-passphrase-file needs --keyvault");
	return 0;
}

/* ---- layers and their state ---- */

/* The state directory of mount point mnt (absolute). */
static int layers_paths(layers *l, const char *mnt)
{
	uint8_t h[VBK_HASH_LEN];
	char hex[2 * VBK_HASH_LEN + 1];

	if (vbk_sha256(mnt, strlen(mnt), h) < 0)
		return -EIO;
	vbu_hex_encode(h, 16, hex);
	hex[32] = '\0';
	if ((size_t)snprintf(l->mnt, sizeof(l->mnt), "%s", mnt) >= sizeof(l->mnt) ||
	    (size_t)snprintf(l->dir, sizeof(l->dir), "%s/%s", FILES_RUN_DIR, hex) >=
		sizeof(l->dir) ||
	    (size_t)snprintf(l->view, sizeof(l->view), "%s/view", l->dir) >= sizeof(l->view) ||
	    (size_t)snprintf(l->bl, sizeof(l->bl), "%s/bitlocker", l->dir) >= sizeof(l->bl))
		return -ENAMETOOLONG;
	return 0;
}

static int layers_save(const layers *l)
{
	char buf[PATH_MAX + 64], path[PATH_MAX + 8];
	int n;

	n = snprintf(buf, sizeof(buf), "view %ld\nbitlocker %d\nmnt %s\n", (long)l->view_pid,
		     l->bitlocker, l->mnt);
	if (n < 0 || (size_t)n >= sizeof(buf) ||
	    (size_t)snprintf(path, sizeof(path), "%s/state", l->dir) >= sizeof(path))
		return -ENAMETOOLONG;
	return vbu_write_file_atomic(path, buf, (size_t)n, 0600);
}

/* Reads the state of l->dir, written by layers_save: "view PID\nbitlocker 0|1\nmnt PATH\n",
 * PATH l->mnt. Checked all the same. */
static int layers_load(layers *l)
{
	char path[PATH_MAX + 8], *buf = NULL, *end;
	const char *m;
	size_t len, ml = strlen(l->mnt);
	long pid;
	int r = -EBADMSG;

	if ((size_t)snprintf(path, sizeof(path), "%s/state", l->dir) >= sizeof(path))
		return -ENAMETOOLONG;
	r = vbu_read_file(path, PATH_MAX + 64, &buf, &len);
	if (r < 0)
		return r;
	r = -EBADMSG;
	if (strncmp(buf, "view ", 5) != 0)
		goto out;
	errno = 0;
	pid = strtol(buf + 5, &end, 10);
	if (errno || end == buf + 5 || pid < 0 || pid > INT32_MAX)
		goto out;
	if (strncmp(end, "\nbitlocker 0\nmnt ", 17) == 0)
		l->bitlocker = 0;
	else if (strncmp(end, "\nbitlocker 1\nmnt ", 17) == 0)
		l->bitlocker = 1;
	else
		goto out;
	m = end + 17;
	if (strlen(m) != ml + 1 || memcmp(m, l->mnt, ml) != 0 || m[ml] != '\n')
		goto out;
	l->view_pid = (pid_t)pid;
	r = 0;
out:
	free(buf);
	return r;
}

/* 1 when path is a mount point (its own line in /proc/self/mountinfo), 0 when not. */
static int is_mounted(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return 0;
	while (!found && getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], *s = mp, *d = mp;

		/* Field 5 is the mount point, with space, tab, newline and backslash as \ooo. */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		while (*s) {
			if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
			    s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
				*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
				s += 4;
			} else {
				*d++ = *s++;
			}
		}
		*d = '\0';
		found = strcmp(mp, path) == 0;
	}
	free(line);
	fclose(f);
	return found;
}

/* Unmounts path if it is mounted: 0, or -errno (-EBUSY in use). lazy: detach when a plain
 * unmount fails (a FUSE mount whose process died). */
static int unmount_one(const char *path, int lazy)
{
	if (!is_mounted(path))
		return 0;
	if (umount2(path, 0) == 0)
		return 0;
	if (errno == EBUSY && !lazy)
		return -EBUSY;
	if (!lazy)
		return -errno;
	return umount2(path, MNT_DETACH) == 0 ? 0 : -errno;
}

/* 1 when process pid runs (not a zombie) and is a vmbak: the view is a fork of vmbak. */
static int pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	int fd;
	ssize_t n;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* "PID (COMM) S ...": the state follows the last ')'. */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X' && strstr(buf, "(vmbak)") != NULL;
}

/* Undoes every layer of l from the top: the file system at l->mnt, dislocker, the view (and
 * waits for its process to end), then the state. Returns 0, or -errno with l->mnt busy (then
 * nothing was undone). */
static int layers_undo(layers *l)
{
	char path[PATH_MAX + 8];
	int r;

	r = l->top ? unmount_one(l->mnt, 0) : 0;
	if (r < 0)
		return r;
	unmount_one(l->bl, 1);
	unmount_one(l->view, 1);
	for (int i = 0; i < 200 && pid_alive(l->view_pid); i++) {
		struct timespec ts = {0, 25000000};

		/* Our own child when a mount failed half-way: reap it. */
		waitpid(l->view_pid, NULL, WNOHANG);
		nanosleep(&ts, NULL);
	}
	if (pid_alive(l->view_pid))
		kill(l->view_pid, SIGTERM);
	rmdir(l->bl);
	rmdir(l->view);
	if ((size_t)snprintf(path, sizeof(path), "%s/state", l->dir) < sizeof(path))
		unlink(path);
	rmdir(l->dir);
	return 0;
}

/* ---- helpers run by absolute path ---- */

/* Runs helper name with args; stdin from in_fd (or /dev/null when -1), fd 3 from fd3 (when not
 * -1), stdout and stderr captured: 0 when it exits 0, else VMBAK_EXIT_FAIL with its last line
 * of output (or how it ended) in msg. pty_slave: made the child's controlling terminal. */
static int run_helper(const char *name, char *const args[], int in_fd, int fd3, int pty_slave,
		      char *msg, size_t cap)
{
	char helper[PATH_MAX], buf[2048], *argv[16];
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	size_t n = 0;
	int r;

	msg[0] = '\0';
	if (vbk_helper_find(name, helper, sizeof(helper)) < 0) {
		snprintf(msg, cap, "%s is not installed", name);
		return VMBAK_EXIT_FAIL;
	}
	argv[n++] = helper;
	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	o.path = helper;
	o.argv = argv;
	o.envp = (char *const *)vbk_helper_env();
	o.in_fd = in_fd;
	o.fd3 = fd3;
	o.pty = pty_slave;
	o.capture = VBU_RUN_OUTPUT;
	o.out = buf;
	o.out_cap = sizeof(buf);
	o.keep_end = 1;
	o.timeout_s = VBK_HELPER_TIMEOUT;
	r = vbu_run(&o, &res);
	if (r == -ETIME) {
		snprintf(msg, cap, "%s did not finish within %d seconds", name, VBK_HELPER_TIMEOUT);
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		snprintf(msg, cap, "%s", vbu_strerror(-r));
		return VMBAK_EXIT_FAIL;
	}
	if (res.status == 0)
		return 0;
	{
		/* The first line that says it failed, else the last one (helpers print banners
		 * and help around the reason), without dislocker's date and level. */
		char *line = NULL, *fail = NULL, *save = NULL, *tok;

		for (tok = strtok_r(buf, "\r\n", &save); tok; tok = strtok_r(NULL, "\r\n", &save)) {
			if (strspn(tok, " \t") == strlen(tok))
				continue;
			line = tok;
			if (!fail && (strcasestr(tok, "fail") || strcasestr(tok, "error") ||
				      strcasestr(tok, "unable") || strcasestr(tok, "cannot")))
				fail = tok;
		}
		if (fail)
			line = fail;
		if (line && strstr(line, "] "))
			line = strstr(line, "] ") + 2;
		if (line)
			snprintf(msg, cap, "%s", line);
		else
			vbu_run_how(&res, msg, cap);
	}
	return VMBAK_EXIT_FAIL;
}

/* ---- partitions ---- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int read_at(vbs_image *img, void *buf, size_t len, uint64_t off)
{
	size_t got;
	int r = vbs_image_read(img, buf, len, off, &got);

	return r < 0 ? r : got == len ? 0 : -ENODATA;
}

/* Partition n (1-based) of the disk: MBR primary 1-4, or GPT (512-byte sectors). Prints the
 * error. */
static int find_partition(vbs_image *img, const char *disk, unsigned n, uint64_t *ret_off,
			  uint64_t *ret_len)
{
	uint64_t size = vbs_image_size(img), first, last;
	uint8_t mbr[512], gpt[512], ent[4096];
	int r;

	if (size >= 1024 &&
	    ((r = read_at(img, mbr, 512, 0)) < 0 || (r = read_at(img, gpt, 512, 512)) < 0)) {
		vbu_errno(r, "cannot read the partition table of disk '%s'", disk);
		return VMBAK_EXIT_FAIL;
	}
	if (size < 1024 || mbr[510] != 0x55 || mbr[511] != 0xaa) {
		vbu_err("disk '%s' has no partition table (no MBR)", disk);
		return VMBAK_EXIT_FAIL;
	}
	if (mbr[446 + 4] == 0xee) {
		uint64_t ents;
		uint32_t count, esize;

		if (memcmp(gpt, "EFI PART", 8) != 0) {
			vbu_err("disk '%s' has a protective MBR but no GPT header", disk);
			return VMBAK_EXIT_FAIL;
		}
		ents = le64(gpt + 72);
		count = le32(gpt + 80);
		esize = le32(gpt + 84);
		if (esize < 128 || esize > sizeof(ent) || esize % 8 || count > GPT_ENTRIES_MAX ||
		    ents > size / 512) {
			vbu_err("disk '%s' has a damaged GPT header", disk);
			return VMBAK_EXIT_FAIL;
		}
		if (n > count) {
			vbu_err("disk '%s' has no partition %u (its GPT has %u entries)", disk, n,
				count);
			return VMBAK_EXIT_FAIL;
		}
		if ((r = read_at(img, ent, esize, ents * 512 + (uint64_t)(n - 1) * esize)) < 0) {
			vbu_errno(r, "cannot read the GPT of disk '%s'", disk);
			return VMBAK_EXIT_FAIL;
		}
		first = le64(ent + 32);
		last = le64(ent + 40);
		if (memcmp(ent, (const uint8_t[16]){0}, 16) == 0) {
			vbu_err("disk '%s' has no partition %u", disk, n);
			return VMBAK_EXIT_FAIL;
		}
		if (first == 0 || last < first || last >= size / 512) {
			vbu_err("partition %u of disk '%s' lies outside the disk", n, disk);
			return VMBAK_EXIT_FAIL;
		}
		*ret_off = first * 512;
		*ret_len = (last - first + 1) * 512;
		return 0;
	}
	if (n > 4) {
		vbu_err("disk '%s' has an MBR: only its primary partitions 1 to 4 can be mounted",
			disk);
		return VMBAK_EXIT_FAIL;
	}
	{
		const uint8_t *e = mbr + 446 + 16 * (n - 1);

		first = le32(e + 8);
		last = le32(e + 12); /* the count of sectors */
		if (e[4] == 0 || last == 0) {
			vbu_err("disk '%s' has no partition %u", disk, n);
			return VMBAK_EXIT_FAIL;
		}
		if (e[4] == 0x05 || e[4] == 0x0f || e[4] == 0x85) {
			vbu_err("partition %u of disk '%s' is an extended partition", n, disk);
			return VMBAK_EXIT_FAIL;
		}
		if (first == 0 || first + last > size / 512) {
			vbu_err("partition %u of disk '%s' lies outside the disk", n, disk);
			return VMBAK_EXIT_FAIL;
		}
		*ret_off = first * 512;
		*ret_len = last * 512;
	}
	return 0;
}

/* ---- LUKS ---- */

static void cs_quiet(int level, const char *msg, void *usrptr)
{
}

/* From the LUKS header at base (len bytes of volume), with the secret: the volume key, sector
 * size and payload offset. The header area is copied into a memfd (a private file in memory),
 * libcryptsetup loads it from there. Prints the error. */
static int luks_key(vbs_image *img, const char *disk, uint64_t base, uint64_t len,
		    const uint8_t *secret, size_t secret_len, uint8_t *key, size_t *ret_key_len,
		    uint32_t *ret_sector, int *ret_large, uint64_t *ret_off, char *desc,
		    size_t desc_cap)
{
	struct crypt_device *cd = NULL;
	struct crypt_params_integrity integ = {0};
	uint64_t want = len < HDR_FIRST ? len : HDR_FIRST, copied = 0, off;
	uint8_t *buf = NULL;
	char path[64];
	const char *cipher, *mode, *type;
	size_t klen = 0;
	uint32_t flags = 0;
	int fd = -1, r, status = VMBAK_EXIT_FAIL, sector;

	fd = memfd_create("vmbak-luks-header", MFD_CLOEXEC);
	buf = malloc(1u << 20);
	if (fd < 0 || !buf) {
		vbu_errno(fd < 0 ? -errno : -ENOMEM, "cannot read the LUKS header of disk '%s'",
			  disk);
		goto out;
	}
	if (dlopen_cryptsetup() < 0) {
		vbu_err("%s", vbu_errmsg());
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	sym_crypt_set_log_callback(NULL, cs_quiet, NULL);
	for (int pass = 0; pass < 2; pass++) {
		while (copied < want) {
			size_t n =
			    want - copied < (1u << 20) ? (size_t)(want - copied) : (1u << 20);

			r = read_at(img, buf, n, base + copied);
			if (r < 0 || vbu_write_all(fd, buf, n) < 0) {
				vbu_errno(r < 0 ? r : -errno,
					  "cannot read the LUKS header of disk '%s'", disk);
				goto out;
			}
			copied += n;
		}
		sym_crypt_free(cd);
		cd = NULL;
		r = sym_crypt_init(&cd, path);
		if (r >= 0) {
			sym_crypt_set_log_callback(cd, cs_quiet, NULL);
			r = sym_crypt_load(cd, CRYPT_LUKS, NULL);
		}
		if (r < 0) {
			vbu_err("cannot read the LUKS header of disk '%s': it is damaged or not "
				"one libcryptsetup knows",
				disk);
			goto out;
		}
		off = sym_crypt_get_data_offset(cd) * 512;
		if (off <= copied || pass == 1)
			break;
		if (off > VBK_HDR_AREA_MAX || off > len) {
			vbu_err("the LUKS payload of disk '%s' starts past its end", disk);
			goto out;
		}
		want = off; /* key slots beyond the first 16 MiB: copy up to the payload */
	}
	type = sym_crypt_get_type(cd);
	cipher = sym_crypt_get_cipher(cd);
	mode = sym_crypt_get_cipher_mode(cd);
	sector = sym_crypt_get_sector_size(cd);
	klen = (size_t)sym_crypt_get_volume_key_size(cd);
	if (sym_crypt_get_integrity_info(cd, &integ) == 0 &&
	    (integ.tag_size > 0 || integ.integrity)) {
		vbu_err("disk '%s' is LUKS with authenticated encryption (integrity), which vmbak "
			"files does not read",
			disk);
		goto out;
	}
	if (type && strcmp(type, CRYPT_LUKS2) == 0 &&
	    sym_crypt_reencrypt_status(cd, NULL) != CRYPT_REENCRYPT_NONE) {
		vbu_err("the LUKS2 volume of disk '%s' is in the middle of a reencryption", disk);
		goto out;
	}
	if (!cipher || !mode || strcmp(cipher, "aes") != 0 || strcmp(mode, "xts-plain64") != 0 ||
	    (klen != 32 && klen != 64)) {
		vbu_err("disk '%s' is encrypted with %s-%s (%zu-byte key): vmbak files decrypts "
			"only aes-xts-plain64",
			disk, cipher ? q(cipher) : "?", mode ? q(mode) : "?", klen);
		goto out;
	}
	if (sector < 512 || sector > 4096 || (sector & (sector - 1)) || off % 512 || off >= len ||
	    sym_crypt_get_iv_offset(cd) != 0) {
		vbu_err("the LUKS header of disk '%s' has a layout vmbak files does not read "
			"(sector size %d)",
			disk, sector);
		goto out;
	}
	r = sym_crypt_volume_key_get(cd, CRYPT_ANY_SLOT, (char *)key, &klen, (const char *)secret,
				     secret_len);
	if (r < 0) {
		if (r == -EPERM)
			vbu_err("the escrowed key of disk '%s' does not open its LUKS header",
				disk);
		else
			vbu_errno(r, "cannot get the volume key of disk '%s'", disk);
		goto out;
	}
	snprintf(desc, desc_cap, "%s, aes-xts-plain64, AES-%zu, %d-byte sectors",
		 type ? type : "LUKS", klen * 4, sector);
	*ret_key_len = klen;
	*ret_sector = (uint32_t)sector;
	*ret_large = sym_crypt_persistent_flags_get(cd, CRYPT_FLAGS_ACTIVATION, &flags) == 0 &&
		     (flags & CRYPT_ACTIVATE_IV_LARGE_SECTORS);
	*ret_off = off;
	status = 0;
out:
	if (cd) /* else libcryptsetup may not be loaded */
		sym_crypt_free(cd);
	if (fd >= 0)
		close(fd);
	free(buf);
	return status;
}

/* ---- the escrowed secret ---- */

/* Unwraps the escrow blob of disk d with the key vault of --keyvault, and records the unwrap
 * (or its failure) in the key vault's audit log: an unwrap that cannot be recorded does not go
 * on. Prints the error. */
static int unwrap(const fopts *o, const vbs_rp *rp, const vbs_disk *d, uint8_t **ret,
		  size_t *ret_len, vbk_kind *ret_kind)
{
	vbk_escrow_info info = {0};
	vbk_kv *kv = NULL;
	uint8_t *secret = NULL;
	size_t len = 0;
	int r, status;

	r = vbk_escrow_parse(d->escrow, d->escrow_len, &info);
	if (r < 0) {
		vbu_err("the escrowed key of disk '%s' of point %s/%s is not an escrow blob",
			d->name, rp->vm, rp->id);
		return VMBAK_EXIT_FAIL;
	}
	if ((status = escrow_kv_open(o->kv, 0, NULL, &kv)) != 0)
		return status;
	if (strcmp(info.keyvault, vbk_kv_id(kv)) != 0) {
		vbu_err("the escrowed key of disk '%s' belongs to key vault %s, not to '%s' (%s)",
			d->name, info.keyvault, q(o->kv), vbk_kv_id(kv));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if ((status = escrow_kv_unlock(kv, o->kv, o->kv_passfile)) != 0)
		goto out;
	memset(&info, 0, sizeof(info));
	if ((status = escrow_unwrap_disk(kv, "files", rp, d, &info, &secret, &len)) != 0)
		goto out;
	if (!info.kind[0] || vbk_kind_parse(info.kind, ret_kind) < 0)
		*ret_kind = VBK_KIND_NONE;
	*ret = secret;
	*ret_len = len;
	secret = NULL;
	status = 0;
out:
	if (secret)
		vbk_secret_free(secret, len);
	vbk_kv_close(kv);
	return status;
}

/* ---- BitLocker ---- */

/* dislocker -r -V VIEW/disk with the secret, its FUSE file system at l->bl. */
static int dislocker(layers *l, const char *disk, vbk_kind kind, const uint8_t *secret, size_t len)
{
	char vol[PATH_MAX + 16], msg[400];
	char *args[10];
	int n = 0, in[2] = {-1, -1}, mfd = -1, master = -1, slave = -1, status;
	const char *what = "user password";

	if ((size_t)snprintf(vol, sizeof(vol), "%s/%s", l->view, FILES_VIEW_NAME) >= sizeof(vol))
		return VMBAK_EXIT_FAIL;
	if (mkdir(l->bl, 0700) != 0 && errno != EEXIST) {
		vbu_errno(-errno, "cannot create '%s'", l->bl);
		return VMBAK_EXIT_FAIL;
	}
	args[n++] = "-r";
	args[n++] = "-V";
	args[n++] = vol;
	if (kind == VBK_KIND_BITLK_STARTUP_KEY) {
		/* The .BEK in memory, as the helper's fd 3. */
		what = "startup key";
		mfd = memfd_create("vmbak-bek", MFD_CLOEXEC);
		if (mfd < 0 || vbu_write_all(mfd, secret, len) < 0 ||
		    lseek(mfd, 0, SEEK_SET) != 0) {
			vbu_errno(-errno, "cannot hand the startup key to dislocker");
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		args[n++] = "-f";
		args[n++] = "/dev/fd/3";
	} else if (kind == VBK_KIND_BITLK_RECOVERY) {
		/* dislocker reads a recovery password from its terminal only: a pty, echo off. */
		struct termios t;

		what = "recovery password";
		if (openpty(&master, &slave, NULL, NULL, NULL) != 0 || tcgetattr(slave, &t) != 0) {
			vbu_errno(-errno, "cannot hand the recovery password to dislocker");
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		tcsetattr(slave, TCSANOW, &t);
		if (vbu_write_all(master, secret, len) < 0 || vbu_write_all(master, "\n", 1) < 0) {
			vbu_errno(-errno, "cannot hand the recovery password to dislocker");
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		args[n++] = "-p";
	} else {
		/* The user password on stdin: a pipe (a password is at most a few hundred bytes,
		 * far below the pipe's buffer). */
		if (memchr(secret, '\n', len) || len > 4000 || pipe2(in, O_CLOEXEC) != 0 ||
		    vbu_write_all(in[1], secret, len) < 0 || vbu_write_all(in[1], "\n", 1) < 0) {
			vbu_err("cannot hand the user password of disk '%s' to dislocker", disk);
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		close(in[1]);
		in[1] = -1;
		args[n++] = "-u";
	}
	args[n++] = "--";
	args[n++] = l->bl;
	args[n] = NULL;
	l->bitlocker = 1;
	layers_save(l);
	status = run_helper("dislocker", args, in[0], mfd, slave, msg, sizeof(msg));
	if (status == 0 && !is_mounted(l->bl)) {
		snprintf(msg, sizeof(msg), "it mounted nothing");
		status = VMBAK_EXIT_FAIL;
	}
	if (status != 0)
		vbu_err(
		    "dislocker cannot open the BitLocker volume of disk '%s' with its escrowed %s: "
		    "%s",
		    disk, what, q(msg));
out:
	if (in[0] >= 0)
		close(in[0]);
	if (in[1] >= 0)
		close(in[1]);
	if (mfd >= 0)
		close(mfd);
	if (slave >= 0)
		close(slave);
	if (master >= 0)
		close(master);
	return status;
}

/* ---- mounting ---- */

/* The guest file system of file src, read-only at l->mnt. */
static int mount_fs(const layers *l, const char *disk, const char *src)
{
	uint8_t sb[2048];
	char msg[400], opts[64] = "ro,loop";
	char *args[8];
	const char *helper = "mount", *how = "mount";
	int fd, n = 0;
	ssize_t got;

	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (got = pread(fd, sb, sizeof(sb), 0)) < 0) {
		vbu_errno(-errno, "cannot read the decrypted volume of disk '%s'", disk);
		if (fd >= 0)
			close(fd);
		return VMBAK_EXIT_FAIL;
	}
	close(fd);
	if (got == (ssize_t)sizeof(sb) && memcmp(sb + 3, "NTFS    ", 8) == 0) {
		/* ntfs-3g takes no "--"; both paths are absolute. */
		helper = how = "ntfs-3g";
		args[n++] = "-o";
		args[n++] = "ro";
		args[n++] = (char *)src;
		args[n++] = (char *)l->mnt;
		args[n] = NULL;
	} else {
		/* ext2/3/4 whose journal needs replaying: a read-only device cannot replay it. */
		if (got == (ssize_t)sizeof(sb) && sb[1024 + 56] == 0x53 && sb[1024 + 57] == 0xef &&
		    (le32(sb + 1024 + 0x60) & 0x4))
			snprintf(opts, sizeof(opts), "ro,loop,noload");
		args[n++] = "-o";
		args[n++] = opts;
		args[n++] = "--";
		args[n++] = (char *)src;
		args[n++] = (char *)l->mnt;
		args[n] = NULL;
	}
	if (run_helper(helper, args, -1, -1, -1, msg, sizeof(msg)) != 0) {
		vbu_err("cannot mount the file system of disk '%s': %s: %s", disk, how, q(msg));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

/* ---- the verb ---- */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* After a step of setting up: 1 (and the line) when a signal asked to stop. */
static int interrupted(void)
{
	if (!stop_signal)
		return 0;
	vbu_err("interrupted by signal %d; nothing is left mounted", (int)stop_signal);
	return 1;
}

static int check_mountpoint(const fopts *o, char *abs)
{
	struct stat st;

	if (!realpath(o->mnt, abs)) {
		vbu_errno(-errno, "cannot use mount point '%s'", q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	if (stat(abs, &st) != 0 || !S_ISDIR(st.st_mode)) {
		vbu_err("cannot use mount point '%s': not a directory", q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	if (is_mounted(abs)) {
		vbu_err("cannot use mount point '%s': something is mounted there", q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

static int files_unmount(const fopts *o)
{
	char abs[PATH_MAX];
	layers l = {0};
	int r, crashed;

	if (!realpath(o->mnt, abs) || layers_paths(&l, abs) < 0 || access(l.dir, F_OK) != 0) {
		vbu_err("nothing is mounted by vmbak files at '%s'", q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	r = layers_load(&l);
	if (r == -ENOENT) {
		/* Stopped before the view was recorded, so before anything was mounted at the
		 * mount point: undo what is under the state directory, leave the mount point. */
		layers_undo(&l);
		vbu_err("vmbak files had stopped while setting up '%s'; what it had set up is "
			"undone now",
			q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0) {
		vbu_errno(r, "cannot read the state of '%s' in %s", q(o->mnt), l.dir);
		return VMBAK_EXIT_FAIL;
	}
	l.top = 1;
	crashed = !pid_alive(l.view_pid);
	r = layers_undo(&l);
	if (r < 0) {
		vbu_errno(r, "cannot unmount '%s'", q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	if (crashed) {
		vbu_err("the view under '%s' had stopped (its process was gone, reads failed); "
			"every layer is undone now",
			q(o->mnt));
		return VMBAK_EXIT_FAIL;
	}
	return VMBAK_EXIT_OK;
}

static int cmd_files(verb_ctx *ctx)
{
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX], abs[PATH_MAX], vault_abs[PATH_MAX];
	char desc[160] = "not encrypted", src[PATH_MAX + 16];
	fopts o = *(fopts *)ctx->opts;
	layers l = {0};
	vbs_vault *v = NULL;
	vbs_rp *rp = NULL;
	vbs_image *img = NULL;
	const vbs_disk *d = NULL;
	uint8_t *secret = NULL, key[64], hdr[512];
	size_t secret_len = 0, key_len = 0;
	char *pass = NULL;
	vbk_kind kind = VBK_KIND_NONE;
	uint64_t base = 0, len, off = 0, serial = 0;
	uint32_t sector = 512;
	unsigned idx = 0;
	struct sigaction sa = {0}, old[3];
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	int r, status, made = 0, luks, bitlk, large = 0, handlers = 0;

	if (geteuid() != 0) {
		vbu_err("vmbak files needs root: it mounts file systems");
		return VMBAK_EXIT_FAIL;
	}
	if (o.unmount)
		return files_unmount(&o);
	status = check_point_arg(o.point, 1, "vmbak files VAULT VM/RP DISK MOUNTPOINT", vm, id);
	if (status != 0)
		return status;
	if ((status = check_mountpoint(&o, abs)) != 0)
		return status;
	if (layers_paths(&l, abs) < 0) {
		vbu_err("cannot use mount point '%s': its path is too long", q(o.mnt));
		return VMBAK_EXIT_FAIL;
	}
	if (access(l.dir, F_OK) == 0) {
		vbu_err("'%s' is still set up by vmbak files: undo it first with vmbak files -u",
			q(o.mnt));
		return VMBAK_EXIT_FAIL;
	}
	if (!realpath(o.vault, vault_abs)) {
		vbu_errno(-errno, "cannot open vault '%s'", q(o.vault));
		return VMBAK_EXIT_FAIL;
	}
	r = vbs_vault_open(vault_abs, 1, &v);
	if (r < 0) {
		status = store_err(r, "cannot open vault '%s'", q(o.vault));
		goto out;
	}
	if ((status = vault_unlock(v, o.vault, o.passphrase_file, &pass)) != 0)
		goto out;
	if ((r = vbs_vault_open_env(v)) < 0) {
		status = store_err(r, "cannot open vault '%s'", q(o.vault));
		goto out;
	}
	r = id[0] ? vbs_rp_get(v, vm, id, &rp) : vbs_rp_latest(v, vm, &rp);
	if (r == -ENOENT) {
		if (!id[0] || vbs_vm_get(v, vm, &serial) == -ENOENT)
			vbu_err("no VM '%s' in vault '%s'", vm, q(o.vault));
		else
			vbu_err("no point '%s' of VM '%s' in vault '%s'", id, vm, q(o.vault));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (r < 0) {
		status = store_err(r, "cannot read VM '%s' in vault '%s'", vm, q(o.vault));
		goto out;
	}
	for (size_t i = 0; i < rp->n_disks; i++)
		if (strcmp(rp->disks[i].name, o.disk) == 0) {
			d = &rp->disks[i];
			idx = (unsigned)i;
		}
	if (!d) {
		vbu_err("point %s/%s has no disk '%s'", rp->vm, rp->id, o.disk);
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	serial = rp->serial;
	if (o.kv && !d->escrow) {
		vbu_err("disk '%s' of point %s/%s has no escrowed key", d->name, rp->vm, rp->id);
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if ((r = vbs_image_open(v, serial, idx, &img)) < 0) {
		status =
		    store_err(r, "cannot open disk '%s' of point %s/%s", d->name, rp->vm, rp->id);
		goto out;
	}
	len = vbs_image_size(img);
	if (o.partition && (status = find_partition(img, d->name, o.partition, &base, &len)) != 0)
		goto out;
	if (len < sizeof(hdr)) {
		vbu_err("disk '%s' of point %s/%s is too small to hold a file system", d->name,
			rp->vm, rp->id);
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if ((r = read_at(img, hdr, sizeof(hdr), base)) < 0) {
		status =
		    store_err(r, "cannot read disk '%s' of point %s/%s", d->name, rp->vm, rp->id);
		goto out;
	}
	luks = memcmp(hdr, "LUKS\xba\xbe", 6) == 0;
	bitlk = memcmp(hdr + 3, "-FVE-FS-", 8) == 0 ||
		(memcmp(hdr + 3, "MSWIN4.1", 8) == 0 && d->escrow);
	if ((luks || bitlk) && !o.kv) {
		vbu_err(
		    "disk '%s' is %s encrypted: give --keyvault to open it with its escrowed key",
		    d->name, luks ? "LUKS" : "BitLocker");
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (o.kv && (status = unwrap(&o, rp, d, &secret, &secret_len, &kind)) != 0)
		goto out;
	if (o.kv && kind == VBK_KIND_NONE)
		kind = luks ? VBK_KIND_LUKS : vbk_kind_classify_bitlocker(secret, secret_len);
	if (o.kv && !luks && !bitlk && !vbk_kind_is_bitlocker(kind)) {
		vbu_err("disk '%s' has an escrowed key but no LUKS or BitLocker header%s", d->name,
			o.partition ? " in that partition" : ": give --partition");
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (o.kv && luks != (kind == VBK_KIND_LUKS)) {
		vbu_err("the escrowed key of disk '%s' is a %s, but the disk is %s", d->name,
			vbk_kind_name(kind), luks ? "LUKS" : "not LUKS");
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (luks) {
		status = luks_key(img, d->name, base, len, secret, secret_len, key, &key_len,
				  &sector, &large, &off, desc, sizeof(desc));
		if (status != 0)
			goto out;
		base += off;
		len -= off;
		len -= len % sector;
	} else if (o.kv) {
		snprintf(desc, sizeof(desc), "BitLocker, escrowed %s", vbk_kind_name(kind));
	}
	/* LMDB must not cross the fork: the view opens the vault again. */
	vbs_image_close(img);
	img = NULL;
	vbs_vault_close(v);
	v = NULL;
	if (mkdir(FILES_RUN_DIR, 0700) != 0 && errno != EEXIST) {
		vbu_errno(-errno, "cannot create '%s'", FILES_RUN_DIR);
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (mkdir(l.dir, 0700) != 0 || mkdir(l.view, 0700) != 0) {
		vbu_errno(-errno, "cannot create '%s'", l.dir);
		rmdir(l.dir);
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	made = 1;
	/* From here a signal stops the set-up between two steps, and everything is undone. */
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
	handlers = 1;
	{
		files_view_cfg c = {
		    .vault = vault_abs,
		    .pass = pass,
		    .serial = serial,
		    .disk_idx = idx,
		    .base = base,
		    .size = len,
		    .key = luks ? key : NULL,
		    .key_len = key_len,
		    .sector = sector,
		    .iv_large_sectors = large,
		    .dir = l.view,
		};
		char msg[400];

		if (files_view_start(&c, &l.view_pid, msg, sizeof(msg)) != 0) {
			vbu_err("cannot show disk '%s': %s", d->name, msg);
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	OPENSSL_cleanse(key, sizeof(key));
	if (interrupted()) {
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if ((r = layers_save(&l)) < 0) {
		vbu_errno(r, "cannot write the state of '%s' in %s", q(o.mnt), l.dir);
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	snprintf(src, sizeof(src), "%s/%s", l.view, FILES_VIEW_NAME);
	if (!luks && o.kv) {
		if ((status = dislocker(&l, d->name, kind, secret, secret_len)) != 0)
			goto out;
		snprintf(src, sizeof(src), "%s/dislocker-file", l.bl);
	}
	if (secret) {
		vbk_secret_free(secret, secret_len);
		secret = NULL;
	}
	if (interrupted()) {
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (o.raw) {
		/* The directory of the top file, bound read-only at the mount point. */
		*strrchr(src, '/') = '\0';
		if (mount(src, abs, NULL, MS_BIND, NULL) != 0 ||
		    mount(NULL, abs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) {
			r = -errno;
			if (is_mounted(abs))
				umount2(abs, MNT_DETACH);
			vbu_errno(r, "cannot show the volume of disk '%s' at '%s'", d->name,
				  q(o.mnt));
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc), "; the volume as %s",
			 luks || !o.kv ? FILES_VIEW_NAME : "dislocker-file");
	} else if ((status = mount_fs(&l, d->name, src)) != 0) {
		goto out;
	}
	made = 0;
	if (o.partition)
		printf("mounted partition %u of disk '%s' of %s/%s read-only at %s (%s)\n",
		       o.partition, d->name, rp->vm, rp->id, abs, desc);
	else
		printf("mounted disk '%s' of %s/%s read-only at %s (%s)\n", d->name, rp->vm, rp->id,
		       abs, desc);
	status = finish_stdout(VMBAK_EXIT_OK);
out:
	if (made)
		layers_undo(&l);
	if (handlers)
		for (int i = 0; i < 3; i++)
			sigaction(sigs[i], &old[i], NULL);
	OPENSSL_cleanse(key, sizeof(key));
	if (secret)
		vbk_secret_free(secret, secret_len);
	if (pass)
		vbk_passphrase_free(pass);
	vbs_image_close(img);
	vbs_rp_free(rp);
	vbs_vault_close(v);
	return status;
}

const vmbak_cmd cmd_files_def = {
    .name = "files",
    .summary = "mount a guest file system of a point read-only (LUKS, BitLocker too)",
    .help = files_help,
    .usage = "vmbak files VAULT VM/RP DISK MOUNTPOINT",
    .min_args = 0,
    .max_args = INT_MAX, /* counted by files_check: -u takes one */
    .flags = VERB_PASSPHRASE_FILE,
    .options = files_options,
    .shortopts = ":hu",
    .opts_size = sizeof(fopts),
    .option = files_option,
    .check = files_check,
    .run = cmd_files,
};
