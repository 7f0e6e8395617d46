/* crypto.c: HMAC-SHA256, SHA-256, AES-256-GCM, scrypt and randomness over OpenSSL 3. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "crypto.h"

/* The int-sized OpenSSL update calls get at most this much at a time. */
#define PIECE ((size_t)1 << 30)

/* OpenSSL reports most failures as 0 with reasons queued on a per-thread error stack. The
 * stack is emptied so reasons do not pile up, and allocation failures are told apart. */
int vbk_ossl_err(void)
{
	unsigned long e;
	int r = -EIO;

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
			r = -ENOMEM;
	return r;
}

int vbk_random(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		size_t n = len < PIECE ? len : PIECE;
		if (RAND_bytes(p, (int)n) != 1)
			return vbk_ossl_err();
		p += n;
		len -= n;
	}
	return 0;
}

void vbk_wipe(void *p, size_t len)
{
	if (p)
		OPENSSL_cleanse(p, len);
}

static size_t secure_len(size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t ps = page > 0 ? (size_t)page : 4096;

	return (len + ps - 1) / ps * ps;
}

void *vbk_secure_alloc(size_t len)
{
	size_t n = secure_len(len);
	void *p;

	if (len == 0 || n < len)
		return NULL;
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* Both best effort: an old kernel lacks MADV_DONTDUMP (the programs also turn core
	 * dumps off as a whole), and RLIMIT_MEMLOCK may not allow the lock. */
	(void)madvise(p, n, MADV_DONTDUMP);
	(void)mlock(p, n);
	return p;
}

void vbk_secure_free(void *p, size_t len)
{
	size_t n = secure_len(len);

	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	(void)munlock(p, n);
	munmap(p, n);
}

int vbk_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

struct vbk_hmac {
	EVP_MAC *mac;
	EVP_MAC_CTX *proto; /* keyed once; only read (duplicated) after vbk_hmac_new */
};

/* Measured here (OpenSSL 3.0, x86-64): EVP_MAC_CTX_dup of the keyed context costs about
 * 0.25 us more per call than re-initialising a cached one, for a 32-byte input 0.43 us in all
 * against 38 us for a 64 KiB chunk. At ~50k calls per GiB that is ~12 ms per GiB, so the
 * simple, lock-free dup wins over a per-thread cache that would keep copies of the key
 * schedule alive in every thread past vbk_hmac_free(). */
int vbk_hmac_new(const uint8_t key[VBK_KEY_LEN], vbk_hmac **ret)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	vbk_hmac *h;
	int r;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	if (!h->mac) {
		r = vbk_ossl_err();
		goto out;
	}
	h->proto = EVP_MAC_CTX_new(h->mac);
	if (!h->proto) {
		r = -ENOMEM;
		goto out;
	}
	if (!EVP_MAC_init(h->proto, key, VBK_KEY_LEN, params)) {
		r = vbk_ossl_err();
		goto out;
	}
	*ret = h;
	h = NULL;
	r = 0;
out:
	vbk_hmac_free(h);
	return r;
}

int vbk_hmac_calc2(vbk_hmac *h, const void *a, size_t alen, const void *b, size_t blen,
		   uint8_t out[VBK_HASH_LEN])
{
	uint8_t md[VBK_HASH_LEN];
	EVP_MAC_CTX *c;
	size_t mdlen = 0;
	int r;

	c = EVP_MAC_CTX_dup(h->proto);
	if (!c)
		return vbk_ossl_err();
	if ((alen > 0 && !EVP_MAC_update(c, a, alen)) ||
	    (blen > 0 && !EVP_MAC_update(c, b, blen)) ||
	    !EVP_MAC_final(c, md, &mdlen, sizeof(md)) || mdlen != sizeof(md)) {
		r = vbk_ossl_err();
		goto out;
	}
	memcpy(out, md, sizeof(md));
	r = 0;
out:
	OPENSSL_cleanse(md, sizeof(md));
	EVP_MAC_CTX_free(c);
	return r;
}

