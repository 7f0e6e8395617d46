/* escrow.h: escrow blobs, a disk's secret as of a recovery point, wrapped for the years.
 *
 * A blob is a JSON document (text, ending in a newline) that store/ keeps opaque with the
 * recovery point and the mount shows as VM/RP/DISK.key. Its fields, in this order:
 *
 *   {"format": "vmbak-escrow", "version": 2, "kind": KIND, "vm": VM, "disk": DISK, "rp": RP_ID,
 *    "keyvault": KEY_VAULT_ID, "secret": {"name": NAME, "version": N},
 *    "kek": {"name": NAME, "version": N, "type": "rsa-3072" | "rsa-4096" | "aes-256",
 *            "fingerprint": FPR} | null,
 *    "algorithm": ALG, "wrapped_key": B64, "nonce": B64, "tag": B64, "ciphertext": B64}
 *
 * KIND is the kind of secret (seckind.h): "luks", "bitlocker-password", "bitlocker-recovery" or
 * "bitlocker-startup-key". A blob whose kind is not known is written as version 1, without
 * "kind", exactly as builds before kinds wrote every blob; both versions are read.
 *
 * The ciphertext is an envelope (kv_internal.h) whose payload is the secret version exactly as
 * the key vault stores it (itself an envelope bound to the key vault id, the secret's name and
 * version and the KEK), wrapped again by the same KEK version, with every field above except the
 * four binary ones serialised as the label (OAEP label, wrapped digest, GCM associated data). So
 * changing the value of any field makes unwrapping fail; unknown fields are refused. Whitespace
 * and the order of the fields are not significant.
 *
 * What making a blob needs: with an RSA KEK only the public key (no passphrase: a backup can
 * wrap but not unwrap); with an AES KEK, or for a secret stored without a KEK (wrapped under the
 * key vault's secrets key, algorithm "keyvault-aes-256-gcm"), the key vault unlocked.
 * Unwrapping always needs the key vault unlocked, and uses the KEK version the blob names.
 *
 * The binding detects a blob that was altered, damaged or moved to another VM, disk or point.
 * It is not a signature: whoever can read a key vault's public key and a KEK-wrapped secret can
 * make a new blob for it.
 *
 * Errors: -EPROTO not an escrow blob (or a malformed one), -EPROTONOSUPPORT a blob format
 * version this build does not read, -EXDEV a blob of another key vault, -ENOENT the secret or
 * KEK version named is not in the key vault, -ENOKEY the key vault is locked and must not be,
 * -EBADMSG the blob does not verify (altered or damaged, or it names a KEK version with another
 * type or fingerprint than the key vault holds), -EUCLEAN the key vault is at fault (the private
 * part of the KEK version named is damaged), else as kv.h. Messages in vbk_kv_errmsg(), naming
 * the culprit. vbk_escrow_parse checks every field, the binary ones and their sizes included,
 * so a blob with a field missing, empty or of the wrong size is refused before a passphrase is
 * needed.
 */
#ifndef VMBAK_ESCROW_H
#define VMBAK_ESCROW_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "seckind.h"

#define VBK_ESCROW_FORMAT_NAME "vmbak-escrow"
#define VBK_ESCROW_FORMAT_VERSION 2 /* the newest written and read; 1 is read too */
#define VBK_ESCROW_MAX (256u * 1024) /* largest blob read */
#define VBK_ESCROW_RP_MAX 64	     /* recovery point id, with the NUL */

/* What a blob says, as parsed (nothing verified yet). */
typedef struct vbk_escrow_info {
	char vm[VBK_KV_NAME_MAX + 1];
	char disk[VBK_KV_NAME_MAX + 1];
	char rp[VBK_ESCROW_RP_MAX];
	char keyvault[VBK_KV_ID_LEN + 1];
	char secret[VBK_KV_NAME_MAX + 1];
	uint32_t secret_version;
	char kek[VBK_KV_NAME_MAX + 1]; /* "" when the secret has no KEK */
	uint32_t kek_version;
	char kek_type[16];
	char kek_fingerprint[VBK_FPR_MAX];
	char algorithm[48];
	char kind[32]; /* vbk_kind_name(): "" in a version 1 blob */
} vbk_escrow_info;

/* A secret made ready for escrow: its latest version and the KEK's wrapping key, looked up once
 * before an ingest, so that making the blobs inside the ingest's commit cannot fail for any
 * reason but memory. */
typedef struct vbk_escrow vbk_escrow;

/* 1 when escrowing secret needs the key vault unlocked (AES KEK or no KEK), 0 when not (RSA),
 * or -ENOENT. */
int vbk_escrow_needs_unlock(const vbk_kv *kv, const char *secret);
/* Prepares the latest version of secret. When the key vault is unlocked it also checks that the
 * version unwraps. *ret: free with vbk_escrow_free(). */
int vbk_escrow_prepare(vbk_kv *kv, const char *secret, vbk_escrow **ret);
/* Sets the kind of secret the blobs of e say they hold (VBK_KIND_NONE, the default: version 1
 * blobs without a kind). */
void vbk_escrow_set_kind(vbk_escrow *e, vbk_kind kind);
/* The secret version and KEK a prepared escrow uses (for messages). */
void vbk_escrow_describe(const vbk_escrow *e, vbk_escrow_info *ret);
/* Makes the blob of one disk of one point: *ret is malloc'ed, NUL-terminated, *ret_len bytes
 * without the NUL. Thread-safe on one vbk_escrow. */
int vbk_escrow_make(const vbk_escrow *e, const char *vm, const char *disk, const char *rp,
		    char **ret, size_t *ret_len);
void vbk_escrow_free(vbk_escrow *e);

/* Reads the fields of a blob of len bytes (checks its form only). */
int vbk_escrow_parse(const char *blob, size_t len, vbk_escrow_info *ret);

/* Unwraps a blob with an unlocked key vault. *ret_info (may be NULL) gets the blob's fields;
 * *ret the secret, to be released with vbk_secret_free(*ret, *ret_len). */
int vbk_escrow_unwrap(vbk_kv *kv, const char *blob, size_t len, vbk_escrow_info *ret_info,
		      uint8_t **ret, size_t *ret_len);

/* Re-wraps a blob (the key vault unlocked) under the current version of KEK to (NULL: of the
 * blob's own KEK), which must be enabled. The new blob names the same VM, disk, point, kind and
 * secret name and version (the secret as it was escrowed; the key vault's own copy of that
 * version is not changed); only the KEK differs. *ret is malloc'ed, NUL-terminated, *ret_len
 * bytes without the NUL; *ret_old and *ret_new (may be NULL) describe both blobs. -EALREADY
 * (nothing made, *ret_old set) when the blob is already wrapped by that version, -EINVAL for a
 * blob without a KEK and no to, -EKEYREVOKED a target version that may not wrap or a blob under
 * a retired version, else as vbk_escrow_unwrap. */
int vbk_escrow_rewrap(vbk_kv *kv, const char *blob, size_t len, const char *to,
		      vbk_escrow_info *ret_old, vbk_escrow_info *ret_new, char **ret,
		      size_t *ret_len);

#endif
