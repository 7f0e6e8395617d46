/* jobs_cli.h: a verb's job record (store/jobs.h) with signals turned into "killed".
 *
 * cli_job_start() records a running job, then blocks SIGINT, SIGTERM and SIGHUP in the calling
 * thread (threads started afterwards, such as ingest's workers, inherit that) and starts a
 * thread that waits for them: on one it ends the job as killed ("interrupted by SIGTERM"),
 * prints that line and exits with status 1. Call it from the main thread before starting any
 * thread. cli_job_finish() ends the job (status 0: completed, else failed with error, or with
 * vbs_errmsg() when error is NULL); after it a signal still ends the process with status 1.
 *
 * cli_job_parent() names the job (of the same vault) that the next verbs' jobs are steps of
 * (vmbak backup): a signal that ends a running step's job as killed ends that one too, its steps
 * steps_done (copied) and "KIND killed (job N)". id 0: none. Main thread.
 */
#ifndef VMBAK_JOBS_CLI_H
#define VMBAK_JOBS_CLI_H

#include <stdint.h>

#include "common.h"
#include "vault.h"

/* The verbs of cmd_jobs.c, cmd_lifecycle.c and cmd_backup.c. */
extern const vmbak_cmd cmd_jobs_def, cmd_protect_def, cmd_unprotect_def, cmd_delete_def,
    cmd_prune_def, cmd_gc_def, cmd_backup_def;

/* Prints the error line and returns an exit status (0 when recorded). */
int cli_job_start(vbs_vault *v, const char *kind, const char *target, uint64_t *ret_id);
void cli_job_finish(vbs_vault *v, uint64_t id, int status, uint64_t bytes_read,
		    uint64_t bytes_stored, const char *error);
void cli_job_parent(uint64_t id, const char *steps_done);

/* fn runs on that signal thread before the process exits (stops helper processes such as
 * ingest's qemu-nbd, removes their files). One hook; NULL removes it. */
void cli_job_on_signal(void (*fn)(void));

#endif
