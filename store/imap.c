/* imap.c: group MACs over the index and the checked chunk map of a disk (see imap.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "seal.h"

#define LABEL "vmbak-group v2"
#define SLOTS 4

uint64_t vbs_disk_chunks(uint64_t size, uint32_t cs)
{
	return size / cs + (size % cs != 0);
}

uint64_t vbs_disk_groups(uint64_t size, uint32_t cs)
{
	uint64_t n = vbs_disk_chunks(size, cs);
	return n / VBS_GROUP_CHUNKS + (n % VBS_GROUP_CHUNKS != 0);
}

int vbs_group_mac(vbs_vault *v, uint64_t lineage, uint64_t g, uint64_t nchunks,
		  const uint8_t (*ids)[VBS_ID_LEN], const uint8_t *data,
		  uint8_t mac[VBS_GROUP_MAC_LEN], uint64_t *ret_count)
{
	uint64_t first = g * VBS_GROUP_CHUNKS, count = 0;
	size_t pos = sizeof(LABEL) + 16, k, end;
	uint8_t h[VBK_HASH_LEN], *buf;
	int r;

	end = nchunks - first < VBS_GROUP_CHUNKS ? (size_t)(nchunks - first) : VBS_GROUP_CHUNKS;
	buf = malloc(sizeof(LABEL) + 16 + (size_t)VBS_GROUP_CHUNKS * (8 + VBS_ID_LEN) + 8);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, LABEL, sizeof(LABEL));
	vbs_put64(buf + sizeof(LABEL), lineage);
	vbs_put64(buf + sizeof(LABEL) + 8, g);
	for (k = 0; k < end; k++) {
		if (!data[k])
			continue;
		vbs_put64(buf + pos, first + k);
		memcpy(buf + pos + 8, ids[k], VBS_ID_LEN);
		pos += 8 + VBS_ID_LEN;
		count++;
	}
	vbs_put64(buf + pos, count);
	pos += 8;
	r = vbk_hmac_calc(v->idx_mac, buf, pos, h);
	free(buf);
	if (r < 0)
		return r;
	memcpy(mac, h, VBS_GROUP_MAC_LEN);
	if (ret_count)
		*ret_count = count;
	return 0;
}

int vbs_group_resolve(vbs_vault *v, MDB_cursor *c, uint64_t lineage, uint64_t serial,
		      uint64_t nchunks, uint64_t g, uint8_t mac[VBS_GROUP_MAC_LEN],
		      uint64_t *ret_count, uint8_t (*ids)[VBS_ID_LEN], uint8_t *data)
{
	uint64_t n = g * VBS_GROUP_CHUNKS, end = n + VBS_GROUP_CHUNKS;
	uint8_t (*own_ids)[VBS_ID_LEN] = NULL, *own_data = NULL;
	int r = 0;

	if (end > nchunks)
		end = nchunks;
	if (n >= end && g != 0)
		return -EINVAL;
	if (!ids) {
		ids = own_ids = malloc((size_t)VBS_GROUP_CHUNKS * VBS_ID_LEN);
		data = own_data = malloc(VBS_GROUP_CHUNKS);
		if (!own_ids || !own_data) {
			r = -ENOMEM;
			goto out;
		}
	}
	memset(data, 0, VBS_GROUP_CHUNKS);
	while (n < end) {
		uint64_t en, es;
		MDB_val d;
		int isdata;

		r = vbs_idx_seek(c, lineage, n, serial, &en, &es, &d);
		if (r <= 0)
			break;
		if (en > n) {
			n = en; /* holes before en; en itself may be newer than serial: seek again */
			continue;
		}
		if (es > serial) {
			r = -EBADMSG; /* the seek's key order says this cannot be */
			break;
		}
		r = vbs_idx_value(&d, ids[n % VBS_GROUP_CHUNKS], &isdata);
		if (r < 0)
			break;
		data[n % VBS_GROUP_CHUNKS] = (uint8_t)isdata;
		n++;
	}
	if (r >= 0)
		r = vbs_group_mac(v, lineage, g, nchunks, (const uint8_t (*)[VBS_ID_LEN])ids, data,
				  mac, ret_count);
