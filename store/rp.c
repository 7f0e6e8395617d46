/* rp.c: recovery point records (JSON in LMDB), VM records, listings, manifests.
 *
 * A point's record, the value of rps[serial], is a JSON object:
 *   {"vm": str, "id": str, "serial": int, "vm_serial": int, "created_ns": int,
 *    "retain_until": int (seconds, 0 none), "parent": str ("" none), "chunk_size": int,
 *    "disks": [{"name": str, "size": int, "lineage": int, "data_chunks": int,
 *               "read_bytes": int, "new_chunks": int, "new_bytes": int,
 *               "incremental": bool, "escrow": str (optional),
 *               "read": str (optional: how the source was read, as its caller said)}],
 *    "config": str (optional), "domain_xml": str (optional),
 *    "damaged": int (optional: seconds, when a verify first found the point damaged),
 *    "source": {"kind": str, "origin": str, "read": str, "checkpoint": str, "since": str,
 *               "why_full": str} (optional)}
 * config and domain_xml are the base64 of the files of vbs_rp_file (at most VBS_RP_FILE_MAX
 * bytes each); they live in the record so that they are sealed and committed with it.
 */
#include <errno.h>
#include <stddef.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rp_db.h"
#include "json.h"
#include "rp.h"
#include "seal.h"
#include "util.h"

#define RECORD_MAX (16u << 20)

void vbs_rp_free(vbs_rp *rp)
{
	if (!rp)
		return;
	for (size_t i = 0; i < rp->n_disks; i++)
		free(rp->disks[i].escrow);
	free(rp->disks);
	for (int k = 0; k < VBS_RP_FILES; k++)
		free(rp->files[k].data);
	free(rp);
}

static const char *const file_names[VBS_RP_FILES] = {"config", "domain.xml"};
static const char *const file_keys[VBS_RP_FILES] = {"config", "domain_xml"};

const char *vbs_rp_file_name(enum vbs_rp_file_kind kind)
{
	return (unsigned)kind < VBS_RP_FILES ? file_names[kind] : NULL;
}

static int files_encode(const vbs_rp *rp, json_object *o)
{
	for (int k = 0; k < VBS_RP_FILES; k++) {
		const vbs_rp_file *f = &rp->files[k];
		char *b;

		if (!f->data)
			continue;
		if (f->len > VBS_RP_FILE_MAX)
			return -EFBIG;
		b = vbu_base64_encode(f->data, f->len);
		if (!b)
			return -ENOMEM;
		json_object_object_add(o, file_keys[k], json_object_new_string(b));
		free(b);
	}
	return 0;
}

static const struct {
	const char *key;
	size_t off, cap;
} source_fields[] = {
#define F(x) {#x, offsetof(vbs_rp_source, x), sizeof(((vbs_rp_source *)0)->x)}
    F(kind), F(origin), F(read), F(checkpoint), F(since), F(why_full),
#undef F
};
#define N_SOURCE_FIELDS (sizeof(source_fields) / sizeof(source_fields[0]))

static void source_encode(const vbs_rp *rp, json_object *o)
{
	json_object *j;

	if (!rp->source.kind[0] || !(j = json_object_new_object()))
		return;
	for (size_t i = 0; i < N_SOURCE_FIELDS; i++)
		json_object_object_add(j, source_fields[i].key,
				       json_object_new_string((const char *)&rp->source +
							      source_fields[i].off));
	json_object_object_add(o, "source", j);
}

static int source_decode(json_object *o, vbs_rp *rp)
{
	json_object *j;

	if (!json_object_object_get_ex(o, "source", &j))
		return 0;
	if (!json_object_is_type(j, json_type_object))
		return -EBADMSG;
	for (size_t i = 0; i < N_SOURCE_FIELDS; i++)
		if (vbu_json_copy_str(j, source_fields[i].key,
				      (char *)&rp->source + source_fields[i].off,
				      source_fields[i].cap) < 0)
			return -EBADMSG;
	return rp->source.kind[0] ? 0 : -EBADMSG;
}

static int files_decode(json_object *o, vbs_rp *rp)
{
	for (int k = 0; k < VBS_RP_FILES; k++) {
		vbs_rp_file *f = &rp->files[k];
		json_object *j;
		size_t blen;

		if (!json_object_object_get_ex(o, file_keys[k], &j))
			continue;
		if (!json_object_is_type(j, json_type_string))
			return -EBADMSG;
		blen = (size_t)json_object_get_string_len(j);
		if (blen > (VBS_RP_FILE_MAX + 2) / 3 * 4)
			return -EBADMSG;
		f->data = malloc(blen / 4 * 3 + 1);
		if (!f->data)
			return -ENOMEM;
		if (vbu_base64_decode(json_object_get_string(j), f->data, blen / 4 * 3 + 1,
				      &f->len) < 0 ||
		    f->len > VBS_RP_FILE_MAX)
			return -EBADMSG;
	}
	return 0;
}

