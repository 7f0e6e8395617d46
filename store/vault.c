/* vault.c: creating and opening a vault: config file, keys, LMDB environment. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "dbguard.h"
#include "internal.h"
#include "seal.h"
#include "util.h"

#define CONFIG_MAX (64 * 1024)
#define MAP_MIN ((size_t)64 << 30) /* virtual only: the file grows as data comes */

int vbs_name_valid(const char *name)
{
	size_t n = 0;

	if (!name || !*name || name[0] == '.')
		return 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return n <= VBS_NAME_MAX;
}

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
		n = snprintf(buf, len,
			     "%s v2 uuid=%s chunk_size=%u chunk_id=hmac-sha256 compression=zstd "
			     "encryption=%s dedup_scope=%s",
			     VBS_FORMAT_NAME, v->uuid, v->chunk_size,
			     v->encrypted ? "aes-256-gcm" : "none", v->dedup_vm ? "vm" : "vault");
	if (n < 0 || (size_t)n >= len)
		return -EINVAL;
	*ret_len = (size_t)n;
	return 0;
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

/* The config document of v, or NULL when out of memory. */
static json_object *config_json(const vbs_vault *v)
{
	json_object *o = json_object_new_object();
	char when[21], hex[2 * VBK_KEY_LEN + 1];
	char *b;
	int bad = 0;

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
	if (v->encrypted) {
		json_object *k = json_object_new_object();
		uint8_t blob[sizeof(v->wrapped.ct) + VBK_TAG_LEN];

		json_object_object_add(k, "kdf", json_object_new_string("scrypt"));
		json_object_object_add(k, "n", json_object_new_int64((int64_t)v->wrapped.kdf.n));
		json_object_object_add(k, "r", json_object_new_int64(v->wrapped.kdf.r));
		json_object_object_add(k, "p", json_object_new_int64(v->wrapped.kdf.p));
		b = vbu_base64_encode(v->wrapped.kdf.salt, sizeof(v->wrapped.kdf.salt));
		bad |= !b;
		json_object_object_add(k, "salt", json_object_new_string(b ? b : ""));
		free(b);
		b = vbu_base64_encode(v->wrapped.nonce, sizeof(v->wrapped.nonce));
		bad |= !b;
		json_object_object_add(k, "nonce", json_object_new_string(b ? b : ""));
		free(b);
		memcpy(blob, v->wrapped.ct, sizeof(v->wrapped.ct));
		memcpy(blob + sizeof(v->wrapped.ct), v->wrapped.tag, VBK_TAG_LEN);
		b = vbu_base64_encode(blob, sizeof(blob));
		bad |= !b;
		json_object_object_add(k, "wrapped", json_object_new_string(b ? b : ""));
		free(b);
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

static const char *jstr(json_object *o, const char *key)
{
	json_object *f;
	if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_string))
		return NULL;
	return json_object_get_string(f);
}

static int jint(json_object *o, const char *key, int64_t *ret)
{
	json_object *f;
	if (!json_object_object_get_ex(o, key, &f) || !json_object_is_type(f, json_type_int))
		return -EPROTO;
	*ret = json_object_get_int64(f);
	return 0;
}

