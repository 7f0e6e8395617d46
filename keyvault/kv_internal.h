/* kv_internal.h: what the key vault's files share (kv.c, kv_file.c, kv_keys.c, kv_secrets.c,
 * kv_sign.c, kv_wrap.c, escrow.c, audit.c); not part of the API.
 *
 * Labels. Everything a ciphertext is bound to is serialised as a label: a sequence of fields,
 * each a 4-byte big-endian length and that many bytes (so no two different field lists give the
 * same bytes). The first field names the purpose ("vmbak-keyvault-secret", "vmbak-escrow", ...).
 *
 * Envelopes. A payload is sealed with AES-256-GCM under a fresh random 256-bit data key (random
 * 96-bit nonce, the label as associated data); the data key is wrapped by a wrapper:
 *   RSA  RSA-OAEP, SHA-256 and MGF1-SHA-256, OAEP label SHA-256(label); 384 or 512 bytes
 *   AES  AES-256 key wrap with padding (RFC 5649) of data key || SHA-256(label); 72 bytes
 *   KV   AES-256-GCM under a key vault key: nonce (12) || ciphertext (32) || tag (16), label as
 *        associated data; 60 bytes
 * Opening checks the wrap (OAEP, the wrapped digest compared in constant time, or the tag) and
 * then the payload's tag: a changed label fails either way.
 */
#ifndef VMBAK_KV_INTERNAL_H
#define VMBAK_KV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "json.h"
#include "kv.h"
#include "pkcs11.h"
#include "util.h"
#include "vaultkey.h"

struct vbk_kv {
	char *path;
	char *file;	   /* path/keyvault.json */
	json_object *root; /* the file as last read or written; checked by kv_check() */
	char id[VBK_KV_ID_LEN + 1];
	int unlocked;
	vbk_vaultkeys keys; /* data_key: secrets key; id_key: private-keys key */
	/* The signature, as checked when the file was read: signed is 0 for a file made before
	 * signatures (no "signing"); generation its "generation". */
	int is_signed;
	uint8_t sign_pub[32];
	uint64_t generation;
	/* Once unlocked (and the signing key found to match): its private half. */
	int can_sign;
	uint8_t sign_seed[32];
	/* The event the next kv_mutate logs (audit.h), set by the operation around it. */
	const struct vbk_audit_event *audit_ev;
};

/* audit.c, for kv_mutate: appends e (under the key vault's lock, kv unlocked) and records the
 * log's line count and chain value as root's "audit"; after a write of root that failed,
 * logs that e did not happen. */
struct vbk_audit_event;
int kv_audit_record(vbk_kv *kv, json_object *root, const struct vbk_audit_event *e);
void kv_audit_undone(vbk_kv *kv, const struct vbk_audit_event *e, int err);

/* Sets the thread's message for vbk_kv_errmsg(); returns err. The one message buffer of
 * base/util.h. */
#define kv_fail vbu_fail
#define kv_clear_err vbu_clear_err

#define KV_ALG_RSA "rsa-oaep-sha256+aes-256-gcm"
#define KV_ALG_AES "aes-256-kwp+aes-256-gcm"
#define KV_ALG_KV "keyvault-aes-256-gcm"

#define KV_WRAPPED_KEY_MAX 512 /* RSA-4096 */
#define KV_PUBLIC_MAX 1024     /* DER SubjectPublicKeyInfo of RSA-4096: 550 bytes */
#define KV_PRIVATE_MAX 4096    /* DER RSAPrivateKey of RSA-4096: about 2350 bytes */

typedef struct kv_label {
	uint8_t *buf;
	size_t len, cap;
	int err; /* the first allocation failure, reported by kv_label_done */
} kv_label;

void kv_label_str(kv_label *l, const char *s);
void kv_label_u32(kv_label *l, uint32_t v);
/* 0, or -ENOMEM when an add failed. */
int kv_label_done(const kv_label *l);
void kv_label_free(kv_label *l);

