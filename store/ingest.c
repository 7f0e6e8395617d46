/* ingest.c: a new recovery point from disk images (see ingest.h).
 *
 * Per disk: the ranges to look at (the whole disk, or the changed extents) are walked with
 * SEEK_DATA/SEEK_HOLE (or a source object's map); chunks touching data are read into a batch
 * (with pread, or for a source object in merged reads handed over when the batch is full); worker threads check for
 * zeros and compute ids; chunks the vault lacks are compressed and encrypted by the workers and
 * stored in one commit per batch. Each chunk's new value is compared with what the base point
 * (the lineage's head) shows, and only differences become index entries, which are written
 * with the point's record in the final commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunkstore.h"
#include "extents.h"
#include "file.h"
#include "imap.h"
#include "index.h"
#include "ingest.h"
#include "jobs.h"
#include "rp_db.h"
#include "pins.h"
#include "pool.h"
#include "util.h"

#define BATCH_BYTES (16u << 20)
#define ZSTD_LEVEL 1
#define EXTENTS_MAX (256u << 20)
#define PREFETCH (64u << 20) /* bytes of changed extents read ahead (vbs_ingest_prefetch) */
#define FULL_AHEAD (2 * BATCH_BYTES) /* a whole disk: bytes the kernel reads ahead of the batch */
#define SOURCE_IO_MAX (4u << 20) /* a source object's reads: merged up to this length */

/* ---- state ---- */

struct job {
	uint64_t n;
	size_t len;
	uint8_t *data;
	uint8_t id[VBS_ID_LEN];
	uint8_t zero, store;
	uint8_t unread;	 /* data is still on the disk's file: hash_work reads it */
	uint8_t read_err; /* ... and could not: 1 an error (err), 2 a short read (of got bytes) */
	size_t got;
	int err;
	uint8_t *frame;
	size_t flen;
};

struct change {
	uint64_t n;
	uint8_t id[VBS_ID_LEN];
	uint8_t data;
};

struct base_entry {
	uint64_t n;
	uint8_t id[VBS_ID_LEN];
};

struct disk_state {
	const vbs_ingest_disk *in;
	int fd;
	uint64_t size;
	int cont;		 /* continues the base's lineage */
	uint64_t lineage;	 /* when cont */
	unsigned base_disk;	 /* when cont: the disk's number in the base point */
	vbs_imap *base_map;	 /* when cont: the base's checked map (every base read goes here) */
	int64_t data_chunks;	 /* running count */
	struct base_entry *base; /* full mode: the base's data chunks, sorted */
	size_t nbase;
	vbs_extent *ext; /* changed mode: ranges to read */
	size_t next;
	size_t ahead; /* changed mode: extents [0, ahead) were handed to the kernel's read-ahead */
	size_t ahead_from;     /* ... and ahead_bytes is the length of [ahead_from, ahead) */
	uint64_t ahead_bytes;
	uint64_t full_ahead; /* full mode: the disk up to here was handed to the kernel's read-ahead */
	struct change *ch;
	size_t nch, capch;
	uint64_t read_bytes, new_chunks, new_bytes;
};

/* One batch of chunks. Two exist: while the committer thread stores one, the caller and the
 * pool read, hash and encode the other. */
struct batch {
	struct disk_state *d; /* a batch never spans disks */
	struct job *jobs;
	size_t njobs, nitems, ncheck;
	uint8_t *buf, *frames;
	vbs_cs_item *items;
	uint8_t (*ids)[VBS_ID_LEN];
	uint8_t (*check)[VBS_ID_LEN]; /* reused chunks: re-checked and pinned in the commit */
	uint8_t *present;
	vbs_source_io *ios; /* a source object's reads, issued when the batch is full */
	size_t nios;
	int hashed;
	/* the commit's outcome */
	int r;
	uint64_t added, added_bytes;
	char err[512];
};

struct committer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct batch *todo; /* handed over; done says whether its commit has ended */
	int done, quit, up;
};

struct ingest {
	vbs_vault *v;
	const vbs_ingest_opts *o;
	vbs_pool *pool; /* the workers: hashing and encoding a batch with the caller */
	struct committer com;
	uint32_t cs;
	size_t batch_max;
	size_t frame_max;
	struct batch b[2];
	struct batch *cur;	/* being filled */
	struct batch *inflight; /* with the committer, or NULL */
	struct batch *work;	/* the pool's batch */
	uint64_t job;		/* the job that owns this ingest's pins (gc.h) */
	vbk_hmac *id_mac;	/* chunk ids: the vault's, or the VM's (dedup scope vm) */
	vbk_hmac *own_id_mac;	/* ... freed at the end when it is the VM's */
	vbs_rp *prev;		/* the VM's latest point at the start, or NULL */
	struct disk_state *disks;
	uint64_t done, total;
	int64_t last_progress;
};

/* ---- workers ---- */

/* Reads (where read_chunks left it to the workers), checks for zeros and computes the id of
 * each chunk: a worker hashes the chunk it has just read, still in its cache. */
static void hash_work(void *arg, unsigned k, unsigned nt)
{
	struct ingest *g = arg;
	struct batch *b = g->work;

	for (size_t i = k; i < b->njobs; i += nt) {
		struct job *j = &b->jobs[i];

		if (j->unread) {
			int r = vbu_pread_full(b->d->fd, j->data, j->len, j->n * g->cs, &j->got);

			j->unread = 0;
			if (r < 0 || j->got != j->len) {
				j->read_err = r < 0 ? 1 : 2;
				j->err = r < 0 ? r : -EIO;
				continue;
			}
		}
		j->zero = (uint8_t)vbs_is_zero(j->data, j->len);
		j->err = j->zero ? 0 : vbk_hmac_calc(g->id_mac, j->data, j->len, j->id);
	}
}

static void encode_work(void *arg, unsigned k, unsigned nt)
{
	struct ingest *g = arg;
	struct batch *b = g->work;

	for (size_t i = k; i < b->njobs; i += nt) {
		struct job *j = &b->jobs[i];
		if (!j->store)
			continue;
		j->err = vbs_chunk_encode(g->v, j->id, j->data, j->len, ZSTD_LEVEL, j->frame,
					  g->frame_max, &j->flen);
	}
}

/* ---- base values ---- */

static int base_collect(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN])
{
	struct disk_state *d = arg;

	if (d->nbase % 4096 == 0) {
		struct base_entry *b = realloc(d->base, (d->nbase + 4096) * sizeof(*b));
		if (!b)
			return -ENOMEM;
		d->base = b;
	}
	d->base[d->nbase].n = n;
	memcpy(d->base[d->nbase].id, id, VBS_ID_LEN);
	d->nbase++;
	return 0;
}

