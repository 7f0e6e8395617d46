/* verify.c: checking a vault, a VM or a point (see verify.h).
 *
 * In order: the records (whole vault: every database but chunks; else the points in scope and
 * the records they lean on), the index entries of the lineages in scope, a walk of every disk
 * of every point collecting the ids it refers to (a sorted array, deduplicated as it grows),
 * one read of each distinct chunk (or of a sample), and, only when some chunk is bad, a second
 * walk mapping the bad ids back to (point, disk, chunk number), merged into byte ranges.
 */
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

/* Problems reported one by one; beyond this they are only counted, and one last problem says
 * how many were left out. A vault whose index is all garbage would otherwise print millions. */
#define REPORT_MAX 10000
#define PROGRESS_NS (200 * 1000 * 1000LL)

struct ref {
	uint8_t id[VBS_ID_LEN];
	uint32_t need; /* plaintext bytes the references need (the last chunk of a disk is short) */
};

struct bad {
	uint8_t id[VBS_ID_LEN];
	uint32_t need;
	vbs_verify_kind kind;
	int seen; /* a point still refers to it */
};

struct hit {
	size_t pt; /* index into ctx.pts */
	uint32_t disk;
	vbs_verify_kind kind;
	uint64_t n;
};

struct ctx {
	vbs_vault *v;
	const vbs_verify_opts *o;
	vbs_verify_result *res;
	MDB_txn *txn;
	unsigned ops; /* reads in this transaction */
	uint64_t seq;
	int whole;

	vbs_rp **pts;
	size_t npts, cappts;

	struct ref *refs;
	size_t nrefs, caprefs;

	struct bad *bad;
	size_t nbad, capbad;

	struct hit *hits;
	size_t nhits, caphits;

	uint64_t *dserials; /* serials of points with some problem, for damaged_points */
	size_t ndserials, capdserials;

	uint64_t suppressed;
	int64_t last_progress;
	uint8_t *buf; /* one decoded chunk */
};

const char *vbs_verify_kind_name(vbs_verify_kind kind)
{
	switch (kind) {
	case VBS_VERIFY_CHUNK_BAD:
		return "damaged chunk";
	case VBS_VERIFY_CHUNK_MISSING:
		return "missing chunk";
	case VBS_VERIFY_INDEX:
		return "bad index entry";
	case VBS_VERIFY_RECORD:
		return "bad record";
	}
	return "problem";
}

int vbs_verify_idx_entry(const void *key, size_t klen, const void *val, size_t vlen,
			 uint64_t *ret_lineage, uint64_t *ret_n, uint64_t *ret_serial,
			 int *ret_data)
{
	const uint8_t *k = key;

	if (klen != VBS_IDX_KEY_LEN || (vlen != 0 && vlen != VBS_ID_LEN) || (vlen && !val))
		return -EBADMSG;
	if (ret_lineage)
		*ret_lineage = vbs_get64(k);
	if (ret_n)
		*ret_n = vbs_get64(k + 8);
	if (ret_serial)
		*ret_serial = ~vbs_get64(k + 16);
	if (ret_data)
		*ret_data = vlen == VBS_ID_LEN;
	return 0;
}

/* Growing arrays: *a has *cap elements of size sz; makes room for one more. */
static int grow(void **a, size_t *cap, size_t n, size_t sz, size_t first)
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

static int damaged_serial(struct ctx *c, uint64_t serial)
{
	int r = grow((void **)&c->dserials, &c->capdserials, c->ndserials, sizeof(uint64_t), 64);

	if (r < 0)
		return r;
	c->dserials[c->ndserials++] = serial;
	return 0;
}

/* Reports one problem. vm, rp, disk may be NULL. */
static void report(struct ctx *c, vbs_verify_kind kind, const char *vm, const char *rp,
		   const char *disk, uint64_t off, uint64_t len, uint64_t chunks, const char *fmt,
		   ...) __attribute__((format(printf, 9, 10)));
