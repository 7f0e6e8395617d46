/* verify_records.c: the first stages of a verify: the records (verify.h), the index entries of
 * the lineages in scope, and every disk's group MACs (imap.h). */
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
#include "jobs_db.h"
#include "rp.h"
#include "rp_db.h"
#include "seal.h"
#include "util.h"
#include "verify.h"
#include "verify_internal.h"

/* ---- records ---- */

int vbs_vfy_check_seq(struct ctx *c)
{
	MDB_val d;
	int r = vbs_vfy_get_val(c, c->v->dbi_meta, "seq", 3, &d);

	c->res->records++;
	if (r == -ENOENT) {
		c->seq = 0;
		return 0;
	}
	if (r < 0)
		return vbs_vfy_db_fail(c, r, "meta");
	if (d.mv_size != 8) {
		/* The numbers below cannot be checked against it. */
		vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
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
int vbs_vfy_check_point(struct ctx *c, const vbs_rp *rp)
{
	uint64_t num;
	int bad = 0, r;

#define PROBLEM(...)                                                                               \
	do {                                                                                       \
		vbs_vfy_report(c, VBS_VERIFY_RECORD, rp->vm, rp->id, NULL, 0, 0, 0, __VA_ARGS__);  \
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
		return vbs_vfy_db_fail(c, r, "vms");
	else if (r == -EBADMSG)
		PROBLEM("VM record of '%s' is damaged", rp->vm);
	else if (num != rp->vm_serial)
		PROBLEM("point names VM number %llu, the VM record %llu",
			(unsigned long long)rp->vm_serial, (unsigned long long)num);
	r = vbs_name_find(c->v, c->txn, rp->vm, rp->id, &num);
	if (r == -ENOENT)
		PROBLEM("point has no name record");
	else if (r < 0 && r != -EBADMSG)
		return vbs_vfy_db_fail(c, r, "rpnames");
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
			return vbs_vfy_db_fail(c, r, "lineages");
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
	if (bad && (r = vbs_vfy_damaged_serial(c, rp->serial)) < 0)
		return r;
	return 0;
}

static int add_point(struct ctx *c, vbs_rp *rp)
{
	int r = vbs_vfy_grow((void **)&c->pts, &c->cappts, c->npts, sizeof(*c->pts), 16);

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
	r = vbs_vfy_get_val(c, c->v->dbi_rps, sk, 8, &d);
	if (r == -ENOENT) {
		vbs_vfy_report(c, VBS_VERIFY_RECORD, vm, id, NULL, 0, 0, 0,
			       "name record leads to serial %llu, which has no point record",
			       (unsigned long long)serial);
		return vbs_vfy_damaged_serial(c, serial);
	}
	if (r < 0 && r != -EBADMSG)
		return vbs_vfy_db_fail(c, r, "rps");
	if (r == 0)
		r = vbs_rp_open(c->v, sk, 8, d.mv_data, d.mv_size, ret);
	if (r == -ENOMEM)
		return vbs_fail(r, "out of memory");
	if (r < 0) {
		if (quiet_damaged)
			return 0;
		vbs_vfy_report(c, VBS_VERIFY_RECORD, vm, id, NULL, 0, 0, 0,
			       "the record of the point with serial %llu is damaged",
			       (unsigned long long)serial);
		return vbs_vfy_damaged_serial(c, serial);
	}
	if ((*ret)->serial != serial ||
	    (vm && (strcmp((*ret)->vm, vm) != 0 || strcmp((*ret)->id, id) != 0))) {
		vbs_vfy_report(c, VBS_VERIFY_RECORD, vm ? vm : (*ret)->vm, id ? id : (*ret)->id,
			       NULL, 0, 0, 0,
			       "the record with serial %llu is of point '%s/%s' with serial %llu",
			       (unsigned long long)serial, (*ret)->vm, (*ret)->id,
			       (unsigned long long)(*ret)->serial);
		vbs_rp_free(*ret);
		return vbs_vfy_damaged_serial(c, serial);
	}
	return 1;
}

/* Whole vault: every point record, in serial order. */
int vbs_vfy_load_all_points(struct ctx *c)
{
	MDB_cursor *cur;
	MDB_val k, d;
	int rc, r = 0;

	rc = mdb_cursor_open(c->txn, c->v->dbi_rps, &cur);
	if (rc)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "rps");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		vbs_rp *rp;

		if (k.mv_size != 8) {
			vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
				       "a point record has a key of %zu bytes", k.mv_size);
			continue;
		}
		r = vbs_rp_open(c->v, k.mv_data, k.mv_size, d.mv_data, d.mv_size, &rp);
		if (r == -ENOMEM) {
			r = vbs_fail(r, "out of memory");
			break;
		}
		if (r < 0) {
			vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
				       "the record of the point with serial %llu is damaged",
				       (unsigned long long)vbs_get64(k.mv_data));
			if ((r = vbs_vfy_damaged_serial(c, vbs_get64(k.mv_data))) < 0)
				break;
			continue;
		}
		if (rp->serial != vbs_get64(k.mv_data)) {
			vbs_vfy_report(c, VBS_VERIFY_RECORD, rp->vm, rp->id, NULL, 0, 0, 0,
				       "the record stored under serial %llu names serial %llu",
				       (unsigned long long)vbs_get64(k.mv_data),
				       (unsigned long long)rp->serial);
			if ((r = vbs_vfy_damaged_serial(c, rp->serial)) < 0) {
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
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "rps");
	return 0;
}

/* One VM, or one of its points: by the name records. */
int vbs_vfy_load_vm_points(struct ctx *c, const char *vm, const char *id)
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
			vbs_vfy_report(c, VBS_VERIFY_RECORD, vm, NULL, NULL, 0, 0, 0,
				       "a name record of VM '%s' is damaged", vm);
			return 0;
		}
		if (r < 0)
			return vbs_vfy_db_fail(c, r, "rpnames");
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
			return vbs_vfy_db_fail(c, r, "rpnames");
		if (r == -EBADMSG) {
			vbs_vfy_report(c, VBS_VERIFY_RECORD, vm, id, NULL, 0, 0, 0,
				       "the name record of the point is damaged");
			return 0;
		}
		r = load_point(c, serial, vm, id, 0, &rp);
		return r <= 0 ? r : add_point(c, rp);
	}
	r = vbs_names_of(c->v, c->txn, vm, &e, &n);
	if (r == -EBADMSG) {
		vbs_vfy_report(c, VBS_VERIFY_RECORD, vm, NULL, NULL, 0, 0, 0,
			       "a name record of VM '%s' is damaged", vm);
		return 0;
	}
	if (r < 0)
		return vbs_vfy_db_fail(c, r, "rpnames");
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
int vbs_vfy_scan_small_dbs(struct ctx *c)
{
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	uint64_t names_total = 0, names_seen = 0;
	int rc, r = 0;

	rc = mdb_cursor_open(c->txn, c->v->dbi_vms, &cur);
	if (rc)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "vms");
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
			vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
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
			r = vbs_name_open(c->v, name, nk.mv_data, nk.mv_size, nd.mv_data,
					  nd.mv_size, id, &serial);
			if (r == -ENOMEM)
				break;
			if (r < 0) {
				vbs_vfy_report(c, VBS_VERIFY_RECORD, name, NULL, NULL, 0, 0, 0,
					       "a name record of VM '%s' is damaged", name);
				r = 0;
				continue;
			}
			/* The record itself is checked by vbs_vfy_check_point(); here only that the
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
		return r == -ENOMEM ? vbs_fail(r, "out of memory")
				    : vbs_vfy_db_fail(c, r, "rpnames");
	if (rc != MDB_NOTFOUND)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "vms");

	rc = mdb_cursor_open(c->txn, c->v->dbi_rpnames, &cur);
	if (rc)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "rpnames");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT))
		names_total++;
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "rpnames");
	if (names_total != names_seen)
		vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
			       "%llu name records belong to no VM record",
			       (unsigned long long)(names_total - names_seen));

	rc = mdb_cursor_open(c->txn, c->v->dbi_lineages, &cur);
	if (rc)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "lineages");
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		uint64_t head = 0, size = 0;

		c->res->records++;
		r = k.mv_size == 8
			? vbs_lineage_get(c->v, c->txn, vbs_get64(k.mv_data), &head, &size)
			: -EBADMSG;
		if (r == -ENOMEM) {
			mdb_cursor_close(cur);
			return vbs_fail(r, "out of memory");
		}
		if (r < 0 || vbs_get64(k.mv_data) > c->seq || head > c->seq || size == 0)
			vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0,
				       "a lineage record (%zu-byte key, %zu-byte value) is damaged",
				       k.mv_size, d.mv_size);
		r = 0;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "lineages");
	return 0;
}

/* Whole vault: the databases no point reads (job history, pins, protections) and LMDB's free
 * list are walked too, so that a damaged page there, which would make the next ingest or gc
 * fail, is found now. Job records must decode. */
