/* replica.h: the receiving end of sync: a replica takes frames and sealed records as they are.
 *
 * A replica (vbs_vault_init_replica) shares its source's uuid and keys, so every sealed record
 * and every chunk frame of the source is valid in it byte for byte. The receiver never has the
 * keys: it is opened without a passphrase, stores what the sender (sync.h, which has the
 * source unlocked) sends, and seals nothing itself; what must be sealed for it (the lineage
 * heads, its job record) the sender seals, under the shared keys.
 *
 * Messages. The sender calls vbs_replica_handle with one request and gets one response; over
 * ssh each travels as u32 length | bytes (tools/cmd_sync.c), here they are the bytes. Every
 * integer is big-endian. A request is u8 op | body; a response is u8 status | body, status
 * 0 ok, 1 error (body: one line of text), 2 stale (the request raced a change: ask again).
 *
 *   HELLO   u32 version | 36 source uuid
 *           -> u32 version | 36 uuid | 36 site | u32 chunk size | u8 encrypted |
 *              u32 pid | u64 pid start | 40 boot id (NUL-padded) | u8 has config
 *           Versions differ: error. Not a replica, or a replica of another vault: error.
 *   LIST    -> u64 seq | u64 last job id | u32 n | n x u64 point serials |
 *              u32 m | m x (16 H(vm) | u64 newest serial of that VM ever received)
 *   HAVE    u32 n (<= VBS_SYNC_HAVE_MAX) | n x 32 id -> n x u8 (1: stored)
 *   PUT     u64 job | u32 nc | nc x 32 id (stored, to pin) | u32 n (<= VBS_SYNC_PUT_MAX) |
 *           n x (32 id | u32 len | frame) -> u64 added | u64 added bytes; stale when one of
 *           the nc ids is no longer stored. Every id is pinned for job (gc.h) in the write that
 *           stores the frames. The job must have a record.
 *   JOB     u64 id | u8 create | u32 len | sealed job record -> ok; create: stale when the id
 *           is taken; else the id must exist
 *   COMMIT  u64 serial | u64 seq | 16 H(vm) | u16 nrec | nrec x (u8 db | u16 klen | key |
 *           u32 vlen | value) | u16 ndisks | ndisks x (u64 lineage | u8 full | u64 base |
 *           u32 nent | nent x (u64 chunk | u8 data | [32 id when data]))
 *           -> u8 already (the point was there). One write: the records (db 1 vms2 (kept
 *           when present), 2 rps2 (exactly one, key = serial), 3 rpnames2, 4 lineages2,
 *           5 dmaps (key starts with serial), 6 protect2 (key = serial)), the index entries
 *           at serial, meta "seq" raised to seq, and the VM's newest serial received. A disk
 *           not full is a delta on point base, which must still be there (else stale); a
 *           full disk lists every chunk holding data, and older entries of its lineage that
 *           would show through get a hole at serial.
 *   RELEASE u64 job -> ok: drops the job's pins unless a gc is registered (gc.h)
 *   CONFIG  u32 len | sealed meta "config" -> ok; stored only when the replica has none (one
 *           made from a config file alone, vbs_vault_init_replica); has config in HELLO
 *           says whether it has
 *
 * Every request is checked before anything is written: sizes against the message, counts
 * against the limits below, keys against their databases; a bad one is an error and changes
 * nothing. Thread safety: one handle, one caller at a time.
 */
#ifndef VMBAK_REPLICA_H
#define VMBAK_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "vault.h"

#define VBS_SYNC_PROTO 1
/* Any message, either way. A commit carries a point's index in one message: a disk sent whole
 * takes 41 bytes per chunk holding data, so this bounds a point to about 26 million such chunks
 * (1.6 TiB of data at 64 KiB chunks); frames go in puts of a few MiB. */
#define VBS_SYNC_MSG_MAX (1u << 30)
#define VBS_SYNC_HAVE_MAX 65536u
#define VBS_SYNC_PUT_MAX 4096u

enum {
	VBS_SYNC_HELLO = 1,
	VBS_SYNC_LIST,
	VBS_SYNC_HAVE,
	VBS_SYNC_PUT,
	VBS_SYNC_JOB,
	VBS_SYNC_COMMIT,
	VBS_SYNC_RELEASE,
	VBS_SYNC_CONFIG,
};
enum { VBS_SYNC_OK = 0, VBS_SYNC_ERR = 1, VBS_SYNC_STALE = 2 };

typedef struct vbs_replica vbs_replica;

/* Opens the replica at path for receiving (no passphrase). A vault that is not a replica:
 * -EPROTO with the message "'PATH' is not a replica (make one with vmbak init --replica-of)". */
int vbs_replica_open(const char *path, vbs_replica **ret);
void vbs_replica_close(vbs_replica *r);

/* Answers one request (len bytes, any content): *ret (malloc'ed, the caller frees it) is the
 * response, an error response included. Returns 0, or -ENOMEM when no response could be made. */
int vbs_replica_handle(vbs_replica *r, const uint8_t *req, size_t len, uint8_t **ret,
		       size_t *ret_len);

#endif
