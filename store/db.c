/* db.c: LMDB transactions with automatic map growth, error translation, store messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include "internal.h"
#include "util.h"

const char *vbs_errmsg(void)
{
	return vbu_errmsg();
}

int vbs_mdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return -EBADMSG;
	case MDB_CURSOR_FULL:
		/* A B-tree deeper than LMDB's cursor stack: only a damaged page makes one. */
		return -EBADMSG;
	case MDB_READERS_FULL:
	case MDB_TXN_FULL:
		return -EAGAIN;
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	case MDB_BAD_TXN:
	case MDB_BAD_RSLOT:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
	case MDB_INCOMPATIBLE:
	case MDB_DBS_FULL:
	case MDB_TLS_FULL:
	case MDB_PAGE_FULL:
	case MDB_PANIC:
		return -EIO;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

/* The read transactions open on this thread, for vbs_read_abandon(). */
#define OPEN_READS 8
static __thread struct {
	vbs_vault *v;
	MDB_txn *txn;
	int nested; /* vbs_read_begin_nested: holds no map lock of its own */
} open_reads[OPEN_READS];
static __thread int n_open_reads;

static void read_track(vbs_vault *v, MDB_txn *txn, int nested)
{
	if (n_open_reads < OPEN_READS) {
		open_reads[n_open_reads].v = v;
		open_reads[n_open_reads].txn = txn;
		open_reads[n_open_reads].nested = nested;
	}
	n_open_reads++;
}

static void read_untrack(MDB_txn *txn)
{
	for (int i = (n_open_reads < OPEN_READS ? n_open_reads : OPEN_READS) - 1; i >= 0; i--)
		if (open_reads[i].txn == txn) {
			for (int j = i; j + 1 < OPEN_READS && j + 1 < n_open_reads; j++)
				open_reads[j] = open_reads[j + 1];
			break;
		}
	if (n_open_reads > 0)
		n_open_reads--;
}

/* Another process grew the data past our map: map what the file now holds, doubled (never
 * less than today). Not the meta page's mm_mapsize, which mdb_env_set_mapsize(env, 0) would
 * adopt as it is: it is a hint no checksum covers, and one flipped bit of it asks for an
 * exabyte, which no mmap gets. Called with map_lock held for writing. */
static void adopt_map(vbs_vault *v)
{
	char file[4096];
	struct stat st;
	MDB_envinfo info;
	size_t size = 0;

	mdb_env_info(v->env, &info);
	if (snprintf(file, sizeof(file), "%s/data.mdb", v->path) < (int)sizeof(file) &&
	    stat(file, &st) == 0 && st.st_size > 0 &&
	    !__builtin_mul_overflow((size_t)st.st_size, (size_t)2, &size))
		size = size / v->psize * v->psize + v->psize;
	if (size < info.me_mapsize)
		size = info.me_mapsize;
	mdb_env_set_mapsize(v->env, size);
	v->mapc_lo = v->mapc_hi = 0;
}

void vbs_read_abandon(void)
{
	while (n_open_reads > 0) {
		int i = (n_open_reads < OPEN_READS ? n_open_reads : OPEN_READS) - 1;

		if (n_open_reads > OPEN_READS) {
			n_open_reads--; /* not tracked: lost */
			continue;
		}
		if (open_reads[i].nested)
			vbs_read_end_nested(open_reads[i].txn);
		else
			vbs_read_end(open_reads[i].v, open_reads[i].txn);
	}
}

int vbs_read_begin(vbs_vault *v, MDB_txn **ret)
{
	MDB_txn *txn = NULL;
	int rc;

	for (int tries = 0; tries < 8; tries++) {
		pthread_rwlock_rdlock(&v->map_lock);
		rc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn);
		if (rc == 0) {
			read_track(v, txn, 0);
			*ret = txn;
			return 0;
		}
		pthread_rwlock_unlock(&v->map_lock);
		if (rc != MDB_MAP_RESIZED)
			break;
		/* Another process grew the map: adopt its size (no transaction of ours is live
		 * while we hold the lock exclusively). */
		pthread_rwlock_wrlock(&v->map_lock);
		adopt_map(v);
		pthread_rwlock_unlock(&v->map_lock);
	}
	return vbs_fail(vbs_mdb_err(rc), "cannot read vault '%s': %s", v->path, mdb_strerror(rc));
}

