/* cmd_restore.c: vmbak restore, the disks of a recovery point written back out.
 *
 * Two forms. With --to DIR, each disk becomes DIR/<disk>.img (raw, sparse: holes are not
 * written) or DIR/<disk>.qcow2 (--format qcow2, converted by qemu-img from the raw image), and
 * with --keyvault each escrowed disk's secret DIR/<disk>.key (0600). With --disk NAME=DEST, a
 * disk is written onto an existing block device or file of at least its size (a device is
 * opened O_EXCL, so a mounted or otherwise held one is refused).
 *
 * Every byte comes through vbs_image_read(), which authenticates each chunk: a damaged chunk
 * stops the restore with one line, and nothing that looks complete is left. Under DIR, a disk is
 * written to "<name>.part" and renamed at the end, after fsync; an interrupted restore leaves
 * only ".part" files, which the next run replaces. Everything that can be checked is checked
 * before the first byte is written: the point and its disks, the targets, the key vault's
 * passphrase and every escrow blob.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common.h"
#include "audit.h"
#include "escrow.h"
#include "escrow_tools.h"
#include "file.h"
#include "hdrcheck.h"
#include "image.h"
#include "kv.h"
#include "rp.h"
#include "run.h"
#include "util.h"
#include "vault.h"

#define RESTORE_USAGE                                                                              \
	"vmbak restore VAULT VM[/RP] --to DIR [--disk NAME ...] [--format raw|qcow2] "             \
	"[--keyvault KV] [--force]\n"                                                              \
	"       vmbak restore VAULT VM[/RP] --to DIR --instant [--mount MNT] [--disk NAME ...] "   \
	"[--keyvault KV] [--force]\n"                                                              \
	"       vmbak restore VAULT VM[/RP] --disk NAME=DEST ..."

static const char restore_help[] =
    "usage: " RESTORE_USAGE "\n"
    "\n"
    "Writes the disks of a recovery point (VM/RP; VM or VM/latest: its newest point) back\n"
    "out, every byte authenticated on the way.\n"
    "\n"
    "With --to DIR (created when missing), each disk becomes DIR/<disk>.img, a sparse raw\n"
    "image, or DIR/<disk>.qcow2 with --format qcow2. A disk is written under <name>.part and\n"
    "renamed when complete, so an interrupted restore leaves no file that looks complete and\n"
    "can simply be run again. Existing files are refused unless --force is given.\n"
    "\n"
    "With --instant nothing is copied: each DIR/<disk>.qcow2 is an overlay whose backing file\n"
    "is the disk's image in a vmbakfs mount of VAULT (its existing mount, or MNT of --mount,\n"
    "mounted there when it is not yet). The VM boots from the overlays at once; its writes\n"
    "go to them, never to the vault. The mount must stay until the data is moved off it\n"
    "(virsh blockpull, or QMP block-stream, while the VM runs).\n"
    "\n"
    "With --disk NAME=DEST, disk NAME is written onto DEST, an existing block device or file of\n"
    "at least the disk's size (a mounted or otherwise busy device is refused); bytes of DEST\n"
    "past the disk's size are left as they are.\n"
    "\n"
    "options:\n"
    "  --to DIR                restore into directory DIR\n"
    "  --disk NAME             with --to: only this disk (repeatable; default: all)\n"
    "  --disk NAME=DEST        restore disk NAME onto DEST (repeatable; not with --to)\n"
    "  --format raw|qcow2      with --to: the image format (default raw; qcow2 needs\n"
    "                          qemu-img)\n"
    "  --keyvault KV           with --to: unwrap each escrowed disk's secret from key vault\n"
    "                          KV into DIR/<disk>.key (mode 0600)\n"
    "  --keyvault-passphrase-file F\n"
    "                          the key vault passphrase (else from\n"
    "                          VMBAK_KEYVAULT_PASSPHRASE_FILE, VMBAK_KEYVAULT_PASSPHRASE or\n"
    "                          the terminal)\n"
    "  --force                 replace files of the same names in DIR\n"
    "  --instant               with --to: qcow2 overlays on the images of a vmbakfs mount\n"
    "  --mount MNT             with --instant: use (or make) the vmbakfs mount at MNT\n"
    "  --progress              show progress on stderr even when it is not a terminal\n"
    "  --passphrase-file F     read the vault passphrase from the first line of F\n"
    "  -h, --help              show this help\n"
    "\n"
    "exit status: 0 restored, 1 failed (one line on stderr says why; nothing that looks\n"
    "complete is left), 2 usage error.\n";

/* Bytes read from the vault and written per call. */
#define SLICE (4u << 20)

typedef struct target {
	const vbs_disk *disk;
	unsigned idx;	 /* the disk's number in the point */
	char *dest;	 /* final path */
	char *part;	 /* --to: the temporary path; NULL when writing onto DEST in place */
	char *raw_part;	 /* --format qcow2: the raw image qemu-img converts */
	char *key_path;	 /* DIR/<disk>.key, or NULL */
	uint8_t *secret; /* the unwrapped secret, or NULL */
	size_t secret_len;
	int device; /* DEST is a block device */
} target;

