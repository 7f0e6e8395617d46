/* index_test.c: the versioned chunk index (store/index.c): key encoding and decoding, the
 * order keys sort in, and seeks and walks as of each point of a lineage, through a real
 * vault. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "internal.h"
#include "unit.h"
#include "vault.h"

static char dir[256];

static void keys(void)
{
	static const uint64_t vals[] = {
	    0, 1, 255, 256, 0x0123456789abcdefull, UINT64_MAX - 1, UINT64_MAX};
	uint8_t k[VBS_IDX_KEY_LEN], a[VBS_IDX_KEY_LEN], b[VBS_IDX_KEY_LEN];
	uint64_t l, n, s;

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		for (size_t j = 0; j < sizeof(vals) / sizeof(vals[0]); j++) {
			uint64_t want_s = vals[(i + j) % (sizeof(vals) / sizeof(vals[0]))];

			vbs_idx_key(k, vals[i], vals[j], want_s);
			l = n = s = 42;
			CHECK_EQ_INT(vbs_idx_key_decode(k, sizeof(k), &l, &n, &s), 0);
			CHECK(l == vals[i] && n == vals[j] && s == want_s);
			CHECK_EQ_INT(vbs_idx_key_lineage(k, sizeof(k), &l), 0);
			CHECK(l == vals[i]);
		}
	/* The layout of man/vmbak-vault.5: big-endian lineage, chunk, inverted serial. */
	vbs_idx_key(k, 0x0102030405060708ull, 0x1112131415161718ull, 0);
	CHECK(k[0] == 1 && k[7] == 8 && k[8] == 0x11 && k[15] == 0x18);
	for (int i = 16; i < 24; i++)
		CHECK(k[i] == 0xff);
	/* Sorting: by lineage, then chunk, then newest serial first. */
	vbs_idx_key(a, 7, 3, 20);
	vbs_idx_key(b, 7, 3, 10);
	CHECK(memcmp(a, b, sizeof(a)) < 0);
	vbs_idx_key(b, 7, 4, 1000);
	CHECK(memcmp(a, b, sizeof(a)) < 0);
	vbs_idx_key(b, 8, 0, 0);
	CHECK(memcmp(a, b, sizeof(a)) < 0);
	vbs_idx_key(b, 6, UINT64_MAX, 0);
	CHECK(memcmp(a, b, sizeof(a)) > 0);
	/* Wrong lengths: nothing decoded, nothing written. */
	l = n = s = 42;
	CHECK_EQ_INT(vbs_idx_key_decode(k, VBS_IDX_KEY_LEN - 1, &l, &n, &s), -EBADMSG);
	CHECK_EQ_INT(vbs_idx_key_decode(k, VBS_IDX_KEY_LEN + 1, &l, &n, &s), -EBADMSG);
	CHECK_EQ_INT(vbs_idx_key_decode(k, 0, &l, &n, &s), -EBADMSG);
	CHECK(l == 42 && n == 42 && s == 42);
	CHECK_EQ_INT(vbs_idx_key_decode(k, sizeof(k), NULL, &n, NULL), 0);
	CHECK(n == 0x1112131415161718ull);
	CHECK_EQ_INT(vbs_idx_key_lineage(k, 8, &l), 0);
	CHECK(l == 0x0102030405060708ull);
	CHECK_EQ_INT(vbs_idx_key_lineage(k, 7, &l), -EBADMSG);
}

/* Entries written by the test, as points of lineage L would: (serial, chunk, id or hole). */
#define L 5
struct ent {
	uint64_t lineage, serial, n;
	int id; /* 0: hole, else the id's fill byte */
};
static const struct ent ents[] = {
    {L, 10, 0, 'A'},
    {L, 10, 1, 'B'},
    {L, 10, 3, 'C'}, /* the first point */
    {L, 20, 1, 0},
    {L, 20, 2, 'D'}, /* 1 becomes a hole, 2 gets data */
    {L, 30, 0, 'E'}, /* 0 changes */
    /* neighbours, which no lookup of L may see */
    {L - 1, 50, 9, 'Y'},
    {L + 1, 1, 0, 'X'},
    {L + 1, 1, 2, 'Z'},
};

static int put_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
		uint8_t id[VBS_ID_LEN];
		int r;

		memset(id, ents[i].id, sizeof(id));
		r = vbs_idx_put(v, txn, ents[i].lineage, ents[i].serial, ents[i].n,
				ents[i].id ? id : NULL);
		if (r < 0)
			return r;
	}
	return 0;
}

static int bad_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	uint8_t key[VBS_IDX_KEY_LEN];
	MDB_val k = {sizeof(key), key}, d = {5, "short"};

	vbs_idx_key(key, L, 7, 40);
	return vbs_mdb_err(mdb_put(txn, v->dbi_idx, &k, &d, 0));
}

/* What chunk n shows as of serial, as a lookup does: the first entry at or after
 * (L, n, ~serial), if it is chunk n's. 0 for a hole, else the id's fill byte. */
