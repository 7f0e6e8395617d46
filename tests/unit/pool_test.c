/* pool_test.c: the worker pool (store/pool.c): runs give every share exactly once and return
 * after all of them, posted tasks run with their own copy of the argument, a full queue or a
 * pool without workers refuses posts, and runs and posts mix. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"
#include "unit.h"

#define SHARES 1000

struct run_arg {
	int done[SHARES];
	unsigned n_seen;
};

static void share_fn(void *arg, unsigned k, unsigned n)
{
	struct run_arg *a = arg;

	__atomic_store_n(&a->n_seen, n, __ATOMIC_RELAXED);
	for (unsigned i = k; i < SHARES; i += n)
		__atomic_fetch_add(&a->done[i], 1, __ATOMIC_RELAXED);
}

static int posted_sum, posted_count;

static void post_fn(void *arg)
{
	int x;

	memcpy(&x, arg, sizeof(x));
	__atomic_fetch_add(&posted_sum, x, __ATOMIC_RELAXED);
	__atomic_fetch_add(&posted_count, 1, __ATOMIC_RELAXED);
}

static void check_run(vbs_pool *p, unsigned want_n)
{
	for (int round = 0; round < 200; round++) {
		struct run_arg a;
		int ok = 1;

		memset(&a, 0, sizeof(a));
		vbs_pool_run(p, share_fn, &a);
		for (int i = 0; i < SHARES; i++)
			ok &= a.done[i] == 1;
		CHECK(ok);
		CHECK_EQ_INT(a.n_seen, want_n);
	}
}

static void runs(void)
{
	vbs_pool *p = NULL;

	CHECK_EQ_INT(vbs_pool_new(3, &p), 0);
	CHECK_EQ_INT(vbs_pool_workers(p), 3);
	check_run(p, 4);
	vbs_pool_free(p);
	/* No workers: the caller does it all. */
	CHECK_EQ_INT(vbs_pool_new(0, &p), 0);
	check_run(p, 1);
	vbs_pool_free(p);
	vbs_pool_free(NULL);
}

static void posts(void)
{
	vbs_pool *p = NULL;
	int x, want = 0, accepted = 0;

	CHECK_EQ_INT(vbs_pool_new(2, &p), 0);
	posted_sum = posted_count = 0;
	for (x = 1; x <= 100; x++) {
		if (vbs_pool_post(p, post_fn, &x, sizeof(x)) == 0) {
			want += x; /* the copy was taken: x changes next */
			accepted++;
		}
	}
	CHECK(accepted > 0);
	/* Runs wait for nothing but the tasks already running. */
	check_run(p, 3);
	for (int i = 0; i < 500 && __atomic_load_n(&posted_count, __ATOMIC_RELAXED) < accepted; i++)
		usleep(2000);
	CHECK_EQ_INT(posted_count, accepted);
	CHECK_EQ_INT(posted_sum, want);
	CHECK_EQ_INT(vbs_pool_post(p, post_fn, &x, VBS_POOL_ARG_MAX + 1), -EINVAL);
	vbs_pool_free(p);
	/* A pool without workers takes no task. */
	CHECK_EQ_INT(vbs_pool_new(0, &p), 0);
	CHECK_EQ_INT(vbs_pool_post(p, post_fn, &x, sizeof(x)), -EAGAIN);
	vbs_pool_free(p);
}

/* Workers blocked in a task: the queue fills and then refuses, and nothing is lost. */
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static void blocked_fn(void *arg)
{
	pthread_mutex_lock(&gate);
	pthread_mutex_unlock(&gate);
	post_fn(arg);
}

static void full(void)
{
	vbs_pool *p = NULL;
	int one = 1, accepted = 0, refused = 0;

	CHECK_EQ_INT(vbs_pool_new(1, &p), 0);
	posted_sum = posted_count = 0;
	pthread_mutex_lock(&gate);
	for (int i = 0; i < VBS_POOL_QUEUE + 10; i++) {
		if (vbs_pool_post(p, blocked_fn, &one, sizeof(one)) == 0)
			accepted++;
		else
			refused++;
	}
	/* One task may have left the queue for the worker already. */
	CHECK(accepted == VBS_POOL_QUEUE || accepted == VBS_POOL_QUEUE + 1);
	CHECK(refused > 0);
	pthread_mutex_unlock(&gate);
	for (int i = 0; i < 1000 && __atomic_load_n(&posted_count, __ATOMIC_RELAXED) < accepted;
	     i++)
		usleep(2000);
	CHECK_EQ_INT(posted_count, accepted);
	vbs_pool_free(p);
}

int main(void)
{
	RUN(runs);
	RUN(posts);
	RUN(full);
	return unit_finish();
}
