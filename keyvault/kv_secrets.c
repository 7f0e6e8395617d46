/* kv_secrets.c: secrets: set (sealed under a KEK version or the key vault's own key), get, and
 * the listing of secrets. */
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

static int secret_entry(void *p, const char *name, json_object *o, size_t n_versions)
{
	vbk_secret_info *e = p;

	(void)o;
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->n_versions = n_versions;
	e->versions = calloc(n_versions, sizeof(*e->versions));
	return e->versions ? 0 : -ENOMEM;
}

static void secret_version(void *p, size_t j, json_object *v)
{
	vbk_secret_version *sv = &((vbk_secret_info *)p)->versions[j];
	json_object *k;
	kv_kek kek;
	int64_t x;

	sv->version = (uint32_t)(j + 1);
	jint(v, "created", 0, INT64_MAX, &x);
	sv->created = x;
	memset(&kek, 0, sizeof(kek));
	if (json_object_object_get_ex(v, "kek", &k) && k)
		kv_kek_from_json(k, &kek);
	snprintf(sv->kek, sizeof(sv->kek), "%s", kek.name);
	sv->kek_version = kek.version;
	snprintf(sv->algorithm, sizeof(sv->algorithm), "%s", jstr(v, "algorithm"));
}

static const kv_lister secret_lister = {
    sizeof(vbk_secret_info), offsetof(vbk_secret_info, versions), secret_entry, secret_version};

int vbk_kv_secrets(const vbk_kv *kv, vbk_secret_info **ret, size_t *ret_n)
{
	void *list;
	int r = kv_list(jobj(kv->root, "secrets", json_type_object), &secret_lister, &list, ret_n);

	if (r == 0)
		*ret = list;
	return r;
}

void vbk_secret_list_free(vbk_secret_info *list, size_t n)
{
	kv_list_free(&secret_lister, list, n);
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

		kv_kek_from_json(k, &kek);
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
	if (op->kek.name[0] && kv_usable_in(kv, root, op->kek.name, op->kek.version, 1) < 0)
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
		if ((r = kv_reread(kv, "secret", name)) < 0)
			goto out;
		r = -EBUSY;
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
