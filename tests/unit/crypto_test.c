/* crypto_test.c: keyvault/crypto.c, passphrase.c and vaultkey.c. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "passphrase.h"
#include "file.h"
#include "util.h"
#include "vaultkey.h"
#include "unit.h"

static char tmpdir[PATH_MAX];

/* HMAC pads a key shorter than the 64-byte block with zeros, so an RFC 4231 key padded with
 * zeros to 32 bytes gives that case's result. */
static void test_hmac_rfc4231(void)
{
	uint8_t key[VBK_KEY_LEN] = {0}, out[VBK_HASH_LEN], want[VBK_HASH_LEN];

	/* Test case 1: key 0x0b x 20, "Hi There". */
	memset(key, 0x0b, 20);
	unit_unhex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", want,
		   sizeof(want));
	CHECK_EQ_INT(vbk_hmac_sha256(key, "Hi There", 8, out), 0);
	CHECK_EQ_MEM(out, want, sizeof(want));

	/* Test case 2: key "Jefe". */
	memset(key, 0, sizeof(key));
	memcpy(key, "Jefe", 4);
	unit_unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want,
		   sizeof(want));
	CHECK_EQ_INT(vbk_hmac_sha256(key, "what do ya want for nothing?", 28, out), 0);
	CHECK_EQ_MEM(out, want, sizeof(want));
}

static void test_hmac_prepared(void)
{
	uint8_t key[VBK_KEY_LEN], a[VBK_HASH_LEN], b[VBK_HASH_LEN];
	const char msg[] = "label\0the data after the label";
	vbk_hmac *h = NULL;
	int i;

	memset(key, 0x0b, 20);
	memset(key + 20, 0, 12);
	CHECK_EQ_INT(vbk_hmac_new(key, &h), 0);
	CHECK(h != NULL);
	if (!h)
		return;
	/* Used many times, always the same answer as the one-shot form. */
	for (i = 0; i < 3; i++) {
		CHECK_EQ_INT(vbk_hmac_calc(h, "Hi There", 8, a), 0);
		CHECK_EQ_INT(vbk_hmac_sha256(key, "Hi There", 8, b), 0);
		CHECK_EQ_MEM(a, b, sizeof(a));
	}
	/* Two pieces are their concatenation. */
	CHECK_EQ_INT(vbk_hmac_calc2(h, msg, 6, msg + 6, sizeof(msg) - 7, a), 0);
	CHECK_EQ_INT(vbk_hmac_calc(h, msg, sizeof(msg) - 1, b), 0);
	CHECK_EQ_MEM(a, b, sizeof(a));
	CHECK_EQ_INT(vbk_hmac_calc2(h, NULL, 0, msg, sizeof(msg) - 1, a), 0);
	CHECK_EQ_MEM(a, b, sizeof(a));
	/* Empty input. */
	CHECK_EQ_INT(vbk_hmac_calc(h, NULL, 0, a), 0);
	CHECK_EQ_INT(vbk_hmac_sha256(key, "", 0, b), 0);
	CHECK_EQ_MEM(a, b, sizeof(a));
	/* Another key gives another answer. */
	key[0] ^= 1;
	CHECK_EQ_INT(vbk_hmac_sha256(key, "Hi There", 8, b), 0);
	CHECK_EQ_INT(vbk_hmac_calc(h, "Hi There", 8, a), 0);
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	vbk_hmac_free(h);
	vbk_hmac_free(NULL);
}

struct hmac_job {
	vbk_hmac *h;
	const uint8_t *data;
	size_t len;
	const uint8_t *want;
	int bad;
};

static void *hmac_worker(void *arg)
{
	struct hmac_job *j = arg;
	uint8_t out[VBK_HASH_LEN];
	int i;

	for (i = 0; i < 2000; i++)
		if (vbk_hmac_calc(j->h, j->data, j->len, out) != 0 ||
		    memcmp(out, j->want, sizeof(out)) != 0)
			j->bad++;
	return NULL;
}

