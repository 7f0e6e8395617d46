/* escrow.c: making, reading and unwrapping escrow blobs (see escrow.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "crypto.h"
#include "escrow.h"
#include "json.h"
#include "kv.h"
#include "kv_internal.h"
#include "seckind.h"
#include "util.h"

/* The outer payload: the packed inner envelope (4 + 512 + 12 + 16 bytes of header at most). */
#define PAYLOAD_MAX (VBK_SECRET_MAX + 4 + KV_WRAPPED_KEY_MAX + VBK_NONCE_LEN + VBK_TAG_LEN)
/* The smallest: a one-byte secret under the key vault's own key (60-byte wrap). */
#define PAYLOAD_MIN (4 + 60 + VBK_NONCE_LEN + VBK_TAG_LEN + 1)

struct vbk_escrow {
	char keyvault[VBK_KV_ID_LEN + 1];
	char secret[VBK_KV_NAME_MAX + 1];
	uint32_t secret_version;
	kv_kek kek;
	vbk_kind kind;
	kv_wrapper w;	  /* RSA public key, AES KEK or secrets key */
	uint8_t *payload; /* the stored secret version, packed */
	size_t payload_len;
};

static int escrow_label(const vbk_escrow_info *i, kv_label *ret)
{
	kv_label l = {0};
	int r;

	kv_label_str(&l, VBK_ESCROW_FORMAT_NAME);
	/* Version 1 (no kind) keeps the label it always had, so old blobs still unwrap. */
	kv_label_u32(&l, i->kind[0] ? VBK_ESCROW_FORMAT_VERSION : 1);
	if (i->kind[0])
		kv_label_str(&l, i->kind);
	kv_label_str(&l, i->vm);
	kv_label_str(&l, i->disk);
	kv_label_str(&l, i->rp);
	kv_label_str(&l, i->keyvault);
	kv_label_str(&l, i->secret);
	kv_label_u32(&l, i->secret_version);
	kv_label_str(&l, i->kek);
	kv_label_u32(&l, i->kek_version);
	kv_label_str(&l, i->kek_type);
	kv_label_str(&l, i->kek_fingerprint);
	kv_label_str(&l, i->algorithm);
	r = kv_label_done(&l);
	if (r < 0) {
		kv_label_free(&l);
		return r;
	}
	*ret = l;
	return 0;
}

int vbk_escrow_needs_unlock(const vbk_kv *kv, const char *secret)
{
	kv_kek kek;
	uint32_t v;
	int r;

	kv_clear_err();
	r = kv_secret_find(kv, secret, 0, &kek, NULL, &v);
	if (r < 0)
		return r;
	/* A key in a PKCS#11 token needs its PIN (AES), not the key vault's passphrase. */
	return !kek.name[0] || (kek.type == VBK_KEY_AES256 && !kek.p11);
}

void vbk_escrow_free(vbk_escrow *e)
{
	if (!e)
		return;
	kv_wrapper_clear(&e->w);
	free(e->payload);
	free(e);
}