int vbs_vfy_scan_other_dbs(struct ctx *c)
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
			return vbs_vfy_db_fail(c, vbs_mdb_err(rc), names[i]);
		for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
			if (i == 2) {
				uint8_t *p = NULL;
				size_t len = 0;

				c->res->records++;
				if (vbs_unseal(c->v, VBS_DB_PROTECT, k.mv_data, k.mv_size,
					       d.mv_data, d.mv_size, &p, &len) < 0 ||
				    len != 8 || k.mv_size != 8)
					vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0,
						       0, "a protection record is damaged");
				vbs_unsealed_free(p, len);
			}
			if (i == 0) {
				vbs_job job;

				c->res->records++;
				if (vbs_job_unseal(c->v, k.mv_data, k.mv_size, d.mv_data, d.mv_size,
						   &job) < 0)
					vbs_vfy_report(c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0,
						       0, "a record of the job history is damaged");
			}
			if (++batch % VBS_VERIFY_TXN_CHUNKS == 0 && c->o->stop && *c->o->stop)
				break;
		}
		mdb_cursor_close(cur);
		if (rc && rc != MDB_NOTFOUND)
			return vbs_vfy_db_fail(c, vbs_mdb_err(rc), names[i]);
	}
	return 0;
}

/* ---- index entries ---- */

