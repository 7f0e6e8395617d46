/* verify_chunks.c: the later stages of a verify: walking the disks of the points in scope for the
 * chunk ids they refer to, reading each distinct chunk (or a sample), and mapping bad chunks
 * back to (point, disk, chunk number). */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunkstore.h"
#include "imap.h"
#include "index.h"
#include "jobs.h"
#include "rp.h"
#include "seal.h"
#include "util.h"
#include "verify.h"
#include "verify_internal.h"

/* ---- walking the disks of a point ---- */

static int point_exists(struct ctx *c, uint64_t serial)
{
	uint8_t sk[8];
	MDB_val d;
	int r;

	vbs_put64(sk, serial);
	r = vbs_vfy_get_val(c, c->v->dbi_rps, sk, 8, &d);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

/* Every data chunk of one disk, in order, as the point sees it: the entry with the largest
 * serial <= the point's for each chunk number (see index.h). Returns 1 when the point was
 * deleted while it was walked (then the walk stops there). */
static int walk_disk(struct ctx *c, size_t pt, size_t di, walk_fn fn)
{
	const vbs_rp *rp = c->pts[pt];
	const vbs_disk *dk = &rp->disks[di];
	uint64_t end = vbs_vfy_nchunks(dk->size, rp->chunk_size), n = 0;
	MDB_cursor *cur = NULL;
	int rc, r = 0;

	while (n < end) {
		uint8_t key[VBS_IDX_KEY_LEN];
		MDB_val k = {sizeof(key), key}, d;
		uint64_t en, kl;
		int malformed;

		if (!cur) {
			rc = mdb_cursor_open(c->txn, c->v->dbi_idx, &cur);
			if (rc)
				return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "idx");
		}
		vbs_idx_key(key, dk->lineage, n, rp->serial);
		rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc) {
			r = vbs_vfy_db_fail(c, vbs_mdb_err(rc), "idx");
			break;
		}
		if (vbs_idx_key_lineage(k.mv_data, k.mv_size, &kl) < 0 || kl != dk->lineage)
			break;
		vbs_map_touched(c->v, k.mv_size + d.mv_size + 16); /* the map trim bounds the RSS */
		/* A malformed key in the lineage: every lookup landing on it fails, so chunk n is
		 * unreadable; the walk goes on with the next. */
		malformed = vbs_idx_key_decode(k.mv_data, k.mv_size, NULL, &en, NULL) < 0;
		if (malformed)
			en = n;
		if (en > n) {
			n = en; /* the entries at en may all be newer than the point: seek again */
			continue;
		}
		if (malformed || d.mv_size != 0) {
			int good = !malformed && d.mv_size == VBS_ID_LEN;
			uint8_t id[VBS_ID_LEN];

			if (good)
				memcpy(id, d.mv_data, VBS_ID_LEN);
			r = fn(c, pt, di, n, good ? id : NULL);
			if (r < 0)
				break;
		}
		n++;
		if (vbs_vfy_txn_due(c)) {
			mdb_cursor_close(cur);
			cur = NULL;
			if ((r = vbs_vfy_txn_renew(c)) < 0)
				return r;
			r = point_exists(c, rp->serial);
			if (r <= 0)
				return r < 0 ? vbs_vfy_db_fail(c, r, "rps") : 1;
			r = 0;
		}
	}
	if (cur)
		mdb_cursor_close(cur);
	return r;
}

int vbs_vfy_walk_all(struct ctx *c, walk_fn fn)
{
	int r;

	for (size_t i = 0; i < c->npts; i++)
		for (size_t di = 0; di < c->pts[i]->n_disks; di++) {
			r = walk_disk(c, i, di, fn);
			if (r < 0)
				return r;
			if (r == 1)
				break;
		}
	return 0;
}

static int add_hit(struct ctx *c, size_t pt, size_t di, uint64_t n, vbs_verify_kind kind)
{
	int r = vbs_vfy_grow((void **)&c->hits, &c->caphits, c->nhits, sizeof(*c->hits), 64);

	if (r < 0)
		return r;
	c->hits[c->nhits++] = (struct hit){pt, (uint32_t)di, kind, n};
	return 0;
}

static int cmp_ref(const void *a, const void *b)
{
	return memcmp(a, b, VBS_ID_LEN);
}

