/* verify.c: checking a vault, a VM or a point (see verify.h).
 *
 * In order: the records (whole vault: every database but chunks; else the points in scope and
 * the records they lean on), the index entries of the lineages in scope, a walk of every disk
 * of every point collecting the ids it refers to (a sorted array, deduplicated as it grows),
 * one read of each distinct chunk (or of a sample), and, only when some chunk is bad, a second
 * walk mapping the bad ids back to (point, disk, chunk number), merged into byte ranges.
 *
 * This file holds the order; the stages are in verify_records.c (records, index entries, group
 * MACs) and verify_chunks.c (walks, chunk reads), what they share in verify_report.c
 * (verify_internal.h).
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
#include "verify_internal.h"

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
	if ((vlen != 0 && vlen != VBS_ID_LEN) || (vlen && !val) ||
	    vbs_idx_key_decode(key, klen, ret_lineage, ret_n, ret_serial) < 0)
		return -EBADMSG;
	if (ret_data)
		*ret_data = vlen == VBS_ID_LEN;
	return 0;
}
/* References a slice holds: about 36 MiB (struct ref), twice that as the array grows. */
#define REF_SLICE (1u << 20)

/* How many slices the references take: every distinct id a point refers to is the value of
 * an index entry, so the entries bound them. */
static int ref_slices(struct ctx *c)
{
	MDB_stat st;
	int rc = mdb_stat(c->txn, c->v->dbi_idx, &st);

	if (rc)
		return vbs_vfy_db_fail(c, vbs_mdb_err(rc), "index");
	c->nslices = vbs_slices_for(st.ms_entries, vbs_test_slice(REF_SLICE));
	c->total = st.ms_entries;
	return 0;
}

static int run(struct ctx *c)
{
	uint64_t *lins = NULL;
	size_t nlins = 0;
	int r;

	if ((r = vbs_vfy_txn_begin(c)) < 0)
		return r;
	if ((r = vbs_vfy_check_seq(c)) < 0)
		return r;
	if (c->whole) {
		if ((r = vbs_vfy_scan_small_dbs(c)) < 0 || (r = vbs_vfy_scan_other_dbs(c)) < 0 ||
		    (r = vbs_vfy_load_all_points(c)) < 0)
			return r;
	} else if ((r = vbs_vfy_load_vm_points(c, c->o->vm, c->o->rp)) < 0) {
		return r;
	}
	for (size_t i = 0; i < c->npts; i++)
		if ((r = vbs_vfy_check_point(c, c->pts[i])) < 0)
			return r;

	/* Index entries: all of them, or those of the lineages in scope. */
	if (c->whole) {
		if ((r = vbs_vfy_txn_renew(c)) < 0 || (r = vbs_vfy_scan_index(c, 0, 1)) < 0)
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
		qsort(lins, nlins, sizeof(*lins), vbs_vfy_cmp_u64);
		for (size_t i = 0; i < nlins && r >= 0; i++)
			if (i == 0 || lins[i] != lins[i - 1])
				r = vbs_vfy_scan_index(c, lins[i], 0);
		free(lins);
		if (r < 0)
			return r;
	}

	if ((r = vbs_vfy_check_maps(c)) < 0)
		return r;

	/* The chunks the points refer to, each once: one slice of the id space at a time, so
	 * that the references held stay bounded however large the vault (each slice walks
	 * every disk again, and reads its chunks in id order). */
	c->buf = malloc(c->v->chunk_size);
	if (!c->buf)
		return vbs_fail(-ENOMEM, "out of memory");
	if ((r = vbs_vfy_txn_renew(c)) < 0 || (r = ref_slices(c)) < 0)
		return r;
	for (c->slice = 0; c->slice < c->nslices; c->slice++) {
		if ((r = vbs_vfy_txn_renew(c)) < 0 ||
		    (r = vbs_vfy_walk_all(c, vbs_vfy_collect_fn)) < 0)
			return r;
		vbs_vfy_refs_compact(c);
		c->res->chunks_referenced += c->nrefs;
		if ((r = vbs_vfy_sample(c)) < 0)
			return r;
		if ((r = vbs_vfy_txn_renew(c)) < 0 || (r = vbs_vfy_read_chunks(c)) < 0)
			return r;
		c->done += c->nrefs;
		c->nrefs = 0;
	}
	free(c->refs);
	c->refs = NULL;
	c->nrefs = c->caprefs = 0;

	/* Which points, disks and ranges the bad chunks affect. */
	if ((r = vbs_vfy_recheck_bad(c)) < 0)
		return r;
	if (c->nbad) {
		if ((r = vbs_vfy_txn_renew(c)) < 0 || (r = vbs_vfy_walk_all(c, vbs_vfy_map_fn)) < 0)
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
	return vbs_vfy_report_hits(c);
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
		vbs_vfy_report(&c, VBS_VERIFY_RECORD, NULL, NULL, NULL, 0, 0, 0, "%s", msg);
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
	vbs_vfy_count_damaged_points(&c);
	vbs_vfy_txn_end(&c);
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
