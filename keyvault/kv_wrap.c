/* kv_wrap.c: labels, envelopes, RSA-OAEP, AES key wrap and fingerprints of the key vault (see
 * kv_internal.h; the RSA keys themselves: kv_rsa.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "crypto.h"
#include "kv_internal.h"
#include "util.h"

/* ---- labels ---- */

static void label_add(kv_label *l, const void *p, size_t n)
{
	uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
	size_t need;

	if (l->err)
		return;
	if (n > UINT32_MAX || __builtin_add_overflow(l->len, n + 4, &need)) {
		l->err = -EOVERFLOW;
		return;
	}
	if (need > l->cap) {
		size_t cap = need < 256 ? 256 : need * 2;
		uint8_t *b = realloc(l->buf, cap);

		if (!b) {
			l->err = -ENOMEM;
			return;
		}
		l->buf = b;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, len, 4);
	if (n)
		memcpy(l->buf + l->len + 4, p, n);
	l->len = need;
}

void kv_label_str(kv_label *l, const char *s)
{
	label_add(l, s, strlen(s));
}

void kv_label_u32(kv_label *l, uint32_t v)
{
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%u", v);

	label_add(l, buf, (size_t)n);
}

int kv_label_done(const kv_label *l)
{
	return l->err;
}

void kv_label_free(kv_label *l)
{
	if (!l)
		return;
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

/* RSA-OAEP with SHA-256 for the hash and MGF1, the 32-byte label lab. */
static int rsa_oaep(EVP_PKEY *pk, int enc, const uint8_t lab[VBK_HASH_LEN], const uint8_t *in,
		    size_t len, uint8_t *out, size_t *io_len)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	unsigned char *l = NULL;
	int r;

	if (!c)
		return vbk_ossl_err();
	if ((enc ? EVP_PKEY_encrypt_init(c) : EVP_PKEY_decrypt_init(c)) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) <= 0) {
		r = vbk_ossl_err();
		goto out;
	}
	l = OPENSSL_memdup(lab, VBK_HASH_LEN);
	if (!l) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, VBK_HASH_LEN) <= 0) {
		OPENSSL_free(l);
		r = vbk_ossl_err();
		goto out;
	}
	/* The context owns the label now. */
	if (enc) {
		if (EVP_PKEY_encrypt(c, out, io_len, in, len) <= 0) {
			r = vbk_ossl_err();
			goto out;
		}
	} else if (EVP_PKEY_decrypt(c, out, io_len, in, len) <= 0) {
		/* A wrong key, label or ciphertext: all the same to the caller. */
		ERR_clear_error();
		r = -EBADMSG;
		goto out;
	}
	r = 0;
out:
	EVP_PKEY_CTX_free(c);
	return r;
}

/* ---- AES key wrap with padding (RFC 5649) ---- */

static int aes_kwp(const uint8_t key[VBK_KEY_LEN], int enc, const uint8_t *in, size_t len,
		   uint8_t *out, size_t cap, size_t *ret_len)
{
	EVP_CIPHER *ciph = NULL;
	EVP_CIPHER_CTX *c = NULL;
	int n = 0, m = 0, r;

	/* Output: the input rounded up to 8 bytes, plus 8 (wrap); at most the input (unwrap). */
	if (len > 4096 || cap < len + 16)
		return -EINVAL;
	ciph = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
	c = EVP_CIPHER_CTX_new();
	if (!ciph || !c) {
		r = vbk_ossl_err();
		goto out;
	}
	EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (!EVP_CipherInit_ex2(c, ciph, key, NULL, enc, NULL)) {
		r = vbk_ossl_err();
		goto out;
	}
	if (!EVP_CipherUpdate(c, out, &n, in, (int)len) || n < 0 ||
	    !EVP_CipherFinal_ex(c, out + n, &m) || m < 0) {
		if (enc) {
			r = vbk_ossl_err();
		} else {
			ERR_clear_error();
			r = -EBADMSG;
		}
		goto out;
	}
	*ret_len = (size_t)n + (size_t)m;
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	EVP_CIPHER_free(ciph);
	return r;
}

/* ---- fingerprints ---- */

