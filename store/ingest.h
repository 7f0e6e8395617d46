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
 * -EBUSY another ingest of the same VM committed first, -ENOSPC the disk is full, else -errno.
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
} vbs_ingest_opts;

/* On success *ret is the committed point (caller frees with vbs_rp_free). */
int vbs_ingest(vbs_vault *v, const vbs_ingest_opts *opts, vbs_rp **ret);

/* Asks the kernel to start reading, in the background, the first PREFETCH bytes an ingest of
 * these disks will read: the changed extents of disks with a changed file. Best effort and
 * silent (vbs_ingest reports every problem). Callers run it before the slow vault unlock,
 * so a cold disk's reads overlap the key derivation. */
void vbs_ingest_prefetch(const vbs_ingest_disk *disks, size_t n);

/* Changed-extents files: text lines "OFFSET LENGTH [TYPE [DESCRIPTION]]" in decimal (or 0x
 * hex), as `nbdinfo --map` prints them; with a TYPE, only lines whose type has bit 0 set
 * (dirty) count; blank lines and lines starting with '#' are ignored. The result is sorted,
 * merged, clipped to size, and aligned outwards to align bytes. */
typedef struct vbs_extent {
	uint64_t off, len;
} vbs_extent;
/* Parses text of len bytes. On error *ret_line is the 1-based line at fault. free() *ret. */
int vbs_extents_parse(const char *text, size_t len, uint64_t size, uint64_t align,
		      vbs_extent **ret, size_t *ret_n, size_t *ret_line);

#endif
