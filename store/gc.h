/* gc.h: garbage collection of chunks no recovery point refers to, and the pins that keep the
 * chunks of ingests in progress.
 *
 * Referenced chunks are the ids in the values of idx (deleting a point removes its entries,
 * so idx holds only live points' entries). An ingest in progress uses chunks no committed
 * point may refer to yet: the ones it stores and the ones it found already stored and reuses.
 * It pins every one of them: in the same write transaction that stores its batch it re-checks
 * that each reused chunk still exists (else it stores it again) and writes a pin
 * (pins: u64 job id | chunk id -> empty) for every chunk of the batch.
 *
 * gc, one at a time (meta "gc" names the running gc's job; a gc whose process died no longer
 * counts):
 *   1. a write transaction registers the gc in meta "gc" and drops the pins of every job that
 *      has ended or whose process died;
 *   2. mark: one read transaction, begun after 1 committed, lists every id in idx and every
 *      stored chunk (vbs_cs_iterate: a chunk store may also list chunks put since, which are
 *      pinned, see below);
 *   3. sweep: the stored chunks that are not marked are deleted in short write transactions
 *      (VBS_GC_BATCH chunks each) that skip any chunk pinned at that moment;
 *   4. a write transaction unregisters the gc and again drops the pins of jobs that ended.
 * Steps 2 and 3 run once per slice of the chunk-id space (vbs_id_slice, internal.h; one slice
 * per about a million index entries or stored chunks), each with its own snapshot and only
 * the ids of its slice, so that gc's memory stays bounded however large the vault; what
 * follows holds for each slice's mark and sweep.
 * An ingest's final commit drops its own pins only when no live gc is registered; else they
 * stay until step 4 (or the next gc's step 1).
 *
 * Why no chunk in use is freed: a chunk deleted in step 3 was stored at the mark snapshot,
 * referenced by no point committed before it, and unpinned at the delete. A point committed
 * before the mark snapshot is in the mark. A point committed after it was committed after
 * step 1 (the snapshot follows step 1), so its ingest saw the gc registered and kept its pins
 * until step 4, which follows every delete: each chunk it refers to was pinned, in the same
 * transaction that checked the chunk exists (the hook of vbs_cs_put, vbs_pins_take), before
 * that commit; a delete transaction
 * serialised before that pin made the ingest see the chunk missing and store it again.
 * Chunks inherited by an incremental ingest from its base are referenced by the base, the
 * lineage's head; if the base is deleted before the ingest commits, the commit fails with
 * -EBUSY. Readers never block gc: LMDB keeps the pages of a live read transaction, so a
 * reader of a point that a delete just removed finishes its read.
 *
 * Errors: -EBUSY another gc is running, else as vault.h.
 */
#ifndef VMBAK_GC_H
#define VMBAK_GC_H

#include <stdint.h>

#include "vault.h"

#define VBS_GC_BATCH 512

typedef struct vbs_gc_stats {
	uint64_t chunks;	/* stored chunks at the mark */
	uint64_t referenced;	/* of them, referenced by a point */
	uint64_t pinned;	/* unreferenced but pinned by an ingest in progress: kept */
	uint64_t freed;		/* deleted */
	uint64_t freed_bytes;	/* their stored size */
	uint64_t pins_released; /* pins of ended jobs dropped */
} vbs_gc_stats;

/* Runs a gc as job job_id (vbs_job_begin; 0: none recorded, the gc then records its own). */
int vbs_gc(vbs_vault *v, uint64_t job_id, vbs_gc_stats *ret);

#endif
