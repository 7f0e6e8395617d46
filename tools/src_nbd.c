/* src_nbd.c: NBD sources through libnbd, and image files through a private qemu-nbd
 * (see src_nbd.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "nbd_dl.h"
#include "src_nbd.h"
#include "util.h"

#define IO_MAX (4u << 20)	/* one NBD read */
#define INFLIGHT_MAX 16		/* reads in flight on the connection */
#define CONNECT_MS 30000	/* connect and handshake */
#define STALL_MS 120000		/* no answer to any request for this long: give up */
#define STATUS_MAX (1ull << 30) /* one block status request */

/* ---- an NBD connection ---- */

struct status_ext {
	uint64_t off, len;
	int data;
};

struct src_nbd {
	struct nbd_handle *h;
	char *uri, *label;
	char *bitmap_ctx; /* "qemu:dirty-bitmap:NAME", or NULL */
	uint64_t size;
	uint64_t max_io;
	int has_alloc; /* the server offers base:allocation */
	int dead;      /* a timed-out read left requests we no longer wait for */
	vbs_source src;
	uint64_t bytes_read;
	/* the read in progress */
	int read_err;
	uint64_t err_off;
	/* base:allocation, the answer to the last block status request, covering
	 * [cache[0].off, cache[ncache-1].off + len) */
	struct status_ext *cache;
	size_t ncache, capcache;
	/* collecting for src_nbd_dirty */
	vbs_extent *dirty;
	size_t ndirty, capdirty;
	uint64_t status_end; /* where the last answer ended */
	int status_err;
};

