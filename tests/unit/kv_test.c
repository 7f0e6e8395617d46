/* kv_test.c: keyvault/kv.c, kv_file.c, kv_keys.c, kv_secrets.c, kv_wrap.c
 * and escrow.c: key vault, keys, secrets, escrow blobs. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "escrow.h"
#include "hdrcheck.h"
#include "kv.h"
#include "seckind.h"
#include "file.h"
#include "util.h"
#include "vaultkey.h"
#include "unit.h"

static char tmpdir[PATH_MAX];
static char kvpath[PATH_MAX + 8], kv2path[PATH_MAX + 8];

static const char pass[] = "correct horse battery staple";
static const char value1[] = "luks passphrase one";
static const char value2[] = "luks passphrase two\n";

static void test_types(void)
{
	vbk_key_type t;

	CHECK_EQ_INT(vbk_key_type_parse("rsa-3072", &t), 0);
	CHECK_EQ_INT(t, VBK_KEY_RSA3072);
	CHECK_EQ_INT(vbk_key_type_parse("rsa-4096", &t), 0);
	CHECK_EQ_INT(vbk_key_type_parse("aes-256", &t), 0);
	CHECK_EQ_INT(t, VBK_KEY_AES256);
	CHECK_EQ_INT(vbk_key_type_parse("rsa-1024", &t), -EPERM);
	CHECK_EQ_INT(vbk_key_type_parse("rsa-2048", &t), -EPERM);
	CHECK_EQ_INT(vbk_key_type_parse("aes-128", &t), -EPERM);
	CHECK_EQ_INT(vbk_key_type_parse("rsa-3071x", &t), -EINVAL);
	CHECK_EQ_INT(vbk_key_type_parse("dsa-3072", &t), -EINVAL);
	CHECK_EQ_INT(vbk_key_type_parse("", &t), -EINVAL);
	CHECK_EQ_STR(vbk_key_type_name(VBK_KEY_RSA4096), "rsa-4096");
	CHECK(vbu_name_valid("kek-1.a_b"));
	CHECK(!vbu_name_valid(".x"));
	CHECK(!vbu_name_valid("a/b"));
	CHECK(!vbu_name_valid(""));
}

static void test_init_unlock(void)
{
	vbk_kv *kv = NULL;
	struct stat st;
	char file[PATH_MAX + 32];

	CHECK_EQ_INT(vbk_kv_init(kvpath, pass), 0);
	CHECK_EQ_INT(vbk_kv_init(kvpath, pass), -EEXIST);
	snprintf(file, sizeof(file), "%s/%s", kvpath, VBK_KV_FILE);
	CHECK_EQ_INT(stat(file, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0600);
	CHECK_EQ_INT(stat(kvpath, &st), 0);
	CHECK_EQ_INT(st.st_mode & 0777, 0700);
	CHECK_EQ_INT(vbk_kv_open(kvpath, &kv), 0);
	if (!kv)
		return;
	CHECK_EQ_INT(strlen(vbk_kv_id(kv)), VBK_KV_ID_LEN);
	CHECK(!vbk_kv_unlocked(kv));
	CHECK_EQ_INT(vbk_kv_unlock(kv, "wrong"), -ENOKEY);
	CHECK(strstr(vbk_kv_errmsg(), "wrong passphrase") != NULL);
	CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	CHECK(vbk_kv_unlocked(kv));
	vbk_kv_close(kv);
	CHECK_EQ_INT(vbk_kv_open(tmpdir, &kv), -ENOENT);
	CHECK_EQ_INT(vbk_kv_init(kv2path, "other"), 0);
}

static void test_keys_secrets(void)
{
	vbk_kv *kv = NULL, *ro = NULL;
	vbk_key_info *keys = NULL;
	vbk_secret_info *secrets = NULL;
	size_t n = 0, len = 0;
	uint8_t *val = NULL;
	uint32_t v = 0, kv_ver = 0;

	CHECK_EQ_INT(vbk_kv_open(kvpath, &kv), 0);
	CHECK_EQ_INT(vbk_kv_open(kvpath, &ro), 0);
	if (!kv || !ro)
		goto out;
	/* Keys need the passphrase. */
	CHECK_EQ_INT(vbk_kv_key_create(kv, "rsa", VBK_KEY_RSA3072, &v), -ENOKEY);
	CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "rsa", VBK_KEY_RSA3072, &v), 0);
	CHECK_EQ_INT(v, 1);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "rsa", VBK_KEY_RSA3072, &v), -EEXIST);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "aes", VBK_KEY_AES256, &v), 0);
	CHECK_EQ_INT(vbk_kv_key_rotate(kv, "nokey", &v), -ENOENT);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "bad/name", VBK_KEY_AES256, &v), -EINVAL);

	/* Without the passphrase nothing can be set, not even a secret wrapped by an RSA KEK:
	 * every change is signed under the passphrase. (The other handle is not fresh: it
	 * re-reads the file under the lock.) */
	vbk_kv_close(ro);
	ro = NULL;
	CHECK_EQ_INT(vbk_kv_open(kvpath, &ro), 0);
	if (!ro)
		goto out;
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s-rsa", value1, strlen(value1), "rsa", &v, &kv_ver),
		     -ENOKEY);
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s-none", value1, strlen(value1), NULL, &v, NULL),
		     -ENOKEY);
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s-aes", value1, strlen(value1), "aes", &v, NULL),
		     -ENOKEY);
	CHECK_EQ_INT(vbk_kv_unlock(ro, pass), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s-rsa", value1, strlen(value1), "rsa", &v, &kv_ver), 0);
	CHECK_EQ_INT(v, 1);
	CHECK_EQ_INT(kv_ver, 1);
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s", value1, 0, "rsa", &v, NULL), -EINVAL);
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s", value1, VBK_SECRET_MAX + 1, "rsa", &v, NULL),
		     -EFBIG);
	CHECK_EQ_INT(vbk_kv_secret_set(ro, "s", value1, 3, "nokek", &v, NULL), -ENOENT);

	/* kv's tree is stale (it does not know s-rsa): writes still go on top of the file. */
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s-none", value1, strlen(value1), NULL, &v, NULL), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s-aes", value1, strlen(value1), "aes", &v, NULL), 0);
	CHECK_EQ_INT(vbk_kv_key_rotate(kv, "rsa", &v), 0);
	CHECK_EQ_INT(v, 2);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s-rsa", value2, strlen(value2), "rsa", &v, &kv_ver), 0);
	CHECK_EQ_INT(v, 2);
	CHECK_EQ_INT(kv_ver, 2);

	CHECK_EQ_INT(vbk_kv_secret_get(kv, "s-rsa", 1, &val, &len), 0);
	CHECK(val && len == strlen(value1) && memcmp(val, value1, len) == 0);
	vbk_secret_free(val, len);
	val = NULL;
	CHECK_EQ_INT(vbk_kv_secret_get(kv, "s-rsa", 0, &val, &len), 0);
	CHECK(val && len == strlen(value2) && memcmp(val, value2, len) == 0);
	vbk_secret_free(val, len);
	val = NULL;
	CHECK_EQ_INT(vbk_kv_secret_get(kv, "s-aes", 0, &val, &len), 0);
	CHECK(val && len == strlen(value1) && memcmp(val, value1, len) == 0);
	vbk_secret_free(val, len);
	val = NULL;
	CHECK_EQ_INT(vbk_kv_secret_get(kv, "s-none", 0, &val, &len), 0);
	CHECK(val && len == strlen(value1) && memcmp(val, value1, len) == 0);
	vbk_secret_free(val, len);
	val = NULL;
	CHECK_EQ_INT(vbk_kv_secret_get(kv, "s-rsa", 3, &val, &len), -ENOENT);
	vbk_kv_close(ro);
	ro = NULL;
	CHECK_EQ_INT(vbk_kv_open(kvpath, &ro), 0);
	if (ro)
		CHECK_EQ_INT(vbk_kv_secret_get(ro, "s-rsa", 1, &val, &len), -ENOKEY);

	CHECK_EQ_INT(vbk_kv_keys(kv, &keys, &n), 0);
	CHECK_EQ_INT(n, 2);
	if (keys && n == 2) {
		CHECK_EQ_STR(keys[0].name, "aes");
		CHECK_EQ_STR(keys[1].name, "rsa");
		CHECK_EQ_INT(keys[1].n_versions, 2);
		CHECK(strncmp(keys[1].versions[0].fingerprint, "sha256:", 7) == 0);
		CHECK(strcmp(keys[1].versions[0].fingerprint, keys[1].versions[1].fingerprint) !=
		      0);
		CHECK(strncmp(keys[0].versions[0].fingerprint, "hmac-sha256:", 12) == 0);
	}
	vbk_key_list_free(keys, n);
	CHECK_EQ_INT(vbk_kv_secrets(kv, &secrets, &n), 0);
	CHECK_EQ_INT(n, 3);
	if (secrets && n == 3) {
		CHECK_EQ_STR(secrets[2].name, "s-rsa");
		CHECK_EQ_INT(secrets[2].n_versions, 2);
		CHECK_EQ_INT(secrets[2].versions[1].kek_version, 2);
		CHECK_EQ_STR(secrets[0].versions[0].kek, "aes");
		CHECK_EQ_STR(secrets[1].versions[0].kek, "");
	}
	vbk_secret_list_free(secrets, n);
