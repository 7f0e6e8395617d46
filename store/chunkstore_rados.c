/* chunkstore_rados.c: chunk frames as objects of a Ceph RADOS pool (the chunk store of
 * chunkstore.h), for vaults made with `vmbak init --chunks rados:POOL`. This file alone names,
 * reads and writes them:
 *
 *   object   in the vault's pool and namespace (config "chunks": by default the namespace is
 *            the vault's uuid, so vaults share a pool): named by the chunk id in lowercase hex
 *            (64 characters), holding the whole frame (chunk.h) as its data; no xattrs, no omap
 *   meta     "rados-chunks" -> u64 count, u64 stored bytes, u64 plaintext bytes (vbs_cs_stats),
 *            in the vault's LMDB, as chunkstore_lmdb.c keeps its own
 *
 * Everything else (indexes, points, pins) stays in LMDB. How the contract of chunkstore.h is
 * kept without transactions across the two:
 *   put      runs the hook (the ingest's pins) in its own LMDB write first, then writes every
 *            new frame with up to WINDOW writes in flight, each an exclusive create (a frame
 *            already stored is never rewritten), and returns once the cluster has acknowledged
 *            all of them. So the point that names them commits after they are durable, and
 *            gc, which skips pinned chunks in the write that deletes them, cannot delete a
 *            chunk between its write and its pin (there is no such moment). A put that fails
 *            after its hook leaves pins (dropped when its job ends, gc.h) and maybe objects
 *            nothing refers to (listed by iterate, removed by gc).
 *   readers  objects have no snapshots: del first waits until every LMDB read transaction older
 *            than the last commit has ended (READER_WAIT at most), so a reader that found a
 *            point before its deletion committed finishes reading it (chunkstore.h, gc.h).
 *   stats    kept in LMDB with the puts (after the objects are acknowledged) and deletes (of
 *            objects that hold a frame header): a process killed between a put's objects and
 *            its count leaves them low by that batch (and lower once gc deletes those). They are
 *            for `vmbak info`; nothing decides on them.
 * Reads are asynchronous: vbs_cs_hint (a read of several chunks, the mount's read-ahead) starts
 * up to AHEAD_MAX reads at once, and a get of one of them waits for that read instead of
 * starting another. A cluster that does not answer is an error after the timeouts of the client's
 * config (rados_osd_op_timeout, rados_mon_op_timeout, client_mount_timeout), TIMEOUT_DEFAULT
 * seconds where the config leaves them unlimited: never a hang. The connection is made on first use
 * (listing points needs no cluster), at once for a new vault (init checks pool and cluster).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chunkstore.h"
#include "rados_dl.h"
#include "util.h"

#define TIMEOUT_DEFAULT "10"
#define WINDOW 128	 /* requests in flight per put or exists */
#define READER_WAIT_S 30 /* del: how long old readers are waited for */
#define OID_LEN (2 * VBS_ID_LEN + 1)
#define AHEAD_MAX 64 /* reads started by vbs_cs_hint and not yet claimed by a get */

/* A read started ahead (hint): get of the same id takes it over instead of reading again. */
struct ahead {
	int used;
	uint8_t id[VBS_ID_LEN];
	rados_completion_t c;
	uint8_t *buf; /* frame_max + 1 bytes */
};

struct rados_cs {
	pthread_mutex_t lock; /* connecting */
	int connected;
	rados_t cluster;
	rados_ioctx_t io;
	size_t frame_max;
	/* del, by the one writer: the write transaction that already waited for old readers, and
	 * whether a wait ran out (a reader that old is not waited for again). */
	size_t waited_txn;
	int wait_gave_up;
	pthread_mutex_t ahead_lock;
	struct ahead ahead[AHEAD_MAX];
};

static const char stats_key[] = "rados-chunks";

static struct rados_cs *cs_of(const vbs_vault *v)
{
	return v->cs_state;
}

static void oid_of(const uint8_t id[VBS_ID_LEN], char oid[OID_LEN])
{
	vbu_hex_encode(id, VBS_ID_LEN, oid);
}

