/* internal.h: what the files of store/ share and nothing outside store/ may include.
 *
 * LMDB environment (VAULT/data.mdb), named databases; every integer in keys and values is
 * big-endian, so keys sort numerically. The full byte layout is in man/vmbak-vault.5.
 *
 *   meta      "seq"     -> u64: last number handed out (VM numbers, lineages, point serials)
 *             "config"  -> sealed: the config's bound fields (vault.c), checked at open
 *   vms2      H(VM name) -> sealed: u64 VM number, i64 created (ns), the name
 *   rps2      u64 serial -> sealed: recovery point record (JSON, see rp.c)
 *   rpnames2  H(VM name) | H(VM name, point id) -> sealed: u64 serial, the id
 *   lineages2 u64 lineage -> sealed: u64 head serial, u64 disk size
 *   idx       u64 lineage, u64 chunk number, u64 ~serial -> 32-byte chunk id, or empty (hole)
 *   dmaps     u64 serial | u16 disk -> sealed: the disk's group MACs (imap.h)
 *   jobs2     u64 job id -> sealed: job record (JSON, see jobs.h)
 *   pins      u64 job id | 32-byte chunk id -> empty: chunks an ingest uses (see gc.h)
 *   protect2  u64 point serial -> sealed: i64 time protected (s) (see lifecycle.h)
 *   meta      "gc"      -> u64 job id of the gc running now (see gc.h)
 * Chunk frames, and their statistics, belong to the chunk store (chunkstore.h), which alone
 * names where it keeps them (chunkstore_lmdb.c: two databases and a meta key).
 * Sealed values and keyed name hashes: seal.h. Format 1 (before sealing) used the names
 * vms, rps, rpnames, lineages, jobs, protect with plain values; only upgrade.c reads them.
 *
 * What one unit offers the other store/ files has a private header named for it: rp_db.h (point
 * and VM records in a transaction), jobs_db.h (job records), pins.h (ingest pins), and
 * verify_internal.h, imap.h, index.h, seal.h... This one holds only what most of them share.
 *
 * No pointer into LMDB's map leaves store/: values are decoded or copied inside the transaction.
 */
#ifndef VMBAK_STORE_INTERNAL_H
#define VMBAK_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "util.h"
#include "vault.h"
#include "vaultkey.h"

typedef struct vbs_cache vbs_cache;

/* One passphrase of an encrypted vault: "keys"[i] of the config (man/vmbak-vault.5). */
typedef struct vbs_key_slot {
	char name[VBS_NAME_MAX + 1];
	char created[24]; /* "YYYY-MM-DDTHH:MM:SSZ" */
	vbk_wrapped_vaultkeys wrapped;
} vbs_key_slot;

struct vbs_vault {
	char *path;
	char uuid[40];
	uint32_t chunk_size;
	int encrypted;
	int readonly;
	int unlocked;
	vbk_vaultkeys keys;
	/* The key slots of an encrypted vault: each wraps keys under one passphrase. */
	vbs_key_slot *slots;
	size_t nslots;
	/* "keys" was one object (format 1, and format 2 before key slots): one slot, bound to
	 * the config's bound text alone. Rewritten as an array by the next key change. */
	int slots_legacy;
	int slot_opened;      /* the slot that unlocked the vault, -1 before */
	char created[24];     /* the config's "created", "" when absent or malformed */
	vbk_hmac *id_mac;  /* chunk ids: HMAC-SHA256 under the id key */
	vbk_hmac *key_mac; /* per-chunk AES keys: HMAC-SHA256 under the data key */
	/* Format 2 metadata (seal.h): the key that seals records, the keyed hashes of names,
	 * the group MACs of the index (imap.h). Derived at unlock. */
	uint8_t meta_key[VBK_KEY_LEN];
	vbk_hmac *name_mac;
	vbk_hmac *idx_mac;
	int format;	     /* 1: an old vault that only vmbak upgrade opens; 2: current */
	int dedup_vm;	     /* dedup scope "vm": chunk ids keyed per VM (vbs_vm_id_mac) */
	/* A replica (vmbak init --replica-of): its config is its source's, uuid included, plus
	 * "replica": {"of", "site", "created", "source_chunks"}; site is the replica's own uuid.
	 * Its "chunks" are its own (a RADOS replica has its own pool or namespace). */
	int replica;
	char site[40];
	char replica_created[24];

