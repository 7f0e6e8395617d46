/* sync.c: copying recovery points to a replica (see sync.h; the messages are in replica.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunkstore.h"
#include "index.h"
#include "internal.h"
#include "rp_db.h"
#include "jobs_db.h"
#include "jobs.h"
#include "lifecycle.h"
#include "replica.h"
#include "rp.h"
#include "seal.h"
#include "sync.h"
#include "util.h"
#include "wire.h"

enum { DB_VMS = 1, DB_RPS, DB_NAMES, DB_LINEAGES, DB_DMAPS, DB_PROTECT };

struct hwm {
	uint8_t vmh[VBS_NAME_HASH_LEN];
	uint64_t serial;
};

struct peer {
	const vbs_sync_opts *o;
	vbs_vault *v;
	/* From HELLO. */
	int32_t pid;
	uint64_t pid_start;
	char boot[40];
	int has_config;
	/* From LIST. */
	uint64_t seq, last_job;
	uint64_t *have; /* serials the replica holds, sorted */
	size_t nhave, caphave;
	struct hwm *hwm;
	size_t nhwm;
	vbs_sync_stats *st;
};

/* ---- calls ---- */

/* Sends w's request; *rd reads the response body after an OK status (*ret_buf owns it).
 * Returns VBS_SYNC_OK, VBS_SYNC_STALE, or a negative errno (-EREMOTEIO: the replica's error). */
static int response(uint8_t *resp, size_t len, uint8_t **ret_buf, vbs_rd *rd);

static int call(struct peer *p, vbs_wr *w, uint8_t **ret_buf, vbs_rd *rd)
{
	uint8_t *resp = NULL;
	size_t len = 0;
	int r;

	if (w->bad)
		return vbs_fail(-ENOMEM, "out of memory");
	if (w->len > VBS_SYNC_MSG_MAX)
		return vbs_fail(-EMSGSIZE, "sync request too large");
	r = p->o->call(p->o->call_arg, w->p, w->len, &resp, &len);
	if (r < 0)
		return r;
	return response(resp, len, ret_buf, rd);
}

/* Checks a response (taking resp): as call. */
static int response(uint8_t *resp, size_t len, uint8_t **ret_buf, vbs_rd *rd)
{
	int r;

	if (len == 0 || resp[0] > VBS_SYNC_STALE) {
		free(resp);
		return vbs_fail(-EPROTO, "malformed response from the replica");
	}
	if (resp[0] == VBS_SYNC_ERR) {
		char msg[400];
		size_t n = 0;

		/* A peer's text: printable ASCII only, one line, bounded. */
		for (size_t i = 1; i < len && n < sizeof(msg) - 1; i++)
			msg[n++] = resp[i] >= 0x20 && resp[i] < 0x7f ? (char)resp[i] : '?';
		msg[n] = '\0';
		free(resp);
		return vbs_fail(-EREMOTEIO, "replica: %s", n ? msg : "unknown error");
	}
	r = resp[0];
	vbs_rd_init(rd, resp + 1, len - 1);
	*ret_buf = resp;
	return r;
}

static int malformed(void)
{
	return vbs_fail(-EPROTO, "malformed response from the replica");
}

static int hello(struct peer *p)
{
	vbs_wr w = {0};
	vbs_rd rd;
	uint8_t *buf = NULL;
	const uint8_t *uuid, *boot;
	uint32_t ver;
	int r;

	vbs_wr_u8(&w, VBS_SYNC_HELLO);
	vbs_wr_u32(&w, VBS_SYNC_PROTO);
	vbs_wr_bytes(&w, p->v->uuid, 36);
	r = call(p, &w, &buf, &rd);
	vbs_wr_free(&w);
	if (r < 0)
		return r;
	ver = vbs_rd_u32(&rd);
	if (!rd.bad && ver != VBS_SYNC_PROTO) {
		free(buf);
		return vbs_fail(-EPROTONOSUPPORT,
				"the replica speaks sync protocol version %u, this vmbak %u", ver,
				VBS_SYNC_PROTO);
	}
	uuid = vbs_rd_bytes(&rd, 36);
	vbs_rd_bytes(&rd, 36); /* site */
	vbs_rd_bytes(&rd, 5);  /* chunk size, encrypted */
	p->pid = (int32_t)vbs_rd_u32(&rd);
	p->pid_start = vbs_rd_u64(&rd);
	boot = vbs_rd_bytes(&rd, 40);
	p->has_config = vbs_rd_u8(&rd);
	r = vbs_rd_done(&rd, 1);
	if (r == 0 && memcmp(uuid, p->v->uuid, 36) != 0)
		r = -EPROTO;
	if (r == 0) {
		memcpy(p->boot, boot, 39);
		p->boot[39] = '\0';
		for (size_t i = 0; p->boot[i]; i++)
			if (p->boot[i] < 0x20 || p->boot[i] >= 0x7f)
				p->boot[i] = '?';
	}
	free(buf);
	return r < 0 ? malformed() : 0;
}

