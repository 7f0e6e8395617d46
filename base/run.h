/* run.h: running a helper program (qemu-img, cryptsetup, losetup, mount, dislocker, ntfs-3g)
 * the one way vmbak does it.
 *
 * The program is given by absolute path (never looked up in PATH) with the environment the
 * caller gives (keyvault/hdrcheck.h's vbk_helper_env(): no VMBAK_* variable, so no passphrase;
 * environ only for vmbak's own vmbakfs).
 * Its standard input is /dev/null, a descriptor of the caller's, or a pipe carrying bytes the
 * caller gives (a secret: never on argv). Its standard output and error go to /dev/null or are
 * captured into the caller's buffer (helpers print their reason there). Nothing else of ours
 * reaches it: every descriptor of the caller is close-on-exec, as everything vmbak opens is
 * (O_CLOEXEC), except those named here. The child is always reaped before vbu_run returns, also
 * after a timeout (then killed with SIGKILL).
 *
 * The input is written before any output is read: it must fit in a pipe (64 KiB), as secrets do,
 * or the program must read it all before it writes much.
 *
 * Thread-safe: between fork and exec the child makes only async-signal-safe calls; SIGPIPE from
 * a program that exits before reading its input is kept from the calling thread (blocked and
 * consumed there), never ignored process-wide. The signal mask is inherited by the program.
 */
#ifndef VMBAK_RUN_H
#define VMBAK_RUN_H

#include <stddef.h>

/* What goes into out: nothing (both to /dev/null), standard error only (standard output to
 * /dev/null), or both interleaved as the program writes them. VBU_RUN_INHERIT: nothing either,
 * the program writes to the caller's standard output and error (a program that says itself
 * why it failed, such as vmbakfs). */
enum { VBU_RUN_NONE = 0, VBU_RUN_STDERR, VBU_RUN_OUTPUT, VBU_RUN_INHERIT };

typedef struct vbu_run_opts {
	const char *path;  /* absolute path of the program */
	char *const *argv; /* NULL-terminated; argv[0] is what the program sees as its name */
	char *const *envp; /* NULL-terminated environment; NULL gives an empty one */
	const void *input; /* written to a pipe on its stdin, then closed (input_len bytes) */
	size_t input_len;  /* input == NULL: stdin is in_fd, or /dev/null when in_fd is -1 */
	int in_fd;	   /* -1 for none */
	int fd3;	   /* given to the program as descriptor 3, or -1 */
	int pty;	   /* a pty slave made its controlling terminal (in a new session), or -1 */
	int capture;	   /* VBU_RUN_NONE, VBU_RUN_STDERR or VBU_RUN_OUTPUT */
	char *out;	   /* captured output, NUL-terminated; out_cap bytes (at least 2) */
	size_t out_cap;
	int keep_end;	    /* output longer than out holds: keep its end (else its start) */
	unsigned timeout_s; /* killed after this many seconds; 0 for no limit */
} vbu_run_opts;

/* How it ended: exit status (0 to 255) and signal 0, or status -1 and the signal that ended it. */
typedef struct vbu_run_result {
	int status;
	int signal;
} vbu_run_result;

/* An opts with every descriptor -1, for designated initialisers to start from:
 * `vbu_run_opts o = VBU_RUN_OPTS; o.path = ...`. */
#define VBU_RUN_OPTS ((vbu_run_opts){.in_fd = -1, .fd3 = -1, .pty = -1})

/* Runs o->path and waits for it. Returns 0 when it ran (*ret says how it ended), or -errno when
 * it could not: it could not be started (the errno of pipe, fork or execve: -ENOENT, -EACCES,
 * -ENOEXEC...), -ETIME when it ran past o->timeout_s (killed and reaped), -EINVAL for a path
 * that is not absolute, or an error writing its input other than -EPIPE (it exited without
 * reading it all: not an error here, its exit status says what it thought). */
int vbu_run(const vbu_run_opts *o, vbu_run_result *ret);

/* How a run that did not succeed ended, for a message: "exit status N" or "killed by signal N",
 * into buf (cap bytes), which it returns. */
const char *vbu_run_how(const vbu_run_result *res, char *buf, size_t cap);

/* The first line of text (up to the first newline), in place; returns text. */
char *vbu_first_line(char *text);

#endif
