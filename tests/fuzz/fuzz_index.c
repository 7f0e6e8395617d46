/* fuzz_index.c: index entries (database idx) as the programs parse them: the read path's
 * checked groups (imap.c's vbs_group_resolve), gc's and delete's walk, verify's entry parser.
 *
 * The input is a header (lineage 1-4, a point serial, a disk of 1-64 chunks, either at the
 * start of a group or across the boundary of groups 0 and 1) and a list of entries put into a
 * scratch LMDB environment: key and value lengths and bytes are the fuzzer's (well-formed
 * 24-byte keys of small numbers most of the time, any bytes otherwise). Then the groups the
 * disk spans, resolved as a reader resolves them, and the walk must agree chunk for chunk, and
 * a group's MAC must be the one recomputed from what it resolved to, or fail with -EBADMSG;
 * vbs_verify_idx_entry must accept exactly the well-formed entries and decode a key
 * vbs_idx_key made back into its numbers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap.h"
#include "index.h"
#include "internal.h"
#include "verify.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXN 64
/* Chunks of the disk are first + [0, nch): first is 0 or a little before group 1. */
#define ACROSS (VBS_GROUP_CHUNKS - MAXN / 2)

static vbs_vault vault;
static char dir[256];

static void cleanup(void)
{
	char f[300];

	vbk_hmac_free(vault.idx_mac);
	mdb_env_close(vault.env);
	snprintf(f, sizeof(f), "%s/data.mdb", dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/lock.mdb", dir);
	unlink(f);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const uint8_t key[VBK_KEY_LEN] = {7};
	const char *tmp = getenv("TMPDIR");
	MDB_txn *txn;

	snprintf(dir, sizeof(dir), "%s/fuzz_index.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir) || mdb_env_create(&vault.env) || mdb_env_set_maxdbs(vault.env, 4) ||
	    mdb_env_set_mapsize(vault.env, 64u << 20) ||
	    mdb_env_open(vault.env, dir, MDB_NOSYNC | MDB_NOMETASYNC, 0600) ||
	    mdb_txn_begin(vault.env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, "idx", MDB_CREATE, &vault.dbi_idx) || mdb_txn_commit(txn))
		abort();
	if (vbk_hmac_new(key, &vault.idx_mac) < 0)
		abort();
	pthread_rwlock_init(&vault.map_lock, NULL);
	vault.chunk_size = 4096;
	atexit(cleanup);
	return 0;
}

struct seen {
	uint64_t first; /* chunk number of data[0] */
	int data[MAXN];
	uint8_t id[MAXN][VBS_ID_LEN];
	uint64_t count;
};

static int walk_cb(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN])
{
	struct seen *s = arg;

	if (n >= s->first && n - s->first < MAXN) {
		if (s->data[n - s->first])
			abort(); /* a chunk visited twice */
		s->data[n - s->first] = 1;
		memcpy(s->id[n - s->first], id, VBS_ID_LEN);
	}
	return ++s->count > 100000;
}

/* The groups of chunks [first, first + nch) as a reader resolves them, into res; 1 when one
 * of them is damaged (-EBADMSG). */
static int resolve(MDB_cursor *c, uint64_t lineage, uint64_t serial, uint64_t first, uint64_t nch,
		   struct seen *res)
{
	static uint8_t ids[VBS_GROUP_CHUNKS][VBS_ID_LEN], data[VBS_GROUP_CHUNKS];
	uint64_t nchunks = first + nch;

	for (uint64_t g = first / VBS_GROUP_CHUNKS; g <= (nchunks - 1) / VBS_GROUP_CHUNKS; g++) {
		uint8_t mac[VBS_GROUP_MAC_LEN], again[VBS_GROUP_MAC_LEN];
		uint64_t count = 0, count2 = 0, have = 0;
		int r;

		r = vbs_group_resolve(&vault, c, lineage, serial, nchunks, g, mac, &count, ids,
				      data);
		if (r == -EBADMSG)
			return 1;
		if (r < 0 || count > VBS_GROUP_CHUNKS)
			abort();
		/* Without ids the same group gives the same MAC and count. */
		r = vbs_group_resolve(&vault, c, lineage, serial, nchunks, g, again, &count2, NULL,
				      NULL);
		if (r < 0 || count2 != count || memcmp(mac, again, sizeof(mac)))
			abort();
		r = vbs_group_mac(&vault, lineage, g, nchunks, (const uint8_t(*)[VBS_ID_LEN])ids,
				  data, again, &count2);
		if (r < 0 || count2 != count || memcmp(mac, again, sizeof(mac)))
			abort();
		for (uint64_t k = 0; k < VBS_GROUP_CHUNKS; k++) {
			uint64_t n = g * VBS_GROUP_CHUNKS + k;

			if (data[k] > 1 || (data[k] && n >= nchunks))
				abort(); /* only chunks of the disk hold data */
			have += data[k];
			if (n < first || n >= nchunks || !data[k])
				continue;
			res->data[n - first] = 1;
			memcpy(res->id[n - first], ids[k], VBS_ID_LEN);
		}
		if (have != count)
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	uint64_t lineage, serial, nch, first;
	struct seen walk = {0}, look = {0};
	MDB_txn *txn;
	MDB_cursor *c;
	int bad, r;

	if (size < 3)
		return 0;
	lineage = 1 + p[0] % 4;
	first = p[0] & 0x80 ? ACROSS : 0;
	serial = p[1];
	nch = 1 + p[2] % MAXN;
	walk.first = look.first = first;
	p += 3;
	if (mdb_txn_begin(vault.env, NULL, 0, &txn) || mdb_drop(txn, vault.dbi_idx, 0))
		abort();
	while (end - p >= 2) {
		uint8_t kb = p[0], vb = p[1], key[64], val[64];
		uint64_t kl = 0, kn = 0, ks = 0, dl, dn, ds;
		size_t klen, vlen;
		int dd;
		MDB_val k, d;

		p += 2;
		if (kb & 0x80) {
			/* A well-formed key of small numbers: lineage, chunk, serial. */
			if (end - p < 2)
				break;
			kl = 1 + (kb & 3);
			kn = first + p[0] % (MAXN + 4);
			ks = p[1];
			vbs_idx_key(key, kl, kn, ks);
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
		if (vbs_verify_idx_entry(key, klen, val, vlen, &dl, &dn, &ds, &dd) == 0) {
			if (klen != VBS_IDX_KEY_LEN || (vlen && vlen != VBS_ID_LEN) ||
			    dd != (vlen != 0))
				abort();
			if ((kb & 0x80) && (dl != kl || dn != kn || ds != ks))
				abort(); /* the key does not decode to what it encoded */
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
	bad = resolve(c, lineage, serial, first, nch, &look);
	r = vbs_idx_walk(&vault, txn, lineage, serial, walk_cb, &walk);
	if (r < 0 && r != -EBADMSG)
		abort();
	bad |= r < 0;
	if (!bad) {
		for (uint64_t n = 0; n < nch; n++)
			if (look.data[n] != walk.data[n] ||
			    (look.data[n] && memcmp(look.id[n], walk.id[n], VBS_ID_LEN)))
				abort();
	}
	mdb_cursor_close(c);
	vbs_read_end(&vault, txn);
	return 0;
}
