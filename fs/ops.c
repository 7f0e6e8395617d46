/* ops.c: the low-level FUSE operations of vmbakfs (see ops.h).
 *
 * Each operation does its work through helpers that return 0 or -errno, then sends exactly one
 * reply. Nodes are found from their inode numbers (ino.h); nothing is remembered between
 * requests except the open handles (a directory listing or an open image).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "image.h"
#include "ino.h"
#include "ops.h"
#include "rp.h"
#include "util.h"

#define LATEST_NAME "latest"
#define MANIFEST_NAME "manifest.json"
#define IMAGE_SUFFIX ".img"
#define KEY_SUFFIX ".key"
#define SUFFIX_LEN 4
/* The longest name in the tree: a disk name and its suffix. */
#define ENTRY_NAME_MAX (VBS_NAME_MAX + SUFFIX_LEN)

#define DIR_MODE (S_IFDIR | 0555)
#define FILE_MODE (S_IFREG | 0444)
#define KEY_MODE (S_IFREG | 0400)
#define LINK_MODE (S_IFLNK | 0777)
#define BLOCK_SIZE 4096

/* An open directory: its listing, made at opendir so that readdir at any offset sees the same
 * entries. Offsets given to the kernel are entry indexes plus one. */
typedef struct vbf_dirent {
	uint64_t ino;
	mode_t type;
	char name[ENTRY_NAME_MAX + 1];
} vbf_dirent;

typedef struct vbf_dir {
	size_t n, cap;
	vbf_dirent ents[];
} vbf_dir;

/* An open file: an image, or content served from memory (manifest.json, a key blob). */
typedef struct vbf_file {
	vbs_image *img;
	char *data;
	size_t len;
} vbf_file;

static vbf_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Logs a store failure the user should hear about (a missing name is not one), while
 * vbs_errmsg() still describes it. Returns err. */
static int store_fail(int err, const char *what)
{
	const char *msg = vbs_errmsg();

	if (err == -ENOENT)
		return err;
	if (msg[0] != '\0')
		vbu_err("%s: %s", what, msg);
	else
		vbu_errno(err, "%s", what);
	return err;
}

/* The errno to give the kernel. Damage (EBADMSG, EPROTO) and failures that mean nothing to a
 * reader become EIO, never wrong data. */
static int kernel_errno(int err)
{
	switch (-err) {
	case ENOENT:
	case ENOMEM:
	case ENXIO:
	case EOVERFLOW:
	case EROFS:
	case EISDIR:
	case ENOTDIR:
	case EINVAL:
	case ESTALE:
	case EMFILE:
	case ENFILE:
	case EAGAIN:
	case EINTR:
		return -err;
	default:
		return EIO;
	}
}

static void reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, kernel_errno(err));
}

static struct timespec ts_from_ns(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};

	if (ts.tv_nsec < 0) {
		ts.tv_nsec += 1000000000;
		ts.tv_sec--;
	}
	return ts;
}

static void fill_entry(const vbf_fs *fs, struct fuse_entry_param *e, uint64_t ino, mode_t mode,
		       nlink_t nlink, struct timespec t, double ttl)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr.st_ino = ino;
	e->attr.st_mode = mode;
	e->attr.st_nlink = nlink;
	e->attr.st_uid = fs->uid;
	e->attr.st_gid = fs->gid;
	e->attr.st_blksize = BLOCK_SIZE;
	e->attr.st_atim = t;
	e->attr.st_mtim = t;
	e->attr.st_ctim = t;
	e->attr_timeout = ttl;
	e->entry_timeout = ttl;
}

static void set_size(struct stat *st, uint64_t size, uint64_t data_bytes)
{
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)(data_bytes / 512 + (data_bytes % 512 != 0));
}

/* Directories other than those of points have nlink 1: "count unknown" to find(1) and fts,
 * which saves listing the vault for every stat. */
static void entry_root(const vbf_fs *fs, struct fuse_entry_param *e)
{
	fill_entry(fs, e, VBF_INO_ROOT, DIR_MODE, 1, fs->started, VBF_TTL_SHORT);
}

