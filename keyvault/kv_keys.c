/* kv_keys.c: key versions (create, rotate, find, the wrapper of a version), their states
 * (enabled, disabled, retired) and the listing of keys. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "audit.h"
#include "crypto.h"
#include "file.h"
#include "json.h"
#include "kv.h"
#include "kv_internal.h"
#include "util.h"
#include "vaultkey.h"

/* ---- listings ---- */

static int key_entry(void *p, const char *name, json_object *o, size_t n_versions)
{
	vbk_key_info *e = p;

	kv_type_from_json(o, &e->type);
	jint(o, "created", 0, INT64_MAX, &e->created);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->n_versions = n_versions;
	e->versions = calloc(n_versions, sizeof(*e->versions));
	return e->versions ? 0 : -ENOMEM;
}

static void key_version(void *p, size_t j, json_object *v)
{
	vbk_key_version *kv = &((vbk_key_info *)p)->versions[j];
	int64_t x;

	kv->version = (uint32_t)(j + 1);
	jint(v, "created", 0, INT64_MAX, &x);
	kv->created = x;
	snprintf(kv->fingerprint, VBK_FPR_MAX, "%s", jstr(v, "fingerprint"));
	kv_version_state(v, &kv->state);
	snprintf(kv->pkcs11, sizeof(kv->pkcs11), "%s", jstr(v, "pkcs11") ? jstr(v, "pkcs11") : "");
}

static const kv_lister key_lister = {sizeof(vbk_key_info), offsetof(vbk_key_info, versions),
				     key_entry, key_version};

int vbk_kv_keys(const vbk_kv *kv, vbk_key_info **ret, size_t *ret_n)
{
	void *list;
	int r = kv_list(jobj(kv->root, "keys", json_type_object), &key_lister, &list, ret_n);

	if (r == 0)
		*ret = list;
	return r;
}

void vbk_key_list_free(vbk_key_info *list, size_t n)
{
	kv_list_free(&key_lister, list, n);
}

/* ---- keys ---- */

static void key_label(const vbk_kv *kv, const char *name, uint32_t version, vbk_key_type t,
		      const char *fpr, kv_label *l)
{
	kv_label_str(l, "vmbak-keyvault-key");
	kv_label_str(l, kv->id);
	kv_label_str(l, name);
	kv_label_u32(l, version);
	kv_label_str(l, vbk_key_type_name(t));
	kv_label_str(l, fpr);
}

/* A new version of a key: fresh key material, the private part sealed under the private-keys
 * key. */
static int key_version_new(const vbk_kv *kv, const char *name, vbk_key_type t, uint32_t version,
			   json_object **ret)
{
	EVP_PKEY *pk = NULL;
	uint8_t *pub = NULL, *priv = NULL, aes[VBK_KEY_LEN], nonce[VBK_NONCE_LEN], tag[VBK_TAG_LEN];
	uint8_t *ct = NULL;
	size_t pub_len = 0, priv_len = 0;
	char fpr[VBK_FPR_MAX];
	kv_label l = {0};
	json_object *v = NULL, *p;
	int r;

	if (t == VBK_KEY_AES256) {
		if ((r = vbk_random(aes, sizeof(aes))) < 0 ||
		    (r = kv_fingerprint_aes(aes, fpr)) < 0)
			goto out;
		priv = aes;
		priv_len = sizeof(aes);
	} else {
		if ((r = kv_rsa_generate(kv_key_bits(t), &pk)) < 0 ||
		    (r = kv_rsa_public_der(pk, &pub, &pub_len)) < 0 ||
		    (r = kv_rsa_private_der(pk, &priv, &priv_len)) < 0 ||
		    (r = kv_fingerprint_rsa(pub, pub_len, fpr)) < 0)
			goto out;
		if (pub_len > KV_PUBLIC_MAX || priv_len > KV_PRIVATE_MAX) {
			r = -EIO;
			goto out;
		}
	}
	key_label(kv, name, version, t, fpr, &l);
	ct = malloc(priv_len);
	if (!ct || (r = kv_label_done(&l)) < 0) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = vbk_random(nonce, sizeof(nonce))) < 0 ||
	    (r = vbk_gcm_seal(kv->keys.id_key, nonce, l.buf, l.len, priv, priv_len, ct, tag)) < 0)
		goto out;
	r = -ENOMEM;
	v = json_object_new_object();
	p = json_object_new_object();
	if (!v || jadd(v, "version", json_object_new_int64(version)) < 0 ||
	    jadd(v, "created", json_object_new_int64(vbu_now_ns() / 1000000000)) < 0 ||
	    jadd(v, "fingerprint", json_object_new_string(fpr)) < 0 ||
	    (pub && jadd_b64(v, "public", pub, pub_len) < 0) || jadd(v, "private", p) < 0 ||
	    jadd_b64(p, "nonce", nonce, sizeof(nonce)) < 0 ||
	    jadd_b64(p, "ciphertext", ct, priv_len) < 0 || jadd_b64(p, "tag", tag, sizeof(tag)) < 0)
		goto out;
	*ret = v;
	v = NULL;
	r = 0;