/* A replica made from a config file alone gets the sealed copy of the config, which only
 * the keys make. */
static int send_config(struct peer *p)
{
	uint8_t *sealed = NULL, *buf = NULL;
	size_t slen = 0;
	vbs_wr w = {0};
	vbs_rd rd;
	int r = vbs_config_sealed(p->v, &sealed, &slen);

	if (r < 0)
		return vbs_fail(r, "cannot seal the config record: %s", vbu_strerror(-r));
	vbs_wr_u8(&w, VBS_SYNC_CONFIG);
	vbs_wr_u32(&w, slen);
	vbs_wr_bytes(&w, sealed, slen);
	free(sealed);
	r = call(p, &w, &buf, &rd);
	vbs_wr_free(&w);
	if (r >= 0)
		r = vbs_rd_done(&rd, 1) < 0 || r != VBS_SYNC_OK ? malformed() : 0;
	free(buf);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int list(struct peer *p)
{
	vbs_wr w = {0};
	vbs_rd rd;
	uint8_t *buf = NULL;
	uint32_t n, m;
	int r;

	vbs_wr_u8(&w, VBS_SYNC_LIST);
	r = call(p, &w, &buf, &rd);
	vbs_wr_free(&w);
	if (r < 0)
		return r;
	p->seq = vbs_rd_u64(&rd);
	p->last_job = vbs_rd_u64(&rd);
	n = vbs_rd_u32(&rd);
	if (rd.bad || n > vbs_rd_left(&rd) / 8) {
		free(buf);
		return malformed();
	}
	free(p->have);
	p->have = malloc(((size_t)n + 1) * sizeof(*p->have));
	if (!p->have) {
		free(buf);
		return vbs_fail(-ENOMEM, "out of memory");
	}
	p->nhave = p->caphave = n;
	for (uint32_t i = 0; i < n; i++)
		p->have[i] = vbs_rd_u64(&rd);
	qsort(p->have, n, sizeof(*p->have), cmp_u64);
	m = vbs_rd_u32(&rd);
	if (rd.bad || m > vbs_rd_left(&rd) / (VBS_NAME_HASH_LEN + 8)) {
		free(buf);
		return malformed();
	}
	free(p->hwm);
	p->hwm = calloc((size_t)m + 1, sizeof(*p->hwm));
	if (!p->hwm) {
		free(buf);
		return vbs_fail(-ENOMEM, "out of memory");
	}
	p->nhwm = m;
	for (uint32_t i = 0; i < m; i++) {
		memcpy(p->hwm[i].vmh, vbs_rd_bytes(&rd, VBS_NAME_HASH_LEN), VBS_NAME_HASH_LEN);
		p->hwm[i].serial = vbs_rd_u64(&rd);
	}
	r = vbs_rd_done(&rd, 1);
	free(buf);
	return r < 0 ? malformed() : 0;
}

static int replica_has(const struct peer *p, uint64_t serial)
{
	return p->nhave && bsearch(&serial, p->have, p->nhave, sizeof(*p->have), cmp_u64);
}

static int replica_add(struct peer *p, uint64_t serial)
{
	if (replica_has(p, serial))
		return 0;
	if (p->nhave == p->caphave) {
		size_t nc = p->caphave ? p->caphave * 2 : 64;
		uint64_t *nh = realloc(p->have, nc * sizeof(*nh));

		if (!nh)
			return -ENOMEM;
		p->have = nh;
		p->caphave = nc;
	}
	p->have[p->nhave++] = serial;
	qsort(p->have, p->nhave, sizeof(*p->have), cmp_u64);
	return 0;
}

static uint64_t replica_hwm(const struct peer *p, const uint8_t vmh[VBS_NAME_HASH_LEN])
{
	for (size_t i = 0; i < p->nhwm; i++)
		if (memcmp(p->hwm[i].vmh, vmh, VBS_NAME_HASH_LEN) == 0)
			return p->hwm[i].serial;
	return 0;
}

/* ---- the job ---- */

static int job_send(struct peer *p, const vbs_job *j, int create)
{
	uint8_t *sealed = NULL, *buf = NULL;
	size_t slen = 0;
	vbs_wr w = {0};
	vbs_rd rd;
	int r = vbs_job_seal(p->v, j, &sealed, &slen);

	if (r < 0)
		return vbs_fail(r, "cannot seal the job record: %s", vbu_strerror(-r));
	vbs_wr_u8(&w, VBS_SYNC_JOB);
	vbs_wr_u64(&w, j->id);
	vbs_wr_u8(&w, create);
	vbs_wr_u32(&w, slen);
	vbs_wr_bytes(&w, sealed, slen);
	free(sealed);
	r = call(p, &w, &buf, &rd);
	vbs_wr_free(&w);
	if (r >= 0 && vbs_rd_done(&rd, 1) < 0)
		r = malformed();
	free(buf);
	return r;
}

static int job_begin(struct peer *p, vbs_job *j)
{
	int r;

	for (int tries = 0; tries < 20; tries++) {
		if ((r = list(p)) < 0)
			return r;
		if (p->last_job >= UINT64_MAX - 1)
			return malformed();
		j->id = p->last_job + 1;
		r = job_send(p, j, 1);
		if (r != VBS_SYNC_STALE)
			return r < 0 ? r : 0;
	}
	return vbs_fail(-EBUSY, "cannot get a job id in the replica: too many jobs starting");
}

/* ---- one point ---- */

struct ids {
	uint8_t (*id)[VBS_ID_LEN];
	size_t n, cap;
};

static int ids_add(struct ids *s, const uint8_t *id)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 1024;
		void *np = realloc(s->id, nc * VBS_ID_LEN);

		if (!np)
			return -ENOMEM;
		s->id = np;
		s->cap = nc;
	}
	memcpy(s->id[s->n++], id, VBS_ID_LEN);
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, VBS_ID_LEN);
}

