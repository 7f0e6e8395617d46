/* files_view.h: the read-only view `vmbak files` mounts a guest file system from.
 *
 * A view is a small FUSE file system, run by a process of its own, that shows one file, "disk":
 * a byte range of a disk image of a recovery point (a partition, or the payload of a LUKS
 * volume), read through the store (vbs_image_read, so every chunk is authenticated) and, for
 * LUKS, decrypted on the way with the volume key (AES-XTS, IV plain64: the sector number,
 * little-endian, counted in 512-byte units as dm-crypt does for LUKS also with larger encryption
 * sectors, unless the header asks for iv_large_sectors). The kernel's loop driver, or
 * dislocker, then reads that file.
 *
 * The view process opens the vault itself after the fork (LMDB must not cross a fork): it gets
 * the vault's passphrase and the volume key in memory from its parent, and wipes them when it
 * ends. It ends when its mount point is unmounted.
 */
#ifndef VMBAK_FILES_VIEW_H
#define VMBAK_FILES_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FILES_VIEW_NAME "disk" /* the one file of a view */

typedef struct files_view_cfg {
	const char *vault;  /* the vault's path */
	const char *pass;   /* its passphrase, or NULL when it needs none */
	uint64_t serial;    /* the point */
	unsigned disk_idx;  /* the disk's number in the point */
	uint64_t base;	    /* the image offset of the view's first byte */
	uint64_t size;	    /* the view's size (a multiple of sector when key is set) */
	const uint8_t *key; /* the AES-XTS key (32 or 64 bytes), or NULL: the bytes as stored */
	size_t key_len;
	uint32_t sector;      /* the encryption sector size: 512 to 4096, a power of two */
	int iv_large_sectors; /* the IV counts sectors of that size, not of 512 bytes */
	const char *dir;      /* the view's mount point, an empty directory */
} files_view_cfg;

/* Starts the view process and returns once its file system is mounted at c->dir: 0 and *ret_pid,
 * or VMBAK_EXIT_FAIL with the reason in msg (cap bytes; nothing is left mounted). The caller's
 * copies of the passphrase and key are still its own to wipe. */
int files_view_start(const files_view_cfg *c, pid_t *ret_pid, char *msg, size_t cap);

#endif
