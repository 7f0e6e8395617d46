/* jobs_db.h: job records of jobs.c read inside a transaction (jobs2): store-private, for gc.c
 * (a gc's own job), upgrade.c (format 1 records) and verify_records.c. The public calls are
 * jobs.h's.
 */
#ifndef VMBAK_STORE_JOBS_DB_H
#define VMBAK_STORE_JOBS_DB_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "jobs.h"

/* A job record decoded without judging its process (jobs.h). */
struct vbs_job;
int vbs_job_decode_raw(uint64_t id, const void *data, size_t len, struct vbs_job *ret);
/* A sealed job record (jobs2): opened and decoded; load: by id in txn (-ENOENT none). */
int vbs_job_unseal(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		   struct vbs_job *ret);
int vbs_job_load(vbs_vault *v, MDB_txn *txn, uint64_t id, struct vbs_job *ret);
/* A job record sealed for jobs2 under j->id, as job_store would write it (sync.c seals the
 * records of a replica's sync job, which the replica cannot seal). *ret malloc'ed. */
int vbs_job_seal(vbs_vault *v, const struct vbs_job *j, uint8_t **ret, size_t *ret_len);
/* This process as a job record names it: pid, start time (clock ticks), boot id. */
void vbs_job_self(int32_t *ret_pid, uint64_t *ret_start, char ret_boot[40]);

#endif
