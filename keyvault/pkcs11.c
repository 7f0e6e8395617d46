/* pkcs11.c: KEKs in a PKCS#11 token, through p11-kit (see pkcs11.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "crypto.h"
#include "kv_internal.h"
#include "passphrase.h"
#include "pkcs11.h"
#include "util.h"

/* PKCS#11 3.0 names RFC 5649 CKM_AES_KEY_WRAP_KWP; 2.40 headers (p11-kit 0.24) lack it. */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif

#define CANDIDATES_MAX 32
#define SLOTS_MAX 64

struct vbk_p11_key {
	CK_FUNCTION_LIST **registered; /* p11-kit's registry, loaded */
	CK_FUNCTION_LIST *extra;       /* the module VMBAK_PKCS11_MODULE allows, loaded */
	CK_FUNCTION_LIST *mod;	       /* the module in use, initialised */
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE s;
	int have_session, logged_in;
	CK_OBJECT_HANDLE obj; /* the private (RSA) or secret (AES) key */
	CK_OBJECT_HANDLE pub; /* RSA public key object, when known */
	int have_pub;
	vbk_key_type type;
	size_t mod_len;	       /* RSA: modulus bytes */
	int raw_rsa;	       /* RSA: the token refused OAEP-SHA-256; use CKM_RSA_X_509 */
	CK_MECHANISM_TYPE kwp; /* AES */
	char token[33];	       /* the token's label, for messages */
};

static const char *rv_str(CK_RV rv)
{
	const char *s = p11_kit_strerror(rv);

	return s ? s : "unknown error";
}

/* ---- URIs ---- */

static int uri_chars_ok(const char *s)
{
	static const char extra[] = "-._~%:[]@!$'()*+,;=&/?";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return 0;
	}
	return 1;
}

/* No attribute twice: p11-kit keeps the last, which would hide what a reader of the file sees
 * first. */
static int uri_no_dups(const char *s)
{
	const char *names[64];
	size_t lens[64], n = 0;
	const char *p = s + strlen("pkcs11:");

	while (*p) {
		size_t len = strcspn(p, "=;?&");

		if (n == VBU_ARRAY_SIZE(names))
			return 0;
		for (size_t i = 0; i < n; i++)
			if (lens[i] == len && memcmp(names[i], p, len) == 0)
				return 0;
		names[n] = p;
		lens[n++] = len;
		p += strcspn(p, ";?&");
		if (*p)
			p++;
	}
	return 1;
}

