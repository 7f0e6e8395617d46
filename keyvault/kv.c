/* kv.c: the key vault: its file, passphrase, keys and secrets (see kv.h). */
#include <dirent.h>
#include <errno.h>
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

#define FILE_MAX (64u << 20)
#define VERSIONS_MAX 100000u

/* ---- messages ---- */

const char *vbk_kv_errmsg(void)
{
	return vbu_errmsg();
}

/* ---- names and types ---- */

static const struct {
	vbk_key_type type;
	const char *name;
	unsigned bits;
} key_types[] = {
    {VBK_KEY_RSA3072, "rsa-3072", 3072},
    {VBK_KEY_RSA4096, "rsa-4096", 4096},
    {VBK_KEY_AES256, "aes-256", 256},
};

int vbk_key_type_parse(const char *s, vbk_key_type *ret)
{
	unsigned long bits;
	char *end;

	for (size_t i = 0; i < VBU_ARRAY_SIZE(key_types); i++) {
		if (strcmp(s, key_types[i].name) == 0) {
			*ret = key_types[i].type;
			return 0;
		}
	}
	/* rsa-1024, rsa-2048, aes-128, aes-192: known, and refused as too weak for keys that must
	 * protect backups for years. */
	if ((strncmp(s, "rsa-", 4) == 0 || strncmp(s, "aes-", 4) == 0) && s[4] >= '1' &&
	    s[4] <= '9') {
		errno = 0;
		bits = strtoul(s + 4, &end, 10);
		if (!*end && errno == 0 &&
		    ((s[0] == 'r' && bits >= 512 && bits < 3072) ||
		     (s[0] == 'a' && (bits == 128 || bits == 192))))
			return -EPERM;
	}
	return -EINVAL;
}

const char *vbk_key_type_name(vbk_key_type t)
{
	for (size_t i = 0; i < VBU_ARRAY_SIZE(key_types); i++)
		if (key_types[i].type == t)
			return key_types[i].name;
	return "unknown";
}

static unsigned key_bits(vbk_key_type t)
{
	for (size_t i = 0; i < VBU_ARRAY_SIZE(key_types); i++)
		if (key_types[i].type == t)
			return key_types[i].bits;
	return 0;
}

const char *kv_alg_for(const kv_kek *k)
{
	if (!k->name[0])
		return KV_ALG_KV;
	return k->type == VBK_KEY_AES256 ? KV_ALG_AES : KV_ALG_RSA;
}

/* ---- JSON helpers ---- */

/* Short names for base/json.h's getters, which this file calls on almost every line. */
#define jstr vbu_json_str
#define jint vbu_json_int
#define jobj vbu_json_obj
#define jadd vbu_json_add
#define jadd_b64 vbu_json_add_b64
#define jget_b64 vbu_json_b64

static int type_from_json(json_object *o, vbk_key_type *ret)
{
	const char *s = jstr(o, "type");

	if (!s)
		return -EPROTO;
	for (size_t i = 0; i < VBU_ARRAY_SIZE(key_types); i++) {
		if (strcmp(s, key_types[i].name) == 0) {
			*ret = key_types[i].type;
			return 0;
		}
	}
	return -EPROTO;
}

size_t kv_wrapped_len(const kv_kek *k)
{
	if (!k->name[0])
		return VBK_NONCE_LEN + VBK_KEY_LEN + VBK_TAG_LEN;
	if (k->type == VBK_KEY_AES256)
		return VBK_KEY_LEN + VBK_HASH_LEN + 8; /* RFC 5649 of 64 bytes */
	return key_bits(k->type) / 8;
}

int kv_fpr_valid(const char *s, vbk_key_type t)
{
	const char *prefix = t == VBK_KEY_AES256 ? "hmac-sha256:" : "sha256:";
	size_t pl;

	if (s && t == VBK_KEY_AES256 && strncmp(s, KV_FPR_P11_AES, strlen(KV_FPR_P11_AES)) == 0)
		prefix = KV_FPR_P11_AES;
	pl = strlen(prefix);
	uint8_t md[VBK_HASH_LEN];

	return s && strncmp(s, prefix, pl) == 0 && strlen(s + pl) == 2 * VBK_HASH_LEN &&
	       vbu_hex_decode(s + pl, md, sizeof(md)) == 0;
}

/* ---- key states ---- */

static const char *const state_names[] = {"enabled", "disabled", "retired"};

const char *vbk_key_state_name(vbk_key_state st)
{
	return (unsigned)st < VBU_ARRAY_SIZE(state_names) ? state_names[st] : "unknown";
}