/* One shared vbk_hmac used from several threads at once. */
static void test_hmac_threads(void)
{
	static uint8_t data[4][4096];
	uint8_t key[VBK_KEY_LEN], want[4][VBK_HASH_LEN];
	struct hmac_job jobs[4];
	pthread_t th[4];
	vbk_hmac *h = NULL;
	int i;

	CHECK_EQ_INT(vbk_random(key, sizeof(key)), 0);
	CHECK_EQ_INT(vbk_hmac_new(key, &h), 0);
	if (!h)
		return;
	for (i = 0; i < 4; i++) {
		memset(data[i], 'a' + i, sizeof(data[i]));
		CHECK_EQ_INT(vbk_hmac_sha256(key, data[i], sizeof(data[i]), want[i]), 0);
		jobs[i] = (struct hmac_job){h, data[i], sizeof(data[i]), want[i], 0};
		CHECK(pthread_create(&th[i], NULL, hmac_worker, &jobs[i]) == 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ_INT(jobs[i].bad, 0);
	}
	vbk_hmac_free(h);
}

static void test_sha256(void)
{
	uint8_t out[VBK_HASH_LEN], want[VBK_HASH_LEN];

	unit_unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want,
		   sizeof(want));
	CHECK_EQ_INT(vbk_sha256("abc", 3, out), 0);
	CHECK_EQ_MEM(out, want, sizeof(want));
	unit_unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want,
		   sizeof(want));
	CHECK_EQ_INT(vbk_sha256(NULL, 0, out), 0);
	CHECK_EQ_MEM(out, want, sizeof(want));
}

/* Test case 16 of McGrew and Viega, "The Galois/Counter Mode of Operation" (AES-256, 60 bytes,
 * 20 bytes of AAD). */
static void test_gcm_vector(void)
{
	uint8_t key[32], nonce[12], pt[60], aad[20], ct[60], tag[16];
	uint8_t got[60], gtag[16];

	unit_unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key,
		   sizeof(key));
	unit_unhex("cafebabefacedbaddecaf888", nonce, sizeof(nonce));
	unit_unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
		   "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
		   pt, sizeof(pt));
	unit_unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, sizeof(aad));
	unit_unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
		   "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
		   ct, sizeof(ct));
	unit_unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag, sizeof(tag));

	CHECK_EQ_INT(vbk_gcm_seal(key, nonce, aad, sizeof(aad), pt, sizeof(pt), got, gtag), 0);
	CHECK_EQ_MEM(got, ct, sizeof(ct));
	CHECK_EQ_MEM(gtag, tag, sizeof(tag));
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), ct, sizeof(ct), got, tag), 0);
	CHECK_EQ_MEM(got, pt, sizeof(pt));

	/* In place, both ways. */
	memcpy(got, pt, sizeof(pt));
	CHECK_EQ_INT(vbk_gcm_seal(key, nonce, aad, sizeof(aad), got, sizeof(got), got, gtag), 0);
	CHECK_EQ_MEM(got, ct, sizeof(ct));
	CHECK_EQ_MEM(gtag, tag, sizeof(tag));
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), got, sizeof(got), got, tag), 0);
	CHECK_EQ_MEM(got, pt, sizeof(pt));

	/* Test cases 13 and 14: zero key and nonce, no AAD, empty and one zero block. */
	memset(key, 0, sizeof(key));
	memset(nonce, 0, sizeof(nonce));
	unit_unhex("530f8afbc74536b9a963b4f1c4cb738b", tag, sizeof(tag));
	CHECK_EQ_INT(vbk_gcm_seal(key, nonce, NULL, 0, NULL, 0, got, gtag), 0);
	CHECK_EQ_MEM(gtag, tag, sizeof(tag));
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, NULL, 0, NULL, 0, got, tag), 0);
	memset(pt, 0, 16);
	unit_unhex("cea7403d4d606b6e074ec5d3baf39d18", ct, 16);
	unit_unhex("d0d1c8a799996bf0265b98b5d48ab919", tag, sizeof(tag));
	CHECK_EQ_INT(vbk_gcm_seal(key, nonce, NULL, 0, pt, 16, got, gtag), 0);
	CHECK_EQ_MEM(got, ct, 16);
	CHECK_EQ_MEM(gtag, tag, sizeof(tag));
}