static int uri_parse(const char *s, int stored, P11KitUri **ret)
{
	P11KitUri *u = NULL;
	CK_ATTRIBUTE *a;
	const char *mp, *mn;
	int r;

	if (!s || strlen(s) > VBK_P11_URI_MAX || strncmp(s, "pkcs11:", 7) != 0 ||
	    !uri_chars_ok(s) || !uri_no_dups(s))
		return kv_fail(-EINVAL,
			       "invalid PKCS#11 URI: want pkcs11:ATTR=VALUE;...[?module-name=NAME] "
			       "in at most %d printable characters, each attribute once",
			       VBK_P11_URI_MAX);
	u = p11_kit_uri_new();
	if (!u)
		return kv_fail(-ENOMEM, "out of memory");
	r = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, u);
	if (r != P11_KIT_URI_OK) {
		r = kv_fail(-EINVAL, "invalid PKCS#11 URI: %s", p11_kit_uri_message(r));
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(u)) {
		r = kv_fail(-EINVAL, "invalid PKCS#11 URI: an attribute vmbak does not know");
		goto out;
	}
	if (p11_kit_uri_get_pin_value(u) || p11_kit_uri_get_pin_source(u)) {
		r = kv_fail(-EINVAL,
			    "invalid PKCS#11 URI: no pin-value or pin-source: the PIN comes from "
			    "VMBAK_PKCS11_PIN_FILE, VMBAK_PKCS11_PIN or the terminal");
		goto out;
	}
	mp = p11_kit_uri_get_module_path(u);
	mn = p11_kit_uri_get_module_name(u);
	if ((mp && (mp[0] != '/' || strlen(mp) >= PATH_MAX)) ||
	    (mn && (!mn[0] || strspn(mn, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789._-") != strlen(mn)))) {
		r = kv_fail(-EINVAL, "invalid PKCS#11 URI: module-path must be absolute, "
				     "module-name a plain name");
		goto out;
	}
	a = p11_kit_uri_get_attribute(u, CKA_ID);
	if (stored) {
		CK_ATTRIBUTE *c = p11_kit_uri_get_attribute(u, CKA_CLASS);

		if (!a || a->ulValueLen != VBK_P11_ID_LEN || !c ||
		    c->ulValueLen != sizeof(CK_OBJECT_CLASS)) {
			r = kv_fail(-EINVAL, "invalid PKCS#11 URI of a key: id= and type= missing");
			goto out;
		}
	} else if (a || p11_kit_uri_get_attribute(u, CKA_CLASS)) {
		r = kv_fail(-EINVAL, "invalid PKCS#11 URI: id= and type= are chosen by vmbak, "
				     "name the token (token=, serial=) and the label (object=)");
		goto out;
	}
	*ret = u;
	u = NULL;
	r = 0;
out:
	p11_kit_uri_free(u);
	return r;
}

int vbk_p11_uri_check(const char *uri, int stored)
{
	P11KitUri *u = NULL;
	int r = uri_parse(uri, stored, &u);

	p11_kit_uri_free(u);
	return r;
}

/* ---- modules and tokens ---- */

static int same_file(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];

	return a && b && realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

static void fixed_str(const unsigned char *p, size_t n, char *out)
{
	while (n > 0 && p[n - 1] == ' ')
		n--;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* The modules the URI lets us load, by the rule of pkcs11.h. */
static int candidates(vbk_p11_key *k, P11KitUri *u, CK_FUNCTION_LIST **out, size_t *ret_n)
{
	const char *mp = p11_kit_uri_get_module_path(u), *mn = p11_kit_uri_get_module_name(u);
	const char *allow = getenv("VMBAK_PKCS11_MODULE");
	size_t n = 0;

	if (allow && allow[0] && allow[0] != '/')
		return kv_fail(-EINVAL, "VMBAK_PKCS11_MODULE must be an absolute path");
	k->registered = p11_kit_modules_load(NULL, 0);
	for (size_t i = 0; k->registered && k->registered[i] && n < CANDIDATES_MAX; i++) {
		CK_FUNCTION_LIST *m = k->registered[i];
		char *name = p11_kit_module_get_name(m), *file = p11_kit_module_get_filename(m);
		int ok = (!mn || (name && strcmp(name, mn) == 0)) && (!mp || same_file(mp, file));

		free(name);
		free(file);
		if (ok)
			out[n++] = m;
	}
	if (allow && allow[0] && (!mp || same_file(mp, allow)) && !mn) {
		/* Already registered under the same file: no second copy. */
		int dup = 0;
		for (size_t i = 0; i < n; i++) {
			char *file = p11_kit_module_get_filename(out[i]);
			dup |= same_file(file, allow);
			free(file);
		}
		if (!dup) {
			k->extra = p11_kit_module_load(allow, 0);
			if (!k->extra)
				return kv_fail(-EIO,
					       "cannot load PKCS#11 module '%s' (from "
					       "VMBAK_PKCS11_MODULE)",
					       allow);
			if (n < CANDIDATES_MAX)
				out[n++] = k->extra;
		}
	}
	if (n == 0) {
		if (mp)
			return kv_fail(
			    -EPERM,
			    "PKCS#11 module '%s' is not registered with p11-kit: register "
			    "it or allow it with VMBAK_PKCS11_MODULE=PATH",
			    mp);
		if (mn)
			return kv_fail(-EPERM,
				       "no PKCS#11 module named '%s' is registered with "
				       "p11-kit",
				       mn);
		return kv_fail(-ENODEV, "no PKCS#11 module is registered with p11-kit");
	}
	*ret_n = n;
	return 0;
}

/* Finds the one token the URI names among the allowed modules; k->mod is left initialised. */
static int find_token(vbk_p11_key *k, P11KitUri *u, const char *uri)
{
	CK_FUNCTION_LIST *cand[CANDIDATES_MAX];
	int inited[CANDIDATES_MAX] = {0};
	size_t n = 0, matches = 0;
	int r;

	r = candidates(k, u, cand, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		CK_SLOT_ID slots[SLOTS_MAX];
		CK_ULONG ns = SLOTS_MAX;
		CK_INFO info;

		if (p11_kit_module_initialize(cand[i]) != CKR_OK)
			continue;
		inited[i] = 1;
		if (cand[i]->C_GetInfo(&info) != CKR_OK ||
		    !p11_kit_uri_match_module_info(u, &info) ||
		    cand[i]->C_GetSlotList(CK_TRUE, slots, &ns) != CKR_OK)
			continue;
		for (CK_ULONG j = 0; j < ns && j < SLOTS_MAX; j++) {
			CK_TOKEN_INFO ti;
			CK_SLOT_INFO si;

			if (cand[i]->C_GetSlotInfo(slots[j], &si) != CKR_OK ||
			    cand[i]->C_GetTokenInfo(slots[j], &ti) != CKR_OK ||
			    !p11_kit_uri_match_slot_info(u, &si) ||
			    !p11_kit_uri_match_token_info(u, &ti) ||
			    !(ti.flags & CKF_TOKEN_INITIALIZED))
				continue;
			if (p11_kit_uri_get_slot_id(u) != (CK_SLOT_ID)-1 &&
			    p11_kit_uri_get_slot_id(u) != slots[j])
				continue;
			if (matches++ == 0) {
				k->mod = cand[i];
				k->slot = slots[j];
				fixed_str(ti.label, sizeof(ti.label), k->token);
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		if (inited[i] && (cand[i] != k->mod || matches != 1))
			p11_kit_module_finalize(cand[i]);
	if (matches != 1) {
		k->mod = NULL;
		if (matches == 0)
			return kv_fail(-ENODEV, "no PKCS#11 token matches '%s'", uri);
		return kv_fail(
		    -ENODEV,
		    "%zu PKCS#11 tokens match '%s': name one with token= or serial=", matches, uri);
	}
	return 0;
}

static int login(vbk_p11_key *k)
{
	vbk_passphrase_source src = {.env_file = "VMBAK_PKCS11_PIN_FILE",
				     .env_value = "VMBAK_PKCS11_PIN"};
	CK_TOKEN_INFO ti;
	char prompt[96], *pin = NULL;
	const char *from = NULL;
	CK_RV rv;
	int r;

	if ((rv = k->mod->C_GetTokenInfo(k->slot, &ti)) != CKR_OK)
		return kv_fail(-EIO, "PKCS#11 token '%s': %s", k->token, rv_str(rv));
	if (!(ti.flags & CKF_LOGIN_REQUIRED))
		return 0;
	if (ti.flags & CKF_USER_PIN_LOCKED)
		return kv_fail(-EACCES, "the PIN of PKCS#11 token '%s' is locked", k->token);
	if (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
		rv = k->mod->C_Login(k->s, CKU_USER, NULL, 0);
	} else {
		snprintf(prompt, sizeof(prompt), "PIN of PKCS#11 token '%s': ", k->token);
		src.prompt = prompt;
		r = vbk_passphrase_get(&src, &pin, &from);
		if (r == -ENOKEY) /* not the key vault's -ENOKEY (its passphrase) */
			return kv_fail(
			    -EACCES,
			    "PKCS#11 token '%s' needs its PIN: set VMBAK_PKCS11_PIN_FILE "
			    "or VMBAK_PKCS11_PIN, or run at a terminal",
			    k->token);
		if (r < 0)
			return kv_fail(r == -EINVAL || r == -EFBIG ? -EACCES : r,
				       "cannot read the PIN of PKCS#11 token '%s' from %s: %s",
				       k->token, from ? from : "its source",
				       r == -EINVAL  ? "it is empty"
				       : r == -EFBIG ? "it is too long"
						     : vbu_strerror(-r));
		rv = k->mod->C_Login(k->s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
		vbk_passphrase_free(pin);
	}
	switch (rv) {
	case CKR_OK:
		k->logged_in = 1;
		/* fallthrough */
	case CKR_USER_ALREADY_LOGGED_IN:
		return 0;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		return kv_fail(-EACCES, "wrong PIN for PKCS#11 token '%s'%s%s", k->token,
			       from ? " from " : "", from ? from : "");
	case CKR_PIN_LOCKED:
		return kv_fail(-EACCES, "the PIN of PKCS#11 token '%s' is locked", k->token);
	default:
		return kv_fail(-EIO, "cannot log in to PKCS#11 token '%s': %s", k->token,
			       rv_str(rv));
	}
}

static int session(vbk_p11_key *k, P11KitUri *u, const char *uri, int rw)
{
	CK_RV rv;
	int r;

	if ((r = find_token(k, u, uri)) < 0)
		return r;
	rv = k->mod->C_OpenSession(k->slot, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0), NULL,
				   NULL, &k->s);
	if (rv != CKR_OK)
		return kv_fail(-EIO, "cannot open a session with PKCS#11 token '%s': %s", k->token,
			       rv_str(rv));
	k->have_session = 1;
	return login(k);
}

void vbk_p11_close(vbk_p11_key *k)
{
	if (!k)
		return;
	if (k->logged_in)
		k->mod->C_Logout(k->s);
	if (k->have_session)
		k->mod->C_CloseSession(k->s);
	if (k->mod)
		p11_kit_module_finalize(k->mod);
	if (k->extra)
		p11_kit_module_release(k->extra);
	if (k->registered)
		p11_kit_modules_release(k->registered);
	free(k);
}

static int get_attr(vbk_p11_key *k, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, uint8_t *buf,
		    size_t cap, size_t *ret_len)
{
	CK_ATTRIBUTE a = {t, buf, cap};
	CK_RV rv = k->mod->C_GetAttributeValue(k->s, o, &a, 1);

	if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > cap)
		return kv_fail(-EIO, "PKCS#11 token '%s': cannot read a key attribute: %s",
			       k->token, rv == CKR_OK ? "too long" : rv_str(rv));
	*ret_len = a.ulValueLen;
	return 0;
}

/* The one object of class cls and id. */
static int find_object(vbk_p11_key *k, CK_OBJECT_CLASS cls, const void *id, size_t id_len,
		       CK_OBJECT_HANDLE *ret)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv;

	rv = k->mod->C_FindObjectsInit(k->s, t, VBU_ARRAY_SIZE(t));
	if (rv == CKR_OK) {
		rv = k->mod->C_FindObjects(k->s, h, 2, &n);
		k->mod->C_FindObjectsFinal(k->s);
	}
	if (rv != CKR_OK)
		return kv_fail(-EIO, "PKCS#11 token '%s': cannot search keys: %s", k->token,
			       rv_str(rv));
	if (n != 1)
		return n == 0 ? -ENOENT : -EEXIST;
	*ret = h[0];
	return 0;
}

static CK_MECHANISM_TYPE pick_kwp(vbk_p11_key *k)
{
	CK_MECHANISM_INFO mi;

	if (k->mod->C_GetMechanismInfo(k->slot, CKM_AES_KEY_WRAP_KWP, &mi) == CKR_OK &&
	    (mi.flags & CKF_WRAP) && (mi.flags & CKF_UNWRAP))
		return CKM_AES_KEY_WRAP_KWP;
	return CKM_AES_KEY_WRAP_PAD;
}

/* The start of vbk_p11_open and vbk_p11_generate: uri parsed (stored: as the key vault keeps
 * it) and a handle for a key of type t, without a session yet. */
static int key_new(const char *uri, int stored, vbk_key_type t, P11KitUri **ret_u,
		   vbk_p11_key **ret_k)
{
	P11KitUri *u = NULL;
	vbk_p11_key *k;
	int r;

	if ((r = uri_parse(uri, stored, &u)) < 0)
		return r;
	k = calloc(1, sizeof(*k));
	if (!k) {
		p11_kit_uri_free(u);
		return kv_fail(-ENOMEM, "out of memory");
	}
	k->type = t;
	*ret_u = u;
	*ret_k = k;
	return 0;
}

/* Their end: k to *ret when r is 0, else closed (session and module); u freed. Returns r. */
static int key_done(int r, vbk_p11_key *k, P11KitUri *u, vbk_p11_key **ret)
{
	if (r == 0)
		*ret = k;
	else
		vbk_p11_close(k);
	p11_kit_uri_free(u);
	return r;
}

int vbk_p11_open(const char *uri, vbk_key_type t, vbk_p11_key **ret)
{
	P11KitUri *u = NULL;
	vbk_p11_key *k = NULL;
	CK_ATTRIBUTE *id, *cls;
	CK_KEY_TYPE kt = 0;
	uint8_t n[1024];
	size_t len = 0;
	int r;

	if ((r = key_new(uri, 1, t, &u, &k)) < 0)
		return r;
	id = p11_kit_uri_get_attribute(u, CKA_ID);
	cls = p11_kit_uri_get_attribute(u, CKA_CLASS);
	if (*(CK_OBJECT_CLASS *)cls->pValue !=
	    (t == VBK_KEY_AES256 ? CKO_SECRET_KEY : CKO_PRIVATE_KEY)) {
		r = kv_fail(-EINVAL, "invalid PKCS#11 URI of a key: type= does not match the key");
		goto out;
	}
	if ((r = session(k, u, uri, 0)) < 0)
		goto out;
	r = find_object(k, *(CK_OBJECT_CLASS *)cls->pValue, id->pValue, id->ulValueLen, &k->obj);
	if (r == -ENOENT || r == -EEXIST) {
		r = kv_fail(-ENOENT, "%s key in PKCS#11 token '%s' (%s)",
			    r == -ENOENT ? "no such" : "more than one", k->token, uri);
		goto out;
	}
	if (r < 0 || (r = get_attr(k, k->obj, CKA_KEY_TYPE, (uint8_t *)&kt, sizeof(kt), &len)) < 0)
		goto out;
	if (kt != (t == VBK_KEY_AES256 ? CKK_AES : CKK_RSA)) {
		r = kv_fail(-EKEYREJECTED, "key in PKCS#11 token '%s' is not %s (%s)", k->token,
			    vbk_key_type_name(t), uri);
		goto out;
	}
	if (t == VBK_KEY_AES256) {
		k->kwp = pick_kwp(k);
	} else {
		if ((r = get_attr(k, k->obj, CKA_MODULUS, n, sizeof(n), &len)) < 0)
			goto out;
		while (len > 0 && n[0] == 0) /* a token may pad: count what counts */
			memmove(n, n + 1, --len);
		k->mod_len = len;
		if (len * 8 != (t == VBK_KEY_RSA4096 ? 4096u : 3072u)) {
			r = kv_fail(-EKEYREJECTED, "key in PKCS#11 token '%s' is not %s (%s)",
				    k->token, vbk_key_type_name(t), uri);
			goto out;
		}
	}
	r = 0;
out:
	return key_done(r, k, u, ret);
}

/* ---- making keys ---- */

static int rsa_spki(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, uint8_t **ret,
		    size_t *ret_len)
{
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *c = NULL;
	EVP_PKEY *pk = NULL;
	BIGNUM *bn = BN_bin2bn(n, (int)n_len, NULL), *be = BN_bin2bn(e, (int)e_len, NULL);
	int r = -EIO;

	if (!b || !bn || !be || !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be) ||
	    !(params = OSSL_PARAM_BLD_to_param(b)) ||
	    !(c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) ||
	    EVP_PKEY_fromdata_init(c) <= 0 ||
	    EVP_PKEY_fromdata(c, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	r = kv_rsa_public_der(pk, ret, ret_len);
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(c);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	BN_free(bn);
	BN_free(be);
	return r;
}

int vbk_p11_generate(const char *uri, vbk_key_type t, const char *name, uint32_t version,
		     vbk_p11_key **ret, char **ret_uri, uint8_t **ret_pub, size_t *ret_pub_len)
{
	char label[160];
	P11KitUri *u = NULL;
	vbk_p11_key *k = NULL;
	uint8_t id[VBK_P11_ID_LEN], n[1024], e[16], *pub = NULL;
	size_t n_len = 0, e_len = 0, pub_len = 0;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = t == VBK_KEY_RSA4096 ? 4096 : 3072, vlen = VBK_KEY_LEN;
	CK_BYTE e65537[] = {0x01, 0x00, 0x01};
	CK_OBJECT_CLASS cls = t == VBK_KEY_AES256 ? CKO_SECRET_KEY : CKO_PRIVATE_KEY;
	CK_MECHANISM mech = {t == VBK_KEY_AES256 ? CKM_AES_KEY_GEN : CKM_RSA_PKCS_KEY_PAIR_GEN,
			     NULL, 0};
	char *s = NULL;
	CK_RV rv;
	int r;

	if ((r = key_new(uri, 0, t, &u, &k)) < 0)
		return r;
	{
		CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(u, CKA_LABEL);
		int base = a ? (int)(a->ulValueLen > 128 ? 128 : a->ulValueLen) : (int)strlen(name);
		const char *bp = a ? (const char *)a->pValue : name;

		if (version > 1)
			snprintf(label, sizeof(label), "%.*s-v%u", base, bp, version);
		else
			snprintf(label, sizeof(label), "%.*s", base, bp);
	}
	if ((r = vbk_random(id, sizeof(id))) < 0 || (r = session(k, u, uri, 1)) < 0)
		goto out;
	CK_ATTRIBUTE common[] = {
	    {CKA_TOKEN, &yes, sizeof(yes)},
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_ID, id, sizeof(id)},
	};
	/* Every object: on the token, with its label and id; a secret one never leaves it. */
	/* clang-format off */
#define ON_TOKEN common[0], common[1], common[2]
#define KEPT_SECRET ON_TOKEN, {CKA_PRIVATE, &yes, sizeof(yes)}, {CKA_SENSITIVE, &yes, sizeof(yes)}, \
	{CKA_EXTRACTABLE, &no, sizeof(no)}
	CK_ATTRIBUTE priv[] = {
	    KEPT_SECRET,
	    {CKA_DECRYPT, &yes, sizeof(yes)},
	    {CKA_SIGN, &no, sizeof(no)},
	    {CKA_UNWRAP, &no, sizeof(no)},
	    {CKA_DERIVE, &no, sizeof(no)},
	};
	CK_ATTRIBUTE pubt[] = {
	    ON_TOKEN,
	    {CKA_ENCRYPT, &yes, sizeof(yes)},
	    {CKA_VERIFY, &no, sizeof(no)},
	    {CKA_WRAP, &no, sizeof(no)},
	    {CKA_MODULUS_BITS, &bits, sizeof(bits)},
	    {CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537)},
	};
	CK_ATTRIBUTE aes[] = {
	    KEPT_SECRET,
	    {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
	    {CKA_WRAP, &yes, sizeof(yes)},
	    {CKA_UNWRAP, &yes, sizeof(yes)},
	    {CKA_ENCRYPT, &no, sizeof(no)},
	    {CKA_DECRYPT, &no, sizeof(no)},
	    {CKA_SIGN, &no, sizeof(no)},
	    {CKA_VERIFY, &no, sizeof(no)},
	    {CKA_DERIVE, &no, sizeof(no)},
	};
#undef KEPT_SECRET
#undef ON_TOKEN
	/* clang-format on */
	if (t == VBK_KEY_AES256) {
		rv = k->mod->C_GenerateKey(k->s, &mech, aes, VBU_ARRAY_SIZE(aes), &k->obj);
		k->kwp = pick_kwp(k);
	} else {
		rv = k->mod->C_GenerateKeyPair(k->s, &mech, pubt, VBU_ARRAY_SIZE(pubt), priv,
					       VBU_ARRAY_SIZE(priv), &k->pub, &k->obj);
		k->have_pub = rv == CKR_OK;
	}
	if (rv != CKR_OK) {
		r = kv_fail(-EIO, "cannot make a %s key in PKCS#11 token '%s': %s",
			    vbk_key_type_name(t), k->token, rv_str(rv));
		goto out;
	}
	if (t != VBK_KEY_AES256) {
		if ((r = get_attr(k, k->pub, CKA_MODULUS, n, sizeof(n), &n_len)) < 0 ||
		    (r = get_attr(k, k->pub, CKA_PUBLIC_EXPONENT, e, sizeof(e), &e_len)) < 0)
			goto undo;
		EVP_PKEY *pk = NULL;
		if ((r = rsa_spki(n, n_len, e, e_len, &pub, &pub_len)) < 0 ||
		    (r = kv_rsa_load(pub, pub_len, 0, (unsigned)bits, &pk)) < 0) {
			r = kv_fail(-EIO, "PKCS#11 token '%s' made an RSA key vmbak cannot use",
				    k->token);
			goto undo;
		}
		EVP_PKEY_free(pk);
		while (n_len > 0 && n[0] == 0)
			memmove(n, n + 1, --n_len);
		k->mod_len = n_len;
	}
	/* The stored URI: the one given, with the object's label, class and id. */
	if (p11_kit_uri_set_attribute(u, &(CK_ATTRIBUTE){CKA_ID, id, sizeof(id)}) !=
		P11_KIT_URI_OK ||
	    p11_kit_uri_set_attribute(
		u, &(CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)}) != P11_KIT_URI_OK ||
	    p11_kit_uri_set_attribute(u, &(CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)}) !=
		P11_KIT_URI_OK ||
	    p11_kit_uri_format(u, P11_KIT_URI_FOR_ANY, &s) != P11_KIT_URI_OK ||
	    vbk_p11_uri_check(s, 1) < 0) {
		r = kv_fail(-EIO, "cannot name the new key in PKCS#11 token '%s'", k->token);
		goto undo;
	}
	*ret_uri = s;
	s = NULL;
	if (ret_pub) {
		*ret_pub = pub;
		*ret_pub_len = pub_len;
		pub = NULL;
	}
	r = 0;
	goto out;
undo:
	vbk_p11_destroy(k);
out:
	free(s);
	OPENSSL_free(pub);
	return key_done(r, k, u, ret);
}

int vbk_p11_destroy(vbk_p11_key *k)
{
	uint8_t id[VBK_P11_ID_LEN * 4];
	size_t len = 0;
	int r;

	if (!k->have_pub && k->type != VBK_KEY_AES256 &&
	    get_attr(k, k->obj, CKA_ID, id, sizeof(id), &len) == 0 &&
	    find_object(k, CKO_PUBLIC_KEY, id, len, &k->pub) == 0)
		k->have_pub = 1;
	if (k->have_pub)
		k->mod->C_DestroyObject(k->s, k->pub);
	k->have_pub = 0;
	r = k->mod->C_DestroyObject(k->s, k->obj) == CKR_OK ? 0 : -EIO;
	return r;
}

/* ---- operations ---- */

int vbk_p11_rsa_match(vbk_p11_key *k, const uint8_t *der, size_t der_len)
{
	EVP_PKEY *pk = NULL;
	BIGNUM *bn = NULL;
	uint8_t tok[1024], want[1024];
	size_t tl = 0;
	int wl, r = -EKEYREJECTED;

	if (get_attr(k, k->obj, CKA_MODULUS, tok, sizeof(tok), &tl) < 0)
		return -EIO;
	while (tl > 0 && tok[0] == 0)
		memmove(tok, tok + 1, --tl);
	if (kv_rsa_load(der, der_len, 0, (unsigned)(8 * k->mod_len), &pk) < 0 ||
	    !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &bn))
		goto out;
	wl = BN_bn2bin(bn, want);
	if (wl > 0 && (size_t)wl == tl && memcmp(want, tok, tl) == 0)
		r = 0;
out:
	ERR_clear_error();
	BN_free(bn);
	EVP_PKEY_free(pk);
	return r;
}

static int mgf1_xor(uint8_t *out, size_t out_len, const uint8_t *seed, size_t seed_len)
{
	uint8_t buf[1024 + 4], md[VBK_HASH_LEN];
	uint32_t c = 0;
	int r = 0;

	if (seed_len > 1024)
		return -EINVAL;
	memcpy(buf, seed, seed_len);
	for (size_t done = 0; done < out_len && r == 0; c++) {
		buf[seed_len] = (uint8_t)(c >> 24);
		buf[seed_len + 1] = (uint8_t)(c >> 16);
		buf[seed_len + 2] = (uint8_t)(c >> 8);
		buf[seed_len + 3] = (uint8_t)c;
		r = vbk_sha256(buf, seed_len + 4, md);
		for (size_t i = 0; i < VBK_HASH_LEN && done < out_len; i++)
			out[done++] ^= md[i];
	}
	vbk_wipe(md, sizeof(md));
	return r;
}

/* 0xff when a == b, else 0, without branches on the values. */
static uint8_t ct_eq(uint32_t a, uint32_t b)
{
	uint32_t x = a ^ b;

	return (uint8_t)(((x | (0u - x)) >> 31) - 1);
}

/* RFC 8017, 7.1.2 step 3 (EME-OAEP decoding, SHA-256 and MGF1-SHA-256, label lab) of the
 * em_len-byte em, in place; constant time up to the final result. */
int vbk_p11_oaep_decode(uint8_t *em, size_t em_len, const uint8_t lab[32], uint8_t *out,
			size_t *io_len)
{
	const size_t h = VBK_HASH_LEN;
	uint8_t *seed = em + 1, *db = em + 1 + h, good, found = 0, bad = 0, lhash[VBK_HASH_LEN];
	size_t db_len, idx = 0, m_len;

	if (em_len < 2 * h + 2)
		return -EBADMSG;
	db_len = em_len - h - 1;
	/* The OAEP label L is lab; DB starts with its hash. */
	if (vbk_sha256(lab, h, lhash) < 0 || mgf1_xor(seed, h, db, db_len) < 0 ||
	    mgf1_xor(db, db_len, seed, h) < 0)
		return -EIO;
	good = ct_eq(em[0], 0) & ct_eq((uint32_t)CRYPTO_memcmp(db, lhash, h), 0);
	for (size_t i = h; i < db_len; i++) {
		uint8_t is0 = ct_eq(db[i], 0), is1 = ct_eq(db[i], 1);
		uint8_t first = (uint8_t)(~found & is1);

		/* idx = i where the first 0x01 is */
		idx = (idx & ~(size_t)(int8_t)first) | (i & (size_t)(int8_t)first);
		bad |= (uint8_t)(~found & ~is0 & ~is1);
		found |= is1;
	}
	good &= found & (uint8_t)~bad;
	if (!good)
		return -EBADMSG;
	m_len = db_len - idx - 1;
	if (m_len > *io_len)
		return -EBADMSG;
	memcpy(out, db + idx + 1, m_len);
	*io_len = m_len;
	return 0;
}

static int decrypt_rv(vbk_p11_key *k, CK_RV rv)
{
	switch (rv) {
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
	case CKR_WRAPPED_KEY_INVALID:
	case CKR_WRAPPED_KEY_LEN_RANGE:
		return -EBADMSG;
	case CKR_USER_NOT_LOGGED_IN:
		return kv_fail(-EACCES, "PKCS#11 token '%s' refused: not logged in", k->token);
	default:
		return kv_fail(-EIO, "PKCS#11 token '%s' failed: %s", k->token, rv_str(rv));
	}
}

int vbk_p11_rsa_decrypt(vbk_p11_key *k, const uint8_t lab[32], const uint8_t *in, size_t len,
			uint8_t *out, size_t *io_len)
{
	CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, (void *)lab,
				      VBK_HASH_LEN};
	CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)}, raw = {CKM_RSA_X_509, NULL, 0};
	uint8_t em[1024];
	CK_ULONG n;
	CK_RV rv;
	int r;

	if (len != k->mod_len || k->mod_len > sizeof(em))
		return -EBADMSG;
	if (!k->raw_rsa) {
		rv = k->mod->C_DecryptInit(k->s, &oaep, k->obj);
		if (rv == CKR_OK) {
			n = *io_len;
			rv = k->mod->C_Decrypt(k->s, (CK_BYTE *)in, len, out, &n);
			if (rv != CKR_OK)
				return decrypt_rv(k, rv);
			*io_len = n;
			return 0;
		}
		if (rv != CKR_MECHANISM_INVALID && rv != CKR_MECHANISM_PARAM_INVALID &&
		    rv != CKR_ARGUMENTS_BAD)
			return decrypt_rv(k, rv);
		k->raw_rsa = 1;
	}
	rv = k->mod->C_DecryptInit(k->s, &raw, k->obj);
	if (rv == CKR_MECHANISM_INVALID || rv == CKR_KEY_FUNCTION_NOT_PERMITTED)
		return kv_fail(-EIO,
			       "PKCS#11 token '%s' does RSA-OAEP with SHA-256 neither itself nor "
			       "as raw RSA",
			       k->token);
	if (rv != CKR_OK)
		return decrypt_rv(k, rv);
	n = sizeof(em);
	rv = k->mod->C_Decrypt(k->s, (CK_BYTE *)in, len, em, &n);
	if (rv != CKR_OK)
		return decrypt_rv(k, rv);
	if (n > k->mod_len)
		return -EBADMSG;
	if (n < k->mod_len) { /* leading zero bytes left out */
		memmove(em + (k->mod_len - n), em, n);
		memset(em, 0, k->mod_len - n);
	}
	r = vbk_p11_oaep_decode(em, k->mod_len, lab, out, io_len);
	vbk_wipe(em, sizeof(em));
	return r;
}

