/* verify_internal.h: what the files of the verify (verify.c, verify_records.c, verify_chunks.c,
 * verify_report.c) share; not part of the API (verify.h is).
 *
 * One verify is one struct ctx, owned by vbs_verify() and passed to every stage; a stage
 * returns 0 or -errno (-EBADMSG or -EUCLEAN: the database itself is damaged, which ends the
 * verify), and reports what it finds with vbs_vfy_report(). */
#ifndef VMBAK_VERIFY_INTERNAL_H
#define VMBAK_VERIFY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "internal.h"
#include "rp.h"
#include "verify.h"

struct ref {
	uint8_t id[VBS_ID_LEN];
	uint32_t need; /* plaintext bytes the references need (the last chunk of a disk is short) */
};

struct bad {
	uint8_t id[VBS_ID_LEN];
	uint32_t need;
	vbs_verify_kind kind;
	int seen; /* a point still refers to it */
};

struct hit {
	size_t pt; /* index into ctx.pts */
	uint32_t disk;
	vbs_verify_kind kind;
	uint64_t n;
};

struct ctx {
	vbs_vault *v;
	const vbs_verify_opts *o;
	vbs_verify_result *res;
	MDB_txn *txn;
	unsigned ops; /* reads in this transaction */
	uint64_t seq;
	int whole;

	vbs_rp **pts;
	size_t npts, cappts;

	struct ref *refs;
	size_t nrefs, caprefs;
	size_t slice, nslices; /* the references of slice `slice` of `nslices` (internal.h) */
	uint64_t done, total;  /* chunks read in earlier slices; for progress, index entries */

	struct bad *bad;
	size_t nbad, capbad;

	struct hit *hits;
	size_t nhits, caphits;

	uint64_t *dserials; /* serials of points with some problem, for damaged_points */
	size_t ndserials, capdserials;

	uint64_t suppressed;
	int64_t last_progress;
	uint8_t *buf; /* one decoded chunk */
};

/* Reports one problem. vm, rp, disk may be NULL. */
void vbs_vfy_report(struct ctx *c, vbs_verify_kind kind, const char *vm, const char *rp,
		    const char *disk, uint64_t off, uint64_t len, uint64_t chunks, const char *fmt,
		    ...) __attribute__((format(printf, 9, 10)));
/* Growing arrays: *a has *cap elements of size sz; makes room for one more (the first time,
 * first). -ENOMEM. */
int vbs_vfy_grow(void **a, size_t *cap, size_t n, size_t sz, size_t first);
/* Notes a point with some problem, for damaged_points. */
int vbs_vfy_damaged_serial(struct ctx *c, uint64_t serial);
/* A database error while walking: damage of the database itself (-EBADMSG) stops the verify
 * with a message saying where; anything else is a failure to run. Returns the error. */
int vbs_vfy_db_fail(struct ctx *c, int r, const char *where);
/* The read transaction c->txn: begun, ended, and renewed every VBS_VERIFY_TXN_CHUNKS reads
 * (vbs_vfy_txn_due says when; callers close their cursors first). Renewing checks the stop
 * flag: -EINTR. */
int vbs_vfy_txn_begin(struct ctx *c);
void vbs_vfy_txn_end(struct ctx *c);
int vbs_vfy_txn_due(struct ctx *c);
int vbs_vfy_txn_renew(struct ctx *c);
/* Calls the progress callback, a few times a second (or now: force). */
void vbs_vfy_progress(struct ctx *c, uint64_t done, uint64_t total, int force);
/* The number of chunks of a disk of size bytes in chunks of cs bytes. */
uint64_t vbs_vfy_nchunks(uint64_t size, uint32_t cs);
/* mdb_get: 0, -ENOENT, or an error that ends the verify (-EUCLEAN when LMDB finds a page
 * damaged: after that the transaction is unusable). -EBADMSG is left for malformed values. */
int vbs_vfy_get_val(struct ctx *c, MDB_dbi dbi, const void *key, size_t klen, MDB_val *ret);
/* qsort comparison of uint64_t. */
int vbs_vfy_cmp_u64(const void *a, const void *b);
/* Merges c->hits into ranges of consecutive chunks and reports them. */
int vbs_vfy_report_hits(struct ctx *c);
/* Sets res->damaged_points from the serials noted. */
void vbs_vfy_count_damaged_points(struct ctx *c);

/* ---- verify_records.c: the records, the index entries, the group MACs ---- */

/* The meta record "seq". */
int vbs_vfy_check_seq(struct ctx *c);
/* Whole vault: VM, name and lineage records; then the databases no point reads (job history,
 * pins, protections) and LMDB's free list. */
int vbs_vfy_scan_small_dbs(struct ctx *c);
int vbs_vfy_scan_other_dbs(struct ctx *c);
/* The points in scope into c->pts: all of them, or those of VM vm (point id, or all: NULL). */
int vbs_vfy_load_all_points(struct ctx *c);
int vbs_vfy_load_vm_points(struct ctx *c, const char *vm, const char *id);
/* The records a point leans on agree with it. < 0 only for failures to run. */
int vbs_vfy_check_point(struct ctx *c, const vbs_rp *rp);
/* The index entries: all of them (all), or those of lineage only_lineage. */
int vbs_vfy_scan_index(struct ctx *c, uint64_t only_lineage, int all);
/* Every group of every disk of every point against its MAC. */
int vbs_vfy_check_maps(struct ctx *c);

/* ---- verify_chunks.c: walking the disks, reading the chunks ---- */

/* Called for chunk n of disk di of point pt: id is its chunk id, or NULL when its index entry
 * has a value that is neither empty nor an id. */
typedef int (*walk_fn)(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id);

/* Every data chunk of every disk of every point in scope, in order, through fn. */
int vbs_vfy_walk_all(struct ctx *c, walk_fn fn);
/* walk_fn collecting the ids referred to into c->refs; vbs_vfy_refs_compact sorts and
 * deduplicates them. */
int vbs_vfy_collect_fn(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id);
void vbs_vfy_refs_compact(struct ctx *c);
/* walk_fn mapping the bad chunks back to (point, disk, chunk number) in c->hits. */
int vbs_vfy_map_fn(struct ctx *c, size_t pt, size_t di, uint64_t n, const uint8_t *id);
/* Keeps a random sample of c->refs (opts->sample percent), in id order. */
int vbs_vfy_sample(struct ctx *c);
/* Reads each chunk of c->refs once; the bad ones into c->bad. */
int vbs_vfy_read_chunks(struct ctx *c);
/* Reads each bad chunk again in a fresh transaction (gc and an ingest may have replaced it);
 * keeps only those still bad, sorted by id. */
int vbs_vfy_recheck_bad(struct ctx *c);

#endif