out:
	if (r < 0 && r != -ENOMEM)
		kv_fail(r, "cannot make key '%s': %s", name, vbu_strerror(-r));
	else if (r == -ENOMEM)
		kv_fail(r, "cannot make key '%s': out of memory", name);
	json_object_put(v);
	vbk_wipe(aes, sizeof(aes));
	if (priv && priv != aes)
		OPENSSL_clear_free(priv, priv_len);
	OPENSSL_free(pub);
	free(ct);
	EVP_PKEY_free(pk);
	kv_label_free(&l);
	return r;
}

/* A new version of a key in a PKCS#11 token: made there; the file keeps its URI and, for RSA, its
 * public key. *ret_key is the token key, for the caller to destroy if the version cannot be
 * recorded. */
static int key_version_p11(const char *name, vbk_key_type t, uint32_t version, const char *uri,
			   json_object **ret, vbk_p11_key **ret_key)
{
	vbk_p11_key *key = NULL;
	uint8_t *pub = NULL, kcv[VBK_HASH_LEN];
	size_t pub_len = 0;
	char fpr[VBK_FPR_MAX], hex[2 * VBK_HASH_LEN + 1], *vuri = NULL;
	json_object *v = NULL;
	int r;

	r = vbk_p11_generate(uri, t, name, version, &key, &vuri, t == VBK_KEY_AES256 ? NULL : &pub,
			     &pub_len);
	if (r < 0)
		return r;
	if (t == VBK_KEY_AES256) {
		if ((r = vbk_p11_aes_kcv(key, kcv)) < 0)
			goto out;
		vbu_hex_encode(kcv, sizeof(kcv), hex);
		snprintf(fpr, sizeof(fpr), KV_FPR_P11_AES "%s", hex);
	} else if ((r = kv_fingerprint_rsa(pub, pub_len, fpr)) < 0) {
		goto out;
	}
	v = json_object_new_object();
	if (!v || jadd(v, "version", json_object_new_int64(version)) < 0 ||
	    jadd(v, "created", json_object_new_int64(vbu_now_ns() / 1000000000)) < 0 ||
	    jadd(v, "fingerprint", json_object_new_string(fpr)) < 0 ||
	    (pub && jadd_b64(v, "public", pub, pub_len) < 0) ||
	    jadd(v, "pkcs11", json_object_new_string(vuri)) < 0) {
		r = kv_fail(-ENOMEM, "out of memory");
		goto out;
	}
	*ret = v;
	v = NULL;
	*ret_key = key;
	key = NULL;
	r = 0;
out:
	if (key)
		vbk_p11_destroy(key);
	vbk_p11_close(key);
	json_object_put(v);
	free(vuri);
	OPENSSL_free(pub);
	return r;
}