/* Entries of one disk, as COMMIT sends them, and the data ids among them. */
struct ents {
	vbs_wr *w;
	uint32_t n;
	struct ids *ids;
};

static int walk_fn(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN])
{
	struct ents *e = arg;

	vbs_wr_u64(e->w, n);
	vbs_wr_u8(e->w, 1);
	vbs_wr_bytes(e->w, id, VBS_ID_LEN);
	e->n++;
	return ids_add(e->ids, id);
}

/* The entries written by point serial in lineage (holes included). */
static int delta_entries(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t serial,
			 struct ents *e)
{
	MDB_cursor *c;
	uint8_t key[VBS_IDX_KEY_LEN];
	MDB_val k = {sizeof(key), key}, d;
	int r = 0, rc = mdb_cursor_open(txn, v->dbi_idx, &c);

	if (rc)
		return vbs_mdb_err(rc);
	vbs_idx_key(key, lineage, 0, UINT64_MAX);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		uint64_t l, n, s;
		uint8_t id[VBS_ID_LEN];
		int data;

		if ((r = vbs_idx_key_decode(k.mv_data, k.mv_size, &l, &n, &s)) < 0 || l != lineage)
			break;
		if (s != serial)
			continue;
		if ((r = vbs_idx_value(&d, id, &data)) < 0)
			break;
		vbs_wr_u64(e->w, n);
		vbs_wr_u8(e->w, data);
		if (data) {
			vbs_wr_bytes(e->w, id, VBS_ID_LEN);
			if ((r = ids_add(e->ids, id)) < 0)
				break;
		}
		e->n++;
	}
	mdb_cursor_close(c);
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	return r;
}

