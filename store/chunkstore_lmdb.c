/* chunkstore_lmdb.c: chunk frames as values of LMDB databases in the vault's data.mdb (the
 * chunk store of chunkstore.h). This file alone names, opens, reads and writes them:
 *
 *   chunks  32-byte chunk id -> chunk frame (chunk.h), or its first part (below)
 *   tails   32-byte chunk id -> the last bytes of a frame stored raw (chunk data: below)
 *   meta    "chunks" -> u64 count, u64 stored bytes, u64 plaintext bytes (vbs_cs_stats)
 *
 * Every write goes through vbs_write (or vbs_write_lazy), so LMDB gives the contract of
 * chunkstore.h: one commit per put, a read transaction's snapshot for readers, pages of a live
 * reader kept until it ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunkstore.h"
#include "file.h"
#include "util.h"

struct lmdb_cs {
	MDB_dbi chunks;
	MDB_dbi tails; /* 0 in a vault opened read-only that has none yet */
};

struct vbs_cs_reader {
	int fd; /* data.mdb, opened again: the kernel's read-ahead follows this reader alone */
};

static struct lmdb_cs *cs_of(const vbs_vault *v)
{
	return v->cs_state;
}

static const char stats_key[] = "chunks";

/* LMDB keeps a value bigger than a page on whole overflow pages, the first with a 16-byte
 * header. An incompressible frame is its chunk (a power of two) plus 36 bytes, so it would
 * take one more page for those bytes: 6% of a 64 KiB chunk. The last bytes of such a frame
 * (its tail: what falls on its last page, at most TAIL_MAX) are kept under the same id in the
 * database "tails" instead. Only frames stored as they are (not compressed) are split: for
 * them the frame's length follows from its header, so a reader knows a tail is missing. */
#define OVERFLOW_HDR 16
#define TAIL_MAX 256

static size_t tail_len(const vbs_vault *v, const uint8_t *frame, size_t flen)
{
	size_t over;

	if (!cs_of(v)->tails || vbs_frame_raw_len(frame, flen) != flen ||
	    flen + OVERFLOW_HDR <= v->psize)
		return 0;
	over = (flen + OVERFLOW_HDR) % v->psize;
	return over <= TAIL_MAX && over < flen ? over : 0;
}

/* Appends the tail of the frame whose value is buf[0..*len) (buf has TAIL_MAX bytes to
 * spare) when it has one. -EBADMSG for a missing or wrong tail. */
static int add_tail(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], uint8_t *buf,
		    size_t *len)
{
	size_t want = vbs_frame_raw_len(buf, *len);
	MDB_val k = {VBS_ID_LEN, (void *)id}, d;

	if (want <= *len)
		return 0; /* compressed, whole, or too long or malformed: decoding reports it */
	if (want - *len > TAIL_MAX || !cs_of(v)->tails ||
	    mdb_get(txn, cs_of(v)->tails, &k, &d) != 0 || d.mv_size != want - *len)
		return -EBADMSG;
	memcpy(buf + *len, d.mv_data, d.mv_size);
	*len = want;
	return 0;
}

/* Frames are read with pread, not through LMDB's map: the value's place in the map is its
 * place in the file (valid for the caller's transaction). Touching a 64 KiB frame through the
 * map costs page-table work for each of its pages, which in a VM was a quarter of the mount's
 * CPU on random reads, and kept pages mapped that the map trim then had to drop. */
static int lmdb_get(vbs_vault *v, MDB_txn *txn, vbs_cs_reader *rd, const uint8_t id[VBS_ID_LEN],
		    vbs_frame_fn fn, void *arg)
{
	MDB_val k = {VBS_ID_LEN, (void *)id}, d;
	uint64_t off;
	uint8_t *buf;
	size_t got;
	int fd = rd ? rd->fd : -1;
	int rc = mdb_get(txn, cs_of(v)->chunks, &k, &d);

	if (rc)
		return vbs_mdb_err(rc);
	/* The leaf and branch pages of the look-up were touched through the map. */
	vbs_map_touched(v, 3 * 4096);
	if (fd < 0 && mdb_env_get_fd(v->env, &fd) != 0)
		return -EIO;
	if ((rc = vbs_map_offset(v, d.mv_data, d.mv_size, &off)) < 0)
		return rc;
	buf = malloc(d.mv_size + TAIL_MAX);
	if (!buf)
		return -ENOMEM;
	rc = vbu_pread_full(fd, buf, d.mv_size, off, &got);
	if (rc == 0 && got != d.mv_size)
		rc = -EBADMSG; /* beyond the end of the file: damage */
	if (rc == 0)
		rc = add_tail(v, txn, id, buf, &got);
	if (rc == 0)
		rc = fn(arg, buf, got);
	free(buf);
	return rc;
}