static void test_gcm_tamper(void)
{
	uint8_t key[32], nonce[12], aad[7] = "vmbak:1", buf[1000], orig[1000], tag[16], t2[16];
	uint8_t out[1000];

	CHECK_EQ_INT(vbk_random(key, sizeof(key)), 0);
	CHECK_EQ_INT(vbk_random(nonce, sizeof(nonce)), 0);
	CHECK_EQ_INT(vbk_random(orig, sizeof(orig)), 0);
	memcpy(buf, orig, sizeof(buf));
	CHECK_EQ_INT(vbk_gcm_seal(key, nonce, aad, sizeof(aad), buf, sizeof(buf), buf, tag), 0);
	CHECK(memcmp(buf, orig, sizeof(buf)) != 0);

	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), out, tag), 0);
	CHECK_EQ_MEM(out, orig, sizeof(orig));

	buf[500] ^= 0x01; /* ciphertext */
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), out, tag),
		     -EBADMSG);
	buf[500] ^= 0x01;
	memcpy(t2, tag, sizeof(t2));
	t2[15] ^= 0x80; /* tag */
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), out, t2),
		     -EBADMSG);
	aad[0] ^= 0x20; /* associated data */
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), out, tag),
		     -EBADMSG);
	aad[0] ^= 0x20;
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, NULL, 0, buf, sizeof(buf), out, tag), -EBADMSG);
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf) - 1, out, tag),
		     -EBADMSG); /* truncated */
	nonce[0] ^= 1;
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), out, tag),
		     -EBADMSG);
	nonce[0] ^= 1;
	key[31] ^= 1;
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), out, tag),
		     -EBADMSG);
	key[31] ^= 1;
	/* Still fine after all that. In place too. */
	CHECK_EQ_INT(vbk_gcm_open(key, nonce, aad, sizeof(aad), buf, sizeof(buf), buf, tag), 0);
	CHECK_EQ_MEM(buf, orig, sizeof(orig));
}

static void test_scrypt(void)
{
	vbk_scrypt_params p = {.n = 1024, .r = 8, .p = 16}, d1, d2;
	uint8_t out[VBK_KEY_LEN], want[VBK_KEY_LEN];
	int i;

	/* RFC 7914 section 12 uses salts of other lengths, so these answers (the first 32 bytes,
	 * which do not depend on the output length) were computed with Python's
	 * hashlib.scrypt, after checking that it reproduces the RFC's vectors. Salt 00..0f. */
	for (i = 0; i < 16; i++)
		p.salt[i] = (uint8_t)i;
	unit_unhex("e20f368ecfc124b3b6f7db47b7d7538b95883eeab5e9d71720a2381f59086007", want,
		   sizeof(want));
	CHECK_EQ_INT(vbk_scrypt("password", 8, &p, out), 0);
	CHECK_EQ_MEM(out, want, sizeof(want));

	/* Tiny parameters (allowed here; vbk_scrypt_check only bounds those read from disk),
	 * empty passphrase. */
	p.n = 16;
	p.r = 1;
	p.p = 1;
	unit_unhex("9d57d5c6da5d5edb8f60808778e8a8d40741486e035b3dc1100a1910166179fc", want,
		   sizeof(want));
	CHECK_EQ_INT(vbk_scrypt("", 0, &p, out), 0);
	CHECK_EQ_MEM(out, want, sizeof(want));

	p.n = 1000; /* not a power of two */
	CHECK_EQ_INT(vbk_scrypt("x", 1, &p, out), -EINVAL);
	p.n = 1;
	CHECK_EQ_INT(vbk_scrypt("x", 1, &p, out), -EINVAL);
	p.n = 16;
	p.r = 0;
	CHECK_EQ_INT(vbk_scrypt("x", 1, &p, out), -EINVAL);

	/* Defaults: the documented cost and a fresh salt each time; they work. */
	CHECK_EQ_INT(vbk_scrypt_default(&d1), 0);
	CHECK_EQ_INT(vbk_scrypt_default(&d2), 0);
	CHECK(d1.n == 32768 && d1.r == 8 && d1.p == 1);
	CHECK(memcmp(d1.salt, d2.salt, sizeof(d1.salt)) != 0);
	CHECK_EQ_INT(vbk_scrypt_check(&d1), 0);
	CHECK_EQ_INT(vbk_scrypt("correct horse", 13, &d1, out), 0);
}