static void report(struct ctx *c, vbs_verify_kind kind, const char *vm, const char *rp,
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
static int db_fail(struct ctx *c, int r, const char *where)
{
	if (r == -EBADMSG || r == -EUCLEAN)
		return vbs_fail(r, "vault '%s': the database is damaged (reading %s)", c->v->path,
				where);
	return vbs_fail(r, "cannot read vault '%s' (%s): %s", c->v->path, where, vbu_strerror(-r));
}

static int txn_begin(struct ctx *c)
{
	c->ops = 0;
	return vbs_read_begin(c->v, &c->txn);
}

static void txn_end(struct ctx *c)
{
	vbs_read_end(c->v, c->txn);
	c->txn = NULL;
}

/* 1 every VBS_VERIFY_TXN_CHUNKS calls: time to renew the read transaction (callers close their
 * cursors first, then call txn_renew()). */
static int txn_due(struct ctx *c)
{
	return ++c->ops >= VBS_VERIFY_TXN_CHUNKS;
}

static int txn_renew(struct ctx *c)
{
	if (c->o->stop && *c->o->stop)
		return vbs_fail(-EINTR, "verify of vault '%s' interrupted", c->v->path);
	txn_end(c);
	return txn_begin(c);
}

static void progress(struct ctx *c, uint64_t done, uint64_t total, int force)
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

static uint64_t nchunks(uint64_t size, uint32_t cs)
{
	return size / cs + (size % cs != 0);
}

/* ---- records ---- */

/* mdb_get: 0, -ENOENT, or an error that ends the verify (-EUCLEAN when LMDB finds a page
 * damaged: after that the transaction is unusable). -EBADMSG is left for malformed values. */
static int get_val(struct ctx *c, MDB_dbi dbi, const void *key, size_t klen, MDB_val *ret)
{
	MDB_val k = {klen, (void *)key};
	int rc = mdb_get(c->txn, dbi, &k, ret);

	if (rc == 0)
		return 0;
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	return vbs_mdb_err(rc) == -EBADMSG ? -EUCLEAN : vbs_mdb_err(rc);
}

static int check_seq(struct ctx *c)
{
	MDB_val d;
	int r = get_val(c, c->v->dbi_meta, "seq", 3, &d);

	c->res->records++;
	if (r == -ENOENT) {
		c->seq = 0;
		return 0;
	}
	if (r < 0)
		return db_fail(c, r, "meta");
	if (d.mv_size != 8) {
		/* The numbers below cannot be checked against it. */
		report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
		       "the sequence record (meta 'seq') is damaged");
		c->seq = UINT64_MAX;
		return 0;
	}
	c->seq = vbs_get64(d.mv_data);
	return 0;
}

/* The manifest of a point renders, and parses back as the JSON object it should be. */
static int manifest_ok(const vbs_rp *rp)
{
	json_object *o;
	char *m = NULL;
	size_t len;
	int ok;

	if (vbs_rp_manifest(rp, &m, &len) < 0)
		return -ENOMEM;
	o = json_tokener_parse(m);
	ok = o && json_object_is_type(o, json_type_object);
	json_object_put(o);
	free(m);
	return ok;
}

/* The records a point leans on agree with it. Returns < 0 only for failures to run. */
static int check_point(struct ctx *c, const vbs_rp *rp)
{
	uint64_t num;
	int bad = 0, r;

#define PROBLEM(...)                                                                               \
	do {                                                                                       \
		report(c, VBS_VERIFY_RECORD, rp->vm, rp->id, NULL, 0, 0, 0, __VA_ARGS__);          \
		bad = 1;                                                                           \
	} while (0)

	c->res->records++;
	if (rp->chunk_size != c->v->chunk_size)
		PROBLEM("point record has chunk size %u, the vault %u", rp->chunk_size,
			c->v->chunk_size);
	if (rp->serial > c->seq || rp->vm_serial > c->seq)
		PROBLEM("point record has serial %llu or VM number %llu beyond the sequence %llu",
			(unsigned long long)rp->serial, (unsigned long long)rp->vm_serial,
			(unsigned long long)c->seq);
	r = vbs_vm_find(c->v, c->txn, rp->vm, &num);
	if (r == -ENOENT)
		PROBLEM("VM '%s' has no VM record", rp->vm);
	else if (r < 0 && r != -EBADMSG)
		return db_fail(c, r, "vms");
	else if (r == -EBADMSG)
		PROBLEM("VM record of '%s' is damaged", rp->vm);
	else if (num != rp->vm_serial)
		PROBLEM("point names VM number %llu, the VM record %llu",
			(unsigned long long)rp->vm_serial, (unsigned long long)num);
	r = vbs_name_find(c->v, c->txn, rp->vm, rp->id, &num);
	if (r == -ENOENT)
		PROBLEM("point has no name record");
	else if (r < 0 && r != -EBADMSG)
		return db_fail(c, r, "rpnames");
	else if (r == -EBADMSG)
		PROBLEM("name record of the point is damaged");
	else if (num != rp->serial)
		PROBLEM("name record leads to serial %llu, the point has %llu",
			(unsigned long long)num, (unsigned long long)rp->serial);
	for (size_t i = 0; i < rp->n_disks; i++) {
		const vbs_disk *dk = &rp->disks[i];
		uint64_t head, size;

		r = vbs_lineage_get(c->v, c->txn, dk->lineage, &head, &size);
		if (r == -ENOENT) {
			PROBLEM("disk '%s' names lineage %llu, which has no record", dk->name,
				(unsigned long long)dk->lineage);
			continue;
		}
		if (r < 0 && r != -EBADMSG)
			return db_fail(c, r, "lineages");
		if (r == -EBADMSG) {
			PROBLEM("lineage record %llu of disk '%s' is damaged",
				(unsigned long long)dk->lineage, dk->name);
			continue;
		}
		if (size != dk->size)
			PROBLEM("disk '%s' has size %llu, its lineage %llu", dk->name,
				(unsigned long long)dk->size, (unsigned long long)size);
		if (head < rp->serial)
			PROBLEM("lineage %llu of disk '%s' ends at serial %llu, before the point",
				(unsigned long long)dk->lineage, dk->name,
				(unsigned long long)head);
	}
	r = manifest_ok(rp);
	if (r < 0)
		return vbs_fail(r, "out of memory");
	if (!r)
		PROBLEM("the manifest of the point does not render as JSON");
#undef PROBLEM
	if (bad && (r = damaged_serial(c, rp->serial)) < 0)
		return r;
	return 0;
}

