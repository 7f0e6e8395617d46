/* jobs.c: the job history (see jobs.h). */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "jobs_db.h"
#include "jobs.h"
#include "json.h"
#include "seal.h"
#include "util.h"

#define RECORD_MAX (64u << 10)

static const char *const state_names[] = {"running", "completed", "failed", "killed"};

const char *vbs_job_state_name(vbs_job_state s)
{
	return (unsigned)s < VBU_ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

static int state_parse(const char *s, vbs_job_state *ret)
{
	for (size_t i = 0; i < VBU_ARRAY_SIZE(state_names); i++)
		if (strcmp(s, state_names[i]) == 0) {
			*ret = (vbs_job_state)i;
			return 0;
		}
	return -EBADMSG;
}

static void boot_id(char buf[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	buf[0] = '\0';
	if (!f)
		return;
	if (!fgets(buf, 40, f))
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/* Field 22 of /proc/PID/stat (starttime); 0 when unreadable. The command name (field 2) may
 * hold spaces and parentheses: fields are counted after its last ')'. */
static uint64_t proc_start(int32_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long t = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* After ")": field 3 (state) ... field 22 (starttime): skip 19 fields. */
	p++;
	for (int i = 0; i < 19 && p; i++) {
		p = strchr(p + 1, ' ');
	}
	if (!p || sscanf(p, " %llu", &t) != 1)
		return 0;
	return t;
}

int vbs_process_alive(int32_t pid, uint64_t pid_start, const char *boot)
{
	char now[40];

	if (pid <= 0)
		return 0;
	boot_id(now);
	if (boot && boot[0] && now[0] && strcmp(boot, now) != 0)
		return 0;
	return proc_start(pid) == pid_start && pid_start != 0;
}

/* ---- records ---- */

static int job_encode(const vbs_job *j, char **ret, size_t *ret_len)
{
	json_object *o = json_object_new_object();
	const char *s;
	int r = 0;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "kind", json_object_new_string(j->kind));
	json_object_object_add(o, "target", json_object_new_string(j->target));
	json_object_object_add(o, "start", json_object_new_int64(j->start_ns));
	json_object_object_add(o, "end", json_object_new_int64(j->end_ns));
	json_object_object_add(o, "state", json_object_new_string(vbs_job_state_name(j->state)));
	json_object_object_add(o, "pid", json_object_new_int64(j->pid));
	json_object_object_add(o, "pid_start", json_object_new_int64((int64_t)j->pid_start));
	json_object_object_add(o, "boot_id", json_object_new_string(j->boot_id));
	json_object_object_add(o, "bytes_read", json_object_new_int64((int64_t)j->bytes_read));
	json_object_object_add(o, "bytes_stored", json_object_new_int64((int64_t)j->bytes_stored));
	json_object_object_add(o, "error", json_object_new_string(j->error));
	if (j->steps[0])
		json_object_object_add(o, "steps", json_object_new_string(j->steps));
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (!s || !(*ret = strdup(s)))
		r = -ENOMEM;
	else
		*ret_len = strlen(s);
	json_object_put(o);
	return r;
}

int vbs_job_seal(vbs_vault *v, const vbs_job *j, uint8_t **ret, size_t *ret_len)
{
	uint8_t key[8];
	char *rec = NULL;
	size_t len = 0;
	int r = job_encode(j, &rec, &len);

	if (r < 0)
		return r;
	vbs_put64(key, j->id);
	r = vbs_seal(v, VBS_DB_JOBS, key, 8, rec, len, ret, ret_len);
	free(rec);
	return r;
}

void vbs_job_self(int32_t *ret_pid, uint64_t *ret_start, char ret_boot[40])
{
	*ret_pid = (int32_t)getpid();
	*ret_start = proc_start(*ret_pid);
	boot_id(ret_boot);
}

int vbs_job_decode_raw(uint64_t id, const void *data, size_t len, vbs_job *ret)
{
	json_tokener *tok;
	json_object *o;
	vbs_job j = {.id = id};
	char state[16];
	int64_t pid;
	int r = -EBADMSG;

	if (len == 0 || len > RECORD_MAX)
		return -EBADMSG;
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, data, (int)len);
	if (!o || !json_object_is_type(o, json_type_object))
		goto out;
	if (vbu_json_copy_str(o, "kind", j.kind, sizeof(j.kind)) ||
	    vbu_json_copy_str(o, "target", j.target, sizeof(j.target)) ||
	    vbu_json_copy_str(o, "state", state, sizeof(state)) || state_parse(state, &j.state) ||
	    vbu_json_copy_str(o, "boot_id", j.boot_id, sizeof(j.boot_id)) ||
	    vbu_json_copy_str(o, "error", j.error, sizeof(j.error)) ||
	    vbu_json_int(o, "start", INT64_MIN, INT64_MAX, &j.start_ns) ||
	    vbu_json_int(o, "end", INT64_MIN, INT64_MAX, &j.end_ns) ||
	    vbu_json_int(o, "pid", 0, INT32_MAX, &pid) ||
	    vbu_json_u64(o, "pid_start", &j.pid_start) ||
	    vbu_json_u64(o, "bytes_read", &j.bytes_read) ||
	    vbu_json_u64(o, "bytes_stored", &j.bytes_stored))
		goto out;
	/* Optional: records of other kinds, and those written before it existed, have none. */
	if (json_object_object_get_ex(o, "steps", NULL) &&
	    vbu_json_copy_str(o, "steps", j.steps, sizeof(j.steps)))
		goto out;
	j.pid = (int32_t)pid;
	*ret = j;
	r = 0;
out:
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int vbs_job_unseal(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		   vbs_job *ret)
{
	uint8_t *rec = NULL;
	size_t len = 0;
	int r;

	if (klen != 8)
		return -EBADMSG;
	r = vbs_unseal(v, VBS_DB_JOBS, key, klen, val, vlen, &rec, &len);
	if (r == 0)
		r = vbs_job_decode_raw(vbs_get64(key), rec, len, ret);
	vbs_unsealed_free(rec, len);
	return r;
}

int vbs_job_load(vbs_vault *v, MDB_txn *txn, uint64_t id, vbs_job *ret)
{
	uint8_t key[8];
	MDB_val k = {8, key}, d;
	int rc;

	if (!v->dbi_jobs)
		return -ENOENT;
	vbs_put64(key, id);
	rc = mdb_get(txn, v->dbi_jobs, &k, &d);
	if (rc)
		return vbs_mdb_err(rc);
	return vbs_job_unseal(v, key, 8, d.mv_data, d.mv_size, ret);
}

static int job_store(vbs_vault *v, MDB_txn *txn, const vbs_job *j)
{
	uint8_t key[8];
	char *rec = NULL;
	size_t len = 0;
	int r = job_encode(j, &rec, &len);

	if (r < 0)
		return r;
	vbs_put64(key, j->id);
	r = vbs_sput(v, txn, v->dbi_jobs, VBS_DB_JOBS, key, 8, rec, len, 0);
	free(rec);
	return r;
}

/* The state readers see: a running job whose process is gone has failed. */
static void job_settle(vbs_job *j)
{
	if (j->state == VBS_JOB_RUNNING && !vbs_process_alive(j->pid, j->pid_start, j->boot_id)) {
		j->state = VBS_JOB_FAILED;
		snprintf(j->error, sizeof(j->error), "process died");
	}
}

static int check_word(const char *kind)
{
	size_t n = strlen(kind);

	if (n == 0 || n >= VBS_JOB_KIND_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((kind[i] >= 'a' && kind[i] <= 'z') || kind[i] == '-'))
			return 0;
	return 1;
}

static int need_jobs(vbs_vault *v)
{
	if (!v->env)
		return vbs_fail(-EINVAL, "vault '%s' is not open", v->path);
	if (!v->dbi_jobs)
		return vbs_fail(-EROFS, "vault '%s' has no job history yet", v->path);
	return 0;
}

/* ---- begin, progress, end ---- */

struct begin_ctx {
	vbs_job j;
};

static int begin_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct begin_ctx *c = arg;
	MDB_cursor *cur;
	MDB_val k, d;
	int rc;

	rc = mdb_cursor_open(txn, v->dbi_jobs, &cur);
	if (rc)
		return vbs_mdb_err(rc);
	rc = mdb_cursor_get(cur, &k, &d, MDB_LAST);
	c->j.id = 1;
	if (rc == 0 && k.mv_size == 8)
		c->j.id = vbs_get64(k.mv_data) + 1;
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return vbs_mdb_err(rc);
	return job_store(v, txn, &c->j);
}

int vbs_job_begin(vbs_vault *v, const char *kind, const char *target, uint64_t *ret_id)
{
	struct begin_ctx c = {{0}};
	int r;

	vbs_clear_err();
	if ((r = need_jobs(v)) < 0)
		return r;
	if (!check_word(kind))
		return vbs_fail(-EINVAL, "invalid job kind '%s'", kind);
	if (!target)
		target = "";
	if (strlen(target) >= sizeof(c.j.target))
		return vbs_fail(-EINVAL, "job target '%s' is too long", target);
	snprintf(c.j.kind, sizeof(c.j.kind), "%s", kind);
	snprintf(c.j.target, sizeof(c.j.target), "%s", target);
	c.j.start_ns = vbu_now_ns();
	c.j.state = VBS_JOB_RUNNING;
	c.j.pid = (int32_t)getpid();
	c.j.pid_start = proc_start(c.j.pid);
	boot_id(c.j.boot_id);
	r = vbs_write(v, begin_fn, &c);
	if (r < 0)
		return r;
	*ret_id = c.j.id;
	return 0;
}

struct end_ctx {
	uint64_t id;
	int end; /* 0: progress only */
	vbs_job_state state;
	uint64_t bytes_read, bytes_stored;
	const char *error, *steps;
};

static int end_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct end_ctx *c = arg;
	vbs_job j;
	int r = vbs_job_load(v, txn, c->id, &j);

	if (r == -ENOENT)
		return vbs_fail(r, "vault '%s' has no job %llu", v->path,
				(unsigned long long)c->id);
	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged record of job %llu", v->path,
				(unsigned long long)c->id);
	if (j.state != VBS_JOB_RUNNING)
		return -EALREADY;
	j.bytes_read = c->bytes_read;
	j.bytes_stored = c->bytes_stored;
	if (c->end) {
		j.state = c->state;
		j.end_ns = vbu_now_ns();
		snprintf(j.error, sizeof(j.error), "%s", c->error ? c->error : "");
		snprintf(j.steps, sizeof(j.steps), "%s", c->steps ? c->steps : "");
	}
	return job_store(v, txn, &j);
}

