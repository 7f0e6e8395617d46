/* vault.h: a vault: one directory with a config file and one LMDB environment.
 *
 * Layout of VAULT/ (the full format is in man/vmbak-vault.5):
 *   vmbak-vault.json   config: format name and version, uuid, chunk size, encryption, the
 *                      key slots (the keys wrapped under each passphrase; unencrypted: the id
 *                      key in clear); written at init, replaced whole by key changes
 *   vmbak-vault.lock   flock()ed by whoever rewrites the config (key changes); may be absent
 *   data.mdb, lock.mdb the LMDB environment (named databases: meta, vms, rps, rpnames,
 *                      lineages, idx, chunks, and jobs, pins, protect: see jobs.h, gc.h,
 *                      lifecycle.h)
 *
 * Lifecycle: vbs_vault_open() reads and checks the config (no LMDB yet);
 * vbs_vault_unlock() unwraps the keys (not needed, and a no-op, for an unencrypted vault);
 * vbs_vault_open_env() opens LMDB. The split lets the mount check everything in the
 * foreground, close the environment, daemonize, and open it again (LMDB must not cross fork()).
 *
 * Errors (negative errno): -ENOENT no such vault, -ENOTDIR not a directory, -EPROTO not a
 * vault or a damaged config, -EPROTONOSUPPORT a format version this build does not read,
 * -ENOKEY wrong or missing passphrase, -EEXIST (init) the directory exists and is not empty,
 * -ENOSPC the disk is full, -EBADMSG damaged data, else -errno of the failing call.
 * Every store/ function that fails also leaves a one-line description for the user in
 * vbs_errmsg() ("config '/v/vmbak-vault.json': missing field 'uuid'"), thread-local.
 *
 * Thread safety: after vbs_vault_open_env(), every read function of store/ may be called from
 * any number of threads at once; ingest and the other writers are single-threaded callers
 * (they start their own worker threads). LMDB itself serialises writers across processes:
 * readers never block writers.
 */
#ifndef VMBAK_VAULT_H
#define VMBAK_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct vbs_vault vbs_vault;

#define VBS_FORMAT_NAME "vmbak-vault"
#define VBS_FORMAT_VERSION 2
#define VBS_CONFIG_FILE "vmbak-vault.json"

#define VBS_CHUNK_SIZE_DEFAULT (64u * 1024)
#define VBS_CHUNK_SIZE_MIN (4u * 1024)
#define VBS_CHUNK_SIZE_MAX (4u * 1024 * 1024)

/* Names of VMs, disks and key slots follow vbu_name_valid() (base/util.h). */
#define VBS_NAME_MAX VBU_NAME_MAX
/* Text for messages: what a name may contain. */
#define VBS_NAME_RULE VBU_NAME_RULE

typedef struct vbs_init_opts {
	int encrypt;	     /* 1: aes-256-gcm (needs pass), 0: none */
	uint32_t chunk_size; /* a power of two in [VBS_CHUNK_SIZE_MIN, VBS_CHUNK_SIZE_MAX] */
	int dedup_vm;	     /* 1: chunks are deduplicated within each VM only (ids keyed per VM) */
	/* Chunks in a Ceph RADOS pool instead of data.mdb: the pool (NULL: LMDB), the namespace
	 * (NULL: the vault's uuid), the ceph config file (NULL: librados's search; made absolute)
	 * and the client id (NULL: librados's default, "admin"). The pool must exist: init
	 * connects and fails (nothing left behind) when the cluster or the pool is not there. */
	const char *rados_pool, *rados_ns, *ceph_conf, *ceph_id;
} vbs_init_opts;

/* Creates a vault at path: the directory is created (its parent must exist) or must be empty.
 * pass is required when opts->encrypt, ignored otherwise. On failure nothing is left behind
 * that was not there before (a directory it created is removed). */
int vbs_vault_init(const char *path, const vbs_init_opts *opts, const char *pass);

/* Creates a replica of the vault at src_path (vmbak init --replica-of): a vault at path whose
 * config is src's (its uuid, chunk size, encryption and wrapped keys: src's passphrases open
 * it) plus a "replica" object naming src's uuid, the replica's own ("site") and the kind of
 * src's chunk store (which the shared keys are bound to), and whose database holds src's
 * sealed copy of its config and the replica's own chunk store kind (meta "site_chunks").
 * Its chunks are its own whatever src's: opts->rados_pool etc. as for vbs_vault_init (the
 * namespace defaults to the site uuid; src's own pool and namespace are refused), else
 * LMDB; the other fields of opts are not used. src_path may also be a
 * copy of the source's config file alone: then the sealed copy comes with the first sync
 * (until then the replica opens for sync only). No passphrase is needed: nothing is
 * unwrapped. Sync (sync.h) fills it. On failure nothing is left behind. */
int vbs_vault_init_replica(const char *path, const char *src_path, const vbs_init_opts *opts);
/* Unlocks the replica v (opened, environment not yet) with the keys of its source src, which
 * is unlocked: both are in this process already, no passphrase is asked (sync --prune to a
 * local replica). -ENOKEY when v is not a replica of src. */
int vbs_vault_unlock_from(vbs_vault *v, const vbs_vault *src);
/* 1 when v is a replica. */
int vbs_vault_replica(const vbs_vault *v);