static int add_point(struct ctx *c, vbs_rp *rp)
{
	int r = grow((void **)&c->pts, &c->cappts, c->npts, sizeof(*c->pts), 16);

	if (r < 0) {
		vbs_rp_free(rp);
		return r;
	}
	c->pts[c->npts++] = rp;
	c->res->points++;
	c->res->disks += rp->n_disks;
	return 0;
}

/* Decodes rps[serial] in the current transaction: 1 and *ret, 0 when it is absent or damaged
 * (reported, with name for the message), or an error. */
static int load_point(struct ctx *c, uint64_t serial, const char *vm, const char *id,
		      int quiet_damaged, vbs_rp **ret)
{
	uint8_t sk[8];
	MDB_val d;
	int r;

	vbs_put64(sk, serial);
	r = get_val(c, c->v->dbi_rps, sk, 8, &d);
	if (r == -ENOENT) {
		report(c, VBS_VERIFY_RECORD, vm, id, NULL, 0, 0, 0,
		       "name record leads to serial %llu, which has no point record",
		       (unsigned long long)serial);
		return damaged_serial(c, serial);
	}
	if (r < 0 && r != -EBADMSG)
		return db_fail(c, r, "rps");
	if (r == 0)
		r = vbs_rp_open(c->v, sk, 8, d.mv_data, d.mv_size, ret);
	if (r == -ENOMEM)
		return vbs_fail(r, "out of memory");
	if (r < 0) {
		if (quiet_damaged)
			return 0;
		report(c, VBS_VERIFY_RECORD, vm, id, NULL, 0, 0, 0,
		       "the record of the point with serial %llu is damaged",
		       (unsigned long long)serial);
		return damaged_serial(c, serial);
	}
	if ((*ret)->serial != serial ||
	    (vm && (strcmp((*ret)->vm, vm) != 0 || strcmp((*ret)->id, id) != 0))) {
		report(c, VBS_VERIFY_RECORD, vm ? vm : (*ret)->vm, id ? id : (*ret)->id, NULL, 0, 0,
		       0, "the record with serial %llu is of point '%s/%s' with serial %llu",
		       (unsigned long long)serial, (*ret)->vm, (*ret)->id,
		       (unsigned long long)(*ret)->serial);
		vbs_rp_free(*ret);
		return damaged_serial(c, serial);
	}
	return 1;
}

/* Whole vault: every point record, in serial order. */
static int load_all_points(struct ctx *c)
{
	MDB_cursor *cur;
	MDB_val k, d;
	int rc, r = 0;

	rc = mdb_cursor_open(c->txn, c->v->dbi_rps, &cur);
	if (rc)
		return db_fail(c, vbs_mdb_err(rc), "rps");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		vbs_rp *rp;

		if (k.mv_size != 8) {
			report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
			       "a point record has a key of %zu bytes", k.mv_size);
			continue;
		}
		r = vbs_rp_open(c->v, k.mv_data, k.mv_size, d.mv_data, d.mv_size, &rp);
		if (r == -ENOMEM) {
			r = vbs_fail(r, "out of memory");
			break;
		}
		if (r < 0) {
			report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
			       "the record of the point with serial %llu is damaged",
			       (unsigned long long)vbs_get64(k.mv_data));
			if ((r = damaged_serial(c, vbs_get64(k.mv_data))) < 0)
				break;
			continue;
		}
		if (rp->serial != vbs_get64(k.mv_data)) {
			report(c, VBS_VERIFY_RECORD, rp->vm, rp->id, NULL, 0, 0, 0,
			       "the record stored under serial %llu names serial %llu",
			       (unsigned long long)vbs_get64(k.mv_data),
			       (unsigned long long)rp->serial);
			if ((r = damaged_serial(c, rp->serial)) < 0) {
				vbs_rp_free(rp);
				break;
			}
		}
		if ((r = add_point(c, rp)) < 0)
			break;
	}
	mdb_cursor_close(cur);
	if (r < 0)
		return r == -ENOMEM ? vbs_fail(r, "out of memory") : r;
	if (rc && rc != MDB_NOTFOUND)
		return db_fail(c, vbs_mdb_err(rc), "rps");
	return 0;
}

