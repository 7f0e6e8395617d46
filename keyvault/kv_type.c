/* kv_type.c: the key vault's names of key types and key states, and the checks of the fields
 * that hold them (see kv_internal.h). A leaf of keyvault/: it calls nothing of the other key
 * vault files, so all of them (pkcs11.c too) can name types without a loop. */
#include <errno.h>
#include <string.h>

#include <json-c/json.h>

#include "crypto.h"
#include "json.h"
#include "kv.h"
#include "kv_internal.h"
#include "util.h"

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

unsigned kv_key_bits(vbk_key_type t)
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

int kv_type_from_json(json_object *o, vbk_key_type *ret)
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
	return kv_key_bits(k->type) / 8;
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
int kv_version_state(json_object *v, vbk_key_state *ret)
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
