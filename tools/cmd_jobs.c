/* cmd_jobs.c: vmbak jobs (the job history), and the job record every writing verb keeps
 * (jobs_cli.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "jobs.h"
#include "jobs_cli.h"
#include "util.h"
#include "vault.h"

/* ---- the job of a running verb ---- */

static struct {
	pthread_mutex_t lock;
	vbs_vault *v;
	uint64_t id;
	int live;
	char kind[VBS_JOB_KIND_MAX];
	uint64_t parent; /* cli_job_parent() */
	char parent_steps[VBS_JOB_STEPS_MAX];
} cur = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, "", 0, ""};

static void (*volatile on_signal_hook)(void);

void cli_job_on_signal(void (*fn)(void))
{
	on_signal_hook = fn;
}

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	char msg[64];
	int sig = 0;

	if (sigwait(set, &sig) != 0)
		return NULL;
	snprintf(msg, sizeof(msg), "interrupted by SIG%s",
		 sig == SIGINT	  ? "INT"
		 : sig == SIGTERM ? "TERM"
				  : "HUP");
	pthread_mutex_lock(&cur.lock);
	if (cur.live) {
		vbs_job_end(cur.v, cur.id, VBS_JOB_KILLED, 0, 0, msg);
		if (cur.parent) {
			char steps[VBS_JOB_STEPS_MAX];

			snprintf(steps, sizeof(steps), "%.400s%s%s killed (job %llu)",
				 cur.parent_steps, cur.parent_steps[0] ? ", " : "", cur.kind,
				 (unsigned long long)cur.id);
			vbs_job_end_steps(cur.v, cur.parent, VBS_JOB_KILLED, 0, 0, msg, steps);
		}
	}
	cur.live = 0;
	if (on_signal_hook)
		on_signal_hook();
	fprintf(stderr, "vmbak: %s\n", msg);
	_exit(VMBAK_EXIT_FAIL);
}

int cli_job_start(vbs_vault *v, const char *kind, const char *target, uint64_t *ret_id)
{
	static sigset_t set;
	pthread_t t;
	uint64_t id;
	int r = vbs_job_begin(v, kind, target, &id);

	if (r < 0)
		return store_err(r, "cannot record a job in vault '%s'", q(vbs_vault_path(v)));
	pthread_mutex_lock(&cur.lock);
	cur.v = v;
	cur.id = id;
	cur.live = 1;
	snprintf(cur.kind, sizeof(cur.kind), "%s", kind);
	pthread_mutex_unlock(&cur.lock);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) == 0 &&
	    pthread_create(&t, NULL, signal_thread, &set) == 0)
		pthread_detach(t);
	*ret_id = id;
	return VMBAK_EXIT_OK;
}

void cli_job_parent(uint64_t id, const char *steps_done)
{
	pthread_mutex_lock(&cur.lock);
	cur.parent = id;
	snprintf(cur.parent_steps, sizeof(cur.parent_steps), "%s", steps_done ? steps_done : "");
	pthread_mutex_unlock(&cur.lock);
}

void cli_job_finish(vbs_vault *v, uint64_t id, int status, uint64_t bytes_read,
		    uint64_t bytes_stored, const char *error)
{
	char msg[VBS_JOB_ERROR_MAX];
	int r = 0;

	snprintf(msg, sizeof(msg), "%s", status == 0 ? "" : error ? error : vbs_errmsg());
	if (status != 0 && !msg[0])
		snprintf(msg, sizeof(msg), "failed");
	pthread_mutex_lock(&cur.lock);
	if (cur.live && cur.id == id)
		r = vbs_job_end(v, id, status == 0 ? VBS_JOB_COMPLETED : VBS_JOB_FAILED, bytes_read,
				bytes_stored, msg);
	cur.live = 0;
	pthread_mutex_unlock(&cur.lock);
	/* After a failure its line is already out; after a success, say why the history will
	 * show the job as failed (process died) although the work is done. */
	if (r < 0 && status == 0)
		vbu_err("warning: the job history does not record the end of job %llu: %s",
			(unsigned long long)id, *vbs_errmsg() ? vbs_errmsg() : vbu_strerror(-r));
}

/* ---- vmbak jobs ---- */

#define JOBS_USAGE "vmbak jobs VAULT [--json] [--last N]"

static const char jobs_help[] =
    "usage: " JOBS_USAGE "\n"
    "\n"
    "Lists the jobs run on VAULT, oldest first: every ingest, prune, delete, gc, verify and\n"
    "backup (which runs an ingest, a prune and a verify, each also listed on its own),\n"
    "with its state (running, completed, failed, killed), start, duration, bytes read and\n"
    "stored, and error. A job whose process died without ending it shows as failed with the\n"
    "error 'process died'.\n"
    "\n"
    "options:\n"
    "  --json                  print one JSON array of jobs (id, kind, target, state, start,\n"
    "                          end, pid, bytes_read, bytes_stored, error, steps: which\n"
    "                          steps a backup ran and how each ended)\n"
    "  --last N                only the N newest jobs\n"
    "  -h, --help              show this help\n";