int vbk_key_state_parse(const char *s, vbk_key_state *ret)
{
	for (size_t i = 0; s && i < VBU_ARRAY_SIZE(state_names); i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*ret = (vbk_key_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* A version's "state": absent is enabled (files made before states); anything but a known name
 * is -EPROTO. */
static int version_state(json_object *v, vbk_key_state *ret)
{
	json_object *j;
	vbk_key_state st = VBK_KEY_ENABLED;

	if (json_object_object_get_ex(v, "state", &j) &&
	    (!json_object_is_type(j, json_type_string) ||
	     vbk_key_state_parse(json_object_get_string(j), &st) < 0))
		return -EPROTO;
	if (ret)
		*ret = st;
	return 0;
}

/* ---- the file: checks ---- */

/* Every field of the file is checked once here, so the rest of the module can rely on its
 * shape. what: where the first bad field is, for the message. */
static int check_key(const char *name, json_object *k, const char **what)
{
	json_object *vs, *v, *p, *kp;
	vbk_key_type t;
	int64_t x;
	uint8_t der[KV_PUBLIC_MAX];
	size_t n, i, der_len;
	const char *fpr;
	int p11 = 0;

	*what = "type";
	if (!vbu_name_valid(name) || !json_object_is_type(k, json_type_object) ||
	    type_from_json(k, &t) < 0)
		return -EPROTO;
	/* A key in a PKCS#11 token: the URI given at create, checked as strictly as any. */
	*what = "pkcs11";
	if (json_object_object_get_ex(k, "pkcs11", &kp)) {
		if (!json_object_is_type(kp, json_type_string) ||
		    vbk_p11_uri_check(json_object_get_string(kp), 0) < 0)
			return -EPROTO;
		p11 = 1;
	}
	*what = "created";
	if (jint(k, "created", 0, INT64_MAX, &x) < 0)
		return -EPROTO;
	*what = "versions";
	vs = jobj(k, "versions", json_type_array);
	n = vs ? json_object_array_length(vs) : 0;
	if (n == 0 || n > VERSIONS_MAX)
		return -EPROTO;
	for (i = 0; i < n; i++) {
		v = json_object_array_get_idx(vs, i);
		*what = "version";
		if (!json_object_is_type(v, json_type_object) ||
		    jint(v, "version", 1, VERSIONS_MAX, &x) < 0 || (size_t)x != i + 1 ||
		    jint(v, "created", 0, INT64_MAX, &x) < 0)
			return -EPROTO;
		*what = "fingerprint";
		fpr = jstr(v, "fingerprint");
		if (!kv_fpr_valid(fpr, t) ||
		    (t == VBK_KEY_AES256 &&
		     (strncmp(fpr, KV_FPR_P11_AES, strlen(KV_FPR_P11_AES)) == 0) != p11))
			return -EPROTO;
		*what = "public";
		if (t != VBK_KEY_AES256 &&
		    (!jstr(v, "public") ||
		     vbu_base64_decode(jstr(v, "public"), der, sizeof(der), &der_len) < 0 ||
		     der_len == 0))
			return -EPROTO;
		*what = "pkcs11";
		if (p11) {
			if (!jstr(v, "pkcs11") || vbk_p11_uri_check(jstr(v, "pkcs11"), 1) < 0 ||
			    json_object_object_get_ex(v, "private", NULL))
				return -EPROTO;
			continue;
		}
		if (json_object_object_get_ex(v, "pkcs11", NULL))
			return -EPROTO;
		*what = "private";
		p = jobj(v, "private", json_type_object);
		if (!p || !jstr(p, "nonce") || !jstr(p, "tag") || !jstr(p, "ciphertext") ||
		    strlen(jstr(p, "ciphertext")) > (KV_PRIVATE_MAX + 2) / 3 * 4)
			return -EPROTO;
		*what = "state";
		if (version_state(v, NULL) < 0)
			return -EPROTO;
	}
	return 0;
}

static int kek_from_json(json_object *o, kv_kek *ret)
{
	const char *name = jstr(o, "name"), *fpr = jstr(o, "fingerprint");
	int64_t x;

	memset(ret, 0, sizeof(*ret));
	if (!vbu_name_valid(name) || jint(o, "version", 1, VERSIONS_MAX, &x) < 0 ||
	    type_from_json(o, &ret->type) < 0 || !kv_fpr_valid(fpr, ret->type))
		return -EPROTO;
	snprintf(ret->name, sizeof(ret->name), "%s", name);
	snprintf(ret->fingerprint, sizeof(ret->fingerprint), "%s", fpr);
	ret->version = (uint32_t)x;
	return 0;
}

static int check_secret(const char *name, json_object *s, const char **what)
{
	json_object *vs, *v, *k;
	kv_envelope e;
	kv_kek kek;
	int64_t x;
	size_t n, i;
	const char *alg;

	*what = "versions";
	if (!vbu_name_valid(name) || !json_object_is_type(s, json_type_object))
		return -EPROTO;
	vs = jobj(s, "versions", json_type_array);
	n = vs ? json_object_array_length(vs) : 0;
	if (n == 0 || n > VERSIONS_MAX)
		return -EPROTO;
	for (i = 0; i < n; i++) {
		v = json_object_array_get_idx(vs, i);
		*what = "version";
		if (!json_object_is_type(v, json_type_object) ||
		    jint(v, "version", 1, VERSIONS_MAX, &x) < 0 || (size_t)x != i + 1 ||
		    jint(v, "created", 0, INT64_MAX, &x) < 0)
			return -EPROTO;
		*what = "kek";
		if (!json_object_object_get_ex(v, "kek", &k))
			return -EPROTO;
		memset(&kek, 0, sizeof(kek));
		if (k && kek_from_json(k, &kek) < 0)
			return -EPROTO;
		*what = "algorithm";
		alg = jstr(v, "algorithm");
		if (!alg || strcmp(alg, kv_alg_for(&kek)) != 0)
			return -EPROTO;
		*what = "ciphertext";
		if (kv_env_from_json(v, VBK_SECRET_MAX, &e) < 0)
			return -EPROTO;
		kv_env_clear(&e);
	}
	return 0;
}

typedef struct kv_sig {
	int is_signed;
	uint8_t pub[KV_SIGN_PUB_LEN];
	uint64_t generation;
} kv_sig;

/* "generation", "signing" and "signature": all three or (a file made before signatures) none.
 * A signed file must verify under its own signing key; whether that key is the owner's is
 * checked by vbk_kv_unlock (its private half is sealed under the passphrase) and, without the
 * passphrase, by the vault's pin (store/kvpin.h). */
static int check_signature(json_object *root, const char *file, kv_sig *ret)
{
	json_object *j, *sg, *p;
	uint8_t sig[KV_SIGN_SIG_LEN], buf[64], *msg = NULL;
	size_t len = 0;
	int64_t gen;
	int n = 0, r;

	memset(ret, 0, sizeof(*ret));
	n += json_object_object_get_ex(root, "generation", &j);
	n += json_object_object_get_ex(root, "signing", &j);
	n += json_object_object_get_ex(root, "signature", &j);
	if (n == 0)
		return 0;
	sg = jobj(root, "signing", json_type_object);
	p = sg ? jobj(sg, "private", json_type_object) : NULL;
	if (n != 3 || jint(root, "generation", 1, INT64_MAX, &gen) < 0 || !sg ||
	    jget_b64(sg, "public", ret->pub, KV_SIGN_PUB_LEN) < 0 || !p ||
	    jget_b64(p, "nonce", buf, VBK_NONCE_LEN) < 0 ||
	    jget_b64(p, "ciphertext", buf, KV_SIGN_SEED_LEN) < 0 ||
	    jget_b64(p, "tag", buf, VBK_TAG_LEN) < 0 ||
	    jget_b64(root, "signature", sig, sizeof(sig)) < 0)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'signature'", file);
	r = kv_canon(root, &msg, &len);
	if (r < 0)
		return kv_fail(r, "key vault file '%s': bad field 'signature'", file);
	r = kv_ed25519_verify(ret->pub, msg, len, sig);
	free(msg);
	if (r < 0)
		return kv_fail(
		    -EBADMSG,
		    "key vault file '%s' does not verify: it was changed without the key "
		    "vault's passphrase, or damaged",
		    file);
	ret->is_signed = 1;
	ret->generation = (uint64_t)gen;
	return 0;
}

static int kv_check(json_object *root, const char *file, char id[VBK_KV_ID_LEN + 1],
		    vbk_scrypt_params *kdf, kv_sig *sig)
{
	const char *s, *what = NULL;
	json_object *o;
	int64_t x, n, r, p;
	uint8_t buf[64];

	if (!json_object_is_type(root, json_type_object) || !(s = jstr(root, "format")) ||
	    strcmp(s, VBK_KV_FORMAT_NAME) != 0)
		return kv_fail(-EPROTO, "'%s' is not a key vault file", file);
	if (jint(root, "version", 1, INT32_MAX, &x) < 0)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'version'", file);
	if (x != VBK_KV_FORMAT_VERSION)
		return kv_fail(-EPROTONOSUPPORT,
			       "key vault file '%s' has format version %lld; this build reads %d",
			       file, (long long)x, VBK_KV_FORMAT_VERSION);
	s = jstr(root, "id");
	if (!s || strlen(s) != VBK_KV_ID_LEN)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'id'", file);
	memcpy(id, s, VBK_KV_ID_LEN + 1);
	o = jobj(root, "kdf", json_type_object);
	if (!o || !(s = jstr(o, "name")) || strcmp(s, "scrypt") != 0 ||
	    jint(o, "n", 1, INT64_MAX, &n) < 0 || jint(o, "r", 1, 1024, &r) < 0 ||
	    jint(o, "p", 1, 1024, &p) < 0 || jget_b64(o, "salt", kdf->salt, sizeof(kdf->salt)) < 0)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'kdf'", file);
	kdf->n = (uint64_t)n;
	kdf->r = (uint32_t)r;
	kdf->p = (uint32_t)p;
	x = vbk_scrypt_check(kdf);
	if (x == -E2BIG)
		return kv_fail(-EPROTO,
			       "key vault file '%s': scrypt parameters n=%lld r=%lld p=%lld cost "
			       "more than this build allows (memory 1 GiB, n*r*p 2^23)",
			       file, (long long)n, (long long)r, (long long)p);
	if (x < 0)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'kdf'", file);
	o = jobj(root, "master", json_type_object);
	if (!o || jget_b64(o, "nonce", buf, VBK_NONCE_LEN) < 0 ||
	    jget_b64(o, "ciphertext", buf, 2 * VBK_KEY_LEN) < 0 ||
	    jget_b64(o, "tag", buf, VBK_TAG_LEN) < 0)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'master'", file);
	o = jobj(root, "keys", json_type_object);
	if (!o)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'keys'", file);
	json_object_object_foreach(o, kname, kval)
	{
		if (check_key(kname, kval, &what) < 0)
			return kv_fail(-EPROTO, "key vault file '%s': bad field '%s' of key '%s'",
				       file, what,
				       vbu_name_valid(kname) ? kname : "(an invalid name)");
	}
	o = jobj(root, "secrets", json_type_object);
	if (!o)
		return kv_fail(-EPROTO, "key vault file '%s': bad field 'secrets'", file);
	json_object_object_foreach(o, sname, sval)
	{
		if (check_secret(sname, sval, &what) < 0)
			return kv_fail(
			    -EPROTO, "key vault file '%s': bad field '%s' of secret '%s'", file,
			    what, vbu_name_valid(sname) ? sname : "(an invalid name)");
	}
	return check_signature(root, file, sig);
}

/* ---- the file: reading and writing ---- */

static int kv_read(const char *path, const char *file, json_object **ret,
		   char id[VBK_KV_ID_LEN + 1], vbk_wrapped_vaultkeys *ret_w, kv_sig *ret_sig)
{
	kv_sig sig;
	vbk_wrapped_vaultkeys w = {0};
	json_object *root = NULL, *m;
	enum json_tokener_error jerr;
	struct stat st;
	char *buf = NULL;
	size_t len;
	int r;

	r = vbu_read_file(file, FILE_MAX, &buf, &len);
	if (r == -ENOENT) {
		if (stat(path, &st) < 0)
			r = kv_fail(-errno, "cannot open key vault '%s': %s", path,
				    vbu_strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			r = kv_fail(-ENOTDIR, "key vault '%s' is not a directory", path);
		else
			r = kv_fail(-ENOENT, "'%s' is not a key vault (no %s)", path, VBK_KV_FILE);
		goto out;
	}
	if (r < 0) {
		r = kv_fail(r, "cannot read key vault file '%s': %s", file, vbu_strerror(-r));
		goto out;
	}
	root = json_tokener_parse_verbose(buf, &jerr);
	if (!root || strlen(buf) != len) {
		r = kv_fail(-EPROTO, "key vault file '%s' is not valid JSON: not a key vault?",
			    file);
		goto out;
	}
	r = kv_check(root, file, id, &w.kdf, &sig);
	if (r < 0)
		goto out;
	m = jobj(root, "master", json_type_object);
	if (jget_b64(m, "nonce", w.nonce, sizeof(w.nonce)) < 0 ||
	    jget_b64(m, "ciphertext", w.ct, sizeof(w.ct)) < 0 ||
	    jget_b64(m, "tag", w.tag, sizeof(w.tag)) < 0) {
		r = kv_fail(-EPROTO, "key vault file '%s': bad field 'master'", file);
		goto out;
	}
	*ret = root;
	root = NULL;
	if (ret_w)
		*ret_w = w;
	if (ret_sig)
		*ret_sig = sig;
	r = 0;
out:
	json_object_put(root);
	free(buf);
	return r;
}

static int kv_write(const vbk_kv *kv, json_object *root)
{
	const char *s;
	int r;

	s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s)
		return kv_fail(-ENOMEM, "cannot write key vault '%s': out of memory", kv->path);
	r = vbu_write_file_atomic(kv->file, s, strlen(s), 0600);
	if (r < 0)
		return kv_fail(r, "cannot write key vault file '%s': %s", kv->file,
			       vbu_strerror(-r));
	return 0;
}

/* A signed key vault binds " signed" into its master key's associated data too: removing the
 * signature (to have a command with the passphrase sign a changed file as if it were an old
 * unsigned one) makes the passphrase fail instead. */
static void master_aad(const char *id, int is_signed, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s v%d %s%s", VBK_KV_FORMAT_NAME, VBK_KV_FORMAT_VERSION, id,
		 is_signed ? " signed" : "");
}

static int kv_mutate(vbk_kv *kv, int (*fn)(vbk_kv *kv, json_object *root, void *arg), void *arg);
static void key_label(const vbk_kv *kv, const char *name, uint32_t version, vbk_key_type t,
		      const char *fpr, kv_label *l);
static int kek_private(const vbk_kv *kv, const kv_kek *k, json_object *v, uint8_t **ret,
		       size_t *ret_len);

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
static int signing_open(vbk_kv *kv, json_object *root, const uint8_t pub[KV_SIGN_PUB_LEN])
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
static int kv_sign_root(const vbk_kv *kv, json_object *root, uint64_t generation)
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

/* A file made before signatures, at its first unlock: every KEK version's public part and
 * fingerprint must match its private part (sealed under the passphrase, so nobody without it
 * can have added or changed one). Secrets cannot be checked that way (see vmbak-vault(5)). */
static int check_keys_match(const vbk_kv *kv, json_object *root)
{
	json_object *keys = jobj(root, "keys", json_type_object);
	int r = 0;

	json_object_object_foreach(keys, name, k)
	{
		json_object *vs = jobj(k, "versions", json_type_array);
		size_t n = json_object_array_length(vs);

		/* Token keys came after signatures: in an unsigned file, one was added by hand. */
		if (json_object_object_get_ex(k, "pkcs11", NULL)) {
			r = kv_fail(-EBADMSG,
				    "key '%s' in key vault '%s' is in a PKCS#11 token, which an "
				    "unsigned key vault cannot have: the file was changed without "
				    "its passphrase",
				    name, kv->path);
			break;
		}

		for (size_t i = 0; i < n && r == 0; i++) {
			json_object *v = json_object_array_get_idx(vs, i);
			uint8_t *pt = NULL, der[KV_PUBLIC_MAX], *pub = NULL;
			size_t pt_len = 0, der_len = 0, pub_len = 0;
			EVP_PKEY *pk = NULL;
			char fpr[VBK_FPR_MAX];
			kv_kek kek = {0};

			snprintf(kek.name, sizeof(kek.name), "%s", name);
			kek.version = (uint32_t)(i + 1);
			type_from_json(k, &kek.type);
			snprintf(kek.fingerprint, sizeof(kek.fingerprint), "%s",
				 jstr(v, "fingerprint"));
			r = kek_private(kv, &kek, v, &pt, &pt_len);
			if (r == -EUCLEAN) /* sealed with another fingerprint, or damaged */
				r = -EBADMSG;
			else if (r < 0)
				break;
			else if (kek.type == VBK_KEY_AES256) {
				if (pt_len != VBK_KEY_LEN || kv_fingerprint_aes(pt, fpr) < 0 ||
				    strcmp(fpr, kek.fingerprint) != 0)
					r = -EBADMSG;
			} else if (kv_rsa_load(pt, pt_len, 1, key_bits(kek.type), &pk) < 0 ||
				   kv_rsa_public_der(pk, &pub, &pub_len) < 0 ||
				   vbu_base64_decode(jstr(v, "public"), der, sizeof(der),
						     &der_len) < 0 ||
				   der_len != pub_len || memcmp(der, pub, der_len) != 0 ||
				   kv_fingerprint_rsa(der, der_len, fpr) < 0 ||
				   strcmp(fpr, kek.fingerprint) != 0) {
				r = -EBADMSG;
			}
			if (r == -EBADMSG)
				kv_fail(r,
					"key '%s' version %u in key vault '%s' does not match its "
					"private part: the file was changed without its passphrase",
					name, kek.version, kv->path);
			EVP_PKEY_free(pk);
			OPENSSL_free(pub);
			if (pt) {
				vbk_wipe(pt, pt_len);
				free(pt);
			}
		}
		if (r < 0)
			break;
	}
	return r;
}

struct migrate_op {
	const char *pass;
};

static int migrate_fn(vbk_kv *kv, json_object *root, void *arg)
{
	struct migrate_op *op = arg;
	vbk_wrapped_vaultkeys w;
	json_object *o;
	char aad[128];
	int r;

	r = check_keys_match(kv, root);
	if (r < 0)
		return r;
	/* The master key again, now bound to " signed". */
	master_aad(kv->id, 1, aad, sizeof(aad));
	r = vbk_vaultkeys_wrap(&kv->keys, op->pass, aad, strlen(aad), &w);
	if (r < 0)
		return kv_fail(r, "cannot sign key vault '%s': %s", kv->path, vbu_strerror(-r));
	o = json_object_new_object();
	if (jadd(root, "kdf", o) < 0 || jadd(o, "name", json_object_new_string("scrypt")) < 0 ||
	    jadd(o, "n", json_object_new_int64((int64_t)w.kdf.n)) < 0 ||
	    jadd(o, "r", json_object_new_int64(w.kdf.r)) < 0 ||
	    jadd(o, "p", json_object_new_int64(w.kdf.p)) < 0 ||
	    jadd_b64(o, "salt", w.kdf.salt, sizeof(w.kdf.salt)) < 0)
		return kv_fail(-ENOMEM, "out of memory");
	o = json_object_new_object();
	if (jadd(root, "master", o) < 0 || jadd_b64(o, "nonce", w.nonce, sizeof(w.nonce)) < 0 ||
	    jadd_b64(o, "ciphertext", w.ct, sizeof(w.ct)) < 0 ||
	    jadd_b64(o, "tag", w.tag, sizeof(w.tag)) < 0)
		return kv_fail(-ENOMEM, "out of memory");
	return 0;
}

int vbk_kv_signer(const vbk_kv *kv, uint8_t fpr[32], uint64_t *generation)
{
	if (!kv->is_signed)
		return 0;
	if (vbk_sha256(kv->sign_pub, KV_SIGN_PUB_LEN, fpr) < 0)
		return kv_fail(-EIO, "out of memory");
	*generation = kv->generation;
	return 1;
}

static char *join_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

int vbk_kv_init(const char *path, const char *pass)
{
	vbk_kv kv = {0};
	vbk_vaultkeys keys = {0};
	vbk_wrapped_vaultkeys w;
	json_object *root = NULL, *o;
	uint8_t u[16];
	char aad[128];
	int r, made_dir = 0;

	kv_clear_err();
	if (!path || !*path || !pass)
		return kv_fail(-EINVAL, "no key vault path or passphrase");
	if (mkdir(path, 0700) == 0) {
		made_dir = 1;
	} else if (errno != EEXIST) {
		return kv_fail(-errno, "cannot create key vault '%s': %s", path,
			       vbu_strerror(errno));
	} else {
		r = vbu_dir_is_empty(path);
		if (r < 0)
			return kv_fail(r, "cannot create key vault '%s': %s", path,
				       vbu_strerror(-r));
		if (r == 0)
			return kv_fail(-EEXIST,
				       "cannot create key vault '%s': directory exists "
				       "and is not empty",
				       path);
		/* An existing empty directory may be open to all: make it what mkdir makes. */
		if (chmod(path, 0700) < 0)
			return kv_fail(-errno, "cannot create key vault '%s': %s", path,
				       vbu_strerror(errno));
	}
	kv.path = (char *)path;
	kv.file = join_path(path, VBK_KV_FILE);
	if (!kv.file) {
		r = kv_fail(-ENOMEM, "cannot create key vault '%s': out of memory", path);
		goto out;
	}
	if ((r = vbk_random(u, sizeof(u))) < 0 || (r = vbk_vaultkeys_generate(&keys)) < 0) {
		r = kv_fail(r, "cannot create key vault '%s': no random bytes", path);
		goto out;
	}
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* a random (version 4) UUID */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	vbu_uuid_format(u, kv.id);
	memcpy(kv.keys.data_key, keys.data_key, VBK_KEY_LEN);
	memcpy(kv.keys.id_key, keys.id_key, VBK_KEY_LEN);
	if ((r = kv_ed25519_generate(kv.sign_seed, kv.sign_pub)) < 0) {
		r = kv_fail(r, "cannot create key vault '%s': no signing key", path);
		goto out;
	}
	master_aad(kv.id, 1, aad, sizeof(aad));
	r = vbk_vaultkeys_wrap(&keys, pass, aad, strlen(aad), &w);
	if (r < 0) {
		r = kv_fail(r, "cannot create key vault '%s': %s", path, vbu_strerror(-r));
		goto out;
	}
	root = json_object_new_object();
	r = -ENOMEM;
	if (!root || jadd(root, "format", json_object_new_string(VBK_KV_FORMAT_NAME)) < 0 ||
	    jadd(root, "version", json_object_new_int(VBK_KV_FORMAT_VERSION)) < 0 ||
	    jadd(root, "id", json_object_new_string(kv.id)) < 0 ||
	    jadd(root, "created", json_object_new_int64(vbu_now_ns() / 1000000000)) < 0)
		goto nomem;
	o = json_object_new_object();
	if (jadd(root, "kdf", o) < 0 || jadd(o, "name", json_object_new_string("scrypt")) < 0 ||
	    jadd(o, "n", json_object_new_int64((int64_t)w.kdf.n)) < 0 ||
	    jadd(o, "r", json_object_new_int64(w.kdf.r)) < 0 ||
	    jadd(o, "p", json_object_new_int64(w.kdf.p)) < 0 ||
	    jadd_b64(o, "salt", w.kdf.salt, sizeof(w.kdf.salt)) < 0)
		goto nomem;
	o = json_object_new_object();
	if (jadd(root, "master", o) < 0 || jadd_b64(o, "nonce", w.nonce, sizeof(w.nonce)) < 0 ||
	    jadd_b64(o, "ciphertext", w.ct, sizeof(w.ct)) < 0 ||
	    jadd_b64(o, "tag", w.tag, sizeof(w.tag)) < 0 ||
	    jadd(root, "keys", json_object_new_object()) < 0 ||
	    jadd(root, "secrets", json_object_new_object()) < 0)
		goto nomem;
	r = kv_sign_root(&kv, root, 1);
	if (r < 0) {
		r = kv_fail(r, "cannot create key vault '%s': cannot sign it", path);
		goto out;
	}
	r = kv_write(&kv, root);
	goto out;
nomem:
	r = kv_fail(-ENOMEM, "cannot create key vault '%s': out of memory", path);
out:
	if (r < 0 && made_dir) {
		if (kv.file)
			unlink(kv.file);
		rmdir(path);
	}
	vbk_vaultkeys_wipe(&keys);
	vbk_vaultkeys_wipe(&kv.keys);
	vbk_wipe(kv.sign_seed, sizeof(kv.sign_seed));
	json_object_put(root);
	free(kv.file);
	return r;
}

int vbk_kv_open(const char *path, vbk_kv **ret)
{
	kv_sig sig;
	vbk_kv *kv;
	int r;

	kv_clear_err();
	kv = vbk_secure_alloc(sizeof(*kv)); /* holds the key vault's keys (kv->keys) */
	if (!kv)
		return kv_fail(-ENOMEM, "cannot open key vault '%s': out of memory", path);
	kv->path = strdup(path);
	kv->file = join_path(path, VBK_KV_FILE);
	if (!kv->path || !kv->file) {
		r = kv_fail(-ENOMEM, "cannot open key vault '%s': out of memory", path);
		goto out;
	}
	r = kv_read(kv->path, kv->file, &kv->root, kv->id, NULL, &sig);
	if (r < 0)
		goto out;
	kv->is_signed = sig.is_signed;
	memcpy(kv->sign_pub, sig.pub, sizeof(sig.pub));
	kv->generation = sig.generation;
	*ret = kv;
	kv = NULL;
out:
	vbk_kv_close(kv);
	return r;
}

int vbk_kv_unlock(vbk_kv *kv, const char *pass)
{
	vbk_wrapped_vaultkeys w;
	struct migrate_op op = {.pass = pass};
	json_object *root = NULL;
	char id[VBK_KV_ID_LEN + 1], aad[128];
	kv_sig sig;
	int r;

	kv_clear_err();
	r = kv_read(kv->path, kv->file, &root, id, &w, &sig);
	if (r < 0)
		return r;
	if (strcmp(id, kv->id) != 0) {
		r = kv_fail(-ESTALE, "key vault '%s' was replaced while in use", kv->path);
		goto out;
	}
	if (kv->is_signed &&
	    (!sig.is_signed || CRYPTO_memcmp(sig.pub, kv->sign_pub, KV_SIGN_PUB_LEN) != 0)) {
		r = kv_fail(-EBADMSG, "key vault '%s' was replaced while in use", kv->path);
		goto out;
	}
	master_aad(kv->id, sig.is_signed, aad, sizeof(aad));
	r = vbk_vaultkeys_unwrap(&w, pass, aad, strlen(aad), &kv->keys);
	if (r == -ENOKEY && !sig.is_signed) {
		/* An unsigned file whose master key was bound to a signature: stripped. */
		master_aad(kv->id, 1, aad, sizeof(aad));
		if (vbk_vaultkeys_unwrap(&w, pass, aad, strlen(aad), &kv->keys) == 0) {
			vbk_vaultkeys_wipe(&kv->keys);
			r = kv_fail(-EBADMSG,
				    "key vault file '%s' has lost its signature: it was changed "
				    "without the key vault's passphrase",
				    kv->file);
			goto out;
		}
	}
	if (r == -ENOKEY) {
		r = kv_fail(r, "wrong passphrase for key vault '%s'", kv->path);
		goto out;
	}
	if (r < 0) {
		r = kv_fail(r, "cannot unlock key vault '%s': %s", kv->path, vbu_strerror(-r));
		goto out;
	}
	json_object_put(kv->root);
	kv->root = root;
	root = NULL;
	kv->is_signed = sig.is_signed;
	kv->generation = sig.generation;
	if (sig.is_signed) {
		/* The signing key is the owner's only if its private half opens under the
		 * passphrase: then the signature checked on reading covers everything else. */
		r = signing_open(kv, kv->root, sig.pub);
		if (r < 0) {
			vbk_vaultkeys_wipe(&kv->keys);
			r = kv_fail(-EBADMSG,
				    "key vault file '%s' does not verify: it was signed by another "
				    "key than its own, without the key vault's passphrase",
				    kv->file);
			goto out;
		}
		kv->unlocked = 1;
		r = 0;
		goto out;
	}
	/* Made before signatures: check what can be checked, then sign it (vmbak-vault(5)). */
	kv->unlocked = 1;
	r = kv_ed25519_generate(kv->sign_seed, kv->sign_pub);
	if (r == 0) {
		kv->can_sign = 1;
		r = kv_mutate(kv, migrate_fn, &op);
	}
	if (r < 0) {
		if (!*vbk_kv_errmsg())
			kv_fail(r, "cannot sign key vault '%s': %s", kv->path, vbu_strerror(-r));
		kv->unlocked = 0;
		kv->can_sign = 0;
		vbk_vaultkeys_wipe(&kv->keys);
		vbk_wipe(kv->sign_seed, sizeof(kv->sign_seed));
	}
out:
	json_object_put(root);
	return r;
}

int vbk_kv_unlocked(const vbk_kv *kv)
{
	return kv && kv->unlocked;
}

void vbk_kv_close(vbk_kv *kv)
{
	if (!kv)
		return;
	vbk_vaultkeys_wipe(&kv->keys);
	vbk_wipe(kv->sign_seed, sizeof(kv->sign_seed));
	json_object_put(kv->root);
	free(kv->path);
	free(kv->file);
	vbk_secure_free(kv, sizeof(*kv));
}

const char *vbk_kv_path(const vbk_kv *kv)
{
	return kv->path;
}

const char *vbk_kv_id(const vbk_kv *kv)
{
	return kv->id;
}

/* Changes the file under an exclusive lock: reads it again (another process may have added
 * versions since it was opened), lets fn change the fresh tree, writes it atomically. */
static int kv_mutate(vbk_kv *kv, int (*fn)(vbk_kv *kv, json_object *root, void *arg), void *arg)
{
	json_object *root = NULL;
	char id[VBK_KV_ID_LEN + 1], *lock = NULL;
	uint64_t gen;
	kv_sig sig;
	int fd = -1, r;

	/* Every change is signed: it needs the passphrase. */
	if (!kv->unlocked || !kv->can_sign)
		return kv_fail(-ENOKEY, "key vault '%s' is locked: a change needs its passphrase",
			       kv->path);
	lock = join_path(kv->path, VBK_KV_LOCK_FILE);
	if (!lock)
		return kv_fail(-ENOMEM, "out of memory");
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = kv_fail(-errno, "cannot lock key vault '%s': %s", kv->path,
			    vbu_strerror(errno));
		goto out;
	}
	while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		r = kv_fail(-errno, "cannot lock key vault '%s': %s", kv->path,
			    vbu_strerror(errno));
		goto out;
	}
	r = kv_read(kv->path, kv->file, &root, id, NULL, &sig);
	if (r < 0)
		goto out;
	if (strcmp(id, kv->id) != 0) {
		r = kv_fail(-ESTALE, "key vault '%s' was replaced while in use", kv->path);
		goto out;
	}
	if (kv->is_signed) {
		if (!sig.is_signed || CRYPTO_memcmp(sig.pub, kv->sign_pub, KV_SIGN_PUB_LEN) != 0) {
			r = kv_fail(-EBADMSG,
				    "key vault file '%s' was replaced while in use by one signed "
				    "with another key, or not signed",
				    kv->file);
			goto out;
		}
		if (sig.generation < kv->generation) {
			r = kv_fail(-ESTALE,
				    "key vault file '%s' went back from generation %llu to %llu "
				    "while in use: an older copy was put back",
				    kv->file, (unsigned long long)kv->generation,
				    (unsigned long long)sig.generation);
			goto out;
		}
	} else if (sig.is_signed) {
		r = kv_fail(-EBUSY,
			    "key vault '%s' was signed by another process meanwhile: "
			    "run the command again",
			    kv->path);
		goto out;
	}
	r = fn(kv, root, arg);
	if (r == 0 && kv->audit_ev)
		r = kv_audit_record(kv, root, kv->audit_ev);
	if (r < 0)
		goto out;
	gen = sig.generation + 1;
	r = kv_sign_root(kv, root, gen);
	if (r < 0) {
		r = kv_fail(r, "cannot sign key vault '%s': %s", kv->path, vbu_strerror(-r));
		if (kv->audit_ev)
			kv_audit_undone(kv, kv->audit_ev, r);
		goto out;
	}
	r = kv_write(kv, root);
	if (r < 0) {
		if (kv->audit_ev)
			kv_audit_undone(kv, kv->audit_ev, r);
		goto out;
	}
	json_object_put(kv->root);
	kv->root = root;
	root = NULL;
	kv->is_signed = 1;
	kv->generation = gen;
out:
	json_object_put(root);
	if (fd >= 0)
		close(fd); /* releases the lock */
	free(lock);
	return r;
}