static int entry_vm(const vbf_fs *fs, uint64_t vm, struct fuse_entry_param *e)
{
	uint64_t ino;
	int r = vbf_ino_make(VBF_VM, vm, 0, &ino);

	if (r < 0)
		return r;
	fill_entry(fs, e, ino, DIR_MODE, 1, fs->started, VBF_TTL_SHORT);
	return 0;
}

static int entry_latest(vbf_fs *fs, uint64_t vm, const char *vm_name, struct fuse_entry_param *e)
{
	vbs_rp *rp = NULL;
	uint64_t ino;
	int r;

	r = vbf_ino_make(VBF_LATEST, vm, 0, &ino);
	if (r < 0)
		goto out;
	r = vbs_rp_latest(fs->vault, vm_name, &rp);
	if (r < 0) {
		store_fail(r, "cannot find the latest point");
		goto out;
	}
	fill_entry(fs, e, ino, LINK_MODE, 1, ts_from_ns(rp->created_ns), VBF_TTL_SHORT);
	set_size(&e->attr, strlen(rp->id), 0);
out:
	vbs_rp_free(rp);
	return r;
}

static int entry_image(vbf_fs *fs, const vbs_rp *rp, unsigned idx, struct fuse_entry_param *e)
{
	vbs_image *img = NULL;
	uint64_t size;
	int r;

	r = vbs_image_open(fs->vault, rp->serial, idx, &img);
	if (r < 0) {
		store_fail(r, "cannot open an image");
		goto out;
	}
	size = vbs_image_size(img);
	if (size > INT64_MAX) {
		r = -EOVERFLOW;
		goto out;
	}
	set_size(&e->attr, size, vbs_image_data_bytes(img));
	/* cp and friends size their buffers from st_blksize: one chunk per read. */
	if (rp->chunk_size >= BLOCK_SIZE && rp->chunk_size <= VBS_CHUNK_SIZE_MAX)
		e->attr.st_blksize = rp->chunk_size;
out:
	vbs_image_close(img);
	return r;
}

/* A node inside a point, or the point's directory itself. */
static int entry_in_rp(vbf_fs *fs, const vbs_rp *rp, enum vbf_kind kind, unsigned sub,
		       struct fuse_entry_param *e)
{
	struct timespec t = ts_from_ns(rp->created_ns);
	char *text = NULL;
	size_t len;
	uint64_t ino;
	int r;

	r = vbf_ino_make(kind, rp->serial, sub, &ino);
	if (r < 0)
		goto out;
	switch (kind) {
	case VBF_RP:
		fill_entry(fs, e, ino, DIR_MODE, 2, t, VBF_TTL_LONG);
		break;
	case VBF_MANIFEST:
		r = vbs_rp_manifest(rp, &text, &len);
		if (r < 0) {
			store_fail(r, "cannot make a manifest");
			goto out;
		}
		fill_entry(fs, e, ino, FILE_MODE, 1, t, VBF_TTL_LONG);
		set_size(&e->attr, len, len);
		break;
	case VBF_IMAGE:
		if (sub >= rp->n_disks) {
			r = -ENOENT;
			goto out;
		}
		fill_entry(fs, e, ino, FILE_MODE, 1, t, VBF_TTL_LONG);
		r = entry_image(fs, rp, sub, e);
		break;
	case VBF_FILE:
		if (sub >= VBS_RP_FILES || rp->files[sub].data == NULL) {
			r = -ENOENT;
			goto out;
		}
		fill_entry(fs, e, ino, FILE_MODE, 1, t, VBF_TTL_LONG);
		set_size(&e->attr, rp->files[sub].len, rp->files[sub].len);
		break;
	case VBF_KEY:
		if (sub >= rp->n_disks || rp->disks[sub].escrow == NULL) {
			r = -ENOENT;
			goto out;
		}
		/* The one thing in a point that may change: `vmbak rewrap` replaces escrow blobs
		 * (store/rewrap.h). No caching of its size or content. */
		fill_entry(fs, e, ino, KEY_MODE, 1, t, 0);
		set_size(&e->attr, rp->disks[sub].escrow_len, rp->disks[sub].escrow_len);
		break;
	default:
		r = -ENOENT;
		break;
	}
out:
	free(text);
	return r;
}

