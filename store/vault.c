/* vault.c: creating and opening a vault: config file, keys, LMDB environment. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "chunkstore.h"
#include "prefetch.h"
#include "dbguard.h"
#include "file.h"
#include "internal.h"
#include "json.h"
#include "seal.h"
#include "util.h"

#define CONFIG_MAX (64 * 1024)
#define MAP_MIN ((size_t)64 << 30) /* virtual only: the file grows as data comes */

static int config_path(const char *dir, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", dir, VBS_CONFIG_FILE);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The fields of the config that nothing may change, as one canonical text: the wrapped keys
 * are bound to it (format 2), and meta "config" holds it sealed, so a config edited to another
 * encryption, chunk size or dedup scope is refused (KDF parameters need no binding: other
 * ones derive another key, which fails the tag). Format 1 bound the uuid alone. */
static int config_bound(const vbs_vault *v, char *buf, size_t len, size_t *ret_len)
{
	int n;

	if (v->format == 1)
		n = snprintf(buf, len, "%s v1 %s", VBS_FORMAT_NAME, v->uuid);
	else
		/* The chunk store is bound by kind only (a vault of LMDB chunks binds the text it
		 * always did): pool, namespace and how to reach the cluster may move. A replica
		 * binds its source's kind, as the keys and sealed config it shares do; its own
		 * kind is meta "site_chunks" (site_chunks_check). */
		n = snprintf(buf, len,
			     "%s v2 uuid=%s chunk_size=%u chunk_id=hmac-sha256 compression=zstd "
			     "encryption=%s dedup_scope=%s%s",
			     VBS_FORMAT_NAME, v->uuid, v->chunk_size,
			     v->encrypted ? "aes-256-gcm" : "none", v->dedup_vm ? "vm" : "vault",
			     v->bound_rados ? " chunks=rados" : "");
	if (n < 0 || (size_t)n >= len)
		return -EINVAL;
	*ret_len = (size_t)n;
	return 0;
}

/* The associated data of slot s's wrapped keys: the bound text, then (slots in an array) the
 * slot's name and creation time, so a slot can be neither renamed nor redated, nor moved to
 * another vault or to the single-object form. The single-object form binds the text alone. */
static int slot_aad(const vbs_vault *v, const vbs_key_slot *s, char *buf, size_t len,
		    size_t *ret_len)
{
	size_t n;
	int m, r = config_bound(v, buf, len, &n);

	if (r < 0 || v->slots_legacy) {
		*ret_len = n;
		return r;
	}
	m = snprintf(buf + n, len - n, " key_slot name=%s created=%s", s->name, s->created);
	if (m < 0 || (size_t)m >= len - n)
		return -EINVAL;
	*ret_len = n + (size_t)m;
	return 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ", as vbu_format_time() writes it. */
static int time_valid(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";

	if (!s || strlen(s) != sizeof(pat) - 1)
		return 0;
	for (size_t i = 0; pat[i]; i++)
		if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
			return 0;
	return 1;
}

static int derive(const uint8_t root[VBK_KEY_LEN], const char *label, uint8_t out[VBK_KEY_LEN])
{
	return vbk_hmac_sha256(root, label, strlen(label), out);
}

/* The chunk-id and chunk-key MACs, and the format 2 metadata keys (seal.h), all from the
 * vault's keys: the data key of an encrypted vault, else the id key. */
static int setup_macs(vbs_vault *v)
{
	const uint8_t *root = v->encrypted ? v->keys.data_key : v->keys.id_key;
	uint8_t k[VBK_KEY_LEN];
	int r = vbk_hmac_new(v->keys.id_key, &v->id_mac);

	if (r == 0 && v->encrypted)
		r = vbk_hmac_new(v->keys.data_key, &v->key_mac);
	if (r == 0)
		r = derive(root, "vmbak meta key v2", v->meta_key);
	if (r == 0 && (r = derive(root, "vmbak name key v2", k)) == 0)
		r = vbk_hmac_new(k, &v->name_mac);
	if (r == 0 && (r = derive(root, "vmbak index key v2", k)) == 0)
		r = vbk_hmac_new(k, &v->idx_mac);
	vbk_wipe(k, sizeof(k));
	return r;
}

/* One key slot as the config keeps it, or NULL when out of memory. */
static json_object *slot_json(const vbs_key_slot *s)
{
	json_object *k = json_object_new_object();
	uint8_t blob[sizeof(s->wrapped.ct) + VBK_TAG_LEN];
	char *b;
	int bad = !k;

	if (bad)
		return NULL;
	json_object_object_add(k, "name", json_object_new_string(s->name));
	json_object_object_add(k, "created", json_object_new_string(s->created));
	json_object_object_add(k, "kdf", json_object_new_string("scrypt"));
	json_object_object_add(k, "n", json_object_new_int64((int64_t)s->wrapped.kdf.n));
	json_object_object_add(k, "r", json_object_new_int64(s->wrapped.kdf.r));
	json_object_object_add(k, "p", json_object_new_int64(s->wrapped.kdf.p));
	b = vbu_base64_encode(s->wrapped.kdf.salt, sizeof(s->wrapped.kdf.salt));
	bad |= !b;
	json_object_object_add(k, "salt", json_object_new_string(b ? b : ""));
	free(b);
	b = vbu_base64_encode(s->wrapped.nonce, sizeof(s->wrapped.nonce));
	bad |= !b;
	json_object_object_add(k, "nonce", json_object_new_string(b ? b : ""));
	free(b);
	memcpy(blob, s->wrapped.ct, sizeof(s->wrapped.ct));
	memcpy(blob + sizeof(s->wrapped.ct), s->wrapped.tag, VBK_TAG_LEN);
	b = vbu_base64_encode(blob, sizeof(blob));
	bad |= !b;
	json_object_object_add(k, "wrapped", json_object_new_string(b ? b : ""));
	free(b);
	if (bad) {
		json_object_put(k);
		return NULL;
	}
	return k;
}

/* "keys" of an encrypted vault: always the array of slots (the single-object form is only
 * read), or NULL when out of memory. */
static json_object *slots_json(const vbs_vault *v)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; a && i < v->nslots; i++) {
		json_object *k = slot_json(&v->slots[i]);

		if (!k || json_object_array_add(a, k) < 0) {
			json_object_put(k);
			json_object_put(a);
			return NULL;
		}
	}
	return a;
}

