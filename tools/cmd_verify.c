/* cmd_verify.c: vmbak verify, reading and authenticating what a vault holds.
 *
 * Output: one line on stdout per problem found (which point, disk and byte range it affects,
 * and what is wrong), then one summary line on stdout. When there is damage, one more line on
 * stderr says so, and the exit status is 3; a verify that cannot run exits 1. With --json,
 * stdout is one JSON object instead. The verify is recorded in the vault's job history.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "escrow_tools.h"
#include "jobs.h"
#include "lifecycle.h"
#include "rp.h"
#include "util.h"
#include "vault.h"
#include "verify.h"

#define VERIFY_USAGE                                                                               \
	"vmbak verify VAULT [VM[/RP]] [--sample PERCENT] [--seed N] [--json] [--keyvault KV "      \
	"[--check-escrow]]"

static const char verify_help[] =
    "usage: " VERIFY_USAGE "\n"
    "\n"
    "Reads and authenticates every chunk the recovery points of VAULT refer to (of the VM\n"
    "VM, or of its point RP; VM/latest is its newest point), each distinct chunk once, and\n"
    "checks every record and index entry on the way. Each problem is printed on standard\n"
    "output with the point, disk and byte range it affects, e.g.\n"
    "  vm1/2026-11-23T05:40:12Z sda: bytes 65536-131071: 1 damaged chunk (authentication "
    "failed)\n"
    "followed by a summary line. Each damaged point keeps the time in its record (info,\n"
    "list --json), and the next --qemu or --libvirt point of its VM is read in full.\n"
    "\n"
    "options:\n"
    "  --sample PERCENT        read only a random PERCENT (above 0, up to 100) of the\n"
    "                          distinct chunks; records and index entries are all checked\n"
    "  --seed N                seed of the sample (default: random, printed in the summary\n"
    "                          so that the same sample can be read again)\n"
    "  --json                  print one JSON object: counts and the list of problems\n"
    "  --keyvault KV           also unwrap every escrow blob (DISK.key) with key vault KV\n"
    "                          (asks for its passphrase): one line per blob, never the\n"
    "                          secret; a blob that does not unwrap is damage\n"
    "  --check-escrow          with --keyvault: also check each secret against its disk's\n"
    "                          LUKS or BitLocker header, as stored in the point\n"
    "  --keyvault-passphrase-file F  read the key vault passphrase from the first line of F\n"
    "  --progress              show progress on stderr even when it is not a terminal\n"
    "  --passphrase-file F     read the vault passphrase from the first line of F\n"
    "  -h, --help              show this help\n"
    "\n"
    "exit status: 0 the vault (or VM, or point) is whole, 3 damage found (a line on stderr\n"
    "says how much), 1 the verify could not run, 2 usage error.\n";

/* Set by the signal handler: the verify stops and its job is recorded as killed. */
static volatile int stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* Progress on stderr, rewritten in place at most 4 times a second. */
typedef struct vprogress {
	int on;
	int printed;
	int last_len;
	int64_t start_ns;
} vprogress;

static void progress_clear(vprogress *p)
{
	if (!p->printed)
		return;
	fputc('\n', stderr);
	fflush(stderr);
	p->printed = 0;
	p->last_len = 0;
}

static void progress_cb(void *arg, uint64_t done, uint64_t total, uint64_t bytes)
{
	vprogress *p = arg;
	char line[160], hs[HUMAN_SIZE_LEN];
	double secs = (double)(vbu_mono_ns() - p->start_ns) / 1e9;
	int n;

	n = snprintf(line, sizeof(line), "verify: %5.1f%% of %llu chunks, %s, %.1f MB/s",
		     total ? 100.0 * (double)done / (double)total : 100.0,
		     (unsigned long long)total, human_size(bytes, hs),
		     secs > 0 ? (double)bytes / secs / 1e6 : 0.0);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	fprintf(stderr, "\r%s%*s", line, p->last_len > n ? p->last_len - n : 0, "");
	fflush(stderr);
	p->last_len = n;
	p->printed = 1;
}

#define DAMAGED_MAX 4096 /* points marked damaged by one verify (vbs_rp_mark_damaged) */

typedef struct damaged_point {
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX];
} damaged_point;

typedef struct vout {
	int json;
	json_object *problems; /* with --json */
	vprogress *prog;
	int err; /* out of memory building the JSON */
	damaged_point *damaged; /* the points problems named, each once */
	size_t n_damaged;
} vout;

