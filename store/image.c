/* image.c: reading a disk of a recovery point (see image.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "chunkstore.h"
#include "image.h"
#include "imap.h"
#include "rp.h"

struct vbs_image {
	vbs_vault *v;
	/* The chunk store's reader for this image alone (read-ahead follows it); NULL until the
	 * first read, or while one cannot be opened. */
	vbs_cs_reader *rd;
	uint64_t serial, lineage, size, data_bytes;
	uint32_t cs;
	vbs_imap *map; /* the disk's checked chunk map: every lookup goes through it */
	/* sequential detection, for decoding ahead */
	pthread_mutex_t lock;
	uint64_t next_off; /* where the last read ended */
	unsigned streak;   /* reads in a row that continued the one before */
	uint64_t pf_next;  /* chunks before this were handed to the prefetcher */
};

static pthread_mutex_t cache_init_lock = PTHREAD_MUTEX_INITIALIZER;
static int prefetch_start(vbs_vault *v);

int vbs_image_open(vbs_vault *v, uint64_t serial, unsigned disk_idx, vbs_image **ret)
{
	vbs_image *img = NULL;
	vbs_imap *map = NULL;
	vbs_rp *rp = NULL;
	MDB_txn *txn;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_rp_load(v, txn, serial, &rp);
	if (r == 0 && disk_idx >= rp->n_disks)
		r = vbs_fail(-ENOENT, "recovery point %s has no disk %u", rp->id, disk_idx);
	if (r == 0 && rp->chunk_size != v->chunk_size)
		r = vbs_fail(-EBADMSG, "recovery point %llu has chunk size %u, vault %u",
			     (unsigned long long)serial, rp->chunk_size, v->chunk_size);
	if (r == 0) {
		r = vbs_imap_new(v, txn, serial, disk_idx, rp->disks[disk_idx].lineage,
				 rp->disks[disk_idx].size, &map);
		if (r < 0)
			vbs_fail(r, "vault '%s': the index map of disk '%s' of point %s is %s",
				 v->path, rp->disks[disk_idx].name, rp->id,
				 r == -EBADMSG ? "damaged" : "unreadable");
	}
	vbs_read_end(v, txn);
	if (r < 0)
		goto out;
	pthread_mutex_lock(&cache_init_lock);
	if (!v->cache)
		r = vbs_cache_new(v->cache_bytes, &v->cache);
	if (r == 0 && !v->prefetch)
		prefetch_start(v); /* best effort: without it reads just do not run ahead */
	pthread_mutex_unlock(&cache_init_lock);
	img = r < 0 ? NULL : calloc(1, sizeof(*img));
	if (!img) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	img->v = v;
	img->serial = serial;
	img->lineage = rp->disks[disk_idx].lineage;
	img->size = rp->disks[disk_idx].size;
	img->data_bytes = vbs_disk_data_bytes(rp, &rp->disks[disk_idx]);
	img->cs = rp->chunk_size;
	img->map = map;
	map = NULL;
	pthread_mutex_init(&img->lock, NULL);
	*ret = img;
	r = 0;
out:
	vbs_imap_free(map);
	vbs_rp_free(rp);
	return r;
}

void vbs_image_close(vbs_image *img)
{
	if (!img)
		return;
	vbs_cs_reader_close(img->v, img->rd);
	vbs_imap_free(img->map);
	pthread_mutex_destroy(&img->lock);
	free(img);
}

uint64_t vbs_image_size(const vbs_image *img)
{
	return img->size;
}

uint64_t vbs_image_data_bytes(const vbs_image *img)
{
	return img->data_bytes;
}

struct decode_ctx {
	vbs_vault *v;
	const uint8_t *id;
	uint8_t *out;
	size_t len;
};

static int decode_cb(void *arg, const void *frame, size_t flen)
{
	struct decode_ctx *d = arg;
	return vbs_chunk_decode(d->v, d->id, frame, flen, d->out, d->v->chunk_size, &d->len);
}