/* The config document of v, or NULL when out of memory. */
static json_object *config_json(const vbs_vault *v)
{
	json_object *o = json_object_new_object();
	char when[21], hex[2 * VBK_KEY_LEN + 1];
	int bad = 0;

	if (v->created[0])
		memcpy(when, v->created, sizeof(when));
	else
		vbu_format_time(vbu_now_ns() / 1000000000, when);
	json_object_object_add(o, "format", json_object_new_string(VBS_FORMAT_NAME));
	json_object_object_add(o, "version", json_object_new_int(v->format));
	json_object_object_add(o, "uuid", json_object_new_string(v->uuid));
	json_object_object_add(o, "created", json_object_new_string(when));
	json_object_object_add(o, "chunk_size", json_object_new_int64(v->chunk_size));
	json_object_object_add(o, "chunk_id", json_object_new_string("hmac-sha256"));
	json_object_object_add(o, "compression", json_object_new_string("zstd"));
	json_object_object_add(o, "encryption",
			       json_object_new_string(v->encrypted ? "aes-256-gcm" : "none"));
	if (v->format >= 2)
		json_object_object_add(o, "dedup_scope",
				       json_object_new_string(v->dedup_vm ? "vm" : "vault"));
	if (v->replica) {
		json_object *r = json_object_new_object();

		bad |= !r;
		json_object_object_add(r, "of", json_object_new_string(v->uuid));
		json_object_object_add(r, "site", json_object_new_string(v->site));
		json_object_object_add(r, "created", json_object_new_string(v->replica_created));
		json_object_object_add(r, "source_chunks",
				       json_object_new_string(v->bound_rados ? "rados" : "lmdb"));
		json_object_object_add(o, "replica", r);
	}
	if (v->chunks.rados) {
		json_object *c = json_object_new_object();

		bad |= !c;
		json_object_object_add(c, "store", json_object_new_string("rados"));
		json_object_object_add(c, "pool", json_object_new_string(v->chunks.pool));
		json_object_object_add(c, "namespace", json_object_new_string(v->chunks.ns));
		if (v->chunks.conf)
			json_object_object_add(c, "ceph_conf",
					       json_object_new_string(v->chunks.conf));
		if (v->chunks.id)
			json_object_object_add(c, "ceph_id", json_object_new_string(v->chunks.id));
		json_object_object_add(o, "chunks", c);
	}
	if (v->encrypted) {
		json_object *k = slots_json(v);

		bad |= !k;
		json_object_object_add(o, "keys", k);
	} else {
		/* Without encryption the id key protects nothing secret; it is kept in clear so an
		 * unencrypted vault opens without a passphrase and chunks are still checked. */
		vbu_hex_encode(v->keys.id_key, VBK_KEY_LEN, hex);
		json_object_object_add(o, "id_key", json_object_new_string(hex));
	}
	if (bad) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* A value from the config as a message may show it: one short line of printable ASCII (a
 * damaged config can hold anything, newlines included). */
static const char *shown(const char *s)
{
	if (!s)
		return "(missing)";
	if (strlen(s) > 64)
		return "(too long to show)";
	for (const char *p = s; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return "(unprintable)";
	return s;
}

/* A pool, namespace or client id as librados takes it: 1 to 255 printable ASCII characters. */
static int ceph_name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 255)
		return 0;
	for (; *s; s++)
		if (*s <= 0x20 || *s > 0x7e)
			return 0;
	return 1;
}

static int dup_field(const char *s, char **ret)
{
	if (!s) {
		*ret = NULL;
		return 0;
	}
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

/* "chunks": where the chunk frames live. Absent (every vault made before it): data.mdb. */
static int parse_chunks(vbs_vault *v, const char *file, json_object *c)
{
	const char *store = vbu_json_str(c, "store"), *pool = vbu_json_str(c, "pool");
	const char *ns = vbu_json_str(c, "namespace"), *conf = vbu_json_str(c, "ceph_conf");
	const char *id = vbu_json_str(c, "ceph_id");
	json_object *x;

	if (!json_object_is_type(c, json_type_object) || !store)
		return vbs_fail(-EPROTO, "config '%s': missing or bad field 'chunks'", file);
	if (strcmp(store, "lmdb") == 0)
		return 0;
	if (strcmp(store, "rados") != 0)
		return vbs_fail(-EPROTONOSUPPORT, "config '%s': unknown chunk store '%s'", file,
				shown(store));
	if (!ceph_name_ok(pool) || !ceph_name_ok(ns) ||
	    (json_object_object_get_ex(c, "ceph_id", &x) && !ceph_name_ok(id)) ||
	    (json_object_object_get_ex(c, "ceph_conf", &x) && (!conf || conf[0] != '/')))
		return vbs_fail(-EPROTO, "config '%s': missing or bad field 'chunks'", file);
	v->chunks.rados = 1;
	if (dup_field(pool, &v->chunks.pool) < 0 || dup_field(ns, &v->chunks.ns) < 0 ||
	    dup_field(conf, &v->chunks.conf) < 0 || dup_field(id, &v->chunks.id) < 0)
		return vbs_fail(-ENOMEM, "out of memory");
	return 0;
}

static void chunks_cfg_free(struct vbs_chunks_cfg *c)
{
	free(c->pool);
	free(c->ns);
	free(c->conf);
	free(c->id);
	memset(c, 0, sizeof(*c));
}

/* One slot of "keys": its KDF and wrapped keys, and (array form) its name and time. */
static int parse_slot(const char *file, json_object *k, int legacy, vbs_key_slot *ret)
{
	int64_t nn, rr, pp;
	uint8_t blob[sizeof(ret->wrapped.ct) + VBK_TAG_LEN];
	const char *name = vbu_json_str(k, "name"), *created = vbu_json_str(k, "created");

	if (!json_object_is_type(k, json_type_object) || !vbu_json_str(k, "kdf") ||
	    strcmp(vbu_json_str(k, "kdf"), "scrypt") != 0 ||
	    vbu_json_int(k, "n", 0, INT64_MAX, &nn) < 0 || vbu_json_int(k, "r", 0, 1024, &rr) < 0 ||
	    vbu_json_int(k, "p", 0, 1024, &pp) < 0 ||
	    vbu_json_b64(k, "salt", ret->wrapped.kdf.salt, sizeof(ret->wrapped.kdf.salt)) ||
	    vbu_json_b64(k, "nonce", ret->wrapped.nonce, sizeof(ret->wrapped.nonce)) ||
	    vbu_json_b64(k, "wrapped", blob, sizeof(blob)))
		return vbs_fail(-EPROTO, "config '%s': missing or bad field 'keys'", file);
	if (!legacy && (!vbu_name_valid(name) || !time_valid(created)))
		return vbs_fail(-EPROTO, "config '%s': a key slot with a missing or bad %s", file,
				vbu_name_valid(name) ? "'created'" : "'name'");
	ret->wrapped.kdf.n = (uint64_t)nn;
	ret->wrapped.kdf.r = (uint32_t)rr;
	ret->wrapped.kdf.p = (uint32_t)pp;
	if (vbk_scrypt_check(&ret->wrapped.kdf) < 0)
		return vbs_fail(-EPROTO, "config '%s': scrypt parameters out of range", file);
	memcpy(ret->wrapped.ct, blob, sizeof(ret->wrapped.ct));
	memcpy(ret->wrapped.tag, blob + sizeof(ret->wrapped.ct), VBK_TAG_LEN);
	snprintf(ret->name, sizeof(ret->name), "%s", legacy ? VBS_KEY_SLOT_DEFAULT : name);
	snprintf(ret->created, sizeof(ret->created), "%s", legacy ? "" : created);
	return 0;
}

/* "keys": one object (format 1, and format 2 before key slots), or (format 2) an array of 1
 * to VBS_KEY_SLOTS_MAX slots with distinct names. A wrong passphrase costs one scrypt per
 * slot: their work together is bounded like one slot's at most twice. */
static int parse_keys(vbs_vault *v, const char *file, json_object *k)
{
	int legacy = json_object_is_type(k, json_type_object);
	size_t n = legacy ? 1 : 0;
	uint64_t work = 0;
	int r;

	if (!legacy && v->format >= 2 && json_object_is_type(k, json_type_array))
		n = json_object_array_length(k);
	if (n == 0)
		return vbs_fail(-EPROTO, "config '%s': missing or bad field 'keys'", file);
	if (n > VBS_KEY_SLOTS_MAX)
		return vbs_fail(-EPROTO, "config '%s': %zu key slots, at most %d", file, n,
				VBS_KEY_SLOTS_MAX);
	v->slots = calloc(n, sizeof(*v->slots));
	if (!v->slots)
		return vbs_fail(-ENOMEM, "out of memory");
	v->slots_legacy = legacy;
	for (size_t i = 0; i < n; i++) {
		vbs_key_slot *sl = &v->slots[i];

		r = parse_slot(file, legacy ? k : json_object_array_get_idx(k, i), legacy, sl);
		if (r < 0)
			return r;
		for (size_t j = 0; j < i; j++)
			if (strcmp(v->slots[j].name, sl->name) == 0)
				return vbs_fail(-EPROTO, "config '%s': two key slots named '%s'",
						file, sl->name);
		v->nslots = i + 1;
		work += sl->wrapped.kdf.n * sl->wrapped.kdf.r * sl->wrapped.kdf.p;
	}
	if (work > 2 * VBK_SCRYPT_WORK_MAX)
		return vbs_fail(-EPROTO, "config '%s': scrypt parameters of the key slots out of "
				"range (too much work together)", file);
	if (legacy)
		snprintf(v->slots[0].created, sizeof(v->slots[0].created), "%s", v->created);
	return 0;
}

static int parse_config(vbs_vault *v, const char *file, const char *text, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *o = NULL, *k;
	const char *s;
	int64_t n;
	int r = -EPROTO;

	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		r = vbs_fail(-EPROTO, "config '%s' is not valid JSON: not a vault?", file);
		goto out;
	}
	s = vbu_json_str(o, "format");
	if (!s || strcmp(s, VBS_FORMAT_NAME) != 0) {
		r = vbs_fail(-EPROTO, "config '%s' is not a vmbak vault config", file);
		goto out;
	}
	if (vbu_json_int(o, "version", INT64_MIN, INT64_MAX, &n) < 0) {
		r = vbs_fail(-EPROTO, "config '%s': missing field 'version'", file);
		goto out;
	}
	if (n != VBS_FORMAT_VERSION && n != 1) {
		r = vbs_fail(-EPROTONOSUPPORT,
			     "vault format version %lld of '%s' is not supported (this build reads %d)",
			     (long long)n, file, VBS_FORMAT_VERSION);
		goto out;
	}
	v->format = (int)n;
	s = vbu_json_str(o, "dedup_scope");
	if (v->format >= 2 && s && strcmp(s, "vm") == 0) {
		v->dedup_vm = 1;
	} else if (v->format >= 2 && (!s || strcmp(s, "vault") != 0)) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'dedup_scope'", file);
		goto out;
	}
	s = vbu_json_str(o, "encryption");
	if (v->dedup_vm && (!s || strcmp(s, "none") == 0)) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'dedup_scope'", file);
		goto out;
	}
	s = vbu_json_str(o, "uuid");
	if (!s || strlen(s) != 36) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'uuid'", file);
		goto out;
	}
	memcpy(v->uuid, s, 37);
	s = vbu_json_str(o, "created");
	if (time_valid(s))
		memcpy(v->created, s, 21);
	if (vbu_json_int(o, "chunk_size", INT64_MIN, INT64_MAX, &n) < 0 || n < VBS_CHUNK_SIZE_MIN ||
	    n > VBS_CHUNK_SIZE_MAX || (n & (n - 1))) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'chunk_size'", file);
		goto out;
	}
	v->chunk_size = (uint32_t)n;
	s = vbu_json_str(o, "chunk_id");
	if (!s || strcmp(s, "hmac-sha256") != 0) {
		r = vbs_fail(-EPROTONOSUPPORT, "config '%s': unknown chunk id '%s'", file,
			     shown(s));
		goto out;
	}
	if (json_object_object_get_ex(o, "replica", &k)) {
		const char *of = vbu_json_str(k, "of"), *site = vbu_json_str(k, "site");
		const char *sc = vbu_json_str(k, "source_chunks");
		json_object *x;

		/* source_chunks came with RADOS replicas: absent (replicas made before), lmdb. */
		if (sc && strcmp(sc, "rados") == 0)
			v->bound_rados = 1;
		else if (json_object_object_get_ex(k, "source_chunks", &x) &&
			 (!sc || strcmp(sc, "lmdb") != 0))
			of = NULL;
		if (!json_object_is_type(k, json_type_object) || !of || strcmp(of, v->uuid) != 0 ||
		    !site || strlen(site) != 36) {
			r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'replica'", file);
			goto out;
		}
		v->replica = 1;
		memcpy(v->site, site, 37);
		s = vbu_json_str(k, "created");
		if (time_valid(s))
			memcpy(v->replica_created, s, 21);
	}
	if (json_object_object_get_ex(o, "chunks", &k) && (r = parse_chunks(v, file, k)) < 0)
		goto out;
	if (!v->replica)
		v->bound_rados = v->chunks.rados;
	s = vbu_json_str(o, "encryption");
	if (s && strcmp(s, "aes-256-gcm") == 0) {
		v->encrypted = 1;
		if (!json_object_object_get_ex(o, "keys", &k)) {
			r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'keys'", file);
			goto out;
		}
		r = parse_keys(v, file, k);
		if (r < 0)
			goto out;
	} else if (s && strcmp(s, "none") == 0) {
		v->encrypted = 0;
		if (!vbu_json_str(o, "id_key") ||
		    vbu_hex_decode(vbu_json_str(o, "id_key"), v->keys.id_key, VBK_KEY_LEN) < 0) {
			r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'id_key'", file);
			goto out;
		}
		v->unlocked = 1;
	} else {
		r = vbs_fail(-EPROTONOSUPPORT, "config '%s': unknown encryption '%s'", file,
			     shown(s));
		goto out;
	}
	r = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