void vbs_rp_list_free(vbs_rp **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		vbs_rp_free(list[i]);
	free(list);
}

int vbs_rp_encode(const vbs_rp *rp, char **ret, size_t *ret_len)
{
	json_object *o = json_object_new_object(), *disks = json_object_new_array();
	const char *s;
	int r = 0;

	if (!o || !disks) {
		json_object_put(o);
		json_object_put(disks);
		return -ENOMEM;
	}
	json_object_object_add(o, "vm", json_object_new_string(rp->vm));
	json_object_object_add(o, "id", json_object_new_string(rp->id));
	json_object_object_add(o, "serial", json_object_new_int64((int64_t)rp->serial));
	json_object_object_add(o, "vm_serial", json_object_new_int64((int64_t)rp->vm_serial));
	json_object_object_add(o, "created_ns", json_object_new_int64(rp->created_ns));
	json_object_object_add(o, "retain_until", json_object_new_int64(rp->retain_until));
	json_object_object_add(o, "parent", json_object_new_string(rp->parent));
	json_object_object_add(o, "chunk_size", json_object_new_int64(rp->chunk_size));
	if (rp->damaged)
		json_object_object_add(o, "damaged", json_object_new_int64(rp->damaged));
	for (size_t i = 0; i < rp->n_disks; i++) {
		const vbs_disk *d = &rp->disks[i];
		json_object *j = json_object_new_object();

		json_object_object_add(j, "name", json_object_new_string(d->name));
		json_object_object_add(j, "size", json_object_new_int64((int64_t)d->size));
		json_object_object_add(j, "lineage", json_object_new_int64((int64_t)d->lineage));
		json_object_object_add(j, "data_chunks",
				       json_object_new_int64((int64_t)d->data_chunks));
		json_object_object_add(j, "read_bytes", json_object_new_int64((int64_t)d->read_bytes));
		json_object_object_add(j, "new_chunks", json_object_new_int64((int64_t)d->new_chunks));
		json_object_object_add(j, "new_bytes", json_object_new_int64((int64_t)d->new_bytes));
		json_object_object_add(j, "incremental", json_object_new_boolean(d->incremental));
		if (d->read_note[0])
			json_object_object_add(j, "read", json_object_new_string(d->read_note));
		if (d->escrow)
			json_object_object_add(j, "escrow",
					       json_object_new_string_len(d->escrow,
									  (int)d->escrow_len));
		json_object_array_add(disks, j);
	}
	json_object_object_add(o, "disks", disks);
	if ((r = files_encode(rp, o)) < 0) {
		json_object_put(o);
		return r;
	}
	source_encode(rp, o);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	*ret = s ? strdup(s) : NULL;
	if (!*ret)
		r = -ENOMEM;
	else
		*ret_len = strlen(*ret);
	json_object_put(o);
	return r;
}

int vbs_rp_decode(const void *data, size_t len, vbs_rp **ret)
{
	json_tokener *tok = NULL;
	json_object *o = NULL, *disks, *f;
	vbs_rp *rp = NULL;
	uint64_t x;
	size_t n;
	int r = -EBADMSG;

	if (len == 0 || len > RECORD_MAX)
		return -EBADMSG;
	tok = json_tokener_new();
	rp = calloc(1, sizeof(*rp));
	if (!tok || !rp) {
		r = -ENOMEM;
		goto out;
	}
	o = json_tokener_parse_ex(tok, data, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object))
		goto out;
	if (vbu_json_copy_str(o, "vm", rp->vm, sizeof(rp->vm)) || !vbu_name_valid(rp->vm) ||
	    vbu_json_copy_str(o, "id", rp->id, sizeof(rp->id)) || !vbs_rp_id_valid(rp->id) ||
	    vbu_json_copy_str(o, "parent", rp->parent, sizeof(rp->parent)) ||
	    (rp->parent[0] && !vbs_rp_id_valid(rp->parent)) ||
	    vbu_json_u64(o, "serial", &rp->serial) ||
	    vbu_json_u64(o, "vm_serial", &rp->vm_serial) || vbu_json_u64(o, "created_ns", &x))
		goto out;
	rp->created_ns = (int64_t)x;
	if (vbu_json_u64(o, "retain_until", &x))
		goto out;
	rp->retain_until = (int64_t)x;
	if (json_object_object_get_ex(o, "damaged", NULL)) {
		if (vbu_json_u64(o, "damaged", &x) || x == 0 || x > INT64_MAX)
			goto out;
		rp->damaged = (int64_t)x;
	}
	if (vbu_json_u64(o, "chunk_size", &x) || x < VBS_CHUNK_SIZE_MIN || x > VBS_CHUNK_SIZE_MAX)
		goto out;
	rp->chunk_size = (uint32_t)x;
	if (!json_object_object_get_ex(o, "disks", &disks) ||
	    !json_object_is_type(disks, json_type_array))
		goto out;
	n = json_object_array_length(disks);
	if (n == 0 || n > VBS_DISKS_MAX)
		goto out;
	rp->disks = calloc(n, sizeof(*rp->disks));
	if (!rp->disks) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *j = json_object_array_get_idx(disks, i);
		vbs_disk *d = &rp->disks[i];

		rp->n_disks = i + 1;
		if (!json_object_is_type(j, json_type_object) ||
		    vbu_json_copy_str(j, "name", d->name, sizeof(d->name)) ||
		    !vbu_name_valid(d->name) || vbu_json_u64(j, "size", &d->size) ||
		    vbu_json_u64(j, "lineage", &d->lineage) ||
		    vbu_json_u64(j, "data_chunks", &d->data_chunks) ||
		    vbu_json_u64(j, "read_bytes", &d->read_bytes) ||
		    vbu_json_u64(j, "new_chunks", &d->new_chunks) ||
		    vbu_json_u64(j, "new_bytes", &d->new_bytes))
			goto out;
		if (d->data_chunks > d->size / rp->chunk_size + 1)
			goto out;
		if (json_object_object_get_ex(j, "incremental", &f))
			d->incremental = json_object_get_boolean(f);
		if (json_object_object_get_ex(j, "read", NULL) &&
		    vbu_json_copy_str(j, "read", d->read_note, sizeof(d->read_note)))
			goto out;
		if (json_object_object_get_ex(j, "escrow", &f)) {
			if (!json_object_is_type(f, json_type_string))
				goto out;
			d->escrow_len = (size_t)json_object_get_string_len(f);
			d->escrow = malloc(d->escrow_len + 1);
			if (!d->escrow) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(d->escrow, json_object_get_string(f), d->escrow_len + 1);
		}
		for (size_t k = 0; k < i; k++)
			if (strcmp(rp->disks[k].name, d->name) == 0)
				goto out;
	}
	if ((r = files_decode(o, rp)) < 0 || (r = source_decode(o, rp)) < 0)
		goto out;
	*ret = rp;
	rp = NULL;
	r = 0;
