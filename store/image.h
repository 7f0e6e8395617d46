/* image.h: reading a disk of a recovery point, the path under the mount.
 *
 * An image is opened once (it parses the point's record) and then read with pread-like calls
 * from any number of threads. Every chunk read is authenticated (AES-GCM tag over the chunk id,
 * or the keyed hash in an unencrypted vault): a damaged chunk gives -EBADMSG, never wrong
 * bytes. Holes (chunks never stored because they were zeros or holes in the source) read as
 * zeros without touching the chunk store. Decoded chunks are kept in the vault's shared cache
 * (vbs_vault_set_cache_size), so two handles, two points or two disks sharing a chunk decode it
 * once.
 *
 * An open image holds, from its first read, a reader of its own of the chunk store
 * (chunkstore.h; with LMDB, a read-only descriptor of data.mdb read with pread), so the
 * kernel's read-ahead follows this image's reads alone. Small reads in a row make the vault's
 * prefetch workers (prefetch.h) decode the next 2 MiB into the cache.
 *
 * Each call runs its own short LMDB read transaction: an open image pins nothing, and a point
 * that is deleted while open reads as -ENOENT afterwards (never as other data).
 *
 * Thread safety: all functions on one vbs_image may run concurrently, except
 * vbs_image_close().
 */
#ifndef VMBAK_IMAGE_H
#define VMBAK_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "vault.h"

typedef struct vbs_image vbs_image;

/* Opens disk number disk_idx (0-based, in the point's order) of the point with this serial. */
int vbs_image_open(vbs_vault *v, uint64_t serial, unsigned disk_idx, vbs_image **ret);
void vbs_image_close(vbs_image *img);

uint64_t vbs_image_size(const vbs_image *img);
/* Bytes of data (non-hole chunks, the last one clipped to the size): for st_blocks. */
uint64_t vbs_image_data_bytes(const vbs_image *img);

/* Reads up to len bytes at off; *ret_got is less than len only at the end of the image.
 * -EBADMSG a damaged chunk, -ENOENT the point is gone, -EIO other failures. */
int vbs_image_read(vbs_image *img, void *buf, size_t len, uint64_t off, size_t *ret_got);

/* The same read without copying: the bytes as pieces that point into the vault's shared cache
 * (held until vbs_image_segs_release, which needs only the vault: the image may be closed by
 * then), or runs of zeros (entry and data NULL). segs must have room for
 * vbs_image_segs_max(img, len) pieces. On failure nothing is held and *ret_n is 0. */
typedef struct vbs_image_seg {
	struct vbs_cache_entry *entry;
	const uint8_t *data;
	size_t len;
} vbs_image_seg;

size_t vbs_image_segs_max(const vbs_image *img, size_t len);
int vbs_image_read_segs(vbs_image *img, size_t len, uint64_t off, vbs_image_seg *segs,
			size_t max, size_t *ret_n, size_t *ret_got);
void vbs_image_segs_release(vbs_vault *v, vbs_image_seg *segs, size_t n);

/* lseek(SEEK_DATA / SEEK_HOLE) semantics at chunk granularity: whence is SEEK_DATA or
 * SEEK_HOLE from <unistd.h>. -ENXIO when off >= size, or for SEEK_DATA when no data follows. */
int vbs_image_seek(vbs_image *img, uint64_t off, int whence, uint64_t *ret);

#endif