/* Sorts the references and merges duplicates (keeping the largest need). */
void vbs_vfy_refs_compact(struct ctx *c)
{
	size_t w = 0;

	if (c->nrefs == 0)
		return;
	qsort(c->refs, c->nrefs, sizeof(*c->refs), cmp_ref);
	for (size_t i = 1; i < c->nrefs; i++) {
		if (memcmp(c->refs[i].id, c->refs[w].id, VBS_ID_LEN) == 0) {
			if (c->refs[i].need > c->refs[w].need)
				c->refs[w].need = c->refs[i].need;
		} else {
			c->refs[++w] = c->refs[i];
		}
	}
	c->nrefs = w + 1;
}

int vbs_vfy_collect_fn(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id)
{
	const vbs_rp *rp = c->pts[pt];
	uint64_t left = rp->disks[di].size - n * rp->chunk_size;
	int r;

	if (!id)
		return c->slice == 0 ? add_hit(c, pt, di, n, VBS_VERIFY_INDEX) : 0;
	if (vbs_id_slice(id, c->nslices) != c->slice)
		return 0;
	if (c->nrefs == c->caprefs) {
		vbs_vfy_refs_compact(c);
		/* Grow when deduplication no longer frees half of the array. */
		if ((c->caprefs == 0 || c->nrefs > c->caprefs / 2) &&
		    (r = vbs_vfy_grow((void **)&c->refs, &c->caprefs, c->caprefs, sizeof(*c->refs),
				      65536)) < 0)
			return r;
	}
	memcpy(c->refs[c->nrefs].id, id, VBS_ID_LEN);
	c->refs[c->nrefs].need = left < rp->chunk_size ? (uint32_t)left : rp->chunk_size;
	c->nrefs++;
	return 0;
}

static int cmp_bad(const void *a, const void *b)
{
	return memcmp(((const struct bad *)a)->id, ((const struct bad *)b)->id, VBS_ID_LEN);
}

int vbs_vfy_map_fn(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id)
{
	struct bad key, *b;

	if (!id)
		return 0; /* reported by the first walk */
	memcpy(key.id, id, VBS_ID_LEN);
	b = bsearch(&key, c->bad, c->nbad, sizeof(*c->bad), cmp_bad);
	if (!b)
		return 0;
	b->seen = 1;
	return add_hit(c, pt, di, n, b->kind);
}

/* ---- reading chunks ---- */

struct decode {
	vbs_vault *v;
	const uint8_t *id;
	uint8_t *out;
	size_t len;
};

static int decode_cb(void *arg, const void *frame, size_t flen)
{
	struct decode *d = arg;
	return vbs_chunk_decode(d->v, d->id, frame, flen, d->out, d->v->chunk_size, &d->len);
}

