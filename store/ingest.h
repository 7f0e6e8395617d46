/* ingest.h: taking a snapshot of a VM's disks into a new recovery point.
 *
 * For every disk the source (regular file or block device) is read in chunk-size pieces; holes
 * reported by SEEK_DATA/SEEK_HOLE are not read; all-zero chunks are not stored; every other
 * chunk is hashed (HMAC-SHA256 under the vault's id key) and, unless the vault already has it,
 * compressed with zstd where that makes it smaller, encrypted, and stored. Chunks are committed
 * in large batches as they come; the point itself (record and index entries) is committed in
 * one transaction at the end, so a point is visible whole or not at all, and an ingest cut
 * short leaves only unreferenced chunks.
 *
 * With a changed-extents file for a disk, only those ranges are read, and everything else is
 * taken from the VM's latest point (which must exist and have that disk with the same size).
 *
 * Errors: -EINVAL bad options (the message says which), -ENOENT a source that does not exist,
 * -EFBIG a file of opts->files larger than VBS_RP_FILE_MAX, -EBUSY another ingest of the same VM committed first, -ENOSPC the disk is full, else -errno.
 * On any error no point is created and nothing committed before is changed.
 */
#ifndef VMBAK_INGEST_H
#define VMBAK_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "rp.h"
#include "vault.h"

typedef struct vbs_ingest_disk {
	const char *name;    /* disk name (vbu_name_valid) */
	const char *path;    /* source: a regular file or a block device */
	const char *changed; /* changed-extents file, or NULL */
} vbs_ingest_disk;

/* Called once per disk named in the escrow list, inside the commit, when the point's id is
 * final. Returns a malloc'ed blob (owned by store/ afterwards) or a negative errno, which
 * aborts the ingest. */
typedef int (*vbs_escrow_fn)(void *arg, const char *vm, const char *rp_id, const char *disk,
			     char **ret_blob, size_t *ret_len);

/* Progress: bytes done of total so far (of the ranges to read), called from the ingest's own
 * thread a few times a second at most. */
typedef void (*vbs_progress_fn)(void *arg, uint64_t done, uint64_t total);

typedef struct vbs_ingest_opts {
	const char *vm;
	const vbs_ingest_disk *disks;
	size_t n_disks;
	int64_t retain_until; /* seconds since the epoch, 0: none */
	const char *const *escrow_disks; /* disks that get an escrow blob, or NULL */
	size_t n_escrow;
	vbs_escrow_fn escrow;
	void *escrow_arg;
	vbs_progress_fn progress;
	void *progress_arg;
	unsigned threads; /* worker threads; 0: one per online CPU */
	uint64_t job_id;  /* the caller's job (jobs.h; the caller ends it), or 0: the ingest
			   * records and ends a job of its own */
	int64_t created_ns; /* creation time of the point; 0: the clock (tests set others) */
	/* Files kept with the point (rp.h; data NULL: none), at most VBS_RP_FILE_MAX bytes
	 * each; copied, the caller keeps its buffers. */
	vbs_rp_file files[VBS_RP_FILES];
} vbs_ingest_opts;

/* On success *ret is the committed point (caller frees with vbs_rp_free). */
int vbs_ingest(vbs_vault *v, const vbs_ingest_opts *opts, vbs_rp **ret);

/* Asks the kernel to start reading, in the background, the first PREFETCH bytes an ingest of
 * these disks will read: the changed extents of disks with a changed file. Best effort and
 * silent (vbs_ingest reports every problem). Callers run it before the slow vault unlock,
 * so a cold disk's reads overlap the key derivation. */
void vbs_ingest_prefetch(const vbs_ingest_disk *disks, size_t n);

#endif
