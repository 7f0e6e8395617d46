/* escrow_tools.c: what the verbs that use a key vault and walk a vault's escrow blobs share
 * (see escrow_tools.h): opening and unlocking a key vault, the audited unwrap of a point's disk
 * key, the blob counts of key list --vault and key retire, and verify --keyvault.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "common.h"
#include "escrow.h"
#include "escrow_tools.h"
#include "hdrcheck.h"
#include "image.h"
#include "kv.h"
#include "rp.h"
#include "util.h"
#include "vault.h"

int kv_err(int r, const char *ctx)
{
	const char *msg = vbk_kv_errmsg();

	if (msg && *msg)
		vbu_err("%s", q(msg));
	else
		vbu_errno(r, "%s", ctx);
	return VMBAK_EXIT_FAIL;
}

int escrow_kv_unlock(vbk_kv *kv, const char *path, const char *passfile)
{
	vbk_passphrase_source src = {
	    .file = passfile,
	    .env_file = "VMBAK_KEYVAULT_PASSPHRASE_FILE",
	    .env_value = "VMBAK_KEYVAULT_PASSPHRASE",
	    .prompt = "key vault passphrase: ",
	};
	char *pass = NULL;
	int r, status;

	status = passphrase_get(&src, "key vault", path, &pass);
	if (status != 0)
		return status;
	r = vbk_kv_unlock(kv, pass);
	vbk_passphrase_free(pass);
	return r < 0 ? kv_err(r, "cannot unlock key vault") : 0;
}

int escrow_unwrap_disk(vbk_kv *kv, const char *op, const vbs_rp *rp, const vbs_disk *d,
		       vbk_escrow_info *ret_info, uint8_t **ret, size_t *ret_len)
{
	vbk_escrow_info info = {0};
	char detail[300];
	vbk_audit_event ev = {.op = op, .detail = detail};
	uint8_t *secret = NULL;
	size_t len = 0;
	int r;

	r = vbk_escrow_unwrap(kv, d->escrow, d->escrow_len, &info, &secret, &len);
	snprintf(detail, sizeof(detail), "%s/%s disk %s", rp->vm, rp->id, d->name);
	ev.key = r == 0 && info.kek[0] ? info.kek : NULL;
	ev.version = info.kek_version;
	ev.secret = r == 0 ? info.secret : NULL;
	ev.secret_version = info.secret_version;
	ev.result = r < 0 ? r : 0;
	if (vbk_audit_append(kv, &ev) < 0 && r == 0) {
		vbk_secret_free(secret, len);
		return kv_err(-EIO, "cannot write the key vault's audit log");
	}
	if (r < 0) {
		if (r == -EBADMSG)
			vbu_err("the escrowed key of disk '%s' of point %s/%s does not verify: it "
				"was altered or damaged",
				d->name, rp->vm, rp->id);
		else
			kv_err(r, "cannot unwrap an escrowed key");
		return VMBAK_EXIT_FAIL;
	}
	if (ret_info)
		*ret_info = info;
	*ret = secret;
	*ret_len = len;
	return 0;
}

int escrow_kv_open(const char *path, int unlock, const char *passfile, vbk_kv **ret)
{
	vbk_kv *kv = NULL;
	int r, status;

	r = vbk_kv_open(path, &kv);
	if (r < 0)
		return kv_err(r, "cannot open key vault");
	if (unlock && (status = escrow_kv_unlock(kv, path, passfile)) != 0) {
		vbk_kv_close(kv);
		return status;
	}
	*ret = kv;
	return 0;
}

/* The points of v to walk: all, those of vm, or vm's point id ("latest": the newest). */
int escrow_select_points(vbs_vault *v, const char *path, const char *vm, const char *id,
			 vbs_rp ***ret, size_t *ret_n)
{
	vbs_rp **list = NULL, *rp = NULL;
	size_t n = 0;
	int r;

	if (!id) {
		r = vbs_rp_list(v, vm, &list, &n);
		if (r < 0)
			return store_err(r, "cannot list recovery points of vault '%s'", q(path));
		if (vm && n == 0) {
			vbs_rp_list_free(list, n);
			vbu_err("no VM '%s' in vault '%s'", q(vm), q(path));
			return VMBAK_EXIT_FAIL;
		}
		*ret = list;
		*ret_n = n;
		return 0;
	}
	r = strcmp(id, "latest") == 0 ? vbs_rp_latest(v, vm, &rp) : vbs_rp_get(v, vm, id, &rp);
	if (r == -ENOENT) {
		vbu_err("no recovery point '%s/%s' in vault '%s'", q(vm), q(id), q(path));
		return VMBAK_EXIT_FAIL;
	}
	if (r < 0)
		return store_err(r, "cannot read recovery point '%s/%s'", q(vm), q(id));
	list = calloc(1, sizeof(*list));
	if (!list) {
		vbs_rp_free(rp);
		vbu_errno(-ENOMEM, "cannot read vault '%s'", q(path));
		return VMBAK_EXIT_FAIL;
	}
	list[0] = rp;
	*ret = list;
	*ret_n = 1;
	return 0;
}