/* One VM, or one of its points: by the name records. */
static int load_vm_points(struct ctx *c, const char *vm, const char *id)
{
	vbs_name_entry *e = NULL;
	uint64_t serial;
	size_t n = 0;
	vbs_rp *rp;
	int r = 0;

	if (!vbu_name_valid(vm))
		return vbs_fail(-EINVAL, "invalid VM name '%s'", vm);
	if (id && strcmp(id, "latest") == 0) {
		r = vbs_rp_latest_serial(c->v, c->txn, vm, &serial);
		if (r == -ENOENT)
			return vbs_fail(r, "no VM '%s' in vault '%s'", vm, c->v->path);
		if (r == -EBADMSG) {
			report(c, VBS_VERIFY_RECORD, vm, NULL, NULL, 0, 0, 0,
			       "a name record of VM '%s' is damaged", vm);
			return 0;
		}
		if (r < 0)
			return db_fail(c, r, "rpnames");
		r = load_point(c, serial, NULL, NULL, 0, &rp);
		return r <= 0 ? r : add_point(c, rp);
	}
	if (id) {
		r = vbs_name_find(c->v, c->txn, vm, id, &serial);
		if (r == -ENOENT) {
			if (vbs_rp_latest_serial(c->v, c->txn, vm, &serial) == -ENOENT)
				return vbs_fail(r, "no VM '%s' in vault '%s'", vm, c->v->path);
			return vbs_fail(r, "no point '%s' of VM '%s' in vault '%s'", id, vm,
					c->v->path);
		}
		if (r < 0 && r != -EBADMSG)
			return db_fail(c, r, "rpnames");
		if (r == -EBADMSG) {
			report(c, VBS_VERIFY_RECORD, vm, id, NULL, 0, 0, 0,
			       "the name record of the point is damaged");
			return 0;
		}
		r = load_point(c, serial, vm, id, 0, &rp);
		return r <= 0 ? r : add_point(c, rp);
	}
	r = vbs_names_of(c->v, c->txn, vm, &e, &n);
	if (r == -EBADMSG) {
		report(c, VBS_VERIFY_RECORD, vm, NULL, NULL, 0, 0, 0,
		       "a name record of VM '%s' is damaged", vm);
		return 0;
	}
	if (r < 0)
		return db_fail(c, r, "rpnames");
	for (size_t i = 0; i < n; i++) {
		r = load_point(c, e[i].serial, vm, e[i].name, 0, &rp);
		if (r == 1)
			r = add_point(c, rp);
		if (r < 0)
			break;
	}
	free(e);
	if (r < 0)
		return r == -ENOMEM ? vbs_fail(r, "out of memory") : r;
	if (c->npts == 0 && c->res->problems == 0)
		return vbs_fail(-ENOENT, "no VM '%s' in vault '%s'", vm, c->v->path);
	return 0;
}

/* Whole vault: VM records, name records, lineage records. Name records are keyed by hashes of
 * the VM's name: each VM's are found through its VM record, and any left over (of no VM, or
 * that do not open) are damage. */
static int scan_small_dbs(struct ctx *c)
{
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	uint64_t names_total = 0, names_seen = 0;
	int rc, r = 0;

	rc = mdb_cursor_open(c->txn, c->v->dbi_vms, &cur);
	if (rc)
		return db_fail(c, vbs_mdb_err(rc), "vms");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		char name[VBS_NAME_MAX + 1];
		uint64_t num;
		MDB_cursor *nc;
		MDB_val nk, nd;
		int nrc;

		c->res->records++;
		r = vbs_vm_open(c->v, k.mv_data, k.mv_size, d.mv_data, d.mv_size, name, &num);
		if (r == -ENOMEM)
			break;
		if (r < 0 || num > c->seq) {
			report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
			       "a VM record is damaged");
			r = 0;
			continue;
		}
		/* The VM's name records: the keys that start with its hash. */
		nrc = mdb_cursor_open(c->txn, c->v->dbi_rpnames, &nc);
		if (nrc) {
			r = vbs_mdb_err(nrc);
			break;
		}
		nk = k;
		for (nrc = mdb_cursor_get(nc, &nk, &nd, MDB_SET_RANGE); nrc == 0;
		     nrc = mdb_cursor_get(nc, &nk, &nd, MDB_NEXT)) {
			char id[VBS_RP_ID_MAX];
			uint64_t serial;
			vbs_rp *rp;

			if (nk.mv_size < k.mv_size || memcmp(nk.mv_data, k.mv_data, k.mv_size) != 0)
				break;
			names_seen++;
			c->res->records++;
			r = vbs_name_open(c->v, name, nk.mv_data, nk.mv_size, nd.mv_data, nd.mv_size,
					  id, &serial);
			if (r == -ENOMEM)
				break;
			if (r < 0) {
				report(c, VBS_VERIFY_RECORD, name, NULL, NULL, 0, 0, 0,
				       "a name record of VM '%s' is damaged", name);
				r = 0;
				continue;
			}
			/* The record itself is checked by check_point(); here only that the
			 * name leads to the point that carries it. */
			r = load_point(c, serial, name, id, 1, &rp);
			if (r < 0)
				break;
			if (r == 1)
				vbs_rp_free(rp);
			r = 0;
		}
		mdb_cursor_close(nc);
		if (r < 0)
			break;
		if (nrc && nrc != MDB_NOTFOUND) {
			r = vbs_mdb_err(nrc);
			break;
		}
	}
	mdb_cursor_close(cur);
	if (r < 0)
		return r == -ENOMEM ? vbs_fail(r, "out of memory") : db_fail(c, r, "rpnames");
	if (rc != MDB_NOTFOUND)
		return db_fail(c, vbs_mdb_err(rc), "vms");

	rc = mdb_cursor_open(c->txn, c->v->dbi_rpnames, &cur);
	if (rc)
		return db_fail(c, vbs_mdb_err(rc), "rpnames");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT))
		names_total++;
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return db_fail(c, vbs_mdb_err(rc), "rpnames");
	if (names_total != names_seen)
		report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
		       "%llu name records belong to no VM record",
		       (unsigned long long)(names_total - names_seen));

	rc = mdb_cursor_open(c->txn, c->v->dbi_lineages, &cur);
	if (rc)
		return db_fail(c, vbs_mdb_err(rc), "lineages");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		uint64_t head = 0, size = 0;

		c->res->records++;
		r = k.mv_size == 8 ? vbs_lineage_get(c->v, c->txn, vbs_get64(k.mv_data), &head, &size)
				   : -EBADMSG;
		if (r == -ENOMEM) {
			mdb_cursor_close(cur);
			return vbs_fail(r, "out of memory");
		}
		if (r < 0 || vbs_get64(k.mv_data) > c->seq || head > c->seq || size == 0)
			report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
			       "a lineage record (%zu-byte key, %zu-byte value) is damaged",
			       k.mv_size, d.mv_size);
		r = 0;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return db_fail(c, vbs_mdb_err(rc), "lineages");
	return 0;
}

