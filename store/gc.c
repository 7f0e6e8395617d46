/* gc.c: chunk pins and garbage collection (see gc.h for the protocol and why it is safe). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunkstore.h"
#include "gc.h"
#include "internal.h"
#include "pins.h"
#include "jobs_db.h"
#include "jobs.h"
#include "util.h"

#define PIN_KEY_LEN (8 + VBS_ID_LEN)
#define RELEASE_BATCH 8192
/* Ids (marked, or candidates) a slice of the mark holds: about 32 MiB of marks and 40 MiB of
 * candidates, whatever the size of the vault. */
#define MARK_SLICE (1u << 20)

static const char gc_key[] = "gc";

#ifdef VMBAK_TEST_HOOKS
void vbs_test_pause(const char *name)
{
	const char *path = getenv(name);
	char reached[4200];
	struct stat st;
	int fd;

	/* Test hook: with NAME=PATH in the environment, create PATH.reached and wait (up to a
	 * minute) until PATH exists. Lets tests force an interleaving of processes. */
	if (!path || !path[0])
		return;
	if (snprintf(reached, sizeof(reached), "%s.reached", path) >= (int)sizeof(reached))
		return;
	fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 6000 && stat(path, &st) < 0; i++)
		usleep(10000);
}

uint64_t vbs_test_slice(uint64_t per)
{
	const char *s = getenv("VMBAK_TEST_SLICE");
	char *end;
	unsigned long long n;

	if (!s || !s[0])
		return per;
	n = strtoull(s, &end, 10);
	return *end || n == 0 ? per : n;
}
#endif

static int pin_add(vbs_vault *v, MDB_txn *txn, uint64_t job, const uint8_t *id)
{
	uint8_t key[PIN_KEY_LEN];
	MDB_val k = {sizeof(key), key}, d = {0, NULL};

	vbs_put64(key, job);
	memcpy(key + 8, id, VBS_ID_LEN);
	return vbs_mdb_err(mdb_put(txn, v->dbi_pins, &k, &d, 0));
}

int vbs_pins_take(vbs_vault *v, MDB_txn *txn, void *arg)
{
	const vbs_pin_batch *b = arg;
	uint8_t *present;
	int r;

	if (!b->job || !v->dbi_pins)
		return vbs_fail(-EINVAL, "pinned chunk put without a job");
	/* All at once: a store over the network answers them in parallel. */
	present = malloc(b->ncheck ? b->ncheck : 1);
	if (!present)
		return vbs_fail(-ENOMEM, "out of memory");
	r = vbs_cs_exists(v, txn, b->ncheck, b->check, present);
	for (size_t i = 0; r >= 0 && i < b->ncheck; i++)
		if (!present[i])
			r = -ESTALE;
	free(present);
	if (r < 0)
		return r;
	for (size_t i = 0; i < b->ncheck; i++) {
		if ((r = pin_add(v, txn, b->job, b->check[i])) < 0)
			return vbs_fail(r, "cannot pin chunk in vault '%s': %s", v->path,
					vbu_strerror(-r));
	}
	for (size_t i = 0; i < b->n; i++)
		if ((r = pin_add(v, txn, b->job, b->items[i].id)) < 0)
			return vbs_fail(r, "cannot pin chunk in vault '%s': %s", v->path,
					vbu_strerror(-r));
	return 0;
}

/* The job of a live registered gc, or 0. */
static int gc_registered(vbs_vault *v, MDB_txn *txn, uint64_t *ret)
{
	uint64_t id = 0;
	vbs_job j;
	int r = vbs_get_u64(txn, v->dbi_meta, gc_key, sizeof(gc_key) - 1, &id);

	*ret = 0;
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	/* Without the keys (a replica receiving, replica.c) the record cannot be read: a gc
	 * registered counts as live, so pins stay for it to drop. */
	if (!v->unlocked) {
		*ret = id;
		return 0;
	}
	/* The job record decides: running and its process alive. */
	r = vbs_job_load(v, txn, id, &j);
	if (r == -ENOENT || r == -EBADMSG)
		return 0;
	if (r < 0)
		return r;
	if (j.state == VBS_JOB_RUNNING && vbs_process_alive(j.pid, j.pid_start, j.boot_id))
		*ret = id;
	return 0;
}

/* 1 when job has ended (or its process died, or it has no record). */
static int job_over(vbs_vault *v, MDB_txn *txn, uint64_t id)
{
	vbs_job j;
	int r = vbs_job_load(v, txn, id, &j);

	if (r == -ENOENT || r == -EBADMSG)
		return 1;
	if (r < 0)
		return r;
	return !(j.state == VBS_JOB_RUNNING && vbs_process_alive(j.pid, j.pid_start, j.boot_id));
}