static int add_change(struct disk_state *d, uint64_t n, const uint8_t *id)
{
	if (d->nch == d->capch) {
		size_t cap = d->capch ? d->capch * 2 : 1024;
		struct change *c = realloc(d->ch, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		d->ch = c;
		d->capch = cap;
	}
	d->ch[d->nch].n = n;
	d->ch[d->nch].data = id != NULL;
	if (id)
		memcpy(d->ch[d->nch].id, id, VBS_ID_LEN);
	d->nch++;
	return 0;
}

static int cmp_change(const void *a, const void *b)
{
	uint64_t x = ((const struct change *)a)->n, y = ((const struct change *)b)->n;
	return x < y ? -1 : x > y;
}

static int cmp_base(const void *key, const void *elem)
{
	uint64_t n = *(const uint64_t *)key, m = ((const struct base_entry *)elem)->n;
	return n < m ? -1 : n > m;
}

/* What the base shows at chunk n: *data and id. Full mode keeps the base's data chunks in a
 * sorted array (chunks settle in any order: batches and holes interleave); changed mode looks
 * each chunk up (they are few). */
static int base_value(struct ingest *g, struct disk_state *d, uint64_t n, uint8_t *id, int *data)
{
	*data = 0;
	if (!d->cont)
		return 0;
	if (!d->ext) {
		const struct base_entry *b =
			d->nbase ? bsearch(&n, d->base, d->nbase, sizeof(*d->base), cmp_base)
				 : NULL;
		if (b) {
			memcpy(id, b->id, VBS_ID_LEN);
			*data = 1;
		}
		return 0;
	} else {
		MDB_txn *txn;
		int r = vbs_read_begin(g->v, &txn);

		if (r < 0)
			return r;
		r = vbs_imap_lookup(d->base_map, txn, n, id, data);
		vbs_read_end(g->v, txn);
		if (r == -EBADMSG)
			vbs_fail(r, "the index of disk '%s' of the base point '%s/%s' is damaged: "
				 "run 'vmbak verify'",
				 d->in->name, g->o->vm, g->prev->id);
		return r;
	}
}

/* Records chunk n's new value (id, or NULL for zeros/hole) against the base. */
static int settle(struct ingest *g, struct disk_state *d, uint64_t n, const uint8_t *id)
{
	uint8_t bid[VBS_ID_LEN];
	int bdata, r = base_value(g, d, n, bid, &bdata);

	if (r < 0)
		return r;
	if (!id && !bdata)
		return 0;
	if (id && bdata && memcmp(id, bid, VBS_ID_LEN) == 0)
		return 0;
	d->data_chunks += (id ? 1 : 0) - (bdata ? 1 : 0);
	return add_change(d, n, id);
}

/* Chunks [a, b) read as zeros because the source has a hole there. */
static int settle_hole(struct ingest *g, struct disk_state *d, uint64_t a, uint64_t b)
{
	int r;

	if (!d->cont || a >= b)
		return 0;
	if (!d->ext) {
		/* Only chunks where the base has data can change: find the first at or after a. */
		size_t lo = 0, hi = d->nbase;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (d->base[mid].n < a)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < d->nbase && d->base[lo].n < b; lo++)
			if ((r = settle(g, d, d->base[lo].n, NULL)) < 0)
				return r;
		return 0;
	}
	for (uint64_t n = a; n < b; n++)
		if ((r = settle(g, d, n, NULL)) < 0)
			return r;
	return 0;
}

/* ---- batches ---- */

static void progress(struct ingest *g, int force)
{
	int64_t now;

	if (!g->o->progress)
		return;
	now = vbu_mono_ns();
	if (!force && now - g->last_progress < 250000000)
		return;
	g->last_progress = now;
	g->o->progress(g->o->progress_arg, g->done, g->total);
}

/* The ids a batch stores, to skip repeats: an open-addressing set keyed by an id's first 8
 * bytes (ids are keyed hashes), so that a batch of thousands of small chunks costs O(n), not a
 * scan of every earlier chunk per chunk. */
struct idset {
	const uint8_t **slot;
	size_t mask;
};

static int idset_init(struct idset *s, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	s->slot = calloc(cap, sizeof(*s->slot));
	s->mask = cap - 1;
	return s->slot ? 0 : -ENOMEM;
}

/* 1 if id is in s; else adds it (the pointer: id must outlive s) and returns 0. */
static int idset_add(struct idset *s, const uint8_t *id)
{
	size_t i = (size_t)vbs_get64(id) & s->mask;

	for (; s->slot[i]; i = (i + 1) & s->mask)
		if (memcmp(s->slot[i], id, VBS_ID_LEN) == 0)
			return 1;
	s->slot[i] = id;
	return 0;
}

/* Hashes batch b (once), looks its chunks up, and encodes those the vault lacks. A chunk that
 * the batch with the committer (other) stores is skipped like a repeat within b: that commit
 * pins it for this job, and it ends before b's starts. */
static int prepare_batch(struct ingest *g, struct batch *b, const struct batch *other)
{
	struct idset seen;
	size_t nq = 0;
	int r;

	g->work = b;
	if (!b->hashed) {
		vbs_pool_run(g->pool, hash_work, g);
		for (size_t i = 0; i < b->njobs; i++) {
			struct job *j = &b->jobs[i];
			uint64_t off = j->n * g->cs;

			if (j->read_err == 2)
				return vbs_fail(-EIO, "'%s' shrank while it was read (at offset "
						"%llu)", b->d->in->path,
						(unsigned long long)(off + j->got));
			if (j->read_err)
				return vbs_fail(j->err, "cannot read '%s' at offset %llu: %s",
						b->d->in->path, (unsigned long long)off,
						vbu_strerror(-j->err));
			if (j->err < 0)
				return vbs_fail(j->err, "cannot hash chunk: %s",
						vbu_strerror(-j->err));
		}
		b->hashed = 1;
	}
	for (size_t i = 0; i < b->njobs; i++) {
		b->jobs[i].store = 0;
		if (!b->jobs[i].zero)
			memcpy(b->ids[nq++], b->jobs[i].id, VBS_ID_LEN);
	}
	r = vbs_cs_exists(g->v, NULL, nq, (const uint8_t(*)[VBS_ID_LEN])b->ids, b->present);
	if (r < 0)
		return r;
	vbs_test_pause("VMBAK_TEST_PAUSE_INGEST_BATCH");
	if (idset_init(&seen, b->njobs + (other ? other->nitems : 0)) < 0)
		return vbs_fail(-ENOMEM, "out of memory");
	for (size_t k = 0; other && k < other->nitems; k++)
		idset_add(&seen, other->items[k].id);
	nq = b->ncheck = b->nitems = 0;
	for (size_t i = 0; i < b->njobs; i++) {
		struct job *j = &b->jobs[i];

		if (j->zero)
			continue;
		if (b->present[nq++]) {
			memcpy(b->check[b->ncheck++], j->id, VBS_ID_LEN);
			continue;
		}
		j->store = !idset_add(&seen, j->id);
	}
	free(seen.slot);
	vbs_pool_run(g->pool, encode_work, g);
	for (size_t i = 0; i < b->njobs; i++) {
		struct job *j = &b->jobs[i];
		if (!j->store)
			continue;
		if (j->err < 0)
			return vbs_fail(j->err, "cannot encode chunk: %s", vbu_strerror(-j->err));
		b->items[b->nitems++] = (vbs_cs_item){j->id, j->frame, j->flen, (uint32_t)j->len};
	}
	return 0;
}

