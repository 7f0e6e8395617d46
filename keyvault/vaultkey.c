/* vaultkey.c: wrapping a vault's data and id keys under its passphrase (see vaultkey.h). */
#include <errno.h>
#include <string.h>

#include "crypto.h"
#include "vaultkey.h"

int vbk_vaultkeys_generate(vbk_vaultkeys *ret)
{
	vbk_vaultkeys k;
	int r;

	r = vbk_random(&k, sizeof(k));
	if (r == 0)
		*ret = k;
	vbk_vaultkeys_wipe(&k);
	return r;
}

/* The wrapped plaintext: data key then id key. */
static void pack(const vbk_vaultkeys *keys, uint8_t pt[2 * VBK_KEY_LEN])
{
	memcpy(pt, keys->data_key, VBK_KEY_LEN);
	memcpy(pt + VBK_KEY_LEN, keys->id_key, VBK_KEY_LEN);
}

int vbk_vaultkeys_wrap(const vbk_vaultkeys *keys, const char *pass, const void *aad, size_t aad_len,
		       vbk_wrapped_vaultkeys *ret)
{
	vbk_wrapped_vaultkeys w;
	uint8_t kek[VBK_KEY_LEN], pt[2 * VBK_KEY_LEN];
	int r;

	if (!keys || !pass || (!aad && aad_len > 0))
		return -EINVAL;
	memset(&w, 0, sizeof(w));
	r = vbk_scrypt_default(&w.kdf);
	if (r < 0)
		goto out;
	r = vbk_random(w.nonce, sizeof(w.nonce));
	if (r < 0)
		goto out;
	r = vbk_scrypt(pass, strlen(pass), &w.kdf, kek);
	if (r < 0)
		goto out;
	pack(keys, pt);
	r = vbk_gcm_seal(kek, w.nonce, aad, aad_len, pt, sizeof(pt), w.ct, w.tag);
	if (r < 0)
		goto out;
	*ret = w;
out:
	vbk_wipe(kek, sizeof(kek));
	vbk_wipe(pt, sizeof(pt));
	return r;
}

int vbk_vaultkeys_unwrap(const vbk_wrapped_vaultkeys *w, const char *pass, const void *aad,
			 size_t aad_len, vbk_vaultkeys *ret)
{
	uint8_t kek[VBK_KEY_LEN], pt[2 * VBK_KEY_LEN];
	int r;

	if (!w || !pass || (!aad && aad_len > 0))
		return -EINVAL;
	/* The parameters come from disk: bound the work and memory they ask for. */
	r = vbk_scrypt_check(&w->kdf);
	if (r < 0)
		return r;
	r = vbk_scrypt(pass, strlen(pass), &w->kdf, kek);
	if (r < 0)
		goto out;
	r = vbk_gcm_open(kek, w->nonce, aad, aad_len, w->ct, sizeof(w->ct), pt, w->tag);
	if (r == -EBADMSG)
		r = -ENOKEY;
	if (r < 0)
		goto out;
	memcpy(ret->data_key, pt, VBK_KEY_LEN);
	memcpy(ret->id_key, pt + VBK_KEY_LEN, VBK_KEY_LEN);
out:
	vbk_wipe(kek, sizeof(kek));
	vbk_wipe(pt, sizeof(pt));
	return r;
}

void vbk_vaultkeys_wipe(vbk_vaultkeys *keys)
{
	vbk_wipe(keys, keys ? sizeof(*keys) : 0);
}
