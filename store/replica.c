/* replica.c: the receiving end of sync (see replica.h for the messages). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunkstore.h"
#include "index.h"
#include "internal.h"
#include "pins.h"
#include "jobs_db.h"
#include "jobs.h"
#include "replica.h"
#include "seal.h"
#include "util.h"
#include "wire.h"

#define VALUE_MAX (16u << 20)
#define JOB_MAX (64u << 10)
#define HWM_PREFIX "sync-vm:"
#define HWM_PREFIX_LEN (sizeof(HWM_PREFIX) - 1)

struct vbs_replica {
	vbs_vault *v;
};

int vbs_replica_open(const char *path, vbs_replica **ret)
{
	vbs_replica *r = calloc(1, sizeof(*r));
	int e;

	if (!r)
		return vbs_fail(-ENOMEM, "out of memory");
	e = vbs_vault_open(path, 0, &r->v);
	if (e == 0 && !r->v->replica)
		e = vbs_fail(-EPROTO,
			     "'%s' is not a replica (make one with vmbak init --replica-of)", path);
	if (e == 0)
		e = vbs_vault_open_env_keyless(r->v);
	if (e < 0) {
		vbs_replica_close(r);
		return e;
	}
	*ret = r;
	return 0;
}

void vbs_replica_close(vbs_replica *r)
{
	if (!r)
		return;
	vbs_vault_close(r->v);
	free(r);
}

/* ---- responses ---- */

static void status(vbs_wr *w, int st)
{
	vbs_wr_u8(w, st);
}

static void error_line(vbs_wr *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error_line(vbs_wr *w, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	w->len = 0;
	status(w, VBS_SYNC_ERR);
	vbs_wr_bytes(w, buf, strlen(buf));
}

/* A store/ failure as the error response: its message, else its errno. */
static void error_from(vbs_wr *w, int e, const char *what)
{
	const char *m = vbs_errmsg();

	if (m && *m)
		error_line(w, "%s", m);
	else
		error_line(w, "%s: %s", what, vbu_strerror(-e));
}

/* ---- HELLO, CONFIG ---- */

/* 1 when meta "config" is there (not yet in a replica made from a config file alone). */
static int has_config(vbs_vault *v)
{
	MDB_txn *txn = NULL;
	MDB_val k = {6, (void *)"config"}, d;
	int rc;

	if (vbs_read_begin(v, &txn) < 0)
		return 1; /* cannot tell: the sender then sends nothing */
	rc = mdb_get(txn, v->dbi_meta, &k, &d);
	vbs_read_end(v, txn);
	return rc != MDB_NOTFOUND;
}

static int config_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	const MDB_val *val = arg;
	MDB_val k = {6, (void *)"config"}, d = *val;
	int rc = mdb_put(txn, v->dbi_meta, &k, &d, MDB_NOOVERWRITE);

	return rc == MDB_KEYEXIST ? 0 : vbs_mdb_err(rc);
}

static void config(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	MDB_val val;
	int r;

	val.mv_size = vbs_rd_u32(rd);
	if (rd->bad || val.mv_size < VBS_SEAL_OVERHEAD || val.mv_size > 4096) {
		error_line(w, "malformed config request");
		return;
	}
	val.mv_data = (void *)vbs_rd_bytes(rd, val.mv_size);
	if (vbs_rd_done(rd, 1) < 0) {
		error_line(w, "malformed config request");
		return;
	}
	/* Kept when there: a replica's own sealed copy is never replaced. */
	r = vbs_write(rp->v, config_fn, &val);
	if (r < 0)
		error_from(w, r, "cannot write the replica's config record");
	else
		status(w, VBS_SYNC_OK);
}