out:
	free(own_ids);
	free(own_data);
	return r;
}

static void dmap_key(uint8_t k[10], uint64_t serial, unsigned disk)
{
	vbs_put64(k, serial);
	k[8] = (uint8_t)(disk >> 8);
	k[9] = (uint8_t)disk;
}

int vbs_dmap_get(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk, uint64_t ngroups,
		 uint8_t **ret)
{
	uint8_t k[10], *p = NULL;
	size_t len = 0;
	int r;

	dmap_key(k, serial, disk);
	r = vbs_sget(v, txn, v->dbi_dmaps, VBS_DB_DMAPS, k, sizeof(k), &p, &len);
	if (r < 0)
		return r;
	if (len / VBS_GROUP_MAC_LEN != ngroups || len % VBS_GROUP_MAC_LEN) {
		vbs_unsealed_free(p, len);
		return -EBADMSG;
	}
	*ret = p;
	return 0;
}

int vbs_dmap_put(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk, const uint8_t *macs,
		 uint64_t ngroups)
{
	uint8_t k[10];

	dmap_key(k, serial, disk);
	return vbs_sput(v, txn, v->dbi_dmaps, VBS_DB_DMAPS, k, sizeof(k), macs,
			(size_t)ngroups * VBS_GROUP_MAC_LEN, 0);
}

