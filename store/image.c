/* image.c: reading a disk of a recovery point (see image.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "chunkstore.h"
#include "image.h"
#include "index.h"
#include "rp.h"

struct vbs_image {
	vbs_vault *v;
	uint64_t serial, lineage, size, data_bytes;
	uint32_t cs;
};

static pthread_mutex_t cache_init_lock = PTHREAD_MUTEX_INITIALIZER;

int vbs_image_open(vbs_vault *v, uint64_t serial, unsigned disk_idx, vbs_image **ret)
{
	vbs_image *img;
	vbs_rp *rp;
	int r;

	r = vbs_rp_get_serial(v, serial, &rp);
	if (r < 0)
		return r;
	if (disk_idx >= rp->n_disks) {
		vbs_rp_free(rp);
		return vbs_fail(-ENOENT, "recovery point %s has no disk %u", rp->id, disk_idx);
	}
	pthread_mutex_lock(&cache_init_lock);
	if (!v->cache)
		r = vbs_cache_new(v->cache_bytes, &v->cache);
	pthread_mutex_unlock(&cache_init_lock);
	img = r < 0 ? NULL : calloc(1, sizeof(*img));
	if (!img) {
		vbs_rp_free(rp);
		return vbs_fail(-ENOMEM, "out of memory");
	}
	img->v = v;
	img->serial = serial;
	img->lineage = rp->disks[disk_idx].lineage;
	img->size = rp->disks[disk_idx].size;
	img->data_bytes = vbs_disk_data_bytes(rp, &rp->disks[disk_idx]);
	img->cs = rp->chunk_size;
	vbs_rp_free(rp);
	if (img->cs != v->chunk_size) {
		uint32_t cs = img->cs;
		free(img);
		return vbs_fail(-EBADMSG, "recovery point %llu has chunk size %u, vault %u",
				(unsigned long long)serial, cs, v->chunk_size);
	}
	*ret = img;
	return 0;
}

void vbs_image_close(vbs_image *img)
{
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
static int chunk_get(vbs_vault *v, MDB_txn *txn, const uint8_t *id, vbs_cache_entry **ret)
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
	r = vbs_cs_get(v, txn, id, decode_cb, &d);
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

/* Walks [off, off + len) (clipped to the image) chunk by chunk and hands each piece to fn: a
 * held cache entry and the piece's place in it, or NULL for zeros. fn owns the entry unless it
 * fails. */
typedef int (*piece_fn)(void *arg, vbs_cache_entry *e, const uint8_t *p, size_t len);

static int walk(vbs_image *img, size_t len, uint64_t off, piece_fn fn, void *arg, size_t *ret_got)
{
	vbs_vault *v = img->v;
	MDB_txn *txn = NULL;
	MDB_cursor *c = NULL;
	uint8_t id[VBS_ID_LEN];
	size_t done = 0;
	int r, rc;

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
	rc = mdb_cursor_open(txn, v->dbi_idx, &c);
	if (rc) {
		r = vbs_mdb_err(rc);
		goto out;
	}
	while (done < len) {
		uint64_t pos = off + done, n = pos / img->cs;
		size_t in = (size_t)(pos % img->cs), take = img->cs - in;
		vbs_cache_entry *e = NULL;
		const uint8_t *p = NULL;
		int data;

		if (take > len - done)
			take = len - done;
		r = vbs_idx_lookup(v, c, img->lineage, img->serial, n, id, &data);
		if (r < 0)
			goto out;
		if (data) {
			size_t plen;

			r = chunk_get(v, txn, id, &e);
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
out:
	if (c)
		mdb_cursor_close(c);
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
	MDB_cursor *c = NULL;
	uint64_t n, end = (img->size + img->cs - 1) / img->cs, found;
	int r, rc;

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
	rc = mdb_cursor_open(txn, v->dbi_idx, &c);
	if (rc) {
		r = vbs_mdb_err(rc);
		goto out;
	}
	n = off / img->cs;
	if (whence == SEEK_DATA) {
		r = vbs_idx_next_data(v, c, img->lineage, img->serial, n, end, &found);
		if (r < 0)
			goto out;
		*ret = found == n ? off : found * img->cs;
	} else {
		r = vbs_idx_next_hole(v, c, img->lineage, img->serial, n, end, &found);
		if (r < 0)
			goto out;
		*ret = found == n ? off : found * img->cs;
		if (*ret > img->size)
			*ret = img->size;
	}
	r = 0;
out:
	if (c)
		mdb_cursor_close(c);
	vbs_read_end(v, txn);
	return r;
}