static int b64_exact(const char *s, uint8_t *out, size_t len)
{
	size_t got;
	if (!s || vbu_base64_decode(s, out, len, &got) < 0 || got != len)
		return -EPROTO;
	return 0;
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
	s = jstr(o, "format");
	if (!s || strcmp(s, VBS_FORMAT_NAME) != 0) {
		r = vbs_fail(-EPROTO, "config '%s' is not a vmbak vault config", file);
		goto out;
	}
	if (jint(o, "version", &n) < 0) {
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
	s = jstr(o, "dedup_scope");
	if (v->format >= 2 && s && strcmp(s, "vm") == 0) {
		v->dedup_vm = 1;
	} else if (v->format >= 2 && (!s || strcmp(s, "vault") != 0)) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'dedup_scope'", file);
		goto out;
	}
	s = jstr(o, "encryption");
	if (v->dedup_vm && (!s || strcmp(s, "none") == 0)) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'dedup_scope'", file);
		goto out;
	}
	s = jstr(o, "uuid");
	if (!s || strlen(s) != 36) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'uuid'", file);
		goto out;
	}
	memcpy(v->uuid, s, 37);
	if (jint(o, "chunk_size", &n) < 0 || n < VBS_CHUNK_SIZE_MIN || n > VBS_CHUNK_SIZE_MAX ||
	    (n & (n - 1))) {
		r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'chunk_size'", file);
		goto out;
	}
	v->chunk_size = (uint32_t)n;
	s = jstr(o, "chunk_id");
	if (!s || strcmp(s, "hmac-sha256") != 0) {
		r = vbs_fail(-EPROTONOSUPPORT, "config '%s': unknown chunk id '%s'", file,
			     shown(s));
		goto out;
	}
	s = jstr(o, "encryption");
	if (s && strcmp(s, "aes-256-gcm") == 0) {
		int64_t nn, rr, pp;
		uint8_t blob[sizeof(v->wrapped.ct) + VBK_TAG_LEN];

		v->encrypted = 1;
		if (!json_object_object_get_ex(o, "keys", &k) ||
		    !json_object_is_type(k, json_type_object) || !jstr(k, "kdf") ||
		    strcmp(jstr(k, "kdf"), "scrypt") != 0 || jint(k, "n", &nn) < 0 ||
		    jint(k, "r", &rr) < 0 || jint(k, "p", &pp) < 0 || nn < 0 || rr < 0 ||
		    pp < 0 || rr > 1024 || pp > 1024 ||
		    b64_exact(jstr(k, "salt"), v->wrapped.kdf.salt, sizeof(v->wrapped.kdf.salt)) ||
		    b64_exact(jstr(k, "nonce"), v->wrapped.nonce, sizeof(v->wrapped.nonce)) ||
		    b64_exact(jstr(k, "wrapped"), blob, sizeof(blob))) {
			r = vbs_fail(-EPROTO, "config '%s': missing or bad field 'keys'", file);
			goto out;
		}
		v->wrapped.kdf.n = (uint64_t)nn;
		v->wrapped.kdf.r = (uint32_t)rr;
		v->wrapped.kdf.p = (uint32_t)pp;
		if (vbk_scrypt_check(&v->wrapped.kdf) < 0) {
			r = vbs_fail(-EPROTO, "config '%s': scrypt parameters out of range", file);
			goto out;
		}
		memcpy(v->wrapped.ct, blob, sizeof(v->wrapped.ct));
		memcpy(v->wrapped.tag, blob + sizeof(v->wrapped.ct), VBK_TAG_LEN);
	} else if (s && strcmp(s, "none") == 0) {
		v->encrypted = 0;
		if (!jstr(o, "id_key") || vbu_hex_decode(jstr(o, "id_key"), v->keys.id_key,
							 VBK_KEY_LEN) < 0) {
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

static int env_open(vbs_vault *v, int create)
{
	MDB_txn *txn = NULL;
	struct stat st;
	char file[4096];
	size_t map = MAP_MIN;
	/* Metas are synced by vbs_write itself, so that vbs_write_lazy can skip it. */
	unsigned flags = MDB_NOTLS | (v->readonly ? MDB_RDONLY : MDB_NOMETASYNC);
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
	if (!v->readonly)
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
		    (rc = mdb_dbi_open(txn, "idx", dflags, &v->dbi_idx)) ||
		    (rc = mdb_dbi_open(txn, "chunks", dflags, &v->dbi_chunks)))
			goto fail;
		if (!f1 && (rc = mdb_dbi_open(txn, VBS_DB_DMAPS, dflags, &v->dbi_dmaps)))
			goto fail;
		/* Lifecycle databases (jobs, pins, protect) came with the lifecycle commands: a
		 * writer creates them in vaults made before; a read-only opener goes without
		 * (dbi 0). */
		if ((rc = open_optional(v, txn, f1 ? "jobs" : VBS_DB_JOBS, &v->dbi_jobs)) ||
		    (rc = open_optional(v, txn, "pins", &v->dbi_pins)) ||
		    (rc = open_optional(v, txn, f1 ? "protect" : VBS_DB_PROTECT, &v->dbi_protect)) ||
		    (rc = open_optional(v, txn, "tails", &v->dbi_tails)))
			goto fail;
	}
	{
		MDB_stat ms;
		v->psize = mdb_env_stat(v->env, &ms) == 0 ? ms.ms_psize : 4096;
	}
	if (v->format >= 2 && v->unlocked) {
		int r = vbs_config_check(v, txn, create);
		if (r < 0) {
			mdb_txn_abort(txn);
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
		if ((r = config_bound(v, aad, sizeof(aad), &aad_len)) < 0 ||
		    (r = vbk_vaultkeys_wrap(&v->keys, pass, aad, aad_len, &v->wrapped)) < 0)
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
	vbs_guard_remove(v->env);
	mdb_env_close(v->env);
	v->env = NULL;
}

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

static void uuid_format(const uint8_t b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int j = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[b[i] >> 4];
		out[j++] = hex[b[i] & 15];
	}
	out[j] = '\0';
}

int vbs_vault_init(const char *path, const vbs_init_opts *opts, const char *pass)
{
	vbs_vault *v = NULL;
	json_object *cfg = NULL;
	struct stat st;
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
	if (config_path(path, file, sizeof(file)) < 0)
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", path);
	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return vbs_fail(-ENOTDIR, "cannot create vault '%s': not a directory", path);
		r = dir_is_empty(path);
		if (r < 0)
			return vbs_fail(r, "cannot create vault '%s': %s", path, vbu_strerror(-r));
		if (!r)
			return vbs_fail(-EEXIST, "cannot create vault '%s': directory is not empty",
					path);
	} else if (errno != ENOENT) {
		return vbs_fail(-errno, "cannot create vault '%s': %s", path, vbu_strerror(errno));
	} else {
		if (mkdir(path, 0700) < 0)
			return vbs_fail(-errno, "cannot create vault '%s': %s", path,
					vbu_strerror(errno));
		made_dir = 1;
	}

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
	uuid_format(u, v->uuid);
	if ((r = vbk_vaultkeys_generate(&v->keys)) < 0)
		goto crypto_fail;
	if (v->encrypted) {
		if ((r = config_bound(v, aad, sizeof(aad), &aad_len)) < 0 ||
		    (r = vbk_vaultkeys_wrap(&v->keys, pass, aad, aad_len, &v->wrapped)) < 0)
			goto crypto_fail;
	}
	if ((r = setup_macs(v)) < 0)
		goto crypto_fail;
	v->unlocked = 1;
	cfg = config_json(v);
	{
		const char *text =
		    cfg ? json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PRETTY) : NULL;
		char *withnl = NULL;
		size_t len = text ? strlen(text) : 0;

		if (text)
			withnl = malloc(len + 2);
		if (!withnl) {
			r = vbs_fail(-ENOMEM, "out of memory");
			goto out;
		}
		memcpy(withnl, text, len);
		withnl[len] = '\n';
		/* The config is linked into place, never renamed over: of concurrent inits of
		 * one directory exactly one gets it, and the others fail without touching
		 * it. Only the winner owns the directory's files afterwards. */
		r = vbu_write_file_new(file, withnl, len + 1, 0600);
		free(withnl);
		if (r == -EEXIST) {
			vbs_fail(r, "cannot create vault '%s': another init created it first", path);
			made_dir = 0;
			goto out;
		}
		/* Set on any other failure too: one after the link (the directory's fsync)
		 * leaves the file in place, and it is ours to remove. */
		wrote_cfg = 1;
		if (r < 0) {
			vbs_fail(r, "cannot write '%s': %s", file, vbu_strerror(-r));
			goto out;
		}
	}
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
	if (r < 0 && wrote_cfg) {
		/* Only after our config went in is the directory ours: before, its files may be
		 * another init's. */
		char f[4200];
		unlink(file);
		snprintf(f, sizeof(f), "%s/data.mdb", path);
		unlink(f);
		snprintf(f, sizeof(f), "%s/lock.mdb", path);
		unlink(f);
	}
	if (r < 0 && made_dir)
		rmdir(path); /* fails, as it should, when another init has put files in it */
	return r;
}