int vbk_escrow_prepare(vbk_kv *kv, const char *secret, vbk_escrow **ret)
{
	vbk_escrow *e = NULL;
	kv_envelope env = {0};
	kv_wrapper priv = {0};
	kv_label l = {0};
	uint8_t *pt = NULL;
	size_t pt_len = 0;
	int r;

	kv_clear_err();
	e = calloc(1, sizeof(*e));
	if (!e)
		return kv_fail(-ENOMEM, "out of memory");
	r = kv_secret_find(kv, secret, 0, &e->kek, &env, &e->secret_version);
	if (r < 0)
		goto out;
	if (e->kek.name[0] && (r = vbk_kv_key_usable(kv, e->kek.name, e->kek.version, 1)) < 0) {
		if (r == -EKEYREVOKED)
			r = kv_fail(
			    r,
			    "secret '%s' version %u is wrapped by key '%s' version %u, which "
			    "is %s in key vault '%s': no new escrow blob is wrapped by it (set "
			    "the secret again with an enabled version)",
			    secret, e->secret_version, e->kek.name, e->kek.version,
			    strstr(vbk_kv_errmsg(), "retired") ? "retired" : "disabled",
			    vbk_kv_path(kv));
		goto out;
	}
	snprintf(e->keyvault, sizeof(e->keyvault), "%s", vbk_kv_id(kv));
	snprintf(e->secret, sizeof(e->secret), "%s", secret);
	r = kv_wrapper_get(kv, &e->kek, 0, &e->w);
	if (r == -ENOKEY)
		r = kv_fail(r,
			    "escrow of secret '%s' needs the passphrase of key vault '%s' (the "
			    "secret is %s)",
			    secret, vbk_kv_path(kv),
			    e->kek.name[0] ? "wrapped by an AES key" : "stored without a KEK");
	if (r < 0)
		goto out;
	/* An RSA key in a token would need its PIN to open: wrapping at ingest needs none. */
	if (vbk_kv_unlocked(kv) && !(e->kek.p11 && e->kek.type != VBK_KEY_AES256)) {
		/* Everything needed to open the version later is at hand: check it now, so a
		 * damaged secret is found before a point is made, not years later. An AES key in
		 * a token is open already (one login). */
		if ((!e->kek.p11 && (r = kv_wrapper_get(kv, &e->kek, 1, &priv)) < 0) ||
		    (r = kv_secret_label(kv, secret, e->secret_version, &e->kek, &l)) < 0)
			goto out;
		r = kv_env_open(e->kek.p11 ? &e->w : &priv, &l, &env, &pt, &pt_len);
		if (r < 0) {
			r = kv_fail(r,
				    "secret '%s' version %u in key vault '%s' does not unwrap: %s",
				    secret, e->secret_version, vbk_kv_path(kv),
				    r == -EBADMSG ? "it is damaged" : vbu_strerror(-r));
			goto out;
		}
	}
	r = kv_env_pack(&env, &e->payload, &e->payload_len);
	if (r < 0) {
		r = kv_fail(r, "out of memory");
		goto out;
	}
	*ret = e;
	e = NULL;
out:
	vbk_secret_free(pt, pt_len);
	kv_label_free(&l);
	kv_wrapper_clear(&priv);
	kv_env_clear(&env);
	vbk_escrow_free(e);
	return r;
}

void vbk_escrow_set_kind(vbk_escrow *e, vbk_kind kind)
{
	e->kind = kind;
}

void vbk_escrow_describe(const vbk_escrow *e, vbk_escrow_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->kind, sizeof(ret->kind), "%s", vbk_kind_name(e->kind));
	snprintf(ret->keyvault, sizeof(ret->keyvault), "%s", e->keyvault);
	snprintf(ret->secret, sizeof(ret->secret), "%s", e->secret);
	ret->secret_version = e->secret_version;
	snprintf(ret->kek, sizeof(ret->kek), "%s", e->kek.name);
	ret->kek_version = e->kek.version;
	snprintf(ret->kek_type, sizeof(ret->kek_type), "%s",
		 e->kek.name[0] ? vbk_key_type_name(e->kek.type) : "");
	snprintf(ret->kek_fingerprint, sizeof(ret->kek_fingerprint), "%s", e->kek.fingerprint);
	snprintf(ret->algorithm, sizeof(ret->algorithm), "%s", kv_alg_for(&e->kek));
}