int escrow_uses(const char *path, const vmbak_globals *g, const char *kv_id, escrow_use **uses,
		size_t *n)
{
	vbs_vault *v = NULL;
	vbs_rp **list = NULL;
	size_t np = 0;
	int status;

	status = vault_open(path, 1, 0, verb_passphrase_file(NULL, g), &v);
	if (status != 0)
		return status;
	status = escrow_select_points(v, path, NULL, NULL, &list, &np);
	for (size_t i = 0; status == 0 && i < np; i++) {
		for (size_t d = 0; d < list[i]->n_disks; d++) {
			const vbs_disk *disk = &list[i]->disks[d];
			vbk_escrow_info info;
			size_t k;

			/* A blob that does not parse names no version; verify reports it. */
			if (!disk->escrow ||
			    vbk_escrow_parse(disk->escrow, disk->escrow_len, &info) < 0 ||
			    strcmp(info.keyvault, kv_id) != 0 || !info.kek[0])
				continue;
			for (k = 0; k < *n; k++)
				if (strcmp((*uses)[k].kek, info.kek) == 0 &&
				    (*uses)[k].version == info.kek_version)
					break;
			if (k == *n) {
				escrow_use *p = realloc(*uses, (*n + 1) * sizeof(**uses));

				if (!p) {
					vbu_errno(-ENOMEM, "cannot read vault '%s'", q(path));
					status = VMBAK_EXIT_FAIL;
					break;
				}
				*uses = p;
				memset(&p[k], 0, sizeof(p[k]));
				snprintf(p[k].kek, sizeof(p[k].kek), "%s", info.kek);
				p[k].version = info.kek_version;
				(*n)++;
			}
			(*uses)[k].blobs++;
		}
	}
	vbs_rp_list_free(list, np);
	vbs_vault_close(v);
	return status;
}

/* ---- verify --keyvault ---- */

static int image_reader(void *arg, void *buf, size_t len, uint64_t off, size_t *ret_got)
{
	return vbs_image_read(arg, buf, len, off, ret_got);
}

/* Checks the secret against the header of disk d of rp as stored: NULL when it opens, else
 * why not (a static or thread-local phrase). */