typedef struct ropts {
	const char *vault, *point, *dir, *kv, *kv_passfile, *passphrase_file;
	int qcow2, force, progress, instant;
	const char *mount;	    /* --mount MNT */
	char *mnt;		    /* --instant: the absolute path of the vmbakfs mount used */
	char *disks[VBS_DISKS_MAX]; /* --disk arguments */
	size_t n_disks;
	int with_dest, format_given;		      /* --disk NAME=DEST given, --format given */
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX]; /* VM[/RP] */
} ropts;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* ---- progress ---- */

typedef struct rprogress {
	int on, printed, last_len;
	int64_t start_ns, last_ns;
} rprogress;

static void progress_show(rprogress *p, const char *disk, uint64_t done, uint64_t total, int last)
{
	char line[160], hs[HUMAN_SIZE_LEN];
	int64_t now = vbu_mono_ns();
	double secs;
	int n;

	if (!p->on || (!last && now - p->last_ns < 250000000))
		return;
	p->last_ns = now;
	secs = (double)(now - p->start_ns) / 1e9;
	n = snprintf(line, sizeof(line), "restore %s: %5.1f%% of %s, %.1f MB/s", disk,
		     total ? 100.0 * (double)done / (double)total : 100.0, human_size(total, hs),
		     secs > 0 ? (double)done / secs / 1e6 : 0.0);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	fprintf(stderr, "\r%s%*s", line, p->last_len > n ? p->last_len - n : 0, "");
	if (last) {
		fputc('\n', stderr);
		n = 0;
	}
	fflush(stderr);
	p->last_len = n;
	p->printed = !last;
}

static void progress_clear(rprogress *p)
{
	if (p->printed) {
		fputc('\n', stderr);
		fflush(stderr);
		p->printed = 0;
		p->last_len = 0;
	}
}

/* ---- targets ---- */

static void targets_free(target *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(t[i].dest);
		free(t[i].part);
		free(t[i].raw_part);
		free(t[i].key_path);
		if (t[i].secret)
			vbk_secret_free(t[i].secret, t[i].secret_len);
	}
	free(t);
}

static char *path_join(const char *dir, const char *name, const char *suffix)
{
	char *s = NULL;

	if (asprintf(&s, "%s/%s%s", dir, name, suffix) < 0)
		return NULL;
	return s;
}

