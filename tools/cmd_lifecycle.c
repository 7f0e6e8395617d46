/* cmd_lifecycle.c: vmbak protect, unprotect, delete, prune and gc.
 *
 * None of them needs the passphrase: they read and change records and remove chunks by id,
 * never decrypting anything. delete, prune and gc are recorded as jobs (jobs_cli.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gc.h"
#include "jobs.h"
#include "jobs_cli.h"
#include "lifecycle.h"
#include "rp.h"
#include "util.h"
#include "vault.h"

#define PROTECT_USAGE "vmbak protect VAULT VM/RP"
#define UNPROTECT_USAGE "vmbak unprotect VAULT VM/RP"
#define DELETE_USAGE "vmbak delete VAULT VM/RP [--force]"
#define PRUNE_USAGE                                                                                \
	"vmbak prune VAULT VM [--keep-last N] [--keep-hourly N] [--keep-daily N] "                 \
	"[--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--dry-run] [--json]"
#define GC_USAGE "vmbak gc VAULT [--json]"

static const char protect_help[] =
    "usage: " PROTECT_USAGE "\n"
    "\n"
    "Protects a recovery point: delete and prune refuse it, even with --force, until\n"
    "`vmbak unprotect`. Protection is shown by list and info. RP may be 'latest'.\n"
    "\n"
    "options:\n"
    "  -h, --help              show this help\n";

static const char unprotect_help[] = "usage: " UNPROTECT_USAGE "\n"
				     "\n"
				     "Removes the protection of a recovery point. RP may be "
				     "'latest'.\n"
				     "\n"
				     "options:\n"
				     "  -h, --help              show this help\n";

static const char delete_help[] =
    "usage: " DELETE_USAGE "\n"
    "\n"
    "Deletes one recovery point, at once and whole; every other point reads exactly as\n"
    "before. Its chunks are freed by the next `vmbak gc`. Refused for a protected point\n"
    "(unprotect it first), and unless --force for a point whose retain-until date has not\n"
    "passed and for the newest point of its VM. RP may be 'latest'.\n"
    "\n"
    "options:\n"
    "  --force                 also delete a retained point, or the VM's newest point\n"
    "  -h, --help              show this help\n";

static const char prune_help[] =
    "usage: vmbak prune VAULT VM [--keep-last N] [--keep-hourly N] [--keep-daily N]\n"
    "                   [--keep-weekly N] [--keep-monthly N] [--keep-yearly N]\n"
    "                   [--dry-run] [--json]\n"
    "\n"
    "Deletes the recovery points of VM that no rule keeps, as Proxmox Backup Server and borg\n"
    "do. Newest first, --keep-last keeps the N newest points; each other rule keeps the\n"
    "newest point of each of the last N hours, days, ISO weeks, months or years (UTC) that\n"
    "have points, skipping periods an earlier rule already covers. Protected points, points\n"
    "under retain-until and the newest point are always kept. At least one rule is needed.\n"
    "Chunks are freed by the next `vmbak gc`.\n"
    "\n"
    "options:\n"
    "  --keep-last N           keep the N newest points\n"
    "  --keep-hourly N         keep the newest point of each of the last N hours\n"
    "  --keep-daily N          ... days\n"
    "  --keep-weekly N         ... ISO weeks (Monday to Sunday)\n"
    "  --keep-monthly N        ... months\n"
    "  --keep-yearly N         ... years\n"
    "  --dry-run, -n           only show what would be kept and pruned, and why\n"
    "  --json                  print one JSON array (id, created, keep, reasons, deleted)\n"
    "  -h, --help              show this help\n";

static const char gc_help[] =
    "usage: " GC_USAGE "\n"
    "\n"
    "Frees the chunks that no recovery point refers to (left by delete, prune and\n"
    "interrupted ingests). Chunks an ingest still running uses are kept. Runs beside\n"
    "ingests and mounts; the freed space is reused by later ingests (data.mdb does not\n"
    "shrink; `vmbak info` shows how much of it is free).\n"
    "\n"
    "options:\n"
    "  --json                  print one JSON object with the counts\n"
    "  -h, --help              show this help\n";

/* The options of protect, unprotect, delete and gc; the point of the first three. */
typedef struct life_opts {
	int flag; /* --force (delete), --json (gc) */
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX];
} life_opts;

