/* cache.c: sharded LRU cache of decoded chunks (see cache.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

#define SHARDS 16

struct vbs_cache_entry {
	uint8_t id[VBS_ID_LEN];
	uint8_t *data;
	size_t len;
	unsigned refs;
	struct vbs_cache_entry *hnext;	      /* hash chain */
	struct vbs_cache_entry *prev, *next; /* LRU list, most recent first */
};

struct shard {
	pthread_mutex_t lock;
	vbs_cache_entry **buckets;
	size_t nbuckets; /* a power of two */
	vbs_cache_entry *head, *tail;
	size_t bytes, budget;
};

struct vbs_cache {
	struct shard shards[SHARDS];
};

/* Chunk ids are keyed hashes: their bytes are uniform, so they index directly. */
static uint64_t id_hash(const uint8_t *id)
{
	uint64_t h;
	memcpy(&h, id, sizeof(h));
	return h;
}

int vbs_cache_new(size_t budget, vbs_cache **ret)
{
	vbs_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->budget = budget / SHARDS;
		/* Room for the budget in the smallest chunks at about one entry a bucket. */
		s->nbuckets = 64;
		while (s->nbuckets < s->budget / 4096 && s->nbuckets < (1u << 20))
			s->nbuckets *= 2;
		s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
		if (!s->buckets) {
			vbs_cache_free(c);
			return -ENOMEM;
		}
	}
	*ret = c;
	return 0;
}

void vbs_cache_free(vbs_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < SHARDS; i++) {
		struct shard *s = &c->shards[i];
		vbs_cache_entry *e = s->head, *n;

		for (; e; e = n) {
			n = e->next;
			free(e->data);
			free(e);
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(c);
}

static struct shard *shard_of(vbs_cache *c, const uint8_t *id)
{
	return &c->shards[id[31] % SHARDS];
}

static vbs_cache_entry **slot(struct shard *s, const uint8_t *id)
{
	vbs_cache_entry **p = &s->buckets[id_hash(id) & (s->nbuckets - 1)];

	while (*p && memcmp((*p)->id, id, VBS_ID_LEN) != 0)
		p = &(*p)->hnext;
	return p;
}

static void lru_unlink(struct shard *s, vbs_cache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_front(struct shard *s, vbs_cache_entry *e)
{
	e->next = s->head;
	e->prev = NULL;
	if (s->head)
		s->head->prev = e;
	s->head = e;
	if (!s->tail)
		s->tail = e;
}

static void evict(struct shard *s)
{
	vbs_cache_entry *e = s->tail, *prev;

	while (s->bytes > s->budget && e) {
		prev = e->prev;
		if (e->refs == 0) {
			vbs_cache_entry **p = slot(s, e->id);
			*p = e->hnext;
			lru_unlink(s, e);
			s->bytes -= e->len;
			free(e->data);
			free(e);
		}
		e = prev;
	}
}

vbs_cache_entry *vbs_cache_get(vbs_cache *c, const uint8_t id[VBS_ID_LEN])
{
	struct shard *s = shard_of(c, id);
	vbs_cache_entry *e;

	pthread_mutex_lock(&s->lock);
	e = *slot(s, id);
	if (e) {
		e->refs++;
		lru_unlink(s, e);
		lru_front(s, e);
	}
	pthread_mutex_unlock(&s->lock);
	return e;
}

vbs_cache_entry *vbs_cache_put(vbs_cache *c, const uint8_t id[VBS_ID_LEN], uint8_t *buf,
			       size_t len)
{
	struct shard *s = shard_of(c, id);
	vbs_cache_entry *e, **p;

	pthread_mutex_lock(&s->lock);
	p = slot(s, id);
	if (*p) {
		e = *p;
		e->refs++;
		pthread_mutex_unlock(&s->lock);
		free(buf);
		return e;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		free(buf);
		return NULL;
	}
	memcpy(e->id, id, VBS_ID_LEN);
	e->data = buf;
	e->len = len;
	e->refs = 1;
	*p = e;
	lru_front(s, e);
	s->bytes += len;
	evict(s);
	pthread_mutex_unlock(&s->lock);
	return e;
}

void vbs_cache_release(vbs_cache *c, vbs_cache_entry *e)
{
	struct shard *s;

	if (!e)
		return;
	s = shard_of(c, e->id);
	pthread_mutex_lock(&s->lock);
	e->refs--;
	if (e->refs == 0 && s->bytes > s->budget)
		evict(s);
	pthread_mutex_unlock(&s->lock);
}

const uint8_t *vbs_cache_data(const vbs_cache_entry *e, size_t *ret_len)
{
	*ret_len = e->len;
	return e->data;
}