int vbk_escrow_make(const vbk_escrow *e, const char *vm, const char *disk, const char *rp,
		    char **ret, size_t *ret_len)
{
	vbk_escrow_info info;
	kv_envelope env = {0};
	kv_label l = {0};
	json_object *o = NULL, *s, *k = NULL;
	const char *text;
	char *blob;
	size_t n;
	int r;

	kv_clear_err();
	if (!vbu_name_valid(vm) || !vbu_name_valid(disk) || !rp || !*rp ||
	    strlen(rp) >= VBK_ESCROW_RP_MAX)
		return kv_fail(-EINVAL, "cannot make an escrow blob: bad VM, disk or point name");
	vbk_escrow_describe(e, &info);
	snprintf(info.vm, sizeof(info.vm), "%s", vm);
	snprintf(info.disk, sizeof(info.disk), "%s", disk);
	snprintf(info.rp, sizeof(info.rp), "%s", rp);
	if ((r = escrow_label(&info, &l)) < 0 ||
	    (r = kv_env_seal(&e->w, &l, e->payload, e->payload_len, &env)) < 0)
		goto out;
	r = -ENOMEM;
	o = json_object_new_object();
	if (!o || vbu_json_add(o, "format", json_object_new_string(VBK_ESCROW_FORMAT_NAME)) < 0 ||
	    vbu_json_add(o, "version",
			 json_object_new_int(info.kind[0] ? VBK_ESCROW_FORMAT_VERSION : 1)) < 0 ||
	    (info.kind[0] && vbu_json_add(o, "kind", json_object_new_string(info.kind)) < 0) ||
	    vbu_json_add(o, "vm", json_object_new_string(vm)) < 0 ||
	    vbu_json_add(o, "disk", json_object_new_string(disk)) < 0 ||
	    vbu_json_add(o, "rp", json_object_new_string(rp)) < 0 ||
	    vbu_json_add(o, "keyvault", json_object_new_string(info.keyvault)) < 0)
		goto out;
	s = json_object_new_object();
	if (vbu_json_add(o, "secret", s) < 0 ||
	    vbu_json_add(s, "name", json_object_new_string(info.secret)) < 0 ||
	    vbu_json_add(s, "version", json_object_new_int64(info.secret_version)) < 0)
		goto out;
	if (info.kek[0]) {
		k = json_object_new_object();
		if (!k || vbu_json_add(k, "name", json_object_new_string(info.kek)) < 0 ||
		    vbu_json_add(k, "version", json_object_new_int64(info.kek_version)) < 0 ||
		    vbu_json_add(k, "type", json_object_new_string(info.kek_type)) < 0 ||
		    vbu_json_add(k, "fingerprint", json_object_new_string(info.kek_fingerprint)) <
			0) {
			json_object_put(k);
			goto out;
		}
	}
	if (json_object_object_add(o, "kek", k) < 0) {
		json_object_put(k);
		goto out;
	}
	if (vbu_json_add(o, "algorithm", json_object_new_string(info.algorithm)) < 0 ||
	    kv_env_to_json(&env, o) < 0)
		goto out;
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text)
		goto out;
	n = strlen(text);
	blob = malloc(n + 2);
	if (!blob)
		goto out;
	memcpy(blob, text, n);
	blob[n++] = '\n';
	blob[n] = '\0';
	*ret = blob;
	*ret_len = n;
	r = 0;
out:
	if (r < 0)
		kv_fail(r, "cannot make the escrow blob of disk '%s': %s", disk, vbu_strerror(-r));
	json_object_put(o);
	kv_env_clear(&env);
	kv_label_free(&l);
	return r;
}

/* ---- reading ---- */

/* A printable string field; a name when name is set. */
static int copy_str(json_object *o, const char *key, char *out, size_t cap, int name)
{
	const char *s = vbu_json_str(o, key);

	if (!s || (name && !vbu_name_valid(s)))
		return -EPROTO;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			return -EPROTO;
	return vbu_json_copy_str(o, key, out, cap);
}

/* A version number: 1 to UINT32_MAX. */
static int get_u32(json_object *o, const char *key, uint32_t *ret)
{
	int64_t v;
	int r = vbu_json_int(o, key, 1, UINT32_MAX, &v);

	if (r == 0)
		*ret = (uint32_t)v;
	return r;
}

/* Only the fields named may be present. */
static int only_fields(json_object *o, const char *const *names, size_t n)
{
	json_object_object_foreach(o, key, val)
	{
		size_t i;

		(void)val;
		for (i = 0; i < n; i++)
			if (strcmp(key, names[i]) == 0)
				break;
		if (i == n)
			return -EPROTO;
	}
	return 0;
}

