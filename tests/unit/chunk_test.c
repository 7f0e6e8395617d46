/* chunk_test.c: chunk frames (store/chunk.c): encoding and decoding in both kinds of vault,
 * compressed and raw, and every kind of damage giving -EBADMSG, never other bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "unit.h"
#include "vault.h"

#define CS 4096u

static char dir[256];

static void fill(uint8_t *p, size_t len, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static vbs_vault *new_vault(const char *name, int encrypt)
{
	vbs_init_opts io = {encrypt, CS};
	char path[300];
	vbs_vault *v = NULL;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	CHECK_EQ_INT(vbs_vault_init(path, &io, encrypt ? "pass word" : NULL), 0);
	CHECK_EQ_INT(vbs_vault_open(path, 0, &v), 0);
	if (encrypt)
		CHECK_EQ_INT(vbs_vault_unlock(v, "pass word"), 0);
	return v;
}

/* Decodes frame (flen bytes) under id: the return value, and out must hold in when it is 0. */
static int decode(vbs_vault *v, const uint8_t *id, const uint8_t *frame, size_t flen,
		  const uint8_t *in, size_t len)
{
	uint8_t out[CS];
	size_t olen = 0;
	int r;

	memset(out, 0x5a, sizeof(out));
	r = vbs_chunk_decode(v, id, frame, flen, out, sizeof(out), &olen);
	if (r == 0) {
		CHECK_EQ_INT(olen, len);
		CHECK(olen == len && memcmp(out, in, len) == 0);
	}
	return r;
}

static void roundtrip_and_damage(int encrypt)
{
	vbs_vault *v = new_vault(encrypt ? "enc" : "plain", encrypt);
	uint8_t in[CS], frame[CS + 64], bad[CS + 64], id[VBS_ID_LEN], id2[VBS_ID_LEN];
	size_t flen, len;
	uint32_t plain;

	for (int kind = 0; kind < 4; kind++) {
		/* 0 random (stored raw), 1 text (compressed), 2 short last chunk, 3 level 0 */
		len = kind == 2 ? 1000 : CS;
		fill(in, len, 3 + kind);
		if (kind == 1)
			for (size_t i = 0; i < len; i++)
				in[i] = "a chunk of text "[i % 16];
		CHECK_EQ_INT(vbs_chunk_id(v, in, len, id), 0);
		CHECK_EQ_INT(vbs_chunk_encode(v, id, in, len, kind == 3 ? 0 : 1, frame,
					      sizeof(frame), &flen),
			     0);
		CHECK(flen <= vbs_frame_max(len));
		CHECK_EQ_INT(frame[0], VBS_FRAME_VERSION);
		CHECK_EQ_INT((frame[1] & VBS_FRAME_GCM) != 0, encrypt);
		CHECK_EQ_INT((frame[1] & VBS_FRAME_ZSTD) != 0, kind == 1);
		CHECK_EQ_INT(vbs_frame_plain_len(frame, flen, &plain), 0);
		CHECK_EQ_INT(plain, len);
		/* The length of a raw frame follows from its header; a compressed one's does not.
		 */
		CHECK_EQ_INT(vbs_frame_raw_len(frame, flen), kind == 1 ? 0 : flen);
		CHECK_EQ_INT(decode(v, id, frame, flen, in, len), 0);

		/* Any single bit flipped: -EBADMSG, never other bytes. The tag covers every bit of
		 * an encrypted frame and the header of any; in a plain frame a flip that zstd
		 * ignores (an unused bit of its frame header) may decode to the very plaintext the
		 * id names, which decode() checks. */
		for (size_t bit = 0; bit < flen * 8; bit += (bit < 160 ? 1 : 61)) {
			int r;

			memcpy(bad, frame, flen);
			bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			r = decode(v, id, bad, flen, in, len);
			if (encrypt || bit < VBS_FRAME_HDR * 8 || kind != 1)
				CHECK_EQ_INT(r, -EBADMSG);
			else
				CHECK(r == -EBADMSG || r == 0);
		}
		/* Cut short, one byte too many, only a header, nothing. */
		CHECK_EQ_INT(decode(v, id, frame, flen - 1, in, len), -EBADMSG);
		memcpy(bad, frame, flen);
		bad[flen] = 0;
		CHECK_EQ_INT(decode(v, id, bad, flen + 1, in, len), -EBADMSG);
		CHECK_EQ_INT(decode(v, id, frame, VBS_FRAME_HDR, in, len), -EBADMSG);
		CHECK_EQ_INT(decode(v, id, frame, 0, in, len), -EBADMSG);
		/* Another chunk's id: the frame belongs to its own id only. */
		memcpy(id2, id, sizeof(id2));
		id2[7] ^= 1;
		CHECK_EQ_INT(decode(v, id2, frame, flen, in, len), -EBADMSG);
		/* A plaintext length beyond the vault's chunk size. */
		memcpy(bad, frame, flen);
		bad[4] = 0x7f;
		CHECK_EQ_INT(decode(v, id, bad, flen, in, len), -EBADMSG);
		CHECK(vbs_frame_raw_len(bad, flen) != flen);
		/* An unknown frame version. */
		memcpy(bad, frame, flen);
		bad[0] = VBS_FRAME_VERSION + 1;
		CHECK_EQ_INT(decode(v, id, bad, flen, in, len), -EBADMSG);
	}
	/* Malformed headers for the header readers. */
	CHECK_EQ_INT(vbs_frame_plain_len(frame, 3, &plain), -EBADMSG);
	CHECK_EQ_INT(vbs_frame_raw_len(frame, 3), 0);
	/* A buffer too small for the plaintext is refused, not overrun. */
	{
		uint8_t small[100];
		size_t olen;

		fill(in, CS, 9);
		CHECK_EQ_INT(vbs_chunk_id(v, in, CS, id), 0);
		CHECK_EQ_INT(vbs_chunk_encode(v, id, in, CS, 1, frame, sizeof(frame), &flen), 0);
		CHECK(vbs_chunk_decode(v, id, frame, flen, small, sizeof(small), &olen) < 0);
		/* An encode buffer too small fails cleanly. */
		CHECK(vbs_chunk_encode(v, id, in, CS, 1, frame, CS / 2, &flen) < 0);
	}
	vbs_vault_close(v);
}

