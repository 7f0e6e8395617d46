/* wire.h: the bytes of sync's messages (replica.h), built and read with bounds checks.
 *
 * Every integer is big-endian. A reader never reads past its end: each get fails (returns
 * -EBADMSG and marks the reader bad) when fewer bytes are left than asked for, so a message
 * from a peer, which may be anything, is parsed by a run of gets and one check at the end.
 * A writer grows its buffer as needed; an allocation failure marks it bad (-ENOMEM at the end).
 * Store-private (sync.c and replica.c); not thread-safe per object.
 */
#ifndef VMBAK_WIRE_H
#define VMBAK_WIRE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct vbs_wr {
	uint8_t *p;
	size_t len, cap;
	int bad;
} vbs_wr;

typedef struct vbs_rd {
	const uint8_t *p, *end;
	int bad;
} vbs_rd;

static inline uint8_t *vbs_wr_room(vbs_wr *w, size_t n)
{
	if (w->bad)
		return NULL;
	if (n > w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 256;
		uint8_t *np;

		while (cap - w->len < n) {
			if (cap > SIZE_MAX / 2) {
				w->bad = 1;
				return NULL;
			}
			cap *= 2;
		}
		np = realloc(w->p, cap);
		if (!np) {
			w->bad = 1;
			return NULL;
		}
		w->p = np;
		w->cap = cap;
	}
	w->len += n;
	return w->p + w->len - n;
}

static inline void vbs_wr_bytes(vbs_wr *w, const void *b, size_t n)
{
	uint8_t *p = vbs_wr_room(w, n);

	if (p && n)
		memcpy(p, b, n);
}

static inline void vbs_wr_uint(vbs_wr *w, uint64_t x, unsigned size)
{
	uint8_t *p = vbs_wr_room(w, size);

	if (p)
		for (int i = (int)size - 1; i >= 0; i--, x >>= 8)
			p[i] = (uint8_t)x;
}

#define vbs_wr_u8(w, x) vbs_wr_uint(w, x, 1)
#define vbs_wr_u16(w, x) vbs_wr_uint(w, x, 2)
#define vbs_wr_u32(w, x) vbs_wr_uint(w, x, 4)
#define vbs_wr_u64(w, x) vbs_wr_uint(w, x, 8)

static inline void vbs_wr_free(vbs_wr *w)
{
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
}

static inline void vbs_rd_init(vbs_rd *r, const void *p, size_t len)
{
	r->p = p;
	r->end = r->p + len;
	r->bad = 0;
}

/* n bytes in place (valid as long as the message), or NULL. */
static inline const uint8_t *vbs_rd_bytes(vbs_rd *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = 1;
		return NULL;
	}
	r->p += n;
	return p;
}

static inline uint64_t vbs_rd_uint(vbs_rd *r, unsigned size)
{
	const uint8_t *p = vbs_rd_bytes(r, size);
	uint64_t x = 0;

	if (!p)
		return 0;
	for (unsigned i = 0; i < size; i++)
		x = x << 8 | p[i];
	return x;
}

#define vbs_rd_u8(r) ((uint8_t)vbs_rd_uint(r, 1))
#define vbs_rd_u16(r) ((uint16_t)vbs_rd_uint(r, 2))
#define vbs_rd_u32(r) ((uint32_t)vbs_rd_uint(r, 4))
#define vbs_rd_u64(r) vbs_rd_uint(r, 8)

static inline size_t vbs_rd_left(const vbs_rd *r)
{
	return r->bad ? 0 : (size_t)(r->end - r->p);
}

/* 0 when every get succeeded and (whole) nothing is left over, else -EBADMSG. */
static inline int vbs_rd_done(const vbs_rd *r, int whole)
{
	return r->bad || (whole && r->p != r->end) ? -EBADMSG : 0;
}

#endif