static void vm_name_remember(vbf_fs *fs, uint64_t vm, const char *name)
{
	struct vbf_vm_name *e = &fs->names[vm % VBF_VM_NAMES];

	pthread_mutex_lock(&fs->names_lock);
	e->vm = vm;
	snprintf(e->name, sizeof(e->name), "%s", name);
	pthread_mutex_unlock(&fs->names_lock);
}

/* The name of VM number vm, which must still have a point: from the names remembered (then one
 * look-up says the name still leads to vm), else from a scan of every VM record. */
static int vm_name_of(vbf_fs *fs, uint64_t vm, char name[VBS_NAME_MAX + 1])
{
	const struct vbf_vm_name *e = &fs->names[vm % VBF_VM_NAMES];
	uint64_t now;
	int hit, r;

	pthread_mutex_lock(&fs->names_lock);
	hit = vm != 0 && e->vm == vm;
	if (hit)
		memcpy(name, e->name, VBS_NAME_MAX + 1);
	pthread_mutex_unlock(&fs->names_lock);
	if (hit) {
		r = vbs_vm_get(fs->vault, name, &now);
		if (r == 0 && now == vm)
			return 0;
		if (r < 0 && r != -ENOENT)
			return store_fail(r, "cannot find a VM");
		/* Gone, or its name now leads to another VM: ask the records. */
	}
	r = vbs_vm_name(fs->vault, vm, name);
	if (r < 0)
		return store_fail(r, "cannot find a VM");
	name[VBS_NAME_MAX] = '\0';
	vm_name_remember(fs, vm, name);
	return 0;
}

static int rp_of(vbf_fs *fs, uint64_t serial, vbs_rp **ret)
{
	int r = vbs_rp_get_serial(fs->vault, serial, ret);

	return r < 0 ? store_fail(r, "cannot read a recovery point") : 0;
}

/* The node with number ino, as getattr shows it. */
static int entry_of(vbf_fs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	char vm_name[VBS_NAME_MAX + 1];
	vbs_rp *rp = NULL;
	vbf_node n;
	int r;

	r = vbf_ino_parse(ino, &n);
	if (r < 0)
		goto out;
	switch (n.kind) {
	case VBF_ROOT:
		entry_root(fs, e);
		break;
	case VBF_VM:
		r = vm_name_of(fs, n.id, vm_name);
		if (r >= 0)
			r = entry_vm(fs, n.id, e);
		break;
	case VBF_LATEST:
		r = vm_name_of(fs, n.id, vm_name);
		if (r >= 0)
			r = entry_latest(fs, n.id, vm_name, e);
		break;
	default:
		r = rp_of(fs, n.id, &rp);
		if (r >= 0)
			r = entry_in_rp(fs, rp, n.kind, n.sub, e);
		break;
	}
out:
	vbs_rp_free(rp);
	return r;
}

/* "<disk>.img" or "<disk>.key" (only where the disk has a key): the disk's index and kind; or
 * one of the point's files (config, domain.xml), where it has it: its kind. */
static int disk_file(const vbs_rp *rp, const char *name, enum vbf_kind *ret_kind, unsigned *ret_idx)
{
	size_t len = strlen(name), base;
	enum vbf_kind kind;

	for (unsigned k = 0; k < VBS_RP_FILES; k++)
		if (rp->files[k].data && strcmp(name, vbs_rp_file_name(k)) == 0) {
			*ret_kind = VBF_FILE;
			*ret_idx = k;
			return 0;
		}
	if (len <= SUFFIX_LEN)
		return -ENOENT;
	base = len - SUFFIX_LEN;
	if (strcmp(name + base, IMAGE_SUFFIX) == 0)
		kind = VBF_IMAGE;
	else if (strcmp(name + base, KEY_SUFFIX) == 0)
		kind = VBF_KEY;
	else
		return -ENOENT;
	for (size_t i = 0; i < rp->n_disks; i++) {
		const vbs_disk *d = &rp->disks[i];

		if (strncmp(d->name, name, base) != 0 || d->name[base] != '\0')
			continue;
		if (kind == VBF_KEY && d->escrow == NULL)
			return -ENOENT;
		*ret_kind = kind;
		*ret_idx = (unsigned)i;
		return 0;
	}
	return -ENOENT;
}

