/* passphrase.c: a passphrase from a file, the environment or the terminal (see passphrase.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "crypto.h"
#include "passphrase.h"
#include "file.h"
#include "util.h"

/* Room for the longest accepted line plus "\r\n". */
#define LINE_CAP (VBK_PASSPHRASE_MAX + 2)
/* Terminal attempts when confirm answers differ. */
#define CONFIRM_TRIES 3

/* ret_from for files ("file '/x'"): per thread, valid until the next call in that thread. */
static __thread char from_buf[PATH_MAX + 64];

static const char *describe_file(const char *path, const char *var)
{
	int n;

	if (var)
		n = snprintf(from_buf, sizeof(from_buf), "file '%s' (from %s)", path, var);
	else
		n = snprintf(from_buf, sizeof(from_buf), "file '%s'", path);
	if (n < 0 || (size_t)n >= sizeof(from_buf))
		return var ? var : "passphrase file";
	return from_buf;
}

/* The passphrase is line[0..len) (no line ending). Copies it to a fresh string. */
static int take(const char *line, size_t len, char **ret)
{
	char *p;

	if (len == 0)
		return -EINVAL;
	if (len > VBK_PASSPHRASE_MAX)
		return -EFBIG;
	/* A NUL byte would silently cut the passphrase short. */
	if (memchr(line, '\0', len))
		return -EILSEQ;
	p = malloc(len + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, line, len);
	p[len] = '\0';
	*ret = p;
	return 0;
}

/* Reads a file up to its first newline (pipes too: only what is needed is read) and takes
 * that line without its "\n" or "\r\n". */
static int from_file(const char *path, char **ret)
{
	char buf[LINE_CAP];
	size_t len = 0, line;
	char *nl = NULL;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	while (len < sizeof(buf) && !nl) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		nl = memchr(buf + len, '\n', (size_t)n);
		len += (size_t)n;
	}
	if (nl) {
		line = (size_t)(nl - buf);
		if (line > 0 && buf[line - 1] == '\r')
			line--;
	} else if (len == sizeof(buf)) {
		/* A full buffer and no newline: the line is longer than the maximum. */
		r = -EFBIG;
		goto out;
	} else {
		line = len;
	}
	r = take(buf, line, ret);
out:
	vbk_wipe(buf, sizeof(buf));
	close(fd);
	return r;
}

/* Signals that would leave the terminal without echo if they struck during the prompt: they
 * are caught, the terminal restored, then they are delivered again. */
static const int tty_signals[] = {SIGALRM, SIGHUP,  SIGINT,  SIGPIPE, SIGQUIT,
				  SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU};
static volatile sig_atomic_t caught[NSIG];

static void on_signal(int sig)
{
	caught[sig] = 1;
}

static int any_caught(void)
{
	size_t i;

	for (i = 0; i < VBU_ARRAY_SIZE(tty_signals); i++)
		if (caught[tty_signals[i]])
			return 1;
	return 0;
}

/* Prompts on the terminal fd with echo off and reads one line into buf (at most cap bytes
 * kept; a longer line is read to its end and gives -EFBIG). The terminal settings and signal
 * handlers are restored on every path. Not thread-safe (signal handlers are per process); it
 * runs from main() before threads start. */
