/* crypto.h: the crypto primitives every part of vmbak uses, over OpenSSL 3.
 *
 * All functions return 0 on success or a negative errno:
 *   -EBADMSG  authentication failed (wrong key, tampered or damaged data)
 *   -ENOMEM   allocation failed
 *   -EIO      OpenSSL failed for another reason
 * Secrets given to or returned by these functions are the caller's to wipe; every internal
 * copy is wiped with OPENSSL_cleanse() before it is freed.
 *
 * Thread safety: every function is thread-safe. The context-taking functions
 * (vbk_hmac_*) are safe on distinct contexts at once.
 */
#ifndef VMBAK_CRYPTO_H
#define VMBAK_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define VBK_KEY_LEN 32	 /* AES-256 and HMAC-SHA256 keys */
#define VBK_HASH_LEN 32	 /* HMAC-SHA256 / SHA-256 output */
#define VBK_NONCE_LEN 12 /* AES-GCM nonce */
#define VBK_TAG_LEN 16	 /* AES-GCM tag */

/* After an OpenSSL call failed: empties the thread's OpenSSL error queue and returns -ENOMEM when
 * an allocation failed, else -EIO. */
int vbk_ossl_err(void);

/* Cryptographically strong random bytes. */
int vbk_random(void *buf, size_t len);

/* Wipes len bytes at p (never optimised away). */
void vbk_wipe(void *p, size_t len);

/* Zeroed memory for structures that hold keys: pages of their own, left out of core dumps
 * (MADV_DONTDUMP) and locked in memory where the limit allows (mlock; refused is no error), so
 * keys reach neither a core file nor swap. NULL when out of memory. Free with
 * vbk_secure_free(p, len), len as given here; it wipes first. Thread-safe. */
void *vbk_secure_alloc(size_t len);
void vbk_secure_free(void *p, size_t len);

/* Constant-time comparison: 1 when equal, 0 otherwise. */
int vbk_equal(const void *a, const void *b, size_t len);

/* One-shot HMAC-SHA256. */
int vbk_hmac_sha256(const uint8_t key[VBK_KEY_LEN], const void *data, size_t len,
		    uint8_t out[VBK_HASH_LEN]);

/* A keyed HMAC-SHA256 prepared once and then used many times (chunk ids: the key schedule
 * is not redone for every chunk). vbk_hmac_new copies the key. vbk_hmac_calc is thread-safe on
 * one shared vbk_hmac (it duplicates a per-call context from the prepared one). */
typedef struct vbk_hmac vbk_hmac;
int vbk_hmac_new(const uint8_t key[VBK_KEY_LEN], vbk_hmac **ret);
int vbk_hmac_calc(vbk_hmac *h, const void *data, size_t len, uint8_t out[VBK_HASH_LEN]);
/* The same over two pieces concatenated (a domain label, then the data). */
int vbk_hmac_calc2(vbk_hmac *h, const void *a, size_t alen, const void *b, size_t blen,
		   uint8_t out[VBK_HASH_LEN]);
void vbk_hmac_free(vbk_hmac *h);

/* SHA-256 of data. */
int vbk_sha256(const void *data, size_t len, uint8_t out[VBK_HASH_LEN]);

/* AES-256-GCM. Seal writes len bytes of ciphertext to out (which may equal in) and the tag to
 * tag. Open verifies the tag before it reports success; on -EBADMSG the contents of out are
 * unspecified and must not be used. aad may be NULL when aad_len is 0. */
int vbk_gcm_seal(const uint8_t key[VBK_KEY_LEN], const uint8_t nonce[VBK_NONCE_LEN],
		 const void *aad, size_t aad_len, const void *in, size_t len, void *out,
		 uint8_t tag[VBK_TAG_LEN]);
int vbk_gcm_open(const uint8_t key[VBK_KEY_LEN], const uint8_t nonce[VBK_NONCE_LEN],
		 const void *aad, size_t aad_len, const void *in, size_t len, void *out,
		 const uint8_t tag[VBK_TAG_LEN]);

/* scrypt parameters as stored in a vault or key vault config. */
typedef struct vbk_scrypt_params {
	uint64_t n; /* CPU/memory cost, a power of two */
	uint32_t r;
	uint32_t p;
	uint8_t salt[16];
} vbk_scrypt_params;

/* Defaults: n=2^15, r=8, p=1 (32 MiB, about 0.1 s here) with a fresh random salt. */
int vbk_scrypt_default(vbk_scrypt_params *ret);
/* Checks parameters read from disk: n a power of two in [2^10, 2^22], r in [1, 32], p in
 * [1, 16] (else -EINVAL), at most 1 GiB of memory (128*r*n) and at most VBK_SCRYPT_WORK_MAX
 * work (n*r*p: 32 times the default's 2^18, the work of the largest memory allowed at r=8),
 * else -E2BIG. Returns 0 when fine. */
#define VBK_SCRYPT_WORK_MAX (UINT64_C(1) << 23)
int vbk_scrypt_check(const vbk_scrypt_params *prm);
/* Derives a 32-byte key from a passphrase. */
int vbk_scrypt(const char *pass, size_t pass_len, const vbk_scrypt_params *prm,
	       uint8_t out[VBK_KEY_LEN]);

#endif
