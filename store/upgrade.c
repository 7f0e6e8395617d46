/* upgrade.c: format 1 to format 2, in place (see upgrade.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap.h"
#include "index.h"
#include "internal.h"
#include "jobs_db.h"
#include "rp_db.h"
#include "jobs.h"
#include "rp.h"
#include "seal.h"
#include "upgrade.h"
#include "util.h"

static const char *const old_names[] = {"vms", "rps", "rpnames", "lineages", "jobs", "protect"};

struct up {
	vbs_upgrade_stats *st;
	MDB_dbi old_vms, old_rps, old_lineages, old_jobs, old_protect;
};

int vbs_vault_format(const vbs_vault *v)
{
	return v->format;
}

/* The format 2 tables, made empty (a run cut short may have left some). */
static int open_new(vbs_vault *v, MDB_txn *txn)
{
	struct {
		const char *name;
		MDB_dbi *dbi;
	} t[] = {{VBS_DB_VMS, &v->dbi_vms},	    {VBS_DB_RPS, &v->dbi_rps},
		 {VBS_DB_NAMES, &v->dbi_rpnames},   {VBS_DB_LINEAGES, &v->dbi_lineages},
		 {VBS_DB_JOBS, &v->dbi_jobs},	    {VBS_DB_PROTECT, &v->dbi_protect},
		 {VBS_DB_DMAPS, &v->dbi_dmaps}};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = mdb_dbi_open(txn, t[i].name, MDB_CREATE, t[i].dbi);
		if (!rc)
			rc = mdb_drop(txn, *t[i].dbi, 0);
		if (rc)
			return vbs_mdb_err(rc);
	}
	return 0;
}

typedef int (*each_fn)(vbs_vault *v, MDB_txn *txn, struct up *u, const MDB_val *k,
		       const MDB_val *d);

static int each(vbs_vault *v, MDB_txn *txn, struct up *u, MDB_dbi dbi, each_fn fn)
{
	MDB_cursor *c;
	MDB_val k, d;
	int rc, r = 0;

	if (!dbi)
		return 0;
	rc = mdb_cursor_open(txn, dbi, &c);
	if (rc)
		return vbs_mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
		r = fn(v, txn, u, &k, &d);
	mdb_cursor_close(c);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = vbs_mdb_err(rc);
	return r;
}

static int vm_fn(vbs_vault *v, MDB_txn *txn, struct up *u, const MDB_val *k, const MDB_val *d)
{
	char name[VBS_NAME_MAX + 1];

	if (k->mv_size == 0 || k->mv_size > VBS_NAME_MAX || d->mv_size != 16)
		return vbs_fail(-EBADMSG, "vault '%s': a format 1 VM record is damaged", v->path);
	memcpy(name, k->mv_data, k->mv_size);
	name[k->mv_size] = '\0';
	u->st->vms++;
	return vbs_vm_put(v, txn, name, vbs_get64(d->mv_data),
			  (int64_t)vbs_get64((uint8_t *)d->mv_data + 8));
}

static int lineage_fn(vbs_vault *v, MDB_txn *txn, struct up *u, const MDB_val *k,
		      const MDB_val *d)
{
	if (k->mv_size != 8 || d->mv_size != 16)
		return vbs_fail(-EBADMSG, "vault '%s': a format 1 lineage record is damaged",
				v->path);
	return vbs_lineage_set(v, txn, vbs_get64(k->mv_data), vbs_get64(d->mv_data),
			       vbs_get64((uint8_t *)d->mv_data + 8));
}

static int job_fn(vbs_vault *v, MDB_txn *txn, struct up *u, const MDB_val *k, const MDB_val *d)
{
	vbs_job j;

	if (k->mv_size != 8 || vbs_job_decode_raw(vbs_get64(k->mv_data), d->mv_data, d->mv_size,
						    &j) < 0)
		return vbs_fail(-EBADMSG, "vault '%s': a format 1 job record is damaged", v->path);
	u->st->jobs++;
	return vbs_sput(v, txn, v->dbi_jobs, VBS_DB_JOBS, k->mv_data, 8, d->mv_data, d->mv_size, 0);
}

static int protect_fn(vbs_vault *v, MDB_txn *txn, struct up *u, const MDB_val *k,
		      const MDB_val *d)
{
	if (k->mv_size != 8 || d->mv_size != 8)
		return vbs_fail(-EBADMSG, "vault '%s': a format 1 protection record is damaged",
				v->path);
	return vbs_sput(v, txn, v->dbi_protect, VBS_DB_PROTECT, k->mv_data, 8, d->mv_data, 8, 0);
}