/* Stores the new chunks, and in the same commit re-checks the reused ones and pins them all:
 * a gc running meanwhile may have deleted a chunk found above (then -ESTALE). Runs on the
 * committer thread; store messages are per thread, so the message travels in b->err. */
static void commit_batch(struct ingest *g, struct batch *b)
{
	vbs_pin_batch pins = {g->job, b->items, b->nitems,
			      (const uint8_t(*)[VBS_ID_LEN])b->check, b->ncheck};

	vbs_clear_err();
	if (b->nitems == 0 && b->ncheck == 0) {
		b->r = 0;
		b->added = b->added_bytes = 0;
		return;
	}
	/* Lazy: nothing refers to these chunks before the point's own commit, which syncs. */
	b->r = vbs_cs_put(g->v, b->items, b->nitems, VBS_CS_LAZY, vbs_pins_take, &pins,
			  &b->added, &b->added_bytes);
	if (b->r < 0)
		snprintf(b->err, sizeof(b->err), "%s", vbs_errmsg());
}

/* After b's commit: retries it while chunks disappear under it, then settles its chunks. */
static int finish_batch(struct ingest *g, struct batch *b)
{
	struct disk_state *d = b->d;
	int r, attempt = 0;

	while (b->r == -ESTALE) {
		if (++attempt == 8)
			return vbs_fail(-EAGAIN, "chunks keep disappearing while they are stored");
		if ((r = prepare_batch(g, b, NULL)) < 0)
			return r;
		commit_batch(g, b);
	}
	if (b->r < 0)
		return vbs_fail(b->r, "%s", b->err);
	d->new_chunks += b->added;
	d->new_bytes += b->added_bytes;
	for (size_t i = 0; i < b->njobs; i++) {
		struct job *j = &b->jobs[i];
		if ((r = settle(g, d, j->n, j->zero ? NULL : j->id)) < 0)
			return r;
	}
	b->njobs = b->nitems = b->ncheck = 0;
	b->hashed = 0;
	progress(g, 0);
	return 0;
}

static void *committer_main(void *arg)
{
	struct ingest *g = arg;
	struct committer *c = &g->com;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->quit && (!c->todo || c->done))
			pthread_cond_wait(&c->cv, &c->lock);
		if (c->quit)
			break;
		pthread_mutex_unlock(&c->lock);
		commit_batch(g, c->todo);
		pthread_mutex_lock(&c->lock);
		c->done = 1;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Waits for the batch with the committer, if any. Returns it, or NULL. */
static struct batch *committer_wait(struct ingest *g)
{
	struct committer *c = &g->com;
	struct batch *b;

	if (!g->inflight)
		return NULL;
	pthread_mutex_lock(&c->lock);
	while (!c->done)
		pthread_cond_wait(&c->cv, &c->lock);
	b = c->todo;
	c->todo = NULL;
	pthread_mutex_unlock(&c->lock);
	g->inflight = NULL;
	return b;
}

/* Finishes the batch with the committer. */
static int drain(struct ingest *g)
{
	struct batch *b = committer_wait(g);

	return b ? finish_batch(g, b) : 0;
}

static int source_fill(struct batch *b);

/* Batch g->cur is full, or its disk ended: prepare it while the committer stores the one
 * before, then hand it over and fill the other. */
static int flush_batch(struct ingest *g)
{
	struct batch *b = g->cur;
	int r;

	if (b->njobs == 0)
		return 0;
	if ((r = source_fill(b)) < 0)
		return r;
	if ((r = prepare_batch(g, b, g->inflight)) < 0 || (r = drain(g)) < 0)
		return r;
	if (!g->com.up) {
		commit_batch(g, b);
		return finish_batch(g, b);
	}
	pthread_mutex_lock(&g->com.lock);
	g->com.todo = b;
	g->com.done = 0;
	pthread_cond_broadcast(&g->com.cv);
	pthread_mutex_unlock(&g->com.lock);
	g->inflight = b;
	g->cur = b == &g->b[0] ? &g->b[1] : &g->b[0];
	return 0;
}

/* A source object's read of chunk data (buf, len at off): merged with the batch's last read
 * when it continues it on the disk and in the buffer. */
static void queue_io(struct batch *bt, uint8_t *buf, size_t len, uint64_t off)
{
	vbs_source_io *last = bt->nios ? &bt->ios[bt->nios - 1] : NULL;

	if (last && last->off + last->len == off && (uint8_t *)last->buf + last->len == buf &&
	    last->len + len <= SOURCE_IO_MAX) {
		last->len += len;
		return;
	}
	bt->ios[bt->nios++] = (vbs_source_io){off, len, buf};
}

/* Reads the queued reads of batch b from its disk's source object. */
static int source_fill(struct batch *b)
{
	const vbs_source *src = b->d->in->src;
	int r;

	if (b->nios == 0)
		return 0;
	vbs_clear_err();
	r = src->ops->read(src->arg, b->ios, b->nios);
	b->nios = 0;
	if (r < 0 && !vbs_errmsg()[0])
		return vbs_fail(r, "cannot read disk '%s' from '%s': %s", b->d->in->name,
				src->label ? src->label : "its source", vbu_strerror(-r));
	return r < 0 ? r : 0;
}

/* A whole disk read from a file: keeps the kernel reading up to FULL_AHEAD bytes past off, so
 * that the disk stays busy while the batch before is hashed and encoded (the kernel's own
 * read-ahead stops when our reads do). Asked for in steps of half that, not for every chunk,
 * and never past limit, the end of the data the file has there: read-ahead of a hole fills
 * page-cache pages with zeros (a 1 TiB sparse disk took 46 s, 77% of it in memset). */
static void read_ahead(struct disk_state *d, uint64_t off, uint64_t limit)
{
	uint64_t end = off + FULL_AHEAD;

	if (d->ext || (d->full_ahead >= off + FULL_AHEAD / 2 && d->full_ahead <= limit))
		return;
	if (end > limit)
		end = limit;
	if (d->full_ahead < off)
		d->full_ahead = off;
	if (end > d->full_ahead)
		posix_fadvise(d->fd, (off_t)d->full_ahead, (off_t)(end - d->full_ahead),
			      POSIX_FADV_WILLNEED);
	d->full_ahead = end;
}

