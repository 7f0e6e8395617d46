/* sync.h: copying recovery points to a replica (the sending end; replica.h receives).
 *
 * vbs_sync copies every point of the source (or of the VMs named) that the replica lacks, with
 * only the chunks it lacks, frames and sealed records as they are. For each point, under one
 * read transaction of the source (a consistent snapshot: a concurrent ingest, prune or gc of
 * the source neither adds to it nor takes from it):
 *   1. which of the point's chunks the replica has, in batches of VBS_SYNC_HAVE_BATCH ids;
 *   2. the missing frames, in puts of about VBS_SYNC_PUT_BYTES, each pinning in the replica
 *      (gc.h) every chunk of its batch, those sent and those found there, for the sync's job;
 *   3. one commit: the point's records, its index entries, its lineage heads (sealed here
 *      under the shared keys), all in one write of the replica.
 * A point appears in the replica whole or not at all. Points already there are skipped, so a
 * sync cut short (kill -9 of either end, a network cut) resumes where it stopped; chunks that
 * arrived before the cut are found in step 1 and not sent again.
 *
 * Each disk is sent as a delta on its predecessor in the lineage when the replica has that
 * point, else whole (every chunk holding data). Points of a VM go in serial order; a point the
 * replica once received and has since deleted (its own prune) is not sent again: the replica
 * keeps, per VM, the newest serial it received.
 *
 * The replica is reached through call (a request in, a response out: vbs_replica_handle
 * in-process, or a pipe to `vmbak serve`). The source must be unlocked and its environment
 * open. One job record ("sync") is written in the replica, sealed here.
 *
 * Errors: -EPROTO a protocol error or a peer's malformed answer, -EREMOTEIO the replica
 * refused (its message in vbs_errmsg()), else as vault.h. Not thread-safe per vault.
 */
#ifndef VMBAK_SYNC_H
#define VMBAK_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "vault.h"

#define VBS_SYNC_HAVE_BATCH 4096u
#define VBS_SYNC_PUT_BYTES (8u << 20)

/* Sends req (len bytes) and returns the response in *ret (malloc'ed, the caller frees it).
 * A negative errno when the transport failed (then vbs_errmsg() says why). */
typedef int (*vbs_sync_call_fn)(void *arg, const uint8_t *req, size_t len, uint8_t **ret,
				size_t *ret_len);

/* A pipelined transport (may be NULL: then call for everything): send writes one request,
 * recv reads the next response, in order. sync keeps at most one put unanswered. */
typedef int (*vbs_sync_send_fn)(void *arg, const uint8_t *req, size_t len);
typedef int (*vbs_sync_recv_fn)(void *arg, uint8_t **ret, size_t *ret_len);

typedef struct vbs_sync_opts {
	vbs_sync_call_fn call;
	vbs_sync_send_fn send;
	vbs_sync_recv_fn recv;
	void *call_arg;
	const char *const *vms; /* only these VMs (nvms > 0) */
	size_t nvms;
	int keep_going; /* a point that fails: note it, skip the rest of its VM, go on */
	/* --prune: the replica, opened a second time in this process, unlocked with the source's
	 * keys (vbs_vault_unlock_from) and its environment open. After the copy, every point of
	 * the VMs synced that the replica has and the source no longer has is deleted from it
	 * (vbs_rp_delete without force: a point protected in the replica, retained there by its
	 * retain-until, or the newest of its VM stays, and is noted "kept"). NULL: none. */
	vbs_vault *prune;
	/* Called for each point as it is done (may be NULL): "copied", "present", "failed",
	 * "deleted", "kept" (err: why). */
	void (*note)(void *arg, const char *vm, const char *id, const char *what, const char *err);
	void *note_arg;
} vbs_sync_opts;

typedef struct vbs_sync_stats {
	uint64_t points_copied, points_present, points_failed;
	uint64_t chunks_sent, chunk_bytes_sent; /* frames sent and their bytes */
	uint64_t chunks_present;		/* chunks of copied points the replica had */
	uint64_t chunks_added;			/* chunks the replica stored new */
	uint64_t points_deleted, points_kept;	/* --prune */
	uint64_t job;				/* the job id in the replica */
} vbs_sync_stats;

/* Runs a sync. *ret is filled as far as it got, also on failure. With keep_going, failed
 * points make it return -EIO at the end (the first failure's message in vbs_errmsg()). */
int vbs_sync(vbs_vault *src, const vbs_sync_opts *o, vbs_sync_stats *ret);

#endif