out:
	vbk_kv_close(kv);
	vbk_kv_close(ro);
}

/* Unwraps blob (a JSON text) with kv; returns the result. */
static int unwrap_text(vbk_kv *kv, const char *blob)
{
	uint8_t *val = NULL;
	size_t len = 0;
	int r = vbk_escrow_unwrap(kv, blob, strlen(blob), NULL, &val, &len);

	vbk_secret_free(val, len);
	return r;
}

/* Changes the value at o[key] (o[key][sub] when sub) and unwraps: every change must fail. */
static void tamper(vbk_kv *kv, const char *blob, const char *key, const char *sub)
{
	json_object *o = json_tokener_parse(blob), *t, *j;
	char *text;
	int r;

	if (!o) {
		CHECK(o != NULL);
		return;
	}
	t = o;
	if (sub)
		json_object_object_get_ex(o, key, &t);
	if (!json_object_object_get_ex(t, sub ? sub : key, &j)) {
		fprintf(stderr, "no field %s.%s\n", key, sub ? sub : "");
		CHECK(0);
		json_object_put(o);
		return;
	}
	if (json_object_is_type(j, json_type_int)) {
		json_object_object_add(t, sub ? sub : key,
				       json_object_new_int64(json_object_get_int64(j) + 1));
	} else {
		char *s = strdup(json_object_get_string(j));
		/* Keep it valid: swap the first letter for another of the same class. */
		s[0] = s[0] == 'A' ? 'B' : s[0] == 'a' ? 'b' : s[0] == '2' ? '3' : 'A';
		json_object_object_add(t, sub ? sub : key, json_object_new_string(s));
		free(s);
	}
	text = strdup(json_object_to_json_string(o));
	r = unwrap_text(kv, text);
	if (r >= 0)
		fprintf(stderr, "tampered field %s%s%s still unwraps\n", key, sub ? "." : "",
			sub ? sub : "");
	CHECK(r < 0);
	free(text);
	json_object_put(o);
}

