/* fuzz_manifest.c: manifest.json of a point, rendered from a stored record (vbs_rp_manifest).
 *
 * Whatever record decodes, its manifest must be one valid JSON object (it is served to users as
 * a file) carrying the point's vm, id and disks with their sizes, and data_bytes no larger than
 * the size.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rp.h"
#include "rp_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_object *field(json_object *o, const char *key, json_type type)
{
	json_object *f;

	if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, type))
		abort();
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *o, *disks;
	vbs_rp *rp = NULL;
	char *m = NULL;
	size_t len;

	if (vbs_rp_decode(data, size, &rp) < 0)
		return 0;
	if (vbs_rp_manifest(rp, &m, &len) < 0)
		abort();
	if (strlen(m) != len || len == 0 || m[len - 1] != '\n')
		abort();
	o = json_tokener_parse(m);
	if (!o || !json_object_is_type(o, json_type_object))
		abort();
	if (strcmp(json_object_get_string(field(o, "vm", json_type_string)), rp->vm) ||
	    strcmp(json_object_get_string(field(o, "id", json_type_string)), rp->id))
		abort();
	disks = field(o, "disks", json_type_array);
	if (json_object_array_length(disks) != rp->n_disks)
		abort();
	for (size_t i = 0; i < rp->n_disks; i++) {
		json_object *d = json_object_array_get_idx(disks, i);

		if (strcmp(json_object_get_string(field(d, "name", json_type_string)),
			   rp->disks[i].name) ||
		    (uint64_t)json_object_get_int64(field(d, "size", json_type_int)) !=
			rp->disks[i].size ||
		    (uint64_t)json_object_get_int64(field(d, "data_bytes", json_type_int)) >
			rp->disks[i].size)
			abort();
	}
	json_object_put(o);
	free(m);
	vbs_rp_free(rp);
	return 0;
}