/* Reads chunks [a, b) into batches. */
static int read_chunks(struct ingest *g, struct disk_state *d, uint64_t a, uint64_t b)
{
	int r;

	for (uint64_t n = a; n < b; n++) {
		uint64_t off = n * g->cs;
		size_t len = off + g->cs > d->size ? (size_t)(d->size - off) : g->cs;
		struct batch *bt = g->cur;
		struct job *j = &bt->jobs[bt->njobs];

		j->n = n;
		j->len = len;
		j->unread = j->read_err = 0;
		j->data = bt->buf + bt->njobs * (size_t)g->cs;
		j->frame = bt->frames + bt->njobs * g->frame_max;
		bt->d = d;
		if (d->in->src) {
			/* Read with the batch's other chunks when it is full (source_fill). */
			queue_io(bt, j->data, len, off);
			goto next;
		}
		/* Read by the workers, each just before it hashes the chunk (hash_work). */
		read_ahead(d, off, b * g->cs < d->size ? b * g->cs : d->size);
		j->unread = 1;
next:
		d->read_bytes += len;
		g->done += len;
		if (++bt->njobs == g->batch_max && (r = flush_batch(g)) < 0)
			return r;
	}
	return 0;
}

/* Fails with "shrank" when the source is now shorter than the size taken at its start. */
static int check_shrunk(struct disk_state *d)
{
	struct stat st;

	if (fstat(d->fd, &st) < 0)
		return vbs_fail(-errno, "cannot stat '%s': %s", d->in->path, vbu_strerror(errno));
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < d->size)
		return vbs_fail(-EIO, "'%s' shrank while it was read (to %llu bytes)", d->in->path,
				(unsigned long long)st.st_size);
	return 0;
}

/* Data regions of [a, b) (byte offsets, a chunk-aligned): calls fn for chunk ranges that touch
 * data and for chunk ranges that are wholly holes. Used for reading and for sizing progress. */
static int walk_range(struct ingest *g, struct disk_state *d, uint64_t a, uint64_t b, int dry,
		      uint64_t *ret_bytes)
{
	uint64_t cs = g->cs, pos = a, bytes = 0;
	int r;

	while (pos < b) {
		off_t ds, he;
		uint64_t dstart, dend;

		if (d->in->src) {
			uint64_t sd = b, sh = b;
			const vbs_source *src = d->in->src;

			if (src->ops->map) {
				vbs_clear_err();
				r = src->ops->map(src->arg, pos, b, &sd, &sh);
				if (r < 0)
					return vbs_errmsg()[0] ? r
							       : vbs_fail(r, "cannot map disk '%s' of '%s': %s",
									  d->in->name, src->label ? src->label : "its source",
									  vbu_strerror(-r));
				if (sd < pos || sd > b || (sd < b && (sh <= sd || sh > b)))
					return vbs_fail(-EIO, "the source of disk '%s' reported a bad "
							"data map at offset %llu", d->in->name,
							(unsigned long long)pos);
			} else {
				sd = pos;
			}
			if (sd >= b) {
				if (!dry && (r = settle_hole(g, d, pos / cs, (b + cs - 1) / cs)) < 0)
					return r;
				break;
			}
			ds = (off_t)sd;
			he = (off_t)sh;
			goto have_data;
		}
		ds = lseek(d->fd, (off_t)pos, SEEK_DATA);
		if (ds < 0 && errno != ENXIO) {
			/* No hole support (a block device, an old file system): all data. */
			ds = (off_t)pos;
			he = (off_t)b;
		} else if (ds < 0 || (uint64_t)ds >= b) {
			/* ENXIO means no data from pos to the end of the file: a hole, or a file
			 * cut short since we took its size. Only the size tells them apart. */
			if (ds < 0 && (r = check_shrunk(d)) < 0)
				return r;
			if (!dry && (r = settle_hole(g, d, pos / cs, (b + cs - 1) / cs)) < 0)
				return r;
			break;
		} else {
			he = lseek(d->fd, ds, SEEK_HOLE);
			if (he < 0 || (uint64_t)he > b)
				he = (off_t)b;
		}
have_data:
		dstart = (uint64_t)ds / cs * cs;
		if (dstart < pos)
			dstart = pos;
		dend = ((uint64_t)he + cs - 1) / cs * cs;
		if (dend > b)
			dend = b;
		if (dry) {
			bytes += dend - dstart;
		} else {
			if ((r = settle_hole(g, d, pos / cs, dstart / cs)) < 0)
				return r;
			if ((r = read_chunks(g, d, dstart / cs, (dend + cs - 1) / cs)) < 0)
				return r;
		}
		pos = dend;
	}
	if (ret_bytes)
		*ret_bytes = bytes;
	return 0;
}

/* ---- read-ahead of changed extents ---- */

/* Extents [k, ...) of d: makes sure the kernel reads about PREFETCH bytes ahead of extent k.
 * Scattered small extents are where a cold disk hurts: this keeps many reads in flight. */
static void prefetch_ahead(struct disk_state *d, size_t k)
{
	if (d->fd < 0)
		return;
	for (; d->ahead_from < k && d->ahead_from < d->ahead; d->ahead_from++)
		d->ahead_bytes -= d->ext[d->ahead_from].len;
	if (d->ahead < k) {
		d->ahead = d->ahead_from = k;
		d->ahead_bytes = 0;
	}
	for (; d->ahead < d->next && d->ahead_bytes < PREFETCH; d->ahead++) {
		posix_fadvise(d->fd, (off_t)d->ext[d->ahead].off, (off_t)d->ext[d->ahead].len,
			      POSIX_FADV_WILLNEED);
		d->ahead_bytes += d->ext[d->ahead].len;
	}
}

void vbs_ingest_prefetch(const vbs_ingest_disk *disks, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct disk_state d = {.in = &disks[i], .fd = -1};
		char *text = NULL;
		size_t len, line;
		struct stat st;

		if (!disks[i].path || !disks[i].changed || vbu_read_file(disks[i].changed, EXTENTS_MAX, &text, &len) < 0)
			continue;
		d.fd = open(disks[i].path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (d.fd >= 0 && fstat(d.fd, &st) == 0) {
			if (S_ISREG(st.st_mode))
				d.size = (uint64_t)st.st_size;
			else if (S_ISBLK(st.st_mode) && ioctl(d.fd, BLKGETSIZE64, &d.size) < 0)
				d.size = 0;
		}
		if (d.size && vbs_extents_parse(text, len, d.size, 4096, &d.ext, &d.next,
						&line) == 0 && d.ext)
			prefetch_ahead(&d, 0);
		if (d.fd >= 0)
			close(d.fd);
		free(d.ext);
		free(text);
	}
}