out:
	vbs_rp_free(rp);
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int vbs_rp_id_valid(const char *id)
{
	/* YYYY-MM-DDTHH:MM:SSZ, then -NN for a later point in the same second */
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	size_t len = strlen(id);

	if (len != 20 && len != 23)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char want = i < 20 ? shape[i] : (i == 20 ? '-' : 'd');
		if (want == 'd' ? !(id[i] >= '0' && id[i] <= '9') : id[i] != want)
			return 0;
	}
	return 1;
}

int vbs_rp_load(vbs_vault *v, MDB_txn *txn, uint64_t serial, vbs_rp **ret)
{
	uint8_t key[8], *rec = NULL;
	size_t len = 0;
	vbs_rp *rp = NULL;
	int r;

	vbs_put64(key, serial);
	r = vbs_sget(v, txn, v->dbi_rps, VBS_DB_RPS, key, 8, &rec, &len);
	if (r == -ENOENT)
		return vbs_fail(-ENOENT, "no recovery point with serial %llu",
				(unsigned long long)serial);
	if (r == 0)
		r = vbs_rp_decode(rec, len, &rp);
	vbs_unsealed_free(rec, len);
	if (r == 0 && rp->serial != serial)
		r = -EBADMSG;
	if (r == -EBADMSG) {
		vbs_rp_free(rp);
		return vbs_fail(r, "vault '%s': damaged record of recovery point %llu", v->path,
				(unsigned long long)serial);
	}
	if (r < 0)
		return vbs_fail(r, "cannot read vault '%s': %s", v->path, vbu_strerror(-r));
	*ret = rp;
	return 0;
}

/* ---- names: rpnames2 and vms2 (seal.h) ---- */

static int vm_key(vbs_vault *v, const char *vm, uint8_t k[VBS_NAME_HASH_LEN])
{
	return vbs_name_hash(v, "vm", vm, strlen(vm), k);
}

int vbs_vm_key(vbs_vault *v, const char *vm, uint8_t k[VBS_NAME_HASH_LEN])
{
	return vm_key(v, vm, k);
}

/* H(vm) | H(vm NUL id) */
static int name_key(vbs_vault *v, const char *vm, const char *id, uint8_t k[2 * VBS_NAME_HASH_LEN])
{
	char buf[VBS_NAME_MAX + 1 + VBS_RP_ID_MAX];
	size_t a = strlen(vm), b = strlen(id);
	int r;

	if (a > VBS_NAME_MAX || b >= VBS_RP_ID_MAX)
		return -ENOENT;
	memcpy(buf, vm, a);
	buf[a] = '\0';
	memcpy(buf + a + 1, id, b);
	r = vm_key(v, vm, k);
	if (r == 0)
		r = vbs_name_hash(v, "rp", buf, a + 1 + b, k + VBS_NAME_HASH_LEN);
	return r;
}

