/* verify.h: checking that a vault, a VM or one recovery point is whole.
 *
 * vbs_verify() reads and authenticates every chunk the points in scope refer to, each distinct
 * chunk exactly once however many points and disks share it (or a random sample of them), and
 * checks the records around them:
 *
 *   - every point record parses, names its own serial, has the vault's chunk size, and agrees
 *     with the name record (rpnames), the VM record (vms) and the lineage of each disk;
 *     its manifest renders as valid JSON;
 *   - whole vault only: every VM record, name record, lineage record and index entry is
 *     well-formed, and every name record leads to a point that carries that name; the job
 *     history, pins, protections and LMDB's free list are walked (a damaged page there would
 *     fail the next write) and job records must decode;
 *   - every index entry of the lineages in scope is well-formed (24-byte key, value empty or
 *     a 32-byte id, chunk number within the disk's size, lineage known);
 *   - every chunk: present, its frame authenticates (AES-GCM tag over the id, or the keyed hash
 *     recomputed in an unencrypted vault), and it holds at least the bytes its place in each
 *     disk needs (only the last chunk of a disk is short).
 *
 * Damage is reported through opts->problem, once per problem. For damaged chunks and index
 * entries that is one call per (point, disk, byte range) affected: consecutive damaged chunks
 * of one disk of one point are merged into one range. Which points and disks a damaged chunk
 * affects is found by walking the points in scope again, only when there is damage.
 *
 * Read transactions are short (renewed every VBS_VERIFY_TXN_CHUNKS chunks or index entries),
 * so a long verify pins no pages and blocks neither ingest nor gc. A point deleted while it is
 * verified is skipped; a chunk that reads bad is read again in a fresh transaction before it
 * is reported, and reported only when a point that still exists refers to it.
 *
 * Memory: 36 bytes per distinct chunk referenced (a sorted array of ids), plus one chunk.
 * Thread safety: one call per vault handle at a time is fine alongside readers of the same
 * handle and writers anywhere (it only reads).
 */
#ifndef VMBAK_VERIFY_H
#define VMBAK_VERIFY_H

#include <stdint.h>

#include "vault.h"

#define VBS_VERIFY_TXN_CHUNKS 4096

typedef enum vbs_verify_kind {
	VBS_VERIFY_CHUNK_BAD = 1, /* fails authentication or decompression, or is too short */
	VBS_VERIFY_CHUNK_MISSING, /* the index names a chunk the store does not have */
	VBS_VERIFY_INDEX,	  /* a malformed or impossible index entry */
	VBS_VERIFY_RECORD,	  /* a damaged or inconsistent record: point, name, VM, lineage */
} vbs_verify_kind;

/* What vbs_verify_kind says, for messages: "chunk fails authentication", ... */
const char *vbs_verify_kind_name(vbs_verify_kind kind);

typedef struct vbs_verify_problem {
	vbs_verify_kind kind;
	const char *vm;	    /* the VM affected, or NULL when not known */
	const char *rp;	    /* the point affected, or NULL */
	const char *disk;   /* the disk affected, or NULL (then off, len, chunks are 0) */
	uint64_t off, len;  /* the bytes of the disk affected: [off, off + len) */
	uint64_t chunks;    /* the chunks of that range that are damaged */
	const char *detail; /* one line describing it, never NULL */
} vbs_verify_problem;

/* Called once per problem, from the calling thread; p and its strings are valid during the
 * call only. */
typedef void (*vbs_verify_problem_fn)(void *arg, const vbs_verify_problem *p);
/* Chunks read so far of total, a few times a second at most. */
typedef void (*vbs_verify_progress_fn)(void *arg, uint64_t done, uint64_t total,
				       uint64_t done_bytes);

typedef struct vbs_verify_opts {
	const char *vm; /* NULL: the whole vault */
	const char *rp; /* with vm: one point (an id, or "latest"); NULL: every point of vm */
	double sample;	/* percent of the distinct chunks to read, in (0, 100]; 0 means 100 */
	uint64_t seed;	/* of the sample; 0: a random seed (returned in the result) */
	vbs_verify_problem_fn problem;
	void *problem_arg;
	vbs_verify_progress_fn progress;
	void *progress_arg;
	/* When *stop becomes non-zero (a signal handler sets it), vbs_verify stops at the next
	 * chunk it reads (or within VBS_VERIFY_TXN_CHUNKS index entries) with -EINTR. NULL:
	 * never. */
	const volatile int *stop;
} vbs_verify_opts;

typedef struct vbs_verify_result {
	uint64_t points, disks;	    /* in scope */
	uint64_t records;	    /* records checked (points, names, VMs, lineages) */
	uint64_t index_entries;	    /* index entries checked */
	uint64_t chunks_referenced; /* distinct chunks the points in scope refer to */
	uint64_t chunks_checked;    /* read and authenticated (all, or the sample) */
	uint64_t bytes_checked;	    /* their plaintext bytes */
	uint64_t chunks_bad, chunks_missing;
	uint64_t bad_index, bad_records;
	uint64_t damaged_points; /* distinct points some problem affects */
	uint64_t problems;	 /* calls made to opts->problem */
	uint64_t seed;		 /* the sample's seed (0 when not sampling) */
} vbs_verify_result;

/* Verifies; returns 0 when the check ran to the end, whatever it found: the vault is whole
 * exactly when ret->problems is 0. The vault must be unlocked (-ENOKEY otherwise).
 * Errors: -ENOENT no such VM or point, -EINVAL bad options, -EINTR stopped (opts->stop),
 * -EBADMSG the database itself is too damaged to go on (LMDB reports a corrupt page; the
 * message says where), -ENOMEM, else
 * as vault.h. On error *ret holds what was counted so far and problems found so far have been
 * reported. */
int vbs_verify(vbs_vault *v, const vbs_verify_opts *opts, vbs_verify_result *ret);

/* Parses an index entry (see index.h): -EBADMSG unless the key is 24 bytes and the value
 * empty (a hole) or a chunk id; *ret_data says which. Outputs may be NULL. */
int vbs_verify_idx_entry(const void *key, size_t klen, const void *val, size_t vlen,
			 uint64_t *ret_lineage, uint64_t *ret_n, uint64_t *ret_serial,
			 int *ret_data);

#endif