static const char *check_header(vbs_vault *v, const vbs_rp *rp, unsigned d, const uint8_t *val,
				size_t len)
{
	static __thread char why[160];
	vbs_image *img = NULL;
	vbk_hdr_type t = VBK_HDR_OTHER;
	int r;

	r = vbs_image_open(v, rp->serial, d, &img);
	if (r == 0)
		r = vbk_hdr_check_reader(image_reader, img, vbs_image_size(img), val, len, &t);
	vbs_image_close(img);
	if (r == 0)
		return NULL;
	if (r == -ENOENT)
		return "cannot check: no cryptsetup in /usr/sbin, /sbin, /usr/bin or /bin";
	if (r == -EBADMSG)
		return "cannot check: the disk's header area in the vault is damaged";
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot check the header: %s", vbu_strerror(-r));
		return why;
	}
	if (r == 2 || t == VBK_HDR_BITLK) {
		snprintf(why, sizeof(why), "the secret does not open the disk's %s header",
			 t == VBK_HDR_BITLK ? "BitLocker" : "LUKS");
		return why;
	}
	snprintf(why, sizeof(why),
		 "the disk is not a LUKS or BitLocker volume (cryptsetup status %d)", r);
	return why;
}

int escrow_verify(vbs_vault *v, vbk_kv *kv, const char *vm, const char *id, int check,
		  json_object *arr, uint64_t *ret_total, uint64_t *ret_bad)
{
	vbs_rp **list = NULL;
	size_t np = 0;
	uint64_t total = 0, bad = 0;
	char detail[128];
	int status;

	status = escrow_select_points(v, vbs_vault_path(v), vm, id, &list, &np);
	for (size_t i = 0; status == 0 && i < np; i++) {
		const vbs_rp *rp = list[i];

		for (unsigned d = 0; d < rp->n_disks; d++) {
			const vbs_disk *disk = &rp->disks[d];
			vbk_escrow_info info;
			uint8_t *val = NULL;
			size_t len = 0;
			const char *why = NULL;
			char msg[600];
			int r;

			if (!disk->escrow)
				continue;
			total++;
			memset(&info, 0, sizeof(info));
			r = vbk_escrow_unwrap(kv, disk->escrow, disk->escrow_len, &info, &val,
					      &len);
			if (r < 0) {
				snprintf(msg, sizeof(msg), "%s", vbk_kv_errmsg());
				why = msg;
			} else if (check) {
				why = check_header(v, rp, d, val, len);
			}
			vbk_secret_free(val, len);
			if (why)
				bad++;
			if (arr) {
				json_object *o = json_object_new_object();

				if (o) {
					json_object_object_add(o, "vm",
							       json_object_new_string(rp->vm));
					json_object_object_add(o, "id",
							       json_object_new_string(rp->id));
					json_object_object_add(o, "disk",
							       json_object_new_string(disk->name));
					json_object_object_add(o, "ok",
							       json_object_new_boolean(!why));
					json_object_object_add(
					    o, "checked", json_object_new_boolean(check && !why));
					json_object_object_add(o, "error", json_str_or_null(why));
					json_object_array_add(arr, o);
				}
			} else if (why) {
				printf("%s/%s %s: escrow FAILED: %s\n", q(rp->vm), q(rp->id),
				       q(disk->name), why);
			} else {
				printf(
				    "%s/%s %s: escrow ok (secret '%s' version %u, key '%s' version "
				    "%u%s)\n",
				    q(rp->vm), q(rp->id), q(disk->name), info.secret,
				    info.secret_version, info.kek[0] ? info.kek : "(none)",
				    info.kek_version, check ? ", opens the disk's header" : "");
			}
		}
	}
	vbs_rp_list_free(list, np);
	if (status == 0) {
		vbk_audit_event ev = {.op = "verify-escrow", .detail = detail};

		snprintf(detail, sizeof(detail), "vault %s: %llu blobs unwrapped, %llu failed%s",
			 vbs_vault_uuid(v), (unsigned long long)total, (unsigned long long)bad,
			 check ? " (headers checked)" : "");
		if (vbk_audit_append(kv, &ev) < 0) {
			vbu_err("%s", q(vbk_kv_errmsg()));
			status = VMBAK_EXIT_FAIL;
		}
	}
	*ret_total = total;
	*ret_bad = bad;
	return status;
}