static int lookup_root(vbf_fs *fs, const char *name, struct fuse_entry_param *e)
{
	uint64_t vm;
	int r;

	if (!vbu_name_valid(name))
		return -ENOENT;
	r = vbs_vm_get(fs->vault, name, &vm);
	if (r == -EINVAL)
		r = -ENOENT;
	if (r < 0)
		return store_fail(r, "cannot find a VM");
	vm_name_remember(fs, vm, name);
	return entry_vm(fs, vm, e);
}

static int lookup_vm(vbf_fs *fs, uint64_t vm, const char *name, struct fuse_entry_param *e)
{
	char vm_name[VBS_NAME_MAX + 1];
	vbs_rp *rp = NULL;
	int r;

	r = vm_name_of(fs, vm, vm_name);
	if (r < 0)
		goto out;
	if (strcmp(name, LATEST_NAME) == 0) {
		r = entry_latest(fs, vm, vm_name, e);
		goto out;
	}
	if (strlen(name) >= VBS_RP_ID_MAX) {
		r = -ENOENT;
		goto out;
	}
	r = vbs_rp_get(fs->vault, vm_name, name, &rp);
	if (r == -EINVAL)
		r = -ENOENT;
	if (r < 0) {
		store_fail(r, "cannot read a recovery point");
		goto out;
	}
	r = entry_in_rp(fs, rp, VBF_RP, 0, e);
	/* The point never changes, but its name lives in the VM's directory, which does: prune
	 * may remove it. */
	e->entry_timeout = VBF_TTL_SHORT;
out:
	vbs_rp_free(rp);
	return r;
}

static int lookup_rp(vbf_fs *fs, uint64_t serial, const char *name, struct fuse_entry_param *e)
{
	enum vbf_kind kind = VBF_MANIFEST;
	vbs_rp *rp = NULL;
	unsigned idx = 0;
	int r;

	r = rp_of(fs, serial, &rp);
	if (r < 0)
		goto out;
	if (strcmp(name, MANIFEST_NAME) != 0 && disk_file(rp, name, &kind, &idx) < 0) {
		/* A point never gains a file: the kernel may remember the miss. */
		memset(e, 0, sizeof(*e));
		e->entry_timeout = VBF_TTL_LONG;
		goto out;
	}
	r = entry_in_rp(fs, rp, kind, idx, e);
out:
	vbs_rp_free(rp);
	return r;
}

static void do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	vbf_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	vbf_node n;
	int r;

	r = vbf_ino_parse(parent, &n);
	if (r < 0)
		goto out;
	switch (n.kind) {
	case VBF_ROOT:
		r = lookup_root(fs, name, &e);
		break;
	case VBF_VM:
		r = lookup_vm(fs, n.id, name, &e);
		break;
	case VBF_RP:
		r = lookup_rp(fs, n.id, name, &e);
		break;
	default:
		r = -ENOTDIR;
		break;
	}
out:
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_entry(req, &e);
}

static void do_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	int r = entry_of(fs_of(req), ino, &e);

	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_attr(req, &e.attr, e.attr_timeout);
}

static void do_readlink(fuse_req_t req, fuse_ino_t ino)
{
	vbf_fs *fs = fs_of(req);
	char vm_name[VBS_NAME_MAX + 1];
	vbs_rp *rp = NULL;
	vbf_node n;
	int r;

	r = vbf_ino_parse(ino, &n);
	if (r < 0)
		goto out;
	if (n.kind != VBF_LATEST) {
		r = -EINVAL;
		goto out;
	}
	r = vm_name_of(fs, n.id, vm_name);
	if (r < 0)
		goto out;
	r = vbs_rp_latest(fs->vault, vm_name, &rp);
	if (r < 0)
		store_fail(r, "cannot find the latest point");
out:
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_readlink(req, rp->id);
	vbs_rp_free(rp);
}

/* Directories. */