/* Deletes up to max pins of job (all jobs that are over when job == 0); *ret_n: how many. */
static int drop_pins(vbs_vault *v, MDB_txn *txn, uint64_t job, size_t max, uint64_t *ret_n)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint8_t key[8];
	uint64_t cur = 0, n = 0;
	int over = 0, rc, r = 0;

	*ret_n = 0;
	rc = mdb_cursor_open(txn, v->dbi_pins, &c);
	if (rc)
		return vbs_mdb_err(rc);
	vbs_put64(key, job);
	k = (MDB_val){8, key};
	rc = mdb_cursor_get(c, &k, &d, job ? MDB_SET_RANGE : MDB_FIRST);
	while (rc == 0 && n < max) {
		uint64_t kj;

		if (k.mv_size != PIN_KEY_LEN) {
			r = -EBADMSG;
			break;
		}
		kj = vbs_get64(k.mv_data);
		if (job && kj != job)
			break;
		if (kj != cur || n == 0) {
			cur = kj;
			over = job ? 1 : job_over(v, txn, kj);
			if (over < 0) {
				r = over;
				break;
			}
		}
		if (!over) {
			/* Skip this live job's pins: seek to the next job. */
			if (kj == UINT64_MAX)
				break;
			vbs_put64(key, kj + 1);
			k = (MDB_val){8, key};
			rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
			continue;
		}
		rc = mdb_cursor_del(c, 0);
		if (rc)
			break;
		n++;
		/* After a delete the cursor stands on the next key: MDB_NEXT returns it. */
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	if (r < 0)
		return r;
	*ret_n = n;
	return 0;
}

struct release_ctx {
	uint64_t job;
	uint64_t n, total;
	int blocked;
};

static int release_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct release_ctx *c = arg;
	uint64_t gc;
	int r = gc_registered(v, txn, &gc);

	c->n = 0;
	c->blocked = 0;
	if (r < 0)
		return r;
	if (gc) {
		/* A gc may have marked before this job's point was committed: its pins stay
		 * until that gc ends (it drops them then). */
		c->blocked = 1;
		return 0;
	}
	return drop_pins(v, txn, c->job, RELEASE_BATCH, &c->n);
}

int vbs_pins_release(vbs_vault *v, uint64_t job)
{
	struct release_ctx c = {job, 0, 0, 0};
	int r;

	if (!v->dbi_pins || !job)
		return 0;
	do {
		r = vbs_write(v, release_fn, &c);
		if (r < 0)
			return r;
		c.total += c.n;
	} while (!c.blocked && c.n == RELEASE_BATCH);
	return 0;
}

/* ---- gc ---- */

struct reg_ctx {
	uint64_t job;
	int unregister;
	uint64_t dropped;
};

static int reg_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct reg_ctx *c = arg;
	uint8_t val[8];
	MDB_val k = {sizeof(gc_key) - 1, (void *)gc_key}, d = {8, val};
	uint64_t other, cur = 0;
	int r = gc_registered(v, txn, &other), rc;

	c->dropped = 0;
	if (r < 0)
		return r;
	if (c->unregister) {
		if (vbs_get_u64(txn, v->dbi_meta, gc_key, sizeof(gc_key) - 1, &cur) == 0 &&
		    cur == c->job) {
			rc = mdb_del(txn, v->dbi_meta, &k, NULL);
			if (rc)
				return vbs_mdb_err(rc);
		}
	} else {
		if (other && other != c->job)
			return vbs_fail(-EBUSY, "vault '%s': another gc (job %llu) is running",
					v->path, (unsigned long long)other);
		vbs_put64(val, c->job);
		rc = mdb_put(txn, v->dbi_meta, &k, &d, 0);
		if (rc)
			return vbs_mdb_err(rc);
	}
	return drop_pins(v, txn, 0, RELEASE_BATCH, &c->dropped);
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, VBS_ID_LEN);
}

struct cand {
	uint8_t id[VBS_ID_LEN];
	uint64_t len;
};

/* One slice of the mark: the ids of slice `slice` of `nslices` (internal.h) only. */
struct mark {
	uint8_t (*ids)[VBS_ID_LEN];
	size_t nids, capids;
	struct cand *cands;
	size_t ncands, capcands;
	uint64_t chunks;
	size_t slice, nslices;
};

static int mark_chunk(void *arg, const uint8_t id[VBS_ID_LEN], uint64_t stored_len)
{
	struct mark *m = arg;

	if (vbs_id_slice(id, m->nslices) != m->slice)
		return 0;
	m->chunks++;
	if (m->nids && bsearch(id, m->ids, m->nids, VBS_ID_LEN, cmp_id))
		return 0;
	if (m->ncands == m->capcands) {
		size_t nc = m->capcands ? m->capcands * 2 : 4096;
		struct cand *p = realloc(m->cands, nc * sizeof(*p));
		if (!p)
			return vbs_fail(-ENOMEM, "out of memory");
		m->cands = p;
		m->capcands = nc;
	}
	memcpy(m->cands[m->ncands].id, id, VBS_ID_LEN);
	m->cands[m->ncands++].len = stored_len;
	return 0;
}