int kv_fingerprint_rsa(const uint8_t *der, size_t len, char out[VBK_FPR_MAX])
{
	uint8_t md[VBK_HASH_LEN];
	char hex[2 * VBK_HASH_LEN + 1];
	int r;

	r = vbk_sha256(der, len, md);
	if (r < 0)
		return r;
	vbu_hex_encode(md, sizeof(md), hex);
	snprintf(out, VBK_FPR_MAX, "sha256:%s", hex);
	return 0;
}

int kv_fingerprint_aes(const uint8_t key[VBK_KEY_LEN], char out[VBK_FPR_MAX])
{
	static const char what[] = "vmbak-keyvault aes-256 key check value";
	uint8_t md[VBK_HASH_LEN];
	char hex[2 * VBK_HASH_LEN + 1];
	int r;

	r = vbk_hmac_sha256(key, what, sizeof(what) - 1, md);
	if (r < 0)
		return r;
	vbu_hex_encode(md, sizeof(md), hex);
	snprintf(out, VBK_FPR_MAX, "hmac-sha256:%s", hex);
	return 0;
}

/* ---- envelopes ---- */

void kv_wrapper_clear(kv_wrapper *w)
{
	if (!w)
		return;
	EVP_PKEY_free(w->pkey);
	vbk_p11_close(w->p11);
	vbk_wipe(w, sizeof(*w));
}

void kv_env_clear(kv_envelope *e)
{
	if (!e)
		return;
	free(e->ct);
	memset(e, 0, sizeof(*e));
}

/* Wraps the data key dk. */
static int wrap_key(const kv_wrapper *w, const kv_label *l, const uint8_t dk[VBK_KEY_LEN],
		    kv_envelope *e)
{
	uint8_t lab[VBK_HASH_LEN], buf[VBK_KEY_LEN + VBK_HASH_LEN];
	size_t n = sizeof(e->wrapped_key);
	int r;

	r = vbk_sha256(l->buf, l->len, lab);
	if (r < 0)
		return r;
	switch (w->kind) {
	case KV_WRAP_RSA:
		r = rsa_oaep(w->pkey, 1, lab, dk, VBK_KEY_LEN, e->wrapped_key, &n);
		break;
	case KV_WRAP_AES:
		memcpy(buf, dk, VBK_KEY_LEN);
		memcpy(buf + VBK_KEY_LEN, lab, VBK_HASH_LEN);
		r = aes_kwp(w->key, 1, buf, sizeof(buf), e->wrapped_key, sizeof(e->wrapped_key),
			    &n);
		break;
	case KV_WRAP_P11_AES:
		memcpy(buf, dk, VBK_KEY_LEN);
		memcpy(buf + VBK_KEY_LEN, lab, VBK_HASH_LEN);
		r = vbk_p11_aes_kwp(w->p11, 1, buf, sizeof(buf), e->wrapped_key,
				    sizeof(e->wrapped_key), &n);
		/* The same RFC 5649 as in software: 64 bytes wrap to 72, else not that. */
		if (r >= 0 && n != sizeof(buf) + 8)
			r = kv_fail(-EIO, "the PKCS#11 token's AES key wrap is not RFC 5649");
		break;
	case KV_WRAP_KV:
		r = vbk_random(e->wrapped_key, VBK_NONCE_LEN);
		if (r >= 0)
			r = vbk_gcm_seal(w->key, e->wrapped_key, l->buf, l->len, dk, VBK_KEY_LEN,
					 e->wrapped_key + VBK_NONCE_LEN,
					 e->wrapped_key + VBK_NONCE_LEN + VBK_KEY_LEN);
		n = VBK_NONCE_LEN + VBK_KEY_LEN + VBK_TAG_LEN;
		break;
	default:
		r = -EINVAL;
	}
	if (r >= 0)
		e->wrapped_len = n;
	vbk_wipe(buf, sizeof(buf));
	return r;
}