/* A listing for n entries and extra more. */
static vbf_dir *dir_new(size_t n, size_t extra)
{
	size_t cap, bytes;
	vbf_dir *d;

	if (__builtin_add_overflow(n, extra, &cap) ||
	    __builtin_mul_overflow(cap, sizeof(vbf_dirent), &bytes) ||
	    __builtin_add_overflow(bytes, sizeof(vbf_dir), &bytes))
		return NULL;
	d = malloc(bytes);
	if (d == NULL)
		return NULL;
	d->n = 0;
	d->cap = cap;
	return d;
}

static int dir_add(vbf_dir *d, const char *name, const char *suffix, enum vbf_kind kind,
		   uint64_t id, unsigned sub, mode_t mode)
{
	vbf_dirent *ent;
	uint64_t ino = VBF_INO_ROOT;
	int r, len;

	if (d->n >= d->cap)
		return -EINVAL;
	if (kind != VBF_ROOT) {
		r = vbf_ino_make(kind, id, sub, &ino);
		if (r < 0)
			return r;
	}
	ent = &d->ents[d->n];
	len = snprintf(ent->name, sizeof(ent->name), "%s%s", name, suffix);
	if (len < 0 || (size_t)len >= sizeof(ent->name))
		return -ENAMETOOLONG;
	ent->ino = ino;
	ent->type = mode;
	d->n++;
	return 0;
}

static int dir_root(vbf_fs *fs, vbf_dir **ret)
{
	vbs_name_entry *vms = NULL;
	vbf_dir *d = NULL;
	size_t n = 0;
	int r;

	r = vbs_vm_list(fs->vault, &vms, &n);
	if (r < 0) {
		store_fail(r, "cannot list the VMs");
		goto out;
	}
	d = dir_new(n, 2);
	if (d == NULL) {
		r = -ENOMEM;
		goto out;
	}
	r = dir_add(d, ".", "", VBF_ROOT, 0, 0, DIR_MODE);
	if (r >= 0)
		r = dir_add(d, "..", "", VBF_ROOT, 0, 0, DIR_MODE);
	for (size_t i = 0; i < n && r >= 0; i++) {
		r = dir_add(d, vms[i].name, "", VBF_VM, vms[i].serial, 0, DIR_MODE);
		vm_name_remember(fs, vms[i].serial, vms[i].name);
	}
	if (r < 0)
		goto out;
	*ret = d;
	d = NULL;
out:
	free(d);
	free(vms);
	return r;
}

static int dir_vm(vbf_fs *fs, uint64_t vm, vbf_dir **ret)
{
	char vm_name[VBS_NAME_MAX + 1];
	vbs_name_entry *rps = NULL;
	vbf_dir *d = NULL;
	size_t n = 0;
	int r;

	r = vm_name_of(fs, vm, vm_name);
	if (r < 0)
		goto out;
	r = vbs_rp_names(fs->vault, vm_name, &rps, &n);
	if (r < 0) {
		store_fail(r, "cannot list the recovery points");
		goto out;
	}
	d = dir_new(n, 3);
	if (d == NULL) {
		r = -ENOMEM;
		goto out;
	}
	r = dir_add(d, ".", "", VBF_VM, vm, 0, DIR_MODE);
	if (r >= 0)
		r = dir_add(d, "..", "", VBF_ROOT, 0, 0, DIR_MODE);
	if (r >= 0 && n > 0)
		r = dir_add(d, LATEST_NAME, "", VBF_LATEST, vm, 0, LINK_MODE);
	for (size_t i = 0; i < n && r >= 0; i++)
		r = dir_add(d, rps[i].name, "", VBF_RP, rps[i].serial, 0, DIR_MODE);
	if (r < 0)
		goto out;
	*ret = d;
	d = NULL;
out:
	free(d);
	free(rps);
	return r;
}

