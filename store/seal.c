/* seal.c: sealed metadata values and keyed name hashes (see seal.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "seal.h"

#define AAD_LABEL "vmbak-meta v2"
#define KEY_MAX 512

/* label NUL uuid NUL db NUL key */
static int make_aad(const vbs_vault *v, const char *db, const void *key, size_t klen,
		    uint8_t *buf, size_t cap, size_t *ret_len)
{
	size_t a = sizeof(AAD_LABEL), u = strlen(v->uuid) + 1, d = strlen(db) + 1;

	if (klen > KEY_MAX || a + u + d + klen > cap)
		return -EINVAL;
	memcpy(buf, AAD_LABEL, a);
	memcpy(buf + a, v->uuid, u);
	memcpy(buf + a + u, db, d);
	memcpy(buf + a + u + d, key, klen);
	*ret_len = a + u + d + klen;
	return 0;
}

int vbs_seal(vbs_vault *v, const char *db, const void *key, size_t klen, const void *plain,
	     size_t plen, uint8_t **ret, size_t *ret_len)
{
	uint8_t aad[KEY_MAX + 128], *out;
	size_t alen, olen;
	int r;

	if (!v->unlocked)
		return -ENOKEY;
	if ((r = make_aad(v, db, key, klen, aad, sizeof(aad), &alen)) < 0)
		return r;
	if (__builtin_add_overflow(plen, VBS_SEAL_OVERHEAD, &olen))
		return -EOVERFLOW;
	out = malloc(olen);
	if (!out)
		return -ENOMEM;
	r = vbk_random(out, VBK_NONCE_LEN);
	if (r == 0)
		r = vbk_gcm_seal(v->meta_key, out, aad, alen, plain, plen, out + VBK_NONCE_LEN,
				 out + VBK_NONCE_LEN + plen);
	if (r < 0) {
		free(out);
		return r;
	}
	*ret = out;
	*ret_len = olen;
	return 0;
}

int vbs_unseal(vbs_vault *v, const char *db, const void *key, size_t klen, const void *val,
	       size_t vlen, uint8_t **ret, size_t *ret_len)
{
	uint8_t aad[KEY_MAX + 128], *out;
	const uint8_t *p = val;
	size_t alen, plen;
	int r;

	if (!v->unlocked)
		return -ENOKEY;
	if (vlen < VBS_SEAL_OVERHEAD)
		return -EBADMSG;
	if ((r = make_aad(v, db, key, klen, aad, sizeof(aad), &alen)) < 0)
		return r == -EINVAL ? -EBADMSG : r;
	plen = vlen - VBS_SEAL_OVERHEAD;
	out = malloc(plen + 1);
	if (!out)
		return -ENOMEM;
	r = vbk_gcm_open(v->meta_key, p, aad, alen, p + VBK_NONCE_LEN, plen, out,
			 p + VBK_NONCE_LEN + plen);
	if (r < 0) {
		vbk_wipe(out, plen + 1);
		free(out);
		return r == -ENOMEM ? r : -EBADMSG;
	}
	out[plen] = '\0';
	*ret = out;
	*ret_len = plen;
	return 0;
}

void vbs_unsealed_free(uint8_t *p, size_t len)
{
	if (!p)
		return;
	vbk_wipe(p, len);
	free(p);
}

int vbs_sput(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const char *db, const void *key,
	     size_t klen, const void *plain, size_t plen, unsigned flags)
{
	MDB_val k = {klen, (void *)key}, d;
	uint8_t *val;
	size_t vlen;
	int r = vbs_seal(v, db, key, klen, plain, plen, &val, &vlen);

	if (r < 0)
		return r;
	d = (MDB_val){vlen, val};
	r = vbs_mdb_err(mdb_put(txn, dbi, &k, &d, flags));
	free(val);
	return r;
}

int vbs_sget(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const char *db, const void *key,
	     size_t klen, uint8_t **ret, size_t *ret_len)
{
	MDB_val k = {klen, (void *)key}, d;
	int rc;

	if (!dbi)
		return -ENOENT;
	rc = mdb_get(txn, dbi, &k, &d);
	if (rc)
		return vbs_mdb_err(rc);
	return vbs_unseal(v, db, key, klen, d.mv_data, d.mv_size, ret, ret_len);
}

int vbs_sget_fixed(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const char *db, const void *key,
		   size_t klen, void *out, size_t len)
{
	uint8_t *p;
	size_t got;
	int r = vbs_sget(v, txn, dbi, db, key, klen, &p, &got);

	if (r < 0)
		return r;
	if (got == len)
		memcpy(out, p, len);
	else
		r = -EBADMSG;
	vbs_unsealed_free(p, got);
	return r;
}

int vbs_name_hash(vbs_vault *v, const char *what, const void *data, size_t len,
		  uint8_t out[VBS_NAME_HASH_LEN])
{
	uint8_t h[VBK_HASH_LEN];
	int r;

	if (!v->name_mac)
		return -ENOKEY;
	r = vbk_hmac_calc2(v->name_mac, what, strlen(what) + 1, data, len, h);
	if (r == 0)
		memcpy(out, h, VBS_NAME_HASH_LEN);
	return r;
}