/* A point: its record and name sealed, and the group MACs of each of its disks. */
static int rp_fn(vbs_vault *v, MDB_txn *txn, struct up *u, const MDB_val *k, const MDB_val *d)
{
	vbs_rp *rp = NULL;
	MDB_cursor *c = NULL;
	uint8_t *macs = NULL;
	int r = vbs_rp_decode(d->mv_data, d->mv_size, &rp), rc;

	if (r == 0 && (k->mv_size != 8 || rp->serial != vbs_get64(k->mv_data)))
		r = -EBADMSG;
	if (r < 0) {
		vbs_rp_free(rp);
		return vbs_fail(r, "vault '%s': the format 1 record of point %llu is damaged",
				v->path, k->mv_size == 8 ? (unsigned long long)vbs_get64(k->mv_data) : 0);
	}
	u->st->points++;
	r = vbs_rp_store(v, txn, rp);
	rc = r < 0 ? 0 : mdb_cursor_open(txn, v->dbi_idx, &c);
	if (rc)
		r = vbs_mdb_err(rc);
	for (size_t i = 0; r == 0 && i < rp->n_disks; i++) {
		const vbs_disk *dk = &rp->disks[i];
		uint64_t ng = vbs_disk_groups(dk->size, v->chunk_size), count = 0;
		uint64_t nch = vbs_disk_chunks(dk->size, v->chunk_size);

		macs = malloc(ng * VBS_GROUP_MAC_LEN);
		if (!macs) {
			r = -ENOMEM;
			break;
		}
		for (uint64_t g = 0; r == 0 && g < ng; g++) {
			uint64_t n = 0;
			r = vbs_group_resolve(v, c, dk->lineage, rp->serial, nch, g,
					      macs + g * VBS_GROUP_MAC_LEN, &n, NULL, NULL);
			count += n;
		}
		if (r == 0 && count != dk->data_chunks)
			r = vbs_fail(-EBADMSG,
				     "vault '%s': the index of disk '%s' of '%s/%s' holds %llu data "
				     "chunks, its record says %llu: refusing to certify it",
				     v->path, dk->name, rp->vm, rp->id, (unsigned long long)count,
				     (unsigned long long)dk->data_chunks);
		if (r == 0)
			r = vbs_dmap_put(v, txn, rp->serial, (unsigned)i, macs, ng);
		free(macs);
		macs = NULL;
	}
	if (c)
		mdb_cursor_close(c);
	vbs_rp_free(rp);
	return r;
}

static int build_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	struct up *u = arg;
	int r;

	memset(u->st, 0, sizeof(*u->st));
	u->st->from_format = 1;
	if ((r = open_new(v, txn)) < 0)
		return vbs_fail(r, "cannot write vault '%s': %s", v->path, vbu_strerror(-r));
	v->format = VBS_FORMAT_VERSION; /* what config_check seals */
	r = vbs_config_check(v, txn, 1);
	v->format = 1;
	if (r < 0)
		return r;
	if ((r = each(v, txn, u, u->old_vms, vm_fn)) < 0 ||
	    (r = each(v, txn, u, u->old_lineages, lineage_fn)) < 0 ||
	    (r = each(v, txn, u, u->old_jobs, job_fn)) < 0 ||
	    (r = each(v, txn, u, u->old_protect, protect_fn)) < 0 ||
	    (r = each(v, txn, u, u->old_rps, rp_fn)) < 0)
		return vbs_errmsg()[0] ? r
				       : vbs_fail(r, "cannot upgrade vault '%s': %s", v->path,
						  vbu_strerror(-r));
	return 0;
}

/* Drops the format 1 tables that exist. */
static int drop_fn(vbs_vault *v, MDB_txn *txn, void *arg)
{
	vbs_upgrade_stats *st = arg;

	for (size_t i = 0; i < sizeof(old_names) / sizeof(old_names[0]); i++) {
		MDB_dbi dbi;
		int rc = mdb_dbi_open(txn, old_names[i], 0, &dbi);

		if (rc == MDB_NOTFOUND)
			continue;
		if (!rc)
			rc = mdb_drop(txn, dbi, 1);
		if (rc)
			return vbs_fail(vbs_mdb_err(rc), "cannot drop table '%s' of vault '%s': %s",
					old_names[i], v->path, mdb_strerror(rc));
		st->dropped_old = 1;
	}
	return 0;
}

/* The pages the format 1 tables freed still hold their records in clear until reused: the
 * environment is copied without free pages and the copy renamed over data.mdb (nothing else
 * may use the vault meanwhile, as for the whole upgrade). */