/* How many slices the mark takes: from the index entries and the stored chunks, so that
 * neither the marks nor the candidates of one slice outgrow MARK_SLICE by much. */
static int mark_slices(vbs_vault *v, size_t *ret)
{
	MDB_txn *txn = NULL;
	vbs_cs_stats cs;
	MDB_stat st;
	int rc, r;

	if ((r = vbs_read_begin(v, &txn)) < 0)
		return r;
	rc = mdb_stat(txn, v->dbi_idx, &st);
	if (rc) {
		r = vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
			     mdb_strerror(rc));
		goto out;
	}
	if ((r = vbs_cs_stats_get(v, txn, &cs)) < 0)
		goto out;
	*ret = vbs_slices_for(st.ms_entries > cs.chunks ? st.ms_entries : cs.chunks,
			      vbs_test_slice(MARK_SLICE));
out:
	vbs_read_end(v, txn);
	return r;
}

static int mark_phase(vbs_vault *v, struct mark *m)
{
	MDB_txn *txn = NULL;
	MDB_cursor *c = NULL;
	MDB_val k, d;
	size_t w = 0;
	int rc, r, scan;

	if ((r = vbs_read_begin(v, &txn)) < 0)
		return r;
	scan = vbs_scan_begin(v, txn, v->dbi_idx);
	rc = mdb_cursor_open(txn, v->dbi_idx, &c);
	for (rc = rc ? rc : mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (d.mv_size == 0)
			continue; /* a hole */
		if (d.mv_size != VBS_ID_LEN) {
			r = vbs_fail(-EBADMSG, "vault '%s': damaged index entry", v->path);
			goto out;
		}
		if (vbs_id_slice(d.mv_data, m->nslices) != m->slice)
			continue;
		if (m->nids == m->capids) {
			size_t nc = m->capids ? m->capids * 2 : 65536;
			void *p = realloc(m->ids, nc * VBS_ID_LEN);
			if (!p) {
				r = vbs_fail(-ENOMEM, "out of memory");
				goto out;
			}
			m->ids = p;
			m->capids = nc;
		}
		memcpy(m->ids[m->nids++], d.mv_data, VBS_ID_LEN);
	}
	if (rc != MDB_NOTFOUND)
		goto mdb_fail;
	mdb_cursor_close(c);
	c = NULL;
	if (m->nids)
		qsort(m->ids, m->nids, VBS_ID_LEN, cmp_id);
	for (size_t i = 0; i < m->nids; i++)
		if (w == 0 || memcmp(m->ids[w - 1], m->ids[i], VBS_ID_LEN) != 0)
			memmove(m->ids[w++], m->ids[i], VBS_ID_LEN);
	m->nids = w;

	/* Every stored chunk, in whatever order the store lists them: the unmarked ones are
	 * candidates. A store may list chunks put after txn began: they are pinned (gc.h). */
	r = vbs_cs_iterate(v, txn, mark_chunk, m);
	goto out;
mdb_fail:
	r = vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path, mdb_strerror(rc));
out:
	mdb_cursor_close(c);
	vbs_scan_end(v, scan);
	vbs_read_end(v, txn);
	return r;
}

struct sweep_ctx {
	const struct cand *cands;
	size_t n;
	uint64_t freed, freed_bytes, pinned;
};

/* Distinct job ids holding pins, in txn. free() *ret. */
static int pin_jobs(vbs_vault *v, MDB_txn *txn, uint64_t **ret, size_t *ret_n)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t *jobs = NULL;
	size_t n = 0;
	uint8_t key[8];
	int rc, r = 0;

	rc = mdb_cursor_open(txn, v->dbi_pins, &c);
	if (rc)
		return vbs_mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE)) {
		uint64_t j;
		uint64_t *p;

		if (k.mv_size < 8) {
			r = -EBADMSG;
			break;
		}
		j = vbs_get64(k.mv_data);
		p = realloc(jobs, (n + 1) * sizeof(*p));
		if (!p) {
			r = -ENOMEM;
			break;
		}
		jobs = p;
		jobs[n++] = j;
		if (j == UINT64_MAX)
			break;
		vbs_put64(key, j + 1);
		k = (MDB_val){8, key};
	}
	mdb_cursor_close(c);
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	if (r < 0) {
		free(jobs);
		return r;
	}
	*ret = jobs;
	*ret_n = n;
	return 0;
}

