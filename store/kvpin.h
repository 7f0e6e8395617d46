/* kvpin.h: what a vault remembers of the key vaults it escrows to (trust on first use).
 *
 * A key vault signs its public content with an Ed25519 key whose private half is sealed under
 * the key vault's passphrase, and counts its changes in a generation that only grows (kv.h).
 * Ingest, which runs without that passphrase, checks the signature and then asks the vault: the
 * first time a key vault id is seen, the fingerprint of its signing key and the generation are
 * recorded; later, another fingerprint (the key vault was replaced by someone who lacks its
 * passphrase) or a lower generation (an older copy of the file was put back) is refused, and a
 * higher generation is recorded.
 *
 * Stored in the meta database: key "kvpin:" + key vault id, value the 32-byte fingerprint
 * (SHA-256 of the raw Ed25519 public key) then the generation as a big-endian u64.
 */
#ifndef VMBAK_STORE_KVPIN_H
#define VMBAK_STORE_KVPIN_H

#include <stdint.h>

#include "vault.h"

#define VBS_KVPIN_FPR_LEN 32

/* In one write transaction: records (kv_id, fpr, generation) when new, or checks it against the
 * record: -EKEYREJECTED another fingerprint, -ESTALE a lower generation (nothing written either
 * way); a higher generation is recorded. *ret_seen (may be NULL) is the generation recorded
 * before the call (0 when none). -EINVAL for a bad kv_id, else the store's errors. */
int vbs_kvpin_check(vbs_vault *v, const char *kv_id, const uint8_t fpr[VBS_KVPIN_FPR_LEN],
		    uint64_t generation, uint64_t *ret_seen);

#endif
