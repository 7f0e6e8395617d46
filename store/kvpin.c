/* kvpin.c: key vault pins in the meta database (see kvpin.h). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "kvpin.h"
#include "seal.h"

#define PREFIX "kvpin:"
#define ID_MAX 64

struct pin_op {
	uint8_t key[sizeof(PREFIX) - 1 + VBS_NAME_HASH_LEN]; /* "kvpin:" H(key vault id) */
	uint8_t val[VBS_KVPIN_FPR_LEN + 8];
	uint64_t seen;
};

static int pin_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct pin_op *op = arg;
	uint8_t have[VBS_KVPIN_FPR_LEN + 8];
	int r;

	op->seen = 0;
	/* Sealed (seal.h), so that nobody without the vault's keys can reset or move a pin. */
	r = vbs_sget_fixed(v, txn, v->dbi_meta, "meta", op->key, sizeof(op->key), have,
			   sizeof(have));
	if (r == 0) {
		op->seen = vbs_get64(have + VBS_KVPIN_FPR_LEN);
		if (CRYPTO_memcmp(have, op->val, VBS_KVPIN_FPR_LEN) != 0)
			return -EKEYREJECTED;
		if (vbs_get64(op->val + VBS_KVPIN_FPR_LEN) < op->seen)
			return -ESTALE;
		if (vbs_get64(op->val + VBS_KVPIN_FPR_LEN) == op->seen)
			return 0;
	} else if (r == -EBADMSG) {
		return vbs_fail(-EBADMSG, "vault '%s': damaged key vault pin", v->path);
	} else if (r != -ENOENT) {
		return r;
	}
	return vbs_sput(v, txn, v->dbi_meta, "meta", op->key, sizeof(op->key), op->val,
			sizeof(op->val), 0);
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
	r = vbs_name_hash(v, "kvpin", kv_id, strlen(kv_id), op.key + sizeof(PREFIX) - 1);
	if (r < 0)
		return vbs_fail(r, "vault '%s' is locked", v->path);
	memcpy(op.val, fpr, VBS_KVPIN_FPR_LEN);
	vbs_put64(op.val + VBS_KVPIN_FPR_LEN, generation);
	r = vbs_write(v, pin_fn, &op);
	if (ret_seen)
		*ret_seen = op.seen;
	return r;
}