/* An encrypted vault opened without its passphrase cannot decode: -ENOKEY, not damage. */
static void locked(void)
{
	vbs_vault *v = new_vault("locked", 1);
	uint8_t in[CS], frame[CS + 64], id[VBS_ID_LEN], out[CS];
	size_t flen, olen;
	char path[300];

	fill(in, CS, 11);
	CHECK_EQ_INT(vbs_chunk_id(v, in, CS, id), 0);
	CHECK_EQ_INT(vbs_chunk_encode(v, id, in, CS, 1, frame, sizeof(frame), &flen), 0);
	vbs_vault_close(v);
	snprintf(path, sizeof(path), "%s/locked", dir);
	CHECK_EQ_INT(vbs_vault_open(path, 1, &v), 0);
	CHECK_EQ_INT(vbs_chunk_decode(v, id, frame, flen, out, sizeof(out), &olen), -ENOKEY);
	vbs_vault_close(v);
}

static void zeros(void)
{
	uint8_t buf[CS] = {0};

	CHECK(vbs_is_zero(buf, sizeof(buf)));
	CHECK(vbs_is_zero(buf, 0));
	buf[CS - 1] = 1;
	CHECK(!vbs_is_zero(buf, sizeof(buf)));
	CHECK(vbs_is_zero(buf, CS - 1));
	buf[0] = 1;
	CHECK(!vbs_is_zero(buf, 1));
}

static void plain(void)
{
	roundtrip_and_damage(0);
}

static void encrypted(void)
{
	roundtrip_and_damage(1);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s/vmbak-chunk-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	RUN(zeros);
	RUN(plain);
	RUN(encrypted);
	RUN(locked);
	return unit_finish();
}