static void hello(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	vbs_vault *v = rp->v;
	uint32_t ver = vbs_rd_u32(rd);
	const uint8_t *uuid = vbs_rd_bytes(rd, 36);
	char boot[40] = {0};
	int32_t pid;
	uint64_t start;

	if (rd->bad) {
		error_line(w, "malformed hello");
		return;
	}
	if (ver != VBS_SYNC_PROTO) {
		error_line(w, "protocol version %u is not spoken here (this vmbak speaks %u)", ver,
			   VBS_SYNC_PROTO);
		return;
	}
	if (vbs_rd_done(rd, 1) < 0) {
		error_line(w, "malformed hello");
		return;
	}
	if (memcmp(uuid, v->uuid, 36) != 0) {
		error_line(w, "'%s' is not a replica of the source vault (it is one of vault %s)",
			   v->path, v->uuid);
		return;
	}
	vbs_job_self(&pid, &start, boot);
	status(w, VBS_SYNC_OK);
	vbs_wr_u32(w, VBS_SYNC_PROTO);
	vbs_wr_bytes(w, v->uuid, 36);
	vbs_wr_bytes(w, v->site, 36);
	vbs_wr_u32(w, v->chunk_size);
	vbs_wr_u8(w, v->encrypted);
	vbs_wr_u32(w, (uint32_t)pid);
	vbs_wr_u64(w, start);
	vbs_wr_bytes(w, boot, 40);
	vbs_wr_u8(w, has_config(v));
}

/* ---- LIST ---- */

static int list_txn(vbs_vault *v, MDB_txn *txn, vbs_wr *w)
{
	MDB_cursor *c = NULL;
	MDB_val k, d;
	uint64_t seq = 0, last = 0;
	size_t at;
	uint32_t n = 0;
	int rc, r;

	r = vbs_get_u64(txn, v->dbi_meta, "seq", 3, &seq);
	if (r < 0 && r != -ENOENT)
		return r;
	if (v->dbi_jobs) {
		if ((rc = mdb_cursor_open(txn, v->dbi_jobs, &c)))
			return vbs_mdb_err(rc);
		rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
		if (rc == 0 && k.mv_size == 8)
			last = vbs_get64(k.mv_data);
		mdb_cursor_close(c);
		if (rc && rc != MDB_NOTFOUND)
			return vbs_mdb_err(rc);
	}
	status(w, VBS_SYNC_OK);
	vbs_wr_u64(w, seq);
	vbs_wr_u64(w, last);
	at = w->len;
	vbs_wr_u32(w, 0);
	if ((rc = mdb_cursor_open(txn, v->dbi_rps, &c)))
		return vbs_mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 8)
			continue;
		vbs_wr_u64(w, vbs_get64(k.mv_data));
		n++;
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND)
		return vbs_mdb_err(rc);
	if (!w->bad)
		vbs_put32(w->p + at, n);
	at = w->len;
	n = 0;
	vbs_wr_u32(w, 0);
	if ((rc = mdb_cursor_open(txn, v->dbi_meta, &c)))
		return vbs_mdb_err(rc);
	k.mv_size = HWM_PREFIX_LEN;
	k.mv_data = (void *)HWM_PREFIX;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size < HWM_PREFIX_LEN || memcmp(k.mv_data, HWM_PREFIX, HWM_PREFIX_LEN))
			break;
		if (k.mv_size != HWM_PREFIX_LEN + VBS_NAME_HASH_LEN || d.mv_size != 8)
			continue;
		vbs_wr_bytes(w, (const uint8_t *)k.mv_data + HWM_PREFIX_LEN, VBS_NAME_HASH_LEN);
		vbs_wr_u64(w, vbs_get64(d.mv_data));
		n++;
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND && rc != 0)
		return vbs_mdb_err(rc);
	if (!w->bad)
		vbs_put32(w->p + at, n);
	return 0;
}

static void list(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	MDB_txn *txn = NULL;
	int r;

	if (vbs_rd_done(rd, 1) < 0) {
		error_line(w, "malformed list request");
		return;
	}
	if ((r = vbs_read_begin(rp->v, &txn)) < 0) {
		error_from(w, r, "cannot read the replica");
		return;
	}
	r = list_txn(rp->v, txn, w);
	vbs_read_end(rp->v, txn);
	if (r < 0)
		error_from(w, r, "cannot read the replica");
}

/* ---- HAVE ---- */

