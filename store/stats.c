/* stats.c: a vault's totals for vmbak info (vbs_vault_stats_get, vault.h). A file of its own
 * because it asks every part of the vault (its records, the chunk store, the points' sizes):
 * in vault.c it made vault.c and rp.c call each other. */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "chunkstore.h"
#include "internal.h"
#include "rp_db.h"

static uint64_t free_pages(MDB_txn *txn)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t n = 0;

	/* The free list is database 0: values are arrays of page numbers, count first. */
	if (mdb_cursor_open(txn, 0, &c))
		return 0;
	while (mdb_cursor_get(c, &k, &d, MDB_NEXT) == 0)
		if (d.mv_size >= sizeof(size_t))
			n += *(const size_t *)d.mv_data;
	mdb_cursor_close(c);
	return n;
}

int vbs_vault_stats_get(vbs_vault *v, vbs_vault_stats *ret)
{
	vbs_vault_stats s = {0};
	MDB_txn *txn;
	MDB_stat ms;
	MDB_envinfo info;
	vbs_cs_stats cs;
	struct stat st;
	char file[4200];
	int r;

	vbs_clear_err();
	r = vbs_read_begin(v, &txn);
	if (r < 0)
		return r;
	if (vbs_cs_stats_get(v, txn, &cs) == 0) {
		s.chunks = cs.chunks;
		s.chunk_bytes = cs.bytes;
		s.chunk_raw_bytes = cs.plain_bytes;
	}
	if (mdb_stat(txn, v->dbi_vms, &ms) == 0)
		s.vms = ms.ms_entries;
	if (mdb_stat(txn, v->dbi_rps, &ms) == 0)
		s.rps = ms.ms_entries;
	mdb_env_info(v->env, &info);
	s.map_bytes = info.me_mapsize;
	mdb_env_stat(v->env, &ms);
	s.free_bytes = free_pages(txn) * ms.ms_psize;
	vbs_read_end(v, txn);

	r = vbs_rp_sum_sizes(v, &s.logical_bytes, &s.data_bytes);
	if (r < 0)
		return r;
	snprintf(file, sizeof(file), "%s/data.mdb", v->path);
	if (stat(file, &st) == 0) {
		s.file_bytes = (uint64_t)st.st_size;
		if (s.file_bytes > (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize)
			s.free_bytes +=
			    s.file_bytes - (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
	}
	*ret = s;
	return 0;
}