static int read_tty(int fd, const char *prompt, char *buf, size_t cap, size_t *ret_len)
{
	struct sigaction sa, old_sa[VBU_ARRAY_SIZE(tty_signals)];
	struct termios old, quiet;
	size_t len, i;
	int r, stop, again;

restart:
	len = 0;
	r = 0;
	stop = 0;
	again = 0;
	for (i = 0; i < VBU_ARRAY_SIZE(tty_signals); i++)
		caught[tty_signals[i]] = 0;
	if (tcgetattr(fd, &old) < 0)
		return -ENOKEY;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: read() must return EINTR */
	for (i = 0; i < VBU_ARRAY_SIZE(tty_signals); i++)
		sigaction(tty_signals[i], &sa, &old_sa[i]);

	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	while (tcsetattr(fd, TCSAFLUSH, &quiet) < 0) {
		if (errno != EINTR || caught[SIGTTOU]) {
			r = errno == EINTR ? -EINTR : -errno;
			goto restore_signals;
		}
	}
	r = vbu_write_all(fd, prompt, strlen(prompt));
	while (r == 0 && !stop) {
		char c;
		ssize_t n = read(fd, &c, 1);

		if (n < 0) {
			if (errno == EINTR && !any_caught())
				continue;
			r = errno == EINTR ? -EINTR : -errno;
		} else if (n == 0 || c == '\n' || c == '\r') {
			stop = 1;
		} else if (len < cap) {
			buf[len++] = c;
		} else {
			/* Too long: keep reading to the end of the line so the rest is not taken
			 * as the next command's input, and report it. */
			len = cap + 1;
		}
	}
	/* Restore even when a signal is pending; the newline stands for the one not echoed. */
	while (tcsetattr(fd, TCSAFLUSH, &old) < 0 && errno == EINTR)
		;
	(void)vbu_write_all(fd, "\n", 1);
restore_signals:
	for (i = 0; i < VBU_ARRAY_SIZE(tty_signals); i++)
		sigaction(tty_signals[i], &old_sa[i], NULL);
	for (i = 0; i < VBU_ARRAY_SIZE(tty_signals); i++) {
		int sig = tty_signals[i];
		if (!caught[sig])
			continue;
		/* Deliver it with the caller's handler back in place (usually: the process
		 * ends, or stops and later continues). */
		raise(sig);
		if (sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
			again = 1;
	}
	if (again) {
		/* Stopped and continued: ask again, as a fresh prompt. */
		vbk_wipe(buf, cap);
		goto restart;
	}
	if (r < 0)
		return r;
	if (len > cap)
		return -EFBIG;
	*ret_len = len;
	return 0;
}

static int from_terminal(const vbk_passphrase_source *src, char **ret)
{
	const char *prompt = src->prompt ? src->prompt : "passphrase: ";
	char a[VBK_PASSPHRASE_MAX], b[VBK_PASSPHRASE_MAX];
	char again[256];
	size_t alen = 0, blen = 0;
	int fd, tries, n, r;

	if (!isatty(STDIN_FILENO))
		return -ENOKEY;
	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -ENOKEY;
	n = snprintf(again, sizeof(again), "repeat %s", prompt);
	if (n < 0 || (size_t)n >= sizeof(again))
		snprintf(again, sizeof(again), "repeat passphrase: ");

	for (tries = 0;; tries++) {
		r = read_tty(fd, prompt, a, sizeof(a), &alen);
		if (r < 0)
			goto out;
		if (!src->confirm || alen == 0)
			break;
		r = read_tty(fd, again, b, sizeof(b), &blen);
		if (r < 0)
			goto out;
		if (alen == blen && vbk_equal(a, b, alen))
			break;
		vbk_wipe(a, sizeof(a));
		vbk_wipe(b, sizeof(b));
		if (tries + 1 == CONFIRM_TRIES) {
			r = -EKEYREJECTED;
			goto out;
		}
		(void)vbu_write_all(fd, "passphrases do not match, try again\n", 36);
	}
	r = take(a, alen, ret);
out:
	vbk_wipe(a, sizeof(a));
	vbk_wipe(b, sizeof(b));
	close(fd);
	return r;
}

int vbk_passphrase_get(const vbk_passphrase_source *src, char **ret, const char **ret_from)
{
	const char *from = NULL, *v;
	char *pass = NULL;
	int r;

	if (src->file) {
		from = describe_file(src->file, NULL);
		r = from_file(src->file, &pass);
		goto out;
	}
	/* An empty file variable names no file and is ignored; an empty value variable is an
	 * empty passphrase and refused (rather than falling through to a prompt). */
	v = src->env_file ? getenv(src->env_file) : NULL;
	if (v && *v) {
		from = describe_file(v, src->env_file);
		r = from_file(v, &pass);
		goto out;
	}
	v = src->env_value ? getenv(src->env_value) : NULL;
	if (v) {
		from = src->env_value;
		r = take(v, strlen(v), &pass);
		goto out;
	}
	from = "terminal";
	r = from_terminal(src, &pass);
out:
	if (ret_from)
		*ret_from = from;
	if (r < 0)
		return r;
	*ret = pass;
	return 0;
}

void vbk_passphrase_free(char *pass)
{
	if (!pass)
		return;
	vbk_wipe(pass, strlen(pass));
	free(pass);
}
