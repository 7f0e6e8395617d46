/* kv_sign.c: the key vault's signature: Ed25519 over the canonical form of its file (see
 * kv_internal.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "kv_internal.h"

int kv_ed25519_generate(uint8_t seed[KV_SIGN_SEED_LEN], uint8_t pub[KV_SIGN_PUB_LEN])
{
	int r = vbk_random(seed, KV_SIGN_SEED_LEN);

	if (r < 0)
		return r;
	return kv_ed25519_public(seed, pub);
}

static EVP_PKEY *load_private(const uint8_t seed[KV_SIGN_SEED_LEN])
{
	return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, KV_SIGN_SEED_LEN);
}

int kv_ed25519_public(const uint8_t seed[KV_SIGN_SEED_LEN], uint8_t pub[KV_SIGN_PUB_LEN])
{
	EVP_PKEY *pk = load_private(seed);
	size_t n = KV_SIGN_PUB_LEN;
	int r = -EIO;

	if (pk && EVP_PKEY_get_raw_public_key(pk, pub, &n) == 1 && n == KV_SIGN_PUB_LEN)
		r = 0;
	EVP_PKEY_free(pk);
	return r;
}

int kv_ed25519_sign(const uint8_t seed[KV_SIGN_SEED_LEN], const uint8_t *msg, size_t len,
		    uint8_t sig[KV_SIGN_SIG_LEN])
{
	EVP_PKEY *pk = load_private(seed);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t n = KV_SIGN_SIG_LEN;
	int r = -EIO;

	if (pk && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk) == 1 &&
	    EVP_DigestSign(ctx, sig, &n, msg, len) == 1 && n == KV_SIGN_SIG_LEN)
		r = 0;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return r;
}

int kv_ed25519_verify(const uint8_t pub[KV_SIGN_PUB_LEN], const uint8_t *msg, size_t len,
		      const uint8_t sig[KV_SIGN_SIG_LEN])
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, KV_SIGN_PUB_LEN);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int r = -EIO;

	if (pk && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1)
		r = EVP_DigestVerify(ctx, sig, KV_SIGN_SIG_LEN, msg, len) == 1 ? 0 : -EBADMSG;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return r;
}

/* ---- canonical form ---- */

typedef struct buf {
	char *p;
	size_t len, cap;
	int err;
} buf;

static void put(buf *b, const void *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void put_str(buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(b, e, 2);
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			put(b, e, 6);
		} else {
			put(b, &s[i], 1);
		}
	}
	put(b, "\"", 1);
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void canon(buf *b, json_object *o, int top, int depth)
{
	char num[32];

	if (depth > 64) {
		b->err = -EPROTO;
		return;
	}
	switch (json_object_get_type(o)) {
	case json_type_null:
		put(b, "null", 4);
		break;
	case json_type_boolean:
		put(b, json_object_get_boolean(o) ? "true" : "false",
		    json_object_get_boolean(o) ? 4 : 5);
		break;
	case json_type_int:
		put(b, num,
		    (size_t)snprintf(num, sizeof(num), "%lld",
				     (long long)json_object_get_int64(o)));
		break;
	case json_type_string:
		put_str(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(o);

		put(b, "[", 1);
		for (size_t i = 0; i < n; i++) {
			if (i)
				put(b, ",", 1);
			canon(b, json_object_array_get_idx(o, i), 0, depth + 1);
		}
		put(b, "]", 1);
		break;
	}
	case json_type_object: {
		size_t n = (size_t)json_object_object_length(o), i = 0, k;
		const char **keys = calloc(n ? n : 1, sizeof(*keys));

		if (!keys) {
			b->err = -ENOMEM;
			return;
		}
		json_object_object_foreach(o, key, val)
		{
			(void)val;
			if (!(top && strcmp(key, "signature") == 0))
				keys[i++] = key;
		}
		qsort(keys, i, sizeof(*keys), key_cmp);
		put(b, "{", 1);
		for (k = 0; k < i; k++) {
			json_object *v = NULL;

			if (k)
				put(b, ",", 1);
			put_str(b, keys[k], strlen(keys[k]));
			put(b, ":", 1);
			json_object_object_get_ex(o, keys[k], &v);
			canon(b, v, 0, depth + 1);
		}
		put(b, "}", 1);
		free(keys);
		break;
	}
	default: /* doubles: the file has none */
		b->err = -EPROTO;
	}
}

int kv_canon(json_object *root, uint8_t **ret, size_t *ret_len)
{
	buf b = {0};

	put(&b, KV_SIGN_CONTEXT, sizeof(KV_SIGN_CONTEXT)); /* with its NUL */
	canon(&b, root, 1, 0);
	if (b.err) {
		free(b.p);
		return b.err;
	}
	*ret = (uint8_t *)b.p;
	*ret_len = b.len;
	return 0;
}