/* KV_WRAP_P11_RSA opens only (sealing with a token RSA key is KV_WRAP_RSA with its public key);
 * KV_WRAP_P11_AES seals and opens inside the token. */
enum { KV_WRAP_RSA = 1, KV_WRAP_AES, KV_WRAP_KV, KV_WRAP_P11_RSA, KV_WRAP_P11_AES };

typedef struct kv_wrapper {
	int kind;
	EVP_PKEY *pkey;		  /* RSA: public key (seal) or private key (open) */
	uint8_t key[VBK_KEY_LEN]; /* AES KEK or key vault key */
	vbk_p11_key *p11;	  /* P11 kinds: the token key, open */
} kv_wrapper;

/* Frees the key, closes the token session and wipes the wrapper. */
void kv_wrapper_clear(kv_wrapper *w);

typedef struct kv_envelope {
	uint8_t wrapped_key[KV_WRAPPED_KEY_MAX];
	size_t wrapped_len;
	uint8_t nonce[VBK_NONCE_LEN];
	uint8_t tag[VBK_TAG_LEN];
	uint8_t *ct; /* malloc'ed */
	size_t ct_len;
} kv_envelope;

void kv_env_clear(kv_envelope *e);
int kv_env_seal(const kv_wrapper *w, const kv_label *l, const void *pt, size_t len,
		kv_envelope *ret);
/* *ret is malloc'ed (with one NUL byte after the data), to be wiped by the caller. -EBADMSG
 * when the wrap or the tag does not verify. */
int kv_env_open(const kv_wrapper *w, const kv_label *l, const kv_envelope *e, uint8_t **ret,
		size_t *ret_len);
/* JSON fields "wrapped_key", "nonce", "ciphertext", "tag" (base64) added to / read from o.
 * kv_env_from_json checks sizes (ciphertext at most ct_max bytes): -EPROTO when bad. */
int kv_env_to_json(const kv_envelope *e, json_object *o);
int kv_env_from_json(json_object *o, size_t ct_max, kv_envelope *ret);
/* Binary form: u32 BE wrapped length, wrapped key, nonce, tag, ciphertext. */
int kv_env_pack(const kv_envelope *e, uint8_t **ret, size_t *ret_len);
int kv_env_unpack(const uint8_t *p, size_t len, kv_envelope *ret);

/* RSA keys (kv_rsa.c). */
int kv_rsa_generate(unsigned bits, EVP_PKEY **ret);
int kv_rsa_public_der(EVP_PKEY *pk, uint8_t **ret, size_t *ret_len);  /* OPENSSL_free */
int kv_rsa_private_der(EVP_PKEY *pk, uint8_t **ret, size_t *ret_len); /* OPENSSL_clear_free */
/* Loads a public (SubjectPublicKeyInfo) or private (RSAPrivateKey) DER key and checks that it is
 * RSA of the given size. -EPROTO otherwise. */
int kv_rsa_load(const uint8_t *der, size_t len, int priv, unsigned bits, EVP_PKEY **ret);

/* Fingerprints: "sha256:HEX" of the DER public key (RSA), "hmac-sha256:HEX" of a fixed string
 * under the key (AES: a key check value that reveals nothing of the key), "pkcs11-kcv:HEX" for
 * an AES key in a PKCS#11 token (vbk_p11_aes_kcv: the token's key material cannot be read). */
#define KV_FPR_P11_AES "pkcs11-kcv:"
int kv_fingerprint_rsa(const uint8_t *der, size_t len, char out[VBK_FPR_MAX]);
int kv_fingerprint_aes(const uint8_t key[VBK_KEY_LEN], char out[VBK_FPR_MAX]);

/* The key vault's signature (kv_sign.c). The file's fields "generation", "signing" and
 * "signature" (kv.h) are made with these: an Ed25519 key pair (the 32-byte seed is the private
 * half, sealed under the private-keys key), and a signature over KV_SIGN_CONTEXT (with its NUL)
 * followed by the canonical form of the whole file without its top-level "signature": JSON with
 * no white space, the members of every object sorted by name (bytewise), strings escaped only
 * for '"', '\\' and bytes below 0x20 (as \u00XX), integers in decimal. */