int vbs_vault_open(const char *path, int readonly, vbs_vault **ret)
{
	vbs_vault *v = NULL;
	struct stat st;
	char file[4096], *text = NULL;
	size_t len;
	int r;

	vbs_clear_err();
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
	r = 0;
out:
	free(text);
	vbs_vault_close(v);
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
	if ((r = config_bound(v, aad, sizeof(aad), &aad_len)) < 0)
		return vbs_fail(r, "vault '%s': bad uuid", v->path);
	r = vbk_vaultkeys_unwrap(&v->wrapped, pass, aad, aad_len, &v->keys);
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
	vbs_cache_free(v->cache);
	vbs_gcache_free(v->gcache);
	vbk_hmac_free(v->id_mac);
	vbk_hmac_free(v->key_mac);
	vbk_hmac_free(v->name_mac);
	vbk_hmac_free(v->idx_mac);
	vbk_wipe(v->meta_key, sizeof(v->meta_key));
	vbk_vaultkeys_wipe(&v->keys);
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

static uint64_t free_pages(MDB_txn *txn)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t n = 0;

	/* The free list is database 0: values are arrays of page numbers, count first. */
	if (mdb_cursor_open(txn, 0, &c))
		return 0;
	while (mdb_cursor_get(c, &k, &d, MDB_NEXT) == 0)
		if (d.mv_size >= sizeof(size_t))
			n += *(const size_t *)d.mv_data;
	mdb_cursor_close(c);
	return n;
}

