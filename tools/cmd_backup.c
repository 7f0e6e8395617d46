/* cmd_backup.c: vmbak backup JOBFILE, one VM's backup as its job file says (vmbak-job(5)).
 *
 * A job file is lines "KEY = VALUE". Four keys are the job's own (vault, vm, passphrase-file,
 * verify); every other key is an option of one of the verbs the job runs, by its long name:
 * keep-* are prune's, verify-OPT is verify's --OPT, and everything else is ingest's. The verbs'
 * own getopt tables say which names exist and which take a value (verb_option_table()), and the
 * verbs' own parsers check the values (g->check_only), so every ingest, prune and verify option,
 * present and future, means in a job file exactly what it means on the command line.
 *
 * Order: the file is read and every line checked; each step's arguments are checked by its verb,
 * and a failing check is reported as one line naming the file, the line and the key; only then
 * does anything run (a bad job file runs nothing and records nothing). The job record (kind
 * "backup", target the VM) is begun, ingest runs, then prune and verify (both skipped when the
 * ingest failed), and the record ends saying which steps ran and how each ended.
 *
 * Each step is the verb itself, run in this process with the argv a command line would give it,
 * so it opens the vault, asks for its passphrase and keeps its own job record as it always does.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "file.h"
#include "jobs.h"
#include "jobs_cli.h"
#include "util.h"
#include "vault.h"

#define BACKUP_USAGE "vmbak backup JOBFILE [--dry-run]"

static const char backup_help[] =
    "usage: " BACKUP_USAGE "\n"
    "\n"
    "Runs one VM's backup as its job file says: an ingest of the VM into the vault, then a\n"
    "prune of the VM's points (when the file has keep-* rules), then a verify (when it says\n"
    "verify = latest or all), and records one job of kind \"backup\" that says which steps\n"
    "ran and how each ended (see `vmbak jobs VAULT --json`). Prune and verify are skipped\n"
    "when the ingest fails. The file is \"KEY = VALUE\" lines: vault, vm, passphrase-file,\n"
    "verify, and every option of ingest by its name (disk, escrow, retain-until...), of\n"
    "prune (keep-last, keep-daily...) and of verify as verify-OPTION (verify-sample...);\n"
    "see vmbak-job(5). A job file that is wrong runs nothing: one line names the file, the\n"
    "line and the key.\n"
    "\n"
    "options:\n"
    "  --dry-run, -n           check the job file and print the commands it would run\n"
    "  -h, --help              show this help\n"
    "\n"
    "exit status: 0 every step completed, 1 a step failed, 2 the job file is wrong,\n"
    "3 the verify found damage.\n";

#define JOB_FILE_MAX (64u << 10)
#define JOB_LINES_MAX 1024

enum { STEP_INGEST, STEP_PRUNE, STEP_VERIFY, STEP_N };

static const char *const step_names[STEP_N] = {"ingest", "prune", "verify"};

/* Options of the verbs that a job file cannot give: they belong to the job (passphrase-file),
 * would print something else than the step does (help, json, dry-run), or are refused anyway. */
static const char *const excluded[] = {"help", "passphrase", "passphrase-file", "json", "dry-run"};

/* Ingest options that may be given more than once, one line each; any other key given twice is
 * an error. An option missing here can still be given once. */
static const char *const repeatable[] = {"disk", "changed", "escrow", "escrow-kind", "format"};

typedef struct job_line {
	unsigned no;	   /* line number, from 1 */
	const char *key;   /* into the file's buffer */
	const char *value; /* idem */
	int step;	   /* STEP_*, or -1 for the job's own keys */
	char *arg;	   /* "--OPT=VALUE" or "--OPT" for the verb; NULL for "no" and job keys */
} job_line;

typedef struct job {
	const char *file;
	char *buf; /* the file, its lines cut in place */
	job_line *lines;
	size_t n;
	const job_line *vault, *vm, *passfile, *verify; /* the job's keys, NULL when absent */
	char *verify_target;				/* "VM/latest" or "VM" */
	int has_step[STEP_N];
} job;