static void test_scrypt_check(void)
{
	static const struct {
		uint64_t n;
		uint32_t r, p;
		int ok;
	} cases[] = {
	    /* ok: 1, or the error expected */
	    {1 << 10, 8, 1, 1},
	    {1 << 20, 8, 1, 1}, /* 1 GiB of memory: the most a config may ask for */
	    {1 << 22, 2, 1, 1},
	    {1 << 22, 8, 1, -E2BIG},
	    {1 << 20, 9, 1, -E2BIG},
	    {1 << 15, 1, 16, 1},
	    {1 << 15, 32, 1, 1},
	    {1 << 15, 16, 16, 1}, /* 2^23: the most work allowed */
	    /* Little memory, but a minute of work per unlock (n*r*p = 2^27), and just over. */
	    {1 << 22, 2, 16, -E2BIG},
	    {1 << 20, 8, 2, -E2BIG},
	    {1 << 15, 32, 16, -E2BIG},
	    {1 << 9, 8, 1, -EINVAL},
	    {1 << 23, 8, 1, -EINVAL},
	    {0, 8, 1, -EINVAL},
	    {3 << 12, 8, 1, -EINVAL},
	    {(1 << 15) + 1, 8, 1, -EINVAL},
	    {1 << 15, 0, 1, -EINVAL},
	    {1 << 15, 33, 1, -EINVAL},
	    {1 << 15, 8, 0, -EINVAL},
	    {1 << 15, 8, 17, -EINVAL},
	    {UINT64_C(1) << 63, 8, 1, -EINVAL},
	};
	size_t i;

	for (i = 0; i < VBU_ARRAY_SIZE(cases); i++) {
		vbk_scrypt_params p = {.n = cases[i].n, .r = cases[i].r, .p = cases[i].p};
		CHECK_EQ_INT(vbk_scrypt_check(&p), cases[i].ok == 1 ? 0 : cases[i].ok);
	}
}

static void test_misc(void)
{
	uint8_t a[32] = {0}, b[32] = {0}, c[32];

	CHECK(vbk_equal(a, b, sizeof(a)) == 1);
	b[31] = 1;
	CHECK(vbk_equal(a, b, sizeof(a)) == 0);
	CHECK(vbk_equal(a, b, 0) == 1);

	CHECK_EQ_INT(vbk_random(a, sizeof(a)), 0);
	CHECK_EQ_INT(vbk_random(c, sizeof(c)), 0);
	CHECK(memcmp(a, c, sizeof(a)) != 0);
	CHECK_EQ_INT(vbk_random(c, 0), 0);

	vbk_wipe(a, sizeof(a));
	memset(b, 0, sizeof(b));
	CHECK_EQ_MEM(a, b, sizeof(a));
	vbk_wipe(NULL, 0);
}

static void test_vaultkeys(void)
{
	static const char aad[] = "vmbak-vault v1 4f0c1d2e";
	vbk_vaultkeys k1, k2, got, zero;
	vbk_wrapped_vaultkeys w, w2;

	CHECK_EQ_INT(vbk_vaultkeys_generate(&k1), 0);
	CHECK_EQ_INT(vbk_vaultkeys_generate(&k2), 0);
	CHECK(memcmp(&k1, &k2, sizeof(k1)) != 0);
	CHECK(memcmp(k1.data_key, k1.id_key, VBK_KEY_LEN) != 0);

	CHECK_EQ_INT(vbk_vaultkeys_wrap(&k1, "correct horse", aad, sizeof(aad) - 1, &w), 0);
	CHECK(w.kdf.n == 32768 && w.kdf.r == 8 && w.kdf.p == 1);
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w, "correct horse", aad, sizeof(aad) - 1, &got), 0);
	CHECK_EQ_MEM(&got, &k1, sizeof(k1));

	/* The same keys wrapped twice look different (salt, nonce). */
	CHECK_EQ_INT(vbk_vaultkeys_wrap(&k1, "correct horse", aad, sizeof(aad) - 1, &w2), 0);
	CHECK(memcmp(w.ct, w2.ct, sizeof(w.ct)) != 0);
	CHECK(memcmp(w.kdf.salt, w2.kdf.salt, sizeof(w.kdf.salt)) != 0);

	memset(&got, 0x5a, sizeof(got));
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w, "correct horsE", aad, sizeof(aad) - 1, &got),
		     -ENOKEY);
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w, "", aad, sizeof(aad) - 1, &got), -ENOKEY);
	/* Another vault's associated data. */
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w, "correct horse", aad, sizeof(aad) - 2, &got),
		     -ENOKEY);
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w, "correct horse", NULL, 0, &got), -ENOKEY);
	/* Damaged on disk. */
	w2 = w;
	w2.ct[3] ^= 4;
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w2, "correct horse", aad, sizeof(aad) - 1, &got),
		     -ENOKEY);
	w2 = w;
	w2.kdf.salt[0] ^= 1;
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w2, "correct horse", aad, sizeof(aad) - 1, &got),
		     -ENOKEY);
	/* Parameters out of bounds are refused before any work. */
	w2 = w;
	w2.kdf.n = UINT64_C(1) << 30;
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w2, "correct horse", aad, sizeof(aad) - 1, &got),
		     -EINVAL);
	w2.kdf.n = 1 << 15;
	w2.kdf.r = 1000;
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w2, "correct horse", aad, sizeof(aad) - 1, &got),
		     -EINVAL);
	CHECK_EQ_INT(vbk_vaultkeys_unwrap(&w, NULL, aad, sizeof(aad) - 1, &got), -EINVAL);
	CHECK_EQ_INT(vbk_vaultkeys_wrap(&k1, NULL, aad, sizeof(aad) - 1, &w2), -EINVAL);
	/* Output untouched by the failures. */
	memset(&zero, 0x5a, sizeof(zero));
	CHECK_EQ_MEM(&got, &zero, sizeof(got));

	vbk_vaultkeys_wipe(&k1);
	memset(&zero, 0, sizeof(zero));
	CHECK_EQ_MEM(&k1, &zero, sizeof(k1));
	vbk_vaultkeys_wipe(NULL);
}