static int dir_rp(vbf_fs *fs, uint64_t serial, vbf_dir **ret)
{
	vbs_rp *rp = NULL;
	vbf_dir *d = NULL;
	size_t n_files;
	int r;

	r = rp_of(fs, serial, &rp);
	if (r < 0)
		goto out;
	if (rp->n_disks > VBS_DISKS_MAX) {
		r = -EOVERFLOW;
		goto out;
	}
	n_files = 2 * rp->n_disks + VBS_RP_FILES;
	d = dir_new(n_files, 3);
	if (d == NULL) {
		r = -ENOMEM;
		goto out;
	}
	r = dir_add(d, ".", "", VBF_RP, serial, 0, DIR_MODE);
	if (r >= 0)
		r = dir_add(d, "..", "", VBF_VM, rp->vm_serial, 0, DIR_MODE);
	if (r >= 0)
		r = dir_add(d, MANIFEST_NAME, "", VBF_MANIFEST, serial, 0, FILE_MODE);
	for (unsigned k = 0; k < VBS_RP_FILES && r >= 0; k++)
		if (rp->files[k].data)
			r = dir_add(d, vbs_rp_file_name(k), "", VBF_FILE, serial, k, FILE_MODE);
	for (size_t i = 0; i < rp->n_disks && r >= 0; i++) {
		const vbs_disk *disk = &rp->disks[i];

		r = dir_add(d, disk->name, IMAGE_SUFFIX, VBF_IMAGE, serial, (unsigned)i, FILE_MODE);
		if (r >= 0 && disk->escrow != NULL)
			r = dir_add(d, disk->name, KEY_SUFFIX, VBF_KEY, serial, (unsigned)i,
				    KEY_MODE);
	}
	if (r < 0)
		goto out;
	*ret = d;
	d = NULL;
out:
	free(d);
	vbs_rp_free(rp);
	return r;
}

static void do_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vbf_fs *fs = fs_of(req);
	vbf_dir *d = NULL;
	vbf_node n;
	int r;

	r = vbf_ino_parse(ino, &n);
	if (r < 0)
		goto out;
	switch (n.kind) {
	case VBF_ROOT:
		r = dir_root(fs, &d);
		break;
	case VBF_VM:
		r = dir_vm(fs, n.id, &d);
		break;
	case VBF_RP:
		r = dir_rp(fs, n.id, &d);
		/* A point's listing never changes: the kernel may cache it. */
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
		break;
	default:
		r = -ENOTDIR;
		break;
	}
out:
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) != 0)
		free(d);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	const vbf_dir *d = (const vbf_dir *)(uintptr_t)fi->fh;
	size_t used = 0;
	char *buf;

	if (off < 0 || (uint64_t)off >= d->n) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	buf = malloc(size);
	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		struct stat st = {.st_ino = d->ents[i].ino, .st_mode = d->ents[i].type};
		size_t len = fuse_add_direntry(req, buf + used, size - used, d->ents[i].name, &st,
					       (off_t)(i + 1));

		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	free((vbf_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Files. */

static void file_free(vbf_file *f)
{
	if (f == NULL)
		return;
	vbs_image_close(f->img);
	free(f->data);
	free(f);
}

static int open_in_rp(vbf_fs *fs, const vbf_node *n, vbf_file *f)
{
	const vbs_disk *disk;
	vbs_rp *rp = NULL;
	int r;

	r = rp_of(fs, n->id, &rp);
	if (r < 0)
		goto out;
	if (n->kind == VBF_MANIFEST) {
		r = vbs_rp_manifest(rp, &f->data, &f->len);
		if (r < 0)
			store_fail(r, "cannot make a manifest");
		goto out;
	}
	if (n->kind == VBF_FILE) {
		const vbs_rp_file *pf = n->sub < VBS_RP_FILES ? &rp->files[n->sub] : NULL;

		if (!pf || !pf->data) {
			r = -ENOENT;
			goto out;
		}
		/* Moved, not copied: rp is freed below. */
		f->data = (char *)pf->data;
		f->len = pf->len;
		rp->files[n->sub].data = NULL;
		goto out;
	}
	if (n->sub >= rp->n_disks || rp->disks[n->sub].escrow == NULL) {
		r = -ENOENT;
		goto out;
	}
	disk = &rp->disks[n->sub];
	f->data = malloc(disk->escrow_len > 0 ? disk->escrow_len : 1);
	if (f->data == NULL) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(f->data, disk->escrow, disk->escrow_len);
	f->len = disk->escrow_len;
out:
	vbs_rp_free(rp);
	return r;
}

static void do_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	vbf_fs *fs = fs_of(req);
	vbf_file *f = NULL;
	vbf_node n;
	int r;

	r = vbf_ino_parse(ino, &n);
	if (r < 0)
		goto out;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_APPEND))) {
		r = -EROFS;
		goto out;
	}
	if (vbf_kind_is_dir(n.kind)) {
		r = -EISDIR;
		goto out;
	}
	if (n.kind == VBF_LATEST) {
		r = -ELOOP;
		goto out;
	}
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (n.kind == VBF_IMAGE) {
		r = vbs_image_open(fs->vault, n.id, n.sub, &f->img);
		if (r < 0)
			store_fail(r, "cannot open an image");
	} else {
		r = open_in_rp(fs, &n, f);
	}
