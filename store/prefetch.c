/* prefetch.c: decoded chunks for the vault's readers (see prefetch.h).
 *
 * A reader that asks for small pieces one after the other (QEMU with cache=none, dd with
 * iflag=direct: no kernel read-ahead) would wait for each chunk's read and decode in turn.
 * image.c queues the chunks ahead of it here, and PF_THREADS threads decode them into the
 * shared cache, where the reader then finds them. Large requests (the kernel's own
 * read-ahead, 1 MiB) carry their read-ahead already and would only race the prefetcher for the
 * same chunks, so they do not trigger it. The queue is bounded; jobs that do not fit are
 * dropped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "prefetch.h"

#define PF_THREADS 2
#define PF_QUEUE 256

struct vbs_prefetch {
	vbs_vault *v;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	vbs_pf_job q[PF_QUEUE];
	size_t head, count;
	int quit;
	unsigned nthreads;
	pthread_t threads[PF_THREADS];
};

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

static void prefetch_one(vbs_vault *v, const vbs_pf_job *j)
{
	MDB_txn *txn;
	vbs_cache_entry *e;

	if (vbs_read_begin(v, &txn) < 0)
		return;
	if (vbs_point_exists(v, txn, j->serial) == 0 &&
	    vbs_chunk_cached(v, txn, NULL, j->id, &e) == 0)
		vbs_cache_release(v->cache, e);
	vbs_read_end(v, txn);
}

struct pf_call {
	vbs_vault *v;
	const vbs_pf_job *j;
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
	vbs_pf_job j;

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

int vbs_readers_start(vbs_vault *v)
{
	int r = 0;

	pthread_mutex_lock(&start_lock);
	if (!v->cache)
		r = vbs_cache_new(v->cache_bytes, &v->cache);
	if (r == 0 && !v->prefetch)
		prefetch_start(v); /* best effort: without it reads just do not run ahead */
	pthread_mutex_unlock(&start_lock);
	return r;
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

int vbs_prefetch_running(vbs_vault *v)
{
	return v->prefetch && v->prefetch->nthreads > 0;
}

void vbs_prefetch_queue(vbs_vault *v, const vbs_pf_job *jobs, size_t n)
{
	vbs_prefetch *p = v->prefetch;

	if (!p || n == 0)
		return;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < n && p->count < PF_QUEUE; i++) {
		p->q[(p->head + p->count) % PF_QUEUE] = jobs[i];
		p->count++;
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}