static int sweep_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct sweep_ctx *c = arg;
	uint64_t *jobs = NULL;
	size_t njobs = 0;
	int r = pin_jobs(v, txn, &jobs, &njobs);

	c->freed = c->freed_bytes = c->pinned = 0;
	if (r < 0)
		return r;
	for (size_t i = 0; i < c->n && r >= 0; i++) {
		uint8_t key[PIN_KEY_LEN];
		MDB_val k = {sizeof(key), key}, d;
		int pinned = 0;
		uint64_t len = 0;

		memcpy(key + 8, c->cands[i].id, VBS_ID_LEN);
		for (size_t j = 0; j < njobs && !pinned; j++) {
			int rc;
			vbs_put64(key, jobs[j]);
			rc = mdb_get(txn, v->dbi_pins, &k, &d);
			if (rc == 0)
				pinned = 1;
			else if (rc != MDB_NOTFOUND)
				r = vbs_mdb_err(rc);
		}
		if (r < 0)
			break;
		if (pinned) {
			c->pinned++;
			continue;
		}
		r = vbs_cs_del(v, txn, c->cands[i].id, &len);
		if (r == -ENOENT) {
			r = 0;
			continue;
		}
		if (r >= 0) {
			c->freed++;
			c->freed_bytes += len;
		}
	}
	free(jobs);
	if (r < 0)
		return vbs_fail(r, "cannot delete chunks of vault '%s': %s", v->path,
				vbu_strerror(-r));
	return 0;
}

int vbs_gc(vbs_vault *v, uint64_t job_id, vbs_gc_stats *ret)
{
	struct reg_ctx reg = {0};
	struct mark m = {0};
	vbs_gc_stats s = {0};
	uint64_t own_job = 0;
	int r, registered = 0;

	vbs_clear_err();
	if (!v->dbi_pins || !v->dbi_jobs)
		return vbs_fail(-EROFS, "vault '%s' is open read-only", v->path);
	if (!job_id) {
		r = vbs_job_begin(v, "gc", "", &own_job);
		if (r < 0)
			return r;
		job_id = own_job;
	}
	/* 1: register, and drop the pins of ended jobs (in batches). */
	reg.job = job_id;
	do {
		r = vbs_write(v, reg_fn, &reg);
		if (r < 0)
			goto out;
		registered = 1;
		s.pins_released += reg.dropped;
	} while (reg.dropped == RELEASE_BATCH);
	vbs_test_pause("VMBAK_TEST_PAUSE_GC_MARK");
	/* 2 and 3, one slice of the id space at a time, so that memory stays bounded however
	 * many chunks the vault holds. Each slice is a mark and sweep of its own (its own
	 * snapshot, begun after step 1), and gc.h's argument holds for each. */
	r = mark_slices(v, &m.nslices);
	if (r < 0)
		goto out;
	for (m.slice = 0; m.slice < m.nslices; m.slice++) {
		/* 2: mark. */
		m.nids = m.ncands = 0;
		m.chunks = 0;
		r = mark_phase(v, &m);
		if (r < 0)
			goto out;
		s.chunks += m.chunks;
		s.referenced += m.chunks - m.ncands;
		vbs_test_pause("VMBAK_TEST_PAUSE_GC_SWEEP");
		/* 3: sweep, in short transactions. */
		for (size_t i = 0; i < m.ncands; i += VBS_GC_BATCH) {
			struct sweep_ctx c = {m.cands + i, m.ncands - i < VBS_GC_BATCH
								? m.ncands - i
								: VBS_GC_BATCH};
			r = vbs_write(v, sweep_fn, &c);
			if (r < 0)
				goto out;
			s.freed += c.freed;
			s.freed_bytes += c.freed_bytes;
			s.pinned += c.pinned;
		}
	}
	r = 0;
out:
	if (registered) {
		/* 4: unregister, drop the pins of jobs that ended meanwhile. */
		int r2;
		reg.unregister = 1;
		do {
			r2 = vbs_write(v, reg_fn, &reg);
			s.pins_released += r2 >= 0 ? reg.dropped : 0;
		} while (r2 >= 0 && reg.dropped == RELEASE_BATCH);
		if (r == 0 && r2 < 0)
			r = r2;
	}
	if (own_job) {
		char msg[VBS_JOB_ERROR_MAX];
		snprintf(msg, sizeof(msg), "%s", r < 0 ? vbs_errmsg() : "");
		vbs_job_end(v, own_job, r < 0 ? VBS_JOB_FAILED : VBS_JOB_COMPLETED, 0, 0, msg);
	}
	free(m.ids);
	free(m.cands);
	if (r < 0)
		return r;
	if (ret)
		*ret = s;
	return 0;
}