out:
	if (r < 0) {
		file_free(f);
		reply_err(req, r);
		return;
	}
	/* Points never change, so what the page cache holds stays valid; but for escrow blobs,
	 * which a rewrap replaces: those are read through (direct_io, no page cache). */
	if (n.kind == VBF_KEY) {
		fi->direct_io = 1;
		fi->keep_cache = 0;
	} else {
		fi->keep_cache = 1;
	}
	fi->fh = (uintptr_t)f;
	if (fuse_reply_open(req, fi) != 0)
		file_free(f);
}

/* Zeros for holes in read replies: iovecs point into it, so holes cost no copy of ours. */
static const char zeros[128 * 1024];

/* An image read answers without copying: the reply's iovecs point into held cache entries
 * and into zeros. Once the kernel has the reply it may send the release of the handle, which
 * another thread then serves while this one still returns from the write: so nothing here
 * touches the handle after the reply, and the entries are released through the vault. */
static void read_image(fuse_req_t req, vbf_fs *fs, vbs_image *img, size_t len, uint64_t off)
{
	size_t nmax = vbs_image_segs_max(img, len), n = 0, got = 0, niov = 0;
	vbs_image_seg *segs = malloc(nmax * sizeof(*segs));
	struct iovec *iov = malloc((nmax + len / sizeof(zeros) + 1) * sizeof(*iov));
	int r = -ENOMEM;

	if (segs && iov)
		r = vbs_image_read_segs(img, len, off, segs, nmax, &n, &got);
	if (r < 0) {
		/* -ENOENT: the point was deleted while open (vmbakfs(1) says ENOENT). */
		if (r != -ENOMEM)
			store_fail(r, "cannot read an image");
		reply_err(req, r);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (segs[i].entry) {
			iov[niov++] = (struct iovec){(void *)segs[i].data, segs[i].len};
			continue;
		}
		for (size_t left = segs[i].len; left > 0;) {
			size_t take = left < sizeof(zeros) ? left : sizeof(zeros);
			iov[niov++] = (struct iovec){(void *)zeros, take};
			left -= take;
		}
	}
	fuse_reply_iov(req, iov, (int)niov);
	vbs_image_segs_release(fs->vault, segs, n);
out:
	free(segs);
	free(iov);
}

static void do_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	vbf_file *f = (vbf_file *)(uintptr_t)fi->fh;
	uint64_t end;
	size_t len;
	char *buf;

	if (off < 0) {
		reply_err(req, -EINVAL);
		return;
	}
	end = f->img != NULL ? vbs_image_size(f->img) : f->len;
	if ((uint64_t)off >= end || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = end - (uint64_t)off < size ? (size_t)(end - (uint64_t)off) : size;
	if (f->img != NULL) {
		read_image(req, fs_of(req), f->img, len, (uint64_t)off);
		return;
	}
	/* Small files live in the handle: copy before replying (see read_image). */
	buf = malloc(len);
	if (buf == NULL) {
		reply_err(req, -ENOMEM);
		return;
	}
	memcpy(buf, f->data + off, len);
	fuse_reply_buf(req, buf, len);
	free(buf);
}

static void do_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	vbf_file *f = (vbf_file *)(uintptr_t)fi->fh;
	uint64_t pos = 0;
	int r = 0;

	/* The kernel handles SEEK_SET, SEEK_CUR and SEEK_END itself. */
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		r = -EINVAL;
		goto out;
	}
	if (off < 0) {
		r = -ENXIO;
		goto out;
	}
	if (f->img != NULL) {
		r = vbs_image_seek(f->img, (uint64_t)off, whence, &pos);
		if (r < 0 && r != -ENXIO)
			store_fail(r, "cannot seek in an image");
	} else if ((uint64_t)off >= f->len) {
		r = -ENXIO;
	} else {
		pos = whence == SEEK_DATA ? (uint64_t)off : f->len;
	}
	if (r >= 0 && pos > INT64_MAX)
		r = -EOVERFLOW;
