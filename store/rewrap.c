/* rewrap.c: replacing the escrow blobs of a recovery point (see rewrap.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rp_db.h"
#include "rewrap.h"
#include "rp.h"
#include "seal.h"
#include "util.h"

struct rewrap_op {
	uint64_t serial;
	const char *vm, *id;
	const vbs_escrow_change *ch;
	size_t n;
};

static int rewrap_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct rewrap_op *op = arg;
	vbs_rp *rp = NULL;
	char *rec = NULL, **old = NULL;
	uint8_t sk[8];
	size_t len = 0, i;
	int r;

	r = vbs_rp_load(v, txn, op->serial, &rp);
	if (r < 0)
		return r;
	if (strcmp(rp->vm, op->vm) != 0 || strcmp(rp->id, op->id) != 0) {
		r = vbs_fail(-ENOENT, "recovery point %s/%s was deleted meanwhile", op->vm, op->id);
		goto out;
	}
	old = calloc(op->n ? op->n : 1, sizeof(*old));
	if (!old) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < op->n; i++) {
		const vbs_escrow_change *c = &op->ch[i];
		vbs_disk *d;
		char *b;

		if (c->disk >= rp->n_disks || !rp->disks[c->disk].escrow) {
			r = vbs_fail(-ENOENT, "recovery point %s/%s has no escrow blob for disk %u",
				     op->vm, op->id, c->disk);
			goto out;
		}
		d = &rp->disks[c->disk];
		if (d->escrow_len != c->old_len || memcmp(d->escrow, c->old, c->old_len) != 0) {
			r = vbs_fail(-EAGAIN,
				     "the escrow blob of disk '%s' of %s/%s changed meanwhile",
				     d->name, op->vm, op->id);
			goto out;
		}
		b = malloc(c->blob_len + 1);
		if (!b) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(b, c->blob, c->blob_len);
		b[c->blob_len] = '\0';
		old[i] = d->escrow; /* freed below; rp frees the new one */
		d->escrow = b;
		d->escrow_len = c->blob_len;
	}
	r = vbs_rp_encode(rp, &rec, &len);
	if (r < 0)
		goto out;
	vbs_put64(sk, op->serial);
	r = vbs_sput(v, txn, v->dbi_rps, VBS_DB_RPS, sk, 8, rec, len, 0);
out:
	if (old)
		for (i = 0; i < op->n; i++)
			free(old[i]);
	free(old);
	free(rec);
	vbs_rp_free(rp);
	return r;
}

int vbs_rp_rewrap(vbs_vault *v, uint64_t serial, const char *vm, const char *id,
		  const vbs_escrow_change *ch, size_t n)
{
	struct rewrap_op op = {.serial = serial, .vm = vm, .id = id, .ch = ch, .n = n};
	int r;

	vbs_clear_err();
	if (!vm || !id || (n > 0 && !ch) || n > VBS_DISKS_MAX)
		return vbs_fail(-EINVAL, "bad arguments");
	for (size_t i = 0; i < n; i++)
		if (!ch[i].old || !ch[i].blob || ch[i].blob_len == 0)
			return vbs_fail(-EINVAL, "bad arguments");
	if (n == 0)
		return 0;
	r = vbs_write(v, rewrap_fn, &op);
	if (r < 0 && !*vbs_errmsg())
		vbs_fail(r, "cannot rewrap the escrow of %s/%s in vault '%s': %s", vm, id, v->path,
			 vbu_strerror(-r));
	return r;
}