static void put_file(const char *name, const void *data, size_t len, char *path, size_t cap)
{
	int n = snprintf(path, cap, "%s/%s", tmpdir, name);

	if (n < 0 || (size_t)n >= cap)
		abort();
	unlink(path);
	if (vbu_write_file_atomic(path, data, len, 0600) < 0)
		abort();
}

/* Gets a passphrase from src; returns the error or 0 with the passphrase compared to want. */
static int pass_is(const vbk_passphrase_source *src, const char *want, const char **ret_from)
{
	char *pass = (char *)"untouched";
	const char *from = NULL;
	int r = vbk_passphrase_get(src, &pass, &from);

	if (ret_from)
		*ret_from = from;
	if (r < 0) {
		CHECK_EQ_STR(pass, "untouched");
		return r;
	}
	if (want)
		CHECK_EQ_STR(pass, want);
	else
		CHECK(!"expected a failure");
	vbk_passphrase_free(pass);
	return 0;
}

static void test_passphrase_file(void)
{
	char path[PATH_MAX], want[VBK_PASSPHRASE_MAX + 1], fdpath[64];
	char *longline = malloc(VBK_PASSPHRASE_MAX + 3);
	vbk_passphrase_source src = {.file = path};
	const char *from = NULL;
	int fds[2];

	put_file("p1", "secret\n", 7, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, "secret", &from), 0);
	CHECK(from && strstr(from, "file '") == from && strstr(from, "/p1'"));
	put_file("p1", "secret", 6, path, sizeof(path)); /* no newline */
	CHECK_EQ_INT(pass_is(&src, "secret", NULL), 0);
	put_file("p1", "secret\r\nsecond line\n", 20, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, "secret", NULL), 0);
	put_file("p1", "with spaces \t\n\n", 15, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, "with spaces \t", NULL), 0);
	put_file("p1", "a\rb\n", 4, path, sizeof(path)); /* a lone CR is kept */
	CHECK_EQ_INT(pass_is(&src, "a\rb", NULL), 0);

	put_file("p1", "", 0, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EINVAL);
	put_file("p1", "\n", 1, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EINVAL);
	put_file("p1", "\r\nsecret\n", 9, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EINVAL);
	put_file("p1", "se\0cret\n", 8, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EILSEQ);

	/* Exactly the maximum, with "\r\n"; one more is too long. */
	memset(longline, 'x', VBK_PASSPHRASE_MAX);
	memcpy(longline + VBK_PASSPHRASE_MAX, "\r\n", 2);
	memset(want, 'x', VBK_PASSPHRASE_MAX);
	want[VBK_PASSPHRASE_MAX] = '\0';
	put_file("p1", longline, VBK_PASSPHRASE_MAX + 2, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, want, NULL), 0);
	put_file("p1", longline, VBK_PASSPHRASE_MAX, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, want, NULL), 0);
	memset(longline, 'x', VBK_PASSPHRASE_MAX + 1);
	longline[VBK_PASSPHRASE_MAX + 1] = '\n';
	put_file("p1", longline, VBK_PASSPHRASE_MAX + 2, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EFBIG);
	put_file("p1", longline, VBK_PASSPHRASE_MAX + 1, path, sizeof(path));
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EFBIG);

	unlink(path);
	CHECK_EQ_INT(pass_is(&src, NULL, &from), -ENOENT);
	CHECK(from && strstr(from, "/p1'"));
	src.file = tmpdir;
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -EISDIR);

	/* A pipe, as --passphrase-file <(command) gives. */
	CHECK(pipe(fds) == 0);
	CHECK(write(fds[1], "piped\nrest", 10) == 10);
	close(fds[1]);
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", fds[0]);
	src.file = fdpath;
	CHECK_EQ_INT(pass_is(&src, "piped", NULL), 0);
	close(fds[0]);
	free(longline);
}

