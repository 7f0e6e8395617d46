/* pool.h: worker threads, the one pool store/ uses for work in parallel: an ingest's hashing
 * and encoding (every worker and the caller take a share of one batch, vbs_pool_run) and the
 * mount's decoding ahead of sequential readers (small tasks queued and run later by any
 * worker, vbs_pool_post).
 *
 * An ingest's committer is not a worker of a pool: it must run while the workers are busy
 * with the next batch (that overlap is the point of it), and it holds one batch at a time in
 * order; it stays a thread of its own (ingest.c).
 *
 * Thread safety: vbs_pool_run is called by one thread at a time (the pool's owner);
 * vbs_pool_post from any thread, also while a run is going on (its tasks wait for the run).
 * Tasks run outside every lock of the pool.
 */
#ifndef VMBAK_POOL_H
#define VMBAK_POOL_H

#include <stddef.h>

typedef struct vbs_pool vbs_pool;

/* The bytes a posted task carries (copied into the pool's queue), and the queue's length. */
#define VBS_POOL_ARG_MAX 48
#define VBS_POOL_QUEUE 256

/* A pool of nworkers threads (0: none; runs then happen on the caller alone and posts are
 * refused). -ENOMEM; -EAGAIN when not every thread started (the pool then has the ones that
 * did: vbs_pool_workers says how many, and it must still be freed). */
int vbs_pool_new(unsigned nworkers, vbs_pool **ret);
/* Stops the workers after their current task (queued tasks are dropped) and joins them.
 * NULL-safe. */
void vbs_pool_free(vbs_pool *p);
unsigned vbs_pool_workers(const vbs_pool *p);

/* Runs fn(arg, k, n) once for every k in [0, n), n = workers + 1: the caller is k = 0, and
 * returns when every call has. */
void vbs_pool_run(vbs_pool *p, void (*fn)(void *arg, unsigned k, unsigned n), void *arg);

/* Queues fn with a copy of len bytes at arg (at most VBS_POOL_ARG_MAX), run later by one
 * worker with a pointer to that copy. -EAGAIN when the queue is full or the pool has no
 * worker: the task is dropped (posts are for work that may be skipped). */
int vbs_pool_post(vbs_pool *p, void (*fn)(void *arg), const void *arg, size_t len);

#endif
