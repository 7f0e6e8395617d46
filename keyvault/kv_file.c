/* kv_file.c: the key vault file (kv.h): the checks every field passes on reading, reading,
 * writing, and changing it under the lock (kv_mutate). Names of types and states: kv_type.c. */
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

/* ---- messages ---- */

const char *vbk_kv_errmsg(void)
{
	return vbu_errmsg();
}

/* ---- the file: checks ---- */

/* The "versions" of a key or a secret: an array of 1 to KV_VERSIONS_MAX. */
static int versions_of(json_object *o, json_object **ret, size_t *ret_n)
{
	json_object *vs = jobj(o, "versions", json_type_array);
	size_t n = vs ? json_object_array_length(vs) : 0;

	if (n == 0 || n > KV_VERSIONS_MAX)
		return -EPROTO;
	*ret = vs;
	*ret_n = n;
	return 0;
}

/* Version i + 1 of vs: an object numbered i + 1, with a creation time. */
static int version_at(json_object *vs, size_t i, json_object **ret)
{
	json_object *v = json_object_array_get_idx(vs, i);
	int64_t x;

	if (!json_object_is_type(v, json_type_object) ||
	    jint(v, "version", 1, KV_VERSIONS_MAX, &x) < 0 || (size_t)x != i + 1 ||
	    jint(v, "created", 0, INT64_MAX, &x) < 0)
		return -EPROTO;
	*ret = v;
	return 0;
}

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
	    kv_type_from_json(k, &t) < 0)
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
	if (versions_of(k, &vs, &n) < 0)
		return -EPROTO;
	for (i = 0; i < n; i++) {
		*what = "version";
		if (version_at(vs, i, &v) < 0)
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
		if (kv_version_state(v, NULL) < 0)
			return -EPROTO;
	}
	return 0;
}

int kv_kek_from_json(json_object *o, kv_kek *ret)
{
	const char *name = jstr(o, "name"), *fpr = jstr(o, "fingerprint");
	int64_t x;

	memset(ret, 0, sizeof(*ret));
	if (!vbu_name_valid(name) || jint(o, "version", 1, KV_VERSIONS_MAX, &x) < 0 ||
	    kv_type_from_json(o, &ret->type) < 0 || !kv_fpr_valid(fpr, ret->type))
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
	size_t n, i;
	const char *alg;

	*what = "versions";
	if (!vbu_name_valid(name) || !json_object_is_type(s, json_type_object))
		return -EPROTO;
	if (versions_of(s, &vs, &n) < 0)
		return -EPROTO;
	for (i = 0; i < n; i++) {
		*what = "version";
		if (version_at(vs, i, &v) < 0)
			return -EPROTO;
		*what = "kek";
		if (!json_object_object_get_ex(v, "kek", &k))
			return -EPROTO;
		memset(&kek, 0, sizeof(kek));
		if (k && kv_kek_from_json(k, &kek) < 0)
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
			return kv_fail(-EPROTO,
				       "key vault file '%s': bad field '%s' of secret '%s'", file,
				       what, vbu_name_valid(sname) ? sname : "(an invalid name)");
	}
	return check_signature(root, file, sig);
}

/* ---- the file: reading and writing ---- */

int kv_read(const char *path, const char *file, json_object **ret, char id[VBK_KV_ID_LEN + 1],
	    vbk_wrapped_vaultkeys *ret_w, kv_sig *ret_sig)
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

int kv_write(const vbk_kv *kv, json_object *root)
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
char *kv_join_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* Changes the file under an exclusive lock: reads it again (another process may have added
 * versions since it was opened), lets fn change the fresh tree, writes it atomically. */
int kv_mutate(vbk_kv *kv, int (*fn)(vbk_kv *kv, json_object *root, void *arg), void *arg)
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
	lock = kv_join_path(kv->path, VBK_KV_LOCK_FILE);
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

int kv_reread(vbk_kv *kv, const char *what, const char *name)
{
	json_object *root = NULL;
	char id[VBK_KV_ID_LEN + 1];
	int r = kv_read(kv->path, kv->file, &root, id, NULL, NULL);

	if (r < 0)
		return r;
	json_object_put(kv->root);
	kv->root = root;
	kv_fail(-EBUSY, "%s '%s' is being changed by another process", what, name);
	return 0;
}

/* ---- listings ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of the members of o, sorted; free() the array only. */
int kv_sorted_names(json_object *o, const char ***ret, size_t *ret_n)
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

int kv_list(json_object *section, const kv_lister *l, void **ret, size_t *ret_n)
{
	json_object *o, *vs;
	const char **names = NULL;
	uint8_t *list = NULL;
	size_t n = 0, nv;
	int r;

	r = kv_sorted_names(section, &names, &n);
	if (r < 0)
		return kv_fail(r, "out of memory");
	list = calloc(n ? n : 1, l->size);
	if (!list) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		o = jobj(section, names[i], json_type_object);
		vs = jobj(o, "versions", json_type_array);
		nv = json_object_array_length(vs);
		if ((r = l->entry(list + i * l->size, names[i], o, nv)) < 0)
			goto out;
		for (size_t j = 0; j < nv; j++)
			l->version(list + i * l->size, j, json_object_array_get_idx(vs, j));
	}
	*ret = list;
	*ret_n = n;
	list = NULL;
out:
	kv_list_free(l, list, n);
	free(names);
	return r < 0 ? kv_fail(r, "out of memory") : 0;
}

void kv_list_free(const kv_lister *l, void *list, size_t n)
{
	uint8_t *p = list;
	void *versions;

	if (!p)
		return;
	for (size_t i = 0; i < n; i++) {
		memcpy(&versions, p + i * l->size + l->versions_off, sizeof(versions));
		free(versions);
	}
	free(p);
}
