/* prefetch.h: decoded chunks for the vault's readers: the shared cache of decoded chunks
 * (cache.h) and the threads that decode ahead of sequential readers.
 *
 * Owned by the vault: made on the first image open (vbs_readers_start), stopped before the
 * vault's environment closes (vbs_prefetch_stop, vault.c), so a command that reads no image
 * starts no thread. image.c decides what to decode ahead (it sees a reader's pattern); the
 * threads here do it, each job in its own short read transaction, guarded (dbguard.h) so that
 * a damaged page fails that look-ahead and not the process.
 *
 * Thread safety: every function may be called from any thread, except that vbs_prefetch_stop
 * runs once no reader is left.
 */
#ifndef VMBAK_PREFETCH_H
#define VMBAK_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "chunkstore.h"

/* Decoding ahead: after PF_STREAK small reads in a row (at most PF_SMALL bytes each) a reader
 * queues the chunks of the next PF_AHEAD bytes, PF_BATCH at most after one read. */
#define VBS_PF_AHEAD (2u << 20)
#define VBS_PF_STREAK 2
#define VBS_PF_SMALL (256u << 10)
#define VBS_PF_BATCH 64

/* One chunk to decode ahead: its id (from a checked map) and the point it belongs to (the job
 * is dropped once that point is deleted). */
typedef struct vbs_pf_job {
	uint64_t serial;
	uint8_t id[VBS_ID_LEN];
} vbs_pf_job;

/* Makes the vault's cache (v->cache, of v->cache_bytes) and starts its prefetch threads, once.
 * -ENOMEM for the cache; threads that cannot start only mean no decoding ahead. */
int vbs_readers_start(vbs_vault *v);

/* Stops and joins the prefetch threads (NULL-safe, idempotent). The cache stays the vault's. */
void vbs_prefetch_stop(vbs_vault *v);

/* 1 when jobs queued now would be run (the threads are up). */
int vbs_prefetch_running(vbs_vault *v);

/* Queues n jobs; what does not fit in the bounded queue is dropped. */
void vbs_prefetch_queue(vbs_vault *v, const vbs_pf_job *jobs, size_t n);

/* A held cache entry (vbs_cache_release it) with the decoded chunk id, from the cache or read
 * in txn through rd (NULL: the store's shared reader), authenticated and added to the cache.
 * -EBADMSG for a damaged or missing chunk, -ENOMEM, or the chunk store's error. */
int vbs_chunk_cached(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
		     vbs_cache_entry **ret);

/* 0 when point serial exists in txn, -ENOENT once deleted (lifecycle.h), or an error. */
int vbs_point_exists(vbs_vault *v, MDB_txn *txn, uint64_t serial);

#endif