static vbs_vault *vault_new(const char *path)
{
	/* The vault holds its keys (v->keys): kept out of core dumps and swap. */
	vbs_vault *v = vbk_secure_alloc(sizeof(*v));

	if (!v)
		return NULL;
	v->path = strdup(path);
	if (!v->path) {
		vbk_secure_free(v, sizeof(*v));
		return NULL;
	}
	pthread_rwlock_init(&v->map_lock, NULL);
	pthread_mutex_init(&v->mapc_lock, NULL);
	v->cache_bytes = 64u << 20;
	v->slot_opened = -1;
	return v;
}

static int open_optional(vbs_vault *v, MDB_txn *txn, const char *name, MDB_dbi *ret)
{
	int rc = mdb_dbi_open(txn, name, v->readonly ? 0 : MDB_CREATE, ret);

	if (rc == MDB_NOTFOUND && v->readonly) {
		*ret = 0;
		rc = 0;
	}
	return rc;
}

/* meta "config": the config's bound fields, sealed when the vault was made; a config that
 * was edited or swapped (an unencrypted vault's too, whose keys are in the config) no longer
 * matches, or no longer opens. create: write it. */
int vbs_config_check(vbs_vault *v, MDB_txn *txn, int create)
{
	char want[512];
	uint8_t *have = NULL;
	size_t wlen, hlen;
	int r = config_bound(v, want, sizeof(want), &wlen);

	if (r < 0)
		return vbs_fail(r, "vault '%s': bad config", v->path);
	if (create) {
		r = vbs_sput(v, txn, v->dbi_meta, "meta", "config", 6, want, wlen, 0);
		return r < 0 ? vbs_fail(r, "cannot write vault '%s': %s", v->path,
					vbu_strerror(-r))
			     : 0;
	}
	r = vbs_sget(v, txn, v->dbi_meta, "meta", "config", 6, &have, &hlen);
	if (r == 0 && (hlen != wlen || memcmp(have, want, wlen) != 0))
		r = -EBADMSG;
	vbs_unsealed_free(have, hlen);
	if (r == -ENOENT || r == -EBADMSG)
		return vbs_fail(-EBADMSG,
				"vault '%s': its config does not match its database (altered "
				"or replaced?): refusing to use it",
				v->path);
	if (r < 0)
		return vbs_fail(r, "cannot read vault '%s': %s", v->path, vbu_strerror(-r));
	return 0;
}

/* meta "site_chunks": the kind of chunk store a replica was made with, "lmdb" or "rados"
 * (unsealed: a replica is made without its source's keys). A vault without it (not a
 * replica, or one made before) uses the kind its keys are bound to. Either way a config
 * whose "chunks" was removed, added or changed in kind is refused, with the keys or without
 * (a replica receiving). create: a replica writes it. */