struct key_op {
	const char *name;
	vbk_key_type type;
	int create;
	const char *pkcs11;   /* create: the token's URI, else NULL */
	json_object *version; /* made before the lock is taken: RSA keys take a while */
	uint32_t ret_version;
};

static int key_op_fn(vbk_kv *kv, json_object *root, void *arg)
{
	struct key_op *op = arg;
	json_object *keys = jobj(root, "keys", json_type_object), *k, *vs;
	vbk_key_type t;
	size_t n;
	int r;

	k = jobj(keys, op->name, json_type_object);
	if (op->create) {
		if (k)
			return kv_fail(-EEXIST,
				       "key '%s' exists in key vault '%s': use 'key rotate' "
				       "for a new version",
				       op->name, kv->path);
		k = json_object_new_object();
		if (!k || jadd(keys, op->name, k) < 0 ||
		    jadd(k, "type", json_object_new_string(vbk_key_type_name(op->type))) < 0 ||
		    jadd(k, "created", json_object_new_int64(vbu_now_ns() / 1000000000)) < 0 ||
		    (op->pkcs11 && jadd(k, "pkcs11", json_object_new_string(op->pkcs11)) < 0) ||
		    jadd(k, "versions", json_object_new_array()) < 0)
			return kv_fail(-ENOMEM, "out of memory");
	}
	kv_type_from_json(k, &t);
	vs = jobj(k, "versions", json_type_array);
	n = json_object_array_length(vs);
	/* The version was made for n + 1 of the file as opened; renumber it if another writer
	 * got in between (its label binds the number, so only when still the same: else redo). */
	if (t != op->type || n + 1 != op->ret_version)
		return -EAGAIN;
	if (n >= KV_VERSIONS_MAX)
		return kv_fail(-ENOSPC, "key '%s' has too many versions", op->name);
	r = json_object_array_add(vs, json_object_get(op->version));
	if (r < 0) {
		json_object_put(op->version);
		return kv_fail(-ENOMEM, "out of memory");
	}
	return 0;
}

static int key_add_version(vbk_kv *kv, const char *name, vbk_key_type type, int create,
			   const char *pkcs11, uint32_t *ret_version)
{
	struct key_op op = {.name = name, .type = type, .create = create};
	vbk_audit_event ev = {.op = create ? "key-create" : "key-rotate", .key = name};
	json_object *keys, *k;
	vbk_p11_key *tk = NULL;
	char uri[VBK_P11_URI_MAX + 1] = "";
	int r, tries;

	kv_clear_err();
	if (!vbu_name_valid(name))
		return kv_fail(-EINVAL, "invalid key name '%s': use " VBK_KV_NAME_RULE, name);
	if (!kv->unlocked)
		return kv_fail(-ENOKEY, "key vault '%s' is locked", kv->path);
	for (tries = 0; tries < 5; tries++) {
		keys = jobj(kv->root, "keys", json_type_object);
		k = jobj(keys, name, json_type_object);
		if (!create) {
			if (!k)
				return kv_fail(-ENOENT, "no key '%s' in key vault '%s'", name,
					       kv->path);
			kv_type_from_json(k, &op.type);
			/* A key in a token rotates in the token its create URI names. */
			snprintf(uri, sizeof(uri), "%s",
				 jstr(k, "pkcs11") ? jstr(k, "pkcs11") : "");
			op.ret_version = (uint32_t)json_object_array_length(
					     jobj(k, "versions", json_type_array)) +
					 1;
		} else {
			if (k)
				return kv_fail(
				    -EEXIST,
				    "key '%s' exists in key vault '%s': use 'key rotate' "
				    "for a new version",
				    name, kv->path);
			op.ret_version = 1;
		}
		if (create && pkcs11)
			snprintf(uri, sizeof(uri), "%s", pkcs11);
		op.pkcs11 = create && uri[0] ? uri : NULL;
		r = uri[0] ? key_version_p11(name, op.type, op.ret_version, uri, &op.version, &tk)
			   : key_version_new(kv, name, op.type, op.ret_version, &op.version);
		if (r < 0)
			return r;
		ev.version = op.ret_version;
		kv->audit_ev = &ev;
		r = kv_mutate(kv, key_op_fn, &op);
		kv->audit_ev = NULL;
		json_object_put(op.version);
		op.version = NULL;
		/* Not recorded: the token must not keep a key nobody knows of. */
		if (r < 0 && tk)
			vbk_p11_destroy(tk);
		vbk_p11_close(tk);
		tk = NULL;
		if (r != -EAGAIN)
			break;
		/* Another writer changed the key meanwhile: kv->root is not fresh; read it. */
		if ((r = kv_reread(kv, "key", name)) < 0)
			return r;
		r = -EBUSY;
	}
	if (r < 0)
		return r;
	if (ret_version)
		*ret_version = op.ret_version;
	return 0;
}