enum { OPT_FLAG = 0x200, OPT_DRY, OPT_JSON };

static const struct option force_opts[] = {
    {"force", no_argument, NULL, OPT_FLAG},
    {NULL, 0, NULL, 0},
};

static const struct option json_opts[] = {
    {"json", no_argument, NULL, OPT_FLAG},
    {NULL, 0, NULL, 0},
};

static int flag_option(verb_ctx *c, int opt, const char *arg)
{
	life_opts *o = c->opts;

	(void)arg;
	if (opt != OPT_FLAG)
		return VMBAK_EXIT_USAGE;
	o->flag = 1;
	return 0;
}

/* VM/RP, RP possibly "latest". */
static int point_check(verb_ctx *c)
{
	life_opts *o = c->opts;

	return check_point_arg(c->args[1], 1, c->cmd->usage, o->vm, o->id);
}

/* "VM/latest" (id "") names the VM's newest point. */
static int resolve_latest(vbs_vault *v, const char *vm, char *id)
{
	vbs_rp *rp;
	int r;

	if (id[0])
		return 0;
	r = vbs_rp_latest(v, vm, &rp);
	if (r < 0)
		return store_err(r, "cannot find the latest point of VM '%s'", vm);
	snprintf(id, VBS_RP_ID_MAX, "%s", rp->id);
	vbs_rp_free(rp);
	return 0;
}

static int protect_common(verb_ctx *c, int on)
{
	life_opts *o = c->opts;
	int status, r;

	if ((status = resolve_latest(c->v, o->vm, o->id)) != 0)
		return status;
	r = vbs_rp_protect(c->v, o->vm, o->id, on);
	if (r < 0)
		return store_err(r, "cannot %s '%s/%s'", on ? "protect" : "unprotect", o->vm,
				 o->id);
	printf("%s %s/%s\n", on ? "protected" : "unprotected", o->vm, o->id);
	return finish_stdout(VMBAK_EXIT_OK);
}

static int cmd_protect(verb_ctx *c)
{
	return protect_common(c, 1);
}

static int cmd_unprotect(verb_ctx *c)
{
	return protect_common(c, 0);
}

static int cmd_delete(verb_ctx *c)
{
	life_opts *o = c->opts;
	char target[VBS_JOB_TARGET_MAX];
	uint64_t job = 0;
	int status, r;

	if ((status = resolve_latest(c->v, o->vm, o->id)) != 0)
		return status;
	snprintf(target, sizeof(target), "%s/%s", o->vm, o->id);
	status = cli_job_start(c->v, "delete", target, &job);
	if (status != 0)
		return status;
	r = vbs_rp_delete(c->v, o->vm, o->id, o->flag ? VBS_DELETE_FORCE : 0, 0);
	if (r < 0)
		status = store_err(r, "cannot delete '%s/%s'", o->vm, o->id);
	cli_job_finish(c->v, job, status, 0, 0, NULL);
	if (status == 0) {
		printf("deleted %s/%s\n", o->vm, o->id);
		status = finish_stdout(VMBAK_EXIT_OK);
	}
	return status;
}

typedef struct prune_opts {
	vbs_prune_policy pol;
	int dry, json, any;
} prune_opts;

static const struct option prune_options[] = {
    {"keep-last", required_argument, NULL, VBS_KEEP_LAST},
    {"keep-hourly", required_argument, NULL, VBS_KEEP_HOURLY},
    {"keep-daily", required_argument, NULL, VBS_KEEP_DAILY},
    {"keep-weekly", required_argument, NULL, VBS_KEEP_WEEKLY},
    {"keep-monthly", required_argument, NULL, VBS_KEEP_MONTHLY},
    {"keep-yearly", required_argument, NULL, VBS_KEEP_YEARLY},
    {"dry-run", no_argument, NULL, OPT_DRY},
    {"json", no_argument, NULL, OPT_JSON},
    {NULL, 0, NULL, 0},
};

