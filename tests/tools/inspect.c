/* vbk-inspect: what a test needs to know of a vault's sealed records, to damage it on purpose.
 *
 *   vbk-inspect VAULT VM RP DISK
 *
 * prints "serial S lineage L disk D" for the disk of the point (RP may be "latest"), then one
 * line "N IDHEX" for every chunk of it that holds data, as the index says (not checked: the
 * tests damage what this prints). The passphrase comes from VMBAK_PASSPHRASE_FILE or
 * VMBAK_PASSPHRASE.
 *
 *   vbk-inspect raw VAULT put DB KEYHEX [VALHEX]     (no VALHEX: an empty value)
 *   vbk-inspect raw VAULT del DB KEYHEX
 *
 * writes or removes one entry of a named database with liblmdb alone, as someone without the
 * passphrase can. Built with the tests, never installed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "internal.h"
#include "passphrase.h"
#include "rp.h"

static int print_cb(void *arg, uint64_t n, const uint8_t id[VBS_ID_LEN])
{
	printf("%llu ", (unsigned long long)n);
	for (int i = 0; i < VBS_ID_LEN; i++)
		printf("%02x", id[i]);
	printf("\n");
	return 0;
}

static int unhex(const char *s, uint8_t **ret, size_t *ret_len)
{
	size_t n = strlen(s) / 2;
	uint8_t *p = malloc(n ? n : 1);

	if (!p || strlen(s) % 2)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned x;
		if (sscanf(s + 2 * i, "%2x", &x) != 1)
			return -EINVAL;
		p[i] = (uint8_t)x;
	}
	*ret = p;
	*ret_len = n;
	return 0;
}

static int raw(int argc, char **argv)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k, d = {0, ""};
	uint8_t *kb = NULL, *vb = NULL;
	size_t kl, vl;
	int rc, put;

	if (argc < 6 || (strcmp(argv[3], "put") && strcmp(argv[3], "del")) ||
	    unhex(argv[5], &kb, &kl) < 0 || (argc > 6 && unhex(argv[6], &vb, &vl) < 0)) {
		fprintf(stderr, "usage: vbk-inspect raw VAULT put|del DB KEYHEX [VALHEX]\n");
		return 2;
	}
	put = strcmp(argv[3], "put") == 0;
	k = (MDB_val){kl, kb};
	if (vb)
		d = (MDB_val){vl, vb};
	if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 32)) ||
	    (rc = mdb_env_set_mapsize(env, (size_t)64 << 30)) ||
	    (rc = mdb_env_open(env, argv[2], 0, 0600)) || (rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, argv[4], 0, &dbi)) ||
	    (rc = put ? mdb_put(txn, dbi, &k, &d, 0) : mdb_del(txn, dbi, &k, NULL))) {
		if (txn)
			mdb_txn_abort(txn);
	} else {
		rc = mdb_txn_commit(txn); /* frees txn either way */
	}
	if (rc)
		fprintf(stderr, "vbk-inspect: %s\n", mdb_strerror(rc));
	mdb_env_close(env);
	free(kb);
	free(vb);
	return rc != 0;
}

int main(int argc, char **argv)
{
	vbk_passphrase_source src = {.env_file = "VMBAK_PASSPHRASE_FILE",
				     .env_value = "VMBAK_PASSPHRASE"};
	vbs_vault *v = NULL;
	vbs_rp *rp = NULL;
	MDB_txn *txn = NULL;
	char *pass = NULL;
	int r;

	if (argc > 1 && strcmp(argv[1], "raw") == 0)
		return raw(argc, argv);
	if (argc != 5) {
		fprintf(stderr, "usage: vbk-inspect VAULT VM RP DISK\n");
		return 2;
	}
	r = vbs_vault_open(argv[1], 1, &v);
	if (r == 0 && vbs_vault_needs_passphrase(v)) {
		r = vbk_passphrase_get(&src, &pass, NULL);
		if (r == 0)
			r = vbs_vault_unlock(v, pass);
		vbk_passphrase_free(pass);
	}
	if (r == 0)
		r = vbs_vault_open_env(v);
	if (r == 0)
		r = strcmp(argv[3], "latest") == 0 ? vbs_rp_latest(v, argv[2], &rp)
						   : vbs_rp_get(v, argv[2], argv[3], &rp);
	if (r == 0)
		r = vbs_read_begin(v, &txn);
	for (size_t i = 0; r == 0 && i < rp->n_disks; i++) {
		if (strcmp(rp->disks[i].name, argv[4]) != 0)
			continue;
		printf("serial %llu lineage %llu disk %zu\n", (unsigned long long)rp->serial,
		       (unsigned long long)rp->disks[i].lineage, i);
		r = vbs_idx_walk(v, txn, rp->disks[i].lineage, rp->serial, print_cb, NULL);
		break;
	}
	if (txn)
		vbs_read_end(v, txn);
	if (r < 0)
		fprintf(stderr, "vbk-inspect: %s (%s)\n", vbs_errmsg(), strerror(-r));
	vbs_rp_free(rp);
	vbs_vault_close(v);
	return r < 0;
}