static int compact(vbs_vault *v)
{
	char dir[4200], from[4300], to[4300];
	int fd, r = 0, rc;

	if (snprintf(dir, sizeof(dir), "%s/.upgrade-compact", v->path) >= (int)sizeof(dir))
		return vbs_fail(-ENAMETOOLONG, "vault path '%s' is too long", v->path);
	snprintf(from, sizeof(from), "%s/data.mdb", dir);
	snprintf(to, sizeof(to), "%s/data.mdb", v->path);
	unlink(from);
	rmdir(dir);
	if (mkdir(dir, 0700) < 0)
		return vbs_fail(-errno, "cannot create '%s': %s", dir, vbu_strerror(errno));
	rc = mdb_env_copy2(v->env, dir, MDB_CP_COMPACT);
	if (rc)
		r = vbs_fail(vbs_mdb_err(rc), "cannot compact vault '%s': %s", v->path,
			     mdb_strerror(rc));
	if (r == 0 && (fd = open(from, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (fchmod(fd, 0600) < 0 || fsync(fd) < 0)
			r = vbs_fail(-errno, "cannot sync '%s': %s", from, vbu_strerror(errno));
		close(fd);
	}
	if (r == 0) {
		vbs_vault_close_env(v);
		if (rename(from, to) < 0)
			r = vbs_fail(-errno, "cannot replace '%s': %s", to, vbu_strerror(errno));
		else if ((fd = open(v->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			fsync(fd);
			close(fd);
		}
	}
	unlink(from);
	rmdir(dir);
	return r;
}

/* What format 2 already holds beside a format 1 config: 0 nothing, 1 a whole format 2
 * database (an upgrade cut short after its transaction: finish it), or -EBADMSG format 2
 * tables whose sealed config does not match (a format 1 config put back over an upgraded
 * vault, with forged format 1 records: never rebuild from those). */
static int format2_state(vbs_vault *v)
{
	static const char *const names[] = {VBS_DB_RPS, VBS_DB_NAMES, VBS_DB_VMS, VBS_DB_DMAPS};
	MDB_txn *txn;
	int present = 0, r = vbs_read_begin(v, &txn);

	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		MDB_dbi dbi;
		if (mdb_dbi_open(txn, names[i], 0, &dbi) == 0)
			present = 1;
	}
	{
		MDB_val k = {6, "config"}, d;
		if (mdb_get(txn, v->dbi_meta, &k, &d) == 0)
			present = 1;
	}
	if (present) {
		v->format = VBS_FORMAT_VERSION;
		r = vbs_config_check(v, txn, 0);
		v->format = 1;
		r = r == 0 ? 1 : -EBADMSG;
	}
	vbs_read_end(v, txn);
	if (r == -EBADMSG)
		return vbs_fail(r, "vault '%s' has a format 1 config but format 2 tables that do not "
				"match it: its config was replaced (by an old copy?); refusing to upgrade "
				"(put the format 2 config back)",
				v->path);
	return r;
}

int vbs_vault_upgrade(vbs_vault *v, const char *pass, vbs_upgrade_stats *ret)
{
	vbs_upgrade_stats st = {.from_format = v->format};
	struct up u = {&st};
	int r, state = 0;

	vbs_clear_err();
	if (v->readonly)
		return vbs_fail(-EROFS, "vault '%s' is open read-only", v->path);
	if (!v->unlocked)
		return vbs_fail(-ENOKEY, "vault '%s' needs a passphrase", v->path);
	if (v->format == 1) {
		/* Judged read-only first: a refusal leaves every byte as it was. */
		v->readonly = 1;
		r = vbs_env_open_any(v);
		state = r < 0 ? r : format2_state(v);
		vbs_vault_close_env(v);
		v->readonly = 0;
		if (state < 0)
			return state;
	}
	r = vbs_env_open_any(v);
	if (r < 0)
		return r;
	if (v->format == 1) {
		u.old_vms = v->dbi_vms;
		u.old_rps = v->dbi_rps;
		u.old_lineages = v->dbi_lineages;
		u.old_jobs = v->dbi_jobs;
		u.old_protect = v->dbi_protect;
		r = state;
		if (r == 0)
			r = vbs_write(v, build_fn, &u);
		if (r < 0)
			return r;
		st.from_format = 1;
		st.finished = r == 1;
		r = vbs_config_upgrade(v, pass);
		if (r < 0)
			return r;
	}
	r = vbs_write(v, drop_fn, &st);
	if (r == 0 && st.dropped_old)
		r = compact(v);
	if (r < 0)
		return r;
	*ret = st;
	return 0;
}
