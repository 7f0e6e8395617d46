/* extents.h: changed-extents files, the ranges of a disk an incremental ingest reads
 * (vmbak ingest --changed). Parsing only: no I/O, no vault; every byte is input to check.
 *
 * Thread safety: no shared state.
 */
#ifndef VMBAK_EXTENTS_H
#define VMBAK_EXTENTS_H

#include <stddef.h>
#include <stdint.h>

/* Changed-extents files: text lines "OFFSET LENGTH [TYPE [DESCRIPTION]]" in decimal (or 0x
 * hex), as `nbdinfo --map` prints them; with a TYPE, only lines whose type has bit 0 set
 * (dirty) count; blank lines and lines starting with '#' are ignored. The result is sorted,
 * merged, clipped to size, and aligned outwards to align bytes. */
typedef struct vbs_extent {
	uint64_t off, len;
} vbs_extent;
/* Parses text of len bytes. On error *ret_line is the 1-based line at fault. free() *ret. */
int vbs_extents_parse(const char *text, size_t len, uint64_t size, uint64_t align, vbs_extent **ret,
		      size_t *ret_n, size_t *ret_line);

/* The same rules for extents already in memory (a dirty bitmap read over NBD): in[0..n) is
 * checked (-ERANGE: an extent beyond size), aligned outwards, sorted and merged into a new
 * array *ret of *ret_n extents, which is never NULL on success (even for n == 0). free() *ret.
 * Errors: -EINVAL align not a power of two, -ERANGE, -ENOMEM. */
int vbs_extents_normalize(const vbs_extent *in, size_t n, uint64_t size, uint64_t align,
			  vbs_extent **ret, size_t *ret_n);

#endif
