/* cache.h: a shared cache of decoded chunks, keyed by chunk id.
 *
 * Entries are reference-counted: a reader holds an entry while it copies from it, and eviction
 * (least recently used first, when the cache is over its byte budget) never frees an entry that
 * is held. Thread-safe: one mutex per shard.
 */
#ifndef VMBAK_CACHE_H
#define VMBAK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"

typedef struct vbs_cache vbs_cache;
typedef struct vbs_cache_entry vbs_cache_entry;

int vbs_cache_new(size_t budget_bytes, vbs_cache **ret);
void vbs_cache_free(vbs_cache *c);

/* A held entry for id, or NULL on a miss. */
vbs_cache_entry *vbs_cache_get(vbs_cache *c, const uint8_t id[VBS_ID_LEN]);
/* Adds buf (malloc'ed, len bytes; ownership passes to the cache) under id and returns it held.
 * If another thread added id first, buf is freed and that entry is returned instead. NULL only
 * on allocation failure (buf is then freed too). */
vbs_cache_entry *vbs_cache_put(vbs_cache *c, const uint8_t id[VBS_ID_LEN], uint8_t *buf,
			       size_t len);
void vbs_cache_release(vbs_cache *c, vbs_cache_entry *e);
const uint8_t *vbs_cache_data(const vbs_cache_entry *e, size_t *ret_len);

#endif
