/* fuzz_rp.c: recovery point records, the JSON stored in database rps (vbs_rp_decode).
 *
 * A record that decodes must satisfy what readers rely on (valid names, a chunk size in range,
 * 1 to VBS_DISKS_MAX disks with distinct valid names, data chunks within the size), and must
 * survive vbs_rp_encode and a second decode unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rp.h"
#include "rp_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_rp(const vbs_rp *a, const vbs_rp *b)
{
	if (strcmp(a->vm, b->vm) || strcmp(a->id, b->id) || strcmp(a->parent, b->parent) ||
	    a->serial != b->serial || a->vm_serial != b->vm_serial ||
	    a->created_ns != b->created_ns || a->retain_until != b->retain_until ||
	    a->chunk_size != b->chunk_size || a->n_disks != b->n_disks)
		return 0;
	for (size_t i = 0; i < a->n_disks; i++) {
		const vbs_disk *x = &a->disks[i], *y = &b->disks[i];

		if (strcmp(x->name, y->name) || x->size != y->size || x->lineage != y->lineage ||
		    x->data_chunks != y->data_chunks || x->read_bytes != y->read_bytes ||
		    x->new_chunks != y->new_chunks || x->new_bytes != y->new_bytes ||
		    x->incremental != y->incremental || !x->escrow != !y->escrow ||
		    x->escrow_len != y->escrow_len ||
		    (x->escrow && memcmp(x->escrow, y->escrow, x->escrow_len)))
			return 0;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vbs_rp *rp = NULL, *rp2 = NULL;
	char *enc = NULL;
	size_t len;

	if (vbs_rp_decode(data, size, &rp) < 0)
		return 0;
	if (!vbu_name_valid(rp->vm) || !rp->id[0] || rp->n_disks == 0 ||
	    rp->n_disks > VBS_DISKS_MAX || rp->chunk_size < VBS_CHUNK_SIZE_MIN ||
	    rp->chunk_size > VBS_CHUNK_SIZE_MAX)
		abort();
	for (size_t i = 0; i < rp->n_disks; i++) {
		if (!vbu_name_valid(rp->disks[i].name) ||
		    rp->disks[i].data_chunks > rp->disks[i].size / rp->chunk_size + 1 ||
		    vbs_disk_data_bytes(rp, &rp->disks[i]) > rp->disks[i].size)
			abort();
		for (size_t k = 0; k < i; k++)
			if (strcmp(rp->disks[i].name, rp->disks[k].name) == 0)
				abort();
	}
	if (vbs_rp_encode(rp, &enc, &len) < 0)
		abort();
	if (vbs_rp_decode(enc, len, &rp2) < 0 || !same_rp(rp, rp2))
		abort();
	free(enc);
	vbs_rp_free(rp);
	vbs_rp_free(rp2);
	return 0;
}