static void rec_add(vbs_wr *w, uint16_t *count, int db, const void *key, size_t klen,
		    const void *val, size_t vlen)
{
	vbs_wr_u8(w, db);
	vbs_wr_u16(w, klen);
	vbs_wr_bytes(w, key, klen);
	vbs_wr_u32(w, vlen);
	vbs_wr_bytes(w, val, vlen);
	(*count)++;
}

/* The raw value of db[key] as a record of the commit; absent: -ENOENT. */
static int rec_raw(MDB_txn *txn, MDB_dbi dbi, vbs_wr *w, uint16_t *count, int db, const void *key,
		   size_t klen)
{
	MDB_val k = {klen, (void *)key}, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	if (rc)
		return vbs_mdb_err(rc);
	rec_add(w, count, db, key, klen, d.mv_data, d.mv_size);
	return 0;
}

struct frames {
	vbs_wr *w;
	uint64_t bytes;
};

static int frame_fn(void *arg, const void *frame, size_t len)
{
	struct frames *f = arg;

	vbs_wr_u32(f->w, len);
	vbs_wr_bytes(f->w, frame, len);
	f->bytes += len;
	return f->w->bad ? -ENOMEM : 0;
}

/* A put sent and not yet answered (pipelined transports). */
struct inflight {
	int on;
	size_t cnt;
	uint64_t bytes;
};

/* The answer to a put: counts, or VBS_SYNC_STALE, or an error. */
static int put_answer(struct peer *p, int r, uint8_t *buf, vbs_rd *rd, size_t cnt, uint64_t bytes)
{
	if (r == VBS_SYNC_OK) {
		uint64_t added = vbs_rd_u64(rd);

		vbs_rd_bytes(rd, 8);
		r = vbs_rd_done(rd, 1) < 0 ? malformed() : 0;
		p->st->chunks_added += added;
		p->st->chunks_sent += cnt;
		p->st->chunk_bytes_sent += bytes;
		if (r == 0 && cnt)
			vbs_test_pause("VMBAK_TEST_SYNC_PUT_PAUSE");
	}
	free(buf);
	return r;
}

static int put_wait(struct peer *p, struct inflight *in)
{
	uint8_t *resp = NULL, *buf = NULL;
	size_t len = 0;
	vbs_rd rd;
	int r;

	if (!in->on)
		return 0;
	in->on = 0;
	r = p->o->recv(p->o->call_arg, &resp, &len);
	if (r < 0)
		return r;
	r = response(resp, len, &buf, &rd);
	return put_answer(p, r, buf, &rd, in->cnt, in->bytes);
}

/* Sends a put: over a pipelined transport the answer to the previous one is read after this
 * one went out, so the replica stores a batch while the next one travels. */
static int put_send(struct peer *p, vbs_wr *w, struct inflight *in, size_t cnt, uint64_t bytes)
{
	uint8_t *buf = NULL;
	vbs_rd rd;
	int r;

	if (!p->o->send) {
		r = call(p, w, &buf, &rd);
		return put_answer(p, r, buf, &rd, cnt, bytes);
	}
	if (w->bad)
		return vbs_fail(-ENOMEM, "out of memory");
	r = p->o->send(p->o->call_arg, w->p, w->len);
	if (r < 0)
		return r;
	r = put_wait(p, in);
	*in = (struct inflight){1, cnt, bytes};
	return r;
}