/* Remembers the point a problem names, to mark it damaged after the verify. */
static void note_damaged(vout *o, const vbs_verify_problem *p)
{
	damaged_point *d;

	if (!p->vm || !p->rp || !vbs_rp_id_valid(p->rp) || strlen(p->vm) > VBS_NAME_MAX)
		return;
	for (size_t i = o->n_damaged; i-- > 0;)
		if (strcmp(o->damaged[i].vm, p->vm) == 0 && strcmp(o->damaged[i].id, p->rp) == 0)
			return;
	if (o->n_damaged == DAMAGED_MAX)
		return;
	if (!o->damaged && !(o->damaged = calloc(DAMAGED_MAX, sizeof(*o->damaged))))
		return;
	d = &o->damaged[o->n_damaged++];
	snprintf(d->vm, sizeof(d->vm), "%s", p->vm);
	snprintf(d->id, sizeof(d->id), "%s", p->rp);
}

static void problem_text(const vbs_verify_problem *p)
{
	if (p->disk) {
		printf("%s/%s %s: bytes %llu-%llu: %s\n", q(p->vm), q(p->rp), q(p->disk),
		       (unsigned long long)p->off, (unsigned long long)(p->off + p->len - 1),
		       p->detail);
	} else if (p->vm && p->rp) {
		printf("%s/%s: %s: %s\n", q(p->vm), q(p->rp), vbs_verify_kind_name(p->kind),
		       p->detail);
	} else if (p->vm) {
		printf("%s: %s: %s\n", q(p->vm), vbs_verify_kind_name(p->kind), p->detail);
	} else {
		printf("vault: %s: %s\n", vbs_verify_kind_name(p->kind), p->detail);
	}
}

static void problem_cb(void *arg, const vbs_verify_problem *p)
{
	vout *o = arg;
	json_object *j;

	progress_clear(o->prog);
	note_damaged(o, p);
	if (!o->json) {
		problem_text(p);
		return;
	}
	j = json_object_new_object();
	if (!j || json_object_array_add(o->problems, j) < 0) {
		json_object_put(j);
		o->err = -ENOMEM;
		return;
	}
	json_object_object_add(j, "kind", json_object_new_string(vbs_verify_kind_name(p->kind)));
	json_object_object_add(j, "vm", json_str_or_null(p->vm));
	json_object_object_add(j, "id", json_str_or_null(p->rp));
	json_object_object_add(j, "disk", json_str_or_null(p->disk));
	json_object_object_add(j, "offset", p->disk ? json_u64(p->off) : NULL);
	json_object_object_add(j, "length", p->disk ? json_u64(p->len) : NULL);
	json_object_object_add(j, "chunks", p->disk ? json_u64(p->chunks) : NULL);
	json_object_object_add(j, "detail", json_object_new_string(p->detail));
}

static void summary_text(const vbs_verify_result *r, double sample)
{
	char hs[HUMAN_SIZE_LEN], what[96];

	if (sample > 0 && sample < 100)
		snprintf(what, sizeof(what), "a %g%% sample (seed %llu): ", sample,
			 (unsigned long long)r->seed);
	else
		what[0] = '\0';
	printf("verify: %llu point%s, %llu disk%s, %llu records, %llu index entries; %s%llu of "
	       "%llu chunks read (%s): %s\n",
	       (unsigned long long)r->points, r->points == 1 ? "" : "s",
	       (unsigned long long)r->disks, r->disks == 1 ? "" : "s",
	       (unsigned long long)r->records, (unsigned long long)r->index_entries, what,
	       (unsigned long long)r->chunks_checked, (unsigned long long)r->chunks_referenced,
	       human_size(r->bytes_checked, hs), r->problems ? "DAMAGED" : "whole");
}

static json_object *summary_json(const vbs_verify_result *r, const char *path, const char *target,
				 double sample, json_object *problems)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "vault", json_object_new_string(path));
	json_object_object_add(o, "target", json_str_or_null(target));
	json_object_object_add(o, "whole", json_object_new_boolean(r->problems == 0));
	json_object_object_add(o, "points", json_u64(r->points));
	json_object_object_add(o, "disks", json_u64(r->disks));
	json_object_object_add(o, "records", json_u64(r->records));
	json_object_object_add(o, "index_entries", json_u64(r->index_entries));
	json_object_object_add(o, "chunks_referenced", json_u64(r->chunks_referenced));
	json_object_object_add(o, "chunks_checked", json_u64(r->chunks_checked));
	json_object_object_add(o, "bytes_checked", json_u64(r->bytes_checked));
	json_object_object_add(o, "chunks_damaged", json_u64(r->chunks_bad));
	json_object_object_add(o, "chunks_missing", json_u64(r->chunks_missing));
	json_object_object_add(o, "bad_index_entries", json_u64(r->bad_index));
	json_object_object_add(o, "bad_records", json_u64(r->bad_records));
	json_object_object_add(o, "damaged_points", json_u64(r->damaged_points));
	json_object_object_add(o, "sample_percent",
			       sample > 0 && sample < 100 ? json_object_new_double(sample) : NULL);
	json_object_object_add(o, "seed", r->seed ? json_u64(r->seed) : NULL);
	json_object_object_add(o, "problems", json_object_get(problems));
	return o;
}

