/* chunk.c: chunk ids, compression and encryption of chunk frames. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "chunk.h"
#include "internal.h"

static const char key_label[] = "vmbak chunk key v1"; /* with its NUL */

/* Per-thread codec state: zstd contexts and a scratch buffer for decryption. */
struct tls {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *scratch;
	size_t scratch_len;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
	struct tls *t = p;

	if (!t)
		return;
	ZSTD_freeCCtx(t->cctx);
	ZSTD_freeDCtx(t->dctx);
	if (t->scratch)
		vbk_wipe(t->scratch, t->scratch_len);
	free(t->scratch);
	free(t);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_free);
}

static struct tls *tls_get(size_t scratch)
{
	struct tls *t;

	pthread_once(&tls_once, tls_init);
	t = pthread_getspecific(tls_key);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t || pthread_setspecific(tls_key, t) != 0) {
			free(t);
			return NULL;
		}
	}
	if (scratch > t->scratch_len) {
		uint8_t *p = malloc(scratch);
		if (!p)
			return NULL;
		if (t->scratch)
			vbk_wipe(t->scratch, t->scratch_len);
		free(t->scratch);
		t->scratch = p;
		t->scratch_len = scratch;
	}
	return t;
}

int vbs_is_zero(const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i = 0;

	/* Check the first 16 bytes directly, then the rest against the start: memcmp is fast. */
	while (i < len && i < 16) {
		if (b[i])
			return 0;
		i++;
	}
	if (len <= 16)
		return 1;
	return memcmp(b, b + 16, len - 16) == 0;
}

int vbs_chunk_id(vbs_vault *v, const void *data, size_t len, uint8_t id[VBS_ID_LEN])
{
	if (!v->id_mac)
		return -ENOKEY;
	return vbk_hmac_calc(v->id_mac, data, len, id);
}

static int chunk_key(vbs_vault *v, const uint8_t id[VBS_ID_LEN], uint8_t key[VBK_KEY_LEN])
{
	if (!v->key_mac)
		return -ENOKEY;
	return vbk_hmac_calc2(v->key_mac, key_label, sizeof(key_label), id, VBS_ID_LEN, key);
}

int vbs_frame_plain_len(const void *frame, size_t flen, uint32_t *ret)
{
	const uint8_t *f = frame;

	if (flen < VBS_FRAME_HDR || f[0] != VBS_FRAME_VERSION ||
	    (f[1] & ~(VBS_FRAME_ZSTD | VBS_FRAME_GCM)) || f[2] || f[3])
		return -EBADMSG;
	*ret = vbs_get32(f + 4);
	return *ret ? 0 : -EBADMSG;
}

/* Encrypted guests fill whole disks with data no compressor can shrink. Samples of 4 KiB,
 * spread evenly and covering an eighth of the chunk (two for 64 KiB, 32 for 1 MiB), tell it
 * for an eighth of the work of trying the whole chunk: when none shrinks by 1/32, the chunk is
 * stored as it is. Chunks under 16 KiB are always tried whole. tmp: SAMPLE bytes. */
#define SAMPLE 4096u

static int looks_compressible(ZSTD_CCtx *cctx, const uint8_t *data, size_t len, uint8_t *tmp)
{
	size_t n = len / (8 * SAMPLE);

	if (len < 4 * SAMPLE)
		return 1;
	if (n < 2)
		n = 2;
	for (size_t i = 0; i < n; i++) {
		size_t at = (len - SAMPLE) / (n - 1) * i;
		size_t z = ZSTD_compress2(cctx, tmp, SAMPLE - SAMPLE / 32, data + at, SAMPLE);

		if (!ZSTD_isError(z))
			return 1;
	}
	return 0;
}

size_t vbs_frame_raw_len(const void *frame, size_t flen)
{
	const uint8_t *f = frame;
	uint32_t plain;

	if (vbs_frame_plain_len(frame, flen, &plain) < 0 || (f[1] & VBS_FRAME_ZSTD))
		return 0;
	return VBS_FRAME_HDR + plain + ((f[1] & VBS_FRAME_GCM) ? VBK_NONCE_LEN + VBK_TAG_LEN : 0);
}