/* ---- listings ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of the members of o, sorted; free() the array only. */
static int sorted_names(json_object *o, const char ***ret, size_t *ret_n)
{
	size_t n = (size_t)json_object_object_length(o), i = 0;
	const char **names = calloc(n ? n : 1, sizeof(*names));

	if (!names)
		return -ENOMEM;
	json_object_object_foreach(o, k, v)
	{
		(void)v;
		names[i++] = k;
	}
	qsort(names, n, sizeof(*names), name_cmp);
	*ret = names;
	*ret_n = n;
	return 0;
}

int vbk_kv_keys(const vbk_kv *kv, vbk_key_info **ret, size_t *ret_n)
{
	json_object *keys = jobj(kv->root, "keys", json_type_object), *k, *vs, *v;
	vbk_key_info *list = NULL;
	const char **names = NULL;
	size_t n = 0, i, j;
	int64_t x;
	int r;

	r = sorted_names(keys, &names, &n);
	if (r < 0)
		return kv_fail(r, "out of memory");
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		r = kv_fail(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		k = jobj(keys, names[i], json_type_object);
		snprintf(list[i].name, sizeof(list[i].name), "%s", names[i]);
		type_from_json(k, &list[i].type);
		jint(k, "created", 0, INT64_MAX, &list[i].created);
		vs = jobj(k, "versions", json_type_array);
		list[i].n_versions = json_object_array_length(vs);
		list[i].versions = calloc(list[i].n_versions, sizeof(*list[i].versions));
		if (!list[i].versions) {
			r = kv_fail(-ENOMEM, "out of memory");
			goto out;
		}
		for (j = 0; j < list[i].n_versions; j++) {
			v = json_object_array_get_idx(vs, j);
			list[i].versions[j].version = (uint32_t)(j + 1);
			jint(v, "created", 0, INT64_MAX, &x);
			list[i].versions[j].created = x;
			snprintf(list[i].versions[j].fingerprint, VBK_FPR_MAX, "%s",
				 jstr(v, "fingerprint"));
			version_state(v, &list[i].versions[j].state);
			snprintf(list[i].versions[j].pkcs11, sizeof(list[i].versions[j].pkcs11),
				 "%s", jstr(v, "pkcs11") ? jstr(v, "pkcs11") : "");
		}
	}
	*ret = list;
	*ret_n = n;
	list = NULL;
	r = 0;
out:
	vbk_key_list_free(list, n);
	free(names);
	return r;
}

