/* files_view.c: the view process of `vmbak files` (see files_view.h).
 *
 * A multithreaded low-level FUSE session with two inodes: the root directory and "disk" (the
 * loop driver reads ahead in parallel). Each worker thread has its own OpenSSL context and
 * buffers (a thread-specific value, freed and wiped when the thread ends): the key is set once
 * per thread, each sector only sets its IV. Reads are widened to whole sectors, read from the
 * image in one call (vbs_image_read is thread-safe), decrypted into a second buffer.
 */
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#endif

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common.h"
#include "file.h"
#include "files_view.h"
#include "image.h"
#include "util.h"
#include "vault.h"

#define INO_DISK 2
#define VIEW_READ_MAX (1u << 20)
#define VIEW_BUF (VIEW_READ_MAX + 2 * 4096) /* a read widened to whole sectors */
#define VIEW_THREADS 4

typedef struct view {
	vbs_vault *v;
	vbs_image *img;
	uint64_t base, size;
	uint32_t sector, iv_unit;
	uint8_t key[64]; /* the AES-XTS key, wiped at the end */
	size_t key_len;	 /* 0: no decryption */
	time_t t;
} view;

/* One worker thread's context and buffers. */
typedef struct worker {
	EVP_CIPHER_CTX *ctx; /* NULL: no decryption */
	uint8_t *in, *out;   /* VIEW_BUF bytes each */
} worker;

static pthread_key_t worker_key;

static void worker_free(void *p)
{
	worker *k = p;

	if (!k)
		return;
	EVP_CIPHER_CTX_free(k->ctx);
	if (k->out)
		OPENSSL_cleanse(k->out, VIEW_BUF);
	free(k->in);
	free(k->out);
	free(k);
}

/* This thread's worker, made on its first read: NULL when memory or OpenSSL fails. */
static worker *worker_get(const view *w)
{
	worker *k = pthread_getspecific(worker_key);

	if (k)
		return k;
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->in = malloc(VIEW_BUF);
	k->out = malloc(VIEW_BUF);
	if (!k->in || !k->out)
		goto fail;
	if (w->key_len) {
		const EVP_CIPHER *c = w->key_len == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();

		k->ctx = EVP_CIPHER_CTX_new();
		if (!k->ctx || EVP_DecryptInit_ex(k->ctx, c, NULL, w->key, NULL) != 1 ||
		    EVP_CIPHER_CTX_set_padding(k->ctx, 0) != 1)
			goto fail;
	}
	if (pthread_setspecific(worker_key, k) != 0)
		goto fail;
	return k;
fail:
	worker_free(k);
	return NULL;
}

static void fill_attr(const view *w, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_atime = st->st_mtime = st->st_ctime = w->t;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0500;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0400;
		st->st_nlink = 1;
		st->st_size = (off_t)w->size;
		st->st_blocks = (blkcnt_t)((w->size + 511) / 512);
	}
}

static void v_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	view *w = fuse_req_userdata(req);
	struct fuse_entry_param e = {0};

	if (parent != FUSE_ROOT_ID || strcmp(name, FILES_VIEW_NAME) != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.ino = INO_DISK;
	e.attr_timeout = e.entry_timeout = 3600;
	fill_attr(w, INO_DISK, &e.attr);
	fuse_reply_entry(req, &e);
}

static void v_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	view *w = fuse_req_userdata(req);
	struct stat st;

	if (ino != FUSE_ROOT_ID && ino != INO_DISK) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(w, ino, &st);
	fuse_reply_attr(req, &st, 3600);
}

static void v_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != INO_DISK) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

/* Reads len bytes at off of the view (within its size) into k->out; returns 0 or -errno. */
static int view_read(const view *w, worker *k, size_t len, uint64_t off)
{
	uint64_t a, e;
	size_t got, n;
	int r, outl;

	if (!k->ctx) {
		r = vbs_image_read(w->img, k->out, len, w->base + off, &got);
		return r < 0 ? r : got == len ? 0 : -EIO;
	}
	a = off - off % w->sector;
	e = off + len;
	if (e % w->sector)
		e += w->sector - e % w->sector;
	n = (size_t)(e - a);
	r = vbs_image_read(w->img, k->in, n, w->base + a, &got);
	if (r < 0)
		return r;
	if (got != n)
		return -EIO;
	for (size_t i = 0; i < n; i += w->sector) {
		uint64_t sec = (a + i) / w->iv_unit;
		uint8_t iv[16] = {0};

		for (int b = 0; b < 8; b++)
			iv[b] = (uint8_t)(sec >> (8 * b));
		if (EVP_DecryptInit_ex(k->ctx, NULL, NULL, NULL, iv) != 1 ||
		    EVP_DecryptUpdate(k->ctx, k->out + i, &outl, k->in + i, (int)w->sector) != 1 ||
		    outl != (int)w->sector)
			return -EIO;
	}
	if (off != a)
		memmove(k->out, k->out + (off - a), len);
	return 0;
}

static void v_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	view *w = fuse_req_userdata(req);
	worker *k;
	int r;

	if (off < 0 || (uint64_t)off >= w->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > VIEW_READ_MAX)
		size = VIEW_READ_MAX;
	if (size > w->size - (uint64_t)off)
		size = (size_t)(w->size - (uint64_t)off);
	k = worker_get(w);
	if (!k) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r = view_read(w, k, size, (uint64_t)off);
	if (r < 0) {
		/* A damaged chunk, a point gone, a failed read: all an I/O error to the reader. */
		fuse_reply_err(req, EIO);
		return;
	}
	fuse_reply_buf(req, (const char *)k->out, size);
}