/* ---- opening sources ---- */

static int open_source(struct disk_state *d)
{
	struct stat st;
	int fd;

	if (d->in->src) {
		if (!d->in->src->ops || !d->in->src->ops->read)
			return vbs_fail(-EINVAL, "disk '%s': a source object without a read",
					d->in->name);
		d->size = d->in->src->size;
		if (d->size == 0)
			return vbs_fail(-EINVAL, "source '%s' of disk '%s' is empty",
					d->in->src->label ? d->in->src->label : "", d->in->name);
		return 0;
	}
	fd = open(d->in->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vbs_fail(-errno, "cannot open disk '%s' source '%s': %s", d->in->name,
				d->in->path, vbu_strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return vbs_fail(-e, "cannot stat '%s': %s", d->in->path, vbu_strerror(e));
	}
	if (S_ISREG(st.st_mode)) {
		d->size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &d->size) < 0) {
			int e = errno;
			close(fd);
			return vbs_fail(-e, "cannot get the size of '%s': %s", d->in->path,
					vbu_strerror(e));
		}
	} else {
		close(fd);
		return vbs_fail(-EINVAL, "source '%s' of disk '%s' is not a regular file or block "
				"device", d->in->path, d->in->name);
	}
	if (d->size == 0) {
		close(fd);
		return vbs_fail(-EINVAL, "source '%s' of disk '%s' is empty", d->in->path,
				d->in->name);
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	d->fd = fd;
	return 0;
}

/* Full mode: the base's data chunks, group by group, each checked against its MAC. */
static int collect_checked(struct ingest *g, struct disk_state *d, MDB_txn *txn)
{
	uint64_t ng = vbs_imap_groups(d->base_map), nch = vbs_disk_chunks(d->size, g->cs);
	uint8_t (*ids)[VBS_ID_LEN] = malloc((size_t)VBS_GROUP_CHUNKS * VBS_ID_LEN);
	uint8_t *data = malloc(VBS_GROUP_CHUNKS);
	int r = ids && data ? 0 : -ENOMEM;

	for (uint64_t gi = 0; r == 0 && gi < ng; gi++) {
		r = vbs_imap_group(d->base_map, txn, gi, ids, data);
		for (uint64_t k = 0; r == 0 && k < VBS_GROUP_CHUNKS; k++) {
			uint64_t n = gi * VBS_GROUP_CHUNKS + k;
			if (n < nch && data[k])
				r = base_collect(d, n, ids[k]);
		}
	}
	free(ids);
	free(data);
	return r;
}

/* Decides the lineage of disk d: continue the base's when it has the disk at the same size
 * and is its lineage's head. */
static int plan_disk(struct ingest *g, struct disk_state *d)
{
	const vbs_disk *bd = NULL;
	MDB_txn *txn;
	uint64_t head = 0, lsize = 0;
	int r;

	for (size_t i = 0; g->prev && i < g->prev->n_disks; i++)
		if (strcmp(g->prev->disks[i].name, d->in->name) == 0) {
			bd = &g->prev->disks[i];
			d->base_disk = (unsigned)i;
		}
	if (bd && bd->size == d->size) {
		r = vbs_read_begin(g->v, &txn);
		if (r < 0)
			return r;
		r = vbs_lineage_get(g->v, txn, bd->lineage, &head, &lsize);
		if (r == 0 && head == g->prev->serial && lsize == d->size) {
			d->cont = 1;
			d->lineage = bd->lineage;
			d->data_chunks = (int64_t)bd->data_chunks;
			/* What the base holds is read through its checked map only, here and at
			 * the commit alike: both see the content its MACs name, whatever the
			 * index says in between. */
			r = vbs_imap_new(g->v, txn, g->prev->serial, d->base_disk, d->lineage,
					 d->size, &d->base_map);
			if (r == 0 && !d->in->changed && !d->in->changed_ext)
				r = collect_checked(g, d, txn);
		} else if (r == -ENOENT) {
			r = 0;
		}
		vbs_read_end(g->v, txn);
		if (r == -EBADMSG)
			return vbs_fail(r, "the index of disk '%s' of the base point '%s/%s' is "
					"damaged: run 'vmbak verify'",
					bd->name, g->o->vm, g->prev->id);
		if (r < 0)
			return vbs_fail(r, "cannot read the index of '%s/%s': %s", g->prev->id,
					bd->name, vbu_strerror(-r));
	}
	if (d->in->changed || d->in->changed_ext) {
		char *text = NULL;
		size_t len, line = 0;
		const char *what = d->in->changed ? "--changed" : "changed extents";

		if (!g->prev)
			return vbs_fail(-EINVAL, "%s for disk '%s': VM '%s' has no earlier "
					"recovery point to take the rest from", what, d->in->name, g->o->vm);
		if (!bd)
			return vbs_fail(-EINVAL, "%s for disk '%s': the latest point '%s' of "
					"VM '%s' has no such disk", what, d->in->name, g->prev->id, g->o->vm);
		if (bd->size != d->size)
			return vbs_fail(-EINVAL, "%s for disk '%s': its size changed from %llu "
					"to %llu bytes since '%s'", what, d->in->name,
					(unsigned long long)bd->size,
					(unsigned long long)d->size, g->prev->id);
		if (!d->cont)
			return vbs_fail(-EINVAL, "%s for disk '%s': point '%s' cannot be "
					"used as a base", what, d->in->name, g->prev->id);
		if (d->in->changed_ext) {
			r = vbs_extents_normalize(d->in->changed_ext, d->in->n_changed_ext, d->size,
						  g->cs, &d->ext, &d->next);
			if (r < 0)
				return vbs_fail(r, "changed extents of disk '%s': %s", d->in->name,
						r == -ERANGE ? "range beyond the end of the disk"
							     : vbu_strerror(-r));
			return 0;
		}
		r = vbu_read_file(d->in->changed, EXTENTS_MAX, &text, &len);
		if (r < 0)
			return vbs_fail(r, "cannot read changed extents '%s': %s", d->in->changed,
					vbu_strerror(-r));
		r = vbs_extents_parse(text, len, d->size, g->cs, &d->ext, &d->next, &line);
		free(text);
		if (r < 0)
			return vbs_fail(-EINVAL, "changed extents '%s' line %zu: %s", d->in->changed,
					line, r == -ERANGE ? "range beyond the end of the disk"
							   : "expected 'OFFSET LENGTH [TYPE]'");
		if (!d->ext) {
			/* Nothing changed: a valid, empty list. */
			d->ext = malloc(sizeof(*d->ext));
			if (!d->ext)
				return -ENOMEM;
		}
	}
	return 0;
}

/* ---- commit ---- */

