/* rp.c: recovery point records (JSON in LMDB), VM records, listings, manifests.
 *
 * A point's record, the value of rps[serial], is a JSON object:
 *   {"vm": str, "id": str, "serial": int, "vm_serial": int, "created_ns": int,
 *    "retain_until": int (seconds, 0 none), "parent": str ("" none), "chunk_size": int,
 *    "disks": [{"name": str, "size": int, "lineage": int, "data_chunks": int,
 *               "read_bytes": int, "new_chunks": int, "new_bytes": int,
 *               "incremental": bool, "escrow": str (optional)}]}
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rp.h"
#include "util.h"

#define RECORD_MAX (16u << 20)

void vbs_rp_free(vbs_rp *rp)
{
	if (!rp)
		return;
	for (size_t i = 0; i < rp->n_disks; i++)
		free(rp->disks[i].escrow);
	free(rp->disks);
	free(rp);
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
		if (d->escrow)
			json_object_object_add(j, "escrow",
					       json_object_new_string_len(d->escrow,
									  (int)d->escrow_len));
		json_object_array_add(disks, j);
	}
	json_object_object_add(o, "disks", disks);
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	*ret = s ? strdup(s) : NULL;
	if (!*ret)
		r = -ENOMEM;
	else
		*ret_len = strlen(*ret);
	json_object_put(o);
	return r;
}

static int get_u64(json_object *o, const char *key, uint64_t *ret)
{
	json_object *f;
	int64_t x;

	if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_int))
		return -EBADMSG;
	x = json_object_get_int64(f);
	if (x < 0)
		return -EBADMSG;
	*ret = (uint64_t)x;
	return 0;
}

static int get_str(json_object *o, const char *key, char *buf, size_t cap)
{
	json_object *f;
	const char *s;
	size_t len;

	if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_string))
		return -EBADMSG;
	s = json_object_get_string(f);
	len = (size_t)json_object_get_string_len(f);
	if (len >= cap || memchr(s, '\0', len))
		return -EBADMSG;
	memcpy(buf, s, len + 1);
	return 0;
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
	if (get_str(o, "vm", rp->vm, sizeof(rp->vm)) || !vbs_name_valid(rp->vm) ||
	    get_str(o, "id", rp->id, sizeof(rp->id)) || !rp->id[0] ||
	    get_str(o, "parent", rp->parent, sizeof(rp->parent)) ||
	    get_u64(o, "serial", &rp->serial) || get_u64(o, "vm_serial", &rp->vm_serial) ||
	    get_u64(o, "created_ns", &x))
		goto out;
	rp->created_ns = (int64_t)x;
	if (get_u64(o, "retain_until", &x))
		goto out;
	rp->retain_until = (int64_t)x;
	if (get_u64(o, "chunk_size", &x) || x < VBS_CHUNK_SIZE_MIN || x > VBS_CHUNK_SIZE_MAX)
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
		    get_str(j, "name", d->name, sizeof(d->name)) || !vbs_name_valid(d->name) ||
		    get_u64(j, "size", &d->size) || get_u64(j, "lineage", &d->lineage) ||
		    get_u64(j, "data_chunks", &d->data_chunks) ||
		    get_u64(j, "read_bytes", &d->read_bytes) ||
		    get_u64(j, "new_chunks", &d->new_chunks) ||
		    get_u64(j, "new_bytes", &d->new_bytes))
			goto out;
		if (d->data_chunks > d->size / rp->chunk_size + 1)
			goto out;
		if (json_object_object_get_ex(j, "incremental", &f))
			d->incremental = json_object_get_boolean(f);
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
	*ret = rp;
	rp = NULL;
	r = 0;
out:
	vbs_rp_free(rp);
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int vbs_rp_load(vbs_vault *v, MDB_txn *txn, uint64_t serial, vbs_rp **ret)
{
	uint8_t key[8];
	MDB_val k = {8, key}, d;
	int rc, r;

	vbs_put64(key, serial);
	rc = mdb_get(txn, v->dbi_rps, &k, &d);
	if (rc == MDB_NOTFOUND)
		return vbs_fail(-ENOENT, "no recovery point with serial %llu",
				(unsigned long long)serial);
	if (rc)
		return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
				mdb_strerror(rc));
	r = vbs_rp_decode(d.mv_data, d.mv_size, ret);
	if (r == -EBADMSG)
		return vbs_fail(r, "vault '%s': damaged record of recovery point %llu", v->path,
				(unsigned long long)serial);
	if (r == 0 && (*ret)->serial != serial) {
		vbs_rp_free(*ret);
		return vbs_fail(-EBADMSG, "vault '%s': record of recovery point %llu names %llu",
				v->path, (unsigned long long)serial,
				(unsigned long long)(*ret)->serial);
	}
	return r;
}

static size_t name_key(char *buf, size_t cap, const char *vm, const char *id)
{
	size_t a = strlen(vm), b = id ? strlen(id) : 0;

	if (a + 1 + b > cap)
		return 0;
	memcpy(buf, vm, a);
	buf[a] = '\0';
	if (b)
		memcpy(buf + a + 1, id, b);
	return a + 1 + b;
}

int vbs_rp_store(vbs_vault *v, MDB_txn *txn, const vbs_rp *rp)
{
	char nk[VBS_NAME_MAX + 1 + VBS_RP_ID_MAX], *rec = NULL;
	uint8_t sk[8];
	size_t len, nklen = name_key(nk, sizeof(nk), rp->vm, rp->id);
	MDB_val k, d;
	int r;

	if (!nklen)
		return -EINVAL;
	r = vbs_rp_encode(rp, &rec, &len);
	if (r < 0)
		return r;
	vbs_put64(sk, rp->serial);
	k = (MDB_val){8, sk};
	d = (MDB_val){len, rec};
	r = vbs_mdb_err(mdb_put(txn, v->dbi_rps, &k, &d, MDB_NOOVERWRITE));
	free(rec);
	if (r < 0)
		return r;
	k = (MDB_val){nklen, nk};
	d = (MDB_val){8, sk};
	return vbs_mdb_err(mdb_put(txn, v->dbi_rpnames, &k, &d, MDB_NOOVERWRITE));
}

int vbs_rp_id_taken(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id)
{
	char nk[VBS_NAME_MAX + 1 + VBS_RP_ID_MAX];
	MDB_val k = {name_key(nk, sizeof(nk), vm, id), nk}, d;
	int rc = mdb_get(txn, v->dbi_rpnames, &k, &d);

	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? vbs_mdb_err(rc) : 1;
}

int vbs_vm_ensure(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret)
{
	MDB_val k = {strlen(vm), (void *)vm}, d;
	uint8_t val[16];
	int rc = mdb_get(txn, v->dbi_vms, &k, &d), r;

	if (rc == 0) {
		if (d.mv_size != 16)
			return -EBADMSG;
		*ret = vbs_get64(d.mv_data);
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return vbs_mdb_err(rc);
	r = vbs_seq_next(v, txn, ret);
	if (r < 0)
		return r;
	vbs_put64(val, *ret);
	vbs_put64(val + 8, (uint64_t)vbu_now_ns());
	d = (MDB_val){16, val};
	return vbs_mdb_err(mdb_put(txn, v->dbi_vms, &k, &d, 0));
}

/* Serial of the newest point of vm in txn; -ENOENT if none. */
int vbs_rp_latest_serial(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret)
{
	char nk[VBS_NAME_MAX + 2];
	size_t a = strlen(vm);
	MDB_cursor *c;
	MDB_val k, d;
	int rc, r = -ENOENT;

	if (a > VBS_NAME_MAX)
		return -ENOENT;
	memcpy(nk, vm, a);
	nk[a] = '\x01'; /* just past every "vm\0id" key */
	k = (MDB_val){a + 1, nk};
	rc = mdb_cursor_open(txn, v->dbi_rpnames, &c);
	if (rc)
		return vbs_mdb_err(rc);
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	if (rc == 0)
		rc = mdb_cursor_get(c, &k, &d, MDB_PREV);
	else if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
	if (rc == 0 && k.mv_size > a + 1 && memcmp(k.mv_data, vm, a) == 0 &&
	    ((char *)k.mv_data)[a] == '\0') {
		r = d.mv_size == 8 ? 0 : -EBADMSG;
		if (r == 0)
			*ret = vbs_get64(d.mv_data);
	} else if (rc && rc != MDB_NOTFOUND) {
		r = vbs_mdb_err(rc);
	}
	mdb_cursor_close(c);
	return r;
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
	char nk[VBS_NAME_MAX + 1 + VBS_RP_ID_MAX];
	size_t nklen = name_key(nk, sizeof(nk), vm, id);
	MDB_txn *txn;
	uint64_t serial;
	int r;

	vbs_clear_err();
	if (!nklen || !*id)
		return vbs_fail(-ENOENT, "no recovery point '%s/%s'", vm, id);
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_get_u64(txn, v->dbi_rpnames, nk, nklen, &serial);
	if (r == -ENOENT)
		r = vbs_fail(r, "no recovery point '%s/%s' in vault '%s'", vm, id, v->path);
	else if (r < 0)
		r = vbs_fail(r, "vault '%s': damaged name record of '%s/%s'", v->path, vm, id);
	else
		r = vbs_rp_load(v, txn, serial, ret);
	vbs_read_end(v, txn);
	return r;
}