int vbk_hmac_calc(vbk_hmac *h, const void *data, size_t len, uint8_t out[VBK_HASH_LEN])
{
	return vbk_hmac_calc2(h, data, len, NULL, 0, out);
}

void vbk_hmac_free(vbk_hmac *h)
{
	if (!h)
		return;
	/* The HMAC provider wipes its key state when the context is freed. */
	EVP_MAC_CTX_free(h->proto);
	EVP_MAC_free(h->mac);
	free(h);
}

int vbk_hmac_sha256(const uint8_t key[VBK_KEY_LEN], const void *data, size_t len,
		    uint8_t out[VBK_HASH_LEN])
{
	vbk_hmac *h = NULL;
	int r;

	r = vbk_hmac_new(key, &h);
	if (r < 0)
		return r;
	r = vbk_hmac_calc(h, data, len, out);
	vbk_hmac_free(h);
	return r;
}

int vbk_sha256(const void *data, size_t len, uint8_t out[VBK_HASH_LEN])
{
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, len, out, &mdlen, EVP_sha256(), NULL) || mdlen != VBK_HASH_LEN)
		return vbk_ossl_err();
	return 0;
}

/* Feeds AAD (out NULL) or data through an int-sized update call in pieces. */
static int gcm_update(EVP_CIPHER_CTX *c, int enc, unsigned char *out, const unsigned char *in,
		      size_t len)
{
	while (len > 0) {
		int n = (int)(len < PIECE ? len : PIECE), got = 0;
		int ok = enc ? EVP_EncryptUpdate(c, out, &got, in, n)
			     : EVP_DecryptUpdate(c, out, &got, in, n);

		/* GCM is a stream mode: every byte in gives a byte out at once. */
		if (!ok || (out && got != n))
			return vbk_ossl_err();
		in += n;
		if (out)
			out += n;
		len -= (size_t)n;
	}
	return 0;
}

static int gcm_start(EVP_CIPHER_CTX *c, int enc, const uint8_t key[VBK_KEY_LEN],
		     const uint8_t nonce[VBK_NONCE_LEN], const void *aad, size_t aad_len)
{
	int ok;

	ok = enc ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL)
		 : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL);
	if (!ok || !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, VBK_NONCE_LEN, NULL))
		return vbk_ossl_err();
	ok = enc ? EVP_EncryptInit_ex(c, NULL, NULL, key, nonce)
		 : EVP_DecryptInit_ex(c, NULL, NULL, key, nonce);
	if (!ok)
		return vbk_ossl_err();
	return gcm_update(c, enc, NULL, aad, aad_len);
}

int vbk_gcm_seal(const uint8_t key[VBK_KEY_LEN], const uint8_t nonce[VBK_NONCE_LEN],
		 const void *aad, size_t aad_len, const void *in, size_t len, void *out,
		 uint8_t tag[VBK_TAG_LEN])
{
	uint8_t t[VBK_TAG_LEN], fin[16];
	EVP_CIPHER_CTX *c;
	int r, got = 0;

	c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	r = gcm_start(c, 1, key, nonce, aad, aad_len);
	if (r < 0)
		goto out;
	r = gcm_update(c, 1, out, in, len);
	if (r < 0)
		goto out;
	if (!EVP_EncryptFinal_ex(c, fin, &got) || got != 0 ||
	    !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VBK_TAG_LEN, t)) {
		r = vbk_ossl_err();
		goto out;
	}
	memcpy(tag, t, VBK_TAG_LEN);
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return r;
}