static int site_chunks_check(vbs_vault *v, MDB_txn *txn, int create)
{
	const char *own = v->chunks.rados ? "rados" : "lmdb";
	MDB_val k = {11, (void *)"site_chunks"}, d = {strlen(own), (void *)own};
	int rc, want;

	if (create) {
		rc = v->replica ? mdb_put(txn, v->dbi_meta, &k, &d, 0) : 0;
		return rc ? vbs_fail(vbs_mdb_err(rc), "cannot write vault '%s': %s", v->path,
				     mdb_strerror(rc))
			  : 0;
	}
	rc = mdb_get(txn, v->dbi_meta, &k, &d);
	if (rc == MDB_NOTFOUND)
		want = v->bound_rados;
	else if (rc)
		return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
				mdb_strerror(rc));
	else if (d.mv_size == 4 && memcmp(d.mv_data, "lmdb", 4) == 0)
		want = 0;
	else if (d.mv_size == 5 && memcmp(d.mv_data, "rados", 5) == 0)
		want = 1;
	else
		return vbs_fail(-EBADMSG, "vault '%s': the database is damaged (bad site_chunks)",
				v->path);
	if (want != v->chunks.rados)
		return vbs_fail(-EBADMSG,
				"vault '%s': its config keeps its chunks in %s, its database in %s "
				"(altered or replaced?): refusing to use it",
				v->path, v->chunks.rados ? "RADOS" : "LMDB",
				want ? "RADOS" : "LMDB");
	return 0;
}

static int env_open(vbs_vault *v, int create)
{
	MDB_txn *txn = NULL;
	struct stat st;
	char file[4096];
	size_t map = MAP_MIN;
	/* Metas are synced by vbs_write itself, so that vbs_write_lazy can skip it.
	 * MDB_NORDAHEAD (MADV_RANDOM on the map): every fault on a page of the map otherwise
	 * reads the device's whole read-ahead window around it (8 MiB on the machines here), and
	 * pages of the map are B-tree pages looked up at random: chunk frames are read with pread.
	 * 5,000 random 4 KiB reads of a 1 GiB image through the mount read 562 MiB from disk
	 * without it, 82 MiB with it; an ingest --changed of 50 MiB read 547 MiB, now 106 MiB. */
	unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (v->readonly ? MDB_RDONLY : MDB_NOMETASYNC);
	unsigned dflags = create ? MDB_CREATE : 0;
	int rc;

	if (snprintf(file, sizeof(file), "%s/data.mdb", v->path) >= (int)sizeof(file))
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", v->path);
	if (!create && stat(file, &st) < 0)
		return vbs_fail(-errno, "vault '%s' has no database '%s': %s", v->path, file,
				vbu_strerror(errno));
	/* An existing vault's data.mdb holds at least LMDB's two meta pages. LMDB would take an
	 * empty file for a new environment (a writer would even initialise it): that is a
	 * damaged vault, not a new one. */
	if (!create && st.st_size < 2 * 4096)
		return vbs_fail(-EBADMSG, "vault '%s': the database is damaged (data.mdb is %s)",
				v->path, st.st_size == 0 ? "empty" : "too short");
	if (!create && (size_t)st.st_size > map / 2)
		map = (size_t)st.st_size * 2;
	rc = mdb_env_create(&v->env);
	if (rc)
		goto fail;
	vbs_guard_add(v->env, v->path); /* a damaged data.mdb: one line, not a crash */
	mdb_env_set_maxdbs(v->env, 32);
	mdb_env_set_maxreaders(v->env, 256);
	/* Readers too: without a size of its own LMDB maps the meta page's mm_mapsize as it is,
	 * a hint no checksum covers (one flipped bit of it asks for an exabyte). */
	mdb_env_set_mapsize(v->env, map);
	v->mapc_lo = v->mapc_hi = 0;
	rc = mdb_env_open(v->env, v->path, flags, 0600);
	if (rc)
		goto fail;
	/* Best effort: clear the slots of readers that died (see write_txn in db.c). */
	mdb_reader_check(v->env, NULL);
	rc = mdb_txn_begin(v->env, NULL, v->readonly ? MDB_RDONLY : 0, &txn);
	if (rc)
		goto fail;
	{
		/* Format 1 names its tables without the suffix (upgrade.c reads them). */
		int f1 = v->format == 1;

		if ((rc = mdb_dbi_open(txn, "meta", dflags, &v->dbi_meta)) ||
		    (rc = mdb_dbi_open(txn, f1 ? "vms" : VBS_DB_VMS, dflags, &v->dbi_vms)) ||
		    (rc = mdb_dbi_open(txn, f1 ? "rps" : VBS_DB_RPS, dflags, &v->dbi_rps)) ||
		    (rc = mdb_dbi_open(txn, f1 ? "rpnames" : VBS_DB_NAMES, dflags,
				       &v->dbi_rpnames)) ||
		    (rc = mdb_dbi_open(txn, f1 ? "lineages" : VBS_DB_LINEAGES, dflags,
				       &v->dbi_lineages)) ||
		    (rc = mdb_dbi_open(txn, "idx", dflags, &v->dbi_idx)))
			goto fail;
		if (!f1 && (rc = mdb_dbi_open(txn, VBS_DB_DMAPS, dflags, &v->dbi_dmaps)))
			goto fail;
		/* Lifecycle databases (jobs, pins, protect) came with the lifecycle commands: a
		 * writer creates them in vaults made before; a read-only opener goes without
		 * (dbi 0). */
		if ((rc = open_optional(v, txn, f1 ? "jobs" : VBS_DB_JOBS, &v->dbi_jobs)) ||
		    (rc = open_optional(v, txn, "pins", &v->dbi_pins)) ||
		    (rc = open_optional(v, txn, f1 ? "protect" : VBS_DB_PROTECT, &v->dbi_protect)))
			goto fail;
	}
	{
		MDB_stat ms;
		v->psize = mdb_env_stat(v->env, &ms) == 0 ? ms.ms_psize : 4096;
	}
	{
		/* The config first: one edited to another chunk store is refused as edited. */
		int r = v->format >= 2 && v->unlocked ? vbs_config_check(v, txn, create) : 0;
		if (r == 0 && v->format >= 2)
			r = site_chunks_check(v, txn, create);
		if (r == 0)
			r = vbs_cs_attach(v, txn, create);
		if (r < 0) {
			mdb_txn_abort(txn);
			vbs_cs_detach(v);
			vbs_guard_remove(v->env);
			mdb_env_close(v->env);
			v->env = NULL;
			return r;
		}
	}
	rc = mdb_txn_commit(txn);
	txn = NULL;
	/* MDB_NOMETASYNC: durable only once synced (vbs_write does the same). */
	if (rc == 0 && !v->readonly)
		rc = mdb_env_sync(v->env, 1);
	if (rc)
		goto fail;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	vbs_cs_detach(v);
	if (v->env) {
		vbs_guard_remove(v->env);
		mdb_env_close(v->env);
	}
	v->env = NULL;
	if (rc == MDB_NOTFOUND)
		return vbs_fail(-EBADMSG, "vault '%s': the database is damaged (its tables are "
				"missing)", v->path);
	return vbs_fail(vbs_mdb_err(rc), "cannot open database of vault '%s': %s", v->path,
			rc > 0 && rc < 1000 ? vbu_strerror(rc) : mdb_strerror(rc));
}

int vbs_vault_open_env(vbs_vault *v)
{
	if (v->env)
		return 0;
	if (v->format == 1)
		return vbs_fail(-EPROTONOSUPPORT,
				"vault '%s' has format 1, from before records were authenticated: "
				"run 'vmbak upgrade' on it once",
				v->path);
	if (!v->unlocked)
		return vbs_fail(-ENOKEY, "vault '%s' needs a passphrase", v->path);
	return env_open(v, 0);
}

int vbs_vault_open_env_keyless(vbs_vault *v)
{
	if (v->env)
		return 0;
	if (v->format != VBS_FORMAT_VERSION)
		return vbs_fail(-EPROTONOSUPPORT, "vault '%s' has format %d: run 'vmbak upgrade' on it",
				v->path, v->format);
	return env_open(v, 0);
}