static void have(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	uint32_t n = vbs_rd_u32(rd);
	const uint8_t *ids;
	uint8_t *out;
	int r;

	if (rd->bad || n > VBS_SYNC_HAVE_MAX) {
		error_line(w, "malformed have request");
		return;
	}
	ids = vbs_rd_bytes(rd, (size_t)n * VBS_ID_LEN);
	if (vbs_rd_done(rd, 1) < 0) {
		error_line(w, "malformed have request");
		return;
	}
	status(w, VBS_SYNC_OK);
	out = vbs_wr_room(w, n);
	if (!out)
		return;
	r = n ? vbs_cs_exists(rp->v, NULL, n, (const uint8_t(*)[VBS_ID_LEN])ids, out) : 0;
	if (r < 0)
		error_from(w, r, "cannot read the replica's chunks");
}

/* ---- PUT ---- */

static int job_exists(vbs_vault *v, uint64_t job)
{
	MDB_txn *txn = NULL;
	uint8_t key[8];
	MDB_val k = {8, key}, d;
	int r, rc;

	if (!job || !v->dbi_jobs)
		return 0;
	if ((r = vbs_read_begin(v, &txn)) < 0)
		return r;
	vbs_put64(key, job);
	rc = mdb_get(txn, v->dbi_jobs, &k, &d);
	vbs_read_end(v, txn);
	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : vbs_mdb_err(rc);
}

static void put(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	vbs_vault *v = rp->v;
	uint64_t job = vbs_rd_u64(rd), added = 0, added_bytes = 0;
	uint32_t nc = vbs_rd_u32(rd), n;
	const uint8_t *check;
	vbs_cs_item *items = NULL;
	size_t fmax = vbs_frame_max(v->chunk_size);
	vbs_pin_batch b;
	int r;

	if (rd->bad || nc > VBS_SYNC_HAVE_MAX)
		goto bad;
	check = vbs_rd_bytes(rd, (size_t)nc * VBS_ID_LEN);
	n = vbs_rd_u32(rd);
	if (rd->bad || n > VBS_SYNC_PUT_MAX)
		goto bad;
	items = calloc(n ? n : 1, sizeof(*items));
	if (!items) {
		error_line(w, "out of memory");
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t plain;

		items[i].id = vbs_rd_bytes(rd, VBS_ID_LEN);
		items[i].len = vbs_rd_u32(rd);
		if (rd->bad || items[i].len > fmax || items[i].len < VBS_FRAME_HDR)
			goto bad;
		items[i].frame = vbs_rd_bytes(rd, items[i].len);
		if (rd->bad || vbs_frame_plain_len(items[i].frame, items[i].len, &plain) < 0 ||
		    plain == 0 || plain > v->chunk_size)
			goto bad;
		items[i].plain_len = plain;
	}
	if (vbs_rd_done(rd, 1) < 0)
		goto bad;
	r = job_exists(v, job);
	if (r <= 0) {
		if (r < 0)
			error_from(w, r, "cannot read the replica");
		else
			error_line(w, "chunks sent for job %llu, which the replica does not have",
				   (unsigned long long)job);
		goto out;
	}
	b = (vbs_pin_batch){.job = job,
			    .items = items,
			    .n = n,
			    .check = (const uint8_t(*)[VBK_HASH_LEN])check,
			    .ncheck = nc};
	r = vbs_cs_put(v, items, n, VBS_CS_LAZY, vbs_pins_take, &b, &added, &added_bytes);
	if (r == -ESTALE) {
		status(w, VBS_SYNC_STALE);
		goto out;
	}
	if (r < 0) {
		error_from(w, r, "cannot store chunks in the replica");
		goto out;
	}
	status(w, VBS_SYNC_OK);
	vbs_wr_u64(w, added);
	vbs_wr_u64(w, added_bytes);
	goto out;
bad:
	error_line(w, "malformed put request");
out:
	free(items);
}

/* ---- JOB ---- */

struct job_ctx {
	uint64_t id;
	int create;
	const uint8_t *rec;
	size_t len;
	int taken;
};

static int job_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct job_ctx *c = arg;
	uint8_t key[8];
	MDB_val k = {8, key}, d = {c->len, (void *)c->rec};
	int rc;

	c->taken = 0;
	vbs_put64(key, c->id);
	if (!c->create) {
		MDB_val old;

		rc = mdb_get(txn, v->dbi_jobs, &k, &old);
		if (rc)
			return rc == MDB_NOTFOUND ? -ENOENT : vbs_mdb_err(rc);
	}
	rc = mdb_put(txn, v->dbi_jobs, &k, &d, c->create ? MDB_NOOVERWRITE : 0);
	if (rc == MDB_KEYEXIST) {
		c->taken = 1;
		return 0;
	}
	return vbs_mdb_err(rc);
}

