/* rewrap.h: replacing the escrow blobs of a recovery point (vmbak rewrap).
 *
 * A point is immutable but for its escrow blobs, which store/ keeps opaque: a key rotation may
 * re-wrap them under another key-encryption key without touching chunks, index or any other
 * field of the record. The point's record (rps2) is rewritten whole in one LMDB commit, so a
 * crash leaves every blob of the point old or every one new, never neither. Thread-safe.
 */
#ifndef VMBAK_STORE_REWRAP_H
#define VMBAK_STORE_REWRAP_H

#include <stddef.h>
#include <stdint.h>

#include "vault.h"

typedef struct vbs_escrow_change {
	unsigned disk;	 /* index of the disk in the point's record */
	const char *old; /* the blob as read (compared before it is replaced) */
	size_t old_len;
	const char *blob; /* the new blob: NUL-terminated, blob_len bytes without the NUL */
	size_t blob_len;
} vbs_escrow_change;

/* In one write transaction: checks that point serial (of VM vm, id id) still exists and that
 * each changed disk still holds old, then replaces those blobs. -ENOENT the point (or an
 * escrow of that disk) is gone, -EAGAIN a blob changed meanwhile (nothing written), -EINVAL
 * bad arguments, else the store's errors. */
int vbs_rp_rewrap(vbs_vault *v, uint64_t serial, const char *vm, const char *id,
		  const vbs_escrow_change *ch, size_t n);

#endif
