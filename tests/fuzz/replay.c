/* replay.c: runs a libFuzzer target without libFuzzer, so `make check` replays the corpus.
 *
 *   NAME_replay PATH...
 *
 * Each PATH is a file (one input) or a directory whose files are inputs, and whose
 * subdirectories' files are too (one level down; deeper is ignored). Names starting with '.'
 * are skipped. Inputs run in name order, each from its own heap buffer of exactly its size, so
 * the sanitizers see any read past the end. Prints "replayed N inputs" and exits 0; a path that
 * cannot be read is an error (exit 1). If the target crashes, the input being run is named on
 * stderr first.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static const char *current_input;

static void on_crash(int sig)
{
	static const char msg[] = "replay: crashed on input: ";
	const char *p = current_input;

	if (p) {
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)!write(STDERR_FILENO, p, strlen(p));
		(void)!write(STDERR_FILENO, "\n", 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static int read_all(const char *path, uint8_t **ret_buf, size_t *ret_size)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t size, got = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size > SIZE_MAX - 1) {
		r = -EFBIG;
		goto out;
	}
	size = (size_t)st.st_size;
	/* Never a zero-byte malloc: the target gets a valid pointer even for an empty input. */
	buf = malloc(size ? size : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*ret_buf = buf;
	*ret_size = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

static int run_file(const char *path, unsigned long *count)
{
	uint8_t *buf = NULL;
	size_t size = 0;
	int r;

	r = read_all(path, &buf, &size);
	if (r < 0) {
		fprintf(stderr, "replay: cannot read '%s': %s\n", path, strerror(-r));
		return r;
	}
	current_input = path;
	LLVMFuzzerTestOneInput(buf, size);
	current_input = NULL;
	free(buf);
	(*count)++;
	return 0;
}

static int filter_hidden(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* depth 0: a path from the command line; 1: an entry of a directory given; 2: one level below. */
static int run_path(const char *path, int depth, unsigned long *count)
{
	struct dirent **list = NULL;
	struct stat st;
	int n, i, r = 0;

	if (stat(path, &st) < 0) {
		r = -errno;
		fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
		return r;
	}
	if (S_ISREG(st.st_mode))
		return run_file(path, count);
	if (!S_ISDIR(st.st_mode) || depth >= 2)
		return 0;

	n = scandir(path, &list, filter_hidden, alphasort);
	if (n < 0) {
		r = -errno;
		fprintf(stderr, "replay: cannot read directory '%s': %s\n", path, strerror(errno));
		return r;
	}
	for (i = 0; i < n; i++) {
		char sub[4096];
		int len = snprintf(sub, sizeof(sub), "%s/%s", path, list[i]->d_name);

		if (len < 0 || (size_t)len >= sizeof(sub)) {
			fprintf(stderr, "replay: path too long in '%s'\n", path);
			r = -ENAMETOOLONG;
			break;
		}
		r = run_path(sub, depth + 1, count);
		if (r < 0)
			break;
	}
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return r;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	/* Under AddressSanitizer its own handlers report faults; it aborts after its report. */
	signal(SIGABRT, on_crash);
#ifndef __SANITIZE_ADDRESS__
	signal(SIGSEGV, on_crash);
	signal(SIGBUS, on_crash);
	signal(SIGFPE, on_crash);
	signal(SIGILL, on_crash);
#endif

	for (i = 1; i < argc; i++) {
		if (run_path(argv[i], 0, &count) < 0)
			return 1;
	}
	printf("replayed %lu inputs\n", count);
	return 0;
}