static void job(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	struct job_ctx c = {0};
	int r;

	c.id = vbs_rd_u64(rd);
	c.create = vbs_rd_u8(rd);
	c.len = vbs_rd_u32(rd);
	if (rd->bad || c.id == 0 || c.id == UINT64_MAX || c.create > 1 || c.len == 0 ||
	    c.len > JOB_MAX) {
		error_line(w, "malformed job request");
		return;
	}
	c.rec = vbs_rd_bytes(rd, c.len);
	if (vbs_rd_done(rd, 1) < 0) {
		error_line(w, "malformed job request");
		return;
	}
	if (!rp->v->dbi_jobs) {
		error_line(w, "replica '%s' has no job history", rp->v->path);
		return;
	}
	r = vbs_write(rp->v, job_fn, &c);
	if (r == -ENOENT)
		error_line(w, "no job %llu in the replica", (unsigned long long)c.id);
	else if (r < 0)
		error_from(w, r, "cannot write the replica's job record");
	else
		status(w, c.taken ? VBS_SYNC_STALE : VBS_SYNC_OK);
}

/* ---- COMMIT ---- */

enum { DB_VMS = 1, DB_RPS, DB_NAMES, DB_LINEAGES, DB_DMAPS, DB_PROTECT };

struct rec {
	uint8_t db;
	const uint8_t *key;
	size_t klen;
	const uint8_t *val;
	size_t vlen;
};

struct disk {
	uint64_t lineage, base;
	int full;
	uint32_t nent;
	const uint8_t *ent; /* nent entries as sent, checked */
};

struct commit {
	uint64_t serial, seq;
	const uint8_t *vmh;
	uint16_t nrec, ndisks;
	struct rec *recs;
	struct disk *disks;
	int already, stale;
	const char *why; /* a malformed request: what is wrong */
};

/* Entry i of a disk: chunk, data flag and id (NULL for a hole), from the checked bytes. */
static const uint8_t *entry_next(const uint8_t *p, uint64_t *ret_n, const uint8_t **ret_id)
{
	*ret_n = vbs_get64(p);
	*ret_id = p[8] ? p + 9 : NULL;
	return p + 9 + (p[8] ? VBS_ID_LEN : 0);
}