/* The kernel reads the frames of the hinted chunks now, all of them at once and in the order it
 * likes, and the gets that follow find them in the page cache. Looked up in a transaction of
 * the hint's own: a damaged page met here ends only that one (the get that follows reports
 * it). */
static void lmdb_hint(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN])
{
	MDB_txn *txn;
	int fd, rc = 0;

	if (mdb_env_get_fd(v->env, &fd) != 0 || vbs_read_begin_nested(v, &txn) < 0)
		return;
	for (size_t i = 0; i < n && rc != MDB_CORRUPTED && rc != MDB_PAGE_NOTFOUND; i++) {
		MDB_val k = {VBS_ID_LEN, (void *)ids[i]}, d;
		uint64_t off;

		if ((rc = mdb_get(txn, cs_of(v)->chunks, &k, &d)) != 0 ||
		    vbs_map_offset(v, d.mv_data, d.mv_size, &off) < 0)
			continue;
		posix_fadvise(fd, (off_t)off, (off_t)d.mv_size, POSIX_FADV_WILLNEED);
	}
	vbs_map_touched(v, n * 3 * 4096);
	vbs_read_end_nested(txn);
}

static int lmdb_reader_open(vbs_vault *v, vbs_cs_reader **ret)
{
	struct stat a, b;
	mdb_filehandle_t efd;
	vbs_cs_reader *rd;
	char *path;
	int fd;

	if (mdb_env_get_fd(v->env, &efd) != 0 || fstat(efd, &a) < 0)
		return -EIO;
	if (asprintf(&path, "%s/data.mdb", v->path) < 0)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	/* The same file LMDB has open, not one renamed into its place since. */
	if (fstat(fd, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(fd);
		return -ESTALE;
	}
	rd = malloc(sizeof(*rd));
	if (!rd) {
		close(fd);
		return -ENOMEM;
	}
	rd->fd = fd;
	*ret = rd;
	return 0;
}

static void lmdb_reader_close(vbs_cs_reader *rd)
{
	if (!rd)
		return;
	close(rd->fd);
	free(rd);
}

static int lmdb_exists(vbs_vault *v, MDB_txn *txn, size_t n, const uint8_t (*ids)[VBS_ID_LEN],
		       uint8_t *present)
{
	for (size_t i = 0; i < n; i++) {
		MDB_val k = {VBS_ID_LEN, (void *)ids[i]}, d;
		int rc = mdb_get(txn, cs_of(v)->chunks, &k, &d);

		if (rc && rc != MDB_NOTFOUND)
			return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
					mdb_strerror(rc));
		present[i] = rc == 0;
	}
	return 0;
}

static int stats_add(vbs_vault *v, MDB_txn *txn, int64_t count, int64_t bytes, int64_t raw)
{
	return vbs_cs_count_add(v, txn, stats_key, count, bytes, raw);
}

struct put_ctx {
	const vbs_cs_item *items;
	size_t n;
	uint64_t added, added_bytes;
	vbs_cs_hook_fn hook;
	void *hook_arg;
};

static int put_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct put_ctx *c = arg;
	struct lmdb_cs *cs = cs_of(v);
	uint64_t raw = 0;
	int rc;

	c->added = c->added_bytes = 0;
	for (size_t i = 0; i < c->n; i++) {
		const uint8_t *frame = c->items[i].frame;
		size_t tail = tail_len(v, frame, c->items[i].len);
		MDB_val k = {VBS_ID_LEN, (void *)c->items[i].id};
		MDB_val d = {c->items[i].len - tail, NULL};
		MDB_val t = {tail, (void *)(frame + c->items[i].len - tail)};

		/* MDB_RESERVE: LMDB hands out the space and we copy once. */
		rc = mdb_put(txn, cs->chunks, &k, &d, MDB_NOOVERWRITE | MDB_RESERVE);
		if (rc == MDB_KEYEXIST)
			continue;
		if (rc == 0 && tail)
			rc = mdb_put(txn, cs->tails, &k, &t, 0);
		if (rc)
			return vbs_fail(vbs_mdb_err(rc), "cannot store chunk in vault '%s': %s",
					v->path, mdb_strerror(rc));
		memcpy(d.mv_data, frame, c->items[i].len - tail);
		c->added++;
		c->added_bytes += c->items[i].len;
		raw += c->items[i].plain_len;
	}
	rc = stats_add(v, txn, (int64_t)c->added, (int64_t)c->added_bytes, (int64_t)raw);
	if (rc < 0)
		return vbs_fail(rc, "cannot update chunk statistics of vault '%s'", v->path);
	return c->hook ? c->hook(v, txn, c->hook_arg) : 0;
}