int vbk_gcm_open(const uint8_t key[VBK_KEY_LEN], const uint8_t nonce[VBK_NONCE_LEN],
		 const void *aad, size_t aad_len, const void *in, size_t len, void *out,
		 const uint8_t tag[VBK_TAG_LEN])
{
	uint8_t t[VBK_TAG_LEN], fin[16];
	EVP_CIPHER_CTX *c;
	int r, got = 0;

	memcpy(t, tag, VBK_TAG_LEN); /* the ctrl call takes a non-const pointer */
	c = EVP_CIPHER_CTX_new();
	if (!c)
		return -ENOMEM;
	r = gcm_start(c, 0, key, nonce, aad, aad_len);
	if (r < 0)
		goto out;
	r = gcm_update(c, 0, out, in, len);
	if (r < 0)
		goto out;
	if (!EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, VBK_TAG_LEN, t)) {
		r = vbk_ossl_err();
		goto out;
	}
	/* The only failure left is the tag check. */
	if (EVP_DecryptFinal_ex(c, fin, &got) <= 0) {
		ERR_clear_error();
		r = -EBADMSG;
		goto out;
	}
	r = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return r;
}

int vbk_scrypt_default(vbk_scrypt_params *ret)
{
	vbk_scrypt_params p = {.n = UINT64_C(1) << 15, .r = 8, .p = 1};
	int r;

	r = vbk_random(p.salt, sizeof(p.salt));
	if (r < 0)
		return r;
	*ret = p;
	return 0;
}

int vbk_scrypt_check(const vbk_scrypt_params *prm)
{
	if (prm->n < (UINT64_C(1) << 10) || prm->n > (UINT64_C(1) << 22) ||
	    (prm->n & (prm->n - 1)) != 0)
		return -EINVAL;
	if (prm->r < 1 || prm->r > 32 || prm->p < 1 || prm->p > 16)
		return -EINVAL;
	/* A config from disk must not make unlocking allocate more than 1 GiB, */
	if ((uint64_t)128 * prm->r * prm->n > (UINT64_C(1) << 30))
		return -E2BIG;
	/* nor take more than VBK_SCRYPT_WORK_MAX (n*r*p; 32 times the default, about 3 s here):
	 * else n=2^22, r=2, p=16, well inside the memory bound, takes a minute per unlock. */
	if (prm->n * prm->r * prm->p > VBK_SCRYPT_WORK_MAX)
		return -E2BIG;
	return 0;
}

/* The memory OpenSSL's scrypt allocates for these parameters (its own formula: B is
 * 128*r*p bytes, V and XY 128*r*(N+2)), plus a page of slack. 0 when it does not fit. */
static uint64_t scrypt_mem(const vbk_scrypt_params *prm)
{
	uint64_t blen, vlen, total;

	if (__builtin_mul_overflow((uint64_t)128 * prm->r, (uint64_t)prm->p, &blen) ||
	    __builtin_mul_overflow((uint64_t)128 * prm->r, prm->n, &vlen) ||
	    __builtin_add_overflow(vlen, (uint64_t)256 * prm->r, &vlen) ||
	    __builtin_add_overflow(blen, vlen, &total) ||
	    __builtin_add_overflow(total, (uint64_t)4096, &total))
		return 0;
	return total;
}

int vbk_scrypt(const char *pass, size_t pass_len, const vbk_scrypt_params *prm,
	       uint8_t out[VBK_KEY_LEN])
{
	uint8_t key[VBK_KEY_LEN];
	uint64_t mem;
	int r;

	/* Any parameters are accepted here (tests use small ones); vbk_scrypt_check() bounds
	 * those read from disk. OpenSSL itself rejects a non power of two. */
	if ((!pass && pass_len > 0) || prm->n < 2 || (prm->n & (prm->n - 1)) != 0 || prm->r < 1 ||
	    prm->p < 1)
		return -EINVAL;
	mem = scrypt_mem(prm);
	if (mem == 0 || mem > SIZE_MAX)
		return -ENOMEM;
	if (!EVP_PBE_scrypt(pass ? pass : "", pass_len, prm->salt, sizeof(prm->salt), prm->n,
			    prm->r, prm->p, mem, key, sizeof(key))) {
		r = vbk_ossl_err();
		goto out;
	}
	memcpy(out, key, sizeof(key));
	r = 0;
out:
	OPENSSL_cleanse(key, sizeof(key));
	return r;
}