/* The bytes wrapped with an AES key in the token travel as a session object of generic secret
 * bytes the token may hand back: the template of secret_object and of an unwrap. PKCS#11 takes
 * the values through pointers that are not const; they are never written. */
static CK_OBJECT_CLASS plain_cls = CKO_SECRET_KEY;
static CK_KEY_TYPE plain_type = CKK_GENERIC_SECRET;
static CK_BBOOL plain_yes = CK_TRUE, plain_no = CK_FALSE;
/* clang-format off */
#define PLAIN_SECRET_ATTRS                                                                         \
	{CKA_CLASS, &plain_cls, sizeof(plain_cls)},                                                \
	{CKA_KEY_TYPE, &plain_type, sizeof(plain_type)},                                           \
	{CKA_TOKEN, &plain_no, sizeof(plain_no)},                                                  \
	{CKA_SENSITIVE, &plain_no, sizeof(plain_no)},                                              \
	{CKA_EXTRACTABLE, &plain_yes, sizeof(plain_yes)}
/* clang-format on */

static int secret_object(vbk_p11_key *k, const uint8_t *value, size_t len, CK_OBJECT_HANDLE *ret)
{
	CK_ATTRIBUTE t[] = {PLAIN_SECRET_ATTRS, {CKA_VALUE, (void *)value, len}};
	CK_RV rv = k->mod->C_CreateObject(k->s, t, VBU_ARRAY_SIZE(t), ret);

	return rv == CKR_OK ? 0 : decrypt_rv(k, rv);
}

