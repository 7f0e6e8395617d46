/* rp.h: VMs and recovery points: records, lookups, listings, the manifest.
 *
 * A recovery point (RP) is immutable once committed. Its id is its creation time in UTC,
 * "YYYY-MM-DDTHH:MM:SSZ"; a second point of the same VM in the same second gets "...Z-01",
 * "...Z-02" (so ids sort by time). Every point also has a serial: a vault-wide number, larger
 * for every commit, which never repeats and which the mount uses for inode numbers.
 *
 * Every function runs its own short LMDB read transaction: the result is a consistent
 * snapshot, and nothing is held afterwards. Thread-safe.
 * Errors: -ENOENT no such VM or point, -EBADMSG a damaged record, -ENOMEM, else as vault.h.
 */
#ifndef VMBAK_RP_H
#define VMBAK_RP_H

#include <stddef.h>
#include <stdint.h>

#include "vault.h"

#define VBS_RP_ID_MAX 32 /* with the NUL */
#define VBS_DISKS_MAX 256

typedef struct vbs_disk {
	char name[VBS_NAME_MAX + 1];
	uint64_t size;	      /* virtual size in bytes */
	uint64_t lineage;     /* index lineage (see index.h) */
	uint64_t data_chunks; /* chunks of this disk that are not holes (st_blocks) */
	uint64_t read_bytes;  /* bytes read from the source at ingest */
	uint64_t new_chunks;  /* chunks this ingest added to the vault */
	uint64_t new_bytes;   /* their stored size */
	int incremental;      /* 1 when ingested with --changed */
	char read_note[256];  /* how the source was read ("full: REASON"...), or "" */
	char *escrow;	      /* escrow blob (opaque to store/, NUL-terminated), or NULL */
	size_t escrow_len;
} vbs_disk;

/* Files kept with a point: the VM's configuration. Each is part of the point's record (sealed
 * with it, committed with it, read back only when its seal opens), at most VBS_RP_FILE_MAX
 * bytes, any bytes. */
enum vbs_rp_file_kind {
	VBS_RP_CONFIG = 0,     /* --config FILE: "<rp>/config" in the mount */
	VBS_RP_DOMAIN_XML = 1, /* libvirt's domain XML (secure form): "<rp>/domain.xml" */
	VBS_RP_FILES = 2,
};
#define VBS_RP_FILE_MAX (256u << 10)

typedef struct vbs_rp_file {
	uint8_t *data; /* NULL: the point has no such file */
	size_t len;
} vbs_rp_file;

/* The name of a kind of file in the mount and in manifests ("config", "domain.xml"). */
const char *vbs_rp_file_name(enum vbs_rp_file_kind kind);

/* How a point was taken, for the points of a running VM (kind "" for the others): which
 * source, whether every disk was read whole or only what changed since the point named by
 * "since" (the point's parent), the checkpoint (libvirt) or bitmap (QEMU) the next ingest
 * reads changes from, and why a full read was made where an incremental one was looked for. */
typedef struct vbs_rp_source {
	char kind[16];	       /* "libvirt", or "" */
	char origin[256];      /* the domain's name */
	char read[16];	       /* "full" or "incremental" */
	char checkpoint[128];  /* the checkpoint taken with this point */
	char since[128];       /* incremental: the checkpoint it read changes from */
	char why_full[256];    /* full: why ("" when no earlier point could be used) */
} vbs_rp_source;

typedef struct vbs_rp {
	char vm[VBS_NAME_MAX + 1];
	char id[VBS_RP_ID_MAX];
	char parent[VBS_RP_ID_MAX]; /* previous point of the VM at ingest, or "" */
	uint64_t serial;
	uint64_t vm_serial;   /* the VM's number (inode numbers of the mount) */
	int64_t created_ns;   /* wall clock at commit */
	int64_t retain_until; /* seconds since the epoch, 0 when none */
	int64_t damaged;      /* seconds since the epoch when a verify first found the point
			       * damaged (vbs_rp_mark_damaged), 0 when none has */
	uint32_t chunk_size;
	size_t n_disks;
	vbs_disk *disks;
	vbs_rp_file files[VBS_RP_FILES];
	vbs_rp_source source;
} vbs_rp;

void vbs_rp_free(vbs_rp *rp);

/* 1 when id has the form of a point id: "YYYY-MM-DDTHH:MM:SSZ", optionally "-NN". */
int vbs_rp_id_valid(const char *id);

/* Looks a point up by VM and id, or by serial. *ret is owned by the caller (vbs_rp_free). */
int vbs_rp_get(vbs_vault *v, const char *vm, const char *id, vbs_rp **ret);
int vbs_rp_get_serial(vbs_vault *v, uint64_t serial, vbs_rp **ret);
/* The newest point of a VM; -ENOENT when the VM has none. */
int vbs_rp_latest(vbs_vault *v, const char *vm, vbs_rp **ret);

/* All points of one VM (vm != NULL) or of every VM, sorted by VM name then id (time).
 * *ret is an array of *ret_n pointers; free with vbs_rp_list_free(). */
int vbs_rp_list(vbs_vault *v, const char *vm, vbs_rp ***ret, size_t *ret_n);
void vbs_rp_list_free(vbs_rp **list, size_t n);

/* Light listing for directories: names only. */
typedef struct vbs_name_entry {
	char name[VBS_RP_ID_MAX > VBS_NAME_MAX + 1 ? VBS_RP_ID_MAX : VBS_NAME_MAX + 1];
	uint64_t serial; /* VM number for VMs, point serial for points */
} vbs_name_entry;
/* VMs with at least one point, sorted by name. free() *ret. */
int vbs_vm_list(vbs_vault *v, vbs_name_entry **ret, size_t *ret_n);
/* The VM named name: its number. -ENOENT if it has no point. */
int vbs_vm_get(vbs_vault *v, const char *name, uint64_t *ret_serial);
/* The VM with number serial: its name (buf of VBS_NAME_MAX + 1). */
int vbs_vm_name(vbs_vault *v, uint64_t serial, char *buf);
/* Points of a VM, sorted by id. free() *ret. */
int vbs_rp_names(vbs_vault *v, const char *vm, vbs_name_entry **ret, size_t *ret_n);

/* Bytes of a disk that are not holes: data chunks times chunk size, at most the size. */
uint64_t vbs_disk_data_bytes(const vbs_rp *rp, const vbs_disk *d);

/* The point's source as JSON ({kind, origin, read, checkpoint, since, why_full}, empty strings
 * null), or NULL when it has none: a json-c object owned by the caller (json_object_put). */
struct json_object;
struct json_object *vbs_rp_source_json(const vbs_rp *rp);

/* manifest.json of a point, as the mount shows it: a malloc'ed NUL-terminated string owned
 * by the caller. Fields: format, vm, id, serial, created, retain_until (or null), parent (or
 * null), chunk_size, disks [{name, file, size, data_bytes}], escrow [disk names], config
 * and domain_xml ({file, size} or null), source (null, or {kind, origin, read, checkpoint,
 * since, why_full}, the last two null when empty). */
int vbs_rp_manifest(const vbs_rp *rp, char **ret, size_t *ret_len);

#endif
