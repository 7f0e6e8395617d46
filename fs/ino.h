/* ino.h: inode numbers of the mount, computed from the vault's ids.
 *
 * Every node of the tree has a number derived from what it shows, so the daemon keeps no inode
 * table: lookup hands out numbers, getattr and open decode them, forget frees nothing. A number
 * is never reused for something else, because VM numbers and recovery point serials never
 * repeat in a vault.
 *
 *   root                         1
 *   everything else              kind << 56 | id << 12 | sub
 *
 *   kind              id                  sub
 *   VBF_VM     <vm>/             VM number           0
 *   VBF_LATEST <vm>/latest       VM number           0
 *   VBF_RP     <vm>/<rp>/        point serial        0
 *   VBF_MANIFEST manifest.json   point serial        0
 *   VBF_IMAGE  <disk>.img        point serial        disk index
 *   VBF_KEY    <disk>.key        point serial        disk index
 *   VBF_FILE   config, domain.xml point serial       file kind (rp.h vbs_rp_file_kind)
 *
 * Ids have 44 bits (17.6e12 points, more than any vault will commit), disk indexes 12 bits.
 * All functions are pure and thread-safe.
 */
#ifndef VMBAK_FS_INO_H
#define VMBAK_FS_INO_H

#include <stdint.h>

enum vbf_kind {
	VBF_ROOT = 0,
	VBF_VM = 1,
	VBF_LATEST = 2,
	VBF_RP = 3,
	VBF_MANIFEST = 4,
	VBF_IMAGE = 5,
	VBF_KEY = 6,
	VBF_FILE = 7,
};

#define VBF_INO_ROOT UINT64_C(1)
#define VBF_INO_KIND_SHIFT 56
#define VBF_INO_ID_SHIFT 12
#define VBF_INO_ID_MAX ((UINT64_C(1) << (VBF_INO_KIND_SHIFT - VBF_INO_ID_SHIFT)) - 1)
#define VBF_INO_SUB_MAX ((1u << VBF_INO_ID_SHIFT) - 1)

typedef struct vbf_node {
	enum vbf_kind kind;
	uint64_t id;  /* VM number or point serial; 0 for the root */
	unsigned sub; /* disk index for images and keys, file kind for files, else 0 */
} vbf_node;

/* The number of a node. -EOVERFLOW when id or sub does not fit, -EINVAL for a kind that takes
 * no id (the root: use VBF_INO_ROOT) or a sub on a kind without one. */
int vbf_ino_make(enum vbf_kind kind, uint64_t id, unsigned sub, uint64_t *ret);

/* Decodes a number the kernel sent. -ENOENT for one this file system never hands out. */
int vbf_ino_parse(uint64_t ino, vbf_node *ret);

/* 1 for the kinds that are directories. */
int vbf_kind_is_dir(enum vbf_kind kind);

#endif
