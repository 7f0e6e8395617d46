/* chunkstore.h: where chunk frames live: put, get, exists, delete by id.
 *
 * This is the one seam between the vault's metadata (always LMDB) and the bodies of chunks
 * (LMDB today, chunkstore_lmdb.c; an object store such as Ceph RADOS later, as a new file
 * implementing the same functions). Nothing else in store/ touches the chunks database.
 *
 * Chunk statistics (count, stored bytes, plaintext bytes) are kept by the chunk store.
 * Thread safety: get and exists are thread-safe; put_batch and del are called by one writer.
 */
#ifndef VMBAK_CHUNKSTORE_H
#define VMBAK_CHUNKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "internal.h"

/* Calls fn with the frame of id; the frame is valid only during the call. txn: a read
 * transaction of the caller (the LMDB store reads in it; others ignore it). -ENOENT if absent;
 * otherwise fn's return value. */
typedef int (*vbs_frame_fn)(void *arg, const void *frame, size_t len);
int vbs_cs_get(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], vbs_frame_fn fn,
	       void *arg);
/* The same, reading the frame through fd (from vbs_cs_open_fd; -1: the store's own). A
 * sequential reader with a descriptor of its own gets the kernel's read-ahead to itself. */
int vbs_cs_get_at(vbs_vault *v, MDB_txn *txn, int fd, const uint8_t id[VBS_ID_LEN],
		  vbs_frame_fn fn, void *arg);
/* A new read-only descriptor of the store's file, or -errno. */
int vbs_cs_open_fd(vbs_vault *v);

/* present[i] = 1 when ids[i] is stored. */
int vbs_cs_exists(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN], uint8_t *present);

/* A chunk to put. */
typedef struct vbs_cs_item {
	const uint8_t *id;
	const void *frame;
	size_t len;
	uint32_t plain_len;
} vbs_cs_item;

/* Stores every item that is not stored yet, durably (one commit); the others are skipped.
 * *ret_added and *ret_added_bytes: how many were new and their frame bytes. */
int vbs_cs_put_batch(vbs_vault *v, const vbs_cs_item *items, size_t n, uint64_t *ret_added,
		     uint64_t *ret_added_bytes);

/* As vbs_cs_put_batch, and in the same commit (gc.h): checks that each of the ncheck ids in
 * check (chunks the caller found stored and reuses) is still stored, and pins every id of
 * items and check for job. -ESTALE (nothing committed) when a checked chunk is gone: the
 * caller looks again and stores it. */
int vbs_cs_put_pinned(vbs_vault *v, const vbs_cs_item *items, size_t n,
		      const uint8_t (*check)[VBS_ID_LEN], size_t ncheck, uint64_t job,
		      uint64_t *ret_added, uint64_t *ret_added_bytes);

/* Removes a chunk inside the caller's write transaction (gc). -ENOENT if absent. */
int vbs_cs_del(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], size_t *ret_len);

#endif