static void test_escrow(void)
{
	static const char *const fields[] = {"format", "version",  "vm",	"disk",
					     "rp",     "keyvault", "algorithm", "wrapped_key",
					     "nonce",  "tag",	   "ciphertext"};
	static const char *const subs[][2] = {
	    {"secret", "name"}, {"secret", "version"}, {"kek", "name"},
	    {"kek", "version"}, {"kek", "type"},       {"kek", "fingerprint"},
	};
	vbk_kv *ro = NULL, *kv = NULL, *kv2 = NULL;
	vbk_escrow *e = NULL;
	vbk_escrow_info info;
	char *blob = NULL, *blob_none = NULL, *blob_aes = NULL;
	size_t blen = 0, len = 0;
	uint8_t *val = NULL;
	uint32_t v;

	CHECK_EQ_INT(vbk_kv_open(kvpath, &ro), 0);
	CHECK_EQ_INT(vbk_kv_open(kvpath, &kv), 0);
	CHECK_EQ_INT(vbk_kv_open(kv2path, &kv2), 0);
	if (!ro || !kv || !kv2)
		goto out;
	/* RSA: no passphrase needed to escrow. */
	CHECK_EQ_INT(vbk_escrow_needs_unlock(ro, "s-rsa"), 0);
	CHECK_EQ_INT(vbk_escrow_needs_unlock(ro, "s-aes"), 1);
	CHECK_EQ_INT(vbk_escrow_needs_unlock(ro, "s-none"), 1);
	CHECK_EQ_INT(vbk_escrow_needs_unlock(ro, "nothing"), -ENOENT);
	CHECK_EQ_INT(vbk_escrow_prepare(ro, "s-aes", &e), -ENOKEY);
	CHECK_EQ_INT(vbk_escrow_prepare(ro, "nothing", &e), -ENOENT);
	CHECK_EQ_INT(vbk_escrow_prepare(ro, "s-rsa", &e), 0);
	if (!e)
		goto out;
	CHECK_EQ_INT(vbk_escrow_make(e, "web", "os", "2026-11-23T05:40:12Z", &blob, &blen), 0);
	vbk_escrow_free(e);
	e = NULL;
	if (!blob)
		goto out;
	CHECK_EQ_INT(strlen(blob), blen);
	CHECK_EQ_INT(vbk_escrow_parse(blob, blen, &info), 0);
	CHECK_EQ_STR(info.vm, "web");
	CHECK_EQ_STR(info.kek, "rsa");
	CHECK_EQ_INT(info.kek_version, 2);
	CHECK_EQ_INT(info.secret_version, 2);

	/* Unwrapping needs the passphrase. */
	CHECK_EQ_INT(vbk_escrow_unwrap(ro, blob, blen, NULL, &val, &len), -ENOKEY);
	CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob, blen, &info, &val, &len), 0);
	CHECK(val && len == strlen(value2) && memcmp(val, value2, len) == 0);
	vbk_secret_free(val, len);
	val = NULL;
	/* Another key vault. */
	CHECK_EQ_INT(vbk_kv_unlock(kv2, "other"), 0);
	CHECK_EQ_INT(vbk_escrow_unwrap(kv2, blob, blen, NULL, &val, &len), -EXDEV);
	/* Not a blob. */
	CHECK_EQ_INT(vbk_escrow_unwrap(kv, "{}", 2, NULL, &val, &len), -EPROTO);
	CHECK_EQ_INT(vbk_escrow_unwrap(kv, "hello", 5, NULL, &val, &len), -EPROTO);
	CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob, blen - 5, NULL, &val, &len), -EPROTO);

	for (size_t i = 0; i < VBU_ARRAY_SIZE(fields); i++)
		tamper(kv, blob, fields[i], NULL);
	for (size_t i = 0; i < VBU_ARRAY_SIZE(subs); i++)
		tamper(kv, blob, subs[i][0], subs[i][1]);

	/* After another rotation and a new secret version the old blob still unwraps. */
	CHECK_EQ_INT(vbk_kv_key_rotate(kv, "rsa", &v), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s-rsa", "3", 1, "rsa", &v, NULL), 0);
	CHECK_EQ_INT(unwrap_text(kv, blob), 0);

	/* AES KEK and no KEK: with the key vault unlocked. */
	CHECK_EQ_INT(vbk_escrow_prepare(kv, "s-aes", &e), 0);
	if (e)
		CHECK_EQ_INT(vbk_escrow_make(e, "web", "data", "rp1", &blob_aes, &len), 0);
	vbk_escrow_free(e);
	e = NULL;
	CHECK_EQ_INT(vbk_escrow_prepare(kv, "s-none", &e), 0);
	if (e)
		CHECK_EQ_INT(vbk_escrow_make(e, "web", "data", "rp1", &blob_none, &len), 0);
	vbk_escrow_free(e);
	e = NULL;
	if (blob_aes && blob_none) {
		CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob_aes, strlen(blob_aes), NULL, &val, &len),
			     0);
		CHECK(val && len == strlen(value1) && memcmp(val, value1, len) == 0);
		vbk_secret_free(val, len);
		val = NULL;
		CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob_none, strlen(blob_none), NULL, &val, &len),
			     0);
		CHECK(val && len == strlen(value1) && memcmp(val, value1, len) == 0);
		vbk_secret_free(val, len);
		val = NULL;
		for (size_t i = 0; i < VBU_ARRAY_SIZE(fields); i++) {
			tamper(kv, blob_aes, fields[i], NULL);
			tamper(kv, blob_none, fields[i], NULL);
		}
		for (size_t i = 0; i < VBU_ARRAY_SIZE(subs); i++)
			tamper(kv, blob_aes, subs[i][0], subs[i][1]);
		tamper(kv, blob_none, "secret", "name");
		tamper(kv, blob_none, "secret", "version");
	}