int vbs_job_progress(vbs_vault *v, uint64_t id, uint64_t bytes_read, uint64_t bytes_stored)
{
	struct end_ctx c = {id, 0, VBS_JOB_RUNNING, bytes_read, bytes_stored, NULL, NULL};
	int r = need_jobs(v);

	return r < 0 ? r : vbs_write(v, end_fn, &c);
}

int vbs_job_end(vbs_vault *v, uint64_t id, vbs_job_state state, uint64_t bytes_read,
		uint64_t bytes_stored, const char *error)
{
	return vbs_job_end_steps(v, id, state, bytes_read, bytes_stored, error, NULL);
}

int vbs_job_end_steps(vbs_vault *v, uint64_t id, vbs_job_state state, uint64_t bytes_read,
		      uint64_t bytes_stored, const char *error, const char *steps)
{
	struct end_ctx c = {id, 1, state, bytes_read, bytes_stored, error, steps};
	int r = need_jobs(v);

	if (r < 0)
		return r;
	if (state == VBS_JOB_RUNNING)
		return vbs_fail(-EINVAL, "a job cannot end as running");
	return vbs_write(v, end_fn, &c);
}

/* ---- reading ---- */

int vbs_job_get(vbs_vault *v, uint64_t id, vbs_job *ret)
{
	MDB_txn *txn;
	vbs_job j;
	int r;

	vbs_clear_err();
	if (!v->dbi_jobs)
		return vbs_fail(-ENOENT, "vault '%s' has no job %llu", v->path,
				(unsigned long long)id);
	if ((r = vbs_read_begin(v, &txn)) < 0)
		return r;
	r = vbs_job_load(v, txn, id, &j);
	vbs_read_end(v, txn);
	if (r == -ENOENT)
		return vbs_fail(r, "vault '%s' has no job %llu", v->path, (unsigned long long)id);
	if (r < 0)
		return vbs_fail(r, "vault '%s': damaged record of job %llu", v->path,
				(unsigned long long)id);
	job_settle(&j);
	*ret = j;
	return 0;
}