int vbs_rpname_key(vbs_vault *v, const char *vm, const char *id, uint8_t k[2 * VBS_NAME_HASH_LEN])
{
	return name_key(v, vm, id, k);
}

/* The value of a name record: u64 serial, then the id. Checks that the id is what the key
 * names (a sealed value cannot move, but the check costs nothing). */
static int name_decode(vbs_vault *v, const char *vm, const uint8_t *key, const uint8_t *p,
		       size_t len, char id[VBS_RP_ID_MAX], uint64_t *ret_serial)
{
	uint8_t k[2 * VBS_NAME_HASH_LEN];
	int r;

	if (len <= 8 || len - 8 >= VBS_RP_ID_MAX || memchr(p + 8, '\0', len - 8))
		return -EBADMSG;
	memcpy(id, p + 8, len - 8);
	id[len - 8] = '\0';
	if (!vbs_rp_id_valid(id))
		return -EBADMSG;
	if ((r = name_key(v, vm, id, k)) < 0)
		return r;
	if (memcmp(k, key, sizeof(k)) != 0)
		return -EBADMSG;
	*ret_serial = vbs_get64(p);
	return 0;
}

int vbs_name_put(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t serial)
{
	uint8_t k[2 * VBS_NAME_HASH_LEN], val[8 + VBS_RP_ID_MAX];
	size_t il = strlen(id);
	int r = name_key(v, vm, id, k);

	if (r < 0)
		return r == -ENOENT ? -EINVAL : r;
	vbs_put64(val, serial);
	memcpy(val + 8, id, il);
	return vbs_sput(v, txn, v->dbi_rpnames, VBS_DB_NAMES, k, sizeof(k), val, 8 + il,
			MDB_NOOVERWRITE);
}

int vbs_name_find(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t *ret)
{
	uint8_t k[2 * VBS_NAME_HASH_LEN], *p = NULL;
	char got[VBS_RP_ID_MAX];
	size_t len = 0;
	int r;

	if (!vbu_name_valid(vm) || !vbs_rp_id_valid(id))
		return -ENOENT;
	if ((r = name_key(v, vm, id, k)) < 0)
		return r;
	r = vbs_sget(v, txn, v->dbi_rpnames, VBS_DB_NAMES, k, sizeof(k), &p, &len);
	if (r == 0)
		r = name_decode(v, vm, k, p, len, got, ret);
	vbs_unsealed_free(p, len);
	return r;
}

int vbs_name_del(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id)
{
	uint8_t k[2 * VBS_NAME_HASH_LEN];
	MDB_val key = {sizeof(k), k};
	int r = name_key(v, vm, id, k);

	if (r < 0)
		return r;
	return vbs_mdb_err(mdb_del(txn, v->dbi_rpnames, &key, NULL));
}

int vbs_rp_id_taken(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id)
{
	uint64_t serial;
	int r = vbs_name_find(v, txn, vm, id, &serial);

	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const vbs_name_entry *)a)->name, ((const vbs_name_entry *)b)->name);
}

/* Opens one raw record as an entry (a name record of vm, or a VM record when vm is NULL). */
static int entry_open(vbs_vault *v, const char *vm, const MDB_val *k, const MDB_val *d,
		      vbs_name_entry *e)
{
	if (vm)
		return vbs_name_open(v, vm, k->mv_data, k->mv_size, d->mv_data, d->mv_size, e->name,
				     &e->serial);
	return vbs_vm_open(v, k->mv_data, k->mv_size, d->mv_data, d->mv_size, e->name, &e->serial);
}

/* Every record of dbi whose key starts with prefix (plen bytes; 0: all), opened, sorted by
 * name; the first that does not open fails the whole (-EBADMSG). */
static int scan_entries(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix,
			size_t plen, const char *vm, vbs_name_entry **ret, size_t *ret_n)
{
	vbs_name_entry *e = NULL;
	size_t n = 0, cap = 0;
	MDB_cursor *c = NULL;
	MDB_val k = {plen, (void *)prefix}, d;
	int rc, r = 0;

	rc = mdb_cursor_open(txn, dbi, &c);
	if (rc)
		return vbs_mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, plen ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
			break;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			vbs_name_entry *ne = realloc(e, nc * sizeof(*e));
			if (!ne) {
				r = -ENOMEM;
				break;
			}
			e = ne;
			cap = nc;
		}
		if ((r = entry_open(v, vm, &k, &d, &e[n])) < 0)
			break;
		n++;
	}
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	mdb_cursor_close(c);
	if (r < 0) {
		free(e);
		return r;
	}
	if (n)
		qsort(e, n, sizeof(*e), cmp_entry);
	*ret = e;
	*ret_n = n;
	return 0;
}

int vbs_names_of(vbs_vault *v, MDB_txn *txn, const char *vm, vbs_name_entry **ret,
		 size_t *ret_n)
{
	uint8_t vk[VBS_NAME_HASH_LEN];
	int r;

	if (!vbu_name_valid(vm)) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if ((r = vm_key(v, vm, vk)) < 0)
		return r;
	return scan_entries(v, txn, v->dbi_rpnames, vk, sizeof(vk), vm, ret, ret_n);
}