static json_object *job_json(const vbs_job *j)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "id", json_u64(j->id));
	json_object_object_add(o, "kind", json_object_new_string(j->kind));
	json_object_object_add(o, "target", json_object_new_string(j->target));
	json_object_object_add(o, "state", json_object_new_string(vbs_job_state_name(j->state)));
	json_object_object_add(o, "start", json_time(j->start_ns / 1000000000));
	json_object_object_add(o, "end", j->end_ns ? json_time(j->end_ns / 1000000000) : NULL);
	json_object_object_add(o, "pid", json_object_new_int64(j->pid));
	json_object_object_add(o, "bytes_read", json_u64(j->bytes_read));
	json_object_object_add(o, "bytes_stored", json_u64(j->bytes_stored));
	json_object_object_add(o, "error", json_str_or_null(j->error));
	json_object_object_add(o, "steps", json_str_or_null(j->steps));
	return o;
}

static void duration(const vbs_job *j, char *buf, size_t len)
{
	int64_t end = j->end_ns ? j->end_ns : vbu_now_ns();
	int64_t s = (end - j->start_ns) / 1000000000;

	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
	else
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
}

typedef struct jobs_opts {
	int json;
	size_t last;
} jobs_opts;

static const struct option jobs_options[] = {
    {"json", no_argument, NULL, 'j'},
    {"last", required_argument, NULL, 'l'},
    {NULL, 0, NULL, 0},
};

static int jobs_option(verb_ctx *c, int opt, const char *arg)
{
	jobs_opts *o = c->opts;
	unsigned long x;

	switch (opt) {
	case 'j':
		o->json = 1;
		return 0;
	case 'l':
		if (parse_count(arg, 1, 1000000, &x) < 0)
			return usage_err("invalid count '%s' for --last: use 1 to 1000000", q(arg));
		o->last = x;
		return 0;
	default:
		return VMBAK_EXIT_USAGE;
	}
}

static int cmd_jobs(verb_ctx *c)
{
	jobs_opts *o = c->opts;
	vbs_vault *v = c->v;
	vbs_job *jobs = NULL;
	size_t n = 0;
	int r, status;

	r = vbs_job_list(v, o->last, &jobs, &n);
	if (r < 0) {
		status = store_err(r, "cannot list the jobs of vault '%s'", q(c->args[0]));
		goto out;
	}
	if (o->json) {
		json_object *a = json_object_new_array();
		for (size_t i = 0; a && i < n; i++)
			json_object_array_add(a, job_json(&jobs[i]));
		status = a ? json_print(a) : store_err(-ENOMEM, "cannot list jobs");
		goto out;
	}
	printf("%6s  %-7s  %-32s  %-9s  %-20s  %8s  %10s  %10s  %s\n", "ID", "KIND", "TARGET",
	       "STATE", "START", "TIME", "READ", "STORED", "ERROR");
	for (size_t i = 0; i < n; i++) {
		char ts[21], d[24], h1[HUMAN_SIZE_LEN], h2[HUMAN_SIZE_LEN];

		vbu_format_time(jobs[i].start_ns / 1000000000, ts);
		duration(&jobs[i], d, sizeof(d));
		printf("%6llu  %-7s  %-32s  %-9s  %-20s  %8s  %10s  %10s  %s\n",
		       (unsigned long long)jobs[i].id, jobs[i].kind,
		       jobs[i].target[0] ? jobs[i].target : "-", vbs_job_state_name(jobs[i].state),
		       ts, d, human_size(jobs[i].bytes_read, h1),
		       human_size(jobs[i].bytes_stored, h2),
		       jobs[i].error[0] ? jobs[i].error : "-");
	}
	status = finish_stdout(VMBAK_EXIT_OK);
out:
	free(jobs);
	return status;
}

static const char *const jobs_args[] = {"VAULT"};

const vmbak_cmd cmd_jobs_def = {
    .name = "jobs",
    .summary = "list the job history (ingest, prune, delete, gc, verify)",
    .help = jobs_help,
    .usage = JOBS_USAGE,
    .arg_names = jobs_args,
    .min_args = 1,
    .max_args = 1,
    .flags = VERB_OPENS_VAULT,
    .options = jobs_options,
    .opts_size = sizeof(jobs_opts),
    .option = jobs_option,
    .run = cmd_jobs,
};
