/* chunkstore_lmdb.c: chunk frames as values of the LMDB database "chunks". */
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

	if (!v->dbi_tails || vbs_frame_raw_len(frame, flen) != flen ||
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
	if (want - *len > TAIL_MAX || !v->dbi_tails ||
	    mdb_get(txn, v->dbi_tails, &k, &d) != 0 || d.mv_size != want - *len)
		return -EBADMSG;
	memcpy(buf + *len, d.mv_data, d.mv_size);
	*len = want;
	return 0;
}

/* Frames are read with pread, not through LMDB's map: the value's place in the map is its
 * place in the file (valid for the caller's transaction). Touching a 64 KiB frame through the
 * map costs page-table work for each of its pages, which in a VM was a quarter of the mount's
 * CPU on random reads, and kept pages mapped that the map trim then had to drop. */
int vbs_cs_get(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], vbs_frame_fn fn,
	       void *arg)
{
	return vbs_cs_get_at(v, txn, -1, id, fn, arg);
}

int vbs_cs_get_at(vbs_vault *v, MDB_txn *txn, int fd, const uint8_t id[VBS_ID_LEN],
		  vbs_frame_fn fn, void *arg)
{
	MDB_val k = {VBS_ID_LEN, (void *)id}, d;
	uint64_t off;
	uint8_t *buf;
	size_t got;
	int rc = mdb_get(txn, v->dbi_chunks, &k, &d);

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

int vbs_cs_open_fd(vbs_vault *v)
{
	struct stat a, b;
	mdb_filehandle_t efd;
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
	return fd;
}

int vbs_cs_exists(vbs_vault *v, size_t n, const uint8_t (*ids)[VBS_ID_LEN], uint8_t *present)
{
	MDB_txn *txn;
	int r = vbs_read_begin(v, &txn);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		MDB_val k = {VBS_ID_LEN, (void *)ids[i]}, d;
		int rc = mdb_get(txn, v->dbi_chunks, &k, &d);

		if (rc && rc != MDB_NOTFOUND) {
			r = vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
				     mdb_strerror(rc));
			break;
		}
		present[i] = rc == 0;
	}
	vbs_read_end(v, txn);
	return r;
}

static int stats_add(vbs_vault *v, MDB_txn *txn, int64_t count, int64_t bytes, int64_t raw)
{
	MDB_val k = {sizeof(stats_key) - 1, (void *)stats_key}, d;
	uint8_t buf[24] = {0};
	int rc = mdb_get(txn, v->dbi_meta, &k, &d);

	if (rc == 0 && d.mv_size == sizeof(buf))
		memcpy(buf, d.mv_data, sizeof(buf));
	else if (rc && rc != MDB_NOTFOUND)
		return vbs_mdb_err(rc);
	vbs_put64(buf, vbs_get64(buf) + (uint64_t)count);
	vbs_put64(buf + 8, vbs_get64(buf + 8) + (uint64_t)bytes);
	vbs_put64(buf + 16, vbs_get64(buf + 16) + (uint64_t)raw);
	d.mv_size = sizeof(buf);
	d.mv_data = buf;
	return vbs_mdb_err(mdb_put(txn, v->dbi_meta, &k, &d, 0));
}

struct put_ctx {
	const vbs_cs_item *items;
	size_t n;
	uint64_t added, added_bytes;
	const uint8_t (*check)[VBS_ID_LEN];
	size_t ncheck;
	uint64_t job;
};

/* Pinned puts (gc.h): the reused chunks must still be there, and everything gets a pin. */
static int pin_fn(vbs_vault *v, MDB_txn *txn, struct put_ctx *c)
{
	int rc, r;

	for (size_t i = 0; i < c->ncheck; i++) {
		MDB_val k = {VBS_ID_LEN, (void *)c->check[i]}, d;

		rc = mdb_get(txn, v->dbi_chunks, &k, &d);
		if (rc == MDB_NOTFOUND)
			return -ESTALE;
		if (rc)
			return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path,
					mdb_strerror(rc));
		if ((r = vbs_pin_add(v, txn, c->job, c->check[i])) < 0)
			return vbs_fail(r, "cannot pin chunk in vault '%s': %s", v->path,
					vbu_strerror(-r));
	}
	for (size_t i = 0; i < c->n; i++)
		if ((r = vbs_pin_add(v, txn, c->job, c->items[i].id)) < 0)
			return vbs_fail(r, "cannot pin chunk in vault '%s': %s", v->path,
					vbu_strerror(-r));
	return 0;
}

static int put_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct put_ctx *c = arg;
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
		rc = mdb_put(txn, v->dbi_chunks, &k, &d, MDB_NOOVERWRITE | MDB_RESERVE);
		if (rc == MDB_KEYEXIST)
			continue;
		if (rc == 0 && tail)
			rc = mdb_put(txn, v->dbi_tails, &k, &t, 0);
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
	return c->job ? pin_fn(v, txn, c) : 0;
}

int vbs_cs_put_batch(vbs_vault *v, const vbs_cs_item *items, size_t n, uint64_t *ret_added,
		     uint64_t *ret_added_bytes)
{
	struct put_ctx c = {items, n, 0, 0, NULL, 0, 0};
	int r;

	if (n == 0) {
		*ret_added = *ret_added_bytes = 0;
		return 0;
	}
	r = vbs_write(v, put_fn, &c);
	if (r < 0)
		return r;
	*ret_added = c.added;
	*ret_added_bytes = c.added_bytes;
	return 0;
}

int vbs_cs_put_pinned(vbs_vault *v, const vbs_cs_item *items, size_t n,
		      const uint8_t (*check)[VBS_ID_LEN], size_t ncheck, uint64_t job,
		      uint64_t *ret_added, uint64_t *ret_added_bytes)
{
	struct put_ctx c = {items, n, 0, 0, check, ncheck, job};
	int r;

	if (n == 0 && ncheck == 0) {
		*ret_added = *ret_added_bytes = 0;
		return 0;
	}
	if (!job || !v->dbi_pins)
		return vbs_fail(-EINVAL, "pinned chunk put without a job");
	r = vbs_write_lazy(v, put_fn, &c); /* the point's commit syncs them */
	if (r < 0)
		return r;
	*ret_added = c.added;
	*ret_added_bytes = c.added_bytes;
	return 0;
}

int vbs_cs_del(vbs_vault *v, MDB_txn *txn, const uint8_t id[VBS_ID_LEN], size_t *ret_len)
{
	MDB_val k = {VBS_ID_LEN, (void *)id}, d;
	uint32_t plain = 0;
	size_t len;
	int rc = mdb_get(txn, v->dbi_chunks, &k, &d);

	if (rc)
		return vbs_mdb_err(rc);
	len = d.mv_size;
	vbs_frame_plain_len(d.mv_data, d.mv_size, &plain);
	rc = mdb_del(txn, v->dbi_chunks, &k, NULL);
	if (rc)
		return vbs_mdb_err(rc);
	if (v->dbi_tails && mdb_get(txn, v->dbi_tails, &k, &d) == 0) {
		len += d.mv_size;
		if ((rc = mdb_del(txn, v->dbi_tails, &k, NULL)) != 0)
			return vbs_mdb_err(rc);
	}
	*ret_len = len;
	return stats_add(v, txn, -1, -(int64_t)len, -(int64_t)plain);
}