static int at(vbs_vault *v, uint64_t serial, uint64_t n)
{
	uint8_t id[VBS_ID_LEN], want[VBS_ID_LEN];
	uint64_t en = 0, es = 0;
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val d;
	int data = 0, r;

	CHECK_EQ_INT(vbs_read_begin(v, &txn), 0);
	CHECK_EQ_INT(mdb_cursor_open(txn, v->dbi_idx, &c), 0);
	r = vbs_idx_seek(c, L, n, serial, &en, &es, &d);
	if (r == 1 && en == n) {
		CHECK(es <= serial);
		r = vbs_idx_value(&d, id, &data);
	} else if (r >= 0) {
		r = 0;
	}
	mdb_cursor_close(c);
	vbs_read_end(v, txn);
	if (r < 0)
		return r;
	if (!data)
		return 0;
	memset(want, id[0], sizeof(want));
	CHECK_EQ_MEM(id, want, sizeof(want));
	return id[0];
}

struct walked {
	uint64_t n[8];
	int id[8];
	size_t count;
};

static int walk_fn(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN])
{
	struct walked *w = arg;

	if (w->count < 8) {
		w->n[w->count] = n;
		w->id[w->count] = id[0];
	}
	w->count++;
	return 0;
}

static void versions(void)
{
	vbs_init_opts io = {0, 4096};
	char path[300];
	vbs_vault *v;
	MDB_txn *txn;
	MDB_cursor *c;
	uint64_t n;

	snprintf(path, sizeof(path), "%s/v", dir);
	CHECK_EQ_INT(vbs_vault_init(path, &io, NULL), 0);
	CHECK_EQ_INT(vbs_vault_open(path, 0, &v), 0);
	CHECK_EQ_INT(vbs_vault_open_env(v), 0);
	CHECK_EQ_INT(vbs_write(v, put_fn, NULL), 0);

	/* Before the first point: nothing. */
	for (n = 0; n < 4; n++)
		CHECK_EQ_INT(at(v, 9, n), 0);
	/* Each point sees the newest entry at or before it, per chunk. */
	CHECK_EQ_INT(at(v, 10, 0), 'A');
	CHECK_EQ_INT(at(v, 10, 1), 'B');
	CHECK_EQ_INT(at(v, 10, 2), 0);
	CHECK_EQ_INT(at(v, 10, 3), 'C');
	CHECK_EQ_INT(at(v, 15, 1), 'B');
	CHECK_EQ_INT(at(v, 20, 0), 'A');
	CHECK_EQ_INT(at(v, 20, 1), 0);
	CHECK_EQ_INT(at(v, 20, 2), 'D');
	CHECK_EQ_INT(at(v, 20, 3), 'C');
	CHECK_EQ_INT(at(v, 30, 0), 'E');
	CHECK_EQ_INT(at(v, 30, 1), 0);
	CHECK_EQ_INT(at(v, UINT64_MAX, 0), 'E');
	CHECK_EQ_INT(at(v, UINT64_MAX, 2), 'D');
	CHECK_EQ_INT(at(v, 30, 4), 0);
	CHECK_EQ_INT(at(v, 30, 9), 0); /* lineage L - 1 has 9; L does not */

	CHECK_EQ_INT(vbs_read_begin(v, &txn), 0);
	CHECK_EQ_INT(mdb_cursor_open(txn, v->dbi_idx, &c), 0);
	{
		uint64_t en = 0, es = 0;
		MDB_val d;
		int data = -1;

		/* Seeks land on the newest entry at or before the serial, or the next chunk's. */
		CHECK_EQ_INT(vbs_idx_seek(c, L, 1, 25, &en, &es, &d), 1);
		CHECK(en == 1 && es == 20);
		CHECK_EQ_INT(vbs_idx_value(&d, NULL, &data), 0);
		CHECK_EQ_INT(data, 0);
		CHECK_EQ_INT(vbs_idx_seek(c, L, 2, 15, &en, &es, &d), 1);
		CHECK(en == 3 && es == 10); /* 2 is newer than 15: the next chunk */
		/* Past the lineage's last entry: nothing, though lineage L + 1 follows. */
		CHECK_EQ_INT(vbs_idx_seek(c, L, 4, 30, &en, &es, &d), 0);
		CHECK_EQ_INT(vbs_idx_seek(c, L + 2, 0, 30, &en, &es, &d), 0);
	}
	mdb_cursor_close(c);
	{
		static const struct {
			uint64_t serial;
			size_t count;
			uint64_t n[4];
			int id[4];
		} want[] = {
		    {9, 0, {0}, {0}},
		    {10, 3, {0, 1, 3}, {'A', 'B', 'C'}},
		    {20, 3, {0, 2, 3}, {'A', 'D', 'C'}},
		    {30, 3, {0, 2, 3}, {'E', 'D', 'C'}},
		};

		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
			struct walked w = {{0}, {0}, 0};
			int ok = 1;

			CHECK_EQ_INT(vbs_idx_walk(v, txn, L, want[i].serial, walk_fn, &w), 0);
			CHECK_EQ_INT(w.count, want[i].count);
			for (size_t j = 0; j < want[i].count && j < w.count; j++)
				ok &= w.n[j] == want[i].n[j] && w.id[j] == want[i].id[j];
			CHECK(ok);
		}
	}
	vbs_read_end(v, txn);

	/* A value that is neither an id nor empty is damage. */
	CHECK_EQ_INT(vbs_write(v, bad_fn, NULL), 0);
	CHECK_EQ_INT(at(v, 40, 7), -EBADMSG);
	CHECK_EQ_INT(at(v, 40, 0), 'E');
	vbs_vault_close(v);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "%s/vmbak-index-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	RUN(keys);
	RUN(versions);
	return unit_finish();
}
