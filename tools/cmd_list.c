/* cmd_list.c: vmbak list and vmbak info, reading a vault's records.
 *
 * Both only read records, which are not encrypted: they never ask for a passphrase, and they
 * open the environment read-only, so they run beside an ingest or a mount.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lifecycle.h"
#include "rp.h"
#include "util.h"
#include "vault.h"

#define LIST_USAGE "vmbak list VAULT [VM] [--json]"
#define INFO_USAGE "vmbak info VAULT [VM[/RP]] [--json]"

static const char list_help[] =
    "usage: " LIST_USAGE "\n"
    "\n"
    "Lists the recovery points of every VM in VAULT, or of the VM named VM, sorted by VM\n"
    "and time.\n"
    "\n"
    "options:\n"
    "  --json                  print one JSON array of points (vm, id, serial, created,\n"
    "                          retain_until, parent, damaged (only when a verify found the\n"
    "                          point damaged), disks [{name, size, data_bytes}], escrow)\n"
    "  -h, --help              show this help\n";

static const char info_help[] =
    "usage: " INFO_USAGE "\n"
    "\n"
    "Describes VAULT (format, encryption, chunk size, counts, stored, logical and data\n"
    "sizes, dedup and compression ratios), or with VM/RP one recovery point and its disks;\n"
    "VM alone, or VM/latest, is the VM's latest point.\n"
    "\n"
    "options:\n"
    "  --json                  print one JSON object, sizes in bytes\n"
    "  -h, --help              show this help\n";

static uint64_t rp_size(const vbs_rp *rp)
{
	uint64_t s = 0;
	size_t i;

	for (i = 0; i < rp->n_disks; i++)
		s += rp->disks[i].size;
	return s;
}

/* "YYYY-MM-DD" for a retention at midnight UTC (as --retain-until sets it), else the time. */
static const char *retain_text(int64_t t, char buf[21])
{
	if (t == 0)
		return "-";
	vbu_format_time(t, buf);
	if (strcmp(buf + 10, "T00:00:00Z") == 0)
		buf[10] = '\0';
	return buf;
}

/* The vault being listed, for the protection flags (kept beside the records: lifecycle.h). */
static vbs_vault *list_vault;

static int is_protected(const vbs_rp *rp)
{
	return list_vault && vbs_rp_protected(list_vault, rp->serial, NULL) > 0;
}

static json_object *rp_file_json(const vbs_rp *rp, enum vbs_rp_file_kind k)
{
	json_object *o;

	if (!rp->files[k].data || !(o = json_object_new_object()))
		return NULL;
	json_object_object_add(o, "file", json_object_new_string(vbs_rp_file_name(k)));
	json_object_object_add(o, "size", json_u64(rp->files[k].len));
	return o;
}