int vbs_config_upgrade(vbs_vault *v, const char *pass)
{
	json_object *cfg = NULL;
	const char *text;
	char file[4096], aad[512], *withnl = NULL;
	size_t aad_len, len;
	int r;

	if (config_path(v->path, file, sizeof(file)) < 0)
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", v->path);
	v->format = VBS_FORMAT_VERSION;
	if (v->encrypted) {
		/* Format 1 has one slot (the single-object form): it becomes slot "default". */
		vbs_key_slot *sl = &v->slots[0];

		v->slots_legacy = 0;
		if (!sl->created[0])
			vbu_format_time(vbu_now_ns() / 1000000000, sl->created);
		if ((r = slot_aad(v, sl, aad, sizeof(aad), &aad_len)) < 0 ||
		    (r = vbk_vaultkeys_wrap(&v->keys, pass, aad, aad_len, &sl->wrapped)) < 0)
			return vbs_fail(r, "cannot wrap the keys of vault '%s': %s", v->path,
					vbu_strerror(-r));
	}
	cfg = config_json(v);
	text = cfg ? json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PRETTY) : NULL;
	len = text ? strlen(text) : 0;
	withnl = text ? malloc(len + 2) : NULL;
	if (!withnl) {
		json_object_put(cfg);
		return vbs_fail(-ENOMEM, "out of memory");
	}
	memcpy(withnl, text, len);
	withnl[len] = '\n';
	r = vbu_write_file_atomic(file, withnl, len + 1, 0600);
	free(withnl);
	json_object_put(cfg);
	if (r < 0)
		return vbs_fail(r, "cannot write '%s': %s", file, vbu_strerror(-r));
	return 0;
}

int vbs_env_open_any(vbs_vault *v)
{
	if (v->env)
		return 0;
	return env_open(v, 0);
}

void vbs_vault_close_env(vbs_vault *v)
{
	if (!v || !v->env)
		return;
	vbs_cs_detach(v);
	vbs_guard_remove(v->env);
	mdb_env_close(v->env);
	v->env = NULL;
}

/* Undoes a failed init of path: its files only if our config went in (before, the directory's
 * files may be another init's), the directory only if we made it (rmdir fails, as it should,
 * when another init has put files in it). */
static void undo_new_vault(const char *path, const char *file, int wrote_cfg, int made_dir)
{
	if (wrote_cfg) {
		char f[4200];

		unlink(file);
		snprintf(f, sizeof(f), "%s/data.mdb", path);
		unlink(f);
		snprintf(f, sizeof(f), "%s/lock.mdb", path);
		unlink(f);
	}
	if (made_dir)
		rmdir(path);
}

/* Writes a new vault's config (cfg; NULL: out of memory) as file. The config is linked into
 * place, never renamed over: of concurrent inits of one directory exactly one gets it, and the
 * others fail without touching it (then *made_dir = 0: only the winner owns the directory's
 * files). *wrote_cfg is set on any failure after the link too (the directory's fsync), since
 * the file is then ours to remove. */
static int write_new_config(const char *path, const char *file, json_object *cfg, int *made_dir,
			    int *wrote_cfg)
{
	const char *text =
	    cfg ? json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PRETTY) : NULL;
	size_t len = text ? strlen(text) : 0;
	char *withnl = text ? malloc(len + 2) : NULL;
	int r;

	if (!withnl)
		return vbs_fail(-ENOMEM, "out of memory");
	memcpy(withnl, text, len);
	withnl[len] = '\n';
	r = vbu_write_file_new(file, withnl, len + 1, 0600);
	free(withnl);
	if (r == -EEXIST) {
		*made_dir = 0;
		return vbs_fail(r, "cannot create vault '%s': another init created it first", path);
	}
	*wrote_cfg = 1;
	if (r < 0)
		return vbs_fail(r, "cannot write '%s': %s", file, vbu_strerror(-r));
	return 0;
}

/* Makes path a new vault's directory: created (*made_dir = 1) or an existing empty one. */
static int make_dir(const char *path, int *made_dir)
{
	struct stat st;
	int r;

	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return vbs_fail(-ENOTDIR, "cannot create vault '%s': not a directory", path);
		r = vbu_dir_is_empty(path);
		if (r < 0)
			return vbs_fail(r, "cannot create vault '%s': %s", path, vbu_strerror(-r));
		if (!r)
			return vbs_fail(-EEXIST, "cannot create vault '%s': directory is not empty",
					path);
		/* An existing empty directory may be open to all, and anyone who can write it
		 * can rename files over the vault's: make it what mkdir makes. */
		if (chmod(path, 0700) < 0)
			return vbs_fail(-errno, "cannot create vault '%s': %s", path,
					vbu_strerror(errno));
	} else if (errno != ENOENT) {
		return vbs_fail(-errno, "cannot create vault '%s': %s", path, vbu_strerror(errno));
	} else {
		if (mkdir(path, 0700) < 0)
			return vbs_fail(-errno, "cannot create vault '%s': %s", path,
					vbu_strerror(errno));
		*made_dir = 1;
	}
	return 0;
}

/* The checks of opts' chunk store options, before anything is made. */
static int chunks_opts_ok(const vbs_init_opts *opts)
{
	if (opts->rados_pool && !ceph_name_ok(opts->rados_pool))
		return vbs_fail(-EINVAL, "invalid pool name '%s'", shown(opts->rados_pool));
	if (opts->rados_pool && opts->rados_ns && !ceph_name_ok(opts->rados_ns))
		return vbs_fail(-EINVAL, "invalid namespace '%s'", shown(opts->rados_ns));
	if (opts->rados_pool && opts->ceph_id && !ceph_name_ok(opts->ceph_id))
		return vbs_fail(-EINVAL, "invalid ceph client id '%s'", shown(opts->ceph_id));
	return 0;
}

/* v->chunks from opts (checked by chunks_opts_ok): the namespace defaults to def_ns. */
static int chunks_from_opts(vbs_vault *v, const vbs_init_opts *opts, const char *def_ns)
{
	if (!opts->rados_pool)
		return 0;
	v->chunks.rados = 1;
	if (dup_field(opts->rados_pool, &v->chunks.pool) < 0 ||
	    dup_field(opts->rados_ns ? opts->rados_ns : def_ns, &v->chunks.ns) < 0 ||
	    dup_field(opts->ceph_id, &v->chunks.id) < 0)
		return vbs_fail(-ENOMEM, "out of memory");
	/* Absolute, so every later command finds it from wherever it runs. */
	if (opts->ceph_conf && !(v->chunks.conf = realpath(opts->ceph_conf, NULL)))
		return vbs_fail(-errno, "cannot read ceph config '%s': %s", opts->ceph_conf,
				vbu_strerror(errno));
	return 0;
}