/* The group MACs of disk number di of the new point (imap.h), from what this ingest trusts
 * alone: the base's groups as its own MACs certify them (checked again here, in the commit's
 * transaction) and this ingest's changes, applied in memory. The index at the new serial is
 * never read back to make a MAC: an entry planted there by someone else would be certified.
 * Groups nothing changed in keep the base's MACs. d->ch is sorted by chunk number. */
/* A new lineage has no entries yet: any there were planted (or the counter went back). */
static int lineage_empty(vbs_vault *v, MDB_txn *txn, uint64_t lineage)
{
	uint64_t en, es;
	MDB_cursor *c;
	MDB_val val;
	int r, rc = mdb_cursor_open(txn, v->dbi_idx, &c);

	if (rc)
		return vbs_mdb_err(rc);
	r = vbs_idx_seek(c, lineage, 0, UINT64_MAX, &en, &es, &val);
	mdb_cursor_close(c);
	if (r > 0)
		return vbs_fail(-EBADMSG, "vault '%s': the new lineage %llu already has index "
				"entries (damaged or tampered): run 'vmbak verify'",
				v->path, (unsigned long long)lineage);
	return r;
}

static int commit_map(vbs_vault *v, MDB_txn *txn, struct ingest *g, struct disk_state *d,
		      const vbs_rp *rp, unsigned di)
{
	uint64_t ng = vbs_disk_groups(d->size, v->chunk_size);
	uint64_t nch = vbs_disk_chunks(d->size, v->chunk_size), lineage = rp->disks[di].lineage;
	uint8_t *macs = NULL, *dirty = NULL, *data = NULL;
	uint8_t (*ids)[VBS_ID_LEN] = NULL;
	vbs_imap *base = NULL;
	size_t k = 0;
	int r = 0;

	macs = malloc(ng * VBS_GROUP_MAC_LEN);
	dirty = calloc(ng, 1);
	ids = malloc((size_t)VBS_GROUP_CHUNKS * VBS_ID_LEN);
	data = malloc(VBS_GROUP_CHUNKS);
	if (!macs || !dirty || !ids || !data) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < d->nch; i++)
		if (d->ch[i].n < nch)
			dirty[d->ch[i].n / VBS_GROUP_CHUNKS] = 1;
	if (d->cont)
		r = vbs_imap_new(v, txn, g->prev->serial, d->base_disk, lineage, d->size, &base);
	if (r < 0) {
		r = vbs_fail(r == -ENOENT ? -EBADMSG : r,
			     "the index of disk '%s' of the base point '%s/%s' is %s: run 'vmbak "
			     "verify'",
			     d->in->name, g->o->vm, g->prev->id,
			     r == -EBADMSG || r == -ENOENT ? "damaged" : "unreadable");
		goto out;
	}
	for (uint64_t gi = 0; gi < ng; gi++) {
		uint8_t *mac = macs + gi * VBS_GROUP_MAC_LEN;

		if (d->cont && !dirty[gi]) {
			memcpy(mac, vbs_imap_macs(base) + gi * VBS_GROUP_MAC_LEN, VBS_GROUP_MAC_LEN);
			continue;
		}
		if (d->cont) {
			r = vbs_imap_group(base, txn, gi, ids, data);
			if (r < 0) {
				r = vbs_fail(r, "the index of disk '%s' of the base point '%s/%s' is "
					     "damaged: run 'vmbak verify'",
					     d->in->name, g->o->vm, g->prev->id);
				goto out;
			}
		} else {
			memset(data, 0, VBS_GROUP_CHUNKS);
		}
		for (; k < d->nch && d->ch[k].n < (gi + 1) * VBS_GROUP_CHUNKS; k++) {
			size_t at = (size_t)(d->ch[k].n % VBS_GROUP_CHUNKS);
			data[at] = d->ch[k].data;
			if (d->ch[k].data)
				memcpy(ids[at], d->ch[k].id, VBS_ID_LEN);
		}
		r = vbs_group_mac(v, lineage, gi, nch, (const uint8_t (*)[VBS_ID_LEN])ids, data, mac,
				  NULL);
		if (r < 0)
			goto out;
	}
	r = vbs_dmap_put(v, txn, rp->serial, di, macs, ng);
out:
	vbs_imap_free(base);
	free(macs);
	free(dirty);
	free(ids);
	free(data);
	return r;
}

struct commit {
	struct ingest *g;
	vbs_rp *rp;
};

static int make_id(int64_t ns, int suffix, char *out)
{
	char t[21];
	int n;

	if (suffix < 0 || suffix > 99)
		return -EINVAL;
	vbu_format_time(ns / 1000000000, t);
	memcpy(out, t, sizeof(t)); /* 20 characters and the NUL */
	if (!suffix)
		return 0;
	n = snprintf(out + 20, VBS_RP_ID_MAX - 20, "-%02d", suffix);
	if (n < 0 || n >= VBS_RP_ID_MAX - 20)
		return -EINVAL;
	return 0;
}