out:
	free(blob);
	free(blob_aes);
	free(blob_none);
	vbk_kv_close(ro);
	vbk_kv_close(kv);
	vbk_kv_close(kv2);
}

/* Two handles opened before either writes: the second one's version is made for a stale file,
 * found out under the lock, and made again for the fresh one. */
static void test_stale_handles(void)
{
	vbk_kv *a = NULL, *b = NULL;
	uint8_t *val = NULL;
	size_t len = 0;
	uint32_t v = 0;

	CHECK_EQ_INT(vbk_kv_open(kvpath, &a), 0);
	CHECK_EQ_INT(vbk_kv_open(kvpath, &b), 0);
	if (!a || !b)
		goto out;
	CHECK_EQ_INT(vbk_kv_unlock(a, pass), 0);
	CHECK_EQ_INT(vbk_kv_unlock(b, pass), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(a, "race", "a", 1, "rsa", &v, NULL), 0);
	CHECK_EQ_INT(v, 1);
	CHECK_EQ_INT(vbk_kv_secret_set(b, "race", "b", 1, "rsa", &v, NULL), 0);
	CHECK_EQ_INT(v, 2);
	CHECK_EQ_INT(vbk_kv_key_rotate(a, "aes", &v), 0);
	CHECK_EQ_INT(v, 2);
	CHECK_EQ_INT(vbk_kv_key_rotate(b, "aes", &v), 0);
	CHECK_EQ_INT(v, 3);
	CHECK_EQ_INT(vbk_kv_key_create(a, "late", VBK_KEY_AES256, &v), 0);
	CHECK_EQ_INT(vbk_kv_key_create(b, "late", VBK_KEY_AES256, &v), -EEXIST);
	CHECK_EQ_INT(vbk_kv_secret_get(a, "race", 1, &val, &len), 0);
	CHECK(val && len == 1 && val[0] == 'a');
	vbk_secret_free(val, len);
	val = NULL;
	CHECK_EQ_INT(vbk_kv_secret_get(a, "race", 2, &val, &len), 0);
	CHECK(val && len == 1 && val[0] == 'b');
	vbk_secret_free(val, len);
out:
	vbk_kv_close(a);
	vbk_kv_close(b);
}

/* RSA-4096: a secret and its escrow blob round-trip (the OAEP ciphertext is 512 bytes). */
static void test_rsa4096(void)
{
	vbk_kv *kv = NULL;
	vbk_escrow *e = NULL;
	char *blob = NULL;
	uint8_t *val = NULL;
	size_t blen = 0, len = 0;
	uint32_t v = 0;

	CHECK_EQ_INT(vbk_kv_open(kvpath, &kv), 0);
	if (!kv)
		return;
	CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "big", VBK_KEY_RSA4096, &v), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s-big", value2, strlen(value2), "big", &v, NULL), 0);
	CHECK_EQ_INT(vbk_escrow_prepare(kv, "s-big", &e), 0);
	if (e)
		CHECK_EQ_INT(vbk_escrow_make(e, "vm", "d", "rp", &blob, &blen), 0);
	if (blob) {
		CHECK(strstr(blob, "\"rsa-4096\"") != NULL);
		CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob, blen, NULL, &val, &len), 0);
		CHECK(val && len == strlen(value2) && memcmp(val, value2, len) == 0);
		vbk_secret_free(val, len);
	}
	free(blob);
	vbk_escrow_free(e);
	vbk_kv_close(kv);
}

