/* pins.h: the chunk pins of running ingests (pins, kept by gc.c; see gc.h for what they
 * protect against): store-private, for ingest.c, which takes them in the write of each batch
 * and drops them at the end of its job.
 */
#ifndef VMBAK_STORE_PINS_H
#define VMBAK_STORE_PINS_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "internal.h"

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

#endif
