/* kv.h: a key vault: key-encryption keys (KEKs) and secrets, both versioned, in one directory.
 *
 * A key vault is a directory KV/ holding one file, keyvault.json (mode 0600), rewritten whole
 * and atomically (write to a temporary file, fsync, rename, fsync of the directory) under an
 * exclusive flock(2) of KV/lock for every change, so concurrent writers never lose each other's
 * versions and a crash leaves the old or the new file, never a mix. The format is written down
 * in vmbak-vault(5), section KEY VAULT:
 *
 *   {"format": "vmbak-keyvault", "version": 1, "id": UUID, "created": UNIX_S,
 *    "kdf": {"name": "scrypt", "n", "r", "p", "salt": B64},
 *    "master": {"nonce", "ciphertext", "tag"},     64 bytes: secrets key, then private-keys key
 *    "keys": {NAME: {"type", "created", "versions": [{"version", "created", "fingerprint",
 *                    "public": B64 (RSA only), "private": {"nonce", "ciphertext", "tag"},
 *                    "state": "disabled" | "retired" (absent: enabled)}]}},
 *                    (a key in a PKCS#11 token: "pkcs11": URI as given at create on the key,
 *                    and on each version "pkcs11": the URI of that version's token object
 *                    instead of "private"; see pkcs11.h)
 *    "secrets": {NAME: {"versions": [{"version", "created", "kek": null | {"name", "version",
 *                    "type", "fingerprint"}, "algorithm", "wrapped_key", "nonce", "ciphertext",
 *                    "tag"}]}},
 *    "audit": {"lines": N, "chain": HEX}      (audit.h: the log as of the last signed change)
 *    "generation", "signing", "signature"}   (kv_internal.h)
 *
 * The key vault's passphrase unlocks two random keys (wrapped like a vault's keys: scrypt, then
 * AES-256-GCM with "vmbak-keyvault v1 ID" as associated data). The private-keys key encrypts
 * every KEK's private material (RSA private key in DER, or the AES key); the secrets key
 * encrypts secrets stored without a KEK. Public keys and KEK-wrapped secrets stay readable
 * without the passphrase: a backup can wrap (RSA) but not unwrap.
 *
 * A secret version is an envelope: a fresh 256-bit data key encrypts the value with AES-256-GCM,
 * and the data key is wrapped by the KEK version current when the secret was set (RSA-OAEP with
 * SHA-256 and MGF1-SHA-256, or AES key wrap with padding, RFC 5649), or, without a KEK, by the
 * secrets key (AES-256-GCM). The key vault id, secret name and version and the KEK's name,
 * version, type and fingerprint are bound to both layers (OAEP label, wrapped digest, GCM
 * associated data), so a version cannot be moved or relabelled.
 *
 * Versions are numbered from 1 and never removed: `rotate` adds a KEK version and keeps the old
 * ones usable, since escrow blobs name the version that wrapped them.
 *
 * Errors (negative errno): -ENOENT no such key vault, key or secret (or version), -EEXIST (init)
 * a non-empty directory or (create) a key of that name, -EPROTO not a key vault or a damaged
 * file, -EPROTONOSUPPORT a format version this build does not read, -ENOKEY wrong passphrase or
 * the operation needs the key vault unlocked, -EINVAL bad arguments, -EFBIG a secret larger than
 * VBK_SECRET_MAX, -EBADMSG damaged or tampered ciphertext, -EUCLEAN a damaged private part of
 * a key, -EKEYREJECTED (internal) a KEK version that is not the one named, -EKEYREVOKED a KEK
 * version whose state forbids the use (disabled: wrapping; retired: any), else -errno. Every failure leaves a
 * one-line description for the user in vbk_kv_errmsg() (thread-local, never a secret).
 *
 * Thread safety: a vbk_kv handle is used by one thread at a time; distinct handles are
 * independent. Secrets returned are the caller's to wipe (vbk_secret_free does).
 */