int vbk_kv_key_create(vbk_kv *kv, const char *name, vbk_key_type type, uint32_t *ret_version)
{
	if (kv_key_bits(type) == 0)
		return kv_fail(-EINVAL, "unknown key type");
	return key_add_version(kv, name, type, 1, NULL, ret_version);
}

int vbk_kv_key_create_p11(vbk_kv *kv, const char *name, vbk_key_type type, const char *uri,
			  uint32_t *ret_version)
{
	kv_clear_err();
	if (kv_key_bits(type) == 0)
		return kv_fail(-EINVAL, "unknown key type");
	if (vbk_p11_uri_check(uri, 0) < 0)
		return -EINVAL;
	return key_add_version(kv, name, type, 1, uri, ret_version);
}

int vbk_kv_key_rotate(vbk_kv *kv, const char *name, uint32_t *ret_version)
{
	return key_add_version(kv, name, 0, 0, NULL, ret_version);
}

int kv_kek_find(const vbk_kv *kv, const char *name, uint32_t version, kv_kek *ret)
{
	json_object *k = jobj(jobj(kv->root, "keys", json_type_object), name, json_type_object);
	json_object *vs, *v;
	kv_kek kek = {0};
	size_t n;

	if (!k)
		return kv_fail(-ENOENT, "no key '%s' in key vault '%s'", name, kv->path);
	vs = jobj(k, "versions", json_type_array);
	n = json_object_array_length(vs);
	if (version == 0)
		version = (uint32_t)n;
	if (version > n)
		return kv_fail(-ENOENT, "no version %u of key '%s' in key vault '%s'", version,
			       name, kv->path);
	v = json_object_array_get_idx(vs, version - 1);
	snprintf(kek.name, sizeof(kek.name), "%s", name);
	kek.version = version;
	kv_type_from_json(k, &kek.type);
	snprintf(kek.fingerprint, sizeof(kek.fingerprint), "%s", jstr(v, "fingerprint"));
	kek.p11 = jstr(v, "pkcs11") != NULL;
	*ret = kek;
	return 0;
}