/* Makes sure the replica stores every id of s (sorted, unique), pinned for job. */
static int send_chunks(struct peer *p, MDB_txn *txn, uint64_t job, const struct ids *s)
{
	uint8_t *present = NULL;
	int r = 0, stale = 0;

	for (size_t at = 0; r == 0 && at < s->n;) {
		size_t n = s->n - at < VBS_SYNC_HAVE_BATCH ? s->n - at : VBS_SYNC_HAVE_BATCH;
		vbs_wr w = {0};
		vbs_rd rd;
		uint8_t *buf = NULL;
		size_t np = 0;

		vbs_wr_u8(&w, VBS_SYNC_HAVE);
		vbs_wr_u32(&w, n);
		vbs_wr_bytes(&w, s->id[at], n * VBS_ID_LEN);
		r = call(p, &w, &buf, &rd);
		vbs_wr_free(&w);
		if (r < 0)
			break;
		present = realloc(present, n);
		{
			const uint8_t *b = vbs_rd_bytes(&rd, n);

			if (!present || vbs_rd_done(&rd, 1) < 0) {
				free(buf);
				r = present ? malformed() : -ENOMEM;
				break;
			}
			memcpy(present, b, n);
		}
		free(buf);
		for (size_t i = 0; i < n; i++)
			np += present[i] != 0;
		p->st->chunks_present += np;
		/* Puts of about VBS_SYNC_PUT_BYTES: the present ids ride with the first. */
		struct inflight in = {0};

		for (size_t i = 0, first = 1; r == 0 && (i < n || first);) {
			struct frames f = {&w, 0};
			size_t cnt_at, cnt = 0;

			w = (vbs_wr){0};
			vbs_wr_u8(&w, VBS_SYNC_PUT);
			vbs_wr_u64(&w, job);
			vbs_wr_u32(&w, first ? np : 0);
			for (size_t j = 0; first && j < n; j++)
				if (present[j])
					vbs_wr_bytes(&w, s->id[at + j], VBS_ID_LEN);
			cnt_at = w.len;
			vbs_wr_u32(&w, 0);
			for (; i < n && cnt < VBS_SYNC_PUT_MAX && f.bytes < VBS_SYNC_PUT_BYTES;
			     i++) {
				if (present[i])
					continue;
				vbs_wr_bytes(&w, s->id[at + i], VBS_ID_LEN);
				r = vbs_cs_get(p->v, txn, NULL, s->id[at + i], frame_fn, &f);
				if (r < 0) {
					vbs_fail(r, "cannot read chunk of vault '%s': %s",
						 p->v->path, vbu_strerror(-r));
					break;
				}
				cnt++;
			}
			if (r == 0 && !w.bad)
				vbs_put32(w.p + cnt_at, (uint32_t)cnt);
			if (r == 0 && (cnt || first))
				r = put_send(p, &w, &in, cnt, f.bytes);
			vbs_wr_free(&w);
			first = 0;
		}
		{
			/* The last answer; after a failure too, unless the link itself failed. */
			int r2 = r >= 0 || r == -EREMOTEIO ? put_wait(p, &in) : 0;

			if (r == 0)
				r = r2;
		}
		if (r == VBS_SYNC_STALE) {
			/* A chunk the replica had is gone (its gc): ask again, a few times. */
			if (++stale > 16) {
				r = vbs_fail(-EAGAIN,
					     "the replica keeps losing chunks it said it had "
					     "(a gc running beside the sync?): run it again");
				break;
			}
			r = 0;
			continue;
		}
		at += n;
	}
	free(present);
	return r;
}

/* The previous point of lineage before serial in the listing, or 0. */
static uint64_t lineage_base(vbs_rp **list, size_t n, uint64_t lineage, uint64_t serial)
{
	uint64_t best = 0;

	for (size_t i = 0; i < n; i++) {
		if (list[i]->serial >= serial || list[i]->serial <= best)
			continue;
		for (size_t d = 0; d < list[i]->n_disks; d++)
			if (list[i]->disks[d].lineage == lineage) {
				best = list[i]->serial;
				break;
			}
	}
	return best;
}