static int prune_option(verb_ctx *c, int opt, const char *arg)
{
	prune_opts *o = c->opts;

	switch (opt) {
	case 'n':
	case OPT_DRY:
		o->dry = 1;
		break;
	case OPT_JSON:
		o->json = 1;
		break;
	case VBS_KEEP_LAST:
	case VBS_KEEP_HOURLY:
	case VBS_KEEP_DAILY:
	case VBS_KEEP_WEEKLY:
	case VBS_KEEP_MONTHLY:
	case VBS_KEEP_YEARLY: {
		unsigned long x;

		if (parse_count(arg, 0, 1000000, &x) < 0)
			return usage_err("invalid count '%s' for --%s: use 0 to 1000000", q(arg),
					 vbs_keep_rule_names[opt]);
		o->pol.keep[opt] = (unsigned)x;
		o->any |= x > 0;
		break;
	}
	default:
		return VMBAK_EXIT_USAGE;
	}
	return 0;
}

static int prune_check(verb_ctx *c)
{
	prune_opts *o = c->opts;
	int status = check_name_arg("VM", c->args[1]);

	if (status != 0)
		return status;
	if (!o->any)
		return usage_err("prune needs at least one rule: --keep-last, --keep-hourly, "
				 "--keep-daily, --keep-weekly, --keep-monthly or --keep-yearly N "
				 "(N > 0)");
	return 0;
}

static int cmd_prune(verb_ctx *c)
{
	prune_opts *po = c->opts;
	vbs_prune_result *res = NULL;
	vbs_vault *v = c->v;
	uint64_t job = 0, deleted = 0;
	size_t n = 0;
	int dry = po->dry, json = po->json, status = 0, r;
	const char *vm = c->args[1];

	if (!dry && (status = cli_job_start(v, "prune", vm, &job)) != 0)
		goto out;
	r = vbs_prune(v, vm, &po->pol, dry, 0, &res, &n, &deleted);
	if (r < 0)
		status = store_err(r, "cannot prune VM '%s'", vm);
	if (!dry)
		cli_job_finish(v, job, status, 0, 0, NULL);
	if (status != 0)
		goto out;
	if (json) {
		json_object *a = json_object_new_array();
		for (size_t i = 0; a && i < n; i++) {
			json_object *o = json_object_new_object();
			char why[160];

			if (!o)
				break;
			vbs_prune_reasons(&res[i].p, why, sizeof(why));
			json_object_object_add(o, "id", json_object_new_string(res[i].id));
			json_object_object_add(o, "created", json_time(res[i].p.time));
			json_object_object_add(o, "keep", json_object_new_boolean(res[i].p.keep));
			json_object_object_add(o, "reasons", json_str_or_null(why));
			json_object_object_add(o, "deleted",
					       json_object_new_boolean(res[i].deleted));
			json_object_array_add(a, o);
		}
		status = a ? json_print(a) : store_err(-ENOMEM, "cannot print the plan");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char why[160];

		vbs_prune_reasons(&res[i].p, why, sizeof(why));
		if (res[i].p.keep)
			printf("keep   %s/%s  (%s)\n", vm, res[i].id, why);
		else
			printf("%-6s %s/%s\n",
			       dry		? "prune"
			       : res[i].deleted ? "pruned"
						: "gone",
			       vm, res[i].id);
	}
	{
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			k += !res[i].p.keep;
		if (dry)
			printf("dry run: %zu of %zu point%s of VM '%s' would be pruned\n", k, n,
			       n == 1 ? "" : "s", vm);
		else
			printf("pruned %llu of %zu point%s of VM '%s'\n",
			       (unsigned long long)deleted, n, n == 1 ? "" : "s", vm);
	}
	status = finish_stdout(VMBAK_EXIT_OK);
out:
	free(res);
	return status;
}