/* --sample: a percentage in (0, 100], "10", "0.5" or "10%". */
static int parse_percent(const char *s, double *ret)
{
	char *end;
	double x;

	/* Plain decimal only: strtod would also take hex, exponents, "inf" and "nan". */
	if (!*s || strspn(s, "0123456789.%") != strlen(s))
		return -EINVAL;
	errno = 0;
	x = strtod(s, &end);
	if (*end == '%')
		end++;
	if (errno || *end || !(x > 0 && x <= 100))
		return -EINVAL;
	*ret = x;
	return 0;
}

/* --seed: a decimal number from 1 to 2^64 - 1. */
static int parse_seed(const char *s, uint64_t *ret)
{
	unsigned long long x;
	char *end;

	if (!(*s >= '0' && *s <= '9'))
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end || x == 0)
		return -EINVAL;
	*ret = x;
	return 0;
}

/* Ends the job, if there is one open. */
static int job_end(vbs_vault *v, int *have_job, uint64_t job, vbs_job_state state, uint64_t bytes,
		   const char *error)
{
	if (!*have_job)
		return 0;
	*have_job = 0;
	return vbs_job_end(v, job, state, bytes, 0, error);
}

enum {
	OPT_SAMPLE = 0x100,
	OPT_SEED,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_KEYVAULT,
	OPT_CHECK_ESCROW,
	OPT_KV_PASSFILE
};

typedef struct verify_opts {
	const char *kv_path, *kv_passfile;
	int check_escrow, json, seed_given, progress;
	vbs_verify_opts vo; /* sample, seed; vm and rp from VM[/RP] */
	char vm[VBS_NAME_MAX + 1], id[VBS_RP_ID_MAX], jtarget[VBS_NAME_MAX + VBS_RP_ID_MAX + 2];
} verify_opts;

static const struct option verify_options[] = {
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"json", no_argument, NULL, OPT_JSON},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"keyvault", required_argument, NULL, OPT_KEYVAULT},
    {"check-escrow", no_argument, NULL, OPT_CHECK_ESCROW},
    {"keyvault-passphrase-file", required_argument, NULL, OPT_KV_PASSFILE},
    {NULL, 0, NULL, 0},
};

static int verify_option(verb_ctx *c, int opt, const char *arg)
{
	verify_opts *o = c->opts;

	switch (opt) {
	case OPT_SAMPLE:
		if (parse_percent(arg, &o->vo.sample) < 0)
			return usage_err("invalid --sample '%s': use a percentage above 0 "
					 "and at most 100",
					 q(arg));
		break;
	case OPT_SEED:
		if (parse_seed(arg, &o->vo.seed) < 0)
			return usage_err("invalid --seed '%s': use a number from 1 to "
					 "18446744073709551615",
					 q(arg));
		o->seed_given = 1;
		break;
	case OPT_JSON:
		o->json = 1;
		break;
	case OPT_PROGRESS:
		o->progress = 1;
		break;
	case OPT_KEYVAULT:
		if (!*arg)
			return usage_err("empty argument for '--keyvault'");
		o->kv_path = arg;
		break;
	case OPT_CHECK_ESCROW:
		o->check_escrow = 1;
		break;
	case OPT_KV_PASSFILE:
		if (!*arg)
			return usage_err("empty file name for --keyvault-passphrase-file");
		o->kv_passfile = arg;
		break;
	default:
		return VMBAK_EXIT_USAGE;
	}
	return 0;
}

static int verify_options_done(verb_ctx *c)
{
	verify_opts *o = c->opts;

	if ((o->check_escrow || o->kv_passfile) && !o->kv_path)
		return usage_err("%s needs --keyvault KV",
				 o->check_escrow ? "--check-escrow" : "--keyvault-passphrase-file");
	return 0;
}