#ifndef VMBAK_KV_H
#define VMBAK_KV_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define VBK_KV_FORMAT_NAME "vmbak-keyvault"
#define VBK_KV_FORMAT_VERSION 1
#define VBK_KV_FILE "keyvault.json"
#define VBK_KV_LOCK_FILE "lock"
#define VBK_KV_ID_LEN VBU_UUID_LEN /* a UUID in text, without the NUL */
#define VBK_KV_NAME_MAX VBU_NAME_MAX /* names of keys and secrets, without the NUL */
#define VBK_SECRET_MAX (64u * 1024) /* largest secret value */
#define VBK_FPR_MAX 80		    /* a fingerprint in text, with the NUL */

/* Names of keys and secrets follow vbu_name_valid() (base/util.h). */
#define VBK_KV_NAME_RULE VBU_NAME_RULE

typedef enum vbk_key_type {
	VBK_KEY_RSA3072 = 1,
	VBK_KEY_RSA4096 = 2,
	VBK_KEY_AES256 = 3,
} vbk_key_type;
#define VBK_KEY_TYPES "rsa-3072, rsa-4096 or aes-256"

/* "rsa-3072", "rsa-4096", "aes-256". Returns 0, -EPERM for a known but weak type (RSA below
 * 3072 bits, AES below 256), -EINVAL for anything else. */
int vbk_key_type_parse(const char *s, vbk_key_type *ret);
const char *vbk_key_type_name(vbk_key_type t);

/* The message of the last failure of this module in this thread ("" if none). */
const char *vbk_kv_errmsg(void);

typedef struct vbk_kv vbk_kv;

/* Creates a key vault at path: the directory is created (mode 0700; its parent must exist) or
 * must be empty. On failure nothing is left behind that was not there before. */
int vbk_kv_init(const char *path, const char *pass);

/* Reads and checks KV/keyvault.json. Needs no passphrase. */
int vbk_kv_open(const char *path, vbk_kv **ret);
/* Unwraps the key vault's keys; -ENOKEY for a wrong passphrase. Then authenticates the file
 * under the passphrase: the signing key's private half must open and match (-EBADMSG when it
 * does not, or when the signature was removed from a signed file). A file made before
 * signatures is checked (every KEK version's public part against its private part) and signed
 * (generation 1), its master key rewrapped bound to the signature. */
int vbk_kv_unlock(vbk_kv *kv, const char *pass);
int vbk_kv_unlocked(const vbk_kv *kv);
/* Wipes the keys and frees everything. NULL is fine. */
void vbk_kv_close(vbk_kv *kv);

const char *vbk_kv_path(const vbk_kv *kv);
const char *vbk_kv_id(const vbk_kv *kv);

/* The key vault's signer, as read: 1 with *fpr the SHA-256 of its Ed25519 public key and
 * *generation the file's generation, or 0 for a key vault made before signatures (which the
 * first vbk_kv_unlock signs). The signature itself was checked by vbk_kv_open; whether the key
 * is the owner's only vbk_kv_unlock can tell, or a pin of an earlier sighting (store/kvpin.h). */
int vbk_kv_signer(const vbk_kv *kv, uint8_t fpr[32], uint64_t *generation);

/* Listings, sorted by name. Owned by the caller: free with vbk_key_list_free() and
 * vbk_secret_list_free(). */
/* The state of a KEK version (its "state" field; absent means enabled): enabled wraps and
 * unwraps; disabled unwraps only (no new secret or escrow blob is wrapped by it); retired is not
 * used at all (its private part stays, so enabling it again brings it back). */
typedef enum vbk_key_state {
	VBK_KEY_ENABLED = 0,
	VBK_KEY_DISABLED = 1,
	VBK_KEY_RETIRED = 2,
} vbk_key_state;
const char *vbk_key_state_name(vbk_key_state s);
/* "enabled", "disabled", "retired": 0, or -EINVAL. */
int vbk_key_state_parse(const char *s, vbk_key_state *ret);

typedef struct vbk_key_version {
	uint32_t version;
	int64_t created; /* seconds since the epoch */
	char fingerprint[VBK_FPR_MAX];
	vbk_key_state state;
	char pkcs11[1025]; /* the token object's URI, "" for a key kept in the file */
} vbk_key_version;