/* Checks the index entries from key start (24 bytes) on: all of them (lineage 0: the whole
 * database), or those of one lineage. Renews the transaction as it goes. */
int vbs_vfy_scan_index(struct ctx *c, uint64_t only_lineage, int all)
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
			return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "idx");
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

			/* A scan of millions of entries: the map trim keeps the RSS bounded. */
			vbs_map_touched(c->v, k.mv_size + d.mv_size + 16);

			if (vbs_idx_key_decode(k.mv_data, k.mv_size, &lin, &n, &serial) < 0) {
				if (!all && (vbs_idx_key_lineage(k.mv_data, k.mv_size, &lin) < 0 ||
					     lin != only_lineage))
					break; /* not a key of this lineage, whatever it is */
				c->res->index_entries++;
				vbs_vfy_report(c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
					       "an index entry has a key of %zu bytes", k.mv_size);
				continue;
			}
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
				vbs_vfy_report(
				    c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				    "index entry (lineage %llu, chunk %llu, serial %llu) is of an "
				    "unknown or damaged lineage",
				    (unsigned long long)lin, (unsigned long long)n,
				    (unsigned long long)serial);
			else if (n >= vbs_vfy_nchunks(lin_size, c->v->chunk_size))
				vbs_vfy_report(
				    c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				    "index entry (lineage %llu, chunk %llu, serial %llu) is past "
				    "the end of the disk (%llu bytes)",
				    (unsigned long long)lin, (unsigned long long)n,
				    (unsigned long long)serial, (unsigned long long)lin_size);
			else if (d.mv_size != 0 && d.mv_size != VBS_ID_LEN)
				vbs_vfy_report(
				    c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
				    "index entry (lineage %llu, chunk %llu, serial %llu) has a "
				    "value of %zu bytes",
				    (unsigned long long)lin, (unsigned long long)n,
				    (unsigned long long)serial, d.mv_size);
			else if (serial > c->seq)
				vbs_vfy_report(
				    c, VBS_VERIFY_INDEX, NULL, NULL, NULL, 0, 0, 0,
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
			return vbs_vfy_db_fail(c, r, "lineages");
		if (rc && rc != MDB_NOTFOUND)
			return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "idx");
		if (batch < VBS_VERIFY_TXN_CHUNKS)
			return 0; /* the end (of the database, or of the lineage) */
		if ((r = vbs_vfy_txn_renew(c)) < 0)
			return r;
	}
}

