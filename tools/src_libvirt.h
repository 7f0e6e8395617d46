/* src_libvirt.h: the disks of a running libvirt domain, for vmbak ingest --libvirt.
 *
 * One pull-mode backup job (virDomainBackupBegin) takes every writable disk of the domain at
 * one instant, together with a new checkpoint, and exports them over NBD on a unix socket in
 * a private directory; they are read through tools/src_nbd.h while the guest runs, and the job
 * is ended (virDomainAbortJob) afterwards, on failure and on SIGINT/SIGTERM/SIGHUP too.
 *
 * Checkpoints are named "vmbak-<vault uuid>-<time in ns>", so two vaults backing up one domain
 * never use or remove each other's. A point records the checkpoint taken with it (rp.h
 * vbs_rp_source). The next ingest of that VM into that vault reads only what changed since
 * that checkpoint (<incremental>, the export's dirty bitmap as extents), when the VM's latest
 * point has one, the domain still has it, every disk is in that point with the same size, and
 * libvirt accepts it; otherwise every disk is read whole, and why is said in one line on
 * stderr and recorded. After a committed point the vault's older checkpoints of the domain are
 * deleted (libvirt merges their bitmaps); after a failure the new one is, so the checkpoint the
 * latest point names, which the next ingest needs, stays whole.
 *
 * Disk names are the disks' target names (vda, sdb). The point keeps the domain's inactive XML
 * without secrets (no VIR_DOMAIN_XML_SECURE) as its domain.xml. --quiesce freezes the guest's
 * file systems through its agent (virDomainFSFreeze) around the job's start.
 *
 * Not thread-safe. Functions that fail print one line on stderr and return an exit status.
 */
#ifndef VMBAK_SRC_LIBVIRT_H
#define VMBAK_SRC_LIBVIRT_H

#include <stddef.h>

#include "ingest.h"
#include "rp.h"

typedef struct src_lv src_lv;

typedef struct src_lv_opts {
	const char *uri;	/* --connect, or NULL: libvirt's default */
	const char *domain;	/* --libvirt */
	int quiesce;		/* --quiesce */
	const char *vm;		/* the VM's name in the vault (messages) */
	const char *vault_uuid; /* names the checkpoints */
	const vbs_rp *prev;	/* the VM's latest point in the vault, or NULL */
} src_lv_opts;

/* Starts the backup job and connects to its exports. *ret: src_lv_end. */
int src_lv_begin(const src_lv_opts *o, src_lv **ret);

/* The disks to ingest (with their sources and, incremental, changed extents), the source
 * record, the base point id (incremental) or NULL, the domain XML: owned by lv. */
const vbs_ingest_disk *src_lv_disks(const src_lv *lv, size_t *ret_n);
const vbs_rp_source *src_lv_source(const src_lv *lv);
const char *src_lv_base_id(const src_lv *lv);
vbs_rp_file src_lv_domain_xml(const src_lv *lv);

/* Ends the job and tidies the checkpoints (committed: the vault's older ones; else the new
 * one), removes the private directory and frees lv. NULL is fine. Problems here are said on
 * stderr ("vmbak: warning: ...") but do not fail the ingest. */
void src_lv_end(src_lv *lv, int committed);

#endif