int src_nbd_is_uri(const char *s)
{
	static const char *const prefixes[] = {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"};

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	return 0;
}

static int nbd_err(const char *what, const char *label)
{
	int e = sym_nbd_get_errno();
	const char *m = sym_nbd_get_error();

	if (e <= 0)
		e = EIO;
	/* libnbd says "nbd_FUNCTION: what went wrong": the function means nothing to a user. */
	if (m && strncmp(m, "nbd_", 4) == 0 && strstr(m, ": "))
		m = strstr(m, ": ") + 2;
	return vbu_fail(-e, "%s '%s': %s", what, label, m ? m : vbu_strerror(e));
}

static int64_t now_ms(void)
{
	return vbu_mono_ns() / 1000000;
}

/* Runs the handle's state machine until done() says so, or for at most ms. */
static int wait_for(src_nbd *s, int (*done)(src_nbd *), int64_t ms, const char *what)
{
	int64_t deadline = now_ms() + ms;

	while (!done(s)) {
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return vbu_fail(-ETIMEDOUT, "%s '%s': no answer for %lld s", what, s->label,
					(long long)(ms / 1000));
		r = sym_nbd_poll(s->h, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0)
			return nbd_err(what, s->label);
	}
	return 0;
}

static int connected(src_nbd *s)
{
	return !sym_nbd_aio_is_connecting(s->h);
}

static int src_read(void *arg, const vbs_source_io *io, size_t n);
static int src_map(void *arg, uint64_t off, uint64_t end, uint64_t *ret_data, uint64_t *ret_hole);

static const vbs_source_ops nbd_ops = {src_read, src_map};
static const vbs_source_ops nbd_ops_nomap = {src_read, NULL};

/* Connects with a URI, or to a unix socket (uri NULL) and an export name. */
static int nbd_open(const char *uri, const char *sock, const char *export_name,
		    const char *dirty_bitmap, const char *label, src_nbd **ret)
{
	src_nbd *s = calloc(1, sizeof(*s));
	int64_t size;
	int r;

	if (!s)
		return vbu_fail(-ENOMEM, "out of memory");
	if ((r = dlopen_libnbd()) < 0) {
		free(s);
		return r;
	}
	s->uri = strdup(uri ? uri : sock);
	s->label = strdup(label ? label : uri ? uri : sock);
	if (dirty_bitmap && asprintf(&s->bitmap_ctx, "qemu:dirty-bitmap:%s", dirty_bitmap) < 0)
		s->bitmap_ctx = NULL;
	if (!s->uri || !s->label || (dirty_bitmap && !s->bitmap_ctx)) {
		r = vbu_fail(-ENOMEM, "out of memory");
		goto fail;
	}
	s->h = sym_nbd_create();
	if (!s->h) {
		r = nbd_err("cannot connect to", s->label);
		goto fail;
	}
	/* Only the transports a backup reads from: no ssh or vsock, no commands run from a URI. */
	if (sym_nbd_set_uri_allow_transports(s->h, LIBNBD_ALLOW_TRANSPORT_TCP |
						   LIBNBD_ALLOW_TRANSPORT_UNIX) < 0 ||
	    /* The operator's own URI may name TLS files (tls-psk-file=...). */
	    sym_nbd_set_uri_allow_local_file(s->h, true) < 0 ||
	    sym_nbd_add_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
	    (s->bitmap_ctx && sym_nbd_add_meta_context(s->h, s->bitmap_ctx) < 0)) {
		r = nbd_err("cannot connect to", s->label);
		goto fail;
	}
	if (!uri && sym_nbd_set_export_name(s->h, export_name ? export_name : "") < 0) {
		r = nbd_err("cannot connect to", s->label);
		goto fail;
	}
	if (uri ? sym_nbd_aio_connect_uri(s->h, uri) < 0 : sym_nbd_aio_connect_unix(s->h, sock) < 0) {
		r = nbd_err("cannot connect to", s->label);
		if (r == -EINVAL || r == -ENOTSUP || r == -EPROTONOSUPPORT)
			r = vbu_fail(-EINVAL, "invalid NBD URI '%s': %s", s->label,
				     sym_nbd_get_error() ? sym_nbd_get_error() : "not understood");
		goto fail;
	}
	if ((r = wait_for(s, connected, CONNECT_MS, "cannot connect to")) < 0)
		goto fail;
	if (!sym_nbd_aio_is_ready(s->h)) {
		r = nbd_err("cannot connect to", s->label);
		goto fail;
	}
	size = sym_nbd_get_size(s->h);
	if (size < 0) {
		r = nbd_err("cannot get the size of", s->label);
		goto fail;
	}
	if (size == 0) {
		r = vbu_fail(-EINVAL, "NBD export '%s' is empty", s->label);
		goto fail;
	}
	s->size = (uint64_t)size;
	s->has_alloc = sym_nbd_can_meta_context(s->h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	if (s->bitmap_ctx && sym_nbd_can_meta_context(s->h, s->bitmap_ctx) != 1) {
		r = vbu_fail(-ENOTSUP, "NBD export '%s' does not offer dirty bitmap '%s'", s->label,
			     dirty_bitmap);
		goto fail;
	}
	s->max_io = IO_MAX;
	{
		int64_t mx = sym_nbd_get_block_size(s->h, LIBNBD_SIZE_MAXIMUM);
		int64_t pref = sym_nbd_get_block_size(s->h, LIBNBD_SIZE_PREFERRED);

		if (mx > 0 && (uint64_t)mx < s->max_io)
			s->max_io = (uint64_t)mx;
		/* A server with a larger preferred size than our maximum reads whole blocks;
		 * keep our pieces multiples of it when they can be. */
		if (pref > 0 && (uint64_t)pref <= s->max_io)
			s->max_io -= s->max_io % (uint64_t)pref;
	}
	s->src = (vbs_source){s->has_alloc ? &nbd_ops : &nbd_ops_nomap, s, s->size, s->label};
	*ret = s;
	return 0;
fail:
	src_nbd_close(s);
	return r;
}

int src_nbd_open(const char *uri, const char *dirty_bitmap, const char *label, src_nbd **ret)
{
	return nbd_open(uri, NULL, NULL, dirty_bitmap, label, ret);
}

int src_nbd_open_unix(const char *sock, const char *export_name, const char *dirty_bitmap,
		      const char *label, src_nbd **ret)
{
	return nbd_open(NULL, sock, export_name, dirty_bitmap, label, ret);
}

const vbs_source *src_nbd_source(src_nbd *s)
{
	return &s->src;
}

uint64_t src_nbd_size(const src_nbd *s)
{
	return s->size;
}

uint64_t src_nbd_bytes_read(const src_nbd *s)
{
	return s->bytes_read;
}

void src_nbd_close(src_nbd *s)
{
	if (!s)
		return;
	if (s->h) {
		/* A clean disconnect where the connection still works; else just close. */
		if (!s->dead && sym_nbd_aio_is_ready(s->h))
			sym_nbd_shutdown(s->h, 0);
		sym_nbd_close(s->h);
	}
	free(s->uri);
	free(s->label);
	free(s->bitmap_ctx);
	free(s->cache);
	free(s->dirty);
	free(s);
}

/* ---- reads ---- */

struct read_cb {
	src_nbd *s;
	uint64_t off;
};

static int read_done(void *user_data, int *error)
{
	struct read_cb *c = user_data;

	if (*error && !c->s->read_err) {
		c->s->read_err = -*error;
		c->s->err_off = c->off;
	}
	return 1; /* retire the command */
}

static int none_in_flight(src_nbd *s)
{
	return sym_nbd_aio_in_flight(s->h) <= 0;
}

static int src_read(void *arg, const vbs_source_io *io, size_t n)
{
	src_nbd *s = arg;
	size_t i = 0;
	uint64_t at = 0; /* bytes of io[i] issued */
	int r = 0;

	if (s->dead)
		return vbu_fail(-EIO, "NBD export '%s' stopped answering", s->label);
	s->read_err = 0;
	while (i < n || sym_nbd_aio_in_flight(s->h) > 0) {
		while (i < n && !s->read_err && sym_nbd_aio_in_flight(s->h) < INFLIGHT_MAX) {
			uint64_t len = io[i].len - at;
			/* Each request's own: completions come in any order, and libnbd frees
			 * it (.free) when the request is retired, even after a timeout. */
			struct read_cb *c = malloc(sizeof(*c));

			if (!c) {
				r = vbu_fail(-ENOMEM, "out of memory");
				goto drain;
			}
			if (len > s->max_io)
				len = s->max_io;
			*c = (struct read_cb){s, io[i].off + at};
			if (sym_nbd_aio_pread(s->h, (uint8_t *)io[i].buf + at, (size_t)len, io[i].off + at,
					  (nbd_completion_callback){.callback = read_done,
								    .user_data = c,
								    .free = free},
					  0) < 0) {
				r = nbd_err("cannot read", s->label);
				goto drain;
			}
			s->bytes_read += len;
			at += len;
			if (at == io[i].len) {
				i++;
				at = 0;
			}
		}
		if (s->read_err)
			break;
		{
			int p = sym_nbd_poll(s->h, STALL_MS);

			if (p == 0) {
				s->dead = 1;
				return vbu_fail(-ETIMEDOUT, "cannot read '%s': no answer for %d s",
						s->label, STALL_MS / 1000);
			}
			if (p < 0) {
				r = nbd_err("cannot read", s->label);
				goto drain;
			}
		}
	}
drain:
	/* Requests still in flight write into the caller's buffers: wait for them all (a dead
	 * connection retires them at once). */
	if (sym_nbd_aio_in_flight(s->h) > 0 &&
	    wait_for(s, none_in_flight, STALL_MS, "cannot read") < 0) {
		s->dead = 1;
		return vbu_fail(-ETIMEDOUT, "cannot read '%s': no answer for %d s", s->label,
				STALL_MS / 1000);
	}
	if (s->read_err)
		return vbu_fail(s->read_err, "cannot read '%s' at offset %llu: %s", s->label,
				(unsigned long long)s->err_off, vbu_strerror(-s->read_err));
	return r;
}

/* ---- block status ---- */

static int status_cb(void *user_data, const char *metacontext, uint64_t offset, uint32_t *entries,
		     size_t nr_entries, int *error)
{
	src_nbd *s = user_data;
	int alloc = strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0;
	int dirty = s->bitmap_ctx && strcmp(metacontext, s->bitmap_ctx) == 0;
	uint64_t off = offset;

	if (*error) {
		s->status_err = -*error;
		return 0;
	}
	if (!alloc && !dirty)
		return 0;
	for (size_t i = 0; i < nr_entries; i += 2) {
		uint64_t len = entries[i];
		uint32_t flags;

		if (i + 1 >= nr_entries || len == 0) {
			s->status_err = -EPROTO;
			return 0;
		}
		flags = entries[i + 1];
		if (off >= s->size)
			break;
		if (len > s->size - off)
			len = s->size - off;
		if (alloc && !s->dirty) {
			if (s->ncache == s->capcache) {
				size_t cap = s->capcache ? s->capcache * 2 : 256;
				struct status_ext *c = realloc(s->cache, cap * sizeof(*c));
				if (!c) {
					s->status_err = -ENOMEM;
					return 0;
				}
				s->cache = c;
				s->capcache = cap;
			}
			/* Only what reads as zeros is a hole: a hole without the zero flag
			 * may read as anything. */
			s->cache[s->ncache++] =
			    (struct status_ext){off, len, !(flags & LIBNBD_STATE_ZERO)};
		} else if (dirty && s->dirty && (flags & 1)) {
			if (s->ndirty &&
			    s->dirty[s->ndirty - 1].off + s->dirty[s->ndirty - 1].len == off) {
				s->dirty[s->ndirty - 1].len += len;
			} else {
				if (s->ndirty == s->capdirty) {
					size_t cap = s->capdirty ? s->capdirty * 2 : 256;
					vbs_extent *d = realloc(s->dirty, cap * sizeof(*d));
					if (!d) {
						s->status_err = -ENOMEM;
						return 0;
					}
					s->dirty = d;
					s->capdirty = cap;
				}
				s->dirty[s->ndirty++] = (vbs_extent){off, len};
			}
		}
		off += len;
		if (alloc == !s->dirty)
			s->status_end = off;
	}
	return 0;
}

/* One block status request at off: its answer goes to the cache or the dirty list (as
 * status_cb sorts it); s->status_end is where the answer ends (> off). */
static int status_at(src_nbd *s, uint64_t off)
{
	uint64_t count = s->size - off;

	if (s->dead)
		return vbu_fail(-EIO, "NBD export '%s' stopped answering", s->label);
	if (count > STATUS_MAX)
		count = STATUS_MAX;
	s->status_err = 0;
	s->status_end = off;
	if (sym_nbd_block_status(s->h, count, off,
			     (nbd_extent_callback){.callback = status_cb, .user_data = s}, 0) < 0)
		return nbd_err("cannot get the data map of", s->label);
	if (s->status_err)
		return vbu_fail(s->status_err, "cannot get the data map of '%s' at offset %llu: %s",
				s->label, (unsigned long long)off,
				s->status_err == -EPROTO ? "bad answer from the server"
							 : vbu_strerror(-s->status_err));
	if (s->status_end <= off)
		return vbu_fail(-EPROTO,
				"cannot get the data map of '%s' at offset %llu: empty "
				"answer",
				s->label, (unsigned long long)off);
	return 0;
}

/* The cached extent holding off, fetched when the cache does not hold it. */
static int alloc_at(src_nbd *s, uint64_t off, const struct status_ext **ret)
{
	size_t lo = 0, hi = s->ncache;
	int r;

	if (!s->ncache || off < s->cache[0].off ||
	    off >= s->cache[s->ncache - 1].off + s->cache[s->ncache - 1].len) {
		s->ncache = 0;
		if ((r = status_at(s, off)) < 0)
			return r;
		if (!s->ncache || s->cache[0].off != off)
			return vbu_fail(-EPROTO,
					"cannot get the data map of '%s' at offset %llu: "
					"bad answer from the server",
					s->label, (unsigned long long)off);
		hi = s->ncache;
	}
	while (lo + 1 < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->cache[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	*ret = &s->cache[lo];
	return 0;
}

static int src_map(void *arg, uint64_t off, uint64_t end, uint64_t *ret_data, uint64_t *ret_hole)
{
	src_nbd *s = arg;
	const struct status_ext *e;
	uint64_t pos = off, start;
	int r;

	while (pos < end) {
		if ((r = alloc_at(s, pos, &e)) < 0)
			return r;
		if (e->data)
			break;
		pos = e->off + e->len;
	}
	if (pos >= end) {
		*ret_data = *ret_hole = end;
		return 0;
	}
	start = pos;
	while (pos < end) {
		if ((r = alloc_at(s, pos, &e)) < 0)
			return r;
		if (!e->data)
			break;
		pos = e->off + e->len;
	}
	*ret_data = start;
	*ret_hole = pos < end ? pos : end;
	return 0;
}

int src_nbd_dirty(src_nbd *s, vbs_extent **ret, size_t *ret_n)
{
	uint64_t off = 0;
	int r = 0;

	if (!s->bitmap_ctx)
		return vbu_fail(-EINVAL, "no dirty bitmap was asked of '%s'", s->label);
	free(s->dirty);
	s->dirty = malloc(sizeof(*s->dirty));
	s->ndirty = 0;
	s->capdirty = 1;
	if (!s->dirty)
		return vbu_fail(-ENOMEM, "out of memory");
	while (off < s->size) {
		if ((r = status_at(s, off)) < 0)
			break;
		off = s->status_end;
	}
	if (r < 0) {
		free(s->dirty);
	} else {
		*ret = s->dirty;
		*ret_n = s->ndirty;
	}
	s->dirty = NULL;
	s->ndirty = s->capdirty = 0;
	return r;
}

/* ---- an image file through qemu-nbd ---- */

#define START_MS 30000 /* qemu-nbd's start, until its socket answers */
#define STOP_MS 5000   /* SIGTERM, then SIGKILL */
#define IMAGES_MAX 256 /* servers running at once (one per disk) */

struct src_image {
	pid_t pid;
	int slot;
	char dir[PATH_MAX], sock[PATH_MAX], log[PATH_MAX], pid_file[PATH_MAX];
};

/* What the signal handler undoes: fixed arrays, as it may not allocate. A slot is in use while
 * its pid is not 0; pids are written last on start and first on stop. */
static struct {
	volatile sig_atomic_t pid;
	char dir[PATH_MAX], sock[PATH_MAX], log[PATH_MAX], pid_file[PATH_MAX];
} running[IMAGES_MAX];

int src_image_format_valid(const char *format)
{
	static const char *const formats[] = {"qcow2", "vmdk", "vhdx", "vpc", "raw"};

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (strcmp(format, formats[i]) == 0)
			return 1;
	return 0;
}

void src_image_kill_all(void)
{
	int e = errno;

	for (size_t i = 0; i < IMAGES_MAX; i++) {
		pid_t pid = running[i].pid;

		if (!pid)
			continue;
		kill(pid, SIGTERM);
		unlink(running[i].sock);
		unlink(running[i].log);
		unlink(running[i].pid_file);
		rmdir(running[i].dir);
	}
	errno = e;
}

static void on_signal(int sig)
{
	src_image_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

void src_image_signals(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	struct sigaction sa = {0};

	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

/* QEMU's --image-opts value: a comma inside a value is written twice. */
static int opts_append(char *buf, size_t cap, size_t *len, const char *s)
{
	for (; *s; s++) {
		if (*len + 3 > cap)
			return -ENAMETOOLONG;
		buf[(*len)++] = *s;
		if (*s == ',')
			buf[(*len)++] = ',';
	}
	buf[*len] = 0;
	return 0;
}

/* The reason qemu-nbd gave for failing: the last line of its log, without "qemu-nbd: " and
 * "Failed to blk_new_open 'PATH': ". */
static void server_reason(const src_image *im, char *out, size_t cap)
{
	char *text = NULL, *line, *p;
	size_t len = 0;

	snprintf(out, cap, "qemu-nbd failed");
	if (vbu_read_file(im->log, 64 * 1024, &text, &len) < 0 || len == 0) {
		free(text);
		return;
	}
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = 0;
	line = strrchr(text, '\n');
	line = line ? line + 1 : text;
	if (strncmp(line, "qemu-nbd: ", 10) == 0)
		line += 10;
	if (strncmp(line, "Failed to blk_new_open '", 24) == 0 && (p = strstr(line, "': ")))
		line = p + 3;
	for (p = line; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	if (*line)
		snprintf(out, cap, "%s", line);
	free(text);
}

/* 1 when the server has opened the image: qemu-nbd listens on its socket before it opens the
 * image, and writes its pid file after. */
static int server_ready(const src_image *im)
{
	struct stat st;

	return stat(im->pid_file, &st) == 0 && st.st_size > 0 && stat(im->sock, &st) == 0;
}

static void image_cleanup(src_image *im)
{
	if (im->slot >= 0)
		running[im->slot].pid = 0;
	unlink(im->sock);
	unlink(im->log);
	unlink(im->pid_file);
	rmdir(im->dir);
}

void src_image_stop(src_image *im)
{
	if (!im)
		return;
	if (im->pid > 0) {
		int64_t deadline = now_ms() + STOP_MS;
		int st;

		if (im->slot >= 0)
			running[im->slot].pid = 0;
		kill(im->pid, SIGTERM);
		while (waitpid(im->pid, &st, WNOHANG) == 0) {
			if (now_ms() > deadline) {
				kill(im->pid, SIGKILL);
				waitpid(im->pid, &st, 0);
				break;
			}
			usleep(10000);
		}
	}
	image_cleanup(im);
	free(im);
}

int src_image_start(const char *path, const char *format, src_image **ret)
{
	src_image *im = calloc(1, sizeof(*im));
	const char *tmp = getenv("TMPDIR");
	char opts[PATH_MAX * 2 + 128];
	size_t olen = 0;
	struct stat st;
	int64_t deadline;
	int r, logfd = -1, n;

	if (!im)
		return vbu_fail(-ENOMEM, "out of memory");
	/* Before qemu-nbd starts: without libnbd nothing could read what it serves. */
	if ((r = dlopen_libnbd()) < 0) {
		free(im);
		return r;
	}
	im->slot = -1;
	if (!src_image_format_valid(format)) {
		free(im);
		return vbu_fail(-EINVAL, "unknown image format '%s': use %s", format,
				SRC_IMAGE_FORMATS);
	}
	if (stat(path, &st) < 0) {
		r = -errno;
		free(im);
		return vbu_fail(r, "cannot open image '%s': %s", path, vbu_strerror(-r));
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		free(im);
		return vbu_fail(-EINVAL, "image '%s' is not a regular file or block device", path);
	}
	for (int i = 0; i < IMAGES_MAX; i++)
		if (!running[i].pid) {
			im->slot = i;
			break;
		}
	if (im->slot < 0) {
		free(im);
		return vbu_fail(-EMFILE, "too many images at once");
	}
	if (!tmp || tmp[0] != '/')
		tmp = "/tmp";
	n = snprintf(im->dir, sizeof(im->dir), "%s/vmbak-nbd.XXXXXX", tmp);
	if (n < 0 || (size_t)n >= sizeof(im->dir) || !mkdtemp(im->dir)) {
		r = n < 0 || (size_t)n >= sizeof(im->dir) ? -ENAMETOOLONG : -errno;
		free(im);
		return vbu_fail(r, "cannot make a private directory in '%s': %s", tmp,
				vbu_strerror(-r));
	}
	/* mkdtemp makes it 0700: only we (and root) reach the socket. */
	n = snprintf(im->sock, sizeof(im->sock), "%.*s/nbd.sock", PATH_MAX - 64, im->dir);
	if (n > 0)
		n = snprintf(im->log, sizeof(im->log), "%.*s/qemu-nbd.log", PATH_MAX - 64, im->dir);
	if (n > 0)
		n = snprintf(im->pid_file, sizeof(im->pid_file), "%.*s/qemu-nbd.pid", PATH_MAX - 64,
			     im->dir);
	if (n < 0 || strlen(im->dir) > PATH_MAX - 64 ||
	    strlen(im->sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		rmdir(im->dir);
		free(im);
		return vbu_fail(-ENAMETOOLONG, "temporary directory '%s' is too long for a socket",
				tmp);
	}
	/* The format is given, never probed; the file protocol (or host_device) is named, so
	 * that no path is read as another protocol ("nbd:...", "json:{...}"). */
	if ((r = opts_append(opts, sizeof(opts), &olen, "driver=")) < 0 ||
	    (r = opts_append(opts, sizeof(opts), &olen, format)) < 0) {
		rmdir(im->dir);
		free(im);
		return vbu_fail(r, "image path '%s' is too long", path);
	}
	n = snprintf(opts + olen, sizeof(opts) - olen, ",file.driver=%s,file.filename=",
		     S_ISBLK(st.st_mode) ? "host_device" : "file");
	if (n < 0 || (size_t)n >= sizeof(opts) - olen ||
	    (olen += (size_t)n, opts_append(opts, sizeof(opts), &olen, path) < 0)) {
		rmdir(im->dir);
		free(im);
		return vbu_fail(-ENAMETOOLONG, "image path '%s' is too long", path);
	}
	logfd = open(im->log, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (logfd < 0) {
		r = -errno;
		image_cleanup(im);
		free(im);
		return vbu_fail(r, "cannot create '%s': %s", im->log, vbu_strerror(-r));
	}
	memcpy(running[im->slot].dir, im->dir, sizeof(im->dir));
	memcpy(running[im->slot].sock, im->sock, sizeof(im->sock));
	memcpy(running[im->slot].log, im->log, sizeof(im->log));
	memcpy(running[im->slot].pid_file, im->pid_file, sizeof(im->pid_file));
	{
		pid_t parent = getpid();
		char sockarg[PATH_MAX + 16], pidarg[PATH_MAX + 16];

		snprintf(sockarg, sizeof(sockarg), "--socket=%s", im->sock);
		snprintf(pidarg, sizeof(pidarg), "--pid-file=%s", im->pid_file);
		im->pid = fork();
		if (im->pid == 0) {
			int devnull = open("/dev/null", O_RDONLY);
			char *argv[] = {"qemu-nbd",
					"--read-only",
					"--persistent",
					"--shared=8",
					"--cache=none",
					"--aio=threads",
					sockarg,
					pidarg,
					"--image-opts",
					opts,
					NULL};

			/* Dies with us, however we end. */
			prctl(PR_SET_PDEATHSIG, SIGTERM);
			if (getppid() != parent)
				_exit(127);
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			signal(SIGHUP, SIG_DFL);
			if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 ||
			    dup2(logfd, 2) < 0)
				_exit(127);
			execvp("qemu-nbd", argv);
			dprintf(2, "qemu-nbd: cannot run qemu-nbd: %s\n", strerror(errno));
			_exit(127);
		}
	}
	r = im->pid < 0 ? -errno : 0;
	close(logfd);
	if (r < 0) {
		image_cleanup(im);
		free(im);
		return vbu_fail(r, "cannot start qemu-nbd: %s", vbu_strerror(-r));
	}
	running[im->slot].pid = im->pid;
	deadline = now_ms() + START_MS;
	for (;;) {
		int wst;
		char why[512];

		if (waitpid(im->pid, &wst, WNOHANG) == im->pid) {
			im->pid = 0;
			server_reason(im, why, sizeof(why));
			r = vbu_fail(-EIO, "cannot open image '%s' as %s: %s", path, format, why);
			break;
		}
		if (server_ready(im)) {
			r = 0;
			break;
		}
		if (now_ms() > deadline) {
			r = vbu_fail(-ETIMEDOUT,
				     "cannot open image '%s': qemu-nbd did not start in "
				     "%d s",
				     path, START_MS / 1000);
			break;
		}
		usleep(20000);
	}
	if (r < 0) {
		src_image_stop(im);
		return r;
	}
	*ret = im;
	return 0;
}

const char *src_image_socket(const src_image *im)
{
	return im->sock;
}