/* Where the cluster is, for messages. */
static const char *conf_shown(const vbs_vault *v)
{
	return v->chunks.conf ? v->chunks.conf : "the default ceph config";
}

/* Sets opt to val unless the config set it to something other than unset (0 or dflt). */
static int conf_default(rados_t cl, const char *opt, const char *val, double dflt)
{
	char buf[64];
	double cur;

	if (sym_rados_conf_get(cl, opt, buf, sizeof(buf)) == 0) {
		cur = strtod(buf, NULL);
		if (cur != 0 && cur != dflt)
			return 0;
	}
	return sym_rados_conf_set(cl, opt, val);
}

static int cs_connect_locked(vbs_vault *v, struct rados_cs *cs)
{
	rados_t cl = NULL;
	rados_ioctx_t io = NULL;
	char mon[64];
	int r;

	/* Loaded here, not at start-up: listing points needs no librados. */
	r = vbs_dlopen_rados();
	if (r < 0)
		return r;
	r = sym_rados_create(&cl, v->chunks.id);
	if (r < 0)
		return vbs_fail(r, "cannot start librados: %s", vbu_strerror(-r));
	r = sym_rados_conf_read_file(cl, v->chunks.conf);
	if (r < 0 && (v->chunks.conf || r != -ENOENT)) {
		vbs_fail(r, "cannot read ceph config '%s': %s", conf_shown(v), vbu_strerror(-r));
		goto fail;
	}
	sym_rados_conf_parse_env(cl, NULL);
	/* Our one line on stderr says what failed; librados's own log stays out of it. */
	sym_rados_conf_set(cl, "log_to_stderr", "false");
	sym_rados_conf_set(cl, "err_to_stderr", "false");
	sym_rados_conf_set(cl, "log_to_file", "false");
	if (conf_default(cl, "rados_osd_op_timeout", TIMEOUT_DEFAULT, 0) < 0 ||
	    conf_default(cl, "rados_mon_op_timeout", TIMEOUT_DEFAULT, 0) < 0 ||
	    sym_rados_conf_get(cl, "rados_mon_op_timeout", mon, sizeof(mon)) < 0 ||
	    conf_default(cl, "client_mount_timeout", mon, 300) < 0) {
		vbs_fail(-EINVAL, "cannot set the ceph client's timeouts");
		r = -EINVAL;
		goto fail;
	}
	r = sym_rados_connect(cl);
	if (r < 0) {
		vbs_fail(r, "cannot connect to the ceph cluster of %s: %s", conf_shown(v),
			 vbu_strerror(-r));
		goto fail;
	}
	r = sym_rados_ioctx_create(cl, v->chunks.pool, &io);
	if (r == -ENOENT) {
		vbs_fail(r, "ceph pool '%s' does not exist", v->chunks.pool);
		goto fail;
	}
	if (r < 0) {
		vbs_fail(r, "cannot open ceph pool '%s': %s", v->chunks.pool, vbu_strerror(-r));
		goto fail;
	}
	sym_rados_ioctx_set_namespace(io, v->chunks.ns);
	cs->cluster = cl;
	cs->io = io;
	cs->connected = 1;
	return 0;
fail:
	sym_rados_shutdown(cl);
	return r;
}