int vbs_rp_latest(vbs_vault *v, const char *vm, vbs_rp **ret)
{
	MDB_txn *txn;
	uint64_t serial;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = vbs_rp_latest_serial(v, txn, vm, &serial);
	if (r == -ENOENT)
		r = vbs_fail(r, "no VM '%s' in vault '%s'", vm, v->path);
	else if (r == 0)
		r = vbs_rp_load(v, txn, serial, ret);
	vbs_read_end(v, txn);
	return r;
}

/* Calls fn(arg, key suffix (id), serial) for every "vm\0id" key of vm, in order. */
static int walk_names(vbs_vault *v, MDB_txn *txn, const char *vm,
		      int (*fn)(void *arg, const char *id, size_t idlen, uint64_t serial),
		      void *arg)
{
	char nk[VBS_NAME_MAX + 1];
	size_t a = strlen(vm);
	MDB_cursor *c;
	MDB_val k, d;
	int rc, r = 0;

	if (a > VBS_NAME_MAX)
		return 0;
	memcpy(nk, vm, a);
	nk[a] = '\0';
	k = (MDB_val){a + 1, nk};
	rc = mdb_cursor_open(txn, v->dbi_rpnames, &c);
	if (rc)
		return vbs_mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size <= a + 1 || memcmp(k.mv_data, nk, a + 1) != 0)
			break;
		if (d.mv_size != 8 || k.mv_size - a - 1 >= VBS_RP_ID_MAX) {
			r = -EBADMSG;
			break;
		}
		r = fn(arg, (const char *)k.mv_data + a + 1, k.mv_size - a - 1,
		       vbs_get64(d.mv_data));
		if (r)
			break;
	}
	if (rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	mdb_cursor_close(c);
	return r;
}

