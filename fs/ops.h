/* ops.h: the low-level FUSE operations of vmbakfs, over the read functions of store/.
 *
 * The tree (see vmbakfs(1)):
 *   /<vm>/latest -> <rp>, /<vm>/<rp>/manifest.json, /<vm>/<rp>/<disk>.img, /<vm>/<rp>/<disk>.key
 *
 * Every request asks the store afresh (each store call is one short LMDB read transaction), so
 * points ingested or pruned while mounted show up within the short timeouts of the root and the
 * VM directories. Recovery points never change, so what is inside them gets long timeouts, the
 * page cache keeps their content (keep_cache) and misses inside them are cached.
 *
 * Nothing is ever written: every operation that would change something fails with EROFS.
 * The operations are reentrant; run them from fuse_session_loop_mt().
 */
#ifndef VMBAK_FS_OPS_H
#define VMBAK_FS_OPS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#endif
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "vault.h"

/* Timeouts (seconds) the kernel may cache entries and attributes for. */
#define VBF_TTL_LONG 86400.0 /* inside a recovery point: it never changes */
#define VBF_TTL_SHORT 0.0 /* the root, VM directories, points, latest: points come and go */
/* The mount's read-ahead: main.c raises its bdi's read_ahead_kb to this (where it may), and
 * op_init asks the kernel for as much; the kernel keeps the smaller. With 1 MiB, a reader of
 * 1 MiB (dd bs=1M) had one request at a time in flight and read at half the speed of cat's
 * 128 KiB reads; with 4 MiB both read as fast. */
#define VBF_READ_AHEAD_KIB 4096

/* VM names by number, remembered: a VM's number is never given to another name (a VM made again
 * gets a new one), so a name found once stays right, and only whether the VM still has points
 * is asked again. Without it each request inside a VM directory decoded every VM record. */
#define VBF_VM_NAMES 256
struct vbf_vm_name {
	uint64_t vm; /* 0: empty */
	char name[VBS_NAME_MAX + 1];
};

/* The mount's state, the session's userdata. The vault's environment is open (after the
 * daemon forked) before the session loop starts; nothing here changes while it runs but the
 * remembered VM names (under names_lock). */
typedef struct vbf_fs {
	vbs_vault *vault;
	uid_t uid; /* owner of every node: the mounting user */
	gid_t gid;
	struct timespec started; /* times of the root and the VM directories */
	pthread_mutex_t names_lock;
	struct vbf_vm_name names[VBF_VM_NAMES];
} vbf_fs;

extern const struct fuse_lowlevel_ops vbf_ops;

#endif