static int parse(const char *blob, size_t len, vbk_escrow_info *ret, kv_envelope *ret_env)
{
	static const char *const top[] = {
	    "format", "version",   "vm",	  "disk",  "rp",  "keyvault",	"secret",
	    "kek",    "algorithm", "wrapped_key", "nonce", "tag", "ciphertext", "kind"};
	static const char *const sec[] = {"name", "version"};
	static const char *const kek[] = {"name", "version", "type", "fingerprint"};
	vbk_escrow_info i;
	json_object *o = NULL, *j, *s, *k;
	enum json_tokener_error jerr;
	json_tokener *tok = NULL;
	vbk_key_type t;
	kv_kek kk = {0};
	kv_envelope env = {0};
	int64_t ver;
	int r = -EPROTO;

	memset(&i, 0, sizeof(i));
	if (len == 0 || len > VBK_ESCROW_MAX || memchr(blob, '\0', len))
		return kv_fail(-EPROTO, "not an escrow blob");
	tok = json_tokener_new();
	if (!tok)
		return kv_fail(-ENOMEM, "out of memory");
	o = json_tokener_parse_ex(tok, blob, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!o || jerr != json_tokener_success || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "format", &j) ||
	    !json_object_is_type(j, json_type_string) ||
	    strcmp(json_object_get_string(j), VBK_ESCROW_FORMAT_NAME) != 0) {
		r = kv_fail(-EPROTO, "not an escrow blob");
		goto out;
	}
	/* Only blanks may follow the document. */
	for (size_t p = json_tokener_get_parse_end(tok); p < len; p++)
		if (blob[p] != ' ' && blob[p] != '\n' && blob[p] != '\t' && blob[p] != '\r')
			goto bad;
	if (!json_object_object_get_ex(o, "version", &j) || !json_object_is_type(j, json_type_int))
		goto bad;
	ver = json_object_get_int64(j);
	if (ver < 1 || ver > VBK_ESCROW_FORMAT_VERSION) {
		r = kv_fail(-EPROTONOSUPPORT,
			    "escrow blob has format version %lld; this build reads 1 to %d",
			    (long long)ver, VBK_ESCROW_FORMAT_VERSION);
		goto out;
	}
	/* Version 2 says the secret's kind; version 1 has none. */
	if (ver == 1) {
		if (json_object_object_get_ex(o, "kind", NULL))
			goto bad;
	} else {
		vbk_kind kind;

		if (copy_str(o, "kind", i.kind, sizeof(i.kind), 0) < 0 ||
		    vbk_kind_parse(i.kind, &kind) < 0)
			goto bad;
	}
	if (only_fields(o, top, VBU_ARRAY_SIZE(top)) < 0 ||
	    copy_str(o, "vm", i.vm, sizeof(i.vm), 1) < 0 ||
	    copy_str(o, "disk", i.disk, sizeof(i.disk), 1) < 0 ||
	    copy_str(o, "rp", i.rp, sizeof(i.rp), 0) < 0 || !i.rp[0] ||
	    copy_str(o, "keyvault", i.keyvault, sizeof(i.keyvault), 0) < 0 ||
	    strlen(i.keyvault) != VBK_KV_ID_LEN ||
	    copy_str(o, "algorithm", i.algorithm, sizeof(i.algorithm), 0) < 0)
		goto bad;
	if (!json_object_object_get_ex(o, "secret", &s) ||
	    !json_object_is_type(s, json_type_object) ||
	    only_fields(s, sec, VBU_ARRAY_SIZE(sec)) < 0 ||
	    copy_str(s, "name", i.secret, sizeof(i.secret), 1) < 0 ||
	    get_u32(s, "version", &i.secret_version) < 0)
		goto bad;
	if (!json_object_object_get_ex(o, "kek", &k))
		goto bad;
	if (k) {
		if (!json_object_is_type(k, json_type_object) ||
		    only_fields(k, kek, VBU_ARRAY_SIZE(kek)) < 0 ||
		    copy_str(k, "name", i.kek, sizeof(i.kek), 1) < 0 ||
		    get_u32(k, "version", &i.kek_version) < 0 ||
		    copy_str(k, "type", i.kek_type, sizeof(i.kek_type), 0) < 0 ||
		    vbk_key_type_parse(i.kek_type, &t) < 0 ||
		    copy_str(k, "fingerprint", i.kek_fingerprint, sizeof(i.kek_fingerprint), 0) < 0)
			goto bad;
		snprintf(kk.name, sizeof(kk.name), "%s", i.kek);
		kk.type = t;
	}
	if (strcmp(i.algorithm, kv_alg_for(&kk)) != 0)
		goto bad;
	if (kk.name[0] && !kv_fpr_valid(i.kek_fingerprint, kk.type))
		goto bad;
	/* The binary fields too, so a blob with one of them missing, empty or of the wrong size
	 * is refused before any passphrase is asked. */
	if (kv_env_from_json(o, PAYLOAD_MAX, &env) < 0 ||
	    env.wrapped_len != kv_wrapped_len(&kk) || env.ct_len < PAYLOAD_MIN)
		goto bad;
	if (ret_env) {
		*ret_env = env;
		memset(&env, 0, sizeof(env));
	}
	*ret = i;
	r = 0;
	goto out;
