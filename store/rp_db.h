/* rp_db.h: the records of rp.c inside a transaction (vms2, rpnames2, rps2): store-private,
 * for the store/ files that read or write points in their own transactions (ingest, delete,
 * rewrap, upgrade, verify). The public calls, each in its own transaction, are rp.h's.
 */
#ifndef VMBAK_STORE_RP_DB_H
#define VMBAK_STORE_RP_DB_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "rp.h"

/* Recovery point records: JSON encoding, and reads and writes inside a transaction. */
int vbs_rp_encode(const struct vbs_rp *rp, char **ret, size_t *ret_len);
int vbs_rp_decode(const void *data, size_t len, struct vbs_rp **ret);
int vbs_rp_load(vbs_vault *v, MDB_txn *txn, uint64_t serial, struct vbs_rp **ret);
int vbs_rp_store(vbs_vault *v, MDB_txn *txn, const struct vbs_rp *rp);
/* 1 when vm already has a point called id. */
int vbs_rp_id_taken(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id);
/* Name records (rpnames2): the serial of vm/id (-ENOENT, -EBADMSG), a new one, removal. */
int vbs_name_find(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t *ret);
int vbs_name_put(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id, uint64_t serial);
int vbs_name_del(vbs_vault *v, MDB_txn *txn, const char *vm, const char *id);
/* The points of vm (ids and serials) sorted by id; free() *ret. */
struct vbs_name_entry;
int vbs_names_of(vbs_vault *v, MDB_txn *txn, const char *vm, struct vbs_name_entry **ret,
		 size_t *ret_n);
/* VM records (vms2): every VM sorted by name (free() *ret), one VM's number, removal. */
int vbs_vms_of(vbs_vault *v, MDB_txn *txn, struct vbs_name_entry **ret, size_t *ret_n);
int vbs_vm_find(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret);
/* Writes the VM record of vm: its number and creation time (ns). */
int vbs_vm_put(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t num, int64_t created_ns);
int vbs_vm_del(vbs_vault *v, MDB_txn *txn, const char *vm);
/* One raw record of vms2, rpnames2 (of VM vm) or rps2, opened and checked against its key
 * (verify_records.c walks them one by one): -EBADMSG when it does not open or does not match. */
int vbs_vm_open(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		char name[VBS_NAME_MAX + 1], uint64_t *ret_num);
int vbs_name_open(vbs_vault *v, const char *vm, const void *key, size_t klen, const void *val,
		  size_t vlen, char id[32], uint64_t *ret_serial);
int vbs_rp_open(vbs_vault *v, const void *key, size_t klen, const void *val, size_t vlen,
		struct vbs_rp **ret);
int vbs_rp_latest_serial(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret);
/* The VM's number, creating its record when new. */
int vbs_vm_ensure(vbs_vault *v, MDB_txn *txn, const char *vm, uint64_t *ret);
/* Keys of vms2 (H(vm)) and rpnames2 (H(vm) | H(vm NUL id)), for sync.c's raw copies. */
int vbs_vm_key(vbs_vault *v, const char *vm, uint8_t k[16]);
int vbs_rpname_key(vbs_vault *v, const char *vm, const char *id, uint8_t k[32]);

/* Sums over every point: virtual sizes of disks, and their data bytes (rp.c). */
int vbs_rp_sum_sizes(vbs_vault *v, uint64_t *ret_logical, uint64_t *ret_data);

#endif