static int unwrap_key(const kv_wrapper *w, const kv_label *l, const kv_envelope *e,
		      uint8_t dk[VBK_KEY_LEN])
{
	uint8_t lab[VBK_HASH_LEN], buf[KV_WRAPPED_KEY_MAX];
	size_t n = sizeof(buf);
	int r;

	r = vbk_sha256(l->buf, l->len, lab);
	if (r < 0)
		return r;
	switch (w->kind) {
	case KV_WRAP_RSA:
		r = rsa_oaep(w->pkey, 0, lab, e->wrapped_key, e->wrapped_len, buf, &n);
		if (r >= 0 && n != VBK_KEY_LEN)
			r = -EBADMSG;
		break;
	case KV_WRAP_P11_RSA:
		r = vbk_p11_rsa_decrypt(w->p11, lab, e->wrapped_key, e->wrapped_len, buf, &n);
		if (r >= 0 && n != VBK_KEY_LEN)
			r = -EBADMSG;
		break;
	case KV_WRAP_AES:
	case KV_WRAP_P11_AES:
		if (w->kind == KV_WRAP_AES)
			r = aes_kwp(w->key, 0, e->wrapped_key, e->wrapped_len, buf, sizeof(buf),
				    &n);
		else
			r = vbk_p11_aes_kwp(w->p11, 0, e->wrapped_key, e->wrapped_len, buf,
					    sizeof(buf), &n);
		if (r >= 0 && (n != VBK_KEY_LEN + VBK_HASH_LEN ||
			       CRYPTO_memcmp(buf + VBK_KEY_LEN, lab, VBK_HASH_LEN) != 0))
			r = -EBADMSG;
		break;
	case KV_WRAP_KV:
		if (e->wrapped_len != VBK_NONCE_LEN + VBK_KEY_LEN + VBK_TAG_LEN)
			r = -EBADMSG;
		else
			r = vbk_gcm_open(w->key, e->wrapped_key, l->buf, l->len,
					 e->wrapped_key + VBK_NONCE_LEN, VBK_KEY_LEN, buf,
					 e->wrapped_key + VBK_NONCE_LEN + VBK_KEY_LEN);
		break;
	default:
		r = -EINVAL;
	}
	if (r >= 0)
		memcpy(dk, buf, VBK_KEY_LEN);
	vbk_wipe(buf, sizeof(buf));
	return r;
}

int kv_env_seal(const kv_wrapper *w, const kv_label *l, const void *pt, size_t len,
		kv_envelope *ret)
{
	kv_envelope e = {0};
	uint8_t dk[VBK_KEY_LEN];
	int r;

	if ((r = kv_label_done(l)) < 0)
		return r;
	e.ct = malloc(len ? len : 1);
	if (!e.ct)
		return -ENOMEM;
	e.ct_len = len;
	if ((r = vbk_random(dk, sizeof(dk))) < 0 ||
	    (r = vbk_random(e.nonce, sizeof(e.nonce))) < 0 ||
	    (r = vbk_gcm_seal(dk, e.nonce, l->buf, l->len, pt, len, e.ct, e.tag)) < 0 ||
	    (r = wrap_key(w, l, dk, &e)) < 0)
		goto out;
	*ret = e;
	e.ct = NULL;
out:
	vbk_wipe(dk, sizeof(dk));
	kv_env_clear(&e);
	return r;
}

int kv_env_open(const kv_wrapper *w, const kv_label *l, const kv_envelope *e, uint8_t **ret,
		size_t *ret_len)
{
	uint8_t dk[VBK_KEY_LEN], *pt = NULL;
	int r;

	if ((r = kv_label_done(l)) < 0)
		return r;
	pt = malloc(e->ct_len + 1);
	if (!pt)
		return -ENOMEM;
	if ((r = unwrap_key(w, l, e, dk)) < 0 ||
	    (r = vbk_gcm_open(dk, e->nonce, l->buf, l->len, e->ct, e->ct_len, pt, e->tag)) < 0)
		goto out;
	pt[e->ct_len] = '\0';
	*ret = pt;
	*ret_len = e->ct_len;
	pt = NULL;
out:
	vbk_wipe(dk, sizeof(dk));
	if (pt) {
		vbk_wipe(pt, e->ct_len + 1);
		free(pt);
	}
	return r;
}

static int add_b64(json_object *o, const char *key, const uint8_t *p, size_t n)
{
	char *s = vbu_base64_encode(p, n);
	json_object *j;

	if (!s)
		return -ENOMEM;
	j = json_object_new_string(s);
	free(s);
	if (!j || json_object_object_add(o, key, j) < 0) {
		json_object_put(j);
		return -ENOMEM;
	}
	return 0;
}

int kv_env_to_json(const kv_envelope *e, json_object *o)
{
	int r;

	if ((r = add_b64(o, "wrapped_key", e->wrapped_key, e->wrapped_len)) < 0 ||
	    (r = add_b64(o, "nonce", e->nonce, sizeof(e->nonce))) < 0 ||
	    (r = add_b64(o, "tag", e->tag, sizeof(e->tag))) < 0 ||
	    (r = add_b64(o, "ciphertext", e->ct, e->ct_len)) < 0)
		return r;
	return 0;
}

