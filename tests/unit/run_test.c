/* run_test.c: base/run.c, the runner of helper programs: exit statuses and signals, the
 * captured output (first line, start or end kept), input through a pipe, the environment given
 * and nothing else, descriptor 3, a program that cannot be started, the time limit. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run.h"
#include "unit.h"

static const char *sh = "/bin/sh";

/* Runs sh -c script with o's other settings; returns vbu_run's result. */
static int run_sh(vbu_run_opts o, const char *script, vbu_run_result *res)
{
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)script, NULL};
	char *env[] = {(char *)"PATH=/usr/bin:/bin", (char *)"LC_ALL=C", NULL};

	o.path = sh;
	o.argv = argv;
	if (!o.envp)
		o.envp = env;
	return vbu_run(&o, res);
}

static void exit_status_and_stderr(void)
{
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	char out[256], how[64];

	o.capture = VBU_RUN_STDERR;
	o.out = out;
	o.out_cap = sizeof(out);
	CHECK_EQ_INT(run_sh(o, "echo hidden; echo 'first line' >&2; echo second >&2; exit 3", &res),
		     0);
	CHECK_EQ_INT(res.status, 3);
	CHECK_EQ_INT(res.signal, 0);
	CHECK_EQ_STR(out, "first line\nsecond\n");
	CHECK_EQ_STR(vbu_first_line(out), "first line");
	CHECK_EQ_STR(vbu_run_how(&res, how, sizeof(how)), "exit status 3");
	CHECK_EQ_INT(run_sh(o, "exit 0", &res), 0);
	CHECK_EQ_INT(res.status, 0);
	CHECK_EQ_STR(out, "");
}

static void signal_reported(void)
{
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	char how[64];

	CHECK_EQ_INT(run_sh(o, "kill -9 $$", &res), 0);
	CHECK_EQ_INT(res.status, -1);
	CHECK_EQ_INT(res.signal, 9);
	CHECK_EQ_STR(vbu_run_how(&res, how, sizeof(how)), "killed by signal 9");
}

static void output_kept(void)
{
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	char out[64];

	o.capture = VBU_RUN_OUTPUT;
	o.out = out;
	o.out_cap = sizeof(out);
	/* 20000 lines: more than out holds, and more than a pipe holds (the program must not
	 * block when the start is kept and the rest dropped). */
	CHECK_EQ_INT(run_sh(o,
			    "echo start; i=0; while [ $i -lt 20000 ]; do echo filler; "
			    "i=$((i+1)); done; echo the end >&2",
			    &res),
		     0);
	CHECK_EQ_INT(res.status, 0);
	CHECK(strncmp(out, "start\nfiller\n", 13) == 0);
	CHECK_EQ_INT(strlen(out), sizeof(out) - 1);
	o.keep_end = 1;
	CHECK_EQ_INT(run_sh(o,
			    "echo start; i=0; while [ $i -lt 20000 ]; do echo filler; "
			    "i=$((i+1)); done; echo the end >&2",
			    &res),
		     0);
	CHECK(strlen(out) >= 8 && strcmp(out + strlen(out) - 8, "the end\n") == 0);
}

static void input_and_environment(void)
{
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	char out[256];

	setenv("VMBAK_PASSPHRASE", "must not leak", 1);
	o.input = "s3cret\n";
	o.input_len = 7;
	o.capture = VBU_RUN_OUTPUT;
	o.out = out;
	o.out_cap = sizeof(out);
	CHECK_EQ_INT(run_sh(o, "read x; echo \"got=$x pass=${VMBAK_PASSPHRASE-unset}\"", &res), 0);
	CHECK_EQ_INT(res.status, 0);
	CHECK_EQ_STR(out, "got=s3cret pass=unset\n");
	unsetenv("VMBAK_PASSPHRASE");
	/* A program that does not read its input: no SIGPIPE for us, its status for the caller. */
	{
		static char big[200000];

		memset(big, 'x', sizeof(big));
		o.input = big;
		o.input_len = sizeof(big);
		CHECK_EQ_INT(run_sh(o, "exit 2", &res), 0);
		CHECK_EQ_INT(res.status, 2);
	}
	/* Without input: stdin is /dev/null. */
	o.input = NULL;
	CHECK_EQ_INT(run_sh(o, "cat; echo eof", &res), 0);
	CHECK_EQ_STR(out, "eof\n");
}

static void descriptors(void)
{
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	char out[256], path[] = "/tmp/vmbak-run-test.XXXXXX";
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	unlink(path);
	CHECK_EQ_INT(write(fd, "from fd\n", 8), 8);
	lseek(fd, 0, SEEK_SET);
	o.in_fd = fd;
	o.capture = VBU_RUN_OUTPUT;
	o.out = out;
	o.out_cap = sizeof(out);
	CHECK_EQ_INT(run_sh(o, "cat", &res), 0);
	CHECK_EQ_STR(out, "from fd\n");
	lseek(fd, 0, SEEK_SET);
	o.in_fd = -1;
	o.fd3 = fd;
	CHECK_EQ_INT(run_sh(o, "cat <&3", &res), 0);
	CHECK_EQ_STR(out, "from fd\n");
	close(fd);
}

static void cannot_start(void)
{
	char *argv[] = {(char *)"nothing", NULL};
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;

	o.argv = argv;
	o.path = "/nonexistent/vmbak-helper";
	CHECK_EQ_INT(vbu_run(&o, &res), -ENOENT);
	o.path = "relative/helper";
	CHECK_EQ_INT(vbu_run(&o, &res), -EINVAL);
	o.path = "/dev/null";
	CHECK_EQ_INT(vbu_run(&o, &res), -EACCES);
}

static void time_limit(void)
{
	vbu_run_opts o = VBU_RUN_OPTS;
	vbu_run_result res;
	struct timespec a, b;
	char out[64];

	o.timeout_s = 1;
	clock_gettime(CLOCK_MONOTONIC, &a);
	CHECK_EQ_INT(run_sh(o, "sleep 30", &res), -ETIME);
	o.capture = VBU_RUN_STDERR;
	o.out = out;
	o.out_cap = sizeof(out);
	CHECK_EQ_INT(run_sh(o, "sleep 30", &res), -ETIME);
	clock_gettime(CLOCK_MONOTONIC, &b);
	CHECK(b.tv_sec - a.tv_sec < 10);
	CHECK_EQ_INT(run_sh(o, "exit 4", &res), 0);
	CHECK_EQ_INT(res.status, 4);
}

int main(void)
{
	RUN(exit_status_and_stderr);
	RUN(signal_reported);
	RUN(output_kept);
	RUN(input_and_environment);
	RUN(descriptors);
	RUN(cannot_start);
	RUN(time_limit);
	return unit_finish();
}