static int cmd_gc(verb_ctx *c)
{
	vbs_gc_stats s = {0};
	vbs_vault *v = c->v;
	uint64_t job = 0;
	int status, r, json = ((life_opts *)c->opts)->flag;

	status = cli_job_start(v, "gc", "", &job);
	if (status != 0)
		goto out;
	r = vbs_gc(v, job, &s);
	if (r < 0)
		status = store_err(r, "cannot collect garbage in vault '%s'", q(c->args[0]));
	cli_job_finish(v, job, status, 0, 0, NULL);
	if (status != 0)
		goto out;
	if (json) {
		json_object *o = json_object_new_object();
		if (o) {
			json_object_object_add(o, "chunks", json_u64(s.chunks));
			json_object_object_add(o, "referenced", json_u64(s.referenced));
			json_object_object_add(o, "pinned", json_u64(s.pinned));
			json_object_object_add(o, "freed", json_u64(s.freed));
			json_object_object_add(o, "freed_bytes", json_u64(s.freed_bytes));
		}
		status = o ? json_print(o) : store_err(-ENOMEM, "cannot print the counts");
		goto out;
	} else {
		char h[HUMAN_SIZE_LEN];
		printf("gc: %llu chunks, %llu referenced, %llu kept for running ingests, "
		       "%llu freed (%s)\n",
		       (unsigned long long)s.chunks, (unsigned long long)s.referenced,
		       (unsigned long long)s.pinned, (unsigned long long)s.freed,
		       human_size(s.freed_bytes, h));
		status = finish_stdout(VMBAK_EXIT_OK);
	}
out:
	return status;
}

static const char *const point_args[] = {"VAULT", "VM/RP"};
static const char *const prune_args[] = {"VAULT", "VM"};
static const char *const gc_args[] = {"VAULT"};

const vmbak_cmd cmd_protect_def = {
    .name = "protect",
    .summary = "protect a recovery point from delete and prune",
    .help = protect_help,
    .usage = PROTECT_USAGE,
    .arg_names = point_args,
    .min_args = 2,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT | VERB_WRITES,
    .opts_size = sizeof(life_opts),
    .check = point_check,
    .run = cmd_protect,
};

const vmbak_cmd cmd_unprotect_def = {
    .name = "unprotect",
    .summary = "remove the protection of a recovery point",
    .help = unprotect_help,
    .usage = UNPROTECT_USAGE,
    .arg_names = point_args,
    .min_args = 2,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT | VERB_WRITES,
    .opts_size = sizeof(life_opts),
    .check = point_check,
    .run = cmd_unprotect,
};

const vmbak_cmd cmd_delete_def = {
    .name = "delete",
    .summary = "delete one recovery point",
    .help = delete_help,
    .usage = DELETE_USAGE,
    .arg_names = point_args,
    .min_args = 2,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT | VERB_WRITES,
    .options = force_opts,
    .opts_size = sizeof(life_opts),
    .option = flag_option,
    .check = point_check,
    .run = cmd_delete,
};

const vmbak_cmd cmd_prune_def = {
    .name = "prune",
    .summary = "delete the points of a VM that a retention policy does not keep",
    .help = prune_help,
    .usage = PRUNE_USAGE,
    .arg_names = prune_args,
    .min_args = 2,
    .max_args = 2,
    .flags = VERB_OPENS_VAULT | VERB_WRITES,
    .options = prune_options,
    .shortopts = ":hn",
    .opts_size = sizeof(prune_opts),
    .option = prune_option,
    .check = prune_check,
    .run = cmd_prune,
};

const vmbak_cmd cmd_gc_def = {
    .name = "gc",
    .summary = "free the chunks no recovery point refers to",
    .help = gc_help,
    .usage = GC_USAGE,
    .arg_names = gc_args,
    .min_args = 1,
    .max_args = 1,
    .flags = VERB_OPENS_VAULT | VERB_WRITES,
    .options = json_opts,
    .opts_size = sizeof(life_opts),
    .option = flag_option,
    .run = cmd_gc,
};