/* A damaged file is refused with a message naming the field. */
static void test_damaged_file(void)
{
	char file[PATH_MAX + 32], *buf = NULL, *p;
	size_t len = 0;
	vbk_kv *kv = NULL;

	snprintf(file, sizeof(file), "%s/%s", kvpath, VBK_KV_FILE);
	CHECK_EQ_INT(vbu_read_file(file, 1 << 24, &buf, &len), 0);
	if (!buf)
		return;
	p = strstr(buf, "\"fingerprint\": \"sha256:");
	CHECK(p != NULL);
	if (p) {
		p[strlen("\"fingerprint\": \"sha")] = 'X';
		CHECK_EQ_INT(vbu_write_file_atomic(file, buf, len, 0600), 0);
		CHECK_EQ_INT(vbk_kv_open(kvpath, &kv), -EPROTO);
		CHECK(strstr(vbk_kv_errmsg(), "fingerprint") != NULL);
		p[strlen("\"fingerprint\": \"sha")] = '2';
		CHECK_EQ_INT(vbu_write_file_atomic(file, buf, len, 0600), 0);
		CHECK_EQ_INT(vbk_kv_open(kvpath, &kv), 0);
	}
	vbk_kv_close(kv);
	free(buf);
}

/* --check-escrow's helper: run by the path given (never through PATH), with no VMBAK_* variable
 * (so neither passphrase) in its environment, "--" before the path, and that path a private
 * copy of the header, never the source. A shell script stands in for cryptsetup. */