/* The private material of a KEK version: DER RSAPrivateKey or the AES key. */
int kv_kek_private(const vbk_kv *kv, const kv_kek *k, json_object *v, uint8_t **ret,
		   size_t *ret_len)
{
	json_object *p = jobj(v, "private", json_type_object);
	uint8_t nonce[VBK_NONCE_LEN], tag[VBK_TAG_LEN], ct[KV_PRIVATE_MAX], *pt = NULL;
	const char *s = jstr(p, "ciphertext");
	kv_label l = {0};
	size_t n = 0;
	int r;

	if (jget_b64(p, "nonce", nonce, sizeof(nonce)) < 0 ||
	    jget_b64(p, "tag", tag, sizeof(tag)) < 0 ||
	    vbu_base64_decode(s, ct, sizeof(ct), &n) < 0 || n == 0) {
		r = kv_fail(-EPROTO, "key vault file '%s': bad private part of key '%s' version %u",
			    kv->file, k->name, k->version);
		goto out;
	}
	key_label(kv, k->name, k->version, k->type, k->fingerprint, &l);
	pt = malloc(n);
	if (!pt || kv_label_done(&l) < 0) {
		r = kv_fail(-ENOMEM, "out of memory");
		goto out;
	}
	r = vbk_gcm_open(kv->keys.id_key, nonce, l.buf, l.len, ct, n, pt, tag);
	if (r < 0) {
		r = kv_fail(-EUCLEAN,
			    "private part of key '%s' version %u in key vault '%s' is "
			    "damaged",
			    k->name, k->version, kv->path);
		goto out;
	}
	*ret = pt;
	*ret_len = n;
	pt = NULL;
out:
	if (pt) {
		vbk_wipe(pt, n);
		free(pt);
	}
	kv_label_free(&l);
	return r;
}

/* A KEK version in a PKCS#11 token, opened: the token's key must be the one the (signed) key vault
 * names, by its modulus (RSA) or its key check value (AES). No key vault passphrase: the PIN
 * guards the token. */
static int wrapper_p11(const vbk_kv *kv, const kv_kek *k, json_object *v, kv_wrapper *w)
{
	uint8_t der[KV_PUBLIC_MAX], kcv[VBK_HASH_LEN];
	char fpr[VBK_FPR_MAX], hex[2 * VBK_HASH_LEN + 1];
	size_t n = 0;
	int r;

	r = vbk_p11_open(jstr(v, "pkcs11"), k->type, &w->p11);
	if (r < 0)
		return r;
	if (k->type == VBK_KEY_AES256) {
		if ((r = vbk_p11_aes_kcv(w->p11, kcv)) < 0)
			return r;
		vbu_hex_encode(kcv, sizeof(kcv), hex);
		snprintf(fpr, sizeof(fpr), KV_FPR_P11_AES "%s", hex);
		r = strcmp(fpr, k->fingerprint) == 0 ? 0 : -EKEYREJECTED;
		w->kind = KV_WRAP_P11_AES;
	} else {
		if (vbu_base64_decode(jstr(v, "public"), der, sizeof(der), &n) < 0)
			return kv_fail(-EPROTO,
				       "public key of key '%s' version %u in key vault '%s' is "
				       "damaged",
				       k->name, k->version, kv->path);
		r = vbk_p11_rsa_match(w->p11, der, n);
		w->kind = KV_WRAP_P11_RSA;
	}
	if (r == -EKEYREJECTED)
		return kv_fail(-EUCLEAN, /* -EBADMSG would blame the blob */
			       "the PKCS#11 token holds another key than key '%s' version %u",
			       k->name, k->version);
	return r;
}