int vbs_dmap_del(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk)
{
	uint8_t k[10];
	MDB_val key = {sizeof(k), k};
	int rc;

	dmap_key(k, serial, disk);
	rc = mdb_del(txn, v->dbi_dmaps, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : vbs_mdb_err(rc);
}

/* ---- the checked map ---- */

struct slot {
	uint64_t g;
	uint64_t used; /* for LRU */
	uint8_t ids[VBS_GROUP_CHUNKS][VBS_ID_LEN];
	uint8_t data[VBS_GROUP_CHUNKS];
};

struct vbs_imap {
	vbs_vault *v;
	uint64_t serial, lineage, nchunks, ngroups;
	uint8_t *macs;
	pthread_mutex_t lock;
	uint64_t clock;
	struct slot *slots[SLOTS];
};

int vbs_imap_new(vbs_vault *v, MDB_txn *txn, uint64_t serial, unsigned disk, uint64_t lineage,
		 uint64_t size, vbs_imap **ret)
{
	vbs_imap *m = calloc(1, sizeof(*m));
	int r;

	if (!m)
		return -ENOMEM;
	m->v = v;
	m->serial = serial;
	m->lineage = lineage;
	m->nchunks = vbs_disk_chunks(size, v->chunk_size);
	m->ngroups = vbs_disk_groups(size, v->chunk_size);
	r = vbs_dmap_get(v, txn, serial, disk, m->ngroups, &m->macs);
	if (r < 0) {
		free(m);
		/* A point's disk without its map is damage, like a missing chunk. */
		return r == -ENOENT ? -EBADMSG : r;
	}
	pthread_mutex_init(&m->lock, NULL);
	*ret = m;
	return 0;
}

void vbs_imap_free(vbs_imap *m)
{
	if (!m)
		return;
	for (int i = 0; i < SLOTS; i++)
		free(m->slots[i]);
	free(m->macs);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

const uint8_t *vbs_imap_macs(const vbs_imap *m)
{
	return m->macs;
}

uint64_t vbs_imap_groups(const vbs_imap *m)
{
	return m->ngroups;
}

static int resolve_checked(vbs_imap *m, MDB_txn *txn, uint64_t g, struct slot *s,
			   uint64_t *ret_count)
{
	uint8_t mac[VBS_GROUP_MAC_LEN];
	MDB_cursor *c;
	int r, rc = mdb_cursor_open(txn, m->v->dbi_idx, &c);

	if (rc)
		return vbs_mdb_err(rc);
	r = vbs_group_resolve(m->v, c, m->lineage, m->serial, m->nchunks, g, mac, ret_count,
			      s ? s->ids : NULL, s ? s->data : NULL);
	mdb_cursor_close(c);
	if (r == 0 && !vbk_equal(mac, m->macs + g * VBS_GROUP_MAC_LEN, VBS_GROUP_MAC_LEN))
		r = -EBADMSG;
	return r;
}

int vbs_imap_group(vbs_imap *m, MDB_txn *txn, uint64_t g, uint8_t (*ids)[VBS_ID_LEN],
		   uint8_t *data)
{
	struct slot *s;
	int r;

	if (g >= m->ngroups)
		return -EINVAL;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = resolve_checked(m, txn, g, s, NULL);
	if (r == 0) {
		memcpy(ids, s->ids, sizeof(s->ids));
		memcpy(data, s->data, sizeof(s->data));
	}
	free(s);
	return r;
}

int vbs_imap_check(vbs_imap *m, MDB_txn *txn, uint64_t g, uint64_t *ret_count)
{
	if (g >= m->ngroups)
		return -EINVAL;
	return resolve_checked(m, txn, g, NULL, ret_count);
}

/* Copies what the checked group g says: of chunk k (ids/data NULL: of every chunk, into
 * data[VBS_GROUP_CHUNKS]), filling and caching the group first when no slot holds it. */
static int group_read(vbs_imap *m, MDB_txn *txn, uint64_t g, unsigned k, uint8_t *id,
		      uint8_t *data, int *ret_data)
{
	struct slot *s = NULL;
	int i, r;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < SLOTS && !s; i++)
		if (m->slots[i] && m->slots[i]->g == g)
			s = m->slots[i];
	if (s) {
		s->used = ++m->clock;
		goto copy;
	}
	pthread_mutex_unlock(&m->lock);

	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->g = g;
	r = resolve_checked(m, txn, g, s, NULL);
	if (r < 0) {
		free(s);
		return r;
	}
	pthread_mutex_lock(&m->lock);
	for (i = 0; i < SLOTS; i++)
		if (m->slots[i] && m->slots[i]->g == g)
			break;
	if (i < SLOTS) {
		/* Another thread filled it meanwhile: both are checked, keep that one. */
		free(s);
		s = m->slots[i];
	} else {
		int victim = 0;

		for (i = 0; i < SLOTS; i++) {
			if (!m->slots[i]) {
				victim = i;
				break;
			}
			if (m->slots[i]->used < m->slots[victim]->used)
				victim = i;
		}
		free(m->slots[victim]);
		m->slots[victim] = s;
	}
	s->used = ++m->clock;
copy:
	if (data) {
		memcpy(data, s->data, VBS_GROUP_CHUNKS);
	} else {
		*ret_data = s->data[k];
		if (id && s->data[k])
			memcpy(id, s->ids[k], VBS_ID_LEN);
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int vbs_imap_lookup(vbs_imap *m, MDB_txn *txn, uint64_t n, uint8_t id[VBS_ID_LEN], int *ret_data)
{
	if (n >= m->nchunks)
		return -EINVAL;
	return group_read(m, txn, n / VBS_GROUP_CHUNKS, (unsigned)(n % VBS_GROUP_CHUNKS), id, NULL,
			  ret_data);
}

int vbs_imap_next(vbs_imap *m, MDB_txn *txn, uint64_t n, int want_data, uint64_t *ret_n)
{
	uint8_t data[VBS_GROUP_CHUNKS];

	while (n < m->nchunks) {
		uint64_t g = n / VBS_GROUP_CHUNKS, end = (g + 1) * VBS_GROUP_CHUNKS;
		int r = group_read(m, txn, g, 0, NULL, data, NULL);

		if (r < 0)
			return r;
		if (end > m->nchunks)
			end = m->nchunks;
		for (; n < end; n++)
			if (!!data[n % VBS_GROUP_CHUNKS] == want_data) {
				*ret_n = n;
				return 0;
			}
	}
	*ret_n = m->nchunks;
	return 0;
}
