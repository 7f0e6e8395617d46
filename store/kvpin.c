/* kvpin.c: key vault pins in the meta database (see kvpin.h). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "kvpin.h"

#define PREFIX "kvpin:"
#define ID_MAX 64

struct pin_op {
	char key[sizeof(PREFIX) + ID_MAX];
	uint8_t val[VBS_KVPIN_FPR_LEN + 8];
	uint64_t seen;
};

static int pin_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct pin_op *op = arg;
	MDB_val k = {.mv_size = strlen(op->key), .mv_data = op->key};
	MDB_val d;
	int rc;

	op->seen = 0;
	rc = mdb_get(txn, v->dbi_meta, &k, &d);
	if (rc == 0) {
		if (d.mv_size != sizeof(op->val))
			return vbs_fail(-EBADMSG, "vault '%s': damaged record '%s'", v->path,
					op->key);
		op->seen = vbs_get64((const uint8_t *)d.mv_data + VBS_KVPIN_FPR_LEN);
		if (CRYPTO_memcmp(d.mv_data, op->val, VBS_KVPIN_FPR_LEN) != 0)
			return -EKEYREJECTED;
		if (vbs_get64(op->val + VBS_KVPIN_FPR_LEN) < op->seen)
			return -ESTALE;
		if (vbs_get64(op->val + VBS_KVPIN_FPR_LEN) == op->seen)
			return 0;
	} else if (rc != MDB_NOTFOUND) {
		return vbs_mdb_err(rc);
	}
	d.mv_size = sizeof(op->val);
	d.mv_data = op->val;
	return vbs_mdb_err(mdb_put(txn, v->dbi_meta, &k, &d, 0));
}

int vbs_kvpin_check(vbs_vault *v, const char *kv_id, const uint8_t fpr[VBS_KVPIN_FPR_LEN],
		    uint64_t generation, uint64_t *ret_seen)
{
	struct pin_op op;
	int r;

	vbs_clear_err();
	if (!kv_id || !*kv_id || strlen(kv_id) > ID_MAX)
		return vbs_fail(-EINVAL, "bad key vault id");
	memcpy(op.key, PREFIX, sizeof(PREFIX) - 1);
	memcpy(op.key + sizeof(PREFIX) - 1, kv_id, strlen(kv_id) + 1);
	memcpy(op.val, fpr, VBS_KVPIN_FPR_LEN);
	vbs_put64(op.val + VBS_KVPIN_FPR_LEN, generation);
	r = vbs_write(v, pin_fn, &op);
	if (ret_seen)
		*ret_seen = op.seen;
	return r;
}
