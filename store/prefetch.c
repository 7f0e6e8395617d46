/* prefetch.c: decoded chunks for the vault's readers (see prefetch.h).
 *
 * A reader that asks for small pieces one after the other (QEMU with cache=none, dd with
 * iflag=direct: no kernel read-ahead) would wait for each chunk's read and decode in turn.
 * image.c queues the chunks ahead of it here, and the PF_THREADS workers of the vault's pool
 * (pool.h) decode them into the shared cache, where the reader then finds them. Large
 * requests (the kernel's own read-ahead, 1 MiB) carry their read-ahead already and would only
 * race the prefetcher for the same chunks, so they do not trigger it. The queue is bounded;
 * jobs that do not fit are dropped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "prefetch.h"

#define PF_THREADS 2

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

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

int vbs_chunk_cached(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
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

int vbs_point_exists(vbs_vault *v, MDB_txn *txn, uint64_t serial)
{
	uint8_t key[8];
	MDB_val k = {8, key}, d;
	int rc;

	vbs_put64(key, serial);
	rc = mdb_get(txn, v->dbi_rps, &k, &d);
	return rc ? vbs_mdb_err(rc) : 0;
}

/* One job, a task of the vault's pool: its own short read transaction. */
struct pf_task {
	vbs_vault *v;
	vbs_pf_job j;
};

static int prefetch_one(void *arg)
{
	const struct pf_task *t = arg;
	vbs_vault *v = t->v;
	MDB_txn *txn;
	vbs_cache_entry *e;

	if (vbs_read_begin(v, &txn) < 0)
		return 0;
	if (vbs_point_exists(v, txn, t->j.serial) == 0 &&
	    vbs_chunk_cached(v, txn, NULL, t->j.id, &e) == 0)
		vbs_cache_release(v->cache, e);
	vbs_read_end(v, txn);
	return 0;
}

static void prefetch_task(void *arg)
{
	/* Guarded: a damaged page fails this look-ahead, not the process. */
	(void)vbs_guarded(prefetch_one, arg);
}

int vbs_readers_start(vbs_vault *v)
{
	int r = 0;

	pthread_mutex_lock(&start_lock);
	if (!v->cache)
		r = vbs_cache_new(v->cache_bytes, &v->cache);
	/* Best effort: without the threads reads just do not run ahead. A pool that started
	 * some of them keeps those. */
	if (r == 0 && !v->prefetch && vbs_pool_new(PF_THREADS, &v->prefetch) == -ENOMEM)
		v->prefetch = NULL;
	pthread_mutex_unlock(&start_lock);
	return r;
}

void vbs_prefetch_stop(vbs_vault *v)
{
	vbs_pool_free(v->prefetch);
	v->prefetch = NULL;
}

int vbs_prefetch_running(vbs_vault *v)
{
	return vbs_pool_workers(v->prefetch) > 0;
}

void vbs_prefetch_queue(vbs_vault *v, const vbs_pf_job *jobs, size_t n)
{
	_Static_assert(sizeof(struct pf_task) <= VBS_POOL_ARG_MAX, "a job fits a pool task");

	for (size_t i = 0; i < n; i++) {
		struct pf_task t = {v, jobs[i]};

		if (vbs_pool_post(v->prefetch, prefetch_task, &t, sizeof(t)) < 0)
			break; /* the queue is full: the rest is dropped */
	}
}