int vbs_rp_store(vbs_vault *v, MDB_txn *txn, const vbs_rp *rp)
{
	char *rec = NULL;
	uint8_t sk[8];
	size_t len;
	int r;

	r = vbs_rp_encode(rp, &rec, &len);
	if (r < 0)
		return r;
	vbs_put64(sk, rp->serial);
	r = vbs_sput(v, txn, v->dbi_rps, VBS_DB_RPS, sk, 8, rec, len, MDB_NOOVERWRITE);
	free(rec);
	if (r < 0)
		return r;
	return vbs_name_put(v, txn, rp->vm, rp->id, rp->serial);
}

/* The VM record: u64 number, i64 created (ns), the name. */
static int vm_decode(vbs_vault *v, const uint8_t *key, size_t klen, const uint8_t *p, size_t len,
		     char name[VBS_NAME_MAX + 1], uint64_t *ret_num)
{
	uint8_t k[VBS_NAME_HASH_LEN];
	int r;

	if (klen != VBS_NAME_HASH_LEN || len <= 16 || len - 16 > VBS_NAME_MAX ||
	    memchr(p + 16, '\0', len - 16))
		return -EBADMSG;
	memcpy(name, p + 16, len - 16);
	name[len - 16] = '\0';
	if (!vbu_name_valid(name))
		return -EBADMSG;
	if ((r = vm_key(v, name, k)) < 0)
		return r;
	if (memcmp(k, key, sizeof(k)) != 0)
		return -EBADMSG;
	*ret_num = vbs_get64(p);
	return 0;
}

int vbs_vm_open(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		char name[VBS_NAME_MAX + 1], uint64_t *ret_num)
{
	uint8_t *p = NULL;
	size_t len = 0;
	int r = vbs_unseal(v, VBS_DB_VMS, key, klen, val, vlen, &p, &len);

	if (r == 0)
		r = vm_decode(v, key, klen, p, len, name, ret_num);
	vbs_unsealed_free(p, len);
	return r;
}

int vbs_name_open(vbs_vault *v, const char *vm, const void *key, size_t klen, const void *val,
		  size_t vlen, char id[VBS_RP_ID_MAX], uint64_t *ret_serial)
{
	uint8_t *p = NULL;
	size_t len = 0;
	int r;

	if (klen != 2 * VBS_NAME_HASH_LEN)
		return -EBADMSG;
	r = vbs_unseal(v, VBS_DB_NAMES, key, klen, val, vlen, &p, &len);
	if (r == 0)
		r = name_decode(v, vm, key, p, len, id, ret_serial);
	vbs_unsealed_free(p, len);
	return r;
}

int vbs_rp_open(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		vbs_rp **ret)
{
	uint8_t *rec = NULL;
	size_t len = 0;
	vbs_rp *rp = NULL;
	int r;

	if (klen != 8)
		return -EBADMSG;
	r = vbs_unseal(v, VBS_DB_RPS, key, klen, val, vlen, &rec, &len);
	if (r == 0)
		r = vbs_rp_decode(rec, len, &rp);
	vbs_unsealed_free(rec, len);
	if (r == 0 && rp->serial != vbs_get64(key)) {
		vbs_rp_free(rp);
		r = -EBADMSG;
	}
	if (r == 0)
		*ret = rp;
	return r;
}

int vbs_vm_find(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret)
{
	uint8_t k[VBS_NAME_HASH_LEN], *p = NULL;
	char name[VBS_NAME_MAX + 1];
	size_t len = 0;
	int r;

	if (!vbu_name_valid(vm))
		return -ENOENT;
	if ((r = vm_key(v, vm, k)) < 0)
		return r;
	r = vbs_sget(v, txn, v->dbi_vms, VBS_DB_VMS, k, sizeof(k), &p, &len);
	if (r == 0)
		r = vm_decode(v, k, sizeof(k), p, len, name, ret);
	vbs_unsealed_free(p, len);
	return r;
}

int vbs_vm_del(vbs_vault *v, MDB_txn *txn, const char *vm)
{
	uint8_t k[VBS_NAME_HASH_LEN];
	MDB_val key = {sizeof(k), k};
	int r = vm_key(v, vm, k);

	if (r < 0)
		return r;
	return vbs_mdb_err(mdb_del(txn, v->dbi_vms, &key, NULL));
}

int vbs_vm_put(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t num, int64_t created_ns)
{
	uint8_t k[VBS_NAME_HASH_LEN], val[16 + VBS_NAME_MAX];
	size_t a = strlen(vm);
	int r;

	if (!vbu_name_valid(vm))
		return -EINVAL;
	if ((r = vm_key(v, vm, k)) < 0)
		return r;
	vbs_put64(val, num);
	vbs_put64(val + 8, (uint64_t)created_ns);
	memcpy(val + 16, vm, a);
	return vbs_sput(v, txn, v->dbi_vms, VBS_DB_VMS, k, sizeof(k), val, 16 + a, 0);
}