static int copy_point(struct peer *p, uint64_t job, vbs_rp **all, size_t nall, const vbs_rp *lp,
		      int force_full, int *ret_present)
{
	vbs_vault *v = p->v;
	MDB_txn *txn = NULL;
	vbs_rp *rp = NULL;
	struct ids ids = {0};
	vbs_wr w = {0}, dw = {0};
	vbs_rd rd;
	uint8_t key[8], vmh[VBS_NAME_HASH_LEN], nk[2 * VBS_NAME_HASH_LEN], *buf = NULL;
	uint16_t nrec = 0;
	size_t nrec_at;
	int r;

	*ret_present = 0;
	if ((r = vbs_read_begin(v, &txn)) < 0)
		return r;
	r = vbs_rp_load(v, txn, lp->serial, &rp);
	if (r == -ENOENT) {
		/* Deleted since the listing: nothing to copy. */
		*ret_present = 1;
		r = 0;
		goto out;
	}
	if (r < 0)
		goto out;
	if ((r = vbs_vm_key(v, rp->vm, vmh)) < 0 || (r = vbs_rpname_key(v, rp->vm, rp->id, nk)) < 0)
		goto out;
	vbs_put64(key, rp->serial);
	vbs_wr_u8(&w, VBS_SYNC_COMMIT);
	vbs_wr_u64(&w, rp->serial);
	{
		uint64_t seq = 0;

		r = vbs_get_u64(txn, v->dbi_meta, "seq", 3, &seq);
		if (r < 0)
			goto out;
		vbs_wr_u64(&w, seq < rp->serial ? rp->serial : seq);
	}
	vbs_wr_bytes(&w, vmh, sizeof(vmh));
	nrec_at = w.len;
	vbs_wr_u16(&w, 0);
	if ((r = rec_raw(txn, v->dbi_rps, &w, &nrec, DB_RPS, key, 8)) < 0 ||
	    (r = rec_raw(txn, v->dbi_rpnames, &w, &nrec, DB_NAMES, nk, sizeof(nk))) < 0 ||
	    (r = rec_raw(txn, v->dbi_vms, &w, &nrec, DB_VMS, vmh, sizeof(vmh))) < 0)
		goto damaged;
	if (v->dbi_protect) {
		r = rec_raw(txn, v->dbi_protect, &w, &nrec, DB_PROTECT, key, 8);
		if (r < 0 && r != -ENOENT)
			goto damaged;
	}
	{
		/* Every disk's map record: keys serial | u16 disk. */
		MDB_cursor *c;
		MDB_val k = {8, key}, d;
		int rc = mdb_cursor_open(txn, v->dbi_dmaps, &c);

		if (rc) {
			r = vbs_mdb_err(rc);
			goto out;
		}
		for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			if (k.mv_size != 10 || memcmp(k.mv_data, key, 8) != 0)
				break;
			rec_add(&w, &nrec, DB_DMAPS, k.mv_data, 10, d.mv_data, d.mv_size);
		}
		mdb_cursor_close(c);
		if (rc && rc != MDB_NOTFOUND) {
			r = vbs_mdb_err(rc);
			goto out;
		}
	}
	/* Lineage heads: this point, sealed here under the keys the replica shares. */
	for (size_t i = 0; i < rp->n_disks; i++) {
		uint8_t lk[8], lv[16], *sealed = NULL;
		size_t slen = 0;

		vbs_put64(lk, rp->disks[i].lineage);
		vbs_put64(lv, rp->serial);
		vbs_put64(lv + 8, rp->disks[i].size);
		r = vbs_seal(v, VBS_DB_LINEAGES, lk, 8, lv, 16, &sealed, &slen);
		if (r < 0)
			goto out;
		rec_add(&w, &nrec, DB_LINEAGES, lk, 8, sealed, slen);
		free(sealed);
	}
	if (!w.bad) {
		w.p[nrec_at] = (uint8_t)(nrec >> 8);
		w.p[nrec_at + 1] = (uint8_t)nrec;
	}
	vbs_wr_u16(&w, rp->n_disks);
	for (size_t i = 0; i < rp->n_disks; i++) {
		uint64_t lineage = rp->disks[i].lineage;
		uint64_t base = lineage_base(all, nall, lineage, rp->serial);
		int full = force_full || !base || !replica_has(p, base);
		struct ents e = {&dw, 0, &ids};

		dw.len = 0;
		r = full ? vbs_idx_walk(v, txn, lineage, rp->serial, walk_fn, &e)
			 : delta_entries(v, txn, lineage, rp->serial, &e);
		if (r < 0)
			goto damaged;
		vbs_wr_u64(&w, lineage);
		vbs_wr_u8(&w, full);
		vbs_wr_u64(&w, full ? 0 : base);
		vbs_wr_u32(&w, e.n);
		vbs_wr_bytes(&w, dw.p, dw.len);
	}
	if (w.bad || dw.bad) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	if (ids.n) {
		size_t u = 1;

		qsort(ids.id, ids.n, VBS_ID_LEN, cmp_id);
		for (size_t i = 1; i < ids.n; i++)
			if (memcmp(ids.id[i], ids.id[u - 1], VBS_ID_LEN))
				memcpy(ids.id[u++], ids.id[i], VBS_ID_LEN);
		ids.n = u;
	}
	if ((r = send_chunks(p, txn, job, &ids)) < 0)
		goto out;
	vbs_test_pause("VMBAK_TEST_SYNC_COMMIT_PAUSE");
	r = call(p, &w, &buf, &rd);
	if (r == VBS_SYNC_OK) {
		uint8_t already = vbs_rd_u8(&rd);

		if (vbs_rd_done(&rd, 1) < 0 || already > 1)
			r = malformed();
		else
			*ret_present = already;
	}
	goto out;