/* A held cache entry for chunk id: from the cache, or fetched, checked and added. */
static int chunk_get(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t *id,
		     vbs_cache_entry **ret)
{
	struct decode_ctx d = {v, id, NULL, 0};
	vbs_cache_entry *e = vbs_cache_get(v->cache, id);
	int r;

	if (e) {
		*ret = e;
		return 0;
	}
	d.out = malloc(v->chunk_size);
	if (!d.out)
		return -ENOMEM;
	r = vbs_cs_get(v, txn, rd, id, decode_cb, &d);
	if (r < 0) {
		free(d.out);
		/* An index entry naming a chunk that is not there is damage too. */
		return r == -ENOENT ? -EBADMSG : r;
	}
	e = vbs_cache_put(v->cache, id, d.out, d.len);
	if (!e)
		return -ENOMEM;
	*ret = e;
	return 0;
}

/* 0 when the point still exists in txn, -ENOENT once deleted (lifecycle.h): its index
 * entries are gone or moved, so lookups would find other points' data. */
static int point_exists(vbs_vault *v, MDB_txn *txn, uint64_t serial)
{
	uint8_t key[8];
	MDB_val k = {8, key}, d;
	int rc;

	vbs_put64(key, serial);
	rc = mdb_get(txn, v->dbi_rps, &k, &d);
	return rc ? vbs_mdb_err(rc) : 0;
}

/* The image's own reader of the chunk store, opened on first use; NULL (the store's shared
 * one) while it cannot be opened, out of descriptors say. */
static vbs_cs_reader *image_reader(vbs_image *img)
{
	vbs_cs_reader *rd = __atomic_load_n(&img->rd, __ATOMIC_ACQUIRE);

	if (rd)
		return rd;
	pthread_mutex_lock(&img->lock);
	if (!img->rd && vbs_cs_reader_open(img->v, &rd) == 0)
		__atomic_store_n(&img->rd, rd, __ATOMIC_RELEASE);
	rd = img->rd;
	pthread_mutex_unlock(&img->lock);
	return rd;
}

/* ---- decoding ahead of sequential readers ----
 *
 * A reader that asks for small pieces one after the other (QEMU with cache=none, dd with
 * iflag=direct: no kernel read-ahead) would wait for each chunk's read and decode in turn.
 * After PF_STREAK such reads in a row, the next PF_AHEAD bytes of chunks are queued for
 * PF_THREADS threads that decode them into the shared cache, where the reader then finds
 * them. Large requests (the kernel's own read-ahead, 1 MiB) carry their read-ahead already and
 * would only race the prefetcher for the same chunks, so they do not trigger it. The queue is
 * bounded; jobs that do not fit are dropped. */

#define PF_THREADS 2
#define PF_QUEUE 256
#define PF_AHEAD (2u << 20)
#define PF_STREAK 2
#define PF_SMALL (256u << 10) /* requests at most this big trigger it */
#define PF_BATCH 64	      /* chunks queued after one read at most */

struct pf_job {
	uint64_t serial;
	uint8_t id[VBS_ID_LEN]; /* from the image's checked map */
};

struct vbs_prefetch {
	vbs_vault *v;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct pf_job q[PF_QUEUE];
	size_t head, count;
	int quit;
	unsigned nthreads;
	pthread_t threads[PF_THREADS];
};

static void prefetch_one(vbs_vault *v, const struct pf_job *j)
{
	MDB_txn *txn;
	vbs_cache_entry *e;

	if (vbs_read_begin(v, &txn) < 0)
		return;
	if (point_exists(v, txn, j->serial) == 0 && chunk_get(v, txn, NULL, j->id, &e) == 0)
		vbs_cache_release(v->cache, e);
	vbs_read_end(v, txn);
}

struct pf_call {
	vbs_vault *v;
	const struct pf_job *j;
};

static int prefetch_call(void *arg)
{
	const struct pf_call *c = arg;

	prefetch_one(c->v, c->j);
	return 0;
}