/* Reads and authenticates one chunk: 0 whole, or the kind of damage, or an error. */
static int check_chunk(struct ctx *c, const struct ref *ref, size_t *ret_len)
{
	struct decode d = {c->v, ref->id, c->buf, 0};
	int r = vbs_cs_get(c->v, c->txn, NULL, ref->id, decode_cb, &d);

	if (r == -ENOENT)
		return VBS_VERIFY_CHUNK_MISSING;
	if (r == -EBADMSG) {
		/* The frame, or the page it is on: LMDB then fails every later call of this
		 * transaction, so the next chunk is read in a new one. */
		r = vbs_vfy_txn_renew(c);
		return r < 0 ? r : VBS_VERIFY_CHUNK_BAD;
	}
	if (r == -ENOKEY)
		return vbs_fail(r, "vault '%s' is locked: verifying needs its passphrase",
				c->v->path);
	if (r < 0)
		return vbs_vfy_db_fail(c, r, "chunks");
	*ret_len = d.len;
	return d.len < ref->need ? VBS_VERIFY_CHUNK_BAD : 0;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Keeps a random sample of the references, in id order: the first k of a partial
 * Fisher-Yates shuffle. */
int vbs_vfy_sample(struct ctx *c)
{
	double p = c->o->sample;
	uint64_t seed = c->o->seed ? c->o->seed : c->res->seed, s, k; /* one seed, every slice */

	if (p <= 0 || p >= 100)
		return 0;
	if (!seed) {
		int r = vbk_random(&seed, sizeof(seed));
		if (r < 0)
			return vbs_fail(r, "cannot get a random seed: %s", vbu_strerror(-r));
		if (!seed)
			seed = 1;
	}
	c->res->seed = seed;
	s = seed;
	k = (uint64_t)((double)c->nrefs * p / 100.0);
	if ((double)k < (double)c->nrefs * p / 100.0)
		k++; /* rounded up: a sample of anything is at least one chunk */
	if (k > c->nrefs)
		k = c->nrefs;
	for (uint64_t i = 0; i < k; i++) {
		uint64_t j = i + splitmix64(&s) % (c->nrefs - i);
		struct ref t = c->refs[i];

		c->refs[i] = c->refs[j];
		c->refs[j] = t;
	}
	c->nrefs = (size_t)k;
	if (c->nrefs)
		qsort(c->refs, c->nrefs, sizeof(*c->refs), cmp_ref);
	return 0;
}

/* The chunks are read in id order, which is no order on the disk: the store is told of the
 * next HINT_WINDOW ahead (chunkstore.h), so that their reads are on their way, in the order the
 * device likes, while the ones before are checked. */
#define HINT_WINDOW 64
static void hint_ahead(struct ctx *c, size_t i, int renewed)
{
	uint8_t ids[2 * HINT_WINDOW][VBS_ID_LEN];
	size_t from = i + HINT_WINDOW, to, k = 0;

	if (renewed || i == 0)
		from = i; /* a new transaction: what was hinted is hinted again */
	else if (i % HINT_WINDOW != 0)
		return;
	to = i + 2 * HINT_WINDOW < c->nrefs ? i + 2 * HINT_WINDOW : c->nrefs;
	for (; from < to; from++)
		memcpy(ids[k++], c->refs[from].id, VBS_ID_LEN);
	vbs_cs_hint(c->v, k, (const uint8_t(*)[VBS_ID_LEN])ids);
}

/* The total for progress: exact in the last slice, else the index entries (an upper bound of
 * the distinct references). */
static uint64_t progress_total(const struct ctx *c)
{
	uint64_t known = c->done + c->nrefs;

	if (c->slice + 1 == c->nslices || c->total < known)
		return known;
	return c->total;
}

int vbs_vfy_read_chunks(struct ctx *c)
{
	int r;

	for (size_t i = 0; i < c->nrefs; i++) {
		size_t len = 0;
		int renewed = 0;

		if (c->o->stop && *c->o->stop)
			return vbs_fail(-EINTR, "verify of vault '%s' interrupted", c->v->path);
		if (vbs_vfy_txn_due(c)) {
			if ((r = vbs_vfy_txn_renew(c)) < 0)
				return r;
			renewed = 1;
		}
		if (vbs_cs_takes_hints(c->v))
			hint_ahead(c, i, renewed);
		r = check_chunk(c, &c->refs[i], &len);
		if (r < 0)
			return r;
		c->res->chunks_checked++;
		c->res->bytes_checked += len;
		if (r > 0) {
			int g = vbs_vfy_grow((void **)&c->bad, &c->capbad, c->nbad, sizeof(*c->bad),
					     16);
			if (g < 0)
				return g;
			memcpy(c->bad[c->nbad].id, c->refs[i].id, VBS_ID_LEN);
			c->bad[c->nbad].need = c->refs[i].need;
			c->bad[c->nbad].kind = (vbs_verify_kind)r;
			c->bad[c->nbad].seen = 0;
			c->nbad++;
		}
		vbs_vfy_progress(c, c->done + i + 1, progress_total(c), 0);
	}
	if (c->slice + 1 == c->nslices)
		vbs_vfy_progress(c, c->done + c->nrefs, c->done + c->nrefs, 1);
	return 0;
}

/* A chunk that read bad is read again in a fresh transaction: what gc freed and an ingest
 * stored again meanwhile is whole. Keeps only those still bad, sorted by id. */
int vbs_vfy_recheck_bad(struct ctx *c)
{
	size_t w = 0;
	int r;

	if (c->nbad == 0)
		return 0;
	if ((r = vbs_vfy_txn_renew(c)) < 0)
		return r;
	for (size_t i = 0; i < c->nbad; i++) {
		struct ref ref;
		size_t len = 0;

		memcpy(ref.id, c->bad[i].id, VBS_ID_LEN);
		ref.need = c->bad[i].need;
		if (vbs_vfy_txn_due(c) && (r = vbs_vfy_txn_renew(c)) < 0)
			return r;
		r = check_chunk(c, &ref, &len);
		if (r < 0)
			return r;
		if (r > 0) {
			c->bad[i].kind = (vbs_verify_kind)r;
			c->bad[w++] = c->bad[i];
		}
	}
	c->nbad = w;
	qsort(c->bad, c->nbad, sizeof(*c->bad), cmp_bad);
	return 0;
}