/* One point as JSON; detail adds what info shows. NULL when out of memory. */
static json_object *rp_json(const vbs_rp *rp, int detail)
{
	json_object *o = json_object_new_object();
	json_object *disks = json_object_new_array();
	json_object *escrow = json_object_new_array();
	char retain[21];
	size_t i;

	if (!o || !disks || !escrow) {
		json_object_put(o);
		json_object_put(disks);
		json_object_put(escrow);
		return NULL;
	}
	json_object_object_add(o, "vm", json_object_new_string(rp->vm));
	json_object_object_add(o, "id", json_object_new_string(rp->id));
	json_object_object_add(o, "serial", json_u64(rp->serial));
	json_object_object_add(o, "created", json_time(rp->created_ns / 1000000000));
	/* As in manifest.json: the date, as --retain-until gave it. */
	json_object_object_add(o, "retain_until",
			       rp->retain_until
				   ? json_object_new_string(retain_text(rp->retain_until, retain))
				   : NULL);
	json_object_object_add(o, "parent", json_str_or_null(rp->parent));
	json_object_object_add(o, "protected", json_object_new_boolean(is_protected(rp)));
	if (rp->damaged)
		json_object_object_add(o, "damaged", json_time(rp->damaged));
	if (detail)
		json_object_object_add(o, "chunk_size", json_u64(rp->chunk_size));
	for (i = 0; i < rp->n_disks; i++) {
		const vbs_disk *d = &rp->disks[i];
		json_object *jd = json_object_new_object();

		if (!jd)
			continue;
		json_object_object_add(jd, "name", json_object_new_string(d->name));
		json_object_object_add(jd, "size", json_u64(d->size));
		json_object_object_add(jd, "data_bytes", json_u64(vbs_disk_data_bytes(rp, d)));
		if (detail) {
			json_object_object_add(jd, "data_chunks", json_u64(d->data_chunks));
			json_object_object_add(jd, "read_bytes", json_u64(d->read_bytes));
			json_object_object_add(jd, "new_chunks", json_u64(d->new_chunks));
			json_object_object_add(jd, "new_bytes", json_u64(d->new_bytes));
			json_object_object_add(jd, "incremental",
					       json_object_new_boolean(d->incremental));
			json_object_object_add(jd, "escrow", json_object_new_boolean(!!d->escrow));
		}
		json_object_array_add(disks, jd);
		if (d->escrow)
			json_object_array_add(escrow, json_object_new_string(d->name));
	}
	json_object_object_add(o, "disks", disks);
	json_object_object_add(o, "escrow", escrow);
	/* The VM's configuration kept with the point: {file, size} as in manifest.json. */
	json_object_object_add(o, "config", rp_file_json(rp, VBS_RP_CONFIG));
	json_object_object_add(o, "domain_xml", rp_file_json(rp, VBS_RP_DOMAIN_XML));
	json_object_object_add(o, "source", vbs_rp_source_json(rp));
	return o;
}

static int print_list_table(vbs_rp **list, size_t n)
{
	int w_vm = 2, w_id = 2;
	size_t i;

	for (i = 0; i < n; i++) {
		int l = (int)strlen(list[i]->vm);

		if (l > w_vm)
			w_vm = l;
		l = (int)strlen(list[i]->id);
		if (l > w_id)
			w_id = l;
	}
	printf("%-*s  %-*s  %5s  %10s  %-10s  %s\n", w_vm, "VM", w_id, "ID", "DISKS", "SIZE",
	       "RETAIN", "PROTECTED");
	for (i = 0; i < n; i++) {
		char hs[HUMAN_SIZE_LEN], ts[21];

		printf("%-*s  %-*s  %5zu  %10s  %-10s  %s\n", w_vm, list[i]->vm, w_id, list[i]->id,
		       list[i]->n_disks, human_size(rp_size(list[i]), hs),
		       retain_text(list[i]->retain_until, ts), is_protected(list[i]) ? "yes" : "-");
	}
	return VMBAK_EXIT_OK;
}

static int print_list_json(vbs_rp **list, size_t n)
{
	json_object *arr = json_object_new_array();
	size_t i;

	if (!arr)
		goto nomem;
	for (i = 0; i < n; i++) {
		json_object *o = rp_json(list[i], 0);

		if (!o || json_object_array_add(arr, o) < 0) {
			json_object_put(o);
			json_object_put(arr);
			goto nomem;
		}
	}
	return json_print(arr);
nomem:
	vbu_errno(-ENOMEM, "cannot list");
	return VMBAK_EXIT_FAIL;
}

/* The options of list and info. */
typedef struct list_opts {
	int json;
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX]; /* info VM[/RP] */
} list_opts;