/* Opens the config. readonly: the environment will be opened read-only (the mount). */
int vbs_vault_open(const char *path, int readonly, vbs_vault **ret);
int vbs_vault_needs_passphrase(const vbs_vault *v);
/* -ENOKEY for a wrong passphrase. */
int vbs_vault_unlock(vbs_vault *v, const char *pass);
int vbs_vault_open_env(vbs_vault *v);
void vbs_vault_close_env(vbs_vault *v);
/* Closes everything and wipes the keys. NULL is fine. */
void vbs_vault_close(vbs_vault *v);

/* Key slots: an encrypted vault has 1 to VBS_KEY_SLOTS_MAX passphrases, each a named slot
 * holding the vault's keys wrapped under it (man/vmbak-vault.5). Unlocking tries the slots in
 * order: one scrypt per slot tried. Slot names follow vbu_name_valid(). */
#define VBS_KEY_SLOTS_MAX 32
#define VBS_KEY_SLOT_DEFAULT "default"
#define VBS_KEY_LOCK_FILE "vmbak-vault.lock"

typedef struct vbs_key_slot_info {
	char name[VBS_NAME_MAX + 1];
	char created[24]; /* "YYYY-MM-DDTHH:MM:SSZ": when its passphrase was set */
	int current;	  /* this slot's passphrase unlocked v */
} vbs_key_slot_info;

/* The slots of v as its config had them when opened (0 for an unencrypted vault). */
size_t vbs_vault_key_count(const vbs_vault *v);
int vbs_vault_key_get(const vbs_vault *v, size_t i, vbs_key_slot_info *ret);

typedef enum vbs_key_op {
	VBS_KEY_ADD,	/* a new slot name (NULL: "key-N") for new_pass */
	VBS_KEY_PASSWD, /* slot name (NULL: the one pass opens) now opens with new_pass */
	VBS_KEY_REMOVE, /* slot name goes; never the last one */
} vbs_key_op;

/* Changes the key slots of the encrypted vault at path. pass, a current passphrase, must open
 * one of its slots. Only the config changes: it is re-read under the vault's key lock
 * (VBS_KEY_LOCK_FILE, flock), checked against the database (opened read-only), and replaced
 * atomically (temporary file, fsync, rename, fsync of the directory): a crash leaves the old
 * config or the new one, and the keys they wrap are the same. A config with a single-object
 * "keys" is rewritten as slots (its one slot named "default"). ret_name (VBS_NAME_MAX + 1
 * bytes, may be NULL) gets the name of the slot added, changed or removed.
 * Errors: -ENOKEY wrong passphrase, -ENOENT no slot of that name, -EEXIST a slot of that name
 * exists, -EMLINK no room for another slot, -EBUSY (remove) the last slot, -EINVAL not an
 * encrypted vault or a bad name, else as vbs_vault_open() and the file calls. */
int vbs_vault_key_change(const char *path, vbs_key_op op, const char *pass, const char *name,
			 const char *new_pass, char *ret_name);

/* The message of the last store/ failure in this thread (empty string if none): one line, no
 * program prefix, never a secret. Valid until the next store/ call in this thread. Callers
 * print it as "vmbak: %s". When it is empty, describe the error from its errno. */
const char *vbs_errmsg(void);

const char *vbs_vault_path(const vbs_vault *v);
const char *vbs_vault_uuid(const vbs_vault *v);
uint32_t vbs_vault_chunk_size(const vbs_vault *v);
int vbs_vault_encrypted(const vbs_vault *v);
/* 1 when chunks are deduplicated within each VM only (init --dedup-scope vm). */
int vbs_vault_dedup_vm(const vbs_vault *v);
/* Where the vault's chunk frames live: "lmdb" (data.mdb) or "rados"; for rados, *ret_pool and
 * *ret_ns (may be NULL) get the pool and namespace, else NULL. Valid while v is open. */
const char *vbs_vault_chunk_store(const vbs_vault *v, const char **ret_pool, const char **ret_ns);

/* The exit status of a process that meets a damaged data.mdb while an environment is open: the
 * guard (store/dbguard.c) prints one line and _exit()s with it (default 1; `vmbak verify` sets
 * 3). Call before opening the environment. Thread-safe. */
void vbs_guard_exit_status(int status);

/* Bytes of decoded chunks the shared read cache may hold (default 64 MiB). Call before the
 * first read. */
void vbs_vault_set_cache_size(vbs_vault *v, size_t bytes);

typedef struct vbs_vault_stats {
	uint64_t vms, rps;
	uint64_t chunks;	  /* stored chunks */
	uint64_t chunk_bytes;	  /* their stored (compressed, encrypted) size */
	uint64_t chunk_raw_bytes; /* their plaintext size */
	uint64_t logical_bytes;	  /* sum of the virtual sizes of all disks of all points */
	uint64_t data_bytes;	  /* sum over points of their non-hole data (chunks * size) */
	uint64_t file_bytes;	  /* size of data.mdb */
	uint64_t map_bytes;	  /* current LMDB map size */
	uint64_t free_bytes;	  /* pages in data.mdb free for reuse (approximate) */
} vbs_vault_stats;
int vbs_vault_stats_get(vbs_vault *v, vbs_vault_stats *ret);

/* Runs fn(arg) and returns what it returns, except that if the vault's database turns out
 * damaged meanwhile (LMDB follows a page past the end of data.mdb, faults inside its code or
 * fails an assertion), which elsewhere ends the process with one line (dbguard.h), it returns
 * -EBADMSG at once instead: the read transactions fn had open on this thread are ended; memory
 * it had allocated is lost. For a daemon that must answer EIO and go on serving. fn must not
 * hold locks or write transactions while it reads the vault. Thread-safe; may nest. */
int vbs_guarded(int (*fn)(void *arg), void *arg);

#endif
