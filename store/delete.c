/* delete.c: protecting and deleting recovery points (see lifecycle.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "index.h"
#include "internal.h"
#include "rp_db.h"
#include "lifecycle.h"
#include "rp.h"
#include "seal.h"
#include "util.h"

static int find_serial(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t *ret)
{
	int r = vbs_name_find(v, txn, vm, id, ret);

	if (r == -ENOENT)
		return vbs_fail(-ENOENT, "no recovery point '%s/%s'", vm, id);
	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged name record of '%s/%s'", v->path, vm, id);
	return 0;
}

/* ---- damage found by a verify ---- */

struct damaged_ctx {
	const char *vm, *id;
	int64_t when;
};

static int damaged_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct damaged_ctx *c = arg;
	vbs_rp *rp = NULL;
	char *rec = NULL;
	size_t len = 0;
	uint8_t sk[8];
	uint64_t serial;
	int r = find_serial(v, txn, c->vm, c->id, &serial);

	if (r < 0)
		return r;
	r = vbs_rp_load(v, txn, serial, &rp);
	if (r < 0)
		return r;
	if (rp->damaged && rp->damaged <= c->when)
		goto out;
	rp->damaged = c->when;
	r = vbs_rp_encode(rp, &rec, &len);
	if (r < 0)
		goto out;
	vbs_put64(sk, serial);
	r = vbs_sput(v, txn, v->dbi_rps, VBS_DB_RPS, sk, 8, rec, len, 0);
out:
	free(rec);
	vbs_rp_free(rp);
	return r;
}

int vbs_rp_mark_damaged(vbs_vault *v, const char *vm, const char *id, int64_t when)
{
	struct damaged_ctx c = {vm, id, when};

	vbs_clear_err();
	if (!vm || !id || when <= 0)
		return vbs_fail(-EINVAL, "bad arguments");
	if (!v->dbi_protect)
		return vbs_fail(-EROFS, "vault '%s' is open read-only", v->path);
	return vbs_write(v, damaged_fn, &c);
}

/* ---- protection ---- */

struct protect_ctx {
	const char *vm, *id;
	int on;
};

static int protect_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct protect_ctx *c = arg;
	uint8_t key[8], val[8];
	MDB_val k = {8, key};
	uint64_t serial;
	int r = find_serial(v, txn, c->vm, c->id, &serial), rc;

	if (r < 0)
		return r;
	vbs_put64(key, serial);
	if (c->on) {
		r = vbs_sget_fixed(v, txn, v->dbi_protect, VBS_DB_PROTECT, key, 8, val, 8);
		if (r == 0)
			return 0;
		vbs_put64(val, (uint64_t)(vbu_now_ns() / 1000000000));
		r = vbs_sput(v, txn, v->dbi_protect, VBS_DB_PROTECT, key, 8, val, 8, 0);
	} else {
		rc = mdb_del(txn, v->dbi_protect, &k, NULL);
		r = rc == MDB_NOTFOUND ? 0 : vbs_mdb_err(rc);
	}
	if (r < 0)
		return vbs_fail(r, "cannot write vault '%s': %s", v->path, vbu_strerror(-r));
	return 0;
}

int vbs_rp_protect(vbs_vault *v, const char *vm, const char *id, int on)
{
	struct protect_ctx c = {vm, id, on};

	vbs_clear_err();
	if (!v->dbi_protect)
		return vbs_fail(-EROFS, "vault '%s' is open read-only", v->path);
	return vbs_write(v, protect_fn, &c);
}

static int protected_in(vbs_vault *v, MDB_txn *txn, uint64_t serial, int64_t *ret_since)
{
	uint8_t key[8], val[8];
	int r;

	if (!v->dbi_protect)
		return 0;
	vbs_put64(key, serial);
	r = vbs_sget_fixed(v, txn, v->dbi_protect, VBS_DB_PROTECT, key, 8, val, 8);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (ret_since)
		*ret_since = (int64_t)vbs_get64(val);
	return 1;
}

int vbs_rp_protected(vbs_vault *v, uint64_t serial, int64_t *ret_since)
{
	MDB_txn *txn;
	int r = vbs_read_begin(v, &txn);

	if (r < 0)
		return r;
	r = protected_in(v, txn, serial, ret_since);
	vbs_read_end(v, txn);
	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged protection record", v->path);
	return r;
}

/* ---- delete ---- */

/* The serials of every point of vm, ascending (ids sort by time, serials by commit; within a
 * VM both orders agree). free() *ret. */
