/* image.c: reading a disk of a recovery point (see image.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "imap.h"
#include "prefetch.h"
#include "rp.h"
#include "rp_db.h"

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
	r = vbs_readers_start(v);
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

/* After a read of [off, off + len) that succeeded, inside its transaction: small reads in a
 * row queue the chunks ahead of them for the vault's prefetch threads (prefetch.h). */
static void prefetch_after(vbs_image *img, MDB_txn *txn, uint64_t off, size_t len)
{
	uint64_t end = off + len, from, to;
	vbs_pf_job jobs[VBS_PF_BATCH];
	size_t nj = 0;

	if (!vbs_prefetch_running(img->v) || len == 0)
		return;
	pthread_mutex_lock(&img->lock);
	/* In a row: starts where the last ended, give or take requests served out of order. */
	if (off <= img->next_off + VBS_PF_AHEAD && img->next_off <= end + VBS_PF_AHEAD)
		img->streak++;
	else
		img->streak = img->pf_next = 0;
	img->next_off = end;
	if (img->streak < VBS_PF_STREAK || len > VBS_PF_SMALL) {
		pthread_mutex_unlock(&img->lock);
		return;
	}
	from = (end + img->cs - 1) / img->cs;
	if (from < img->pf_next)
		from = img->pf_next;
	to = (end + VBS_PF_AHEAD + img->cs - 1) / img->cs;
	if (to > (img->size + img->cs - 1) / img->cs)
		to = (img->size + img->cs - 1) / img->cs;
	if (to > from + VBS_PF_BATCH)
		to = from + VBS_PF_BATCH;
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
	if (vbs_cs_takes_hints(img->v)) {
		uint8_t ids[VBS_PF_BATCH][VBS_ID_LEN];

		for (size_t i = 0; i < nj; i++)
			memcpy(ids[i], jobs[i].id, VBS_ID_LEN);
		vbs_cs_hint(img->v, nj, (const uint8_t(*)[VBS_ID_LEN])ids);
	}
	vbs_prefetch_queue(img->v, jobs, nj);
}

/* A read of several chunks: the store may start reading the later ones while the first is
 * decoded (vbs_cs_hint). Chunks already decoded in the cache are not hinted. Of a read of
 * PARALLEL_MIN chunks or more (dd bs=1M: 16), the prefetch threads decode the second half,
 * from its end, while this thread decodes the first: one request is no longer one core's
 * worth of decoding at a time. */
#define HINT_MAX 64
#define PARALLEL_MIN 4
static void hint_chunks(vbs_image *img, MDB_txn *txn, uint64_t off, size_t len)
{
	uint8_t ids[HINT_MAX][VBS_ID_LEN];
	uint64_t n = off / img->cs, last = (off + len - 1) / img->cs;
	vbs_pf_job jobs[HINT_MAX / 2];
	size_t k = 0, nj = 0;

	if (len == 0 || n == last)
		return;
	for (; n <= last && k < HINT_MAX; n++) {
		vbs_cache_entry *e;
		int data;

		if (vbs_imap_lookup(img->map, txn, n, ids[k], &data) < 0)
			break;
		if (!data)
			continue;
		if ((e = vbs_cache_get(img->v->cache, ids[k])) != NULL) {
			vbs_cache_release(img->v->cache, e);
			continue;
		}
		k++;
	}
	vbs_cs_hint(img->v, k, (const uint8_t(*)[VBS_ID_LEN])ids);
	if (k < PARALLEL_MIN || !vbs_prefetch_running(img->v))
		return;
	for (size_t i = k; i-- > k / 2;) {
		jobs[nj].serial = img->serial;
		memcpy(jobs[nj++].id, ids[i], VBS_ID_LEN);
	}
	vbs_prefetch_queue(img->v, jobs, nj);
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
	r = vbs_point_exists(v, txn, img->serial);
	if (r < 0)
		goto out;
	hint_chunks(img, txn, off, len);
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

			r = vbs_chunk_cached(v, txn, image_reader(img), id, &e);
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
	r = vbs_point_exists(v, txn, img->serial);
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