/* Connects on first use; a failed attempt is tried again by the next call. Thread-safe. */
static int cs_connect(vbs_vault *v)
{
	struct rados_cs *cs = cs_of(v);
	int r = 0;

	if (__atomic_load_n(&cs->connected, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&cs->lock);
	if (!cs->connected)
		r = cs_connect_locked(v, cs);
	pthread_mutex_unlock(&cs->lock);
	return r;
}

static int io_fail(vbs_vault *v, int r, const char *what, const uint8_t *id)
{
	char oid[OID_LEN];

	oid_of(id, oid);
	if (r == -ETIMEDOUT)
		return vbs_fail(r,
				"cannot %s chunk %.16s in ceph pool '%s': the cluster did not "
				"answer in time",
				what, oid, v->chunks.pool);
	return vbs_fail(r, "cannot %s chunk %.16s in ceph pool '%s': %s", what, oid, v->chunks.pool,
			vbu_strerror(-r));
}

static int rados_get(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
		     vbs_frame_fn fn, void *arg)
{
	struct rados_cs *cs = cs_of(v);
	rados_completion_t c = NULL;
	char oid[OID_LEN];
	uint8_t *buf = NULL;
	int r;

	if ((r = cs_connect(v)) < 0)
		return r;
	pthread_mutex_lock(&cs->ahead_lock);
	for (size_t i = 0; i < AHEAD_MAX && !c; i++) {
		struct ahead *a = &cs->ahead[i];
		if (a->used && memcmp(a->id, id, VBS_ID_LEN) == 0) {
			c = a->c;
			buf = a->buf;
			a->used = 0;
		}
	}
	pthread_mutex_unlock(&cs->ahead_lock);
	if (c) {
		sym_rados_aio_wait_for_complete(c);
		r = sym_rados_aio_get_return_value(c);
		goto done;
	}
	/* One byte more than any frame: an object that fills it is damaged. */
	buf = malloc(cs->frame_max + 1);
	if (!buf)
		return -ENOMEM;
	oid_of(id, oid);
	r = sym_rados_aio_create_completion2(NULL, NULL, &c);
	if (r == 0)
		r = sym_rados_aio_read(cs->io, oid, c, (char *)buf, cs->frame_max + 1, 0);
	if (r == 0) {
		sym_rados_aio_wait_for_complete(c);
		r = sym_rados_aio_get_return_value(c);
	}
done:
	if (c)
		sym_rados_aio_release(c);
	if (r == -ENOENT)
		;
	else if (r < 0)
		r = io_fail(v, r, "read", id);
	else if ((size_t)r > cs->frame_max || r == 0)
		r = -EBADMSG;
	else
		r = fn(arg, buf, (size_t)r);
	free(buf);
	return r;
}

/* Frees a read started ahead; waits for it first (librados still writes into buf until then). */
static void ahead_free(struct ahead *a)
{
	sym_rados_aio_wait_for_complete(a->c);
	sym_rados_aio_release(a->c);
	free(a->buf);
	a->used = 0;
}

/* Starts reads of the hinted chunks that are not on their way yet, into free places of the
 * table; a place whose read has completed but was never claimed is reused. No waiting here:
 * when every place holds a read still in flight, the rest of the hint is dropped. */
static void rados_hint(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN])
{
	struct rados_cs *cs = cs_of(v);

	if (!__atomic_load_n(&cs->connected, __ATOMIC_ACQUIRE))
		return; /* the first get connects; a hint never waits for that */
	pthread_mutex_lock(&cs->ahead_lock);
	for (size_t k = 0; k < n; k++) {
		struct ahead *slot = NULL;
		char oid[OID_LEN];
		int dup = 0;

		for (size_t i = 0; i < AHEAD_MAX && !dup; i++)
			dup = cs->ahead[i].used && memcmp(cs->ahead[i].id, ids[k], VBS_ID_LEN) == 0;
		if (dup)
			continue;
		for (size_t i = 0; i < AHEAD_MAX && !slot; i++)
			if (!cs->ahead[i].used)
				slot = &cs->ahead[i];
		for (size_t i = 0; i < AHEAD_MAX && !slot; i++)
			if (sym_rados_aio_is_complete(cs->ahead[i].c)) {
				ahead_free(&cs->ahead[i]);
				slot = &cs->ahead[i];
			}
		if (!slot)
			break;
		slot->buf = malloc(cs->frame_max + 1);
		if (!slot->buf)
			break;
		if (sym_rados_aio_create_completion2(NULL, NULL, &slot->c) < 0) {
			free(slot->buf);
			break;
		}
		oid_of(ids[k], oid);
		if (sym_rados_aio_read(cs->io, oid, slot->c, (char *)slot->buf, cs->frame_max + 1,
				       0) < 0) {
			sym_rados_aio_release(slot->c);
			free(slot->buf);
			break;
		}
		memcpy(slot->id, ids[k], VBS_ID_LEN);
		slot->used = 1;
	}
	pthread_mutex_unlock(&cs->ahead_lock);
}