out:
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_lseek(req, (off_t)pos);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	file_free((vbf_file *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st = {
	    .f_bsize = BLOCK_SIZE,
	    .f_frsize = BLOCK_SIZE,
	    .f_namemax = ENTRY_NAME_MAX,
	    .f_flag = ST_RDONLY,
	};

	fuse_reply_statfs(req, &st);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Reads of up to max_write bytes (libfuse sets it to its buffer, 1 MiB where the kernel
	 * allows) arrive as one request. max_read stays as the mount options set it: libfuse
	 * refuses an init() that changes it. The kernel caps read-ahead at the device's
	 * read_ahead_kb; ask for more in case an administrator raised it. */
	conn->max_readahead = VBF_READ_AHEAD_KIB * 1024;
	conn->max_background = 64;
	conn->congestion_threshold = 0;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* Attributes never change, so there is nothing to invalidate. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->time_gran = 1;
}

/* Everything that would write. With the "ro" mount option the kernel answers most of these
 * itself; these replies cover the rest (and a mount without it). */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, EROFS);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	fuse_reply_err(req, EROFS);
}

/* ---- requests that read the vault ----
 *
 * Each runs under vbs_guarded(): a damaged page of data.mdb that LMDB meets (which would end
 * the process) fails that request with EIO, and the daemon goes on serving the rest. */

struct call {
	fuse_req_t req;
	fuse_ino_t ino;
	const char *name;
	size_t size;
	off_t off;
	int whence;
	struct fuse_file_info *fi;
	void (*run)(const struct call *c);
};

static int call_run(void *arg)
{
	const struct call *c = arg;

	c->run(c);
	return 0;
}

static void guarded(const struct call *c)
{
	vbf_fs *fs = fs_of(c->req);

	if (vbs_guarded(call_run, (void *)c) < 0) {
		vbu_err("vault '%s': the database is damaged (an invalid page in data.mdb): "
			"answering EIO",
			vbs_vault_path(fs->vault));
		fuse_reply_err(c->req, EIO);
	}
}

static void run_lookup(const struct call *c)
{
	do_lookup(c->req, c->ino, c->name);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct call c = {.req = req, .ino = parent, .name = name, .run = run_lookup};

	guarded(&c);
}

static void run_getattr(const struct call *c)
{
	do_getattr(c->req, c->ino, c->fi);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct call c = {.req = req, .ino = ino, .fi = fi, .run = run_getattr};

	guarded(&c);
}

static void run_readlink(const struct call *c)
{
	do_readlink(c->req, c->ino);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct call c = {.req = req, .ino = ino, .run = run_readlink};

	guarded(&c);
}

static void run_opendir(const struct call *c)
{
	do_opendir(c->req, c->ino, c->fi);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct call c = {.req = req, .ino = ino, .fi = fi, .run = run_opendir};

	guarded(&c);
}

static void run_open(const struct call *c)
{
	do_open(c->req, c->ino, c->fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct call c = {.req = req, .ino = ino, .fi = fi, .run = run_open};

	guarded(&c);
}

static void run_read(const struct call *c)
{
	do_read(c->req, c->ino, c->size, c->off, c->fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct call c = {.req = req, .ino = ino, .size = size, .off = off, .fi = fi,
			 .run = run_read};

	guarded(&c);
}

static void run_lseek(const struct call *c)
{
	do_lseek(c->req, c->ino, c->off, c->whence, c->fi);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct call c = {.req = req, .ino = ino, .off = off, .whence = whence, .fi = fi,
			 .run = run_lseek};

	guarded(&c);
}

const struct fuse_lowlevel_ops vbf_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .lseek = op_lseek,
    .release = op_release,
    .statfs = op_statfs,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .write = op_write,
    .create = op_create,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
};