int vbs_chunk_encode(vbs_vault *v, const uint8_t id[VBS_ID_LEN], const void *data, size_t len,
		     int level, void *out, size_t cap, size_t *ret_len)
{
	uint8_t *o = out, *payload, aad[VBS_FRAME_HDR + VBS_ID_LEN], key[VBK_KEY_LEN];
	size_t plen = len;
	uint8_t flags = 0;
	struct tls *t;
	int r;

	if (len == 0 || len > UINT32_MAX || cap < vbs_frame_max(len))
		return -EINVAL;
	payload = o + VBS_FRAME_HDR + (v->encrypted ? VBK_NONCE_LEN : 0);
	if (level != 0) {
		size_t z;

		t = tls_get(0);
		if (!t)
			return -ENOMEM;
		if (!t->cctx && !(t->cctx = ZSTD_createCCtx()))
			return -ENOMEM;
		ZSTD_CCtx_setParameter(t->cctx, ZSTD_c_compressionLevel, level);
		/* Only worth it when it saves at least 1/32: a destination that small makes zstd
		 * give up early on incompressible (encrypted) data. */
		if (looks_compressible(t->cctx, data, len, payload)) {
			z = ZSTD_compress2(t->cctx, payload, len - len / 32, data, len);
			if (!ZSTD_isError(z)) {
				plen = z;
				flags |= VBS_FRAME_ZSTD;
			}
		}
	}
	if (!(flags & VBS_FRAME_ZSTD))
		memcpy(payload, data, len);
	if (v->encrypted)
		flags |= VBS_FRAME_GCM;
	o[0] = VBS_FRAME_VERSION;
	o[1] = flags;
	o[2] = o[3] = 0;
	vbs_put32(o + 4, (uint32_t)len);
	if (v->encrypted) {
		memcpy(aad, o, VBS_FRAME_HDR);
		memcpy(aad + VBS_FRAME_HDR, id, VBS_ID_LEN);
		r = chunk_key(v, id, key);
		if (r == 0)
			r = vbk_random(o + VBS_FRAME_HDR, VBK_NONCE_LEN);
		if (r == 0)
			r = vbk_gcm_seal(key, o + VBS_FRAME_HDR, aad, sizeof(aad), payload, plen,
					 payload, payload + plen);
		vbk_wipe(key, sizeof(key));
		if (r < 0)
			return r;
		*ret_len = VBS_FRAME_HDR + VBK_NONCE_LEN + plen + VBK_TAG_LEN;
	} else {
		*ret_len = VBS_FRAME_HDR + plen;
	}
	return 0;
}

int vbs_chunk_decode(vbs_vault *v, const uint8_t id[VBS_ID_LEN], const void *frame, size_t flen,
		     void *out, size_t cap, size_t *ret_len)
{
	const uint8_t *f = frame, *payload;
	uint8_t aad[VBS_FRAME_HDR + VBS_ID_LEN], key[VBK_KEY_LEN], check[VBS_ID_LEN];
	size_t plen;
	uint32_t len;
	struct tls *t;
	int r;

	if (vbs_frame_plain_len(frame, flen, &len) < 0 || len > v->chunk_size || len > cap)
		return -EBADMSG;
	if (!!(f[1] & VBS_FRAME_GCM) != !!v->encrypted)
		return -EBADMSG;
	payload = f + VBS_FRAME_HDR;
	plen = flen - VBS_FRAME_HDR;
	if (v->encrypted) {
		if (plen < VBK_NONCE_LEN + VBK_TAG_LEN)
			return -EBADMSG;
		plen -= VBK_NONCE_LEN + VBK_TAG_LEN;
		payload += VBK_NONCE_LEN;
		if (!(f[1] & VBS_FRAME_ZSTD) && plen != len)
			return -EBADMSG;
		if (plen > v->chunk_size + 64u)
			return -EBADMSG;
		t = tls_get(v->chunk_size + 64u);
		if (!t)
			return -ENOMEM;
		memcpy(aad, f, VBS_FRAME_HDR);
		memcpy(aad + VBS_FRAME_HDR, id, VBS_ID_LEN);
		r = chunk_key(v, id, key);
		if (r == 0)
			r = vbk_gcm_open(key, f + VBS_FRAME_HDR, aad, sizeof(aad), payload, plen,
					 (f[1] & VBS_FRAME_ZSTD) ? t->scratch : out,
					 payload + plen);
		vbk_wipe(key, sizeof(key));
		if (r < 0)
			return r == -EBADMSG ? -EBADMSG : r;
		if (f[1] & VBS_FRAME_ZSTD)
			payload = t->scratch;
		else
			payload = out;
	}
	if (f[1] & VBS_FRAME_ZSTD) {
		size_t z;

		t = tls_get(0);
		if (!t)
			return -ENOMEM;
		if (!t->dctx && !(t->dctx = ZSTD_createDCtx()))
			return -ENOMEM;
		z = ZSTD_decompressDCtx(t->dctx, out, len, payload, plen);
		if (ZSTD_isError(z) || z != len)
			return -EBADMSG;
	} else if (!v->encrypted) {
		if (plen != len)
			return -EBADMSG;
		memcpy(out, payload, len);
	}
	if (!v->encrypted) {
		/* No tag: the id itself is the check. */
		r = vbs_chunk_id(v, out, len, check);
		if (r < 0)
			return r;
		if (!vbk_equal(check, id, VBS_ID_LEN))
			return -EBADMSG;
	}
	*ret_len = len;
	return 0;
}