static int commit_parse(vbs_vault *v, vbs_rd *rd, struct commit *c)
{
	int nrps = 0;

	c->serial = vbs_rd_u64(rd);
	c->seq = vbs_rd_u64(rd);
	c->vmh = vbs_rd_bytes(rd, VBS_NAME_HASH_LEN);
	c->nrec = vbs_rd_u16(rd);
	if (rd->bad || c->serial == 0 || c->seq < c->serial || c->nrec == 0)
		return (c->why = "bad header", -EBADMSG);
	c->recs = calloc(c->nrec, sizeof(*c->recs));
	if (!c->recs)
		return -ENOMEM;
	for (unsigned i = 0; i < c->nrec; i++) {
		struct rec *e = &c->recs[i];
		uint8_t ser[8];

		e->db = vbs_rd_u8(rd);
		e->klen = vbs_rd_u16(rd);
		e->key = vbs_rd_bytes(rd, e->klen);
		e->vlen = vbs_rd_u32(rd);
		if (rd->bad || e->vlen > VALUE_MAX || e->vlen < VBS_SEAL_OVERHEAD)
			return (c->why = "bad record", -EBADMSG);
		e->val = vbs_rd_bytes(rd, e->vlen);
		if (rd->bad)
			return (c->why = "bad record", -EBADMSG);
		vbs_put64(ser, c->serial);
		switch (e->db) {
		case DB_VMS:
			if (e->klen != VBS_NAME_HASH_LEN || memcmp(e->key, c->vmh, e->klen))
				return (c->why = "bad VM record", -EBADMSG);
			break;
		case DB_RPS:
			if (e->klen != 8 || memcmp(e->key, ser, 8))
				return (c->why = "bad point record", -EBADMSG);
			nrps++;
			break;
		case DB_NAMES:
			if (e->klen != 2 * VBS_NAME_HASH_LEN ||
			    memcmp(e->key, c->vmh, VBS_NAME_HASH_LEN))
				return (c->why = "bad name record", -EBADMSG);
			break;
		case DB_LINEAGES:
			if (e->klen != 8 || vbs_get64(e->key) == 0)
				return (c->why = "bad lineage record", -EBADMSG);
			break;
		case DB_DMAPS:
			if (e->klen != 10 || memcmp(e->key, ser, 8))
				return (c->why = "bad map record", -EBADMSG);
			break;
		case DB_PROTECT:
			if (e->klen != 8 || memcmp(e->key, ser, 8))
				return (c->why = "bad protection record", -EBADMSG);
			if (!v->dbi_protect)
				return (c->why = "no protection table", -EBADMSG);
			break;
		default:
			return (c->why = "unknown database", -EBADMSG);
		}
	}
	if (nrps != 1)
		return (c->why = "not exactly one point record", -EBADMSG);
	c->ndisks = vbs_rd_u16(rd);
	if (rd->bad || c->ndisks > VBS_DISKS_MAX)
		return (c->why = "bad disk count", -EBADMSG);
	c->disks = calloc(c->ndisks ? c->ndisks : 1, sizeof(*c->disks));
	if (!c->disks)
		return -ENOMEM;
	for (unsigned i = 0; i < c->ndisks; i++) {
		struct disk *d = &c->disks[i];
		uint64_t prev = 0;

		d->lineage = vbs_rd_u64(rd);
		d->full = vbs_rd_u8(rd);
		d->base = vbs_rd_u64(rd);
		d->nent = vbs_rd_u32(rd);
		if (rd->bad || d->lineage == 0 || d->full > 1 || d->base >= c->serial)
			return (c->why = "bad disk", -EBADMSG);
		d->ent = rd->p;
		/* Chunks strictly increasing: no entry twice. */
		for (uint32_t j = 0; j < d->nent; j++) {
			uint64_t n = vbs_rd_u64(rd);
			uint8_t data = vbs_rd_u8(rd);

			if (rd->bad || data > 1 || (j > 0 && n <= prev) || (d->full && !data))
				return (c->why = "bad index entry", -EBADMSG);
			if (data)
				vbs_rd_bytes(rd, VBS_ID_LEN);
			prev = n;
		}
		if (rd->bad)
			return (c->why = "bad index entry", -EBADMSG);
	}
	if (vbs_rd_done(rd, 1) < 0)
		return (c->why = "trailing bytes", -EBADMSG);
	return 0;
}

static int key_present(MDB_txn *txn, MDB_dbi dbi, uint64_t serial)
{
	uint8_t key[8];
	MDB_val k = {8, key}, d;
	int rc;

	vbs_put64(key, serial);
	rc = mdb_get(txn, dbi, &k, &d);
	return rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : vbs_mdb_err(rc);
}

/* A full disk: every chunk that the lineage's older entries show as data at serial and that
 * the sent list does not name gets a hole at serial. */