static int disk_index(const vbs_rp *rp, const char *name)
{
	for (size_t i = 0; i < rp->n_disks; i++)
		if (strcmp(rp->disks[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int no_such_disk(const vbs_rp *rp, const char *name)
{
	char list[512] = "";
	size_t used = 0;

	for (size_t i = 0; i < rp->n_disks && used + 2 < sizeof(list); i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
				 rp->disks[i].name);
		if (n < 0 || (size_t)n >= sizeof(list) - used)
			break;
		used += (size_t)n;
	}
	vbu_err("point %s/%s has no disk '%s' (its disks: %s)", rp->vm, rp->id, q(name), list);
	return VMBAK_EXIT_FAIL;
}

/* A file that --to would write: refused when it exists (unless --force, and then only a
 * regular file or a symbolic link, which the rename replaces). */
static int check_new_file(const char *path, int force)
{
	struct stat st;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		vbu_errno(-errno, "cannot restore to '%s'", q(path));
		return VMBAK_EXIT_FAIL;
	}
	if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
		vbu_err("cannot restore to '%s': it exists and is not a file", q(path));
		return VMBAK_EXIT_FAIL;
	}
	if (!force) {
		vbu_err("'%s' exists (use --force to replace it)", q(path));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

/* The targets of --to DIR: every disk, or those named. */
static int plan_dir(const ropts *o, const vbs_rp *rp, target **ret, size_t *ret_n)
{
	target *t = NULL;
	size_t n = 0;
	int status = VMBAK_EXIT_FAIL;
	unsigned char chosen[VBS_DISKS_MAX] = {0};

	for (size_t i = 0; i < o->n_disks; i++) {
		int k = disk_index(rp, o->disks[i]);

		if (k < 0)
			return no_such_disk(rp, o->disks[i]);
		chosen[k] = 1;
	}
	t = calloc(rp->n_disks ? rp->n_disks : 1, sizeof(*t));
	if (!t) {
		vbu_errno(-ENOMEM, "cannot restore");
		return VMBAK_EXIT_FAIL;
	}
	for (size_t i = 0; i < rp->n_disks; i++) {
		target *x;

		if (o->n_disks && !chosen[i])
			continue;
		x = &t[n++];
		x->disk = &rp->disks[i];
		x->idx = (unsigned)i;
		x->dest = path_join(o->dir, x->disk->name, o->qcow2 ? ".qcow2" : ".img");
		x->part = path_join(o->dir, x->disk->name, o->qcow2 ? ".qcow2.part" : ".img.part");
		if (o->qcow2 && !o->instant)
			x->raw_part = path_join(o->dir, x->disk->name, ".img.part");
		if (o->kv && x->disk->escrow)
			x->key_path = path_join(o->dir, x->disk->name, ".key");
		if (!x->dest || !x->part || (o->qcow2 && !o->instant && !x->raw_part) ||
		    (o->kv && x->disk->escrow && !x->key_path)) {
			vbu_errno(-ENOMEM, "cannot restore");
			goto out;
		}
		if ((status = check_new_file(x->dest, o->force)) != 0 ||
		    (x->key_path && (status = check_new_file(x->key_path, o->force)) != 0))
			goto out;
		status = VMBAK_EXIT_FAIL;
	}
	*ret = t;
	*ret_n = n;
	t = NULL;
	status = 0;
out:
	if (t)
		targets_free(t, n);
	return status;
}

/* The size of an existing DEST: a block device's or a regular file's. */
static int dest_size(const char *path, int fd, const struct stat *st, uint64_t *ret)
{
	if (S_ISBLK(st->st_mode)) {
		uint64_t sz;

		if (ioctl(fd, BLKGETSIZE64, &sz) != 0) {
			vbu_errno(-errno, "cannot read the size of '%s'", q(path));
			return VMBAK_EXIT_FAIL;
		}
		*ret = sz;
		return 0;
	}
	*ret = (uint64_t)st->st_size;
	return 0;
}

/* The targets of --disk NAME=DEST: each DEST exists, is a block device or regular file of at
 * least the disk's size, is not in use (devices: O_EXCL), and is not the vault's own file. */
static int plan_dest(const ropts *o, const vbs_rp *rp, target **ret, size_t *ret_n)
{
	target *t = calloc(o->n_disks, sizeof(*t));
	struct stat vst, st;
	char *data_path = NULL;
	int status = VMBAK_EXIT_FAIL, have_vst;
	size_t n = 0;

	if (!t || asprintf(&data_path, "%s/data.mdb", o->vault) < 0) {
		vbu_errno(-ENOMEM, "cannot restore");
		goto out;
	}
	have_vst = stat(data_path, &vst) == 0;
	for (size_t i = 0; i < o->n_disks; i++) {
		char *eq = strchr(o->disks[i], '=');
		const char *dest = eq + 1;
		uint64_t size;
		int k, fd;

		*eq = '\0';
		k = disk_index(rp, o->disks[i]);
		if (k < 0) {
			status = no_such_disk(rp, o->disks[i]);
			*eq = '=';
			goto out;
		}
		*eq = '=';
		for (size_t j = 0; j < n; j++) {
			if (t[j].idx == (unsigned)k) {
				status = usage_err("disk '%s' is given twice", rp->disks[k].name);
				goto out;
			}
		}
		if (stat(dest, &st) != 0) {
			vbu_errno(-errno, "cannot restore onto '%s'", q(dest));
			goto out;
		}
		if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
			vbu_err("cannot restore onto '%s': not a block device or regular file",
				q(dest));
			goto out;
		}
		if (have_vst && st.st_dev == vst.st_dev && st.st_ino == vst.st_ino) {
			vbu_err("cannot restore onto '%s': it is the vault's own file", q(dest));
			goto out;
		}
		/* O_EXCL on a block device: EBUSY when it is mounted or held open exclusively. */
		fd = open(dest, O_WRONLY | O_CLOEXEC | (S_ISBLK(st.st_mode) ? O_EXCL : 0));
		if (fd < 0) {
			if (errno == EBUSY)
				vbu_err(
				    "cannot restore onto '%s': it is in use (mounted, or held by "
				    "another program)",
				    q(dest));
			else
				vbu_errno(-errno, "cannot restore onto '%s'", q(dest));
			goto out;
		}
		status = dest_size(dest, fd, &st, &size);
		close(fd);
		if (status != 0)
			goto out;
		status = VMBAK_EXIT_FAIL;
		if (size < rp->disks[k].size) {
			char a[HUMAN_SIZE_LEN], b[HUMAN_SIZE_LEN];

			vbu_err("cannot restore disk '%s' onto '%s': it holds %s (%llu bytes), the "
				"disk needs %s (%llu bytes)",
				rp->disks[k].name, q(dest), human_size(size, a),
				(unsigned long long)size, human_size(rp->disks[k].size, b),
				(unsigned long long)rp->disks[k].size);
			goto out;
		}
		t[n].disk = &rp->disks[k];
		t[n].idx = (unsigned)k;
		t[n].device = S_ISBLK(st.st_mode);
		t[n].dest = strdup(dest);
		n++;
		if (!t[n - 1].dest) {
			vbu_errno(-ENOMEM, "cannot restore");
			goto out;
		}
	}
	*ret = t;
	*ret_n = n;
	t = NULL;
	status = 0;
out:
	if (t)
		targets_free(t, n);
	free(data_path);
	return status;
}

/* ---- keys ---- */

/* Unwraps every target's escrow blob with the key vault at path, before anything is written:
 * a wrong passphrase or a blob of another key vault stops the restore here. */
static int unwrap_all(const ropts *o, const vbs_rp *rp, target *t, size_t n)
{
	vbk_kv *kv = NULL;
	int r, status, any = 0;

	for (size_t i = 0; i < n; i++)
		any |= t[i].key_path != NULL;
	if (!any)
		return 0;
	if ((status = escrow_kv_open(o->kv, 0, NULL, &kv)) != 0)
		return status;
	for (size_t i = 0; i < n; i++) {
		vbk_escrow_info info;

		if (!t[i].key_path)
			continue;
		r = vbk_escrow_parse(t[i].disk->escrow, t[i].disk->escrow_len, &info);
		if (r < 0) {
			vbu_err(
			    "the escrowed key of disk '%s' of point %s/%s is not an escrow blob",
			    t[i].disk->name, rp->vm, rp->id);
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
		if (strcmp(info.keyvault, vbk_kv_id(kv)) != 0) {
			vbu_err(
			    "the escrowed key of disk '%s' belongs to key vault %s, not to '%s' "
			    "(%s)",
			    t[i].disk->name, info.keyvault, q(o->kv), vbk_kv_id(kv));
			status = VMBAK_EXIT_FAIL;
			goto out;
		}
	}
	if ((status = escrow_kv_unlock(kv, o->kv, o->kv_passfile)) != 0)
		goto out;
	/* Every unwrap is in the key vault's audit log; a restore it cannot record does not go
	 * on. */
	for (size_t i = 0; i < n; i++) {
		if (t[i].key_path &&
		    (status = escrow_unwrap_disk(kv, "restore", rp, t[i].disk, NULL, &t[i].secret,
						 &t[i].secret_len)) != 0)
			goto out;
	}
	status = 0;
out:
	vbk_kv_close(kv);
	return status;
}

/* ---- writing ---- */

/* Zeros len bytes at off of a DEST written in place (a hole of the image): a device gets
 * BLKZEROOUT where it can, a file a punched hole, and either plain zeros otherwise. */
static int zero_range(int fd, int device, uint64_t off, uint64_t len, const uint8_t *zeros)
{
	if (device && off % 512 == 0 && len % 512 == 0) {
		uint64_t range[2] = {off, len};

		if (ioctl(fd, BLKZEROOUT, range) == 0)
			return 0;
	} else if (!device && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
					(off_t)len) == 0) {
		return 0;
	}
	while (len > 0) {
		size_t k = len < SLICE ? (size_t)len : SLICE;
		ssize_t w = pwrite(fd, zeros, k, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t w = pwrite(fd, buf, len, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += w;
		len -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Copies the image into fd: data ranges read (authenticated) and written, holes skipped (a
 * new file) or zeroed (in place). Returns 0, -EINTR when a signal stopped it, or the error
 * with *ret_where saying which side failed ("read" or "write"). */
static int copy_image(vbs_image *img, int fd, int in_place, int device, const char *name,
		      rprogress *p, uint8_t *buf, const uint8_t *zeros, const char **ret_where)
{
	uint64_t size = vbs_image_size(img), off = 0, data, hole;
	int r;

	while (off < size) {
		if (stop_signal)
			return -EINTR;
		r = vbs_image_seek(img, off, SEEK_DATA, &data);
		if (r == -ENXIO)
			data = size;
		else if (r < 0) {
			*ret_where = "read";
			return r;
		}
		if (data > off && in_place) {
			r = zero_range(fd, device, off, data - off, zeros);
			if (r < 0) {
				*ret_where = "write";
				return r;
			}
		}
		if (data >= size)
			break;
		r = vbs_image_seek(img, data, SEEK_HOLE, &hole);
		if (r < 0) {
			*ret_where = "read";
			return r;
		}
		for (off = data; off < hole;) {
			size_t want = hole - off < SLICE ? (size_t)(hole - off) : SLICE, got = 0;

			if (stop_signal)
				return -EINTR;
			r = vbs_image_read(img, buf, want, off, &got);
			if (r == 0 && got == 0)
				r = -EIO;
			if (r < 0) {
				*ret_where = "read";
				return r;
			}
			r = pwrite_all(fd, buf, got, off);
			if (r < 0) {
				*ret_where = "write";
				return r;
			}
			off += got;
			progress_show(p, name, off, size, 0);
		}
	}
	progress_show(p, name, size, size, 1);
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		r = -errno;
	close(fd);
	return r;
}

/* qemu-img ARGS..., by absolute path with the helpers' environment; then path (the image it
 * wrote) is made 0600 and fsync'ed (qemu-img writes with cache=unsafe). what: for the
 * message. */
static int qemu_img(const char *what, const char *path, char **args, size_t n)
{
	char helper[PATH_MAX], msg[600], out[512];
	char *argv[12];
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	int fd, r;

	if (vbk_helper_find("qemu-img", helper, sizeof(helper)) < 0) {
		vbu_err("cannot %s: qemu-img is not installed (Debian package qemu-utils)", what);
		return VMBAK_EXIT_FAIL;
	}
	argv[0] = helper;
	for (size_t i = 0; i < n && i < 10; i++)
		argv[i + 1] = args[i];
	argv[n + 1] = NULL;
	o.path = helper;
	o.argv = argv;
	o.envp = (char *const *)vbk_helper_env();
	o.capture = VBU_RUN_STDERR;
	o.out = out;
	o.out_cap = sizeof(out);
	r = vbu_run(&o, &res);
	if (r < 0 || res.status != 0) {
		/* Its first line of stderr, else how it ended. */
		if (r < 0)
			snprintf(msg, sizeof(msg), "%s", vbu_strerror(-r));
		else if (*vbu_first_line(out))
			snprintf(msg, sizeof(msg), "%s", out);
		else
			vbu_run_how(&res, msg, sizeof(msg));
		vbu_err("cannot %s: qemu-img: %s", what, q(msg));
		return VMBAK_EXIT_FAIL;
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fchmod(fd, 0600) != 0 || fsync(fd) != 0) {
		vbu_errno(-errno, "cannot write '%s'", q(path));
		if (fd >= 0)
			close(fd);
		return VMBAK_EXIT_FAIL;
	}
	close(fd);
	return 0;
}

/* A path for qemu-img that cannot be taken for an option. */
static char *helper_path(const char *p)
{
	char *s = NULL;

	if (p[0] == '/' || asprintf(&s, "./%s", p) < 0)
		return p[0] == '/' ? strdup(p) : NULL;
	return s;
}

static int restore_one(const ropts *o, vbs_vault *v, const vbs_rp *rp, target *t, rprogress *p,
		       uint8_t *buf, const uint8_t *zeros)
{
	const char *file = t->part ? (t->raw_part ? t->raw_part : t->part) : t->dest;
	const char *where = "write";
	vbs_image *img = NULL;
	char *a = NULL, *b = NULL;
	int fd = -1, r, status = VMBAK_EXIT_FAIL, made = 0;

	r = vbs_image_open(v, rp->serial, t->idx, &img);
	if (r < 0) {
		status = store_err(r, "cannot read disk '%s' of point %s/%s", t->disk->name, rp->vm,
				   rp->id);
		goto out;
	}
	if (t->part) {
		fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			vbu_errno(-errno, "cannot create '%s'", q(file));
			goto out;
		}
		made = 1;
		if (ftruncate(fd, (off_t)vbs_image_size(img)) != 0) {
			vbu_errno(-errno, "cannot write '%s'", q(file));
			goto out;
		}
	} else {
		fd = open(file, O_WRONLY | O_CLOEXEC | (t->device ? O_EXCL : 0));
		if (fd < 0) {
			vbu_errno(-errno, "cannot restore onto '%s'", q(file));
			goto out;
		}
	}
	r = copy_image(img, fd, !t->part, t->device, t->disk->name, p, buf, zeros, &where);
	if (r == 0 && fsync(fd) != 0) {
		r = -errno;
		where = "write";
	}
	if (r < 0) {
		progress_clear(p);
		if (r == -EINTR)
			vbu_err("restore of disk '%s' interrupted by signal %d", t->disk->name,
				(int)stop_signal);
		else if (strcmp(where, "read") == 0 && r == -EBADMSG)
			vbu_err("cannot restore disk '%s' of point %s/%s: the vault is damaged (a "
				"chunk does not authenticate); run vmbak verify",
				t->disk->name, rp->vm, rp->id);
		else if (strcmp(where, "read") == 0)
			store_err(r, "cannot read disk '%s' of point %s/%s", t->disk->name, rp->vm,
				  rp->id);
		else
			vbu_errno(r, "cannot write '%s'", q(file));
		goto out;
	}
	close(fd);
	fd = -1;
	if (t->raw_part) {
		char *args[8] = {"convert", "-q", "-f", "raw", "-O", "qcow2"};

		if (!(a = helper_path(t->raw_part)) || !(b = helper_path(t->part))) {
			vbu_errno(-ENOMEM, "cannot restore");
			goto out;
		}
		args[6] = a;
		args[7] = b;
		if ((status = qemu_img("convert to qcow2", b, args, 8)) != 0) {
			unlink(t->part);
			goto out;
		}
		status = VMBAK_EXIT_FAIL;
		unlink(t->raw_part);
		made = 0;
	}
	if (t->part) {
		if (rename(t->part, t->dest) != 0) {
			vbu_errno(-errno, "cannot rename '%s' to '%s'", q(t->part), q(t->dest));
			goto out;
		}
		made = 0;
		r = fsync_dir(o->dir);
		if (r < 0) {
			vbu_errno(r, "cannot write directory '%s'", q(o->dir));
			goto out;
		}
	}
	status = 0;
out:
	if (fd >= 0)
		close(fd);
	if (made)
		unlink(file);
	vbs_image_close(img);
	free(a);
	free(b);
	return status;
}

/* ---- --instant: overlays on a mount ---- */

/* Undoes mountinfo's \ooo escapes in place. */
static void unescape_octal(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/* The vmbakfs mount of the vault at vault_abs (vmbakfs names its mounts after the vault's
 * absolute path): with want (an absolute path), whether that mount point is one (0), is a mount
 * of something else (-EXDEV) or is no mount point (-ENOENT); without, the first such mount in
 * *ret (malloc'ed) or -ENOENT. */
static int find_vault_mount(const char *vault_abs, const char *want, char **ret)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *fields[12], *save = NULL, *tok, *dash = strstr(line, " - ");
		char *fstype, *source;
		int n = 0;

		if (!dash)
			continue;
		*dash = '\0';
		for (tok = strtok_r(line, " ", &save); tok && n < 12;
		     tok = strtok_r(NULL, " ", &save))
			fields[n++] = tok;
		fstype = strtok_r(dash + 3, " ", &save);
		source = strtok_r(NULL, " \n", &save);
		if (n < 5 || !fstype || !source)
			continue;
		unescape_octal(fields[4]);
		unescape_octal(source);
		if (want) {
			/* The last line of a mount point is the mount on top, the one seen. */
			if (strcmp(fields[4], want) == 0)
				r = strcmp(fstype, "fuse.vmbakfs") == 0 &&
					    strcmp(source, vault_abs) == 0
					? 0
					: -EXDEV;
			continue;
		}
		if (strcmp(fstype, "fuse.vmbakfs") == 0 && strcmp(source, vault_abs) == 0) {
			r = (*ret = strdup(fields[4])) ? 0 : -ENOMEM;
			break;
		}
	}
	free(line);
	fclose(f);
	return r;
}

/* vmbakfs: beside this program when it is there, else in the helper directories. */
static int find_vmbakfs(char *out, size_t cap)
{
	char self[PATH_MAX];
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	if (k > 0) {
		self[k] = '\0';
		slash = strrchr(self, '/');
		if (slash &&
		    (size_t)snprintf(out, cap, "%.*s/vmbakfs", (int)(slash - self), self) < cap &&
		    access(out, X_OK) == 0)
			return 0;
	}
	return vbk_helper_find("vmbakfs", out, cap);
}

/* Starts vmbakfs VAULT MNT (it returns once the mount is up), with this process's environment
 * and terminal, so it takes the passphrase as vmbak did; it prints its own line on failure. */
static int start_mount(const ropts *o, const vmbak_globals *g, const char *mnt)
{
	extern char **environ;
	const char *pf = verb_passphrase_file(o->passphrase_file, g);
	char prog[PATH_MAX], *opt = NULL;
	char *argv[] = {prog, (char *)o->vault, (char *)mnt, NULL, NULL, NULL};
	vbu_run_opts ro = VBU_RUN_OPTS;
	vbu_run_result res;
	int r;

	if (find_vmbakfs(prog, sizeof(prog)) < 0) {
		vbu_err("cannot mount vault '%s': vmbakfs is not installed", q(o->vault));
		return VMBAK_EXIT_FAIL;
	}
	if (pf) {
		opt = front_fuse_opt("passphrase_file", pf);
		if (!opt) {
			vbu_errno(-ENOMEM, "cannot mount vault '%s'", q(o->vault));
			return VMBAK_EXIT_FAIL;
		}
		argv[3] = "-o";
		argv[4] = opt;
	}
	fflush(stdout);
	ro.path = prog;
	ro.argv = argv;
	ro.envp = environ;
	ro.in_fd = STDIN_FILENO;
	ro.capture = VBU_RUN_INHERIT;
	r = vbu_run(&ro, &res);
	free(opt);
	if (r < 0) {
		vbu_errno(r, "cannot run '%s'", q(prog));
		return VMBAK_EXIT_FAIL;
	}
	/* vmbakfs said why in its own line. */
	return res.status == 0 ? 0 : VMBAK_EXIT_FAIL;
}

/* The mount --instant uses: --mount MNT (mounted here when it is not yet), or the vault's
 * existing vmbakfs mount. Sets o->mnt. */
static int instant_mount(ropts *o, const vmbak_globals *g)
{
	char *vault_abs = realpath(o->vault, NULL), *want = NULL;
	int r, status = VMBAK_EXIT_FAIL;

	if (!vault_abs) {
		vbu_errno(-errno, "cannot open vault '%s'", q(o->vault));
		return VMBAK_EXIT_FAIL;
	}
	if (!o->mount) {
		r = find_vault_mount(vault_abs, NULL, &o->mnt);
		if (r == -ENOENT)
			vbu_err(
			    "--instant needs vault '%s' mounted: run vmbakfs '%s' MNT first, or "
			    "give --mount MNT",
			    q(o->vault), q(o->vault));
		else if (r < 0)
			vbu_errno(r, "cannot read the mount table");
		status = r < 0 ? VMBAK_EXIT_FAIL : 0;
		goto out;
	}
	want = realpath(o->mount, NULL);
	if (!want) {
		vbu_errno(-errno, "cannot use mount point '%s'", q(o->mount));
		goto out;
	}
	r = find_vault_mount(vault_abs, want, NULL);
	if (r == -EXDEV) {
		vbu_err("'%s' is a mount point of something else than vault '%s'", q(o->mount),
			q(o->vault));
		goto out;
	}
	if (r == -ENOENT) {
		if ((status = start_mount(o, g, want)) != 0)
			goto out;
		status = VMBAK_EXIT_FAIL;
		printf("mounted vault %s on %s; unmount it (fusermount3 -u %s) once the overlays "
		       "no longer need it\n",
		       o->vault, want, want);
		r = find_vault_mount(vault_abs, want, NULL);
	}
	if (r < 0) {
		vbu_errno(r, "cannot use mount point '%s'", q(o->mount));
		goto out;
	}
	o->mnt = want;
	want = NULL;
	status = 0;
out:
	free(vault_abs);
	free(want);
	return status;
}

/* One overlay: DIR/<disk>.qcow2 whose backing file is the disk's image in the mount. */
static int make_overlay(const ropts *o, const vbs_rp *rp, target *t, char **ret_backing)
{
	char *backing = NULL, *part = NULL, size[24];
	char *args[] = {"create", "-q", "-f", "qcow2", "-F", "raw", "-b", NULL, NULL, size};
	struct stat st;
	int status = VMBAK_EXIT_FAIL;

	if (asprintf(&backing, "%s/%s/%s/%s.img", o->mnt, rp->vm, rp->id, t->disk->name) < 0 ||
	    !(part = helper_path(t->part))) {
		vbu_errno(-ENOMEM, "cannot restore");
		goto out;
	}
	if (stat(backing, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != t->disk->size) {
		vbu_err("the mount at '%s' does not show disk '%s' of point %s/%s", q(o->mnt),
			t->disk->name, rp->vm, rp->id);
		goto out;
	}
	snprintf(size, sizeof(size), "%llu", (unsigned long long)t->disk->size);
	args[7] = backing;
	args[8] = part;
	unlink(t->part);
	if ((status = qemu_img("create an overlay", t->part, args, 10)) != 0) {
		unlink(t->part);
		goto out;
	}
	status = VMBAK_EXIT_FAIL;
	if (rename(t->part, t->dest) != 0) {
		vbu_errno(-errno, "cannot rename '%s' to '%s'", q(t->part), q(t->dest));
		unlink(t->part);
		goto out;
	}
	*ret_backing = backing;
	backing = NULL;
	status = 0;
out:
	free(backing);
	free(part);
	return status;
}

/* ---- the verb ---- */

enum {
	OPT_TO = 0x100,
	OPT_DISK,
	OPT_FORMAT,
	OPT_KEYVAULT,
	OPT_KV_PASSFILE,
	OPT_FORCE,
	OPT_INSTANT,
	OPT_MOUNT,
	OPT_PROGRESS,
};

static const struct option restore_options[] = {
    {"to", required_argument, NULL, OPT_TO},
    {"disk", required_argument, NULL, OPT_DISK},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"keyvault", required_argument, NULL, OPT_KEYVAULT},
    {"keyvault-passphrase-file", required_argument, NULL, OPT_KV_PASSFILE},
    {"force", no_argument, NULL, OPT_FORCE},
    {"instant", no_argument, NULL, OPT_INSTANT},
    {"mount", required_argument, NULL, OPT_MOUNT},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {NULL, 0, NULL, 0},
};

static int restore_option(verb_ctx *c, int opt, const char *arg)
{
	ropts *o = c->opts;
	char *optval = (char *)arg; /* argv's: a --disk NAME=DEST is split in place */
	int status;

	switch (opt) {
	case OPT_TO:
		if (!*optval)
			return usage_err("--to needs a directory");
		o->dir = optval;
		break;
	case OPT_DISK: {
		char *eq = strchr(optval, '=');

		if (o->n_disks >= VBS_DISKS_MAX)
			return usage_err("more than %d --disk options", VBS_DISKS_MAX);
		if (eq) {
			*eq = '\0';
			status = check_name_arg("disk", optval);
			*eq = '=';
			if (status != 0)
				return status;
			if (!eq[1])
				return usage_err("--disk %s needs a destination after '='",
						 q(optval));
			o->with_dest++;
		} else if ((status = check_name_arg("disk", optval)) != 0) {
			return status;
		}
		for (size_t i = 0; i < o->n_disks; i++) {
			size_t la = strcspn(o->disks[i], "="), lb = strcspn(optval, "=");

			if (la == lb && memcmp(o->disks[i], optval, la) == 0)
				return usage_err("disk '%.*s' is given twice", (int)lb, q(optval));
		}
		o->disks[o->n_disks++] = optval;
		break;
	}
	case OPT_FORMAT:
		if (strcmp(optval, "raw") == 0)
			o->qcow2 = 0;
		else if (strcmp(optval, "qcow2") == 0)
			o->qcow2 = 1;
		else
			return usage_err("invalid --format '%s': use raw or qcow2", q(optval));
		o->format_given = 1;
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
	case OPT_FORCE:
		o->force = 1;
		break;
	case OPT_INSTANT:
		o->instant = 1;
		break;
	case OPT_MOUNT:
		if (!*optval)
			return usage_err("--mount needs a mount point");
		o->mount = optval;
		break;
	case OPT_PROGRESS:
		o->progress = 1;
		break;
	default:
		return VMBAK_EXIT_USAGE;
	}
	return 0;
}

/* What the options and arguments say together, and the point VM[/RP]. */
static int restore_check(verb_ctx *c)
{
	ropts *o = c->opts;
	int with_dest = o->with_dest, format_given = o->format_given;

	o->vault = c->args[0];
	o->point = c->args[1];
	o->passphrase_file = c->passphrase_file;
	o->progress |= c->g->progress || isatty(STDERR_FILENO);
	if (with_dest && (size_t)with_dest != o->n_disks)
		return usage_err("give every --disk as NAME=DEST, or none (with --to)");
	if (with_dest) {
		if (o->dir)
			return usage_err("--disk NAME=DEST restores onto DEST: not with --to");
		if (format_given || o->kv || o->force || o->instant)
			return usage_err(
			    "--format, --keyvault, --force and --instant go with --to, "
			    "not with --disk NAME=DEST");
	} else if (!o->dir) {
		return usage_err("where to? give --to DIR, or --disk NAME=DEST");
	}
	if (o->kv_passfile && !o->kv)
		return usage_err("--keyvault-passphrase-file needs --keyvault");
	if (o->mount && !o->instant)
		return usage_err("--mount goes with --instant");
	if (o->instant) {
		if (format_given && !o->qcow2)
			return usage_err("--instant writes qcow2 overlays: not with --format raw");
		o->qcow2 = 1;
	}
	return check_point_arg(o->point, 0, NULL, o->vm, o->id);
}

/* --to DIR: created (mode 0700) when missing; must be a directory. */
static int make_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		vbu_errno(-errno, "cannot create directory '%s'", q(dir));
		return VMBAK_EXIT_FAIL;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		vbu_err("cannot restore into '%s': not a directory", q(dir));
		return VMBAK_EXIT_FAIL;
	}
	return 0;
}

static int cmd_restore(verb_ctx *c)
{
	ropts *po = c->opts, o = *po;
	const char *vm = o.vm, *id = o.id;
	vmbak_globals *g = c->g;
	vbs_vault *v = c->v;
	vbs_rp *rp = NULL;
	target *t = NULL;
	size_t n = 0;
	uint8_t *buf = NULL, *zeros = NULL;
	rprogress prog = {0};
	struct sigaction sa = {0}, old[3];
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	int r, status, handlers = 0;

	r = id[0] ? vbs_rp_get(v, vm, id, &rp) : vbs_rp_latest(v, vm, &rp);
	if (r == -ENOENT) {
		uint64_t serial;

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
	if (o.dir) {
		if ((status = make_dir(o.dir)) != 0 || (status = plan_dir(&o, rp, &t, &n)) != 0)
			goto out;
	} else if ((status = plan_dest(&o, rp, &t, &n)) != 0) {
		goto out;
	}
	if (o.kv && (status = unwrap_all(&o, rp, t, n)) != 0)
		goto out;
	if (o.instant && (status = instant_mount(&o, g)) != 0)
		goto out;
	buf = malloc(SLICE);
	zeros = calloc(1, SLICE);
	if (!buf || !zeros) {
		status = store_err(-ENOMEM, "cannot restore");
		goto out;
	}
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
	handlers = 1;
	prog.on = o.progress;
	for (size_t i = 0; i < n; i++) {
		char hs[HUMAN_SIZE_LEN], *backing = NULL;

		prog.start_ns = vbu_mono_ns();
		if (o.instant)
			status = make_overlay(&o, rp, &t[i], &backing);
		else
			status = restore_one(&o, v, rp, &t[i], &prog, buf, zeros);
		if (status != 0)
			goto out;
		if (t[i].key_path) {
			r = vbu_write_file_atomic(t[i].key_path, t[i].secret, t[i].secret_len,
						  0600);
			if (r < 0) {
				vbu_errno(r, "cannot write '%s'", q(t[i].key_path));
				status = VMBAK_EXIT_FAIL;
				goto out;
			}
		}
		if (backing)
			printf("%s: %s -> %s, an overlay on %s%s%s\n", t[i].disk->name,
			       human_size(t[i].disk->size, hs), t[i].dest, backing,
			       t[i].key_path ? ", key " : "", t[i].key_path ? t[i].key_path : "");
		else
			printf("%s: %s -> %s%s%s\n", t[i].disk->name,
			       human_size(t[i].disk->size, hs), t[i].dest,
			       t[i].key_path ? ", key " : "", t[i].key_path ? t[i].key_path : "");
		free(backing);
		if (o.kv && !t[i].key_path)
			printf("%s: no escrowed key\n", t[i].disk->name);
	}
	printf("restored %zu disk%s of %s/%s%s%s\n", n, n == 1 ? "" : "s", rp->vm, rp->id,
	       o.instant ? " as overlays on the vmbakfs mount at " : "", o.instant ? o.mnt : "");
	status = finish_stdout(VMBAK_EXIT_OK);
out:
	if (handlers)
		for (int i = 0; i < 3; i++)
			sigaction(sigs[i], &old[i], NULL);
	if (t)
		targets_free(t, n);
	free(buf);
	free(zeros);
	vbs_rp_free(rp);
	free(o.mnt);
	return status;
}

static const char *const restore_arg_names[] = {"VAULT", "VM[/RP]"};

const vmbak_cmd cmd_restore_def = {
    .name = "restore",
    .summary = "write the disks of a recovery point back out",
    .help = restore_help,
    .usage = "vmbak restore VAULT VM[/RP] --to DIR | --disk NAME=DEST ...",
    .arg_names = restore_arg_names,
    .min_args = 2,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT | VERB_PASSPHRASE_FILE,
    .options = restore_options,
    .opts_size = sizeof(ropts),
    .option = restore_option,
    .check = restore_check,
    .run = cmd_restore,
};