/* ---- the signing key and the file's signature ---- */

static int signing_label(const char *id, const uint8_t pub[KV_SIGN_PUB_LEN], kv_label *l)
{
	char hex[2 * KV_SIGN_PUB_LEN + 1];

	vbu_hex_encode(pub, KV_SIGN_PUB_LEN, hex);
	kv_label_str(l, "vmbak-keyvault-signing");
	kv_label_str(l, id);
	kv_label_str(l, hex);
	return kv_label_done(l);
}

/* The "signing" member: the public key, and the seed sealed under the private-keys key. */
static int signing_json(const vbk_kv *kv, json_object **ret)
{
	uint8_t nonce[VBK_NONCE_LEN], ct[KV_SIGN_SEED_LEN], tag[VBK_TAG_LEN];
	json_object *o = NULL, *p;
	kv_label l = {0};
	int r;

	if ((r = signing_label(kv->id, kv->sign_pub, &l)) < 0 ||
	    (r = vbk_random(nonce, sizeof(nonce))) < 0 ||
	    (r = vbk_gcm_seal(kv->keys.id_key, nonce, l.buf, l.len, kv->sign_seed, KV_SIGN_SEED_LEN,
			      ct, tag)) < 0)
		goto out;
	r = -ENOMEM;
	o = json_object_new_object();
	p = json_object_new_object();
	if (!o || jadd_b64(o, "public", kv->sign_pub, KV_SIGN_PUB_LEN) < 0 ||
	    jadd(o, "private", p) < 0 || jadd_b64(p, "nonce", nonce, sizeof(nonce)) < 0 ||
	    jadd_b64(p, "ciphertext", ct, sizeof(ct)) < 0 ||
	    jadd_b64(p, "tag", tag, sizeof(tag)) < 0)
		goto out;
	*ret = o;
	o = NULL;
	r = 0;
out:
	json_object_put(o);
	kv_label_free(&l);
	vbk_wipe(ct, sizeof(ct));
	return r;
}

/* Opens the sealed seed of root's "signing" and checks it is the private half of pub. */
int kv_signing_open(vbk_kv *kv, json_object *root, const uint8_t pub[KV_SIGN_PUB_LEN])
{
	json_object *p = jobj(jobj(root, "signing", json_type_object), "private", json_type_object);
	uint8_t nonce[VBK_NONCE_LEN], ct[KV_SIGN_SEED_LEN], tag[VBK_TAG_LEN];
	uint8_t seed[KV_SIGN_SEED_LEN], derived[KV_SIGN_PUB_LEN];
	kv_label l = {0};
	int r;

	if (jget_b64(p, "nonce", nonce, sizeof(nonce)) < 0 ||
	    jget_b64(p, "ciphertext", ct, sizeof(ct)) < 0 ||
	    jget_b64(p, "tag", tag, sizeof(tag)) < 0)
		return -EPROTO;
	if ((r = signing_label(kv->id, pub, &l)) < 0)
		goto out;
	r = vbk_gcm_open(kv->keys.id_key, nonce, l.buf, l.len, ct, sizeof(ct), seed, tag);
	if (r == 0)
		r = kv_ed25519_public(seed, derived);
	if (r == 0 && CRYPTO_memcmp(derived, pub, KV_SIGN_PUB_LEN) != 0)
		r = -EBADMSG;
	if (r == 0) {
		memcpy(kv->sign_seed, seed, sizeof(seed));
		memcpy(kv->sign_pub, pub, KV_SIGN_PUB_LEN);
		kv->can_sign = 1;
	}
out:
	vbk_wipe(seed, sizeof(seed));
	kv_label_free(&l);
	return r;
}

/* Sets root's generation, signing key (when missing) and signature. */
int kv_sign_root(const vbk_kv *kv, json_object *root, uint64_t generation)
{
	json_object *sg = NULL;
	uint8_t *msg = NULL, sig[KV_SIGN_SIG_LEN];
	size_t len = 0;
	int r;

	if (!jobj(root, "signing", json_type_object)) {
		if ((r = signing_json(kv, &sg)) < 0 || (r = jadd(root, "signing", sg)) < 0)
			return r;
	}
	if ((r = jadd(root, "generation", json_object_new_int64((int64_t)generation))) < 0)
		return r;
	json_object_object_del(root, "signature");
	if ((r = kv_canon(root, &msg, &len)) < 0)
		return r;
	r = kv_ed25519_sign(kv->sign_seed, msg, len, sig);
	free(msg);
	if (r < 0)
		return r;
	return jadd_b64(root, "signature", sig, sizeof(sig));
}
