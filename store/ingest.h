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
 * With a changed-extents file (or changed extents in memory) for a disk, only those ranges are
 * read, and everything else is taken from the VM's latest point (which must exist and have that
 * disk with the same size). A source object (below) is read the same way through its callbacks.
 *
 * Errors: -EINVAL bad options (the message says which), -ENOENT a source that does not exist,
 * -EBUSY another ingest of the same VM committed first, -ENOSPC the disk is full, else -errno.
 * On any error no point is created and nothing committed before is changed.
 */
#ifndef VMBAK_INGEST_H
#define VMBAK_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "extents.h"
#include "rp.h"
#include "vault.h"

/* ---- sources ----
 *
 * A disk's bytes come from a path (a regular file or a block device, read with pread, holes
 * from SEEK_DATA/SEEK_HOLE) or from a source object the caller gives: an NBD export, an image
 * file read through qemu-nbd, a running VM's fleecing export (tools/src_nbd.h). store/ knows
 * only these callbacks; it calls them from the ingest's own thread (the thread that called
 * vbs_ingest), one call at a time, so a source needs no locking of its own. */

/* One read: len bytes at offset off into buf. */
typedef struct vbs_source_io {
	uint64_t off;
	size_t len;
	void *buf;
} vbs_source_io;

typedef struct vbs_source_ops {
	/* Reads every io of io[0..n) in full (each within [0, size); lengths up to 4 MiB; the
	 * ingest merges neighbouring chunks into one io and passes a whole batch at once, so a
	 * source may run them concurrently and in any order). Returns 0 or -errno, and on error
	 * sets the message with vbs_fail (or leaves it empty: the ingest then says "cannot read").
	 * Required. */
	int (*read)(void *arg, const vbs_source_io *io, size_t n);
	/* Where data is, like SEEK_DATA and SEEK_HOLE: for off < end, *ret_data is the first
	 * offset in [off, end) where the source may hold data (end when [off, end) reads as zeros
	 * only), and *ret_hole the end of that data region (in (*ret_data, end]). Returns 0 or
	 * -errno. Optional: NULL means the whole source is data. */
	int (*map)(void *arg, uint64_t off, uint64_t end, uint64_t *ret_data, uint64_t *ret_hole);
} vbs_source_ops;

/* A source object: owned by the caller, which keeps it valid until vbs_ingest returns. */
typedef struct vbs_source {
	const vbs_source_ops *ops;
	void *arg;
	uint64_t size;	   /* virtual size in bytes, > 0 */
	const char *label; /* names the source in messages: an NBD URI, an image path */
} vbs_source;

typedef struct vbs_ingest_disk {
	const char *name;    /* disk name (vbu_name_valid) */
	const char *path;    /* source: a regular file or a block device; NULL when src is set */
	const char *changed; /* changed-extents file, or NULL */
	const vbs_source *src; /* source object instead of path, or NULL */
	/* Changed extents in memory instead of a file (a dirty bitmap): when changed_ext is not
	 * NULL, only extents changed_ext[0..n_changed_ext) are read (n_changed_ext may be 0:
	 * nothing changed), with the rules of a changed file (extents.h) and the same base
	 * point; changed must then be NULL. Owned by the caller. */
	const vbs_extent *changed_ext;
	size_t n_changed_ext;
	/* How the source is read, kept in the point (manifest.json "read.note"), or NULL:
	 * "incremental: dirty bitmap since point P", "full: no dirty bitmap ...". At most 255
	 * bytes are kept. */
	const char *read_note;
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
	/* The point the caller's changed extents are relative to (a dirty bitmap's): the ingest
	 * fails with -EBUSY unless the VM's latest point is this one ("" : the VM has none).
	 * NULL: no such check. */
	const char *expect_base;
} vbs_ingest_opts;

/* On success *ret is the committed point (caller frees with vbs_rp_free). */
int vbs_ingest(vbs_vault *v, const vbs_ingest_opts *opts, vbs_rp **ret);

/* Asks the kernel to start reading, in the background, the first PREFETCH bytes an ingest of
 * these disks will read: the changed extents of disks with a changed file. Best effort and
 * silent (vbs_ingest reports every problem). Callers run it before the slow vault unlock,
 * so a cold disk's reads overlap the key derivation. */
void vbs_ingest_prefetch(const vbs_ingest_disk *disks, size_t n);

#endif