int vbs_job_list(vbs_vault *v, size_t max, vbs_job **ret, size_t *ret_n)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, d;
	vbs_job *list = NULL;
	size_t n = 0, cap = 0;
	int r, rc;

	vbs_clear_err();
	if (!v->dbi_jobs) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if ((r = vbs_read_begin(v, &txn)) < 0)
		return r;
	rc = mdb_cursor_open(txn, v->dbi_jobs, &cur);
	if (rc) {
		r = vbs_mdb_err(rc);
		goto out;
	}
	/* Newest first, so that max cuts the oldest; reversed at the end. */
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_LAST); rc == 0 && (max == 0 || n < max);
	     rc = mdb_cursor_get(cur, &k, &d, MDB_PREV)) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			vbs_job *l = realloc(list, nc * sizeof(*l));
			if (!l) {
				r = -ENOMEM;
				goto out;
			}
			list = l;
			cap = nc;
		}
		if (vbs_job_unseal(v, k.mv_data, k.mv_size, d.mv_data, d.mv_size, &list[n]) < 0) {
			r = vbs_fail(-EBADMSG, "vault '%s': damaged job record", v->path);
			goto out;
		}
		job_settle(&list[n]);
		n++;
	}
	if (rc && rc != MDB_NOTFOUND) {
		r = vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
			     mdb_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < n / 2; i++) {
		vbs_job t = list[i];
		list[i] = list[n - 1 - i];
		list[n - 1 - i] = t;
	}
	*ret = list;
	*ret_n = n;
	list = NULL;
	r = 0;
out:
	mdb_cursor_close(cur);
	vbs_read_end(v, txn);
	free(list);
	return r;
}
