/* escrow_tools.h: what the verbs that walk a vault's escrow blobs share (escrow_tools.c): rewrap,
 * key retire and key list --vault (cmd_keyvault.c), verify --keyvault (cmd_verify.c).
 *
 * Like every helper of tools/, these print the one line of an error themselves and return an
 * exit status (0 when all is well).
 */
#ifndef VMBAK_ESCROW_TOOLS_H
#define VMBAK_ESCROW_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "escrow.h"
#include "kv.h"
#include "vault.h"

/* The points of v to walk: all (vm NULL), those of vm, or vm's point id ("latest": the newest).
 * *ret (n of them) is freed with vbs_rp_list_free(). path: the vault's, for messages. */
struct vbs_rp;
int escrow_select_points(vbs_vault *v, const char *path, const char *vm, const char *id,
			 struct vbs_rp ***ret, size_t *ret_n);
/* Opens the key vault at path and, with unlock, asks for its passphrase (passfile, else
 * VMBAK_KEYVAULT_PASSPHRASE_FILE, VMBAK_KEYVAULT_PASSPHRASE, the terminal) and unlocks it. */
int escrow_kv_open(const char *path, int unlock, const char *passfile, vbk_kv **ret);
/* Asks for the passphrase of the key vault kv (opened from path), as escrow_kv_open() does,
 * and unlocks it. */
int escrow_kv_unlock(vbk_kv *kv, const char *path, const char *passfile);
/* Unwraps the escrow blob of disk d of point rp with the unlocked kv, and records the unwrap
 * (or its failure) in kv's audit log as operation op ("restore", "files"): an unwrap that
 * cannot be recorded gives no secret. *ret_info (may be NULL) gets the blob's fields; *ret the
 * secret, released with vbk_secret_free(*ret, *ret_len). Prints the error. */
struct vbs_disk;
int escrow_unwrap_disk(vbk_kv *kv, const char *op, const struct vbs_rp *rp,
		       const struct vbs_disk *d, vbk_escrow_info *ret_info, uint8_t **ret,
		       size_t *ret_len);
/* A key vault failure: prints vbk_kv_errmsg() when it has one, else "vmbak: CTX: strerror".
 * Returns VMBAK_EXIT_FAIL. */
int kv_err(int r, const char *ctx);

/* How many escrow blobs of the key vault with id kv_id use each KEK version. */
typedef struct escrow_use {
	char kek[VBK_KV_NAME_MAX + 1];
	uint32_t version;
	uint64_t blobs;
} escrow_use;

/* Adds the blobs of the vault at path (opened read-only, with the vault's passphrase as every
 * verb takes it) to *uses (*n entries, realloc'ed; free() it). */
int escrow_uses(const char *path, const vmbak_globals *g, const char *kv_id, escrow_use **uses,
		size_t *n);

/* verify --keyvault KV [--check-escrow]: unwraps every escrow blob of the points of v (of VM
 * vm, or of its point id when id is not NULL; "latest" its newest), printing one line per blob
 * (never the secret), and with check tests each secret against its disk's header in the stored
 * image. *ret_bad counts the blobs that failed. With json, the results are added to arr
 * instead of printed. */
int escrow_verify(vbs_vault *v, vbk_kv *kv, const char *vm, const char *id, int check,
		  json_object *arr, uint64_t *ret_total, uint64_t *ret_bad);

#endif