int vbs_vm_ensure(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret)
{
	int r = vbs_vm_find(v, txn, vm, ret);

	if (r != -ENOENT)
		return r;
	if ((r = vbs_seq_next(v, txn, ret)) < 0)
		return r;
	return vbs_vm_put(v, txn, vm, *ret, vbu_now_ns());
}

/* Serial of the newest point of vm in txn; -ENOENT if none. */
int vbs_rp_latest_serial(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret)
{
	vbs_name_entry *e;
	size_t n;
	int r = vbs_names_of(v, txn, vm, &e, &n);

	if (r < 0)
		return r;
	if (n)
		*ret = e[n - 1].serial;
	free(e);
	return n ? 0 : -ENOENT;
}

int vbs_rp_get_serial(vbs_vault *v, uint64_t serial, vbs_rp **ret)
{
	MDB_txn *txn;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_rp_load(v, txn, serial, ret);
	vbs_read_end(v, txn);
	return r;
}

int vbs_rp_get(vbs_vault *v, const char *vm, const char *id, vbs_rp **ret)
{
	MDB_txn *txn;
	uint64_t serial;
	vbs_rp *rp = NULL;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_name_find(v, txn, vm, id, &serial);
	if (r == -ENOENT)
		r = vbs_fail(r, "no recovery point '%s/%s' in vault '%s'", vm, id, v->path);
	else if (r < 0)
		r = vbs_fail(r, "vault '%s': damaged name record of '%s/%s'", v->path, vm, id);
	else
		r = vbs_rp_load(v, txn, serial, &rp);
	vbs_read_end(v, txn);
	if (r == 0 && (strcmp(rp->vm, vm) != 0 || strcmp(rp->id, id) != 0)) {
		vbs_rp_free(rp);
		return vbs_fail(-EBADMSG, "vault '%s': the name '%s/%s' leads to another point",
				v->path, vm, id);
	}
	if (r == 0)
		*ret = rp;
	return r;
}

int vbs_rp_latest(vbs_vault *v, const char *vm, vbs_rp **ret)
{
	MDB_txn *txn;
	uint64_t serial;
	vbs_rp *rp = NULL;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_rp_latest_serial(v, txn, vm, &serial);
	if (r == -ENOENT)
		r = vbs_fail(r, "no VM '%s' in vault '%s'", vm, v->path);
	else if (r < 0)
		r = vbs_fail(r, "vault '%s': damaged name records of VM '%s'", v->path, vm);
	else
		r = vbs_rp_load(v, txn, serial, &rp);
	vbs_read_end(v, txn);
	if (r == 0 && strcmp(rp->vm, vm) != 0) {
		vbs_rp_free(rp);
		return vbs_fail(-EBADMSG, "vault '%s': the newest point of '%s' is another VM's",
				v->path, vm);
	}
	if (r == 0)
		*ret = rp;
	return r;
}

int vbs_rp_names(vbs_vault *v, const char *vm, vbs_name_entry **ret, size_t *ret_n)
{
	MDB_txn *txn;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_names_of(v, txn, vm, ret, ret_n);
	vbs_read_end(v, txn);
	if (r < 0)
		return vbs_fail(r, "cannot list recovery points of '%s' in vault '%s'", vm,
				v->path);
	return 0;
}

/* Every VM record in txn, sorted by name (VMs with no point included). */
int vbs_vms_of(vbs_vault *v, MDB_txn *txn, vbs_name_entry **ret, size_t *ret_n)
{
	return scan_entries(v, txn, v->dbi_vms, NULL, 0, NULL, ret, ret_n);
}

/* 1 when some name record starts with vm's hash (the VM has a point), without opening any. */
static int has_points(vbs_vault *v, MDB_txn *txn, const char *vm)
{
	uint8_t vk[VBS_NAME_HASH_LEN];
	MDB_cursor *c;
	MDB_val k = {sizeof(vk), vk}, d;
	int rc, r = vm_key(v, vm, vk);

	if (r < 0)
		return r;
	rc = mdb_cursor_open(txn, v->dbi_rpnames, &c);
	if (rc)
		return vbs_mdb_err(rc);
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	if (rc == 0)
		r = k.mv_size >= sizeof(vk) && memcmp(k.mv_data, vk, sizeof(vk)) == 0;
	else
		r = rc == MDB_NOTFOUND ? 0 : vbs_mdb_err(rc);
	mdb_cursor_close(c);
	return r;
}