struct names {
	vbs_name_entry *e;
	size_t n, cap;
};

static int names_add(struct names *ns, const char *name, size_t len, uint64_t serial)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		vbs_name_entry *e = realloc(ns->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		ns->e = e;
		ns->cap = cap;
	}
	if (len >= sizeof(ns->e[0].name))
		return -EBADMSG;
	memcpy(ns->e[ns->n].name, name, len);
	ns->e[ns->n].name[len] = '\0';
	ns->e[ns->n].serial = serial;
	ns->n++;
	return 0;
}

static int names_cb(void *arg, const char *id, size_t idlen, uint64_t serial)
{
	return names_add(arg, id, idlen, serial);
}

int vbs_rp_names(vbs_vault *v, const char *vm, vbs_name_entry **ret, size_t *ret_n)
{
	struct names ns = {0};
	MDB_txn *txn;
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	r = walk_names(v, txn, vm, names_cb, &ns);
	vbs_read_end(v, txn);
	if (r < 0) {
		free(ns.e);
		return vbs_fail(r, "cannot list recovery points of '%s' in vault '%s'", vm,
				v->path);
	}
	*ret = ns.e;
	*ret_n = ns.n;
	return 0;
}

static int any_cb(void *arg, const char *id, size_t idlen, uint64_t serial)
{
	return 1;
}

