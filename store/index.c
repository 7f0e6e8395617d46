/* index.c: the versioned chunk index (see index.h). */
#include <errno.h>
#include <string.h>

#include "index.h"
#include "seal.h"

void vbs_idx_key(uint8_t k[VBS_IDX_KEY_LEN], uint64_t lineage, uint64_t n, uint64_t serial)
{
	vbs_put64(k, lineage);
	vbs_put64(k + 8, n);
	vbs_put64(k + 16, ~serial);
}

/* Seeks to the first entry at or after (lineage, n, ~serial). Returns 1 and the entry's chunk
 * number and serial when it is in the lineage, 0 when the lineage has nothing at or after. */
int vbs_idx_seek(MDB_cursor *c, uint64_t lineage, uint64_t n, uint64_t serial, uint64_t *ret_n,
		 uint64_t *ret_serial, MDB_val *ret_val)
{
	uint8_t key[VBS_IDX_KEY_LEN];
	MDB_val k = {sizeof(key), key};
	int rc;

	vbs_idx_key(key, lineage, n, serial);
	rc = mdb_cursor_get(c, &k, ret_val, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return vbs_mdb_err(rc);
	if (k.mv_size != VBS_IDX_KEY_LEN)
		return -EBADMSG;
	if (vbs_get64(k.mv_data) != lineage)
		return 0;
	*ret_n = vbs_get64((uint8_t *)k.mv_data + 8);
	*ret_serial = ~vbs_get64((uint8_t *)k.mv_data + 16);
	return 1;
}

int vbs_idx_value(const MDB_val *d, uint8_t *id, int *ret_data)
{
	if (d->mv_size == 0) {
		*ret_data = 0;
		return 0;
	}
	if (d->mv_size != VBS_ID_LEN)
		return -EBADMSG;
	if (id)
		memcpy(id, d->mv_data, VBS_ID_LEN);
	*ret_data = 1;
	return 0;
}

int vbs_idx_walk(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t serial, vbs_idx_fn fn,
		 void *arg)
{
	MDB_cursor *c;
	uint64_t n = 0;
	int r, rc = mdb_cursor_open(txn, v->dbi_idx, &c);

	if (rc)
		return vbs_mdb_err(rc);
	for (;;) {
		uint64_t en, es;
		MDB_val d;
		int data;

		r = vbs_idx_seek(c, lineage, n, serial, &en, &es, &d);
		if (r <= 0)
			break;
		if (en > n) {
			n = en;
			continue;
		}
		r = vbs_idx_value(&d, NULL, &data);
		if (r < 0)
			break;
		if (data) {
			r = fn(arg, n, d.mv_data);
			if (r)
				break;
		}
		if (n == UINT64_MAX)
			break;
		n++;
	}
	mdb_cursor_close(c);
	return r < 0 || r > 0 ? r : 0;
}

int vbs_idx_put(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t serial, uint64_t n,
		const uint8_t *id)
{
	uint8_t key[VBS_IDX_KEY_LEN];
	MDB_val k = {sizeof(key), key}, d = {id ? VBS_ID_LEN : 0, (void *)id};

	vbs_idx_key(key, lineage, n, serial);
	return vbs_mdb_err(mdb_put(txn, v->dbi_idx, &k, &d, 0));
}

int vbs_lineage_get(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t *ret_head,
		    uint64_t *ret_size)
{
	uint8_t key[8], val[16];
	int r;

	vbs_put64(key, lineage);
	r = vbs_sget_fixed(v, txn, v->dbi_lineages, VBS_DB_LINEAGES, key, 8, val, 16);
	if (r < 0)
		return r;
	*ret_head = vbs_get64(val);
	*ret_size = vbs_get64(val + 8);
	return 0;
}

int vbs_lineage_set(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t head, uint64_t size)
{
	uint8_t key[8], val[16];

	vbs_put64(key, lineage);
	vbs_put64(val, head);
	vbs_put64(val + 8, size);
	return vbs_sput(v, txn, v->dbi_lineages, VBS_DB_LINEAGES, key, 8, val, 16, 0);
}

int vbs_lineage_del(vbs_vault *v, MDB_txn *txn, uint64_t lineage)
{
	uint8_t key[8];
	MDB_val k = {8, key};

	vbs_put64(key, lineage);
	return vbs_mdb_err(mdb_del(txn, v->dbi_lineages, &k, NULL));
}
