/* imap.c: group MACs over the index and the checked chunk map of a disk (see imap.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "seal.h"

#define LABEL "vmbak-group v2"

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

/* Checked groups are cached for the whole vault, keyed by (lineage, group, MAC): a MAC names
 * the group's content, so one entry serves every point that has the same group (an unchanged
 * group of a later point, another open image of the same disk). A fixed number of entries,
 * least recently used out; a hash table finds them. */
#define GC_BYTES (32u << 20)

struct gslot {
	uint64_t lineage, g, used;
	uint8_t mac[VBS_GROUP_MAC_LEN];
	struct gslot *next; /* hash chain */
	uint8_t ids[VBS_GROUP_CHUNKS][VBS_ID_LEN];
	uint8_t data[VBS_GROUP_CHUNKS];
};

struct vbs_gcache {
	pthread_mutex_t lock;
	size_t cap, n, nb;
	uint64_t clock;
	struct gslot **buckets;
};

static pthread_mutex_t gcache_init = PTHREAD_MUTEX_INITIALIZER;

void vbs_gcache_free(struct vbs_gcache *c)
{
	if (!c)
		return;
	for (size_t b = 0; b < c->nb; b++)
		for (struct gslot *s = c->buckets[b], *next; s; s = next) {
			next = s->next;
			free(s);
		}
	free(c->buckets);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static struct vbs_gcache *gcache_get(vbs_vault *v)
{
	struct vbs_gcache *c;

	pthread_mutex_lock(&gcache_init);
	c = v->gcache;
	if (!c && (c = calloc(1, sizeof(*c)))) {
		c->cap = GC_BYTES / sizeof(struct gslot);
		c->nb = 2 * c->cap;
		c->buckets = calloc(c->nb, sizeof(*c->buckets));
		if (!c->buckets) {
			free(c);
			c = NULL;
		} else {
			pthread_mutex_init(&c->lock, NULL);
			v->gcache = c;
		}
	}
	pthread_mutex_unlock(&gcache_init);
	return c;
}

static size_t gbucket(const struct vbs_gcache *c, uint64_t lineage, uint64_t g,
		      const uint8_t *mac)
{
	uint64_t h = lineage * 0x9e3779b97f4a7c15ull ^ g * 0xc2b2ae3d27d4eb4full;

	h ^= (uint64_t)mac[0] | (uint64_t)mac[1] << 8 | (uint64_t)mac[2] << 16 |
	     (uint64_t)mac[3] << 24;
	return (size_t)(h % c->nb);
}

/* Under c->lock. */
static struct gslot *gfind(struct vbs_gcache *c, uint64_t lineage, uint64_t g, const uint8_t *mac)
{
	for (struct gslot *s = c->buckets[gbucket(c, lineage, g, mac)]; s; s = s->next)
		if (s->lineage == lineage && s->g == g && memcmp(s->mac, mac, VBS_GROUP_MAC_LEN) == 0)
			return s;
	return NULL;
}

/* Under c->lock: drops the least recently used entry. */
static void gevict(struct vbs_gcache *c)
{
	struct gslot **victim = NULL;

	for (size_t b = 0; b < c->nb; b++)
		for (struct gslot **pp = &c->buckets[b]; *pp; pp = &(*pp)->next)
			if (!victim || (*pp)->used < (*victim)->used)
				victim = pp;
	if (victim) {
		struct gslot *s = *victim;
		*victim = s->next;
		free(s);
		c->n--;
	}
}

struct vbs_imap {
	vbs_vault *v;
	uint64_t serial, lineage, nchunks, ngroups;
	uint8_t *macs;
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
	*ret = m;
	return 0;
}

void vbs_imap_free(vbs_imap *m)
{
	if (!m)
		return;
	free(m->macs);
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

/* Resolves group g as of the map's point and checks it against its MAC. */
static int resolve_checked(vbs_imap *m, MDB_txn *txn, uint64_t g, uint8_t (*ids)[VBS_ID_LEN],
			   uint8_t *data, uint64_t *ret_count)
{
	uint8_t mac[VBS_GROUP_MAC_LEN];
	MDB_cursor *c;
	int r, rc = mdb_cursor_open(txn, m->v->dbi_idx, &c);

	if (rc)
		return vbs_mdb_err(rc);
	r = vbs_group_resolve(m->v, c, m->lineage, m->serial, m->nchunks, g, mac, ret_count, ids,
			      data);
	mdb_cursor_close(c);
	if (r == 0 && !vbk_equal(mac, m->macs + g * VBS_GROUP_MAC_LEN, VBS_GROUP_MAC_LEN))
		r = -EBADMSG;
	return r;
}

int vbs_imap_group(vbs_imap *m, MDB_txn *txn, uint64_t g, uint8_t (*ids)[VBS_ID_LEN],
		   uint8_t *data)
{
	if (g >= m->ngroups)
		return -EINVAL;
	return resolve_checked(m, txn, g, ids, data, NULL);
}

int vbs_imap_check(vbs_imap *m, MDB_txn *txn, uint64_t g, uint64_t *ret_count)
{
	if (g >= m->ngroups)
		return -EINVAL;
	return resolve_checked(m, txn, g, NULL, NULL, ret_count);
}

/* Copies what the checked group g says: of chunk k (data NULL), or of every chunk into
 * data[VBS_GROUP_CHUNKS]; fills and caches the group first when the cache lacks it. */
static int group_read(vbs_imap *m, MDB_txn *txn, uint64_t g, unsigned k, uint8_t *id,
		      uint8_t *data, int *ret_data)
{
	const uint8_t *mac = m->macs + g * VBS_GROUP_MAC_LEN;
	struct vbs_gcache *c = gcache_get(m->v);
	struct gslot *s = NULL, *have;
	int r;

	if (!c)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	s = gfind(c, m->lineage, g, mac);
	if (s) {
		s->used = ++c->clock;
		goto copy;
	}
	pthread_mutex_unlock(&c->lock);

	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lineage = m->lineage;
	s->g = g;
	memcpy(s->mac, mac, VBS_GROUP_MAC_LEN);
	r = resolve_checked(m, txn, g, s->ids, s->data, NULL);
	if (r < 0) {
		free(s);
		return r;
	}
	pthread_mutex_lock(&c->lock);
	have = gfind(c, m->lineage, g, mac);
	if (have) {
		/* Another thread filled it meanwhile: both are checked, keep that one. */
		free(s);
		s = have;
	} else {
		size_t b = gbucket(c, m->lineage, g, mac);

		if (c->n >= c->cap)
			gevict(c);
		s->next = c->buckets[b];
		c->buckets[b] = s;
		c->n++;
	}
	s->used = ++c->clock;
copy:
	if (data) {
		memcpy(data, s->data, VBS_GROUP_CHUNKS);
	} else {
		*ret_data = s->data[k];
		if (id && s->data[k])
			memcpy(id, s->ids[k], VBS_ID_LEN);
	}
	pthread_mutex_unlock(&c->lock);
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
