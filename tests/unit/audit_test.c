/* audit_test.c: keyvault/audit.c, key states (kv_keys.c) and vbk_escrow_rewrap (escrow.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "escrow.h"
#include "kv.h"
#include "file.h"
#include "util.h"
#include "unit.h"

static char tmpdir[PATH_MAX];
static char kvpath[PATH_MAX + 8], logpath[PATH_MAX + 32];

static const char pass[] = "audit test passphrase";
static const char value[] = "the disk passphrase";

static vbk_kv *open_unlocked(void)
{
	vbk_kv *kv = NULL;

	if (vbk_kv_open(kvpath, &kv) < 0 || vbk_kv_unlock(kv, pass) < 0) {
		vbk_kv_close(kv);
		return NULL;
	}
	return kv;
}

static int verify(vbk_audit_result *res)
{
	vbk_kv *kv = open_unlocked();
	int r = kv ? vbk_audit_verify(kv, NULL, NULL, res) : -EIO;

	vbk_kv_close(kv);
	return r;
}

static char *slurp(size_t *len)
{
	char *buf = NULL;

	if (vbu_read_file(logpath, 1 << 20, &buf, len) < 0)
		return NULL;
	return buf;
}

static void put(const char *buf, size_t len)
{
	int fd = open(logpath, O_WRONLY | O_TRUNC);

	if (fd >= 0) {
		CHECK_EQ_INT(vbu_write_all(fd, buf, len), 0);
		close(fd);
	}
}

static void test_states(void)
{
	vbk_kv *kv = open_unlocked();
	vbk_key_info *keys = NULL;
	size_t n = 0;
	uint32_t v = 0;
	int changed = -1;

	CHECK(kv != NULL);
	if (!kv)
		return;
	CHECK_EQ_INT(vbk_kv_key_create(kv, "k", VBK_KEY_AES256, &v), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s", value, strlen(value), "k", &v, NULL), 0);
	CHECK_EQ_INT(vbk_kv_key_usable(kv, "k", 1, 1), 0);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 1, VBK_KEY_DISABLED, &changed), 0);
	CHECK_EQ_INT(changed, 1);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 1, VBK_KEY_DISABLED, &changed), 0);
	CHECK_EQ_INT(changed, 0);
	CHECK_EQ_INT(vbk_kv_key_usable(kv, "k", 1, 1), -EKEYREVOKED);
	CHECK_EQ_INT(vbk_kv_key_usable(kv, "k", 1, 0), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s", value, strlen(value), "k", &v, NULL), -EKEYREVOKED);
	/* The latest version of s is wrapped by k/1: retiring it is refused. */
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 1, VBK_KEY_RETIRED, NULL), -EBUSY);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 2, VBK_KEY_RETIRED, NULL), -ENOENT);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "nokey", 1, VBK_KEY_RETIRED, NULL), -ENOENT);
	CHECK_EQ_INT(vbk_kv_keys(kv, &keys, &n), 0);
	CHECK_EQ_INT(n, 1);
	if (n == 1)
		CHECK_EQ_INT(keys[0].versions[0].state, VBK_KEY_DISABLED);
	vbk_key_list_free(keys, n);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 1, VBK_KEY_ENABLED, &changed), 0);
	CHECK_EQ_INT(changed, 1);
	vbk_kv_close(kv);
}

static void test_rewrap(void)
{
	vbk_kv *kv = open_unlocked();
	vbk_escrow *e = NULL;
	vbk_escrow_info o, nw;
	char *blob = NULL, *blob2 = NULL;
	size_t len = 0, len2 = 0, slen = 0;
	uint8_t *sec = NULL;
	uint32_t v = 0;

	CHECK(kv != NULL);
	if (!kv)
		return;
	CHECK_EQ_INT(vbk_escrow_prepare(kv, "s", &e), 0);
	if (e)
		CHECK_EQ_INT(vbk_escrow_make(e, "vm1", "sda", "2026-01-01T00:00:00Z", &blob, &len),
			     0);
	vbk_escrow_free(e);
	/* Already under the current version: nothing to do. */
	CHECK_EQ_INT(vbk_escrow_rewrap(kv, blob, len, NULL, &o, &nw, &blob2, &len2), -EALREADY);
	CHECK_EQ_INT(vbk_kv_key_rotate(kv, "k", &v), 0);
	CHECK_EQ_INT(v, 2);
	CHECK_EQ_INT(vbk_escrow_rewrap(kv, blob, len, "nokey", &o, &nw, &blob2, &len2), -ENOENT);
	CHECK_EQ_INT(vbk_escrow_rewrap(kv, blob, len, NULL, &o, &nw, &blob2, &len2), 0);
	CHECK_EQ_INT(o.kek_version, 1);
	CHECK_EQ_INT(nw.kek_version, 2);
	CHECK_EQ_STR(nw.vm, "vm1");
	CHECK_EQ_INT(nw.secret_version, 1);
	if (blob2) {
		CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob2, len2, NULL, &sec, &slen), 0);
		CHECK_EQ_INT(slen, strlen(value));
		if (sec)
			CHECK_EQ_MEM(sec, value, slen);
		vbk_secret_free(sec, slen);
		sec = NULL;
	}
	/* A disabled target wraps nothing; a retired source unwraps nothing. */
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 2, VBK_KEY_DISABLED, NULL), 0);
	free(blob2);
	blob2 = NULL;
	CHECK_EQ_INT(vbk_escrow_rewrap(kv, blob, len, NULL, &o, &nw, &blob2, &len2), -EKEYREVOKED);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 2, VBK_KEY_ENABLED, NULL), 0);
	CHECK_EQ_INT(vbk_kv_secret_set(kv, "s", value, strlen(value), "k", &v, NULL), 0);
	CHECK_EQ_INT(vbk_kv_key_set_state(kv, "k", 1, VBK_KEY_RETIRED, NULL), 0);
	CHECK_EQ_INT(vbk_escrow_unwrap(kv, blob, len, NULL, &sec, &slen), -EKEYREVOKED);
	vbk_secret_free(sec, slen);
	free(blob);
	free(blob2);
	vbk_kv_close(kv);
}