int kv_wrapper_get(const vbk_kv *kv, const kv_kek *k, int priv, kv_wrapper *ret)
{
	json_object *key, *v;
	kv_wrapper w = {0};
	uint8_t der[KV_PUBLIC_MAX], *pt = NULL;
	char fpr[VBK_FPR_MAX];
	size_t n = 0, pt_len = 0;
	kv_kek cur;
	int r;

	if (!k->name[0]) {
		if (!kv->unlocked)
			return kv_fail(-ENOKEY, "key vault '%s' is locked", kv->path);
		w.kind = KV_WRAP_KV;
		memcpy(w.key, kv->keys.data_key, VBK_KEY_LEN);
		*ret = w;
		vbk_wipe(&w, sizeof(w));
		return 0;
	}
	/* The version must exist with the type and fingerprint named. */
	r = kv_kek_find(kv, k->name, k->version, &cur);
	if (r < 0)
		return r;
	if (cur.type != k->type || strcmp(cur.fingerprint, k->fingerprint) != 0)
		return kv_fail(-EKEYREJECTED,
			       "key '%s' version %u in key vault '%s' is not the key named (type "
			       "or fingerprint differ)",
			       k->name, k->version, kv->path);
	key = jobj(jobj(kv->root, "keys", json_type_object), k->name, json_type_object);
	v = json_object_array_get_idx(jobj(key, "versions", json_type_array), k->version - 1);
	if (cur.p11 && (priv || k->type == VBK_KEY_AES256)) {
		r = wrapper_p11(kv, k, v, &w);
		if (r < 0)
			goto out;
		*ret = w;
		return 0;
	}
	if (k->type != VBK_KEY_AES256 && !priv) {
		if (vbu_base64_decode(jstr(v, "public"), der, sizeof(der), &n) < 0 ||
		    kv_rsa_load(der, n, 0, kv_key_bits(k->type), &w.pkey) < 0 ||
		    kv_fingerprint_rsa(der, n, fpr) < 0 || strcmp(fpr, k->fingerprint) != 0) {
			r = kv_fail(-EPROTO,
				    "public key of key '%s' version %u in key vault '%s' "
				    "is damaged",
				    k->name, k->version, kv->path);
			goto out;
		}
		w.kind = KV_WRAP_RSA;
		*ret = w;
		return 0;
	}
	if (!kv->unlocked)
		return kv_fail(-ENOKEY, "key vault '%s' is locked", kv->path);
	r = kv_kek_private(kv, k, v, &pt, &pt_len);
	if (r < 0)
		goto out;
	if (k->type == VBK_KEY_AES256) {
		if (pt_len != VBK_KEY_LEN || kv_fingerprint_aes(pt, fpr) < 0 ||
		    strcmp(fpr, k->fingerprint) != 0) {
			r = kv_fail(-EPROTO, "key '%s' version %u in key vault '%s' is damaged",
				    k->name, k->version, kv->path);
			goto out;
		}
		w.kind = KV_WRAP_AES;
		memcpy(w.key, pt, VBK_KEY_LEN);
	} else {
		if (kv_rsa_load(pt, pt_len, 1, kv_key_bits(k->type), &w.pkey) < 0) {
			r = kv_fail(-EPROTO, "key '%s' version %u in key vault '%s' is damaged",
				    k->name, k->version, kv->path);
			goto out;
		}
		w.kind = KV_WRAP_RSA;
	}
	*ret = w;
	memset(&w, 0, sizeof(w));
	r = 0;
out:
	kv_wrapper_clear(&w);
	if (pt) {
		vbk_wipe(pt, pt_len);
		free(pt);
	}
	return r;
}

/* ---- key states ---- */

int vbk_kv_key_usable(const vbk_kv *kv, const char *name, uint32_t version, int wrap)
{
	return kv_usable_in(kv, kv->root, name, version, wrap);
}

/* The same against root (the file as read under the lock, in a kv_mutate). */
int kv_usable_in(const vbk_kv *kv, json_object *root, const char *name, uint32_t version, int wrap)
{
	json_object *k = jobj(jobj(root, "keys", json_type_object), name, json_type_object);
	json_object *vs = k ? jobj(k, "versions", json_type_array) : NULL;
	vbk_key_state st = VBK_KEY_ENABLED;

	if (!k)
		return kv_fail(-ENOENT, "no key '%s' in key vault '%s'", name, kv->path);
	if (!vs || version == 0 || version > json_object_array_length(vs))
		return kv_fail(-ENOENT, "no version %u of key '%s' in key vault '%s'", version,
			       name, kv->path);
	kv_version_state(json_object_array_get_idx(vs, version - 1), &st);
	if (st == VBK_KEY_RETIRED)
		return kv_fail(-EKEYREVOKED,
			       "key '%s' version %u in key vault '%s' is retired: it wraps and "
			       "unwraps nothing (enable it again to use it)",
			       name, version, kv->path);
	if (st == VBK_KEY_DISABLED && wrap)
		return kv_fail(
		    -EKEYREVOKED,
		    "key '%s' version %u in key vault '%s' is disabled: it wraps nothing "
		    "new (rotate the key, or enable the version)",
		    name, version, kv->path);
	return 0;
}