damaged:
	if (r == -ENOENT || r == -EBADMSG)
		r = vbs_fail(-EBADMSG, "vault '%s': damaged records of recovery point '%s/%s'",
			     v->path, rp->vm, rp->id);
out:
	free(buf);
	vbs_wr_free(&w);
	vbs_wr_free(&dw);
	free(ids.id);
	vbs_rp_free(rp);
	vbs_read_end(v, txn);
	return r;
}

/* ---- the sync ---- */

static int in_list(const vbs_sync_opts *o, const char *vm)
{
	if (!o->nvms)
		return 1;
	for (size_t i = 0; i < o->nvms; i++)
		if (strcmp(o->vms[i], vm) == 0)
			return 1;
	return 0;
}

static int cmp_rp(const void *a, const void *b)
{
	const vbs_rp *x = *(vbs_rp *const *)a, *y = *(vbs_rp *const *)b;
	int c = strcmp(x->vm, y->vm);

	return c ? c : x->serial < y->serial ? -1 : x->serial > y->serial;
}

static void note(const vbs_sync_opts *o, const vbs_rp *rp, const char *what, const char *err)
{
	if (o->note)
		o->note(o->note_arg, rp->vm, rp->id, what, err);
}

/* --prune: the replica's points of the VMs synced that src no longer has. The replica is
 * listed first: each of its points was in src before that, so one missing from the listing of
 * src that follows was deleted there (not merely made since, nor sent by a sync running
 * beside this one). */
static int prune(const vbs_sync_opts *o, vbs_vault *src, vbs_sync_stats *st)
{
	vbs_rp **list = NULL, **have = NULL;
	size_t n = 0, nhave = 0;
	int r = vbs_rp_list(o->prune, NULL, &list, &n);

	if (r == 0)
		r = vbs_rp_list(src, NULL, &have, &nhave);

	for (size_t i = 0; r == 0 && i < n; i++) {
		vbs_rp *rp = list[i];
		int found = 0;

		if (!in_list(o, rp->vm))
			continue;
		for (size_t j = 0; j < nhave && !found; j++)
			found = have[j]->serial == rp->serial;
		if (found)
			continue;
		r = vbs_rp_delete(o->prune, rp->vm, rp->id, 0, 0);
		if (r == -EPERM) {
			note(o, rp, "kept", vbs_errmsg());
			st->points_kept++;
			r = 0;
		} else if (r == 0) {
			note(o, rp, "deleted", NULL);
			st->points_deleted++;
		}
	}
	vbs_rp_list_free(list, n);
	vbs_rp_list_free(have, nhave);
	return r;
}