int vbs_vault_init(const char *path, const vbs_init_opts *opts, const char *pass)
{
	vbs_vault *v = NULL;
	json_object *cfg = NULL;
	char file[4096], aad[512];
	uint8_t u[16];
	size_t aad_len;
	int made_dir = 0, wrote_cfg = 0, r;

	vbs_clear_err();
	if (opts->chunk_size < VBS_CHUNK_SIZE_MIN || opts->chunk_size > VBS_CHUNK_SIZE_MAX ||
	    (opts->chunk_size & (opts->chunk_size - 1)))
		return vbs_fail(-EINVAL, "chunk size %u is not a power of two from %u to %u",
				opts->chunk_size, VBS_CHUNK_SIZE_MIN, VBS_CHUNK_SIZE_MAX);
	if (opts->encrypt && (!pass || !*pass))
		return vbs_fail(-ENOKEY, "an encrypted vault needs a passphrase");
	if (opts->dedup_vm && !opts->encrypt)
		return vbs_fail(-EINVAL, "dedup scope 'vm' needs an encrypted vault");
	if ((r = chunks_opts_ok(opts)) < 0)
		return r;
	if (config_path(path, file, sizeof(file)) < 0)
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", path);
	if ((r = make_dir(path, &made_dir)) < 0)
		return r;

	v = vault_new(path);
	if (!v) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	v->chunk_size = opts->chunk_size;
	v->encrypted = !!opts->encrypt;
	v->dedup_vm = !!opts->dedup_vm;
	v->format = VBS_FORMAT_VERSION;
	if ((r = vbk_random(u, sizeof(u))) < 0)
		goto crypto_fail;
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	vbu_uuid_format(u, v->uuid);
	if ((r = chunks_from_opts(v, opts, v->uuid)) < 0)
		goto out;
	v->bound_rados = v->chunks.rados;
	if ((r = vbk_vaultkeys_generate(&v->keys)) < 0)
		goto crypto_fail;
	vbu_format_time(vbu_now_ns() / 1000000000, v->created);
	if (v->encrypted) {
		v->slots = calloc(1, sizeof(*v->slots));
		if (!v->slots) {
			r = -ENOMEM;
			goto crypto_fail;
		}
		v->nslots = 1;
		snprintf(v->slots[0].name, sizeof(v->slots[0].name), VBS_KEY_SLOT_DEFAULT);
		memcpy(v->slots[0].created, v->created, sizeof(v->slots[0].created));
		if ((r = slot_aad(v, &v->slots[0], aad, sizeof(aad), &aad_len)) < 0 ||
		    (r = vbk_vaultkeys_wrap(&v->keys, pass, aad, aad_len, &v->slots[0].wrapped)) < 0)
			goto crypto_fail;
	}
	if ((r = setup_macs(v)) < 0)
		goto crypto_fail;
	v->unlocked = 1;
	cfg = config_json(v);
	r = write_new_config(path, file, cfg, &made_dir, &wrote_cfg);
	if (r < 0)
		goto out;
	r = env_open(v, 1);
	if (r < 0)
		goto out;
	r = 0;
	goto out;
crypto_fail:
	vbs_fail(r, "cannot create vault keys: %s", vbu_strerror(-r));
out:
	json_object_put(cfg);
	vbs_vault_close(v);
	if (r < 0)
		undo_new_vault(path, file, wrote_cfg, made_dir);
	return r;
}

static int vault_open_text(const char *path, int readonly, vbs_vault **ret, char **ret_text);

struct raw_put {
	const char *key;
	const void *val;
	size_t len;
};

static int raw_meta_put(vbs_vault *v, MDB_txn *txn, void *arg)
{
	const struct raw_put *p = arg;
	MDB_val k = {strlen(p->key), (void *)p->key}, d = {p->len, (void *)p->val};

	return vbs_mdb_err(mdb_put(txn, v->dbi_meta, &k, &d, 0));
}

/* meta "config" of the vault src as stored (sealed): *ret malloc'ed. */
static int raw_config_of(vbs_vault *src, uint8_t **ret, size_t *ret_len)
{
	MDB_txn *txn = NULL;
	MDB_val k = {6, (void *)"config"}, d;
	int r = vbs_read_begin(src, &txn);

	if (r < 0)
		return vbs_fail(r, "cannot read vault '%s': %s", src->path, vbu_strerror(-r));
	r = vbs_mdb_err(mdb_get(txn, src->dbi_meta, &k, &d));
	if (r == 0 && (d.mv_size == 0 || d.mv_size > 4096))
		r = -EBADMSG;
	if (r == 0 && !(*ret = malloc(d.mv_size)))
		r = -ENOMEM;
	if (r == 0) {
		memcpy(*ret, d.mv_data, d.mv_size);
		*ret_len = d.mv_size;
	}
	vbs_read_end(src, txn);
	if (r < 0)
		return vbs_fail(r, "cannot read the config record of vault '%s': %s", src->path,
				vbu_strerror(-r));
	return 0;
}

int vbs_vault_init_replica(const char *path, const char *src_path, const vbs_init_opts *opts)
{
	vbs_vault *src = NULL, *v = NULL;
	json_object *cfg = NULL;
	char file[4096], srcfile[4096], *text = NULL;
	struct stat st;
	uint8_t u[16], *sealed = NULL;
	size_t len = 0, slen = 0;
	int made_dir = 0, wrote_cfg = 0, r;

	vbs_clear_err();
	if ((r = chunks_opts_ok(opts)) < 0)
		return r;
	if (config_path(path, file, sizeof(file)) < 0 ||
	    config_path(src_path, srcfile, sizeof(srcfile)) < 0)
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", path);
	/* The source first: a bad one leaves nothing behind. A vault directory gives its config
	 * and its sealed copy; a config file alone (copied from the source's host) gives the
	 * config, and the first sync brings the sealed copy. */
	if (stat(src_path, &st) == 0 && S_ISREG(st.st_mode)) {
		r = vbu_read_file(src_path, CONFIG_MAX, &text, &len);
		if (r < 0) {
			vbs_fail(r, "cannot read '%s': %s", src_path, vbu_strerror(-r));
			goto out;
		}
		src = vault_new(src_path);
		if (!src) {
			r = vbs_fail(-ENOMEM, "out of memory");
			goto out;
		}
		snprintf(srcfile, sizeof(srcfile), "%s", src_path);
		if ((r = parse_config(src, srcfile, text, len)) < 0)
			goto out;
		if (src->format != VBS_FORMAT_VERSION) {
			r = vbs_fail(-EPROTONOSUPPORT, "'%s' is a config of format %d: run 'vmbak "
					 "upgrade' on its vault", src_path, src->format);
			goto out;
		}
	} else {
		r = vault_open_text(src_path, 1, &src, &text);
		if (r < 0)
			goto out;
		len = strlen(text);
		if ((r = vbs_vault_open_env_keyless(src)) < 0 ||
		    (r = raw_config_of(src, &sealed, &slen)) < 0)
			goto out;
	}
	r = make_dir(path, &made_dir);
	if (r < 0)
		goto out;
	v = vault_new(path);
	if (!v) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	/* The source's own config, keys and uuid included, so that records sealed there open
	 * here; only the replica marker is new. */
	if ((r = parse_config(v, srcfile, text, len)) < 0)
		goto out;
	if ((r = vbk_random(u, sizeof(u))) < 0) {
		vbs_fail(r, "cannot make a uuid: %s", vbu_strerror(-r));
		goto out;
	}
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	vbu_uuid_format(u, v->site);
	/* Its chunks are its own, never the source's pool and namespace (its "copy" would be the
	 * source's own objects): LMDB, or RADOS in a namespace named from its site by default.
	 * The keys stay bound to the source's kind (bound_rados, as parse_config set it). */
	{
		struct vbs_chunks_cfg s = v->chunks;

		memset(&v->chunks, 0, sizeof(v->chunks));
		r = chunks_from_opts(v, opts, v->site);
		if (r == 0 && s.rados && v->chunks.rados && strcmp(s.pool, v->chunks.pool) == 0 &&
		    strcmp(s.ns, v->chunks.ns) == 0 &&
		    (s.conf && v->chunks.conf ? strcmp(s.conf, v->chunks.conf) == 0
					      : s.conf == v->chunks.conf))
			r = vbs_fail(-EINVAL,
				     "ceph pool '%s' namespace '%s' holds the chunks of '%s' "
				     "itself: give the replica a namespace of its own",
				     v->chunks.pool, v->chunks.ns, src_path);
		chunks_cfg_free(&s);
		if (r < 0)
			goto out;
	}
	vbu_format_time(vbu_now_ns() / 1000000000, v->replica_created);
	v->replica = 1;
	if (v->unlocked && (r = setup_macs(v)) < 0) {
		vbs_fail(r, "cannot set up vault keys: %s", vbu_strerror(-r));
		goto out;
	}
	cfg = config_json(v);
	r = write_new_config(path, file, cfg, &made_dir, &wrote_cfg);
	if (r < 0)
		goto out;
	r = env_open(v, 1);
	if (r == 0 && sealed) {
		struct raw_put p = {"config", sealed, slen};

		r = vbs_write(v, raw_meta_put, &p);
		if (r < 0)
			vbs_fail(r, "cannot write vault '%s': %s", path, vbu_strerror(-r));
	}
out:
	json_object_put(cfg);
	free(text);
	free(sealed);
	vbs_vault_close(src);
	vbs_vault_close(v);
	if (r < 0)
		undo_new_vault(path, file, wrote_cfg, made_dir);
	return r;
}