void vbk_key_list_free(vbk_key_info *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].versions);
	free(list);
}

int vbk_kv_secrets(const vbk_kv *kv, vbk_secret_info **ret, size_t *ret_n)
{
	json_object *secrets = jobj(kv->root, "secrets", json_type_object), *s, *vs, *v, *k;
	vbk_secret_info *list = NULL;
	const char **names = NULL;
	size_t n = 0, i, j;
	kv_kek kek;
	int64_t x;
	int r;

	r = sorted_names(secrets, &names, &n);
	if (r < 0)
		return kv_fail(r, "out of memory");
	list = calloc(n ? n : 1, sizeof(*list));
	if (!list) {
		r = kv_fail(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		s = jobj(secrets, names[i], json_type_object);
		snprintf(list[i].name, sizeof(list[i].name), "%s", names[i]);
		vs = jobj(s, "versions", json_type_array);
		list[i].n_versions = json_object_array_length(vs);
		list[i].versions = calloc(list[i].n_versions, sizeof(*list[i].versions));
		if (!list[i].versions) {
			r = kv_fail(-ENOMEM, "out of memory");
			goto out;
		}
		for (j = 0; j < list[i].n_versions; j++) {
			vbk_secret_version *sv = &list[i].versions[j];

			v = json_object_array_get_idx(vs, j);
			sv->version = (uint32_t)(j + 1);
			jint(v, "created", 0, INT64_MAX, &x);
			sv->created = x;
			memset(&kek, 0, sizeof(kek));
			if (json_object_object_get_ex(v, "kek", &k) && k)
				kek_from_json(k, &kek);
			snprintf(sv->kek, sizeof(sv->kek), "%s", kek.name);
			sv->kek_version = kek.version;
			snprintf(sv->algorithm, sizeof(sv->algorithm), "%s", jstr(v, "algorithm"));
		}
	}
	*ret = list;
	*ret_n = n;
	list = NULL;
	r = 0;
out:
	vbk_secret_list_free(list, n);
	free(names);
	return r;
}

void vbk_secret_list_free(vbk_secret_info *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].versions);
	free(list);
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
		if ((r = kv_rsa_generate(key_bits(t), &pk)) < 0 ||
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
	type_from_json(k, &t);
	vs = jobj(k, "versions", json_type_array);
	n = json_object_array_length(vs);
	/* The version was made for n + 1 of the file as opened; renumber it if another writer
	 * got in between (its label binds the number, so only when still the same: else redo). */
	if (t != op->type || n + 1 != op->ret_version)
		return -EAGAIN;
	if (n >= VERSIONS_MAX)
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
			type_from_json(k, &op.type);
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
		json_object *root = NULL;
		char id[VBK_KV_ID_LEN + 1];
		if ((r = kv_read(kv->path, kv->file, &root, id, NULL, NULL)) < 0)
			return r;
		json_object_put(kv->root);
		kv->root = root;
		r = kv_fail(-EBUSY, "key '%s' is being changed by another process", name);
	}
	if (r < 0)
		return r;
	if (ret_version)
		*ret_version = op.ret_version;
	return 0;
}