static void test_passphrase_env(void)
{
	char path[PATH_MAX], path2[PATH_MAX];
	vbk_passphrase_source src = {
	    .env_file = "VMBAK_TEST_PASSPHRASE_FILE",
	    .env_value = "VMBAK_TEST_PASSPHRASE",
	    .prompt = "test passphrase: ",
	};
	const char *from = NULL;
	int devnull;

	/* Never a terminal here, so "no source" is a clean -ENOKEY even when run by hand. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(devnull >= 0 && dup2(devnull, STDIN_FILENO) == STDIN_FILENO);
	close(devnull);

	unsetenv(src.env_file);
	unsetenv(src.env_value);
	CHECK_EQ_INT(pass_is(&src, NULL, &from), -ENOKEY);
	CHECK_EQ_STR(from, "terminal");
	src.confirm = 1;
	CHECK_EQ_INT(pass_is(&src, NULL, NULL), -ENOKEY);

	setenv(src.env_value, "from env\n", 1); /* a value is taken as is */
	CHECK_EQ_INT(pass_is(&src, "from env\n", &from), 0);
	CHECK_EQ_STR(from, "VMBAK_TEST_PASSPHRASE");
	setenv(src.env_value, "", 1);
	CHECK_EQ_INT(pass_is(&src, NULL, &from), -EINVAL);
	CHECK_EQ_STR(from, "VMBAK_TEST_PASSPHRASE");

	put_file("env", "from file\n", 10, path, sizeof(path));
	setenv(src.env_value, "from env", 1);
	setenv(src.env_file, path, 1); /* the file variable comes first */
	CHECK_EQ_INT(pass_is(&src, "from file", &from), 0);
	CHECK(from && strstr(from, "/env'") && strstr(from, "VMBAK_TEST_PASSPHRASE_FILE"));
	setenv(src.env_file, "", 1); /* empty: names no file, ignored */
	CHECK_EQ_INT(pass_is(&src, "from env", NULL), 0);

	/* An explicit file beats both variables. */
	put_file("explicit", "explicit\n", 9, path2, sizeof(path2));
	setenv(src.env_file, path, 1);
	src.file = path2;
	CHECK_EQ_INT(pass_is(&src, "explicit", NULL), 0);
	src.file = NULL;

	/* A variable naming a missing file is an error, not a fall-through. */
	unlink(path);
	CHECK_EQ_INT(pass_is(&src, NULL, &from), -ENOENT);
	CHECK(from && strstr(from, "/env'"));

	unlink(path2);
	unsetenv(src.env_file);
	unsetenv(src.env_value);
	vbk_passphrase_free(NULL);
}

int main(void)
{
	const char *base = getenv("TMPDIR");
	int n = snprintf(tmpdir, sizeof(tmpdir), "%s/vmbak-crypto-test-XXXXXX",
			 base && *base ? base : "/tmp");

	if (n < 0 || (size_t)n >= sizeof(tmpdir) || !mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_hmac_rfc4231);
	RUN(test_hmac_prepared);
	RUN(test_hmac_threads);
	RUN(test_sha256);
	RUN(test_gcm_vector);
	RUN(test_gcm_tamper);
	RUN(test_scrypt);
	RUN(test_scrypt_check);
	RUN(test_misc);
	RUN(test_vaultkeys);
	RUN(test_passphrase_file);
	RUN(test_passphrase_env);
	rmdir(tmpdir);
	return unit_finish();
}