int vbs_vault_stats_get(vbs_vault *v, vbs_vault_stats *ret)
{
	vbs_vault_stats s = {0};
	MDB_txn *txn;
	MDB_stat ms;
	MDB_envinfo info;
	MDB_val k = {6, (void *)"chunks"}, d;
	struct stat st;
	char file[4200];
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	if (mdb_get(txn, v->dbi_meta, &k, &d) == 0 && d.mv_size == 24) {
		s.chunks = vbs_get64(d.mv_data);
		s.chunk_bytes = vbs_get64((uint8_t *)d.mv_data + 8);
		s.chunk_raw_bytes = vbs_get64((uint8_t *)d.mv_data + 16);
	}
	if (mdb_stat(txn, v->dbi_vms, &ms) == 0)
		s.vms = ms.ms_entries;
	if (mdb_stat(txn, v->dbi_rps, &ms) == 0)
		s.rps = ms.ms_entries;
	mdb_env_info(v->env, &info);
	s.map_bytes = info.me_mapsize;
	mdb_env_stat(v->env, &ms);
	s.free_bytes = free_pages(txn) * ms.ms_psize;
	vbs_read_end(v, txn);

	r = vbs_rp_sum_sizes(v, &s.logical_bytes, &s.data_bytes);
	if (r < 0)
		return r;
	snprintf(file, sizeof(file), "%s/data.mdb", v->path);
	if (stat(file, &st) == 0) {
		s.file_bytes = (uint64_t)st.st_size;
		if (s.file_bytes > (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize)
			s.free_bytes += s.file_bytes - (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
	}
	*ret = s;
	return 0;
}