void vbs_read_end(vbs_vault *v, MDB_txn *txn)
{
	if (!txn)
		return;
	read_untrack(txn);
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&v->map_lock);
}

int vbs_read_begin_nested(vbs_vault *v, MDB_txn **ret)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(v->env, NULL, MDB_RDONLY, &txn);

	if (rc)
		return vbs_mdb_err(rc);
	read_track(v, txn, 1);
	*ret = txn;
	return 0;
}

void vbs_read_end_nested(MDB_txn *txn)
{
	if (!txn)
		return;
	read_untrack(txn);
	mdb_txn_abort(txn);
}

/* The address and length of this process's mapping of data.mdb. LMDB does not say where its
 * map is (mdb_env_info gives an address only with MDB_FIXEDMAP), so look in /proc. */
static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* The mapping that contains p, or (p NULL) the mapping of data.mdb at offset 0, and the file
 * offset it starts at: LMDB maps the whole file, and says nowhere where. p comes from LMDB
 * inside a transaction, so the mapping that holds it is LMDB's: it is found by address alone,
 * because on btrfs and on some overlays the device in /proc/self/maps is not the one fstat
 * reports. Without p, only that device and inode can tell, where they agree. */
static int find_map(vbs_vault *v, const void *p, void **ret_addr, size_t *ret_len,
		    uint64_t *ret_off)
{
	struct stat st;
	char line[512];
	FILE *f;
	int fd, r = -ENOENT;

	if (!p && (mdb_env_get_fd(v->env, &fd) || fstat(fd, &st) < 0))
		return -EIO;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, ino, off;
		unsigned maj, min;

		if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &off, &maj, &min, &ino) != 6)
			continue;
		if (p ? (uintptr_t)p < lo || (uintptr_t)p >= hi
		      : ino != st.st_ino || makedev(maj, min) != st.st_dev || off != 0)
			continue;
		if (p && !ends_with(line, "/data.mdb\n")) {
			r = -EBADMSG; /* a damaged page pointing elsewhere */
			break;
		}
		*ret_addr = (void *)lo;
		*ret_len = hi - lo;
		*ret_off = off;
		r = 0;
		break;
	}
	fclose(f);
	return r;
}

int vbs_map_offset(vbs_vault *v, const void *p, size_t len, uint64_t *ret_off)
{
	uintptr_t a = (uintptr_t)p;
	uint64_t off;
	void *lo;
	size_t mlen;
	int r = 0;

	pthread_mutex_lock(&v->mapc_lock);
	if (a < v->mapc_lo || a >= v->mapc_hi) {
		MDB_envinfo info;

		r = find_map(v, p, &lo, &mlen, &off);
		/* Only LMDB's whole map is remembered (the trim drops its pages). */
		if (r == 0 && (off != 0 || mdb_env_info(v->env, &info) != 0 ||
			       mlen != (info.me_mapsize + v->psize - 1) / v->psize * v->psize))
			r = -EBADMSG;
		if (r == 0) {
			v->mapc_lo = (uintptr_t)lo;
			v->mapc_hi = (uintptr_t)lo + mlen;
			v->mapc_off = off;
		}
	}
	if (r == 0 && len > v->mapc_hi - a)
		r = -ENOENT; /* crosses the end of the map: damage */
	if (r == 0)
		*ret_off = a - v->mapc_lo + v->mapc_off;
	pthread_mutex_unlock(&v->mapc_lock);
	return r == -ENOENT ? -EBADMSG : r;
}