static void v_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	static const char *const names[] = {".", "..", FILES_VIEW_NAME};
	char buf[512];
	size_t used = 0;

	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (off_t i = off; i >= 0 && i < 3; i++) {
		struct stat st = {.st_ino = i == 2 ? INO_DISK : FUSE_ROOT_ID,
				  .st_mode = i == 2 ? S_IFREG : S_IFDIR};
		size_t need = fuse_add_direntry(req, buf + used, size - used, names[i], &st, i + 1);

		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
}

static const struct fuse_lowlevel_ops view_ops = {
    .lookup = v_lookup,
    .getattr = v_getattr,
    .open = v_open,
    .read = v_read,
    .readdir = v_readdir,
};

static void view_free(view *w)
{
	vbs_image_close(w->img);
	vbs_vault_close(w->v);
	OPENSSL_cleanse(w->key, sizeof(w->key));
}

/* The view process, after the fork: sets everything up, says "" (mounted) or why not on fd
 * report, then serves until unmounted. Returns the process's exit status. */
static int view_main(const files_view_cfg *c, int report)
{
	char *fargv[] = {"vmbak-files", "-o", "ro,fsname=vmbak-files,subtype=vmbak-files", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg;
	view w = {.base = c->base,
		  .size = c->size,
		  .sector = c->sector,
		  .iv_unit = c->iv_large_sectors ? c->sector : 512,
		  .t = time(NULL)};
	char msg[300] = "";
	int r, nul, have_key = 0;

	r = vbs_vault_open(c->vault, 1, &w.v);
	if (r >= 0 && c->pass)
		r = vbs_vault_unlock(w.v, c->pass);
	/* This process's copies of the secrets are needed no more (the context keeps the key). */
	if (c->pass)
		OPENSSL_cleanse((char *)c->pass, strlen(c->pass));
	if (r >= 0)
		r = vbs_vault_open_env(w.v);
	if (r >= 0)
		r = vbs_image_open(w.v, c->serial, c->disk_idx, &w.img);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot open the disk in vault '%s': %s", q(c->vault),
			 vbu_strerror(-r));
		goto fail;
	}
	if (c->base > vbs_image_size(w.img) || c->size > vbs_image_size(w.img) - c->base) {
		snprintf(msg, sizeof(msg), "the view ends past the end of the disk");
		goto fail;
	}
	if (c->key) {
		if (c->key_len != 32 && c->key_len != 64) {
			snprintf(msg, sizeof(msg), "a volume key of %zu bytes", c->key_len);
			goto fail;
		}
		memcpy(w.key, c->key, c->key_len);
		w.key_len = c->key_len;
		OPENSSL_cleanse((uint8_t *)c->key, c->key_len);
	}
	/* This thread's worker now, so that a key OpenSSL refuses is said before mounting. */
	if (pthread_key_create(&worker_key, worker_free) != 0) {
		snprintf(msg, sizeof(msg), "%s", vbu_strerror(EAGAIN));
		goto fail;
	}
	have_key = 1;
	if (!worker_get(&w)) {
		snprintf(msg, sizeof(msg), "OpenSSL refuses the volume key for AES-XTS");
		goto fail;
	}
	se = fuse_session_new(&args, &view_ops, sizeof(view_ops), &w);
	if (!se || fuse_session_mount(se, c->dir) != 0) {
		snprintf(msg, sizeof(msg), "cannot mount the view at '%s'", q(c->dir));
		goto fail;
	}
	if (vbu_write_all(report, "", 1) < 0)
		goto out;
	close(report);
	report = -1;
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		dup2(nul, STDOUT_FILENO);
		dup2(nul, STDERR_FILENO);
		close(nul);
	}
	fuse_set_signal_handlers(se);
	cfg = fuse_loop_cfg_create();
	if (cfg) {
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		fuse_loop_cfg_set_max_threads(cfg, VIEW_THREADS);
		fuse_loop_cfg_set_idle_threads(cfg, 1);
		fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	} else {
		fuse_session_loop(se);
	}
	fuse_remove_signal_handlers(se);
	fuse_session_unmount(se);
	goto out;
fail:
	if (report >= 0)
		vbu_write_all(report, msg, strlen(msg) + 1);
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	if (have_key) {
		worker_free(pthread_getspecific(worker_key));
		pthread_setspecific(worker_key, NULL);
	}
	view_free(&w);
	return report >= 0 ? 1 : 0;
}

int files_view_start(const files_view_cfg *c, pid_t *ret_pid, char *msg, size_t cap)
{
	char buf[320];
	size_t used = 0;
	int fds[2], wst;
	pid_t pid;

	msg[0] = '\0';
	if (pipe2(fds, O_CLOEXEC) != 0) {
		snprintf(msg, cap, "%s", vbu_strerror(errno));
		return VMBAK_EXIT_FAIL;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(msg, cap, "cannot start the view: %s", vbu_strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return VMBAK_EXIT_FAIL;
	}
	if (pid == 0) {
		close(fds[0]);
		setsid();
		/* Hold no directory of the caller's busy. */
		if (chdir("/") != 0)
			_exit(1);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_IGN);
		_exit(view_main(c, fds[1]));
	}
	close(fds[1]);
	for (;;) {
		ssize_t k = read(fds[0], buf + used, sizeof(buf) - 1 - used);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		used += (size_t)k;
		if (memchr(buf, '\0', used) || used == sizeof(buf) - 1)
			break;
	}
	close(fds[0]);
	buf[used] = '\0';
	if (used > 0 && buf[0] == '\0') {
		*ret_pid = pid;
		return 0;
	}
	while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
		;
	snprintf(msg, cap, "%s", used ? buf : "the view process ended before it was mounted");
	return VMBAK_EXIT_FAIL;
}