bad:
	r = kv_fail(-EPROTO, "malformed escrow blob");
out:
	kv_env_clear(&env);
	json_tokener_free(tok);
	json_object_put(o);
	return r;
}

int vbk_escrow_parse(const char *blob, size_t len, vbk_escrow_info *ret)
{
	kv_clear_err();
	return parse(blob, len, ret, NULL);
}

int vbk_escrow_unwrap(vbk_kv *kv, const char *blob, size_t len, vbk_escrow_info *ret_info,
		      uint8_t **ret, size_t *ret_len)
{
	vbk_escrow_info i;
	kv_envelope outer = {0}, inner = {0};
	kv_wrapper w = {0};
	kv_label l = {0};
	kv_kek k = {0};
	vbk_key_type t;
	uint8_t *payload = NULL, *secret = NULL;
	size_t payload_len = 0, secret_len = 0;
	int r;

	kv_clear_err();
	r = parse(blob, len, &i, &outer);
	if (r < 0)
		return r;
	if (strcmp(i.keyvault, vbk_kv_id(kv)) != 0) {
		r = kv_fail(-EXDEV, "escrow blob belongs to key vault %s, not to '%s' (%s)",
			    i.keyvault, vbk_kv_path(kv), vbk_kv_id(kv));
		goto out;
	}
	if (!vbk_kv_unlocked(kv)) {
		r = kv_fail(-ENOKEY, "key vault '%s' is locked", vbk_kv_path(kv));
		goto out;
	}
	if (i.kek[0]) {
		vbk_key_type_parse(i.kek_type, &t);
		snprintf(k.name, sizeof(k.name), "%s", i.kek);
		k.version = i.kek_version;
		k.type = t;
		snprintf(k.fingerprint, sizeof(k.fingerprint), "%s", i.kek_fingerprint);
		r = vbk_kv_key_usable(kv, k.name, k.version, 0);
		if (r < 0 && r != -ENOENT) /* a missing version: kv_wrapper_get says so */
			goto out;
	}
	r = kv_wrapper_get(kv, &k, 1, &w);
	if (r == -EKEYREJECTED)
		r = kv_fail(-EBADMSG,
			    "escrow blob names key '%s' version %u with another type or "
			    "fingerprint than key vault '%s' holds",
			    i.kek, i.kek_version, vbk_kv_path(kv));
	if (r < 0)
		goto out;
	if ((r = escrow_label(&i, &l)) < 0)
		goto out;
	r = kv_env_open(&w, &l, &outer, &payload, &payload_len);
	kv_label_free(&l);
	if (r >= 0)
		r = kv_env_unpack(payload, payload_len, &inner);
	if (r >= 0)
		r = kv_secret_label(kv, i.secret, i.secret_version, &k, &l);
	if (r >= 0)
		r = kv_env_open(&w, &l, &inner, &secret, &secret_len);
	if (r == -EBADMSG) {
		r = kv_fail(r, "escrow blob does not verify: it was altered or damaged");
		goto out;
	}
	if (r < 0) {
		r = kv_fail(r, "cannot unwrap escrow blob: %s", vbu_strerror(-r));
		goto out;
	}
	if (ret_info)
		*ret_info = i;
	*ret = secret;
	*ret_len = secret_len;
	secret = NULL;
out:
	vbk_secret_free(secret, secret_len);
	vbk_secret_free(payload, payload_len);
	kv_env_clear(&outer);
	kv_env_clear(&inner);
	kv_wrapper_clear(&w);
	kv_label_free(&l);
	return r;
}

