/* src_qemu.h: the disks of a running QEMU VM, taken at one instant over QMP and read over NBD
 * (vmbak ingest --qemu QMP_SOCKET).
 *
 * src_qemu_begin connects to QEMU's QMP socket, finds the disks (the named ones, or every
 * writable disk), and in one QMP transaction, for every disk at once: adds a persistent dirty
 * bitmap "vmbak-VAULTUUID+next" that records writes from this instant on, disables the bitmap of
 * the VM's latest point in this vault ("vmbak-VAULTUUID@POINTID", when it is there, recording
 * and consistent), and starts a fleecing job (blockdev-backup sync=none) onto a temporary qcow2
 * overlay in a private 0700 directory, so that the overlay shows the disk as it was at the
 * instant while the guest runs on. The overlays are exported by QEMU's NBD server on a unix
 * socket in that directory, with the latest point's bitmap, and each disk gets a src_nbd
 * connection (src_nbd.h): its dirty extents when the bitmap was usable (an incremental read),
 * else none (a full read, with the reason in src_qemu_disk.note).
 *
 * After the ingest, src_qemu_end(commit id) tears the exports, jobs and overlays down and
 * replaces the old bitmap by "vmbak-VAULTUUID@NEWID" (the "+next" bitmap, merged into a new
 * bitmap of that name in one transaction); src_qemu_end(NULL) (a failed ingest) merges "+next"
 * back into the old bitmap and enables it again, so the next ingest still reads only what
 * changed since the latest point. A "+next" bitmap left by an ingest that was killed is merged
 * back the same way at the next src_qemu_begin. The guest runs throughout.
 *
 * Every QMP answer is awaited for at most 30 s. Messages: vbu_errmsg(), one line.
 * Thread safety: one object, one thread.
 */
#ifndef VMBAK_SRC_QEMU_H
#define VMBAK_SRC_QEMU_H

#include <stddef.h>
#include <stdint.h>

#include "ingest.h"
#include "rp.h"
#include "src_nbd.h"

typedef struct src_qemu src_qemu;

typedef struct src_qemu_disk {
	char name[VBS_NAME_MAX + 1]; /* the disk's name in the point */
	const vbs_source *src;	     /* its fleecing export */
	/* Incremental: the dirty extents since the latest point (changed_ext non-NULL, n may
	 * be 0). Full: changed_ext NULL. */
	const vbs_extent *changed_ext;
	size_t n_changed_ext;
	char note[256]; /* how it is read: "dirty bitmap since POINT" or "full: REASON" */
	src_nbd *conn;
} src_qemu_disk;

/* Selects and freezes the disks. want[0..n_want) are "NAME=NODE_OR_QDEV" pairs split by the
 * caller (names[i], nodes[i]); n_want 0: every writable disk, named after its drive id or its
 * device id. uuid: the vault's id; prev: the VM's latest point in the vault, or NULL.
 * *ret: end with src_qemu_end. Errors: -ENOENT a named node that does not exist, -EPROTO not a
 * QMP socket, -ENODEV no writable disk, else -errno. On error nothing is left in QEMU. */
int src_qemu_begin(const char *qmp_path, const char *const *names, const char *const *nodes,
		   size_t n_want, const char *uuid, const vbs_rp *prev, src_qemu **ret);

size_t src_qemu_count(const src_qemu *q);
src_qemu_disk *src_qemu_get(src_qemu *q, size_t i);

/* Tears everything down (see above); committed_id: the new point's id, or NULL when the
 * ingest failed. Returns 0, or -errno when QEMU did not take the bitmap change (the message
 * says which; the next ingest then reads in full). Frees q. NULL is fine. */
int src_qemu_end(src_qemu *q, const char *committed_id);

/* For signals (jobs_cli.h): removes the private directory's files. Async-signal safe. QEMU's
 * side stays until QEMU's next ingest begins, which cleans it. */
void src_qemu_kill_all(void);

#endif
