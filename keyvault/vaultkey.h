/* vaultkey.h: a vault's two secret keys and their wrapping under the vault passphrase.
 *
 * A vault has a data key (AES-256-GCM keys of chunks are derived from it) and an id key (the
 * HMAC-SHA256 key of chunk ids). Both are random. On disk they are kept as one 64-byte
 * AES-256-GCM ciphertext (data key then id key) under a key derived from the passphrase with
 * scrypt; the associated data is chosen by the caller (the store binds the vault's format
 * name, version and uuid, so a wrapped key cannot be moved between vaults).
 *
 * Errors: -ENOKEY when the passphrase is wrong (the tag does not verify), -EINVAL for bad
 * parameters, else as in crypto.h.
 */
#ifndef VMBAK_VAULTKEY_H
#define VMBAK_VAULTKEY_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"

typedef struct vbk_vaultkeys {
	uint8_t data_key[VBK_KEY_LEN];
	uint8_t id_key[VBK_KEY_LEN];
} vbk_vaultkeys;

/* The wrapped form, as stored in the vault config. */
typedef struct vbk_wrapped_vaultkeys {
	vbk_scrypt_params kdf;
	uint8_t nonce[VBK_NONCE_LEN];
	uint8_t ct[2 * VBK_KEY_LEN];
	uint8_t tag[VBK_TAG_LEN];
} vbk_wrapped_vaultkeys;

/* Fresh random keys. */
int vbk_vaultkeys_generate(vbk_vaultkeys *ret);

/* Wraps keys under pass with fresh default scrypt parameters and a fresh nonce. */
int vbk_vaultkeys_wrap(const vbk_vaultkeys *keys, const char *pass, const void *aad,
		       size_t aad_len, vbk_wrapped_vaultkeys *ret);

/* Unwraps; -ENOKEY for a wrong passphrase (or a wrapped key from another vault). */
int vbk_vaultkeys_unwrap(const vbk_wrapped_vaultkeys *w, const char *pass, const void *aad,
			 size_t aad_len, vbk_vaultkeys *ret);

/* Wipes the keys. */
void vbk_vaultkeys_wipe(vbk_vaultkeys *keys);

#endif