int vbk_kv_key_create(vbk_kv *kv, const char *name, vbk_key_type type, uint32_t *ret_version)
{
	if (key_bits(type) == 0)
		return kv_fail(-EINVAL, "unknown key type");
	return key_add_version(kv, name, type, 1, NULL, ret_version);
}

int vbk_kv_key_create_p11(vbk_kv *kv, const char *name, vbk_key_type type, const char *uri,
			  uint32_t *ret_version)
{
	kv_clear_err();
	if (key_bits(type) == 0)
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
	type_from_json(k, &kek.type);
	snprintf(kek.fingerprint, sizeof(kek.fingerprint), "%s", jstr(v, "fingerprint"));
	kek.p11 = jstr(v, "pkcs11") != NULL;
	*ret = kek;
	return 0;
}

/* The private material of a KEK version: DER RSAPrivateKey or the AES key. */
static int kek_private(const vbk_kv *kv, const kv_kek *k, json_object *v, uint8_t **ret,
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
		    kv_rsa_load(der, n, 0, key_bits(k->type), &w.pkey) < 0 ||
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
	r = kek_private(kv, k, v, &pt, &pt_len);
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
		if (kv_rsa_load(pt, pt_len, 1, key_bits(k->type), &w.pkey) < 0) {
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

/* ---- secrets ---- */

int kv_secret_label(const vbk_kv *kv, const char *name, uint32_t version, const kv_kek *k,
		    kv_label *ret)
{
	kv_label l = {0};
	int r;

	kv_label_str(&l, "vmbak-keyvault-secret");
	kv_label_str(&l, kv->id);
	kv_label_str(&l, name);
	kv_label_u32(&l, version);
	kv_label_str(&l, k->name);
	kv_label_u32(&l, k->version);
	kv_label_str(&l, k->name[0] ? vbk_key_type_name(k->type) : "");
	kv_label_str(&l, k->fingerprint);
	kv_label_str(&l, kv_alg_for(k));
	r = kv_label_done(&l);
	if (r < 0) {
		kv_label_free(&l);
		return kv_fail(r, "out of memory");
	}
	*ret = l;
	return 0;
}

int kv_secret_find(const vbk_kv *kv, const char *name, uint32_t version, kv_kek *ret_kek,
		   kv_envelope *ret_env, uint32_t *ret_version)
{
	json_object *s = jobj(jobj(kv->root, "secrets", json_type_object), name, json_type_object);
	json_object *vs, *v, *k;
	kv_kek kek = {0};
	size_t n;
	int r;

	if (!s)
		return kv_fail(-ENOENT, "no secret '%s' in key vault '%s'", name, kv->path);
	vs = jobj(s, "versions", json_type_array);
	n = json_object_array_length(vs);
	if (version == 0)
		version = (uint32_t)n;
	if (version > n)
		return kv_fail(-ENOENT, "no version %u of secret '%s' in key vault '%s'", version,
			       name, kv->path);
	v = json_object_array_get_idx(vs, version - 1);
	if (json_object_object_get_ex(v, "kek", &k) && k) {
		kv_kek cur;

		kek_from_json(k, &kek);
		/* Where the KEK lives is the key's, not the secret's, to say. */
		kek.p11 = kv_kek_find(kv, kek.name, kek.version, &cur) == 0 && cur.p11;
		kv_clear_err();
	}
	if (ret_env) {
		r = kv_env_from_json(v, VBK_SECRET_MAX, ret_env);
		if (r < 0)
			return kv_fail(r, "key vault file '%s': bad secret '%s'", kv->file, name);
	}
	*ret_kek = kek;
	*ret_version = version;
	return 0;
}

static int usable_in(const vbk_kv *kv, json_object *root, const char *name, uint32_t version,
		     int wrap);

struct secret_op {
	const char *name;
	uint32_t version; /* the version the envelope was made for */
	kv_kek kek;
	const kv_envelope *env;
};

static int secret_op_fn(vbk_kv *kv, json_object *root, void *arg)
{
	struct secret_op *op = arg;
	json_object *secrets = jobj(root, "secrets", json_type_object), *s, *vs, *v, *k = NULL;

	s = jobj(secrets, op->name, json_type_object);
	if (!s) {
		s = json_object_new_object();
		if (!s || jadd(secrets, op->name, s) < 0 ||
		    jadd(s, "versions", json_object_new_array()) < 0)
			return kv_fail(-ENOMEM, "out of memory");
	}
	vs = jobj(s, "versions", json_type_array);
	if (json_object_array_length(vs) + 1 != op->version)
		return -EAGAIN;
	/* The KEK version may have been disabled since the file was opened. */
	if (op->kek.name[0] && usable_in(kv, root, op->kek.name, op->kek.version, 1) < 0)
		return -EKEYREVOKED;
	if (op->kek.name[0]) {
		k = json_object_new_object();
		if (!k || jadd(k, "name", json_object_new_string(op->kek.name)) < 0 ||
		    jadd(k, "version", json_object_new_int64(op->kek.version)) < 0 ||
		    jadd(k, "type", json_object_new_string(vbk_key_type_name(op->kek.type))) < 0 ||
		    jadd(k, "fingerprint", json_object_new_string(op->kek.fingerprint)) < 0) {
			json_object_put(k);
			return kv_fail(-ENOMEM, "out of memory");
		}
	}
	v = json_object_new_object();
	if (!v || json_object_array_add(vs, v) < 0) {
		json_object_put(v);
		json_object_put(k);
		return kv_fail(-ENOMEM, "out of memory");
	}
	if (jadd(v, "version", json_object_new_int64(op->version)) < 0 ||
	    jadd(v, "created", json_object_new_int64(vbu_now_ns() / 1000000000)) < 0 ||
	    json_object_object_add(v, "kek", k) < 0 ||
	    jadd(v, "algorithm", json_object_new_string(kv_alg_for(&op->kek))) < 0 ||
	    kv_env_to_json(op->env, v) < 0)
		return kv_fail(-ENOMEM, "out of memory");
	return 0;
}

int vbk_kv_secret_set(vbk_kv *kv, const char *name, const void *value, size_t len, const char *kek,
		      uint32_t *ret_version, uint32_t *ret_kek_version)
{
	struct secret_op op = {.name = name};
	vbk_audit_event ev = {.op = "secret-set", .key = kek, .secret = name};
	kv_wrapper w = {0};
	kv_envelope env = {0};
	kv_label l = {0};
	json_object *s;
	int r, tries;

	kv_clear_err();
	if (!vbu_name_valid(name))
		return kv_fail(-EINVAL, "invalid secret name '%s': use " VBK_KV_NAME_RULE, name);
	if (len == 0)
		return kv_fail(-EINVAL, "secret '%s' is empty", name);
	if (len > VBK_SECRET_MAX)
		return kv_fail(-EFBIG, "secret '%s' is larger than %u bytes", name, VBK_SECRET_MAX);
	for (tries = 0; tries < 5; tries++) {
		if (kek) {
			r = kv_kek_find(kv, kek, 0, &op.kek);
			if (r == 0)
				r = vbk_kv_key_usable(kv, kek, op.kek.version, 1);
			if (r < 0)
				goto out;
		}
		r = kv_wrapper_get(kv, &op.kek, 0, &w);
		if (r == -ENOKEY)
			r = kv_fail(r, "key vault '%s' is locked: a secret %s needs its passphrase",
				    kv->path,
				    kek ? "wrapped by an AES key" : "stored without a KEK");
		if (r < 0)
			goto out;
		s = jobj(jobj(kv->root, "secrets", json_type_object), name, json_type_object);
		op.version =
		    s ? (uint32_t)json_object_array_length(jobj(s, "versions", json_type_array)) + 1
		      : 1;
		if ((r = kv_secret_label(kv, name, op.version, &op.kek, &l)) < 0)
			goto out;
		r = kv_env_seal(&w, &l, value, len, &env);
		if (r < 0) {
			r = kv_fail(r, "cannot wrap secret '%s': %s", name, vbu_strerror(-r));
			goto out;
		}
		op.env = &env;
		ev.secret_version = op.version;
		ev.version = op.kek.version;
		kv->audit_ev = &ev;
		r = kv_mutate(kv, secret_op_fn, &op);
		kv->audit_ev = NULL;
		kv_wrapper_clear(&w);
		kv_env_clear(&env);
		kv_label_free(&l);
		if (r != -EAGAIN)
			break;
		/* Another writer added a version meanwhile: start again from the fresh file. */
		json_object *root = NULL;
		char id[VBK_KV_ID_LEN + 1];
		if ((r = kv_read(kv->path, kv->file, &root, id, NULL, NULL)) < 0)
			goto out;
		json_object_put(kv->root);
		kv->root = root;
		r = kv_fail(-EBUSY, "secret '%s' is being changed by another process", name);
	}
	if (r < 0)
		goto out;
	if (ret_version)
		*ret_version = op.version;
	if (ret_kek_version)
		*ret_kek_version = op.kek.version;
out:
	kv_wrapper_clear(&w);
	kv_env_clear(&env);
	kv_label_free(&l);
	return r;
}

int vbk_kv_secret_get(vbk_kv *kv, const char *name, uint32_t version, uint8_t **ret,
		      size_t *ret_len)
{
	kv_kek kek;
	kv_envelope env = {0};
	kv_wrapper w = {0};
	kv_label l = {0};
	uint32_t v;
	int r;

	kv_clear_err();
	if ((r = kv_secret_find(kv, name, version, &kek, &env, &v)) < 0)
		return r;
	if ((kek.name[0] && (r = vbk_kv_key_usable(kv, kek.name, kek.version, 0)) < 0) ||
	    (r = kv_wrapper_get(kv, &kek, 1, &w)) < 0 ||
	    (r = kv_secret_label(kv, name, v, &kek, &l)) < 0)
		goto out;
	r = kv_env_open(&w, &l, &env, ret, ret_len);
	if (r == -EBADMSG)
		r = kv_fail(r, "secret '%s' version %u in key vault '%s' is damaged", name, v,
			    kv->path);
	else if (r < 0)
		r = kv_fail(r, "cannot unwrap secret '%s': %s", name, vbu_strerror(-r));
out:
	kv_wrapper_clear(&w);
	kv_env_clear(&env);
	kv_label_free(&l);
	return r;
}

void vbk_secret_free(uint8_t *secret, size_t len)
{
	if (!secret)
		return;
	vbk_wipe(secret, len);
	free(secret);
}

/* ---- key states ---- */

int vbk_kv_key_usable(const vbk_kv *kv, const char *name, uint32_t version, int wrap)
{
	return usable_in(kv, kv->root, name, version, wrap);
}

/* The same against root (the file as read under the lock, in a kv_mutate). */
static int usable_in(const vbk_kv *kv, json_object *root, const char *name, uint32_t version,
		     int wrap)
{
	json_object *k = jobj(jobj(root, "keys", json_type_object), name, json_type_object);
	json_object *vs = k ? jobj(k, "versions", json_type_array) : NULL;
	vbk_key_state st = VBK_KEY_ENABLED;

	if (!k)
		return kv_fail(-ENOENT, "no key '%s' in key vault '%s'", name, kv->path);
	if (!vs || version == 0 || version > json_object_array_length(vs))
		return kv_fail(-ENOENT, "no version %u of key '%s' in key vault '%s'", version,
			       name, kv->path);
	version_state(json_object_array_get_idx(vs, version - 1), &st);
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
		    !k || kek_from_json(k, &kek) < 0)
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
	version_state(v, &cur);
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
