/* cache_test.c: the shared cache of decoded chunks (store/cache.c): hits and misses, one entry
 * per id, eviction of the least recently used entries over the budget, never of a held one,
 * and many threads at once. */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "unit.h"

#define SHARDS 16 /* cache.c: entries are spread by the id's last byte */

/* An id in shard `shard`, distinct per k. */
static void make_id(uint8_t id[VBS_ID_LEN], unsigned k, unsigned shard)
{
	memset(id, 0, VBS_ID_LEN);
	id[0] = (uint8_t)k;
	id[1] = (uint8_t)(k >> 8);
	id[2] = (uint8_t)(k >> 16);
	id[VBS_ID_LEN - 1] = (uint8_t)(shard + SHARDS * (k % 8));
}

static uint8_t *buf_of(unsigned k, size_t len)
{
	uint8_t *b = malloc(len);

	CHECK(b != NULL);
	for (size_t i = 0; b && i < len; i++)
		b[i] = (uint8_t)(k * 31 + i);
	return b;
}

static int holds(const vbs_cache_entry *e, unsigned k, size_t len)
{
	size_t l;
	const uint8_t *p = vbs_cache_data(e, &l);

	if (l != len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(k * 31 + i))
			return 0;
	return 1;
}

static void hits(void)
{
	vbs_cache *c;
	vbs_cache_entry *e, *e2;
	uint8_t id[VBS_ID_LEN], id2[VBS_ID_LEN];

	CHECK_EQ_INT(vbs_cache_new(1 << 20, &c), 0);
	make_id(id, 1, 0);
	make_id(id2, 2, 0);
	CHECK(vbs_cache_get(c, id) == NULL);
	e = vbs_cache_put(c, id, buf_of(1, 100), 100);
	CHECK(e != NULL && holds(e, 1, 100));
	vbs_cache_release(c, e);
	e = vbs_cache_get(c, id);
	CHECK(e != NULL && holds(e, 1, 100));
	CHECK(vbs_cache_get(c, id2) == NULL);
	/* A second put of the same id keeps the first entry (and frees the new buffer). */
	e2 = vbs_cache_put(c, id, buf_of(7, 50), 50);
	CHECK(e2 == e && holds(e2, 1, 100));
	vbs_cache_release(c, e2);
	vbs_cache_release(c, e);
	/* An empty entry (a zero-length chunk) is an entry too. */
	e = vbs_cache_put(c, id2, buf_of(2, 1), 0);
	CHECK(e != NULL);
	vbs_cache_release(c, e);
	CHECK((e = vbs_cache_get(c, id2)) != NULL);
	vbs_cache_release(c, e);
	vbs_cache_release(c, NULL);
	vbs_cache_free(c);
	vbs_cache_free(NULL);
}

/* Budget: 16 shards of 4 entries of 1 KiB. */
#define ELEN 1024u
#define PER_SHARD 4u