/* Whole vault: the databases no point reads (job history, pins, protections) and LMDB's free
 * list are walked too, so that a damaged page there, which would make the next ingest or gc
 * fail, is found now. Job records must decode. */
static int scan_other_dbs(struct ctx *c)
{
	static const char *const names[] = {"jobs", "pins", "protect", "free list"};
	MDB_dbi dbis[] = {c->v->dbi_jobs, c->v->dbi_pins, c->v->dbi_protect, 0};
	int present[] = {c->v->dbi_jobs != 0, c->v->dbi_pins != 0, c->v->dbi_protect != 0, 1};

	for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
		MDB_cursor *cur;
		MDB_val k, d;
		unsigned batch = 0;
		int rc;

		if (!present[i])
			continue;
		rc = mdb_cursor_open(c->txn, dbis[i], &cur);
		if (rc)
			return db_fail(c, vbs_mdb_err(rc), names[i]);
		for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
			if (i == 2) {
				uint8_t *p = NULL;
				size_t len = 0;

				c->res->records++;
				if (vbs_unseal(c->v, VBS_DB_PROTECT, k.mv_data, k.mv_size, d.mv_data,
					       d.mv_size, &p, &len) < 0 ||
				    len != 8 || k.mv_size != 8)
					report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
					       "a protection record is damaged");
				vbs_unsealed_free(p, len);
			}
			if (i == 0) {
				vbs_job job;

				c->res->records++;
				if (vbs_job_unseal(c->v, k.mv_data, k.mv_size, d.mv_data, d.mv_size,
						   &job) < 0)
					report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
					       "a record of the job history is damaged");
			}
			if (++batch % VBS_VERIFY_TXN_CHUNKS == 0 && c->o->stop && *c->o->stop)
				break;
		}
		mdb_cursor_close(cur);
		if (rc && rc != MDB_NOTFOUND)
			return db_fail(c, vbs_mdb_err(rc), names[i]);
	}
	return 0;
}

/* ---- index entries ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Checks the index entries from key start (24 bytes) on: all of them (lineage 0: the whole
 * database), or those of one lineage. Renews the transaction as it goes. */
static int scan_index(struct ctx *c, uint64_t only_lineage, int all)
{
	uint8_t last[VBS_IDX_KEY_LEN] = {0};
	uint64_t lin_cached = 0, lin_size = 0;
	int lin_state = 0; /* 0 none cached, 1 known, -1 no such lineage */
	int have_last = 0, rc, r = 0;
	MDB_cursor *cur = NULL;
	MDB_val k, d;

	if (!all)
		vbs_idx_key(last, only_lineage, 0, UINT64_MAX); /* ~serial = 0: the very first */
	for (;;) {
		unsigned batch = 0;

		rc = mdb_cursor_open(c->txn, c->v->dbi_idx, &cur);
		if (rc)
			return db_fail(c, vbs_mdb_err(rc), "idx");
		if (all && !have_last) {
			rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
		} else {
			k = (MDB_val){sizeof(last), last};
			rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
			/* Resuming: skip the entry already checked. */
			if (rc == 0 && have_last && k.mv_size == sizeof(last) &&
			    memcmp(k.mv_data, last, sizeof(last)) == 0)
				rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
		}
		for (; rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
			uint64_t lin, n, serial;

			if (k.mv_size != VBS_IDX_KEY_LEN) {
				if (!all && (k.mv_size < 8 || vbs_get64(k.mv_data) != only_lineage))
					break; /* not a key of this lineage, whatever it is */
				c->res->index_entries++;
				report(c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				       "an index entry has a key of %zu bytes", k.mv_size);
				continue;
			}
			lin = vbs_get64(k.mv_data);
			n = vbs_get64((uint8_t *)k.mv_data + 8);
			serial = ~vbs_get64((uint8_t *)k.mv_data + 16);
			if (!all && lin != only_lineage)
				break;
			c->res->index_entries++;
			memcpy(last, k.mv_data, sizeof(last));
			have_last = 1;
			if (lin_state == 0 || lin != lin_cached) {
				uint64_t head;

				r = vbs_lineage_get(c->v, c->txn, lin, &head, &lin_size);
				if (r < 0 && r != -ENOENT && r != -EBADMSG)
					break;
				lin_cached = lin;
				lin_state = r == 0 ? 1 : -1;
				if (lin_state < 0)
					lin_size = 0;
				r = 0;
			}
			if (lin_state < 0)
				report(
				    c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				    "index entry (lineage %llu, chunk %llu, serial %llu) is of an "
				    "unknown or damaged lineage",
				    (unsigned long long)lin, (unsigned long long)n,
				    (unsigned long long)serial);
			else if (n >= nchunks(lin_size, c->v->chunk_size))
				report(
				    c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				    "index entry (lineage %llu, chunk %llu, serial %llu) is past "
				    "the end of the disk (%llu bytes)",
				    (unsigned long long)lin, (unsigned long long)n,
				    (unsigned long long)serial, (unsigned long long)lin_size);
			else if (d.mv_size != 0 && d.mv_size != VBS_ID_LEN)
				report(c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				       "index entry (lineage %llu, chunk %llu, serial %llu) has a "
				       "value of %zu bytes",
				       (unsigned long long)lin, (unsigned long long)n,
				       (unsigned long long)serial, d.mv_size);
			else if (serial > c->seq)
				report(c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				       "index entry (lineage %llu, chunk %llu) has serial %llu, "
				       "beyond the sequence",
				       (unsigned long long)lin, (unsigned long long)n,
				       (unsigned long long)serial);
			if (++batch >= VBS_VERIFY_TXN_CHUNKS)
				break;
		}
		mdb_cursor_close(cur);
		cur = NULL;
		if (r < 0)
			return db_fail(c, r, "lineages");
		if (rc && rc != MDB_NOTFOUND)
			return db_fail(c, vbs_mdb_err(rc), "idx");
		if (batch < VBS_VERIFY_TXN_CHUNKS)
			return 0; /* the end (of the database, or of the lineage) */
		if ((r = txn_renew(c)) < 0)
			return r;
	}
}

