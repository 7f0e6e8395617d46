/* verify_report.c: what the stages of a verify share (verify_internal.h): growing arrays, the
 * read transaction, progress, and the reporting of problems, one by one or (chunk hits) merged
 * into byte ranges. */
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

/* Problems reported one by one; beyond this they are only counted, and one last problem says
 * how many were left out. A vault whose index is all garbage would otherwise print millions. */
#define REPORT_MAX 10000
#define PROGRESS_NS (200 * 1000 * 1000LL)

/* Growing arrays: *a has *cap elements of size sz; makes room for one more. */
int vbs_vfy_grow(void **a, size_t *cap, size_t n, size_t sz, size_t first)
{
	size_t nc;
	void *p;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : first;
	if (nc < *cap || nc > SIZE_MAX / sz)
		return -ENOMEM;
	p = realloc(*a, nc * sz);
	if (!p)
		return -ENOMEM;
	*a = p;
	*cap = nc;
	return 0;
}

int vbs_vfy_damaged_serial(struct ctx *c, uint64_t serial)
{
	int r = vbs_vfy_grow((void **)&c->dserials, &c->capdserials, c->ndserials, sizeof(uint64_t),
			     64);

	if (r < 0)
		return r;
	c->dserials[c->ndserials++] = serial;
	return 0;
}

void vbs_vfy_report(struct ctx *c, vbs_verify_kind kind, const char *vm, const char *rp,
		    const char *disk, uint64_t off, uint64_t len, uint64_t chunks, const char *fmt,
		    ...)
{
	vbs_verify_problem p = {kind, vm, rp, disk, off, len, chunks, NULL};
	char detail[512];
	va_list ap;

	if (kind == VBS_VERIFY_INDEX)
		c->res->bad_index++;
	else if (kind == VBS_VERIFY_RECORD)
		c->res->bad_records++;
	if (c->res->problems >= REPORT_MAX) {
		c->suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	p.detail = detail;
	c->res->problems++;
	if (c->o->problem)
		c->o->problem(c->o->problem_arg, &p);
}

/* A database error while walking: damage of the database itself (-EBADMSG) stops the verify
 * with a message saying where; anything else is a failure to run. */
int vbs_vfy_db_fail(struct ctx *c, int r, const char *where)
{
	if (r == -EBADMSG || r == -EUCLEAN)
		return vbs_fail(r, "vault '%s': the database is damaged (reading %s)", c->v->path,
				where);
	/* A library the chunk store loads when first used (dl.h) is missing: its message says
	 * which and what for, more than "(chunks): Can not access a needed shared library". */
	if (r == -ELIBACC)
		return r;
	return vbs_fail(r, "cannot read vault '%s' (%s): %s", c->v->path, where, vbu_strerror(-r));
}

int vbs_vfy_txn_begin(struct ctx *c)
{
	c->ops = 0;
	return vbs_read_begin(c->v, &c->txn);
}

void vbs_vfy_txn_end(struct ctx *c)
{
	vbs_read_end(c->v, c->txn);
	c->txn = NULL;
}

/* 1 every VBS_VERIFY_TXN_CHUNKS calls: time to renew the read transaction (callers close their
 * cursors first, then call vbs_vfy_txn_renew()). */
int vbs_vfy_txn_due(struct ctx *c)
{
	return ++c->ops >= VBS_VERIFY_TXN_CHUNKS;
}

int vbs_vfy_txn_renew(struct ctx *c)
{
	if (c->o->stop && *c->o->stop)
		return vbs_fail(-EINTR, "verify of vault '%s' interrupted", c->v->path);
	vbs_vfy_txn_end(c);
	return vbs_vfy_txn_begin(c);
}

void vbs_vfy_progress(struct ctx *c, uint64_t done, uint64_t total, int force)
{
	int64_t now;

	if (!c->o->progress)
		return;
	now = vbu_mono_ns();
	if (!force && now - c->last_progress < PROGRESS_NS)
		return;
	c->last_progress = now;
	c->o->progress(c->o->progress_arg, done, total, c->res->bytes_checked);
}

uint64_t vbs_vfy_nchunks(uint64_t size, uint32_t cs)
{
	return size / cs + (size % cs != 0);
}

/* mdb_get: 0, -ENOENT, or an error that ends the verify (-EUCLEAN when LMDB finds a page
 * damaged: after that the transaction is unusable). -EBADMSG is left for malformed values. */
int vbs_vfy_get_val(struct ctx *c, MDB_dbi dbi, const void *key, size_t klen, MDB_val *ret)
{
	MDB_val k = {klen, (void *)key};
	int rc = mdb_get(c->txn, dbi, &k, ret);

	if (rc == 0)
		return 0;
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	return vbs_mdb_err(rc) == -EBADMSG ? -EUCLEAN : vbs_mdb_err(rc);
}

int vbs_vfy_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_hit(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	if (x->pt != y->pt)
		return x->pt < y->pt ? -1 : 1;
	if (x->disk != y->disk)
		return x->disk < y->disk ? -1 : 1;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return (int)x->kind - (int)y->kind;
}

/* "1 damaged chunk (authentication failed)", "3 missing chunks", ... into buf. */
static const char *range_text(vbs_verify_kind kind, uint64_t count, char *buf, size_t cap)
{
	const char *s = count == 1 ? "" : "s";

	switch (kind) {
	case VBS_VERIFY_CHUNK_BAD:
		snprintf(buf, cap, "%llu damaged chunk%s (authentication failed)",
			 (unsigned long long)count, s);
		break;
	case VBS_VERIFY_CHUNK_MISSING:
		snprintf(buf, cap, "%llu missing chunk%s", (unsigned long long)count, s);
		break;
	default:
		snprintf(buf, cap, "%llu chunk%s with a malformed index entry",
			 (unsigned long long)count, s);
		break;
	}
	return buf;
}

/* Merges the hits into ranges of consecutive chunks and reports them. */
int vbs_vfy_report_hits(struct ctx *c)
{
	size_t i = 0;
	int r;

	if (c->nhits == 0)
		return 0;
	qsort(c->hits, c->nhits, sizeof(*c->hits), cmp_hit);
	while (i < c->nhits) {
		const struct hit *h = &c->hits[i];
		const vbs_rp *rp = c->pts[h->pt];
		const vbs_disk *dk = &rp->disks[h->disk];
		uint64_t first = h->n, last = h->n, count = 1, off, end;
		size_t j = i + 1;
		char text[96];

		for (; j < c->nhits; j++) {
			const struct hit *x = &c->hits[j];

			if (x->pt != h->pt || x->disk != h->disk || x->kind != h->kind)
				break;
			if (x->n == last)
				continue; /* the same chunk twice */
			if (x->n != last + 1)
				break;
			last = x->n;
			count++;
		}
		off = first * rp->chunk_size;
		end = (last + 1) * rp->chunk_size;
		if (end > dk->size)
			end = dk->size;
		vbs_vfy_report(c, h->kind, rp->vm, rp->id, dk->name, off, end - off, count, "%s",
			       range_text(h->kind, count, text, sizeof(text)));
		if ((r = vbs_vfy_damaged_serial(c, rp->serial)) < 0)
			return r;
		i = j;
	}
	return 0;
}

void vbs_vfy_count_damaged_points(struct ctx *c)
{
	size_t n = 0;

	if (c->ndserials == 0)
		return;
	qsort(c->dserials, c->ndserials, sizeof(uint64_t), vbs_vfy_cmp_u64);
	for (size_t i = 0; i < c->ndserials; i++)
		if (i == 0 || c->dserials[i] != c->dserials[i - 1])
			n++;
	c->res->damaged_points = n;
}