/* ---- rewrapping ---- */

int vbk_escrow_rewrap(vbk_kv *kv, const char *blob, size_t len, const char *to,
		      vbk_escrow_info *ret_old, vbk_escrow_info *ret_new, char **ret,
		      size_t *ret_len)
{
	vbk_escrow_info i, n;
	vbk_escrow e = {0};
	kv_envelope env = {0};
	kv_label l = {0};
	uint8_t *secret = NULL;
	size_t secret_len = 0;
	const char *target;
	int r;

	kv_clear_err();
	r = vbk_escrow_unwrap(kv, blob, len, &i, &secret, &secret_len);
	if (r < 0)
		return r;
	target = to ? to : i.kek;
	if (!*target) {
		r = kv_fail(
		    -EINVAL,
		    "escrow blob of secret '%s' has no KEK (it is under the key vault's own "
		    "key): name one to wrap it with",
		    i.secret);
		goto out;
	}
	r = kv_kek_find(kv, target, 0, &e.kek);
	if (r == 0)
		r = vbk_kv_key_usable(kv, target, e.kek.version, 1);
	if (r < 0)
		goto out;
	if (strcmp(e.kek.name, i.kek) == 0 && e.kek.version == i.kek_version) {
		r = -EALREADY;
		goto out;
	}
	snprintf(e.keyvault, sizeof(e.keyvault), "%s", vbk_kv_id(kv));
	snprintf(e.secret, sizeof(e.secret), "%s", i.secret);
	e.secret_version = i.secret_version;
	if (i.kind[0] && vbk_kind_parse(i.kind, &e.kind) < 0) {
		r = kv_fail(-EPROTO, "escrow blob has an unknown kind '%s'", i.kind);
		goto out;
	}
	/* The inner envelope again, as the key vault would store the same secret version under
	 * the new KEK version (its label binds the secret's name and version and the KEK), then
	 * the blob around it: same VM, disk, point, kind and secret; only the KEK differs. */
	if ((r = kv_wrapper_get(kv, &e.kek, 0, &e.w)) < 0 ||
	    (r = kv_secret_label(kv, i.secret, i.secret_version, &e.kek, &l)) < 0)
		goto out;
	r = kv_env_seal(&e.w, &l, secret, secret_len, &env);
	if (r == 0)
		r = kv_env_pack(&env, &e.payload, &e.payload_len);
	if (r < 0) {
		r = kv_fail(r, "cannot wrap secret '%s': %s", i.secret, vbu_strerror(-r));
		goto out;
	}
	r = vbk_escrow_make(&e, i.vm, i.disk, i.rp, ret, ret_len);
	if (r < 0)
		goto out;
	vbk_escrow_describe(&e, &n);
	snprintf(n.vm, sizeof(n.vm), "%s", i.vm);
	snprintf(n.disk, sizeof(n.disk), "%s", i.disk);
	snprintf(n.rp, sizeof(n.rp), "%s", i.rp);
	if (ret_old)
		*ret_old = i;
	if (ret_new)
		*ret_new = n;
out:
	if (r == -EALREADY && ret_old)
		*ret_old = i;
	vbk_secret_free(secret, secret_len);
	kv_wrapper_clear(&e.w);
	free(e.payload); /* ciphertext: nothing to wipe */
	kv_env_clear(&env);
	kv_label_free(&l);
	return r;
}
