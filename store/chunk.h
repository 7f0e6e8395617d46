/* chunk.h: chunk ids and chunk frames, the bytes a chunk is stored as.
 *
 * A chunk id is HMAC-SHA256(id key, plaintext): equal chunks dedupe, and without the id key the
 * ids say nothing about content. A frame is:
 *
 *   off 0  u8   frame version, 1
 *   off 1  u8   flags: bit 0 payload is zstd-compressed, bit 1 payload is AES-256-GCM encrypted
 *   off 2  u16  reserved, 0
 *   off 4  u32  plaintext length (1 .. chunk size of the vault)
 *   off 8  encrypted: 12-byte nonce, ciphertext, 16-byte tag; else the payload
 *
 * Encryption uses a per-chunk key, HMAC-SHA256(data key, "vmbak chunk key v1" NUL id), a random
 * nonce, and the 8 header bytes followed by the 32-byte id as associated data: a frame cannot be
 * moved to another id, and its flags and length cannot be changed, without the tag failing.
 * Unencrypted frames are checked by recomputing the id. Either way, decoding that succeeds
 * returns exactly the plaintext that was stored under that id.
 *
 * Thread safety: all functions are thread-safe; compression and decompression contexts and
 * scratch buffers are per thread.
 */
#ifndef VMBAK_CHUNK_H
#define VMBAK_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "vault.h"

#define VBS_FRAME_VERSION 1
#define VBS_FRAME_HDR 8
#define VBS_FRAME_ZSTD 0x01
#define VBS_FRAME_GCM 0x02
#define VBS_ID_LEN VBK_HASH_LEN

/* The largest frame for len bytes of plaintext (compression never grows a frame: a payload
 * that does not shrink is stored raw). */
static inline size_t vbs_frame_max(size_t len)
{
	return VBS_FRAME_HDR + VBK_NONCE_LEN + len + VBK_TAG_LEN;
}

/* 1 when all len bytes are zero. */
int vbs_is_zero(const void *p, size_t len);

/* The id of len bytes of plaintext. The vault must be unlocked. */
int vbs_chunk_id(vbs_vault *v, const void *data, size_t len, uint8_t id[VBS_ID_LEN]);

/* Encodes plaintext into out (cap >= vbs_frame_max(len)). level: zstd level; 0 = store raw. */
int vbs_chunk_encode(vbs_vault *v, const uint8_t id[VBS_ID_LEN], const void *data, size_t len,
		     int level, void *out, size_t cap, size_t *ret_len);

/* Decodes and authenticates a frame into out (cap bytes). -EBADMSG for any damage: bad header,
 * length out of range, failed tag, failed decompression, id mismatch. -ENOKEY when the vault is
 * encrypted and not unlocked. */
int vbs_chunk_decode(vbs_vault *v, const uint8_t id[VBS_ID_LEN], const void *frame, size_t flen,
		     void *out, size_t cap, size_t *ret_len);

/* Reads the plaintext length from a frame header without decoding; -EBADMSG if malformed. */
int vbs_frame_plain_len(const void *frame, size_t flen, uint32_t *ret);

/* The whole length of a frame stored raw (not compressed), from its header: header, plaintext,
 * and nonce and tag when encrypted. 0 for a compressed frame (its length is not in the header)
 * or a malformed header. */
size_t vbs_frame_raw_len(const void *frame, size_t flen);

#endif