static int vm_serials(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t **ret, size_t *ret_n)
{
	vbs_name_entry *e;
	uint64_t *list;
	size_t n;
	int r = vbs_names_of(v, txn, vm, &e, &n);

	if (r < 0)
		return r;
	list = malloc((n ? n : 1) * sizeof(*list));
	if (!list) {
		free(e);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		list[i] = e[i].serial;
	free(e);
	*ret = list;
	*ret_n = n;
	return 0;
}

struct entry {
	uint64_t n;
	uint8_t id[VBS_ID_LEN];
	uint8_t data;
};

/* Removes the entries of serial s from lineage l, moving each to s2 (when s2 != 0) unless s2
 * has its own. */
static int move_entries(vbs_vault *v, MDB_txn *txn, uint64_t l, uint64_t s, uint64_t s2)
{
	uint8_t key[VBS_IDX_KEY_LEN];
	struct entry *es = NULL;
	size_t ne = 0, cap = 0;
	MDB_cursor *c;
	MDB_val k, d;
	int rc, r = 0;

	rc = mdb_cursor_open(txn, v->dbi_idx, &c);
	if (rc)
		return vbs_mdb_err(rc);
	vbs_idx_key(key, l, 0, UINT64_MAX); /* the lineage's first key: ~serial sorts down */
	k = (MDB_val){sizeof(key), key};
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (rc == 0) {
		uint64_t kl, kn, ks;

		if (vbs_idx_key_decode(k.mv_data, k.mv_size, &kl, &kn, &ks) < 0 || kl != l)
			break;
		if (ks != s) {
			rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
			continue;
		}
		if (d.mv_size != 0 && d.mv_size != VBS_ID_LEN) {
			r = -EBADMSG;
			break;
		}
		if (s2) {
			if (ne == cap) {
				size_t nc = cap ? cap * 2 : 1024;
				struct entry *p = realloc(es, nc * sizeof(*p));
				if (!p) {
					r = -ENOMEM;
					break;
				}
				es = p;
				cap = nc;
			}
			es[ne].n = kn;
			es[ne].data = d.mv_size != 0;
			if (d.mv_size)
				memcpy(es[ne].id, d.mv_data, VBS_ID_LEN);
			ne++;
		}
		rc = mdb_cursor_del(c, 0);
		if (rc)
			break;
		/* The cursor now stands on the next key: MDB_NEXT returns it. */
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	for (size_t i = 0; r == 0 && i < ne; i++) {
		uint64_t kl, kn, ks;

		/* The first entry at or after (l, n, ~s2) is the newest with serial <= s2. */
		vbs_idx_key(key, l, es[i].n, s2);
		k = (MDB_val){sizeof(key), key};
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
		if (rc == 0 && vbs_idx_key_decode(k.mv_data, k.mv_size, &kl, &kn, &ks) == 0 &&
		    kl == l && kn == es[i].n && ks > s)
			continue; /* s2 (or a point between) has its own */
		if (rc && rc != MDB_NOTFOUND) {
			r = vbs_mdb_err(rc);
			break;
		}
		r = vbs_idx_put(v, txn, l, s2, es[i].n, es[i].data ? es[i].id : NULL);
	}
	mdb_cursor_close(c);
	free(es);
	return r;
}

struct delete_ctx {
	const char *vm, *id;
	unsigned flags;
	int64_t now;
};

/* The VM's points around the one deleted, loaded when first looked at: finding the neighbours
 * of a disk's lineage reads the adjacent points, not all of a VM's (a VM of 10,000 points made
 * a prune of it read 10,000 records per point deleted). */
struct others {
	const uint64_t *serials;
	vbs_rp **rps;
	size_t n;
};

/* 1 when point i of the VM has a disk of lineage l, 0 when not, or an error. */
static int other_has(vbs_vault *v, MDB_txn *txn, struct others *o, size_t i, uint64_t l)
{
	int r;

	if (!o->rps[i] && (r = vbs_rp_load(v, txn, o->serials[i], &o->rps[i])) < 0)
		return r;
	for (size_t j = 0; j < o->rps[i]->n_disks; j++)
		if (o->rps[i]->disks[j].lineage == l)
			return 1;
	return 0;
}

/* The serials of the VM's nearest points before and after point pos that have lineage l (0
 * where there is none). */
static int lineage_neighbours(vbs_vault *v, MDB_txn *txn, struct others *o, size_t pos,
			      uint64_t l, uint64_t *ret_prev, uint64_t *ret_next)
{
	int r = 0;

	*ret_prev = *ret_next = 0;
	for (size_t i = pos; i-- > 0;)
		if ((r = other_has(v, txn, o, i, l)) != 0) {
			if (r > 0)
				*ret_prev = o->serials[i];
			break;
		}
	for (size_t i = pos + 1; r >= 0 && i < o->n; i++)
		if ((r = other_has(v, txn, o, i, l)) != 0) {
			if (r > 0)
				*ret_next = o->serials[i];
			break;
		}
	return r < 0 ? r : 0;
}

static int delete_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct delete_ctx *c = arg;
	vbs_rp *rp = NULL, **others = NULL;
	uint64_t serial, *serials = NULL;
	size_t n = 0, pos = 0;
	struct others o;
	char when[21];
	uint8_t sk[8];
	MDB_val k;
	int r, rc;

	if ((r = find_serial(v, txn, c->vm, c->id, &serial)) < 0)
		return r;
	if ((r = vbs_rp_load(v, txn, serial, &rp)) < 0)
		return r;
	r = protected_in(v, txn, serial, NULL);
	if (r < 0) {
		r = vbs_fail(r, "vault '%s': damaged protection record", v->path);
		goto out;
	}
	if (r) {
		r = vbs_fail(-EPERM, "recovery point '%s/%s' is protected; unprotect it first",
			     c->vm, c->id);
		goto out;
	}
	if (rp->retain_until > c->now && !(c->flags & VBS_DELETE_FORCE)) {
		vbu_format_time(rp->retain_until, when);
		when[10] = '\0';
		r = vbs_fail(-EPERM, "recovery point '%s/%s' is retained until %s", c->vm, c->id,
			     when);
		goto out;
	}
	if ((r = vm_serials(v, txn, c->vm, &serials, &n)) < 0) {
		r = vbs_fail(r, "cannot read the points of VM '%s'", c->vm);
		goto out;
	}
	if (n && serials[n - 1] == serial && !(c->flags & VBS_DELETE_FORCE)) {
		r = vbs_fail(-EPERM, "recovery point '%s/%s' is the newest of VM '%s'", c->vm,
			     c->id, c->vm);
		goto out;
	}
	others = calloc(n ? n : 1, sizeof(*others));
	if (!others) {
		r = -ENOMEM;
		goto out;
	}
	while (pos < n && serials[pos] != serial)
		pos++;
	if (pos == n) {
		r = vbs_fail(-EBADMSG, "vault '%s': point '%s/%s' is missing from its VM's list",
			     v->path, c->vm, c->id);
		goto out;
	}
	o = (struct others){serials, others, n};
	for (size_t di = 0; di < rp->n_disks; di++) {
		uint64_t l = rp->disks[di].lineage, prev = 0, next = 0, head = 0, size = 0;

		if ((r = lineage_neighbours(v, txn, &o, pos, l, &prev, &next)) < 0)
			goto out;
		if ((r = move_entries(v, txn, l, serial, next)) < 0) {
			r = vbs_fail(r, "cannot rewrite the index of vault '%s'", v->path);
			goto out;
		}
		r = vbs_lineage_get(v, txn, l, &head, &size);
		if (r == 0 && head == serial) {
			if (prev)
				r = vbs_lineage_set(v, txn, l, prev, size);
			else
				r = vbs_lineage_del(v, txn, l);
		} else if (r == -ENOENT) {
			r = 0;
		}
		if (r == 0)
			r = vbs_dmap_del(v, txn, serial, (unsigned)di);
		if (r < 0) {
			r = vbs_fail(r, "cannot rewrite the lineages of vault '%s'", v->path);
			goto out;
		}
	}
	vbs_put64(sk, serial);
	k = (MDB_val){8, sk};
	r = vbs_mdb_err(mdb_del(txn, v->dbi_rps, &k, NULL));
	if (r == 0)
		r = vbs_name_del(v, txn, c->vm, c->id);
	if (r == 0 && v->dbi_protect) {
		k = (MDB_val){8, sk};
		rc = mdb_del(txn, v->dbi_protect, &k, NULL);
		r = rc == MDB_NOTFOUND ? 0 : vbs_mdb_err(rc);
	}
	if (r == 0 && n == 1 && (r = vbs_vm_del(v, txn, c->vm)) == -ENOENT)
		r = 0;
	if (r < 0) {
		r = vbs_fail(r, "cannot delete from vault '%s': %s", v->path, vbu_strerror(-r));
		goto out;
	}
	r = 0;
out:
	vbs_rp_list_free(others, n);
	vbs_rp_free(rp);
	free(serials);
	return r;
}

int vbs_rp_delete(vbs_vault *v, const char *vm, const char *id, unsigned flags, int64_t now)
{
	struct delete_ctx c = {vm, id, flags, now ? now : vbu_now_ns() / 1000000000};

	vbs_clear_err();
	if (v->readonly)
		return vbs_fail(-EROFS, "vault '%s' is open read-only", v->path);
	return vbs_write(v, delete_fn, &c);
}
