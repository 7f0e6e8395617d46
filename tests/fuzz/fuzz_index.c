/* fuzz_index.c: index entries (database idx) as the read path and verify parse them.
 *
 * The input is a header (lineage 1-4, a point serial, a disk of 1-64 chunks) and a list of
 * entries put into a scratch LMDB environment: key and value lengths and bytes are the
 * fuzzer's (well-formed 24-byte keys of small numbers most of the time, any bytes otherwise).
 * Then every lookup of the disk's chunks, next_data and next_hole from every chunk, and the
 * walk must agree with each other, or fail with -EBADMSG; vbs_verify_idx_entry must accept
 * exactly the well-formed entries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index.h"
#include "internal.h"
#include "verify.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXN 64

static vbs_vault vault;
static char dir[256];

static void cleanup(void)
{
	char f[300];

	mdb_env_close(vault.env);
	snprintf(f, sizeof(f), "%s/data.mdb", dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/lock.mdb", dir);
	unlink(f);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	MDB_txn *txn;

	snprintf(dir, sizeof(dir), "%s/fuzz_index.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir) || mdb_env_create(&vault.env) || mdb_env_set_maxdbs(vault.env, 4) ||
	    mdb_env_set_mapsize(vault.env, 64u << 20) ||
	    mdb_env_open(vault.env, dir, MDB_NOSYNC | MDB_NOMETASYNC, 0600) ||
	    mdb_txn_begin(vault.env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, "idx", MDB_CREATE, &vault.dbi_idx) || mdb_txn_commit(txn))
		abort();
	pthread_rwlock_init(&vault.map_lock, NULL);
	vault.chunk_size = 4096;
	atexit(cleanup);
	return 0;
}

struct seen {
	int data[MAXN];
	uint8_t id[MAXN][VBS_ID_LEN];
	uint64_t count;
};

static int walk_cb(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN])
{
	struct seen *s = arg;

	if (n < MAXN) {
		if (s->data[n])
			abort(); /* a chunk visited twice */
		s->data[n] = 1;
		memcpy(s->id[n], id, VBS_ID_LEN);
	}
	return ++s->count > 100000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	uint64_t lineage, serial, nch;
	struct seen walk = {{0}}, look = {{0}};
	MDB_txn *txn;
	MDB_cursor *c;
	int bad = 0, r;

	if (size < 3)
		return 0;
	lineage = 1 + p[0] % 4;
	serial = p[1];
	nch = 1 + p[2] % MAXN;
	p += 3;
	if (mdb_txn_begin(vault.env, NULL, 0, &txn) || mdb_drop(txn, vault.dbi_idx, 0))
		abort();
	while (end - p >= 2) {
		uint8_t kb = p[0], vb = p[1], key[64], val[64];
		size_t klen, vlen;
		MDB_val k, d;

		p += 2;
		if (kb & 0x80) {
			/* A well-formed key of small numbers: lineage, chunk, serial. */
			if (end - p < 2)
				break;
			vbs_idx_key(key, 1 + (kb & 3), p[0] % (MAXN + 4), p[1]);
			klen = VBS_IDX_KEY_LEN;
			p += 2;
		} else {
			klen = 1 + kb % 32;
			if ((size_t)(end - p) < klen)
				break;
			memcpy(key, p, klen);
			p += klen;
		}
		vlen = vb & 0x80 ? VBS_ID_LEN : vb % 40;
		if ((size_t)(end - p) < vlen)
			break;
		memcpy(val, p, vlen);
		p += vlen;
		if (vbs_verify_idx_entry(key, klen, val, vlen, NULL, NULL, NULL, NULL) == 0) {
			if (klen != VBS_IDX_KEY_LEN || (vlen && vlen != VBS_ID_LEN))
				abort();
		} else if (klen == VBS_IDX_KEY_LEN && (vlen == 0 || vlen == VBS_ID_LEN)) {
			abort();
		}
		k = (MDB_val){klen, key};
		d = (MDB_val){vlen, val};
		if (mdb_put(txn, vault.dbi_idx, &k, &d, 0))
			abort();
	}
	if (mdb_txn_commit(txn) || vbs_read_begin(&vault, &txn) < 0)
		abort();
	if (mdb_cursor_open(txn, vault.dbi_idx, &c))
		abort();
	for (uint64_t n = 0; n < nch; n++) {
		r = vbs_idx_lookup(&vault, c, lineage, serial, n, look.id[n], &look.data[n]);
		if (r == -EBADMSG) {
			bad = 1;
			continue;
		}
		if (r < 0)
			abort();
	}
	r = vbs_idx_walk(&vault, txn, lineage, serial, walk_cb, &walk);
	if (r < 0 && r != -EBADMSG)
		abort();
	bad |= r < 0;
	if (!bad) {
		for (uint64_t n = 0; n < nch; n++) {
			uint64_t dn, hn;
			uint64_t want = nch;

			if (look.data[n] != walk.data[n] ||
			    (look.data[n] && memcmp(look.id[n], walk.id[n], VBS_ID_LEN)))
				abort();
			for (uint64_t m = n; m < nch; m++)
				if (look.data[m]) {
					want = m;
					break;
				}
			r = vbs_idx_next_data(&vault, c, lineage, serial, n, nch, &dn);
			if (r == -EBADMSG)
				break;
			if ((r == -ENXIO) != (want == nch) || (r == 0 && dn != want))
				abort();
			want = nch;
			for (uint64_t m = n; m < nch; m++)
				if (!look.data[m]) {
					want = m;
					break;
				}
			r = vbs_idx_next_hole(&vault, c, lineage, serial, n, nch, &hn);
			if (r == -EBADMSG)
				break;
			if (r < 0 || hn != want)
				abort();
		}
	}
	mdb_cursor_close(c);
	vbs_read_end(&vault, txn);
	return 0;
}
