/* chunkstore.h: where chunk frames live: put, get, exists, delete, iterate, statistics.
 *
 * This is the one seam between the vault's metadata (always LMDB) and the bodies of chunks.
 * A chunk store is a table of functions (vbs_cs_ops); the vault opens one with its
 * environment and every file of store/ goes through the vbs_cs_* calls below. Today's store
 * is chunkstore_lmdb.c (frames as values of LMDB databases in data.mdb). An object store such
 * as Ceph RADOS is a new file defining its own vbs_cs_ops, listed in chunkstore.c's table of
 * stores; nothing else in store/ changes. Only the implementation names its own storage: no
 * other file opens, reads or writes the databases, objects or statistics a store keeps.
 *
 * Ids are VBS_ID_LEN bytes (chunk.h). A frame is the bytes vbs_chunk_encode wrote; the store
 * treats it as opaque except that it may read its header (vbs_frame_plain_len,
 * vbs_frame_raw_len) to keep statistics or to lay it out. A frame is stored once per id and
 * never changes: putting an id that is stored keeps the frame already there.
 *
 * Transactions. Calls take the caller's LMDB transaction of the vault's metadata (txn): a
 * store that keeps anything in LMDB reads and writes it there, so it commits or aborts with
 * the caller's records; a store that keeps nothing there may ignore txn. The contract every
 * implementation keeps:
 *
 *   Atomicity. vbs_cs_put stores its items and runs its hook in one write: once it returns 0
 *     every item is stored and the hook's writes are committed; when it fails (the hook's
 *     error included) none of the hook's writes is committed and the items are as if never
 *     put, except that a store writing outside LMDB may keep frames nothing refers to (an
 *     object written before the failure): iterate lists them and gc removes them. Such a
 *     store cannot write both at once: it commits the hook first, in a write of its own, and
 *     then stores the items, so no moment exists where an item is stored and not yet pinned
 *     (gc.h); a failure after the hook's commit leaves the hook's writes (pins, which are
 *     dropped when their job ends). Either way put returns 0 only once every item is
 *     acknowledged by the medium: a point committed after it names only stored chunks.
 *   Durability. A put with VBS_CS_SYNC is on stable storage when it returns. With
 *     VBS_CS_LAZY it survives a crash of the process, and a power loss once the vault's next
 *     synced write (vbs_write) has committed; chunks are put lazily because nothing refers to
 *     them before the point's own (synced) commit. vbs_cs_del takes effect with the caller's
 *     write transaction, or earlier: a store may delete at once, so callers only delete chunks
 *     that nothing may refer to at that moment (gc.h).
 *   Readers. A read transaction sees the store as of its beginning, or later: a chunk stored
 *     before txn began is found; one put by a writer committing meanwhile may or may not be;
 *     a chunk that was stored when txn began stays readable through txn until it ends, even
 *     when a writer deletes it meanwhile (gc relies on readers finishing what they started;
 *     a store without snapshots defers its deletes until older readers end). Readers never
 *     wait for a writer.
 *   Errors. -ENOENT the id is not stored; -EBADMSG the stored bytes are damaged (a frame cut
 *     short, a missing tail, a page of the database out of place); -ENOSPC the store is
 *     full; -EROFS the vault is open read-only; -ENOMEM; -EIO and other negative errno for
 *     the medium. A failed call has set vbs_errmsg() when it says more than the errno.
 *
 * Thread safety: get, exists, iterate and stats are thread-safe, each in the caller's own read
 * transaction. put and del are called by the vault's one writer at a time (vbs_write).
 */
#ifndef VMBAK_CHUNKSTORE_H
#define VMBAK_CHUNKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "internal.h"

/* Called with the frame of an id: valid only during the call; the return value is passed on. */
typedef int (*vbs_frame_fn)(void *arg, const void *frame, size_t len);

/* A chunk to put. */
typedef struct vbs_cs_item {
	const uint8_t *id;
	const void *frame;
	size_t len;
	uint32_t plain_len;
} vbs_cs_item;

/* What must happen in the same write as a put (gc.h's pins): runs inside the write
 * transaction after the items are stored; an error from it undoes the put. Like every
 * vbs_write function it may run more than once (the map grew): it keeps no state. */
typedef int (*vbs_cs_hook_fn)(vbs_vault *v, MDB_txn *txn, void *arg);

/* Totals of the store, kept with every put and delete. */
typedef struct vbs_cs_stats {
	uint64_t chunks;      /* stored chunks */
	uint64_t bytes;	      /* their frames' bytes */
	uint64_t plain_bytes; /* their plaintext bytes */
} vbs_cs_stats;

/* A reader of its own: a sequential reader (one open image) that reads through its own handle
 * gets the medium's read-ahead to itself. Opaque; NULL means the store's shared one. */
typedef struct vbs_cs_reader vbs_cs_reader;

/* Called for every stored chunk with its id and stored size; a nonzero return stops the walk
 * and is returned. */
typedef int (*vbs_cs_iter_fn)(void *arg, const uint8_t id[VBS_ID_LEN], uint64_t stored_len);

enum { VBS_CS_SYNC = 0, VBS_CS_LAZY = 1 };

/* Calls fn with the frame of id as seen by the read (or write) transaction txn. rd: a reader
 * from vbs_cs_reader_open, or NULL. -ENOENT if absent; otherwise fn's return value. */