/* Decodes base64 field key of o into exactly want bytes (want 0: up to cap). */
static int get_b64(json_object *o, const char *key, uint8_t *out, size_t cap, size_t want,
		   size_t *ret_len)
{
	json_object *j;
	size_t n = 0;

	if (!json_object_object_get_ex(o, key, &j) || !json_object_is_type(j, json_type_string))
		return -EPROTO;
	if (vbu_base64_decode(json_object_get_string(j), out, cap, &n) < 0)
		return -EPROTO;
	if ((want && n != want) || (!want && n == 0))
		return -EPROTO;
	if (ret_len)
		*ret_len = n;
	return 0;
}

int kv_env_from_json(json_object *o, size_t ct_max, kv_envelope *ret)
{
	kv_envelope e = {0};
	json_object *j;
	size_t slen;
	int r;

	if ((r = get_b64(o, "wrapped_key", e.wrapped_key, sizeof(e.wrapped_key), 0,
			 &e.wrapped_len)) < 0 ||
	    (r = get_b64(o, "nonce", e.nonce, sizeof(e.nonce), sizeof(e.nonce), NULL)) < 0 ||
	    (r = get_b64(o, "tag", e.tag, sizeof(e.tag), sizeof(e.tag), NULL)) < 0)
		return r;
	if (!json_object_object_get_ex(o, "ciphertext", &j) ||
	    !json_object_is_type(j, json_type_string))
		return -EPROTO;
	slen = (size_t)json_object_get_string_len(j);
	if (slen > (ct_max + 2) / 3 * 4)
		return -EPROTO;
	e.ct = malloc(slen / 4 * 3 + 3);
	if (!e.ct)
		return -ENOMEM;
	r = get_b64(o, "ciphertext", e.ct, slen / 4 * 3 + 3, 0, &e.ct_len);
	if (r < 0 || e.ct_len > ct_max) {
		kv_env_clear(&e);
		return -EPROTO;
	}
	*ret = e;
	return 0;
}

int kv_env_pack(const kv_envelope *e, uint8_t **ret, size_t *ret_len)
{
	size_t n = 4 + e->wrapped_len + VBK_NONCE_LEN + VBK_TAG_LEN + e->ct_len, o = 0;
	uint8_t *p = malloc(n);

	if (!p)
		return -ENOMEM;
	p[0] = (uint8_t)(e->wrapped_len >> 24);
	p[1] = (uint8_t)(e->wrapped_len >> 16);
	p[2] = (uint8_t)(e->wrapped_len >> 8);
	p[3] = (uint8_t)e->wrapped_len;
	o = 4;
	memcpy(p + o, e->wrapped_key, e->wrapped_len);
	o += e->wrapped_len;
	memcpy(p + o, e->nonce, VBK_NONCE_LEN);
	o += VBK_NONCE_LEN;
	memcpy(p + o, e->tag, VBK_TAG_LEN);
	o += VBK_TAG_LEN;
	memcpy(p + o, e->ct, e->ct_len);
	*ret = p;
	*ret_len = n;
	return 0;
}

int kv_env_unpack(const uint8_t *p, size_t len, kv_envelope *ret)
{
	kv_envelope e = {0};
	size_t wl, o;

	if (len < 4)
		return -EBADMSG;
	wl = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	if (wl == 0 || wl > KV_WRAPPED_KEY_MAX || len - 4 < wl + VBK_NONCE_LEN + VBK_TAG_LEN)
		return -EBADMSG;
	o = 4;
	memcpy(e.wrapped_key, p + o, wl);
	e.wrapped_len = wl;
	o += wl;
	memcpy(e.nonce, p + o, VBK_NONCE_LEN);
	o += VBK_NONCE_LEN;
	memcpy(e.tag, p + o, VBK_TAG_LEN);
	o += VBK_TAG_LEN;
	e.ct_len = len - o;
	e.ct = malloc(e.ct_len ? e.ct_len : 1);
	if (!e.ct)
		return -ENOMEM;
	memcpy(e.ct, p + o, e.ct_len);
	*ret = e;
	return 0;
}