static int fill_holes(vbs_vault *v, MDB_txn *txn, uint64_t serial, const struct disk *d)
{
	MDB_cursor *c;
	uint8_t key[VBS_IDX_KEY_LEN];
	MDB_val k = {sizeof(key), key}, val;
	const uint8_t *p = d->ent;
	uint32_t j = 0;
	uint64_t sent_n = 0, cur = UINT64_MAX;
	const uint8_t *sid = NULL;
	uint64_t *holes = NULL;
	size_t nh = 0, caph = 0;
	int r = 0, rc, done_n = 0;

	if (d->nent)
		p = entry_next(p, &sent_n, &sid);
	if ((rc = mdb_cursor_open(txn, v->dbi_idx, &c)))
		return vbs_mdb_err(rc);
	vbs_idx_key(key, d->lineage, 0, UINT64_MAX);
	for (rc = mdb_cursor_get(c, &k, &val, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &val, MDB_NEXT)) {
		uint64_t l, n, s;
		int data;

		if ((r = vbs_idx_key_decode(k.mv_data, k.mv_size, &l, &n, &s)) < 0)
			break;
		if (l != d->lineage)
			break;
		if (n != cur) {
			cur = n;
			done_n = 0;
		}
		/* The first entry of n at or below serial is what n shows there. */
		if (done_n || s > serial)
			continue;
		done_n = 1;
		if ((r = vbs_idx_value(&val, NULL, &data)) < 0)
			break;
		if (!data || s == serial)
			continue;
		while (j < d->nent && sent_n < n) {
			if (++j < d->nent)
				p = entry_next(p, &sent_n, &sid);
		}
		if (j < d->nent && sent_n == n)
			continue;
		if (nh == caph) {
			size_t nc = caph ? caph * 2 : 256;
			uint64_t *nhp = realloc(holes, nc * sizeof(*holes));

			if (!nhp) {
				r = -ENOMEM;
				break;
			}
			holes = nhp;
			caph = nc;
		}
		holes[nh++] = n;
	}
	mdb_cursor_close(c);
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	for (size_t i = 0; r == 0 && i < nh; i++)
		r = vbs_idx_put(v, txn, d->lineage, serial, holes[i], NULL);
	free(holes);
	return r;
}

static int check_stored(vbs_vault *v, MDB_txn *txn, const struct disk *d)
{
	uint8_t(*ids)[VBS_ID_LEN] = NULL, present[256];
	const uint8_t *p = d->ent;
	size_t n = 0;
	int r = 0;

	ids = malloc(256 * VBS_ID_LEN);
	if (!ids)
		return -ENOMEM;
	for (uint32_t j = 0; r == 0 && j <= d->nent; j++) {
		uint64_t cn;
		const uint8_t *id = NULL;

		if (j < d->nent) {
			p = entry_next(p, &cn, &id);
			if (id)
				memcpy(ids[n++], id, VBS_ID_LEN);
		}
		if (n == 256 || (j == d->nent && n)) {
			r = vbs_cs_exists(v, txn, n, (const uint8_t(*)[VBS_ID_LEN])ids, present);
			for (size_t i = 0; r == 0 && i < n; i++)
				if (!present[i])
					r = vbs_fail(-EPROTO,
						     "the commit names a chunk that replica '%s' "
						     "does not have",
						     v->path);
			n = 0;
		}
	}
	free(ids);
	return r;
}

static int raise_u64(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, uint64_t to)
{
	uint64_t have = 0;
	uint8_t buf[8];
	MDB_val k = {klen, (void *)key}, d = {8, buf};
	int r = vbs_get_u64(txn, dbi, key, klen, &have);

	if (r < 0 && r != -ENOENT && r != -EBADMSG)
		return r;
	if (r == 0 && have >= to)
		return 0;
	vbs_put64(buf, to);
	return vbs_mdb_err(mdb_put(txn, dbi, &k, &d, 0));
}