static void eviction(void)
{
	vbs_cache *c;
	vbs_cache_entry *e, *held;
	uint8_t id[VBS_ID_LEN];

	CHECK_EQ_INT(vbs_cache_new(SHARDS * PER_SHARD * ELEN, &c), 0);
	/* Fill shard 3 to its budget: everything stays. */
	for (unsigned k = 0; k < PER_SHARD; k++) {
		make_id(id, k, 3);
		e = vbs_cache_put(c, id, buf_of(k, ELEN), ELEN);
		CHECK(e != NULL);
		vbs_cache_release(c, e);
	}
	for (unsigned k = 0; k < PER_SHARD; k++) {
		make_id(id, k, 3);
		CHECK((e = vbs_cache_get(c, id)) != NULL);
		vbs_cache_release(c, e);
	}
	/* Touch 0: now 1 is the least recently used, and the next put evicts it alone. */
	make_id(id, 0, 3);
	CHECK((e = vbs_cache_get(c, id)) != NULL);
	vbs_cache_release(c, e);
	make_id(id, 100, 3);
	CHECK((e = vbs_cache_put(c, id, buf_of(100, ELEN), ELEN)) != NULL);
	vbs_cache_release(c, e);
	make_id(id, 1, 3);
	CHECK(vbs_cache_get(c, id) == NULL);
	for (unsigned k = 0; k < PER_SHARD; k++) {
		if (k == 1)
			continue;
		make_id(id, k, 3);
		CHECK((e = vbs_cache_get(c, id)) != NULL && holds(e, k, ELEN));
		vbs_cache_release(c, e);
	}
	/* Another shard is not touched by shard 3's traffic. */
	make_id(id, 5, 9);
	CHECK((e = vbs_cache_put(c, id, buf_of(5, ELEN), ELEN)) != NULL);
	vbs_cache_release(c, e);
	for (unsigned k = 200; k < 200 + 4 * PER_SHARD; k++) {
		uint8_t id3[VBS_ID_LEN];

		make_id(id3, k, 3);
		CHECK((e = vbs_cache_put(c, id3, buf_of(k, ELEN), ELEN)) != NULL);
		vbs_cache_release(c, e);
	}
	CHECK((e = vbs_cache_get(c, id)) != NULL && holds(e, 5, ELEN));
	vbs_cache_release(c, e);

	/* A held entry is never evicted, however far over budget: it goes once released. */
	make_id(id, 300, 3);
	held = vbs_cache_put(c, id, buf_of(300, ELEN), ELEN);
	CHECK(held != NULL);
	for (unsigned k = 400; k < 400 + 4 * PER_SHARD; k++) {
		uint8_t id3[VBS_ID_LEN];

		make_id(id3, k, 3);
		CHECK((e = vbs_cache_put(c, id3, buf_of(k, ELEN), ELEN)) != NULL);
		vbs_cache_release(c, e);
	}
	CHECK(holds(held, 300, ELEN));
	CHECK((e = vbs_cache_get(c, id)) == held);
	vbs_cache_release(c, e);
	/* Entries bigger than the shard's budget: served while held, gone after. */
	{
		uint8_t big_id[VBS_ID_LEN];
		vbs_cache_entry *big;

		make_id(big_id, 500, 3);
		big = vbs_cache_put(c, big_id, buf_of(500, 8 * ELEN), 8 * ELEN);
		CHECK(big != NULL && holds(big, 500, 8 * ELEN));
		vbs_cache_release(c, big);
		CHECK(vbs_cache_get(c, big_id) == NULL);
	}
	vbs_cache_release(c, held);
	/* Over budget now that it is released: the shard drops back to its budget. */
	{
		unsigned present = 0;

		for (unsigned k = 0; k < 600; k++) {
			make_id(id, k, 3);
			if ((e = vbs_cache_get(c, id)) != NULL) {
				present++;
				vbs_cache_release(c, e);
			}
		}
		CHECK(present <= PER_SHARD);
	}
	vbs_cache_free(c);
}

/* Threads getting, putting and releasing over a small cache: every entry read holds its own
 * id's bytes, and the held ones survive eviction (asan and the data check catch a free). */
#define THREADS 4
#define ROUNDS 20000
#define KEYS 300u

static vbs_cache *shared;
static int bad_data;

static void *hammer(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	vbs_cache_entry *held[4] = {0};
	unsigned held_k[4] = {0};

	for (unsigned r = 0; r < ROUNDS; r++) {
		unsigned k, slot = r % 4;
		uint8_t id[VBS_ID_LEN];
		vbs_cache_entry *e;

		seed = seed * 1103515245u + 12345u;
		k = (seed >> 8) % KEYS;
		make_id(id, k, k % SHARDS);
		e = vbs_cache_get(shared, id);
		if (!e) {
			/* buf_of without CHECK: the counters of unit.h are not for threads */
			uint8_t *b = malloc(256 + k % 7);

			for (size_t i = 0; b && i < 256 + k % 7; i++)
				b[i] = (uint8_t)(k * 31 + i);
			e = b ? vbs_cache_put(shared, id, b, 256 + k % 7) : NULL;
		}
		if (!e || !holds(e, k, 256 + k % 7))
			__atomic_store_n(&bad_data, 1, __ATOMIC_RELAXED);
		/* Keep a few entries held across other threads' puts. */
		if (held[slot]) {
			if (!holds(held[slot], held_k[slot], 256 + held_k[slot] % 7))
				__atomic_store_n(&bad_data, 1, __ATOMIC_RELAXED);
			vbs_cache_release(shared, held[slot]);
		}
		held[slot] = e;
		held_k[slot] = k;
	}
	for (int i = 0; i < 4; i++)
		vbs_cache_release(shared, held[i]);
	return NULL;
}

static void threads(void)
{
	pthread_t t[THREADS];

	CHECK_EQ_INT(vbs_cache_new(SHARDS * 4 * 300, &shared), 0);
	for (uintptr_t i = 0; i < THREADS; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, hammer, (void *)(i + 1)), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(bad_data, 0);
	vbs_cache_free(shared);
}

int main(void)
{
	mallopt(M_PERTURB, 0xa5); /* freed memory is overwritten: reading a freed entry shows */
	RUN(hits);
	RUN(eviction);
	RUN(threads);
	return unit_finish();
}