int vbs_cs_get(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
	       vbs_frame_fn fn, void *arg);

/* Says that the chunks ids[0..n) are about to be read (a read that spans several chunks,
 * read-ahead, a verify). A store whose every read is a round trip starts those reads now, a
 * bounded number at a time, so that the vbs_cs_get calls that follow find them on their way; a
 * store of local files asks the kernel to read their frames (all at once, in the order the
 * device likes). Only a hint: it never fails, and a chunk hinted and never read costs only the
 * read. The caller holds a read (or write) transaction; the hint looks up in one of its own, so
 * that a damaged page it meets fails nothing. Thread-safe. */
void vbs_cs_hint(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN]);
/* 1 when the store takes hints (so a caller may skip finding the ids), else 0. */
int vbs_cs_takes_hints(const vbs_vault *v);

/* A new reader; the caller frees it with vbs_cs_reader_close (NULL is fine) before the
 * vault's environment closes. -ESTALE when the store changed place since the vault opened it. */
int vbs_cs_reader_open(vbs_vault *v, vbs_cs_reader **ret);
void vbs_cs_reader_close(vbs_vault *v, vbs_cs_reader *rd);

/* present[i] = 1 when ids[i] is stored as seen by txn (a read or write transaction); NULL:
 * in a read transaction of its own. */
int vbs_cs_exists(vbs_vault *v, MDB_txn *txn, size_t n, const uint8_t (*ids)[VBS_ID_LEN],
		  uint8_t *present);

/* Stores every item that is not stored yet and runs hook (NULL: none) in the same write;
 * mode VBS_CS_SYNC or VBS_CS_LAZY (durability above). *ret_added and *ret_added_bytes: how
 * many items were new and their frame bytes. The hook's error is returned as it is. */
int vbs_cs_put(vbs_vault *v, const vbs_cs_item *items, size_t n, int mode, vbs_cs_hook_fn hook,
	       void *hook_arg, uint64_t *ret_added, uint64_t *ret_added_bytes);

/* Removes a chunk inside the caller's write transaction; *ret_len: the bytes it took.
 * -ENOENT if absent. */
int vbs_cs_del(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], uint64_t *ret_len);

/* Calls fn for every chunk stored as seen by txn, in no particular order, at least every chunk
 * stored before txn began (a store without snapshots may also list later ones). */
int vbs_cs_iterate(vbs_vault *v, MDB_txn *txn, vbs_cs_iter_fn fn, void *arg);

/* The store's totals as seen by txn. A vault that has none yet has zeros. */
int vbs_cs_stats_get(vbs_vault *v, MDB_txn *txn, vbs_cs_stats *ret);

/* ---- for the vault (vault.c) ---- */

/* Opens the vault's chunk store inside the transaction that opens its environment (create: a
 * new vault; the store creates what it keeps). Sets v->cs and v->cs_state. */
int vbs_cs_attach(vbs_vault *v, MDB_txn *txn, int create);
/* Before the environment closes; NULL-safe, idempotent. v->cs stays set, so readers can
 * still be closed. */
void vbs_cs_detach(vbs_vault *v);

/* ---- for implementations ---- */

/* A chunk store: each function implements the vbs_cs_* call of the same name, with the same
 * contract; state is what open returned (v->cs_state). */
typedef struct vbs_cs_ops {
	const char *name;
	int (*open)(vbs_vault *v, MDB_txn *txn, int create, void **ret_state);
	void (*close)(void *state);
	int (*get)(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
		   vbs_frame_fn fn, void *arg);
	int (*reader_open)(vbs_vault *v, vbs_cs_reader **ret);
	void (*reader_close)(vbs_cs_reader *rd);
	int (*exists)(vbs_vault *v, MDB_txn *txn, size_t n, const uint8_t (*ids)[VBS_ID_LEN],
		      uint8_t *present);
	int (*put)(vbs_vault *v, const vbs_cs_item *items, size_t n, int mode, vbs_cs_hook_fn hook,
		   void *hook_arg, uint64_t *ret_added, uint64_t *ret_added_bytes);
	int (*del)(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], uint64_t *ret_len);
	int (*iterate)(vbs_vault *v, MDB_txn *txn, vbs_cs_iter_fn fn, void *arg);
	int (*stats)(vbs_vault *v, MDB_txn *txn, vbs_cs_stats *ret);
	void (*hint)(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN]); /* NULL: none */
} vbs_cs_ops;

/* The totals a store keeps in the meta database under key (24 bytes: chunks, stored bytes,
 * plain bytes, big-endian), in the caller's write transaction. count_add adds the deltas, never
 * going below zero (a store that counts after its writes may be low after a crash);
 * count_get reads them, a missing or malformed record as zeros (as vmbak info always showed). */
int vbs_cs_count_add(vbs_vault *v, MDB_txn *txn, const char *key, int64_t count, int64_t bytes,
		     int64_t plain);
int vbs_cs_count_get(vbs_vault *v, MDB_txn *txn, const char *key, vbs_cs_stats *ret);

/* Frames as values of LMDB databases in the vault's data.mdb (chunkstore_lmdb.c). */
extern const vbs_cs_ops vbs_cs_lmdb;
/* Frames as objects of a Ceph RADOS pool (chunkstore_rados.c; config "chunks", vault.c). */
extern const vbs_cs_ops vbs_cs_rados;

#endif