int vbs_config_sealed(vbs_vault *v, uint8_t **ret, size_t *ret_len)
{
	char bound[512];
	size_t blen;
	int r = config_bound(v, bound, sizeof(bound), &blen);

	if (r < 0)
		return r;
	return vbs_seal(v, "meta", "config", 6, bound, blen, ret, ret_len);
}

int vbs_vault_unlock_from(vbs_vault *v, const vbs_vault *src)
{
	int r;

	vbs_clear_err();
	if (v->unlocked)
		return 0;
	if (!v->replica || strcmp(v->uuid, src->uuid) != 0 || !src->unlocked)
		return vbs_fail(-ENOKEY, "vault '%s' is not an unlocked replica's source", v->path);
	memcpy(&v->keys, &src->keys, sizeof(v->keys));
	r = setup_macs(v);
	if (r < 0)
		return vbs_fail(r, "cannot set up vault keys: %s", vbu_strerror(-r));
	v->unlocked = 1;
	return 0;
}

int vbs_vault_replica(const vbs_vault *v)
{
	return v->replica;
}

/* vbs_vault_open(), and with ret_text the config's text as read (the caller frees it). */
static int vault_open_text(const char *path, int readonly, vbs_vault **ret, char **ret_text)
{
	vbs_vault *v = NULL;
	struct stat st;
	char file[4096], *text = NULL;
	size_t len;
	int r;

	if (stat(path, &st) < 0)
		return vbs_fail(-errno, "cannot open vault '%s': %s", path, vbu_strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return vbs_fail(-ENOTDIR, "cannot open vault '%s': not a directory", path);
	if (config_path(path, file, sizeof(file)) < 0)
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", path);
	r = vbu_read_file(file, CONFIG_MAX, &text, &len);
	if (r == -ENOENT)
		return vbs_fail(-EPROTO, "'%s' is not a vault: it has no '%s'", path,
				VBS_CONFIG_FILE);
	if (r < 0)
		return vbs_fail(r, "cannot read '%s': %s", file, vbu_strerror(-r));
	v = vault_new(path);
	if (!v) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	v->readonly = !!readonly;
	r = parse_config(v, file, text, len);
	if (r < 0)
		goto out;
	if (v->unlocked && (r = setup_macs(v)) < 0) {
		vbs_fail(r, "cannot set up vault keys: %s", vbu_strerror(-r));
		goto out;
	}
	*ret = v;
	v = NULL;
	if (ret_text) {
		*ret_text = text;
		text = NULL;
	}
	r = 0;
out:
	free(text);
	vbs_vault_close(v);
	return r;
}

int vbs_vault_open(const char *path, int readonly, vbs_vault **ret)
{
	vbs_clear_err();
	return vault_open_text(path, readonly, ret, NULL);
}

size_t vbs_vault_key_count(const vbs_vault *v)
{
	return v->encrypted ? v->nslots : 0;
}

int vbs_vault_key_get(const vbs_vault *v, size_t i, vbs_key_slot_info *ret)
{
	if (!v->encrypted || i >= v->nslots)
		return -ENOENT;
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "%s", v->slots[i].name);
	snprintf(ret->created, sizeof(ret->created), "%s", v->slots[i].created);
	ret->current = (int)i == v->slot_opened;
	return 0;
}

/* Takes the vault's key lock (blocking): whoever rewrites the config holds it. The lock goes
 * with the descriptor, also when the process dies. */
