/* run.c: running a helper program (run.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "run.h"

/* fd moved away from descriptor 3 (which the child may be asked to fill), close-on-exec. Only
 * async-signal-safe calls: used between fork and exec. */
static int off3(int fd)
{
	return fd == 3 ? fcntl(fd, F_DUPFD_CLOEXEC, 10) : fd;
}

/* The child: descriptors in place, then the program. On any failure the errno goes to the
 * parent through ex_w (close-on-exec: EOF there means the exec worked). */
static void child(const vbu_run_opts *o, int in_r, int out_w, int ex_w)
{
	static char *const empty_env[] = {NULL};
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC), in, e;

	if (o->fd3 >= 0) {
		nul = off3(nul);
		in_r = in_r >= 0 ? off3(in_r) : in_r;
		out_w = out_w >= 0 ? off3(out_w) : out_w;
		ex_w = off3(ex_w);
	}
	if (nul < 0 || ex_w < 0)
		goto fail;
	if (o->pty >= 0 && (setsid() < 0 || ioctl(o->pty, TIOCSCTTY, 0) != 0))
		goto fail;
	if (o->fd3 >= 0 && (o->fd3 == 3 ? fcntl(3, F_SETFD, 0) : dup2(o->fd3, 3)) < 0)
		goto fail;
	in = o->input ? in_r : o->in_fd >= 0 ? o->in_fd : nul;
	if (dup2(in, STDIN_FILENO) < 0)
		goto fail;
	if (o->capture != VBU_RUN_INHERIT &&
	    (dup2(o->capture == VBU_RUN_OUTPUT ? out_w : nul, STDOUT_FILENO) < 0 ||
	     dup2(o->capture != VBU_RUN_NONE ? out_w : nul, STDERR_FILENO) < 0))
		goto fail;
	execve(o->path, o->argv, o->envp ? o->envp : empty_env);
fail:
	e = errno;
	if (ex_w >= 0 && write(ex_w, &e, sizeof(e)) < 0)
		e = 0;
	_exit(127);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes the input with SIGPIPE held off this thread: a program that exits without reading it
 * all gives -EPIPE here, not the death of vmbak. */
static int write_input(int fd, const void *buf, size_t len)
{
	static const struct timespec zero = {0, 0};
	sigset_t pipe_set, old;
	int r, held;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	held = sigismember(&old, SIGPIPE);
	r = vbu_write_all(fd, buf, len);
	if (r == -EPIPE && !held)
		while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
			;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/* Reads the program's output into o->out until EOF or the deadline (0: none). -ETIME at the
 * deadline. */
static int read_output(const vbu_run_opts *o, int fd, int64_t deadline)
{
	char scratch[512];
	size_t used = 0, cap = o->out_cap - 1;

	for (;;) {
		char *at = used < cap ? o->out + used : scratch;
		size_t room = used < cap ? cap - used : sizeof(scratch);
		ssize_t k;

		if (deadline) {
			struct pollfd p = {fd, POLLIN, 0};
			int64_t left = deadline - now_ms();
			int n =
			    left > 0 ? poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left) : 0;

			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0)
				return -ETIME;
		}
		k = read(fd, at, room);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		if (at == scratch)
			continue; /* the start is kept: the rest is read and dropped */
		used += (size_t)k;
		if (used == cap && o->keep_end) {
			/* Keep the end: that is where the reason is. */
			memmove(o->out, o->out + used / 2, used - used / 2);
			used -= used / 2;
		}
	}
	o->out[used] = '\0';
	return 0;
}

/* Reaps pid; with a deadline (0: none), kills it there and returns -ETIME. */
static int reap(pid_t pid, int64_t deadline, int *ret_wst)
{
	pid_t w;

	for (;;) {
		w = waitpid(pid, ret_wst, deadline ? WNOHANG : 0);
		if (w == pid)
			return 0;
		if (w < 0 && errno != EINTR)
			return -errno;
		if (deadline && now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, ret_wst, 0) < 0 && errno == EINTR)
				;
			return -ETIME;
		}
		if (deadline)
			nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
}

int vbu_run(const vbu_run_opts *o, vbu_run_result *ret)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, ex[2] = {-1, -1}, err = 0, wst = 0, r = 0, rr;
	int64_t deadline = o->timeout_s ? now_ms() + (int64_t)o->timeout_s * 1000 : 0;
	ssize_t n;
	pid_t pid;

	int pipe_out = o->capture == VBU_RUN_STDERR || o->capture == VBU_RUN_OUTPUT;

	if (!o->path || o->path[0] != '/' || !o->argv || (pipe_out && (!o->out || o->out_cap < 2)))
		return -EINVAL;
	if (o->out && o->out_cap)
		o->out[0] = '\0';
	if (pipe2(ex, O_CLOEXEC) != 0 || (o->input && pipe2(in, O_CLOEXEC) != 0) ||
	    (pipe_out && pipe2(out, O_CLOEXEC) != 0)) {
		r = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (pid == 0)
		child(o, in[0], out[1], ex[1]);
	close(ex[1]);
	ex[1] = -1;
	if (in[0] >= 0)
		close(in[0]);
	in[0] = -1;
	if (out[1] >= 0)
		close(out[1]);
	out[1] = -1;
	while ((n = read(ex[0], &err, sizeof(err))) < 0 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(err)) { /* it never ran */
		reap(pid, 0, &wst);
		r = err ? -err : -EIO;
		goto out;
	}
	if (o->input) {
		r = write_input(in[1], o->input, o->input_len);
		close(in[1]);
		in[1] = -1;
		if (r == -EPIPE)
			r = 0;
	}
	if (out[0] >= 0 && (rr = read_output(o, out[0], deadline)) < 0) {
		close(out[0]);
		out[0] = -1;
		kill(pid, SIGKILL);
		reap(pid, 0, &wst);
		r = rr;
		goto out;
	}
	if ((rr = reap(pid, deadline, &wst)) < 0) {
		r = rr;
		goto out;
	}
	if (r < 0)
		goto out;
	if (WIFEXITED(wst)) {
		ret->status = WEXITSTATUS(wst);
		ret->signal = 0;
	} else {
		ret->status = -1;
		ret->signal = WIFSIGNALED(wst) ? WTERMSIG(wst) : 0;
	}
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
		if (ex[i] >= 0)
			close(ex[i]);
	}
	return r;
}

const char *vbu_run_how(const vbu_run_result *res, char *buf, size_t cap)
{
	if (res->status >= 0)
		snprintf(buf, cap, "exit status %d", res->status);
	else
		snprintf(buf, cap, "killed by signal %d", res->signal);
	return buf;
}

char *vbu_first_line(char *text)
{
	text[strcspn(text, "\n")] = '\0';
	return text;
}
