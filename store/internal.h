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
	 * "replica": {"of", "site", "created"}; site is the replica's own uuid. */
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

/* meta "seq": the next number, inside a write transaction. */
int vbs_seq_next(vbs_vault *v, MDB_txn *txn, uint64_t *ret);

/* Reads a u64 value of db at key; -ENOENT if absent, -EBADMSG if not 8 bytes. */
int vbs_get_u64(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, uint64_t *ret);

struct vbs_rp;
/* Recovery point records (rp.c): JSON encoding, and reads and writes inside a transaction. */
int vbs_rp_encode(const struct vbs_rp *rp, char **ret, size_t *ret_len);
int vbs_rp_decode(const void *data, size_t len, struct vbs_rp **ret);
int vbs_rp_load(vbs_vault *v, MDB_txn *txn, uint64_t serial, struct vbs_rp **ret);
int vbs_rp_store(vbs_vault *v, MDB_txn *txn, const struct vbs_rp *rp);
/* 1 when vm already has a point called id. */
int vbs_rp_id_taken(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id);
/* Name records (rpnames2): the serial of vm/id (-ENOENT, -EBADMSG), a new one, removal. */
int vbs_name_find(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t *ret);
int vbs_name_put(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t serial);
int vbs_name_del(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id);
/* The points of vm (ids and serials) sorted by id; free() *ret. */
struct vbs_name_entry;
int vbs_names_of(vbs_vault *v, MDB_txn *txn, const char *vm, struct vbs_name_entry **ret,
		 size_t *ret_n);
/* VM records (vms2): every VM sorted by name (free() *ret), one VM's number, removal. */
int vbs_vms_of(vbs_vault *v, MDB_txn *txn, struct vbs_name_entry **ret, size_t *ret_n);
int vbs_vm_find(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret);
/* Writes the VM record of vm: its number and creation time (ns). */
int vbs_vm_put(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t num, int64_t created_ns);
int vbs_vm_del(vbs_vault *v, MDB_txn *txn, const char *vm);
/* One raw record of vms2, rpnames2 (of VM vm) or rps2, opened and checked against its key
 * (verify_records.c walks them one by one): -EBADMSG when it does not open or does not match. */
int vbs_vm_open(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		char name[VBS_NAME_MAX + 1], uint64_t *ret_num);
int vbs_name_open(vbs_vault *v, const char *vm, const void *key, size_t klen, const void *val,
		  size_t vlen, char id[32], uint64_t *ret_serial);
int vbs_rp_open(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		struct vbs_rp **ret);
int vbs_rp_latest_serial(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret);
/* The VM's number, creating its record when new. */
int vbs_vm_ensure(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret);

/* Lifecycle (jobs.c, gc.c). A job record decoded without judging its process (jobs.h). */
struct vbs_job;
int vbs_job_decode_raw(uint64_t id, const void *data, size_t len, struct vbs_job *ret);
/* A job record sealed for jobs2 under j->id, as job_store would write it (sync.c seals the
 * records of a replica's sync job, which the replica cannot seal). *ret malloc'ed. */
int vbs_job_seal(vbs_vault *v, const struct vbs_job *j, uint8_t **ret, size_t *ret_len);
/* This process as a job record names it: pid, start time (clock ticks), boot id. */
void vbs_job_self(int32_t *ret_pid, uint64_t *ret_start, char ret_boot[40]);
/* Keys of vms2 (H(vm)) and rpnames2 (H(vm) | H(vm NUL id)) (rp.c). */
int vbs_vm_key(vbs_vault *v, const char *vm, uint8_t k[16]);
int vbs_rpname_key(vbs_vault *v, const char *vm, const char *id, uint8_t k[32]);
/* A sealed job record (jobs2): opened and decoded; load: by id in txn (-ENOENT none). */
int vbs_job_unseal(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		   struct vbs_job *ret);
int vbs_job_load(vbs_vault *v, MDB_txn *txn, uint64_t id, struct vbs_job *ret);
/* The chunks of one batch of an ingest (gc.h): stored ones (ids of the put) and reused ones
 * (check), all pinned for job. */
typedef struct vbs_pin_batch {
	uint64_t job;
	const struct vbs_cs_item *items;
	size_t n;
	const uint8_t (*check)[VBK_HASH_LEN];
	size_t ncheck;
} vbs_pin_batch;
/* The hook of a pinned put (chunkstore.h's vbs_cs_hook_fn; arg: a vbs_pin_batch), in the write
 * transaction that stores the batch: checks that each reused chunk is still stored (-ESTALE
 * when one is gone: the caller looks again and stores it) and pins every chunk of the batch. */
int vbs_pins_take(vbs_vault *v, MDB_txn *txn, void *arg);
/* Drops job's pins in short transactions, unless a live gc is registered (then they stay for
 * that gc to drop). */
int vbs_pins_release(vbs_vault *v, uint64_t job);
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

/* Sums over every point: virtual sizes of disks, and their data bytes (rp.c). */
int vbs_rp_sum_sizes(vbs_vault *v, uint64_t *ret_logical, uint64_t *ret_data);

#endif