int vbs_vm_list(vbs_vault *v, vbs_name_entry **ret, size_t *ret_n)
{
	struct names ns = {0};
	MDB_txn *txn;
	MDB_cursor *c = NULL;
	MDB_val k, d;
	int rc, r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	rc = mdb_cursor_open(txn, v->dbi_vms, &c);
	if (rc) {
		r = vbs_mdb_err(rc);
		goto out;
	}
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		char name[VBS_NAME_MAX + 1];

		if (k.mv_size == 0 || k.mv_size > VBS_NAME_MAX || d.mv_size != 16) {
			r = -EBADMSG;
			goto out;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		r = walk_names(v, txn, name, any_cb, NULL);
		if (r < 0)
			goto out;
		if (r == 1 && (r = names_add(&ns, name, k.mv_size, vbs_get64(d.mv_data))) < 0)
			goto out;
	}
	r = rc && rc != MDB_NOTFOUND ? vbs_mdb_err(rc) : 0;
out:
	mdb_cursor_close(c);
	vbs_read_end(v, txn);
	if (r < 0) {
		free(ns.e);
		return vbs_fail(r, "cannot list VMs of vault '%s'", v->path);
	}
	*ret = ns.e;
	*ret_n = ns.n;
	return 0;
}

int vbs_vm_get(vbs_vault *v, const char *name, uint64_t *ret_serial)
{
	vbs_name_entry *e;
	size_t n;
	int r = vbs_vm_list(v, &e, &n);

	if (r < 0)
		return r;
	r = vbs_fail(-ENOENT, "no VM '%s' in vault '%s'", name, v->path);
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].name, name) == 0) {
			*ret_serial = e[i].serial;
			vbs_clear_err();
			r = 0;
			break;
		}
	free(e);
	return r;
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

struct list_ctx {
	vbs_vault *v;
	MDB_txn *txn;
	vbs_rp **list;
	size_t n, cap;
};

static int list_cb(void *arg, const char *id, size_t idlen, uint64_t serial)
{
	struct list_ctx *c = arg;
	vbs_rp *rp;
	int r;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		vbs_rp **l = realloc(c->list, cap * sizeof(*l));
		if (!l)
			return -ENOMEM;
		c->list = l;
		c->cap = cap;
	}
	r = vbs_rp_load(c->v, c->txn, serial, &rp);
	if (r < 0)
		return r;
	c->list[c->n++] = rp;
	return 0;
}

int vbs_rp_list(vbs_vault *v, const char *vm, vbs_rp ***ret, size_t *ret_n)
{
	struct list_ctx c = {v};
	vbs_name_entry *vms = NULL;
	size_t nvms = 0;
	int r;

	vbs_clear_err();
	if (vm) {
		r = 0;
	} else {
		r = vbs_vm_list(v, &vms, &nvms);
		if (r < 0)
			return r;
	}
	r = vbs_read_begin(v, &c.txn);
	if (r < 0)
		goto out;
	if (vm)
		r = walk_names(v, c.txn, vm, list_cb, &c);
	for (size_t i = 0; i < nvms && r >= 0; i++)
		r = walk_names(v, c.txn, vms[i].name, list_cb, &c);
	vbs_read_end(v, c.txn);
out:
	free(vms);
	if (r < 0) {
		vbs_rp_list_free(c.list, c.n);
		if (!vbs_errmsg()[0])
			vbs_fail(r, "cannot list recovery points of vault '%s'", v->path);
		return r;
	}
	*ret = c.list;
	*ret_n = c.n;
	return 0;
}

int vbs_rp_sum_sizes(vbs_vault *v, uint64_t *ret_logical, uint64_t *ret_data)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t logical = 0, data = 0;
	int rc, r;

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
		vbs_rp *rp;

		r = vbs_rp_decode(d.mv_data, d.mv_size, &rp);
		if (r < 0)
			break;
		for (size_t i = 0; i < rp->n_disks; i++) {
			uint64_t db = rp->disks[i].data_chunks * rp->chunk_size;
			logical += rp->disks[i].size;
			data += db < rp->disks[i].size ? db : rp->disks[i].size;
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