static void *prefetch_main(void *arg)
{
	vbs_prefetch *p = arg;
	struct pf_job j;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->quit && p->count == 0)
			pthread_cond_wait(&p->cv, &p->lock);
		if (p->quit)
			break;
		j = p->q[p->head];
		p->head = (p->head + 1) % PF_QUEUE;
		p->count--;
		pthread_mutex_unlock(&p->lock);
		{
			/* Guarded: a damaged page fails this look-ahead, not the process. */
			struct pf_call c = {p->v, &j};
			(void)vbs_guarded(prefetch_call, &c);
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Called under cache_init_lock. */
static int prefetch_start(vbs_vault *v)
{
	vbs_prefetch *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->v = v;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (unsigned i = 0; i < PF_THREADS; i++)
		if (pthread_create(&p->threads[p->nthreads], NULL, prefetch_main, p) == 0)
			p->nthreads++;
	v->prefetch = p;
	return 0;
}

void vbs_prefetch_stop(vbs_vault *v)
{
	vbs_prefetch *p = v->prefetch;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cv);
	free(p);
	v->prefetch = NULL;
}

/* After a read of [off, off + len) that succeeded, inside its transaction. */
static void prefetch_after(vbs_image *img, MDB_txn *txn, uint64_t off, size_t len)
{
	vbs_prefetch *p = img->v->prefetch;
	uint64_t end = off + len, from, to;
	struct pf_job jobs[PF_BATCH];
	size_t nj = 0;

	if (!p || p->nthreads == 0 || len == 0)
		return;
	pthread_mutex_lock(&img->lock);
	/* In a row: starts where the last ended, give or take requests served out of order. */
	if (off <= img->next_off + PF_AHEAD && img->next_off <= end + PF_AHEAD)
		img->streak++;
	else
		img->streak = img->pf_next = 0;
	img->next_off = end;
	if (img->streak < PF_STREAK || len > PF_SMALL) {
		pthread_mutex_unlock(&img->lock);
		return;
	}
	from = (end + img->cs - 1) / img->cs;
	if (from < img->pf_next)
		from = img->pf_next;
	to = (end + PF_AHEAD + img->cs - 1) / img->cs;
	if (to > (img->size + img->cs - 1) / img->cs)
		to = (img->size + img->cs - 1) / img->cs;
	if (to > from + PF_BATCH)
		to = from + PF_BATCH;
	/* Claimed now; looked up below without any lock held: a lookup may resolve a group of
	 * the index (imap.h), and a damaged page met there must not leave a lock taken. */
	if (to > img->pf_next)
		img->pf_next = to;
	pthread_mutex_unlock(&img->lock);
	for (; from < to; from++) {
		int data;

		if (vbs_imap_lookup(img->map, txn, from, jobs[nj].id, &data) < 0)
			break;
		if (data)
			jobs[nj++].serial = img->serial;
	}
	/* The queue is bounded: what does not fit is dropped. */
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < nj && p->count < PF_QUEUE; i++) {
		p->q[(p->head + p->count) % PF_QUEUE] = jobs[i];
		p->count++;
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}

/* Walks [off, off + len) (clipped to the image) chunk by chunk and hands each piece to fn: a
 * held cache entry and the piece's place in it, or NULL for zeros. fn owns the entry unless it
 * fails. */
typedef int (*piece_fn)(void *arg, vbs_cache_entry *e, const uint8_t *p, size_t len);

