/* imap.h: the checked chunk map of one disk of one point (format 2).
 *
 * The versioned index (index.h) says which chunk holds each piece of a disk, but its entries
 * carry no tag of their own: swapped, deleted, replayed or re-pointed entries would read as
 * other data. So each disk of each point commits to its whole map, in groups of
 * VBS_GROUP_CHUNKS chunks:
 *
 *   MAC(g) = first 16 bytes of HMAC-SHA256(index key,
 *              "vmbak-group v2" NUL | u64 lineage | u64 g |
 *              for each chunk n of the group holding data, in order: u64 n | 32-byte id |
 *              u64 count of those chunks)
 *
 * over the group as the index resolves it for that point (holes and tombstones contribute
 * nothing: they read as zeros). Database dmaps holds, per point serial and disk number
 * (u64 serial | u16 disk), the disk's MACs of every group in order, sealed (seal.h): bound to
 * the point and the disk, complete, and unchangeable. The point's record is sealed too and
 * names the lineage and the size, so nothing that decides what a disk reads is left outside
 * a tag. A MAC names the lineage and the group, not the point: a point whose group did not
 * change since its predecessor has the same MAC, and ingest copies it.
 *
 * A reader resolves a whole group the first time it touches it, recomputes its MAC, and serves
 * nothing from it unless it matches (-EBADMSG). Checked groups stay in a cache of the vault
 * (32 MiB, about 1000 groups: 64 GiB of disk at 64 KiB chunks), keyed by lineage, group and
 * MAC, so reads after the first look a chunk up in memory, for every point sharing the group.
 *
 * Thread safety: a vbs_imap may be used from many threads at once (its cache is locked);
 * each call runs in the caller's transaction. Errors: -EBADMSG damage, -ENOMEM, else LMDB's.
 */
#ifndef VMBAK_IMAP_H
#define VMBAK_IMAP_H

#include <stdint.h>

#include "chunk.h"
#include "index.h"
#include "internal.h"

#define VBS_GROUP_CHUNKS 1024u
#define VBS_GROUP_MAC_LEN 16

/* Chunks and groups of a disk of size bytes. */
uint64_t vbs_disk_chunks(uint64_t size, uint32_t cs);
uint64_t vbs_disk_groups(uint64_t size, uint32_t cs);

/* Group g of (lineage, serial) of a disk of nchunks chunks as the index in c's transaction
 * resolves it: its MAC, its count of data chunks, and (when ids is not NULL) the id of each
 * chunk, with data[k] 1 for chunks holding data (ids and data have room for VBS_GROUP_CHUNKS). */
int vbs_group_resolve(vbs_vault *v, MDB_cursor *c, uint64_t lineage, uint64_t serial,
		      uint64_t nchunks, uint64_t g, uint8_t mac[VBS_GROUP_MAC_LEN],
		      uint64_t *ret_count, uint8_t (*ids)[VBS_ID_LEN], uint8_t *data);

/* The MAC of group g of a disk of nchunks chunks whose content is given: data[k] says whether
 * chunk g * VBS_GROUP_CHUNKS + k holds data, ids[k] its id (both VBS_GROUP_CHUNKS long). */
int vbs_group_mac(vbs_vault *v, uint64_t lineage, uint64_t g, uint64_t nchunks,
		  const uint8_t (*ids)[VBS_ID_LEN], const uint8_t *data,
		  uint8_t mac[VBS_GROUP_MAC_LEN], uint64_t *ret_count);

/* dmaps: the MACs of a disk (ngroups of them). get: -ENOENT none, -EBADMSG damaged or of
 * another length; *ret is malloc'ed. */
int vbs_dmap_get(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk, uint64_t ngroups,
		 uint8_t **ret);
int vbs_dmap_put(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk, const uint8_t *macs,
		 uint64_t ngroups);
int vbs_dmap_del(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk);

typedef struct vbs_imap vbs_imap;

/* The map of disk number disk (lineage, size) of point serial: loads its MACs in txn. */
int vbs_imap_new(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk, uint64_t lineage,
		 uint64_t size, vbs_imap **ret);
void vbs_imap_free(vbs_imap *m);

/* Chunk n (< the disk's chunks): *ret_data and id. */
int vbs_imap_lookup(vbs_imap *m, MDB_txn *txn, uint64_t n, uint8_t id[VBS_ID_LEN], int *ret_data);
/* The first chunk at or after n that holds data (want_data 1) or is a hole (0); the disk's
 * chunk count when none. */
int vbs_imap_next(vbs_imap *m, MDB_txn *txn, uint64_t n, int want_data, uint64_t *ret_n);
/* Group g, checked against its MAC, copied out (ids and data as for vbs_group_mac). */
int vbs_imap_group(vbs_imap *m, MDB_txn *txn, uint64_t g, uint8_t (*ids)[VBS_ID_LEN],
		   uint8_t *data);
/* Checks group g: 0, or -EBADMSG when it does not match its MAC. */
int vbs_imap_check(vbs_imap *m, MDB_txn *txn, uint64_t g, uint64_t *ret_count);
/* The disk's group MACs (vbs_disk_groups of them), owned by m. */
const uint8_t *vbs_imap_macs(const vbs_imap *m);
uint64_t vbs_imap_groups(const vbs_imap *m);

#endif