#define KV_SIGN_CONTEXT "vmbak-keyvault-signature v1"
#define KV_SIGN_SEED_LEN 32
#define KV_SIGN_PUB_LEN 32
#define KV_SIGN_SIG_LEN 64
int kv_ed25519_generate(uint8_t seed[KV_SIGN_SEED_LEN], uint8_t pub[KV_SIGN_PUB_LEN]);
int kv_ed25519_public(const uint8_t seed[KV_SIGN_SEED_LEN], uint8_t pub[KV_SIGN_PUB_LEN]);
int kv_ed25519_sign(const uint8_t seed[KV_SIGN_SEED_LEN], const uint8_t *msg, size_t len,
		    uint8_t sig[KV_SIGN_SIG_LEN]);
/* 0, or -EBADMSG when the signature does not verify. */
int kv_ed25519_verify(const uint8_t pub[KV_SIGN_PUB_LEN], const uint8_t *msg, size_t len,
		      const uint8_t sig[KV_SIGN_SIG_LEN]);
/* The signed message of a file: malloc'ed. -EPROTO for a value the form has no place for. */
int kv_canon(json_object *root, uint8_t **ret, size_t *ret_len);

/* A KEK version as named in a secret or an escrow blob. */
typedef struct kv_kek {
	char name[VBK_KV_NAME_MAX + 1]; /* "" for none */
	uint32_t version;
	vbk_key_type type;
	char fingerprint[VBK_FPR_MAX];
	int p11; /* kv_kek_find: the version is a key in a PKCS#11 token */
} kv_kek;

const char *kv_alg_for(const kv_kek *k);
/* The size of a data key wrapped by k: 384 or 512 (RSA), 72 (AES), 60 (no KEK). */
size_t kv_wrapped_len(const kv_kek *k);
/* 1 when s is a well-formed fingerprint for a key of type t. */
int kv_fpr_valid(const char *s, vbk_key_type t);
/* Finds version (0: current) of KEK name. -ENOENT with a message when there is none. */
int kv_kek_find(const vbk_kv *kv, const char *name, uint32_t version, kv_kek *ret);
/* The wrapper of a KEK version (k->name "" for the key vault's secrets key). priv: for opening
 * (RSA private key); AES, KV and priv need the key vault unlocked (-ENOKEY otherwise). Checks the
 * fingerprint against the key material. */
int kv_wrapper_get(const vbk_kv *kv, const kv_kek *k, int priv, kv_wrapper *ret);

/* The label of a secret version. */
int kv_secret_label(const vbk_kv *kv, const char *name, uint32_t version, const kv_kek *k,
		    kv_label *ret);
/* The stored envelope and KEK of a version (0: latest) of a secret; *ret_version the version. */
int kv_secret_find(const vbk_kv *kv, const char *name, uint32_t version, kv_kek *ret_kek,
		   kv_envelope *ret_env, uint32_t *ret_version);

/* ---- the file (kv_file.c) ---- */

/* Short names for base/json.h's getters, which the key vault's files call on almost every
 * line. */
#define jstr vbu_json_str
#define jint vbu_json_int
#define jobj vbu_json_obj
#define jadd vbu_json_add
#define jadd_b64 vbu_json_add_b64
#define jget_b64 vbu_json_b64

#define KV_VERSIONS_MAX 100000u /* versions of one key or secret */

/* The signature of a file as checked on reading: is_signed 0 for a file made before signatures
 * (no "signing"); generation its "generation". */
typedef struct kv_sig {
	int is_signed;
	uint8_t pub[KV_SIGN_PUB_LEN];
	uint64_t generation;
} kv_sig;

/* The key size in bits of a type; 0 for an unknown type. */
unsigned kv_key_bits(vbk_key_type t);
/* o's "type": -EPROTO when missing or not a known type. */
int kv_type_from_json(json_object *o, vbk_key_type *ret);
/* A version's "state": absent is enabled (files made before states); anything but a known name
 * is -EPROTO. ret may be NULL. */