/* ---- the group MACs of every disk (imap.h) ---- */

/* Every group of every disk of every point against its MAC, and the data chunks counted
 * against the point's record: a swapped, deleted, replayed or re-pointed index entry, or a
 * missing or damaged map, is found here even where each entry looks well formed. */
static int check_maps(struct ctx *c)
{
	int r = 0;

	for (size_t i = 0; i < c->npts; i++) {
		const vbs_rp *rp = c->pts[i];

		for (size_t di = 0; di < rp->n_disks; di++) {
			const vbs_disk *dk = &rp->disks[di];
			uint64_t count = 0, bad_from = 0, nbad = 0, ng;
			vbs_imap *m = NULL;

			if ((r = txn_renew(c)) < 0)
				return r;
			r = vbs_imap_new(c->v, c->txn, rp->serial, (unsigned)di, dk->lineage, dk->size,
					 &m);
			if (r == -EBADMSG) {
				report(c, VBS_VERIFY_INDEX, rp->vm, rp->id, dk->name, 0, dk->size, 0,
				       "the disk's index map is missing or damaged");
				if ((r = damaged_serial(c, rp->serial)) < 0)
					return r;
				continue;
			}
			if (r < 0)
				return db_fail(c, r, "dmaps");
			ng = vbs_imap_groups(m);
			for (uint64_t g = 0; g <= ng; g++) {
				uint64_t n = 0;

				r = g < ng ? vbs_imap_check(m, c->txn, g, &n) : 0;
				if (r < 0 && r != -EBADMSG)
					break;
				if (r == -EBADMSG && nbad++ == 0)
					bad_from = g;
				if (r == 0 && nbad) {
					uint64_t span = (uint64_t)VBS_GROUP_CHUNKS * rp->chunk_size;
					uint64_t off = bad_from * span, len = nbad * span;

					if (len > dk->size - off)
						len = dk->size - off;
					report(c, VBS_VERIFY_INDEX, rp->vm, rp->id, dk->name, off, len,
					       0, "the index does not match the disk's map");
					nbad = 0;
					if ((r = damaged_serial(c, rp->serial)) < 0)
						break;
				}
				count += n;
				r = 0;
				if (txn_due(c) && (r = txn_renew(c)) < 0)
					break;
			}
			vbs_imap_free(m);
			if (r < 0)
				return r == -EINTR ? r : db_fail(c, r, "idx");
			if (count != dk->data_chunks) {
				report(c, VBS_VERIFY_INDEX, rp->vm, rp->id, dk->name, 0, dk->size, 0,
				       "the index holds %llu data chunks, the point's record says "
				       "%llu",
				       (unsigned long long)count,
				       (unsigned long long)dk->data_chunks);
				if ((r = damaged_serial(c, rp->serial)) < 0)
					return r;
			}
		}
	}
	return 0;
}

/* ---- walking the disks of a point ---- */

/* Called for chunk n of disk di of point pt: id is its chunk id, or NULL when its index entry
 * has a value that is neither empty nor an id. */
typedef int (*walk_fn)(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id);

