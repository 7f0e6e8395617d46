/* pkcs11.h: key-encryption keys held in a PKCS#11 token (an HSM, a smart card, SoftHSM2).
 *
 * A token key is named by an RFC 7512 URI. The URI a user gives to `key create` names the module
 * and the token ("pkcs11:token=escrow;object=kek?module-name=softhsm2"); the URI stored in the key
 * vault for each key version adds the object's label, class and CKA_ID (16 random bytes chosen
 * here, one per version). URIs are hostile input when read from a key vault file: they are
 * parsed with p11-kit's parser and then checked strictly (printable ASCII, at most
 * VBK_P11_URI_MAX bytes, no attribute p11-kit does not know, no pin-value or pin-source, no
 * vendor query attributes).
 *
 * Which module is loaded. Loading a module runs its code, so a module path read from a key vault
 * file is never trusted by itself: a module is loaded only when p11-kit's registry knows it
 * (pkcs11.conf(5), the *.module files of /usr/share/p11-kit/modules and /etc/pkcs11/modules; the
 * URI's module-name= is a registered name, its module-path= must resolve to the same file as a
 * registered module's), or when the user names it in the environment: VMBAK_PKCS11_MODULE=PATH
 * allows that one file (the URI's module-path, if any, must then resolve to it). Without
 * module-name and module-path every allowed module is searched for a token that matches.
 *
 * The PIN comes from VMBAK_PKCS11_PIN_FILE, then VMBAK_PKCS11_PIN, then the terminal (never from
 * the URI or argv); a token with a protected authentication path (a PIN pad) is logged in
 * without one.
 *
 * Key objects made here: RSA key pairs (CKM_RSA_PKCS_KEY_PAIR_GEN, e = 65537) whose private key
 * is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_DECRYPT only; AES-256 keys
 * (CKM_AES_KEY_GEN) CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_WRAP and CKA_UNWRAP only.
 *
 * Operations. RSA: the token decrypts with CKM_RSA_PKCS_OAEP (SHA-256, MGF1-SHA-256, the label as
 * CKZ_DATA_SPECIFIED). A token that refuses those parameters (SoftHSM2 2.6 knows only SHA-1) is
 * asked for the raw RSA operation (CKM_RSA_X_509) and the OAEP decoding is done here, in
 * constant time: the private key stays in the token either way. AES: the token wraps and
 * unwraps with RFC 5649 key wrap with padding (CKM_AES_KEY_WRAP_KWP, or CKM_AES_KEY_WRAP_PAD where
 * the token has only that name for it), the data being a short-lived session object.
 *
 * Errors (negative errno, with a one-line message in vbk_kv_errmsg()): -EINVAL a bad URI, -EPERM
 * a module that is neither registered nor allowed, -ENODEV no token (or more than one) matches,
 * -ENOKEY no PIN source, -EACCES a wrong or locked PIN, -ENOENT no such key object in the token,
 * -EBADMSG a decryption that fails (wrong key or damaged data), -EIO any other token failure.
 *
 * Thread safety: a vbk_p11_key is used by one thread at a time.
 */
#ifndef VMBAK_PKCS11_H
#define VMBAK_PKCS11_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

#define VBK_P11_URI_MAX 1024
#define VBK_P11_ID_LEN 16

/* Checks uri. stored: a URI read from a key vault (must name a key: id= and type=), else a URI
 * given to key create (must not have id=: the ids are chosen here). 0 or -EINVAL with a message. */
int vbk_p11_uri_check(const char *uri, int stored);

typedef struct vbk_p11_key vbk_p11_key;

/* Makes version version of a key of type t in the token that uri (as given to key create)
 * names, with a fresh CKA_ID and the label of the URI's object= (else name), "-vN" added from
 * version 2 on. *ret_uri (malloc'ed) names the new key; for RSA *ret_pub is its
 * SubjectPublicKeyInfo in DER (OPENSSL_free). *ret is the key, open for use. */
int vbk_p11_generate(const char *uri, vbk_key_type t, const char *name, uint32_t version,
		     vbk_p11_key **ret, char **ret_uri, uint8_t **ret_pub, size_t *ret_pub_len);

/* Opens the key a stored uri names (logging in to its token) and checks it is of type t. */
int vbk_p11_open(const char *uri, vbk_key_type t, vbk_p11_key **ret);
/* Logs out, closes the session and the module. NULL is fine. */
void vbk_p11_close(vbk_p11_key *k);
/* Removes the key (both halves of an RSA pair) from the token: used to undo a create that could
 * not be recorded. */
int vbk_p11_destroy(vbk_p11_key *k);

/* RSA: 0 when the token's key has the modulus of the DER public key der, else -EKEYREJECTED. */
int vbk_p11_rsa_match(vbk_p11_key *k, const uint8_t *der, size_t der_len);
/* RSA-OAEP (SHA-256, MGF1-SHA-256, label lab) decryption of in; *io_len: room in out, then the
 * length written. */
int vbk_p11_rsa_decrypt(vbk_p11_key *k, const uint8_t lab[32], const uint8_t *in, size_t len,
			uint8_t *out, size_t *io_len);
/* The software half of the raw RSA fallback: EME-OAEP decoding (RFC 8017 7.1.2, SHA-256,
 * MGF1-SHA-256, label lab) of the em_len-byte encoded message em, changed in place. The
 * message goes to out (*io_len: room, then its length). -EBADMSG for anything but a valid
 * encoding, found in constant time. */
int vbk_p11_oaep_decode(uint8_t *em, size_t em_len, const uint8_t lab[32], uint8_t *out,
			size_t *io_len);
/* AES: RFC 5649 wrap (enc) or unwrap of in (at most 256 bytes) into out (cap bytes). */
int vbk_p11_aes_kwp(vbk_p11_key *k, int enc, const uint8_t *in, size_t len, uint8_t *out,
		    size_t cap, size_t *ret_len);
/* AES: a key check value, SHA-256 of the wrap of a fixed 32-byte value: it names the key
 * material without revealing it. */
int vbk_p11_aes_kcv(vbk_p11_key *k, uint8_t out[32]);

#endif