int vbk_p11_aes_kwp(vbk_p11_key *k, int enc, const uint8_t *in, size_t len, uint8_t *out,
		    size_t cap, size_t *ret_len)
{
	CK_MECHANISM mech = {k->kwp, NULL, 0};
	CK_ATTRIBUTE t[] = {PLAIN_SECRET_ATTRS};
	CK_OBJECT_HANDLE o;
	CK_ULONG n = cap;
	CK_RV rv;
	size_t got = 0;
	int r;

	if (len == 0 || len > 256)
		return -EINVAL;
	if (enc) {
		if ((r = secret_object(k, in, len, &o)) < 0)
			return r;
		rv = k->mod->C_WrapKey(k->s, &mech, k->obj, o, out, &n);
		k->mod->C_DestroyObject(k->s, o);
		if (rv != CKR_OK)
			return kv_fail(-EIO, "PKCS#11 token '%s' cannot wrap: %s", k->token,
				       rv_str(rv));
		*ret_len = n;
		return 0;
	}
	rv = k->mod->C_UnwrapKey(k->s, &mech, k->obj, (CK_BYTE *)in, len, t, VBU_ARRAY_SIZE(t), &o);
	if (rv != CKR_OK)
		return decrypt_rv(k, rv);
	r = get_attr(k, o, CKA_VALUE, out, cap, &got);
	k->mod->C_DestroyObject(k->s, o);
	if (r < 0)
		return r;
	*ret_len = got;
	return 0;
}

int vbk_p11_aes_kcv(vbk_p11_key *k, uint8_t out[32])
{
	static const uint8_t fixed[32] = "vmbak-keyvault pkcs11 aes check";
	uint8_t w[64];
	size_t n = 0;
	int r;

	r = vbk_p11_aes_kwp(k, 1, fixed, sizeof(fixed), w, sizeof(w), &n);
	if (r < 0)
		return r;
	/* RFC 5649 wraps 32 bytes into 40; a token whose mechanism pads otherwise (PKCS#11 2.40's
	 * CKM_AES_KEY_WRAP_PAD may be KW over PKCS#7 padding) is found out here, at create. */
	if (n != sizeof(fixed) + 8)
		return kv_fail(-EIO, "the AES key wrap of PKCS#11 token '%s' is not RFC 5649",
			       k->token);
	return vbk_sha256(w, n, out);
}