void vbs_map_touched(vbs_vault *v, size_t bytes)
{
	void *addr;
	size_t len;
	uint64_t off;

	if (__atomic_add_fetch(&v->map_touched, bytes, __ATOMIC_RELAXED) < VBS_MAP_TRIM)
		return;
	if (__atomic_exchange_n(&v->map_touched, 0, __ATOMIC_RELAXED) < VBS_MAP_TRIM)
		return; /* another thread trims */
	/* The caller's transaction holds the map lock shared: the map cannot move. Other threads
	 * reading it meanwhile just fault the pages in again from the page cache. */
	pthread_mutex_lock(&v->mapc_lock);
	addr = (void *)v->mapc_lo;
	len = v->mapc_hi - v->mapc_lo;
	off = v->mapc_off;
	pthread_mutex_unlock(&v->mapc_lock);
	if ((addr && off == 0) || find_map(v, NULL, &addr, &len, &off) == 0)
		madvise(addr, len, MADV_DONTNEED);
}

int vbs_scan_begin(vbs_vault *v, MDB_txn *txn, MDB_dbi dbi)
{
	MDB_envinfo info;
	MDB_stat st;
	void *addr;
	size_t len;
	uint64_t off;

	if (mdb_stat(txn, dbi, &st) != 0 || mdb_env_info(v->env, &info) != 0)
		return 0;
	/* Dense: the tree's pages are an eighth of the file or more (small chunks whose frames
	 * sit in the leaves, an index of many points). Otherwise a read around each fault reads
	 * mostly chunk frames. */
	if ((uint64_t)(st.ms_branch_pages + st.ms_leaf_pages) * 8 < (uint64_t)info.me_last_pgno + 1)
		return 0;
	if (find_map(v, NULL, &addr, &len, &off) < 0 || off != 0)
		return 0;
	return madvise(addr, len, MADV_NORMAL) == 0;
}

void vbs_scan_end(vbs_vault *v, int on)
{
	void *addr;
	size_t len;
	uint64_t off;

	if (on && find_map(v, NULL, &addr, &len, &off) == 0 && off == 0)
		madvise(addr, len, MADV_RANDOM);
}

/* After a commit. The pages a writer wrote land in the page cache, and each fault on the
 * tree's pages through the map then maps up to 64 KiB of cached neighbours (fault-around),
 * often fresh chunk data: so every commit counts as a full VBS_MAP_TRIM. Each commit then
 * faults the tree pages it needs in again (about 15% of an ingest's commit thread), but
 * trimming every 4th commit let a 1 TiB ingest reach 250 MB of RSS once frame tails got a tree
 * of their own, against 200 MB now. */
static void map_written(vbs_vault *v)
{
	vbs_map_touched(v, VBS_MAP_TRIM);
}

static int grow_map(vbs_vault *v)
{
	MDB_envinfo info;
	size_t size;
	int rc;

	pthread_rwlock_wrlock(&v->map_lock);
	mdb_env_info(v->env, &info);
	if (__builtin_mul_overflow(info.me_mapsize, (size_t)2, &size)) {
		pthread_rwlock_unlock(&v->map_lock);
		return -ENOSPC;
	}
	rc = mdb_env_set_mapsize(v->env, size);
	v->mapc_lo = v->mapc_hi = 0;
	pthread_rwlock_unlock(&v->map_lock);
	return vbs_mdb_err(rc);
}