int vbs_vm_list(vbs_vault *v, vbs_name_entry **ret, size_t *ret_n)
{
	vbs_name_entry *e = NULL;
	size_t n = 0, m = 0;
	MDB_txn *txn;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_vms_of(v, txn, &e, &n);
	/* Only VMs that have a point. */
	for (size_t i = 0; r >= 0 && i < n; i++) {
		r = has_points(v, txn, e[i].name);
		if (r > 0)
			e[m++] = e[i];
	}
	vbs_read_end(v, txn);
	if (r < 0) {
		free(e);
		return vbs_fail(r, "cannot list VMs of vault '%s'", v->path);
	}
	*ret = e;
	*ret_n = m;
	return 0;
}

int vbs_vm_get(vbs_vault *v, const char *name, uint64_t *ret_serial)
{
	MDB_txn *txn;
	uint64_t num;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_vm_find(v, txn, name, &num);
	if (r == 0)
		r = has_points(v, txn, name);
	vbs_read_end(v, txn);
	if (r == 0 || r == -ENOENT)
		return vbs_fail(-ENOENT, "no VM '%s' in vault '%s'", name, v->path);
	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged VM record of '%s'", v->path, name);
	*ret_serial = num;
	return 0;
}

int vbs_vm_name(vbs_vault *v, uint64_t serial, char *buf)
{
	vbs_name_entry *e;
	size_t n;
	int r = vbs_vm_list(v, &e, &n);

	if (r < 0)
		return r;
	r = vbs_fail(-ENOENT, "no VM with number %llu", (unsigned long long)serial);
	for (size_t i = 0; i < n; i++)
		if (e[i].serial == serial) {
			memcpy(buf, e[i].name, VBS_NAME_MAX + 1);
			vbs_clear_err();
			r = 0;
			break;
		}
	free(e);
	return r;
}

/* Loads the points of one VM (names, then records) onto list. */
static int list_vm(vbs_vault *v, MDB_txn *txn, const char *vm, vbs_rp ***list, size_t *n,
		   size_t *cap)
{
	vbs_name_entry *e;
	size_t ne;
	int r = vbs_names_of(v, txn, vm, &e, &ne);

	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged name records of VM '%s'", v->path, vm);
	for (size_t i = 0; r == 0 && i < ne; i++) {
		vbs_rp *rp;

		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 16;
			vbs_rp **l = realloc(*list, nc * sizeof(*l));
			if (!l) {
				r = -ENOMEM;
				break;
			}
			*list = l;
			*cap = nc;
		}
		r = vbs_rp_load(v, txn, e[i].serial, &rp);
		if (r == 0 && (strcmp(rp->vm, vm) != 0 || strcmp(rp->id, e[i].name) != 0)) {
			vbs_rp_free(rp);
			r = vbs_fail(-EBADMSG, "vault '%s': the name '%s/%s' leads to another point",
				     v->path, vm, e[i].name);
		}
		if (r == 0)
			(*list)[(*n)++] = rp;
	}
	free(e);
	return r;
}

int vbs_rp_list(vbs_vault *v, const char *vm, vbs_rp ***ret, size_t *ret_n)
{
	vbs_rp **list = NULL;
	vbs_name_entry *vms = NULL;
	size_t n = 0, cap = 0, nvms = 0;
	MDB_txn *txn;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	if (vm) {
		r = list_vm(v, txn, vm, &list, &n, &cap);
	} else {
		r = vbs_vms_of(v, txn, &vms, &nvms);
		if (r < 0)
			vbs_fail(r, "vault '%s': damaged VM records", v->path);
		for (size_t i = 0; r == 0 && i < nvms; i++)
			r = list_vm(v, txn, vms[i].name, &list, &n, &cap);
	}
	vbs_read_end(v, txn);
	free(vms);
	if (r < 0) {
		vbs_rp_list_free(list, n);
		if (!vbs_errmsg()[0])
			vbs_fail(r, "cannot list recovery points of vault '%s'", v->path);
		return r;
	}
	*ret = list;
	*ret_n = n;
	return 0;
}

int vbs_rp_sum_sizes(vbs_vault *v, uint64_t *ret_logical, uint64_t *ret_data)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t logical = 0, data = 0;
	int rc, r = 0;

	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	rc = mdb_cursor_open(txn, v->dbi_rps, &c);
	if (rc) {
		vbs_read_end(v, txn);
		return vbs_mdb_err(rc);
	}
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		uint8_t *rec = NULL;
		size_t len = 0;
		vbs_rp *rp = NULL;

		r = vbs_unseal(v, VBS_DB_RPS, k.mv_data, k.mv_size, d.mv_data, d.mv_size, &rec,
			       &len);
		if (r == 0)
			r = vbs_rp_decode(rec, len, &rp);
		vbs_unsealed_free(rec, len);
		if (r < 0)
			break;
		for (size_t i = 0; i < rp->n_disks; i++) {
			logical += rp->disks[i].size;
			data += vbs_disk_data_bytes(rp, &rp->disks[i]);
		}
		vbs_rp_free(rp);
	}
	mdb_cursor_close(c);
	vbs_read_end(v, txn);
	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged recovery point record", v->path);
	*ret_logical = logical;
	*ret_data = data;
	return 0;
}