static int commit_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct commit *c = arg;
	struct ingest *g = c->g;
	vbs_rp *rp = c->rp;
	uint64_t latest = 0, head, lsize;
	int64_t now = g->o->created_ns ? g->o->created_ns : vbu_now_ns();
	int r, suffix = 0;

	r = vbs_rp_latest_serial(v, txn, g->o->vm, &latest);
	if (r < 0 && r != -ENOENT)
		return vbs_fail(r, "cannot read vault '%s'", v->path);
	if ((r == -ENOENT ? 0 : latest) != (g->prev ? g->prev->serial : 0))
		return vbs_fail(-EBUSY, "another ingest of VM '%s' committed first; run it again",
				g->o->vm);
	if ((r = vbs_vm_ensure(v, txn, g->o->vm, &rp->vm_serial)) < 0 ||
	    (r = vbs_seq_next(v, txn, &rp->serial)) < 0)
		return vbs_fail(r, "cannot write vault '%s'", v->path);
	/* An id that sorts after the VM's latest, even if the clock went back. */
	if (g->prev && now < g->prev->created_ns)
		now = g->prev->created_ns;
	for (suffix = 0;; suffix++) {
		if (suffix > 99)
			return vbs_fail(-EBUSY, "too many points of VM '%s' in one second", g->o->vm);
		r = make_id(now, suffix, rp->id);
		if (r < 0)
			return vbs_fail(r, "cannot make a point id for VM '%s'", g->o->vm);
		if (g->prev && strcmp(rp->id, g->prev->id) <= 0)
			continue;
		r = vbs_rp_id_taken(v, txn, g->o->vm, rp->id);
		if (r < 0)
			return r;
		if (!r)
			break;
	}
	rp->created_ns = now;
	for (size_t i = 0; i < rp->n_disks; i++) {
		struct disk_state *d = &g->disks[i];
		vbs_disk *dk = &rp->disks[i];

		if (d->cont) {
			r = vbs_lineage_get(v, txn, d->lineage, &head, &lsize);
			if (r < 0 || head != g->prev->serial)
				return vbs_fail(-EBUSY, "another ingest of VM '%s' committed first; "
						"run it again", g->o->vm);
			dk->lineage = d->lineage;
		} else if ((r = vbs_seq_next(v, txn, &dk->lineage)) < 0) {
			return r;
		}
		/* In chunk order (batches and holes interleave), as commit_map applies them. */
		if (d->nch > 1)
			qsort(d->ch, d->nch, sizeof(*d->ch), cmp_change);
		if (!d->cont && (r = lineage_empty(v, txn, dk->lineage)) < 0)
			return r;
		for (size_t k = 0; k < d->nch; k++) {
			r = vbs_idx_put(v, txn, dk->lineage, rp->serial, d->ch[k].n,
					d->ch[k].data ? d->ch[k].id : NULL);
			if (r < 0)
				return vbs_fail(r, "cannot write the index of vault '%s'", v->path);
		}
		vbs_clear_err();
		if ((r = commit_map(v, txn, g, d, rp, (unsigned)i)) < 0)
			return vbs_errmsg()[0] ? r
					       : vbs_fail(r, "cannot write the index of vault '%s'",
							  v->path);
		if ((r = vbs_lineage_set(v, txn, dk->lineage, rp->serial, d->size)) < 0)
			return vbs_fail(r, "cannot write the index of vault '%s'", v->path);
		free(dk->escrow);
		dk->escrow = NULL;
		for (size_t e = 0; e < g->o->n_escrow; e++) {
			if (strcmp(g->o->escrow_disks[e], dk->name) != 0)
				continue;
			r = g->o->escrow(g->o->escrow_arg, g->o->vm, rp->id, dk->name, &dk->escrow,
					 &dk->escrow_len);
			if (r < 0)
				return r;
		}
	}
	r = vbs_rp_store(v, txn, rp);
	if (r < 0)
		return vbs_fail(r, "cannot write recovery point to vault '%s'", v->path);
	return 0;
}

/* The two big buffers of a batch, in huge pages where the kernel has them: touching 64 MiB of
 * fresh 4 KiB pages is a visible part of a small ingest, more so in a VM. */
static void *big_alloc(size_t len)
{
	void *p;

	if (posix_memalign(&p, 2u << 20, len) != 0)
		return NULL;
	madvise(p, len, MADV_HUGEPAGE);
	return p;
}

static int batch_alloc(struct ingest *g, struct batch *b)
{
	b->buf = big_alloc(g->batch_max * g->cs);
	b->frames = big_alloc(g->batch_max * g->frame_max);
	b->jobs = calloc(g->batch_max, sizeof(*b->jobs));
	b->items = calloc(g->batch_max, sizeof(*b->items));
	b->ids = calloc(g->batch_max, VBS_ID_LEN);
	b->check = calloc(g->batch_max, VBS_ID_LEN);
	b->present = calloc(g->batch_max, 1);
	b->ios = calloc(g->batch_max, sizeof(*b->ios));
	if (!b->buf || !b->frames || !b->jobs || !b->items || !b->ids || !b->check || !b->present ||
	    !b->ios)
		return vbs_fail(-ENOMEM, "out of memory");
	return 0;
}

static void batch_free(struct batch *b)
{
	free(b->buf);
	free(b->frames);
	free(b->jobs);
	free(b->items);
	free(b->ids);
	free(b->check);
	free(b->present);
	free(b->ios);
}

/* Without a committer thread (it could not start) batches commit in turn. */
static void committer_start(struct ingest *g)
{
	struct committer *c = &g->com;

	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->up = pthread_create(&c->thread, NULL, committer_main, g) == 0;
}

static void committer_stop(struct ingest *g)
{
	struct committer *c = &g->com;

	if (!c->up)
		return;
	pthread_mutex_lock(&c->lock);
	c->quit = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cv);
	c->up = 0;
}

/* ---- the whole ingest ---- */

static int check_opts(const vbs_ingest_opts *o)
{
	if (!vbu_name_valid(o->vm))
		return vbs_fail(-EINVAL, "invalid VM name '%s': use %s", o->vm, VBS_NAME_RULE);
	if (o->n_disks == 0 || o->n_disks > VBS_DISKS_MAX)
		return vbs_fail(-EINVAL, "a recovery point needs 1 to %d disks", VBS_DISKS_MAX);
	for (size_t i = 0; i < o->n_disks; i++) {
		if (!vbu_name_valid(o->disks[i].name))
			return vbs_fail(-EINVAL, "invalid disk name '%s': use %s", o->disks[i].name,
					VBS_NAME_RULE);
		if (!o->disks[i].path == !o->disks[i].src ||
		    (o->disks[i].changed && o->disks[i].changed_ext))
			return vbs_fail(-EINVAL, "disk '%s': give one source and at most one list of "
					"changed extents", o->disks[i].name);
		for (size_t k = 0; k < i; k++)
			if (strcmp(o->disks[i].name, o->disks[k].name) == 0)
				return vbs_fail(-EINVAL, "disk '%s' given twice", o->disks[i].name);
	}
	for (size_t e = 0; e < o->n_escrow; e++) {
		size_t i;
		for (i = 0; i < o->n_disks; i++)
			if (strcmp(o->escrow_disks[e], o->disks[i].name) == 0)
				break;
		if (i == o->n_disks)
			return vbs_fail(-EINVAL, "escrow for disk '%s', which is not in this ingest",
					o->escrow_disks[e]);
		if (!o->escrow)
			return vbs_fail(-EINVAL, "escrow requested without a key vault");
	}
	for (int k = 0; k < VBS_RP_FILES; k++)
		if (o->files[k].data && o->files[k].len > VBS_RP_FILE_MAX)
			return vbs_fail(-EFBIG, "the %s of VM '%s' has %zu bytes, more than %u",
					vbs_rp_file_name(k), o->vm, o->files[k].len,
					VBS_RP_FILE_MAX);
	return 0;
}