static int point_exists(struct ctx *c, uint64_t serial)
{
	uint8_t sk[8];
	MDB_val d;
	int r;

	vbs_put64(sk, serial);
	r = get_val(c, c->v->dbi_rps, sk, 8, &d);
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
	uint64_t end = nchunks(dk->size, rp->chunk_size), n = 0;
	MDB_cursor *cur = NULL;
	int rc, r = 0;

	while (n < end) {
		uint8_t key[VBS_IDX_KEY_LEN];
		MDB_val k = {sizeof(key), key}, d;
		uint64_t en;
		int malformed;

		if (!cur) {
			rc = mdb_cursor_open(c->txn, c->v->dbi_idx, &cur);
			if (rc)
				return db_fail(c, vbs_mdb_err(rc), "idx");
		}
		vbs_idx_key(key, dk->lineage, n, rp->serial);
		rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc) {
			r = db_fail(c, vbs_mdb_err(rc), "idx");
			break;
		}
		if (k.mv_size < 8 || vbs_get64(k.mv_data) != dk->lineage)
			break;
		/* A malformed key in the lineage: every lookup landing on it fails, so chunk n is
		 * unreadable; the walk goes on with the next. */
		malformed = k.mv_size != VBS_IDX_KEY_LEN;
		en = malformed ? n : vbs_get64((uint8_t *)k.mv_data + 8);
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
		if (txn_due(c)) {
			mdb_cursor_close(cur);
			cur = NULL;
			if ((r = txn_renew(c)) < 0)
				return r;
			r = point_exists(c, rp->serial);
			if (r <= 0)
				return r < 0 ? db_fail(c, r, "rps") : 1;
			r = 0;
		}
	}
	if (cur)
		mdb_cursor_close(cur);
	return r;
}

static int walk_all(struct ctx *c, walk_fn fn)
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
	int r = grow((void **)&c->hits, &c->caphits, c->nhits, sizeof(*c->hits), 64);

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
static void refs_compact(struct ctx *c)
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