static int walk(vbs_image *img, size_t len, uint64_t off, piece_fn fn, void *arg, size_t *ret_got)
{
	vbs_vault *v = img->v;
	MDB_txn *txn = NULL;
	uint8_t id[VBS_ID_LEN];
	size_t done = 0;
	int r;

	*ret_got = 0;
	if (off >= img->size)
		return 0;
	if (len > img->size - off)
		len = (size_t)(img->size - off);
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = point_exists(v, txn, img->serial);
	if (r < 0)
		goto out;
	while (done < len) {
		uint64_t pos = off + done, n = pos / img->cs;
		size_t in = (size_t)(pos % img->cs), take = img->cs - in;
		vbs_cache_entry *e = NULL;
		const uint8_t *p = NULL;
		int data;

		if (take > len - done)
			take = len - done;
		r = vbs_imap_lookup(img->map, txn, n, id, &data);
		if (r < 0)
			goto out;
		if (data) {
			size_t plen;

			r = chunk_get(v, txn, image_reader(img), id, &e);
			if (r < 0)
				goto out;
			p = vbs_cache_data(e, &plen);
			/* The last chunk of a disk is short; any other short chunk is damage. */
			if (plen < in + take) {
				vbs_cache_release(v->cache, e);
				r = -EBADMSG;
				goto out;
			}
			p += in;
		}
		if ((r = fn(arg, e, p, take)) < 0) {
			if (e)
				vbs_cache_release(v->cache, e);
			goto out;
		}
		done += take;
	}
	r = 0;
	prefetch_after(img, txn, off, done);
out:
	vbs_read_end(v, txn);
	*ret_got = r < 0 ? 0 : done;
	return r;
}

struct copy_ctx {
	vbs_vault *v;
	uint8_t *out;
};

static int copy_piece(void *arg, vbs_cache_entry *e, const uint8_t *p, size_t len)
{
	struct copy_ctx *c = arg;

	if (e) {
		memcpy(c->out, p, len);
		vbs_cache_release(c->v->cache, e);
	} else {
		memset(c->out, 0, len);
	}
	c->out += len;
	return 0;
}

int vbs_image_read(vbs_image *img, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	struct copy_ctx c = {img->v, buf};

	return walk(img, len, off, copy_piece, &c, ret_got);
}

struct seg_ctx {
	vbs_image_seg *segs;
	size_t n, max;
};

static int add_seg(void *arg, vbs_cache_entry *e, const uint8_t *p, size_t len)
{
	struct seg_ctx *c = arg;
	vbs_image_seg *last = c->n ? &c->segs[c->n - 1] : NULL;

	if (!e && last && !last->entry) {
		last->len += len; /* one run of zeros */
		return 0;
	}
	if (c->n == c->max)
		return -EOVERFLOW; /* a bound below vbs_image_segs_max() */
	c->segs[c->n++] = (vbs_image_seg){e, p, len};
	return 0;
}

size_t vbs_image_segs_max(const vbs_image *img, size_t len)
{
	return len / img->cs + 2;
}

int vbs_image_read_segs(vbs_image *img, size_t len, uint64_t off, vbs_image_seg *segs,
			size_t max, size_t *ret_n, size_t *ret_got)
{
	struct seg_ctx c = {segs, 0, max};
	int r = walk(img, len, off, add_seg, &c, ret_got);

	if (r < 0) {
		vbs_image_segs_release(img->v, segs, c.n);
		c.n = 0;
	}
	*ret_n = c.n;
	return r;
}

void vbs_image_segs_release(vbs_vault *v, vbs_image_seg *segs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (segs[i].entry)
			vbs_cache_release(v->cache, segs[i].entry);
}

int vbs_image_seek(vbs_image *img, uint64_t off, int whence, uint64_t *ret)
{
	vbs_vault *v = img->v;
	MDB_txn *txn = NULL;
	uint64_t n, found;
	int r;

	if (off >= img->size)
		return -ENXIO;
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = point_exists(v, txn, img->serial);
	if (r < 0)
		goto out;
	n = off / img->cs;
	r = vbs_imap_next(img->map, txn, n, whence == SEEK_DATA, &found);
	if (r < 0)
		goto out;
	if (whence == SEEK_DATA && found == vbs_disk_chunks(img->size, img->cs)) {
		r = -ENXIO;
		goto out;
	}
	*ret = found == n ? off : found * img->cs;
	if (*ret > img->size)
		*ret = img->size;
out:
	vbs_read_end(v, txn);
	return r;
}