/* Objects have no per-reader state worth a handle: every reader shares the store's. */
static int rados_reader_open(vbs_vault *v, vbs_cs_reader **ret)
{
	return -EOPNOTSUPP;
}

static void rados_reader_close(vbs_cs_reader *rd)
{
}

static int rados_exists(vbs_vault *v, MDB_txn *txn, size_t n, const uint8_t (*ids)[VBS_ID_LEN],
			uint8_t *present)
{
	struct rados_cs *cs = cs_of(v);
	rados_completion_t c[WINDOW];
	uint64_t size[WINDOW];
	time_t mtime[WINDOW];
	int r;

	if (n && (r = cs_connect(v)) < 0)
		return r;
	for (size_t i = 0; i < n; i += WINDOW) {
		size_t k = n - i < WINDOW ? n - i : WINDOW, issued = 0;
		int err = 0;

		for (; issued < k; issued++) {
			char oid[OID_LEN];

			oid_of(ids[i + issued], oid);
			if ((r = sym_rados_aio_create_completion2(NULL, NULL, &c[issued])) < 0) {
				err = r;
				break;
			}
			r = sym_rados_aio_stat(cs->io, oid, c[issued], &size[issued],
					       &mtime[issued]);
			if (r < 0) {
				sym_rados_aio_release(c[issued]);
				err = r;
				break;
			}
		}
		for (size_t j = 0; j < issued; j++) {
			sym_rados_aio_wait_for_complete(c[j]);
			r = sym_rados_aio_get_return_value(c[j]);
			sym_rados_aio_release(c[j]);
			present[i + j] = r == 0;
			if (r < 0 && r != -ENOENT && !err)
				err = io_fail(v, r, "look up", ids[i + j]);
		}
		if (err)
			return err;
	}
	return 0;
}

static int stats_add(vbs_vault *v, MDB_txn *txn, int64_t count, int64_t bytes, int64_t raw)
{
	return vbs_cs_count_add(v, txn, stats_key, count, bytes, raw);
}

struct stats_delta {
	uint64_t count, bytes, raw;
};

static int stats_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	const struct stats_delta *s = arg;
	int r = stats_add(v, txn, (int64_t)s->count, (int64_t)s->bytes, (int64_t)s->raw);

	return r < 0 ? vbs_fail(r, "cannot update chunk statistics of vault '%s'", v->path) : 0;
}

/* One write in flight: an exclusive create of the whole frame. */
struct wslot {
	rados_completion_t c;
	rados_write_op_t op;
	size_t item;
};