static void test_chain(void)
{
	vbk_audit_result res;
	vbk_audit_event ev = {.op = "unwrap", .key = "k", .version = 2, .detail = "a test"};
	vbk_kv *kv = NULL;
	char *good, *bad, *p;
	size_t len = 0, n;

	CHECK_EQ_INT(verify(&res), 0);
	CHECK(res.lines >= 8);
	CHECK_EQ_INT(res.authenticated, res.lines);
	CHECK_EQ_INT(res.signed_lines, res.lines);
	/* Without the passphrase: an unauthenticated line, vouched for by the next one. */
	CHECK_EQ_INT(vbk_audit_append_path(kvpath, &ev), 0);
	CHECK_EQ_INT(verify(&res), 0);
	CHECK_EQ_INT(res.authenticated + 1, res.lines);
	kv = open_unlocked();
	CHECK(kv != NULL);
	if (kv)
		CHECK_EQ_INT(vbk_audit_append(kv, &ev), 0);
	vbk_kv_close(kv);
	CHECK_EQ_INT(verify(&res), 0);
	CHECK_EQ_INT(res.authenticated, res.lines);

	good = slurp(&len);
	CHECK(good != NULL);
	if (!good)
		return;
	bad = malloc(len + 1);
	if (!bad) {
		free(good);
		return;
	}
	/* One byte changed in line 2. */
	memcpy(bad, good, len);
	p = strchr(bad, '\n') + 1;
	p = strstr(p, "\"op\":\"") + 6;
	*p ^= 1;
	put(bad, len);
	CHECK_EQ_INT(verify(&res), -EBADMSG);
	CHECK_EQ_INT(res.lines, 1);
	/* Line 1 removed. */
	p = strchr(good, '\n') + 1;
	put(p, len - (size_t)(p - good));
	CHECK_EQ_INT(verify(&res), -EBADMSG);
	/* The last line removed: shorter than the signed count only if it was signed; here the
	 * last two lines came after the last signed change, so it goes unnoticed (documented). */
	n = len - 1;
	while (n > 0 && good[n - 1] != '\n')
		n--;
	put(good, n);
	CHECK_EQ_INT(verify(&res), 0);
	/* Truncated below the signed count. */
	n = 0;
	p = good;
	for (int i = 0; i < 3; i++)
		p = strchr(p, '\n') + 1;
	n = (size_t)(p - good);
	put(good, n);
	CHECK_EQ_INT(verify(&res), -ENODATA);
	/* A torn last line: reported, then removed by the next append. */
	memcpy(bad, good, len);
	put(bad, len - 7);
	CHECK_EQ_INT(verify(&res), -EPIPE);
	CHECK_EQ_INT(vbk_audit_append_path(kvpath, &ev), 0);
	CHECK_EQ_INT(verify(&res), 0);
	free(good);
	free(bad);
}

int main(void)
{
	char cmd[PATH_MAX + 16];
	const char *base = getenv("TESTTMP");

	snprintf(tmpdir, sizeof(tmpdir), "%s/audittest.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(kvpath, sizeof(kvpath), "%s/kv", tmpdir);
	snprintf(logpath, sizeof(logpath), "%s/%s", kvpath, VBK_AUDIT_FILE);
	if (vbk_kv_init(kvpath, pass) < 0) {
		fprintf(stderr, "cannot make a key vault: %s\n", vbk_kv_errmsg());
		return 1;
	}
	RUN(test_states);
	RUN(test_rewrap);
	RUN(test_chain);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return unit_finish();
}