uint64_t vbs_disk_data_bytes(const vbs_rp *rp, const vbs_disk *d)
{
	uint64_t b = d->data_chunks * rp->chunk_size;
	return b < d->size ? b : d->size;
}

json_object *vbs_rp_source_json(const vbs_rp *rp)
{
	json_object *j;

	if (!rp->source.kind[0] || !(j = json_object_new_object()))
		return NULL;
	for (size_t i = 0; i < N_SOURCE_FIELDS; i++) {
		const char *v = (const char *)&rp->source + source_fields[i].off;

		json_object_object_add(j, source_fields[i].key,
				       v[0] || i < 3 ? json_object_new_string(v) : NULL);
	}
	return j;
}

int vbs_rp_manifest(const vbs_rp *rp, char **ret, size_t *ret_len)
{
	json_object *o = json_object_new_object(), *disks = json_object_new_array(),
		    *escrow = json_object_new_array();
	char when[21], file[VBS_NAME_MAX + 8];
	const char *s;
	size_t len;
	int r = 0;

	if (!o || !disks || !escrow) {
		json_object_put(o);
		json_object_put(disks);
		json_object_put(escrow);
		return -ENOMEM;
	}
	json_object_object_add(o, "format", json_object_new_string("vmbak-manifest"));
	json_object_object_add(o, "version", json_object_new_int(1));
	json_object_object_add(o, "vm", json_object_new_string(rp->vm));
	json_object_object_add(o, "id", json_object_new_string(rp->id));
	json_object_object_add(o, "serial", json_object_new_int64((int64_t)rp->serial));
	vbu_format_time(rp->created_ns / 1000000000, when);
	json_object_object_add(o, "created", json_object_new_string(when));
	if (rp->retain_until) {
		vbu_format_time(rp->retain_until, when);
		when[10] = '\0';
		json_object_object_add(o, "retain_until", json_object_new_string(when));
	} else {
		json_object_object_add(o, "retain_until", NULL);
	}
	json_object_object_add(o, "parent",
			       rp->parent[0] ? json_object_new_string(rp->parent) : NULL);
	json_object_object_add(o, "chunk_size", json_object_new_int64(rp->chunk_size));
	if (rp->damaged) {
		vbu_format_time(rp->damaged, when);
		json_object_object_add(o, "damaged", json_object_new_string(when));
	}
	for (size_t i = 0; i < rp->n_disks; i++) {
		const vbs_disk *d = &rp->disks[i];
		json_object *j = json_object_new_object();

		json_object_object_add(j, "name", json_object_new_string(d->name));
		snprintf(file, sizeof(file), "%s.img", d->name);
		json_object_object_add(j, "file", json_object_new_string(file));
		json_object_object_add(j, "size", json_object_new_int64((int64_t)d->size));
		json_object_object_add(j, "data_bytes",
				       json_object_new_int64((int64_t)vbs_disk_data_bytes(rp, d)));
		json_object_object_add(j, "incremental", json_object_new_boolean(d->incremental));
		{
			/* How it was read, and from which earlier point the rest was taken. */
			json_object *rd = json_object_new_object();

			json_object_object_add(rd, "mode", json_object_new_string(
							       d->incremental ? "incremental" : "full"));
			json_object_object_add(rd, "base",
					       d->incremental && rp->parent[0]
						   ? json_object_new_string(rp->parent)
						   : NULL);
			json_object_object_add(rd, "note", d->read_note[0]
								? json_object_new_string(d->read_note)
								: NULL);
			json_object_object_add(j, "read", rd);
		}
		if (d->escrow) {
			snprintf(file, sizeof(file), "%s.key", d->name);
			json_object_object_add(j, "key", json_object_new_string(file));
			json_object_array_add(escrow, json_object_new_string(d->name));
		} else {
			json_object_object_add(j, "key", NULL);
		}
		json_object_array_add(disks, j);
	}
	json_object_object_add(o, "disks", disks);
	json_object_object_add(o, "escrow", escrow);
	for (int k = 0; k < VBS_RP_FILES; k++) {
		json_object *jf = NULL;

		if (rp->files[k].data) {
			jf = json_object_new_object();
			json_object_object_add(jf, "file", json_object_new_string(file_names[k]));
			json_object_object_add(jf, "size",
					       json_object_new_int64((int64_t)rp->files[k].len));
		}
		json_object_object_add(o, file_keys[k], jf);
	}
	json_object_object_add(o, "source", vbs_rp_source_json(rp));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
	len = s ? strlen(s) : 0;
	*ret = s ? malloc(len + 2) : NULL;
	if (!*ret) {
		r = -ENOMEM;
	} else {
		memcpy(*ret, s, len);
		(*ret)[len] = '\n';
		(*ret)[len + 1] = '\0';
		*ret_len = len + 1;
	}
	json_object_put(o);
	return r;
}