static int write_start(struct rados_cs *cs, const vbs_cs_item *it, size_t i, struct wslot *w)
{
	char oid[OID_LEN];
	int r;

	oid_of(it->id, oid);
	w->item = i;
	w->op = sym_rados_create_write_op();
	if (!w->op)
		return -ENOMEM;
	if ((r = sym_rados_aio_create_completion2(NULL, NULL, &w->c)) < 0) {
		sym_rados_release_write_op(w->op);
		return r;
	}
	sym_rados_write_op_create(w->op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	sym_rados_write_op_write_full(w->op, it->frame, it->len);
	r = sym_rados_aio_write_op_operate(w->op, cs->io, w->c, oid, NULL, 0);
	if (r < 0) {
		sym_rados_aio_release(w->c);
		sym_rados_release_write_op(w->op);
	}
	return r;
}

/* Waits for w: 1 written, 0 it was there already, else the error. */
static int write_end(struct wslot *w)
{
	int r;

	sym_rados_aio_wait_for_complete(w->c);
	r = sym_rados_aio_get_return_value(w->c);
	sym_rados_aio_release(w->c);
	sym_rados_release_write_op(w->op);
	if (r == -EEXIST)
		return 0;
	return r < 0 ? r : 1;
}

static int rados_put(vbs_vault *v, const vbs_cs_item *items, size_t n, int mode,
		     vbs_cs_hook_fn hook, void *hook_arg, uint64_t *ret_added,
		     uint64_t *ret_added_bytes)
{
	struct rados_cs *cs = cs_of(v);
	struct wslot w[WINDOW];
	struct stats_delta s = {0};
	size_t head = 0, tail = 0; /* items started, items finished; w is a ring */
	int r = 0, err = 0;

	if ((r = cs_connect(v)) < 0)
		return r;
	/* The hook (pins) first: see the top of this file. */
	if (hook) {
		r = mode == VBS_CS_LAZY ? vbs_write_lazy(v, hook, hook_arg)
					: vbs_write(v, hook, hook_arg);
		if (r < 0)
			return r;
	}
	while (tail < n) {
		while (!err && head < n && head - tail < WINDOW) {
			r = write_start(cs, &items[head], head, &w[head % WINDOW]);
			if (r < 0) {
				err = io_fail(v, r, "store", items[head].id);
				break;
			}
			head++;
		}
		if (tail == head)
			break;
		r = write_end(&w[tail % WINDOW]);
		if (r < 0 && !err)
			err = io_fail(v, r, "store", items[tail].id);
		if (r > 0) {
			s.count++;
			s.bytes += items[tail].len;
			s.raw += items[tail].plain_len;
		}
		tail++;
	}
	if (s.count) {
		r = mode == VBS_CS_LAZY ? vbs_write_lazy(v, stats_fn, &s)
					: vbs_write(v, stats_fn, &s);
		if (r < 0 && !err)
			err = r;
	}
	if (err)
		return err;
	*ret_added = s.count;
	*ret_added_bytes = s.bytes;
	return 0;
}

struct oldest {
	size_t below;
	int found;
};

/* One line of mdb_reader_list: "pid thread txnid", "-" for a slot outside a transaction. */
static int reader_line(const char *msg, void *arg)
{
	struct oldest *o = arg;
	unsigned long long t;
	size_t tid;
	int pid;

	if (sscanf(msg, "%d %zx %llu", &pid, &tid, &t) == 3 && t < o->below)
		o->found = 1;
	return 0;
}

/* Before the first delete of write transaction txn: waits until no reader of a snapshot older
 * than the last commit remains (see the top of this file). */
static void wait_old_readers(vbs_vault *v, struct rados_cs *cs, MDB_txn *txn)
{
	size_t id = mdb_txn_id(txn);
	int64_t deadline = vbu_mono_ns() + (int64_t)READER_WAIT_S * 1000000000;

	if (id == cs->waited_txn || cs->wait_gave_up)
		return;
	for (;;) {
		struct oldest o = {id - 1, 0};
		struct timespec ts = {0, 10000000};

		mdb_reader_check(v->env, NULL);
		mdb_reader_list(v->env, reader_line, &o);
		if (!o.found)
			break;
		if (vbu_mono_ns() > deadline) {
			cs->wait_gave_up = 1;
			break;
		}
		nanosleep(&ts, NULL);
	}
	cs->waited_txn = id;
}

static int rados_del(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], uint64_t *ret_len)
{
	struct rados_cs *cs = cs_of(v);
	rados_read_op_t op;
	char oid[OID_LEN];
	char hdr[VBS_FRAME_HDR];
	uint64_t size = 0;
	size_t got = 0;
	uint32_t plain = 0;
	int r, prv = 0, prv2 = 0;

	if ((r = cs_connect(v)) < 0)
		return r;
	wait_old_readers(v, cs, txn);
	oid_of(id, oid);
	/* Its size and header (for the statistics) in one request, then the removal. */
	op = sym_rados_create_read_op();
	if (!op)
		return -ENOMEM;
	sym_rados_read_op_stat(op, &size, NULL, &prv);
	sym_rados_read_op_read(op, 0, sizeof(hdr), hdr, &got, &prv2);
	r = sym_rados_read_op_operate(op, cs->io, oid, 0);
	sym_rados_release_read_op(op);
	if (r == -ENOENT)
		return r;
	if (r < 0)
		return io_fail(v, r, "look up", id);
	r = sym_rados_remove(cs->io, oid);
	if (r == -ENOENT)
		return r;
	if (r < 0)
		return io_fail(v, r, "delete", id);
	*ret_len = size;
	/* An object that is no frame was not put by a vault, so never counted. */
	if (vbs_frame_plain_len(hdr, got, &plain) < 0)
		return 0;
	return stats_add(v, txn, -1, -(int64_t)size, -(int64_t)plain);
}