static int commit_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct commit *c = arg;
	uint8_t hk[HWM_PREFIX_LEN + VBS_NAME_HASH_LEN];
	int r;

	c->already = c->stale = 0;
	memcpy(hk, HWM_PREFIX, HWM_PREFIX_LEN);
	memcpy(hk + HWM_PREFIX_LEN, c->vmh, VBS_NAME_HASH_LEN);
	r = key_present(txn, v->dbi_rps, c->serial);
	if (r < 0)
		return r;
	if (r) {
		c->already = 1;
		return raise_u64(txn, v->dbi_meta, hk, sizeof(hk), c->serial);
	}
	/* A delta needs its base as it was sent against: gone meanwhile (a prune here), the
	 * sender sends the disk whole instead. */
	for (unsigned i = 0; i < c->ndisks; i++) {
		if (c->disks[i].full || !c->disks[i].base)
			continue;
		r = key_present(txn, v->dbi_rps, c->disks[i].base);
		if (r < 0)
			return r;
		if (!r) {
			c->stale = 1;
			return -ESTALE;
		}
	}
	/* Every chunk the entries name must be stored: sent before, or kept by the base. */
	for (unsigned i = 0; i < c->ndisks; i++)
		if ((r = check_stored(v, txn, &c->disks[i])) < 0)
			return r;
	for (unsigned i = 0; i < c->ndisks; i++)
		if (c->disks[i].full && (r = fill_holes(v, txn, c->serial, &c->disks[i])) < 0)
			return r;
	for (unsigned i = 0; i < c->ndisks; i++) {
		const struct disk *d = &c->disks[i];
		const uint8_t *p = d->ent;

		for (uint32_t j = 0; j < d->nent; j++) {
			uint64_t n;
			const uint8_t *id;

			p = entry_next(p, &n, &id);
			if ((r = vbs_idx_put(v, txn, d->lineage, c->serial, n, id)) < 0)
				return r;
		}
	}
	for (unsigned i = 0; i < c->nrec; i++) {
		const struct rec *e = &c->recs[i];
		MDB_dbi dbi = e->db == DB_VMS	     ? v->dbi_vms
			      : e->db == DB_RPS	     ? v->dbi_rps
			      : e->db == DB_NAMES    ? v->dbi_rpnames
			      : e->db == DB_LINEAGES ? v->dbi_lineages
			      : e->db == DB_DMAPS    ? v->dbi_dmaps
						     : v->dbi_protect;
		MDB_val k = {e->klen, (void *)e->key}, d = {e->vlen, (void *)e->val};
		int rc = mdb_put(txn, dbi, &k, &d, e->db == DB_VMS ? MDB_NOOVERWRITE : 0);

		if (rc && rc != MDB_KEYEXIST)
			return vbs_mdb_err(rc);
	}
	if ((r = raise_u64(txn, v->dbi_meta, "seq", 3, c->seq)) < 0)
		return r;
	return raise_u64(txn, v->dbi_meta, hk, sizeof(hk), c->serial);
}

static void commit(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	struct commit c = {0};
	int r = commit_parse(rp->v, rd, &c);

	if (r == -ENOMEM) {
		error_line(w, "out of memory");
		goto out;
	}
	if (r < 0) {
		error_line(w, "malformed commit request (%s)", c.why ? c.why : "?");
		goto out;
	}
	r = vbs_write(rp->v, commit_fn, &c);
	if (r == -ESTALE && c.stale) {
		status(w, VBS_SYNC_STALE);
		goto out;
	}
	if (r < 0) {
		error_from(w, r, "cannot commit to the replica");
		goto out;
	}
	status(w, VBS_SYNC_OK);
	vbs_wr_u8(w, c.already);
out:
	free(c.recs);
	free(c.disks);
}

/* ---- RELEASE ---- */

static void release(vbs_replica *rp, vbs_rd *rd, vbs_wr *w)
{
	uint64_t job = vbs_rd_u64(rd);
	int r;

	if (vbs_rd_done(rd, 1) < 0 || !job) {
		error_line(w, "malformed release request");
		return;
	}
	r = vbs_pins_release(rp->v, job);
	if (r < 0)
		error_from(w, r, "cannot release pins in the replica");
	else
		status(w, VBS_SYNC_OK);
}

int vbs_replica_handle(vbs_replica *rp, const uint8_t *req, size_t len, uint8_t **ret,
		       size_t *ret_len)
{
	vbs_wr w = {0};
	vbs_rd rd;
	uint8_t op;

	vbs_clear_err();
	vbs_rd_init(&rd, req, len);
	op = vbs_rd_u8(&rd);
	if (rd.bad)
		error_line(&w, "empty request");
	else if (op == VBS_SYNC_HELLO)
		hello(rp, &rd, &w);
	else if (op == VBS_SYNC_LIST)
		list(rp, &rd, &w);
	else if (op == VBS_SYNC_HAVE)
		have(rp, &rd, &w);
	else if (op == VBS_SYNC_PUT)
		put(rp, &rd, &w);
	else if (op == VBS_SYNC_JOB)
		job(rp, &rd, &w);
	else if (op == VBS_SYNC_COMMIT)
		commit(rp, &rd, &w);
	else if (op == VBS_SYNC_RELEASE)
		release(rp, &rd, &w);
	else if (op == VBS_SYNC_CONFIG)
		config(rp, &rd, &w);
	else
		error_line(&w, "unknown request %u", op);
	if (w.bad) {
		vbs_wr_free(&w);
		return -ENOMEM;
	}
	*ret = w.p;
	*ret_len = w.len;
	return 0;
}