/* ---- the group MACs of every disk (imap.h) ---- */

/* Every group of every disk of every point against its MAC, and the data chunks counted
 * against the point's record: a swapped, deleted, replayed or re-pointed index entry, or a
 * missing or damaged map, is found here even where each entry looks well formed. */
int vbs_vfy_check_maps(struct ctx *c)
{
	int r = 0;

	for (size_t i = 0; i < c->npts; i++) {
		const vbs_rp *rp = c->pts[i];

		for (size_t di = 0; di < rp->n_disks; di++) {
			const vbs_disk *dk = &rp->disks[di];
			uint64_t count = 0, bad_from = 0, nbad = 0, ng;
			vbs_imap *m = NULL;

			if ((r = vbs_vfy_txn_renew(c)) < 0)
				return r;
			r = vbs_imap_new(c->v, c->txn, rp->serial, (unsigned)di, dk->lineage,
					 dk->size, &m);
			if (r == -EBADMSG) {
				vbs_vfy_report(c, VBS_VERIFY_INDEX, rp->vm, rp->id, dk->name, 0,
					       dk->size, 0,
					       "the disk's index map is missing or damaged");
				if ((r = vbs_vfy_damaged_serial(c, rp->serial)) < 0)
					return r;
				continue;
			}
			if (r < 0)
				return vbs_vfy_db_fail(c, r, "dmaps");
			ng = vbs_imap_groups(m);
			for (uint64_t g = 0; g <= ng; g++) {
				uint64_t n = 0;

				r = g < ng ? vbs_imap_check(m, c->txn, g, &n) : 0;
				/* Its index entries were read through the map: the trim bounds
				 * the RSS of a check of millions of them. */
				vbs_map_touched(c->v, (size_t)VBS_GROUP_CHUNKS * 64);
				if (r < 0 && r != -EBADMSG)
					break;
				if (r == -EBADMSG && nbad++ == 0)
					bad_from = g;
				if (r == 0 && nbad) {
					uint64_t span = (uint64_t)VBS_GROUP_CHUNKS * rp->chunk_size;
					uint64_t off = bad_from * span, len = nbad * span;

					if (len > dk->size - off)
						len = dk->size - off;
					vbs_vfy_report(c, VBS_VERIFY_INDEX, rp->vm, rp->id,
						       dk->name, off, len, 0,
						       "the index does not match the disk's map");
					nbad = 0;
					if ((r = vbs_vfy_damaged_serial(c, rp->serial)) < 0)
						break;
				}
				count += n;
				r = 0;
				if (vbs_vfy_txn_due(c) && (r = vbs_vfy_txn_renew(c)) < 0)
					break;
			}
			vbs_imap_free(m);
			if (r < 0)
				return r == -EINTR ? r : vbs_vfy_db_fail(c, r, "idx");
			if (count != dk->data_chunks) {
				vbs_vfy_report(
				    c, VBS_VERIFY_INDEX, rp->vm, rp->id, dk->name, 0, dk->size, 0,
				    "the index holds %llu data chunks, the point's record says "
				    "%llu",
				    (unsigned long long)count, (unsigned long long)dk->data_chunks);
				if ((r = vbs_vfy_damaged_serial(c, rp->serial)) < 0)
					return r;
			}
		}
	}
	return 0;
}