typedef struct vbk_key_info {
	char name[VBK_KV_NAME_MAX + 1];
	vbk_key_type type;
	int64_t created;
	size_t n_versions; /* the last one is current */
	vbk_key_version *versions;
} vbk_key_info;

typedef struct vbk_secret_version {
	uint32_t version;
	int64_t created;
	char kek[VBK_KV_NAME_MAX + 1]; /* "" when stored without a KEK */
	uint32_t kek_version;
	char algorithm[48];
} vbk_secret_version;

typedef struct vbk_secret_info {
	char name[VBK_KV_NAME_MAX + 1];
	size_t n_versions;
	vbk_secret_version *versions;
} vbk_secret_info;

int vbk_kv_keys(const vbk_kv *kv, vbk_key_info **ret, size_t *ret_n);
void vbk_key_list_free(vbk_key_info *list, size_t n);
int vbk_kv_secrets(const vbk_kv *kv, vbk_secret_info **ret, size_t *ret_n);
void vbk_secret_list_free(vbk_secret_info *list, size_t n);

/* Creates key name (version 1) of the given type. Needs the key vault unlocked. */
int vbk_kv_key_create(vbk_kv *kv, const char *name, vbk_key_type type, uint32_t *ret_version);
/* Creates key name (version 1) of the given type inside the PKCS#11 token that uri names
 * (pkcs11.h: module, token, label; the PIN from VMBAK_PKCS11_PIN_FILE, VMBAK_PKCS11_PIN or the
 * terminal). The key vault keeps the URI of the token object and, for RSA, the public key. Needs
 * the key vault unlocked. Errors of pkcs11.h too. */
int vbk_kv_key_create_p11(vbk_kv *kv, const char *name, vbk_key_type type, const char *uri,
			  uint32_t *ret_version);
/* Adds a version to key name; the old ones stay (for a key in a token: a new token object, with
 * a new id and label). Needs the key vault unlocked. */
int vbk_kv_key_rotate(vbk_kv *kv, const char *name, uint32_t *ret_version);
/* Sets the state of version (>= 1) of key name: a signed change (the generation grows), logged
 * in the audit log. Needs the key vault unlocked. Retiring is refused (-EBUSY) while the latest
 * version of a secret in the key vault is wrapped by that version (it would be escrowed with
 * it); whether escrow blobs in vaults still use it is for the caller to check (vmbak keyvault
 * key retire --vault). Setting the state a version already has is not an error (nothing is
 * written; *ret_changed 0). */
int vbk_kv_key_set_state(vbk_kv *kv, const char *name, uint32_t version, vbk_key_state state,
			 int *ret_changed);
/* 0 when version of key name may wrap (wrap 1) or unwrap (wrap 0); -EKEYREVOKED (with the
 * message) when its state forbids it, -ENOENT when there is no such version. */
int vbk_kv_key_usable(const vbk_kv *kv, const char *name, uint32_t version, int wrap);

/* Adds a version of secret name (created when new) holding len bytes of value (1 to
 * VBK_SECRET_MAX), wrapped by the current version of KEK kek, or without a KEK (kek NULL)
 * under the key vault's secrets key. An RSA KEK needs no passphrase; an AES KEK and no KEK need
 * the key vault unlocked. *ret_version is the new version, *ret_kek_version (may be NULL) the
 * KEK version used (0 without a KEK). */
int vbk_kv_secret_set(vbk_kv *kv, const char *name, const void *value, size_t len, const char *kek,
		      uint32_t *ret_version, uint32_t *ret_kek_version);

/* Reads a version of a secret (0: the latest). Needs the key vault unlocked. *ret is the
 * caller's: release it with vbk_secret_free(*ret, *ret_len). */
int vbk_kv_secret_get(vbk_kv *kv, const char *name, uint32_t version, uint8_t **ret,
		      size_t *ret_len);
void vbk_secret_free(uint8_t *secret, size_t len);

#endif