int kv_version_state(json_object *v, vbk_key_state *ret);
/* A KEK as named in a secret version ("name", "version", "type", "fingerprint"); -EPROTO when
 * a field is bad. */
int kv_kek_from_json(json_object *o, kv_kek *ret);
/* Reads and checks path's key vault file (file: path/keyvault.json): *ret the tree, id its id;
 * ret_w (its wrapped keys) and ret_sig (its signature) may be NULL. A message on failure. */
int kv_read(const char *path, const char *file, json_object **ret, char id[VBK_KV_ID_LEN + 1],
	    vbk_wrapped_vaultkeys *ret_w, kv_sig *ret_sig);
/* After kv_mutate gave -EAGAIN (another writer changed the file meanwhile): kv->root read
 * again from the file, and 0 with the message "WHAT 'NAME' is being changed by another process"
 * (what: "key", "secret") for the caller that tries again and then gives up with -EBUSY; or the
 * error of the reading. */
int kv_reread(vbk_kv *kv, const char *what, const char *name);
/* Writes root as kv's file, atomically (0600). A message on failure. */
int kv_write(const vbk_kv *kv, json_object *root);
/* Changes the file under an exclusive lock: reads it again (another process may have added
 * versions since it was opened), lets fn change the fresh tree, logs kv->audit_ev, signs the
 * tree with the next generation and writes it atomically; kv->root is then the new tree. Needs
 * kv unlocked and able to sign (-ENOKEY). fn returns 0 or -errno (-EAGAIN: the caller starts
 * again from a fresh read). */
int kv_mutate(vbk_kv *kv, int (*fn)(vbk_kv *kv, json_object *root, void *arg), void *arg);
/* dir/name, malloc'ed; NULL when out of memory. */
char *kv_join_path(const char *dir, const char *name);
/* The names of the members of o, sorted; free() the array only (the names are o's). */
int kv_sorted_names(json_object *o, const char ***ret, size_t *ret_n);
/* A listing (vbk_kv_keys, vbk_kv_secrets): the members of section, each an object with an array
 * "versions", in name order, as an array of entries of size bytes (zeroed first), each holding
 * a malloc'ed array of versions at versions_off. entry fills the entry e of name and makes
 * room for its n_versions versions, version fills the j-th. An error of entry stops the walk;
 * kv_list then frees what was made and returns the error ("out of memory" in
 * vbk_kv_errmsg()). kv_list_free frees a list (NULL is fine). */
typedef struct kv_lister {
	size_t size, versions_off;
	int (*entry)(void *e, const char *name, json_object *o, size_t n_versions);
	void (*version)(void *e, size_t j, json_object *v);
} kv_lister;
int kv_list(json_object *section, const kv_lister *l, void **ret, size_t *ret_n);
void kv_list_free(const kv_lister *l, void *list, size_t n);

/* ---- the signing key (kv_sign.c) ---- */

/* Sets root's generation, signing key (when missing) and signature, with kv's signing key. */
int kv_sign_root(const vbk_kv *kv, json_object *root, uint64_t generation);
/* Opens the sealed seed of root's "signing" (under kv's private-keys key) and checks it is the
 * private half of pub; kv can then sign. -EBADMSG when it does not open or match. */
int kv_signing_open(vbk_kv *kv, json_object *root, const uint8_t pub[KV_SIGN_PUB_LEN]);

/* ---- keys (kv_keys.c) ---- */

/* The private material of KEK version k (v its version object): DER RSAPrivateKey or the AES
 * key, malloc'ed, to be wiped by the caller. Needs kv unlocked. -EUCLEAN when it does not
 * open. */
int kv_kek_private(const vbk_kv *kv, const kv_kek *k, json_object *v, uint8_t **ret,
		   size_t *ret_len);
/* vbk_kv_key_usable against root (the file as read under the lock, in a kv_mutate). */
int kv_usable_in(const vbk_kv *kv, json_object *root, const char *name, uint32_t version, int wrap);

#endif