static void job_free(job *j)
{
	for (size_t i = 0; j->lines && i < j->n; i++)
		free(j->lines[i].arg);
	free(j->lines);
	free(j->buf);
	free(j->verify_target);
}

/* The last line job_err printed, for the job record (main thread only). */
static char last_err[2048];

/* One line about line l (NULL: the file as a whole) of the job file; returns status. */
static int job_err(const job *j, const job_line *l, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int job_err(const job *j, const job_line *l, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		snprintf(msg, sizeof(msg), "(unprintable message)");
	va_end(ap);
	if (l)
		snprintf(last_err, sizeof(last_err), "%s:%u: %s: %s", q(j->file), l->no, l->key,
			 msg);
	else
		snprintf(last_err, sizeof(last_err), "%s: %s", q(j->file), msg);
	vbu_err("%s", last_err);
	return status;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

static const vmbak_cmd *step_cmd(int step)
{
	return step == STEP_INGEST  ? &cmd_ingest_def
	       : step == STEP_PRUNE ? &cmd_prune_def
				    : &cmd_verify_def;
}

/* The getopt table of a verb, from its entry (NULL when out of memory); made once, kept for the
 * life of the process. */
static const struct option *verb_options(int step, const vmbak_globals *g)
{
	static struct option *tables[STEP_N];

	(void)g;
	if (!tables[step])
		tables[step] = verb_option_table(step_cmd(step));
	return tables[step];
}

/* A file that holds a secret (a passphrase): like ssh's private keys, it must be a regular
 * file of this user or root, that neither group nor others may read or write. */
static int check_secret_file(const job *j, const job_line *l)
{
	struct stat st;

	if (stat(l->value, &st) < 0)
		return job_err(j, l, VMBAK_EXIT_FAIL, "cannot open '%s': %s", q(l->value),
			       vbu_strerror(errno));
	if (!S_ISREG(st.st_mode))
		return job_err(j, l, VMBAK_EXIT_USAGE, "'%s' is not a regular file", q(l->value));
	if (st.st_mode & 077)
		return job_err(j, l, VMBAK_EXIT_USAGE,
			       "'%s' holds a secret but group or others may access it (mode %04o): "
			       "chmod 600 it",
			       q(l->value), (unsigned)(st.st_mode & 07777));
	if (st.st_uid != geteuid() && st.st_uid != 0)
		return job_err(j, l, VMBAK_EXIT_USAGE,
			       "'%s' holds a secret but belongs to another user (uid %u)",
			       q(l->value), (unsigned)st.st_uid);
	return 0;
}

/* The job file into j->buf, checked: a regular file of at most JOB_FILE_MAX bytes, without NUL
 * bytes, of this user or root and writable by no one else (it says what is read and where it
 * goes, so whoever may change it may read any disk into any vault). */
static int read_job_file(job *j)
{
	struct stat st;
	size_t n = 0;
	int fd, r;

	fd = open(j->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return job_err(j, NULL, VMBAK_EXIT_FAIL, "cannot open job file: %s",
			       vbu_strerror(errno));
	if (fstat(fd, &st) < 0) {
		close(fd);
		return job_err(j, NULL, VMBAK_EXIT_FAIL, "cannot open job file: %s",
			       vbu_strerror(errno));
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)JOB_FILE_MAX) {
		close(fd);
		return job_err(j, NULL, VMBAK_EXIT_USAGE,
			       S_ISREG(st.st_mode) ? "job file is too large (at most 64 KiB)"
						   : "job file is not a regular file");
	}
	if ((st.st_mode & 022) || (st.st_uid != geteuid() && st.st_uid != 0)) {
		close(fd);
		return job_err(j, NULL, VMBAK_EXIT_USAGE,
			       "job file may be changed by %s (mode %04o, uid %u): it must "
			       "belong to you or root and be writable by no one else",
			       (st.st_mode & 022) ? "group or others" : "another user",
			       (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
	}
	j->buf = malloc((size_t)st.st_size + 1);
	if (!j->buf) {
		close(fd);
		return job_err(j, NULL, VMBAK_EXIT_FAIL, "cannot read job file: %s",
			       vbu_strerror(ENOMEM));
	}
	r = vbu_pread_full(fd, j->buf, (size_t)st.st_size, 0, &n);
	close(fd);
	if (r < 0)
		return job_err(j, NULL, VMBAK_EXIT_FAIL, "cannot read job file: %s",
			       vbu_strerror(-r));
	j->buf[n] = '\0';
	if (memchr(j->buf, '\0', n))
		return job_err(j, NULL, VMBAK_EXIT_USAGE, "job file holds a NUL byte");
	return 0;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* One line "KEY = VALUE" into l (key and value cut in place). 0, or the status of the error
 * line, which is printed here. */
static int split_line(job *j, char *s, job_line *l)
{
	char *k, *e, *v;

	while (is_blank(*s))
		s++;
	k = s;
	while ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-')
		s++;
	e = s;
	while (is_blank(*s))
		s++;
	if (e == k || *s != '=') {
		/* The key, when the line starts with one, else "line". */
		*e = '\0';
		l->key = e == k ? "line" : k;
		return job_err(j, l, VMBAK_EXIT_USAGE,
			       "not \"KEY = VALUE\" (keys are lowercase letters, digits and "
			       "'-'; comments start with '#')");
	}
	*e = '\0';
	l->key = k;
	v = s + 1;
	while (is_blank(*v))
		v++;
	e = v + strlen(v);
	while (e > v && is_blank(e[-1]))
		*--e = '\0';
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return job_err(j, l, VMBAK_EXIT_USAGE, "control character in the value");
	if (!*v)
		return job_err(j, l, VMBAK_EXIT_USAGE, "empty value");
	l->value = v;
	return 0;
}

/* Which verb a key belongs to, and its option there; NULL when none has it. */
static const struct option *route(const char *key, const struct option *const *opts, int *ret_step,
				  const char **ret_name)
{
	const char *name = key;
	int step = STEP_INGEST;

	if (strncmp(key, "keep-", 5) == 0)
		step = STEP_PRUNE;
	else if (strncmp(key, "verify-", 7) == 0) {
		step = STEP_VERIFY;
		name = key + 7;
	}
	if (in_list(name, excluded, VBU_ARRAY_SIZE(excluded)))
		return NULL;
	for (const struct option *o = opts[step]; o && o->name; o++)
		if (strcmp(o->name, name) == 0) {
			*ret_step = step;
			*ret_name = o->name;
			return o;
		}
	return NULL;
}

/* The lines of j->buf into j->lines: syntax, known keys, no key twice that may be given only
 * once, flags "yes" or "no", files with secrets private. */
static int parse_lines(job *j, vmbak_globals *g)
{
	const struct option *opts[STEP_N];
	char *s = j->buf, *nl;
	unsigned no = 0;
	int status;

	for (int i = 0; i < STEP_N; i++) {
		opts[i] = verb_options(i, g);
		if (!opts[i])
			return job_err(j, NULL, VMBAK_EXIT_FAIL, "%s gives no options",
				       step_names[i]);
	}
	j->lines = calloc(JOB_LINES_MAX, sizeof(*j->lines));
	if (!j->lines)
		return job_err(j, NULL, VMBAK_EXIT_FAIL, "%s", vbu_strerror(ENOMEM));
	for (; s && *s; s = nl) {
		job_line *l;
		const struct option *o = NULL;
		const char *name = NULL;
		char *p;

		nl = strchr(s, '\n');
		if (nl)
			*nl++ = '\0';
		no++;
		for (p = s; is_blank(*p); p++)
			;
		if (!*p || *p == '#')
			continue;
		if (j->n == JOB_LINES_MAX)
			return job_err(j, NULL, VMBAK_EXIT_USAGE, "more than %d settings",
				       JOB_LINES_MAX);
		l = &j->lines[j->n];
		l->no = no;
		l->step = -1;
		status = split_line(j, s, l);
		if (status != 0)
			return status;
		j->n++;

		{
			const job_line **slot = strcmp(l->key, "vault") == 0	? &j->vault
						: strcmp(l->key, "vm") == 0	? &j->vm
						: strcmp(l->key, "verify") == 0 ? &j->verify
						: strcmp(l->key, "passphrase-file") == 0
						    ? &j->passfile
						    : NULL;
			if (slot && *slot)
				return job_err(j, l, VMBAK_EXIT_USAGE,
					       "given twice (first on line %u)", (*slot)->no);
			if (slot) {
				*slot = l;
				continue;
			}
		}
		o = route(l->key, opts, &l->step, &name);
		if (!o)
			return job_err(j, l, VMBAK_EXIT_USAGE,
				       "unknown key (see vmbak-job(5) and `vmbak %s --help`)",
				       strncmp(l->key, "keep-", 5) == 0	    ? "prune"
				       : strncmp(l->key, "verify-", 7) == 0 ? "verify"
									    : "ingest");
		if (!(l->step == STEP_INGEST &&
		      in_list(name, repeatable, VBU_ARRAY_SIZE(repeatable))))
			for (size_t i = 0; i + 1 < j->n; i++)
				if (strcmp(j->lines[i].key, l->key) == 0)
					return job_err(j, l, VMBAK_EXIT_USAGE,
						       "given twice (first on line %u)",
						       j->lines[i].no);
		if (o->has_arg == no_argument) {
			if (strcmp(l->value, "no") == 0)
				continue;
			if (strcmp(l->value, "yes") != 0)
				return job_err(j, l, VMBAK_EXIT_USAGE,
					       "invalid value '%s': use yes or no", q(l->value));
			status = asprintf(&l->arg, "--%s", name);
		} else {
			size_t len = strlen(name) + strlen(l->value);

			if (len > PATH_MAX + 64)
				return job_err(j, l, VMBAK_EXIT_USAGE, "value is too long");
			status = asprintf(&l->arg, "--%s=%s", name, l->value);
		}
		if (status < 0) {
			l->arg = NULL;
			return job_err(j, l, VMBAK_EXIT_FAIL, "%s", vbu_strerror(ENOMEM));
		}
		j->has_step[l->step] = 1;
		if (strlen(name) >= 15 &&
		    strcmp(name + strlen(name) - 15, "passphrase-file") == 0 &&
		    (status = check_secret_file(j, l)) != 0)
			return status;
	}
	return 0;
}

/* Runs fn(arg) with its lines on stderr caught into msg (the first line, without the
 * "vmbak: " prefix). fn's status; -errno when stderr could not be redirected. */
static int caught(int (*fn)(void *), void *arg, char *msg, size_t cap)
{
	size_t pl = strlen(vbu_progname());
	int fd, saved = -1, status;
	ssize_t n;

	msg[0] = '\0';
	fd = memfd_create("vmbak-job-check", MFD_CLOEXEC);
	if (fd < 0 || fflush(stderr) != 0 || (saved = dup(STDERR_FILENO)) < 0 ||
	    dup2(fd, STDERR_FILENO) < 0) {
		status = -errno;
		if (saved >= 0)
			close(saved);
		if (fd >= 0)
			close(fd);
		return status;
	}
	status = fn(arg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, msg, cap - 1, 0);
	close(fd);
	msg[n > 0 ? n : 0] = '\0';
	msg[strcspn(msg, "\n")] = '\0';
	if (strncmp(msg, vbu_progname(), pl) == 0 && strncmp(msg + pl, ": ", 2) == 0)
		memmove(msg, msg + pl + 2, strlen(msg + pl + 2) + 1);
	return status;
}

static int vault_arg_call(void *arg)
{
	return check_vault_arg(arg);
}

static int vm_arg_call(void *arg)
{
	return check_name_arg("VM", arg);
}

/* The job's own keys, and which steps run. */
static int check_job_keys(job *j)
{
	char msg[1024];
	int status;

	if (!j->vault)
		return job_err(j, NULL, VMBAK_EXIT_USAGE, "vault: missing (vault = PATH)");
	if (!j->vm)
		return job_err(j, NULL, VMBAK_EXIT_USAGE, "vm: missing (vm = NAME)");
	if ((status = caught(vault_arg_call, (void *)j->vault->value, msg, sizeof(msg))) != 0)
		return job_err(j, j->vault, status < 0 ? VMBAK_EXIT_FAIL : status, "%s", msg);
	if ((status = caught(vm_arg_call, (void *)j->vm->value, msg, sizeof(msg))) != 0)
		return job_err(j, j->vm, status < 0 ? VMBAK_EXIT_FAIL : status, "%s", msg);
	if (j->passfile && (status = check_secret_file(j, j->passfile)) != 0)
		return status;
	j->has_step[STEP_INGEST] = 1;
	if (j->verify && strcmp(j->verify->value, "none") != 0) {
		int all = strcmp(j->verify->value, "all") == 0;

		if (!all && strcmp(j->verify->value, "latest") != 0)
			return job_err(j, j->verify, VMBAK_EXIT_USAGE,
				       "invalid value '%s': use latest, all or none",
				       q(j->verify->value));
		if (asprintf(&j->verify_target, "%s%s", j->vm->value, all ? "" : "/latest") < 0) {
			j->verify_target = NULL;
			return job_err(j, j->verify, VMBAK_EXIT_FAIL, "%s", vbu_strerror(ENOMEM));
		}
		j->has_step[STEP_VERIFY] = 1;
	} else {
		for (size_t i = 0; i < j->n; i++)
			if (j->lines[i].step == STEP_VERIFY)
				return job_err(j, &j->lines[i], VMBAK_EXIT_USAGE,
					       "needs verify = latest or verify = all");
	}
	return 0;
}

/* The argv of step (the lines of that step but skip, then "--" and its arguments); *ret_argv
 * is malloc'ed, its strings belong to j. */
static int step_argv(const job *j, int step, const job_line *skip, char ***ret_argv, int *ret_argc)
{
	char **argv = calloc(j->n + 6, sizeof(*argv));
	int argc = 0;

	if (!argv)
		return -ENOMEM;
	argv[argc++] = (char *)step_names[step];
	for (size_t i = 0; i < j->n; i++)
		if (j->lines[i].step == step && j->lines[i].arg && &j->lines[i] != skip)
			argv[argc++] = j->lines[i].arg;
	argv[argc++] = (char *)"--";
	argv[argc++] = (char *)j->vault->value;
	argv[argc++] = step == STEP_VERIFY ? j->verify_target : (char *)j->vm->value;
	argv[argc] = NULL;
	*ret_argv = argv;
	*ret_argc = argc;
	return 0;
}

static vmbak_globals step_globals(const job *j, const vmbak_globals *g)
{
	vmbak_globals g2 = *g;

	if (j->passfile)
		g2.passphrase_file = j->passfile->value;
	g2.check_only = 0;
	return g2;
}

struct verb_call {
	int step, argc;
	char **argv;
	vmbak_globals *g;
};

static int verb_call(void *arg)
{
	struct verb_call *c = arg;

	return verb_main(step_cmd(c->step), c->argc, c->argv, c->g);
}

/* The verb's check of step's arguments (all lines of the step but skip), its one line of error
 * caught into msg. The verb's exit status; -errno when the check itself could not run. */
static int check_step(const job *j, int step, const job_line *skip, const vmbak_globals *g,
		      char *msg, size_t cap)
{
	vmbak_globals g2 = step_globals(j, g);
	struct verb_call c = {step, 0, NULL, &g2};
	int status;

	msg[0] = '\0';
	if (step_argv(j, step, skip, &c.argv, &c.argc) < 0)
		return -ENOMEM;
	g2.check_only = 1;
	status = caught(verb_call, &c, msg, cap);
	free(c.argv);
	return status;
}

/* 1 when msg names the option of arg ("--NAME" of "--NAME=VALUE"), not merely a longer one
 * that starts so. */
static int names_option(const char *msg, const char *arg)
{
	size_t len = strcspn(arg, "=");

	for (const char *p = strstr(msg, "--"); p; p = strstr(p + 1, "--")) {
		char c = p[len];

		if (strncmp(p, arg, len) == 0 &&
		    !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return 1;
	}
	return 0;
}

/* Checks step with its verb. On failure, finds the line to blame: each line of the step left
 * out in turn, the lines without which the verb's message changes are those it is about; of
 * them, one whose option the message names, else the last. The line printed names it. */
static int check_step_blame(const job *j, int step, const vmbak_globals *g)
{
	char msg[1024], other[1024];
	const job_line *named = NULL, *last = NULL, *any = NULL;
	int status = check_step(j, step, NULL, g, msg, sizeof(msg));

	if (status == 0)
		return 0;
	if (status < 0)
		return job_err(j, NULL, VMBAK_EXIT_FAIL, "cannot check the %s step: %s",
			       step_names[step], vbu_strerror(-status));
	for (size_t i = 0; i < j->n; i++) {
		const job_line *l = &j->lines[i];
		int s2;

		if (l->step != step)
			continue;
		any = l;
		s2 = check_step(j, step, l, g, other, sizeof(other));
		if (s2 == 0 || strcmp(other, msg) != 0) {
			last = l;
			if (l->arg && names_option(msg, l->arg))
				named = l;
		}
	}
	if (!named)
		named = last ? last : step == STEP_VERIFY ? j->verify : any;
	if (!msg[0])
		snprintf(msg, sizeof(msg), "%s refuses these settings", step_names[step]);
	return job_err(j, named, status > 0 ? status : VMBAK_EXIT_FAIL, "%s", msg);
}

struct open_call {
	const char *path, *passfile;
	vbs_vault *v;
};

static int open_call(void *arg)
{
	struct open_call *c = arg;

	return vault_open(c->path, 0, 0, c->passfile, &c->v);
}

/* A job file that is right, but a step whose check failed for a reason outside it (exit status
 * 1: a source that is gone): the backup is recorded as failed, so that the job history shows
 * the backup that did not happen. Quiet: the line about the failure is out already, and a
 * vault that cannot be opened just gets no record. */
static void record_unstarted(const job *j, const vmbak_globals *g, int failed)
{
	vmbak_globals g2 = step_globals(j, g);
	struct open_call c = {j->vault->value, g2.passphrase_file, NULL};
	char steps[VBS_JOB_STEPS_MAX] = "", msg[1024];
	size_t len = 0;
	uint64_t id;

	if (caught(open_call, &c, msg, sizeof(msg)) != 0)
		return;
	for (int s = 0; s < STEP_N; s++)
		if (j->has_step[s] && len < sizeof(steps))
			len += (size_t)snprintf(steps + len, sizeof(steps) - len, "%s%s %s",
						len ? ", " : "", step_names[s],
						s == failed ? "not started (its check failed)"
							    : "skipped");
	if (vbs_job_begin(c.v, "backup", j->vm->value, &id) == 0)
		vbs_job_end_steps(c.v, id, VBS_JOB_FAILED, 0, 0, last_err, steps);
	vbs_vault_close(c.v);
}

/* " WORD", quoted for a POSIX shell when it needs it ('...', a "'" in it as '\''). */
static void print_word(const char *w)
{
	static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789-_=/.:,+@%";

	if (*w && !w[strspn(w, plain)]) {
		printf(" %s", w);
		return;
	}
	fputs(" '", stdout);
	for (; *w; w++)
		if (*w == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*w);
	putchar('\'');
}

/* The command line a step is, for --dry-run. */
static void print_step(const job *j, int step)
{
	char **argv = NULL;
	int argc;

	if (step_argv(j, step, NULL, &argv, &argc) < 0)
		return;
	fputs("vmbak", stdout);
	if (j->passfile) {
		fputs(" --passphrase-file", stdout);
		print_word(j->passfile->value);
	}
	for (int i = 0; i < argc; i++)
		print_word(argv[i]);
	putchar('\n');
	free(argv);
}

/* The job records of this process after the backup's own (id > first), oldest first. */
static int step_jobs(vbs_vault *v, uint64_t first, vbs_job **ret, size_t *ret_n)
{
	vbs_job *all = NULL;
	size_t n = 0, k = 0;
	int r = vbs_job_list(v, 64, &all, &n);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if (all[i].id > first && all[i].pid == (int32_t)getpid())
			all[k++] = all[i];
	*ret = all;
	*ret_n = k;
	return 0;
}

/* Ends the backup's record: each step that ran with the state its own record shows (or the
 * exit status, when it left none), the first failure as the error, the ingest's counts. */
static int record_end(const job *j, const vmbak_globals *g, uint64_t id, const int *ran,
		      const int *status, int overall)
{
	char steps[VBS_JOB_STEPS_MAX] = "", err[VBS_JOB_ERROR_MAX] = "";
	vmbak_globals g2 = step_globals(j, g);
	vbs_vault *v = NULL;
	vbs_job *jobs = NULL;
	size_t n = 0, used = 0, len = 0;
	uint64_t rd = 0, st = 0;
	int r, rc, killed = 0;

	rc = vault_open(j->vault->value, 0, 0, g2.passphrase_file, &v);
	if (rc != 0)
		return rc;
	if (step_jobs(v, id, &jobs, &n) < 0)
		n = 0;
	for (int s = 0; s < STEP_N; s++) {
		const vbs_job *sj = NULL;
		char one[VBS_JOB_ERROR_MAX + 64];

		if (!j->has_step[s])
			continue;
		if (ran[s])
			for (size_t i = used; i < n; i++)
				if (strcmp(jobs[i].kind, step_names[s]) == 0) {
					sj = &jobs[i];
					used = i + 1;
					break;
				}
		if (!ran[s])
			snprintf(one, sizeof(one), "%s skipped", step_names[s]);
		else if (sj)
			snprintf(one, sizeof(one), "%s %s (job %llu)", step_names[s],
				 status[s] == 0 ? "completed" : vbs_job_state_name(sj->state),
				 (unsigned long long)sj->id);
		else
			snprintf(one, sizeof(one), "%s %s (exit status %d)", step_names[s],
				 status[s] == 0 ? "completed" : "failed", status[s]);
		if (len < sizeof(steps))
			len += (size_t)snprintf(steps + len, sizeof(steps) - len, "%s%s",
						len ? ", " : "", one);
		if (ran[s] && status[s] != 0 && !err[0])
			snprintf(err, sizeof(err), "%s: %.480s", step_names[s],
				 sj && sj->error[0] ? sj->error : "failed");
		killed |= sj && sj->state == VBS_JOB_KILLED;
		if (s == STEP_INGEST && sj) {
			rd = sj->bytes_read;
			st = sj->bytes_stored;
		}
	}
	r = vbs_job_end_steps(v, id,
			      killed	     ? VBS_JOB_KILLED
			      : overall == 0 ? VBS_JOB_COMPLETED
					     : VBS_JOB_FAILED,
			      rd, st, err, steps);
	if (r < 0)
		rc = store_err(r, "cannot record the end of backup job %llu in vault '%s'",
			       (unsigned long long)id, q(j->vault->value));
	else
		printf("backup %s: %s\n", j->vm->value, steps);
	free(jobs);
	vbs_vault_close(v);
	return rc;
}

/* SIGINT, SIGTERM and SIGHUP blocked or unblocked in this thread (how: SIG_BLOCK, SIG_UNBLOCK).
 * Blocked, they go to the thread that cli_job_start started, which ends the running step's job
 * and the backup's as killed. */
static void signals(int how)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(how, &set, NULL);
}

static int cmd_backup(int argc, char **argv, vmbak_globals *g)
{
	static const struct option longopts[] = {
	    {"dry-run", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const names[] = {"JOBFILE"};
	job j = {0};
	int opt, state = 0, dry = 0, status, ran[STEP_N] = {0}, st[STEP_N] = {0}, overall = 0;
	vmbak_globals g2;
	vbs_vault *v = NULL;
	uint64_t id = 0;
	int r;

	if (g->check_only)
		return VMBAK_EXIT_USAGE; /* not a step of a job */
	while ((opt = verb_getopt(argc, argv, ":hn", longopts, &state)) != -1) {
		switch (opt) {
		case 'h':
			fputs(backup_help, stdout);
			return VMBAK_EXIT_OK;
		case 'n':
			dry = 1;
			break;
		default:
			return VMBAK_EXIT_USAGE;
		}
	}
	status = check_nargs(BACKUP_USAGE, names, 1, 1, argc - optind, argv + optind);
	if (status != 0)
		return status;
	j.file = argv[optind];
	if (!*j.file)
		return usage_err("job file name is empty");

	if ((status = read_job_file(&j)) != 0 || (status = parse_lines(&j, g)) != 0 ||
	    (status = check_job_keys(&j)) != 0)
		goto out;
	for (int s = 0; s < STEP_N; s++)
		if (j.has_step[s] && (status = check_step_blame(&j, s, g)) != 0) {
			if (status == VMBAK_EXIT_FAIL && !dry)
				record_unstarted(&j, g, s);
			goto out;
		}
	if (dry) {
		for (int s = 0; s < STEP_N; s++)
			if (j.has_step[s])
				print_step(&j, s);
		status = VMBAK_EXIT_OK;
		goto out;
	}

	g2 = step_globals(&j, g);
	status = vault_open(j.vault->value, 0, 0, g2.passphrase_file, &v);
	if (status != 0)
		goto out;
	r = vbs_job_begin(v, "backup", j.vm->value, &id);
	vbs_vault_close(v);
	v = NULL;
	if (r < 0) {
		status = store_err(r, "cannot record a job in vault '%s'", q(j.vault->value));
		goto out;
	}

	for (int s = 0; s < STEP_N; s++) {
		char **sargv = NULL, done[VBS_JOB_STEPS_MAX] = "";
		size_t len = 0;
		int sargc;

		if (!j.has_step[s] || (s != STEP_INGEST && st[STEP_INGEST] != 0))
			continue;
		/* A signal that kills this step's job kills the backup's too (jobs_cli.h). */
		for (int e = 0; e < s; e++)
			if (j.has_step[e] && len < sizeof(done))
				len += (size_t)snprintf(done + len, sizeof(done) - len, "%s%s %s",
							len ? ", " : "", step_names[e],
							!ran[e]	     ? "skipped"
							: st[e] == 0 ? "completed"
								     : "failed");
		cli_job_parent(id, done);
		if (step_argv(&j, s, NULL, &sargv, &sargc) < 0) {
			st[s] = store_err(-ENOMEM, "cannot run the %s step", step_names[s]);
		} else {
			g2 = step_globals(&j, g);
			/* verify stops on a signal by itself, and records its job as killed: the
			 * signals an earlier step blocked in this thread (jobs_cli.h) go to it. */
			signals(s == STEP_VERIFY ? SIG_UNBLOCK : SIG_BLOCK);
			st[s] = verb_main(step_cmd(s), sargc, sargv, &g2);
			signals(SIG_BLOCK);
		}
		free(sargv);
		fflush(stdout);
		ran[s] = 1;
		if (st[s] == VMBAK_EXIT_DAMAGE || (st[s] != 0 && overall != VMBAK_EXIT_DAMAGE))
			overall = st[s] == VMBAK_EXIT_DAMAGE ? VMBAK_EXIT_DAMAGE : VMBAK_EXIT_FAIL;
	}
	cli_job_parent(0, NULL);
	status = record_end(&j, g, id, ran, st, overall);
	if (overall != 0)
		status = overall;
out:
	job_free(&j);
	return status;
}

const vmbak_cmd cmd_backup_def = {
    .name = "backup",
    .summary = "run a VM's backup job: ingest, prune, verify (see vmbak-job(5))",
    .help = backup_help,
    .main = cmd_backup,
};