static int lmdb_put(vbs_vault *v, const vbs_cs_item *items, size_t n, int mode,
		    vbs_cs_hook_fn hook, void *hook_arg, uint64_t *ret_added,
		    uint64_t *ret_added_bytes)
{
	struct put_ctx c = {items, n, 0, 0, hook, hook_arg};
	int r;

	/* Lazy: the point's commit syncs them (chunkstore.h). */
	r = mode == VBS_CS_LAZY ? vbs_write_lazy(v, put_fn, &c) : vbs_write(v, put_fn, &c);
	if (r < 0)
		return r;
	*ret_added = c.added;
	*ret_added_bytes = c.added_bytes;
	return 0;
}

static int lmdb_del(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], uint64_t *ret_len)
{
	struct lmdb_cs *cs = cs_of(v);
	MDB_val k = {VBS_ID_LEN, (void *)id}, d;
	uint32_t plain = 0;
	uint64_t len;
	int rc = mdb_get(txn, cs->chunks, &k, &d);

	if (rc)
		return vbs_mdb_err(rc);
	len = d.mv_size;
	vbs_frame_plain_len(d.mv_data, d.mv_size, &plain);
	rc = mdb_del(txn, cs->chunks, &k, NULL);
	if (rc)
		return vbs_mdb_err(rc);
	if (cs->tails && mdb_get(txn, cs->tails, &k, &d) == 0) {
		len += d.mv_size;
		if ((rc = mdb_del(txn, cs->tails, &k, NULL)) != 0)
			return vbs_mdb_err(rc);
	}
	*ret_len = len;
	return stats_add(v, txn, -1, -(int64_t)len, -(int64_t)plain);
}

/* In id order (LMDB's); the stored size counts the frame's first part only, as gc always
 * reported it. */
static int lmdb_iterate(vbs_vault *v, MDB_txn *txn, vbs_cs_iter_fn fn, void *arg)
{
	MDB_cursor *c;
	MDB_val k, d;
	int rc, r = 0, scan = vbs_scan_begin(v, txn, cs_of(v)->chunks);

	rc = mdb_cursor_open(txn, cs_of(v)->chunks, &c);
	if (rc) {
		vbs_scan_end(v, scan);
		return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
				mdb_strerror(rc));
	}
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != VBS_ID_LEN)
			continue;
		if ((r = fn(arg, k.mv_data, d.mv_size)) != 0)
			break;
	}
	mdb_cursor_close(c);
	vbs_scan_end(v, scan);
	if (r)
		return r;
	if (rc != MDB_NOTFOUND)
		return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
				mdb_strerror(rc));
	return 0;
}

static int lmdb_stats(vbs_vault *v, MDB_txn *txn, vbs_cs_stats *ret)
{
	return vbs_cs_count_get(v, txn, stats_key, ret);
}

static int lmdb_open(vbs_vault *v, MDB_txn *txn, int create, void **ret_state)
{
	struct lmdb_cs *cs = calloc(1, sizeof(*cs));
	int rc;

	if (!cs)
		return vbs_fail(-ENOMEM, "out of memory");
	rc = mdb_dbi_open(txn, "chunks", create ? MDB_CREATE : 0, &cs->chunks);
	/* tails came after chunks: a writer creates it in vaults made before; a read-only
	 * opener goes without. */
	if (rc == 0) {
		rc = mdb_dbi_open(txn, "tails", v->readonly ? 0 : MDB_CREATE, &cs->tails);
		if (rc == MDB_NOTFOUND && v->readonly) {
			cs->tails = 0;
			rc = 0;
		}
	}
	if (rc) {
		free(cs);
		if (rc == MDB_NOTFOUND)
			return vbs_fail(-EBADMSG, "vault '%s': the database is damaged (its tables "
					"are missing)", v->path);
		return vbs_fail(vbs_mdb_err(rc), "cannot open database of vault '%s': %s",
				v->path, rc > 0 && rc < 1000 ? vbu_strerror(rc) : mdb_strerror(rc));
	}
	*ret_state = cs;
	return 0;
}

static void lmdb_close(void *state)
{
	free(state);
}

const vbs_cs_ops vbs_cs_lmdb = {
	.name = "lmdb",
	.open = lmdb_open,
	.close = lmdb_close,
	.get = lmdb_get,
	.reader_open = lmdb_reader_open,
	.reader_close = lmdb_reader_close,
	.hint = lmdb_hint,
	.exists = lmdb_exists,
	.put = lmdb_put,
	.del = lmdb_del,
	.iterate = lmdb_iterate,
	.stats = lmdb_stats,
};