	MDB_env *env;
	MDB_dbi dbi_meta, dbi_vms, dbi_rps, dbi_rpnames, dbi_lineages, dbi_idx;
	/* jobs, pins, protect: 0 when absent (a vault opened read-only that has none yet). */
	MDB_dbi dbi_jobs, dbi_pins, dbi_protect;
	/* The chunk store (chunkstore.h), opened with the environment: its calls and its state. */
	const struct vbs_cs_ops *cs;
	void *cs_state;
	/* Where chunks live, from the config's "chunks" (vault.c): rados 0 is LMDB (data.mdb);
	 * rados 1 is a RADOS pool (chunkstore_rados.c), with the namespace, and the ceph config
	 * file and client id to connect with (NULL: librados's defaults). Owned by the vault. */
	struct vbs_chunks_cfg {
		int rados;
		char *pool, *ns, *conf, *id;
	} chunks;
	/* The chunk store kind the keys and the sealed config are bound to (config_bound in
	 * vault.c): the vault's own (chunks.rados), or a replica's source's, whose wrapped keys
	 * and sealed config it shares ("replica": {"source_chunks"}). A replica's own kind is
	 * checked against meta "site_chunks", written when it was made. */
	int bound_rados;
	MDB_dbi dbi_dmaps; /* group MACs of each disk of each point (imap.h) */
	size_t psize; /* LMDB's page size */
	/* Held shared by every transaction, exclusively to change the map size. */
	pthread_rwlock_t map_lock;

	vbs_cache *cache;
	size_t cache_bytes;
	struct vbs_gcache *gcache; /* imap.c: checked index groups, made on first use */
	struct vbs_pool *prefetch; /* prefetch.h: the workers decoding ahead of readers */
	/* Bytes of chunk frames read through the map since it was last trimmed. */
	uint64_t map_touched;
	/* Where the map is, for vbs_map_offset: [lo, hi) maps the file from offset off. Reset
	 * (under map_lock, exclusively) whenever the map may move. */
	pthread_mutex_t mapc_lock;
	uintptr_t mapc_lo, mapc_hi;
	uint64_t mapc_off;
};

/* Dedup scope "vm": the chunk-id MAC of one VM, keyed HMAC(id key, label NUL vm). A new
 * vbk_hmac the caller frees. Encrypted vaults only (readers never recompute an id there). */
int vbs_vm_id_mac(vbs_vault *v, const char *vm, vbk_hmac **ret);

/* Opens the environment of a format-2 vault without its keys (replica.c: a replica receives
 * sealed records and frames as they are). The config's sealed copy is not checked. */
int vbs_vault_open_env_keyless(vbs_vault *v);
/* meta "config" of v as vbs_config_check writes it: the bound text, sealed (v unlocked);
 * *ret malloc'ed. For a replica made from a config file, which gets it by sync. */
int vbs_config_sealed(vbs_vault *v, uint8_t **ret, size_t *ret_len);
/* Opens the environment of a vault of any format, format 1 included (upgrade.c). */
int vbs_env_open_any(vbs_vault *v);
/* meta "config": checks that it holds the config's bound fields, or (create) writes them. */
int vbs_config_check(vbs_vault *v, MDB_txn *txn, int create);
/* Rewrites the config of v as the current format (rewrapping the keys under pass, bound to
 * the new format's fields), atomically. */
int vbs_config_upgrade(vbs_vault *v, const char *pass);

/* Frees imap.c's cache of checked index groups (NULL is fine). */
struct vbs_gcache;
void vbs_gcache_free(struct vbs_gcache *c);

/* Sets the thread's message for vbs_errmsg(). Returns err, so `return vbs_fail(-EIO, ...)`.
 * The one message buffer of base/util.h. */
#define vbs_fail vbu_fail
#define vbs_clear_err vbu_clear_err

/* LMDB return code to negative errno (MDB_NOTFOUND -> -ENOENT, MDB_MAP_FULL -> -ENOSPC,
 * MDB_CORRUPTED/MDB_PAGE_NOTFOUND -> -EBADMSG, ...). */
int vbs_mdb_err(int rc);

/* A read transaction: begin takes the map lock shared and handles MDB_MAP_RESIZED. */
int vbs_read_begin(vbs_vault *v, MDB_txn **ret);
void vbs_read_end(vbs_vault *v, MDB_txn *txn);
/* A walk over a whole database in txn (gc's mark). The map is MDB_NORDAHEAD (vault.c): a fault
 * reads its page alone, right for lookups, but one synchronous 4 KiB read after another for a
 * walk of a tree that fills much of the file (gc of 10M chunks of 4 KiB: 60.7 s cold, against
 * 15.5 s reading around each fault). Where dbi's tree is an eighth of the file or more, begin
 * has the map read around its faults again until end; it returns whether it did. */
int vbs_scan_begin(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi);
void vbs_scan_end(vbs_vault *v, int on);

/* A second read transaction for a thread that holds one already (so the map lock, and the map
 * cannot move): one whose failure must not end the first, as a damaged page met in LMDB does
 * (it fails every later call of the transaction). No message is set; -EAGAIN when another
 * process grew the map. */
