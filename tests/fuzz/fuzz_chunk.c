/* fuzz_chunk.c: chunk frames (vbs_chunk_decode, vbs_frame_plain_len).
 *
 * Input: byte 0 selects the vault (bit 0: encrypted), bytes 1..32 are the chunk id, the rest is
 * the frame. Decoding must return the plaintext or -EBADMSG, never read or write out of
 * bounds; a frame that decodes must give back exactly what vbs_chunk_encode stored for that
 * id, so every decoded frame is re-encoded and decoded again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "internal.h"

#define CS 4096

static vbs_vault vaults[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int i = 0; i < 2; i++) {
		vbs_vault *v = &vaults[i];

		/* Fixed keys: the fuzzer cannot forge tags or ids, but it reaches every check
		 * before them, and zstd in unencrypted frames. */
		memset(v->keys.id_key, 0x11, sizeof(v->keys.id_key));
		memset(v->keys.data_key, 0x22, sizeof(v->keys.data_key));
		v->chunk_size = CS;
		v->encrypted = i;
		v->unlocked = 1;
		if (vbk_hmac_new(v->keys.id_key, &v->id_mac) < 0 ||
		    (i && vbk_hmac_new(v->keys.data_key, &v->key_mac) < 0))
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[CS], frame[VBS_FRAME_HDR + 12 + CS + 16], again[CS];
	vbs_vault *v;
	const uint8_t *id;
	uint32_t plain;
	size_t len, flen, len2;

	if (size < 1 + VBS_ID_LEN)
		return 0;
	v = &vaults[data[0] & 1];
	id = data + 1;
	data += 1 + VBS_ID_LEN;
	size -= 1 + VBS_ID_LEN;
	if (vbs_frame_plain_len(data, size, &plain) == 0 && plain == 0)
		abort();
	if (vbs_chunk_decode(v, id, data, size, out, sizeof(out), &len) < 0)
		return 0;
	if (len == 0 || len > CS)
		abort();
	/* Whatever decodes is authentic: encoding it again under that id round-trips. */
	if (vbs_chunk_encode(v, id, out, len, 1, frame, sizeof(frame), &flen) < 0 ||
	    vbs_chunk_decode(v, id, frame, flen, again, sizeof(again), &len2) < 0 || len2 != len ||
	    memcmp(out, again, len) != 0)
		abort();
	return 0;
}