static void test_hdr_check_helper(void)
{
	char script[PATH_MAX + 32], src[PATH_MAX + 32], envf[PATH_MAX + 32], argf[PATH_MAX + 32];
	char text[4 * PATH_MAX], *buf = NULL, *dd, *copy;
	size_t len = 0;
	struct stat st;
	FILE *f;

	snprintf(script, sizeof(script), "%s/fake-cryptsetup", tmpdir);
	snprintf(src, sizeof(src), "%s/disk.img", tmpdir);
	snprintf(envf, sizeof(envf), "%s/env.out", tmpdir);
	snprintf(argf, sizeof(argf), "%s/argv.out", tmpdir);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\nenv >'%s'\nfor a in \"$@\"; do echo \"$a\"; done >'%s'\n"
		 "cat >/dev/null\nexit 2\n",
		 envf, argf);
	CHECK_EQ_INT(vbu_write_file_atomic(script, text, strlen(text), 0700), 0);
	CHECK_EQ_INT(vbu_write_file_atomic(src, "not luks", 8, 0600), 0);
	setenv("VMBAK_PASSPHRASE", "vault passphrase in the environment", 1);
	setenv("VMBAK_KEYVAULT_PASSPHRASE", "key vault passphrase in the environment", 1);
	CHECK_EQ_INT(vbk_hdr_check_with(script, src, (const uint8_t *)"s", 1), 2);
	unsetenv("VMBAK_PASSPHRASE");
	unsetenv("VMBAK_KEYVAULT_PASSPHRASE");

	CHECK_EQ_INT(vbu_read_file(envf, 1 << 20, &buf, &len), 0);
	if (buf) {
		CHECK(strstr(buf, "VMBAK_") == NULL);
		CHECK(strstr(buf, "passphrase") == NULL);
		CHECK(strstr(buf, "\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n") ||
		      strncmp(buf, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", 35) == 0);
		CHECK(strstr(buf, "LC_ALL=C\n") != NULL);
	}
	free(buf);
	buf = NULL;
	CHECK_EQ_INT(vbu_read_file(argf, 1 << 20, &buf, &len), 0);
	if (buf) {
		dd = strstr(buf, "\n--\n");
		CHECK(dd != NULL);
		CHECK(strstr(buf, src) == NULL);
		if (dd) {
			copy = dd + 4;
			copy[strcspn(copy, "\n")] = '\0';
			CHECK(strstr(copy, "/vmbak-hdrcheck.") != NULL);
			/* The private copy and its directory are gone. */
			CHECK(stat(copy, &st) < 0);
			*strrchr(copy, '/') = '\0';
			CHECK(stat(copy, &st) < 0);
		}
	}
	free(buf);

	/* The helper is looked up in fixed directories only. */
	setenv("PATH", tmpdir, 1);
	CHECK_EQ_INT(vbk_helper_find("fake-cryptsetup", text, sizeof(text)), -ENOENT);
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	const char *const *env = vbk_helper_env();
	for (size_t i = 0; env[i]; i++)
		CHECK(strncmp(env[i], "VMBAK_", 6) != 0);
	f = fopen(src, "rb");
	CHECK(f != NULL);
	if (f) {
		CHECK_EQ_INT(fread(text, 1, sizeof(text), f), 8);
		fclose(f);
	}
}

/* A header read through a reader (an NBD source at ingest): what it finds, and its errors. */
typedef struct mem_src {
	const uint8_t *p;
	size_t size;
	int fail;
} mem_src;

static int mem_read(void *arg, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	mem_src *m = arg;

	if (m->fail)
		return -EIO;
	if (off >= m->size) {
		*ret_got = 0;
		return 0;
	}
	if (len > m->size - off)
		len = (size_t)(m->size - off);
	memcpy(buf, m->p + off, len);
	*ret_got = len;
	return 0;
}

static void test_hdr_probe_reader(void)
{
	static uint8_t img[1 << 20];
	mem_src m = {.p = img, .size = sizeof(img)};
	vbk_hdr_type t = VBK_HDR_LUKS;

	CHECK_EQ_INT(vbk_hdr_probe_reader(mem_read, &m, m.size, &t), 0);
	CHECK_EQ_INT(t, VBK_HDR_OTHER);
	memcpy(img, "LUKS\xba\xbe\0\1", 8);
	CHECK_EQ_INT(vbk_hdr_probe_reader(mem_read, &m, m.size, &t), 0);
	CHECK_EQ_INT(t, VBK_HDR_LUKS);
	memset(img, 0, 8);
	memcpy(img + 3, "-FVE-FS-", 8);
	CHECK_EQ_INT(vbk_hdr_probe_reader(mem_read, &m, m.size, &t), 0);
	CHECK_EQ_INT(t, VBK_HDR_BITLK);
	/* A source shorter than a sector, and one that cannot be read. */
	m.size = 100;
	CHECK_EQ_INT(vbk_hdr_probe_reader(mem_read, &m, m.size, &t), 0);
	CHECK_EQ_INT(t, VBK_HDR_OTHER);
	m.fail = 1;
	CHECK_EQ_INT(vbk_hdr_probe_reader(mem_read, &m, m.size, &t), -EIO);
}

/* Turns the signed key vault at path into one as made before signatures: the three fields
 * gone, the master key wrapped with the old associated data. other_fpr/other_pub (may be NULL):
 * also give version 1 of key "k" another key's public part, as an attacker would. */
static int make_legacy(const char *path, const char *other_pub, const char *other_fpr)
{
	char file[PATH_MAX + 32], aad[128];
	json_object *root, *m, *kdf, *j, *v;
	vbk_wrapped_vaultkeys w = {0};
	vbk_vaultkeys keys;
	size_t n = 0;
	const char *id, *str;
	int r = -1;

	snprintf(file, sizeof(file), "%s/%s", path, VBK_KV_FILE);
	root = json_object_from_file(file);
	if (!root)
		return -1;
	json_object_object_get_ex(root, "id", &j);
	id = json_object_get_string(j);
	json_object_object_get_ex(root, "kdf", &kdf);
	json_object_object_get_ex(root, "master", &m);
	json_object_object_get_ex(kdf, "n", &j);
	w.kdf.n = (uint64_t)json_object_get_int64(j);
	json_object_object_get_ex(kdf, "r", &j);
	w.kdf.r = (uint32_t)json_object_get_int64(j);
	json_object_object_get_ex(kdf, "p", &j);
	w.kdf.p = (uint32_t)json_object_get_int64(j);
	json_object_object_get_ex(kdf, "salt", &j);
	vbu_base64_decode(json_object_get_string(j), w.kdf.salt, sizeof(w.kdf.salt), &n);
	json_object_object_get_ex(m, "nonce", &j);
	vbu_base64_decode(json_object_get_string(j), w.nonce, sizeof(w.nonce), &n);
	json_object_object_get_ex(m, "ciphertext", &j);
	vbu_base64_decode(json_object_get_string(j), w.ct, sizeof(w.ct), &n);
	json_object_object_get_ex(m, "tag", &j);
	vbu_base64_decode(json_object_get_string(j), w.tag, sizeof(w.tag), &n);
	snprintf(aad, sizeof(aad), "vmbak-keyvault v1 %s signed", id);
	if (vbk_vaultkeys_unwrap(&w, pass, aad, strlen(aad), &keys) < 0)
		goto out;
	snprintf(aad, sizeof(aad), "vmbak-keyvault v1 %s", id);
	if (vbk_vaultkeys_wrap(&keys, pass, aad, strlen(aad), &w) < 0)
		goto out;
	vbk_vaultkeys_wipe(&keys);
	str = vbu_base64_encode(w.kdf.salt, sizeof(w.kdf.salt));
	json_object_object_add(kdf, "salt", json_object_new_string(str));
	free((char *)str);
	json_object_object_add(kdf, "n", json_object_new_int64((int64_t)w.kdf.n));
	str = vbu_base64_encode(w.nonce, sizeof(w.nonce));
	json_object_object_add(m, "nonce", json_object_new_string(str));
	free((char *)str);
	str = vbu_base64_encode(w.ct, sizeof(w.ct));
	json_object_object_add(m, "ciphertext", json_object_new_string(str));
	free((char *)str);
	str = vbu_base64_encode(w.tag, sizeof(w.tag));
	json_object_object_add(m, "tag", json_object_new_string(str));
	free((char *)str);
	json_object_object_del(root, "generation");
	json_object_object_del(root, "signing");
	json_object_object_del(root, "signature");
	if (other_pub) {
		json_object_object_get_ex(root, "keys", &j);
		json_object_object_get_ex(j, "k", &j);
		json_object_object_get_ex(j, "versions", &j);
		v = json_object_array_get_idx(j, 0);
		json_object_object_add(v, "public", json_object_new_string(other_pub));
		json_object_object_add(v, "fingerprint", json_object_new_string(other_fpr));
	}
	r = json_object_to_file_ext(file, root, JSON_C_TO_STRING_PRETTY) < 0 ? -1 : 0;
out:
	json_object_put(root);
	return r;
}

/* A key vault made before signatures: read (unsigned), signed by its first unlock after its
 * KEKs were checked against their private parts; one with a KEK version substituted is refused
 * and left as it is. */
/* Kinds of secrets: recovery passwords checked as BitLocker does, .BEK headers, passwords. */
static void test_kinds(void)
{
	static const char good[] = "042647-302313-590458-071500-554323-116567-412181-516978";
	/* A real .BEK header and startup key entry start (cryptsetup's test volumes). */
	uint8_t bek[64] = {64,	 0,   0,    0,	  1, 0, 0, 0, 48, 0, 0, 0, 64, 0, 0, 0,
			   [48] = 16, 0, 6, 0, 9, 0, 1, 0};
	char buf[64];
	const char *why = NULL;
	vbk_kind k;

	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_RECOVERY, (const uint8_t *)good, 55, &why), 0);
	/* The last group one more: not divisible by 11. */
	memcpy(buf, good, 55);
	buf[54] = '9';
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_RECOVERY, (const uint8_t *)buf, 55, &why),
		     -EINVAL);
	CHECK(strstr(why, "group 8") != NULL);
	/* 720896 = 11 * 65536: divisible, but the quotient is not 16 bits. */
	memcpy(buf, good, 55);
	memcpy(buf, "720896", 6);
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_RECOVERY, (const uint8_t *)buf, 55, &why),
		     -EINVAL);
	CHECK(strstr(why, "group 1") != NULL);
	memcpy(buf, good, 55);
	buf[6] = ' ';
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_RECOVERY, (const uint8_t *)buf, 55, &why),
		     -EINVAL);
	memcpy(buf, good, 55);
	buf[55] = '\n';
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_RECOVERY, (const uint8_t *)buf, 56, &why),
		     -EINVAL);
	CHECK(strstr(why, "newline") != NULL);
	CHECK_EQ_INT(vbk_kind_classify_bitlocker((const uint8_t *)buf, 56), VBK_KIND_BITLK_RECOVERY);
	CHECK_EQ_INT(vbk_kind_classify_bitlocker((const uint8_t *)good, 55),
		     VBK_KIND_BITLK_RECOVERY);
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_STARTUP_KEY, bek, sizeof(bek), &why), 0);
	CHECK_EQ_INT(vbk_kind_classify_bitlocker(bek, sizeof(bek)), VBK_KIND_BITLK_STARTUP_KEY);
	bek[0] = 63; /* the size field disagrees with the file */
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_STARTUP_KEY, bek, sizeof(bek), &why), -EINVAL);
	CHECK_EQ_INT(vbk_kind_classify_bitlocker((const uint8_t *)"anaconda", 8),
		     VBK_KIND_BITLK_PASSWORD);
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_PASSWORD, (const uint8_t *)"p\xc3\xa4ss", 5, &why),
		     0);
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_PASSWORD, (const uint8_t *)"pw\n", 3, &why),
		     -EINVAL);
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_BITLK_PASSWORD, (const uint8_t *)"p\xc3", 2, &why),
		     -EINVAL);
	CHECK_EQ_INT(vbk_kind_check(VBK_KIND_LUKS, (const uint8_t *)"", 0, &why), -EINVAL);
	CHECK_EQ_INT(vbk_kind_parse("bitlocker-recovery", &k), 0);
	CHECK_EQ_INT(k, VBK_KIND_BITLK_RECOVERY);
	CHECK_EQ_INT(vbk_kind_parse("bitlocker", &k), -EINVAL);
	CHECK_EQ_INT(vbk_kind_parse("", &k), -EINVAL);
	CHECK(strcmp(vbk_kind_name(VBK_KIND_BITLK_STARTUP_KEY), "bitlocker-startup-key") == 0);
}

