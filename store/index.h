/* index.h: which chunk holds each piece of each disk of each point.
 *
 * The index is versioned rather than copied. A disk belongs to a lineage: the sequence of
 * points of one VM that have a disk of that name and size, each ingested on top of the one
 * before. Database idx holds entries
 *
 *   key   u64 lineage | u64 chunk number | u64 ~serial      (24 bytes, big-endian)
 *   value 32-byte chunk id, or empty for a hole
 *
 * written by the point with that serial only for chunks that differ from its predecessor in the
 * lineage. The content of chunk n of the disk as of point s is the entry for (lineage, n) with
 * the largest serial <= s; none means a hole. Storing ~serial makes that the first key at or
 * after (lineage, n, ~s): one cursor seek, O(log n). An incremental point costs index space
 * in proportion to what changed; a full ingest of an unchanged disk writes no entry at all.
 *
 * Database lineages2 holds (sealed, seal.h), per lineage, the serial of its newest point (its head) and the disk
 * size: a new point continues a lineage only from its head, so what it inherits is exactly
 * what the head shows.
 *
 * All functions run inside the caller's transaction. Errors: -EBADMSG for a malformed entry,
 * else from LMDB (vbs_mdb_err). Readers go through imap.h's checked groups, never the entries
 * alone.
 */
#ifndef VMBAK_INDEX_H
#define VMBAK_INDEX_H

#include <stdint.h>

#include "chunk.h"
#include "internal.h"

#define VBS_IDX_KEY_LEN 24

void vbs_idx_key(uint8_t k[VBS_IDX_KEY_LEN], uint64_t lineage, uint64_t n, uint64_t serial);

/* Seeks to the first entry at or after (lineage, n, ~serial): 1 with the entry's chunk number,
 * serial and value when it is in the lineage, 0 when the lineage has nothing at or after. */
int vbs_idx_seek(MDB_cursor *c, uint64_t lineage, uint64_t n, uint64_t serial, uint64_t *ret_n,
		 uint64_t *ret_serial, MDB_val *ret_val);
/* An entry's value: *ret_data 1 and id (when not NULL) filled, or 0 for a hole; -EBADMSG. */
int vbs_idx_value(const MDB_val *d, uint8_t *id, int *ret_data);

/* Calls fn for every chunk of (lineage, serial) that holds data, in chunk order. A non-zero
 * return of fn stops the walk and is returned. */
typedef int (*vbs_idx_fn)(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN]);
int vbs_idx_walk(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t serial, vbs_idx_fn fn,
		 void *arg);

/* Writes the entry of point serial for chunk n (id NULL: a hole). */
int vbs_idx_put(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t serial, uint64_t n,
		const uint8_t *id);

/* Lineage heads. -ENOENT when the lineage has none. */
int vbs_lineage_get(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t *ret_head,
		    uint64_t *ret_size);
int vbs_lineage_set(vbs_vault *v, MDB_txn *txn, uint64_t lineage, uint64_t head, uint64_t size);
int vbs_lineage_del(vbs_vault *v, MDB_txn *txn, uint64_t lineage);

#endif