struct state_op {
	const char *name;
	uint32_t version;
	vbk_key_state state;
	int changed;
};

/* The secret whose latest version is wrapped by key name version v, or NULL. */
static const char *secret_on(json_object *root, const char *name, uint32_t v)
{
	json_object_object_foreach(jobj(root, "secrets", json_type_object), sname, s)
	{
		json_object *vs = jobj(s, "versions", json_type_array), *k;
		size_t n = vs ? json_object_array_length(vs) : 0;
		kv_kek kek;

		if (n == 0 ||
		    !json_object_object_get_ex(json_object_array_get_idx(vs, n - 1), "kek", &k) ||
		    !k || kv_kek_from_json(k, &kek) < 0)
			continue;
		if (strcmp(kek.name, name) == 0 && kek.version == v)
			return sname;
	}
	return NULL;
}

static int state_op_fn(vbk_kv *kv, json_object *root, void *arg)
{
	struct state_op *op = arg;
	json_object *k = jobj(jobj(root, "keys", json_type_object), op->name, json_type_object);
	json_object *vs = k ? jobj(k, "versions", json_type_array) : NULL, *v;
	vbk_key_state cur = VBK_KEY_ENABLED;
	const char *sname;

	if (!k)
		return kv_fail(-ENOENT, "no key '%s' in key vault '%s'", op->name, kv->path);
	if (op->version == 0 || op->version > json_object_array_length(vs))
		return kv_fail(-ENOENT, "no version %u of key '%s' in key vault '%s'", op->version,
			       op->name, kv->path);
	v = json_object_array_get_idx(vs, op->version - 1);
	kv_version_state(v, &cur);
	if (cur == op->state)
		return -EALREADY;
	if (op->state == VBK_KEY_RETIRED && (sname = secret_on(root, op->name, op->version)))
		return kv_fail(-EBUSY,
			       "cannot retire key '%s' version %u: the latest version of secret "
			       "'%s' is wrapped by it (set the secret again with --kek %s first)",
			       op->name, op->version, sname, op->name);
	if (op->state == VBK_KEY_ENABLED) {
		json_object_object_del(v, "state");
	} else if (jadd(v, "state", json_object_new_string(vbk_key_state_name(op->state))) < 0) {
		return kv_fail(-ENOMEM, "out of memory");
	}
	op->changed = 1;
	return 0;
}

int vbk_kv_key_set_state(vbk_kv *kv, const char *name, uint32_t version, vbk_key_state state,
			 int *ret_changed)
{
	static const char *const ops[] = {"key-enable", "key-disable", "key-retire"};
	struct state_op op = {.name = name, .version = version, .state = state};
	vbk_audit_event ev = {.key = name, .version = version};
	int r;

	kv_clear_err();
	if (!vbu_name_valid(name))
		return kv_fail(-EINVAL, "invalid key name '%s': use " VBK_KV_NAME_RULE, name);
	if ((unsigned)state >= VBU_ARRAY_SIZE(ops))
		return kv_fail(-EINVAL, "unknown key state");
	if (!kv->unlocked)
		return kv_fail(-ENOKEY, "key vault '%s' is locked", kv->path);
	ev.op = ops[state];
	kv->audit_ev = &ev;
	r = kv_mutate(kv, state_op_fn, &op);
	kv->audit_ev = NULL;
	if (r == -EALREADY) {
		kv_clear_err();
		r = 0;
	}
	if (r < 0)
		return r;
	if (ret_changed)
		*ret_changed = op.changed;
	return 0;
}