static int fs_full(const char *path)
{
	struct statvfs sv;

	return statvfs(path, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < (4u << 20);
}

static int write_txn(vbs_vault *v, vbs_write_fn fn, void *arg, int lazy)
{
	MDB_txn *txn;
	int rc, r;

	if (v->readonly)
		return vbs_fail(-EROFS, "vault '%s' is open read-only", v->path);
	/* A reader killed while in a transaction leaves its slot in the reader table, and LMDB
	 * reuses no page freed after that reader's snapshot until the slot is cleared. */
	mdb_reader_check(v->env, NULL);
	for (int tries = 0; tries < 32; tries++) {
		pthread_rwlock_rdlock(&v->map_lock);
		rc = mdb_txn_begin(v->env, NULL, 0, &txn);
		if (rc == MDB_MAP_RESIZED) {
			pthread_rwlock_unlock(&v->map_lock);
			pthread_rwlock_wrlock(&v->map_lock);
			adopt_map(v);
			pthread_rwlock_unlock(&v->map_lock);
			continue;
		}
		if (rc) {
			pthread_rwlock_unlock(&v->map_lock);
			return vbs_fail(vbs_mdb_err(rc), "cannot write vault '%s': %s", v->path,
					mdb_strerror(rc));
		}
		r = fn(v, txn, arg);
		if (r < 0) {
			mdb_txn_abort(txn);
			pthread_rwlock_unlock(&v->map_lock);
			/* Inside a transaction nothing is written to the file yet: -ENOSPC can
			 * only be LMDB's MDB_MAP_FULL (see vbs_mdb_err). */
			if (r != -ENOSPC)
				return r;
			rc = MDB_MAP_FULL;
		} else {
			rc = mdb_txn_commit(txn);
			if (rc == 0)
				map_written(v);
			pthread_rwlock_unlock(&v->map_lock);
			if (rc == 0 && !lazy && (rc = mdb_env_sync(v->env, 1)) != 0)
				/* The environment is MDB_NOMETASYNC: durable once synced. */
				return vbs_fail(-rc, "vault '%s': committed, but cannot sync it to "
						"disk: %s", v->path, mdb_strerror(rc));
			if (rc == 0)
				return r;
		}
		/* LMDB turns a short write into EIO: on a file system with (almost) no room
		 * left, that was a full disk. */
		if (rc == EIO && fs_full(v->path))
			rc = ENOSPC;
		if (rc != MDB_MAP_FULL && rc == ENOSPC)
			return vbs_fail(-ENOSPC, "cannot commit to vault '%s': no space left on device",
					v->path);
		if (rc != MDB_MAP_FULL)
			return vbs_fail(vbs_mdb_err(rc), "cannot commit to vault '%s': %s", v->path,
					mdb_strerror(rc));
		r = grow_map(v);
		if (r < 0)
			return vbs_fail(r, "vault '%s' is full: cannot grow its map", v->path);
	}
	return vbs_fail(-ENOSPC, "vault '%s': the map keeps filling up", v->path);
}

int vbs_write(vbs_vault *v, vbs_write_fn fn, void *arg)
{
	return write_txn(v, fn, arg, 0);
}

int vbs_write_lazy(vbs_vault *v, vbs_write_fn fn, void *arg)
{
	return write_txn(v, fn, arg, 1);
}

int vbs_get_u64(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, uint64_t *ret)
{
	MDB_val k = {klen, (void *)key}, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	if (rc)
		return vbs_mdb_err(rc);
	if (d.mv_size != 8)
		return -EBADMSG;
	*ret = vbs_get64(d.mv_data);
	return 0;
}

int vbs_seq_next(vbs_vault *v, MDB_txn *txn, uint64_t *ret)
{
	static const char key[] = "seq";
	uint8_t buf[8];
	uint64_t seq = 0;
	MDB_val k = {3, (void *)key}, d = {8, buf};
	int r = vbs_get_u64(txn, v->dbi_meta, key, 3, &seq);

	if (r < 0 && r != -ENOENT)
		return vbs_fail(r, "vault '%s': damaged sequence record", v->path);
	seq++;
	vbs_put64(buf, seq);
	r = mdb_put(txn, v->dbi_meta, &k, &d, 0);
	if (r)
		return vbs_fail(vbs_mdb_err(r), "vault '%s': %s", v->path, mdb_strerror(r));
	*ret = seq;
	return 0;
}
