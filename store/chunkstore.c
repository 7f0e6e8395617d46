/* chunkstore.c: the vault's chunk store (see chunkstore.h): which store a vault uses, and the
 * calls that go to it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chunkstore.h"
#include "internal.h"

/* The vault's config says (vault.c, "chunks"): LMDB unless it names a RADOS pool. */
static const vbs_cs_ops *store_of(const vbs_vault *v)
{
	return v->chunks.rados ? &vbs_cs_rados : &vbs_cs_lmdb;
}

int vbs_cs_attach(vbs_vault *v, MDB_txn *txn, int create)
{
	const vbs_cs_ops *ops = store_of(v);
	void *state = NULL;
	int r;

	vbs_cs_detach(v);
	r = ops->open(v, txn, create, &state);
	if (r < 0)
		return r;
	v->cs = ops;
	v->cs_state = state;
	return 0;
}

void vbs_cs_detach(vbs_vault *v)
{
	if (!v || !v->cs)
		return;
	v->cs->close(v->cs_state);
	/* v->cs stays: readers opened before (an image's) are still closed by their store. */
	v->cs_state = NULL;
}

int vbs_cs_get(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
	       vbs_frame_fn fn, void *arg)
{
	return v->cs->get(v, txn, rd, id, fn, arg);
}

void vbs_cs_hint(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN])
{
	if (n && v->cs && v->cs_state && v->cs->hint)
		v->cs->hint(v, n, ids);
}

int vbs_cs_takes_hints(const vbs_vault *v)
{
	return v->cs && v->cs->hint;
}

int vbs_cs_reader_open(vbs_vault *v, vbs_cs_reader **ret)
{
	return v->cs->reader_open(v, ret);
}

void vbs_cs_reader_close(vbs_vault *v, vbs_cs_reader *rd)
{
	if (rd)
		v->cs->reader_close(rd);
}

int vbs_cs_exists(vbs_vault *v, MDB_txn *txn, size_t n, const uint8_t (*ids)[VBS_ID_LEN],
		  uint8_t *present)
{
	MDB_txn *own = NULL;
	int r;

	if (!txn) {
		if ((r = vbs_read_begin(v, &own)) < 0)
			return r;
		txn = own;
	}
	r = v->cs->exists(v, txn, n, ids, present);
	if (own)
		vbs_read_end(v, own);
	return r;
}

int vbs_cs_put(vbs_vault *v, const vbs_cs_item *items, size_t n, int mode, vbs_cs_hook_fn hook,
	       void *hook_arg, uint64_t *ret_added, uint64_t *ret_added_bytes)
{
	if (n == 0 && !hook) {
		*ret_added = *ret_added_bytes = 0;
		return 0;
	}
	return v->cs->put(v, items, n, mode, hook, hook_arg, ret_added, ret_added_bytes);
}

int vbs_cs_del(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], uint64_t *ret_len)
{
	return v->cs->del(v, txn, id, ret_len);
}

int vbs_cs_iterate(vbs_vault *v, MDB_txn *txn, vbs_cs_iter_fn fn, void *arg)
{
	return v->cs->iterate(v, txn, fn, arg);
}

int vbs_cs_stats_get(vbs_vault *v, MDB_txn *txn, vbs_cs_stats *ret)
{
	return v->cs->stats(v, txn, ret);
}

int vbs_cs_count_add(vbs_vault *v, MDB_txn *txn, const char *key, int64_t count, int64_t bytes,
		     int64_t plain)
{
	MDB_val k = {strlen(key), (void *)key}, d;
	uint8_t buf[24] = {0};
	int64_t delta[3] = {count, bytes, plain};
	int rc = mdb_get(txn, v->dbi_meta, &k, &d);

	if (rc == 0 && d.mv_size == sizeof(buf))
		memcpy(buf, d.mv_data, sizeof(buf));
	else if (rc && rc != MDB_NOTFOUND)
		return vbs_mdb_err(rc);
	for (int i = 0; i < 3; i++) {
		uint64_t cur = vbs_get64(buf + 8 * i);

		if (delta[i] < 0 && (uint64_t)-delta[i] > cur)
			cur = 0;
		else
			cur += (uint64_t)delta[i];
		vbs_put64(buf + 8 * i, cur);
	}
	d.mv_size = sizeof(buf);
	d.mv_data = buf;
	return vbs_mdb_err(mdb_put(txn, v->dbi_meta, &k, &d, 0));
}

int vbs_cs_count_get(vbs_vault *v, MDB_txn *txn, const char *key, vbs_cs_stats *ret)
{
	MDB_val k = {strlen(key), (void *)key}, d;
	vbs_cs_stats s = {0};
	int rc = mdb_get(txn, v->dbi_meta, &k, &d);

	if (rc == 0 && d.mv_size == 24) {
		s.chunks = vbs_get64(d.mv_data);
		s.bytes = vbs_get64((const uint8_t *)d.mv_data + 8);
		s.plain_bytes = vbs_get64((const uint8_t *)d.mv_data + 16);
	} else if (rc && rc != MDB_NOTFOUND) {
		return vbs_mdb_err(rc);
	}
	*ret = s;
	return 0;
}