static int key_lock(const char *path, int *ret_fd)
{
	char f[4200];
	int fd;

	if (snprintf(f, sizeof(f), "%s/%s", path, VBS_KEY_LOCK_FILE) >= (int)sizeof(f))
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", path);
	fd = open(f, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return vbs_fail(-errno, "cannot lock vault '%s': cannot open '%s': %s", path, f,
				vbu_strerror(errno));
	while (flock(fd, LOCK_EX) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		close(fd);
		return vbs_fail(-e, "cannot lock vault '%s': %s", path, vbu_strerror(e));
	}
	*ret_fd = fd;
	return 0;
}

/* Wraps v's keys into slot sl under pass, with a fresh salt and nonce. */
static int slot_wrap(vbs_vault *v, vbs_key_slot *sl, const char *pass)
{
	char aad[512];
	size_t aad_len;
	int r = slot_aad(v, sl, aad, sizeof(aad), &aad_len);

	if (r == 0)
		r = vbk_vaultkeys_wrap(&v->keys, pass, aad, aad_len, &sl->wrapped);
	if (r < 0)
		return vbs_fail(r, "cannot wrap the keys of vault '%s': %s", v->path,
				vbu_strerror(-r));
	return 0;
}

static int slot_find(const vbs_vault *v, const char *name)
{
	for (size_t i = 0; name && i < v->nslots; i++)
		if (strcmp(v->slots[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Applies op to the slots of the unlocked v, in memory. */
static int slots_change(vbs_vault *v, vbs_key_op op, const char *pass, const char *name,
			const char *new_pass, char *ret_name)
{
	int idx = slot_find(v, name), r;
	vbs_key_slot *sl, *grown;
	char now[24];

	vbu_format_time(vbu_now_ns() / 1000000000, now);
	if (op != VBS_KEY_ADD && name && idx < 0)
		return vbs_fail(-ENOENT, "vault '%s' has no key slot named '%s'", v->path, name);
	if (op == VBS_KEY_PASSWD && idx < 0)
		idx = v->slot_opened;
	/* Two slots with one passphrase: unlocking takes the first, and passwd without --name
	 * would change that one. (Other slots' passphrases are unknown here: not checked.) */
	if (op != VBS_KEY_REMOVE && (op == VBS_KEY_ADD || idx != v->slot_opened) &&
	    strlen(pass) == strlen(new_pass) && vbk_equal(pass, new_pass, strlen(pass)))
		return vbs_fail(-EEXIST, "the new passphrase is the one that opens key slot '%s' "
				"of vault '%s': choose another", v->slots[v->slot_opened].name,
				v->path);
	/* The single-object form becomes slot "default", now bound to its name. Only one slot
	 * exists then, and pass opened it. */
	if (v->slots_legacy) {
		v->slots_legacy = 0;
		if (!v->slots[0].created[0])
			memcpy(v->slots[0].created, now, sizeof(now));
		if ((r = slot_wrap(v, &v->slots[0], pass)) < 0)
			return r;
	}
	switch (op) {
	case VBS_KEY_ADD: {
		char chosen[VBS_NAME_MAX + 1];

		if (idx >= 0)
			return vbs_fail(-EEXIST, "vault '%s' already has a key slot named '%s'",
					v->path, name);
		if (v->nslots >= VBS_KEY_SLOTS_MAX)
			return vbs_fail(-EMLINK, "vault '%s' has %d key slots, the most it may have",
					v->path, VBS_KEY_SLOTS_MAX);
		if (name) {
			snprintf(chosen, sizeof(chosen), "%s", name);
		} else {
			for (size_t n = v->nslots + 1;; n++) {
				snprintf(chosen, sizeof(chosen), "key-%zu", n);
				if (slot_find(v, chosen) < 0)
					break;
			}
		}
		grown = realloc(v->slots, (v->nslots + 1) * sizeof(*v->slots));
		if (!grown)
			return vbs_fail(-ENOMEM, "out of memory");
		v->slots = grown;
		sl = &v->slots[v->nslots];
		memset(sl, 0, sizeof(*sl));
		memcpy(sl->name, chosen, sizeof(sl->name));
		memcpy(sl->created, now, sizeof(now));
		if ((r = slot_wrap(v, sl, new_pass)) < 0)
			return r;
		v->nslots++;
		break;
	}
	case VBS_KEY_PASSWD:
		sl = &v->slots[idx];
		memcpy(sl->created, now, sizeof(now));
		if ((r = slot_wrap(v, sl, new_pass)) < 0)
			return r;
		break;
	case VBS_KEY_REMOVE:
		if (v->nslots == 1)
			return vbs_fail(-EBUSY, "cannot remove key slot '%s' of vault '%s': it is the "
					"last one", name, v->path);
		sl = &v->slots[idx];
		break;
	default:
		return vbs_fail(-EINVAL, "unknown key operation");
	}
	if (ret_name)
		snprintf(ret_name, VBS_NAME_MAX + 1, "%s", sl->name);
	if (op == VBS_KEY_REMOVE) {
		memmove(sl, sl + 1, (v->nslots - (size_t)idx - 1) * sizeof(*sl));
		v->nslots--;
	}
	return 0;
}

int vbs_vault_key_change(const char *path, vbs_key_op op, const char *pass, const char *name,
			 const char *new_pass, char *ret_name)
{
	vbs_vault *v = NULL;
	json_object *doc = NULL, *keys;
	char file[4096], *text = NULL, *withnl = NULL;
	const char *out_text;
	size_t len;
	int lfd = -1, r;

	vbs_clear_err();
	if (op == VBS_KEY_REMOVE)
		new_pass = "";
	if (!pass || !new_pass || (op != VBS_KEY_REMOVE && !*new_pass) ||
	    (op == VBS_KEY_REMOVE && !name))
		return vbs_fail(-EINVAL, "a key change needs a passphrase, a new one and a name");
	if (name && !vbu_name_valid(name))
		return vbs_fail(-EINVAL, "invalid key slot name '%s': use " VBS_NAME_RULE,
				shown(name));
	if (config_path(path, file, sizeof(file)) < 0)
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", path);
	/* A look before the lock: no lock file is made in what is not a vault. */
	r = vault_open_text(path, 1, &v, NULL);
	if (r < 0)
		return r;
	r = v->encrypted ? 0
			 : vbs_fail(-EINVAL, "vault '%s' is not encrypted: it has no passphrase",
				    path);
	vbs_vault_close(v);
	v = NULL;
	if (r < 0)
		return r;
	if ((r = key_lock(path, &lfd)) < 0)
		return r;
	/* Under the lock, read again: a key change that finished meanwhile is the base of this
	 * one, never lost. */
	if ((r = vault_open_text(path, 1, &v, &text)) < 0 || (r = vbs_vault_unlock(v, pass)) < 0)
		goto out;
	/* The keys must be this database's (its sealed copy of the bound fields opens with them
	 * and matches): nothing else is ever wrapped under a new passphrase. Read-only. */
	if ((r = vbs_vault_open_env(v)) < 0)
		goto out;
	vbs_vault_close_env(v);
	if ((r = slots_change(v, op, pass, name, new_pass, ret_name)) < 0)
		goto out;
	/* The rest of the config stays as it was, fields this build does not know included. */
	doc = json_tokener_parse(text);
	keys = doc ? slots_json(v) : NULL;
	if (!keys || json_object_object_add(doc, "keys", keys) < 0) {
		json_object_put(keys);
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	out_text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY);
	len = out_text ? strlen(out_text) : 0;
	withnl = out_text ? malloc(len + 2) : NULL;
	if (!withnl) {
		r = vbs_fail(-ENOMEM, "out of memory");
		goto out;
	}
	memcpy(withnl, out_text, len);
	withnl[len] = '\n';
	vbs_test_pause("VMBAK_TEST_PAUSE_KEY_WRITE");
	/* The only write: the whole config, atomically. data.mdb is never touched. */
	r = vbu_write_file_atomic(file, withnl, len + 1, 0600);
	if (r < 0)
		vbs_fail(r, "cannot write '%s': %s", file, vbu_strerror(-r));
out:
	free(withnl);
	json_object_put(doc);
	free(text);
	vbs_vault_close(v);
	if (lfd >= 0)
		close(lfd); /* after the write and its directory fsync: releases the lock */
	return r;
}

int vbs_vault_needs_passphrase(const vbs_vault *v)
{
	return v->encrypted && !v->unlocked;
}

int vbs_vault_unlock(vbs_vault *v, const char *pass)
{
	char aad[512];
	size_t aad_len;
	int r;

	vbs_clear_err();
	if (v->unlocked)
		return 0;
	if (!pass)
		return vbs_fail(-ENOKEY, "vault '%s' needs a passphrase", v->path);
	/* Each slot tried costs one scrypt: a wrong passphrase pays for all of them. */
	r = -ENOKEY;
	for (size_t i = 0; i < v->nslots && r == -ENOKEY; i++) {
		if ((r = slot_aad(v, &v->slots[i], aad, sizeof(aad), &aad_len)) < 0)
			return vbs_fail(r, "vault '%s': bad uuid", v->path);
		r = vbk_vaultkeys_unwrap(&v->slots[i].wrapped, pass, aad, aad_len, &v->keys);
		if (r == 0)
			v->slot_opened = (int)i;
	}
	if (r == -ENOKEY)
		return vbs_fail(r, "wrong passphrase for vault '%s'", v->path);
	if (r < 0)
		return vbs_fail(r, "cannot unlock vault '%s': %s", v->path, vbu_strerror(-r));
	r = setup_macs(v);
	if (r < 0)
		return vbs_fail(r, "cannot set up vault keys: %s", vbu_strerror(-r));
	v->unlocked = 1;
	return 0;
}

void vbs_vault_close(vbs_vault *v)
{
	if (!v)
		return;
	vbs_prefetch_stop(v);
	vbs_vault_close_env(v);
	chunks_cfg_free(&v->chunks);
	vbs_cache_free(v->cache);
	vbs_gcache_free(v->gcache);
	vbk_hmac_free(v->id_mac);
	vbk_hmac_free(v->key_mac);
	vbk_hmac_free(v->name_mac);
	vbk_hmac_free(v->idx_mac);
	vbk_wipe(v->meta_key, sizeof(v->meta_key));
	vbk_vaultkeys_wipe(&v->keys);
	free(v->slots);
	pthread_rwlock_destroy(&v->map_lock);
	pthread_mutex_destroy(&v->mapc_lock);
	free(v->path);
	vbk_secure_free(v, sizeof(*v));
}

const char *vbs_vault_path(const vbs_vault *v)
{
	return v->path;
}

const char *vbs_vault_uuid(const vbs_vault *v)
{
	return v->uuid;
}

uint32_t vbs_vault_chunk_size(const vbs_vault *v)
{
	return v->chunk_size;
}

int vbs_vault_dedup_vm(const vbs_vault *v)
{
	return v->dedup_vm;
}

const char *vbs_vault_chunk_store(const vbs_vault *v, const char **ret_pool, const char **ret_ns)
{
	if (ret_pool)
		*ret_pool = v->chunks.rados ? v->chunks.pool : NULL;
	if (ret_ns)
		*ret_ns = v->chunks.rados ? v->chunks.ns : NULL;
	return v->chunks.rados ? "rados" : "lmdb";
}

int vbs_vm_id_mac(vbs_vault *v, const char *vm, vbk_hmac **ret)
{
	uint8_t k[VBK_KEY_LEN];
	int r;

	if (!v->unlocked)
		return -ENOKEY;
	r = vbk_hmac_calc2(v->id_mac, "vmbak vm id key v2", sizeof("vmbak vm id key v2"), vm,
			   strlen(vm), k);
	if (r == 0)
		r = vbk_hmac_new(k, ret);
	vbk_wipe(k, sizeof(k));
	return r;
}

int vbs_vault_encrypted(const vbs_vault *v)
{
	return v->encrypted;
}

void vbs_vault_set_cache_size(vbs_vault *v, size_t bytes)
{
	v->cache_bytes = bytes;
}