static int collect_fn(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id)
{
	const vbs_rp *rp = c->pts[pt];
	uint64_t left = rp->disks[di].size - n * rp->chunk_size;
	int r;

	if (!id)
		return add_hit(c, pt, di, n, VBS_VERIFY_INDEX);
	if (c->nrefs == c->caprefs) {
		refs_compact(c);
		/* Grow when deduplication no longer frees half of the array. */
		if ((c->caprefs == 0 || c->nrefs > c->caprefs / 2) &&
		    (r = grow((void **)&c->refs, &c->caprefs, c->caprefs, sizeof(*c->refs),
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

static int map_fn(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id)
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
	int r = vbs_cs_get(c->v, c->txn, ref->id, decode_cb, &d);

	if (r == -ENOENT)
		return VBS_VERIFY_CHUNK_MISSING;
	if (r == -EBADMSG) {
		/* The frame, or the page it is on: LMDB then fails every later call of this
		 * transaction, so the next chunk is read in a new one. */
		r = txn_renew(c);
		return r < 0 ? r : VBS_VERIFY_CHUNK_BAD;
	}
	if (r == -ENOKEY)
		return vbs_fail(r, "vault '%s' is locked: verifying needs its passphrase",
				c->v->path);
	if (r < 0)
		return db_fail(c, r, "chunks");
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
static int sample(struct ctx *c)
{
	double p = c->o->sample;
	uint64_t seed = c->o->seed, s, k;

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

static int read_chunks(struct ctx *c)
{
	int r;

	for (size_t i = 0; i < c->nrefs; i++) {
		size_t len = 0;

		if (c->o->stop && *c->o->stop)
			return vbs_fail(-EINTR, "verify of vault '%s' interrupted", c->v->path);
		if (txn_due(c) && (r = txn_renew(c)) < 0)
			return r;
		r = check_chunk(c, &c->refs[i], &len);
		if (r < 0)
			return r;
		c->res->chunks_checked++;
		c->res->bytes_checked += len;
		if (r > 0) {
			int g = grow((void **)&c->bad, &c->capbad, c->nbad, sizeof(*c->bad), 16);
			if (g < 0)
				return g;
			memcpy(c->bad[c->nbad].id, c->refs[i].id, VBS_ID_LEN);
			c->bad[c->nbad].need = c->refs[i].need;
			c->bad[c->nbad].kind = (vbs_verify_kind)r;
			c->bad[c->nbad].seen = 0;
			c->nbad++;
		}
		progress(c, i + 1, c->nrefs, 0);
	}
	progress(c, c->nrefs, c->nrefs, 1);
	return 0;
}

/* A chunk that read bad is read again in a fresh transaction: what gc freed and an ingest
 * stored again meanwhile is whole. Keeps only those still bad, sorted by id. */
static int recheck_bad(struct ctx *c)
{
	size_t w = 0;
	int r;

	if (c->nbad == 0)
		return 0;
	if ((r = txn_renew(c)) < 0)
		return r;
	for (size_t i = 0; i < c->nbad; i++) {
		struct ref ref;
		size_t len = 0;

		memcpy(ref.id, c->bad[i].id, VBS_ID_LEN);
		ref.need = c->bad[i].need;
		if (txn_due(c) && (r = txn_renew(c)) < 0)
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
static int report_hits(struct ctx *c)
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
		report(c, h->kind, rp->vm, rp->id, dk->name, off, end - off, count, "%s",
		       range_text(h->kind, count, text, sizeof(text)));
		if ((r = damaged_serial(c, rp->serial)) < 0)
			return r;
		i = j;
	}
	return 0;
}

static void count_damaged_points(struct ctx *c)
{
	size_t n = 0;

	if (c->ndserials == 0)
		return;
	qsort(c->dserials, c->ndserials, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < c->ndserials; i++)
		if (i == 0 || c->dserials[i] != c->dserials[i - 1])
			n++;
	c->res->damaged_points = n;
}

static int run(struct ctx *c)
{
	uint64_t *lins = NULL;
	size_t nlins = 0;
	int r;

	if ((r = txn_begin(c)) < 0)
		return r;
	if ((r = check_seq(c)) < 0)
		return r;
	if (c->whole) {
		if ((r = scan_small_dbs(c)) < 0 || (r = scan_other_dbs(c)) < 0 ||
		    (r = load_all_points(c)) < 0)
			return r;
	} else if ((r = load_vm_points(c, c->o->vm, c->o->rp)) < 0) {
		return r;
	}
	for (size_t i = 0; i < c->npts; i++)
		if ((r = check_point(c, c->pts[i])) < 0)
			return r;

	/* Index entries: all of them, or those of the lineages in scope. */
	if (c->whole) {
		if ((r = txn_renew(c)) < 0 || (r = scan_index(c, 0, 1)) < 0)
			return r;
	} else {
		for (size_t i = 0; i < c->npts; i++)
			nlins += c->pts[i]->n_disks;
		lins = calloc(nlins ? nlins : 1, sizeof(*lins));
		if (!lins)
			return vbs_fail(-ENOMEM, "out of memory");
		nlins = 0;
		for (size_t i = 0; i < c->npts; i++)
			for (size_t di = 0; di < c->pts[i]->n_disks; di++)
				lins[nlins++] = c->pts[i]->disks[di].lineage;
		qsort(lins, nlins, sizeof(*lins), cmp_u64);
		for (size_t i = 0; i < nlins && r >= 0; i++)
			if (i == 0 || lins[i] != lins[i - 1])
				r = scan_index(c, lins[i], 0);
		free(lins);
		if (r < 0)
			return r;
	}

	if ((r = check_maps(c)) < 0)
		return r;

	/* The chunks the points refer to, each once. */
	if ((r = txn_renew(c)) < 0 || (r = walk_all(c, collect_fn)) < 0)
		return r;
	refs_compact(c);
	c->res->chunks_referenced = c->nrefs;
	if ((r = sample(c)) < 0)
		return r;
	c->buf = malloc(c->v->chunk_size);
	if (!c->buf)
		return vbs_fail(-ENOMEM, "out of memory");
	if ((r = txn_renew(c)) < 0 || (r = read_chunks(c)) < 0)
		return r;
	free(c->refs);
	c->refs = NULL;
	c->nrefs = c->caprefs = 0;

	/* Which points, disks and ranges the bad chunks affect. */
	if ((r = recheck_bad(c)) < 0)
		return r;
	if (c->nbad) {
		if ((r = txn_renew(c)) < 0 || (r = walk_all(c, map_fn)) < 0)
			return r;
		for (size_t i = 0; i < c->nbad; i++) {
			if (!c->bad[i].seen)
				continue;
			if (c->bad[i].kind == VBS_VERIFY_CHUNK_MISSING)
				c->res->chunks_missing++;
			else
				c->res->chunks_bad++;
		}
	}
	return report_hits(c);
}

int vbs_verify(vbs_vault *v, const vbs_verify_opts *o, vbs_verify_result *ret)
{
	vbs_verify_result res = {0};
	struct ctx c = {0};
	int r;

	vbs_clear_err();
	*ret = res;
	if (o->rp && !o->vm)
		return vbs_fail(-EINVAL, "a point to verify needs its VM");
	if (!(o->sample >= 0 && o->sample <= 100))
		return vbs_fail(-EINVAL, "sample of %g%% is not in (0, 100]", o->sample);
	if (vbs_vault_needs_passphrase(v))
		return vbs_fail(-ENOKEY, "vault '%s' is locked: verifying needs its passphrase",
				v->path);
	c.v = v;
	c.o = o;
	c.res = &res;
	c.whole = !o->vm;
	r = run(&c);
	if (r == -EUCLEAN)
		r = -EBADMSG;
	if (r == -EBADMSG) {
		/* The database itself: a problem like the others, and the end of the verify. */
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", vbs_errmsg());
		report(&c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0, "%s", msg);
		vbs_fail(r, "%s", msg);
	}
	if (c.suppressed) {
		vbs_verify_problem p = {VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0, NULL};
		char detail[128];

		snprintf(detail, sizeof(detail), "%llu more problems not shown",
			 (unsigned long long)c.suppressed);
		p.detail = detail;
		res.problems++;
		if (o->problem)
			o->problem(o->problem_arg, &p);
	}
	count_damaged_points(&c);
	txn_end(&c);
	for (size_t i = 0; i < c.npts; i++)
		vbs_rp_free(c.pts[i]);
	free(c.pts);
	free(c.refs);
	free(c.bad);
	free(c.hits);
	free(c.dserials);
	free(c.buf);
	*ret = res;
	return r < 0 ? r : 0;
}