int vbs_read_begin_nested(vbs_vault *v, MDB_txn **ret);
void vbs_read_end_nested(MDB_txn *txn);
/* Ends every read transaction still open on this thread (after vbs_guarded() jumped out). */
void vbs_read_abandon(void);

/* Called with a transaction open after reading bytes of the map. Pages of the map that were
 * read stay mapped, and count in the process's RSS, until the kernel needs them back; every
 * VBS_MAP_TRIM bytes this drops them from the process (they stay in the page cache), so a
 * mount or a verify reading a terabyte keeps a small RSS. */
#define VBS_MAP_TRIM (16u * 1024 * 1024)
void vbs_map_touched(vbs_vault *v, size_t bytes);

/* The file offset of len bytes at p in the map (from a value LMDB returned in a live
 * transaction), so they can be read with pread instead: -EBADMSG if they are not all in the
 * map (a damaged page). */
int vbs_map_offset(vbs_vault *v, const void *p, size_t len, uint64_t *ret_off);

/* Runs fn inside a write transaction and commits. When the map is full, the transaction is
 * aborted, the map doubled, and fn run again from the start: fn must not keep state that
 * outlives one call. Returns fn's error (the transaction is then aborted) or the commit's. */
typedef int (*vbs_write_fn)(vbs_vault *v, MDB_txn *txn, void *arg);
int vbs_write(vbs_vault *v, vbs_write_fn fn, void *arg);
/* The same, for a commit that may be undone by a power loss (never by a crash of the
 * process): its data pages are synced, its meta page is left to the next vbs_write. The
 * database stays whole either way (LMDB's MDB_NOMETASYNC). For chunk batches, which nothing
 * references until the point's own commit. */
int vbs_write_lazy(vbs_vault *v, vbs_write_fn fn, void *arg);

/* Big-endian integers. */
static inline void vbs_put64(uint8_t *p, uint64_t x)
{
	for (int i = 7; i >= 0; i--, x >>= 8)
		p[i] = (uint8_t)x;
}
static inline uint64_t vbs_get64(const uint8_t *p)
{
	uint64_t x = 0;
	for (int i = 0; i < 8; i++)
		x = (x << 8) | p[i];
	return x;
}
static inline void vbs_put32(uint8_t *p, uint32_t x)
{
	for (int i = 3; i >= 0; i--, x >>= 8)
		p[i] = (uint8_t)x;
}
static inline uint32_t vbs_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Slices of the chunk-id space, for passes whose memory would otherwise grow with the vault
 * (gc's mark, verify's references): id belongs to slice vbs_id_slice(id, n) of n, in id order
 * (slice i holds smaller ids than slice i + 1). Ids are keyed hashes, so slices are even. */
static inline size_t vbs_id_slice(const uint8_t *id, size_t nslices)
{
	return (size_t)(((uint64_t)vbs_get32(id) * nslices) >> 32);
}
/* How many slices keep n items at about per items a slice: at least 1, at most
 * VBS_SLICES_MAX. n comes from counts no MAC covers (the chunk store's totals, LMDB's entry
 * counts): one flipped high bit must cost at most that many passes, not 2^40 of them. 1,024
 * slices of 1M ids hold a billion chunks, 64 TiB of 64 KiB chunks. */
#define VBS_SLICES_MAX 1024
static inline size_t vbs_slices_for(uint64_t n, uint64_t per)
{
	uint64_t s = n / per + (n % per != 0);

	if (s > VBS_SLICES_MAX)
		s = VBS_SLICES_MAX;
	return s ? (size_t)s : 1;
}

/* meta "seq": the next number, inside a write transaction. */
int vbs_seq_next(vbs_vault *v, MDB_txn *txn, uint64_t *ret);

/* Reads a u64 value of db at key; -ENOENT if absent, -EBADMSG if not 8 bytes. */
int vbs_get_u64(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, uint64_t *ret);

/* Test hook: with the environment variable name set to PATH, creates PATH.reached and waits
 * until PATH exists (a minute at most). Only in the test build (make fault, -DVMBAK_TEST_HOOKS):
 * an installed vmbak has no environment variable that makes it stop. */
#ifdef VMBAK_TEST_HOOKS
void vbs_test_pause(const char *name);
#else
static inline void vbs_test_pause(const char *name)
{
	(void)name;
}
#endif

/* Test hook: the items a slice of the id space holds (vbs_slices_for's per): per, or in the
 * test build VMBAK_TEST_SLICE (a number >= 1) when set, so that tests run gc and verify in many
 * slices on a small vault. */
#ifdef VMBAK_TEST_HOOKS
uint64_t vbs_test_slice(uint64_t per);
#else
static inline uint64_t vbs_test_slice(uint64_t per)
{
	return per;
}
#endif

#endif