int vbs_ingest(vbs_vault *v, const vbs_ingest_opts *o, vbs_rp **ret)
{
	struct ingest g = {.v = v, .o = o};
	struct commit c = {&g, NULL};
	uint64_t own_job = 0;
	unsigned nt = o->threads;
	int r;

	vbs_clear_err();
	if ((r = check_opts(o)) < 0)
		return r;
	if (!v->unlocked)
		return vbs_fail(-ENOKEY, "vault '%s' is locked", v->path);
	if (v->replica)
		return vbs_fail(-EROFS, "vault '%s' is a replica: its points come by vmbak sync only",
				v->path);
	g.id_mac = v->id_mac;
	if (v->dedup_vm) {
		if ((r = vbs_vm_id_mac(v, o->vm, &g.own_id_mac)) < 0)
			return vbs_fail(r, "cannot set up the chunk ids of VM '%s'", o->vm);
		g.id_mac = g.own_id_mac;
	}
	/* Every ingest runs as a job: its pins belong to it (gc.h). */
	g.job = o->job_id;
	if (!g.job && (r = vbs_job_begin(v, "ingest", o->vm, &own_job)) < 0) {
		vbk_hmac_free(g.own_id_mac);
		return r;
	}
	if (!g.job)
		g.job = own_job;
	g.cs = v->chunk_size;
	g.batch_max = BATCH_BYTES / g.cs > 4 ? BATCH_BYTES / g.cs : 4;
	g.frame_max = vbs_frame_max(g.cs);
	for (int i = 0; i < 2; i++)
		if ((r = batch_alloc(&g, &g.b[i])) < 0)
			break;
	g.cur = &g.b[0];
	g.disks = calloc(o->n_disks, sizeof(*g.disks));
	c.rp = calloc(1, sizeof(*c.rp));
	if (c.rp)
		c.rp->disks = calloc(o->n_disks, sizeof(*c.rp->disks));
	if (r < 0 || !g.disks || !c.rp || !c.rp->disks) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < o->n_disks; i++) {
		g.disks[i].in = &o->disks[i];
		g.disks[i].fd = -1;
	}
	r = vbs_rp_latest(v, o->vm, &g.prev);
	if (r == -ENOENT) {
		g.prev = NULL;
		vbs_clear_err();
	} else if (r < 0) {
		goto out;
	}
	if (o->expect_base && strcmp(o->expect_base, g.prev ? g.prev->id : "") != 0) {
		r = vbs_fail(-EBUSY, "another ingest of VM '%s' committed first; run it again",
			     o->vm);
		goto out;
	}
	for (size_t i = 0; i < o->n_disks; i++) {
		struct disk_state *d = &g.disks[i];
		uint64_t bytes;

		if ((r = open_source(d)) < 0 || (r = plan_disk(&g, d)) < 0)
			goto out;
		if (d->ext) {
			for (size_t k = 0; k < d->next; k++)
				g.total += d->ext[k].len;
		} else if ((r = walk_range(&g, d, 0, d->size, 1, &bytes)) == 0) {
			g.total += bytes;
		}
	}
	if (nt == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nt = n > 0 ? (unsigned)n : 1;
	}
	if (nt > 64)
		nt = 64;
	r = vbs_pool_new(nt - 1, &g.pool);
	if (r < 0) {
		vbs_fail(r, "cannot start worker threads");
		goto out;
	}
	committer_start(&g);
	progress(&g, 1);
	for (size_t i = 0; i < o->n_disks; i++) {
		struct disk_state *d = &g.disks[i];

		if (d->ext) {
			for (size_t k = 0; k < d->next && r >= 0; k++) {
				prefetch_ahead(d, k);
				r = walk_range(&g, d, d->ext[k].off, d->ext[k].off + d->ext[k].len, 0,
					       NULL);
			}
		} else {
			r = walk_range(&g, d, 0, d->size, 0, NULL);
		}
		if (r >= 0)
			r = flush_batch(&g);
		if (r >= 0)
			r = drain(&g);
		if (r < 0)
			goto out;
		if (d->data_chunks < 0) {
			r = vbs_fail(-EBADMSG, "index of the base point of disk '%s' is inconsistent",
				     d->in->name);
			goto out;
		}
		snprintf(c.rp->disks[i].name, sizeof(c.rp->disks[i].name), "%s", d->in->name);
		c.rp->disks[i].size = d->size;
		c.rp->disks[i].data_chunks = (uint64_t)d->data_chunks;
		c.rp->disks[i].read_bytes = d->read_bytes;
		c.rp->disks[i].new_chunks = d->new_chunks;
		c.rp->disks[i].new_bytes = d->new_bytes;
		c.rp->disks[i].incremental = d->ext != NULL;
		if (d->in->read_note)
			snprintf(c.rp->disks[i].read_note, sizeof(c.rp->disks[i].read_note), "%s",
				 d->in->read_note);
		c.rp->n_disks = i + 1;
	}
	progress(&g, 1);
	snprintf(c.rp->vm, sizeof(c.rp->vm), "%s", o->vm);
	if (g.prev)
		snprintf(c.rp->parent, sizeof(c.rp->parent), "%s", g.prev->id);
	c.rp->retain_until = o->retain_until;
	c.rp->chunk_size = g.cs;
	if (o->source)
		c.rp->source = *o->source;
	for (int k = 0; k < VBS_RP_FILES; k++) {
		const vbs_rp_file *f = &o->files[k];

		if (!f->data)
			continue;
		c.rp->files[k].data = malloc(f->len ? f->len : 1);
		if (!c.rp->files[k].data) {
			r = vbs_fail(-ENOMEM, "out of memory");
			goto out;
		}
		memcpy(c.rp->files[k].data, f->data, f->len);
		c.rp->files[k].len = f->len;
	}
	vbs_test_pause("VMBAK_TEST_PAUSE_INGEST_COMMIT");
	r = vbs_write(v, commit_fn, &c);
	if (r < 0)
		goto out;
	*ret = c.rp;
	c.rp = NULL;
	r = 0;
out:
	committer_wait(&g); /* a failure can leave a batch with the committer */
	committer_stop(&g);
	vbs_pool_free(g.pool);
	if (g.job) {
		/* Kept on failure too: vbs_errmsg() of the failure must survive these calls. */
		char msg[VBS_JOB_ERROR_MAX];
		uint64_t rd = 0, st = 0;

		snprintf(msg, sizeof(msg), "%s", r < 0 ? vbs_errmsg() : "");
		for (size_t i = 0; g.disks && i < o->n_disks; i++) {
			rd += g.disks[i].read_bytes;
			st += g.disks[i].new_bytes;
		}
		vbs_pins_release(v, g.job);
		if (own_job)
			vbs_job_end(v, own_job, r < 0 ? VBS_JOB_FAILED : VBS_JOB_COMPLETED, rd, st,
				    msg);
		if (r < 0)
			vbs_fail(r, "%s", msg);
		else
			vbs_clear_err();
	}
	for (size_t i = 0; g.disks && i < o->n_disks; i++) {
		if (g.disks[i].fd >= 0)
			close(g.disks[i].fd);
		free(g.disks[i].base);
		free(g.disks[i].ext);
		free(g.disks[i].ch);
		vbs_imap_free(g.disks[i].base_map);
	}
	vbs_rp_free(c.rp);
	vbs_rp_free(g.prev);
	free(g.disks);
	vbk_hmac_free(g.own_id_mac);
	for (int i = 0; i < 2; i++)
		batch_free(&g.b[i]);
	return r;
}
