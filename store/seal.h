/* seal.h: metadata a stolen or tampered vault must neither tell nor change (format 2).
 *
 * Every record of a vault but the chunk frames (which carry their own tags) and the index
 * entries (which the per-disk group MACs of imap.h cover) is sealed: its value is
 *
 *   nonce (12) | AES-256-GCM ciphertext of the plaintext | tag (16)
 *
 * under the vault's metadata key, with the associated data
 *
 *   "vmbak-meta v2" NUL | vault uuid (36) | NUL | database name | NUL | the record's key
 *
 * so a value is bound to its vault, its database and its key: moved to another key (a swap,
 * a splice, a duplicate), to another database or to another vault, it no longer opens, and
 * one flipped bit anywhere fails the tag. Names never appear in keys: the VM and point names
 * that key a lookup are replaced by keyed hashes of them (vbs_name_hash).
 *
 * Keys (all derived from one vault secret with HMAC-SHA256 and a label, see vault.c):
 *   meta key  seals values          HMAC(root, "vmbak meta key v2")
 *   name key  hashes names in keys  HMAC(root, "vmbak name key v2")
 *   index key the group MACs        HMAC(root, "vmbak index key v2")
 * The root is the data key of an encrypted vault; an unencrypted vault's id key, which its
 * config holds in clear: there the seals stop damage, not an attacker.
 *
 * All functions are thread-safe. Errors: -EBADMSG a value that does not open (damaged, moved,
 * or made with another key), -ENOENT (get) no such key, -ENOMEM, else from LMDB.
 */
#ifndef VMBAK_SEAL_H
#define VMBAK_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define VBS_SEAL_OVERHEAD (VBK_NONCE_LEN + VBK_TAG_LEN)
#define VBS_NAME_HASH_LEN 16

/* Seals plain (plen bytes) for db[key]: *ret is malloc'ed, *ret_len = plen + overhead. */
int vbs_seal(vbs_vault *v, const char *db, const void *key, size_t klen, const void *plain,
	     size_t plen, uint8_t **ret, size_t *ret_len);
/* Opens a sealed value of db[key]: *ret is malloc'ed with one NUL byte past *ret_len (so a
 * JSON text can be parsed in place); free it with vbs_unsealed_free (it wipes). */
int vbs_unseal(vbs_vault *v, const char *db, const void *key, size_t klen, const void *val,
	       size_t vlen, uint8_t **ret, size_t *ret_len);
void vbs_unsealed_free(uint8_t *p, size_t len);

/* mdb_put of a sealed value; flags as mdb_put's. */
int vbs_sput(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const char *db, const void *key,
	     size_t klen, const void *plain, size_t plen, unsigned flags);
/* mdb_get and open. */
int vbs_sget(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const char *db, const void *key,
	     size_t klen, uint8_t **ret, size_t *ret_len);
/* A sealed value of exactly len bytes into out (small fixed records). */
int vbs_sget_fixed(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const char *db, const void *key,
		   size_t klen, void *out, size_t len);

/* The keyed hash of a name (what, a label, keeps the kinds apart): the first
 * VBS_NAME_HASH_LEN bytes of HMAC(name key, what NUL data). */
int vbs_name_hash(vbs_vault *v, const char *what, const void *data, size_t len,
		  uint8_t out[VBS_NAME_HASH_LEN]);

/* Database names of format 2 (their values are sealed under these names). */
#define VBS_DB_VMS "vms2"
#define VBS_DB_RPS "rps2"
#define VBS_DB_NAMES "rpnames2"
#define VBS_DB_LINEAGES "lineages2"
#define VBS_DB_JOBS "jobs2"
#define VBS_DB_PROTECT "protect2"
#define VBS_DB_DMAPS "dmaps"

#endif
