/* pool.c: worker threads (see pool.h).
 *
 * A run is a generation: the caller bumps gen and wakes every worker, each runs its share
 * once, and the last to finish wakes the caller. Posted tasks wait in a ring; a worker takes
 * one whenever no run of a generation it has not seen is pending, so a run never waits
 * behind more than the tasks already running. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

struct task {
	void (*fn)(void *arg);
	_Alignas(max_align_t) unsigned char arg[VBS_POOL_ARG_MAX];
};

struct worker_arg {
	vbs_pool *p;
	unsigned k;
};

struct vbs_pool {
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	pthread_t *threads;
	struct worker_arg *args;
	unsigned n;	  /* workers that started */
	unsigned gen;	  /* generation of runs */
	unsigned pending; /* workers still in this generation's run */
	int quit;
	void (*fn)(void *arg, unsigned k, unsigned n);
	void *arg;
	struct task q[VBS_POOL_QUEUE];
	size_t head, count;
};

static void *worker(void *a)
{
	struct worker_arg *wa = a;
	vbs_pool *p = wa->p;
	/* Runs start after vbs_pool_new returns, at generation 1: a worker that starts late
	 * still takes part in the first. */
	unsigned k = wa->k, seen = 0;
	struct task t;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->gen == seen && p->count == 0 && !p->quit)
			pthread_cond_wait(&p->go, &p->lock);
		if (p->quit)
			break;
		if (p->gen != seen) {
			seen = p->gen;
			pthread_mutex_unlock(&p->lock);
			p->fn(p->arg, k, p->n + 1);
			pthread_mutex_lock(&p->lock);
			if (--p->pending == 0)
				pthread_cond_signal(&p->done);
			continue;
		}
		t = p->q[p->head];
		p->head = (p->head + 1) % VBS_POOL_QUEUE;
		p->count--;
		pthread_mutex_unlock(&p->lock);
		t.fn(t.arg);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int vbs_pool_new(unsigned nworkers, vbs_pool **ret)
{
	vbs_pool *p = calloc(1, sizeof(*p));
	int r = 0;

	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	if (nworkers) {
		p->threads = calloc(nworkers, sizeof(*p->threads));
		p->args = calloc(nworkers, sizeof(*p->args));
		if (!p->threads || !p->args) {
			vbs_pool_free(p);
			return -ENOMEM;
		}
	}
	/* A failed start leaves a pool of the workers that did start. */
	for (unsigned i = 0; i < nworkers; i++) {
		p->args[i] = (struct worker_arg){p, i + 1};
		pthread_mutex_lock(&p->lock);
		if (pthread_create(&p->threads[p->n], NULL, worker, &p->args[i]) != 0) {
			pthread_mutex_unlock(&p->lock);
			r = -EAGAIN;
			break;
		}
		p->n++;
		pthread_mutex_unlock(&p->lock);
	}
	*ret = p;
	return r;
}

void vbs_pool_free(vbs_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	free(p->args);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	free(p);
}

unsigned vbs_pool_workers(const vbs_pool *p)
{
	return p ? p->n : 0;
}

void vbs_pool_run(vbs_pool *p, void (*fn)(void *arg, unsigned k, unsigned n), void *arg)
{
	if (!p || p->n == 0) {
		fn(arg, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->arg = arg;
	p->pending = p->n;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->lock);
	fn(arg, 0, p->n + 1);
	pthread_mutex_lock(&p->lock);
	while (p->pending)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

int vbs_pool_post(vbs_pool *p, void (*fn)(void *arg), const void *arg, size_t len)
{
	struct task *t;

	if (len > VBS_POOL_ARG_MAX)
		return -EINVAL;
	if (!p || p->n == 0)
		return -EAGAIN;
	pthread_mutex_lock(&p->lock);
	if (p->count == VBS_POOL_QUEUE || p->quit) {
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	t = &p->q[(p->head + p->count) % VBS_POOL_QUEUE];
	t->fn = fn;
	memcpy(t->arg, arg, len);
	p->count++;
	pthread_cond_signal(&p->go);
	pthread_mutex_unlock(&p->lock);
	return 0;
}
