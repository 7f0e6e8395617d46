/* jobs.h: the job history of a vault: one record per ingest, prune, delete, gc and verify.
 *
 * A job is begun before its work (state running, with the pid of its process and that
 * process's start time) and ended after it (completed, failed or killed, with counts and the
 * error). A process that dies without ending its job (kill -9, power cut) leaves the record
 * running; readers (vbs_job_list, vbs_job_get) then see it as failed with the error
 * "process died": the process is dead when /proc/PID/stat is gone, or names a process started
 * at another time, or the machine booted since (boot id). Nothing has to be repaired by hand.
 *
 * Jobs also own the chunk pins of ingests (see gc.h): a pin lives as long as its job runs.
 *
 * Record, database "jobs" (man/vmbak-vault.5):
 *   key   u64 job id (big-endian; ids grow, never repeat)
 *   value JSON {"kind", "target", "start" (ns), "end" (ns, 0 while running), "state",
 *               "pid", "pid_start" (clock ticks after boot, /proc/PID/stat field 22),
 *               "boot_id", "bytes_read", "bytes_stored", "error", "steps" (optional)}
 *   "steps" is written only when not empty: for a job made of the jobs of other verbs (kind
 *   "backup": ingest, prune, verify), which of them ran and how each ended, as text.
 *
 * Every function runs its own short transaction (begin, progress and end write one record:
 * they wait for the vault's writer lock, never for readers). Thread-safe in the sense of
 * vault.h. Errors: -EINVAL a bad kind or target, -ENOENT no such job, -EBADMSG a damaged
 * record, -EROFS a vault opened read-only, else as vault.h.
 */
#ifndef VMBAK_JOBS_H
#define VMBAK_JOBS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rp.h"
#include "vault.h"

typedef enum vbs_job_state {
	VBS_JOB_RUNNING = 0,
	VBS_JOB_COMPLETED,
	VBS_JOB_FAILED,
	VBS_JOB_KILLED, /* ended by a signal (SIGINT, SIGTERM, SIGHUP) its process caught */
} vbs_job_state;

/* Kinds used by vmbak: "ingest", "prune", "delete", "gc", "verify", "backup". Any [a-z-] word of at most
 * VBS_JOB_KIND_MAX - 1 characters is accepted. */
#define VBS_JOB_KIND_MAX 16
/* Target: "VM", "VM/RP" or "" (the whole vault); at most VBS_JOB_TARGET_MAX - 1 bytes. */
#define VBS_JOB_TARGET_MAX (VBS_NAME_MAX + 1 + VBS_RP_ID_MAX + 1)
#define VBS_JOB_ERROR_MAX 512 /* longer error texts are cut */
#define VBS_JOB_STEPS_MAX 512 /* longer step texts are cut */

typedef struct vbs_job {
	uint64_t id;
	char kind[VBS_JOB_KIND_MAX];
	char target[VBS_JOB_TARGET_MAX];
	int64_t start_ns, end_ns; /* wall clock; end_ns 0 while running */
	vbs_job_state state;	  /* as readers see it: a running job whose process died: FAILED */
	int32_t pid;
	uint64_t pid_start;
	char boot_id[40]; /* /proc/sys/kernel/random/boot_id of its boot */
	uint64_t bytes_read, bytes_stored;
	char error[VBS_JOB_ERROR_MAX]; /* "" when none */
	char steps[VBS_JOB_STEPS_MAX]; /* "" when none (see "steps" above) */
} vbs_job;

/* "running", "completed", "failed", "killed". */
const char *vbs_job_state_name(vbs_job_state s);

/* Records a new running job of this process; *ret_id is its id. */
int vbs_job_begin(vbs_vault *v, const char *kind, const char *target, uint64_t *ret_id);

/* Updates the counts of a running job (optional; a few times a minute at most). */
int vbs_job_progress(vbs_vault *v, uint64_t id, uint64_t bytes_read, uint64_t bytes_stored);

/* Ends a job: state COMPLETED, FAILED or KILLED; error NULL or "" when none. Ending a job that
 * is not running is -EALREADY (the record is left alone). */
int vbs_job_end(vbs_vault *v, uint64_t id, vbs_job_state state, uint64_t bytes_read,
		uint64_t bytes_stored, const char *error);
/* vbs_job_end with the job's steps (NULL or "" for none), e.g. "ingest completed (job 7),
 * prune completed (job 8), verify skipped". */
int vbs_job_end_steps(vbs_vault *v, uint64_t id, vbs_job_state state, uint64_t bytes_read,
		      uint64_t bytes_stored, const char *error, const char *steps);

/* One job, or every job in id order (oldest first; max > 0: only the newest max). Caller frees
 * *ret (a plain array). */
int vbs_job_get(vbs_vault *v, uint64_t id, vbs_job *ret);
int vbs_job_list(vbs_vault *v, size_t max, vbs_job **ret, size_t *ret_n);

/* 1 when the process pid, started at pid_start (clock ticks after boot, as in /proc/PID/stat),
 * still runs on this boot; 0 otherwise. */
int vbs_process_alive(int32_t pid, uint64_t pid_start, const char *boot_id);

#endif