static int verify_check(verb_ctx *c)
{
	verify_opts *o = c->opts;
	const char *target = c->nargs > 1 ? c->args[1] : NULL;
	int status;

	if (o->seed_given && !(o->vo.sample > 0 && o->vo.sample < 100))
		return usage_err("--seed needs --sample with a percentage below 100");
	if (target) {
		status = check_point_arg(target, 0, NULL, o->vm, o->id);
		if (status != 0)
			return status;
		o->vo.vm = o->vm;
		o->vo.rp = o->id[0] ? o->id : "latest";
		if (!strchr(target, '/'))
			o->vo.rp = NULL; /* VM alone: all its points */
		snprintf(o->jtarget, sizeof(o->jtarget), "%s%s%s", o->vm, o->vo.rp ? "/" : "",
			 o->vo.rp ? o->vo.rp : "");
	}
	return 0;
}

/* The vault is opened here, not by verb_main(): the key vault is opened first, and a damaged
 * database is VMBAK_EXIT_DAMAGE. */
static int cmd_verify(verb_ctx *c)
{
	verify_opts *vopt = c->opts;
	const char *kv_path = vopt->kv_path, *kv_passfile = vopt->kv_passfile;
	int check_escrow = vopt->check_escrow;
	vbk_kv *kv = NULL;
	json_object *esc = NULL;
	uint64_t esc_total = 0, esc_bad = 0;
	const char *path = c->args[0], *target = c->nargs > 1 ? c->args[1] : NULL;
	const char *jtarget = vopt->jtarget;
	char job_err[512] = "";
	int json = vopt->json, r, status;
	vbs_verify_opts vo = vopt->vo;
	vbs_verify_result res;
	vprogress prog = {.on = vopt->progress};
	vout out = {0};
	vbs_vault *v = NULL;
	uint64_t job = 0;
	int have_job = 0;
	struct sigaction sa = {0}, old[3];
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};

	/* The key vault's passphrase before the vault's: a wrong one stops before any reading. */
	if (kv_path && (status = escrow_kv_open(kv_path, 1, kv_passfile, &kv)) != 0)
		goto out;
	/* LMDB meeting a page of garbage is damage too (see vbs_guard_exit_status in vault.h). */
	vbs_guard_exit_status(VMBAK_EXIT_DAMAGE);
	/* A database that LMDB finds damaged is damage (exit 3), not a failure to run. */
	status = vault_open(path, 0, VAULT_UNLOCK | VAULT_DAMAGE_EXIT, c->passphrase_file, &v);
	if (status != 0)
		goto out;

	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
	/* A vault that cannot take the job record (its database damaged where the records go)
	 * is verified all the same: that is when a verify is needed most. */
	r = vbs_job_begin(v, "verify", jtarget, &job);
	have_job = r >= 0;
	if (r < 0)
		snprintf(job_err, sizeof(job_err), "%s",
			 *vbs_errmsg() ? vbs_errmsg() : vbu_strerror(-r));

	out.json = json;
	out.prog = &prog;
	if (json && !(out.problems = json_object_new_array())) {
		vbu_errno(-ENOMEM, "cannot verify vault '%s'", q(path));
		status = VMBAK_EXIT_FAIL;
		goto restore;
	}
	vo.problem = problem_cb;
	vo.problem_arg = &out;
	vo.stop = &stop_signal;
	if (prog.on || c->g->progress || isatty(STDERR_FILENO)) {
		prog.start_ns = vbu_mono_ns();
		vo.progress = progress_cb;
		vo.progress_arg = &prog;
	}
	r = vbs_verify(v, &vo, &res);
	progress_clear(&prog);
	if (r == -EINTR || (r < 0 && stop_signal)) {
		job_end(v, &have_job, job, VBS_JOB_KILLED, res.bytes_checked,
			"interrupted by a signal");
		vbu_err("verify of vault '%s' interrupted by signal %d", q(path), stop_signal);
		status = VMBAK_EXIT_FAIL;
		goto restore;
	}
	if (r < 0 && r != -EBADMSG) {
		status = store_err(r, "cannot verify vault '%s'", q(path));
		job_end(v, &have_job, job, VBS_JOB_FAILED, res.bytes_checked, vbs_errmsg());
		goto restore;
	}
	if (out.err) {
		vbu_errno(out.err, "cannot verify vault '%s'", q(path));
		status = VMBAK_EXIT_FAIL;
		goto restore;
	}
	if (kv) {
		if (json && !(esc = json_object_new_array())) {
			vbu_errno(-ENOMEM, "cannot verify vault '%s'", q(path));
			status = VMBAK_EXIT_FAIL;
			goto restore;
		}
		status =
		    escrow_verify(v, kv, vo.vm, vo.rp, check_escrow, esc, &esc_total, &esc_bad);
		if (status != 0) {
			job_end(v, &have_job, job, VBS_JOB_FAILED, res.bytes_checked,
				"escrow check failed");
			goto restore;
		}
	}
	if (json) {
		json_object *o = summary_json(&res, path, target, vo.sample, out.problems);

		if (o && kv) {
			json_object_object_add(o, "escrow", json_object_get(esc));
			json_object_object_add(o, "escrow_blobs", json_u64(esc_total));
			json_object_object_add(o, "escrow_failed", json_u64(esc_bad));
		}
		if (!o) {
			vbu_errno(-ENOMEM, "cannot verify vault '%s'", q(path));
			status = VMBAK_EXIT_FAIL;
			goto restore;
		}
		json_print(o);
	} else {
		summary_text(&res, vo.sample);
		if (kv)
			printf("escrow: %llu blob%s unwrapped%s: %llu failed\n",
			       (unsigned long long)esc_total, esc_total == 1 ? "" : "s",
			       check_escrow ? " and checked against their disks' headers" : "",
			       (unsigned long long)esc_bad);
	}
	fflush(stdout);
	if (r == -EBADMSG) {
		/* The database itself: LMDB met a damaged page. What was found so far is above.
		 * No job record is written: a write walks the free list and the trees again and
		 * may meet the same page (the guard would then end the process with a second
		 * line). The job stays open; `vmbak jobs` shows it ended with its process. */
		vbu_err("%s", vbs_errmsg());
		have_job = 0;
		status = VMBAK_EXIT_DAMAGE;
	} else if (res.problems) {
		char msg[VBS_JOB_ERROR_MAX];

		if (target)
			snprintf(msg, sizeof(msg), "'%s' in vault '%s' is damaged: ", q(target),
				 q(path));
		else
			snprintf(msg, sizeof(msg), "vault '%s' is damaged: ", q(path));
		snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
			 "%llu problem%s, %llu damaged and %llu missing chunk%s, %llu point%s "
			 "affected",
			 (unsigned long long)res.problems, res.problems == 1 ? "" : "s",
			 (unsigned long long)res.chunks_bad, (unsigned long long)res.chunks_missing,
			 res.chunks_bad + res.chunks_missing == 1 ? "" : "s",
			 (unsigned long long)res.damaged_points,
			 res.damaged_points == 1 ? "" : "s");
		vbu_err("%s", msg);
		job_end(v, &have_job, job, VBS_JOB_FAILED, res.bytes_checked, msg);
		status = VMBAK_EXIT_DAMAGE;
		/* Kept in each point's record: the next point of a running VM is then read in full
		 * rather than built on this one's chunks. Best effort: a point whose own record is
		 * what is damaged cannot take the mark (nor serve as the base of another). */
		for (size_t i = 0; i < out.n_damaged; i++)
			(void)vbs_rp_mark_damaged(v, out.damaged[i].vm, out.damaged[i].id,
						  vbu_now_ns() / 1000000000);
	} else if (esc_bad) {
		char msg[VBS_JOB_ERROR_MAX];

		snprintf(msg, sizeof(msg), "%llu of %llu escrow blobs of vault '%s' failed",
			 (unsigned long long)esc_bad, (unsigned long long)esc_total, q(path));
		vbu_err("%s", msg);
		job_end(v, &have_job, job, VBS_JOB_FAILED, res.bytes_checked, msg);
		status = VMBAK_EXIT_DAMAGE;
	} else {
		r = job_end(v, &have_job, job, VBS_JOB_COMPLETED, res.bytes_checked, NULL);
		if (r < 0)
			snprintf(job_err, sizeof(job_err), "%s",
				 *vbs_errmsg() ? vbs_errmsg() : vbu_strerror(-r));
		status = VMBAK_EXIT_OK;
		if (job_err[0])
			vbu_err("warning: the verify is not in the job history: %s", job_err);
	}
restore:
	job_end(v, &have_job, job, stop_signal ? VBS_JOB_KILLED : VBS_JOB_FAILED, 0,
		stop_signal ? "interrupted by a signal" : "verify failed");
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &old[i], NULL);
out:
	json_object_put(esc);
	json_object_put(out.problems);
	free(out.damaged);
	vbs_vault_close(v);
	vbk_kv_close(kv);
	return status;
}

static const char *const verify_args[] = {"VAULT", "VM"};

const vmbak_cmd cmd_verify_def = {
    .name = "verify",
    .summary = "read and authenticate what a vault holds",
    .help = verify_help,
    .usage = VERIFY_USAGE,
    .arg_names = verify_args,
    .min_args = 1,
    .max_args = 2,
    .flags = VERB_VAULT_ARG | VERB_PASSPHRASE_FILE,
    .options = verify_options,
    .opts_size = sizeof(verify_opts),
    .option = verify_option,
    .options_done = verify_options_done,
    .check = verify_check,
    .run = cmd_verify,
};