int vbs_sync(vbs_vault *v, const vbs_sync_opts *o, vbs_sync_stats *ret)
{
	struct peer p = {.o = o, .v = v, .st = ret};
	vbs_rp **list = NULL;
	size_t n = 0;
	vbs_job j = {0};
	char first_err[512] = "";
	int r, job_started = 0, failed = 0;

	vbs_clear_err();
	memset(ret, 0, sizeof(*ret));
	if ((r = hello(&p)) < 0)
		goto out;
	if (!p.has_config && (r = send_config(&p)) < 0)
		goto out;
	for (size_t i = 0; i < o->nvms; i++) {
		uint64_t num;

		r = vbs_vm_get(v, o->vms[i], &num);
		if (r == -ENOENT) {
			r = vbs_fail(-ENOENT, "vault '%s' has no VM '%s'", v->path, o->vms[i]);
			goto out;
		}
		if (r < 0)
			goto out;
	}
	if ((r = vbs_rp_list(v, NULL, &list, &n)) < 0)
		goto out;
	qsort(list, n, sizeof(*list), cmp_rp);
	snprintf(j.kind, sizeof(j.kind), "sync");
	j.start_ns = vbu_now_ns();
	j.state = VBS_JOB_RUNNING;
	j.pid = p.pid;
	j.pid_start = p.pid_start;
	memcpy(j.boot_id, p.boot, sizeof(j.boot_id));
	if (o->nvms == 1)
		snprintf(j.target, sizeof(j.target), "%s", o->vms[0]);
	if ((r = job_begin(&p, &j)) < 0)
		goto out;
	job_started = 1;
	ret->job = j.id;
	for (size_t i = 0; i < n; i++) {
		vbs_rp *rp = list[i];
		uint8_t vmh[VBS_NAME_HASH_LEN];
		int present = 0;

		if (!in_list(o, rp->vm))
			continue;
		if ((r = vbs_vm_key(v, rp->vm, vmh)) < 0)
			goto out;
		if (replica_has(&p, rp->serial) || rp->serial <= replica_hwm(&p, vmh)) {
			ret->points_present++;
			continue;
		}
		r = copy_point(&p, j.id, list, n, rp, 0, &present);
		if (r == VBS_SYNC_STALE)
			/* A base point went from the replica meanwhile: send the disks whole. */
			r = copy_point(&p, j.id, list, n, rp, 1, &present);
		if (r == VBS_SYNC_STALE)
			r = vbs_fail(-EAGAIN,
				     "replica changed during the sync of '%s/%s': run it again",
				     rp->vm, rp->id);
		if (r < 0) {
			note(o, rp, "failed", vbs_errmsg());
			/* Transport and protocol failures end the sync: the peer is gone. */
			if (!o->keep_going || r == -EPROTO || r == -EPIPE || r == -ECONNRESET)
				goto out;
			if (!failed)
				snprintf(first_err, sizeof(first_err), "%s", vbs_errmsg());
			failed = 1;
			ret->points_failed++;
			/* The rest of this VM would be deltas on a point the replica lacks. */
			while (i + 1 < n && strcmp(list[i + 1]->vm, rp->vm) == 0)
				i++;
			r = 0;
			continue;
		}
		if ((r = replica_add(&p, rp->serial)) < 0) {
			vbs_fail(r, "out of memory");
			goto out;
		}
		if (present) {
			ret->points_present++;
			note(o, rp, "present", NULL);
		} else {
			ret->points_copied++;
			note(o, rp, "copied", NULL);
		}
	}
	if (o->prune && (r = prune(o, v, ret)) < 0)
		goto out;
	r = failed ? vbs_fail(-EIO, "%s", first_err) : 0;
out:
	if (job_started) {
		char msg[VBS_JOB_ERROR_MAX];
		int e;

		snprintf(msg, sizeof(msg), "%s", r < 0 ? vbs_errmsg() : "");
		j.end_ns = vbu_now_ns();
		j.state = r < 0 ? VBS_JOB_FAILED : VBS_JOB_COMPLETED;
		j.bytes_read = ret->chunk_bytes_sent;
		j.bytes_stored = ret->chunk_bytes_sent;
		snprintf(j.error, sizeof(j.error), "%s", msg);
		/* Best effort after a failure: the peer may be gone (then the record shows a job
		 * whose process died, and the replica's next gc drops its pins). */
		e = job_send(&p, &j, 0);
		if (e >= 0) {
			vbs_wr w = {0};
			vbs_rd rd;
			uint8_t *buf = NULL;

			vbs_wr_u8(&w, VBS_SYNC_RELEASE);
			vbs_wr_u64(&w, j.id);
			e = call(&p, &w, &buf, &rd);
			vbs_wr_free(&w);
			free(buf);
		}
		if (r == 0 && e < 0)
			r = e;
		else if (r < 0)
			vbs_fail(r, "%s", msg);
	}
	vbs_rp_list_free(list, n);
	free(p.have);
	free(p.hwm);
	return r;
}