static void test_legacy_migration(void)
{
	char p3[PATH_MAX + 16], p4[PATH_MAX + 16], file[PATH_MAX + 32], pub[1024], fpr[100];
	char *before = NULL, *after = NULL;
	size_t blen = 0, alen = 0;
	uint8_t sfpr[32];
	uint64_t gen = 0;
	vbk_kv *kv = NULL;
	json_object *root, *j;

	snprintf(p3, sizeof(p3), "%s/kv3", tmpdir);
	snprintf(p4, sizeof(p4), "%s/kv4", tmpdir);
	CHECK_EQ_INT(vbk_kv_init(p3, pass), 0);
	CHECK_EQ_INT(vbk_kv_init(p4, pass), 0);
	CHECK_EQ_INT(vbk_kv_open(p3, &kv), 0);
	CHECK_EQ_INT(vbk_kv_signer(kv, sfpr, &gen), 1);
	CHECK_EQ_INT(gen, 1);
	CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "k", VBK_KEY_RSA3072, NULL), 0);
	CHECK_EQ_INT(vbk_kv_signer(kv, sfpr, &gen), 1);
	CHECK_EQ_INT(gen, 2);
	vbk_kv_close(kv);
	kv = NULL;
	CHECK_EQ_INT(vbk_kv_open(p4, &kv), 0);
	CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	CHECK_EQ_INT(vbk_kv_key_create(kv, "k", VBK_KEY_RSA3072, NULL), 0);
	vbk_kv_close(kv);
	kv = NULL;
	/* The other key vault's public part and fingerprint of "k". */
	snprintf(file, sizeof(file), "%s/%s", p4, VBK_KV_FILE);
	root = json_object_from_file(file);
	CHECK(root != NULL);
	if (!root)
		return;
	json_object_object_get_ex(root, "keys", &j);
	json_object_object_get_ex(j, "k", &j);
	json_object_object_get_ex(j, "versions", &j);
	j = json_object_array_get_idx(j, 0);
	snprintf(pub, sizeof(pub), "%s",
		 json_object_get_string(json_object_object_get(j, "public")));
	snprintf(fpr, sizeof(fpr), "%s",
		 json_object_get_string(json_object_object_get(j, "fingerprint")));
	json_object_put(root);

	/* Substituted: refused under the passphrase, file unchanged. */
	CHECK_EQ_INT(make_legacy(p4, pub, fpr), 0);
	snprintf(file, sizeof(file), "%s/%s", p4, VBK_KV_FILE);
	CHECK_EQ_INT(make_legacy(p3, pub, fpr), 0);
	snprintf(file, sizeof(file), "%s/%s", p3, VBK_KV_FILE);
	CHECK_EQ_INT(vbu_read_file(file, 1 << 24, &before, &blen), 0);
	CHECK_EQ_INT(vbk_kv_open(p3, &kv), 0);
	if (kv) {
		CHECK_EQ_INT(vbk_kv_signer(kv, sfpr, &gen), 0);
		CHECK_EQ_INT(vbk_kv_unlock(kv, pass), -EBADMSG);
		CHECK(strstr(vbk_kv_errmsg(), "does not match its private part") != NULL);
		CHECK(!vbk_kv_unlocked(kv));
	}
	vbk_kv_close(kv);
	kv = NULL;
	CHECK_EQ_INT(vbu_read_file(file, 1 << 24, &after, &alen), 0);
	CHECK(blen == alen && before && after && memcmp(before, after, blen) == 0);
	free(before);
	free(after);

	/* Not substituted: signed by the first unlock. */
	CHECK_EQ_INT(vbk_kv_init(p3 /* exists */, pass), -EEXIST);
	snprintf(p3, sizeof(p3), "%s/kv5", tmpdir);
	CHECK_EQ_INT(vbk_kv_init(p3, pass), 0);
	CHECK_EQ_INT(vbk_kv_open(p3, &kv), 0);
	if (kv) {
		CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
		CHECK_EQ_INT(vbk_kv_key_create(kv, "k", VBK_KEY_AES256, NULL), 0);
	}
	vbk_kv_close(kv);
	kv = NULL;
	CHECK_EQ_INT(make_legacy(p3, NULL, NULL), 0);
	CHECK_EQ_INT(vbk_kv_open(p3, &kv), 0);
	if (kv) {
		CHECK_EQ_INT(vbk_kv_signer(kv, sfpr, &gen), 0);
		CHECK_EQ_INT(vbk_kv_unlock(kv, "wrong"), -ENOKEY);
		CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
		CHECK_EQ_INT(vbk_kv_signer(kv, sfpr, &gen), 1);
		CHECK_EQ_INT(gen, 1);
	}
	vbk_kv_close(kv);
	kv = NULL;
	CHECK_EQ_INT(vbk_kv_open(p3, &kv), 0);
	if (kv) {
		CHECK_EQ_INT(vbk_kv_signer(kv, sfpr, &gen), 1);
		CHECK_EQ_INT(vbk_kv_unlock(kv, pass), 0);
	}
	vbk_kv_close(kv);
}

int main(void)
{
	char cmd[PATH_MAX + 16];
	const char *base = getenv("TESTTMP");

	snprintf(tmpdir, sizeof(tmpdir), "%s/kvtest.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(kvpath, sizeof(kvpath), "%s/kv", tmpdir);
	snprintf(kv2path, sizeof(kv2path), "%s/kv2", tmpdir);
	RUN(test_types);
	RUN(test_init_unlock);
	RUN(test_keys_secrets);
	RUN(test_escrow);
	RUN(test_stale_handles);
	RUN(test_rsa4096);
	RUN(test_damaged_file);
	RUN(test_hdr_check_helper);
	RUN(test_hdr_probe_reader);
	RUN(test_legacy_migration);
	RUN(test_kinds);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return unit_finish();
}