/* Every object of the namespace named like a chunk, as the cluster lists them now (this
 * includes chunks put after txn began: pinned, gc.h). The stored size is not listed: 0. */
static int rados_iterate(vbs_vault *v, MDB_txn *txn, vbs_cs_iter_fn fn, void *arg)
{
	struct rados_cs *cs = cs_of(v);
	rados_list_ctx_t lc;
	const char *entry;
	uint8_t id[VBS_ID_LEN];
	int r, rr = 0;

	if ((r = cs_connect(v)) < 0)
		return r;
	r = sym_rados_nobjects_list_open(cs->io, &lc);
	if (r < 0)
		return vbs_fail(r, "cannot list ceph pool '%s': %s", v->chunks.pool,
				vbu_strerror(-r));
	while ((r = sym_rados_nobjects_list_next(lc, &entry, NULL, NULL)) == 0) {
		if (strlen(entry) != 2 * VBS_ID_LEN || vbu_hex_decode(entry, id, VBS_ID_LEN) < 0)
			continue; /* not ours: a pool is shared */
		if ((rr = fn(arg, id, 0)) != 0)
			break;
	}
	sym_rados_nobjects_list_close(lc);
	if (rr)
		return rr;
	if (r != -ENOENT)
		return vbs_fail(r, "cannot list ceph pool '%s': %s", v->chunks.pool,
				vbu_strerror(-r));
	return 0;
}

static int rados_stats(vbs_vault *v, MDB_txn *txn, vbs_cs_stats *ret)
{
	return vbs_cs_count_get(v, txn, stats_key, ret);
}

static void rados_close(void *state)
{
	struct rados_cs *cs = state;

	if (!cs)
		return;
	for (size_t i = 0; i < AHEAD_MAX; i++)
		if (cs->ahead[i].used)
			ahead_free(&cs->ahead[i]);
	pthread_mutex_destroy(&cs->ahead_lock);
	if (cs->connected) {
		sym_rados_ioctx_destroy(cs->io);
		sym_rados_shutdown(cs->cluster);
	}
	pthread_mutex_destroy(&cs->lock);
	free(cs);
}

static int rados_open(vbs_vault *v, MDB_txn *txn, int create, void **ret_state)
{
	struct rados_cs *cs = calloc(1, sizeof(*cs));
	int r;

	if (!cs)
		return vbs_fail(-ENOMEM, "out of memory");
	if (!v->chunks.rados || !v->chunks.pool || !v->chunks.ns) {
		free(cs);
		return vbs_fail(-EINVAL, "vault '%s': no ceph pool configured", v->path);
	}
	pthread_mutex_init(&cs->lock, NULL);
	pthread_mutex_init(&cs->ahead_lock, NULL);
	cs->frame_max = vbs_frame_max(v->chunk_size);
	v->cs_state = cs; /* cs_connect finds it there; vbs_cs_attach sets it again */
	if (create && (r = cs_connect(v)) < 0) {
		v->cs_state = NULL;
		rados_close(cs);
		return r;
	}
	*ret_state = cs;
	return 0;
}

const vbs_cs_ops vbs_cs_rados = {
    .name = "rados",
    .open = rados_open,
    .close = rados_close,
    .get = rados_get,
    .reader_open = rados_reader_open,
    .reader_close = rados_reader_close,
    .exists = rados_exists,
    .put = rados_put,
    .del = rados_del,
    .iterate = rados_iterate,
    .stats = rados_stats,
    .hint = rados_hint,
};