static const struct option json_options[] = {
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

static int json_option(verb_ctx *c, int opt, const char *arg)
{
	(void)arg;
	if (opt != 'j')
		return VMBAK_EXIT_USAGE;
	((list_opts *)c->opts)->json = 1;
	return 0;
}

static int list_check(verb_ctx *c)
{
	return c->nargs > 1 ? check_name_arg("VM", c->args[1]) : 0;
}

static int cmd_list(verb_ctx *c)
{
	const char *path = c->args[0], *vm = c->nargs > 1 ? c->args[1] : NULL;
	vbs_vault *v = c->v;
	vbs_rp **list = NULL;
	size_t n = 0;
	int r, status;

	list_vault = v;
	r = vbs_rp_list(v, vm, &list, &n);
	if ((r == -ENOENT && vm) || (r >= 0 && vm && n == 0)) {
		vbu_err("no VM '%s' in vault '%s'", vm, q(path));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (r < 0) {
		status = store_err(r, "cannot list vault '%s'", q(path));
		goto out;
	}
	status =
	    ((list_opts *)c->opts)->json ? print_list_json(list, n) : print_list_table(list, n);
out:
	vbs_rp_list_free(list, n);
	return status;
}

static const char *const list_args[] = {"VAULT", "VM"};

const vmbak_cmd cmd_list_def = {
    .name = "list",
    .summary = "list recovery points",
    .help = list_help,
    .usage = LIST_USAGE,
    .arg_names = list_args,
    .min_args = 1,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT,
    .options = json_options,
    .opts_size = sizeof(list_opts),
    .option = json_option,
    .check = list_check,
    .run = cmd_list,
};

/* "3.75", or NULL when the denominator is 0; into buf. */
static const char *ratio_text(uint64_t num, uint64_t den, char buf[32])
{
	if (den == 0)
		return NULL;
	snprintf(buf, 32, "%.2f", (double)num / (double)den);
	return buf;
}

static json_object *json_ratio(uint64_t num, uint64_t den)
{
	char buf[32];
	const char *s = ratio_text(num, den, buf);

	return s ? json_object_new_double_s(strtod(s, NULL), s) : NULL;
}

static int print_vault_info(vbs_vault *v, const vbs_vault_stats *st, int json)
{
	const char *enc = vbs_vault_encrypted(v) ? "aes-256-gcm" : "none";
	char h[6][HUMAN_SIZE_LEN], r1[32], r2[32];
	const char *dedup, *comp, *pool, *ns;
	const char *store = vbs_vault_chunk_store(v, &pool, &ns);

	if (json) {
		json_object *o = json_object_new_object();

		if (!o) {
			vbu_errno(-ENOMEM, "cannot describe the vault");
			return VMBAK_EXIT_FAIL;
		}
		json_object_object_add(o, "path", json_object_new_string(vbs_vault_path(v)));
		json_object_object_add(o, "uuid", json_object_new_string(vbs_vault_uuid(v)));
		json_object_object_add(o, "format", json_object_new_string(VBS_FORMAT_NAME));
		json_object_object_add(o, "format_version",
				       json_object_new_int(VBS_FORMAT_VERSION));
		json_object_object_add(o, "encryption", json_object_new_string(enc));
		json_object_object_add(
		    o, "dedup_scope",
		    json_object_new_string(vbs_vault_dedup_vm(v) ? "vm" : "vault"));
		json_object_object_add(o, "replica", json_object_new_boolean(vbs_vault_replica(v)));
		json_object_object_add(o, "chunk_size", json_u64(vbs_vault_chunk_size(v)));
		json_object_object_add(o, "chunk_store", json_object_new_string(store));
		if (pool) {
			json_object_object_add(o, "ceph_pool", json_object_new_string(pool));
			json_object_object_add(o, "ceph_namespace", json_object_new_string(ns));
		}
		json_object_object_add(o, "vms", json_u64(st->vms));
		json_object_object_add(o, "points", json_u64(st->rps));
		json_object_object_add(o, "chunks", json_u64(st->chunks));
		json_object_object_add(o, "chunk_bytes", json_u64(st->chunk_bytes));
		json_object_object_add(o, "chunk_raw_bytes", json_u64(st->chunk_raw_bytes));
		json_object_object_add(o, "logical_bytes", json_u64(st->logical_bytes));
		json_object_object_add(o, "data_bytes", json_u64(st->data_bytes));
		json_object_object_add(o, "dedup_ratio",
				       json_ratio(st->data_bytes, st->chunk_raw_bytes));
		json_object_object_add(o, "compression_ratio",
				       json_ratio(st->chunk_raw_bytes, st->chunk_bytes));
		json_object_object_add(o, "file_bytes", json_u64(st->file_bytes));
		json_object_object_add(o, "map_bytes", json_u64(st->map_bytes));
		json_object_object_add(o, "free_bytes", json_u64(st->free_bytes));
		return json_print(o);
	}
	dedup = ratio_text(st->data_bytes, st->chunk_raw_bytes, r1);
	comp = ratio_text(st->chunk_raw_bytes, st->chunk_bytes, r2);
	printf("vault:             %s\n", vbs_vault_path(v));
	printf("uuid:              %s\n", vbs_vault_uuid(v));
	printf("format:            %s %d\n", VBS_FORMAT_NAME, VBS_FORMAT_VERSION);
	printf("encryption:        %s\n", enc);
	printf("dedup scope:       %s\n", vbs_vault_dedup_vm(v) ? "vm" : "vault");
	if (vbs_vault_replica(v))
		printf("replica:           yes (points come by vmbak sync from vault %s)\n",
		       vbs_vault_uuid(v));
	printf("chunk size:        %s (%u bytes)\n", human_size(vbs_vault_chunk_size(v), h[0]),
	       vbs_vault_chunk_size(v));
	if (pool)
		printf("chunk store:       rados (ceph pool '%s', namespace '%s')\n", pool, ns);
	else
		printf("chunk store:       %s (in the vault's data.mdb)\n", store);
	printf("VMs:               %llu\n", (unsigned long long)st->vms);
	printf("points:            %llu\n", (unsigned long long)st->rps);
	printf("chunks stored:     %llu\n", (unsigned long long)st->chunks);
	printf("stored:            %s (chunks as stored, compressed%s)\n",
	       human_size(st->chunk_bytes, h[1]), vbs_vault_encrypted(v) ? " and encrypted" : "");
	printf("unique data:       %s (chunks before compression)\n",
	       human_size(st->chunk_raw_bytes, h[2]));
	printf("logical:           %s (disk sizes of all points)\n",
	       human_size(st->logical_bytes, h[3]));
	printf("data:              %s (non-hole data of all points)\n",
	       human_size(st->data_bytes, h[4]));
	printf("dedup ratio:       %s\n", dedup ? dedup : "-");
	printf("compression ratio: %s\n", comp ? comp : "-");
	printf("file size:         %s, %s free for reuse\n", human_size(st->file_bytes, h[5]),
	       human_size(st->free_bytes, h[0]));
	return VMBAK_EXIT_OK;
}

static int print_rp_info(const vbs_rp *rp, int json)
{
	char h[5][HUMAN_SIZE_LEN], ts[21], rs[21];
	size_t i;
	int w = 4, any_escrow = 0;

	if (json) {
		json_object *o = rp_json(rp, 1);

		if (!o) {
			vbu_errno(-ENOMEM, "cannot describe point '%s'", rp->id);
			return VMBAK_EXIT_FAIL;
		}
		return json_print(o);
	}
	vbu_format_time(rp->created_ns / 1000000000, ts);
	printf("vm:           %s\n", rp->vm);
	printf("point:        %s\n", rp->id);
	printf("serial:       %llu\n", (unsigned long long)rp->serial);
	printf("created:      %s\n", ts);
	printf("retain until: %s\n", retain_text(rp->retain_until, rs));
	printf("protected:    %s\n", is_protected(rp) ? "yes" : "no");
	if (rp->damaged) {
		vbu_format_time(rp->damaged, rs);
		printf("damaged:      found by a verify at %s\n", rs);
	}
	printf("parent:       %s\n", rp->parent[0] ? rp->parent : "-");
	printf("chunk size:   %s\n", human_size(rp->chunk_size, h[0]));
	printf("size:         %s in %zu disk%s\n", human_size(rp_size(rp), h[0]), rp->n_disks,
	       rp->n_disks == 1 ? "" : "s");
	printf("escrow:       ");
	for (i = 0; i < rp->n_disks; i++) {
		if (!rp->disks[i].escrow)
			continue;
		printf("%s%s", any_escrow ? ", " : "", rp->disks[i].name);
		any_escrow = 1;
	}
	printf("%s\n", any_escrow ? "" : "-");
	for (int k = 0; k < VBS_RP_FILES; k++)
		if (rp->files[k].data)
			printf("%-13s %s (%zu bytes)\n",
			       k == VBS_RP_CONFIG ? "config:" : "domain xml:", vbs_rp_file_name(k),
			       rp->files[k].len);
	if (rp->source.kind[0]) {
		printf("source:       %s '%s', %s read", rp->source.kind, rp->source.origin,
		       rp->source.read);
		if (rp->source.since[0])
			printf(" since checkpoint %s", rp->source.since);
		if (rp->source.why_full[0])
			printf(" (%s)", rp->source.why_full);
		printf("\n");
		if (rp->source.checkpoint[0])
			printf("checkpoint:   %s\n", rp->source.checkpoint);
	}
	printf("\n");

	for (i = 0; i < rp->n_disks; i++)
		if ((int)strlen(rp->disks[i].name) > w)
			w = (int)strlen(rp->disks[i].name);
	printf("%-*s  %10s  %10s  %10s  %10s  %10s\n", w, "DISK", "SIZE", "DATA", "READ",
	       "NEW CHUNKS", "NEW STORED");
	for (i = 0; i < rp->n_disks; i++) {
		const vbs_disk *d = &rp->disks[i];

		printf("%-*s  %10s  %10s  %10s  %10llu  %10s%s\n", w, d->name,
		       human_size(d->size, h[0]), human_size(vbs_disk_data_bytes(rp, d), h[1]),
		       human_size(d->read_bytes, h[2]), (unsigned long long)d->new_chunks,
		       human_size(d->new_bytes, h[3]), d->incremental ? "  (changed extents)" : "");
	}
	return VMBAK_EXIT_OK;
}

/* VM, VM/, VM/latest or VM/RP. */
static int info_check(verb_ctx *c)
{
	list_opts *o = c->opts;

	return c->nargs > 1 ? check_point_arg(c->args[1], 0, NULL, o->vm, o->id) : 0;
}

static int cmd_info(verb_ctx *c)
{
	list_opts *o = c->opts;
	const char *path = c->args[0], *vm = o->vm, *id = o->id;
	int has_vm = c->nargs > 1, json = o->json, r, status;
	vbs_vault_stats st;
	vbs_vault *v = c->v;
	vbs_rp *rp = NULL;

	list_vault = v;
	if (!has_vm) {
		r = vbs_vault_stats_get(v, &st);
		if (r < 0) {
			status = store_err(r, "cannot read statistics of vault '%s'", q(path));
			goto out;
		}
		status = print_vault_info(v, &st, json);
		goto out;
	}
	r = id[0] ? vbs_rp_get(v, vm, id, &rp) : vbs_rp_latest(v, vm, &rp);
	if (r == -ENOENT) {
		uint64_t serial;

		if (!id[0] || vbs_vm_get(v, vm, &serial) == -ENOENT)
			vbu_err("no VM '%s' in vault '%s'", vm, q(path));
		else
			vbu_err("no point '%s' of VM '%s' in vault '%s'", id, vm, q(path));
		status = VMBAK_EXIT_FAIL;
		goto out;
	}
	if (r < 0) {
		status = store_err(r, "cannot read VM '%s' in vault '%s'", vm, q(path));
		goto out;
	}
	status = print_rp_info(rp, json);
out:
	vbs_rp_free(rp);
	return status;
}

const vmbak_cmd cmd_info_def = {
    .name = "info",
    .summary = "describe a vault or a recovery point",
    .help = info_help,
    .usage = INFO_USAGE,
    .arg_names = list_args,
    .min_args = 1,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT,
    .options = json_options,
    .opts_size = sizeof(list_opts),
    .option = json_option,
    .check = info_check,
    .run = cmd_info,
};
